/* mlops-registry token create: the local bootstrap. Creates a token straight
 * in the database (no running registry, no admin token needed: access to the
 * database is the credential), for example when every admin token was lost.
 * The schema is migrated first, as at start. The token is the last line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle.h"
#include "log.h"
#include "registry.h"

typedef struct boot_conf {
    char *pg_dsn;
    char *pg_password_file;
    char *state_dir;
    char *role;
    char *name;
    char *expires;
} boot_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(boot_conf_t, pg_dsn, CFG_T_STR, NULL, CFG_SECRET,
             "Postgres connection string (default: <state_dir>/secrets/pg_dsn)"),
    CFG_ITEM(boot_conf_t, pg_password_file, CFG_T_STR, NULL, 0,
             "a file holding the Postgres password, for a pg_dsn without one"),
    CFG_ITEM(boot_conf_t, state_dir, CFG_T_STR, ".state", 0, "state folder"),
    CFG_ITEM(boot_conf_t, role, CFG_T_STR, "admin", 0, "reader, trainer or admin"),
    CFG_ITEM(boot_conf_t, name, CFG_T_STR, "local-bootstrap", 0, "a name for the token"),
    CFG_ITEM(boot_conf_t, expires, CFG_T_STR, NULL, 0,
             "lifetime such as 15m, 12h, 30d (default: no expiry)"),
};

int registry_token_cli(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "create")) {
        fprintf(stderr, "Usage: mlops-registry token create [--role admin] [--name N] "
                        "[--expires 1d] [--pg-dsn DSN]\n\n"
                        "Create an API token directly in the registry's database (the local\n"
                        "bootstrap; with a running registry prefer 'mlopsctl token create').\n");
        return argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
                   ? MLOPS_EXIT_OK
                   : MLOPS_EXIT_USAGE;
    }
    boot_conf_t conf;
    char errstr[1024];
    int code = MLOPS_EXIT_FAILURE;
    pg_t *pg = NULL;
    char *dsn = NULL;
    log_init("registry", LOG_LVL_WARN);
    cfg_t *cfg =
        cfg_new("registry token create", NULL, items, MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_result_t r = cfg_init(cfg, argc - 1, argv + 1, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "mlops-registry token create: %s\n", errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    if (role_parse(conf.role) < 0) {
        fprintf(stderr,
                "mlops-registry token create: role '%s' is not one of reader, trainer, "
                "admin\n",
                conf.role);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    int64_t secs = 0;
    if (conf.expires && parse_duration_s(conf.expires, &secs)) {
        fprintf(stderr, "mlops-registry token create: expires '%s' is not a duration like 12h\n",
                conf.expires);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    if (conf.pg_dsn) {
        dsn = xstrdup(conf.pg_dsn);
    } else {
        char path[1100];
        snprintf(path, sizeof(path), "%s/secrets/pg_dsn", conf.state_dir);
        dsn = file_read_all(path, 8192, NULL, errstr, sizeof(errstr));
        if (!dsn) {
            fprintf(stderr, "mlops-registry token create: no --pg-dsn and %s\n", errstr);
            goto done;
        }
        size_t n = strlen(dsn);
        while (n && (dsn[n - 1] == '\n' || dsn[n - 1] == '\r'))
            dsn[--n] = '\0';
    }
    log_add_secret(dsn);
    if (conf.pg_password_file) {
        char *pw = file_read_all(conf.pg_password_file, 4096, NULL, errstr, sizeof(errstr));
        if (!pw) {
            fprintf(stderr, "mlops-registry token create: %s\n", errstr);
            goto done;
        }
        size_t n = strlen(pw);
        while (n && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
            pw[--n] = '\0';
        log_add_secret(pw);
        int rc = setenv("PGPASSWORD", pw, 1);
        free(pw);
        if (rc)
            goto done;
    }
    err_t *e = NULL;
    pg = pg_connect(dsn, 5, 10000, &e);
    if (!pg) {
        fprintf(stderr, "mlops-registry token create: %s\n", e ? e->msg : "?");
        err_destroy(e);
        goto done;
    }
    if (db_migrate(pg, errstr, sizeof(errstr))) {
        fprintf(stderr, "mlops-registry token create: %s\n", errstr);
        goto done;
    }
    char tok[72];
    int64_t id = 0;
    if (db_token_create(pg, conf.name, conf.role, secs ? wall_ms() + secs * 1000 : 0,
                        "local-bootstrap", tok, &id, errstr, sizeof(errstr))) {
        fprintf(stderr, "mlops-registry token create: %s\n", errstr);
        goto done;
    }
    printf("id %lld, name %s, role %s\n%s\n", (long long)id, conf.name, conf.role, tok);
    code = MLOPS_EXIT_OK;
done:
    pg_close(pg);
    free(dsn);
    cfg_destroy(cfg);
    return code;
}
