/* mlops-ingest: validate, clean and feature-engineer events.raw into features. */
#include "service.h"

typedef struct ingest_conf {
    SERVICE_COMMON_FIELDS;
} ingest_conf_t;

static const cfg_item_t ingest_items[] = {
    SERVICE_COMMON_ITEMS(ingest_conf_t, "9101"),
};

int main(int argc, char **argv)
{
    ingest_conf_t conf;
    service_def_t def = {
        .name = "ingest",
        .usage = "\n  validate, clean and feature-engineer events.raw into features (pipeline: "
                 "issue #4)",
        .items = ingest_items,
        .nitems = MLOPS_ARRAY_LEN(ingest_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
    };
    return service_main(&def, argc, argv);
}
