/* common/kafka under injected faults, on librdkafka's mock cluster: broker
 * down and back, retriable request errors, permanent delivery failure, a
 * fatal idempotence error, and the offset tracker storing only the
 * completed prefix of a partition. (Transactions are tested on the real
 * broker: the mock cluster gets them wrong.) */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kafka.h"
#include "log.h"
#include "testutil.h"

static rd_kafka_t *owner; /* keeps the mock cluster alive */
static rd_kafka_mock_cluster_t *mc;
static const char *bootstraps;

static void setup(void)
{
    log_init("test", LOG_LVL_FATAL); /* the faults below make librdkafka noisy */
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    cr_assert(owner, "%s", err);
    mc = rd_kafka_mock_cluster_new(owner, 1);
    cr_assert(mc);
    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    cr_assert_eq(rd_kafka_mock_topic_create(mc, "t", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void teardown(void)
{
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
}

TestSuite(kafka_mock, .init = setup, .fini = teardown, .timeout = 60);

static int drs_ok, drs_failed;
static void count_dr(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque)
{
    if (rkm->err)
        drs_failed++;
    else
        drs_ok++;
}

static kafka_producer_t *producer(const cfg_kv_t *props, size_t n)
{
    char err[512];
    kafka_opts_t o = {.brokers = bootstraps, .props = props, .nprops = n};
    kafka_producer_t *kp = kafka_producer_new(&o, NULL, count_dr, NULL, err, sizeof(err));
    cr_assert(kp, "%s", err);
    return kp;
}

static void produce_n(kafka_producer_t *kp, int n)
{
    for (int i = 0; i < n; i++) {
        char v[16];
        int vl = snprintf(v, sizeof(v), "%d", i);
        err_t *e = NULL;
        cr_assert_eq(kafka_produce(kp, "t", 0, NULL, 0, v, (size_t)vl, NULL, &e), 0, "%s",
                     e ? e->msg : "");
    }
}

Test(kafka_mock, broker_down_then_up_delivers_everything)
{
    kafka_producer_t *kp = producer(NULL, 0);
    produce_n(kp, 1); /* learn the leader first */
    cr_assert_eq(kafka_producer_flush(kp, 10000), 0);
    rd_kafka_mock_broker_set_down(mc, 1);
    produce_n(kp, 100);
    kafka_producer_poll(kp, 1000);
    kafka_producer_stats_t st;
    kafka_producer_stats(kp, &st);
    cr_assert_eq(st.delivered, 1, "nothing can be delivered while the broker is down");
    cr_assert_eq(st.failed, 0);
    rd_kafka_mock_broker_set_up(mc, 1);
    cr_assert_eq(kafka_producer_flush(kp, 20000), 0);
    kafka_producer_stats(kp, &st);
    cr_assert_eq(st.produced, 101);
    cr_assert_eq(st.delivered, 101);
    cr_assert_eq(drs_ok, 101);
    kafka_producer_destroy(kp);
}

Test(kafka_mock, retriable_produce_errors_are_retried)
{
    /* ApiKey 0 is Produce in the Kafka protocol (the constant is not public) */
    rd_kafka_mock_push_request_errors(mc, 0, 3, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    kafka_producer_t *kp = producer(NULL, 0);
    produce_n(kp, 50);
    cr_assert_eq(kafka_producer_flush(kp, 20000), 0);
    kafka_producer_stats_t st;
    kafka_producer_stats(kp, &st);
    cr_assert_eq(st.delivered, 50);
    cr_assert_eq(st.failed, 0);
    kafka_producer_destroy(kp);
}

Test(kafka_mock, permanent_failure_is_counted_and_reported)
{
    cfg_kv_t props[] = {{"message.timeout.ms", "1000"}};
    kafka_producer_t *kp = producer(props, 1);
    /* warm up until one message is delivered (under load even the first may time out) */
    kafka_producer_stats_t st = {0};
    for (int i = 0; i < 10 && st.delivered == 0; i++) {
        produce_n(kp, 1);
        cr_assert_eq(kafka_producer_flush(kp, 10000), 0);
        kafka_producer_stats(kp, &st);
    }
    cr_assert_eq(st.delivered, 1, "the mock broker never accepted a message");
    uint64_t failed0 = st.failed;
    int drs_failed0 = drs_failed;
    rd_kafka_mock_broker_set_down(mc, 1);
    produce_n(kp, 20);
    int64_t until = mono_ms() + 15000;
    while (st.failed - failed0 < 20 && mono_ms() < until) {
        kafka_producer_poll(kp, 100);
        kafka_producer_stats(kp, &st);
    }
    cr_assert_eq(st.failed - failed0, 20, "every timed-out message is reported failed");
    cr_assert_eq(drs_failed - drs_failed0, 20, "and the service's delivery hook saw each one");
    cr_assert_eq(st.delivered, 1);
    rd_kafka_mock_broker_set_up(mc, 1);
    kafka_producer_destroy(kp);
}

Test(kafka_mock, fatal_error_raises_the_flag)
{
    kafka_producer_t *kp = producer(NULL, 0);
    cr_assert_not(kafka_producer_fatal(kp));
    cr_assert_eq(rd_kafka_test_fatal_error(kafka_producer_handle(kp),
                                           RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                           "injected by the test"),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
    int64_t until = mono_ms() + 5000;
    while (!kafka_producer_fatal(kp) && mono_ms() < until)
        kafka_producer_poll(kp, 50);
    cr_assert(kafka_producer_fatal(kp));
    err_t *e = NULL;
    cr_assert_eq(kafka_produce(kp, "t", 0, NULL, 0, "x", 1, NULL, &e), -1);
    cr_assert(e && e->fatal, "produce after a fatal error reports fatal");
    err_destroy(e);
    kafka_producer_destroy(kp);
}

static int64_t committed(kafka_consumer_t *kc)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "t", 0);
    cr_assert_eq(rd_kafka_committed(kafka_consumer_handle(kc), l, 5000), 0);
    int64_t off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return off;
}

Test(kafka_mock, tracker_stores_only_the_completed_prefix)
{
    kafka_producer_t *kp = producer(NULL, 0);
    produce_n(kp, 6);
    cr_assert_eq(kafka_producer_flush(kp, 10000), 0);
    kafka_producer_destroy(kp);

    char err[512];
    const char *topics[] = {"t"};
    kafka_opts_t o = {.brokers = bootstraps};
    kafka_consumer_opts_t co = {.group_id = "g", .topics = topics, .ntopics = 1};
    kafka_consumer_t *kc = kafka_consumer_new(&o, &co, err, sizeof(err));
    cr_assert(kc, "%s", err);
    kafka_tracker_t *tr = kafka_tracker_new(kc);
    void *h[6];
    int got = 0;
    int64_t until = mono_ms() + 20000;
    while (got < 6 && mono_ms() < until) {
        rd_kafka_message_t *m = kafka_consumer_poll(kc, 200);
        if (!m)
            continue;
        cr_assert_eq(m->offset, got);
        h[got++] = kafka_tracker_begin(tr, "t", 0, m->offset);
        rd_kafka_message_destroy(m);
    }
    cr_assert_eq(got, 6);
    err_t *e = NULL;
    /* message 3 has two outputs in flight */
    kafka_tracker_hold(h[3]);
    kafka_tracker_hold(h[3]);
    /* complete 1, 2 out of order: 0 is still pending, nothing may be stored */
    cr_assert_eq(kafka_tracker_done(tr, h[2]), 0);
    cr_assert_eq(kafka_tracker_done(tr, h[1]), 0);
    cr_assert_eq(kafka_consumer_commit(kc, &e), 0);
    cr_assert_lt(committed(kc), 0, "offset stored past an unfinished message");
    cr_assert_eq(kafka_tracker_pending(tr), 4);
    /* 0 completes: 0..2 done -> store 3 */
    cr_assert_eq(kafka_tracker_done(tr, h[0]), 0);
    cr_assert_eq(kafka_consumer_commit(kc, &e), 0);
    cr_assert_eq(committed(kc), 3);
    /* 4 and 5 done; 3 has processed and one of two outputs delivered */
    cr_assert_eq(kafka_tracker_done(tr, h[4]), 0);
    cr_assert_eq(kafka_tracker_done(tr, h[5]), 0);
    cr_assert_eq(kafka_tracker_done(tr, h[3]), 0);
    cr_assert_eq(kafka_tracker_done(tr, h[3]), 0);
    cr_assert_eq(kafka_consumer_commit(kc, &e), 0);
    cr_assert_eq(committed(kc), 3, "message 3 still has an output in flight");
    cr_assert_eq(kafka_tracker_done(tr, h[3]), 0);
    cr_assert_eq(kafka_consumer_commit(kc, &e), 0);
    cr_assert_eq(committed(kc), 6);
    cr_assert_eq(kafka_tracker_pending(tr), 0);
    kafka_tracker_destroy(tr);
    kafka_consumer_close(kc);
}

/* A callback that takes one message per wake-up and never asks to be run
 * again stands in for a lost wake-up: only the watch's sweep can deliver
 * the rest. Without it the loop below would stall after the first few. */
typedef struct lazy_ctx {
    kafka_consumer_t *kc;
    struct event_base *base;
    int got;
} lazy_ctx_t;

static void take_one(void *opaque)
{
    lazy_ctx_t *c = opaque;
    rd_kafka_message_t *m = kafka_consumer_poll(c->kc, 0);
    if (m) {
        c->got++;
        rd_kafka_message_destroy(m);
    }
    if (c->got >= 6)
        event_base_loopbreak(c->base);
}

static void give_up(evutil_socket_t fd, short what, void *arg) { event_base_loopbreak(arg); }

Test(kafka_mock, the_sweep_rescues_a_callback_that_left_messages_queued)
{
    kafka_producer_t *kp = producer(NULL, 0);
    produce_n(kp, 6);
    cr_assert_eq(kafka_producer_flush(kp, 10000), 0);
    kafka_producer_destroy(kp);

    char err[512];
    const char *topics[] = {"t"};
    kafka_opts_t o = {.brokers = bootstraps};
    kafka_consumer_opts_t co = {.group_id = "g-sweep", .topics = topics, .ntopics = 1};
    lazy_ctx_t c = {.kc = kafka_consumer_new(&o, &co, err, sizeof(err))};
    cr_assert(c.kc, "%s", err);
    c.base = event_base_new();
    kafka_watch_t *w = kafka_consumer_watch(c.kc, c.base, take_one, &c, err, sizeof(err));
    cr_assert(w, "%s", err);
    struct event *deadline = evtimer_new(c.base, give_up, c.base);
    struct timeval tv = {20, 0};
    evtimer_add(deadline, &tv);
    event_base_dispatch(c.base);
    cr_assert_eq(c.got, 6, "got %d of 6: the queue was left undrained", c.got);
    cr_assert_gt(kafka_watch_rescued(w), 0, "every message came by the pipe: nothing tested");
    event_free(deadline);
    kafka_watch_destroy(w);
    kafka_consumer_close(c.kc);
    event_base_free(c.base);
}

/* A backlog must not starve the loop's sockets: a callback that takes one
 * message and asks to run again every time (as the services' batch loops do
 * while messages remain) writes a byte to a socket pair once, early; the
 * socket's read event must fire long before the backlog is drained. With
 * kafka_watch_again() as event_active() it fired only at the very end. */
#define BACKLOG 2000

typedef struct busy_ctx {
    kafka_consumer_t *kc;
    kafka_watch_t *w;
    struct event_base *base;
    int fds[2];
    int got, got_at_io;
} busy_ctx_t;

static void take_one_again(void *opaque)
{
    busy_ctx_t *c = opaque;
    rd_kafka_message_t *m = kafka_consumer_poll(c->kc, 0);
    if (m) {
        c->got++;
        rd_kafka_message_destroy(m);
    }
    if (c->got == 10)
        cr_assert_eq(write(c->fds[1], "x", 1), 1);
    if (c->got < BACKLOG)
        kafka_watch_again(c->w);
    else if (c->got_at_io >= 0)
        event_base_loopbreak(c->base);
    /* else: all taken, the loop goes back to polling and on_readable ends it */
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    busy_ctx_t *c = arg;
    char b;
    if (read(fd, &b, 1) == 1 && c->got_at_io < 0)
        c->got_at_io = c->got;
    if (c->got >= BACKLOG)
        event_base_loopbreak(c->base);
}

Test(kafka_mock, a_backlog_does_not_starve_the_loops_sockets)
{
    kafka_producer_t *kp = producer(NULL, 0);
    produce_n(kp, BACKLOG);
    cr_assert_eq(kafka_producer_flush(kp, 10000), 0);
    kafka_producer_destroy(kp);

    char err[512];
    const char *topics[] = {"t"};
    kafka_opts_t o = {.brokers = bootstraps};
    kafka_consumer_opts_t co = {.group_id = "g-busy", .topics = topics, .ntopics = 1};
    busy_ctx_t c = {.kc = kafka_consumer_new(&o, &co, err, sizeof(err)), .got_at_io = -1};
    cr_assert(c.kc, "%s", err);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, c.fds), 0);
    c.base = event_base_new();
    struct event *rd = event_new(c.base, c.fds[0], EV_READ | EV_PERSIST, on_readable, &c);
    event_add(rd, NULL);
    c.w = kafka_consumer_watch(c.kc, c.base, take_one_again, &c, err, sizeof(err));
    cr_assert(c.w, "%s", err);
    struct event *deadline = evtimer_new(c.base, give_up, c.base);
    struct timeval tv = {30, 0};
    evtimer_add(deadline, &tv);
    event_base_dispatch(c.base);
    cr_assert_eq(c.got, BACKLOG, "got %d of %d", c.got, BACKLOG);
    cr_assert_geq(c.got_at_io, 10, "the socket fired before it was written");
    cr_assert_lt(c.got_at_io, 100,
                 "the socket was served only after %d of %d messages: the backlog starved it",
                 c.got_at_io, BACKLOG);
    event_free(deadline);
    event_free(rd);
    kafka_watch_destroy(c.w);
    kafka_consumer_close(c.kc);
    event_base_free(c.base);
    close(c.fds[0]);
    close(c.fds[1]);
}

/* A TLS or SASL failure stops the clients only while no broker has been reached
 * (a configuration error); after a delivery it is retried like any other. Each
 * criterion test runs in its own process, so the process-wide state starts empty. */
Test(kafka_mock, access_errors_stop_only_before_a_broker_was_reached)
{
    kafka_producer_t *kp = producer(NULL, 0);
    rd_kafka_t *rk = kafka_producer_handle(kp);
    cr_assert(kafka_log_error(rk, RD_KAFKA_RESP_ERR__SSL, "certificate verify failed"),
              "before any broker answered, a TLS failure is a configuration error");
    char why[256];
    cr_assert(kafka_access_error(why, sizeof(why)));
    cr_assert(strstr(why, "ssl.ca.location"), "%s", why);
    produce_n(kp, 1);
    cr_assert_eq(kafka_producer_flush(kp, 10000), 0);
    cr_assert_eq(drs_ok, 1);
    cr_assert_not(kafka_log_error(rk, RD_KAFKA_RESP_ERR__SSL, "handshake reset"),
                  "after a delivery, a TLS failure is retried");
    cr_assert_not(kafka_log_error(rk, RD_KAFKA_RESP_ERR__AUTHENTICATION, "invalid credentials"));
    kafka_producer_destroy(kp);
}
