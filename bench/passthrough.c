/*
 * mlops-bench-passthrough: the floor every stage is benchmarked against.
 *
 * A group consumer on --in, an idempotent producer to --out, and nothing in
 * between: each input message is produced again with the same key, value and
 * headers. It does what a correct service must do and nothing more:
 *
 * - rd_kafka_consumer_poll() one message at a time (not the batch API, which
 *   has a known issue in librdkafka 2.0.x);
 * - enable.auto.offset.store=false: an input offset is stored only after the
 *   output's delivery report, and only once every earlier input of the same
 *   partition is delivered too (outputs are keyed, so they may land on
 *   different output partitions and be acknowledged out of order);
 * - stored offsets are committed by auto-commit, on revoke (after flushing
 *   the producer) and on close.
 *
 * The message path is raw librdkafka on purpose: the services' own wrappers
 * (common/kafka.c) are what the benchmark measures against this floor.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchkit.h"
#include "lifecycle.h"
#include "log.h"
#include "util.h"

/* ---- offsets: store after delivery, in consumption order --------------------------- */

/*
 * Per input partition, a ring of the messages taken and not yet stored, in
 * consumption order. Each message gets a sequence number that only grows
 * for the life of the process (so a delivery report that arrives after its
 * partition was revoked is recognised as stale and ignored). The msg_opaque
 * of an output carries (sequence << 16 | partition): no allocation per
 * message (48 bits of sequence last 8 years at a million messages a second).
 */
typedef struct track_ent {
    int64_t offset;
    bool done;
} track_ent_t;

typedef struct part_track {
    track_ent_t *ent;
    uint64_t cap;  /* power of two, 0 before first use */
    uint64_t head; /* sequence of the oldest pending message */
    uint64_t tail; /* next sequence */
    int64_t store; /* offset to store: last contiguous done + 1 */
    bool dirty;    /* store has moved since the last rd_kafka_offsets_store */
} part_track_t;

#define PT_MAX_PARTITIONS 65536

typedef struct passthrough {
    const char *in_topic;
    rd_kafka_t *rkc; /* consumer */
    rd_kafka_t *rkp; /* producer */
    rd_kafka_topic_t *rkt_out;
    part_track_t *parts; /* indexed by input partition */
    int32_t nparts;
    uint64_t forwarded; /* produced */
    uint64_t delivered;
    uint64_t failed; /* permanent delivery failures: stop, exit 1 */
    uint64_t store_errors;
    uint64_t stores; /* rd_kafka_offsets_store calls */
} passthrough_t;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

static part_track_t *track_get(passthrough_t *pt, int32_t partition)
{
    if (partition >= pt->nparts) {
        int32_t n = partition + 1;
        pt->parts = xrealloc(pt->parts, (size_t)n * sizeof(*pt->parts));
        memset(pt->parts + pt->nparts, 0, (size_t)(n - pt->nparts) * sizeof(*pt->parts));
        pt->nparts = n;
    }
    return &pt->parts[partition];
}

/* A message was taken: returns its sequence number. */
static uint64_t track_begin(passthrough_t *pt, int32_t partition, int64_t offset)
{
    part_track_t *t = track_get(pt, partition);
    if (t->tail - t->head == t->cap) {
        uint64_t cap = t->cap ? t->cap * 2 : 1024;
        track_ent_t *ent = xmalloc(cap * sizeof(*ent));
        for (uint64_t s = t->head; s < t->tail; s++)
            ent[s & (cap - 1)] = t->ent[s & (t->cap - 1)];
        free(t->ent);
        t->ent = ent;
        t->cap = cap;
    }
    t->ent[t->tail & (t->cap - 1)] = (track_ent_t){.offset = offset, .done = false};
    return t->tail++;
}

/* The output of message @p seq was delivered. */
static void track_done(passthrough_t *pt, int32_t partition, uint64_t seq)
{
    if (partition >= pt->nparts)
        return;
    part_track_t *t = &pt->parts[partition];
    if (seq < t->head || seq >= t->tail)
        return; /* its partition was revoked meanwhile */
    t->ent[seq & (t->cap - 1)].done = true;
    while (t->head < t->tail && t->ent[t->head & (t->cap - 1)].done) {
        t->store = t->ent[t->head & (t->cap - 1)].offset + 1;
        t->dirty = true;
        t->head++;
    }
}

/* Store the offsets that moved (one call for all partitions). */
static void track_store(passthrough_t *pt)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    for (int32_t p = 0; p < pt->nparts; p++) {
        if (!pt->parts[p].dirty)
            continue;
        if (!list)
            list = rd_kafka_topic_partition_list_new(4);
        rd_kafka_topic_partition_list_add(list, pt->in_topic, p)->offset = pt->parts[p].store;
        pt->parts[p].dirty = false;
    }
    if (!list)
        return;
    pt->stores++;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(pt->rkc, list);
    if (err) {
        /* Per partition: _STATE when it is no longer assigned; harmless then. */
        for (int i = 0; i < list->cnt; i++) {
            if (!list->elems[i].err)
                continue;
            if (pt->store_errors++ < 5)
                log_emit(LOG_LVL_WARN,
                         LOG_FIELDS(LOG_STR("topic", pt->in_topic),
                                    LOG_INT("partition", list->elems[i].partition),
                                    LOG_INT("offset", list->elems[i].offset),
                                    LOG_STR("error", rd_kafka_err2name(list->elems[i].err))),
                         "offset store failed: %s", rd_kafka_err2str(list->elems[i].err));
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Forget the pending messages of revoked partitions (their DRs become stale). */
static void track_forget(passthrough_t *pt, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (strcmp(parts->elems[i].topic, pt->in_topic) || p >= pt->nparts)
            continue;
        pt->parts[p].head = pt->parts[p].tail;
        pt->parts[p].dirty = false;
    }
}

/* ---- callbacks ---------------------------------------------------------------------- */

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    passthrough_t *pt = opaque;
    uintptr_t tag = (uintptr_t)rkm->_private;
    if (rkm->err) {
        /* Its input offset is never stored: a restart consumes it again. */
        if (pt->failed++ < 5)
            log_emit(LOG_LVL_ERROR,
                     LOG_FIELDS(LOG_STR("topic", rd_kafka_topic_name(rkm->rkt)),
                                LOG_STR("error", rd_kafka_err2name(rkm->err))),
                     "delivery failed: %s", rd_kafka_err2str(rkm->err));
        return;
    }
    pt->delivered++;
    track_done(pt, (int32_t)(tag & 0xffff), (uint64_t)(tag >> 16));
}

/* Revoke: flush the producer so every delivered input gets its offset stored
 * before the consumer commits and lets the partitions go. */
static void on_revoke(passthrough_t *pt, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(pt->rkp, 30000);
    if (err)
        log_emit(LOG_LVL_WARN, LOG_FIELDS(LOG_INT("undelivered", rd_kafka_outq_len(pt->rkp))),
                 "revoke: producer flush timed out; those inputs will be consumed again");
    track_store(pt);
    track_forget(pt, parts);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    passthrough_t *pt = opaque;
    bool cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("event", rd_kafka_err2name(err)), LOG_INT("partitions", parts->cnt),
                        LOG_STR("protocol", rd_kafka_rebalance_protocol(rk))),
             "rebalance");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, parts);
    } else {
        /* REVOKE, or an error: let everything go, as the examples do. */
        on_revoke(pt, parts);
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        log_error("rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr) {
        log_error("rebalance: %s", rd_kafka_err2str(aerr));
    }
}

/* ---- command line ------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: mlops-bench-passthrough --in TOPIC --out TOPIC --group GROUP [options]\n"
            "\n"
            "Consume TOPIC with a group consumer and produce every message, unchanged\n"
            "(same key, value and headers), to the output topic with an idempotent\n"
            "producer. Raw librdkafka, no work per message: the floor that stages such\n"
            "as mlops-scorer are benchmarked against (bench/run.sh).\n"
            "Input offsets are stored only after the output is delivered, in input\n"
            "order per partition, and committed by auto-commit and on close.\n"
            "\n"
            "Options:\n"
            "  -b, --brokers LIST   bootstrap servers (default %s)\n"
            "  -i, --in TOPIC       input topic (required)\n"
            "  -o, --out TOPIC      output topic (required)\n"
            "  -g, --group GROUP    consumer group id (required)\n"
            "  -n, --count N        exit after N messages are forwarded and delivered\n"
            "                       (default 0: run until SIGINT/SIGTERM)\n"
            "  -X PROP=VALUE        librdkafka property for both clients, after the\n"
            "                       defaults (repeatable); e.g. -X linger.ms=0\n"
            "  -h, --help           this help\n"
            "\n"
            "Defaults: consumer partition.assignment.strategy=cooperative-sticky,\n"
            "auto.offset.reset=earliest, enable.auto.commit=true; producer\n"
            "enable.idempotence=true, linger.ms=5 (the services' defaults).\n"
            "Always: enable.auto.offset.store=false.\n"
            "\n"
            "Stops at the first SIGINT/SIGTERM (flushes, stores, commits, exits 0);\n"
            "a second one kills it. Exit codes: 0 ok, 1 Kafka failure (fatal error,\n"
            "failed delivery, flush timeout), 2 usage. Logs: JSON lines on stderr\n"
            "($MLOPS_LOG_LEVEL sets the level); the last line has the totals.\n",
            BENCH_DEFAULT_BROKERS);
}

int main(int argc, char **argv)
{
    const char *brokers = BENCH_DEFAULT_BROKERS, *in = NULL, *out = NULL, *group = NULL;
    int64_t count = 0;
    bench_props_t props = {0};
    char errstr[512];
    int code = MLOPS_EXIT_USAGE;
    passthrough_t pt = {0};
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *sub = NULL;

    static const struct option longopts[] = {{"brokers", required_argument, NULL, 'b'},
                                             {"in", required_argument, NULL, 'i'},
                                             {"out", required_argument, NULL, 'o'},
                                             {"group", required_argument, NULL, 'g'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "b:i:o:g:n:X:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': brokers = optarg; break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'g': group = optarg; break;
        case 'n':
            if (bench_parse_i64("--count", optarg, 0, INT64_MAX, &count))
                goto done;
            break;
        case 'X':
            if (bench_props_add(&props, optarg, errstr, sizeof(errstr))) {
                fprintf(stderr, "mlops-bench-passthrough: %s\n", errstr);
                goto done;
            }
            break;
        case 'h':
            usage(stdout);
            code = MLOPS_EXIT_OK;
            goto done;
        default: fprintf(stderr, "Try 'mlops-bench-passthrough --help'.\n"); goto done;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mlops-bench-passthrough: unexpected argument '%s'\n", argv[optind]);
        goto done;
    }
    if (!in || !out || !group) {
        fprintf(stderr, "mlops-bench-passthrough: %s is required (see --help)\n",
                !in    ? "--in"
                : !out ? "--out"
                       : "--group");
        goto done;
    }
    if (!strcmp(in, out)) {
        fprintf(stderr, "mlops-bench-passthrough: --in and --out are both '%s': that loops\n", in);
        goto done;
    }

    bench_log_init("bench-passthrough");
    code = MLOPS_EXIT_FAILURE;
    pt.in_topic = in;

    /* Producer first: the consumer's rebalance callback flushes it. */
    static const char *const pdefaults[] = {"enable.idempotence", "true", "linger.ms", "5", NULL};
    conf = bench_conf_new(brokers, "bench-passthrough", pdefaults, &props, NULL, errstr,
                          sizeof(errstr));
    if (!conf)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_opaque(conf, &pt);
    pt.rkp = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!pt.rkp)
        goto fail;
    conf = NULL;
    pt.rkt_out = rd_kafka_topic_new(pt.rkp, out, NULL);
    if (!pt.rkt_out) {
        snprintf(errstr, sizeof(errstr), "topic %s: %s", out,
                 rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }

    static const char *const cdefaults[] = {"partition.assignment.strategy",
                                            "cooperative-sticky",
                                            "auto.offset.reset",
                                            "earliest",
                                            "enable.auto.commit",
                                            "true",
                                            NULL};
    const char *cforced[] = {"group.id", group, "enable.auto.offset.store", "false", NULL};
    conf = bench_conf_new(brokers, "bench-passthrough", cdefaults, &props, cforced, errstr,
                          sizeof(errstr));
    if (!conf)
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, &pt);
    pt.rkc = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!pt.rkc)
        goto fail;
    conf = NULL;
    rd_kafka_poll_set_consumer(pt.rkc);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(pt.rkc, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        snprintf(errstr, sizeof(errstr), "subscribe to %s: %s", in, rd_kafka_err2str(err));
        goto fail;
    }

    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("librdkafka", rd_kafka_version_str()), LOG_STR("brokers", brokers),
                        LOG_STR("in", in), LOG_STR("out", out), LOG_STR("group", group),
                        LOG_INT("count", count)),
             "passthrough up");

    int64_t t_first = 0, t_last = 0;
    while (!stop_signal && !atomic_load(&bench_fatal) && !pt.failed &&
           (!count || pt.forwarded < (uint64_t)count)) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(pt.rkc, 100);
        if (rkm) {
            if (rkm->err) {
                if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    log_emit(LOG_LVL_WARN,
                             LOG_FIELDS(LOG_STR("error", rd_kafka_err2name(rkm->err))),
                             "consume: %s", rd_kafka_message_errstr(rkm));
                rd_kafka_message_destroy(rkm);
                continue;
            }
            if (rkm->partition >= PT_MAX_PARTITIONS) {
                log_error("input partition %" PRId32 " is beyond %d: not supported", rkm->partition,
                          PT_MAX_PARTITIONS);
                rd_kafka_message_destroy(rkm);
                break;
            }
            uint64_t seq = track_begin(&pt, rkm->partition, rkm->offset);
            void *tag = (void *)(uintptr_t)((seq << 16) | (uint64_t)rkm->partition);
            rd_kafka_headers_t *hdrs = NULL, *hcopy = NULL;
            if (!rd_kafka_message_headers(rkm, &hdrs))
                hcopy = rd_kafka_headers_copy(hdrs);
            for (;;) {
                err = rd_kafka_producev(
                    pt.rkp, RD_KAFKA_V_RKT(pt.rkt_out), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_KEY(rkm->key, rkm->key_len),
                    RD_KAFKA_V_VALUE(rkm->payload, rkm->len), RD_KAFKA_V_HEADERS(hcopy),
                    RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    break;
                rd_kafka_poll(pt.rkp, 10); /* serve delivery reports, retry */
            }
            rd_kafka_message_destroy(rkm);
            if (err) {
                if (hcopy)
                    rd_kafka_headers_destroy(hcopy); /* not taken over on failure */
                log_error("produce to %s: %s", out, rd_kafka_err2str(err));
                break;
            }
            if (!pt.forwarded)
                t_first = mono_us();
            pt.forwarded++;
            t_last = mono_us();
        }
        rd_kafka_poll(pt.rkp, 0); /* delivery reports -> offsets to store */
        track_store(&pt);
    }

    /* Ordered teardown: deliver what is in flight, store, leave the group
     * (commits; the revoke callback flushes again), destroy. */
    bool flushed = rd_kafka_flush(pt.rkp, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    track_store(&pt);
    rd_kafka_resp_err_t cerr = rd_kafka_consumer_close(pt.rkc);
    if (cerr)
        log_error("consumer close: %s", rd_kafka_err2str(cerr));
    if (!flushed)
        log_emit(LOG_LVL_ERROR, LOG_FIELDS(LOG_INT("undelivered", rd_kafka_outq_len(pt.rkp))),
                 "producer flush timed out");
    double secs = t_last > t_first ? (double)(t_last - t_first) / 1e6 : 0.0;
    log_emit(
        LOG_LVL_INFO,
        LOG_FIELDS(LOG_INT("forwarded", pt.forwarded), LOG_INT("delivered", pt.delivered),
                   LOG_INT("failed", pt.failed), LOG_INT("offset_stores", pt.stores),
                   LOG_DBL("seconds", secs),
                   LOG_DBL("events_per_s", secs > 0 ? (double)pt.forwarded / secs : 0.0),
                   LOG_STR("stopped_by", stop_signal ? strsignal(stop_signal)
                                         : count && pt.forwarded >= (uint64_t)count ? "count"
                                                                                    : "error")),
        "passthrough done");
    code = flushed && !pt.failed && !cerr && !atomic_load(&bench_fatal) &&
                   (stop_signal || (count && pt.forwarded >= (uint64_t)count))
               ? MLOPS_EXIT_OK
               : MLOPS_EXIT_FAILURE;
    goto done;

fail:
    fprintf(stderr, "mlops-bench-passthrough: %s\n", errstr);
done:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (pt.rkc)
        rd_kafka_destroy(pt.rkc);
    if (pt.rkt_out)
        rd_kafka_topic_destroy(pt.rkt_out);
    if (pt.rkp)
        rd_kafka_destroy(pt.rkp);
    for (int32_t p = 0; p < pt.nparts; p++)
        free(pt.parts[p].ent);
    free(pt.parts);
    bench_props_cleanup(&props);
    return code;
}
