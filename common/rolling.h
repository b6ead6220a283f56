/**
 * @file rolling.h
 * @brief Per-entity rolling count/sum/mean over event-time windows, point in
 *        time and replay-safe.
 *
 * The state of one entity is the list of its recent events (event time,
 * source partition and offset, the values of the rolling inputs) in the
 * order they were applied. An event's aggregates cover the entity's events
 * applied up to and including it whose event time t' satisfies
 * t - window < t' <= t (pandas' rolling window, closed on the right). Sum and
 * mean are over the non-missing inputs and missing when there are none.
 *
 * Replay-safe: applying a (source, partition, offset) that is already in the state
 * (a redelivery after a crash, an abort or a rebalance) adds nothing and
 * gives the aggregates it got the first time. Exact while the entity's
 * history back to (latest event time - 2 x the longest window) holds at
 * most ROLLING_MAX_ENTRIES events; older entries are pruned.
 *
 * Ownership: rolling_new()/rolling_decode() return a state freed with
 * rolling_destroy(). The spec must outlive the state.
 */
#ifndef MLOPS_ROLLING_H
#define MLOPS_ROLLING_H

#include <stdint.h>

#include "spec.h"
#include "util.h"

#define ROLLING_MAX_ENTRIES 4096

typedef struct rolling_state rolling_state_t;

rolling_state_t *rolling_new(const spec_t *spec);
void rolling_destroy(rolling_state_t *st);

/**
 * The id of an input topic in the state (a 32-bit hash of its name; 0 for
 * NULL): offsets restart at 0 on another or a recreated topic, so the
 * position of an event is (source, partition, offset).
 */
uint32_t rolling_source_id(const char *topic);

/**
 * Apply a cleaned row as of its position (@p source, @p partition,
 * @p offset) and fill its rolling columns. Returns 0 if the event was new,
 * 1 if that position had been applied before (nothing added; replayed
 * aggregates).
 */
int rolling_apply(const spec_t *spec, rolling_state_t *st, spec_row_t *row, uint32_t source,
                  int32_t partition, int64_t offset);

/** Number of events held. */
size_t rolling_size(const rolling_state_t *st);

/** Serialise (binary, for Redis) into @p out (appended). */
void rolling_encode(const rolling_state_t *st, strbuf_t *out);
/**
 * Rebuild a state from rolling_encode() bytes. NULL with errstr if the bytes
 * are not a state for this spec (wrong magic, version or input count).
 */
rolling_state_t *rolling_decode(const spec_t *spec, const void *buf, size_t len, char *errstr,
                                size_t errstr_size);

#endif
