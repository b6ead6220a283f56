#include "pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct pg {
    PGconn *conn;
};

static void notice_processor(void *arg, const char *message)
{
    char msg[1024];
    str_copy(msg, message, sizeof(msg));
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("component", "postgres")), "%s", msg);
}

pg_t *pg_connect(const char *dsn, int connect_timeout_s, int statement_timeout_ms, err_t **errp)
{
    char ct[16], opts[64];
    snprintf(ct, sizeof(ct), "%d", connect_timeout_s);
    snprintf(opts, sizeof(opts), "-c statement_timeout=%d", statement_timeout_ms);
    const char *keys[4] = {"dbname", NULL, NULL, NULL};
    const char *vals[4] = {dsn, NULL, NULL, NULL};
    int k = 1;
    if (connect_timeout_s > 0) {
        keys[k] = "connect_timeout";
        vals[k++] = ct;
    }
    if (statement_timeout_ms > 0) {
        keys[k] = "options";
        vals[k++] = opts;
    }
    /* expand_dbname=1: the dsn is expanded first; the timeouts given here
     * come later in the arrays and so take precedence */
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char msg[512];
        log_redact(conn ? PQerrorMessage(conn) : "out of memory", msg, sizeof(msg));
        size_t n = strlen(msg);
        while (n && msg[n - 1] == '\n')
            msg[--n] = '\0';
        err_set(errp, ERR_D_PG, 0, true, false, "cannot connect to Postgres: %s", msg);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, notice_processor, NULL);
    pg_t *pg = xcalloc(1, sizeof(*pg));
    pg->conn = conn;
    return pg;
}

void pg_close(pg_t *pg)
{
    if (!pg)
        return;
    PQfinish(pg->conn);
    free(pg);
}

static int sqlstate_code(const char *state)
{
    /* five SQLSTATE characters packed base-36 so the code is an int */
    int code = 0;
    for (int i = 0; state && i < 5 && state[i]; i++) {
        char c = state[i];
        code = code * 36 + (c >= '0' && c <= '9' ? c - '0' : c - 'A' + 10);
    }
    return code;
}

PGresult *pg_exec(pg_t *pg, const char *sql, int nparams, const char *const *params, err_t **errp)
{
    PGresult *res = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char msg[512];
    str_copy(msg, res ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn), sizeof(msg));
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    bool broken = PQstatus(pg->conn) != CONNECTION_OK;
    /* 40001 serialization_failure, 40P01 deadlock_detected, 57014 query_canceled (timeout) */
    bool retriable = broken || (state && (!strcmp(state, "40001") || !strcmp(state, "40P01")));
    err_set(errp, ERR_D_PG, sqlstate_code(state), retriable, false, "SQLSTATE %s: %s",
            state ? state : "none", msg);
    PQclear(res);
    if (broken) {
        log_warn("Postgres connection lost; reconnecting");
        PQreset(pg->conn);
    }
    return NULL;
}

int pg_exec_cmd(pg_t *pg, const char *sql, int nparams, const char *const *params, err_t **errp)
{
    PGresult *res = pg_exec(pg, sql, nparams, params, errp);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

int pg_begin(pg_t *pg, err_t **errp) { return pg_exec_cmd(pg, "BEGIN", 0, NULL, errp); }
int pg_commit(pg_t *pg, err_t **errp) { return pg_exec_cmd(pg, "COMMIT", 0, NULL, errp); }

void pg_rollback(pg_t *pg)
{
    PGresult *res = PQexec(pg->conn, "ROLLBACK");
    PQclear(res);
}

int pg_check_durability(pg_t *pg, char *detail, size_t detail_size, err_t **errp)
{
    PGresult *res = pg_exec(pg,
                            "SELECT name, setting FROM pg_settings WHERE name IN "
                            "('fsync','synchronous_commit','full_page_writes') ORDER BY name",
                            0, NULL, errp);
    if (!res)
        return -1;
    detail[0] = '\0';
    int ok = PQntuples(res) == 3;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *name = PQgetvalue(res, i, 0), *setting = PQgetvalue(res, i, 1);
        if (strcmp(setting, "on")) {
            ok = 0;
            size_t used = strlen(detail);
            snprintf(detail + used, detail_size - used, "%s%s=%s", used ? ", " : "", name, setting);
        }
    }
    PQclear(res);
    return ok;
}

bool pg_ok(const pg_t *pg) { return pg && PQstatus(pg->conn) == CONNECTION_OK; }
PGconn *pg_conn(pg_t *pg) { return pg->conn; }
