/**
 * @file http.h
 * @brief An evhttp server with routes, limits, JSON replies and the
 *        standard /health, /ready and /metrics endpoints.
 *
 * libevent 2.1 is unlimited by default; this module always sets a body
 * limit, a header limit and a timeout, and rejects requests that carry
 * conflicting Content-Length / Transfer-Encoding headers (request
 * smuggling). Every route gets request counters by status class and a
 * latency histogram.
 *
 * Ownership: the server owns its routes; handlers borrow the request and
 * must reply exactly once (evhttp rule). http_reply_json() steals @p body.
 */
#ifndef MLOPS_HTTP_H
#define MLOPS_HTTP_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lifecycle.h"
#include "metrics.h"
#include "util.h"

struct event_base;

typedef struct http_limits {
    size_t max_body_bytes;   /**< default 1 MiB */
    size_t max_header_bytes; /**< default 16 KiB */
    int timeout_s;           /**< read/write timeout; default 30 */
} http_limits_t;

typedef struct http_server http_server_t;

/** A route handler. @p arg is what http_route() was given. */
typedef void(http_handler_cb)(struct evhttp_request *req, void *arg);

/**
 * Called for /health and /ready: add fields to @p status. Set "status" to
 * "degraded" to report a degraded service (still live), and "ready" to
 * false to fail readiness.
 */
typedef void(http_status_cb)(json_t *status, void *opaque);

/**
 * Listen on @p addr:@p port (port 0 = any free port; read it back with
 * http_server_port()). NULL @p limits = defaults. @p metrics may be NULL.
 */
http_server_t *http_server_new(struct event_base *base, const char *addr, int port,
                               const http_limits_t *limits, metrics_t *metrics, char *errstr,
                               size_t errstr_size);
void http_server_destroy(http_server_t *srv);
/**
 * Replace the body, header and timeout limits of a running server (0 keeps
 * a field's current value). For services whose limits come from their own
 * configuration.
 */
void http_server_set_limits(http_server_t *srv, const http_limits_t *limits);
int http_server_port(const http_server_t *srv);
/**
 * Call @p fn(@p arg) in http_server_destroy(), after evhttp_free() has closed
 * every connection (for state the connections' callbacks use). One per server.
 */
void http_server_on_destroy(http_server_t *srv, void (*fn)(void *), void *arg);
/** The underlying evhttp (borrowed), e.g. for evhttp_set_bevcb() (TLS). */
struct evhttp *http_server_evhttp(http_server_t *srv);

/**
 * Add a route: @p methods is a mask of EVHTTP_REQ_*; @p path matches
 * exactly, or as a prefix if it ends with an asterisk, e.g. "/api/2.0/" + "*".
 * First match wins. Unknown paths get 404, known paths with another method
 * 405, both as JSON errors.
 */
void http_route(http_server_t *srv, int methods, const char *path, http_handler_cb *cb, void *arg);

/**
 * Add GET /health (200 while live; body has status, service, version,
 * state), GET /ready (200 when the life cycle is ready and the status
 * callback did not set ready=false, else 503) and GET /metrics (Prometheus
 * text). @p status_cb may be NULL.
 */
void http_standard_routes(http_server_t *srv, const char *service, lifecycle_t *lc,
                          metrics_t *metrics, http_status_cb *status_cb, void *opaque);

/** Reply with a JSON body (stolen) and status @p code. */
void http_reply_json(struct evhttp_request *req, int code, json_t *body);
/**
 * Reply with {"error":{"code":ERRCODE,"message":MSG}} and status @p code.
 * The message is what a client needs to fix the request.
 */
void http_reply_error(struct evhttp_request *req, int code, const char *errcode, const char *fmt,
                      ...) MLOPS_PRINTF(4, 5);
/** Reply with a plain-text body. */
void http_reply_text(struct evhttp_request *req, int code, const char *content_type,
                     const char *body, size_t len);

/**
 * Copy the request body into a NUL-terminated heap buffer (caller frees).
 * The server's body limit has already been enforced by evhttp.
 */
char *http_body(struct evhttp_request *req, size_t *lenp);

/** The request path without the query string, URL-decoded (caller frees). */
char *http_path(struct evhttp_request *req);

#endif
