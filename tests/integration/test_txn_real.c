/* The transactional consume-transform-produce helper on the real broker
 * (the mock cluster gets this wrong). Inputs are transformed in batches of
 * 100; the third batch's transaction is aborted on purpose after its outputs
 * were produced. A read_committed reader must see every output exactly
 * once; a read_uncommitted reader must also see the aborted copies, which
 * proves they were really written and hidden by the abort. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "testutil.h"

static void setup(void) { log_init("test", LOG_LVL_WARN); }
TestSuite(txn_real, .init = setup, .timeout = 240);

static void produce_inputs(const char *topic, int n)
{
    char err[512];
    kafka_opts_t o = {.brokers = test_kafka_brokers()};
    kafka_producer_t *kp = kafka_producer_new(&o, NULL, NULL, NULL, err, sizeof(err));
    cr_assert(kp, "%s", err);
    for (int i = 0; i < n; i++) {
        char v[32];
        int vl = snprintf(v, sizeof(v), "%d", i);
        err_t *e = NULL;
        cr_assert_eq(
            kafka_produce(kp, topic, RD_KAFKA_PARTITION_UA, v, (size_t)vl, v, (size_t)vl, NULL, &e),
            0);
    }
    cr_assert_eq(kafka_producer_flush(kp, 30000), 0);
    kafka_producer_destroy(kp);
}

/* Read the whole output topic with the given isolation level; count per id. */
static int read_all(const char *topic, const char *isolation, int *counts, int n)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* assign() without commits: this group id is never registered on the broker */
    char *group = test_unique("it-reader");
    rd_kafka_conf_set(conf, "bootstrap.servers", test_kafka_brokers(), err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err));
    rd_kafka_conf_set(conf, "isolation.level", isolation, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    cr_assert(rk, "%s", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int total = 0;
    int64_t deadline = mono_ms() + 60000;
    bool eof = false;
    while (!eof && mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof = true;
        } else if (!m->err) {
            char buf[32];
            size_t len = m->len < sizeof(buf) - 1 ? m->len : sizeof(buf) - 1;
            memcpy(buf, m->payload, len);
            buf[len] = '\0';
            int id = -1;
            cr_assert_eq(sscanf(buf, "out-%d", &id), 1, "unexpected output '%s'", buf);
            cr_assert(id >= 0 && id < n);
            counts[id]++;
            total++;
        }
        rd_kafka_message_destroy(m);
    }
    cr_assert(eof, "did not reach the end of %s", topic);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(group);
    return total;
}

Test(txn_real, aborted_transaction_invisible_to_read_committed)
{
    const int n = 1000, batch = 100, abort_batch = 2;
    char *in = test_unique("it-txn-in"), *out = test_unique("it-txn-out");
    char *group = test_unique("it-txn-group"), *tid = test_unique("it-txn-id");
    test_create_topic(test_kafka_brokers(), in, 1);
    test_create_topic(test_kafka_brokers(), out, 1);
    produce_inputs(in, n);

    char err[512];
    const char *topics[] = {in};
    kafka_opts_t o = {.brokers = test_kafka_brokers(), .client_id = "test-txn"};
    kafka_consumer_opts_t co = {.group_id = group, .topics = topics, .ntopics = 1};
    kafka_txn_t *txn = kafka_txn_new(&o, &co, tid, err, sizeof(err));
    cr_assert(txn, "%s", err);

    int processed = 0, batches = 0, aborted = 0, in_batch = 0;
    int64_t deadline = mono_ms() + 120000;
    while (batches * batch < n && mono_ms() < deadline) {
        rd_kafka_message_t *m = kafka_txn_poll(txn, 200);
        if (m) {
            char v[40];
            int vl = snprintf(v, sizeof(v), "out-%.*s", (int)m->len, (const char *)m->payload);
            err_t *e = NULL;
            cr_assert_eq(kafka_txn_produce(txn, out, 0, NULL, 0, v, (size_t)vl, &e), 0, "%s",
                         e ? e->msg : "");
            rd_kafka_message_destroy(m);
            processed++;
            in_batch++;
        }
        if (in_batch == batch) {
            err_t *e = NULL;
            kafka_txn_result_t r;
            if (batches == abort_batch && !aborted) {
                /* make sure the doomed outputs really reached the log first */
                cr_assert_eq(kafka_producer_flush(kafka_txn_producer(txn), 30000), 0);
                r = kafka_txn_abort(txn, &e);
                cr_assert_eq(r, KAFKA_TXN_ABORTED, "%s", e ? e->msg : "");
                aborted = 1;
            } else {
                r = kafka_txn_commit(txn, &e);
                cr_assert_eq(r, KAFKA_TXN_COMMITTED, "%s", e ? e->msg : "");
                batches++;
            }
            in_batch = 0;
        }
    }
    cr_assert_eq(batches * batch, n, "only %d batches committed", batches);
    cr_assert_eq(processed, n + batch, "the aborted batch is processed again after the rewind");
    kafka_txn_destroy(txn);

    int *committed = xcalloc((size_t)n, sizeof(int));
    int *uncommitted = xcalloc((size_t)n, sizeof(int));
    int total_c = read_all(out, "read_committed", committed, n);
    int total_u = read_all(out, "read_uncommitted", uncommitted, n);
    cr_assert_eq(total_c, n, "read_committed saw %d outputs for %d inputs", total_c, n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(committed[i], 1, "output %d seen %d times by read_committed", i, committed[i]);
    cr_assert_eq(total_u, n + batch, "read_uncommitted must also see the %d aborted records",
                 batch);
    int twice = 0;
    for (int i = 0; i < n; i++)
        twice += uncommitted[i] == 2;
    cr_assert_eq(twice, batch, "exactly the aborted batch appears twice to read_uncommitted");
    free(committed);
    free(uncommitted);
    const char *cleanup_topics[] = {in, out, NULL}, *cleanup_groups[] = {group, NULL};
    test_kafka_cleanup(test_kafka_brokers(), cleanup_topics, cleanup_groups);
    free(in);
    free(out);
    free(group);
    free(tid);
}
