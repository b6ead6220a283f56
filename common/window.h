/**
 * @file window.h
 * @brief Count-based tumbling and sliding windows over a stream of values,
 *        kept in sorted order incrementally so that KS, Wasserstein and the
 *        binned tests can be recomputed on each tick without sorting.
 *
 * A window holds the last @p size finite values added (insertion order in a
 * ring, value order in an order-statistics treap of distinct values with
 * multiplicities and subtree counts). Adding a value costs O(log d) expected
 * (d = distinct values held): one insert and, once full, one eviction of
 * the oldest value. A window ticks every @p step values once it is full:
 * step == size is a tumbling window (each tick sees @p size new values),
 * step < size a sliding (hopping) one. Non-finite values are not added
 * (drift tests drop them anyway).
 *
 * Reading the sorted contents is O(d); rank and quantile queries are
 * O(log d). No allocation after window_new(): the ring and the node pool
 * are sized there.
 *
 * A tumbling window (step == size) keeps no treap: each tick sees only new
 * values, so adding is one store into the ring (O(1)), and the first read
 * after a change sorts a copy of the ring (a radix sort, O(size), that is
 * O(1) per value at one read per tick) which later reads reuse. Reading it
 * after every value, as a test may, costs a sort each time.
 *
 * Ownership: window_new() returns a window freed with window_destroy()
 * (accepts NULL). Output arrays are the caller's. Not thread-safe.
 */
#ifndef MLOPS_WINDOW_H
#define MLOPS_WINDOW_H

#include <stdbool.h>
#include <stddef.h>

#include "drift.h"
#include "util.h"

typedef struct window window_t;

/**
 * A window of @p size values that ticks every @p step values once full
 * (1 <= step <= size). NULL with a message if the sizes are invalid.
 */
window_t *window_new(size_t size, size_t step, char *errstr, size_t errstr_size);
void window_destroy(window_t *w);

/**
 * Add a value; evicts the oldest when full. Returns true when this value
 * completes a tick (the window is full and @p step values arrived since
 * the last tick). A non-finite value is ignored (returns false).
 */
bool window_add(window_t *w, double v);

/** Empty the window (keeps its storage). */
void window_clear(window_t *w);

/** Values held (<= size). */
size_t window_count(const window_t *w);
/** Distinct values held. */
size_t window_distinct(const window_t *w);
/** Ticks so far. */
size_t window_ticks(const window_t *w);

/**
 * The held values in ascending order, repeats included, into @p out
 * (window_count() slots). Returns the count. O(d + n).
 */
size_t window_sorted(const window_t *w, double *out);

/**
 * The distinct held values ascending with their counts (window_distinct()
 * slots each). Returns the number of distinct values. O(d).
 */
size_t window_distinct_counts(const window_t *w, double *vals, size_t *counts);

/** Number of held values <= @p v. O(log d). */
size_t window_rank(const window_t *w, double v);

/**
 * The k-th smallest held value (0-based); NaN if k >= count. O(log d).
 */
double window_kth(const window_t *w, size_t k);

/**
 * Two-sample KS of a sorted finite reference against the window, with
 * SciPy's method rule (drift_ks_2samp_sorted). @p buf must have
 * window_count() slots (reused across ticks). Returns 0, or -1 if either
 * side is empty.
 */
int window_ks(const window_t *w, const double *ref_sorted, size_t nref, drift_ks_method_t method,
              double *buf, drift_ks_t *out) MLOPS_WUR;

/**
 * Wasserstein distance between a sorted finite reference and the window,
 * from the distinct values and counts (no expansion). NaN if either is
 * empty. @p vals and @p counts need window_distinct() slots.
 */
double window_wasserstein(const window_t *w, const double *ref_sorted, size_t nref, double *vals,
                          size_t *counts);

#endif
