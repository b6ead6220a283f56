/* The registry's connections under evhttp: a cap on how many are open at
 * once, and JSON bodies for the errors evhttp answers by itself.
 *
 * libevent 2.1 has neither a connection cap nor a hook for the error pages
 * it writes before any handler runs (a body over its limit, a malformed or
 * oversized header block); 2.2 adds evhttp_set_max_connections() and
 * evhttp_set_errorcb(). What 2.1 does offer is the bufferevent callback
 * (evhttp_set_bevcb), called once per accepted connection. This module makes
 * each connection's bufferevent there (TLS or plain), and:
 *
 *  - counts it; evhttp_connection_set_closecb() uncounts it. The evhttp
 *    connection is learnt from the bufferevent's callback argument
 *    (bufferevent_getcb: evhttp sets it to the connection), in an event
 *    made active at accept time, which runs before the loop polls the new
 *    socket. Beyond max_connections the connection is taken away from
 *    evhttp: its request head is read and dropped, a 503 JSON error with
 *    Retry-After goes back, and the connection is closed (or after 2 s if
 *    the client sends nothing);
 *  - watches its output buffer: evhttp writes a response into it
 *    synchronously (status line, headers, body) and the socket write comes
 *    later in the loop, so an error page evhttp made itself (the only
 *    text/html this server sends) is replaced there, before a byte of it
 *    leaves, by the registry's {"error_code","message"} JSON with the same
 *    status and headers.
 *
 * Ownership: a conn_t lives from the bufferevent callback to the connection's
 * close callback (which frees it). The counters live in registry_t, which
 * outlives the HTTP server (evhttp_free runs every close callback). */
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
#include "registry.h"

#define HEAD_MAX 8192 /* an evhttp error head is a few hundred bytes */

typedef struct conn {
    registry_t *rg;
    struct bufferevent *bev;
    struct evhttp_connection *evcon;
    struct event *attach;
    struct evbuffer_cb_entry *out_cb;
    int64_t resp_at; /**< output offset of the response head being watched; -1 = none */
    bool in_rewrite; /**< our own edit of the output buffer is under way */
    bool refused;    /**< over max_connections */
    bool no_tls;     /**< TLS is on but its bufferevent could not be made */
    bool answered;   /**< (refused) the 503 is queued */
} conn_t;

static void conn_count(registry_t *rg, int delta)
{
    rg->conns_open += delta;
    metric_set(rg->m_conns, (double)rg->conns_open);
}

/* ---- errors evhttp answers itself, as JSON ------------------------------------------------- */

static json_t *early_error(registry_t *rg, int code, const char *phrase)
{
    const registry_conf_t *cf = rg->conf;
    long long body_max =
        (long long)(cf->max_artifact_bytes > cf->max_body_bytes ? cf->max_artifact_bytes
                                                                : cf->max_body_bytes);
    if (code == 413)
        return json_pack("{s:s,s:o}", "error_code", "RESOURCE_LIMIT_EXCEEDED", "message",
                         json_sprintf("the request body is larger than %lld bytes, the most "
                                      "this registry reads (max_artifact_bytes = %lld for "
                                      "artifact uploads, max_body_bytes = %lld for JSON)",
                                      body_max, (long long)cf->max_artifact_bytes,
                                      (long long)cf->max_body_bytes));
    if (code == 400)
        return json_pack("{s:s,s:o}", "error_code", "BAD_REQUEST", "message",
                         json_sprintf("malformed request line or headers, or a header block "
                                      "larger than max_header_bytes = %lld bytes",
                                      (long long)cf->max_header_bytes));
    return json_pack("{s:s,s:o}", "error_code", code >= 500 ? "INTERNAL_ERROR" : "BAD_REQUEST",
                     "message", json_sprintf("%d %s", code, phrase));
}

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
    json_t *err = early_error(cn->rg, code, phrase);
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
        metric_inc(cn->rg->m_early_errors);
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
        if (e.pos < 0 && evbuffer_get_length(in) <= (size_t)cn->rg->conf->max_header_bytes)
            return; /* the rest of the request head is coming */
        json_t *err = json_pack(
            "{s:s,s:o}", "error_code", "TEMPORARILY_UNAVAILABLE", "message",
            json_sprintf("too many connections: this registry serves at most %lld at once "
                         "(max_connections); retry later",
                         (long long)cn->rg->conf->max_connections));
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
    conn_count(cn->rg, -1);
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
    if (cn->no_tls) {
        refuse_close(cn);
        return;
    }
    if (!cn->refused)
        return;
    metric_inc(cn->rg->m_conns_refused);
    bufferevent_setcb(cn->bev, refuse_read, refuse_written, refuse_event, cn);
    struct timeval two = {2, 0};
    bufferevent_set_timeouts(cn->bev, &two, &two);
    bufferevent_enable(cn->bev, EV_READ);
}

static struct bufferevent *on_new_bev(struct event_base *base, void *arg)
{
    registry_t *rg = arg;
    struct bufferevent *bev = rg->tls ? tls_bev_new(rg->tls, base) : NULL;
    bool no_tls = rg->tls && !bev;
    /* never let evhttp fall back to its own (plain) bufferevent on a TLS port */
    if (!bev)
        bev = bufferevent_socket_new(base, -1, 0);
    if (!bev)
        return NULL; /* evhttp's own attempt fails alike and drops the connection */
    conn_t *cn = xcalloc(1, sizeof(*cn));
    cn->rg = rg;
    cn->bev = bev;
    cn->resp_at = -1;
    cn->no_tls = no_tls;
    conn_count(rg, +1);
    cn->refused = rg->conns_open > rg->conf->max_connections;
    cn->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, cn);
    cn->attach = event_new(base, -1, 0, on_attach, cn);
    event_active(cn->attach, EV_TIMEOUT, 1);
    return bev;
}

void conn_install(registry_t *rg, http_server_t *srv)
{
    metrics_t *m = service_metrics(rg->svc);
    rg->m_conns =
        metrics_gauge(m, "mlops_registry_http_connections", "Open HTTP connections.", NULL);
    rg->m_conns_refused =
        metrics_counter(m, "mlops_registry_http_connections_refused_total",
                        "Connections refused with 503 because max_connections were open.", NULL);
    rg->m_early_errors = metrics_counter(
        m, "mlops_registry_http_early_errors_total",
        "Requests evhttp refused before routing (body over the limit, bad or oversized "
        "header block), answered with a JSON error.",
        NULL);
    struct evhttp *http = http_server_evhttp(srv);
    /* a body over the limit is read to its end and dropped before the 413
     * goes back, so a client still sending it reads the answer (no reset) */
    if (evhttp_set_flags(http, EVHTTP_SERVER_LINGERING_CLOSE))
        log_warn("libevent has no lingering close: a 413 may reach a client as a reset");
    evhttp_set_bevcb(http, on_new_bev, rg);
}
