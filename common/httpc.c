/* The libcurl client of mlopsctl, the monitor and the trainer (see httpc.h). */
#include "httpc.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define HTTPC_MAX_BODY (64u << 20)

typedef struct sink {
    httpc_resp_t *r;
    size_t max;
} sink_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink_t *k = userdata;
    httpc_resp_t *r = k->r;
    size_t n = size * nmemb;
    if (r->len + n > k->max)
        return 0; /* makes curl fail with a write error */
    r->body = xrealloc(r->body, r->len + n + 1);
    memcpy(r->body + r->len, ptr, n);
    r->len += n;
    r->body[r->len] = 0;
    return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int httpc_send(const httpc_req_t *q, httpc_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    r->body = xstrdup("");
    pthread_once(&curl_once, curl_init_once);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(r->error, sizeof(r->error), "cannot create a libcurl handle");
        return -1;
    }
    struct curl_slist *hdrs = NULL;
    if (q->body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    char *auth = q->token ? xasprintf("Authorization: Bearer %s", q->token) : NULL;
    if (auth)
        hdrs = curl_slist_append(hdrs, auth);
    for (const char *hp = q->header; hp && *hp;) {
        const char *nl = strchr(hp, '\n');
        size_t n = nl ? (size_t)(nl - hp) : strlen(hp);
        char *one = xstrndup(hp, n);
        hdrs = curl_slist_append(hdrs, one);
        free(one);
        hp = nl ? nl + 1 : hp + n;
    }
    sink_t sink = {r, q->max_body ? q->max_body : HTTPC_MAX_BODY};
    curl_easy_setopt(h, CURLOPT_URL, q->url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, q->timeout_ms > 0 ? q->timeout_ms : 30000L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (q->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(q->body_len ? q->body_len : strlen(q->body)));
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mlops/" MLOPS_VERSION);
    CURLcode rc = curl_easy_perform(h);
    int ret = 0;
    if (rc != CURLE_OK) {
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(rc));
        ret = -1;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    }
    curl_slist_free_all(hdrs);
    free(auth);
    curl_easy_cleanup(h);
    return ret;
}

int httpc_request(const char *method, const char *url, const char *body, const char *token,
                  long timeout_ms, httpc_resp_t *r)
{
    httpc_req_t q = {
        .method = method, .url = url, .body = body, .token = token, .timeout_ms = timeout_ms};
    return httpc_send(&q, r);
}

void httpc_resp_free(httpc_resp_t *r)
{
    free(r->body);
    r->body = NULL;
}
