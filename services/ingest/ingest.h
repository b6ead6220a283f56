/*
 * mlops-ingest internals. The service consumes raw events, validates and
 * cleans them with a feature spec, deduplicates by event id, computes the
 * per-entity rolling features as of each event, and writes every input to
 * exactly one of `features` or `events.dlq`; it keeps the entity's latest
 * values in the Redis online store.
 *
 * Modules: main.c (configuration, start-up order, drain), pipeline.c (one
 * batch: parse, clean, dedup, rolling, render, produce), store.c (Redis:
 * dedup, rolling state, online rows; an in-process cache in front).
 */
#ifndef MLOPS_INGEST_H
#define MLOPS_INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "kafka.h"
#include "lifecycle.h"
#include "metrics.h"
#include "rolling.h"
#include "service.h"
#include "spec.h"

typedef struct ingest_conf {
    SERVICE_COMMON_FIELDS;
    char *spec;
    char *input_topic;
    char *features_topic;
    char *dlq_topic;
    char *group_id;
    bool exactly_once;
    int64_t instance;
    char *transactional_id;
    char *redis_url;
    int64_t redis_timeout_ms;
    int64_t redis_write_timeout_ms;
    bool online_store;
    int64_t max_event_bytes;
    int64_t batch_size;
    int64_t commit_interval_ms;
    int64_t watchdog_ms;
    int64_t cache_entities;
} ingest_conf_t;

/* ---- store.c: Redis state behind an in-process cache ------------------------------- */

typedef struct store store_t;

typedef enum dedup_verdict {
    DEDUP_NEW = 0,
    DEDUP_REPLAY,    /* the same (partition, offset) again: not a duplicate */
    DEDUP_DUPLICATE, /* the id was seen at another position within the window */
    DEDUP_UNKNOWN,   /* Redis unavailable: treated as new, counted */
} dedup_verdict_t;

store_t *store_new(const ingest_conf_t *conf, const spec_t *spec, metrics_t *metrics, char *errstr,
                   size_t errstr_size);
void store_destroy(store_t *st);

/**
 * Dedup verdicts for @p n events, and the rolling states of their entities
 * that are not cached loaded into the cache (started empty when Redis has
 * none or cannot be read): one pipelined round trip for both.
 */
void store_lookup(store_t *st, const char *const *event_ids, const char *const *entities,
                  const int32_t *partitions, const int64_t *offsets, size_t n,
                  dedup_verdict_t *out);

/**
 * The rolling state of each entity (cache, normally filled by
 * store_lookup(); else Redis in one round trip, else empty). Borrowed pointers, valid until store_flush().
 */
void store_states(store_t *st, const char *const *entities, const int32_t *partitions, size_t n,
                  rolling_state_t **out);

/** The entity's state changed: write it at the next flush. */
void store_state_dirty(store_t *st, const char *entity);

/** Queue the entity's online row update from a cleaned, complete row. */
void store_online(store_t *st, const spec_row_t *row);

/**
 * Hand dirty states and online rows to the writer thread, which sends them
 * in one pipelined round trip on its own connection while the caller goes
 * on (one job in flight: this first waits for the previous one). A job that
 * failed leaves its entities pending for the next flush.
 */
void store_flush(store_t *st);

/** store_flush(), then wait until the writer is done (rebalance, shutdown). */
void store_sync(store_t *st);

/** Drop cached entities of revoked partitions (after a flush attempt). */
void store_forget(store_t *st, const rd_kafka_topic_partition_list_t *parts);

/* ---- pipeline.c -------------------------------------------------------------------- */

typedef struct ingest ingest_t;

struct ingest {
    ingest_conf_t *conf;
    service_t *svc;
    spec_t *spec;
    store_t *store;
    kafka_consumer_t *kc; /* at-least-once */
    kafka_producer_t *kp; /* at-least-once */
    kafka_tracker_t *tracker;
    kafka_txn_t *txn; /* exactly-once */
    kafka_watch_t *watch, *pwatch;
    watchdog_t *watchdog;
    struct event *ev_commit, *ev_lag;
    bool draining;
    int64_t last_commit_ms;
    struct batch *batch;               /* pipeline.c's reusable batch */
    char *group_id, *transactional_id; /* derived defaults (owned) */
    /* metrics */
    metric_t *m_features, *m_dlq[16], *m_replays, *m_duplicates, *m_batch_seconds, *m_lag,
        *m_txn_commits, *m_txn_aborts;
    const char *dlq_reasons[16];
    size_t ndlq_reasons;
    uint32_t source_id; /* rolling_source_id() of the input topic */
};

/** Drain and process at most one batch of queued input; called from the loop. */
void pipeline_on_input(void *opaque);

/** Per-message delivery report (at-least-once): releases the input's tracker reference. */
void pipeline_on_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque);

/** Free the batch buffers. */
void pipeline_destroy(ingest_t *ig);

/** The dlq/1 reason counter for @p reason. */
metric_t *pipeline_dlq_metric(ingest_t *ig, const char *reason);

#endif
