/*
 * mlopsctl models card MODEL.json: a readable model card (markdown) from a
 * model/1 artifact: what it predicts, from which data, how well (held-out
 * metrics and confusion matrix at the decision threshold), its inputs and
 * their preprocessing, the strongest coefficients or the trees, the drift
 * reference and the lineage.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "lifecycle.h"
#include "model.h"

static const char *str_or(const json_t *obj, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : def;
}

static void num_cell(FILE *out, const json_t *v)
{
    if (json_is_number(v))
        fprintf(out, "%.4f", json_number_value(v));
    else
        fputs("n/a", out);
}

/* markdown table cells must not break the table */
static void cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
}

typedef struct coef_rank {
    const char *name;
    double w;
} coef_rank_t;

static int by_abs(const void *a, const void *b)
{
    double x = fabs(((const coef_rank_t *)a)->w), y = fabs(((const coef_rank_t *)b)->w);
    return x > y ? -1 : x < y;
}

static void card(FILE *out, const model_t *m, const char *path)
{
    const json_t *doc = model_doc(m), *met = json_object_get(doc, "metrics"),
                 *lab = json_object_get(doc, "label"), *lin = json_object_get(doc, "lineage"),
                 *prof = json_object_get(doc, "profile");
    const spec_t *spec = model_spec(m);
    fprintf(out, "# Model card: %s\n\n", str_or(doc, "name", "?"));
    fprintf(out, "| | |\n| --- | --- |\n");
    fprintf(out, "| artifact | `%s` (model/1) |\n", path);
    fprintf(out, "| algorithm | %s |\n", model_algo_name(model_algo(m)));
    fprintf(out, "| predicts | P(`%s` = `%s`) |\n", str_or(lab, "field", "?"),
            str_or(lab, "positive", "?"));
    fprintf(out, "| decision threshold | %.6f (%s) |\n", model_threshold(m),
            str_or(doc, "threshold_rule", "given"));
    fprintf(out, "| created | %s by trainer %s |\n", str_or(doc, "created_at", "?"),
            str_or(lin, "trainer_version", "?"));
    fprintf(out, "| feature spec | `%s` v%d, hash `%.16s…` |\n", spec->name, spec->version,
            spec->hash);
    const json_t *src = json_object_get(lin, "source");
    if (src)
        fprintf(out, "| training data | `%s`, %lld rows, sha256 `%.16s…` |\n",
                str_or(src, "path", "?"),
                (long long)json_integer_value(json_object_get(src, "rows")),
                str_or(src, "sha256", "?"));
    fprintf(out, "| seed | %lld |\n\n",
            (long long)json_integer_value(json_object_get(lin, "seed")));

    fprintf(out, "## Performance on the held-out split\n\n");
    fprintf(out, "%lld training rows, %lld held out (positive rate %.4f).\n\n",
            (long long)json_integer_value(json_object_get(met, "rows_train")),
            (long long)json_integer_value(json_object_get(met, "rows_held_out")),
            json_number_value(json_object_get(met, "positive_rate")));
    static const char *keys[] = {"auc",    "log_loss", "accuracy", "precision",
                                 "recall", "f1",       "brier"};
    const json_t *trm = json_object_get(met, "train");
    fprintf(out, "| metric | held out | training |\n| --- | --- | --- |\n");
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(keys); i++) {
        fprintf(out, "| %s | ", keys[i]);
        num_cell(out, json_object_get(met, keys[i]));
        fputs(" | ", out);
        num_cell(out, json_object_get(trm, keys[i]));
        fputs(" |\n", out);
    }
    const json_t *cm = json_object_get(met, "confusion");
    fprintf(out,
            "\nConfusion matrix at the threshold (held out):\n\n"
            "| | predicted positive | predicted negative |\n| --- | --- | --- |\n"
            "| actual positive | %lld | %lld |\n| actual negative | %lld | %lld |\n\n",
            (long long)json_integer_value(json_object_get(cm, "tp")),
            (long long)json_integer_value(json_object_get(cm, "fn")),
            (long long)json_integer_value(json_object_get(cm, "fp")),
            (long long)json_integer_value(json_object_get(cm, "tn")));

    size_t nin;
    const model_input_t *ins = model_inputs(m, &nin);
    const json_t *jin = json_object_get(doc, "inputs");
    fprintf(out, "## Inputs (%zu, %zu model slots)\n\n", nin, model_nslots(m));
    fprintf(out, "| input | kind | missing values | preprocessing |\n| --- | --- | --- | --- |\n");
    for (size_t i = 0; i < nin; i++) {
        const json_t *ji = json_array_get(jin, i);
        fputs("| ", out);
        cell(out, ins[i].column);
        fprintf(out, " | %s | %s", ins[i].categorical ? "categorical" : "numeric",
                str_or(ji, "fill_rule", "none"));
        if (ins[i].categorical) {
            fprintf(out, "%s%s | %zu categories", ins[i].cat_fill >= 0 ? " → " : "",
                    ins[i].cat_fill >= 0 ? ins[i].cats[ins[i].cat_fill] : "", ins[i].ncats);
            fprintf(out, model_algo(m) == MODEL_ALGO_LOGREG ? ", one-hot |\n"
                                                            : ", index (category splits) |\n");
        } else {
            if (!isnan(ins[i].fill))
                fprintf(out, " → %.6g", ins[i].fill);
            if (model_algo(m) == MODEL_ALGO_LOGREG)
                fprintf(out, " | (x − %.6g) / %.6g |\n", ins[i].mean, ins[i].scale);
            else
                fprintf(out, " | raw value (histogram bins) |\n");
        }
    }
    fputc('\n', out);

    if (model_algo(m) == MODEL_ALGO_LOGREG) {
        const json_t *lr = json_object_get(doc, "logreg"), *coef = json_object_get(lr, "coef"),
                     *slots = json_object_get(doc, "slots");
        size_t n = json_array_size(coef);
        coef_rank_t *cr = xmalloc((n ? n : 1) * sizeof(coef_rank_t));
        for (size_t i = 0; i < n; i++)
            cr[i] = (coef_rank_t){json_string_value(json_array_get(slots, i)),
                                  json_number_value(json_array_get(coef, i))};
        qsort(cr, n, sizeof(coef_rank_t), by_abs);
        fprintf(out,
                "## Logistic regression (%s, C = %g)\n\nIntercept %.6f. Strongest of %zu "
                "coefficients (on standardised inputs):\n\n| slot | coefficient |\n| --- | "
                "--- |\n",
                json_is_string(json_object_get(lr, "penalty")) &&
                        !strcmp(json_string_value(json_object_get(lr, "penalty")), "l1")
                    ? "L1"
                    : "L2",
                json_number_value(json_object_get(lr, "C")),
                json_number_value(json_object_get(lr, "intercept")), n);
        for (size_t i = 0; i < n && i < 15; i++) {
            fputs("| ", out);
            cell(out, cr[i].name);
            fprintf(out, " | %+.6f |\n", cr[i].w);
        }
        free(cr);
    } else {
        const json_t *g = json_object_get(doc, "gbdt"), *trees = json_object_get(g, "trees");
        size_t nodes = 0;
        for (size_t i = 0; i < json_array_size(trees); i++)
            nodes += json_array_size(json_object_get(json_array_get(trees, i), "feature"));
        fprintf(out,
                "## Gradient-boosted trees\n\n%zu trees, %zu nodes, base margin %.6f; "
                "parameters below.\n",
                json_array_size(trees), nodes,
                json_number_value(json_object_get(g, "base_margin")));
    }
    fprintf(out,
            "\n## Drift reference\n\nTraining label rate %.4f over %lld rows; per-input "
            "bins and category frequencies for %zu inputs; value samples %s.\n",
            json_number_value(json_object_get(prof, "label_rate")),
            (long long)json_integer_value(json_object_get(prof, "rows")),
            json_array_size(json_object_get(prof, "inputs")),
            json_is_true(json_object_get(prof, "sample_enabled")) ? "kept (up to 10,000 each)"
                                                                  : "turned off");
    fprintf(out, "\n## Parameters\n\n| parameter | value |\n| --- | --- |\n");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(lin, "params"), k, v)
    {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        fprintf(out, "| %s | %s |\n", k, s ? s : "?");
        free(s);
    }
    const json_t *tm = json_object_get(lin, "timings_ms");
    if (tm)
        fprintf(out, "\nTrained in %.0f ms.\n", json_number_value(json_object_get(tm, "total")));
}

int model_card_file(int argc, char **argv)
{
    static const char usage[] = "Usage: mlopsctl models card MODEL.json\n\n"
                                "  card MODEL.json   print a model card (markdown) of a model/1 "
                                "artifact\n";
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    if (strcmp(argv[1], "card")) {
        fprintf(stderr, "mlopsctl models: unknown action '%s' (card)\n", argv[1]);
        return MLOPS_EXIT_USAGE;
    }
    if (argc != 3 || argv[2][0] == '-') {
        fputs(usage, stderr);
        return MLOPS_EXIT_USAGE;
    }
    char errstr[2048];
    model_t *m = model_load(argv[2], errstr, sizeof(errstr));
    if (!m) {
        fprintf(stderr, "mlopsctl models card: %s\n", errstr);
        return MLOPS_EXIT_FAILURE;
    }
    card(stdout, m, argv[2]);
    model_destroy(m);
    return fflush(stdout) ? MLOPS_EXIT_FAILURE : MLOPS_EXIT_OK;
}
