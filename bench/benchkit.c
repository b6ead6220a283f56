#include "benchkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

atomic_bool bench_fatal;

int bench_props_add(bench_props_t *props, const char *arg, char *errstr, size_t errstr_size)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        snprintf(errstr, errstr_size, "-X %s: expected prop=value (a librdkafka property)", arg);
        return -1;
    }
    props->key = xrealloc(props->key, (props->n + 1) * sizeof(char *));
    props->value = xrealloc(props->value, (props->n + 1) * sizeof(char *));
    props->key[props->n] = xstrndup(arg, (size_t)(eq - arg));
    props->value[props->n] = xstrdup(eq + 1);
    props->n++;
    return 0;
}

void bench_props_cleanup(bench_props_t *props)
{
    for (size_t i = 0; i < props->n; i++) {
        free(props->key[i]);
        free(props->value[i]);
    }
    free(props->key);
    free(props->value);
    memset(props, 0, sizeof(*props));
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    log_level_t lvl = log_level_from_syslog(level);
    if (!log_enabled(lvl))
        return;
    log_emit(lvl,
             LOG_FIELDS(LOG_STR("component", "librdkafka"), LOG_STR("facility", fac),
                        LOG_STR("client", rd_kafka_name(rk))),
             "%s", buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        log_emit(LOG_LVL_FATAL,
                 LOG_FIELDS(LOG_STR("client", rd_kafka_name(rk)),
                            LOG_STR("error", rd_kafka_err2name(orig))),
                 "fatal Kafka error: %s", why);
        atomic_store(&bench_fatal, true);
        return;
    }
    /* Informational: librdkafka retries by itself. */
    log_emit(LOG_LVL_WARN,
             LOG_FIELDS(LOG_STR("client", rd_kafka_name(rk)),
                        LOG_STR("error", rd_kafka_err2name((rd_kafka_resp_err_t)err))),
             "Kafka: %s", reason);
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                    size_t errstr_size)
{
    char e[512];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "Kafka property %s=%s: %s", k, v, e);
        return -1;
    }
    return 0;
}

rd_kafka_conf_t *bench_conf_new(const char *brokers, const char *client_id,
                                const char *const *defaults, const bench_props_t *props,
                                const char *const *forced, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", brokers, errstr, errstr_size) ||
        conf_set(conf, "client.id", client_id, errstr, errstr_size))
        goto err;
    for (const char *const *p = defaults; p && *p; p += 2)
        if (conf_set(conf, p[0], p[1], errstr, errstr_size))
            goto err;
    for (size_t i = 0; props && i < props->n; i++)
        if (conf_set(conf, props->key[i], props->value[i], errstr, errstr_size))
            goto err;
    for (const char *const *p = forced; p && *p; p += 2)
        if (conf_set(conf, p[0], p[1], errstr, errstr_size))
            goto err;
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    return conf;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

void bench_log_init(const char *name)
{
    log_level_t level = LOG_LVL_INFO;
    const char *env = getenv("MLOPS_LOG_LEVEL");
    if (env && *env && log_level_parse(env, &level))
        fprintf(stderr, "%s: MLOPS_LOG_LEVEL=%s: not a level (debug, info, warn, error)\n", name,
                env);
    log_init(name, level);
}

int bench_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v;
    if (parse_int64(s, &v) || v < lo || v > hi) {
        fprintf(stderr, "%s %s: expected a whole number from %lld to %lld\n", opt, s, (long long)lo,
                (long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}
