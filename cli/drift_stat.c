/*
 * mlopsctl drift-stat: the drift statistics of common/drift.h on JSON, one
 * request per input line (JSONL on stdin), one result per output line. It
 * lets tests and users check our numbers against SciPy and Evidently on the
 * same data without a service in between.
 *
 * A request is an object with "op" and the op's fields:
 *   ks           a, b (arrays), method ("auto" | "exact" | "asymp")
 *                -> statistic, pvalue, exact
 *   anderson     a, b            -> statistic, pvalue (anderson_ksamp, midrank)
 *   kstwo_sf     x, n            -> value      (scipy.stats.kstwo.sf)
 *   smirnov      n, x            -> value      (scipy.special.smirnov)
 *   gammaincc    a, x            -> value
 *   chi2_sf      df, x           -> value
 *   chisquare    obs, exp        -> statistic, pvalue
 *   wasserstein  u, v            -> value
 *   wasserstein_norm ref, cur    -> value
 *   std          x               -> value
 *   jensenshannon p, q, base?    -> value
 *   entropy      p, q, base?     -> value      (KL divergence)
 *   psi          p, q            -> value
 *   ztest        x1, n1, x2, n2  -> z, pvalue
 *   sturges      x               -> edges
 *   bins         numeric, ref, cur, fill -> ref, cur (shares per bin)
 *   hellinger    numeric, ref, cur -> value
 *   column       numeric, ref, cur, test?, threshold? -> test, value,
 *                threshold, drifted, n_ref, n_cur
 *   dataset      columns: [{name, numeric, ref, cur, test?, threshold?}],
 *                drift_share? -> columns: [...], share, dataset_drift
 * Array elements are numbers, null or "nan" (NaN), "inf", "-inf"; in a
 * categorical column any other string is a category. Non-finite results
 * are written as null (NaN) or "inf"/"-inf". A bad request prints
 * "<stdin>:LINE: field: message" on stderr and the exit status is 1 (the
 * other lines are still answered, with {"error": ...}).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "drift.h"
#include "hmap.h"
#include "lifecycle.h"
#include "mjson.h"
#include "util.h"

#define PROG "mlopsctl drift-stat"
#define LINE_MAX_BYTES (256u << 20)

/* Category codes for one request: strings are interned in first-seen order
 * as 2^52 + index, numbers keep their value. */
typedef struct codes {
    hmap_t *map;
    size_t next;
} codes_t;

static int fail(size_t line, const char *field, const char *msg, char *err, size_t errsz)
{
    snprintf(err, errsz, "<stdin>:%zu: %s: %s", line, field, msg);
    return -1;
}

static int get_vec(const json_t *req, const char *key, codes_t *codes, double **out, size_t *n,
                   size_t line, char *err, size_t errsz)
{
    const json_t *arr = json_object_get(req, key);
    if (!json_is_array(arr))
        return fail(line, key, "missing or not an array", err, errsz);
    size_t len = json_array_size(arr);
    double *v = xmalloc((len ? len : 1) * sizeof(double));
    for (size_t i = 0; i < len; i++) {
        const json_t *e = json_array_get(arr, i);
        if (json_is_number(e)) {
            v[i] = json_number_value(e);
        } else if (json_is_null(e)) {
            v[i] = (double)NAN;
        } else if (json_is_string(e)) {
            const char *s = json_string_value(e);
            if (!strcmp(s, "nan")) {
                v[i] = (double)NAN;
            } else if (!strcmp(s, "inf")) {
                v[i] = (double)INFINITY;
            } else if (!strcmp(s, "-inf")) {
                v[i] = -(double)INFINITY;
            } else if (codes) {
                void *c = hmap_get(codes->map, s);
                if (!c) {
                    c = (void *)(uintptr_t)(++codes->next);
                    hmap_put(codes->map, s, c);
                }
                v[i] = 0x1p52 + (double)(uintptr_t)c;
            } else {
                free(v);
                char m[96];
                snprintf(m, sizeof(m), "element %zu is a string in a numeric array", i);
                return fail(line, key, m, err, errsz);
            }
        } else {
            free(v);
            char m[64];
            snprintf(m, sizeof(m), "element %zu is not a number", i);
            return fail(line, key, m, err, errsz);
        }
    }
    *out = v;
    *n = len;
    return 0;
}

static int get_num(const json_t *req, const char *key, bool required, double *out, size_t line,
                   char *err, size_t errsz)
{
    const json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) {
        if (required)
            return fail(line, key, "missing", err, errsz);
        return 1;
    }
    if (!json_is_number(v))
        return fail(line, key, "not a number", err, errsz);
    *out = json_number_value(v);
    return 0;
}

static int get_bool(const json_t *req, const char *key, bool dflt, bool *out, size_t line,
                    char *err, size_t errsz)
{
    const json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(line, key, "not a boolean", err, errsz);
    *out = json_is_true(v);
    return 0;
}

static json_t *num(double v)
{
    if (isnan(v))
        return json_null();
    if (isinf(v))
        return json_string(v > 0 ? "inf" : "-inf");
    return json_real(v);
}

static json_t *num_array(const double *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, num(v[i]));
    return a;
}

static int get_size(const json_t *req, const char *key, long *out, size_t line, char *err,
                    size_t errsz)
{
    const json_t *v = json_object_get(req, key);
    if (!json_is_integer(v))
        return fail(line, key, "missing or not an integer", err, errsz);
    *out = (long)json_integer_value(v);
    return 0;
}

/* One column of a "column" or "dataset" request. */
static int do_column(const json_t *req, size_t line, json_t *res, drift_result_t *dr, char *err,
                     size_t errsz)
{
    bool numeric;
    if (get_bool(req, "numeric", true, &numeric, line, err, errsz))
        return -1;
    codes_t codes = {hmap_new(NULL), 0};
    double *ref = NULL, *cur = NULL;
    size_t nref, ncur;
    int rc = -1;
    if (get_vec(req, "ref", numeric ? NULL : &codes, &ref, &nref, line, err, errsz) ||
        get_vec(req, "cur", numeric ? NULL : &codes, &cur, &ncur, line, err, errsz))
        goto out;
    drift_test_t test = DRIFT_TEST_AUTO;
    const json_t *t = json_object_get(req, "test");
    if (t && !json_is_null(t)) {
        int ti = json_is_string(t) ? drift_test_from_name(json_string_value(t)) : -1;
        if (ti < 0) {
            fail(line, "test", "unknown test name", err, errsz);
            goto out;
        }
        test = (drift_test_t)ti;
    }
    double thr = (double)NAN;
    if (get_num(req, "threshold", false, &thr, line, err, errsz) < 0)
        goto out;
    char cerr[256];
    if (drift_column(numeric, ref, nref, cur, ncur, test, thr, dr, cerr, sizeof(cerr))) {
        fail(line, "column", cerr, err, errsz);
        goto out;
    }
    json_object_set_new(res, "test", json_string(drift_test_name(dr->test)));
    json_object_set_new(res, "value", num(dr->value));
    json_object_set_new(res, "threshold", num(dr->threshold));
    json_object_set_new(res, "drifted", json_boolean(dr->drifted));
    json_object_set_new(res, "n_ref", json_integer((json_int_t)dr->n_ref));
    json_object_set_new(res, "n_cur", json_integer((json_int_t)dr->n_cur));
    rc = 0;
out:
    free(ref);
    free(cur);
    hmap_destroy(codes.map);
    return rc;
}

static int do_request(const json_t *req, size_t line, json_t *res, char *err, size_t errsz)
{
    const char *op = json_string_value(json_object_get(req, "op"));
    if (!op)
        return fail(line, "op", "missing or not a string", err, errsz);
    double *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int rc = -1;
    if (!strcmp(op, "ks")) {
        const char *m = json_string_value(json_object_get(req, "method"));
        drift_ks_method_t method = DRIFT_KS_AUTO;
        if (m && !strcmp(m, "exact"))
            method = DRIFT_KS_EXACT;
        else if (m && !strcmp(m, "asymp"))
            method = DRIFT_KS_ASYMP;
        else if (m && strcmp(m, "auto")) {
            fail(line, "method", "not auto, exact or asymp", err, errsz);
            goto out;
        }
        if (get_vec(req, "a", NULL, &a, &na, line, err, errsz) ||
            get_vec(req, "b", NULL, &b, &nb, line, err, errsz))
            goto out;
        drift_ks_t ks;
        if (drift_ks_2samp(a, na, b, nb, method, &ks)) {
            fail(line, "a", "a sample is empty after dropping NaN and inf", err, errsz);
            goto out;
        }
        json_object_set_new(res, "statistic", num(ks.statistic));
        json_object_set_new(res, "pvalue", num(ks.pvalue));
        json_object_set_new(res, "exact", json_boolean(ks.exact));
    } else if (!strcmp(op, "anderson")) {
        if (get_vec(req, "a", NULL, &a, &na, line, err, errsz) ||
            get_vec(req, "b", NULL, &b, &nb, line, err, errsz))
            goto out;
        double stat, p;
        if (drift_anderson_ksamp(a, na, b, nb, &stat, &p)) {
            fail(line, "a", "needs 3 or more values, 2 or more distinct, none empty", err, errsz);
            goto out;
        }
        json_object_set_new(res, "statistic", num(stat));
        json_object_set_new(res, "pvalue", num(p));
    } else if (!strcmp(op, "kstwo_sf") || !strcmp(op, "smirnov")) {
        double x;
        long n;
        if (get_num(req, "x", true, &x, line, err, errsz) ||
            get_size(req, "n", &n, line, err, errsz))
            goto out;
        double v = op[0] == 'k' ? drift_kstwo_sf(x, n) : drift_smirnov(n, x);
        json_object_set_new(res, "value", num(v));
    } else if (!strcmp(op, "gammaincc") || !strcmp(op, "chi2_sf")) {
        bool g = op[0] == 'g';
        double p1, x;
        if (get_num(req, g ? "a" : "df", true, &p1, line, err, errsz) ||
            get_num(req, "x", true, &x, line, err, errsz))
            goto out;
        json_object_set_new(res, "value", num(g ? drift_gammaincc(p1, x) : drift_chi2_sf(p1, x)));
    } else if (!strcmp(op, "chisquare")) {
        if (get_vec(req, "obs", NULL, &a, &na, line, err, errsz) ||
            get_vec(req, "exp", NULL, &b, &nb, line, err, errsz))
            goto out;
        double stat, p;
        if (na != nb || drift_chisquare(a, b, na, &stat, &p)) {
            fail(line, "obs", "obs and exp must be non-empty, of one length, finite, >= 0", err,
                 errsz);
            goto out;
        }
        json_object_set_new(res, "statistic", num(stat));
        json_object_set_new(res, "pvalue", num(p));
    } else if (!strcmp(op, "wasserstein") || !strcmp(op, "wasserstein_norm")) {
        bool normed = op[11] == '_';
        if (get_vec(req, normed ? "ref" : "u", NULL, &a, &na, line, err, errsz) ||
            get_vec(req, normed ? "cur" : "v", NULL, &b, &nb, line, err, errsz))
            goto out;
        double v = normed ? drift_wasserstein_norm(a, na, b, nb) : drift_wasserstein(a, na, b, nb);
        json_object_set_new(res, "value", num(v));
    } else if (!strcmp(op, "std")) {
        if (get_vec(req, "x", NULL, &a, &na, line, err, errsz))
            goto out;
        json_object_set_new(res, "value", num(drift_std(a, na)));
    } else if (!strcmp(op, "jensenshannon") || !strcmp(op, "entropy") || !strcmp(op, "psi")) {
        if (get_vec(req, "p", NULL, &a, &na, line, err, errsz) ||
            get_vec(req, "q", NULL, &b, &nb, line, err, errsz))
            goto out;
        if (na != nb) {
            fail(line, "q", "p and q differ in length", err, errsz);
            goto out;
        }
        double base = 0;
        if (get_num(req, "base", false, &base, line, err, errsz) < 0)
            goto out;
        double v = op[0] == 'j'   ? drift_jensenshannon(a, b, na, base)
                   : op[0] == 'e' ? drift_kl_div(a, b, na, base)
                                  : drift_psi(a, b, na);
        json_object_set_new(res, "value", num(v));
    } else if (!strcmp(op, "ztest")) {
        double x1, n1, x2, n2, z;
        if (get_num(req, "x1", true, &x1, line, err, errsz) ||
            get_num(req, "n1", true, &n1, line, err, errsz) ||
            get_num(req, "x2", true, &x2, line, err, errsz) ||
            get_num(req, "n2", true, &n2, line, err, errsz))
            goto out;
        double p = drift_ztest_2prop(x1, n1, x2, n2, &z);
        json_object_set_new(res, "z", num(z));
        json_object_set_new(res, "pvalue", num(p));
    } else if (!strcmp(op, "sturges")) {
        if (get_vec(req, "x", NULL, &a, &na, line, err, errsz))
            goto out;
        size_t ne;
        double *e = drift_sturges_edges(a, na, &ne);
        if (!e) {
            fail(line, "x", "empty", err, errsz);
            goto out;
        }
        json_object_set_new(res, "edges", num_array(e, ne));
        free(e);
    } else if (!strcmp(op, "bins") || !strcmp(op, "hellinger")) {
        bool numeric, fill;
        codes_t codes = {hmap_new(NULL), 0};
        int vrc = get_bool(req, "numeric", true, &numeric, line, err, errsz) ||
                  get_bool(req, "fill", false, &fill, line, err, errsz) ||
                  get_vec(req, "ref", &codes, &a, &na, line, err, errsz) ||
                  get_vec(req, "cur", &codes, &b, &nb, line, err, errsz);
        hmap_destroy(codes.map);
        if (vrc)
            goto out;
        if (op[0] == 'h') {
            json_object_set_new(res, "value", num(drift_hellinger(numeric, a, na, b, nb)));
        } else {
            double *rs, *cs;
            size_t k;
            if (drift_bin_shares(numeric, a, na, b, nb, fill, &rs, &cs, &k)) {
                fail(line, "ref", "a sample is empty after dropping NaN and inf", err, errsz);
                goto out;
            }
            json_object_set_new(res, "ref", num_array(rs, k));
            json_object_set_new(res, "cur", num_array(cs, k));
            free(rs);
            free(cs);
        }
    } else if (!strcmp(op, "column")) {
        drift_result_t dr;
        if (do_column(req, line, res, &dr, err, errsz))
            goto out;
    } else if (!strcmp(op, "dataset")) {
        const json_t *cols = json_object_get(req, "columns");
        if (!json_is_array(cols)) {
            fail(line, "columns", "missing or not an array", err, errsz);
            goto out;
        }
        double share_thr = 0.5;
        if (get_num(req, "drift_share", false, &share_thr, line, err, errsz) < 0)
            goto out;
        size_t nc = json_array_size(cols);
        drift_result_t *drs = xcalloc(nc ? nc : 1, sizeof(drift_result_t));
        json_t *out_cols = json_array();
        for (size_t i = 0; i < nc; i++) {
            json_t *cr = json_object();
            const json_t *name = json_object_get(json_array_get(cols, i), "name");
            if (name)
                json_object_set(cr, "name", (json_t *)name);
            json_array_append_new(out_cols, cr);
            if (do_column(json_array_get(cols, i), line, cr, &drs[i], err, errsz)) {
                free(drs);
                json_decref(out_cols);
                goto out;
            }
        }
        double share;
        bool dd = drift_dataset(drs, nc, share_thr, &share);
        free(drs);
        json_object_set_new(res, "columns", out_cols);
        json_object_set_new(res, "share", num(share));
        json_object_set_new(res, "dataset_drift", json_boolean(dd));
    } else {
        fail(line, "op", "unknown op", err, errsz);
        goto out;
    }
    rc = 0;
out:
    free(a);
    free(b);
    return rc;
}

int cmd_drift_stat(int argc, char **argv)
{
    if (argc > 1) {
        bool help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");
        fprintf(help ? stdout : stderr,
                "Usage: mlopsctl drift-stat < requests.jsonl\n\n"
                "Compute drift statistics (KS, chi-square, Z-test, Wasserstein, Jensen-Shannon,\n"
                "PSI, KL, Hellinger) and Evidently-style column and dataset drift for JSON\n"
                "requests, one per line; see cli/drift_stat.c for the request fields.\n");
        return help ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
    }
    char *buf = NULL;
    size_t cap = 0, line = 0;
    ssize_t len;
    int status = MLOPS_EXIT_OK;
    while ((len = getline(&buf, &cap, stdin)) >= 0) {
        line++;
        if (len == 0 || (len == 1 && buf[0] == '\n'))
            continue;
        char err[1024] = "";
        json_t *res = json_object();
        err_t *perr = NULL;
        json_t *req = mjson_parse_object(buf, (size_t)len, LINE_MAX_BYTES, &perr);
        if (!req) {
            snprintf(err, sizeof(err), "<stdin>:%zu: %s", line, perr ? perr->msg : "bad JSON");
            err_destroy(perr);
        } else if (do_request(req, line, res, err, sizeof(err))) {
            /* err is set */
        }
        if (err[0]) {
            fprintf(stderr, PROG ": %s\n", err);
            json_decref(res);
            res = json_object();
            json_object_set_new(res, "error", json_string(err));
            status = MLOPS_EXIT_FAILURE;
        }
        char *s = mjson_dump(res, NULL);
        if (!s) {
            /* a string that is not UTF-8 cannot come from the parser; keep going */
            s = xstrdup("{\"error\": \"result not representable\"}");
            status = MLOPS_EXIT_FAILURE;
        }
        puts(s);
        free(s);
        json_decref(res);
        json_decref(req);
    }
    free(buf);
    fflush(stdout);
    return status;
}
