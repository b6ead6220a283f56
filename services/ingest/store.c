/*
 * Redis state of mlops-ingest, behind an in-process cache.
 *
 * Keys (spec = the spec's name, h8 = the first 8 hex digits of its hash):
 *   mlops:ingest:<spec>:dedup:<event_id>   "<topic>:<partition>:<offset>", EX dedup window
 *   mlops:ingest:<spec>:<h8>:roll:<entity> rolling state bytes, PX 2 x longest window + 1 day
 *   mlops:online:<view>:<entity>           hash: latest values, _ts, _event_id, PX ttl
 *
 * The cache is authoritative while this instance owns the entity's
 * partition (Kafka keys events by entity), and is written through at every
 * batch; a Redis failure keeps entries dirty until a later flush succeeds,
 * and never stops the stream. Online rows are written by a script that only
 * moves the row forward in event time, so a late event cannot overwrite a
 * newer one; absent fields of a partial event keep their previous value.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "ingest.h"
#include "log.h"
#include "redis.h"

static const char ONLINE_LUA[] = "local cur = redis.call('HGET', KEYS[1], '_ts')\n"
                                 "if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end\n"
                                 "redis.call('HSET', KEYS[1], '_ts', ARGV[1], unpack(ARGV, 3))\n"
                                 "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                 "return 1\n";

typedef struct entry {
    char *key; /* the entity (the cache's key) */
    rolling_state_t *state;
    int32_t partition;
    bool state_dirty;
    /* pending online row: NUL-separated name, value pairs */
    strbuf_t online;
    size_t online_pairs;
    int64_t online_ts;
    /* the stored row's _ts is known to be online_ts (a write of ours
     * succeeded): later rows need no check in Redis */
    bool online_known;
    bool online_dirty;
    bool loading;               /* its state is being read in store_lookup() */
    bool fresh;                 /* state loaded (or started empty) this batch: a miss */
    bool listed;                /* on the store's dirty list */
    bool inflight;              /* in the writer's current job */
    bool job_state, job_online; /* what the job writes for it */
} entry_t;

struct store {
    const ingest_conf_t *conf;
    const spec_t *spec;
    redis_client_t *rc;
    hmap_t *cache; /* entity -> entry_t */
    char prefix[256];
    char roll_prefix[256];
    char online_prefix[256];
    int64_t state_ttl_ms;
    strbuf_t key, tmp;
    /* entries with a pending write, so a flush does not scan the cache */
    entry_t **dirty;
    size_t ndirty, dirty_cap;
    /* The writer thread sends a flush's commands on its own connection while
     * the next batch is processed (one job in flight). The main thread only
     * touches wrc and the job list while the writer is idle. */
    redis_client_t *wrc;
    pthread_t writer;
    bool writer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool w_go, w_busy, w_quit, w_failed;
    size_t w_ncmd;
    char w_err[256];
    entry_t **job;
    size_t njob, job_cap;
    metric_t *m_write_seconds, *m_online_failed, *m_state_failed, *m_dedup_unknown, *m_cold,
        *m_cache_hits, *m_cache_misses, *m_dirty;
};

static void entry_free(void *p)
{
    entry_t *e = p;
    rolling_destroy(e->state);
    strbuf_cleanup(&e->online);
    free(e->key);
    free(e);
}

static void *writer_main(void *arg)
{
    store_t *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->w_go && !st->w_quit)
            pthread_cond_wait(&st->cv, &st->mu);
        if (!st->w_go)
            break;
        size_t n = st->w_ncmd;
        pthread_mutex_unlock(&st->mu);
        redisReply **replies = xcalloc(n, sizeof(redisReply *));
        err_t *e = NULL;
        int64_t t0 = mono_us();
        int rc = redis_pipeline_exec(st->wrc, replies, n, &e);
        metric_observe(st->m_write_seconds, (double)(mono_us() - t0) / 1e6);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            if (replies[i]->type == REDIS_REPLY_ERROR)
                log_error("Redis refused a state write: %.*s", (int)replies[i]->len,
                          replies[i]->str);
            freeReplyObject(replies[i]);
        }
        free(replies);
        pthread_mutex_lock(&st->mu);
        st->w_failed = rc != 0;
        if (e)
            str_copy(st->w_err, e->msg, sizeof(st->w_err));
        err_destroy(e);
        st->w_go = false;
        st->w_busy = false;
        pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static void list_dirty(store_t *st, entry_t *e);

/* Wait for the writer's job; if it failed, its entries are pending again. */
static void writer_wait(store_t *st)
{
    pthread_mutex_lock(&st->mu);
    while (st->w_busy)
        pthread_cond_wait(&st->cv, &st->mu);
    bool failed = st->w_failed;
    st->w_failed = false;
    pthread_mutex_unlock(&st->mu);
    if (failed)
        log_emit(LOG_LVL_WARN, LOG_FIELDS(LOG_INT("entities", (long long)st->njob)),
                 "Redis write failed, keeping %zu entities for a later flush: %s", st->njob,
                 st->w_err);
    for (size_t i = 0; i < st->njob; i++) {
        entry_t *e = st->job[i];
        e->inflight = false;
        if (!failed) {
            if (e->job_online)
                e->online_known = true;
            continue;
        }
        if (e->job_online) {
            metric_inc(st->m_online_failed);
            e->online_dirty = true;
        }
        if (e->job_state) {
            metric_inc(st->m_state_failed);
            e->state_dirty = true;
        }
        list_dirty(st, e);
    }
    st->njob = 0;
}

static void writer_start_job(store_t *st, size_t ncmd)
{
    pthread_mutex_lock(&st->mu);
    st->w_ncmd = ncmd;
    st->w_go = true;
    st->w_busy = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

store_t *store_new(const ingest_conf_t *conf, const spec_t *spec, metrics_t *metrics, char *errstr,
                   size_t errstr_size)
{
    store_t *st = xcalloc(1, sizeof(*st));
    st->conf = conf;
    st->spec = spec;
    redis_opts_t ro = {.url = conf->redis_url,
                       .timeout_ms = (int)conf->redis_timeout_ms,
                       .metrics = metrics,
                       .metrics_labels = "client=\"ingest\""};
    st->rc = redis_client_new(&ro, errstr, errstr_size);
    ro.metrics_labels = "client=\"ingest_writer\"";
    ro.timeout_ms = (int)conf->redis_write_timeout_ms;
    st->wrc = st->rc ? redis_client_new(&ro, errstr, errstr_size) : NULL;
    if (!st->wrc) {
        redis_client_destroy(st->rc);
        free(st);
        return NULL;
    }
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    if (pthread_create(&st->writer, NULL, writer_main, st)) {
        snprintf(errstr, errstr_size, "cannot start the Redis writer thread");
        store_destroy(st);
        return NULL;
    }
    st->writer_started = true;
    st->cache = hmap_new(entry_free);
    snprintf(st->prefix, sizeof(st->prefix), "mlops:ingest:%s", spec->name);
    snprintf(st->roll_prefix, sizeof(st->roll_prefix), "mlops:ingest:%s:%.8s:roll:", spec->name,
             spec->hash);
    snprintf(st->online_prefix, sizeof(st->online_prefix), "mlops:online:%s:", spec->view);
    int64_t wmax = 0;
    for (size_t i = 0; i < spec->nderived; i++)
        if (spec->derived[i].window_ms > wmax)
            wmax = spec->derived[i].window_ms;
    st->state_ttl_ms = 2 * wmax + 86400000;
    strbuf_init(&st->key);
    strbuf_init(&st->tmp);
    st->m_write_seconds =
        metrics_histogram(metrics, "mlops_ingest_redis_write_seconds",
                          "Time of one pipelined Redis write of a batch.", NULL, NULL, 0);
    st->m_online_failed = metrics_counter(metrics, "mlops_ingest_online_write_failed_total",
                                          "Online-row writes that failed (retried later).", NULL);
    st->m_state_failed = metrics_counter(metrics, "mlops_ingest_state_write_failed_total",
                                         "Rolling-state writes that failed (retried later).", NULL);
    st->m_dedup_unknown =
        metrics_counter(metrics, "mlops_ingest_dedup_unavailable_total",
                        "Events passed without a dedup check because Redis was unavailable.", NULL);
    st->m_cold = metrics_counter(metrics, "mlops_ingest_state_cold_total",
                                 "Entities started from an empty rolling state because Redis "
                                 "was unavailable.",
                                 NULL);
    st->m_cache_hits = metrics_counter(metrics, "mlops_ingest_cache_hits_total",
                                       "Entity states found in the in-process cache.", NULL);
    st->m_cache_misses = metrics_counter(metrics, "mlops_ingest_cache_misses_total",
                                         "Entity states read from Redis (or started empty).", NULL);
    st->m_dirty = metrics_gauge(metrics, "mlops_ingest_unflushed_entities",
                                "Entities whose state or online row waits for Redis.", NULL);
    return st;
}

void store_destroy(store_t *st)
{
    if (!st)
        return;
    if (st->writer_started) {
        writer_wait(st);
        pthread_mutex_lock(&st->mu);
        st->w_quit = true;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->writer, NULL);
    }
    if (st->cache)
        hmap_destroy(st->cache);
    redis_client_destroy(st->rc);
    redis_client_destroy(st->wrc);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st->job);
    strbuf_cleanup(&st->key);
    strbuf_cleanup(&st->tmp);
    free(st->dirty);
    free(st);
}

static const char *key_of(store_t *st, const char *prefix, const char *name)
{
    strbuf_reset(&st->key);
    strbuf_puts(&st->key, prefix);
    strbuf_puts(&st->key, name);
    return st->key.data;
}

static entry_t *entry_get(store_t *st, const char *entity, int32_t partition)
{
    entry_t *e = hmap_get(st->cache, entity);
    if (e)
        return e;
    e = xcalloc(1, sizeof(*e));
    e->key = xstrdup(entity);
    e->partition = partition;
    strbuf_init(&e->online);
    hmap_put(st->cache, entity, e);
    return e;
}

/* Keep the cache bounded: drop clean entries (their state is in Redis). */
static void evict(store_t *st)
{
    size_t limit = (size_t)st->conf->cache_entities;
    if (hmap_size(st->cache) <= limit)
        return;
    size_t it = 0;
    const char *key;
    void *v;
    char **victims = xcalloc(hmap_size(st->cache), sizeof(char *));
    size_t nv = 0, excess = hmap_size(st->cache) - limit + limit / 10;
    while (nv < excess && hmap_next(st->cache, &it, &key, &v)) {
        entry_t *e = v;
        if (!e->state_dirty && !e->online_dirty && !e->inflight)
            victims[nv++] = xstrdup(key);
    }
    for (size_t i = 0; i < nv; i++) {
        entry_free(hmap_del(st->cache, victims[i]));
        free(victims[i]);
    }
    free(victims);
}

/* The dedup verdict of one SET NX GET reply for the event at (partition, offset). */
static dedup_verdict_t dedup_reply(store_t *st, const redisReply *r, int32_t partition,
                                   int64_t offset)
{
    if (r->type == REDIS_REPLY_NIL)
        return DEDUP_NEW;
    if (r->type != REDIS_REPLY_STRING) {
        metric_inc(st->m_dedup_unknown);
        return DEDUP_UNKNOWN;
    }
    char pos[320];
    int len =
        snprintf(pos, sizeof(pos), "%s:%d:%" PRId64, st->conf->input_topic, partition, offset);
    return (size_t)len == r->len && !memcmp(pos, r->str, r->len) ? DEDUP_REPLAY : DEDUP_DUPLICATE;
}

/* An entity's rolling state from its GET reply (NULL when there is none, or the
 * stored bytes do not decode: logged, and the entity starts empty). */
static rolling_state_t *state_from_reply(store_t *st, const redisReply *r, const char *entity)
{
    if (!r || r->type != REDIS_REPLY_STRING)
        return NULL;
    char err[256];
    rolling_state_t *state = rolling_decode(st->spec, r->str, r->len, err, sizeof(err));
    if (!state)
        log_emit(LOG_LVL_WARN, LOG_FIELDS(LOG_STR("entity", entity)), "ignoring a stored state: %s",
                 err);
    return state;
}

void store_lookup(store_t *st, const char *const *event_ids, const char *const *entities,
                  const int32_t *partitions, const int64_t *offsets, size_t n, dedup_verdict_t *out)
{
    bool dedup = st->spec->dedup_window_s != 0;
    for (size_t i = 0; i < n; i++)
        out[i] = DEDUP_NEW;
    /* entities whose state is neither cached nor loaded, each once */
    size_t *miss = xcalloc(n ? n : 1, sizeof(size_t));
    size_t nmiss = 0;
    for (size_t i = 0; st->spec->nrolling && i < n; i++) {
        entry_t *e = entry_get(st, entities[i], partitions[i]);
        if (e->state || e->loading)
            continue;
        e->loading = true;
        miss[nmiss++] = i;
    }
    size_t ncmd = (dedup ? n : 0) + nmiss;
    if (ncmd == 0) {
        free(miss);
        return;
    }
    char window[32];
    snprintf(window, sizeof(window), "%" PRId64, st->spec->dedup_window_s);
    strbuf_t kb, vb;
    strbuf_init(&kb);
    strbuf_init(&vb);
    for (size_t i = 0; dedup && i < n; i++) {
        strbuf_reset(&kb);
        strbuf_puts(&kb, st->prefix);
        strbuf_puts(&kb, ":dedup:");
        strbuf_puts(&kb, event_ids[i]);
        strbuf_reset(&vb);
        strbuf_appendf(&vb, "%s:%d:%" PRId64, st->conf->input_topic, partitions[i], offsets[i]);
        /* set if absent, and say what was there (Redis >= 7.0): nil = new,
         * our own position = a replay of this very message, else a duplicate */
        const char *argv[] = {"SET", kb.data, vb.data, "NX", "EX", window, "GET"};
        size_t lens[] = {3, kb.len, vb.len, 2, 2, strlen(window), 3};
        redis_append_argv(st->rc, 7, argv, lens);
    }
    for (size_t k = 0; k < nmiss; k++) {
        const char *key = key_of(st, st->roll_prefix, entities[miss[k]]);
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, st->key.len};
        redis_append_argv(st->rc, 2, argv, lens);
    }
    strbuf_cleanup(&kb);
    strbuf_cleanup(&vb);
    /* dedup and the state reads share one pipelined round trip */
    redisReply **replies = xcalloc(ncmd, sizeof(redisReply *));
    err_t *e = NULL;
    bool ok = redis_pipeline_exec(st->rc, replies, ncmd, &e) == 0;
    if (!ok) {
        if (dedup) {
            log_emit(LOG_LVL_WARN, LOG_FIELDS(LOG_INT("events", (long long)n)),
                     "dedup unavailable, events pass unchecked: %s", e ? e->msg : "?");
            for (size_t i = 0; i < n; i++)
                out[i] = DEDUP_UNKNOWN;
            metric_add(st->m_dedup_unknown, (double)n);
        }
        if (nmiss) {
            log_warn("rolling state unavailable, %zu entities start empty: %s", nmiss,
                     e ? e->msg : "?");
            metric_add(st->m_cold, (double)nmiss);
        }
        err_destroy(e);
    }
    size_t r0 = dedup ? n : 0;
    for (size_t i = 0; ok && dedup && i < n; i++)
        out[i] = dedup_reply(st, replies[i], partitions[i], offsets[i]);
    for (size_t k = 0; k < nmiss; k++) {
        entry_t *en = hmap_get(st->cache, entities[miss[k]]);
        redisReply *r = replies[r0 + k];
        en->loading = false;
        if (ok)
            en->state = state_from_reply(st, r, entities[miss[k]]);
        if (!en->state)
            en->state = rolling_new(st->spec);
        en->fresh = true; /* counted as a miss here, not as a hit in store_states() */
        metric_inc(st->m_cache_misses);
    }
    for (size_t i = 0; i < ncmd; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    free(replies);
    free(miss);
}

void store_states(store_t *st, const char *const *entities, const int32_t *partitions, size_t n,
                  rolling_state_t **out)
{
    /* which entities need Redis? (each once) */
    size_t *miss = xcalloc(n ? n : 1, sizeof(size_t));
    size_t nmiss = 0;
    for (size_t i = 0; i < n; i++) {
        entry_t *e = entry_get(st, entities[i], partitions[i]);
        if (e->state) {
            if (e->fresh)
                e->fresh = false; /* loaded by store_lookup() this batch */
            else
                metric_inc(st->m_cache_hits);
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < nmiss && !dup; k++)
            dup = !strcmp(entities[miss[k]], entities[i]);
        if (!dup)
            miss[nmiss++] = i;
    }
    if (nmiss && st->spec->nrolling) {
        for (size_t k = 0; k < nmiss; k++) {
            const char *argv[] = {"GET", key_of(st, st->roll_prefix, entities[miss[k]])};
            redis_append_argv(st->rc, 2, argv, NULL);
        }
        redisReply **replies = xcalloc(nmiss, sizeof(redisReply *));
        err_t *e = NULL;
        bool ok = redis_pipeline_exec(st->rc, replies, nmiss, &e) == 0;
        if (!ok) {
            log_warn("rolling state unavailable, %zu entities start empty: %s", nmiss, e->msg);
            err_destroy(e);
            metric_add(st->m_cold, (double)nmiss);
        }
        for (size_t k = 0; k < nmiss; k++) {
            entry_t *en = hmap_get(st->cache, entities[miss[k]]);
            redisReply *r = replies[k];
            if (ok)
                en->state = state_from_reply(st, r, entities[miss[k]]);
            if (r)
                freeReplyObject(r);
        }
        free(replies);
    }
    for (size_t i = 0; i < n; i++) {
        entry_t *e = hmap_get(st->cache, entities[i]);
        if (!e->state) {
            e->state = rolling_new(st->spec);
            metric_inc(st->m_cache_misses);
        }
        out[i] = e->state;
    }
    free(miss);
}

static void list_dirty(store_t *st, entry_t *e)
{
    if (e->listed)
        return;
    if (st->ndirty == st->dirty_cap) {
        st->dirty_cap = st->dirty_cap ? 2 * st->dirty_cap : 256;
        st->dirty = xrealloc(st->dirty, st->dirty_cap * sizeof(*st->dirty));
    }
    st->dirty[st->ndirty++] = e;
    e->listed = true;
}

void store_state_dirty(store_t *st, const char *entity)
{
    entry_t *e = hmap_get(st->cache, entity);
    if (e && st->spec->nrolling) {
        e->state_dirty = true;
        list_dirty(st, e);
    }
}

static void value_text(const spec_value_t *v, strbuf_t *out)
{
    if (v->kind == SPEC_V_STR) {
        strbuf_puts(out, v->str);
    } else {
        char buf[32];
        strbuf_append(out, buf, fmt_double_rt(v->num, buf));
    }
}

void store_online(store_t *st, const spec_row_t *row)
{
    if (!st->conf->online_store)
        return;
    entry_t *e = hmap_get(st->cache, row->entity);
    if (!e || ((e->online_dirty || e->online_known) && row->event_time_ms < e->online_ts))
        return; /* a newer row is already queued */
    if (!e->online_dirty && !e->inflight) {
        strbuf_reset(&e->online);
        e->online_pairs = 0;
    }
    /* fields already queued and absent now keep their queued value: rebuild
     * from the queued pairs overlaid with this row's non-missing values */
    strbuf_t merged;
    strbuf_init(&merged);
    size_t pairs = 0;
    const spec_t *spec = st->spec;
    for (size_t c = 0; c < spec->ncolumns; c++) {
        const spec_value_t *v = &row->values[c];
        const char *name = spec->columns[c];
        strbuf_reset(&st->tmp);
        if (v->kind != SPEC_V_MISSING) {
            value_text(v, &st->tmp);
        } else {
            /* look for a queued value of this column */
            const char *p = e->online.data;
            bool found = false;
            for (size_t k = 0; p && k < e->online_pairs && !found; k++) {
                const char *val = p + strlen(p) + 1;
                if (!strcmp(p, name)) {
                    strbuf_puts(&st->tmp, val);
                    found = true;
                }
                p = val + strlen(val) + 1;
            }
            if (!found)
                continue;
        }
        strbuf_append(&merged, name, strlen(name) + 1);
        strbuf_append(&merged, st->tmp.data, st->tmp.len + 1);
        pairs++;
    }
    strbuf_append(&merged, "_event_id", 10);
    strbuf_append(&merged, row->event_id, strlen(row->event_id) + 1);
    pairs++;
    strbuf_cleanup(&e->online);
    e->online = merged;
    e->online_pairs = pairs;
    e->online_ts = row->event_time_ms;
    e->online_dirty = true;
    list_dirty(st, e);
}

void store_flush(store_t *st)
{
    writer_wait(st); /* one job in flight at most; a failed one is pending again */
    size_t ncmd = 0;
    strbuf_t enc, ts, ttl, state_ttl;
    strbuf_init(&enc);
    strbuf_init(&ts);
    strbuf_init(&ttl);
    strbuf_init(&state_ttl);
    strbuf_appendf(&ttl, "%" PRId64, st->spec->ttl_s * 1000);
    strbuf_appendf(&state_ttl, "%" PRId64, st->state_ttl_ms);
    size_t cap = 64;
    const char **argv = xcalloc(cap, sizeof(char *));
    if (st->job_cap < st->ndirty) {
        st->job_cap = st->ndirty;
        st->job = xrealloc(st->job, st->job_cap * sizeof(*st->job));
    }
    for (size_t d = 0; d < st->ndirty; d++) {
        entry_t *e = st->dirty[d];
        const char *key = e->key;
        e->job_state = e->state_dirty;
        e->job_online = e->online_dirty;
        if (e->state_dirty) {
            strbuf_reset(&enc);
            rolling_encode(e->state, &enc);
            char *k = xstrdup(key_of(st, st->roll_prefix, key));
            const char *a[] = {"SET", k, enc.data, "PX", state_ttl.data};
            size_t lens[] = {3, strlen(k), enc.len, 2, state_ttl.len};
            redis_append_argv(st->wrc, 5, a, lens);
            free(k);
            ncmd++;
        }
        if (e->online_dirty) {
            /* First write of an entity we have not written: a script that
             * only moves the row forward in event time (another instance or
             * an earlier run may hold a newer one). Once a write of ours
             * succeeded, the cache knows the stored _ts and late rows are
             * dropped in store_online(): a plain HSET and PEXPIRE, which
             * cost Redis a fraction of the script. */
            size_t argc = 6 + 2 * e->online_pairs;
            if (argc > cap) {
                cap = argc;
                argv = xrealloc(argv, cap * sizeof(char *));
            }
            char *k = xstrdup(key_of(st, st->online_prefix, key));
            strbuf_reset(&ts);
            strbuf_appendf(&ts, "%" PRId64, e->online_ts);
            const char *p = e->online.data;
            if (e->online_known) {
                argv[0] = "HSET";
                argv[1] = k;
                argv[2] = "_ts";
                argv[3] = ts.data;
                for (size_t i = 0; i < 2 * e->online_pairs; i++) {
                    argv[4 + i] = p;
                    p += strlen(p) + 1;
                }
                redis_append_argv(st->wrc, (int)(4 + 2 * e->online_pairs), argv, NULL);
                const char *x[] = {"PEXPIRE", k, ttl.data};
                redis_append_argv(st->wrc, 3, x, NULL);
                ncmd += 2;
            } else {
                /* EVAL script 1 key ts ttl name value ... */
                argv[0] = "EVAL";
                argv[1] = ONLINE_LUA;
                argv[2] = "1";
                argv[3] = k;
                argv[4] = ts.data;
                /* ARGV[2] is the TTL: shift the pairs after it */
                const char **pairs = argv + 5;
                for (size_t i = 0; i < 2 * e->online_pairs; i++) {
                    pairs[i + 1] = p;
                    p += strlen(p) + 1;
                }
                pairs[0] = ttl.data;
                redis_append_argv(st->wrc, (int)argc, argv, NULL);
                ncmd++;
            }
            free(k);
        }
        e->state_dirty = false;
        e->online_dirty = false;
        e->listed = false;
        e->inflight = true;
        st->job[st->njob++] = e;
    }
    st->ndirty = 0;
    strbuf_cleanup(&enc);
    strbuf_cleanup(&ts);
    strbuf_cleanup(&ttl);
    strbuf_cleanup(&state_ttl);
    free(argv);
    metric_set(st->m_dirty, (double)st->njob);
    if (ncmd)
        writer_start_job(st, ncmd);
    evict(st);
}

void store_sync(store_t *st)
{
    store_flush(st);
    writer_wait(st);
    metric_set(st->m_dirty, (double)st->ndirty);
}

void store_forget(store_t *st, const rd_kafka_topic_partition_list_t *parts)
{
    store_sync(st);
    size_t it = 0;
    const char *key;
    void *v;
    size_t n = 0;
    char **drop = xcalloc(hmap_size(st->cache) + 1, sizeof(char *));
    while (hmap_next(st->cache, &it, &key, &v)) {
        entry_t *e = v;
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].partition == e->partition) {
                drop[n++] = xstrdup(key);
                break;
            }
    }
    for (size_t i = 0; i < n; i++) {
        entry_t *e = hmap_del(st->cache, drop[i]);
        if (e && e->listed) { /* a failed flush left it pending: it is not ours now */
            for (size_t d = 0; d < st->ndirty; d++)
                if (st->dirty[d] == e) {
                    st->dirty[d] = st->dirty[--st->ndirty];
                    break;
                }
        }
        entry_free(e);
        free(drop[i]);
    }
    free(drop);
    if (n)
        log_info("dropped %zu cached entities of revoked partitions", n);
}
