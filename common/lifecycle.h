/**
 * @file lifecycle.h
 * @brief Process life cycle: signals as libevent events, two-stage drain,
 *        exit codes, and a watchdog for stuck processing.
 *
 * The first SIGTERM (or SIGINT) starts draining: the state becomes
 * LC_DRAINING (/health says so, /ready fails), the service's drain callback
 * stops taking input, finishes in-flight work, commits and flushes, then
 * calls lifecycle_drained(), which ends the loop. A timer bounds the drain;
 * if it fires, the loop ends with MLOPS_EXIT_DRAIN_TIMEOUT. A second
 * SIGTERM exits at once with MLOPS_EXIT_FORCED. SIGHUP calls the reload
 * callback. SIGPIPE is ignored. libevent's own log lines go to log.c.
 */
#ifndef MLOPS_LIFECYCLE_H
#define MLOPS_LIFECYCLE_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct event_base;

/** Exit codes every service and tool uses. */
enum mlops_exit {
    MLOPS_EXIT_OK = 0,
    MLOPS_EXIT_FAILURE = 1,       /**< runtime failure (fatal Kafka error, ...) */
    MLOPS_EXIT_USAGE = 2,         /**< bad command line or configuration */
    MLOPS_EXIT_DRAIN_TIMEOUT = 3, /**< drain did not finish in time */
    MLOPS_EXIT_FORCED = 4,        /**< second termination signal */
    MLOPS_EXIT_STUCK = 5,         /**< the watchdog found processing stuck */
};

typedef enum lc_state {
    LC_STARTING = 0,
    LC_READY,
    LC_DRAINING,
    LC_STOPPED,
} lc_state_t;

typedef struct lifecycle lifecycle_t;

/** Start draining; call lifecycle_drained() when done (now or later). */
typedef void(lc_drain_cb)(lifecycle_t *lc, void *opaque);
/** SIGHUP: reload what is reloadable. */
typedef void(lc_reload_cb)(lifecycle_t *lc, void *opaque);

/**
 * Install the signal events on @p base. @p drain_timeout_ms bounds the
 * drain. Callbacks may be NULL (no drain work: the loop ends at once).
 */
lifecycle_t *lifecycle_new(struct event_base *base, int drain_timeout_ms, lc_drain_cb *on_drain,
                           lc_reload_cb *on_reload, void *opaque);
void lifecycle_destroy(lifecycle_t *lc);

void lifecycle_set_ready(lifecycle_t *lc, bool ready);
lc_state_t lifecycle_state(const lifecycle_t *lc);
const char *lifecycle_state_name(lc_state_t st);

/** Begin draining as if SIGTERM arrived (no-op if already draining). */
void lifecycle_shutdown(lifecycle_t *lc);
/**
 * A fatal condition: log it, remember @p exit_code and begin draining so
 * that what can be flushed is flushed.
 */
void lifecycle_fail(lifecycle_t *lc, int exit_code, const char *fmt, ...) MLOPS_PRINTF(3, 4);
/** Draining is complete: end the loop. */
void lifecycle_drained(lifecycle_t *lc);
/** The exit code the process should return. */
int lifecycle_exit_code(const lifecycle_t *lc);

/* ---- watchdog -------------------------------------------------------------- */

/**
 * librdkafka 2.0.2 resets max.poll.interval.ms whenever any queue is
 * polled (#4176), so it cannot catch a stuck message handler. The watchdog
 * can: a thread checks that no piece of work bracketed by watchdog_begin()
 * and watchdog_end() runs longer than @p limit_ms; if one does, it logs a
 * fatal line naming @p what and exits with MLOPS_EXIT_STUCK so the
 * supervisor restarts the service (uncommitted input is re-read).
 */
typedef struct watchdog watchdog_t;

watchdog_t *watchdog_new(int64_t limit_ms, const char *what);
void watchdog_begin(watchdog_t *wd);
void watchdog_end(watchdog_t *wd);
void watchdog_destroy(watchdog_t *wd);

#endif
