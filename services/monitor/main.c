/* mlops-monitor: drift and performance monitoring, alerts.
 *
 * This slice serves the silence API (silences.c) that the notifier and
 * `mlopsctl alerts` use; the drift pipeline (issue #8) joins it here. */
#include <string.h>

#include "log.h"
#include "monitor.h"
#include "service.h"

typedef struct monitor_conf {
    SERVICE_COMMON_FIELDS;
    char *redis_url;
    int64_t redis_timeout_ms;
    char *silences_key;
} monitor_conf_t;

static const cfg_item_t monitor_items[] = {
    SERVICE_COMMON_ITEMS(monitor_conf_t, "9104"),
    CFG_ITEM(monitor_conf_t, redis_url, CFG_T_STR, "redis://127.0.0.1:6380", CFG_SECRET,
             "Redis holding alert state and silences"),
    CFG_ITEM_RANGE(monitor_conf_t, redis_timeout_ms, CFG_T_INT, "200", 0,
                   "deadline of each Redis call", 1, 60000),
    CFG_ITEM(monitor_conf_t, silences_key, CFG_T_STR, "mlops:monitor:silences", 0,
             "Redis hash of silences (the notifier reads the same key)"),
};

typedef struct monitor {
    monitor_conf_t *conf;
    silence_api_t *silences;
} monitor_t;

static int setup(service_t *svc, void *opaque)
{
    monitor_t *mo = opaque;
    char err[512];
    mo->silences = silence_api_new(mo->conf->redis_url, (int)mo->conf->redis_timeout_ms,
                                   mo->conf->silences_key, service_metrics(svc), err, sizeof(err));
    if (!mo->silences) {
        log_fatal("redis_url: %s", err);
        return -1;
    }
    silence_api_routes(mo->silences, service_http(svc));
    return 0;
}

static void teardown(service_t *svc, void *opaque)
{
    monitor_t *mo = opaque;
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
        .setup = setup,
        .teardown = teardown,
        .opaque = &mo,
    };
    return service_main(&def, argc, argv);
}
