/* A monitored model's input-drift state (see dstate.h). */
#include "dstate.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "hmap.h"
#include "window.h"

typedef struct dfeat {
    char *name;
    bool numeric;
    double *ref; /* finite reference values (categorical: codes) */
    size_t nref;
    bool has_sample;
    hmap_t *codes; /* category -> (code + 1), categorical only */
    size_t ncodes;
} dfeat_t;

/* one open event-time window */
typedef struct bucket {
    int64_t start;
    double **vals; /* per feature */
    size_t *n, *cap;
} bucket_t;

typedef struct dwin {
    dstate_win_t spec;
    bucket_t open[DSTATE_MAX_OPEN]; /* ascending by start */
    size_t nopen;
    bucket_t closed[DSTATE_MAX_PANES]; /* sliding: closed panes a later window overlaps */
    size_t nclosed;
    int64_t first_pane;  /* sliding: start of the first pane closed (INT64_MIN: none yet) */
    int64_t max_ms;      /* largest event time seen */
    int64_t closed_upto; /* windows starting before this are closed */
    int64_t tick_start;
    char name[48];
    uint64_t ticks;
    uint64_t tick_event;
    double share;
    bool drifted;
    window_t **w;      /* one per feature */
    dstate_col_t *res; /* one per feature */
} dwin_t;

struct dstate {
    char *model, *version, *spec_name;
    double drift_share;
    dfeat_t *feat;
    size_t nfeat;
    dwin_t win[DSTATE_MAX_WINDOWS];
    size_t nwin;
    uint64_t events, rejected, late, dropped;
    double *buf;        /* largest window size */
    drift_result_t *rs; /* nfeat, for drift_dataset */
};

int dstate_parse_windows(const char *s, dstate_win_t *out, char *err, size_t err_size)
{
    if (!s || !*s) {
        snprintf(err, err_size, "windows: empty list");
        return -1;
    }
    int n = 0;
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, err_size, "windows: item %d: expected SIZE or SIZE/STEP", n + 1);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = 0;
        if (n == DSTATE_MAX_WINDOWS) {
            snprintf(err, err_size, "windows: at most %d windows", DSTATE_MAX_WINDOWS);
            return -1;
        }
        memset(&out[n], 0, sizeof(out[n]));
        if (item[strspn(item, "0123456789")] != 0 && item[strspn(item, "0123456789")] != '/') {
            /* an event-time window: SPAN[+LATENESS] */
            char *plus = strchr(item, '+');
            if (plus)
                *plus = 0;
            char *slash = strchr(item, '/');
            if (slash)
                *slash = 0;
            int64_t span = alert_duration_ms(item), late = plus ? alert_duration_ms(plus + 1) : 0;
            int64_t hop = slash ? alert_duration_ms(slash + 1) : 0;
            if (span < 1 || late < 0 || strspn(item, "0123456789") == 0 ||
                (slash && (hop < 1 || strspn(slash + 1, "0123456789") == 0))) {
                snprintf(err, err_size,
                         "windows: item %d ('%.*s'): expected a duration such as 1h or 30m, "
                         "optionally /HOP (1h/15m) and +LATENESS (1h+5m)",
                         n + 1, (int)len, p);
                return -1;
            }
            if (slash && (hop > span || span % hop || span / hop > DSTATE_MAX_PANES)) {
                snprintf(err, err_size,
                         "windows: item %d ('%.*s'): the span must be a multiple of the hop, "
                         "at most %d hops",
                         n + 1, (int)len, p, DSTATE_MAX_PANES);
                return -1;
            }
            out[n].span_ms = span;
            out[n].hop_ms = hop == span ? 0 : hop;
            out[n].lateness_ms = late;
            n++;
            if (!end)
                break;
            p = end + 1;
            if (!*p) {
                snprintf(err, err_size, "windows: trailing comma");
                return -1;
            }
            continue;
        }
        char *slash = strchr(item, '/');
        if (slash)
            *slash = 0;
        int64_t size = 0, step = 0;
        if (parse_int64(item, &size) || size < 1 || size > 10000000 ||
            (slash && (parse_int64(slash + 1, &step) || step < 1 || step > size))) {
            snprintf(err, err_size,
                     "windows: item %d ('%.*s'): expected SIZE or SIZE/STEP with 1 <= STEP <= "
                     "SIZE <= 10000000",
                     n + 1, (int)len, p);
            return -1;
        }
        out[n].size = (size_t)size;
        out[n].step = slash ? (size_t)step : (size_t)size;
        n++;
        if (!end)
            break;
        p = end + 1;
        if (!*p) {
            snprintf(err, err_size, "windows: trailing comma");
            return -1;
        }
    }
    return n;
}

/* The code of a category, assigned on first sight (the last code is the
 * shared "other" once the map is full). */
static double cat_code(dfeat_t *f, const char *s, bool assign)
{
    void *v = hmap_get(f->codes, s);
    if (v)
        return (double)((uintptr_t)v - 1);
    if (!assign)
        return -1;
    if (f->ncodes >= DSTATE_MAX_CATEGORIES)
        return (double)DSTATE_MAX_CATEGORIES;
    hmap_put(f->codes, s, (void *)(uintptr_t)(f->ncodes + 1));
    return (double)f->ncodes++;
}

/* "1h", "90s", "250ms": the largest unit that divides the span. */
static void fmt_span(int64_t ms, char *out, size_t size)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (ms % units[i].ms == 0) {
            snprintf(out, size, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
}

static void bucket_cleanup(bucket_t *b, size_t nfeat)
{
    if (b->vals)
        for (size_t f = 0; f < nfeat; f++)
            free(b->vals[f]);
    free(b->vals);
    free(b->n);
    free(b->cap);
    memset(b, 0, sizeof(*b));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

dstate_t *dstate_new(const json_t *doc, const char *version, const dstate_win_t *wins, size_t nwins,
                     double drift_share, char *err, size_t err_size)
{
    dstate_t *d = NULL;
    const char *name = json_string_value(json_object_get(doc, "name"));
    const json_t *spec = json_object_get(doc, "spec");
    const char *spec_name = json_string_value(json_object_get(spec, "name"));
    const json_t *inputs = json_object_get(json_object_get(doc, "profile"), "inputs");
    if (!name || !*name) {
        snprintf(err, err_size, "name: missing or not a string");
        return NULL;
    }
    if (!spec_name) {
        snprintf(err, err_size, "spec.name: missing or not a string");
        return NULL;
    }
    if (!json_is_array(inputs) || json_array_size(inputs) == 0) {
        snprintf(err, err_size, "profile.inputs: missing or empty");
        return NULL;
    }
    if (nwins < 1 || nwins > DSTATE_MAX_WINDOWS) {
        snprintf(err, err_size, "windows: between 1 and %d needed", DSTATE_MAX_WINDOWS);
        return NULL;
    }
    if (!(drift_share > 0 && drift_share <= 1)) {
        snprintf(err, err_size, "drift_share: must be in (0, 1]");
        return NULL;
    }
    d = xcalloc(1, sizeof(*d));
    d->model = xstrdup(name);
    d->version = xstrdup(version ? version : "0");
    d->spec_name = xstrdup(spec_name);
    d->drift_share = drift_share;
    d->nfeat = json_array_size(inputs);
    d->feat = xcalloc(d->nfeat, sizeof(dfeat_t));
    d->rs = xcalloc(d->nfeat, sizeof(drift_result_t));
    for (size_t i = 0; i < d->nfeat; i++) {
        const json_t *in = json_array_get(inputs, i);
        dfeat_t *f = &d->feat[i];
        const char *col = json_string_value(json_object_get(in, "column"));
        const char *kind = json_string_value(json_object_get(in, "kind"));
        if (!col || !kind || (strcmp(kind, "numeric") && strcmp(kind, "categorical"))) {
            snprintf(err, err_size,
                     "profile.inputs[%zu]: needs a column and a kind (numeric or categorical)", i);
            goto fail;
        }
        f->name = xstrdup(col);
        f->numeric = !strcmp(kind, "numeric");
        if (!f->numeric)
            f->codes = hmap_new(NULL);
        const json_t *sample = json_object_get(in, "sample");
        if (!json_is_array(sample))
            continue; /* sample off: not tested */
        f->has_sample = true;
        f->ref = xmalloc((json_array_size(sample) + 1) * sizeof(double));
        size_t k;
        const json_t *v;
        json_array_foreach(sample, k, v)
        {
            if (f->numeric) {
                if (!json_is_number(v)) {
                    snprintf(err, err_size, "profile.inputs[%zu].sample[%zu]: not a number", i, k);
                    goto fail;
                }
                double x = json_number_value(v);
                if (isfinite(x))
                    f->ref[f->nref++] = x;
            } else {
                char num[32];
                const char *s = json_string_value(v);
                if (!s && json_is_number(v)) {
                    fmt_double_rt(json_number_value(v), num);
                    s = num;
                }
                if (!s) {
                    snprintf(err, err_size, "profile.inputs[%zu].sample[%zu]: not a category", i,
                             k);
                    goto fail;
                }
                f->ref[f->nref++] = cat_code(f, s, true);
            }
        }
        qsort(f->ref, f->nref, sizeof(double), cmp_double);
    }
    size_t maxsize = 1;
    d->nwin = nwins;
    for (size_t w = 0; w < nwins; w++) {
        dwin_t *dw = &d->win[w];
        dw->spec = wins[w];
        dw->closed_upto = INT64_MIN;
        dw->max_ms = INT64_MIN;
        dw->first_pane = INT64_MIN;
        if (wins[w].span_ms) {
            fmt_span(wins[w].span_ms, dw->name, sizeof(dw->name));
            if (wins[w].hop_ms) {
                size_t l = strlen(dw->name);
                dw->name[l++] = '/';
                fmt_span(wins[w].hop_ms, dw->name + l, sizeof(dw->name) - l);
            }
            if (wins[w].lateness_ms) {
                size_t l = strlen(dw->name);
                dw->name[l++] = '+';
                fmt_span(wins[w].lateness_ms, dw->name + l, sizeof(dw->name) - l);
            }
        } else if (wins[w].step == wins[w].size)
            snprintf(dw->name, sizeof(dw->name), "%zu", wins[w].size);
        else
            snprintf(dw->name, sizeof(dw->name), "%zu/%zu", wins[w].size, wins[w].step);
        dw->share = NAN;
        dw->w = xcalloc(d->nfeat, sizeof(window_t *));
        dw->res = xcalloc(d->nfeat, sizeof(dstate_col_t));
        for (size_t f = 0; f < d->nfeat; f++) {
            snprintf(dw->res[f].error, sizeof(dw->res[f].error), "no tick yet");
            if (wins[w].span_ms)
                continue;
            /* the window's own step (dstate ticks by records, not by the window's
             * values): a tumbling window then keeps no treap (window.h) */
            dw->w[f] = window_new(wins[w].size, wins[w].step, err, err_size);
            if (!dw->w[f])
                goto fail;
        }
        if (wins[w].size > maxsize)
            maxsize = wins[w].size;
    }
    d->buf = xmalloc(maxsize * sizeof(double));
    return d;
fail:
    dstate_destroy(d);
    return NULL;
}

void dstate_destroy(dstate_t *d)
{
    if (!d)
        return;
    for (size_t w = 0; w < d->nwin; w++) {
        for (size_t b = 0; b < d->win[w].nopen; b++)
            bucket_cleanup(&d->win[w].open[b], d->nfeat);
        for (size_t b = 0; b < d->win[w].nclosed; b++)
            bucket_cleanup(&d->win[w].closed[b], d->nfeat);
        if (d->win[w].w)
            for (size_t f = 0; f < d->nfeat; f++)
                window_destroy(d->win[w].w[f]);
        free(d->win[w].w);
        free(d->win[w].res);
    }
    for (size_t i = 0; i < d->nfeat; i++) {
        free(d->feat[i].name);
        free(d->feat[i].ref);
        if (d->feat[i].codes)
            hmap_destroy(d->feat[i].codes);
    }
    free(d->feat);
    free(d->rs);
    free(d->buf);
    free(d->model);
    free(d->version);
    free(d->spec_name);
    free(d);
}

const char *dstate_model(const dstate_t *d) { return d->model; }
const char *dstate_version(const dstate_t *d) { return d->version; }
const char *dstate_spec_name(const dstate_t *d) { return d->spec_name; }
size_t dstate_nfeatures(const dstate_t *d) { return d->nfeat; }
const char *dstate_feature(const dstate_t *d, size_t f) { return d->feat[f].name; }
bool dstate_feature_numeric(const dstate_t *d, size_t f) { return d->feat[f].numeric; }
size_t dstate_ref_count(const dstate_t *d, size_t f) { return d->feat[f].nref; }
size_t dstate_nwindows(const dstate_t *d) { return d->nwin; }
const char *dstate_window_name(const dstate_t *d, size_t w) { return d->win[w].name; }
uint64_t dstate_events(const dstate_t *d) { return d->events; }
uint64_t dstate_rejected(const dstate_t *d) { return d->rejected; }
uint64_t dstate_late(const dstate_t *d) { return d->late; }
int64_t dstate_window_span(const dstate_t *d, size_t w) { return d->win[w].spec.span_ms; }
int64_t dstate_tick_start(const dstate_t *d, size_t w) { return d->win[w].tick_start; }
uint64_t dstate_ticks(const dstate_t *d, size_t w) { return d->win[w].ticks; }
uint64_t dstate_tick_event(const dstate_t *d, size_t w) { return d->win[w].tick_event; }
double dstate_drift_share_threshold(const dstate_t *d) { return d->drift_share; }

const dstate_col_t *dstate_result(const dstate_t *d, size_t w, size_t f)
{
    return &d->win[w].res[f];
}

double dstate_share(const dstate_t *d, size_t w, bool *drifted)
{
    if (drifted)
        *drifted = d->win[w].drifted;
    return d->win[w].share;
}

size_t dstate_window_sorted(const dstate_t *d, size_t w, size_t f, double *out)
{
    return d->win[w].w ? window_sorted(d->win[w].w[f], out) : 0;
}

double dstate_category_code(const dstate_t *d, size_t f, const char *s)
{
    if (d->feat[f].numeric)
        return -1;
    return cat_code(&d->feat[f], s, false);
}

/* Recompute every input's test for window @p w: on the count window's
 * contents, or on bucket @p b's values for an event-time window. */
static void tick(dstate_t *d, size_t w, const bucket_t *b)
{
    dwin_t *dw = &d->win[w];
    size_t nok = 0;
    for (size_t f = 0; f < d->nfeat; f++) {
        dfeat_t *fe = &d->feat[f];
        dstate_col_t *c = &dw->res[f];
        c->computed = false;
        c->error[0] = 0;
        if (!fe->has_sample) {
            snprintf(c->error, sizeof(c->error), "no reference sample in the model");
            continue;
        }
        const double *vals = d->buf;
        size_t n;
        if (b) {
            vals = b->vals[f];
            n = b->n[f];
        } else {
            n = window_sorted(dw->w[f], d->buf);
        }
        if (n == 0) {
            snprintf(c->error, sizeof(c->error), "no values in the window");
            continue;
        }
        if (drift_column(fe->numeric, fe->ref, fe->nref, vals, n, DRIFT_TEST_AUTO, NAN, &c->r,
                         c->error, sizeof(c->error)))
            continue;
        c->computed = true;
        d->rs[nok++] = c->r;
    }
    double share = NAN;
    dw->drifted = nok ? drift_dataset(d->rs, nok, d->drift_share, &share) : false;
    if (!nok)
        share = NAN;
    dw->share = share;
    dw->ticks++;
    dw->tick_event = d->events;
    dw->tick_start = b ? b->start : 0;
}

/* Note a tick of window @p w once (several event-time windows may close on
 * one record: each is tested, the latest result is what is kept). */
static void add_tick(size_t *ticked, size_t *n, size_t w)
{
    for (size_t i = 0; i < *n; i++)
        if (ticked[i] == w)
            return;
    ticked[(*n)++] = w;
}

/* The pane width of an event-time window: the hop, or the span when tumbling. */
static int64_t pane_ms(const dstate_win_t *s) { return s->hop_ms ? s->hop_ms : s->span_ms; }

/* Close the oldest open pane of an event-time window and test the window
 * that ends with it; false if that window was not tested. */
static bool close_oldest(dstate_t *d, size_t w)
{
    dwin_t *dw = &d->win[w];
    bucket_t b = dw->open[0];
    memmove(&dw->open[0], &dw->open[1], (dw->nopen - 1) * sizeof(bucket_t));
    dw->nopen--;
    memset(&dw->open[dw->nopen], 0, sizeof(bucket_t));
    int64_t end = b.start + pane_ms(&dw->spec);
    dw->closed_upto = end;
    if (!dw->spec.hop_ms) {
        tick(d, w, &b);
        bucket_cleanup(&b, d->nfeat);
        return true;
    }
    /* sliding: drop the kept panes that end at or before this window's start */
    int64_t start = end - dw->spec.span_ms;
    size_t keep = 0;
    for (size_t i = 0; i < dw->nclosed; i++) {
        if (dw->closed[i].start >= start)
            dw->closed[keep++] = dw->closed[i];
        else
            bucket_cleanup(&dw->closed[i], d->nfeat);
    }
    dw->nclosed = keep;
    if (dw->first_pane == INT64_MIN)
        dw->first_pane = b.start;
    if (start < dw->first_pane) {
        /* the stream does not cover this window yet: it would hold a fraction
         * of a window's records (a small sample drifts by chance); keep the
         * pane for the windows after it */
        dw->closed[dw->nclosed++] = b;
        return false;
    }
    /* the window: the kept panes (ascending) and this one, values in time-pane order */
    bucket_t u = {.start = start};
    u.vals = xcalloc(d->nfeat, sizeof(double *));
    u.n = xcalloc(d->nfeat, sizeof(size_t));
    u.cap = xcalloc(d->nfeat, sizeof(size_t));
    for (size_t f = 0; f < d->nfeat; f++) {
        size_t tot = b.n[f];
        for (size_t i = 0; i < dw->nclosed; i++)
            tot += dw->closed[i].n[f];
        u.vals[f] = xmalloc((tot ? tot : 1) * sizeof(double));
        u.cap[f] = tot;
        for (size_t i = 0; i <= dw->nclosed; i++) {
            const bucket_t *src = i < dw->nclosed ? &dw->closed[i] : &b;
            if (src->n[f])
                memcpy(u.vals[f] + u.n[f], src->vals[f], src->n[f] * sizeof(double));
            u.n[f] += src->n[f];
        }
    }
    tick(d, w, &u);
    bucket_cleanup(&u, d->nfeat);
    /* keep this pane for the later windows that overlap it (the next one
     * starts at end + hop - span < end); the next close drops what no longer
     * overlaps, so at most span / hop panes are kept */
    dw->closed[dw->nclosed++] = b;
    return true;
}

/* The open bucket for event time @p t, created if needed; NULL if late. */
static bucket_t *bucket_for(dstate_t *d, size_t w, int64_t t, size_t *ticked, size_t *nticked)
{
    dwin_t *dw = &d->win[w];
    int64_t span = pane_ms(&dw->spec);
    int64_t start = (t >= 0 ? t / span : -((-t - 1) / span) - 1) * span;
    if (dw->closed_upto != INT64_MIN && start < dw->closed_upto)
        return NULL;
    size_t i = 0;
    while (i < dw->nopen && dw->open[i].start < start)
        i++;
    if (i < dw->nopen && dw->open[i].start == start)
        return &dw->open[i];
    if (dw->nopen == DSTATE_MAX_OPEN) {
        if (i == 0)
            return NULL; /* older than every open one and no room: late */
        if (close_oldest(d, w))
            add_tick(ticked, nticked, w);
        i--;
    }
    memmove(&dw->open[i + 1], &dw->open[i], (dw->nopen - i) * sizeof(bucket_t));
    dw->nopen++;
    bucket_t *b = &dw->open[i];
    memset(b, 0, sizeof(*b));
    b->start = start;
    b->vals = xcalloc(d->nfeat, sizeof(double *));
    b->n = xcalloc(d->nfeat, sizeof(size_t));
    b->cap = xcalloc(d->nfeat, sizeof(size_t));
    return b;
}

static void bucket_add(dstate_t *d, bucket_t *b, size_t f, double x)
{
    if (b->n[f] == b->cap[f]) {
        if (b->cap[f] >= DSTATE_MAX_TIME_VALUES) {
            d->dropped++;
            return;
        }
        b->cap[f] = b->cap[f] ? 2 * b->cap[f] : 64;
        b->vals[f] = xrealloc(b->vals[f], b->cap[f] * sizeof(double));
    }
    b->vals[f][b->n[f]++] = x;
}

size_t dstate_add(dstate_t *d, const json_t *values, int64_t event_ms, size_t *ticked)
{
    d->events++;
    size_t n = 0;
    /* times beyond +-9e15 ms (about 285,000 years) are not times: start + span
     * must not overflow */
    if (event_ms != DSTATE_NO_TIME &&
        (event_ms > 9000000000000000LL || event_ms < -9000000000000000LL))
        event_ms = DSTATE_NO_TIME;
    /* the event-time windows' bucket for this record (NULL: late or no time) */
    bucket_t *bk[DSTATE_MAX_WINDOWS] = {0};
    bool counted_late = false;
    for (size_t w = 0; w < d->nwin; w++) {
        if (!d->win[w].spec.span_ms)
            continue;
        bk[w] = event_ms == DSTATE_NO_TIME ? NULL : bucket_for(d, w, event_ms, ticked, &n);
        if (!bk[w] && !counted_late) {
            d->late++;
            counted_late = true;
        }
    }
    for (size_t f = 0; f < d->nfeat; f++) {
        dfeat_t *fe = &d->feat[f];
        const json_t *v = json_object_get(values, fe->name);
        double x;
        if (!v || json_is_null(v))
            continue;
        if (fe->numeric) {
            if (json_is_number(v))
                x = json_number_value(v);
            else if (json_is_boolean(v))
                x = json_is_true(v);
            else {
                d->rejected++;
                continue;
            }
        } else {
            char num[32];
            const char *s = json_string_value(v);
            if (!s && json_is_number(v)) {
                fmt_double_rt(json_number_value(v), num);
                s = num;
            } else if (!s && json_is_boolean(v))
                s = json_is_true(v) ? "true" : "false";
            if (!s) {
                d->rejected++;
                continue;
            }
            x = cat_code(fe, s, true);
        }
        for (size_t w = 0; w < d->nwin; w++) {
            if (!d->win[w].spec.span_ms)
                (void)window_add(d->win[w].w[f], x);
            else if (bk[w])
                bucket_add(d, bk[w], f, x);
        }
    }
    for (size_t w = 0; w < d->nwin; w++) {
        dwin_t *dw = &d->win[w];
        const dstate_win_t *s = &dw->spec;
        if (s->span_ms) {
            if (event_ms == DSTATE_NO_TIME)
                continue;
            if (event_ms > dw->max_ms)
                dw->max_ms = event_ms;
            /* close what the watermark (max time - lateness) has passed */
            while (dw->nopen && dw->open[0].start + pane_ms(s) <= dw->max_ms - s->lateness_ms) {
                if (close_oldest(d, w))
                    add_tick(ticked, &n, w);
            }
        } else if (d->events >= s->size && (d->events - s->size) % s->step == 0) {
            tick(d, w, NULL);
            add_tick(ticked, &n, w);
        }
    }
    return n;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *dstate_json(const dstate_t *d)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I}", "model", d->model, "version", d->version,
                          "spec", d->spec_name, "events", (json_int_t)d->events, "rejected",
                          (json_int_t)d->rejected);
    json_t *wins = json_array();
    for (size_t w = 0; w < d->nwin; w++) {
        const dwin_t *dw = &d->win[w];
        json_t *jw =
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:b, s:f}", "window", dw->name, "size",
                      (json_int_t)dw->spec.size, "step", (json_int_t)dw->spec.step, "ticks",
                      (json_int_t)dw->ticks, "tick_event", (json_int_t)dw->tick_event,
                      "drift_share", num_or_null(dw->share), "dataset_drift", dw->drifted,
                      "drift_share_threshold", d->drift_share);
        json_t *feats = json_array();
        for (size_t f = 0; f < d->nfeat; f++) {
            const dstate_col_t *c = &dw->res[f];
            json_t *jf = json_pack("{s:s, s:s, s:I}", "feature", d->feat[f].name, "kind",
                                   d->feat[f].numeric ? "numeric" : "categorical", "n_ref",
                                   (json_int_t)d->feat[f].nref);
            if (c->computed) {
                json_object_set_new(jf, "test", json_string(drift_test_name(c->r.test)));
                json_object_set_new(jf, "value", num_or_null(c->r.value));
                json_object_set_new(jf, "threshold", num_or_null(c->r.threshold));
                json_object_set_new(jf, "drifted", json_boolean(c->r.drifted));
                json_object_set_new(jf, "n_cur", json_integer((json_int_t)c->r.n_cur));
                if (!isfinite(c->r.value) && !isnan(c->r.value))
                    json_object_set_new(jf, "value_text",
                                        json_string(c->r.value > 0 ? "inf" : "-inf"));
            } else {
                json_object_set_new(jf, "error", json_string(c->error));
            }
            json_array_append_new(feats, jf);
        }
        if (dw->spec.span_ms) {
            json_object_set_new(jw, "span_ms", json_integer((json_int_t)dw->spec.span_ms));
            json_object_set_new(jw, "hop_ms", json_integer((json_int_t)pane_ms(&dw->spec)));
            json_object_set_new(jw, "lateness_ms", json_integer((json_int_t)dw->spec.lateness_ms));
            json_object_set_new(jw, "tick_start_ms", json_integer((json_int_t)dw->tick_start));
            json_object_set_new(jw, "open", json_integer((json_int_t)dw->nopen));
        }
        json_object_set_new(jw, "features", feats);
        json_array_append_new(wins, jw);
    }
    json_object_set_new(j, "late", json_integer((json_int_t)d->late));
    json_object_set_new(j, "dropped", json_integer((json_int_t)d->dropped));
    json_object_set_new(j, "windows", wins);
    return j;
}
