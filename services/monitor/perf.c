/* Prediction drift, realized performance and the label join (see perf.h). */
#include "perf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drift.h"
#include "hmap.h"
#include "util.h"

typedef struct lab {
    double score;
    int y;
    bool decision;
} lab_t;

typedef struct pwin {
    dstate_win_t spec;
    /* scores: ring of bin indices and the counts per bin */
    uint32_t *sring;
    size_t shead, scount;
    uint64_t sseen, sticks;
    size_t *bins;
    perf_score_drift_t sd;
    /* labelled predictions */
    lab_t *lring;
    size_t lhead, lcount;
    uint64_t lseen, lticks;
    perf_metrics_t pm;
} pwin_t;

struct perf {
    pwin_t win[DSTATE_MAX_WINDOWS];
    size_t nwin;
    double *edges; /* nbins + 1 */
    double *ref;   /* nbins */
    size_t nbins;
    double ref_auc;
    /* scratch for a tick */
    double *sbuf, *cur;
    int *ybuf;
    uint64_t labelled;
    /* DDM */
    uint64_t ddm_n, ddm_err, ddm_drifts;
    double ddm_pmin, ddm_smin;
    perf_ddm_state_t ddm_state;
    /* ADWIN: ring of 0/1 errors */
    uint8_t adw[PERF_ADWIN_MAX];
    size_t adw_head, adw_n, adw_sum;
    uint64_t adw_drifts;
};

perf_t *perf_new(const dstate_win_t *wins, size_t nwins, const double *edges, const double *counts,
                 size_t nbins, double ref_auc, char *err, size_t err_size)
{
    if (nwins < 1 || nwins > DSTATE_MAX_WINDOWS) {
        snprintf(err, err_size, "windows: between 1 and %d needed", DSTATE_MAX_WINDOWS);
        return NULL;
    }
    if (nbins < 1 || !edges || !counts) {
        snprintf(err, err_size, "profile.scores: no histogram");
        return NULL;
    }
    double total = 0;
    for (size_t b = 0; b < nbins; b++) {
        if (!(counts[b] >= 0) || !isfinite(counts[b])) {
            snprintf(err, err_size, "profile.scores.counts[%zu]: not a count", b);
            return NULL;
        }
        total += counts[b];
    }
    for (size_t b = 0; b <= nbins; b++)
        if (!isfinite(edges[b]) || (b && !(edges[b] > edges[b - 1]))) {
            snprintf(err, err_size, "profile.scores.edges[%zu]: not finite and ascending", b);
            return NULL;
        }
    if (total <= 0) {
        snprintf(err, err_size, "profile.scores.counts: all zero");
        return NULL;
    }
    perf_t *p = xcalloc(1, sizeof(*p));
    p->nbins = nbins;
    p->edges = xmalloc((nbins + 1) * sizeof(double));
    memcpy(p->edges, edges, (nbins + 1) * sizeof(double));
    p->ref = xmalloc(nbins * sizeof(double));
    memcpy(p->ref, counts, nbins * sizeof(double));
    p->ref_auc = ref_auc;
    p->nwin = nwins;
    size_t maxw = 1;
    for (size_t w = 0; w < nwins; w++) {
        pwin_t *pw = &p->win[w];
        pw->spec = wins[w];
        pw->sring = xmalloc((wins[w].size + 1) * sizeof(uint32_t));
        pw->bins = xcalloc(nbins, sizeof(size_t));
        pw->lring = xmalloc((wins[w].size + 1) * sizeof(lab_t));
        pw->sd.js = pw->sd.psi = NAN;
        pw->pm.auc = pw->pm.accuracy = pw->pm.log_loss = pw->pm.brier = pw->pm.auc_drop = NAN;
        pw->pm.ece = pw->pm.mce = NAN;
        if (wins[w].size > maxw)
            maxw = wins[w].size;
    }
    p->sbuf = xmalloc(maxw * sizeof(double));
    p->ybuf = xmalloc(maxw * sizeof(int));
    p->cur = xmalloc(nbins * sizeof(double));
    return p;
}

void perf_destroy(perf_t *p)
{
    if (!p)
        return;
    for (size_t w = 0; w < p->nwin; w++) {
        free(p->win[w].sring);
        free(p->win[w].bins);
        free(p->win[w].lring);
    }
    free(p->edges);
    free(p->ref);
    free(p->sbuf);
    free(p->ybuf);
    free(p->cur);
    free(p);
}

/* Bin of a score on the reference edges: [e_b, e_b+1), the last bin closed,
 * values outside the range into the end bins. */
static uint32_t score_bin(const perf_t *p, double s)
{
    size_t lo = 0, hi = p->nbins; /* find the last b with edges[b] <= s */
    if (!(s >= p->edges[0]))
        return 0;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (p->edges[mid] <= s)
            lo = mid;
        else
            hi = mid;
    }
    return (uint32_t)lo;
}

/* Evidently's fill for PSI: an empty share becomes 0.0001, or the smallest
 * non-zero share / 1e6 when that is <= 0.0001. */
static void fill_empty(double *share, size_t n)
{
    double mn = INFINITY;
    for (size_t i = 0; i < n; i++)
        if (share[i] > 0 && share[i] < mn)
            mn = share[i];
    double fill = mn <= 0.0001 ? mn / 1e6 : 0.0001;
    for (size_t i = 0; i < n; i++)
        if (share[i] == 0)
            share[i] = fill;
}

static bool ticks_now(const dstate_win_t *s, uint64_t seen)
{
    return seen >= s->size && (seen - s->size) % s->step == 0;
}

size_t perf_add_score(perf_t *p, double score, size_t *ticked)
{
    if (!isfinite(score))
        return 0;
    uint32_t b = score_bin(p, score);
    size_t n = 0;
    for (size_t w = 0; w < p->nwin; w++) {
        pwin_t *pw = &p->win[w];
        if (pw->spec.span_ms)
            continue; /* count windows only */
        if (pw->scount == pw->spec.size) {
            pw->bins[pw->sring[pw->shead]]--;
            pw->sring[pw->shead] = b;
            pw->shead = (pw->shead + 1) % pw->spec.size;
        } else {
            pw->sring[(pw->shead + pw->scount) % pw->spec.size] = b;
            pw->scount++;
        }
        pw->bins[b]++;
        pw->sseen++;
        if (!ticks_now(&pw->spec, pw->sseen))
            continue;
        double tot_ref = 0;
        for (size_t k = 0; k < p->nbins; k++)
            tot_ref += p->ref[k];
        for (size_t k = 0; k < p->nbins; k++)
            p->cur[k] = (double)pw->bins[k];
        pw->sd.js = drift_jensenshannon(p->ref, p->cur, p->nbins, 0);
        double *rs = xmalloc(p->nbins * sizeof(double)), *cs = xmalloc(p->nbins * sizeof(double));
        for (size_t k = 0; k < p->nbins; k++) {
            rs[k] = p->ref[k] / tot_ref;
            cs[k] = p->cur[k] / (double)pw->scount;
        }
        fill_empty(rs, p->nbins);
        fill_empty(cs, p->nbins);
        pw->sd.psi = drift_psi(rs, cs, p->nbins);
        free(rs);
        free(cs);
        pw->sd.drifted = pw->sd.js >= 0.1;
        pw->sd.n = pw->scount;
        pw->sticks++;
        ticked[n++] = w;
    }
    return n;
}

const perf_score_drift_t *perf_score_drift(const perf_t *p, size_t w) { return &p->win[w].sd; }

typedef struct sy {
    double s;
    int y;
} sy_t;

static int cmp_sy(const void *a, const void *b)
{
    double x = ((const sy_t *)a)->s, y = ((const sy_t *)b)->s;
    return x < y ? -1 : x > y;
}

double perf_auc(const double *score, const int *y, size_t n)
{
    size_t npos = 0;
    for (size_t i = 0; i < n; i++)
        npos += y[i] != 0;
    size_t nneg = n - npos;
    if (!npos || !nneg)
        return NAN;
    sy_t *v = xmalloc(n * sizeof(sy_t));
    for (size_t i = 0; i < n; i++)
        v[i] = (sy_t){score[i], y[i] != 0};
    qsort(v, n, sizeof(sy_t), cmp_sy);
    /* Mann-Whitney: sum of the positives' midranks */
    double rsum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        size_t pos = 0;
        while (j < n && v[j].s == v[i].s)
            pos += (size_t)v[j++].y;
        double mid = ((double)i + 1 + (double)j) / 2.0; /* ranks i+1..j */
        rsum += mid * (double)pos;
        i = j;
    }
    free(v);
    double u = rsum - (double)npos * ((double)npos + 1) / 2.0;
    return u / ((double)npos * (double)nneg);
}

static void ddm_update(perf_t *p, bool error)
{
    p->ddm_n++;
    p->ddm_err += error;
    if (p->ddm_n < 30) {
        p->ddm_state = PERF_DDM_OK;
        return;
    }
    double n = (double)p->ddm_n;
    double pe = (double)p->ddm_err / n;
    double s = sqrt(pe * (1 - pe) / n);
    /* the minimum is taken only once an error was seen: from an error-free
     * start (p = s = 0) any error would be a drift */
    if (pe > 0 && (p->ddm_smin == 0 || pe + s < p->ddm_pmin + p->ddm_smin)) {
        p->ddm_pmin = pe;
        p->ddm_smin = s;
    }
    if (p->ddm_smin == 0) {
        p->ddm_state = PERF_DDM_OK;
    } else if (pe + s >= p->ddm_pmin + 3 * p->ddm_smin) {
        p->ddm_state = PERF_DDM_DRIFT;
        p->ddm_drifts++;
        p->ddm_n = p->ddm_err = 0;
        p->ddm_pmin = p->ddm_smin = 0;
    } else if (pe + s >= p->ddm_pmin + 2 * p->ddm_smin) {
        p->ddm_state = PERF_DDM_WARNING;
    } else {
        p->ddm_state = PERF_DDM_OK;
    }
}

/* Is there a split of the ADWIN window whose two means differ? O(n). */
static bool adwin_cut(const perf_t *p)
{
    size_t n = p->adw_n;
    if (n < 10)
        return false;
    double mean = (double)p->adw_sum / (double)n;
    double var = mean * (1 - mean); /* of 0/1 values */
    double lg = log(2.0 / (PERF_ADWIN_DELTA / (double)n));
    size_t s0 = 0;
    for (size_t n0 = 1; n0 < n; n0++) {
        s0 += p->adw[(p->adw_head + n0 - 1) % PERF_ADWIN_MAX];
        size_t n1 = n - n0;
        if (n0 < 5 || n1 < 5)
            continue;
        double mu0 = (double)s0 / (double)n0;
        double mu1 = (double)(p->adw_sum - s0) / (double)n1;
        double m = 1.0 / (1.0 / (double)n0 + 1.0 / (double)n1);
        double eps = sqrt(2.0 * var * lg / m) + 2.0 * lg / (3.0 * m);
        if (fabs(mu0 - mu1) >= eps)
            return true;
    }
    return false;
}

static void adwin_update(perf_t *p, bool error)
{
    if (p->adw_n == PERF_ADWIN_MAX) {
        p->adw_sum -= p->adw[p->adw_head];
        p->adw_head = (p->adw_head + 1) % PERF_ADWIN_MAX;
        p->adw_n--;
    }
    p->adw[(p->adw_head + p->adw_n) % PERF_ADWIN_MAX] = error;
    p->adw_n++;
    p->adw_sum += error;
    bool shrunk = false;
    while (adwin_cut(p)) {
        p->adw_sum -= p->adw[p->adw_head];
        p->adw_head = (p->adw_head + 1) % PERF_ADWIN_MAX;
        p->adw_n--;
        shrunk = true;
    }
    p->adw_drifts += shrunk;
}

size_t perf_adwin_width(const perf_t *p) { return p->adw_n; }
double perf_adwin_mean(const perf_t *p)
{
    return p->adw_n ? (double)p->adw_sum / (double)p->adw_n : (double)NAN;
}
uint64_t perf_adwin_drifts(const perf_t *p) { return p->adw_drifts; }

/* The bin of score @p s: how many of the inner edges k * 0.1 (k = 1..9,
 * computed as numpy's linspace does) lie below it. */
static size_t cal_bin(double s)
{
    const double step = 1.0 / PERF_CAL_BINS;
    size_t b = 0;
    while (b < PERF_CAL_BINS - 1 && (double)(b + 1) * step < s)
        b++;
    return b;
}

static void calibration(const double *score, const int *y, size_t n, perf_metrics_t *pm)
{
    double sum[PERF_CAL_BINS] = {0}, pos[PERF_CAL_BINS] = {0};
    memset(pm->cal_n, 0, sizeof(pm->cal_n));
    for (size_t i = 0; i < n; i++) {
        size_t b = cal_bin(score[i]);
        pm->cal_n[b]++;
        sum[b] += score[i];
        pos[b] += y[i] ? 1 : 0;
    }
    double ece = 0, mce = 0;
    for (size_t b = 0; b < PERF_CAL_BINS; b++) {
        if (!pm->cal_n[b]) {
            pm->cal_score[b] = pm->cal_rate[b] = NAN;
            continue;
        }
        pm->cal_score[b] = sum[b] / (double)pm->cal_n[b];
        pm->cal_rate[b] = pos[b] / (double)pm->cal_n[b];
        double gap = fabs(pm->cal_rate[b] - pm->cal_score[b]);
        ece += (double)pm->cal_n[b] / (double)n * gap;
        if (gap > mce)
            mce = gap;
    }
    pm->ece = n ? ece : (double)NAN;
    pm->mce = n ? mce : (double)NAN;
}

size_t perf_add_labelled(perf_t *p, double score, bool decision, int y, size_t *ticked)
{
    if (!isfinite(score))
        return 0;
    p->labelled++;
    ddm_update(p, decision != (y != 0));
    adwin_update(p, decision != (y != 0));
    size_t n = 0;
    lab_t l = {score, y != 0, decision};
    for (size_t w = 0; w < p->nwin; w++) {
        pwin_t *pw = &p->win[w];
        size_t size = pw->spec.size;
        if (pw->spec.span_ms)
            continue; /* count windows only */
        if (pw->lcount == size) {
            pw->lring[pw->lhead] = l;
            pw->lhead = (pw->lhead + 1) % size;
        } else {
            pw->lring[(pw->lhead + pw->lcount) % size] = l;
            pw->lcount++;
        }
        pw->lseen++;
        if (!ticks_now(&pw->spec, pw->lseen))
            continue;
        size_t m = pw->lcount, ncorrect = 0, npos = 0;
        double ll = 0, brier = 0;
        for (size_t i = 0; i < m; i++) {
            const lab_t *x = &pw->lring[(pw->lhead + i) % size];
            p->sbuf[i] = x->score;
            p->ybuf[i] = x->y;
            npos += (size_t)x->y;
            ncorrect += x->decision == (x->y != 0);
            double c = x->score < 1e-15 ? 1e-15 : x->score > 1 - 1e-15 ? 1 - 1e-15 : x->score;
            ll -= x->y ? log(c) : log1p(-c);
            brier += (x->score - x->y) * (x->score - x->y);
        }
        perf_metrics_t *pm = &pw->pm;
        pm->n = m;
        pm->npos = npos;
        pm->auc = perf_auc(p->sbuf, p->ybuf, m);
        pm->accuracy = (double)ncorrect / (double)m;
        pm->log_loss = ll / (double)m;
        pm->brier = brier / (double)m;
        pm->auc_drop = p->ref_auc - pm->auc;
        calibration(p->sbuf, p->ybuf, m, pm);
        pw->lticks++;
        ticked[n++] = w;
    }
    return n;
}

const perf_metrics_t *perf_metrics(const perf_t *p, size_t w) { return &p->win[w].pm; }
uint64_t perf_score_ticks(const perf_t *p, size_t w) { return p->win[w].sticks; }
uint64_t perf_label_ticks(const perf_t *p, size_t w) { return p->win[w].lticks; }
uint64_t perf_labelled(const perf_t *p) { return p->labelled; }
perf_ddm_state_t perf_ddm_state(const perf_t *p) { return p->ddm_state; }
uint64_t perf_ddm_drifts(const perf_t *p) { return p->ddm_drifts; }

/* ---- the join ---- */

#define JOIN_MAX_PREDS 4

typedef struct jentry {
    int64_t born_ms;
    uint64_t seq;
    char *label; /* set once the label came */
    join_pred_t preds[JOIN_MAX_PREDS];
    size_t npreds;
} jentry_t;

typedef struct jfifo {
    char *event_id;
    uint64_t seq;
    int64_t born_ms;
} jfifo_t;

struct join {
    hmap_t *map; /* event id -> jentry_t */
    jfifo_t *fifo;
    size_t head, count, cap;
    size_t max_pending;
    int64_t lateness_ms;
    uint64_t seq;
    uint64_t expired_preds, expired_labels;
    join_cb *cb;
    void *opaque;
};

static void jentry_free(void *v)
{
    jentry_t *e = v;
    free(e->label);
    free(e);
}

join_t *join_new(size_t max_pending, int64_t lateness_ms, join_cb *cb, void *opaque)
{
    join_t *j = xcalloc(1, sizeof(*j));
    j->map = hmap_new(jentry_free);
    j->max_pending = max_pending ? max_pending : 1;
    j->cap = j->max_pending + 1;
    j->fifo = xcalloc(j->cap, sizeof(jfifo_t));
    j->lateness_ms = lateness_ms;
    j->cb = cb;
    j->opaque = opaque;
    return j;
}

void join_destroy(join_t *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->count; i++)
        free(j->fifo[(j->head + i) % j->cap].event_id);
    free(j->fifo);
    hmap_destroy(j->map);
    free(j);
}

static void drop_oldest(join_t *j)
{
    jfifo_t *f = &j->fifo[j->head];
    jentry_t *e = hmap_get(j->map, f->event_id);
    if (e && e->seq == f->seq) {
        if (!e->label)
            j->expired_preds += e->npreds;
        else if (e->npreds == 0)
            j->expired_labels++;
        jentry_free(hmap_del(j->map, f->event_id));
    }
    free(f->event_id);
    j->head = (j->head + 1) % j->cap;
    j->count--;
}

void join_expire(join_t *j, int64_t now_ms)
{
    while (j->count && now_ms - j->fifo[j->head].born_ms > j->lateness_ms)
        drop_oldest(j);
}

static jentry_t *entry_for(join_t *j, const char *event_id, int64_t now_ms)
{
    jentry_t *e = hmap_get(j->map, event_id);
    if (e)
        return e;
    while (j->count >= j->max_pending)
        drop_oldest(j);
    e = xcalloc(1, sizeof(*e));
    e->born_ms = now_ms;
    e->seq = ++j->seq;
    hmap_put(j->map, event_id, e);
    jfifo_t *f = &j->fifo[(j->head + j->count) % j->cap];
    f->event_id = xstrdup(event_id);
    f->seq = e->seq;
    f->born_ms = now_ms;
    j->count++;
    return e;
}

void join_prediction(join_t *j, const char *event_id, const join_pred_t *pred, int64_t now_ms)
{
    join_expire(j, now_ms);
    jentry_t *e = entry_for(j, event_id, now_ms);
    if (e->label) {
        j->cb(pred, e->label, j->opaque);
        e->npreds++; /* counted, so an expiry does not call the label unjoined */
        return;
    }
    if (e->npreds == JOIN_MAX_PREDS) {
        j->expired_preds++;
        return;
    }
    e->preds[e->npreds++] = *pred;
}

void join_label(join_t *j, const char *event_id, const char *label, int64_t now_ms)
{
    join_expire(j, now_ms);
    jentry_t *e = entry_for(j, event_id, now_ms);
    if (e->label)
        return; /* a repeated label: the first one counts */
    e->label = xstrdup(label);
    size_t n = e->npreds < JOIN_MAX_PREDS ? e->npreds : JOIN_MAX_PREDS;
    for (size_t i = 0; i < n; i++)
        j->cb(&e->preds[i], e->label, j->opaque);
}

size_t join_pending(const join_t *j) { return j->count; }
uint64_t join_expired_predictions(const join_t *j) { return j->expired_preds; }
uint64_t join_expired_labels(const join_t *j) { return j->expired_labels; }
