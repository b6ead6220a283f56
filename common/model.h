/**
 * @file model.h
 * @brief The `model/1` artifact: one self-contained JSON document with the
 *        embedded feature spec, the fitted preprocessing, the model
 *        (logistic regression or gradient-boosted trees), the decision
 *        threshold, held-out metrics, the drift reference profile and the
 *        lineage. JSON Schema: schemas/model.schema.json.
 *
 * The trainer builds the document; the scorer and `mlopsctl predict` load it
 * with model_parse()/model_load() and score with the same two calls:
 * model_encode() turns a cleaned row (spec.h: spec_clean() and the rolling
 * pass have run) into the model's input vector, model_predict() gives the
 * probability of the positive class. There is no other scoring code.
 *
 * Input vector layout (model_nslots() doubles):
 *  - logreg: a numeric input is one slot, (value or fill - mean) / scale;
 *    a categorical input is one slot per category of its map (one-hot, not
 *    scaled); a missing category takes the fill category when there is one,
 *    an unknown category is all zeros.
 *  - gbdt: one slot per input: the value (or its fill; NaN when the policy
 *    keeps it missing, the tree's default direction decides), or for a
 *    categorical input the category's index in the map (NaN if missing and
 *    no fill, or unknown).
 *
 * Ownership: model_parse()/model_load() return a model freed with
 * model_destroy(); the model owns its spec and a reference to the document.
 * Pointers returned by the accessors live as long as the model.
 */
#ifndef MLOPS_MODEL_H
#define MLOPS_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"
#include "util.h"

#define MODEL_SCHEMA "model/1"
/** Most categories kept in an input's category map (others are unknown). */
#define MODEL_MAX_CATEGORIES 255

typedef enum model_algo {
    MODEL_ALGO_LOGREG = 0,
    MODEL_ALGO_GBDT,
} model_algo_t;

/** One model input: a spec output column and its fitted preprocessing. */
typedef struct model_input {
    char *column;     /**< spec column name */
    int col;          /**< index in spec->columns */
    bool categorical; /**< category map encoding */
    double fill;      /**< numeric fill for a missing value; NaN = keep missing (gbdt) */
    double mean;      /**< logreg standardisation (0 for gbdt) */
    double scale;     /**< logreg standardisation (1 for gbdt) */
    char **cats;      /**< category map: index -> normalised category */
    size_t ncats;
    int cat_fill; /**< category index used when missing, -1 = none */
    size_t slot;  /**< first slot in the input vector */
    size_t nslots;
} model_input_t;

/** One regression tree in flat arrays; node 0 is the root. */
typedef struct model_tree {
    size_t nnodes;
    int32_t *feature;  /**< input slot, -1 for a leaf */
    double *threshold; /**< numeric split: x < threshold goes left */
    int32_t *left;     /**< child node indices */
    int32_t *right;
    uint8_t *default_left; /**< where a missing (NaN) value goes */
    double *value;         /**< leaf value (margin) */
    int32_t *cat_off;      /**< categorical split: categories [off, off+len) of cats go left */
    int32_t *cat_len;      /**< 0 for a numeric split */
    int32_t *cats;
    size_t ncats_total;
} model_tree_t;

typedef struct model model_t;

/**
 * Validate a `model/1` document and build the model from it (the document
 * is borrowed; the model takes its own reference). Errors name the field:
 * "gbdt.trees[3].left[7]: child 12 out of range (9 nodes)".
 */
model_t *model_from_json(json_t *doc, char *errstr, size_t errstr_size);
/** Parse and validate @p len bytes of JSON. */
model_t *model_parse(const char *json, size_t len, char *errstr, size_t errstr_size);
/** Read, parse and validate a file (errors start with the path). */
model_t *model_load(const char *path, char *errstr, size_t errstr_size);
void model_destroy(model_t *m);

model_algo_t model_algo(const model_t *m);
const char *model_algo_name(model_algo_t a);
/** The embedded spec (owned by the model). */
const spec_t *model_spec(const model_t *m);
/** The document (borrowed). */
const json_t *model_doc(const model_t *m);
/** Length of the input vector. */
size_t model_nslots(const model_t *m);
const model_input_t *model_inputs(const model_t *m, size_t *n);
double model_threshold(const model_t *m);

/**
 * Encode a cleaned row's column values (spec->ncolumns of them) into @p x
 * (model_nslots() doubles). Returns the number of inputs that were missing
 * or unknown (filled or left to the trees' default directions).
 */
size_t model_encode(const model_t *m, const spec_value_t *values, double *x);
/**
 * model_encode() for the "values" object of a features/1 record (what the
 * scorer receives): numbers, true/false (1/0), strings, null or absent
 * (missing), looked up by the inputs' column names. @p scratch is the
 * caller's array of spec->ncolumns values (reused across calls: nothing is
 * allocated); strings in it borrow from @p values. Returns what
 * model_encode() returns; a value of the wrong JSON type (an array, an
 * object) counts as missing.
 */
size_t model_encode_json(const model_t *m, const json_t *values, spec_value_t *scratch, double *x);
/** The raw margin (log-odds) for an encoded vector. */
double model_margin(const model_t *m, const double *x);
/** The probability of the positive class for an encoded vector. */
double model_predict(const model_t *m, const double *x);

/** The logistic function, as every scoring path computes it. */
double model_sigmoid(double margin);
/** Margin of one tree for an encoded vector. */
double model_tree_margin(const model_tree_t *t, const double *x);

/**
 * Write a document atomically: PATH.tmp.PID, fsync, rename. Returns 0, or
 * -1 with errstr (no file is left behind).
 */
int model_write_file(const json_t *doc, const char *path, char *errstr,
                     size_t errstr_size) MLOPS_WUR;

/* ---- encoding helpers the trainer shares (so training and serving agree) ---- */

/** Index of @p s in an input's category map, or -1. */
int model_input_cat_index(const model_input_t *in, const char *s);
/** Free the arrays of a tree (the struct itself is the caller's). */
void model_tree_cleanup(model_tree_t *t);
/** A tree as JSON (new reference). */
json_t *model_tree_to_json(const model_tree_t *t);

/** Sort finite doubles ascending (LSD radix sort, O(n); for binning and
 * quantiles of large columns). */
void model_sort_doubles(double *v, size_t n);

/* ---- evaluation (metrics on a held-out split) ---- */

typedef struct model_metrics {
    double auc, log_loss, accuracy, precision, recall, f1, brier;
    size_t tp, fp, tn, fn;
    size_t n, npos;
} model_metrics_t;

/** ROC AUC with ties counted half (Mann-Whitney); NaN with one class only. */
double model_auc(const double *score, const int *y, size_t n);
/** The threshold that maximises F1 (predict positive when score >= t). */
double model_best_f1_threshold(const double *score, const int *y, size_t n);
/** All metrics at threshold @p t. */
void model_metrics(const double *score, const int *y, size_t n, double t, model_metrics_t *out);
/** Metrics as a JSON object (new reference). */
json_t *model_metrics_json(const model_metrics_t *mm);

#endif
