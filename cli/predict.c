/*
 * mlopsctl predict: score a CSV with a model/1 artifact. Every row is
 * cleaned by the model's embedded spec (the ingest code, rolling aggregates
 * in event-time order), encoded and scored by model.h — the code the scorer
 * runs. Output: a header `score`, then one probability per input row, in
 * input order. A label column in the file is ignored.
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

typedef struct predict_conf {
    char *model;
    char *data;
    char *out;
    bool skip_refused;
} predict_conf_t;

static const cfg_item_t items[] = {
    CFG_ITEM(predict_conf_t, model, CFG_T_STR, NULL, CFG_REQUIRED, "model/1 artifact (JSON)"),
    CFG_ITEM(predict_conf_t, data, CFG_T_STR, NULL, CFG_REQUIRED, "CSV to score (header row)"),
    CFG_ITEM(predict_conf_t, out, CFG_T_STR, "-", 0, "scores CSV ('-' = stdout)"),
    CFG_ITEM(predict_conf_t, skip_refused, CFG_T_BOOL, "false", 0,
             "write an empty score for a row the spec refuses instead of failing"),
};

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
        cfg_new("mlopsctl predict", "--model model.json --data test.csv [--out scores.csv]", items,
                MLOPS_ARRAY_LEN(items), &conf, sizeof(conf));
    cfg_result_t r = cfg_init(cfg, argc, argv, stdout, errstr, sizeof(errstr));
    if (r != CFG_OK) {
        if (r == CFG_ERROR)
            fprintf(stderr, "mlopsctl predict: %s\n", errstr);
        code = r == CFG_EXIT ? MLOPS_EXIT_OK : MLOPS_EXIT_USAGE;
        goto done;
    }
    m = model_load(conf.model, errstr, sizeof(errstr));
    if (!m) {
        fprintf(stderr, "mlopsctl predict: %s\n", errstr);
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
