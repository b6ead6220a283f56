/* common/kafka on the real broker: 10,000 JSON messages through the
 * idempotent producer, consumed by a group consumer driven from a libevent
 * loop (io-event wake-ups), offsets stored only after "processing" through
 * the tracker and committed; a restarted consumer sees nothing again. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "mjson.h"
#include "testutil.h"

#define PARTITIONS 3

static void setup(void) { log_init("test", LOG_LVL_WARN); }
TestSuite(kafka_real, .init = setup, .timeout = 240);

typedef struct consume_ctx {
    kafka_consumer_t *kc;
    kafka_tracker_t *tr;
    kafka_watch_t *w;
    struct event_base *base;
    unsigned char *seen; /* per message id: times seen */
    int n;
    int got, dupes, bad;
    int max_assigned; /* so "nothing re-delivered" cannot pass unassigned */
    int64_t idle_ms;  /* give up after this long without a message */
    int64_t idle_deadline_ms;
} consume_ctx_t;

/* Drain at most 500 messages per wake-up, as a service would. */
static void on_messages(void *opaque)
{
    consume_ctx_t *c = opaque;
    for (int i = 0; i < 500; i++) {
        rd_kafka_message_t *m = kafka_consumer_poll(c->kc, 0);
        if (!m)
            return;
        void *h = kafka_tracker_begin(c->tr, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
        err_t *e = NULL;
        json_t *j = mjson_parse_object(m->payload, m->len, 1 << 16, &e);
        int64_t id = -1;
        if (!j || mjson_get_int(j, "id", true, &id, &e) || id < 0 || id >= c->n) {
            c->bad++;
        } else {
            if (c->seen[id]++)
                c->dupes++;
            c->got++;
        }
        err_destroy(e);
        json_decref(j);
        cr_assert_eq(kafka_tracker_done(c->tr, h), 0);
        rd_kafka_message_destroy(m);
        c->idle_deadline_ms = mono_ms() + c->idle_ms;
    }
    kafka_watch_again(c->w); /* more may be queued: librdkafka will not wake us */
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    consume_ctx_t *c = arg;
    if (kafka_consumer_assigned(c->kc) > c->max_assigned)
        c->max_assigned = kafka_consumer_assigned(c->kc);
    if (c->got >= c->n || mono_ms() > c->idle_deadline_ms)
        event_base_loopbreak(c->base);
}

/* Consume with a fresh consumer until all n messages arrived, or nothing
 * came for c->idle_ms after the first message (or max_ms before it). The
 * gap is generous: on a loaded CI machine a broker pause of a few seconds
 * is not a lost message. */
static void consume(const char *topic, const char *group, consume_ctx_t *c, int64_t max_ms)
{
    char err[512];
    const char *topics[] = {topic};
    kafka_opts_t o = {.brokers = test_kafka_brokers(), .client_id = "test-consumer"};
    kafka_consumer_opts_t co = {
        .group_id = group, .topics = topics, .ntopics = 1, .auto_commit = true};
    c->kc = kafka_consumer_new(&o, &co, err, sizeof(err));
    cr_assert(c->kc, "%s", err);
    c->tr = kafka_tracker_new(c->kc);
    c->base = event_base_new();
    c->w = kafka_consumer_watch(c->kc, c->base, on_messages, c, err, sizeof(err));
    cr_assert(c->w, "%s", err);
    struct event *tick = event_new(c->base, -1, EV_PERSIST, on_tick, c);
    struct timeval tv = {0, 100000};
    event_add(tick, &tv);
    c->idle_deadline_ms = mono_ms() + max_ms;
    event_base_dispatch(c->base);
    cr_assert_eq(kafka_tracker_pending(c->tr), 0);
    /* everything there was is consumed: nothing is behind */
    int64_t lag = -1;
    cr_assert_eq(kafka_consumer_lag(c->kc, &lag), 0);
    cr_assert_eq(lag, 0, "lag %lld after consuming everything", (long long)lag);
    err_t *e = NULL;
    cr_assert_eq(kafka_consumer_commit(c->kc, &e), 0, "%s", e ? e->msg : "");
    event_free(tick);
    if (kafka_watch_rescued(c->w))
        fprintf(stderr, "kafka_real: the sweep rescued %llu stalled wake-up(s)\n",
                (unsigned long long)kafka_watch_rescued(c->w));
    kafka_watch_destroy(c->w);
    kafka_tracker_destroy(c->tr);
    kafka_consumer_close(c->kc);
    event_base_free(c->base);
}

Test(kafka_real, ten_thousand_messages_once_and_committed)
{
    int n = 10000 * test_scale();
    char *topic = test_unique("it-kafka");
    char *group = test_unique("it-group");
    test_create_topic(test_kafka_brokers(), topic, PARTITIONS);

    /* produce */
    char err[512];
    kafka_opts_t o = {.brokers = test_kafka_brokers(), .client_id = "test-producer"};
    kafka_producer_t *kp = kafka_producer_new(&o, NULL, NULL, NULL, err, sizeof(err));
    cr_assert(kp, "%s", err);
    for (int i = 0; i < n; i++) {
        char key[32], val[128];
        int kl = snprintf(key, sizeof(key), "entity-%d", i % 97);
        int vl = snprintf(val, sizeof(val), "{\"schema\":\"test/1\",\"id\":%d,\"x\":%d.5}", i, i);
        err_t *e = NULL;
        cr_assert_eq(kafka_produce(kp, topic, RD_KAFKA_PARTITION_UA, key, (size_t)kl, val,
                                   (size_t)vl, NULL, &e),
                     0, "%s", e ? e->msg : "");
        if (i % 1000 == 0)
            kafka_producer_poll(kp, 0);
    }
    cr_assert_eq(kafka_producer_flush(kp, 30000), 0);
    kafka_producer_stats_t st;
    kafka_producer_stats(kp, &st);
    cr_assert_eq(st.produced, (uint64_t)n);
    cr_assert_eq(st.delivered, (uint64_t)n, "delivered %llu of %d",
                 (unsigned long long)st.delivered, n);
    cr_assert_eq(st.failed, 0);
    kafka_producer_destroy(kp);

    /* consume: all arrive, none twice */
    consume_ctx_t c = {.n = n, .seen = xcalloc((size_t)n, 1), .idle_ms = 15000};
    consume(topic, group, &c, 60000);
    cr_assert_eq(c.bad, 0);
    cr_assert_eq(c.dupes, 0, "%d duplicates", c.dupes);
    cr_assert_eq(c.got, n, "got %d of %d", c.got, n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(c.seen[i], 1, "message %d seen %d times", i, c.seen[i]);

    /* the group's committed offsets are the partitions' high watermarks */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", test_kafka_brokers(), err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p);
    cr_assert_eq(rd_kafka_committed(rk, parts, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    int64_t total = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        int64_t lo, hi;
        cr_assert_eq(rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000), 0);
        cr_assert_eq(parts->elems[p].offset, hi, "partition %d committed %lld, end %lld", p,
                     (long long)parts->elems[p].offset, (long long)hi);
        total += hi - lo;
    }
    cr_assert_eq(total, n);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);

    /* a restarted consumer in the same group gets nothing again */
    memset(c.seen, 0, (size_t)n);
    c.got = c.dupes = c.bad = c.max_assigned = 0;
    consume(topic, group, &c, 8000);
    cr_assert_eq(c.max_assigned, PARTITIONS, "the restarted consumer never owned the partitions");
    cr_assert_eq(c.got, 0, "%d messages were re-delivered after the restart", c.got);
    free(c.seen);
    const char *topics[] = {topic, NULL}, *groups[] = {group, NULL};
    test_kafka_cleanup(test_kafka_brokers(), topics, groups);
    free(topic);
    free(group);
}
