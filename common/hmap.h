/**
 * @file hmap.h
 * @brief A string-keyed hash map (open addressing, FNV-1a), for entity
 *        states, event-id sets and caches.
 *
 * Ownership: the map copies keys; values are the caller's (hmap_destroy
 * calls @p free_value on each if given).
 */
#ifndef MLOPS_HMAP_H
#define MLOPS_HMAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct hmap hmap_t;

hmap_t *hmap_new(void (*free_value)(void *));
void hmap_destroy(hmap_t *m);

/** The value for @p key, or NULL. */
void *hmap_get(const hmap_t *m, const char *key);
/** Insert or replace; returns the previous value (not freed) or NULL. */
void *hmap_put(hmap_t *m, const char *key, void *value);
/** Remove; returns the value (not freed) or NULL. */
void *hmap_del(hmap_t *m, const char *key);
size_t hmap_size(const hmap_t *m);

/** Iterate: start with *it = 0; returns false at the end. */
bool hmap_next(const hmap_t *m, size_t *it, const char **key, void **value);

#endif
