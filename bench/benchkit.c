#include "benchkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
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

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    if (kafka_log_error(rk, err, reason))
        atomic_store(&bench_fatal, true);
}

rd_kafka_conf_t *bench_conf_new(const char *brokers, const char *client_id,
                                const char *const *defaults, const bench_props_t *props,
                                const char *const *forced, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, errstr_size) ||
        kafka_conf_set(conf, "client.id", client_id, errstr, errstr_size))
        goto err;
    for (const char *const *p = defaults; p && *p; p += 2)
        if (kafka_conf_set(conf, p[0], p[1], errstr, errstr_size))
            goto err;
    for (size_t i = 0; props && i < props->n; i++)
        if (kafka_conf_set(conf, props->key[i], props->value[i], errstr, errstr_size))
            goto err;
    for (const char *const *p = forced; p && *p; p += 2)
        if (kafka_conf_set(conf, p[0], p[1], errstr, errstr_size))
            goto err;
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
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
