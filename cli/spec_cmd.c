/*
 * mlopsctl spec: work with feature specs (common/spec.h).
 *
 *   spec infer FILE.csv   write a first feature_spec/1 from a CSV file
 *   spec check SPEC       parse a spec and report its columns
 *   spec diff OLD NEW     say whether NEW is identical, compatible or breaking
 *
 * Exit codes: 0 ok (diff: identical or compatible), 1 failure (I/O, or an
 * inferred spec that refuses a row of its own file: a bug), 2 usage or bad
 * input (a CSV or spec that cannot be used; the message names file, record
 * and column), 3 (diff only) breaking: the new spec needs a new version.
 *
 * infer reads the file twice: pass 1 gathers per-column statistics and
 * decides types, pass 2 runs the written spec's own cleaning (spec_clean(),
 * the code ingest runs) over every record, so a spec is only written when
 * `mlopsctl features` accepts every row of the file it came from.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "commands.h"
#include "csvfile.h"
#include "hmap.h"
#include "input.h"
#include "lifecycle.h"
#include "spec.h"
#include "util.h"

/** spec diff: the new spec is breaking (needs a new version). */
#define SPEC_EXIT_BREAKING 3

/* Distinct values remembered per column; past this a column is "many". */
#define DISTINCT_CAP 20000
/* spec.c's limits: ids and categories longer than these are refused. */
#define ID_MAX_LEN 256
#define CATEGORY_MAX_LEN_DEFAULT 256

/* ---- infer: configuration ---------------------------------------------------------- */

typedef struct infer_conf {
    char *label;
    char *positive;
    char *entity;
    char *event_id;
    char *event_time;
    char *name;
    char *out;
    int64_t max_categories;
} infer_conf_t;

static const cfg_item_t infer_items[] = {
    CFG_ITEM(infer_conf_t, label, CFG_T_STR, NULL, 0, "label column (not a feature)"),
    CFG_ITEM(infer_conf_t, positive, CFG_T_STR, NULL, 0,
             "the label's positive class (default: the true value of a yes/no label)"),
    CFG_ITEM(infer_conf_t, entity, CFG_T_STR, NULL, 0, "entity key column (default: by name)"),
    CFG_ITEM(infer_conf_t, event_id, CFG_T_STR, NULL, 0, "event id column (default: by name)"),
    CFG_ITEM(infer_conf_t, event_time, CFG_T_STR, NULL, 0,
             "event time column, RFC 3339 or epoch ms (default: by name)"),
    CFG_ITEM(infer_conf_t, name, CFG_T_STR, NULL, 0, "spec name (default: the file's base name)"),
    CFG_ITEM(infer_conf_t, out, CFG_T_STR, "-", 0, "where to write the spec ('-' = stdout)"),
    CFG_ITEM_RANGE(infer_conf_t, max_categories, CFG_T_INT, "50", 0,
                   "list a categorical column's values when it has at most this many", 1, 10000),
};

static const char infer_rules[] =
    "\nInference rules (every column; values are trimmed, empty or blank cells are missing):\n"
    "  boolean      all values are 0/1, or all are true/false, yes/no, y/n, t/f (any case)\n"
    "  integer      all values are whole decimal numbers (-12, 40)\n"
    "  numeric      all values are decimal numbers (3.5, -1e-3)\n"
    "  timestamp    all values are RFC 3339 times or dates (2026-01-31, 2026-01-31T10:00:00Z)\n"
    "  categorical  anything else; also digit strings with a leading zero (007) or more than\n"
    "               15 digits, which are codes, not quantities. The values are listed when\n"
    "               there are at most --max-categories of them (new ones then go to the DLQ;\n"
    "               set \"unknown\" to keep or other if they are expected), else none are listed\n"
    "               and \"unknown\" is keep. When two values differ only by case, \"case\" is\n"
    "               lower (values listed in lower case); else case is kept. Values longer than\n"
    "               256 bytes raise max_length.\n"
    "  required     true when no value is missing. Otherwise the missing policy is median\n"
    "               (integer, numeric), mode (categorical, boolean) or keep (timestamp);\n"
    "               median and mode are fitted by the trainer, ingest keeps the value null.\n"
    "  range        integer and numeric fields get min/max: the data's [lo, hi] widened by\n"
    "               half its span on each side (span = hi - lo, or max(|hi|, 1) when every\n"
    "               value is equal), not across zero when no value crossed it, then rounded\n"
    "               outward to a tenth of the span's power of ten (whole numbers for\n"
    "               integers). Example: ages 0.17..80 give [0, 120].\n"
    "  ids, time    --entity, --event-id and --event-time name them; otherwise they are found\n"
    "               by name (entity: entity_id, user_id, customer_id, ..., id, or the one\n"
    "               column named *_id / *Id; event id: event_id, uuid, record_id, ...; event\n"
    "               time: event_time, timestamp, ts, time, date, ..., or the one timestamp\n"
    "               column). They must be present in every row, the event ids unique, and\n"
    "               the event time an RFC 3339 time or epoch milliseconds. When they cannot\n"
    "               be found the error names the flags to pass.\n"
    "  label        --label COL is left out of the fields; --positive defaults to the true\n"
    "               value of a boolean-like label (yes, true, 1, ...).\n"
    "Only empty cells are missing: 'NA', 'null' and the like are values (a warning says so\n"
    "when they are all that keeps a column from being numeric or a timestamp).\n"
    "Before writing, every row of FILE is cleaned with the new spec (the code ingest runs);\n"
    "the spec is written only if every row passes. Exit codes: 0 written, 1 failure,\n"
    "2 bad usage or a CSV that cannot be used (empty, no data rows, ragged rows, a column\n"
    "named twice, invalid UTF-8, missing or repeated ids).\n";

/* ---- infer: per-column statistics ----------------------------------------------------- */

typedef struct colstat {
    const char *name; /* borrowed from the header copy */
    size_t present, missing;
    size_t first_missing; /* record of the first missing value (0 = none) */
    bool all_int, all_num, all_01, all_bool, all_date, all_time, code_like;
    size_t first_not_time; /* record of the first value that is no time */
    char not_time[48];
    double lo, hi;  /* over the numeric values */
    size_t max_len; /* longest trimmed value, bytes */
    size_t first_long;
    size_t na_tokens; /* 'NA', 'null', ...: values, but probably meant as missing */
    char na_example[16];
    bool num_but_na, date_but_na; /* every other value is a number / a date */
    hmap_t *distinct;             /* trimmed value -> count (as a pointer) */
    bool overflow;                /* more than DISTINCT_CAP distinct values */
    /* decisions */
    spec_type_t type;
    int role; /* ROLE_* */
    const char *how;
} colstat_t;

enum { ROLE_FIELD = 0, ROLE_ENTITY, ROLE_EVENT_ID, ROLE_EVENT_TIME, ROLE_LABEL };

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80                   ? 1
                     : (c >= 0xc2 && c <= 0xdf) ? 2
                     : (c >= 0xe0 && c <= 0xef) ? 3
                     : (c >= 0xf0 && c <= 0xf4) ? 4
                                                : 0;
        if (!len || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        /* overlong 3/4-byte forms, surrogates, > U+10FFFF */
        if (len == 3 && ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f)))
            return false;
        if (len == 4 && ((c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f)))
            return false;
        i += len;
    }
    return true;
}

/* [+-]digits, at most 18 of them; *ndigits and *lead0 describe the digits. */
static bool int_text(const char *s, size_t *ndigits, bool *lead0)
{
    const char *p = s + (*s == '+' || *s == '-');
    size_t n = 0;
    while (isdigit((unsigned char)p[n]))
        n++;
    *ndigits = n;
    *lead0 = n > 1 && p[0] == '0';
    return n > 0 && n <= 18 && !p[n];
}

/* A decimal number: [+-](digits[.digits*]|.digits)([eE][+-]digits). */
static bool num_text(const char *s)
{
    const char *p = s + (*s == '+' || *s == '-');
    size_t a = 0, b = 0;
    while (isdigit((unsigned char)*p))
        p++, a++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, b++;
    }
    if (a + b == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        p += *p == '+' || *p == '-';
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return !*p;
}

static bool na_token(const char *s)
{
    static const char *na[] = {"NA", "N/A", "NaN", "null", "None", "nil", "?", "-", "#N/A"};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(na); i++)
        if (!strcasecmp(s, na[i]))
            return true;
    return false;
}

static bool time_text(const char *s, bool *date_like)
{
    int64_t ms;
    *date_like = false;
    if (strlen(s) >= 10 && isdigit((unsigned char)s[0]) && s[4] == '-') {
        json_t *j = json_string(s);
        *date_like = j && spec_parse_time(j, &ms) == 0;
        json_decref(j);
        return *date_like;
    }
    double d;
    return num_text(s) && parse_double(s, &d) == 0 && fabs(d) <= 9e15;
}

static void col_init(colstat_t *c, const char *name)
{
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->all_int = c->all_num = c->all_01 = c->all_bool = c->all_date = c->all_time = true;
    c->num_but_na = c->date_but_na = true;
    c->lo = INFINITY;
    c->hi = -INFINITY;
    c->distinct = hmap_new(NULL);
}

/* Account one cell (already known to be valid UTF-8). */
static void col_add(colstat_t *c, const char *cell, size_t record)
{
    const char *s = cell;
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (!len) {
        c->missing++;
        if (!c->first_missing)
            c->first_missing = record;
        return;
    }
    char stackbuf[256];
    char *v = len < sizeof(stackbuf) ? stackbuf : xmalloc(len + 1);
    memcpy(v, s, len);
    v[len] = '\0';
    c->present++;
    if (len > c->max_len) {
        c->max_len = len;
        if (len > ID_MAX_LEN && !c->first_long)
            c->first_long = record;
    }
    size_t nd;
    bool lead0;
    bool is_int = int_text(v, &nd, &lead0);
    bool is_num = num_text(v);
    double d = 0;
    if (is_num && parse_double(v, &d))
        is_num = false; /* overflows to infinity */
    if (is_int && (lead0 || nd > 15) && v[0] != '-' && v[0] != '+')
        c->code_like = true;
    c->all_int &= is_int && nd <= 15; /* beyond 2^53 spec_clean refuses integers */
    c->all_num &= is_num;
    if (is_num) {
        if (d < c->lo)
            c->lo = d;
        if (d > c->hi)
            c->hi = d;
    }
    c->all_01 &= !strcmp(v, "0") || !strcmp(v, "1");
    c->all_bool &= spec_bool_text(v) >= 0;
    bool date_like;
    bool is_time = time_text(v, &date_like);
    c->all_date &= date_like;
    if (c->all_time && !is_time) {
        c->all_time = false;
        c->first_not_time = record;
        snprintf(c->not_time, sizeof(c->not_time), "%.40s", v);
    }
    if (na_token(v)) {
        if (!c->na_tokens++)
            str_copy(c->na_example, v, sizeof(c->na_example));
    } else {
        c->num_but_na &= is_num;
        c->date_but_na &= date_like;
    }
    if (!c->overflow) {
        uintptr_t n = (uintptr_t)hmap_get(c->distinct, v);
        if (n || hmap_size(c->distinct) < DISTINCT_CAP)
            hmap_put(c->distinct, v, (void *)(n + 1));
        else
            c->overflow = true;
    }
    if (v != stackbuf)
        free(v);
}

static void col_type(colstat_t *c)
{
    if (!c->present)
        c->type = SPEC_T_CATEGORICAL;
    else if (c->all_01)
        c->type = SPEC_T_BOOLEAN;
    else if (c->all_int && !c->code_like)
        c->type = SPEC_T_INTEGER;
    else if (c->all_num && !c->code_like)
        c->type = SPEC_T_NUMERIC;
    else if (c->all_bool)
        c->type = SPEC_T_BOOLEAN;
    else if (c->all_date)
        c->type = SPEC_T_TIMESTAMP;
    else
        c->type = SPEC_T_CATEGORICAL;
}

/* ---- infer: ids, time and label ----------------------------------------------------- */

/* Column name in lower snake case: "PassengerId" -> "passenger_id". */
static void snake_name(const char *name, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = name; *p && n + 2 < size; p++) {
        unsigned char ch = (unsigned char)*p;
        if (isupper(ch) && p > name &&
            (islower((unsigned char)p[-1]) ||
             (isupper((unsigned char)p[-1]) && islower((unsigned char)p[1])))) {
            if (n && out[n - 1] != '_')
                out[n++] = '_';
        }
        if (isalnum(ch))
            out[n++] = (char)tolower(ch);
        else if (n && out[n - 1] != '_')
            out[n++] = '_';
    }
    while (n && out[n - 1] == '_')
        n--;
    out[n] = '\0';
}

static const char *const entity_names[] = {
    "entity",       "entity_id",  "entity_key",  "user_id",   "customer_id",
    "client_id",    "account_id", "employee_id", "person_id", "passenger_id",
    "applicant_id", "member_id",  "patient_id",  "device_id", "session_id",
    "user",         "customer",   "id",          NULL};
static const char *const event_id_names[] = {"event_id",   "eventid", "event_uuid",     "uuid",
                                             "record_id",  "row_id",  "transaction_id", "txn_id",
                                             "message_id", "msg_id",  "log_id",         NULL};
static const char *const event_time_names[] = {
    "event_time", "event_ts",   "event_timestamp", "timestamp",   "ts",   "time",
    "datetime",   "event_date", "created_at",      "occurred_at", "date", NULL};

/* Why column c cannot be the role (NULL if it can). */
static const char *role_problem(const colstat_t *c, int role, char *buf, size_t size)
{
    if (c->missing) {
        snprintf(buf, size, "column '%s' is empty at record %zu", c->name, c->first_missing);
        return buf;
    }
    if (role == ROLE_EVENT_TIME && !c->all_time) {
        snprintf(buf, size,
                 "column '%s' has '%s' at record %zu, not an RFC 3339 time or epoch milliseconds",
                 c->name, c->not_time, c->first_not_time);
        return buf;
    }
    if (role != ROLE_EVENT_TIME && c->max_len > ID_MAX_LEN) {
        snprintf(buf, size, "column '%s' has a value of more than %d bytes at record %zu", c->name,
                 ID_MAX_LEN, c->first_long);
        return buf;
    }
    return NULL;
}

static bool last_token_is_id(const char *snake)
{
    size_t n = strlen(snake);
    return n > 3 && !strcmp(snake + n - 3, "_id");
}

/* Pick the column for a role by name (or by the fallback); -1 if none. */
static int guess_role(colstat_t *cols, size_t ncols, char **snake, int role,
                      const char *const *names, char *why, size_t why_size)
{
    for (const char *const *nm = names; *nm; nm++) {
        for (size_t i = 0; i < ncols; i++) {
            if (cols[i].role != ROLE_FIELD || strcmp(snake[i], *nm))
                continue;
            char buf[256];
            const char *p = role_problem(&cols[i], role, buf, sizeof(buf));
            if (!p)
                return (int)i;
            snprintf(why + strlen(why), why_size - strlen(why), "; %s", p);
        }
    }
    int found = -1, n = 0;
    for (size_t i = 0; i < ncols; i++) {
        char buf[256];
        if (cols[i].role != ROLE_FIELD || role_problem(&cols[i], role, buf, sizeof(buf)))
            continue;
        bool fits = role == ROLE_ENTITY       ? last_token_is_id(snake[i])
                    : role == ROLE_EVENT_TIME ? cols[i].type == SPEC_T_TIMESTAMP
                                              : false;
        if (fits) {
            found = (int)i;
            n++;
        }
    }
    return n == 1 ? found : -1;
}

static int find_column(colstat_t *cols, size_t ncols, const char *name)
{
    for (size_t i = 0; i < ncols; i++)
        if (!strcmp(cols[i].name, name))
            return (int)i;
    return -1;
}

static void list_columns(const colstat_t *cols, size_t ncols, strbuf_t *sb)
{
    for (size_t i = 0; i < ncols; i++)
        strbuf_appendf(sb, "%s%s", i ? ", " : "", cols[i].name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct values of a column, sorted (caller frees the array only). */
static const char **sorted_distinct(const colstat_t *c, size_t *n)
{
    *n = hmap_size(c->distinct);
    const char **v = xcalloc(*n ? *n : 1, sizeof(char *));
    size_t it = 0, k = 0;
    const char *key;
    void *val;
    while (hmap_next(c->distinct, &it, &key, &val))
        v[k++] = key;
    qsort(v, k, sizeof(char *), cmp_str);
    return v;
}

/* ---- infer: categories, normalised by spec_clean() itself ------------------------------ */

/* A two-field spec whose cleaning normalises a category with case kept (k)
 * and lowered (l): the same code ingest runs, so counts cannot disagree. */
static const char norm_spec_json[] =
    "{\"schema\":\"feature_spec/1\",\"name\":\"norm\",\"entity\":\"e\",\"event_id\":\"i\","
    "\"event_time\":\"t\",\"fields\":[{\"name\":\"k\",\"type\":\"categorical\","
    "\"max_length\":1048576},{\"name\":\"l\",\"type\":\"categorical\",\"case\":\"lower\","
    "\"max_length\":1048576}]}";

typedef struct catinfo {
    const char **values; /* owned strings, sorted */
    size_t nvalues;
    bool lower;
    size_t max_len;
} catinfo_t;

static void catinfo_cleanup(catinfo_t *ci)
{
    for (size_t i = 0; i < ci->nvalues; i++)
        free((char *)ci->values[i]);
    free(ci->values);
    memset(ci, 0, sizeof(*ci));
}

static int categories(const spec_t *norm, const colstat_t *c, catinfo_t *ci)
{
    memset(ci, 0, sizeof(*ci));
    hmap_t *keep = hmap_new(NULL), *lower = hmap_new(NULL);
    spec_row_t row;
    spec_row_init(&row, norm);
    size_t it = 0;
    const char *key;
    void *val;
    int rc = 0;
    while (hmap_next(c->distinct, &it, &key, &val)) {
        json_t *ev =
            json_pack("{s:s, s:s, s:i, s:s, s:s}", "e", "x", "i", "x", "t", 0, "k", key, "l", key);
        spec_error_t err;
        if (!ev || spec_clean(norm, ev, &row, &err)) {
            json_decref(ev);
            rc = -1;
            break;
        }
        json_decref(ev);
        hmap_put(keep, row.values[0].str, (void *)1);
        hmap_put(lower, row.values[1].str, (void *)1);
        size_t l = strlen(row.values[1].str);
        if (l > ci->max_len)
            ci->max_len = l;
        if (strlen(row.values[0].str) > ci->max_len)
            ci->max_len = strlen(row.values[0].str);
    }
    spec_row_cleanup(&row);
    if (rc == 0) {
        ci->lower = hmap_size(lower) < hmap_size(keep);
        hmap_t *use = ci->lower ? lower : keep;
        ci->nvalues = hmap_size(use);
        ci->values = xcalloc(ci->nvalues ? ci->nvalues : 1, sizeof(char *));
        size_t k = 0;
        it = 0;
        while (hmap_next(use, &it, &key, &val))
            ci->values[k++] = xstrdup(key);
        qsort(ci->values, k, sizeof(char *), cmp_str);
    }
    hmap_destroy(keep);
    hmap_destroy(lower);
    return rc;
}

/* ---- infer: ranges -------------------------------------------------------------------- */

static double round_out(double x, int k, bool up)
{
    if (k >= 0) {
        double s = pow(10, k);
        return (up ? ceil(x / s) : floor(x / s)) * s;
    }
    double s = pow(10, -k);
    return (up ? ceil(x * s) : floor(x * s)) / s;
}

/* The widening rule printed in --help ("range"). */
static void widen(double lo, double hi, bool integer, double *min, double *max)
{
    double span = hi - lo;
    if (!(span > 0))
        span = fabs(hi) > 1 ? fabs(hi) : 1;
    double a = lo - span / 2, b = hi + span / 2;
    if (lo >= 0 && a < 0)
        a = 0;
    if (hi <= 0 && b > 0)
        b = 0;
    int k = (int)floor(log10(span)) - 1;
    if (integer && k < 0)
        k = 0;
    *min = round_out(a, k, false);
    *max = round_out(b, k, true);
    if (*min > lo) /* rounding noise at 15+ digits: never exclude the data */
        *min = lo;
    if (*max < hi)
        *max = hi;
}

static json_t *json_num(double x)
{
    if (x == floor(x) && fabs(x) < 9007199254740992.0)
        return json_integer((json_int_t)x);
    return json_real(x);
}

/* Shortest text that reads back as x (for messages). */
static void fmt_num(double x, char *buf, size_t size)
{
    if (x == floor(x) && fabs(x) < 1e15) {
        snprintf(buf, size, "%.0f", x);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            return;
    }
}

/* ---- infer: output --------------------------------------------------------------------- */

/* Compact JSON with ", " and ": " separators and numbers in their shortest
 * form that reads back exactly (jansson prints reals with 17 digits). */
static void put_json(strbuf_t *sb, const json_t *v)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *x;
        size_t n = 0;
        strbuf_putc(sb, '{');
        json_object_foreach((json_t *)v, key, x)
        {
            strbuf_puts(sb, n++ ? ", " : "");
            strbuf_json_str(sb, key, strlen(key));
            strbuf_puts(sb, ": ");
            put_json(sb, x);
        }
        strbuf_putc(sb, '}');
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        strbuf_putc(sb, '[');
        json_array_foreach(v, i, x)
        {
            strbuf_puts(sb, i ? ", " : "");
            put_json(sb, x);
        }
        strbuf_putc(sb, ']');
    } else if (json_is_real(v)) {
        char buf[40];
        fmt_num(json_real_value(v), buf, sizeof(buf));
        strbuf_puts(sb, buf);
    } else {
        char *s = json_dumps(v, JSON_ENCODE_ANY);
        strbuf_puts(sb, s ? s : "null");
        free(s);
    }
}

/* The spec as text: top-level keys one per line, one line per field. */
static void write_doc(const json_t *doc, strbuf_t *sb)
{
    const char *key;
    json_t *v;
    size_t n = 0, total = json_object_size(doc);
    strbuf_puts(sb, "{\n");
    json_object_foreach((json_t *)doc, key, v)
    {
        strbuf_puts(sb, "  ");
        strbuf_json_str(sb, key, strlen(key));
        strbuf_puts(sb, ": ");
        if (json_is_array(v) && !strcmp(key, "fields")) {
            strbuf_puts(sb, "[\n");
            size_t i;
            json_t *f;
            json_array_foreach(v, i, f)
            {
                strbuf_puts(sb, "    ");
                put_json(sb, f);
                strbuf_puts(sb, i + 1 < json_array_size(v) ? ",\n" : "\n");
            }
            strbuf_puts(sb, "  ]");
        } else {
            put_json(sb, v);
        }
        strbuf_puts(sb, ++n < total ? ",\n" : "\n");
    }
    strbuf_puts(sb, "}\n");
}

static void default_name(const char *path, char *out, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = 0;
    for (const char *p = base; *p && n + 1 < size; p++) {
        if (*p == '.' && !strchr(p + 1, '.') && p != base)
            break; /* drop the extension */
        out[n++] = (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.') ? *p : '_';
    }
    out[n] = '\0';
    if (!n)
        str_copy(out, "spec", size);
}

static const char *missing_policy(spec_type_t t)
{
    switch (t) {
    case SPEC_T_INTEGER:
    case SPEC_T_NUMERIC: return "median";
    case SPEC_T_CATEGORICAL:
    case SPEC_T_BOOLEAN: return "mode";
    case SPEC_T_TIMESTAMP: return "keep";
    }
    return "keep";
}

/* ---- infer: the command --------------------------------------------------------------- */

#define FAIL(rc, ...)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "mlopsctl spec infer: " __VA_ARGS__);                                      \
        fputc('\n', stderr);                                                                       \
        code = (rc);                                                                               \
        goto done;                                                                                 \
    } while (0)

static int role_from_flag(colstat_t *cols, size_t ncols, const char *flag, const char *col,
                          int role, char *errstr, size_t errstr_size)
{
    int i = find_column(cols, ncols, col);
    if (i < 0) {
        strbuf_t sb;
        strbuf_init(&sb);
        list_columns(cols, ncols, &sb);
        snprintf(errstr, errstr_size, "%s '%s': no such column (columns: %s)", flag, col, sb.data);
        strbuf_cleanup(&sb);
        return -1;
    }
    if (cols[i].role != ROLE_FIELD) {
        snprintf(errstr, errstr_size, "%s '%s': the column is already used for another role", flag,
                 col);
        return -1;
    }
    if (role != ROLE_LABEL) {
        char buf[256];
        const char *p = role_problem(&cols[i], role, buf, sizeof(buf));
        if (p) {
            snprintf(errstr, errstr_size, "%s '%s': %s", flag, col, p);
            return -1;
        }
    }
    cols[i].role = role;
    cols[i].how = "given";
    return i;
}

static int infer_run(int argc, char **argv)
{
    infer_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024];
    csvf_t *csv = NULL;
    input_t *in = NULL;
    colstat_t *cols = NULL;
    char **header = NULL, **snake = NULL;
    size_t ncols = 0, rows = 0;
    spec_t *norm = NULL, *spec = NULL;
    json_t *doc = NULL;
    hmap_t *ids = NULL;
    strbuf_t text, sb;
    strbuf_init(&text);
    strbuf_init(&sb);
    spec_row_t row = {0};
    bool help = false;
    for (int i = 1; i < argc; i++)
        help |= !strcmp(argv[i], "-h") || !strcmp(argv[i], "--help");
    cfg_t *cfg = cfg_new("mlopsctl spec infer", "FILE.csv", infer_items,
                         MLOPS_ARRAY_LEN(infer_items), &conf, sizeof(conf));
    cfg_allow_positional(cfg, true);
    cfg_result_t r = cfg_init(cfg, argc, argv, stdout, errstr, sizeof(errstr));
    if (r == CFG_EXIT) {
        if (help)
            fputs(infer_rules, stdout);
        code = MLOPS_EXIT_OK;
        goto done;
    }
    if (r == CFG_ERROR)
        FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
    int npos;
    char **pos = cfg_positional(cfg, &npos);
    if (npos != 1)
        FAIL(MLOPS_EXIT_USAGE, "give one CSV file (see --help)");
    const char *path = pos[0];
    if (!strcmp(path, "-"))
        FAIL(MLOPS_EXIT_USAGE, "the CSV is read twice: give a file name, not '-'");
    if (conf.positive && !conf.label)
        FAIL(MLOPS_EXIT_USAGE, "--positive needs --label");

    /* pass 1: header, then statistics per column */
    csv = csvf_open(path, errstr, sizeof(errstr));
    if (!csv)
        FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
    char **f;
    size_t n;
    int rc = csvf_next(csv, &f, &n, errstr, sizeof(errstr));
    if (rc < 0)
        FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
    if (rc == 0)
        FAIL(MLOPS_EXIT_USAGE, "%s: empty file (no header row)", path);
    ncols = n;
    header = xcalloc(ncols, sizeof(char *));
    snake = xcalloc(ncols, sizeof(char *));
    cols = xcalloc(ncols, sizeof(colstat_t));
    for (size_t i = 0; i < ncols; i++) {
        header[i] = xstrdup(f[i]);
        col_init(&cols[i], header[i]);
        char s[256];
        snake_name(f[i], s, sizeof(s));
        snake[i] = xstrdup(s);
    }
    if (!strncmp(header[0], "\xef\xbb\xbf", 3))
        FAIL(MLOPS_EXIT_USAGE,
             "%s: starts with a UTF-8 byte order mark, which mlopsctl features would read as "
             "part of the first column's name; remove it (sed -i '1s/^\\xEF\\xBB\\xBF//' %s)",
             path, path);
    for (size_t i = 0; i < ncols; i++) {
        if (!utf8_valid((const unsigned char *)header[i], strlen(header[i])))
            FAIL(MLOPS_EXIT_USAGE, "%s: header: column %zu's name is not valid UTF-8", path, i + 1);
        if (!header[i][0])
            FAIL(MLOPS_EXIT_USAGE, "%s: header: column %zu has no name", path, i + 1);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(header[i], header[j]))
                FAIL(MLOPS_EXIT_USAGE,
                     "%s: header: column '%s' is named twice (columns %zu and %zu)", path,
                     header[i], j + 1, i + 1);
    }
    for (;;) {
        rc = csvf_next(csv, &f, &n, errstr, sizeof(errstr));
        if (rc < 0)
            FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
        if (rc == 0)
            break;
        size_t rec = csvf_record(csv);
        if (n != ncols)
            FAIL(MLOPS_EXIT_USAGE, "%s: record %zu has %zu field%s, the header has %zu", path, rec,
                 n, n == 1 ? "" : "s", ncols);
        for (size_t i = 0; i < ncols; i++) {
            if (!utf8_valid((const unsigned char *)f[i], strlen(f[i])))
                FAIL(MLOPS_EXIT_USAGE, "%s: record %zu: column '%s' is not valid UTF-8", path, rec,
                     header[i]);
            col_add(&cols[i], f[i], rec);
        }
        rows++;
    }
    csvf_close(csv);
    csv = NULL;
    if (!rows)
        FAIL(MLOPS_EXIT_USAGE, "%s: no data rows after the header", path);
    for (size_t i = 0; i < ncols; i++)
        col_type(&cols[i]);

    /* roles: the flags first, then names */
    int label = -1, ent = -1, eid = -1, etime = -1;
    if (conf.label && (label = role_from_flag(cols, ncols, "--label", conf.label, ROLE_LABEL,
                                              errstr, sizeof(errstr))) < 0)
        FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
    if (conf.event_id && (eid = role_from_flag(cols, ncols, "--event-id", conf.event_id,
                                               ROLE_EVENT_ID, errstr, sizeof(errstr))) < 0)
        FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
    if (conf.entity) {
        /* the entity may be the event id column when every row is its own entity */
        int i = eid >= 0 && !strcmp(conf.entity, cols[eid].name) ? eid : -1;
        if (i < 0 && (i = role_from_flag(cols, ncols, "--entity", conf.entity, ROLE_ENTITY, errstr,
                                         sizeof(errstr))) < 0)
            FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
        ent = i;
    }
    if (conf.event_time && (etime = role_from_flag(cols, ncols, "--event-time", conf.event_time,
                                                   ROLE_EVENT_TIME, errstr, sizeof(errstr))) < 0)
        FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
    char why_eid[320] = "", why_ent[320] = "", why_time[320] = "";
    if (eid < 0 && (eid = guess_role(cols, ncols, snake, ROLE_EVENT_ID, event_id_names, why_eid,
                                     sizeof(why_eid))) >= 0) {
        cols[eid].role = ROLE_EVENT_ID;
        cols[eid].how = "found by name";
    }
    if (ent < 0 && (ent = guess_role(cols, ncols, snake, ROLE_ENTITY, entity_names, why_ent,
                                     sizeof(why_ent))) >= 0) {
        cols[ent].role = ROLE_ENTITY;
        cols[ent].how = "found by name";
    }
    if (etime < 0 && (etime = guess_role(cols, ncols, snake, ROLE_EVENT_TIME, event_time_names,
                                         why_time, sizeof(why_time))) >= 0) {
        cols[etime].role = ROLE_EVENT_TIME;
        cols[etime].how = "found by name";
    }
    if (ent < 0 || eid < 0 || etime < 0) {
        const char *what[3], *flag[3];
        int k = 0;
        if (ent < 0)
            what[k] = "the entity", flag[k++] = "--entity COL";
        if (eid < 0)
            what[k] = "the event id", flag[k++] = "--event-id COL";
        if (etime < 0)
            what[k] = "the event time", flag[k++] = "--event-time COL";
        strbuf_reset(&sb);
        strbuf_appendf(&sb,
                       "%s: a spec needs an entity, an event id and an event time column; "
                       "cannot tell ",
                       path);
        for (int i = 0; i < k; i++)
            strbuf_appendf(&sb, "%s%s", i == 0 ? "" : i + 1 == k ? " and " : ", ", what[i]);
        strbuf_puts(&sb, " from the column names: pass ");
        for (int i = 0; i < k; i++)
            strbuf_appendf(&sb, "%s%s", i == 0 ? "" : i + 1 == k ? " and " : ", ", flag[i]);
        strbuf_appendf(&sb, "%s%s%s; columns: ", why_ent, why_eid, why_time);
        list_columns(cols, ncols, &sb);
        FAIL(MLOPS_EXIT_USAGE, "%s", sb.data);
    }

    /* the label's positive class */
    char positive[256] = "";
    if (label >= 0) {
        colstat_t *c = &cols[label];
        size_t nv;
        const char **vals = sorted_distinct(c, &nv);
        strbuf_reset(&sb);
        for (size_t i = 0; i < nv && i < 10; i++)
            strbuf_appendf(&sb, "%s'%s'", i ? ", " : "", vals[i]);
        if (nv > 10)
            strbuf_appendf(&sb, ", ... (%zu in all)", nv);
        if (conf.positive) {
            char p[256];
            const char *q = conf.positive;
            while (isspace((unsigned char)*q))
                q++;
            str_copy(p, q, sizeof(p));
            for (size_t l = strlen(p); l && isspace((unsigned char)p[l - 1]);)
                p[--l] = '\0';
            bool seen = hmap_get(c->distinct, p) != NULL;
            if (!seen) {
                free(vals);
                FAIL(MLOPS_EXIT_USAGE, "--positive '%s' is not a value of column '%s' (values: %s)",
                     conf.positive, c->name, sb.data);
            }
            str_copy(positive, p, sizeof(positive));
        } else {
            size_t ntrue = 0;
            for (size_t i = 0; i < nv; i++) {
                if (c->all_bool && spec_bool_text(vals[i]) == 1) {
                    ntrue++;
                    str_copy(positive, vals[i], sizeof(positive));
                }
            }
            if (ntrue != 1) {
                free(vals);
                FAIL(MLOPS_EXIT_USAGE,
                     "--label '%s' needs --positive VAL, the positive class (values: %s)", c->name,
                     sb.data);
            }
        }
        free(vals);
    }

    /* the document */
    norm = spec_parse(norm_spec_json, strlen(norm_spec_json), errstr, sizeof(errstr));
    if (!norm)
        FAIL(MLOPS_EXIT_FAILURE, "internal: %s", errstr);
    char name[128];
    if (conf.name)
        str_copy(name, conf.name, sizeof(name));
    else
        default_name(path, name, sizeof(name));
    const char *base = strrchr(path, '/');
    strbuf_reset(&sb);
    strbuf_appendf(&sb, "Inferred by mlopsctl spec infer from %s (%zu rows); review before use.",
                   base ? base + 1 : path, rows);
    doc = json_object();
    json_object_set_new(doc, "schema", json_string("feature_spec/1"));
    json_object_set_new(doc, "name", json_string(name));
    json_object_set_new(doc, "version", json_integer(1));
    json_object_set_new(doc, "description", json_string(sb.data));
    json_object_set_new(doc, "entity", json_string(cols[ent].name));
    json_object_set_new(doc, "event_id", json_string(cols[eid].name));
    json_object_set_new(doc, "event_time", json_string(cols[etime].name));
    if (label >= 0)
        json_object_set_new(
            doc, "label", json_pack("{s:s, s:s}", "field", cols[label].name, "positive", positive));
    json_t *fields = json_array();
    json_object_set_new(doc, "fields", fields);
    fprintf(stderr, "mlopsctl spec infer: %s: %zu rows, %zu columns\n", path, rows, ncols);
    for (size_t i = 0; i < ncols; i++) {
        colstat_t *c = &cols[i];
        if (c->role != ROLE_FIELD) {
            static const char *roles[] = {"", "entity", "event id", "event time", "label"};
            if (c->role == ROLE_LABEL)
                fprintf(stderr, "  %-24s label, positive class '%s'%s\n", c->name, positive,
                        c->missing ? " (some rows have no label)" : "");
            else
                fprintf(stderr, "  %-24s %s%s (%s)\n", c->name, roles[c->role],
                        (int)i == ent && ent == eid ? " and entity" : "", c->how);
            continue;
        }
        json_t *jf = json_object();
        json_object_set_new(jf, "name", json_string(c->name));
        json_object_set_new(jf, "type", json_string(spec_type_name(c->type)));
        if (!c->missing)
            json_object_set_new(jf, "required", json_true());
        else
            json_object_set_new(jf, "missing", json_string(missing_policy(c->type)));
        strbuf_reset(&sb);
        if (c->missing)
            strbuf_appendf(&sb, "%zu missing -> %s", c->missing, missing_policy(c->type));
        else
            strbuf_puts(&sb, "required");
        if (c->type == SPEC_T_INTEGER || c->type == SPEC_T_NUMERIC) {
            double lo, hi;
            widen(c->lo, c->hi, c->type == SPEC_T_INTEGER, &lo, &hi);
            json_object_set_new(jf, "min", json_num(lo));
            json_object_set_new(jf, "max", json_num(hi));
            char a[32], b[32], x[32], y[32];
            fmt_num(c->lo, x, sizeof(x));
            fmt_num(c->hi, y, sizeof(y));
            fmt_num(lo, a, sizeof(a));
            fmt_num(hi, b, sizeof(b));
            strbuf_appendf(&sb, ", data [%s, %s] -> range [%s, %s]", x, y, a, b);
        } else if (c->type == SPEC_T_CATEGORICAL && c->present) {
            catinfo_t ci;
            if (categories(norm, c, &ci))
                FAIL(MLOPS_EXIT_FAILURE, "internal: cannot normalise the values of column '%s'",
                     c->name);
            bool list = !c->overflow && ci.nvalues <= (size_t)conf.max_categories;
            if (list) {
                json_t *vals = json_array();
                for (size_t k = 0; k < ci.nvalues; k++)
                    json_array_append_new(vals, json_string(ci.values[k]));
                json_object_set_new(jf, "values", vals);
            }
            if (ci.lower)
                json_object_set_new(jf, "case", json_string("lower"));
            json_object_set_new(jf, "unknown", json_string(list ? "dlq" : "keep"));
            size_t longest = ci.max_len > c->max_len ? ci.max_len : c->max_len;
            if (longest > CATEGORY_MAX_LEN_DEFAULT)
                json_object_set_new(
                    jf, "max_length",
                    json_integer((json_int_t)((longest * 5 / 4 + 255) / 256 * 256)));
            if (c->overflow)
                strbuf_appendf(&sb, ", more than %d values", DISTINCT_CAP);
            else
                strbuf_appendf(&sb, ", %zu value%s%s", ci.nvalues, ci.nvalues == 1 ? "" : "s",
                               list ? " listed" : "");
            if (ci.lower)
                strbuf_puts(&sb, ", case lower (values differ only by case)");
            catinfo_cleanup(&ci);
        }
        json_array_append_new(fields, jf);
        fprintf(stderr, "  %-24s %-12s %s\n", c->name, spec_type_name(c->type), sb.data);
        if (!c->present)
            fprintf(stderr, "  %-24s warning: every value is missing\n", "");
        if (c->na_tokens && c->type == SPEC_T_CATEGORICAL && (c->num_but_na || c->date_but_na))
            fprintf(stderr,
                    "  %-24s warning: categorical only because of %zu value%s like '%s'; "
                    "only empty cells are missing: write missing values as empty cells\n",
                    "", c->na_tokens, c->na_tokens == 1 ? "" : "s", c->na_example);
    }
    if (json_array_size(fields) == 0)
        FAIL(MLOPS_EXIT_USAGE, "%s: no column is left for features after the ids, time and label",
             path);
    write_doc(doc, &text);

    /* pass 2: the written text must parse and accept every row */
    spec = spec_parse(text.data, text.len, errstr, sizeof(errstr));
    if (!spec)
        FAIL(MLOPS_EXIT_FAILURE, "internal: the inferred spec does not parse: %s", errstr);
    in = input_open(path, NULL, 1 << 26, errstr, sizeof(errstr));
    if (!in)
        FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
    spec_row_init(&row, spec);
    ids = hmap_new(NULL);
    for (;;) {
        json_t *obj;
        err_t *bad;
        const char *raw;
        size_t rawlen, record;
        rc = input_next(in, &obj, &bad, &raw, &rawlen, &record, errstr, sizeof(errstr));
        if (rc < 0)
            FAIL(MLOPS_EXIT_USAGE, "%s", errstr);
        if (rc == 0)
            break;
        if (!obj) {
            snprintf(errstr, sizeof(errstr), "%s", bad->msg);
            err_destroy(bad);
            FAIL(MLOPS_EXIT_USAGE, "%s: record %zu: %s", path, record, errstr);
        }
        spec_error_t se;
        if (spec_clean(spec, obj, &row, &se)) {
            json_decref(obj);
            FAIL(MLOPS_EXIT_FAILURE,
                 "internal: the inferred spec refuses %s record %zu (%s: %s); please report", path,
                 record, spec_reason_name(&se), se.detail);
        }
        json_decref(obj);
        uintptr_t prev = (uintptr_t)hmap_get(ids, row.event_id);
        if (prev)
            FAIL(MLOPS_EXIT_USAGE,
                 "%s: event id column '%s' (%s) repeats '%.60s' at records %zu and %zu: event ids "
                 "must be unique (pass --event-id COL with a unique column)",
                 path, spec->event_id, cols[eid].how, row.event_id, (size_t)prev, record);
        hmap_put(ids, row.event_id, (void *)(uintptr_t)record);
    }

    FILE *out = strcmp(conf.out, "-") ? fopen(conf.out, "w") : stdout;
    if (!out)
        FAIL(MLOPS_EXIT_FAILURE, "%s: cannot write", conf.out);
    fwrite(text.data, 1, text.len, out);
    if (out != stdout ? fclose(out) != 0 : fflush(out) != 0)
        FAIL(MLOPS_EXIT_FAILURE, "%s: write failed", conf.out);
    fprintf(
        stderr,
        "mlopsctl spec infer: wrote %s: spec '%s', %zu fields; all %zu rows pass its cleaning\n",
        strcmp(conf.out, "-") ? conf.out : "stdout", name, spec->nfields, rows);
    code = MLOPS_EXIT_OK;
done:
    if (spec)
        spec_row_cleanup(&row);
    hmap_destroy(ids);
    input_close(in);
    csvf_close(csv);
    for (size_t i = 0; i < ncols; i++) {
        hmap_destroy(cols[i].distinct);
        free(header[i]);
        free(snake[i]);
    }
    free(cols);
    free(header);
    free(snake);
    json_decref(doc);
    spec_destroy(norm);
    spec_destroy(spec);
    strbuf_cleanup(&text);
    strbuf_cleanup(&sb);
    cfg_destroy(cfg);
    return code;
}

#undef FAIL

/* ---- check ---------------------------------------------------------------------------- */

/* The command line of check/diff: positionals and --help only. Returns an
 * exit code, or -1 to run with *pos set (borrowed from argv). */
static int positional_only(const char *cmd, const char *usage, const char *help_text, int argc,
                           char **argv, int want, char **pos)
{
    int n = 0;
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            printf("Usage: %s %s\n\n%s", cmd, usage, help_text);
            return MLOPS_EXIT_OK;
        }
        if (!dashdash && !strcmp(a, "--")) {
            dashdash = true;
            continue;
        }
        if (!dashdash && a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", cmd, a);
            return MLOPS_EXIT_USAGE;
        }
        if (n == want) {
            fprintf(stderr, "%s: too many arguments; expected %s (see --help)\n", cmd, usage);
            return MLOPS_EXIT_USAGE;
        }
        pos[n++] = argv[i];
    }
    if (n != want) {
        fprintf(stderr, "%s: expected %s (see --help)\n", cmd, usage);
        return MLOPS_EXIT_USAGE;
    }
    return -1;
}

/* Load a spec: exit code 1 when the file cannot be read, 2 when it is not a
 * valid spec (the message names the JSON path). */
static spec_t *load_spec(const char *cmd, const char *path, int *code)
{
    char errstr[1024];
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "%s: %s: %s\n", cmd, path, strerror(errno));
        *code = MLOPS_EXIT_FAILURE;
        return NULL;
    }
    fclose(fp);
    spec_t *spec = spec_load(path, errstr, sizeof(errstr));
    if (!spec) {
        fprintf(stderr, "%s: %s\n", cmd, errstr);
        *code = MLOPS_EXIT_USAGE;
    }
    return spec;
}

static const char check_help[] =
    "Parse a feature spec with the code every service uses and report its identity\n"
    "(name, version, sha256), its ids, label, fields, derived features and output columns.\n"
    "Exit codes: 0 the spec is valid, 2 it is not (the message names the JSON path),\n"
    "1 it cannot be read.\n";

static const char *const missing_names[] = {"keep", "drop", "constant", "mean", "median", "mode"};
static const char *const op_names[] = {"log1p",         "ratio",       "bucketize",
                                       "one_hot",       "hash",        "time_part",
                                       "rolling_count", "rolling_sum", "rolling_mean"};

static int check_run(int argc, char **argv)
{
    char *pos[1];
    int code = positional_only("mlopsctl spec check", "SPEC", check_help, argc, argv, 1, pos);
    if (code >= 0)
        return code;
    spec_t *spec = load_spec("mlopsctl spec check", pos[0], &code);
    if (!spec)
        return code;
    printf("%s: valid feature_spec/1\n", pos[0]);
    printf("name %s, version %d, sha256 %s\n", spec->name, spec->version, spec->hash);
    printf("entity '%s', event id '%s', event time '%s'\n", spec->entity, spec->event_id,
           spec->event_time);
    if (spec->label)
        printf("label '%s', positive class '%s'\n", spec->label, spec->positive);
    else
        printf("no label\n");
    printf("online view '%s', ttl %llds; dedup window %llds\n", spec->view, (long long)spec->ttl_s,
           (long long)spec->dedup_window_s);
    printf("fields (%zu):\n", spec->nfields);
    for (size_t i = 0; i < spec->nfields; i++) {
        const spec_field_t *f = &spec->fields[i];
        printf("  %-26s %-12s %s", f->name, spec_type_name(f->type),
               f->required ? "required" : "optional");
        if (!f->required)
            printf(", missing %s", missing_names[f->missing]);
        if (f->has_min || f->has_max) {
            printf(", range [");
            if (f->has_min)
                printf("%g", f->min);
            printf(", ");
            if (f->has_max)
                printf("%g", f->max);
            printf("]");
        }
        if (f->values)
            printf(", %zu values", f->nvalues);
        if (f->case_rule != SPEC_CASE_KEEP)
            printf(", case %s", f->case_rule == SPEC_CASE_LOWER ? "lower" : "upper");
        printf("\n");
    }
    printf("derived (%zu):\n", spec->nderived);
    for (size_t i = 0; i < spec->nderived; i++) {
        const spec_derived_t *d = &spec->derived[i];
        printf("  %-26s %-13s", d->name, op_names[d->op]);
        if (d->input >= 0)
            printf(" of '%s'", spec->fields[d->input].name);
        if (d->input2 >= 0)
            printf(" / '%s'", spec->fields[d->input2].name);
        if (d->nout > 1)
            printf(" -> %zu columns", d->nout);
        printf("\n");
    }
    printf("columns (%zu):", spec->ncolumns);
    for (size_t i = 0; i < spec->ncolumns; i++)
        printf("%s %s", i ? "," : "", spec->columns[i]);
    printf("\n");
    spec_destroy(spec);
    return MLOPS_EXIT_OK;
}

/* ---- diff ----------------------------------------------------------------------------- */

static const char diff_help[] =
    "Compare two feature specs and say whether a reader of OLD can read NEW.\n"
    "Prints one line per difference (\"compatible: ...\" or \"breaking: ...\") and a last\n"
    "line with the verdict:\n"
    "  verdict: identical                               the same spec (same sha256)\n"
    "  verdict: compatible: same version can read both  only optional fields or derived\n"
    "                                                   features added, ranges widened, ...\n"
    "  verdict: breaking: needs a new version           a field removed, retyped or made\n"
    "                                                   required, a cleaning rule, the ids,\n"
    "                                                   the label or the spec name changed\n"
    "Exit codes (so scripts can gate on them): 0 identical or compatible, 3 breaking,\n"
    "2 bad usage or a spec that does not parse, 1 a file that cannot be read.\n";

static int diff_run(int argc, char **argv)
{
    char *pos[2];
    int code = positional_only("mlopsctl spec diff", "OLD NEW", diff_help, argc, argv, 2, pos);
    if (code >= 0)
        return code;
    spec_t *o = NULL, *n = NULL;
    strbuf_t report;
    strbuf_init(&report);
    if (!(o = load_spec("mlopsctl spec diff", pos[0], &code)) ||
        !(n = load_spec("mlopsctl spec diff", pos[1], &code)))
        goto done;
    int level = spec_diff(o, n, &report);
    if (strcmp(o->name, n->name)) {
        /* routing and models follow the name: a renamed spec is another spec */
        strbuf_appendf(&report, "breaking: spec name changed from '%s' to '%s'\n", o->name,
                       n->name);
        level = 2;
    }
    if (level == 0 && strcmp(o->hash, n->hash))
        level = 1, strbuf_puts(&report, "compatible: no field or derived feature changed "
                                        "(descriptions, order, online or dedup settings differ)\n");
    printf("old: %s (%s version %d, sha256 %.12s)\n", pos[0], o->name, o->version, o->hash);
    printf("new: %s (%s version %d, sha256 %.12s)\n", pos[1], n->name, n->version, n->hash);
    fputs(report.data ? report.data : "", stdout);
    if (level == 2 && n->version <= o->version)
        printf("hint: NEW keeps version %d; a breaking change needs \"version\": %d\n", n->version,
               o->version + 1);
    printf("verdict: %s\n", level == 0   ? "identical"
                            : level == 1 ? "compatible: same version can read both"
                                         : "breaking: needs a new version");
    code = level == 2 ? SPEC_EXIT_BREAKING : MLOPS_EXIT_OK;
done:
    spec_destroy(o);
    spec_destroy(n);
    strbuf_cleanup(&report);
    return code;
}

/* ---- spec ----------------------------------------------------------------------------- */

int cmd_spec(int argc, char **argv)
{
    static const char usage[] =
        "Usage: mlopsctl spec infer|check|diff ...\n\n"
        "  infer FILE.csv [--label COL [--positive VAL]] [--entity COL] [--event-id COL]\n"
        "        [--event-time COL] [--name NAME] [--out spec.json] [--max-categories N]\n"
        "                      write a first feature spec from a CSV (rules: infer --help)\n"
        "  check SPEC          parse a spec and report its fields and columns\n"
        "  diff OLD NEW        identical, compatible or breaking (exit 0, 0, 3)\n\n"
        "Run 'mlopsctl spec ACTION --help' for an action's options.\n";
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    if (!strcmp(argv[1], "infer"))
        return infer_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check"))
        return check_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "diff"))
        return diff_run(argc - 1, argv + 1);
    fprintf(stderr, "mlopsctl spec: unknown action '%s' (infer, check, diff)\n", argv[1]);
    return MLOPS_EXIT_USAGE;
}
