/* common/redis against real Redis 7 servers: the stack's (round trips,
 * pipelining) and a private one this test starts, freezes (SIGSTOP), thaws,
 * kills and restarts, to prove the deadline and the breaker with a real
 * server stopped mid-test. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "redis.h"
#include "testutil.h"

static void setup(void) { log_init("test", LOG_LVL_ERROR); }
TestSuite(redis_real, .init = setup, .timeout = 60);

static redis_client_t *client(const char *url, int timeout_ms)
{
    char err[256];
    redis_opts_t o = {.url = url,
                      .timeout_ms = timeout_ms,
                      .breaker_failures = 3,
                      .breaker_cooldown_ms = 300,
                      .backoff_min_ms = 10,
                      .backoff_max_ms = 50};
    redis_client_t *rc = redis_client_new(&o, err, sizeof(err));
    cr_assert(rc, "%s", err);
    return rc;
}

Test(redis_real, stack_round_trip_and_pipeline)
{
    redis_client_t *rc = client(getenv("MLOPS_TEST_REDIS_URL") ? getenv("MLOPS_TEST_REDIS_URL")
                                                               : "redis://127.0.0.1:6380",
                                1000);
    char *key = test_unique("it:redis");
    err_t *e = NULL;
    redisReply *r = redis_command(rc, &e, "HSET %s a 1 b %s", key, "two words");
    cr_assert(r, "%s (is the stack up?)", e ? e->msg : "");
    cr_assert_eq(r->integer, 2);
    freeReplyObject(r);
    /* binary-safe argv with an embedded NUL */
    const char *argv[] = {"HSET", key, "bin", "a\0b"};
    size_t lens[] = {4, strlen(key), 3, 3};
    r = redis_command_argv(rc, &e, 4, argv, lens);
    cr_assert(r);
    freeReplyObject(r);
    const char *get[] = {"HGET", key, "bin"};
    const char *getb[] = {"HGET", key, "b"};
    redis_append_argv(rc, 3, get, NULL);
    redis_append_argv(rc, 3, getb, NULL);
    redisReply *rs[2];
    cr_assert_eq(redis_pipeline_exec(rc, rs, 2, &e), 0, "%s", e ? e->msg : "");
    cr_assert_eq(rs[0]->len, 3);
    cr_assert_eq(memcmp(rs[0]->str, "a\0b", 3), 0);
    cr_assert_str_eq(rs[1]->str, "two words");
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    /* an error reply is the call's error, not the connection's */
    r = redis_command(rc, &e, "INCR %s", key);
    cr_assert_null(r);
    cr_assert(strstr(e->msg, "WRONGTYPE"), "%s", e->msg);
    cr_assert_not(e->retriable);
    cr_assert_eq(redis_client_breaker(rc), REDIS_BREAKER_CLOSED);
    err_destroy(e);
    e = NULL;
    r = redis_command(rc, &e, "DEL %s", key);
    freeReplyObject(r);
    redis_client_destroy(rc);
    free(key);
}

static pid_t start_redis(int port, const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        /* The child must not touch Criterion (even a passing assertion is a
         * message to the runner) nor keep its IPC descriptors. */
        close_range(3, ~0U, 0);
        char p[16], logfile[256];
        snprintf(p, sizeof(p), "%d", port);
        snprintf(logfile, sizeof(logfile), "%s/redis.log", dir);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", dir, "--logfile", logfile, (char *)NULL);
        _exit(127);
    }
    cr_assert(pid > 0, "fork failed");
    /* wait until it answers */
    char url[64];
    snprintf(url, sizeof(url), "127.0.0.1:%d", port);
    redis_client_t *rc = client(url, 200);
    int64_t deadline = mono_ms() + 10000;
    bool up = false;
    while (!up && mono_ms() < deadline) {
        err_t *e = NULL;
        redisReply *r = redis_command(rc, &e, "PING");
        up = r != NULL;
        if (r)
            freeReplyObject(r);
        err_destroy(e);
        if (!up)
            usleep(50000);
    }
    redis_client_destroy(rc);
    cr_assert(up, "private redis-server on %d did not start", port);
    return pid;
}

static void stop_redis(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Call until the breaker opens; every call must respect the deadline. */
static void fail_until_open(redis_client_t *rc, int deadline_ms)
{
    int64_t until = mono_ms() + 5000;
    while (redis_client_breaker(rc) != REDIS_BREAKER_OPEN && mono_ms() < until) {
        err_t *e = NULL;
        int64_t t0 = mono_ms();
        redisReply *r = redis_command(rc, &e, "PING");
        int64_t dt = mono_ms() - t0;
        cr_assert_null(r, "a stopped server cannot answer");
        cr_assert(e && e->retriable);
        cr_assert_lt(dt, deadline_ms * 3 + 100, "call took %lld ms (deadline %d ms)", (long long)dt,
                     deadline_ms);
        err_destroy(e);
        usleep(20000);
    }
    cr_assert_eq(redis_client_breaker(rc), REDIS_BREAKER_OPEN);
}

static void recover(redis_client_t *rc)
{
    int64_t until = mono_ms() + 5000;
    redisReply *r = NULL;
    while (!r && mono_ms() < until) {
        err_t *e = NULL;
        r = redis_command(rc, &e, "PING");
        err_destroy(e);
        if (!r)
            usleep(50000);
    }
    cr_assert(r, "client did not recover once Redis was back");
    freeReplyObject(r);
    cr_assert_eq(redis_client_breaker(rc), REDIS_BREAKER_CLOSED);
}

Test(redis_real, server_frozen_killed_and_restarted_mid_test)
{
    char dir[] = "/tmp/mlops-redis-XXXXXX";
    cr_assert(mkdtemp(dir));
    int port = test_free_port();
    pid_t pid = start_redis(port, dir);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    const int deadline_ms = 100;
    redis_client_t *rc = client(url, deadline_ms);
    err_t *e = NULL;
    redisReply *r = redis_command(rc, &e, "SET k v");
    cr_assert(r);
    freeReplyObject(r);

    /* frozen: connections stay open, nothing answers: the deadline must hold */
    kill(pid, SIGSTOP);
    fail_until_open(rc, deadline_ms);
    kill(pid, SIGCONT);
    recover(rc);

    /* killed: connection refused; then restarted on the same port */
    stop_redis(pid);
    fail_until_open(rc, deadline_ms);
    pid = start_redis(port, dir);
    recover(rc);
    r = redis_command(rc, &e, "PING");
    cr_assert(r);
    freeReplyObject(r);

    redis_client_destroy(rc);
    stop_redis(pid);
    char *cmd = xasprintf("rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
}
