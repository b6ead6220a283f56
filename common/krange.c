#include "krange.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"
#include "spec.h"

#define KRANGE_WAIT_MS 10000
#define KRANGE_SILENCE_MS 60000

struct krange {
    rd_kafka_t *rk;
    char *topic;
    krange_part_t *parts;
    bool *done;
    size_t nparts;
    size_t ndone;
    int64_t last_progress_ms;
};

int krange_pos_parse(const char *s, int64_t now_ms, krange_pos_t *out, char *errstr,
                     size_t errstr_size)
{
    if (!s || !*s) {
        snprintf(errstr, errstr_size, "empty position (an offset, a time, beginning or end)");
        return -1;
    }
    if (!strcmp(s, "beginning") || !strcmp(s, "earliest")) {
        *out = (krange_pos_t){KRANGE_BEGINNING, 0};
        return 0;
    }
    if (!strcmp(s, "end") || !strcmp(s, "latest")) {
        *out = (krange_pos_t){KRANGE_END, 0};
        return 0;
    }
    int64_t v;
    if (isdigit((unsigned char)s[0]) && !parse_int64(s, &v)) {
        *out = (krange_pos_t){KRANGE_OFFSET, v};
        return 0;
    }
    if (s[0] == '@' && !parse_int64(s + 1, &v) && v >= 0) {
        *out = (krange_pos_t){KRANGE_TIME, v};
        return 0;
    }
    if (s[0] == '-' && isdigit((unsigned char)s[1])) {
        char *end;
        errno = 0;
        long long n = strtoll(s + 1, &end, 10);
        static const struct {
            char unit;
            int64_t ms;
        } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
        for (size_t i = 0; i < MLOPS_ARRAY_LEN(units); i++) {
            if (!errno && end[0] == units[i].unit && !end[1] && n <= INT64_MAX / units[i].ms) {
                *out = (krange_pos_t){KRANGE_TIME, now_ms - (int64_t)n * units[i].ms};
                return 0;
            }
        }
    }
    /* RFC 3339 (spec_parse_time also takes epoch ms as text: not here, where
     * a bare number is an offset and a time needs '@') */
    double num;
    json_t *j = parse_double(s, &num) ? json_string(s) : NULL;
    int64_t ms;
    int rc = j ? spec_parse_time(j, &ms) : -1;
    json_decref(j);
    if (rc == 0) {
        *out = (krange_pos_t){KRANGE_TIME, ms};
        return 0;
    }
    snprintf(errstr, errstr_size,
             "'%s' is not a position: use an offset (1200), a time (2026-11-25T10:00:00Z, "
             "@<epoch ms>, or back from now: -30m, -2h, -7d), beginning or end",
             s);
    return -1;
}

/* The first offset at or after @p ms, or @p hi when there is none. */
static int offset_for_time(rd_kafka_t *rk, const char *topic, int32_t p, int64_t ms, int64_t hi,
                           int64_t *out, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = ms;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, KRANGE_WAIT_MS);
    if (!err)
        err = l->elems[0].err;
    int64_t o = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        snprintf(errstr, errstr_size, "%s [%d]: cannot look up the offset for a time: %s", topic, p,
                 rd_kafka_err2str(err));
        return -1;
    }
    *out = o < 0 ? hi : o;
    return 0;
}

static int resolve(rd_kafka_t *rk, const char *topic, int32_t p, const krange_pos_t *pos,
                   bool is_start, int64_t lo, int64_t hi, int64_t *out, char *errstr,
                   size_t errstr_size)
{
    switch (pos->kind) {
    case KRANGE_BEGINNING: *out = lo; return 0;
    case KRANGE_END: *out = hi; return 0;
    case KRANGE_OFFSET:
        if (is_start && pos->value < lo && pos->value < hi) {
            snprintf(errstr, errstr_size,
                     "%s [%d]: offset %lld was already deleted by retention (the oldest kept is "
                     "%lld)",
                     topic, p, (long long)pos->value, (long long)lo);
            return -1;
        }
        *out = pos->value < lo ? lo : pos->value > hi ? hi : pos->value;
        return 0;
    case KRANGE_TIME:
        return offset_for_time(rk, topic, p, pos->value, hi, out, errstr, errstr_size);
    }
    return -1;
}

krange_t *krange_new(const krange_opts_t *o, char *errstr, size_t errstr_size)
{
    krange_t *kr = xcalloc(1, sizeof(*kr));
    rd_kafka_topic_partition_list_t *assign = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    kr->topic = xstrdup(o->topic);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char group[96];
    snprintf(group, sizeof(group), "mlops-krange-%d-%lld", (int)getpid(), (long long)wall_us());
    if (kafka_conf_set(conf, "bootstrap.servers", o->brokers ? o->brokers : "127.0.0.1:9092",
                       errstr, errstr_size) ||
        kafka_conf_set(conf, "client.id", "mlops-krange", errstr, errstr_size) ||
        kafka_conf_set(conf, "group.id", group, errstr, errstr_size) ||
        kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
        kafka_conf_set(conf, "enable.partition.eof", "true", errstr, errstr_size) ||
        kafka_conf_set(conf, "isolation.level", "read_committed", errstr, errstr_size) ||
        kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        goto err;
    }
    for (size_t i = 0; i < o->nprops; i++)
        if (kafka_conf_set(conf, o->props[i].key, o->props[i].value, errstr, errstr_size)) {
            rd_kafka_conf_destroy(conf);
            goto err;
        }
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    char e[512];
    kr->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!kr->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create a Kafka consumer: %s", e);
        goto err;
    }
    rkt = rd_kafka_topic_new(kr->rk, o->topic, NULL);
    char why[768];
    rd_kafka_resp_err_t err = kafka_metadata(kr->rk, rkt, &md, KRANGE_WAIT_MS, why, sizeof(why));
    if (err) {
        snprintf(errstr, errstr_size, "cannot read topic metadata from Kafka at %s: %s", o->brokers,
                 why);
        goto err;
    }
    if (md->topic_cnt < 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        snprintf(errstr, errstr_size, "topic '%s' does not exist on %s", o->topic, o->brokers);
        goto err;
    }
    const struct rd_kafka_metadata_topic *mt = &md->topics[0];
    if (o->partition >= mt->partition_cnt) {
        snprintf(errstr, errstr_size, "topic '%s' has no partition %d (it has %d)", o->topic,
                 o->partition, mt->partition_cnt);
        goto err;
    }
    size_t n = o->partition >= 0 ? 1 : (size_t)mt->partition_cnt;
    kr->parts = xcalloc(n, sizeof(*kr->parts));
    kr->done = xcalloc(n, sizeof(*kr->done));
    kr->nparts = n;
    assign = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        int32_t p = o->partition >= 0 ? o->partition : mt->partitions[i].id;
        int64_t lo, hi;
        err = rd_kafka_query_watermark_offsets(kr->rk, o->topic, p, &lo, &hi, KRANGE_WAIT_MS);
        if (err) {
            snprintf(errstr, errstr_size, "%s [%d]: cannot read the partition's offsets: %s",
                     o->topic, p, rd_kafka_err2str(err));
            goto err;
        }
        krange_part_t *kp = &kr->parts[i];
        kp->partition = p;
        if (resolve(kr->rk, o->topic, p, &o->from, true, lo, hi, &kp->start, errstr, errstr_size) ||
            resolve(kr->rk, o->topic, p, &o->to, false, lo, hi, &kp->end, errstr, errstr_size))
            goto err;
        if (kp->end < kp->start)
            kp->end = kp->start;
        if (kp->start >= kp->end) {
            kr->done[i] = true;
            kr->ndone++;
        } else {
            rd_kafka_topic_partition_list_add(assign, o->topic, p)->offset = kp->start;
        }
    }
    if (assign->cnt && (err = rd_kafka_assign(kr->rk, assign))) {
        snprintf(errstr, errstr_size, "%s: cannot assign partitions: %s", o->topic,
                 rd_kafka_err2str(err));
        goto err;
    }
    rd_kafka_topic_partition_list_destroy(assign);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    kr->last_progress_ms = mono_ms();
    return kr;
err:
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    krange_destroy(kr);
    return NULL;
}

const krange_part_t *krange_parts(const krange_t *kr, size_t *np)
{
    *np = kr->nparts;
    return kr->parts;
}

uint64_t krange_upper_bound(const krange_t *kr)
{
    uint64_t n = 0;
    for (size_t i = 0; i < kr->nparts; i++)
        n += (uint64_t)(kr->parts[i].end - kr->parts[i].start);
    return n;
}

static size_t part_index(const krange_t *kr, int32_t p)
{
    for (size_t i = 0; i < kr->nparts; i++)
        if (kr->parts[i].partition == p)
            return i;
    return kr->nparts;
}

static void mark_done(krange_t *kr, size_t i)
{
    if (i >= kr->nparts || kr->done[i])
        return;
    kr->done[i] = true;
    kr->ndone++;
    /* stop fetching what we will not read (records already fetched are
     * dropped by krange_next) */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, kr->topic, kr->parts[i].partition);
    (void)rd_kafka_pause_partitions(kr->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

int krange_next(krange_t *kr, rd_kafka_message_t **out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    while (kr->ndone < kr->nparts) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(kr->rk, 500);
        if (!rkm) {
            if (mono_ms() - kr->last_progress_ms > KRANGE_SILENCE_MS) {
                snprintf(errstr, errstr_size,
                         "%s: no record and no end of partition for %d s (is the broker up?)",
                         kr->topic, KRANGE_SILENCE_MS / 1000);
                return -1;
            }
            continue;
        }
        kr->last_progress_ms = mono_ms();
        size_t i = part_index(kr, rkm->partition);
        if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* everything committed up to now is read (read_committed stops
             * at the last stable offset) */
            mark_done(kr, i);
            rd_kafka_message_destroy(rkm);
            continue;
        }
        if (rkm->err) {
            snprintf(errstr, errstr_size, "%s [%d]: %s", kr->topic, rkm->partition,
                     rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            return -1;
        }
        if (i >= kr->nparts || kr->done[i] || rkm->offset >= kr->parts[i].end) {
            mark_done(kr, i);
            rd_kafka_message_destroy(rkm);
            continue;
        }
        if (rkm->offset + 1 >= kr->parts[i].end)
            mark_done(kr, i);
        *out = rkm;
        return 1;
    }
    return 0;
}

void krange_destroy(krange_t *kr)
{
    if (!kr)
        return;
    if (kr->rk) {
        rd_kafka_consumer_close(kr->rk);
        rd_kafka_destroy(kr->rk);
    }
    free(kr->parts);
    free(kr->done);
    free(kr->topic);
    free(kr);
}
