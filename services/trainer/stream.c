/*
 * mlops-trainer, the service: train.requests -> a dataset joined from the
 * features and labels topics -> fit_run() (the code of `mlops-trainer fit`)
 * -> a new version in the registry (HTTP, with an idempotency key) -> the
 * challenger alias when the gates pass.
 *
 * Threads: the event loop (HTTP, metrics, the consumer, one 100 ms tick)
 * and one worker that runs a request start to end. One request at a time:
 * the loop polls the next one only when the worker is done, and stores and
 * commits a request's offset only when it is finished (registered, or
 * refused for good). A transient failure (registry or Kafka unreachable)
 * keeps the message and runs it again after retry_ms.
 *
 * Each request leaves a record under <state_dir>/trainer/requests/, named
 * by the sha256 of its request_id: the de-duplication (a request_id already
 * registered is not trained again), the answer of GET /api/v1/requests/ID
 * (what `mlopsctl train --wait` follows) and, between training and
 * registration, the artifact itself, so a restart registers the same bytes
 * and the registry's idempotency record answers with the same version.
 */
#include "stream.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "fit.h"
#include "hmap.h"
#include "httpc.h"
#include "kafka.h"
#include "krange.h"
#include "log.h"
#include "mjson.h"
#include "model.h"
#include "regclient.h"
#include "service.h"
#include "spec.h"

#define TRAIN_REQUEST_SCHEMA "train_request/1"
#define FEATURES_SCHEMA "features/1"
#define LABEL_SCHEMA "label/1"
#define MAX_RANGES 64

typedef struct trainer_conf {
    SERVICE_COMMON_FIELDS;
    char *group_id;
    char *requests_topic;
    char *features_topic;
    char *labels_topic;
    char *registry_url;
    char *registry_token;
    int64_t registry_timeout_ms;
    char *state_dir;
    char *spec;
    char *alias;
    char *algo;
    int64_t seed;
    double min_auc;
    double max_log_loss;
    int64_t min_rows;
    double max_auc_drop;
    int64_t max_rows;
    int64_t max_request_bytes;
    int64_t retry_ms;
} trainer_conf_t;

static const cfg_item_t trainer_items[] = {
    SERVICE_COMMON_ITEMS(trainer_conf_t, "9102"),
    CFG_ITEM(trainer_conf_t, group_id, CFG_T_STR, "mlops-trainer", 0, "consumer group"),
    CFG_ITEM(trainer_conf_t, requests_topic, CFG_T_STR, "train.requests", 0,
             "where train_request/1 records come from"),
    CFG_ITEM(trainer_conf_t, features_topic, CFG_T_STR, "features", 0,
             "the features/1 topic datasets are read from"),
    CFG_ITEM(trainer_conf_t, labels_topic, CFG_T_STR, "labels", 0,
             "the label/1 topic joined by event id"),
    CFG_ITEM(trainer_conf_t, registry_url, CFG_T_STR, "http://127.0.0.1:8080", 0,
             "mlops-registry's HTTP API"),
    CFG_ITEM(trainer_conf_t, registry_token, CFG_T_STR, NULL, CFG_SECRET,
             "a registry token with the trainer role (mlopsctl token create --role trainer); "
             "registry_token_file reads it from a file"),
    CFG_ITEM_RANGE(trainer_conf_t, registry_timeout_ms, CFG_T_INT, "30000", 0,
                   "deadline of one registry call", 100, 600000),
    CFG_ITEM(trainer_conf_t, state_dir, CFG_T_STR, MLOPS_SOURCE_DIR "/.state", 0,
             "state folder (MLOPS_STATE_DIR); request records go under <state_dir>/trainer"),
    CFG_ITEM(trainer_conf_t, spec, CFG_T_STR, NULL, 0,
             "feature spec of the features topic (default: the one embedded in the model's "
             "champion)"),
    CFG_ITEM(trainer_conf_t, alias, CFG_T_STR, "challenger", 0,
             "alias set on a new version whose gates pass (empty: none)"),
    CFG_ITEM(trainer_conf_t, algo, CFG_T_STR, "auto", 0,
             "default algorithm: logreg, gbdt or auto (a request's params.algo overrides)"),
    CFG_ITEM_RANGE(trainer_conf_t, seed, CFG_T_INT, "1", 0, "default seed", 0, 4294967295.0),
    CFG_ITEM_RANGE(trainer_conf_t, min_auc, CFG_T_DBL, "0", 0,
                   "gate: lowest held-out AUC (0 = no gate)", 0, 1),
    CFG_ITEM_RANGE(trainer_conf_t, max_log_loss, CFG_T_DBL, "0", 0,
                   "gate: highest held-out log loss (0 = no gate)", 0, 1e6),
    CFG_ITEM_RANGE(trainer_conf_t, min_rows, CFG_T_INT, "100", 0,
                   "gate: fewest training rows (0 = no gate)", 0, 1e12),
    CFG_ITEM_RANGE(trainer_conf_t, max_auc_drop, CFG_T_DBL, "0.02", 0,
                   "gate: largest held-out AUC drop against the champion, scored on the same "
                   "rows (-1 = no gate)",
                   -1, 1),
    CFG_ITEM_RANGE(trainer_conf_t, max_rows, CFG_T_INT, "2000000", 0,
                   "most labelled rows in one dataset (more is an error naming the request)", 10,
                   1e9),
    CFG_ITEM_RANGE(trainer_conf_t, max_request_bytes, CFG_T_INT, "65536", 0,
                   "largest train_request/1 record", 256, 16777216),
    CFG_ITEM_RANGE(trainer_conf_t, retry_ms, CFG_T_INT, "5000", 0,
                   "wait before running a request again after a transient failure", 10, 3600000),
};

typedef enum job_outcome {
    JOB_REGISTERED = 0, /* a version (or the one an earlier run registered) */
    JOB_SKIPPED,        /* the request_id was handled before */
    JOB_FAILED,         /* refused for good: bad request, bad data; committed */
    JOB_RETRY,          /* transient: run again later; not committed */
} job_outcome_t;

static const char *const outcome_names[] = {"registered", "skipped", "failed", "retry"};

typedef struct trainer trainer_t;

typedef struct range {
    char topic[256];
    int32_t partition;
    int64_t from, to; /* to: exclusive */
    size_t rows;      /* records read */
} range_t;

typedef struct job {
    trainer_t *t;
    rd_kafka_message_t *rkm; /* borrowed from trainer_t.held */
    char where[320];         /* "train.requests [0] @ 12" */
    pthread_t th;
    atomic_bool finished;
    job_outcome_t outcome;
    char error[2048];
    json_t *req;
    const char *request_id, *model;
    char key[65]; /* sha256 of the request id */
    char state_path[1200], model_path[1200];
    int64_t version;
    bool gates_passed, alias_set;
    size_t rows;
    double seconds;
    int64_t started_ms;
    char stage[96];
    /* the dataset */
    const spec_t *spec; /* the one trained with: owned by spec_own or champion */
    spec_t *spec_own;
    char spec_source[320];
    model_t *champion;
    int64_t champion_version;
    char champion_sha[65];
    json_t *lineage_ranges;
    int64_t t0_us;
} job_t;

struct trainer {
    service_t *svc;
    trainer_conf_t *conf;
    kafka_consumer_t *kc;
    struct event *ev_tick;
    job_t *job;
    rd_kafka_message_t *held; /* the request being handled (or waiting for a retry) */
    int64_t retry_at_ms;
    int attempts;
    bool draining;
    atomic_bool cancel;
    pthread_mutex_t mu; /* job->stage, for /health while the worker runs */
    char reqdir[1100];
    kafka_opts_t ko;
    metric_t *m_outcome[4];
    metric_t *m_busy, *m_rows, *m_seconds, *m_last_version;
};

/* ---- small helpers ---- */

static int job_fail(job_t *j, job_outcome_t o, const char *fmt, ...) MLOPS_PRINTF(3, 4);
static int job_fail(job_t *j, job_outcome_t o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error, sizeof(j->error), fmt, ap);
    va_end(ap);
    j->outcome = o;
    return -1;
}

static void job_stage(job_t *j, const char *stage)
{
    pthread_mutex_lock(&j->t->mu);
    str_copy(j->stage, stage, sizeof(j->stage));
    pthread_mutex_unlock(&j->t->mu);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("request_id", j->request_id ? j->request_id : ""),
                        LOG_STR("model", j->model ? j->model : ""), LOG_STR("stage", stage)),
             "request %s: %s", j->where, stage);
}

static void fit_progress(const char *line, void *arg)
{
    job_t *j = arg;
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("request_id", j->request_id), LOG_STR("model", j->model),
                        LOG_STR("stage", "fit")),
             "%s", line);
}

static char *url_enc(const char *s)
{
    char *e = evhttp_uriencode(s, -1, 0);
    return e ? e : xstrdup("");
}

static int mkdir_p(const char *path)
{
    char buf[1100];
    str_copy(buf, path, sizeof(buf));
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0750) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0750) && errno != EEXIST ? -1 : 0;
}

/* The request's record: what GET /api/v1/requests/ID answers. */
static void write_record(job_t *j, const char *state)
{
    char ts[32];
    json_t *rec =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:s}", "schema", "train_result/1",
                  "request_id", j->request_id, "model", j->model, "state", state, "topic",
                  rd_kafka_topic_name(j->rkm->rkt), "partition", (int)j->rkm->partition, "offset",
                  (json_int_t)j->rkm->offset, "updated_at", fmt_rfc3339(wall_us(), ts, sizeof(ts)));
    if (j->version > 0) {
        json_object_set_new(rec, "version", json_integer((json_int_t)j->version));
        json_object_set_new(rec, "gates_passed", json_boolean(j->gates_passed));
        json_object_set_new(rec, "alias",
                            j->alias_set ? json_string(j->t->conf->alias) : json_null());
    }
    if (j->rows)
        json_object_set_new(rec, "rows", json_integer((json_int_t)j->rows));
    if (j->error[0])
        json_object_set_new(rec, "error", json_string(j->error));
    char e[512];
    if (model_write_file(rec, j->state_path, e, sizeof(e)))
        log_warn("request %s: cannot write its record: %s", j->where, e);
    json_decref(rec);
}

/* ---- the request ---- */

static int parse_request(job_t *j)
{
    const rd_kafka_message_t *m = j->rkm;
    trainer_conf_t *c = j->t->conf;
    if (m->len > (size_t)c->max_request_bytes)
        return job_fail(j, JOB_FAILED,
                        "%s: the record is %zu bytes, more than max_request_bytes %lld", j->where,
                        m->len, (long long)c->max_request_bytes);
    err_t *e = NULL;
    j->req = mjson_parse_object(m->payload, m->len, (size_t)c->max_request_bytes, &e);
    if (!j->req) {
        job_fail(j, JOB_FAILED, "%s: not a JSON object: %s", j->where, e ? e->msg : "?");
        err_destroy(e);
        return -1;
    }
    const char *schema = json_string_value(json_object_get(j->req, "schema"));
    if (!schema || strcmp(schema, TRAIN_REQUEST_SCHEMA))
        return job_fail(j, JOB_FAILED, "%s: schema must be \"%s\"", j->where, TRAIN_REQUEST_SCHEMA);
    j->request_id = json_string_value(json_object_get(j->req, "request_id"));
    if (!j->request_id || !*j->request_id || strlen(j->request_id) > 256)
        return job_fail(j, JOB_FAILED, "%s: request_id must be a string of 1 to 256 characters",
                        j->where);
    j->model = json_string_value(json_object_get(j->req, "model"));
    if (!j->model || !*j->model || strlen(j->model) > 256)
        return job_fail(j, JOB_FAILED, "%s: model must be a string of 1 to 256 characters",
                        j->where);
    const json_t *ds = json_object_get(j->req, "dataset");
    const char *kind = json_string_value(json_object_get(ds, "kind"));
    if (!json_is_object(ds) || !kind || (strcmp(kind, "latest") && strcmp(kind, "ranges")))
        return job_fail(j, JOB_FAILED,
                        "%s: dataset must be {\"kind\":\"latest\",\"latest\":N} or "
                        "{\"kind\":\"ranges\",\"ranges\":[...]}",
                        j->where);
    const json_t *params = json_object_get(j->req, "params");
    if (params && !json_is_object(params) && !json_is_null(params))
        return job_fail(j, JOB_FAILED, "%s: params must be an object", j->where);
    return 0;
}

/* The request's params as `fit` options, over the service's defaults. Only
 * training settings: a request cannot name files on the trainer's host. */
static const char *const allowed_params[] = {
    "algo",           "seed",
    "valid_fraction", "c",
    "class_weight",   "penalty",
    "n_trees",        "max_depth",
    "growth",         "max_leaves",
    "learning_rate",  "lambda",
    "gamma",          "min_child_weight",
    "subsample",      "colsample",
    "max_bins",       "early_stopping",
    "min_auc",        "max_log_loss",
    "min_rows",       "max_auc_drop",
    "profile_sample",
};

static int fit_conf_for(job_t *j, fit_conf_t *fc, cfg_t **cfgp)
{
    trainer_conf_t *c = j->t->conf;
    char **argv = xcalloc(2 * (MLOPS_ARRAY_LEN(allowed_params) + 16) + 2, sizeof(char *));
    int argc = 0;
    argv[argc++] = xstrdup("fit");
#define OPT(k, ...)                                                                                \
    do {                                                                                           \
        argv[argc++] = xstrdup("--" k);                                                            \
        argv[argc++] = xasprintf(__VA_ARGS__);                                                     \
    } while (0)
    OPT("algo", "%s", c->algo);
    OPT("seed", "%lld", (long long)c->seed);
    OPT("min-auc", "%.17g", c->min_auc);
    OPT("max-log-loss", "%.17g", c->max_log_loss);
    OPT("min-rows", "%lld", (long long)c->min_rows);
    OPT("max-auc-drop", "%.17g", c->max_auc_drop);
    OPT("name", "%s", j->model);
#undef OPT
    const json_t *params = json_object_get(j->req, "params");
    const char *k;
    const json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)params, k, v)
    {
        size_t i = 0;
        while (i < MLOPS_ARRAY_LEN(allowed_params) && strcmp(allowed_params[i], k))
            i++;
        if (i == MLOPS_ARRAY_LEN(allowed_params)) {
            rc = job_fail(j, JOB_FAILED,
                          "%s: params.%.100s is not a training setting (allowed: algo, "
                          "seed, valid_fraction, c, ..., see mlops-trainer fit --help)",
                          j->where, k);
            break;
        }
        char *val;
        if (json_is_string(v))
            val = xstrdup(json_string_value(v));
        else if (json_is_integer(v))
            val = xasprintf("%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            val = xasprintf("%.17g", json_real_value(v));
        else if (json_is_boolean(v))
            val = xstrdup(json_is_true(v) ? "true" : "false");
        else {
            rc = job_fail(j, JOB_FAILED, "%s: params.%.100s must be a string, number or boolean",
                          j->where, k);
            break;
        }
        char *flag = xasprintf("--%s", k);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        argv[argc++] = flag;
        argv[argc++] = val;
    }
    if (rc == 0) {
        char err[1024] = "";
        *cfgp = fit_cfg_new(fc);
        if (cfg_init(*cfgp, argc, argv, NULL, err, sizeof(err)) != CFG_OK ||
            fit_conf_check(fc, err, sizeof(err)))
            rc = job_fail(j, JOB_FAILED, "%s: params: %s", j->where, err);
    }
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
    return rc;
}

/* ---- the registry ---- */

static regclient_t registry(const trainer_t *t)
{
    return (regclient_t){.url = t->conf->registry_url,
                         .token = t->conf->registry_token,
                         .timeout_s = (t->conf->registry_timeout_ms + 999) / 1000};
}

/* A reply that is not a success: transient (retry) or final. */
static int registry_fail(job_t *j, const char *what, long st, const json_t *reply)
{
    /* 401/403: the token is wrong or lacks the role; an operator fixes it
     * and the request runs again (nothing is lost). 5xx, 429: transient. */
    bool transient = st == 401 || st == 403 || st == 408 || st == 429 || st >= 500;
    return job_fail(j, transient ? JOB_RETRY : JOB_FAILED, "%s: registry %s: HTTP %ld: %s",
                    j->where, what, st, regclient_error(reply));
}

/* The model's champion, if it has one: its version, artifact and sha256. */
static int fetch_champion(job_t *j)
{
    trainer_t *t = j->t;
    regclient_t rc = registry(t);
    char err[1024];
    char *name = url_enc(j->model);
    char *path = xasprintf("/api/2.0/mlflow/registered-models/alias?name=%s&alias=champion", name);
    json_t *reply = NULL;
    long st = regclient_call(&rc, "GET", path, NULL, &reply, err, sizeof(err));
    free(path);
    int ret = 0;
    if (st < 0) {
        ret = job_fail(j, JOB_RETRY, "%s: registry unreachable: %s", j->where, err);
        goto out;
    }
    if (st == 404)
        goto out; /* no champion (or no such model yet) */
    if (st != 200) {
        ret = registry_fail(j, "champion alias", st, reply);
        goto out;
    }
    const char *ver =
        json_string_value(json_object_get(json_object_get(reply, "model_version"), "version"));
    int64_t v;
    if (!ver || parse_int64(ver, &v) || v < 1) {
        ret = job_fail(j, JOB_RETRY, "%s: registry champion alias: no version in the answer",
                       j->where);
        goto out;
    }
    char *url = xasprintf("%s/api/v1/models/%s/versions/%lld/artifact", t->conf->registry_url, name,
                          (long long)v);
    httpc_req_t q = {.method = "GET",
                     .url = url,
                     .token = t->conf->registry_token,
                     .timeout_ms = t->conf->registry_timeout_ms,
                     .max_body = 1u << 30};
    httpc_resp_t r;
    int hs = httpc_send(&q, &r);
    free(url);
    if (hs) {
        ret = job_fail(j, JOB_RETRY, "%s: champion artifact: %s", j->where, r.error);
    } else if (r.status != 200) {
        ret = job_fail(j, r.status >= 500 || r.status == 429 ? JOB_RETRY : JOB_FAILED,
                       "%s: champion %s v%lld artifact: HTTP %ld", j->where, j->model, (long long)v,
                       r.status);
    } else {
        j->champion = model_parse(r.body, r.len, err, sizeof(err));
        if (!j->champion) {
            ret = job_fail(j, JOB_FAILED, "%s: champion %s v%lld is not a valid model/1: %s",
                           j->where, j->model, (long long)v, err);
        } else {
            j->champion_version = v;
            sha256_hex(r.body, r.len, j->champion_sha);
        }
    }
    httpc_resp_free(&r);
out:
    json_decref(reply);
    free(name);
    return ret;
}

static int register_version(job_t *j, const char *artifact, size_t len)
{
    trainer_t *t = j->t;
    regclient_t rc = registry(t);
    char sha[65], err[1024];
    sha256_hex(artifact, len, sha);
    char *hdr = xasprintf("X-Artifact-Sha256: %s\nIdempotency-Key: trainer-%.48s", sha, j->key);
    char *name = url_enc(j->model);
    char *path = xasprintf("/api/v1/models/%s/versions", name);
    json_t *reply = NULL;
    long st = regclient_call_raw(&rc, "POST", path, artifact, len, hdr, &reply, err, sizeof(err));
    free(hdr);
    free(path);
    int ret = 0;
    if (st < 0) {
        ret = job_fail(j, JOB_RETRY, "%s: registry unreachable: %s", j->where, err);
    } else if (st != 200 && st != 201) {
        ret = registry_fail(j, "register", st, reply);
    } else {
        const char *ver =
            json_string_value(json_object_get(json_object_get(reply, "model_version"), "version"));
        int64_t v;
        if (!ver || parse_int64(ver, &v) || v < 1)
            ret =
                job_fail(j, JOB_RETRY, "%s: registry register: no version in the answer", j->where);
        else
            j->version = v;
    }
    if (ret == 0 && j->gates_passed && t->conf->alias[0]) {
        json_decref(reply);
        reply = NULL;
        char *alias = url_enc(t->conf->alias);
        path = xasprintf("/api/v1/models/%s/aliases/%s/promote", name, alias);
        free(alias);
        json_t *body =
            json_pack("{s:I, s:s}", "version", (json_int_t)j->version, "reason", j->request_id);
        st = regclient_call(&rc, "POST", path, body, &reply, err, sizeof(err));
        json_decref(body);
        free(path);
        if (st < 0)
            ret = job_fail(j, JOB_RETRY, "%s: registry unreachable: %s", j->where, err);
        else if (st >= 500 || st == 429)
            ret = registry_fail(j, "promote", st, reply);
        else if (st != 200)
            /* registered, but the alias was refused (e.g. the token's role):
             * said in the record and the log, not retried */
            snprintf(j->error, sizeof(j->error),
                     "version %lld registered; alias %s not set: HTTP %ld: %s",
                     (long long)j->version, t->conf->alias, st, regclient_error(reply));
        else
            j->alias_set = true;
    }
    json_decref(reply);
    free(name);
    return ret;
}

/* ---- the dataset ---- */

static int label_value(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v))
        snprintf(buf, size, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, size, "%.17g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
    else
        return -1;
    /* trimmed, as the CSV path reads a label cell */
    size_t n = strlen(buf), s = 0;
    while (n && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    while (buf[s] == ' ' || buf[s] == '\t')
        s++;
    memmove(buf, buf + s, n - s + 1);
    return 0;
}

typedef struct labels {
    hmap_t *by_event; /* event id -> &LAB_POS or &LAB_NEG */
    char other[256];  /* the one other class */
    size_t nother, npos;
    char odd[256]; /* a third class, if one was seen */
    size_t nodd, bad;
} labels_t;

static int LAB_POS = 1, LAB_NEG = 0;

static krange_t *open_range(job_t *j, const char *topic, int32_t partition, krange_pos_t from,
                            krange_pos_t to, char *err, size_t size)
{
    size_t np;
    const cfg_kv_t *props = cfg_kafka_props(service_cfg(j->t->svc), &np);
    krange_opts_t o = {.brokers = j->t->conf->kafka_brokers,
                       .props = props,
                       .nprops = np,
                       .topic = topic,
                       .partition = partition,
                       .from = from,
                       .to = to};
    return krange_new(&o, err, size);
}

/* Kafka errors that say the request itself is wrong, not the cluster. */
static job_outcome_t range_outcome(const char *err)
{
    return strstr(err, "deleted by retention") || strstr(err, "does not exist") ||
                   strstr(err, "has no partition")
               ? JOB_FAILED
               : JOB_RETRY;
}

static int read_labels_range(job_t *j, labels_t *lb, const char *topic, int32_t partition,
                             krange_pos_t from, krange_pos_t to, const char *positive)
{
    char err[1024];
    krange_t *kr = open_range(j, topic, partition, from, to, err, sizeof(err));
    if (!kr)
        return job_fail(j, range_outcome(err), "%s: labels: %s", j->where, err);
    rd_kafka_message_t *m;
    int rc;
    while ((rc = krange_next(kr, &m, err, sizeof(err))) == 1) {
        err_t *e = NULL;
        json_t *o = m->len ? mjson_parse_object(m->payload, m->len, 1u << 20, &e) : NULL;
        err_destroy(e);
        const char *schema = json_string_value(json_object_get(o, "schema"));
        const char *eid = json_string_value(json_object_get(o, "event_id"));
        char lab[256];
        if (!o || !schema || strcmp(schema, LABEL_SCHEMA) || !eid ||
            label_value(json_object_get(o, "label"), lab, sizeof(lab)) || !lab[0]) {
            lb->bad++;
        } else if (!strcmp(lab, positive)) {
            hmap_put(lb->by_event, eid, &LAB_POS);
        } else if (!lb->nother || !strcmp(lab, lb->other)) {
            str_copy(lb->other, lab, sizeof(lb->other));
            lb->nother++;
            hmap_put(lb->by_event, eid, &LAB_NEG);
        } else {
            if (!lb->nodd)
                str_copy(lb->odd, lab, sizeof(lb->odd));
            lb->nodd++;
        }
        json_decref(o);
        rd_kafka_message_destroy(m);
        if (atomic_load(&j->t->cancel)) {
            krange_destroy(kr);
            return job_fail(j, JOB_RETRY, "%s: stopped by the drain", j->where);
        }
    }
    krange_destroy(kr);
    if (rc < 0)
        return job_fail(j, JOB_RETRY, "%s: labels: %s", j->where, err);
    return 0;
}

typedef struct featread {
    dataset_t *ds;
    hmap_t *seen;   /* event ids already in the table */
    int64_t *times; /* event time (ms) per row */
    size_t cap;
    size_t unlabelled, other_spec, dup, bad;
    char first_bad[700];
} featread_t;

static int64_t parse_time_ms(const char *s)
{
    krange_pos_t p;
    char e[64];
    if (!s || krange_pos_parse(s, 0, &p, e, sizeof(e)) || p.kind != KRANGE_TIME)
        return 0;
    return p.value;
}

static int read_features_range(job_t *j, featread_t *fr, const labels_t *lb, int32_t partition,
                               krange_pos_t from, krange_pos_t to, size_t *nread)
{
    trainer_t *t = j->t;
    char err[1024];
    krange_t *kr = open_range(j, t->conf->features_topic, partition, from, to, err, sizeof(err));
    if (!kr)
        return job_fail(j, range_outcome(err), "%s: features: %s", j->where, err);
    rd_kafka_message_t *m;
    int rc;
    size_t n = 0;
    while ((rc = krange_next(kr, &m, err, sizeof(err))) == 1) {
        n++;
        err_t *e = NULL;
        json_t *o = m->len ? mjson_parse_object(m->payload, m->len, 16u << 20, &e) : NULL;
        err_destroy(e);
        const char *schema = json_string_value(json_object_get(o, "schema"));
        const char *eid = json_string_value(json_object_get(o, "event_id"));
        const char *hash = json_string_value(json_object_get(json_object_get(o, "spec"), "hash"));
        if (!o || !schema || strcmp(schema, FEATURES_SCHEMA) || !eid) {
            if (!fr->bad++)
                snprintf(fr->first_bad, sizeof(fr->first_bad),
                         "[%d] @ %lld: not a features/1 record", (int)m->partition,
                         (long long)m->offset);
        } else if (!hash || strcmp(hash, j->spec->hash)) {
            fr->other_spec++;
        } else {
            const int *lab = hmap_get(lb->by_event, eid);
            if (!lab) {
                fr->unlabelled++;
            } else if (hmap_get(fr->seen, eid)) {
                fr->dup++;
            } else if ((int64_t)fr->ds->nrows >= t->conf->max_rows) {
                json_decref(o);
                rd_kafka_message_destroy(m);
                krange_destroy(kr);
                return job_fail(
                    j, JOB_FAILED,
                    "%s: more than max_rows %lld labelled rows: ask for a smaller range", j->where,
                    (long long)t->conf->max_rows);
            } else {
                char why[600];
                if (dataset_add_values(fr->ds, json_object_get(o, "values"), *lab,
                                       fr->ds->nrows + 1, why, sizeof(why))) {
                    if (!fr->bad++)
                        snprintf(fr->first_bad, sizeof(fr->first_bad), "[%d] @ %lld: %s",
                                 (int)m->partition, (long long)m->offset, why);
                } else {
                    hmap_put(fr->seen, eid, &LAB_POS);
                    if (fr->ds->nrows > fr->cap) {
                        fr->cap = fr->cap ? fr->cap * 2 : 4096;
                        fr->times = xrealloc(fr->times, fr->cap * sizeof(int64_t));
                    }
                    fr->times[fr->ds->nrows - 1] =
                        parse_time_ms(json_string_value(json_object_get(o, "event_time")));
                }
            }
        }
        json_decref(o);
        rd_kafka_message_destroy(m);
        if (atomic_load(&t->cancel)) {
            krange_destroy(kr);
            return job_fail(j, JOB_RETRY, "%s: stopped by the drain", j->where);
        }
    }
    krange_destroy(kr);
    if (rc < 0)
        return job_fail(j, JOB_RETRY, "%s: features: %s", j->where, err);
    *nread = n;
    return 0;
}

static void featread_reset(featread_t *fr, const spec_t *spec)
{
    dataset_destroy(fr->ds);
    hmap_destroy(fr->seen);
    free(fr->times);
    *fr = (featread_t){.ds = dataset_new(spec), .seen = hmap_new(NULL)};
}

typedef struct timed_row {
    int64_t time;
    size_t row;
} timed_row_t;

static int by_time_then_row(const void *a, const void *b)
{
    const timed_row_t *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Keep the @p n rows with the latest event times (ties: the later row). */
static void keep_latest(featread_t *fr, size_t n)
{
    dataset_t *ds = fr->ds;
    if (ds->nrows <= n)
        return;
    timed_row_t *ord = xmalloc(ds->nrows * sizeof(*ord));
    for (size_t i = 0; i < ds->nrows; i++)
        ord[i] = (timed_row_t){fr->times[i], i};
    qsort(ord, ds->nrows, sizeof(*ord), by_time_then_row);
    bool *keep = xcalloc(ds->nrows, sizeof(bool));
    for (size_t i = ds->nrows - n; i < ds->nrows; i++)
        keep[ord[i].row] = true;
    dataset_keep(ds, keep);
    free(keep);
    free(ord);
}

static int parse_ranges(job_t *j, range_t *rs, size_t *nr)
{
    const json_t *arr = json_object_get(json_object_get(j->req, "dataset"), "ranges");
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > MAX_RANGES)
        return job_fail(j, JOB_FAILED, "%s: dataset.ranges must be an array of 1 to %d ranges",
                        j->where, MAX_RANGES);
    size_t i;
    const json_t *r;
    json_array_foreach(arr, i, r)
    {
        const char *topic = json_string_value(json_object_get(r, "topic"));
        const json_t *p = json_object_get(r, "partition"), *f = json_object_get(r, "from"),
                     *to = json_object_get(r, "to");
        if (!topic || !json_is_integer(p) || !json_is_integer(f) || !json_is_integer(to) ||
            json_integer_value(p) < 0 || json_integer_value(p) > INT32_MAX ||
            json_integer_value(f) < 0 || json_integer_value(to) < json_integer_value(f))
            return job_fail(j, JOB_FAILED,
                            "%s: dataset.ranges[%zu] must be {topic, partition >= 0, from >= 0, "
                            "to >= from} (to is exclusive)",
                            j->where, i);
        if (strcmp(topic, j->t->conf->features_topic) && strcmp(topic, j->t->conf->labels_topic))
            return job_fail(j, JOB_FAILED,
                            "%s: dataset.ranges[%zu]: topic '%.200s' is neither the features "
                            "topic '%s' nor the labels topic '%s'",
                            j->where, i, topic, j->t->conf->features_topic,
                            j->t->conf->labels_topic);
        str_copy(rs[i].topic, topic, sizeof(rs[i].topic));
        rs[i].partition = (int32_t)json_integer_value(p);
        rs[i].from = json_integer_value(f);
        rs[i].to = json_integer_value(to);
        rs[i].rows = 0;
    }
    *nr = json_array_size(arr);
    return 0;
}

/* A range must lie inside the partition's log: its start still kept, its
 * end not past the log end. */
static int check_range(job_t *j, const range_t *r)
{
    char err[1024];
    krange_pos_t b = {KRANGE_BEGINNING, 0}, e = {KRANGE_END, 0};
    krange_t *kr = open_range(j, r->topic, r->partition, b, e, err, sizeof(err));
    if (!kr)
        return job_fail(j, range_outcome(err), "%s: range %s:%d:%lld-%lld: %s", j->where, r->topic,
                        (int)r->partition, (long long)r->from, (long long)r->to, err);
    size_t np;
    const krange_part_t *pp = krange_parts(kr, &np);
    int64_t lo = pp[0].start, hi = pp[0].end;
    krange_destroy(kr);
    if (r->from < lo && r->to > r->from)
        return job_fail(j, JOB_FAILED,
                        "%s: range %s:%d:%lld-%lld: offsets %lld to %lld were already deleted by "
                        "retention (the oldest kept is %lld)",
                        j->where, r->topic, (int)r->partition, (long long)r->from, (long long)r->to,
                        (long long)r->from, (long long)(r->to < lo ? r->to : lo) - 1,
                        (long long)lo);
    if (r->to > hi)
        return job_fail(j, JOB_FAILED,
                        "%s: range %s:%d:%lld-%lld ends past the log end (%lld): the range's "
                        "to is exclusive",
                        j->where, r->topic, (int)r->partition, (long long)r->from, (long long)r->to,
                        (long long)hi);
    return 0;
}

static int build_dataset(job_t *j, featread_t *fr)
{
    trainer_t *t = j->t;
    labels_t lb = {.by_event = hmap_new(NULL)};
    const char *positive = j->spec->positive;
    int ret = -1;
    range_t rs[MAX_RANGES];
    size_t nr = 0;
    const json_t *dsj = json_object_get(j->req, "dataset");
    bool latest = !strcmp(json_string_value(json_object_get(dsj, "kind")), "latest");
    int64_t want = 0;
    if (latest) {
        const json_t *n = json_object_get(dsj, "latest");
        if (!json_is_integer(n) || json_integer_value(n) < 1 ||
            json_integer_value(n) > t->conf->max_rows) {
            job_fail(j, JOB_FAILED, "%s: dataset.latest must be an integer from 1 to max_rows %lld",
                     j->where, (long long)t->conf->max_rows);
            goto out;
        }
        want = json_integer_value(n);
    } else if (parse_ranges(j, rs, &nr)) {
        goto out;
    }
    for (size_t i = 0; i < nr; i++)
        if (check_range(j, &rs[i]))
            goto out;

    /* labels: the ranges given, or the whole topic */
    job_stage(j, "reading labels");
    krange_pos_t b = {KRANGE_BEGINNING, 0}, e = {KRANGE_END, 0};
    bool label_ranges = false;
    for (size_t i = 0; i < nr; i++) {
        if (strcmp(rs[i].topic, t->conf->labels_topic))
            continue;
        label_ranges = true;
        size_t before = hmap_size(lb.by_event) + lb.nodd + lb.bad;
        if (read_labels_range(j, &lb, rs[i].topic, rs[i].partition,
                              (krange_pos_t){KRANGE_OFFSET, rs[i].from},
                              (krange_pos_t){KRANGE_OFFSET, rs[i].to}, positive))
            goto out;
        rs[i].rows = hmap_size(lb.by_event) + lb.nodd + lb.bad - before;
    }
    if (!label_ranges && read_labels_range(j, &lb, t->conf->labels_topic, -1, b, e, positive))
        goto out;
    if (lb.nodd) {
        job_fail(j, JOB_FAILED,
                 "%s: labels: unknown label value '%.80s' (%zu records): neither the positive "
                 "class '%s' nor the other class '%.80s'; a binary label has two values",
                 j->where, lb.odd, lb.nodd, positive, lb.other);
        goto out;
    }
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("request_id", j->request_id),
                        LOG_INT("labels", (long long)hmap_size(lb.by_event)),
                        LOG_INT("bad", (long long)lb.bad)),
             "request %s: %zu labels read", j->where, hmap_size(lb.by_event));

    /* features: the ranges given, or the latest labelled events */
    job_stage(j, "reading features");
    featread_reset(fr, j->spec);
    json_t *lr = json_array();
    if (!latest) {
        for (size_t i = 0; i < nr; i++) {
            if (strcmp(rs[i].topic, t->conf->features_topic))
                continue;
            if (read_features_range(j, fr, &lb, rs[i].partition,
                                    (krange_pos_t){KRANGE_OFFSET, rs[i].from},
                                    (krange_pos_t){KRANGE_OFFSET, rs[i].to}, &rs[i].rows)) {
                json_decref(lr);
                goto out;
            }
        }
        for (size_t i = 0; i < nr; i++)
            json_array_append_new(lr, json_pack("{s:s, s:i, s:I, s:I, s:I}", "topic", rs[i].topic,
                                                "partition", (int)rs[i].partition, "from",
                                                (json_int_t)rs[i].from, "to", (json_int_t)rs[i].to,
                                                "records", (json_int_t)rs[i].rows));
    } else {
        /* read back from each partition's end, a growing chunk at a time,
         * until enough labelled rows were seen or everything was read */
        char err[1024];
        krange_t *kr = open_range(j, t->conf->features_topic, -1, b, e, err, sizeof(err));
        if (!kr) {
            json_decref(lr);
            job_fail(j, range_outcome(err), "%s: features: %s", j->where, err);
            goto out;
        }
        size_t np;
        const krange_part_t *pp = krange_parts(kr, &np);
        krange_part_t parts[256];
        np = np > 256 ? 256 : np;
        memcpy(parts, pp, np * sizeof(*parts));
        krange_destroy(kr);
        int64_t chunk = want / (int64_t)np + 1;
        if (chunk < 1000)
            chunk = 1000;
        for (;;) {
            featread_reset(fr, j->spec);
            bool all = true;
            json_array_clear(lr);
            for (size_t i = 0; i < np; i++) {
                int64_t from = parts[i].end - chunk;
                if (from <= parts[i].start)
                    from = parts[i].start;
                else
                    all = false;
                size_t n = 0;
                if (from < parts[i].end &&
                    read_features_range(j, fr, &lb, parts[i].partition,
                                        (krange_pos_t){KRANGE_OFFSET, from},
                                        (krange_pos_t){KRANGE_OFFSET, parts[i].end}, &n)) {
                    json_decref(lr);
                    goto out;
                }
                json_array_append_new(
                    lr, json_pack("{s:s, s:i, s:I, s:I, s:I}", "topic", t->conf->features_topic,
                                  "partition", (int)parts[i].partition, "from", (json_int_t)from,
                                  "to", (json_int_t)parts[i].end, "records", (json_int_t)n));
            }
            if ((int64_t)fr->ds->nrows >= want || all)
                break;
            chunk *= 4;
            job_stage(j, "reading more features (too few labelled rows in the last chunk)");
        }
        keep_latest(fr, (size_t)want);
    }
    j->lineage_ranges = lr;
    if (fr->bad)
        log_warn("request %s: %zu features records skipped, the first %s", j->where, fr->bad,
                 fr->first_bad);
    log_emit(
        LOG_LVL_INFO,
        LOG_FIELDS(LOG_STR("request_id", j->request_id), LOG_INT("rows", (long long)fr->ds->nrows),
                   LOG_INT("unlabelled", (long long)fr->unlabelled),
                   LOG_INT("other_spec", (long long)fr->other_spec),
                   LOG_INT("duplicates", (long long)fr->dup), LOG_INT("bad", (long long)fr->bad)),
        "request %s: dataset of %zu labelled rows (%zu unlabelled, %zu of another spec)", j->where,
        fr->ds->nrows, fr->unlabelled, fr->other_spec);
    if (fr->ds->nrows == 0) {
        job_fail(j, JOB_FAILED,
                 "%s: the dataset is empty: no features/1 record of spec %.12s in the range has a "
                 "label (%zu unlabelled, %zu of another spec, %zu not readable)",
                 j->where, j->spec->hash, fr->unlabelled, fr->other_spec, fr->bad);
        goto out;
    }
    fr->ds->negative = lb.nother ? xstrdup(lb.other) : NULL;
    ret = 0;
out:
    hmap_destroy(lb.by_event);
    return ret;
}

/* ---- one request, on the worker thread ---- */

static int resolve_spec(job_t *j)
{
    trainer_t *t = j->t;
    char err[1024];
    if (t->conf->spec) {
        j->spec_own = spec_load(t->conf->spec, err, sizeof(err));
        if (!j->spec_own)
            return job_fail(j, JOB_RETRY, "spec %s: %s", t->conf->spec, err);
        j->spec = j->spec_own;
        snprintf(j->spec_source, sizeof(j->spec_source), "%s", t->conf->spec);
    } else if (j->champion) {
        j->spec = model_spec(j->champion);
        snprintf(j->spec_source, sizeof(j->spec_source), "registry: %s v%lld (champion)", j->model,
                 (long long)j->champion_version);
    } else {
        return job_fail(j, JOB_FAILED,
                        "%s: model %s has no champion to take the feature spec from, and the "
                        "trainer has no spec configured (spec=FILE)",
                        j->where, j->model);
    }
    if (!j->spec->label || !j->spec->positive)
        return job_fail(j, JOB_FAILED, "%s: spec '%s' (%s) has no label", j->where, j->spec->name,
                        j->spec_source);
    return 0;
}

/* Test hook for the crash drill (tests/trainer_stream/test_trainer_crash.py): with
 * MLOPS_TEST_TRAINER_CRASH_AFTER=train (the artifact kept, not registered) or =register
 * (the version registered, the record and the offset not yet written), the service
 * kills itself with SIGKILL at that point, as kill -9 would. Unset, it does nothing. */
static void test_crash_point(const char *point)
{
    const char *at = getenv("MLOPS_TEST_TRAINER_CRASH_AFTER");
    if (!at || strcmp(at, point))
        return;
    log_warn("test hook: MLOPS_TEST_TRAINER_CRASH_AFTER=%s, killing the trainer", point);
    raise(SIGKILL);
    _exit(137);
}

static void run_job(job_t *j)
{
    trainer_t *t = j->t;
    featread_t fr = {0};
    fit_conf_t fc;
    cfg_t *fcfg = NULL;
    json_t *doc = NULL;
    char *artifact = NULL;
    size_t alen = 0;
    if (parse_request(j))
        return;
    sha256_hex(j->request_id, strlen(j->request_id), j->key);
    snprintf(j->state_path, sizeof(j->state_path), "%s/%s.json", t->reqdir, j->key);
    snprintf(j->model_path, sizeof(j->model_path), "%s/%s.model.json", t->reqdir, j->key);
    /* handled before? */
    char err[2048];
    char *prev = file_read_all(j->state_path, 1u << 20, NULL, err, sizeof(err));
    if (prev) {
        json_error_t je;
        json_t *pj = json_loads(prev, 0, &je);
        free(prev);
        const char *st = json_string_value(json_object_get(pj, "state"));
        if (st && (!strcmp(st, "registered") || !strcmp(st, "failed"))) {
            j->version = json_integer_value(json_object_get(pj, "version"));
            j->outcome = JOB_SKIPPED;
            snprintf(j->error, sizeof(j->error), "request_id %s was already handled (%s%s%lld)",
                     j->request_id, st, j->version ? ", version " : "", (long long)j->version);
            json_decref(pj);
            return;
        }
        json_decref(pj);
    }
    write_record(j, "running");
    job_stage(j, "looking up the champion");
    if (fetch_champion(j) || resolve_spec(j))
        goto out;
    if (fit_conf_for(j, &fc, &fcfg))
        goto out;

    /* an artifact trained by an earlier run of this request is registered as is */
    artifact = file_read_all(j->model_path, 1u << 30, &alen, err, sizeof(err));
    if (artifact) {
        json_error_t je;
        json_t *pd = json_loadb(artifact, alen, 0, &je);
        j->gates_passed = json_is_true(json_object_get(json_object_get(pd, "gates"), "passed"));
        j->rows = (size_t)json_integer_value(
            json_object_get(json_object_get(pd, "metrics"), "rows_total"));
        json_decref(pd);
        job_stage(j, "registering the artifact of an earlier run");
    } else {
        if (build_dataset(j, &fr))
            goto out;
        j->rows = fr.ds->nrows;
        job_stage(j, "training");
        json_t *src =
            json_pack("{s:s, s:s, s:o, s:I}", "kind", "kafka", "request_id", j->request_id,
                      "ranges", j->lineage_ranges, "rows", (json_int_t)fr.ds->nrows);
        j->lineage_ranges = NULL;
        json_t *dsj = json_object_get(j->req, "dataset");
        if (json_is_integer(json_object_get(dsj, "latest")))
            json_object_set(src, "latest", json_object_get(dsj, "latest"));
        char what[600];
        snprintf(what, sizeof(what), "request %s (%s)", j->request_id, j->where);
        fit_input_t in = {.spec = j->spec,
                          .spec_source = j->spec_source,
                          .ds = fr.ds,
                          .what = what,
                          .source = src,
                          .t_start_us = j->t0_us,
                          .progress = fit_progress,
                          .progress_arg = j};
        char note[256];
        if (j->champion) {
            in.champion = j->champion;
            in.champion_info =
                json_pack("{s:s, s:s, s:I, s:s}", "path", "registry", "name", j->model, "version",
                          (json_int_t)j->champion_version, "sha256", j->champion_sha);
            if (!strcmp(model_spec(j->champion)->hash, j->spec->hash)) {
                in.champion_ds = fr.ds;
            } else {
                snprintf(note, sizeof(note),
                         "not evaluated: the champion v%lld uses another spec (hash %.12s, the "
                         "dataset %.12s)",
                         (long long)j->champion_version, model_spec(j->champion)->hash,
                         j->spec->hash);
                in.champion_note = note;
            }
        } else {
            in.champion_note = "not evaluated: the model has no champion yet";
        }
        bool gates_ok = false;
        int64_t t0 = mono_us();
        if (fit_run(&fc, &in, &doc, &gates_ok, err, sizeof(err))) {
            json_decref(in.source);
            json_decref(in.champion_info);
            job_fail(j, JOB_FAILED, "%s: training failed: %s", j->where, err);
            goto out;
        }
        j->seconds = (double)(mono_us() - t0) / 1e6;
        j->gates_passed = gates_ok;
        if (model_write_file(doc, j->model_path, err, sizeof(err))) {
            job_fail(j, JOB_RETRY, "%s: cannot keep the artifact: %s", j->where, err);
            goto out;
        }
        artifact = file_read_all(j->model_path, 1u << 30, &alen, err, sizeof(err));
        if (!artifact) {
            job_fail(j, JOB_RETRY, "%s: %s", j->where, err);
            goto out;
        }
        test_crash_point("train");
    }
    if (atomic_load(&t->cancel)) {
        job_fail(j, JOB_RETRY, "%s: stopped by the drain before registering", j->where);
        goto out;
    }
    job_stage(j, "registering");
    if (register_version(j, artifact, alen))
        goto out;
    test_crash_point("register");
    j->outcome = JOB_REGISTERED;
    unlink(j->model_path);
out:
    free(artifact);
    json_decref(doc);
    cfg_destroy(fcfg);
    dataset_destroy(fr.ds);
    hmap_destroy(fr.seen);
    free(fr.times);
}

static void *job_main(void *arg)
{
    job_t *j = arg;
    run_job(j);
    if (j->request_id && j->outcome != JOB_SKIPPED)
        write_record(j, j->outcome == JOB_REGISTERED ? "registered"
                        : j->outcome == JOB_FAILED   ? "failed"
                                                     : "retrying");
    atomic_store(&j->finished, true);
    return NULL;
}

static void job_free(job_t *j)
{
    json_decref(j->req);
    json_decref(j->lineage_ranges);
    spec_destroy(j->spec_own);
    model_destroy(j->champion);
    free(j);
}

/* ---- the loop ---- */

static void commit_held(trainer_t *t)
{
    rd_kafka_message_t *m = t->held;
    if (kafka_consumer_store(t->kc, rd_kafka_topic_name(m->rkt), m->partition, m->offset + 1))
        log_warn("cannot store the offset of %s [%d] @ %lld", rd_kafka_topic_name(m->rkt),
                 (int)m->partition, (long long)m->offset);
    err_t *e = NULL;
    if (kafka_consumer_commit(t->kc, &e)) {
        log_warn("commit: %s (the request may run again after a restart; it is de-duplicated)",
                 e->msg);
        err_destroy(e);
    }
    rd_kafka_message_destroy(m);
    t->held = NULL;
    t->attempts = 0;
}

static void finish_job(trainer_t *t)
{
    job_t *j = t->job;
    pthread_join(j->th, NULL);
    t->job = NULL;
    metric_set(t->m_busy, 0);
    metric_inc(t->m_outcome[j->outcome]);
    const char *rid = j->request_id ? j->request_id : "";
    switch (j->outcome) {
    case JOB_REGISTERED:
        metric_set(t->m_rows, (double)j->rows);
        metric_set(t->m_last_version, (double)j->version);
        if (j->seconds > 0)
            metric_observe(t->m_seconds, j->seconds);
        log_emit(LOG_LVL_INFO,
                 LOG_FIELDS(LOG_STR("request_id", rid), LOG_STR("model", j->model),
                            LOG_INT("version", j->version), LOG_INT("rows", (long long)j->rows),
                            LOG_STR("gates", j->gates_passed ? "passed" : "failed"),
                            LOG_STR("alias", j->alias_set ? t->conf->alias : "")),
                 "request %s: %s version %lld registered (gates %s%s%s)%s%s", j->where, j->model,
                 (long long)j->version, j->gates_passed ? "passed" : "failed",
                 j->alias_set ? ", alias " : "", j->alias_set ? t->conf->alias : "",
                 j->error[0] ? "; " : "", j->error);
        commit_held(t);
        break;
    case JOB_SKIPPED:
        log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("request_id", rid)), "request %s: %s", j->where,
                 j->error);
        commit_held(t);
        break;
    case JOB_FAILED:
        log_emit(LOG_LVL_ERROR, LOG_FIELDS(LOG_STR("request_id", rid)), "request failed: %s",
                 j->error);
        commit_held(t);
        break;
    case JOB_RETRY: {
        /* retry_ms, doubling per failed attempt up to 64 times it (at most a minute) */
        t->attempts++;
        int64_t delay = t->conf->retry_ms << (t->attempts - 1 < 6 ? t->attempts - 1 : 6);
        if (delay > 60000)
            delay = t->conf->retry_ms > 60000 ? t->conf->retry_ms : 60000;
        t->retry_at_ms = mono_ms() + delay;
        log_emit(LOG_LVL_WARN,
                 LOG_FIELDS(LOG_STR("request_id", rid), LOG_INT("attempt", t->attempts)),
                 "request will run again in %lld ms: %s", (long long)delay, j->error);
    } break;
    }
    job_free(j);
}

static void start_job(trainer_t *t)
{
    job_t *j = xcalloc(1, sizeof(*j));
    j->t = t;
    j->rkm = t->held;
    j->t0_us = mono_us();
    j->started_ms = wall_ms();
    snprintf(j->where, sizeof(j->where), "%s [%d] @ %lld", rd_kafka_topic_name(t->held->rkt),
             (int)t->held->partition, (long long)t->held->offset);
    str_copy(j->stage, "starting", sizeof(j->stage));
    atomic_store(&j->finished, false);
    t->job = j;
    metric_set(t->m_busy, 1);
    if (pthread_create(&j->th, NULL, job_main, j)) {
        t->job = NULL;
        free(j);
        lifecycle_fail(service_lifecycle(t->svc), MLOPS_EXIT_FAILURE, "cannot start a worker");
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    trainer_t *t = arg;
    if (kafka_consumer_fatal(t->kc)) {
        char why[768];
        int code = kafka_fatal_cause(why, sizeof(why));
        lifecycle_fail(service_lifecycle(t->svc), code, "Kafka consumer: %s", why);
        return;
    }
    if (t->job && atomic_load(&t->job->finished))
        finish_job(t);
    if (t->draining) {
        if (!t->job) {
            event_del(t->ev_tick);
            lifecycle_drained(service_lifecycle(t->svc));
        }
        return;
    }
    if (t->job)
        return;
    if (t->held) {
        if (mono_ms() >= t->retry_at_ms)
            start_job(t);
        return;
    }
    /* keeps the group membership alive while idle too */
    rd_kafka_message_t *m = kafka_consumer_poll(t->kc, 0);
    if (m) {
        t->held = m;
        start_job(t);
    }
}

static void on_drain(lifecycle_t *lc, void *opaque)
{
    (void)lc;
    trainer_t *t = opaque;
    t->draining = true;
    atomic_store(&t->cancel, true);
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("busy", t->job ? "yes" : "no")), "draining: %s",
             t->job ? "stopping the running request at its next step" : "idle");
}

static void status(json_t *st, void *opaque)
{
    trainer_t *t = opaque;
    if (!t->job) {
        json_object_set_new(st, "job", json_null());
        return;
    }
    pthread_mutex_lock(&t->mu);
    json_object_set_new(st, "job",
                        json_pack("{s:s, s:s, s:I}", "request", t->job->where, "stage",
                                  t->job->stage, "running_ms",
                                  (json_int_t)(wall_ms() - t->job->started_ms)));
    pthread_mutex_unlock(&t->mu);
}

/* GET /api/v1/requests/{request_id}: the request's record */
static void on_request_get(struct evhttp_request *req, void *arg)
{
    trainer_t *t = arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        http_reply_error(req, 405, "method_not_allowed", "use GET");
        return;
    }
    char *path = http_path(req);
    const char *prefix = "/api/v1/requests/";
    if (!path || !str_starts_with(path, prefix) || !path[strlen(prefix)]) {
        http_reply_error(req, 404, "not_found", "use /api/v1/requests/{request_id}");
        free(path);
        return;
    }
    const char *id = path + strlen(prefix);
    char key[65], file[1200], err[512];
    sha256_hex(id, strlen(id), key);
    snprintf(file, sizeof(file), "%s/%s.json", t->reqdir, key);
    size_t len;
    char *body = file_read_all(file, 1u << 20, &len, err, sizeof(err));
    if (!body) {
        http_reply_error(req, 404, "not_found", "no train request %.200s has been seen", id);
    } else {
        json_error_t je;
        json_t *j = json_loadb(body, len, 0, &je);
        if (j)
            http_reply_json(req, 200, j);
        else
            http_reply_error(req, 500, "internal", "the request's record is not JSON");
    }
    free(body);
    free(path);
}

static int setup(service_t *svc, void *opaque)
{
    trainer_t *t = opaque;
    trainer_conf_t *c = t->conf;
    t->svc = svc;
    metrics_t *m = service_metrics(svc);
    char l[128];
    for (int i = 0; i < 4; i++)
        t->m_outcome[i] = metrics_counter(
            m, "mlops_trainer_requests_total", "train_request/1 records handled, by outcome.",
            metrics_labels(l, sizeof(l), "outcome", outcome_names[i], NULL));
    t->m_busy = metrics_gauge(m, "mlops_trainer_busy", "1 while a request is running.", NULL);
    t->m_rows =
        metrics_gauge(m, "mlops_trainer_last_rows", "Rows of the last dataset trained on.", NULL);
    t->m_last_version = metrics_gauge(m, "mlops_trainer_last_version",
                                      "Version number of the last registered model.", NULL);
    t->m_seconds =
        metrics_histogram(m, "mlops_trainer_fit_seconds",
                          "Time to train, evaluate and profile one model.", NULL, NULL, 0);
    if (!c->alias)
        c->alias = xstrdup("");
    if (c->alias[0] && strcmp(c->alias, "challenger") && strcmp(c->alias, "shadow")) {
        log_fatal("alias '%s': challenger, shadow or empty (champion is moved by a person or "
                  "the monitor's rollout)",
                  c->alias);
        return -1;
    }
    {
        fit_conf_t fc;
        cfg_t *fcfg = fit_cfg_new(&fc);
        char *argv[] = {(char *)"fit", (char *)"--algo", c->algo, NULL};
        char err[512] = "";
        int bad = cfg_init(fcfg, 3, argv, NULL, err, sizeof(err)) != CFG_OK ||
                  fit_conf_check(&fc, err, sizeof(err));
        cfg_destroy(fcfg);
        if (bad) {
            log_fatal("algo: %s", err);
            return -1;
        }
    }
    if (c->spec) {
        char err[1024];
        spec_t *s = spec_load(c->spec, err, sizeof(err));
        if (!s) {
            log_fatal("spec: %s", err);
            return -1;
        }
        spec_destroy(s);
    }
    snprintf(t->reqdir, sizeof(t->reqdir), "%s/trainer/requests", c->state_dir);
    if (mkdir_p(t->reqdir)) {
        log_fatal("%s: cannot create: %s", t->reqdir, strerror(errno));
        return -1;
    }
    if (c->registry_token && *c->registry_token)
        log_add_secret(c->registry_token);
    else
        log_warn("registry_token is not set: requests are kept and retried until a trainer "
                 "token is configured (mlopsctl token create --role trainer)");
    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(service_cfg(svc), &nprops);
    kafka_opts_t ko = {.brokers = c->kafka_brokers,
                       .client_id = "mlops-trainer",
                       .props = props,
                       .nprops = nprops,
                       .metrics = m};
    const char *topics[] = {c->requests_topic};
    kafka_consumer_opts_t co = {
        .group_id = c->group_id, .topics = topics, .ntopics = 1, .auto_commit = true};
    char errstr[1024];
    t->kc = kafka_consumer_new(&ko, &co, errstr, sizeof(errstr));
    if (!t->kc) {
        log_fatal("Kafka: %s", errstr);
        return -1;
    }
    pthread_mutex_init(&t->mu, NULL);
    http_route(service_http(svc),
               EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE,
               "/api/v1/requests/*", on_request_get, t);
    struct timeval tick = {0, 100000};
    t->ev_tick = event_new(service_base(svc), -1, EV_PERSIST, on_tick, t);
    event_add(t->ev_tick, &tick);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("input", c->requests_topic), LOG_STR("registry", c->registry_url),
                        LOG_STR("alias", c->alias), LOG_STR("algo", c->algo)),
             "trainer ready: %s -> %s", c->requests_topic, c->registry_url);
    return 0;
}

static void teardown(service_t *svc, void *opaque)
{
    (void)svc;
    trainer_t *t = opaque;
    if (t->job) {
        /* the loop ended before the worker (drain timeout): let it stop at
         * its next step; its request was not committed and runs again */
        atomic_store(&t->cancel, true);
        pthread_join(t->job->th, NULL);
        job_free(t->job);
        t->job = NULL;
    }
    if (t->held)
        rd_kafka_message_destroy(t->held);
    if (t->ev_tick)
        event_free(t->ev_tick);
    kafka_consumer_close(t->kc);
    pthread_mutex_destroy(&t->mu);
}

int trainer_service_main(int argc, char **argv)
{
    trainer_conf_t conf;
    trainer_t t = {.conf = &conf};
    atomic_store(&t.cancel, false);
    service_def_t def = {
        .name = "trainer",
        .usage = "\n  train, evaluate and register models from train.requests\n"
                 "  mlops-trainer fit --data train.csv --label COL --positive VALUE ... (fit "
                 "--help)",
        .items = trainer_items,
        .nitems = MLOPS_ARRAY_LEN(trainer_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
        .on_drain = on_drain,
        .status_cb = status,
        .setup = setup,
        .teardown = teardown,
        .opaque = &t,
    };
    return service_main(&def, argc, argv);
}
