/* metrics.c: series, thread-safe updates, histogram buckets and quantiles,
 * Prometheus text exposition. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "testutil.h"

static metrics_t *reg;
static void setup(void) { reg = metrics_new(); }
static void teardown(void) { metrics_destroy(reg); }
TestSuite(metrics, .init = setup, .fini = teardown);

static char *render(void)
{
    strbuf_t sb;
    strbuf_init(&sb);
    metrics_render(reg, &sb);
    return strbuf_detach(&sb, NULL);
}

Test(metrics, counters_and_gauges_render)
{
    char l[128];
    metric_t *bad = metrics_counter(reg, "mlops_dlq_total", "Records sent to the DLQ.",
                                    metrics_labels(l, sizeof(l), "reason", "bad_json", NULL));
    metric_t *dup = metrics_counter(reg, "mlops_dlq_total", "Records sent to the DLQ.",
                                    metrics_labels(l, sizeof(l), "reason", "duplicate_key", NULL));
    metric_t *g = metrics_gauge(reg, "mlops_lag", "Consumer lag.", NULL);
    metric_inc(bad);
    metric_inc(bad);
    metric_add(dup, 3);
    metric_set(g, 12.5);
    cr_assert_eq(metrics_counter(reg, "mlops_dlq_total", "", l), dup, "same series returned");
    char *s = render();
    cr_assert(strstr(s, "# HELP mlops_dlq_total Records sent to the DLQ.\n"
                        "# TYPE mlops_dlq_total counter\n"
                        "mlops_dlq_total{reason=\"bad_json\"} 2\n"
                        "mlops_dlq_total{reason=\"duplicate_key\"} 3\n"),
              "%s", s);
    cr_assert(strstr(s, "# TYPE mlops_lag gauge\nmlops_lag 12.5\n"), "%s", s);
    cr_assert(strstr(s, "process_resident_memory_bytes "), "%s", s);
    /* HELP/TYPE once per family */
    cr_assert_eq(strstr(s, "# TYPE mlops_dlq_total"), strstr(s + 1, "# TYPE mlops_dlq_total"));
    free(s);
}

Test(metrics, label_values_escaped)
{
    char l[128];
    metrics_labels(l, sizeof(l), "model", "a\"b\\c\nd", "v", "1", NULL);
    cr_assert_str_eq(l, "model=\"a\\\"b\\\\c\\nd\",v=\"1\"");
}

Test(metrics, histogram_buckets_are_cumulative)
{
    const double bounds[] = {1, 2, 5};
    metric_t *h = metrics_histogram(reg, "mlops_x_seconds", "X.", NULL, bounds, 3);
    double obs[] = {0.5, 1, 1.5, 3, 7, 9};
    for (size_t i = 0; i < 6; i++)
        metric_observe(h, obs[i]);
    metric_observe(h, NAN); /* ignored */
    char *s = render();
    cr_assert(strstr(s, "mlops_x_seconds_bucket{le=\"1\"} 2\n"
                        "mlops_x_seconds_bucket{le=\"2\"} 3\n"
                        "mlops_x_seconds_bucket{le=\"5\"} 4\n"
                        "mlops_x_seconds_bucket{le=\"+Inf\"} 6\n"
                        "mlops_x_seconds_sum 22\n"
                        "mlops_x_seconds_count 6\n"),
              "%s", s);
    free(s);
    cr_assert_float_eq(metric_value(h), 6, 0);
    cr_assert_float_eq(metric_sum(h), 22, 1e-12);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

Test(metrics, quantile_lands_in_the_bucket_of_the_true_quantile)
{
    metric_t *h = metrics_histogram(reg, "mlops_lat_seconds", "L.", NULL, NULL, 0);
    enum { N = 20000 };
    static double v[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        /* log-uniform between 20 us and 2 s */
        v[i] = 2e-5 * pow(1e5, (double)rand() / RAND_MAX);
        metric_observe(h, v[i]);
    }
    qsort(v, N, sizeof(double), cmp_dbl);
    static const double b[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                               0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
    double qs[] = {0.5, 0.9, 0.99};
    for (size_t k = 0; k < 3; k++) {
        double truth = v[(size_t)(qs[k] * N) - 1];
        double est = metric_quantile(h, qs[k]);
        double lo = 0, hi = b[0];
        for (size_t i = 0; i < sizeof(b) / sizeof(b[0]) && truth > hi; i++) {
            lo = b[i];
            hi = b[i + 1];
        }
        cr_assert(est >= lo && est <= hi, "q%.2f: estimate %g outside the true bucket [%g,%g]",
                  qs[k], est, lo, hi);
    }
    cr_assert(isnan(
        metric_quantile(metrics_histogram(reg, "mlops_empty_seconds", "", NULL, NULL, 0), 0.5)));
}

static metric_t *shared_counter;
static metric_t *shared_hist;
static void *bump(void *arg)
{
    for (int i = 0; i < 100000; i++) {
        metric_inc(shared_counter);
        metric_observe(shared_hist, 0.001);
    }
    return NULL;
}

Test(metrics, updates_from_threads_are_not_lost)
{
    shared_counter = metrics_counter(reg, "mlops_c_total", "C.", NULL);
    shared_hist = metrics_histogram(reg, "mlops_h_seconds", "H.", NULL, NULL, 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, bump, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_float_eq(metric_value(shared_counter), 400000, 0);
    cr_assert_float_eq(metric_value(shared_hist), 400000, 0);
    cr_assert_float_eq(metric_sum(shared_hist), 400.0, 1e-6);
}

Test(metrics, invalid_name_is_a_programming_error, .signal = SIGABRT)
{
    metrics_counter(reg, "bad name", "", NULL);
}
