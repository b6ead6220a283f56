#include "mjson.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *mjson_code_name(mjson_code_t code)
{
    switch (code) {
    case MJSON_OK: return "ok";
    case MJSON_E_BAD_JSON: return "bad_json";
    case MJSON_E_DUPLICATE_KEY: return "duplicate_key";
    case MJSON_E_NOT_OBJECT: return "not_object";
    case MJSON_E_TOO_LARGE: return "too_large";
    case MJSON_E_MISSING_FIELD: return "missing_field";
    case MJSON_E_WRONG_TYPE: return "wrong_type";
    case MJSON_E_OUT_OF_RANGE: return "out_of_range";
    case MJSON_E_NON_FINITE: return "non_finite";
    }
    return "unknown";
}

json_t *mjson_parse(const char *buf, size_t len, size_t max_bytes, err_t **errp)
{
    if (len > max_bytes) {
        err_set(errp, ERR_D_INPUT, MJSON_E_TOO_LARGE, false, false,
                "input is %zu bytes, more than the limit of %zu", len, max_bytes);
        return NULL;
    }
    json_error_t jerr;
    json_t *json = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (json)
        return json;
    mjson_code_t code = MJSON_E_BAD_JSON;
    switch (json_error_code(&jerr)) {
    case json_error_duplicate_key: code = MJSON_E_DUPLICATE_KEY; break;
    case json_error_numeric_overflow: code = MJSON_E_NON_FINITE; break;
    default: break;
    }
    err_set(errp, ERR_D_INPUT, (int)code, false, false, "%s at line %d, column %d", jerr.text,
            jerr.line, jerr.column);
    return NULL;
}

static const char *type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

json_t *mjson_parse_object(const char *buf, size_t len, size_t max_bytes, err_t **errp)
{
    json_t *json = mjson_parse(buf, len, max_bytes, errp);
    if (json && !json_is_object(json)) {
        err_set(errp, ERR_D_INPUT, MJSON_E_NOT_OBJECT, false, false,
                "top level is %s, expected an object", type_of(json));
        json_decref(json);
        return NULL;
    }
    return json;
}

/* Common prologue: returns the value, or NULL after reporting (rc set). */
static const json_t *lookup(const json_t *obj, const char *key, bool required, int *rc,
                            err_t **errp)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v)) {
        if (required)
            *rc = err_set(errp, ERR_D_INPUT, MJSON_E_MISSING_FIELD, false, false,
                          "field '%s' is missing", key);
        else
            *rc = 1;
        return NULL;
    }
    return v;
}

static int wrong_type(const char *key, const json_t *v, const char *want, err_t **errp)
{
    return err_set(errp, ERR_D_INPUT, MJSON_E_WRONG_TYPE, false, false,
                   "field '%s' is %s, expected %s", key, type_of(v), want);
}

int mjson_get_str(const json_t *obj, const char *key, bool required, const char **out, err_t **errp)
{
    int rc = 0;
    const json_t *v = lookup(obj, key, required, &rc, errp);
    if (!v)
        return rc;
    if (!json_is_string(v))
        return wrong_type(key, v, "a string", errp);
    *out = json_string_value(v);
    return 0;
}

int mjson_get_int(const json_t *obj, const char *key, bool required, int64_t *out, err_t **errp)
{
    int rc = 0;
    const json_t *v = lookup(obj, key, required, &rc, errp);
    if (!v)
        return rc;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* 3.0 is an integer written as a real; 3.5 is not */
        if (d == floor(d) && fabs(d) < 9007199254740992.0) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return wrong_type(key, v, "an integer", errp);
}

int mjson_get_num(const json_t *obj, const char *key, bool required, double *out, err_t **errp)
{
    int rc = 0;
    const json_t *v = lookup(obj, key, required, &rc, errp);
    if (!v)
        return rc;
    if (!json_is_number(v))
        return wrong_type(key, v, "a number", errp);
    double d = json_number_value(v);
    if (!isfinite(d))
        return err_set(errp, ERR_D_INPUT, MJSON_E_NON_FINITE, false, false,
                       "field '%s' is not a finite number", key);
    *out = d;
    return 0;
}

int mjson_get_bool(const json_t *obj, const char *key, bool required, bool *out, err_t **errp)
{
    int rc = 0;
    const json_t *v = lookup(obj, key, required, &rc, errp);
    if (!v)
        return rc;
    if (!json_is_boolean(v))
        return wrong_type(key, v, "a boolean", errp);
    *out = json_is_true(v);
    return 0;
}

json_t *mjson_num(double v)
{
    if (!isfinite(v))
        return NULL;
    return json_real(v);
}

int mjson_set_num(json_t *obj, const char *key, double v)
{
    json_t *n = mjson_num(v);
    if (!n)
        return -1;
    return json_object_set_new(obj, key, n) ? -1 : 0;
}

char *mjson_dump(const json_t *json, size_t *lenp)
{
    char *s = json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    if (s && lenp)
        *lenp = strlen(s);
    return s;
}
