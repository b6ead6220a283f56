/*
 * drift.c: drift statistics (see drift.h).
 *
 * Where a result must equal SciPy's, the comments name the SciPy 1.17.1
 * behaviour being matched (a fact about its output, e.g. which method it
 * picks in which region); the arithmetic is written here from the
 * published algorithms.
 */
#include "drift.h"

#include <float.h>
#include <stdio.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* A sorted copy of the finite values of x (caller frees; *np = count). */
static double *sorted_finite(const double *x, size_t n, size_t *np)
{
    double *c = xmalloc((n ? n : 1) * sizeof(double));
    size_t k = 0;
    bool sorted = true;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) {
            if (k && x[i] < c[k - 1])
                sorted = false;
            c[k++] = x[i];
        }
    /* the monitor's windows and reference samples come sorted: skip the sort */
    if (!sorted)
        qsort(c, k, sizeof(double), cmp_double);
    *np = k;
    return c;
}

static double clip01(double p)
{
    if (isnan(p))
        return p;
    return p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p);
}

static long gcd_long(long a, long b)
{
    while (b) {
        long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The distinct values of two sorted samples with the count of each in
 * each sample (all heap arrays of *k entries; caller frees). */
static void merge_counts(const double *a, size_t na, const double *b, size_t nb, double **keysp,
                         size_t **cap, size_t **cbp, size_t *kp)
{
    size_t cap_n = na + nb ? na + nb : 1;
    double *keys = xmalloc(cap_n * sizeof(double));
    size_t *ca = xmalloc(cap_n * sizeof(size_t));
    size_t *cb = xmalloc(cap_n * sizeof(size_t));
    size_t i = 0, j = 0, k = 0;
    while (i < na || j < nb) {
        double v;
        if (j >= nb || (i < na && a[i] <= b[j]))
            v = a[i];
        else
            v = b[j];
        size_t i0 = i, j0 = j;
        while (i < na && a[i] == v)
            i++;
        while (j < nb && b[j] == v)
            j++;
        keys[k] = v;
        ca[k] = i - i0;
        cb[k] = j - j0;
        k++;
    }
    *keysp = keys;
    *cap = ca;
    *cbp = cb;
    *kp = k;
}

/* The number of distinct values of two sorted samples together, counted up
 * to @p limit (the walk stops there): what the default test choice needs,
 * without merge_counts()'s arrays. */
static size_t distinct_upto(const double *a, size_t na, const double *b, size_t nb, size_t limit)
{
    size_t i = 0, j = 0, k = 0;
    while ((i < na || j < nb) && k < limit) {
        double v = j >= nb || (i < na && a[i] <= b[j]) ? a[i] : b[j];
        while (i < na && a[i] == v)
            i++;
        while (j < nb && b[j] == v)
            j++;
        k++;
    }
    return k;
}

/* ------------------------------------------------------------------ */
/* Two-sample KS: the exact distribution (Hodges 1958)                 */

/* P(D_{n,n} >= h/n) for two samples of equal size n: the alternating
 * reflection sum 2 sum_k (-1)^(k+1) C(2n, n-kh)/C(2n, n), evaluated as a
 * nested product so that no binomial is formed. */
static double ks_prob_outside_square(long n, long h)
{
    double p = 0.0;
    for (long k = n / h; k >= 0; k--) {
        double a = 1.0;
        for (long j = 0; j < h; j++)
            a = (double)(n - k * h - j) * a / (double)(n + k * h + j + 1);
        p = a * (1.0 - p);
    }
    return 2.0 * p;
}

/* P(D_{m,n} >= h/lcm) for unequal sizes, counting lattice paths that leave
 * the band |x/m - y/n| < h/lcm column by column; the recursion carries the
 * share of paths that have left rather than the share that stayed inside
 * (Viehmann 2021), which is stable for small p-values. Returns NaN if the
 * band bookkeeping goes out of range (the caller then falls back). */
static double ks_prob_outside_band(long m, long n, long g, long h)
{
    if (m < n) {
        long t = m;
        m = n;
        n = t;
    }
    long mg = m / g, ng = n / g;
    long lo = 0;
    long hi = (long)ceil((double)h / (double)mg);
    if (hi > n + 1)
        hi = n + 1;
    long len = hi - lo;
    long cap = 2 * hi + 2 < n + 1 ? 2 * hi + 2 : n + 1;
    double *col = xmalloc((size_t)cap * sizeof(double));
    for (long j = 0; j < cap; j++)
        col[j] = j < hi ? 0.0 : 1.0;
    double res = (double)NAN;
    for (long i = 1; i <= m; i++) {
        long prev_lo = lo, prev_len = len;
        lo = (long)floor((double)(ng * i - h) / (double)mg) + 1;
        if (lo < 0)
            lo = 0;
        if (lo > n)
            lo = n;
        hi = (long)ceil((double)(ng * i + h) / (double)mg);
        if (hi > n + 1)
            hi = n + 1;
        if (hi <= lo) {
            res = 1.0;
            goto out;
        }
        double val = lo == 0 ? 0.0 : 1.0;
        for (long jj = 0; jj < hi - lo; jj++) {
            long j = jj + lo;
            long src = jj + lo - prev_lo;
            if (src < 0 || src >= cap || jj >= cap)
                goto out;
            val = (col[src] * (double)i + val * (double)j) / (double)(i + j);
            col[jj] = val;
        }
        len = hi - lo;
        for (long t = len; t < prev_len && t < cap; t++)
            col[t] = 1.0;
    }
    res = col[hi - lo - 1];
out:
    free(col);
    return res;
}

/* ------------------------------------------------------------------ */
/* One-sample two-sided KS distribution (Simard and L'Ecuyer 2011)      */

#define TWO128 0x1p128
#define TWOM128 0x1p-128

/* log(n! / n^n) by Stirling's series with the n log n term removed. */
static double log_nfact_over_npow(double n)
{
    /* B_2j / (2j (2j-1)) for j = 8 .. 1 */
    static const double c[] = {-2.955065359477124183e-2,  6.4102564102564102564e-3,
                               -1.9175269175269175269e-3, 8.4175084175084175084e-4,
                               -5.952380952380952381e-4,  7.9365079365079365079e-4,
                               -2.7777777777777777778e-3, 8.3333333333333333333e-2};
    double rn = 1.0 / n, y = rn / n, s = 0.0;
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(c); i++)
        s = s * y + c[i];
    return log(n) / 2 - n + log(2 * M_PI) / 2 + rn * s;
}

static void matmul(const double *a, const double *b, double *out, long m)
{
    for (long i = 0; i < m; i++)
        for (long j = 0; j < m; j++) {
            double s = 0.0;
            for (long k = 0; k < m; k++)
                s += a[i * m + k] * b[k * m + j];
            out[i * m + j] = s;
        }
}

/* P(D_n <= d) by Durbin's matrix (Marsaglia, Tsang and Wang 2003): the
 * (k, k) entry of H^n times n!/n^n, with H of order 2k-1, k = ceil(nd). */
static double kolmogn_durbin_cdf(long n, double d)
{
    if (d >= 1.0)
        return 1.0;
    double nd = (double)n * d;
    if (nd <= 0.5)
        return 0.0;
    long k = (long)ceil(nd);
    double h = (double)k - nd;
    long m = 2 * k - 1;
    size_t mm = (size_t)(m * m);
    double *H = xcalloc(mm, sizeof(double));
    double *P = xcalloc(mm, sizeof(double));
    double *T = xmalloc(mm * sizeof(double));
    double *v = xmalloc((size_t)m * sizeof(double));
    double *w = xmalloc((size_t)m * sizeof(double));
    double fac = 1.0;
    for (long j = 1; j <= m; j++) {
        w[j - 1] = fac;
        fac /= (double)j;
        v[j - 1] = (1.0 - pow(h, (double)j)) * fac;
    }
    double tt = pow(fmax(2 * h - 1.0, 0.0), (double)m) - 2 * pow(h, (double)m);
    v[m - 1] = (1.0 + tt) * fac;
    for (long c = 1; c < m; c++)
        for (long r = c - 1; r < m; r++)
            H[r * m + c] = w[r - (c - 1)];
    for (long r = 0; r < m; r++)
        H[r * m] = v[r];
    for (long c = 0; c < m; c++)
        H[(m - 1) * m + c] = v[m - 1 - c];
    for (long i = 0; i < m; i++)
        P[i * m + i] = 1.0;
    long expnt = 0, hexpnt = 0;
    for (long e = n; e > 0; e /= 2) {
        if (e % 2) {
            matmul(P, H, T, m);
            memcpy(P, T, mm * sizeof(double));
            expnt += hexpnt;
        }
        matmul(H, H, T, m);
        memcpy(H, T, mm * sizeof(double));
        hexpnt *= 2;
        if (fabs(H[(k - 1) * m + (k - 1)]) > TWO128) {
            for (size_t i = 0; i < mm; i++)
                H[i] /= TWO128;
            hexpnt += 128;
        }
    }
    long double p = P[(k - 1) * m + (k - 1)];
    for (long i = 1; i <= n; i++) {
        p = (long double)i * p / (long double)n;
        if (fabsl(p) < TWOM128) {
            p *= TWO128;
            expnt -= 128;
        }
    }
    if (expnt != 0)
        p = ldexpl(p, (int)expnt);
    free(H);
    free(P);
    free(T);
    free(v);
    free(w);
    return clip01((double)p);
}

/* Row bounds of Pomeranz's recursion. */
static void pomeranz_bounds(long i, long n, long ll, long ceilf, long roundf, long *j1p, long *j2p)
{
    long j1, j2;
    if (i == 0) {
        j1 = -ll - ceilf - 1;
        j2 = ll + ceilf - 1;
    } else {
        long half = (i + 1) / 2, odd = (i + 1) % 2;
        if (odd == 0) {
            if (half == n + 1) {
                j1 = n - ll - ceilf - 1;
                j2 = n + ll + ceilf - 1;
            } else {
                j1 = half - 1 - ll - roundf - 1;
                j2 = half + ll - 1 + ceilf - 1;
            }
        } else {
            j1 = half - 1 - ll - 1;
            j2 = half + ll + roundf - 1;
        }
    }
    *j1p = j1 + 2 > 0 ? j1 + 2 : 0;
    *j2p = j2 < n ? j2 : n;
}

/* P(D_n <= x) by Pomeranz's recursion (1974): rows are convolutions with
 * truncated Poisson weights; two rows kept, rescaled against underflow. */
static double kolmogn_pomeranz_cdf(long n, double x)
{
    double t = (double)n * x;
    long ll = (long)floor(t);
    double f = t - (double)ll;
    double g = fmin(f, 1.0 - f);
    long ceilf = f > 0 ? 1 : 0, roundf = f > 0.5 ? 1 : 0;
    long np = 2 * (ll + 1);
    double *gp = xmalloc((size_t)np * sizeof(double));
    double *g2p = xmalloc((size_t)np * sizeof(double));
    double *g12p = xmalloc((size_t)np * sizeof(double));
    double *v0 = xcalloc((size_t)np, sizeof(double));
    double *v1 = xcalloc((size_t)np, sizeof(double));
    gp[0] = g2p[0] = g12p[0] = 1.0;
    double a1 = g / (double)n, a2 = 2 * g / (double)n, a3 = (1 - 2 * g) / (double)n;
    for (long k = 1; k < np; k++) {
        gp[k] = gp[k - 1] * a1 / (double)k;
        g2p[k] = g2p[k - 1] * a2 / (double)k;
        g12p[k] = g12p[k - 1] * a3 / (double)k;
    }
    long expnt = 0;
    v1[0] = 1.0;
    long v0s = 0, v1s = 0;
    long j1, j2;
    pomeranz_bounds(0, n, ll, ceilf, roundf, &j1, &j2);
    for (long i = 1; i < 2 * n + 2; i++) {
        long k1 = j1;
        double *tmp = v0;
        v0 = v1;
        v1 = tmp;
        long ts = v0s;
        v0s = v1s;
        v1s = ts;
        memset(v1, 0, (size_t)np * sizeof(double));
        pomeranz_bounds(i, n, ll, ceilf, roundf, &j1, &j2);
        const double *pw = (i == 1 || i == 2 * n + 1) ? gp : (i % 2 ? g2p : g12p);
        long len2 = j2 - k1 + 1;
        if (len2 > 0) {
            /* v1[c] = (v0[k1 - v0s ..] * pw)[j1 - k1 + c] for c in [0, j2 - j1] */
            long base = k1 - v0s;
            long navail = np - base;
            if (navail > len2)
                navail = len2;
            long plen = len2 < np ? len2 : np;
            double vmax = 0.0;
            for (long c = 0; c <= j2 - j1 && c < np; c++) {
                long idx = j1 - k1 + c;
                double s = 0.0;
                for (long q = 0; q <= idx; q++) {
                    long r = idx - q;
                    if (q < navail && r < plen && base + q >= 0)
                        s += v0[base + q] * pw[r];
                }
                v1[c] = s;
                if (s > vmax)
                    vmax = s;
            }
            if (vmax > 0 && vmax < TWOM128) {
                for (long c = 0; c < np; c++)
                    v1[c] *= TWO128;
                expnt -= 128;
            }
            v1s = v0s + j1 - k1;
        }
    }
    long idx = n - v1s;
    long double ans = (idx >= 0 && idx < np) ? v1[idx] : 0.0;
    for (long k = 1; k <= n; k++) {
        if (fabsl(ans) > TWO128) {
            ans *= TWOM128;
            expnt += 128;
        }
        ans *= (long double)k;
    }
    if (expnt != 0)
        ans = ldexpl(ans, (int)expnt);
    free(gp);
    free(g2p);
    free(g12p);
    free(v0);
    free(v1);
    return clip01((double)ans);
}

/* Pelz-Good (1976) approximation of P(D_n <= x): Li-Chien/Korolyuk's
 * expansion K0 + K1/sqrt(n) + K2/n + K3/n^1.5 in theta-function form. */
static double kolmogn_pelzgood_cdf(long n, double x)
{
    if (x <= 0.0)
        return 0.0;
    if (x >= 1.0)
        return 1.0;
    const double pi2 = M_PI * M_PI, pi4 = pi2 * pi2, pi6 = pi4 * pi2;
    double z = sqrt((double)n) * x;
    double z2 = z * z, z3 = z2 * z, z4 = z2 * z2, z6 = z4 * z2;
    double qlog = -pi2 / 8 / z2;
    if (qlog < -708)
        return 0.0;
    double q = exp(qlog);
    double k1a = -z2, k1b = pi2 / 4;
    double k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4, k2c = pi4 * (1 - 2 * z2) / 16;
    double k3d = pi6 * (5 - 30 * z2) / 64, k3c = pi4 * (-60 * z2 + 212 * z4) / 16,
           k3b = pi2 * (135 * z4 - 96 * z6) / 4, k3a = -30 * z6 - 90 * z4 * z4;
    double K[4] = {0, 0, 0, 0};
    long maxk = (long)ceil(16 * z / M_PI);
    for (long k = maxk; k >= 1; k--) {
        double m = (double)(2 * k - 1);
        double m2 = m * m, m4 = m2 * m2, m6 = m4 * m2;
        double qp = pow(q, (double)(8 * k));
        double c[4] = {1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4,
                       k3a + k3b * m2 + k3c * m4 + k3d * m6};
        for (int i = 0; i < 4; i++)
            K[i] = K[i] * qp + c[i];
    }
    double s2pi = sqrt(2 * M_PI);
    double den[4] = {z, 6 * z4, 72 * z4 * z3, 6480 * z6 * z4};
    for (int i = 0; i < 4; i++)
        K[i] = K[i] * q * s2pi / den[i];
    double q2 = exp(-pi2 / 2 / z2);
    double s2 = 0.0, s3 = 0.0, sq3z = sqrt(3.0) * z;
    for (long k = maxk; k >= 1; k--) {
        double kk = (double)k * (double)k;
        double qk = pow(q2, kk);
        double kpi = M_PI * (double)k;
        s2 += kk * qk;
        s3 += (sq3z + kpi) * (sq3z - kpi) * kk * qk;
    }
    K[2] += s2 * pi2 * s2pi / (-36 * z3);
    K[3] += s3 * pi2 * s2pi / (216 * z6);
    double sum = 0.0;
    for (int i = 0; i < 4; i++)
        sum += K[i] / pow((double)n, i / 2.0);
    return sum;
}

double drift_smirnov(long n, double x)
{
    if (!(n > 0 && x >= 0.0 && x <= 1.0))
        return (double)NAN;
    if (n == 1)
        return 1.0 - x;
    if (x == 0.0)
        return 1.0;
    if (x == 1.0)
        return 0.0;
    /* n x split exactly into floor and fraction */
    double nx = (double)n * x;
    double nx_lo = fma((double)n, x, -nx);
    double fl = floor(nx);
    long nxfl = (long)fl;
    long double alpha = (long double)(nx - fl) + (long double)nx_lo;
    if (alpha < 0) {
        nxfl -= 1;
        alpha += 1;
    }
    if (alpha >= 1) {
        nxfl += 1;
        alpha -= 1;
    }
    if (nxfl == 0 || (nxfl == 1 && alpha == 0)) {
        /* x <= 1/n: P(D+ < x) = x (1 + x)^(n-1) */
        long double cdf = (long double)x * expl((long double)(n - 1) * log1pl(x));
        return (double)(1.0L - cdf);
    }
    if (-2.0 * (double)n * x * x < -7.451332191019412076235e2)
        return 0.0;
    if (nxfl >= n - 1)
        return (double)expl((long double)n * log1pl(-(long double)x));
    if (n > 1000000) {
        /* large n: p ~ exp(-(6nx+1)^2 / 18n) */
        double lp = -pow(6.0 * (double)n * x + 1, 2) / 18.0 / (double)n;
        if (lp < -M_LN2)
            return exp(lp);
        return 1.0 - (-expm1(lp));
    }
    /* Birnbaum-Tingey: x sum_{v=0}^{floor(n(1-x))} C(n,v) (1-x-v/n)^(n-v) (x+v/n)^(v-1),
     * all terms positive, summed in long double from logs. */
    long vmax = n - nxfl - 1;
    long double ln_n = logl((long double)n), lgn1 = lgammal((long double)n + 1);
    long double lx = logl((long double)x);
    long double sum = 0.0L, prev = 0.0L;
    for (long v = 0; v <= vmax; v++) {
        long double t2 = ((long double)(n - v - nxfl) - alpha); /* n (1 - x - v/n) */
        long double t1 = ((long double)(nxfl + v) + alpha);     /* n (x + v/n) */
        long double lc = lgn1 - lgammal((long double)v + 1) - lgammal((long double)(n - v) + 1);
        long double lt = lc + (long double)(n - v) * (logl(t2) - ln_n) + lx;
        if (v > 0)
            lt += (long double)(v - 1) * (logl(t1) - ln_n);
        else
            lt -= logl(t1) - ln_n;
        long double term = expl(lt);
        sum += term;
        if (v > 0 && term < prev && term < sum * 1e-22L)
            break;
        prev = term;
    }
    return clip01((double)sum);
}

double drift_kstwo_sf(double x, long n)
{
    if (n < 1 || isnan(x))
        return (double)NAN;
    if (x >= 1.0)
        return 0.0;
    if (x <= 0.0)
        return 1.0;
    double t = (double)n * x;
    if (t <= 1.0) {
        if (t <= 0.5)
            return 1.0;
        double prob;
        if (n <= 140) {
            prob = 1.0;
            for (long i = 1; i <= n; i++)
                prob *= (double)i * (1.0 / (double)n) * (2 * t - 1);
        } else {
            prob = exp(log_nfact_over_npow((double)n) + (double)n * log(2 * t - 1));
        }
        return clip01(1.0 - prob);
    }
    if (t >= (double)(n - 1))
        return clip01(2 * pow(1.0 - x, (double)n));
    if (x >= 0.5)
        return clip01(2 * drift_smirnov(n, x));
    double nxx = t * x;
    if (n <= 140) {
        if (nxx <= 0.754693)
            return clip01(1.0 - kolmogn_durbin_cdf(n, x));
        if (nxx <= 4)
            return clip01(1.0 - kolmogn_pomeranz_cdf(n, x));
        return clip01(2 * drift_smirnov(n, x));
    }
    if (nxx >= 370.0)
        return 0.0;
    if (nxx >= 2.2)
        return clip01(2 * drift_smirnov(n, x));
    double cdf;
    if (nxx >= 18.0)
        cdf = 1.0;
    else if (n <= 100000 && (double)n * pow(x, 1.5) <= 1.4)
        cdf = kolmogn_durbin_cdf(n, x);
    else
        cdf = kolmogn_pelzgood_cdf(n, x);
    return clip01(1.0 - cdf);
}

/* ------------------------------------------------------------------ */
/* Two-sample KS                                                       */

#define KS_MAX_AUTO_N 10000

double drift_ks_pvalue(double d, size_t n1, size_t n2, drift_ks_method_t method, bool *exact_out,
                       double *d_out)
{
    bool exact = false;
    double p = (double)NAN;
    long g = gcd_long((long)n1, (long)n2);
    long n1g = (long)n1 / g, n2g = (long)n2 / g;
    drift_ks_method_t mode = method;
    if (mode == DRIFT_KS_AUTO)
        mode = (n1 > n2 ? n1 : n2) <= KS_MAX_AUTO_N ? DRIFT_KS_EXACT : DRIFT_KS_ASYMP;
    else if (mode == DRIFT_KS_EXACT && (double)n1g >= (double)INT32_MAX / (double)n2g)
        mode = DRIFT_KS_ASYMP;
    if (mode == DRIFT_KS_EXACT) {
        long lcm = n1g * (long)n2;
        long h = (long)nearbyint(d * (double)lcm);
        double dh = (double)h / (double)lcm;
        if (h == 0) {
            p = 1.0;
        } else if (n1 == n2) {
            p = ks_prob_outside_square((long)n1, h);
        } else {
            p = ks_prob_outside_band((long)n1, (long)n2, g, h);
        }
        if (isfinite(p) && p >= 0.0 && p <= 1.0) {
            exact = true;
            if (d_out)
                *d_out = dh;
        } else {
            mode = DRIFT_KS_ASYMP; /* SciPy warns and switches, so do we */
        }
    }
    if (mode == DRIFT_KS_ASYMP) {
        double m = (double)(n1 > n2 ? n1 : n2), n = (double)(n1 > n2 ? n2 : n1);
        double en = m * n / (m + n);
        p = drift_kstwo_sf(d, (long)nearbyint(en));
        if (d_out)
            *d_out = d;
    }
    if (exact_out)
        *exact_out = exact;
    return clip01(p);
}

int drift_ks_2samp_sorted(const double *a, size_t n1, const double *b, size_t n2,
                          drift_ks_method_t method, drift_ks_t *out)
{
    if (n1 == 0 || n2 == 0)
        return -1;
    double maxs = -INFINITY, mins = INFINITY;
    size_t i = 0, j = 0;
    while (i < n1 || j < n2) {
        double v;
        if (j >= n2 || (i < n1 && a[i] <= b[j]))
            v = a[i];
        else
            v = b[j];
        while (i < n1 && a[i] <= v)
            i++;
        while (j < n2 && b[j] <= v)
            j++;
        double diff = (double)i / (double)n1 - (double)j / (double)n2;
        if (diff > maxs)
            maxs = diff;
        if (diff < mins)
            mins = diff;
    }
    double minus = -mins;
    minus = minus < 0 ? 0 : (minus > 1 ? 1 : minus);
    double d = minus > maxs ? minus : maxs;
    out->pvalue = drift_ks_pvalue(d, n1, n2, method, &out->exact, &out->statistic);
    return 0;
}

int drift_ks_2samp(const double *a, size_t n1, const double *b, size_t n2, drift_ks_method_t method,
                   drift_ks_t *out)
{
    size_t k1, k2;
    double *sa = sorted_finite(a, n1, &k1), *sb = sorted_finite(b, n2, &k2);
    int rc = drift_ks_2samp_sorted(sa, k1, sb, k2, method, out);
    free(sa);
    free(sb);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Incomplete gamma and chi-square                                     */

/* a log x - x - lgamma(a), in long double */
static long double gamma_prefix_log(double a, double x)
{
    return (long double)a * logl((long double)x) - (long double)x - lgammal((long double)a);
}

/* P(a, x) by its power series (good for x < a + 1). */
static double gamma_p_series(double a, double x)
{
    long double ap = a, sum = 1.0L / a, del = sum;
    for (int n = 0; n < 100000; n++) {
        ap += 1;
        del *= (long double)x / ap;
        sum += del;
        if (fabsl(del) < fabsl(sum) * LDBL_EPSILON)
            break;
    }
    return (double)(sum * expl(gamma_prefix_log(a, x)));
}

/* Q(a, x) by Legendre's continued fraction, modified Lentz (x >= a + 1). */
static double gamma_q_cf(double a, double x)
{
    const long double tiny = 1e-4000L;
    long double b = (long double)x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        long double an = -(long double)i * ((long double)i - a);
        b += 2;
        d = an * d + b;
        if (fabsl(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabsl(c) < tiny)
            c = tiny;
        d = 1 / d;
        long double del = d * c;
        h *= del;
        if (fabsl(del - 1) < LDBL_EPSILON)
            break;
    }
    return (double)(expl(gamma_prefix_log(a, x)) * h);
}

double drift_gammaincc(double a, double x)
{
    if (isnan(a) || isnan(x))
        return (double)NAN;
    if (x < 0 || a < 0)
        return (double)NAN;
    if (a == 0)
        return x > 0 ? 0.0 : (double)NAN;
    if (x == 0)
        return 1.0;
    if (isinf(a))
        return isinf(x) ? (double)NAN : 1.0;
    if (isinf(x))
        return 0.0;
    if (x < a + 1)
        return clip01(1.0 - gamma_p_series(a, x));
    return clip01(gamma_q_cf(a, x));
}

double drift_chi2_sf(double df, double x)
{
    if (x < 0.0)
        return (double)NAN;
    return drift_gammaincc(df / 2.0, x / 2.0);
}

int drift_chisquare(const double *obs, const double *expct, size_t k, double *stat, double *pvalue)
{
    if (k == 0)
        return -1;
    double s = 0.0;
    for (size_t i = 0; i < k; i++) {
        if (!isfinite(obs[i]) || !isfinite(expct[i]) || obs[i] < 0 || expct[i] < 0)
            return -1;
        double dlt = obs[i] - expct[i];
        s += dlt * dlt / expct[i]; /* 0/0 is NaN and x/0 inf, as in SciPy */
    }
    *stat = s;
    *pvalue = drift_chi2_sf((double)k - 1.0, s);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Wasserstein, std                                                    */

double drift_wasserstein_sorted(const double *u, size_t nu, const double *v, size_t nv)
{
    if (nu == 0 || nv == 0)
        return (double)NAN;
    /* integral of |U - V| over the merged sample (SciPy's _cdf_distance):
     * between consecutive merged values x_k <= x_{k+1}, U and V are the
     * shares of the values merged up to x_k. Ties add (x_{k+1} - x_k) = 0,
     * so the sum equals the one over distinct values; walking every value
     * keeps the merge free of unpredictable inner loops. */
    size_t i = 0, j = 0;
    double dnu = (double)nu, dnv = (double)nv;
    double prev = u[0] <= v[0] ? u[0] : v[0], s = 0.0;
    while (i < nu && j < nv) {
        double a = u[i], b = v[j];
        bool take_u = a <= b;
        double x = take_u ? a : b;
        s += fabs((double)i / dnu - (double)j / dnv) * (x - prev);
        prev = x;
        i += take_u;
        j += !take_u;
    }
    for (; i < nu; i++) {
        s += fabs((double)i / dnu - 1.0) * (u[i] - prev);
        prev = u[i];
    }
    for (; j < nv; j++) {
        s += fabs(1.0 - (double)j / dnv) * (v[j] - prev);
        prev = v[j];
    }
    return s;
}

double drift_wasserstein(const double *u, size_t nu, const double *v, size_t nv)
{
    size_t ku, kv;
    double *su = sorted_finite(u, nu, &ku), *sv = sorted_finite(v, nv, &kv);
    double w = drift_wasserstein_sorted(su, ku, sv, kv);
    free(su);
    free(sv);
    return w;
}

double drift_std(const double *x, size_t n)
{
    if (n == 0)
        return (double)NAN;
    long double s = 0.0L;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    double mean = (double)(s / (long double)n);
    long double ss = 0.0L;
    for (size_t i = 0; i < n; i++) {
        double dv = x[i] - mean;
        ss += (long double)dv * dv;
    }
    return sqrt((double)(ss / (long double)n));
}

double drift_wasserstein_norm(const double *ref, size_t nref, const double *cur, size_t ncur)
{
    size_t kr, kc;
    double *sr = sorted_finite(ref, nref, &kr), *sc = sorted_finite(cur, ncur, &kc);
    double w = (double)NAN;
    if (kr && kc) {
        double sd = drift_std(sr, kr);
        w = drift_wasserstein_sorted(sr, kr, sc, kc) / fmax(sd, 0.001);
    }
    free(sr);
    free(sc);
    return w;
}

/* ------------------------------------------------------------------ */
/* Divergences on frequency vectors                                    */

/* p log(p/q) with SciPy's rel_entr conventions */
static double rel_entr(double p, double q)
{
    if (isnan(p) || isnan(q))
        return (double)NAN;
    if (p > 0 && q > 0)
        return p * log(p / q);
    if (p == 0 && q >= 0)
        return 0.0;
    return INFINITY;
}

static double vsum(const double *p, size_t k)
{
    double s = 0.0;
    for (size_t i = 0; i < k; i++)
        s += p[i];
    return s;
}

double drift_jensenshannon(const double *p, const double *q, size_t k, double base)
{
    double sp = vsum(p, k), sq = vsum(q, k);
    double l = 0.0, r = 0.0;
    for (size_t i = 0; i < k; i++) {
        double pi = p[i] / sp, qi = q[i] / sq;
        double m = (pi + qi) / 2.0;
        l += rel_entr(pi, m);
        r += rel_entr(qi, m);
    }
    double js = l + r;
    if (base > 0)
        js /= log(base);
    return sqrt(js / 2.0);
}

double drift_kl_div(const double *p, const double *q, size_t k, double base)
{
    double sp = vsum(p, k), sq = vsum(q, k);
    double s = 0.0;
    for (size_t i = 0; i < k; i++)
        s += rel_entr(p[i] / sp, q[i] / sq);
    if (base > 0)
        s /= log(base);
    return s;
}

double drift_psi(const double *p, const double *q, size_t k)
{
    double s = 0.0;
    for (size_t i = 0; i < k; i++)
        s += (p[i] - q[i]) * log(p[i] / q[i]);
    return s;
}

double drift_ndtr(double x) { return 0.5 * erfc(-x / M_SQRT2); }

double drift_ztest_2prop(double x1, double n1, double x2, double n2, double *zp)
{
    double p1 = x1 / n1, p2 = x2 / n2;
    double pp = (p1 * n1 + p2 * n2) / (n1 + n2);
    double z = (p1 - p2) / sqrt(pp * (1 - pp) * (1.0 / n1 + 1.0 / n2));
    if (zp)
        *zp = z;
    if (isnan(z))
        return (double)NAN;
    /* 2 (1 - Phi(|z|)) as erfc, which keeps its precision in the far tail
     * (Evidently's 1 - cdf form rounds to 0 below about 1e-16) */
    return erfc(fabs(z) / M_SQRT2);
}

/* ------------------------------------------------------------------ */
/* Binning                                                             */

double *drift_sturges_edges(const double *x, size_t n, size_t *nedges)
{
    if (n == 0)
        return NULL;
    double lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < lo)
            lo = x[i];
        if (x[i] > hi)
            hi = x[i];
    }
    double ptp = hi - lo;
    double first = lo, last = hi;
    if (first == last) {
        first -= 0.5;
        last += 0.5;
    }
    double width = ptp / (log2((double)n) + 1.0);
    size_t nb = width != 0 ? (size_t)ceil((last - first) / width) : 1;
    if (nb < 1)
        nb = 1;
    double *e = xmalloc((nb + 1) * sizeof(double));
    double delta = last - first, step = delta / (double)nb;
    for (size_t i = 0; i <= nb; i++) {
        if (step == 0)
            e[i] = (double)i / (double)nb * delta + first;
        else
            e[i] = (double)i * step + first;
    }
    e[nb] = last;
    *nedges = nb + 1;
    return e;
}

/* first index with s[i] >= v (left) or s[i] > v (right) */
static size_t search_sorted(const double *s, size_t n, double v, bool right)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (right ? s[mid] <= v : s[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* numpy.histogram counts of a sorted sample on explicit edges */
static void hist_sorted(const double *s, size_t n, const double *e, size_t ne, size_t *counts)
{
    size_t prev = search_sorted(s, n, e[0], false);
    for (size_t i = 1; i < ne; i++) {
        size_t c = search_sorted(s, n, e[i], i == ne - 1);
        counts[i - 1] = c - prev;
        prev = c;
    }
}

static void fill_empty_shares(double *p, size_t k)
{
    double mn = INFINITY;
    for (size_t i = 0; i < k; i++)
        if (p[i] != 0 && p[i] < mn)
            mn = p[i];
    if (!isfinite(mn))
        return;
    double f = mn <= 0.0001 ? mn / 1e6 : 0.0001;
    for (size_t i = 0; i < k; i++)
        if (p[i] == 0)
            p[i] = f;
}

/* Shares per bin of two sorted finite samples (see drift_bin_shares). */
static void bin_shares_sorted(bool numeric, const double *sr, size_t kr, const double *sc,
                              size_t kc, bool fill, double **rp, double **cp, size_t *nbp)
{
    double *keys;
    size_t *ca, *cb, k;
    merge_counts(sr, kr, sc, kc, &keys, &ca, &cb, &k);
    size_t ref_distinct = 0;
    for (size_t i = 0; i < k; i++)
        ref_distinct += ca[i] > 0;
    double *r, *c;
    size_t nb;
    if (numeric && ref_distinct > 20) {
        double *all = xmalloc((kr + kc) * sizeof(double));
        memcpy(all, sr, kr * sizeof(double));
        memcpy(all + kr, sc, kc * sizeof(double));
        size_t ne;
        double *e = drift_sturges_edges(all, kr + kc, &ne);
        free(all);
        nb = ne - 1;
        size_t *hr = xmalloc(nb * sizeof(size_t)), *hc = xmalloc(nb * sizeof(size_t));
        hist_sorted(sr, kr, e, ne, hr);
        hist_sorted(sc, kc, e, ne, hc);
        r = xmalloc(nb * sizeof(double));
        c = xmalloc(nb * sizeof(double));
        for (size_t i = 0; i < nb; i++) {
            r[i] = (double)hr[i] / (double)kr;
            c[i] = (double)hc[i] / (double)kc;
        }
        free(hr);
        free(hc);
        free(e);
    } else {
        nb = k;
        r = xmalloc((k ? k : 1) * sizeof(double));
        c = xmalloc((k ? k : 1) * sizeof(double));
        for (size_t i = 0; i < k; i++) {
            r[i] = (double)ca[i] / (double)kr;
            c[i] = (double)cb[i] / (double)kc;
        }
    }
    free(keys);
    free(ca);
    free(cb);
    if (fill) {
        fill_empty_shares(r, nb);
        fill_empty_shares(c, nb);
    }
    *rp = r;
    *cp = c;
    *nbp = nb;
}

int drift_bin_shares(bool numeric, const double *ref, size_t nref, const double *cur, size_t ncur,
                     bool fill_empty, double **ref_share, double **cur_share, size_t *nbins)
{
    size_t kr, kc;
    double *sr = sorted_finite(ref, nref, &kr), *sc = sorted_finite(cur, ncur, &kc);
    int rc = -1;
    if (kr && kc) {
        bin_shares_sorted(numeric, sr, kr, sc, kc, fill_empty, ref_share, cur_share, nbins);
        rc = 0;
    }
    free(sr);
    free(sc);
    return rc;
}

static double hellinger_sorted(bool numeric, const double *sr, size_t kr, const double *sc,
                               size_t kc)
{
    double *keys;
    size_t *ca, *cb, k;
    merge_counts(sr, kr, sc, kc, &keys, &ca, &cb, &k);
    double s = 0.0;
    if (!numeric) {
        for (size_t i = 0; i < k; i++)
            s += sqrt(((double)ca[i] / (double)kr) * ((double)cb[i] / (double)kc));
    } else {
        size_t ne;
        double *e = drift_sturges_edges(keys, k, &ne);
        size_t nb = ne - 1;
        size_t *hr = xmalloc(nb * sizeof(size_t)), *hc = xmalloc(nb * sizeof(size_t));
        hist_sorted(sr, kr, e, ne, hr);
        hist_sorted(sc, kc, e, ne, hc);
        size_t tr = 0, tc = 0;
        for (size_t i = 0; i < nb; i++) {
            tr += hr[i];
            tc += hc[i];
        }
        double width = (e[nb] - e[0]) / (double)nb;
        for (size_t i = 0; i < nb; i++) {
            double db = e[i + 1] - e[i];
            double d1 = (double)hr[i] / db / (double)tr, d2 = (double)hc[i] / db / (double)tc;
            s += sqrt(d1 * d2) * width;
        }
        free(hr);
        free(hc);
        free(e);
    }
    free(keys);
    free(ca);
    free(cb);
    s = s < 0 ? 0 : (s > 1 ? 1 : s);
    return sqrt(1 - s);
}

double drift_hellinger(bool numeric, const double *ref, size_t nref, const double *cur, size_t ncur)
{
    size_t kr, kc;
    double *sr = sorted_finite(ref, nref, &kr), *sc = sorted_finite(cur, ncur, &kc);
    double h = kr && kc ? hellinger_sorted(numeric, sr, kr, sc, kc) : (double)NAN;
    free(sr);
    free(sc);
    return h;
}

/* ------------------------------------------------------------------ */
/* Anderson-Darling k-sample (Scholz and Stephens 1987)                 */

/* A2akN, their equation 7 (midrank, for ties), of k sorted samples */
static double ad_midrank(const double *const *s, const size_t *n, size_t k, const double *z,
                         size_t nz, const size_t *lj, const double *bj)
{
    double total = 0.0;
    size_t nn = 0;
    for (size_t i = 0; i < k; i++)
        nn += n[i];
    double N = (double)nn;
    for (size_t i = 0; i < k; i++) {
        double inner = 0.0;
        size_t pos = 0;
        for (size_t j = 0; j < nz; j++) {
            size_t lo = pos;
            while (pos < n[i] && s[i][pos] <= z[j])
                pos++;
            size_t f = 0;
            for (size_t t = pos; t > lo && s[i][t - 1] == z[j]; t--)
                f++;
            double mij = (double)pos - (double)f / 2.0;
            double l = (double)lj[j], dlt = N * mij - bj[j] * (double)n[i];
            inner += l / N * dlt * dlt / (bj[j] * (N - bj[j]) - N * l / 4.0);
        }
        total += inner / (double)n[i];
    }
    return total * (N - 1.0) / N;
}

/* least-squares quadratic through (x, y), coefficients of x^2, x, 1 */
static void polyfit2(const double *x, const double *y, size_t n, double c[3])
{
    long double sx[5] = {0}, sy[3] = {0};
    for (size_t i = 0; i < n; i++) {
        long double p = 1;
        for (int e = 0; e < 5; e++) {
            sx[e] += p;
            if (e < 3)
                sy[e] += p * y[i];
            p *= x[i];
        }
    }
    /* normal equations for (c0 x^2 + c1 x + c2), solved by Cramer's rule */
    long double m[3][3] = {{sx[4], sx[3], sx[2]}, {sx[3], sx[2], sx[1]}, {sx[2], sx[1], sx[0]}};
    long double r[3] = {sy[2], sy[1], sy[0]};
    long double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
                      m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                      m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    for (int col = 0; col < 3; col++) {
        long double t[3][3];
        memcpy(t, m, sizeof(t));
        for (int row = 0; row < 3; row++)
            t[row][col] = r[row];
        long double dc = t[0][0] * (t[1][1] * t[2][2] - t[1][2] * t[2][1]) -
                         t[0][1] * (t[1][0] * t[2][2] - t[1][2] * t[2][0]) +
                         t[0][2] * (t[1][0] * t[2][1] - t[1][1] * t[2][0]);
        c[col] = (double)(dc / det);
    }
}

static int anderson_sorted(const double *sa, size_t k1, const double *sb, size_t k2, double *stat,
                           double *pvalue)
{
    if (k1 == 0 || k2 == 0 || k1 + k2 < 3) /* SciPy fails below 3 values too */
        return -1;
    double *z;
    size_t *ca, *cb, nz;
    merge_counts(sa, k1, sb, k2, &z, &ca, &cb, &nz);
    if (nz < 2) {
        free(z);
        free(ca);
        free(cb);
        return -1;
    }
    size_t *lj = xmalloc(nz * sizeof(size_t));
    double *bj = xmalloc(nz * sizeof(double));
    size_t below = 0, nn = k1 + k2;
    for (size_t j = 0; j < nz; j++) {
        lj[j] = ca[j] + cb[j];
        bj[j] = (double)below + (double)lj[j] / 2.0;
        below += lj[j];
    }
    const double *s[2] = {sa, sb};
    size_t n[2] = {k1, k2};
    double a2kn = ad_midrank(s, n, 2, z, nz, lj, bj);
    free(z);
    free(ca);
    free(cb);
    free(lj);
    free(bj);

    double N = (double)nn, k = 2.0;
    double H = 1.0 / (double)k1 + 1.0 / (double)k2;
    /* h = sum_{i=1}^{N-1} 1/i; g = sum_{j=2}^{N-1} (sum_{i=j}^{N-1} 1/i) / j,
     * the partial sums taken from the top as SciPy's cumsum does */
    double cs = 0.0, g = 0.0;
    for (size_t t = 0; t + 3 <= nn; t++) {
        cs += 1.0 / (double)(nn - 1 - t);
        g += cs / (double)(t + 2);
    }
    double h = cs + 1.0;
    double a = (4 * g - 6) * (k - 1) + (10 - 6 * g) * H;
    double b = (2 * g - 4) * k * k + 8 * h * k + (2 * g - 14 * h - 4) * H - 8 * h + 4 * g - 6;
    double c = (6 * h + 2 * g - 2) * k * k + (4 * h - 4 * g + 6) * k + (2 * h - 6) * H + 4 * h;
    double d = (2 * h + 6) * k * k - 4 * h * k;
    double sigmasq = (a * N * N * N + b * N * N + c * N + d) / ((N - 1.) * (N - 2.) * (N - 3.));
    double m = k - 1;
    double A2 = (a2kn - m) / sqrt(sigmasq);
    static const double b0[] = {0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085};
    static const double b1[] = {-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615};
    static const double b2[] = {-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154};
    static const double sig[] = {0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001};
    double crit[7], lsig[7];
    for (int i = 0; i < 7; i++) {
        crit[i] = b0[i] + b1[i] / sqrt(m) + b2[i] / m;
        lsig[i] = log(sig[i]);
    }
    double p;
    if (A2 < crit[0]) {
        p = 0.25;
    } else if (A2 > crit[6]) {
        p = 0.001;
    } else if (isnan(A2)) {
        p = (double)NAN;
    } else {
        double cf[3];
        polyfit2(crit, lsig, 7, cf);
        p = exp((cf[0] * A2 + cf[1]) * A2 + cf[2]);
    }
    *stat = A2;
    *pvalue = p;
    return 0;
}

int drift_anderson_ksamp(const double *a, size_t n1, const double *b, size_t n2, double *stat,
                         double *pvalue)
{
    size_t k1, k2;
    double *sa = sorted_finite(a, n1, &k1), *sb = sorted_finite(b, n2, &k2);
    int rc = anderson_sorted(sa, k1, sb, k2, stat, pvalue);
    free(sa);
    free(sb);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Evidently's column tests                                            */

static const struct {
    drift_test_t test;
    const char *name;
    double threshold;
    bool pvalue;
} test_table[] = {
    {DRIFT_TEST_AUTO, "auto", (double)NAN, false},
    {DRIFT_TEST_KS, "ks", 0.05, true},
    {DRIFT_TEST_CHISQUARE, "chisquare", 0.05, true},
    {DRIFT_TEST_Z, "z", 0.05, true},
    {DRIFT_TEST_WASSERSTEIN, "wasserstein", 0.1, false},
    {DRIFT_TEST_JENSENSHANNON, "jensenshannon", 0.1, false},
    {DRIFT_TEST_PSI, "psi", 0.1, false},
    {DRIFT_TEST_KL_DIV, "kl_div", 0.1, false},
    {DRIFT_TEST_HELLINGER, "hellinger", 0.1, false},
    {DRIFT_TEST_ANDERSON, "anderson", 0.1, true},
};

const char *drift_test_name(drift_test_t test)
{
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(test_table); i++)
        if (test_table[i].test == test)
            return test_table[i].name;
    return "unknown";
}

int drift_test_from_name(const char *name)
{
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(test_table); i++)
        if (!strcmp(test_table[i].name, name))
            return (int)test_table[i].test;
    return -1;
}

double drift_test_default_threshold(drift_test_t test)
{
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(test_table); i++)
        if (test_table[i].test == test)
            return test_table[i].threshold;
    return (double)NAN;
}

bool drift_test_is_pvalue(drift_test_t test)
{
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(test_table); i++)
        if (test_table[i].test == test)
            return test_table[i].pvalue;
    return false;
}

static drift_test_t default_test(bool numeric, size_t nref, size_t n_values)
{
    if (nref <= 1000) {
        if (numeric && n_values > 5)
            return DRIFT_TEST_KS;
        return n_values > 2 ? DRIFT_TEST_CHISQUARE : DRIFT_TEST_Z;
    }
    if (numeric && n_values > 5)
        return DRIFT_TEST_WASSERSTEIN;
    return DRIFT_TEST_JENSENSHANNON;
}

int drift_column(bool numeric, const double *ref, size_t nref, const double *cur, size_t ncur,
                 drift_test_t test, double threshold, drift_result_t *out, char *errstr,
                 size_t errstr_size)
{
    size_t kr, kc;
    double *sr = sorted_finite(ref, nref, &kr), *sc = sorted_finite(cur, ncur, &kc);
    double *keys = NULL;
    size_t *ca = NULL, *cb = NULL, k = 0;
    int rc = -1;
    if (kr == 0 || kc == 0) {
        snprintf(errstr, errstr_size, "the %s sample is empty after dropping NaN and inf",
                 kr == 0 ? "reference" : "current");
        goto out;
    }
    /* default_test() tells apart at most 2, 3..5 and more than 5 values */
    if (test == DRIFT_TEST_AUTO)
        test = default_test(numeric, kr, distinct_upto(sr, kr, sc, kc, 6));
    if (test == DRIFT_TEST_CHISQUARE || test == DRIFT_TEST_Z)
        merge_counts(sr, kr, sc, kc, &keys, &ca, &cb, &k);
    if (!numeric &&
        (test == DRIFT_TEST_KS || test == DRIFT_TEST_WASSERSTEIN || test == DRIFT_TEST_ANDERSON)) {
        snprintf(errstr, errstr_size, "test %s needs a numeric column", drift_test_name(test));
        goto out;
    }
    if (isnan(threshold))
        threshold = drift_test_default_threshold(test);
    double value = (double)NAN;
    bool drifted = false;
    switch (test) {
    case DRIFT_TEST_KS: {
        drift_ks_t ks;
        if (drift_ks_2samp_sorted(sr, kr, sc, kc, DRIFT_KS_AUTO, &ks))
            goto out;
        value = ks.pvalue;
        drifted = value <= threshold;
        break;
    }
    case DRIFT_TEST_CHISQUARE: {
        double *fo = xmalloc(k * sizeof(double)), *fe = xmalloc(k * sizeof(double));
        double knorm = (double)kc / (double)kr, stat;
        for (size_t i = 0; i < k; i++) {
            fe[i] = (double)ca[i] * knorm;
            fo[i] = (double)cb[i];
        }
        int crc = drift_chisquare(fo, fe, k, &stat, &value);
        free(fo);
        free(fe);
        if (crc) {
            snprintf(errstr, errstr_size, "chi-square failed");
            goto out;
        }
        drifted = value < threshold;
        break;
    }
    case DRIFT_TEST_Z: {
        if (k == 1) {
            value = 1.0; /* one and the same value on both sides */
        } else {
            /* indicator: 0 for the smallest value, 1 otherwise */
            double x1 = (double)(kr - ca[0]), x2 = (double)(kc - cb[0]);
            value = drift_ztest_2prop(x1, (double)kr, x2, (double)kc, NULL);
        }
        drifted = value < threshold;
        break;
    }
    case DRIFT_TEST_WASSERSTEIN:
        value = drift_wasserstein_sorted(sr, kr, sc, kc) / fmax(drift_std(sr, kr), 0.001);
        drifted = value >= threshold;
        break;
    case DRIFT_TEST_JENSENSHANNON:
    case DRIFT_TEST_PSI:
    case DRIFT_TEST_KL_DIV: {
        double *rp, *cp;
        size_t nb;
        bin_shares_sorted(numeric, sr, kr, sc, kc, test != DRIFT_TEST_JENSENSHANNON, &rp, &cp, &nb);
        if (test == DRIFT_TEST_JENSENSHANNON)
            value = drift_jensenshannon(rp, cp, nb, 0);
        else if (test == DRIFT_TEST_PSI)
            value = drift_psi(rp, cp, nb);
        else
            value = drift_kl_div(rp, cp, nb, 0);
        free(rp);
        free(cp);
        drifted = value >= threshold;
        break;
    }
    case DRIFT_TEST_ANDERSON: {
        double stat;
        if (anderson_sorted(sr, kr, sc, kc, &stat, &value)) {
            snprintf(errstr, errstr_size, "anderson needs more than one distinct value");
            goto out;
        }
        drifted = value < threshold;
        break;
    }
    case DRIFT_TEST_HELLINGER:
        value = hellinger_sorted(numeric, sr, kr, sc, kc);
        drifted = value >= threshold;
        break;
    default: snprintf(errstr, errstr_size, "unknown test %d", (int)test); goto out;
    }
    out->test = test;
    out->value = value;
    out->threshold = threshold;
    out->drifted = drifted;
    out->n_ref = kr;
    out->n_cur = kc;
    rc = 0;
out:
    free(keys);
    free(ca);
    free(cb);
    free(sr);
    free(sc);
    return rc;
}

bool drift_dataset(const drift_result_t *results, size_t n, double drift_share, double *share)
{
    if (n == 0) {
        if (share)
            *share = (double)NAN;
        return false;
    }
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += results[i].drifted;
    double s = (double)d / (double)n;
    if (share)
        *share = s;
    return s >= drift_share;
}
