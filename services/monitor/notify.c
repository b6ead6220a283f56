/*
 * mlops-monitor notify: the Slack notifier.
 *
 * Consumes `alerts` (alert/1, keyed by fingerprint) and posts firing and
 * resolved alerts to every webhook in slack_webhook_urls. One sender thread
 * per webhook owns a queue, a token bucket (rate, burst) and a libcurl
 * handle: whatever is queued when a token is due goes out as one digest
 * message, so a burst of alerts becomes a few messages that still count
 * every alert. A 429 waits for its Retry-After; 5xx and transport errors
 * (refused, timeout, TLS) are retried with capped exponential backoff and
 * jitter, for as long as it takes; any other status is permanent: the
 * alert goes to `alerts.dlq` (alert_dlq/1) with the status and the start
 * of the body, without waiting on a retry timer.
 *
 * Nothing is lost on a crash: the offset of an alert is stored (tracker)
 * only after every webhook delivered it or its dead letter was acknowledged
 * by the broker, so a restart re-reads and re-sends what was pending (at
 * least once: Slack may see a message twice, never zero times).
 *
 * Alertmanager's notification rules on top: a silence (kept in Redis by
 * the monitor's API, `mlopsctl alerts silence`) mutes matching alerts; an
 * inhibit rule (default: a firing dataset_drift mutes feature_drift of the
 * same model) mutes while its source fires; a firing alert is repeated
 * every repeat_interval_ms until it resolves, and one that was muted goes
 * out once its silence or inhibitor is gone. The set of firing alerts and
 * when each was last sent live in Redis, so a restart neither forgets a
 * firing alert nor re-sends one that was already delivered.
 *
 * Threads: the libevent loop (Kafka, HTTP, completions) and the senders. A
 * sender touches only its queue (under the mutex) and its own client; it
 * hands outcomes back through a completion list and a pipe, so the tracker
 * and the producer are only used on the loop's thread.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kafka.h"
#include "log.h"
#include "alerts.h"
#include "hmap.h"
#include "mjson.h"
#include "monitor.h"
#include "redis.h"
#include "service.h"
#include "slack.h"

typedef struct notify_conf {
    SERVICE_COMMON_FIELDS;
    char *slack_webhook_urls;
    char *slack_ca_file;
    char *alerts_topic;
    char *alerts_dlq_topic;
    char *group_id;
    double rate_per_s;
    int64_t burst;
    int64_t group_wait_ms;
    int64_t retry_base_ms;
    int64_t retry_max_ms;
    int64_t max_retry_after_ms;
    int64_t connect_timeout_ms;
    int64_t timeout_ms;
    int64_t max_alert_bytes;
    int64_t digest_budget;
    char *redis_url;
    int64_t redis_timeout_ms;
    char *rules;
    char *silences_key;
    int64_t repeat_interval_ms;
    int64_t silence_refresh_ms;
} notify_conf_t;

static const cfg_item_t notify_items[] = {
    SERVICE_COMMON_ITEMS(notify_conf_t, "9105"),
    CFG_ITEM(notify_conf_t, slack_webhook_urls, CFG_T_STR, NULL, CFG_SECRET | CFG_REQUIRED,
             "Slack incoming-webhook URLs, comma-separated (a secret: never logged)"),
    CFG_ITEM(notify_conf_t, slack_ca_file, CFG_T_STR, NULL, 0,
             "PEM file of extra CAs to trust (default: the system's)"),
    CFG_ITEM(notify_conf_t, alerts_topic, CFG_T_STR, "alerts", 0, "topic of alert/1 records"),
    CFG_ITEM(notify_conf_t, alerts_dlq_topic, CFG_T_STR, "alerts.dlq", 0,
             "topic of alert_dlq/1 records (permanent failures)"),
    CFG_ITEM(notify_conf_t, group_id, CFG_T_STR, "mlops-notify", 0, "consumer group"),
    CFG_ITEM_RANGE(notify_conf_t, rate_per_s, CFG_T_DBL, "1", 0,
                   "messages per second per webhook (Slack allows about 1)", 0.01, 100),
    CFG_ITEM_RANGE(notify_conf_t, burst, CFG_T_INT, "2", 0,
                   "messages a webhook may send at once after a quiet period", 1, 100),
    CFG_ITEM_RANGE(notify_conf_t, group_wait_ms, CFG_T_INT, "500", 0,
                   "wait this long after the first alert of a quiet period, to send a digest", 0,
                   600000),
    CFG_ITEM_RANGE(notify_conf_t, retry_base_ms, CFG_T_INT, "1000", 0,
                   "first retry delay after a 5xx or network error (doubles, with jitter)", 10,
                   600000),
    CFG_ITEM_RANGE(notify_conf_t, retry_max_ms, CFG_T_INT, "60000", 0, "cap of the retry delay", 10,
                   3600000),
    CFG_ITEM_RANGE(notify_conf_t, max_retry_after_ms, CFG_T_INT, "600000", 0,
                   "longest Retry-After honoured (longer ones wait this long)", 0, 86400000),
    CFG_ITEM_RANGE(notify_conf_t, connect_timeout_ms, CFG_T_INT, "3000", 0,
                   "connect timeout of a webhook request", 100, 600000),
    CFG_ITEM_RANGE(notify_conf_t, timeout_ms, CFG_T_INT, "10000", 0,
                   "total timeout of a webhook request", 100, 600000),
    CFG_ITEM_RANGE(notify_conf_t, max_alert_bytes, CFG_T_INT, "65536", 0,
                   "larger alert records are dead-lettered unread", 256, 16777216),
    CFG_ITEM_RANGE(notify_conf_t, digest_budget, CFG_T_INT, "11000", 0,
                   "characters of one message's blocks (Slack refuses much more)", 500, 40000),
    CFG_ITEM(notify_conf_t, redis_url, CFG_T_STR, "redis://127.0.0.1:6380", CFG_SECRET,
             "Redis holding silences and the notifier's firing set"),
    CFG_ITEM_RANGE(notify_conf_t, redis_timeout_ms, CFG_T_INT, "200", 0,
                   "deadline of each Redis call", 1, 60000),
    CFG_ITEM(notify_conf_t, rules, CFG_T_STR, NULL, 0,
             "alert rules file (its inhibit list applies; default: the built-in rules)"),
    CFG_ITEM(notify_conf_t, silences_key, CFG_T_STR, "mlops:monitor:silences", 0,
             "Redis hash of silences (written by the monitor's API)"),
    CFG_ITEM_RANGE(notify_conf_t, repeat_interval_ms, CFG_T_INT, "14400000", 0,
                   "send a still-firing alert again after this long (Alertmanager: 4h)", 1000,
                   604800000),
    CFG_ITEM_RANGE(notify_conf_t, silence_refresh_ms, CFG_T_INT, "2000", 0,
                   "how often silences are re-read from Redis", 100, 600000),
};

typedef struct ditem {
    json_t *alert;
    char fp[129]; /* the alert's fingerprint */
    bool firing;
    char *key;
    size_t keylen;
    void *handle; /* tracker handle: one hold per webhook */
    int refs;     /* webhooks still to finish (loop thread only) */
} ditem_t;

typedef struct done_ev {
    ditem_t *it;
    int hook;
    slack_verdict_t verdict;
    slack_result_t res;
    struct done_ev *next;
} done_ev_t;

typedef struct notify notify_t;

typedef struct hook {
    notify_t *nt;
    int idx;
    char *url;
    char redacted[320];
    pthread_t th;
    bool started, cv_init;
    /* under nt->mu */
    pthread_cond_t cv;
    ditem_t **q;
    size_t qn, qcap;
    int64_t first_ms;   /* arrival of the oldest queued item */
    int64_t not_before; /* retry timer */
    /* sender thread only */
    slack_bucket_t bucket;
    int attempt;
    uint64_t rng;
    slack_client_t *client;
    metric_t *m_ok, *m_retry, *m_perm, *m_queue, *m_alerts_sent, *m_seconds;
} hook_t;

struct notify {
    notify_conf_t *conf;
    service_t *svc;
    hook_t *hooks;
    int nhooks;
    pthread_mutex_t mu;
    bool quit;
    done_ev_t *done_head, *done_tail;
    int pipefd[2];
    struct event *ev_done;
    struct event *ev_drain;
    kafka_consumer_t *kc;
    kafka_tracker_t *tr;
    kafka_producer_t *kp;
    kafka_watch_t *watch, *pwatch;
    size_t in_flight; /* items not yet finished on every webhook */
    bool draining;
    alert_rules_t *rules;
    redis_client_t *rc;
    char *firing_key;
    hmap_t *firing; /* fingerprint -> firing_t */
    alert_silence_t **silences;
    size_t nsilences;
    int64_t silences_at;
    struct event *ev_tick;
    metric_t *m_delivered, *m_dead, *m_skipped, *m_malformed, *m_pending, *m_silenced, *m_inhibited,
        *m_repeated, *m_duplicate, *m_firing, *m_state_failed;
};

/* A firing alert the notifier knows of. */
typedef struct firing {
    json_t *alert;
    json_t *labels;       /* alert_match_labels() */
    int64_t last_sent_ms; /* wall clock; 0 = never delivered */
    bool muted;           /* not sent when it arrived: silenced or inhibited */
    int queued;           /* items of it not yet finished */
} firing_t;

/* ---- sender threads ---------------------------------------------------------------- */

static void push_done(notify_t *nt, ditem_t *it, int hook, slack_verdict_t v,
                      const slack_result_t *r)
{
    done_ev_t *d = xcalloc(1, sizeof(*d));
    d->it = it;
    d->hook = hook;
    d->verdict = v;
    if (r)
        d->res = *r;
    if (nt->done_tail)
        nt->done_tail->next = d;
    else
        nt->done_head = d;
    nt->done_tail = d;
}

static void wake_loop(notify_t *nt)
{
    char c = 1;
    ssize_t w = write(nt->pipefd[1], &c, 1);
    (void)w; /* a full pipe already holds a wake-up */
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

static void *sender_main(void *arg)
{
    hook_t *h = arg;
    notify_t *nt = h->nt;
    const notify_conf_t *c = nt->conf;
    pthread_mutex_lock(&nt->mu);
    while (!nt->quit) {
        if (h->qn == 0) {
            pthread_cond_wait(&h->cv, &nt->mu);
            continue;
        }
        int64_t now = mono_ms();
        int64_t wait = h->first_ms + c->group_wait_ms - now;
        int64_t bw = slack_bucket_wait_ms(&h->bucket, now);
        if (bw > wait)
            wait = bw;
        if (h->not_before - now > wait)
            wait = h->not_before - now;
        if (wait > 0) {
            timed_wait(&h->cv, &nt->mu, wait);
            continue;
        }
        /* take everything queued: one digest */
        size_t n = h->qn;
        ditem_t **batch = xcalloc(n, sizeof(*batch));
        memcpy(batch, h->q, n * sizeof(*batch));
        h->qn = 0;
        metric_set(h->m_queue, 0);
        slack_bucket_take(&h->bucket, now);
        pthread_mutex_unlock(&nt->mu);

        json_t **alerts = xcalloc(n, sizeof(*alerts));
        for (size_t i = 0; i < n; i++)
            alerts[i] = batch[i]->alert;
        size_t shown = 0;
        char *payload = slack_render(alerts, n, (size_t)c->digest_budget, &shown);
        free(alerts);
        slack_result_t r;
        int64_t t0 = mono_us();
        slack_verdict_t v = slack_post(h->client, h->url, payload, &r);
        metric_observe(h->m_seconds, (double)(mono_us() - t0) / 1e6);
        free(payload);
        log_emit(v == SLACK_DELIVERED ? LOG_LVL_INFO : LOG_LVL_WARN,
                 LOG_FIELDS(LOG_STR("webhook", h->redacted), LOG_INT("alerts", (long long)n),
                            LOG_INT("shown", (long long)shown), LOG_INT("status", r.status),
                            LOG_STR("outcome", slack_verdict_name(v)), LOG_STR("error", r.error)),
                 "slack message: %zu alert(s), %s", n, slack_verdict_name(v));

        pthread_mutex_lock(&nt->mu);
        if (v == SLACK_RETRY) {
            metric_inc(h->m_retry);
            int64_t delay =
                slack_backoff_ms(h->attempt++, c->retry_base_ms, c->retry_max_ms, &h->rng);
            if (r.retry_after_ms >= 0)
                delay = r.retry_after_ms < c->max_retry_after_ms ? r.retry_after_ms
                                                                 : c->max_retry_after_ms;
            h->not_before = mono_ms() + delay;
            /* back at the front, before anything queued meanwhile */
            if (h->qn + n > h->qcap) {
                h->qcap = h->qn + n;
                h->q = xrealloc(h->q, h->qcap * sizeof(*h->q));
            }
            memmove(h->q + n, h->q, h->qn * sizeof(*h->q));
            memcpy(h->q, batch, n * sizeof(*batch));
            if (h->qn == 0)
                h->first_ms = 0; /* no second group wait for a retry */
            h->qn += n;
            metric_set(h->m_queue, (double)h->qn);
            log_emit(LOG_LVL_WARN,
                     LOG_FIELDS(LOG_STR("webhook", h->redacted), LOG_INT("delay_ms", delay),
                                LOG_INT("attempt", h->attempt)),
                     "slack webhook failed (%s%s%ld): retrying in %" PRId64 " ms",
                     r.error[0] ? r.error : "HTTP ", r.error[0] ? ", status " : "", r.status,
                     delay);
        } else {
            h->attempt = 0;
            if (v == SLACK_DELIVERED) {
                metric_inc(h->m_ok);
                metric_add(h->m_alerts_sent, (double)n);
            } else {
                metric_inc(h->m_perm);
            }
            for (size_t i = 0; i < n; i++)
                push_done(nt, batch[i], h->idx, v, &r);
            wake_loop(nt);
        }
        free(batch);
    }
    pthread_mutex_unlock(&nt->mu);
    return NULL;
}

/* ---- the loop side ----------------------------------------------------------------- */

static void item_free(ditem_t *it)
{
    json_decref(it->alert);
    free(it->key);
    free(it);
}

static void tracker_release(notify_t *nt, void *handle)
{
    if (handle && kafka_tracker_done(nt->tr, handle))
        lifecycle_fail(service_lifecycle(nt->svc), MLOPS_EXIT_FAILURE, "cannot store an offset");
}

/* Produce an alert_dlq/1 record; its delivery report releases @p handle. */
static void dead_letter(notify_t *nt, const char *key, size_t keylen, json_t *alert,
                        const char *original, size_t original_len, const char *webhook, long status,
                        const char *body, const char *error, void *handle)
{
    char ts[32];
    json_t *rec =
        json_pack("{s:s,s:s,s:I,s:s,s:s,s:s}", "schema", "alert_dlq/1", "webhook", webhook,
                  "status", (json_int_t)status, "body", body ? body : "", "error",
                  error ? error : "", "failed_at", fmt_rfc3339(wall_us(), ts, sizeof(ts)));
    if (alert)
        json_object_set(rec, "alert", alert);
    else
        json_object_set_new(
            rec, "original",
            json_stringn_nocheck(original, original_len > 65536 ? 65536 : original_len));
    char *out = json_dumps(rec, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(rec);
    kafka_tracker_hold(handle);
    err_t *e = NULL;
    if (!out || kafka_produce(nt->kp, nt->conf->alerts_dlq_topic, RD_KAFKA_PARTITION_UA, key,
                              keylen, out, strlen(out), handle, &e)) {
        lifecycle_fail(service_lifecycle(nt->svc), MLOPS_EXIT_FAILURE, "cannot produce to %s: %s",
                       nt->conf->alerts_dlq_topic, e ? e->msg : "JSON encoding failed");
        err_destroy(e);
    }
    free(out);
    metric_inc(nt->m_dead);
}

/* ---- firing set, silences, inhibition ---------------------------------------------- */

static void firing_free(void *p)
{
    firing_t *f = p;
    if (!f)
        return;
    json_decref(f->alert);
    json_decref(f->labels);
    free(f);
}

static void state_failed(notify_t *nt, const char *what, err_t *e)
{
    metric_inc(nt->m_state_failed);
    log_warn("Redis: cannot %s (kept in memory only): %s", what, e ? e->msg : "?");
    err_destroy(e);
}

static void firing_store(notify_t *nt, const char *fp, const firing_t *f)
{
    json_t *j = json_pack("{s:O,s:I,s:b}", "alert", f->alert, "last_sent_ms",
                          (json_int_t)f->last_sent_ms, "muted", f->muted);
    char *txt = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    const char *argv[] = {"HSET", nt->firing_key, fp, txt};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(nt->rc, &e, 4, argv, NULL);
    if (!r)
        state_failed(nt, "store a firing alert", e);
    else
        freeReplyObject(r);
    free(txt);
}

static void firing_forget(notify_t *nt, const char *fp)
{
    const char *argv[] = {"HDEL", nt->firing_key, fp};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(nt->rc, &e, 3, argv, NULL);
    if (!r)
        state_failed(nt, "forget a resolved alert", e);
    else
        freeReplyObject(r);
}

static void firing_load(notify_t *nt)
{
    const char *argv[] = {"HGETALL", nt->firing_key};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(nt->rc, &e, 2, argv, NULL);
    if (!r) {
        state_failed(nt, "load the firing set at start", e);
        return;
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        json_t *j = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0, NULL);
        json_t *a = json_object_get(j, "alert");
        if (json_is_object(a)) {
            firing_t *f = xcalloc(1, sizeof(*f));
            f->alert = json_incref(a);
            f->labels = alert_match_labels(a);
            f->last_sent_ms = json_integer_value(json_object_get(j, "last_sent_ms"));
            f->muted = json_is_true(json_object_get(j, "muted"));
            firing_free(hmap_put(nt->firing, r->element[i]->str, f));
        }
        json_decref(j);
    }
    freeReplyObject(r);
    metric_set(nt->m_firing, (double)hmap_size(nt->firing));
    if (hmap_size(nt->firing))
        log_info("restored %zu firing alert(s) from Redis", hmap_size(nt->firing));
}

static void silences_refresh(notify_t *nt, bool force)
{
    int64_t now = mono_ms();
    if (!force && now - nt->silences_at < nt->conf->silence_refresh_ms)
        return;
    nt->silences_at = now;
    const char *argv[] = {"HGETALL", nt->conf->silences_key};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(nt->rc, &e, 2, argv, NULL);
    if (!r) {
        state_failed(nt, "read silences (the last ones read still apply)", e);
        return;
    }
    for (size_t i = 0; i < nt->nsilences; i++)
        alert_silence_destroy(nt->silences[i]);
    free(nt->silences);
    nt->silences =
        xcalloc(r->type == REDIS_REPLY_ARRAY ? r->elements / 2 + 1 : 1, sizeof(*nt->silences));
    nt->nsilences = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        json_t *j = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0, NULL);
        char err[256];
        alert_silence_t *s = j ? alert_silence_parse(j, err, sizeof(err)) : NULL;
        if (s)
            nt->silences[nt->nsilences++] = s;
        else
            log_warn("ignoring silence %s: %s", r->element[i]->str, j ? err : "not JSON");
        json_decref(j);
    }
    freeReplyObject(r);
}

static const char *muted_by(notify_t *nt, const json_t *labels, const char *fp)
{
    int64_t now = wall_ms();
    for (size_t i = 0; i < nt->nsilences; i++)
        if (alert_silence_mutes(nt->silences[i], labels, now))
            return "silenced";
    size_t n = hmap_size(nt->firing), k = 0, it = 0;
    json_t **firing = xcalloc(n + 1, sizeof(json_t *));
    const char *key;
    void *v;
    while (hmap_next(nt->firing, &it, &key, &v))
        if (!fp || strcmp(key, fp))
            firing[k++] = ((firing_t *)v)->labels;
    bool inh = alert_inhibited(nt->rules, labels, firing, k);
    free(firing);
    return inh ? "inhibited" : NULL;
}

static void enqueue(notify_t *nt, json_t *alert, const char *fp, size_t fplen, void *handle);

/* Repeat firing alerts that are due, and send those whose mute ended. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    notify_t *nt = arg;
    if (nt->draining)
        return;
    silences_refresh(nt, false);
    int64_t now = wall_ms();
    size_t it = 0;
    const char *fp;
    void *v;
    size_t n = hmap_size(nt->firing), k = 0;
    char **due = xcalloc(n + 1, sizeof(char *));
    while (hmap_next(nt->firing, &it, &fp, &v)) {
        firing_t *f = v;
        if (f->queued)
            continue;
        /* never sent and not muted: its input offset is not committed yet,
         * so it is queued, or comes again from Kafka after a restart */
        if (f->last_sent_ms == 0 && !f->muted)
            continue;
        if (f->last_sent_ms && now - f->last_sent_ms < nt->conf->repeat_interval_ms)
            continue;
        if (muted_by(nt, f->labels, fp))
            continue;
        due[k++] = xstrdup(fp);
    }
    for (size_t i = 0; i < k; i++) {
        firing_t *f = hmap_get(nt->firing, due[i]);
        metric_inc(nt->m_repeated);
        log_emit(LOG_LVL_INFO,
                 LOG_FIELDS(LOG_STR("fingerprint", due[i]),
                            LOG_STR("why", f->last_sent_ms ? "repeat_interval" : "unmuted")),
                 "sending a firing alert again");
        f->muted = false;
        enqueue(nt, json_incref(f->alert), due[i], strlen(due[i]), NULL);
        free(due[i]);
    }
    free(due);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    notify_t *nt = arg;
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    pthread_mutex_lock(&nt->mu);
    done_ev_t *d = nt->done_head;
    nt->done_head = nt->done_tail = NULL;
    pthread_mutex_unlock(&nt->mu);
    while (d) {
        done_ev_t *next = d->next;
        ditem_t *it = d->it;
        if (d->verdict == SLACK_PERMANENT) {
            char body[SLACK_BODY_KEEP + 1];
            memcpy(body, d->res.body, d->res.body_len);
            body[d->res.body_len] = 0;
            /* the body is from the network: keep it valid UTF-8 text */
            json_t *s = json_stringn(body, d->res.body_len);
            const char *safe = s ? json_string_value(s) : "(body is not UTF-8)";
            log_emit(LOG_LVL_WARN,
                     LOG_FIELDS(LOG_STR("webhook", nt->hooks[d->hook].redacted),
                                LOG_INT("status", d->res.status)),
                     "slack refused an alert for good: dead-lettered");
            dead_letter(nt, it->key, it->keylen, it->alert, NULL, 0, nt->hooks[d->hook].redacted,
                        d->res.status, safe, "permanent HTTP status", it->handle);
            json_decref(s);
        } else {
            metric_inc(nt->m_delivered);
        }
        tracker_release(nt, it->handle);
        if (--it->refs == 0) {
            /* finished everywhere: a firing alert was sent (or dead-lettered,
             * which must not be retried by the repeat timer either) */
            firing_t *f = it->firing ? hmap_get(nt->firing, it->fp) : NULL;
            const char *a = f ? json_string_value(json_object_get(f->alert, "starts_at")) : NULL;
            const char *b = json_string_value(json_object_get(it->alert, "starts_at"));
            if (f && ((!a && !b) || (a && b && !strcmp(a, b)))) {
                if (f->queued > 0)
                    f->queued--;
                f->last_sent_ms = wall_ms();
                firing_store(nt, it->fp, f);
            }
            item_free(it);
            nt->in_flight--;
            metric_set(nt->m_pending, (double)nt->in_flight);
        }
        free(d);
        d = next;
    }
}

static void on_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque)
{
    notify_t *nt = opaque;
    if (rkm->err) {
        lifecycle_fail(service_lifecycle(nt->svc), MLOPS_EXIT_FAILURE,
                       "dead letter to %s failed for good: %s", rd_kafka_topic_name(rkm->rkt),
                       rd_kafka_err2str(rkm->err));
        return;
    }
    tracker_release(nt, msg_opaque);
}

/* One input message: validate, update the firing set, then queue it on
 * every webhook unless it is muted. */
static void handle_message(notify_t *nt, rd_kafka_message_t *m)
{
    void *handle =
        kafka_tracker_begin(nt->tr, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
    const char *key = m->key ? m->key : "";
    size_t keylen = m->key ? m->key_len : 0;
    err_t *e = NULL;
    json_t *a = NULL;
    const char *schema = NULL, *state = NULL, *why = NULL;
    char whybuf[640];
    if ((int64_t)m->len > nt->conf->max_alert_bytes) {
        snprintf(whybuf, sizeof(whybuf), "record of %zu bytes is larger than max_alert_bytes",
                 m->len);
        why = whybuf;
    } else if (!(a = mjson_parse_object(m->payload, m->len, (size_t)nt->conf->max_alert_bytes,
                                        &e))) {
        snprintf(whybuf, sizeof(whybuf), "not a JSON object: %s", e ? e->msg : "?");
        why = whybuf;
    } else if (mjson_get_str(a, "schema", true, &schema, &e) || strcmp(schema, "alert/1")) {
        snprintf(whybuf, sizeof(whybuf), "field schema: expected \"alert/1\"%s%s", e ? ": " : "",
                 e ? e->msg : "");
        why = whybuf;
    } else if (mjson_get_str(a, "state", true, &state, &e)) {
        snprintf(whybuf, sizeof(whybuf), "field state: %s", e->msg);
        why = whybuf;
    } else if (strcmp(state, "firing") && strcmp(state, "resolved") && strcmp(state, "pending")) {
        snprintf(whybuf, sizeof(whybuf),
                 "field state: \"%.40s\" is not one of pending, firing, resolved", state);
        why = whybuf;
    }
    err_destroy(e);
    if (why) {
        log_emit(LOG_LVL_WARN,
                 LOG_FIELDS(LOG_INT("partition", m->partition), LOG_INT("offset", m->offset)),
                 "malformed alert dead-lettered: %s", why);
        metric_inc(nt->m_malformed);
        dead_letter(nt, key, keylen, NULL, m->payload ? m->payload : "", m->len, "", 0, "", why,
                    handle);
        json_decref(a);
        tracker_release(nt, handle);
        return;
    }
    if (!strcmp(state, "pending")) { /* Alertmanager notifies firing and resolved only */
        metric_inc(nt->m_skipped);
        json_decref(a);
        tracker_release(nt, handle);
        return;
    }
    const char *fp = json_string_value(json_object_get(a, "fingerprint"));
    if (!fp || !*fp || strlen(fp) > 128)
        fp = NULL;
    char fpbuf[129];
    str_copy(fpbuf, fp ? fp : "", sizeof(fpbuf));
    if (!fp) {
        /* the fingerprint is the state's key: use the record's Kafka key */
        size_t n = keylen < sizeof(fpbuf) - 1 ? keylen : sizeof(fpbuf) - 1;
        memcpy(fpbuf, key, n);
        fpbuf[n] = 0;
    }
    json_t *labels = alert_match_labels(a);
    firing_t *known = hmap_get(nt->firing, fpbuf);
    if (!strcmp(state, "firing")) {
        const char *starts = json_string_value(json_object_get(a, "starts_at"));
        const char *kstarts =
            known ? json_string_value(json_object_get(known->alert, "starts_at")) : NULL;
        if (known && known->last_sent_ms && starts && kstarts && !strcmp(starts, kstarts)) {
            /* the same firing again (a re-read after a restart): already sent */
            metric_inc(nt->m_duplicate);
            json_decref(labels);
            json_decref(a);
            tracker_release(nt, handle);
            return;
        }
        if (!known) {
            known = xcalloc(1, sizeof(*known));
            hmap_put(nt->firing, fpbuf, known);
        }
        json_decref(known->alert);
        json_decref(known->labels);
        known->queued = 0; /* items of an earlier firing no longer count */
        known->alert = json_incref(a);
        known->labels = json_incref(labels);
        known->last_sent_ms = 0;
        known->muted = false;
    } else if (known) {
        /* resolved: forget it (items of it still queued keep their own copy) */
        firing_free(hmap_del(nt->firing, fpbuf));
        firing_forget(nt, fpbuf);
        known = NULL;
    }
    metric_set(nt->m_firing, (double)hmap_size(nt->firing));
    silences_refresh(nt, false);
    const char *muted = muted_by(nt, labels, fpbuf);
    json_decref(labels);
    if (known) {
        known->muted = muted != NULL;
        firing_store(nt, fpbuf, known);
    }
    if (muted) {
        metric_inc(!strcmp(muted, "silenced") ? nt->m_silenced : nt->m_inhibited);
        log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("fingerprint", fpbuf), LOG_STR("state", state)),
                 "alert %s: not sent", muted);
        json_decref(a);
        tracker_release(nt, handle);
        return;
    }
    enqueue(nt, a, fpbuf, strlen(fpbuf), handle);
    tracker_release(nt, handle); /* the processing reference */
}

/* Queue @p alert (reference taken) on every webhook; @p handle may be NULL
 * (a repeat has no input offset). */
static void enqueue(notify_t *nt, json_t *alert, const char *fp, size_t fplen, void *handle)
{
    ditem_t *it = xcalloc(1, sizeof(*it));
    it->alert = alert;
    it->key = xstrndup(fp, fplen);
    it->keylen = fplen;
    str_copy(it->fp, it->key, sizeof(it->fp));
    it->handle = handle;
    it->refs = nt->nhooks;
    firing_t *f = hmap_get(nt->firing, it->fp);
    it->firing = f && !strcmp(json_string_value(json_object_get(alert, "state")), "firing");
    if (it->firing)
        f->queued++;
    nt->in_flight++;
    metric_set(nt->m_pending, (double)nt->in_flight);
    int64_t now = mono_ms();
    pthread_mutex_lock(&nt->mu);
    for (int i = 0; i < nt->nhooks; i++) {
        hook_t *h = &nt->hooks[i];
        if (handle)
            kafka_tracker_hold(handle);
        if (h->qn == h->qcap) {
            h->qcap = h->qcap ? 2 * h->qcap : 64;
            h->q = xrealloc(h->q, h->qcap * sizeof(*h->q));
        }
        if (h->qn == 0)
            h->first_ms = now;
        h->q[h->qn++] = it;
        metric_set(h->m_queue, (double)h->qn);
        pthread_cond_signal(&h->cv);
    }
    pthread_mutex_unlock(&nt->mu);
}

static void on_input(void *opaque)
{
    notify_t *nt = opaque;
    if (nt->draining)
        return;
    for (int i = 0; i < 500; i++) {
        rd_kafka_message_t *m = kafka_consumer_poll(nt->kc, 0);
        if (!m)
            goto check;
        handle_message(nt, m);
        rd_kafka_message_destroy(m);
    }
    kafka_watch_again(nt->watch);
check:
    if (kafka_consumer_fatal(nt->kc) || kafka_producer_fatal(nt->kp)) {
        char why[768];
        int code = kafka_fatal_cause(why, sizeof(why));
        lifecycle_fail(service_lifecycle(nt->svc), code, "%s%s", why,
                       code == MLOPS_EXIT_USAGE ? "" : ": exiting to be restarted");
    }
}

static void finish_drain(notify_t *nt)
{
    if (kafka_producer_flush(nt->kp, 10000))
        log_warn("drain: dead letters not all acknowledged; their alerts will be re-read");
    err_t *e = NULL;
    if (kafka_consumer_commit(nt->kc, &e)) {
        log_warn("drain: %s", e->msg);
        err_destroy(e);
    }
    lifecycle_drained(service_lifecycle(nt->svc));
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    notify_t *nt = arg;
    if (nt->in_flight == 0) {
        event_del(nt->ev_drain);
        finish_drain(nt);
    }
}

/* First SIGTERM: take no more input; finish what is queued (the lifecycle's
 * drain timeout bounds the wait: what is left is re-read after restart). */
static void on_drain(lifecycle_t *lc, void *opaque)
{
    notify_t *nt = opaque;
    nt->draining = true;
    kafka_watch_destroy(nt->watch);
    nt->watch = NULL;
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_INT("pending", (long long)nt->in_flight)),
             "draining: finishing queued alerts");
    struct timeval tv = {0, 100000};
    nt->ev_drain = event_new(service_base(nt->svc), -1, EV_PERSIST, on_drain_tick, nt);
    event_add(nt->ev_drain, &tv);
}

static void status(json_t *st, void *opaque)
{
    notify_t *nt = opaque;
    json_t *hooks = json_array();
    pthread_mutex_lock(&nt->mu);
    for (int i = 0; i < nt->nhooks; i++)
        json_array_append_new(hooks, json_pack("{s:s,s:I}", "webhook", nt->hooks[i].redacted,
                                               "queued", (json_int_t)nt->hooks[i].qn));
    pthread_mutex_unlock(&nt->mu);
    json_object_set_new(st, "webhooks", hooks);
    json_object_set_new(st, "pending", json_integer((json_int_t)nt->in_flight));
}

/* Split the comma-separated URL list; every URL must pass the policy. */
static int parse_hooks(notify_t *nt)
{
    char *list = xstrdup(nt->conf->slack_webhook_urls);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ", \n\t", &save); tok;
         tok = strtok_r(NULL, ", \n\t", &save)) {
        char why[256];
        if (!slack_url_allowed(tok, why, sizeof(why))) {
            log_fatal("slack_webhook_urls: URL %d: %s", n + 1, why);
            free(list);
            return -1;
        }
        nt->hooks = xrealloc(nt->hooks, (size_t)(n + 1) * sizeof(hook_t));
        hook_t *h = &nt->hooks[n];
        memset(h, 0, sizeof(*h));
        h->nt = nt;
        h->idx = n;
        h->url = xstrdup(tok);
        slack_url_redact(tok, h->redacted, sizeof(h->redacted));
        n++;
    }
    free(list);
    if (n == 0) {
        log_fatal("slack_webhook_urls: no URL given");
        return -1;
    }
    nt->nhooks = n;
    return 0;
}

static int setup(service_t *svc, void *opaque)
{
    notify_t *nt = opaque;
    notify_conf_t *c = nt->conf;
    nt->svc = svc;
    nt->pipefd[0] = nt->pipefd[1] = -1;
    pthread_mutex_init(&nt->mu, NULL);
    if (parse_hooks(nt))
        return -1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        log_fatal("libcurl: global init failed");
        return -1;
    }
    metrics_t *m = service_metrics(svc);
    char l[96];
    nt->m_delivered =
        metrics_counter(m, "mlops_notify_alerts_total", "Alerts by outcome (per webhook).",
                        metrics_labels(l, sizeof(l), "outcome", "delivered", NULL));
    nt->m_dead = metrics_counter(m, "mlops_notify_alerts_total", "Alerts by outcome (per webhook).",
                                 metrics_labels(l, sizeof(l), "outcome", "dead_lettered", NULL));
    nt->m_skipped =
        metrics_counter(m, "mlops_notify_alerts_total", "Alerts by outcome (per webhook).",
                        metrics_labels(l, sizeof(l), "outcome", "skipped", NULL));
    nt->m_malformed =
        metrics_counter(m, "mlops_notify_alerts_total", "Alerts by outcome (per webhook).",
                        metrics_labels(l, sizeof(l), "outcome", "malformed", NULL));
    nt->m_pending =
        metrics_gauge(m, "mlops_notify_pending", "Alerts not yet finished on every webhook.", NULL);
    nt->m_silenced =
        metrics_counter(m, "mlops_notify_alerts_total", "Alerts by outcome (per webhook).",
                        metrics_labels(l, sizeof(l), "outcome", "silenced", NULL));
    nt->m_inhibited =
        metrics_counter(m, "mlops_notify_alerts_total", "Alerts by outcome (per webhook).",
                        metrics_labels(l, sizeof(l), "outcome", "inhibited", NULL));
    nt->m_duplicate =
        metrics_counter(m, "mlops_notify_alerts_total", "Alerts by outcome (per webhook).",
                        metrics_labels(l, sizeof(l), "outcome", "duplicate", NULL));
    nt->m_repeated =
        metrics_counter(m, "mlops_notify_repeats_total",
                        "Firing alerts sent again (repeat interval, or unmuted).", NULL);
    nt->m_firing = metrics_gauge(m, "mlops_notify_firing", "Firing alerts known.", NULL);
    nt->m_state_failed = metrics_counter(m, "mlops_notify_state_failures_total",
                                         "Redis calls for silences or state that failed.", NULL);
    char err[512];
    nt->rules = c->rules ? alert_rules_load(c->rules, err, sizeof(err)) : alert_rules_default();
    if (!nt->rules) {
        log_fatal("rules: %s", err);
        return -1;
    }
    redis_opts_t ro = {.url = c->redis_url,
                       .timeout_ms = (int)c->redis_timeout_ms,
                       .metrics = m,
                       .metrics_labels = "client=\"notify\""};
    nt->rc = redis_client_new(&ro, err, sizeof(err));
    if (!nt->rc) {
        log_fatal("redis_url: %s", err);
        return -1;
    }
    nt->firing = hmap_new(firing_free);
    nt->firing_key = xasprintf("mlops:notify:%s:firing", c->group_id);
    firing_load(nt);
    silences_refresh(nt, true);
    slack_http_opts_t ho = {.connect_timeout_ms = c->connect_timeout_ms,
                            .timeout_ms = c->timeout_ms,
                            .ca_file = c->slack_ca_file};
    for (int i = 0; i < nt->nhooks; i++) {
        hook_t *h = &nt->hooks[i];
        char idx[16];
        snprintf(idx, sizeof(idx), "%d", i);
        h->m_ok = metrics_counter(
            m, "mlops_notify_requests_total", "Webhook requests by result.",
            metrics_labels(l, sizeof(l), "webhook", idx, "result", "delivered", NULL));
        h->m_retry =
            metrics_counter(m, "mlops_notify_requests_total", "Webhook requests by result.",
                            metrics_labels(l, sizeof(l), "webhook", idx, "result", "retry", NULL));
        h->m_perm = metrics_counter(
            m, "mlops_notify_requests_total", "Webhook requests by result.",
            metrics_labels(l, sizeof(l), "webhook", idx, "result", "permanent", NULL));
        h->m_alerts_sent = metrics_counter(m, "mlops_notify_alerts_sent_total",
                                           "Alerts carried by delivered messages.",
                                           metrics_labels(l, sizeof(l), "webhook", idx, NULL));
        h->m_queue = metrics_gauge(m, "mlops_notify_queue", "Alerts queued for a webhook.",
                                   metrics_labels(l, sizeof(l), "webhook", idx, NULL));
        h->m_seconds =
            metrics_histogram(m, "mlops_notify_request_seconds", "Duration of webhook requests.",
                              metrics_labels(l, sizeof(l), "webhook", idx, NULL), NULL, 0);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->cv, &ca);
        h->cv_init = true;
        pthread_condattr_destroy(&ca);
        slack_bucket_init(&h->bucket, c->rate_per_s, (double)c->burst, mono_ms());
        h->rng = (uint64_t)wall_us() * 2654435761u + (uint64_t)i + 1;
        h->client = slack_client_new(&ho);
        if (!h->client) {
            log_fatal("libcurl: cannot create a handle");
            return -1;
        }
    }
    char errstr[1024];
    if (pipe2(nt->pipefd, O_NONBLOCK | O_CLOEXEC)) {
        log_fatal("pipe: %s", strerror(errno));
        return -1;
    }
    nt->ev_done = event_new(service_base(svc), nt->pipefd[0], EV_READ | EV_PERSIST, on_done, nt);
    event_add(nt->ev_done, NULL);
    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(service_cfg(svc), &nprops);
    kafka_opts_t ko = {.brokers = c->kafka_brokers,
                       .client_id = "mlops-notify",
                       .props = props,
                       .nprops = nprops,
                       .metrics = m};
    nt->kp = kafka_producer_new(&ko, NULL, on_delivery, nt, errstr, sizeof(errstr));
    if (!nt->kp) {
        log_fatal("Kafka: %s", errstr);
        return -1;
    }
    const char *topics[] = {c->alerts_topic};
    kafka_consumer_opts_t co = {
        .group_id = c->group_id, .topics = topics, .ntopics = 1, .auto_commit = true};
    nt->kc = kafka_consumer_new(&ko, &co, errstr, sizeof(errstr));
    if (!nt->kc) {
        log_fatal("Kafka: %s", errstr);
        return -1;
    }
    nt->tr = kafka_tracker_new(nt->kc);
    nt->pwatch = kafka_producer_watch(nt->kp, service_base(svc), errstr, sizeof(errstr));
    nt->watch = nt->pwatch ? kafka_consumer_watch(nt->kc, service_base(svc), on_input, nt, errstr,
                                                  sizeof(errstr))
                           : NULL;
    if (!nt->watch) {
        log_fatal("%s", errstr);
        return -1;
    }
    for (int i = 0; i < nt->nhooks; i++) {
        if (pthread_create(&nt->hooks[i].th, NULL, sender_main, &nt->hooks[i])) {
            log_fatal("cannot start a sender thread");
            return -1;
        }
        nt->hooks[i].started = true;
    }
    struct timeval tick = {1, 0};
    nt->ev_tick = event_new(service_base(svc), -1, EV_PERSIST, on_tick, nt);
    event_add(nt->ev_tick, &tick);
    json_t *names = json_array();
    for (int i = 0; i < nt->nhooks; i++)
        json_array_append_new(names, json_string(nt->hooks[i].redacted));
    char *hooks = json_dumps(names, JSON_COMPACT);
    json_decref(names);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("input", c->alerts_topic), LOG_STR("dlq", c->alerts_dlq_topic),
                        LOG_STR("webhooks", hooks ? hooks : "")),
             "slack notifier ready: %d webhook(s)", nt->nhooks);
    free(hooks);
    return 0;
}

static void teardown(service_t *svc, void *opaque)
{
    notify_t *nt = opaque;
    pthread_mutex_lock(&nt->mu);
    nt->quit = true;
    for (int i = 0; i < nt->nhooks; i++)
        if (nt->hooks[i].started)
            pthread_cond_signal(&nt->hooks[i].cv);
    pthread_mutex_unlock(&nt->mu);
    for (int i = 0; i < nt->nhooks; i++)
        if (nt->hooks[i].started)
            pthread_join(nt->hooks[i].th, NULL);
    if (nt->ev_drain)
        event_free(nt->ev_drain);
    if (nt->ev_tick)
        event_free(nt->ev_tick);
    kafka_watch_destroy(nt->watch);
    kafka_watch_destroy(nt->pwatch);
    /* outcomes not yet handled stay unacknowledged: re-read after restart */
    for (done_ev_t *d = nt->done_head, *next; d; d = next) {
        next = d->next;
        if (--d->it->refs == 0)
            item_free(d->it);
        free(d);
    }
    kafka_tracker_destroy(nt->tr);
    kafka_consumer_close(nt->kc);
    kafka_producer_destroy(nt->kp);
    if (nt->ev_done)
        event_free(nt->ev_done);
    for (int i = 0; i < 2; i++)
        if (nt->pipefd[i] >= 0)
            close(nt->pipefd[i]);
    /* items still queued are shared by the queues: free each once */
    for (int i = 0; i < nt->nhooks; i++) {
        hook_t *h = &nt->hooks[i];
        for (size_t k = 0; k < h->qn; k++)
            if (--h->q[k]->refs == 0)
                item_free(h->q[k]);
        free(h->q);
        slack_client_destroy(h->client);
        if (h->cv_init)
            pthread_cond_destroy(&h->cv);
        free(h->url);
    }
    free(nt->hooks);
    for (size_t i = 0; i < nt->nsilences; i++)
        alert_silence_destroy(nt->silences[i]);
    free(nt->silences);
    if (nt->firing)
        hmap_destroy(nt->firing);
    free(nt->firing_key);
    redis_client_destroy(nt->rc);
    alert_rules_destroy(nt->rules);
    pthread_mutex_destroy(&nt->mu);
    curl_global_cleanup();
}

int notify_main(int argc, char **argv)
{
    notify_conf_t conf;
    notify_t nt = {.conf = &conf};
    service_def_t def = {
        .name = "notify",
        .usage = "\n  post alerts from the alerts topic to Slack incoming webhooks\n"
                 "  (the same program as `mlops-monitor notify`)",
        .items = notify_items,
        .nitems = MLOPS_ARRAY_LEN(notify_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
        .on_drain = on_drain,
        .status_cb = status,
        .setup = setup,
        .teardown = teardown,
        .opaque = &nt,
    };
    return service_main(&def, argc, argv);
}
