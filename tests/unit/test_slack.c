/* The notifier's pure parts: token bucket, backoff, Retry-After, outcome
 * classes, the webhook URL policy and redaction, and digests within
 * Slack's limits. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>
#include <time.h>

#include "slack.h"

Test(slack, bucket_allows_a_burst_then_one_per_interval)
{
    slack_bucket_t b;
    slack_bucket_init(&b, 1.0, 2.0, 10000);
    cr_assert_eq(slack_bucket_wait_ms(&b, 10000), 0);
    slack_bucket_take(&b, 10000);
    cr_assert_eq(slack_bucket_wait_ms(&b, 10000), 0);
    slack_bucket_take(&b, 10000);
    cr_assert_eq(slack_bucket_wait_ms(&b, 10000), 1000);
    cr_assert_eq(slack_bucket_wait_ms(&b, 10400), 600);
    cr_assert_eq(slack_bucket_wait_ms(&b, 11000), 0);
    slack_bucket_take(&b, 11000);
    cr_assert_eq(slack_bucket_wait_ms(&b, 11000), 1000);
    /* a long quiet period refills to the burst, not beyond */
    cr_assert_eq(slack_bucket_wait_ms(&b, 100000), 0);
    slack_bucket_take(&b, 100000);
    slack_bucket_take(&b, 100000);
    cr_assert_gt(slack_bucket_wait_ms(&b, 100000), 0);
    /* sustained: 10 takes as soon as allowed span 9 s after the burst of 2 */
    slack_bucket_init(&b, 1.0, 2.0, 0);
    int64_t t = 0;
    for (int i = 0; i < 12; i++) {
        t += slack_bucket_wait_ms(&b, t);
        slack_bucket_take(&b, t);
    }
    cr_assert_eq(t, 10000, "12 messages with a burst of 2 at 1/s end at %lld ms", (long long)t);
}

Test(slack, backoff_doubles_is_capped_and_jittered_within_half_to_full)
{
    uint64_t rng = 42;
    for (int attempt = 0; attempt < 30; attempt++) {
        int64_t nominal = 1000;
        for (int i = 0; i < attempt && nominal < 60000; i++)
            nominal *= 2;
        if (nominal > 60000)
            nominal = 60000;
        int64_t lo = INT64_MAX, hi = 0;
        for (int k = 0; k < 200; k++) {
            int64_t d = slack_backoff_ms(attempt, 1000, 60000, &rng);
            cr_assert_geq(d, nominal / 2, "attempt %d: %lld", attempt, (long long)d);
            cr_assert_leq(d, nominal, "attempt %d: %lld", attempt, (long long)d);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        cr_assert_gt(hi - lo, nominal / 10, "attempt %d: no jitter", attempt);
    }
}

Test(slack, retry_after_takes_seconds_and_http_dates)
{
    cr_assert_eq(slack_retry_after_ms("2", 0), 2000);
    cr_assert_eq(slack_retry_after_ms(" 120 \r\n", 0), 120000);
    cr_assert_eq(slack_retry_after_ms("0", 0), 0);
    cr_assert_eq(slack_retry_after_ms("", 0), -1);
    cr_assert_eq(slack_retry_after_ms(NULL, 0), -1);
    cr_assert_eq(slack_retry_after_ms("soon", 0), -1);
    cr_assert_eq(slack_retry_after_ms("-5", 0), -1);
    cr_assert_eq(slack_retry_after_ms("1.5", 0), -1);
    cr_assert_eq(slack_retry_after_ms("99999999999", 0), -1);
    struct tm tm = {
        .tm_year = 94, .tm_mon = 10, .tm_mday = 6, .tm_hour = 8, .tm_min = 49, .tm_sec = 37};
    int64_t at = (int64_t)timegm(&tm);
    cr_assert_eq(slack_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", at - 10), 10000);
    cr_assert_eq(slack_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", at + 10), 0);
    cr_assert_eq(slack_retry_after_ms("Sun, 06 Nov 1994 08:49:37 PST", at - 10), -1);
}

Test(slack, statuses_fall_into_three_classes)
{
    long ok[] = {200, 201, 204};
    long retry[] = {0, 408, 429, 500, 502, 503, 504};
    long perm[] = {400, 401, 403, 404, 405, 410, 413, 302};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(slack_classify(ok[i]), SLACK_DELIVERED, "%ld", ok[i]);
    for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
        cr_assert_eq(slack_classify(retry[i]), SLACK_RETRY, "%ld", retry[i]);
    for (size_t i = 0; i < sizeof(perm) / sizeof(perm[0]); i++)
        cr_assert_eq(slack_classify(perm[i]), SLACK_PERMANENT, "%ld", perm[i]);
}

Test(slack, plain_http_only_to_loopback_and_reasons_never_show_the_path)
{
    const char *allowed[] = {"https://hooks.slack.com/services/T0/B0/secretpath",
                             "HTTPS://example.com/secretpath",
                             "http://127.0.0.1:8080/secretpath",
                             "http://127.9.9.9/secretpath",
                             "http://localhost/secretpath",
                             "http://[::1]:9999/secretpath",
                             "http://user@127.0.0.1/secretpath"};
    const char *refused[] = {"http://10.0.0.1/secretpath",
                             "http://hooks.slack.com/secretpath",
                             "http://127.0.0.1.evil.example/secretpath",
                             "http://evil@example.com/secretpath",
                             "ftp://127.0.0.1/secretpath",
                             "file:///etc/secretpath",
                             "secretpath",
                             "http://[::1/secretpath",
                             ""};
    char why[256];
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        cr_assert(slack_url_allowed(allowed[i], why, sizeof(why)), "%s: %s", allowed[i], why);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        why[0] = 0;
        cr_assert_not(slack_url_allowed(refused[i], why, sizeof(why)), "%s", refused[i]);
        cr_assert_gt(strlen(why), 0);
        cr_assert_null(strstr(why, "secretpath"), "reason leaks the path: %s", why);
    }
}

Test(slack, redaction_keeps_scheme_and_host_only)
{
    char out[128];
    slack_url_redact("https://hooks.slack.com/services/T000/B000/XXXXSECRET", out, sizeof(out));
    cr_assert_str_eq(out, "https://hooks.slack.com/…");
    slack_url_redact("http://127.0.0.1:8443/hook/SECRET?x=1", out, sizeof(out));
    cr_assert_str_eq(out, "http://127.0.0.1/…");
    slack_url_redact("nonsense SECRET", out, sizeof(out));
    cr_assert_null(strstr(out, "SECRET"));
    /* found by tests/fuzz: a '[' host took everything up to a ']' in the path */
    slack_url_redact("https://[x/secret]/hook", out, sizeof(out));
    cr_assert_null(strstr(out, "secret"), "%s", out);
    slack_url_redact("https://[::1]:8443/hook/SECRET", out, sizeof(out));
    cr_assert_str_eq(out, "https://::1/…");
}

static json_t *alert(int i, const char *state, const char *summary)
{
    char fp[32], feat[32];
    snprintf(fp, sizeof(fp), "fp%04d", i);
    snprintf(feat, sizeof(feat), "feature_%d", i);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:s,s:s,s:s,s:{s:s},s:{s:s,s:s}}", "schema",
                     "alert/1", "fingerprint", fp, "state", state, "alertname", "feature_drift",
                     "severity", "warning", "metric", "drift_wasserstein", "value", 0.25 + i,
                     "threshold", 0.1, "comparison", ">=", "window", "1000 events", "model",
                     "churn", "labels", "feature", feat, "annotations", "summary", summary,
                     "runbook_url", "https://runbooks.example/drift");
}

static size_t blocks_chars(json_t *blocks)
{
    size_t n = 0, i;
    json_t *b;
    json_array_foreach(blocks, i, b)
    {
        json_t *t = json_object_get(b, "text");
        if (t)
            n += strlen(json_string_value(json_object_get(t, "text")));
        json_t *els = json_object_get(b, "elements");
        size_t k;
        json_t *e;
        json_array_foreach(els, k, e) n += strlen(json_string_value(json_object_get(e, "text")));
    }
    return n;
}

Test(slack, one_alert_renders_escaped_with_its_numbers_and_runbook)
{
    json_t *a = alert(1, "firing", "age drifted <script>&");
    size_t shown = 0;
    char *s = slack_render(&a, 1, SLACK_BUDGET_DEFAULT, &shown);
    json_error_t je;
    json_t *msg = json_loads(s, 0, &je);
    cr_assert(msg, "not JSON: %s", je.text);
    cr_assert_eq(shown, 1);
    json_t *blocks = json_object_get(msg, "blocks");
    cr_assert_eq(json_array_size(blocks), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(blocks, 0), "type")),
                     "header");
    const char *text = json_string_value(
        json_object_get(json_object_get(json_array_get(blocks, 1), "text"), "text"));
    cr_assert(strstr(text, "*FIRING*"), "%s", text);
    cr_assert(strstr(text, "feature_drift"), "%s", text);
    cr_assert(strstr(text, "feature=`feature_1`"), "%s", text);
    cr_assert(strstr(text, "drift_wasserstein = 1.25"), "%s", text);
    cr_assert(strstr(text, "threshold &gt;= 0.1"), "%s", text);
    cr_assert(strstr(text, "&lt;script&gt;&amp;"), "%s", text);
    cr_assert_null(strstr(text, "<script>"), "%s", text);
    cr_assert(strstr(text, "<https://runbooks.example/drift|runbook>"), "%s", text);
    cr_assert(strstr(json_string_value(json_object_get(msg, "text")), "1 alert: 1 firing"));
    json_decref(msg);
    free(s);
    json_decref(a);
}

Test(slack, a_big_burst_becomes_one_message_within_limits_that_counts_every_alert)
{
    enum { N = 200 };
    json_t *as[N];
    for (int i = 0; i < N; i++)
        as[i] = alert(i, i % 3 ? "firing" : "resolved", "drift on a feature");
    size_t shown = 0;
    char *s = slack_render(as, N, SLACK_BUDGET_DEFAULT, &shown);
    json_t *msg = json_loads(s, 0, NULL);
    cr_assert(msg);
    json_t *blocks = json_object_get(msg, "blocks");
    cr_assert_leq(json_array_size(blocks), SLACK_MAX_BLOCKS);
    cr_assert_gt(shown, 5);
    cr_assert_lt(shown, N);
    cr_assert_eq(json_array_size(blocks), shown + 2, "header + sections + the count");
    cr_assert_leq(blocks_chars(blocks), SLACK_BUDGET_DEFAULT);
    json_t *last = json_array_get(blocks, json_array_size(blocks) - 1);
    cr_assert_str_eq(json_string_value(json_object_get(last, "type")), "context");
    char want[96];
    snprintf(want, sizeof(want), "and %zu more alerts not shown (%d in this digest)", N - shown, N);
    const char *more = json_string_value(
        json_object_get(json_array_get(json_object_get(last, "elements"), 0), "text"));
    cr_assert(strstr(more, want), "%s", more);
    const char *head = json_string_value(
        json_object_get(json_object_get(json_array_get(blocks, 0), "text"), "text"));
    cr_assert(strstr(head, "200 alerts: 133 firing, 67 resolved"), "%s", head);
    cr_assert_leq(strlen(head), SLACK_HEADER_MAX);
    json_decref(msg);
    free(s);
    for (int i = 0; i < N; i++)
        json_decref(as[i]);
}

Test(slack, an_oversized_summary_is_cut_and_marked)
{
    char *big = malloc(20001);
    for (int i = 0; i < 20000; i++)
        big[i] = i % 50 == 49 ? ' ' : (i % 7 == 0 ? '<' : 'x');
    big[20000] = 0;
    json_t *a = alert(7, "firing", big);
    char *s = slack_render(&a, 1, 40000, NULL);
    json_t *msg = json_loads(s, 0, NULL);
    cr_assert(msg);
    const char *text = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(msg, "blocks"), 1), "text"), "text"));
    cr_assert_leq(strlen(text), SLACK_SECTION_MAX);
    cr_assert(strstr(text, "(truncated)"));
    /* no escape sequence cut in half */
    const char *amp = strrchr(text, '&');
    cr_assert(amp && !strncmp(amp, "&lt;", 4));
    json_decref(msg);
    free(s);
    json_decref(a);
    free(big);
}

Test(slack, digests_put_critical_and_firing_first)
{
    json_t *as[4] = {alert(1, "resolved", "a"), alert(2, "firing", "b"), alert(3, "firing", "c"),
                     alert(4, "firing", "d")};
    json_object_set_new(as[3], "severity", json_string("critical"));
    json_object_set_new(as[3], "alertname", json_string("dataset_drift"));
    char *s = slack_render(as, 4, SLACK_BUDGET_DEFAULT, NULL);
    json_t *msg = json_loads(s, 0, NULL);
    json_t *blocks = json_object_get(msg, "blocks");
    const char *want[] = {"dataset_drift", "feature_2", "feature_3", "feature_1"};
    for (size_t i = 0; i < 4; i++) {
        const char *t = json_string_value(
            json_object_get(json_object_get(json_array_get(blocks, i + 1), "text"), "text"));
        cr_assert(strstr(t, want[i]), "section %zu: %s", i, t);
    }
    json_decref(msg);
    free(s);
    for (int i = 0; i < 4; i++)
        json_decref(as[i]);
}

/* Found by the fuzzer: a model name of multi-byte characters pushed the
 * header past 150 bytes and the cut fell inside a character, so the header
 * was not UTF-8, jansson refused it and no message was made at all. */
Test(slack, a_long_header_is_cut_between_characters)
{
    char model[301] = "";
    for (int i = 0; i < 100; i++)
        strcat(model, "\xc3\xa9"); /* é, 2 bytes */
    json_t *a = alert(1, "firing", "s");
    json_object_set_new(a, "model", json_string(model));
    size_t shown = 0;
    char *s = slack_render(&a, 1, SLACK_BUDGET_DEFAULT, &shown);
    cr_assert(s, "no message");
    json_t *msg = json_loads(s, 0, NULL);
    cr_assert(msg);
    const char *head = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(msg, "blocks"), 0), "text"), "text"));
    cr_assert(head);
    cr_assert_leq(strlen(head), SLACK_HEADER_MAX);
    cr_assert_geq(strlen(head), SLACK_HEADER_MAX - 1, "cut at most one byte early: %zu",
                  strlen(head));
    cr_assert(strstr(head, "1 alert: 1 firing (model \xc3\xa9"), "%s", head);
    cr_assert_eq(shown, 1);
    json_decref(msg);
    free(s);
    json_decref(a);
}
