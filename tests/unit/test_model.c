/* model.c, logreg.c, gbdt.c, dataset.c internals. Each numeric result is
 * checked against an independent computation in the test itself (pairwise
 * AUC, a brute-force F1 sweep, the gradient of the objective, an exhaustive
 * best stump); agreement with scikit-learn and XGBoost on real data is
 * tests/trainer/test_trainer.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "gbdt.h"
#include "logreg.h"
#include "model.h"
#include "records.h"
#include "testutil.h"

static uint64_t rng_state = 12345;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}

/* ---- metrics ---- */

Test(metrics, auc_equals_pairwise_count_with_ties)
{
    enum { N = 300 };
    double s[N];
    int y[N];
    for (int i = 0; i < N; i++) {
        s[i] = floor(urand() * 20) / 20; /* many ties */
        y[i] = urand() < 0.3 + 0.5 * s[i];
    }
    double pairs = 0, np = 0, nn = 0;
    for (int i = 0; i < N; i++) {
        np += y[i];
        nn += !y[i];
        for (int j = 0; j < N; j++)
            if (y[i] && !y[j])
                pairs += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
    }
    cr_assert_float_eq(model_auc(s, y, N), pairs / (np * nn), 1e-12);
    int one[3] = {1, 1, 1};
    cr_assert(isnan(model_auc(s, one, 3)));
}

Test(metrics, threshold_maximises_f1_over_every_cut)
{
    enum { N = 200 };
    double s[N];
    int y[N];
    for (int i = 0; i < N; i++) {
        s[i] = urand();
        y[i] = urand() < s[i] * s[i];
    }
    double t = model_best_f1_threshold(s, y, N);
    model_metrics_t best;
    model_metrics(s, y, N, t, &best);
    for (int k = 0; k < N; k++) {
        model_metrics_t mm;
        model_metrics(s, y, N, s[k], &mm);
        cr_assert(mm.f1 <= best.f1 + 1e-15, "cut %g has F1 %g > %g", s[k], mm.f1, best.f1);
    }
    /* the counts add up and the rates follow from them */
    cr_assert_eq(best.tp + best.fp + best.tn + best.fn, N);
    cr_assert_float_eq(best.precision, (double)best.tp / (double)(best.tp + best.fp), 1e-15);
    double ll = 0;
    for (int i = 0; i < N; i++)
        ll -= y[i] ? log(s[i]) : log(1 - s[i]);
    cr_assert_float_eq(best.log_loss, ll / N, 1e-12);
}

/* ---- logistic regression ---- */

static void make_lr_data(size_t n, size_t p, double *X, int *y)
{
    for (size_t i = 0; i < n; i++) {
        double z = -0.5;
        for (size_t k = 0; k < p; k++) {
            X[i * p + k] = urand() * 2 - 1;
            z += (double)(k + 1) * 0.7 * X[i * p + k] * (k % 2 ? -1 : 1);
        }
        y[i] = urand() < 1 / (1 + exp(-z));
    }
}

Test(logreg, gradient_of_the_objective_is_zero_at_the_solution)
{
    enum { N = 2000, P = 5 };
    static double X[N * P];
    static int y[N];
    make_lr_data(N, P, X, y);
    logreg_params_t lp;
    logreg_params_default(&lp);
    lp.C = 0.5;
    lp.w_pos = 2.0;
    double coef[P], b;
    char err[256];
    logreg_info_t info;
    cr_assert_eq(logreg_fit(X, y, N, P, &lp, coef, &b, &info, err, sizeof(err)), 0, "%s", err);
    /* independent gradient of sum w (p - y) x + beta / C */
    double g[P + 1] = {0};
    for (int i = 0; i < N; i++) {
        double z = b;
        for (int k = 0; k < P; k++)
            z += coef[k] * X[i * P + k];
        double r = (y[i] ? 2.0 : 1.0) * (1 / (1 + exp(-z)) - y[i]);
        for (int k = 0; k < P; k++)
            g[k] += r * X[i * P + k];
        g[P] += r;
    }
    for (int k = 0; k < P; k++)
        g[k] += coef[k] / lp.C;
    for (int k = 0; k <= P; k++)
        cr_assert(fabs(g[k]) < 1e-7, "gradient[%d] = %g", k, g[k]);
    cr_assert(info.iterations < 30);
}

Test(logreg, class_weight_equals_duplicated_rows)
{
    enum { N = 500, P = 3 };
    static double X[N * P], X2[2 * N * P];
    static int y[N], y2[2 * N];
    make_lr_data(N, P, X, y);
    size_t m = 0;
    for (size_t i = 0; i < N; i++) {
        for (int rep = 0; rep < (y[i] ? 2 : 1); rep++) {
            memcpy(X2 + m * P, X + i * P, P * sizeof(double));
            y2[m++] = y[i];
        }
    }
    logreg_params_t lp;
    logreg_params_default(&lp);
    double c1[P], c2[P], b1, b2;
    char err[256];
    lp.w_pos = 2;
    cr_assert_eq(logreg_fit(X, y, N, P, &lp, c1, &b1, NULL, err, sizeof(err)), 0);
    lp.w_pos = 1;
    lp.threads = 1;
    cr_assert_eq(logreg_fit(X2, y2, m, P, &lp, c2, &b2, NULL, err, sizeof(err)), 0);
    for (int k = 0; k < P; k++)
        cr_assert_float_eq(c1[k], c2[k], 1e-9);
    cr_assert_float_eq(b1, b2, 1e-9);
}

Test(logreg, l1_solution_meets_the_optimality_conditions)
{
    enum { N = 1500, P = 8 };
    static double X[N * P];
    static int y[N];
    make_lr_data(N, P, X, y);
    logreg_params_t lp;
    logreg_params_default(&lp);
    lp.l1 = true;
    lp.C = 0.02;
    double coef[P], b;
    char err[256];
    cr_assert_eq(logreg_fit(X, y, N, P, &lp, coef, &b, NULL, err, sizeof(err)), 0, "%s", err);
    double g[P + 1] = {0};
    for (int i = 0; i < N; i++) {
        double z = b;
        for (int k = 0; k < P; k++)
            z += coef[k] * X[i * P + k];
        double r = 1 / (1 + exp(-z)) - y[i];
        for (int k = 0; k < P; k++)
            g[k] += r * X[i * P + k];
        g[P] += r;
    }
    double lam = 1 / lp.C;
    int zeros = 0;
    for (int k = 0; k < P; k++) {
        if (coef[k] == 0) {
            zeros++;
            cr_assert(fabs(g[k]) <= lam + 1e-7, "zero coefficient %d: |g| %g > %g", k, g[k], lam);
        } else {
            cr_assert(fabs(g[k] + (coef[k] > 0 ? lam : -lam)) < 1e-7, "coefficient %d", k);
        }
    }
    cr_assert(fabs(g[P]) < 1e-7);
    cr_assert(zeros > 0 && zeros < P, "%d of %d coefficients are zero", zeros, P);
}

Test(logreg, one_class_is_an_error)
{
    double X[4] = {1, 2, 3, 4};
    int y[4] = {0, 0, 0, 0};
    double c, b;
    char err[256];
    logreg_params_t lp;
    logreg_params_default(&lp);
    cr_assert_eq(logreg_fit(X, y, 4, 1, &lp, &c, &b, NULL, err, sizeof(err)), -1);
    cr_assert(strstr(err, "both classes"), "%s", err);
}

/* ---- GBDT ---- */

Test(gbdt, bin_edges)
{
    double v[1000];
    for (int i = 0; i < 1000; i++)
        v[i] = i / 10; /* 100 distinct values, 10 each */
    double e[256];
    size_t ne = gbdt_bin_edges(v, 1000, 256, e);
    cr_assert_eq(ne, 99); /* every distinct value but the smallest starts a bin */
    for (size_t k = 0; k < ne; k++)
        cr_assert_eq(e[k], (double)(k + 1));
    ne = gbdt_bin_edges(v, 1000, 8, e);
    cr_assert(ne <= 7 && ne >= 6);
    for (size_t k = 1; k < ne; k++)
        cr_assert(e[k] > e[k - 1]);
}

static double sq(double x) { return x * x; }

Test(gbdt, depth_one_tree_is_the_best_stump)
{
    enum { N = 400, P = 3 };
    static double X[N * P];
    static int y[N];
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < P; k++)
            X[i * P + k] = floor(urand() * 50);
        y[i] = urand() < (X[i * P + 1] > 30 ? 0.8 : 0.2);
    }
    gbdt_params_t gp;
    gbdt_params_default(&gp);
    gp.n_trees = 1;
    gp.max_depth = 1;
    gp.early_stopping = 0;
    gp.lambda = 1.5;
    gbdt_data_t d = {N, P, X, y};
    gbdt_result_t r;
    char err[256];
    cr_assert_eq(gbdt_fit(&d, NULL, NULL, NULL, &gp, &r, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(r.ntrees, 1);
    const model_tree_t *t = &r.trees[0];
    cr_assert_eq(t->nnodes, 3);
    /* exhaustive search of x < c splits with the same gain formula */
    double pm = 0;
    for (int i = 0; i < N; i++)
        pm += y[i];
    pm /= N;
    double g0 = 0, h = pm * (1 - pm);
    double best = 0, best_c = 0, gl_best = 0, hl_best = 0;
    int best_f = -1;
    for (int i = 0; i < N; i++)
        g0 += pm - y[i];
    double H = h * N;
    for (int f = 0; f < P; f++)
        for (int c = 1; c < 50; c++) {
            double gl = 0, hl = 0;
            for (int i = 0; i < N; i++)
                if (X[i * P + f] < c) {
                    gl += pm - y[i];
                    hl += h;
                }
            if (hl < 1 || H - hl < 1)
                continue;
            double gain =
                0.5 * (sq(gl) / (hl + 1.5) + sq(g0 - gl) / (H - hl + 1.5) - sq(g0) / (H + 1.5));
            if (gain > best + 1e-12) {
                best = gain, best_f = f, best_c = c, gl_best = gl, hl_best = hl;
            }
        }
    cr_assert_eq(t->feature[0], best_f);
    cr_assert_eq(t->threshold[0], best_c);
    cr_assert_float_eq(t->value[t->left[0]], -gl_best / (hl_best + 1.5) * 0.1, 1e-12);
    cr_assert_float_eq(t->value[t->right[0]], -(g0 - gl_best) / (H - hl_best + 1.5) * 0.1, 1e-12);
    cr_assert_float_eq(r.base_margin, log(pm / (1 - pm)), 1e-12);
    gbdt_result_cleanup(&r);
}

Test(gbdt, missing_values_learn_their_direction)
{
    enum { N = 600 };
    static double X[N];
    static int y[N];
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0) {
            X[i] = NAN;
            y[i] = 1; /* missing rows are positive, like high values */
        } else {
            X[i] = urand() * 10;
            y[i] = X[i] > 5;
        }
    }
    gbdt_params_t gp;
    gbdt_params_default(&gp);
    gp.n_trees = 1;
    gp.max_depth = 1;
    gp.early_stopping = 0;
    gbdt_data_t d = {N, 1, X, y};
    gbdt_result_t r;
    char err[256];
    cr_assert_eq(gbdt_fit(&d, NULL, NULL, NULL, &gp, &r, err, sizeof(err)), 0, "%s", err);
    const model_tree_t *t = &r.trees[0];
    cr_assert_eq(t->feature[0], 0);
    cr_assert_eq(t->default_left[0], 0, "missing must go right, with the high values");
    double xn = NAN, hi = 9, lo = 1;
    cr_assert_eq(model_tree_margin(t, &xn), model_tree_margin(t, &hi));
    cr_assert(model_tree_margin(t, &lo) < model_tree_margin(t, &hi));
    gbdt_result_cleanup(&r);
}

Test(gbdt, categorical_split_groups_categories)
{
    enum { N = 800 };
    static double X[N];
    static int y[N];
    for (int i = 0; i < N; i++) {
        int c = i % 5;
        X[i] = c;
        y[i] = urand() < ((c == 1 || c == 3) ? 0.9 : 0.1);
    }
    bool is_cat = true;
    size_t ncats = 5;
    gbdt_params_t gp;
    gbdt_params_default(&gp);
    gp.n_trees = 1;
    gp.max_depth = 1;
    gp.early_stopping = 0;
    gbdt_data_t d = {N, 1, X, y};
    gbdt_result_t r;
    char err[256];
    cr_assert_eq(gbdt_fit(&d, NULL, &is_cat, &ncats, &gp, &r, err, sizeof(err)), 0, "%s", err);
    const model_tree_t *t = &r.trees[0];
    cr_assert_eq(t->cat_len[0] == 2 || t->cat_len[0] == 3, true);
    /* 1 and 3 end up on one side, 0, 2 and 4 on the other */
    double v[5];
    for (int c = 0; c < 5; c++) {
        double x = c;
        v[c] = model_tree_margin(t, &x);
    }
    cr_assert(v[1] == v[3] && v[0] == v[2] && v[2] == v[4] && v[1] > v[0]);
    gbdt_result_cleanup(&r);
}

Test(gbdt, same_seed_same_trees_for_any_thread_count)
{
    enum { N = 3000, P = 6 };
    static double X[N * P];
    static int y[N];
    make_lr_data(N, P, X, y);
    for (int i = 0; i < N; i += 7)
        X[i * P + 2] = NAN;
    gbdt_params_t gp;
    gbdt_params_default(&gp);
    gp.n_trees = 20;
    gp.subsample = 0.7;
    gp.colsample = 0.5;
    gp.seed = 9;
    gbdt_data_t d = {N, P, X, y};
    gbdt_result_t a, b;
    char err[256];
    gp.threads = 1;
    cr_assert_eq(gbdt_fit(&d, &d, NULL, NULL, &gp, &a, err, sizeof(err)), 0, "%s", err);
    gp.threads = 2;
    cr_assert_eq(gbdt_fit(&d, &d, NULL, NULL, &gp, &b, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(a.ntrees, b.ntrees);
    for (int i = 0; i < N; i++)
        cr_assert_eq(gbdt_margin(&a, X + i * P), gbdt_margin(&b, X + i * P));
    gbdt_result_cleanup(&a);
    gbdt_result_cleanup(&b);
}

Test(gbdt, lossguide_respects_the_leaf_budget_and_splits_by_gain)
{
    enum { N = 4000, P = 4 };
    static double X[N * P];
    static int y[N];
    make_lr_data(N, P, X, y);
    gbdt_params_t gp;
    gbdt_params_default(&gp);
    gp.n_trees = 5;
    gp.early_stopping = 0;
    gp.max_leaves = 7;
    gp.max_depth = 0;
    gp.min_child_weight = 0;
    gbdt_data_t d = {N, P, X, y};
    gbdt_result_t a, b;
    char err[256];
    gp.threads = 1;
    cr_assert_eq(gbdt_fit(&d, NULL, NULL, NULL, &gp, &a, err, sizeof(err)), 0, "%s", err);
    gp.threads = 2;
    cr_assert_eq(gbdt_fit(&d, NULL, NULL, NULL, &gp, &b, err, sizeof(err)), 0, "%s", err);
    for (size_t t = 0; t < a.ntrees; t++) {
        size_t leaves = 0;
        for (size_t k = 0; k < a.trees[t].nnodes; k++)
            leaves += a.trees[t].feature[k] < 0;
        cr_assert_eq(leaves, 7, "tree %zu has %zu leaves", t, leaves);
        cr_assert_eq(a.trees[t].nnodes, b.trees[t].nnodes);
        for (size_t k = 0; k < a.trees[t].nnodes; k++)
            cr_assert_eq(a.trees[t].value[k], b.trees[t].value[k]);
    }
    /* with one leaf to add, leaf-wise and depth-wise agree on the root split */
    gp.max_leaves = 2;
    gp.n_trees = 1;
    gbdt_result_t c1, c2;
    cr_assert_eq(gbdt_fit(&d, NULL, NULL, NULL, &gp, &c1, err, sizeof(err)), 0);
    gp.max_leaves = 0;
    gp.max_depth = 1;
    cr_assert_eq(gbdt_fit(&d, NULL, NULL, NULL, &gp, &c2, err, sizeof(err)), 0);
    cr_assert_eq(c1.trees[0].feature[0], c2.trees[0].feature[0]);
    cr_assert_eq(c1.trees[0].threshold[0], c2.trees[0].threshold[0]);
    gbdt_result_cleanup(&a);
    gbdt_result_cleanup(&b);
    gbdt_result_cleanup(&c1);
    gbdt_result_cleanup(&c2);
}

/* ---- the artifact ---- */

#define SPEC                                                                                       \
    "{\"schema\":\"feature_spec/1\",\"name\":\"t\",\"entity\":\"e\",\"event_id\":\"id\","          \
    "\"event_time\":\"ts\",\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"missing\":"          \
    "\"median\"},{\"name\":\"c\",\"type\":\"categorical\",\"missing\":\"mode\"}]}"

static json_t *base_doc(const char *algo)
{
    char err[512];
    spec_t *spec = spec_parse(SPEC, strlen(SPEC), err, sizeof(err));
    cr_assert(spec, "%s", err);
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:O, s:s, s:{s:s, s:s}, s:[{s:s, s:s, s:f, s:f, s:f},"
        " {s:s, s:s, s:[s, s], s:s}], s:f, s:{}, s:{}, s:{}}",
        "schema", "model/1", "name", "t", "algo", algo, "spec", spec->doc, "spec_hash", spec->hash,
        "label", "field", "y", "positive", "1", "inputs", "column", "a", "kind", "numeric", "fill",
        2.0, "mean", 1.0, "scale", 4.0, "column", "c", "kind", "categorical", "categories", "x",
        "z", "fill_category", "z", "threshold", 0.5, "metrics", "profile", "lineage");
    spec_destroy(spec);
    cr_assert(doc);
    return doc;
}

static model_t *must_load(json_t *doc)
{
    char err[512];
    model_t *m = model_from_json(doc, err, sizeof(err));
    cr_assert(m, "%s", err);
    return m;
}

static void expect_error(json_t *doc, const char *needle)
{
    char err[512] = "";
    model_t *m = model_from_json(doc, err, sizeof(err));
    cr_assert_null(m, "loaded, expected an error with '%s'", needle);
    cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
}

Test(model, logreg_encodes_fill_scale_and_one_hot)
{
    json_t *doc = base_doc("logreg");
    json_object_set_new(doc, "slots", json_pack("[s, s, s]", "a", "c=x", "c=z"));
    json_object_set_new(doc, "logreg",
                        json_pack("{s:f, s:[f, f, f]}", "intercept", 0.25, "coef", 0.5, -1.0, 2.0));
    model_t *m = must_load(doc);
    cr_assert_eq(model_nslots(m), 3);
    double x[3];
    spec_value_t v[2] = {{SPEC_V_NUM, 9.0, NULL}, {SPEC_V_STR, 0, "x"}};
    cr_assert_eq(model_encode(m, v, x), 0);
    cr_assert(x[0] == 2.0 && x[1] == 1 && x[2] == 0);
    cr_assert_eq(model_predict(m, x), 1 / (1 + exp(-(0.25 + 0.5 * 2.0 - 1.0))));
    spec_value_t miss[2] = {{SPEC_V_MISSING, 0, NULL}, {SPEC_V_MISSING, 0, NULL}};
    cr_assert_eq(model_encode(m, miss, x), 2);
    cr_assert(x[0] == (2.0 - 1.0) / 4.0 && x[1] == 0 && x[2] == 1); /* fills: 2 and 'z' */
    spec_value_t unk[2] = {{SPEC_V_NUM, 1.0, NULL}, {SPEC_V_STR, 0, "new"}};
    cr_assert_eq(model_encode(m, unk, x), 1);
    cr_assert(x[0] == 0 && x[1] == 0 && x[2] == 0);
    /* the same from a features/1 values object */
    spec_value_t scratch[2];
    double xj[3];
    json_t *vals = json_pack("{s:f, s:s}", "a", 9.0, "c", "x");
    cr_assert_eq(model_encode_json(m, vals, scratch, xj), 0);
    model_encode(m, v, x);
    cr_assert(memcmp(x, xj, sizeof(x)) == 0);
    json_decref(vals);
    vals = json_pack("{s:n, s:[]}", "a", "c");
    cr_assert_eq(model_encode_json(m, vals, scratch, xj), 2);
    model_encode(m, miss, x);
    cr_assert(memcmp(x, xj, sizeof(x)) == 0);
    json_decref(vals);
    /* a number in quotes reads as the number (as the scorer's decoder reads it);
     * a string that is not one is missing */
    vals = json_pack("{s:s, s:s}", "a", "9", "c", "x");
    cr_assert_eq(model_encode_json(m, vals, scratch, xj), 0);
    model_encode(m, v, x);
    cr_assert(memcmp(x, xj, sizeof(x)) == 0);
    json_decref(vals);
    vals = json_pack("{s:s, s:s}", "a", "nine", "c", "x");
    cr_assert_eq(model_encode_json(m, vals, scratch, xj), 1);
    json_decref(vals);
    model_destroy(m);
    json_decref(doc);
}

static json_t *stump(void)
{
    /* node 0: a < 3 (missing left); node 2: c in {1} */
    return json_pack("{s:[i,i,i,i,i], s:[f,f,f,f,f], s:[i,i,i,i,i], s:[i,i,i,i,i],"
                     " s:[i,i,i,i,i], s:[f,f,f,f,f], s:[[],[],[i],[],[]]}",
                     "feature", 0, -1, 1, -1, -1, "threshold", 3.0, 0.0, 0.0, 0.0, 0.0, "left", 1,
                     0, 3, 0, 0, "right", 2, 0, 4, 0, 0, "default_left", 1, 0, 0, 0, 0, "value",
                     0.0, -1.0, 0.0, 2.0, 0.5, "categories", 1);
}

Test(model, gbdt_walks_thresholds_categories_and_missing)
{
    json_t *doc = base_doc("gbdt");
    json_t *in0 = json_array_get(json_object_get(doc, "inputs"), 0);
    json_object_set_new(in0, "fill", json_null()); /* keep missing */
    json_object_set_new(doc, "slots", json_pack("[s, s]", "a", "c"));
    json_object_set_new(doc, "gbdt",
                        json_pack("{s:f, s:[o]}", "base_margin", 0.125, "trees", stump()));
    model_t *m = must_load(doc);
    double x[2];
    spec_value_t v[2] = {{SPEC_V_NUM, 2.5, NULL}, {SPEC_V_STR, 0, "z"}};
    model_encode(m, v, x);
    cr_assert(x[0] == 2.5 && x[1] == 1);
    cr_assert_eq(model_margin(m, x), 0.125 - 1.0);
    v[0].num = 3.0; /* not < 3: right, then c = z (1) goes left */
    model_encode(m, v, x);
    cr_assert_eq(model_margin(m, x), 0.125 + 2.0);
    v[1].str = "x";
    model_encode(m, v, x);
    cr_assert_eq(model_margin(m, x), 0.125 + 0.5);
    v[0].kind = SPEC_V_MISSING; /* NaN: default left */
    model_encode(m, v, x);
    cr_assert(isnan(x[0]));
    cr_assert_eq(model_margin(m, x), 0.125 - 1.0);
    v[0] = (spec_value_t){SPEC_V_NUM, 7, NULL};
    v[1].str = "unseen"; /* unknown category: NaN, default right at node 2 */
    model_encode(m, v, x);
    cr_assert(isnan(x[1]));
    cr_assert_eq(model_margin(m, x), 0.125 + 0.5);
    model_destroy(m);
    json_decref(doc);
}

Test(model, errors_name_the_field)
{
    json_t *doc = base_doc("gbdt");
    json_object_set_new(doc, "slots", json_pack("[s, s]", "a", "c"));
    json_object_set_new(doc, "gbdt",
                        json_pack("{s:f, s:[o]}", "base_margin", 0.0, "trees", stump()));
    json_t *t0 = json_array_get(json_object_get(json_object_get(doc, "gbdt"), "trees"), 0);
    json_array_set_new(json_object_get(t0, "left"), 2, json_integer(9));
    expect_error(doc, "gbdt.trees[0].left[2]");
    json_array_set_new(json_object_get(t0, "left"), 2, json_integer(1));
    expect_error(doc, "children must follow");
    json_array_set_new(json_object_get(t0, "left"), 2, json_integer(3));
    json_array_set_new(json_object_get(t0, "categories"), 0, json_pack("[i]", 0));
    expect_error(doc, "gbdt.trees[0].categories[0]: a categorical split on a numeric input");
    json_decref(doc);

    doc = base_doc("logreg");
    json_object_set_new(doc, "slots", json_pack("[s, s, s]", "a", "c=x", "c=z"));
    json_object_set_new(doc, "logreg",
                        json_pack("{s:f, s:[f, f]}", "intercept", 0.0, "coef", 1.0, 2.0));
    expect_error(doc, "logreg.coef: 2 values, expected 3");
    json_object_set_new(doc, "spec_hash", json_string("abc"));
    expect_error(doc, "spec_hash");
    json_object_set_new(doc, "algo", json_string("forest"));
    expect_error(doc, "algo: 'forest'");
    json_object_del(doc, "schema");
    expect_error(doc, "schema: missing");
    json_decref(doc);
    char err[256];
    cr_assert_null(model_parse("{\"a\":1,\"a\":2}", 13, err, sizeof(err)));
}

Test(model, write_is_atomic)
{
    char *dir = test_unique("/tmp/mlops-model-test");
    cr_assert_eq(mkdir(dir, 0700), 0);
    char *path = xasprintf("%s/m.json", dir);
    json_t *doc = base_doc("logreg");
    json_object_set_new(doc, "slots", json_pack("[s, s, s]", "a", "c=x", "c=z"));
    json_object_set_new(
        doc, "logreg",
        json_pack("{s:f, s:[f, f, f]}", "intercept", 0.1, "coef", 0.1, 0.2, 1.0 / 3));
    char err[512];
    cr_assert_eq(model_write_file(doc, path, err, sizeof(err)), 0, "%s", err);
    model_t *m = model_load(path, err, sizeof(err));
    cr_assert(m, "%s", err);
    /* numbers read back exactly */
    cr_assert_eq(json_real_value(json_array_get(
                     json_object_get(json_object_get(model_doc(m), "logreg"), "coef"), 2)),
                 1.0 / 3);
    model_destroy(m);
    char *bad = xasprintf("%s/no/such/dir/m.json", dir);
    cr_assert_eq(model_write_file(doc, bad, err, sizeof(err)), -1);
    cr_assert(strstr(err, "no/such/dir"), "%s", err);
    char *cmd = xasprintf("test $(ls %s | wc -l) -eq 1", dir);
    cr_assert_eq(system(cmd), 0, "a temporary file was left behind");
    unlink(path);
    rmdir(dir);
    free(cmd);
    free(bad);
    free(path);
    free(dir);
    json_decref(doc);
}

/* ---- dataset ---- */

Test(dataset, errors_name_file_line_and_column)
{
    char err[1024];
    spec_t *spec = spec_parse(SPEC, strlen(SPEC), err, sizeof(err));
    cr_assert(spec, "%s", err);
    char *path = test_unique("/tmp/mlops-dataset-test");
    FILE *fp = fopen(path, "w");
    fprintf(fp, "id,e,ts,a,c,y\n1,e1,2026-01-01T00:00:00Z,1.5,x,1\n"
                "2,e1,2026-01-01T00:00:01Z,,z,0\n3,e2,2026-01-01T00:00:02Z,2,x,1,9\n");
    fclose(fp);
    dataset_opts_t o = {.label = "y", .positive = "1", .need_label = true, .strict = true};
    cr_assert_null(dataset_load_csv(spec, path, &o, err, sizeof(err)));
    char *want = xasprintf("%s:4: the row has 7 fields, the header has 6", path);
    cr_assert(strstr(err, want), "%s", err);
    free(want);
    fp = fopen(path, "w");
    fprintf(fp, "id,e,ts,a,c,y\n1,e1,2026-01-01T00:00:00Z,1.5,x,1\n"
                "2,e1,2026-01-01T00:00:01Z,oops,z,0\n");
    fclose(fp);
    cr_assert_null(dataset_load_csv(spec, path, &o, err, sizeof(err)));
    cr_assert(strstr(err, ":3: column 'a'"), "%s", err);
    o.strict = false;
    dataset_t *ds = dataset_load_csv(spec, path, &o, err, sizeof(err));
    cr_assert(ds, "%s", err);
    cr_assert_eq(ds->nrows, 2);
    cr_assert(ds->ok[0] && !ds->ok[1] && ds->nrefused == 1);
    cr_assert_eq(ds->label[0], 1);
    cr_assert_eq(ds->vals[0].num, 1.5);
    cr_assert_str_eq(ds->vals[1].str, "x");
    cr_assert_str_eq(ds->negative, "0");
    dataset_destroy(ds);
    /* bytes that are not UTF-8 (an overlong '/', a lone continuation byte, a
     * surrogate) are refused as ingest refuses them; valid multi-byte text is kept */
    fp = fopen(path, "w");
    fprintf(fp, "id,e,ts,a,c,y\n1,e1,2026-01-01T00:00:00Z,1,\xc3\xa9t\xc3\xa9,1\n"
                "2,e1,2026-01-01T00:00:01Z,1,\xc0\xaf,0\n3,e1,2026-01-01T00:00:02Z,1,\x80,0\n"
                "4,e1,2026-01-01T00:00:03Z,1,\xed\xa0\x80,0\n5,e1,2026-01-01T00:00:04Z,1,"
                "\xf0\x9f\x98\x80,0\n");
    fclose(fp);
    ds = dataset_load_csv(spec, path, &o, err, sizeof(err));
    cr_assert(ds, "%s", err);
    cr_assert_eq(ds->nrows, 5);
    bool keep[5] = {true, false, false, false, true};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(ds->ok[i], keep[i], "row %d", i + 1);
        if (!keep[i])
            cr_assert(strstr(ds->why[i], "UTF-8"), "%s", ds->why[i]);
    }
    cr_assert_str_eq(ds->vals[0 * ds->ncolumns + 1].str, "\xc3\xa9t\xc3\xa9");
    dataset_destroy(ds);
    unlink(path);
    free(path);
    spec_destroy(spec);
}

/* The streaming trainer's rows: features/1 values (as rec_features() writes
 * them for ingest) read back by dataset_add_values() equal the CSV path's
 * cleaned values, derived and rolling columns included. */
Test(dataset, features_values_round_trip)
{
    static const char spec_json[] =
        "{\"schema\":\"feature_spec/1\",\"name\":\"t\",\"entity\":\"e\",\"event_id\":\"id\","
        "\"event_time\":\"ts\",\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"missing\":"
        "\"keep\"},{\"name\":\"c\",\"type\":\"categorical\",\"missing\":\"keep\"},"
        "{\"name\":\"f\",\"type\":\"boolean\",\"missing\":\"keep\"}],"
        "\"derived\":[{\"name\":\"la\",\"op\":\"log1p\",\"input\":\"a\"},"
        "{\"name\":\"n1h\",\"op\":\"rolling_count\",\"window_s\":3600}]}";
    char err[1024];
    spec_t *spec = spec_parse(spec_json, strlen(spec_json), err, sizeof(err));
    cr_assert(spec, "%s", err);
    char *path = test_unique("/tmp/mlops-dataset-rt");
    FILE *fp = fopen(path, "w");
    fprintf(fp, "id,e,ts,a,c,f,y\n1,e1,2026-01-01T00:00:00Z,1.5,x,true,1\n"
                "2,e1,2026-01-01T00:10:00Z,,\"q,r\",false,0\n3,e2,2026-01-01T00:20:00Z,0.1,,,1\n"
                "4,e1,2026-01-01T00:30:00Z,7,x,true,0\n");
    fclose(fp);
    dataset_opts_t o = {.label = "y", .positive = "1", .need_label = true, .strict = true};
    dataset_t *ds = dataset_load_csv(spec, path, &o, err, sizeof(err));
    cr_assert(ds, "%s", err);
    dataset_t *back = dataset_new(spec);
    for (size_t r = 0; r < ds->nrows; r++) {
        spec_row_t row = {.event_id = "id",
                          .entity = "e1",
                          .event_time_ms = 0,
                          .values = ds->vals + r * ds->ncolumns,
                          .ncolumns = ds->ncolumns};
        strbuf_t sb;
        strbuf_init(&sb);
        rec_source_t src = {.topic = "events", .partition = 0, .offset = (int64_t)r};
        cr_assert_eq(rec_features(spec, &row, &src, 0, &sb), 0);
        json_error_t je;
        json_t *rec = json_loads(sb.data, 0, &je);
        cr_assert(rec, "%s", je.text);
        cr_assert_eq(dataset_add_values(back, json_object_get(rec, "values"), ds->label[r], r + 1,
                                        err, sizeof(err)),
                     0, "%s", err);
        json_decref(rec);
        strbuf_cleanup(&sb);
    }
    cr_assert_eq(back->nrows, ds->nrows);
    for (size_t i = 0; i < ds->nrows * ds->ncolumns; i++) {
        const spec_value_t *a = &ds->vals[i], *b = &back->vals[i];
        cr_assert_eq(a->kind, b->kind, "cell %zu", i);
        if (a->kind == SPEC_V_NUM)
            cr_assert_eq(memcmp(&a->num, &b->num, sizeof(double)), 0, "cell %zu: %.17g vs %.17g", i,
                         a->num, b->num);
        if (a->kind == SPEC_V_STR)
            cr_assert_str_eq(a->str, b->str);
    }
    cr_assert_eq(back->label[3], 0);
    cr_assert_eq(back->line[2], 3);
    /* the rolling count saw e1's earlier event: not a constant column */
    int n1h = spec_column_index(spec, "n1h");
    cr_assert_eq(back->vals[3 * back->ncolumns + (size_t)n1h].num, 3);
    /* wrong types are refused naming the column; an absent column is missing */
    json_t *bad = json_pack("{s:i}", "c", 3);
    cr_assert_neq(dataset_add_values(back, bad, 0, 9, err, sizeof(err)), 0);
    cr_assert(strstr(err, "column 'c': a number value where the spec wants a string"), "%s", err);
    json_decref(bad);
    bad = json_pack("{s:s}", "a", "1.5");
    cr_assert_neq(dataset_add_values(back, bad, 0, 9, err, sizeof(err)), 0);
    cr_assert(strstr(err, "column 'a'"), "%s", err);
    json_decref(bad);
    cr_assert_eq(back->nrows, 4);
    json_t *empty = json_object();
    cr_assert_eq(dataset_add_values(back, empty, 1, 5, err, sizeof(err)), 0);
    json_decref(empty);
    cr_assert_eq(back->nrows, 5);
    cr_assert_eq(back->vals[4 * back->ncolumns].kind, SPEC_V_MISSING);
    dataset_destroy(back);
    dataset_destroy(ds);
    unlink(path);
    free(path);
    spec_destroy(spec);
}
