/* A CSV cleaned by a feature spec, rolling aggregates point in time, or
 * features/1 rows as ingest wrote them (see dataset.h). */
#include "dataset.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csvfile.h"
#include "hmap.h"
#include "jflat.h"
#include "rolling.h"

static void trim_copy(const char *s, char *out, size_t size)
{
    while (isspace((unsigned char)*s))
        s++;
    str_copy(out, s, size);
    for (size_t l = strlen(out); l && isspace((unsigned char)out[l - 1]);)
        out[--l] = '\0';
}

typedef struct order {
    int64_t t;
    size_t i;
} order_t;

static int by_time(const void *a, const void *b)
{
    const order_t *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static void rolling_free(void *p) { rolling_destroy(p); }

/* Well-formed UTF-8 as jansson requires of a string: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF)
            k = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            k = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 3, cp = c & 0x07;
        else
            return false;
        for (size_t q = 1; q <= k; q++) {
            if (i + q >= n || (s[i + q] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + q] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

dataset_t *dataset_load_csv(const spec_t *spec, const char *path, const dataset_opts_t *opts,
                            char *errstr, size_t errstr_size)
{
    dataset_t *ds = xcalloc(1, sizeof(*ds));
    ds->spec = spec;
    ds->ncolumns = spec->ncolumns;
    size_t cap = 0, nheader = 0;
    char **header = NULL;
    size_t *header_len = NULL;
    jflat_field_t *flat = NULL;
    int label_col = -1;
    struct {
        char text[256];
        size_t first, n;
    } other[16];
    size_t nother = 0;
    csvf_t *csv = NULL;
    spec_row_t row;
    spec_row_init(&row, spec);
    hmap_t *states = NULL;
    order_t *ord = NULL;
    int64_t *times = NULL;
    char **ents = NULL;

    csv = csvf_open(path, errstr, errstr_size);
    if (!csv)
        goto err;
    char **f;
    size_t n;
    int rc = csvf_next(csv, &f, &n, errstr, errstr_size);
    if (rc < 0)
        goto err;
    if (rc == 0) {
        snprintf(errstr, errstr_size, "%s: empty file (no header row)", path);
        goto err;
    }
    nheader = n;
    header = xcalloc(n, sizeof(char *));
    header_len = xcalloc(n, sizeof(size_t));
    flat = xcalloc(n, sizeof(jflat_field_t));
    for (size_t i = 0; i < n; i++) {
        header[i] = xstrdup(f[i]);
        header_len[i] = strlen(f[i]);
        if (opts->label && !strcmp(f[i], opts->label))
            label_col = (int)i;
    }
    if (opts->label && label_col < 0 && opts->need_label) {
        snprintf(errstr, errstr_size, "%s:1: no label column '%s' in the header", path,
                 opts->label);
        goto err;
    }
    for (;;) {
        rc = csvf_next(csv, &f, &n, errstr, errstr_size);
        if (rc < 0)
            goto err;
        if (rc == 0)
            break;
        size_t rec = csvf_record(csv);
        if (n != nheader) {
            snprintf(errstr, errstr_size, "%s:%zu: the row has %zu field%s, the header has %zu",
                     path, rec, n, n == 1 ? "" : "s", nheader);
            goto err;
        }
        if (ds->nrows == cap) {
            cap = cap ? cap * 2 : 1024;
            ds->vals = xrealloc(ds->vals, cap * ds->ncolumns * sizeof(spec_value_t));
            ds->line = xrealloc(ds->line, cap * sizeof(size_t));
            ds->label = xrealloc(ds->label, cap * sizeof(int));
            ds->ok = xrealloc(ds->ok, cap * sizeof(bool));
            ds->why = xrealloc(ds->why, cap * sizeof(char *));
            ds->arenas = xrealloc(ds->arenas, cap * sizeof(char *));
            times = xrealloc(times, cap * sizeof(int64_t));
            ents = xrealloc(ents, cap * sizeof(char *));
        }
        size_t r = ds->nrows;
        ds->line[r] = rec;
        ds->label[r] = -1;
        ds->ok[r] = true;
        ds->why[r] = NULL;
        ds->arenas[r] = NULL;
        ents[r] = NULL;
        ds->nrows++;
        /* the label */
        if (label_col >= 0) {
            char lab[256];
            trim_copy(f[label_col], lab, sizeof(lab));
            if (!lab[0]) {
                if (opts->need_label) {
                    snprintf(errstr, errstr_size, "%s:%zu: column '%s': the label is missing", path,
                             rec, opts->label);
                    goto err;
                }
            } else if (!strcmp(lab, opts->positive)) {
                ds->label[r] = 1;
            } else {
                /* another class: tallied, checked after the last row */
                size_t k = 0;
                while (k < nother && strcmp(other[k].text, lab))
                    k++;
                if (k == nother && !opts->need_label) {
                    ds->label[r] = -1; /* predict: the label is ignored */
                } else if (k == nother) {
                    if (nother == MLOPS_ARRAY_LEN(other)) {
                        snprintf(errstr, errstr_size,
                                 "%s:%zu: column '%s': unknown label value '%.80s': more than %zu "
                                 "classes besides the positive class '%s'; a binary label has two "
                                 "values",
                                 path, rec, opts->label, lab, MLOPS_ARRAY_LEN(other),
                                 opts->positive);
                        goto err;
                    }
                    str_copy(other[k].text, lab, sizeof(other[k].text));
                    other[k].first = rec;
                    other[k].n = 0;
                    nother++;
                }
                if (k < nother) {
                    other[k].n++;
                    ds->label[r] = 0;
                }
            }
        }
        /* the event, as ingest would see it: every non-empty cell a string
         * (the flat form spec_clean_flat() reads; same results as the
         * jansson object mlopsctl features builds) */
        size_t nf = 0;
        bool utf8 = true;
        for (size_t i = 0; i < n; i++) {
            if ((int)i == label_col || !f[i][0])
                continue;
            size_t len = strlen(f[i]);
            if (!utf8_ok((const unsigned char *)f[i], len)) {
                utf8 = false;
                break;
            }
            flat[nf++] = (jflat_field_t){.key = header[i],
                                         .key_len = header_len[i],
                                         .type = JFLAT_STRING,
                                         .s = f[i],
                                         .s_len = len};
        }
        jflat_t event = {.fields = flat, .n = nf, .cap = nheader};
        spec_error_t se;
        char why[600];
        bool refused = false;
        if (!utf8) {
            snprintf(why, sizeof(why), "bad_json: the row holds bytes that are not valid UTF-8");
            refused = true;
        } else if (spec_clean_flat(spec, &event, &row, &se)) {
            snprintf(why, sizeof(why), "column '%s': %s (%s)", se.field, se.detail,
                     spec_reason_name(&se));
            refused = true;
        }
        spec_value_t *vals = ds->vals + r * ds->ncolumns;
        if (refused) {
            if (opts->strict) {
                snprintf(errstr, errstr_size, "%s:%zu: %s", path, rec, why);
                goto err;
            }
            ds->ok[r] = false;
            ds->why[r] = xstrdup(why);
            ds->nrefused++;
            for (size_t c = 0; c < ds->ncolumns; c++)
                vals[c] = (spec_value_t){.kind = SPEC_V_MISSING};
            times[r] = 0;
            continue;
        }
        /* keep the values, strings rebased into the row's own arena */
        char *arena = xmalloc(row.arena.len + 1);
        memcpy(arena, row.arena.data, row.arena.len + 1);
        memcpy(vals, row.values, ds->ncolumns * sizeof(spec_value_t));
        for (size_t c = 0; c < ds->ncolumns; c++)
            if (vals[c].kind == SPEC_V_STR)
                vals[c].str = arena + (vals[c].str - row.arena.data);
        ds->arenas[r] = arena;
        ents[r] = arena + (row.entity - row.arena.data);
        times[r] = row.event_time_ms;
    }
    csvf_close(csv);
    csv = NULL;
    if (nother > 1 && opts->need_label) {
        /* the rarest other class is the odd one out (ties: the later one) */
        size_t common = 0, odd = 0;
        for (size_t k = 1; k < nother; k++) {
            if (other[k].n > other[common].n)
                common = k;
        }
        odd = common == 0 ? 1 : 0;
        for (size_t k = 0; k < nother; k++)
            if (k != common && (other[k].n < other[odd].n ||
                                (other[k].n == other[odd].n && other[k].first > other[odd].first)))
                odd = k;
        snprintf(errstr, errstr_size,
                 "%s:%zu: column '%s': unknown label value '%.80s' (%zu row%s): neither the "
                 "positive class '%s' nor the other class '%.80s' (%zu rows); a binary label has "
                 "two values",
                 path, other[odd].first, opts->label, other[odd].text, other[odd].n,
                 other[odd].n == 1 ? "" : "s", opts->positive, other[common].text, other[common].n);
        goto err;
    }
    if (nother)
        ds->negative = xstrdup(other[0].text);

    /* rolling aggregates per entity in event-time order */
    if (spec->nrolling) {
        states = hmap_new(rolling_free);
        ord = xmalloc((ds->nrows ? ds->nrows : 1) * sizeof(order_t));
        size_t m = 0;
        for (size_t r = 0; r < ds->nrows; r++)
            if (ds->ok[r])
                ord[m++] = (order_t){times[r], r};
        qsort(ord, m, sizeof(order_t), by_time);
        for (size_t k = 0; k < m; k++) {
            size_t r = ord[k].i;
            rolling_state_t *st = hmap_get(states, ents[r]);
            if (!st) {
                st = rolling_new(spec);
                hmap_put(states, ents[r], st);
            }
            spec_row_t view = row;
            view.values = ds->vals + r * ds->ncolumns;
            view.entity = ents[r];
            view.event_time_ms = times[r];
            (void)rolling_apply(spec, st, &view, 0, -1, (int64_t)ds->line[r]);
        }
    }
    spec_row_cleanup(&row);
    for (size_t i = 0; i < nheader; i++)
        free(header[i]);
    free(header);
    free(header_len);
    free(flat);
    hmap_destroy(states);
    free(ord);
    free(times);
    free(ents);
    return ds;
err:
    csvf_close(csv);
    spec_row_cleanup(&row);
    for (size_t i = 0; i < nheader; i++)
        free(header[i]);
    free(header);
    free(header_len);
    free(flat);
    hmap_destroy(states);
    free(ord);
    free(times);
    free(ents);
    dataset_destroy(ds);
    return NULL;
}

void dataset_destroy(dataset_t *ds)
{
    if (!ds)
        return;
    for (size_t r = 0; r < ds->nrows; r++) {
        free(ds->arenas[r]);
        free(ds->why[r]);
    }
    free(ds->arenas);
    free(ds->why);
    free(ds->vals);
    free(ds->line);
    free(ds->label);
    free(ds->ok);
    free(ds->negative);
    free(ds);
}

static const char *json_kind(const json_t *v)
{
    return json_is_string(v)    ? "string"
           : json_is_number(v)  ? "number"
           : json_is_boolean(v) ? "boolean"
           : json_is_array(v)   ? "array"
                                : "object";
}

dataset_t *dataset_new(const spec_t *spec)
{
    dataset_t *ds = xcalloc(1, sizeof(*ds));
    ds->spec = spec;
    ds->ncolumns = spec->ncolumns;
    return ds;
}

int dataset_add_values(dataset_t *ds, const json_t *values, int label, size_t line, char *errstr,
                       size_t errstr_size)
{
    const spec_t *spec = ds->spec;
    if (!json_is_object(values)) {
        snprintf(errstr, errstr_size, "values is not an object");
        return -1;
    }
    if (ds->nrows == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 1024;
        ds->vals =
            xrealloc(ds->vals, cap * (ds->ncolumns ? ds->ncolumns : 1) * sizeof(spec_value_t));
        ds->line = xrealloc(ds->line, cap * sizeof(size_t));
        ds->label = xrealloc(ds->label, cap * sizeof(int));
        ds->ok = xrealloc(ds->ok, cap * sizeof(bool));
        ds->why = xrealloc(ds->why, cap * sizeof(char *));
        ds->arenas = xrealloc(ds->arenas, cap * sizeof(char *));
        ds->cap = cap;
    }
    size_t r = ds->nrows;
    spec_value_t *vals = ds->vals + r * ds->ncolumns;
    size_t need = 0;
    for (size_t c = 0; c < ds->ncolumns; c++) {
        const json_t *v = json_object_get(values, spec->columns[c]);
        bool cat = c < spec->nfields && spec->fields[c].type == SPEC_T_CATEGORICAL;
        if (!v || json_is_null(v)) {
            vals[c] = (spec_value_t){.kind = SPEC_V_MISSING};
        } else if (cat && json_is_string(v)) {
            vals[c] = (spec_value_t){.kind = SPEC_V_STR};
            need += json_string_length(v) + 1;
        } else if (!cat && (json_is_number(v) || json_is_boolean(v))) {
            double x = json_is_boolean(v) ? (json_is_true(v) ? 1.0 : 0.0) : json_number_value(v);
            if (!isfinite(x)) {
                snprintf(errstr, errstr_size, "column '%s': not a finite number", spec->columns[c]);
                return -1;
            }
            vals[c] = (spec_value_t){.kind = SPEC_V_NUM, .num = x};
        } else {
            snprintf(errstr, errstr_size, "column '%s': a %s value where the spec wants %s",
                     spec->columns[c], json_kind(v), cat ? "a string" : "a number");
            return -1;
        }
    }
    char *arena = need ? xmalloc(need) : NULL, *at = arena;
    for (size_t c = 0; c < ds->ncolumns; c++) {
        if (vals[c].kind != SPEC_V_STR)
            continue;
        const json_t *v = json_object_get(values, spec->columns[c]);
        size_t n = json_string_length(v);
        memcpy(at, json_string_value(v), n);
        at[n] = '\0';
        vals[c].str = at;
        at += n + 1;
    }
    ds->arenas[r] = arena;
    ds->line[r] = line;
    ds->label[r] = label;
    ds->ok[r] = true;
    ds->why[r] = NULL;
    ds->nrows++;
    return 0;
}

void dataset_keep(dataset_t *ds, const bool *keep)
{
    size_t w = 0;
    for (size_t r = 0; r < ds->nrows; r++) {
        if (!keep[r]) {
            free(ds->arenas[r]);
            free(ds->why[r]);
            if (!ds->ok[r])
                ds->nrefused--;
            continue;
        }
        if (w != r) {
            memcpy(ds->vals + w * ds->ncolumns, ds->vals + r * ds->ncolumns,
                   ds->ncolumns * sizeof(spec_value_t));
            ds->line[w] = ds->line[r];
            ds->label[w] = ds->label[r];
            ds->ok[w] = ds->ok[r];
            ds->why[w] = ds->why[r];
            ds->arenas[w] = ds->arenas[r];
        }
        w++;
    }
    ds->nrows = w;
}

int dataset_file_sha256(const char *path, char hex[65], char *errstr, size_t errstr_size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    unsigned char buf[65536], md[32];
    size_t k;
    while ((k = fread(buf, 1, sizeof(buf), fp)) > 0)
        EVP_DigestUpdate(ctx, buf, k);
    int bad = ferror(fp);
    fclose(fp);
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (bad) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        return -1;
    }
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}
