/**
 * @file dstate.h
 * @brief A monitored model's input-drift state: its reference profile (the
 *        reservoir sample of each input from the model/1 artifact) and
 *        count windows per input, several at once, with the drift tests
 *        recomputed on each window tick.
 *
 * Windows: each window spec is (size, step). The spec's event counter
 * counts the records added; it ticks when at least @p size records arrived
 * and (records - size) is a multiple of @p step (step == size: tumbling,
 * step < size: sliding). A tick tests every input on the last @p size
 * values that input had (missing values are not values: a feature with
 * gaps spans more records) against the reference sample with
 * drift_column() (Evidently's default test per column), and the dataset
 * drift share with drift_dataset() over the inputs that could be tested.
 *
 * Categorical inputs are coded per input: every category string seen (in
 * the reference sample or the stream) gets a small integer code, which is
 * what drift_column() compares; at most DSTATE_MAX_CATEGORIES distinct
 * strings are coded per input, later ones share one "other" code.
 *
 * Cost: dstate_add() is O(inputs x windows x log d) (window_add(); O(1)
 * for a tumbling window, which sorts its values once per tick instead); a
 * tick costs what drift_column() costs on size + reference values.
 *
 * Ownership: dstate_new() borrows the document (nothing is kept pointing
 * into it); dstate_destroy() frees everything (accepts NULL). Returned
 * strings and results live until the next dstate_add() or destroy. Not
 * thread-safe.
 */
#ifndef MLOPS_MONITOR_DSTATE_H
#define MLOPS_MONITOR_DSTATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drift.h"
#include "util.h"

#define DSTATE_MAX_WINDOWS 8
#define DSTATE_MAX_CATEGORIES 4096

/**
 * One window: by count (@p size records, ticking every @p step), or, when
 * @p span_ms > 0, by event time. The records are kept in panes of @p hop_ms
 * (0: tumbling, one pane is the window): [k hop, (k+1) hop) by the record's
 * event_time. A pane is closed once the largest event time seen minus
 * @p lateness_ms passes its end, and the window ending there, [end - span,
 * end), is tested: the closed pane and the earlier panes it overlaps (a
 * sliding window is tested each time one of its panes that has records
 * closes; windows ending at a pane without records are not tested, nor
 * windows that start before the first pane closed: the stream does not cover
 * them whole, and a fraction of a window's records drifts by chance). A
 * record for a closed pane is late (counted in dstate_late(), not used). At
 * most DSTATE_MAX_OPEN panes are open at once (the oldest is closed early
 * beyond that), and each keeps at most DSTATE_MAX_TIME_VALUES values per
 * input (later ones are counted and dropped).
 */
typedef struct dstate_win {
    size_t size, step;
    int64_t span_ms, hop_ms, lateness_ms;
} dstate_win_t;

#define DSTATE_MAX_OPEN 16
/** Most panes in one sliding event-time window (span / hop). */
#define DSTATE_MAX_PANES 64
#define DSTATE_MAX_TIME_VALUES 1000000

/**
 * Parse a window list: "1000" (tumbling), "1000/250" (sliding, step 250),
 * "1h" (tumbling by event time; units ms, s, m, h, d), "1h+5m" (with 5
 * minutes of allowed lateness), "1h/15m" or "1h/15m+5m" (sliding by event
 * time: a window of an hour every 15 minutes; the span a multiple of the
 * hop, at most DSTATE_MAX_PANES of them), several separated by commas. Returns the
 * count (1..DSTATE_MAX_WINDOWS), or -1 with a message naming the item.
 */
int dstate_parse_windows(const char *s, dstate_win_t *out, char *err, size_t err_size) MLOPS_WUR;

typedef struct dstate dstate_t;

/** The outcome of one input on the latest tick of one window. */
typedef struct dstate_col {
    bool computed;    /**< false: not tested (no reference sample, empty window, ...) */
    char error[160];  /**< why not, when !computed */
    drift_result_t r; /**< the test and its decision when computed */
} dstate_col_t;

/**
 * State for a model/1 document's reference profile (profile.inputs[*].sample),
 * labelled with @p version ("3", or "file" for a model given as a file).
 * @p drift_share: dataset drift when the share of drifted inputs is >= it.
 * Returns NULL with a message naming the field on a bad document.
 */
dstate_t *dstate_new(const json_t *model_doc, const char *version, const dstate_win_t *wins,
                     size_t nwins, double drift_share, char *err, size_t err_size);
void dstate_destroy(dstate_t *d);

const char *dstate_model(const dstate_t *d);
const char *dstate_version(const dstate_t *d);
/** Name of the feature spec the model was trained with (records are matched on it). */
const char *dstate_spec_name(const dstate_t *d);
size_t dstate_nfeatures(const dstate_t *d);
const char *dstate_feature(const dstate_t *d, size_t f);
bool dstate_feature_numeric(const dstate_t *d, size_t f);
/** Finite reference values of input @p f (0 when the sample is off). */
size_t dstate_ref_count(const dstate_t *d, size_t f);
size_t dstate_nwindows(const dstate_t *d);
/** Span of an event-time window in ms; 0 for a count window. */
int64_t dstate_window_span(const dstate_t *d, size_t w);
/** "1000", "1000/250", "1h+5m" or "1h/15m+5m", as the alert and gauge label `window`. */
const char *dstate_window_name(const dstate_t *d, size_t w);

/**
 * Add one record's `values` object (features/1: column -> number, string or
 * null) with its event time in ms (DSTATE_NO_TIME if none). Writes the indices of the windows that ticked on this record into
 * @p ticked (dstate_nwindows() slots, each window at most once: when several
 * event-time windows close on one record each is tested and the latest
 * result is kept) and returns how many. Values of the
 * wrong kind (a string for a numeric input) are not added and counted in
 * dstate_rejected().
 */
size_t dstate_add(dstate_t *d, const json_t *values, int64_t event_ms, size_t *ticked);
/** Use DSTATE_NO_TIME as event_ms when a record has none (event-time windows skip it). */
#define DSTATE_NO_TIME INT64_MIN
/** Records that came for an event-time window already closed, or without a time. */
uint64_t dstate_late(const dstate_t *d);
/** Start (event time, ms) of the window @p w tested on its latest tick; 0 for count windows. */
int64_t dstate_tick_start(const dstate_t *d, size_t w);

/** Records added so far. */
uint64_t dstate_events(const dstate_t *d);
uint64_t dstate_rejected(const dstate_t *d);
/** Ticks of window @p w so far (0: no result yet). */
uint64_t dstate_ticks(const dstate_t *d, size_t w);
/** The latest tick's result of input @p f in window @p w. */
const dstate_col_t *dstate_result(const dstate_t *d, size_t w, size_t f);
/**
 * The latest tick's dataset drift share of window @p w (NaN before the first
 * tick or when no input could be tested); *drifted (may be NULL) is
 * drift_dataset()'s flag.
 */
double dstate_share(const dstate_t *d, size_t w, bool *drifted);
double dstate_drift_share_threshold(const dstate_t *d);
/** Record count at the latest tick of window @p w. */
uint64_t dstate_tick_event(const dstate_t *d, size_t w);

/**
 * The current values of input @p f in window @p w in ascending order into
 * @p out (window size slots), as the doubles the test sees (categorical:
 * codes). Returns the count. For tests.
 */
size_t dstate_window_sorted(const dstate_t *d, size_t w, size_t f, double *out);
/** The code of category @p s of input @p f, or -1 if never seen. */
double dstate_category_code(const dstate_t *d, size_t f, const char *s);

/** The status as JSON (new reference): the body of GET /api/v1/drift per model. */
json_t *dstate_json(const dstate_t *d);

#endif
