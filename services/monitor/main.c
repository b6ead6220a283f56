/* mlops-monitor: drift and performance monitoring, alerts. */
#include <string.h>

#include "monitor.h"
#include "service.h"

typedef struct monitor_conf {
    SERVICE_COMMON_FIELDS;
} monitor_conf_t;

static const cfg_item_t monitor_items[] = {
    SERVICE_COMMON_ITEMS(monitor_conf_t, "9104"),
};

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "notify"))
        return notify_main(argc - 1, argv + 1);
    monitor_conf_t conf;
    service_def_t def = {
        .name = "monitor",
        .usage = "\n  drift and performance monitoring, alerts (pipeline: issue #8);\n"
                 "  `mlops-monitor notify --help`: the Slack notifier",
        .items = monitor_items,
        .nitems = MLOPS_ARRAY_LEN(monitor_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
    };
    return service_main(&def, argc, argv);
}
