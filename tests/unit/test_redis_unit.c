/* redis.c without a Redis server: URL parsing, deadlines against a listener
 * that never answers, backoff and the circuit breaker against a refused
 * port, and recovery against a tiny fake server that answers PING. The real
 * server (and one stopped mid-test) is in tests/integration. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "redis.h"
#include "testutil.h"

static void setup(void) { log_init("test", LOG_LVL_ERROR); }
TestSuite(redis_unit, .init = setup);

Test(redis_unit, bad_urls_refused)
{
    char err[256];
    redis_opts_t o = {.url = "rediss://127.0.0.1:6380"};
    cr_assert_null(redis_client_new(&o, err, sizeof(err)));
    cr_assert(strstr(err, "only redis://"), "%s", err);
    o.url = "redis://127.0.0.1:99999";
    cr_assert_null(redis_client_new(&o, err, sizeof(err)));
    cr_assert(strstr(err, "bad port"), "%s", err);
    o.url = "redis://:pw@127.0.0.1:6380/x";
    cr_assert_null(redis_client_new(&o, err, sizeof(err)));
    cr_assert(strstr(err, "bad database"), "%s", err);
    o.url = "redis://:pw@127.0.0.1:6380/2";
    redis_client_t *rc = redis_client_new(&o, err, sizeof(err));
    cr_assert(rc, "%s", err);
    cr_assert_not(redis_client_connected(rc), "no connection before the first call");
    redis_client_destroy(rc);
}

Test(redis_unit, deadline_honoured_when_redis_never_answers)
{
    int port;
    int lfd = test_listen_silent(&port); /* accepts (kernel backlog), never replies */
    char url[64], err[256];
    snprintf(url, sizeof(url), "127.0.0.1:%d", port);
    redis_opts_t o = {.url = url, .timeout_ms = 100};
    redis_client_t *rc = redis_client_new(&o, err, sizeof(err));
    cr_assert(rc);
    err_t *e = NULL;
    int64_t t0 = mono_ms();
    redisReply *r = redis_command(rc, &e, "PING");
    int64_t dt = mono_ms() - t0;
    cr_assert_null(r);
    cr_assert(e && e->retriable, "a timeout is retriable");
    cr_assert(strstr(e->msg, "deadline exceeded"), "%s", e->msg);
    cr_assert(dt >= 90 && dt < 1000, "call took %lld ms with a 100 ms deadline", (long long)dt);
    err_destroy(e);
    redis_client_destroy(rc);
    close(lfd);
}

Test(redis_unit, pipeline_deadline_honoured)
{
    int port;
    int lfd = test_listen_silent(&port);
    char url[64], err[256];
    snprintf(url, sizeof(url), "127.0.0.1:%d", port);
    redis_opts_t o = {.url = url, .timeout_ms = 80};
    redis_client_t *rc = redis_client_new(&o, err, sizeof(err));
    const char *argv[] = {"HGETALL", "k"};
    for (int i = 0; i < 10; i++)
        redis_append_argv(rc, 2, argv, NULL);
    redisReply *replies[10];
    err_t *e = NULL;
    int64_t t0 = mono_ms();
    cr_assert_eq(redis_pipeline_exec(rc, replies, 10, &e), -1);
    int64_t dt = mono_ms() - t0;
    cr_assert(dt < 1000, "pipeline took %lld ms", (long long)dt);
    for (int i = 0; i < 10; i++)
        cr_assert_null(replies[i]);
    err_destroy(e);
    redis_client_destroy(rc);
    close(lfd);
}

Test(redis_unit, breaker_opens_after_failures_and_fails_fast)
{
    char url[64], err[256];
    snprintf(url, sizeof(url), "127.0.0.1:%d", test_free_port());
    metrics_t *reg = metrics_new();
    redis_opts_t o = {.url = url,
                      .breaker_failures = 3,
                      .breaker_cooldown_ms = 300,
                      .backoff_min_ms = 1,
                      .backoff_max_ms = 2,
                      .metrics = reg};
    redis_client_t *rc = redis_client_new(&o, err, sizeof(err));
    err_t *e = NULL;
    int64_t deadline = mono_ms() + 2000;
    while (redis_client_breaker(rc) != REDIS_BREAKER_OPEN && mono_ms() < deadline) {
        cr_assert_null(redis_command(rc, &e, "PING"));
        err_destroy(e);
        e = NULL;
        usleep(3000);
    }
    cr_assert_eq(redis_client_breaker(rc), REDIS_BREAKER_OPEN);
    /* while open: no network I/O, an immediate retriable error */
    int64_t t0 = mono_us();
    int rejected = 0, nulls = 0;
    for (int i = 0; i < 1000; i++) {
        nulls += redis_command(rc, &e, "PING") == NULL;
        rejected += e && e->retriable && strstr(e->msg, "circuit breaker is open") != NULL;
        err_destroy(e);
        e = NULL;
    }
    int64_t dt = mono_us() - t0; /* measured before any assertion: Criterion's are slow */
    cr_assert_eq(nulls, 1000);
    cr_assert_eq(rejected, 1000, "every call while open is refused by the breaker");
    cr_assert_lt(dt, 100000, "1000 rejected calls took %lld us", (long long)dt);
    /* after the cooldown one trial goes through, fails, and re-opens it */
    usleep(350 * 1000);
    cr_assert_null(redis_command(rc, &e, "PING"));
    cr_assert(strstr(e->msg, "cannot connect"), "trial call really connects: %s", e->msg);
    err_destroy(e);
    cr_assert_eq(redis_client_breaker(rc), REDIS_BREAKER_OPEN);
    strbuf_t sb;
    strbuf_init(&sb);
    metrics_render(reg, &sb);
    cr_assert(strstr(sb.data, "mlops_redis_breaker_open 1"), "%s", sb.data);
    strbuf_cleanup(&sb);
    redis_client_destroy(rc);
    metrics_destroy(reg);
}

/* A fake Redis answering +PONG per command, or nothing when muted. */
static atomic_bool fake_stop, fake_muted;
static int fake_fd;

static void *fake_main(void *arg)
{
    while (!atomic_load(&fake_stop)) {
        int c = accept(fake_fd, NULL, NULL);
        if (c < 0)
            continue;
        struct timeval tv = {0, 50000};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[4096];
        while (!atomic_load(&fake_stop)) {
            ssize_t n = read(c, buf, sizeof(buf));
            if (n == 0)
                break;
            if (n < 0)
                continue;
            if (atomic_load(&fake_muted))
                continue;
            /* one write for all replies: separate small writes would meet
             * Nagle plus delayed ACK and arrive 40 ms apart */
            char out[4096 * 7];
            size_t olen = 0;
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] == '*' && (i == 0 || buf[i - 1] == '\n')) {
                    memcpy(out + olen, "+PONG\r\n", 7);
                    olen += 7;
                }
            if (olen)
                (void)!write(c, out, olen);
        }
        close(c);
    }
    return NULL;
}

Test(redis_unit, recovers_and_closes_breaker_when_redis_answers_again)
{
    int port;
    fake_fd = test_listen_silent(&port);
    struct timeval tv = {0, 100000};
    setsockopt(fake_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    atomic_store(&fake_muted, true);
    pthread_t t;
    pthread_create(&t, NULL, fake_main, NULL);
    char url[64], err[256];
    snprintf(url, sizeof(url), "127.0.0.1:%d", port);
    redis_opts_t o = {.url = url,
                      .timeout_ms = 30,
                      .breaker_failures = 2,
                      .breaker_cooldown_ms = 100,
                      .backoff_min_ms = 1,
                      .backoff_max_ms = 1};
    redis_client_t *rc = redis_client_new(&o, err, sizeof(err));
    err_t *e = NULL;
    for (int i = 0; i < 2; i++) {
        cr_assert_null(redis_command(rc, &e, "PING"));
        err_destroy(e);
        e = NULL;
        usleep(2000);
    }
    cr_assert_eq(redis_client_breaker(rc), REDIS_BREAKER_OPEN);
    atomic_store(&fake_muted, false);
    usleep(150 * 1000);
    redisReply *r = redis_command(rc, &e, "PING");
    cr_assert(r, "%s", e ? e->msg : "");
    cr_assert_eq(r->type, REDIS_REPLY_STATUS);
    cr_assert_str_eq(r->str, "PONG");
    freeReplyObject(r);
    cr_assert_eq(redis_client_breaker(rc), REDIS_BREAKER_CLOSED);
    /* a pipeline of 5 in one round trip */
    const char *argv[] = {"PING"};
    for (int i = 0; i < 5; i++)
        redis_append_argv(rc, 1, argv, NULL);
    redisReply *rs[5];
    cr_assert_eq(redis_pipeline_exec(rc, rs, 5, &e), 0, "%s", e ? e->msg : "");
    for (int i = 0; i < 5; i++) {
        cr_assert_str_eq(rs[i]->str, "PONG");
        freeReplyObject(rs[i]);
    }
    redis_client_destroy(rc);
    atomic_store(&fake_stop, true);
    pthread_join(t, NULL);
    close(fake_fd);
}

/* Our RESP formatter makes the same bytes as hiredis' own (the oracle), for
 * empty, binary and long arguments. */
Test(redis_unit, format_argv_matches_hiredis)
{
    char big[70000];
    memset(big, 'v', sizeof(big));
    const char *argv[] = {"SET", "k\r\n\0x", "", big, "PX", "86400000"};
    size_t lens[] = {3, 6, 0, sizeof(big), 2, 8};
    for (int argc = 1; argc <= 6; argc++) {
        char *want = NULL;
        int wlen = redisFormatCommandArgv(&want, argc, argv, lens);
        cr_assert_gt(wlen, 0);
        strbuf_t sb;
        strbuf_init(&sb);
        strbuf_append(&sb, "x", 1); /* appends after what is there */
        redis_format_argv(&sb, argc, argv, lens);
        cr_assert_eq(sb.len, (size_t)wlen + 1);
        cr_assert(!memcmp(sb.data + 1, want, (size_t)wlen), "argc %d differs", argc);
        free(want);
        strbuf_cleanup(&sb);
    }
    const char *plain[] = {"GET", "key"};
    char *want = NULL;
    int wlen = redisFormatCommandArgv(&want, 2, plain, NULL);
    strbuf_t sb;
    strbuf_init(&sb);
    redis_format_argv(&sb, 2, plain, NULL);
    cr_assert_eq(sb.len, (size_t)wlen);
    cr_assert(!memcmp(sb.data, want, (size_t)wlen));
    free(want);
    strbuf_cleanup(&sb);
}
