/*
 * mlopsctl dlq list|show|redrive: look at what ingest refused, and send it
 * back through ingest once the spec (or the producer) is fixed.
 *
 *   list     one line per dlq/1 record (partition:offset, time, reason,
 *            field, detail), filtered by --reason and --since, and a count
 *            by reason; --json prints the records themselves (JSONL).
 *   show     one record in full, with its original bytes decoded.
 *   redrive  re-send the original bytes of the selected records, with their
 *            original keys, to events.raw (--into): the events keep their
 *            event ids, so a redriven event that was already accepted once is
 *            caught by ingest's dedup as duplicate_event. An original that
 *            was cut at 64 KiB cannot be redriven and is counted as skipped.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "commands.h"
#include "krange.h"
#include "lifecycle.h"
#include "log.h"
#include "mjson.h"
#include "producing.h"
#include "records.h"

#define PROG "mlopsctl dlq"
#define DLQ_MAX_RECORD (8u << 20)

typedef struct dlq_conf {
    char *topic;
    char *reason;
    char *since;
    char *until;
    char *into;
    int64_t limit;
    bool json;
    bool dry_run;
    double rate;
    char *kafka_brokers;
} dlq_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(dlq_conf_t, topic, CFG_T_STR, "events.dlq", 0, "the DLQ topic"),
    CFG_ITEM(dlq_conf_t, reason, CFG_T_STR, NULL, 0,
             "only these reasons (comma-separated, e.g. wrong_type,missing_field)"),
    CFG_ITEM(dlq_conf_t, since, CFG_T_STR, "beginning", 0,
             "only records from this time or offset on (RFC 3339, @<epoch ms>, -2h, offset)"),
    CFG_ITEM(dlq_conf_t, until, CFG_T_STR, "end", 0,
             "only records before this time or offset (exclusive)"),
    CFG_ITEM(dlq_conf_t, into, CFG_T_STR, "events.raw", 0, "redrive: the topic to re-send to"),
    CFG_ITEM_RANGE(dlq_conf_t, limit, CFG_T_INT, "100", 0,
                   "list: show at most this many records (0 = all); counts cover all", 0,
                   INT64_MAX),
    CFG_ITEM(dlq_conf_t, json, CFG_T_BOOL, "false", 0, "list/show: print JSON"),
    CFG_ITEM(dlq_conf_t, dry_run, CFG_T_BOOL, "false", 0,
             "redrive: say what would be re-sent, send nothing"),
    CFG_ITEM_RANGE(dlq_conf_t, rate, CFG_T_DBL, "0", 0, "redrive: events per second (0 = no limit)",
                   0, 1e9),
    CFG_ITEM(dlq_conf_t, kafka_brokers, CFG_T_STR, "127.0.0.1:9092", 0,
             "Kafka bootstrap servers (also --brokers)"),
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: mlopsctl dlq list [--reason R[,R...]] [--since T] [--limit N] [--json]\n"
                 "       mlopsctl dlq show PARTITION:OFFSET [--json]\n"
                 "       mlopsctl dlq redrive [--reason R] [--since T] [--into events.raw] "
                 "[--dry-run]\n\n"
                 "Look at the events ingest refused (dlq/1 on events.dlq) and re-send them\n"
                 "after a fix. Run 'mlopsctl dlq list --help' for every option.\n");
}

/* Is @p reason in the comma-separated @p list (NULL = everything)? */
static bool reason_selected(const char *list, const char *reason)
{
    if (!list)
        return true;
    size_t n = strlen(reason);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, reason, n))
            return true;
        p += len + (e ? 1 : 0);
    }
    return false;
}

static int check_reasons(const char *list, char *errstr, size_t errstr_size)
{
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        bool ok = false;
        for (size_t i = 0; i < REC_DLQ_NREASONS && !ok; i++)
            ok = strlen(rec_dlq_reasons[i]) == len && !strncmp(p, rec_dlq_reasons[i], len);
        if (!ok) {
            strbuf_t sb;
            strbuf_init(&sb);
            for (size_t i = 0; i < REC_DLQ_NREASONS; i++)
                strbuf_appendf(&sb, "%s%s", i ? ", " : "", rec_dlq_reasons[i]);
            snprintf(errstr, errstr_size, "--reason: '%.*s' is not a DLQ reason (one of %s)",
                     (int)len, p, sb.data);
            strbuf_cleanup(&sb);
            return -1;
        }
        p += len + (e ? 1 : 0);
    }
    return 0;
}

/* Parse one DLQ message; on a record that is not dlq/1 print why (once per
 * record) and return NULL. */
static json_t *parse_record(const rd_kafka_message_t *rkm)
{
    err_t *e = NULL;
    json_t *rec =
        mjson_parse_object(rkm->payload ? rkm->payload : "", rkm->len, DLQ_MAX_RECORD, &e);
    const char *schema = rec ? json_string_value(json_object_get(rec, "schema")) : NULL;
    if (!rec || !schema || strcmp(schema, "dlq/1") ||
        !json_is_string(json_object_get(rec, "reason"))) {
        fprintf(stderr, PROG ": [%d] offset %lld: skipped: not a dlq/1 record%s%s\n",
                rkm->partition, (long long)rkm->offset, e ? ": " : "", e ? e->msg : "");
        err_destroy(e);
        json_decref(rec);
        return NULL;
    }
    return rec;
}

static const char *str_of(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

/* The selection every subcommand reads: range from --since/--until. */
static krange_t *open_range(const dlq_conf_t *conf, const cfg_t *cfg, int32_t partition,
                            const krange_pos_t *from, const krange_pos_t *to, char *errstr,
                            size_t errstr_size)
{
    size_t nprops;
    const cfg_kv_t *props = cfg_kafka_props(cfg, &nprops);
    krange_opts_t ko = {.brokers = conf->kafka_brokers,
                        .props = props,
                        .nprops = nprops,
                        .topic = conf->topic,
                        .partition = partition,
                        .from = *from,
                        .to = *to};
    return krange_new(&ko, errstr, errstr_size);
}

static void print_detail(const char *s, size_t width)
{
    /* one line: newlines and tabs shown as spaces, long details cut */
    size_t n = 0;
    for (const char *p = s; *p && n < width; p++, n++)
        putchar(*p == '\n' || *p == '\t' || *p == '\r' ? ' ' : *p);
    if (strlen(s) > width)
        fputs("...", stdout);
}

static int run_list(const dlq_conf_t *conf, krange_t *kr)
{
    char errstr[1024];
    uint64_t counts[REC_DLQ_NREASONS] = {0}, shown = 0, total = 0, other = 0;
    if (!conf->json)
        printf("%-14s %-24s %-17s %-24s %s\n", "PART:OFFSET", "AT", "REASON", "FIELD", "DETAIL");
    for (;;) {
        rd_kafka_message_t *rkm;
        int rc = krange_next(kr, &rkm, errstr, sizeof(errstr));
        if (rc < 0) {
            fprintf(stderr, PROG ": reading %s: %s\n", conf->topic, errstr);
            return MLOPS_EXIT_FAILURE;
        }
        if (rc == 0)
            break;
        json_t *rec = parse_record(rkm);
        if (rec && reason_selected(conf->reason, str_of(rec, "reason"))) {
            total++;
            bool known = false;
            for (size_t i = 0; i < REC_DLQ_NREASONS; i++) {
                if (!strcmp(rec_dlq_reasons[i], str_of(rec, "reason"))) {
                    counts[i]++;
                    known = true;
                }
            }
            other += !known;
            if (!conf->limit || shown < (uint64_t)conf->limit) {
                shown++;
                if (conf->json) {
                    json_t *k = json_pack("{s:i,s:I,s:s#}", "partition", (int)rkm->partition,
                                          "offset", (json_int_t)rkm->offset, "key",
                                          rkm->key ? (const char *)rkm->key : "",
                                          (int)(rkm->key ? rkm->key_len : 0));
                    json_object_set_new(rec, "kafka", k ? k : json_null());
                    char *line = json_dumps(rec, JSON_COMPACT | JSON_ENSURE_ASCII);
                    if (line)
                        puts(line);
                    free(line);
                } else {
                    char pos[32];
                    snprintf(pos, sizeof(pos), "%d:%lld", rkm->partition, (long long)rkm->offset);
                    printf("%-14s %-24s %-17s %-24s ", pos, str_of(rec, "at"),
                           str_of(rec, "reason"), str_of(rec, "field"));
                    print_detail(str_of(rec, "detail"), 80);
                    putchar('\n');
                }
            }
        }
        json_decref(rec);
        rd_kafka_message_destroy(rkm);
    }
    FILE *out = conf->json ? stderr : stdout;
    if (total > shown)
        fprintf(out, "... %llu more (raise --limit, or 0 for all)\n",
                (unsigned long long)(total - shown));
    fprintf(out, "%llu record%s", (unsigned long long)total, total == 1 ? "" : "s");
    const char *sep = ": ";
    for (size_t i = 0; i < REC_DLQ_NREASONS; i++)
        if (counts[i]) {
            fprintf(out, "%s%s %llu", sep, rec_dlq_reasons[i], (unsigned long long)counts[i]);
            sep = ", ";
        }
    if (other)
        fprintf(out, "%sother %llu", sep, (unsigned long long)other);
    fputc('\n', out);
    return MLOPS_EXIT_OK;
}

static int run_show(const dlq_conf_t *conf, krange_t *kr, int64_t offset)
{
    char errstr[1024];
    rd_kafka_message_t *rkm = NULL;
    int rc = krange_next(kr, &rkm, errstr, sizeof(errstr));
    if (rc < 0) {
        fprintf(stderr, PROG ": reading %s: %s\n", conf->topic, errstr);
        return MLOPS_EXIT_FAILURE;
    }
    if (rc == 0 || rkm->offset != offset) {
        fprintf(stderr,
                PROG ": %s has no record at that offset (deleted, or a transaction marker)\n",
                conf->topic);
        if (rkm)
            rd_kafka_message_destroy(rkm);
        return MLOPS_EXIT_FAILURE;
    }
    json_t *rec = parse_record(rkm);
    int code = MLOPS_EXIT_FAILURE;
    if (!rec)
        goto done;
    char *pretty = json_dumps(rec, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    printf("%s\n", pretty ? pretty : "");
    free(pretty);
    if (!conf->json) {
        unsigned char *orig;
        size_t n;
        bool truncated;
        if (rec_dlq_original(rec, &orig, &n, &truncated, errstr, sizeof(errstr))) {
            printf("\noriginal: cannot decode: %s\n", errstr);
        } else {
            printf("\noriginal (%zu bytes%s, key '%.*s'):\n", n, truncated ? ", cut at 64 KiB" : "",
                   (int)(rkm->key ? rkm->key_len : 0), rkm->key ? (const char *)rkm->key : "");
            if (rec_is_text(orig, n))
                printf("%s\n", (const char *)orig);
            else
                printf("(binary: %zu bytes, see original.bytes above, base64)\n", n);
            free(orig);
        }
    }
    code = MLOPS_EXIT_OK;
done:
    json_decref(rec);
    rd_kafka_message_destroy(rkm);
    return code;
}

static int run_redrive(const dlq_conf_t *conf, const cfg_t *cfg, krange_t *kr)
{
    char errstr[1024];
    producing_t *pr = NULL;
    if (!conf->dry_run) {
        size_t nprops;
        const cfg_kv_t *props = cfg_kafka_props(cfg, &nprops);
        producing_opts_t po = {.prog = PROG " redrive",
                               .brokers = conf->kafka_brokers,
                               .props = props,
                               .nprops = nprops,
                               .topic = conf->into,
                               .rate = conf->rate,
                               .total = krange_upper_bound(kr)};
        pr = producing_new(&po, errstr, sizeof(errstr));
        if (!pr) {
            fprintf(stderr, PROG ": %s\n", errstr);
            return MLOPS_EXIT_FAILURE;
        }
    }
    uint64_t selected = 0, truncated_n = 0, damaged = 0, sent = 0;
    bool broken = false;
    while (!broken && !producing_stop_requested()) {
        rd_kafka_message_t *rkm;
        int rc = krange_next(kr, &rkm, errstr, sizeof(errstr));
        if (rc < 0) {
            fprintf(stderr, PROG ": reading %s: %s\n", conf->topic, errstr);
            broken = true;
            break;
        }
        if (rc == 0)
            break;
        json_t *rec = parse_record(rkm);
        if (rec && reason_selected(conf->reason, str_of(rec, "reason"))) {
            selected++;
            unsigned char *orig;
            size_t n;
            bool truncated;
            if (rec_dlq_original(rec, &orig, &n, &truncated, errstr, sizeof(errstr))) {
                damaged++;
                fprintf(stderr, PROG ": [%d] offset %lld: skipped: %s\n", rkm->partition,
                        (long long)rkm->offset, errstr);
            } else if (truncated) {
                truncated_n++;
                fprintf(stderr,
                        PROG ": [%d] offset %lld: skipped: only the first 64 KiB of the %s "
                             "event were kept\n",
                        rkm->partition, (long long)rkm->offset, str_of(rec, "reason"));
                free(orig);
            } else {
                if (pr && producing_send_raw(pr, rkm->key, rkm->key_len, (const char *)orig, n,
                                             NULL, errstr, sizeof(errstr))) {
                    fprintf(stderr, PROG ": %s\n", errstr);
                    broken = true;
                }
                sent += !broken;
                free(orig);
            }
        }
        json_decref(rec);
        rd_kafka_message_destroy(rkm);
    }
    uint64_t failed = 0;
    if (pr)
        failed = producing_finish(pr, 60000, stderr);
    fprintf(stderr,
            PROG " redrive: %llu selected, %llu %s to %s, %llu skipped (cut at 64 KiB), %llu "
                 "skipped (damaged)\n",
            (unsigned long long)selected, (unsigned long long)sent,
            conf->dry_run ? "would be re-sent" : "re-sent", conf->into,
            (unsigned long long)truncated_n, (unsigned long long)damaged);
    producing_destroy(pr);
    return failed || broken || producing_stop_requested() ? MLOPS_EXIT_FAILURE : MLOPS_EXIT_OK;
}

int cmd_dlq(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    const char *action = argv[1];
    if (strcmp(action, "list") && strcmp(action, "show") && strcmp(action, "redrive")) {
        fprintf(stderr, PROG ": unknown action '%s' (list, show, redrive)\n", action);
        return MLOPS_EXIT_USAGE;
    }
    dlq_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024];
    krange_t *kr = NULL;
    char **args = producing_argv(argc - 1, argv + 1);
    log_init("mlopsctl", LOG_LVL_WARN);
    char prog[64];
    snprintf(prog, sizeof(prog), PROG " %s", action);
    cfg_t *cfg = cfg_new(prog,
                         !strcmp(action, "show") ? "PARTITION:OFFSET [--topic T] [--json]"
                                                 : "[--reason R] [--since T] [--until T]",
                         items, MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_allow_positional(cfg, !strcmp(action, "show"));
    cfg_result_t r = cfg_init(cfg, argc - 1, args, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "%s: %s\n", prog, errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    if (check_reasons(conf.reason, errstr, sizeof(errstr))) {
        fprintf(stderr, "%s: %s\n", prog, errstr);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    krange_pos_t from, to;
    int32_t partition = -1;
    int64_t offset = -1;
    if (!strcmp(action, "show")) {
        int npos;
        char **pos = cfg_positional(cfg, &npos);
        char *colon = npos == 1 ? strchr(pos[0], ':') : NULL;
        int64_t p;
        if (!colon || (*colon = '\0', parse_int64(pos[0], &p)) || p < 0 || p > INT32_MAX ||
            parse_int64(colon + 1, &offset) || offset < 0) {
            fprintf(stderr, "%s: give one record as PARTITION:OFFSET (as 'dlq list' prints it)\n",
                    prog);
            code = MLOPS_EXIT_USAGE;
            goto done;
        }
        partition = (int32_t)p;
        from = (krange_pos_t){KRANGE_OFFSET, offset};
        to = (krange_pos_t){KRANGE_OFFSET, offset + 1};
    } else {
        int64_t now = wall_ms();
        if (krange_pos_parse(conf.since, now, &from, errstr, sizeof(errstr)) ||
            krange_pos_parse(conf.until, now, &to, errstr, sizeof(errstr))) {
            fprintf(stderr, "%s: %s\n", prog, errstr);
            code = MLOPS_EXIT_USAGE;
            goto done;
        }
    }
    kr = open_range(&conf, cfg, partition, &from, &to, errstr, sizeof(errstr));
    if (!kr) {
        fprintf(stderr, "%s: %s\n", prog, errstr);
        goto done;
    }
    if (!strcmp(action, "list"))
        code = run_list(&conf, kr);
    else if (!strcmp(action, "show"))
        code = run_show(&conf, kr, offset);
    else
        code = run_redrive(&conf, cfg, kr);
done:
    krange_destroy(kr);
    cfg_destroy(cfg);
    producing_free_argv(argc - 1, args);
    return code;
}
