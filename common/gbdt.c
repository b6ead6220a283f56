/* Histogram GBDT for binary classification (see gbdt.h). */
#include "gbdt.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 8

void gbdt_params_default(gbdt_params_t *p)
{
    p->n_trees = 200;
    p->max_depth = 6;
    p->learning_rate = 0.1;
    p->lambda = 1.0;
    p->gamma = 0.0;
    p->min_child_weight = 1.0;
    p->subsample = 1.0;
    p->colsample = 1.0;
    p->max_bins = 256;
    p->early_stopping = 20;
    p->threads = 2;
    p->seed = 1;
    p->max_leaves = 0;
    p->progress = NULL;
    p->progress_arg = NULL;
}

/* splitmix64: small, seeded, the same on every platform */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

size_t gbdt_bin_edges(const double *v, size_t m, int max_bins, double *edges)
{
    if (m == 0)
        return 0;
    size_t ndistinct = 1;
    for (size_t i = 1; i < m; i++)
        ndistinct += v[i] != v[i - 1];
    size_t ne = 0;
    if (ndistinct <= (size_t)max_bins) {
        for (size_t i = 1; i < m; i++)
            if (v[i] != v[i - 1])
                edges[ne++] = v[i];
        return ne;
    }
    for (int k = 1; k < max_bins; k++) {
        double e = v[(size_t)((double)k * (double)m / max_bins)];
        if (e > v[0] && (ne == 0 || e > edges[ne - 1]))
            edges[ne++] = e;
    }
    return ne;
}

/* number of edges <= x (so bin b holds edges[b-1] <= x < edges[b]) */
static uint16_t bin_of(const double *edges, size_t ne, double x)
{
    size_t lo = 0, hi = ne;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (edges[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint16_t)lo;
}

typedef struct split {
    double gain;
    int feature; /* -1: none */
    int bin;     /* numeric: rows with code <= bin go left */
    bool default_left;
    uint64_t cats[4]; /* categorical: left set */
    bool categorical;
    double gl, hl, gr, hr;
} split_t;

typedef struct lnode {
    int32_t id; /* node index in the tree */
    size_t start, end;
    double g, h;
    double *hist;       /* (g, h) per bin of every input, missing last; owned */
    const double *from; /* derive: hist = from (the parent's) - sibling's */
    int sibling;        /* index of the sibling in the level, -1 = build */
} lnode_t;

typedef struct ctx {
    const gbdt_params_t *prm;
    size_t n, p;
    uint8_t *codes;  /* n x p, row-major; code nbins[j] = missing */
    uint8_t *ccodes; /* the same codes p x n, column-major (partitions) */
    double **pool;   /* spare node histograms */
    size_t npool, cappool;
    const gbdt_data_t *train;
    bool failed;
    char errbuf[128];
    size_t *nbins; /* per input */
    size_t *off;   /* per input: first slot of its bins in a node histogram */
    size_t nslots; /* slots in a node histogram */
    double **edges;
    size_t *nedges;
    const bool *is_cat;
    const size_t *ncats;
    double *gh;     /* (gradient, hessian) per row */
    double *margin; /* training margins: each leaf adds its value to its rows */
    size_t *rows;   /* node row ranges */
    /* per level */
    lnode_t *level;
    size_t nlevel;
    const bool *use_col;
    split_t *cand; /* nlevel x p */
    int nthreads;
} ctx_t;

typedef struct worker {
    ctx_t *c;
    int t;
} worker_t;

typedef struct catstat {
    int c;
    double g, h, key;
} catstat_t;

static int by_key(const void *a, const void *b)
{
    const catstat_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->c - y->c;
}

static double score_of(double g, double h, double lambda) { return g * g / (h + lambda); }

/* Best split of one node on one input, from its histogram (pairs g, h;
 * nbins[j] bins then the missing slot). A hessian sum below eps counts as
 * empty: subtracted histograms keep rounding residue. */
static void find_split(const ctx_t *c, const double *hist, const lnode_t *nd, size_t j,
                       split_t *out)
{
    const gbdt_params_t *prm = c->prm;
    size_t nb = c->nbins[j];
    double G = nd->g, H = nd->h, lam = prm->lambda, mcw = prm->min_child_weight;
    double eps = 1e-12 * (H > 1 ? H : 1);
    double gm = hist[2 * nb], hm = hist[2 * nb + 1];
    if (hm <= eps)
        gm = 0, hm = 0;
    double parent = score_of(G, H, lam);
    out->gain = 0;
    out->feature = -1;
    if (!c->is_cat || !c->is_cat[j]) {
        double gl = 0, hl = 0;
        for (size_t b = 0; b + 1 < nb; b++) {
            gl += hist[2 * b];
            hl += hist[2 * b + 1];
            for (int dl = 0; dl < 2; dl++) {
                if (dl && hm == 0)
                    break;
                double GL = gl + (dl ? gm : 0), HL = hl + (dl ? hm : 0);
                double GR = G - GL, HR = H - HL;
                if (HL < mcw || HR < mcw)
                    continue;
                double gain =
                    0.5 * (score_of(GL, HL, lam) + score_of(GR, HR, lam) - parent) - prm->gamma;
                if (gain > out->gain) {
                    out->gain = gain;
                    out->feature = (int)j;
                    out->bin = (int)b;
                    out->default_left = dl;
                    out->categorical = false;
                    out->gl = GL, out->hl = HL, out->gr = GR, out->hr = HR;
                }
            }
        }
        return;
    }
    /* categorical: sort present categories by g/(h+lambda), scan prefixes */
    catstat_t cs[256];
    size_t m = 0;
    for (size_t b = 0; b < nb && b < 256; b++)
        if (hist[2 * b + 1] > eps)
            cs[m++] = (catstat_t){(int)b, hist[2 * b], hist[2 * b + 1],
                                  hist[2 * b] / (hist[2 * b + 1] + lam)};
    if (m < 2 && hm == 0)
        return;
    qsort(cs, m, sizeof(catstat_t), by_key);
    double gl = 0, hl = 0;
    for (size_t k = 0; k + 1 < m || (k < m && hm > 0); k++) {
        gl += cs[k].g;
        hl += cs[k].h;
        for (int dl = 0; dl < 2; dl++) {
            if (dl && hm == 0)
                break;
            if (k + 1 == m && dl) /* everything left: no split */
                continue;
            double GL = gl + (dl ? gm : 0), HL = hl + (dl ? hm : 0);
            double GR = G - GL, HR = H - HL;
            if (HL < mcw || HR < mcw)
                continue;
            double gain =
                0.5 * (score_of(GL, HL, lam) + score_of(GR, HR, lam) - parent) - prm->gamma;
            if (gain > out->gain) {
                out->gain = gain;
                out->feature = (int)j;
                out->bin = (int)k; /* prefix length - 1 */
                out->default_left = dl;
                out->categorical = true;
                memset(out->cats, 0, sizeof(out->cats));
                for (size_t q = 0; q <= k; q++)
                    out->cats[cs[q].c / 64] |= 1ull << (cs[q].c % 64);
                out->gl = GL, out->hl = HL, out->gr = GR, out->hr = HR;
            }
        }
    }
}

/* One thread's share of a level: the inputs [j0, j1). For those inputs it
 * builds the histograms of the nodes that need building (rows in order),
 * derives the siblings' (parent minus built sibling), then finds each
 * node's best split. Threads touch disjoint slots, so no locking; the sums
 * do not depend on the number of threads. */
#define HIST_PREFETCH 16

static void *level_run(void *arg)
{
    worker_t *w = arg;
    ctx_t *c = w->c;
    size_t j0 = c->p * (size_t)w->t / (size_t)c->nthreads,
           j1 = c->p * (size_t)(w->t + 1) / (size_t)c->nthreads;
    if (j0 == j1)
        return NULL;
    size_t s0 = c->off[j0], s1 = j1 < c->p ? c->off[j1] : c->nslots;
    /* a private copy of the offsets: the compiler keeps them apart from the
     * histogram writes */
    size_t *off = xmalloc((j1 - j0) * sizeof(size_t));
    for (size_t j = j0; j < j1; j++)
        off[j - j0] = c->off[j];
    for (size_t i = 0; i < c->nlevel; i++) {
        lnode_t *nd = &c->level[i];
        if (nd->sibling >= 0)
            continue;
        double *restrict hist = nd->hist;
        memset(hist + 2 * s0, 0, (s1 - s0) * 2 * sizeof(double));
        const size_t *restrict rows = c->rows;
        const uint8_t *restrict codes = c->codes;
        const double *restrict gh = c->gh;
        size_t p = c->p, nj = j1 - j0;
        for (size_t k = nd->start; k < nd->end; k++) {
            size_t r = rows[k];
            /* below the root the rows are a sparse, increasing subset: fetch the
             * codes and gradients of a later row while this one is summed (the
             * loop waits on these loads, not on the adds) */
            if (k + HIST_PREFETCH < nd->end) {
                size_t rp = rows[k + HIST_PREFETCH];
                __builtin_prefetch(codes + rp * p + j0);
                __builtin_prefetch(codes + rp * p + j1 - 1);
                __builtin_prefetch(gh + 2 * rp);
            }
            const uint8_t *cr = codes + r * p + j0;
            double g = gh[2 * r], h = gh[2 * r + 1];
            for (size_t j = 0; j < nj; j++) {
                double *slot = hist + 2 * (off[j] + cr[j]);
                slot[0] += g;
                slot[1] += h;
            }
        }
    }
    for (size_t i = 0; i < c->nlevel; i++) {
        lnode_t *nd = &c->level[i];
        if (nd->sibling < 0)
            continue;
        const double *sib = c->level[nd->sibling].hist;
        for (size_t q = 2 * s0; q < 2 * s1; q++)
            nd->hist[q] = nd->from[q] - sib[q];
    }
    for (size_t i = 0; i < c->nlevel; i++)
        for (size_t j = j0; j < j1; j++) {
            split_t *s = &c->cand[i * c->p + j];
            s->feature = -1;
            s->gain = 0;
            if (c->use_col[j])
                find_split(c, c->level[i].hist + 2 * c->off[j], &c->level[i], j, s);
        }
    free(off);
    return NULL;
}

static void level_splits(ctx_t *c, worker_t *ws)
{
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (int t = 1; t < c->nthreads; t++)
        started[t] = pthread_create(&tid[t], NULL, level_run, &ws[t]) == 0;
    for (int t = 1; t < c->nthreads; t++)
        if (!started[t])
            level_run(&ws[t]);
    level_run(&ws[0]);
    for (int t = 1; t < c->nthreads; t++)
        if (started[t])
            pthread_join(tid[t], NULL);
}

/* ---- tree building ---- */

typedef struct tbuild {
    model_tree_t t;
    size_t cap, catcap;
} tbuild_t;

static int32_t tb_add(tbuild_t *b)
{
    model_tree_t *t = &b->t;
    if (t->nnodes == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        t->feature = xrealloc(t->feature, b->cap * sizeof(int32_t));
        t->threshold = xrealloc(t->threshold, b->cap * sizeof(double));
        t->left = xrealloc(t->left, b->cap * sizeof(int32_t));
        t->right = xrealloc(t->right, b->cap * sizeof(int32_t));
        t->default_left = xrealloc(t->default_left, b->cap);
        t->value = xrealloc(t->value, b->cap * sizeof(double));
        t->cat_off = xrealloc(t->cat_off, b->cap * sizeof(int32_t));
        t->cat_len = xrealloc(t->cat_len, b->cap * sizeof(int32_t));
    }
    size_t i = t->nnodes++;
    t->feature[i] = -1;
    t->threshold[i] = 0;
    t->left[i] = t->right[i] = 0;
    t->default_left[i] = 0;
    t->value[i] = 0;
    t->cat_off[i] = (int32_t)t->ncats_total;
    t->cat_len[i] = 0;
    return (int32_t)i;
}

static void tb_add_cat(tbuild_t *b, int32_t c)
{
    if (b->t.ncats_total == b->catcap) {
        b->catcap = b->catcap ? b->catcap * 2 : 64;
        b->t.cats = xrealloc(b->t.cats, b->catcap * sizeof(int32_t));
    }
    b->t.cats[b->t.ncats_total++] = c;
}

static bool goes_left(const ctx_t *c, const split_t *s, size_t r)
{
    size_t f = (size_t)s->feature;
    unsigned code = c->ccodes[f * c->n + r];
    if (code == c->nbins[f])
        return s->default_left;
    if (s->categorical)
        return (s->cats[code / 64] >> (code % 64)) & 1;
    return (int)code <= s->bin;
}

/* Node histograms are large (every bin of every input): reuse them. */
static double *hist_get(ctx_t *c)
{
    return c->npool ? c->pool[--c->npool] : xmalloc(c->nslots * 2 * sizeof(double));
}

static void hist_put(ctx_t *c, double *h)
{
    if (!h)
        return;
    if (c->npool == c->cappool) {
        c->cappool = c->cappool ? c->cappool * 2 : 16;
        c->pool = xrealloc(c->pool, c->cappool * sizeof(double *));
    }
    c->pool[c->npool++] = h;
}

/* Histograms, splits and partitions for the nodes of @p lv (sets c->cand). */
static split_t *process_level(ctx_t *c, worker_t *ws, lnode_t *lv, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lv[i].hist = hist_get(c);
    c->cand = xmalloc((n ? n : 1) * c->p * sizeof(split_t));
    c->level = lv;
    c->nlevel = n;
    level_splits(c, ws);
    split_t *cand = c->cand;
    c->cand = NULL;
    return cand;
}

static split_t *best_split(const ctx_t *c, split_t *cand)
{
    split_t *best = NULL;
    for (size_t j = 0; cand && j < c->p; j++) {
        split_t *s = &cand[j];
        if (s->feature >= 0 && s->gain > 0 && (!best || s->gain > best->gain))
            best = s;
    }
    return best;
}

static void make_leaf(ctx_t *c, tbuild_t *tb, const lnode_t *nd)
{
    double v = -nd->g / (nd->h + c->prm->lambda) * c->prm->learning_rate;
    tb->t.value[nd->id] = v;
    for (size_t k = nd->start; k < nd->end; k++)
        c->margin[c->rows[k]] += v;
}

/* Split @p nd by @p best: partition its rows (stably), add the two tree
 * nodes, fill @p kids (left, right; the smaller one builds its histogram,
 * the other derives it from the parent's; sibling indices are base+0/1). */
static void split_node(ctx_t *c, tbuild_t *tb, const lnode_t *nd, const split_t *best, size_t *tmp,
                       lnode_t kids[2], int base)
{
    size_t nl = 0, nr = 0;
    for (size_t k = nd->start; k < nd->end; k++) {
        size_t r = c->rows[k];
        if (goes_left(c, best, r))
            c->rows[nd->start + nl++] = r;
        else
            tmp[nr++] = r;
    }
    memcpy(c->rows + nd->start + nl, tmp, nr * sizeof(size_t));
    int32_t l = tb_add(tb), rr = tb_add(tb);
    model_tree_t *t = &tb->t;
    t->feature[nd->id] = best->feature;
    t->left[nd->id] = l;
    t->right[nd->id] = rr;
    t->default_left[nd->id] = best->default_left;
    if (best->categorical) {
        t->cat_off[nd->id] = (int32_t)t->ncats_total;
        for (int32_t q = 0; q < 256; q++)
            if ((best->cats[q / 64] >> (q % 64)) & 1) {
                tb_add_cat(tb, q);
                tb->t.cat_len[nd->id]++;
            }
    } else {
        t->threshold[nd->id] = c->edges[best->feature][best->bin];
    }
    bool left_small = nl <= nr;
    kids[0] = (lnode_t){l,        nd->start, nd->start + nl, best->gl,
                        best->hl, NULL,      nd->hist,       left_small ? -1 : base + 1};
    kids[1] = (lnode_t){rr,       nd->start + nl, nd->end,  best->gr,
                        best->hr, NULL,           nd->hist, left_small ? base : -1};
}

static double node_sums(const ctx_t *c, size_t nrows, double *h)
{
    double g = 0;
    *h = 0;
    for (size_t k = 0; k < nrows; k++) {
        g += c->gh[2 * c->rows[k]];
        *h += c->gh[2 * c->rows[k] + 1];
    }
    return g;
}

/* Depth-wise growth: every node of a level is split before the next. */
static void build_tree(ctx_t *c, worker_t *ws, size_t nrows, tbuild_t *tb, size_t *tmp)
{
    const gbdt_params_t *prm = c->prm;
    /* nodes per level: at most 2^depth, and at most one per row */
    int d = prm->max_depth > 30 ? 30 : prm->max_depth;
    size_t cap = (size_t)1 << d;
    if (cap > 2 * nrows + 2)
        cap = 2 * nrows + 2;
    lnode_t *cur = xmalloc(cap * sizeof(lnode_t)), *next = xmalloc(cap * sizeof(lnode_t));
    double h, g = node_sums(c, nrows, &h);
    size_t ncur = 1;
    cur[0] = (lnode_t){tb_add(tb), 0, nrows, g, h, NULL, NULL, -1};
    split_t *cand = prm->max_depth > 0 ? process_level(c, ws, cur, 1) : NULL;
    for (int depth = 0; ncur > 0; depth++) {
        size_t nnext = 0;
        for (size_t i = 0; i < ncur; i++) {
            lnode_t *nd = &cur[i];
            const split_t *best = cand ? best_split(c, &cand[i * c->p]) : NULL;
            if (!best) {
                make_leaf(c, tb, nd);
                continue;
            }
            split_node(c, tb, nd, best, tmp, &next[nnext], (int)nnext);
            nnext += 2;
        }
        free(cand);
        cand = NULL;
        if (nnext && depth + 1 < prm->max_depth)
            cand = process_level(c, ws, next, nnext);
        for (size_t i = 0; i < ncur; i++)
            hist_put(c, cur[i].hist);
        lnode_t *sw = cur;
        cur = next;
        next = sw;
        ncur = nnext;
    }
    free(cand);
    free(cur);
    free(next);
}

/* Leaf-wise (loss-guided) growth: split the leaf with the largest gain
 * until max_leaves (ties: the lower node id), each no deeper than
 * max_depth (0 = no limit). */
static void build_tree_lossguide(ctx_t *c, worker_t *ws, size_t nrows, tbuild_t *tb, size_t *tmp)
{
    const gbdt_params_t *prm = c->prm;
    size_t cap = (size_t)prm->max_leaves + 2;
    typedef struct leaf {
        lnode_t nd;
        split_t best;
        bool can_split;
        int depth;
    } leaf_t;
    leaf_t *leaves = xmalloc(cap * sizeof(leaf_t));
    double h, g = node_sums(c, nrows, &h);
    lnode_t root = {tb_add(tb), 0, nrows, g, h, NULL, NULL, -1};
    split_t *cand = process_level(c, ws, &root, 1);
    const split_t *b0 = best_split(c, cand);
    leaves[0] = (leaf_t){.nd = root, .can_split = b0 != NULL, .depth = 0};
    if (b0)
        leaves[0].best = *b0;
    free(cand);
    size_t nleaves = 1;
    while (nleaves < (size_t)prm->max_leaves) {
        size_t pick = SIZE_MAX;
        for (size_t i = 0; i < nleaves; i++)
            if (leaves[i].can_split &&
                (pick == SIZE_MAX || leaves[i].best.gain > leaves[pick].best.gain ||
                 (leaves[i].best.gain == leaves[pick].best.gain &&
                  leaves[i].nd.id < leaves[pick].nd.id)))
                pick = i;
        if (pick == SIZE_MAX)
            break;
        leaf_t parent = leaves[pick];
        lnode_t kids[2];
        split_node(c, tb, &parent.nd, &parent.best, tmp, kids, 0);
        int depth = parent.depth + 1;
        bool deeper = prm->max_depth <= 0 || depth < prm->max_depth;
        split_t *kc = deeper ? process_level(c, ws, kids, 2) : NULL;
        hist_put(c, parent.nd.hist);
        for (int k = 0; k < 2; k++) {
            leaf_t *lf = k == 0 ? &leaves[pick] : &leaves[nleaves];
            const split_t *bk = kc ? best_split(c, &kc[(size_t)k * c->p]) : NULL;
            *lf = (leaf_t){.nd = kids[k], .can_split = bk != NULL, .depth = depth};
            if (bk)
                lf->best = *bk;
        }
        free(kc);
        nleaves++;
    }
    for (size_t i = 0; i < nleaves; i++) {
        make_leaf(c, tb, &leaves[i].nd);
        hist_put(c, leaves[i].nd.hist);
    }
    free(leaves);
}

static double logloss_of(const double *margin, const int *y, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double z = margin[i];
        /* log(1 + exp(z)) - y z, stable */
        double l = z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
        s += l - (y[i] ? z : 0);
    }
    return n ? s / (double)n : (double)NAN;
}

/* Bin the inputs j = t, t + nthreads, ... (one thread's share). */
static void *bin_run(void *arg)
{
    worker_t *w = arg;
    ctx_t *c = w->c;
    const gbdt_data_t *tr = c->train;
    size_t n = c->n, p = c->p;
    double *vals = xmalloc((n + 1) * sizeof(double));
    for (size_t j = (size_t)w->t; j < p; j += (size_t)c->nthreads) {
        uint8_t *code = c->codes + j, *ccode = c->ccodes + j * n;
        if (c->is_cat && c->is_cat[j]) {
            c->nbins[j] = c->ncats[j] ? c->ncats[j] : 1;
            if (c->nbins[j] > 255) {
                snprintf(c->errbuf, sizeof(c->errbuf),
                         "gbdt: input %zu has more than 255 categories", j);
                c->failed = true;
                continue;
            }
            for (size_t i = 0; i < n; i++) {
                double x = tr->X[i * p + j];
                uint8_t b = isnan(x) || x < 0 || x >= (double)c->nbins[j] ? (uint8_t)c->nbins[j]
                                                                          : (uint8_t)x;
                code[i * p] = ccode[i] = b;
            }
            continue;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!isnan(tr->X[i * p + j]))
                vals[m++] = tr->X[i * p + j];
        model_sort_doubles(vals, m);
        c->edges[j] = xmalloc((size_t)c->prm->max_bins * sizeof(double));
        /* max_bins counts the missing-value bin: at most max_bins - 1 value
         * bins, so every code (missing = nbins) fits in a byte */
        c->nedges[j] = gbdt_bin_edges(vals, m, c->prm->max_bins - 1, c->edges[j]);
        c->nbins[j] = c->nedges[j] + 1;
        for (size_t i = 0; i < n; i++) {
            double x = tr->X[i * p + j];
            uint8_t b =
                isnan(x) ? (uint8_t)c->nbins[j] : (uint8_t)bin_of(c->edges[j], c->nedges[j], x);
            code[i * p] = ccode[i] = b;
        }
    }
    free(vals);
    return NULL;
}

/* The gradient and hessian of every row, rows split across the threads
 * (each row's values do not depend on the split). */
static void *gh_run(void *arg)
{
    worker_t *w = arg;
    ctx_t *c = w->c;
    size_t i0 = c->n * (size_t)w->t / (size_t)c->nthreads,
           i1 = c->n * (size_t)(w->t + 1) / (size_t)c->nthreads;
    const int *y = c->train->y;
    for (size_t i = i0; i < i1; i++) {
        double pr = 1.0 / (1.0 + exp(-c->margin[i]));
        c->gh[2 * i] = pr - y[i];
        c->gh[2 * i + 1] = pr * (1 - pr);
    }
    return NULL;
}

static void gh_all(ctx_t *c, worker_t *ws)
{
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (int t = 1; t < c->nthreads; t++)
        started[t] = pthread_create(&tid[t], NULL, gh_run, &ws[t]) == 0;
    for (int t = 1; t < c->nthreads; t++)
        if (!started[t])
            gh_run(&ws[t]);
    gh_run(&ws[0]);
    for (int t = 1; t < c->nthreads; t++)
        if (started[t])
            pthread_join(tid[t], NULL);
}

int gbdt_fit(const gbdt_data_t *tr, const gbdt_data_t *va, const bool *is_cat, const size_t *ncats,
             const gbdt_params_t *prm, gbdt_result_t *out, char *errstr, size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    out->best_valid_loss = (double)NAN;
    size_t n = tr->n, p = tr->p;
    if (n == 0 || p == 0) {
        snprintf(errstr, errstr_size, "gbdt: no training rows or no inputs");
        return -1;
    }
    if (prm->max_bins < 3 || prm->max_bins > 256) {
        snprintf(errstr, errstr_size, "gbdt: max_bins must be in [3, 256]");
        return -1;
    }
    ctx_t c = {.prm = prm, .n = n, .p = p, .is_cat = is_cat};
    c.nthreads = prm->threads < 1 ? 1 : prm->threads > MAX_THREADS ? MAX_THREADS : prm->threads;
    c.codes = xmalloc(n * p);
    c.nbins = xcalloc(p, sizeof(size_t));
    c.off = xcalloc(p, sizeof(size_t));
    c.edges = xcalloc(p, sizeof(double *));
    c.nedges = xcalloc(p, sizeof(size_t));
    double *vals = xmalloc(n * sizeof(double));
    size_t npos = 0;
    for (size_t i = 0; i < n; i++)
        npos += tr->y[i] != 0;
    if (npos == 0 || npos == n) {
        snprintf(errstr, errstr_size, "gbdt: the training rows have one class only");
        free(vals);
        goto fail;
    }
    c.ccodes = xmalloc(n * p);
    c.train = tr;
    c.is_cat = is_cat;
    c.ncats = ncats;
    {
        pthread_t tid[MAX_THREADS];
        bool started[MAX_THREADS] = {false};
        worker_t bw[MAX_THREADS];
        for (int t = 0; t < c.nthreads; t++)
            bw[t] = (worker_t){&c, t};
        for (int t = 1; t < c.nthreads; t++)
            started[t] = pthread_create(&tid[t], NULL, bin_run, &bw[t]) == 0;
        for (int t = 1; t < c.nthreads; t++)
            if (!started[t])
                bin_run(&bw[t]);
        bin_run(&bw[0]);
        for (int t = 1; t < c.nthreads; t++)
            if (started[t])
                pthread_join(tid[t], NULL);
    }
    if (c.failed) {
        snprintf(errstr, errstr_size, "%s", c.errbuf);
        free(vals);
        goto fail;
    }
    free(vals);
    for (size_t j = 0; j < p; j++) {
        c.off[j] = c.nslots;
        c.nslots += c.nbins[j] + 1; /* the bins, then missing */
    }

    double base = log((double)npos / (double)(n - npos));
    out->base_margin = base;
    double *mtr = xmalloc(n * sizeof(double));
    double *mva = va ? xmalloc((va->n ? va->n : 1) * sizeof(double)) : NULL;
    for (size_t i = 0; i < n; i++)
        mtr[i] = base;
    for (size_t i = 0; va && i < va->n; i++)
        mva[i] = base;
    c.gh = xmalloc(2 * n * sizeof(double));
    c.margin = mtr;
    uint8_t *in_tree = xmalloc(n);
    c.rows = xmalloc(n * sizeof(size_t));
    size_t *tmp = xmalloc(n * sizeof(size_t));
    bool *use_col = xmalloc(p * sizeof(bool));
    size_t *perm = xmalloc(p * sizeof(size_t));
    c.use_col = use_col;
    worker_t ws[MAX_THREADS];
    for (int t = 0; t < c.nthreads; t++)
        ws[t] = (worker_t){&c, t};
    uint64_t rng = prm->seed;
    out->trees = xcalloc((size_t)(prm->n_trees > 0 ? prm->n_trees : 1), sizeof(model_tree_t));
    double best_loss = (double)INFINITY, last_loss = (double)NAN;
    size_t va_done = 0; /* trees applied to the held-out margins */
    int best_round = 0;
    for (int it = 0; it < prm->n_trees; it++) {
        gh_all(&c, ws);
        size_t nrows = 0;
        for (size_t i = 0; i < n; i++)
            if (prm->subsample >= 1 || rng_unit(&rng) < prm->subsample)
                c.rows[nrows++] = i;
        if (prm->colsample >= 1) {
            for (size_t j = 0; j < p; j++)
                use_col[j] = true;
        } else {
            size_t k = (size_t)llround(prm->colsample * (double)p);
            if (k < 1)
                k = 1;
            for (size_t j = 0; j < p; j++)
                perm[j] = j, use_col[j] = false;
            for (size_t j = 0; j < k; j++) {
                size_t q = j + (size_t)(rng_next(&rng) % (p - j));
                size_t s = perm[j];
                perm[j] = perm[q];
                perm[q] = s;
                use_col[perm[j]] = true;
            }
        }
        tbuild_t tb = {0};
        if (prm->max_leaves > 0)
            build_tree_lossguide(&c, ws, nrows, &tb, tmp);
        else
            build_tree(&c, ws, nrows, &tb, tmp);
        out->trees[out->ntrees++] = tb.t;
        const model_tree_t *t = &out->trees[out->ntrees - 1];
        /* rows in the tree got their leaf's value while it was built (bins
         * route as thresholds do); the others go through the tree */
        if (nrows < n) {
            memset(in_tree, 0, n);
            for (size_t k = 0; k < nrows; k++)
                in_tree[c.rows[k]] = 1;
            for (size_t i = 0; i < n; i++)
                if (!in_tree[i])
                    mtr[i] += model_tree_margin(t, tr->X + i * p);
        }
        /* without early stopping the held-out loss is only reported: bring
         * its margins up to date every 25 rounds and at the end */
        bool evaluate = prm->early_stopping > 0 || (it + 1) % 25 == 0 || it + 1 == prm->n_trees;
        if (va && va->n && evaluate) {
            for (; va_done < out->ntrees; va_done++)
                for (size_t i = 0; i < va->n; i++)
                    mva[i] += model_tree_margin(&out->trees[va_done], va->X + i * p);
            double loss = logloss_of(mva, va->y, va->n);
            if (prm->progress)
                prm->progress(prm->progress_arg, it + 1, loss);
            if (loss < best_loss) {
                best_loss = loss;
                best_round = it + 1;
            } else if (prm->early_stopping > 0 && it + 1 - best_round >= prm->early_stopping) {
                break;
            }
            last_loss = loss;
        } else if (!va || !va->n) {
            best_round = it + 1;
            if (prm->progress)
                prm->progress(prm->progress_arg, it + 1, (double)NAN);
        }
    }
    if (prm->early_stopping == 0) {
        best_round = (int)out->ntrees;
        best_loss = last_loss;
    }
    while ((int)out->ntrees > best_round)
        model_tree_cleanup(&out->trees[--out->ntrees]);
    out->best_round = best_round;
    out->best_valid_loss = va && va->n ? best_loss : (double)NAN;
    free(mtr);
    free(mva);
    free(c.gh);
    free(in_tree);
    free(c.rows);
    free(tmp);
    free(use_col);
    free(perm);
    for (size_t j = 0; j < p; j++)
        free(c.edges[j]);
    free(c.edges);
    free(c.nedges);
    free(c.nbins);
    free(c.off);
    free(c.codes);
    free(c.ccodes);
    for (size_t k = 0; k < c.npool; k++)
        free(c.pool[k]);
    free(c.pool);
    return 0;
fail:
    for (size_t j = 0; j < p; j++)
        free(c.edges[j]);
    free(c.edges);
    free(c.nedges);
    free(c.nbins);
    free(c.off);
    free(c.codes);
    free(c.ccodes);
    return -1;
}

void gbdt_result_cleanup(gbdt_result_t *r)
{
    for (size_t i = 0; i < r->ntrees; i++)
        model_tree_cleanup(&r->trees[i]);
    free(r->trees);
    r->trees = NULL;
    r->ntrees = 0;
}

double gbdt_margin(const gbdt_result_t *r, const double *x)
{
    double z = r->base_margin;
    for (size_t i = 0; i < r->ntrees; i++)
        z += model_tree_margin(&r->trees[i], x);
    return z;
}
