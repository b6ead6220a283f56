/**
 * @file gbdt.h
 * @brief Histogram gradient-boosted decision trees for binary
 *        classification (logistic loss), in the manner of XGBoost's `hist`.
 *
 * Growth is depth-wise, or leaf-wise with max_leaves > 0 (XGBoost's
 * grow_policy=lossguide, LightGBM's default).
 *
 * Each input is binned once: a numeric input into at most max_bins bins cut
 * at quantiles of the training values (every distinct value is its own bin
 * when there are few enough), a categorical input by its category index.
 * Trees grow depth-wise to max_depth; a split maximises
 * G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) - G^2/(H+lambda) (halved, minus
 * gamma) with both children's hessian sums >= min_child_weight; missing
 * values are tried on both sides and the better side becomes the node's
 * default direction. A categorical split sorts the node's categories by
 * G/(H+lambda) and takes the best prefix as the left set. Leaves hold
 * -G/(H+lambda) * learning_rate. Rows (Bernoulli) and inputs (per tree) are
 * subsampled with a seeded generator; with a validation set, boosting stops
 * after early_stopping rounds without a better validation log loss and the
 * trees after the best round are dropped.
 *
 * Threads: the inputs of each tree level are split across @c threads
 * pthreads by index; every sum runs over rows in a fixed order, so the
 * result is the same for any thread count and any timing, given the seed.
 *
 * Ownership: the caller owns the data; gbdt_fit() fills a result whose trees
 * the caller frees with gbdt_result_cleanup().
 */
#ifndef MLOPS_GBDT_H
#define MLOPS_GBDT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "util.h"

typedef struct gbdt_params {
    int n_trees;
    int max_depth;  /**< depth-wise: >= 1; leaf-wise: 0 = no limit */
    int max_leaves; /**< > 0: leaf-wise growth (largest gain first) up to this many leaves */
    double learning_rate;
    double lambda;
    double gamma;
    double min_child_weight;
    double subsample;
    double colsample;
    int max_bins;       /**< 2..256 */
    int early_stopping; /**< rounds without improvement; 0 = off */
    int threads;
    uint64_t seed;
    /** Called after each round whose held-out loss is computed (every round
     * with early stopping, else every 25th and the last; every round, with a
     * NaN loss, without a validation set). May be NULL. */
    void (*progress)(void *arg, int round, double valid_loss);
    void *progress_arg;
} gbdt_params_t;

/** Defaults: 200 trees, depth 6, rate 0.1, lambda 1, gamma 0, min child
 * weight 1, no subsampling, 256 bins, early stopping 20, 2 threads, seed 1. */
void gbdt_params_default(gbdt_params_t *p);

/** A data set: row-major values, NaN = missing; categorical inputs hold
 * the category index (0 .. ncats-1). */
typedef struct gbdt_data {
    size_t n, p;
    const double *X;
    const int *y;
} gbdt_data_t;

typedef struct gbdt_result {
    double base_margin;
    model_tree_t *trees;
    size_t ntrees;
    int best_round;         /**< 1-based, the number of trees kept */
    double best_valid_loss; /**< held-out loss of the kept trees; NaN without a validation set */
} gbdt_result_t;

/**
 * Fit. @p is_cat marks categorical inputs (p flags; NULL = none) and
 * @p ncats gives their category counts. @p valid may be NULL. Returns 0 or
 * -1 with errstr.
 */
int gbdt_fit(const gbdt_data_t *train, const gbdt_data_t *valid, const bool *is_cat,
             const size_t *ncats, const gbdt_params_t *params, gbdt_result_t *out, char *errstr,
             size_t errstr_size) MLOPS_WUR;
void gbdt_result_cleanup(gbdt_result_t *r);

/** Margin of the fitted trees for one row (same code as model.h scoring). */
double gbdt_margin(const gbdt_result_t *r, const double *x);

/** Bin edges of sorted finite values (ascending, @p m of them): at most
 * max_bins - 1 edges into @p edges; returns their number. Exposed for tests. */
size_t gbdt_bin_edges(const double *sorted, size_t m, int max_bins, double *edges);

#endif
