/* spec.c: parsing with path-named errors, each cleaning rule, stateless
 * derived features, spec diff. Numbers that need an independent oracle
 * (hash buckets, bucketize, time parts, rolling) are checked against
 * scikit-learn/NumPy/pandas in tests/oracle through mlopsctl. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "rolling.h"
#include "spec.h"
#include "testutil.h"

static spec_t *load_example(void)
{
    char err[1024];
    spec_t *s = spec_load(MLOPS_SOURCE_DIR "/examples/attrition/spec.json", err, sizeof(err));
    cr_assert(s, "%s", err);
    return s;
}

static spec_t *parse_ok(const char *json)
{
    char err[1024];
    spec_t *s = spec_parse(json, strlen(json), err, sizeof(err));
    cr_assert(s, "%s", err);
    return s;
}

#define HEAD                                                                                       \
    "{\"schema\":\"feature_spec/1\",\"name\":\"t\",\"entity\":\"e\",\"event_id\":\"id\","          \
    "\"event_time\":\"ts\","

Test(spec, example_parses_with_expected_columns)
{
    spec_t *s = load_example();
    cr_assert_str_eq(s->name, "attrition");
    cr_assert_eq(s->nfields, 30);
    /* 11 derived, one of which (dept) is a 3-way one-hot */
    cr_assert_eq(s->nderived, 11);
    cr_assert_eq(s->ncolumns, 30 + 10 + 3);
    cr_assert_geq(spec_column_index(s, "dept__research & development"), 0);
    cr_assert_eq(s->nrolling, 3);
    cr_assert_str_eq(s->label, "left");
    cr_assert_str_eq(s->positive, "yes");
    cr_assert_eq(strlen(s->hash), 64);
    spec_destroy(s);
}

/* Each bad spec and the error it must give (the JSON path and the reason). */
static const struct {
    const char *json;
    const char *error;
} bad_specs[] = {
    {"[1]", "not a JSON object"},
    {"{\"schema\":\"feature_spec/2\"}", "schema: 'feature_spec/2' is not feature_spec/1"},
    {HEAD "\"fields\":[]}", "fields: must be a non-empty array"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"float\"}]}",
     "fields[0].type: 'float' is not one of numeric, integer, categorical, boolean, timestamp"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"rquired\":true}]}",
     "fields[0]: unknown key 'rquired'"},
    {HEAD
     "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\"},{\"name\":\"a\",\"type\":\"integer\"}]}",
     "fields[1]: field 'a' is declared twice"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"min\":5,\"max\":1}]}",
     "fields[0]: min 5 is above max 1"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"values\":[1]}]}",
     "fields[0].values: only categorical fields have values"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"categorical\",\"values\":[\"X\",\"x \"],"
          "\"case\":\"lower\"}]}",
     "fields[0].values: 'x' is listed twice (after normalising)"},
    {HEAD
     "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"required\":true,\"missing\":\"mean\"}]}",
     "fields[0].missing: a required field's missing policy can only be 'drop'"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"categorical\",\"missing\":\"mean\"}]}",
     "fields[0].missing: 'mean' needs a numeric field"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"missing\":\"constant\"}]}",
     "fields[0]: missing 'constant' needs a 'constant' value"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"missing\":\"constant\","
          "\"constant\":\"x\"}]}",
     "fields[0].constant: does not match the field's type numeric"},
    {HEAD "\"fields\":[{\"name\":\"e\",\"type\":\"numeric\"}]}",
     "fields[0]: 'e' is the entity, event id or event time, not a feature"},
    {HEAD "\"label\":{\"field\":\"y\",\"positive\":1},\"fields\":[{\"name\":\"y\",\"type\":"
          "\"numeric\"}]}",
     "fields[0]: 'y' is the label: it must not be a feature"},
    {HEAD "\"label\":{\"field\":\"y\"},\"fields\":[{\"name\":\"a\",\"type\":\"numeric\"}]}",
     "label: 'positive' (the positive class) is required"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\"}],\"derived\":[{\"name\":\"l\","
          "\"op\":\"log1p\",\"input\":\"b\"}]}",
     "derived[0]: input: no field named 'b'"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"categorical\"}],\"derived\":[{\"name\":\"l\","
          "\"op\":\"log1p\",\"input\":\"a\"}]}",
     "derived[0]: input: 'a' is categorical, log1p needs a number"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"categorical\"}],\"derived\":[{\"name\":\"o\","
          "\"op\":\"one_hot\",\"input\":\"a\"}]}",
     "one_hot needs the input's declared values"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\"}],\"derived\":[{\"name\":\"b\","
          "\"op\":\"bucketize\",\"input\":\"a\",\"boundaries\":[1,1]}]}",
     "derived[0].boundaries: must be strictly ascending (item 1)"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\"}],\"derived\":[{\"name\":\"r\","
          "\"op\":\"rolling_sum\",\"input\":\"a\"}]}",
     "derived[0]: rolling_sum needs 'window_s'"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\"}],\"derived\":[{\"name\":\"a\","
          "\"op\":\"log1p\",\"input\":\"a\"}]}",
     "derived: output 'a' collides with another column"},
    {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\"}],\"derived\":[{\"name\":\"h\","
          "\"op\":\"time_part\",\"input\":\"ts\",\"part\":\"minute\"}]}",
     "derived[0].part: 'minute' is not one of hour, dow, day, month, year"},
};

Test(spec, bad_specs_give_clear_errors)
{
    for (size_t i = 0; i < sizeof(bad_specs) / sizeof(bad_specs[0]); i++) {
        char err[1024] = "";
        spec_t *s = spec_parse(bad_specs[i].json, strlen(bad_specs[i].json), err, sizeof(err));
        cr_expect_null(s, "case %zu should fail: %s", i, bad_specs[i].json);
        cr_expect(strstr(err, bad_specs[i].error), "case %zu: got '%s', want '%s'", i, err,
                  bad_specs[i].error);
        spec_destroy(s);
    }
}

Test(spec, load_names_the_file)
{
    char err[1024];
    cr_assert_null(spec_load("/nonexistent/spec.json", err, sizeof(err)));
    cr_assert(strstr(err, "/nonexistent/spec.json"), "%s", err);
}

/* Clean one event given as JSON text; returns 0/-1 and fills row/err. */
static int clean(spec_t *s, spec_row_t *row, spec_error_t *e, const char *json)
{
    err_t *pe = NULL;
    json_t *j = mjson_parse(json, strlen(json), 1 << 20, &pe);
    cr_assert(j, "test event is not JSON: %s", pe ? pe->msg : "");
    int rc = spec_clean(s, j, row, e);
    json_decref(j);
    return rc;
}

static const char *RULES =
    HEAD "\"fields\":["
         "{\"name\":\"n\",\"type\":\"numeric\",\"min\":0,\"max\":100},"
         "{\"name\":\"i\",\"type\":\"integer\",\"missing\":\"constant\",\"constant\":7},"
         "{\"name\":\"b\",\"type\":\"boolean\"},"
         "{\"name\":\"c\",\"type\":\"categorical\",\"values\":[\"Research & Development\","
         "\"Sales\"],\"case\":\"lower\"},"
         "{\"name\":\"o\",\"type\":\"categorical\",\"values\":[\"a\",\"b\"],\"unknown\":\"other\","
         "\"other\":\"b\"},"
         "{\"name\":\"k\",\"type\":\"categorical\",\"values\":[\"a\"],\"unknown\":\"keep\","
         "\"max_length\":8},"
         "{\"name\":\"r\",\"type\":\"numeric\",\"required\":true},"
         "{\"name\":\"t\",\"type\":\"timestamp\"}],"
         "\"derived\":["
         "{\"name\":\"ln\",\"op\":\"log1p\",\"input\":\"n\"},"
         "{\"name\":\"q\",\"op\":\"ratio\",\"num\":\"n\",\"den\":\"r\"},"
         "{\"name\":\"qn\",\"op\":\"ratio\",\"num\":\"n\",\"den\":\"r\",\"on_invalid\":\"null\"},"
         "{\"name\":\"bk\",\"op\":\"bucketize\",\"input\":\"n\",\"boundaries\":[10,20]},"
         "{\"name\":\"oh\",\"op\":\"one_hot\",\"input\":\"c\"},"
         "{\"name\":\"hr\",\"op\":\"time_part\",\"input\":\"ts\",\"part\":\"hour\"}]}";

typedef struct fixture {
    spec_t *s;
    spec_row_t row;
    spec_error_t e;
} fixture_t;

static fixture_t fx;
static void setup(void)
{
    fx.s = parse_ok(RULES);
    spec_row_init(&fx.row, fx.s);
}
static void teardown(void)
{
    spec_row_cleanup(&fx.row);
    spec_destroy(fx.s);
}

static const spec_value_t *col(const char *name)
{
    int i = spec_column_index(fx.s, name);
    cr_assert_geq(i, 0, "no column %s", name);
    return &fx.row.values[i];
}

#define EV(fields) "{\"id\":\"ev-1\",\"e\":42,\"ts\":\"2026-11-25T10:30:00Z\"," fields "}"

Test(clean, coerces_and_normalises, .init = setup, .fini = teardown)
{
    int rc = clean(fx.s, &fx.row, &fx.e,
                   EV("\"n\":\" 42.5 \",\"b\":\"Yes\",\"c\":\"  research   &  DEVELOPMENT \","
                      "\"o\":\"zzz\",\"k\":\"new\",\"r\":\"5\",\"t\":1700000000000"));
    cr_assert_eq(rc, 0, "%s: %s", spec_reason_name(&fx.e), fx.e.detail);
    cr_assert_str_eq(fx.row.event_id, "ev-1");
    cr_assert_str_eq(fx.row.entity, "42", "an integer entity becomes text");
    cr_assert_float_eq(col("n")->num, 42.5, 0);
    cr_assert_float_eq(col("i")->num, 7, 0, "missing -> constant");
    cr_assert_float_eq(col("b")->num, 1, 0);
    cr_assert_str_eq(col("c")->str, "research & development");
    cr_assert_str_eq(col("o")->str, "b", "unknown -> other");
    cr_assert_str_eq(col("k")->str, "new", "unknown kept");
    cr_assert_float_eq(col("t")->num, 1700000000000.0, 0);
    cr_assert_float_eq(col("ln")->num, log1p(42.5), 1e-15);
    cr_assert_float_eq(col("q")->num, 8.5, 1e-15);
    cr_assert_float_eq(col("bk")->num, 2, 0);
    cr_assert_float_eq(col("oh__research & development")->num, 1, 0);
    cr_assert_float_eq(col("oh__sales")->num, 0, 0);
    cr_assert_float_eq(col("hr")->num, 10, 0);
}

Test(clean, blank_strings_and_nulls_are_missing, .init = setup, .fini = teardown)
{
    cr_assert_eq(clean(fx.s, &fx.row, &fx.e, EV("\"n\":\"  \",\"b\":null,\"r\":1")), 0, "%s",
                 fx.e.detail);
    cr_assert_eq(col("n")->kind, SPEC_V_MISSING);
    cr_assert_eq(col("b")->kind, SPEC_V_MISSING);
    cr_assert_eq(col("ln")->kind, SPEC_V_MISSING, "a derived of a missing input is missing");
    cr_assert_eq(col("oh__sales")->kind, SPEC_V_MISSING);
}

/* Every refusal: the dlq/1 reason and the field the detail names. */
static const struct {
    const char *event;
    const char *reason;
    const char *field;
    const char *detail;
} refusals[] = {
    {"{\"e\":1,\"ts\":0,\"r\":1}", "missing_field", "id", "field 'id' is missing"},
    {"{\"id\":\"  \",\"e\":1,\"ts\":0,\"r\":1}", "missing_field", "id", "field 'id' is empty"},
    {"{\"id\":[1],\"e\":1,\"ts\":0,\"r\":1}", "wrong_type", "id",
     "expected a string or an integer"},
    {"{\"id\":\"x\",\"ts\":0,\"r\":1}", "missing_field", "e", "field 'e' is missing"},
    {"{\"id\":\"x\",\"e\":1,\"r\":1}", "missing_field", "ts", "field 'ts' is missing"},
    {"{\"id\":\"x\",\"e\":1,\"ts\":\"yesterday\",\"r\":1}", "wrong_type", "ts",
     "'yesterday', expected an RFC 3339 time"},
    {"{\"id\":\"x\",\"e\":1,\"ts\":\"2026-02-30T00:00:00Z\",\"r\":1}", "wrong_type", "ts", NULL},
    {EV("\"n\":1"), "missing_field", "r", "field 'r' is missing"},
    {EV("\"n\":\"abc\",\"r\":1"), "wrong_type", "n", "field 'n' is 'abc', not a number"},
    {EV("\"n\":\"nan\",\"r\":1"), "wrong_type", "n", "not a number"},
    {EV("\"n\":true,\"r\":1"), "wrong_type", "n", "expected numeric"},
    {EV("\"n\":{\"v\":1},\"r\":1"), "wrong_type", "n", "is an object"},
    {EV("\"n\":101,\"r\":1"), "out_of_range", "n", "101 is above the maximum 100"},
    {EV("\"n\":-0.5,\"r\":1"), "out_of_range", "n", "is below the minimum 0"},
    {EV("\"i\":3.5,\"r\":1"), "wrong_type", "i", "not an integer"},
    {EV("\"b\":\"maybe\",\"r\":1"), "wrong_type", "b", "expected a boolean"},
    {EV("\"b\":2,\"r\":1"), "wrong_type", "b", "expected a boolean"},
    {EV("\"c\":\"marketing\",\"r\":1"), "unknown_category", "c",
     "'marketing' is not one of its 2 declared values"},
    {EV("\"k\":\"123456789\",\"r\":1"), "out_of_range", "k", "9 bytes, the limit is 8"},
    {EV("\"t\":\"soon\",\"r\":1"), "wrong_type", "t", NULL},
    {EV("\"n\":1,\"r\":0"), "non_finite", "q", "derived 'q' is inf (division by zero)"},
    {NULL, NULL, NULL, NULL},
};

Test(clean, each_refusal_names_reason_and_field, .init = setup, .fini = teardown)
{
    for (size_t i = 0; refusals[i].reason; i++) {
        int rc = clean(fx.s, &fx.row, &fx.e, refusals[i].event);
        cr_expect_eq(rc, -1, "case %zu should be refused: %s", i, refusals[i].event);
        if (rc != -1)
            continue;
        cr_expect_str_eq(spec_reason_name(&fx.e), refusals[i].reason, "case %zu (%s)", i,
                         fx.e.detail);
        cr_expect_str_eq(fx.e.field, refusals[i].field, "case %zu", i);
        if (refusals[i].detail)
            cr_expect(strstr(fx.e.detail, refusals[i].detail), "case %zu: '%s' lacks '%s'", i,
                      fx.e.detail, refusals[i].detail);
    }
}

Test(clean, ratio_on_invalid_null_keeps_the_event, .init = setup, .fini = teardown)
{
    spec_t *s = parse_ok(HEAD "\"fields\":[{\"name\":\"n\",\"type\":\"numeric\"},"
                              "{\"name\":\"r\",\"type\":\"numeric\"}],\"derived\":[{\"name\":"
                              "\"qn\",\"op\":\"ratio\",\"num\":\"n\",\"den\":\"r\","
                              "\"on_invalid\":\"null\"}]}");
    spec_row_t row;
    spec_row_init(&row, s);
    spec_error_t e;
    cr_assert_eq(clean(s, &row, &e, "{\"id\":1,\"e\":1,\"ts\":0,\"n\":1,\"r\":0}"), 0);
    cr_assert_eq(row.values[spec_column_index(s, "qn")].kind, SPEC_V_MISSING);
    spec_row_cleanup(&row);
    spec_destroy(s);
}

Test(clean, event_times_in_every_accepted_form)
{
    const char *forms[] = {"\"2026-11-25T10:30:00Z\"", "\"2026-11-25T10:30:00.000Z\"",
                           "\"2026-11-25 10:30:00Z\"", "\"2026-11-25T12:30:00+02:00\"",
                           "\"2026-11-25T05:30:00-0500\""};
    int64_t first = 0;
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        err_t *pe = NULL;
        json_t *v = mjson_parse(forms[i], strlen(forms[i]), 100, &pe);
        cr_assert(v);
        int64_t ms;
        cr_assert_eq(spec_parse_time(v, &ms), 0, "%s", forms[i]);
        if (i == 0)
            first = ms;
        cr_assert_eq(ms, first, "%s is the same instant", forms[i]);
        json_decref(v);
    }
    /* epoch milliseconds agree with the RFC 3339 text (date(1) as the oracle) */
    FILE *p = popen("date -u -d 2026-11-25T10:30:00Z +%s", "r");
    long long secs;
    cr_assert_eq(fscanf(p, "%lld", &secs), 1);
    pclose(p);
    cr_assert_eq(first, secs * 1000);
}

Test(clean, event_times_out_of_any_window_are_refused)
{
    /* integers like reals: beyond +-9e15 ms, start + span of a window would overflow */
    const char *bad[] = {"9223372036854775807", "-9223372036854775807", "9000000000000001",
                         "9.1e15", "-1e300"};
    const char *good[] = {"9000000000000000", "-9000000000000000", "0", "1767225600000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *v = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        cr_assert(v, "%s", bad[i]);
        int64_t ms;
        cr_assert_eq(spec_parse_time(v, &ms), -1, "%s accepted", bad[i]);
        json_decref(v);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        json_t *v = json_loads(good[i], JSON_DECODE_ANY, NULL);
        int64_t ms;
        cr_assert_eq(spec_parse_time(v, &ms), 0, "%s refused", good[i]);
        cr_assert_eq(ms, (int64_t)json_integer_value(v));
        json_decref(v);
    }
}

Test(clean, not_an_object)
{
    spec_t *s = load_example();
    spec_row_t row;
    spec_row_init(&row, s);
    spec_error_t e;
    cr_assert_eq(clean(s, &row, &e, "[1,2]"), -1);
    cr_assert_str_eq(spec_reason_name(&e), "not_object");
    spec_row_cleanup(&row);
    spec_destroy(s);
}

Test(diff, compatible_and_breaking_changes)
{
    const char *base = HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"min\":0},"
                            "{\"name\":\"c\",\"type\":\"categorical\",\"values\":[\"x\",\"y\"]}]}";
    const struct {
        const char *nw;
        int level;
        const char *note;
    } cases[] = {
        {base, 0, NULL},
        {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"min\":0,\"description\":\"d\"},"
              "{\"name\":\"c\",\"type\":\"categorical\",\"values\":[\"x\",\"y\"]}]}",
         0, NULL},
        {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"min\":0},"
              "{\"name\":\"c\",\"type\":\"categorical\",\"values\":[\"x\",\"y\"]},"
              "{\"name\":\"d\",\"type\":\"boolean\"}]}",
         1, "compatible: optional field 'd' added"},
        {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"min\":0},"
              "{\"name\":\"c\",\"type\":\"categorical\",\"values\":[\"x\",\"y\"]},"
              "{\"name\":\"d\",\"type\":\"boolean\",\"required\":true}]}",
         2, "breaking: required field 'd' added"},
        {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"min\":0}]}", 2,
         "breaking: field 'c' removed"},
        {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"integer\",\"min\":0},"
              "{\"name\":\"c\",\"type\":\"categorical\",\"values\":[\"x\",\"y\"]}]}",
         2, "breaking: field 'a' retyped from numeric to integer"},
        {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"min\":-1},"
              "{\"name\":\"c\",\"type\":\"categorical\",\"values\":[\"x\",\"y\",\"z\"]}]}",
         1, "compatible: field 'c' gained values"},
        {HEAD "\"fields\":[{\"name\":\"a\",\"type\":\"numeric\",\"min\":1},"
              "{\"name\":\"c\",\"type\":\"categorical\",\"values\":[\"x\"]}]}",
         2, "breaking: field 'c' lost the value 'y'"},
    };
    spec_t *o = parse_ok(base);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        spec_t *n = parse_ok(cases[i].nw);
        strbuf_t r;
        strbuf_init(&r);
        int level = spec_diff(o, n, &r);
        cr_expect_eq(level, cases[i].level, "case %zu: %s", i, r.data);
        if (cases[i].note)
            cr_expect(strstr(r.data, cases[i].note), "case %zu: '%s' lacks '%s'", i, r.data,
                      cases[i].note);
        strbuf_cleanup(&r);
        spec_destroy(n);
    }
    spec_destroy(o);
}

/* Rolling aggregates, hand-checkable: count and sum over 1 h, closed on the
 * right; a redelivered position is a replay, the same offset of another
 * input topic is not; the state survives encode/decode. */
Test(rolling, replays_sources_and_encoding)
{
    spec_t *s = parse_ok(HEAD "\"fields\":[{\"name\":\"x\",\"type\":\"numeric\"}],\"derived\":["
                              "{\"name\":\"c\",\"op\":\"rolling_count\",\"window_s\":3600},"
                              "{\"name\":\"sx\",\"op\":\"rolling_sum\",\"input\":\"x\","
                              "\"window_s\":3600}]}");
    spec_row_t row;
    spec_row_init(&row, s);
    spec_error_t e;
    int ic = spec_column_index(s, "c"), is = spec_column_index(s, "sx");
    rolling_state_t *st = rolling_new(s);
    uint32_t a = rolling_source_id("events.raw"), b = rolling_source_id("events.raw.v2");
    cr_assert_neq(a, b);
    /* 10:00 x=1, 10:30 x=2, 11:00 x=4 (10:00 falls out: t - 1h < t' <= t) */
    static const char *evs[] = {
        "{\"id\":\"1\",\"e\":1,\"ts\":\"2026-11-25T10:00:00Z\",\"x\":1}",
        "{\"id\":\"2\",\"e\":1,\"ts\":\"2026-11-25T10:30:00Z\",\"x\":2}",
        "{\"id\":\"3\",\"e\":1,\"ts\":\"2026-11-25T11:00:00Z\",\"x\":4}",
    };
    static const double want_c[] = {1, 2, 2}, want_s[] = {1, 3, 6};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(clean(s, &row, &e, evs[i]), 0, "%s", e.detail);
        cr_assert_eq(rolling_apply(s, st, &row, a, 0, i), 0);
        cr_assert_float_eq(row.values[ic].num, want_c[i], 0);
        cr_assert_float_eq(row.values[is].num, want_s[i], 0);
    }
    /* redelivery of offset 1: a replay with the aggregates it had */
    cr_assert_eq(clean(s, &row, &e, evs[1]), 0);
    cr_assert_eq(rolling_apply(s, st, &row, a, 0, 1), 1);
    cr_assert_float_eq(row.values[ic].num, 2, 0);
    cr_assert_float_eq(row.values[is].num, 3, 0);
    /* the same partition and offset on another topic is a new event */
    cr_assert_eq(
        clean(s, &row, &e, "{\"id\":\"4\",\"e\":1,\"ts\":\"2026-11-25T11:10:00Z\",\"x\":8}"), 0);
    cr_assert_eq(rolling_apply(s, st, &row, b, 0, 1), 0);
    cr_assert_float_eq(row.values[ic].num, 3, 0);
    cr_assert_float_eq(row.values[is].num, 14, 0);
    /* encode, decode: the next event sees the same history */
    strbuf_t enc;
    strbuf_init(&enc);
    rolling_encode(st, &enc);
    char err[256];
    rolling_state_t *back = rolling_decode(s, enc.data, enc.len, err, sizeof(err));
    cr_assert(back, "%s", err);
    cr_assert_eq(clean(s, &row, &e, evs[2]), 0);
    cr_assert_eq(rolling_apply(s, back, &row, a, 0, 2), 1, "position remembered across encoding");
    cr_assert_null(rolling_decode(s, enc.data, enc.len - 1, err, sizeof(err)));
    strbuf_cleanup(&enc);
    rolling_destroy(back);
    rolling_destroy(st);
    spec_row_cleanup(&row);
    spec_destroy(s);
}
