/* mlops-monitor: drift and performance monitoring, alerts.
 *
 * Subsystems, in order: the silence API (silences.c, Redis), then the drift
 * pipeline (pipeline.c: features and models in, gauges, alerts and retrain
 * requests out, alert state in Redis). Teardown runs in reverse. */
#include <string.h>

#include "log.h"
#include "monitor.h"
#include "pipeline.h"
#include "service.h"

typedef struct monitor_conf {
    SERVICE_COMMON_FIELDS;
    char *redis_url;
    int64_t redis_timeout_ms;
    char *silences_key;
    char *group_id;
    char *features_topic;
    char *models_topic;
    char *predictions_topic;
    char *labels_topic;
    int64_t label_lateness_ms;
    int64_t max_pending_labels;
    char *alerts_topic;
    char *train_requests_topic;
    char *windows;
    double drift_share;
    char *model;
    char *rules;
    char *alert_state_key;
    char *retrain_alerts;
    int64_t retrain_cooldown_ms;
    int64_t retrain_latest;
    char *registry_url;
    char *registry_token;
    int64_t max_event_bytes;
} monitor_conf_t;

static const cfg_item_t monitor_items[] = {
    SERVICE_COMMON_ITEMS(monitor_conf_t, "9104"),
    CFG_ITEM(monitor_conf_t, redis_url, CFG_T_STR, "redis://127.0.0.1:6380", CFG_SECRET,
             "Redis holding alert state and silences"),
    CFG_ITEM_RANGE(monitor_conf_t, redis_timeout_ms, CFG_T_INT, "200", 0,
                   "deadline of each Redis call", 1, 60000),
    CFG_ITEM(monitor_conf_t, silences_key, CFG_T_STR, "mlops:monitor:silences", 0,
             "Redis hash of silences (the notifier reads the same key)"),
    CFG_ITEM(monitor_conf_t, group_id, CFG_T_STR, "mlops-monitor", 0, "consumer group"),
    CFG_ITEM(monitor_conf_t, features_topic, CFG_T_STR, "features", 0,
             "topic of features/1 records (input drift)"),
    CFG_ITEM(monitor_conf_t, models_topic, CFG_T_STR, "models", 0,
             "topic of model_event/1 records (the champion's reference profile); '' = none"),
    CFG_ITEM(monitor_conf_t, predictions_topic, CFG_T_STR, "predictions", 0,
             "topic of prediction/1 records (prediction drift, performance); '' = none"),
    CFG_ITEM(monitor_conf_t, labels_topic, CFG_T_STR, "labels", 0,
             "topic of label/1 records (realized performance); '' = none"),
    CFG_ITEM_RANGE(monitor_conf_t, label_lateness_ms, CFG_T_INT, "604800000", 0,
                   "how long a prediction waits for its label (and a label for its prediction)", 0,
                   9e15),
    CFG_ITEM_RANGE(monitor_conf_t, max_pending_labels, CFG_T_INT, "1000000", 0,
                   "event ids kept waiting for the join at most (the oldest go first)", 1, 1e9),
    CFG_ITEM(monitor_conf_t, alerts_topic, CFG_T_STR, "alerts", 0, "where alert/1 records go"),
    CFG_ITEM(monitor_conf_t, train_requests_topic, CFG_T_STR, "train.requests", 0,
             "where train_request/1 records go"),
    CFG_ITEM(monitor_conf_t, windows, CFG_T_STR, "1000", 0,
             "windows, comma-separated: by count SIZE or SIZE/STEP, by event time SPAN, "
             "SPAN/HOP, with +LATENESS (1000,5000/1000,1h/15m+5m)"),
    CFG_ITEM_RANGE(monitor_conf_t, drift_share, CFG_T_DBL, "0.5", 0,
                   "dataset drift when this share of the inputs drifted", 0.0001, 1),
    CFG_ITEM(monitor_conf_t, model, CFG_T_STR, NULL, 0,
             "model/1 artifact file(s) to monitor from the start, comma-separated"),
    CFG_ITEM(monitor_conf_t, rules, CFG_T_STR, NULL, 0,
             "alert rules file (JSON, see alerts.h); default: the built-in rules"),
    CFG_ITEM(monitor_conf_t, alert_state_key, CFG_T_STR, "mlops:monitor:alerts", 0,
             "Redis key of the alert engine's state (and prefix of the retrain cooldowns)"),
    CFG_ITEM(monitor_conf_t, retrain_alerts, CFG_T_STR, "dataset_drift,performance_drop", 0,
             "alerts whose firing files a train_request/1 for the model"),
    CFG_ITEM_RANGE(monitor_conf_t, retrain_cooldown_ms, CFG_T_INT, "86400000", 0,
                   "at most one retrain request per model in this time", 0, 9e15),
    CFG_ITEM_RANGE(monitor_conf_t, retrain_latest, CFG_T_INT, "10000", 0,
                   "a retrain request asks for the latest N labelled events", 1, 1e9),
    CFG_ITEM(monitor_conf_t, registry_url, CFG_T_STR, "http://127.0.0.1:8080", 0,
             "mlops-registry, where champion artifacts are downloaded from"),
    CFG_ITEM(monitor_conf_t, registry_token, CFG_T_STR, NULL, CFG_SECRET,
             "bearer token (reader) for the registry"),
    CFG_ITEM_RANGE(monitor_conf_t, max_event_bytes, CFG_T_INT, "1048576", 0,
                   "largest input record read", 64, 1 << 28),
};

typedef struct monitor {
    monitor_conf_t *conf;
    silence_api_t *silences;
    pipeline_conf_t pconf;
    pipeline_t *pipeline;
} monitor_t;

static int setup(service_t *svc, void *opaque)
{
    monitor_t *mo = opaque;
    monitor_conf_t *c = mo->conf;
    char err[512];
    mo->silences = silence_api_new(c->redis_url, (int)c->redis_timeout_ms, c->silences_key,
                                   service_metrics(svc), err, sizeof(err));
    if (!mo->silences) {
        log_fatal("redis_url: %s", err);
        return -1;
    }
    silence_api_routes(mo->silences, service_http(svc));
    mo->pconf = (pipeline_conf_t){
        .kafka_brokers = c->kafka_brokers,
        .group_id = c->group_id,
        .features_topic = c->features_topic,
        .models_topic = c->models_topic,
        .predictions_topic = c->predictions_topic,
        .labels_topic = c->labels_topic,
        .label_lateness_ms = c->label_lateness_ms,
        .max_pending_labels = c->max_pending_labels,
        .alerts_topic = c->alerts_topic,
        .train_requests_topic = c->train_requests_topic,
        .windows = c->windows,
        .drift_share = c->drift_share,
        .model_files = c->model,
        .rules = c->rules,
        .redis_url = c->redis_url,
        .redis_timeout_ms = (int)c->redis_timeout_ms,
        .alert_state_key = c->alert_state_key,
        .retrain_alerts = c->retrain_alerts,
        .retrain_cooldown_ms = c->retrain_cooldown_ms,
        .retrain_latest = c->retrain_latest,
        .registry_url = c->registry_url,
        .registry_token = c->registry_token,
        .max_event_bytes = c->max_event_bytes,
    };
    mo->pipeline = pipeline_new(svc, &mo->pconf);
    return mo->pipeline ? 0 : -1;
}

static void on_drain(lifecycle_t *lc, void *opaque)
{
    monitor_t *mo = opaque;
    pipeline_drain(mo->pipeline);
    lifecycle_drained(lc);
}

static void teardown(service_t *svc, void *opaque)
{
    monitor_t *mo = opaque;
    pipeline_destroy(mo->pipeline);
    silence_api_destroy(mo->silences);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "notify"))
        return notify_main(argc - 1, argv + 1);
    monitor_conf_t conf;
    monitor_t mo = {.conf = &conf};
    service_def_t def = {
        .name = "monitor",
        .usage = "\n  drift and performance monitoring, alerts, the silence API;\n"
                 "  `mlops-monitor notify --help`: the Slack notifier",
        .items = monitor_items,
        .nitems = MLOPS_ARRAY_LEN(monitor_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
        .on_drain = on_drain,
        .setup = setup,
        .teardown = teardown,
        .opaque = &mo,
    };
    return service_main(&def, argc, argv);
}
