/**
 * @file pg.h
 * @brief PostgreSQL access through libpq: parameterised queries only.
 *
 * There is deliberately no function that runs SQL text with values spliced
 * in: values travel as parameters (PQexecParams), so input can never become
 * SQL. Connections carry a connect timeout and a statement timeout; server
 * notices go to log.c. Errors become ERR_D_PG err_t objects whose message
 * carries the SQLSTATE; they are retriable when the connection was lost or
 * the server asked for a retry (serialization failure, deadlock).
 *
 * Ownership: pg_connect() returns a handle freed by pg_close(); results are
 * the caller's: PQclear() them.
 */
#ifndef MLOPS_PG_H
#define MLOPS_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "err.h"
#include "util.h"

typedef struct pg pg_t;

/**
 * Connect with @p dsn (a URI or key=value string). @p connect_timeout_s and
 * @p statement_timeout_ms are applied on top of it (0 = leave as is).
 */
pg_t *pg_connect(const char *dsn, int connect_timeout_s, int statement_timeout_ms, err_t **errp);

/** Close; accepts NULL. */
void pg_close(pg_t *pg);

/**
 * Run @p sql with @p nparams text parameters ($1, $2 ...; NULL is SQL NULL).
 * Returns the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK) or NULL with
 * *errp set. If the connection was found broken, it is reset once and the
 * error is marked retriable (the statement is not re-run: the caller
 * decides, since it may have been a write).
 */
PGresult *pg_exec(pg_t *pg, const char *sql, int nparams, const char *const *params, err_t **errp);

/** pg_exec() for statements whose result is not needed. Returns 0 or -1. */
int pg_exec_cmd(pg_t *pg, const char *sql, int nparams, const char *const *params,
                err_t **errp) MLOPS_WUR;

/** BEGIN / COMMIT / ROLLBACK. Return 0 or -1. */
int pg_begin(pg_t *pg, err_t **errp) MLOPS_WUR;
int pg_commit(pg_t *pg, err_t **errp) MLOPS_WUR;
/** ROLLBACK, ignoring errors (used on error paths). */
void pg_rollback(pg_t *pg);

/**
 * Check that fsync, synchronous_commit and full_page_writes are on.
 * Returns 1 if all are, 0 if not (@p detail names which are off), -1 on a
 * query error.
 */
int pg_check_durability(pg_t *pg, char *detail, size_t detail_size, err_t **errp);

/** True if the connection is usable. */
bool pg_ok(const pg_t *pg);

/** The raw connection (borrowed), for COPY or notifications. */
PGconn *pg_conn(pg_t *pg);

#endif
