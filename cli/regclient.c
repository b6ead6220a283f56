#include "regclient.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    strbuf_append(arg, ptr, size * nmemb);
    return size * nmemb;
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
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(errstr, errstr_size, "cannot start libcurl");
        return -1;
    }
    char *url = xasprintf("%s%s", rc->url, path);
    char *auth = xasprintf("Authorization: Bearer %s", rc->token);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (header)
        hdrs = curl_slist_append(hdrs, header);
    strbuf_t out;
    strbuf_init(&out);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, rc->timeout_s > 0 ? rc->timeout_s : 30L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (data) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    long status = -1;
    CURLcode cc = curl_easy_perform(curl);
    if (cc != CURLE_OK) {
        snprintf(errstr, errstr_size, "%s %s: %s", method, rc->url, curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        err_t *e = NULL;
        if (out.len)
            *reply = mjson_parse(out.data, out.len, 256u << 20, &e);
        err_destroy(e);
    }
    strbuf_cleanup(&out);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    free(auth);
    free(url);
    return status;
}

const char *regclient_error(const json_t *reply)
{
    static char buf[1024];
    const char *code = json_string_value(json_object_get(reply, "error_code"));
    const char *msg = json_string_value(json_object_get(reply, "message"));
    if (!code && !msg)
        return "no JSON error in the reply";
    snprintf(buf, sizeof(buf), "%s: %s", code ? code : "error", msg ? msg : "");
    return buf;
}
