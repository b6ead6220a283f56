/* Alert rules, the pending/firing/resolved state machine (table-driven),
 * restart from a dump, silences and inhibition. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "alerts.h"

#define MIN 60000

typedef struct rec {
    json_t *got[64];
    int n;
} rec_t;

static void collect(const json_t *a, void *opaque)
{
    rec_t *r = opaque;
    cr_assert_lt(r->n, 64);
    r->got[r->n++] = json_deep_copy(a);
}

static void rec_clear(rec_t *r)
{
    for (int i = 0; i < r->n; i++)
        json_decref(r->got[i]);
    r->n = 0;
}

static const char *st(const json_t *a) { return json_string_value(json_object_get(a, "state")); }

static alert_rules_t *rules(const char *text)
{
    char err[256];
    alert_rules_t *r = alert_rules_parse(text, strlen(text), "t.json", err, sizeof(err));
    cr_assert(r, "%s", err);
    return r;
}

/* One step: at time t (minutes) the value v gives these emitted states. */
typedef struct step {
    double t, v;
    const char *expect; /* "" = nothing, else space-separated states */
} step_t;

static void run_steps(const char *rule_text, const step_t *steps, size_t n)
{
    alert_rules_t *r = rules(rule_text);
    rec_t rec = {0};
    alert_engine_t *e = alert_engine_new(r, collect, &rec);
    json_t *labels = json_pack("{s:s,s:s}", "model", "churn", "feature", "age");
    for (size_t i = 0; i < n; i++) {
        alert_engine_observe(e, "m", labels, steps[i].v, (int64_t)(steps[i].t * MIN));
        char got[128] = "";
        for (int k = 0; k < rec.n; k++) {
            if (k)
                strcat(got, " ");
            strcat(got, st(rec.got[k]));
        }
        cr_assert_str_eq(got, steps[i].expect, "step %zu (t=%g min, v=%g): got \"%s\"", i,
                         steps[i].t, steps[i].v, got);
        rec_clear(&rec);
    }
    json_decref(labels);
    alert_engine_destroy(e);
    alert_rules_destroy(r);
}

Test(alerts, for_zero_fires_at_once_and_resolves)
{
    step_t s[] = {{0, 0.2, ""},       {1, 0.6, "firing"},    {2, 0.7, ""},
                  {3, 0.5, ""},       {4, 0.49, "resolved"}, {5, 0.1, ""},
                  {6, 0.9, "firing"}, {7, NAN, "resolved"},  {8, NAN, ""}};
    run_steps("{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"op\":\">=\",\"threshold\":0.5}]}", s,
              sizeof(s) / sizeof(s[0]));
}

Test(alerts, for_duration_goes_through_pending)
{
    step_t s[] = {{0, 0.6, "pending"},  {4, 0.6, ""},       {4.9, 0.8, ""},
                  {5, 0.6, "firing"},   {6, 0.6, ""},       {7, 0.3, "resolved"},
                  {8, 0.6, "pending"},  {9, 0.3, ""},       {10, 0.3, ""},
                  {11, 0.6, "pending"}, {16, 0.6, "firing"}};
    run_steps("{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"op\":\">\",\"threshold\":0.5,"
              "\"for\":\"5m\"}]}",
              s, sizeof(s) / sizeof(s[0]));
}

Test(alerts, less_than_rules)
{
    step_t s[] = {{0, 0.9, ""}, {1, 0.7, "firing"}, {2, 0.75, "resolved"}};
    run_steps(
        "{\"rules\":[{\"alert\":\"auc_low\",\"metric\":\"m\",\"op\":\"<\",\"threshold\":0.75}]}", s,
        sizeof(s) / sizeof(s[0]));
}

Test(alerts, series_are_per_label_set_and_fingerprints_ignore_order)
{
    alert_rules_t *r = rules("{\"rules\":[{\"alert\":\"fd\",\"metric\":\"drift\",\"threshold\":1,"
                             "\"labels\":{\"team\":\"ml\"},\"annotations\":{\"summary\":"
                             "\"{{model}}/{{feature}} {{alertname}} {{value}} {{op}} "
                             "{{threshold}} {{nope}}.\"}}]}");
    rec_t rec = {0};
    alert_engine_t *e = alert_engine_new(r, collect, &rec);
    json_t *a = json_pack("{s:s,s:s}", "model", "churn", "feature", "age");
    json_t *b = json_pack("{s:s,s:s}", "feature", "income", "model", "churn");
    alert_engine_observe(e, "drift", a, 1, 0);
    alert_engine_observe(e, "other_metric", b, 1, 0);
    cr_assert_eq(rec.n, 1);
    alert_engine_observe(e, "drift", b, 1, 0);
    cr_assert_eq(rec.n, 2);
    const char *fa = json_string_value(json_object_get(rec.got[0], "fingerprint"));
    const char *fb = json_string_value(json_object_get(rec.got[1], "fingerprint"));
    cr_assert_str_neq(fa, fb);
    cr_assert_eq(alert_engine_active(e), 2);
    /* the same labels in another order are the same series */
    json_t *a2 = json_pack("{s:s,s:s}", "feature", "age", "model", "churn");
    alert_engine_observe(e, "drift", a2, 0, MIN);
    cr_assert_eq(rec.n, 3);
    cr_assert_str_eq(st(rec.got[2]), "resolved");
    cr_assert_str_eq(json_string_value(json_object_get(rec.got[2], "fingerprint")), fa);
    cr_assert_eq(alert_engine_state(e, fb), ALERT_FIRING);
    cr_assert_eq(alert_engine_state(e, fa), ALERT_INACTIVE);
    /* the record: rule labels merged, model lifted, annotations rendered */
    json_t *x = rec.got[0];
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(x, "labels"), "team")),
                     "ml");
    cr_assert_str_eq(json_string_value(json_object_get(x, "model")), "churn");
    cr_assert_str_eq(json_string_value(json_object_get(x, "comparison")), ">=");
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(x, "annotations"), "summary")),
        "churn/age fd 1 >= 1 .");
    cr_assert(json_object_get(rec.got[2], "ends_at"));
    cr_assert_null(json_object_get(rec.got[0], "ends_at"));
    json_decref(a);
    json_decref(a2);
    json_decref(b);
    rec_clear(&rec);
    alert_engine_destroy(e);
    alert_rules_destroy(r);
}

Test(alerts, a_restored_engine_continues_without_refiring)
{
    alert_rules_t *r = rules("{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"threshold\":1,"
                             "\"for\":\"2m\"},{\"alert\":\"b\",\"metric\":\"m\",\"threshold\":5,"
                             "\"for\":\"10m\"}]}");
    rec_t rec = {0};
    alert_engine_t *e = alert_engine_new(r, collect, &rec);
    json_t *l = json_pack("{s:s}", "model", "m1");
    alert_engine_observe(e, "m", l, 7, 0);       /* a pending, b pending */
    alert_engine_observe(e, "m", l, 7, 3 * MIN); /* a firing */
    cr_assert_eq(rec.n, 3);
    rec_clear(&rec);
    json_t *dump = alert_engine_dump(e);
    char *text = json_dumps(dump, 0);
    alert_engine_destroy(e);

    alert_engine_t *e2 = alert_engine_new(r, collect, &rec);
    char err[128];
    json_t *back = json_loads(text, 0, NULL);
    cr_assert_eq(alert_engine_restore(e2, back, err, sizeof(err)), 0, "%s", err);
    alert_engine_observe(e2, "m", l, 7, 4 * MIN);
    cr_assert_eq(rec.n, 0, "a restored firing alert fired again");
    alert_engine_observe(e2, "m", l, 7, 10 * MIN); /* b held 10 min since t=0 */
    cr_assert_eq(rec.n, 1);
    cr_assert_str_eq(st(rec.got[0]), "firing");
    cr_assert_str_eq(json_string_value(json_object_get(rec.got[0], "alertname")), "b");
    alert_engine_observe(e2, "m", l, 0, 11 * MIN);
    cr_assert_eq(rec.n, 3);
    cr_assert_str_eq(st(rec.got[1]), "resolved");
    cr_assert_str_eq(st(rec.got[2]), "resolved");
    cr_assert_eq(alert_engine_restore(e2, json_object_get(back, "nope"), err, sizeof(err)), -1);
    rec_clear(&rec);
    json_decref(back);
    json_decref(dump);
    json_decref(l);
    free(text);
    alert_engine_destroy(e2);
    alert_rules_destroy(r);
}

Test(alerts, bad_rule_files_name_the_place)
{
    struct {
        const char *text, *want;
    } bad[] = {
        {"[]", "t.json: "},
        {"{\"rules\":{}}", "t.json: rules: expected an array"},
        {"{\"rules\":[],\"x\":1}", "unknown key \"x\""},
        {"{\"rules\":[{\"metric\":\"m\",\"threshold\":1}]}", "rules[0].alert"},
        {"{\"rules\":[{\"alert\":\"a b\",\"metric\":\"m\",\"threshold\":1}]}", "rules[0].alert"},
        {"{\"rules\":[{\"alert\":\"a\",\"threshold\":1}]}", "rules[0].metric"},
        {"{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"op\":\"=>\",\"threshold\":1}]}",
         "rules[0].op: \"=>\""},
        {"{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"threshold\":\"1\"}]}",
         "rules[0].threshold"},
        {"{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"threshold\":1,\"for\":\"5 min\"}]}",
         "rules[0].for"},
        {"{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"threshold\":1,\"for\":-3}]}",
         "rules[0].for"},
        {"{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"threshold\":1,\"severity\":\"page\"}]}",
         "rules[0].severity"},
        {"{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"threshold\":1,\"labels\":{\"x\":1}}]}",
         "rules[0].labels"},
        {"{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"threshold\":1,\"typo\":1}]}",
         "rules[0]: unknown key \"typo\""},
        {"{\"rules\":[],\"inhibit\":[{\"source\":{},\"target\":7}]}", "inhibit[0]"},
        {"{\"rules\":[{\"alert\":\"a\",\"metric\":\"m\",\"threshold\":1},{\"alert\":\"b\"}]}",
         "rules[1].metric"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        alert_rules_t *r =
            alert_rules_parse(bad[i].text, strlen(bad[i].text), "t.json", err, sizeof(err));
        cr_assert_null(r, "case %zu parsed", i);
        cr_assert(strstr(err, bad[i].want), "case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].want);
    }
}

Test(alerts, defaults_parse_and_durations)
{
    alert_rules_t *r = alert_rules_default();
    cr_assert_eq(r->nrules, 7);
    cr_assert_eq(r->ninhibit, 1);
    alert_rules_destroy(r);
    cr_assert_eq(alert_duration_ms("250ms"), 250);
    cr_assert_eq(alert_duration_ms("30s"), 30000);
    cr_assert_eq(alert_duration_ms("1.5m"), 90000);
    cr_assert_eq(alert_duration_ms("2h"), 7200000);
    cr_assert_eq(alert_duration_ms("1d"), 86400000);
    cr_assert_eq(alert_duration_ms("42"), 42);
    cr_assert_eq(alert_duration_ms("5 m"), -1);
    cr_assert_eq(alert_duration_ms("-1s"), -1);
    cr_assert_eq(alert_duration_ms("m"), -1);
    cr_assert_eq(alert_duration_ms(""), -1);
}

static alert_silence_t *silence(const char *matchers, const char *from, const char *to)
{
    char text[1024], err[256];
    snprintf(text, sizeof(text),
             "{\"id\":\"s1\",\"matchers\":%s,\"startsAt\":\"%s\",\"endsAt\":\"%s\","
             "\"createdBy\":\"t\",\"comment\":\"c\"}",
             matchers, from, to);
    json_t *j = json_loads(text, 0, NULL);
    cr_assert(j, "%s", text);
    alert_silence_t *s = alert_silence_parse(j, err, sizeof(err));
    json_decref(j);
    cr_assert(s, "%s", err);
    return s;
}

Test(alerts, silences_match_labels_regexes_and_time)
{
    /* 2026-12-02T10:00Z .. 11:00Z */
    const int64_t t10 = 1796205600000LL;
    alert_silence_t *s =
        silence("[{\"name\":\"model\",\"value\":\"churn\"},{\"name\":\"alertname\",\"value\":"
                "\"feature_.*\","
                "\"isRegex\":true},{\"name\":\"feature\",\"value\":\"age\",\"isEqual\":false}]",
                "2026-12-02T10:00:00Z", "2026-12-02T11:00:00Z");
    json_t *l = json_pack("{s:s,s:s,s:s}", "model", "churn", "alertname", "feature_drift",
                          "feature", "income");
    cr_assert(alert_silence_mutes(s, l, t10 + 1000));
    cr_assert_not(alert_silence_mutes(s, l, t10 - 1), "before startsAt");
    cr_assert_not(alert_silence_mutes(s, l, t10 + 3600000), "at endsAt");
    json_object_set_new(l, "feature", json_string("age"));
    cr_assert_not(alert_silence_mutes(s, l, t10 + 1000), "isEqual false");
    json_object_del(l, "feature"); /* absent = "" != "age" */
    cr_assert(alert_silence_mutes(s, l, t10 + 1000));
    json_object_set_new(l, "alertname", json_string("dataset_drift"));
    cr_assert_not(alert_silence_mutes(s, l, t10 + 1000));
    json_object_set_new(l, "alertname", json_string("xfeature_drift"));
    cr_assert_not(alert_silence_mutes(s, l, t10 + 1000), "regexes are anchored");
    json_decref(l);
    cr_assert_eq(alert_silence_ends_ms(s), t10 + 3600000);
    cr_assert_str_eq(alert_silence_id(s), "s1");
    alert_silence_destroy(s);

    const char *bad[] = {
        "{\"matchers\":[],\"startsAt\":\"2026-12-02T10:00:00Z\",\"endsAt\":\"2026-12-02T11:00:"
        "00Z\"}",
        "{\"matchers\":[{\"name\":\"a\",\"value\":\"(\",\"isRegex\":true}],\"startsAt\":"
        "\"2026-12-02T10:00:00Z\",\"endsAt\":\"2026-12-02T11:00:00Z\"}",
        "{\"matchers\":[{\"name\":\"a\",\"value\":\"b\"}],\"startsAt\":\"2026-12-02T11:00:00Z\","
        "\"endsAt\":\"2026-12-02T10:00:00Z\"}",
        "{\"matchers\":[{\"name\":\"a\",\"value\":\"b\"}],\"startsAt\":\"tomorrow\",\"endsAt\":"
        "\"2026-12-02T10:00:00Z\"}",
        "{\"matchers\":[{\"name\":\"a\"}],\"startsAt\":\"2026-12-02T10:00:00Z\",\"endsAt\":"
        "\"2026-12-02T11:00:00Z\"}",
        "{\"matchers\":[{\"name\":\"a\",\"value\":\"b\",\"isRegex\":\"yes\"}],\"startsAt\":"
        "\"2026-12-02T10:00:00Z\",\"endsAt\":\"2026-12-02T11:00:00Z\"}",
        "[]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        json_t *j = json_loads(bad[i], 0, NULL);
        cr_assert(j);
        cr_assert_null(alert_silence_parse(j, err, sizeof(err)), "bad %zu parsed", i);
        cr_assert_gt(strlen(err), 5);
        json_decref(j);
    }
}

Test(alerts, dataset_drift_inhibits_feature_drift_of_the_same_model_only)
{
    alert_rules_t *r = alert_rules_default();
    json_t *ds = json_pack("{s:s,s:s}", "alertname", "dataset_drift", "model", "churn");
    json_t *f_same = json_pack("{s:s,s:s,s:s}", "alertname", "feature_drift", "model", "churn",
                               "feature", "age");
    json_t *f_other = json_pack("{s:s,s:s,s:s}", "alertname", "feature_drift", "model", "fraud",
                                "feature", "age");
    json_t *p_same = json_pack("{s:s,s:s}", "alertname", "prediction_drift", "model", "churn");
    json_t *firing[] = {ds};
    cr_assert(alert_inhibited(r, f_same, firing, 1));
    cr_assert_not(alert_inhibited(r, f_other, firing, 1));
    cr_assert_not(alert_inhibited(r, p_same, firing, 1));
    cr_assert_not(alert_inhibited(r, ds, firing, 1), "an alert inhibited itself");
    cr_assert_not(alert_inhibited(r, f_same, NULL, 0));
    /* alert_match_labels lifts alertname, severity and model from a record */
    json_t *rec = json_pack("{s:s,s:s,s:s,s:{s:s}}", "alertname", "feature_drift", "severity",
                            "warning", "model", "churn", "labels", "feature", "age");
    json_t *ml = alert_match_labels(rec);
    cr_assert(alert_inhibited(r, ml, firing, 1));
    cr_assert_str_eq(json_string_value(json_object_get(ml, "severity")), "warning");
    json_decref(ml);
    json_decref(rec);
    json_decref(ds);
    json_decref(f_same);
    json_decref(f_other);
    json_decref(p_same);
    alert_rules_destroy(r);
}
