#include "log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOG_LINE_MAX (16 * 1024) /* longer messages are cut and marked */
#define LOG_SECRETS_MAX 32

static struct {
    char service[64];
    atomic_int level;
    atomic_int fd;
    pthread_mutex_t lock; /* guards sink and secrets */
    log_sink_cb *sink;
    void *sink_opaque;
    char *secrets[LOG_SECRETS_MAX];
    size_t nsecrets;
} g_log = {
    .service = "mlops",
    .level = LOG_LVL_INFO,
    .fd = 2,
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

static const char *level_names[] = {"debug", "info", "warn", "error", "fatal"};

void log_init(const char *service, log_level_t level)
{
    str_copy(g_log.service, service, sizeof(g_log.service));
    atomic_store(&g_log.level, (int)level);
}

void log_set_level(log_level_t level) { atomic_store(&g_log.level, (int)level); }
log_level_t log_get_level(void) { return (log_level_t)atomic_load(&g_log.level); }
void log_set_fd(int fd) { atomic_store(&g_log.fd, fd); }

void log_set_sink(log_sink_cb *cb, void *opaque)
{
    pthread_mutex_lock(&g_log.lock);
    g_log.sink = cb;
    g_log.sink_opaque = opaque;
    pthread_mutex_unlock(&g_log.lock);
}

void log_add_secret(const char *value)
{
    if (!value || strlen(value) < 4)
        return;
    pthread_mutex_lock(&g_log.lock);
    bool known = false;
    for (size_t i = 0; i < g_log.nsecrets; i++)
        known |= !strcmp(g_log.secrets[i], value);
    if (!known && g_log.nsecrets < LOG_SECRETS_MAX)
        g_log.secrets[g_log.nsecrets++] = xstrdup(value);
    pthread_mutex_unlock(&g_log.lock);
}

void log_clear_secrets(void)
{
    pthread_mutex_lock(&g_log.lock);
    for (size_t i = 0; i < g_log.nsecrets; i++)
        free(g_log.secrets[i]);
    g_log.nsecrets = 0;
    pthread_mutex_unlock(&g_log.lock);
}

int log_level_parse(const char *s, log_level_t *out)
{
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(level_names); i++) {
        if (!strcasecmp(s, level_names[i])) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    if (!strcasecmp(s, "warning")) {
        *out = LOG_LVL_WARN;
        return 0;
    }
    return -1;
}

const char *log_level_name(log_level_t level)
{
    if ((unsigned)level < MLOPS_ARRAY_LEN(level_names))
        return level_names[level];
    return "unknown";
}

log_level_t log_level_from_syslog(int syslog_level)
{
    if (syslog_level <= 2)
        return LOG_LVL_FATAL;
    if (syslog_level == 3)
        return LOG_LVL_ERROR;
    if (syslog_level == 4)
        return LOG_LVL_WARN;
    if (syslog_level <= 6)
        return LOG_LVL_INFO;
    return LOG_LVL_DEBUG;
}

bool log_enabled(log_level_t level) { return (int)level >= atomic_load(&g_log.level); }

/* ---- redaction ---------------------------------------------------------- */

static bool is_secret_end(char c)
{
    return c == '\0' || isspace((unsigned char)c) || c == '&' || c == ';' || c == '"' ||
           c == '\'' || c == ',' || c == '}';
}

/* If s starts with "password=", "token=" etc. return the length of the key
 * part including the separator; else 0. */
static size_t secret_key_at(const char *s)
{
    static const char *keys[] = {
        "password=", "passwd=", "token=", "secret=", "password\":\"", "token\":\"", "secret\":\""};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(keys); i++) {
        size_t n = strlen(keys[i]);
        if (!strncasecmp(s, keys[i], n))
            return n;
    }
    return 0;
}

void log_redact(const char *in, char *out, size_t size)
{
    if (!size)
        return;
    strbuf_t sb;
    strbuf_init(&sb);
    const char *p = in;
    pthread_mutex_lock(&g_log.lock);
    while (*p) {
        bool matched = false;
        /* 1. registered secret values */
        for (size_t i = 0; i < g_log.nsecrets && !matched; i++) {
            size_t n = strlen(g_log.secrets[i]);
            if (!strncmp(p, g_log.secrets[i], n)) {
                strbuf_puts(&sb, "***");
                p += n;
                matched = true;
            }
        }
        if (matched)
            continue;
        /* 2. scheme://user:PASSWORD@host */
        if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
            const char *u = p + 3, *at = NULL, *colon = NULL;
            for (const char *q = u; *q && *q != '/' && !isspace((unsigned char)*q); q++) {
                if (*q == '@') {
                    at = q;
                    break;
                }
                if (*q == ':' && !colon)
                    colon = q;
            }
            if (at && colon && colon < at) {
                strbuf_append(&sb, p, (size_t)(colon - p) + 1);
                strbuf_puts(&sb, "***");
                p = at;
                continue;
            }
        }
        /* 3. password=VALUE, token=VALUE (DSNs, query strings, JSON) */
        size_t kl = (p == in || !isalnum((unsigned char)p[-1])) ? secret_key_at(p) : 0;
        if (kl) {
            strbuf_append(&sb, p, kl);
            p += kl;
            if (*p && !is_secret_end(*p)) {
                strbuf_puts(&sb, "***");
                while (!is_secret_end(*p))
                    p++;
            }
            continue;
        }
        /* 4. Bearer TOKEN */
        if (!strncasecmp(p, "bearer ", 7)) {
            strbuf_append(&sb, p, 7);
            p += 7;
            if (*p && !is_secret_end(*p)) {
                strbuf_puts(&sb, "***");
                while (!is_secret_end(*p))
                    p++;
            }
            continue;
        }
        strbuf_putc(&sb, *p++);
    }
    pthread_mutex_unlock(&g_log.lock);
    str_copy(out, sb.data, size);
    strbuf_cleanup(&sb);
}

/* ---- emit --------------------------------------------------------------- */

static void append_redacted_json(strbuf_t *sb, const char *s)
{
    size_t n = strlen(s);
    if (n > LOG_LINE_MAX)
        n = LOG_LINE_MAX;
    char *tmp = xmalloc(n * 2 + 16); /* "***" can only shrink a secret >= 4 bytes */
    char *src = xstrndup(s, n);
    log_redact(src, tmp, n * 2 + 16);
    strbuf_json_str(sb, tmp, strlen(tmp));
    free(src);
    free(tmp);
}

static void write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            return; /* nowhere to report a failing log sink */
        p += n;
        len -= (size_t)n;
    }
}

void log_emit(log_level_t level, const log_field_t *fields, size_t nfields, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char ts[32];
    fmt_rfc3339(wall_us(), ts, sizeof(ts));

    char *msg;
    va_list ap;
    va_start(ap, fmt);
    msg = xvasprintf(fmt, ap);
    va_end(ap);
    bool cut = strlen(msg) > LOG_LINE_MAX;

    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_appendf(&sb, "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":", ts, log_level_name(level));
    strbuf_json_str(&sb, g_log.service, strlen(g_log.service));
    strbuf_puts(&sb, ",\"msg\":");
    append_redacted_json(&sb, msg);
    if (cut)
        strbuf_puts(&sb, ",\"truncated\":true");
    for (size_t i = 0; i < nfields; i++) {
        const log_field_t *f = &fields[i];
        strbuf_putc(&sb, ',');
        strbuf_json_str(&sb, f->key, strlen(f->key));
        strbuf_putc(&sb, ':');
        switch (f->type) {
        case LOG_F_STR:
            if (f->v.s)
                append_redacted_json(&sb, f->v.s);
            else
                strbuf_puts(&sb, "null");
            break;
        case LOG_F_INT: strbuf_appendf(&sb, "%lld", f->v.i); break;
        case LOG_F_DBL:
            if (f->v.d != f->v.d || f->v.d > 1e308 || f->v.d < -1e308)
                strbuf_puts(&sb, "null"); /* NaN/inf are not JSON */
            else
                strbuf_appendf(&sb, "%.17g", f->v.d);
            break;
        case LOG_F_BOOL: strbuf_puts(&sb, f->v.b ? "true" : "false"); break;
        }
    }
    strbuf_puts(&sb, "}\n");

    pthread_mutex_lock(&g_log.lock);
    if (g_log.sink)
        g_log.sink(sb.data, sb.len, g_log.sink_opaque);
    else
        write_all(atomic_load(&g_log.fd), sb.data, sb.len);
    pthread_mutex_unlock(&g_log.lock);
    strbuf_cleanup(&sb);
    free(msg);
}
