/**
 * @file testutil.h
 * @brief Helpers shared by the C tests. They assert internally (Criterion)
 *        and return ready objects, so each Test body reads as the scenario.
 */
#ifndef MLOPS_TESTUTIL_H
#define MLOPS_TESTUTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct event_base;

/** 1 for CI size; larger under `make soak` (MLOPS_TEST_SCALE=soak -> 10). */
int test_scale(void);

/** A name no other test run uses: "<prefix>-<pid>-<usec>-<n>" (caller frees). */
char *test_unique(const char *prefix);

/** Endpoints of the local stack, overridable for other setups. */
const char *test_kafka_brokers(void); /* MLOPS_TEST_KAFKA_BROKERS, default 127.0.0.1:9092 */
const char *test_pg_dsn(void);        /* MLOPS_TEST_PG_DSN, default from the stack */
const char *test_state_dir(void);     /* MLOPS_STATE_DIR, default <source>/.state */

/** Create a topic on the real broker and wait until it is usable. */
void test_create_topic(const char *brokers, const char *topic, int partitions);

/**
 * Delete a test's topics and consumer groups (NULL-terminated lists, either
 * may be NULL) so runs do not pile up on the shared broker. Failures are
 * reported but do not fail the test: cleanup is not the scenario.
 */
void test_kafka_cleanup(const char *brokers, const char *const *topics, const char *const *groups);

/** Capture log lines (log.c) in memory. */
void test_logs_capture(void);
/** Everything captured so far (borrowed, NUL-terminated). */
const char *test_logs(void);
void test_logs_release(void);

/** A TCP listener on 127.0.0.1 that never answers. Returns the fd; *port set. */
int test_listen_silent(int *port);
/** A free TCP port on 127.0.0.1 with nothing listening on it. */
int test_free_port(void);

/** Run an event_base's loop on a thread (libevent made thread-safe first). */
typedef struct test_loop {
    struct event_base *base;
    pthread_t thread;
} test_loop_t;
/** A new event_base with libevent's pthread locking on (for test_loop_*). */
struct event_base *test_base_new(void);
void test_loop_start(test_loop_t *tl);
void test_loop_stop(test_loop_t *tl);

/**
 * One blocking HTTP/1.1 request over a raw socket (so tests control every
 * byte). @p raw_request is sent as is. Returns the status code; *body gets
 * the response body (caller frees) when body is not NULL.
 */
int test_http_raw(int port, const char *raw_request, char **body);
/** Convenience GET/POST with Connection: close. */
int test_http(int port, const char *method, const char *path, const char *req_body, char **body);

#endif
