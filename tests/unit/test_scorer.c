/* The scorer's pure parts: the online-row cache (LRU + TTL) checked against a
 * naive reference model, and the canary split (share, stickiness,
 * uniformity, monotonicity). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocache.h"
#include "rollout.h"
#include "testutil.h"

static void put1(ocache_t *c, const char *key, const char *val, int64_t now)
{
    char pairs[128];
    int n = snprintf(pairs, sizeof(pairs), "f%c%s%c_ts%c7%c", 0, val, 0, 0, 0);
    ocache_put(c, key, pairs, (size_t)n, 2, 7, now);
}

Test(ocache, hit_miss_and_fields)
{
    ocache_t *c = ocache_new(4, 1000, NULL, NULL, NULL);
    cr_assert_null(ocache_get(c, "a", 0));
    put1(c, "a", "1.5", 0);
    const ocache_entry_t *e = ocache_get(c, "a", 10);
    cr_assert_not_null(e);
    cr_assert_str_eq(ocache_field(e, "f"), "1.5");
    cr_assert_str_eq(ocache_field(e, "_ts"), "7");
    cr_assert_null(ocache_field(e, "g"));
    cr_assert_eq(e->row_ts_ms, 7);
    ocache_stats_t st;
    ocache_stats(c, &st);
    cr_assert_eq(st.hits, 1);
    cr_assert_eq(st.misses, 1);
    cr_assert_eq(st.size, 1);
    ocache_destroy(c);
}

Test(ocache, empty_row_is_cached_as_no_row)
{
    ocache_t *c = ocache_new(2, 1000, NULL, NULL, NULL);
    ocache_put(c, "x", "", 0, 0, -1, 0);
    const ocache_entry_t *e = ocache_get(c, "x", 1);
    cr_assert_not_null(e);
    cr_assert_eq(e->npairs, 0);
    cr_assert_null(ocache_field(e, "f"));
    ocache_destroy(c);
}

Test(ocache, ttl_expires_entries)
{
    ocache_t *c = ocache_new(4, 100, NULL, NULL, NULL);
    put1(c, "a", "1", 1000);
    cr_assert_not_null(ocache_get(c, "a", 1099));
    cr_assert_null(ocache_get(c, "a", 1100), "an entry is valid for ttl_ms only");
    ocache_stats_t st;
    ocache_stats(c, &st);
    cr_assert_eq(st.expired, 1);
    cr_assert_eq(st.size, 0);
    /* re-putting refreshes the clock */
    put1(c, "a", "2", 2000);
    cr_assert_str_eq(ocache_field(ocache_get(c, "a", 2050), "f"), "2");
    ocache_destroy(c);
}

Test(ocache, ttl_zero_caches_nothing)
{
    ocache_t *c = ocache_new(4, 0, NULL, NULL, NULL);
    put1(c, "a", "1", 5);
    cr_assert_null(ocache_get(c, "a", 5));
    ocache_destroy(c);
}

Test(ocache, evicts_least_recently_used)
{
    ocache_t *c = ocache_new(3, 1000000, NULL, NULL, NULL);
    put1(c, "a", "1", 0);
    put1(c, "b", "2", 0);
    put1(c, "c", "3", 0);
    cr_assert_not_null(ocache_get(c, "a", 1)); /* a is now the most recent: b is the oldest */
    put1(c, "d", "4", 2);
    cr_assert_null(ocache_get(c, "b", 3));
    cr_assert_not_null(ocache_get(c, "a", 3));
    cr_assert_not_null(ocache_get(c, "c", 3));
    cr_assert_not_null(ocache_get(c, "d", 3));
    put1(c, "c", "33", 4); /* replace: no eviction, c moves to the front */
    ocache_stats_t st;
    ocache_stats(c, &st);
    cr_assert_eq(st.evictions, 1);
    cr_assert_eq(st.size, 3);
    put1(c, "e", "5", 5); /* the oldest is now a */
    cr_assert_null(ocache_get(c, "a", 6));
    cr_assert_str_eq(ocache_field(ocache_get(c, "c", 6), "f"), "33");
    ocache_destroy(c);
}

Test(ocache, metrics_count_hits_misses_evictions)
{
    metrics_t *reg = metrics_new();
    metric_t *h = metrics_counter(reg, "h_total", "h", NULL);
    metric_t *m = metrics_counter(reg, "m_total", "m", NULL);
    metric_t *ev = metrics_counter(reg, "e_total", "e", NULL);
    ocache_t *c = ocache_new(1, 1000, h, m, ev);
    put1(c, "a", "1", 0);
    (void)ocache_get(c, "a", 0);
    put1(c, "b", "1", 0);
    (void)ocache_get(c, "a", 0);
    cr_assert_eq(metric_value(h), 1);
    cr_assert_eq(metric_value(m), 1);
    cr_assert_eq(metric_value(ev), 1);
    ocache_destroy(c);
    metrics_destroy(reg);
}

/* A naive LRU with TTL: an array in recency order (index 0 = most recent). */
typedef struct ref {
    char key[16];
    int val;
    int64_t put;
} ref_t;

Test(ocache, random_operations_match_a_reference_lru)
{
    enum { CAP = 8, KEYS = 20, OPS = 20000, TTL = 50 };
    ocache_t *c = ocache_new(CAP, TTL, NULL, NULL, NULL);
    ref_t ref[CAP];
    int nref = 0;
    unsigned seed = 12345;
    int64_t now = 0;
    for (int op = 0; op < OPS; op++) {
        seed = seed * 1103515245u + 12345u;
        now += (seed >> 16) % 3;
        char key[16];
        snprintf(key, sizeof(key), "k%u", (seed >> 8) % KEYS);
        int pos = -1;
        for (int i = 0; i < nref; i++)
            if (!strcmp(ref[i].key, key))
                pos = i;
        if ((seed >> 4) % 2) {
            /* get */
            bool live = pos >= 0 && now - ref[pos].put < TTL;
            const ocache_entry_t *e = ocache_get(c, key, now);
            if ((e != NULL) != live)
                cr_assert_fail("op %d: get %s: cache %d, reference %d", op, key, e != NULL, live);
            if (pos >= 0 && !live) {
                memmove(&ref[pos], &ref[pos + 1], (size_t)(nref - pos - 1) * sizeof(ref_t));
                nref--;
            } else if (live) {
                char want[16];
                snprintf(want, sizeof(want), "%d", ref[pos].val);
                if (strcmp(ocache_field(e, "f"), want))
                    cr_assert_fail("op %d: %s = %s, reference %s", op, key, ocache_field(e, "f"),
                                   want);
                ref_t r = ref[pos];
                memmove(&ref[1], &ref[0], (size_t)pos * sizeof(ref_t));
                ref[0] = r;
            }
        } else {
            /* put */
            char val[16];
            snprintf(val, sizeof(val), "%d", op);
            put1(c, key, val, now);
            if (pos >= 0) {
                memmove(&ref[pos], &ref[pos + 1], (size_t)(nref - pos - 1) * sizeof(ref_t));
                nref--;
            } else if (nref == CAP) {
                nref--; /* the least recently used goes */
            }
            memmove(&ref[1], &ref[0], (size_t)nref * sizeof(ref_t));
            snprintf(ref[0].key, sizeof(ref[0].key), "%s", key);
            ref[0].val = op;
            ref[0].put = now;
            nref++;
        }
        ocache_stats_t st;
        ocache_stats(c, &st);
        if (st.size > CAP)
            cr_assert_fail("op %d: %zu entries, cap %d", op, st.size, CAP);
    }
    ocache_destroy(c);
}

/* ---- canary split ---------------------------------------------------------------- */

Test(rollout, share_within_two_percent_over_100000_entities)
{
    const double shares[] = {0.01, 0.05, 0.1, 0.2, 0.5, 0.9};
    enum { N = 100000 };
    for (size_t s = 0; s < sizeof(shares) / sizeof(shares[0]); s++) {
        size_t on = 0;
        for (int i = 0; i < N; i++) {
            char e[32];
            int len = snprintf(e, sizeof(e), "emp-%06d", i);
            on += rollout_is_challenger("attrition", e, (size_t)len, shares[s]);
        }
        double got = (double)on / N;
        /* ±2 % of the share, or 4 binomial standard deviations where 2 % of
         * a small share is below the sampling noise of 100,000 entities */
        double sd = sqrt(shares[s] * (1 - shares[s]) / N);
        double tol = fmax(0.02 * shares[s], 4 * sd);
        cr_log_info("share %.2f: %.5f (tolerance %.5f)", shares[s], got, tol);
        cr_assert_leq(fabs(got - shares[s]), tol,
                      "share %.2f: the challenger got %.5f of %d entities", shares[s], got, N);
    }
}

Test(rollout, sticky_and_monotone_in_the_share)
{
    for (int i = 0; i < 20000; i++) {
        char e[32];
        int len = snprintf(e, sizeof(e), "user-%d", i * 7919);
        double b = rollout_bucket("m", e, (size_t)len);
        if (!(b >= 0 && b < 1))
            cr_assert_fail("%s: bucket %g", e, b);
        if (b != rollout_bucket("m", e, (size_t)len))
            cr_assert_fail("%s: same entity, another bucket", e);
        bool at10 = rollout_is_challenger("m", e, (size_t)len, 0.1);
        bool at30 = rollout_is_challenger("m", e, (size_t)len, 0.3);
        if (at10 && !at30)
            cr_assert_fail("%s: raising the share moved it back to the champion", e);
        if (at10 != (b < 0.1))
            cr_assert_fail("%s: the split disagrees with the bucket", e);
    }
    cr_assert_not(rollout_is_challenger("m", "x", 1, 0));
    cr_assert(rollout_is_challenger("m", "x", 1, 1));
}

Test(rollout, buckets_are_uniform_chi_square)
{
    enum { N = 100000, BINS = 100 };
    int count[BINS] = {0};
    for (int i = 0; i < N; i++) {
        char e[32];
        int len = snprintf(e, sizeof(e), "%d", i);
        count[(int)(rollout_bucket("salt", e, (size_t)len) * BINS)]++;
    }
    double chi2 = 0, expect = (double)N / BINS;
    for (int k = 0; k < BINS; k++)
        chi2 += (count[k] - expect) * (count[k] - expect) / expect;
    /* scipy.stats.chi2.ppf(0.999, 99) = 148.23 */
    cr_assert_lt(chi2, 148.23, "chi-square %.1f over %d bins", chi2, BINS);
}

Test(rollout, salt_changes_the_split)
{
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        char e[32];
        int len = snprintf(e, sizeof(e), "e%d", i);
        differ += rollout_is_challenger("a", e, (size_t)len, 0.5) !=
                  rollout_is_challenger("b", e, (size_t)len, 0.5);
    }
    cr_assert_gt(differ, 400);
    cr_assert_lt(differ, 600);
}

/* ---- the Thompson sampler ------------------------------------------------------------- */

#include "ab.h"

Test(ab, beta_draws_have_the_beta_moments)
{
    /* mean a/(a+b), variance ab/((a+b)^2 (a+b+1)) */
    const double ab_params[][2] = {{1, 1}, {3, 7}, {50, 20}, {1, 400}};
    for (size_t k = 0; k < sizeof(ab_params) / sizeof(ab_params[0]); k++) {
        double a = ab_params[k][0], b = ab_params[k][1];
        ab_rng_t r;
        ab_rng_seed(&r, 42 + k);
        enum { N = 200000 };
        double sum = 0, sum2 = 0;
        for (int i = 0; i < N; i++) {
            double x = ab_beta(&r, a, b);
            if (!(x > 0 && x < 1))
                cr_assert_fail("Beta(%g,%g) drew %g", a, b, x);
            sum += x;
            sum2 += x * x;
        }
        double mean = sum / N, var = sum2 / N - mean * mean;
        double m = a / (a + b), v = a * b / ((a + b) * (a + b) * (a + b + 1));
        /* 5 standard errors of the mean; variance within 3 % */
        cr_assert_leq(fabs(mean - m), 5 * sqrt(v / N), "Beta(%g,%g): mean %g, want %g", a, b, mean,
                      m);
        cr_assert_leq(fabs(var - v), 0.03 * v, "Beta(%g,%g): variance %g, want %g", a, b, var, v);
    }
}

Test(ab, uniform_is_in_the_open_interval_and_balanced)
{
    ab_rng_t r;
    ab_rng_seed(&r, 1);
    int below = 0;
    for (int i = 0; i < 100000; i++) {
        double u = ab_rng_uniform(&r);
        if (!(u > 0 && u < 1))
            cr_assert_fail("uniform drew %g", u);
        below += u < 0.5;
    }
    cr_assert(below > 49000 && below < 51000, "%d", below);
}
