/*
 * One batch of mlops-ingest: every input message ends in exactly one of
 * `features` or `events.dlq`.
 *
 *   1. parse (size cap, duplicate keys, depth) and clean with the spec
 *   2. dedup by event id (a redelivered offset is a replay, not a duplicate),
 *      in the same Redis round trip as the reads of uncached rolling states
 *   3. rolling features as of each event, per entity, replay-safe
 *   4. render features/1 or dlq/1
 *   5. write rolling states and online rows to Redis (never blocks the stream)
 *   6. produce: at-least-once, the input offset is stored once its output is
 *      delivered (tracker); exactly-once, inside the open transaction
 *
 * Redis is written before Kafka: after a crash the replayed offsets find
 * their own state and produce the same records.
 */
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "log.h"
#include "mjson.h"
#include "records.h"

typedef struct item {
    rd_kafka_message_t *rkm;
    void *handle;
    spec_row_t row;
    bool ok;
    const char *reason;
    char field[128];
    char detail[384];
    size_t out_off, out_len; /* rendered record in the batch buffer */
} item_t;

typedef struct batch {
    item_t *items;
    size_t cap;
    strbuf_t out;
    const char **ids, **entities;
    int32_t *partitions;
    int64_t *offsets;
    dedup_verdict_t *verdicts;
    rolling_state_t **states;
    size_t *idx;
    jflat_t flat; /* the fast parse of the current event (reused) */
} batch_t;

static batch_t *batch_get(ingest_t *ig)
{
    if (ig->batch)
        return ig->batch;
    size_t cap = (size_t)ig->conf->batch_size;
    batch_t *b = xcalloc(1, sizeof(*b));
    ig->batch = b;
    b->cap = cap;
    b->items = xcalloc(cap, sizeof(item_t));
    for (size_t i = 0; i < cap; i++)
        spec_row_init(&b->items[i].row, ig->spec);
    strbuf_init(&b->out);
    b->ids = xcalloc(cap, sizeof(char *));
    b->entities = xcalloc(cap, sizeof(char *));
    b->partitions = xcalloc(cap, sizeof(int32_t));
    b->offsets = xcalloc(cap, sizeof(int64_t));
    b->verdicts = xcalloc(cap, sizeof(dedup_verdict_t));
    b->states = xcalloc(cap, sizeof(rolling_state_t *));
    b->idx = xcalloc(cap, sizeof(size_t));
    jflat_init(&b->flat);
    return b;
}

void pipeline_destroy(ingest_t *ig)
{
    batch_t *b = ig->batch;
    if (!b)
        return;
    for (size_t i = 0; i < b->cap; i++) {
        spec_row_cleanup(&b->items[i].row);
        if (b->items[i].rkm)
            rd_kafka_message_destroy(b->items[i].rkm);
    }
    free(b->items);
    strbuf_cleanup(&b->out);
    free(b->ids);
    free(b->entities);
    free(b->partitions);
    free(b->offsets);
    free(b->verdicts);
    free(b->states);
    free(b->idx);
    jflat_cleanup(&b->flat);
    free(b);
    ig->batch = NULL;
}

metric_t *pipeline_dlq_metric(ingest_t *ig, const char *reason)
{
    for (size_t i = 0; i < ig->ndlq_reasons; i++)
        if (!strcmp(ig->dlq_reasons[i], reason))
            return ig->m_dlq[i];
    return ig->m_dlq[0];
}

static void refuse(item_t *it, const char *reason, const char *field, const char *detail)
{
    it->ok = false;
    it->reason = reason;
    str_copy(it->field, field ? field : "", sizeof(it->field));
    str_copy(it->detail, detail ? detail : "", sizeof(it->detail));
}

static void parse_and_clean(ingest_t *ig, batch_t *b, item_t *it)
{
    rd_kafka_message_t *m = it->rkm;
    it->ok = true;
    if (!m->payload || m->len == 0) {
        refuse(it, "bad_json", "", "empty payload");
        return;
    }
    spec_error_t se;
    /* the fast path takes flat objects of scalars; anything else (and every
     * error) goes through jansson, which gives the reason and message */
    if (m->len <= (size_t)ig->conf->max_event_bytes &&
        jflat_parse(&b->flat, m->payload, m->len) == 0) {
        if (spec_clean_flat(ig->spec, &b->flat, &it->row, &se))
            refuse(it, spec_reason_name(&se), se.field, se.detail);
        return;
    }
    err_t *e = NULL;
    json_t *obj = mjson_parse_object(m->payload, m->len, (size_t)ig->conf->max_event_bytes, &e);
    if (!obj) {
        refuse(it, mjson_code_name((mjson_code_t)e->code), "", e->msg);
        err_destroy(e);
        return;
    }
    if (spec_clean(ig->spec, obj, &it->row, &se))
        refuse(it, spec_reason_name(&se), se.field, se.detail);
    json_decref(obj);
}

static void render(ingest_t *ig, batch_t *b, item_t *it)
{
    rd_kafka_message_t *m = it->rkm;
    rec_source_t src = {
        .topic = rd_kafka_topic_name(m->rkt), .partition = m->partition, .offset = m->offset};
    it->out_off = b->out.len;
    if (it->ok && rec_features(ig->spec, &it->row, &src, wall_us(), &b->out))
        refuse(it, "non_finite", "", "a feature value is not finite");
    if (!it->ok)
        rec_dlq(it->reason, it->field, it->detail, ig->spec->name, &src, m->payload, m->len,
                wall_us(), &b->out);
    it->out_len = b->out.len - it->out_off;
}

static int produce(ingest_t *ig, batch_t *b, item_t *it)
{
    rd_kafka_message_t *m = it->rkm;
    const char *topic = it->ok ? ig->conf->features_topic : ig->conf->dlq_topic;
    const void *key = it->ok ? it->row.entity : m->key;
    size_t keylen = it->ok ? strlen(it->row.entity) : m->key_len;
    err_t *e = NULL;
    int rc;
    if (ig->txn) {
        rc = kafka_txn_produce(ig->txn, topic, RD_KAFKA_PARTITION_UA, key, keylen,
                               b->out.data + it->out_off, it->out_len, &e);
    } else {
        kafka_tracker_hold(it->handle);
        rc = kafka_produce(ig->kp, topic, RD_KAFKA_PARTITION_UA, key, keylen,
                           b->out.data + it->out_off, it->out_len, it->handle, &e);
        /* on failure the reference stays held: the offset cannot move past this
         * input, and the process is failing (it will re-read it after restart) */
    }
    if (rc) {
        lifecycle_fail(service_lifecycle(ig->svc), MLOPS_EXIT_FAILURE,
                       "cannot produce to %s: %s (input stays uncommitted)", topic,
                       e ? e->msg : "?");
        err_destroy(e);
        return -1;
    }
    if (it->ok)
        metric_inc(ig->m_features);
    else
        metric_inc(pipeline_dlq_metric(ig, it->reason));
    return 0;
}

void pipeline_on_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque)
{
    ingest_t *ig = opaque;
    if (rkm->err) {
        /* the input's offset must not move past a lost output: restart and re-read */
        lifecycle_fail(service_lifecycle(ig->svc), MLOPS_EXIT_FAILURE,
                       "output to %s failed for good: %s", rd_kafka_topic_name(rkm->rkt),
                       rd_kafka_err2str(rkm->err));
        return;
    }
    if (kafka_tracker_done(ig->tracker, msg_opaque))
        lifecycle_fail(service_lifecycle(ig->svc), MLOPS_EXIT_FAILURE, "cannot store an offset");
}

void pipeline_on_input(void *opaque)
{
    ingest_t *ig = opaque;
    if (ig->draining)
        return;
    batch_t *b = batch_get(ig);
    size_t n = 0;
    while (n < b->cap) {
        rd_kafka_message_t *m =
            ig->txn ? kafka_txn_poll(ig->txn, 0) : kafka_consumer_poll(ig->kc, 0);
        if (!m)
            break;
        b->items[n].rkm = m;
        b->items[n].handle = NULL;
        n++;
    }
    if (n == 0)
        return;
    watchdog_begin(ig->watchdog);
    int64_t t0 = mono_us();
    strbuf_reset(&b->out);

    /* 1. parse and clean */
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        if (!ig->txn)
            it->handle = kafka_tracker_begin(ig->tracker, rd_kafka_topic_name(it->rkm->rkt),
                                             it->rkm->partition, it->rkm->offset);
        parse_and_clean(ig, b, it);
    }
    /* 2. dedup the clean ones */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        if (!it->ok)
            continue;
        b->ids[k] = it->row.event_id;
        b->entities[k] = it->row.entity;
        b->partitions[k] = it->rkm->partition;
        b->offsets[k] = it->rkm->offset;
        b->idx[k++] = i;
    }
    store_lookup(ig->store, b->ids, b->entities, b->partitions, b->offsets, k, b->verdicts);
    for (size_t j = 0; j < k; j++) {
        item_t *it = &b->items[b->idx[j]];
        if (b->verdicts[j] == DEDUP_DUPLICATE) {
            refuse(it, "duplicate_event", ig->spec->event_id,
                   "event id already seen at another offset within the dedup window");
            metric_inc(ig->m_duplicates);
        } else if (b->verdicts[j] == DEDUP_REPLAY) {
            metric_inc(ig->m_replays);
        }
    }
    /* 3. rolling features, in input order per entity */
    k = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        if (!it->ok)
            continue;
        b->entities[k] = it->row.entity;
        b->partitions[k] = it->rkm->partition;
        b->idx[k++] = i;
    }
    store_states(ig->store, b->entities, b->partitions, k, b->states);
    for (size_t j = 0; j < k; j++) {
        item_t *it = &b->items[b->idx[j]];
        if (rolling_apply(ig->spec, b->states[j], &it->row, ig->source_id, it->rkm->partition,
                          it->rkm->offset) == 0)
            store_state_dirty(ig->store, it->row.entity);
    }
    /* 4. render, 5. Redis */
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        render(ig, b, it);
        if (it->ok)
            store_online(ig->store, &it->row);
    }
    store_flush(ig->store);
    /* 6. produce */
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        if (!failed && produce(ig, b, it))
            failed = true;
        if (!ig->txn && (failed ? 0 : kafka_tracker_done(ig->tracker, it->handle)))
            lifecycle_fail(service_lifecycle(ig->svc), MLOPS_EXIT_FAILURE,
                           "cannot store an offset");
        rd_kafka_message_destroy(it->rkm);
        it->rkm = NULL;
    }
    metric_observe(ig->m_batch_seconds, (double)(mono_us() - t0) / 1e6);
    watchdog_end(ig->watchdog);
    if (failed)
        return;
    if (n == b->cap)
        kafka_watch_again(ig->watch); /* more may be queued: librdkafka will not wake us */
}
