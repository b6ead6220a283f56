/* Shared queries: model and version lookups, MLflow-shaped JSON (built by
 * Postgres with json_build_object from fixed SQL), the model_event/1
 * snapshot, and the moves that gates guard (aliases and stages). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mjson.h"
#include "registry.h"

/* MLflow ModelVersion for row v (m = its model). Fixed text, no input. */
#define VERSION_JSON                                                                               \
    "json_build_object('name', m.name, 'version', v.version::text,"                                \
    " 'creation_timestamp', v.created_ms, 'last_updated_timestamp', v.updated_ms,"                 \
    " 'user_id', v.user_id, 'current_stage', v.stage, 'description', v.description,"               \
    " 'source', v.source, 'run_id', v.run_id, 'status', v.status, 'run_link', v.run_link,"         \
    " 'tags', COALESCE((SELECT json_agg(json_build_object('key', t.key, 'value', t.value)"         \
    "  ORDER BY t.key) FROM version_tags t WHERE t.version_id = v.id), '[]'::json),"               \
    " 'aliases', COALESCE((SELECT json_agg(a.alias ORDER BY a.alias) FROM model_aliases a"         \
    "  WHERE a.version_id = v.id), '[]'::json))"

#define MODEL_JSON                                                                                 \
    "json_build_object('name', m.name, 'creation_timestamp', m.created_ms,"                        \
    " 'last_updated_timestamp', m.updated_ms, 'user_id', m.user_id,"                               \
    " 'description', m.description,"                                                               \
    " 'latest_versions', COALESCE((SELECT json_agg(" VERSION_JSON " ORDER BY v.version)"           \
    "  FROM (SELECT DISTINCT ON (stage) * FROM model_versions"                                     \
    "   WHERE model_id = m.id AND deleted_ms IS NULL ORDER BY stage, version DESC) v),"            \
    "  '[]'::json),"                                                                               \
    " 'tags', COALESCE((SELECT json_agg(json_build_object('key', t.key, 'value', t.value)"         \
    "  ORDER BY t.key) FROM model_tags t WHERE t.model_id = m.id), '[]'::json),"                   \
    " 'aliases', COALESCE((SELECT json_agg(json_build_object('alias', a.alias,"                    \
    "  'version', v.version::text) ORDER BY a.alias) FROM model_aliases a"                         \
    "  JOIN model_versions v ON v.id = a.version_id WHERE a.model_id = m.id), '[]'::json))"

/* The holder of one alias of model m (NULL when unset). */
#define ALIAS_VERSION(alias)                                                                       \
    "(SELECT v.version FROM model_aliases a JOIN model_versions v ON v.id = a.version_id"          \
    " WHERE a.model_id = m.id AND a.alias = '" alias "')"

/* The deployment record of model m (d = its model_deployments row, if any). */
#define DEPLOYMENT_JSON                                                                            \
    "json_build_object('mode', COALESCE(d.mode, 'canary'),"                                        \
    " 'canary_share', COALESCE(d.canary_share, 0), 'champion', " ALIAS_VERSION(                    \
        "champion") ","                                                                            \
                    " 'challenger', " ALIAS_VERSION("challenger") ", 'shadow', " ALIAS_VERSION(    \
                        "shadow") ","                                                              \
                                  " 'updated_by', d.updated_by, 'updated_ms', d.updated_ms)"

const char *store_deployment_json_sql(void);
const char *store_deployment_json_sql(void) { return DEPLOYMENT_JSON; }
const char *store_version_json_sql(void);
const char *store_model_json_sql(void);
const char *store_version_json_sql(void) { return VERSION_JSON; }
const char *store_model_json_sql(void) { return MODEL_JSON; }

int64_t parse_version(const char *s)
{
    int64_t v;
    if (!s || parse_int64(s, &v) || v < 1 || v > 2147483647)
        return -1;
    return v;
}

const char *stage_canonical(const char *s)
{
    static const char *const stages[] = {"None", "Staging", "Production", "Archived"};
    if (!s)
        return NULL;
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(stages); i++)
        if (!strcasecmp(s, stages[i]))
            return stages[i];
    return NULL;
}

int store_model(req_ctx_t *c, const char *name, bool lock, model_row_t *m)
{
    int st = 0;
    PGresult *r = lock ? Q(c, &st,
                           "SELECT id, name FROM registered_models WHERE name = $1"
                           " AND deleted_ms IS NULL FOR UPDATE",
                           name)
                       : Q(c, &st,
                           "SELECT id, name FROM registered_models WHERE name = $1"
                           " AND deleted_ms IS NULL",
                           name);
    if (!r)
        return st;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST",
                        "Registered Model with name=%s not found", name);
    }
    if (parse_int64(PQgetvalue(r, 0, 0), &m->id)) {
        PQclear(r);
        return ctx_fail(c, 500, "INTERNAL_ERROR", "bad model row");
    }
    m->name = ctx_fmt(c, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    return 0;
}

int store_version_id(req_ctx_t *c, const model_row_t *m, int64_t version, int64_t *vid)
{
    int st = 0;
    char *mid = ctx_fmt(c, "%lld", (long long)m->id), *ver = ctx_fmt(c, "%lld", (long long)version);
    PGresult *r = Q(c, &st,
                    "SELECT id FROM model_versions WHERE model_id = $1::bigint"
                    " AND version = $2::int AND deleted_ms IS NULL",
                    mid, ver);
    if (!r)
        return st;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST",
                        "Model Version (name=%s, version=%lld) not found", m->name,
                        (long long)version);
    }
    int rc = parse_int64(PQgetvalue(r, 0, 0), vid);
    PQclear(r);
    return rc ? ctx_fail(c, 500, "INTERNAL_ERROR", "bad version row") : 0;
}

static json_t *json_from_result(req_ctx_t *c, PGresult *r, int *st)
{
    if (PQntuples(r) != 1) {
        PQclear(r);
        *st = ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST", "not found");
        return NULL;
    }
    err_t *e = NULL;
    const char *s = PQgetvalue(r, 0, 0);
    json_t *j = mjson_parse(s, strlen(s), 256u << 20, &e);
    PQclear(r);
    if (!j) {
        *st =
            ctx_fail(c, 500, "INTERNAL_ERROR", "bad JSON from the database: %s", e ? e->msg : "?");
        err_destroy(e);
    }
    return j;
}

json_t *store_model_json(req_ctx_t *c, int64_t model_id, int *st)
{
    PGresult *r = Q(c, st, "SELECT " MODEL_JSON " FROM registered_models m WHERE m.id = $1::bigint",
                    ctx_fmt(c, "%lld", (long long)model_id));
    return r ? json_from_result(c, r, st) : NULL;
}

json_t *store_version_json(req_ctx_t *c, int64_t version_id, int *st)
{
    PGresult *r = Q(c, st,
                    "SELECT " VERSION_JSON " FROM model_versions v"
                    " JOIN registered_models m ON m.id = v.model_id WHERE v.id = $1::bigint",
                    ctx_fmt(c, "%lld", (long long)version_id));
    return r ? json_from_result(c, r, st) : NULL;
}

json_t *store_snapshot(req_ctx_t *c, int64_t model_id, int *st)
{
    PGresult *r =
        Q(c, st,
          "SELECT json_build_object('name', m.name, 'deleted', m.deleted_ms IS NOT NULL,"
          " 'latest_version', (SELECT max(version) FROM model_versions"
          "  WHERE model_id = m.id AND deleted_ms IS NULL),"
          " 'aliases', COALESCE((SELECT json_object_agg(a.alias, json_build_object("
          "  'version', v.version, 'stage', v.stage, 'sha256', ar.sha256)) FROM model_aliases a"
          "  JOIN model_versions v ON v.id = a.version_id"
          "  LEFT JOIN artifacts ar ON ar.version_id = v.id WHERE a.model_id = m.id), '{}'::json),"
          " 'versions', COALESCE((SELECT json_agg(json_build_object('version', v.version,"
          "  'stage', v.stage, 'sha256', ar.sha256, 'size_bytes', ar.size_bytes,"
          "  'gates_passed', v.gates_passed, 'source', v.source) ORDER BY v.version)"
          "  FROM model_versions v LEFT JOIN artifacts ar ON ar.version_id = v.id"
          "  WHERE v.model_id = m.id AND v.deleted_ms IS NULL AND (v.stage <> 'None'"
          "  OR EXISTS (SELECT 1 FROM model_aliases a WHERE a.version_id = v.id))), '[]'::json),"
          " 'deployment', " DEPLOYMENT_JSON ")"
          " FROM registered_models m LEFT JOIN model_deployments d ON d.model_id = m.id"
          " WHERE m.id = $1::bigint",
          ctx_fmt(c, "%lld", (long long)model_id));
    return r ? json_from_result(c, r, st) : NULL;
}

int store_check_gates(req_ctx_t *c, int64_t vid, int64_t version)
{
    int st = 0;
    PGresult *r = Q(c, &st,
                    "SELECT v.gates_passed, ar.schema FROM model_versions v"
                    " LEFT JOIN artifacts ar ON ar.version_id = v.id WHERE v.id = $1::bigint",
                    ctx_fmt(c, "%lld", (long long)vid));
    if (!r)
        return st;
    bool has_artifact =
        PQntuples(r) == 1 && !PQgetisnull(r, 0, 1) && !strcmp(PQgetvalue(r, 0, 1), "model/1");
    bool has_gates = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
    bool passed = has_gates && !strcmp(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    if (!has_artifact)
        return ctx_fail(c, 409, "INVALID_STATE",
                        "version %lld has no model/1 artifact: it cannot be promoted unless an "
                        "admin forces it with a reason",
                        (long long)version);
    if (!has_gates)
        return ctx_fail(c, 409, "INVALID_STATE",
                        "version %lld has no quality gate results: it cannot be promoted unless "
                        "an admin forces it with a reason",
                        (long long)version);
    if (!passed)
        return ctx_fail(c, 409, "INVALID_STATE",
                        "version %lld failed its quality gates: it cannot be promoted unless an "
                        "admin forces it with a reason",
                        (long long)version);
    return 0;
}

static int touch_model(req_ctx_t *c, const model_row_t *m)
{
    int st = 0;
    PGresult *r =
        Q(c, &st, "UPDATE registered_models SET updated_ms = $2::bigint WHERE id = $1::bigint",
          ctx_fmt(c, "%lld", (long long)m->id), ctx_fmt(c, "%lld", (long long)wall_ms()));
    if (!r)
        return st;
    PQclear(r);
    return 0;
}

int store_move_alias(req_ctx_t *c, const model_row_t *m, const char *alias, int64_t to,
                     int64_t expected, bool force, const char *reason)
{
    int st = 0;
    char *mid = ctx_fmt(c, "%lld", (long long)m->id);
    /* the model row is locked by the caller (store_model(..., true)), so
     * every alias change of this model is serialised here */
    PGresult *r = Q(c, &st,
                    "SELECT v.version FROM model_aliases a JOIN model_versions v"
                    " ON v.id = a.version_id WHERE a.model_id = $1::bigint AND a.alias = $2"
                    " FOR UPDATE OF a",
                    mid, alias);
    if (!r)
        return st;
    int64_t cur = 0;
    if (PQntuples(r) == 1 && parse_int64(PQgetvalue(r, 0, 0), &cur))
        cur = 0;
    PQclear(r);
    if (expected >= 0 && cur != expected) {
        metric_inc(c->rg->m_conflicts);
        if (cur)
            return ctx_fail(c, 409, "RESOURCE_CONFLICT",
                            "alias '%s' is held by version %lld, not %lld", alias, (long long)cur,
                            (long long)expected);
        return ctx_fail(c, 409, "RESOURCE_CONFLICT",
                        "alias '%s' is not set (expected version %lld)", alias,
                        (long long)expected);
    }
    char *now = ctx_fmt(c, "%lld", (long long)wall_ms());
    if (to == 0) {
        if (!cur)
            return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST",
                            "Registered model alias %s not found.", alias);
        r = Q(c, &st, "DELETE FROM model_aliases WHERE model_id = $1::bigint AND alias = $2", mid,
              alias);
    } else {
        int64_t vid;
        if ((st = store_version_id(c, m, to, &vid)))
            return st;
        if (!force && (st = store_check_gates(c, vid, to)))
            return st;
        char *vids = ctx_fmt(c, "%lld", (long long)vid);
        if (cur)
            r = Q(c, &st,
                  "UPDATE model_aliases SET version_id = $3::bigint, updated_ms = $4::bigint"
                  " WHERE model_id = $1::bigint AND alias = $2",
                  mid, alias, vids, now);
        else /* a concurrent first set fails on the primary key: 409 */
            r = Q(c, &st,
                  "INSERT INTO model_aliases (model_id, alias, version_id, updated_ms)"
                  " VALUES ($1::bigint, $2, $3::bigint, $4::bigint)",
                  mid, alias, vids, now);
    }
    if (!r)
        return st;
    PQclear(r);
    r = Q(c, &st,
          "INSERT INTO alias_history (model_id, alias, from_version, to_version, actor, forced,"
          " reason, at_ms) VALUES ($1::bigint, $2, $3::int, $4::int, $5, $6::boolean, $7, "
          "$8::bigint)",
          mid, alias, cur ? ctx_fmt(c, "%lld", (long long)cur) : NULL,
          to ? ctx_fmt(c, "%lld", (long long)to) : NULL, c->actor, force ? "true" : "false",
          reason ? reason : "", now);
    if (!r)
        return st;
    PQclear(r);
    if ((st = touch_model(c, m)))
        return st;
    json_decref(c->chg.detail);
    c->chg.detail = json_pack("{s:s,s:o,s:o,s:b,s:s}", "alias", alias, "from_version",
                              cur ? json_integer(cur) : json_null(), "to_version",
                              to ? json_integer(to) : json_null(), "forced", force, "reason",
                              reason ? reason : "");
    return 200;
}

int store_transition(req_ctx_t *c, const model_row_t *m, int64_t vid, int64_t version,
                     const char *stage, bool archive_existing, bool force, const char *reason)
{
    int st = 0;
    char *vids = ctx_fmt(c, "%lld", (long long)vid), *mid = ctx_fmt(c, "%lld", (long long)m->id);
    char *now = ctx_fmt(c, "%lld", (long long)wall_ms());
    bool serving = !strcmp(stage, "Staging") || !strcmp(stage, "Production");
    if (serving && !force && (st = store_check_gates(c, vid, version)))
        return st;
    PGresult *r = Q(c, &st, "SELECT stage FROM model_versions WHERE id = $1::bigint", vids);
    if (!r)
        return st;
    char *from = ctx_fmt(c, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "None");
    PQclear(r);
    json_t *archived = json_array();
    if (archive_existing && serving) {
        r = Q(c, &st,
              "WITH moved AS (UPDATE model_versions SET stage = 'Archived', updated_ms = $4::bigint"
              " WHERE model_id = $1::bigint AND stage = $2 AND id <> $3::bigint"
              " AND deleted_ms IS NULL RETURNING id, version)"
              " INSERT INTO stage_transitions (version_id, from_stage, to_stage, actor, forced,"
              " reason, at_ms) SELECT id, $2, 'Archived', $5, false, 'archive_existing_versions',"
              " $4::bigint FROM moved RETURNING (SELECT string_agg(version::text, ',') FROM moved)",
              mid, stage, vids, now, c->actor);
        if (!r) {
            json_decref(archived);
            return st;
        }
        for (int i = 0; i < PQntuples(r) && i < 1; i++) {
            char *list = ctx_fmt(c, "%s", PQgetvalue(r, i, 0));
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
                int64_t v;
                if (parse_int64(tok, &v) == 0)
                    json_array_append_new(archived, json_integer(v));
            }
        }
        PQclear(r);
    }
    r = Q(c, &st,
          "UPDATE model_versions SET stage = $2, updated_ms = $3::bigint WHERE id = $1::bigint",
          vids, stage, now);
    if (r) {
        PQclear(r);
        r = Q(c, &st,
              "INSERT INTO stage_transitions (version_id, from_stage, to_stage, actor, forced,"
              " reason, at_ms) VALUES ($1::bigint, $2, $3, $4, $5::boolean, $6, $7::bigint)",
              vids, from, stage, c->actor, force ? "true" : "false", reason ? reason : "", now);
    }
    if (!r) {
        json_decref(archived);
        return st;
    }
    PQclear(r);
    if ((st = touch_model(c, m))) {
        json_decref(archived);
        return st;
    }
    json_decref(c->chg.detail);
    c->chg.detail = json_pack("{s:I,s:s,s:s,s:o,s:b,s:s}", "version", (json_int_t)version,
                              "from_stage", from, "to_stage", stage, "archived", archived, "forced",
                              force, "reason", reason ? reason : "");
    return 200;
}
