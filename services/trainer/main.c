/* mlops-trainer: `fit` trains from a CSV; without it, the service trains
 * from train.requests (stream.c). */
#include <string.h>

#include "fit.h"
#include "stream.h"

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "fit"))
        return trainer_fit_main(argc - 1, argv + 1);
    return trainer_service_main(argc, argv);
}
