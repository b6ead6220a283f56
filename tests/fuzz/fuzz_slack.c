/*
 * Fuzz target: the monitor's Slack formatter. The input is what the
 * notifier reads from `alerts`: one alert/1 object, or an array of them for
 * a digest. Records the notifier would dead-letter (not an object, schema
 * other than alert/1, state not firing/resolved) are dropped as it drops
 * them; the rest go to slack_render() with the default budget and with a
 * small one. The input as text also goes through the webhook URL checks and
 * the Retry-After parser.
 *
 * Checked beyond "no crash, no leak, no UB": the message is valid JSON
 * within Slack's limits (at most 50 blocks, a header of at most 150 bytes of
 * valid UTF-8, sections of at most 3,000, all sections within the budget),
 * every alert is shown or counted, and a redacted URL keeps no path.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "mjson.h"
#include "slack.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_LVL_FATAL);
    return 0;
}

static bool notifiable(const json_t *a)
{
    const char *schema = json_string_value(json_object_get(a, "schema"));
    const char *state = json_string_value(json_object_get(a, "state"));
    return json_is_object(a) && schema && !strcmp(schema, "alert/1") && state &&
           (!strcmp(state, "firing") || !strcmp(state, "resolved"));
}

static void render(json_t *const *alerts, size_t n, size_t budget)
{
    size_t shown = 0;
    char *out = slack_render(alerts, n, budget, &shown);
    FUZZ_CHECK(out, "slack_render gave no message for %zu alerts", n);
    FUZZ_CHECK(shown <= n, "shown %zu of %zu", shown, n);
    json_error_t je;
    json_t *msg = json_loads(out, JSON_REJECT_DUPLICATES, &je);
    FUZZ_CHECK(json_is_object(msg), "not JSON: %s", je.text);
    json_t *blocks = json_object_get(msg, "blocks");
    size_t nb = json_array_size(blocks);
    FUZZ_CHECK(nb >= 1 && nb <= SLACK_MAX_BLOCKS, "%zu blocks", nb);
    size_t sections = 0, section_bytes = 0;
    bool context = false;
    size_t i;
    json_t *b;
    json_array_foreach(blocks, i, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        FUZZ_CHECK(type, "block %zu has no type", i);
        const char *text = json_string_value(json_object_get(json_object_get(b, "text"), "text"));
        if (!strcmp(type, "header")) {
            FUZZ_CHECK(i == 0 && text && strlen(text) <= SLACK_HEADER_MAX, "header %zu: %s", i,
                       text ? text : "(none)");
        } else if (!strcmp(type, "section")) {
            FUZZ_CHECK(text && strlen(text) <= SLACK_SECTION_MAX, "section of %zu bytes",
                       text ? strlen(text) : 0);
            sections++;
            section_bytes += strlen(text);
        } else {
            FUZZ_CHECK(!strcmp(type, "context") && i == nb - 1, "block %zu: %s", i, type);
            context = true;
        }
    }
    FUZZ_CHECK(sections == shown, "%zu sections, %zu shown", sections, shown);
    FUZZ_CHECK(context == (shown < n), "context block %d with %zu of %zu shown", context, shown, n);
    FUZZ_CHECK(section_bytes <= budget, "sections of %zu bytes over a budget of %zu", section_bytes,
               budget);
    json_decref(msg);
    free(out);
}

static void text_checks(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return;
    char *s = xstrndup((const char *)data, size);
    char out[512], why[256];
    slack_url_redact(s, out, sizeof(out));
    const char *host = strstr(out, "://");
    if (host) {
        const char *slash = strchr(host + 3, '/');
        FUZZ_CHECK(!slash || !strcmp(slash, "/…"), "redacted URL keeps a path: %s", out);
    }
    (void)slack_url_allowed(s, why, sizeof(why));
    FUZZ_CHECK(slack_retry_after_ms(s, 1764064800) >= -1, "Retry-After below -1");
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    text_checks(data, size);
    err_t *e = NULL;
    json_t *doc = mjson_parse((const char *)data, size, 1024 * 1024, &e);
    err_destroy(e);
    if (!doc)
        return 0;
    size_t n = json_is_array(doc) ? json_array_size(doc) : 1;
    json_t **alerts = xcalloc(n ? n : 1, sizeof(*alerts));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_is_array(doc) ? json_array_get(doc, i) : doc;
        if (notifiable(a))
            alerts[k++] = a;
    }
    if (k) {
        render(alerts, k, SLACK_BUDGET_DEFAULT);
        render(alerts, k, 600);
    }
    free(alerts);
    json_decref(doc);
    return 0;
}
