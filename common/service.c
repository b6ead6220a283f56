#include "service.h"

#include <event2/event.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"

struct service {
    service_def_t def;
    cfg_t *cfg;
    struct event_base *base;
    metrics_t *metrics;
    lifecycle_t *lc;
    http_server_t *http;
    char name[64];
};

static void apply_log_level(const service_common_conf_t *c)
{
    log_level_t lvl;
    if (c->log_level && log_level_parse(c->log_level, &lvl) == 0)
        log_set_level(lvl);
}

static void on_reload(lifecycle_t *lc, void *arg)
{
    service_t *svc = arg;
    char errstr[512];
    int n = cfg_reload(svc->cfg, errstr, sizeof(errstr));
    if (n < 0) {
        log_error("reload failed, keeping the running configuration: %s", errstr);
        return;
    }
    apply_log_level(svc->def.conf);
    log_info("configuration reloaded (%d setting%s changed)", n, n == 1 ? "" : "s");
    if (svc->def.on_reload)
        svc->def.on_reload(lc, svc->def.opaque);
}

static void on_drain(lifecycle_t *lc, void *arg)
{
    service_t *svc = arg;
    if (svc->def.on_drain)
        svc->def.on_drain(lc, svc->def.opaque);
    else
        lifecycle_drained(lc);
}

static void on_status(json_t *status, void *arg)
{
    service_t *svc = arg;
    if (svc->def.status_cb)
        svc->def.status_cb(status, svc->def.opaque);
}

service_t *service_start(const service_def_t *def, int argc, char **argv, int *exit_code)
{
    service_t *svc = xcalloc(1, sizeof(*svc));
    svc->def = *def;
    snprintf(svc->name, sizeof(svc->name), "%s", def->name);
    /* CLI and config */
    svc->cfg = cfg_new(def->name, def->usage, def->items, def->nitems, def->conf, def->conf_size);
    char errstr[1024];
    cfg_result_t r = cfg_init(svc->cfg, argc, argv, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "mlops-%s: %s\n", def->name, errstr);
        *exit_code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto err;
    }
    const service_common_conf_t *c = def->conf;
    /* log */
    log_level_t lvl = LOG_LVL_INFO;
    if (c->log_level && log_level_parse(c->log_level, &lvl)) {
        fprintf(stderr, "mlops-%s: %s: log_level: '%s' is not one of debug, info, warn, error\n",
                def->name, cfg_source(svc->cfg, "log_level"), c->log_level);
        *exit_code = MLOPS_EXIT_USAGE;
        goto err;
    }
    log_init(def->name, lvl);
    /* event loop, metrics, life cycle */
    svc->base = event_base_new();
    if (!svc->base) {
        fprintf(stderr, "mlops-%s: cannot create the event loop\n", def->name);
        *exit_code = MLOPS_EXIT_FAILURE;
        goto err;
    }
    svc->metrics = metrics_new();
    svc->lc = lifecycle_new(svc->base, (int)c->drain_timeout_ms, on_drain, on_reload, svc);
    /* HTTP endpoints */
    svc->http = http_server_new(svc->base, c->bind_address, (int)c->metrics_port, NULL,
                                svc->metrics, errstr, sizeof(errstr));
    if (!svc->http) {
        log_fatal("%s", errstr);
        *exit_code = MLOPS_EXIT_FAILURE;
        goto err;
    }
    http_standard_routes(svc->http, def->name, svc->lc, svc->metrics, on_status, svc);
    return svc;
err:
    service_destroy(svc);
    return NULL;
}

int service_run(service_t *svc)
{
    const service_common_conf_t *c = svc->def.conf;
    log_emit(
        LOG_LVL_INFO,
        LOG_FIELDS(LOG_STR("version", MLOPS_VERSION), LOG_STR("librdkafka", rd_kafka_version_str()),
                   LOG_STR("libevent", event_get_version()), LOG_STR("jansson", JANSSON_VERSION),
                   LOG_INT("metrics_port", http_server_port(svc->http)),
                   LOG_STR("bind_address", c->bind_address),
                   LOG_STR("config", cfg_file(svc->cfg) ? cfg_file(svc->cfg) : "")),
        "mlops-%s up", svc->name);
    lifecycle_set_ready(svc->lc, true);
    event_base_dispatch(svc->base);
    int code = lifecycle_exit_code(svc->lc);
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_INT("exit_code", code)), "mlops-%s stopped", svc->name);
    return code;
}

void service_destroy(service_t *svc)
{
    if (!svc)
        return;
    http_server_destroy(svc->http);
    lifecycle_destroy(svc->lc);
    metrics_destroy(svc->metrics);
    if (svc->base)
        event_base_free(svc->base);
    cfg_destroy(svc->cfg);
    free(svc);
}

int service_main(const service_def_t *def, int argc, char **argv)
{
    int code;
    service_t *svc = service_start(def, argc, argv, &code);
    if (!svc)
        return code;
    if (def->setup && def->setup(svc, def->opaque)) {
        /* a TLS or SASL failure on the way is a configuration error */
        code = kafka_access_error(NULL, 0) ? MLOPS_EXIT_USAGE : MLOPS_EXIT_FAILURE;
    } else {
        code = service_run(svc);
    }
    if (def->teardown)
        def->teardown(svc, def->opaque);
    service_destroy(svc);
    return code;
}

struct event_base *service_base(service_t *svc) { return svc->base; }
metrics_t *service_metrics(service_t *svc) { return svc->metrics; }
lifecycle_t *service_lifecycle(service_t *svc) { return svc->lc; }
http_server_t *service_http(service_t *svc) { return svc->http; }
cfg_t *service_cfg(service_t *svc) { return svc->cfg; }
void service_set_opaque(service_t *svc, void *opaque) { svc->def.opaque = opaque; }

/* ---- the Kafka clients of a pipeline service ------------------------------------- */

void service_kafka_fatal_check(service_t *svc, const service_kafka_t *k)
{
    bool fatal =
        k->txn ? kafka_producer_fatal(kafka_txn_producer(k->txn)) ||
                     kafka_consumer_fatal(kafka_txn_consumer(k->txn))
               : (k->kp && kafka_producer_fatal(k->kp)) || (k->kc && kafka_consumer_fatal(k->kc));
    if (!fatal)
        return;
    char why[768];
    if (kafka_fatal_cause(why, sizeof(why)) == MLOPS_EXIT_USAGE)
        lifecycle_fail(service_lifecycle(svc), MLOPS_EXIT_USAGE, "%s", why);
    else
        lifecycle_fail(service_lifecycle(svc), MLOPS_EXIT_FAILURE,
                       "fatal Kafka error: exiting to be restarted (uncommitted input is "
                       "re-read)");
}

void service_kafka_status(json_t *st, const service_kafka_t *k)
{
    bool up = k->txn ? kafka_producer_brokers_up(kafka_txn_producer(k->txn)) &&
                           kafka_consumer_brokers_up(kafka_txn_consumer(k->txn))
                     : (!k->kp || kafka_producer_brokers_up(k->kp)) &&
                           (!k->kc || kafka_consumer_brokers_up(k->kc));
    json_object_set_new(st, "kafka", json_string(up ? "up" : "unreachable"));
    if (!up)
        json_object_set_new(st, "ready", json_false());
}

void service_txn_commit(service_t *svc, kafka_txn_t *txn, int64_t *last_commit_ms,
                        metric_t *commits, metric_t *aborts)
{
    if (!txn || kafka_txn_pending(txn) == 0)
        return;
    err_t *e = NULL;
    kafka_txn_result_t r = kafka_txn_commit(txn, &e);
    *last_commit_ms = mono_ms();
    if (r == KAFKA_TXN_COMMITTED) {
        metric_inc(commits);
    } else if (r == KAFKA_TXN_ABORTED) {
        metric_inc(aborts);
        log_warn("transaction aborted and rewound: its inputs are processed again");
    } else {
        lifecycle_fail(service_lifecycle(svc), MLOPS_EXIT_FAILURE, "transaction failed: %s",
                       e ? e->msg : "?");
    }
    err_destroy(e);
}

int service_pipe_open(service_t *svc, const service_pipe_opts_t *o, service_pipe_t *out)
{
    memset(out, 0, sizeof(*out));
    const service_common_conf_t *c = svc->def.conf;
    char errstr[1024];
    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(service_cfg(svc), &nprops);
    kafka_opts_t ko = {.brokers = c->kafka_brokers,
                       .client_id = o->client_id,
                       .props = props,
                       .nprops = nprops,
                       .metrics = service_metrics(svc)};
    const char *topics[] = {o->input_topic};
    kafka_consumer_opts_t co = {.group_id = o->group_id,
                                .topics = topics,
                                .ntopics = 1,
                                .auto_commit = true,
                                .on_revoke = o->on_revoke,
                                .opaque = o->opaque};
    kafka_consumer_t *kc;
    if (o->transactional_id) {
        out->k.txn = kafka_txn_new(&ko, &co, o->transactional_id, errstr, sizeof(errstr));
        if (!out->k.txn)
            goto kafka_failed;
        kc = kafka_txn_consumer(out->k.txn);
        out->pwatch = kafka_producer_watch(kafka_txn_producer(out->k.txn), service_base(svc),
                                           errstr, sizeof(errstr));
    } else {
        out->k.kp =
            kafka_producer_new(&ko, NULL, o->on_delivery, o->opaque, errstr, sizeof(errstr));
        if (!out->k.kp)
            goto kafka_failed;
        kc = out->k.kc = kafka_consumer_new(&ko, &co, errstr, sizeof(errstr));
        if (!kc)
            goto kafka_failed;
        out->tracker = kafka_tracker_new(kc);
        out->pwatch = kafka_producer_watch(out->k.kp, service_base(svc), errstr, sizeof(errstr));
    }
    if (!out->pwatch)
        goto failed;
    out->watch =
        kafka_consumer_watch(kc, service_base(svc), o->on_input, o->opaque, errstr, sizeof(errstr));
    if (!out->watch)
        goto failed;
    return 0;
kafka_failed:
    log_fatal("Kafka: %s", errstr);
    return -1;
failed:
    log_fatal("%s", errstr);
    return -1;
}
