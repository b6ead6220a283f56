/* The outbox relay: a thread with its own Postgres connection and Kafka
 * producer publishes unsent outbox rows to the models topic in id order
 * (= commit order), keyed by model name, and marks them sent once Kafka
 * acknowledged every row of the batch. At least once: a crash between
 * delivery and marking publishes the batch again. Only one relay runs per
 * database (a session advisory lock), so two registries never interleave. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "log.h"
#include "mjson.h"
#include "registry.h"

struct relay {
    char *dsn, *topic;
    int batch, poll_ms, stmt_timeout_ms;
    kafka_producer_t *kp;
    pthread_t th;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked;
    atomic_uint_least64_t published;
    atomic_uint_least64_t failed;
    metric_t *m_published, *m_unsent, *m_retries;
};

static void on_delivery(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque)
{
    relay_t *r = opaque;
    if (rkm->err)
        atomic_fetch_add(&r->failed, 1);
}

/* Wait up to @p ms or until kicked/stopped. Returns true if stopping. */
static bool relay_wait(relay_t *r, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->stop && !r->kicked)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts))
            break;
    r->kicked = false;
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    return stop;
}

static bool stopping(relay_t *r)
{
    pthread_mutex_lock(&r->mu);
    bool s = r->stop;
    pthread_mutex_unlock(&r->mu);
    return s;
}

/* Publish one batch. Returns rows published, 0 if none were waiting, -1 on error. */
static int relay_batch(relay_t *r, pg_t *pg)
{
    err_t *e = NULL;
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", r->batch);
    PGresult *res = pg_exec(pg,
                            "SELECT id, model_name, payload FROM outbox WHERE sent_ms IS NULL"
                            " ORDER BY id LIMIT $1::int",
                            1, QPARAMS(lim), &e);
    if (!res) {
        log_warn("outbox relay: %s", e->msg);
        err_destroy(e);
        return -1;
    }
    int n = PQntuples(res);
    if (!n) {
        PQclear(res);
        return 0;
    }
    atomic_store(&r->failed, 0);
    strbuf_t ids;
    strbuf_init(&ids);
    strbuf_putc(&ids, '{');
    int rc = n;
    for (int i = 0; i < n; i++) {
        const char *id = PQgetvalue(res, i, 0), *name = PQgetvalue(res, i, 1);
        const char *payload = PQgetvalue(res, i, 2);
        int64_t idv = 0;
        if (parse_int64(id, &idv))
            idv = 0;
        /* each event carries its outbox id: consumers see commit order and gaps */
        json_t *ev = json_loads(payload, 0, NULL);
        char *text = NULL;
        if (ev) {
            json_object_set_new(ev, "outbox_id", json_integer(idv));
            text = mjson_dump(ev, NULL);
            json_decref(ev);
        }
        if (!text)
            text = xstrdup(payload);
        if (kafka_produce(r->kp, r->topic, RD_KAFKA_PARTITION_UA, name, strlen(name), text,
                          strlen(text), NULL, &e)) {
            log_warn("outbox relay: produce: %s", e ? e->msg : "?");
            err_destroy(e);
            e = NULL;
            rc = -1;
            free(text);
            break;
        }
        free(text);
        strbuf_appendf(&ids, "%s%s", i ? "," : "", id);
    }
    PQclear(res);
    strbuf_putc(&ids, '}');
    /* wait for every acknowledgement (librdkafka retries until message.timeout.ms) */
    while (kafka_producer_flush(r->kp, 1000)) {
        if (stopping(r)) {
            strbuf_cleanup(&ids);
            return -1;
        }
    }
    if (rc < 0 || atomic_load(&r->failed)) {
        metric_inc(r->m_retries);
        log_warn("outbox relay: %llu of the batch not delivered; retrying it",
                 (unsigned long long)atomic_load(&r->failed));
        strbuf_cleanup(&ids);
        return -1;
    }
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
    if (pg_exec_cmd(pg, "UPDATE outbox SET sent_ms = $2::bigint WHERE id = ANY($1::bigint[])", 2,
                    QPARAMS(ids.data, now), &e)) {
        log_warn("outbox relay: marking sent: %s (the batch will be published again)", e->msg);
        err_destroy(e);
        strbuf_cleanup(&ids);
        return -1;
    }
    strbuf_cleanup(&ids);
    atomic_fetch_add(&r->published, (uint64_t)n);
    metric_add(r->m_published, (double)n);
    return n;
}

static void *relay_main(void *arg)
{
    relay_t *r = arg;
    pg_t *pg = NULL;
    bool locked = false;
    int64_t last_warn = 0;
    while (!stopping(r)) {
        if (!pg || !pg_ok(pg)) {
            pg_close(pg);
            locked = false;
            err_t *e = NULL;
            pg = pg_connect(r->dsn, 5, r->stmt_timeout_ms, &e);
            if (!pg) {
                if (mono_ms() - last_warn > 10000) {
                    log_warn("outbox relay: %s", e ? e->msg : "?");
                    last_warn = mono_ms();
                }
                err_destroy(e);
                if (relay_wait(r, 1000))
                    break;
                continue;
            }
        }
        if (!locked) {
            char key[32];
            snprintf(key, sizeof(key), "%lld", (long long)REGISTRY_LOCK_RELAY);
            err_t *e = NULL;
            PGresult *res =
                pg_exec(pg, "SELECT pg_try_advisory_lock($1::bigint)", 1, QPARAMS(key), &e);
            if (res) {
                locked = !strcmp(PQgetvalue(res, 0, 0), "t");
                PQclear(res);
            } else {
                err_destroy(e);
            }
            if (!locked) { /* another registry relays; stand by */
                if (relay_wait(r, 1000))
                    break;
                continue;
            }
            log_info("outbox relay: active (topic %s)", r->topic);
        }
        int n = relay_batch(r, pg);
        if (n == r->batch)
            continue; /* more waiting */
        err_t *e = NULL;
        PGresult *res =
            pg_exec(pg, "SELECT count(*) FROM outbox WHERE sent_ms IS NULL", 0, NULL, &e);
        if (res) {
            double unsent = 0;
            if (parse_double(PQgetvalue(res, 0, 0), &unsent) == 0)
                metric_set(r->m_unsent, unsent);
            PQclear(res);
        }
        err_destroy(e);
        if (relay_wait(r, n < 0 ? 1000 : r->poll_ms))
            break;
    }
    /* publish what is committed before leaving (bounded) */
    if (pg && locked)
        (void)relay_batch(r, pg);
    pg_close(pg);
    return NULL;
}

relay_t *relay_start(registry_t *rg, const cfg_kv_t *props, size_t nprops, char *errstr,
                     size_t errstr_size)
{
    const registry_conf_t *c = rg->conf;
    relay_t *r = xcalloc(1, sizeof(*r));
    r->dsn = xstrdup(c->pg_dsn);
    r->topic = xstrdup(c->models_topic);
    r->batch = (int)c->outbox_batch;
    r->poll_ms = (int)c->outbox_poll_ms;
    r->stmt_timeout_ms = (int)c->pg_statement_timeout_ms;
    metrics_t *m = service_metrics(rg->svc);
    r->m_published = metrics_counter(m, "mlops_registry_outbox_published_total",
                                     "Outbox rows published to the models topic.", NULL);
    r->m_unsent =
        metrics_gauge(m, "mlops_registry_outbox_unsent",
                      "Committed outbox rows not yet published (as of the last poll).", NULL);
    r->m_retries = metrics_counter(m, "mlops_registry_outbox_retries_total",
                                   "Outbox batches published again after a failure.", NULL);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    kafka_opts_t ko = {.brokers = c->kafka_brokers,
                       .client_id = "mlops-registry",
                       .props = props,
                       .nprops = nprops,
                       .metrics = service_metrics(rg->svc)};
    r->kp = kafka_producer_new(&ko, NULL, on_delivery, r, errstr, errstr_size);
    if (!r->kp)
        goto err;
    if (pthread_create(&r->th, NULL, relay_main, r)) {
        snprintf(errstr, errstr_size, "cannot start the relay thread");
        goto err;
    }
    r->started = true;
    return r;
err:
    relay_stop(r);
    return NULL;
}

void relay_kick(relay_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->kicked = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void relay_stop(relay_t *r)
{
    if (!r)
        return;
    if (r->started) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->th, NULL);
    }
    kafka_producer_destroy(r->kp);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->dsn);
    free(r->topic);
    free(r);
}

uint64_t relay_published(const relay_t *r) { return r ? atomic_load(&r->published) : 0; }
