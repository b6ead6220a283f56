/**
 * @file perf.h
 * @brief Prediction drift and realized performance of one model variant
 *        (model, role), and the join of predictions with late labels.
 *
 * Prediction drift: the scores of the variant's predictions in count
 * windows (the same SIZE/STEP rule as dstate.h), binned on the reference
 * score histogram's edges (profile.scores of the model/1 artifact) and
 * compared with the reference counts by the Jensen-Shannon distance
 * (natural log, drift when >= 0.1: Evidently's default for a large
 * reference; the artifact keeps a histogram of the scores, not a sample, so
 * no exact test is possible) and PSI (Evidently's empty-bin fill).
 *
 * Realized performance: labelled predictions (score, decision, label) in
 * count windows; on a tick, ROC AUC (ties counted half), accuracy of the
 * decisions, log loss (scores clipped to [1e-15, 1 - 1e-15]), Brier score,
 * and auc_drop = reference AUC (the artifact's held-out metrics.auc) -
 * window AUC; calibration: the scores in PERF_CAL_BINS uniform bins (bin b
 * holds the scores s with edges[b] < s <= edges[b + 1], edges k * 0.1,
 * score 0 in the first: scikit-learn's calibration_curve with
 * strategy="uniform"), per non-empty bin the mean score and the positive
 * rate; ECE = sum over bins of n_b / n * |rate_b - score_b|, MCE = the
 * largest |rate_b - score_b|. DDM (Gama et al. 2004) runs on the stream of decision errors:
 * after at least 30 labelled predictions, with p the error rate so far and
 * s = sqrt(p (1 - p) / n), it keeps the minimum of p + s (taken only while
 * p > 0: from an error-free start any error would be a drift); warning
 * when p + s >= p_min + 2 s_min, drift when >= p_min + 3 s_min, after which
 * it starts again.
 *
 * ADWIN (Bifet and Gavaldà 2007), the exact ADWIN0 form on a window of at
 * most PERF_ADWIN_MAX decision errors: after each one, every split of the
 * window into an older part W0 (n0) and a newer W1 (n1), both of at least
 * 5, is checked; with m = 1 / (1/n0 + 1/n1), d = delta / n and s2 the
 * window's variance, the means differ when |mu0 - mu1| >= sqrt(2 s2 ln(2/d)
 * / m) + 2 ln(2/d) / (3 m); then the oldest value is dropped and the check
 * repeats. Each value after which the window shrank counts as one drift (as
 * river counts them: one change usually gives several, as evidence grows).
 * delta = 0.002.
 *
 * The join (join_t): predictions wait for their label by event id, and
 * labels that come first wait for their predictions, for at most
 * @p lateness_ms of processing time and at most @p max_pending event ids
 * (the oldest go first); every prediction of an event (champion,
 * challenger, shadow) joins the same label.
 *
 * Ownership: *_new return objects freed by the matching *_destroy (accept
 * NULL). Not thread-safe.
 */
#ifndef MLOPS_MONITOR_PERF_H
#define MLOPS_MONITOR_PERF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dstate.h"

typedef struct perf perf_t;

/** Bins of the calibration (reliability) curve: uniform over [0, 1]. */
#define PERF_CAL_BINS 10

/** Metrics of one window's latest tick. */
typedef struct perf_metrics {
    double auc, accuracy, log_loss, brier, auc_drop;
    /** expected and maximum calibration error over the bins below (NaN: no tick yet) */
    double ece, mce;
    /** per bin: labelled predictions, their mean score and their positive rate */
    size_t cal_n[PERF_CAL_BINS];
    double cal_score[PERF_CAL_BINS], cal_rate[PERF_CAL_BINS];
    size_t n, npos;
} perf_metrics_t;

/** Latest prediction-drift result of one window. */
typedef struct perf_score_drift {
    double js, psi;
    bool drifted;
    size_t n;
} perf_score_drift_t;

typedef enum { PERF_DDM_OK = 0, PERF_DDM_WARNING = 1, PERF_DDM_DRIFT = 2 } perf_ddm_state_t;

/**
 * A variant's state. @p edges (@p nbins + 1, ascending) and @p counts
 * (@p nbins) are the reference score histogram (copied); @p ref_auc may be
 * NaN (then auc_drop is NaN). NULL with a message on bad input.
 */
perf_t *perf_new(const dstate_win_t *wins, size_t nwins, const double *edges, const double *counts,
                 size_t nbins, double ref_auc, char *err, size_t err_size);
void perf_destroy(perf_t *p);

/** Add a score; ticked window indices into @p ticked; returns how many. */
size_t perf_add_score(perf_t *p, double score, size_t *ticked);
const perf_score_drift_t *perf_score_drift(const perf_t *p, size_t w);

/** Add a labelled prediction (y: 1 positive, 0 negative). */
size_t perf_add_labelled(perf_t *p, double score, bool decision, int y, size_t *ticked);
const perf_metrics_t *perf_metrics(const perf_t *p, size_t w);
uint64_t perf_score_ticks(const perf_t *p, size_t w);
uint64_t perf_label_ticks(const perf_t *p, size_t w);
uint64_t perf_labelled(const perf_t *p);

perf_ddm_state_t perf_ddm_state(const perf_t *p);
uint64_t perf_ddm_drifts(const perf_t *p);

#define PERF_ADWIN_MAX 5000
#define PERF_ADWIN_DELTA 0.002
/** ADWIN's window length, its error rate, and the drifts it detected. */
size_t perf_adwin_width(const perf_t *p);
double perf_adwin_mean(const perf_t *p);
uint64_t perf_adwin_drifts(const perf_t *p);

/** ROC AUC of @p n scores and 0/1 labels (sorts a copy); NaN with one class only. */
double perf_auc(const double *score, const int *y, size_t n);

/* ---- the join --------------------------------------------------------------------- */

typedef struct join join_t;

/** One prediction waiting for its label. */
typedef struct join_pred {
    char model[128];
    char role[16];
    int64_t version;
    double score;
    bool decision;
} join_pred_t;

/** Called with each joined pair (the label as text, e.g. "yes", "1", "true"). */
typedef void(join_cb)(const join_pred_t *pred, const char *label, void *opaque);

join_t *join_new(size_t max_pending, int64_t lateness_ms, join_cb *cb, void *opaque);
void join_destroy(join_t *j);
/** A prediction: joins at once when its label is waiting, else waits. */
void join_prediction(join_t *j, const char *event_id, const join_pred_t *pred, int64_t now_ms);
/** A label: joins every waiting prediction of the event, and waits for later ones. */
void join_label(join_t *j, const char *event_id, const char *label, int64_t now_ms);
/** Drop what is older than the lateness bound. */
void join_expire(join_t *j, int64_t now_ms);
size_t join_pending(const join_t *j);
/** Predictions and labels dropped unjoined (expired or pushed out). */
uint64_t join_expired_predictions(const join_t *j);
uint64_t join_expired_labels(const join_t *j);

#endif
