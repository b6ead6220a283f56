/* L2 logistic regression by Newton/IRLS (see logreg.h). */
#include "logreg.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void logreg_params_default(logreg_params_t *p)
{
    p->C = 1.0;
    p->w_pos = 1.0;
    p->w_neg = 1.0;
    p->max_iter = 100;
    p->tol = 1e-12;
    p->threads = 2;
    p->l1 = false;
}

/* log(1 + exp(z)) without overflow */
static double log1pexp(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

typedef struct lr_job {
    const double *X;
    const int *y;
    size_t lo, hi, p;
    const logreg_params_t *params;
    const double *beta; /* p coefficients then the intercept */
    bool want_hess;
    double loss;
    double *grad; /* p + 1 */
    double *hess; /* (p + 1)^2, upper triangle filled */
} lr_job_t;

static void *lr_run(void *arg)
{
    lr_job_t *j = arg;
    size_t q = j->p + 1;
    memset(j->grad, 0, q * sizeof(double));
    if (j->want_hess)
        memset(j->hess, 0, q * q * sizeof(double));
    j->loss = 0;
    for (size_t i = j->lo; i < j->hi; i++) {
        const double *x = j->X + i * j->p;
        double z = j->beta[j->p];
        for (size_t k = 0; k < j->p; k++)
            z += j->beta[k] * x[k];
        double w = j->y[i] ? j->params->w_pos : j->params->w_neg;
        j->loss += w * (log1pexp(z) - (j->y[i] ? z : 0));
        double pr = 1.0 / (1.0 + exp(-z));
        double r = w * (pr - j->y[i]);
        for (size_t k = 0; k < j->p; k++)
            j->grad[k] += r * x[k];
        j->grad[j->p] += r;
        if (j->want_hess) {
            double d = w * pr * (1 - pr);
            for (size_t a = 0; a < j->p; a++) {
                double da = d * x[a];
                double *row = j->hess + a * q;
                for (size_t b = a; b < j->p; b++)
                    row[b] += da * x[b];
                row[j->p] += da;
            }
            j->hess[j->p * q + j->p] += d;
        }
    }
    return NULL;
}

/* Loss, gradient and (optionally) Hessian of the penalised objective. */
static double evaluate(const double *X, const int *y, size_t n, size_t p,
                       const logreg_params_t *params, const double *beta, double *grad,
                       double *hess, bool want_hess)
{
    size_t q = p + 1;
    int nt = params->threads < 1 ? 1 : params->threads > 8 ? 8 : params->threads;
    if ((size_t)nt > n / 1024 + 1)
        nt = (int)(n / 1024 + 1);
    lr_job_t jobs[8];
    pthread_t tid[8];
    for (int t = 0; t < nt; t++) {
        jobs[t] =
            (lr_job_t){.X = X,
                       .y = y,
                       .lo = n * (size_t)t / (size_t)nt,
                       .hi = n * (size_t)(t + 1) / (size_t)nt,
                       .p = p,
                       .params = params,
                       .beta = beta,
                       .want_hess = want_hess,
                       .grad = t ? xmalloc(q * sizeof(double)) : grad,
                       .hess = want_hess ? (t ? xmalloc(q * q * sizeof(double)) : hess) : NULL};
    }
    for (int t = 1; t < nt; t++)
        if (pthread_create(&tid[t], NULL, lr_run, &jobs[t]))
            lr_run(&jobs[t]), tid[t] = 0;
    lr_run(&jobs[0]);
    double loss = jobs[0].loss;
    for (int t = 1; t < nt; t++) {
        if (tid[t])
            pthread_join(tid[t], NULL);
        loss += jobs[t].loss;
        for (size_t k = 0; k < q; k++)
            grad[k] += jobs[t].grad[k];
        if (want_hess)
            for (size_t k = 0; k < q * q; k++)
                hess[k] += jobs[t].hess[k];
        free(jobs[t].grad);
        free(jobs[t].hess);
    }
    double pen = 0;
    for (size_t k = 0; k < p && !params->l1; k++) {
        pen += beta[k] * beta[k];
        grad[k] += beta[k] / params->C;
        if (want_hess)
            hess[k * q + k] += 1.0 / params->C;
    }
    if (want_hess) /* mirror the upper triangle */
        for (size_t a = 0; a < q; a++)
            for (size_t b = a + 1; b < q; b++)
                hess[b * q + a] = hess[a * q + b];
    return loss + pen / (2 * params->C);
}

static double l1_norm(const double *beta, size_t p)
{
    double s = 0;
    for (size_t k = 0; k < p; k++)
        s += fabs(beta[k]);
    return s;
}

/* max violation of the optimality conditions of the L1 problem */
static double l1_violation(const double *g, const double *beta, size_t p, double lam)
{
    double v = fabs(g[p]);
    for (size_t k = 0; k < p; k++) {
        double e =
            beta[k] != 0 ? fabs(g[k] + (beta[k] > 0 ? lam : -lam)) : fmax(0, fabs(g[k]) - lam);
        v = fmax(v, e);
    }
    return v;
}

/* Proximal Newton for the L1 penalty (see logreg.h). */
static int fit_l1(const double *X, const int *y, size_t n, size_t p, const logreg_params_t *params,
                  double *beta, double wsum, logreg_info_t *info, char *errstr, size_t errstr_size)
{
    size_t q = p + 1;
    double lam = 1.0 / params->C;
    double *grad = xmalloc(q * sizeof(double)), *hess = xmalloc(q * q * sizeof(double)),
           *d = xmalloc(q * sizeof(double)), *hd = xmalloc(q * sizeof(double)),
           *trial = xmalloc(q * sizeof(double)), *tgrad = xmalloc(q * sizeof(double));
    double f = evaluate(X, y, n, p, params, beta, grad, hess, true) + lam * l1_norm(beta, p);
    int it = 0;
    double viol = 0;
    for (; it < params->max_iter; it++) {
        viol = l1_violation(grad, beta, p, lam);
        if (viol <= params->tol * wsum)
            break;
        memset(d, 0, q * sizeof(double));
        memset(hd, 0, q * sizeof(double));
        for (int sweep = 0; sweep < 1000; sweep++) {
            double change = 0;
            for (size_t j = 0; j < q; j++) {
                double a = hess[j * q + j];
                if (!(a > 0))
                    continue;
                double b = grad[j] + hd[j], dj;
                if (j == p) {
                    dj = d[j] - b / a;
                } else {
                    double z = beta[j] + d[j] - b / a, thr = lam / a;
                    double u = z > thr ? z - thr : z < -thr ? z + thr : 0;
                    dj = u - beta[j];
                }
                double delta = dj - d[j];
                if (delta != 0) {
                    d[j] = dj;
                    for (size_t k = 0; k < q; k++)
                        hd[k] += delta * hess[k * q + j];
                    change = fmax(change, fabs(delta) * sqrt(a));
                }
            }
            if (change < 1e-15)
                break;
        }
        double t = 1, ft = 0;
        int ls = 0;
        for (; ls < 40; ls++) {
            for (size_t k = 0; k < q; k++)
                trial[k] = beta[k] + t * d[k];
            ft = evaluate(X, y, n, p, params, trial, tgrad, NULL, false) + lam * l1_norm(trial, p);
            if (ft <= f)
                break;
            if (ft <= f + 1e-12 * fabs(f) && l1_violation(tgrad, trial, p, lam) < viol)
                break;
            t *= 0.5;
        }
        if (ls == 40)
            break;
        memcpy(beta, trial, q * sizeof(double));
        f = evaluate(X, y, n, p, params, beta, grad, hess, true) + lam * l1_norm(beta, p);
    }
    viol = l1_violation(grad, beta, p, lam);
    if (info) {
        info->iterations = it;
        info->grad_max = viol;
        info->objective = f;
    }
    free(grad);
    free(hess);
    free(d);
    free(hd);
    free(trial);
    free(tgrad);
    if (!isfinite(f)) {
        snprintf(errstr, errstr_size, "logistic regression (L1) diverged");
        return -1;
    }
    return 0;
}

/* Solve H d = g in place (H symmetric positive definite, q x q). */
static int cholesky_solve(double *H, double *g, size_t q)
{
    for (size_t j = 0; j < q; j++) {
        double s = H[j * q + j];
        for (size_t k = 0; k < j; k++)
            s -= H[j * q + k] * H[j * q + k];
        if (!(s > 0))
            return -1;
        double l = sqrt(s);
        H[j * q + j] = l;
        for (size_t i = j + 1; i < q; i++) {
            double t = H[i * q + j];
            for (size_t k = 0; k < j; k++)
                t -= H[i * q + k] * H[j * q + k];
            H[i * q + j] = t / l;
        }
    }
    for (size_t i = 0; i < q; i++) { /* L z = g */
        double t = g[i];
        for (size_t k = 0; k < i; k++)
            t -= H[i * q + k] * g[k];
        g[i] = t / H[i * q + i];
    }
    for (size_t i = q; i-- > 0;) { /* L' d = z */
        double t = g[i];
        for (size_t k = i + 1; k < q; k++)
            t -= H[k * q + i] * g[k];
        g[i] = t / H[i * q + i];
    }
    return 0;
}

int logreg_fit(const double *X, const int *y, size_t n, size_t p, const logreg_params_t *params,
               double *coef, double *intercept, logreg_info_t *info, char *errstr,
               size_t errstr_size)
{
    size_t q = p + 1;
    double *beta = xcalloc(q, sizeof(double)), *grad = xmalloc(q * sizeof(double)),
           *hess = xmalloc(q * q * sizeof(double)), *step = xmalloc(q * sizeof(double)),
           *trial = xmalloc(q * sizeof(double)), *tgrad = xmalloc(q * sizeof(double));
    int rc = -1;
    double wsum = 0, npos = 0;
    for (size_t i = 0; i < n; i++) {
        wsum += y[i] ? params->w_pos : params->w_neg;
        npos += y[i] ? params->w_pos : 0;
    }
    if (npos <= 0 || npos >= wsum) {
        snprintf(errstr, errstr_size, "logistic regression needs both classes");
        goto done;
    }
    beta[p] = log(npos / (wsum - npos)); /* start at the base rate */
    if (params->l1) {
        rc = fit_l1(X, y, n, p, params, beta, wsum, info, errstr, errstr_size);
        if (rc == 0) {
            memcpy(coef, beta, p * sizeof(double));
            *intercept = beta[p];
        }
        goto done;
    }
    double f = evaluate(X, y, n, p, params, beta, grad, hess, true);
    int it = 0;
    double gmax = (double)INFINITY;
    for (; it < params->max_iter; it++) {
        gmax = 0;
        for (size_t k = 0; k < q; k++)
            gmax = fmax(gmax, fabs(grad[k]));
        if (gmax <= params->tol * wsum)
            break;
        memcpy(step, grad, q * sizeof(double));
        if (cholesky_solve(hess, step, q)) {
            snprintf(errstr, errstr_size,
                     "logistic regression: the Hessian is not positive definite (iteration %d)",
                     it);
            goto done;
        }
        /* backtracking; near the optimum the objective no longer resolves a
         * decrease (it is a sum of n terms), so a step that keeps it within
         * rounding and shrinks the gradient is accepted too */
        double t = 1, ft = 0;
        int ls = 0;
        for (; ls < 40; ls++) {
            for (size_t k = 0; k < q; k++)
                trial[k] = beta[k] - t * step[k];
            ft = evaluate(X, y, n, p, params, trial, tgrad, NULL, false);
            if (ft <= f)
                break;
            if (ft <= f + 1e-12 * fabs(f)) {
                double tg = 0;
                for (size_t k = 0; k < q; k++)
                    tg = fmax(tg, fabs(tgrad[k]));
                if (tg < gmax)
                    break;
            }
            t *= 0.5;
        }
        if (ls == 40) /* no progress at machine precision: converged */
            break;
        memcpy(beta, trial, q * sizeof(double));
        f = evaluate(X, y, n, p, params, beta, grad, hess, true);
    }
    gmax = 0;
    for (size_t k = 0; k < q; k++)
        gmax = fmax(gmax, fabs(grad[k]));
    memcpy(coef, beta, p * sizeof(double));
    *intercept = beta[p];
    if (info) {
        info->iterations = it;
        info->grad_max = gmax;
        info->objective = f;
    }
    if (!isfinite(f)) {
        snprintf(errstr, errstr_size, "logistic regression diverged");
        goto done;
    }
    rc = 0;
done:
    free(beta);
    free(grad);
    free(hess);
    free(step);
    free(trial);
    free(tgrad);
    return rc;
}
