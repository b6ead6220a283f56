/*
 * mlopsctl registry backup|restore FILE: the registry's database (models,
 * versions, artifacts, aliases, history, audit, tokens, outbox) with
 * PostgreSQL's own pg_dump / pg_restore (custom format). The password never
 * goes on a command line: it is taken out of the DSN and handed over in
 * PGPASSWORD.
 *
 *   backup FILE    pg_dump --format=custom into FILE (written to FILE.tmp, then renamed)
 *   restore FILE   pg_restore --clean --if-exists --single-transaction from FILE
 */
#include <errno.h>
#include <libpq-fe.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfg.h"
#include "commands.h"
#include "lifecycle.h"
#include "log.h"

#define PROG "mlopsctl registry"

extern char **environ;

typedef struct regdb_conf {
    char *pg_dsn;
    char *state_dir;
    char *pg_bin;
} regdb_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(regdb_conf_t, pg_dsn, CFG_T_STR, NULL, CFG_SECRET,
             "the registry's Postgres (default: the local stack's, <state_dir>/secrets/pg_dsn)"),
    CFG_ITEM(regdb_conf_t, state_dir, CFG_T_STR, ".state", 0, "the state folder"),
    CFG_ITEM(regdb_conf_t, pg_bin, CFG_T_STR, "/usr/lib/postgresql/15/bin", 0,
             "where pg_dump and pg_restore are (else they are looked up on PATH)"),
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: mlopsctl registry backup FILE [--pg-dsn DSN]\n"
                 "       mlopsctl registry restore FILE [--pg-dsn DSN]\n\n"
                 "Back up or restore mlops-registry's database (artifacts included) with\n"
                 "pg_dump/pg_restore. Restore replaces what the database holds.\n");
}

/* The DSN without its password (key=value form), and the password apart. */
static char *split_dsn(const char *dsn, char **password, char *errstr, size_t errstr_size)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &err);
    if (!opts) {
        snprintf(errstr, errstr_size, "bad pg_dsn: %s", err ? err : "cannot parse");
        PQfreemem(err);
        return NULL;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    *password = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (!strcmp(o->keyword, "password")) {
            *password = xstrdup(o->val);
            continue;
        }
        strbuf_appendf(&sb, "%s%s='", sb.len ? " " : "", o->keyword);
        for (const char *p = o->val; *p; p++) {
            if (*p == '\'' || *p == '\\')
                strbuf_putc(&sb, '\\');
            strbuf_putc(&sb, *p);
        }
        strbuf_putc(&sb, '\'');
    }
    PQconninfoFree(opts);
    return strbuf_detach(&sb, NULL);
}

static int run(const char *const *argv, const char *password)
{
    /* the child's environment: ours plus PGPASSWORD */
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = xcalloc(n + 2, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "PGPASSWORD=", 11))
            env[k++] = environ[i];
    char *pw = password ? xasprintf("PGPASSWORD=%s", password) : NULL;
    if (pw)
        env[k++] = pw;
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, env);
    int status = -1;
    if (rc == 0) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    } else {
        fprintf(stderr, PROG ": cannot run %s: %s\n", argv[0], strerror(rc));
    }
    free(pw);
    free(env);
    if (rc)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int cmd_registry(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    const char *action = argv[1];
    if (strcmp(action, "backup") && strcmp(action, "restore")) {
        fprintf(stderr, PROG ": unknown action '%s' (backup, restore)\n", action);
        return MLOPS_EXIT_USAGE;
    }
    regdb_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024], prog[64];
    char *dsn = NULL, *conn = NULL, *password = NULL, *tool = NULL, *tmp = NULL;
    log_init("mlopsctl", LOG_LVL_WARN);
    snprintf(prog, sizeof(prog), PROG " %s", action);
    cfg_t *cfg = cfg_new(prog, "FILE", items, MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_allow_positional(cfg, true);
    cfg_result_t r = cfg_init(cfg, argc - 1, argv + 1, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "%s: %s\n", prog, errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    int npos;
    char **pos = cfg_positional(cfg, &npos);
    if (npos != 1 || !*pos[0]) {
        fprintf(stderr, "%s: give one FILE\n", prog);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    const char *file = pos[0];
    if (conf.pg_dsn) {
        dsn = xstrdup(conf.pg_dsn);
    } else {
        char path[1100];
        snprintf(path, sizeof(path), "%s/secrets/pg_dsn", conf.state_dir);
        dsn = file_read_all(path, 8192, NULL, errstr, sizeof(errstr));
        if (!dsn) {
            fprintf(stderr, "%s: no --pg-dsn and %s\n", prog, errstr);
            goto done;
        }
        size_t n = strlen(dsn);
        while (n && (dsn[n - 1] == '\n' || dsn[n - 1] == '\r'))
            dsn[--n] = '\0';
    }
    log_add_secret(dsn);
    conn = split_dsn(dsn, &password, errstr, sizeof(errstr));
    if (!conn) {
        fprintf(stderr, "%s: %s\n", prog, errstr);
        goto done;
    }
    if (password)
        log_add_secret(password);
    const char *name = !strcmp(action, "backup") ? "pg_dump" : "pg_restore";
    tool = xasprintf("%s/%s", conf.pg_bin, name);
    if (access(tool, X_OK)) {
        free(tool);
        tool = xstrdup(name);
    }
    if (!strcmp(action, "backup")) {
        tmp = xasprintf("%s.tmp", file);
        const char *args[] = {tool,         "--format=custom",
                              "--no-owner", "--no-privileges",
                              "--file",     tmp,
                              "--dbname",   conn,
                              NULL};
        int rc = run(args, password);
        if (rc != 0) {
            unlink(tmp);
            fprintf(stderr, "%s: %s exited %d\n", prog, name, rc);
            goto done;
        }
        if (rename(tmp, file)) {
            fprintf(stderr, "%s: cannot rename %s to %s: %s\n", prog, tmp, file, strerror(errno));
            unlink(tmp);
            goto done;
        }
        printf("registry backed up to %s\n", file);
    } else {
        if (access(file, R_OK)) {
            fprintf(stderr, "%s: %s: %s\n", prog, file, strerror(errno));
            goto done;
        }
        const char *args[] = {tool,
                              "--clean",
                              "--if-exists",
                              "--no-owner",
                              "--no-privileges",
                              "--single-transaction",
                              "--exit-on-error",
                              "--dbname",
                              conn,
                              (char *)file,
                              NULL};
        int rc = run(args, password);
        if (rc != 0) {
            fprintf(stderr, "%s: %s exited %d (nothing was changed: one transaction)\n", prog, name,
                    rc);
            goto done;
        }
        printf("registry restored from %s\n", file);
    }
    code = MLOPS_EXIT_OK;
done:
    free(dsn);
    free(conn);
    free(password);
    free(tool);
    free(tmp);
    cfg_destroy(cfg);
    return code;
}
