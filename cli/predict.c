/*
 * mlopsctl predict: score a CSV with a model/1 artifact. Every row is
 * cleaned by the model's embedded spec (the ingest code, rolling aggregates
 * in event-time order), encoded and scored by model.h — the code the scorer
 * runs. Output: a header `score`, then one probability per input row, in
 * input order. A label column in the file is ignored. With --features the
 * input is features/1 records (already cleaned), scored through
 * model_encode_json(), exactly as the scorer scores a record off the topic.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "commands.h"
#include "dataset.h"
#include "lifecycle.h"
#include "model.h"
#include "mjson.h"

typedef struct predict_conf {
    char *model;
    char *data;
    char *features;
    char *out;
    bool skip_refused;
} predict_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(predict_conf_t, model, CFG_T_STR, NULL, CFG_REQUIRED, "model/1 artifact (JSON)"),
    CFG_ITEM(predict_conf_t, data, CFG_T_STR, NULL, 0, "CSV to score (header row)"),
    CFG_ITEM(predict_conf_t, features, CFG_T_STR, NULL, 0,
             "or features/1 JSONL to score (mlopsctl features output, the scorer's input)"),
    CFG_ITEM(predict_conf_t, out, CFG_T_STR, "-", 0, "scores CSV ('-' = stdout)"),
    CFG_ITEM(predict_conf_t, skip_refused, CFG_T_BOOL, "false", 0,
             "write an empty score for a row the spec refuses instead of failing"),
};

/* --features: one features/1 record per line -> one score per line. */
static int predict_features(const model_t *m, const predict_conf_t *conf)
{
    int code = MLOPS_EXIT_FAILURE;
    FILE *in = strcmp(conf->features, "-") ? fopen(conf->features, "r") : stdin;
    bool to_stdout = !strcmp(conf->out, "-");
    char *tmp = to_stdout ? NULL : xasprintf("%s.tmp.%ld", conf->out, (long)getpid());
    FILE *out = NULL;
    char *line = NULL;
    size_t cap = 0, lineno = 0, scored = 0;
    const spec_t *spec = model_spec(m);
    spec_value_t *scratch = xcalloc(spec->ncolumns + 1, sizeof(spec_value_t));
    double *x = xmalloc((model_nslots(m) + 1) * sizeof(double));
    if (!in) {
        fprintf(stderr, "mlopsctl predict: %s: %s\n", conf->features, strerror(errno));
        goto done;
    }
    out = to_stdout ? stdout : fopen(tmp, "w");
    if (!out) {
        fprintf(stderr, "mlopsctl predict: %s: %s\n", tmp ? tmp : "stdout", strerror(errno));
        goto done;
    }
    fputs("score\n", out);
    ssize_t len;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        err_t *e = NULL;
        json_t *rec = mjson_parse_object(line, (size_t)len, 1 << 26, &e);
        const char *schema = rec ? json_string_value(json_object_get(rec, "schema")) : NULL;
        const json_t *vals = rec ? json_object_get(rec, "values") : NULL;
        if (!rec || !schema || strcmp(schema, "features/1") || !json_is_object(vals)) {
            fprintf(stderr, "mlopsctl predict: %s:%zu: %s\n", conf->features, lineno,
                    !rec ? e->msg : "not a features/1 record with a values object");
            err_destroy(e);
            json_decref(rec);
            goto done;
        }
        const char *sname =
            json_string_value(json_object_get(json_object_get(rec, "spec"), "name"));
        if (sname && strcmp(sname, spec->name)) {
            fprintf(stderr, "mlopsctl predict: %s:%zu: spec '%s', the model's is '%s'\n",
                    conf->features, lineno, sname, spec->name);
            json_decref(rec);
            goto done;
        }
        model_encode_json(m, vals, scratch, x);
        fprintf(out, "%.17g\n", model_predict(m, x));
        scored++;
        json_decref(rec);
    }
    if (to_stdout ? fflush(out) != 0 : fclose(out) != 0) {
        out = NULL;
        fprintf(stderr, "mlopsctl predict: %s: write failed\n", conf->out);
        goto done;
    }
    out = NULL;
    if (tmp && rename(tmp, conf->out)) {
        fprintf(stderr, "mlopsctl predict: %s: %s\n", conf->out, strerror(errno));
        goto done;
    }
    fprintf(stderr, "mlopsctl predict: %zu records scored -> %s\n", scored,
            to_stdout ? "stdout" : conf->out);
    code = MLOPS_EXIT_OK;
done:
    if (out && out != stdout)
        fclose(out);
    if (tmp && code != MLOPS_EXIT_OK)
        unlink(tmp);
    if (in && in != stdin)
        fclose(in);
    free(tmp);
    free(line);
    free(scratch);
    free(x);
    return code;
}

int cmd_predict(int argc, char **argv)
{
    predict_conf_t conf;
    int code = MLOPS_EXIT_FAILURE;
    char errstr[2048];
    model_t *m = NULL;
    dataset_t *ds = NULL;
    double *x = NULL;
    char *tmp = NULL;
    FILE *out = NULL;
    cfg_t *cfg =
        cfg_new("mlopsctl predict",
                "--model model.json (--data test.csv | --features f.jsonl) [--out scores.csv]",
                items, MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_result_t r = cfg_init(cfg, argc, argv, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "mlopsctl predict: %s\n", errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    if (!conf.data == !conf.features) {
        fprintf(stderr, "mlopsctl predict: give exactly one of --data and --features\n");
        code = MLOPS_EXIT_USAGE;
        goto done;
    }
    m = model_load(conf.model, errstr, sizeof(errstr));
    if (!m) {
        fprintf(stderr, "mlopsctl predict: %s\n", errstr);
        goto done;
    }
    if (conf.features) {
        code = predict_features(m, &conf);
        goto done;
    }
    const spec_t *spec = model_spec(m);
    const json_t *lab = json_object_get(model_doc(m), "label");
    dataset_opts_t opts = {
        .label = json_string_value(json_object_get(lab, "field")),
        .positive = json_string_value(json_object_get(lab, "positive")),
        .need_label = false,
        .strict = false,
    };
    ds = dataset_load_csv(spec, conf.data, &opts, errstr, sizeof(errstr));
    if (!ds) {
        fprintf(stderr, "mlopsctl predict: %s\n", errstr);
        goto done;
    }
    if (ds->nrefused && !conf.skip_refused) {
        size_t shown = 0;
        for (size_t i = 0; i < ds->nrows && shown < 10; i++)
            if (!ds->ok[i]) {
                fprintf(stderr, "mlopsctl predict: %s:%zu: %s\n", conf.data, ds->line[i],
                        ds->why[i]);
                shown++;
            }
        fprintf(stderr,
                "mlopsctl predict: %zu of %zu rows refused by spec '%s'; nothing written "
                "(--skip-refused writes empty scores for them)\n",
                ds->nrefused, ds->nrows, spec->name);
        goto done;
    }
    bool to_stdout = !strcmp(conf.out, "-");
    if (to_stdout) {
        out = stdout;
    } else {
        tmp = xasprintf("%s.tmp.%ld", conf.out, (long)getpid());
        out = fopen(tmp, "w");
        if (!out) {
            fprintf(stderr, "mlopsctl predict: %s: %s\n", tmp, strerror(errno));
            goto done;
        }
    }
    x = xmalloc((model_nslots(m) ? model_nslots(m) : 1) * sizeof(double));
    fputs("score\n", out);
    for (size_t i = 0; i < ds->nrows; i++) {
        if (!ds->ok[i]) {
            fputc('\n', out);
            continue;
        }
        model_encode(m, ds->vals + i * ds->ncolumns, x);
        fprintf(out, "%.17g\n", model_predict(m, x));
    }
    if (to_stdout ? fflush(out) != 0 : fclose(out) != 0) {
        out = NULL;
        fprintf(stderr, "mlopsctl predict: %s: write failed\n", conf.out);
        goto done;
    }
    out = NULL;
    if (tmp && rename(tmp, conf.out)) {
        fprintf(stderr, "mlopsctl predict: %s: %s\n", conf.out, strerror(errno));
        goto done;
    }
    fprintf(stderr, "mlopsctl predict: %zu rows scored with %s (%s) -> %s%s\n",
            ds->nrows - ds->nrefused, conf.model, model_algo_name(model_algo(m)),
            to_stdout ? "stdout" : conf.out, ds->nrefused ? " (refused rows left empty)" : "");
    code = MLOPS_EXIT_OK;
done:
    if (out && out != stdout)
        fclose(out);
    if (tmp && code != MLOPS_EXIT_OK)
        unlink(tmp);
    free(tmp);
    free(x);
    dataset_destroy(ds);
    model_destroy(m);
    cfg_destroy(cfg);
    return code;
}
