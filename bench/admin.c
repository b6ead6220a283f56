/*
 * mlops-bench create / delete: the topics and groups of one benchmark run,
 * through librdkafka's Admin API (no JVM start-up per call, unlike
 * kafka-topics.sh). Each run uses its own names, so runs never see each
 * other's data, and deletes them at the end.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "benchkit.h"
#include "lifecycle.h"
#include "log.h"
#include "util.h"

typedef struct admin_opts {
    const char *brokers;
    int64_t partitions;
    int64_t replication;
    int64_t timeout_s;
    bench_props_t props;   /* -X: client properties */
    bench_props_t configs; /* --config: topic configs */
    const char **groups;
    size_t ngroups;
} admin_opts_t;

static rd_kafka_t *admin_client(const admin_opts_t *o, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf =
        bench_conf_new(o->brokers, "bench-admin", NULL, &o->props, NULL, errstr, errstr_size);
    if (!conf)
        return NULL;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op,
                                              int timeout_ms)
{
    char e[256];
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, op);
    /* Only fails for an out-of-range value; ours is a checked option. */
    if (rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, e, sizeof(e)))
        log_warn("admin request timeout: %s", e);
    if (op != RD_KAFKA_ADMIN_OP_DELETEGROUPS &&
        rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, e, sizeof(e)))
        log_warn("admin operation timeout: %s", e);
    return ao;
}

/* Wait for an admin result; NULL with errstr on timeout or request error. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, const char *what, int timeout_ms,
                                    const char *brokers, char *errstr, size_t errstr_size)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
    if (!ev) {
        snprintf(errstr, errstr_size, "%s: no answer from %s within %d s", what, brokers,
                 timeout_ms / 1000 + 5);
        return NULL;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "%s on %s: %s", what, brokers,
                 rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

/* Wait until each topic has @p partitions partitions, all with a leader. */
static int wait_leaders(rd_kafka_t *rk, char **topics, int ntopics, int64_t partitions,
                        int timeout_ms, char *errstr, size_t errstr_size)
{
    int64_t deadline = mono_ms() + timeout_ms;
    for (int i = 0; i < ntopics; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[i], NULL);
        for (;;) {
            const struct rd_kafka_metadata *md = NULL;
            rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
            bool ok = !err && md->topic_cnt == 1 && !md->topics[0].err &&
                      md->topics[0].partition_cnt == partitions;
            for (int p = 0; ok && p < md->topics[0].partition_cnt; p++)
                ok = md->topics[0].partitions[p].leader >= 0;
            if (md)
                rd_kafka_metadata_destroy(md);
            if (ok)
                break;
            if (mono_ms() > deadline) {
                snprintf(errstr, errstr_size,
                         "topic %s was created but has no leader for every partition after "
                         "%d s",
                         topics[i], timeout_ms / 1000);
                rd_kafka_topic_destroy(rkt);
                return -1;
            }
            usleep(100000);
        }
        rd_kafka_topic_destroy(rkt);
    }
    return 0;
}

static void usage_create(FILE *out)
{
    fprintf(out,
            "Usage: mlops-bench create [options] TOPIC...\n"
            "\n"
            "Create the topics (they must not exist yet) and wait until every partition\n"
            "has a leader, so a benchmark can start at once.\n"
            "\n"
            "Options:\n"
            "  -b, --brokers LIST       bootstrap servers (default %s)\n"
            "  -p, --partitions N       partitions per topic (default 3, as the stack's)\n"
            "      --replication N      replication factor (default 1: single-node stack)\n"
            "  -c, --config KEY=VALUE   topic config, e.g. retention.ms=600000 (repeatable)\n"
            "  -t, --timeout S          admin timeout in seconds (default 30)\n"
            "  -X PROP=VALUE            librdkafka client property (repeatable)\n"
            "  -h, --help               this help\n",
            BENCH_DEFAULT_BROKERS);
}

static void usage_delete(FILE *out)
{
    fprintf(out,
            "Usage: mlops-bench delete [options] [TOPIC...]\n"
            "\n"
            "Delete the topics and consumer groups of a benchmark run. A topic or group\n"
            "that does not exist is reported and not an error (cleanup is idempotent).\n"
            "\n"
            "Options:\n"
            "  -b, --brokers LIST   bootstrap servers (default %s)\n"
            "  -g, --group GROUP    consumer group to delete (repeatable); it must have no\n"
            "                       members left\n"
            "  -t, --timeout S      admin timeout in seconds (default 30)\n"
            "  -X PROP=VALUE        librdkafka client property (repeatable)\n"
            "  -h, --help           this help\n",
            BENCH_DEFAULT_BROKERS);
}

/* Parse the options of create (is_create) or delete; -1 = go on. */
static int admin_args(admin_opts_t *o, bool is_create, int argc, char **argv)
{
    static const struct option longopts[] = {{"brokers", required_argument, NULL, 'b'},
                                             {"partitions", required_argument, NULL, 'p'},
                                             {"replication", required_argument, NULL, 'R'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"group", required_argument, NULL, 'g'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *cmd = is_create ? "create" : "delete";
    char errstr[512];
    int c;
    while ((c = getopt_long(argc, argv, is_create ? "b:p:c:t:X:h" : "b:g:t:X:h", longopts, NULL)) !=
           -1) {
        switch (c) {
        case 'b': o->brokers = optarg; break;
        case 'p':
            if (!is_create || bench_parse_i64("--partitions", optarg, 1, 10000, &o->partitions))
                goto bad;
            break;
        case 'R':
            if (!is_create || bench_parse_i64("--replication", optarg, 1, 100, &o->replication))
                goto bad;
            break;
        case 't':
            if (bench_parse_i64("--timeout", optarg, 1, 3600, &o->timeout_s))
                goto bad;
            break;
        case 'c':
            if (bench_props_add(&o->configs, optarg, errstr, sizeof(errstr))) {
                /* the message says -X; say --config */
                fprintf(stderr, "mlops-bench create: --config %s: expected key=value\n", optarg);
                goto bad;
            }
            break;
        case 'g':
            if (is_create)
                goto bad;
            o->groups = xrealloc(o->groups, (o->ngroups + 1) * sizeof(char *));
            o->groups[o->ngroups++] = optarg;
            break;
        case 'X':
            if (bench_props_add(&o->props, optarg, errstr, sizeof(errstr))) {
                fprintf(stderr, "mlops-bench %s: %s\n", cmd, errstr);
                goto bad;
            }
            break;
        case 'h': (is_create ? usage_create : usage_delete)(stdout); return MLOPS_EXIT_OK;
        default: goto bad;
        }
    }
    if (is_create && optind >= argc) {
        fprintf(stderr, "mlops-bench create: name at least one TOPIC (see --help)\n");
        return MLOPS_EXIT_USAGE;
    }
    if (!is_create && optind >= argc && !o->ngroups) {
        fprintf(stderr, "mlops-bench delete: name a TOPIC or a --group (see --help)\n");
        return MLOPS_EXIT_USAGE;
    }
    return -1;
bad:
    fprintf(stderr, "Try 'mlops-bench %s --help'.\n", cmd);
    return MLOPS_EXIT_USAGE;
}

int bench_cmd_create(int argc, char **argv)
{
    admin_opts_t o = {
        .brokers = BENCH_DEFAULT_BROKERS, .partitions = 3, .replication = 1, .timeout_s = 30};
    char errstr[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_AdminOptions_t *ao = NULL;
    rd_kafka_NewTopic_t **nt = NULL;
    rd_kafka_event_t *ev = NULL;
    int n = 0;
    int code = admin_args(&o, true, argc, argv);
    if (code >= 0)
        goto done;
    code = MLOPS_EXIT_FAILURE;
    bench_log_init("bench-admin");
    int timeout_ms = (int)o.timeout_s * 1000;
    char **topics = argv + optind;
    int ntopics = argc - optind;

    if (!(rk = admin_client(&o, errstr, sizeof(errstr))))
        goto fail;
    nt = xcalloc((size_t)ntopics, sizeof(*nt));
    for (int i = 0; i < ntopics; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], (int)o.partitions, (int)o.replication, errstr,
                                      sizeof(errstr));
        if (!nt[i])
            goto fail;
        n = i + 1; /* nt[0..n) are destroyed at the end */
        for (size_t k = 0; k < o.configs.n; k++) {
            rd_kafka_resp_err_t err =
                rd_kafka_NewTopic_set_config(nt[i], o.configs.key[k], o.configs.value[k]);
            if (err) {
                snprintf(errstr, sizeof(errstr), "--config %s=%s: %s", o.configs.key[k],
                         o.configs.value[k], rd_kafka_err2str(err));
                goto fail;
            }
        }
    }
    q = rd_kafka_queue_new(rk);
    ao = admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms);
    rd_kafka_CreateTopics(rk, nt, (size_t)n, ao, q);
    if (!(ev = admin_wait(q, "create topics", timeout_ms, o.brokers, errstr, sizeof(errstr))))
        goto fail;
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    bool ok = true;
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
        if (!err)
            continue;
        const char *msg = rd_kafka_topic_result_error_string(res[i]);
        fprintf(stderr, "mlops-bench create: topic %s: %s%s\n", rd_kafka_topic_result_name(res[i]),
                msg ? msg : rd_kafka_err2str(err),
                err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS
                    ? " (benchmark topics must be new: pick a unique name)"
                    : "");
        ok = false;
    }
    if (!ok)
        goto done;
    if (wait_leaders(rk, topics, ntopics, o.partitions, timeout_ms, errstr, sizeof(errstr)))
        goto fail;
    code = MLOPS_EXIT_OK;
    goto done;

fail:
    fprintf(stderr, "mlops-bench create: %s\n", errstr);
done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (nt) {
        rd_kafka_NewTopic_destroy_array(nt, (size_t)n);
        free(nt);
    }
    if (ao)
        rd_kafka_AdminOptions_destroy(ao);
    if (q)
        rd_kafka_queue_destroy(q);
    if (rk)
        rd_kafka_destroy(rk);
    bench_props_cleanup(&o.props);
    bench_props_cleanup(&o.configs);
    return code;
}

static int delete_topics(rd_kafka_t *rk, rd_kafka_queue_t *q, const admin_opts_t *o, char **topics,
                         int ntopics)
{
    char errstr[512];
    int timeout_ms = (int)o->timeout_s * 1000;
    rd_kafka_DeleteTopic_t **dt = xcalloc((size_t)ntopics, sizeof(*dt));
    for (int i = 0; i < ntopics; i++)
        dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
    rd_kafka_AdminOptions_t *ao = admin_options(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout_ms);
    rd_kafka_DeleteTopics(rk, dt, (size_t)ntopics, ao, q);
    rd_kafka_event_t *ev =
        admin_wait(q, "delete topics", timeout_ms, o->brokers, errstr, sizeof(errstr));
    int rc = 0;
    if (!ev) {
        fprintf(stderr, "mlops-bench delete: %s\n", errstr);
        rc = -1;
    } else {
        size_t cnt = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
            const char *msg = rd_kafka_topic_result_error_string(res[i]);
            if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                fprintf(stderr, "mlops-bench delete: topic %s does not exist (nothing to do)\n",
                        rd_kafka_topic_result_name(res[i]));
            } else if (err) {
                fprintf(stderr, "mlops-bench delete: topic %s: %s\n",
                        rd_kafka_topic_result_name(res[i]), msg ? msg : rd_kafka_err2str(err));
                rc = -1;
            }
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_DeleteTopic_destroy_array(dt, (size_t)ntopics);
    free(dt);
    return rc;
}

static int delete_groups(rd_kafka_t *rk, rd_kafka_queue_t *q, const admin_opts_t *o)
{
    char errstr[512];
    int timeout_ms = (int)o->timeout_s * 1000;
    rd_kafka_DeleteGroup_t **dg = xcalloc(o->ngroups, sizeof(*dg));
    for (size_t i = 0; i < o->ngroups; i++)
        dg[i] = rd_kafka_DeleteGroup_new(o->groups[i]);
    rd_kafka_AdminOptions_t *ao = admin_options(rk, RD_KAFKA_ADMIN_OP_DELETEGROUPS, timeout_ms);
    rd_kafka_DeleteGroups(rk, dg, o->ngroups, ao, q);
    rd_kafka_event_t *ev =
        admin_wait(q, "delete groups", timeout_ms, o->brokers, errstr, sizeof(errstr));
    int rc = 0;
    if (!ev) {
        fprintf(stderr, "mlops-bench delete: %s\n", errstr);
        rc = -1;
    } else {
        size_t cnt = 0;
        const rd_kafka_group_result_t **res =
            rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev), &cnt);
        for (size_t i = 0; i < cnt; i++) {
            const rd_kafka_error_t *error = rd_kafka_group_result_error(res[i]);
            if (!error)
                continue;
            if (rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
                fprintf(stderr, "mlops-bench delete: group %s does not exist (nothing to do)\n",
                        rd_kafka_group_result_name(res[i]));
                continue;
            }
            fprintf(stderr, "mlops-bench delete: group %s: %s\n",
                    rd_kafka_group_result_name(res[i]), rd_kafka_error_string(error));
            rc = -1;
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_DeleteGroup_destroy_array(dg, o->ngroups);
    free(dg);
    return rc;
}

int bench_cmd_delete(int argc, char **argv)
{
    admin_opts_t o = {.brokers = BENCH_DEFAULT_BROKERS, .timeout_s = 30};
    char errstr[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    int code = admin_args(&o, false, argc, argv);
    if (code >= 0)
        goto done;
    code = MLOPS_EXIT_FAILURE;
    bench_log_init("bench-admin");
    if (!(rk = admin_client(&o, errstr, sizeof(errstr)))) {
        fprintf(stderr, "mlops-bench delete: %s\n", errstr);
        goto done;
    }
    q = rd_kafka_queue_new(rk);
    int rc = 0;
    if (o.ngroups && delete_groups(rk, q, &o))
        rc = -1;
    if (optind < argc && delete_topics(rk, q, &o, argv + optind, argc - optind))
        rc = -1;
    code = rc ? MLOPS_EXIT_FAILURE : MLOPS_EXIT_OK;
done:
    if (q)
        rd_kafka_queue_destroy(q);
    if (rk)
        rd_kafka_destroy(rk);
    free(o.groups);
    bench_props_cleanup(&o.props);
    bench_props_cleanup(&o.configs);
    return code;
}
