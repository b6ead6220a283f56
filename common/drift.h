/**
 * @file drift.h
 * @brief Drift statistics: PSI, two-sample Kolmogorov-Smirnov, chi-square
 *        goodness of fit, Z-test for two proportions, Jensen-Shannon
 *        distance, Wasserstein distance, KL divergence, Hellinger distance,
 *        Anderson-Darling k-sample; and Evidently's default choice of test
 *        per column.
 *
 * Exactness: the statistics and p-values follow the definitions SciPy 1.17.1
 * uses (scipy.stats.ks_2samp with method='auto', chisquare,
 * wasserstein_distance, entropy, scipy.spatial.distance.jensenshannon), and
 * the KS p-value picks exact or asymptotic by the same rule (exact when both
 * samples have at most 10,000 values, and asymptotic if the exact sum fails).
 * The algorithms are the published ones SciPy cites (Hodges 1958, Viehmann
 * 2021 for the two-sample exact p-value; Simard and L'Ecuyer 2011 for the
 * one-sample two-sided distribution of the asymptotic path; Birnbaum-Tingey
 * for the one-sided one); the code is ours. tests/oracle/test_drift_oracle.py
 * checks every value against SciPy.
 *
 * Column drift (drift_column()) reproduces the defaults of Evidently's legacy
 * data-drift preset (evidently.legacy.calculations): see
 * services/monitor/README.md for the rules and where we differ on purpose.
 *
 * Non-finite input: every function that takes raw samples drops NaN and
 * +-inf first (Evidently does the same before a test). Functions on
 * frequencies take them as given.
 *
 * Ownership: inputs are borrowed and never modified; nothing is kept after
 * a call returns. All functions are thread-safe (no global state).
 */
#ifndef MLOPS_DRIFT_H
#define MLOPS_DRIFT_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/** How ks_2samp computes its p-value (SciPy's `method`). */
typedef enum drift_ks_method {
    DRIFT_KS_AUTO = 0, /**< exact if max(n1, n2) <= 10000, else asymptotic */
    DRIFT_KS_EXACT,    /**< exact (asymptotic if lcm(n1, n2) is too large) */
    DRIFT_KS_ASYMP,    /**< the one-sample two-sided distribution at n1 n2/(n1+n2) */
} drift_ks_method_t;

/** A two-sample KS result. */
typedef struct drift_ks {
    double statistic; /**< sup |F1 - F2| (h/lcm(n1, n2) when exact, as SciPy) */
    double pvalue;    /**< two-sided */
    bool exact;       /**< the p-value came from the exact distribution */
} drift_ks_t;

/**
 * Two-sample two-sided KS test of @p a (n1 values) against @p b (n2),
 * after dropping non-finite values. Returns 0, or -1 if either sample is
 * empty after cleaning (SciPy raises there).
 */
int drift_ks_2samp(const double *a, size_t n1, const double *b, size_t n2, drift_ks_method_t method,
                   drift_ks_t *out) MLOPS_WUR;

/**
 * As drift_ks_2samp() on samples already sorted ascending and finite
 * (windows keep them so: no copy, no sort, O(n1 + n2)).
 */
int drift_ks_2samp_sorted(const double *a, size_t n1, const double *b, size_t n2,
                          drift_ks_method_t method, drift_ks_t *out) MLOPS_WUR;

/**
 * The p-value of a KS statistic @p d for samples of sizes @p n1 and @p n2,
 * with the method rule above (the statistic must be one that the samples
 * can produce, i.e. a multiple of 1/lcm(n1, n2) up to rounding). Sets
 * *exact_out (may be NULL) and, when exact, *d_out (may be NULL) to
 * h/lcm as SciPy reports it.
 */
double drift_ks_pvalue(double d, size_t n1, size_t n2, drift_ks_method_t method, bool *exact_out,
                       double *d_out);

/**
 * Survival function of the one-sample two-sided KS statistic D_n at @p x
 * (scipy.stats.kstwo.sf(x, n)). NaN if n < 1.
 */
double drift_kstwo_sf(double x, long n);

/** Survival function of the one-sided KS statistic D_n+ (scipy.special.smirnov). */
double drift_smirnov(long n, double x);

/** Regularised upper incomplete gamma Q(a, x) (scipy.special.gammaincc). */
double drift_gammaincc(double a, double x);

/** Chi-square survival function with @p df degrees of freedom (chdtrc). */
double drift_chi2_sf(double df, double x);

/**
 * Pearson chi-square goodness of fit of @p k observed counts against
 * expected counts (scipy.stats.chisquare, ddof 0): *stat and *pvalue with
 * k - 1 degrees of freedom. An expected count of 0 with a non-zero
 * observed one gives stat inf and p-value 0, as SciPy. Returns 0, or -1 if
 * k == 0 or a count is negative or not finite.
 */
int drift_chisquare(const double *obs, const double *expct, size_t k, double *stat,
                    double *pvalue) MLOPS_WUR;

/**
 * First Wasserstein distance between the empirical distributions of two
 * samples (scipy.stats.wasserstein_distance), after dropping non-finite
 * values. NaN if either is empty after cleaning.
 */
double drift_wasserstein(const double *u, size_t nu, const double *v, size_t nv);
/** As drift_wasserstein() on samples sorted ascending and finite. */
double drift_wasserstein_sorted(const double *u, size_t nu, const double *v, size_t nv);

/** Population standard deviation (numpy.std, ddof 0) of finite values; NaN if n == 0. */
double drift_std(const double *x, size_t n);

/**
 * Evidently's normed Wasserstein distance: W(ref, cur) / max(std(ref), 0.001),
 * after dropping non-finite values. NaN if either is empty.
 */
double drift_wasserstein_norm(const double *ref, size_t nref, const double *cur, size_t ncur);

/**
 * Jensen-Shannon distance between two frequency vectors of length @p k
 * (scipy.spatial.distance.jensenshannon): each is normalised to sum 1, then
 * sqrt((KL(p||m) + KL(q||m)) / 2) with m the mean. @p base <= 0 means the
 * natural logarithm. NaN if a vector sums to 0.
 */
double drift_jensenshannon(const double *p, const double *q, size_t k, double base);

/**
 * Kullback-Leibler divergence sum p log(p/q) of two frequency vectors after
 * normalising each to sum 1 (scipy.stats.entropy(p, q)); natural log when
 * @p base <= 0. inf when q is 0 where p is not.
 */
double drift_kl_div(const double *p, const double *q, size_t k, double base);

/**
 * Population stability index sum (p - q) log(p / q) over @p k bins of
 * shares (not normalised; Evidently passes shares with empty bins filled).
 */
double drift_psi(const double *p, const double *q, size_t k);

/**
 * Z-test for two proportions: @p x1 successes out of @p n1 against @p x2 out
 * of @p n2, pooled variance, two-sided p-value 2 (1 - Phi(|z|)) (Evidently's
 * z_stattest), computed as erfc(|z| / sqrt 2) so that tiny p-values keep
 * their precision. Writes *z (may be NULL). NaN when the pooled share is 0
 * or 1.
 */
double drift_ztest_2prop(double x1, double n1, double x2, double n2, double *z);

/** Standard normal CDF (scipy.special.ndtr). */
double drift_ndtr(double x);

/**
 * Evidently's binning for PSI, KL and Jensen-Shannon of two samples (after
 * dropping non-finite values): for a numeric column with more than 20
 * distinct values in the reference, numpy's Sturges edges over reference
 * and current together; otherwise one bin per distinct value of either.
 * Writes the shares of each sample per bin into *ref_share and *cur_share
 * (heap arrays of *nbins, caller frees both). With @p fill_empty, an
 * empty bin's share becomes 0.0001, or the smallest non-zero share / 1e6
 * when that share is <= 0.0001 (per sample), as Evidently does for PSI and
 * KL (not for Jensen-Shannon). Returns 0, or -1 if a sample is empty.
 */
int drift_bin_shares(bool numeric, const double *ref, size_t nref, const double *cur, size_t ncur,
                     bool fill_empty, double **ref_share, double **cur_share,
                     size_t *nbins) MLOPS_WUR;

/**
 * numpy.histogram_bin_edges(x, bins="sturges") of @p n finite values:
 * heap array of *nedges edges (caller frees). NULL if n == 0.
 */
double *drift_sturges_edges(const double *x, size_t n, size_t *nedges);

/**
 * Hellinger distance of two samples as Evidently computes it: categorical:
 * sqrt(1 - sum sqrt(p q)) over category shares; numeric: densities on
 * Sturges edges over the distinct values of both samples, times the bin
 * width. After dropping non-finite values; NaN if a sample is empty.
 */
double drift_hellinger(bool numeric, const double *ref, size_t nref, const double *cur,
                       size_t ncur);

/**
 * Anderson-Darling k-sample test of two samples, midrank variant
 * (scipy.stats.anderson_ksamp([a, b]), which Evidently's "anderson" calls),
 * after dropping non-finite values: the normalised statistic and SciPy's
 * p-value, interpolated from the Scholz-Stephens critical values by a
 * quadratic fit of log(level) and capped to [0.001, 0.25]. Returns 0, or -1
 * if a sample is empty, all values are equal or there are fewer than 3
 * (SciPy raises there).
 */
int drift_anderson_ksamp(const double *a, size_t n1, const double *b, size_t n2, double *stat,
                         double *pvalue) MLOPS_WUR;

/** The column tests, named as Evidently names them. */
typedef enum drift_test {
    DRIFT_TEST_AUTO = 0, /**< Evidently's default for the column (drift_column) */
    DRIFT_TEST_KS,
    DRIFT_TEST_CHISQUARE,
    DRIFT_TEST_Z,
    DRIFT_TEST_WASSERSTEIN,
    DRIFT_TEST_JENSENSHANNON,
    DRIFT_TEST_PSI,
    DRIFT_TEST_KL_DIV,
    DRIFT_TEST_HELLINGER,
    DRIFT_TEST_ANDERSON,
} drift_test_t;

/** Evidently's name for a test ("ks", "chisquare", "z", "wasserstein", ...). */
const char *drift_test_name(drift_test_t test);
/** The test for a name, or -1 if unknown. */
int drift_test_from_name(const char *name);
/** The default threshold (0.05 for ks, chisquare, z; 0.1 for the distances). */
double drift_test_default_threshold(drift_test_t test);
/** True for p-value tests (drift when the value is below the threshold). */
bool drift_test_is_pvalue(drift_test_t test);

/** The outcome of one column's drift test. */
typedef struct drift_result {
    drift_test_t test; /**< the test that ran (never AUTO) */
    double value;      /**< p-value or distance */
    double threshold;  /**< the threshold used */
    bool drifted;
    size_t n_ref, n_cur; /**< finite values used */
} drift_result_t;

/**
 * Drift of one column. Categorical values are codes (any doubles compared
 * for equality, e.g. interned category ids). With DRIFT_TEST_AUTO the test
 * is Evidently's default: reference of at most 1000 values: numeric with
 * more than 5 distinct values (reference and current together) -> KS;
 * 3..5 distinct or categorical with more than 2 -> chi-square; at most 2 ->
 * Z-test; larger reference: numeric with more than 5 distinct -> normed
 * Wasserstein, else Jensen-Shannon. @p threshold NaN means the test's
 * default. Drift: p-value < threshold (KS: <=), distance >= threshold.
 * Returns 0, or -1 with a message if a sample is empty after dropping
 * non-finite values or the test does not fit the column kind.
 */
int drift_column(bool numeric, const double *ref, size_t nref, const double *cur, size_t ncur,
                 drift_test_t test, double threshold, drift_result_t *out, char *errstr,
                 size_t errstr_size) MLOPS_WUR;

/**
 * Evidently's dataset drift: share of drifted columns >= @p drift_share
 * (default 0.5). Writes the share into *share (may be NULL). False if
 * n == 0.
 */
bool drift_dataset(const drift_result_t *results, size_t n, double drift_share, double *share);

#endif
