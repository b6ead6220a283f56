/*
 * The scorer's in-process cache of online rows: an LRU of at most @c cap
 * entities, each entry valid for @c ttl_ms after it was put. An entry holds
 * the row's fields as NUL-separated name, value pairs (as Redis returned
 * them), or no pairs for "Redis has no row for this entity".
 *
 * Ownership: the cache copies keys and pairs. A pointer returned by
 * ocache_get() lives until the next ocache_put() or ocache_destroy().
 * Not thread-safe (the scorer's loop thread owns it).
 */
#ifndef MLOPS_SCORER_OCACHE_H
#define MLOPS_SCORER_OCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

typedef struct ocache ocache_t;

typedef struct ocache_entry {
    char *pairs; /**< name\0value\0name\0value\0... */
    size_t len;
    size_t npairs;
    int64_t row_ts_ms; /**< the row's _ts (event time of its last update), -1 unknown */
    int64_t put_ms;    /**< when it was cached (ocache clock) */
} ocache_entry_t;

typedef struct ocache_stats {
    uint64_t hits, misses, evictions, expired;
    size_t size;
} ocache_stats_t;

/** A cache of up to @p cap entries (>= 1), each valid @p ttl_ms. Metrics are optional. */
ocache_t *ocache_new(size_t cap, int64_t ttl_ms, metric_t *m_hits, metric_t *m_misses,
                     metric_t *m_evictions);
void ocache_destroy(ocache_t *c);

/** The live entry of @p key at time @p now_ms (a hit moves it to the front), or NULL. */
const ocache_entry_t *ocache_get(ocache_t *c, const char *key, int64_t now_ms);

/** Insert or replace; evicts the least recently used entry when full. */
void ocache_put(ocache_t *c, const char *key, const char *pairs, size_t len, size_t npairs,
                int64_t row_ts_ms, int64_t now_ms);

/** The value of field @p name in an entry, or NULL. */
const char *ocache_field(const ocache_entry_t *e, const char *name);

void ocache_stats(const ocache_t *c, ocache_stats_t *st);

#endif
