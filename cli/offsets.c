/*
 * mlopsctl offsets TOPIC [--from POS] [--to POS] [--partition P]
 *
 * Resolves a topic's offset range now (the same positions as replay: an
 * offset, a time, beginning, end) and prints it on stdout in the form
 * `mlopsctl train --range` takes, TOPIC:PARTITION:FROM-TO joined by commas
 * (TO exclusive), with one readable line per partition on stderr. Training
 * on "what is in features right now" is then one exact, recorded range:
 *
 *   mlopsctl train attrition --range "$(mlopsctl offsets features)"
 */
#include <stdio.h>
#include <stdlib.h>

#include "cfg.h"
#include "commands.h"
#include "krange.h"
#include "lifecycle.h"
#include "log.h"
#include "util.h"

#define PROG "mlopsctl offsets"

typedef struct offsets_conf {
    char *from;
    char *to;
    int64_t partition;
    char *kafka_brokers;
} offsets_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(offsets_conf_t, from, CFG_T_STR, "beginning", 0,
             "first offset: an offset, a time (RFC 3339, @<epoch ms>, -2h), beginning"),
    CFG_ITEM(offsets_conf_t, to, CFG_T_STR, "end", 0,
             "exclusive end: an offset, a time, or end (the log end now)"),
    CFG_ITEM_RANGE(offsets_conf_t, partition, CFG_T_INT, "-1", 0, "only this partition (-1 = all)",
                   -1, 1 << 20),
    CFG_ITEM(offsets_conf_t, kafka_brokers, CFG_T_STR, "127.0.0.1:9092", 0,
             "Kafka bootstrap servers (also --brokers)"),
};

int cmd_offsets(int argc, char **argv)
{
    offsets_conf_t conf;
    char errstr[1024];
    krange_t *kr = NULL;
    int code = MLOPS_EXIT_USAGE;
    log_init("mlopsctl", LOG_LVL_WARN);
    cfg_t *cfg = cfg_new(PROG, "TOPIC [--from POS] [--to POS] [--partition P]", items,
                         MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_allow_positional(cfg, true);
    cfg_result_t r = cfg_init(cfg, argc, argv, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, PROG ": %s\n", errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    int npos;
    char **pos = cfg_positional(cfg, &npos);
    if (npos != 1) {
        fprintf(stderr, PROG ": %s (usage: " PROG " TOPIC [--from POS] [--to POS])\n",
                npos ? "one topic only" : "which topic?");
        goto done;
    }
    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(cfg, &nprops);
    krange_opts_t ko = {.brokers = conf.kafka_brokers,
                        .props = props,
                        .nprops = nprops,
                        .topic = pos[0],
                        .partition = (int32_t)conf.partition};
    int64_t now = wall_ms();
    if (krange_pos_parse(conf.from, now, &ko.from, errstr, sizeof(errstr)) ||
        krange_pos_parse(conf.to, now, &ko.to, errstr, sizeof(errstr))) {
        fprintf(stderr, PROG ": %s\n", errstr);
        goto done;
    }
    code = MLOPS_EXIT_FAILURE;
    kr = krange_new(&ko, errstr, sizeof(errstr));
    if (!kr) {
        fprintf(stderr, PROG ": %s\n", errstr);
        goto done;
    }
    size_t np;
    const krange_part_t *parts = krange_parts(kr, &np);
    for (size_t i = 0; i < np; i++) {
        printf("%s%s:%d:%lld-%lld", i ? "," : "", pos[0], parts[i].partition,
               (long long)parts[i].start, (long long)parts[i].end);
        fprintf(stderr, PROG ": %s [%d]: %lld to %lld (%lld offsets)\n", pos[0], parts[i].partition,
                (long long)parts[i].start, (long long)parts[i].end,
                (long long)(parts[i].end - parts[i].start));
    }
    printf("\n");
    code = fflush(stdout) ? MLOPS_EXIT_FAILURE : MLOPS_EXIT_OK;
done:
    krange_destroy(kr);
    cfg_destroy(cfg);
    return code;
}
