/**
 * @file registry.h
 * @brief mlops-registry's own modules: the database (db.c), the HTTP layer
 *        with routing, auth, idempotency and the write transaction (api.c),
 *        MLflow's model-registry REST (mlflow.c), our /api/v1 (v1.c), JSON
 *        views and shared queries (store.c) and the outbox relay (relay.c).
 *
 * Threads: everything runs on the event loop thread except the relay,
 * which has its own Postgres connection and Kafka producer.
 *
 * Ownership: a req_ctx_t lives for one request; strings it hands out with
 * ctx_fmt()/ctx_keep() are freed with it. Results returned by ctx_query()
 * are the caller's (PQclear).
 */
#ifndef MLOPS_REGISTRY_H
#define MLOPS_REGISTRY_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "pg.h"
#include "service.h"

typedef struct registry_conf {
    SERVICE_COMMON_FIELDS;
    char *pg_dsn;
    char *pg_password_file;
    int64_t pg_connect_timeout_s;
    int64_t pg_statement_timeout_ms;
    char *state_dir;
    char *admin_token_file;
    int64_t max_body_bytes;
    int64_t max_artifact_bytes;
    int64_t max_header_bytes;
    int64_t max_connections;
    int64_t request_timeout_s;
    int64_t rate_limit_rps;
    int64_t rate_limit_burst;
    int64_t token_cache_ms;
    int64_t idempotency_ttl_s;
    int64_t outbox_retention_s;
    char *models_topic;
    bool outbox_relay;
    int64_t outbox_batch;
    int64_t outbox_poll_ms;
    char *tls_cert_file;
    char *tls_key_file;
} registry_conf_t;

/** One embedded migration (migrations.c, generated from migrations/). */
typedef struct registry_migration {
    int version;
    const char *name;
    const char *sql;
} registry_migration_t;
extern const registry_migration_t registry_migrations[];
extern const size_t registry_nmigrations;

typedef struct relay relay_t;
typedef struct ratelimit ratelimit_t;
typedef struct token_cache token_cache_t;

typedef struct registry {
    registry_conf_t *conf;
    service_t *svc;
    pg_t *pg;
    bool durable; /**< fsync, synchronous_commit, full_page_writes all on */
    char durability_detail[256];
    relay_t *relay;
    ratelimit_t *rl;
    token_cache_t *tcache;
    bool db_up;         /**< the last round trip worked */
    uint64_t pings;     /**< pings so far (housekeeping runs every 30th) */
    struct event *ping; /**< the 2 s database ping */
    void *tls;          /**< SSL_CTX when HTTPS is on */
    bool own_dsn;       /**< pg_dsn was read from the stack and is ours to free */
    uint64_t request_seq;
    metric_t *m_writes, *m_conflicts, *m_auth_failures, *m_replays;
} registry_t;

/* ---- db.c --------------------------------------------------------------------- */

/** Advisory lock keys (pg_advisory_*): migrations, outbox numbering, relay. */
#define REGISTRY_LOCK_MIGRATE 0x6d6c6f7001LL
#define REGISTRY_LOCK_OUTBOX 0x6d6c6f7002LL
#define REGISTRY_LOCK_RELAY 0x6d6c6f7003LL

/**
 * Apply the embedded migrations not yet recorded, each in one transaction
 * under the migration advisory lock. Returns 0 or -1 with errstr.
 */
int db_migrate(pg_t *pg, char *errstr, size_t errstr_size) MLOPS_WUR;

/**
 * If no admin token exists, create one and write it to @p path (mode 0600,
 * folders made as needed). Returns 0 (created or not needed) or -1.
 */
int db_bootstrap_admin(pg_t *pg, const char *path, char *errstr, size_t errstr_size) MLOPS_WUR;

/**
 * Create a token (and its audit row) directly in the database: the local
 * bootstrap of `mlops-registry token create`. @p expires_ms 0 = never.
 * The token goes to @p tok. Returns 0 or -1 with errstr.
 */
int db_token_create(pg_t *pg, const char *name, const char *role, int64_t expires_ms,
                    const char *created_by, char tok[72], int64_t *id, char *errstr,
                    size_t errstr_size) MLOPS_WUR;

/** A new random token ("mlr_" + 64 hex) into @p out (72 bytes) and its sha256 hex. */
int token_generate(char out[72], char hash[65]) MLOPS_WUR;

/* ---- api.c ---------------------------------------------------------------------- */

typedef enum role { ROLE_PUBLIC = 0, ROLE_READER = 1, ROLE_TRAINER = 2, ROLE_ADMIN = 3 } role_t;
const char *role_name(role_t role);
/** Parse "reader" / "trainer" / "admin"; returns -1 for anything else. */
int role_parse(const char *s);

#define CTX_MAX_PARAMS 4

typedef struct req_ctx req_ctx_t;
typedef struct route_def route_def_t;

/** A handler: returns the HTTP status; fills c->out (a reply) or calls ctx_fail(). */
typedef int(route_fn)(req_ctx_t *c);

struct route_def {
    int method;          /**< one EVHTTP_REQ_* (a route may be listed once per method) */
    const char *pattern; /**< "/api/v1/models/{}/versions/{}" ({} = one path segment) */
    role_t role;         /**< least role allowed */
    bool write;          /**< runs in one transaction with audit and outbox rows */
    bool raw_body;       /**< body is not JSON (artifact upload) */
    route_fn *fn;
};

/** What a write changed, for the audit and outbox rows (set by the handler). */
typedef struct change {
    const char *action;      /**< e.g. "registered_model.create" */
    const char *object_type; /**< "registered_model", "model_version", "alias", "token" */
    char *object;            /**< e.g. "name" or "name/3" (ctx-owned) */
    int64_t model_id;        /**< model whose snapshot goes to the outbox; 0 = none */
    json_t *before;          /**< snapshot before the change (owned), may be NULL */
    json_t *detail;          /**< what changed: version, alias, stage... (owned) */
} change_t;

struct req_ctx {
    registry_t *rg;
    struct evhttp_request *req;
    const route_def_t *route;
    char *params[CTX_MAX_PARAMS]; /**< decoded path segments matched by {} */
    int nparams;
    json_t *in; /**< the JSON body merged with query parameters (object) */
    char *body; /**< the raw body (NUL-terminated) */
    size_t body_len;
    int64_t token_id;
    role_t role;
    char actor[160]; /**< "token:<id>:<name>" */
    char request_id[72];
    /* reply */
    json_t *out;   /**< JSON reply (owned) */
    char *raw_out; /**< or raw bytes (owned), with raw_type */
    size_t raw_len;
    const char *raw_type;
    const char *err_code;
    char *err_msg;
    int retry_after_s;
    bool no_replay; /**< do not keep the reply for Idempotency-Key replays (secrets) */
    change_t chg;
    void *scratch; /**< ctx-owned allocations */
};

/** Forget every cached token (after a token write). */
void token_cache_clear(registry_t *rg);

/** Register the API routes on @p srv (one catch-all for /api/). */
void api_register(registry_t *rg, http_server_t *srv);
/** The route table (for GET /api/v1/routes and tests). */
const route_def_t *api_routes(size_t *n);

/** Set the error reply: returns @p status so handlers can `return ctx_fail(...)`. */
int ctx_fail(req_ctx_t *c, int status, const char *code, const char *fmt, ...) MLOPS_PRINTF(4, 5);
/** Map a Postgres error (consumed) to a reply: 503 lost, 409 unique, 400 check, 500. */
int ctx_db_fail(req_ctx_t *c, err_t *e);
/** A printf string that lives as long as the request. */
char *ctx_fmt(req_ctx_t *c, const char *fmt, ...) MLOPS_PRINTF(2, 3);
/** Run a query; on error sets the reply and returns NULL (status in *st). */
PGresult *ctx_query(req_ctx_t *c, int *st, const char *sql, int n, const char *const *params);
#define QPARAMS(...) ((const char *const[]){__VA_ARGS__})
#define QN(...) ((int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))
/** ctx_query with the parameters inline: Q(c, &st, sql, p1, p2...). */
#define Q(c, st, sql, ...) ctx_query((c), (st), (sql), QN(__VA_ARGS__), QPARAMS(__VA_ARGS__))
#define Q0(c, st, sql) ctx_query((c), (st), (sql), 0, NULL)

/** Input getters: strings (from JSON or query), ints (number or decimal string), bools. */
const char *in_str(req_ctx_t *c, const char *key);
/** Required string: NULL after setting a 400 reply naming the field. */
const char *in_req_str(req_ctx_t *c, const char *key, int *st);
/** 0 ok, 1 absent, -1 bad (400 set). */
int in_int(req_ctx_t *c, const char *key, int64_t *out, int *st);
int in_bool(req_ctx_t *c, const char *key, bool *out, int *st);

/** Append an outbox row for @p model_name inside the current transaction. */
int ctx_outbox(req_ctx_t *c, int *st, const char *model_name, json_t *payload);

/* ---- store.c: shared queries and MLflow-shaped JSON --------------------------------- */

typedef struct model_row {
    int64_t id;
    char *name; /**< ctx-owned */
} model_row_t;

/** Look up a live model by name (404 reply if none). FOR UPDATE when @p lock. */
int store_model(req_ctx_t *c, const char *name, bool lock, model_row_t *m);
/** A live version's row id, by model id and number (404 reply if none). */
int store_version_id(req_ctx_t *c, const model_row_t *m, int64_t version, int64_t *vid);
/** MLflow RegisteredModel JSON for a model id (NULL + reply on error). */
json_t *store_model_json(req_ctx_t *c, int64_t model_id, int *st);
/** MLflow ModelVersion JSON for a version row id. */
json_t *store_version_json(req_ctx_t *c, int64_t version_id, int *st);
/** The model_event/1 snapshot (aliases, stages, artifacts) of a model. */
json_t *store_snapshot(req_ctx_t *c, int64_t model_id, int *st);
/** Parse a version number from a string ("3"); -1 if not a positive integer. */
int64_t parse_version(const char *s);
/**
 * Move @p alias of model @p m to version @p to (0 = delete the alias),
 * recording the history row. @p expected >= 0 is the holder the caller
 * expects (0 = unset; -1 = no check): 409 when it differs. Checks the gates
 * unless @p force. Sets the change detail. The caller holds the model row
 * lock. Returns 200 or an error status (reply set).
 */
int store_move_alias(req_ctx_t *c, const model_row_t *m, const char *alias, int64_t to,
                     int64_t expected, bool force, const char *reason);
/** Gate check for version row @p vid: 0 ok, else an error status (reply set). */
int store_check_gates(req_ctx_t *c, int64_t vid, int64_t version);
/** Transition version row @p vid to @p stage (canonical), archiving others if asked. */
int store_transition(req_ctx_t *c, const model_row_t *m, int64_t vid, int64_t version,
                     const char *stage, bool archive_existing, bool force, const char *reason);
/** Canonical MLflow stage name for any case of it, or NULL. */
const char *stage_canonical(const char *s);

/**
 * The SQL of an MLflow search filter: appends " AND ..." fragments (fixed
 * text, values as $1..$n) to @p where and points @p params (32 slots) at the
 * values (ctx-owned). Returns 0, or 400 with the reason in c->err_msg.
 */
int mf_filter_sql(req_ctx_t *c, bool versions, const char *filter, strbuf_t *where,
                  const char **params, int *np);

/* ---- request parsing (api.c): no socket, no database, so tests and the fuzzer
 * (tests/fuzz/fuzz_registry.c) drive the same code as on_api() ---------------------- */

#define API_MAX_SEGS 16

/**
 * Split a raw (still %-encoded) path into decoded segments: at most
 * API_MAX_SEGS heap copies the caller frees (also after a failure: the first
 * *nsegs are set). Returns 0, or -1 on a path without a leading '/', too many
 * segments, bad %-encoding or an encoded NUL.
 */
int api_split_path(const char *raw, char **segs, int *nsegs) MLOPS_WUR;

/**
 * Find the route of @p method (EVHTTP_REQ_*) for the segments: sets
 * c->route and c->params (which borrow @p segs). Returns 0, or 404 / 405
 * with the reply set; for 405 @p allow lists the methods the path has.
 * @p raw is the path as received (for the 404 message).
 */
int api_route(req_ctx_t *c, int method, const char *raw, char **segs, int nsegs, char *allow,
              size_t allow_size);

/** True if the query string has a parameter that looks like a credential. */
bool api_query_has_token(const char *query);

/**
 * Build c->in for c->route: c->body / c->body_len (a JSON object of at most
 * @p limit bytes unless the route takes a raw body; may be empty) merged
 * with the query parameters of @p query (NULL = none; the body's keys win, a
 * repeated parameter becomes an array). Returns 0, or 400 with the reply set.
 */
int ctx_parse_input(req_ctx_t *c, size_t limit, const char *query);

/**
 * The ORDER BY list of a search from c->in's "order_by" (a string or an array
 * of "field [ASC|DESC]"), appended to @p order: fixed column names only, with
 * the default tie-breakers last. Returns 0, or 400 with the reply set.
 */
int mf_order_sql(req_ctx_t *c, bool versions, strbuf_t *order);

/** Free what a request context holds (for contexts made outside on_api: tests). */
void ctx_cleanup(req_ctx_t *c);

/* ---- mlflow.c / v1.c handlers ------------------------------------------------------ */

int mf_rm_create(req_ctx_t *c);
int mf_rm_get(req_ctx_t *c);
int mf_rm_rename(req_ctx_t *c);
int mf_rm_update(req_ctx_t *c);
int mf_rm_delete(req_ctx_t *c);
int mf_rm_search(req_ctx_t *c);
int mf_rm_latest(req_ctx_t *c);
int mf_rm_set_tag(req_ctx_t *c);
int mf_rm_delete_tag(req_ctx_t *c);
int mf_alias_set(req_ctx_t *c);
int mf_alias_delete(req_ctx_t *c);
int mf_alias_get(req_ctx_t *c);
int mf_mv_create(req_ctx_t *c);
int mf_mv_get(req_ctx_t *c);
int mf_mv_update(req_ctx_t *c);
int mf_mv_delete(req_ctx_t *c);
int mf_mv_search(req_ctx_t *c);
int mf_mv_transition(req_ctx_t *c);
int mf_mv_set_tag(req_ctx_t *c);
int mf_mv_delete_tag(req_ctx_t *c);
int mf_mv_download_uri(req_ctx_t *c);

int v1_artifact_put(req_ctx_t *c);
int v1_artifact_get(req_ctx_t *c);
int v1_register(req_ctx_t *c);
int v1_gates_put(req_ctx_t *c);
int v1_promote(req_ctx_t *c);
int v1_rollback(req_ctx_t *c);
int v1_history(req_ctx_t *c);
int v1_deploy_get(req_ctx_t *c);
int v1_deploy_put(req_ctx_t *c);
int v1_card(req_ctx_t *c);
int v1_audit(req_ctx_t *c);
int v1_routes(req_ctx_t *c);
int v1_token_create(req_ctx_t *c);
/** "90s", "15m", "12h", "30d", "2w" or plain seconds into seconds; 0 or -1. */
int parse_duration_s(const char *s, int64_t *out);
/** `mlops-registry token create ...`: a token straight into the database. Exit code. */
int registry_token_cli(int argc, char **argv);
int v1_token_list(req_ctx_t *c);
int v1_token_revoke(req_ctx_t *c);
int v1_whoami(req_ctx_t *c);

/* ---- tls.c ------------------------------------------------------------------------------ */

/**
 * Load a PEM certificate chain and key for HTTPS (TLS 1.2+). Returns the
 * SSL_CTX (free with tls_free) or NULL with errstr. conn_install() then makes
 * every connection's bufferevent with tls_bev_new().
 */
void *tls_enable(const char *cert_file, const char *key_file, char *errstr, size_t errstr_size);
/** A server-side OpenSSL bufferevent (fd set later by evhttp), or NULL. */
struct bufferevent *tls_bev_new(void *ctx, struct event_base *base);
void tls_free(void *ctx);

/* ---- conn.c ----------------------------------------------------------------------------- */

/**
 * Take over the making of @p srv's connections (evhttp_set_bevcb): TLS when
 * rg->tls is set, a cap of max_connections open at once (503 JSON beyond),
 * and JSON bodies for the errors evhttp answers itself (413 over its body
 * limit, 400 for a bad or oversized header block). Call after tls_enable().
 */
void conn_install(registry_t *rg, http_server_t *srv);

/* ---- relay.c ------------------------------------------------------------------------ */

/** Start the relay thread (own connection and producer). NULL + errstr on failure. */
relay_t *relay_start(registry_t *rg, const cfg_kv_t *props, size_t nprops, char *errstr,
                     size_t errstr_size);
/** Wake the relay (after a commit). */
void relay_kick(relay_t *r);
/** Stop the thread (publishing what it can first) and free; accepts NULL. */
void relay_stop(relay_t *r);
/** Rows published since start (for /health). */
uint64_t relay_published(const relay_t *r);

#endif
