/*
 * The monitor's silence API (JSON, on its metrics port): silences are kept
 * in a Redis hash (id -> the silence as Alertmanager shapes it), which the
 * notifier re-reads; Redis runs with AOF, so they survive restarts.
 *
 *   GET    /api/v1/silences        all silences, each with status
 *                                  active | pending | expired
 *   POST   /api/v1/silences        create: {"matchers": [...], "startsAt"?,
 *                                  "endsAt" | "duration", "createdBy",
 *                                  "comment"} -> 201 {"silenceID": id}
 *   DELETE /api/v1/silences/{id}   expire it now (kept for the record)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "log.h"
#include "mjson.h"
#include "monitor.h"
#include "redis.h"
#include "spec.h"

struct silence_api {
    redis_client_t *rc;
    char *key;
};

silence_api_t *silence_api_new(const char *redis_url, int timeout_ms, const char *key, metrics_t *m,
                               char *err, size_t err_size)
{
    redis_opts_t ro = {.url = redis_url,
                       .timeout_ms = timeout_ms,
                       .metrics = m,
                       .metrics_labels = "client=\"silences\""};
    redis_client_t *rc = redis_client_new(&ro, err, err_size);
    if (!rc)
        return NULL;
    silence_api_t *api = xcalloc(1, sizeof(*api));
    api->rc = rc;
    api->key = xstrdup(key);
    return api;
}

void silence_api_destroy(silence_api_t *api)
{
    if (!api)
        return;
    redis_client_destroy(api->rc);
    free(api->key);
    free(api);
}

static void redis_down(struct evhttp_request *req, err_t *e)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "2");
    http_reply_error(req, 503, "redis_unavailable", "the silence store is unavailable: %s",
                     e ? e->msg : "?");
    err_destroy(e);
}

static const char *status_of(const alert_silence_t *s, const json_t *j, int64_t now_ms)
{
    if (now_ms >= alert_silence_ends_ms(s))
        return "expired";
    json_t *st = json_string(json_string_value(json_object_get(j, "startsAt")));
    int64_t starts = 0;
    int rc = st ? spec_parse_time(st, &starts) : -1;
    json_decref(st);
    return rc == 0 && now_ms < starts ? "pending" : "active";
}

static void list(silence_api_t *api, struct evhttp_request *req)
{
    const char *argv[] = {"HGETALL", api->key};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(api->rc, &e, 2, argv, NULL);
    if (!r) {
        redis_down(req, e);
        return;
    }
    json_t *out = json_array();
    int64_t now = wall_ms();
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        json_t *j = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0, NULL);
        char err[256];
        alert_silence_t *s = j ? alert_silence_parse(j, err, sizeof(err)) : NULL;
        if (s) {
            json_object_set_new(j, "status", json_string(status_of(s, j, now)));
            json_array_append(out, j);
        }
        alert_silence_destroy(s);
        json_decref(j);
    }
    freeReplyObject(r);
    http_reply_json(req, 200, out);
}

static void create(silence_api_t *api, struct evhttp_request *req)
{
    size_t len;
    char *body = http_body(req, &len);
    err_t *e = NULL;
    json_t *j = mjson_parse_object(body, len, 1 << 20, &e);
    free(body);
    if (!j) {
        http_reply_error(req, 400, "bad_json", "the body must be a JSON object: %s",
                         e ? e->msg : "?");
        err_destroy(e);
        return;
    }
    char ts[32];
    int64_t now = wall_ms();
    if (!json_object_get(j, "startsAt"))
        json_object_set_new(j, "startsAt", json_string(fmt_rfc3339(now * 1000, ts, sizeof(ts))));
    json_t *dur = json_object_get(j, "duration");
    if (dur) {
        int64_t ms = json_is_string(dur) ? alert_duration_ms(json_string_value(dur)) : -1;
        if (ms <= 0 || json_object_get(j, "endsAt")) {
            http_reply_error(req, 400, "bad_request",
                             "duration: give one such as \"2h\" or \"30m\" (and no endsAt)");
            json_decref(j);
            return;
        }
        json_t *st = json_object_get(j, "startsAt");
        int64_t starts = now;
        if (spec_parse_time(st, &starts))
            starts = now;
        json_object_set_new(j, "endsAt",
                            json_string(fmt_rfc3339((starts + ms) * 1000, ts, sizeof(ts))));
        json_object_del(j, "duration");
    }
    const char *by = json_string_value(json_object_get(j, "createdBy"));
    const char *comment = json_string_value(json_object_get(j, "comment"));
    if (!by || !*by || !comment) {
        http_reply_error(req, 400, "bad_request",
                         "createdBy (non-empty) and comment are required strings");
        json_decref(j);
        return;
    }
    char err[256];
    alert_silence_t *s = alert_silence_parse(j, err, sizeof(err));
    if (!s) {
        http_reply_error(req, 400, "bad_request", "silence: %s", err);
        json_decref(j);
        return;
    }
    alert_silence_destroy(s);
    char id[40];
    char hex[65];
    char seed[64];
    snprintf(seed, sizeof(seed), "%lld-%lld-%p", (long long)wall_us(), (long long)mono_us(),
             (void *)j);
    sha256_hex(seed, strlen(seed), hex);
    snprintf(id, sizeof(id), "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
    json_object_set_new(j, "id", json_string(id));
    json_object_set_new(j, "updatedAt", json_string(fmt_rfc3339(now * 1000, ts, sizeof(ts))));
    char *txt = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    const char *argv[] = {"HSET", api->key, id, txt};
    redisReply *r = redis_command_argv(api->rc, &e, 4, argv, NULL);
    free(txt);
    if (!r) {
        redis_down(req, e);
        return;
    }
    freeReplyObject(r);
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("silence", id), LOG_STR("created_by", by)),
             "silence created");
    http_reply_json(req, 201, json_pack("{s:s}", "silenceID", id));
}

static void expire(silence_api_t *api, struct evhttp_request *req, const char *id)
{
    const char *argv[] = {"HGET", api->key, id};
    err_t *e = NULL;
    redisReply *r = redis_command_argv(api->rc, &e, 3, argv, NULL);
    if (!r) {
        redis_down(req, e);
        return;
    }
    json_t *j = r->type == REDIS_REPLY_STRING ? json_loadb(r->str, r->len, 0, NULL) : NULL;
    freeReplyObject(r);
    if (!j) {
        http_reply_error(req, 404, "not_found", "no silence with id %s", id);
        return;
    }
    char ts[32];
    int64_t now = wall_ms();
    /* expired now, kept for the record; a start in the future moves back */
    json_t *st = json_object_get(j, "startsAt");
    int64_t starts = now;
    if (spec_parse_time(st, &starts) == 0 && starts >= now)
        json_object_set_new(j, "startsAt",
                            json_string(fmt_rfc3339((now - 1) * 1000, ts, sizeof(ts))));
    json_object_set_new(j, "endsAt", json_string(fmt_rfc3339(now * 1000, ts, sizeof(ts))));
    json_object_set_new(j, "updatedAt", json_string(fmt_rfc3339(now * 1000, ts, sizeof(ts))));
    char *txt = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    const char *argv2[] = {"HSET", api->key, id, txt};
    r = redis_command_argv(api->rc, &e, 4, argv2, NULL);
    free(txt);
    if (!r) {
        redis_down(req, e);
        return;
    }
    freeReplyObject(r);
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("silence", id)), "silence expired");
    http_reply_json(req, 200, json_pack("{s:s,s:s}", "silenceID", id, "status", "expired"));
}

static void route(struct evhttp_request *req, void *arg)
{
    silence_api_t *api = arg;
    char *path = http_path(req);
    const char *base = "/api/v1/silences";
    const char *rest = path + strlen(base);
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (!*rest) {
        if (m == EVHTTP_REQ_GET)
            list(api, req);
        else if (m == EVHTTP_REQ_POST)
            create(api, req);
        else
            http_reply_error(req, 405, "method_not_allowed", "use GET or POST on %s", base);
    } else if (*rest == '/' && rest[1] && !strchr(rest + 1, '/') && strlen(rest + 1) < 64) {
        if (m == EVHTTP_REQ_DELETE)
            expire(api, req, rest + 1);
        else
            http_reply_error(req, 405, "method_not_allowed", "use DELETE on %s/{id}", base);
    } else {
        http_reply_error(req, 404, "not_found", "no such path: %s", path);
    }
    free(path);
}

void silence_api_routes(silence_api_t *api, http_server_t *srv)
{
    int any =
        EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH;
    http_route(srv, any, "/api/v1/silences", route, api);
    http_route(srv, any, "/api/v1/silences/*", route, api);
}
