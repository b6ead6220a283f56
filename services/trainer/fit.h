/* mlops-trainer fit: the training code shared by the offline command and the
 * streaming service (see fit.c). */
#ifndef MLOPS_TRAINER_FIT_H
#define MLOPS_TRAINER_FIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cfg.h"
#include "dataset.h"
#include "model.h"
#include "spec.h"

/** Every option of `mlops-trainer fit` (the service builds one per request). */
typedef struct fit_conf {
    char *data;
    char *label;
    char *positive;
    char *spec;
    char *algo;
    int64_t seed;
    double valid_fraction;
    char *out;
    char *name;
    char *entity;
    char *event_id;
    char *event_time;
    /* logreg */
    double c;
    char *class_weight;
    char *penalty;
    /* gbdt */
    int64_t n_trees;
    int64_t max_depth;
    char *growth;
    int64_t max_leaves;
    double learning_rate;
    double lambda;
    double gamma;
    double min_child_weight;
    double subsample;
    double colsample;
    int64_t max_bins;
    int64_t early_stopping;
    int64_t threads;
    /* artifact */
    bool profile_sample;
    char *dump_matrix;
    bool quiet;
    /* quality gates */
    double min_auc;
    double max_log_loss;
    int64_t min_rows;
    char *champion;
    double max_auc_drop;
    bool strict_gates;
} fit_conf_t;

/** The option table as a parser: cfg_init() it with `fit` arguments. */
cfg_t *fit_cfg_new(fit_conf_t *conf);

/** Check the options that name a choice (algo, growth, ...). 0, or -1 with errstr. */
int fit_conf_check(const fit_conf_t *conf, char *errstr, size_t errstr_size);

/** Receives each progress line (no trailing newline). */
typedef void fit_progress_fn(const char *line, void *arg);

/** What fit_run() trains on. */
typedef struct fit_input {
    const spec_t *spec;
    const char *spec_source; /**< recorded in lineage: a path, "inferred", "registry ..." */
    const dataset_t *ds;     /**< cleaned rows, every one labelled 0/1 */
    const char *what;        /**< names the data in messages (the CSV path, "request X") */
    json_t *source;          /**< lineage "source" object; fit_run() takes the reference */
    const model_t *champion; /**< optional: scored on the same held-out rows */
    /** The same rows as @p ds, row for row, cleaned by the champion's spec;
     *  NULL: the champion cannot be compared (champion_note says why). */
    const dataset_t *champion_ds;
    json_t *champion_info;     /**< gates.champion (name, version, sha256...); taken */
    const char *champion_note; /**< why there is no comparison, for the gate record */
    int64_t t_start_us;        /**< mono_us() when loading began (lineage timings) */
    fit_progress_fn *progress; /**< NULL: progress goes to stderr (unless conf->quiet) */
    void *progress_arg;
} fit_input_t;

/**
 * Steps 3 to 12 of fit.c on @p in: inputs, split, preprocessing, fit,
 * threshold and metrics, profile, gates, lineage, validation. On success
 * returns 0 with *doc (the model/1 document, a new reference) and
 * *gates_ok; -1 with errstr naming the data on failure. One call at a time
 * per process. @p conf may be changed (`auto` records its choice).
 */
int fit_run(fit_conf_t *conf, fit_input_t *in, json_t **doc, bool *gates_ok, char *errstr,
            size_t errstr_size);

/** Run `mlops-trainer fit ARGS` (argv[0] is "fit"); returns the exit code. */
int trainer_fit_main(int argc, char **argv);

#endif
