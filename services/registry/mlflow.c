/* MLflow's model-registry REST API (/api/2.0/mlflow/registered-models/...,
 * /model-versions/...), request and response shapes as MLflow documents
 * them. Gates guard alias-set and transitions to Staging/Production. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mjson.h"
#include "registry.h"

const char *store_version_json_sql(void);
const char *store_model_json_sql(void);

static char *now_s(req_ctx_t *c) { return ctx_fmt(c, "%lld", (long long)wall_ms()); }
static char *i64s(req_ctx_t *c, int64_t v) { return ctx_fmt(c, "%lld", (long long)v); }

static json_t *wrap(const char *key, json_t *v)
{
    json_t *o = json_object();
    json_object_set_new(o, key, v);
    return o;
}

static void set_change(req_ctx_t *c, const char *action, const char *type, const char *object,
                       int64_t model_id)
{
    c->chg.action = action;
    c->chg.object_type = type;
    c->chg.object = ctx_fmt(c, "%s", object);
    c->chg.model_id = model_id;
}

static int check_name(req_ctx_t *c, const char *what, const char *s)
{
    size_t n = strlen(s);
    if (n > 256)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "%s is longer than 256 bytes", what);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                            "%s must not contain control characters", what);
    return 0;
}

/* name + version from the input; fills the model row (locked when asked) and version row id */
static int get_version(req_ctx_t *c, bool lock, model_row_t *m, int64_t *version, int64_t *vid)
{
    int st = 0;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    const char *vs = in_str(c, "version");
    int64_t v = -1;
    if (vs)
        v = parse_version(vs);
    else if (json_is_integer(json_object_get(c->in, "version")))
        v = json_integer_value(json_object_get(c->in, "version"));
    if (v < 1)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "parameter 'version' must be a positive integer");
    if ((st = store_model(c, name, lock, m)))
        return st;
    *version = v;
    return store_version_id(c, m, v, vid);
}

/* tags: [{"key": k, "value": v}, ...] into model_tags or version_tags */
static int put_tags(req_ctx_t *c, bool version, int64_t id, json_t *tags)
{
    if (!tags || json_is_null(tags))
        return 0;
    if (!json_is_array(tags))
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "parameter 'tags' must be a list");
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        const char *k = json_string_value(json_object_get(t, "key"));
        json_t *vj = json_object_get(t, "value");
        const char *v = json_is_string(vj) ? json_string_value(vj) : "";
        if (!json_is_object(t) || !k || !*k || (vj && !json_is_string(vj) && !json_is_null(vj)))
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                            "tags[%zu] must be {\"key\": string, \"value\": string}", i);
        int st = 0;
        PGresult *r =
            version
                ? Q(c, &st,
                    "INSERT INTO version_tags (version_id, key, value) VALUES ($1::bigint, $2, $3)"
                    " ON CONFLICT (version_id, key) DO UPDATE SET value = EXCLUDED.value",
                    i64s(c, id), k, v)
                : Q(c, &st,
                    "INSERT INTO model_tags (model_id, key, value) VALUES ($1::bigint, $2, $3)"
                    " ON CONFLICT (model_id, key) DO UPDATE SET value = EXCLUDED.value",
                    i64s(c, id), k, v);
        if (!r)
            return st;
        PQclear(r);
    }
    return 0;
}

/* ---- registered models ------------------------------------------------------------------ */

int mf_rm_create(req_ctx_t *c)
{
    int st = 0;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    if ((st = check_name(c, "name", name)))
        return st;
    const char *desc = in_str(c, "description");
    char *now = now_s(c);
    PGresult *r = Q(c, &st,
                    "INSERT INTO registered_models (name, description, user_id, created_ms,"
                    " updated_ms) VALUES ($1, $2, $3, $4::bigint, $4::bigint) RETURNING id",
                    name, desc ? desc : "", c->actor, now);
    if (!r) {
        if (st == 409)
            return ctx_fail(c, 409, "RESOURCE_ALREADY_EXISTS",
                            "Registered Model (name=%s) already exists.", name);
        return st;
    }
    int64_t id = 0;
    int bad = parse_int64(PQgetvalue(r, 0, 0), &id);
    PQclear(r);
    if (bad)
        return ctx_fail(c, 500, "INTERNAL_ERROR", "bad id");
    if ((st = put_tags(c, false, id, json_object_get(c->in, "tags"))))
        return st;
    set_change(c, "registered_model.create", "registered_model", name, id);
    json_t *j = store_model_json(c, id, &st);
    if (!j)
        return st;
    c->out = wrap("registered_model", j);
    return 200;
}

int mf_rm_get(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name || (st = store_model(c, name, false, &m)))
        return st;
    json_t *j = store_model_json(c, m.id, &st);
    if (!j)
        return st;
    c->out = wrap("registered_model", j);
    return 200;
}

int mf_rm_rename(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    const char *new_name = in_req_str(c, "new_name", &st);
    if (!new_name || (st = check_name(c, "new_name", new_name)))
        return st;
    if ((st = store_model(c, name, true, &m)))
        return st;
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before)
        return st;
    PGresult *r = Q(c, &st,
                    "UPDATE registered_models SET name = $2, updated_ms = $3::bigint"
                    " WHERE id = $1::bigint",
                    i64s(c, m.id), new_name, now_s(c));
    if (!r) {
        if (st == 409)
            return ctx_fail(c, 409, "RESOURCE_ALREADY_EXISTS",
                            "Registered Model (name=%s) already exists.", new_name);
        return st;
    }
    PQclear(r);
    /* the old key on the compacted topic gets a final event: gone, renamed */
    json_t *snap = json_deep_copy(c->chg.before);
    json_object_set_new(snap, "deleted", json_true());
    json_object_set_new(snap, "aliases", json_object());
    json_object_set_new(snap, "versions", json_array());
    json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:I,s:{s:s,s:s},s:o}", "schema", "model_event/1",
                           "model", name, "actor", c->actor, "request_id", c->request_id, "at_ms",
                           (json_int_t)wall_ms(), "change", "action", "registered_model.rename",
                           "renamed_to", new_name, "snapshot", snap);
    int rc = ctx_outbox(c, &st, name, ev);
    json_decref(ev);
    if (rc)
        return st;
    set_change(c, "registered_model.rename", "registered_model", new_name, m.id);
    c->chg.detail = json_pack("{s:s,s:s}", "old_name", name, "new_name", new_name);
    json_t *j = store_model_json(c, m.id, &st);
    if (!j)
        return st;
    c->out = wrap("registered_model", j);
    return 200;
}

int mf_rm_update(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name || (st = store_model(c, name, true, &m)))
        return st;
    const char *desc = in_str(c, "description");
    PGresult *r = Q(c, &st,
                    "UPDATE registered_models SET description = $2, updated_ms = $3::bigint"
                    " WHERE id = $1::bigint",
                    i64s(c, m.id), desc ? desc : "", now_s(c));
    if (!r)
        return st;
    PQclear(r);
    set_change(c, "registered_model.update", "registered_model", name, m.id);
    json_t *j = store_model_json(c, m.id, &st);
    if (!j)
        return st;
    c->out = wrap("registered_model", j);
    return 200;
}

/* Drop every alias of a model (or of one version row, vid > 0), with history rows. */
static int drop_aliases(req_ctx_t *c, const model_row_t *m, int64_t vid)
{
    int st = 0;
    PGresult *r = Q(c, &st,
                    "WITH gone AS (DELETE FROM model_aliases a USING model_versions v"
                    " WHERE a.model_id = $1::bigint AND v.id = a.version_id"
                    " AND ($2::bigint = 0 OR a.version_id = $2::bigint)"
                    " RETURNING a.alias, v.version)"
                    " INSERT INTO alias_history (model_id, alias, from_version, to_version, actor,"
                    " forced, reason, at_ms) SELECT $1::bigint, alias, version, NULL, $3, false,"
                    " 'deleted', $4::bigint FROM gone",
                    i64s(c, m->id), i64s(c, vid), c->actor, now_s(c));
    if (!r)
        return st;
    PQclear(r);
    return 0;
}

int mf_rm_delete(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name || (st = store_model(c, name, true, &m)))
        return st;
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before || (st = drop_aliases(c, &m, 0)))
        return st;
    char *now = now_s(c);
    PGresult *r = Q(c, &st,
                    "UPDATE model_versions SET deleted_ms = $2::bigint WHERE model_id = $1::bigint"
                    " AND deleted_ms IS NULL",
                    i64s(c, m.id), now);
    if (r) {
        PQclear(r);
        r = Q(c, &st,
              "UPDATE registered_models SET deleted_ms = $2::bigint, updated_ms = $2::bigint"
              " WHERE id = $1::bigint",
              i64s(c, m.id), now);
    }
    if (!r)
        return st;
    PQclear(r);
    set_change(c, "registered_model.delete", "registered_model", name, m.id);
    c->out = json_object();
    return 200;
}

/* ---- search: a small parser for MLflow's filter strings -------------------------------------- */

typedef struct search {
    strbuf_t where;
    const char *params[32];
    int np;
    bool versions; /* model versions (else registered models) */
} search_t;

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static char *add_param(req_ctx_t *c, search_t *s, const char *val, size_t len)
{
    char *v = ctx_fmt(c, "%.*s", (int)len, val);
    s->params[s->np++] = v;
    return v;
}

/* Parse one literal: 'str' / "str" (a doubled quote is a quote) or a number. */
static const char *parse_literal(req_ctx_t *c, const char *p, char **out, bool *is_str)
{
    strbuf_t sb;
    strbuf_init(&sb);
    if (*p == '\'' || *p == '"') {
        char q = *p++;
        for (;;) {
            if (!*p) {
                strbuf_cleanup(&sb);
                return NULL;
            }
            if (*p == q) {
                if (p[1] == q) {
                    strbuf_putc(&sb, q);
                    p += 2;
                    continue;
                }
                p++;
                break;
            }
            strbuf_putc(&sb, *p++);
        }
        *is_str = true;
    } else {
        const char *st = p;
        while ((*p >= '0' && *p <= '9') || *p == '-')
            p++;
        if (p == st) {
            strbuf_cleanup(&sb);
            return NULL;
        }
        strbuf_append(&sb, st, (size_t)(p - st));
        *is_str = false;
    }
    *out = ctx_fmt(c, "%s", sb.data ? sb.data : "");
    strbuf_cleanup(&sb);
    return p;
}

static int parse_filter(req_ctx_t *c, search_t *s, const char *filter)
{
    const char *p = skip_ws(filter ? filter : "");
    if (!*p)
        return 0;
    for (;;) {
        if (s->np > 28)
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "filter has too many conditions");
        /* identifier: name, tags.key, tags.`key`, run_id, source_path, version_number */
        const char *id0 = p;
        char tagkey[256] = "";
        bool is_tag = false;
        if (!strncasecmp(p, "tags.", 5) || !strncasecmp(p, "tag.", 4)) {
            p += p[3] == '.' ? 4 : 5;
            is_tag = true;
            size_t n = 0;
            if (*p == '`' || *p == '"') {
                char q = *p++;
                while (*p && *p != q && n < sizeof(tagkey) - 1)
                    tagkey[n++] = *p++;
                if (*p != q)
                    return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "unterminated tag key");
                p++;
            } else {
                while ((*p == '_' || *p == '-' || *p == '.' || (*p >= 'a' && *p <= 'z') ||
                        (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) &&
                       n < sizeof(tagkey) - 1)
                    tagkey[n++] = *p++;
            }
            tagkey[n] = '\0';
            if (!n)
                return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "empty tag key in filter");
        } else {
            while (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
                p++;
        }
        size_t idlen = (size_t)(p - id0);
        p = skip_ws(p);
        /* operator */
        const char *op = NULL;
        static const char *const ops[] = {"!=", "<>", ">=", "<=", "=", ">", "<"};
        for (size_t i = 0; i < MLOPS_ARRAY_LEN(ops) && !op; i++)
            if (!strncmp(p, ops[i], strlen(ops[i]))) {
                op = ops[i];
                p += strlen(ops[i]);
            }
        if (!op) {
            if (!strncasecmp(p, "ILIKE", 5)) {
                op = "ILIKE";
                p += 5;
            } else if (!strncasecmp(p, "LIKE", 4)) {
                op = "LIKE";
                p += 4;
            } else {
                return ctx_fail(
                    c, 400, "INVALID_PARAMETER_VALUE",
                    "filter: expected an operator (=, !=, LIKE, ILIKE, <, >) at '%.20s'", p);
            }
        }
        if (!strcmp(op, "<>"))
            op = "!=";
        p = skip_ws(p);
        char *lit;
        bool is_str;
        p = parse_literal(c, p, &lit, &is_str);
        if (!p)
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "filter: bad or unterminated value");
        bool ordering = op[0] == '<' || op[0] == '>';
        const char *col = NULL;
        if (is_tag) {
            if (ordering || !is_str)
                return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                                "filter: tags compare with =, !=, LIKE or ILIKE to a string");
            add_param(c, s, tagkey, strlen(tagkey));
            add_param(c, s, lit, strlen(lit));
            /* != also matches objects without the tag (MLflow's own client relies
             * on it: it adds tags.`mlflow.prompt.is_prompt` != 'true' to searches) */
            bool neg = !strcmp(op, "!=");
            strbuf_appendf(&s->where,
                           s->versions
                               ? " AND %sEXISTS (SELECT 1 FROM version_tags t"
                                 " WHERE t.version_id = v.id AND t.key = $%d AND t.value %s $%d)"
                               : " AND %sEXISTS (SELECT 1 FROM model_tags t"
                                 " WHERE t.model_id = m.id AND t.key = $%d AND t.value %s $%d)",
                           neg ? "NOT " : "", s->np - 1, neg ? "=" : op, s->np);
        } else {
            if (idlen == 4 && !strncasecmp(id0, "name", 4))
                col = "m.name";
            else if (s->versions && idlen == 6 && !strncasecmp(id0, "run_id", 6))
                col = "v.run_id";
            else if (s->versions && ((idlen == 11 && !strncasecmp(id0, "source_path", 11)) ||
                                     (idlen == 6 && !strncasecmp(id0, "source", 6))))
                col = "v.source";
            else if (s->versions && ((idlen == 14 && !strncasecmp(id0, "version_number", 14)) ||
                                     (idlen == 7 && !strncasecmp(id0, "version", 7))))
                col = "v.version";
            else if (s->versions && idlen == 13 && !strncasecmp(id0, "current_stage", 13))
                col = "v.stage";
            if (!col)
                return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                                "filter: unknown attribute '%.*s'", (int)idlen, id0);
            bool numeric = !strcmp(col, "v.version");
            if (numeric) {
                int64_t n;
                if (parse_int64(lit, &n) || !strcmp(op, "LIKE") || !strcmp(op, "ILIKE"))
                    return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                                    "filter: version_number compares to an integer");
            } else if (ordering || !is_str) {
                return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                                "filter: %s compares with =, !=, LIKE or ILIKE to a string", col);
            }
            add_param(c, s, lit, strlen(lit));
            strbuf_appendf(&s->where, " AND %s %s $%d%s", col, op, s->np, numeric ? "::int" : "");
        }
        p = skip_ws(p);
        if (!*p)
            break;
        if (strncasecmp(p, "AND", 3) || !(p[3] == ' ' || p[3] == '\t' || p[3] == '\n'))
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                            "filter: conditions are joined with AND (at '%.20s')", p);
        p = skip_ws(p + 3);
    }
    return 0;
}

int mf_filter_sql(req_ctx_t *c, bool versions, const char *filter, strbuf_t *where,
                  const char **params, int *np)
{
    search_t s = {.versions = versions};
    strbuf_init(&s.where);
    int st = parse_filter(c, &s, filter);
    if (!st) {
        strbuf_append(where, s.where.data ? s.where.data : "", s.where.len);
        for (int i = 0; i < s.np; i++)
            params[i] = s.params[i];
        *np = s.np;
    }
    strbuf_cleanup(&s.where);
    return st;
}

int mf_order_sql(req_ctx_t *c, bool versions, strbuf_t *order)
{
    json_t *ob = json_object_get(c->in, "order_by");
    json_t *arr = json_is_array(ob) ? json_incref(ob) : json_array();
    if (json_is_string(ob))
        json_array_append(arr, ob);
    size_t i;
    json_t *o;
    int st = 0;
    json_array_foreach(arr, i, o)
    {
        const char *s = json_string_value(o);
        if (!s) {
            st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "order_by entries are strings");
            break;
        }
        char field[64] = "", dir[8] = "ASC";
        if (sscanf(s, "%63s %7s", field, dir) < 1 ||
            (strcasecmp(dir, "ASC") && strcasecmp(dir, "DESC"))) {
            st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "bad order_by '%s'", s);
            break;
        }
        const char *col = NULL;
        if (!strcasecmp(field, "name"))
            col = "m.name";
        else if (!strcasecmp(field, "timestamp") || !strcasecmp(field, "creation_timestamp"))
            col = versions ? "v.created_ms" : "m.created_ms";
        else if (!strcasecmp(field, "last_updated_timestamp"))
            col = versions ? "v.updated_ms" : "m.updated_ms";
        else if (versions &&
                 (!strcasecmp(field, "version_number") || !strcasecmp(field, "version")))
            col = "v.version";
        if (!col) {
            st = ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "cannot order by '%s'", field);
            break;
        }
        strbuf_appendf(order, "%s%s %s", order->len ? ", " : "", col,
                       strcasecmp(dir, "DESC") ? "ASC" : "DESC");
    }
    json_decref(arr);
    if (st)
        return st;
    strbuf_appendf(order, "%s%s", order->len ? ", " : "",
                   versions ? "m.name ASC, v.version DESC, v.id" : "m.name ASC, m.id");
    return 0;
}

static int run_search(req_ctx_t *c, bool versions)
{
    int st = 0;
    int64_t max = versions ? 10000 : 100, offset = 0;
    if (in_int(c, "max_results", &max, &st) < 0)
        return st;
    if (max < 1 || max > (versions ? 200000 : 1000))
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "max_results must be 1 to %d",
                        versions ? 200000 : 1000);
    const char *tok = in_str(c, "page_token");
    if (tok && *tok && (parse_int64(tok, &offset) || offset < 0))
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "bad page_token");
    search_t s = {.versions = versions};
    strbuf_init(&s.where);
    strbuf_t order, sql;
    strbuf_init(&order);
    strbuf_init(&sql);
    if ((st = parse_filter(c, &s, in_str(c, "filter"))) || (st = mf_order_sql(c, versions, &order)))
        goto out;
    /* one row more than asked tells whether there is a next page */
    s.params[s.np++] = ctx_fmt(c, "%lld", (long long)max + 1);
    s.params[s.np++] = ctx_fmt(c, "%lld", (long long)offset);
    if (versions)
        strbuf_appendf(
            &sql,
            "SELECT %s FROM model_versions v JOIN registered_models m ON m.id = v.model_id"
            " WHERE v.deleted_ms IS NULL AND m.deleted_ms IS NULL%s ORDER BY %s"
            " LIMIT $%d::bigint OFFSET $%d::bigint",
            store_version_json_sql(), s.where.data ? s.where.data : "", order.data, s.np - 1, s.np);
    else
        strbuf_appendf(&sql,
                       "SELECT %s FROM registered_models m WHERE m.deleted_ms IS NULL%s"
                       " ORDER BY %s LIMIT $%d::bigint OFFSET $%d::bigint",
                       store_model_json_sql(), s.where.data ? s.where.data : "", order.data,
                       s.np - 1, s.np);
    PGresult *r = ctx_query(c, &st, sql.data, s.np, s.params);
    if (!r)
        goto out;
    json_t *list = json_array();
    int n = PQntuples(r);
    for (int i = 0; i < n && i < max; i++) {
        const char *txt = PQgetvalue(r, i, 0);
        json_t *j = json_loads(txt, 0, NULL);
        if (j)
            json_array_append_new(list, j);
    }
    PQclear(r);
    c->out = json_object();
    json_object_set_new(c->out, versions ? "model_versions" : "registered_models", list);
    if (n > max)
        json_object_set_new(c->out, "next_page_token",
                            json_string(ctx_fmt(c, "%lld", (long long)(offset + max))));
    st = 200;
out:
    strbuf_cleanup(&s.where);
    strbuf_cleanup(&order);
    strbuf_cleanup(&sql);
    return st;
}

int mf_rm_search(req_ctx_t *c) { return run_search(c, false); }
int mf_mv_search(req_ctx_t *c) { return run_search(c, true); }

int mf_rm_latest(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name || (st = store_model(c, name, false, &m)))
        return st;
    json_t *sj = json_object_get(c->in, "stages");
    strbuf_t arr;
    strbuf_init(&arr);
    const char *stages = NULL;
    if (sj && !json_is_null(sj)) {
        json_t *list = json_is_array(sj) ? json_incref(sj) : json_pack("[O]", sj);
        size_t i;
        json_t *v;
        strbuf_putc(&arr, '{');
        json_array_foreach(list, i, v)
        {
            const char *canon = stage_canonical(json_string_value(v));
            if (!canon) {
                json_decref(list);
                strbuf_cleanup(&arr);
                return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                                "stages: '%s' is not one of None, Staging, Production, Archived",
                                json_string_value(v) ? json_string_value(v) : "?");
            }
            strbuf_appendf(&arr, "%s%s", i ? "," : "", canon);
        }
        strbuf_putc(&arr, '}');
        json_decref(list);
        if (arr.len > 2)
            stages = ctx_fmt(c, "%s", arr.data);
    }
    strbuf_cleanup(&arr);
    strbuf_t sql;
    strbuf_init(&sql);
    strbuf_appendf(
        &sql,
        "SELECT %s FROM (SELECT DISTINCT ON (stage) * FROM model_versions"
        " WHERE model_id = $1::bigint AND deleted_ms IS NULL ORDER BY stage, version DESC) v"
        " JOIN registered_models m ON m.id = v.model_id"
        " WHERE $2::text[] IS NULL OR v.stage = ANY($2::text[]) ORDER BY v.version",
        store_version_json_sql());
    PGresult *r = ctx_query(c, &st, sql.data, 2, QPARAMS(i64s(c, m.id), stages));
    strbuf_cleanup(&sql);
    if (!r)
        return st;
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *j = json_loads(PQgetvalue(r, i, 0), 0, NULL);
        if (j)
            json_array_append_new(list, j);
    }
    PQclear(r);
    c->out = wrap("model_versions", list);
    return 200;
}

int mf_rm_set_tag(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    const char *key = in_req_str(c, "key", &st);
    if (!key)
        return st;
    const char *value = in_str(c, "value");
    if ((st = store_model(c, name, true, &m)))
        return st;
    json_t *tags = json_pack("[{s:s,s:s}]", "key", key, "value", value ? value : "");
    st = put_tags(c, false, m.id, tags);
    json_decref(tags);
    if (st)
        return st;
    set_change(c, "registered_model.set_tag", "registered_model", name, m.id);
    c->chg.detail = json_pack("{s:s,s:s}", "key", key, "value", value ? value : "");
    c->out = json_object();
    return 200;
}

int mf_rm_delete_tag(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    const char *key = in_req_str(c, "key", &st);
    if (!key || (st = store_model(c, name, true, &m)))
        return st;
    PGresult *r = Q(c, &st, "DELETE FROM model_tags WHERE model_id = $1::bigint AND key = $2",
                    i64s(c, m.id), key);
    if (!r)
        return st;
    bool gone = atoi(PQcmdTuples(r)) > 0;
    PQclear(r);
    if (!gone)
        return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST", "no tag '%s' on model %s", key, name);
    set_change(c, "registered_model.delete_tag", "registered_model", name, m.id);
    c->chg.detail = json_pack("{s:s}", "key", key);
    c->out = json_object();
    return 200;
}

/* ---- aliases ------------------------------------------------------------------------------- */

static int check_alias(req_ctx_t *c, const char *alias)
{
    size_t n = strlen(alias);
    if (n > 255)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "alias is longer than 255 characters");
    for (size_t i = 0; i < n; i++) {
        char ch = alias[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || (i && (ch == '-' || ch == '.'));
        if (!ok)
            return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                            "alias '%s': use letters, digits, '_' (and '-', '.' after the first)",
                            alias);
    }
    /* MLflow reserves these: they mean "the latest" and "version N" */
    if (!strcasecmp(alias, "latest") ||
        ((alias[0] == 'v' || alias[0] == 'V') && n > 1 && strspn(alias + 1, "0123456789") == n - 1))
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "alias '%s' is reserved", alias);
    return 0;
}

int mf_alias_set(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    const char *alias = in_req_str(c, "alias", &st);
    if (!alias || (st = check_alias(c, alias)))
        return st;
    const char *vs = in_str(c, "version");
    int64_t v = vs ? parse_version(vs) : -1;
    if (v < 1 && json_is_integer(json_object_get(c->in, "version")))
        v = json_integer_value(json_object_get(c->in, "version"));
    if (v < 1)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "parameter 'version' must be a positive integer");
    if ((st = store_model(c, name, true, &m)))
        return st;
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before)
        return st;
    st = store_move_alias(c, &m, alias, v, -1, false, "");
    if (st != 200)
        return st;
    set_change(c, "alias.set", "alias", ctx_fmt(c, "%s@%s", name, alias), m.id);
    c->out = json_object();
    return 200;
}

int mf_alias_delete(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    const char *alias = in_req_str(c, "alias", &st);
    if (!alias || (st = store_model(c, name, true, &m)))
        return st;
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before)
        return st;
    st = store_move_alias(c, &m, alias, 0, -1, false, "");
    if (st != 200)
        return st;
    set_change(c, "alias.delete", "alias", ctx_fmt(c, "%s@%s", name, alias), m.id);
    c->out = json_object();
    return 200;
}

int mf_alias_get(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    const char *alias = in_req_str(c, "alias", &st);
    if (!alias || (st = store_model(c, name, false, &m)))
        return st;
    PGresult *r =
        Q(c, &st, "SELECT version_id FROM model_aliases WHERE model_id = $1::bigint AND alias = $2",
          i64s(c, m.id), alias);
    if (!r)
        return st;
    int64_t vid = 0;
    bool found = PQntuples(r) == 1 && parse_int64(PQgetvalue(r, 0, 0), &vid) == 0;
    PQclear(r);
    if (!found)
        return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST", "Registered model alias %s not found.",
                        alias);
    json_t *j = store_version_json(c, vid, &st);
    if (!j)
        return st;
    c->out = wrap("model_version", j);
    return 200;
}

/* ---- model versions -------------------------------------------------------------------------- */

/* Shared by MLflow's create and our register: a new version row. */
int mf_new_version(req_ctx_t *c, const model_row_t *m, const char *source, const char *run_id,
                   const char *run_link, const char *desc, int64_t *vid, int64_t *version);
int mf_new_version(req_ctx_t *c, const model_row_t *m, const char *source, const char *run_id,
                   const char *run_link, const char *desc, int64_t *vid, int64_t *version)
{
    int st = 0;
    char *now = now_s(c);
    /* the model row is locked: numbers are handed out once, never reused */
    PGresult *r = Q(c, &st,
                    "UPDATE registered_models SET next_version = next_version + 1,"
                    " updated_ms = $2::bigint WHERE id = $1::bigint RETURNING next_version - 1",
                    i64s(c, m->id), now);
    if (!r)
        return st;
    int bad = parse_int64(PQgetvalue(r, 0, 0), version);
    PQclear(r);
    if (bad)
        return ctx_fail(c, 500, "INTERNAL_ERROR", "bad version number");
    r = Q(c, &st,
          "INSERT INTO model_versions (model_id, version, description, user_id, source, run_id,"
          " run_link, created_ms, updated_ms) VALUES ($1::bigint, $2::int, $3, $4, $5, $6, $7,"
          " $8::bigint, $8::bigint) RETURNING id",
          i64s(c, m->id), i64s(c, *version), desc ? desc : "", c->actor, source ? source : "",
          run_id ? run_id : "", run_link ? run_link : "", now);
    if (!r)
        return st;
    bad = parse_int64(PQgetvalue(r, 0, 0), vid);
    PQclear(r);
    return bad ? ctx_fail(c, 500, "INTERNAL_ERROR", "bad version id") : 0;
}

int mf_mv_create(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    const char *name = in_req_str(c, "name", &st);
    if (!name)
        return st;
    const char *source = in_str(c, "source");
    if (!source)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "missing value for parameter 'source'");
    if ((st = store_model(c, name, true, &m)))
        return st;
    int64_t vid, version;
    if ((st = mf_new_version(c, &m, source, in_str(c, "run_id"), in_str(c, "run_link"),
                             in_str(c, "description"), &vid, &version)))
        return st;
    if ((st = put_tags(c, true, vid, json_object_get(c->in, "tags"))))
        return st;
    set_change(c, "model_version.create", "model_version",
               ctx_fmt(c, "%s/%lld", name, (long long)version), m.id);
    c->chg.detail = json_pack("{s:I,s:s}", "version", (json_int_t)version, "source", source);
    json_t *j = store_version_json(c, vid, &st);
    if (!j)
        return st;
    c->out = wrap("model_version", j);
    return 200;
}

int mf_mv_get(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    /* the hot read: one round trip; the lookups below only name what is missing */
    const char *name = in_str(c, "name"), *vs = in_str(c, "version");
    if (name && vs && parse_version(vs) > 0) {
        strbuf_t sql;
        strbuf_init(&sql);
        strbuf_appendf(&sql,
                       "SELECT %s FROM model_versions v JOIN registered_models m"
                       " ON m.id = v.model_id WHERE m.name = $1 AND m.deleted_ms IS NULL"
                       " AND v.version = $2::int AND v.deleted_ms IS NULL",
                       store_version_json_sql());
        PGresult *r = ctx_query(c, &st, sql.data, 2, QPARAMS(name, vs));
        strbuf_cleanup(&sql);
        if (!r)
            return st;
        json_t *j = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
        PQclear(r);
        if (j) {
            c->out = wrap("model_version", j);
            return 200;
        }
    }
    if ((st = get_version(c, false, &m, &version, &vid)))
        return st;
    json_t *j = store_version_json(c, vid, &st);
    if (!j)
        return st;
    c->out = wrap("model_version", j);
    return 200;
}

int mf_mv_update(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    if ((st = get_version(c, true, &m, &version, &vid)))
        return st;
    const char *desc = in_str(c, "description");
    PGresult *r = Q(c, &st,
                    "UPDATE model_versions SET description = $2, updated_ms = $3::bigint"
                    " WHERE id = $1::bigint",
                    i64s(c, vid), desc ? desc : "", now_s(c));
    if (!r)
        return st;
    PQclear(r);
    set_change(c, "model_version.update", "model_version",
               ctx_fmt(c, "%s/%lld", m.name, (long long)version), m.id);
    json_t *j = store_version_json(c, vid, &st);
    if (!j)
        return st;
    c->out = wrap("model_version", j);
    return 200;
}

int mf_mv_delete(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    if ((st = get_version(c, true, &m, &version, &vid)))
        return st;
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before || (st = drop_aliases(c, &m, vid)))
        return st;
    PGresult *r =
        Q(c, &st, "UPDATE model_versions SET deleted_ms = $2::bigint WHERE id = $1::bigint",
          i64s(c, vid), now_s(c));
    if (!r)
        return st;
    PQclear(r);
    set_change(c, "model_version.delete", "model_version",
               ctx_fmt(c, "%s/%lld", m.name, (long long)version), m.id);
    c->chg.detail = json_pack("{s:I}", "version", (json_int_t)version);
    c->out = json_object();
    return 200;
}

int mf_mv_transition(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    const char *stage_in = in_str(c, "stage");
    const char *stage = stage_canonical(stage_in);
    if (!stage)
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE",
                        "stage '%s' is not one of None, Staging, Production, Archived",
                        stage_in ? stage_in : "");
    bool archive = false;
    if (in_bool(c, "archive_existing_versions", &archive, &st) < 0)
        return st;
    if ((st = get_version(c, true, &m, &version, &vid)))
        return st;
    c->chg.before = store_snapshot(c, m.id, &st);
    if (!c->chg.before)
        return st;
    /* our extension: an admin may force a serving stage past the gates, with a reason */
    bool force = false;
    if (in_bool(c, "force", &force, &st) < 0)
        return st;
    const char *reason = in_str(c, "reason");
    if (force && (!reason || !*reason))
        return ctx_fail(c, 400, "INVALID_PARAMETER_VALUE", "force needs a non-empty reason");
    if ((st = store_transition(c, &m, vid, version, stage, archive, force, reason ? reason : "")) !=
        200)
        return st;
    set_change(c, "model_version.transition_stage", "model_version",
               ctx_fmt(c, "%s/%lld", m.name, (long long)version), m.id);
    json_t *j = store_version_json(c, vid, &st);
    if (!j)
        return st;
    c->out = wrap("model_version", j);
    return 200;
}

int mf_mv_set_tag(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    const char *key = in_req_str(c, "key", &st);
    if (!key)
        return st;
    const char *value = in_str(c, "value");
    if ((st = get_version(c, true, &m, &version, &vid)))
        return st;
    json_t *tags = json_pack("[{s:s,s:s}]", "key", key, "value", value ? value : "");
    st = put_tags(c, true, vid, tags);
    json_decref(tags);
    if (st)
        return st;
    set_change(c, "model_version.set_tag", "model_version",
               ctx_fmt(c, "%s/%lld", m.name, (long long)version), m.id);
    c->chg.detail = json_pack("{s:I,s:s,s:s}", "version", (json_int_t)version, "key", key, "value",
                              value ? value : "");
    c->out = json_object();
    return 200;
}

int mf_mv_delete_tag(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    const char *key = in_req_str(c, "key", &st);
    if (!key || (st = get_version(c, true, &m, &version, &vid)))
        return st;
    PGresult *r = Q(c, &st, "DELETE FROM version_tags WHERE version_id = $1::bigint AND key = $2",
                    i64s(c, vid), key);
    if (!r)
        return st;
    bool gone = atoi(PQcmdTuples(r)) > 0;
    PQclear(r);
    if (!gone)
        return ctx_fail(c, 404, "RESOURCE_DOES_NOT_EXIST", "no tag '%s' on %s version %lld", key,
                        m.name, (long long)version);
    set_change(c, "model_version.delete_tag", "model_version",
               ctx_fmt(c, "%s/%lld", m.name, (long long)version), m.id);
    c->chg.detail = json_pack("{s:I,s:s}", "version", (json_int_t)version, "key", key);
    c->out = json_object();
    return 200;
}

int mf_mv_download_uri(req_ctx_t *c)
{
    int st = 0;
    model_row_t m;
    int64_t version, vid;
    if ((st = get_version(c, false, &m, &version, &vid)))
        return st;
    PGresult *r = Q(c, &st,
                    "SELECT v.source, ar.sha256 IS NOT NULL FROM model_versions v"
                    " LEFT JOIN artifacts ar ON ar.version_id = v.id WHERE v.id = $1::bigint",
                    i64s(c, vid));
    if (!r)
        return st;
    bool stored = !strcmp(PQgetvalue(r, 0, 1), "t");
    char *source = ctx_fmt(c, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    char *uri = source;
    if (stored) {
        const char *host = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Host");
        char *enc = evhttp_uriencode(m.name, -1, 0);
        uri = ctx_fmt(c, "http://%s/api/v1/models/%s/versions/%lld/artifact",
                      host ? host : "127.0.0.1:8080", enc ? enc : "", (long long)version);
        free(enc);
    }
    c->out = json_pack("{s:s}", "artifact_uri", uri);
    return 200;
}
