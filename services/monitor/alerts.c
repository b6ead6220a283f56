/* Alerting rules, the pending/firing/resolved state machine, silences and
 * inhibition (see alerts.h). */
#include "alerts.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "mjson.h"
#include "spec.h"
#include "util.h"

static const char DEFAULT_RULES[] =
    "{\"rules\": [\n"
    " {\"alert\": \"dataset_drift\", \"metric\": \"dataset_drift_share\", \"op\": \">=\",\n"
    "  \"threshold\": 0.5, \"for\": \"0s\", \"severity\": \"critical\",\n"
    "  \"annotations\": {\"summary\": \"{{model}}: {{value}} of the features drifted (threshold "
    "{{threshold}})\",\n"
    "                  \"runbook_url\": \"README.md#drift-alerts\"}},\n"
    " {\"alert\": \"feature_drift\", \"metric\": \"feature_drifted\", \"op\": \">=\",\n"
    "  \"threshold\": 1, \"for\": \"0s\", \"severity\": \"warning\",\n"
    "  \"annotations\": {\"summary\": \"{{model}}: feature {{feature}} drifted ({{test}})\"}},\n"
    " {\"alert\": \"prediction_drift\", \"metric\": \"prediction_drifted\", \"op\": \">=\",\n"
    "  \"threshold\": 1, \"for\": \"0s\", \"severity\": \"warning\",\n"
    "  \"annotations\": {\"summary\": \"{{model}}: the score distribution drifted\"}},\n"
    " {\"alert\": \"performance_drop\", \"metric\": \"auc_drop\", \"op\": \">=\",\n"
    "  \"threshold\": 0.05, \"for\": \"10m\", \"severity\": \"critical\",\n"
    "  \"annotations\": {\"summary\": \"{{model}}: realized AUC is {{value}} below the "
    "reference\"}},\n"
    " {\"alert\": \"dlq_rate\", \"metric\": \"dlq_rate\", \"op\": \">=\",\n"
    "  \"threshold\": 0.05, \"for\": \"5m\", \"severity\": \"warning\",\n"
    "  \"annotations\": {\"summary\": \"{{value}} of the events go to the DLQ\"}},\n"
    " {\"alert\": \"consumer_lag\", \"metric\": \"consumer_lag\", \"op\": \">=\",\n"
    "  \"threshold\": 100000, \"for\": \"5m\", \"severity\": \"warning\",\n"
    "  \"annotations\": {\"summary\": \"{{service}} is {{value}} messages behind\"}},\n"
    " {\"alert\": \"degraded_scoring\", \"metric\": \"degraded_rate\", \"op\": \">=\",\n"
    "  \"threshold\": 0.1, \"for\": \"5m\", \"severity\": \"warning\",\n"
    "  \"annotations\": {\"summary\": \"{{model}}: {{value}} of the predictions were scored "
    "degraded\"}}\n"
    "],\n"
    " \"inhibit\": [{\"source\": {\"alertname\": \"dataset_drift\"},\n"
    "              \"target\": {\"alertname\": \"feature_drift\"}, \"equal\": [\"model\"]}]}\n";

const char *alert_rules_default_text(void) { return DEFAULT_RULES; }

const char *alert_op_name(alert_op_t op)
{
    static const char *const names[] = {">", ">=", "<", "<=", "==", "!="};
    return names[op];
}

bool alert_rule_holds(const alert_rule_t *r, double v)
{
    if (isnan(v))
        return false;
    switch (r->op) {
    case ALERT_OP_GT: return v > r->threshold;
    case ALERT_OP_GE: return v >= r->threshold;
    case ALERT_OP_LT: return v < r->threshold;
    case ALERT_OP_LE: return v <= r->threshold;
    case ALERT_OP_EQ: return v == r->threshold;
    case ALERT_OP_NE: return v != r->threshold;
    }
    return false;
}

int64_t alert_duration_ms(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0)
        return -1;
    double mult;
    if (!*end || !strcmp(end, "ms"))
        mult = 1;
    else if (!strcmp(end, "s"))
        mult = 1000;
    else if (!strcmp(end, "m"))
        mult = 60e3;
    else if (!strcmp(end, "h"))
        mult = 3600e3;
    else if (!strcmp(end, "d"))
        mult = 86400e3;
    else
        return -1;
    double ms = v * mult;
    return ms > 9e15 ? -1 : (int64_t)ms;
}

/* ---- rules ------------------------------------------------------------------------- */

static void rule_free(alert_rule_t *r)
{
    free(r->alert);
    free(r->metric);
    free(r->severity);
    json_decref(r->labels);
    json_decref(r->annotations);
}

void alert_rules_destroy(alert_rules_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nrules; i++)
        rule_free(&r->rules[i]);
    for (size_t i = 0; i < r->ninhibit; i++) {
        json_decref(r->inhibit[i].source);
        json_decref(r->inhibit[i].target);
        for (size_t k = 0; k < r->inhibit[i].nequal; k++)
            free(r->inhibit[i].equal[k]);
        free(r->inhibit[i].equal);
    }
    free(r->rules);
    free(r->inhibit);
    free(r);
}

static bool strings_object(const json_t *o)
{
    const char *k;
    json_t *v;
    if (!json_is_object(o))
        return false;
    json_object_foreach((json_t *)o, k, v) if (!json_is_string(v)) return false;
    return true;
}

static bool name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 128)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    return !isdigit((unsigned char)*s);
}

#define RULE_ERR(...)                                                                              \
    do {                                                                                           \
        snprintf(err, err_size, __VA_ARGS__);                                                      \
        goto fail;                                                                                 \
    } while (0)

alert_rules_t *alert_rules_parse(const char *text, size_t len, const char *source, char *err,
                                 size_t err_size)
{
    err_t *e = NULL;
    json_t *doc = mjson_parse_object(text, len, 16u << 20, &e);
    alert_rules_t *r = xcalloc(1, sizeof(*r));
    if (!doc)
        RULE_ERR("%s: %s", source, e ? e->msg : "not a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v) if (strcmp(k, "rules") && strcmp(k, "inhibit"))
        RULE_ERR("%s: unknown key \"%s\" (rules, inhibit)", source, k);
    json_t *rules = json_object_get(doc, "rules");
    if (!json_is_array(rules))
        RULE_ERR("%s: rules: expected an array of rules", source);
    r->rules = xcalloc(json_array_size(rules) + 1, sizeof(alert_rule_t));
    size_t i;
    json_t *jr;
    json_array_foreach(rules, i, jr)
    {
        if (!json_is_object(jr))
            RULE_ERR("%s: rules[%zu]: expected an object", source, i);
        json_object_foreach(jr, k, v)
        {
            static const char *const known[] = {"alert", "metric",   "op",     "threshold",
                                                "for",   "severity", "labels", "annotations"};
            bool ok = false;
            for (size_t q = 0; q < MLOPS_ARRAY_LEN(known); q++)
                ok = ok || !strcmp(k, known[q]);
            if (!ok)
                RULE_ERR("%s: rules[%zu]: unknown key \"%s\"", source, i, k);
        }
        alert_rule_t *ru = &r->rules[r->nrules++];
        const char *alert = json_string_value(json_object_get(jr, "alert"));
        const char *metric = json_string_value(json_object_get(jr, "metric"));
        const char *op = json_string_value(json_object_get(jr, "op"));
        const char *sev = json_string_value(json_object_get(jr, "severity"));
        json_t *thr = json_object_get(jr, "threshold");
        json_t *forv = json_object_get(jr, "for");
        if (!name_ok(alert))
            RULE_ERR("%s: rules[%zu].alert: expected a name of letters, digits and _", source, i);
        if (!name_ok(metric))
            RULE_ERR("%s: rules[%zu].metric: expected a name of letters, digits and _", source, i);
        ru->alert = xstrdup(alert);
        ru->metric = xstrdup(metric);
        if (!op)
            op = ">=";
        bool found = false;
        for (int q = ALERT_OP_GT; q <= ALERT_OP_NE; q++)
            if (!strcmp(op, alert_op_name((alert_op_t)q))) {
                ru->op = (alert_op_t)q;
                found = true;
            }
        if (!found)
            RULE_ERR("%s: rules[%zu].op: \"%s\" is not one of > >= < <= == !=", source, i, op);
        if (!json_is_number(thr) || !isfinite(json_number_value(thr)))
            RULE_ERR("%s: rules[%zu].threshold: expected a finite number", source, i);
        ru->threshold = json_number_value(thr);
        if (!forv)
            ru->for_ms = 0;
        else if (json_is_string(forv))
            ru->for_ms = alert_duration_ms(json_string_value(forv));
        else if (json_is_integer(forv))
            ru->for_ms = json_integer_value(forv) >= 0 ? json_integer_value(forv) : -1;
        else
            ru->for_ms = -1;
        if (ru->for_ms < 0)
            RULE_ERR("%s: rules[%zu].for: expected a duration such as \"30s\", \"5m\"", source, i);
        if (!sev)
            sev = "warning";
        if (strcmp(sev, "info") && strcmp(sev, "warning") && strcmp(sev, "critical"))
            RULE_ERR("%s: rules[%zu].severity: \"%s\" is not one of info, warning, critical",
                     source, i, sev);
        ru->severity = xstrdup(sev);
        json_t *labels = json_object_get(jr, "labels");
        json_t *ann = json_object_get(jr, "annotations");
        if (labels && !strings_object(labels))
            RULE_ERR("%s: rules[%zu].labels: expected an object of strings", source, i);
        if (ann && !strings_object(ann))
            RULE_ERR("%s: rules[%zu].annotations: expected an object of strings", source, i);
        ru->labels = labels ? json_deep_copy(labels) : json_object();
        ru->annotations = ann ? json_deep_copy(ann) : json_object();
    }
    json_t *inh = json_object_get(doc, "inhibit");
    if (inh && !json_is_array(inh))
        RULE_ERR("%s: inhibit: expected an array", source);
    r->inhibit = xcalloc(json_array_size(inh) + 1, sizeof(alert_inhibit_t));
    json_array_foreach(inh, i, jr)
    {
        json_t *src = json_object_get(jr, "source"), *tgt = json_object_get(jr, "target");
        json_t *eq = json_object_get(jr, "equal");
        if (!strings_object(src) || !strings_object(tgt))
            RULE_ERR("%s: inhibit[%zu]: source and target must be objects of strings", source, i);
        if (eq && !json_is_array(eq))
            RULE_ERR("%s: inhibit[%zu].equal: expected an array of label names", source, i);
        alert_inhibit_t *in = &r->inhibit[r->ninhibit++];
        in->source = json_deep_copy(src);
        in->target = json_deep_copy(tgt);
        in->equal = xcalloc(json_array_size(eq) + 1, sizeof(char *));
        size_t q;
        json_t *name;
        json_array_foreach(eq, q, name)
        {
            if (!json_is_string(name))
                RULE_ERR("%s: inhibit[%zu].equal[%zu]: expected a label name", source, i, q);
            in->equal[in->nequal++] = xstrdup(json_string_value(name));
        }
    }
    json_decref(doc);
    return r;
fail:
    err_destroy(e);
    json_decref(doc);
    alert_rules_destroy(r);
    return NULL;
}

alert_rules_t *alert_rules_load(const char *path, char *err, size_t err_size)
{
    size_t len;
    char *text = file_read_all(path, 16u << 20, &len, err, err_size);
    if (!text)
        return NULL;
    alert_rules_t *r = alert_rules_parse(text, len, path, err, err_size);
    free(text);
    return r;
}

alert_rules_t *alert_rules_default(void)
{
    char err[256];
    alert_rules_t *r =
        alert_rules_parse(DEFAULT_RULES, sizeof(DEFAULT_RULES) - 1, "default rules", err, 256);
    if (!r) {
        fprintf(stderr, "%s\n", err); /* a programming error: the text is ours */
        abort();
    }
    return r;
}

/* ---- fingerprints ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void alert_fingerprint(const char *alertname, const json_t *labels, char out[17])
{
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, alertname, strlen(alertname) + 1);
    size_t n = json_object_size(labels), i = 0;
    const char **keys = xcalloc(n + 1, sizeof(char *));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v) keys[i++] = k;
    qsort(keys, i, sizeof(char *), cmp_str);
    for (size_t q = 0; q < i; q++) {
        const char *val = json_string_value(json_object_get(labels, keys[q]));
        if (!val || !strcmp(keys[q], "alertname"))
            continue;
        h = fnv(h, keys[q], strlen(keys[q]) + 1);
        h = fnv(h, val, strlen(val) + 1);
    }
    free(keys);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* ---- the engine -------------------------------------------------------------------- */

typedef struct series {
    const alert_rule_t *rule;
    json_t *labels; /* series labels + rule labels */
    alert_state_t state;
    int64_t active_since; /* condition first held (pending or firing) */
    int64_t fired_at;
    double value;
} series_t;

struct alert_engine {
    const alert_rules_t *rules;
    alert_emit_cb *emit;
    void *opaque;
    hmap_t *series; /* fingerprint -> series_t */
};

static void series_free(void *p)
{
    series_t *s = p;
    if (!s)
        return;
    json_decref(s->labels);
    free(s);
}

alert_engine_t *alert_engine_new(const alert_rules_t *rules, alert_emit_cb *emit, void *opaque)
{
    alert_engine_t *e = xcalloc(1, sizeof(*e));
    e->rules = rules;
    e->emit = emit;
    e->opaque = opaque;
    e->series = hmap_new(series_free);
    return e;
}

void alert_engine_destroy(alert_engine_t *e)
{
    if (!e)
        return;
    hmap_destroy(e->series);
    free(e);
}

static void fmt_value(double v, char *buf, size_t n)
{
    if (isnan(v))
        snprintf(buf, n, "no data");
    else
        snprintf(buf, n, "%.4g", v);
}

/* Expand {{name}} in a template. */
static char *render_template(const char *t, const series_t *s)
{
    strbuf_t b;
    strbuf_init(&b);
    for (const char *p = t; *p;) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (!open || !close) {
            strbuf_puts(&b, p);
            break;
        }
        strbuf_append(&b, p, (size_t)(open - p));
        char name[64];
        const char *n0 = open + 2, *n1 = close;
        while (n0 < n1 && *n0 == ' ')
            n0++;
        while (n1 > n0 && n1[-1] == ' ')
            n1--;
        size_t nl = (size_t)(n1 - n0) < sizeof(name) - 1 ? (size_t)(n1 - n0) : sizeof(name) - 1;
        memcpy(name, n0, nl);
        name[nl] = 0;
        char num[64];
        if (!strcmp(name, "alertname")) {
            strbuf_puts(&b, s->rule->alert);
        } else if (!strcmp(name, "value")) {
            fmt_value(s->value, num, sizeof(num));
            strbuf_puts(&b, num);
        } else if (!strcmp(name, "threshold")) {
            fmt_value(s->rule->threshold, num, sizeof(num));
            strbuf_puts(&b, num);
        } else if (!strcmp(name, "op")) {
            strbuf_puts(&b, alert_op_name(s->rule->op));
        } else {
            const char *lv = json_string_value(json_object_get(s->labels, name));
            strbuf_puts(&b, lv ? lv : "");
        }
        p = close + 2;
    }
    return strbuf_detach(&b, NULL);
}

static void emit(alert_engine_t *e, const char *fp, const series_t *s, const char *state,
                 int64_t now_ms)
{
    if (!e->emit)
        return;
    char ts[32];
    json_t *a = json_object();
    json_object_set_new(a, "schema", json_string("alert/1"));
    json_object_set_new(a, "fingerprint", json_string(fp));
    json_object_set_new(a, "state", json_string(state));
    json_object_set_new(a, "alertname", json_string(s->rule->alert));
    json_object_set_new(a, "severity", json_string(s->rule->severity));
    json_object_set_new(a, "metric", json_string(s->rule->metric));
    json_object_set_new(a, "value", json_real(isnan(s->value) ? 0.0 : s->value));
    json_object_set_new(a, "threshold", json_real(s->rule->threshold));
    json_object_set_new(a, "comparison", json_string(alert_op_name(s->rule->op)));
    const char *window = json_string_value(json_object_get(s->labels, "window"));
    if (window)
        json_object_set_new(a, "window", json_string(window));
    const char *model = json_string_value(json_object_get(s->labels, "model"));
    if (model)
        json_object_set_new(a, "model", json_string(model));
    json_object_set(a, "labels", s->labels);
    json_t *ann = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(s->rule->annotations, k, v)
    {
        char *txt = render_template(json_string_value(v), s);
        json_object_set_new(ann, k, json_string(txt));
        free(txt);
    }
    json_object_set_new(a, "annotations", ann);
    json_object_set_new(a, "starts_at",
                        json_string(fmt_rfc3339(s->active_since * 1000, ts, sizeof(ts))));
    if (!strcmp(state, "resolved"))
        json_object_set_new(a, "ends_at", json_string(fmt_rfc3339(now_ms * 1000, ts, sizeof(ts))));
    json_object_set_new(a, "updated_at", json_string(fmt_rfc3339(now_ms * 1000, ts, sizeof(ts))));
    e->emit(a, e->opaque);
    json_decref(a);
}

void alert_engine_observe(alert_engine_t *e, const char *metric, const json_t *labels, double value,
                          int64_t now_ms)
{
    for (size_t i = 0; i < e->rules->nrules; i++) {
        const alert_rule_t *r = &e->rules->rules[i];
        if (strcmp(r->metric, metric))
            continue;
        json_t *all = labels ? json_deep_copy(labels) : json_object();
        json_object_update(all, r->labels);
        char fp[17];
        alert_fingerprint(r->alert, all, fp);
        series_t *s = hmap_get(e->series, fp);
        bool holds = alert_rule_holds(r, value);
        if (!s) {
            if (!holds) {
                json_decref(all);
                continue;
            }
            s = xcalloc(1, sizeof(*s));
            s->rule = r;
            s->labels = all;
            s->state = ALERT_INACTIVE;
            hmap_put(e->series, fp, s);
        } else {
            json_decref(all);
        }
        s->value = value;
        if (holds) {
            if (s->state == ALERT_INACTIVE) {
                s->active_since = now_ms;
                s->state = ALERT_PENDING;
                if (r->for_ms > 0)
                    emit(e, fp, s, "pending", now_ms);
            }
            if (s->state == ALERT_PENDING && now_ms - s->active_since >= r->for_ms) {
                s->state = ALERT_FIRING;
                s->fired_at = now_ms;
                emit(e, fp, s, "firing", now_ms);
            }
        } else {
            if (s->state == ALERT_FIRING)
                emit(e, fp, s, "resolved", now_ms);
            /* a pending series that stops holding is dropped silently, as
             * Prometheus drops it (Alertmanager never heard of it) */
            series_free(hmap_del(e->series, fp));
        }
    }
}

alert_state_t alert_engine_state(const alert_engine_t *e, const char *fingerprint)
{
    series_t *s = hmap_get(e->series, fingerprint);
    return s ? s->state : ALERT_INACTIVE;
}

size_t alert_engine_active(const alert_engine_t *e) { return hmap_size(e->series); }

json_t *alert_engine_dump(const alert_engine_t *e)
{
    json_t *out = json_array();
    size_t it = 0;
    const char *fp;
    void *v;
    while (hmap_next(e->series, &it, &fp, &v)) {
        series_t *s = v;
        json_array_append_new(out,
                              json_pack("{s:s,s:s,s:O,s:s,s:I,s:I,s:o}", "fingerprint", fp, "alert",
                                        s->rule->alert, "labels", s->labels, "state",
                                        s->state == ALERT_FIRING ? "firing" : "pending",
                                        "active_since", (json_int_t)s->active_since, "fired_at",
                                        (json_int_t)s->fired_at, "value", mjson_num(s->value)));
    }
    return out;
}

int alert_engine_restore(alert_engine_t *e, const json_t *dump, char *err, size_t err_size)
{
    if (!json_is_array(dump)) {
        snprintf(err, err_size, "alert state: expected an array");
        return -1;
    }
    size_t i;
    json_t *j;
    json_array_foreach(dump, i, j)
    {
        const char *alert = json_string_value(json_object_get(j, "alert"));
        const char *state = json_string_value(json_object_get(j, "state"));
        json_t *labels = json_object_get(j, "labels");
        const alert_rule_t *rule = NULL;
        for (size_t q = 0; alert && q < e->rules->nrules; q++)
            if (!strcmp(e->rules->rules[q].alert, alert))
                rule = &e->rules->rules[q];
        if (!rule || !state || !strings_object(labels))
            continue; /* a rule removed since: its series is gone */
        char fp[17];
        alert_fingerprint(rule->alert, labels, fp);
        series_t *s = xcalloc(1, sizeof(*s));
        s->rule = rule;
        s->labels = json_deep_copy(labels);
        s->state = !strcmp(state, "firing") ? ALERT_FIRING : ALERT_PENDING;
        s->active_since = json_integer_value(json_object_get(j, "active_since"));
        s->fired_at = json_integer_value(json_object_get(j, "fired_at"));
        json_t *val = json_object_get(j, "value");
        s->value = json_is_number(val) ? json_number_value(val) : (double)NAN;
        series_free(hmap_put(e->series, fp, s));
    }
    return 0;
}

/* ---- silences ---------------------------------------------------------------------- */

typedef struct matcher {
    char *name, *value;
    bool is_regex, is_equal;
    regex_t re;
} matcher_t;

struct alert_silence {
    char *id;
    matcher_t *m;
    size_t nm;
    int64_t starts_ms, ends_ms;
};

void alert_silence_destroy(alert_silence_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nm; i++) {
        free(s->m[i].name);
        free(s->m[i].value);
        if (s->m[i].is_regex)
            regfree(&s->m[i].re);
    }
    free(s->m);
    free(s->id);
    free(s);
}

static int parse_time_ms(const char *s, int64_t *out)
{
    if (!s)
        return -1;
    json_t *j = json_string(s);
    int rc = j ? spec_parse_time(j, out) : -1;
    json_decref(j);
    return rc;
}

alert_silence_t *alert_silence_parse(const json_t *j, char *err, size_t err_size)
{
    alert_silence_t *s = xcalloc(1, sizeof(*s));
    const char *id = json_string_value(json_object_get(j, "id"));
    json_t *ms = json_object_get(j, "matchers");
    if (!json_is_object(j)) {
        snprintf(err, err_size, "a silence must be a JSON object");
        goto fail;
    }
    s->id = xstrdup(id ? id : "");
    if (!json_is_array(ms) || json_array_size(ms) == 0) {
        snprintf(err, err_size, "matchers: expected a non-empty array");
        goto fail;
    }
    s->m = xcalloc(json_array_size(ms), sizeof(matcher_t));
    size_t i;
    json_t *jm;
    json_array_foreach(ms, i, jm)
    {
        const char *name = json_string_value(json_object_get(jm, "name"));
        const char *value = json_string_value(json_object_get(jm, "value"));
        json_t *isr = json_object_get(jm, "isRegex"), *ise = json_object_get(jm, "isEqual");
        if (!name || !*name || !value) {
            snprintf(err, err_size, "matchers[%zu]: name and value must be strings", i);
            goto fail;
        }
        if ((isr && !json_is_boolean(isr)) || (ise && !json_is_boolean(ise))) {
            snprintf(err, err_size, "matchers[%zu]: isRegex and isEqual must be booleans", i);
            goto fail;
        }
        matcher_t *m = &s->m[s->nm];
        m->is_regex = isr && json_is_true(isr);
        m->is_equal = !ise || json_is_true(ise);
        if (m->is_regex) {
            char *anch = xasprintf("^(%s)$", value);
            int rc = regcomp(&m->re, anch, REG_EXTENDED | REG_NOSUB);
            free(anch);
            if (rc) {
                m->is_regex = false;
                snprintf(err, err_size,
                         "matchers[%zu]: \"%.100s\" is not a valid regular "
                         "expression",
                         i, value);
                goto fail;
            }
        }
        m->name = xstrdup(name);
        m->value = xstrdup(value);
        s->nm++;
    }
    if (parse_time_ms(json_string_value(json_object_get(j, "startsAt")), &s->starts_ms) ||
        parse_time_ms(json_string_value(json_object_get(j, "endsAt")), &s->ends_ms)) {
        snprintf(err, err_size, "startsAt and endsAt must be RFC 3339 times");
        goto fail;
    }
    if (s->ends_ms <= s->starts_ms) {
        snprintf(err, err_size, "endsAt must be after startsAt");
        goto fail;
    }
    return s;
fail:
    alert_silence_destroy(s);
    return NULL;
}

const char *alert_silence_id(const alert_silence_t *s) { return s->id; }
int64_t alert_silence_ends_ms(const alert_silence_t *s) { return s->ends_ms; }

bool alert_silence_mutes(const alert_silence_t *s, const json_t *labels, int64_t now_ms)
{
    if (now_ms < s->starts_ms || now_ms >= s->ends_ms)
        return false;
    for (size_t i = 0; i < s->nm; i++) {
        const matcher_t *m = &s->m[i];
        const char *v = json_string_value(json_object_get(labels, m->name));
        if (!v)
            v = ""; /* an absent label matches the empty string, as in Alertmanager */
        bool match = m->is_regex ? regexec(&m->re, v, 0, NULL, 0) == 0 : !strcmp(v, m->value);
        if (match != m->is_equal)
            return false;
    }
    return true;
}

json_t *alert_match_labels(const json_t *alert)
{
    json_t *l = json_object();
    json_t *labels = json_object_get(alert, "labels");
    const char *k;
    json_t *v;
    if (json_is_object(labels))
        json_object_foreach(labels, k, v) if (json_is_string(v)) json_object_set(l, k, v);
    static const char *const top[] = {"alertname", "severity", "model"};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(top); i++) {
        json_t *t = json_object_get(alert, top[i]);
        if (json_is_string(t))
            json_object_set(l, top[i], t);
    }
    return l;
}

static bool has_all(const json_t *labels, const json_t *want)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)want, k, v)
    {
        const char *have = json_string_value(json_object_get(labels, k));
        if (!have || strcmp(have, json_string_value(v)))
            return false;
    }
    return true;
}

bool alert_inhibited(const alert_rules_t *r, const json_t *labels, json_t *const *firing,
                     size_t nfiring)
{
    for (size_t i = 0; i < r->ninhibit; i++) {
        const alert_inhibit_t *in = &r->inhibit[i];
        if (!has_all(labels, in->target))
            continue;
        for (size_t f = 0; f < nfiring; f++) {
            if (firing[f] == labels || json_equal((json_t *)firing[f], (json_t *)labels))
                continue;
            if (!has_all(firing[f], in->source))
                continue;
            bool equal = true;
            for (size_t q = 0; q < in->nequal && equal; q++) {
                const char *a = json_string_value(json_object_get(labels, in->equal[q]));
                const char *b = json_string_value(json_object_get(firing[f], in->equal[q]));
                equal = (!a && !b) || (a && b && !strcmp(a, b));
            }
            if (equal)
                return true;
        }
    }
    return false;
}
