/* mlops-ingest: validate, clean and feature-engineer events.raw into features. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "records.h"
#include "log.h"

static const cfg_item_t ingest_items[] = {
    SERVICE_COMMON_ITEMS(ingest_conf_t, "9101"),
    CFG_ITEM(ingest_conf_t, spec, CFG_T_STR, NULL, CFG_REQUIRED,
             "feature spec (JSON file) this instance serves"),
    CFG_ITEM(ingest_conf_t, input_topic, CFG_T_STR, "events.raw", 0, "topic of raw events"),
    CFG_ITEM(ingest_conf_t, features_topic, CFG_T_STR, "features", 0,
             "topic of features/1 records"),
    CFG_ITEM(ingest_conf_t, dlq_topic, CFG_T_STR, "events.dlq", 0, "topic of dlq/1 records"),
    CFG_ITEM(ingest_conf_t, group_id, CFG_T_STR, NULL, 0,
             "consumer group (default mlops-ingest-<spec name>)"),
    CFG_ITEM(ingest_conf_t, exactly_once, CFG_T_BOOL, "true", 0,
             "Kafka transactions cover features, DLQ and input offsets (false: at-least-once)"),
    CFG_ITEM_RANGE(ingest_conf_t, instance, CFG_T_INT, "0", 0,
                   "instance slot; keep it across restarts (transactional id, fencing)", 0, 9999),
    CFG_ITEM(ingest_conf_t, transactional_id, CFG_T_STR, NULL, 0,
             "transactional id (default mlops-ingest-<spec name>-<instance>)"),
    CFG_ITEM(ingest_conf_t, redis_url, CFG_T_STR, "redis://127.0.0.1:6380", CFG_SECRET,
             "Redis for dedup, rolling state and the online store"),
    CFG_ITEM_RANGE(ingest_conf_t, redis_timeout_ms, CFG_T_INT, "100", 0,
                   "deadline of each Redis round trip", 1, 10000),
    CFG_ITEM_RANGE(ingest_conf_t, redis_write_timeout_ms, CFG_T_INT, "1000", 0,
                   "deadline of a batch's background Redis write (plus 0.1 ms per command)", 10,
                   60000),
    CFG_ITEM(ingest_conf_t, online_store, CFG_T_BOOL, "true", 0,
             "write each entity's latest values to the Redis online store"),
    CFG_ITEM_RANGE(ingest_conf_t, max_event_bytes, CFG_T_INT, "1048576", 0,
                   "larger events go to the DLQ as too_large", 64, 16777216),
    CFG_ITEM_RANGE(ingest_conf_t, batch_size, CFG_T_INT, "500", 0,
                   "events processed per loop turn (one Redis round trip each way)", 1, 100000),
    CFG_ITEM_RANGE(ingest_conf_t, commit_interval_ms, CFG_T_INT, "1000", CFG_RELOAD,
                   "exactly-once: commit the open transaction at least this often", 10, 600000),
    CFG_ITEM_RANGE(ingest_conf_t, watchdog_ms, CFG_T_INT, "60000", 0,
                   "a batch running longer than this is stuck: exit so the supervisor restarts",
                   1000, 3600000),
    CFG_ITEM_RANGE(ingest_conf_t, cache_entities, CFG_T_INT, "200000", 0,
                   "entity states kept in memory", 100, 100000000),
};

static void fatal_check(ingest_t *ig)
{
    service_kafka_t k = {ig->txn, ig->kp, ig->kc};
    service_kafka_fatal_check(ig->svc, &k);
}

static void commit_txn(ingest_t *ig)
{
    service_txn_commit(ig->svc, ig->txn, &ig->last_commit_ms, ig->m_txn_commits, ig->m_txn_aborts);
}

/* The input callback, plus the exactly-once commit cadence. */
static void on_input(void *opaque)
{
    ingest_t *ig = opaque;
    pipeline_on_input(ig);
    if (ig->txn && mono_ms() - ig->last_commit_ms >= ig->conf->commit_interval_ms)
        commit_txn(ig);
    fatal_check(ig);
}

static void on_commit_timer(evutil_socket_t fd, short what, void *arg)
{
    ingest_t *ig = arg;
    if (!ig->draining)
        commit_txn(ig);
    fatal_check(ig);
}

static void on_lag_timer(evutil_socket_t fd, short what, void *arg)
{
    ingest_t *ig = arg;
    int64_t lag;
    if (kafka_consumer_lag(ig->txn ? kafka_txn_consumer(ig->txn) : ig->kc, &lag) == 0)
        metric_set(ig->m_lag, (double)lag);
}

static void on_revoke(kafka_consumer_t *kc, const rd_kafka_topic_partition_list_t *parts,
                      void *opaque)
{
    ingest_t *ig = opaque;
    if (ig->kp && kafka_producer_flush(ig->kp, 30000))
        log_warn("revoke: outputs not all delivered; their inputs will be consumed again");
    store_forget(ig->store, parts);
}

static void on_drain(lifecycle_t *lc, void *opaque)
{
    ingest_t *ig = opaque;
    ig->draining = true;
    kafka_watch_destroy(ig->watch); /* take no more input */
    ig->watch = NULL;
    if (ig->txn) {
        commit_txn(ig);
    } else {
        if (kafka_producer_flush(ig->kp, 30000))
            log_warn("drain: some outputs were not delivered; their inputs stay uncommitted");
        err_t *e = NULL;
        if (kafka_consumer_commit(ig->kc, &e)) {
            log_warn("drain: %s", e->msg);
            err_destroy(e);
        }
    }
    store_sync(ig->store);
    lifecycle_drained(lc);
}

static void status(json_t *st, void *opaque)
{
    ingest_t *ig = opaque;
    if (!ig->spec)
        return;
    json_object_set_new(st, "spec",
                        json_pack("{s:s,s:i,s:s}", "name", ig->spec->name, "version",
                                  ig->spec->version, "hash", ig->spec->hash));
    json_object_set_new(st, "mode",
                        json_string(ig->conf->exactly_once ? "exactly_once" : "at_least_once"));
    /* the pipeline's clients: not ready while they reach no broker */
    service_kafka_t k = {ig->txn, ig->kp, ig->kc};
    service_kafka_status(st, &k);
}

static int setup(service_t *svc, void *opaque)
{
    ingest_t *ig = opaque;
    ingest_conf_t *c = ig->conf;
    char errstr[1024];
    ig->svc = svc;
    metrics_t *m = service_metrics(svc);
    /* 1. the spec */
    ig->spec = spec_load(c->spec, errstr, sizeof(errstr));
    if (!ig->spec) {
        log_fatal("spec: %s", errstr);
        return -1;
    }
    /* 2. metrics */
    ig->m_features = metrics_counter(m, "mlops_ingest_features_total",
                                     "Events written to the features topic.", NULL);
    for (size_t i = 0; i < REC_DLQ_NREASONS; i++) {
        char l[64];
        ig->dlq_reasons[i] = rec_dlq_reasons[i];
        ig->m_dlq[i] =
            metrics_counter(m, "mlops_ingest_dlq_total", "Events sent to the DLQ, by reason.",
                            metrics_labels(l, sizeof(l), "reason", rec_dlq_reasons[i], NULL));
    }
    ig->ndlq_reasons = REC_DLQ_NREASONS;
    ig->source_id = rolling_source_id(ig->conf->input_topic);
    ig->m_replays =
        metrics_counter(m, "mlops_ingest_dedup_replays_total",
                        "Redelivered offsets recognised as replays (not duplicates).", NULL);
    ig->m_duplicates = metrics_counter(m, "mlops_ingest_dedup_hits_total",
                                       "Events refused as duplicate_event.", NULL);
    ig->m_batch_seconds = metrics_histogram(m, "mlops_ingest_batch_seconds",
                                            "Processing time of one batch.", NULL, NULL, 0);
    ig->m_lag = metrics_gauge(m, "mlops_ingest_lag", "Input messages not yet consumed.", NULL);
    ig->m_txn_commits =
        metrics_counter(m, "mlops_ingest_txn_commits_total", "Transactions committed.", NULL);
    ig->m_txn_aborts = metrics_counter(m, "mlops_ingest_txn_aborts_total",
                                       "Transactions aborted and rewound.", NULL);
    /* 3. Redis (connects lazily: the service starts while Redis is down) */
    ig->store = store_new(c, ig->spec, m, errstr, sizeof(errstr));
    if (!ig->store) {
        log_fatal("%s", errstr);
        return -1;
    }
    /* 4. Kafka */
    ig->group_id =
        c->group_id ? xstrdup(c->group_id) : xasprintf("mlops-ingest-%s", ig->spec->name);
    ig->transactional_id = c->transactional_id ? xstrdup(c->transactional_id)
                                               : xasprintf("mlops-ingest-%s-%lld", ig->spec->name,
                                                           (long long)c->instance);
    service_pipe_opts_t po = {.client_id = "mlops-ingest",
                              .group_id = ig->group_id,
                              .input_topic = c->input_topic,
                              .transactional_id = c->exactly_once ? ig->transactional_id : NULL,
                              .on_delivery = pipeline_on_delivery,
                              .on_revoke = on_revoke,
                              .on_input = on_input,
                              .opaque = ig};
    service_pipe_t pipe;
    int rc = service_pipe_open(svc, &po, &pipe);
    ig->txn = pipe.k.txn;
    ig->kp = pipe.k.kp;
    ig->kc = pipe.k.kc;
    ig->tracker = pipe.tracker;
    ig->pwatch = pipe.pwatch;
    ig->watch = pipe.watch;
    if (rc)
        return -1;
    /* 5. the loop's timers */
    ig->watchdog = watchdog_new(c->watchdog_ms, "ingest batch");
    ig->last_commit_ms = mono_ms();
    struct timeval commit_tv = {c->commit_interval_ms / 1000,
                                (c->commit_interval_ms % 1000) * 1000};
    struct timeval lag_tv = {5, 0};
    ig->ev_commit = event_new(service_base(svc), -1, EV_PERSIST, on_commit_timer, ig);
    ig->ev_lag = event_new(service_base(svc), -1, EV_PERSIST, on_lag_timer, ig);
    event_add(ig->ev_commit, &commit_tv);
    event_add(ig->ev_lag, &lag_tv);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("spec", ig->spec->name), LOG_INT("spec_version", ig->spec->version),
                        LOG_STR("spec_hash", ig->spec->hash), LOG_STR("input", c->input_topic),
                        LOG_STR("group", ig->group_id),
                        LOG_STR("mode", c->exactly_once ? "exactly_once" : "at_least_once")),
             "ingest pipeline ready");
    return 0;
}

static void teardown(service_t *svc, void *opaque)
{
    ingest_t *ig = opaque;
    if (ig->ev_commit)
        event_free(ig->ev_commit);
    if (ig->ev_lag)
        event_free(ig->ev_lag);
    kafka_watch_destroy(ig->watch);
    kafka_watch_destroy(ig->pwatch);
    watchdog_destroy(ig->watchdog);
    if (ig->txn) {
        kafka_txn_destroy(ig->txn);
    } else {
        kafka_tracker_destroy(ig->tracker);
        kafka_consumer_close(ig->kc);
        kafka_producer_destroy(ig->kp);
    }
    if (ig->store)
        store_sync(ig->store);
    store_destroy(ig->store);
    pipeline_destroy(ig);
    spec_destroy(ig->spec);
    free(ig->group_id);
    free(ig->transactional_id);
}

int main(int argc, char **argv)
{
    ingest_conf_t conf;
    ingest_t ig = {.conf = &conf};
    service_def_t def = {
        .name = "ingest",
        .usage = "--spec SPEC\n  validate, clean and feature-engineer events.raw into features",
        .items = ingest_items,
        .nitems = MLOPS_ARRAY_LEN(ingest_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
        .on_drain = on_drain,
        .status_cb = status,
        .setup = setup,
        .teardown = teardown,
        .opaque = &ig,
    };
    return service_main(&def, argc, argv);
}
