/* Thompson sampling A/B rollout with posteriors in Redis (ab.h). */
#include "ab.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "kafka.h"
#include "log.h"
#include "redis.h"
#include "util.h"

/* ---- sampler ------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ab_rng_seed(ab_rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(ab_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

double ab_rng_uniform(ab_rng_t *r) { return ((double)(next(r) >> 11) + 0.5) / 9007199254740992.0; }

static double normal(ab_rng_t *r)
{
    double u = ab_rng_uniform(r), v = ab_rng_uniform(r);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* Gamma(a, 1) for a >= 1: Marsaglia and Tsang (2000). */
static double gamma_draw(ab_rng_t *r, double a)
{
    double d = a - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = normal(r), v = 1 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = ab_rng_uniform(r);
        if (u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)))
            return d * v;
    }
}

double ab_beta(ab_rng_t *r, double a, double b)
{
    double x = gamma_draw(r, a), y = gamma_draw(r, b);
    return x / (x + y);
}

/* ---- state ---------------------------------------------------------------------------- */

static const char APPLY_LUA[] =
    "local f = 'off:' .. ARGV[1]\n"
    "local last = redis.call('HGET', KEYS[1], f)\n"
    "if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], f, ARGV[2])\n"
    "redis.call('HINCRBY', KEYS[1], ARGV[3], 1)\n"
    "return 1\n";

struct ab {
    ab_opts_t o;
    char *model, *positive, *labels_topic, *group_id;
    redis_client_t *rc;  /* loop thread */
    redis_client_t *lrc; /* label thread */
    ab_rng_t rng;
    char pair[40];
    char post_key[512];
    double post[4]; /* s0 f0 s1 f1 */
    strbuf_t evbuf; /* queued event records: key\0value\0 ... */
    size_t nev;
    rd_kafka_t *rk;
    pthread_t thread;
    bool started;
    atomic_bool quit;
    metric_t *m_rewards[4], *m_unmatched, *m_replays, *m_mean[2], *m_routed[2], *m_lost;
};

static void key_post(char *buf, size_t size, const char *model, const char *pair)
{
    snprintf(buf, size, "mlops:scorer:%s:ab:%s", model, pair);
}

static const char *text_of(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_true(v))
        return "true";
    if (json_is_false(v))
        return "false";
    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    if (json_is_real(v)) {
        snprintf(buf, size, "%.17g", json_real_value(v));
        return buf;
    }
    return NULL;
}

static void apply_label(ab_t *ab, const rd_kafka_message_t *rkm)
{
    json_t *lab = json_loadb(rkm->payload, rkm->len, JSON_REJECT_DUPLICATES, NULL);
    const char *eid = json_string_value(json_object_get(lab, "event_id"));
    char buf[64];
    const char *val = text_of(json_object_get(lab, "label"), buf, sizeof(buf));
    if (!eid || !val) {
        json_decref(lab);
        return;
    }
    bool positive = !strcmp(val, ab->positive);
    err_t *e = NULL;
    redisReply *r = redis_command(ab->lrc, &e, "GET mlops:scorer:%s:ab:ev:%s", ab->model, eid);
    char pair[40] = "";
    int arm = -1, decision = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p1 = strchr(r->str, '|');
        if (p1 && (size_t)(p1 - r->str) < sizeof(pair)) {
            memcpy(pair, r->str, (size_t)(p1 - r->str));
            pair[p1 - r->str] = '\0';
            if (sscanf(p1 + 1, "%d|%d", &arm, &decision) != 2)
                arm = -1;
        }
    }
    freeReplyObject(r);
    if (e) {
        metric_inc(ab->m_lost);
        err_destroy(e);
        e = NULL;
    }
    if (arm < 0 || arm > 1) {
        metric_inc(ab->m_unmatched);
        json_decref(lab);
        return;
    }
    bool success = (decision == 1) == positive;
    char key[512], part[300], off[32], field[4];
    key_post(key, sizeof(key), ab->model, pair);
    snprintf(part, sizeof(part), "%s:%" PRId32, rd_kafka_topic_name(rkm->rkt), rkm->partition);
    snprintf(off, sizeof(off), "%" PRId64, rkm->offset);
    snprintf(field, sizeof(field), "%c%d", success ? 's' : 'f', arm);
    const char *argv[] = {"EVAL", APPLY_LUA, "1", key, part, off, field};
    r = redis_command_argv(ab->lrc, &e, 7, argv, NULL);
    if (r && r->type == REDIS_REPLY_INTEGER) {
        if (r->integer == 1)
            metric_inc(ab->m_rewards[arm * 2 + (success ? 0 : 1)]);
        else
            metric_inc(ab->m_replays);
    } else {
        metric_inc(ab->m_lost);
    }
    freeReplyObject(r);
    err_destroy(e);
    json_decref(lab);
}

static void *label_main(void *arg)
{
    ab_t *ab = arg;
    while (!atomic_load(&ab->quit)) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(ab->rk, 200);
        if (!rkm)
            continue;
        if (!rkm->err)
            apply_label(ab, rkm);
        rd_kafka_message_destroy(rkm);
    }
    return NULL;
}

ab_t *ab_new(const ab_opts_t *o, char *errstr, size_t errstr_size)
{
    ab_t *ab = xcalloc(1, sizeof(*ab));
    ab->o = *o;
    ab->model = xstrdup(o->model);
    ab->positive = xstrdup(o->positive ? o->positive : "1");
    ab->labels_topic = xstrdup(o->labels_topic);
    ab->group_id = xstrdup(o->group_id);
    atomic_init(&ab->quit, false);
    strbuf_init(&ab->evbuf);
    ab_rng_seed(&ab->rng, o->seed ? o->seed : (uint64_t)wall_us());
    metrics_t *m = o->metrics;
    static const char *const names[4][2] = {{"champion", "success"},
                                            {"champion", "failure"},
                                            {"challenger", "success"},
                                            {"challenger", "failure"}};
    for (int i = 0; i < 4; i++) {
        char l[96];
        ab->m_rewards[i] = metrics_counter(
            m, "mlops_scorer_ab_rewards_total", "A/B rewards applied from labels.",
            metrics_labels(l, sizeof(l), "arm", names[i][0], "outcome", names[i][1], NULL));
    }
    for (int a = 0; a < 2; a++) {
        char l[64];
        ab->m_mean[a] = metrics_gauge(m, "mlops_scorer_ab_posterior_mean",
                                      "Posterior mean reward rate per arm.",
                                      metrics_labels(l, sizeof(l), "arm", names[a * 2][0], NULL));
        ab->m_routed[a] = metrics_counter(
            m, "mlops_scorer_ab_routed_total", "Events routed by Thompson sampling, per arm.",
            metrics_labels(l, sizeof(l), "arm", names[a * 2][0], NULL));
    }
    ab->m_unmatched =
        metrics_counter(m, "mlops_scorer_ab_labels_unmatched_total",
                        "Labels of events this A/B did not route (or expired).", NULL);
    ab->m_replays = metrics_counter(m, "mlops_scorer_ab_label_replays_total",
                                    "Labels already applied (replays), skipped.", NULL);
    ab->m_lost =
        metrics_counter(m, "mlops_scorer_ab_redis_errors_total",
                        "A/B Redis calls that failed (rewards or routes not recorded).", NULL);
    redis_opts_t ro = {.url = o->redis_url,
                       .timeout_ms = o->redis_timeout_ms,
                       .metrics = m,
                       .metrics_labels = "client=\"ab\""};
    ab->rc = redis_client_new(&ro, errstr, errstr_size);
    redis_opts_t lro = ro;
    lro.timeout_ms = 1000;
    lro.metrics_labels = "client=\"ab_labels\"";
    ab->lrc = ab->rc ? redis_client_new(&lro, errstr, errstr_size) : NULL;
    if (!ab->lrc)
        goto fail;
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    if (kafka_conf_set(kc, "bootstrap.servers", o->brokers, errstr, errstr_size) ||
        kafka_conf_set(kc, "group.id", o->group_id, errstr, errstr_size) ||
        kafka_conf_set(kc, "auto.offset.reset", "earliest", errstr, errstr_size) ||
        kafka_conf_set(kc, "isolation.level", "read_committed", errstr, errstr_size) ||
        kafka_conf_set(kc, "client.id", "mlops-scorer-ab-labels", errstr, errstr_size)) {
        rd_kafka_conf_destroy(kc);
        goto fail;
    }
    rd_kafka_conf_set_log_cb(kc, kafka_log_cb);
    rd_kafka_conf_set_error_cb(kc, kafka_error_cb);
    ab->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
    if (!ab->rk) {
        rd_kafka_conf_destroy(kc);
        goto fail;
    }
    rd_kafka_poll_set_consumer(ab->rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, o->labels_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(ab->rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (err) {
        snprintf(errstr, errstr_size, "subscribe %s: %s", o->labels_topic, rd_kafka_err2str(err));
        goto fail;
    }
    if (pthread_create(&ab->thread, NULL, label_main, ab)) {
        snprintf(errstr, errstr_size, "cannot start the label thread");
        goto fail;
    }
    ab->started = true;
    return ab;
fail:
    ab_destroy(ab);
    return NULL;
}

void ab_destroy(ab_t *ab)
{
    if (!ab)
        return;
    atomic_store(&ab->quit, true);
    if (ab->started)
        pthread_join(ab->thread, NULL);
    if (ab->rk) {
        rd_kafka_consumer_close(ab->rk);
        rd_kafka_destroy(ab->rk);
    }
    redis_client_destroy(ab->rc);
    redis_client_destroy(ab->lrc);
    strbuf_cleanup(&ab->evbuf);
    free(ab->model);
    free(ab->positive);
    free(ab->labels_topic);
    free(ab->group_id);
    free(ab);
}

void ab_set_pair(ab_t *ab, const char *sha_champion, const char *sha_challenger)
{
    char pair[40];
    snprintf(pair, sizeof(pair), "%.8s-%.8s", sha_champion, sha_challenger);
    if (!strcmp(pair, ab->pair))
        return;
    memcpy(ab->pair, pair, sizeof(pair));
    key_post(ab->post_key, sizeof(ab->post_key), ab->model, ab->pair);
    for (int i = 0; i < 4; i++)
        ab->post[i] = 0;
    ab_refresh(ab);
}

int ab_pick(ab_t *ab)
{
    double t0 = ab_beta(&ab->rng, 1 + ab->post[0], 1 + ab->post[1]);
    double t1 = ab_beta(&ab->rng, 1 + ab->post[2], 1 + ab->post[3]);
    int arm = t1 > t0 ? 1 : 0;
    metric_inc(ab->m_routed[arm]);
    return arm;
}

void ab_note(ab_t *ab, const char *event_id, int arm, bool decision)
{
    strbuf_appendf(&ab->evbuf, "mlops:scorer:%s:ab:ev:%s", ab->model, event_id);
    strbuf_putc(&ab->evbuf, '\0');
    strbuf_appendf(&ab->evbuf, "%s|%d|%d", ab->pair, arm, decision ? 1 : 0);
    strbuf_putc(&ab->evbuf, '\0');
    ab->nev++;
}

void ab_flush(ab_t *ab)
{
    if (!ab->nev)
        return;
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%" PRId64, ab->o.event_ttl_s);
    const char *p = ab->evbuf.data;
    for (size_t i = 0; i < ab->nev; i++) {
        const char *v = p + strlen(p) + 1;
        const char *argv[] = {"SET", p, v, "EX", ttl};
        redis_append_argv(ab->rc, 5, argv, NULL);
        p = v + strlen(v) + 1;
    }
    redisReply **replies = xcalloc(ab->nev, sizeof(*replies));
    err_t *e = NULL;
    if (redis_pipeline_exec(ab->rc, replies, ab->nev, &e)) {
        metric_add(ab->m_lost, (double)ab->nev);
        err_destroy(e);
    } else {
        for (size_t i = 0; i < ab->nev; i++)
            freeReplyObject(replies[i]);
    }
    free(replies);
    strbuf_reset(&ab->evbuf);
    ab->nev = 0;
}

void ab_refresh(ab_t *ab)
{
    if (!ab->pair[0])
        return;
    err_t *e = NULL;
    const char *argv[] = {"HMGET", ab->post_key, "s0", "f0", "s1", "f1"};
    redisReply *r = redis_command_argv(ab->rc, &e, 6, argv, NULL);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
        for (int i = 0; i < 4; i++) {
            int64_t v = 0;
            if (r->element[i]->type == REDIS_REPLY_STRING && parse_int64(r->element[i]->str, &v))
                v = 0;
            /* counts are never negative; a corrupted one would make the Beta
             * sampler return NaN and the routing meaningless */
            ab->post[i] = v > 0 ? (double)v : 0.0;
        }
        for (int a = 0; a < 2; a++)
            metric_set(ab->m_mean[a],
                       (1 + ab->post[2 * a]) / (2 + ab->post[2 * a] + ab->post[2 * a + 1]));
    } else if (e) {
        metric_inc(ab->m_lost);
    }
    freeReplyObject(r);
    err_destroy(e);
}
