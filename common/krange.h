/**
 * @file krange.h
 * @brief Read a bounded range of a topic (by offset or by time), with no
 *        consumer group: the reader behind `mlopsctl replay`, `mlopsctl dlq`
 *        and the trainer's dataset ranges.
 *
 * The range is fixed when the reader is made: each partition's start is
 * resolved (beginning, an offset, or the first offset at or after a time,
 * through ListOffsets) and so is its end (the log end at that moment, an
 * offset, or the first offset at or after a time). Records produced after
 * that are not read, so a replay into the same topic cannot loop. The
 * reader uses read_committed, so aborted transactional records are never
 * returned; it commits nothing.
 *
 * Ownership: krange_new() returns a reader freed by krange_destroy().
 * Messages returned by krange_next() are the caller's
 * (rd_kafka_message_destroy()).
 */
#ifndef MLOPS_KRANGE_H
#define MLOPS_KRANGE_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "cfg.h"
#include "util.h"

/** One end of a range. */
typedef enum krange_kind {
    KRANGE_BEGINNING = 0, /**< the oldest record still kept */
    KRANGE_END,           /**< the log end when the reader was made */
    KRANGE_OFFSET,        /**< an offset (the same in every partition read) */
    KRANGE_TIME,          /**< a timestamp, ms since the epoch */
} krange_kind_t;

typedef struct krange_pos {
    krange_kind_t kind;
    int64_t value; /**< the offset or the time in ms */
} krange_pos_t;

/**
 * Parse a position: "beginning" (or "earliest"), "end" (or "latest"), an
 * offset ("1200"), a time in RFC 3339 ("2026-11-25T10:00:00Z"), "@" and
 * epoch milliseconds ("@1764064800000"), or a time back from now ("-30m",
 * "-2h", "-7d", "-90s"). @p now_ms is the wall clock for the relative form.
 * Returns 0, or -1 with errstr naming what was wrong.
 */
int krange_pos_parse(const char *s, int64_t now_ms, krange_pos_t *out, char *errstr,
                     size_t errstr_size) MLOPS_WUR;

/** What to read. Borrowed for the duration of krange_new(). */
typedef struct krange_opts {
    const char *brokers;
    const cfg_kv_t *props; /**< -X pass-through, applied last */
    size_t nprops;
    const char *topic;
    int32_t partition; /**< one partition, or -1 for all */
    krange_pos_t from; /**< first record read */
    krange_pos_t to;   /**< first record NOT read (exclusive end) */
} krange_opts_t;

typedef struct krange krange_t;

/**
 * Resolve the range on every partition and start reading. Fails (NULL,
 * errstr) when the topic or partition does not exist, the broker cannot be
 * reached within 10 s, or an explicit start offset was already deleted by
 * retention (the message names the partition, the requested offset and the
 * oldest one kept).
 */
krange_t *krange_new(const krange_opts_t *opts, char *errstr, size_t errstr_size);

/** Per-partition bounds, as resolved. */
typedef struct krange_part {
    int32_t partition;
    int64_t start; /**< first offset to read */
    int64_t end;   /**< exclusive */
} krange_part_t;

/** The resolved bounds (borrowed; valid until krange_destroy()). */
const krange_part_t *krange_parts(const krange_t *kr, size_t *np);

/** At most this many records are in the range (control records count too). */
uint64_t krange_upper_bound(const krange_t *kr);

/**
 * The next record, in offset order per partition (partitions interleave).
 * Returns 1 with *rkm set, 0 when every partition reached its end, -1 with
 * errstr on an error that ends the read. Waits at most @p timeout_ms
 * between records before trying again (still 1/0/-1 semantics: it only
 * returns when it has a record, is done, or failed; a broker that stays
 * silent for 60 s is an error).
 */
int krange_next(krange_t *kr, rd_kafka_message_t **rkm, char *errstr, size_t errstr_size) MLOPS_WUR;

/** Stop and free; accepts NULL. */
void krange_destroy(krange_t *kr);

#endif
