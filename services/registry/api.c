/* The registry's HTTP layer: one catch-all route for /api/ that does our own
 * routing (path segments, 404/405), bearer-token auth with roles, a per-token
 * rate limit, body limits, JSON input, and for writes the one transaction
 * that carries the change, its audit row, its outbox row and the
 * idempotency record. Errors are MLflow-style {"error_code","message"}. */
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mjson.h"
#include "records.h"
#include "registry.h"

#define MF "/api/2.0/mlflow/"
#define RM MF "registered-models/"
#define MV MF "model-versions/"
#define V1 "/api/v1/"

enum {
    GET = EVHTTP_REQ_GET,
    POST = EVHTTP_REQ_POST,
    PATCH = EVHTTP_REQ_PATCH,
    DEL = EVHTTP_REQ_DELETE,
    PUT = EVHTTP_REQ_PUT
};

/* The route table: every API route, its least role and whether it writes.
 * Tests read it back (GET /api/v1/routes) and check auth on every entry. */
static const route_def_t routes[] = {
    {POST, RM "create", ROLE_TRAINER, true, false, mf_rm_create},
    {GET, RM "get", ROLE_READER, false, false, mf_rm_get},
    {POST, RM "rename", ROLE_ADMIN, true, false, mf_rm_rename},
    {PATCH, RM "update", ROLE_TRAINER, true, false, mf_rm_update},
    {DEL, RM "delete", ROLE_ADMIN, true, false, mf_rm_delete},
    {GET, RM "search", ROLE_READER, false, false, mf_rm_search},
    {POST, RM "get-latest-versions", ROLE_READER, false, false, mf_rm_latest},
    {GET, RM "get-latest-versions", ROLE_READER, false, false, mf_rm_latest},
    {POST, RM "set-tag", ROLE_TRAINER, true, false, mf_rm_set_tag},
    {DEL, RM "delete-tag", ROLE_TRAINER, true, false, mf_rm_delete_tag},
    {POST, RM "alias", ROLE_ADMIN, true, false, mf_alias_set},
    {DEL, RM "alias", ROLE_ADMIN, true, false, mf_alias_delete},
    {GET, RM "alias", ROLE_READER, false, false, mf_alias_get},
    {POST, MV "create", ROLE_TRAINER, true, false, mf_mv_create},
    {GET, MV "get", ROLE_READER, false, false, mf_mv_get},
    {PATCH, MV "update", ROLE_TRAINER, true, false, mf_mv_update},
    {DEL, MV "delete", ROLE_ADMIN, true, false, mf_mv_delete},
    {GET, MV "search", ROLE_READER, false, false, mf_mv_search},
    {POST, MV "transition-stage", ROLE_ADMIN, true, false, mf_mv_transition},
    {POST, MV "set-tag", ROLE_TRAINER, true, false, mf_mv_set_tag},
    {DEL, MV "delete-tag", ROLE_TRAINER, true, false, mf_mv_delete_tag},
    {GET, MV "get-download-uri", ROLE_READER, false, false, mf_mv_download_uri},
    {GET, V1 "routes", ROLE_READER, false, false, v1_routes},
    {GET, V1 "whoami", ROLE_READER, false, false, v1_whoami},
    {POST, V1 "models/{}/versions", ROLE_TRAINER, true, true, v1_register},
    {PUT, V1 "models/{}/versions/{}/artifact", ROLE_TRAINER, true, true, v1_artifact_put},
    {GET, V1 "models/{}/versions/{}/artifact", ROLE_READER, false, false, v1_artifact_get},
    {PUT, V1 "models/{}/versions/{}/gates", ROLE_TRAINER, true, false, v1_gates_put},
    /* trainers may move only 'challenger' (checked in v1_promote) */
    {POST, V1 "models/{}/aliases/{}/promote", ROLE_TRAINER, true, false, v1_promote},
    {POST, V1 "models/{}/aliases/{}/rollback", ROLE_ADMIN, true, false, v1_rollback},
    {GET, V1 "models/{}/history", ROLE_READER, false, false, v1_history},
    {GET, V1 "models/{}/deployment", ROLE_READER, false, false, v1_deploy_get},
    {PUT, V1 "models/{}/deployment", ROLE_ADMIN, true, false, v1_deploy_put},
    {GET, V1 "models/{}/card", ROLE_READER, false, false, v1_card},
    {GET, V1 "audit", ROLE_ADMIN, false, false, v1_audit},
    {POST, V1 "tokens", ROLE_ADMIN, true, false, v1_token_create},
    {GET, V1 "tokens", ROLE_ADMIN, false, false, v1_token_list},
    {DEL, V1 "tokens/{}", ROLE_ADMIN, true, false, v1_token_revoke},
};

const route_def_t *api_routes(size_t *n)
{
    *n = MLOPS_ARRAY_LEN(routes);
    return routes;
}

const char *role_name(role_t role)
{
    switch (role) {
    case ROLE_READER: return "reader";
    case ROLE_TRAINER: return "trainer";
    case ROLE_ADMIN: return "admin";
    default: return "public";
    }
}

int role_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "reader"))
        return ROLE_READER;
    if (!strcmp(s, "trainer"))
        return ROLE_TRAINER;
    if (!strcmp(s, "admin"))
        return ROLE_ADMIN;
    return -1;
}

/* ---- per-request helpers ------------------------------------------------------------ */

typedef struct scratch {
    struct scratch *next;
    char data[];
} scratch_t;

static char *ctx_keep(req_ctx_t *c, char *s, size_t len)
{
    scratch_t *sc = xmalloc(sizeof(*sc) + len + 1);
    memcpy(sc->data, s, len);
    sc->data[len] = '\0';
    sc->next = c->scratch;
    c->scratch = sc;
    return sc->data;
}

char *ctx_fmt(req_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    char *kept = ctx_keep(c, s, strlen(s));
    free(s);
    return kept;
}

int ctx_fail(req_ctx_t *c, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(c->err_msg);
    c->err_msg = xvasprintf(fmt, ap);
    va_end(ap);
    /* the message may quote the request (a raw path, a parameter name) and goes
     * out in a JSON body, which must be UTF-8, or reply() sends a 500 instead:
     * a message that is not UTF-8 keeps only its ASCII */
    if (!rec_is_text(c->err_msg, strlen(c->err_msg)))
        for (unsigned char *p = (unsigned char *)c->err_msg; *p; p++)
            if (*p >= 0x80)
                *p = '?';
    c->err_code = code;
    return status;
}

int ctx_db_fail(req_ctx_t *c, err_t *e)
{
    const char *msg = e ? e->msg : "unknown database error";
    int st;
    if (strstr(msg, "SQLSTATE 23505"))
        st = ctx_fail(c, 409, "RESOURCE_ALREADY_EXISTS", "already exists (%s)", msg);
    else if (strstr(msg, "SQLSTATE 23514") || strstr(msg, "SQLSTATE 22"))
        st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "invalid value (%s)", msg);
    else if (strstr(msg, "SQLSTATE 40001") || strstr(msg, "SQLSTATE 40P01") ||
             strstr(msg, "SQLSTATE 55P03"))
        st = ctx_fail(c, 409, "ABORTED", "concurrent change, retry (%s)", msg);
    else if ((e && e->retriable) || !pg_ok(c->rg->pg) || strstr(msg, "SQLSTATE 57") ||
             strstr(msg, "SQLSTATE 08")) {
        c->retry_after_s = 1;
        st = ctx_fail(c, 503, "TEMPORARILY_UNAVAILABLE", "database unavailable: %s", msg);
    } else {
        log_emit(LOG_LVL_ERROR, LOG_FIELDS(LOG_STR("request_id", c->request_id)), "database: %s",
                 msg);
        st = ctx_fail(c, 500, "INTERNAL_ERROR", "database error (request %s)", c->request_id);
    }
    err_destroy(e);
    return st;
}

PGresult *ctx_query(req_ctx_t *c, int *st, const char *sql, int n, const char *const *params)
{
    err_t *e = NULL;
    /* outside a transaction we only read: a statement that met a lost
     * connection (now reset) is run again once */
    bool idle = PQtransactionStatus(pg_conn(c->rg->pg)) == PQTRANS_IDLE;
    PGresult *res = pg_exec(c->rg->pg, sql, n, params, &e);
    if (!res && idle && e && e->retriable && pg_ok(c->rg->pg)) {
        err_destroy(e);
        e = NULL;
        res = pg_exec(c->rg->pg, sql, n, params, &e);
    }
    if (!res) {
        c->rg->db_up = pg_ok(c->rg->pg); /* after a loss, pg_exec tried one reset */
        *st = ctx_db_fail(c, e);
    } else {
        c->rg->db_up = true;
    }
    return res;
}

const char *in_str(req_ctx_t *c, const char *key)
{
    json_t *v = json_object_get(c->in, key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *in_req_str(req_ctx_t *c, const char *key, int *st)
{
    json_t *v = json_object_get(c->in, key);
    if (!v || json_is_null(v)) {
        *st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "missing value for parameter '%s'", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        *st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "parameter '%s' must be a string", key);
        return NULL;
    }
    const char *s = json_string_value(v);
    if (!*s) {
        *st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "parameter '%s' must not be empty", key);
        return NULL;
    }
    return s;
}

int in_int(req_ctx_t *c, const char *key, int64_t *out, int *st)
{
    json_t *v = json_object_get(c->in, key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    if (!v || json_is_null(v))
        return 1;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && parse_int64(json_string_value(v), out) == 0)
        return 0;
    *st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "parameter '%s' must be an integer", key);
    return -1;
}

int in_bool(req_ctx_t *c, const char *key, bool *out, int *st)
{
    json_t *v = json_object_get(c->in, key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    if (!v || json_is_null(v))
        return 1;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_string(v) && parse_bool(json_string_value(v), out) == 0)
        return 0;
    *st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "parameter '%s' must be a boolean", key);
    return -1;
}

int ctx_outbox(req_ctx_t *c, int *st, const char *model_name, json_t *payload)
{
    char *text = mjson_dump(payload, NULL);
    if (!text) {
        *st = ctx_fail(c, 500, "INTERNAL_ERROR", "cannot encode the change event");
        return -1;
    }
    char lock[32], now[24];
    snprintf(lock, sizeof(lock), "%lld", (long long)REGISTRY_LOCK_OUTBOX);
    snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
    /* the lock is held to COMMIT, so outbox ids are handed out in commit order */
    PGresult *r = Q(c, st, "SELECT pg_advisory_xact_lock($1::bigint)", lock);
    if (r) {
        PQclear(r);
        r = Q(c, st,
              "INSERT INTO outbox (model_name, payload, created_ms) VALUES ($1, $2, $3::bigint)",
              model_name, text, now);
    }
    free(text);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

/* ---- rate limit: a token bucket per token ------------------------------------------- */

#define RL_SLOTS 1024
struct ratelimit {
    struct {
        int64_t token_id;
        double tokens;
        int64_t last_us;
    } slot[RL_SLOTS];
};

/* Returns 0 if allowed, else the seconds to wait. */
static int ratelimit_take(registry_t *rg, int64_t token_id)
{
    if (rg->conf->rate_limit_rps <= 0)
        return 0;
    if (!rg->rl)
        rg->rl = xcalloc(1, sizeof(*rg->rl));
    double rate = (double)rg->conf->rate_limit_rps;
    double burst = (double)(rg->conf->rate_limit_burst > 0 ? rg->conf->rate_limit_burst
                                                           : rg->conf->rate_limit_rps);
    size_t i = (size_t)((uint64_t)token_id % RL_SLOTS);
    int64_t now = mono_us();
    if (rg->rl->slot[i].token_id != token_id) {
        rg->rl->slot[i].token_id = token_id;
        rg->rl->slot[i].tokens = burst;
        rg->rl->slot[i].last_us = now;
    }
    double t = rg->rl->slot[i].tokens + rate * (double)(now - rg->rl->slot[i].last_us) / 1e6;
    if (t > burst)
        t = burst;
    rg->rl->slot[i].last_us = now;
    if (t >= 1.0) {
        rg->rl->slot[i].tokens = t - 1.0;
        return 0;
    }
    rg->rl->slot[i].tokens = t;
    int wait = (int)((1.0 - t) / rate) + 1;
    return wait;
}

/* ---- routing ---------------------------------------------------------------------------- */

int api_split_path(const char *raw, char **segs, int *nsegs)
{
    *nsegs = 0;
    const char *p = raw;
    if (*p != '/')
        return -1;
    while (*p == '/') {
        p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (!len && !end)
            break; /* a trailing slash */
        if (*nsegs == API_MAX_SEGS)
            return -1;
        char *enc = xstrndup(p, len);
        size_t n = 0;
        char *dec = evhttp_uridecode(enc, 0, &n);
        free(enc);
        if (!dec || strlen(dec) != n) {
            free(dec);
            return -1;
        }
        segs[(*nsegs)++] = dec;
        p += len;
    }
    return 0;
}

/* Does @p pattern match @p segs? Fills params when it does. */
static bool match(const char *pattern, char **segs, int nsegs, req_ctx_t *c)
{
    const char *p = pattern;
    int i = 0, np = 0;
    char *params[CTX_MAX_PARAMS];
    while (*p == '/') {
        p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (i >= nsegs)
            return false;
        if (len == 2 && !strncmp(p, "{}", 2)) {
            if (!*segs[i] || np == CTX_MAX_PARAMS)
                return false;
            params[np++] = segs[i];
        } else if (strlen(segs[i]) != len || strncmp(segs[i], p, len)) {
            return false;
        }
        i++;
        p += len;
    }
    if (i != nsegs)
        return false;
    if (c) {
        for (int k = 0; k < np; k++)
            c->params[k] = params[k];
        c->nparams = np;
    }
    return true;
}

static const char *method_name(int m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "OTHER";
    }
}

int api_route(req_ctx_t *c, int method, const char *raw, char **segs, int nsegs, char *allow,
              size_t allow_size)
{
    bool path_known = false;
    allow[0] = '\0';
    c->route = NULL;
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(routes) && !c->route; i++) {
        if (!match(routes[i].pattern, segs, nsegs, NULL))
            continue;
        path_known = true;
        if (routes[i].method == method) {
            match(routes[i].pattern, segs, nsegs, c);
            c->route = &routes[i];
        } else {
            size_t used = strlen(allow);
            snprintf(allow + used, allow_size - used, "%s%s", used ? ", " : "",
                     method_name(routes[i].method));
        }
    }
    if (c->route)
        return 0;
    if (path_known)
        return ctx_fail(c, 405, "BAD_REQUEST", "%s is not allowed here (allowed: %s)",
                        method_name(method), allow);
    return ctx_fail(c, 404, "ENDPOINT_NOT_FOUND", "no such endpoint: %s", raw);
}

static void reply(req_ctx_t *c, int st)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(oh, "X-Request-Id", c->request_id);
    if (c->err_code) {
        if (st == 401)
            evhttp_add_header(oh, "WWW-Authenticate",
                              "Bearer realm=\"mlops-registry\", error=\"invalid_token\"");
        if (c->retry_after_s > 0) {
            char ra[16];
            snprintf(ra, sizeof(ra), "%d", c->retry_after_s);
            evhttp_add_header(oh, "Retry-After", ra);
        }
        json_t *body = json_pack("{s:s,s:s}", "error_code", c->err_code, "message",
                                 c->err_msg ? c->err_msg : "");
        http_reply_json(c->req, st, body);
        return;
    }
    if (c->raw_out) {
        http_reply_text(c->req, st, c->raw_type ? c->raw_type : "application/octet-stream",
                        c->raw_out, c->raw_len);
        return;
    }
    json_t *out = c->out ? c->out : json_object();
    c->out = NULL;
    http_reply_json(c->req, st, out);
}

void ctx_cleanup(req_ctx_t *c)
{
    json_decref(c->in);
    json_decref(c->out);
    json_decref(c->chg.before);
    json_decref(c->chg.detail);
    free(c->body);
    free(c->raw_out);
    free(c->err_msg);
    for (scratch_t *s = c->scratch, *n; s; s = n) {
        n = s->next;
        free(s);
    }
}

/* ---- auth -------------------------------------------------------------------------------- */

/* Valid tokens seen in the last token_cache_ms, by hash: saves a round trip
 * per request. A revocation through this registry empties the cache at
 * once; one through another instance is seen within token_cache_ms. */
#define TOKEN_CACHE_SLOTS 64
struct token_cache {
    char hash[65];
    int64_t id, expires_ms, cached_ms;
    int role;
    char actor[160];
};

/* The slot of a hash: its first 8 hex digits, modulo the size. */
static size_t cache_slot(const char *hash)
{
    uint32_t v = 0;
    for (int i = 0; i < 8 && hash[i]; i++)
        v = v * 16 + (uint32_t)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
    return v % TOKEN_CACHE_SLOTS;
}

static token_cache_t *token_cache_find(registry_t *rg, const char *hash)
{
    if (rg->conf->token_cache_ms <= 0 || !rg->tcache)
        return NULL;
    size_t i = cache_slot(hash);
    token_cache_t *tc = &rg->tcache[i];
    if (strcmp(tc->hash, hash) || mono_ms() - tc->cached_ms > rg->conf->token_cache_ms)
        return NULL;
    return tc;
}

static void token_cache_put(registry_t *rg, const char *hash, int64_t id, int role,
                            int64_t expires_ms, const char *actor)
{
    if (rg->conf->token_cache_ms <= 0)
        return;
    if (!rg->tcache)
        rg->tcache = xcalloc(TOKEN_CACHE_SLOTS, sizeof(*rg->tcache));
    size_t i = cache_slot(hash);
    token_cache_t *tc = &rg->tcache[i];
    str_copy(tc->hash, hash, sizeof(tc->hash));
    tc->id = id;
    tc->role = role;
    tc->expires_ms = expires_ms;
    tc->cached_ms = mono_ms();
    str_copy(tc->actor, actor, sizeof(tc->actor));
}

void token_cache_clear(registry_t *rg)
{
    if (rg->tcache)
        memset(rg->tcache, 0, TOKEN_CACHE_SLOTS * sizeof(*rg->tcache));
}

static int authenticate(req_ctx_t *c)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(c->req);
    int nauth = 0;
    const char *auth = NULL;
    for (struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next)
        if (!strcasecmp(kv->key, "Authorization")) {
            nauth++;
            auth = kv->value;
        }
    if (nauth > 1)
        return ctx_fail(c, 400, "BAD_REQUEST", "more than one Authorization header");
    if (!auth)
        return ctx_fail(c, 401, "UNAUTHENTICATED",
                        "this route needs a bearer token (Authorization: Bearer <token>)");
    if (strncasecmp(auth, "Bearer ", 7))
        return ctx_fail(c, 401, "UNAUTHENTICATED", "only bearer tokens are accepted");
    const char *tok = auth + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len && tok[len - 1] == ' ')
        len--;
    if (!len || len > 200)
        return ctx_fail(c, 401, "UNAUTHENTICATED", "invalid token");
    for (size_t i = 0; i < len; i++) {
        char ch = tok[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return ctx_fail(c, 401, "UNAUTHENTICATED", "invalid token");
    }
    char hash[65];
    sha256_hex(tok, len, hash);
    int64_t id = 0, exp = 0;
    int role = -1;
    bool revoked = false;
    token_cache_t *tc = token_cache_find(c->rg, hash);
    if (tc) {
        id = tc->id;
        role = tc->role;
        exp = tc->expires_ms;
        str_copy(c->actor, tc->actor, sizeof(c->actor));
    } else {
        int st = 0;
        PGresult *r = Q(c, &st,
                        "SELECT id, name, role, expires_ms, revoked_ms FROM api_tokens"
                        " WHERE token_hash = $1",
                        hash);
        if (!r)
            return st;
        if (PQntuples(r) != 1) {
            PQclear(r);
            metric_inc(c->rg->m_auth_failures);
            return ctx_fail(c, 401, "UNAUTHENTICATED", "invalid token");
        }
        if (parse_int64(PQgetvalue(r, 0, 0), &id)) {
            PQclear(r);
            return ctx_fail(c, 500, "INTERNAL_ERROR", "bad token row");
        }
        revoked = !PQgetisnull(r, 0, 4);
        if (PQgetisnull(r, 0, 3) || parse_int64(PQgetvalue(r, 0, 3), &exp))
            exp = 0;
        role = role_parse(PQgetvalue(r, 0, 2));
        snprintf(c->actor, sizeof(c->actor), "token:%lld:%s", (long long)id, PQgetvalue(r, 0, 1));
        PQclear(r);
        if (!revoked && role >= 0)
            token_cache_put(c->rg, hash, id, role, exp, c->actor);
    }
    bool expired = exp && exp <= wall_ms();
    if (revoked || expired || role < 0) {
        metric_inc(c->rg->m_auth_failures);
        return ctx_fail(c, 401, "UNAUTHENTICATED", "token %s", revoked ? "revoked" : "expired");
    }
    c->token_id = id;
    c->role = (role_t)role;
    if (c->role < c->route->role)
        return ctx_fail(c, 403, "PERMISSION_DENIED", "%s %s needs the %s role; this token has %s",
                        method_name(c->route->method), c->route->pattern, role_name(c->route->role),
                        role_name(c->role));
    return 0;
}

/* ---- input --------------------------------------------------------------------------------- */

static int load_input(req_ctx_t *c, const char *query)
{
    size_t limit = (size_t)(c->route->raw_body ? c->rg->conf->max_artifact_bytes
                                               : c->rg->conf->max_body_bytes);
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    if (evbuffer_get_length(in) > limit)
        return ctx_fail(c, 413, "RESOURCE_LIMIT_EXCEEDED", "the body is larger than %zu bytes (%s)",
                        limit, c->route->raw_body ? "max_artifact_bytes" : "max_body_bytes");
    c->body = http_body(c->req, &c->body_len);
    return ctx_parse_input(c, limit, query);
}

int ctx_parse_input(req_ctx_t *c, size_t limit, const char *query)
{
    if (!c->route->raw_body && c->body_len) {
        err_t *e = NULL;
        c->in = mjson_parse_object(c->body, c->body_len, limit, &e);
        if (!c->in) {
            int st = ctx_fail(c, 400, "MALFORMED_REQUEST", "the body is not a JSON object: %s",
                              e ? e->msg : "?");
            err_destroy(e);
            return st;
        }
    }
    if (!c->in)
        c->in = json_object();
    if (query && *query) {
        struct evkeyvalq q;
        q.tqh_first = NULL;
        q.tqh_last = &q.tqh_first;
        if (evhttp_parse_query_str(query, &q)) {
            evhttp_clear_headers(&q);
            return ctx_fail(c, 400, "MALFORMED_REQUEST", "malformed query string");
        }
        json_t *qobj = json_object();
        for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
            json_t *prev = json_object_get(qobj, kv->key);
            json_t *s = json_string(kv->value);
            if (!s) {
                /* the message first: clearing the list frees kv */
                int st = ctx_fail(c, 400, "MALFORMED_REQUEST", "query parameter '%s' is not UTF-8",
                                  kv->key);
                json_decref(qobj);
                evhttp_clear_headers(&q);
                return st;
            }
            if (!prev) {
                json_object_set_new(qobj, kv->key, s);
            } else if (json_is_array(prev)) {
                json_array_append_new(prev, s);
            } else {
                json_t *arr = json_array();
                json_array_append(arr, prev);
                json_array_append_new(arr, s);
                json_object_set_new(qobj, kv->key, arr);
            }
        }
        evhttp_clear_headers(&q);
        const char *k;
        json_t *v;
        json_object_foreach(qobj, k, v)
        {
            if (!json_object_get(c->in, k))
                json_object_set(c->in, k, v);
        }
        json_decref(qobj);
    }
    return 0;
}

bool api_query_has_token(const char *query)
{
    if (!query || !*query)
        return false;
    static const char *const names[] = {"access_token", "token",         "api_key", "apikey",
                                        "auth",         "authorization", "bearer"};
    struct evkeyvalq q;
    q.tqh_first = NULL;
    q.tqh_last = &q.tqh_first;
    bool found = false;
    if (evhttp_parse_query_str(query, &q) == 0) {
        for (struct evkeyval *kv = q.tqh_first; kv && !found; kv = kv->next.tqe_next)
            for (size_t i = 0; i < MLOPS_ARRAY_LEN(names); i++)
                if (!strcasecmp(kv->key, names[i]))
                    found = true;
    }
    evhttp_clear_headers(&q);
    return found;
}

/* ---- writes: one transaction with audit, outbox and idempotency ---------------------------- */

static int idem_key(req_ctx_t *c, const char **keyp)
{
    const char *key =
        evhttp_find_header(evhttp_request_get_input_headers(c->req), "Idempotency-Key");
    *keyp = NULL;
    if (!key)
        return 0;
    size_t n = strlen(key);
    if (!n || n > 200)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "Idempotency-Key must be 1 to 200 characters");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x21 || (unsigned char)key[i] > 0x7e)
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                            "Idempotency-Key must be printable ASCII without spaces");
    *keyp = key;
    return 0;
}

static int run_write(req_ctx_t *c, const char *raw_uri)
{
    registry_t *rg = c->rg;
    int st = 0;
    const char *key;
    if ((st = idem_key(c, &key)))
        return st;
    err_t *e = NULL;
    if (pg_begin(rg->pg, &e)) {
        /* a connection found lost at BEGIN ran nothing: once reset, go on */
        bool again = e && e->retriable && pg_ok(rg->pg);
        err_destroy(e);
        e = NULL;
        if (!again || pg_begin(rg->pg, &e))
            return ctx_db_fail(c, e);
    }
    char tid[24], reqhash[65];
    snprintf(tid, sizeof(tid), "%lld", (long long)c->token_id);
    if (key) {
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_appendf(&sb, "%s %s\n", method_name(c->route->method), raw_uri);
        strbuf_append(&sb, c->body, c->body_len);
        sha256_hex(sb.data, sb.len, reqhash);
        strbuf_cleanup(&sb);
        PGresult *r =
            Q(c, &st,
              "SELECT request_sha256, status, response FROM idempotency_keys"
              " WHERE token_id = $1::bigint AND key = $2 AND created_ms >= $3::bigint",
              tid, key,
              ctx_fmt(c, "%lld", (long long)(wall_ms() - rg->conf->idempotency_ttl_s * 1000)));
        if (!r)
            goto fail;
        if (PQntuples(r) == 1) {
            bool same = !strcmp(PQgetvalue(r, 0, 0), reqhash);
            int64_t code = 200;
            if (parse_int64(PQgetvalue(r, 0, 1), &code))
                code = 200;
            err_t *pe = NULL;
            json_t *resp =
                same ? mjson_parse(PQgetvalue(r, 0, 2), strlen(PQgetvalue(r, 0, 2)), 64u << 20, &pe)
                     : NULL;
            err_destroy(pe);
            PQclear(r);
            pg_rollback(rg->pg);
            if (!same)
                return ctx_fail(c, 422, "RESOURCE_CONFLICT",
                                "Idempotency-Key was used for a different request");
            metric_inc(rg->m_replays);
            evhttp_add_header(evhttp_request_get_output_headers(c->req), "Idempotent-Replayed",
                              "true");
            c->out = resp;
            return (int)code;
        }
        PQclear(r);
    }
    st = c->route->fn(c);
    if (st < 200 || st >= 300)
        goto fail;
    if (c->chg.action) {
        json_t *snap = NULL;
        if (c->chg.model_id) {
            snap = store_snapshot(c, c->chg.model_id, &st);
            if (!snap)
                goto fail;
        }
        json_t *after = json_pack("{s:O?,s:O?}", "change", c->chg.detail, "snapshot", snap);
        char *after_s = mjson_dump(after, NULL);
        char *before_s = c->chg.before ? mjson_dump(c->chg.before, NULL) : NULL;
        char now[24];
        snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
        PGresult *r = Q(c, &st,
                        "INSERT INTO audit_log (at_ms, actor, action, object_type, object,"
                        " before, after, request_id)"
                        " VALUES ($1::bigint, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)",
                        now, c->actor, c->chg.action, c->chg.object_type,
                        c->chg.object ? c->chg.object : "", before_s, after_s, c->request_id);
        free(after_s);
        free(before_s);
        json_decref(after);
        if (!r) {
            json_decref(snap);
            goto fail;
        }
        PQclear(r);
        if (snap) {
            json_t *chg = c->chg.detail ? json_deep_copy(c->chg.detail) : json_object();
            json_object_set_new(chg, "action", json_string(c->chg.action));
            json_t *ev = json_pack("{s:s,s:O,s:s,s:s,s:I,s:o,s:O}", "schema", "model_event/1",
                                   "model", json_object_get(snap, "name"), "actor", c->actor,
                                   "request_id", c->request_id, "at_ms", (json_int_t)wall_ms(),
                                   "change", chg, "snapshot", snap);
            int rc = ctx_outbox(c, &st, json_string_value(json_object_get(snap, "name")), ev);
            json_decref(ev);
            json_decref(snap);
            if (rc)
                goto fail;
        }
    }
    if (key && !c->raw_out && !c->err_code && !c->no_replay) {
        char *resp = c->out ? mjson_dump(c->out, NULL) : xstrdup("{}");
        char code[8], now[24];
        snprintf(code, sizeof(code), "%d", st);
        snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
        PGresult *r =
            Q(c, &st,
              "INSERT INTO idempotency_keys (token_id, key, method, path, request_sha256,"
              " status, response, created_ms)"
              " VALUES ($1::bigint, $2, $3, $4, $5, $6::int, $7, $8::bigint)"
              " ON CONFLICT (token_id, key) DO UPDATE SET method = EXCLUDED.method,"
              " path = EXCLUDED.path, request_sha256 = EXCLUDED.request_sha256,"
              " status = EXCLUDED.status, response = EXCLUDED.response,"
              " created_ms = EXCLUDED.created_ms"
              " WHERE idempotency_keys.created_ms < $9::bigint",
              tid, key, method_name(c->route->method), raw_uri, reqhash, code, resp, now,
              ctx_fmt(c, "%lld", (long long)(wall_ms() - rg->conf->idempotency_ttl_s * 1000)));
        free(resp);
        if (!r)
            goto fail;
        /* no row: another registry recorded this key meanwhile (and is not expired) */
        bool stored = atoi(PQcmdTuples(r)) == 1;
        PQclear(r);
        if (!stored) {
            st = ctx_fail(c, 409, "RESOURCE_CONFLICT",
                          "this Idempotency-Key is being used by a concurrent request: retry");
            goto fail;
        }
    }
    if (pg_commit(rg->pg, &e)) {
        json_decref(c->out);
        c->out = NULL;
        return ctx_db_fail(c, e);
    }
    metric_inc(rg->m_writes);
    relay_kick(rg->relay);
    return st;
fail:
    pg_rollback(rg->pg);
    if (st == 409)
        metric_inc(rg->m_conflicts);
    json_decref(c->out);
    c->out = NULL;
    return st;
}

/* ---- the catch-all ----------------------------------------------------------------------------- */

static void on_api(struct evhttp_request *req, void *arg)
{
    registry_t *rg = arg;
    req_ctx_t c = {0};
    c.rg = rg;
    c.req = req;
    const char *rid = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    bool rid_ok = rid && *rid && strlen(rid) < 64;
    for (const char *p = rid_ok ? rid : ""; *p && rid_ok; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            rid_ok = false;
    if (rid_ok)
        str_copy(c.request_id, rid, sizeof(c.request_id));
    else
        snprintf(c.request_id, sizeof(c.request_id), "reg-%lld-%llu", (long long)wall_ms(),
                 (unsigned long long)++rg->request_seq);

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    const char *raw_uri = evhttp_request_get_uri(req);
    char *segs[API_MAX_SEGS];
    int nsegs = 0, st = 0;
    if (!raw || api_split_path(raw, segs, &nsegs)) {
        st = ctx_fail(&c, 400, "MALFORMED_REQUEST", "malformed request path");
        goto out;
    }
    char allow[64] = "";
    if ((st = api_route(&c, (int)evhttp_request_get_command(req), raw, segs, nsegs, allow,
                        sizeof(allow)))) {
        if (st == 405)
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        goto out;
    }
    if (api_query_has_token(query)) {
        st = ctx_fail(&c, 400, "BAD_REQUEST",
                      "credentials in the query string are refused (they end up in logs): "
                      "send Authorization: Bearer <token>");
        goto out;
    }
    if (c.route->role > ROLE_PUBLIC && (st = authenticate(&c)))
        goto out;
    int wait = ratelimit_take(rg, c.token_id);
    if (wait) {
        c.retry_after_s = wait;
        st = ctx_fail(&c, 429, "REQUEST_LIMIT_EXCEEDED", "rate limit of %lld requests/s exceeded",
                      (long long)rg->conf->rate_limit_rps);
        goto out;
    }
    if ((st = load_input(&c, query)))
        goto out;
    if (c.route->write) {
        if (!rg->durable) {
            c.retry_after_s = 60;
            st = ctx_fail(&c, 503, "TEMPORARILY_UNAVAILABLE",
                          "writes are refused: the database is not durable (%s)",
                          rg->durability_detail);
            goto out;
        }
        if (lifecycle_state(service_lifecycle(rg->svc)) != LC_READY) {
            c.retry_after_s = 1;
            st = ctx_fail(&c, 503, "TEMPORARILY_UNAVAILABLE", "the registry is shutting down");
            goto out;
        }
        st = run_write(&c, raw_uri);
    } else {
        st = c.route->fn(&c);
    }
out:
    reply(&c, st);
    for (int i = 0; i < nsegs; i++)
        free(segs[i]);
    ctx_cleanup(&c);
}

void api_register(registry_t *rg, http_server_t *srv)
{
    http_route(srv,
               EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
                   EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS,
               "/api/*", on_api, rg);
}
