/**
 * @file cfg.h
 * @brief Declarative configuration: one table per service drives parsing,
 *        --help, a redacted --print-config and SIGHUP reload.
 *
 * Precedence, lowest first: table defaults < config file (--config FILE)
 * < environment (MLOPS_<KEY>) < command line (--key=value or --key value).
 *
 * - Keys are snake_case; the struct field has the same name as the key.
 * - Secret keys (CFG_SECRET) also read `<key>_file` (file), MLOPS_<KEY>_FILE
 *   (env) and --<key>-file (CLI): the value is the file's content with the
 *   trailing newline removed. Secret values are registered with the logger
 *   so they are never printed, and --print-config shows them as "***".
 * - librdkafka properties pass through untouched: `kafka.<prop> = value` in
 *   the file, MLOPS_KAFKA_PROP_<PROP> in the env (underscores become dots,
 *   lower-cased) and `-X prop=value` on the command line, same precedence.
 * - Reloadable keys (CFG_RELOAD) take a new value on cfg_reload(); a changed
 *   non-reloadable key is reported and keeps its running value.
 * - Errors read `file:line: message`, `env MLOPS_X: message` or
 *   `--flag: message`.
 *
 * File format: one `key = value` per line; `#` starts a comment line;
 * values may be wrapped in double quotes (then `#` is literal).
 *
 * Ownership: the cfg_t owns every string it writes into the service's
 * struct; they live until cfg_destroy() (or until a reload replaces a
 * reloadable one: read those only from the thread that calls cfg_reload()).
 */
#ifndef MLOPS_CFG_H
#define MLOPS_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

typedef enum cfg_type {
    CFG_T_STR,  /**< char * (NULL when unset) */
    CFG_T_INT,  /**< int64_t */
    CFG_T_DBL,  /**< double, finite */
    CFG_T_BOOL, /**< bool */
} cfg_type_t;

#define CFG_RELOAD 0x1u   /**< takes effect on SIGHUP */
#define CFG_SECRET 0x2u   /**< never printed; also read from <key>_file */
#define CFG_REQUIRED 0x4u /**< must be set (string keys) */

typedef struct cfg_item {
    const char *key; /**< snake_case; equal to the struct field's name */
    cfg_type_t type;
    const char *def; /**< default, as text; NULL = unset */
    unsigned flags;  /**< CFG_RELOAD | CFG_SECRET | CFG_REQUIRED */
    size_t offset;   /**< offsetof(struct, field) */
    const char *help;
    double min, max; /**< inclusive bounds for numbers when min < max */
} cfg_item_t;

/** Declare an item whose key is the struct field's name. */
#define CFG_ITEM(st, field, type, def, flags, help)                                                \
    {                                                                                              \
#field, (type), (def), (flags), offsetof(st, field), (help), 0, 0                          \
    }
/** The same with inclusive numeric bounds. */
#define CFG_ITEM_RANGE(st, field, type, def, flags, help, lo, hi)                                  \
    {                                                                                              \
#field, (type), (def), (flags), offsetof(st, field), (help), (lo), (hi)                    \
    }

typedef struct cfg cfg_t;

/** One librdkafka property (borrowed from the cfg_t). */
typedef struct cfg_kv {
    const char *key;
    const char *value;
} cfg_kv_t;

/**
 * Create a configuration for @p service over @p items, writing values into
 * the caller's struct @p target (@p target_size bytes, zeroed by cfg_new).
 * @p usage is the one-line synopsis for --help (may be NULL).
 * The table and target must outlive the cfg_t.
 */
cfg_t *cfg_new(const char *service, const char *usage, const cfg_item_t *items, size_t nitems,
               void *target, size_t target_size);

/** Free the cfg_t and every string it wrote into the target; accepts NULL. */
void cfg_destroy(cfg_t *cfg);

/** Allow positional arguments (for CLI tools); by default they are errors. */
void cfg_allow_positional(cfg_t *cfg, bool allow);

/** Outcome of cfg_init(). */
typedef enum cfg_result {
    CFG_OK = 0,    /**< configuration loaded: run */
    CFG_EXIT = 1,  /**< --help, --version or --print-config was served: exit 0 */
    CFG_ERROR = -1 /**< errstr says what is wrong: exit 2 (usage/config) */
} cfg_result_t;

/**
 * Parse the command line, then load defaults < file < env < CLI into the
 * target. Handles --help/-h, --version/-V, --print-config (printed to
 * @p out), --config/-c FILE and -X prop=value.
 */
cfg_result_t cfg_init(cfg_t *cfg, int argc, char **argv, FILE *out, char *errstr,
                      size_t errstr_size);

/**
 * Reload: re-read the file and env (CLI values still win). On any error the
 * running configuration is kept and -1 is returned with errstr set.
 * Otherwise returns the number of reloadable keys that changed; changed
 * non-reloadable keys are logged as warnings and keep their running value.
 */
int cfg_reload(cfg_t *cfg, char *errstr, size_t errstr_size);

/** Write the --help text (generated from the table). */
void cfg_print_help(const cfg_t *cfg, FILE *out);
/** Write the effective configuration, secrets as "***", with each value's source. */
void cfg_print(const cfg_t *cfg, FILE *out);

/** librdkafka pass-through properties, after precedence (borrowed). */
const cfg_kv_t *cfg_kafka_props(const cfg_t *cfg, size_t *np);
/** Positional arguments (borrowed; only with cfg_allow_positional). */
char **cfg_positional(const cfg_t *cfg, int *np);
/** Where the value of @p key came from: "default", "file:LINE", "env", "cli". */
const char *cfg_source(const cfg_t *cfg, const char *key);
/** The --config path, or NULL. */
const char *cfg_file(const cfg_t *cfg);

#endif
