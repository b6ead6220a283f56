/*
 * The scorer's HTTP endpoint: request/response scoring beside the stream, on
 * its own port (http_port; -1 turns it off), in the service's event loop, so
 * a request is scored between two stream batches by the same model set (hot
 * swaps apply between requests as between batches) and the same stages
 * (pipeline_http()).
 *
 * Paths (KServe's V1 protocol and the Open Inference Protocol, "V2"):
 *
 *   GET  /v2                          server metadata
 *   GET  /v2/health/live              200 while the process runs
 *   GET  /v2/health/ready             200 when ready, else 503 (Retry-After)
 *   GET  /v2/models/{name}            model metadata: versions, inputs, outputs
 *   GET  /v2/models/{name}/ready      200 / 503
 *   POST /v2/models/{name}/infer      named input tensors, one element per instance
 *   GET  /v1/models/{name}            {"name", "ready"}
 *   POST /v1/models/{name}:predict    {"instances": [{field: value}, ...]} or one bare object
 *
 * {name} is the served model's name. Every error is {"error": "<message>"} (the
 * Open Inference Protocol's error object) with 400 (the body or a field is
 * wrong), 404 (unknown model or path), 405, 413 (too many instances, or a body
 * over http_max_body_bytes: evhttp refuses that one itself and common/httpconn.c
 * turns its HTML page into this JSON) or 503 (not ready, draining, or more than
 * http_max_connections connections open: with Retry-After).
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "httpconn.h"
#include "log.h"
#include "mjson.h"
#include "scorer.h"

typedef struct serve {
    scorer_t *sc;
    http_server_t *srv;
    uint64_t seq;
    int64_t started_ms;
} serve_t;

/* ---- replies -------------------------------------------------------------------------- */

static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
    MLOPS_PRINTF(3, 4);

static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (code == 503)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    http_reply_json(req, code, json_pack("{s:s}", "error", msg));
}

/* Not ready (starting) or draining: the 503 every model path answers then. */
static bool unavailable(serve_t *sv, struct evhttp_request *req)
{
    lc_state_t st = lifecycle_state(service_lifecycle(sv->sc->svc));
    if (st == LC_READY && !sv->sc->draining)
        return false;
    reply_error(req, 503, "the scorer is %s; retry later",
                st == LC_STARTING ? "starting (models loading)" : "draining");
    return true;
}

/* ---- request ids ------------------------------------------------------------------------ */

static bool id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '"' ||
            s[i] == '\\')
            return false;
    return true;
}

/* The client's X-Request-Id (or the body's "id") when it is a sane token, else ours. */
static void request_id(serve_t *sv, struct evhttp_request *req, const char *body_id, char *out,
                       size_t size)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    if (id_ok(body_id))
        str_copy(out, body_id, size);
    else if (id_ok(h))
        str_copy(out, h, size);
    else
        snprintf(out, size, "http-%" PRId64 "-%" PRIu64, sv->started_ms, ++sv->seq);
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", out);
}

/* ---- the model paths ---------------------------------------------------------------------- */

typedef enum op { OP_META, OP_READY, OP_INFER, OP_PREDICT } op_t;

static const char *datatype_of(const spec_field_t *f)
{
    switch (f->type) {
    case SPEC_T_NUMERIC: return "FP64";
    case SPEC_T_INTEGER: return "INT64";
    case SPEC_T_BOOLEAN: return "BOOL";
    default: return "BYTES";
    }
}

static json_t *tensor_meta(const char *name, const char *datatype)
{
    return json_pack("{s:s,s:s,s:[i]}", "name", name, "datatype", datatype, "shape", -1);
}

static void v2_metadata(serve_t *sv, struct evhttp_request *req, const modelset_t *ms)
{
    const smodel_t *c = ms->role[ROLE_CHAMPION];
    const spec_t *spec = c->spec;
    json_t *versions = json_array();
    for (int r = 0; r < ROLE_N; r++)
        if (ms->role[r])
            json_array_append_new(versions, json_sprintf("%" PRId64, ms->role[r]->version));
    json_t *inputs = json_array();
    json_array_append_new(inputs, tensor_meta(spec->entity, "BYTES"));
    for (size_t i = 0; i < spec->nfields; i++)
        json_array_append_new(inputs,
                              tensor_meta(spec->fields[i].name, datatype_of(&spec->fields[i])));
    json_t *outputs =
        json_pack("[o,o,o,o]", tensor_meta("score", "FP64"), tensor_meta("decision", "BOOL"),
                  tensor_meta("version", "INT64"), tensor_meta("role", "BYTES"));
    http_reply_json(req, 200,
                    json_pack("{s:s,s:o,s:o,s:o,s:o}", "name", c->name, "versions", versions,
                              "platform",
                              json_sprintf("mlops-scorer/%s", model_algo_name(model_algo(c->m))),
                              "inputs", inputs, "outputs", outputs));
    (void)sv;
}

/* Append the leaves of a (possibly nested, row-major) data array to @p flat. */
static bool flatten(const json_t *data, json_t *flat, int depth)
{
    if (depth > 8)
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(data, i, v)
    {
        if (json_is_array(v)) {
            if (!flatten(v, flat, depth + 1))
                return false;
        } else {
            json_array_append(flat, (json_t *)v);
        }
    }
    return true;
}

static bool element_ok(const char *dt, const json_t *v)
{
    if (json_is_null(v))
        return true; /* a missing value: the spec's policy decides */
    if (!strcmp(dt, "BOOL"))
        return json_is_boolean(v);
    if (!strncmp(dt, "FP", 2))
        return json_is_number(v);
    if (!strncmp(dt, "INT", 3) || !strncmp(dt, "UINT", 4))
        return json_is_integer(v) && (dt[0] != 'U' || json_integer_value(v) >= 0);
    if (!strcmp(dt, "BYTES"))
        return json_is_string(v);
    return false;
}

static bool known_datatype(const char *dt)
{
    static const char *const all[] = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64",
                                      "INT8", "INT16", "INT32",  "INT64",  "FP16",
                                      "FP32", "FP64",  "BYTES"};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(all); i++)
        if (!strcmp(dt, all[i]))
            return true;
    return false;
}

static bool input_known(const spec_t *spec, const char *name)
{
    return spec_field_index(spec, name) >= 0 || !strcmp(name, spec->entity) ||
           !strcmp(name, spec->event_id) || !strcmp(name, spec->event_time);
}

/*
 * Open Inference Protocol inputs -> one instance object per row. Returns the
 * array of instances, or NULL with @p err.
 */
static json_t *v2_instances(const json_t *body, const spec_t *spec, char *err, size_t errsize)
{
    const json_t *inputs = json_object_get(body, "inputs");
    if (!json_is_array(inputs) || !json_array_size(inputs)) {
        snprintf(err, errsize, "'inputs' must be a non-empty array of tensors");
        return NULL;
    }
    json_t *rows = NULL;
    size_t nrows = 0, i;
    const json_t *t;
    json_array_foreach(inputs, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *dt = json_string_value(json_object_get(t, "datatype"));
        const json_t *shape = json_object_get(t, "shape"), *data = json_object_get(t, "data");
        if (!json_is_object(t) || !name || !dt || !json_is_array(shape) || !json_is_array(data)) {
            snprintf(err, errsize, "inputs[%zu]: a tensor needs name, datatype, shape and data", i);
            goto bad;
        }
        if (!input_known(spec, name)) {
            snprintf(err, errsize, "inputs[%zu]: unknown input '%s' (see GET /v2/models/%s)", i,
                     name, spec->name);
            goto bad;
        }
        if (!known_datatype(dt)) {
            snprintf(err, errsize, "inputs[%zu] '%s': unknown datatype '%s'", i, name, dt);
            goto bad;
        }
        size_t nd = json_array_size(shape);
        json_int_t d0 = json_integer_value(json_array_get(shape, 0));
        json_int_t d1 = nd == 2 ? json_integer_value(json_array_get(shape, 1)) : 1;
        if (!(nd == 1 || nd == 2) || !json_is_integer(json_array_get(shape, 0)) ||
            (nd == 2 && !json_is_integer(json_array_get(shape, 1))) || d0 < 1 || d1 != 1) {
            snprintf(err, errsize, "inputs[%zu] '%s': shape must be [N] or [N, 1] with N >= 1", i,
                     name);
            goto bad;
        }
        json_t *flat = json_array();
        if (!flatten(data, flat, 0) || json_array_size(flat) != (size_t)d0) {
            snprintf(err, errsize,
                     "inputs[%zu] '%s': %zu data elements for shape [%" JSON_INTEGER_FORMAT "]", i,
                     name, json_array_size(flat), d0);
            json_decref(flat);
            goto bad;
        }
        if (!rows) {
            nrows = (size_t)d0;
            rows = json_array();
            for (size_t r = 0; r < nrows; r++)
                json_array_append_new(rows, json_object());
        } else if ((size_t)d0 != nrows) {
            snprintf(err, errsize,
                     "inputs[%zu] '%s': %" JSON_INTEGER_FORMAT " rows, inputs[0] has %zu", i, name,
                     d0, nrows);
            json_decref(flat);
            goto bad;
        }
        if (json_object_get(json_array_get(rows, 0), name)) {
            snprintf(err, errsize, "inputs[%zu]: input '%s' given twice", i, name);
            json_decref(flat);
            goto bad;
        }
        for (size_t r = 0; r < nrows; r++) {
            json_t *v = json_array_get(flat, r);
            if (!element_ok(dt, v)) {
                char *shown = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                snprintf(err, errsize, "inputs[%zu] '%s': element %zu is %.40s, not %s", i, name, r,
                         shown ? shown : "?", dt);
                free(shown);
                json_decref(flat);
                goto bad;
            }
            json_object_set(json_array_get(rows, r), name, v);
        }
        json_decref(flat);
    }
    return rows;
bad:
    json_decref(rows);
    return NULL;
}

static bool output_wanted(const json_t *body, const char *name)
{
    const json_t *outs = json_object_get(body, "outputs");
    if (!outs)
        return true;
    size_t i;
    const json_t *o;
    json_array_foreach(outs, i, o)
    {
        const char *n = json_string_value(json_object_get(o, "name"));
        if (n && !strcmp(n, name))
            return true;
    }
    return false;
}

static bool outputs_known(const json_t *body, char *err, size_t errsize)
{
    const json_t *outs = json_object_get(body, "outputs");
    if (!outs)
        return true;
    if (!json_is_array(outs)) {
        snprintf(err, errsize, "'outputs' must be an array of {\"name\": ...}");
        return false;
    }
    size_t i;
    const json_t *o;
    json_array_foreach(outs, i, o)
    {
        const char *n = json_string_value(json_object_get(o, "name"));
        if (!n || (strcmp(n, "score") && strcmp(n, "decision") && strcmp(n, "version") &&
                   strcmp(n, "role"))) {
            snprintf(err, errsize,
                     "outputs[%zu]: unknown output '%s' (score, decision, version, role)", i,
                     n ? n : "?");
            return false;
        }
    }
    return true;
}

static json_t *column(const json_t *preds, const char *key, const char *out_name,
                      const char *datatype)
{
    json_t *data = json_array();
    size_t i;
    const json_t *p;
    json_array_foreach(preds, i, p) json_array_append(data, json_object_get(p, key));
    return json_pack("{s:s,s:s,s:[I],s:o}", "name", out_name, "datatype", datatype, "shape",
                     (json_int_t)json_array_size(preds), "data", data);
}

/* Score @p instances and answer in the protocol of @p op. */
static void score(serve_t *sv, struct evhttp_request *req, op_t op, const modelset_t *ms,
                  json_t *body, json_t *instances)
{
    scorer_t *sc = sv->sc;
    char err[1024], rid[160];
    const char *body_id = op == OP_INFER ? json_string_value(json_object_get(body, "id")) : NULL;
    request_id(sv, req, body_id, rid, sizeof(rid));
    size_t n = json_array_size(instances);
    if (n > (size_t)sc->conf->http_max_batch) {
        reply_error(req, 413,
                    "%zu instances, the most one request may carry is %" PRId64 " (http_max_batch)",
                    n, sc->conf->http_max_batch);
        return;
    }
    json_t **inst = xcalloc(n ? n : 1, sizeof(json_t *));
    for (size_t i = 0; i < n; i++) {
        inst[i] = json_array_get(instances, i);
        if (!json_is_object(inst[i])) {
            free(inst);
            reply_error(req, 400,
                        "instances[%zu]: an instance must be a JSON object of the "
                        "spec's fields",
                        i);
            return;
        }
    }
    json_t *preds = json_array();
    int rc = pipeline_http(sc, inst, n, rid, preds, err, sizeof(err));
    free(inst);
    if (rc) {
        json_decref(preds);
        reply_error(req, 400, "%s", err);
        return;
    }
    const smodel_t *c = ms->role[ROLE_CHAMPION];
    if (op == OP_PREDICT) {
        http_reply_json(req, 200,
                        json_pack("{s:s,s:s,s:o}", "model_name", c->name, "request_id", rid,
                                  "predictions", preds));
        return;
    }
    json_t *outputs = json_array();
    static const char *const cols[][3] = {{"score", "score", "FP64"},
                                          {"decision", "decision", "BOOL"},
                                          {"version", "version", "INT64"},
                                          {"role", "role", "BYTES"}};
    for (size_t k = 0; k < MLOPS_ARRAY_LEN(cols); k++)
        if (output_wanted(body, cols[k][1]))
            json_array_append_new(outputs, column(preds, cols[k][0], cols[k][1], cols[k][2]));
    json_decref(preds);
    http_reply_json(req, 200,
                    json_pack("{s:s,s:o,s:s,s:o}", "model_name", c->name, "model_version",
                              json_sprintf("%" PRId64, c->version), "id", rid, "outputs", outputs));
}

static json_t *parse_body(serve_t *sv, struct evhttp_request *req)
{
    size_t len;
    char *buf = http_body(req, &len);
    err_t *e = NULL;
    json_t *doc = mjson_parse_object(buf, len, (size_t)sv->sc->conf->http_max_body_bytes, &e);
    free(buf);
    if (!doc) {
        reply_error(req, 400, "the body is not a JSON object: %s", e ? e->msg : "?");
        err_destroy(e);
    }
    return doc;
}

/* /v1/models/{name}[:predict] and /v2/models/{name}[/ready|/infer] */
static void on_models(struct evhttp_request *req, void *arg)
{
    serve_t *sv = arg;
    char *path = http_path(req);
    bool v1 = str_starts_with(path, "/v1/");
    const char *rest = path + strlen("/v2/models/");
    op_t op = OP_META;
    size_t nlen = strlen(rest);
    if (v1) {
        const char *colon = strrchr(rest, ':');
        if (colon && !strcmp(colon, ":predict")) {
            op = OP_PREDICT;
            nlen = (size_t)(colon - rest);
        } else if (colon) {
            reply_error(req, 404, "unknown verb '%s' (V1 serves :predict)", colon);
            goto out;
        }
    } else {
        const char *slash = strchr(rest, '/');
        if (slash) {
            nlen = (size_t)(slash - rest);
            if (!strcmp(slash, "/ready"))
                op = OP_READY;
            else if (!strcmp(slash, "/infer"))
                op = OP_INFER;
            else {
                reply_error(req, 404,
                            "unknown path '%s' (served: /v2/models/{name}, /ready, /infer; the "
                            "scorer routes between its loaded versions itself)",
                            path);
                goto out;
            }
        }
    }
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    bool post = op == OP_INFER || op == OP_PREDICT;
    if ((post && method != EVHTTP_REQ_POST) || (!post && method != EVHTTP_REQ_GET)) {
        reply_error(req, 405, "%s answers %s only", path, post ? "POST" : "GET");
        goto out;
    }
    if (!sv->sc->models) {
        reply_error(req, 503, "the models are loading; retry later");
        goto out;
    }
    if (post && unavailable(sv, req))
        goto out;
    /* a pending swap goes in now, before this request reads the set: taken
     * later (in pipeline_http) it would free the set held here */
    pipeline_take_swap(sv->sc);
    modelset_t *ms = models_current(sv->sc->models);
    const char *name = ms->role[ROLE_CHAMPION]->name;
    if (nlen != strlen(name) || memcmp(rest, name, nlen)) {
        reply_error(req, 404, "model '%.*s' is not served here (this scorer serves '%s')",
                    (int)(nlen > 200 ? 200 : nlen), rest, name);
        goto out;
    }
    if (op == OP_META && v1) {
        http_reply_json(req, 200, json_pack("{s:s,s:b}", "name", name, "ready", 1));
    } else if (op == OP_META) {
        v2_metadata(sv, req, ms);
    } else if (op == OP_READY) {
        if (!unavailable(sv, req))
            http_reply_json(req, 200, json_pack("{s:s,s:b}", "name", name, "ready", 1));
    } else {
        json_t *body = parse_body(sv, req);
        if (!body)
            goto out;
        char err[1024];
        json_t *instances = NULL;
        if (op == OP_PREDICT) {
            json_t *in = json_object_get(body, "instances");
            if (!in) {
                instances = json_pack("[O]", body); /* one bare instance */
            } else if (!json_is_array(in) || !json_array_size(in)) {
                reply_error(req, 400, "'instances' must be a non-empty array of objects");
            } else {
                instances = json_incref(in);
            }
        } else if (!outputs_known(body, err, sizeof(err))) {
            reply_error(req, 400, "%s", err);
        } else if (!(instances =
                         v2_instances(body, ms->role[ROLE_CHAMPION]->spec, err, sizeof(err)))) {
            reply_error(req, 400, "%s", err);
        }
        if (instances)
            score(sv, req, op, ms, body, instances);
        json_decref(instances);
        json_decref(body);
    }
out:
    free(path);
}

static void on_live(struct evhttp_request *req, void *arg)
{
    (void)arg;
    http_reply_json(req, 200, json_pack("{s:b}", "live", 1));
}

static void on_ready(struct evhttp_request *req, void *arg)
{
    serve_t *sv = arg;
    if (!unavailable(sv, req))
        http_reply_json(req, 200, json_pack("{s:b}", "ready", 1));
}

static void on_server(struct evhttp_request *req, void *arg)
{
    (void)arg;
    http_reply_json(req, 200,
                    json_pack("{s:s,s:s,s:[]}", "name", "mlops-scorer", "version", MLOPS_VERSION,
                              "extensions"));
}

/* ---- connections: the cap and evhttp's own errors as OIP JSON (common/httpconn.c) ---- */

static json_t *early_error(void *arg, int code, const char *phrase)
{
    const scorer_conf_t *c = ((serve_t *)arg)->sc->conf;
    if (code == 413)
        return json_pack("{s:o}", "error",
                         json_sprintf("the request body is larger than http_max_body_bytes = "
                                      "%lld bytes; send fewer instances per request",
                                      (long long)c->http_max_body_bytes));
    if (code == 400)
        return json_pack("{s:o}", "error",
                         json_sprintf("malformed request line or headers, or a header block "
                                      "larger than http_max_header_bytes = %lld bytes",
                                      (long long)c->http_max_header_bytes));
    return json_pack("{s:o}", "error", json_sprintf("%d %s", code, phrase));
}

static json_t *refused_error(void *arg)
{
    const scorer_conf_t *c = ((serve_t *)arg)->sc->conf;
    return json_pack("{s:o}", "error",
                     json_sprintf("too many connections: this scorer serves at most %lld at "
                                  "once (http_max_connections); retry later",
                                  (long long)c->http_max_connections));
}

int serve_start(scorer_t *sc)
{
    const scorer_conf_t *c = sc->conf;
    if (c->http_port < 0)
        return 0;
    serve_t *sv = xcalloc(1, sizeof(*sv));
    sv->sc = sc;
    sv->started_ms = wall_ms();
    http_limits_t lim = {.max_body_bytes = (size_t)c->http_max_body_bytes,
                         .max_header_bytes = (size_t)c->http_max_header_bytes,
                         .timeout_s = (int)c->http_timeout_s};
    char errstr[512];
    sv->srv = http_server_new(service_base(sc->svc), c->bind_address, (int)c->http_port, &lim,
                              service_metrics(sc->svc), errstr, sizeof(errstr));
    if (!sv->srv) {
        log_fatal("scorer HTTP: %s", errstr);
        free(sv);
        return -1;
    }
    httpconn_conf_t hc = {.metric_prefix = "mlops_scorer_http",
                          .max_connections = c->http_max_connections,
                          .max_header_bytes = c->http_max_header_bytes,
                          .early_error = early_error,
                          .refused_error = refused_error,
                          .arg = sv};
    httpconn_install(sv->srv, service_metrics(sc->svc), &hc);
    http_route(sv->srv, EVHTTP_REQ_GET, "/v2", on_server, sv);
    http_route(sv->srv, EVHTTP_REQ_GET, "/v2/health/live", on_live, sv);
    http_route(sv->srv, EVHTTP_REQ_GET, "/v2/health/ready", on_ready, sv);
    http_route(sv->srv, EVHTTP_REQ_GET | EVHTTP_REQ_POST, "/v2/models/*", on_models, sv);
    http_route(sv->srv, EVHTTP_REQ_GET | EVHTTP_REQ_POST, "/v1/models/*", on_models, sv);
    sc->serve = sv;
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(
                 LOG_STR("bind_address", c->bind_address),
                 LOG_INT("http_port", http_server_port(sv->srv)),
                 LOG_STR("predictions_topic", c->http_log_predictions ? c->predictions_topic : "")),
             "scorer HTTP serving");
    return 0;
}

void serve_stop(scorer_t *sc)
{
    serve_t *sv = sc->serve;
    if (!sv)
        return;
    http_server_destroy(sv->srv);
    free(sv);
    sc->serve = NULL;
}
