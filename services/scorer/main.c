/* mlops-scorer: stream predictions from features. */
#include "service.h"

typedef struct scorer_conf {
    SERVICE_COMMON_FIELDS;
} scorer_conf_t;

static const cfg_item_t scorer_items[] = {
    SERVICE_COMMON_ITEMS(scorer_conf_t, "9103"),
};

int main(int argc, char **argv)
{
    scorer_conf_t conf;
    service_def_t def = {
        .name = "scorer",
        .usage = "\n  stream predictions from features (pipeline: issue #7)",
        .items = scorer_items,
        .nitems = MLOPS_ARRAY_LEN(scorer_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
    };
    return service_main(&def, argc, argv);
}
