/*
 * mlopsctl train --model NAME [--last N | --range TOPIC:PARTITION:FROM-TO[,...]]
 *                [--algo A] [--seed S] [--reason TEXT] [--wait]
 *
 * Files one train_request/1 on train.requests (key: the model name) and,
 * with --wait, follows it through the trainer's GET /api/v1/requests/ID
 * until a version is registered (exit 0), the request failed (exit 1) or
 * the wait timed out (exit 1). FROM is the first offset read, TO the first
 * offset not read. Without --last or --range: the last 10,000 labelled
 * events.
 */
#include <event2/http.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "commands.h"
#include "httpc.h"
#include "kafka.h"
#include "lifecycle.h"
#include "log.h"
#include "mjson.h"
#include "util.h"

#define PROG "mlopsctl train"

typedef struct train_conf {
    char *model;
    int64_t last;
    char *range;
    char *algo;
    int64_t seed;
    char *reason;
    char *request_id;
    char *kafka_brokers;
    char *topic;
    bool wait;
    char *trainer_url;
    int64_t timeout_s;
} train_conf_t;

static const cfg_item_t train_items[] = {
    CFG_ITEM(train_conf_t, model, CFG_T_STR, NULL, 0, "the model to train (or the first argument)"),
    CFG_ITEM_RANGE(train_conf_t, last, CFG_T_INT, "0", 0,
                   "the last N labelled events (default 10000 when no --range)", 0, 1e9),
    CFG_ITEM(train_conf_t, range, CFG_T_STR, NULL, 0,
             "TOPIC:PARTITION:FROM-TO[,...]: offsets of the features (and labels) topics; TO is "
             "the first offset not read"),
    CFG_ITEM(train_conf_t, algo, CFG_T_STR, NULL, 0,
             "logreg, gbdt or auto (default: the trainer's)"),
    CFG_ITEM_RANGE(train_conf_t, seed, CFG_T_INT, "-1", 0, "seed (default: the trainer's)", -1,
                   4294967295.0),
    CFG_ITEM(train_conf_t, reason, CFG_T_STR, NULL, 0, "why, recorded in the request"),
    CFG_ITEM(train_conf_t, request_id, CFG_T_STR, NULL, 0,
             "request id (default: a new one; the trainer de-duplicates on it)"),
    CFG_ITEM(train_conf_t, kafka_brokers, CFG_T_STR, "127.0.0.1:9092", 0,
             "Kafka bootstrap servers"),
    CFG_ITEM(train_conf_t, topic, CFG_T_STR, "train.requests", 0, "the trainer's request topic"),
    CFG_ITEM(train_conf_t, wait, CFG_T_BOOL, "false", 0,
             "follow the request until a version is registered or it fails"),
    CFG_ITEM(train_conf_t, trainer_url, CFG_T_STR, "http://127.0.0.1:9102", 0,
             "the trainer's HTTP port (for --wait)"),
    CFG_ITEM_RANGE(train_conf_t, timeout_s, CFG_T_INT, "1800", 0, "--wait gives up after this", 1,
                   604800),
};

/* "features:0:0-1000" -> {topic, partition, from, to} */
static json_t *parse_range(const char *s, char *err, size_t size)
{
    const char *c2 = strrchr(s, ':');
    const char *dash = c2 ? strchr(c2, '-') : NULL;
    const char *c1 = NULL;
    for (const char *p = s; p < (c2 ? c2 : s); p++)
        if (*p == ':')
            c1 = p;
    int64_t part, from, to;
    if (!c1 || !dash || c1 == s) {
        snprintf(err, size, "--range '%s': use TOPIC:PARTITION:FROM-TO", s);
        return NULL;
    }
    char *ps = xstrndup(c1 + 1, (size_t)(c2 - c1 - 1)),
         *fs = xstrndup(c2 + 1, (size_t)(dash - c2 - 1));
    int bad = parse_int64(ps, &part) || parse_int64(fs, &from) || parse_int64(dash + 1, &to) ||
              part < 0 || part > INT32_MAX || from < 0 || to < from;
    free(ps);
    free(fs);
    if (bad) {
        snprintf(err, size,
                 "--range '%s': PARTITION, FROM and TO are integers, 0 <= FROM <= TO (TO is the "
                 "first offset not read)",
                 s);
        return NULL;
    }
    char *topic = xstrndup(s, (size_t)(c1 - s));
    json_t *r = json_pack("{s:s, s:I, s:I, s:I}", "topic", topic, "partition", (json_int_t)part,
                          "from", (json_int_t)from, "to", (json_int_t)to);
    free(topic);
    return r;
}

static int wait_for(const train_conf_t *c, const char *rid)
{
    char *enc = evhttp_uriencode(rid, -1, 0);
    char *url = xasprintf("%s/api/v1/requests/%s", c->trainer_url, enc);
    free(enc);
    int64_t deadline = mono_ms() + c->timeout_s * 1000;
    char last[64] = "", last_error[2048] = "";
    int code = MLOPS_EXIT_FAILURE;
    bool warned = false;
    while (mono_ms() < deadline) {
        httpc_resp_t r;
        if (httpc_request("GET", url, NULL, NULL, 5000, &r)) {
            if (!warned)
                fprintf(stderr, PROG ": waiting for the trainer at %s (%s)\n", c->trainer_url,
                        r.error);
            warned = true;
        } else if (r.status == 200) {
            json_error_t je;
            json_t *j = json_loadb(r.body, r.len, 0, &je);
            const char *st = json_string_value(json_object_get(j, "state"));
            if (st && strcmp(st, last)) {
                str_copy(last, st, sizeof(last));
                fprintf(stderr, PROG ": %s\n", st);
            }
            if (st && !strcmp(st, "registered")) {
                const json_t *alias = json_object_get(j, "alias");
                printf("%s version %lld registered from %lld rows (gates %s%s%s)\n",
                       json_string_value(json_object_get(j, "model")),
                       (long long)json_integer_value(json_object_get(j, "version")),
                       (long long)json_integer_value(json_object_get(j, "rows")),
                       json_is_true(json_object_get(j, "gates_passed")) ? "passed" : "failed",
                       json_is_string(alias) ? ", alias " : "",
                       json_is_string(alias) ? json_string_value(alias) : "");
                const char *e = json_string_value(json_object_get(j, "error"));
                if (e)
                    fprintf(stderr, PROG ": note: %s\n", e);
                code = MLOPS_EXIT_OK;
            } else if (st && !strcmp(st, "failed")) {
                fprintf(stderr, PROG ": the request failed: %s\n",
                        json_string_value(json_object_get(j, "error")));
            } else if (st && !strcmp(st, "retrying")) {
                const char *e = json_string_value(json_object_get(j, "error"));
                if (e && strcmp(last_error, e)) {
                    fprintf(stderr, PROG ": the trainer will retry: %s\n", e);
                    str_copy(last_error, e, sizeof(last_error));
                }
                st = NULL;
            } else {
                st = NULL;
            }
            json_decref(j);
            if (st) {
                httpc_resp_free(&r);
                free(url);
                return code;
            }
        }
        httpc_resp_free(&r);
        usleep(300000);
    }
    fprintf(stderr,
            PROG ": gave up after %lld s (the request stays queued; follow it with GET %s)\n",
            (long long)c->timeout_s, url);
    free(url);
    return MLOPS_EXIT_FAILURE;
}

int cmd_train(int argc, char **argv)
{
    train_conf_t c;
    char err[1024] = "";
    int code = MLOPS_EXIT_USAGE;
    json_t *req = NULL;
    kafka_producer_t *kp = NULL;
    cfg_t *cfg = cfg_new(PROG,
                         "--model NAME [--last N | --range TOPIC:PARTITION:FROM-TO[,...]] "
                         "[--algo A] [--seed S] [--wait]",
                         train_items, MLOPS_ARRAY_LEN(train_items), &c, sizeof(c));
    cfg_allow_positional(cfg, true);
    cfg_result_t r = cfg_init(cfg, argc, argv, stdout, err, sizeof(err));
    if (r != CFG_OK) {
        if (r == CFG_EXIT)
            code = MLOPS_EXIT_OK;
        else
            fprintf(stderr, PROG ": %s\n", err);
        goto done;
    }
    int npos;
    char **pos = cfg_positional(cfg, &npos);
    const char *model = c.model ? c.model : npos > 0 ? pos[0] : NULL;
    if (!model || !*model) {
        fprintf(stderr, PROG ": name the model: --model NAME\n");
        goto done;
    }
    if (npos > (c.model ? 0 : 1)) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", pos[c.model ? 0 : 1]);
        goto done;
    }
    if (c.last && c.range) {
        fprintf(stderr, PROG ": --last and --range are exclusive\n");
        goto done;
    }
    json_t *dataset;
    if (c.range) {
        json_t *ranges = json_array();
        char *copy = xstrdup(c.range), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            json_t *one = parse_range(tok, err, sizeof(err));
            if (!one) {
                fprintf(stderr, PROG ": %s\n", err);
                free(copy);
                json_decref(ranges);
                goto done;
            }
            json_array_append_new(ranges, one);
        }
        free(copy);
        dataset = json_pack("{s:s, s:o}", "kind", "ranges", "ranges", ranges);
    } else {
        dataset = json_pack("{s:s, s:I}", "kind", "latest", "latest",
                            (json_int_t)(c.last ? c.last : 10000));
    }
    char rid[80], ts[32];
    if (c.request_id)
        str_copy(rid, c.request_id, sizeof(rid));
    else
        snprintf(rid, sizeof(rid), "cli-%lld-%d", (long long)wall_us(), (int)getpid());
    json_t *params = json_object();
    if (c.algo)
        json_object_set_new(params, "algo", json_string(c.algo));
    if (c.seed >= 0)
        json_object_set_new(params, "seed", json_integer(c.seed));
    char user[64] = "mlopsctl";
    const char *u = getenv("USER");
    if (u && *u)
        snprintf(user, sizeof(user), "mlopsctl:%s", u);
    req =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:{s:s, s:s?}}", "schema", "train_request/1",
                  "request_id", c.request_id ? c.request_id : rid, "model", model, "requested_at",
                  fmt_rfc3339(wall_us(), ts, sizeof(ts)), "requested_by", user, "dataset", dataset,
                  "params", params, "reason", "kind", "manual", "text", c.reason);
    size_t len;
    char *payload = mjson_dump(req, &len);
    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(cfg, &nprops);
    kafka_opts_t ko = {.brokers = c.kafka_brokers,
                       .client_id = "mlopsctl-train",
                       .props = props,
                       .nprops = nprops};
    code = MLOPS_EXIT_FAILURE;
    log_set_level(LOG_LVL_WARN);
    kp = kafka_producer_new(&ko, NULL, NULL, NULL, err, sizeof(err));
    if (!kp) {
        fprintf(stderr, PROG ": Kafka at %s: %s\n", c.kafka_brokers, err);
        free(payload);
        goto done;
    }
    err_t *e = NULL;
    if (kafka_produce(kp, c.topic, RD_KAFKA_PARTITION_UA, model, strlen(model), payload, len, NULL,
                      &e)) {
        fprintf(stderr, PROG ": %s: %s\n", c.topic, e->msg);
        err_destroy(e);
        free(payload);
        goto done;
    }
    free(payload);
    if (kafka_producer_flush(kp, 15000)) {
        fprintf(stderr, PROG ": %s: the request was not acknowledged by Kafka at %s within 15 s\n",
                c.topic, c.kafka_brokers);
        goto done;
    }
    kafka_producer_stats_t st;
    kafka_producer_stats(kp, &st);
    if (st.failed) {
        fprintf(stderr, PROG ": %s: Kafka refused the request (does the topic exist?)\n", c.topic);
        goto done;
    }
    printf("filed train request %s for %s on %s\n", c.request_id ? c.request_id : rid, model,
           c.topic);
    fflush(stdout);
    code = c.wait ? wait_for(&c, c.request_id ? c.request_id : rid) : MLOPS_EXIT_OK;
done:
    kafka_producer_destroy(kp);
    json_decref(req);
    cfg_destroy(cfg);
    return code;
}
