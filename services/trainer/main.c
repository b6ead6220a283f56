/* mlops-trainer: train, evaluate and register models from train.requests. */
#include <string.h>

#include "fit.h"
#include "service.h"

typedef struct trainer_conf {
    SERVICE_COMMON_FIELDS;
} trainer_conf_t;

static const cfg_item_t trainer_items[] = {
    SERVICE_COMMON_ITEMS(trainer_conf_t, "9102"),
};

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "fit"))
        return trainer_fit_main(argc - 1, argv + 1);
    trainer_conf_t conf;
    service_def_t def = {
        .name = "trainer",
        .usage =
            "\n  train, evaluate and register models from train.requests (pipeline: issue #5)\n"
            "  mlops-trainer fit --data train.csv --label COL --positive VALUE ... (fit --help)",
        .items = trainer_items,
        .nitems = MLOPS_ARRAY_LEN(trainer_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
    };
    return service_main(&def, argc, argv);
}
