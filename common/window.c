/*
 * window.c: count windows with an order-statistics treap (see window.h).
 *
 * Nodes live in one pool indexed from 1 (0 is "none"); a node is one
 * distinct value with its multiplicity (cnt) and the total multiplicity of
 * its subtree (sum). Priorities come from a xorshift generator seeded per
 * window, so the tree is balanced in expectation whatever the input order.
 *
 * A tumbling window (step == size) has no treap: its values are only read
 * once per tick, after @p size new ones, so it keeps the ring alone (O(1)
 * per value) and sorts a copy of it when it is read after a change (an LSD
 * radix sort on the bits of the doubles, O(size) per tick: O(1) per value
 * amortised). Treap updates cost a cache miss per level on windows that do
 * not fit in the cache; the ring costs one store.
 */
#include "window.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wnode {
    double key;
    uint32_t cnt, sum;
    uint32_t left, right;
    uint32_t prio;
} wnode_t;

struct window {
    size_t size, step;
    double *ring; /* insertion order, size slots */
    size_t head;  /* index of the oldest value */
    size_t count;
    size_t since_tick;
    size_t ticks;
    wnode_t *pool; /* size + 1 nodes, [0] unused */
    uint32_t *free_list;
    size_t nfree;
    uint32_t root;
    size_t distinct;
    uint64_t rng;
    /* tumbling windows (lazy): the ring sorted on demand */
    bool lazy;
    bool dirty;       /* the ring changed since sorted was made */
    double *sorted;   /* count values ascending, when !dirty */
    uint64_t *keys;   /* radix sort scratch, 2 * size */
    size_t ldistinct; /* distinct values in sorted */
    uint32_t *cnt;    /* radix digit counts, RADIX_PASSES x RADIX_NB */
};

/* the radix sort of tumbling windows: digits of RADIX_BITS bits */
#define RADIX_BITS 11 /* 6 passes; 8 (8 passes) and 16 (4 passes) measured slower */
#define RADIX_NB (1 << RADIX_BITS)
#define RADIX_PASSES ((64 + RADIX_BITS - 1) / RADIX_BITS)

/* Order-preserving map of a double to an unsigned key (-0.0 before +0.0,
 * which compare equal and sort next to each other either way). */
static uint64_t dkey(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return b & 0x8000000000000000ull ? ~b : b | 0x8000000000000000ull;
}

static double dval(uint64_t k)
{
    uint64_t b = k & 0x8000000000000000ull ? k & ~0x8000000000000000ull : ~k;
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

/* Sort the ring of a lazy window into w->sorted (if it changed). The
 * window is logically unchanged: this fills a cache, hence the cast. */
static void lazy_sort(const window_t *cw)
{
    window_t *w = (window_t *)cw;
    if (!w->dirty)
        return;
    size_t n = w->count;
    uint64_t *a = w->keys, *b = w->keys + w->size;
    /* the order of the ring does not matter here: no modulo per value */
    for (size_t i = 0; i < n; i++)
        a[i] = dkey(w->ring[i]);
    /* LSD radix, 11 bits a pass (6 passes), all digit counts in one read;
     * a pass where every key has the same digit (the high exponent bits,
     * mostly) is skipped */
    uint32_t(*cnt)[RADIX_NB] = (uint32_t(*)[RADIX_NB])w->cnt;
    memset(cnt, 0, RADIX_PASSES * sizeof(*cnt));
    for (size_t i = 0; i < n; i++)
        for (int p = 0; p < RADIX_PASSES; p++)
            cnt[p][(a[i] >> (p * RADIX_BITS)) & (RADIX_NB - 1)]++;
    for (int p = 0; p < RADIX_PASSES && n; p++) {
        int shift = p * RADIX_BITS;
        if (cnt[p][(a[0] >> shift) & (RADIX_NB - 1)] == n)
            continue;
        uint32_t pos = 0;
        for (int d = 0; d < RADIX_NB; d++) {
            uint32_t c = cnt[p][d];
            cnt[p][d] = pos;
            pos += c;
        }
        for (size_t i = 0; i < n; i++)
            b[cnt[p][(a[i] >> shift) & (RADIX_NB - 1)]++] = a[i];
        uint64_t *t = a;
        a = b;
        b = t;
    }
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        w->sorted[i] = dval(a[i]);
        d += i == 0 || w->sorted[i] != w->sorted[i - 1];
    }
    w->ldistinct = d;
    w->dirty = false;
}

static uint32_t next_prio(window_t *w)
{
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    w->rng = x;
    return (uint32_t)(x >> 32);
}

static uint32_t sum_of(const window_t *w, uint32_t t) { return t ? w->pool[t].sum : 0; }

static void pull(window_t *w, uint32_t t)
{
    wnode_t *n = &w->pool[t];
    n->sum = n->cnt + sum_of(w, n->left) + sum_of(w, n->right);
}

static uint32_t rot_right(window_t *w, uint32_t t)
{
    uint32_t l = w->pool[t].left;
    w->pool[t].left = w->pool[l].right;
    w->pool[l].right = t;
    pull(w, t);
    pull(w, l);
    return l;
}

static uint32_t rot_left(window_t *w, uint32_t t)
{
    uint32_t r = w->pool[t].right;
    w->pool[t].right = w->pool[r].left;
    w->pool[r].left = t;
    pull(w, t);
    pull(w, r);
    return r;
}

static uint32_t insert(window_t *w, uint32_t t, double key)
{
    if (!t) {
        uint32_t id = w->free_list[--w->nfree];
        w->pool[id] = (wnode_t){.key = key, .cnt = 1, .sum = 1, .prio = next_prio(w)};
        w->distinct++;
        return id;
    }
    wnode_t *n = &w->pool[t];
    if (key == n->key) {
        n->cnt++;
        n->sum++;
        return t;
    }
    if (key < n->key) {
        uint32_t l = insert(w, n->left, key);
        w->pool[t].left = l;
        pull(w, t);
        if (w->pool[l].prio > w->pool[t].prio)
            t = rot_right(w, t);
    } else {
        uint32_t r = insert(w, n->right, key);
        w->pool[t].right = r;
        pull(w, t);
        if (w->pool[r].prio > w->pool[t].prio)
            t = rot_left(w, t);
    }
    return t;
}

/* Remove one occurrence of key (which is present). */
static uint32_t erase(window_t *w, uint32_t t, double key)
{
    wnode_t *n = &w->pool[t];
    if (key < n->key) {
        n->left = erase(w, n->left, key);
        pull(w, t);
        return t;
    }
    if (key > n->key) {
        n->right = erase(w, n->right, key);
        pull(w, t);
        return t;
    }
    if (n->cnt > 1) {
        n->cnt--;
        n->sum--;
        return t;
    }
    /* rotate the node down until it has at most one child, then unlink it */
    if (!n->left || !n->right) {
        uint32_t child = n->left ? n->left : n->right;
        w->free_list[w->nfree++] = t;
        w->distinct--;
        return child;
    }
    if (w->pool[n->left].prio > w->pool[n->right].prio) {
        t = rot_right(w, t);
        w->pool[t].right = erase(w, w->pool[t].right, key);
    } else {
        t = rot_left(w, t);
        w->pool[t].left = erase(w, w->pool[t].left, key);
    }
    pull(w, t);
    return t;
}

window_t *window_new(size_t size, size_t step, char *errstr, size_t errstr_size)
{
    if (size == 0 || size > UINT32_MAX - 1 || step == 0 || step > size) {
        snprintf(errstr, errstr_size, "window size %zu and step %zu: need 1 <= step <= size", size,
                 step);
        return NULL;
    }
    window_t *w = xcalloc(1, sizeof(*w));
    w->size = size;
    w->step = step;
    w->ring = xmalloc(size * sizeof(double));
    w->lazy = step == size;
    if (w->lazy) {
        w->sorted = xmalloc(size * sizeof(double));
        w->keys = xmalloc(2 * size * sizeof(uint64_t));
        w->cnt = xmalloc(RADIX_PASSES * RADIX_NB * sizeof(uint32_t));
    } else {
        w->pool = xmalloc((size + 1) * sizeof(wnode_t));
        w->free_list = xmalloc(size * sizeof(uint32_t));
    }
    w->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)w;
    if (!w->rng)
        w->rng = 1;
    window_clear(w);
    return w;
}

void window_destroy(window_t *w)
{
    if (!w)
        return;
    free(w->ring);
    free(w->pool);
    free(w->free_list);
    free(w->sorted);
    free(w->keys);
    free(w->cnt);
    free(w);
}

void window_clear(window_t *w)
{
    w->head = w->count = w->since_tick = w->ticks = 0;
    w->root = 0;
    w->distinct = 0;
    w->dirty = false;
    w->ldistinct = 0;
    if (w->lazy)
        return;
    /* ids handed out from 1 upwards */
    w->nfree = w->size;
    for (size_t i = 0; i < w->size; i++)
        w->free_list[i] = (uint32_t)(w->size - i);
}

bool window_add(window_t *w, double v)
{
    if (!isfinite(v))
        return false;
    if (w->count == w->size) {
        double old = w->ring[w->head];
        if (!w->lazy)
            w->root = erase(w, w->root, old);
        w->ring[w->head] = v;
        w->head = (w->head + 1) % w->size;
    } else {
        w->ring[(w->head + w->count) % w->size] = v;
        w->count++;
    }
    if (w->lazy)
        w->dirty = true;
    else
        w->root = insert(w, w->root, v);
    w->since_tick++;
    if (w->count == w->size && w->since_tick >= w->step) {
        w->since_tick = 0;
        w->ticks++;
        return true;
    }
    return false;
}

size_t window_count(const window_t *w) { return w->count; }

size_t window_distinct(const window_t *w)
{
    if (!w->lazy)
        return w->distinct;
    lazy_sort(w);
    return w->ldistinct;
}

size_t window_ticks(const window_t *w) { return w->ticks; }

/* In-order walk with an explicit stack (depth is O(log d) expected, but a
 * stack of the pool's size is safe for any shape). */
typedef void (*visit_fn)(double key, uint32_t cnt, void *arg);

static void walk(const window_t *w, visit_fn fn, void *arg)
{
    uint32_t stack_small[128];
    uint32_t *stack = stack_small;
    size_t cap = MLOPS_ARRAY_LEN(stack_small), sp = 0;
    uint32_t t = w->root;
    while (t || sp) {
        while (t) {
            if (sp == cap) {
                size_t ncap = cap * 2;
                uint32_t *ns = xmalloc(ncap * sizeof(uint32_t));
                for (size_t i = 0; i < sp; i++)
                    ns[i] = stack[i];
                if (stack != stack_small)
                    free(stack);
                stack = ns;
                cap = ncap;
            }
            stack[sp++] = t;
            t = w->pool[t].left;
        }
        t = stack[--sp];
        fn(w->pool[t].key, w->pool[t].cnt, arg);
        t = w->pool[t].right;
    }
    if (stack != stack_small)
        free(stack);
}

typedef struct expand_ctx {
    double *out;
    size_t n;
} expand_ctx_t;

static void visit_expand(double key, uint32_t cnt, void *arg)
{
    expand_ctx_t *c = arg;
    for (uint32_t i = 0; i < cnt; i++)
        c->out[c->n++] = key;
}

size_t window_sorted(const window_t *w, double *out)
{
    if (w->lazy) {
        lazy_sort(w);
        if (w->count)
            memcpy(out, w->sorted, w->count * sizeof(double));
        return w->count;
    }
    expand_ctx_t c = {out, 0};
    walk(w, visit_expand, &c);
    return c.n;
}

typedef struct distinct_ctx {
    double *vals;
    size_t *counts;
    size_t n;
} distinct_ctx_t;

static void visit_distinct(double key, uint32_t cnt, void *arg)
{
    distinct_ctx_t *c = arg;
    c->vals[c->n] = key;
    c->counts[c->n] = cnt;
    c->n++;
}

size_t window_distinct_counts(const window_t *w, double *vals, size_t *counts)
{
    if (w->lazy) {
        lazy_sort(w);
        size_t k = 0;
        for (size_t i = 0; i < w->count; i++) {
            if (i == 0 || w->sorted[i] != w->sorted[i - 1]) {
                vals[k] = w->sorted[i];
                counts[k++] = 0;
            }
            counts[k - 1]++;
        }
        return k;
    }
    distinct_ctx_t c = {vals, counts, 0};
    walk(w, visit_distinct, &c);
    return c.n;
}

size_t window_rank(const window_t *w, double v)
{
    if (w->lazy) {
        lazy_sort(w);
        size_t lo = 0, hi = w->count; /* first index with sorted[i] > v */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (w->sorted[mid] <= v)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
    size_t r = 0;
    uint32_t t = w->root;
    while (t) {
        const wnode_t *n = &w->pool[t];
        if (v < n->key) {
            t = n->left;
        } else {
            r += n->cnt + sum_of(w, n->left);
            if (v == n->key)
                break;
            t = n->right;
        }
    }
    return r;
}

double window_kth(const window_t *w, size_t k)
{
    if (k >= w->count)
        return (double)NAN;
    if (w->lazy) {
        lazy_sort(w);
        return w->sorted[k];
    }
    uint32_t t = w->root;
    while (t) {
        const wnode_t *n = &w->pool[t];
        size_t ls = sum_of(w, n->left);
        if (k < ls) {
            t = n->left;
        } else if (k < ls + n->cnt) {
            return n->key;
        } else {
            k -= ls + n->cnt;
            t = n->right;
        }
    }
    return (double)NAN;
}

int window_ks(const window_t *w, const double *ref_sorted, size_t nref, drift_ks_method_t method,
              double *buf, drift_ks_t *out)
{
    size_t n = window_sorted(w, buf);
    return drift_ks_2samp_sorted(ref_sorted, nref, buf, n, method, out);
}

double window_wasserstein(const window_t *w, const double *ref_sorted, size_t nref, double *vals,
                          size_t *counts)
{
    size_t k = window_distinct_counts(w, vals, counts);
    size_t nv = w->count;
    if (nref == 0 || nv == 0)
        return (double)NAN;
    /* the merge of drift_wasserstein_sorted() over distinct window values:
     * repeats add (x - prev) = 0, so the sum is the same */
    size_t i = 0, j = 0, jc = 0;
    double prev = 0.0, s = 0.0;
    bool first = true;
    while (i < nref || j < k) {
        double x;
        if (j >= k || (i < nref && ref_sorted[i] <= vals[j]))
            x = ref_sorted[i];
        else
            x = vals[j];
        if (!first) {
            double du = (double)i / (double)nref - (double)jc / (double)nv;
            s += fabs(du) * (x - prev);
        }
        while (i < nref && ref_sorted[i] <= x)
            i++;
        while (j < k && vals[j] <= x)
            jc += counts[j++];
        prev = x;
        first = false;
    }
    return s;
}
