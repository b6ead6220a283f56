/* The monitor's drift pipeline (see pipeline.h).
 *
 * Order of work for one features/1 record: parse (size capped, duplicates
 * rejected) -> every monitored model whose spec name matches adds the
 * values (dstate_add) -> on a window tick: gauges, alert observations
 * (dataset_drift_share, feature_drifted), alert/1 records produced, the
 * engine's state saved to Redis -> the input offset is stored once every
 * output it caused is delivered (kafka_tracker). */
#include "pipeline.h"

#include <ctype.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "dstate.h"
#include "hmap.h"
#include "httpc.h"
#include "kafka.h"
#include "log.h"
#include "model.h"
#include "perf.h"
#include "redis.h"
#include "spec.h"

#define TRAIN_REQUEST_SCHEMA "train_request/1"

typedef struct mon_model {
    dstate_t *ds;
    int64_t version; /* registry version; 0 for a model given as a file */
    char sha256[65];
    char *positive; /* the label's positive class (text) */
    double ref_auc; /* held-out AUC of the artifact, NaN if none */
    double *score_edges, *score_counts;
    size_t score_nbins;
    hmap_t *variants; /* role -> perf_t */
    int *prev_test;   /* [window][feature]: the test published last, -1 none */
} mon_model_t;

static void perf_free(void *v) { perf_destroy(v); }

struct pipeline {
    service_t *svc;
    const pipeline_conf_t *conf;
    dstate_win_t wins[DSTATE_MAX_WINDOWS];
    size_t nwins;
    hmap_t *models; /* name -> mon_model_t */
    alert_rules_t *rules;
    alert_engine_t *engine;
    bool engine_dirty;
    char **retrain_alerts;
    size_t nretrain;
    hmap_t *retrain_last; /* model -> (int64_t *) wall ms of the last request */
    redis_client_t *rc;
    kafka_producer_t *kp;
    kafka_consumer_t *kc;
    kafka_tracker_t *tr;
    kafka_watch_t *watch, *pwatch;
    void *cur_handle; /* tracker handle of the message being processed */
    join_t *join;
    metric_t *m_predictions, *m_labels, *m_joined, *m_unjoined_label, *m_pending;
    bool draining;
    metric_t *m_records, *m_bad, *m_unmatched, *m_ticks, *m_alerts, *m_retrain, *m_retrain_skip,
        *m_model_loads, *m_model_fail, *m_redis_fail;
};

static void mon_model_free(void *v)
{
    mon_model_t *mm = v;
    dstate_destroy(mm->ds);
    free(mm->positive);
    free(mm->score_edges);
    free(mm->score_counts);
    free(mm->prev_test);
    if (mm->variants)
        hmap_destroy(mm->variants);
    free(mm);
}

/* ---- alert state in Redis ---- */

static void state_save(pipeline_t *p)
{
    if (!p->engine_dirty)
        return;
    json_t *dump = alert_engine_dump(p->engine);
    char *txt = dump ? json_dumps(dump, JSON_COMPACT) : NULL;
    json_decref(dump);
    if (!txt)
        return;
    const char *argv[] = {"SET", p->conf->alert_state_key, txt};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(p->rc, &e, 3, argv, NULL);
    free(txt);
    if (!r) {
        metric_inc(p->m_redis_fail);
        log_warn("alert state not saved to Redis (kept in memory, retried on the next change): %s",
                 e ? e->msg : "?");
        err_destroy(e);
        return;
    }
    freeReplyObject(r);
    p->engine_dirty = false;
}

/* Restore the engine's state; a missing or unreadable one starts empty. */
static void state_restore(pipeline_t *p)
{
    const char *argv[] = {"GET", p->conf->alert_state_key};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(p->rc, &e, 2, argv, NULL);
    if (!r) {
        log_warn("alert state not restored: Redis unreachable (%s); starting empty",
                 e ? e->msg : "?");
        err_destroy(e);
        metric_inc(p->m_redis_fail);
        return;
    }
    if (r->type == REDIS_REPLY_STRING) {
        json_error_t je;
        json_t *dump = json_loadb(r->str, r->len, JSON_REJECT_DUPLICATES, &je);
        char err[256];
        if (!dump || alert_engine_restore(p->engine, dump, err, sizeof(err))) {
            log_error("%s: alert state unreadable (%s); starting empty", p->conf->alert_state_key,
                      dump ? err : je.text);
        } else {
            log_info("alert state restored from %s: %zu active series", p->conf->alert_state_key,
                     alert_engine_active(p->engine));
        }
        json_decref(dump);
    }
    freeReplyObject(r);
}

/* ---- outputs ---- */

static void on_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque)
{
    pipeline_t *p = opaque;
    if (rkm->err)
        log_emit(LOG_LVL_ERROR, LOG_FIELDS(LOG_STR("topic", rd_kafka_topic_name(rkm->rkt))),
                 "output not delivered: %s", rd_kafka_err2str(rkm->err));
    if (msg_opaque && kafka_tracker_done(p->tr, msg_opaque))
        lifecycle_fail(service_lifecycle(p->svc), MLOPS_EXIT_FAILURE, "cannot store an offset");
}

static void produce_json(pipeline_t *p, const char *topic, const char *key, const json_t *rec)
{
    char *txt = json_dumps(rec, JSON_COMPACT);
    if (!txt) {
        log_error("%s: record not serialisable (non-finite number?)", topic);
        return;
    }
    void *h = p->cur_handle;
    if (h)
        kafka_tracker_hold(h);
    err_t *e = NULL;
    if (kafka_produce(p->kp, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), txt, strlen(txt), h,
                      &e)) {
        log_emit(LOG_LVL_ERROR, LOG_FIELDS(LOG_STR("topic", topic)), "produce failed: %s",
                 e ? e->msg : "?");
        err_destroy(e);
        if (h && kafka_tracker_done(p->tr, h))
            lifecycle_fail(service_lifecycle(p->svc), MLOPS_EXIT_FAILURE, "cannot store an offset");
    }
    free(txt);
}

static bool is_retrain_alert(const pipeline_t *p, const char *alertname)
{
    for (size_t i = 0; i < p->nretrain; i++)
        if (!strcmp(p->retrain_alerts[i], alertname))
            return true;
    return false;
}

/* Claim the model's retrain cooldown: in memory first, then in Redis with
 * SET NX PX so that a restart (or a second instance) does not file again. */
static bool retrain_claim(pipeline_t *p, const char *model, int64_t now)
{
    int64_t *last = hmap_get(p->retrain_last, model);
    if (last && now - *last < p->conf->retrain_cooldown_ms)
        return false;
    char key[512], val[32], px[32];
    snprintf(key, sizeof(key), "%s:retrain:%s", p->conf->alert_state_key, model);
    snprintf(val, sizeof(val), "%lld", (long long)now);
    snprintf(px, sizeof(px), "%lld", (long long)p->conf->retrain_cooldown_ms);
    const char *argv[] = {"SET", key, val, "NX", "PX", px};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(p->rc, &e, 6, argv, NULL);
    bool ok = true;
    if (!r) {
        metric_inc(p->m_redis_fail);
        log_warn("retrain cooldown kept in memory only: %s", e ? e->msg : "?");
        err_destroy(e);
    } else {
        ok = r->type == REDIS_REPLY_STATUS; /* OK; nil when the key exists */
        freeReplyObject(r);
    }
    if (!last) {
        last = xmalloc(sizeof(*last));
        hmap_put(p->retrain_last, model, last);
    }
    if (ok)
        *last = now;
    return ok;
}

static void retrain(pipeline_t *p, const json_t *alert)
{
    const char *model = json_string_value(json_object_get(alert, "model"));
    const char *alertname = json_string_value(json_object_get(alert, "alertname"));
    if (!model || !*model)
        return;
    int64_t now = wall_ms();
    if (!retrain_claim(p, model, now)) {
        metric_inc(p->m_retrain_skip);
        log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("model", model), LOG_STR("alert", alertname)),
                 "retrain not requested: cooldown");
        return;
    }
    char ts[40], rid[64];
    fmt_rfc3339(now * 1000, ts, sizeof(ts));
    const char *fp = json_string_value(json_object_get(alert, "fingerprint"));
    snprintf(rid, sizeof(rid), "monitor-%s-%lld", fp ? fp : "x", (long long)now);
    json_t *reason = json_pack("{s:s, s:s, s:s, s:O, s:O}", "kind", "alert", "alertname",
                               alertname ? alertname : "", "fingerprint", fp ? fp : "", "value",
                               json_object_get(alert, "value"), "threshold",
                               json_object_get(alert, "threshold"));
    const char *window = json_string_value(json_object_get(alert, "window"));
    if (window)
        json_object_set_new(reason, "window", json_string(window));
    json_t *req =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:I}, s:{}, s:o, s:s}", "schema",
                  TRAIN_REQUEST_SCHEMA, "request_id", rid, "model", model, "requested_at", ts,
                  "dataset", "kind", "latest", "latest", (json_int_t)p->conf->retrain_latest,
                  "params", "reason", reason, "requested_by", "mlops-monitor");
    const json_t *ver = json_object_get(alert, "version");
    if (json_is_integer(ver))
        json_object_set(req, "current_version", (json_t *)ver);
    produce_json(p, p->conf->train_requests_topic, model, req);
    json_decref(req);
    metric_inc(p->m_retrain);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("model", model), LOG_STR("alert", alertname),
                        LOG_STR("request_id", rid)),
             "retrain requested on %s", p->conf->train_requests_topic);
}

static void on_alert(const json_t *alert, void *opaque)
{
    pipeline_t *p = opaque;
    const char *fp = json_string_value(json_object_get(alert, "fingerprint"));
    const char *state = json_string_value(json_object_get(alert, "state"));
    const char *alertname = json_string_value(json_object_get(alert, "alertname"));
    json_t *rec = json_deep_copy(alert);
    /* the model version, from the labels, as alert/1's integer field */
    const char *ver =
        json_string_value(json_object_get(json_object_get(alert, "labels"), "version"));
    int64_t v;
    if (ver && !parse_int64(ver, &v) && v >= 1)
        json_object_set_new(rec, "version", json_integer((json_int_t)v));
    produce_json(p, p->conf->alerts_topic, fp ? fp : "", rec);
    metric_inc(p->m_alerts);
    p->engine_dirty = true;
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("alert", alertname ? alertname : ""),
                        LOG_STR("state", state ? state : ""), LOG_STR("fingerprint", fp ? fp : "")),
             "alert %s", state ? state : "?");
    if (state && !strcmp(state, "firing") && alertname && is_retrain_alert(p, alertname))
        retrain(p, rec);
    json_decref(rec);
}

/* ---- window ticks ---- */

/* The input's test changed since the last tick (Evidently's choice depends on
 * the distinct values of reference and window together): its old series get
 * NaN, and the old alert series "no data", which resolves it if firing. */
static void retire_series(pipeline_t *p, mon_model_t *mm, size_t w, size_t f, int64_t now)
{
    int *prev = &mm->prev_test[w * dstate_nfeatures(mm->ds) + f];
    const dstate_col_t *c = dstate_result(mm->ds, w, f);
    int cur = c->computed ? (int)c->r.test : -1;
    if (*prev < 0 || *prev == cur) {
        *prev = cur;
        return;
    }
    metrics_t *m = service_metrics(p->svc);
    const char *model = dstate_model(mm->ds), *version = dstate_version(mm->ds);
    const char *wname = dstate_window_name(mm->ds, w), *feat = dstate_feature(mm->ds, f);
    const char *old = drift_test_name((drift_test_t)*prev);
    char l[1024];
    metrics_labels(l, sizeof(l), "model", model, "version", version, "feature", feat, "test", old,
                   "window", wname, NULL);
    metric_set(metrics_gauge(m, "mlops_monitor_drift_value",
                             "Latest drift statistic of an input (p-value or distance).", l),
               NAN);
    metric_set(metrics_gauge(m, "mlops_monitor_feature_drifted",
                             "1 if the input drifted on the latest tick, else 0.", l),
               NAN);
    json_t *al = json_pack("{s:s, s:s, s:s, s:s, s:s}", "model", model, "version", version,
                           "feature", feat, "test", old, "window", wname);
    alert_engine_observe(p->engine, "feature_drifted", al, NAN, now);
    json_decref(al);
    *prev = cur;
}

static void publish(pipeline_t *p, mon_model_t *mm, size_t w)
{
    const dstate_t *ds = mm->ds;
    metrics_t *m = service_metrics(p->svc);
    const char *model = dstate_model(ds), *version = dstate_version(ds);
    const char *wname = dstate_window_name(ds, w);
    char l[1024];
    int64_t now = wall_ms();
    for (size_t f = 0; f < dstate_nfeatures(ds); f++) {
        const dstate_col_t *c = dstate_result(ds, w, f);
        const char *feat = dstate_feature(ds, f);
        retire_series(p, mm, w, f, now);
        if (!c->computed) {
            metrics_labels(l, sizeof(l), "model", model, "version", version, "feature", feat,
                           "window", wname, NULL);
            metric_inc(metrics_counter(m, "mlops_monitor_drift_skipped_total",
                                       "Window ticks on which an input could not be tested.", l));
            continue;
        }
        const char *test = drift_test_name(c->r.test);
        metrics_labels(l, sizeof(l), "model", model, "version", version, "feature", feat, "test",
                       test, "window", wname, NULL);
        metric_set(metrics_gauge(m, "mlops_monitor_drift_value",
                                 "Latest drift statistic of an input (p-value or distance).", l),
                   c->r.value);
        metric_set(metrics_gauge(m, "mlops_monitor_drift_threshold",
                                 "Threshold of the input's drift test.", l),
                   c->r.threshold);
        metric_set(metrics_gauge(m, "mlops_monitor_feature_drifted",
                                 "1 if the input drifted on the latest tick, else 0.", l),
                   c->r.drifted ? 1 : 0);
        metric_set(metrics_gauge(m, "mlops_monitor_window_values",
                                 "Values of the input in the window at the latest tick.", l),
                   (double)c->r.n_cur);
        json_t *al = json_pack("{s:s, s:s, s:s, s:s, s:s}", "model", model, "version", version,
                               "feature", feat, "test", test, "window", wname);
        alert_engine_observe(p->engine, "feature_drifted", al, c->r.drifted ? 1 : 0, now);
        json_decref(al);
    }
    bool drifted;
    double share = dstate_share(ds, w, &drifted);
    metrics_labels(l, sizeof(l), "model", model, "version", version, "window", wname, NULL);
    metric_set(metrics_gauge(m, "mlops_monitor_dataset_drift_share",
                             "Share of the model's inputs that drifted on the latest tick.", l),
               share);
    metric_set(metrics_gauge(m, "mlops_monitor_dataset_drifted",
                             "1 if the share reached the drift_share threshold.", l),
               drifted ? 1 : 0);
    metric_inc(metrics_counter(m, "mlops_monitor_window_ticks_total", "Window ticks.", l));
    metric_inc(p->m_ticks);
    json_t *al = json_pack("{s:s, s:s, s:s}", "model", model, "version", version, "window", wname);
    alert_engine_observe(p->engine, "dataset_drift_share", al, share, now);
    json_decref(al);
    log_emit(LOG_LVL_DEBUG,
             LOG_FIELDS(LOG_STR("model", model), LOG_STR("window", wname),
                        LOG_DBL("drift_share", share), LOG_BOOL("dataset_drift", drifted),
                        LOG_INT("events", dstate_events(ds))),
             "window tick");
}

static void on_features(pipeline_t *p, const json_t *rec)
{
    const char *spec = json_string_value(json_object_get(json_object_get(rec, "spec"), "name"));
    const json_t *values = json_object_get(rec, "values");
    if (!spec || !json_is_object(values)) {
        metric_inc(p->m_bad);
        log_warn("%s: record without spec.name or values skipped", p->conf->features_topic);
        return;
    }
    metric_inc(p->m_records);
    int64_t event_ms = DSTATE_NO_TIME;
    if (spec_parse_time(json_object_get(rec, "event_time"), &event_ms))
        event_ms = DSTATE_NO_TIME;
    size_t it = 0, matched = 0;
    const char *name;
    void *v;
    while (hmap_next(p->models, &it, &name, &v)) {
        mon_model_t *mm = v;
        if (strcmp(dstate_spec_name(mm->ds), spec))
            continue;
        matched++;
        size_t ticked[DSTATE_MAX_WINDOWS];
        size_t n = dstate_add(mm->ds, values, event_ms, ticked);
        for (size_t k = 0; k < n; k++)
            publish(p, mm, ticked[k]);
    }
    if (!matched)
        metric_inc(p->m_unmatched);
}

/* ---- predictions and labels ---- */

static perf_t *variant(pipeline_t *p, mon_model_t *mm, const char *role)
{
    perf_t *pf = hmap_get(mm->variants, role);
    if (pf || !mm->score_nbins)
        return pf;
    char err[256];
    pf = perf_new(p->wins, p->nwins, mm->score_edges, mm->score_counts, mm->score_nbins,
                  mm->ref_auc, err, sizeof(err));
    if (!pf) {
        log_warn("model %s: no prediction monitoring: %s", dstate_model(mm->ds), err);
        return NULL;
    }
    hmap_put(mm->variants, role, pf);
    return pf;
}

static void publish_scores(pipeline_t *p, const mon_model_t *mm, const char *role, perf_t *pf,
                           size_t w)
{
    metrics_t *m = service_metrics(p->svc);
    const char *model = dstate_model(mm->ds), *version = dstate_version(mm->ds);
    const char *wname = dstate_window_name(mm->ds, w);
    const perf_score_drift_t *sd = perf_score_drift(pf, w);
    char l[512];
    metrics_labels(l, sizeof(l), "model", model, "version", version, "role", role, "test",
                   "jensenshannon", "window", wname, NULL);
    metric_set(metrics_gauge(m, "mlops_monitor_prediction_drift_value",
                             "Score distribution against the reference score histogram.", l),
               sd->js);
    metric_set(metrics_gauge(m, "mlops_monitor_prediction_drifted",
                             "1 if the score distribution drifted on the latest tick.", l),
               sd->drifted ? 1 : 0);
    metrics_labels(l, sizeof(l), "model", model, "version", version, "role", role, "test", "psi",
                   "window", wname, NULL);
    metric_set(metrics_gauge(m, "mlops_monitor_prediction_drift_value",
                             "Score distribution against the reference score histogram.", l),
               sd->psi);
    json_t *al = json_pack("{s:s, s:s, s:s, s:s}", "model", model, "version", version, "role", role,
                           "window", wname);
    alert_engine_observe(p->engine, "prediction_drifted", al, sd->drifted ? 1 : 0, wall_ms());
    json_decref(al);
}

static void publish_perf(pipeline_t *p, const mon_model_t *mm, const char *role, perf_t *pf,
                         size_t w)
{
    metrics_t *m = service_metrics(p->svc);
    const char *model = dstate_model(mm->ds), *version = dstate_version(mm->ds);
    const char *wname = dstate_window_name(mm->ds, w);
    const perf_metrics_t *pm = perf_metrics(pf, w);
    char l[512];
    metrics_labels(l, sizeof(l), "model", model, "version", version, "role", role, "window", wname,
                   NULL);
    metric_set(metrics_gauge(m, "mlops_monitor_auc", "Realized ROC AUC in the window.", l),
               pm->auc);
    metric_set(metrics_gauge(m, "mlops_monitor_accuracy", "Realized accuracy in the window.", l),
               pm->accuracy);
    metric_set(metrics_gauge(m, "mlops_monitor_log_loss", "Realized log loss in the window.", l),
               pm->log_loss);
    metric_set(metrics_gauge(m, "mlops_monitor_brier", "Realized Brier score in the window.", l),
               pm->brier);
    metric_set(metrics_gauge(m, "mlops_monitor_auc_drop",
                             "Reference (held-out) AUC minus the window's AUC.", l),
               pm->auc_drop);
    metric_set(metrics_gauge(m, "mlops_monitor_labelled", "Labelled predictions in the window.", l),
               (double)pm->n);
    metric_set(metrics_gauge(m, "mlops_monitor_calibration_error",
                             "Expected calibration error (10 uniform score bins) in the window.",
                             l),
               pm->ece);
    json_t *al = json_pack("{s:s, s:s, s:s, s:s}", "model", model, "version", version, "role", role,
                           "window", wname);
    alert_engine_observe(p->engine, "auc_drop", al, pm->auc_drop, wall_ms());
    alert_engine_observe(p->engine, "calibration_error", al, pm->ece, wall_ms());
    json_decref(al);
}

static void on_joined(const join_pred_t *pred, const char *label, void *opaque)
{
    pipeline_t *p = opaque;
    mon_model_t *mm = hmap_get(p->models, pred->model);
    if (!mm)
        return;
    perf_t *pf = variant(p, mm, pred->role);
    if (!pf)
        return;
    metric_inc(p->m_joined);
    size_t ticked[DSTATE_MAX_WINDOWS];
    size_t n =
        perf_add_labelled(pf, pred->score, pred->decision, !strcmp(label, mm->positive), ticked);
    for (size_t k = 0; k < n; k++)
        publish_perf(p, mm, pred->role, pf, ticked[k]);
    char l[512];
    metrics_labels(l, sizeof(l), "model", pred->model, "role", pred->role, NULL);
    metric_set(metrics_gauge(service_metrics(p->svc), "mlops_monitor_ddm_state",
                             "DDM on the decision errors: 0 in control, 1 warning, 2 drift.", l),
               (double)perf_ddm_state(pf));
    metric_set(metrics_gauge(service_metrics(p->svc), "mlops_monitor_ddm_drifts",
                             "Drifts DDM detected since the model was loaded.", l),
               (double)perf_ddm_drifts(pf));
    metric_set(metrics_gauge(service_metrics(p->svc), "mlops_monitor_adwin_drifts",
                             "Drifts ADWIN detected on the decision errors.", l),
               (double)perf_adwin_drifts(pf));
    metric_set(metrics_gauge(service_metrics(p->svc), "mlops_monitor_adwin_width",
                             "ADWIN's window of decision errors.", l),
               (double)perf_adwin_width(pf));
    metric_set(metrics_gauge(service_metrics(p->svc), "mlops_monitor_adwin_error_rate",
                             "Error rate over ADWIN's window.", l),
               perf_adwin_mean(pf));
}

static void on_prediction(pipeline_t *p, const json_t *rec)
{
    const char *eid = json_string_value(json_object_get(rec, "event_id"));
    const json_t *jm = json_object_get(rec, "model");
    const char *name = json_string_value(json_object_get(jm, "name"));
    const char *role = json_string_value(json_object_get(rec, "role"));
    const json_t *score = json_object_get(rec, "score");
    const json_t *dec = json_object_get(rec, "decision");
    if (!eid || !name || !role || !json_is_boolean(dec) || strlen(name) >= 128) {
        metric_inc(p->m_bad);
        log_warn("%s: prediction without event_id, model.name, role or decision skipped",
                 p->conf->predictions_topic);
        return;
    }
    /* the roles prediction/1 allows: anything else would make a variant (and
     * metric series) per distinct string, without bound */
    if (strcmp(role, "champion") && strcmp(role, "challenger") && strcmp(role, "shadow")) {
        metric_inc(p->m_bad);
        log_warn("%s: prediction with role \"%.16s\" (not champion, challenger or shadow) "
                 "skipped",
                 p->conf->predictions_topic, role);
        return;
    }
    metric_inc(p->m_predictions);
    if (!json_is_number(score))
        return; /* null: not finite, nothing to compare */
    mon_model_t *mm = hmap_get(p->models, name);
    if (!mm)
        return;
    perf_t *pf = variant(p, mm, role);
    if (pf) {
        size_t ticked[DSTATE_MAX_WINDOWS];
        size_t n = perf_add_score(pf, json_number_value(score), ticked);
        for (size_t k = 0; k < n; k++)
            publish_scores(p, mm, role, pf, ticked[k]);
    }
    join_pred_t jp = {.version = json_integer_value(json_object_get(jm, "version")),
                      .score = json_number_value(score),
                      .decision = json_is_true(dec)};
    str_copy(jp.model, name, sizeof(jp.model));
    str_copy(jp.role, role, sizeof(jp.role));
    join_prediction(p->join, eid, &jp, wall_ms());
}

static void on_label(pipeline_t *p, const json_t *rec)
{
    const char *eid = json_string_value(json_object_get(rec, "event_id"));
    const json_t *lv = json_object_get(rec, "label");
    char num[32];
    const char *label = json_string_value(lv);
    if (!label && json_is_number(lv)) {
        fmt_double_rt(json_number_value(lv), num);
        label = num;
    } else if (!label && json_is_boolean(lv)) {
        label = json_is_true(lv) ? "true" : "false";
    }
    if (!eid || !label) {
        metric_inc(p->m_bad);
        log_warn("%s: label without event_id or label skipped", p->conf->labels_topic);
        return;
    }
    metric_inc(p->m_labels);
    join_label(p->join, eid, label, wall_ms());
}

/* ---- models ---- */

/* A model version stops being monitored (replaced or deleted): every alert
 * series it fed is observed as "no data", which resolves the firing ones, and
 * its gauges go NaN. */
static void retire_model(pipeline_t *p, mon_model_t *mm)
{
    const dstate_t *ds = mm->ds;
    const char *model = dstate_model(ds), *version = dstate_version(ds);
    metrics_t *m = service_metrics(p->svc);
    int64_t now = wall_ms();
    char l[1024];
    for (size_t w = 0; w < dstate_nwindows(ds); w++) {
        const char *wname = dstate_window_name(ds, w);
        for (size_t f = 0; f < dstate_nfeatures(ds); f++) {
            int t = mm->prev_test[w * dstate_nfeatures(ds) + f];
            if (t < 0)
                continue;
            const char *feat = dstate_feature(ds, f), *test = drift_test_name((drift_test_t)t);
            json_t *al = json_pack("{s:s, s:s, s:s, s:s, s:s}", "model", model, "version", version,
                                   "feature", feat, "test", test, "window", wname);
            alert_engine_observe(p->engine, "feature_drifted", al, NAN, now);
            json_decref(al);
            metrics_labels(l, sizeof(l), "model", model, "version", version, "feature", feat,
                           "test", test, "window", wname, NULL);
            metric_set(metrics_gauge(m, "mlops_monitor_drift_value",
                                     "Latest drift statistic of an input (p-value or distance).",
                                     l),
                       NAN);
            metric_set(metrics_gauge(m, "mlops_monitor_feature_drifted",
                                     "1 if the input drifted on the latest tick, else 0.", l),
                       NAN);
        }
        if (dstate_ticks(ds, w)) {
            json_t *al =
                json_pack("{s:s, s:s, s:s}", "model", model, "version", version, "window", wname);
            alert_engine_observe(p->engine, "dataset_drift_share", al, NAN, now);
            json_decref(al);
            metrics_labels(l, sizeof(l), "model", model, "version", version, "window", wname, NULL);
            metric_set(metrics_gauge(m, "mlops_monitor_dataset_drift_share",
                                     "Share of the model's inputs that drifted on the latest tick.",
                                     l),
                       NAN);
            metric_set(metrics_gauge(m, "mlops_monitor_dataset_drifted",
                                     "1 if the share reached the drift_share threshold.", l),
                       NAN);
        }
        size_t it = 0;
        const char *role;
        void *v;
        while (hmap_next(mm->variants, &it, &role, &v)) {
            json_t *al = json_pack("{s:s, s:s, s:s, s:s}", "model", model, "version", version,
                                   "role", role, "window", wname);
            if (perf_score_ticks(v, w))
                alert_engine_observe(p->engine, "prediction_drifted", al, NAN, now);
            if (perf_label_ticks(v, w)) {
                alert_engine_observe(p->engine, "auc_drop", al, NAN, now);
                alert_engine_observe(p->engine, "calibration_error", al, NAN, now);
            }
            json_decref(al);
        }
    }
    p->engine_dirty = true;
}

static int install_model(pipeline_t *p, json_t *doc, int64_t version, const char *sha256,
                         const char *origin)
{
    char err[512], vbuf[32];
    if (version > 0)
        snprintf(vbuf, sizeof(vbuf), "%lld", (long long)version);
    else
        str_copy(vbuf, "file", sizeof(vbuf));
    model_t *m = model_from_json(doc, err, sizeof(err));
    if (!m) {
        log_error("%s: not a valid model/1 artifact: %s", origin, err);
        metric_inc(p->m_model_fail);
        return -1;
    }
    model_destroy(m);
    dstate_t *ds = dstate_new(doc, vbuf, p->wins, p->nwins, p->conf->drift_share, err, sizeof(err));
    if (!ds) {
        log_error("%s: %s", origin, err);
        metric_inc(p->m_model_fail);
        return -1;
    }
    size_t nsampled = 0;
    for (size_t f = 0; f < dstate_nfeatures(ds); f++)
        nsampled += dstate_ref_count(ds, f) > 0;
    mon_model_t *mm = xcalloc(1, sizeof(*mm));
    mm->ds = ds;
    mm->version = version;
    mm->variants = hmap_new(perf_free);
    size_t ncells = dstate_nwindows(ds) * dstate_nfeatures(ds);
    mm->prev_test = xmalloc(ncells * sizeof(int));
    for (size_t i = 0; i < ncells; i++)
        mm->prev_test[i] = -1;
    const char *pos = json_string_value(json_object_get(json_object_get(doc, "label"), "positive"));
    mm->positive = xstrdup(pos ? pos : "1");
    const json_t *auc = json_object_get(json_object_get(doc, "metrics"), "auc");
    mm->ref_auc = json_is_number(auc) ? json_number_value(auc) : (double)NAN;
    const json_t *sc = json_object_get(json_object_get(doc, "profile"), "scores");
    const json_t *se = json_object_get(sc, "edges"), *scn = json_object_get(sc, "counts");
    if (json_array_size(scn) >= 1 && json_array_size(se) == json_array_size(scn) + 1) {
        mm->score_nbins = json_array_size(scn);
        mm->score_edges = xmalloc((mm->score_nbins + 1) * sizeof(double));
        mm->score_counts = xmalloc(mm->score_nbins * sizeof(double));
        for (size_t b = 0; b <= mm->score_nbins; b++)
            mm->score_edges[b] = json_number_value(json_array_get(se, b));
        for (size_t b = 0; b < mm->score_nbins; b++)
            mm->score_counts[b] = json_number_value(json_array_get(scn, b));
    }
    if (sha256)
        str_copy(mm->sha256, sha256, sizeof(mm->sha256));
    mon_model_t *old = hmap_get(p->models, dstate_model(ds));
    if (old)
        retire_model(p, old);
    old = hmap_put(p->models, dstate_model(ds), mm);
    if (old)
        mon_model_free(old);
    metric_inc(p->m_model_loads);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("model", dstate_model(ds)), LOG_STR("version", vbuf),
                        LOG_STR("spec", dstate_spec_name(ds)), LOG_STR("origin", origin),
                        LOG_INT("inputs", dstate_nfeatures(ds)), LOG_INT("sampled", nsampled)),
             "monitoring model");
    return 0;
}

static void url_escape(strbuf_t *sb, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            strbuf_putc(sb, (char)c);
        else
            strbuf_appendf(sb, "%%%02X", c);
    }
}

static void on_model_event(pipeline_t *p, const json_t *ev)
{
    const char *name = json_string_value(json_object_get(ev, "model"));
    const json_t *snap = json_object_get(ev, "snapshot");
    if (!name || !json_is_object(snap)) {
        metric_inc(p->m_bad);
        log_warn("%s: model_event without model or snapshot skipped", p->conf->models_topic);
        return;
    }
    mon_model_t *cur = hmap_get(p->models, name);
    if (json_is_true(json_object_get(snap, "deleted"))) {
        if (cur) {
            retire_model(p, cur);
            mon_model_free(hmap_del(p->models, name));
            log_info("model %s deleted: no longer monitored", name);
        }
        return;
    }
    const json_t *champ = json_object_get(json_object_get(snap, "aliases"), "champion");
    json_int_t version = 0;
    const json_t *dv = json_object_get(json_object_get(snap, "deployment"), "champion");
    if (json_is_integer(dv))
        version = json_integer_value(dv);
    else if (json_is_integer(json_object_get(champ, "version")))
        version = json_integer_value(json_object_get(champ, "version"));
    if (version <= 0)
        return; /* no champion yet */
    const char *sha = NULL;
    if (json_integer_value(json_object_get(champ, "version")) == version)
        sha = json_string_value(json_object_get(champ, "sha256"));
    size_t i;
    const json_t *vv;
    json_array_foreach(json_object_get(snap, "versions"), i, vv)
    {
        if (json_integer_value(json_object_get(vv, "version")) == version && !sha)
            sha = json_string_value(json_object_get(vv, "sha256"));
    }
    if (cur && cur->version == version)
        return; /* the champion did not change */
    if (!p->conf->registry_url || !*p->conf->registry_url) {
        log_warn("model %s: champion is now version %lld but registry_url is not set", name,
                 (long long)version);
        return;
    }
    strbuf_t url;
    strbuf_init(&url);
    strbuf_puts(&url, p->conf->registry_url);
    strbuf_puts(&url, "/api/v1/models/");
    url_escape(&url, name);
    strbuf_appendf(&url, "/versions/%lld/artifact", (long long)version);
    char *u = strbuf_detach(&url, NULL);
    httpc_resp_t r;
    char origin[600];
    snprintf(origin, sizeof(origin), "%s version %lld", name, (long long)version);
    if (httpc_request("GET", u, NULL, p->conf->registry_token, 10000, &r) || r.status != 200) {
        log_error("%s: artifact download failed (%s%s%ld); still monitoring the previous version",
                  origin, r.error, r.error[0] ? ", HTTP " : "HTTP ", r.status);
        metric_inc(p->m_model_fail);
        httpc_resp_free(&r);
        free(u);
        return;
    }
    free(u);
    char hex[65];
    sha256_hex(r.body, r.len, hex);
    if (sha && strcmp(hex, sha)) {
        log_error("%s: artifact sha256 %s does not match the registry's %s; ignored", origin, hex,
                  sha);
        metric_inc(p->m_model_fail);
        httpc_resp_free(&r);
        return;
    }
    json_error_t je;
    json_t *doc = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, &je);
    httpc_resp_free(&r);
    if (!doc) {
        log_error("%s: artifact is not JSON: line %d: %s", origin, je.line, je.text);
        metric_inc(p->m_model_fail);
        return;
    }
    (void)install_model(p, doc, version, hex, origin);
    json_decref(doc);
}

/* ---- input ---- */

static void handle_message(pipeline_t *p, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("consumer: %s", rd_kafka_message_errstr(m));
        return;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    p->cur_handle = kafka_tracker_begin(p->tr, topic, m->partition, m->offset);
    json_t *rec = NULL;
    if ((int64_t)m->len > p->conf->max_event_bytes) {
        metric_inc(p->m_bad);
        log_emit(LOG_LVL_WARN,
                 LOG_FIELDS(LOG_STR("topic", topic), LOG_INT("partition", m->partition),
                            LOG_INT("offset", m->offset)),
                 "record of %zu bytes over max_event_bytes skipped", m->len);
        goto done;
    }
    json_error_t je;
    memset(&je, 0, sizeof(je));
    rec = m->payload ? json_loadb(m->payload, m->len, JSON_REJECT_DUPLICATES, &je) : NULL;
    const char *schema = json_string_value(json_object_get(rec, "schema"));
    if (!rec || !schema) {
        metric_inc(p->m_bad);
        log_emit(LOG_LVL_WARN,
                 LOG_FIELDS(LOG_STR("topic", topic), LOG_INT("partition", m->partition),
                            LOG_INT("offset", m->offset)),
                 "record skipped: %s",
                 rec          ? "no schema field"
                 : m->payload ? je.text
                              : "empty record (no payload)");
        goto done;
    }
    if (p->conf->models_topic && !strcmp(topic, p->conf->models_topic) &&
        !strcmp(schema, "model_event/1"))
        on_model_event(p, rec);
    else if (!strcmp(schema, "features/1"))
        on_features(p, rec);
    else if (!strcmp(schema, "prediction/1"))
        on_prediction(p, rec);
    else if (!strcmp(schema, "label/1"))
        on_label(p, rec);
    else {
        metric_inc(p->m_bad);
        log_emit(LOG_LVL_WARN,
                 LOG_FIELDS(LOG_STR("topic", topic), LOG_INT("offset", m->offset),
                            LOG_STR("schema", schema)),
                 "record of an unexpected schema skipped");
    }
done:
    json_decref(rec);
    if (p->cur_handle && kafka_tracker_done(p->tr, p->cur_handle))
        lifecycle_fail(service_lifecycle(p->svc), MLOPS_EXIT_FAILURE, "cannot store an offset");
    p->cur_handle = NULL;
}

static void on_input(void *opaque)
{
    pipeline_t *p = opaque;
    if (p->draining)
        return;
    int i;
    for (i = 0; i < 500; i++) {
        rd_kafka_message_t *m = kafka_consumer_poll(p->kc, 0);
        if (!m)
            break;
        handle_message(p, m);
        rd_kafka_message_destroy(m);
    }
    join_expire(p->join, wall_ms());
    metric_set(p->m_pending, (double)join_pending(p->join));
    metric_set(p->m_unjoined_label, (double)join_expired_labels(p->join));
    state_save(p);
    if (i == 500)
        kafka_watch_again(p->watch);
    if (kafka_consumer_fatal(p->kc) || kafka_producer_fatal(p->kp)) {
        char why[768];
        int code = kafka_fatal_cause(why, sizeof(why));
        lifecycle_fail(service_lifecycle(p->svc), code, "%s%s", why,
                       code == MLOPS_EXIT_USAGE ? "" : ": exiting to be restarted");
    }
}

/* ---- GET /api/v1/drift ---- */

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *model_json(const mon_model_t *mm)
{
    json_t *j = dstate_json(mm->ds);
    json_t *vars = json_array();
    size_t it = 0;
    const char *role;
    void *v;
    while (hmap_next(mm->variants, &it, &role, &v)) {
        const perf_t *pf = v;
        json_t *ws = json_array();
        for (size_t w = 0; w < dstate_nwindows(mm->ds); w++) {
            if (dstate_window_span(mm->ds, w))
                continue; /* predictions and labels: count windows only */
            const perf_score_drift_t *sd = perf_score_drift(pf, w);
            const perf_metrics_t *pm = perf_metrics(pf, w);
            json_t *cal = json_array();
            for (size_t b = 0; pm->n && b < PERF_CAL_BINS; b++)
                if (pm->cal_n[b])
                    json_array_append_new(cal, json_pack("{s:f, s:f, s:I, s:f, s:f}", "lo",
                                                         (double)b * (1.0 / PERF_CAL_BINS), "hi",
                                                         (double)(b + 1) * (1.0 / PERF_CAL_BINS),
                                                         "n", (json_int_t)pm->cal_n[b],
                                                         "mean_score", pm->cal_score[b],
                                                         "positive_rate", pm->cal_rate[b]));
            json_array_append_new(
                ws,
                json_pack("{s:s, s:{s:I, s:I, s:o, s:o, s:b}, s:{s:I, s:I, s:I, s:o, s:o, "
                          "s:o, s:o, s:o, s:o, s:o, s:o}}",
                          "window", dstate_window_name(mm->ds, w), "prediction_drift", "ticks",
                          (json_int_t)perf_score_ticks(pf, w), "n", (json_int_t)sd->n,
                          "jensenshannon", num_or_null(sd->js), "psi", num_or_null(sd->psi),
                          "drifted", sd->drifted, "performance", "ticks",
                          (json_int_t)perf_label_ticks(pf, w), "n", (json_int_t)pm->n, "positives",
                          (json_int_t)pm->npos, "auc", num_or_null(pm->auc), "accuracy",
                          num_or_null(pm->accuracy), "log_loss", num_or_null(pm->log_loss), "brier",
                          num_or_null(pm->brier), "auc_drop", num_or_null(pm->auc_drop), "ece",
                          num_or_null(pm->ece), "mce", num_or_null(pm->mce), "calibration", cal));
        }
        static const char *const ddm[] = {"ok", "warning", "drift"};
        json_t *adw = json_pack("{s:I, s:o, s:I}", "width", (json_int_t)perf_adwin_width(pf),
                                "error_rate", num_or_null(perf_adwin_mean(pf)), "drifts",
                                (json_int_t)perf_adwin_drifts(pf));
        json_array_append_new(vars, json_pack("{s:s, s:I, s:s, s:I, s:o, s:o}", "role", role,
                                              "labelled", (json_int_t)perf_labelled(pf), "ddm",
                                              ddm[perf_ddm_state(pf)], "ddm_drifts",
                                              (json_int_t)perf_ddm_drifts(pf), "adwin", adw,
                                              "windows", ws));
    }
    json_object_set_new(j, "reference_auc", num_or_null(mm->ref_auc));
    json_object_set_new(j, "variants", vars);
    return j;
}

static void on_drift(struct evhttp_request *req, void *arg)
{
    pipeline_t *p = arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        http_reply_error(req, 405, "method_not_allowed", "use GET on /api/v1/drift");
        return;
    }
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query && evhttp_parse_query_str(query, &q)) {
        http_reply_error(req, 400, "bad_query", "cannot parse the query string");
        return;
    }
    const char *want = evhttp_find_header(&q, "model");
    json_t *arr = json_array();
    size_t it = 0;
    const char *name;
    void *v;
    while (hmap_next(p->models, &it, &name, &v))
        if (!want || !strcmp(want, name))
            json_array_append_new(arr, model_json(v));
    if (want && json_array_size(arr) == 0) {
        json_decref(arr);
        http_reply_error(req, 404, "not_found", "model %s is not monitored", want);
    } else {
        http_reply_json(
            req, 200,
            json_pack("{s:o, s:I}", "models", arr, "generated_at_ms", (json_int_t)wall_ms()));
    }
    evhttp_clear_headers(&q);
}

/* ---- life cycle ---- */

static char **split_list(const char *s, size_t *n)
{
    *n = 0;
    if (!s || !*s)
        return NULL;
    char **out = NULL;
    char *dup = xstrdup(s), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len && tok[len - 1] == ' ')
            tok[--len] = 0;
        if (!len)
            continue;
        out = xrealloc(out, (*n + 1) * sizeof(char *));
        out[(*n)++] = xstrdup(tok);
    }
    free(dup);
    return out;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

pipeline_t *pipeline_new(service_t *svc, const pipeline_conf_t *c)
{
    char err[1024];
    pipeline_t *p = xcalloc(1, sizeof(*p));
    p->svc = svc;
    p->conf = c;
    p->models = hmap_new(mon_model_free);
    p->retrain_last = hmap_new(free);
    metrics_t *m = service_metrics(svc);
    char l[128];
    p->m_records =
        metrics_counter(m, "mlops_monitor_records_total", "features/1 records read.", NULL);
    p->m_bad =
        metrics_counter(m, "mlops_monitor_bad_records_total",
                        "Input records skipped (unreadable, too large, wrong schema).", NULL);
    p->m_unmatched = metrics_counter(m, "mlops_monitor_unmatched_records_total",
                                     "features/1 records no monitored model's spec matches.", NULL);
    p->m_ticks = metrics_counter(m, "mlops_monitor_ticks_total", "Window ticks, all models.", NULL);
    p->m_alerts =
        metrics_counter(m, "mlops_monitor_alerts_total", "alert/1 records produced.", NULL);
    p->m_retrain = metrics_counter(m, "mlops_monitor_retrain_requests_total",
                                   "train_request/1 records filed.", NULL);
    p->m_retrain_skip = metrics_counter(m, "mlops_monitor_retrain_cooldown_total",
                                        "Retrain alerts inside the cooldown (not filed).", NULL);
    p->m_model_loads =
        metrics_counter(m, "mlops_monitor_model_loads_total", "Reference profiles loaded.", NULL);
    p->m_model_fail = metrics_counter(m, "mlops_monitor_model_load_failures_total",
                                      "Champion artifacts that could not be loaded.", NULL);
    p->m_redis_fail =
        metrics_counter(m, "mlops_monitor_redis_failures_total", "Redis calls that failed.",
                        metrics_labels(l, sizeof(l), "client", "monitor", NULL));

    const struct {
        const char *key, *val;
    } need[] = {{"features_topic", c->features_topic},
                {"alerts_topic", c->alerts_topic},
                {"train_requests_topic", c->train_requests_topic},
                {"group_id", c->group_id},
                {"alert_state_key", c->alert_state_key}};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(need); i++)
        if (!need[i].val || !*need[i].val) {
            log_fatal("%s: must not be empty", need[i].key);
            goto fail;
        }
    p->join = join_new((size_t)c->max_pending_labels, c->label_lateness_ms, on_joined, p);
    p->m_predictions =
        metrics_counter(m, "mlops_monitor_predictions_total", "prediction/1 records read.", NULL);
    p->m_labels = metrics_counter(m, "mlops_monitor_labels_total", "label/1 records read.", NULL);
    p->m_joined = metrics_counter(m, "mlops_monitor_labelled_predictions_total",
                                  "Predictions joined with their label.", NULL);
    p->m_pending = metrics_gauge(m, "mlops_monitor_join_pending",
                                 "Event ids waiting for a label or a prediction.", NULL);
    p->m_unjoined_label = metrics_gauge(m, "mlops_monitor_labels_unjoined",
                                        "Labels dropped without a prediction (lateness).", NULL);
    int nw = dstate_parse_windows(c->windows, p->wins, err, sizeof(err));
    if (nw < 0) {
        log_fatal("%s", err);
        goto fail;
    }
    p->nwins = (size_t)nw;
    p->rules = c->rules && *c->rules ? alert_rules_load(c->rules, err, sizeof(err))
                                     : alert_rules_default();
    if (!p->rules) {
        log_fatal("rules: %s", err);
        goto fail;
    }
    /* without a rules file, the dataset-drift rule uses the configured share */
    if (!(c->rules && *c->rules))
        for (size_t i = 0; i < p->rules->nrules; i++)
            if (!strcmp(p->rules->rules[i].metric, "dataset_drift_share"))
                p->rules->rules[i].threshold = c->drift_share;
    p->retrain_alerts = split_list(c->retrain_alerts, &p->nretrain);
    p->engine = alert_engine_new(p->rules, on_alert, p);
    redis_opts_t ro = {.url = c->redis_url,
                       .timeout_ms = c->redis_timeout_ms,
                       .metrics = m,
                       .metrics_labels = "client=\"monitor\""};
    p->rc = redis_client_new(&ro, err, sizeof(err));
    if (!p->rc) {
        log_fatal("redis_url: %s", err);
        goto fail;
    }
    state_restore(p);

    size_t nfiles;
    char **files = split_list(c->model_files, &nfiles);
    for (size_t i = 0; i < nfiles; i++) {
        size_t len;
        char *txt = file_read_all(files[i], 256u << 20, &len, err, sizeof(err));
        json_error_t je;
        json_t *doc = txt ? json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je) : NULL;
        free(txt);
        if (!doc) {
            if (txt)
                log_fatal("model: %s:%d: %s", files[i], je.line, je.text);
            else
                log_fatal("model: %s", err);
            free_list(files, nfiles);
            goto fail;
        }
        int rc = install_model(p, doc, 0, NULL, files[i]);
        json_decref(doc);
        if (rc) {
            free_list(files, nfiles);
            goto fail;
        }
    }
    free_list(files, nfiles);

    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(service_cfg(svc), &nprops);
    kafka_opts_t ko = {.brokers = c->kafka_brokers,
                       .client_id = "mlops-monitor",
                       .props = props,
                       .nprops = nprops,
                       .metrics = m};
    p->kp = kafka_producer_new(&ko, NULL, on_delivery, p, err, sizeof(err));
    if (!p->kp) {
        log_fatal("Kafka: %s", err);
        goto fail;
    }
    const char *topics[4] = {c->features_topic};
    size_t ntopics = 1;
    if (c->models_topic && *c->models_topic)
        topics[ntopics++] = c->models_topic;
    if (c->predictions_topic && *c->predictions_topic)
        topics[ntopics++] = c->predictions_topic;
    if (c->labels_topic && *c->labels_topic)
        topics[ntopics++] = c->labels_topic;
    kafka_consumer_opts_t co = {
        .group_id = c->group_id, .topics = topics, .ntopics = ntopics, .auto_commit = true};
    p->kc = kafka_consumer_new(&ko, &co, err, sizeof(err));
    if (!p->kc) {
        log_fatal("Kafka: %s", err);
        goto fail;
    }
    p->tr = kafka_tracker_new(p->kc);
    p->pwatch = kafka_producer_watch(p->kp, service_base(svc), err, sizeof(err));
    p->watch = p->pwatch
                   ? kafka_consumer_watch(p->kc, service_base(svc), on_input, p, err, sizeof(err))
                   : NULL;
    if (!p->watch) {
        log_fatal("%s", err);
        goto fail;
    }
    http_route(service_http(svc), EVHTTP_REQ_GET | EVHTTP_REQ_POST, "/api/v1/drift", on_drift, p);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("features", c->features_topic),
                        LOG_STR("models", c->models_topic ? c->models_topic : ""),
                        LOG_STR("alerts", c->alerts_topic), LOG_STR("windows", c->windows)),
             "drift pipeline ready: %zu model(s)", hmap_size(p->models));
    return p;
fail:
    pipeline_destroy(p);
    return NULL;
}

void pipeline_drain(pipeline_t *p)
{
    if (!p)
        return;
    p->draining = true;
    state_save(p);
    if (p->kp && kafka_producer_flush(p->kp, 10000))
        log_warn("drain: outputs not all acknowledged; their inputs will be re-read");
    err_t *e = NULL;
    if (p->kc && kafka_consumer_commit(p->kc, &e)) {
        log_warn("drain: %s", e ? e->msg : "?");
        err_destroy(e);
    }
}

void pipeline_destroy(pipeline_t *p)
{
    if (!p)
        return;
    if (p->engine)
        state_save(p);
    kafka_watch_destroy(p->watch);
    kafka_watch_destroy(p->pwatch);
    kafka_tracker_destroy(p->tr);
    kafka_consumer_close(p->kc);
    kafka_producer_destroy(p->kp);
    alert_engine_destroy(p->engine);
    alert_rules_destroy(p->rules);
    free_list(p->retrain_alerts, p->nretrain);
    redis_client_destroy(p->rc);
    hmap_destroy(p->models);
    hmap_destroy(p->retrain_last);
    join_destroy(p->join);
    free(p);
}
