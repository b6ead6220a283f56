/* A small HTTP client (libcurl) for mlopsctl, the monitor and the trainer:
 * one request, the whole response body, errors that name the URL's host and
 * what went wrong. Thread-safe (one curl handle per request). */
#ifndef MLOPS_HTTPC_H
#define MLOPS_HTTPC_H

#include <stddef.h>

typedef struct httpc_resp {
    long status; /**< 0 if no response */
    char *body;  /**< NUL-terminated, caller frees (httpc_resp_free) */
    size_t len;
    char error[256]; /**< transport error, "" if none */
} httpc_resp_t;

/** One request; only method and url are required. */
typedef struct httpc_req {
    const char *method;
    const char *url;
    const char *body;   /**< JSON, sent with Content-Type: application/json; NULL for none */
    size_t body_len;    /**< 0: strlen(body) */
    const char *token;  /**< bearer token; NULL for none */
    const char *header; /**< extra "Name: value" headers, one per line ('\\n'); NULL for none */
    long timeout_ms;    /**< total; 0: 30 s */
    size_t max_body;    /**< response bytes kept before failing; 0: 64 MiB */
} httpc_req_t;

/**
 * Send @p q. Returns 0 when a response came back (any status), -1 on a
 * transport error (r->error says which, in curl's words).
 */
int httpc_send(const httpc_req_t *q, httpc_resp_t *r);

/** httpc_send() of @p method @p url with an optional JSON @p body and bearer @p token. */
int httpc_request(const char *method, const char *url, const char *body, const char *token,
                  long timeout_ms, httpc_resp_t *r);
void httpc_resp_free(httpc_resp_t *r);

#endif
