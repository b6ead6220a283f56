/* A small HTTP client for mlopsctl (libcurl): one request, the whole
 * response body, errors that name the URL's host and what went wrong. */
#ifndef MLOPS_CLI_HTTPC_H
#define MLOPS_CLI_HTTPC_H

#include <stddef.h>

typedef struct httpc_resp {
    long status; /**< 0 if no response */
    char *body;  /**< NUL-terminated, caller frees (httpc_resp_free) */
    size_t len;
    char error[256]; /**< transport error, "" if none */
} httpc_resp_t;

/**
 * Send @p method to @p url with an optional JSON @p body and bearer
 * @p token (NULL for none). Returns 0 when a response came back (any
 * status), -1 on a transport error (r->error says which).
 */
int httpc_request(const char *method, const char *url, const char *body, const char *token,
                  long timeout_ms, httpc_resp_t *r);
void httpc_resp_free(httpc_resp_t *r);

#endif
