/*
 * mlops-scorer internals. The service consumes features/1 records, fills
 * model inputs missing from a record from the entity's online row (Redis,
 * behind an LRU+TTL cache), scores them with the loaded models (the same
 * model.h code as `mlopsctl predict`) and produces prediction/1 records.
 *
 * Modules: main.c (configuration, start-up order, drain), models.c (the
 * served model set, loading from files or the registry, the follower
 * thread of the `models` topic and the atomic swap), pipeline.c (one
 * batch: decode, enrich, route, predict, render, produce; and the same
 * stages for HTTP request instances), serve.c (the HTTP endpoint: KServe
 * V1 and the Open Inference Protocol), ocache.c (the cache), rollout.c
 * (the canary split).
 */
#ifndef MLOPS_SCORER_H
#define MLOPS_SCORER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ab.h"
#include "kafka.h"
#include "lifecycle.h"
#include "metrics.h"
#include "model.h"
#include "ocache.h"
#include "redis.h"
#include "service.h"

typedef struct scorer_conf {
    SERVICE_COMMON_FIELDS;
    char *model;
    char *challenger_model;
    char *shadow_model;
    double canary_share;
    char *rollout;
    char *labels_topic;
    char *ab_group_id;
    int64_t ab_event_ttl_s;
    int64_t ab_seed;
    char *registry_url;
    char *registry_token;
    char *model_name;
    char *alias;
    char *models_topic;
    int64_t registry_poll_s;
    int64_t registry_timeout_ms;
    char *input_topic;
    char *predictions_topic;
    char *group_id;
    bool exactly_once;
    int64_t instance;
    char *transactional_id;
    char *redis_url;
    bool enrich;
    int64_t redis_timeout_ms;
    int64_t redis_breaker_failures;
    int64_t redis_breaker_cooldown_ms;
    int64_t cache_entities;
    int64_t cache_ttl_ms;
    int64_t max_event_bytes;
    int64_t batch_size;
    int64_t commit_interval_ms;
    int64_t watchdog_ms;
    int64_t http_port;
    int64_t http_max_body_bytes;
    int64_t http_max_header_bytes;
    int64_t http_max_batch;
    int64_t http_max_connections;
    int64_t http_timeout_s;
    bool http_log_predictions;
} scorer_conf_t;

/* ---- models.c ---------------------------------------------------------------------- */

typedef enum smodel_role { ROLE_CHAMPION = 0, ROLE_CHALLENGER, ROLE_SHADOW, ROLE_N } smodel_role_t;

const char *smodel_role_name(smodel_role_t r);

/** One loaded model version and its per-message buffers. */
typedef struct smodel {
    model_t *m;
    char *name;
    int64_t version; /* 0 when loaded from a file without a version */
    char *sha256;
    smodel_role_t role;
    const spec_t *spec;
    spec_value_t *vals; /* spec->ncolumns, reused per message */
    double *x;          /* model_nslots() */
    metric_t *m_count[2],
        *m_hist; /* per-variant metrics: [stream, http] (pipeline.c, on first use) */
    /* pre-rendered parts of its predictions (pipeline.c, on first use; freed here) */
    char *r_head;
    size_t r_head_len;
    strbuf_t r_keys;
    size_t *r_key_off;
} smodel_t;

/** What is served: champion, optional challenger (canary) and shadow. */
typedef struct modelset {
    smodel_t *role[ROLE_N];
    double canary_share;
    char *salt; /* split salt: the model name */
    int64_t generation;
} modelset_t;

void modelset_destroy(modelset_t *ms);

typedef struct models models_t;

/**
 * Load the starting model set (from files, or from the registry: the
 * versions behind the configured alias, challenger and shadow) and, with a
 * registry, start the follower thread. Returns NULL after logging why.
 */
models_t *models_new(const scorer_conf_t *conf, metrics_t *metrics);
void models_destroy(models_t *mo);

/** The model set now served (owned by models_t; valid until models_swap()). */
modelset_t *models_current(models_t *mo);

/**
 * Between two messages: if the follower prepared a new set, make it current
 * (the old one is freed) and return true.
 */
bool models_swap(models_t *mo);

/** Update the model_stale_seconds gauge (loop timer). */
void models_tick(models_t *mo);

/* ---- pipeline.c -------------------------------------------------------------------- */

typedef struct scorer scorer_t;

struct scorer {
    scorer_conf_t *conf;
    service_t *svc;
    models_t *models;
    redis_client_t *rc;
    ocache_t *cache;
    ab_t *ab;             /* A/B by Thompson sampling (rollout = ab) */
    kafka_consumer_t *kc; /* at-least-once */
    kafka_producer_t *kp; /* at-least-once */
    kafka_tracker_t *tracker;
    kafka_txn_t *txn; /* exactly-once */
    kafka_watch_t *watch, *pwatch;
    kafka_producer_t *hkp; /* HTTP predictions: idempotent, outside any transaction */
    kafka_watch_t *hwatch;
    struct serve *serve;
    watchdog_t *watchdog;
    struct event *ev_commit, *ev_lag;
    bool draining;
    int64_t last_commit_ms;
    struct batch *batch, *hbatch; /* the stream's, HTTP's (pipeline_http) */
    char *group_id, *transactional_id;
    /* the last offset scored per partition (for the switch log line) */
    int64_t last_offset[256];
    /* metrics */
    metric_t *m_events[2], *m_refused_decode, *m_refused_spec, *m_degraded, *m_imputed, *m_stage[5],
        *m_lag, *m_txn_commits, *m_txn_aborts, *m_redis_errors, *m_swaps, *m_hit_rate,
        *m_batch_seconds, *m_decode_fast, *m_decode_tree, *m_http_log_errors;
};

enum { STAGE_DECODE = 0, STAGE_REDIS, STAGE_PREDICT, STAGE_ENCODE, STAGE_PRODUCE };

void pipeline_on_input(void *opaque);
void pipeline_on_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque);
void pipeline_destroy(scorer_t *sc);

/** Between two messages or requests: put a verified new model set in place
 * (models_swap) and log it. Pointers into the old set are invalid after. */
void pipeline_take_swap(scorer_t *sc);

/**
 * Score @p n request instances (JSON objects keyed by the spec's field names)
 * as the stream scores a record: fields absent from an instance that names
 * its entity are filled from the entity's online row, then the spec's
 * cleaning and features run (ingest's code), then routing, the models and
 * the prediction log (source http + @p request_id, to predictions_topic
 * when http_log_predictions). Appends one object per instance to @p out
 * (event_id, entity, score, decision, threshold, model, version, role,
 * degraded). Returns 0, or -1 with @p err naming the instance and field.
 * Scores with models_current(): the caller takes a pending swap
 * (pipeline_take_swap) before it reads the model set, never after, since a
 * swap frees the set it replaces.
 */
int pipeline_http(scorer_t *sc, json_t *const *instances, size_t n, const char *request_id,
                  json_t *out, char *err, size_t errsize);

/* ---- serve.c ----------------------------------------------------------------------- */

/** Start the HTTP endpoint on bind_address:http_port (http_port < 0: none). */
int serve_start(scorer_t *sc);
void serve_stop(scorer_t *sc);

#endif
