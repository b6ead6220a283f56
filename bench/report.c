/*
 * mlops-bench report: one table from the bench_result/1 lines of one or more
 * runs, with each path's figures divided by the baseline's of the same mode
 * (measured in the same invocation), since ratios travel across noisy shared
 * machines better than absolute figures do.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "lifecycle.h"
#include "util.h"

typedef struct row {
    char *label;
    char *mode; /* mode_text: "flat-out", "rate 20000/s" */
    double eps;
    double p50, p99, p999, max; /* ms */
    long long lost, dups, count;
} row_t;

typedef struct rows {
    row_t *v;
    size_t n;
} rows_t;

static char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return xstrdup(s ? s : "?");
}

static double jnum(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static int load(rows_t *rows, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) {
        fprintf(stderr, "mlops-bench report: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[0] != '{')
            continue; /* human-readable lines of a run's output */
        json_error_t jerr;
        json_t *o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
        const char *schema = o ? json_string_value(json_object_get(o, "schema")) : NULL;
        if (!schema || strcmp(schema, "bench_result/1")) {
            if (!o)
                fprintf(stderr, "mlops-bench report: %s:%ld: skipped, not JSON: %s\n", path, lineno,
                        jerr.text);
            json_decref(o);
            continue;
        }
        rows->v = xrealloc(rows->v, (rows->n + 1) * sizeof(row_t));
        rows->v[rows->n++] = (row_t){
            .label = jstr(o, "label"),
            .mode = jstr(o, "mode_text"),
            .eps = jnum(o, "events_per_s"),
            .p50 = jnum(o, "p50_us") / 1e3,
            .p99 = jnum(o, "p99_us") / 1e3,
            .p999 = jnum(o, "p999_us") / 1e3,
            .max = jnum(o, "max_us") / 1e3,
            .lost = (long long)jnum(o, "lost"),
            .dups = (long long)jnum(o, "duplicates"),
            .count = (long long)jnum(o, "count"),
        };
        json_decref(o);
    }
    free(line);
    if (f != stdin)
        fclose(f);
    return 0;
}

static void print_row(const char *mode, const row_t *r)
{
    printf("%-14s %-16s %10.0f %9.3f %9.3f %9.3f %9.3f %7lld %6lld\n", mode, r->label, r->eps,
           r->p50, r->p99, r->p999, r->max, r->lost, r->dups);
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

static void print_ratio(const row_t *r, const row_t *base)
{
    char name[64];
    snprintf(name, sizeof(name), "%s/%s", r->label, base->label);
    printf("%-14s %-16s %9.2fx %8.2fx %8.2fx %8.2fx %8.2fx\n", "", name, ratio(r->eps, base->eps),
           ratio(r->p50, base->p50), ratio(r->p99, base->p99), ratio(r->p999, base->p999),
           ratio(r->max, base->max));
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: mlops-bench report [--baseline LABEL] FILE...   (FILE may be -)\n"
                 "\n"
                 "Print one table from the bench_result/1 JSON lines that 'mlops-bench run\n"
                 "--json FILE' appended (other lines are skipped). Rows are grouped by mode;\n"
                 "under each other path, a ratio row divides its figures by the baseline's of\n"
                 "the same mode (the latest one before it in the files).\n"
                 "\n"
                 "Options:\n"
                 "  -B, --baseline LABEL   label of the baseline path (default broker)\n"
                 "  -h, --help             this help\n");
}

int bench_cmd_report(int argc, char **argv)
{
    static const struct option longopts[] = {{"baseline", required_argument, NULL, 'B'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *baseline = "broker";
    rows_t rows = {0};
    int code = MLOPS_EXIT_USAGE;
    int c;
    while ((c = getopt_long(argc, argv, "B:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'B': baseline = optarg; break;
        case 'h': usage(stdout); return MLOPS_EXIT_OK;
        default: fprintf(stderr, "Try 'mlops-bench report --help'.\n"); return MLOPS_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "mlops-bench report: name at least one FILE (see --help)\n");
        return MLOPS_EXIT_USAGE;
    }
    code = MLOPS_EXIT_FAILURE;
    for (int i = optind; i < argc; i++)
        if (load(&rows, argv[i]))
            goto done;
    if (!rows.n) {
        fprintf(stderr, "mlops-bench report: no bench_result/1 lines in the files\n");
        goto done;
    }

    printf("%-14s %-16s %10s %9s %9s %9s %9s %7s %6s\n", "mode", "path", "events/s", "p50 ms",
           "p99 ms", "p99.9 ms", "max ms", "lost", "dup");
    /* Modes in order of first appearance; within a mode, rows in file order. */
    bool *done_mode = xcalloc(rows.n, sizeof(bool));
    for (size_t m = 0; m < rows.n; m++) {
        if (done_mode[m])
            continue;
        const char *mode = rows.v[m].mode;
        const row_t *base = NULL;
        bool first = true;
        for (size_t i = m; i < rows.n; i++) {
            if (strcmp(rows.v[i].mode, mode))
                continue;
            done_mode[i] = true;
            row_t *r = &rows.v[i];
            print_row(first ? mode : "", r);
            first = false;
            if (!strcmp(r->label, baseline)) {
                base = r;
                continue;
            }
            if (!base) /* baseline after it: use the first of the mode */
                for (size_t k = i + 1; k < rows.n && !base; k++)
                    if (!strcmp(rows.v[k].mode, mode) && !strcmp(rows.v[k].label, baseline))
                        base = &rows.v[k];
            if (base)
                print_ratio(r, base);
        }
    }
    free(done_mode);
    printf("\nevents/s: events received / (last receive - first send). Latency: receive - send\n"
           "time, exact nearest-rank percentiles. Ratio rows: that path's figure / the\n"
           "%s figure of the same mode (events/s below 1x and latency above 1x = slower).\n",
           baseline);
    bool lost = false;
    for (size_t i = 0; i < rows.n; i++)
        lost |= rows.v[i].lost > 0;
    code = lost ? MLOPS_EXIT_FAILURE : MLOPS_EXIT_OK;
    if (lost)
        printf("WARNING: some runs lost events (column lost): their figures are not comparable.\n");
done:
    for (size_t i = 0; i < rows.n; i++) {
        free(rows.v[i].label);
        free(rows.v[i].mode);
    }
    free(rows.v);
    return code;
}
