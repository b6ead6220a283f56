/* window.c: after every value of a random stream (with ties, NaN and inf),
 * the window's sorted contents, ranks, order statistics, ticks and the KS
 * and Wasserstein results equal a recomputation from scratch over the last
 * `size` finite values (kept here in a plain array and sorted with qsort). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "drift.h"
#include "window.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double draw(unsigned *seed, int mode)
{
    int r = rand_r(seed);
    switch (mode) {
    case 0: return (double)(r % 7);                     /* heavy ties */
    case 1: return (double)(r % 100000) / 997.0 - 50.0; /* mostly distinct */
    default:
        return (r % 50 == 0)   ? (double)NAN
               : (r % 51 == 0) ? (double)INFINITY
                               : (double)(r % 40) * 0.25;
    }
}

static void run_stream(size_t size, size_t step, int mode, size_t nvalues, unsigned seed)
{
    char err[128];
    window_t *w = window_new(size, step, err, sizeof(err));
    cr_assert(w, "%s", err);
    double *hist = malloc(nvalues * sizeof(double));
    size_t nhist = 0;
    double *want = malloc(size * sizeof(double)), *got = malloc(size * sizeof(double));
    double *vals = malloc(size * sizeof(double));
    size_t *counts = malloc(size * sizeof(size_t));
    /* a fixed reference sample */
    double ref[300];
    unsigned rs = seed + 1;
    for (int i = 0; i < 300; i++)
        ref[i] = draw(&rs, mode == 2 ? 0 : mode);
    qsort(ref, 300, sizeof(double), cmp_d);
    size_t finite_seen = 0, ticks = 0;
    for (size_t t = 0; t < nvalues; t++) {
        double v = draw(&seed, mode);
        bool tick = window_add(w, v);
        if (isfinite(v)) {
            hist[nhist++] = v;
            finite_seen++;
        }
        size_t n = nhist < size ? nhist : size;
        bool want_tick = isfinite(v) && finite_seen >= size && (finite_seen - size) % step == 0;
        cr_assert_eq(tick, want_tick, "t=%zu", t);
        ticks += want_tick;
        cr_assert_eq(window_count(w), n);
        memcpy(want, hist + nhist - n, n * sizeof(double));
        qsort(want, n, sizeof(double), cmp_d);
        cr_assert_eq(window_sorted(w, got), n);
        cr_assert(!memcmp(got, want, n * sizeof(double)), "t=%zu: sorted contents differ", t);
        size_t k = window_distinct_counts(w, vals, counts), nd = 0;
        for (size_t i = 0; i < n; i++)
            nd += i == 0 || want[i] != want[i - 1];
        cr_assert_eq(k, nd);
        cr_assert_eq(window_distinct(w), nd);
        if (n == 0)
            continue;
        /* rank and k-th at a few points */
        for (int q = 0; q < 3; q++) {
            size_t kk = (size_t)rand_r(&seed) % n;
            cr_assert_eq(window_kth(w, kk), want[kk]);
            double probe = want[kk] + (q == 1 ? 0.1 : 0.0);
            size_t r = 0;
            while (r < n && want[r] <= probe)
                r++;
            cr_assert_eq(window_rank(w, probe), r);
        }
        cr_assert(isnan(window_kth(w, n)));
        if (tick || t % 37 == 0) {
            drift_ks_t a, b;
            cr_assert_eq(window_ks(w, ref, 300, DRIFT_KS_AUTO, got, &a), 0);
            cr_assert_eq(drift_ks_2samp(ref, 300, hist + nhist - n, n, DRIFT_KS_AUTO, &b), 0);
            cr_assert_eq(a.statistic, b.statistic, "t=%zu", t);
            cr_assert_eq(a.pvalue, b.pvalue, "t=%zu", t);
            double wa = window_wasserstein(w, ref, 300, vals, counts);
            double wb = drift_wasserstein(ref, 300, hist + nhist - n, n);
            cr_assert_eq(wa, wb, "t=%zu: %.17g vs %.17g", t, wa, wb);
        }
    }
    cr_assert_eq(window_ticks(w), ticks);
    window_clear(w);
    cr_assert_eq(window_count(w), 0);
    cr_assert_eq(window_distinct(w), 0);
    cr_assert_not(window_add(w, 1.0) && size > 1);
    free(hist);
    free(want);
    free(got);
    free(vals);
    free(counts);
    window_destroy(w);
}

Test(window, sliding_with_heavy_ties) { run_stream(50, 1, 0, 3000, 1); }

Test(window, hopping_mostly_distinct) { run_stream(128, 16, 1, 4000, 2); }

Test(window, tumbling_with_nan_and_inf_skipped) { run_stream(64, 64, 2, 3000, 3); }

Test(window, size_one) { run_stream(1, 1, 1, 200, 4); }

/* tumbling windows keep no treap: their ring is radix-sorted when read */
Test(window, tumbling_mostly_distinct_with_negatives) { run_stream(200, 200, 1, 3000, 5); }

Test(window, tumbling_with_heavy_ties) { run_stream(40, 40, 0, 2000, 6); }

Test(window, bad_sizes_are_refused)
{
    char err[128];
    cr_assert_null(window_new(0, 1, err, sizeof(err)));
    cr_assert_null(window_new(10, 11, err, sizeof(err)));
    cr_assert_null(window_new(10, 0, err, sizeof(err)));
    cr_assert(strstr(err, "step"), "%s", err);
    window_destroy(NULL);
}

Test(window, a_million_updates_stay_cheap)
{
    /* O(log d) per value: 1,000,000 values through a 10,000 window */
    char err[128];
    window_t *w = window_new(10000, 1000, err, sizeof(err));
    unsigned seed = 9;
    for (int i = 0; i < 1000000; i++)
        (void)window_add(w, (double)(rand_r(&seed) % 1000000) / 7.0);
    cr_assert_eq(window_count(w), 10000);
    cr_assert_eq(window_ticks(w), 991);
    window_destroy(w);
}
