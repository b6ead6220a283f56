/* common/pg against the stack's PostgreSQL 15: parameterised round trips
 * (hostile input stays data), durability settings, SQLSTATE in errors,
 * wrong credentials and an unreachable server. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg.h"
#include "testutil.h"

static pg_t *pg;

static void setup(void)
{
    log_init("test", LOG_LVL_WARN);
    err_t *e = NULL;
    pg = pg_connect(test_pg_dsn(), 5, 10000, &e);
    cr_assert(pg, "%s", e ? e->msg : "");
}

static void teardown(void) { pg_close(pg); }

TestSuite(pg_real, .init = setup, .fini = teardown, .timeout = 60);

Test(pg_real, parameters_keep_hostile_input_as_data)
{
    err_t *e = NULL;
    cr_assert_eq(
        pg_exec_cmd(pg, "CREATE TEMP TABLE t (id int primary key, name text)", 0, NULL, &e), 0,
        "%s", e ? e->msg : "");
    const char *hostile = "x'); DROP TABLE t; --";
    const char *p[] = {"1", hostile};
    cr_assert_eq(pg_exec_cmd(pg, "INSERT INTO t VALUES ($1::int, $2)", 2, p, &e), 0);
    const char *p2[] = {"2", NULL}; /* SQL NULL */
    cr_assert_eq(pg_exec_cmd(pg, "INSERT INTO t VALUES ($1::int, $2)", 2, p2, &e), 0);
    PGresult *r = pg_exec(pg, "SELECT id, name FROM t ORDER BY id", 0, NULL, &e);
    cr_assert(r, "%s", e ? e->msg : "");
    cr_assert_eq(PQntuples(r), 2);
    cr_assert_str_eq(PQgetvalue(r, 0, 1), hostile);
    cr_assert(PQgetisnull(r, 1, 1));
    PQclear(r);
}

Test(pg_real, transaction_rollback_discards)
{
    err_t *e = NULL;
    cr_assert_eq(pg_exec_cmd(pg, "CREATE TEMP TABLE u (v int)", 0, NULL, &e), 0);
    cr_assert_eq(pg_begin(pg, &e), 0);
    cr_assert_eq(pg_exec_cmd(pg, "INSERT INTO u VALUES (1)", 0, NULL, &e), 0);
    pg_rollback(pg);
    cr_assert_eq(pg_begin(pg, &e), 0);
    cr_assert_eq(pg_exec_cmd(pg, "INSERT INTO u VALUES (2)", 0, NULL, &e), 0);
    cr_assert_eq(pg_commit(pg, &e), 0);
    PGresult *r = pg_exec(pg, "SELECT array_agg(v)::text FROM u", 0, NULL, &e);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "{2}");
    PQclear(r);
}

Test(pg_real, stack_is_durable)
{
    err_t *e = NULL;
    char detail[256];
    int ok = pg_check_durability(pg, detail, sizeof(detail), &e);
    cr_assert_eq(ok, 1, "durability settings off: %s", detail);
}

Test(pg_real, errors_carry_sqlstate_and_are_not_retriable)
{
    err_t *e = NULL;
    cr_assert_null(pg_exec(pg, "SELEC 1", 0, NULL, &e));
    cr_assert(e);
    cr_assert(strstr(e->msg, "SQLSTATE 42601"), "%s", e->msg);
    cr_assert_not(e->retriable);
    err_destroy(e);
    e = NULL;
    /* the connection is still usable after a statement error */
    PGresult *r = pg_exec(pg, "SELECT 1", 0, NULL, &e);
    cr_assert(r);
    PQclear(r);
}

Test(pg_real, statement_timeout_applies)
{
    err_t *e = NULL;
    pg_t *slow = pg_connect(test_pg_dsn(), 5, 200, &e);
    cr_assert(slow);
    int64_t t0 = mono_ms();
    cr_assert_null(pg_exec(slow, "SELECT pg_sleep(5)", 0, NULL, &e));
    cr_assert_lt(mono_ms() - t0, 3000);
    cr_assert(strstr(e->msg, "57014"), "query_canceled expected: %s", e->msg);
    err_destroy(e);
    pg_close(slow);
}

Test(pg_real, wrong_password_is_refused_without_leaking_it)
{
    test_logs_capture();
    /* same host, port and user as the stack's DSN, but a wrong password */
    char *dsn = xasprintf("host=127.0.0.1 port=5433 dbname=mlops user=mlops "
                          "password=definitely-wrong-pw passfile=/dev/null");
    log_add_secret("definitely-wrong-pw");
    err_t *e = NULL;
    pg_t *bad = pg_connect(dsn, 5, 0, &e);
    cr_assert_null(bad);
    cr_assert(e);
    cr_assert(strstr(e->msg, "password authentication failed"), "%s", e->msg);
    cr_assert_null(strstr(e->msg, "definitely-wrong-pw"));
    err_destroy(e);
    free(dsn);
    test_logs_release();
}

Test(pg_real, unreachable_server_fails_within_connect_timeout)
{
    char *dsn = xasprintf("host=127.0.0.1 port=%d dbname=x user=x", test_free_port());
    err_t *e = NULL;
    int64_t t0 = mono_ms();
    cr_assert_null(pg_connect(dsn, 2, 0, &e));
    cr_assert_lt(mono_ms() - t0, 3000);
    cr_assert(e->retriable, "an unreachable server is worth retrying");
    err_destroy(e);
    free(dsn);
}
