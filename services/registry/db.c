/* The registry's schema (embedded numbered migrations) and the first admin
 * token. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "log.h"
#include "registry.h"

static int exec_script(pg_t *pg, const char *sql, char *errstr, size_t errstr_size)
{
    /* Migrations are our own files, compiled in: the one place SQL runs as a
     * multi-statement script (PQexec), never with input in it. */
    PGresult *res = PQexec(pg_conn(pg), sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "%s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(pg_conn(pg)));
        size_t n = strlen(errstr);
        while (n && errstr[n - 1] == '\n')
            errstr[--n] = '\0';
        rc = -1;
    }
    PQclear(res);
    return rc;
}

static int migrate_one(pg_t *pg, const registry_migration_t *m, bool *applied, char *errstr,
                       size_t errstr_size)
{
    err_t *e = NULL;
    char lock[32], ver[16], sum[65];
    snprintf(lock, sizeof(lock), "%lld", (long long)REGISTRY_LOCK_MIGRATE);
    snprintf(ver, sizeof(ver), "%d", m->version);
    sha256_hex(m->sql, strlen(m->sql), sum);
    *applied = false;
    if (pg_begin(pg, &e))
        goto err;
    /* held until COMMIT/ROLLBACK: a second instance waits here, then sees
     * the migration recorded and skips it */
    if (pg_exec_cmd(pg, "SELECT pg_advisory_xact_lock($1::bigint)", 1, QPARAMS(lock), &e))
        goto err;
    if (pg_exec_cmd(pg,
                    "CREATE TABLE IF NOT EXISTS registry_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                    0, NULL, &e))
        goto err;
    PGresult *res = pg_exec(pg, "SELECT sha256 FROM registry_migrations WHERE version = $1::int", 1,
                            QPARAMS(ver), &e);
    if (!res)
        goto err;
    if (PQntuples(res) == 1) {
        bool same = !strcmp(PQgetvalue(res, 0, 0), sum);
        PQclear(res);
        pg_rollback(pg);
        if (!same) {
            snprintf(errstr, errstr_size,
                     "migration %s was applied with different contents (sha256 differs): "
                     "migrations must never change once released",
                     m->name);
            return -1;
        }
        return 0;
    }
    PQclear(res);
    char why[512];
    if (exec_script(pg, m->sql, why, sizeof(why))) {
        pg_rollback(pg);
        snprintf(errstr, errstr_size, "migration %s failed: %s", m->name, why);
        return -1;
    }
    if (pg_exec_cmd(
            pg, "INSERT INTO registry_migrations (version, name, sha256) VALUES ($1::int, $2, $3)",
            3, QPARAMS(ver, m->name, sum), &e))
        goto err;
    if (pg_commit(pg, &e))
        goto err;
    *applied = true;
    return 0;
err:
    pg_rollback(pg);
    snprintf(errstr, errstr_size, "migration %s: %s", m->name, e ? e->msg : "?");
    err_destroy(e);
    return -1;
}

int db_migrate(pg_t *pg, char *errstr, size_t errstr_size)
{
    int napplied = 0;
    for (size_t i = 0; i < registry_nmigrations; i++) {
        const registry_migration_t *m = &registry_migrations[i];
        if (i && m->version <= registry_migrations[i - 1].version) {
            snprintf(errstr, errstr_size, "migration %s: numbers must increase", m->name);
            return -1;
        }
        bool applied;
        if (migrate_one(pg, m, &applied, errstr, errstr_size))
            return -1;
        if (applied) {
            napplied++;
            log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("migration", m->name)), "migration applied");
        }
    }
    log_emit(
        LOG_LVL_INFO,
        LOG_FIELDS(LOG_INT("applied", napplied), LOG_INT("known", (long long)registry_nmigrations)),
        "schema up to date");
    return 0;
}

int token_generate(char out[72], char hash[65])
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    memcpy(out, "mlr_", 4);
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", raw[i]);
    sha256_hex(out, strlen(out), hash);
    return 0;
}

static int mkdirs(const char *path)
{
    char buf[1024];
    str_copy(buf, path, sizeof(buf));
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

int db_bootstrap_admin(pg_t *pg, const char *path, char *errstr, size_t errstr_size)
{
    err_t *e = NULL;
    char lock[32];
    snprintf(lock, sizeof(lock), "%lld", (long long)REGISTRY_LOCK_MIGRATE);
    if (pg_begin(pg, &e) ||
        pg_exec_cmd(pg, "SELECT pg_advisory_xact_lock($1::bigint)", 1, QPARAMS(lock), &e))
        goto err;
    PGresult *res = pg_exec(pg,
                            "SELECT count(*) FROM api_tokens WHERE role = 'admin'"
                            " AND revoked_ms IS NULL",
                            0, NULL, &e);
    if (!res)
        goto err;
    bool have = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    PQclear(res);
    if (have) {
        pg_rollback(pg);
        return 0;
    }
    char tok[72], hash[65], now[24];
    if (token_generate(tok, hash)) {
        pg_rollback(pg);
        snprintf(errstr, errstr_size, "no random bytes for a token");
        return -1;
    }
    log_add_secret(tok);
    snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
    if (pg_exec_cmd(pg,
                    "INSERT INTO api_tokens (name, token_hash, role, created_by, created_ms)"
                    " VALUES ('bootstrap-admin', $1, 'admin', 'registry', $2::bigint)",
                    2, QPARAMS(hash, now), &e))
        goto err;
    if (pg_exec_cmd(
            pg,
            "INSERT INTO audit_log (at_ms, actor, action, object_type, object)"
            " VALUES ($1::bigint, 'registry', 'token.bootstrap', 'token', 'bootstrap-admin')",
            1, QPARAMS(now), &e))
        goto err;
    /* write the file first: a token in the database nobody can read would
     * lock the admin out */
    if (mkdirs(path)) {
        pg_rollback(pg);
        snprintf(errstr, errstr_size, "cannot create the folder of %s: %s", path, strerror(errno));
        return -1;
    }
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        pg_rollback(pg);
        snprintf(errstr, errstr_size, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(tok);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, tok, len) == (ssize_t)len &&
              write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        pg_rollback(pg);
        snprintf(errstr, errstr_size, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    if (pg_commit(pg, &e)) {
        unlink(path);
        goto err;
    }
    log_emit(LOG_LVL_WARN, LOG_FIELDS(LOG_STR("file", path)),
             "first start: an admin token was created (mode 0600); keep it safe");
    return 0;
err:
    pg_rollback(pg);
    snprintf(errstr, errstr_size, "admin token: %s", e ? e->msg : "?");
    err_destroy(e);
    return -1;
}
