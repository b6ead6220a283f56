/* lifecycle.c: drain on the first SIGTERM, bounded drain, exit codes,
 * reload on SIGHUP, and the watchdog. Each Test runs in its own process
 * (Criterion forks), so signals stay inside it. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "lifecycle.h"
#include "log.h"
#include "testutil.h"

static int drains, reloads;

static void drain_now(lifecycle_t *lc, void *opaque)
{
    drains++;
    lifecycle_drained(lc);
}

static void drain_never(lifecycle_t *lc, void *opaque) { drains++; }
static void on_reload(lifecycle_t *lc, void *opaque) { reloads++; }

static void raise_later(evutil_socket_t fd, short what, void *arg) { raise((int)(intptr_t)arg); }

static void schedule_signal(struct event_base *base, int sig, int ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_once(base, -1, EV_TIMEOUT, raise_later, (void *)(intptr_t)sig, &tv);
}

Test(lifecycle, sigterm_drains_and_exits_zero)
{
    struct event_base *base = event_base_new();
    lifecycle_t *lc = lifecycle_new(base, 5000, drain_now, on_reload, NULL);
    lifecycle_set_ready(lc, true);
    cr_assert_eq(lifecycle_state(lc), LC_READY);
    schedule_signal(base, SIGHUP, 10);
    schedule_signal(base, SIGTERM, 30);
    event_base_dispatch(base);
    cr_assert_eq(drains, 1);
    cr_assert_eq(reloads, 1);
    cr_assert_eq(lifecycle_state(lc), LC_STOPPED);
    cr_assert_eq(lifecycle_exit_code(lc), MLOPS_EXIT_OK);
    lifecycle_destroy(lc);
    event_base_free(base);
}

Test(lifecycle, drain_that_never_finishes_is_bounded)
{
    struct event_base *base = event_base_new();
    lifecycle_t *lc = lifecycle_new(base, 200, drain_never, NULL, NULL);
    schedule_signal(base, SIGTERM, 10);
    int64_t t0 = mono_ms();
    event_base_dispatch(base);
    int64_t dt = mono_ms() - t0;
    cr_assert_eq(lifecycle_exit_code(lc), MLOPS_EXIT_DRAIN_TIMEOUT);
    cr_assert(dt >= 200 && dt < 3000, "drain took %lld ms", (long long)dt);
    lifecycle_destroy(lc);
    event_base_free(base);
}

Test(lifecycle, second_sigterm_exits_at_once, .exit_code = MLOPS_EXIT_FORCED)
{
    struct event_base *base = event_base_new();
    lifecycle_t *lc = lifecycle_new(base, 60000, drain_never, NULL, NULL);
    schedule_signal(base, SIGTERM, 10);
    schedule_signal(base, SIGTERM, 50);
    event_base_dispatch(base);
    cr_assert_fail("the second SIGTERM should have exited the process");
    lifecycle_destroy(lc);
}

Test(lifecycle, fail_keeps_its_exit_code_through_the_drain)
{
    struct event_base *base = event_base_new();
    lifecycle_t *lc = lifecycle_new(base, 5000, drain_now, NULL, NULL);
    test_logs_capture();
    lifecycle_fail(lc, MLOPS_EXIT_FAILURE, "broker said %s", "no");
    event_base_dispatch(base);
    cr_assert_eq(lifecycle_exit_code(lc), MLOPS_EXIT_FAILURE);
    cr_assert(strstr(test_logs(), "\"level\":\"fatal\"") && strstr(test_logs(), "broker said no"),
              "%s", test_logs());
    test_logs_release();
    lifecycle_destroy(lc);
    event_base_free(base);
}

Test(lifecycle, watchdog_quiet_while_work_finishes)
{
    watchdog_t *wd = watchdog_new(100, "test work");
    for (int i = 0; i < 20; i++) {
        watchdog_begin(wd);
        usleep(5000);
        watchdog_end(wd);
    }
    usleep(300 * 1000); /* idle longer than the limit: not stuck */
    watchdog_destroy(wd);
}

Test(lifecycle, watchdog_exits_when_work_is_stuck, .exit_code = MLOPS_EXIT_STUCK)
{
    watchdog_t *wd = watchdog_new(100, "stuck handler");
    watchdog_begin(wd);
    sleep(5);
    cr_assert_fail("watchdog did not fire");
}
