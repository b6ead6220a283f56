/**
 * @file benchkit.h
 * @brief What the benchmark tools share: -X property lists, librdkafka
 *        configuration with log and error callbacks, a fatal-error flag.
 *
 * Nothing here is on a message path: the passthrough's consume -> produce
 * loop is raw librdkafka, so it stays a fair floor for the services.
 *
 * Ownership: a bench_props_t owns copies of its strings until
 * bench_props_cleanup(). bench_conf_new() returns a configuration the caller
 * hands to rd_kafka_new() (which takes it over on success) or destroys.
 */
#ifndef MLOPS_BENCHKIT_H
#define MLOPS_BENCHKIT_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/** Default bootstrap servers: the local stack's broker. */
#define BENCH_DEFAULT_BROKERS "127.0.0.1:9092"

/** librdkafka properties given as -X prop=value, in command-line order. */
typedef struct bench_props {
    char **key;
    char **value;
    size_t n;
} bench_props_t;

/**
 * Add "prop=value" (@p arg is copied). Returns 0, or -1 with errstr naming
 * the argument when it has no '=' or an empty property name.
 */
int bench_props_add(bench_props_t *props, const char *arg, char *errstr,
                    size_t errstr_size) MLOPS_WUR;

/** Free the copies; the list is empty afterwards. */
void bench_props_cleanup(bench_props_t *props);

/**
 * A librdkafka configuration: bootstrap.servers = @p brokers, client.id =
 * @p client_id, then @p defaults (NULL-terminated key, value pairs), then
 * the -X properties (so they override the defaults), then @p forced pairs
 * (which the tool needs to be correct, e.g. enable.auto.offset.store=false).
 * Log lines go to log.c as JSON; errors set bench_fatal when fatal.
 * Returns NULL with errstr naming the property on error.
 */
rd_kafka_conf_t *bench_conf_new(const char *brokers, const char *client_id,
                                const char *const *defaults, const bench_props_t *props,
                                const char *const *forced, char *errstr, size_t errstr_size);

/** Set once any client reported RD_KAFKA_RESP_ERR__FATAL (reason logged). */
extern atomic_bool bench_fatal;

/**
 * Log init for a tool: JSON lines on stderr, level from $MLOPS_LOG_LEVEL
 * (default info).
 */
void bench_log_init(const char *name);

/** Parse a whole number in [lo, hi] for option @p opt; prints the error. */
int bench_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) MLOPS_WUR;

#endif
