#include "rolling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "RLS2"

typedef struct entry {
    int64_t t_ms;
    int64_t offset;
    uint64_t seq;
    int32_t partition;
    uint32_t source; /* rolling_source_id() of the input topic */
} entry_t;

struct rolling_state {
    size_t nvals; /* one value slot per rolling feature (count ones unused) */
    entry_t *e;   /* in application (seq) order */
    double *vals; /* nvals per entry, NaN = missing */
    size_t n, cap;
    uint64_t next_seq;
    int64_t max_t;
    int64_t keep_ms; /* 2 x the longest window */
};

static size_t nvals_of(const spec_t *spec) { return spec->nrolling; }

static int64_t keep_of(const spec_t *spec)
{
    int64_t w = 0;
    for (size_t i = 0; i < spec->nderived; i++)
        if (spec->derived[i].window_ms > w)
            w = spec->derived[i].window_ms;
    return 2 * w;
}

rolling_state_t *rolling_new(const spec_t *spec)
{
    rolling_state_t *st = xcalloc(1, sizeof(*st));
    st->nvals = nvals_of(spec);
    st->keep_ms = keep_of(spec);
    st->max_t = INT64_MIN;
    return st;
}

void rolling_destroy(rolling_state_t *st)
{
    if (!st)
        return;
    free(st->e);
    free(st->vals);
    free(st);
}

size_t rolling_size(const rolling_state_t *st) { return st->n; }

static void reserve(rolling_state_t *st, size_t n)
{
    if (n <= st->cap)
        return;
    size_t cap = st->cap ? st->cap * 2 : 8;
    while (cap < n)
        cap *= 2;
    st->e = xrealloc(st->e, cap * sizeof(entry_t));
    st->vals = xrealloc(st->vals, cap * (st->nvals ? st->nvals : 1) * sizeof(double));
    st->cap = cap;
}

static void drop_front(rolling_state_t *st, size_t k)
{
    if (!k)
        return;
    memmove(st->e, st->e + k, (st->n - k) * sizeof(entry_t));
    if (st->nvals)
        memmove(st->vals, st->vals + k * st->nvals, (st->n - k) * st->nvals * sizeof(double));
    st->n -= k;
}

static void prune(rolling_state_t *st)
{
    /* entries are in seq order, not time order: drop the old ones wherever they are */
    size_t w = 0;
    int64_t limit = st->max_t - st->keep_ms;
    for (size_t r = 0; r < st->n; r++) {
        if (st->keep_ms && st->e[r].t_ms < limit && st->max_t != INT64_MIN)
            continue;
        if (w != r) {
            st->e[w] = st->e[r];
            if (st->nvals)
                memcpy(st->vals + w * st->nvals, st->vals + r * st->nvals,
                       st->nvals * sizeof(double));
        }
        w++;
    }
    st->n = w;
    if (st->n > ROLLING_MAX_ENTRIES)
        drop_front(st, st->n - ROLLING_MAX_ENTRIES);
}

/* Fill the row's rolling columns with the aggregates as of entry k. */
static void aggregate(const spec_t *spec, const rolling_state_t *st, size_t k, spec_row_t *row)
{
    const entry_t *cur = &st->e[k];
    size_t slot = 0;
    for (size_t i = 0; i < spec->nderived; i++) {
        const spec_derived_t *d = &spec->derived[i];
        if (d->op < SPEC_OP_ROLLING_COUNT)
            continue;
        double count = 0, sum = 0, n = 0;
        for (size_t j = 0; j < st->n; j++) {
            const entry_t *e = &st->e[j];
            if (e->seq > cur->seq || e->t_ms > cur->t_ms || e->t_ms <= cur->t_ms - d->window_ms)
                continue;
            count++;
            double v = st->vals[j * st->nvals + slot];
            if (!isnan(v)) {
                sum += v;
                n++;
            }
        }
        spec_value_t *out = &row->values[d->out];
        out->kind = SPEC_V_NUM;
        if (d->op == SPEC_OP_ROLLING_COUNT) {
            out->num = count;
        } else if (n == 0) {
            out->kind = SPEC_V_MISSING; /* no value in the window (pandas: NaN) */
        } else if (d->op == SPEC_OP_ROLLING_SUM) {
            out->num = sum; /* over the non-missing values, as pandas does */
        } else {
            out->num = sum / n;
        }
        slot++;
    }
}

uint32_t rolling_source_id(const char *topic)
{
    return topic ? (uint32_t)spec_murmur3_32(topic, strlen(topic), 0) : 0;
}

int rolling_apply(const spec_t *spec, rolling_state_t *st, spec_row_t *row, uint32_t source,
                  int32_t partition, int64_t offset)
{
    for (size_t k = st->n; k-- > 0;) {
        if (st->e[k].partition == partition && st->e[k].offset == offset &&
            st->e[k].source == source) {
            aggregate(spec, st, k, row);
            return 1;
        }
    }
    reserve(st, st->n + 1);
    entry_t *e = &st->e[st->n];
    e->t_ms = row->event_time_ms;
    e->partition = partition;
    e->source = source;
    e->offset = offset;
    e->seq = st->next_seq++;
    size_t slot = 0;
    for (size_t i = 0; i < spec->nderived; i++) {
        const spec_derived_t *d = &spec->derived[i];
        if (d->op < SPEC_OP_ROLLING_COUNT)
            continue;
        double v = NAN;
        if (d->input >= 0 && row->values[d->input].kind == SPEC_V_NUM)
            v = row->values[d->input].num;
        st->vals[st->n * st->nvals + slot++] = v;
    }
    st->n++;
    if (row->event_time_ms > st->max_t)
        st->max_t = row->event_time_ms;
    aggregate(spec, st, st->n - 1, row);
    prune(st);
    return 0;
}

/* ---- encoding: MAGIC, u32 nvals, u32 n, u64 next_seq, i64 max_t, then per entry
 *      i64 t, i64 offset, u64 seq, i32 partition, u32 source, f64 x nvals
 *      (host byte order) ---- */

static void put(strbuf_t *out, const void *p, size_t n) { strbuf_append(out, p, n); }

void rolling_encode(const rolling_state_t *st, strbuf_t *out)
{
    uint32_t nv = (uint32_t)st->nvals, n = (uint32_t)st->n;
    put(out, MAGIC, 4);
    put(out, &nv, 4);
    put(out, &n, 4);
    put(out, &st->next_seq, 8);
    put(out, &st->max_t, 8);
    for (size_t i = 0; i < st->n; i++) {
        put(out, &st->e[i].t_ms, 8);
        put(out, &st->e[i].offset, 8);
        put(out, &st->e[i].seq, 8);
        put(out, &st->e[i].partition, 4);
        put(out, &st->e[i].source, 4);
        if (st->nvals)
            put(out, st->vals + i * st->nvals, st->nvals * 8);
    }
}

rolling_state_t *rolling_decode(const spec_t *spec, const void *buf, size_t len, char *errstr,
                                size_t errstr_size)
{
    const unsigned char *p = buf;
    uint32_t nv, n;
    if (len < 28 || memcmp(p, MAGIC, 4)) {
        snprintf(errstr, errstr_size, "rolling state: not a state (bad magic or size)");
        return NULL;
    }
    memcpy(&nv, p + 4, 4);
    memcpy(&n, p + 8, 4);
    if (nv != nvals_of(spec)) {
        snprintf(errstr, errstr_size,
                 "rolling state: %u rolling inputs stored, the spec has %zu (spec changed)", nv,
                 nvals_of(spec));
        return NULL;
    }
    size_t per = 32 + (size_t)nv * 8;
    if (n > ROLLING_MAX_ENTRIES * 2 || len != 28 + (size_t)n * per) {
        snprintf(errstr, errstr_size, "rolling state: size %zu does not match %u entries", len, n);
        return NULL;
    }
    rolling_state_t *st = rolling_new(spec);
    memcpy(&st->next_seq, p + 12, 8);
    memcpy(&st->max_t, p + 20, 8);
    reserve(st, n ? n : 1);
    const unsigned char *q = p + 28;
    for (uint32_t i = 0; i < n; i++, q += per) {
        memcpy(&st->e[i].t_ms, q, 8);
        memcpy(&st->e[i].offset, q + 8, 8);
        memcpy(&st->e[i].seq, q + 16, 8);
        memcpy(&st->e[i].partition, q + 24, 4);
        memcpy(&st->e[i].source, q + 28, 4);
        if (nv)
            memcpy(st->vals + (size_t)i * nv, q + 32, (size_t)nv * 8);
    }
    st->n = n;
    return st;
}
