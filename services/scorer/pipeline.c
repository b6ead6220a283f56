/*
 * One batch of mlops-scorer: every features/1 input gives one served
 * prediction (champion, or challenger for the canary's share of entities)
 * plus one shadow prediction when a shadow model is loaded.
 *
 *   1. decode features/1 (size cap, jansson with duplicate keys refused)
 *   2. find the model inputs missing from each record; look their entities
 *      up in the cache, then in Redis (one pipelined HGETALL round trip
 *      for the batch's misses, with the client's deadline and breaker)
 *   3. route (canary split by entity hash), encode and predict (model.h,
 *      the code `mlopsctl predict` runs); inputs still missing take the
 *      model's imputation values and the prediction is degraded
 *   4. render prediction/1
 *   5. produce: at-least-once, the input offset is stored once all its
 *      outputs are delivered (tracker); exactly-once, inside the open
 *      transaction with the input offsets
 *
 * A record that is not features/1, or whose spec is not the models' spec,
 * is counted, logged (rate-limited) and skipped: its offset moves on.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "log.h"
#include "mjson.h"
#include "records.h"
#include "rollout.h"
#include "scorer.h"

typedef enum lk_state {
    LK_NONE = 0, /* no lookup needed */
    LK_HIT,      /* from the cache */
    LK_FETCH,    /* queued to Redis */
    LK_FAILED,   /* Redis failed or the breaker is open */
} lk_state_t;

/* One entity looked up for the batch. */
typedef struct lookup {
    const char *entity;
    lk_state_t state;
    strbuf_t pairs;
    size_t npairs;
    int64_t row_ts_ms;
} lookup_t;

typedef struct item {
    rd_kafka_message_t *rkm;
    void *handle;
    json_t *doc;
    bool ok;
    const char *event_id, *entity, *event_time;
    int64_t event_time_ms;
    json_t *values; /* jansson path */
    const char *spec_name;
    bool fast; /* decoded by the fast path: values in flat, strings in text */
    jflat_t flat;
    strbuf_t text;
    size_t hint; /* where the last value lookup found its field (fast path) */
    int lookup;  /* index in batch->lookups, -1 none */
    int64_t decode_us, redis_us;
    const char *request_id; /* HTTP: the request's id (no rkm); NULL on the stream */
    bool force_lookup;      /* HTTP: read the online row before cleaning */
} item_t;

typedef struct batch {
    item_t *items;
    lookup_t *lookups;
    size_t cap, nlookups;
    hmap_t *seen; /* entity -> lookup index + 1 (batch-local) */
    strbuf_t out, key;
    const char **argv;
    size_t *argvlen;
    redisReply **replies;
    size_t *fetch; /* lookup indices sent to Redis */
    strbuf_t imputed;
    int64_t now_us;     /* the batch's scoring time */
    char scored_at[40]; /* ... as RFC 3339 */
    double last_score;  /* of the last score_one() */
    bool last_degraded;
} batch_t;

static batch_t *batch_new(size_t cap)
{
    batch_t *b = xcalloc(1, sizeof(*b));
    b->cap = cap;
    b->items = xcalloc(cap, sizeof(item_t));
    for (size_t i = 0; i < cap; i++) {
        jflat_init(&b->items[i].flat);
        strbuf_init(&b->items[i].text);
    }
    b->lookups = xcalloc(cap, sizeof(lookup_t));
    for (size_t i = 0; i < cap; i++)
        strbuf_init(&b->lookups[i].pairs);
    b->seen = hmap_new(NULL);
    strbuf_init(&b->out);
    strbuf_init(&b->key);
    strbuf_init(&b->imputed);
    b->replies = xcalloc(cap, sizeof(redisReply *));
    b->fetch = xcalloc(cap, sizeof(size_t));
    return b;
}

static batch_t *batch_get(scorer_t *sc)
{
    if (!sc->batch)
        sc->batch = batch_new((size_t)sc->conf->batch_size);
    return sc->batch;
}

static void batch_destroy(batch_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->cap; i++) {
        strbuf_cleanup(&b->lookups[i].pairs);
        if (b->items[i].rkm)
            rd_kafka_message_destroy(b->items[i].rkm);
        json_decref(b->items[i].doc);
        jflat_cleanup(&b->items[i].flat);
        strbuf_cleanup(&b->items[i].text);
    }
    free(b->items);
    free(b->lookups);
    hmap_destroy(b->seen);
    strbuf_cleanup(&b->out);
    strbuf_cleanup(&b->key);
    strbuf_cleanup(&b->imputed);
    free(b->replies);
    free(b->fetch);
    free(b);
}

void pipeline_destroy(scorer_t *sc)
{
    batch_destroy(sc->batch);
    sc->batch = NULL;
    batch_destroy(sc->hbatch);
    sc->hbatch = NULL;
}

/* ---- 1. decode --------------------------------------------------------------------- */

static void refuse(scorer_t *sc, item_t *it, metric_t *m, const char *why)
{
    static int64_t last_log_ms;
    it->ok = false;
    metric_inc(m);
    if (mono_ms() - last_log_ms >= 1000) {
        last_log_ms = mono_ms();
        log_emit(LOG_LVL_WARN,
                 LOG_FIELDS(LOG_STR("topic", rd_kafka_topic_name(it->rkm->rkt)),
                            LOG_INT("partition", it->rkm->partition),
                            LOG_INT("offset", it->rkm->offset)),
                 "input not scored: %s", why);
    }
}

/*
 * The fast path of decode: a features/1 record as mlops-ingest writes it (a
 * top-level object whose strings have no escapes, whose `values` and `spec`
 * are flat objects of scalars), read without a JSON tree: the top level is
 * scanned for the spans of its members, `values` and `spec` are parsed by
 * jflat (which refuses anything jansson would read differently). Returns
 * false for anything else (duplicate or escaped keys, escaped strings,
 * arrays, nested values, syntax errors): the caller then uses jansson,
 * which accepts or reports the record as before.
 */
typedef struct span {
    const char *p;
    size_t len;
    bool str; /* a string (p, len: the inside of the quotes) */
} span_t;

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The end of the object or array starting at p (a '{'), strings skipped. */
static const char *skip_object(const char *p, const char *end)
{
    int depth = 0;
    for (; p < end; p++) {
        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            if (p >= end)
                return NULL;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (--depth == 0)
                return p + 1;
        }
    }
    return NULL;
}

/* true, false, null or a JSON number (RFC 8259 grammar). */
static bool scalar_ok(const char *p, size_t n)
{
    if ((n == 4 && (!memcmp(p, "true", 4) || !memcmp(p, "null", 4))) ||
        (n == 5 && !memcmp(p, "false", 5)))
        return true;
    size_t i = 0;
    if (i < n && p[i] == '-')
        i++;
    if (i < n && p[i] == '0')
        i++;
    else if (i < n && p[i] >= '1' && p[i] <= '9')
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    else
        return false;
    if (i < n && p[i] == '.') {
        size_t d = ++i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == n;
}

static bool fast_decode(item_t *it, const char *buf, size_t len)
{
    enum { K_SCHEMA, K_EVENT_ID, K_ENTITY, K_EVENT_TIME, K_SPEC, K_VALUES, K_N };
    static const char *const names[K_N] = {"schema",     "event_id", "entity",
                                           "event_time", "spec",     "values"};
    span_t sp[K_N] = {{0}};
    bool seen[K_N] = {false};
    span_t keys[32];
    size_t nkeys = 0;
    const char *p = buf, *end = buf + len;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return false;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return false;
        const char *k = ++p;
        while (p < end && *p != '"' && *p != '\\')
            p++;
        if (p >= end || *p != '"')
            return false;
        size_t klen = (size_t)(p - k);
        p = skip_ws(p + 1, end);
        if (p >= end || *p++ != ':')
            return false;
        p = skip_ws(p, end);
        if (p >= end)
            return false;
        span_t v = {p, 0, false};
        if (*p == '"') {
            v.p = ++p;
            v.str = true;
            while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
                p++;
            if (p >= end || *p != '"')
                return false;
            v.len = (size_t)(p - v.p);
            p++;
        } else if (*p == '{') {
            const char *q = skip_object(p, end);
            if (!q)
                return false;
            v.len = (size_t)(q - p);
            p = q;
        } else if (*p == '[') {
            return false;
        } else {
            while (p < end && *p != ',' && *p != '}' && *p != ' ' && *p != '\n' && *p != '\t' &&
                   *p != '\r')
                p++;
            v.len = (size_t)(p - v.p);
            if (!scalar_ok(v.p, v.len))
                return false;
        }
        /* every key is kept to refuse duplicates as jansson does (its report) */
        if (nkeys == MLOPS_ARRAY_LEN(keys))
            return false;
        for (size_t j = 0; j < nkeys; j++)
            if (keys[j].len == klen && !memcmp(keys[j].p, k, klen))
                return false;
        keys[nkeys++] = (span_t){k, klen, true};
        for (int i = 0; i < K_N; i++)
            if (klen == strlen(names[i]) && !memcmp(k, names[i], klen)) {
                seen[i] = true;
                sp[i] = v;
            }
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == '}')
            break;
        return false;
    }
    if (skip_ws(p + 1, end) != end)
        return false;
    if (!seen[K_SCHEMA] || !sp[K_SCHEMA].str || sp[K_SCHEMA].len != 10 ||
        memcmp(sp[K_SCHEMA].p, "features/1", 10) || !sp[K_EVENT_ID].str || !sp[K_ENTITY].str ||
        !seen[K_VALUES] || !seen[K_SPEC] || sp[K_VALUES].str || sp[K_SPEC].str ||
        (seen[K_EVENT_TIME] && !sp[K_EVENT_TIME].str))
        return false;
    if (!rec_is_text(sp[K_EVENT_ID].p, sp[K_EVENT_ID].len) ||
        !rec_is_text(sp[K_ENTITY].p, sp[K_ENTITY].len) ||
        (seen[K_EVENT_TIME] && !rec_is_text(sp[K_EVENT_TIME].p, sp[K_EVENT_TIME].len)))
        return false;
    /* spec: only its name is needed (jflat gives it decoded) */
    if (jflat_parse(&it->flat, sp[K_SPEC].p, sp[K_SPEC].len))
        return false;
    const jflat_field_t *name = jflat_get(&it->flat, "name", 4);
    if (!name || name->type != JFLAT_STRING)
        return false;
    strbuf_t *t = &it->text;
    strbuf_reset(t);
    size_t off[4];
    const span_t *strs[4] = {&sp[K_EVENT_ID], &sp[K_ENTITY], &sp[K_EVENT_TIME], NULL};
    for (int i = 0; i < 3; i++) {
        off[i] = t->len;
        if (strs[i]->p)
            strbuf_append(t, strs[i]->p, strs[i]->len);
        strbuf_putc(t, '\0');
    }
    off[3] = t->len;
    strbuf_append(t, name->s, name->s_len);
    strbuf_putc(t, '\0');
    if (jflat_parse(&it->flat, sp[K_VALUES].p, sp[K_VALUES].len))
        return false;
    it->event_id = t->data + off[0];
    it->entity = t->data + off[1];
    it->event_time = seen[K_EVENT_TIME] ? t->data + off[2] : NULL;
    it->spec_name = t->data + off[3];
    it->fast = true;
    it->hint = 0;
    return true;
}

static void decode(scorer_t *sc, const modelset_t *ms, item_t *it)
{
    rd_kafka_message_t *m = it->rkm;
    int64_t t0 = mono_us();
    it->ok = true;
    it->lookup = -1;
    it->redis_us = 0;
    it->fast = false;
    if (m->payload && m->len <= (size_t)sc->conf->max_event_bytes &&
        fast_decode(it, m->payload, m->len)) {
        if (!*it->event_id || !*it->entity) {
            refuse(sc, it, sc->m_refused_decode, "empty event_id or entity");
            return;
        }
        if (strcmp(it->spec_name, ms->role[ROLE_CHAMPION]->spec->name)) {
            refuse(sc, it, sc->m_refused_spec, "its spec is not the served models' spec");
            return;
        }
        it->event_time_ms = -1;
        if (it->event_time) {
            json_t *et = json_string(it->event_time);
            if (!et || spec_parse_time(et, &it->event_time_ms))
                it->event_time_ms = -1;
            json_decref(et);
        }
        it->decode_us = mono_us() - t0;
        metric_inc(sc->m_decode_fast);
        return;
    }
    metric_inc(sc->m_decode_tree);
    err_t *e = NULL;
    it->doc = mjson_parse_object(m->payload ? m->payload : "", m->len,
                                 (size_t)sc->conf->max_event_bytes, &e);
    if (!it->doc) {
        char why[600];
        snprintf(why, sizeof(why), "not JSON: %.500s", e ? e->msg : "?");
        err_destroy(e);
        refuse(sc, it, sc->m_refused_decode, why);
        return;
    }
    const char *schema = json_string_value(json_object_get(it->doc, "schema"));
    it->event_id = json_string_value(json_object_get(it->doc, "event_id"));
    it->entity = json_string_value(json_object_get(it->doc, "entity"));
    it->event_time = json_string_value(json_object_get(it->doc, "event_time"));
    it->values = json_object_get(it->doc, "values");
    if (!schema || strcmp(schema, "features/1") || !it->event_id || !it->entity ||
        !json_is_object(it->values)) {
        refuse(sc, it, sc->m_refused_decode,
               "not a features/1 record (schema, event_id, entity, values)");
        return;
    }
    const char *spec = json_string_value(json_object_get(json_object_get(it->doc, "spec"), "name"));
    if (!spec || strcmp(spec, ms->role[ROLE_CHAMPION]->spec->name)) {
        refuse(sc, it, sc->m_refused_spec, "its spec is not the served models' spec");
        return;
    }
    it->event_time_ms = -1;
    json_t *et = json_object_get(it->doc, "event_time");
    if (et && spec_parse_time(et, &it->event_time_ms))
        it->event_time_ms = -1;
    it->decode_us = mono_us() - t0;
}

/* A record value as a spec value (numbers, booleans as 0/1, strings). */
static void value_from_json(const json_t *v, const model_input_t *in, spec_value_t *out)
{
    out->kind = SPEC_V_MISSING;
    if (!v || json_is_null(v))
        return;
    if (json_is_number(v)) {
        out->kind = SPEC_V_NUM;
        out->num = json_number_value(v);
    } else if (json_is_boolean(v)) {
        out->kind = SPEC_V_NUM;
        out->num = json_is_true(v) ? 1 : 0;
    } else if (json_is_string(v)) {
        if (in->categorical) {
            out->kind = SPEC_V_STR;
            out->str = json_string_value(v);
        } else if (parse_double(json_string_value(v), &out->num) == 0) {
            out->kind = SPEC_V_NUM;
        }
    }
}

/* A jflat field as a spec value (as value_from_json on jansson's value). */
static void value_from_flat(const jflat_field_t *f, const model_input_t *in, spec_value_t *out)
{
    out->kind = SPEC_V_MISSING;
    if (!f)
        return;
    switch (f->type) {
    case JFLAT_NULL: return;
    case JFLAT_FALSE:
    case JFLAT_TRUE:
        out->kind = SPEC_V_NUM;
        out->num = f->type == JFLAT_TRUE ? 1 : 0;
        return;
    case JFLAT_INT:
        out->kind = SPEC_V_NUM;
        out->num = (double)f->i;
        return;
    case JFLAT_REAL:
        out->kind = SPEC_V_NUM;
        out->num = f->d;
        return;
    case JFLAT_STRING:
        if (in->categorical) {
            out->kind = SPEC_V_STR;
            out->str = f->s;
        } else if (parse_double(f->s, &out->num) == 0) {
            out->kind = SPEC_V_NUM;
        }
        return;
    }
}

/* The record's field @p key, searching from where the last lookup stopped
 * (model inputs mostly come in the record's order). */
static const jflat_field_t *flat_find(item_t *it, const char *key)
{
    const jflat_t *jf = &it->flat;
    size_t len = strlen(key);
    for (size_t k = 0; k < jf->n; k++) {
        size_t i = (it->hint + k) % jf->n;
        if (jf->fields[i].key_len == len && !memcmp(jf->fields[i].key, key, len)) {
            it->hint = i + 1;
            return &jf->fields[i];
        }
    }
    return NULL;
}

/* The record's value of model input @p in. */
static void item_value(item_t *it, const model_input_t *in, spec_value_t *out)
{
    if (it->fast)
        value_from_flat(flat_find(it, in->column), in, out);
    else
        value_from_json(json_object_get(it->values, in->column), in, out);
}

/* An online-row text value as a spec value. */
static bool value_from_text(const char *s, const model_input_t *in, spec_value_t *out)
{
    out->kind = SPEC_V_MISSING;
    if (!s)
        return false;
    if (in->categorical) {
        out->kind = SPEC_V_STR;
        out->str = s;
        return true;
    }
    if (parse_double(s, &out->num) || !isfinite(out->num))
        return false;
    out->kind = SPEC_V_NUM;
    return true;
}

static bool needs_lookup(const modelset_t *ms, item_t *it)
{
    for (int r = 0; r < ROLE_N; r++) {
        const smodel_t *sm = ms->role[r];
        if (!sm)
            continue;
        size_t n;
        const model_input_t *in = model_inputs(sm->m, &n);
        for (size_t i = 0; i < n; i++) {
            spec_value_t v;
            item_value(it, &in[i], &v);
            if (v.kind == SPEC_V_MISSING)
                return true;
        }
    }
    return false;
}

/* ---- 2. enrich --------------------------------------------------------------------- */

static const char *lookup_field(const lookup_t *lk, const char *name)
{
    const char *p = lk->pairs.data;
    for (size_t i = 0; p && i < lk->npairs; i++) {
        const char *v = p + strlen(p) + 1;
        if (!strcmp(p, name))
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

static void enrich(scorer_t *sc, const modelset_t *ms, batch_t *b, size_t n)
{
    b->nlookups = 0;
    size_t nfetch = 0;
    int64_t now = mono_ms();
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        if (!it->ok || !(it->force_lookup || needs_lookup(ms, it)))
            continue;
        uintptr_t idx = (uintptr_t)hmap_get(b->seen, it->entity);
        if (idx) {
            it->lookup = (int)(idx - 1);
            continue;
        }
        lookup_t *lk = &b->lookups[b->nlookups];
        it->lookup = (int)b->nlookups;
        hmap_put(b->seen, it->entity, (void *)(uintptr_t)(++b->nlookups));
        lk->entity = it->entity;
        strbuf_reset(&lk->pairs);
        lk->npairs = 0;
        lk->row_ts_ms = -1;
        if (!sc->rc) {
            lk->state = LK_FAILED;
            continue;
        }
        const ocache_entry_t *ce = ocache_get(sc->cache, it->entity, now);
        if (ce) {
            lk->state = LK_HIT;
            strbuf_append(&lk->pairs, ce->pairs, ce->len);
            lk->npairs = ce->npairs;
            lk->row_ts_ms = ce->row_ts_ms;
            continue;
        }
        lk->state = LK_FETCH;
        b->fetch[nfetch++] = (size_t)it->lookup;
    }
    /* forget the batch-local index */
    for (size_t i = 0; i < b->nlookups; i++)
        hmap_del(b->seen, b->lookups[i].entity);
    if (!nfetch)
        return;
    int64_t t0 = mono_us();
    const char *view = ms->role[ROLE_CHAMPION]->spec->view;
    strbuf_reset(&b->key);
    size_t *key_off = xcalloc(nfetch, sizeof(size_t));
    for (size_t j = 0; j < nfetch; j++) {
        key_off[j] = b->key.len;
        strbuf_appendf(&b->key, "mlops:online:%s:%s", view, b->lookups[b->fetch[j]].entity);
        strbuf_putc(&b->key, '\0');
    }
    for (size_t j = 0; j < nfetch; j++) {
        const char *argv[2] = {"HGETALL", b->key.data + key_off[j]};
        redis_append_argv(sc->rc, 2, argv, NULL);
    }
    free(key_off);
    err_t *e = NULL;
    if (redis_pipeline_exec(sc->rc, b->replies, nfetch, &e)) {
        static int64_t last_log_ms;
        metric_inc(sc->m_redis_errors);
        if (mono_ms() - last_log_ms >= 1000) {
            last_log_ms = mono_ms();
            log_warn("online store: %s: scoring with imputation values (degraded)",
                     e ? e->msg : "?");
        }
        err_destroy(e);
        for (size_t j = 0; j < nfetch; j++)
            b->lookups[b->fetch[j]].state = LK_FAILED;
    } else {
        now = mono_ms();
        for (size_t j = 0; j < nfetch; j++) {
            lookup_t *lk = &b->lookups[b->fetch[j]];
            redisReply *r = b->replies[j];
            if (r && r->type == REDIS_REPLY_ARRAY) {
                for (size_t k = 0; k + 1 < r->elements; k += 2) {
                    redisReply *f = r->element[k], *v = r->element[k + 1];
                    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                        continue;
                    if (!strcmp(f->str, "_ts")) {
                        int64_t ts;
                        if (parse_int64(v->str, &ts) == 0)
                            lk->row_ts_ms = ts;
                    }
                    strbuf_append(&lk->pairs, f->str, f->len);
                    strbuf_putc(&lk->pairs, '\0');
                    strbuf_append(&lk->pairs, v->str, v->len);
                    strbuf_putc(&lk->pairs, '\0');
                    lk->npairs++;
                }
                ocache_put(sc->cache, lk->entity, lk->pairs.data ? lk->pairs.data : "",
                           lk->pairs.len, lk->npairs, lk->row_ts_ms, now);
            } else {
                lk->state = LK_FAILED;
            }
            freeReplyObject(r);
            b->replies[j] = NULL;
        }
    }
    int64_t dt = mono_us() - t0;
    metric_observe(sc->m_stage[STAGE_REDIS], (double)dt / 1e6);
    for (size_t i = 0; i < n; i++)
        if (b->items[i].lookup >= 0 && b->lookups[b->items[i].lookup].state != LK_HIT)
            b->items[i].redis_us = dt;
}

/* ---- 3. predict, 4. render ----------------------------------------------------------- */

static void variant_metrics(scorer_t *sc, smodel_t *sm)
{
    if (sm->m_count[0])
        return;
    char l[256], v[32];
    snprintf(v, sizeof(v), "%" PRId64, sm->version);
    metrics_t *m = service_metrics(sc->svc);
    for (int t = 0; t < 2; t++)
        sm->m_count[t] = metrics_counter(
            m, "mlops_scorer_predictions_total",
            "Predictions produced, by role, version and transport (stream or http).",
            metrics_labels(l, sizeof(l), "role", smodel_role_name(sm->role), "version", v,
                           "transport", t ? "http" : "stream", NULL));
    static const double bounds[] = {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95};
    sm->m_hist =
        metrics_histogram(m, "mlops_scorer_score", "Scores, by role.",
                          metrics_labels(l, sizeof(l), "role", smodel_role_name(sm->role), NULL),
                          bounds, MLOPS_ARRAY_LEN(bounds));
}

static void put_str(strbuf_t *out, const char *s) { strbuf_json_str(out, s, strlen(s)); }

static void put_num(strbuf_t *out, double v)
{
    char buf[32];
    if (!isfinite(v)) {
        strbuf_puts(out, "null");
        return;
    }
    strbuf_append(out, buf, fmt_double_rt(v, buf));
}

static void put_i64(strbuf_t *out, int64_t v)
{
    char buf[24];
    char *p = buf + sizeof(buf);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    strbuf_append(out, p, (size_t)(buf + sizeof(buf) - p));
}

/*
 * The parts of a prediction that are the same for every record of a model:
 * the model object through "score": and each input's ,"column": key
 * (escaped once, not per record).
 */
static void render_prepare(smodel_t *sm)
{
    if (sm->r_head)
        return;
    strbuf_t h;
    strbuf_init(&h);
    strbuf_puts(&h, ",\"model\":{\"name\":");
    put_str(&h, sm->name);
    strbuf_puts(&h, ",\"version\":");
    put_i64(&h, sm->version);
    strbuf_puts(&h, ",\"sha256\":");
    put_str(&h, sm->sha256);
    strbuf_appendf(&h, ",\"algo\":\"%s\"},\"role\":\"%s\",\"served\":%s,\"score\":",
                   model_algo_name(model_algo(sm->m)), smodel_role_name(sm->role),
                   sm->role == ROLE_SHADOW ? "false" : "true");
    sm->r_head = strbuf_detach(&h, &sm->r_head_len);
    size_t n;
    const model_input_t *in = model_inputs(sm->m, &n);
    sm->r_key_off = xcalloc(n + 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        sm->r_key_off[i] = sm->r_keys.len;
        strbuf_putc(&sm->r_keys, ',');
        put_str(&sm->r_keys, in[i].column);
        strbuf_putc(&sm->r_keys, ':');
    }
    sm->r_key_off[n] = sm->r_keys.len;
}

/*
 * Score @p it with @p sm and append its prediction/1 record to b->out.
 * @p served: this prediction is the decision (champion or challenger).
 */
static bool score_one(scorer_t *sc, batch_t *b, item_t *it, smodel_t *sm, bool served)
{
    int64_t t0 = mono_us();
    const lookup_t *lk = it->lookup >= 0 ? &b->lookups[it->lookup] : NULL;
    size_t n;
    const model_input_t *in = model_inputs(sm->m, &n);
    for (size_t c = 0; c < sm->spec->ncolumns; c++)
        sm->vals[c].kind = SPEC_V_MISSING;
    strbuf_reset(&b->imputed);
    size_t nimputed = 0;
    bool from_row = false;
    for (size_t i = 0; i < n; i++) {
        spec_value_t *v = &sm->vals[in[i].col];
        item_value(it, &in[i], v);
        if (v->kind != SPEC_V_MISSING)
            continue;
        if (lk && (lk->state == LK_HIT || lk->state == LK_FETCH) &&
            value_from_text(lookup_field(lk, in[i].column), &in[i], v)) {
            from_row = true;
            continue;
        }
        if (nimputed++)
            strbuf_putc(&b->imputed, ',');
        put_str(&b->imputed, in[i].column);
    }
    model_encode(sm->m, sm->vals, sm->x);
    double score = model_predict(sm->m, sm->x);
    double thr = model_threshold(sm->m);
    b->last_score = score;
    int64_t t1 = mono_us();
    metric_observe(sc->m_stage[STAGE_PREDICT], (double)(t1 - t0) / 1e6);
    variant_metrics(sc, sm);
    metric_inc(sm->m_count[it->rkm ? 0 : 1]);
    if (isfinite(score))
        metric_observe(sm->m_hist, score);
    bool degraded = nimputed > 0;
    b->last_degraded = degraded;
    if (degraded && served) {
        metric_inc(sc->m_degraded);
        metric_add(sc->m_imputed, (double)nimputed);
    }

    strbuf_t *o = &b->out;
    const rd_kafka_message_t *m = it->rkm;
    render_prepare(sm);
    strbuf_puts(o, "{\"schema\":\"prediction/1\",\"event_id\":");
    put_str(o, it->event_id);
    strbuf_puts(o, ",\"entity\":");
    put_str(o, it->entity);
    if (it->event_time) {
        strbuf_puts(o, ",\"event_time\":");
        put_str(o, it->event_time);
    }
    strbuf_append(o, sm->r_head, sm->r_head_len);
    put_num(o, score);
    strbuf_puts(o, ",\"threshold\":");
    put_num(o, thr);
    strbuf_puts(o, score >= thr ? ",\"decision\":true,\"features\":{"
                                : ",\"decision\":false,\"features\":{");
    for (size_t i = 0; i < n; i++) {
        const spec_value_t *v = &sm->vals[in[i].col];
        strbuf_append(o, sm->r_keys.data + sm->r_key_off[i] + (i ? 0 : 1),
                      sm->r_key_off[i + 1] - sm->r_key_off[i] - (i ? 0 : 1));
        if (v->kind == SPEC_V_NUM)
            put_num(o, v->num);
        else if (v->kind == SPEC_V_STR)
            put_str(o, v->str);
        else
            strbuf_puts(o, "null");
    }
    strbuf_puts(o, degraded ? "},\"degraded\":true,\"imputed\":["
                            : "},\"degraded\":false,\"imputed\":[");
    strbuf_append(o, b->imputed.data ? b->imputed.data : "", b->imputed.len);
    int64_t now_ms = b->now_us / 1000;
    strbuf_puts(o, "],\"freshness\":{\"event_age_ms\":");
    if (it->event_time_ms >= 0)
        put_i64(o, now_ms - it->event_time_ms);
    else
        strbuf_puts(o, "null");
    strbuf_puts(o, ",\"online_age_ms\":");
    if (from_row && lk->row_ts_ms >= 0)
        put_i64(o, now_ms - lk->row_ts_ms);
    else
        strbuf_puts(o, "null");
    strbuf_puts(o, ",\"online\":");
    strbuf_puts(o, !lk                     ? "\"not_needed\""
                   : lk->state == LK_HIT   ? "\"cache\""
                   : lk->state == LK_FETCH ? "\"redis\""
                                           : "\"unavailable\"");
    if (m) {
        strbuf_puts(o, "},\"source\":{\"topic\":");
        put_str(o, rd_kafka_topic_name(m->rkt));
        strbuf_puts(o, ",\"partition\":");
        put_i64(o, m->partition);
        strbuf_puts(o, ",\"offset\":");
        put_i64(o, m->offset);
    } else {
        strbuf_puts(o, "},\"source\":{\"transport\":\"http\",\"request_id\":");
        put_str(o, it->request_id);
    }
    strbuf_puts(o, "},\"scored_at\":\"");
    strbuf_puts(o, b->scored_at);
    int64_t t2 = mono_us();
    metric_observe(sc->m_stage[STAGE_ENCODE], (double)(t2 - t1) / 1e6);
    strbuf_puts(o, "\",\"latency_us\":{\"decode\":");
    put_i64(o, it->decode_us);
    strbuf_puts(o, ",\"redis\":");
    put_i64(o, it->redis_us);
    strbuf_puts(o, ",\"predict\":");
    put_i64(o, t1 - t0);
    strbuf_puts(o, ",\"encode\":");
    put_i64(o, t2 - t1);
    strbuf_puts(o, "}}");
    return score >= thr;
}

/* ---- 5. produce -------------------------------------------------------------------- */

static int produce(scorer_t *sc, item_t *it, const char *data, size_t len)
{
    err_t *e = NULL;
    int rc;
    const char *topic = sc->conf->predictions_topic;
    if (sc->txn) {
        rc = kafka_txn_produce(sc->txn, topic, RD_KAFKA_PARTITION_UA, it->entity,
                               strlen(it->entity), data, len, &e);
    } else {
        kafka_tracker_hold(it->handle);
        rc = kafka_produce(sc->kp, topic, RD_KAFKA_PARTITION_UA, it->entity, strlen(it->entity),
                           data, len, it->handle, &e);
    }
    if (rc) {
        lifecycle_fail(service_lifecycle(sc->svc), MLOPS_EXIT_FAILURE,
                       "cannot produce to %s: %s (input stays uncommitted)", topic,
                       e ? e->msg : "?");
        err_destroy(e);
        return -1;
    }
    return 0;
}

void pipeline_on_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque)
{
    scorer_t *sc = opaque;
    if (rkm->err) {
        lifecycle_fail(service_lifecycle(sc->svc), MLOPS_EXIT_FAILURE,
                       "output to %s failed for good: %s", rd_kafka_topic_name(rkm->rkt),
                       rd_kafka_err2str(rkm->err));
        return;
    }
    if (kafka_tracker_done(sc->tracker, msg_opaque))
        lifecycle_fail(service_lifecycle(sc->svc), MLOPS_EXIT_FAILURE, "cannot store an offset");
}

static void log_swap(scorer_t *sc, const modelset_t *ms)
{
    strbuf_t parts;
    strbuf_init(&parts);
    for (int p = 0; p < (int)MLOPS_ARRAY_LEN(sc->last_offset); p++)
        if (sc->last_offset[p] >= 0)
            strbuf_appendf(&parts, "%s%d:%" PRId64, parts.len ? "," : "", p,
                           sc->last_offset[p] + 1);
    const smodel_t *c = ms->role[ROLE_CHAMPION];
    log_emit(
        LOG_LVL_INFO,
        LOG_FIELDS(LOG_STR("model", c->name), LOG_INT("champion", c->version),
                   LOG_INT("challenger",
                           ms->role[ROLE_CHALLENGER] ? ms->role[ROLE_CHALLENGER]->version : 0),
                   LOG_INT("shadow", ms->role[ROLE_SHADOW] ? ms->role[ROLE_SHADOW]->version : 0),
                   LOG_STR("switch_offsets", parts.data ? parts.data : ""),
                   LOG_STR("topic", sc->conf->input_topic)),
        "model set swapped in: messages from these offsets (partition:offset) on are scored "
        "by the new set");
    strbuf_cleanup(&parts);
}

void pipeline_take_swap(scorer_t *sc)
{
    if (models_swap(sc->models))
        log_swap(sc, models_current(sc->models));
}

void pipeline_on_input(void *opaque)
{
    scorer_t *sc = opaque;
    if (sc->draining)
        return;
    /* between two messages: take a verified new model set if one is ready */
    pipeline_take_swap(sc);
    modelset_t *ms = models_current(sc->models);
    batch_t *b = batch_get(sc);
    size_t n = 0;
    while (n < b->cap) {
        rd_kafka_message_t *m =
            sc->txn ? kafka_txn_poll(sc->txn, 0) : kafka_consumer_poll(sc->kc, 0);
        if (!m)
            break;
        b->items[n].rkm = m;
        b->items[n].handle = NULL;
        b->items[n].doc = NULL;
        b->items[n].request_id = NULL;
        b->items[n].force_lookup = false;
        n++;
    }
    if (n == 0)
        return;
    watchdog_begin(sc->watchdog);
    int64_t t0 = mono_us();
    b->now_us = wall_us();
    fmt_rfc3339(b->now_us, b->scored_at, sizeof(b->scored_at));
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        if (!sc->txn)
            it->handle = kafka_tracker_begin(sc->tracker, rd_kafka_topic_name(it->rkm->rkt),
                                             it->rkm->partition, it->rkm->offset);
        decode(sc, ms, it);
        if (it->ok)
            metric_observe(sc->m_stage[STAGE_DECODE], (double)it->decode_us / 1e6);
    }
    if (sc->conf->enrich)
        enrich(sc, ms, b, n);
    bool failed = false;
    smodel_t *champ = ms->role[ROLE_CHAMPION], *chall = ms->role[ROLE_CHALLENGER],
             *shadow = ms->role[ROLE_SHADOW];
    ab_t *ab = chall ? sc->ab : NULL;
    if (ab)
        ab_set_pair(ab, champ->sha256, chall->sha256);
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        if (it->ok && !failed) {
            strbuf_reset(&b->out);
            int arm = 0; /* 0 champion, 1 challenger */
            if (ab)
                arm = ab_pick(ab);
            else if (chall && rollout_is_challenger(ms->salt, it->entity, strlen(it->entity),
                                                    ms->canary_share))
                arm = 1;
            bool decision = score_one(sc, b, it, arm ? chall : champ, true);
            if (ab)
                ab_note(ab, it->event_id, arm, decision);
            size_t first_len = b->out.len;
            if (shadow)
                score_one(sc, b, it, shadow, false);
            int64_t tp = mono_us();
            if (produce(sc, it, b->out.data, first_len) ||
                (shadow && produce(sc, it, b->out.data + first_len, b->out.len - first_len)))
                failed = true;
            metric_observe(sc->m_stage[STAGE_PRODUCE], (double)(mono_us() - tp) / 1e6);
            metric_inc(sc->m_events[0]);
        }
        if (it->rkm->partition >= 0 &&
            it->rkm->partition < (int32_t)MLOPS_ARRAY_LEN(sc->last_offset))
            sc->last_offset[it->rkm->partition] = it->rkm->offset;
        if (!sc->txn && !failed && kafka_tracker_done(sc->tracker, it->handle))
            lifecycle_fail(service_lifecycle(sc->svc), MLOPS_EXIT_FAILURE,
                           "cannot store an offset");
        json_decref(it->doc);
        it->doc = NULL;
        rd_kafka_message_destroy(it->rkm);
        it->rkm = NULL;
    }
    if (ab)
        ab_flush(ab);
    metric_observe(sc->m_batch_seconds, (double)(mono_us() - t0) / 1e6);
    watchdog_end(sc->watchdog);
    if (failed)
        return;
    if (n == b->cap)
        kafka_watch_again(sc->watch);
}

/* ---- HTTP (serve.c): request instances through the same stages ----------------------- */

/* The entity of an instance as text (trimmed string or integer), or NULL. */
static bool entity_text(const json_t *v, strbuf_t *out)
{
    if (json_is_integer(v)) {
        strbuf_appendf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    }
    const char *s = json_string_value(v);
    if (!s)
        return false;
    size_t n = strlen(s);
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    strbuf_append(out, s, n);
    return n > 0;
}

static bool json_missing(const json_t *v)
{
    if (!v || json_is_null(v))
        return true;
    const char *s = json_string_value(v);
    if (!s)
        return false;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    return !*s;
}

static void http_log(scorer_t *sc, item_t *it, const char *data, size_t len)
{
    if (!sc->hkp)
        return;
    err_t *e = NULL;
    if (kafka_produce(sc->hkp, sc->conf->predictions_topic, RD_KAFKA_PARTITION_UA, it->entity,
                      strlen(it->entity), data, len, NULL, &e)) {
        static int64_t last_log_ms;
        metric_inc(sc->m_http_log_errors);
        if (mono_ms() - last_log_ms >= 1000) {
            last_log_ms = mono_ms();
            log_warn("HTTP prediction not logged to %s: %s", sc->conf->predictions_topic,
                     e ? e->msg : "?");
        }
        err_destroy(e);
    }
}

int pipeline_http(scorer_t *sc, json_t *const *inst, size_t n, const char *request_id, json_t *out,
                  char *err, size_t errsize)
{
    /* no swap here: the caller holds models_current() from before (see scorer.h) */
    modelset_t *ms = models_current(sc->models);
    const spec_t *spec = ms->role[ROLE_CHAMPION]->spec;
    if (!sc->hbatch)
        sc->hbatch = batch_new((size_t)sc->conf->http_max_batch);
    batch_t *b = sc->hbatch;
    if (n > b->cap) {
        snprintf(err, errsize, "%zu instances, the most one request may carry is %zu", n, b->cap);
        return -1;
    }
    b->now_us = wall_us();
    fmt_rfc3339(b->now_us, b->scored_at, sizeof(b->scored_at));
    int64_t t0 = mono_us();
    /* 1. ids: the event id defaults to <request id>-<index>, the event time to now, the
     * entity to the event id (then there is no online row to read) */
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        it->rkm = NULL;
        it->handle = NULL;
        it->request_id = request_id;
        it->fast = false;
        it->lookup = -1;
        it->redis_us = 0;
        it->decode_us = 0;
        json_t *ev = json_copy(inst[i]);
        it->doc = ev;
        if (json_missing(json_object_get(ev, spec->event_id))) {
            char id[200];
            snprintf(id, sizeof(id), "%s-%zu", request_id, i);
            json_object_set_new(ev, spec->event_id, json_string(id));
        }
        if (json_missing(json_object_get(ev, spec->event_time)))
            json_object_set_new(ev, spec->event_time, json_string(b->scored_at));
        strbuf_reset(&it->text);
        it->force_lookup = false;
        if (json_missing(json_object_get(ev, spec->entity)))
            json_object_set(ev, spec->entity, json_object_get(ev, spec->event_id));
        else if (entity_text(json_object_get(ev, spec->entity), &it->text))
            it->force_lookup = sc->conf->enrich;
        strbuf_putc(&it->text, '\0');
        it->entity = it->text.data;
        it->values = ev;
        it->ok = it->force_lookup; /* enrich() reads the rows of these */
    }
    /* 2. the online rows of the named entities (cache, then one Redis round trip) */
    if (sc->conf->enrich)
        enrich(sc, ms, b, n);
    /* 3. absent fields from the online row, then the spec's cleaning and features */
    spec_row_t row;
    spec_row_init(&row, spec);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        item_t *it = &b->items[i];
        json_t *ev = it->doc;
        const lookup_t *lk = it->lookup >= 0 ? &b->lookups[it->lookup] : NULL;
        for (size_t f = 0;
             lk && (lk->state == LK_HIT || lk->state == LK_FETCH) && f < spec->nfields; f++) {
            const char *name = spec->fields[f].name;
            const char *v = json_missing(json_object_get(ev, name)) ? lookup_field(lk, name) : NULL;
            if (v)
                json_object_set_new(ev, name, json_string(v));
        }
        spec_error_t se;
        json_t *values = NULL;
        if (spec_clean(spec, ev, &row, &se)) {
            snprintf(err, errsize, "instances[%zu]: %s (%s)", i, se.detail, spec_reason_name(&se));
            rc = -1;
            break;
        }
        values = json_object();
        for (size_t c = 0; c < spec->ncolumns && !rc; c++)
            if (spec_value_to_json(&row.values[c], values, spec->columns[c])) {
                snprintf(err, errsize, "instances[%zu]: '%s' is not a finite number", i,
                         spec->columns[c]);
                rc = -1;
            }
        const json_t *et = json_object_get(ev, spec->event_time);
        char etbuf[40];
        const char *ets = json_is_string(et)
                              ? json_string_value(et)
                              : fmt_rfc3339(row.event_time_ms * 1000, etbuf, sizeof(etbuf));
        strbuf_t *t = &it->text;
        strbuf_reset(t);
        size_t off_id = t->len;
        strbuf_puts(t, row.event_id);
        strbuf_putc(t, '\0');
        size_t off_ent = t->len;
        strbuf_puts(t, row.entity);
        strbuf_putc(t, '\0');
        size_t off_et = t->len;
        strbuf_puts(t, ets);
        strbuf_putc(t, '\0');
        it->event_id = t->data + off_id;
        it->entity = t->data + off_ent;
        it->event_time = t->data + off_et;
        it->event_time_ms = row.event_time_ms;
        json_decref(ev);
        it->doc = values;
        it->values = values;
        it->ok = true;
    }
    spec_row_cleanup(&row);
    int64_t t1 = mono_us();
    /* 4. route, predict, render; log the prediction (the answer is given either way) */
    smodel_t *champ = ms->role[ROLE_CHAMPION], *chall = ms->role[ROLE_CHALLENGER],
             *shadow = ms->role[ROLE_SHADOW];
    ab_t *ab = chall ? sc->ab : NULL;
    if (ab)
        ab_set_pair(ab, champ->sha256, chall->sha256);
    for (size_t i = 0; i < n && !rc; i++) {
        item_t *it = &b->items[i];
        it->decode_us = (t1 - t0) / (int64_t)n;
        strbuf_reset(&b->out);
        int arm = 0;
        if (ab)
            arm = ab_pick(ab);
        else if (chall &&
                 rollout_is_challenger(ms->salt, it->entity, strlen(it->entity), ms->canary_share))
            arm = 1;
        smodel_t *sm = arm ? chall : champ;
        bool decision = score_one(sc, b, it, sm, true);
        if (ab)
            ab_note(ab, it->event_id, arm, decision);
        json_array_append_new(
            out,
            json_pack("{s:s,s:s,s:f,s:b,s:f,s:s,s:I,s:s,s:b}", "event_id", it->event_id, "entity",
                      it->entity, "score", b->last_score, "decision", decision, "threshold",
                      model_threshold(sm->m), "model", sm->name, "version", (json_int_t)sm->version,
                      "role", smodel_role_name(sm->role), "degraded", b->last_degraded));
        size_t first_len = b->out.len;
        if (shadow)
            score_one(sc, b, it, shadow, false);
        http_log(sc, it, b->out.data, first_len);
        if (shadow)
            http_log(sc, it, b->out.data + first_len, b->out.len - first_len);
        metric_inc(sc->m_events[1]);
    }
    if (ab)
        ab_flush(ab);
    for (size_t i = 0; i < n; i++) {
        json_decref(b->items[i].doc);
        b->items[i].doc = NULL;
    }
    return rc;
}
