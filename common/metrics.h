/**
 * @file metrics.h
 * @brief Counters, gauges and histograms with Prometheus text exposition.
 *
 * A metric_t is one series: a name plus a fixed label set chosen at
 * registration ("reason=\"bad_json\""), so the hot path does no lookup and no
 * allocation: metric_inc() is one atomic operation and is safe from any
 * thread (librdkafka callbacks included).
 *
 * Ownership: the registry owns every metric_t it returns; they live until
 * metrics_destroy(). Registering the same name and labels twice returns the
 * same series.
 */
#ifndef MLOPS_METRICS_H
#define MLOPS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct metrics metrics_t;
typedef struct metric metric_t;

typedef enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
} metric_type_t;

metrics_t *metrics_new(void);
/** Free the registry and all its series; accepts NULL. */
void metrics_destroy(metrics_t *reg);

/**
 * Register (or find) a series. @p labels is the inside of the braces,
 * already escaped (build it with metrics_labels()), or NULL for none.
 * @p name must match [a-zA-Z_:][a-zA-Z0-9_:]* (checked; aborts on a
 * programming error, since names are literals).
 */
metric_t *metrics_counter(metrics_t *reg, const char *name, const char *help, const char *labels);
metric_t *metrics_gauge(metrics_t *reg, const char *name, const char *help, const char *labels);
/**
 * Histogram with ascending upper @p bounds (the +Inf bucket is implicit).
 * NULL bounds selects latency buckets in seconds from 50 µs to 10 s.
 */
metric_t *metrics_histogram(metrics_t *reg, const char *name, const char *help, const char *labels,
                            const double *bounds, size_t nbounds);

/**
 * Build an escaped label string from NULL-terminated key, value pairs:
 * metrics_labels(buf, sizeof buf, "reason", "bad_json", NULL) writes
 * reason="bad_json". Returns @p buf.
 */
char *metrics_labels(char *buf, size_t size, ...);

void metric_inc(metric_t *m);
void metric_add(metric_t *m, double v);
/** Gauges only. */
void metric_set(metric_t *m, double v);
/** Histograms only. */
void metric_observe(metric_t *m, double v);

/** Current value (counter/gauge) or count of observations (histogram). */
double metric_value(const metric_t *m);
/** Sum of a histogram's observations. */
double metric_sum(const metric_t *m);
/**
 * Estimate quantile @p q (0..1) of a histogram by linear interpolation inside
 * the bucket, as Prometheus's histogram_quantile() does. NaN if empty.
 */
double metric_quantile(const metric_t *m, double q);

/**
 * Render every series in the Prometheus text format 0.0.4 into @p out
 * (appended), followed by process_* metrics (RSS, CPU, start time, fds).
 */
void metrics_render(metrics_t *reg, strbuf_t *out);

#endif
