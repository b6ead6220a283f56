/**
 * @file mjson.h
 * @brief Safe JSON on top of jansson.
 *
 * jansson's ownership rule, stated once: constructors (json_object(),
 * json_string(), ...) return a new reference; json_object_set_new() and
 * json_array_append_new() *steal* the reference they are given; every getter
 * (json_object_get(), json_array_get()) *borrows*. json_decref() what you
 * created and did not hand over.
 *
 * Input rules: the byte size is capped before parsing, duplicate keys are
 * rejected (JSON_REJECT_DUPLICATES), nesting deeper than jansson's 2048 is
 * rejected by the parser, and numbers must be finite (jansson refuses NaN
 * literals; mjson_num() refuses computed NaN/inf, since json_real(NAN)
 * returns NULL and would silently break an object).
 *
 * Errors are ERR_D_INPUT err_t objects whose code is an mjson_code_t, which
 * maps one-to-one onto the reason codes of the dlq/1 contract.
 */
#ifndef MLOPS_MJSON_H
#define MLOPS_MJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "util.h"

/** Input error codes (err_t.code with domain ERR_D_INPUT). */
typedef enum mjson_code {
    MJSON_OK = 0,
    MJSON_E_BAD_JSON,      /**< "bad_json" */
    MJSON_E_DUPLICATE_KEY, /**< "duplicate_key" */
    MJSON_E_NOT_OBJECT,    /**< "not_object" */
    MJSON_E_TOO_LARGE,     /**< "too_large" */
    MJSON_E_MISSING_FIELD, /**< "missing_field" */
    MJSON_E_WRONG_TYPE,    /**< "wrong_type" */
    MJSON_E_OUT_OF_RANGE,  /**< "out_of_range" */
    MJSON_E_NON_FINITE,    /**< "non_finite" */
} mjson_code_t;

/** The dlq/1 reason string for a code ("bad_json", ...). */
const char *mjson_code_name(mjson_code_t code);

/**
 * Parse @p len bytes (need not be NUL-terminated). Refuses more than
 * @p max_bytes before parsing. Returns a new reference or NULL with *errp
 * set (code MJSON_E_*; the message gives line and column).
 */
json_t *mjson_parse(const char *buf, size_t len, size_t max_bytes, err_t **errp);

/** As mjson_parse(), and the top level must be an object (MJSON_E_NOT_OBJECT). */
json_t *mjson_parse_object(const char *buf, size_t len, size_t max_bytes, err_t **errp);

/**
 * Typed getters. Each returns 0 on success, 1 if the key is absent or null
 * and !required (out is untouched), -1 with *errp naming the field
 * (MJSON_E_MISSING_FIELD, MJSON_E_WRONG_TYPE, MJSON_E_NON_FINITE) otherwise.
 * Strings are borrowed from @p obj.
 */
int mjson_get_str(const json_t *obj, const char *key, bool required, const char **out,
                  err_t **errp) MLOPS_WUR;
int mjson_get_int(const json_t *obj, const char *key, bool required, int64_t *out,
                  err_t **errp) MLOPS_WUR;
int mjson_get_num(const json_t *obj, const char *key, bool required, double *out,
                  err_t **errp) MLOPS_WUR;
int mjson_get_bool(const json_t *obj, const char *key, bool required, bool *out,
                   err_t **errp) MLOPS_WUR;

/** A new JSON number, or NULL if @p v is NaN or infinite. */
json_t *mjson_num(double v);
/**
 * Set obj[key] to the number @p v. Returns 0, or -1 (obj unchanged) if
 * @p v is not finite.
 */
int mjson_set_num(json_t *obj, const char *key, double v) MLOPS_WUR;

/** Compact dump with keys in insertion order; caller frees. NULL on failure. */
char *mjson_dump(const json_t *json, size_t *lenp);

#endif
