/* mjson.c: size cap, duplicate keys, depth, finiteness, typed getters. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "mjson.h"
#include "testutil.h"

static json_t *parse_expect_error(const char *s, mjson_code_t code, const char *needle)
{
    err_t *e = NULL;
    json_t *j = mjson_parse_object(s, strlen(s), 1 << 20, &e);
    cr_assert_null(j, "should not parse: %s", s);
    cr_assert(e);
    cr_assert_eq(e->domain, ERR_D_INPUT);
    cr_assert_eq(e->code, (int)code, "%s: got %s (%s)", s, mjson_code_name((mjson_code_t)e->code),
                 e->msg);
    if (needle)
        cr_assert(strstr(e->msg, needle), "message '%s' lacks '%s'", e->msg, needle);
    err_destroy(e);
    return NULL;
}

Test(mjson, parses_objects)
{
    err_t *e = NULL;
    const char *s = "{\"a\":1,\"b\":\"x\",\"c\":[1,2]}";
    json_t *j = mjson_parse_object(s, strlen(s), 1024, &e);
    cr_assert(j);
    cr_assert_null(e);
    cr_assert_eq(json_integer_value(json_object_get(j, "a")), 1);
    json_decref(j);
}

Test(mjson, malformed_json_names_position)
{
    parse_expect_error("{\"a\":1,}", MJSON_E_BAD_JSON, "line 1, column");
    parse_expect_error("", MJSON_E_BAD_JSON, NULL);
    parse_expect_error("{\"a\": tru}", MJSON_E_BAD_JSON, NULL);
}

Test(mjson, duplicate_keys_rejected)
{
    parse_expect_error("{\"a\":1,\"a\":2}", MJSON_E_DUPLICATE_KEY, "duplicate");
}

Test(mjson, top_level_must_be_object)
{
    parse_expect_error("[1,2]", MJSON_E_NOT_OBJECT, "array");
    parse_expect_error("\"str\"", MJSON_E_NOT_OBJECT, "string");
}

Test(mjson, size_cap_applies_before_parsing)
{
    err_t *e = NULL;
    /* not even valid JSON: the cap must refuse it before the parser sees it */
    char buf[2000];
    memset(buf, '{', sizeof(buf));
    cr_assert_null(mjson_parse(buf, sizeof(buf), 1000, &e));
    cr_assert_eq(e->code, MJSON_E_TOO_LARGE);
    cr_assert(strstr(e->msg, "2000 bytes") && strstr(e->msg, "1000"), "%s", e->msg);
    err_destroy(e);
}

Test(mjson, non_finite_numbers_rejected)
{
    parse_expect_error("{\"x\":1e400}", MJSON_E_NON_FINITE, NULL);
    parse_expect_error("{\"x\":NaN}", MJSON_E_BAD_JSON, NULL);
    parse_expect_error("{\"x\":Infinity}", MJSON_E_BAD_JSON, NULL);
}

Test(mjson, nul_in_strings_rejected)
{
    parse_expect_error("{\"x\":\"a\\u0000b\"}", MJSON_E_BAD_JSON, NULL);
}

Test(mjson, deep_nesting_rejected_without_crash)
{
    size_t depth = 100000;
    char *s = xmalloc(depth * 2 + 8);
    size_t n = 0;
    s[n++] = '{';
    s[n++] = '"';
    s[n++] = 'a';
    s[n++] = '"';
    s[n++] = ':';
    for (size_t i = 0; i < depth; i++)
        s[n++] = '[';
    s[n] = '\0';
    err_t *e = NULL;
    cr_assert_null(mjson_parse(s, n, 1 << 20, &e));
    cr_assert_eq(e->code, MJSON_E_BAD_JSON);
    cr_assert(strstr(e->msg, "depth") || strstr(e->msg, "nest"), "%s", e->msg);
    err_destroy(e);
    free(s);
}

Test(mjson, getters_name_the_field)
{
    const char *s = "{\"n\":\"12\",\"i\":3.5,\"r\":3.0,\"b\":1,\"z\":null}";
    err_t *e = NULL;
    json_t *j = mjson_parse_object(s, strlen(s), 1024, &e);
    cr_assert(j);
    double d;
    cr_assert_eq(mjson_get_num(j, "n", true, &d, &e), -1);
    cr_assert_eq(e->code, MJSON_E_WRONG_TYPE);
    cr_assert_str_eq(e->msg, "field 'n' is string, expected a number");
    err_destroy(e);
    e = NULL;
    int64_t i;
    cr_assert_eq(mjson_get_int(j, "i", true, &i, &e), -1);
    cr_assert_str_eq(e->msg, "field 'i' is number, expected an integer");
    err_destroy(e);
    e = NULL;
    cr_assert_eq(mjson_get_int(j, "r", true, &i, &e), 0, "3.0 is an integer value");
    cr_assert_eq(i, 3);
    bool b;
    cr_assert_eq(mjson_get_bool(j, "b", true, &b, &e), -1);
    err_destroy(e);
    e = NULL;
    cr_assert_eq(mjson_get_str(j, "missing", true, &s, &e), -1);
    cr_assert_eq(e->code, MJSON_E_MISSING_FIELD);
    cr_assert_str_eq(e->msg, "field 'missing' is missing");
    err_destroy(e);
    e = NULL;
    cr_assert_eq(mjson_get_str(j, "z", false, &s, &e), 1, "null optional = absent");
    cr_assert_eq(mjson_get_str(j, "missing", false, &s, &e), 1);
    cr_assert_null(e);
    json_decref(j);
}

Test(mjson, computed_non_finite_refused)
{
    cr_assert_null(mjson_num(NAN));
    cr_assert_null(mjson_num(INFINITY));
    json_t *o = json_object();
    cr_assert_eq(mjson_set_num(o, "x", -INFINITY), -1);
    cr_assert_null(json_object_get(o, "x"), "object unchanged");
    cr_assert_eq(mjson_set_num(o, "x", 0.1), 0);
    char *s = mjson_dump(o, NULL);
    cr_assert_str_eq(s, "{\"x\":0.10000000000000001}");
    free(s);
    json_decref(o);
}

Test(mjson, dump_keeps_insertion_order)
{
    json_t *o = json_object();
    json_object_set_new(o, "z", json_integer(1));
    json_object_set_new(o, "a", json_integer(2));
    char *s = mjson_dump(o, NULL);
    cr_assert_str_eq(s, "{\"z\":1,\"a\":2}");
    free(s);
    json_decref(o);
}

Test(mjson, code_names_match_dlq_contract)
{
    cr_assert_str_eq(mjson_code_name(MJSON_E_BAD_JSON), "bad_json");
    cr_assert_str_eq(mjson_code_name(MJSON_E_DUPLICATE_KEY), "duplicate_key");
    cr_assert_str_eq(mjson_code_name(MJSON_E_NOT_OBJECT), "not_object");
    cr_assert_str_eq(mjson_code_name(MJSON_E_TOO_LARGE), "too_large");
    cr_assert_str_eq(mjson_code_name(MJSON_E_MISSING_FIELD), "missing_field");
    cr_assert_str_eq(mjson_code_name(MJSON_E_WRONG_TYPE), "wrong_type");
    cr_assert_str_eq(mjson_code_name(MJSON_E_OUT_OF_RANGE), "out_of_range");
    cr_assert_str_eq(mjson_code_name(MJSON_E_NON_FINITE), "non_finite");
}
