#include "records.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

const char *const rec_dlq_reasons[REC_DLQ_NREASONS] = {
    "bad_json",      "duplicate_key",   "not_object",   "too_large",
    "missing_field", "wrong_type",      "out_of_range", "unknown_category",
    "non_finite",    "duplicate_event", "spec_mismatch"};

static void put_str(strbuf_t *out, const char *s) { strbuf_json_str(out, s, strlen(s)); }

static int put_num(strbuf_t *out, double v)
{
    if (!isfinite(v))
        return -1;
    char buf[32];
    strbuf_append(out, buf, fmt_double_rt(v, buf));
    return 0;
}

static void put_source(strbuf_t *out, const rec_source_t *src)
{
    strbuf_puts(out, "\"source\":{");
    if (src->topic) {
        strbuf_puts(out, "\"topic\":");
        put_str(out, src->topic);
        strbuf_appendf(out, ",\"partition\":%d,\"offset\":%lld}", src->partition,
                       (long long)src->offset);
    } else {
        strbuf_puts(out, "\"file\":");
        put_str(out, src->file ? src->file : "");
        strbuf_appendf(out, ",\"record\":%lld}", (long long)src->record);
    }
}

int rec_features(const spec_t *spec, const spec_row_t *row, const rec_source_t *src,
                 int64_t ingested_us, strbuf_t *out)
{
    size_t start = out->len;
    char ts[32];
    strbuf_puts(out, "{\"schema\":\"features/1\",\"event_id\":");
    put_str(out, row->event_id);
    strbuf_puts(out, ",\"entity\":");
    put_str(out, row->entity);
    strbuf_appendf(out, ",\"event_time\":\"%s\",\"spec\":{\"name\":",
                   fmt_rfc3339(row->event_time_ms * 1000, ts, sizeof(ts)));
    put_str(out, spec->name);
    strbuf_appendf(out, ",\"version\":%d,\"hash\":\"%s\"},\"values\":{", spec->version, spec->hash);
    for (size_t i = 0; i < spec->ncolumns; i++) {
        if (i)
            strbuf_putc(out, ',');
        put_str(out, spec->columns[i]);
        strbuf_putc(out, ':');
        const spec_value_t *v = &row->values[i];
        if (v->kind == SPEC_V_MISSING) {
            strbuf_puts(out, "null");
        } else if (v->kind == SPEC_V_STR) {
            put_str(out, v->str);
        } else if (put_num(out, v->num)) {
            out->len = start;
            out->data[start] = '\0';
            return -1;
        }
    }
    strbuf_puts(out, "},");
    put_source(out, src);
    strbuf_appendf(out, ",\"ingested_at\":\"%s\"}", fmt_rfc3339(ingested_us, ts, sizeof(ts)));
    return 0;
}

bool rec_is_text(const void *data, size_t len)
{
    if (memchr(data, '\0', len))
        return false;
    /* strbuf_json_str marks invalid sequences: compare its output with a
     * plain escape would be costly; check the encoding directly */
    const unsigned char *p = data;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n = c < 0x80                   ? 1
                   : (c >= 0xc2 && c <= 0xdf) ? 2
                   : (c >= 0xe0 && c <= 0xef) ? 3
                   : (c >= 0xf0 && c <= 0xf4) ? 4
                                              : 0;
        if (!n || i + n > len)
            return false;
        for (size_t k = 1; k < n; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
        if (n == 3 && ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0)))
            return false; /* overlong, or a UTF-16 surrogate */
        if (n == 4 && ((c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] >= 0x90)))
            return false;
        i += n;
    }
    return true;
}

void rec_dlq(const char *reason, const char *field, const char *detail, const char *spec_name,
             const rec_source_t *src, const void *original, size_t original_len, int64_t at_us,
             strbuf_t *out)
{
    char ts[32], sha[65];
    strbuf_puts(out, "{\"schema\":\"dlq/1\",\"reason\":");
    put_str(out, reason);
    strbuf_puts(out, ",\"field\":");
    put_str(out, field ? field : "");
    strbuf_puts(out, ",\"detail\":");
    put_str(out, detail ? detail : "");
    strbuf_puts(out, ",\"spec\":");
    put_str(out, spec_name ? spec_name : "");
    strbuf_putc(out, ',');
    put_source(out, src);
    size_t kept = original_len < REC_ORIGINAL_MAX ? original_len : REC_ORIGINAL_MAX;
    sha256_hex(original ? original : "", original_len, sha);
    bool text = original && rec_is_text(original, kept);
    strbuf_appendf(out,
                   ",\"original\":{\"length\":%zu,\"sha256\":\"%s\",\"truncated\":%s,"
                   "\"encoding\":\"%s\",\"bytes\":",
                   original_len, sha, kept < original_len ? "true" : "false",
                   text ? "utf8" : "base64");
    if (text) {
        strbuf_json_str(out, original, kept);
    } else {
        size_t b64 = 4 * ((kept + 2) / 3);
        strbuf_reserve(out, b64 + 3);
        out->data[out->len++] = '"';
        if (kept)
            EVP_EncodeBlock((unsigned char *)out->data + out->len, original, (int)kept);
        out->len += b64;
        out->data[out->len++] = '"';
        out->data[out->len] = '\0';
    }
    strbuf_appendf(out, "},\"at\":\"%s\"}", fmt_rfc3339(at_us, ts, sizeof(ts)));
}

int rec_dlq_original(const json_t *dlq, unsigned char **bytes, size_t *lenp, bool *truncated,
                     char *errstr, size_t errstr_size)
{
    *bytes = NULL;
    *lenp = 0;
    const json_t *o = json_object_get(dlq, "original");
    const json_t *jb = json_object_get(o, "bytes");
    const char *enc = json_string_value(json_object_get(o, "encoding"));
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    const json_t *jlen = json_object_get(o, "length");
    const json_t *jtrunc = json_object_get(o, "truncated");
    if (!json_is_object(o) || !json_is_string(jb) || !enc || !sha || !json_is_integer(jlen) ||
        !json_is_boolean(jtrunc)) {
        snprintf(errstr, errstr_size,
                 "not a dlq/1 record: 'original' needs bytes, encoding, sha256, length and "
                 "truncated");
        return -1;
    }
    const char *s = json_string_value(jb);
    size_t slen = json_string_length(jb);
    unsigned char *out = NULL;
    size_t n = 0;
    if (!strcmp(enc, "utf8")) {
        out = xmalloc(slen + 1);
        memcpy(out, s, slen);
        n = slen;
    } else if (!strcmp(enc, "base64")) {
        if (slen % 4) {
            snprintf(errstr, errstr_size,
                     "original.bytes: base64 length %zu is not a multiple of 4", slen);
            return -1;
        }
        out = xmalloc(slen / 4 * 3 + 1);
        int got = slen ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)slen) : 0;
        if (got < 0) {
            free(out);
            snprintf(errstr, errstr_size, "original.bytes: not valid base64");
            return -1;
        }
        n = (size_t)got;
        /* EVP_DecodeBlock counts the padding as zero bytes */
        for (size_t i = slen; i > 0 && s[i - 1] == '=' && n > 0; i--)
            n--;
    } else {
        snprintf(errstr, errstr_size, "original.encoding '%s' is neither utf8 nor base64", enc);
        return -1;
    }
    *truncated = json_is_true(jtrunc);
    if (!*truncated) {
        char hex[65];
        sha256_hex(out, n, hex);
        if ((json_int_t)n != json_integer_value(jlen) || strcmp(hex, sha)) {
            free(out);
            snprintf(errstr, errstr_size,
                     "original bytes do not match their recorded length and sha256 (damaged "
                     "record)");
            return -1;
        }
    }
    out[n] = '\0';
    *bytes = out;
    *lenp = n;
    return 0;
}
