/**
 * @file httpconn.h
 * @brief The connections of an http_server_t: a cap on how many are open at
 *        once, JSON bodies for the errors evhttp answers by itself, and a
 *        hook to make each connection's bufferevent (TLS).
 *
 * libevent 2.1 has neither a connection cap nor a hook for the error pages
 * it writes before any handler runs (a body over its limit, a malformed or
 * oversized header block: text/html); 2.2 adds evhttp_set_max_connections()
 * and evhttp_set_errorcb(). httpconn does both over 2.1's evhttp_set_bevcb().
 * The registry and the scorer use it, each with its own error shape.
 *
 * Ownership: the state is freed by http_server_destroy(), after evhttp has
 * closed every connection. The callbacks' @p arg must outlive the server.
 */
#ifndef MLOPS_HTTPCONN_H
#define MLOPS_HTTPCONN_H

#include <jansson.h>
#include <stdint.h>

#include "http.h"
#include "metrics.h"

struct bufferevent;
struct event_base;

typedef struct httpconn_conf {
    /** Metric names: PREFIX_connections (gauge), PREFIX_connections_refused_total,
     *  PREFIX_early_errors_total, e.g. "mlops_registry_http". */
    const char *metric_prefix;
    int64_t max_connections;  /**< open at once; beyond, 503 and close; <= 0: no cap */
    int64_t max_header_bytes; /**< how much of a refused request's head is read */
    /** The JSON body (new reference) for an error evhttp made itself: @p code
     *  413 (body over the limit), 400 (bad or oversized header block), other. */
    json_t *(*early_error)(void *arg, int code, const char *phrase);
    /** The JSON body of the 503 a connection over the cap gets. */
    json_t *(*refused_error)(void *arg);
    /** Each connection's bufferevent (fd set later by evhttp), e.g. TLS; NULL
     *  hook = a plain socket. A hook that returns NULL drops the connection
     *  (it never falls back to a plain one). */
    struct bufferevent *(*make_bev)(void *arg, struct event_base *base);
    void *arg;
} httpconn_conf_t;

/** Take over the making of @p srv's connections. Call once, before the loop
 *  runs. @p conf is copied (its prefix too). */
void httpconn_install(http_server_t *srv, metrics_t *metrics, const httpconn_conf_t *conf);

#endif
