/*
 * mlopsctl token create|list|revoke: API tokens of mlops-registry, with an
 * admin token from --token, MLOPS_TOKEN or the registry's first-start file
 * (<state_dir>/registry/admin_token).
 *
 *   create --role reader|trainer|admin [--name N] [--expires 30d]
 *          prints the new token on its last line (it is shown only once)
 *   list   one line per token (id, name, role, created, expires, revoked)
 *   revoke ID
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "commands.h"
#include "lifecycle.h"
#include "log.h"
#include "regclient.h"

#define PROG "mlopsctl token"

typedef struct token_conf {
    char *registry_url;
    char *token;
    char *state_dir;
    char *role;
    char *name;
    char *expires;
    bool json;
} token_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(token_conf_t, registry_url, CFG_T_STR, "http://127.0.0.1:8080", 0,
             "the registry's base URL"),
    CFG_ITEM(token_conf_t, token, CFG_T_STR, NULL, CFG_SECRET,
             "an admin token (default: MLOPS_TOKEN, else <state_dir>/registry/admin_token)"),
    CFG_ITEM(token_conf_t, state_dir, CFG_T_STR, MLOPS_SOURCE_DIR "/.state", 0,
             "the state folder (MLOPS_STATE_DIR)"),
    CFG_ITEM(token_conf_t, role, CFG_T_STR, NULL, 0, "create: reader, trainer or admin"),
    CFG_ITEM(token_conf_t, name, CFG_T_STR, NULL, 0, "create: a name for the token"),
    CFG_ITEM(token_conf_t, expires, CFG_T_STR, NULL, 0,
             "create: lifetime such as 90s, 15m, 12h, 30d, 2w (default: no expiry)"),
    CFG_ITEM(token_conf_t, json, CFG_T_BOOL, "false", 0, "print JSON"),
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: mlopsctl token create --role reader|trainer|admin [--name N] "
                 "[--expires 30d]\n"
                 "       mlopsctl token list [--json]\n"
                 "       mlopsctl token revoke ID\n\n"
                 "Manage mlops-registry's API tokens (needs an admin token: --token, MLOPS_TOKEN\n"
                 "or <state_dir>/registry/admin_token). 'create' prints the token on its last\n"
                 "line; it is stored hashed and never shown again.\n");
}

static const char *ms_text(json_t *v, char *buf, size_t size)
{
    if (!json_is_integer(v))
        return "-";
    return fmt_rfc3339((int64_t)json_integer_value(v) * 1000, buf, size);
}

int cmd_token(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    const char *action = argv[1];
    if (strcmp(action, "create") && strcmp(action, "list") && strcmp(action, "revoke")) {
        fprintf(stderr, PROG ": unknown action '%s' (create, list, revoke)\n", action);
        return MLOPS_EXIT_USAGE;
    }
    token_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024], prog[64];
    char *tok = NULL;
    json_t *body = NULL, *reply = NULL;
    log_init("mlopsctl", LOG_LVL_WARN);
    snprintf(prog, sizeof(prog), PROG " %s", action);
    cfg_t *cfg = cfg_new(prog, NULL, items, MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_allow_positional(cfg, !strcmp(action, "revoke"));
    cfg_result_t r = cfg_init(cfg, argc - 1, argv + 1, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "%s: %s\n", prog, errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    tok = regclient_token(conf.token, conf.state_dir, errstr, sizeof(errstr));
    if (!tok) {
        fprintf(stderr, "%s: %s\n", prog, errstr);
        goto done;
    }
    regclient_t rc = {.url = conf.registry_url, .token = tok, .timeout_s = 30};
    long st;
    if (!strcmp(action, "create")) {
        if (!conf.role) {
            fprintf(stderr, "%s: --role is required (reader, trainer or admin)\n", prog);
            code = MLOPS_EXIT_USAGE;
            goto done;
        }
        body = json_pack("{s:s}", "role", conf.role);
        if (conf.name)
            json_object_set_new(body, "name", json_string(conf.name));
        if (conf.expires)
            json_object_set_new(body, "expires", json_string(conf.expires));
        st = regclient_call(&rc, "POST", "/api/v1/tokens", body, &reply, errstr, sizeof(errstr));
    } else if (!strcmp(action, "list")) {
        st = regclient_call(&rc, "GET", "/api/v1/tokens", NULL, &reply, errstr, sizeof(errstr));
    } else {
        int npos;
        char **pos = cfg_positional(cfg, &npos);
        int64_t id;
        if (npos != 1 || parse_int64(pos[0], &id) || id < 1) {
            fprintf(stderr, "%s: give one token id (see mlopsctl token list)\n", prog);
            code = MLOPS_EXIT_USAGE;
            goto done;
        }
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/tokens/%lld", (long long)id);
        st = regclient_call(&rc, "DELETE", path, NULL, &reply, errstr, sizeof(errstr));
    }
    if (st < 0) {
        fprintf(stderr, "%s: %s\n", prog, errstr);
        goto done;
    }
    if (st < 200 || st >= 300) {
        fprintf(stderr, "%s: HTTP %ld: %s\n", prog, st, regclient_error(reply));
        goto done;
    }
    if (conf.json) {
        char *s = json_dumps(reply, JSON_INDENT(2));
        printf("%s\n", s ? s : "{}");
        free(s);
    } else if (!strcmp(action, "create")) {
        char b[48];
        printf("id %lld, name %s, role %s, expires %s\n",
               (long long)json_integer_value(json_object_get(reply, "id")),
               json_string_value(json_object_get(reply, "name")),
               json_string_value(json_object_get(reply, "role")),
               ms_text(json_object_get(reply, "expires_ms"), b, sizeof(b)));
        printf("%s\n", json_string_value(json_object_get(reply, "token")));
    } else if (!strcmp(action, "list")) {
        printf("%-5s %-24s %-8s %-25s %-25s %s\n", "ID", "NAME", "ROLE", "CREATED", "EXPIRES",
               "REVOKED");
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(reply, "tokens"), i, t)
        {
            char b1[48], b2[48], b3[48];
            printf("%-5lld %-24s %-8s %-25s %-25s %s\n",
                   (long long)json_integer_value(json_object_get(t, "id")),
                   json_string_value(json_object_get(t, "name")),
                   json_string_value(json_object_get(t, "role")),
                   ms_text(json_object_get(t, "created_ms"), b1, sizeof(b1)),
                   ms_text(json_object_get(t, "expires_ms"), b2, sizeof(b2)),
                   ms_text(json_object_get(t, "revoked_ms"), b3, sizeof(b3)));
        }
    } else {
        printf("token %lld revoked\n", (long long)json_integer_value(json_object_get(reply, "id")));
    }
    code = MLOPS_EXIT_OK;
done:
    json_decref(body);
    json_decref(reply);
    free(tok);
    cfg_destroy(cfg);
    return code;
}
