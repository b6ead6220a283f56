#include "kafka.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lifecycle.h"
#include "log.h"

#define QUEUE_FULL_DEADLINE_MS 10000
#define TXN_OP_TIMEOUT_MS 30000
#define TXN_RETRY_DEADLINE_MS 60000

/* Shared head of producer and consumer: the conf opaque points here. */
typedef struct kafka_client {
    rd_kafka_t *rk;
    atomic_bool fatal;
    /* false while no broker connection is up: set by ALL_BROKERS_DOWN at once,
     * recomputed from every statistics report (kafka_*_brokers_up) */
    atomic_bool brokers_up;
    bool stats; /* statistics.interval.ms > 0: brokers_up is tracked */
    metric_t *m_errors;
} kafka_client_t;

struct kafka_producer {
    kafka_client_t c;
    bool transactional;
    kafka_dr_cb *dr_cb;
    void *dr_opaque;
    _Atomic uint64_t produced, delivered, failed;
    metric_t *m_produced, *m_delivered, *m_failed;
    const char *fatal_file; /* test hook, see test_fatal_maybe() */
    int64_t fatal_next_ms;
};

struct kafka_consumer {
    kafka_client_t c;
    kafka_revoke_cb *on_revoke;
    void *opaque;
    bool auto_commit;
    int assigned;
    kafka_tracker_t *tracker; /* set by kafka_tracker_new */
    kafka_txn_t *txn;         /* set when owned by a kafka_txn_t */
    metric_t *m_consumed;
};

struct kafka_txn {
    kafka_consumer_t *kc;
    kafka_producer_t *kp;
    size_t pending;
    bool produce_failed; /* a produce of the open transaction failed: never commit it */
};

static void tracker_forget(kafka_tracker_t *tr, const rd_kafka_topic_partition_list_t *parts);
static kafka_txn_result_t txn_commit0(kafka_txn_t *txn, err_t **errp);
static kafka_txn_result_t txn_abort_and_rewind(kafka_txn_t *txn, err_t **errp);

/* ---- shared configuration -------------------------------------------------------- */

void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    log_level_t lvl = log_level_from_syslog(level);
    if (!log_enabled(lvl))
        return;
    log_emit(lvl,
             LOG_FIELDS(LOG_STR("component", "librdkafka"), LOG_STR("facility", fac),
                        LOG_STR("client", rd_kafka_name(rk))),
             "%s", buf);
}

/* The first broker access failure of the process (TLS handshake, SASL
 * authentication): a configuration error that retrying does not fix -- as long as
 * no client of the process has reached a broker yet. Once one has (a delivery, an
 * assignment, metadata, init_transactions), the same errors are more likely a broker
 * restarting or a certificate being rotated, and librdkafka's retries are left to it:
 * a service must not stop for good (exit 2 is not restarted) on a transient failure. */
static pthread_mutex_t access_mu = PTHREAD_MUTEX_INITIALIZER;
static char access_why[768];
static atomic_bool reached_once;

static void note_reached(void) { atomic_store(&reached_once, true); }

/* What a TLS or SASL failure means and which settings to check; NULL for
 * other errors. */
static const char *access_hint(int err)
{
    if (err == RD_KAFKA_RESP_ERR__SSL)
        return "Kafka TLS handshake failed (check ssl.ca.location: the CA that signed the "
               "broker's certificate, and the broker address the certificate names)";
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION)
        return "Kafka SASL authentication failed (check sasl.username, sasl.password and "
               "sasl.mechanisms)";
    return NULL;
}

bool kafka_access_error(char *why, size_t size)
{
    pthread_mutex_lock(&access_mu);
    bool seen = access_why[0] != '\0';
    if (seen && why && size)
        snprintf(why, size, "%s", access_why);
    pthread_mutex_unlock(&access_mu);
    return seen;
}

int kafka_fatal_cause(char *why, size_t size)
{
    if (kafka_access_error(why, size))
        return MLOPS_EXIT_USAGE;
    snprintf(why, size, "fatal Kafka error (see the log line above)");
    return MLOPS_EXIT_FAILURE;
}

rd_kafka_resp_err_t kafka_metadata(rd_kafka_t *rk, rd_kafka_topic_t *rkt,
                                   const struct rd_kafka_metadata **mdp, int timeout_ms, char *why,
                                   size_t why_size)
{
    rd_kafka_resp_err_t err;
    for (int waited = 0;; waited += 1000) {
        int step = timeout_ms - waited < 1000 ? timeout_ms - waited : 1000;
        err = rd_kafka_metadata(rk, rkt == NULL, rkt, mdp, step > 0 ? step : 1);
        if (!err)
            note_reached();
        if (err != RD_KAFKA_RESP_ERR__TIMED_OUT && err != RD_KAFKA_RESP_ERR__TRANSPORT)
            break;
        rd_kafka_poll(rk, 0);
        if (kafka_access_error(why, why_size))
            return err;
        if (waited + 1000 >= timeout_ms)
            break;
    }
    if (err)
        snprintf(why, why_size, "%s", rd_kafka_err2str(err));
    return err;
}

bool kafka_log_error(rd_kafka_t *rk, int err, const char *reason)
{
    const char *hint = access_hint(err);
    if (hint && atomic_load(&reached_once)) {
        log_emit(LOG_LVL_ERROR,
                 LOG_FIELDS(LOG_STR("component", "librdkafka"),
                            LOG_STR("client", rd_kafka_name(rk)),
                            LOG_STR("error", rd_kafka_err2name((rd_kafka_resp_err_t)err))),
                 "%s: %s (brokers were reachable before: retrying)", hint, reason);
        return false;
    }
    if (hint) {
        pthread_mutex_lock(&access_mu);
        if (!access_why[0])
            snprintf(access_why, sizeof(access_why), "%s: %s", hint, reason);
        pthread_mutex_unlock(&access_mu);
        log_emit(LOG_LVL_ERROR,
                 LOG_FIELDS(LOG_STR("component", "librdkafka"),
                            LOG_STR("client", rd_kafka_name(rk)),
                            LOG_STR("error", rd_kafka_err2name((rd_kafka_resp_err_t)err))),
                 "%s: %s", hint, reason);
        return true;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        log_emit(LOG_LVL_FATAL,
                 LOG_FIELDS(LOG_STR("component", "librdkafka"),
                            LOG_STR("client", rd_kafka_name(rk)),
                            LOG_STR("error", rd_kafka_err2name(orig))),
                 "fatal Kafka error: %s", why);
        return true;
    }
    /* Informational: librdkafka recovers by itself (STYLE.md 11). */
    log_emit(LOG_LVL_WARN,
             LOG_FIELDS(LOG_STR("component", "librdkafka"), LOG_STR("client", rd_kafka_name(rk)),
                        LOG_STR("error", rd_kafka_err2name((rd_kafka_resp_err_t)err))),
             "Kafka: %s", reason);
    return false;
}

void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    kafka_log_error(rk, err, reason);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_client_t *cl = opaque;
    if (cl->m_errors)
        metric_inc(cl->m_errors);
    if (kafka_log_error(rk, err, reason))
        atomic_store(&cl->fatal, true);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && cl->stats)
        atomic_store(&cl->brokers_up, false);
}

/* The statistics report (JSON, STATISTICS.md): up when any real broker (a
 * bootstrap or learned one, not the internal or logical ones) is in state UP.
 * librdkafka has no "broker back" event, so this is what clears a down. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    kafka_client_t *cl = opaque;
    json_error_t jerr;
    json_t *st = json_loadb(json, json_len, 0, &jerr);
    json_t *brokers = st ? json_object_get(st, "brokers") : NULL;
    if (!json_is_object(brokers)) {
        json_decref(st);
        return 0; /* librdkafka frees json */
    }
    bool up = false;
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        const char *src = json_string_value(json_object_get(b, "source"));
        const char *state = json_string_value(json_object_get(b, "state"));
        if (src && state && (!strcmp(src, "learned") || !strcmp(src, "configured")) &&
            !strcmp(state, "UP")) {
            up = true;
            break;
        }
    }
    json_decref(st);
    atomic_store(&cl->brokers_up, up);
    return 0;
}

int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                   size_t errstr_size)
{
    char e[512];
    if (rd_kafka_conf_set(conf, key, value, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "Kafka property %s: %s", key, e);
        return -1;
    }
    return 0;
}

/* defaults: NULL-terminated key, value pairs; forced: applied after the
 * pass-through properties. */
static rd_kafka_conf_t *conf_new(const kafka_opts_t *o, kafka_client_t *cl,
                                 const char *const *defaults, const char *const *forced,
                                 char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kafka_conf_set(conf, "bootstrap.servers", o->brokers ? o->brokers : "127.0.0.1:9092",
                       errstr, errstr_size) ||
        kafka_conf_set(conf, "client.id", o->client_id ? o->client_id : "mlops", errstr,
                       errstr_size) ||
        /* a report a second: what tells a service its broker is reachable again */
        kafka_conf_set(conf, "statistics.interval.ms", "1000", errstr, errstr_size))
        goto err;
    for (const char *const *p = defaults; p && *p; p += 2)
        if (kafka_conf_set(conf, p[0], p[1], errstr, errstr_size))
            goto err;
    for (size_t i = 0; i < o->nprops; i++)
        if (kafka_conf_set(conf, o->props[i].key, o->props[i].value, errstr, errstr_size))
            goto err;
    for (const char *const *p = forced; p && *p; p += 2)
        if (kafka_conf_set(conf, p[0], p[1], errstr, errstr_size))
            goto err;
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char iv[32];
    size_t ivlen = sizeof(iv);
    cl->stats = rd_kafka_conf_get(conf, "statistics.interval.ms", iv, &ivlen) == RD_KAFKA_CONF_OK &&
                atoi(iv) > 0;
    if (cl->stats)
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
    atomic_store(&cl->brokers_up, true);
    rd_kafka_conf_set_opaque(conf, cl);
    return conf;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

err_t *kafka_err_from(rd_kafka_error_t *error, const char *what)
{
    err_t *e = err_new(ERR_D_KAFKA, rd_kafka_error_code(error), rd_kafka_error_is_retriable(error),
                       rd_kafka_error_is_fatal(error), "%s: %s: %s", what,
                       rd_kafka_error_name(error), rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    return e;
}

/* ---- producer ---------------------------------------------------------------------- */

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    kafka_producer_t *kp = opaque;
    if (rkm->err) {
        atomic_fetch_add(&kp->failed, 1);
        if (kp->m_failed)
            metric_inc(kp->m_failed);
        log_emit(LOG_LVL_ERROR,
                 LOG_FIELDS(LOG_STR("topic", rd_kafka_topic_name(rkm->rkt)),
                            LOG_INT("partition", rkm->partition),
                            LOG_STR("error", rd_kafka_err2name(rkm->err))),
                 "delivery failed: %s", rd_kafka_err2str(rkm->err));
    } else {
        note_reached();
        atomic_fetch_add(&kp->delivered, 1);
        if (kp->m_delivered)
            metric_inc(kp->m_delivered);
    }
    if (kp->dr_cb)
        kp->dr_cb(rkm, rkm->_private, kp->dr_opaque);
}

kafka_producer_t *kafka_producer_new(const kafka_opts_t *opts, const char *transactional_id,
                                     kafka_dr_cb *dr_cb, void *dr_opaque, char *errstr,
                                     size_t errstr_size)
{
    kafka_producer_t *kp = xcalloc(1, sizeof(*kp));
    kp->dr_cb = dr_cb;
    kp->dr_opaque = dr_opaque;
    kp->transactional = transactional_id != NULL;
    const char *ff = getenv("MLOPS_TEST_KAFKA_FATAL_FILE");
    kp->fatal_file = ff && *ff ? ff : NULL;
    static const char *const defaults[] = {"enable.idempotence", "true", "acks", "all",
                                           "linger.ms",          "5",    NULL};
    const char *forced_txn[] = {"transactional.id", transactional_id, NULL};
    rd_kafka_conf_t *conf =
        conf_new(opts, &kp->c, defaults, transactional_id ? forced_txn : NULL, errstr, errstr_size);
    if (!conf)
        goto err;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    char e[512];
    kp->c.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!kp->c.rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create Kafka producer: %s", e);
        goto err;
    }
    /* the conf opaque must point at the producer for dr_msg_cb; the client
     * head is its first member, so error_cb sees a kafka_client_t */
    if (opts->metrics) {
        kp->m_produced = metrics_counter(opts->metrics, "mlops_kafka_produced_total",
                                         "Messages accepted by the producer.", NULL);
        kp->m_delivered = metrics_counter(opts->metrics, "mlops_kafka_delivered_total",
                                          "Messages acknowledged by the broker.", NULL);
        kp->m_failed = metrics_counter(opts->metrics, "mlops_kafka_delivery_failed_total",
                                       "Messages that permanently failed delivery.", NULL);
        kp->c.m_errors = metrics_counter(opts->metrics, "mlops_kafka_errors_total",
                                         "Errors reported by librdkafka.", "client=\"producer\"");
    }
    if (transactional_id) {
        /* in one-second steps (a timed-out call resumes), serving error_cb in
         * between: a TLS or SASL failure ends the wait at once, with its cause */
        rd_kafka_error_t *error = NULL;
        int64_t deadline = mono_ms() + TXN_OP_TIMEOUT_MS;
        for (;;) {
            error = rd_kafka_init_transactions(kp->c.rk, 1000);
            /* a timed-out step resumes; a retriable error (a fresh broker's coordinator
             * still loading: COORDINATOR_LOAD_IN_PROGRESS) is retried after a pause, as
             * the one long call did inside librdkafka */
            bool timed_out = error && rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__TIMED_OUT;
            if (!error || (!timed_out && !rd_kafka_error_is_retriable(error)) ||
                mono_ms() >= deadline)
                break;
            rd_kafka_poll(kp->c.rk, timed_out ? 0 : 200);
            char why[768];
            if (kafka_access_error(why, sizeof(why))) {
                rd_kafka_error_destroy(error);
                snprintf(errstr, errstr_size, "init_transactions: %s", why);
                goto err;
            }
            rd_kafka_error_destroy(error);
        }
        if (error) {
            err_t *ke = kafka_err_from(error, "init_transactions");
            snprintf(errstr, errstr_size, "%s", ke->msg);
            err_destroy(ke);
            goto err;
        }
        note_reached();
    }
    return kp;
err:
    if (kp->c.rk)
        rd_kafka_destroy(kp->c.rk);
    free(kp);
    return NULL;
}

/* Test hook for the fatal-error drill (tests/reliability/test_fatal_error.py): with
 * MLOPS_TEST_KAFKA_FATAL_FILE set, a producer that finds that file removes it and raises
 * a fatal error with rd_kafka_test_fatal_error(), as a broker fencing it would. Looked for
 * at most every 100 ms on the produce path; unset, it costs one branch per message. */
static void test_fatal_maybe(kafka_producer_t *kp)
{
    int64_t now = mono_ms();
    if (now < kp->fatal_next_ms)
        return;
    kp->fatal_next_ms = now + 100;
    if (unlink(kp->fatal_file) == 0) {
        log_warn("test hook: %s found, raising a fatal Kafka error", kp->fatal_file);
        rd_kafka_test_fatal_error(kp->c.rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "MLOPS_TEST_KAFKA_FATAL_FILE");
    }
}

int kafka_produce(kafka_producer_t *kp, const char *topic, int32_t partition, const void *key,
                  size_t keylen, const void *value, size_t valuelen, void *msg_opaque, err_t **errp)
{
    if (kp->fatal_file)
        test_fatal_maybe(kp);
    int64_t deadline = 0;
    for (;;) {
        rd_kafka_resp_err_t err =
            rd_kafka_producev(kp->c.rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, keylen),
                              RD_KAFKA_V_VALUE((void *)value, valuelen),
                              RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        if (!err) {
            atomic_fetch_add(&kp->produced, 1);
            if (kp->m_produced)
                metric_inc(kp->m_produced);
            return 0;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (!deadline)
                deadline = mono_ms() + QUEUE_FULL_DEADLINE_MS;
            if (mono_ms() < deadline) {
                rd_kafka_poll(kp->c.rk, 50); /* serve delivery reports, then retry */
                continue;
            }
        }
        bool fatal = err == RD_KAFKA_RESP_ERR__FATAL;
        return err_set(errp, ERR_D_KAFKA, err, err == RD_KAFKA_RESP_ERR__QUEUE_FULL, fatal,
                       "produce to %s: %s", topic, rd_kafka_err2str(err));
    }
}

void kafka_producer_poll(kafka_producer_t *kp, int timeout_ms)
{
    rd_kafka_poll(kp->c.rk, timeout_ms);
}

int kafka_producer_flush(kafka_producer_t *kp, int timeout_ms)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(kp->c.rk, timeout_ms);
    return err ? -1 : 0;
}

void kafka_producer_destroy(kafka_producer_t *kp)
{
    if (!kp)
        return;
    if (!atomic_load(&kp->c.fatal) && !kp->transactional &&
        rd_kafka_flush(kp->c.rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_emit(LOG_LVL_ERROR, LOG_FIELDS(LOG_INT("undelivered", rd_kafka_outq_len(kp->c.rk))),
                 "producer closed with undelivered messages");
    rd_kafka_destroy(kp->c.rk);
    free(kp);
}

rd_kafka_t *kafka_producer_handle(kafka_producer_t *kp) { return kp->c.rk; }
bool kafka_producer_fatal(const kafka_producer_t *kp) { return atomic_load(&kp->c.fatal); }
bool kafka_producer_brokers_up(const kafka_producer_t *kp)
{
    return atomic_load(&kp->c.brokers_up);
}

void kafka_producer_stats(const kafka_producer_t *kp, kafka_producer_stats_t *st)
{
    st->produced = atomic_load(&kp->produced);
    st->delivered = atomic_load(&kp->delivered);
    st->failed = atomic_load(&kp->failed);
}

/* ---- consumer ---------------------------------------------------------------------- */

static void log_partitions(const char *what, const rd_kafka_topic_partition_list_t *parts)
{
    strbuf_t sb;
    strbuf_init(&sb);
    for (int i = 0; i < parts->cnt; i++)
        strbuf_appendf(&sb, "%s%s[%d]", i ? "," : "", parts->elems[i].topic,
                       parts->elems[i].partition);
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_INT("count", parts->cnt), LOG_STR("partitions", sb.data)),
             "%s", what);
    strbuf_cleanup(&sb);
}

static void txn_on_revoke(kafka_txn_t *txn, bool lost)
{
    err_t *e = NULL;
    kafka_txn_result_t r;
    if (lost) {
        rd_kafka_error_t *error = rd_kafka_abort_transaction(txn->kp->c.rk, TXN_OP_TIMEOUT_MS);
        r = error ? KAFKA_TXN_FATAL : KAFKA_TXN_ABORTED;
        if (error)
            e = kafka_err_from(error, "abort_transaction on lost assignment");
        else
            log_warn("assignment lost: aborted the open transaction");
    } else {
        r = txn_commit0(txn, &e);
    }
    txn->pending = 0;
    if (r == KAFKA_TXN_FATAL) {
        log_emit(LOG_LVL_FATAL, NULL, 0, "transaction failed on revoke: %s", e ? e->msg : "?");
        atomic_store(&txn->kp->c.fatal, true);
        err_destroy(e);
        return;
    }
    err_destroy(e);
    rd_kafka_error_t *error = rd_kafka_begin_transaction(txn->kp->c.rk);
    if (error) {
        e = kafka_err_from(error, "begin_transaction");
        log_emit(LOG_LVL_FATAL, NULL, 0, "%s", e->msg);
        atomic_store(&txn->kp->c.fatal, true);
        err_destroy(e);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kafka_consumer_t *kc = opaque;
    bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        note_reached();
        log_partitions("partitions assigned", parts);
        if (coop) {
            error = rd_kafka_incremental_assign(rk, parts);
            kc->assigned += parts->cnt;
        } else {
            aerr = rd_kafka_assign(rk, parts);
            kc->assigned = parts->cnt;
        }
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        bool lost = rd_kafka_assignment_lost(rk);
        log_partitions(lost ? "partitions lost" : "partitions revoked", parts);
        if (kc->txn) {
            txn_on_revoke(kc->txn, lost); /* commits or aborts the open transaction */
            if (kc->on_revoke)
                kc->on_revoke(kc, parts, kc->opaque);
        } else {
            if (kc->on_revoke)
                kc->on_revoke(kc, parts, kc->opaque);
            if (!lost) {
                rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
                if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
                    log_warn("commit on revoke failed: %s", rd_kafka_err2str(cerr));
            }
        }
        if (kc->tracker)
            tracker_forget(kc->tracker, parts);
        if (coop) {
            error = rd_kafka_incremental_unassign(rk, parts);
            kc->assigned -= parts->cnt;
        } else {
            aerr = rd_kafka_assign(rk, NULL);
            kc->assigned = 0;
        }
    } else {
        log_error("rebalance error: %s", rd_kafka_err2str(err));
        aerr = rd_kafka_assign(rk, NULL);
        kc->assigned = 0;
    }
    if (error) {
        err_t *e = kafka_err_from(error, "incremental (un)assign");
        log_error("%s", e->msg);
        err_destroy(e);
    } else if (aerr) {
        log_error("assign failed: %s", rd_kafka_err2str(aerr));
    }
}

kafka_consumer_t *kafka_consumer_new(const kafka_opts_t *opts, const kafka_consumer_opts_t *copts,
                                     char *errstr, size_t errstr_size)
{
    kafka_consumer_t *kc = xcalloc(1, sizeof(*kc));
    rd_kafka_topic_partition_list_t *subs = NULL;
    kc->on_revoke = copts->on_revoke;
    kc->opaque = copts->opaque;
    kc->auto_commit = copts->auto_commit;
    /* Eager assignment by default: librdkafka 2.0.2's cooperative-sticky
     * assignor can abort the process on close (#4312, fixed in 2.2.0; #4308).
     * With a newer librdkafka, -X partition.assignment.strategy=cooperative-sticky
     * works: rebalance_cb handles both protocols. */
    static const char *const defaults[] = {"partition.assignment.strategy",
                                           "range,roundrobin",
                                           "auto.offset.reset",
                                           "earliest",
                                           "isolation.level",
                                           "read_committed",
                                           NULL};
    const char *forced[] = {"group.id",
                            copts->group_id,
                            "enable.auto.offset.store",
                            "false",
                            "enable.auto.commit",
                            copts->auto_commit ? "true" : "false",
                            copts->group_instance_id ? "group.instance.id" : NULL,
                            copts->group_instance_id,
                            NULL};
    if (!copts->group_id || !*copts->group_id) {
        snprintf(errstr, errstr_size, "consumer needs a group id");
        goto err;
    }
    rd_kafka_conf_t *conf = conf_new(opts, &kc->c, defaults, forced, errstr, errstr_size);
    if (!conf)
        goto err;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    char e[512];
    kc->c.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!kc->c.rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create Kafka consumer: %s", e);
        goto err;
    }
    rd_kafka_poll_set_consumer(kc->c.rk);
    if (opts->metrics) {
        kc->m_consumed = metrics_counter(opts->metrics, "mlops_kafka_consumed_total",
                                         "Messages consumed.", NULL);
        kc->c.m_errors = metrics_counter(opts->metrics, "mlops_kafka_errors_total",
                                         "Errors reported by librdkafka.", "client=\"consumer\"");
    }
    subs = rd_kafka_topic_partition_list_new((int)copts->ntopics);
    for (size_t i = 0; i < copts->ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, copts->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(kc->c.rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (serr) {
        snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(serr));
        goto err;
    }
    return kc;
err:
    if (kc->c.rk)
        rd_kafka_destroy(kc->c.rk);
    free(kc);
    return NULL;
}

rd_kafka_message_t *kafka_consumer_poll(kafka_consumer_t *kc, int timeout_ms)
{
    for (int i = 0; i < 100; i++) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(kc->c.rk, i ? 0 : timeout_ms);
        if (!rkm)
            return NULL;
        if (!rkm->err) {
            if (kc->m_consumed)
                metric_inc(kc->m_consumed);
            return rkm;
        }
        if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (kc->c.m_errors)
                metric_inc(kc->c.m_errors);
            log_emit(LOG_LVL_WARN,
                     LOG_FIELDS(LOG_STR("topic", rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : ""),
                                LOG_INT("partition", rkm->partition),
                                LOG_STR("error", rd_kafka_err2name(rkm->err))),
                     "consumer error: %s", rd_kafka_message_errstr(rkm));
        }
        rd_kafka_message_destroy(rkm);
    }
    return NULL;
}

int kafka_consumer_store(kafka_consumer_t *kc, const char *topic, int32_t partition,
                         int64_t next_offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next_offset;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(kc->c.rk, l);
    rd_kafka_resp_err_t perr = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (err == RD_KAFKA_RESP_ERR__STATE || perr == RD_KAFKA_RESP_ERR__STATE)
        return 0; /* partition no longer ours: its new owner re-reads it */
    if (err || perr) {
        log_error("offset store %s[%d]@%lld failed: %s", topic, partition, (long long)next_offset,
                  rd_kafka_err2str(err ? err : perr));
        return -1;
    }
    return 0;
}

int kafka_consumer_commit(kafka_consumer_t *kc, err_t **errp)
{
    rd_kafka_resp_err_t err = rd_kafka_commit(kc->c.rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        return err_set(errp, ERR_D_KAFKA, err, true, false, "commit: %s", rd_kafka_err2str(err));
    return 0;
}

void kafka_consumer_close(kafka_consumer_t *kc)
{
    if (!kc)
        return;
    /* librdkafka 2.0.2 can abort in rd_kafka_cgrp_terminated() when a
     * cooperative-sticky consumer is closed while an assignment is still in
     * progress (librdkafka #4308, #4312, #4792). Leave the group first and
     * serve the rebalance until the assignment is empty, then close. Messages
     * polled here were never processed: their offsets are not stored. */
    rd_kafka_unsubscribe(kc->c.rk);
    int64_t deadline = mono_ms() + 10000;
    while (mono_ms() < deadline) {
        rd_kafka_topic_partition_list_t *a = NULL;
        bool empty =
            rd_kafka_assignment(kc->c.rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a && a->cnt == 0;
        if (a)
            rd_kafka_topic_partition_list_destroy(a);
        if (empty && kc->assigned <= 0)
            break;
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(kc->c.rk, 50);
        if (rkm)
            rd_kafka_message_destroy(rkm);
    }
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(kc->c.rk);
    if (err)
        log_warn("consumer close: %s", rd_kafka_err2str(err));
    rd_kafka_destroy(kc->c.rk);
    free(kc);
}

rd_kafka_t *kafka_consumer_handle(kafka_consumer_t *kc) { return kc->c.rk; }
bool kafka_consumer_fatal(const kafka_consumer_t *kc) { return atomic_load(&kc->c.fatal); }
bool kafka_consumer_brokers_up(const kafka_consumer_t *kc)
{
    return atomic_load(&kc->c.brokers_up);
}
int kafka_consumer_assigned(const kafka_consumer_t *kc) { return kc->assigned; }

int kafka_consumer_lag(kafka_consumer_t *kc, int64_t *lag)
{
    rd_kafka_t *rk = kc->c.rk;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(rk, &parts) || !parts)
        return -1;
    *lag = 0;
    if (parts->cnt && rd_kafka_position(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* A partition nothing was consumed from since the assignment has no
         * position yet: it resumes at its committed offset (one short broker
         * call, only while such a partition is idle), else at its start. */
        rd_kafka_topic_partition_list_t *unknown = NULL;
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset < 0) {
                if (!unknown)
                    unknown = rd_kafka_topic_partition_list_new(parts->cnt);
                rd_kafka_topic_partition_list_add(unknown, parts->elems[i].topic,
                                                  parts->elems[i].partition);
            }
        if (unknown && rd_kafka_committed(rk, unknown, 200) == RD_KAFKA_RESP_ERR_NO_ERROR)
            for (int i = 0; i < unknown->cnt; i++) {
                rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(
                    parts, unknown->elems[i].topic, unknown->elems[i].partition);
                if (p && unknown->elems[i].offset >= 0)
                    p->offset = unknown->elems[i].offset;
            }
        if (unknown)
            rd_kafka_topic_partition_list_destroy(unknown);
        for (int i = 0; i < parts->cnt; i++) {
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(rk, parts->elems[i].topic, parts->elems[i].partition,
                                               &lo, &hi) ||
                hi < 0)
                continue;
            int64_t pos = parts->elems[i].offset >= 0 ? parts->elems[i].offset : lo;
            if (hi > pos)
                *lag += hi - pos;
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return 0;
}

/* ---- offset tracker ---------------------------------------------------------------- */

typedef struct trk_part trk_part_t;

typedef struct trk_entry {
    trk_part_t *part; /* NULL once its partition was revoked */
    int64_t offset;
    int refs;
    struct trk_entry *next;
} trk_entry_t;

struct trk_part {
    char *topic;
    int32_t partition;
    trk_entry_t *head, *tail; /* begun, in offset order */
    int64_t last_begun;
    trk_part_t *next;
};

struct kafka_tracker {
    kafka_consumer_t *kc;
    trk_part_t *parts;
    trk_entry_t *free_list;
    size_t pending;
    trk_entry_t **all; /* every entry ever allocated, for destroy */
    size_t nall, capall;
};

kafka_tracker_t *kafka_tracker_new(kafka_consumer_t *kc)
{
    kafka_tracker_t *tr = xcalloc(1, sizeof(*tr));
    tr->kc = kc;
    kc->tracker = tr;
    return tr;
}

void kafka_tracker_destroy(kafka_tracker_t *tr)
{
    if (!tr)
        return;
    if (tr->kc && tr->kc->tracker == tr)
        tr->kc->tracker = NULL;
    for (trk_part_t *p = tr->parts, *pn; p; p = pn) {
        pn = p->next;
        free(p->topic);
        free(p);
    }
    for (size_t i = 0; i < tr->nall; i++)
        free(tr->all[i]);
    free(tr->all);
    free(tr);
}

static trk_part_t *trk_part_get(kafka_tracker_t *tr, const char *topic, int32_t partition)
{
    for (trk_part_t *p = tr->parts; p; p = p->next)
        if (p->partition == partition && !strcmp(p->topic, topic))
            return p;
    trk_part_t *p = xcalloc(1, sizeof(*p));
    p->topic = xstrdup(topic);
    p->partition = partition;
    p->last_begun = -1;
    p->next = tr->parts;
    tr->parts = p;
    return p;
}

void *kafka_tracker_begin(kafka_tracker_t *tr, const char *topic, int32_t partition, int64_t offset)
{
    trk_part_t *p = trk_part_get(tr, topic, partition);
    trk_entry_t *e = tr->free_list;
    if (e) {
        tr->free_list = e->next;
    } else {
        e = xmalloc(sizeof(*e));
        if (tr->nall == tr->capall) {
            tr->capall = tr->capall ? tr->capall * 2 : 64;
            tr->all = xrealloc(tr->all, tr->capall * sizeof(*tr->all));
        }
        tr->all[tr->nall++] = e;
    }
    e->part = p;
    e->offset = offset;
    e->refs = 1;
    e->next = NULL;
    if (offset <= p->last_begun)
        log_warn("tracker: %s[%d] offset %lld begun after %lld", topic, partition,
                 (long long)offset, (long long)p->last_begun);
    p->last_begun = offset;
    if (p->tail)
        p->tail->next = e;
    else
        p->head = e;
    p->tail = e;
    tr->pending++;
    return e;
}

int kafka_tracker_done(kafka_tracker_t *tr, void *handle)
{
    trk_entry_t *e = handle;
    if (--e->refs > 0)
        return 0;
    tr->pending--;
    trk_part_t *p = e->part;
    if (!p) { /* orphan of a revoked partition */
        e->next = tr->free_list;
        tr->free_list = e;
        return 0;
    }
    int64_t store = -1;
    while (p->head && p->head->refs == 0) {
        trk_entry_t *h = p->head;
        store = h->offset + 1;
        p->head = h->next;
        if (!p->head)
            p->tail = NULL;
        h->next = tr->free_list;
        tr->free_list = h;
    }
    if (store >= 0)
        return kafka_consumer_store(tr->kc, p->topic, p->partition, store);
    return 0;
}

void kafka_tracker_hold(void *handle) { ((trk_entry_t *)handle)->refs++; }

size_t kafka_tracker_pending(const kafka_tracker_t *tr) { return tr->pending; }

static void tracker_forget(kafka_tracker_t *tr, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        for (trk_part_t *p = tr->parts; p; p = p->next) {
            if (p->partition != parts->elems[i].partition ||
                strcmp(p->topic, parts->elems[i].topic))
                continue;
            /* completed entries go back to the pool; pending ones become orphans */
            for (trk_entry_t *e = p->head, *en; e; e = en) {
                en = e->next;
                if (e->refs == 0) {
                    e->next = tr->free_list;
                    tr->free_list = e;
                } else {
                    e->part = NULL;
                    e->next = NULL;
                }
            }
            p->head = p->tail = NULL;
            p->last_begun = -1;
        }
    }
}

/* ---- libevent wake-ups --------------------------------------------------------------- */

struct kafka_watch {
    struct event *ev_pipe;
    struct event *ev_again;
    struct event *ev_sweep;
    int fds[2];
    uint64_t rescued;
    rd_kafka_queue_t *rkqu;
    kafka_watch_cb *cb;
    void *opaque;
};

static void watch_run(kafka_watch_t *w) { w->cb(w->opaque); }

static void on_pipe(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    watch_run(arg);
}

static void on_again(evutil_socket_t fd, short what, void *arg) { watch_run(arg); }

/* The safety net under the pipe: librdkafka signals only some enqueues
 * (empty to non-empty, once per non-polling period), and a wake-up lost
 * anywhere in that chain would stall a service for good. A periodic look
 * at the queue length bounds such a stall to one sweep interval. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    kafka_watch_t *w = arg;
    if (rd_kafka_queue_length(w->rkqu) > 0) {
        w->rescued++;
        watch_run(w);
    }
}

kafka_watch_t *kafka_watch_new(struct event_base *base, rd_kafka_queue_t *rkqu, kafka_watch_cb *cb,
                               void *opaque, char *errstr, size_t errstr_size)
{
    kafka_watch_t *w = xcalloc(1, sizeof(*w));
    w->fds[0] = w->fds[1] = -1;
    w->rkqu = rkqu;
    w->cb = cb;
    w->opaque = opaque;
    if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC)) {
        snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
        goto err;
    }
    w->ev_pipe = event_new(base, w->fds[0], EV_READ | EV_PERSIST, on_pipe, w);
    w->ev_again = event_new(base, -1, 0, on_again, w);
    w->ev_sweep = event_new(base, -1, EV_PERSIST, on_sweep, w);
    struct timeval sweep = {0, KAFKA_WATCH_SWEEP_MS * 1000};
    if (!w->ev_pipe || !w->ev_again || !w->ev_sweep || event_add(w->ev_pipe, NULL) ||
        event_add(w->ev_sweep, &sweep)) {
        snprintf(errstr, errstr_size, "cannot add the Kafka wake-up event");
        goto err;
    }
    rd_kafka_queue_io_event_enable(rkqu, w->fds[1], "1", 1);
    event_active(w->ev_again, 0, 0); /* the queue may already hold events */
    return w;
err:
    w->rkqu = NULL; /* stays the caller's on failure */
    kafka_watch_destroy(w);
    return NULL;
}

/* A zero timeout, not event_active(): libevent runs events activated from a
 * callback in the same pass over the active queue, so a callback that keeps
 * re-activating itself through a backlog would keep the loop from polling
 * sockets (HTTP /health, /metrics, the signal pipe) until the backlog is gone.
 * A timer is only due after the next poll, so each batch lets I/O in. */
void kafka_watch_again(kafka_watch_t *w)
{
    static const struct timeval now = {0, 0};
    if (event_add(w->ev_again, &now))
        event_active(w->ev_again, 0, 0); /* cannot happen with a valid event; do not stall */
}

uint64_t kafka_watch_rescued(const kafka_watch_t *w) { return w->rescued; }

void kafka_watch_destroy(kafka_watch_t *w)
{
    if (!w)
        return;
    if (w->rkqu) {
        rd_kafka_queue_io_event_enable(w->rkqu, -1, NULL, 0);
        rd_kafka_queue_destroy(w->rkqu);
    }
    if (w->ev_pipe)
        event_free(w->ev_pipe);
    if (w->ev_again)
        event_free(w->ev_again);
    if (w->ev_sweep)
        event_free(w->ev_sweep);
    for (int i = 0; i < 2; i++)
        if (w->fds[i] >= 0)
            close(w->fds[i]);
    free(w);
}

kafka_watch_t *kafka_consumer_watch(kafka_consumer_t *kc, struct event_base *base,
                                    kafka_watch_cb *cb, void *opaque, char *errstr,
                                    size_t errstr_size)
{
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(kc->c.rk);
    kafka_watch_t *w = kafka_watch_new(base, q, cb, opaque, errstr, errstr_size);
    if (!w)
        rd_kafka_queue_destroy(q);
    return w;
}

static void producer_serve(void *opaque)
{
    kafka_producer_t *kp = opaque;
    rd_kafka_poll(kp->c.rk, 0);
}

kafka_watch_t *kafka_producer_watch(kafka_producer_t *kp, struct event_base *base, char *errstr,
                                    size_t errstr_size)
{
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(kp->c.rk);
    kafka_watch_t *w = kafka_watch_new(base, q, producer_serve, kp, errstr, errstr_size);
    if (!w)
        rd_kafka_queue_destroy(q);
    return w;
}

/* ---- transactions -------------------------------------------------------------------- */

kafka_txn_t *kafka_txn_new(const kafka_opts_t *opts, const kafka_consumer_opts_t *copts,
                           const char *transactional_id, char *errstr, size_t errstr_size)
{
    kafka_txn_t *txn = xcalloc(1, sizeof(*txn));
    txn->kp = kafka_producer_new(opts, transactional_id, NULL, NULL, errstr, errstr_size);
    if (!txn->kp)
        goto err;
    kafka_consumer_opts_t c = *copts;
    c.auto_commit = false; /* offsets commit inside the transaction */
    txn->kc = kafka_consumer_new(opts, &c, errstr, errstr_size);
    if (!txn->kc)
        goto err;
    txn->kc->txn = txn;
    rd_kafka_error_t *error = rd_kafka_begin_transaction(txn->kp->c.rk);
    if (error) {
        err_t *e = kafka_err_from(error, "begin_transaction");
        snprintf(errstr, errstr_size, "%s", e->msg);
        err_destroy(e);
        goto err;
    }
    return txn;
err:
    if (txn->kc)
        kafka_consumer_close(txn->kc);
    if (txn->kp)
        kafka_producer_destroy(txn->kp);
    free(txn);
    return NULL;
}

rd_kafka_message_t *kafka_txn_poll(kafka_txn_t *txn, int timeout_ms)
{
    return kafka_consumer_poll(txn->kc, timeout_ms);
}

int kafka_txn_produce(kafka_txn_t *txn, const char *topic, int32_t partition, const void *key,
                      size_t keylen, const void *value, size_t valuelen, err_t **errp)
{
    if (kafka_produce(txn->kp, topic, partition, key, keylen, value, valuelen, NULL, errp)) {
        txn->produce_failed = true;
        return -1;
    }
    txn->pending++;
    return 0;
}

size_t kafka_txn_pending(const kafka_txn_t *txn) { return txn->pending; }

static void rewind_consumer(kafka_txn_t *txn)
{
    rd_kafka_t *rk = txn->kc->c.rk;
    rd_kafka_topic_partition_list_t *offsets = NULL;
    if (rd_kafka_assignment(rk, &offsets) || !offsets)
        return;
    if (offsets->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(offsets);
        return;
    }
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, offsets, 10000);
    if (err) {
        log_emit(LOG_LVL_FATAL, NULL, 0, "cannot read committed offsets to rewind: %s",
                 rd_kafka_err2str(err));
        atomic_store(&txn->kc->c.fatal, true);
        rd_kafka_topic_partition_list_destroy(offsets);
        return;
    }
    for (int i = 0; i < offsets->cnt; i++)
        if (offsets->elems[i].offset < 0)
            offsets->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *error = rd_kafka_seek_partitions(rk, offsets, -1);
    if (error) {
        err_t *e = kafka_err_from(error, "seek to committed offsets");
        log_emit(LOG_LVL_FATAL, NULL, 0, "%s", e->msg);
        atomic_store(&txn->kc->c.fatal, true);
        err_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(offsets);
}

static kafka_txn_result_t txn_abort_and_rewind(kafka_txn_t *txn, err_t **errp)
{
    rd_kafka_error_t *error = rd_kafka_abort_transaction(txn->kp->c.rk, TXN_OP_TIMEOUT_MS);
    txn->pending = 0;
    txn->produce_failed = false;
    if (error) {
        err_t *e = kafka_err_from(error, "abort_transaction");
        e->fatal = true;
        if (errp && !*errp)
            *errp = e;
        else
            err_destroy(e);
        return KAFKA_TXN_FATAL;
    }
    rewind_consumer(txn);
    if (atomic_load(&txn->kc->c.fatal))
        return err_set(errp, ERR_D_KAFKA, RD_KAFKA_RESP_ERR__FATAL, false, true,
                       "rewind after abort failed"),
               KAFKA_TXN_FATAL;
    return KAFKA_TXN_ABORTED;
}

/* Run one transactional call with retries; returns NULL on success, or the
 * error (not retriable, or out of time). */
typedef rd_kafka_error_t *(txn_call_fn)(kafka_txn_t *txn, void *arg);

static rd_kafka_error_t *call_send_offsets(kafka_txn_t *txn, void *arg)
{
    rd_kafka_t *crk = txn->kc->c.rk;
    rd_kafka_topic_partition_list_t *offsets = arg;
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(crk);
    rd_kafka_error_t *error =
        rd_kafka_send_offsets_to_transaction(txn->kp->c.rk, offsets, cgmd, TXN_OP_TIMEOUT_MS);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    return error;
}

static rd_kafka_error_t *call_commit(kafka_txn_t *txn, void *arg)
{
    return rd_kafka_commit_transaction(txn->kp->c.rk, TXN_OP_TIMEOUT_MS);
}

static rd_kafka_error_t *txn_retry(kafka_txn_t *txn, txn_call_fn *fn, void *arg)
{
    int64_t deadline = mono_ms() + TXN_RETRY_DEADLINE_MS;
    for (;;) {
        rd_kafka_error_t *error = fn(txn, arg);
        if (!error || !rd_kafka_error_is_retriable(error) || mono_ms() > deadline)
            return error;
        log_warn("transaction call failed, retrying: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        usleep(100 * 1000);
    }
}

/* Commit the open transaction (no begin). The consumer's position is committed
 * with it, so a transaction in which a produce failed must never commit: its
 * failed outputs were never written, and their inputs would be skipped for good.
 * (librdkafka does not always refuse itself: after rd_kafka_test_fatal_error() the
 * commit of such a transaction went through and lost the failed inputs.) */
static kafka_txn_result_t txn_commit0(kafka_txn_t *txn, err_t **errp)
{
    rd_kafka_t *crk = txn->kc->c.rk;
    /* Never after a fatal error: the consumer's positions may be past inputs whose
     * outputs were never produced (the batch stopped at the failed produce), and
     * librdkafka may still accept the offsets of a transaction with no message in it
     * (seen with rd_kafka_test_fatal_error: 1 to 3 inputs lost on the revoke of the
     * fatal drain). */
    char why[256];
    if (atomic_load(&txn->kp->c.fatal) ||
        rd_kafka_fatal_error(txn->kp->c.rk, why, sizeof(why)) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return err_set(errp, ERR_D_KAFKA, RD_KAFKA_RESP_ERR__FATAL, false, true,
                       "not committing after a fatal Kafka error"),
               KAFKA_TXN_FATAL;
    if (txn->produce_failed) {
        log_warn("a produce of this transaction failed: aborting it, the inputs are read again");
        return txn_abort_and_rewind(txn, errp);
    }
    rd_kafka_topic_partition_list_t *offsets = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(crk, &offsets);
    if (err || !offsets || offsets->cnt == 0) {
        /* no partitions: nothing to commit offsets for; outputs must not
         * outlive their inputs, so abort */
        if (offsets)
            rd_kafka_topic_partition_list_destroy(offsets);
        if (txn->pending == 0) {
            /* empty transaction: committing is cheap and keeps state simple */
            rd_kafka_error_t *error = txn_retry(txn, call_commit, NULL);
            if (!error)
                return KAFKA_TXN_COMMITTED;
            rd_kafka_error_destroy(error);
        }
        return txn_abort_and_rewind(txn, errp);
    }
    err = rd_kafka_position(crk, offsets);
    if (err) {
        rd_kafka_topic_partition_list_destroy(offsets);
        return err_set(errp, ERR_D_KAFKA, err, false, true, "position: %s", rd_kafka_err2str(err)),
               KAFKA_TXN_FATAL;
    }
    rd_kafka_error_t *error = txn_retry(txn, call_send_offsets, offsets);
    rd_kafka_topic_partition_list_destroy(offsets);
    if (!error)
        error = txn_retry(txn, call_commit, NULL);
    if (!error) {
        txn->pending = 0;
        return KAFKA_TXN_COMMITTED;
    }
    if (rd_kafka_error_txn_requires_abort(error)) {
        log_warn("transaction must be aborted: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        return txn_abort_and_rewind(txn, errp);
    }
    err_t *e = kafka_err_from(error, "commit_transaction");
    e->fatal = true;
    if (errp && !*errp)
        *errp = e;
    else
        err_destroy(e);
    return KAFKA_TXN_FATAL;
}

static kafka_txn_result_t txn_begin(kafka_txn_t *txn, kafka_txn_result_t r, err_t **errp)
{
    if (r == KAFKA_TXN_FATAL)
        return r;
    rd_kafka_error_t *error = rd_kafka_begin_transaction(txn->kp->c.rk);
    if (error) {
        err_t *e = kafka_err_from(error, "begin_transaction");
        e->fatal = true;
        if (errp && !*errp)
            *errp = e;
        else
            err_destroy(e);
        return KAFKA_TXN_FATAL;
    }
    return r;
}

kafka_txn_result_t kafka_txn_commit(kafka_txn_t *txn, err_t **errp)
{
    return txn_begin(txn, txn_commit0(txn, errp), errp);
}

kafka_txn_result_t kafka_txn_abort(kafka_txn_t *txn, err_t **errp)
{
    return txn_begin(txn, txn_abort_and_rewind(txn, errp), errp);
}

void kafka_txn_destroy(kafka_txn_t *txn)
{
    if (!txn)
        return;
    if (!kafka_producer_fatal(txn->kp)) {
        rd_kafka_error_t *error = rd_kafka_abort_transaction(txn->kp->c.rk, TXN_OP_TIMEOUT_MS);
        if (error)
            rd_kafka_error_destroy(error);
    }
    txn->kc->txn = NULL; /* closing revokes partitions: no transaction work then */
    kafka_consumer_close(txn->kc);
    kafka_producer_destroy(txn->kp);
    free(txn);
}

kafka_consumer_t *kafka_txn_consumer(kafka_txn_t *txn) { return txn->kc; }
kafka_producer_t *kafka_txn_producer(kafka_txn_t *txn) { return txn->kp; }
