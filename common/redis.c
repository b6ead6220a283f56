#include "redis.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct redis_client {
    char host[256];
    int port;
    char *password;
    int db;
    redis_opts_t o;
    redisContext *ctx;
    redis_breaker_t breaker;
    int failures;            /* consecutive connection-level failures */
    int64_t opened_at_ms;    /* when the breaker last opened */
    int64_t next_connect_ms; /* backoff: no connect attempt before this */
    int backoff_ms;
    strbuf_t pipeline; /* formatted commands waiting for exec */
    size_t npipelined;
    metric_t *m_calls, *m_failures, *m_open, *m_rejected;
};

static int def(int v, int d) { return v > 0 ? v : d; }

static int parse_url(redis_client_t *rc, const char *url, char *errstr, size_t errstr_size)
{
    const char *p = url;
    if (str_starts_with(p, "redis://"))
        p += 8;
    else if (strstr(p, "://")) {
        snprintf(errstr, errstr_size,
                 "redis_url: only redis:// URLs are supported (no TLS "
                 "in hiredis 0.14)");
        return -1;
    }
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        rc->password = xstrndup(pw, (size_t)(at - pw));
        p = at + 1;
    }
    const char *colon = strrchr(p, ':');
    const char *slash = strchr(p, '/');
    size_t hostlen = colon ? (size_t)(colon - p) : (slash ? (size_t)(slash - p) : strlen(p));
    if (hostlen == 0 || hostlen >= sizeof(rc->host)) {
        snprintf(errstr, errstr_size, "redis_url: no host in '%s'", url);
        return -1;
    }
    memcpy(rc->host, p, hostlen);
    rc->host[hostlen] = '\0';
    rc->port = 6379;
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || (*end && *end != '/') || port <= 0 || port > 65535) {
            snprintf(errstr, errstr_size, "redis_url: bad port in '%s'", url);
            return -1;
        }
        rc->port = (int)port;
    }
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0) {
            snprintf(errstr, errstr_size, "redis_url: bad database number in '%s'", url);
            return -1;
        }
        rc->db = (int)db;
    }
    return 0;
}

redis_client_t *redis_client_new(const redis_opts_t *opts, char *errstr, size_t errstr_size)
{
    redis_client_t *rc = xcalloc(1, sizeof(*rc));
    rc->o = *opts;
    rc->o.timeout_ms = def(opts->timeout_ms, 50);
    rc->o.pipeline_us_per_command = def(opts->pipeline_us_per_command, 100);
    rc->o.connect_timeout_ms = def(opts->connect_timeout_ms, 200);
    rc->o.breaker_failures = def(opts->breaker_failures, 5);
    rc->o.breaker_cooldown_ms = def(opts->breaker_cooldown_ms, 2000);
    rc->o.backoff_min_ms = def(opts->backoff_min_ms, 50);
    rc->o.backoff_max_ms = def(opts->backoff_max_ms, 2000);
    rc->o.url = NULL; /* not kept: may hold a password */
    rc->o.metrics_labels = NULL;
    strbuf_init(&rc->pipeline);
    if (parse_url(rc, opts->url ? opts->url : "127.0.0.1:6380", errstr, errstr_size)) {
        redis_client_destroy(rc);
        return NULL;
    }
    if (rc->password)
        log_add_secret(rc->password);
    if (opts->metrics) {
        const char *l = opts->metrics_labels;
        rc->m_calls =
            metrics_counter(opts->metrics, "mlops_redis_calls_total", "Redis calls attempted.", l);
        rc->m_failures = metrics_counter(opts->metrics, "mlops_redis_failures_total",
                                         "Redis calls failed (connection, timeout).", l);
        rc->m_rejected = metrics_counter(opts->metrics, "mlops_redis_rejected_total",
                                         "Redis calls refused by the open breaker or backoff.", l);
        rc->m_open = metrics_gauge(opts->metrics, "mlops_redis_breaker_open",
                                   "1 while the Redis circuit breaker is open.", l);
    }
    return rc;
}

void redis_client_destroy(redis_client_t *rc)
{
    if (!rc)
        return;
    if (rc->ctx)
        redisFree(rc->ctx);
    strbuf_cleanup(&rc->pipeline);
    free(rc->password);
    free(rc);
}

static void set_breaker(redis_client_t *rc, redis_breaker_t b)
{
    if (rc->breaker != b &&
        (b == REDIS_BREAKER_OPEN || rc->breaker == REDIS_BREAKER_OPEN || b == REDIS_BREAKER_CLOSED))
        log_emit(b == REDIS_BREAKER_OPEN ? LOG_LVL_WARN : LOG_LVL_INFO,
                 LOG_FIELDS(LOG_STR("component", "redis"), LOG_INT("port", rc->port)),
                 "Redis circuit breaker %s",
                 b == REDIS_BREAKER_OPEN     ? "opened"
                 : b == REDIS_BREAKER_CLOSED ? "closed"
                                             : "half-open");
    rc->breaker = b;
    if (rc->m_open)
        metric_set(rc->m_open, b == REDIS_BREAKER_OPEN ? 1 : 0);
}

/* A connection-level failure: drop the context, back off, maybe open. */
static void on_failure(redis_client_t *rc)
{
    if (rc->ctx) {
        redisFree(rc->ctx);
        rc->ctx = NULL;
    }
    if (rc->m_failures)
        metric_inc(rc->m_failures);
    rc->failures++;
    int64_t now = mono_ms();
    rc->backoff_ms = rc->backoff_ms ? rc->backoff_ms * 2 : rc->o.backoff_min_ms;
    if (rc->backoff_ms > rc->o.backoff_max_ms)
        rc->backoff_ms = rc->o.backoff_max_ms;
    rc->next_connect_ms = now + rc->backoff_ms;
    if (rc->breaker == REDIS_BREAKER_HALF_OPEN || rc->failures >= rc->o.breaker_failures) {
        rc->opened_at_ms = now;
        set_breaker(rc, REDIS_BREAKER_OPEN);
    }
}

static void on_success(redis_client_t *rc)
{
    rc->failures = 0;
    rc->backoff_ms = 0;
    if (rc->breaker != REDIS_BREAKER_CLOSED)
        set_breaker(rc, REDIS_BREAKER_CLOSED);
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* Make sure there is a usable context, or say why not. */
static int ensure_connected(redis_client_t *rc, err_t **errp)
{
    int64_t now = mono_ms();
    if (rc->breaker == REDIS_BREAKER_OPEN) {
        if (now - rc->opened_at_ms < rc->o.breaker_cooldown_ms) {
            if (rc->m_rejected)
                metric_inc(rc->m_rejected);
            return err_set(errp, ERR_D_REDIS, 0, true, false,
                           "Redis circuit breaker is open after %d failures", rc->failures);
        }
        set_breaker(rc, REDIS_BREAKER_HALF_OPEN);
    }
    if (rc->ctx)
        return 0;
    if (now < rc->next_connect_ms && rc->breaker != REDIS_BREAKER_HALF_OPEN) {
        if (rc->m_rejected)
            metric_inc(rc->m_rejected);
        return err_set(errp, ERR_D_REDIS, 0, true, false,
                       "Redis unavailable (next reconnect in %lld ms)",
                       (long long)(rc->next_connect_ms - now));
    }
    rc->ctx = redisConnectWithTimeout(rc->host, rc->port, ms_tv(rc->o.connect_timeout_ms));
    if (!rc->ctx || rc->ctx->err) {
        char why[160];
        str_copy(why, rc->ctx ? rc->ctx->errstr : "out of memory", sizeof(why));
        on_failure(rc);
        return err_set(errp, ERR_D_REDIS, 0, true, false, "cannot connect to Redis at %s:%d: %s",
                       rc->host, rc->port, why);
    }
    if (redisSetTimeout(rc->ctx, ms_tv(rc->o.timeout_ms)) != REDIS_OK) {
        on_failure(rc);
        return err_set(errp, ERR_D_REDIS, 0, true, false, "cannot set the Redis timeout");
    }
    redisReply *r = NULL;
    if (rc->password) {
        r = redisCommand(rc->ctx, "AUTH %s", rc->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            bool denied = r != NULL;
            if (r)
                freeReplyObject(r);
            on_failure(rc);
            return err_set(errp, ERR_D_REDIS, 0, !denied, false, "Redis AUTH %s",
                           denied ? "was refused (wrong password?)" : "failed");
        }
        freeReplyObject(r);
    }
    if (rc->db) {
        r = redisCommand(rc->ctx, "SELECT %d", rc->db);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            on_failure(rc);
            return err_set(errp, ERR_D_REDIS, 0, false, false, "Redis SELECT %d failed", rc->db);
        }
    }
    return 0;
}

static const char *ctx_error(const redisContext *ctx)
{
    if (ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        return "deadline exceeded";
    return ctx->errstr[0] ? ctx->errstr : "I/O error";
}

/* Check a reply got from the context; NULL reply = connection failure. */
static redisReply *finish_call(redis_client_t *rc, redisReply *r, err_t **errp)
{
    if (!r) {
        char why[160];
        str_copy(why, rc->ctx ? ctx_error(rc->ctx) : "no connection", sizeof(why));
        on_failure(rc);
        err_set(errp, ERR_D_REDIS, 0, true, false, "Redis call failed: %s", why);
        return NULL;
    }
    on_success(rc);
    if (r->type == REDIS_REPLY_ERROR) {
        err_set(errp, ERR_D_REDIS, 1, false, false, "Redis error reply: %.*s", (int)r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *redis_command(redis_client_t *rc, err_t **errp, const char *fmt, ...)
{
    if (rc->m_calls)
        metric_inc(rc->m_calls);
    if (ensure_connected(rc, errp))
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc->ctx, fmt, ap);
    va_end(ap);
    return finish_call(rc, r, errp);
}

redisReply *redis_command_argv(redis_client_t *rc, err_t **errp, int argc, const char **argv,
                               const size_t *argvlen)
{
    if (rc->m_calls)
        metric_inc(rc->m_calls);
    if (ensure_connected(rc, errp))
        return NULL;
    redisReply *r = redisCommandArgv(rc->ctx, argc, argv, argvlen);
    return finish_call(rc, r, errp);
}

/* "<c><n>\r\n" without printf (hiredis' redisFormatCommandArgv calls
 * sprintf for every argument, which dominated a pipeline's cost). */
static void put_len(strbuf_t *sb, char c, size_t n)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    strbuf_reserve(sb, k + 3);
    sb->data[sb->len++] = c;
    while (k)
        sb->data[sb->len++] = tmp[--k];
    sb->data[sb->len++] = '\r';
    sb->data[sb->len++] = '\n';
    sb->data[sb->len] = '\0';
}

void redis_format_argv(strbuf_t *sb, int argc, const char **argv, const size_t *argvlen)
{
    put_len(sb, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        put_len(sb, '$', n);
        strbuf_append(sb, argv[i], n);
        strbuf_append(sb, "\r\n", 2);
    }
}

void redis_append_argv(redis_client_t *rc, int argc, const char **argv, const size_t *argvlen)
{
    redis_format_argv(&rc->pipeline, argc, argv, argvlen);
    rc->npipelined++;
}

int redis_pipeline_exec(redis_client_t *rc, redisReply **replies, size_t n, err_t **errp)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    size_t queued = rc->npipelined;
    rc->npipelined = 0;
    if (n != queued) {
        strbuf_reset(&rc->pipeline);
        return err_set(errp, ERR_D_REDIS, 0, false, false,
                       "pipeline: %zu commands queued, %zu replies asked for", queued, n);
    }
    if (rc->m_calls)
        metric_add(rc->m_calls, (double)n);
    if (n == 0)
        return 0;
    int64_t deadline =
        mono_ms() + rc->o.timeout_ms + (int64_t)n * rc->o.pipeline_us_per_command / 1000;
    if (ensure_connected(rc, errp)) {
        strbuf_reset(&rc->pipeline);
        return -1;
    }
    int rcode = redisAppendFormattedCommand(rc->ctx, rc->pipeline.data, rc->pipeline.len);
    strbuf_reset(&rc->pipeline);
    const char *why = NULL;
    if (rcode != REDIS_OK)
        why = "cannot queue the pipeline";
    for (size_t i = 0; !why && i < n; i++) {
        void *r = NULL;
        if (redisGetReply(rc->ctx, &r) != REDIS_OK || !r)
            why = ctx_error(rc->ctx);
        else
            replies[i] = r;
        if (!why && i + 1 < n && mono_ms() > deadline)
            why = "deadline exceeded";
    }
    if (why) {
        char msg[160];
        str_copy(msg, why, sizeof(msg));
        for (size_t i = 0; i < n; i++) {
            if (replies[i])
                freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        on_failure(rc); /* the connection may hold unread replies: drop it */
        return err_set(errp, ERR_D_REDIS, 0, true, false, "Redis pipeline failed: %s", msg);
    }
    on_success(rc);
    return 0;
}

redis_breaker_t redis_client_breaker(const redis_client_t *rc) { return rc->breaker; }
bool redis_client_connected(const redis_client_t *rc) { return rc->ctx != NULL; }
