/**
 * @file slack.h
 * @brief Posting alerts to Slack incoming webhooks: the pieces of the
 *        notifier that do not need Kafka, each testable on its own.
 *
 * Slack's documented limits this code keeps (docs.slack.dev, "Rate limits"
 * and the Block Kit reference): about one message per second per channel
 * with short bursts; at most 50 blocks per message; a section's text at
 * most 3,000 characters; a header's plain text at most 150. Messages whose
 * blocks add up to much more than 12,000 characters have been refused in
 * practice (msg_blocks_too_long), so a digest stays under a smaller budget.
 */
#ifndef MLOPS_SLACK_H
#define MLOPS_SLACK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLACK_MAX_BLOCKS 50
#define SLACK_SECTION_MAX 3000
#define SLACK_HEADER_MAX 150
/** Default character budget of one digest's blocks. */
#define SLACK_BUDGET_DEFAULT 11000
/** The response body kept for a dead letter (alert_dlq/1 says <= 256 bytes). */
#define SLACK_BODY_KEEP 256

/* ---- pacing ------------------------------------------------------------------------ */

/** A token bucket: @p rate tokens per second, at most @p burst stored. */
typedef struct slack_bucket {
    double tokens, rate, burst;
    int64_t last_ms;
} slack_bucket_t;

void slack_bucket_init(slack_bucket_t *b, double rate, double burst, int64_t now_ms);
/** Milliseconds until a token is available (0: now). */
int64_t slack_bucket_wait_ms(slack_bucket_t *b, int64_t now_ms);
/** Take one token (call when slack_bucket_wait_ms() said 0). */
void slack_bucket_take(slack_bucket_t *b, int64_t now_ms);

/**
 * Delay before retry number @p attempt (0 = the first retry): base x 2^attempt,
 * capped at @p cap_ms, then scaled by a random factor in [0.5, 1.0] ("equal
 * jitter", so retries of many notifiers spread out but never come sooner than
 * half the nominal gap). @p rng is a caller-owned state (any non-zero seed).
 */
int64_t slack_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t *rng);

/**
 * Parse a Retry-After header value: delay-seconds or an HTTP-date (RFC 9110
 * 10.2.3). Returns the delay in milliseconds from @p now_s (0 if the date is
 * past), or -1 if the value is neither.
 */
int64_t slack_retry_after_ms(const char *value, int64_t now_s);

/* ---- outcomes ---------------------------------------------------------------------- */

typedef enum {
    SLACK_DELIVERED, /**< 2xx */
    SLACK_RETRY,     /**< 429, 408, 5xx, any transport error (refused, timeout, TLS) */
    SLACK_PERMANENT, /**< any other status (400, 403, 404, 410, ...): dead-letter, no retry */
} slack_verdict_t;

/** @p status is the HTTP status, or 0 when the request never got one. */
slack_verdict_t slack_classify(long status);
const char *slack_verdict_name(slack_verdict_t v);

/* ---- webhook URLs (secrets) -------------------------------------------------------- */

/**
 * True if @p url may be posted to: https:// to any host, or plain http://
 * only to a loopback host (127.0.0.0/8, ::1, localhost) for local receivers.
 * Otherwise false with the reason (which never contains the URL's path).
 */
bool slack_url_allowed(const char *url, char *why, size_t why_size);

/**
 * The URL with everything after the host replaced by "/…" (the path of an
 * incoming webhook is its secret), e.g. "https://hooks.slack.com/…".
 */
void slack_url_redact(const char *url, char *out, size_t out_size);

/* ---- messages ---------------------------------------------------------------------- */

/**
 * Render a digest of @p n alert/1 objects as a Slack message (JSON text,
 * caller frees): a plain-text fallback, a header with the counts, one
 * section per alert (state, name, severity, model and labels, value against
 * threshold, window, summary, runbook link), within SLACK_MAX_BLOCKS and a
 * budget of @p budget characters over all blocks; alerts that do not fit
 * are counted in a closing context block ("… and 7 more not shown"), so
 * every alert is represented. Text is escaped for mrkdwn (&, <, >).
 * *shown (optional) receives how many alerts got their own section.
 */
char *slack_render(json_t *const *alerts, size_t n, size_t budget, size_t *shown);

/* ---- HTTP -------------------------------------------------------------------------- */

typedef struct slack_http_opts {
    long connect_timeout_ms;
    long timeout_ms;
    const char *ca_file; /**< extra trust anchors (NULL: the system's) */
} slack_http_opts_t;

typedef struct slack_result {
    long status;     /**< HTTP status, 0 if none */
    char error[256]; /**< transport error (curl's words), "" if none */
    char body[SLACK_BODY_KEEP + 1];
    size_t body_len;        /**< bytes kept in body (the rest was read and dropped) */
    int64_t retry_after_ms; /**< from a Retry-After header, -1 if none */
} slack_result_t;

typedef struct slack_client slack_client_t;

/** One client per thread (a libcurl easy handle with its connection cache). */
slack_client_t *slack_client_new(const slack_http_opts_t *opts);
void slack_client_destroy(slack_client_t *c);

/**
 * POST @p payload (JSON) to @p url with certificate and host verification
 * on, the timeouts of the options, no redirects, and the response read but
 * capped. Fills @p r and returns its verdict.
 */
slack_verdict_t slack_post(slack_client_t *c, const char *url, const char *payload,
                           slack_result_t *r);

#endif
