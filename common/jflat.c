#include "jflat.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void jflat_init(jflat_t *jf)
{
    memset(jf, 0, sizeof(*jf));
    strbuf_init(&jf->text);
}

void jflat_cleanup(jflat_t *jf)
{
    free(jf->fields);
    free(jf->key_off);
    free(jf->s_off);
    strbuf_cleanup(&jf->text);
    memset(jf, 0, sizeof(*jf));
}

typedef struct cursor {
    const unsigned char *p, *end;
} cursor_t;

static void skip_ws(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            v |= ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F')
            v |= ch - 'A' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(strbuf_t *sb, unsigned cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    strbuf_append(sb, b, n);
}

/* Length of one well-formed UTF-8 sequence at p (shortest form, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* A string at c->p (past the opening quote) decoded onto jf->text with a
 * NUL; returns its offset, or -1 to refuse. */
static long parse_string(jflat_t *jf, cursor_t *c, size_t *lenp)
{
    strbuf_t *sb = &jf->text;
    size_t start = sb->len;
    for (;;) {
        const unsigned char *q = c->p;
        while (q < c->end && *q != '"' && *q != '\\' && *q >= 0x20 && *q < 0x80)
            q++;
        strbuf_append(sb, c->p, (size_t)(q - c->p));
        c->p = q;
        if (q >= c->end)
            return -1;
        if (*q == '"') {
            c->p++;
            *lenp = sb->len - start;
            strbuf_putc(sb, '\0');
            return (long)start;
        }
        if (*q < 0x20)
            return -1; /* a control character: jansson reports it */
        if (*q >= 0x80) {
            size_t n = utf8_seq(q, c->end);
            if (!n)
                return -1;
            strbuf_append(sb, q, n);
            c->p += n;
            continue;
        }
        /* an escape */
        if (c->end - q < 2)
            return -1;
        unsigned char e = q[1];
        c->p += 2;
        switch (e) {
        case '"': strbuf_putc(sb, '"'); break;
        case '\\': strbuf_putc(sb, '\\'); break;
        case '/': strbuf_putc(sb, '/'); break;
        case 'b': strbuf_putc(sb, '\b'); break;
        case 'f': strbuf_putc(sb, '\f'); break;
        case 'n': strbuf_putc(sb, '\n'); break;
        case 'r': strbuf_putc(sb, '\r'); break;
        case 't': strbuf_putc(sb, '\t'); break;
        case 'u': {
            unsigned cp;
            if (c->end - c->p < 4 || hex4(c->p, &cp))
                return -1;
            c->p += 4;
            if (cp == 0)
                return -1; /* \u0000: jansson refuses it */
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return -1; /* a lone low surrogate */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || hex4(c->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                c->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(sb, cp);
            break;
        }
        default: return -1;
        }
    }
}

/* A number at c->p in JSON's grammar; integers as jansson's (strtoll range),
 * reals as strtod's. Refuses what jansson would refuse or round oddly. */
static int parse_number(cursor_t *c, jflat_field_t *f)
{
    const unsigned char *s = c->p, *q = s;
    bool neg = false, is_real = false;
    if (q < c->end && *q == '-') {
        neg = true;
        q++;
    }
    if (q >= c->end || *q < '0' || *q > '9')
        return -1;
    const unsigned char *digits = q;
    if (*q == '0') {
        q++;
        if (q < c->end && *q >= '0' && *q <= '9')
            return -1; /* leading zero */
    } else {
        while (q < c->end && *q >= '0' && *q <= '9')
            q++;
    }
    size_t nint = (size_t)(q - digits);
    if (q < c->end && *q == '.') {
        is_real = true;
        q++;
        const unsigned char *fd = q;
        while (q < c->end && *q >= '0' && *q <= '9')
            q++;
        if (q == fd)
            return -1;
    }
    if (q < c->end && (*q == 'e' || *q == 'E')) {
        is_real = true;
        q++;
        if (q < c->end && (*q == '+' || *q == '-'))
            q++;
        const unsigned char *ed = q;
        while (q < c->end && *q >= '0' && *q <= '9')
            q++;
        if (q == ed)
            return -1;
    }
    c->p = q;
    if (!is_real) {
        if (nint > 18)
            return -1; /* near or past int64: let jansson decide */
        int64_t v = 0;
        for (const unsigned char *d = digits; d < q; d++)
            v = v * 10 + (*d - '0');
        f->type = JFLAT_INT;
        f->i = neg ? -v : v;
        return 0;
    }
    char tmp[64];
    size_t n = (size_t)(q - s);
    if (n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    char *endp;
    double d = strtod(tmp, &endp);
    if (errno == ERANGE || !isfinite(d) || endp != tmp + n)
        return -1;
    f->type = JFLAT_REAL;
    f->d = d;
    return 0;
}

static bool literal(cursor_t *c, const char *word, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n))
        return false;
    c->p += n;
    return true;
}

static jflat_field_t *next_field(jflat_t *jf)
{
    if (jf->n == jf->cap) {
        jf->cap = jf->cap ? 2 * jf->cap : 64;
        jf->fields = xrealloc(jf->fields, jf->cap * sizeof(*jf->fields));
        jf->key_off = xrealloc(jf->key_off, jf->cap * sizeof(*jf->key_off));
        jf->s_off = xrealloc(jf->s_off, jf->cap * sizeof(*jf->s_off));
    }
    jflat_field_t *f = &jf->fields[jf->n];
    memset(f, 0, sizeof(*f));
    return f;
}

int jflat_parse(jflat_t *jf, const char *buf, size_t len)
{
    jf->n = 0;
    strbuf_reset(&jf->text);
    cursor_t c = {(const unsigned char *)buf, (const unsigned char *)buf + len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return -1;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            skip_ws(&c);
            if (c.p >= c.end || *c.p != '"')
                return -1;
            c.p++;
            jflat_field_t *f = next_field(jf);
            long koff = parse_string(jf, &c, &f->key_len);
            if (koff < 0)
                return -1;
            jf->key_off[jf->n] = (size_t)koff;
            skip_ws(&c);
            if (c.p >= c.end || *c.p != ':')
                return -1;
            c.p++;
            skip_ws(&c);
            if (c.p >= c.end)
                return -1;
            switch (*c.p) {
            case '"': {
                c.p++;
                long soff = parse_string(jf, &c, &f->s_len);
                if (soff < 0)
                    return -1;
                jf->s_off[jf->n] = (size_t)soff;
                f->type = JFLAT_STRING;
                break;
            }
            case 't':
                if (!literal(&c, "true", 4))
                    return -1;
                f->type = JFLAT_TRUE;
                break;
            case 'f':
                if (!literal(&c, "false", 5))
                    return -1;
                f->type = JFLAT_FALSE;
                break;
            case 'n':
                if (!literal(&c, "null", 4))
                    return -1;
                f->type = JFLAT_NULL;
                break;
            default:
                if (parse_number(&c, f))
                    return -1; /* also objects and arrays: jansson's job */
                break;
            }
            jf->n++;
            skip_ws(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            if (c.p < c.end && *c.p == '}') {
                c.p++;
                break;
            }
            return -1;
        }
    }
    skip_ws(&c);
    if (c.p != c.end)
        return -1;
    /* the text no longer grows: resolve pointers, then refuse duplicates */
    for (size_t i = 0; i < jf->n; i++) {
        jflat_field_t *f = &jf->fields[i];
        f->key = jf->text.data + jf->key_off[i];
        if (f->type == JFLAT_STRING)
            f->s = jf->text.data + jf->s_off[i];
    }
    for (size_t i = 1; i < jf->n; i++)
        for (size_t k = 0; k < i; k++)
            if (jf->fields[i].key_len == jf->fields[k].key_len &&
                !memcmp(jf->fields[i].key, jf->fields[k].key, jf->fields[i].key_len))
                return -1;
    return 0;
}

const jflat_field_t *jflat_get(const jflat_t *jf, const char *key, size_t len)
{
    for (size_t i = 0; i < jf->n; i++)
        if (jf->fields[i].key_len == len && !memcmp(jf->fields[i].key, key, len))
            return &jf->fields[i];
    return NULL;
}
