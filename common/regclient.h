/* A small HTTP client for mlops-registry (libcurl), shared by the mlopsctl
 * commands that talk to it and the streaming trainer. mlopsctl's admin token
 * comes from --token, MLOPS_TOKEN or the registry's first-start token file
 * under the state folder. */
#ifndef MLOPS_REGCLIENT_H
#define MLOPS_REGCLIENT_H

#include <jansson.h>
#include <stddef.h>

typedef struct regclient {
    const char *url;   /**< e.g. http://127.0.0.1:8080 (borrowed) */
    const char *token; /**< bearer token (borrowed) */
    long timeout_s;
} regclient_t;

/**
 * The token to use: @p given if set, else the content of
 * <state_dir>/registry/admin_token. Returns a heap string (caller frees) or
 * NULL with errstr.
 */
char *regclient_token(const char *given, const char *state_dir, char *errstr, size_t errstr_size);

/**
 * Send @p method @p path with an optional JSON @p body (borrowed). Returns
 * the HTTP status (and *reply, a new reference, when the answer is JSON),
 * or -1 with errstr when no answer came.
 */
long regclient_call(const regclient_t *rc, const char *method, const char *path, const json_t *body,
                    json_t **reply, char *errstr, size_t errstr_size);

/** As regclient_call() with a raw body of @p len bytes and extra headers (httpc.h; may be NULL). */
long regclient_call_raw(const regclient_t *rc, const char *method, const char *path,
                        const char *data, size_t len, const char *header, json_t **reply,
                        char *errstr, size_t errstr_size);

/** "error_code: message" of an error reply, for messages (in a thread-local buffer). */
const char *regclient_error(const json_t *reply);

#endif
