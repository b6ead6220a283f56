#include "util.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t size)
{
    /* Not through log.c: it may itself need memory. One write(2), then die. */
    char buf[96];
    int n = snprintf(buf, sizeof(buf),
                     "{\"level\":\"fatal\",\"msg\":\"out of memory (%zu bytes)\"}\n", size);
    if (n > 0)
        (void)!write(2, buf, (size_t)n);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        oom(size);
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        oom(nmemb * size);
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        oom(size);
    return p;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *p = xmalloc(n + 1);
    memcpy(p, s, n + 1);
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        oom(0);
    char *p = xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t mono_us(void) { return clock_us(CLOCK_MONOTONIC); }
int64_t mono_ms(void) { return clock_us(CLOCK_MONOTONIC) / 1000; }
int64_t wall_us(void) { return clock_us(CLOCK_REALTIME); }
int64_t wall_ms(void) { return clock_us(CLOCK_REALTIME) / 1000; }

char *fmt_rfc3339(int64_t us, char *buf, size_t size)
{
    time_t secs = (time_t)(us / 1000000);
    int ms = (int)((us % 1000000) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}

void str_copy(char *dst, const char *src, size_t size)
{
    if (!size)
        return;
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

bool str_starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int parse_int64(const char *s, int64_t *out)
{
    if (!s || !*s || *s == ' ' || *s == '\t')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int parse_double(const char *s, double *out)
{
    if (!s || !*s || *s == ' ' || *s == '\t')
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(yes); i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

char *file_read_all(const char *path, size_t max_bytes, size_t *lenp, char *errstr,
                    size_t errstr_size)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    if (!fp) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size > max_bytes) {
        snprintf(errstr, errstr_size, "%s: file is %lld bytes, more than the limit of %zu", path,
                 (long long)st.st_size, max_bytes);
        goto err;
    }
    size_t cap = 4096, len = 0;
    buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, fp);
        len += n;
        if (len > max_bytes) {
            snprintf(errstr, errstr_size, "%s: more than the limit of %zu bytes", path, max_bytes);
            goto err;
        }
        if (n == 0) {
            if (ferror(fp)) {
                snprintf(errstr, errstr_size, "%s: read error: %s", path, strerror(errno));
                goto err;
            }
            break;
        }
    }
    fclose(fp);
    buf[len] = '\0';
    if (lenp)
        *lenp = len;
    return buf;
err:
    free(buf);
    fclose(fp);
    return NULL;
}

void sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL))
        abort(); /* cannot fail for SHA-256 short of memory exhaustion */
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
}

void strbuf_init(strbuf_t *sb)
{
    sb->cap = 64;
    sb->len = 0;
    sb->data = xmalloc(sb->cap);
    sb->data[0] = '\0';
}

void strbuf_cleanup(strbuf_t *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}

void strbuf_reset(strbuf_t *sb)
{
    sb->len = 0;
    if (sb->data)
        sb->data[0] = '\0';
}

void strbuf_reserve(strbuf_t *sb, size_t extra)
{
    if (sb->data && sb->len + extra + 1 <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1)
        cap *= 2;
    sb->data = xrealloc(sb->data, cap);
    sb->cap = cap;
}

void strbuf_append(strbuf_t *sb, const void *data, size_t len)
{
    strbuf_reserve(sb, len);
    memcpy(sb->data + sb->len, data, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
}

void strbuf_puts(strbuf_t *sb, const char *s) { strbuf_append(sb, s, strlen(s)); }

void strbuf_putc(strbuf_t *sb, char c)
{
    strbuf_reserve(sb, 1);
    sb->data[sb->len++] = c;
    sb->data[sb->len] = '\0';
}

void strbuf_appendf(strbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sb->cap - sb->len;
    int n = vsnprintf(sb->data + sb->len, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= room) {
        strbuf_reserve(sb, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    sb->len += (size_t)n;
}

/* Length of a valid UTF-8 sequence at s (max n bytes), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return need;
}

void strbuf_json_str(strbuf_t *sb, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    strbuf_reserve(sb, len + 2);
    strbuf_putc(sb, '"');
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            strbuf_append(sb, esc, 2);
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': strbuf_append(sb, "\\n", 2); break;
            case '\r': strbuf_append(sb, "\\r", 2); break;
            case '\t': strbuf_append(sb, "\\t", 2); break;
            default: strbuf_appendf(sb, "\\u%04x", c); break;
            }
            i++;
        } else if (c < 0x80) {
            strbuf_putc(sb, (char)c);
            i++;
        } else {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n == 0) {
                strbuf_append(sb, "\\ufffd", 6); /* invalid byte: keep JSON valid */
                i++;
            } else {
                strbuf_append(sb, p + i, n);
                i += n;
            }
        }
    }
    strbuf_putc(sb, '"');
}

char *strbuf_detach(strbuf_t *sb, size_t *lenp)
{
    if (!sb->data)
        strbuf_reserve(sb, 0);
    char *p = sb->data;
    if (lenp)
        *lenp = sb->len;
    sb->data = NULL; /* no storage until the next append */
    sb->len = sb->cap = 0;
    return p;
}

/* Digits of @p m (> 0) into @p out, most significant first; returns the count. */
static size_t put_digits(uint64_t m, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t fmt_double_rt(double v, char buf[32])
{
    static const double pow10[] = {1e0, 1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,
                                   1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17};
    size_t len = 0;
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        if (v == 0) { /* -0.0 prints as "0": strtod("0") == -0.0 holds */
            buf[0] = '0';
            buf[1] = '\0';
            return 1;
        }
        if (v < 0)
            buf[len++] = '-';
        len += put_digits((uint64_t)fabs(v), buf + len);
        buf[len] = '\0';
        return len;
    }
    /*
     * Decimals as people write them ("12.34", "0.0425"): the fewest digits d
     * after the point such that m / 10^d == v for m = round(v * 10^d). With
     * m < 2^53 and 10^d exact, that IEEE division is the correctly rounded
     * value of the decimal m * 10^-d, which is what strtod() returns for its
     * text: the round trip is exact. Anything else takes "%.17g".
     */
    double a = fabs(v);
    if (isfinite(a) && a >= 1e-4 && a < 1e15) {
        for (int d = 1; d <= 17; d++) {
            double scaled = a * pow10[d];
            if (scaled >= 9007199254740992.0)
                break;
            double m = floor(scaled + 0.5);
            if (m / pow10[d] != a)
                continue;
            char digits[24];
            size_t nd = put_digits((uint64_t)m, digits);
            if (v < 0)
                buf[len++] = '-';
            if (nd <= (size_t)d) { /* 0.000ddd */
                buf[len++] = '0';
                buf[len++] = '.';
                for (size_t z = nd; z < (size_t)d; z++)
                    buf[len++] = '0';
                memcpy(buf + len, digits, nd);
                len += nd;
            } else {
                size_t ni = nd - (size_t)d;
                memcpy(buf + len, digits, ni);
                len += ni;
                buf[len++] = '.';
                memcpy(buf + len, digits + ni, (size_t)d);
                len += (size_t)d;
            }
            buf[len] = '\0';
            return len;
        }
    }
    int n = snprintf(buf, 32, "%.17g", v);
    return n < 0 ? 0 : (size_t)n;
}
