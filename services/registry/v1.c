/* Our own API under /api/v1/: artifacts (model/1, sha256 checked), quality
 * gates, promote with expected_version, rollback, history, audit, tokens. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mjson.h"
#include "model.h"
#include "registry.h"

int mf_new_version(req_ctx_t *c, const model_row_t *m, const char *source, const char *run_id,
                   const char *run_link, const char *desc, int64_t *vid, int64_t *version);

static char *i64s(req_ctx_t *c, int64_t v) { return ctx_fmt(c, "%lld", (long long)v); }

static json_t *rows_json(PGresult *r)
{
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *j = json_loads(PQgetvalue(r, i, 0), 0, NULL);
        if (j)
            json_array_append_new(list, j);
    }
    return list;
}

int v1_routes(req_ctx_t *c)
{
    size_t n;
    const route_def_t *rt = api_routes(&n);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *m = rt[i].method == EVHTTP_REQ_GET      ? "GET"
                        : rt[i].method == EVHTTP_REQ_POST   ? "POST"
                        : rt[i].method == EVHTTP_REQ_PUT    ? "PUT"
                        : rt[i].method == EVHTTP_REQ_PATCH  ? "PATCH"
                        : rt[i].method == EVHTTP_REQ_DELETE ? "DELETE"
                                                            : "OTHER";
        json_array_append_new(list,
                              json_pack("{s:s,s:s,s:s,s:b}", "method", m, "path", rt[i].pattern,
                                        "role", role_name(rt[i].role), "write", rt[i].write));
    }
    c->out = json_pack("{s:o}", "routes", list);
    return 200;
}

int v1_whoami(req_ctx_t *c)
{
    c->out = json_pack("{s:I,s:s,s:s}", "token_id", (json_int_t)c->token_id, "actor", c->actor,
                       "role", role_name(c->role));
    return 200;
}

/* ---- artifacts ------------------------------------------------------------------------------- */

/* Check the body is a model/1 document and matches the client's digest. */
static int check_artifact(req_ctx_t *c, json_t **docp, char sha[65])
{
    sha256_hex(c->body, c->body_len, sha);
    const char *want =
        evhttp_find_header(evhttp_request_get_input_headers(c->req), "X-Artifact-Sha256");
    if (want && strcasecmp(want, sha))
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "the body's sha256 is %s, the X-Artifact-Sha256 header says %s", sha, want);
    if (!c->body_len)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "the body must be a model/1 document");
    err_t *e = NULL;
    json_t *doc = mjson_parse_object(c->body, c->body_len, c->body_len + 1, &e);
    if (!doc) {
        int st = ctx_fail(c, 400, "MALFORMED_REQUEST", "the artifact is not a JSON object: %s",
                          e ? e->msg : "?");
        err_destroy(e);
        return st;
    }
    const char *schema = json_string_value(json_object_get(doc, "schema"));
    if (!schema || strcmp(schema, "model/1")) {
        int st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                          "the artifact's \"schema\" must be \"model/1\" (got %s)",
                          schema ? schema : "none");
        json_decref(doc);
        return st;
    }
    /* the loader the scorer and monitor use: a document they would refuse is
     * refused here, before it can be registered and promoted */
    char why[512];
    model_t *m = model_from_json(doc, why, sizeof(why));
    if (!m) {
        int st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                          "the artifact is not a valid model/1: %s", why);
        json_decref(doc);
        return st;
    }
    model_destroy(m);
    *docp = doc;
    return 0;
}

static int store_artifact(req_ctx_t *c, int64_t vid, const char *sha)
{
    int st = 0;
    /* bytea in hex form ("\x..."): the bytes are kept exactly */
    char *hex = xmalloc(2 * c->body_len + 3);
    memcpy(hex, "\\x", 2);
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < c->body_len; i++) {
        hex[2 + 2 * i] = digits[(unsigned char)c->body[i] >> 4];
        hex[3 + 2 * i] = digits[(unsigned char)c->body[i] & 15];
    }
    hex[2 + 2 * c->body_len] = '\0';
    PGresult *r =
        Q(c, &st,
          "INSERT INTO artifacts (version_id, schema, sha256, size_bytes, body, created_ms)"
          " VALUES ($1::bigint, 'model/1', $2, $3::bigint, $4::bytea, $5::bigint)",
          i64s(c, vid), sha, i64s(c, (int64_t)c->body_len), hex, i64s(c, wall_ms()));
    free(hex);
    if (!r)
        return st;
    PQclear(r);
    return 0;
}

static int record_gates(req_ctx_t *c, int64_t vid, json_t *gates)
{
    if (c->role != ROLE_TRAINER)
        return ctx_fail(c, 403, "PERMISSION_DENIED",
                        "gate results are written only by trainer tokens (this token is %s)",
                        role_name(c->role));
    json_t *passed = json_object_get(gates, "passed");
    if (!json_is_object(gates) || !json_is_boolean(passed))
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "gates must be an object with a boolean \"passed\"");
    char *text = mjson_dump(gates, NULL);
    int st = 0;
    PGresult *r = Q(
        c, &st,
        "UPDATE model_versions SET gates_passed = $2::boolean, gate_results = $3::jsonb,"
        " gates_by = $4, updated_ms = $5::bigint WHERE id = $1::bigint",
        i64s(c, vid), json_is_true(passed) ? "true" : "false", text, c->actor, i64s(c, wall_ms()));
    free(text);
    if (!r)
        return st;
    PQclear(r);
    return 0;
}

static json_t *artifact_info(const char *sha, size_t size)
{
    return json_pack("{s:s,s:s,s:I}", "schema", "model/1", "sha256", sha, "size_bytes",
                     (json_int_t)size);
}

int v1_register(req_ctx_t *c)
{
    int st = 0;
    json_t *doc = NULL;
    char sha[65];
    const char *name = c->params[0];
    if ((st = check_artifact(c, &doc, sha)))
        return st;
    model_row_t m;
    st = store_model(c, name, true, &m);
    if (st == 404) { /* first version of a new model: create it */
        free(c->err_msg);
        c->err_msg = NULL;
        c->err_code = NULL;
        char *now = i64s(c, wall_ms());
        PGresult *r = Q(c, &st,
                        "INSERT INTO registered_models (name, user_id, created_ms, updated_ms)"
                        " VALUES ($1, $2, $3::bigint, $3::bigint) RETURNING id",
                        name, c->actor, now);
        if (!r)
            goto out;
        st = parse_int64(PQgetvalue(r, 0, 0), &m.id);
        PQclear(r);
        m.name = ctx_fmt(c, "%s", name);
    }
    if (st)
        goto out;
    int64_t vid, version;
    const char *desc = json_string_value(json_object_get(doc, "description"));
    if ((st = mf_new_version(c, &m, ctx_fmt(c, "registry:sha256:%s", sha), NULL, NULL, desc, &vid,
                             &version)))
        goto out;
    if ((st = store_artifact(c, vid, sha)))
        goto out;
    json_t *gates = json_object_get(doc, "gates");
    if (gates && (st = record_gates(c, vid, gates)))
        goto out;
    c->chg.action = "model_version.register";
    c->chg.object_type = "model_version";
    c->chg.object = ctx_fmt(c, "%s/%lld", name, (long long)version);
    c->chg.model_id = m.id;
    c->chg.detail = json_pack("{s:I,s:s,s:I}", "version", (json_int_t)version, "sha256", sha,
                              "size_bytes", (json_int_t)c->body_len);
    json_t *mv = store_version_json(c, vid, &st);
    if (!mv)
        goto out;
    c->out =
        json_pack("{s:o,s:o,s:O}", "model_version", mv, "artifact", artifact_info(sha, c->body_len),
                  "gates_passed", gates ? json_object_get(gates, "passed") : json_null());
    st = 201;
out:
    json_decref(doc);
    return st;
}

static int path_version(req_ctx_t *c, bool lock, model_row_t *m, int64_t *version, int64_t *vid)
{
    int64_t v = parse_version(c->params[1]);
    if (v < 1)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "the version in the path must be a positive integer");
    int st = store_model(c, c->params[0], lock, m);
    if (st)
        return st;
    *version = v;
    return store_version_id(c, m, v, vid);
}

int v1_artifact_put(req_ctx_t *c)
{
    int st = 0;
    json_t *doc = NULL;
    char sha[65];
    model_row_t m;
    int64_t version, vid;
    if ((st = check_artifact(c, &doc, sha)))
        return st;
    json_decref(doc);
    if ((st = path_version(c, true, &m, &version, &vid)))
        return st;
    PGresult *r =
        Q(c, &st, "SELECT sha256 FROM artifacts WHERE version_id = $1::bigint", i64s(c, vid));
    if (!r)
        return st;
    if (PQntuples(r) == 1) {
        bool same = !strcmp(PQgetvalue(r, 0, 0), sha);
        PQclear(r);
        if (!same)
            return ctx_fail(c, 409, "RESOURCE_ALREADY_EXISTS",
                            "version %lld already has a different artifact: artifacts are "
                            "immutable, register a new version",
                            (long long)version);
        c->out = json_pack("{s:o}", "artifact", artifact_info(sha, c->body_len));
        return 200; /* the same bytes again: nothing changes */
    }
    PQclear(r);
    if ((st = store_artifact(c, vid, sha)))
        return st;
    c->chg.action = "artifact.upload";
    c->chg.object_type = "model_version";
    c->chg.object = ctx_fmt(c, "%s/%lld", m.name, (long long)version);
    c->chg.model_id = m.id;
    c->chg.detail = json_pack("{s:I,s:s,s:I}", "version", (json_int_t)version, "sha256", sha,
                              "size_bytes", (json_int_t)c->body_len);
    c->out = json_pack("{s:o}", "artifact", artifact_info(sha, c->body_len));
    return 201;
}

int v1_artifact_get(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    if ((st = path_version(c, false, &m, &version, &vid)))
        return st;
    PGresult *r =
        ctx_query(c, &st, "SELECT sha256, body FROM artifacts WHERE version_id = $1::bigint", 1,
                  QPARAMS(i64s(c, vid)));
    if (!r)
        return st;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST", "%s version %lld has no artifact",
                        m.name, (long long)version);
    }
    size_t len = 0;
    unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &len);
    char want[65], got[65];
    str_copy(want, PQgetvalue(r, 0, 0), sizeof(want));
    PQclear(r);
    if (!bytes)
        return ctx_fail(c, 500, "INTERNAL_ERROR", "cannot decode the artifact");
    sha256_hex(bytes, len, got);
    if (strcmp(want, got)) {
        PQfreemem(bytes);
        log_error("artifact %s/%lld: stored sha256 %s, content hashes to %s", m.name,
                  (long long)version, want, got);
        return ctx_fail(c, 500, "INTERNAL_ERROR", "the stored artifact fails its sha256 check");
    }
    c->raw_out = xmalloc(len + 1);
    memcpy(c->raw_out, bytes, len);
    c->raw_len = len;
    c->raw_type = "application/json";
    PQfreemem(bytes);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(oh, "X-Artifact-Sha256", want);
    char *etag = ctx_fmt(c, "\"sha256:%s\"", want);
    evhttp_add_header(oh, "ETag", etag);
    return 200;
}

int v1_gates_put(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    if ((st = path_version(c, true, &m, &version, &vid)))
        return st;
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before || (st = record_gates(c, vid, c->in)))
        return st;
    c->chg.action = "model_version.gates";
    c->chg.object_type = "model_version";
    c->chg.object = ctx_fmt(c, "%s/%lld", m.name, (long long)version);
    c->chg.model_id = m.id;
    c->chg.detail = json_pack("{s:I,s:O}", "version", (json_int_t)version, "gates", c->in);
    c->out = json_pack("{s:I,s:O}", "version", (json_int_t)version, "gates_passed",
                       json_object_get(c->in, "passed"));
    return 200;
}

/* ---- promote / rollback ------------------------------------------------------------------------- */

/* force + reason: force needs an admin (the route already does) and a reason */
static int force_args(req_ctx_t *c, bool *force, const char **reason)
{
    int st = 0;
    *force = false;
    if (in_bool(c, "force", force, &st) < 0)
        return st;
    *reason = in_str(c, "reason");
    /* the role first: a trainer asking to force is refused as such, reason or not */
    if (*force && c->role != ROLE_ADMIN)
        return ctx_fail(c, 403, "PERMISSION_DENIED", "only an admin can force");
    if (*force && (!*reason || !**reason))
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "force needs a non-empty reason");
    return 0;
}

static int expected_arg(req_ctx_t *c, int64_t *expected)
{
    json_t *ev = json_object_get(c->in, "expected_version");
    *expected = -1;
    if (!ev)
        return 0;
    if (json_is_null(ev)) {
        *expected = 0; /* the alias must be unset */
        return 0;
    }
    int st = 0;
    if (in_int(c, "expected_version", expected, &st) < 0)
        return st;
    if (*expected < 1)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "expected_version is a version number, or null for an unset alias");
    return 0;
}

/* The one alias a trainer token may move: the streaming trainer sets it when
 * a new version's gates pass. Everything else (champion, shadow, ...) is an
 * admin's decision. */
#define TRAINER_ALIAS "challenger"

int v1_promote(req_ctx_t *c)
{
    int st = 0;
    int64_t version = 0, expected;
    bool force;
    const char *reason;
    const char *alias = c->params[1];
    if (c->role < ROLE_ADMIN && strcmp(alias, TRAINER_ALIAS) != 0)
        return ctx_fail(c, 403, "PERMISSION_DENIED",
                        "only admins move the alias '%s'; a %s token may move only '%s'", alias,
                        role_name(c->role), TRAINER_ALIAS);
    if (in_int(c, "version", &version, &st) != 0 || version < 1)
        return st ? st
                  : ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                             "parameter 'version' must be a positive integer");
    if ((st = expected_arg(c, &expected)) || (st = force_args(c, &force, &reason)))
        return st;
    model_row_t m;
    if ((st = store_model(c, c->params[0], true, &m)))
        return st;
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before)
        return st;
    if ((st = store_move_alias(c, &m, alias, version, expected, force, reason)) != 200)
        return st;
    c->chg.action = force ? "alias.promote_forced" : "alias.promote";
    c->chg.object_type = "alias";
    c->chg.object = ctx_fmt(c, "%s@%s", m.name, alias);
    c->chg.model_id = m.id;
    c->out = json_pack("{s:s,s:s,s:I,s:O,s:b}", "name", m.name, "alias", alias, "version",
                       (json_int_t)version, "previous_version",
                       json_object_get(c->chg.detail, "from_version"), "forced", force);
    return 200;
}

int v1_rollback(req_ctx_t *c)
{
    int st = 0;
    int64_t expected;
    bool force;
    const char *reason;
    const char *alias = c->params[1];
    if ((st = expected_arg(c, &expected)) || (st = force_args(c, &force, &reason)))
        return st;
    model_row_t m;
    if ((st = store_model(c, c->params[0], true, &m)))
        return st;
    PGresult *r = Q(c, &st,
                    "SELECT v.version, (SELECT h.from_version FROM alias_history h"
                    "  WHERE h.model_id = a.model_id AND h.alias = a.alias"
                    "  AND h.to_version = v.version ORDER BY h.id DESC LIMIT 1)"
                    " FROM model_aliases a JOIN model_versions v ON v.id = a.version_id"
                    " WHERE a.model_id = $1::bigint AND a.alias = $2",
                    i64s(c, m.id), alias);
    if (!r)
        return st;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST", "alias '%s' of %s is not set", alias,
                        m.name);
    }
    int64_t cur = 0, prev = 0;
    bool has_prev = !PQgetisnull(r, 0, 1) && parse_int64(PQgetvalue(r, 0, 1), &prev) == 0;
    if (parse_int64(PQgetvalue(r, 0, 0), &cur))
        cur = 0;
    PQclear(r);
    if (!has_prev)
        return ctx_fail(c, 409, "RESOURCE_CONFLICT",
                        "alias '%s' has no previous holder to roll back to", alias);
    if (expected >= 0 && expected != cur)
        return ctx_fail(c, 409, "RESOURCE_CONFLICT", "alias '%s' is held by version %lld, not %lld",
                        alias, (long long)cur, (long long)expected);
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before)
        return st;
    if ((st = store_move_alias(c, &m, alias, prev, cur, force, reason ? reason : "rollback")) !=
        200)
        return st;
    c->chg.action = "alias.rollback";
    c->chg.object_type = "alias";
    c->chg.object = ctx_fmt(c, "%s@%s", m.name, alias);
    c->chg.model_id = m.id;
    c->out = json_pack("{s:s,s:s,s:I,s:I}", "name", m.name, "alias", alias, "version",
                       (json_int_t)prev, "previous_version", (json_int_t)cur);
    return 200;
}

/* ---- history and audit ---------------------------------------------------------------------------- */

int v1_history(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    if ((st = store_model(c, c->params[0], false, &m)))
        return st;
    const char *alias = in_str(c, "alias");
    PGresult *r =
        Q(c, &st,
          "SELECT json_build_object('id', id, 'alias', alias, 'from_version', from_version,"
          " 'to_version', to_version, 'actor', actor, 'forced', forced, 'reason', reason,"
          " 'at_ms', at_ms) FROM alias_history WHERE model_id = $1::bigint"
          " AND ($2::text IS NULL OR alias = $2) ORDER BY id",
          i64s(c, m.id), alias);
    if (!r)
        return st;
    json_t *aliases = rows_json(r);
    PQclear(r);
    r = Q(c, &st,
          "SELECT json_build_object('id', s.id, 'version', v.version, 'from_stage', s.from_stage,"
          " 'to_stage', s.to_stage, 'actor', s.actor, 'forced', s.forced, 'reason', s.reason,"
          " 'at_ms', s.at_ms) FROM stage_transitions s JOIN model_versions v ON v.id = s.version_id"
          " WHERE v.model_id = $1::bigint ORDER BY s.id",
          i64s(c, m.id));
    if (!r) {
        json_decref(aliases);
        return st;
    }
    json_t *stages = rows_json(r);
    PQclear(r);
    c->out = json_pack("{s:s,s:o,s:o}", "name", m.name, "aliases", aliases, "stages", stages);
    return 200;
}

int v1_audit(req_ctx_t *c)
{
    int st = 0;
    int64_t after = 0, limit = 100;
    if (in_int(c, "after_id", &after, &st) < 0 || in_int(c, "limit", &limit, &st) < 0)
        return st;
    if (limit < 1 || limit > 1000)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "limit must be 1 to 1000");
    PGresult *r = Q(c, &st,
                    "SELECT json_build_object('id', id, 'at_ms', at_ms, 'actor', actor, 'action',"
                    " action, 'object_type', object_type, 'object', object, 'before', before,"
                    " 'after', after, 'request_id', request_id) FROM audit_log"
                    " WHERE id > $1::bigint AND ($2::text IS NULL OR object_type = $2)"
                    " AND ($3::text IS NULL OR object = $3) AND ($4::text IS NULL OR action = $4)"
                    " AND ($5::text IS NULL OR actor = $5) ORDER BY id LIMIT $6::bigint",
                    i64s(c, after), in_str(c, "object_type"), in_str(c, "object"),
                    in_str(c, "action"), in_str(c, "actor"), i64s(c, limit));
    if (!r)
        return st;
    json_t *list = rows_json(r);
    PQclear(r);
    size_t n = json_array_size(list);
    json_t *last = n ? json_object_get(json_array_get(list, n - 1), "id") : NULL;
    c->out =
        json_pack("{s:o,s:O?}", "entries", list, "next_after_id", n == (size_t)limit ? last : NULL);
    return 200;
}

/* ---- tokens ---------------------------------------------------------------------------------------- */

/* "90s", "15m", "12h", "30d", "2w" or plain seconds. */
int parse_duration_s(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v <= 0)
        return -1;
    int64_t mul = 1;
    if (*end) {
        if (end[1])
            return -1;
        switch (*end) {
        case 's': mul = 1; break;
        case 'm': mul = 60; break;
        case 'h': mul = 3600; break;
        case 'd': mul = 86400; break;
        case 'w': mul = 7 * 86400; break;
        default: return -1;
        }
    }
    if (v > (int64_t)100 * 365 * 86400 / mul)
        return -1;
    *out = v * mul;
    return 0;
}

int v1_token_create(req_ctx_t *c)
{
    int st = 0;
    const char *rs = in_req_str(c, "role", &st);
    if (!rs)
        return st;
    int role = role_parse(rs);
    if (role < 0)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "role '%s' is not one of reader, trainer, admin", rs);
    const char *name = in_str(c, "name");
    if (!name || !*name)
        name = rs;
    if (strlen(name) > 100)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "name is longer than 100 bytes");
    int64_t exp_ms = 0;
    const char *expires = in_str(c, "expires");
    int64_t secs;
    if (expires && *expires) {
        if (parse_duration_s(expires, &secs))
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                            "expires '%s' is not a duration like 90s, 15m, 12h, 30d", expires);
        exp_ms = wall_ms() + secs * 1000;
    } else if (in_int(c, "expires_in_s", &secs, &st) == 0) {
        if (secs <= 0)
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "expires_in_s must be positive");
        exp_ms = wall_ms() + secs * 1000;
    } else if (st) {
        return st;
    }
    char tok[72], hash[65];
    if (token_generate(tok, hash))
        return ctx_fail(c, 500, "INTERNAL_ERROR", "no random bytes");
    PGresult *r = Q(c, &st,
                    "INSERT INTO api_tokens (name, token_hash, role, created_by, created_ms,"
                    " expires_ms) VALUES ($1, $2, $3, $4, $5::bigint, $6::bigint) RETURNING id",
                    name, hash, role_name((role_t)role), c->actor, i64s(c, wall_ms()),
                    exp_ms ? i64s(c, exp_ms) : NULL);
    if (!r)
        return st;
    int64_t id = 0;
    if (parse_int64(PQgetvalue(r, 0, 0), &id))
        id = 0;
    PQclear(r);
    c->chg.action = "token.create";
    c->chg.object_type = "token";
    c->chg.object = i64s(c, id);
    c->chg.detail = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)id, "name", name, "role",
                              role_name((role_t)role));
    c->no_replay = true; /* the token is shown once and never stored */
    c->out = json_pack("{s:I,s:s,s:s,s:s,s:o}", "id", (json_int_t)id, "name", name, "role",
                       role_name((role_t)role), "token", tok, "expires_ms",
                       exp_ms ? json_integer(exp_ms) : json_null());
    return 201;
}

int v1_token_list(req_ctx_t *c)
{
    int st = 0;
    PGresult *r = Q0(c, &st,
                     "SELECT json_build_object('id', id, 'name', name, 'role', role, 'created_by',"
                     " created_by, 'created_ms', created_ms, 'expires_ms', expires_ms,"
                     " 'revoked_ms', revoked_ms) FROM api_tokens ORDER BY id");
    if (!r)
        return st;
    c->out = json_pack("{s:o}", "tokens", rows_json(r));
    PQclear(r);
    return 200;
}

int v1_token_revoke(req_ctx_t *c)
{
    int st = 0;
    int64_t id;
    if (parse_int64(c->params[0], &id) || id < 1)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "the token id must be a number");
    PGresult *r = Q(c, &st,
                    "UPDATE api_tokens SET revoked_ms = $2::bigint WHERE id = $1::bigint"
                    " AND revoked_ms IS NULL RETURNING name",
                    i64s(c, id), i64s(c, wall_ms()));
    if (!r)
        return st;
    bool done = PQntuples(r) == 1;
    PQclear(r);
    if (!done)
        return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST", "no live token with id %lld",
                        (long long)id);
    token_cache_clear(c->rg);
    c->chg.action = "token.revoke";
    c->chg.object_type = "token";
    c->chg.object = i64s(c, id);
    c->out = json_pack("{s:I,s:b}", "id", (json_int_t)id, "revoked", 1);
    return 200;
}

/* ---- the deployment record ------------------------------------------------------------------------ */

const char *store_deployment_json_sql(void);

static json_t *deployment_json(req_ctx_t *c, int64_t model_id, int *st)
{
    strbuf_t sql;
    strbuf_init(&sql);
    strbuf_appendf(&sql,
                   "SELECT %s FROM registered_models m LEFT JOIN model_deployments d"
                   " ON d.model_id = m.id WHERE m.id = $1::bigint",
                   store_deployment_json_sql());
    PGresult *r = ctx_query(c, st, sql.data, 1, QPARAMS(i64s(c, model_id)));
    strbuf_cleanup(&sql);
    if (!r)
        return NULL;
    json_t *j = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
    PQclear(r);
    if (!j)
        *st = ctx_fail(c, 500, "INTERNAL_ERROR", "cannot read the deployment record");
    return j;
}

int v1_deploy_get(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    if ((st = store_model(c, c->params[0], false, &m)))
        return st;
    json_t *d = deployment_json(c, m.id, &st);
    if (!d)
        return st;
    c->out = json_pack("{s:s,s:o}", "name", m.name, "deployment", d);
    return 200;
}

int v1_deploy_put(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    if ((st = store_model(c, c->params[0], true, &m)))
        return st;
    json_t *cur = deployment_json(c, m.id, &st);
    if (!cur)
        return st;
    c->chg.before = json_pack("{s:O}", "deployment", cur);
    const char *mode = json_string_value(json_object_get(cur, "mode"));
    double share = json_number_value(json_object_get(cur, "canary_share"));
    bool has_challenger = json_is_integer(json_object_get(cur, "challenger"));
    json_t *mj = json_object_get(c->in, "mode");
    if (mj) {
        mode = json_string_value(mj);
        if (!mode || (strcmp(mode, "canary") && strcmp(mode, "ab"))) {
            json_decref(cur);
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "mode must be \"canary\" or \"ab\"");
        }
    }
    json_t *sj = json_object_get(c->in, "canary_share");
    if (sj) {
        if (!json_is_number(sj) || !(json_number_value(sj) >= 0 && json_number_value(sj) <= 1)) {
            json_decref(cur);
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                            "canary_share must be a number from 0 to 1");
        }
        share = json_number_value(sj);
    }
    char *mode_s = ctx_fmt(c, "%s", mode ? mode : "canary");
    json_decref(cur);
    if ((share > 0 || !strcmp(mode_s, "ab")) && !has_challenger)
        return ctx_fail(c, 409, "INVALID_STATE",
                        "set the challenger alias first: a canary share or A/B mode needs one");
    char sharebuf[32];
    fmt_double_rt(share, sharebuf);
    PGresult *r = Q(c, &st,
                    "INSERT INTO model_deployments (model_id, mode, canary_share, updated_ms,"
                    " updated_by) VALUES ($1::bigint, $2, $3::double precision, $4::bigint, $5)"
                    " ON CONFLICT (model_id) DO UPDATE SET mode = EXCLUDED.mode,"
                    " canary_share = EXCLUDED.canary_share, updated_ms = EXCLUDED.updated_ms,"
                    " updated_by = EXCLUDED.updated_by",
                    i64s(c, m.id), mode_s, sharebuf, i64s(c, wall_ms()), c->actor);
    if (!r)
        return st;
    PQclear(r);
    c->chg.action = "deployment.update";
    c->chg.object_type = "deployment";
    c->chg.object = ctx_fmt(c, "%s", m.name);
    c->chg.model_id = m.id;
    json_t *d = deployment_json(c, m.id, &st);
    if (!d)
        return st;
    c->chg.detail =
        json_pack("{s:s,s:O}", "mode", mode_s, "canary_share", json_object_get(d, "canary_share"));
    c->out = json_pack("{s:s,s:o}", "name", m.name, "deployment", d);
    return 200;
}

/* ---- the model card -------------------------------------------------------------------------------- */

int v1_card(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    if ((st = store_model(c, c->params[0], false, &m)))
        return st;
    PGresult *r =
        Q(c, &st,
          "SELECT json_build_object('name', m.name, 'description', m.description,"
          " 'created_ms', m.created_ms, 'updated_ms', m.updated_ms,"
          " 'tags', COALESCE((SELECT json_object_agg(t.key, t.value) FROM model_tags t"
          "  WHERE t.model_id = m.id), '{}'::json),"
          " 'aliases', COALESCE((SELECT json_object_agg(a.alias, v.version) FROM model_aliases a"
          "  JOIN model_versions v ON v.id = a.version_id WHERE a.model_id = m.id), '{}'::json),"
          " 'versions', COALESCE((SELECT json_agg(json_build_object('version', v.version,"
          "  'stage', v.stage, 'description', v.description, 'source', v.source,"
          "  'run_id', v.run_id, 'created_ms', v.created_ms, 'created_by', v.user_id,"
          "  'gates_passed', v.gates_passed, 'gate_results', v.gate_results,"
          "  'gates_by', v.gates_by, 'artifact', CASE WHEN ar.version_id IS NULL THEN NULL"
          "  ELSE json_build_object('sha256', ar.sha256, 'size_bytes', ar.size_bytes) END,"
          "  'algorithm', COALESCE(doc.j -> 'algo', doc.j -> 'algorithm' -> 'type'),"
          "  'metrics', doc.j -> 'metrics',"
          "  'lineage', doc.j -> 'lineage') ORDER BY v.version DESC)"
          "  FROM model_versions v LEFT JOIN artifacts ar ON ar.version_id = v.id"
          "  LEFT JOIN LATERAL (SELECT convert_from(ar.body, 'UTF8')::jsonb AS j) doc ON true"
          "  WHERE v.model_id = m.id AND v.deleted_ms IS NULL), '[]'::json),"
          " 'alias_moves', (SELECT count(*) FROM alias_history h WHERE h.model_id = m.id))"
          " FROM registered_models m WHERE m.id = $1::bigint",
          i64s(c, m.id));
    if (!r)
        return st;
    json_t *card = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
    PQclear(r);
    if (!card)
        return ctx_fail(c, 500, "INTERNAL_ERROR", "cannot build the model card");
    json_t *d = deployment_json(c, m.id, &st);
    if (!d) {
        json_decref(card);
        return st;
    }
    json_object_set_new(card, "deployment", d);
    c->out = card;
    return 200;
}
