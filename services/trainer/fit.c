/*
 * mlops-trainer fit: train a model from a CSV and write a model/1 artifact.
 *
 * Order: spec (given, or inferred by the code of `mlopsctl spec infer`) ->
 * the CSV cleaned by the spec (dataset.h: the ingest code, rolling
 * aggregates point in time) -> checks on the columns and the label ->
 * stratified split (seeded) -> preprocessing fitted on the training split
 * -> the input vectors built by model_encode() (the scorer's code) -> fit
 * (logreg.h or gbdt.h) -> threshold and metrics on the held-out split ->
 * reference profile -> lineage -> validate the document with model.h and
 * write it atomically. Nothing is written on any error.
 */
#include "fit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "commands.h"
#include "csvfile.h"
#include "dataset.h"
#include "gbdt.h"
#include "hmap.h"
#include "lifecycle.h"
#include "logreg.h"
#include "model.h"
#include "spec.h"

#define TRAINER_VERSION MLOPS_VERSION
#define MLOPS_EXIT_GATES 3 /* --strict-gates and a gate failed */
#define STOP_FRACTION 0.1  /* share of the training split kept for validation */
#define RESERVOIR_MAX 10000
#define PROFILE_BINS 10
#define SCORE_BINS 20

static const cfg_item_t fit_items[] = {
    CFG_ITEM(fit_conf_t, data, CFG_T_STR, NULL, 0, "training CSV (header row; required)"),
    CFG_ITEM(fit_conf_t, label, CFG_T_STR, NULL, 0, "label column (default: the spec's label)"),
    CFG_ITEM(fit_conf_t, positive, CFG_T_STR, NULL, 0,
             "the label's positive class (default: the spec's)"),
    CFG_ITEM(fit_conf_t, spec, CFG_T_STR, NULL, 0,
             "feature spec (default: inferred from the CSV as `mlopsctl spec infer` does)"),
    CFG_ITEM(fit_conf_t, algo, CFG_T_STR, "logreg", 0,
             "logreg, gbdt, or auto (a small grid of both, 3-fold CV on the training rows)"),
    CFG_ITEM_RANGE(fit_conf_t, seed, CFG_T_INT, "1", 0, "seed of the split and the sampling", 0,
                   4294967295.0),
    CFG_ITEM_RANGE(fit_conf_t, valid_fraction, CFG_T_DBL, "0.2", 0,
                   "held-out share (threshold, metrics, early stopping)", 0.01, 0.9),
    CFG_ITEM(fit_conf_t, out, CFG_T_STR, "model.json", 0, "where to write the model/1 artifact"),
    CFG_ITEM(fit_conf_t, name, CFG_T_STR, NULL, 0, "model name (default: the spec's name)"),
    CFG_ITEM(fit_conf_t, entity, CFG_T_STR, NULL, 0, "entity column (spec inference only)"),
    CFG_ITEM(fit_conf_t, event_id, CFG_T_STR, NULL, 0, "event id column (spec inference only)"),
    CFG_ITEM(fit_conf_t, event_time, CFG_T_STR, NULL, 0, "event time column (spec inference only)"),
    CFG_ITEM_RANGE(fit_conf_t, c, CFG_T_DBL, "1.0", 0, "logreg: inverse L2 strength C", 1e-9, 1e12),
    CFG_ITEM(fit_conf_t, class_weight, CFG_T_STR, "none", 0, "logreg: none or balanced"),
    CFG_ITEM(fit_conf_t, penalty, CFG_T_STR, "l2", 0, "logreg: l2 or l1"),
    CFG_ITEM_RANGE(fit_conf_t, n_trees, CFG_T_INT, "200", 0, "gbdt: most boosting rounds", 1,
                   100000),
    CFG_ITEM_RANGE(fit_conf_t, max_depth, CFG_T_INT, "6", 0,
                   "gbdt: tree depth (lossguide: 0 = no limit)", 0, 32),
    CFG_ITEM(fit_conf_t, growth, CFG_T_STR, "depthwise", 0,
             "gbdt: depthwise, or lossguide (split the leaf with the largest gain first)"),
    CFG_ITEM_RANGE(fit_conf_t, max_leaves, CFG_T_INT, "31", 0,
                   "gbdt lossguide: most leaves per tree", 2, 65536),
    CFG_ITEM_RANGE(fit_conf_t, learning_rate, CFG_T_DBL, "0.1", 0, "gbdt: learning rate", 1e-6, 1),
    CFG_ITEM_RANGE(fit_conf_t, lambda, CFG_T_DBL, "1.0", 0, "gbdt: L2 on leaf values", 0, 1e9),
    CFG_ITEM_RANGE(fit_conf_t, gamma, CFG_T_DBL, "0", 0, "gbdt: minimum split gain", 0, 1e9),
    CFG_ITEM_RANGE(fit_conf_t, min_child_weight, CFG_T_DBL, "1.0", 0,
                   "gbdt: minimum hessian sum per child", 0, 1e9),
    CFG_ITEM_RANGE(fit_conf_t, subsample, CFG_T_DBL, "1.0", 0, "gbdt: row share per tree", 0.01, 1),
    CFG_ITEM_RANGE(fit_conf_t, colsample, CFG_T_DBL, "1.0", 0, "gbdt: input share per tree", 0.01,
                   1),
    CFG_ITEM_RANGE(fit_conf_t, max_bins, CFG_T_INT, "256", 0,
                   "gbdt: histogram bins per input, the missing-value bin included", 3, 256),
    CFG_ITEM_RANGE(fit_conf_t, early_stopping, CFG_T_INT, "20", 0,
                   "gbdt: stop after this many rounds without a better held-out log loss (0 = "
                   "off)",
                   0, 100000),
    CFG_ITEM_RANGE(fit_conf_t, threads, CFG_T_INT, "2", 0, "threads", 1, 8),
    CFG_ITEM(fit_conf_t, profile_sample, CFG_T_BOOL, "true", 0,
             "keep a reservoir sample of up to 10,000 values per input in the profile"),
    CFG_ITEM(fit_conf_t, dump_matrix, CFG_T_STR, NULL, 0,
             "also write the encoded inputs as CSV (split,row,label,slots...; row = 0-based data "
             "row; for oracle tests)"),
    CFG_ITEM(fit_conf_t, quiet, CFG_T_BOOL, "false", 0, "no progress lines on stderr"),
    CFG_ITEM_RANGE(fit_conf_t, min_auc, CFG_T_DBL, "0", 0,
                   "gate: lowest held-out AUC (0 = no gate)", 0, 1),
    CFG_ITEM_RANGE(fit_conf_t, max_log_loss, CFG_T_DBL, "0", 0,
                   "gate: highest held-out log loss (0 = no gate)", 0, 1e6),
    CFG_ITEM_RANGE(fit_conf_t, min_rows, CFG_T_INT, "0", 0,
                   "gate: fewest training rows (0 = no gate)", 0, 1e12),
    CFG_ITEM(fit_conf_t, champion, CFG_T_STR, NULL, 0,
             "the current champion's model/1 artifact, scored on the same held-out rows"),
    CFG_ITEM_RANGE(fit_conf_t, max_auc_drop, CFG_T_DBL, "-1", 0,
                   "gate: largest held-out AUC drop against --champion (-1 = no gate)", -1, 1),
    CFG_ITEM(fit_conf_t, strict_gates, CFG_T_BOOL, "false", 0,
             "exit 3 when a gate fails (the artifact is written either way, gates recorded)"),
};

/* One fit at a time per process (the CLI, or the service's one worker). */
static bool quiet;
static int64_t t_start;
static fit_progress_fn *progress_fn;
static void *progress_arg;

static void progress(const char *fmt, ...) MLOPS_PRINTF(1, 2);
static void progress(const char *fmt, ...)
{
    if (quiet)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (progress_fn)
        progress_fn(line, progress_arg);
    else
        fprintf(stderr, "mlops-trainer fit: [%6.2f s] %s\n", (double)(mono_us() - t_start) / 1e6,
                line);
}

static void gbdt_progress(void *arg, int round, double loss)
{
    (void)arg;
    if (round % 25 == 0 && isfinite(loss))
        progress("gbdt: round %d, log loss on the early-stopping rows %.6f", round, loss);
    else if (round % 25 == 0)
        progress("gbdt: round %d", round);
}

/* ---- spec inference: the code of `mlopsctl spec infer` ---- */

static spec_t *infer_spec(const fit_conf_t *conf, const char *label, const char *positive,
                          char *errstr, size_t size)
{
    const char *tmpdir = getenv("TMPDIR");
    char *tmp = xasprintf("%s/mlops-trainer-spec.%ld.json", tmpdir && *tmpdir ? tmpdir : "/tmp",
                          (long)getpid());
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"infer";
    argv[argc++] = conf->data;
    argv[argc++] = (char *)"--out";
    argv[argc++] = tmp;
    if (label) {
        argv[argc++] = (char *)"--label";
        argv[argc++] = (char *)label;
    }
    if (positive) {
        argv[argc++] = (char *)"--positive";
        argv[argc++] = (char *)positive;
    }
    if (conf->entity) {
        argv[argc++] = (char *)"--entity";
        argv[argc++] = conf->entity;
    }
    if (conf->event_id) {
        argv[argc++] = (char *)"--event-id";
        argv[argc++] = conf->event_id;
    }
    if (conf->event_time) {
        argv[argc++] = (char *)"--event-time";
        argv[argc++] = conf->event_time;
    }
    if (conf->name) {
        argv[argc++] = (char *)"--name";
        argv[argc++] = conf->name;
    }
    argv[argc] = NULL;
    char **full = xcalloc((size_t)argc + 2, sizeof(char *));
    full[0] = (char *)"spec";
    memcpy(full + 1, argv, (size_t)(argc + 1) * sizeof(char *));
    fflush(stderr);
    int rc = cmd_spec(argc + 1, full);
    free(full);
    spec_t *spec = NULL;
    if (rc != 0)
        snprintf(errstr, size, "%s: cannot infer a spec (see the message above; or pass --spec)",
                 conf->data);
    else
        spec = spec_load(tmp, errstr, size);
    unlink(tmp);
    free(tmp);
    return spec;
}

/* ---- column checks and preprocessing ---- */

typedef struct colinfo {
    int col;
    bool categorical;
    bool field; /* a spec field (else derived) */
    spec_missing_t policy;
    size_t present, missing;
    bool constant;
    char first[128]; /* first value as text, for messages */
} colinfo_t;

static void value_text(const spec_value_t *v, char *buf, size_t size)
{
    if (v->kind == SPEC_V_STR)
        snprintf(buf, size, "%.100s", v->str);
    else if (v->kind == SPEC_V_NUM) {
        char b[32];
        fmt_double_rt(v->num, b);
        snprintf(buf, size, "%s", b);
    } else
        snprintf(buf, size, "(missing)");
}

static bool same_value(const spec_value_t *a, const spec_value_t *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == SPEC_V_STR)
        return !strcmp(a->str, b->str);
    return a->num == b->num;
}

typedef struct catcount {
    const char *s;
    size_t n;
} catcount_t;

static int by_count(const void *a, const void *b)
{
    const catcount_t *x = a, *y = b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    return strcmp(x->s, y->s);
}

/* Category counts of column c over the rows in idx (sorted by count desc). */
static catcount_t *count_categories(const dataset_t *ds, int c, const size_t *idx, size_t n,
                                    size_t *ncc)
{
    catcount_t *cc = NULL;
    size_t m = 0, cap = 0;
    hmap_t *pos = hmap_new(NULL);
    for (size_t k = 0; k < n; k++) {
        const spec_value_t *v = &ds->vals[idx[k] * ds->ncolumns + (size_t)c];
        if (v->kind != SPEC_V_STR)
            continue;
        uintptr_t p = (uintptr_t)hmap_get(pos, v->str);
        if (p) {
            cc[p - 1].n++;
            continue;
        }
        if (m == cap) {
            cap = cap ? cap * 2 : 16;
            cc = xrealloc(cc, cap * sizeof(catcount_t));
        }
        cc[m++] = (catcount_t){v->str, 1};
        hmap_put(pos, v->str, (void *)(uintptr_t)m);
    }
    hmap_destroy(pos);
    qsort(cc, m, sizeof(catcount_t), by_count);
    *ncc = m;
    return cc;
}

/* Sorted finite values of column c over idx (caller frees). */
static double *sorted_values(const dataset_t *ds, int c, const size_t *idx, size_t n, size_t *m)
{
    double *v = xmalloc((n ? n : 1) * sizeof(double));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const spec_value_t *x = &ds->vals[idx[i] * ds->ncolumns + (size_t)c];
        if (x->kind == SPEC_V_NUM && isfinite(x->num))
            v[k++] = x->num;
    }
    model_sort_doubles(v, k);
    *m = k;
    return v;
}

static double median_of(const double *v, size_t m)
{
    return m % 2 ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2;
}

static double mode_of(const double *v, size_t m)
{
    double best = v[0];
    size_t bestn = 0;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j < m && v[j] == v[i])
            j++;
        if (j - i > bestn) {
            bestn = j - i;
            best = v[i];
        }
        i = j;
    }
    return best;
}

/* The "inputs" entry of one column, fitted on the training rows. */
static json_t *fit_input(const dataset_t *ds, const colinfo_t *ci, const size_t *idx, size_t n,
                         bool logreg, json_t *slots)
{
    const char *name = ds->spec->columns[ci->col];
    json_t *in = json_object();
    json_object_set_new(in, "column", json_string(name));
    if (ci->categorical) {
        size_t ncc;
        catcount_t *cc = count_categories(ds, ci->col, idx, n, &ncc);
        if (ncc > MODEL_MAX_CATEGORIES)
            ncc = MODEL_MAX_CATEGORIES;
        json_t *cats = json_array();
        for (size_t k = 0; k < ncc; k++) {
            json_array_append_new(cats, json_string(cc[k].s));
            if (logreg)
                json_array_append_new(slots, json_sprintf("%s=%s", name, cc[k].s));
        }
        if (!logreg)
            json_array_append_new(slots, json_string(name));
        json_object_set_new(in, "kind", json_string("categorical"));
        json_object_set_new(in, "categories", cats);
        bool fill = ci->policy == SPEC_M_MODE && ncc > 0;
        json_object_set_new(in, "fill_category", fill ? json_string(cc[0].s) : json_null());
        json_object_set_new(in, "fill_rule", json_string(fill ? "mode" : "none"));
        free(cc);
        return in;
    }
    json_array_append_new(slots, json_string(name));
    size_t m;
    double *v = sorted_values(ds, ci->col, idx, n, &m);
    double mean = 0, var = 0;
    for (size_t k = 0; k < m; k++)
        mean += v[k];
    mean = m ? mean / (double)m : 0;
    for (size_t k = 0; k < m; k++)
        var += (v[k] - mean) * (v[k] - mean);
    double sd = m ? sqrt(var / (double)m) : 0;
    double fill = (double)NAN;
    const char *rule = "none";
    if (m) {
        switch (ci->policy) {
        case SPEC_M_MEDIAN: fill = median_of(v, m), rule = "median"; break;
        case SPEC_M_MODE: fill = mode_of(v, m), rule = "mode"; break;
        case SPEC_M_MEAN: fill = mean, rule = "mean"; break;
        default:
            if (logreg)
                fill = mean, rule = "mean";
            break;
        }
    } else if (logreg) {
        fill = 0, rule = "zero";
    }
    free(v);
    json_object_set_new(in, "kind", json_string("numeric"));
    json_object_set_new(in, "fill", isnan(fill) ? json_null() : json_real(fill));
    json_object_set_new(in, "fill_rule", json_string(rule));
    json_object_set_new(in, "mean", json_real(logreg ? mean : 0));
    json_object_set_new(in, "scale", json_real(logreg && sd > 0 ? sd : 1));
    return in;
}

/* ---- reference profile ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static json_t *profile_column(const dataset_t *ds, const colinfo_t *ci, const size_t *idx, size_t n,
                              bool sample, uint64_t *rng)
{
    json_t *p = json_object();
    const char *name = ds->spec->columns[ci->col];
    json_object_set_new(p, "column", json_string(name));
    json_object_set_new(p, "kind", json_string(ci->categorical ? "categorical" : "numeric"));
    size_t missing = 0;
    for (size_t k = 0; k < n; k++)
        missing += ds->vals[idx[k] * ds->ncolumns + (size_t)ci->col].kind == SPEC_V_MISSING;
    json_object_set_new(p, "count", json_integer((json_int_t)n));
    json_object_set_new(p, "missing", json_integer((json_int_t)missing));
    /* reservoir sample (algorithm R) over the rows in order */
    json_t *res = NULL;
    if (sample) {
        size_t cap = n < RESERVOIR_MAX ? n : RESERVOIR_MAX;
        size_t *pick = xmalloc((cap ? cap : 1) * sizeof(size_t));
        size_t seen = 0, have = 0;
        for (size_t k = 0; k < n; k++) {
            const spec_value_t *v = &ds->vals[idx[k] * ds->ncolumns + (size_t)ci->col];
            if (v->kind == SPEC_V_MISSING)
                continue;
            seen++;
            if (have < RESERVOIR_MAX) {
                pick[have++] = idx[k];
            } else {
                uint64_t j = rng_next(rng) % seen;
                if (j < RESERVOIR_MAX)
                    pick[j] = idx[k];
            }
        }
        res = json_array();
        for (size_t k = 0; k < have; k++) {
            const spec_value_t *v = &ds->vals[pick[k] * ds->ncolumns + (size_t)ci->col];
            json_array_append_new(res,
                                  v->kind == SPEC_V_STR ? json_string(v->str) : json_real(v->num));
        }
        free(pick);
    }
    if (ci->categorical) {
        size_t ncc;
        catcount_t *cc = count_categories(ds, ci->col, idx, n, &ncc);
        json_t *fr = json_object();
        for (size_t k = 0; k < ncc; k++)
            json_object_set_new(fr, cc[k].s, json_integer((json_int_t)cc[k].n));
        json_object_set_new(p, "frequencies", fr);
        free(cc);
    } else {
        size_t m;
        double *v = sorted_values(ds, ci->col, idx, n, &m);
        json_t *edges = json_array(), *counts = json_array();
        double e[PROFILE_BINS];
        size_t ne = 0;
        for (int k = 1; k < PROFILE_BINS && m; k++) {
            double x = v[(size_t)((double)k * (double)m / PROFILE_BINS)];
            if (ne == 0 || x > e[ne - 1])
                e[ne++] = x;
        }
        size_t cnt[PROFILE_BINS + 1] = {0};
        for (size_t k = 0; k < m; k++) {
            size_t b = 0;
            while (b < ne && e[b] <= v[k])
                b++;
            cnt[b]++;
        }
        for (size_t k = 0; k < ne; k++)
            json_array_append_new(edges, json_real(e[k]));
        for (size_t k = 0; m && k <= ne; k++)
            json_array_append_new(counts, json_integer((json_int_t)cnt[k]));
        json_object_set_new(p, "bin_edges", edges);
        json_object_set_new(p, "bin_counts", counts);
        json_object_set_new(p, "bin_rule", json_string("bin = number of edges <= value"));
        if (m) {
            json_object_set_new(p, "min", json_real(v[0]));
            json_object_set_new(p, "max", json_real(v[m - 1]));
        }
        free(v);
    }
    json_object_set_new(p, "sample", res ? res : json_null());
    return p;
}

/* ---- the command ---- */

/* Put @p prefix in front of the message in @p buf (truncating its end). */
static void prepend(char *buf, size_t size, const char *prefix)
{
    size_t lp = strlen(prefix), lb = strlen(buf);
    if (lp >= size)
        lp = size - 1;
    if (lp + lb >= size)
        lb = size - 1 - lp;
    memmove(buf + lp, buf, lb);
    memcpy(buf, prefix, lp);
    buf[lp + lb] = '\0';
}

/* The document's inputs and slots for one algorithm (fitted on the training
 * rows), a placeholder model, and the input vectors of both splits encoded
 * by model_encode() (the scorer's code). Returns the encoding model. */
static model_t *encode_design(json_t *doc, const dataset_t *ds, const colinfo_t *cols, size_t ncols,
                              const size_t *tr, size_t ntr, const size_t *va, size_t nva,
                              bool logreg, double **Xp, double **Xvp, size_t *pp, char *errstr,
                              size_t size)
{
    json_object_set_new(doc, "algo", json_string(logreg ? "logreg" : "gbdt"));
    json_t *inputs = json_array(), *slots = json_array();
    for (size_t k = 0; k < ncols; k++)
        json_array_append_new(inputs, fit_input(ds, &cols[k], tr, ntr, logreg, slots));
    json_object_set_new(doc, "inputs", inputs);
    json_object_set_new(doc, "slots", slots);
    size_t p = json_array_size(slots);
    if (logreg) {
        json_t *coef = json_array();
        for (size_t k = 0; k < p; k++)
            json_array_append_new(coef, json_real(0));
        json_object_set_new(doc, "logreg", json_pack("{s:f, s:o}", "intercept", 0.0, "coef", coef));
    } else {
        json_object_set_new(doc, "gbdt", json_pack("{s:f, s:[]}", "base_margin", 0.0, "trees"));
    }
    json_object_set_new(doc, "threshold", json_real(0.5));
    json_object_set_new(doc, "metrics", json_object());
    json_object_set_new(doc, "profile", json_object());
    json_object_set_new(doc, "lineage", json_object());
    model_t *m = model_from_json(doc, errstr, size);
    if (!m) {
        prepend(errstr, size, "internal: the preprocessing does not validate: ");
        return NULL;
    }
    double *X = xmalloc((ntr * p + 1) * sizeof(double));
    double *Xv = xmalloc((nva * p + 1) * sizeof(double));
    for (size_t i = 0; i < ntr; i++)
        model_encode(m, ds->vals + tr[i] * ds->ncolumns, X + i * p);
    for (size_t i = 0; i < nva; i++)
        model_encode(m, ds->vals + va[i] * ds->ncolumns, Xv + i * p);
    progress("%s design: %zu inputs in %zu slots", logreg ? "logreg" : "gbdt", ncols, p);
    *Xp = X;
    *Xvp = Xv;
    *pp = p;
    return m;
}

/* ---- --algo auto: a small grid, k-fold cross-validation on the training rows ---- */

#define CV_FOLDS 3

typedef struct cand {
    bool logreg;
    double c;
    int max_depth;
    double learning_rate;
    char label[96];
} cand_t;

/* Mean CV AUC of one candidate; the folds are fixed by the seed. */
static double cv_auc(const fit_conf_t *conf, const cand_t *cd, const model_t *m, const double *X,
                     size_t p, const int *y, size_t n, const int *fold, json_t *aucs)
{
    double sum = 0;
    for (int f = 0; f < CV_FOLDS; f++) {
        size_t nin = 0, nout = 0;
        for (size_t i = 0; i < n; i++)
            nin += fold[i] != f;
        nout = n - nin;
        double *Xi = xmalloc((nin * p + 1) * sizeof(double)),
               *Xo = xmalloc((nout * p + 1) * sizeof(double));
        int *yi = xmalloc((nin ? nin : 1) * sizeof(int)),
            *yo = xmalloc((nout ? nout : 1) * sizeof(int));
        size_t a = 0, b = 0;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] != f) {
                memcpy(Xi + a * p, X + i * p, p * sizeof(double));
                yi[a++] = y[i];
            } else {
                memcpy(Xo + b * p, X + i * p, p * sizeof(double));
                yo[b++] = y[i];
            }
        }
        double *s = xmalloc((nout ? nout : 1) * sizeof(double));
        char err[512];
        int rc;
        if (cd->logreg) {
            logreg_params_t lp;
            logreg_params_default(&lp);
            lp.C = cd->c;
            lp.threads = (int)conf->threads;
            double *coef = xmalloc((p ? p : 1) * sizeof(double)), b0 = 0;
            rc = logreg_fit(Xi, yi, nin, p, &lp, coef, &b0, NULL, err, sizeof(err));
            for (size_t i = 0; rc == 0 && i < nout; i++) {
                double z = b0;
                for (size_t k = 0; k < p; k++)
                    z += coef[k] * Xo[i * p + k];
                s[i] = z;
            }
            free(coef);
        } else {
            gbdt_params_t gp;
            gbdt_params_default(&gp);
            gp.n_trees = (int)conf->n_trees;
            gp.max_depth = cd->max_depth;
            gp.learning_rate = cd->learning_rate;
            gp.lambda = conf->lambda;
            gp.min_child_weight = conf->min_child_weight;
            gp.max_bins = (int)conf->max_bins;
            gp.early_stopping = (int)conf->early_stopping;
            gp.threads = (int)conf->threads;
            gp.seed = (uint64_t)conf->seed;
            size_t ninp;
            const model_input_t *ins = model_inputs(m, &ninp);
            bool *is_cat = xcalloc(p ? p : 1, sizeof(bool));
            size_t *ncats = xcalloc(p ? p : 1, sizeof(size_t));
            for (size_t k = 0; k < ninp; k++) {
                is_cat[ins[k].slot] = ins[k].categorical;
                ncats[ins[k].slot] = ins[k].ncats;
            }
            /* early stopping watches every 10th row of the fold's training
             * part, never the rows it is scored on */
            size_t nst = (nin + 9) / 10, nfit = nin - nst;
            double *Xf = xmalloc((nfit * p + 1) * sizeof(double)),
                   *Xs = xmalloc((nst * p + 1) * sizeof(double));
            int *yf = xmalloc((nfit + 1) * sizeof(int)), *ys = xmalloc((nst + 1) * sizeof(int));
            for (size_t i = 0, a2 = 0, b2 = 0; i < nin; i++) {
                if (i % 10 == 0) {
                    memcpy(Xs + b2 * p, Xi + i * p, p * sizeof(double));
                    ys[b2++] = yi[i];
                } else {
                    memcpy(Xf + a2 * p, Xi + i * p, p * sizeof(double));
                    yf[a2++] = yi[i];
                }
            }
            gbdt_data_t di = {nfit, p, Xf, yf}, dst = {nst, p, Xs, ys};
            gbdt_result_t gr;
            rc = gbdt_fit(&di, gp.early_stopping > 0 ? &dst : NULL, is_cat, ncats, &gp, &gr, err,
                          sizeof(err));
            free(Xf), free(Xs), free(yf), free(ys);
            for (size_t i = 0; rc == 0 && i < nout; i++)
                s[i] = gbdt_margin(&gr, Xo + i * p);
            if (rc == 0)
                gbdt_result_cleanup(&gr);
            free(is_cat);
            free(ncats);
        }
        double auc = rc == 0 ? model_auc(s, yo, nout) : (double)NAN;
        json_array_append_new(aucs, isfinite(auc) ? json_real(auc) : json_null());
        sum += auc;
        free(Xi), free(Xo), free(yi), free(yo), free(s);
    }
    return sum / CV_FOLDS;
}

static json_t *select_by_cv(const fit_conf_t *conf, const model_t *ml, const double *Xl, size_t pl,
                            const model_t *mg, const double *Xg, size_t pg, const int *y, size_t n,
                            cand_t *chosen)
{
    cand_t grid[] = {
        {.logreg = true, .c = 0.1},
        {.logreg = true, .c = 1.0},
        {.logreg = true, .c = 10.0},
        {.logreg = false, .max_depth = 3, .learning_rate = 0.1},
        {.logreg = false, .max_depth = 6, .learning_rate = 0.1},
    };
    /* stratified folds: each class dealt round-robin in a seeded order */
    int *fold = xmalloc((n ? n : 1) * sizeof(int));
    size_t *order = xmalloc((n ? n : 1) * sizeof(size_t));
    uint64_t rng = (uint64_t)conf->seed ^ 0xC0FFEEull;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(&rng) % i), t = order[i - 1];
        order[i - 1] = order[j], order[j] = t;
    }
    size_t dealt[2] = {0, 0};
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        fold[i] = (int)(dealt[y[i] != 0]++ % CV_FOLDS);
    }
    free(order);
    json_t *cands = json_array();
    double best = -1;
    size_t besti = 0;
    for (size_t g = 0; g < MLOPS_ARRAY_LEN(grid); g++) {
        cand_t *cd = &grid[g];
        json_t *params, *aucs = json_array();
        if (cd->logreg) {
            snprintf(cd->label, sizeof(cd->label), "logreg C=%g", cd->c);
            params = json_pack("{s:f}", "C", cd->c);
        } else {
            snprintf(cd->label, sizeof(cd->label), "gbdt depth=%d rate=%g", cd->max_depth,
                     cd->learning_rate);
            params = json_pack("{s:i, s:f, s:I}", "max_depth", cd->max_depth, "learning_rate",
                               cd->learning_rate, "n_trees", (json_int_t)conf->n_trees);
        }
        double mean = cd->logreg ? cv_auc(conf, cd, ml, Xl, pl, y, n, fold, aucs)
                                 : cv_auc(conf, cd, mg, Xg, pg, y, n, fold, aucs);
        progress("auto: %-24s CV AUC %.6f", cd->label, mean);
        json_array_append_new(cands, json_pack("{s:s, s:o, s:o, s:o}", "algo",
                                               cd->logreg ? "logreg" : "gbdt", "params", params,
                                               "cv_auc", aucs, "mean_auc",
                                               isfinite(mean) ? json_real(mean) : json_null()));
        if (isfinite(mean) && mean > best) {
            best = mean;
            besti = g;
        }
    }
    free(fold);
    if (best < 0) {
        json_decref(cands);
        return NULL;
    }
    *chosen = grid[besti];
    return json_pack("{s:s, s:i, s:o, s:I}", "method",
                     "stratified k-fold cross-validation on the training split, mean AUC", "folds",
                     CV_FOLDS, "candidates", cands, "chosen", (json_int_t)besti);
}

/* The AUC of another model/1 artifact on the held-out rows (@p va: data row
 * indices of @p data, labels from @p label), each row cleaned by that
 * model's own spec; rows its spec refuses are left out (and counted). */
/* Score the champion on the held-out rows @p va, taken from @p cd (the same
 * rows as the training table, cleaned by the champion's own spec). */
static int champion_auc(const model_t *cm, const dataset_t *cd, const size_t *va, size_t nva,
                        const int *label, double *auc, json_t **info, char *errstr, size_t size)
{
    double *x = xmalloc((model_nslots(cm) + 1) * sizeof(double)),
           *sc = xmalloc((nva + 1) * sizeof(double));
    int *yy = xmalloc((nva + 1) * sizeof(int));
    size_t m = 0, refused = 0;
    for (size_t i = 0; i < nva; i++) {
        size_t r = va[i];
        if (r >= cd->nrows || !cd->ok[r]) {
            refused++;
            continue;
        }
        model_encode(cm, cd->vals + r * cd->ncolumns, x);
        sc[m] = model_predict(cm, x);
        yy[m++] = label[r];
    }
    *auc = model_auc(sc, yy, m);
    free(x);
    free(sc);
    free(yy);
    if (!isfinite(*auc)) {
        snprintf(errstr, size,
                 "champion: no AUC on the held-out rows (%zu scored, %zu refused by its spec)", m,
                 refused);
        return -1;
    }
    if (!*info)
        *info = json_object();
    if (!json_object_get(*info, "name"))
        json_object_set_new(*info, "name",
                            json_string(json_string_value(json_object_get(model_doc(cm), "name"))));
    json_object_set_new(*info, "auc", json_real(*auc));
    json_object_set_new(*info, "rows", json_integer((json_int_t)m));
    json_object_set_new(*info, "rows_refused", json_integer((json_int_t)refused));
    return 0;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(errstr, sizeof(errstr), __VA_ARGS__);                                             \
        goto done;                                                                                 \
    } while (0)

int fit_conf_check(const fit_conf_t *conf, char *errstr, size_t size)
{
    if (strcmp(conf->algo, "logreg") && strcmp(conf->algo, "auto") && strcmp(conf->algo, "gbdt")) {
        snprintf(errstr, size, "--algo '%s': one of logreg, gbdt, auto", conf->algo);
        return -1;
    }
    if (strcmp(conf->class_weight, "balanced") && strcmp(conf->class_weight, "none")) {
        snprintf(errstr, size, "--class-weight '%s': one of none, balanced", conf->class_weight);
        return -1;
    }
    bool lossguide = !strcmp(conf->growth, "lossguide");
    if (!lossguide && strcmp(conf->growth, "depthwise")) {
        snprintf(errstr, size, "--growth '%s': one of depthwise, lossguide", conf->growth);
        return -1;
    }
    if (!lossguide && conf->max_depth < 1) {
        snprintf(errstr, size, "--max-depth 0 (no limit) needs --growth lossguide");
        return -1;
    }
    if (strcmp(conf->penalty, "l1") && strcmp(conf->penalty, "l2")) {
        snprintf(errstr, size, "--penalty '%s': one of l2, l1", conf->penalty);
        return -1;
    }
    return 0;
}

cfg_t *fit_cfg_new(fit_conf_t *conf)
{
    return cfg_new("mlops-trainer fit",
                   "--data train.csv --label COL --positive VALUE [--spec spec.json] "
                   "[--algo logreg|gbdt|auto] [--seed N] [--valid-fraction F] [--out model.json]",
                   fit_items, MLOPS_ARRAY_LEN(fit_items), conf, sizeof(*conf));
}

int fit_run(fit_conf_t *conf, fit_input_t *in, json_t **doc_out, bool *gates_ok_out, char *errout,
            size_t errout_size)
{
    char errstr[2048] = "";
    int rc = -1;
    const spec_t *spec = in->spec;
    const dataset_t *ds = in->ds;
    const char *what = in->what;
    const char *spec_source = in->spec_source;
    const char *label = conf->label ? conf->label : spec->label;
    const char *positive = conf->positive ? conf->positive : spec->positive;
    json_t *source = in->source, *champ_info = in->champion_info;
    in->source = NULL;
    in->champion_info = NULL;
    model_t *m = NULL;
    json_t *doc = NULL;
    colinfo_t *cols = NULL;
    size_t *tr = NULL, *va = NULL;
    double *X = NULL, *score = NULL;
    int *y = NULL, *yv = NULL;
    double *Xv = NULL, *sv = NULL;
    gbdt_result_t gres = {0};
    bool *stop = NULL;
    FILE *dump = NULL;
    quiet = conf->quiet;
    progress_fn = in->progress;
    progress_arg = in->progress_arg;
    t_start = in->t_start_us ? in->t_start_us : mono_us();
    if (!label || !positive)
        FAIL("%s: the spec has no label (and none was given)", spec_source);
    if (fit_conf_check(conf, errstr, sizeof(errstr)))
        goto done;
    bool logreg = !strcmp(conf->algo, "logreg");
    bool automatic = !strcmp(conf->algo, "auto");
    bool balanced = !strcmp(conf->class_weight, "balanced");
    bool lossguide = !strcmp(conf->growth, "lossguide");
    bool l1 = !strcmp(conf->penalty, "l1");
    double w_pos = 1, w_neg = 1;
    size_t n = ds->nrows;
    if (n == 0)
        FAIL("%s: no data rows after the header", what);
    size_t npos = 0;
    for (size_t i = 0; i < n; i++)
        npos += ds->label[i] == 1;
    if (npos == 0)
        FAIL("%s: column '%s': the positive class '%s' never occurs (every row is '%s'): one "
             "class only",
             what, label, positive, ds->negative ? ds->negative : "?");
    if (npos == n)
        FAIL("%s: column '%s': every row is the positive class '%s': one class only", what, label,
             positive);
    progress("%s: %zu rows, %zu positive (%.2f%%)", what, n, npos,
             100.0 * (double)npos / (double)n);

    /* 3. the inputs: every field but timestamps, and every derived column */
    cols = xcalloc(spec->ncolumns, sizeof(colinfo_t));
    size_t ncols = 0;
    for (size_t c = 0; c < spec->ncolumns; c++) {
        colinfo_t ci = {.col = (int)c, .policy = SPEC_M_KEEP};
        ci.field = c < spec->nfields;
        if (ci.field) {
            const spec_field_t *sf = &spec->fields[c];
            if (sf->type == SPEC_T_TIMESTAMP) {
                progress("column '%s': timestamp, not an input (use time_part features)", sf->name);
                continue;
            }
            if (!strcmp(sf->name, label))
                continue;
            ci.categorical = sf->type == SPEC_T_CATEGORICAL;
            ci.policy = sf->missing;
        }
        const spec_value_t *first = NULL;
        ci.constant = true;
        for (size_t i = 0; i < n; i++) {
            const spec_value_t *v = &ds->vals[i * ds->ncolumns + c];
            if (v->kind == SPEC_V_MISSING) {
                ci.missing++;
                continue;
            }
            ci.present++;
            if (!first)
                first = v;
            else if (ci.constant && !same_value(first, v))
                ci.constant = false;
        }
        if (!ci.present) {
            if (ci.field)
                FAIL("%s: column '%s': every value is missing (lines 2-%zu): nothing to learn "
                     "from; drop the column from the spec",
                     what, spec->columns[c], ds->line[n - 1]);
            progress("derived column '%s': every value is missing, not an input", spec->columns[c]);
            continue;
        }
        if (ci.constant && n > 1) {
            value_text(first, ci.first, sizeof(ci.first));
            if (ci.field)
                FAIL("%s: column '%s': constant column: every value is '%s' (lines 2-%zu): "
                     "nothing to learn from; drop the column from the spec",
                     what, spec->columns[c], ci.first, ds->line[n - 1]);
            progress("derived column '%s': constant '%s', not an input", spec->columns[c],
                     ci.first);
            continue;
        }
        cols[ncols++] = ci;
    }
    if (!ncols)
        FAIL("%s: no input column left", what);

    /* 4. stratified split, seeded */
    uint64_t rng = (uint64_t)conf->seed;
    size_t *pos = xmalloc(n * sizeof(size_t)), *neg = xmalloc(n * sizeof(size_t));
    size_t np = 0, nn = 0;
    for (size_t i = 0; i < n; i++) {
        if (ds->label[i])
            pos[np++] = i;
        else
            neg[nn++] = i;
    }
    for (size_t i = np; i > 1; i--) {
        size_t j = (size_t)(rng_next(&rng) % i), t = pos[i - 1];
        pos[i - 1] = pos[j], pos[j] = t;
    }
    for (size_t i = nn; i > 1; i--) {
        size_t j = (size_t)(rng_next(&rng) % i), t = neg[i - 1];
        neg[i - 1] = neg[j], neg[j] = t;
    }
    size_t vp = (size_t)llround(conf->valid_fraction * (double)np),
           vn = (size_t)llround(conf->valid_fraction * (double)nn);
    bool *is_valid = xcalloc(n, sizeof(bool));
    for (size_t i = 0; i < vp; i++)
        is_valid[pos[i]] = true;
    for (size_t i = 0; i < vn; i++)
        is_valid[neg[i]] = true;
    free(pos);
    free(neg);
    size_t ntr = 0, nva = 0;
    tr = xmalloc(n * sizeof(size_t));
    va = xmalloc(n * sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        if (is_valid[i])
            va[nva++] = i;
        else
            tr[ntr++] = i;
    }
    free(is_valid);
    if (vp == 0 || vn == 0 || vp == np || vn == nn)
        FAIL("%s: %zu positive and %zu other rows are too few for a held-out split of %.2f with "
             "both classes on each side",
             what, np, nn, conf->valid_fraction);
    progress("split (seed %lld): %zu training rows, %zu held out", (long long)conf->seed, ntr, nva);

    /* 5. the document with the fitted preprocessing (model still empty) */
    doc = json_object();
    json_object_set_new(doc, "schema", json_string(MODEL_SCHEMA));
    json_object_set_new(doc, "name", json_string(conf->name ? conf->name : spec->name));
    char ts[32];
    fmt_rfc3339(wall_us(), ts, sizeof(ts));
    json_object_set_new(doc, "created_at", json_string(ts));
    json_object_set_new(doc, "spec", json_deep_copy(spec->doc));
    json_object_set_new(doc, "spec_hash", json_string(spec->hash));
    json_object_set_new(doc, "label",
                        json_pack("{s:s, s:s, s:s?}", "field", label, "positive", positive,
                                  "negative", ds->negative));
    y = xmalloc(ntr * sizeof(int));
    yv = xmalloc(nva * sizeof(int));
    for (size_t i = 0; i < ntr; i++)
        y[i] = ds->label[tr[i]];
    for (size_t i = 0; i < nva; i++)
        yv[i] = ds->label[va[i]];
    json_t *selection = NULL;
    size_t p;
    if (automatic) {
        /* both designs, a small grid, k-fold CV on the training rows */
        json_t *dl = json_deep_copy(doc), *dg = json_deep_copy(doc);
        double *Xl = NULL, *Xlv = NULL, *Xg = NULL, *Xgv = NULL;
        size_t pl, pg;
        model_t *ml = encode_design(dl, ds, cols, ncols, tr, ntr, va, nva, true, &Xl, &Xlv, &pl,
                                    errstr, sizeof(errstr));
        model_t *mg = ml ? encode_design(dg, ds, cols, ncols, tr, ntr, va, nva, false, &Xg, &Xgv,
                                         &pg, errstr, sizeof(errstr))
                         : NULL;
        cand_t chosen;
        if (ml && mg)
            selection = select_by_cv(conf, ml, Xl, pl, mg, Xg, pg, y, ntr, &chosen);
        if (!selection) {
            if (ml && mg)
                snprintf(errstr, sizeof(errstr), "--algo auto: cross-validation failed");
            model_destroy(ml);
            model_destroy(mg);
            json_decref(dl);
            json_decref(dg);
            free(Xl), free(Xlv), free(Xg), free(Xgv);
            goto done;
        }
        logreg = chosen.logreg;
        if (logreg) {
            conf->c = chosen.c;
        } else {
            conf->max_depth = chosen.max_depth;
            conf->learning_rate = chosen.learning_rate;
        }
        json_decref(doc);
        doc = logreg ? dl : dg;
        json_decref(logreg ? dg : dl);
        m = logreg ? ml : mg;
        model_destroy(logreg ? mg : ml);
        X = logreg ? Xl : Xg;
        Xv = logreg ? Xlv : Xgv;
        free(logreg ? Xg : Xl);
        free(logreg ? Xgv : Xlv);
        p = logreg ? pl : pg;
        json_object_set_new(doc, "selection", selection);
        progress("auto: chose %s", chosen.label);
    } else {
        m = encode_design(doc, ds, cols, ncols, tr, ntr, va, nva, logreg, &X, &Xv, &p, errstr,
                          sizeof(errstr));
        if (!m)
            goto done;
    }
    json_t *slots = json_object_get(doc, "slots");
    int64_t t_encoded = mono_us();
    /* The validation split, carved (stratified, seeded) out of the training
     * split: the decision threshold is chosen on it, and GBDT's early
     * stopping watches it; the model is fitted on the rest. So the held-out
     * metrics stay unbiased. (The preprocessing is fitted on the whole
     * training split, validation rows included.) */
    stop = xcalloc(ntr + 1, sizeof(bool));
    size_t nstop = 0;
    {
        uint64_t srng = (uint64_t)conf->seed ^ 0x51D0ull;
        for (int cls = 0; cls < 2; cls++) {
            size_t *idx = xmalloc((ntr + 1) * sizeof(size_t)), m2 = 0;
            for (size_t i = 0; i < ntr; i++)
                if ((y[i] != 0) == cls)
                    idx[m2++] = i;
            for (size_t i = m2; i > 1; i--) {
                size_t j = (size_t)(rng_next(&srng) % i), t = idx[i - 1];
                idx[i - 1] = idx[j], idx[j] = t;
            }
            size_t k = (size_t)llround(STOP_FRACTION * (double)m2);
            if (k == 0 && m2 > 1)
                k = 1;
            for (size_t i = 0; i < k; i++)
                stop[idx[i]] = true;
            nstop += k;
            free(idx);
        }
    }
    if (conf->dump_matrix) {
        dump = fopen(conf->dump_matrix, "w");
        if (!dump)
            FAIL("%s: cannot write", conf->dump_matrix);
        fprintf(dump, "split,row,label");
        for (size_t k = 0; k < p; k++) {
            fputc(',', dump);
            const char *s = json_string_value(json_array_get(slots, k));
            csvf_write_field(dump, s, strlen(s));
        }
        fputc('\n', dump);
        for (int part = 0; part < 2; part++) {
            size_t cnt = part ? nva : ntr;
            const double *M = part ? Xv : X;
            const int *Y = part ? yv : y;
            const size_t *R = part ? va : tr;
            for (size_t i = 0; i < cnt; i++) {
                fprintf(dump, "%s,%zu,%d", part ? "valid" : stop[i] ? "stop" : "train", R[i], Y[i]);
                for (size_t k = 0; k < p; k++) {
                    double x = M[i * p + k];
                    if (isnan(x))
                        fputs(",", dump);
                    else
                        fprintf(dump, ",%.17g", x);
                }
                fputc('\n', dump);
            }
        }
        if (fclose(dump)) {
            dump = NULL;
            FAIL("%s: write failed", conf->dump_matrix);
        }
        dump = NULL;
    }

    if (conf->dump_matrix)
        t_encoded = mono_us(); /* the dump is not part of the fit */

    /* 7. fit */
    json_t *params = json_object();
    json_object_set_new(params, "seed", json_integer(conf->seed));
    json_object_set_new(params, "valid_fraction", json_real(conf->valid_fraction));
    json_object_set_new(params, "threads", json_integer(conf->threads));
    /* balanced class weights from the rows the model is fitted on */
    size_t ntrpos = 0, nfitall = 0, nfitpos = 0;
    for (size_t i = 0; i < ntr; i++) {
        ntrpos += y[i] != 0;
        if (!stop[i]) {
            nfitpos += y[i] != 0;
            nfitall++;
        }
    }
    if (balanced) {
        w_pos = (double)nfitall / (2.0 * (double)nfitpos);
        w_neg = (double)nfitall / (2.0 * (double)(nfitall - nfitpos));
    }
    if (logreg) {
        logreg_params_t lp;
        logreg_params_default(&lp);
        lp.C = conf->c;
        lp.w_pos = w_pos;
        lp.w_neg = w_neg;
        lp.threads = (int)conf->threads;
        lp.l1 = l1;
        double *coef = xmalloc((p ? p : 1) * sizeof(double)), b0;
        logreg_info_t info;
        progress("logreg: %s, C=%g, class weights %s", l1 ? "L1, proximal Newton" : "L2, Newton",
                 lp.C, conf->class_weight);
        /* the fitting rows: the training split without the validation rows */
        size_t nfit = 0;
        double *Xf = xmalloc(((ntr - nstop) * p + 1) * sizeof(double));
        int *yf = xmalloc((ntr - nstop + 1) * sizeof(int));
        for (size_t i = 0; i < ntr; i++)
            if (!stop[i]) {
                memcpy(Xf + nfit * p, X + i * p, p * sizeof(double));
                yf[nfit++] = y[i];
            }
        progress("logreg: %zu training rows fit, %zu for the threshold", nfit, nstop);
        int lrc = logreg_fit(Xf, yf, nfit, p, &lp, coef, &b0, &info, errstr, sizeof(errstr));
        free(Xf), free(yf);
        if (lrc) {
            free(coef);
            json_decref(params);
            goto done;
        }
        progress("logreg: %d iterations, max |gradient| %.3g", info.iterations, info.grad_max);
        json_t *jc = json_array();
        for (size_t k = 0; k < p; k++)
            json_array_append_new(jc, json_real(coef[k]));
        free(coef);
        json_object_set_new(doc, "logreg",
                            json_pack("{s:f, s:o, s:f, s:s, s:i, s:f}", "intercept", b0, "coef", jc,
                                      "C", lp.C, "penalty", l1 ? "l1" : "l2", "iterations",
                                      info.iterations, "grad_max", info.grad_max));
        json_object_set_new(params, "C", json_real(lp.C));
        json_object_set_new(params, "penalty", json_string(l1 ? "l1" : "l2"));
        json_object_set_new(params, "class_weight", json_string(conf->class_weight));
        json_object_set_new(params, "w_pos", json_real(w_pos));
        json_object_set_new(params, "w_neg", json_real(w_neg));
        json_object_set_new(params, "tol", json_real(lp.tol));
    } else {
        gbdt_params_t gp;
        gbdt_params_default(&gp);
        gp.n_trees = (int)conf->n_trees;
        gp.max_depth = (int)conf->max_depth;
        gp.max_leaves = lossguide ? (int)conf->max_leaves : 0;
        gp.learning_rate = conf->learning_rate;
        gp.lambda = conf->lambda;
        gp.gamma = conf->gamma;
        gp.min_child_weight = conf->min_child_weight;
        gp.subsample = conf->subsample;
        gp.colsample = conf->colsample;
        gp.max_bins = (int)conf->max_bins;
        gp.early_stopping = (int)conf->early_stopping;
        gp.threads = (int)conf->threads;
        gp.seed = (uint64_t)conf->seed;
        gp.progress = gbdt_progress;
        size_t ninp;
        const model_input_t *ins = model_inputs(m, &ninp);
        bool *is_cat = xcalloc(p, sizeof(bool));
        size_t *ncats = xcalloc(p, sizeof(size_t));
        for (size_t k = 0; k < ninp; k++) {
            is_cat[ins[k].slot] = ins[k].categorical;
            ncats[ins[k].slot] = ins[k].ncats;
        }
        /* the fitting rows and the early-stopping rows (none without early stopping) */
        size_t nfit = ntr - nstop;
        double *Xf = xmalloc((nfit * p + 1) * sizeof(double)),
               *Xs = xmalloc((nstop * p + 1) * sizeof(double));
        int *yf = xmalloc((nfit + 1) * sizeof(int)), *ys = xmalloc((nstop + 1) * sizeof(int));
        for (size_t i = 0, a = 0, b = 0; i < ntr; i++) {
            if (stop[i]) {
                memcpy(Xs + b * p, X + i * p, p * sizeof(double));
                ys[b++] = y[i];
            } else {
                memcpy(Xf + a * p, X + i * p, p * sizeof(double));
                yf[a++] = y[i];
            }
        }
        gbdt_data_t dtr = {nfit, p, Xf, yf}, dva = {nstop, p, Xs, ys};
        progress("gbdt: %zu training rows fit, %zu for the threshold%s", nfit, nstop,
                 gp.early_stopping > 0 ? " and early stopping" : "");
        progress("gbdt: up to %d trees, depth %d, rate %g, lambda %g, %d bins, %d threads",
                 gp.n_trees, gp.max_depth, gp.learning_rate, gp.lambda, gp.max_bins, gp.threads);
        int frc = gbdt_fit(&dtr, nstop && gp.early_stopping > 0 ? &dva : NULL, is_cat, ncats, &gp,
                           &gres, errstr, sizeof(errstr));
        free(Xf), free(Xs), free(yf), free(ys);
        free(is_cat);
        free(ncats);
        if (frc) {
            json_decref(params);
            goto done;
        }
        progress("gbdt: %zu trees kept%s", gres.ntrees,
                 nstop ? " (best log loss on the early-stopping rows)" : "");
        json_t *trees = json_array();
        for (size_t k = 0; k < gres.ntrees; k++)
            json_array_append_new(trees, model_tree_to_json(&gres.trees[k]));
        json_object_set_new(doc, "gbdt",
                            json_pack("{s:f, s:o, s:i, s:s}", "base_margin", gres.base_margin,
                                      "trees", trees, "best_round", gres.best_round, "split_rule",
                                      "x < threshold goes left; NaN follows default_left"));
        json_object_set_new(params, "n_trees", json_integer(gp.n_trees));
        json_object_set_new(params, "max_depth", json_integer(gp.max_depth));
        json_object_set_new(params, "learning_rate", json_real(gp.learning_rate));
        json_object_set_new(params, "lambda", json_real(gp.lambda));
        json_object_set_new(params, "gamma", json_real(gp.gamma));
        json_object_set_new(params, "min_child_weight", json_real(gp.min_child_weight));
        json_object_set_new(params, "subsample", json_real(gp.subsample));
        json_object_set_new(params, "colsample", json_real(gp.colsample));
        json_object_set_new(params, "max_bins", json_integer(gp.max_bins));
        json_object_set_new(params, "early_stopping", json_integer(gp.early_stopping));
        json_object_set_new(params, "early_stopping_rows", json_integer((json_int_t)nstop));
        json_object_set_new(params, "growth", json_string(lossguide ? "lossguide" : "depthwise"));
        if (lossguide)
            json_object_set_new(params, "max_leaves", json_integer(conf->max_leaves));
    }
    int64_t t_fitted = mono_us();
    model_destroy(m);
    m = model_from_json(doc, errstr, sizeof(errstr));
    if (!m) {
        json_decref(params);
        prepend(errstr, sizeof(errstr), "internal: the fitted model does not validate: ");
        goto done;
    }

    /* 8. the threshold on the validation rows, metrics on the held-out rows,
     * by the scorer's code */
    score = xmalloc(ntr * sizeof(double));
    for (size_t i = 0; i < ntr; i++)
        score[i] = model_predict(m, X + i * p);
    double thr;
    {
        double *ss = xmalloc((nstop + 1) * sizeof(double));
        int *ys = xmalloc((nstop + 1) * sizeof(int));
        size_t k = 0;
        for (size_t i = 0; i < ntr; i++)
            if (stop[i]) {
                ss[k] = score[i];
                ys[k++] = y[i];
            }
        thr = model_best_f1_threshold(ss, ys, k);
        free(ss), free(ys);
    }
    sv = xmalloc(nva * sizeof(double));
    for (size_t i = 0; i < nva; i++)
        sv[i] = model_predict(m, Xv + i * p);
    model_metrics_t mv, mt;
    model_metrics(sv, yv, nva, thr, &mv);
    model_metrics(score, y, ntr, thr, &mt);
    json_object_set_new(doc, "threshold", json_real(thr));
    json_object_set_new(doc, "threshold_rule", json_string("max F1 on the validation split"));
    json_t *jm = model_metrics_json(&mv);
    json_object_set_new(jm, "split", json_string("held_out"));
    json_object_set_new(jm, "train", model_metrics_json(&mt));
    json_object_set_new(jm, "rows_total", json_integer((json_int_t)n));
    json_object_set_new(jm, "rows_train", json_integer((json_int_t)ntr));
    json_object_set_new(jm, "rows_held_out", json_integer((json_int_t)nva));
    json_object_set_new(jm, "rows_validation", json_integer((json_int_t)nstop));
    json_object_set_new(doc, "metrics", jm);
    progress("held out: AUC %.6f, log loss %.6f, F1 %.4f at threshold %.4f", mv.auc, mv.log_loss,
             mv.f1, thr);

    /* 9. reference profile (training rows) */
    json_t *prof = json_object(), *pin = json_array();
    uint64_t prng = (uint64_t)conf->seed ^ 0x5DEECE66Dull;
    for (size_t k = 0; k < ncols; k++)
        json_array_append_new(pin,
                              profile_column(ds, &cols[k], tr, ntr, conf->profile_sample, &prng));
    json_object_set_new(prof, "inputs", pin);
    size_t hist[SCORE_BINS] = {0};
    for (size_t i = 0; i < ntr; i++) {
        int b = (int)(score[i] * SCORE_BINS);
        hist[b < 0 ? 0 : b >= SCORE_BINS ? SCORE_BINS - 1 : b]++;
    }
    json_t *hc = json_array(), *he = json_array();
    for (int b = 0; b <= SCORE_BINS; b++)
        json_array_append_new(he, json_real((double)b / SCORE_BINS));
    for (int b = 0; b < SCORE_BINS; b++)
        json_array_append_new(hc, json_integer((json_int_t)hist[b]));
    json_object_set_new(prof, "scores", json_pack("{s:o, s:o}", "edges", he, "counts", hc));
    json_object_set_new(prof, "label_rate", json_real((double)ntrpos / (double)ntr));
    json_object_set_new(prof, "rows", json_integer((json_int_t)ntr));
    json_object_set_new(prof, "sample_enabled", json_boolean(conf->profile_sample));
    json_object_set_new(prof, "sample_max", json_integer(RESERVOIR_MAX));
    json_object_set_new(doc, "profile", prof);

    /* 10. quality gates, recorded in the artifact (the registry refuses to
     * promote a version whose gates failed). The champion is scored on the
     * same held-out rows, cleaned by its own embedded spec. */
    double champ_auc = (double)NAN;
    bool compared = false;
    if (in->champion && in->champion_ds) {
        if (champion_auc(in->champion, in->champion_ds, va, nva, ds->label, &champ_auc, &champ_info,
                         errstr, sizeof(errstr))) {
            json_decref(params);
            goto done;
        }
        compared = true;
        progress("champion: held-out AUC %.6f (ours %.6f)", champ_auc, mv.auc);
    } else if (in->champion_note) {
        progress("champion: %s", in->champion_note);
    }
    json_t *gates = json_array();
    bool gates_ok = true;
    struct {
        const char *name;
        double limit, value;
        bool on, pass;
    } gt[] = {
        {"min_auc", conf->min_auc, mv.auc, conf->min_auc > 0, mv.auc >= conf->min_auc},
        {"max_log_loss", conf->max_log_loss, mv.log_loss, conf->max_log_loss > 0,
         mv.log_loss <= conf->max_log_loss},
        {"min_rows", (double)conf->min_rows, (double)ntr, conf->min_rows > 0,
         (double)ntr >= (double)conf->min_rows},
        {"max_auc_drop", conf->max_auc_drop, champ_auc - mv.auc,
         conf->max_auc_drop >= 0 && compared, champ_auc - mv.auc <= conf->max_auc_drop},
    };
    for (size_t k = 0; k < MLOPS_ARRAY_LEN(gt); k++) {
        if (!gt[k].on)
            continue;
        gates_ok &= gt[k].pass;
        json_array_append_new(
            gates, json_pack("{s:s, s:f, s:o, s:b}", "gate", gt[k].name, "limit", gt[k].limit,
                             "value", isfinite(gt[k].value) ? json_real(gt[k].value) : json_null(),
                             "passed", gt[k].pass));
        if (!gt[k].pass)
            progress("gate %s FAILED: %g (limit %g)", gt[k].name, gt[k].value, gt[k].limit);
    }
    if (conf->max_auc_drop >= 0 && !compared)
        json_array_append_new(
            gates,
            json_pack("{s:s, s:f, s:n, s:b, s:s}", "gate", "max_auc_drop", "limit",
                      conf->max_auc_drop, "value", "passed", true, "note",
                      in->champion_note ? in->champion_note : "no champion to compare with"));
    json_t *jg = json_pack("{s:b, s:o, s:s}", "passed", gates_ok, "results", gates, "evaluated_on",
                           "held_out");
    if (champ_info)
        json_object_set_new(jg, "champion", champ_info);
    champ_info = NULL;
    json_object_set_new(doc, "gates", jg);

    /* 11. lineage */
    int64_t t_end = mono_us();
    json_t *lin = json_object();
    json_object_set_new(lin, "source", source);
    source = NULL;
    json_object_set_new(lin, "spec_hash", json_string(spec->hash));
    json_object_set_new(lin, "spec_source", json_string(spec_source));
    json_object_set_new(lin, "params", params);
    json_object_set_new(lin, "seed", json_integer(conf->seed));
    json_object_set_new(lin, "trainer_version", json_string(TRAINER_VERSION));
    json_object_set_new(
        lin, "timings_ms",
        json_pack("{s:f, s:f, s:f, s:f}", "load_encode", (double)(t_encoded - t_start) / 1e3, "fit",
                  (double)(t_fitted - t_encoded) / 1e3, "evaluate_profile",
                  (double)(t_end - t_fitted) / 1e3, "total", (double)(t_end - t_start) / 1e3));
    json_object_set_new(doc, "lineage", lin);

    /* 12. validate the whole document again, then write it atomically */
    model_destroy(m);
    m = model_from_json(doc, errstr, sizeof(errstr));
    if (!m) {
        prepend(errstr, sizeof(errstr), "internal: the artifact does not validate: ");
        goto done;
    }
    *doc_out = doc;
    doc = NULL;
    *gates_ok_out = gates_ok;
    progress("artifact ready (%s, %zu slots)%s", logreg ? "logreg" : "gbdt", p,
             gates_ok ? "" : "; quality gates FAILED");
    rc = 0;
done:
    if (rc)
        snprintf(errout, errout_size, "%s", errstr[0] ? errstr : "failed");
    if (dump)
        fclose(dump);
    gbdt_result_cleanup(&gres);
    free(X);
    free(Xv);
    free(y);
    free(yv);
    free(sv);
    free(score);
    free(tr);
    free(va);
    free(stop);
    free(cols);
    model_destroy(m);
    json_decref(doc);
    json_decref(source);
    json_decref(champ_info);
    return rc;
}

int trainer_fit_main(int argc, char **argv)
{
    fit_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[2048] = "";
    spec_t *spec = NULL;
    dataset_t *ds = NULL, *cds = NULL;
    model_t *cm = NULL;
    json_t *doc = NULL;
    fit_input_t in = {0};
    t_start = mono_us();
    cfg_t *cfg = fit_cfg_new(&conf);
    cfg_result_t r = cfg_init(cfg, argc, argv, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        if (r == CFG_EXIT)
            errstr[0] = '\0';
        goto done;
    }
    quiet = conf.quiet;
    code = MLOPS_EXIT_USAGE;
    if (fit_conf_check(&conf, errstr, sizeof(errstr)))
        goto done;
    if (!conf.data)
        FAIL("--data train.csv is required");
    if (conf.max_auc_drop >= 0 && !conf.champion)
        FAIL("--max-auc-drop needs --champion MODEL.json");
    if (conf.positive && !conf.label && !conf.spec)
        FAIL("--positive needs --label (or a spec with a label)");
    if (!conf.spec && !conf.label)
        FAIL("give --label COL (and --positive VALUE), or a --spec with a label");

    /* 1. the spec */
    const char *spec_source;
    if (conf.spec) {
        spec = spec_load(conf.spec, errstr, sizeof(errstr));
        spec_source = conf.spec;
    } else {
        spec = infer_spec(&conf, conf.label, conf.positive, errstr, sizeof(errstr));
        spec_source = "inferred";
    }
    if (!spec)
        goto done;
    const char *label = conf.label ? conf.label : spec->label;
    const char *positive = conf.positive ? conf.positive : spec->positive;
    if (!label)
        FAIL("%s: the spec has no label: pass --label COL --positive VALUE", spec_source);
    if (!positive)
        FAIL("--label '%s' needs --positive VALUE", label);
    code = MLOPS_EXIT_FAILURE;
    progress("spec '%s' (%s, hash %.12s): %zu fields, %zu columns", spec->name, spec_source,
             spec->hash, spec->nfields, spec->ncolumns);

    /* 2. the data, cleaned by the spec */
    dataset_opts_t dopts = {
        .label = label, .positive = positive, .need_label = true, .strict = true};
    ds = dataset_load_csv(spec, conf.data, &dopts, errstr, sizeof(errstr));
    if (!ds)
        goto done;
    char sha[65];
    if (dataset_file_sha256(conf.data, sha, errstr, sizeof(errstr)))
        goto done;
    in.source = json_pack("{s:s, s:s, s:s, s:I}", "kind", "file", "path", conf.data, "sha256", sha,
                          "rows", (json_int_t)ds->nrows);

    /* the champion, if any: the same file cleaned by its own embedded spec */
    if (conf.champion) {
        char e[1024];
        cm = model_load(conf.champion, e, sizeof(e));
        if (!cm)
            FAIL("--champion: %s", e);
        const json_t *lab = json_object_get(model_doc(cm), "label");
        dataset_opts_t o = {.label = json_string_value(json_object_get(lab, "field")),
                            .positive = json_string_value(json_object_get(lab, "positive")),
                            .strict = false};
        cds = dataset_load_csv(model_spec(cm), conf.data, &o, e, sizeof(e));
        if (!cds)
            FAIL("--champion %s: %s", conf.champion, e);
        char csha[65] = "";
        if (dataset_file_sha256(conf.champion, csha, e, sizeof(e)))
            csha[0] = '\0';
        in.champion_info = json_pack("{s:s, s:s}", "path", conf.champion, "sha256", csha);
        in.champion = cm;
        in.champion_ds = cds;
    }
    in.spec = spec;
    in.spec_source = spec_source;
    in.ds = ds;
    in.what = conf.data;
    in.t_start_us = t_start;
    bool gates_ok = false;
    if (fit_run(&conf, &in, &doc, &gates_ok, errstr, sizeof(errstr)))
        goto done;
    if (model_write_file(doc, conf.out, errstr, sizeof(errstr)))
        goto done;
    progress("wrote %s%s", conf.out,
             gates_ok ? "" : "; quality gates FAILED (recorded in the artifact)");
    code = gates_ok || !conf.strict_gates ? MLOPS_EXIT_OK : MLOPS_EXIT_GATES;
    errstr[0] = '\0';
done:
    if (code != MLOPS_EXIT_OK && errstr[0])
        fprintf(stderr, "mlops-trainer fit: %s\n", errstr);
    json_decref(in.source);
    json_decref(in.champion_info);
    json_decref(doc);
    dataset_destroy(cds);
    model_destroy(cm);
    dataset_destroy(ds);
    spec_destroy(spec);
    cfg_destroy(cfg);
    return code;
}
