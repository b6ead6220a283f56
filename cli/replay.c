/*
 * mlopsctl replay: copy a range of a topic (by offset or time) into another
 * topic, keys and values unchanged, for backfills (re-ingest a day of raw
 * events into a fresh features topic, rebuild a training log). The range is
 * fixed at start, so replaying a topic into itself cannot loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "commands.h"
#include "krange.h"
#include "lifecycle.h"
#include "log.h"
#include "producing.h"

#define PROG "mlopsctl replay"

typedef struct replay_conf {
    char *topic;
    char *into;
    char *from;
    char *to;
    int64_t partition;
    double rate;
    bool dry_run;
    char *kafka_brokers;
} replay_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(replay_conf_t, topic, CFG_T_STR, NULL, CFG_REQUIRED, "topic to read from"),
    CFG_ITEM(replay_conf_t, into, CFG_T_STR, NULL, 0,
             "topic to write to (required unless --dry-run)"),
    CFG_ITEM(replay_conf_t, from, CFG_T_STR, "beginning", 0,
             "first record: an offset, a time (RFC 3339, @<epoch ms>, -2h), beginning"),
    CFG_ITEM(replay_conf_t, to, CFG_T_STR, "end", 0,
             "where to stop, exclusive: an offset, a time, or end (the log end at start)"),
    CFG_ITEM_RANGE(replay_conf_t, partition, CFG_T_INT, "-1", 0,
                   "read only this partition (-1 = all)", -1, 1 << 20),
    CFG_ITEM_RANGE(replay_conf_t, rate, CFG_T_DBL, "0", 0, "records per second (0 = no limit)", 0,
                   1e9),
    CFG_ITEM(replay_conf_t, dry_run, CFG_T_BOOL, "false", 0,
             "resolve and print the range, copy nothing"),
    CFG_ITEM(replay_conf_t, kafka_brokers, CFG_T_STR, "127.0.0.1:9092", 0,
             "Kafka bootstrap servers (also --brokers)"),
};

/* Print the resolved range, one line per partition, and a total. */
static void print_range(const krange_t *kr, const char *topic, FILE *out)
{
    size_t np;
    const krange_part_t *parts = krange_parts(kr, &np);
    for (size_t i = 0; i < np; i++)
        fprintf(out, PROG ": %s [%d]: offsets %lld to %lld (%lld records at most)\n", topic,
                parts[i].partition, (long long)parts[i].start, (long long)parts[i].end,
                (long long)(parts[i].end - parts[i].start));
    fprintf(out, PROG ": %llu records at most in the range\n",
            (unsigned long long)krange_upper_bound(kr));
}

int cmd_replay(int argc, char **argv)
{
    replay_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024];
    krange_t *kr = NULL;
    producing_t *pr = NULL;
    char **args = producing_argv(argc, argv);
    log_init("mlopsctl", LOG_LVL_WARN);
    cfg_t *cfg = cfg_new(PROG, "--topic T --into T2 [--from POS] [--to POS] [--partition P]", items,
                         MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_result_t r = cfg_init(cfg, argc, args, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, PROG ": %s\n", errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    if (!conf.into && !conf.dry_run) {
        fprintf(stderr, PROG ": --into must be set (the topic to copy into), or use --dry-run\n");
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(cfg, &nprops);
    krange_opts_t ko = {.brokers = conf.kafka_brokers,
                        .props = props,
                        .nprops = nprops,
                        .topic = conf.topic,
                        .partition = (int32_t)conf.partition};
    int64_t now = wall_ms();
    if (krange_pos_parse(conf.from, now, &ko.from, errstr, sizeof(errstr)) ||
        krange_pos_parse(conf.to, now, &ko.to, errstr, sizeof(errstr))) {
        fprintf(stderr, PROG ": %s\n", errstr);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    kr = krange_new(&ko, errstr, sizeof(errstr));
    if (!kr) {
        fprintf(stderr, PROG ": %s\n", errstr);
        goto done;
    }
    print_range(kr, conf.topic, stderr);
    if (conf.dry_run) {
        code = MLOPS_EXIT_OK;
        goto done;
    }
    producing_opts_t po = {.prog = PROG,
                           .brokers = conf.kafka_brokers,
                           .props = props,
                           .nprops = nprops,
                           .topic = conf.into,
                           .rate = conf.rate,
                           .total = krange_upper_bound(kr)};
    pr = producing_new(&po, errstr, sizeof(errstr));
    if (!pr) {
        fprintf(stderr, PROG ": %s\n", errstr);
        goto done;
    }
    bool broken = false;
    while (!producing_stop_requested()) {
        rd_kafka_message_t *rkm;
        int rc = krange_next(kr, &rkm, errstr, sizeof(errstr));
        if (rc <= 0) {
            if (rc < 0) {
                fprintf(stderr, PROG ": reading %s: %s\n", conf.topic, errstr);
                broken = true;
            }
            break;
        }
        rc = producing_send_raw(pr, rkm->key, rkm->key_len,
                                rkm->payload ? (const char *)rkm->payload : "", rkm->len, NULL,
                                errstr, sizeof(errstr));
        rd_kafka_message_destroy(rkm);
        if (rc) {
            fprintf(stderr, PROG ": %s\n", errstr);
            broken = true;
            break;
        }
    }
    if (producing_stop_requested())
        fprintf(stderr, PROG ": interrupted; flushing what was copied\n");
    uint64_t failed = producing_finish(pr, 60000, stderr);
    code = failed || broken || producing_stop_requested() ? MLOPS_EXIT_FAILURE : MLOPS_EXIT_OK;
done:
    producing_destroy(pr);
    krange_destroy(kr);
    cfg_destroy(cfg);
    producing_free_argv(argc, args);
    return code;
}
