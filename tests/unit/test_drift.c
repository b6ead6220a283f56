/* drift.c: edge cases of the drift statistics, each checked against an
 * independent computation in this file (brute-force ECDFs, the exact
 * permutation distribution of the KS statistic by enumeration, closed forms
 * of the chi-square tail). The comparison with SciPy itself is
 * tests/oracle/test_drift_oracle.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "drift.h"

static bool close_rel(double a, double b, double rel, double abs_tol)
{
    if (a == b)
        return true;
    return fabs(a - b) <= abs_tol || fabs(a - b) <= rel * fmax(fabs(a), fabs(b));
}

/* sup |F1 - F2| by evaluating both ECDFs at every sample point */
static double brute_ks(const double *a, size_t n1, const double *b, size_t n2)
{
    double d = 0;
    for (int s = 0; s < 2; s++) {
        const double *pts = s ? b : a;
        size_t np = s ? n2 : n1;
        for (size_t k = 0; k < np; k++) {
            size_t c1 = 0, c2 = 0;
            for (size_t i = 0; i < n1; i++)
                c1 += a[i] <= pts[k];
            for (size_t i = 0; i < n2; i++)
                c2 += b[i] <= pts[k];
            double diff = fabs((double)c1 / (double)n1 - (double)c2 / (double)n2);
            if (diff > d)
                d = diff;
        }
    }
    return d;
}

/* P(D >= d) under H0 for continuous data: every split of n1 + n2 distinct
 * ranks into the two samples is equally likely; enumerate them all. */
static double brute_ks_pvalue(size_t n1, size_t n2, double d)
{
    size_t n = n1 + n2;
    double *x = malloc(n * sizeof(double)), *a = malloc(n1 * sizeof(double)),
           *b = malloc(n2 * sizeof(double));
    for (size_t i = 0; i < n; i++)
        x[i] = (double)i;
    size_t hit = 0, total = 0;
    for (unsigned mask = 0; mask < (1u << n); mask++) {
        if ((size_t)__builtin_popcount(mask) != n1)
            continue;
        size_t ia = 0, ib = 0;
        for (size_t i = 0; i < n; i++) {
            if (mask & (1u << i))
                a[ia++] = x[i];
            else
                b[ib++] = x[i];
        }
        total++;
        hit += brute_ks(a, n1, b, n2) >= d - 1e-12;
    }
    free(x);
    free(a);
    free(b);
    return (double)hit / (double)total;
}

Test(drift, ks_statistic_matches_brute_force_ecdf_with_ties)
{
    double a[] = {1, 2, 2, 2, 3, 5, 5, 8};
    double b[] = {2, 2, 3, 3, 3, 4, 9};
    drift_ks_t ks;
    cr_assert_eq(drift_ks_2samp(a, 8, b, 7, DRIFT_KS_AUTO, &ks), 0);
    double want = brute_ks(a, 8, b, 7);
    cr_assert(close_rel(ks.statistic, want, 1e-12, 0), "%.17g vs %.17g", ks.statistic, want);
    cr_assert(ks.exact);
}

Test(drift, ks_exact_pvalue_equals_the_enumerated_permutation_distribution)
{
    /* unequal sizes (band recursion) and equal sizes (reflection sum) */
    size_t sizes[][2] = {{3, 4}, {5, 7}, {6, 6}, {4, 9}, {7, 7}, {2, 11}};
    unsigned seed = 7;
    for (size_t s = 0; s < MLOPS_ARRAY_LEN(sizes); s++) {
        size_t n1 = sizes[s][0], n2 = sizes[s][1];
        for (int rep = 0; rep < 6; rep++) {
            double a[16], b[16];
            for (size_t i = 0; i < n1; i++)
                a[i] = (double)(rand_r(&seed) % 1000) + 0.25 * (double)i;
            for (size_t i = 0; i < n2; i++)
                b[i] =
                    (double)(rand_r(&seed) % 1000) + 0.125 + 0.001 * (double)i + (double)rep * 40;
            drift_ks_t ks;
            cr_assert_eq(drift_ks_2samp(a, n1, b, n2, DRIFT_KS_AUTO, &ks), 0);
            cr_assert(ks.exact);
            double want = brute_ks_pvalue(n1, n2, ks.statistic);
            cr_assert(close_rel(ks.pvalue, want, 1e-10, 1e-14),
                      "n1=%zu n2=%zu d=%g: %.17g vs %.17g", n1, n2, ks.statistic, ks.pvalue, want);
        }
    }
}

Test(drift, ks_identical_and_one_value_samples)
{
    double a[] = {4, 4, 4}, b[] = {4, 4};
    drift_ks_t ks;
    cr_assert_eq(drift_ks_2samp(a, 3, b, 2, DRIFT_KS_AUTO, &ks), 0);
    cr_assert_eq(ks.statistic, 0.0);
    cr_assert_eq(ks.pvalue, 1.0);
    double c[] = {7};
    cr_assert_eq(drift_ks_2samp(a, 3, c, 1, DRIFT_KS_AUTO, &ks), 0);
    cr_assert_eq(ks.statistic, 1.0);
    /* all splits of 4 items into 3 + 1 give D = 1 only when the single one is
     * at an end: 2 of 4 */
    cr_assert(close_rel(ks.pvalue, brute_ks_pvalue(3, 1, 1.0), 1e-12, 0), "%.17g", ks.pvalue);
}

Test(drift, empty_and_all_nan_samples_are_refused)
{
    double a[] = {1, 2, 3};
    double nan3[] = {NAN, INFINITY, -INFINITY};
    drift_ks_t ks;
    cr_assert_eq(drift_ks_2samp(a, 3, nan3, 3, DRIFT_KS_AUTO, &ks), -1);
    cr_assert_eq(drift_ks_2samp(a, 3, NULL, 0, DRIFT_KS_AUTO, &ks), -1);
    cr_assert(isnan(drift_wasserstein(a, 3, nan3, 3)));
    cr_assert(isnan(drift_wasserstein_norm(nan3, 3, a, 3)));
    double *r, *c;
    size_t k;
    cr_assert_eq(drift_bin_shares(true, nan3, 3, a, 3, true, &r, &c, &k), -1);
    drift_result_t res;
    char err[128];
    cr_assert_eq(drift_column(true, a, 3, nan3, 3, DRIFT_TEST_AUTO, NAN, &res, err, sizeof(err)),
                 -1);
    cr_assert(strstr(err, "current"), "%s", err);
    cr_assert_eq(drift_column(true, NULL, 0, a, 3, DRIFT_TEST_AUTO, NAN, &res, err, sizeof(err)),
                 -1);
    cr_assert(strstr(err, "reference"), "%s", err);
}

Test(drift, non_finite_values_are_dropped_before_the_test)
{
    double a[] = {1, NAN, 2, 3, INFINITY, 4, 5, 6, 7};
    double a_clean[] = {1, 2, 3, 4, 5, 6, 7};
    double b[] = {3, 4, -INFINITY, 5, 8, 9, 10};
    double b_clean[] = {3, 4, 5, 8, 9, 10};
    drift_ks_t k1, k2;
    cr_assert_eq(drift_ks_2samp(a, 9, b, 7, DRIFT_KS_AUTO, &k1), 0);
    cr_assert_eq(drift_ks_2samp(a_clean, 7, b_clean, 6, DRIFT_KS_AUTO, &k2), 0);
    cr_assert_eq(k1.statistic, k2.statistic);
    cr_assert_eq(k1.pvalue, k2.pvalue);
    cr_assert_eq(drift_wasserstein(a, 9, b, 7), drift_wasserstein(a_clean, 7, b_clean, 6));
    drift_result_t res;
    char err[128];
    cr_assert_eq(drift_column(true, a, 9, b, 7, DRIFT_TEST_AUTO, NAN, &res, err, sizeof(err)), 0);
    cr_assert_eq(res.n_ref, 7);
    cr_assert_eq(res.n_cur, 6);
}

Test(drift, wasserstein_of_point_masses_and_shifts)
{
    /* W1 between samples of one value each is the distance between them; a
     * shifted copy is at the shift */
    double a[] = {2.5}, b[] = {-1.0};
    cr_assert(close_rel(drift_wasserstein(a, 1, b, 1), 3.5, 1e-15, 0));
    double u[] = {0.1, 0.7, 1.9, 3.3, 4.0}, v[5];
    for (int i = 0; i < 5; i++)
        v[i] = u[i] + 0.75;
    cr_assert(close_rel(drift_wasserstein(u, 5, v, 5), 0.75, 1e-12, 0));
    /* a one-value reference has std 0: normed by 0.001 as Evidently */
    double c[] = {1, 1, 1}, d[] = {1.002, 1.002};
    cr_assert(close_rel(drift_wasserstein_norm(c, 3, d, 2), 2.0, 1e-9, 0));
}

Test(drift, chi2_tail_matches_closed_forms)
{
    /* even df: Q(k, x/2) = e^{-x/2} sum_{i<k} (x/2)^i / i!; df = 1: erfc(sqrt(x/2)) */
    double xs[] = {0.01, 0.5, 1, 3.7, 10, 42, 200, 900};
    for (size_t t = 0; t < MLOPS_ARRAY_LEN(xs); t++) {
        double x = xs[t];
        for (int k = 1; k <= 40; k++) {
            double h = x / 2, term = 1, s = 0;
            for (int i = 0; i < k; i++) {
                s += term;
                term *= h / (i + 1);
            }
            double want = exp(-h) * s;
            double got = drift_chi2_sf(2.0 * k, x);
            cr_assert(close_rel(got, want, 1e-11, 1e-300), "df=%d x=%g: %.17g vs %.17g", 2 * k, x,
                      got, want);
        }
        double got1 = drift_chi2_sf(1, x), want1 = erfc(sqrt(x / 2));
        cr_assert(close_rel(got1, want1, 1e-11, 1e-300), "df=1 x=%g: %.17g vs %.17g", x, got1,
                  want1);
    }
    cr_assert_eq(drift_chi2_sf(3, 0), 1.0);
    cr_assert_eq(drift_chi2_sf(3, INFINITY), 0.0);
}

Test(drift, unseen_category_in_current_is_drift_for_chisquare)
{
    /* codes: 1, 2, 3 in reference; 4 appears only in current */
    double ref[] = {1, 1, 2, 2, 3, 3, 1, 2, 3, 1};
    double cur[] = {1, 2, 3, 4, 1, 2, 3, 1};
    drift_result_t res;
    char err[128];
    cr_assert_eq(drift_column(false, ref, 10, cur, 8, DRIFT_TEST_AUTO, NAN, &res, err, sizeof(err)),
                 0);
    cr_assert_eq(res.test, DRIFT_TEST_CHISQUARE);
    /* expected count 0 where one was observed: statistic inf, p 0 */
    cr_assert_eq(res.value, 0.0);
    cr_assert(res.drifted);
    /* Jensen-Shannon stays finite: by hand, p = (.4,.3,.3,0), q = (3,2,2,1)/8 */
    cr_assert_eq(
        drift_column(false, ref, 10, cur, 8, DRIFT_TEST_JENSENSHANNON, NAN, &res, err, sizeof(err)),
        0);
    double p[] = {0.4, 0.3, 0.3, 0}, q[] = {3.0 / 8, 2.0 / 8, 2.0 / 8, 1.0 / 8};
    double js = 0;
    for (int i = 0; i < 4; i++) {
        double m = (p[i] + q[i]) / 2;
        if (p[i] > 0)
            js += p[i] * log(p[i] / m);
        js += q[i] * log(q[i] / m);
    }
    js = sqrt(js / 2);
    cr_assert(close_rel(res.value, js, 1e-12, 0), "%.17g vs %.17g", res.value, js);
    /* PSI fills the empty reference bin with 0.0001 (smallest share 0.3 > 0.0001) */
    cr_assert_eq(drift_column(false, ref, 10, cur, 8, DRIFT_TEST_PSI, NAN, &res, err, sizeof(err)),
                 0);
    double pf[] = {0.4, 0.3, 0.3, 0.0001}, psi = 0;
    for (int i = 0; i < 4; i++)
        psi += (pf[i] - q[i]) * log(pf[i] / q[i]);
    cr_assert(close_rel(res.value, psi, 1e-12, 0), "%.17g vs %.17g", res.value, psi);
    cr_assert(res.drifted == (psi >= 0.1));
}

Test(drift, empty_bin_fill_uses_min_share_over_a_million_when_small)
{
    /* 20001 reference values in 2 categories: one share is 1/20001 < 0.0001 */
    size_t n = 20001;
    double *ref = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        ref[i] = i == 0 ? 1 : 2;
    double cur[] = {2, 3};
    double *r, *c;
    size_t k;
    cr_assert_eq(drift_bin_shares(false, ref, n, cur, 2, true, &r, &c, &k), 0);
    cr_assert_eq(k, 3);
    cr_assert(close_rel(r[2], (1.0 / (double)n) / 1e6, 1e-15, 0), "%.17g", r[2]);
    cr_assert_eq(c[0], 0.0001);
    free(r);
    free(c);
    free(ref);
}

Test(drift, one_value_column_is_a_z_test_with_p_one)
{
    double ref[] = {5, 5, 5, 5}, cur[] = {5, 5};
    drift_result_t res;
    char err[128];
    cr_assert_eq(drift_column(true, ref, 4, cur, 2, DRIFT_TEST_AUTO, NAN, &res, err, sizeof(err)),
                 0);
    cr_assert_eq(res.test, DRIFT_TEST_Z);
    cr_assert_eq(res.value, 1.0);
    cr_assert_not(res.drifted);
    /* two values: z by hand: p1 = 1/4, p2 = 1, pooled 3/6 */
    double cur2[] = {6, 6};
    double ref2[] = {5, 5, 5, 6};
    cr_assert_eq(drift_column(true, ref2, 4, cur2, 2, DRIFT_TEST_AUTO, NAN, &res, err, sizeof(err)),
                 0);
    double z = (0.25 - 1.0) / sqrt(0.5 * 0.5 * (1.0 / 4 + 1.0 / 2));
    double want = erfc(fabs(z) / sqrt(2.0));
    cr_assert(close_rel(res.value, want, 1e-12, 1e-15), "%.17g vs %.17g", res.value, want);
}

Test(drift, default_test_follows_evidently_rules)
{
    double small[50], cur[50];
    for (int i = 0; i < 50; i++) {
        small[i] = i % 4;
        cur[i] = i % 4;
    }
    drift_result_t res;
    char err[128];
    /* 4 distinct numeric values, reference <= 1000: chi-square */
    cr_assert_eq(drift_column(true, small, 50, cur, 50, DRIFT_TEST_AUTO, NAN, &res, err, 128), 0);
    cr_assert_eq(res.test, DRIFT_TEST_CHISQUARE);
    /* 6 distinct: KS */
    for (int i = 0; i < 50; i++)
        small[i] = i % 6;
    cr_assert_eq(drift_column(true, small, 50, cur, 50, DRIFT_TEST_AUTO, NAN, &res, err, 128), 0);
    cr_assert_eq(res.test, DRIFT_TEST_KS);
    cr_assert_eq(res.threshold, 0.05);
    /* categorical with 6 values stays chi-square */
    cr_assert_eq(drift_column(false, small, 50, cur, 50, DRIFT_TEST_AUTO, NAN, &res, err, 128), 0);
    cr_assert_eq(res.test, DRIFT_TEST_CHISQUARE);
    /* reference of 1001: Wasserstein for numeric > 5 distinct, JS otherwise */
    double *big = malloc(1001 * sizeof(double));
    for (int i = 0; i < 1001; i++)
        big[i] = i % 6;
    cr_assert_eq(drift_column(true, big, 1001, cur, 50, DRIFT_TEST_AUTO, NAN, &res, err, 128), 0);
    cr_assert_eq(res.test, DRIFT_TEST_WASSERSTEIN);
    cr_assert_eq(res.threshold, 0.1);
    cr_assert_eq(drift_column(false, big, 1001, cur, 50, DRIFT_TEST_AUTO, NAN, &res, err, 128), 0);
    cr_assert_eq(res.test, DRIFT_TEST_JENSENSHANNON);
    for (int i = 0; i < 1001; i++)
        big[i] = i % 3;
    cr_assert_eq(drift_column(true, big, 1001, cur, 50, DRIFT_TEST_AUTO, NAN, &res, err, 128), 0);
    cr_assert_eq(res.test, DRIFT_TEST_JENSENSHANNON);
    free(big);
    /* a categorical column cannot run KS */
    cr_assert_eq(drift_column(false, small, 50, cur, 50, DRIFT_TEST_KS, NAN, &res, err, 128), -1);
}

Test(drift, dataset_drift_at_half_the_columns)
{
    drift_result_t r[4] = {{.drifted = true}, {.drifted = false}, {.drifted = true}, {0}};
    double share;
    cr_assert(drift_dataset(r, 4, 0.5, &share));
    cr_assert_eq(share, 0.5);
    cr_assert_not(drift_dataset(r, 3, 0.7, &share));
    cr_assert_not(drift_dataset(r, 0, 0.5, &share));
}

Test(drift, sturges_edges_of_one_value_and_of_a_range)
{
    double one[] = {3, 3, 3};
    size_t ne;
    double *e = drift_sturges_edges(one, 3, &ne);
    cr_assert_eq(ne, 2);
    cr_assert_eq(e[0], 2.5);
    cr_assert_eq(e[1], 3.5);
    free(e);
    /* 16 values: log2(16) + 1 = 5 bins over [0, 10] */
    double x[16];
    for (int i = 0; i < 16; i++)
        x[i] = i * 10.0 / 15;
    e = drift_sturges_edges(x, 16, &ne);
    cr_assert_eq(ne, 6);
    cr_assert_eq(e[0], 0.0);
    cr_assert_eq(e[5], 10.0);
    cr_assert(close_rel(e[2], 4.0, 1e-15, 0));
    free(e);
}

Test(drift, anderson_refuses_what_scipy_refuses)
{
    double same[] = {2, 2, 2}, two[] = {1, 2}, one[] = {5}, nan1[] = {NAN};
    double stat, p;
    cr_assert_eq(drift_anderson_ksamp(same, 3, same, 2, &stat, &p), -1);
    cr_assert_eq(drift_anderson_ksamp(one, 1, one + 0, 1, &stat, &p), -1);
    cr_assert_eq(drift_anderson_ksamp(two, 2, nan1, 1, &stat, &p), -1);
    /* the p-value is capped to SciPy's table range */
    double a[40], b[40];
    for (int i = 0; i < 40; i++) {
        a[i] = i;
        b[i] = i + 100;
    }
    cr_assert_eq(drift_anderson_ksamp(a, 40, b, 40, &stat, &p), 0);
    cr_assert_eq(p, 0.001);
    cr_assert_eq(drift_anderson_ksamp(a, 40, a, 40, &stat, &p), 0);
    cr_assert_eq(p, 0.25);
}
