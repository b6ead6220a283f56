/* mlops-registry: model registry over HTTP, backed by Postgres. */
#include "service.h"

typedef struct registry_conf {
    SERVICE_COMMON_FIELDS;
} registry_conf_t;

static const cfg_item_t registry_items[] = {
    SERVICE_COMMON_ITEMS(registry_conf_t, "8080"),
};

int main(int argc, char **argv)
{
    registry_conf_t conf;
    service_def_t def = {
        .name = "registry",
        .usage = "\n  model registry over HTTP, backed by Postgres (API: issue #6)",
        .items = registry_items,
        .nitems = MLOPS_ARRAY_LEN(registry_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
    };
    return service_main(&def, argc, argv);
}
