/**
 * @file err.h
 * @brief One error object for errors that travel between modules.
 *
 * Errors from Kafka, Postgres, Redis, HTTP and input validation become an
 * err_t: a domain, a code, a message, and two flags that tell the caller
 * what to do: @c retriable (try again, perhaps after backoff) and @c fatal
 * (this process cannot go on: flush what can be flushed and exit non-zero).
 * Modelled on librdkafka's rd_kafka_error_t.
 *
 * Ownership: err_new() returns a heap object the caller owns and frees with
 * err_destroy() (which accepts NULL). Functions that report through an
 * `err_t **errp` out-parameter set *errp only on failure, and only if errp
 * is not NULL; the caller then owns *errp.
 */
#ifndef MLOPS_ERR_H
#define MLOPS_ERR_H

#include <stdbool.h>

#include "util.h"

/** Where an error came from. */
typedef enum err_domain {
    ERR_D_GENERIC = 0,
    ERR_D_CONFIG,
    ERR_D_INPUT, /**< bad input: JSON, schema, validation */
    ERR_D_KAFKA,
    ERR_D_PG,
    ERR_D_REDIS,
    ERR_D_HTTP,
    ERR_D_IO,
} err_domain_t;

typedef struct err {
    err_domain_t domain;
    int code;       /**< domain-specific (rd_kafka_resp_err_t, SQLSTATE as int, ...) */
    bool retriable; /**< the same call may succeed later */
    bool fatal;     /**< the process must stop */
    char msg[512];  /**< human-readable, never contains a secret */
} err_t;

/** Create an error (caller frees with err_destroy()). */
err_t *err_new(err_domain_t domain, int code, bool retriable, bool fatal, const char *fmt, ...)
    MLOPS_PRINTF(5, 6);

/** Free an error; accepts NULL. */
void err_destroy(err_t *err);

/**
 * Set *errp to a new error if errp is not NULL (and *errp is NULL: the
 * first error wins). Always returns -1 so callers can `return err_set(...)`.
 */
int err_set(err_t **errp, err_domain_t domain, int code, bool retriable, bool fatal,
            const char *fmt, ...) MLOPS_PRINTF(6, 7);

/** Name of a domain ("kafka", "pg", ...). */
const char *err_domain_name(err_domain_t domain);

#endif
