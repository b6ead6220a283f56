/**
 * @file kafka.h
 * @brief librdkafka wrappers: idempotent producer, group consumer with
 *        manual offset store, an offset tracker, libevent wake-ups, and a
 *        transactional consume-transform-produce helper.
 *
 * Rules these wrappers implement (STYLE.md 11, 20, 22):
 * - error_cb is informational except RD_KAFKA_RESP_ERR__FATAL, which sets a
 *   flag the service checks (kafka_*_fatal()) to flush, exit non-zero and be
 *   restarted by its supervisor, and a failed TLS handshake or SASL
 *   authentication, which sets the same flag: a configuration error, exit
 *   with MLOPS_EXIT_USAGE and its cause (kafka_fatal_cause()).
 * - ERR__QUEUE_FULL on produce: serve delivery reports and retry, up to a
 *   deadline.
 * - Consumers run with enable.auto.offset.store=false: an offset is stored
 *   only when the outputs of that message (and of every earlier message of
 *   its partition) are delivered, through kafka_tracker_t; stored offsets
 *   are committed by auto-commit, on revoke and on close.
 * - Transactions abort and rewind to the committed offsets on abortable
 *   errors, retry retriable ones and report fatal ones.
 * - librdkafka's logs go to log.c as JSON lines (log_cb; log.c is
 *   thread-safe, so no log queue is needed).
 *
 * Ownership: each *_new returns an object the caller frees with the
 * matching *_destroy/close (all accept NULL). Messages returned by poll
 * functions are the caller's: rd_kafka_message_destroy() them.
 */
#ifndef MLOPS_KAFKA_H
#define MLOPS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"
#include "metrics.h"
#include "util.h"

struct event_base;

/** Options shared by every client. Borrowed for the duration of *_new. */
typedef struct kafka_opts {
    const char *brokers;   /**< bootstrap.servers */
    const char *client_id; /**< client.id; NULL = "mlops" */
    const cfg_kv_t *props; /**< pass-through properties, applied last */
    size_t nprops;
    metrics_t *metrics; /**< optional: counters are registered here */
} kafka_opts_t;

/* ---- producer ----------------------------------------------------------------- */

typedef struct kafka_producer kafka_producer_t;

/**
 * Delivery report hook, called on the thread that serves the producer
 * (kafka_producer_poll / the libevent watch) once per message, after the
 * producer's own accounting. @p msg_opaque is what kafka_produce() was given.
 */
typedef void(kafka_dr_cb)(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque);

/**
 * Create a producer: idempotent (enable.idempotence=true, acks=all) or, if
 * @p transactional_id is not NULL, transactional (init_transactions is
 * called, with a 30 s timeout). Returns NULL with errstr on failure.
 */
kafka_producer_t *kafka_producer_new(const kafka_opts_t *opts, const char *transactional_id,
                                     kafka_dr_cb *dr_cb, void *dr_opaque, char *errstr,
                                     size_t errstr_size);

/**
 * Produce a copy of key and value to @p topic (partition RD_KAFKA_PARTITION_UA
 * to let the partitioner choose by key). On a full queue, serves delivery
 * reports and retries for up to 10 s. Returns 0, or -1 with *errp set.
 */
int kafka_produce(kafka_producer_t *kp, const char *topic, int32_t partition, const void *key,
                  size_t keylen, const void *value, size_t valuelen, void *msg_opaque,
                  err_t **errp) MLOPS_WUR;

/** Serve delivery reports (and other events) for up to @p timeout_ms. */
void kafka_producer_poll(kafka_producer_t *kp, int timeout_ms);

/**
 * Wait until every produced message is delivered or failed. Returns 0 if
 * the queue drained within @p timeout_ms, -1 otherwise.
 */
int kafka_producer_flush(kafka_producer_t *kp, int timeout_ms) MLOPS_WUR;

/** Flush (30 s), report undelivered messages, destroy; accepts NULL. */
void kafka_producer_destroy(kafka_producer_t *kp);

rd_kafka_t *kafka_producer_handle(kafka_producer_t *kp);
/** True once librdkafka raised a fatal error (reason logged). */
bool kafka_producer_fatal(const kafka_producer_t *kp);
/**
 * False while the client has no broker connection up: set at once by
 * librdkafka's ALL_BROKERS_DOWN error, recomputed from each statistics report
 * (statistics.interval.ms, 1000 by default; 0 turns the tracking off and this
 * stays true). For /ready.
 */
bool kafka_producer_brokers_up(const kafka_producer_t *kp);

/** Delivery accounting since start. */
typedef struct kafka_producer_stats {
    uint64_t produced;  /**< accepted by kafka_produce() */
    uint64_t delivered; /**< acknowledged by the broker */
    uint64_t failed;    /**< permanently failed */
} kafka_producer_stats_t;
void kafka_producer_stats(const kafka_producer_t *kp, kafka_producer_stats_t *st);

/* ---- consumer ----------------------------------------------------------------- */

typedef struct kafka_consumer kafka_consumer_t;

/**
 * Called when partitions are revoked: with a plain consumer before their
 * stored offsets are committed (the place to flush outputs so their offsets
 * get stored); with the transactional helper after the open transaction was
 * committed (or aborted, if the assignment was lost). Either way the place
 * to drop per-partition state.
 */
typedef void(kafka_revoke_cb)(kafka_consumer_t *kc, const rd_kafka_topic_partition_list_t *parts,
                              void *opaque);

typedef struct kafka_consumer_opts {
    const char *group_id;
    const char *const *topics;
    size_t ntopics;
    /** Stable per instance slot for quick restarts (static membership); optional. */
    const char *group_instance_id;
    /** Commit stored offsets automatically (every auto.commit.interval.ms).
     *  Off for the transactional helper, which commits through the producer. */
    bool auto_commit;
    kafka_revoke_cb *on_revoke;
    void *opaque;
} kafka_consumer_opts_t;

/**
 * Create a group consumer and subscribe. Defaults (pass-through properties
 * may override them): partition.assignment.strategy=range,roundrobin (eager:
 * librdkafka 2.0.2's cooperative-sticky can abort on close, #4312),
 * auto.offset.reset=earliest, isolation.level=read_committed,
 * enable.auto.offset.store=false (always: offsets are stored explicitly).
 */
kafka_consumer_t *kafka_consumer_new(const kafka_opts_t *opts, const kafka_consumer_opts_t *copts,
                                     char *errstr, size_t errstr_size);

/**
 * Poll one message. Returns a message (caller destroys it), or NULL on
 * timeout or after an error event, which is logged (partition EOF is
 * silent). A message with rkm->err set is never returned.
 */
rd_kafka_message_t *kafka_consumer_poll(kafka_consumer_t *kc, int timeout_ms);

/** Store @p next_offset (the offset of the last processed message + 1). */
int kafka_consumer_store(kafka_consumer_t *kc, const char *topic, int32_t partition,
                         int64_t next_offset) MLOPS_WUR;

/** Commit stored offsets now (synchronously). Nothing stored is not an error. */
int kafka_consumer_commit(kafka_consumer_t *kc, err_t **errp) MLOPS_WUR;

/** Leave the group (commits stored offsets when auto_commit), destroy; accepts NULL. */
void kafka_consumer_close(kafka_consumer_t *kc);

rd_kafka_t *kafka_consumer_handle(kafka_consumer_t *kc);
bool kafka_consumer_fatal(const kafka_consumer_t *kc);
/** As kafka_producer_brokers_up(), for a consumer. */
bool kafka_consumer_brokers_up(const kafka_consumer_t *kc);
/** Number of partitions currently assigned. */
int kafka_consumer_assigned(const kafka_consumer_t *kc);
/**
 * Messages not yet consumed on the assigned partitions: high watermark (as
 * librdkafka last saw it) minus position; a partition with no position yet
 * (nothing consumed since the assignment) counts from its committed offset,
 * which costs one broker call of at most 200 ms.
 * Returns 0 with *lag set, or -1 when the assignment cannot be read.
 */
int kafka_consumer_lag(kafka_consumer_t *kc, int64_t *lag);

/* ---- offset tracker: store offsets only after the outputs are delivered ------- */

typedef struct kafka_tracker kafka_tracker_t;

/** Create a tracker that stores offsets into @p kc. */
kafka_tracker_t *kafka_tracker_new(kafka_consumer_t *kc);
void kafka_tracker_destroy(kafka_tracker_t *tr);

/**
 * A message was taken for processing. Offsets of one partition must be
 * begun in increasing order (consumption order). Returns a handle to pass
 * to kafka_tracker_done().
 */
void *kafka_tracker_begin(kafka_tracker_t *tr, const char *topic, int32_t partition,
                          int64_t offset);

/**
 * One more output of the message behind @p handle is in flight: its
 * delivery report must call kafka_tracker_done() too.
 */
void kafka_tracker_hold(void *handle);

/**
 * Drop one reference: kafka_tracker_begin() takes one for the processing
 * itself, kafka_tracker_hold() one per output. When the last is dropped and
 * every earlier message of the partition is complete as well, the
 * partition's offset (last complete + 1) is stored. Returns 0, -1 if
 * storing failed.
 */
int kafka_tracker_done(kafka_tracker_t *tr, void *handle) MLOPS_WUR;

/** Messages begun and not yet done, over all partitions. */
size_t kafka_tracker_pending(const kafka_tracker_t *tr);

/* ---- libevent wake-ups ---------------------------------------------------------- */

typedef struct kafka_watch kafka_watch_t;
typedef void(kafka_watch_cb)(void *opaque);

/**
 * Call @p cb on the loop whenever @p rkqu becomes non-empty
 * (rd_kafka_queue_io_event_enable through a pipe). librdkafka writes the
 * pipe only when the queue goes from empty to non-empty, so @p cb must
 * drain in bounded batches and call kafka_watch_again() if it stopped
 * with messages left. @p cb is also run once at start, and whenever a
 * sweep every KAFKA_WATCH_SWEEP_MS finds the queue non-empty (a lost
 * wake-up then costs at most that long). Takes ownership of
 * @p rkqu. Returns NULL with errstr on failure.
 */
kafka_watch_t *kafka_watch_new(struct event_base *base, rd_kafka_queue_t *rkqu, kafka_watch_cb *cb,
                               void *opaque, char *errstr, size_t errstr_size);
#define KAFKA_WATCH_SWEEP_MS 200

/** Run the callback again on the next loop iteration, after the loop has
 *  polled its sockets (HTTP and signals are served between two batches). */
void kafka_watch_again(kafka_watch_t *w);
/** How often the sweep found queued events the callback had not drained. */
uint64_t kafka_watch_rescued(const kafka_watch_t *w);
/** Stop watching; accepts NULL. */
void kafka_watch_destroy(kafka_watch_t *w);

/** Watch a consumer's queue; @p cb polls it with kafka_consumer_poll(kc, 0). */
kafka_watch_t *kafka_consumer_watch(kafka_consumer_t *kc, struct event_base *base,
                                    kafka_watch_cb *cb, void *opaque, char *errstr,
                                    size_t errstr_size);
/** Serve a producer's delivery reports from the loop (no callback needed). */
kafka_watch_t *kafka_producer_watch(kafka_producer_t *kp, struct event_base *base, char *errstr,
                                    size_t errstr_size);

/* ---- transactional consume-transform-produce ------------------------------------- */

typedef struct kafka_txn kafka_txn_t;

/**
 * A consumer (auto commit off, read_committed) plus a transactional
 * producer sharing one transaction per batch: outputs and input offsets
 * commit atomically (KIP-447). Reuse the same @p transactional_id for the
 * same instance slot across restarts so a restart fences the old process.
 * The first transaction is begun here.
 */
kafka_txn_t *kafka_txn_new(const kafka_opts_t *opts, const kafka_consumer_opts_t *copts,
                           const char *transactional_id, char *errstr, size_t errstr_size);

/** Poll one input message (see kafka_consumer_poll()). */
rd_kafka_message_t *kafka_txn_poll(kafka_txn_t *txn, int timeout_ms);

/** Produce an output inside the current transaction. */
int kafka_txn_produce(kafka_txn_t *txn, const char *topic, int32_t partition, const void *key,
                      size_t keylen, const void *value, size_t valuelen, err_t **errp) MLOPS_WUR;

/** Outcome of kafka_txn_commit(). */
typedef enum kafka_txn_result {
    KAFKA_TXN_COMMITTED = 0, /**< outputs and offsets are committed */
    KAFKA_TXN_ABORTED = 1,   /**< aborted and rewound: the inputs will be seen again */
    KAFKA_TXN_FATAL = -1     /**< cannot go on: exit non-zero (*errp says why) */
} kafka_txn_result_t;

/**
 * Send the consumer's positions to the transaction, commit it and begin the
 * next one. On an abortable error: abort, rewind the consumer to the
 * committed offsets and begin a new transaction (KAFKA_TXN_ABORTED).
 * Retriable errors are retried up to a minute.
 */
kafka_txn_result_t kafka_txn_commit(kafka_txn_t *txn, err_t **errp);

/**
 * Abort the current transaction on purpose, rewind and begin a new one.
 * Returns KAFKA_TXN_ABORTED or KAFKA_TXN_FATAL.
 */
kafka_txn_result_t kafka_txn_abort(kafka_txn_t *txn, err_t **errp);

/** Messages produced in the current (open) transaction. */
size_t kafka_txn_pending(const kafka_txn_t *txn);

/** Abort any open transaction, close the consumer, destroy; accepts NULL. */
void kafka_txn_destroy(kafka_txn_t *txn);

kafka_consumer_t *kafka_txn_consumer(kafka_txn_t *txn);
kafka_producer_t *kafka_txn_producer(kafka_txn_t *txn);

/* ---- helpers ---------------------------------------------------------------------- */

/**
 * librdkafka's log callback routed to log.c (thread-safe): for clients
 * built by hand (rd_kafka_conf_set_log_cb(conf, kafka_log_cb)).
 */
void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/**
 * Log what librdkafka's error_cb reported and say whether the client must
 * stop (returns true):
 * - RD_KAFKA_RESP_ERR__FATAL: a fatal line with the underlying reason;
 * - RD_KAFKA_RESP_ERR__SSL (TLS handshake) and __AUTHENTICATION (SASL): an
 *   error line naming the settings to check; the first one is kept for
 *   kafka_access_error(). librdkafka would retry these forever, but a wrong CA
 *   or password does not heal: clients stop and say why instead of hanging.
 *   Only until a client of the process has reached a broker (a delivery, an
 *   assignment, metadata, init_transactions): after that they are logged as
 *   errors and retried (returns false), since a broker restarting or a
 *   certificate rotation must not stop a service for good.
 * Anything else is a warning (returns false: librdkafka recovers by itself).
 */
bool kafka_log_error(rd_kafka_t *rk, int err, const char *reason);

/**
 * error_cb for clients built by hand (rd_kafka_conf_set_error_cb(conf,
 * kafka_error_cb)): kafka_log_error(), nothing else.
 */
void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/**
 * True if any client of this process failed a TLS handshake or SASL
 * authentication (error_cb served); @p why (may be NULL) gets the first such
 * failure, with the settings to check.
 */
bool kafka_access_error(char *why, size_t size);

/**
 * rd_kafka_metadata() of one topic (all topics if @p rkt is NULL) for up to
 * @p timeout_ms, in one-second steps that serve error_cb in between, so a TLS
 * or SASL failure ends the wait at once. Returns 0, or the error with its
 * description in @p why (the TLS or SASL cause when there is one).
 */
rd_kafka_resp_err_t kafka_metadata(rd_kafka_t *rk, rd_kafka_topic_t *rkt,
                                   const struct rd_kafka_metadata **mdp, int timeout_ms, char *why,
                                   size_t why_size);

/**
 * After kafka_*_fatal() returned true: the cause into @p why and the exit
 * code, MLOPS_EXIT_USAGE for a TLS or SASL failure (the configuration is
 * wrong; restarting fails the same way), MLOPS_EXIT_FAILURE otherwise.
 */
int kafka_fatal_cause(char *why, size_t size);

/** rd_kafka_conf_set() with "Kafka property KEY: why" in @p errstr. Returns 0/-1. */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                   size_t errstr_size) MLOPS_WUR;

/** Make an err_t from a librdkafka error object (destroys @p error). */
err_t *kafka_err_from(rd_kafka_error_t *error, const char *what);

#endif
