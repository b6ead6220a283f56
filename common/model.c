/* model/1 artifacts: load, validate, encode, predict, write (see model.h). */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL_MAX_BYTES ((size_t)1 << 30)

struct model {
    json_t *doc;
    model_algo_t algo;
    spec_t *spec;
    model_input_t *inputs;
    size_t ninputs;
    size_t nslots;
    double threshold;
    /* logreg */
    double intercept;
    double *coef;
    /* gbdt */
    double base_margin;
    model_tree_t *trees;
    size_t ntrees;
};

const char *model_algo_name(model_algo_t a) { return a == MODEL_ALGO_GBDT ? "gbdt" : "logreg"; }

/* ---- validation helpers: every error names the JSON path ---- */

static int fail(char *errstr, size_t size, const char *fmt, ...) MLOPS_PRINTF(3, 4);
static int fail(char *errstr, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
    return -1;
}

static const json_t *need(const json_t *obj, const char *path, const char *key, json_type type,
                          char *errstr, size_t size)
{
    static const char *names[] = {"an object", "an array",  "a string",  "an integer",
                                  "a number",  "a boolean", "a boolean", "null"};
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        fail(errstr, size, "%s%s%s: missing", path, *path ? "." : "", key);
        return NULL;
    }
    bool ok = type == JSON_REAL   ? json_is_number(v)
              : type == JSON_TRUE ? json_is_boolean(v)
                                  : json_typeof(v) == type;
    if (!ok) {
        fail(errstr, size, "%s%s%s: must be %s", path, *path ? "." : "", key, names[type]);
        return NULL;
    }
    return v;
}

static int need_num(const json_t *obj, const char *path, const char *key, double *out, char *errstr,
                    size_t size)
{
    const json_t *v = need(obj, path, key, JSON_REAL, errstr, size);
    if (!v)
        return -1;
    *out = json_number_value(v);
    return 0;
}

/* ---- inputs ---- */

int model_input_cat_index(const model_input_t *in, const char *s)
{
    for (size_t i = 0; i < in->ncats; i++)
        if (!strcmp(in->cats[i], s))
            return (int)i;
    return -1;
}

static int parse_inputs(model_t *m, char *errstr, size_t size)
{
    const json_t *arr = need(m->doc, "", "inputs", JSON_ARRAY, errstr, size);
    if (!arr)
        return -1;
    m->ninputs = json_array_size(arr);
    if (!m->ninputs)
        return fail(errstr, size, "inputs: must not be empty");
    m->inputs = xcalloc(m->ninputs, sizeof(model_input_t));
    size_t slot = 0;
    for (size_t i = 0; i < m->ninputs; i++) {
        model_input_t *in = &m->inputs[i];
        in->cat_fill = -1;
        in->scale = 1;
        char path[64];
        snprintf(path, sizeof(path), "inputs[%zu]", i);
        const json_t *ji = json_array_get(arr, i), *v;
        if (!json_is_object(ji))
            return fail(errstr, size, "%s: must be an object", path);
        if (!(v = need(ji, path, "column", JSON_STRING, errstr, size)))
            return -1;
        in->column = xstrdup(json_string_value(v));
        in->col = spec_column_index(m->spec, in->column);
        if (in->col < 0)
            return fail(errstr, size, "%s.column: '%s' is not a column of the embedded spec", path,
                        in->column);
        if (!(v = need(ji, path, "kind", JSON_STRING, errstr, size)))
            return -1;
        const char *kind = json_string_value(v);
        if (!strcmp(kind, "categorical"))
            in->categorical = true;
        else if (strcmp(kind, "numeric"))
            return fail(errstr, size, "%s.kind: '%s' is not one of numeric, categorical", path,
                        kind);
        if (in->categorical) {
            const json_t *cats = need(ji, path, "categories", JSON_ARRAY, errstr, size);
            if (!cats)
                return -1;
            in->ncats = json_array_size(cats);
            if (in->ncats > MODEL_MAX_CATEGORIES)
                return fail(errstr, size, "%s.categories: more than %d", path,
                            MODEL_MAX_CATEGORIES);
            in->cats = xcalloc(in->ncats ? in->ncats : 1, sizeof(char *));
            for (size_t k = 0; k < in->ncats; k++) {
                const json_t *c = json_array_get(cats, k);
                if (!json_is_string(c))
                    return fail(errstr, size, "%s.categories[%zu]: must be a string", path, k);
                in->cats[k] = xstrdup(json_string_value(c));
            }
            v = json_object_get(ji, "fill_category");
            if (v && !json_is_null(v)) {
                if (!json_is_string(v))
                    return fail(errstr, size, "%s.fill_category: must be a string or null", path);
                in->cat_fill = model_input_cat_index(in, json_string_value(v));
                if (in->cat_fill < 0)
                    return fail(errstr, size, "%s.fill_category: '%s' is not in categories", path,
                                json_string_value(v));
            }
            in->fill = (double)NAN;
        } else {
            v = json_object_get(ji, "fill");
            if (!v || json_is_null(v))
                in->fill = (double)NAN;
            else if (json_is_number(v))
                in->fill = json_number_value(v);
            else
                return fail(errstr, size, "%s.fill: must be a number or null", path);
            if (m->algo == MODEL_ALGO_LOGREG) {
                if (need_num(ji, path, "mean", &in->mean, errstr, size) ||
                    need_num(ji, path, "scale", &in->scale, errstr, size))
                    return -1;
                if (!(in->scale > 0))
                    return fail(errstr, size, "%s.scale: must be > 0", path);
                if (isnan(in->fill))
                    return fail(errstr, size, "%s.fill: logreg needs a number", path);
            }
        }
        in->slot = slot;
        in->nslots = (m->algo == MODEL_ALGO_LOGREG && in->categorical) ? in->ncats : 1;
        slot += in->nslots;
    }
    m->nslots = slot;
    const json_t *names = need(m->doc, "", "slots", JSON_ARRAY, errstr, size);
    if (!names)
        return -1;
    if (json_array_size(names) != m->nslots)
        return fail(errstr, size, "slots: %zu names for %zu input slots", json_array_size(names),
                    m->nslots);
    for (size_t i = 0; i < m->nslots; i++)
        if (!json_is_string(json_array_get(names, i)))
            return fail(errstr, size, "slots[%zu]: expected a string (the slot's name)", i);
    return 0;
}

/* ---- algorithms ---- */

static int parse_num_array(const json_t *arr, const char *path, size_t n, double *out, char *errstr,
                           size_t size)
{
    if (!json_is_array(arr))
        return fail(errstr, size, "%s: must be an array", path);
    if (json_array_size(arr) != n)
        return fail(errstr, size, "%s: %zu values, expected %zu", path, json_array_size(arr), n);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_number(v))
            return fail(errstr, size, "%s[%zu]: must be a number", path, i);
        out[i] = json_number_value(v);
    }
    return 0;
}

static int parse_int_array(const json_t *arr, const char *path, size_t n, int32_t *out, int64_t lo,
                           int64_t hi, char *errstr, size_t size)
{
    if (!json_is_array(arr))
        return fail(errstr, size, "%s: must be an array", path);
    if (json_array_size(arr) != n)
        return fail(errstr, size, "%s: %zu values, expected %zu", path, json_array_size(arr), n);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v))
            return fail(errstr, size, "%s[%zu]: must be an integer", path, i);
        json_int_t x = json_integer_value(v);
        if (x < lo || x > hi)
            return fail(errstr, size, "%s[%zu]: %lld out of range [%lld, %lld]", path, i,
                        (long long)x, (long long)lo, (long long)hi);
        out[i] = (int32_t)x;
    }
    return 0;
}

static int parse_logreg(model_t *m, char *errstr, size_t size)
{
    const json_t *lr = need(m->doc, "", "logreg", JSON_OBJECT, errstr, size);
    if (!lr || need_num(lr, "logreg", "intercept", &m->intercept, errstr, size))
        return -1;
    m->coef = xcalloc(m->nslots, sizeof(double));
    return parse_num_array(json_object_get(lr, "coef"), "logreg.coef", m->nslots, m->coef, errstr,
                           size);
}

static int parse_tree(model_t *m, const json_t *jt, size_t ti, model_tree_t *t, char *errstr,
                      size_t size)
{
    char path[96];
    snprintf(path, sizeof(path), "gbdt.trees[%zu]", ti);
    if (!json_is_object(jt))
        return fail(errstr, size, "%s: must be an object", path);
    const json_t *feat = need(jt, path, "feature", JSON_ARRAY, errstr, size);
    if (!feat)
        return -1;
    size_t n = t->nnodes = json_array_size(feat);
    if (!n)
        return fail(errstr, size, "%s.feature: a tree needs at least one node", path);
    t->feature = xcalloc(n, sizeof(int32_t));
    t->threshold = xcalloc(n, sizeof(double));
    t->left = xcalloc(n, sizeof(int32_t));
    t->right = xcalloc(n, sizeof(int32_t));
    t->default_left = xcalloc(n, 1);
    t->value = xcalloc(n, sizeof(double));
    t->cat_off = xcalloc(n, sizeof(int32_t));
    t->cat_len = xcalloc(n, sizeof(int32_t));
    int32_t *dl = xcalloc(n, sizeof(int32_t));
    char p[160];
    int rc = -1;
#define SUB(k) (snprintf(p, sizeof(p), "%s.%s", path, k), p)
    if (parse_int_array(feat, SUB("feature"), n, t->feature, -1, (int64_t)m->nslots - 1, errstr,
                        size) ||
        parse_num_array(json_object_get(jt, "threshold"), SUB("threshold"), n, t->threshold, errstr,
                        size) ||
        parse_int_array(json_object_get(jt, "left"), SUB("left"), n, t->left, 0, (int64_t)n - 1,
                        errstr, size) ||
        parse_int_array(json_object_get(jt, "right"), SUB("right"), n, t->right, 0, (int64_t)n - 1,
                        errstr, size) ||
        parse_int_array(json_object_get(jt, "default_left"), SUB("default_left"), n, dl, 0, 1,
                        errstr, size) ||
        parse_num_array(json_object_get(jt, "value"), SUB("value"), n, t->value, errstr, size))
        goto done;
    const json_t *cats = need(jt, path, "categories", JSON_ARRAY, errstr, size);
    if (!cats)
        goto done;
    if (json_array_size(cats) != n) {
        fail(errstr, size, "%s.categories: %zu entries, expected %zu", path, json_array_size(cats),
             n);
        goto done;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total +=
            json_is_array(json_array_get(cats, i)) ? json_array_size(json_array_get(cats, i)) : 0;
    t->cats = xcalloc(total ? total : 1, sizeof(int32_t));
    t->ncats_total = total;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        t->default_left[i] = (uint8_t)dl[i];
        const json_t *c = json_array_get(cats, i);
        snprintf(p, sizeof(p), "%s.categories[%zu]", path, i);
        if (!json_is_array(c)) {
            fail(errstr, size, "%s: must be an array", p);
            goto done;
        }
        size_t k = json_array_size(c);
        if (parse_int_array(c, p, k, t->cats + off, 0, MODEL_MAX_CATEGORIES, errstr, size))
            goto done;
        t->cat_off[i] = (int32_t)off;
        t->cat_len[i] = (int32_t)k;
        off += k;
        if (t->feature[i] >= 0) {
            /* children must come after their parent: no cycles, every walk ends */
            if (t->left[i] <= (int32_t)i || t->right[i] <= (int32_t)i) {
                fail(errstr, size, "%s.left[%zu]/right[%zu]: children must follow their node", path,
                     i, i);
                goto done;
            }
            const model_input_t *in = NULL;
            for (size_t q = 0; q < m->ninputs; q++)
                if (m->inputs[q].slot == (size_t)t->feature[i])
                    in = &m->inputs[q];
            if (k && (!in || !in->categorical)) {
                fail(errstr, size, "%s: a categorical split on a numeric input", p);
                goto done;
            }
            if (!k && in && in->categorical) {
                fail(errstr, size, "%s: a categorical input needs a category split", p);
                goto done;
            }
        }
    }
    rc = 0;
done:
#undef SUB
    free(dl);
    return rc;
}

static int parse_gbdt(model_t *m, char *errstr, size_t size)
{
    const json_t *g = need(m->doc, "", "gbdt", JSON_OBJECT, errstr, size);
    if (!g || need_num(g, "gbdt", "base_margin", &m->base_margin, errstr, size))
        return -1;
    const json_t *trees = need(g, "gbdt", "trees", JSON_ARRAY, errstr, size);
    if (!trees)
        return -1;
    m->ntrees = json_array_size(trees);
    m->trees = xcalloc(m->ntrees ? m->ntrees : 1, sizeof(model_tree_t));
    for (size_t i = 0; i < m->ntrees; i++)
        if (parse_tree(m, json_array_get(trees, i), i, &m->trees[i], errstr, size))
            return -1;
    return 0;
}

model_t *model_from_json(json_t *doc, char *errstr, size_t size)
{
    model_t *m = xcalloc(1, sizeof(*m));
    m->doc = json_incref(doc);
    char *spec_text = NULL;
    const json_t *v;
    if (!json_is_object(doc)) {
        fail(errstr, size, "the document must be a JSON object");
        goto err;
    }
    if (!(v = need(doc, "", "schema", JSON_STRING, errstr, size)))
        goto err;
    if (strcmp(json_string_value(v), MODEL_SCHEMA)) {
        fail(errstr, size, "schema: '%s', expected '%s'", json_string_value(v), MODEL_SCHEMA);
        goto err;
    }
    if (!need(doc, "", "name", JSON_STRING, errstr, size))
        goto err;
    if (!(v = need(doc, "", "algo", JSON_STRING, errstr, size)))
        goto err;
    if (!strcmp(json_string_value(v), "gbdt"))
        m->algo = MODEL_ALGO_GBDT;
    else if (!strcmp(json_string_value(v), "logreg"))
        m->algo = MODEL_ALGO_LOGREG;
    else {
        fail(errstr, size, "algo: '%s' is not one of logreg, gbdt", json_string_value(v));
        goto err;
    }
    const json_t *js = need(doc, "", "spec", JSON_OBJECT, errstr, size);
    if (!js)
        goto err;
    spec_text = json_dumps(js, JSON_COMPACT | JSON_REAL_PRECISION(17));
    char serr[512];
    m->spec = spec_parse(spec_text, strlen(spec_text), serr, sizeof(serr));
    if (!m->spec) {
        fail(errstr, size, "spec: %s", serr);
        goto err;
    }
    if (!(v = need(doc, "", "spec_hash", JSON_STRING, errstr, size)))
        goto err;
    if (strcmp(json_string_value(v), m->spec->hash)) {
        fail(errstr, size, "spec_hash: '%s' is not the hash of the embedded spec (%s)",
             json_string_value(v), m->spec->hash);
        goto err;
    }
    if (need_num(doc, "", "threshold", &m->threshold, errstr, size))
        goto err;
    if (!(m->threshold >= 0 && m->threshold <= 1)) {
        fail(errstr, size, "threshold: must be in [0, 1]");
        goto err;
    }
    if (!need(doc, "", "metrics", JSON_OBJECT, errstr, size) ||
        !need(doc, "", "profile", JSON_OBJECT, errstr, size) ||
        !need(doc, "", "lineage", JSON_OBJECT, errstr, size) ||
        !need(doc, "", "label", JSON_OBJECT, errstr, size))
        goto err;
    if (parse_inputs(m, errstr, size))
        goto err;
    if (m->algo == MODEL_ALGO_LOGREG ? parse_logreg(m, errstr, size) : parse_gbdt(m, errstr, size))
        goto err;
    free(spec_text);
    return m;
err:
    free(spec_text);
    model_destroy(m);
    return NULL;
}

model_t *model_parse(const char *json, size_t len, char *errstr, size_t size)
{
    err_t *e = NULL;
    json_t *doc = mjson_parse_object(json, len, MODEL_MAX_BYTES, &e);
    if (!doc) {
        fail(errstr, size, "%s", e ? e->msg : "bad JSON");
        err_destroy(e);
        return NULL;
    }
    model_t *m = model_from_json(doc, errstr, size);
    json_decref(doc);
    return m;
}

model_t *model_load(const char *path, char *errstr, size_t size)
{
    size_t len;
    char buf[512];
    char *text = file_read_all(path, MODEL_MAX_BYTES, &len, errstr, size);
    if (!text)
        return NULL;
    model_t *m = model_parse(text, len, buf, sizeof(buf));
    free(text);
    if (!m)
        fail(errstr, size, "%s: %s", path, buf);
    return m;
}

void model_tree_cleanup(model_tree_t *t)
{
    free(t->feature);
    free(t->threshold);
    free(t->left);
    free(t->right);
    free(t->default_left);
    free(t->value);
    free(t->cat_off);
    free(t->cat_len);
    free(t->cats);
    memset(t, 0, sizeof(*t));
}

void model_destroy(model_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->ninputs; i++) {
        free(m->inputs[i].column);
        for (size_t k = 0; k < m->inputs[i].ncats; k++)
            free(m->inputs[i].cats[k]);
        free(m->inputs[i].cats);
    }
    free(m->inputs);
    free(m->coef);
    for (size_t i = 0; i < m->ntrees; i++)
        model_tree_cleanup(&m->trees[i]);
    free(m->trees);
    spec_destroy(m->spec);
    json_decref(m->doc);
    free(m);
}

model_algo_t model_algo(const model_t *m) { return m->algo; }
const spec_t *model_spec(const model_t *m) { return m->spec; }
const json_t *model_doc(const model_t *m) { return m->doc; }
size_t model_nslots(const model_t *m) { return m->nslots; }
double model_threshold(const model_t *m) { return m->threshold; }
const model_input_t *model_inputs(const model_t *m, size_t *n)
{
    *n = m->ninputs;
    return m->inputs;
}

/* ---- scoring: the one path every scorer uses ---- */

size_t model_encode(const model_t *m, const spec_value_t *values, double *x)
{
    size_t missing = 0;
    bool lr = m->algo == MODEL_ALGO_LOGREG;
    for (size_t i = 0; i < m->ninputs; i++) {
        const model_input_t *in = &m->inputs[i];
        const spec_value_t *v = &values[in->col];
        if (in->categorical) {
            int idx = -1;
            if (v->kind == SPEC_V_STR)
                idx = model_input_cat_index(in, v->str);
            if (idx < 0) {
                missing++;
                if (v->kind == SPEC_V_MISSING)
                    idx = in->cat_fill;
            }
            if (lr) {
                for (size_t k = 0; k < in->nslots; k++)
                    x[in->slot + k] = 0;
                if (idx >= 0)
                    x[in->slot + (size_t)idx] = 1;
            } else {
                x[in->slot] = idx >= 0 ? (double)idx : (double)NAN;
            }
        } else {
            double d;
            if (v->kind == SPEC_V_NUM && isfinite(v->num)) {
                d = v->num;
            } else {
                missing++;
                d = in->fill;
            }
            x[in->slot] = lr ? (d - in->mean) / in->scale : d;
        }
    }
    return missing;
}

size_t model_encode_json(const model_t *m, const json_t *values, spec_value_t *scratch, double *x)
{
    for (size_t i = 0; i < m->ninputs; i++) {
        const model_input_t *in = &m->inputs[i];
        const json_t *v = json_is_object(values) ? json_object_get(values, in->column) : NULL;
        spec_value_t *sv = &scratch[in->col];
        *sv = (spec_value_t){.kind = SPEC_V_MISSING};
        if (json_is_number(v))
            *sv = (spec_value_t){.kind = SPEC_V_NUM, .num = json_number_value(v)};
        else if (json_is_boolean(v))
            *sv = (spec_value_t){.kind = SPEC_V_NUM, .num = json_is_true(v) ? 1 : 0};
        else if (json_is_string(v) && !in->categorical) {
            /* a number in quotes, as the scorer reads one (anything else is missing) */
            double d;
            if (parse_double(json_string_value(v), &d) == 0)
                *sv = (spec_value_t){.kind = SPEC_V_NUM, .num = d};
        } else if (json_is_string(v))
            *sv = (spec_value_t){.kind = SPEC_V_STR, .str = json_string_value(v)};
    }
    return model_encode(m, scratch, x);
}

double model_sigmoid(double margin) { return 1.0 / (1.0 + exp(-margin)); }

double model_tree_margin(const model_tree_t *t, const double *x)
{
    int32_t n = 0;
    while (t->feature[n] >= 0) {
        double v = x[t->feature[n]];
        bool left;
        if (isnan(v)) {
            left = t->default_left[n];
        } else if (t->cat_len[n] > 0) {
            left = false;
            /* a category index; anything else (no encoder gives it) goes right */
            int32_t c = v >= 0 && v < 65536 ? (int32_t)v : -1;
            const int32_t *cs = t->cats + t->cat_off[n];
            for (int32_t k = 0; k < t->cat_len[n]; k++)
                if (cs[k] == c) {
                    left = true;
                    break;
                }
        } else {
            left = v < t->threshold[n];
        }
        n = left ? t->left[n] : t->right[n];
    }
    return t->value[n];
}

double model_margin(const model_t *m, const double *x)
{
    if (m->algo == MODEL_ALGO_LOGREG) {
        double z = m->intercept;
        for (size_t i = 0; i < m->nslots; i++)
            z += m->coef[i] * x[i];
        return z;
    }
    double z = m->base_margin;
    for (size_t i = 0; i < m->ntrees; i++)
        z += model_tree_margin(&m->trees[i], x);
    return z;
}

double model_predict(const model_t *m, const double *x)
{
    return model_sigmoid(model_margin(m, x));
}

/* ---- writing ---- */

int model_write_file(const json_t *doc, const char *path, char *errstr, size_t size)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text)
        return fail(errstr, size, "%s: cannot serialise the model (a non-finite number?)", path);
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fail(errstr, size, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fail(errstr, size, "%s: write: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            goto done;
        }
        off += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1 || fsync(fd) || close(fd)) {
        fail(errstr, size, "%s: write: %s", tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path)) {
        fail(errstr, size, "%s: rename: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    free(tmp);
    free(text);
    return rc;
}

json_t *model_tree_to_json(const model_tree_t *t)
{
    json_t *feat = json_array(), *thr = json_array(), *l = json_array(), *r = json_array(),
           *dl = json_array(), *val = json_array(), *cats = json_array();
    for (size_t i = 0; i < t->nnodes; i++) {
        json_array_append_new(feat, json_integer(t->feature[i]));
        json_array_append_new(thr, json_real(t->threshold[i]));
        json_array_append_new(l, json_integer(t->left[i]));
        json_array_append_new(r, json_integer(t->right[i]));
        json_array_append_new(dl, json_integer(t->default_left[i]));
        json_array_append_new(val, json_real(t->value[i]));
        json_t *c = json_array();
        for (int32_t k = 0; k < t->cat_len[i]; k++)
            json_array_append_new(c, json_integer(t->cats[t->cat_off[i] + k]));
        json_array_append_new(cats, c);
    }
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "feature", feat, "threshold", thr,
                     "left", l, "right", r, "default_left", dl, "value", val, "categories", cats);
}

/* ---- sorting ---- */

static uint64_t dkey(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return (u >> 63) ? ~u : u ^ 0x8000000000000000ull;
}

void model_sort_doubles(double *v, size_t n)
{
    if (n < 256) {
        for (size_t i = 1; i < n; i++) { /* insertion sort */
            double x = v[i];
            size_t j = i;
            for (; j > 0 && v[j - 1] > x; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    uint64_t *a = xmalloc(n * sizeof(uint64_t)), *b = xmalloc(n * sizeof(uint64_t));
    for (size_t i = 0; i < n; i++)
        a[i] = dkey(v[i]);
    size_t *cnt = xmalloc(65536 * sizeof(size_t));
    for (int pass = 0; pass < 4; pass++) {
        int sh = pass * 16;
        memset(cnt, 0, 65536 * sizeof(size_t));
        for (size_t i = 0; i < n; i++)
            cnt[(a[i] >> sh) & 0xFFFF]++;
        if (cnt[(a[0] >> sh) & 0xFFFF] == n)
            continue; /* every key has the same digit */
        size_t sum = 0;
        for (size_t k = 0; k < 65536; k++) {
            size_t c = cnt[k];
            cnt[k] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            b[cnt[(a[i] >> sh) & 0xFFFF]++] = a[i];
        uint64_t *t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t u = (a[i] >> 63) ? a[i] ^ 0x8000000000000000ull : ~a[i];
        memcpy(&v[i], &u, sizeof(u));
    }
    free(cnt);
    free(a);
    free(b);
}

/* ---- metrics ---- */

typedef struct scored {
    double s;
    int y;
} scored_t;

static int by_score_desc(const void *a, const void *b)
{
    const scored_t *x = a, *y = b;
    return x->s > y->s ? -1 : x->s < y->s;
}

static scored_t *sorted_scores(const double *score, const int *y, size_t n)
{
    scored_t *v = xmalloc((n ? n : 1) * sizeof(scored_t));
    for (size_t i = 0; i < n; i++) {
        v[i].s = score[i];
        v[i].y = y[i];
    }
    qsort(v, n, sizeof(scored_t), by_score_desc);
    return v;
}

double model_auc(const double *score, const int *y, size_t n)
{
    scored_t *v = sorted_scores(score, y, n);
    /* walk groups of equal scores from the top: each positive beats the
     * negatives below it, and half of the negatives tied with it */
    double pairs = 0, npos = 0, nneg = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double gp = 0, gn = 0;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].y)
                gp++;
            else
                gn++;
            j++;
        }
        pairs += gn * npos + 0.5 * gn * gp;
        npos += gp;
        nneg += gn;
        i = j;
    }
    free(v);
    if (npos == 0 || nneg == 0)
        return (double)NAN;
    return pairs / (npos * nneg);
}

double model_best_f1_threshold(const double *score, const int *y, size_t n)
{
    scored_t *v = sorted_scores(score, y, n);
    size_t npos = 0;
    for (size_t i = 0; i < n; i++)
        npos += v[i].y != 0;
    double best = -1, thr = 0.5;
    size_t tp = 0, fp = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].y)
                tp++;
            else
                fp++;
            j++;
        }
        double f1 = tp ? 2.0 * (double)tp / (double)(2 * tp + fp + (npos - tp)) : 0;
        if (f1 > best) {
            best = f1;
            thr = v[i].s;
        }
        i = j;
    }
    free(v);
    return thr;
}

void model_metrics(const double *score, const int *y, size_t n, double t, model_metrics_t *out)
{
    memset(out, 0, sizeof(*out));
    double ll = 0, br = 0;
    for (size_t i = 0; i < n; i++) {
        double p = score[i];
        double pc = p < 1e-15 ? 1e-15 : p > 1 - 1e-15 ? 1 - 1e-15 : p;
        ll -= y[i] ? log(pc) : log(1 - pc);
        br += (p - y[i]) * (p - y[i]);
        bool pred = p >= t;
        if (y[i]) {
            out->npos++;
            if (pred)
                out->tp++;
            else
                out->fn++;
        } else if (pred) {
            out->fp++;
        } else {
            out->tn++;
        }
    }
    out->n = n;
    out->auc = model_auc(score, y, n);
    out->log_loss = n ? ll / (double)n : (double)NAN;
    out->brier = n ? br / (double)n : (double)NAN;
    out->accuracy = n ? (double)(out->tp + out->tn) / (double)n : (double)NAN;
    out->precision = out->tp + out->fp ? (double)out->tp / (double)(out->tp + out->fp) : 0;
    out->recall = out->tp + out->fn ? (double)out->tp / (double)(out->tp + out->fn) : 0;
    out->f1 = out->tp ? 2.0 * (double)out->tp / (double)(2 * out->tp + out->fp + out->fn) : 0;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *model_metrics_json(const model_metrics_t *mm)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:o}",
                     "auc", num_or_null(mm->auc), "log_loss", num_or_null(mm->log_loss), "accuracy",
                     num_or_null(mm->accuracy), "precision", num_or_null(mm->precision), "recall",
                     num_or_null(mm->recall), "f1", num_or_null(mm->f1), "brier",
                     num_or_null(mm->brier), "confusion", "tp", (json_int_t)mm->tp, "fp",
                     (json_int_t)mm->fp, "tn", (json_int_t)mm->tn, "fn", (json_int_t)mm->fn, "rows",
                     (json_int_t)mm->n, "positives", (json_int_t)mm->npos, "positive_rate",
                     num_or_null(mm->n ? (double)mm->npos / (double)mm->n : (double)NAN));
}
