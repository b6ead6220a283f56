#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

extern char **environ;

#define CFG_FILE_MAX (1024 * 1024) /* config files are small */
#define CFG_SECRET_FILE_MAX (64 * 1024)

/* A raw key/value with where it came from. */
typedef struct kvsrc {
    char *key;
    char *value;
    char *src;
} kvsrc_t;

typedef struct kvlist {
    kvsrc_t *v;
    size_t n;
} kvlist_t;

struct cfg {
    char *service;
    char *usage;
    const cfg_item_t *items;
    size_t nitems;
    void *target;
    size_t target_size;
    bool allow_pos;
    char **pos;
    int npos;
    char *file;
    kvlist_t cli;       /* --key value (key may be "<key>_file") */
    kvlist_t cli_kafka; /* -X prop=value */
    char **src;         /* per item: where the running value came from */
    kvlist_t kafka;     /* resolved librdkafka properties */
    cfg_kv_t *kafka_view;
};

/* ---- small helpers ------------------------------------------------------ */

static void kv_set(kvlist_t *l, const char *key, const char *value, const char *src)
{
    for (size_t i = 0; i < l->n; i++) {
        if (!strcmp(l->v[i].key, key)) {
            free(l->v[i].value);
            free(l->v[i].src);
            l->v[i].value = xstrdup(value);
            l->v[i].src = xstrdup(src);
            return;
        }
    }
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n].key = xstrdup(key);
    l->v[l->n].value = xstrdup(value);
    l->v[l->n].src = xstrdup(src);
    l->n++;
}

static void kv_clear(kvlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].value);
        free(l->v[i].src);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static const cfg_item_t *find_item(const cfg_t *cfg, const char *key, size_t *idx)
{
    for (size_t i = 0; i < cfg->nitems; i++) {
        if (!strcmp(cfg->items[i].key, key)) {
            if (idx)
                *idx = i;
            return &cfg->items[i];
        }
    }
    return NULL;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    }
    return d[la][lb];
}

/* " (did you mean 'x'?)" for a near miss, else "". With @p flag the
 * suggestion is written as a command-line flag (--log-level). */
static void suggest(const cfg_t *cfg, const char *key, bool flag, char *buf, size_t size)
{
    const char *best = NULL;
    size_t bestd = 3;
    for (size_t i = 0; i < cfg->nitems; i++) {
        size_t d = edit_distance(key, cfg->items[i].key);
        if (d < bestd) {
            bestd = d;
            best = cfg->items[i].key;
        }
    }
    if (best && flag) {
        char f[128];
        str_copy(f, best, sizeof(f));
        for (char *p = f; *p; p++)
            if (*p == '_')
                *p = '-';
        snprintf(buf, size, " (did you mean '--%s'?)", f);
    } else if (best) {
        snprintf(buf, size, " (did you mean '%s'?)", best);
    } else
        buf[0] = '\0';
}

static void upper_key(const char *key, char *out, size_t size)
{
    size_t i = 0;
    for (; key[i] && i + 1 < size; i++)
        out[i] = (char)toupper((unsigned char)key[i]);
    out[i] = '\0';
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Read a secret from a file: its content minus one trailing newline. */
static char *read_secret_file(const char *path, const char *where, char *errstr, size_t errstr_size)
{
    char e[256];
    size_t len;
    char *buf = file_read_all(path, CFG_SECRET_FILE_MAX, &len, e, sizeof(e));
    if (!buf) {
        snprintf(errstr, errstr_size, "%s: cannot read secret file: %s", where, e);
        return NULL;
    }
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    return buf;
}

static bool secret_prop(const char *key)
{
    return strstr(key, "password") || strstr(key, "secret") || strstr(key, "token");
}

/* Set a librdkafka property. A secret one (its name has password, secret or
 * token) may come from a file: PROP_file (PROP.file from the environment,
 * where underscores are dots) names the file holding the value of PROP.
 * Returns 0 or -1 with errstr set. */
static int kafka_prop_set(kvlist_t *l, const char *key, const char *value, const char *where,
                          char *errstr, size_t errstr_size)
{
    size_t kl = strlen(key);
    if (kl > 5 && (!strcmp(key + kl - 5, "_file") || !strcmp(key + kl - 5, ".file"))) {
        char *base = xstrndup(key, kl - 5);
        if (secret_prop(base)) {
            char *secret = read_secret_file(value, where, errstr, errstr_size);
            if (secret)
                kv_set(l, base, secret, where);
            free(secret);
            free(base);
            return secret ? 0 : -1;
        }
        free(base);
    }
    kv_set(l, key, value, where);
    return 0;
}

/* ---- life cycle ---------------------------------------------------------- */

cfg_t *cfg_new(const char *service, const char *usage, const cfg_item_t *items, size_t nitems,
               void *target, size_t target_size)
{
    cfg_t *cfg = xcalloc(1, sizeof(*cfg));
    cfg->service = xstrdup(service);
    cfg->usage = usage ? xstrdup(usage) : NULL;
    cfg->items = items;
    cfg->nitems = nitems;
    cfg->target = target;
    cfg->target_size = target_size;
    cfg->src = xcalloc(nitems, sizeof(char *));
    memset(target, 0, target_size);
    return cfg;
}

static void free_strings(const cfg_t *cfg, void *target)
{
    for (size_t i = 0; i < cfg->nitems; i++) {
        if (cfg->items[i].type == CFG_T_STR) {
            char **p = (char **)((char *)target + cfg->items[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

void cfg_destroy(cfg_t *cfg)
{
    if (!cfg)
        return;
    free_strings(cfg, cfg->target);
    for (size_t i = 0; i < cfg->nitems; i++)
        free(cfg->src[i]);
    free(cfg->src);
    for (int i = 0; i < cfg->npos; i++)
        free(cfg->pos[i]);
    free(cfg->pos);
    kv_clear(&cfg->cli);
    kv_clear(&cfg->cli_kafka);
    kv_clear(&cfg->kafka);
    free(cfg->kafka_view);
    free(cfg->file);
    free(cfg->usage);
    free(cfg->service);
    free(cfg);
}

void cfg_allow_positional(cfg_t *cfg, bool allow) { cfg->allow_pos = allow; }

/* ---- resolution ---------------------------------------------------------- */

/* Layered raw values, one per item, plus kafka properties. */
typedef struct layer {
    char **raw;
    char **src;
    kvlist_t kafka;
} layer_t;

static void layer_init(layer_t *l, const cfg_t *cfg)
{
    l->raw = xcalloc(cfg->nitems, sizeof(char *));
    l->src = xcalloc(cfg->nitems, sizeof(char *));
    l->kafka.v = NULL;
    l->kafka.n = 0;
    for (size_t i = 0; i < cfg->nitems; i++) {
        l->raw[i] = cfg->items[i].def ? xstrdup(cfg->items[i].def) : NULL;
        l->src[i] = xstrdup("default");
    }
}

static void layer_cleanup(layer_t *l, const cfg_t *cfg)
{
    for (size_t i = 0; i < cfg->nitems; i++) {
        free(l->raw[i]);
        free(l->src[i]);
    }
    free(l->raw);
    free(l->src);
    kv_clear(&l->kafka);
}

static void layer_set(layer_t *l, size_t i, const char *value, const char *src)
{
    free(l->raw[i]);
    free(l->src[i]);
    l->raw[i] = xstrdup(value);
    l->src[i] = xstrdup(src);
}

/* Apply one key = value from any source. `where` is used in messages and
 * recorded as the source. Returns 0 or -1 with errstr set. */
static int apply_kv(const cfg_t *cfg, layer_t *l, const char *key, const char *value,
                    const char *where, char *errstr, size_t errstr_size)
{
    size_t idx;
    const cfg_item_t *it = find_item(cfg, key, &idx);
    if (it) {
        layer_set(l, idx, value, where);
        return 0;
    }
    size_t kl = strlen(key);
    if (kl > 5 && !strcmp(key + kl - 5, "_file")) {
        char base[128];
        str_copy(base, key, sizeof(base));
        base[kl - 5 < sizeof(base) ? kl - 5 : sizeof(base) - 1] = '\0';
        it = find_item(cfg, base, &idx);
        if (it && (it->flags & CFG_SECRET)) {
            char *secret = read_secret_file(value, where, errstr, errstr_size);
            if (!secret)
                return -1;
            layer_set(l, idx, secret, where);
            free(secret);
            return 0;
        }
    }
    char hint[192];
    suggest(cfg, key, false, hint, sizeof(hint));
    snprintf(errstr, errstr_size, "%s: unknown key '%s'%s", where, key, hint);
    return -1;
}

static int load_file(const cfg_t *cfg, layer_t *l, char *errstr, size_t errstr_size)
{
    char e[512];
    char *buf = file_read_all(cfg->file, CFG_FILE_MAX, NULL, e, sizeof(e));
    if (!buf) {
        snprintf(errstr, errstr_size, "%s", e);
        return -1;
    }
    int rc = 0, lineno = 0;
    /* strtok_r would merge empty lines and break numbering: split by hand */
    char *line = buf;
    while (line && rc == 0) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char where[600];
        snprintf(where, sizeof(where), "%s:%d", cfg->file, lineno);
        char *s = trim(line);
        if (*s && *s != '#') {
            char *eq = strchr(s, '=');
            if (!eq) {
                snprintf(errstr, errstr_size, "%s: expected 'key = value'", where);
                rc = -1;
                break;
            }
            *eq = '\0';
            char *key = trim(s), *value = trim(eq + 1);
            size_t vl = strlen(value);
            if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
                value[vl - 1] = '\0';
                value++;
            } else if (vl && value[0] == '"') {
                snprintf(errstr, errstr_size, "%s: unterminated quoted value", where);
                rc = -1;
                break;
            }
            if (!*key) {
                snprintf(errstr, errstr_size, "%s: empty key", where);
                rc = -1;
            } else if (str_starts_with(key, "kafka.")) {
                if (!key[6]) {
                    snprintf(errstr, errstr_size, "%s: empty librdkafka property name", where);
                    rc = -1;
                } else {
                    rc = kafka_prop_set(&l->kafka, key + 6, value, where, errstr, errstr_size);
                }
            } else {
                rc = apply_kv(cfg, l, key, value, where, errstr, errstr_size);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(buf);
    return rc;
}

static int load_env(const cfg_t *cfg, layer_t *l, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < cfg->nitems; i++) {
        const cfg_item_t *it = &cfg->items[i];
        char up[128], name[160];
        upper_key(it->key, up, sizeof(up));
        snprintf(name, sizeof(name), "MLOPS_%s", up);
        const char *v = getenv(name);
        char where[200];
        snprintf(where, sizeof(where), "env %s", name);
        if (v)
            layer_set(l, i, v, where);
        if (it->flags & CFG_SECRET) {
            snprintf(name, sizeof(name), "MLOPS_%s_FILE", up);
            v = getenv(name);
            if (v) {
                snprintf(where, sizeof(where), "env %s", name);
                char *secret = read_secret_file(v, where, errstr, errstr_size);
                if (!secret)
                    return -1;
                layer_set(l, i, secret, where);
                free(secret);
            }
        }
    }
    static const char prefix[] = "MLOPS_KAFKA_PROP_";
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, prefix, sizeof(prefix) - 1))
            continue;
        const char *kv = *e + sizeof(prefix) - 1;
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv)
            continue;
        char prop[256], where[300];
        size_t n = (size_t)(eq - kv) < sizeof(prop) - 1 ? (size_t)(eq - kv) : sizeof(prop) - 1;
        for (size_t k = 0; k < n; k++)
            prop[k] = kv[k] == '_' ? '.' : (char)tolower((unsigned char)kv[k]);
        prop[n] = '\0';
        snprintf(where, sizeof(where), "env %.*s", (int)(eq - *e), *e);
        if (kafka_prop_set(&l->kafka, prop, eq + 1, where, errstr, errstr_size))
            return -1;
    }
    return 0;
}

static int load_cli(const cfg_t *cfg, layer_t *l, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < cfg->cli.n; i++) {
        char where[200];
        char flag[160];
        str_copy(flag, cfg->cli.v[i].key, sizeof(flag));
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        snprintf(where, sizeof(where), "--%s", flag);
        if (apply_kv(cfg, l, cfg->cli.v[i].key, cfg->cli.v[i].value, where, errstr, errstr_size))
            return -1;
    }
    for (size_t i = 0; i < cfg->cli_kafka.n; i++)
        if (kafka_prop_set(&l->kafka, cfg->cli_kafka.v[i].key, cfg->cli_kafka.v[i].value, "-X",
                           errstr, errstr_size))
            return -1;
    return 0;
}

/* Convert the layer into typed values in `target`. With `require` false
 * (--print-config), a required key left unset is not an error. */
static int convert(const cfg_t *cfg, const layer_t *l, void *target, bool require, char *errstr,
                   size_t errstr_size)
{
    for (size_t i = 0; i < cfg->nitems; i++) {
        const cfg_item_t *it = &cfg->items[i];
        void *field = (char *)target + it->offset;
        const char *raw = l->raw[i];
        const char *shown = (it->flags & CFG_SECRET) ? "***" : raw;
        const char *where = l->src[i];
        if (it->type == CFG_T_STR) {
            char **p = field;
            free(*p);
            *p = (raw && *raw) ? xstrdup(raw) : NULL;
            if (!*p && require && (it->flags & CFG_REQUIRED)) {
                char up[128], flag[128];
                upper_key(it->key, up, sizeof(up));
                str_copy(flag, it->key, sizeof(flag));
                for (char *c = flag; *c; c++)
                    if (*c == '_')
                        *c = '-';
                snprintf(errstr, errstr_size,
                         "%s must be set (--%s, env MLOPS_%s or the config file)", it->key, flag,
                         up);
                return -1;
            }
            if (*p && (it->flags & CFG_SECRET))
                log_add_secret(*p);
            continue;
        }
        if (!raw) {
            snprintf(errstr, errstr_size, "%s: %s has no value", where, it->key);
            return -1;
        }
        if (it->type == CFG_T_BOOL) {
            if (parse_bool(raw, (bool *)field)) {
                snprintf(errstr, errstr_size,
                         "%s: %s: '%s' is not a boolean (true/false, yes/no, on/off, 1/0)", where,
                         it->key, shown);
                return -1;
            }
            continue;
        }
        double d;
        if (it->type == CFG_T_INT) {
            int64_t v;
            if (parse_int64(raw, &v)) {
                snprintf(errstr, errstr_size, "%s: %s: '%s' is not an integer", where, it->key,
                         shown);
                return -1;
            }
            *(int64_t *)field = v;
            d = (double)v;
        } else {
            if (parse_double(raw, &d)) {
                snprintf(errstr, errstr_size, "%s: %s: '%s' is not a finite number", where, it->key,
                         shown);
                return -1;
            }
            *(double *)field = d;
        }
        if (it->min < it->max && (d < it->min || d > it->max)) {
            snprintf(errstr, errstr_size, "%s: %s: %s is out of range [%g, %g]", where, it->key,
                     shown, it->min, it->max);
            return -1;
        }
    }
    for (size_t i = 0; i < l->kafka.n; i++) {
        const char *k = l->kafka.v[i].key;
        if (secret_prop(k))
            log_add_secret(l->kafka.v[i].value);
    }
    return 0;
}

static int resolve(const cfg_t *cfg, layer_t *l, char *errstr, size_t errstr_size)
{
    layer_init(l, cfg);
    if (cfg->file && load_file(cfg, l, errstr, errstr_size))
        return -1;
    if (load_env(cfg, l, errstr, errstr_size))
        return -1;
    return load_cli(cfg, l, errstr, errstr_size);
}

static void adopt_kafka(cfg_t *cfg, layer_t *l)
{
    kv_clear(&cfg->kafka);
    cfg->kafka = l->kafka;
    l->kafka.v = NULL;
    l->kafka.n = 0;
    free(cfg->kafka_view);
    cfg->kafka_view = xcalloc(cfg->kafka.n + 1, sizeof(cfg_kv_t));
    for (size_t i = 0; i < cfg->kafka.n; i++) {
        cfg->kafka_view[i].key = cfg->kafka.v[i].key;
        cfg->kafka_view[i].value = cfg->kafka.v[i].value;
    }
}

/* ---- command line ---------------------------------------------------------- */

static void add_positional(cfg_t *cfg, const char *arg)
{
    cfg->pos = xrealloc(cfg->pos, (size_t)(cfg->npos + 1) * sizeof(char *));
    cfg->pos[cfg->npos++] = xstrdup(arg);
}

static int add_kafka_prop(cfg_t *cfg, const char *arg, char *errstr, size_t errstr_size)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        snprintf(errstr, errstr_size, "-X: expected prop=value, got '%s'", arg);
        return -1;
    }
    char *key = xstrndup(arg, (size_t)(eq - arg));
    kv_set(&cfg->cli_kafka, key, eq + 1, "-X");
    free(key);
    return 0;
}

enum { ACT_RUN, ACT_HELP, ACT_VERSION, ACT_PRINT };

static int parse_argv(cfg_t *cfg, int argc, char **argv, int *action, char *errstr,
                      size_t errstr_size)
{
    *action = ACT_RUN;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || !a[1]) {
            if (!cfg->allow_pos) {
                snprintf(errstr, errstr_size, "unexpected argument '%s' (see --help)", a);
                return -1;
            }
            add_positional(cfg, a);
            continue;
        }
        if (!strcmp(a, "--")) {
            options_done = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *action = ACT_HELP;
            continue;
        }
        if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            *action = ACT_VERSION;
            continue;
        }
        if (!strcmp(a, "--print-config")) {
            *action = ACT_PRINT;
            continue;
        }
        if (!strcmp(a, "-c") || !strcmp(a, "--config") || str_starts_with(a, "--config=")) {
            const char *v =
                str_starts_with(a, "--config=") ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                snprintf(errstr, errstr_size, "%s: needs a file name", a);
                return -1;
            }
            free(cfg->file);
            cfg->file = xstrdup(v);
            continue;
        }
        if (!strcmp(a, "-X")) {
            if (i + 1 >= argc) {
                snprintf(errstr, errstr_size, "-X: needs prop=value");
                return -1;
            }
            if (add_kafka_prop(cfg, argv[++i], errstr, errstr_size))
                return -1;
            continue;
        }
        if (str_starts_with(a, "-X")) {
            if (add_kafka_prop(cfg, a + 2, errstr, errstr_size))
                return -1;
            continue;
        }
        if (a[1] != '-') {
            if (cfg->allow_pos) { /* e.g. "-1" as a value for a subcommand */
                add_positional(cfg, a);
                continue;
            }
            snprintf(errstr, errstr_size, "unknown option '%s' (see --help)", a);
            return -1;
        }
        /* --key[=value] */
        char name[160];
        const char *eq = strchr(a + 2, '=');
        size_t n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (n >= sizeof(name))
            n = sizeof(name) - 1;
        memcpy(name, a + 2, n);
        name[n] = '\0';
        for (char *p = name; *p; p++)
            if (*p == '-')
                *p = '_';
        const cfg_item_t *it = find_item(cfg, name, NULL);
        const char *value = eq ? eq + 1 : NULL;
        if (!it && str_starts_with(name, "no_") && !eq) {
            const cfg_item_t *b = find_item(cfg, name + 3, NULL);
            if (b && b->type == CFG_T_BOOL) {
                kv_set(&cfg->cli, b->key, "false", "cli");
                continue;
            }
        }
        if (it && it->type == CFG_T_BOOL && !eq) {
            value = "true";
        } else if (!value) {
            if (i + 1 >= argc) {
                snprintf(errstr, errstr_size, "%s: needs a value", a);
                return -1;
            }
            value = argv[++i];
        }
        if (!it) {
            size_t nl = strlen(name);
            bool secret_file = false;
            if (nl > 5 && !strcmp(name + nl - 5, "_file")) {
                char base[160];
                str_copy(base, name, sizeof(base));
                base[nl - 5] = '\0';
                const cfg_item_t *b = find_item(cfg, base, NULL);
                secret_file = b && (b->flags & CFG_SECRET);
            }
            if (!secret_file) {
                char hint[192];
                suggest(cfg, name, true, hint, sizeof(hint));
                snprintf(errstr, errstr_size, "unknown option '--%.*s'%s (see --help)", (int)n,
                         a + 2, hint);
                return -1;
            }
        }
        kv_set(&cfg->cli, name, value, "cli");
    }
    return 0;
}

cfg_result_t cfg_init(cfg_t *cfg, int argc, char **argv, FILE *out, char *errstr,
                      size_t errstr_size)
{
    int action;
    if (parse_argv(cfg, argc, argv, &action, errstr, errstr_size))
        return CFG_ERROR;
    if (action == ACT_HELP) {
        cfg_print_help(cfg, out);
        return CFG_EXIT;
    }
    if (action == ACT_VERSION) {
        fprintf(out, "mlops-%s %s\n", cfg->service, MLOPS_VERSION);
        return CFG_EXIT;
    }
    layer_t l;
    int rc = resolve(cfg, &l, errstr, errstr_size);
    if (rc == 0)
        rc = convert(cfg, &l, cfg->target, action != ACT_PRINT, errstr, errstr_size);
    if (rc == 0) {
        for (size_t i = 0; i < cfg->nitems; i++) {
            free(cfg->src[i]);
            cfg->src[i] = xstrdup(l.src[i]);
        }
        adopt_kafka(cfg, &l);
    }
    layer_cleanup(&l, cfg);
    if (rc)
        return CFG_ERROR;
    if (action == ACT_PRINT) {
        cfg_print(cfg, out);
        return CFG_EXIT;
    }
    return CFG_OK;
}

static bool field_equal(const cfg_item_t *it, const void *a, const void *b)
{
    switch (it->type) {
    case CFG_T_STR: {
        const char *x = *(char *const *)a, *y = *(char *const *)b;
        return (!x && !y) || (x && y && !strcmp(x, y));
    }
    case CFG_T_INT: return *(const int64_t *)a == *(const int64_t *)b;
    case CFG_T_DBL: return *(const double *)a == *(const double *)b;
    case CFG_T_BOOL: return *(const bool *)a == *(const bool *)b;
    }
    return false;
}

static size_t field_size(const cfg_item_t *it)
{
    switch (it->type) {
    case CFG_T_STR: return sizeof(char *);
    case CFG_T_INT: return sizeof(int64_t);
    case CFG_T_DBL: return sizeof(double);
    case CFG_T_BOOL: return sizeof(bool);
    }
    return 0;
}

int cfg_reload(cfg_t *cfg, char *errstr, size_t errstr_size)
{
    layer_t l;
    void *tmp = xcalloc(1, cfg->target_size);
    int rc = resolve(cfg, &l, errstr, errstr_size);
    if (rc == 0)
        rc = convert(cfg, &l, tmp, true, errstr, errstr_size);
    if (rc) {
        free_strings(cfg, tmp);
        free(tmp);
        layer_cleanup(&l, cfg);
        return -1;
    }
    int changed = 0;
    for (size_t i = 0; i < cfg->nitems; i++) {
        const cfg_item_t *it = &cfg->items[i];
        void *cur = (char *)cfg->target + it->offset;
        void *nw = (char *)tmp + it->offset;
        if (field_equal(it, cur, nw))
            continue;
        if (!(it->flags & CFG_RELOAD)) {
            log_emit(LOG_LVL_WARN, LOG_FIELDS(LOG_STR("key", it->key)),
                     "%s changed but is not reloadable: restart to apply it", it->key);
            continue;
        }
        if (it->type == CFG_T_STR) {
            char **pc = cur, **pn = nw;
            free(*pc);
            *pc = *pn;
            *pn = NULL;
        } else {
            memcpy(cur, nw, field_size(it));
        }
        free(cfg->src[i]);
        cfg->src[i] = xstrdup(l.src[i]);
        log_emit(LOG_LVL_INFO, LOG_FIELDS(LOG_STR("key", it->key), LOG_STR("source", l.src[i])),
                 "reloaded %s", it->key);
        changed++;
    }
    bool kafka_same = l.kafka.n == cfg->kafka.n;
    for (size_t i = 0; kafka_same && i < l.kafka.n; i++)
        kafka_same = !strcmp(l.kafka.v[i].key, cfg->kafka.v[i].key) &&
                     !strcmp(l.kafka.v[i].value, cfg->kafka.v[i].value);
    if (!kafka_same)
        log_warn("librdkafka properties changed but are not reloadable: restart to apply them");
    free_strings(cfg, tmp);
    free(tmp);
    layer_cleanup(&l, cfg);
    return changed;
}

/* ---- output ------------------------------------------------------------------ */

static const char *type_name(cfg_type_t t)
{
    switch (t) {
    case CFG_T_STR: return "STR";
    case CFG_T_INT: return "INT";
    case CFG_T_DBL: return "NUM";
    case CFG_T_BOOL: return "BOOL";
    }
    return "?";
}

void cfg_print_help(const cfg_t *cfg, FILE *out)
{
    /* services are mlops-<name>; a name with a space is a CLI command, used as is */
    fprintf(out, "Usage: %s%s [OPTIONS]%s%s\n\n", strchr(cfg->service, ' ') ? "" : "mlops-",
            cfg->service, cfg->usage ? " " : "", cfg->usage ? cfg->usage : "");
    fprintf(out,
            "Every setting is read, lowest precedence first, from its default, the config\n"
            "file (key = value), the environment (MLOPS_<KEY>) and the command line.\n\n"
            "General options:\n"
            "  -c, --config FILE      configuration file\n"
            "  -X PROP=VALUE          librdkafka property (file: kafka.PROP = VALUE,\n"
            "                         env: MLOPS_KAFKA_PROP_<PROP> with dots as underscores;\n"
            "                         secret ones also PROP_file=FILE, e.g. sasl.password_file)\n"
            "      --print-config     print the effective configuration (secrets hidden), exit\n"
            "  -h, --help             this help\n"
            "  -V, --version          version\n\n"
            "Settings:\n");
    for (size_t i = 0; i < cfg->nitems; i++) {
        const cfg_item_t *it = &cfg->items[i];
        char flag[160];
        str_copy(flag, it->key, sizeof(flag));
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        char up[128];
        upper_key(it->key, up, sizeof(up));
        fprintf(out, "  --%s %s\n      %s", flag, type_name(it->type), it->help);
        if (it->def && *it->def)
            fprintf(out, " [default: %s]", (it->flags & CFG_SECRET) ? "***" : it->def);
        if (it->min < it->max)
            fprintf(out, " [range: %g..%g]", it->min, it->max);
        fprintf(out, "\n      env MLOPS_%s", up);
        if (it->flags & CFG_SECRET)
            fprintf(out, ", or a file: MLOPS_%s_FILE / --%s-file", up, flag);
        if (it->flags & CFG_RELOAD)
            fprintf(out, "; reloadable (SIGHUP)");
        if (it->flags & CFG_REQUIRED)
            fprintf(out, "; required");
        fputc('\n', out);
    }
}

void cfg_print(const cfg_t *cfg, FILE *out)
{
    fprintf(out, "# mlops-%s effective configuration (secrets hidden)\n", cfg->service);
    for (size_t i = 0; i < cfg->nitems; i++) {
        const cfg_item_t *it = &cfg->items[i];
        const void *field = (const char *)cfg->target + it->offset;
        fprintf(out, "%s = ", it->key);
        switch (it->type) {
        case CFG_T_STR: {
            const char *s = *(char *const *)field;
            if (!s) {
                fputs("\"\"", out);
            } else if (it->flags & CFG_SECRET) {
                fputs("\"***\"", out);
            } else {
                char red[2048];
                log_redact(s, red, sizeof(red));
                fprintf(out, "\"%s\"", red);
            }
            break;
        }
        case CFG_T_INT: fprintf(out, "%lld", (long long)*(const int64_t *)field); break;
        case CFG_T_DBL: fprintf(out, "%g", *(const double *)field); break;
        case CFG_T_BOOL: fputs(*(const bool *)field ? "true" : "false", out); break;
        }
        bool unset = it->type == CFG_T_STR && !*(char *const *)field;
        fprintf(out, "  # %s%s\n", cfg->src[i] ? cfg->src[i] : "default",
                unset && (it->flags & CFG_REQUIRED) ? "; required, not set" : "");
    }
    for (size_t i = 0; i < cfg->kafka.n; i++) {
        const char *k = cfg->kafka.v[i].key;
        bool secret = secret_prop(k);
        fprintf(out, "kafka.%s = \"%s\"  # %s\n", k, secret ? "***" : cfg->kafka.v[i].value,
                cfg->kafka.v[i].src);
    }
}

const cfg_kv_t *cfg_kafka_props(const cfg_t *cfg, size_t *np)
{
    *np = cfg->kafka.n;
    return cfg->kafka_view;
}

char **cfg_positional(const cfg_t *cfg, int *np)
{
    *np = cfg->npos;
    return cfg->pos;
}

const char *cfg_source(const cfg_t *cfg, const char *key)
{
    size_t idx;
    if (!find_item(cfg, key, &idx))
        return NULL;
    return cfg->src[idx] ? cfg->src[idx] : "default";
}

const char *cfg_file(const cfg_t *cfg) { return cfg->file; }
