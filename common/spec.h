/**
 * @file spec.h
 * @brief Feature specs: the schema-driven cleaning and feature engineering
 *        that ingest, trainer, scorer and the CLI share (so training and
 *        serving cannot skew).
 *
 * A spec (JSON, `schema: "feature_spec/1"`, JSON Schema in
 * schemas/feature_spec.schema.json) names the entity, event id and event time
 * fields, an optional label, every input field (type, required, range or
 * allowed values, missing policy) and derived features.
 *
 * What runs here (no fitted statistics): type coercion, trimming, category
 * normalising, the missing policies drop / constant / keep, log1p, ratio,
 * bucketize with given boundaries, one-hot over the declared values,
 * target-free hashing, time parts, and per-entity rolling count/sum/mean
 * (through rolling.h). mean/median/mode imputation is fitted on training
 * data and applied by the model; here such a field stays missing.
 *
 * Ownership: spec_parse()/spec_load() return a spec the caller frees with
 * spec_destroy(). A spec_row_t is the caller's storage (spec_row_init /
 * spec_row_cleanup) and is reused across events: strings in it live until
 * the next spec_clean() on that row.
 */
#ifndef MLOPS_SPEC_H
#define MLOPS_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jflat.h"
#include "mjson.h"
#include "util.h"

typedef enum spec_type {
    SPEC_T_NUMERIC = 0,
    SPEC_T_INTEGER,
    SPEC_T_CATEGORICAL,
    SPEC_T_BOOLEAN,
    SPEC_T_TIMESTAMP,
} spec_type_t;

/** What to do when a field is absent or null. */
typedef enum spec_missing {
    SPEC_M_KEEP = 0, /**< keep it missing (null in features/1) */
    SPEC_M_DROP,     /**< the event goes to the DLQ as missing_field */
    SPEC_M_CONSTANT, /**< replace by the spec's constant */
    SPEC_M_MEAN,     /**< fitted by the trainer; missing here */
    SPEC_M_MEDIAN,   /**< fitted by the trainer; missing here */
    SPEC_M_MODE,     /**< fitted by the trainer; missing here */
} spec_missing_t;

/** Case rule for categories. */
typedef enum spec_case {
    SPEC_CASE_KEEP = 0,
    SPEC_CASE_LOWER,
    SPEC_CASE_UPPER,
} spec_case_t;

/** A category outside the declared values. */
typedef enum spec_unknown {
    SPEC_U_DLQ = 0, /**< unknown_category */
    SPEC_U_KEEP,    /**< keep it as is */
    SPEC_U_OTHER,   /**< replace by the spec's "other" value */
} spec_unknown_t;

/** A cleaned value. Strings point into the row (see spec_row_t). */
typedef enum spec_vkind {
    SPEC_V_MISSING = 0,
    SPEC_V_NUM, /**< numeric, integer, boolean (0/1), timestamp (ms since epoch) */
    SPEC_V_STR, /**< categorical */
} spec_vkind_t;

typedef struct spec_value {
    spec_vkind_t kind;
    double num;
    const char *str;
} spec_value_t;

typedef struct spec_field {
    char *name;
    spec_type_t type;
    bool required;
    spec_missing_t missing;
    spec_value_t constant; /**< for SPEC_M_CONSTANT (str owned by the spec) */
    bool has_min, has_max;
    double min, max;
    char **values; /**< allowed categories, normalised; NULL = any */
    size_t nvalues;
    spec_case_t case_rule;
    spec_unknown_t unknown;
    char *other;       /**< for SPEC_U_OTHER */
    size_t max_length; /**< categories longer than this are out_of_range */
} spec_field_t;

typedef enum spec_op {
    SPEC_OP_LOG1P = 0,
    SPEC_OP_RATIO,
    SPEC_OP_BUCKETIZE,
    SPEC_OP_ONE_HOT,
    SPEC_OP_HASH,
    SPEC_OP_TIME_PART,
    SPEC_OP_ROLLING_COUNT,
    SPEC_OP_ROLLING_SUM,
    SPEC_OP_ROLLING_MEAN,
} spec_op_t;

typedef enum spec_time_part {
    SPEC_TP_HOUR = 0,
    SPEC_TP_DOW, /**< Monday = 0 .. Sunday = 6 (as pandas' dayofweek) */
    SPEC_TP_DAY,
    SPEC_TP_MONTH,
    SPEC_TP_YEAR,
} spec_time_part_t;

typedef struct spec_derived {
    char *name;
    spec_op_t op;
    int input;          /**< field index; -1 for the event time (time_part) or none */
    int input2;         /**< ratio denominator field index */
    double *boundaries; /**< bucketize, ascending */
    size_t nboundaries;
    int buckets; /**< hash */
    spec_time_part_t part;
    int64_t window_ms; /**< rolling */
    bool invalid_null; /**< NaN/inf result -> null instead of the DLQ (non_finite) */
    size_t out;        /**< index of its first output column */
    size_t nout;       /**< one-hot: one column per declared value; else 1 */
} spec_derived_t;

typedef struct spec {
    char *name;
    int version;
    char *entity;     /**< field holding the entity key */
    char *event_id;   /**< field holding the event id */
    char *event_time; /**< field holding the event time */
    char *label;      /**< label field, or NULL */
    char *positive;   /**< the label's positive class (as text) */
    char *view;       /**< online feature view (Redis hash prefix) */
    int64_t ttl_s;    /**< online row TTL */
    int64_t dedup_window_s;
    spec_field_t *fields;
    size_t nfields;
    spec_derived_t *derived;
    size_t nderived;
    char **columns; /**< output column names: fields then derived outputs */
    size_t ncolumns;
    size_t nrolling; /**< derived rolling features */
    char hash[65];   /**< sha256 of the canonical spec JSON */
    json_t *doc;     /**< the parsed document (owned) */
} spec_t;

/**
 * Parse a spec. Errors name the JSON path ("fields[3].type: 'float' is not
 * one of numeric, integer, categorical, boolean, timestamp").
 */
spec_t *spec_parse(const char *json, size_t len, char *errstr, size_t errstr_size);
/** Read and parse a spec file; errors start with the path. */
spec_t *spec_load(const char *path, char *errstr, size_t errstr_size);
void spec_destroy(spec_t *spec);

/** Index of a field by name, or -1. */
int spec_field_index(const spec_t *spec, const char *name);
/** Index of an output column by name, or -1. */
int spec_column_index(const spec_t *spec, const char *name);
const char *spec_type_name(spec_type_t t);

/* ---- cleaning ------------------------------------------------------------------ */

/** One cleaned event: ids, time and one value per output column. */
typedef struct spec_row {
    const char *event_id;
    const char *entity;
    int64_t event_time_ms;
    spec_value_t *values; /**< spec->ncolumns */
    size_t ncolumns;
    strbuf_t arena;  /**< backing store of the strings above */
    size_t *offsets; /* string positions in the arena (resolved after growth) */
} spec_row_t;

void spec_row_init(spec_row_t *row, const spec_t *spec);
void spec_row_cleanup(spec_row_t *row);

/** Why an event was refused: the dlq/1 reason and a detail naming the field. */
typedef struct spec_error {
    mjson_code_t code; /**< MJSON_E_* (dlq/1 reason via spec_reason_name) */
    bool unknown_category;
    char field[128];
    char detail[384];
} spec_error_t;

/** The dlq/1 reason string of an error. */
const char *spec_reason_name(const spec_error_t *err);

/**
 * Validate and clean one event object into @p row: ids, event time, every
 * field (coercion, trimming, case, range, allowed values, missing policy),
 * then the derived features that need no state (everything but rolling
 * ones, which rolling.h fills). Returns 0, or -1 with @p err set.
 */
int spec_clean(const spec_t *spec, const json_t *event, spec_row_t *row,
               spec_error_t *err) MLOPS_WUR;

/**
 * spec_clean() on an event parsed by jflat_parse() (the hot path): the same
 * cleaning code, the same results and errors as spec_clean() on the jansson
 * tree of the same bytes.
 */
int spec_clean_flat(const spec_t *spec, const jflat_t *event, spec_row_t *row,
                    spec_error_t *err) MLOPS_WUR;

/**
 * Compute the stateless derived features of a cleaned row (done by
 * spec_clean(); exposed for rows built another way). Returns 0 or -1
 * (non_finite) with @p err set.
 */
int spec_derive(const spec_t *spec, spec_row_t *row, spec_error_t *err) MLOPS_WUR;

/**
 * Put a column value as JSON into @p obj under the column name (null when
 * missing). Returns 0, -1 on a non-finite number.
 */
int spec_value_to_json(const spec_value_t *v, json_t *obj, const char *key) MLOPS_WUR;

/* ---- helpers exposed for tests and the other modules ---------------------------------- */

/**
 * The boolean words the cleaning accepts (true/false, yes/no, y/n, 1/0,
 * t/f in any case, surrounding white space allowed): 1, 0, or -1 for
 * anything else.
 */
int spec_bool_text(const char *s);

/** MurmurHash3 x86 32-bit, as scikit-learn's murmurhash3_32 (signed result). */
int32_t spec_murmur3_32(const void *data, size_t len, uint32_t seed);
/** Bucket of a hashed category: |murmur3_32(s, 0)| mod n (FeatureHasher's index). */
int spec_hash_bucket(const char *s, int buckets);
/** Index of the bucket of @p x: the number of boundaries <= x (numpy.digitize). */
int spec_bucketize(double x, const double *boundaries, size_t n);
/**
 * Parse an event time: RFC 3339 ("2026-11-25T10:00:00Z", fractions and
 * offsets allowed) or a number of epoch milliseconds, as a JSON number or as
 * text ("1764064800000"). Returns 0 or -1.
 */
int spec_parse_time(const json_t *v, int64_t *ms_out) MLOPS_WUR;
/** Time part of a UTC epoch-ms time. */
int spec_time_part(int64_t ms, spec_time_part_t part);

/**
 * Compare two specs: 0 identical, 1 compatible (only optional fields or
 * derived features added, nothing removed or retyped: same version may
 * read both), 2 a new version is needed. @p report gets one line per
 * difference.
 */
int spec_diff(const spec_t *old, const spec_t *nw, strbuf_t *report);

#endif
