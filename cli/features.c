/*
 * mlopsctl features: the offline ingest path. Runs the spec's cleaning and
 * feature code (the same as mlops-ingest) over a CSV or JSONL file in event
 * time order, with per-entity rolling aggregates point in time, and writes
 * features/1 lines and dlq/1 lines. Training data built this way matches
 * what the stream would have produced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "commands.h"
#include "hmap.h"
#include "input.h"
#include "lifecycle.h"
#include "records.h"
#include "rolling.h"
#include "spec.h"

typedef struct features_conf {
    char *spec;
    char *csv;
    char *jsonl;
    char *out;
    char *dlq;
    int64_t max_event_bytes;
} features_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(features_conf_t, spec, CFG_T_STR, NULL, CFG_REQUIRED, "feature spec (JSON)"),
    CFG_ITEM(features_conf_t, csv, CFG_T_STR, NULL, 0, "input CSV with a header row"),
    CFG_ITEM(features_conf_t, jsonl, CFG_T_STR, NULL, 0, "input JSONL, one event per line"),
    CFG_ITEM(features_conf_t, out, CFG_T_STR, "-", 0, "features/1 lines ('-' = stdout)"),
    CFG_ITEM(features_conf_t, dlq, CFG_T_STR, NULL, 0, "dlq/1 lines for refused rows (optional)"),
    CFG_ITEM_RANGE(features_conf_t, max_event_bytes, CFG_T_INT, "1048576", 0,
                   "largest event accepted", 64, 1 << 26),
};

/* A cleaned row kept until the rolling pass: values with strings rebased
 * into its own arena. */
typedef struct kept {
    int64_t t;
    size_t record;
    spec_value_t *vals;
    char *arena;
    const char *event_id, *entity;
} kept_t;

static void keep_row(kept_t *k, const spec_row_t *row, size_t ncol, size_t record)
{
    k->t = row->event_time_ms;
    k->record = record;
    k->arena = xmalloc(row->arena.len + 1);
    memcpy(k->arena, row->arena.data, row->arena.len + 1);
    k->vals = xmalloc(ncol * sizeof(spec_value_t));
    memcpy(k->vals, row->values, ncol * sizeof(spec_value_t));
    for (size_t i = 0; i < ncol; i++)
        if (k->vals[i].kind == SPEC_V_STR)
            k->vals[i].str = k->arena + (k->vals[i].str - row->arena.data);
    k->event_id = k->arena + (row->event_id - row->arena.data);
    k->entity = k->arena + (row->entity - row->arena.data);
}

static int by_time(const void *a, const void *b)
{
    const kept_t *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->record < y->record ? -1 : x->record > y->record;
}

typedef struct tally {
    size_t n[16];
    const char *name[16];
    size_t total;
} tally_t;

static void count_reason(tally_t *t, const char *reason)
{
    t->total++;
    for (size_t i = 0; i < 16; i++) {
        if (!t->name[i]) {
            t->name[i] = reason;
            t->n[i] = 1;
            return;
        }
        if (!strcmp(t->name[i], reason)) {
            t->n[i]++;
            return;
        }
    }
}

static void rolling_free(void *p) { rolling_destroy(p); }

int cmd_features(int argc, char **argv)
{
    features_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[1024];
    spec_t *spec = NULL;
    input_t *in = NULL;
    FILE *out = NULL, *dlq = NULL;
    kept_t *rows = NULL;
    size_t nrows = 0, caprows = 0;
    hmap_t *seen = hmap_new(NULL), *states = hmap_new(rolling_free);
    strbuf_t sb;
    strbuf_init(&sb);
    spec_row_t row = {0};
    tally_t refused = {0};
    cfg_t *cfg = cfg_new("mlopsctl features", "--spec SPEC (--csv FILE | --jsonl FILE)", items,
                         MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_result_t r = cfg_init(cfg, argc, argv, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "mlopsctl features: %s\n", errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    spec = spec_load(conf.spec, errstr, sizeof(errstr));
    if (!spec) {
        fprintf(stderr, "mlopsctl features: %s\n", errstr);
        goto done;
    }
    in = input_open(conf.csv, conf.jsonl, (size_t)conf.max_event_bytes, errstr, sizeof(errstr));
    if (!in) {
        fprintf(stderr, "mlopsctl features: %s\n", errstr);
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    out = strcmp(conf.out, "-") ? fopen(conf.out, "w") : stdout;
    if (!out) {
        fprintf(stderr, "mlopsctl features: %s: cannot write\n", conf.out);
        goto done;
    }
    if (conf.dlq && !(dlq = fopen(conf.dlq, "w"))) {
        fprintf(stderr, "mlopsctl features: %s: cannot write\n", conf.dlq);
        goto done;
    }
    spec_row_init(&row, spec);

    /* pass 1: clean every row, refuse what the stream would refuse */
    for (;;) {
        json_t *obj;
        err_t *bad;
        const char *raw;
        size_t rawlen, record;
        int rc = input_next(in, &obj, &bad, &raw, &rawlen, &record, errstr, sizeof(errstr));
        if (rc < 0) {
            fprintf(stderr, "mlopsctl features: %s\n", errstr);
            goto done;
        }
        if (rc == 0)
            break;
        rec_source_t src = {.file = input_path(in), .record = (int64_t)record};
        const char *reason = NULL, *field = "", *detail = "";
        spec_error_t se;
        if (!obj) {
            reason = mjson_code_name((mjson_code_t)bad->code);
            detail = bad->msg;
        } else if (spec_clean(spec, obj, &row, &se)) {
            reason = spec_reason_name(&se);
            field = se.field;
            detail = se.detail;
        } else if (hmap_get(seen, row.event_id)) {
            reason = "duplicate_event";
            field = spec->event_id;
            detail = "event id seen before in this file";
        }
        if (reason) {
            count_reason(&refused, reason);
            if (dlq) {
                strbuf_reset(&sb);
                rec_dlq(reason, field, detail, spec->name, &src, raw, rawlen, wall_us(), &sb);
                fprintf(dlq, "%s\n", sb.data);
            }
        } else {
            hmap_put(seen, row.event_id, (void *)1);
            if (nrows == caprows) {
                caprows = caprows ? caprows * 2 : 1024;
                rows = xrealloc(rows, caprows * sizeof(kept_t));
            }
            keep_row(&rows[nrows++], &row, spec->ncolumns, record);
        }
        err_destroy(bad);
        json_decref(obj);
    }

    /* pass 2: event-time order, rolling aggregates per entity, write */
    qsort(rows, nrows, sizeof(kept_t), by_time);
    size_t written = 0;
    for (size_t i = 0; i < nrows; i++) {
        kept_t *k = &rows[i];
        rolling_state_t *st = hmap_get(states, k->entity);
        if (!st) {
            st = rolling_new(spec);
            hmap_put(states, k->entity, st);
        }
        spec_row_t view = row; /* reuse the column array of the work row */
        memcpy(view.values, k->vals, spec->ncolumns * sizeof(spec_value_t));
        view.event_id = k->event_id;
        view.entity = k->entity;
        view.event_time_ms = k->t;
        rolling_apply(spec, st, &view, 0, -1, (int64_t)k->record);
        rec_source_t src = {.file = input_path(in), .record = (int64_t)k->record};
        strbuf_reset(&sb);
        if (rec_features(spec, &view, &src, wall_us(), &sb)) {
            count_reason(&refused, "non_finite");
            continue;
        }
        fprintf(out, "%s\n", sb.data);
        written++;
    }
    fprintf(stderr, "mlopsctl features: %zu rows -> %s; %zu refused", written,
            strcmp(conf.out, "-") ? conf.out : "stdout", refused.total);
    for (size_t i = 0; i < 16 && refused.name[i]; i++)
        fprintf(stderr, "%s%s %zu", i ? ", " : " (", refused.name[i], refused.n[i]);
    fprintf(stderr, "%s%s%s\n", refused.total ? ")" : "", dlq ? " -> " : "", dlq ? conf.dlq : "");
    code = MLOPS_EXIT_OK;
done:
    for (size_t i = 0; i < nrows; i++) {
        free(rows[i].vals);
        free(rows[i].arena);
    }
    free(rows);
    if (out && out != stdout && fclose(out)) {
        fprintf(stderr, "mlopsctl features: %s: write failed\n", conf.out);
        code = MLOPS_EXIT_FAILURE;
    }
    if (dlq)
        fclose(dlq);
    if (spec)
        spec_row_cleanup(&row);
    strbuf_cleanup(&sb);
    hmap_destroy(seen);
    hmap_destroy(states);
    input_close(in);
    spec_destroy(spec);
    cfg_destroy(cfg);
    return code;
}
