/*
 * mlopsctl drift status [--model M] [--window W] [--json] [--monitor-url URL]:
 * the monitor's current drift table (GET /api/v1/drift on its port): per
 * model and window, each input's test, value, threshold and decision, and
 * the dataset drift share. --json prints the monitor's JSON as it came.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "httpc.h"
#include "lifecycle.h"
#include "util.h"

#define PROG "mlopsctl drift"

static void usage(FILE *f)
{
    fprintf(f, "Usage: " PROG " status [--model M] [--window W] [--json] [--monitor-url URL]\n"
               "  Print the monitor's current drift table: feature, test, value, threshold,\n"
               "  drifted, per model and window, and the share of drifted features.\n"
               "      --model M         only this model\n"
               "      --window W        only this window (e.g. 1000 or 1000/250)\n"
               "      --json            print the monitor's JSON (GET /api/v1/drift)\n"
               "      --monitor-url URL the monitor (default $MLOPS_MONITOR_URL or "
               "http://127.0.0.1:9104)\n");
}

static void print_num(const json_t *v, const json_t *text)
{
    if (json_is_string(text))
        printf(" %14s", json_string_value(text));
    else if (json_is_number(v))
        printf(" %14.6g", json_number_value(v));
    else
        printf(" %14s", "-");
}

static void print_table(const json_t *body, const char *want_window)
{
    size_t i, k, f;
    const json_t *m, *w, *ft;
    json_array_foreach(json_object_get(body, "models"), i, m)
    {
        json_array_foreach(json_object_get(m, "windows"), k, w)
        {
            const char *wname = json_string_value(json_object_get(w, "window"));
            if (want_window && (!wname || strcmp(want_window, wname)))
                continue;
            printf("model %s version %s, window %s: %lld tick(s), events %lld",
                   json_string_value(json_object_get(m, "model")),
                   json_string_value(json_object_get(m, "version")), wname ? wname : "?",
                   (long long)json_integer_value(json_object_get(w, "ticks")),
                   (long long)json_integer_value(json_object_get(m, "events")));
            const json_t *share = json_object_get(w, "drift_share");
            if (json_is_number(share))
                printf(", drift share %.4f (threshold %.4g) -> %s\n", json_number_value(share),
                       json_number_value(json_object_get(w, "drift_share_threshold")),
                       json_is_true(json_object_get(w, "dataset_drift")) ? "DATASET DRIFT"
                                                                         : "no dataset drift");
            else
                printf(", no result yet\n");
            printf("%-32s %-14s %14s %14s  %s\n", "feature", "test", "value", "threshold",
                   "drifted");
            json_array_foreach(json_object_get(w, "features"), f, ft)
            {
                const char *name = json_string_value(json_object_get(ft, "feature"));
                const char *err = json_string_value(json_object_get(ft, "error"));
                if (err) {
                    printf("%-32s %-14s %14s %14s  (%s)\n", name ? name : "?", "-", "-", "-", err);
                    continue;
                }
                printf("%-32s %-14s", name ? name : "?",
                       json_string_value(json_object_get(ft, "test")));
                print_num(json_object_get(ft, "value"), json_object_get(ft, "value_text"));
                print_num(json_object_get(ft, "threshold"), NULL);
                printf("  %s\n", json_is_true(json_object_get(ft, "drifted")) ? "yes" : "no");
            }
            printf("\n");
        }
    }
}

static int status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"window", required_argument, NULL, 'w'},
        {"json", no_argument, NULL, 'j'},        {"monitor-url", required_argument, NULL, 'U'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    const char *model = NULL, *window = NULL, *url = NULL;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:w:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'w': window = optarg; break;
        case 'j': json = true; break;
        case 'U': url = optarg; break;
        case 'h': usage(stdout); return MLOPS_EXIT_OK;
        default: usage(stderr); return MLOPS_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG " status: unexpected argument '%s'\n", argv[optind]);
        return MLOPS_EXIT_USAGE;
    }
    if (!url) {
        const char *env = getenv("MLOPS_MONITOR_URL");
        url = env && *env ? env : "http://127.0.0.1:9104";
    }
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, url);
    strbuf_puts(&sb, "/api/v1/drift");
    if (model) {
        strbuf_puts(&sb, "?model=");
        for (const unsigned char *p = (const unsigned char *)model; *p; p++) {
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                *p == '-' || *p == '_' || *p == '.')
                strbuf_putc(&sb, (char)*p);
            else
                strbuf_appendf(&sb, "%%%02X", *p);
        }
    }
    char *u = strbuf_detach(&sb, NULL);
    httpc_resp_t r;
    int rc = MLOPS_EXIT_FAILURE;
    if (httpc_request("GET", u, NULL, NULL, 10000, &r)) {
        fprintf(stderr, PROG " status: %s: %s\n", u, r.error);
        goto out;
    }
    json_error_t je;
    json_t *body = json_loadb(r.body, r.len, 0, &je);
    if (r.status != 200) {
        const char *msg = json_string_value(json_object_get(body, "message"));
        fprintf(stderr, PROG " status: %s: HTTP %ld: %s\n", u, r.status,
                msg ? msg : (r.len ? r.body : "(no body)"));
        json_decref(body);
        goto out;
    }
    if (!body) {
        fprintf(stderr, PROG " status: %s: reply is not JSON: %s\n", u, je.text);
        goto out;
    }
    if (json) {
        if (window) {
            size_t i;
            json_t *m;
            json_array_foreach(json_object_get(body, "models"), i, m)
            {
                json_t *ws = json_object_get(m, "windows");
                for (size_t k = json_array_size(ws); k-- > 0;) {
                    const char *wn =
                        json_string_value(json_object_get(json_array_get(ws, k), "window"));
                    if (!wn || strcmp(wn, window))
                        json_array_remove(ws, k);
                }
            }
        }
        char *txt = json_dumps(body, JSON_INDENT(2));
        printf("%s\n", txt ? txt : "{}");
        free(txt);
    } else {
        if (json_array_size(json_object_get(body, "models")) == 0)
            printf("no model is monitored\n");
        print_table(body, window);
    }
    json_decref(body);
    rc = MLOPS_EXIT_OK;
out:
    httpc_resp_free(&r);
    free(u);
    return rc;
}

int cmd_drift(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    if (!strcmp(argv[1], "status"))
        return status(argc - 1, argv + 1);
    fprintf(stderr, PROG ": unknown action '%s' (expected: status)\n", argv[1]);
    return MLOPS_EXIT_USAGE;
}
