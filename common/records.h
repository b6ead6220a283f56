/**
 * @file records.h
 * @brief Writers for the topic contracts (schemas/): features/1 and dlq/1.
 *
 * Each writer appends one compact JSON object (no newline) to a strbuf, so
 * hot paths build records without a JSON tree. Strings are escaped and
 * checked for UTF-8; numbers are finite or the writer fails.
 */
#ifndef MLOPS_RECORDS_H
#define MLOPS_RECORDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "spec.h"
#include "util.h"

/** Where a record came from: a Kafka position or a file record. */
typedef struct rec_source {
    const char *topic; /**< NULL for a file */
    int32_t partition;
    int64_t offset;
    const char *file; /**< when topic is NULL */
    int64_t record;   /**< 1-based record (line) in the file */
} rec_source_t;

/** The dlq/1 reasons (schemas/dlq.schema.json), in the schema's order. */
#define REC_DLQ_NREASONS 11
extern const char *const rec_dlq_reasons[REC_DLQ_NREASONS];

#define REC_ORIGINAL_MAX (64 * 1024) /**< original bytes kept in a DLQ record */

/**
 * features/1: event_id, entity, event_time (RFC 3339, ms), spec name,
 * version and hash, values (one per column, null when missing), source,
 * ingested_at. Returns 0, -1 if a value is not finite (nothing appended).
 */
int rec_features(const spec_t *spec, const spec_row_t *row, const rec_source_t *src,
                 int64_t ingested_us, strbuf_t *out) MLOPS_WUR;

/**
 * dlq/1: reason (the fixed enum), field, detail, spec name, source, and the
 * original bytes: as text when they are valid UTF-8 without NUL, else
 * base64; cut at REC_ORIGINAL_MAX with the full length and sha256.
 */
void rec_dlq(const char *reason, const char *field, const char *detail, const char *spec_name,
             const rec_source_t *src, const void *original, size_t original_len, int64_t at_us,
             strbuf_t *out);

/**
 * The original input bytes of a parsed dlq/1 record (the reverse of
 * rec_dlq()): decoded from text or base64 and, unless the record says they
 * were truncated, checked against the recorded length and sha256. On
 * success *bytes is a new NUL-terminated buffer the caller frees, *lenp its
 * length (without the NUL) and *truncated whether only the first 64 KiB
 * were kept. Returns 0, or -1 with errstr (nothing allocated).
 */
int rec_dlq_original(const json_t *dlq, unsigned char **bytes, size_t *lenp, bool *truncated,
                     char *errstr, size_t errstr_size) MLOPS_WUR;

/** True if the bytes are valid UTF-8 with no NUL. */
bool rec_is_text(const void *data, size_t len);

#endif
