/*
 * mlopsctl datagen attrition: a synthetic, realistic employee-attrition
 * event stream whose columns are what examples/attrition/spec.json expects,
 * with a label that depends on the fields non-linearly, optional drift from
 * a row on, and optional bad rows for the DLQ. Written as CSV (--out) or
 * produced to Kafka (--topic; labels to the labels topic).
 *
 * The stream. Row i happens at start + i * step (plus a jitter inside the
 * step, so times are increasing). Each row belongs to one employee chosen
 * near the row's place in the stream: employee e is active around rows
 * e * rows/entities, give or take a few employees' worth of rows, so an
 * employee has several events close together in time and the spec's
 * per-entity rolling features see real histories. An employee's static
 * attributes (department, role, level, education, ...) are drawn at the
 * first event; ages and tenures grow with the time between events;
 * overtime, hours and satisfaction change from event to event.
 *
 * The label. `left` = yes with probability sigmoid(b + f(x) + noise), where
 * f sums non-linear terms: overtime only counts with low job satisfaction;
 * pay below what the role and level pay (a ratio the raw columns do not
 * show); five or more years since the last promotion; young and single;
 * a long commute unless remote; the first year; a bad work-life balance;
 * junior without stock; frequent travel; low involvement. The intercept b
 * is calibrated on a pilot sample (same generator, another seed) so that
 * about 16 % of rows are positive.
 *
 * Drift from row floor(drift_at * rows):
 *   covariate     incomes +22 %, overtime more frequent, new employees
 *                 younger, weekly hours longer (the label function is kept)
 *   new-category  new employees may be in a new department ("data science")
 *                 or a new job role of an old one
 *   label-rate    the intercept is recalibrated to about 30 % positives
 *   concept       another label function: overtime and the young-single
 *                 effect stop mattering; working on site and long weekly
 *                 hours start to, and the commute matters sooner
 *
 * Determinism: xoshiro256** seeded by splitmix64, one stream per purpose
 * (data, labels, bad rows, time jitter), so bad rows replace rows without
 * changing the others and rows before the drift are the same whatever the
 * drift.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "commands.h"
#include "csvfile.h"
#include "lifecycle.h"
#include "log.h"
#include "producing.h"
#include "spec.h"

#define PROG "mlopsctl datagen"
#define YEAR_MS (365.25 * 86400.0 * 1000.0)
#define PILOT_ROWS 60000
#define TARGET_RATE 0.16
#define LABEL_RATE_DRIFT_TARGET 0.30
#define LABEL_NOISE_SD 0.5

/* ---- PRNG: splitmix64 to seed xoshiro256** ------------------------------------ */

typedef struct rng {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/** Uniform in [0, 1). */
static double rng_u01(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/** Standard normal (Box-Muller; two uniforms per value, no cached state). */
static double rng_normal(rng_t *r)
{
    double u1 = 1.0 - rng_u01(r), u2 = rng_u01(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static bool rng_bern(rng_t *r, double p) { return rng_u01(r) < p; }

/** Index drawn with the given weights (need not sum to 1). */
static int rng_pick(rng_t *r, const double *w, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += w[i];
    double u = rng_u01(r) * sum;
    for (int i = 0; i < n; i++) {
        if (u < w[i])
            return i;
        u -= w[i];
    }
    return n - 1;
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

/* ---- the domain ------------------------------------------------------------------ */

enum { D_SALES, D_RND, D_HR, D_DATA, NDEPT };
static const char *const dept_names[NDEPT] = {"sales", "research & development", "human resources",
                                              "data science"};
static const double dept_weights[3] = {0.30, 0.65, 0.05};

typedef struct role {
    const char *name;
    int dept;
    int lvl_min, lvl_max;
    double pay;    /* pay multiplier of the role */
    double weight; /* share within its department */
    bool is_new;   /* only with the new-category drift */
} role_t;

static const role_t roles[] = {
    {"sales executive", D_SALES, 2, 3, 1.00, 0.55, false},
    {"sales representative", D_SALES, 1, 2, 0.92, 0.30, false},
    {"manager", D_SALES, 3, 5, 1.06, 0.15, false},
    {"research scientist", D_RND, 1, 2, 1.00, 0.30, false},
    {"laboratory technician", D_RND, 1, 2, 0.94, 0.27, false},
    {"manufacturing director", D_RND, 2, 4, 1.05, 0.14, false},
    {"healthcare representative", D_RND, 2, 3, 1.00, 0.13, false},
    {"research director", D_RND, 3, 5, 1.10, 0.08, false},
    {"manager", D_RND, 3, 5, 1.06, 0.08, false},
    {"human resources", D_HR, 1, 3, 0.95, 0.80, false},
    {"manager", D_HR, 3, 5, 1.02, 0.20, false},
    /* new-category drift */
    {"customer success manager", D_SALES, 2, 3, 1.00, 1.0, true},
    {"machine learning engineer", D_RND, 2, 4, 1.18, 1.0, true},
    {"people analytics partner", D_HR, 2, 3, 1.00, 1.0, true},
    {"data scientist", D_DATA, 1, 4, 1.15, 0.55, true},
    {"data engineer", D_DATA, 1, 3, 1.10, 0.30, true},
    {"analytics manager", D_DATA, 3, 5, 1.12, 0.15, true},
};
#define NROLES ((int)MLOPS_ARRAY_LEN(roles))

/* monthly income of a level at zero experience and pay multiplier 1 */
static const double level_base[6] = {0, 2600, 5200, 9400, 14000, 18000};

enum { M_SINGLE, M_MARRIED, M_DIVORCED };
static const char *const marital_names[] = {"single", "married", "divorced"};
static const char *const gender_names[] = {"female", "male", "other"};
static const char *const travel_names[] = {"none", "rarely", "frequently"};
static const char *const field_names[] = {"life sciences",    "medical",         "marketing",
                                          "technical degree", "human resources", "other"};

/* Drift kinds are bits: several may apply from the same row (e.g. covariate and
 * concept, so the data both looks different and means something else). */
typedef enum drift {
    DRIFT_NONE = 0,
    DRIFT_COVARIATE = 1 << 0,
    DRIFT_NEW_CATEGORY = 1 << 1,
    DRIFT_LABEL_RATE = 1 << 2,
    DRIFT_CONCEPT = 1 << 3,
} drift_t;
static const char *const drift_names[] = {"covariate", "new-category", "label-rate", "concept"};

/* One employee: drawn at the first event, evolving with time. */
typedef struct emp {
    bool live;
    int64_t first_ms, hire_ms;
    double age0, tw0, yac0, yicr0, yslp0, ywm0;
    double pay_noise, distance, hours_base;
    uint8_t gender, marital, education, efield, dept, role, level, stock, travel, perf;
    uint8_t sat_job, sat_env, sat_rel, wlb, involve, training, ncomp, hike;
    bool overtime, remote;
} emp_t;

/* The true values of one event (before missing values and bad rows). */
typedef struct truth {
    size_t emp;
    int64_t t_ms;
    int age;
    double tw, yac, yicr, yslp, ywm, income, pay_ratio, hours;
    bool overtime;
    int64_t review_ms; /* 0 = no review yet (missing in the output) */
} truth_t;

typedef struct gen {
    rng_t data, label, bad, jitter;
    uint64_t seed;
    size_t rows, nemps, nlive;
    double window; /* rows an employee's activity spreads around its place */
    emp_t *emps;
    int64_t start_ms;
    double step_ms;
    unsigned drift; /* drift_t bits */
    size_t drift_row;
    double b_base, b_rate, b_concept;
} gen_t;

static void gen_init(gen_t *g, uint64_t seed, size_t rows, size_t nemps, int64_t start_ms,
                     double step_ms, unsigned drift, size_t drift_row)
{
    memset(g, 0, sizeof(*g));
    g->seed = seed;
    rng_seed(&g->data, seed, 1);
    rng_seed(&g->label, seed, 2);
    rng_seed(&g->bad, seed, 3);
    rng_seed(&g->jitter, seed, 4);
    g->rows = rows;
    g->nemps = nemps;
    g->window = 3.0 * (double)rows / (double)nemps + 1.0;
    g->emps = xcalloc(nemps, sizeof(emp_t));
    g->start_ms = start_ms;
    g->step_ms = step_ms;
    g->drift = drift;
    g->drift_row = drift_row;
}

static void gen_cleanup(gen_t *g) { free(g->emps); }

static double expected_income(const emp_t *e, double tw)
{
    return level_base[e->level] * roles[e->role].pay * (1.0 + 0.009 * tw);
}

static double overtime_rate(const emp_t *e, bool cov)
{
    return (e->dept == D_SALES ? 0.32 : 0.26) + (cov ? 0.18 : 0.0);
}

static void emp_create(gen_t *g, emp_t *e, int64_t t_ms, bool cov, bool newcat)
{
    rng_t *r = &g->data;
    e->live = true;
    g->nlive++;
    e->first_ms = t_ms;
    int dept = rng_pick(r, dept_weights, 3);
    if (newcat && rng_bern(r, 0.12))
        dept = D_DATA;
    e->dept = (uint8_t)dept;
    e->age0 = cov ? clampd(31 + 7 * rng_normal(r), 18, 64) : clampd(37 + 9 * rng_normal(r), 18, 64);
    e->gender = (uint8_t)rng_pick(r, (const double[]){0.40, 0.58, 0.02}, 3);
    e->marital = (uint8_t)(e->age0 < 25 ? rng_pick(r, (const double[]){0.75, 0.22, 0.03}, 3)
                                        : rng_pick(r, (const double[]){0.28, 0.50, 0.22}, 3));
    e->education = (uint8_t)(1 + rng_pick(r, (const double[]){0.11, 0.19, 0.39, 0.27, 0.04}, 5));
    static const double fw[NDEPT][6] = {
        {0.20, 0.10, 0.45, 0.10, 0.00, 0.15}, /* sales */
        {0.45, 0.35, 0.00, 0.10, 0.00, 0.10}, /* r&d */
        {0.20, 0.00, 0.00, 0.00, 0.60, 0.20}, /* hr */
        {0.20, 0.00, 0.00, 0.50, 0.00, 0.30}, /* data science */
    };
    e->efield = (uint8_t)rng_pick(r, fw[dept], 6);
    static const double start_age[6] = {0, 18, 20, 22, 24, 27};
    double working_age = e->age0 - start_age[e->education];
    e->tw0 = working_age > 0 ? working_age * (0.7 + 0.3 * rng_u01(r)) : 0;
    e->yac0 = e->tw0 * pow(rng_u01(r), 1.3);
    /* role: senior roles need experience */
    double w[NROLES];
    for (int i = 0; i < NROLES; i++) {
        w[i] = roles[i].dept == dept && !roles[i].is_new ? roles[i].weight : 0;
        if (roles[i].lvl_min >= 3 && e->tw0 < 6)
            w[i] *= 0.05;
        if (dept == D_DATA && roles[i].dept == D_DATA)
            w[i] = roles[i].weight;
    }
    int role = rng_pick(r, w, NROLES);
    if (newcat && dept != D_DATA && rng_bern(r, 0.10))
        for (int i = 0; i < NROLES; i++)
            if (roles[i].is_new && roles[i].dept == dept)
                role = i;
    e->role = (uint8_t)role;
    int level = (int)lround(1 + e->tw0 / 6.5 + 0.6 * rng_normal(r));
    if (level < roles[role].lvl_min)
        level = roles[role].lvl_min;
    if (level > roles[role].lvl_max)
        level = roles[role].lvl_max;
    e->level = (uint8_t)level;
    e->stock = (uint8_t)(e->marital == M_MARRIED
                             ? rng_pick(r, (const double[]){0.30, 0.46, 0.14, 0.10}, 4)
                             : rng_pick(r, (const double[]){0.50, 0.36, 0.09, 0.05}, 4));
    e->travel = (uint8_t)(dept == D_SALES ? rng_pick(r, (const double[]){0.05, 0.65, 0.30}, 3)
                                          : rng_pick(r, (const double[]){0.12, 0.72, 0.16}, 3));
    e->perf = (uint8_t)(1 + rng_pick(r, (const double[]){0.03, 0.14, 0.68, 0.15}, 4));
    e->hike = (uint8_t)(e->perf == 4 ? 19 + (int)(rng_u01(r) * 7) : 11 + (int)(rng_u01(r) * 9));
    e->distance = clampd(exp(log(7.0) + 0.9 * rng_normal(r)), 1, 80);
    e->yicr0 = e->yac0 * pow(rng_u01(r), 0.8);
    e->yslp0 = e->yac0 * pow(rng_u01(r), 1.3);
    e->ywm0 = e->yicr0 * pow(rng_u01(r), 0.5);
    double other = e->tw0 - e->yac0;
    e->ncomp = (uint8_t)(other < 0.5 ? (rng_bern(r, 0.5) ? 1 : 0)
                                     : 1 + (int)fmin(8, other / (2.0 + 6.0 * rng_u01(r))));
    e->training =
        (uint8_t)rng_pick(r, (const double[]){0.04, 0.05, 0.37, 0.34, 0.09, 0.08, 0.03}, 7);
    static const double sat[4] = {0.19, 0.19, 0.30, 0.32};
    e->sat_job = (uint8_t)(1 + rng_pick(r, sat, 4));
    e->sat_env = (uint8_t)(1 + rng_pick(r, sat, 4));
    e->sat_rel = (uint8_t)(1 + rng_pick(r, sat, 4));
    e->wlb = (uint8_t)(1 + rng_pick(r, (const double[]){0.05, 0.23, 0.61, 0.11}, 4));
    e->involve = (uint8_t)(1 + rng_pick(r, (const double[]){0.06, 0.26, 0.59, 0.09}, 4));
    static const double remote_rate[NDEPT] = {0.15, 0.30, 0.25, 0.50};
    e->remote = rng_bern(r, remote_rate[dept]);
    e->overtime = rng_bern(r, overtime_rate(e, cov));
    e->hours_base = 39.5 + 2.5 * rng_normal(r);
    e->pay_noise = 0.16 * rng_normal(r);
    e->hire_ms = t_ms - (int64_t)(e->yac0 * YEAR_MS);
}

/* The employee of row i and the event's true values. */
static void gen_event(gen_t *g, size_t i, truth_t *x)
{
    rng_t *r = &g->data;
    bool drifted = g->drift != DRIFT_NONE && i >= g->drift_row;
    bool cov = drifted && (g->drift & DRIFT_COVARIATE);
    bool newcat = drifted && (g->drift & DRIFT_NEW_CATEGORY);
    double pos =
        ((double)i + (2.0 * rng_u01(r) - 1.0) * g->window) * (double)g->nemps / (double)g->rows;
    size_t e_ix = pos <= 0 ? 0 : (size_t)pos >= g->nemps ? g->nemps - 1 : (size_t)pos;
    x->emp = e_ix;
    x->t_ms = g->start_ms + (int64_t)floor((double)i * g->step_ms) +
              (int64_t)floor(rng_u01(&g->jitter) * g->step_ms);
    emp_t *e = &g->emps[e_ix];
    bool first = !e->live;
    if (first)
        emp_create(g, e, x->t_ms, cov, newcat);
    double dt = (double)(x->t_ms - e->first_ms) / YEAR_MS;
    x->age = (int)floor(e->age0 + dt);
    x->tw = e->tw0 + dt;
    x->yac = e->yac0 + dt;
    x->yicr = e->yicr0 + dt;
    x->yslp = e->yslp0 + dt;
    x->ywm = e->ywm0 + dt;
    /* what changes from one event to the next */
    if (!first) {
        if (rng_bern(r, 0.25))
            e->overtime = rng_bern(r, overtime_rate(e, cov));
        if (rng_bern(r, 0.08))
            e->sat_job = (uint8_t)(1 + rng_pick(r, (const double[]){0.19, 0.19, 0.30, 0.32}, 4));
        if (rng_bern(r, 0.05))
            e->sat_env = (uint8_t)(1 + rng_pick(r, (const double[]){0.19, 0.19, 0.30, 0.32}, 4));
    }
    x->overtime = e->overtime;
    x->hours = clampd(
        e->hours_base + (e->overtime ? 6.5 : 0) + 2.5 * rng_normal(r) + (cov ? 3.5 : 0), 15, 90);
    x->pay_ratio = exp(e->pay_noise) * (cov ? 1.22 : 1.0);
    x->income = expected_income(e, x->tw) * x->pay_ratio;
    /* reviews six months after hiring, then yearly */
    x->review_ms =
        x->yac >= 0.5 ? e->hire_ms + (int64_t)((floor(x->yac - 0.5) + 0.5) * YEAR_MS) : 0;
}

/* The label functions (without intercept). */
static double z_shared(const emp_t *e, const truth_t *x, double underpaid_w)
{
    double z = 0;
    double under = (0.92 - x->pay_ratio) / 0.18;
    if (under > 0)
        z += underpaid_w * fmin(under, 1.6);
    if (x->yslp >= 5)
        z += 0.8 + 0.08 * fmin(x->yslp - 5, 5);
    if (x->yac < 1)
        z += 0.7;
    if (x->yac > 15)
        z -= 0.6;
    if (e->wlb == 1)
        z += 0.7;
    if (e->sat_env == 1)
        z += 0.4;
    if (e->stock == 0 && e->level <= 2)
        z += 0.5;
    if (e->travel == 2)
        z += 0.5;
    if (e->involve == 1)
        z += 0.5;
    return z;
}

static double z_base(const emp_t *e, const truth_t *x)
{
    double z = z_shared(e, x, 1.4);
    if (x->overtime)
        z += e->sat_job <= 2 ? 1.7 : 0.15;
    if (x->age < 30 && e->marital == M_SINGLE)
        z += 1.0;
    if (e->distance > 20 && !e->remote)
        z += 0.8;
    return z;
}

static double z_concept(const emp_t *e, const truth_t *x)
{
    double z = z_shared(e, x, 0.6);
    double long_hours = fmin(fmax(0, x->hours - 44) / 4, 2.0);
    z += e->remote ? 0.2 * long_hours : 0.8 + 1.2 * long_hours;
    if (e->distance > 12 && !e->remote)
        z += 1.0;
    return z;
}

static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

/* Draw the label of an event (always two draws from the label stream). */
static bool gen_label(gen_t *g, size_t i, const truth_t *x)
{
    const emp_t *e = &g->emps[x->emp];
    double noise = LABEL_NOISE_SD * rng_normal(&g->label);
    double u = rng_u01(&g->label);
    bool drifted = g->drift != DRIFT_NONE && i >= g->drift_row;
    double z;
    if (drifted && (g->drift & DRIFT_CONCEPT))
        z = g->b_concept + z_concept(e, x);
    else if (drifted && (g->drift & DRIFT_LABEL_RATE))
        z = g->b_rate + z_base(e, x);
    else
        z = g->b_base + z_base(e, x);
    return u < sigmoid(z + noise);
}

/* Intercept b with mean(sigmoid(b + z_i)) = target, by bisection. */
static double calibrate(const double *z, size_t n, double target)
{
    double lo = -20, hi = 10;
    for (int it = 0; it < 60; it++) {
        double mid = (lo + hi) / 2, sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += sigmoid(mid + z[i]);
        if (sum / (double)n < target)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + hi) / 2;
}

/* Calibrate the intercepts on a pilot stream of the same generator. */
static void gen_calibrate(gen_t *g)
{
    gen_t p;
    gen_init(&p, g->seed ^ 0x5eed5eed5eedULL, PILOT_ROWS, PILOT_ROWS / 5, g->start_ms, g->step_ms,
             DRIFT_NONE, 0);
    double *zb = xmalloc(PILOT_ROWS * sizeof(double));
    double *zc = xmalloc(PILOT_ROWS * sizeof(double));
    for (size_t i = 0; i < PILOT_ROWS; i++) {
        truth_t x;
        gen_event(&p, i, &x);
        double noise = LABEL_NOISE_SD * rng_normal(&p.label);
        zb[i] = z_base(&p.emps[x.emp], &x) + noise;
        zc[i] = z_concept(&p.emps[x.emp], &x) + noise;
    }
    g->b_base = calibrate(zb, PILOT_ROWS, TARGET_RATE);
    g->b_rate = calibrate(zb, PILOT_ROWS, LABEL_RATE_DRIFT_TARGET);
    g->b_concept = calibrate(zc, PILOT_ROWS, TARGET_RATE);
    free(zb);
    free(zc);
    gen_cleanup(&p);
}

/* ---- rows: cells as text ------------------------------------------------------------ */

enum col {
    C_EVENT_ID,
    C_EMPLOYEE_ID,
    C_EVENT_TIME,
    C_AGE,
    C_GENDER,
    C_MARITAL,
    C_EDUCATION,
    C_EFIELD,
    C_DEPT,
    C_ROLE,
    C_LEVEL,
    C_INCOME,
    C_HIKE,
    C_STOCK,
    C_OVERTIME,
    C_TRAVEL,
    C_DISTANCE,
    C_YAC,
    C_YICR,
    C_YSLP,
    C_YWM,
    C_TW,
    C_NCOMP,
    C_TRAINING,
    C_SAT_JOB,
    C_SAT_ENV,
    C_SAT_REL,
    C_WLB,
    C_INVOLVE,
    C_PERF,
    C_HOURS,
    C_REMOTE,
    C_REVIEW,
    C_LEFT,
    NCOL
};

typedef enum kind { K_MISSING = 0, K_STR, K_NUM, K_BOOL } kind_t;

/* Column names and the share of rows where an optional one is missing. */
static const struct {
    const char *name;
    double missing;
} cols[NCOL] = {
    [C_EVENT_ID] = {"event_id", 0},
    [C_EMPLOYEE_ID] = {"employee_id", 0},
    [C_EVENT_TIME] = {"event_time", 0},
    [C_AGE] = {"age", 0},
    [C_GENDER] = {"gender", 0.01},
    [C_MARITAL] = {"marital_status", 0.02},
    [C_EDUCATION] = {"education", 0.03},
    [C_EFIELD] = {"education_field", 0.02},
    [C_DEPT] = {"department", 0},
    [C_ROLE] = {"job_role", 0},
    [C_LEVEL] = {"job_level", 0},
    [C_INCOME] = {"monthly_income", 0},
    [C_HIKE] = {"percent_salary_hike", 0.02},
    [C_STOCK] = {"stock_option_level", 0.02},
    [C_OVERTIME] = {"overtime", 0},
    [C_TRAVEL] = {"business_travel", 0.02},
    [C_DISTANCE] = {"distance_from_home", 0.03},
    [C_YAC] = {"years_at_company", 0},
    [C_YICR] = {"years_in_current_role", 0.02},
    [C_YSLP] = {"years_since_last_promotion", 0.02},
    [C_YWM] = {"years_with_manager", 0.03},
    [C_TW] = {"total_working_years", 0.02},
    [C_NCOMP] = {"num_companies_worked", 0.02},
    [C_TRAINING] = {"training_times_last_year", 0.02},
    [C_SAT_JOB] = {"job_satisfaction", 0.03},
    [C_SAT_ENV] = {"environment_satisfaction", 0.03},
    [C_SAT_REL] = {"relationship_satisfaction", 0.03},
    [C_WLB] = {"work_life_balance", 0.03},
    [C_INVOLVE] = {"job_involvement", 0.03},
    [C_PERF] = {"performance_rating", 0.02},
    [C_HOURS] = {"weekly_hours", 0.04},
    [C_REMOTE] = {"remote", 0.02},
    [C_REVIEW] = {"last_review_at", 0.05},
    [C_LEFT] = {"left", 0},
};

typedef struct cell {
    kind_t kind;
    char text[48];
} cell_t;

typedef struct row {
    cell_t c[NCOL];
    bool positive;
    int64_t t_ms; /* the event time (also when the text is made malformed) */
} row_t;

static void put_str(row_t *row, int col, const char *s)
{
    row->c[col].kind = K_STR;
    str_copy(row->c[col].text, s, sizeof(row->c[col].text));
}

static void put_int(row_t *row, int col, long long v)
{
    row->c[col].kind = K_NUM;
    snprintf(row->c[col].text, sizeof(row->c[col].text), "%lld", v);
}

/* One decimal (values are rounded down so that a <= b stays true after rounding). */
static void put_1dp(row_t *row, int col, double v)
{
    row->c[col].kind = K_NUM;
    snprintf(row->c[col].text, sizeof(row->c[col].text), "%.1f", floor(v * 10.0) / 10.0);
}

static void put_bool(row_t *row, int col, bool v)
{
    row->c[col].kind = K_BOOL;
    str_copy(row->c[col].text, v ? "true" : "false", sizeof(row->c[col].text));
}

static void put_time(row_t *row, int col, int64_t ms)
{
    row->c[col].kind = K_STR;
    fmt_rfc3339(ms * 1000, row->c[col].text, sizeof(row->c[col].text));
}

static void build_row(gen_t *g, size_t i, const truth_t *x, bool positive, row_t *row)
{
    const emp_t *e = &g->emps[x->emp];
    memset(row, 0, sizeof(*row));
    snprintf(row->c[C_EVENT_ID].text, sizeof(row->c[0].text), "att-%" PRIu64 "-%zu", g->seed, i);
    row->c[C_EVENT_ID].kind = K_STR;
    snprintf(row->c[C_EMPLOYEE_ID].text, sizeof(row->c[0].text), "emp-%" PRIu64 "-%06zu", g->seed,
             x->emp);
    row->c[C_EMPLOYEE_ID].kind = K_STR;
    put_time(row, C_EVENT_TIME, x->t_ms);
    put_int(row, C_AGE, x->age);
    put_str(row, C_GENDER, gender_names[e->gender]);
    put_str(row, C_MARITAL, marital_names[e->marital]);
    put_int(row, C_EDUCATION, e->education);
    put_str(row, C_EFIELD, field_names[e->efield]);
    put_str(row, C_DEPT, dept_names[e->dept]);
    put_str(row, C_ROLE, roles[e->role].name);
    put_int(row, C_LEVEL, e->level);
    put_int(row, C_INCOME, llround(x->income));
    put_int(row, C_HIKE, e->hike);
    put_int(row, C_STOCK, e->stock);
    put_bool(row, C_OVERTIME, x->overtime);
    put_str(row, C_TRAVEL, travel_names[e->travel]);
    put_1dp(row, C_DISTANCE, e->distance);
    put_1dp(row, C_YAC, x->yac);
    put_1dp(row, C_YICR, x->yicr);
    put_1dp(row, C_YSLP, x->yslp);
    put_1dp(row, C_YWM, x->ywm);
    put_1dp(row, C_TW, x->tw);
    put_int(row, C_NCOMP, e->ncomp);
    put_int(row, C_TRAINING, e->training);
    put_int(row, C_SAT_JOB, e->sat_job);
    put_int(row, C_SAT_ENV, e->sat_env);
    put_int(row, C_SAT_REL, e->sat_rel);
    put_int(row, C_WLB, e->wlb);
    put_int(row, C_INVOLVE, e->involve);
    put_int(row, C_PERF, e->perf);
    put_1dp(row, C_HOURS, x->hours);
    put_bool(row, C_REMOTE, e->remote);
    if (x->review_ms)
        put_time(row, C_REVIEW, x->review_ms);
    put_str(row, C_LEFT, positive ? "yes" : "no");
    row->positive = positive;
    row->t_ms = x->t_ms;
    /* optional fields missing at a few percent (one draw per column, always) */
    for (int c = 0; c < NCOL; c++) {
        double u = rng_u01(&g->data);
        if (cols[c].missing > 0 && u < cols[c].missing)
            row->c[c].kind = K_MISSING;
    }
}

/* ---- bad rows ------------------------------------------------------------------------ */

enum bad_kind {
    BAD_OUT_OF_RANGE,
    BAD_TEXT_IN_NUMBER,
    BAD_MISSING_REQUIRED,
    BAD_UNKNOWN_DEPT,
    BAD_DUPLICATE,
    BAD_TIME,
    NBAD
};

/* Make @p row invalid in one way (three draws from the bad stream, always). */
static void make_bad(gen_t *g, row_t *row, const row_t *last_clean, bool have_clean, double u_kind,
                     int64_t t_ms)
{
    double u = rng_u01(&g->bad);
    int kind = (int)(u_kind * NBAD);
    if (kind == BAD_DUPLICATE && !have_clean)
        kind = BAD_TIME;
    int v = (int)(u * 4);
    switch (kind) {
    case BAD_OUT_OF_RANGE: {
        static const long long ages[4] = {7, 130, -3, 240};
        if (v < 3) {
            put_int(row, C_AGE, ages[(int)(u * 12) % 4]);
        } else {
            put_int(row, C_SAT_JOB, 7); /* the scale is 1..4 */
        }
        break;
    }
    case BAD_TEXT_IN_NUMBER: {
        static const int col[4] = {C_INCOME, C_AGE, C_LEVEL, C_YAC};
        static const char *const text[4] = {"n/a", "thirty-two", "senior", "3 years"};
        put_str(row, col[v], text[v]);
        break;
    }
    case BAD_MISSING_REQUIRED: {
        static const int col[4] = {C_DEPT, C_AGE, C_INCOME, C_OVERTIME};
        row->c[col[v]].kind = K_MISSING;
        break;
    }
    case BAD_UNKNOWN_DEPT: {
        static const char *const text[4] = {"finance", "legal", "operations", "r&d dept"};
        put_str(row, C_DEPT, text[v]);
        break;
    }
    case BAD_DUPLICATE:
        /* an at-least-once redelivery: the last good event again */
        *row = *last_clean;
        break;
    case BAD_TIME: {
        time_t secs = (time_t)(t_ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char *t = row->c[C_EVENT_TIME].text;
        size_t n = sizeof(row->c[C_EVENT_TIME].text);
        row->c[C_EVENT_TIME].kind = K_STR;
        if (v == 0) /* US style */
            snprintf(t, n, "%02d/%02d/%04d %02d:%02d", tm.tm_mon + 1, tm.tm_mday, tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min);
        else if (v == 1) /* month 13 */
            snprintf(t, n, "%04d-13-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
        else if (v == 2) /* hour 25 */
            snprintf(t, n, "%04d-%02d-%02dT25:%02d:00Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_min);
        else
            str_copy(t, "yesterday", n);
        break;
    }
    }
}

/* ---- output ------------------------------------------------------------------------- */

static void write_csv_header(FILE *fp)
{
    for (int c = 0; c < NCOL; c++) {
        if (c)
            fputc(',', fp);
        csvf_write_field(fp, cols[c].name, strlen(cols[c].name));
    }
    fputc('\n', fp);
}

static void write_csv_row(FILE *fp, const row_t *row)
{
    for (int c = 0; c < NCOL; c++) {
        if (c)
            fputc(',', fp);
        if (row->c[c].kind != K_MISSING)
            csvf_write_field(fp, row->c[c].text, strlen(row->c[c].text));
    }
    fputc('\n', fp);
}

/* The event as JSON, without the label: numbers and booleans typed. */
static void row_json(const row_t *row, strbuf_t *sb)
{
    strbuf_reset(sb);
    strbuf_putc(sb, '{');
    bool first = true;
    for (int c = 0; c < NCOL; c++) {
        const cell_t *cell = &row->c[c];
        if (c == C_LEFT || cell->kind == K_MISSING)
            continue;
        if (!first)
            strbuf_putc(sb, ',');
        first = false;
        strbuf_json_str(sb, cols[c].name, strlen(cols[c].name));
        strbuf_putc(sb, ':');
        if (cell->kind == K_STR)
            strbuf_json_str(sb, cell->text, strlen(cell->text));
        else
            strbuf_puts(sb, cell->text);
    }
    strbuf_putc(sb, '}');
}

/* ---- the command ------------------------------------------------------------------------ */

typedef struct datagen_conf {
    int64_t rows;
    int64_t seed;
    char *out;
    char *topic;
    double drift_at;
    char *drift;
    double label_delay;
    int64_t entities;
    char *start;
    double step_s;
    double bad_fraction;
    double rate;
    char *labels_topic;
    char *kafka_brokers;
} datagen_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM_RANGE(datagen_conf_t, rows, CFG_T_INT, "10000", 0, "rows (events) to generate", 1,
                   1e9),
    CFG_ITEM_RANGE(datagen_conf_t, seed, CFG_T_INT, "1", 0, "random seed: same seed, same bytes", 0,
                   9e15),
    CFG_ITEM(datagen_conf_t, out, CFG_T_STR, NULL, 0,
             "write CSV with a header here ('-' = stdout)"),
    CFG_ITEM(datagen_conf_t, topic, CFG_T_STR, NULL, 0,
             "produce JSON events (without the label) to this topic, labels to --labels-topic"),
    CFG_ITEM_RANGE(datagen_conf_t, drift_at, CFG_T_DBL, "0.5", 0,
                   "drift starts at row floor(drift_at * rows)", 0, 1),
    CFG_ITEM(datagen_conf_t, drift, CFG_T_STR, NULL, 0,
             "drift kinds, comma-separated: covariate, new-category, label-rate, concept "
             "(label-rate and concept exclude each other)"),
    CFG_ITEM_RANGE(datagen_conf_t, label_delay, CFG_T_DBL, "0", 0,
                   "seconds from event_time to label_time (--topic)", 0, 1e10),
    CFG_ITEM_RANGE(datagen_conf_t, entities, CFG_T_INT, "0", 0, "employees (0 = rows / 5)", 0, 1e9),
    CFG_ITEM(datagen_conf_t, start, CFG_T_STR, "2025-01-01T00:00:00Z", 0,
             "event time of the first row (RFC 3339)"),
    CFG_ITEM_RANGE(datagen_conf_t, step_s, CFG_T_DBL, "86400", 0,
                   "seconds between consecutive events of the stream", 0, 1e9),
    CFG_ITEM_RANGE(datagen_conf_t, bad_fraction, CFG_T_DBL, "0", 0,
                   "share of rows made invalid on purpose (for the DLQ)", 0, 1),
    CFG_ITEM_RANGE(datagen_conf_t, rate, CFG_T_DBL, "0", 0,
                   "events per second with --topic (0 = no limit)", 0, 1e9),
    CFG_ITEM(datagen_conf_t, labels_topic, CFG_T_STR, "labels", 0,
             "topic of the label/1 records (--topic)"),
    CFG_ITEM(datagen_conf_t, kafka_brokers, CFG_T_STR, "127.0.0.1:9092", 0,
             "Kafka bootstrap servers (also --brokers)"),
};

/* "covariate,concept" -> bits; -1 (errstr names the bad part) on an unknown kind or
 * on label-rate with concept (both replace the label function). */
static int parse_drift(const char *s, unsigned *out, char *errstr, size_t errstr_size)
{
    *out = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        unsigned bit = 0;
        for (size_t d = 0; d < MLOPS_ARRAY_LEN(drift_names); d++)
            if (strlen(drift_names[d]) == n && !strncmp(s, drift_names[d], n))
                bit = 1u << d;
        if (!bit) {
            snprintf(errstr, errstr_size,
                     "'%.*s' is not one of covariate, new-category, label-rate, concept", (int)n,
                     s);
            return -1;
        }
        *out |= bit;
        s += n + (s[n] == ',');
    }
    if (!*out) {
        snprintf(errstr, errstr_size, "no drift kind given");
        return -1;
    }
    if ((*out & DRIFT_LABEL_RATE) && (*out & DRIFT_CONCEPT)) {
        snprintf(errstr, errstr_size,
                 "label-rate and concept both replace the label function: "
                 "give one of them");
        return -1;
    }
    return 0;
}

int cmd_datagen(int argc, char **argv)
{
    datagen_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024];
    FILE *out = NULL;
    producing_t *pr = NULL;
    gen_t g = {0};
    strbuf_t sb;
    strbuf_init(&sb);
    char **args = producing_argv(argc, argv);
    log_init("mlopsctl", LOG_LVL_WARN);
    cfg_t *cfg = cfg_new(PROG,
                         "attrition --rows N --seed S (--out FILE.csv | --topic T) "
                         "[--drift-at F --drift KIND[,KIND]] "
                         "[--bad-fraction F]",
                         items, MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_allow_positional(cfg, true);
    cfg_result_t r = cfg_init(cfg, argc, args, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, PROG ": %s\n", errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    int npos;
    char **pos = cfg_positional(cfg, &npos);
    code = MLOPS_EXIT_USAGE;
    if (npos != 1 || strcmp(pos[0], "attrition")) {
        fprintf(stderr, PROG ": %s (the one dataset is 'attrition'; see --help)\n",
                npos ? "unknown dataset" : "which dataset?");
        goto done;
    }
    if (!conf.out == !conf.topic) {
        fprintf(stderr, PROG ": give exactly one of --out FILE.csv and --topic T\n");
        goto done;
    }
    unsigned drift = DRIFT_NONE;
    if (conf.drift && parse_drift(conf.drift, &drift, errstr, sizeof(errstr))) {
        fprintf(stderr, PROG ": --drift: %s\n", errstr);
        goto done;
    }
    if (!conf.drift && strcmp(cfg_source(cfg, "drift_at"), "default")) {
        fprintf(stderr, PROG ": --drift-at needs --drift KIND\n");
        goto done;
    }
    json_t *js = json_string(conf.start);
    int64_t start_ms;
    int bad_start = !js || spec_parse_time(js, &start_ms);
    json_decref(js);
    if (bad_start) {
        fprintf(stderr, PROG ": --start: '%s' is not an RFC 3339 time\n", conf.start);
        goto done;
    }
    size_t rows = (size_t)conf.rows;
    size_t nemps = conf.entities ? (size_t)conf.entities : (rows / 5 ? rows / 5 : 1);
    size_t drift_row = drift ? (size_t)floor(conf.drift_at * (double)rows) : rows;
    code = MLOPS_EXIT_FAILURE;

    if (conf.out) {
        out = strcmp(conf.out, "-") ? fopen(conf.out, "w") : stdout;
        if (!out) {
            fprintf(stderr, PROG ": %s: cannot write\n", conf.out);
            goto done;
        }
        setvbuf(out, NULL, _IOFBF, 1 << 20);
        write_csv_header(out);
    } else {
        size_t nprops;
        const cfg_kv_t *props = cfg_kafka_props(cfg, &nprops);
        producing_opts_t po = {.prog = PROG,
                               .brokers = conf.kafka_brokers,
                               .props = props,
                               .nprops = nprops,
                               .topic = conf.topic,
                               .labels_topic = conf.labels_topic,
                               .label_delay_ms = (int64_t)(conf.label_delay * 1000.0 + 0.5),
                               .rate = conf.rate,
                               .total = rows};
        pr = producing_new(&po, errstr, sizeof(errstr));
        if (!pr) {
            fprintf(stderr, PROG ": %s\n", errstr);
            goto done;
        }
    }

    int64_t t0 = mono_us();
    gen_init(&g, (uint64_t)conf.seed, rows, nemps, start_ms, conf.step_s * 1000.0, drift,
             drift_row);
    gen_calibrate(&g);
    row_t row, last_clean;
    bool have_clean = false;
    size_t positives = 0, nbad = 0, done_rows = 0;
    for (size_t i = 0; i < rows && !producing_stop_requested(); i++) {
        truth_t x;
        gen_event(&g, i, &x);
        bool positive = gen_label(&g, i, &x);
        build_row(&g, i, &x, positive, &row);
        double u_bad = rng_u01(&g.bad), u_kind = rng_u01(&g.bad);
        if (u_bad < conf.bad_fraction) {
            make_bad(&g, &row, &last_clean, have_clean, u_kind, x.t_ms);
            nbad++;
        } else {
            (void)rng_u01(&g.bad); /* keep the stream aligned */
            last_clean = row;
            have_clean = true;
        }
        positives += row.positive;
        done_rows++;
        if (out) {
            write_csv_row(out, &row);
            continue;
        }
        row_json(&row, &sb);
        const char *eid = row.c[C_EVENT_ID].text, *ent = row.c[C_EMPLOYEE_ID].text;
        producing_label_t label = {.event_id = eid,
                                   .entity = ent,
                                   .label_json = row.positive ? "\"yes\"" : "\"no\"",
                                   .event_time_ms = row.t_ms};
        if (producing_send_raw(pr, ent, strlen(ent), sb.data, sb.len, &label, errstr,
                               sizeof(errstr))) {
            fprintf(stderr, PROG ": %s\n", errstr);
            break;
        }
    }
    double secs = (double)(mono_us() - t0) / 1e6;
    uint64_t failed = 0;
    if (pr) {
        if (producing_stop_requested())
            fprintf(stderr, PROG ": interrupted; flushing what was sent\n");
        failed = producing_finish(pr, 60000, stderr);
    }
    if (out && out != stdout) {
        if (fclose(out)) {
            out = NULL;
            fprintf(stderr, PROG ": %s: write failed\n", conf.out);
            goto done;
        }
        out = NULL;
    } else if (out) {
        fflush(out);
        out = NULL;
    }
    fprintf(stderr, PROG ": %zu rows (%zu employees), %.2f%% positive, ", done_rows, g.nlive,
            done_rows ? 100.0 * (double)positives / (double)done_rows : 0.0);
    if (drift)
        fprintf(stderr, "drift %s from row %zu", conf.drift, drift_row);
    else
        fprintf(stderr, "no drift");
    fprintf(stderr, ", %zu bad rows -> %s (%.2f s, %.0f rows/s)\n", nbad,
            conf.out ? (strcmp(conf.out, "-") ? conf.out : "stdout") : conf.topic, secs,
            secs > 0 ? (double)done_rows / secs : 0.0);
    code = failed || done_rows < rows ? MLOPS_EXIT_FAILURE : MLOPS_EXIT_OK;
done:
    if (out && out != stdout)
        fclose(out);
    producing_destroy(pr);
    gen_cleanup(&g);
    strbuf_cleanup(&sb);
    cfg_destroy(cfg);
    producing_free_argv(argc, args);
    return code;
}
