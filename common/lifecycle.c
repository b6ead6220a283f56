#include "lifecycle.h"

#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct lifecycle {
    struct event_base *base;
    struct event *ev_term, *ev_int, *ev_hup, *ev_timeout;
    int drain_timeout_ms;
    lc_drain_cb *on_drain;
    lc_reload_cb *on_reload;
    void *opaque;
    lc_state_t state;
    int exit_code;
    int signals;
};

static void libevent_log_cb(int severity, const char *msg)
{
    log_level_t lvl = severity == EVENT_LOG_DEBUG  ? LOG_LVL_DEBUG
                      : severity == EVENT_LOG_MSG  ? LOG_LVL_INFO
                      : severity == EVENT_LOG_WARN ? LOG_LVL_WARN
                                                   : LOG_LVL_ERROR;
    log_emit(lvl, LOG_FIELDS(LOG_STR("component", "libevent")), "%s", msg);
}

static void begin_drain(lifecycle_t *lc, const char *why)
{
    if (lc->state == LC_DRAINING || lc->state == LC_STOPPED)
        return;
    lc->state = LC_DRAINING;
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_INT("timeout_ms", lc->drain_timeout_ms)), "draining (%s)",
             why);
    struct timeval tv = {lc->drain_timeout_ms / 1000, (lc->drain_timeout_ms % 1000) * 1000};
    evtimer_add(lc->ev_timeout, &tv);
    if (lc->on_drain)
        lc->on_drain(lc, lc->opaque);
    else
        lifecycle_drained(lc);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    lifecycle_t *lc = arg;
    if (++lc->signals >= 2) {
        log_emit(LOG_LVL_WARN, LOG_FIELDS(LOG_INT("signal", sig)),
                 "second termination signal: exiting now");
        _exit(MLOPS_EXIT_FORCED);
    }
    begin_drain(lc, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    lifecycle_t *lc = arg;
    log_info("SIGHUP: reloading");
    if (lc->on_reload)
        lc->on_reload(lc, lc->opaque);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    lifecycle_t *lc = arg;
    log_error("drain did not finish within %d ms: exiting", lc->drain_timeout_ms);
    if (lc->exit_code == MLOPS_EXIT_OK)
        lc->exit_code = MLOPS_EXIT_DRAIN_TIMEOUT;
    lc->state = LC_STOPPED;
    event_base_loopbreak(lc->base);
}

lifecycle_t *lifecycle_new(struct event_base *base, int drain_timeout_ms, lc_drain_cb *on_drain,
                           lc_reload_cb *on_reload, void *opaque)
{
    event_set_log_callback(libevent_log_cb);
    signal(SIGPIPE, SIG_IGN);
    lifecycle_t *lc = xcalloc(1, sizeof(*lc));
    lc->base = base;
    lc->drain_timeout_ms = drain_timeout_ms > 0 ? drain_timeout_ms : 30000;
    lc->on_drain = on_drain;
    lc->on_reload = on_reload;
    lc->opaque = opaque;
    lc->ev_term = evsignal_new(base, SIGTERM, on_term, lc);
    lc->ev_int = evsignal_new(base, SIGINT, on_term, lc);
    lc->ev_hup = evsignal_new(base, SIGHUP, on_hup, lc);
    lc->ev_timeout = evtimer_new(base, on_timeout, lc);
    if (!lc->ev_term || !lc->ev_int || !lc->ev_hup || !lc->ev_timeout ||
        evsignal_add(lc->ev_term, NULL) || evsignal_add(lc->ev_int, NULL) ||
        evsignal_add(lc->ev_hup, NULL)) {
        log_fatal("cannot install signal handlers");
        abort(); /* start-up only: nothing can run without them */
    }
    return lc;
}

void lifecycle_destroy(lifecycle_t *lc)
{
    if (!lc)
        return;
    event_free(lc->ev_term);
    event_free(lc->ev_int);
    event_free(lc->ev_hup);
    event_free(lc->ev_timeout);
    free(lc);
}

void lifecycle_set_ready(lifecycle_t *lc, bool ready)
{
    if (lc->state == LC_STARTING || lc->state == LC_READY)
        lc->state = ready ? LC_READY : LC_STARTING;
}

lc_state_t lifecycle_state(const lifecycle_t *lc) { return lc->state; }

const char *lifecycle_state_name(lc_state_t st)
{
    switch (st) {
    case LC_STARTING: return "starting";
    case LC_READY: return "ready";
    case LC_DRAINING: return "draining";
    case LC_STOPPED: return "stopped";
    }
    return "unknown";
}

void lifecycle_shutdown(lifecycle_t *lc) { begin_drain(lc, "requested"); }

void lifecycle_fail(lifecycle_t *lc, int exit_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    log_emit(LOG_LVL_FATAL, LOG_FIELDS(LOG_INT("exit_code", exit_code)), "%s", msg);
    free(msg);
    if (lc->exit_code == MLOPS_EXIT_OK)
        lc->exit_code = exit_code;
    begin_drain(lc, "fatal error");
}

void lifecycle_drained(lifecycle_t *lc)
{
    if (lc->state == LC_STOPPED)
        return;
    lc->state = LC_STOPPED;
    evtimer_del(lc->ev_timeout);
    event_base_loopexit(lc->base, NULL);
}

int lifecycle_exit_code(const lifecycle_t *lc) { return lc->exit_code; }

/* ---- watchdog ----------------------------------------------------------------- */

struct watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    int64_t limit_ms;
    _Atomic int64_t started_ms; /* 0 = idle */
    char what[64];
};

static void *watchdog_main(void *arg)
{
    watchdog_t *wd = arg;
    int64_t step = wd->limit_ms / 4 > 10 ? wd->limit_ms / 4 : 10;
    pthread_mutex_lock(&wd->lock);
    while (!wd->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += step / 1000;
        ts.tv_nsec += (step % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&wd->cond, &wd->lock, &ts);
        int64_t start = atomic_load(&wd->started_ms);
        if (!wd->stop && start && mono_ms() - start > wd->limit_ms) {
            log_emit(LOG_LVL_FATAL,
                     LOG_FIELDS(LOG_STR("work", wd->what), LOG_INT("limit_ms", wd->limit_ms),
                                LOG_INT("elapsed_ms", mono_ms() - start)),
                     "watchdog: %s is stuck; exiting so the supervisor restarts us", wd->what);
            _exit(MLOPS_EXIT_STUCK);
        }
    }
    pthread_mutex_unlock(&wd->lock);
    return NULL;
}

watchdog_t *watchdog_new(int64_t limit_ms, const char *what)
{
    watchdog_t *wd = xcalloc(1, sizeof(*wd));
    wd->limit_ms = limit_ms;
    str_copy(wd->what, what, sizeof(wd->what));
    pthread_mutex_init(&wd->lock, NULL);
    pthread_cond_init(&wd->cond, NULL);
    if (pthread_create(&wd->thread, NULL, watchdog_main, wd)) {
        log_fatal("cannot start the watchdog thread");
        abort();
    }
    return wd;
}

void watchdog_begin(watchdog_t *wd)
{
    int64_t now = mono_ms();
    atomic_store(&wd->started_ms, now ? now : 1);
}

void watchdog_end(watchdog_t *wd) { atomic_store(&wd->started_ms, 0); }

void watchdog_destroy(watchdog_t *wd)
{
    if (!wd)
        return;
    pthread_mutex_lock(&wd->lock);
    wd->stop = true;
    pthread_cond_signal(&wd->cond);
    pthread_mutex_unlock(&wd->lock);
    pthread_join(wd->thread, NULL);
    pthread_mutex_destroy(&wd->lock);
    pthread_cond_destroy(&wd->cond);
    free(wd);
}
