/* The connections of an http_server_t (httpconn.h).
 *
 * evhttp_set_bevcb() is called once per accepted connection. Here each
 * connection's bufferevent is made (the hook's, e.g. TLS, or plain), and:
 *
 *  - it is counted; evhttp_connection_set_closecb() uncounts it. The evhttp
 *    connection is learnt from the bufferevent's callback argument
 *    (bufferevent_getcb: evhttp sets it to the connection), in an event
 *    made active at accept time, which runs before the loop polls the new
 *    socket. Beyond max_connections the connection is taken away from
 *    evhttp: its request head is read and dropped, a 503 JSON error with
 *    Retry-After goes back, and the connection is closed (or after 2 s if
 *    the client sends nothing);
 *  - its output buffer is watched: evhttp writes a response into it
 *    synchronously (status line, headers, body) and the socket write comes
 *    later in the loop, so an error page evhttp made itself (the only
 *    text/html a server of ours sends) is replaced there, before a byte of
 *    it leaves, by the owner's JSON with the same status and headers.
 *
 * Ownership: a conn_t lives from the bufferevent callback to the
 * connection's close callback (which frees it). The httpconn_t lives until
 * http_server_destroy() (after evhttp_free has run every close callback). */
#include "httpconn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mjson.h"
#include "util.h"

typedef struct httpconn {
    httpconn_conf_t conf;
    char *prefix;
    int64_t open;
    metric_t *m_conns, *m_refused, *m_early;
} httpconn_t;

#define HEAD_MAX 8192 /* an evhttp error head is a few hundred bytes */

typedef struct conn {
    httpconn_t *hc;
    struct bufferevent *bev;
    struct evhttp_connection *evcon;
    struct event *attach;
    struct evbuffer_cb_entry *out_cb;
    int64_t resp_at; /**< output offset of the response head being watched; -1 = none */
    bool in_rewrite; /**< our own edit of the output buffer is under way */
    bool refused;    /**< over max_connections */
    bool no_bev;     /**< the hook could not make its bufferevent (TLS) */
    bool answered;   /**< (refused) the 503 is queued */
} conn_t;

static void conn_count(httpconn_t *hc, int delta)
{
    hc->open += delta;
    metric_set(hc->m_conns, (double)hc->open);
}

/* ---- errors evhttp answers itself, as JSON ------------------------------------------------- */

/* Copy @p n bytes at offset @p off of @p buf into @p dst. Through
 * evbuffer_peek: a socket bufferevent keeps the front of its output frozen
 * between writes, and evbuffer_copyout_from() refuses a frozen buffer. */
static bool copy_at(struct evbuffer *buf, size_t off, char *dst, size_t n)
{
    struct evbuffer_ptr at;
    if (evbuffer_get_length(buf) < off + n || evbuffer_ptr_set(buf, &at, off, EVBUFFER_PTR_SET))
        return false;
    struct evbuffer_iovec vec[16];
    int nvec = evbuffer_peek(buf, (ev_ssize_t)n, &at, vec, 16);
    size_t got = 0;
    for (int i = 0; i < nvec && i < 16 && got < n; i++) {
        size_t k = vec[i].iov_len < n - got ? vec[i].iov_len : n - got;
        memcpy(dst + got, vec[i].iov_base, k);
        got += k;
    }
    return got == n;
}

/* Header @p name's value in the head @p h (NUL-terminated, CRLF lines), or NULL. */
static const char *head_value(const char *h, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (const char *p = strstr(h, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (!strncasecmp(line, name, n) && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *end = strstr(v, "\r\n");
            *len = end ? (size_t)(end - v) : strlen(v);
            return v;
        }
    }
    return NULL;
}

/* The watched response head is complete with its body: if evhttp made it
 * (text/html), put the JSON one in its place. */
static void maybe_rewrite(conn_t *cn, struct evbuffer *buf)
{
    size_t total = evbuffer_get_length(buf);
    struct evbuffer_ptr from;
    if (evbuffer_ptr_set(buf, &from, (size_t)cn->resp_at, EVBUFFER_PTR_SET)) {
        cn->resp_at = -1;
        return;
    }
    struct evbuffer_ptr end = evbuffer_search(buf, "\r\n\r\n", 4, &from);
    if (end.pos < 0) {
        if (total - (size_t)cn->resp_at > HEAD_MAX)
            cn->resp_at = -1; /* no head of evhttp's */
        return;
    }
    size_t head_len = (size_t)end.pos + 4 - (size_t)cn->resp_at;
    if (head_len > HEAD_MAX) {
        cn->resp_at = -1;
        return;
    }
    char head[HEAD_MAX + 1];
    if (!copy_at(buf, (size_t)cn->resp_at, head, head_len)) {
        cn->resp_at = -1;
        return;
    }
    head[head_len] = '\0';
    size_t vlen = 0;
    const char *ct = head_value(head, "Content-Type", &vlen);
    if (!ct || vlen < 9 || strncasecmp(ct, "text/html", 9)) {
        cn->resp_at = -1; /* one of ours: JSON or text, left alone */
        return;
    }
    const char *cl = head_value(head, "Content-Length", &vlen);
    size_t body_len = cl ? strtoull(cl, NULL, 10) : 0;
    size_t want = (size_t)cn->resp_at + head_len + body_len;
    if (total < want)
        return; /* the body is still to come */
    if (total > want) {
        cn->resp_at = -1;
        return;
    }
    /* the status line stays; so do the other headers (Connection: close, Date) */
    int code = atoi(head + 9);
    const char *eol = strstr(head, "\r\n");
    char phrase[96] = "";
    if (eol - head > 13)
        snprintf(phrase, sizeof(phrase), "%.*s", (int)(eol - head - 13), head + 13);
    json_t *err = cn->hc->conf.early_error(cn->hc->conf.arg, code, phrase);
    char *body = mjson_dump(err, NULL);
    json_decref(err);
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_append(&sb, head, (size_t)(eol - head) + 2);
    for (const char *p = eol; p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        const char *le = strstr(line, "\r\n");
        if (!le)
            break;
        if (!strncasecmp(line, "Content-Type:", 13) || !strncasecmp(line, "Content-Length:", 15))
            continue;
        strbuf_append(&sb, line, (size_t)(le - line) + 2);
    }
    strbuf_appendf(&sb,
                   "Content-Type: application/json\r\nCache-Control: no-store\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   strlen(body), body);
    free(body);
    cn->in_rewrite = true;
    /* the front is frozen between the socket's writes (see copy_at): thaw
     * it for this edit only, nothing of the response has been sent yet */
    bool frozen = evbuffer_drain(buf, 0) != 0;
    if (frozen)
        evbuffer_unfreeze(buf, 1);
    struct evbuffer *keep = evbuffer_new();
    if (keep && evbuffer_remove_buffer(buf, keep, (size_t)cn->resp_at) == (int)cn->resp_at &&
        evbuffer_drain(buf, evbuffer_get_length(buf)) == 0 && evbuffer_add_buffer(buf, keep) == 0 &&
        evbuffer_add(buf, sb.data, sb.len) == 0) {
        metric_inc(cn->hc->m_early);
    } else {
        log_warn("could not replace an evhttp error page (status %d)", code);
    }
    evbuffer_free(keep);
    if (frozen)
        evbuffer_freeze(buf, 1);
    cn->in_rewrite = false;
    cn->resp_at = -1;
    strbuf_cleanup(&sb);
}

static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    conn_t *cn = arg;
    if (cn->in_rewrite)
        return;
    if (info->n_deleted) {
        /* the socket took bytes from the front: offsets move */
        if (info->n_added || cn->resp_at < (int64_t)info->n_deleted)
            cn->resp_at = -1; /* a head already partly sent is past changing */
        else
            cn->resp_at -= (int64_t)info->n_deleted;
        return;
    }
    if (!info->n_added)
        return;
    /* a status line of a 4xx/5xx is one add ("HTTP/1.1 413 Payload Too Large\r\n") */
    if (info->n_added >= 13) {
        char sl[13];
        if (copy_at(buf, info->orig_size, sl, sizeof(sl)) && !memcmp(sl, "HTTP/1.", 7) &&
            sl[8] == ' ' && (sl[9] == '4' || sl[9] == '5')) {
            cn->resp_at = (int64_t)info->orig_size;
            return;
        }
    }
    if (cn->resp_at >= 0)
        maybe_rewrite(cn, buf);
}

/* ---- over the cap: a 503 and close --------------------------------------------------------- */

static void refuse_close(conn_t *cn)
{
    /* frees the bufferevent and, through on_close, cn (safe inside a
     * bufferevent callback: evhttp closes connections from them too) */
    evhttp_connection_free(cn->evcon);
}

static void refuse_read(struct bufferevent *bev, void *arg)
{
    conn_t *cn = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!cn->answered) {
        struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (e.pos < 0 && evbuffer_get_length(in) <= (size_t)cn->hc->conf.max_header_bytes)
            return; /* the rest of the request head is coming */
        json_t *err = cn->hc->conf.refused_error(cn->hc->conf.arg);
        char *body = mjson_dump(err, NULL);
        json_decref(err);
        struct evbuffer *out = bufferevent_get_output(bev);
        evbuffer_add_printf(out,
                            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            "Cache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n"
                            "Content-Length: %zu\r\n\r\n%s",
                            strlen(body), body);
        free(body);
        cn->answered = true;
        bufferevent_enable(bev, EV_WRITE);
    }
    /* what else comes (a body) is dropped, so closing sends no reset */
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void refuse_written(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_t *cn = arg;
    if (cn->answered)
        refuse_close(cn);
}

static void refuse_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;        /* the TLS handshake is done: the request comes next */
    refuse_close(arg); /* EOF, error or the 2 s timeout */
}

/* ---- life cycle --------------------------------------------------------------------------------- */

static void conn_free(conn_t *cn)
{
    if (cn->out_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(cn->bev), cn->out_cb);
    conn_count(cn->hc, -1);
    free(cn);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    conn_free(arg);
}

/* Runs in the loop pass that accepted the connection, after evhttp set it up
 * and before the socket is polled. */
static void on_attach(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_t *cn = arg;
    event_free(cn->attach);
    cn->attach = NULL;
    bufferevent_data_cb readcb = NULL;
    void *cbarg = NULL;
    bufferevent_getcb(cn->bev, &readcb, NULL, NULL, &cbarg);
    if (!readcb || !cbarg) {
        log_warn("an accepted connection has no evhttp connection: not counted");
        conn_free(cn);
        return;
    }
    cn->evcon = cbarg;
    evhttp_connection_set_closecb(cn->evcon, on_close, cn);
    if (cn->no_bev) {
        refuse_close(cn);
        return;
    }
    if (!cn->refused)
        return;
    metric_inc(cn->hc->m_refused);
    bufferevent_setcb(cn->bev, refuse_read, refuse_written, refuse_event, cn);
    struct timeval two = {2, 0};
    bufferevent_set_timeouts(cn->bev, &two, &two);
    bufferevent_enable(cn->bev, EV_READ);
}

static struct bufferevent *on_new_bev(struct event_base *base, void *arg)
{
    httpconn_t *hc = arg;
    struct bufferevent *bev = NULL;
    bool no_bev = false;
    if (hc->conf.make_bev) {
        bev = hc->conf.make_bev(hc->conf.arg, base);
        no_bev = !bev;
    }
    /* never let evhttp fall back to its own (plain) bufferevent when the
     * hook's failed (a TLS port): a plain one is made and closed at attach */
    if (!bev)
        bev = bufferevent_socket_new(base, -1, 0);
    if (!bev)
        return NULL; /* evhttp's own attempt fails alike and drops the connection */
    conn_t *cn = xcalloc(1, sizeof(*cn));
    cn->hc = hc;
    cn->bev = bev;
    cn->resp_at = -1;
    cn->no_bev = no_bev;
    conn_count(hc, +1);
    cn->refused = hc->conf.max_connections > 0 && hc->open > hc->conf.max_connections;
    cn->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, cn);
    cn->attach = event_new(base, -1, 0, on_attach, cn);
    event_active(cn->attach, EV_TIMEOUT, 1);
    return bev;
}

static void httpconn_free(void *arg)
{
    httpconn_t *hc = arg;
    free(hc->prefix);
    free(hc);
}

void httpconn_install(http_server_t *srv, metrics_t *metrics, const httpconn_conf_t *conf)
{
    httpconn_t *hc = xcalloc(1, sizeof(*hc));
    hc->conf = *conf;
    hc->prefix = xstrdup(conf->metric_prefix);
    hc->conf.metric_prefix = hc->prefix;
    char name[160];
    snprintf(name, sizeof(name), "%s_connections", hc->prefix);
    hc->m_conns = metrics_gauge(metrics, name, "Open HTTP connections.", NULL);
    snprintf(name, sizeof(name), "%s_connections_refused_total", hc->prefix);
    hc->m_refused = metrics_counter(
        metrics, name, "Connections refused with 503 because max_connections were open.", NULL);
    snprintf(name, sizeof(name), "%s_early_errors_total", hc->prefix);
    hc->m_early = metrics_counter(metrics, name,
                                  "Requests evhttp refused before routing (body over the limit, "
                                  "bad or oversized header block), answered with a JSON error.",
                                  NULL);
    struct evhttp *http = http_server_evhttp(srv);
    /* a body over the limit is read to its end and dropped before the 413
     * goes back, so a client still sending it reads the answer (no reset) */
    if (evhttp_set_flags(http, EVHTTP_SERVER_LINGERING_CLOSE))
        log_warn("libevent has no lingering close: a 413 may reach a client as a reset");
    evhttp_set_bevcb(http, on_new_bev, hc);
    http_server_on_destroy(srv, httpconn_free, hc);
}
