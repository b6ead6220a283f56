/*
 * A/B rollout by Thompson sampling between champion (arm 0) and challenger
 * (arm 1). Each arm's reward rate has a Beta(1 + successes, 1 + failures)
 * posterior; each event goes to the arm whose sampled rate is higher. A
 * reward is whether the served decision matched the realized label.
 *
 * State in Redis, shared by every scorer instance of the model:
 *   mlops:scorer:<model>:ab:<sha8 champion>-<sha8 challenger>   hash
 *       s0 f0 s1 f1            successes and failures per arm
 *       off:<topic>:<part>     the last label offset applied (replay safety)
 *   mlops:scorer:<model>:ab:ev:<event_id>   "<pair>|<arm>|<decision>", EX ab_event_ttl_s
 * The loop thread writes one event record per routed event (pipelined per
 * batch) and re-reads the posterior every refresh; a label thread consumes
 * `labels` and applies each reward with a script that skips any label at or
 * below the last applied offset of its partition, so a replay (restart,
 * rebalance, a second consumer group) never counts a label twice.
 */
#ifndef MLOPS_SCORER_AB_H
#define MLOPS_SCORER_AB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

typedef struct ab ab_t;

typedef struct ab_opts {
    const char *model;    /**< model name (key prefix) */
    const char *positive; /**< the label's positive class, as text */
    const char *redis_url;
    int redis_timeout_ms;
    const char *brokers;
    const char *labels_topic;
    const char *group_id; /**< labels consumer group */
    int64_t event_ttl_s;
    uint64_t seed; /**< 0 = from the clock */
    metrics_t *metrics;
} ab_opts_t;

/** Start the label thread. Returns NULL with errstr. */
ab_t *ab_new(const ab_opts_t *o, char *errstr, size_t errstr_size);
void ab_destroy(ab_t *ab);

/**
 * The arm pair being compared (champion and challenger artifact shas); a new
 * pair starts from its own posterior. Loop thread.
 */
void ab_set_pair(ab_t *ab, const char *sha_champion, const char *sha_challenger);

/** Thompson draw: 0 champion, 1 challenger. Loop thread. */
int ab_pick(ab_t *ab);

/** Queue the event record of a routed event (sent by ab_flush). Loop thread. */
void ab_note(ab_t *ab, const char *event_id, int arm, bool decision);

/** Send the queued event records in one round trip. Loop thread. */
void ab_flush(ab_t *ab);

/** Re-read the posterior from Redis (loop timer). */
void ab_refresh(ab_t *ab);

/* ---- the sampler (exposed for tests) ---- */

/** xoshiro256** state. */
typedef struct ab_rng {
    uint64_t s[4];
} ab_rng_t;

void ab_rng_seed(ab_rng_t *r, uint64_t seed);
/** Uniform in (0, 1). */
double ab_rng_uniform(ab_rng_t *r);
/** Beta(a, b) for a, b >= 1 (Marsaglia-Tsang gamma draws). */
double ab_beta(ab_rng_t *r, double a, double b);

#endif
