/*
 * mlops-bench-predict MODEL.json DATA.csv [N]: single-row scoring latency of
 * the scorer's path (model_encode + model_predict from common/model.c) on
 * the first N cleaned rows of DATA.csv (default 10,000), each row timed on
 * its own. Prints one JSON object: p50/p90/p99/max in microseconds.
 * Cleaning (spec_clean) is not timed: it is ingest's work, done before a
 * features/1 record reaches the scorer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "model.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: mlops-bench-predict MODEL.json DATA.csv [N]\n");
        return 2;
    }
    char err[2048];
    model_t *m = model_load(argv[1], err, sizeof(err));
    if (!m) {
        fprintf(stderr, "mlops-bench-predict: %s\n", err);
        return 1;
    }
    dataset_opts_t o = {.strict = false};
    dataset_t *ds = dataset_load_csv(model_spec(m), argv[2], &o, err, sizeof(err));
    if (!ds) {
        fprintf(stderr, "mlops-bench-predict: %s\n", err);
        model_destroy(m);
        return 1;
    }
    size_t n = argc > 3 ? (size_t)atol(argv[3]) : 10000;
    if (n > ds->nrows)
        n = ds->nrows;
    double *x = xmalloc((model_nslots(m) + 1) * sizeof(double));
    double *lat = xmalloc((n + 1) * sizeof(double));
    double sink = 0;
    for (size_t i = 0; i < n && i < 1000; i++) { /* warm up */
        model_encode(m, ds->vals + i * ds->ncolumns, x);
        sink += model_predict(m, x);
    }
    for (size_t i = 0; i < n; i++) {
        double t0 = now_ns();
        model_encode(m, ds->vals + i * ds->ncolumns, x);
        sink += model_predict(m, x);
        lat[i] = (now_ns() - t0) / 1e3;
    }
    qsort(lat, n, sizeof(double), cmp_dbl);
    printf("{\"algo\":\"%s\",\"rows\":%zu,\"p50_us\":%.3f,\"p90_us\":%.3f,\"p99_us\":%.3f,"
           "\"max_us\":%.3f,\"checksum\":%.6f}\n",
           model_algo_name(model_algo(m)), n, lat[n / 2], lat[n * 9 / 10], lat[n * 99 / 100],
           lat[n - 1], sink);
    free(lat);
    free(x);
    dataset_destroy(ds);
    model_destroy(m);
    return 0;
}
