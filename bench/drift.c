/*
 * mlops-bench-drift: our side of the drift benchmark (bench/drift.sh).
 *
 *   mlops-bench-drift --data DIR [--repeat R] [--drift-share S]
 *
 * DIR holds what `bench/drift_peers.py gen` writes: meta.json (features with
 * their kind, window size, window count), ref.csv (the reference rows) and
 * cur.csv (the windows, one after the other). It runs the monitor's own
 * drift path, services/monitor/dstate.c, as the monitor does: the reference
 * columns become a model/1 profile (profile.inputs[*].sample, as the trainer
 * writes it), dstate_new() loads it with one tumbling count window of the
 * window size, and every row goes in as a features/1 `values` object through
 * dstate_add(). The row that completes a window runs the tick: every
 * feature's test chosen as Evidently does by default (drift_column() with
 * DRIFT_TEST_AUTO) and the dataset-drift share (drift_dataset()).
 *
 * Timed, per window: "tick", the dstate_add() call that ticks (one value per
 * feature added, then the 20 tests and the share), and "stream", every
 * dstate_add() call of the window (the incremental window upkeep of 10,000
 * rows plus the tick). The JSON objects of a window's rows are built before
 * its clock starts: parsing the Kafka message is the consumer's work, not
 * the drift code's. With --repeat R the windows are fed R times over (the
 * windows are tumbling, so each pass sees the same windows); decisions must
 * be the same in every pass.
 *
 * Output on stdout, JSON lines: one `drift_bench_window/1` per window (first
 * pass: per feature the test, value and decision; the share and the dataset
 * decision; the tick and stream times of every pass) and one
 * `drift_bench_ours/1` summary. Exit 0, 1 on an error, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csvfile.h"
#include "drift.h"
#include "dstate.h"
#include "util.h"

typedef struct col {
    char *name;
    bool numeric;
    double *num; /* numeric: rows values (NaN: missing) */
    char **str;  /* categorical: row values (NULL: missing) */
    size_t n, cap;
} col_t;

typedef struct table {
    col_t *col;
    size_t ncol, nrows;
} table_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: mlops-bench-drift --data DIR [--repeat R] [--drift-share S]\n"
                "  our side of bench/drift.sh: the monitor's drift path (dstate_add, ticks)\n"
                "  on DIR/ref.csv and the windows of DIR/cur.csv (bench/drift_peers.py gen)\n");
}

static void table_cleanup(table_t *t)
{
    for (size_t c = 0; c < t->ncol; c++) {
        free(t->col[c].num);
        if (t->col[c].str)
            for (size_t i = 0; i < t->col[c].n; i++)
                free(t->col[c].str[i]);
        free(t->col[c].str);
    }
    free(t->col);
    memset(t, 0, sizeof(*t));
}

/* Read @p path (header: the feature names of meta.json, in that order) into
 * columns; an empty field is a missing value. */
static int table_load(const char *path, const json_t *features, table_t *t, char *err,
                      size_t err_size)
{
    csvf_t *r = csvf_open(path, err, err_size);
    if (!r)
        return -1;
    char **fields;
    size_t nf;
    int rc = csvf_next(r, &fields, &nf, err, err_size);
    if (rc != 1) {
        if (rc == 0)
            snprintf(err, err_size, "%s: no header", path);
        csvf_close(r);
        return -1;
    }
    t->ncol = json_array_size(features);
    t->col = xcalloc(t->ncol, sizeof(col_t));
    if (nf != t->ncol) {
        snprintf(err, err_size, "%s: %zu columns, meta.json names %zu", path, nf, t->ncol);
        goto fail;
    }
    for (size_t c = 0; c < t->ncol; c++) {
        const json_t *f = json_array_get(features, c);
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *kind = json_string_value(json_object_get(f, "kind"));
        if (!name || !kind || strcmp(name, fields[c])) {
            snprintf(err, err_size, "%s: column %zu is '%s', meta.json says '%s'", path, c + 1,
                     fields[c], name ? name : "?");
            goto fail;
        }
        t->col[c].name = (char *)name; /* borrowed from meta (lives as long as it) */
        t->col[c].numeric = !strcmp(kind, "numeric");
    }
    while ((rc = csvf_next(r, &fields, &nf, err, err_size)) == 1) {
        if (nf != t->ncol) {
            snprintf(err, err_size, "%s: record %zu: %zu fields, expected %zu", path,
                     csvf_record(r), nf, t->ncol);
            goto fail;
        }
        for (size_t c = 0; c < t->ncol; c++) {
            col_t *co = &t->col[c];
            if (co->n == co->cap) {
                co->cap = co->cap ? 2 * co->cap : 16384;
                if (co->numeric)
                    co->num = xrealloc(co->num, co->cap * sizeof(double));
                else
                    co->str = xrealloc(co->str, co->cap * sizeof(char *));
            }
            const char *s = fields[c];
            if (co->numeric) {
                double x = (double)NAN;
                if (*s) {
                    char *end;
                    errno = 0;
                    x = strtod(s, &end);
                    if (*end || errno == ERANGE) {
                        snprintf(err, err_size, "%s: record %zu: column %s: '%s' is not a number",
                                 path, csvf_record(r), co->name, s);
                        goto fail;
                    }
                }
                co->num[co->n++] = x;
            } else {
                co->str[co->n++] = *s ? xstrdup(s) : NULL;
            }
        }
        t->nrows++;
    }
    if (rc < 0)
        goto fail;
    csvf_close(r);
    return 0;
fail:
    csvf_close(r);
    table_cleanup(t);
    return -1;
}

/* The model/1 document the monitor would load: name, spec name and the
 * reference sample of every input (missing values left out, as the trainer's
 * reservoir does). */
static json_t *model_doc(const table_t *ref)
{
    json_t *inputs = json_array();
    for (size_t c = 0; c < ref->ncol; c++) {
        const col_t *co = &ref->col[c];
        json_t *sample = json_array();
        for (size_t i = 0; i < co->n; i++) {
            if (co->numeric && isfinite(co->num[i]))
                json_array_append_new(sample, json_real(co->num[i]));
            else if (!co->numeric && co->str[i])
                json_array_append_new(sample, json_string(co->str[i]));
        }
        json_array_append_new(inputs,
                              json_pack("{s:s, s:s, s:o}", "column", co->name, "kind",
                                        co->numeric ? "numeric" : "categorical", "sample", sample));
    }
    return json_pack("{s:s, s:{s:s}, s:{s:o}}", "name", "driftbench", "spec", "name", "driftbench",
                     "profile", "inputs", inputs);
}

/* A features/1 `values` object for row @p i of @p cur. */
static json_t *row_values(const table_t *cur, size_t i)
{
    json_t *v = json_object();
    for (size_t c = 0; c < cur->ncol; c++) {
        const col_t *co = &cur->col[c];
        json_t *x;
        if (co->numeric)
            x = isfinite(co->num[i]) ? json_real(co->num[i]) : json_null();
        else
            x = co->str[i] ? json_string(co->str[i]) : json_null();
        json_object_set_new(v, co->name, x);
    }
    return v;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *x, size_t n)
{
    double *c = xmalloc(n * sizeof(double));
    memcpy(c, x, n * sizeof(double));
    qsort(c, n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"repeat", required_argument, NULL, 'r'},
                                         {"drift-share", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = NULL;
    long repeat = 3;
    double drift_share = 0.5;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'd': dir = optarg; break;
        case 'r': repeat = strtol(optarg, NULL, 10); break;
        case 's': drift_share = strtod(optarg, NULL); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!dir || optind != argc || repeat < 1 || repeat > 1000 ||
        !(drift_share > 0 && drift_share <= 1)) {
        usage(stderr);
        return 2;
    }

    int rc = 1;
    char err[1024], path[4096];
    json_error_t jerr;
    json_t *meta = NULL, *doc = NULL, **rows = NULL;
    table_t ref = {0}, cur = {0};
    dstate_t *d = NULL;
    double *tick_s = NULL, *stream_s = NULL;
    json_t **first = NULL; /* per window: the first pass's results */

    snprintf(path, sizeof(path), "%s/meta.json", dir);
    meta = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!meta) {
        fprintf(stderr, "mlops-bench-drift: %s:%d: %s\n", path, jerr.line, jerr.text);
        goto out;
    }
    const json_t *features = json_object_get(meta, "features");
    json_int_t wsize = json_integer_value(json_object_get(meta, "window"));
    json_int_t nwin = json_integer_value(json_object_get(meta, "windows"));
    if (!json_is_array(features) || !json_array_size(features) || wsize < 1 || nwin < 1) {
        fprintf(stderr, "mlops-bench-drift: %s: needs features, window and windows\n", path);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/ref.csv", dir);
    if (table_load(path, features, &ref, err, sizeof(err)))
        goto fail_err;
    snprintf(path, sizeof(path), "%s/cur.csv", dir);
    if (table_load(path, features, &cur, err, sizeof(err)))
        goto fail_err;
    if (cur.nrows != (size_t)(wsize * nwin)) {
        snprintf(err, sizeof(err), "cur.csv: %zu rows, expected %lld windows of %lld", cur.nrows,
                 (long long)nwin, (long long)wsize);
        goto fail_err;
    }

    doc = model_doc(&ref);
    dstate_win_t win = {.size = (size_t)wsize, .step = (size_t)wsize};
    double t0 = now_s();
    d = dstate_new(doc, "bench", &win, 1, drift_share, err, sizeof(err));
    double load_s = now_s() - t0;
    if (!d)
        goto fail_err;

    size_t W = (size_t)nwin, N = (size_t)wsize, F = ref.ncol;
    tick_s = xcalloc(W * (size_t)repeat, sizeof(double));
    stream_s = xcalloc(W * (size_t)repeat, sizeof(double));
    first = xcalloc(W, sizeof(json_t *));
    rows = xcalloc(N, sizeof(json_t *));
    size_t ticked[DSTATE_MAX_WINDOWS];
    for (long rep = 0; rep < repeat; rep++) {
        for (size_t w = 0; w < W; w++) {
            for (size_t i = 0; i < N; i++)
                rows[i] = row_values(&cur, w * N + i);
            double ts = now_s(), tt = 0;
            size_t nt = 0;
            for (size_t i = 0; i < N; i++) {
                double a = i + 1 == N ? now_s() : 0;
                nt += dstate_add(d, rows[i], DSTATE_NO_TIME, ticked);
                if (i + 1 == N)
                    tt = now_s() - a;
            }
            stream_s[rep * W + w] = now_s() - ts;
            tick_s[rep * W + w] = tt;
            for (size_t i = 0; i < N; i++)
                json_decref(rows[i]);
            if (nt != 1 || dstate_ticks(d, 0) != (uint64_t)(rep * (long)W) + w + 1) {
                snprintf(err, sizeof(err), "window %zu (pass %ld) did not tick exactly once", w,
                         rep + 1);
                goto fail_err;
            }
            bool dataset;
            double share = dstate_share(d, 0, &dataset);
            json_t *feats = json_array();
            for (size_t f = 0; f < F; f++) {
                const dstate_col_t *c = dstate_result(d, 0, f);
                json_t *jf = json_pack("{s:s}", "name", dstate_feature(d, f));
                if (c->computed) {
                    json_object_set_new(jf, "test", json_string(drift_test_name(c->r.test)));
                    json_object_set_new(jf, "value", num_or_null(c->r.value));
                    json_object_set_new(jf, "threshold", num_or_null(c->r.threshold));
                    json_object_set_new(jf, "drifted", json_boolean(c->r.drifted));
                    json_object_set_new(jf, "n_ref", json_integer((json_int_t)c->r.n_ref));
                    json_object_set_new(jf, "n_cur", json_integer((json_int_t)c->r.n_cur));
                } else {
                    json_object_set_new(jf, "error", json_string(c->error));
                }
                json_array_append_new(feats, jf);
            }
            json_t *res = json_pack("{s:o, s:o, s:b}", "features", feats, "share",
                                    num_or_null(share), "dataset_drift", dataset);
            if (rep == 0) {
                first[w] = res;
            } else {
                int same = json_equal(res, first[w]);
                json_decref(res);
                if (!same) {
                    snprintf(err, sizeof(err), "window %zu: pass %ld decided otherwise than pass 1",
                             w, rep + 1);
                    goto fail_err;
                }
            }
        }
    }
    double tick_total = 0, stream_total = 0;
    for (size_t i = 0; i < W * (size_t)repeat; i++) {
        tick_total += tick_s[i];
        stream_total += stream_s[i];
    }
    for (size_t w = 0; w < W; w++) {
        json_t *jt = json_array(), *js = json_array();
        for (long rep = 0; rep < repeat; rep++) {
            json_array_append_new(jt, json_real(tick_s[rep * W + w]));
            json_array_append_new(js, json_real(stream_s[rep * W + w]));
        }
        json_object_set_new(first[w], "schema", json_string("drift_bench_window/1"));
        json_object_set_new(first[w], "window", json_integer((json_int_t)w));
        json_object_set_new(first[w], "tick_s", jt);
        json_object_set_new(first[w], "stream_s", js);
        char *line = json_dumps(first[w], JSON_COMPACT | JSON_REAL_PRECISION(17));
        puts(line);
        free(line);
    }
    size_t nt = W * (size_t)repeat;
    json_t *sum = json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "schema",
        "drift_bench_ours/1", "path", "mlops dstate (drift_column AUTO + drift_dataset)",
        "features", (json_int_t)F, "window", (json_int_t)N, "reference", (json_int_t)ref.nrows,
        "windows", (json_int_t)W, "passes", (json_int_t)repeat, "drift_share", drift_share,
        "load_s", load_s, "tick_s_total", tick_total, "stream_s_total", stream_total,
        "tick_s_median", median(tick_s, nt), "stream_s_median", median(stream_s, nt), "ticks_per_s",
        (double)nt / tick_total, "windows_per_s", (double)nt / stream_total);
    char *line = json_dumps(sum, JSON_COMPACT | JSON_REAL_PRECISION(17));
    puts(line);
    free(line);
    json_decref(sum);
    rc = 0;
    goto out;
fail_err:
    fprintf(stderr, "mlops-bench-drift: %s\n", err);
out:
    if (first)
        for (size_t w = 0; w < (size_t)json_integer_value(json_object_get(meta, "windows")); w++)
            json_decref(first[w]);
    free(first);
    free(rows);
    free(tick_s);
    free(stream_s);
    dstate_destroy(d);
    json_decref(doc);
    table_cleanup(&ref);
    table_cleanup(&cur);
    json_decref(meta);
    return rc;
}
