/**
 * @file log.h
 * @brief Structured logging: one JSON object per line.
 *
 * Every line has ts (RFC 3339 UTC, ms), level, service, msg, and any context
 * fields the caller passes (topic, partition, offset, model, request id...):
 *
 *   {"ts":"2026-11-25T10:00:00.000Z","level":"info","service":"scorer",
 *    "msg":"model loaded","model":"attrition","version":3}
 *
 * Lines are written with one write(2) each, so lines from several threads
 * (librdkafka's callbacks) never interleave. Secrets never reach the output:
 * values registered with log_add_secret() and the password parts of URLs,
 * DSNs (password=...) and bearer tokens are replaced by "***" in the message
 * and in string fields.
 *
 * librdkafka, libevent and libpq route their own logs here through the
 * kafka, http and pg modules (log_level_from_syslog() maps their levels).
 */
#ifndef MLOPS_LOG_H
#define MLOPS_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef enum log_level {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO,
    LOG_LVL_WARN,
    LOG_LVL_ERROR,
    LOG_LVL_FATAL,
} log_level_t;

typedef enum log_field_type {
    LOG_F_STR,
    LOG_F_INT,
    LOG_F_DBL,
    LOG_F_BOOL,
} log_field_type_t;

/** One context field. Borrowed: strings live only for the call. */
typedef struct log_field {
    const char *key;
    log_field_type_t type;
    union {
        const char *s;
        long long i;
        double d;
        bool b;
    } v;
} log_field_t;

#define LOG_STR(k, val) ((log_field_t){.key = (k), .type = LOG_F_STR, .v.s = (val)})
#define LOG_INT(k, val) ((log_field_t){.key = (k), .type = LOG_F_INT, .v.i = (long long)(val)})
#define LOG_DBL(k, val) ((log_field_t){.key = (k), .type = LOG_F_DBL, .v.d = (double)(val)})
#define LOG_BOOL(k, val) ((log_field_t){.key = (k), .type = LOG_F_BOOL, .v.b = (val)})
/** Build the (fields, nfields) pair for log_emit() from a list of LOG_* fields. */
#define LOG_FIELDS(...)                                                                            \
    (const log_field_t[]){__VA_ARGS__},                                                            \
        sizeof((const log_field_t[]){__VA_ARGS__}) / sizeof(log_field_t)

/** Sink for tests and embedding: receives each complete line (with '\n'). */
typedef void(log_sink_cb)(const char *line, size_t len, void *opaque);

/** Set the service name written in every line (copied). */
void log_init(const char *service, log_level_t level);
/** Change the level threshold (thread-safe; used by SIGHUP reload). */
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/** Send lines to @p fd instead of stderr. */
void log_set_fd(int fd);
/** Send lines to a callback instead of a file descriptor (NULL restores fd). */
void log_set_sink(log_sink_cb *cb, void *opaque);
/**
 * Register a secret value that must never be printed (copied). Values
 * shorter than 4 bytes are ignored: redacting them would mangle ordinary text.
 */
void log_add_secret(const char *value);
/** Forget all registered secrets (tests). */
void log_clear_secrets(void);

/** Parse "debug", "info", "warn"/"warning", "error", "fatal". Returns 0/-1. */
int log_level_parse(const char *s, log_level_t *out) MLOPS_WUR;
const char *log_level_name(log_level_t level);
/** Map a syslog level (0 emerg .. 7 debug) as librdkafka uses to ours. */
log_level_t log_level_from_syslog(int syslog_level);

/** True if a line at @p level would be written (skip costly formatting). */
bool log_enabled(log_level_t level);

/** Write one line. @p fields may be NULL when @p nfields is 0. */
void log_emit(log_level_t level, const log_field_t *fields, size_t nfields, const char *fmt, ...)
    MLOPS_PRINTF(4, 5);

/**
 * Redact secrets in @p in into @p out (size @p size, always terminated).
 * Exposed for the config dump and for tests.
 */
void log_redact(const char *in, char *out, size_t size);

#define log_debug(...) log_emit(LOG_LVL_DEBUG, NULL, 0, __VA_ARGS__)
#define log_info(...) log_emit(LOG_LVL_INFO, NULL, 0, __VA_ARGS__)
#define log_warn(...) log_emit(LOG_LVL_WARN, NULL, 0, __VA_ARGS__)
#define log_error(...) log_emit(LOG_LVL_ERROR, NULL, 0, __VA_ARGS__)
#define log_fatal(...) log_emit(LOG_LVL_FATAL, NULL, 0, __VA_ARGS__)

#endif
