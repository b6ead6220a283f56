/*
 * mlops-bench run: a load generator and a measuring consumer in one process.
 *
 * The producer (main thread) writes --count feature-like JSON events to --in,
 * flat out or at --rate events/s. The measuring consumer (a second thread)
 * reads --out, which a stage under test fills from --in (or which is --in
 * itself for the broker-only baseline), and records for every event the
 * receive time minus the send time.
 *
 * Send timestamp: in the payload ("sent_us", µs since the epoch,
 * CLOCK_REALTIME, taken just before the event is handed to librdkafka), so
 * any consumer can compute latency without this tool; and, keyed by the
 * event's sequence number, in a table in this process. The measuring
 * consumer uses the table and finds the event by its "event_id" field: the
 * stages keep event_id in their outputs (prediction/1 does) but rewrite the
 * rest of the payload, and headers do not survive a stage that builds a new
 * message. One path for every stage keeps the comparison fair.
 *
 * Start-up: before the measured events, warm-up events (event ids
 * "<run>-w<k>") go out every 200 ms until one comes back on --out, so the
 * stage's group join and the clients' connection set-up are not measured;
 * at a fixed rate, --warmup seconds of warm-up events at that rate follow,
 * so the measured events meet the steady state.
 *
 * Latency histogram: every sample is kept (8 bytes each) and sorted, so the
 * percentiles are exact at the clock's 1 µs resolution (nearest-rank).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "benchkit.h"
#include "lifecycle.h"
#include "log.h"
#include "util.h"

#define WARMUP_INTERVAL_US 200000
#define BODY_POOL 1024 /* distinct event bodies, chosen at random per event */
#define PAYLOAD_MAX 2048

typedef struct run_opts {
    const char *brokers;
    const char *in;
    const char *out;
    const char *label;
    const char *json_path;
    const char *samples_path;
    int64_t count;
    int64_t rate; /* events/s; 0 = flat out */
    int64_t entities;
    int64_t seed;
    int64_t ready_timeout; /* s */
    int64_t idle_timeout;  /* s */
    int64_t warmup;        /* s of warm-up events at --rate */
    bool features;         /* --format features: events shaped as features/1 */
    bench_props_t props;
} run_opts_t;

typedef struct run {
    const run_opts_t *o;
    char run_id[17];
    size_t run_id_len;
    uint64_t count;
    _Atomic int64_t *sent_us; /* by sequence: CLOCK_REALTIME µs at send */

    /* measuring consumer (its thread writes, main reads after join) */
    rd_kafka_t *rkc;
    int32_t partitions;
    int64_t *lat_us;   /* one sample per event, first arrival */
    uint64_t *lat_seq; /* the event of each sample (for --samples) */
    uint8_t *seen;
    uint64_t received;
    uint64_t duplicates; /* further arrivals of an event already seen */
    uint64_t foreign;    /* messages without one of our event ids */
    uint64_t consume_errors;
    int64_t first_recv_us, last_recv_us;
    bool timed_out;
    atomic_bool warm; /* a warm-up event came back */
    atomic_bool producer_done;
    _Atomic int64_t producer_done_mono;
    atomic_bool stop;

    /* producer (main thread) */
    rd_kafka_t *rkp;
    rd_kafka_topic_t *rkt_in;
    uint64_t delivered, failed;
    uint64_t queue_full;
    uint64_t sent; /* measured events handed to librdkafka */
    int64_t first_send_us, last_send_us;
    int64_t max_sched_lag_us;
    uint64_t warmups_sent;
    uint64_t payload_bytes;
    char **bodies;
    size_t *body_len;
} run_t;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

/* ---- event shape ------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rng_below(uint64_t *s, unsigned n) { return (unsigned)(rng_next(s) % n); }

static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) / 9007199254740992.0; }

#define PICK(s, arr) ((arr)[rng_below((s), (unsigned)MLOPS_ARRAY_LEN(arr))])

/*
 * One event body: everything after the per-event header fields. 25 fields
 * of a card-payment feature event (numeric, integer, categorical, boolean),
 * about 620 bytes; with the 5 header fields an event is 30 fields and about
 * 780 bytes.
 */
static char *body_new(uint64_t *s, size_t *lenp)
{
    static const char *const currency[] = {"EUR", "USD", "GBP", "CHF", "SEK"};
    static const char *const category[] = {"grocery",     "fuel",    "travel", "electronics",
                                           "restaurants", "apparel", "health", "entertainment",
                                           "utilities",   "other"};
    static const char *const channel[] = {"web", "mobile_app", "pos", "atm", "phone"};
    static const char *const device[] = {"ios", "android", "desktop", "tablet", "unknown"};
    static const char *const country[] = {"DE", "FR", "NL", "GB", "US", "ES", "IT", "PL", "SE"};
    static const char *const plan[] = {"free", "basic", "gold", "platinum"};
    static const char *const segment[] = {"retail", "smb", "corporate", "student"};
    static const char *const email[] = {"gmail.com", "outlook.com", "yahoo.com", "proton.me",
                                        "example.org"};
    static const char *const agent[] = {
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.144 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.2 Safari/605.1.15"};
    double amount = exp(3.0 + 1.5 * rng_unit(s) * 2.0);
    char *b = xasprintf(
        "\"amount\":%.2f,\"currency\":\"%s\",\"merchant_id\":\"m-%06u\","
        "\"merchant_category\":\"%s\",\"channel\":\"%s\",\"device\":\"%s\","
        "\"country\":\"%s\",\"latitude\":%.4f,\"longitude\":%.4f,"
        "\"distance_from_home_km\":%.1f,\"ip_risk_score\":%.4f,\"card_present\":%s,"
        "\"is_international\":%s,\"account_age_days\":%u,\"age\":%u,"
        "\"plan\":\"%s\",\"segment\":\"%s\",\"email_domain\":\"%s\",\"balance\":%.2f,"
        "\"credit_limit\":%u,\"txn_count_24h\":%u,\"txn_count_7d\":%u,"
        "\"amount_avg_30d\":%.2f,\"amount_max_30d\":%.2f,\"user_agent\":\"%s\"}",
        amount, PICK(s, currency), rng_below(s, 500000), PICK(s, category), PICK(s, channel),
        PICK(s, device), PICK(s, country), 35.0 + 25.0 * rng_unit(s), -10.0 + 40.0 * rng_unit(s),
        2000.0 * rng_unit(s) * rng_unit(s), rng_unit(s), rng_below(s, 2) ? "true" : "false",
        rng_below(s, 10) ? "false" : "true", rng_below(s, 5000), 18 + rng_below(s, 70),
        PICK(s, plan), PICK(s, segment), PICK(s, email), 20000.0 * rng_unit(s) - 500.0,
        500u * (1 + rng_below(s, 40)), rng_below(s, 30), rng_below(s, 120),
        amount * (0.5 + rng_unit(s)), amount * (1.0 + 4.0 * rng_unit(s)), PICK(s, agent));
    *lenp = strlen(b);
    return b;
}

/* Write one event into buf (PAYLOAD_MAX bytes); returns its length. */
static size_t event_build(const run_t *r, char *buf, const char *seqtext, unsigned entity,
                          int64_t sent_us, const char *body, size_t body_len, char *key,
                          size_t keysize, size_t *keylen)
{
    char when[32];
    fmt_rfc3339(sent_us, when, sizeof(when));
    int k = snprintf(key, keysize, "cust-%06u", entity);
    *keylen = (size_t)k;
    int n;
    if (r->o->features) /* the same fields as the values of a features/1 record */
        n = snprintf(buf, PAYLOAD_MAX,
                     "{\"schema\":\"features/1\",\"event_id\":\"%s-%s\",\"entity\":\"%s\","
                     "\"event_time\":\"%s\",\"spec\":{\"name\":\"bench_score\",\"version\":1,"
                     "\"hash\":\"%064d\"},\"values\":{\"sent_us\":%" PRId64 ",",
                     r->run_id, seqtext, key, when, 0, sent_us);
    else
        n = snprintf(buf, PAYLOAD_MAX,
                     "{\"schema\":\"bench_event/1\",\"event_id\":\"%s-%s\",\"entity_id\":\"%s\","
                     "\"event_time\":\"%s\",\"sent_us\":%" PRId64 ",",
                     r->run_id, seqtext, key, when, sent_us);
    if (n < 0 || (size_t)n + body_len + 1 >= PAYLOAD_MAX)
        abort(); /* bodies are generated here and far smaller */
    memcpy(buf + n, body, body_len);
    if (r->o->features)
        buf[n + body_len++] = '}';
    return (size_t)n + body_len;
}

/*
 * Find our event in an output payload: "event_id":"<run>-<seq>" or
 * "<run>-w<k>" (warm-up). Tolerates white space around the colon. Returns
 * 1 for a measured event (*seq set), 2 for a warm-up, 0 for anything else.
 */
static int event_find(const run_t *r, const char *p, size_t len, uint64_t *seq)
{
    static const char key[] = "\"event_id\"";
    if (!p || !len)
        return 0; /* a tombstone */
    const char *end = p + len;
    const char *q = memmem(p, len, key, sizeof(key) - 1);
    if (!q)
        return 0;
    q += sizeof(key) - 1;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    if (q >= end || *q++ != ':')
        return 0;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    if (q >= end || *q++ != '"')
        return 0;
    if ((size_t)(end - q) < r->run_id_len + 2 || memcmp(q, r->run_id, r->run_id_len) ||
        q[r->run_id_len] != '-')
        return 0;
    q += r->run_id_len + 1;
    if (*q == 'w')
        return 2;
    uint64_t v = 0;
    const char *d = q;
    while (q < end && *q >= '0' && *q <= '9' && q - d < 19)
        v = v * 10 + (uint64_t)(*q++ - '0');
    if (q == d || q >= end || *q != '"')
        return 0;
    *seq = v;
    return 1;
}

/* ---- measuring consumer --------------------------------------------------------------- */

/* Assign every partition of --out from the beginning (no group join, nothing
 * committed): the topic is new, so nothing but this run is on it. */
static int measure_assign(run_t *r, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rkc, r->o->out, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int64_t deadline = mono_ms() + 15000;
    int rc = -1;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_metadata(r->rkc, 0, rkt, &md, 5000);
        if (!err && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0)
            break;
        if (mono_ms() > deadline) {
            snprintf(errstr, errstr_size,
                     "no metadata for topic '%s' from %s: %s (does it exist? "
                     "mlops-bench create %s)",
                     r->o->out, r->o->brokers,
                     rd_kafka_err2str(err                   ? err
                                      : md && md->topic_cnt ? md->topics[0].err
                                                            : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC),
                     r->o->out);
            goto done;
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        md = NULL;
        usleep(200000);
    }
    r->partitions = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(r->partitions);
    for (int32_t p = 0; p < r->partitions; p++)
        rd_kafka_topic_partition_list_add(parts, r->o->out, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t aerr = rd_kafka_assign(r->rkc, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (aerr) {
        snprintf(errstr, errstr_size, "assign %s: %s", r->o->out, rd_kafka_err2str(aerr));
        goto done;
    }
    rc = 0;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

static void *measure_main(void *arg)
{
    run_t *r = arg;
    int64_t last_progress = mono_us();
    while (!atomic_load(&r->stop) && r->received < r->count) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(r->rkc, 100);
        int64_t now = wall_us();
        if (rkm) {
            uint64_t seq = 0;
            int kind = 0;
            if (rkm->err) {
                if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && r->consume_errors++ < 5)
                    log_emit(LOG_LVL_WARN,
                             LOG_FIELDS(LOG_STR("error", rd_kafka_err2name(rkm->err))),
                             "measure: %s", rd_kafka_message_errstr(rkm));
            } else {
                kind = event_find(r, rkm->payload, rkm->len, &seq);
            }
            if (kind == 2) {
                atomic_store(&r->warm, true);
            } else if (kind == 1 && seq < r->count) {
                if (r->seen[seq]) {
                    r->duplicates++;
                } else {
                    r->seen[seq] = 1;
                    int64_t sent = atomic_load_explicit(&r->sent_us[seq], memory_order_acquire);
                    r->lat_seq[r->received] = seq;
                    r->lat_us[r->received++] = now - sent;
                    if (!r->first_recv_us)
                        r->first_recv_us = now;
                    r->last_recv_us = now;
                    last_progress = mono_us();
                }
            } else if (!rkm->err) {
                r->foreign++;
            }
            rd_kafka_message_destroy(rkm);
        }
        if (atomic_load(&r->producer_done)) {
            int64_t since = atomic_load(&r->producer_done_mono);
            if (since < last_progress)
                since = last_progress;
            if (mono_us() - since > r->o->idle_timeout * 1000000) {
                r->timed_out = true;
                break;
            }
        }
    }
    return NULL;
}

/* ---- producer --------------------------------------------------------------------------- */

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    run_t *r = opaque;
    if (!rkm->err) {
        r->delivered++;
        return;
    }
    if (r->failed++ < 5)
        log_emit(LOG_LVL_ERROR,
                 LOG_FIELDS(LOG_STR("topic", rd_kafka_topic_name(rkm->rkt)),
                            LOG_STR("error", rd_kafka_err2name(rkm->err))),
                 "delivery failed: %s", rd_kafka_err2str(rkm->err));
}

/* Produce one event; on a full queue serve delivery reports and retry. */
static int produce_one(run_t *r, const char *key, size_t keylen, const char *buf, size_t len)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            r->rkp, RD_KAFKA_V_RKT(r->rkt_in), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE((void *)buf, len), RD_KAFKA_V_END);
        if (!err)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            log_error("produce to %s: %s", r->o->in, rd_kafka_err2str(err));
            return -1;
        }
        r->queue_full++;
        rd_kafka_poll(r->rkp, 1);
    }
}

static void sleep_until_mono(int64_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop_signal)
        ;
}

/* Send warm-up events every 200 ms until one comes back (the stage is up). */
static int warm_up(run_t *r, uint64_t *rng)
{
    char buf[PAYLOAD_MAX], key[32], seqtext[24];
    size_t keylen;
    int64_t deadline = mono_us() + r->o->ready_timeout * 1000000;
    int64_t next = 0;
    uint64_t k = 0;
    while (!atomic_load(&r->warm)) {
        int64_t now = mono_us();
        if (stop_signal || atomic_load(&bench_fatal))
            return -1;
        if (now > deadline) {
            if (!strcmp(r->o->in, r->o->out))
                log_error("no warm-up event came back from '%s' within %" PRId64 " s: "
                          "is the broker at %s up?",
                          r->o->in, r->o->ready_timeout, r->o->brokers);
            else
                log_error("no warm-up event came through '%s' -> '%s' within %" PRId64 " s: "
                          "is the stage running and consuming '%s'?",
                          r->o->in, r->o->out, r->o->ready_timeout, r->o->in);
            return -1;
        }
        if (now >= next) {
            snprintf(seqtext, sizeof(seqtext), "w%" PRIu64, k);
            unsigned body = rng_below(rng, BODY_POOL);
            size_t len =
                event_build(r, buf, seqtext, rng_below(rng, (unsigned)r->o->entities), wall_us(),
                            r->bodies[body], r->body_len[body], key, sizeof(key), &keylen);
            if (produce_one(r, key, keylen, buf, len))
                return -1;
            k++;
            r->warmups_sent++;
            next = now + WARMUP_INTERVAL_US;
        }
        rd_kafka_poll(r->rkp, 10);
    }
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_INT("warmup_events", k)), "stage is passing events");
    return 0;
}

/*
 * The measured events. At a fixed rate, --warmup seconds of warm-up events
 * at that rate come first on the same schedule, so the measured events find
 * the pipeline in its steady state (batching, fetch sessions, caches).
 */
static int produce_all(run_t *r, uint64_t *rng)
{
    char buf[PAYLOAD_MAX], key[32], seqtext[24];
    size_t keylen;
    int64_t t0 = mono_us();
    double step_us = r->o->rate ? 1e6 / (double)r->o->rate : 0.0;
    uint64_t nwarm = r->o->rate ? (uint64_t)(r->o->rate * r->o->warmup) : 0;
    for (uint64_t j = 0; j < nwarm + r->count; j++) {
        if (stop_signal || atomic_load(&bench_fatal))
            return -1;
        if (r->o->rate) {
            int64_t due = t0 + (int64_t)((double)j * step_us);
            int64_t now = mono_us();
            if (due > now + 50)
                sleep_until_mono(due);
            else if (j >= nwarm && now - due > r->max_sched_lag_us)
                r->max_sched_lag_us = now - due;
        }
        unsigned body = rng_below(rng, BODY_POOL);
        unsigned entity = rng_below(rng, (unsigned)r->o->entities);
        int64_t ts = wall_us();
        if (j < nwarm) {
            snprintf(seqtext, sizeof(seqtext), "w%" PRIu64, r->warmups_sent++);
            size_t len = event_build(r, buf, seqtext, entity, ts, r->bodies[body],
                                     r->body_len[body], key, sizeof(key), &keylen);
            if (produce_one(r, key, keylen, buf, len))
                return -1;
            if ((j & 63) == 0)
                rd_kafka_poll(r->rkp, 0);
            continue;
        }
        uint64_t i = j - nwarm;
        snprintf(seqtext, sizeof(seqtext), "%" PRIu64, i);
        atomic_store_explicit(&r->sent_us[i], ts, memory_order_release);
        size_t len = event_build(r, buf, seqtext, entity, ts, r->bodies[body], r->body_len[body],
                                 key, sizeof(key), &keylen);
        if (produce_one(r, key, keylen, buf, len))
            return -1;
        if (!i)
            r->first_send_us = ts;
        r->last_send_us = ts;
        r->payload_bytes += len;
        r->sent++;
        if ((j & 63) == 0)
            rd_kafka_poll(r->rkp, 0);
    }
    return 0;
}

/* ---- results ------------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples: the smallest value with at
 * least p% of the samples at or below it. */
static int64_t pct(const int64_t *v, uint64_t n, double p)
{
    if (!n)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/* One line per received event, in arrival order: seq send_us latency_us. */
static int write_samples(const run_t *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        log_error("--samples %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "# seq sent_us latency_us (run %s, arrival order)\n", r->run_id);
    for (uint64_t i = 0; i < r->received; i++)
        fprintf(f, "%" PRIu64 " %" PRId64 " %" PRId64 "\n", r->lat_seq[i],
                atomic_load(&r->sent_us[r->lat_seq[i]]), r->lat_us[i]);
    if (fclose(f)) {
        log_error("--samples %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int report(run_t *r)
{
    const run_opts_t *o = r->o;
    uint64_t n = r->received;
    if (o->samples_path && write_samples(r, o->samples_path))
        return -1;
    qsort(r->lat_us, n, sizeof(int64_t), cmp_i64);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        sum += (double)r->lat_us[i];
    double secs = n && r->last_recv_us > r->first_send_us
                      ? (double)(r->last_recv_us - r->first_send_us) / 1e6
                      : 0.0;
    double send_secs = (double)(r->last_send_us - r->first_send_us) / 1e6;
    double eps = secs > 0 ? (double)n / secs : 0.0;
    double send_eps = send_secs > 0 ? (double)(r->sent - 1) / send_secs : 0.0;
    int64_t p50 = pct(r->lat_us, n, 50), p90 = pct(r->lat_us, n, 90), p99 = pct(r->lat_us, n, 99),
            p999 = pct(r->lat_us, n, 99.9), mx = n ? r->lat_us[n - 1] : 0,
            mn = n ? r->lat_us[0] : 0;
    uint64_t lost = r->sent - n;
    char mode[48];
    if (o->rate)
        snprintf(mode, sizeof(mode), "rate %" PRId64 "/s", o->rate);
    else
        snprintf(mode, sizeof(mode), "flat-out");

    printf("%s, %s: %s -> %s, %" PRId32 " partitions, run %s\n", o->label, mode, o->in, o->out,
           r->partitions, r->run_id);
    printf("  sent      %" PRIu64 " events of %.0f bytes in %.3f s: %.0f events/s"
           " (max schedule lag %.3f ms, queue-full retries %" PRIu64 ")\n",
           r->sent, r->sent ? (double)r->payload_bytes / (double)r->sent : 0.0, send_secs, send_eps,
           (double)r->max_sched_lag_us / 1000.0, r->queue_full);
    if (r->sent < r->count)
        printf("  warning: interrupted after %" PRIu64 " of %" PRIu64 " events\n", r->sent,
               r->count);
    printf("  received  %" PRIu64 " (lost %" PRIu64 ", duplicates %" PRIu64 ", foreign %" PRIu64
           ") in %.3f s from first send: %.0f events/s\n",
           n, lost, r->duplicates, r->foreign, secs, eps);
    printf("  latency   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms"
           "  (min %.3f, mean %.3f; exact over %" PRIu64 " samples, 1 us resolution)\n",
           (double)p50 / 1e3, (double)p90 / 1e3, (double)p99 / 1e3, (double)p999 / 1e3,
           (double)mx / 1e3, (double)mn / 1e3, n ? sum / (double)n / 1e3 : 0.0, n);
    if (mn < 0)
        printf("  warning: negative latency: the wall clock stepped during the run\n");
    if (r->timed_out)
        printf("  warning: gave up after %" PRId64 " s without a new event (--idle-timeout)\n",
               o->idle_timeout);

    char when[32];
    fmt_rfc3339(wall_us(), when, sizeof(when));
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I,"
        " s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f,"
        " s:b, s:s}",
        "schema", "bench_result/1", "ts", when, "label", o->label, "mode",
        o->rate ? "rate" : "flat", "mode_text", mode, "target_rate", (json_int_t)o->rate, "count",
        (json_int_t)r->count, "in", o->in, "out", o->out, "partitions", (int)r->partitions,
        "received", (json_int_t)n, "lost", (json_int_t)lost, "duplicates",
        (json_int_t)r->duplicates, "foreign", (json_int_t)r->foreign, "delivery_failed",
        (json_int_t)r->failed, "events_per_s", eps, "send_events_per_s", send_eps, "seconds", secs,
        "p50_us", (json_int_t)p50, "p90_us", (json_int_t)p90, "p99_us", (json_int_t)p99, "p999_us",
        (json_int_t)p999, "max_us", (json_int_t)mx, "min_us", (json_int_t)mn, "mean_us",
        (json_int_t)(n ? llround(sum / (double)n) : 0), "sched_lag_max_us",
        (json_int_t)r->max_sched_lag_us, "queue_full_retries", (json_int_t)r->queue_full,
        "payload_bytes_avg", (json_int_t)(r->sent ? r->payload_bytes / r->sent : 0), "sent_seconds",
        send_secs, "timed_out", r->timed_out, "librdkafka", rd_kafka_version_str());
    if (!j) {
        log_error("cannot build the result JSON");
        return -1;
    }
    json_object_set_new(j, "run_id", json_string(r->run_id));
    json_object_set_new(j, "sent", json_integer((json_int_t)r->sent));
    json_object_set_new(j, "warmup_events", json_integer((json_int_t)r->warmups_sent));
    char *line = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!line) {
        log_error("cannot dump the result JSON");
        return -1;
    }
    printf("%s\n", line);
    fflush(stdout);
    int rc = 0;
    if (o->json_path && stop_signal) {
        log_warn("interrupted: the result is not appended to %s", o->json_path);
    } else if (o->json_path) {
        FILE *f = fopen(o->json_path, "a");
        if (!f || fprintf(f, "%s\n", line) < 0 || fclose(f)) {
            log_error("cannot append the result to %s: %s", o->json_path, strerror(errno));
            rc = -1;
        }
    }
    free(line);
    return rc;
}

/* ---- command ----------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: mlops-bench run --in TOPIC [--out TOPIC] [options]\n"
            "\n"
            "Produce --count feature-like JSON events (30 fields, ~780 bytes, keyed by\n"
            "entity) to --in and measure them as they arrive on --out, where a stage\n"
            "under test forwards them (or --out = --in: the broker round trip alone).\n"
            "Before the measured events, warm-up events (not measured) go out every\n"
            "200 ms until one comes back, then, with --rate, for --warmup seconds at\n"
            "that rate.\n"
            "\n"
            "Prints events/s (measured events received / time from the first send to\n"
            "the last receive) and end-to-end latency (receive time - send time, both\n"
            "CLOCK_REALTIME on this host, exact percentiles over every event), then one\n"
            "JSON line (schema bench_result/1) that 'mlops-bench report' reads.\n"
            "\n"
            "Options:\n"
            "  -b, --brokers LIST     bootstrap servers (default %s)\n"
            "  -i, --in TOPIC         topic to produce to (required)\n"
            "  -o, --out TOPIC        topic to measure (default: --in)\n"
            "  -n, --count N          measured events (default 200000)\n"
            "  -r, --rate R           events/s, paced (default 0: flat out)\n"
            "  -l, --label TEXT       name of the path in the results (default: broker when\n"
            "                         --out = --in, else stage)\n"
            "  -j, --json FILE        also append the JSON line to FILE (not when stopped by\n"
            "                         a signal)\n"
            "      --samples FILE     write every sample (seq, send time, latency in us,\n"
            "                         arrival order) to FILE, for plots and diagnosis\n"
            "      --entities N       distinct entity ids, the message keys (default 10000)\n"
            "      --format F         bench (bench_event/1, default) or features (the same\n"
            "                         fields as a features/1 record of spec bench_score)\n"
            "      --seed S           random seed for the event values (default 1)\n"
            "      --warmup S         with --rate: S seconds of warm-up events at that rate\n"
            "                         before the measured ones (default 1; 0 = none)\n"
            "      --ready-timeout S  give up if no warm-up event comes back in S s (default 60)\n"
            "      --idle-timeout S   after the last send, give up when no new event arrives\n"
            "                         for S s (default 30); the rest count as lost\n"
            "  -X PROP=VALUE          librdkafka property for both clients (repeatable)\n"
            "  -h, --help             this help\n"
            "\n"
            "Producer defaults: enable.idempotence=true, linger.ms=5 (as the services).\n"
            "Exit codes: 0 every event arrived, 1 events lost or a Kafka error, 2 usage.\n",
            BENCH_DEFAULT_BROKERS);
}

enum { OPT_ENTITIES = 256, OPT_SEED, OPT_READY, OPT_IDLE, OPT_SAMPLES, OPT_WARMUP, OPT_FORMAT };

static int parse_args(run_opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {{"brokers", required_argument, NULL, 'b'},
                                             {"in", required_argument, NULL, 'i'},
                                             {"out", required_argument, NULL, 'o'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"label", required_argument, NULL, 'l'},
                                             {"json", required_argument, NULL, 'j'},
                                             {"entities", required_argument, NULL, OPT_ENTITIES},
                                             {"seed", required_argument, NULL, OPT_SEED},
                                             {"ready-timeout", required_argument, NULL, OPT_READY},
                                             {"idle-timeout", required_argument, NULL, OPT_IDLE},
                                             {"samples", required_argument, NULL, OPT_SAMPLES},
                                             {"warmup", required_argument, NULL, OPT_WARMUP},
                                             {"format", required_argument, NULL, OPT_FORMAT},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    char errstr[512];
    int c;
    while ((c = getopt_long(argc, argv, "b:i:o:n:r:l:j:X:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': o->brokers = optarg; break;
        case 'i': o->in = optarg; break;
        case 'o': o->out = optarg; break;
        case 'l': o->label = optarg; break;
        case 'j': o->json_path = optarg; break;
        case OPT_SAMPLES: o->samples_path = optarg; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "bench") && strcmp(optarg, "features")) {
                fprintf(stderr, "mlops-bench run: --format: '%s' is not one of bench, features\n",
                        optarg);
                return MLOPS_EXIT_USAGE;
            }
            o->features = !strcmp(optarg, "features");
            break;
        case 'n':
            if (bench_parse_i64("--count", optarg, 1, INT64_C(1) << 36, &o->count))
                return MLOPS_EXIT_USAGE;
            break;
        case 'r':
            if (bench_parse_i64("--rate", optarg, 0, 100000000, &o->rate))
                return MLOPS_EXIT_USAGE;
            break;
        case OPT_ENTITIES:
            if (bench_parse_i64("--entities", optarg, 1, 1000000, &o->entities))
                return MLOPS_EXIT_USAGE;
            break;
        case OPT_SEED:
            if (bench_parse_i64("--seed", optarg, INT64_MIN, INT64_MAX, &o->seed))
                return MLOPS_EXIT_USAGE;
            break;
        case OPT_READY:
            if (bench_parse_i64("--ready-timeout", optarg, 1, 86400, &o->ready_timeout))
                return MLOPS_EXIT_USAGE;
            break;
        case OPT_WARMUP:
            if (bench_parse_i64("--warmup", optarg, 0, 3600, &o->warmup))
                return MLOPS_EXIT_USAGE;
            break;
        case OPT_IDLE:
            if (bench_parse_i64("--idle-timeout", optarg, 1, 86400, &o->idle_timeout))
                return MLOPS_EXIT_USAGE;
            break;
        case 'X':
            if (bench_props_add(&o->props, optarg, errstr, sizeof(errstr))) {
                fprintf(stderr, "mlops-bench run: %s\n", errstr);
                return MLOPS_EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return MLOPS_EXIT_OK;
        default: fprintf(stderr, "Try 'mlops-bench run --help'.\n"); return MLOPS_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mlops-bench run: unexpected argument '%s'\n", argv[optind]);
        return MLOPS_EXIT_USAGE;
    }
    if (!o->in) {
        fprintf(stderr, "mlops-bench run: --in is required (see --help)\n");
        return MLOPS_EXIT_USAGE;
    }
    if (!o->out)
        o->out = o->in;
    if (!o->label)
        o->label = strcmp(o->in, o->out) ? "stage" : "broker";
    return -1; /* go on */
}

int bench_cmd_run(int argc, char **argv)
{
    run_opts_t o = {.brokers = BENCH_DEFAULT_BROKERS,
                    .count = 200000,
                    .entities = 10000,
                    .seed = 1,
                    .ready_timeout = 60,
                    .idle_timeout = 30,
                    .warmup = 1};
    run_t r = {.o = &o};
    rd_kafka_conf_t *conf = NULL;
    char errstr[512];
    bool thread_started = false;
    pthread_t tid;
    int code = parse_args(&o, argc, argv);
    if (code >= 0)
        goto done;
    code = MLOPS_EXIT_FAILURE;
    bench_log_init("bench-run");

    /* A run id makes our event ids unique, so nothing else on --out is counted. */
    uint64_t rid;
    if (getrandom(&rid, sizeof(rid), 0) != sizeof(rid))
        rid = (uint64_t)wall_us() ^ ((uint64_t)getpid() << 32);
    snprintf(r.run_id, sizeof(r.run_id), "%08" PRIx32, (uint32_t)(rid ^ (rid >> 32)));
    r.run_id_len = strlen(r.run_id);
    r.count = (uint64_t)o.count;
    r.sent_us = xcalloc(r.count, sizeof(*r.sent_us));
    r.lat_us = xmalloc(r.count * sizeof(*r.lat_us));
    r.lat_seq = xmalloc(r.count * sizeof(*r.lat_seq));
    r.seen = xcalloc(r.count, 1);
    uint64_t rng = (uint64_t)o.seed;
    r.bodies = xcalloc(BODY_POOL, sizeof(char *));
    r.body_len = xcalloc(BODY_POOL, sizeof(size_t));
    for (int i = 0; i < BODY_POOL; i++)
        r.bodies[i] = body_new(&rng, &r.body_len[i]);

    /* Measuring consumer: assign, no group membership, no commits. */
    char group[64];
    snprintf(group, sizeof(group), "bench-measure-%s", r.run_id);
    static const char *const cdefaults[] = {"enable.auto.commit", "false", NULL};
    const char *cforced[] = {"group.id", group, "enable.partition.eof", "false", NULL};
    conf = bench_conf_new(o.brokers, "bench-measure", cdefaults, &o.props, cforced, errstr,
                          sizeof(errstr));
    if (!conf)
        goto fail;
    r.rkc = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!r.rkc)
        goto fail;
    conf = NULL;
    rd_kafka_poll_set_consumer(r.rkc);
    if (measure_assign(&r, errstr, sizeof(errstr)))
        goto fail;

    static const char *const pdefaults[] = {"enable.idempotence", "true", "linger.ms", "5", NULL};
    conf = bench_conf_new(o.brokers, "bench-loadgen", pdefaults, &o.props, NULL, errstr,
                          sizeof(errstr));
    if (!conf)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, &r);
    r.rkp = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!r.rkp)
        goto fail;
    conf = NULL;
    r.rkt_in = rd_kafka_topic_new(r.rkp, o.in, NULL);
    if (!r.rkt_in) {
        snprintf(errstr, sizeof(errstr), "topic %s: %s", o.in,
                 rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }

    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int perr = pthread_create(&tid, NULL, measure_main, &r);
    if (perr) {
        snprintf(errstr, sizeof(errstr), "cannot start the measuring thread: %s", strerror(perr));
        goto fail;
    }
    thread_started = true;
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("librdkafka", rd_kafka_version_str()),
                        LOG_STR("brokers", o.brokers), LOG_STR("in", o.in), LOG_STR("out", o.out),
                        LOG_STR("label", o.label), LOG_INT("count", o.count),
                        LOG_INT("rate", o.rate), LOG_INT("partitions", r.partitions),
                        LOG_STR("run", r.run_id)),
             "run up");

    int prc = warm_up(&r, &rng);
    if (!prc)
        prc = produce_all(&r, &rng);
    atomic_store(&r.producer_done_mono, mono_us());
    atomic_store(&r.producer_done, true);
    if (prc)
        atomic_store(&r.stop, true); /* the reason is logged */
    if (rd_kafka_flush(r.rkp, 60000))
        log_emit(LOG_LVL_ERROR, LOG_FIELDS(LOG_INT("undelivered", rd_kafka_outq_len(r.rkp))),
                 "producer flush timed out");
    pthread_join(tid, NULL);
    thread_started = false;
    if (stop_signal)
        log_warn("stopped by %s: the figures cover what arrived until then",
                 strsignal(stop_signal));
    if (prc && (!stop_signal || !r.sent))
        goto done; /* failed or stopped before the measured events: no figures */
    if (report(&r))
        goto done;
    code = r.received == r.count && !stop_signal && !r.failed && !atomic_load(&bench_fatal)
               ? MLOPS_EXIT_OK
               : MLOPS_EXIT_FAILURE;
    goto done;

fail:
    fprintf(stderr, "mlops-bench run: %s\n", errstr);
done:
    if (thread_started) {
        atomic_store(&r.stop, true);
        pthread_join(tid, NULL);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (r.rkc) {
        rd_kafka_consumer_close(r.rkc);
        rd_kafka_destroy(r.rkc);
    }
    if (r.rkt_in)
        rd_kafka_topic_destroy(r.rkt_in);
    if (r.rkp)
        rd_kafka_destroy(r.rkp);
    for (int i = 0; r.bodies && i < BODY_POOL; i++)
        free(r.bodies[i]);
    free(r.bodies);
    free(r.body_len);
    free(r.sent_us);
    free(r.lat_us);
    free(r.lat_seq);
    free(r.seen);
    bench_props_cleanup(&o.props);
    if (conf)
        rd_kafka_conf_destroy(conf);
    return code;
}
