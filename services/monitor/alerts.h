/**
 * @file alerts.h
 * @brief Alerting rules and their state machine, silences and inhibition,
 *        following Prometheus' and Alertmanager's model.
 *
 * A rule compares one metric the monitor computes with a threshold. Each
 * label set the metric is observed with (model, feature, ...) is its own
 * series, identified by a fingerprint of the alert name and its labels.
 * A series whose condition holds goes inactive -> pending, and pending ->
 * firing once it held for the rule's `for` duration (at once when `for`
 * is 0); when the condition stops holding a firing series is resolved and
 * a pending one is dropped. Every state change becomes one alert/1 record.
 *
 * Rules file (JSON):
 *   {"rules": [{"alert": "feature_drift", "metric": "feature_drifted",
 *               "op": ">=", "threshold": 1, "for": "0s", "severity": "warning",
 *               "labels": {...}, "annotations": {"summary": "...",
 *               "runbook_url": "..."}}, ...],
 *    "inhibit": [{"source": {"alertname": "dataset_drift"},
 *                 "target": {"alertname": "feature_drift"},
 *                 "equal": ["model"]}]}
 * Durations are "250ms", "30s", "5m", "1h", "1d" or a number of ms.
 * Annotations may use {{alertname}}, {{value}}, {{threshold}}, {{op}} and
 * {{<label>}}. Without a file, alert_rules_default() applies.
 */
#ifndef MLOPS_ALERTS_H
#define MLOPS_ALERTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    ALERT_OP_GT,
    ALERT_OP_GE,
    ALERT_OP_LT,
    ALERT_OP_LE,
    ALERT_OP_EQ,
    ALERT_OP_NE
} alert_op_t;

typedef struct alert_rule {
    char *alert;  /**< alertname */
    char *metric; /**< what the monitor computes, e.g. "dataset_drift_share" */
    alert_op_t op;
    double threshold;
    int64_t for_ms;
    char *severity;      /**< info | warning | critical */
    json_t *labels;      /**< object of strings added to every series */
    json_t *annotations; /**< object of template strings */
} alert_rule_t;

typedef struct alert_inhibit {
    json_t *source; /**< label -> value that the inhibiting (firing) alert has */
    json_t *target; /**< label -> value that the inhibited alert has */
    char **equal;   /**< labels whose values must be equal on both */
    size_t nequal;
} alert_inhibit_t;

typedef struct alert_rules {
    alert_rule_t *rules;
    size_t nrules;
    alert_inhibit_t *inhibit;
    size_t ninhibit;
} alert_rules_t;

/**
 * Parse a rules document; @p source names it in errors ("rules.json").
 * Returns NULL with "source: rules[2].op: ..." in @p err on bad input.
 */
alert_rules_t *alert_rules_parse(const char *text, size_t len, const char *source, char *err,
                                 size_t err_size);
alert_rules_t *alert_rules_load(const char *path, char *err, size_t err_size);
/** The built-in defaults (dataset, feature and prediction drift, performance
 *  drop, DLQ rate, consumer lag, degraded scoring; dataset drift inhibits
 *  per-feature drift of the same model). */
alert_rules_t *alert_rules_default(void);
const char *alert_rules_default_text(void);
void alert_rules_destroy(alert_rules_t *r);

const char *alert_op_name(alert_op_t op);
/** Does @p value satisfy the rule's condition? NaN never does. */
bool alert_rule_holds(const alert_rule_t *r, double value);
/** Parse "5m" etc. into ms; -1 on error. */
int64_t alert_duration_ms(const char *s);

/**
 * Fingerprint of an alert: 16 hex digits of a 64-bit FNV-1a hash over the
 * alert name and the labels sorted by name (NUL-separated), so equal label
 * sets give equal fingerprints whatever their order.
 */
void alert_fingerprint(const char *alertname, const json_t *labels, char out[17]);

/* ---- the state machine ------------------------------------------------------------- */

typedef enum { ALERT_INACTIVE, ALERT_PENDING, ALERT_FIRING } alert_state_t;

typedef struct alert_engine alert_engine_t;

/** Called with each alert/1 record (borrowed) the engine emits. */
typedef void(alert_emit_cb)(const json_t *alert, void *opaque);

alert_engine_t *alert_engine_new(const alert_rules_t *rules, alert_emit_cb *emit, void *opaque);
void alert_engine_destroy(alert_engine_t *e);

/**
 * One observation of @p metric with @p labels (an object of strings,
 * borrowed) at @p now_ms: every rule on that metric evaluates its series.
 * A NaN value means "no data" and resolves a firing series.
 */
void alert_engine_observe(alert_engine_t *e, const char *metric, const json_t *labels, double value,
                          int64_t now_ms);

/** State of a series, ALERT_INACTIVE if unknown. */
alert_state_t alert_engine_state(const alert_engine_t *e, const char *fingerprint);
size_t alert_engine_active(const alert_engine_t *e);

/** The active series as JSON (to keep in Redis), and back. */
json_t *alert_engine_dump(const alert_engine_t *e);
int alert_engine_restore(alert_engine_t *e, const json_t *dump, char *err, size_t err_size);

/* ---- silences and inhibition ------------------------------------------------------- */

/**
 * A silence as Alertmanager's API shapes it: {"id", "matchers": [{"name",
 * "value", "isRegex", "isEqual"}], "startsAt", "endsAt" (RFC 3339),
 * "createdBy", "comment"}. Regular expressions are POSIX extended and
 * anchored at both ends, as Alertmanager anchors its own.
 */
typedef struct alert_silence alert_silence_t;

alert_silence_t *alert_silence_parse(const json_t *j, char *err, size_t err_size);
void alert_silence_destroy(alert_silence_t *s);
const char *alert_silence_id(const alert_silence_t *s);
int64_t alert_silence_ends_ms(const alert_silence_t *s);
/** Does the silence mute an alert with these labels (alertname included) now? */
bool alert_silence_mutes(const alert_silence_t *s, const json_t *labels, int64_t now_ms);

/**
 * The labels of an alert/1 record that silences and inhibition match on:
 * its labels plus alertname, severity and model. Caller decrefs.
 */
json_t *alert_match_labels(const json_t *alert);

/**
 * Is an alert with @p labels inhibited by one of the @p nfiring firing
 * alerts' label sets, under the rules' inhibit list? An alert never
 * inhibits itself.
 */
bool alert_inhibited(const alert_rules_t *r, const json_t *labels, json_t *const *firing,
                     size_t nfiring);

#endif
