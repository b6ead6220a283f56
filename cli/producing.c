/*
 * Producing events and label/1 records for `mlopsctl produce` and
 * `mlopsctl datagen --topic` (see producing.h).
 *
 * Delivery reports are served on the calling thread (kafka_producer_poll
 * after every message, and by kafka_produce() itself when the queue is
 * full), so the counters below need no locking.
 */
#include "producing.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafka.h"
#include "mjson.h"
#include "spec.h"

#define LABEL_WARN_MAX 5
#define PROGRESS_TTY_US 100000   /* redraw the bar ten times a second */
#define PROGRESS_LINE_US 5000000 /* a line every 5 s when stderr is not a terminal */
#define DEFAULT_MESSAGE_TIMEOUT "60000"

/* msg_opaque of the two kinds of message (compared by address) */
static const char kind_event = 'e', kind_label = 'l';

struct producing {
    char *prog, *topic, *labels_topic;
    char *key_field, *label_field, *event_id_field, *entity_field, *event_time_field;
    int64_t label_delay_ms;
    double rate;
    uint64_t total;
    kafka_producer_t *kp;
    uint64_t ev_sent, ev_ok, ev_fail, lb_sent, lb_ok, lb_fail, lb_skip, bad;
    uint64_t refused; /* refused by librdkafka (counted in *_fail too) */
    int64_t t0_us, last_progress_us, end_us;
    bool tty, drawn, started;
    int label_warned;
    strbuf_t lsb; /* label record */
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

bool producing_stop_requested(void) { return stop_requested != 0; }

static void on_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque)
{
    producing_t *pr = opaque;
    bool label = msg_opaque == &kind_label;
    if (rkm->err)
        (*(label ? &pr->lb_fail : &pr->ev_fail))++;
    else
        (*(label ? &pr->lb_ok : &pr->ev_ok))++;
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static int check_topic(rd_kafka_t *rk, const char *brokers, const char *topic, char *errstr,
                       size_t errstr_size)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(errstr, errstr_size, "topic '%s': %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    char why[768];
    /* A topic created a moment ago may not be in every broker's metadata
     * cache yet (CreateTopics returns when the controller has it): ask again
     * for up to 5 s before saying it does not exist. */
    for (int attempt = 0;; attempt++) {
        err = kafka_metadata(rk, rkt, &md, 10000, why, sizeof(why));
        bool missing = !err && (md->topic_cnt < 1 || md->topics[0].err);
        if (!missing || attempt >= 20)
            break;
        rd_kafka_metadata_destroy(md);
        md = NULL;
        usleep(250 * 1000);
    }
    int rc = 0;
    if (err) {
        snprintf(errstr, errstr_size, "cannot read topic metadata from Kafka at %s: %s", brokers,
                 why);
        rc = -1;
    } else if (md->topic_cnt < 1 || md->topics[0].err) {
        snprintf(errstr, errstr_size,
                 "topic '%s' does not exist on %s (%s); create it first (the stack's "
                 "topics are in deploy/topics.conf)",
                 topic, brokers,
                 rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
                                                : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
        rc = -1;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

producing_t *producing_new(const producing_opts_t *opts, char *errstr, size_t errstr_size)
{
    producing_t *pr = xcalloc(1, sizeof(*pr));
    pr->prog = xstrdup(opts->prog ? opts->prog : "mlopsctl");
    pr->topic = xstrdup(opts->topic);
    pr->labels_topic = dup_or_null(opts->labels_topic);
    pr->key_field = dup_or_null(opts->key_field);
    pr->label_field = dup_or_null(opts->label_field);
    pr->event_id_field = dup_or_null(opts->event_id_field);
    pr->entity_field = dup_or_null(opts->entity_field);
    pr->event_time_field = dup_or_null(opts->event_time_field);
    pr->label_delay_ms = opts->label_delay_ms;
    pr->rate = opts->rate;
    pr->total = opts->total;
    pr->tty = isatty(STDERR_FILENO);
    strbuf_init(&pr->lsb);

    /* a CLI should not wait librdkafka's default 5 minutes for a dead broker;
     * -X message.timeout.ms=... still wins (applied after) */
    cfg_kv_t *props = xcalloc(opts->nprops + 1, sizeof(cfg_kv_t));
    props[0] = (cfg_kv_t){"message.timeout.ms", DEFAULT_MESSAGE_TIMEOUT};
    for (size_t i = 0; i < opts->nprops; i++)
        props[i + 1] = opts->props[i];
    kafka_opts_t ko = {.brokers = opts->brokers,
                       .client_id = "mlopsctl",
                       .props = props,
                       .nprops = opts->nprops + 1};
    pr->kp = kafka_producer_new(&ko, NULL, on_delivery, pr, errstr, errstr_size);
    free(props);
    if (!pr->kp)
        goto err;
    rd_kafka_t *rk = kafka_producer_handle(pr->kp);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (check_topic(rk, opts->brokers, pr->topic, errstr, errstr_size) ||
        (pr->labels_topic && check_topic(rk, opts->brokers, pr->labels_topic, errstr, errstr_size)))
        goto err;
    return pr;
err:
    producing_destroy(pr);
    return NULL;
}

static void progress(producing_t *pr, bool final)
{
    int64_t now = mono_us();
    if (!final && now - pr->last_progress_us < (pr->tty ? PROGRESS_TTY_US : PROGRESS_LINE_US))
        return;
    pr->last_progress_us = now;
    double secs = (double)(now - pr->t0_us) / 1e6;
    double rate = secs > 0 ? (double)pr->ev_sent / secs : 0;
    if (pr->tty) {
        char bar[32];
        if (pr->total) {
            double frac = (double)pr->ev_sent / (double)pr->total;
            if (frac > 1)
                frac = 1;
            int w = (int)(frac * 30);
            memset(bar, '#', (size_t)w);
            memset(bar + w, '.', (size_t)(30 - w));
            bar[30] = '\0';
            fprintf(stderr,
                    "\r[%s] %3.0f%% %" PRIu64 "/%" PRIu64 " events, %.0f/s, %" PRIu64 " failed ",
                    bar, frac * 100, pr->ev_sent, pr->total, rate, pr->ev_fail + pr->lb_fail);
        } else {
            fprintf(stderr, "\r%" PRIu64 " events, %.0f/s, %" PRIu64 " failed ", pr->ev_sent, rate,
                    pr->ev_fail + pr->lb_fail);
        }
        pr->drawn = true;
        if (final)
            fputc('\n', stderr);
    } else if (!final) {
        fprintf(stderr,
                "%s: %" PRIu64 " events sent (%" PRIu64 " delivered, %" PRIu64 " failed), %.0f/s\n",
                pr->prog, pr->ev_sent, pr->ev_ok, pr->ev_fail + pr->lb_fail, rate);
    }
    fflush(stderr);
}

static void rate_wait(producing_t *pr)
{
    if (pr->rate <= 0)
        return;
    int64_t due = pr->t0_us + (int64_t)((double)pr->ev_sent * 1e6 / pr->rate);
    for (;;) {
        int64_t left = due - mono_us();
        if (left <= 0)
            return;
        if (left >= 1000) {
            kafka_producer_poll(pr->kp, left > 100000 ? 100 : (int)(left / 1000));
        } else {
            struct timespec ts = {0, (long)left * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* Produce one message; a refusal counts as failed. -1 only when fatal. */
static int send_one(producing_t *pr, const char *topic, const char *key, size_t keylen,
                    const void *value, size_t valuelen, const char *kind, char *errstr,
                    size_t errstr_size)
{
    err_t *e = NULL;
    bool label = kind == &kind_label;
    if (kafka_produce(pr->kp, topic, RD_KAFKA_PARTITION_UA, key, key ? keylen : 0, value, valuelen,
                      (void *)kind, &e) == 0) {
        (*(label ? &pr->lb_sent : &pr->ev_sent))++;
        return 0;
    }
    (*(label ? &pr->lb_fail : &pr->ev_fail))++;
    if (!pr->refused++)
        fprintf(stderr, "%s: %s\n", pr->prog, e->msg);
    bool fatal = e->fatal;
    if (fatal)
        snprintf(errstr, errstr_size, "%s", e->msg);
    err_destroy(e);
    return fatal ? -1 : 0;
}

void producing_label_record(strbuf_t *sb, const producing_label_t *label, int64_t label_delay_ms)
{
    char lt[40], et[40];
    fmt_rfc3339((label->event_time_ms + label_delay_ms) * 1000, lt, sizeof(lt));
    fmt_rfc3339(label->event_time_ms * 1000, et, sizeof(et));
    strbuf_puts(sb, "{\"schema\":\"label/1\",\"event_id\":");
    strbuf_json_str(sb, label->event_id, strlen(label->event_id));
    strbuf_puts(sb, ",\"entity\":");
    strbuf_json_str(sb, label->entity, strlen(label->entity));
    strbuf_puts(sb, ",\"label\":");
    strbuf_puts(sb, label->label_json);
    strbuf_appendf(sb, ",\"label_time\":\"%s\",\"event_time\":\"%s\"}", lt, et);
}

int producing_send_raw(producing_t *pr, const char *key, size_t keylen, const char *value,
                       size_t valuelen, const producing_label_t *label, char *errstr,
                       size_t errstr_size)
{
    if (!pr->started) {
        pr->started = true;
        pr->t0_us = pr->last_progress_us = mono_us();
    }
    rate_wait(pr);
    if (send_one(pr, pr->topic, key, keylen, value, valuelen, &kind_event, errstr, errstr_size))
        return -1;
    if (label && pr->labels_topic) {
        strbuf_reset(&pr->lsb);
        producing_label_record(&pr->lsb, label, pr->label_delay_ms);
        if (send_one(pr, pr->labels_topic, label->entity, strlen(label->entity), pr->lsb.data,
                     pr->lsb.len, &kind_label, errstr, errstr_size))
            return -1;
    }
    kafka_producer_poll(pr->kp, 0);
    if (kafka_producer_fatal(pr->kp)) {
        kafka_fatal_cause(errstr, errstr_size);
        return -1;
    }
    progress(pr, false);
    return 0;
}

/* An id as text: a non-empty string or an integer (into buf). NULL otherwise. */
static const char *id_text(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v) && json_string_length(v) > 0)
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return NULL;
}

static void skip_label(producing_t *pr, const char *where, const char *why)
{
    pr->lb_skip++;
    if (pr->label_warned++ < LABEL_WARN_MAX)
        fprintf(stderr, "%s: %s: label not sent: %s%s\n", pr->prog, where, why,
                pr->label_warned == LABEL_WARN_MAX ? " (further ones are only counted)" : "");
}

int producing_send_object(producing_t *pr, json_t *event, const char *where, char *errstr,
                          size_t errstr_size)
{
    char kbuf[32], ibuf[32], ebuf[32];
    const char *key =
        pr->key_field ? id_text(json_object_get(event, pr->key_field), kbuf, sizeof(kbuf)) : NULL;
    char *key_copy = key ? xstrdup(key) : NULL; /* the event is modified below */
    json_t *lv = NULL;
    char *label_json = NULL;
    producing_label_t label = {0};
    bool have_label = false;
    if (pr->label_field && (lv = json_object_get(event, pr->label_field))) {
        json_incref(lv);
        json_object_del(event, pr->label_field);
        if (pr->labels_topic && !json_is_null(lv)) {
            const json_t *t =
                pr->event_time_field ? json_object_get(event, pr->event_time_field) : NULL;
            label.event_id =
                pr->event_id_field
                    ? id_text(json_object_get(event, pr->event_id_field), ibuf, sizeof(ibuf))
                    : NULL;
            label.entity = pr->entity_field ? id_text(json_object_get(event, pr->entity_field),
                                                      ebuf, sizeof(ebuf))
                                            : NULL;
            if (!(json_is_string(lv) || json_is_number(lv) || json_is_boolean(lv)))
                skip_label(pr, where, "the label is not a string, number or boolean");
            else if (!label.event_id)
                skip_label(pr, where, "no event id");
            else if (!label.entity)
                skip_label(pr, where, "no entity");
            else if (!t || spec_parse_time(t, &label.event_time_ms))
                skip_label(pr, where, "no readable event time");
            else
                have_label = (label_json = json_dumps(lv, JSON_ENCODE_ANY | JSON_COMPACT)) != NULL;
            label.label_json = label_json;
        }
    }
    size_t len;
    char *value = mjson_dump(event, &len);
    int rc = 0;
    if (!value) {
        snprintf(errstr, errstr_size, "%s: cannot serialise the event", where);
        producing_count_bad(pr);
    } else {
        /* the label's ids point into the event, which is still intact */
        rc = producing_send_raw(pr, key_copy, key_copy ? strlen(key_copy) : 0, value, len,
                                have_label ? &label : NULL, errstr, errstr_size);
    }
    free(value);
    free(label_json);
    free(key_copy);
    json_decref(lv);
    return rc;
}

void producing_count_bad(producing_t *pr) { pr->bad++; }

uint64_t producing_finish(producing_t *pr, int timeout_ms, FILE *out)
{
    if (kafka_producer_flush(pr->kp, timeout_ms)) {
        rd_kafka_t *rk = kafka_producer_handle(pr->kp);
        /* purge so the reports come back as failures instead of waiting again */
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        kafka_producer_poll(pr->kp, 1000);
    }
    pr->end_us = mono_us();
    if (!pr->started)
        pr->t0_us = pr->end_us;
    if (pr->tty && pr->drawn)
        progress(pr, true);
    double secs = (double)(pr->end_us - pr->t0_us) / 1e6;
    /* not delivered: refused by librdkafka, failed, or still queued */
    uint64_t failed = pr->refused + pr->ev_sent + pr->lb_sent - pr->ev_ok - pr->lb_ok;
    fprintf(out, "%s: %" PRIu64 " events -> %s", pr->prog, pr->ev_ok, pr->topic);
    if (pr->labels_topic)
        fprintf(out, ", %" PRIu64 " labels -> %s", pr->lb_ok, pr->labels_topic);
    fprintf(out, "; sent %" PRIu64 ", failed %" PRIu64 ", bad lines %" PRIu64, pr->ev_sent, failed,
            pr->bad);
    if (pr->lb_skip)
        fprintf(out, ", labels skipped %" PRIu64, pr->lb_skip);
    fprintf(out, "; %.2f s, %.0f events/s\n", secs, secs > 0 ? (double)pr->ev_ok / secs : 0.0);
    fflush(out);
    return failed;
}

void producing_get_stats(const producing_t *pr, producing_stats_t *st)
{
    *st = (producing_stats_t){.events_sent = pr->ev_sent,
                              .events_delivered = pr->ev_ok,
                              .events_failed = pr->ev_fail,
                              .labels_sent = pr->lb_sent,
                              .labels_delivered = pr->lb_ok,
                              .labels_failed = pr->lb_fail,
                              .labels_skipped = pr->lb_skip,
                              .bad = pr->bad};
}

void producing_destroy(producing_t *pr)
{
    if (!pr)
        return;
    kafka_producer_destroy(pr->kp);
    strbuf_cleanup(&pr->lsb);
    free(pr->prog);
    free(pr->topic);
    free(pr->labels_topic);
    free(pr->key_field);
    free(pr->label_field);
    free(pr->event_id_field);
    free(pr->entity_field);
    free(pr->event_time_field);
    free(pr);
}

char **producing_argv(int argc, char **argv)
{
    char **v = xcalloc((size_t)argc + 1, sizeof(char *));
    bool done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!done && !strcmp(a, "--"))
            done = true;
        if (!done && !strcmp(a, "--brokers"))
            v[i] = xstrdup("--kafka-brokers");
        else if (!done && str_starts_with(a, "--brokers="))
            v[i] = xasprintf("--kafka-brokers=%s", a + 10);
        else
            v[i] = xstrdup(a);
    }
    return v;
}

void producing_free_argv(int argc, char **argv)
{
    if (!argv)
        return;
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}
