#include "http.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mjson.h"

typedef struct route {
    int methods;
    char *path;
    bool prefix;
    http_handler_cb *cb;
    void *arg;
    metric_t *m_2xx, *m_4xx, *m_5xx, *m_latency;
    struct route *next;
} route_t;

struct http_server {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    int port;
    metrics_t *metrics;
    route_t *routes, *routes_tail;
    metric_t *m_rejected;
    /* for the standard routes */
    char *service;
    lifecycle_t *lc;
    http_status_cb *status_cb;
    void *status_opaque;
    int64_t started_us;
    void (*on_destroy)(void *);
    void *on_destroy_arg;
};

static void dispatch(struct evhttp_request *req, void *arg);

http_server_t *http_server_new(struct event_base *base, const char *addr, int port,
                               const http_limits_t *limits, metrics_t *metrics, char *errstr,
                               size_t errstr_size)
{
    http_limits_t lim = {1 << 20, 16 << 10, 30};
    if (limits) {
        if (limits->max_body_bytes)
            lim.max_body_bytes = limits->max_body_bytes;
        if (limits->max_header_bytes)
            lim.max_header_bytes = limits->max_header_bytes;
        if (limits->timeout_s)
            lim.timeout_s = limits->timeout_s;
    }
    http_server_t *srv = xcalloc(1, sizeof(*srv));
    srv->metrics = metrics;
    srv->started_us = wall_us();
    srv->http = evhttp_new(base);
    if (!srv->http) {
        snprintf(errstr, errstr_size, "cannot create the HTTP server");
        goto err;
    }
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)lim.max_body_bytes);
    evhttp_set_max_headers_size(srv->http, (ev_ssize_t)lim.max_header_bytes);
    evhttp_set_timeout(srv->http, lim.timeout_s);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                              EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(srv->http, dispatch, srv);
    srv->sock = evhttp_bind_socket_with_handle(srv->http, addr, (ev_uint16_t)port);
    if (!srv->sock) {
        snprintf(errstr, errstr_size, "cannot listen on %s:%d (in use, or not a local address?)",
                 addr, port);
        goto err;
    }
    evutil_socket_t fd = evhttp_bound_socket_get_fd(srv->sock);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    if (metrics)
        srv->m_rejected =
            metrics_counter(metrics, "mlops_http_rejected_total",
                            "Requests rejected before routing (smuggling, no route).", NULL);
    return srv;
err:
    http_server_destroy(srv);
    return NULL;
}

void http_server_destroy(http_server_t *srv)
{
    if (!srv)
        return;
    if (srv->http)
        evhttp_free(srv->http);
    if (srv->on_destroy)
        srv->on_destroy(srv->on_destroy_arg);
    for (route_t *r = srv->routes, *rn; r; r = rn) {
        rn = r->next;
        free(r->path);
        free(r);
    }
    free(srv->service);
    free(srv);
}

void http_server_on_destroy(http_server_t *srv, void (*fn)(void *), void *arg)
{
    srv->on_destroy = fn;
    srv->on_destroy_arg = arg;
}

int http_server_port(const http_server_t *srv) { return srv->port; }
struct evhttp *http_server_evhttp(http_server_t *srv) { return srv->http; }

void http_server_set_limits(http_server_t *srv, const http_limits_t *limits)
{
    if (limits->max_body_bytes)
        evhttp_set_max_body_size(srv->http, (ev_ssize_t)limits->max_body_bytes);
    if (limits->max_header_bytes)
        evhttp_set_max_headers_size(srv->http, (ev_ssize_t)limits->max_header_bytes);
    if (limits->timeout_s)
        evhttp_set_timeout(srv->http, limits->timeout_s);
}

void http_route(http_server_t *srv, int methods, const char *path, http_handler_cb *cb, void *arg)
{
    route_t *r = xcalloc(1, sizeof(*r));
    r->methods = methods;
    size_t n = strlen(path);
    r->prefix = n && path[n - 1] == '*';
    r->path = xstrndup(path, r->prefix ? n - 1 : n);
    r->cb = cb;
    r->arg = arg;
    if (srv->metrics) {
        char l[256];
        r->m_2xx = metrics_counter(
            srv->metrics, "mlops_http_requests_total", "HTTP requests by route and status class.",
            metrics_labels(l, sizeof(l), "route", path, "code", "2xx", NULL));
        r->m_4xx =
            metrics_counter(srv->metrics, "mlops_http_requests_total", "",
                            metrics_labels(l, sizeof(l), "route", path, "code", "4xx", NULL));
        r->m_5xx =
            metrics_counter(srv->metrics, "mlops_http_requests_total", "",
                            metrics_labels(l, sizeof(l), "route", path, "code", "5xx", NULL));
        r->m_latency = metrics_histogram(
            srv->metrics, "mlops_http_request_duration_seconds", "HTTP request handling time.",
            metrics_labels(l, sizeof(l), "route", path, NULL), NULL, 0);
    }
    if (srv->routes_tail)
        srv->routes_tail->next = r;
    else
        srv->routes = r;
    srv->routes_tail = r;
}

/* Reject what a front proxy and we could read differently. */
static const char *smuggling_check(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    int ncl = 0, nte = 0;
    for (struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
        if (!strcasecmp(kv->key, "Content-Length"))
            ncl++;
        else if (!strcasecmp(kv->key, "Transfer-Encoding"))
            nte++;
    }
    if (ncl > 1)
        return "more than one Content-Length header";
    if (ncl && nte)
        return "both Content-Length and Transfer-Encoding";
    if (nte > 1)
        return "more than one Transfer-Encoding header";
    return NULL;
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    http_server_t *srv = arg;
    const char *bad = smuggling_check(req);
    if (bad) {
        if (srv->m_rejected)
            metric_inc(srv->m_rejected);
        http_reply_error(req, 400, "bad_request", "rejected: %s", bad);
        return;
    }
    char *path = http_path(req);
    if (!path) {
        http_reply_error(req, 400, "bad_request", "malformed request URI");
        return;
    }
    int method = (int)evhttp_request_get_command(req);
    route_t *match = NULL;
    bool path_known = false;
    for (route_t *r = srv->routes; r && !match; r = r->next) {
        bool hit = r->prefix ? str_starts_with(path, r->path) : !strcmp(path, r->path);
        if (!hit)
            continue;
        path_known = true;
        if (r->methods & method)
            match = r;
    }
    if (!match) {
        if (srv->m_rejected)
            metric_inc(srv->m_rejected);
        if (path_known)
            http_reply_error(req, 405, "method_not_allowed", "method not allowed on %s", path);
        else
            http_reply_error(req, 404, "not_found", "no such path: %s", path);
        free(path);
        return;
    }
    free(path);
    int64_t t0 = mono_us();
    match->cb(req, match->arg);
    if (match->m_latency) {
        metric_observe(match->m_latency, (double)(mono_us() - t0) / 1e6);
        int code = evhttp_request_get_response_code(req);
        if (code >= 500)
            metric_inc(match->m_5xx);
        else if (code >= 400)
            metric_inc(match->m_4xx);
        else if (code > 0)
            metric_inc(match->m_2xx);
    }
}

void http_reply_json(struct evhttp_request *req, int code, json_t *body)
{
    size_t len = 0;
    char *s = body ? mjson_dump(body, &len) : NULL;
    json_decref(body);
    if (!s) {
        static const char fallback[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"cannot encode the reply\"}}";
        http_reply_text(req, 500, "application/json", fallback, sizeof(fallback) - 1);
        return;
    }
    http_reply_text(req, code, "application/json", s, len);
    free(s);
}

void http_reply_error(struct evhttp_request *req, int code, const char *errcode, const char *fmt,
                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", errcode, "message", msg);
    free(msg);
    http_reply_json(req, code, body);
}

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

void http_reply_text(struct evhttp_request *req, int code, const char *content_type,
                     const char *body, size_t len)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Type", content_type);
    evhttp_add_header(oh, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    if (buf && len)
        evbuffer_add(buf, body, len);
    evhttp_send_reply(req, code, reason(code), buf);
    if (buf)
        evbuffer_free(buf);
}

char *http_body(struct evhttp_request *req, size_t *lenp)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = xmalloc(len + 1);
    evbuffer_copyout(in, body, len);
    body[len] = '\0';
    if (lenp)
        *lenp = len;
    return body;
}

char *http_path(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!raw || !*raw)
        raw = "/";
    size_t n = 0;
    char *dec = evhttp_uridecode(raw, 0, &n);
    if (!dec)
        return NULL;
    if (strlen(dec) != n) { /* an encoded NUL: refuse */
        free(dec);
        return NULL;
    }
    return dec;
}

/* ---- standard routes ---------------------------------------------------------- */

static json_t *status_body(http_server_t *srv)
{
    lc_state_t st = srv->lc ? lifecycle_state(srv->lc) : LC_READY;
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:s,s:I}", "status",
                  st == LC_DRAINING || st == LC_STOPPED ? "draining" : "ok", "service",
                  srv->service, "version", MLOPS_VERSION, "state", lifecycle_state_name(st),
                  "uptime_s", (json_int_t)((wall_us() - srv->started_us) / 1000000));
    if (srv->status_cb)
        srv->status_cb(body, srv->status_opaque);
    return body;
}

static void on_health(struct evhttp_request *req, void *arg)
{
    http_reply_json(req, 200, status_body(arg));
}

static void on_ready(struct evhttp_request *req, void *arg)
{
    http_server_t *srv = arg;
    json_t *body = status_body(srv);
    json_t *ready = json_object_get(body, "ready");
    bool ok =
        (!srv->lc || lifecycle_state(srv->lc) == LC_READY) && !(ready && json_is_false(ready));
    json_object_set_new(body, "ready", json_boolean(ok));
    http_reply_json(req, ok ? 200 : 503, body);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    http_server_t *srv = arg;
    strbuf_t sb;
    strbuf_init(&sb);
    metrics_render(srv->metrics, &sb);
    http_reply_text(req, 200, "text/plain; version=0.0.4", sb.data, sb.len);
    strbuf_cleanup(&sb);
}

void http_standard_routes(http_server_t *srv, const char *service, lifecycle_t *lc,
                          metrics_t *metrics, http_status_cb *status_cb, void *opaque)
{
    free(srv->service);
    srv->service = xstrdup(service);
    srv->lc = lc;
    srv->status_cb = status_cb;
    srv->status_opaque = opaque;
    http_route(srv, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/health", on_health, srv);
    http_route(srv, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/ready", on_ready, srv);
    if (metrics) {
        if (!srv->metrics)
            srv->metrics = metrics;
        http_route(srv, EVHTTP_REQ_GET, "/metrics", on_metrics, srv);
    }
}
