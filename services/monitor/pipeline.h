/**
 * @file pipeline.h
 * @brief The monitor's drift pipeline: consumes `features` and `models`,
 *        keeps count windows per model and input (dstate.h), publishes the
 *        statistics as Prometheus gauges and on GET /api/v1/drift, feeds
 *        the alert engine (alerts.h), produces alert/1 records to `alerts`,
 *        keeps the engine's state in Redis, and files train_request/1 on
 *        `train.requests` when a retrain alert fires (with a cooldown).
 *
 * Ownership: pipeline_new() borrows @p conf and the service for the
 * pipeline's lifetime; pipeline_destroy() frees everything (accepts NULL).
 * Everything runs on the service's event loop thread.
 */
#ifndef MLOPS_MONITOR_PIPELINE_H
#define MLOPS_MONITOR_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "service.h"

/** The settings the pipeline reads (fields of the monitor's config). */
typedef struct pipeline_conf {
    const char *kafka_brokers;
    const char *group_id;
    const char *features_topic;
    const char *models_topic;
    const char *predictions_topic;
    const char *labels_topic;
    int64_t label_lateness_ms;
    int64_t max_pending_labels;
    const char *alerts_topic;
    const char *train_requests_topic;
    const char *windows;
    double drift_share;
    const char *model_files;
    const char *rules;
    const char *redis_url;
    int redis_timeout_ms;
    const char *alert_state_key;
    const char *retrain_alerts;
    int64_t retrain_cooldown_ms;
    int64_t retrain_latest;
    const char *registry_url;
    const char *registry_token;
    int64_t max_event_bytes;
} pipeline_conf_t;

typedef struct pipeline pipeline_t;

/**
 * Create the pipeline on @p svc's loop: load the rules and the model files,
 * restore the alert state from Redis (when reachable), connect to Kafka,
 * route GET /api/v1/drift. Returns NULL after logging why.
 */
pipeline_t *pipeline_new(service_t *svc, const pipeline_conf_t *conf);
/** First SIGTERM: stop consuming, flush outputs, commit, save the alert state. */
void pipeline_drain(pipeline_t *p);
void pipeline_destroy(pipeline_t *p);

#endif
