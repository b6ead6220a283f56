/**
 * @file logreg.h
 * @brief L2-regularised logistic regression solved by Newton's method
 *        (IRLS with a Cholesky solve and a backtracking line search) to a
 *        tight tolerance, so the coefficients match scikit-learn's
 *        LogisticRegression(C=..., solver="lbfgs", tol tiny) on the same
 *        (standardised) design.
 *
 * Objective: sum_i w_i * logloss(y_i, b + x_i . beta) + ||beta||^2 / (2 C);
 * the intercept b is not penalised. w_i is the class weight of y_i.
 * With l1 set the penalty is ||beta||_1 / C (scikit-learn's penalty="l1"
 * with solver="saga"), solved by proximal Newton: each step minimises the
 * quadratic model plus the L1 term by cyclic coordinate descent with soft
 * thresholding, then a backtracking line search on the true objective.
 * Threads: the gradient and Hessian are summed over rows by up to
 * @c threads pthreads, each on a fixed row range, added in a fixed order, so
 * results do not depend on timing.
 *
 * Ownership: the caller owns every array; nothing is kept.
 */
#ifndef MLOPS_LOGREG_H
#define MLOPS_LOGREG_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef struct logreg_params {
    double C;     /**< inverse L2 strength (> 0) */
    double w_pos; /**< weight of a positive row (1 = none) */
    double w_neg; /**< weight of a negative row */
    int max_iter; /**< Newton iterations */
    double tol;   /**< stop when max |gradient| <= tol * sum of weights */
    int threads;  /**< 1 or more */
    bool l1;      /**< L1 instead of L2: sum w_i loss_i + ||beta||_1 / C */
} logreg_params_t;

/** Defaults: C 1, unit weights, 100 iterations, tol 1e-12, 2 threads. */
void logreg_params_default(logreg_params_t *p);

typedef struct logreg_info {
    int iterations;
    double grad_max; /**< max |gradient| at the end */
    double objective;
} logreg_info_t;

/**
 * Fit on @p n rows of @p p columns (row-major @p X), labels 0/1 in @p y.
 * Writes p coefficients to @p coef and the intercept. Returns 0, or -1 with
 * errstr (singular system, no convergence).
 */
int logreg_fit(const double *X, const int *y, size_t n, size_t p, const logreg_params_t *params,
               double *coef, double *intercept, logreg_info_t *info, char *errstr,
               size_t errstr_size) MLOPS_WUR;

#endif
