/* Slack incoming webhooks: pacing, outcomes, URL checks, digests, HTTP. */
#include "slack.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util.h"

/* ---- pacing ------------------------------------------------------------------------ */

void slack_bucket_init(slack_bucket_t *b, double rate, double burst, int64_t now_ms)
{
    b->rate = rate > 0 ? rate : 1;
    b->burst = burst >= 1 ? burst : 1;
    b->tokens = b->burst;
    b->last_ms = now_ms;
}

static void bucket_refill(slack_bucket_t *b, int64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->rate / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
}

int64_t slack_bucket_wait_ms(slack_bucket_t *b, int64_t now_ms)
{
    bucket_refill(b, now_ms);
    if (b->tokens >= 1.0)
        return 0;
    return (int64_t)ceil((1.0 - b->tokens) * 1000.0 / b->rate);
}

void slack_bucket_take(slack_bucket_t *b, int64_t now_ms)
{
    bucket_refill(b, now_ms);
    b->tokens -= 1.0;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int64_t slack_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t *rng)
{
    if (attempt < 0)
        attempt = 0;
    double nominal = (double)base_ms;
    for (int i = 0; i < attempt && nominal < (double)cap_ms; i++)
        nominal *= 2;
    if (nominal > (double)cap_ms)
        nominal = (double)cap_ms;
    double u = (double)(xorshift(rng) >> 11) / 9007199254740992.0; /* [0, 1) */
    return (int64_t)(nominal * (0.5 + 0.5 * u));
}

int64_t slack_retry_after_ms(const char *value, int64_t now_s)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strlen(value);
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r' ||
                   value[len - 1] == '\n'))
        len--;
    if (len == 0)
        return -1;
    char buf[64];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, value, len);
    buf[len] = 0;
    bool digits = true;
    for (size_t i = 0; i < len; i++)
        digits = digits && isdigit((unsigned char)buf[i]);
    if (digits) {
        int64_t s;
        if (len > 9 || parse_int64(buf, &s))
            return -1;
        return s * 1000;
    }
    /* IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" */
    struct tm tm = {0};
    const char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -1;
    int64_t at = (int64_t)timegm(&tm);
    return at > now_s ? (at - now_s) * 1000 : 0;
}

/* ---- outcomes ---------------------------------------------------------------------- */

slack_verdict_t slack_classify(long status)
{
    if (status >= 200 && status < 300)
        return SLACK_DELIVERED;
    if (status == 0 || status == 408 || status == 429 || status >= 500)
        return SLACK_RETRY;
    return SLACK_PERMANENT;
}

const char *slack_verdict_name(slack_verdict_t v)
{
    switch (v) {
    case SLACK_DELIVERED: return "delivered";
    case SLACK_RETRY: return "retry";
    case SLACK_PERMANENT: return "permanent";
    }
    return "?";
}

/* ---- webhook URLs ------------------------------------------------------------------ */

/* Split "scheme://host[:port]/..." into scheme and host (no brackets). */
static bool url_parts(const char *url, char *scheme, size_t ss, char *host, size_t hs)
{
    const char *sep = strstr(url, "://");
    if (!sep || (size_t)(sep - url) >= ss || sep == url)
        return false;
    memcpy(scheme, url, (size_t)(sep - url));
    scheme[sep - url] = 0;
    for (char *p = scheme; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *h = sep + 3;
    const char *at = NULL, *end = h; /* the authority ends at the path, query or fragment */
    for (; *end && *end != '/' && *end != '?' && *end != '#'; end++)
        if (*end == '@')
            at = end;
    if (at)
        h = at + 1; /* user info is never the host */
    const char *e;
    if (*h == '[') {
        /* an IPv6 literal's ']' within the authority: never take the path as the host */
        e = memchr(h, ']', (size_t)(end - h));
        if (!e)
            return false;
        h++;
    } else {
        e = h;
        while (*e && *e != ':' && *e != '/' && *e != '?' && *e != '#')
            e++;
    }
    if (e == h || (size_t)(e - h) >= hs)
        return false;
    memcpy(host, h, (size_t)(e - h));
    host[e - h] = 0;
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return true;
}

static bool host_is_loopback(const char *host)
{
    if (!strcmp(host, "localhost"))
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

bool slack_url_allowed(const char *url, char *why, size_t why_size)
{
    char scheme[16], host[256];
    if (!url || !url_parts(url, scheme, sizeof(scheme), host, sizeof(host))) {
        snprintf(why, why_size, "not a URL of the form scheme://host/path");
        return false;
    }
    if (!strcmp(scheme, "https"))
        return true;
    if (!strcmp(scheme, "http")) {
        if (host_is_loopback(host))
            return true;
        snprintf(why, why_size,
                 "plain http:// is refused except to a loopback host (%s is not): use https://",
                 host);
        return false;
    }
    snprintf(why, why_size, "scheme %s is not https", scheme);
    return false;
}

void slack_url_redact(const char *url, char *out, size_t out_size)
{
    char scheme[16], host[256];
    if (!url || !url_parts(url, scheme, sizeof(scheme), host, sizeof(host))) {
        str_copy(out, "(unparsable URL)", out_size);
        return;
    }
    snprintf(out, out_size, "%s://%s/…", scheme, host);
}

/* ---- messages ---------------------------------------------------------------------- */

/* Append @p s escaped for mrkdwn, at most @p max bytes of output in all,
 * cut on a UTF-8 boundary. Returns false if it had to cut. */
static bool put_escaped(strbuf_t *b, const char *s, size_t max)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        const char *rep = NULL;
        size_t n = 1;
        if (*p == '&')
            rep = "&amp;";
        else if (*p == '<')
            rep = "&lt;";
        else if (*p == '>')
            rep = "&gt;";
        else if (*p >= 0xC0)
            while ((p[n] & 0xC0) == 0x80)
                n++;
        size_t need = rep ? strlen(rep) : n;
        if (b->len + need > max)
            return false;
        if (rep)
            strbuf_puts(b, rep);
        else
            strbuf_append(b, (const char *)p, n);
        p += n;
    }
    return true;
}

static const char *str_field(const json_t *o, const char *key, const char *dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static void put_num(strbuf_t *b, const json_t *v)
{
    if (json_is_number(v))
        strbuf_appendf(b, "%.6g", json_number_value(v));
    else
        strbuf_puts(b, "?");
}

/* The mrkdwn text of one alert (unbounded; the caller caps it). */
static void alert_text(const json_t *a, strbuf_t *raw)
{
    const char *state = str_field(a, "state", "?");
    strbuf_t t;
    strbuf_init(&t);
    for (const char *p = state; *p; p++)
        strbuf_appendf(&t, "%c", toupper((unsigned char)*p));
    strbuf_appendf(raw, "*%s* ", t.data ? t.data : "");
    strbuf_cleanup(&t);
    strbuf_appendf(raw, "*%s* (%s)", str_field(a, "alertname", "alert"),
                   str_field(a, "severity", "none"));
    const char *model = str_field(a, "model", NULL);
    if (model)
        strbuf_appendf(raw, " model `%s`", model);
    const json_t *labels = json_object_get(a, "labels");
    const char *k;
    const json_t *v;
    if (json_is_object(labels))
        json_object_foreach((json_t *)labels, k, v)
        {
            if (json_is_string(v) && strcmp(k, "alertname") && strcmp(k, "model") &&
                strcmp(k, "severity"))
                strbuf_appendf(raw, " %s=`%s`", k, json_string_value(v));
        }
    strbuf_puts(raw, "\n");
    strbuf_appendf(raw, "%s = ", str_field(a, "metric", "value"));
    put_num(raw, json_object_get(a, "value"));
    strbuf_appendf(raw, " (threshold %s ", str_field(a, "comparison", ">="));
    put_num(raw, json_object_get(a, "threshold"));
    const char *window = str_field(a, "window", NULL);
    if (window)
        strbuf_appendf(raw, ", window %s", window);
    strbuf_puts(raw, ")");
    const json_t *ann = json_object_get(a, "annotations");
    const char *summary = json_is_object(ann) ? str_field(ann, "summary", NULL) : NULL;
    if (summary)
        strbuf_appendf(raw, "\n%s", summary);
}

static json_t *text_obj(const char *type, const char *text)
{
    return json_pack("{s:s,s:s}", "type", type, "text", text);
}

/* Digest order: what needs a human first (critical before warning before
 * info, firing before resolved), otherwise as they came. */
static int alert_rank(const json_t *a)
{
    const char *sev = str_field(a, "severity", "");
    int r = !strcmp(sev, "critical") ? 0 : !strcmp(sev, "warning") ? 2 : 4;
    return r + (strcmp(str_field(a, "state", ""), "firing") ? 1 : 0);
}

char *slack_render(json_t *const *in, size_t n, size_t budget, size_t *shown)
{
    json_t **alerts = xcalloc(n ? n : 1, sizeof(*alerts));
    size_t k = 0;
    for (int rank = 0; rank < 6; rank++) /* stable: a pass per rank */
        for (size_t i = 0; i < n; i++)
            if (alert_rank(in[i]) == rank)
                alerts[k++] = in[i];
    size_t firing = 0, resolved = 0, other = 0;
    const char *model = NULL;
    bool one_model = true;
    for (size_t i = 0; i < n; i++) {
        const char *st = str_field(alerts[i], "state", "");
        if (!strcmp(st, "firing"))
            firing++;
        else if (!strcmp(st, "resolved"))
            resolved++;
        else
            other++;
        const char *m = str_field(alerts[i], "model", NULL);
        if (m && model && strcmp(m, model))
            one_model = false;
        if (m && !model)
            model = m;
    }
    strbuf_t head, sec, raw;
    strbuf_init(&head);
    strbuf_init(&sec);
    strbuf_init(&raw);
    strbuf_appendf(&head, "%zu alert%s:", n, n == 1 ? "" : "s");
    if (firing)
        strbuf_appendf(&head, " %zu firing", firing);
    if (resolved)
        strbuf_appendf(&head, "%s %zu resolved", firing ? "," : "", resolved);
    if (other)
        strbuf_appendf(&head, "%s %zu other", firing || resolved ? "," : "", other);
    if (model && one_model)
        strbuf_appendf(&head, " (model %s)", model);
    if (head.len > SLACK_HEADER_MAX) {
        /* cut on a UTF-8 boundary: never inside a multi-byte character
         * (a model name of such characters made the header invalid UTF-8,
         * json_pack refused it and no message was made at all) */
        size_t cut = SLACK_HEADER_MAX;
        while (cut > 0 && ((unsigned char)head.data[cut] & 0xC0) == 0x80)
            cut--;
        head.len = cut;
        head.data[head.len] = 0;
    }
    json_t *blocks = json_array();
    json_array_append_new(blocks,
                          json_pack("{s:s,s:o}", "type", "header", "text",
                                    text_obj("plain_text", head.data ? head.data : "alerts")));
    size_t used = head.len, i = 0;
    /* keep room for the closing context block */
    const size_t tail_room = 120;
    for (; i < n; i++) {
        if (json_array_size(blocks) >= SLACK_MAX_BLOCKS - 1)
            break;
        strbuf_reset(&raw);
        alert_text(alerts[i], &raw);
        strbuf_reset(&sec);
        bool whole = put_escaped(&sec, raw.data ? raw.data : "", SLACK_SECTION_MAX - 16);
        if (!whole)
            strbuf_puts(&sec, " …(truncated)");
        const json_t *ann = json_object_get(alerts[i], "annotations");
        const char *runbook = json_is_object(ann) ? str_field(ann, "runbook_url", NULL) : NULL;
        if (whole && runbook && !strpbrk(runbook, "|<> \n") &&
            sec.len + strlen(runbook) + 12 <= SLACK_SECTION_MAX)
            strbuf_appendf(&sec, "\n<%s|runbook>", runbook);
        if (used + sec.len + tail_room > budget)
            break;
        used += sec.len;
        json_array_append_new(blocks, json_pack("{s:s,s:o}", "type", "section", "text",
                                                text_obj("mrkdwn", sec.data)));
    }
    if (i < n) {
        char more[128];
        snprintf(more, sizeof(more), "… and %zu more alert%s not shown (%zu in this digest)", n - i,
                 n - i == 1 ? "" : "s", n);
        json_array_append_new(blocks, json_pack("{s:s,s:[o]}", "type", "context", "elements",
                                                text_obj("mrkdwn", more)));
    }
    if (shown)
        *shown = i;
    json_t *msg =
        json_pack("{s:s,s:o}", "text", head.data ? head.data : "alerts", "blocks", blocks);
    char *out = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    free(alerts);
    strbuf_cleanup(&head);
    strbuf_cleanup(&sec);
    strbuf_cleanup(&raw);
    return out;
}

/* ---- HTTP -------------------------------------------------------------------------- */

struct slack_client {
    CURL *curl;
    slack_http_opts_t opts;
    char *ca_file;
};

slack_client_t *slack_client_new(const slack_http_opts_t *opts)
{
    slack_client_t *c = xcalloc(1, sizeof(*c));
    c->opts = *opts;
    c->ca_file = opts->ca_file ? xstrdup(opts->ca_file) : NULL;
    c->opts.ca_file = c->ca_file;
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c->ca_file);
        free(c);
        return NULL;
    }
    return c;
}

void slack_client_destroy(slack_client_t *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c->ca_file);
    free(c);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    slack_result_t *r = userdata;
    size_t n = size * nmemb;
    size_t keep = SLACK_BODY_KEEP - r->body_len;
    if (keep > n)
        keep = n;
    memcpy(r->body + r->body_len, ptr, keep);
    r->body_len += keep;
    r->body[r->body_len] = 0;
    return n; /* read and drop the rest */
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    slack_result_t *r = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) - 1 && n < 128 && !strncasecmp(buf, name, sizeof(name) - 1)) {
        char v[128];
        memcpy(v, buf + sizeof(name) - 1, n - (sizeof(name) - 1));
        v[n - (sizeof(name) - 1)] = 0;
        r->retry_after_ms = slack_retry_after_ms(v, (int64_t)time(NULL));
    }
    return n;
}

slack_verdict_t slack_post(slack_client_t *c, const char *url, const char *payload,
                           slack_result_t *r)
{
    memset(r, 0, sizeof(*r));
    r->retry_after_ms = -1;
    CURL *h = c->curl;
    curl_easy_reset(h);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->opts.ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->opts.ca_file);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->opts.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->opts.timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mlops-monitor-notify/1");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    char ebuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        /* curl's message may quote the URL: keep only its own words */
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(rc));
        r->status = 0;
        return SLACK_RETRY;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    return slack_classify(r->status);
}
