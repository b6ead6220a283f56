/**
 * @file redis.h
 * @brief A Redis client (hiredis 0.14, synchronous) that never hangs a service.
 *
 * - Every call has a deadline (SO_RCVTIMEO/SO_SNDTIMEO via redisSetTimeout,
 *   and a connect timeout): hiredis 0.14 has none of its own for commands.
 * - A context that reports an error is dead (STYLE.md 12): it is freed and
 *   the next call reconnects, after an exponential backoff.
 * - A circuit breaker opens after @c breaker_failures consecutive
 *   connection-level failures; while open, calls fail at once (no network
 *   I/O) until @c breaker_cooldown_ms have passed, then one trial call is let
 *   through (half-open): success closes it, failure re-opens it.
 * - Redis error replies (wrong type, script errors) are errors of the call,
 *   not of the connection: they do not count towards the breaker.
 *
 * Ownership: replies are the caller's: freeReplyObject() them. The client is
 * not thread-safe: one per thread.
 */
#ifndef MLOPS_REDIS_H
#define MLOPS_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "metrics.h"
#include "util.h"

typedef struct redis_opts {
    const char *url;             /**< redis://[:password@]host:port[/db] or host:port */
    int timeout_ms;              /**< per-call deadline; default 50 */
    int pipeline_us_per_command; /**< a pipeline's deadline grows by this per command; default 100 */
    int connect_timeout_ms;      /**< default 200 */
    int breaker_failures;        /**< consecutive failures that open it; default 5 */
    int breaker_cooldown_ms;     /**< default 2000 */
    int backoff_min_ms;          /**< first reconnect delay; default 50 */
    int backoff_max_ms;          /**< default 2000 */
    metrics_t *metrics;          /**< optional */
    const char *metrics_labels;  /**< e.g. client="online_store"; optional */
} redis_opts_t;

typedef enum redis_breaker {
    REDIS_BREAKER_CLOSED = 0,
    REDIS_BREAKER_OPEN,
    REDIS_BREAKER_HALF_OPEN,
} redis_breaker_t;

typedef struct redis_client redis_client_t;

/**
 * Create a client. Does not connect yet (the first call does), so a service
 * starts even while Redis is down. Returns NULL with errstr if the URL is
 * malformed.
 */
redis_client_t *redis_client_new(const redis_opts_t *opts, char *errstr, size_t errstr_size);
void redis_client_destroy(redis_client_t *rc);

/**
 * Run one command (hiredis format string). Returns the reply, or NULL with
 * *errp set: retriable for connection failures, timeouts and an open
 * breaker (message says which); not retriable for Redis error replies.
 */
redisReply *redis_command(redis_client_t *rc, err_t **errp, const char *fmt, ...);

/** The same with an argument vector (binary safe). */
redisReply *redis_command_argv(redis_client_t *rc, err_t **errp, int argc, const char **argv,
                               const size_t *argvlen);

/**
 * Pipelining: queue commands with redis_append_argv(), then read all their
 * replies with redis_pipeline_exec() in one round trip. The deadline covers
 * the whole exchange: timeout_ms plus pipeline_us_per_command for each
 * command (Redis needs time in proportion to the work; a fixed deadline
 * would fail every large batch). On failure every reply is NULL and all are
 * discarded.
 */
void redis_append_argv(redis_client_t *rc, int argc, const char **argv, const size_t *argvlen);

/**
 * Append one command in the Redis protocol (RESP) to @p sb: what
 * redisFormatCommandArgv() makes, without its printf calls. @p argvlen may
 * be NULL for NUL-terminated arguments.
 */
void redis_format_argv(strbuf_t *sb, int argc, const char **argv, const size_t *argvlen);
/**
 * Send the queued commands and read @p n replies into @p replies (caller
 * frees each). Returns 0, or -1 with *errp (no replies kept).
 */
int redis_pipeline_exec(redis_client_t *rc, redisReply **replies, size_t n, err_t **errp) MLOPS_WUR;

redis_breaker_t redis_client_breaker(const redis_client_t *rc);
/** True if a connection is currently open. */
bool redis_client_connected(const redis_client_t *rc);

#endif
