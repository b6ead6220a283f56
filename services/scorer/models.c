/*
 * The served model set (scorer.h). Two sources:
 *  - files (--model, --challenger-model, --shadow-model): loaded at start,
 *    never changed;
 *  - the registry (registry_url + model_name): at start the versions behind
 *    the configured alias (default champion) and the `challenger` and
 *    `shadow` aliases are fetched over /api/v1 and verified against the
 *    sha256 the registry reports; then a follower thread reads `models`
 *    from its end
 *    (model_event/1 snapshots) and polls the registry every
 *    registry_poll_s. When the snapshot names other versions it fetches,
 *    verifies (sha256) and parses them off the hot path and hands a ready
 *    set to the loop thread, which swaps it in between two batches
 *    (models_swap). A bad artifact is rejected (metric, log) and the old
 *    set keeps serving; a registry that cannot be reached leaves the set
 *    as it is while model_stale_seconds grows.
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mjson.h"
#include "scorer.h"

static const char *const role_alias[ROLE_N] = {"champion", "challenger", "shadow"};

const char *smodel_role_name(smodel_role_t r) { return role_alias[r]; }

static smodel_t *smodel_new(model_t *m, const char *name, int64_t version, const char *sha,
                            smodel_role_t role)
{
    smodel_t *sm = xcalloc(1, sizeof(*sm));
    sm->m = m;
    sm->name = xstrdup(name);
    sm->version = version;
    sm->sha256 = xstrdup(sha ? sha : "");
    sm->role = role;
    sm->spec = model_spec(m);
    strbuf_init(&sm->r_keys);
    sm->vals = xcalloc(sm->spec->ncolumns ? sm->spec->ncolumns : 1, sizeof(spec_value_t));
    sm->x = xcalloc(model_nslots(m) ? model_nslots(m) : 1, sizeof(double));
    return sm;
}

static void smodel_destroy(smodel_t *sm)
{
    if (!sm)
        return;
    model_destroy(sm->m);
    free(sm->name);
    free(sm->sha256);
    free(sm->vals);
    free(sm->x);
    free(sm->r_head);
    strbuf_cleanup(&sm->r_keys);
    free(sm->r_key_off);
    free(sm);
}

void modelset_destroy(modelset_t *ms)
{
    if (!ms)
        return;
    for (int r = 0; r < ROLE_N; r++)
        smodel_destroy(ms->role[r]);
    free(ms->salt);
    free(ms);
}

/* What the follower knows of one alias: the version and sha it serves. */
typedef struct alias_state {
    int64_t version;
    char sha[65];
} alias_state_t;

struct models {
    const scorer_conf_t *conf;
    modelset_t *cur;
    /* hand-over from the follower */
    pthread_mutex_t mu;
    modelset_t *next;
    alias_state_t served[ROLE_N]; /* what the follower last built (follower thread) */
    char bad_sha[8][65];          /* rejected artifacts, not tried again */
    int64_t bad_version[8];
    int nbad;
    pthread_t thread;
    bool thread_started;
    atomic_bool quit;
    _Atomic int64_t last_sync_ms; /* last time the registry confirmed the set */
    int64_t generation;
    double share;        /* canary share last seen in a snapshot (follower thread) */
    double served_share; /* the share of the last set built (follower thread) */
    rd_kafka_t *rk;      /* models topic consumer (follower thread) */
    char *token;
    metric_t *m_stale, *m_load_errors, *m_loads, *m_registry_errors, *m_info[ROLE_N];
    metrics_t *metrics;
};

/* ---- registry HTTP ---------------------------------------------------------------- */

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    strbuf_append(arg, ptr, size * nmemb);
    return size * nmemb;
}

/* Keep the X-Artifact-Sha256 header's value (64 hex digits) in @p arg. */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    size_t n = size * nmemb;
    static const char name[] = "x-artifact-sha256:";
    if (arg && n > sizeof(name) - 1 && !strncasecmp(ptr, name, sizeof(name) - 1)) {
        const char *v = ptr + sizeof(name) - 1;
        size_t len = n - (sizeof(name) - 1);
        while (len && (*v == ' ' || *v == '\t'))
            v++, len--;
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        if (len == 64) {
            memcpy(arg, v, 64);
            ((char *)arg)[64] = '\0';
        }
    }
    return n;
}

/*
 * GET @p path; returns the HTTP status (body in @p out, the
 * X-Artifact-Sha256 header in @p sha_hdr when given) or -1 with errstr.
 */
static long http_get(models_t *mo, const char *path, strbuf_t *out, char *sha_hdr, char *errstr,
                     size_t errstr_size)
{
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(errstr, errstr_size, "cannot start libcurl");
        return -1;
    }
    char *url = xasprintf("%s%s", mo->conf->registry_url, path);
    char *auth = xasprintf("Authorization: Bearer %s", mo->token ? mo->token : "");
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    strbuf_reset(out);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)mo->conf->registry_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)mo->conf->registry_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (sha_hdr) {
        sha_hdr[0] = '\0';
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, sha_hdr);
    }
    CURLcode cc = curl_easy_perform(curl);
    long status = -1;
    if (cc != CURLE_OK)
        snprintf(errstr, errstr_size, "GET %s: %s", url, curl_easy_strerror(cc));
    else
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    free(url);
    free(auth);
    return status;
}

static char *url_escape(const char *s)
{
    CURL *curl = curl_easy_init();
    char *e = curl ? curl_easy_escape(curl, s, 0) : NULL;
    char *r = xstrdup(e ? e : s);
    curl_free(e);
    if (curl)
        curl_easy_cleanup(curl);
    return r;
}

/*
 * The registry's view of one alias: 1 with *version set, 0 when the alias
 * is not set, -1 when the registry cannot answer (errstr).
 */
static int registry_alias(models_t *mo, const char *alias, int64_t *version, char *errstr,
                          size_t errstr_size)
{
    char *name = url_escape(mo->conf->model_name);
    char *path = xasprintf("/api/2.0/mlflow/registered-models/alias?name=%s&alias=%s", name, alias);
    strbuf_t body;
    strbuf_init(&body);
    long st = http_get(mo, path, &body, NULL, errstr, errstr_size);
    int rc = -1;
    if (st == 404 || st == 400) {
        rc = 0; /* no such alias (or model) */
    } else if (st == 200) {
        json_t *j = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
        json_t *mv = json_object_get(j, "model_version");
        const char *v = json_string_value(json_object_get(mv, "version"));
        if (v && parse_int64(v, version) == 0) {
            rc = 1;
        } else if (json_is_integer(json_object_get(mv, "version"))) {
            *version = json_integer_value(json_object_get(mv, "version"));
            rc = 1;
        } else {
            snprintf(errstr, errstr_size, "%s: no model_version.version in the answer", path);
        }
        json_decref(j);
    } else if (st > 0) {
        snprintf(errstr, errstr_size, "%s: HTTP %ld", path, st);
    }
    strbuf_cleanup(&body);
    free(path);
    free(name);
    return rc;
}

static bool is_bad_version(models_t *mo, int64_t version)
{
    for (int i = 0; i < mo->nbad; i++)
        if (mo->bad_version[i] == version)
            return true;
    return false;
}

static bool is_bad(models_t *mo, const char *sha)
{
    for (int i = 0; i < mo->nbad; i++)
        if (!strcmp(mo->bad_sha[i], sha))
            return true;
    return false;
}

/* Versions of one model are immutable once they have an artifact: a rejected
 * version (or sha) is not fetched again. */
static void mark_bad(models_t *mo, int64_t version, const char *sha)
{
    if (is_bad_version(mo, version))
        return;
    mo->bad_version[mo->nbad % 8] = version;
    str_copy(mo->bad_sha[mo->nbad % 8], sha ? sha : "", 65);
    if (mo->nbad < 8)
        mo->nbad++;
}

/*
 * Fetch version @p version's artifact, check its sha256 against @p want
 * (when known) and parse it. Returns the model, or NULL with errstr and
 * *bad set when the artifact itself is wrong (not a transport failure).
 */
static model_t *registry_fetch(models_t *mo, int64_t version, const char *want, char sha[65],
                               bool *bad, char *errstr, size_t errstr_size)
{
    *bad = false;
    char *name = url_escape(mo->conf->model_name);
    char *path = xasprintf("/api/v1/models/%s/versions/%" PRId64 "/artifact", name, version);
    strbuf_t body;
    strbuf_init(&body);
    model_t *m = NULL;
    char hdr[65] = "";
    long st = http_get(mo, path, &body, hdr, errstr, errstr_size);
    if (st != 200) {
        if (st > 0)
            snprintf(errstr, errstr_size, "%s: HTTP %ld", path, st);
        goto done;
    }
    sha256_hex(body.data ? body.data : "", body.len, sha);
    if (want && *want && strcmp(want, sha)) {
        snprintf(errstr, errstr_size, "%s: sha256 %s does not match the registry's %s", path, sha,
                 want);
        *bad = true;
        goto done;
    }
    if (!hdr[0] || strcmp(hdr, sha)) {
        snprintf(errstr, errstr_size,
                 "%s: sha256 %s of the bytes does not match X-Artifact-Sha256 %s", path, sha,
                 hdr[0] ? hdr : "(missing)");
        *bad = true;
        goto done;
    }
    char why[1024];
    m = model_parse(body.data ? body.data : "", body.len, why, sizeof(why));
    if (!m) {
        snprintf(errstr, errstr_size, "%s: not a valid model/1 artifact: %s", path, why);
        *bad = true;
    }
done:
    strbuf_cleanup(&body);
    free(path);
    free(name);
    return m;
}

/* ---- building sets ------------------------------------------------------------------ */

static void set_info(models_t *mo, modelset_t *ms)
{
    for (int r = 0; r < ROLE_N; r++) {
        char l[256];
        smodel_t *sm = ms->role[r];
        if (mo->m_info[r])
            metric_set(mo->m_info[r], 0);
        if (!sm)
            continue;
        char v[32];
        snprintf(v, sizeof(v), "%" PRId64, sm->version);
        mo->m_info[r] = metrics_gauge(
            mo->metrics, "mlops_scorer_model_info", "The model versions served (value 1).",
            metrics_labels(l, sizeof(l), "role", role_alias[r], "model", sm->name, "version", v,
                           "sha256", sm->sha256, NULL));
        metric_set(mo->m_info[r], 1);
    }
}

static modelset_t *set_new(models_t *mo, double share)
{
    modelset_t *ms = xcalloc(1, sizeof(*ms));
    ms->canary_share = share;
    ms->generation = ++mo->generation;
    return ms;
}

static model_t *load_file(const char *path, char sha[65], char *errstr, size_t errstr_size)
{
    size_t len = 0;
    char *buf = file_read_all(path, (size_t)1 << 30, &len, errstr, errstr_size);
    if (!buf)
        return NULL;
    sha256_hex(buf, len, sha);
    char why[1024];
    model_t *m = model_parse(buf, len, why, sizeof(why));
    if (!m)
        snprintf(errstr, errstr_size, "%s: %s", path, why);
    free(buf);
    return m;
}

static modelset_t *set_from_files(models_t *mo)
{
    const scorer_conf_t *c = mo->conf;
    const char *files[ROLE_N] = {c->model, c->challenger_model, c->shadow_model};
    modelset_t *ms = set_new(mo, c->canary_share);
    for (int r = 0; r < ROLE_N; r++) {
        if (!files[r])
            continue;
        char sha[65], errstr[1536];
        model_t *m = load_file(files[r], sha, errstr, sizeof(errstr));
        if (!m) {
            log_fatal("model: %s", errstr);
            modelset_destroy(ms);
            return NULL;
        }
        const char *name = json_string_value(json_object_get(model_doc(m), "name"));
        int64_t version = 0;
        json_t *jv = json_object_get(model_doc(m), "version");
        if (json_is_integer(jv))
            version = json_integer_value(jv);
        ms->role[r] = smodel_new(m, name ? name : "model", version, sha, r);
    }
    ms->salt = xstrdup(ms->role[0]->name);
    return ms;
}

/* A snapshot's alias entry (version and sha256), or version 0. */
static void snapshot_alias(const json_t *snap, const char *alias, alias_state_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *a = json_object_get(json_object_get(snap, "aliases"), alias);
    json_t *v = json_object_get(a, "version");
    if (json_is_integer(v))
        out->version = json_integer_value(v);
    else if (json_is_string(v) && parse_int64(json_string_value(v), &out->version))
        out->version = 0;
    const char *sha = json_string_value(json_object_get(a, "sha256"));
    if (sha)
        str_copy(out->sha, sha, sizeof(out->sha));
}

/* Canary share from a snapshot's deployment record, else the configured one. */
static double snapshot_share(models_t *mo, const json_t *snap)
{
    json_t *d = json_object_get(snap, "deployment");
    json_t *s = json_object_get(d, "canary_share");
    if (json_is_number(s)) {
        double v = json_number_value(s);
        if (v >= 0 && v <= 1)
            return v;
    }
    return mo->conf->canary_share;
}

/*
 * Build the set the registry says should be served: for each role, the
 * version in @p want (0 = none). Versions already served are reused by
 * refetching nothing: a model of the current set cannot be shared across
 * threads, so it is fetched again (artifacts are small next to a swap's
 * rarity). Returns the new set, or NULL (errors logged, *stale set when
 * the registry could not be reached).
 */
static modelset_t *set_from_registry(models_t *mo, const alias_state_t want[ROLE_N], double share,
                                     bool *transport_error)
{
    *transport_error = false;
    if (want[ROLE_CHAMPION].version <= 0) {
        log_warn("registry: model '%s' has no '%s' alias: keeping the current models",
                 mo->conf->model_name, role_alias[ROLE_CHAMPION]);
        return NULL;
    }
    modelset_t *ms = set_new(mo, share);
    ms->salt = xstrdup(mo->conf->model_name);
    for (int r = 0; r < ROLE_N; r++) {
        if (want[r].version <= 0)
            continue;
        if (r > 0 && want[r].version == want[ROLE_CHAMPION].version)
            continue; /* challenger or shadow = champion: nothing to compare */
        char sha[65] = "", errstr[1536];
        bool bad = false;
        if ((want[r].sha[0] && is_bad(mo, want[r].sha)) || is_bad_version(mo, want[r].version)) {
            if (r == ROLE_CHAMPION)
                goto fail;
            continue;
        }
        model_t *m =
            registry_fetch(mo, want[r].version, want[r].sha, sha, &bad, errstr, sizeof(errstr));
        if (!m) {
            log_emit(LOG_LVL_ERROR,
                     LOG_FIELDS(LOG_STR("model", mo->conf->model_name),
                                LOG_INT("version", want[r].version),
                                LOG_STR("role", role_alias[r])),
                     "model version rejected, the current models keep serving: %s", errstr);
            if (bad) {
                metric_inc(mo->m_load_errors);
                mark_bad(mo, want[r].version, want[r].sha[0] ? want[r].sha : sha);
            } else {
                metric_inc(mo->m_registry_errors);
                *transport_error = true;
            }
            goto fail;
        }
        ms->role[r] = smodel_new(m, mo->conf->model_name, want[r].version, sha, r);
    }
    return ms;
fail:
    modelset_destroy(ms);
    return NULL;
}

/* The aliases as the registry answers them now (for start-up and polling). */
static int registry_aliases(models_t *mo, alias_state_t want[ROLE_N])
{
    for (int r = 0; r < ROLE_N; r++) {
        char errstr[1024];
        memset(&want[r], 0, sizeof(want[r]));
        const char *alias = r == ROLE_CHAMPION ? mo->conf->alias : role_alias[r];
        int rc = registry_alias(mo, alias, &want[r].version, errstr, sizeof(errstr));
        if (rc < 0) {
            log_warn("registry: %s", errstr);
            metric_inc(mo->m_registry_errors);
            return -1;
        }
    }
    return 0;
}

static bool same_as_served(models_t *mo, const alias_state_t want[ROLE_N])
{
    for (int r = 0; r < ROLE_N; r++) {
        if (want[r].version != mo->served[r].version)
            return false;
        if (want[r].sha[0] && mo->served[r].sha[0] && strcmp(want[r].sha, mo->served[r].sha))
            return false;
    }
    return true;
}

static void remember_served(models_t *mo, const modelset_t *ms, const alias_state_t want[ROLE_N])
{
    for (int r = 0; r < ROLE_N; r++) {
        mo->served[r] = want[r];
        if (ms->role[r])
            str_copy(mo->served[r].sha, ms->role[r]->sha256, sizeof(mo->served[r].sha));
    }
}

/* Follower: a wanted state arrived (snapshot or poll). */
static void follower_apply(models_t *mo, const alias_state_t want[ROLE_N], double share)
{
    if (same_as_served(mo, want) && share == mo->served_share) {
        atomic_store(&mo->last_sync_ms, mono_ms());
        return;
    }
    bool transport = false;
    modelset_t *ms = set_from_registry(mo, want, share, &transport);
    if (!ms)
        return; /* stale until a later event or poll succeeds */
    remember_served(mo, ms, want);
    mo->served_share = share;
    atomic_store(&mo->last_sync_ms, mono_ms());
    pthread_mutex_lock(&mo->mu);
    modelset_destroy(mo->next);
    mo->next = ms;
    pthread_mutex_unlock(&mo->mu);
    log_emit(LOG_LVL_INFO,
             LOG_FIELDS(LOG_STR("model", mo->conf->model_name),
                        LOG_INT("champion", want[ROLE_CHAMPION].version),
                        LOG_INT("challenger", want[ROLE_CHALLENGER].version),
                        LOG_INT("shadow", want[ROLE_SHADOW].version)),
             "new model set verified and ready to swap in");
}

static void handle_event(models_t *mo, const rd_kafka_message_t *rkm)
{
    json_t *ev = json_loadb(rkm->payload, rkm->len, 0, NULL);
    if (!ev)
        return;
    const char *name = json_string_value(json_object_get(ev, "model"));
    json_t *snap = json_object_get(ev, "snapshot");
    if (name && snap && !strcmp(name, mo->conf->model_name)) {
        alias_state_t want[ROLE_N];
        for (int r = 0; r < ROLE_N; r++)
            snapshot_alias(snap, r == ROLE_CHAMPION ? mo->conf->alias : role_alias[r], &want[r]);
        log_emit(LOG_LVL_DEBUG, LOG_FIELDS(LOG_STR("model", name), LOG_INT("offset", rkm->offset)),
                 "models event");
        mo->share = snapshot_share(mo, snap);
        follower_apply(mo, want, mo->share);
    }
    json_decref(ev);
}

static void *follower_main(void *arg)
{
    models_t *mo = arg;
    /* the models consumer starts at the end of the topic (the start-up set
     * came from the registry: older snapshots must not be replayed); a poll
     * one second in covers a change made while it was joining */
    int64_t next_poll = mono_ms() + 1000;
    while (!atomic_load(&mo->quit)) {
        if (mo->rk) {
            rd_kafka_message_t *rkm = rd_kafka_consumer_poll(mo->rk, 200);
            if (rkm) {
                if (!rkm->err)
                    handle_event(mo, rkm);
                rd_kafka_message_destroy(rkm);
                continue;
            }
        } else {
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (mono_ms() >= next_poll) {
            next_poll = mono_ms() + mo->conf->registry_poll_s * 1000;
            alias_state_t want[ROLE_N];
            if (registry_aliases(mo, want) == 0) {
                /* the poll knows versions, not shas: keep the served shas */
                for (int r = 0; r < ROLE_N; r++)
                    if (want[r].version == mo->served[r].version)
                        str_copy(want[r].sha, mo->served[r].sha, sizeof(want[r].sha));
                follower_apply(mo, want, mo->share);
            }
        }
    }
    return NULL;
}

static rd_kafka_t *models_consumer(models_t *mo, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char group[128];
    snprintf(group, sizeof(group), "mlops-scorer-models-%ld-%" PRId64, (long)getpid(), wall_us());
    if (kafka_conf_set(kc, "bootstrap.servers", mo->conf->kafka_brokers, errstr, errstr_size) ||
        kafka_conf_set(kc, "group.id", group, errstr, errstr_size) ||
        kafka_conf_set(kc, "enable.auto.commit", "false", errstr, errstr_size) ||
        kafka_conf_set(kc, "auto.offset.reset", "latest", errstr, errstr_size) ||
        kafka_conf_set(kc, "client.id", "mlops-scorer-models", errstr, errstr_size)) {
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(kc, kafka_log_cb);
    rd_kafka_conf_set_error_cb(kc, kafka_error_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, mo->conf->models_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (err) {
        snprintf(errstr, errstr_size, "subscribe %s: %s", mo->conf->models_topic,
                 rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

models_t *models_new(const scorer_conf_t *conf, metrics_t *metrics)
{
    models_t *mo = xcalloc(1, sizeof(*mo));
    mo->conf = conf;
    mo->metrics = metrics;
    pthread_mutex_init(&mo->mu, NULL);
    atomic_init(&mo->quit, false);
    atomic_init(&mo->last_sync_ms, mono_ms());
    mo->share = conf->canary_share;
    mo->m_stale =
        metrics_gauge(metrics, "mlops_scorer_model_stale_seconds",
                      "Seconds since the registry last confirmed the served models.", NULL);
    mo->m_load_errors = metrics_counter(metrics, "mlops_scorer_model_load_errors_total",
                                        "Artifacts rejected (sha256 mismatch or invalid).", NULL);
    mo->m_registry_errors = metrics_counter(metrics, "mlops_scorer_registry_errors_total",
                                            "Registry requests that got no usable answer.", NULL);
    mo->m_loads = metrics_counter(metrics, "mlops_scorer_model_swaps_total",
                                  "Model sets swapped in after start.", NULL);
    if (conf->model) {
        mo->cur = set_from_files(mo);
        if (!mo->cur)
            goto fail;
    } else {
        if (!conf->registry_url || !conf->model_name) {
            log_fatal("no model: give --model FILE, or --registry-url and --model-name");
            goto fail;
        }
        mo->token = conf->registry_token ? xstrdup(conf->registry_token) : NULL;
        if (mo->token)
            log_add_secret(mo->token);
        alias_state_t want[ROLE_N];
        if (registry_aliases(mo, want)) {
            log_fatal("registry %s: cannot read the aliases of '%s' at start", conf->registry_url,
                      conf->model_name);
            goto fail;
        }
        bool transport = false;
        mo->cur = set_from_registry(mo, want, conf->canary_share, &transport);
        if (!mo->cur) {
            log_fatal("registry: no servable version behind '%s' of '%s'", conf->alias,
                      conf->model_name);
            goto fail;
        }
        remember_served(mo, mo->cur, want);
        mo->served_share = conf->canary_share;
        char errstr[512];
        mo->rk = models_consumer(mo, errstr, sizeof(errstr));
        if (!mo->rk)
            log_warn("models topic: %s (polling the registry only)", errstr);
        if (pthread_create(&mo->thread, NULL, follower_main, mo)) {
            log_fatal("cannot start the model follower thread");
            goto fail;
        }
        mo->thread_started = true;
    }
    set_info(mo, mo->cur);
    for (int r = 0; r < ROLE_N; r++)
        if (mo->cur->role[r])
            log_emit(LOG_LVL_INFO,
                     LOG_FIELDS(LOG_STR("role", role_alias[r]),
                                LOG_STR("model", mo->cur->role[r]->name),
                                LOG_INT("version", mo->cur->role[r]->version),
                                LOG_STR("sha256", mo->cur->role[r]->sha256),
                                LOG_STR("algo", model_algo_name(model_algo(mo->cur->role[r]->m)))),
                     "model loaded");
    return mo;
fail:
    models_destroy(mo);
    return NULL;
}

void models_destroy(models_t *mo)
{
    if (!mo)
        return;
    atomic_store(&mo->quit, true);
    if (mo->thread_started)
        pthread_join(mo->thread, NULL);
    if (mo->rk) {
        rd_kafka_consumer_close(mo->rk);
        rd_kafka_destroy(mo->rk);
    }
    modelset_destroy(mo->cur);
    modelset_destroy(mo->next);
    pthread_mutex_destroy(&mo->mu);
    free(mo->token);
    free(mo);
}

modelset_t *models_current(models_t *mo) { return mo->cur; }

bool models_swap(models_t *mo)
{
    if (!mo->thread_started)
        return false;
    pthread_mutex_lock(&mo->mu);
    modelset_t *ms = mo->next;
    mo->next = NULL;
    pthread_mutex_unlock(&mo->mu);
    if (!ms)
        return false;
    modelset_destroy(mo->cur);
    mo->cur = ms;
    metric_inc(mo->m_loads);
    set_info(mo, ms);
    return true;
}

void models_tick(models_t *mo)
{
    if (!mo->thread_started) {
        metric_set(mo->m_stale, 0);
        return;
    }
    metric_set(mo->m_stale, (double)(mono_ms() - atomic_load(&mo->last_sync_ms)) / 1000.0);
}
