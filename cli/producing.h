/*
 * Producing events (and their labels) to Kafka for the CLI commands that
 * send data: `mlopsctl produce` (rows of a CSV/JSONL file) and `mlopsctl
 * datagen --topic` (generated rows). One idempotent producer, label/1
 * records split off to a labels topic, a rate limit, a progress bar (TTY)
 * or a periodic line, delivery accounting and the final summary.
 *
 * Ownership: producing_new() returns an object freed by producing_destroy().
 * Every string given to a producing_* call is borrowed for the call only
 * (messages are copied into librdkafka).
 */
#ifndef MLOPS_CLI_PRODUCING_H
#define MLOPS_CLI_PRODUCING_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cfg.h"
#include "util.h"

typedef struct producing producing_t;

/** What to produce and where. Borrowed for the duration of producing_new(). */
typedef struct producing_opts {
    const char *prog;      /**< message prefix, e.g. "mlopsctl produce" */
    const char *brokers;   /**< bootstrap.servers */
    const cfg_kv_t *props; /**< -X pass-through, applied last */
    size_t nprops;
    const char *topic;        /**< events */
    const char *labels_topic; /**< label/1 records; NULL = no labels */
    /* For producing_send_object(): the event's field names (NULL = none). */
    const char *key_field;        /**< message key */
    const char *label_field;      /**< removed from the event, sent as label/1 */
    const char *event_id_field;   /**< label/1 event_id */
    const char *entity_field;     /**< label/1 entity (and its key) */
    const char *event_time_field; /**< label/1 event_time */
    int64_t label_delay_ms;       /**< label_time = event_time + this */
    double rate;                  /**< events per second; 0 = as fast as possible */
    uint64_t total;               /**< events expected (progress bar); 0 = unknown */
} producing_opts_t;

/**
 * Create the producer and check that the topics exist (the stack does not
 * auto-create topics; a missing one would otherwise fail only after
 * message.timeout.ms). Returns NULL with errstr on failure.
 */
producing_t *producing_new(const producing_opts_t *opts, char *errstr, size_t errstr_size);

/** The label of one event, for producing_send_raw(). */
typedef struct producing_label {
    const char *event_id;
    const char *entity;
    const char *label_json; /**< the label value as JSON text, e.g. "\"yes\"" */
    int64_t event_time_ms;
} producing_label_t;

/**
 * Produce one event (@p value, JSON text) with @p key (NULL = no key) and,
 * if @p label is not NULL and a labels topic is set, its label/1 record
 * keyed by the entity. Waits as the rate limit asks and updates progress.
 * Returns 0, or -1 if the producer cannot go on (fatal error; errstr).
 * A message refused by librdkafka counts as failed and is reported once.
 */
int producing_send_raw(producing_t *pr, const char *key, size_t keylen, const char *value,
                       size_t valuelen, const producing_label_t *label, char *errstr,
                       size_t errstr_size) MLOPS_WUR;

/**
 * Produce one event object with the field names of the options: the key
 * from key_field, the label (when label_field is present) removed from
 * @p event and sent as label/1 with label_time = event_time + delay. An
 * event whose label cannot be sent (no event id, entity or readable event
 * time) is still produced; the label is counted as skipped and the first
 * few are reported naming @p where ("file:line"). @p event is modified.
 * Returns as producing_send_raw().
 */
int producing_send_object(producing_t *pr, json_t *event, const char *where, char *errstr,
                          size_t errstr_size) MLOPS_WUR;

/**
 * True once SIGINT or SIGTERM arrived (producing_new() installs the
 * handler): the caller stops sending, then finishes as usual so what was
 * sent is flushed and the summary printed.
 */
bool producing_stop_requested(void);

/** Count an input record that was skipped (reported by the caller). */
void producing_count_bad(producing_t *pr);

/**
 * Wait for every delivery (up to @p timeout_ms), end the progress display
 * and print the summary line to @p out. Returns the number of messages
 * (events and labels) not delivered: failed, refused or still queued.
 */
uint64_t producing_finish(producing_t *pr, int timeout_ms, FILE *out);

/** Accounting, for callers and tests. */
typedef struct producing_stats {
    uint64_t events_sent, events_delivered, events_failed;
    uint64_t labels_sent, labels_delivered, labels_failed, labels_skipped;
    uint64_t bad;
} producing_stats_t;
void producing_get_stats(const producing_t *pr, producing_stats_t *st);

/** Destroy (after producing_finish(); flushes again otherwise); accepts NULL. */
void producing_destroy(producing_t *pr);

/**
 * Append a label/1 record (one compact JSON object) to @p sb:
 * schema, event_id, entity, label, label_time, event_time.
 */
void producing_label_record(strbuf_t *sb, const producing_label_t *label, int64_t label_delay_ms);

/**
 * The commands take --brokers as a short name for --kafka-brokers (the cfg
 * key whose env is MLOPS_KAFKA_BROKERS). Returns a copy of argv (NULL
 * terminated) with that spelling rewritten; free with producing_free_argv().
 */
char **producing_argv(int argc, char **argv);
void producing_free_argv(int argc, char **argv);

#endif
