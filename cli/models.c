/*
 * mlopsctl models ...: the registry from the command line (tables, or the
 * registry's JSON with --json).
 *
 *   list [--filter F]                  registered models
 *   show NAME                          one model: description, aliases, deployment
 *   versions NAME                      its versions
 *   register NAME --file model.json    a model/1 document as a new version (sha256 sent)
 *   promote NAME VERSION --alias A [--expected-version N|none] [--force --reason R]
 *   rollback NAME --alias A [--expected-version N]
 *   history NAME [--alias A]           alias moves and stage transitions
 *   audit [--object O] [--limit N]     the audit log
 *   card NAME                          the model card
 *   card FILE.json                     the card of a model/1 file (offline)
 *   deploy NAME [--mode canary|ab] [--canary-share X]   show or change the deployment record
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "commands.h"
#include "lifecycle.h"
#include "log.h"
#include "regclient.h"

#define PROG "mlopsctl models"

typedef struct models_conf {
    char *registry_url;
    char *token;
    char *state_dir;
    char *filter;
    char *file;
    char *alias;
    char *expected_version;
    bool force;
    char *reason;
    char *object;
    int64_t limit;
    char *mode;
    double canary_share;
    bool json;
} models_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(models_conf_t, registry_url, CFG_T_STR, "http://127.0.0.1:8080", 0,
             "the registry's base URL"),
    CFG_ITEM(models_conf_t, token, CFG_T_STR, NULL, CFG_SECRET,
             "a bearer token (default: MLOPS_TOKEN, else <state_dir>/registry/admin_token)"),
    CFG_ITEM(models_conf_t, state_dir, CFG_T_STR, ".state", 0, "the state folder"),
    CFG_ITEM(models_conf_t, filter, CFG_T_STR, NULL, 0,
             "list: an MLflow filter, e.g. \"name LIKE 'churn%'\""),
    CFG_ITEM(models_conf_t, file, CFG_T_STR, NULL, 0, "register: the model/1 JSON file"),
    CFG_ITEM(models_conf_t, alias, CFG_T_STR, NULL, 0,
             "promote/rollback/history: the alias (champion, challenger, shadow, ...)"),
    CFG_ITEM(models_conf_t, expected_version, CFG_T_STR, NULL, 0,
             "promote/rollback: the alias's current holder, or 'none' (409 if it moved)"),
    CFG_ITEM(models_conf_t, force, CFG_T_BOOL, "false", 0,
             "promote: move the alias even if the gates did not pass (admin, needs --reason)"),
    CFG_ITEM(models_conf_t, reason, CFG_T_STR, NULL, 0, "promote/rollback: why (audited)"),
    CFG_ITEM(models_conf_t, object, CFG_T_STR, NULL, 0,
             "audit: only this object (a model name, name/version or name@alias)"),
    CFG_ITEM_RANGE(models_conf_t, limit, CFG_T_INT, "100", 0, "audit: at most this many entries", 1,
                   1000),
    CFG_ITEM(models_conf_t, mode, CFG_T_STR, NULL, 0, "deploy: canary or ab"),
    CFG_ITEM_RANGE(models_conf_t, canary_share, CFG_T_DBL, "-1", 0,
                   "deploy: the challenger's share of entities, 0 to 1 (-1 = unchanged)", -1, 1),
    CFG_ITEM(models_conf_t, json, CFG_T_BOOL, "false", 0, "print the registry's JSON"),
};

static const char *const actions[] = {"list",     "show",    "versions", "register", "promote",
                                      "rollback", "history", "audit",    "card",     "deploy"};

static void usage(FILE *out)
{
    fprintf(out, "Usage: mlopsctl models list [--filter F] [--json]\n"
                 "       mlopsctl models show|versions|history|card NAME [--json]\n"
                 "       mlopsctl models card MODEL.json   (a model/1 file, offline)\n"
                 "       mlopsctl models register NAME --file model.json\n"
                 "       mlopsctl models promote NAME VERSION --alias A "
                 "[--expected-version N|none] [--force --reason R]\n"
                 "       mlopsctl models rollback NAME --alias A [--expected-version N]\n"
                 "       mlopsctl models audit [--object O] [--limit N]\n"
                 "       mlopsctl models deploy NAME [--mode canary|ab] [--canary-share X]\n\n"
                 "Talk to mlops-registry (--registry-url, token from --token, MLOPS_TOKEN or\n"
                 "<state_dir>/registry/admin_token).\n");
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static const char *ms_text(json_t *v, char *buf, size_t size)
{
    if (!json_is_integer(v))
        return "-";
    return fmt_rfc3339((int64_t)json_integer_value(v) * 1000, buf, size);
}

static const char *int_or_dash(json_t *v, char *buf, size_t size)
{
    if (!json_is_integer(v))
        return "-";
    snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    return buf;
}

static char *enc(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *out = xstrdup(e ? e : "");
    curl_free(e);
    return out;
}

static void print_models(json_t *reply)
{
    printf("%-32s %-8s %-28s %s\n", "NAME", "LATEST", "ALIASES", "UPDATED");
    size_t i, j;
    json_t *m, *a;
    json_array_foreach(json_object_get(reply, "registered_models"), i, m)
    {
        int64_t latest = 0;
        json_t *v;
        json_array_foreach(json_object_get(m, "latest_versions"), j, v)
        {
            int64_t n = atoll(str(v, "version"));
            if (n > latest)
                latest = n;
        }
        strbuf_t al;
        strbuf_init(&al);
        json_array_foreach(json_object_get(m, "aliases"), j, a)
            strbuf_appendf(&al, "%s%s=%s", j ? "," : "", str(a, "alias"), str(a, "version"));
        char b[48];
        printf("%-32s %-8lld %-28s %s\n", str(m, "name"), (long long)latest, al.len ? al.data : "-",
               ms_text(json_object_get(m, "last_updated_timestamp"), b, sizeof(b)));
        strbuf_cleanup(&al);
    }
}

static void print_versions(json_t *reply)
{
    printf("%-8s %-11s %-20s %-25s %s\n", "VERSION", "STAGE", "ALIASES", "CREATED", "SOURCE");
    size_t i, j;
    json_t *v, *a;
    json_array_foreach(json_object_get(reply, "model_versions"), i, v)
    {
        strbuf_t al;
        strbuf_init(&al);
        json_array_foreach(json_object_get(v, "aliases"), j, a)
            strbuf_appendf(&al, "%s%s", j ? "," : "", json_string_value(a));
        char b[48];
        printf("%-8s %-11s %-20s %-25s %s\n", str(v, "version"), str(v, "current_stage"),
               al.len ? al.data : "-",
               ms_text(json_object_get(v, "creation_timestamp"), b, sizeof(b)), str(v, "source"));
        strbuf_cleanup(&al);
    }
}

static void print_history(json_t *reply)
{
    printf("%-25s %-12s %-6s %-6s %-6s %-28s %s\n", "AT", "ALIAS", "FROM", "TO", "FORCED", "ACTOR",
           "REASON");
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(reply, "aliases"), i, h)
    {
        char b[48], f[24], t[24];
        printf("%-25s %-12s %-6s %-6s %-6s %-28s %s\n",
               ms_text(json_object_get(h, "at_ms"), b, sizeof(b)), str(h, "alias"),
               int_or_dash(json_object_get(h, "from_version"), f, sizeof(f)),
               int_or_dash(json_object_get(h, "to_version"), t, sizeof(t)),
               json_is_true(json_object_get(h, "forced")) ? "yes" : "no", str(h, "actor"),
               str(h, "reason"));
    }
    printf("\n%-25s %-8s %-11s %-11s %s\n", "AT", "VERSION", "FROM", "TO", "ACTOR");
    json_array_foreach(json_object_get(reply, "stages"), i, h)
    {
        char b[48], v[24];
        printf("%-25s %-8s %-11s %-11s %s\n", ms_text(json_object_get(h, "at_ms"), b, sizeof(b)),
               int_or_dash(json_object_get(h, "version"), v, sizeof(v)), str(h, "from_stage"),
               str(h, "to_stage"), str(h, "actor"));
    }
}

static void print_audit(json_t *reply)
{
    printf("%-7s %-25s %-32s %-30s %s\n", "ID", "AT", "ACTION", "OBJECT", "ACTOR");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(reply, "entries"), i, e)
    {
        char b[48], id[24];
        printf("%-7s %-25s %-32s %-30s %s\n", int_or_dash(json_object_get(e, "id"), id, sizeof(id)),
               ms_text(json_object_get(e, "at_ms"), b, sizeof(b)), str(e, "action"),
               str(e, "object"), str(e, "actor"));
    }
}

static void print_card(json_t *c)
{
    printf("model %s\n", str(c, "name"));
    if (*str(c, "description"))
        printf("  %s\n", str(c, "description"));
    json_t *d = json_object_get(c, "deployment");
    char b1[24], b2[24], b3[24];
    printf("deployment: champion %s, challenger %s, shadow %s, mode %s, canary share %g\n",
           int_or_dash(json_object_get(d, "champion"), b1, sizeof(b1)),
           int_or_dash(json_object_get(d, "challenger"), b2, sizeof(b2)),
           int_or_dash(json_object_get(d, "shadow"), b3, sizeof(b3)), str(d, "mode"),
           json_number_value(json_object_get(d, "canary_share")));
    printf("\n%-8s %-11s %-6s %-10s %s\n", "VERSION", "STAGE", "GATES", "ALGORITHM", "METRICS");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(c, "versions"), i, v)
    {
        json_t *g = json_object_get(v, "gates_passed");
        /* the held-out figures a reader compares versions by; --json has them all */
        json_t *mt = json_object_get(v, "metrics");
        strbuf_t metrics;
        strbuf_init(&metrics);
        static const char *const keys[] = {"auc", "log_loss", "f1", "brier", "rows"};
        for (size_t k = 0; json_is_object(mt) && k < MLOPS_ARRAY_LEN(keys); k++) {
            json_t *x = json_object_get(mt, keys[k]);
            if (json_is_integer(x)) /* counts (rows) are printed whole */
                strbuf_appendf(&metrics, "%s%s %lld", metrics.len ? ", " : "", keys[k],
                               (long long)json_integer_value(x));
            else if (json_is_number(x))
                strbuf_appendf(&metrics, "%s%s %.4g", metrics.len ? ", " : "", keys[k],
                               json_number_value(x));
        }
        char vb[24];
        printf("%-8s %-11s %-6s %-10s %s\n",
               int_or_dash(json_object_get(v, "version"), vb, sizeof(vb)), str(v, "stage"),
               json_is_true(g)    ? "pass"
               : json_is_false(g) ? "fail"
                                  : "-",
               json_string_value(json_object_get(v, "algorithm"))
                   ? json_string_value(json_object_get(v, "algorithm"))
                   : "-",
               metrics.len ? metrics.data : "-");
        strbuf_cleanup(&metrics);
    }
}

int cmd_models(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    const char *action = argv[1];
    /* a model/1 file rather than a registered name: the offline card */
    if (!strcmp(action, "card") && argc == 3 && strchr(argv[2], '.') && access(argv[2], F_OK) == 0)
        return model_card_file(argc, argv);
    bool known = false;
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(actions); i++)
        known |= !strcmp(action, actions[i]);
    if (!known) {
        fprintf(stderr,
                PROG ": unknown action '%s' (list, show, versions, register, promote, rollback, "
                     "history, audit, card)\n",
                action);
        return MLOPS_EXIT_USAGE;
    }
    models_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024], prog[64];
    char *tok = NULL, *path = NULL, *name_enc = NULL, *file = NULL;
    json_t *body = NULL, *reply = NULL;
    log_init("mlopsctl", LOG_LVL_WARN);
    snprintf(prog, sizeof(prog), PROG " %s", action);
    cfg_t *cfg = cfg_new(prog, NULL, items, MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    bool needs_name = strcmp(action, "list") && strcmp(action, "audit");
    cfg_allow_positional(cfg, needs_name);
    cfg_result_t r = cfg_init(cfg, argc - 1, argv + 1, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "%s: %s\n", prog, errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    const char *name = NULL;
    int64_t version = 0;
    if (needs_name) {
        int npos;
        char **pos = cfg_positional(cfg, &npos);
        int want = !strcmp(action, "promote") ? 2 : 1;
        if (npos != want || !*pos[0]) {
            fprintf(stderr, "%s: give %s\n", prog,
                    want == 2 ? "a model name and a version" : "one model name");
            code = MLOPS_EXIT_USAGE;
            goto done;
        }
        name = pos[0];
        if (want == 2 && (parse_int64(pos[1], &version) || version < 1)) {
            fprintf(stderr, "%s: '%s' is not a version number\n", prog, pos[1]);
            code = MLOPS_EXIT_USAGE;
            goto done;
        }
        name_enc = enc(name);
    }
    if ((!strcmp(action, "promote") || !strcmp(action, "rollback")) && !conf.alias) {
        fprintf(stderr, "%s: --alias is required\n", prog);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    if (!strcmp(action, "register") && !conf.file) {
        fprintf(stderr, "%s: --file is required\n", prog);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    tok = regclient_token(conf.token, conf.state_dir, errstr, sizeof(errstr));
    if (!tok) {
        fprintf(stderr, "%s: %s\n", prog, errstr);
        goto done;
    }
    regclient_t rc = {.url = conf.registry_url, .token = tok, .timeout_s = 60};
    long st;
    if (!strcmp(action, "list")) {
        char *f = conf.filter ? enc(conf.filter) : NULL;
        path = xasprintf("/api/2.0/mlflow/registered-models/search?max_results=1000%s%s",
                         f ? "&filter=" : "", f ? f : "");
        free(f);
        st = regclient_call(&rc, "GET", path, NULL, &reply, errstr, sizeof(errstr));
    } else if (!strcmp(action, "show")) {
        path = xasprintf("/api/2.0/mlflow/registered-models/get?name=%s", name_enc);
        st = regclient_call(&rc, "GET", path, NULL, &reply, errstr, sizeof(errstr));
    } else if (!strcmp(action, "versions")) {
        /* name = '...' with quotes doubled, as MLflow's filter syntax wants */
        strbuf_t f;
        strbuf_init(&f);
        strbuf_puts(&f, "name = '");
        for (const char *p = name; *p; p++) {
            if (*p == '\'')
                strbuf_putc(&f, '\'');
            strbuf_putc(&f, *p);
        }
        strbuf_putc(&f, '\'');
        char *fe = enc(f.data);
        strbuf_cleanup(&f);
        path = xasprintf("/api/2.0/mlflow/model-versions/search?filter=%s&order_by=%s", fe,
                         "version_number%20DESC");
        free(fe);
        st = regclient_call(&rc, "GET", path, NULL, &reply, errstr, sizeof(errstr));
    } else if (!strcmp(action, "register")) {
        size_t len;
        char why[512];
        file = file_read_all(conf.file, 1u << 30, &len, why, sizeof(why));
        if (!file) {
            fprintf(stderr, "%s: %s\n", prog, why);
            goto done;
        }
        char sha[65], hdr[100];
        sha256_hex(file, len, sha);
        snprintf(hdr, sizeof(hdr), "X-Artifact-Sha256: %s", sha);
        path = xasprintf("/api/v1/models/%s/versions", name_enc);
        st = regclient_call_raw(&rc, "POST", path, file, len, hdr, &reply, errstr, sizeof(errstr));
    } else if (!strcmp(action, "promote") || !strcmp(action, "rollback")) {
        char *alias_enc = enc(conf.alias);
        path = xasprintf("/api/v1/models/%s/aliases/%s/%s", name_enc, alias_enc, action);
        free(alias_enc);
        body = json_object();
        if (version > 0)
            json_object_set_new(body, "version", json_integer(version));
        if (conf.expected_version) {
            int64_t ev;
            if (!strcmp(conf.expected_version, "none"))
                json_object_set_new(body, "expected_version", json_null());
            else if (parse_int64(conf.expected_version, &ev) == 0 && ev > 0)
                json_object_set_new(body, "expected_version", json_integer(ev));
            else {
                fprintf(stderr, "%s: --expected-version is a version number or 'none'\n", prog);
                code = MLOPS_EXIT_USAGE;
                goto done;
            }
        }
        if (conf.force)
            json_object_set_new(body, "force", json_true());
        if (conf.reason)
            json_object_set_new(body, "reason", json_string(conf.reason));
        st = regclient_call(&rc, "POST", path, body, &reply, errstr, sizeof(errstr));
    } else if (!strcmp(action, "history")) {
        char *a = conf.alias ? enc(conf.alias) : NULL;
        path = xasprintf("/api/v1/models/%s/history%s%s", name_enc, a ? "?alias=" : "", a ? a : "");
        free(a);
        st = regclient_call(&rc, "GET", path, NULL, &reply, errstr, sizeof(errstr));
    } else if (!strcmp(action, "audit")) {
        char *o = conf.object ? enc(conf.object) : NULL;
        path = xasprintf("/api/v1/audit?limit=%lld%s%s", (long long)conf.limit, o ? "&object=" : "",
                         o ? o : "");
        free(o);
        st = regclient_call(&rc, "GET", path, NULL, &reply, errstr, sizeof(errstr));
    } else if (!strcmp(action, "deploy")) {
        path = xasprintf("/api/v1/models/%s/deployment", name_enc);
        if (conf.mode || conf.canary_share >= 0) {
            body = json_object();
            if (conf.mode)
                json_object_set_new(body, "mode", json_string(conf.mode));
            if (conf.canary_share >= 0)
                json_object_set_new(body, "canary_share", json_real(conf.canary_share));
            st = regclient_call(&rc, "PUT", path, body, &reply, errstr, sizeof(errstr));
        } else {
            st = regclient_call(&rc, "GET", path, NULL, &reply, errstr, sizeof(errstr));
        }
    } else {
        path = xasprintf("/api/v1/models/%s/card", name_enc);
        st = regclient_call(&rc, "GET", path, NULL, &reply, errstr, sizeof(errstr));
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
    } else if (!strcmp(action, "list")) {
        print_models(reply);
    } else if (!strcmp(action, "show")) {
        json_t *m = json_object_get(reply, "registered_model");
        json_t *wrap = json_pack("{s:[O]}", "registered_models", m);
        print_models(wrap);
        json_decref(wrap);
        if (*str(m, "description"))
            printf("\n%s\n", str(m, "description"));
    } else if (!strcmp(action, "versions")) {
        print_versions(reply);
    } else if (!strcmp(action, "register")) {
        json_t *mv = json_object_get(reply, "model_version");
        printf("registered %s version %s (sha256 %s, gates %s)\n", str(mv, "name"),
               str(mv, "version"), str(json_object_get(reply, "artifact"), "sha256"),
               json_is_true(json_object_get(reply, "gates_passed"))    ? "passed"
               : json_is_false(json_object_get(reply, "gates_passed")) ? "failed"
                                                                       : "not given");
    } else if (!strcmp(action, "promote") || !strcmp(action, "rollback")) {
        char b[24];
        printf("%s@%s -> version %lld (was %s)\n", str(reply, "name"), str(reply, "alias"),
               (long long)json_integer_value(json_object_get(reply, "version")),
               int_or_dash(json_object_get(reply, "previous_version"), b, sizeof(b)));
    } else if (!strcmp(action, "history")) {
        print_history(reply);
    } else if (!strcmp(action, "audit")) {
        print_audit(reply);
    } else if (!strcmp(action, "deploy")) {
        json_t *d = json_object_get(reply, "deployment");
        char b1[24], b2[24], b3[24];
        printf("%s: champion %s, challenger %s, shadow %s, mode %s, canary share %g\n",
               str(reply, "name"), int_or_dash(json_object_get(d, "champion"), b1, sizeof(b1)),
               int_or_dash(json_object_get(d, "challenger"), b2, sizeof(b2)),
               int_or_dash(json_object_get(d, "shadow"), b3, sizeof(b3)), str(d, "mode"),
               json_number_value(json_object_get(d, "canary_share")));
    } else {
        print_card(reply);
    }
    code = MLOPS_EXIT_OK;
done:
    json_decref(body);
    json_decref(reply);
    free(tok);
    free(path);
    free(name_enc);
    free(file);
    cfg_destroy(cfg);
    return code;
}
