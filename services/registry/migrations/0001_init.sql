-- mlops-registry schema, version 1. Applied once, inside one transaction, under
-- the registry's advisory lock; recorded in registry_migrations.
-- Times are milliseconds since the Unix epoch (bigint), as MLflow reports them.

CREATE TABLE registered_models (
    id             bigserial PRIMARY KEY,
    name           text   NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    description    text   NOT NULL DEFAULT '',
    user_id        text   NOT NULL DEFAULT '',
    created_ms     bigint NOT NULL,
    updated_ms     bigint NOT NULL,
    -- the next version number: taken under this row's lock, never given back,
    -- so numbers are never reused even after a version is deleted
    next_version   integer NOT NULL DEFAULT 1 CHECK (next_version >= 1),
    deleted_ms     bigint
);
-- one live model per name; deleted models keep their rows (audit, history)
CREATE UNIQUE INDEX registered_models_live_name ON registered_models (name)
    WHERE deleted_ms IS NULL;

CREATE TABLE model_versions (
    id             bigserial PRIMARY KEY,
    model_id       bigint  NOT NULL REFERENCES registered_models (id),
    version        integer NOT NULL CHECK (version >= 1),
    description    text    NOT NULL DEFAULT '',
    user_id        text    NOT NULL DEFAULT '',
    source         text    NOT NULL DEFAULT '',
    run_id         text    NOT NULL DEFAULT '',
    run_link       text    NOT NULL DEFAULT '',
    -- MLflow's stages; several versions may share a stage
    stage          text    NOT NULL DEFAULT 'None'
                   CHECK (stage IN ('None', 'Staging', 'Production', 'Archived')),
    status         text    NOT NULL DEFAULT 'READY',
    created_ms     bigint  NOT NULL,
    updated_ms     bigint  NOT NULL,
    deleted_ms     bigint,
    -- quality gates: NULL = no results (cannot be promoted unless forced)
    gates_passed   boolean,
    gate_results   jsonb,
    gates_by       text,
    UNIQUE (model_id, version)
);
CREATE INDEX model_versions_live ON model_versions (model_id, version) WHERE deleted_ms IS NULL;

CREATE TABLE model_tags (
    model_id bigint NOT NULL REFERENCES registered_models (id),
    key      text   NOT NULL CHECK (length(key) BETWEEN 1 AND 250),
    value    text   NOT NULL DEFAULT '',
    PRIMARY KEY (model_id, key)
);

CREATE TABLE version_tags (
    version_id bigint NOT NULL REFERENCES model_versions (id),
    key        text   NOT NULL CHECK (length(key) BETWEEN 1 AND 250),
    value      text   NOT NULL DEFAULT '',
    PRIMARY KEY (version_id, key)
);

-- One version per alias per model: the primary key is the invariant.
CREATE TABLE model_aliases (
    model_id   bigint  NOT NULL REFERENCES registered_models (id),
    alias      text    NOT NULL CHECK (alias ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$'),
    version_id bigint  NOT NULL REFERENCES model_versions (id),
    updated_ms bigint  NOT NULL,
    PRIMARY KEY (model_id, alias)
);

CREATE TABLE alias_history (
    id           bigserial PRIMARY KEY,
    model_id     bigint  NOT NULL REFERENCES registered_models (id),
    alias        text    NOT NULL,
    from_version integer,
    to_version   integer,
    actor        text    NOT NULL,
    forced       boolean NOT NULL DEFAULT false,
    reason       text    NOT NULL DEFAULT '',
    at_ms        bigint  NOT NULL
);
CREATE INDEX alias_history_model ON alias_history (model_id, alias, id);

CREATE TABLE stage_transitions (
    id          bigserial PRIMARY KEY,
    version_id  bigint  NOT NULL REFERENCES model_versions (id),
    from_stage  text    NOT NULL,
    to_stage    text    NOT NULL,
    actor       text    NOT NULL,
    forced      boolean NOT NULL DEFAULT false,
    reason      text    NOT NULL DEFAULT '',
    at_ms       bigint  NOT NULL
);
CREATE INDEX stage_transitions_version ON stage_transitions (version_id, id);

-- The model/1 document, byte for byte, with its digest and size.
CREATE TABLE artifacts (
    version_id bigint PRIMARY KEY REFERENCES model_versions (id),
    schema     text   NOT NULL,
    sha256     text   NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes bigint NOT NULL,
    body       bytea  NOT NULL,
    created_ms bigint NOT NULL,
    CHECK (size_bytes = octet_length(body))
);

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    name        text   NOT NULL,
    -- sha256 of the token; the token itself is never stored
    token_hash  text   NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    role        text   NOT NULL CHECK (role IN ('reader', 'trainer', 'admin')),
    created_by  text   NOT NULL DEFAULT '',
    created_ms  bigint NOT NULL,
    expires_ms  bigint,
    revoked_ms  bigint
);

-- Append-only: the trigger below refuses UPDATE and DELETE.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at_ms       bigint NOT NULL,
    actor       text   NOT NULL,
    action      text   NOT NULL,
    object_type text   NOT NULL,
    object      text   NOT NULL,
    before      jsonb,
    after       jsonb,
    request_id  text   NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_object ON audit_log (object_type, object, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- A write's reply, kept per token and key, so a retried write answers the same.
CREATE TABLE idempotency_keys (
    token_id       bigint NOT NULL,
    key            text   NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    method         text   NOT NULL,
    path           text   NOT NULL,
    request_sha256 text   NOT NULL,
    status         integer NOT NULL,
    response       text   NOT NULL,
    created_ms     bigint NOT NULL,
    PRIMARY KEY (token_id, key)
);

-- Change events for the models topic, numbered in commit order (the writer
-- takes the outbox advisory lock before inserting), published by the relay.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    model_name text   NOT NULL,
    payload    text   NOT NULL,
    created_ms bigint NOT NULL,
    sent_ms    bigint
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_ms IS NULL;
