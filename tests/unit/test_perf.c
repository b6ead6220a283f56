/* The monitor's prediction drift, realized performance and label join
 * (services/monitor/perf.c), against brute-force recomputations in the test:
 * AUC by counting pairs, metrics over the last SIZE labelled predictions,
 * score bins and JS against drift_jensenshannon on counts binned here, the
 * join in both orders, several roles, expiry by lateness and by capacity. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "drift.h"
#include "perf.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double unif(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

static double auc_pairs(const double *s, const int *y, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (y[i] && !y[j]) {
                den += 1;
                num += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
            }
    return den ? num / den : (double)NAN;
}

Test(perf, auc_with_ties_equals_pair_counting)
{
    for (int rep = 0; rep < 50; rep++) {
        size_t n = 1 + (size_t)(unif() * 200);
        double *s = malloc(n * sizeof(double));
        int *y = malloc(n * sizeof(int));
        for (size_t i = 0; i < n; i++) {
            s[i] = rep % 2 ? floor(unif() * 5) / 5 : unif(); /* ties on odd reps */
            y[i] = unif() < 0.3 + 0.4 * s[i];
        }
        double want = auc_pairs(s, y, n), got = perf_auc(s, y, n);
        if (isnan(want))
            cr_assert(isnan(got));
        else
            cr_assert_float_eq(got, want, 1e-12, "rep %d n %zu", rep, n);
        free(s);
        free(y);
    }
}

static const double EDGES[] = {0, 0.25, 0.5, 0.75, 1};
static const double COUNTS[] = {40, 30, 20, 10};

Test(perf, bad_histograms_are_refused)
{
    dstate_win_t w = {.size = 10, .step = 10};
    char err[256];
    const double bad_edges[] = {0, 0.5, 0.5, 1, 2};
    cr_assert_null(perf_new(&w, 1, bad_edges, COUNTS, 4, 0.8, err, sizeof(err)));
    cr_assert(strstr(err, "edges[2]"), "%s", err);
    const double zero[] = {0, 0, 0, 0};
    cr_assert_null(perf_new(&w, 1, EDGES, zero, 4, 0.8, err, sizeof(err)));
    cr_assert(strstr(err, "counts"), "%s", err);
    cr_assert_null(perf_new(&w, 0, EDGES, COUNTS, 4, 0.8, err, sizeof(err)));
}

Test(perf, score_windows_tick_and_bin_like_the_reference)
{
    dstate_win_t w[2] = {{.size = 20, .step = 20}, {.size = 30, .step = 10}};
    char err[256];
    perf_t *p = perf_new(w, 2, EDGES, COUNTS, 4, 0.8, err, sizeof(err));
    cr_assert(p, "%s", err);
    double hist[200];
    size_t n = 0;
    for (size_t i = 0; i < 200; i++) {
        double s = i % 17 == 0 ? 1.0 : i % 13 == 0 ? 0.25 : unif() * (i < 100 ? 1 : 0.5);
        hist[n++] = s;
        size_t ticked[2];
        size_t nt = perf_add_score(p, s, ticked);
        size_t k = 0;
        for (size_t wi = 0; wi < 2; wi++) {
            if (!(n >= w[wi].size && (n - w[wi].size) % w[wi].step == 0))
                continue;
            cr_assert_eq(ticked[k++], wi);
            double cur[4] = {0};
            for (size_t j = n - w[wi].size; j < n; j++) {
                double v = hist[j];
                int b = v >= 0.75 ? 3 : v >= 0.5 ? 2 : v >= 0.25 ? 1 : 0; /* last bin closed */
                cur[b]++;
            }
            const perf_score_drift_t *sd = perf_score_drift(p, wi);
            cr_assert_float_eq(sd->js, drift_jensenshannon(COUNTS, cur, 4, 0), 1e-15);
            cr_assert_eq(sd->drifted, sd->js >= 0.1);
            cr_assert_eq(sd->n, w[wi].size);
            cr_assert(isfinite(sd->psi) && sd->psi >= 0);
        }
        cr_assert_eq(nt, k);
    }
    cr_assert_eq(perf_add_score(p, NAN, NULL), 0);
    perf_destroy(p);
}

Test(perf, performance_windows_equal_a_recomputation)
{
    dstate_win_t w[2] = {{.size = 50, .step = 50}, {.size = 80, .step = 20}};
    char err[256];
    perf_t *p = perf_new(w, 2, EDGES, COUNTS, 4, 0.9, err, sizeof(err));
    cr_assert(p, "%s", err);
    enum { N = 400 };
    double s[N];
    int y[N];
    bool d[N];
    for (size_t i = 0; i < N; i++) {
        s[i] = i % 50 == 0 ? 0.0 : unif(); /* 0 exercises the log loss clip */
        y[i] = unif() < (i < N / 2 ? s[i] : 0.5);
        d[i] = s[i] >= 0.5;
        size_t ticked[2];
        size_t nt = perf_add_labelled(p, s[i], d[i], y[i], ticked);
        size_t seen = i + 1, k = 0;
        for (size_t wi = 0; wi < 2; wi++) {
            if (!(seen >= w[wi].size && (seen - w[wi].size) % w[wi].step == 0))
                continue;
            cr_assert_eq(ticked[k++], wi);
            size_t lo = seen - w[wi].size, m = w[wi].size, ok = 0, npos = 0;
            double ll = 0, br = 0;
            for (size_t j = lo; j < seen; j++) {
                ok += d[j] == (y[j] != 0);
                npos += (size_t)y[j];
                double c = fmin(fmax(s[j], 1e-15), 1 - 1e-15);
                ll += y[j] ? -log(c) : -log(1 - c);
                br += (s[j] - y[j]) * (s[j] - y[j]);
            }
            const perf_metrics_t *pm = perf_metrics(p, wi);
            double auc = auc_pairs(s + lo, y + lo, m);
            cr_assert_eq(pm->n, m);
            cr_assert_eq(pm->npos, npos);
            cr_assert_float_eq(pm->auc, auc, 1e-12);
            cr_assert_float_eq(pm->auc_drop, 0.9 - auc, 1e-12);
            cr_assert_float_eq(pm->accuracy, (double)ok / (double)m, 1e-15);
            cr_assert_float_eq(pm->log_loss, ll / (double)m, 1e-9);
            cr_assert_float_eq(pm->brier, br / (double)m, 1e-12);
        }
        cr_assert_eq(nt, k);
    }
    cr_assert_eq(perf_labelled(p), N);
    perf_destroy(p);
}

Test(perf, ddm_flags_a_rise_of_the_error_rate)
{
    dstate_win_t w = {.size = 100, .step = 100};
    char err[256];
    perf_t *p = perf_new(&w, 1, EDGES, COUNTS, 4, 0.8, err, sizeof(err));
    cr_assert(p, "%s", err);
    size_t ticked[1];
    /* a steady 10 % error rate (every 10th decision wrong): in control */
    for (int i = 1; i <= 2000; i++)
        (void)perf_add_labelled(p, 0.9, true, i % 10 != 0, ticked);
    cr_assert_eq(perf_ddm_drifts(p), 0);
    cr_assert_eq(perf_ddm_state(p), PERF_DDM_OK);
    /* then every other one: a warning first, a drift soon after */
    bool warned = false;
    int at = -1;
    for (int i = 1; i <= 500 && at < 0; i++) {
        (void)perf_add_labelled(p, 0.9, true, i % 2 != 0, ticked);
        warned |= perf_ddm_state(p) == PERF_DDM_WARNING;
        if (perf_ddm_drifts(p))
            at = i;
    }
    cr_assert(warned);
    cr_assert(at > 0 && at < 200, "drift after %d", at);
    cr_assert_eq(perf_ddm_state(p), PERF_DDM_DRIFT);
    /* and it starts again: 29 more are not enough to judge */
    for (int i = 0; i < 29; i++)
        (void)perf_add_labelled(p, 0.9, true, false, ticked);
    cr_assert_eq(perf_ddm_state(p), PERF_DDM_OK);
    cr_assert_eq(perf_ddm_drifts(p), 1);
    perf_destroy(p);
}

/* ---- the join ---- */

typedef struct got {
    char model[16][128];
    char role[16][16];
    char label[16][16];
    double score[16];
    int n;
} got_t;

static void on_join(const join_pred_t *pred, const char *label, void *opaque)
{
    got_t *g = opaque;
    cr_assert_lt(g->n, 16);
    strcpy(g->model[g->n], pred->model);
    strcpy(g->role[g->n], pred->role);
    strcpy(g->label[g->n], label);
    g->score[g->n] = pred->score;
    g->n++;
}

static join_pred_t pred(const char *role, double score)
{
    join_pred_t p = {.version = 1, .score = score, .decision = score >= 0.5};
    strcpy(p.model, "m");
    strcpy(p.role, role);
    return p;
}

Test(join, both_orders_and_every_role)
{
    got_t g = {0};
    join_t *j = join_new(100, 1000, on_join, &g);
    join_pred_t a = pred("champion", 0.1), b = pred("shadow", 0.7);
    join_prediction(j, "e1", &a, 0);
    join_prediction(j, "e1", &b, 1);
    cr_assert_eq(g.n, 0);
    join_label(j, "e1", "yes", 2);
    cr_assert_eq(g.n, 2);
    cr_assert_str_eq(g.role[0], "champion");
    cr_assert_str_eq(g.role[1], "shadow");
    cr_assert_str_eq(g.label[1], "yes");
    join_label(j, "e1", "no", 3); /* a repeated label: the first counts */
    cr_assert_eq(g.n, 2);
    join_label(j, "e2", "no", 4); /* label first */
    cr_assert_eq(g.n, 2);
    join_prediction(j, "e2", &a, 5);
    cr_assert_eq(g.n, 3);
    cr_assert_str_eq(g.label[2], "no");
    join_prediction(j, "e1", &b, 6); /* a late shadow still joins */
    cr_assert_eq(g.n, 4);
    cr_assert_eq(join_pending(j), 2);
    cr_assert_eq(join_expired_predictions(j), 0);
    cr_assert_eq(join_expired_labels(j), 0);
    join_destroy(j);
}

Test(join, lateness_and_capacity_bound_the_wait)
{
    got_t g = {0};
    join_t *j = join_new(3, 100, on_join, &g);
    join_pred_t a = pred("champion", 0.3);
    join_prediction(j, "old", &a, 0);
    join_label(j, "lonely", "yes", 50);
    join_expire(j, 101); /* "old" is 101 ms old: gone */
    cr_assert_eq(join_pending(j), 1);
    cr_assert_eq(join_expired_predictions(j), 1);
    join_label(j, "old", "yes", 102); /* too late: waits as a label */
    cr_assert_eq(g.n, 0);
    join_prediction(j, "x1", &a, 103);
    join_prediction(j, "x2", &a, 104); /* over capacity: "lonely" goes */
    cr_assert_eq(join_pending(j), 3);
    cr_assert_eq(join_expired_labels(j), 1);
    join_label(j, "lonely", "no", 105); /* pushes out "old" */
    cr_assert_eq(join_expired_labels(j), 2);
    join_label(j, "x2", "yes", 106); /* pushes nothing: x2 is there */
    cr_assert_eq(g.n, 1);
    cr_assert_str_eq(g.label[0], "yes");
    join_destroy(j);
}

Test(perf, adwin_keeps_a_steady_stream_and_cuts_at_a_change)
{
    dstate_win_t w = {.size = 100, .step = 100};
    char err[256];
    perf_t *p = perf_new(&w, 1, EDGES, COUNTS, 4, 0.8, err, sizeof(err));
    cr_assert(p, "%s", err);
    size_t ticked[1];
    for (int i = 1; i <= 2000; i++) /* every 10th decision wrong */
        (void)perf_add_labelled(p, 0.9, true, i % 10 != 0, ticked);
    cr_assert_eq(perf_adwin_drifts(p), 0);
    cr_assert_eq(perf_adwin_width(p), 2000);
    cr_assert_float_eq(perf_adwin_mean(p), 0.1, 1e-15);
    int at = -1;
    for (int i = 1; i <= 300 && at < 0; i++) { /* every other one */
        (void)perf_add_labelled(p, 0.9, true, i % 2 != 0, ticked);
        if (perf_adwin_drifts(p))
            at = i;
    }
    cr_assert(at > 0 && at < 150, "cut after %d", at);
    /* the old part is gone: the window now holds mostly the new regime */
    cr_assert_lt(perf_adwin_width(p), 2000);
    for (int i = 1; i <= 3000; i++)
        (void)perf_add_labelled(p, 0.9, true, i % 2 != 0, ticked);
    cr_assert_float_eq(perf_adwin_mean(p), 0.5, 0.02); /* a little of the old part may stay */
    /* the window is bounded */
    for (int i = 0; i < 6000; i++)
        (void)perf_add_labelled(p, 0.9, true, i % 2 != 0, ticked);
    cr_assert_eq(perf_adwin_width(p), PERF_ADWIN_MAX);
    perf_destroy(p);
}

/* The calibration bins follow scikit-learn's calibration_curve(strategy=
 * "uniform"): np.searchsorted(edges[1:-1], s) with side "left", so a score
 * on an inner edge belongs to the bin below it and 0 to the first bin. */
Test(perf, calibration_bins_put_an_edge_score_in_the_bin_below)
{
    dstate_win_t w[1] = {{.size = 5, .step = 5}};
    char err[256];
    perf_t *p = perf_new(w, 1, EDGES, COUNTS, 4, 0.9, err, sizeof(err));
    cr_assert(p, "%s", err);
    const double s[5] = {0.0, 0.1, 0.10000001, 0.7, 1.0};
    const int y[5] = {0, 1, 1, 0, 1};
    size_t ticked[1];
    for (size_t i = 0; i < 5; i++)
        perf_add_labelled(p, s[i], s[i] >= 0.5, y[i], ticked);
    const perf_metrics_t *pm = perf_metrics(p, 0);
    const size_t want_n[PERF_CAL_BINS] = {2, 1, 0, 0, 0, 0, 1, 0, 0, 1};
    for (size_t b = 0; b < PERF_CAL_BINS; b++)
        cr_assert_eq(pm->cal_n[b], want_n[b], "bin %zu: %zu", b, pm->cal_n[b]);
    cr_assert_float_eq(pm->cal_score[0], 0.05, 1e-15);
    cr_assert_float_eq(pm->cal_rate[0], 0.5, 1e-15);
    cr_assert(isnan(pm->cal_score[2]));
    /* gaps: bin 0 |0.5 - 0.05|, bin 1 |1 - 0.10000001|, bin 6 |0 - 0.7|, bin 9 0 */
    double ece = (2 * 0.45 + (1 - 0.10000001) + 0.7) / 5.0;
    cr_assert_float_eq(pm->ece, ece, 1e-12);
    cr_assert_float_eq(pm->mce, 1 - 0.10000001, 1e-12);
    perf_destroy(p);
}
