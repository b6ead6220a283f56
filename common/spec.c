#include "spec.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <locale.h>
#include <pthread.h>
#include <time.h>
#include <wctype.h>
#include "jflat.h"

/* An input value seen through one small type, whether it came from a jansson
 * tree (spec_clean) or from the flat fast path (spec_clean_flat), so both
 * run the same cleaning code. */
typedef enum jv_kind {
    JV_ABSENT = 0,
    JV_NULL,
    JV_FALSE,
    JV_TRUE,
    JV_INT,
    JV_REAL,
    JV_STRING,
    JV_OBJECT,
    JV_ARRAY,
} jv_kind_t;

typedef struct jv {
    jv_kind_t kind;
    int64_t i;
    double d;
    const char *s; /* NUL-terminated */
} jv_t;

static jv_t jv_of_json(const json_t *v)
{
    jv_t r = {0};
    if (!v)
        return r;
    switch (json_typeof(v)) {
    case JSON_NULL: r.kind = JV_NULL; break;
    case JSON_FALSE: r.kind = JV_FALSE; break;
    case JSON_TRUE: r.kind = JV_TRUE; break;
    case JSON_INTEGER:
        r.kind = JV_INT;
        r.i = (int64_t)json_integer_value(v);
        break;
    case JSON_REAL:
        r.kind = JV_REAL;
        r.d = json_real_value(v);
        break;
    case JSON_STRING:
        r.kind = JV_STRING;
        r.s = json_string_value(v);
        break;
    case JSON_OBJECT: r.kind = JV_OBJECT; break;
    case JSON_ARRAY: r.kind = JV_ARRAY; break;
    }
    return r;
}

static jv_t jv_of_flat(const jflat_field_t *f)
{
    jv_t r = {0};
    if (!f)
        return r;
    switch (f->type) {
    case JFLAT_NULL: r.kind = JV_NULL; break;
    case JFLAT_FALSE: r.kind = JV_FALSE; break;
    case JFLAT_TRUE: r.kind = JV_TRUE; break;
    case JFLAT_INT:
        r.kind = JV_INT;
        r.i = f->i;
        break;
    case JFLAT_REAL:
        r.kind = JV_REAL;
        r.d = f->d;
        break;
    case JFLAT_STRING:
        r.kind = JV_STRING;
        r.s = f->s;
        break;
    }
    return r;
}

#define JV_IS_BOOL(v) ((v)->kind == JV_TRUE || (v)->kind == JV_FALSE)
#define JV_IS_NUM(v) ((v)->kind == JV_INT || (v)->kind == JV_REAL)
#define JV_NUM(v) ((v)->kind == JV_INT ? (double)(v)->i : (v)->d)

#define SPEC_FILE_MAX (1 << 20)
#define ID_MAX_LEN 256
#define CATEGORY_MAX_LEN_DEFAULT 256

static const char *type_names[] = {"numeric", "integer", "categorical", "boolean", "timestamp"};
static const char *missing_names[] = {"keep", "drop", "constant", "mean", "median", "mode"};
static const char *case_names[] = {"keep", "lower", "upper"};
static const char *unknown_names[] = {"dlq", "keep", "other"};
static const char *op_names[] = {"log1p",     "ratio",         "bucketize",   "one_hot",     "hash",
                                 "time_part", "rolling_count", "rolling_sum", "rolling_mean"};
static const char *part_names[] = {"hour", "dow", "day", "month", "year"};

const char *spec_type_name(spec_type_t t)
{
    return (unsigned)t < MLOPS_ARRAY_LEN(type_names) ? type_names[t] : "?";
}

/* ---- parsing helpers: every error names its JSON path ------------------------------ */

typedef struct perr {
    char *buf;
    size_t size;
} perr_t;

static int fail(perr_t *pe, const char *path, const char *fmt, ...) MLOPS_PRINTF(3, 4);
static int fail(perr_t *pe, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(pe->buf, pe->size, "%s%s%s", path, *path ? ": " : "", msg);
    return -1;
}

static int check_keys(perr_t *pe, const char *path, const json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, key);
        if (!ok)
            return fail(pe, path, "unknown key '%s'", key);
    }
    return 0;
}

static int enum_of(perr_t *pe, const char *path, const char *s, const char *const *names, size_t n,
                   int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(s, names[i])) {
            *out = (int)i;
            return 0;
        }
    }
    char list[256] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", names[i]);
    return fail(pe, path, "'%s' is not one of %s", s, list);
}

/* Get a string member; required ones must exist and be non-empty. */
static int get_str(perr_t *pe, const char *path, const json_t *obj, const char *key, bool required,
                   const char **out)
{
    const json_t *v = json_object_get(obj, key);
    char p[256];
    snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key);
    if (!v) {
        if (required)
            return fail(pe, path, "'%s' is required", key);
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v) || !*json_string_value(v))
        return fail(pe, p, "must be a non-empty string");
    *out = json_string_value(v);
    return 0;
}

static int get_num(perr_t *pe, const char *path, const json_t *obj, const char *key, bool *has,
                   double *out)
{
    const json_t *v = json_object_get(obj, key);
    *has = false;
    if (!v)
        return 0;
    char p[256];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    if (!json_is_number(v))
        return fail(pe, p, "must be a number");
    *out = json_number_value(v);
    *has = true;
    return 0;
}

static int get_int(perr_t *pe, const char *path, const json_t *obj, const char *key, int64_t def,
                   int64_t lo, int64_t hi, int64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    *out = def;
    if (!v)
        return 0;
    char p[256];
    snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key);
    if (!json_is_integer(v))
        return fail(pe, p, "must be an integer");
    *out = json_integer_value(v);
    if (*out < lo || *out > hi)
        return fail(pe, p, "%lld is out of range [%lld, %lld]", (long long)*out, (long long)lo,
                    (long long)hi);
    return 0;
}

/* Unicode case mapping through a C.UTF-8 locale object (glibc: simple case
 * mapping), without touching the process locale. NULL -> ASCII only. */
static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static void utf8_init(void) { utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

/* Decode one UTF-8 sequence at s (n bytes left); 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len = c < 0x80                   ? 1
                 : (c >= 0xc2 && c <= 0xdf) ? 2
                 : (c >= 0xe0 && c <= 0xef) ? 3
                 : (c >= 0xf0 && c <= 0xf4) ? 4
                                            : 0;
    if (!len || len > n)
        return 0;
    uint32_t v = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

static void utf8_encode(uint32_t cp, strbuf_t *out)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (char)(0xf0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    strbuf_append(out, b, n);
}

/* Normalise a category: trim, collapse inner runs of ASCII white space to one
 * space, apply the case rule (Unicode simple case mapping). Bytes that are
 * not valid UTF-8 are copied unchanged. */
static void normalise_category(const char *in, size_t len, spec_case_t rule, strbuf_t *out)
{
    if (rule != SPEC_CASE_KEEP)
        pthread_once(&utf8_once, utf8_init);
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0;
    while (i < len && isspace(p[i]))
        i++;
    while (len > i && isspace(p[len - 1]))
        len--;
    bool space = false;
    while (i < len) {
        if (isspace(p[i])) {
            space = true;
            i++;
            continue;
        }
        if (space)
            strbuf_putc(out, ' ');
        space = false;
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (!n) {
            strbuf_putc(out, (char)p[i++]);
            continue;
        }
        if (rule != SPEC_CASE_KEEP) {
            if (utf8_locale)
                cp = (uint32_t)(rule == SPEC_CASE_LOWER ? towlower_l((wint_t)cp, utf8_locale)
                                                        : towupper_l((wint_t)cp, utf8_locale));
            else if (cp < 0x80)
                cp = (uint32_t)(rule == SPEC_CASE_LOWER ? tolower((int)cp) : toupper((int)cp));
        }
        utf8_encode(cp, out);
        i += n;
    }
}

/* Text form of a label/constant/category given as any JSON scalar. */
static int jv_scalar_text(const jv_t *v, strbuf_t *out)
{
    if ((v->kind == JV_STRING))
        strbuf_puts(out, v->s);
    else if ((v->kind == JV_INT))
        strbuf_appendf(out, "%lld", (long long)v->i);
    else if ((v->kind == JV_REAL) && v->d == floor(v->d) && fabs(v->d) < 9e15)
        strbuf_appendf(out, "%.0f", v->d);
    else if ((v->kind == JV_REAL))
        strbuf_appendf(out, "%.17g", v->d);
    else if (JV_IS_BOOL(v))
        strbuf_puts(out, (v->kind == JV_TRUE) ? "true" : "false");
    else
        return -1;
    return 0;
}

static int scalar_text(const json_t *j, strbuf_t *out)
{
    jv_t v = jv_of_json(j);
    return jv_scalar_text(&v, out);
}

static int parse_field(perr_t *pe, const char *path, const json_t *f, spec_field_t *sf)
{
    static const char *const keys[] = {"name",  "type",       "required",    "missing", "constant",
                                       "min",   "max",        "values",      "case",    "unknown",
                                       "other", "max_length", "description", NULL};
    if (!json_is_object(f))
        return fail(pe, path, "must be an object");
    if (check_keys(pe, path, f, keys))
        return -1;
    const char *name, *type, *s;
    if (get_str(pe, path, f, "name", true, &name) || get_str(pe, path, f, "type", true, &type))
        return -1;
    sf->name = xstrdup(name);
    char p[256];
    snprintf(p, sizeof(p), "%s.type", path);
    int t;
    if (enum_of(pe, p, type, type_names, MLOPS_ARRAY_LEN(type_names), &t))
        return -1;
    sf->type = (spec_type_t)t;
    const json_t *req = json_object_get(f, "required");
    if (req && !json_is_boolean(req))
        return fail(pe, path, "required: must be true or false");
    sf->required = req && json_is_true(req);
    sf->missing = sf->required ? SPEC_M_DROP : SPEC_M_KEEP;
    if (get_str(pe, path, f, "missing", false, &s))
        return -1;
    if (s) {
        snprintf(p, sizeof(p), "%s.missing", path);
        int m;
        if (enum_of(pe, p, s, missing_names, MLOPS_ARRAY_LEN(missing_names), &m))
            return -1;
        if (sf->required && m != SPEC_M_DROP)
            return fail(pe, p, "a required field's missing policy can only be 'drop'");
        sf->missing = (spec_missing_t)m;
        bool fitted = m == SPEC_M_MEAN || m == SPEC_M_MEDIAN;
        if (fitted && (sf->type == SPEC_T_CATEGORICAL || sf->type == SPEC_T_BOOLEAN))
            return fail(pe, p, "'%s' needs a numeric field", s);
    }
    if (get_str(pe, path, f, "case", false, &s))
        return -1;
    if (s) {
        snprintf(p, sizeof(p), "%s.case", path);
        int c;
        if (enum_of(pe, p, s, case_names, MLOPS_ARRAY_LEN(case_names), &c))
            return -1;
        sf->case_rule = (spec_case_t)c;
    }
    if (get_num(pe, path, f, "min", &sf->has_min, &sf->min) ||
        get_num(pe, path, f, "max", &sf->has_max, &sf->max))
        return -1;
    if (sf->has_min && sf->has_max && sf->min > sf->max)
        return fail(pe, path, "min %g is above max %g", sf->min, sf->max);
    if ((sf->has_min || sf->has_max) &&
        (sf->type == SPEC_T_CATEGORICAL || sf->type == SPEC_T_BOOLEAN))
        return fail(pe, path, "min/max apply to numeric, integer and timestamp fields only");
    int64_t ml;
    if (get_int(pe, path, f, "max_length", CATEGORY_MAX_LEN_DEFAULT, 1, 1 << 20, &ml))
        return -1;
    sf->max_length = (size_t)ml;
    const json_t *vals = json_object_get(f, "values");
    strbuf_t sb;
    strbuf_init(&sb);
    if (vals) {
        snprintf(p, sizeof(p), "%s.values", path);
        if (sf->type != SPEC_T_CATEGORICAL) {
            strbuf_cleanup(&sb);
            return fail(pe, p, "only categorical fields have values");
        }
        if (!json_is_array(vals) || json_array_size(vals) == 0) {
            strbuf_cleanup(&sb);
            return fail(pe, p, "must be a non-empty array");
        }
        sf->nvalues = json_array_size(vals);
        sf->values = xcalloc(sf->nvalues, sizeof(char *));
        for (size_t i = 0; i < sf->nvalues; i++) {
            strbuf_t raw;
            strbuf_init(&raw);
            if (scalar_text(json_array_get(vals, i), &raw)) {
                strbuf_cleanup(&raw);
                strbuf_cleanup(&sb);
                return fail(pe, p, "item %zu is not a scalar", i);
            }
            strbuf_reset(&sb);
            normalise_category(raw.data, raw.len, sf->case_rule, &sb);
            strbuf_cleanup(&raw);
            for (size_t j = 0; j < i; j++) {
                if (!strcmp(sf->values[j], sb.data)) {
                    int rc = fail(pe, p, "'%s' is listed twice (after normalising)", sb.data);
                    strbuf_cleanup(&sb);
                    return rc;
                }
            }
            sf->values[i] = xstrdup(sb.data);
        }
    }
    if (get_str(pe, path, f, "unknown", false, &s)) {
        strbuf_cleanup(&sb);
        return -1;
    }
    if (s) {
        snprintf(p, sizeof(p), "%s.unknown", path);
        int u;
        if (enum_of(pe, p, s, unknown_names, MLOPS_ARRAY_LEN(unknown_names), &u)) {
            strbuf_cleanup(&sb);
            return -1;
        }
        sf->unknown = (spec_unknown_t)u;
    }
    if (sf->unknown == SPEC_U_OTHER) {
        const json_t *o = json_object_get(f, "other");
        strbuf_reset(&sb);
        if (!o || scalar_text(o, &sb)) {
            strbuf_cleanup(&sb);
            return fail(pe, path, "unknown 'other' needs an 'other' value");
        }
        strbuf_t norm;
        strbuf_init(&norm);
        normalise_category(sb.data, sb.len, sf->case_rule, &norm);
        sf->other = strbuf_detach(&norm, NULL);
        strbuf_cleanup(&norm);
    }
    if (sf->missing == SPEC_M_CONSTANT) {
        const json_t *c = json_object_get(f, "constant");
        snprintf(p, sizeof(p), "%s.constant", path);
        if (!c) {
            strbuf_cleanup(&sb);
            return fail(pe, path, "missing 'constant' needs a 'constant' value");
        }
        if (sf->type == SPEC_T_CATEGORICAL) {
            strbuf_reset(&sb);
            if (scalar_text(c, &sb)) {
                strbuf_cleanup(&sb);
                return fail(pe, p, "must be a scalar");
            }
            strbuf_t norm;
            strbuf_init(&norm);
            normalise_category(sb.data, sb.len, sf->case_rule, &norm);
            sf->constant.kind = SPEC_V_STR;
            sf->constant.str = strbuf_detach(&norm, NULL);
            strbuf_cleanup(&norm);
        } else if (sf->type == SPEC_T_BOOLEAN && json_is_boolean(c)) {
            sf->constant.kind = SPEC_V_NUM;
            sf->constant.num = json_is_true(c);
        } else if (json_is_number(c) && sf->type != SPEC_T_BOOLEAN) {
            sf->constant.kind = SPEC_V_NUM;
            sf->constant.num = json_number_value(c);
        } else {
            strbuf_cleanup(&sb);
            return fail(pe, p, "does not match the field's type %s", type_names[sf->type]);
        }
    }
    strbuf_cleanup(&sb);
    return 0;
}

static int field_ref(perr_t *pe, const char *path, const spec_t *spec, const json_t *d,
                     const char *key, int *out)
{
    const char *name;
    if (get_str(pe, path, d, key, true, &name))
        return -1;
    *out = spec_field_index(spec, name);
    if (*out < 0) {
        if (!strcmp(name, spec->event_time)) {
            *out = -1;
            return 1; /* the event time */
        }
        return fail(pe, path, "%s: no field named '%s'", key, name);
    }
    return 0;
}

static bool numeric_type(spec_type_t t)
{
    return t == SPEC_T_NUMERIC || t == SPEC_T_INTEGER || t == SPEC_T_BOOLEAN;
}

static int parse_derived(perr_t *pe, const char *path, spec_t *spec, const json_t *d,
                         spec_derived_t *sd)
{
    static const char *const keys[] = {"name",     "op",         "input",       "num",
                                       "den",      "boundaries", "buckets",     "part",
                                       "window_s", "on_invalid", "description", NULL};
    if (!json_is_object(d))
        return fail(pe, path, "must be an object");
    if (check_keys(pe, path, d, keys))
        return -1;
    const char *name, *op, *s;
    if (get_str(pe, path, d, "name", true, &name) || get_str(pe, path, d, "op", true, &op))
        return -1;
    sd->name = xstrdup(name);
    char p[256];
    snprintf(p, sizeof(p), "%s.op", path);
    int o;
    if (enum_of(pe, p, op, op_names, MLOPS_ARRAY_LEN(op_names), &o))
        return -1;
    sd->op = (spec_op_t)o;
    sd->input = sd->input2 = -1;
    sd->nout = 1;
    if (get_str(pe, path, d, "on_invalid", false, &s))
        return -1;
    if (s) {
        if (strcmp(s, "dlq") && strcmp(s, "null")) {
            snprintf(p, sizeof(p), "%s.on_invalid", path);
            return fail(pe, p, "'%s' is not one of dlq, null", s);
        }
        sd->invalid_null = !strcmp(s, "null");
    }
    int rc;
    switch (sd->op) {
    case SPEC_OP_LOG1P:
    case SPEC_OP_BUCKETIZE:
    case SPEC_OP_ROLLING_SUM:
    case SPEC_OP_ROLLING_MEAN:
        if ((rc = field_ref(pe, path, spec, d, "input", &sd->input)) != 0)
            return rc < 0 ? -1 : fail(pe, path, "input: the event time is not numeric here");
        if (!numeric_type(spec->fields[sd->input].type))
            return fail(pe, path, "input: '%s' is %s, %s needs a number",
                        spec->fields[sd->input].name, type_names[spec->fields[sd->input].type], op);
        break;
    case SPEC_OP_RATIO:
        if ((rc = field_ref(pe, path, spec, d, "num", &sd->input)) != 0 ||
            (rc = field_ref(pe, path, spec, d, "den", &sd->input2)) != 0)
            return rc < 0 ? -1 : fail(pe, path, "ratio inputs must be numeric fields");
        if (!numeric_type(spec->fields[sd->input].type) ||
            !numeric_type(spec->fields[sd->input2].type))
            return fail(pe, path, "ratio inputs must be numeric fields");
        break;
    case SPEC_OP_ONE_HOT:
    case SPEC_OP_HASH:
        if ((rc = field_ref(pe, path, spec, d, "input", &sd->input)) != 0)
            return rc < 0 ? -1 : fail(pe, path, "input: the event time is not a category");
        if (spec->fields[sd->input].type != SPEC_T_CATEGORICAL)
            return fail(pe, path, "input: '%s' is %s, %s needs a categorical field",
                        spec->fields[sd->input].name, type_names[spec->fields[sd->input].type], op);
        if (sd->op == SPEC_OP_ONE_HOT) {
            if (!spec->fields[sd->input].values)
                return fail(pe, path,
                            "one_hot needs the input's declared values (a fitted vocabulary "
                            "belongs to the model)");
            sd->nout = spec->fields[sd->input].nvalues;
        } else {
            int64_t b;
            if (get_int(pe, path, d, "buckets", -1, 2, 1 << 20, &b))
                return -1;
            if (b < 0)
                return fail(pe, path, "hash needs 'buckets'");
            sd->buckets = (int)b;
        }
        break;
    case SPEC_OP_TIME_PART:
        rc = field_ref(pe, path, spec, d, "input", &sd->input);
        if (rc < 0)
            return -1;
        if (rc == 0 && spec->fields[sd->input].type != SPEC_T_TIMESTAMP)
            return fail(pe, path, "input: '%s' is not a timestamp", spec->fields[sd->input].name);
        if (get_str(pe, path, d, "part", true, &s))
            return -1;
        snprintf(p, sizeof(p), "%s.part", path);
        int part;
        if (enum_of(pe, p, s, part_names, MLOPS_ARRAY_LEN(part_names), &part))
            return -1;
        sd->part = (spec_time_part_t)part;
        break;
    case SPEC_OP_ROLLING_COUNT: break;
    }
    if (sd->op == SPEC_OP_BUCKETIZE) {
        const json_t *b = json_object_get(d, "boundaries");
        snprintf(p, sizeof(p), "%s.boundaries", path);
        if (!json_is_array(b) || json_array_size(b) == 0)
            return fail(pe, p, "must be a non-empty array of ascending numbers");
        sd->nboundaries = json_array_size(b);
        sd->boundaries = xcalloc(sd->nboundaries, sizeof(double));
        for (size_t i = 0; i < sd->nboundaries; i++) {
            const json_t *x = json_array_get(b, i);
            if (!json_is_number(x))
                return fail(pe, p, "item %zu is not a number", i);
            sd->boundaries[i] = json_number_value(x);
            if (i && sd->boundaries[i] <= sd->boundaries[i - 1])
                return fail(pe, p, "must be strictly ascending (item %zu)", i);
        }
    }
    if (sd->op >= SPEC_OP_ROLLING_COUNT) {
        int64_t w;
        if (get_int(pe, path, d, "window_s", -1, 1, 366LL * 86400, &w))
            return -1;
        if (w < 0)
            return fail(pe, path, "%s needs 'window_s'", op);
        sd->window_ms = w * 1000;
        spec->nrolling++;
    }
    return 0;
}

static void add_column(spec_t *spec, char *name)
{
    spec->columns = xrealloc(spec->columns, (spec->ncolumns + 1) * sizeof(char *));
    spec->columns[spec->ncolumns++] = name;
}

spec_t *spec_parse(const char *json, size_t len, char *errstr, size_t errstr_size)
{
    perr_t pe = {errstr, errstr_size};
    err_t *e = NULL;
    json_t *doc = mjson_parse_object(json, len, SPEC_FILE_MAX, &e);
    if (!doc) {
        snprintf(errstr, errstr_size, "not a JSON object: %s", e->msg);
        err_destroy(e);
        return NULL;
    }
    spec_t *spec = xcalloc(1, sizeof(*spec));
    spec->doc = doc;
    static const char *const keys[] = {
        "schema", "name",   "version",        "description", "entity",  "event_id", "event_time",
        "label",  "online", "dedup_window_s", "fields",      "derived", NULL};
    const char *schema, *s;
    if (check_keys(&pe, "", doc, keys) || get_str(&pe, "", doc, "schema", true, &schema))
        goto err;
    if (strcmp(schema, "feature_spec/1")) {
        fail(&pe, "schema", "'%s' is not feature_spec/1", schema);
        goto err;
    }
    if (get_str(&pe, "", doc, "name", true, &s))
        goto err;
    for (const char *c = s; *c; c++) {
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.') {
            fail(&pe, "name", "'%s': use letters, digits, '_', '-' and '.' only", s);
            goto err;
        }
    }
    spec->name = xstrdup(s);
    int64_t v;
    if (get_int(&pe, "", doc, "version", 1, 1, 1000000, &v))
        goto err;
    spec->version = (int)v;
    if (get_str(&pe, "", doc, "entity", true, &s))
        goto err;
    spec->entity = xstrdup(s);
    if (get_str(&pe, "", doc, "event_id", true, &s))
        goto err;
    spec->event_id = xstrdup(s);
    if (get_str(&pe, "", doc, "event_time", true, &s))
        goto err;
    spec->event_time = xstrdup(s);
    const json_t *label = json_object_get(doc, "label");
    if (label) {
        static const char *const lkeys[] = {"field", "positive", NULL};
        if (!json_is_object(label)) {
            fail(&pe, "label", "must be an object with field and positive");
            goto err;
        }
        if (check_keys(&pe, "label", label, lkeys) ||
            get_str(&pe, "label", label, "field", true, &s))
            goto err;
        spec->label = xstrdup(s);
        const json_t *pos = json_object_get(label, "positive");
        strbuf_t sb;
        strbuf_init(&sb);
        if (!pos || scalar_text(pos, &sb)) {
            strbuf_cleanup(&sb);
            fail(&pe, "label", "'positive' (the positive class) is required");
            goto err;
        }
        spec->positive = strbuf_detach(&sb, NULL);
        strbuf_cleanup(&sb);
    }
    const json_t *online = json_object_get(doc, "online");
    spec->view = xstrdup(spec->name);
    spec->ttl_s = 7 * 86400;
    if (online) {
        static const char *const okeys[] = {"view", "ttl_s", NULL};
        if (!json_is_object(online) || check_keys(&pe, "online", online, okeys)) {
            if (!json_is_object(online))
                fail(&pe, "online", "must be an object");
            goto err;
        }
        if (get_str(&pe, "online", online, "view", false, &s))
            goto err;
        if (s) {
            free(spec->view);
            spec->view = xstrdup(s);
        }
        if (get_int(&pe, "online", online, "ttl_s", 7 * 86400, 1, 3650LL * 86400, &spec->ttl_s))
            goto err;
    }
    if (get_int(&pe, "", doc, "dedup_window_s", 86400, 0, 3650LL * 86400, &spec->dedup_window_s))
        goto err;

    const json_t *fields = json_object_get(doc, "fields");
    if (!json_is_array(fields) || json_array_size(fields) == 0) {
        fail(&pe, "fields", "must be a non-empty array");
        goto err;
    }
    spec->nfields = json_array_size(fields);
    spec->fields = xcalloc(spec->nfields, sizeof(spec_field_t));
    for (size_t i = 0; i < spec->nfields; i++) {
        char p[64];
        snprintf(p, sizeof(p), "fields[%zu]", i);
        if (parse_field(&pe, p, json_array_get(fields, i), &spec->fields[i]))
            goto err;
        const char *n = spec->fields[i].name;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(spec->fields[j].name, n)) {
                fail(&pe, p, "field '%s' is declared twice", n);
                goto err;
            }
        }
        if (!strcmp(n, spec->entity) || !strcmp(n, spec->event_id) ||
            !strcmp(n, spec->event_time)) {
            fail(&pe, p, "'%s' is the entity, event id or event time, not a feature", n);
            goto err;
        }
        if (spec->label && !strcmp(n, spec->label)) {
            fail(&pe, p, "'%s' is the label: it must not be a feature", n);
            goto err;
        }
    }
    for (size_t i = 0; i < spec->nfields; i++)
        add_column(spec, xstrdup(spec->fields[i].name));

    const json_t *derived = json_object_get(doc, "derived");
    if (derived && !json_is_array(derived)) {
        fail(&pe, "derived", "must be an array");
        goto err;
    }
    spec->nderived = derived ? json_array_size(derived) : 0;
    spec->derived = xcalloc(spec->nderived ? spec->nderived : 1, sizeof(spec_derived_t));
    for (size_t i = 0; i < spec->nderived; i++) {
        char p[64];
        snprintf(p, sizeof(p), "derived[%zu]", i);
        spec_derived_t *sd = &spec->derived[i];
        if (parse_derived(&pe, p, spec, json_array_get(derived, i), sd))
            goto err;
        sd->out = spec->ncolumns;
        if (sd->op == SPEC_OP_ONE_HOT) {
            const spec_field_t *f = &spec->fields[sd->input];
            for (size_t k = 0; k < f->nvalues; k++)
                add_column(spec, xasprintf("%s__%s", sd->name, f->values[k]));
        } else {
            add_column(spec, xstrdup(sd->name));
        }
    }
    for (size_t i = 0; i < spec->ncolumns; i++) {
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(spec->columns[i], spec->columns[j])) {
                fail(&pe, "derived", "output '%s' collides with another column", spec->columns[i]);
                goto err;
            }
        }
    }
    char *canon = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    sha256_hex(canon, strlen(canon), spec->hash);
    free(canon);
    return spec;
err:
    spec_destroy(spec);
    return NULL;
}

spec_t *spec_load(const char *path, char *errstr, size_t errstr_size)
{
    char e[512];
    size_t len;
    char *buf = file_read_all(path, SPEC_FILE_MAX, &len, e, sizeof(e));
    if (!buf) {
        snprintf(errstr, errstr_size, "%s", e);
        return NULL;
    }
    char inner[768];
    spec_t *spec = spec_parse(buf, len, inner, sizeof(inner));
    free(buf);
    if (!spec)
        snprintf(errstr, errstr_size, "%s: %s", path, inner);
    return spec;
}

void spec_destroy(spec_t *spec)
{
    if (!spec)
        return;
    for (size_t i = 0; spec->fields && i < spec->nfields; i++) {
        spec_field_t *f = &spec->fields[i];
        free(f->name);
        for (size_t k = 0; k < f->nvalues && f->values; k++)
            free(f->values[k]);
        free(f->values);
        free(f->other);
        if (f->constant.kind == SPEC_V_STR)
            free((char *)f->constant.str);
    }
    free(spec->fields);
    for (size_t i = 0; spec->derived && i < spec->nderived; i++) {
        free(spec->derived[i].name);
        free(spec->derived[i].boundaries);
    }
    free(spec->derived);
    for (size_t i = 0; i < spec->ncolumns; i++)
        free(spec->columns[i]);
    free(spec->columns);
    free(spec->name);
    free(spec->entity);
    free(spec->event_id);
    free(spec->event_time);
    free(spec->label);
    free(spec->positive);
    free(spec->view);
    json_decref(spec->doc);
    free(spec);
}

int spec_field_index(const spec_t *spec, const char *name)
{
    for (size_t i = 0; i < spec->nfields; i++)
        if (spec->fields[i].name && !strcmp(spec->fields[i].name, name))
            return (int)i;
    return -1;
}

int spec_column_index(const spec_t *spec, const char *name)
{
    for (size_t i = 0; i < spec->ncolumns; i++)
        if (!strcmp(spec->columns[i], name))
            return (int)i;
    return -1;
}

/* ---- helpers -------------------------------------------------------------------------- */

static uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

int32_t spec_murmur3_32(const void *data, size_t len, uint32_t seed)
{
    /* MurmurHash3_x86_32 (Austin Appleby's public-domain algorithm) */
    const uint8_t *p = data;
    const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
    uint32_t h = seed;
    size_t nblocks = len / 4;
    for (size_t i = 0; i < nblocks; i++) {
        uint32_t k = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                     (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
        h = rotl32(h, 13);
        h = h * 5 + 0xe6546b64;
    }
    const uint8_t *tail = p + nblocks * 4;
    uint32_t k = 0;
    switch (len & 3) {
    case 3: k ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2: k ^= (uint32_t)tail[1] << 8;  /* fall through */
    case 1:
        k ^= tail[0];
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
    }
    h ^= (uint32_t)len;
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    int32_t out;
    memcpy(&out, &h, sizeof(out));
    return out;
}

int spec_hash_bucket(const char *s, int buckets)
{
    int64_t h = spec_murmur3_32(s, strlen(s), 0);
    return (int)((h < 0 ? -h : h) % buckets);
}

int spec_bucketize(double x, const double *b, size_t n)
{
    size_t lo = 0, hi = n; /* first boundary > x */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (b[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int)lo;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int parse_rfc3339(const char *s, int64_t *ms_out)
{
    int Y, M, D, h = 0, m = 0, sec = 0;
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D))
        return -1;
    int64_t frac_ms = 0;
    int64_t offset_s = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m))
            return -1;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return -1;
            if (*p == '.' || *p == ',') {
                p++;
                int nd = 0;
                int64_t scale = 100;
                if (!isdigit((unsigned char)*p))
                    return -1;
                while (isdigit((unsigned char)*p)) {
                    if (nd < 3)
                        frac_ms += (*p - '0') * scale;
                    scale /= 10;
                    nd++;
                    p++;
                }
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om;
            if (digits(&p, 2, &oh))
                return -1;
            if (*p == ':')
                p++;
            if (digits(&p, 2, &om))
                return -1;
            offset_s = sign * (oh * 3600 + om * 60);
        }
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    struct tm tm = {.tm_year = Y - 1900,
                    .tm_mon = M - 1,
                    .tm_mday = D,
                    .tm_hour = h,
                    .tm_min = m,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    /* timegm normalises 31 February into March: refuse such dates */
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != D || back.tm_mon != M - 1)
        return -1;
    *ms_out = ((int64_t)t - offset_s) * 1000 + frac_ms;
    return 0;
}

/* Epoch-ms times beyond about 285,000 years either way are refused, for
 * integers as for reals: a window's start + span must never overflow. */
#define SPEC_TIME_LIMIT_MS 9000000000000000LL

static int jv_parse_time(const jv_t *v, int64_t *ms_out)
{
    if ((v->kind == JV_INT)) {
        if (v->i > SPEC_TIME_LIMIT_MS || v->i < -SPEC_TIME_LIMIT_MS)
            return -1;
        *ms_out = v->i;
        return 0;
    }
    if ((v->kind == JV_REAL)) {
        double d = v->d;
        if (!isfinite(d) || fabs(d) > 9e15)
            return -1;
        *ms_out = (int64_t)llround(d);
        return 0;
    }
    if ((v->kind == JV_STRING)) {
        const char *s = v->s;
        if (parse_rfc3339(s, ms_out) == 0)
            return 0;
        /* a number written as text (every CSV value is text): epoch ms */
        char buf[64];
        str_copy(buf, s, sizeof(buf));
        char *b = buf;
        while (isspace((unsigned char)*b))
            b++;
        size_t n = strlen(b);
        while (n && isspace((unsigned char)b[n - 1]))
            b[--n] = '\0';
        double d;
        if (strlen(s) < sizeof(buf) - 1 && parse_double(b, &d) == 0 && fabs(d) <= 9e15) {
            *ms_out = (int64_t)llround(d);
            return 0;
        }
    }
    return -1;
}

int spec_parse_time(const json_t *j, int64_t *ms_out)
{
    jv_t v = jv_of_json(j);
    return jv_parse_time(&v, ms_out);
}

int spec_time_part(int64_t ms, spec_time_part_t part)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    switch (part) {
    case SPEC_TP_HOUR: return tm.tm_hour;
    case SPEC_TP_DOW: return (tm.tm_wday + 6) % 7;
    case SPEC_TP_DAY: return tm.tm_mday;
    case SPEC_TP_MONTH: return tm.tm_mon + 1;
    case SPEC_TP_YEAR: return tm.tm_year + 1900;
    }
    return 0;
}

/* ---- cleaning ------------------------------------------------------------------------------ */

void spec_row_init(spec_row_t *row, const spec_t *spec)
{
    memset(row, 0, sizeof(*row));
    row->ncolumns = spec->ncolumns;
    row->values = xcalloc(spec->ncolumns ? spec->ncolumns : 1, sizeof(spec_value_t));
    row->offsets = xcalloc(spec->ncolumns + 2, sizeof(size_t));
    strbuf_init(&row->arena);
}

void spec_row_cleanup(spec_row_t *row)
{
    free(row->values);
    free(row->offsets);
    strbuf_cleanup(&row->arena);
    memset(row, 0, sizeof(*row));
}

const char *spec_reason_name(const spec_error_t *err)
{
    return err->unknown_category ? "unknown_category" : mjson_code_name(err->code);
}

static int reject(spec_error_t *err, mjson_code_t code, const char *field, const char *fmt, ...)
    MLOPS_PRINTF(4, 5);
static int reject(spec_error_t *err, mjson_code_t code, const char *field, const char *fmt, ...)
{
    err->code = code;
    err->unknown_category = false;
    str_copy(err->field, field, sizeof(err->field));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
    va_end(ap);
    return -1;
}

/* Short, safe rendering of an input value for messages. */
static void show(const jv_t *v, char *buf, size_t size)
{
    if ((v->kind == JV_STRING)) {
        snprintf(buf, size, "'%.40s%s'", v->s, strlen(v->s) > 40 ? "..." : "");
        for (char *p = buf; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = '?';
    } else if ((v->kind == JV_INT)) {
        snprintf(buf, size, "%lld", (long long)v->i);
    } else if ((v->kind == JV_REAL)) {
        snprintf(buf, size, "%g", v->d);
    } else if (JV_IS_BOOL(v)) {
        snprintf(buf, size, "%s", (v->kind == JV_TRUE) ? "true" : "false");
    } else {
        snprintf(buf, size, "an %s", (v->kind == JV_OBJECT) ? "object" : "array");
    }
}

/* Store a string in the arena; remember its offset in slot `slot`. */
static void arena_put(spec_row_t *row, size_t slot, const char *s, size_t len)
{
    row->offsets[slot] = row->arena.len;
    strbuf_append(&row->arena, s, len);
    strbuf_putc(&row->arena, '\0');
}

/* The id or entity: a non-empty string (trimmed) or an integer. */
static int clean_id(const jv_t *v, const char *name, spec_row_t *row, size_t slot,
                    spec_error_t *err)
{
    if (v->kind == JV_ABSENT || v->kind == JV_NULL)
        return reject(err, MJSON_E_MISSING_FIELD, name, "field '%s' is missing", name);
    char num[32];
    const char *s;
    size_t len;
    if ((v->kind == JV_STRING)) {
        s = v->s;
        len = strlen(s);
        while (len && isspace((unsigned char)*s))
            s++, len--;
        while (len && isspace((unsigned char)s[len - 1]))
            len--;
        if (!len)
            return reject(err, MJSON_E_MISSING_FIELD, name, "field '%s' is empty", name);
    } else if ((v->kind == JV_INT)) {
        len = (size_t)snprintf(num, sizeof(num), "%lld", (long long)v->i);
        s = num;
    } else {
        char shown[64];
        show(v, shown, sizeof(shown));
        return reject(err, MJSON_E_WRONG_TYPE, name,
                      "field '%s' is %s, expected a string or an integer", name, shown);
    }
    if (len > ID_MAX_LEN)
        return reject(err, MJSON_E_OUT_OF_RANGE, name, "field '%s' is %zu bytes, the limit is %d",
                      name, len, ID_MAX_LEN);
    arena_put(row, slot, s, len);
    return 0;
}

int spec_bool_text(const char *s)
{
    static const char *yes[] = {"true", "yes", "y", "1", "t"};
    static const char *no[] = {"false", "no", "n", "0", "f"};
    char buf[8];
    size_t n = 0;
    while (isspace((unsigned char)*s))
        s++;
    while (*s && !isspace((unsigned char)*s) && n < sizeof(buf) - 1)
        buf[n++] = *s++;
    buf[n] = '\0';
    while (isspace((unsigned char)*s))
        s++;
    if (*s)
        return -1;
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(yes); i++) {
        if (!strcasecmp(buf, yes[i]))
            return 1;
        if (!strcasecmp(buf, no[i]))
            return 0;
    }
    return -1;
}

static int clean_field(const spec_field_t *f, const jv_t *v, spec_row_t *row, size_t col,
                       strbuf_t *tmp, spec_error_t *err)
{
    spec_value_t *out = &row->values[col];
    out->kind = SPEC_V_MISSING;
    bool absent = v->kind == JV_ABSENT || v->kind == JV_NULL;
    if (!absent && (v->kind == JV_STRING)) {
        const char *s = v->s;
        while (isspace((unsigned char)*s))
            s++;
        absent = !*s; /* an empty or blank string is a missing value */
    }
    if (absent) {
        if (f->missing == SPEC_M_DROP)
            return reject(err, MJSON_E_MISSING_FIELD, f->name, "field '%s' is missing", f->name);
        if (f->missing == SPEC_M_CONSTANT) {
            *out = f->constant;
            if (out->kind == SPEC_V_STR) {
                arena_put(row, col + 2, f->constant.str, strlen(f->constant.str));
                out->str = NULL;
            }
        }
        return 0;
    }
    char shown[64];
    if ((v->kind == JV_OBJECT) || (v->kind == JV_ARRAY)) {
        show(v, shown, sizeof(shown));
        return reject(err, MJSON_E_WRONG_TYPE, f->name, "field '%s' is %s, expected %s", f->name,
                      shown, type_names[f->type]);
    }
    double d = 0;
    switch (f->type) {
    case SPEC_T_NUMERIC:
    case SPEC_T_INTEGER:
        if (JV_IS_NUM(v)) {
            d = JV_NUM(v);
        } else if ((v->kind == JV_STRING)) {
            const char *s = v->s;
            while (isspace((unsigned char)*s))
                s++;
            strbuf_reset(tmp);
            strbuf_puts(tmp, s);
            while (tmp->len && isspace((unsigned char)tmp->data[tmp->len - 1]))
                tmp->data[--tmp->len] = '\0';
            if (parse_double(tmp->data, &d)) {
                show(v, shown, sizeof(shown));
                return reject(err, MJSON_E_WRONG_TYPE, f->name, "field '%s' is %s, not a %s",
                              f->name, shown, f->type == SPEC_T_INTEGER ? "integer" : "number");
            }
        } else {
            show(v, shown, sizeof(shown));
            return reject(err, MJSON_E_WRONG_TYPE, f->name, "field '%s' is %s, expected %s",
                          f->name, shown, type_names[f->type]);
        }
        if (f->type == SPEC_T_INTEGER && (d != floor(d) || fabs(d) > 9007199254740992.0)) {
            show(v, shown, sizeof(shown));
            return reject(err, MJSON_E_WRONG_TYPE, f->name, "field '%s' is %s, not an integer",
                          f->name, shown);
        }
        break;
    case SPEC_T_BOOLEAN:
        if (JV_IS_BOOL(v)) {
            d = (v->kind == JV_TRUE);
        } else if ((v->kind == JV_INT) && (v->i == 0 || v->i == 1)) {
            d = (double)v->i;
        } else if (!(v->kind == JV_STRING) || (d = spec_bool_text(v->s)) < 0) {
            show(v, shown, sizeof(shown));
            return reject(err, MJSON_E_WRONG_TYPE, f->name,
                          "field '%s' is %s, expected a boolean (true/false, yes/no, 1/0)", f->name,
                          shown);
        }
        out->kind = SPEC_V_NUM;
        out->num = d;
        return 0;
    case SPEC_T_TIMESTAMP: {
        int64_t ms;
        if (jv_parse_time(v, &ms)) {
            show(v, shown, sizeof(shown));
            return reject(err, MJSON_E_WRONG_TYPE, f->name,
                          "field '%s' is %s, expected an RFC 3339 time or epoch milliseconds",
                          f->name, shown);
        }
        d = (double)ms;
        break;
    }
    case SPEC_T_CATEGORICAL: {
        strbuf_reset(tmp);
        strbuf_t raw;
        strbuf_init(&raw);
        jv_scalar_text(v, &raw); /* scalars only: objects and arrays were refused above */
        if (raw.len > f->max_length * 4 + 64) {
            size_t n = raw.len;
            strbuf_cleanup(&raw);
            return reject(err, MJSON_E_OUT_OF_RANGE, f->name,
                          "field '%s' is %zu bytes, the limit is %zu", f->name, n, f->max_length);
        }
        normalise_category(raw.data, raw.len, f->case_rule, tmp);
        strbuf_cleanup(&raw);
        if (tmp->len > f->max_length)
            return reject(err, MJSON_E_OUT_OF_RANGE, f->name,
                          "field '%s' is %zu bytes, the limit is %zu", f->name, tmp->len,
                          f->max_length);
        const char *s = tmp->data;
        if (f->values) {
            bool known = false;
            for (size_t k = 0; k < f->nvalues && !known; k++)
                known = !strcmp(f->values[k], s);
            if (!known) {
                if (f->unknown == SPEC_U_DLQ) {
                    reject(err, MJSON_E_WRONG_TYPE, f->name,
                           "field '%s': '%.40s' is not one of its %zu declared values", f->name, s,
                           f->nvalues);
                    err->unknown_category = true;
                    return -1;
                }
                if (f->unknown == SPEC_U_OTHER)
                    s = f->other;
            }
        }
        out->kind = SPEC_V_STR;
        arena_put(row, col + 2, s, strlen(s));
        out->str = NULL; /* resolved once the arena stops growing */
        return 0;
    }
    }
    if (f->has_min && d < f->min)
        return reject(err, MJSON_E_OUT_OF_RANGE, f->name,
                      "field '%s': %.17g is below the minimum %g", f->name, d, f->min);
    if (f->has_max && d > f->max)
        return reject(err, MJSON_E_OUT_OF_RANGE, f->name,
                      "field '%s': %.17g is above the maximum %g", f->name, d, f->max);
    out->kind = SPEC_V_NUM;
    out->num = d;
    return 0;
}

static int invalid(const spec_derived_t *d, spec_value_t *out, spec_error_t *err, double r,
                   const char *why)
{
    if (d->invalid_null) {
        out->kind = SPEC_V_MISSING;
        return 0;
    }
    return reject(err, MJSON_E_NON_FINITE, d->name, "derived '%s' is %g (%s)", d->name, r, why);
}

int spec_derive(const spec_t *spec, spec_row_t *row, spec_error_t *err)
{
    for (size_t i = 0; i < spec->nderived; i++) {
        const spec_derived_t *d = &spec->derived[i];
        spec_value_t *out = &row->values[d->out];
        const spec_value_t *in = d->input >= 0 ? &row->values[d->input] : NULL;
        for (size_t k = 0; k < d->nout; k++)
            out[k].kind = SPEC_V_MISSING;
        if (d->op >= SPEC_OP_ROLLING_COUNT)
            continue; /* rolling.h */
        if (d->op == SPEC_OP_TIME_PART) {
            int64_t t = in ? (int64_t)in->num : row->event_time_ms;
            if (!in || in->kind == SPEC_V_NUM) {
                out->kind = SPEC_V_NUM;
                out->num = spec_time_part(t, d->part);
            }
            continue;
        }
        if (in->kind == SPEC_V_MISSING)
            continue;
        double r;
        switch (d->op) {
        case SPEC_OP_LOG1P:
            r = log1p(in->num);
            if (!isfinite(r)) {
                if (invalid(d, out, err, r, "log1p of a value <= -1"))
                    return -1;
                continue;
            }
            out->kind = SPEC_V_NUM;
            out->num = r;
            break;
        case SPEC_OP_RATIO: {
            const spec_value_t *den = &row->values[d->input2];
            if (den->kind == SPEC_V_MISSING)
                continue;
            r = in->num / den->num;
            if (!isfinite(r)) {
                if (invalid(d, out, err, r, den->num == 0 ? "division by zero" : "overflow"))
                    return -1;
                continue;
            }
            out->kind = SPEC_V_NUM;
            out->num = r;
            break;
        }
        case SPEC_OP_BUCKETIZE:
            out->kind = SPEC_V_NUM;
            out->num = spec_bucketize(in->num, d->boundaries, d->nboundaries);
            break;
        case SPEC_OP_ONE_HOT: {
            const spec_field_t *f = &spec->fields[d->input];
            const char *s = row->arena.data + row->offsets[d->input + 2];
            for (size_t k = 0; k < d->nout; k++) {
                out[k].kind = SPEC_V_NUM;
                out[k].num = !strcmp(f->values[k], s);
            }
            break;
        }
        case SPEC_OP_HASH: {
            const char *s = row->arena.data + row->offsets[d->input + 2];
            out->kind = SPEC_V_NUM;
            out->num = spec_hash_bucket(s, d->buckets);
            break;
        }
        default: break;
        }
    }
    return 0;
}

/* A field of the event by name, as a jv_t (JV_ABSENT when there is none). */
typedef jv_t(event_get_fn)(const void *event, const char *name);

static jv_t get_json(const void *event, const char *name)
{
    return jv_of_json(json_object_get(event, name));
}

static jv_t get_flat(const void *event, const char *name)
{
    return jv_of_flat(jflat_get(event, name, strlen(name)));
}

static int clean_event(const spec_t *spec, const void *event, event_get_fn *get, spec_row_t *row,
                       spec_error_t *err)
{
    jv_t id = get(event, spec->event_id), entity = get(event, spec->entity);
    if (clean_id(&id, spec->event_id, row, 0, err) || clean_id(&entity, spec->entity, row, 1, err))
        return -1;
    jv_t t = get(event, spec->event_time);
    bool blank = t.kind == JV_STRING && !t.s[strspn(t.s, " \t\r\n")];
    if (t.kind == JV_ABSENT || t.kind == JV_NULL || blank) /* a blank time is missing */
        return reject(err, MJSON_E_MISSING_FIELD, spec->event_time, "field '%s' is missing",
                      spec->event_time);
    if (jv_parse_time(&t, &row->event_time_ms)) {
        char shown[64];
        show(&t, shown, sizeof(shown));
        return reject(err, MJSON_E_WRONG_TYPE, spec->event_time,
                      "field '%s' is %s, expected an RFC 3339 time or epoch milliseconds",
                      spec->event_time, shown);
    }
    strbuf_t tmp;
    strbuf_init(&tmp);
    int rc = 0;
    for (size_t i = 0; i < spec->nfields && rc == 0; i++) {
        jv_t v = get(event, spec->fields[i].name);
        rc = clean_field(&spec->fields[i], &v, row, i, &tmp, err);
    }
    strbuf_cleanup(&tmp);
    if (rc)
        return -1;
    /* the arena no longer grows: resolve the string pointers */
    row->event_id = row->arena.data + row->offsets[0];
    row->entity = row->arena.data + row->offsets[1];
    for (size_t i = 0; i < spec->nfields; i++)
        if (row->values[i].kind == SPEC_V_STR)
            row->values[i].str = row->arena.data + row->offsets[i + 2];
    return spec_derive(spec, row, err);
}

int spec_clean(const spec_t *spec, const json_t *event, spec_row_t *row, spec_error_t *err)
{
    strbuf_reset(&row->arena);
    memset(err, 0, sizeof(*err));
    if (!json_is_object(event))
        return reject(err, MJSON_E_NOT_OBJECT, "", "the event is not a JSON object");
    /* slots 0 and 1 of offsets hold event id and entity; 2.. the columns */
    return clean_event(spec, event, get_json, row, err);
}

int spec_clean_flat(const spec_t *spec, const jflat_t *event, spec_row_t *row, spec_error_t *err)
{
    strbuf_reset(&row->arena);
    memset(err, 0, sizeof(*err));
    return clean_event(spec, event, get_flat, row, err);
}

int spec_value_to_json(const spec_value_t *v, json_t *obj, const char *key)
{
    json_t *j;
    switch (v->kind) {
    case SPEC_V_MISSING: j = json_null(); break;
    case SPEC_V_STR: j = json_string(v->str); break;
    case SPEC_V_NUM:
        if (!isfinite(v->num))
            return -1;
        if (v->num == floor(v->num) && fabs(v->num) < 9007199254740992.0)
            j = json_integer((json_int_t)v->num);
        else
            j = json_real(v->num);
        break;
    default: return -1;
    }
    if (!j)
        return -1; /* e.g. a string that is not valid UTF-8 */
    return json_object_set_new(obj, key, j) ? -1 : 0;
}

/* ---- spec diff --------------------------------------------------------------------------- */

static const spec_derived_t *find_derived(const spec_t *s, const char *name)
{
    for (size_t i = 0; i < s->nderived; i++)
        if (!strcmp(s->derived[i].name, name))
            return &s->derived[i];
    return NULL;
}

static bool same_json(const spec_t *a, const spec_t *b, const char *arr, const char *name)
{
    const json_t *xa = json_object_get(a->doc, arr), *xb = json_object_get(b->doc, arr);
    const json_t *ja = NULL, *jb = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(xa, i, v) if (!strcmp(json_string_value(json_object_get(v, "name")), name))
        ja = v;
    json_array_foreach(xb, i, v) if (!strcmp(json_string_value(json_object_get(v, "name")), name))
        jb = v;
    if (!ja || !jb)
        return false;
    /* descriptions do not change meaning */
    json_t *ca = json_deep_copy(ja), *cb = json_deep_copy(jb);
    json_object_del(ca, "description");
    json_object_del(cb, "description");
    bool eq = json_equal(ca, cb);
    json_decref(ca);
    json_decref(cb);
    return eq;
}

int spec_diff(const spec_t *o, const spec_t *n, strbuf_t *report)
{
    int level = 0;
#define NOTE(lvl, ...)                                                                             \
    do {                                                                                           \
        strbuf_appendf(report, "%s: ", (lvl) == 2 ? "breaking" : "compatible");                    \
        strbuf_appendf(report, __VA_ARGS__);                                                       \
        strbuf_putc(report, '\n');                                                                 \
        if ((lvl) > level)                                                                         \
            level = (lvl);                                                                         \
    } while (0)
    if (strcmp(o->entity, n->entity) || strcmp(o->event_id, n->event_id) ||
        strcmp(o->event_time, n->event_time))
        NOTE(2, "entity, event id or event time field changed");
    if ((o->label == NULL) != (n->label == NULL) ||
        (o->label && (strcmp(o->label, n->label) || strcmp(o->positive, n->positive))))
        NOTE(2, "label or positive class changed");
    for (size_t i = 0; i < o->nfields; i++) {
        const spec_field_t *fo = &o->fields[i];
        int j = spec_field_index(n, fo->name);
        if (j < 0) {
            NOTE(2, "field '%s' removed", fo->name);
            continue;
        }
        const spec_field_t *fn = &n->fields[j];
        if (fo->type != fn->type) {
            NOTE(2, "field '%s' retyped from %s to %s", fo->name, type_names[fo->type],
                 type_names[fn->type]);
            continue;
        }
        if (same_json(o, n, "fields", fo->name))
            continue;
        if (!fo->required && fn->required)
            NOTE(2, "field '%s' became required", fo->name);
        else if (fo->required && !fn->required)
            NOTE(1, "field '%s' became optional", fo->name);
        if ((fn->has_min && (!fo->has_min || fn->min > fo->min)) ||
            (fn->has_max && (!fo->has_max || fn->max < fo->max)))
            NOTE(2, "field '%s' range narrowed", fo->name);
        else if (fo->has_min != fn->has_min || fo->has_max != fn->has_max || fo->min != fn->min ||
                 fo->max != fn->max)
            NOTE(1, "field '%s' range widened", fo->name);
        for (size_t k = 0; k < fo->nvalues; k++) {
            bool kept = !fn->values;
            for (size_t m = 0; fn->values && m < fn->nvalues && !kept; m++)
                kept = !strcmp(fo->values[k], fn->values[m]);
            if (!kept)
                NOTE(2, "field '%s' lost the value '%s'", fo->name, fo->values[k]);
        }
        if (fo->values && fn->values && fn->nvalues > fo->nvalues)
            NOTE(1, "field '%s' gained values", fo->name);
        if (fo->missing != fn->missing || fo->case_rule != fn->case_rule ||
            fo->unknown != fn->unknown)
            NOTE(2, "field '%s' cleaning rule changed (missing, case or unknown policy)", fo->name);
    }
    for (size_t j = 0; j < n->nfields; j++) {
        const spec_field_t *fn = &n->fields[j];
        if (spec_field_index(o, fn->name) < 0) {
            if (fn->required)
                NOTE(2, "required field '%s' added", fn->name);
            else
                NOTE(1, "optional field '%s' added", fn->name);
        }
    }
    for (size_t i = 0; i < o->nderived; i++) {
        if (!find_derived(n, o->derived[i].name))
            NOTE(2, "derived '%s' removed", o->derived[i].name);
        else if (!same_json(o, n, "derived", o->derived[i].name))
            NOTE(2, "derived '%s' changed", o->derived[i].name);
    }
    for (size_t j = 0; j < n->nderived; j++)
        if (!find_derived(o, n->derived[j].name))
            NOTE(1, "derived '%s' added", n->derived[j].name);
#undef NOTE
    return level;
}
