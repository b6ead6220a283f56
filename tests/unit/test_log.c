/* log.c: one JSON object per line, context fields, levels, redaction. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>

#include "log.h"
#include "testutil.h"

static void setup(void)
{
    log_init("testsvc", LOG_LVL_DEBUG);
    log_clear_secrets();
    test_logs_capture();
}

static void teardown(void)
{
    test_logs_release();
    log_clear_secrets();
}

TestSuite(log, .init = setup, .fini = teardown);

/* Parse every captured line as JSON; return the last one (new reference). */
static json_t *last_line(void)
{
    const char *all = test_logs();
    json_t *last = NULL;
    const char *p = all;
    while (*p) {
        const char *nl = strchr(p, '\n');
        cr_assert(nl, "every line ends with a newline");
        json_error_t e;
        json_t *j = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &e);
        cr_assert(j, "line is not JSON (%s): %.*s", e.text, (int)(nl - p), p);
        json_decref(last);
        last = j;
        p = nl + 1;
    }
    cr_assert(last, "no line was written");
    return last;
}

Test(log, line_has_ts_level_service_msg_and_fields)
{
    log_emit(LOG_LVL_WARN,
             LOG_FIELDS(LOG_STR("topic", "features"), LOG_INT("partition", 2),
                        LOG_DBL("ratio", 0.5), LOG_BOOL("degraded", true)),
             "lag is %d", 7);
    json_t *j = last_line();
    cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "warn");
    cr_assert_str_eq(json_string_value(json_object_get(j, "service")), "testsvc");
    cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "lag is 7");
    cr_assert_str_eq(json_string_value(json_object_get(j, "topic")), "features");
    cr_assert_eq(json_integer_value(json_object_get(j, "partition")), 2);
    cr_assert_float_eq(json_number_value(json_object_get(j, "ratio")), 0.5, 0);
    cr_assert(json_is_true(json_object_get(j, "degraded")));
    const char *ts = json_string_value(json_object_get(j, "ts"));
    cr_assert(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z', "ts %s", ts);
    json_decref(j);
}

Test(log, level_threshold_filters)
{
    log_set_level(LOG_LVL_ERROR);
    log_info("hidden");
    log_warn("hidden too");
    cr_assert_str_eq(test_logs(), "");
    log_error("shown");
    cr_assert(strstr(test_logs(), "shown"));
    log_level_t l;
    cr_assert_eq(log_level_parse("WARNING", &l), 0);
    cr_assert_eq(l, LOG_LVL_WARN);
    cr_assert_eq(log_level_parse("loud", &l), -1);
}

Test(log, quotes_newlines_and_nan_stay_valid_json)
{
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_DBL("x", 0.0 / 0.0), LOG_STR("s", NULL)),
             "a \"quoted\"\nline\twith \x02 control");
    json_t *j = last_line();
    cr_assert_str_eq(json_string_value(json_object_get(j, "msg")),
                     "a \"quoted\"\nline\twith \x02 control");
    cr_assert(json_is_null(json_object_get(j, "x")), "NaN is written as null");
    cr_assert(json_is_null(json_object_get(j, "s")));
    json_decref(j);
}

Test(log, registered_secrets_never_printed)
{
    log_add_secret("s3cr3t-token-value");
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("header", "x s3cr3t-token-value y")),
             "token is s3cr3t-token-value!");
    cr_assert_null(strstr(test_logs(), "s3cr3t"), "%s", test_logs());
    cr_assert(strstr(test_logs(), "token is ***!"), "%s", test_logs());
}

Test(log, url_passwords_dsn_passwords_and_bearer_tokens_redacted)
{
    log_info("connecting to postgresql://mlops:pa55word@127.0.0.1:5433/mlops");
    log_info("dsn host=127.0.0.1 password=hunter2 dbname=x");
    log_info("Authorization: Bearer abc.def.ghi");
    log_info("body {\"token\":\"tok123\"}");
    const char *all = test_logs();
    cr_assert_null(strstr(all, "pa55word"), "%s", all);
    cr_assert_null(strstr(all, "hunter2"), "%s", all);
    cr_assert_null(strstr(all, "abc.def"), "%s", all);
    cr_assert_null(strstr(all, "tok123"), "%s", all);
    cr_assert(strstr(all, "postgresql://mlops:***@127.0.0.1:5433/mlops"), "%s", all);
    cr_assert(strstr(all, "password=*** dbname=x"), "%s", all);
}

Test(log, redaction_keeps_innocent_text)
{
    char out[256];
    log_redact("http://127.0.0.1:8080/api and passwords: none", out, sizeof(out));
    cr_assert_str_eq(out, "http://127.0.0.1:8080/api and passwords: none");
}

Test(log, huge_message_is_cut_and_marked)
{
    size_t n = 100000;
    char *big = xmalloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    log_info("%s", big);
    free(big);
    json_t *j = last_line();
    cr_assert(json_is_true(json_object_get(j, "truncated")));
    cr_assert_lt(strlen(json_string_value(json_object_get(j, "msg"))), n);
    json_decref(j);
}

static void *spam(void *arg)
{
    for (int i = 0; i < 500; i++)
        log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_INT("thread", (long)(intptr_t)arg), LOG_INT("i", i)),
                 "line from a thread");
    return NULL;
}

Test(log, threads_never_interleave_lines)
{
    pthread_t t[4];
    for (intptr_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, spam, (void *)i);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    json_t *j = last_line(); /* parses every line; fails on any interleaving */
    json_decref(j);
    size_t lines = 0;
    for (const char *p = test_logs(); *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 2000);
}
