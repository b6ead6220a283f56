/* mlops-scorer: stream predictions from features. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scorer.h"

static const cfg_item_t scorer_items[] = {
    SERVICE_COMMON_ITEMS(scorer_conf_t, "9103"),
    CFG_ITEM(scorer_conf_t, model, CFG_T_STR, NULL, 0,
             "champion model/1 artifact (file); without it the registry is used"),
    CFG_ITEM(scorer_conf_t, challenger_model, CFG_T_STR, NULL, 0,
             "challenger artifact (file mode): serves canary_share of the entities"),
    CFG_ITEM(scorer_conf_t, shadow_model, CFG_T_STR, NULL, 0,
             "shadow artifact (file mode): scores every event, never the decision"),
    CFG_ITEM_RANGE(scorer_conf_t, canary_share, CFG_T_DBL, "0", 0,
                   "share of entities the challenger serves (when the deployment record has none)",
                   0, 1),
    CFG_ITEM(scorer_conf_t, rollout, CFG_T_STR, "canary", 0,
             "champion/challenger split: canary (entity hash, canary_share) or ab (Thompson "
             "sampling on rewards from labels)"),
    CFG_ITEM(scorer_conf_t, labels_topic, CFG_T_STR, "labels", 0,
             "topic of label/1 records (A/B rewards)"),
    CFG_ITEM(scorer_conf_t, ab_group_id, CFG_T_STR, NULL, 0,
             "consumer group of the A/B label reader (default mlops-scorer-<model>-ab)"),
    CFG_ITEM_RANGE(scorer_conf_t, ab_event_ttl_s, CFG_T_INT, "604800", 0,
                   "how long an A/B route waits for its label in Redis", 1, 31536000),
    CFG_ITEM_RANGE(scorer_conf_t, ab_seed, CFG_T_INT, "0", 0,
                   "seed of the Thompson sampler (0 = from the clock)", 0, 9000000000000000000),
    CFG_ITEM(scorer_conf_t, registry_url, CFG_T_STR, NULL, 0,
             "mlops-registry base URL (e.g. http://127.0.0.1:8080)"),
    CFG_ITEM(scorer_conf_t, registry_token, CFG_T_STR, NULL, CFG_SECRET,
             "bearer token (reader role) for the registry"),
    CFG_ITEM(scorer_conf_t, model_name, CFG_T_STR, NULL, 0, "registered model to serve"),
    CFG_ITEM(scorer_conf_t, alias, CFG_T_STR, "champion", 0, "alias of the served version"),
    CFG_ITEM(scorer_conf_t, models_topic, CFG_T_STR, "models", 0,
             "topic of model_event/1 snapshots to follow"),
    CFG_ITEM_RANGE(scorer_conf_t, registry_poll_s, CFG_T_INT, "30", 0,
                   "ask the registry for the aliases this often (besides following models)", 1,
                   86400),
    CFG_ITEM_RANGE(scorer_conf_t, registry_timeout_ms, CFG_T_INT, "5000", 0,
                   "deadline of one registry request", 100, 600000),
    CFG_ITEM(scorer_conf_t, input_topic, CFG_T_STR, "features", 0, "topic of features/1 records"),
    CFG_ITEM(scorer_conf_t, predictions_topic, CFG_T_STR, "predictions", 0,
             "topic of prediction/1 records"),
    CFG_ITEM(scorer_conf_t, group_id, CFG_T_STR, NULL, 0,
             "consumer group (default mlops-scorer-<model name>)"),
    CFG_ITEM(scorer_conf_t, exactly_once, CFG_T_BOOL, "true", 0,
             "Kafka transactions cover predictions and input offsets (false: at-least-once)"),
    CFG_ITEM_RANGE(scorer_conf_t, instance, CFG_T_INT, "0", 0,
                   "instance slot; keep it across restarts (transactional id, fencing)", 0, 9999),
    CFG_ITEM(scorer_conf_t, transactional_id, CFG_T_STR, NULL, 0,
             "transactional id (default mlops-scorer-<model name>-<instance>)"),
    CFG_ITEM(scorer_conf_t, redis_url, CFG_T_STR, "redis://127.0.0.1:6380", CFG_SECRET,
             "Redis of the online store"),
    CFG_ITEM(scorer_conf_t, enrich, CFG_T_BOOL, "true", 0,
             "fill model inputs missing from a record from the entity's online row"),
    CFG_ITEM_RANGE(scorer_conf_t, redis_timeout_ms, CFG_T_INT, "50", 0,
                   "deadline of a batch's Redis round trip (plus 0.1 ms per lookup)", 1, 10000),
    CFG_ITEM_RANGE(scorer_conf_t, redis_breaker_failures, CFG_T_INT, "3", 0,
                   "consecutive Redis failures that open the circuit breaker", 1, 1000),
    CFG_ITEM_RANGE(scorer_conf_t, redis_breaker_cooldown_ms, CFG_T_INT, "2000", 0,
                   "how long the breaker stays open before one trial call", 10, 600000),
    CFG_ITEM_RANGE(scorer_conf_t, cache_entities, CFG_T_INT, "100000", 0,
                   "online rows kept in the in-process LRU cache", 1, 100000000),
    CFG_ITEM_RANGE(scorer_conf_t, cache_ttl_ms, CFG_T_INT, "5000", 0,
                   "how long a cached online row is used", 0, 86400000),
    CFG_ITEM_RANGE(scorer_conf_t, max_event_bytes, CFG_T_INT, "1048576", 0,
                   "larger inputs are not scored (counted)", 64, 16777216),
    CFG_ITEM_RANGE(scorer_conf_t, batch_size, CFG_T_INT, "500", 0,
                   "inputs per loop turn (one Redis round trip)", 1, 100000),
    CFG_ITEM_RANGE(scorer_conf_t, commit_interval_ms, CFG_T_INT, "1000", CFG_RELOAD,
                   "exactly-once: commit the open transaction at least this often", 10, 600000),
    CFG_ITEM_RANGE(scorer_conf_t, watchdog_ms, CFG_T_INT, "60000", 0,
                   "a batch running longer than this is stuck: exit so the supervisor restarts",
                   1000, 3600000),
    CFG_ITEM_RANGE(scorer_conf_t, http_port, CFG_T_INT, "8090", 0,
                   "port of the HTTP scoring endpoint (KServe V1, Open Inference Protocol); 0 = "
                   "any free port, -1 = none",
                   -1, 65535),
    CFG_ITEM_RANGE(scorer_conf_t, http_max_body_bytes, CFG_T_INT, "1048576", 0,
                   "largest HTTP request body (413 above)", 256, 268435456),
    CFG_ITEM_RANGE(scorer_conf_t, http_max_header_bytes, CFG_T_INT, "16384", 0,
                   "largest HTTP request header block", 1024, 1048576),
    CFG_ITEM_RANGE(scorer_conf_t, http_max_batch, CFG_T_INT, "1000", 0,
                   "most instances in one HTTP request (413 above)", 1, 100000),
    CFG_ITEM_RANGE(scorer_conf_t, http_max_connections, CFG_T_INT, "512", 0,
                   "HTTP connections open at once; one more is answered 503 (JSON, "
                   "Retry-After) and closed",
                   1, 65536),
    CFG_ITEM_RANGE(scorer_conf_t, http_timeout_s, CFG_T_INT, "30", 0,
                   "HTTP read/write timeout of a connection", 1, 3600),
    CFG_ITEM(scorer_conf_t, http_log_predictions, CFG_T_BOOL, "true", 0,
             "write HTTP predictions to predictions_topic too (source http + request id; "
             "idempotent producer, outside the stream's transactions)"),
};

static void fatal_check(scorer_t *sc)
{
    service_kafka_t k = {sc->txn, sc->kp, sc->kc};
    service_kafka_fatal_check(sc->svc, &k);
}

static void commit_txn(scorer_t *sc)
{
    service_txn_commit(sc->svc, sc->txn, &sc->last_commit_ms, sc->m_txn_commits, sc->m_txn_aborts);
}

static void on_input(void *opaque)
{
    scorer_t *sc = opaque;
    pipeline_on_input(sc);
    if (sc->txn && mono_ms() - sc->last_commit_ms >= sc->conf->commit_interval_ms)
        commit_txn(sc);
    fatal_check(sc);
}

static void on_commit_timer(evutil_socket_t fd, short what, void *arg)
{
    scorer_t *sc = arg;
    if (!sc->draining) {
        commit_txn(sc);
        /* a swap must not wait for input: take it now, between two batches */
        pipeline_on_input(sc);
    }
    fatal_check(sc);
}

static void on_lag_timer(evutil_socket_t fd, short what, void *arg)
{
    scorer_t *sc = arg;
    models_tick(sc->models);
    if (sc->ab)
        ab_refresh(sc->ab);
    if (sc->cache) {
        ocache_stats_t st;
        ocache_stats(sc->cache, &st);
        uint64_t tot = st.hits + st.misses;
        metric_set(sc->m_hit_rate, tot ? (double)st.hits / (double)tot : 0);
    }
    int64_t lag;
    if (kafka_consumer_lag(sc->txn ? kafka_txn_consumer(sc->txn) : sc->kc, &lag) == 0)
        metric_set(sc->m_lag, (double)lag);
}

static void on_revoke(kafka_consumer_t *kc, const rd_kafka_topic_partition_list_t *parts,
                      void *opaque)
{
    scorer_t *sc = opaque;
    if (sc->kp && kafka_producer_flush(sc->kp, 30000))
        log_warn("revoke: outputs not all delivered; their inputs will be consumed again");
}

static void on_http_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque)
{
    scorer_t *sc = opaque;
    (void)msg_opaque;
    if (!rkm->err)
        return;
    static int64_t last_log_ms;
    metric_inc(sc->m_http_log_errors);
    if (mono_ms() - last_log_ms >= 1000) {
        last_log_ms = mono_ms();
        log_warn("an HTTP prediction was not written to %s: %s", rd_kafka_topic_name(rkm->rkt),
                 rd_kafka_err2str(rkm->err));
    }
}

static void on_drain(lifecycle_t *lc, void *opaque)
{
    scorer_t *sc = opaque;
    sc->draining = true;
    if (sc->hkp && kafka_producer_flush(sc->hkp, 10000))
        log_warn("drain: some HTTP predictions were not written to the predictions topic");
    kafka_watch_destroy(sc->watch);
    sc->watch = NULL;
    if (sc->txn) {
        commit_txn(sc);
    } else {
        if (kafka_producer_flush(sc->kp, 30000))
            log_warn("drain: some outputs were not delivered; their inputs stay uncommitted");
        err_t *e = NULL;
        if (kafka_consumer_commit(sc->kc, &e)) {
            log_warn("drain: %s", e->msg);
            err_destroy(e);
        }
    }
    lifecycle_drained(lc);
}

static void status(json_t *st, void *opaque)
{
    scorer_t *sc = opaque;
    if (!sc->models)
        return;
    modelset_t *ms = models_current(sc->models);
    json_t *models = json_object();
    for (int r = 0; r < ROLE_N; r++)
        if (ms->role[r])
            json_object_set_new(models, smodel_role_name(r),
                                json_pack("{s:s,s:I,s:s}", "name", ms->role[r]->name, "version",
                                          (json_int_t)ms->role[r]->version, "sha256",
                                          ms->role[r]->sha256));
    json_object_set_new(st, "models", models);
    json_object_set_new(st, "canary_share", json_real(ms->canary_share));
    json_object_set_new(st, "rollout", json_string(sc->ab ? "ab" : "canary"));
    json_object_set_new(st, "mode",
                        json_string(sc->conf->exactly_once ? "exactly_once" : "at_least_once"));
    /* the pipeline's clients: not ready while they reach no broker */
    service_kafka_t k = {sc->txn, sc->kp, sc->kc};
    service_kafka_status(st, &k);
    if (sc->rc)
        json_object_set_new(
            st, "redis_breaker",
            json_string(redis_client_breaker(sc->rc) == REDIS_BREAKER_CLOSED ? "closed"
                        : redis_client_breaker(sc->rc) == REDIS_BREAKER_OPEN ? "open"
                                                                             : "half_open"));
}

static int setup(service_t *svc, void *opaque)
{
    scorer_t *sc = opaque;
    scorer_conf_t *c = sc->conf;
    char errstr[1024];
    sc->svc = svc;
    metrics_t *m = service_metrics(svc);
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(sc->last_offset); i++)
        sc->last_offset[i] = -1;
    /* 1. metrics */
    static const char *const stages[] = {"decode", "redis", "predict", "encode", "produce"};
    for (int i = 0; i < 5; i++) {
        char l[64];
        sc->m_stage[i] = metrics_histogram(
            m, "mlops_scorer_stage_seconds", "Time per stage (redis: per batch round trip).",
            metrics_labels(l, sizeof(l), "stage", stages[i], NULL), NULL, 0);
    }
    for (int t = 0; t < 2; t++)
        sc->m_events[t] = metrics_counter(m, "mlops_scorer_events_total",
                                          "Inputs scored: stream records and HTTP instances.",
                                          t ? "transport=\"http\"" : "transport=\"stream\"");
    sc->m_http_log_errors = metrics_counter(
        m, "mlops_scorer_http_log_errors_total",
        "HTTP predictions that could not be written to the predictions topic.", NULL);
    sc->m_decode_fast = metrics_counter(m, "mlops_scorer_decoded_total",
                                        "Input records decoded, by path.", "path=\"fast\"");
    sc->m_decode_tree = metrics_counter(m, "mlops_scorer_decoded_total",
                                        "Input records decoded, by path.", "path=\"jansson\"");
    {
        char l[64];
        sc->m_refused_decode =
            metrics_counter(m, "mlops_scorer_refused_total", "Input records not scored, by reason.",
                            metrics_labels(l, sizeof(l), "reason", "decode", NULL));
        sc->m_refused_spec =
            metrics_counter(m, "mlops_scorer_refused_total", "Input records not scored, by reason.",
                            metrics_labels(l, sizeof(l), "reason", "spec", NULL));
    }
    sc->m_degraded = metrics_counter(m, "mlops_scorer_degraded_total",
                                     "Served predictions with imputed inputs.", NULL);
    sc->m_imputed = metrics_counter(m, "mlops_scorer_imputed_inputs_total",
                                    "Inputs filled with imputation values.", NULL);
    sc->m_redis_errors = metrics_counter(m, "mlops_scorer_redis_errors_total",
                                         "Online store round trips that failed.", NULL);
    sc->m_hit_rate = metrics_gauge(m, "mlops_scorer_cache_hit_rate",
                                   "Online row cache hits / lookups since start.", NULL);
    sc->m_lag = metrics_gauge(m, "mlops_scorer_lag", "Input messages not yet consumed.", NULL);
    sc->m_txn_commits =
        metrics_counter(m, "mlops_scorer_txn_commits_total", "Transactions committed.", NULL);
    sc->m_txn_aborts = metrics_counter(m, "mlops_scorer_txn_aborts_total",
                                       "Transactions aborted and rewound.", NULL);
    sc->m_batch_seconds = metrics_histogram(m, "mlops_scorer_batch_seconds",
                                            "Processing time of one batch.", NULL, NULL, 0);
    /* 2. models (files, or the registry and its follower thread) */
    sc->models = models_new(c, m);
    if (!sc->models)
        return -1;
    const modelset_t *ms = models_current(sc->models);
    const char *mname = c->model_name ? c->model_name : ms->role[ROLE_CHAMPION]->name;
    /* 3. A/B state (Redis) and its label reader thread */
    if (strcmp(c->rollout, "canary") && strcmp(c->rollout, "ab")) {
        log_fatal("rollout: '%s' is not one of canary, ab", c->rollout);
        return -1;
    }
    if (!strcmp(c->rollout, "ab")) {
        const json_t *lab = json_object_get(model_doc(ms->role[ROLE_CHAMPION]->m), "label");
        char *gid =
            c->ab_group_id ? xstrdup(c->ab_group_id) : xasprintf("mlops-scorer-%s-ab", mname);
        ab_opts_t ao = {.model = mname,
                        .positive = json_string_value(json_object_get(lab, "positive")),
                        .redis_url = c->redis_url,
                        .redis_timeout_ms = (int)c->redis_timeout_ms,
                        .brokers = c->kafka_brokers,
                        .labels_topic = c->labels_topic,
                        .group_id = gid,
                        .event_ttl_s = c->ab_event_ttl_s,
                        .seed = (uint64_t)c->ab_seed,
                        .metrics = m};
        sc->ab = ab_new(&ao, errstr, sizeof(errstr));
        free(gid);
        if (!sc->ab) {
            log_fatal("A/B: %s", errstr);
            return -1;
        }
    }
    /* 4. the online store (connects lazily: the service starts while Redis is down) */
    if (c->enrich) {
        redis_opts_t ro = {.url = c->redis_url,
                           .timeout_ms = (int)c->redis_timeout_ms,
                           .breaker_failures = (int)c->redis_breaker_failures,
                           .breaker_cooldown_ms = (int)c->redis_breaker_cooldown_ms,
                           .metrics = m,
                           .metrics_labels = "client=\"online_store\""};
        sc->rc = redis_client_new(&ro, errstr, sizeof(errstr));
        if (!sc->rc) {
            log_fatal("redis: %s", errstr);
            return -1;
        }
        sc->cache = ocache_new(
            (size_t)c->cache_entities, c->cache_ttl_ms,
            metrics_counter(m, "mlops_scorer_cache_hits_total", "Online row cache hits.", NULL),
            metrics_counter(m, "mlops_scorer_cache_misses_total", "Online row cache misses.", NULL),
            metrics_counter(m, "mlops_scorer_cache_evictions_total",
                            "Online rows evicted from the cache (LRU).", NULL));
    }
    /* 5. Kafka */
    sc->group_id = c->group_id ? xstrdup(c->group_id) : xasprintf("mlops-scorer-%s", mname);
    sc->transactional_id = c->transactional_id
                               ? xstrdup(c->transactional_id)
                               : xasprintf("mlops-scorer-%s-%lld", mname, (long long)c->instance);
    service_pipe_opts_t po = {.client_id = "mlops-scorer",
                              .group_id = sc->group_id,
                              .input_topic = c->input_topic,
                              .transactional_id = c->exactly_once ? sc->transactional_id : NULL,
                              .on_delivery = pipeline_on_delivery,
                              .on_revoke = on_revoke,
                              .on_input = on_input,
                              .opaque = sc};
    service_pipe_t pipe;
    int rc = service_pipe_open(svc, &po, &pipe);
    sc->txn = pipe.k.txn;
    sc->kp = pipe.k.kp;
    sc->kc = pipe.k.kc;
    sc->tracker = pipe.tracker;
    sc->pwatch = pipe.pwatch;
    sc->watch = pipe.watch;
    if (rc)
        return -1;
    /* 6. the HTTP endpoint and its prediction log (an idempotent producer of its own: the
     * answer is given before the record is written, so no transaction can cover it) */
    if (c->http_port >= 0 && c->http_log_predictions) {
        size_t nprops;
        const cfg_kv_t *props = cfg_kafka_props(service_cfg(svc), &nprops);
        kafka_opts_t ko = {.brokers = c->kafka_brokers,
                           .client_id = "mlops-scorer-http",
                           .props = props,
                           .nprops = nprops,
                           .metrics = m};
        sc->hkp = kafka_producer_new(&ko, NULL, on_http_delivery, sc, errstr, sizeof(errstr));
        if (!sc->hkp) {
            log_fatal("Kafka (HTTP predictions): %s", errstr);
            return -1;
        }
        sc->hwatch = kafka_producer_watch(sc->hkp, service_base(svc), errstr, sizeof(errstr));
        if (!sc->hwatch) {
            log_fatal("%s", errstr);
            return -1;
        }
    }
    if (serve_start(sc))
        return -1;
    /* 7. the loop's timers */
    sc->watchdog = watchdog_new(c->watchdog_ms, "scorer batch");
    sc->last_commit_ms = mono_ms();
    struct timeval commit_tv = {c->commit_interval_ms / 1000,
                                (c->commit_interval_ms % 1000) * 1000};
    struct timeval lag_tv = {1, 0};
    sc->ev_commit = event_new(service_base(svc), -1, EV_PERSIST, on_commit_timer, sc);
    sc->ev_lag = event_new(service_base(svc), -1, EV_PERSIST, on_lag_timer, sc);
    event_add(sc->ev_commit, &commit_tv);
    event_add(sc->ev_lag, &lag_tv);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("input", c->input_topic), LOG_STR("output", c->predictions_topic),
                        LOG_STR("group", sc->group_id),
                        LOG_STR("mode", c->exactly_once ? "exactly_once" : "at_least_once")),
             "scorer pipeline ready");
    return 0;
}

static void teardown(service_t *svc, void *opaque)
{
    scorer_t *sc = opaque;
    if (sc->ev_commit)
        event_free(sc->ev_commit);
    if (sc->ev_lag)
        event_free(sc->ev_lag);
    serve_stop(sc);
    kafka_watch_destroy(sc->hwatch);
    kafka_producer_destroy(sc->hkp);
    kafka_watch_destroy(sc->watch);
    kafka_watch_destroy(sc->pwatch);
    watchdog_destroy(sc->watchdog);
    if (sc->txn) {
        kafka_txn_destroy(sc->txn);
    } else {
        kafka_tracker_destroy(sc->tracker);
        kafka_consumer_close(sc->kc);
        kafka_producer_destroy(sc->kp);
    }
    pipeline_destroy(sc);
    ab_destroy(sc->ab);
    ocache_destroy(sc->cache);
    redis_client_destroy(sc->rc);
    models_destroy(sc->models);
    free(sc->group_id);
    free(sc->transactional_id);
}

int main(int argc, char **argv)
{
    scorer_conf_t conf;
    scorer_t sc = {.conf = &conf};
    service_def_t def = {
        .name = "scorer",
        .usage = "--model MODEL.json | --registry-url URL --model-name NAME\n"
                 "  stream predictions from features",
        .items = scorer_items,
        .nitems = MLOPS_ARRAY_LEN(scorer_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
        .on_drain = on_drain,
        .status_cb = status,
        .setup = setup,
        .teardown = teardown,
        .opaque = &sc,
    };
    return service_main(&def, argc, argv);
}
