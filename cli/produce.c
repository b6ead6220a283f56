/*
 * mlopsctl produce: send the rows of a CSV or JSONL file to a Kafka topic
 * as JSON events, keyed by the spec's entity field (or --key). With a spec
 * that names a label, the label is taken out of each event and sent as a
 * label/1 record to the labels topic, as late labels arrive in production.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "commands.h"
#include "input.h"
#include "lifecycle.h"
#include "log.h"
#include "producing.h"
#include "spec.h"

#define PROG "mlopsctl produce"
#define BAD_LINES_SHOWN 20

typedef struct produce_conf {
    char *topic;
    char *csv;
    char *jsonl;
    char *spec;
    char *key;
    double rate;
    double label_delay;
    char *labels_topic;
    char *kafka_brokers;
    int64_t max_event_bytes;
} produce_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(produce_conf_t, topic, CFG_T_STR, NULL, CFG_REQUIRED,
             "topic to produce the events to"),
    CFG_ITEM(produce_conf_t, csv, CFG_T_STR, NULL, 0, "input CSV with a header row ('-' = stdin)"),
    CFG_ITEM(produce_conf_t, jsonl, CFG_T_STR, NULL, 0,
             "input JSONL, one event per line ('-' = stdin)"),
    CFG_ITEM(produce_conf_t, spec, CFG_T_STR, NULL, 0,
             "feature spec: the key is its entity field; its label goes to the labels topic"),
    CFG_ITEM(produce_conf_t, key, CFG_T_STR, NULL, 0,
             "field whose value is the message key (default: the spec's entity; none without "
             "a spec)"),
    CFG_ITEM_RANGE(produce_conf_t, rate, CFG_T_DBL, "0", 0, "events per second (0 = no limit)", 0,
                   1e9),
    CFG_ITEM_RANGE(produce_conf_t, label_delay, CFG_T_DBL, "0", 0,
                   "seconds from event_time to label_time in the label records", 0, 1e10),
    CFG_ITEM(produce_conf_t, labels_topic, CFG_T_STR, "labels", 0,
             "topic of the label/1 records (with a spec that has a label)"),
    CFG_ITEM(produce_conf_t, kafka_brokers, CFG_T_STR, "127.0.0.1:9092", 0,
             "Kafka bootstrap servers (also --brokers)"),
    CFG_ITEM_RANGE(produce_conf_t, max_event_bytes, CFG_T_INT, "1048576", 0,
                   "largest JSONL line accepted", 64, 1 << 26),
};

/* Lines (records) in a file, for the progress bar; 0 if unknown (stdin). */
static uint64_t count_lines(const char *path)
{
    if (!path || !strcmp(path, "-"))
        return 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    char buf[1 << 16];
    uint64_t n = 0;
    size_t got;
    char last = '\n';
    while ((got = fread(buf, 1, sizeof(buf), fp)) > 0) {
        for (const char *p = buf; (p = memchr(p, '\n', got - (size_t)(p - buf))); p++)
            n++;
        last = buf[got - 1];
    }
    fclose(fp);
    return n + (last != '\n');
}

int cmd_produce(int argc, char **argv)
{
    produce_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024];
    spec_t *spec = NULL;
    input_t *in = NULL;
    producing_t *pr = NULL;
    char **args = producing_argv(argc, argv);
    log_init("mlopsctl", LOG_LVL_WARN);
    cfg_t *cfg = cfg_new(PROG, "--topic T (--csv FILE | --jsonl FILE) [--spec SPEC] [--rate R]",
                         items, MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_result_t r = cfg_init(cfg, argc, args, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, PROG ": %s\n", errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    if (conf.spec && !(spec = spec_load(conf.spec, errstr, sizeof(errstr)))) {
        fprintf(stderr, PROG ": %s\n", errstr);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    in = input_open(conf.csv, conf.jsonl, (size_t)conf.max_event_bytes, errstr, sizeof(errstr));
    if (!in) {
        fprintf(stderr, PROG ": %s\n", errstr);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    uint64_t total = count_lines(conf.csv ? conf.csv : conf.jsonl);
    if (conf.csv && total)
        total--; /* the header */
    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(cfg, &nprops);
    bool labels = spec && spec->label;
    producing_opts_t po = {
        .prog = PROG,
        .brokers = conf.kafka_brokers,
        .props = props,
        .nprops = nprops,
        .topic = conf.topic,
        .labels_topic = labels ? conf.labels_topic : NULL,
        .key_field = conf.key ? conf.key
                     : spec   ? spec->entity
                              : NULL,
        .label_field = labels ? spec->label : NULL,
        .event_id_field = spec ? spec->event_id : NULL,
        .entity_field = spec ? spec->entity : NULL,
        .event_time_field = spec ? spec->event_time : NULL,
        .label_delay_ms = (int64_t)(conf.label_delay * 1000.0 + 0.5),
        .rate = conf.rate,
        .total = total,
    };
    pr = producing_new(&po, errstr, sizeof(errstr));
    if (!pr) {
        fprintf(stderr, PROG ": %s\n", errstr);
        goto done;
    }
    uint64_t nbad = 0;
    bool broken = false;
    while (!producing_stop_requested()) {
        json_t *obj;
        err_t *bad;
        const char *raw;
        size_t rawlen, record;
        int rc = input_next(in, &obj, &bad, &raw, &rawlen, &record, errstr, sizeof(errstr));
        if (rc < 0) {
            fprintf(stderr, PROG ": %s\n", errstr);
            broken = true;
            break;
        }
        if (rc == 0)
            break;
        char where[1100];
        snprintf(where, sizeof(where), "%s:%zu", input_path(in), record);
        if (!obj) {
            producing_count_bad(pr);
            if (nbad++ < BAD_LINES_SHOWN)
                fprintf(stderr, PROG ": %s: skipped: %s: %s%s\n", where,
                        mjson_code_name((mjson_code_t)bad->code), bad->msg,
                        nbad == BAD_LINES_SHOWN ? " (further bad lines are only counted)" : "");
            err_destroy(bad);
            continue;
        }
        rc = producing_send_object(pr, obj, where, errstr, sizeof(errstr));
        json_decref(obj);
        if (rc) {
            fprintf(stderr, PROG ": %s\n", errstr);
            broken = true;
            break;
        }
    }
    if (producing_stop_requested())
        fprintf(stderr, PROG ": interrupted; flushing what was sent\n");
    uint64_t failed = producing_finish(pr, 60000, stderr);
    code = failed || broken ? MLOPS_EXIT_FAILURE : MLOPS_EXIT_OK;
done:
    producing_destroy(pr);
    input_close(in);
    spec_destroy(spec);
    cfg_destroy(cfg);
    producing_free_argv(argc, args);
    return code;
}
