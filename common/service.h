/**
 * @file service.h
 * @brief The skeleton every daemon shares, in the order STYLE.md 3 gives:
 *        CLI -> config -> log -> event_base -> metrics -> life cycle ->
 *        HTTP (/health, /ready, /metrics) -> "up" line -> loop -> teardown.
 *
 * A service declares its config struct starting with SERVICE_COMMON_FIELDS
 * and its table starting with SERVICE_COMMON_ITEMS(struct, port), creates
 * its own subsystems between service_start() and service_run(), and frees
 * them after service_run() returns, before service_destroy().
 */
#ifndef MLOPS_SERVICE_H
#define MLOPS_SERVICE_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "cfg.h"
#include "http.h"
#include "lifecycle.h"
#include "metrics.h"

struct event_base;

/** Fields every service's config struct starts with. */
#define SERVICE_COMMON_FIELDS                                                                      \
    char *log_level;                                                                               \
    char *kafka_brokers;                                                                           \
    char *bind_address;                                                                            \
    int64_t metrics_port;                                                                          \
    int64_t drain_timeout_ms

/** Table items for SERVICE_COMMON_FIELDS; @p port is the default metrics port. */
#define SERVICE_COMMON_ITEMS(st, port)                                                             \
    CFG_ITEM(st, log_level, CFG_T_STR, "info", CFG_RELOAD, "log level: debug, info, warn, error"), \
        CFG_ITEM(st, kafka_brokers, CFG_T_STR, "127.0.0.1:9092", 0, "Kafka bootstrap servers"),    \
        CFG_ITEM(st, bind_address, CFG_T_STR, "127.0.0.1", 0,                                      \
                 "address the HTTP endpoints listen on"),                                          \
        CFG_ITEM_RANGE(st, metrics_port, CFG_T_INT, port, 0,                                       \
                       "port of /health, /ready and /metrics (0 = any free port)", 0, 65535),      \
        CFG_ITEM_RANGE(st, drain_timeout_ms, CFG_T_INT, "30000", 0,                                \
                       "how long the first SIGTERM may drain before exiting", 100, 3600000)

/** Layout of the common fields, for reading them from any service struct. */
typedef struct service_common_conf {
    SERVICE_COMMON_FIELDS;
} service_common_conf_t;

typedef struct service service_t;

typedef struct service_def service_def_t;
struct service_def {
    const char *name;  /**< "ingest", ... (log "service" field, binary mlops-<name>) */
    const char *usage; /**< one line for --help */
    const cfg_item_t *items;
    size_t nitems;
    void *conf; /**< the service's config struct (starts with the common fields) */
    size_t conf_size;
    lc_drain_cb *on_drain;     /**< may be NULL */
    lc_reload_cb *on_reload;   /**< after the config was reloaded; may be NULL */
    http_status_cb *status_cb; /**< may be NULL */
    /**
     * Create the service's own subsystems, in dependency order, after the
     * common ones exist and before the loop runs. Returns 0, or -1 after
     * logging why (the process then exits 1). May be NULL.
     */
    int (*setup)(service_t *svc, void *opaque);
    /** Free what setup created, in reverse order, after the loop. May be NULL. */
    void (*teardown)(service_t *svc, void *opaque);
    void *opaque;
};

/**
 * Parse the CLI and config, set up logging, the loop, metrics, signals and
 * the HTTP endpoints. Returns NULL when the process should exit now, with
 * *exit_code set (0 after --help/--version/--print-config, 2 on a config
 * error, 1 if the HTTP port cannot be bound). Errors are printed to stderr.
 */
service_t *service_start(const service_def_t *def, int argc, char **argv, int *exit_code);

/** Log the "up" line, mark ready, run the loop. Returns the exit code. */
int service_run(service_t *svc);

/** Free everything service_start() created; accepts NULL. */
void service_destroy(service_t *svc);

/**
 * The whole main(): service_start(), def->setup, service_run(),
 * def->teardown, service_destroy(). Returns the process exit code.
 */
int service_main(const service_def_t *def, int argc, char **argv);

struct event_base *service_base(service_t *svc);
metrics_t *service_metrics(service_t *svc);
lifecycle_t *service_lifecycle(service_t *svc);
http_server_t *service_http(service_t *svc);
cfg_t *service_cfg(service_t *svc);
/** Set the opaque passed to the callbacks (when it is created after start). */
void service_set_opaque(service_t *svc, void *opaque);

struct kafka_txn;
struct kafka_producer;
struct kafka_consumer;
struct kafka_tracker;
struct kafka_watch;
struct json_t;

/**
 * The Kafka clients of a consume-transform-produce service: a
 * transactional pair (exactly-once) or a plain producer and consumer
 * (either may be NULL).
 */
typedef struct service_kafka {
    struct kafka_txn *txn;
    struct kafka_producer *kp;
    struct kafka_consumer *kc;
} service_kafka_t;

/** How a consume-transform-produce service reads its input and writes its outputs. */
typedef struct service_pipe_opts {
    const char *client_id;        /**< "mlops-ingest", ... */
    const char *group_id;         /**< consumer group */
    const char *input_topic;      /**< the one topic consumed */
    const char *transactional_id; /**< exactly-once: a transactional pair; NULL: idempotent */
    /** at-least-once: the producer's delivery report hook (with @p opaque) */
    void (*on_delivery)(const rd_kafka_message_t *rkm, void *msg_opaque, void *opaque);
    /** partitions revoked (with @p opaque); may be NULL */
    void (*on_revoke)(struct kafka_consumer *kc, const rd_kafka_topic_partition_list_t *parts,
                      void *opaque);
    void (*on_input)(void *opaque); /**< input is waiting (with @p opaque) */
    void *opaque;
} service_pipe_opts_t;

/** The clients and loop wake-ups service_pipe_open() made; the service frees them. */
typedef struct service_pipe {
    service_kafka_t k;
    struct kafka_tracker *tracker; /**< at-least-once only: offsets of delivered inputs */
    struct kafka_watch *pwatch;    /**< serves the producer's events in the loop */
    struct kafka_watch *watch;     /**< calls on_input when the consumer has input */
} service_pipe_t;

/**
 * Create the clients of @p o on the service's brokers, Kafka properties and
 * metrics (a transactional pair, or an idempotent producer, a consumer and a
 * tracker), and their watches on the service's loop. Returns 0, or -1 after
 * logging why (what was made is left in @p out for the service's teardown).
 */
int service_pipe_open(service_t *svc, const service_pipe_opts_t *o, service_pipe_t *out);

/**
 * After a fatal error of one of @p k's clients, fail the life cycle: with
 * MLOPS_EXIT_USAGE and the cause when the configuration is wrong (TLS,
 * SASL: a restart fails the same way), otherwise MLOPS_EXIT_FAILURE so the
 * supervisor restarts the process and the uncommitted input is re-read.
 * Nothing happens while no client is fatal.
 */
void service_kafka_fatal_check(service_t *svc, const service_kafka_t *k);

/**
 * Status fields of @p k for /health: "kafka" is "up" or "unreachable",
 * and "ready" false while the clients reach no broker.
 */
void service_kafka_status(struct json_t *st, const service_kafka_t *k);

/**
 * Commit @p txn's open transaction if it has anything in it, set
 * *last_commit_ms, count it in @p commits or (aborted and rewound: the
 * inputs are processed again) in @p aborts, and fail the life cycle if the
 * transaction could be neither committed nor aborted.
 */
void service_txn_commit(service_t *svc, struct kafka_txn *txn, int64_t *last_commit_ms,
                        metric_t *commits, metric_t *aborts);

#endif
