#include "regclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"
#include "log.h"
#include "mjson.h"
#include "util.h"

char *regclient_token(const char *given, const char *state_dir, char *errstr, size_t errstr_size)
{
    if (given && *given)
        return xstrdup(given);
    char path[1100];
    snprintf(path, sizeof(path), "%s/registry/admin_token",
             state_dir ? state_dir : MLOPS_SOURCE_DIR "/.state");
    char why[512];
    char *tok = file_read_all(path, 4096, NULL, why, sizeof(why));
    if (!tok) {
        snprintf(errstr, errstr_size, "no token: set MLOPS_TOKEN or --token (%s)", why);
        return NULL;
    }
    size_t n = strlen(tok);
    while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
        tok[--n] = '\0';
    log_add_secret(tok);
    return tok;
}

long regclient_call(const regclient_t *rc, const char *method, const char *path, const json_t *body,
                    json_t **reply, char *errstr, size_t errstr_size)
{
    size_t len = 0;
    char *payload = body ? mjson_dump(body, &len) : NULL;
    long st = regclient_call_raw(rc, method, path, payload, len, NULL, reply, errstr, errstr_size);
    free(payload);
    return st;
}

long regclient_call_raw(const regclient_t *rc, const char *method, const char *path,
                        const char *data, size_t len, const char *header, json_t **reply,
                        char *errstr, size_t errstr_size)
{
    *reply = NULL;
    char *url = xasprintf("%s%s", rc->url, path);
    httpc_req_t q = {.method = method,
                     .url = url,
                     .body = data,
                     .body_len = len,
                     .token = rc->token,
                     .header = header,
                     .timeout_ms = (rc->timeout_s > 0 ? rc->timeout_s : 30L) * 1000,
                     .max_body = 256u << 20};
    httpc_resp_t r;
    long status = -1;
    if (httpc_send(&q, &r)) {
        snprintf(errstr, errstr_size, "%s %s: %s", method, rc->url, r.error);
    } else {
        status = r.status;
        err_t *e = NULL;
        if (r.len)
            *reply = mjson_parse(r.body, r.len, 256u << 20, &e);
        err_destroy(e);
    }
    httpc_resp_free(&r);
    free(url);
    return status;
}

const char *regclient_error(const json_t *reply)
{
    static _Thread_local char buf[1024];
    const char *code = json_string_value(json_object_get(reply, "error_code"));
    const char *msg = json_string_value(json_object_get(reply, "message"));
    if (!code && !msg)
        return "no JSON error in the reply";
    snprintf(buf, sizeof(buf), "%s: %s", code ? code : "error", msg ? msg : "");
    return buf;
}
