/**
 * @file jflat.h
 * @brief A fast path for the JSON events of the hot path: one flat object of
 *        scalars (strings, numbers, booleans, null), parsed without a tree.
 *
 * jansson builds a tree with an allocation per value and a hash table per
 * object; on a 30-field event that was the largest single cost of ingest.
 * jflat_parse() reads such an object into a reused array of fields, and
 * refuses (returns -1) anything it does not handle exactly as jansson would:
 * nested objects or arrays, a duplicate key, \u0000, invalid or unusual
 * UTF-8, numbers outside int64 or double range, any syntax error, trailing
 * bytes. The caller then parses with jansson (mjson_parse), which accepts or
 * reports the input as before. So for every input jflat accepts, jansson
 * accepts it too and gives the same keys, types and values (the unit tests
 * check this on generated and mutated inputs); every error message and DLQ
 * reason still comes from jansson.
 *
 * Ownership: a jflat_t is the caller's storage (jflat_init/jflat_cleanup),
 * reused across events; field keys and string values point into it and live
 * until the next jflat_parse() on it.
 */
#ifndef MLOPS_JFLAT_H
#define MLOPS_JFLAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum jflat_type {
    JFLAT_NULL = 0,
    JFLAT_FALSE,
    JFLAT_TRUE,
    JFLAT_INT,  /**< a number without fraction or exponent, as jansson's integer */
    JFLAT_REAL, /**< any other number, as jansson's real */
    JFLAT_STRING,
} jflat_type_t;

typedef struct jflat_field {
    const char *key; /**< NUL-terminated (no NUL inside: \u0000 is refused) */
    size_t key_len;
    jflat_type_t type;
    int64_t i;     /**< JFLAT_INT */
    double d;      /**< JFLAT_REAL (finite) */
    const char *s; /**< JFLAT_STRING, decoded, NUL-terminated */
    size_t s_len;
} jflat_field_t;

typedef struct jflat {
    jflat_field_t *fields;
    size_t n, cap;
    strbuf_t text; /* decoded keys and strings */
    size_t *key_off, *s_off;
} jflat_t;

void jflat_init(jflat_t *jf);
void jflat_cleanup(jflat_t *jf);

/**
 * Parse @p len bytes as one flat JSON object. Returns 0 with the fields in
 * @p jf (in input order), or -1 when the input is anything else (see the
 * file comment: parse it with jansson instead).
 */
int jflat_parse(jflat_t *jf, const char *buf, size_t len) MLOPS_WUR;

/** The field named @p key (@p len bytes), or NULL. */
const jflat_field_t *jflat_get(const jflat_t *jf, const char *key, size_t len);

#endif
