-- The deployment record the scorer and the monitor follow: which split the
-- challenger gets. Who serves is the aliases champion, challenger and shadow.
CREATE TABLE model_deployments (
    model_id     bigint PRIMARY KEY REFERENCES registered_models (id),
    -- canary: a share of entities (hash of the entity id) goes to the challenger;
    -- ab: each event is routed by Thompson sampling on realized labels
    mode         text   NOT NULL DEFAULT 'canary' CHECK (mode IN ('canary', 'ab')),
    canary_share double precision NOT NULL DEFAULT 0
                 CHECK (canary_share >= 0 AND canary_share <= 1),
    updated_ms   bigint NOT NULL,
    updated_by   text   NOT NULL
);
