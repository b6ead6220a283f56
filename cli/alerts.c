/*
 * mlopsctl alerts: silences through the monitor's JSON API.
 *
 *   mlopsctl alerts silence -m NAME=VALUE [-m NAME!=V] [-m NAME=~RE] [-m NAME!~RE]
 *                           (--duration 2h | --until RFC3339) --comment TEXT
 *                           [--author NAME]        prints the silence id last
 *   mlopsctl alerts silences [--json] [--all]      list (active and pending)
 *   mlopsctl alerts expire ID
 *
 * The monitor is at --monitor-url, $MLOPS_MONITOR_URL or http://127.0.0.1:9104.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "httpc.h"
#include "lifecycle.h"
#include "util.h"

#define PROG "mlopsctl alerts"

static void usage(FILE *out)
{
    fprintf(out, "Usage:\n"
                 "  " PROG " silence -m NAME=VALUE [-m ...] (--duration D | --until TIME)\n"
                 "                          --comment TEXT [--author NAME]\n"
                 "  " PROG " silences [--json] [--all]\n"
                 "  " PROG " expire ID\n\n"
                 "Silence alerts (the notifier does not post what a silence matches), list\n"
                 "silences, or end one now. Matchers: NAME=VALUE, NAME!=VALUE, NAME=~REGEX,\n"
                 "NAME!~REGEX over the alert's labels plus alertname, severity and model;\n"
                 "regular expressions are anchored. Durations: 30m, 2h, 1d.\n\n"
                 "Options:\n"
                 "  -m, --matcher M       a matcher (repeat: all must match)\n"
                 "      --duration D      how long from now\n"
                 "      --until TIME      end time (RFC 3339)\n"
                 "      --comment TEXT    why (required)\n"
                 "      --author NAME     who (default: $USER)\n"
                 "      --json            print JSON\n"
                 "      --all             include expired silences\n"
                 "      --monitor-url URL the monitor (default $MLOPS_MONITOR_URL or "
                 "http://127.0.0.1:9104)\n");
}

static const char *monitor_url(const char *opt)
{
    if (opt)
        return opt;
    const char *env = getenv("MLOPS_MONITOR_URL");
    return env && *env ? env : "http://127.0.0.1:9104";
}

/* Send and report: returns the parsed JSON of a 2xx reply, or NULL after
 * printing what went wrong. */
static json_t *call(const char *method, const char *base, const char *path, const char *body)
{
    char *url = xasprintf("%s%s", base, path);
    httpc_resp_t r;
    json_t *out = NULL;
    if (httpc_request(method, url, body, NULL, 10000, &r)) {
        fprintf(stderr, PROG ": %s %s: %s (is mlops-monitor running? --monitor-url)\n", method, url,
                r.error);
    } else if (r.status < 200 || r.status > 299) {
        json_t *e = json_loads(r.body, 0, NULL);
        const char *msg =
            json_string_value(json_object_get(json_object_get(e, "error"), "message"));
        fprintf(stderr, PROG ": %s %s: HTTP %ld: %s\n", method, url, r.status, msg ? msg : r.body);
        json_decref(e);
    } else {
        json_error_t je;
        out = json_loads(r.body, JSON_DECODE_ANY, &je);
        if (!out)
            fprintf(stderr, PROG ": %s %s: the reply is not JSON: %s\n", method, url, je.text);
    }
    httpc_resp_free(&r);
    free(url);
    return out;
}

/* "name=value", "name!=value", "name=~re", "name!~re" */
static json_t *parse_matcher(const char *m)
{
    const char *ops[] = {"!=", "=~", "!~", "="};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(ops); i++) {
        const char *p = strstr(m, ops[i]);
        if (!p || p == m)
            continue;
        /* "=" must not be the first char of another operator found later */
        if (!strcmp(ops[i], "=") && (strstr(m, "!=") || strstr(m, "=~") || strstr(m, "!~")))
            continue;
        char *name = xstrndup(m, (size_t)(p - m));
        json_t *j = json_pack("{s:s,s:s,s:b,s:b}", "name", name, "value", p + strlen(ops[i]),
                              "isRegex", ops[i][1] == '~', "isEqual", ops[i][0] != '!');
        free(name);
        return j;
    }
    return NULL;
}

static int do_silence(int argc, char **argv)
{
    static const struct option opts[] = {
        {"matcher", required_argument, NULL, 'm'}, {"duration", required_argument, NULL, 'd'},
        {"until", required_argument, NULL, 'u'},   {"comment", required_argument, NULL, 'c'},
        {"author", required_argument, NULL, 'a'},  {"monitor-url", required_argument, NULL, 'U'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    json_t *matchers = json_array();
    const char *duration = NULL, *until = NULL, *comment = NULL, *author = getenv("USER"),
               *url = NULL;
    int c, rc = MLOPS_EXIT_USAGE;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': {
            json_t *m = parse_matcher(optarg);
            if (!m) {
                fprintf(stderr,
                        PROG " silence: matcher '%s': expected NAME=VALUE, NAME!=VALUE, "
                             "NAME=~REGEX or NAME!~REGEX\n",
                        optarg);
                goto out;
            }
            json_array_append_new(matchers, m);
            break;
        }
        case 'd': duration = optarg; break;
        case 'u': until = optarg; break;
        case 'c': comment = optarg; break;
        case 'a': author = optarg; break;
        case 'U': url = optarg; break;
        case 'h':
            usage(stdout);
            rc = MLOPS_EXIT_OK;
            goto out;
        default: goto out;
        }
    }
    if (!json_array_size(matchers) || !comment || (!duration == !until)) {
        fprintf(stderr, PROG " silence: give at least one --matcher, --comment, and one of "
                             "--duration or --until\n");
        goto out;
    }
    json_t *req = json_pack("{s:O,s:s,s:s}", "matchers", matchers, "comment", comment, "createdBy",
                            author && *author ? author : "mlopsctl");
    if (duration)
        json_object_set_new(req, "duration", json_string(duration));
    else
        json_object_set_new(req, "endsAt", json_string(until));
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *resp = call("POST", monitor_url(url), "/api/v1/silences", body);
    free(body);
    rc = MLOPS_EXIT_FAILURE;
    if (resp) {
        printf("%s\n", json_string_value(json_object_get(resp, "silenceID")));
        json_decref(resp);
        rc = MLOPS_EXIT_OK;
    }
out:
    json_decref(matchers);
    return rc;
}

static void matcher_text(const json_t *m, strbuf_t *b)
{
    bool re = json_is_true(json_object_get(m, "isRegex"));
    json_t *eq = json_object_get(m, "isEqual");
    bool equal = !eq || json_is_true(eq);
    strbuf_appendf(b, "%s%s%s", json_string_value(json_object_get(m, "name")),
                   equal ? (re ? "=~" : "=") : (re ? "!~" : "!="),
                   json_string_value(json_object_get(m, "value")));
}

static int do_list(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"all", no_argument, NULL, 'A'},
                                         {"monitor-url", required_argument, NULL, 'U'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool as_json = false, all = false;
    const char *url = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j')
            as_json = true;
        else if (c == 'A')
            all = true;
        else if (c == 'U')
            url = optarg;
        else if (c == 'h') {
            usage(stdout);
            return MLOPS_EXIT_OK;
        } else
            return MLOPS_EXIT_USAGE;
    }
    json_t *list = call("GET", monitor_url(url), "/api/v1/silences", NULL);
    if (!list)
        return MLOPS_EXIT_FAILURE;
    json_t *shown = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        if (all || strcmp(json_string_value(json_object_get(s, "status")), "expired"))
            json_array_append(shown, s);
    }
    if (as_json) {
        char *txt = json_dumps(shown, JSON_INDENT(2));
        printf("%s\n", txt);
        free(txt);
    } else {
        printf("%-36s  %-8s  %-24s  %-12s  %-40s  %s\n", "ID", "STATUS", "ENDS", "CREATED BY",
               "MATCHERS", "COMMENT");
        json_array_foreach(shown, i, s)
        {
            strbuf_t b;
            strbuf_init(&b);
            size_t k;
            json_t *m;
            json_array_foreach(json_object_get(s, "matchers"), k, m)
            {
                if (k)
                    strbuf_puts(&b, " ");
                matcher_text(m, &b);
            }
            printf("%-36s  %-8s  %-24s  %-12s  %-40s  %s\n",
                   json_string_value(json_object_get(s, "id")),
                   json_string_value(json_object_get(s, "status")),
                   json_string_value(json_object_get(s, "endsAt")),
                   json_string_value(json_object_get(s, "createdBy")), b.data ? b.data : "",
                   json_string_value(json_object_get(s, "comment")));
            strbuf_cleanup(&b);
        }
        if (!json_array_size(shown))
            printf("(no %ssilences)\n", all ? "" : "active or pending ");
    }
    json_decref(shown);
    json_decref(list);
    return MLOPS_EXIT_OK;
}

static int do_expire(int argc, char **argv)
{
    static const struct option opts[] = {{"monitor-url", required_argument, NULL, 'U'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *url = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'U')
            url = optarg;
        else if (c == 'h') {
            usage(stdout);
            return MLOPS_EXIT_OK;
        } else
            return MLOPS_EXIT_USAGE;
    }
    if (optind != argc - 1) {
        fprintf(stderr, PROG " expire: give one silence ID\n");
        return MLOPS_EXIT_USAGE;
    }
    const char *id = argv[optind];
    for (const char *p = id; *p; p++)
        if (!(*p == '-' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z'))) {
            fprintf(stderr, PROG " expire: '%s' is not a silence ID\n", id);
            return MLOPS_EXIT_USAGE;
        }
    char *path = xasprintf("/api/v1/silences/%s", id);
    json_t *r = call("DELETE", monitor_url(url), path, NULL);
    free(path);
    if (!r)
        return MLOPS_EXIT_FAILURE;
    printf("expired %s\n", id);
    json_decref(r);
    return MLOPS_EXIT_OK;
}

int cmd_alerts(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MLOPS_EXIT_USAGE : MLOPS_EXIT_OK;
    }
    if (!strcmp(argv[1], "silence"))
        return do_silence(argc - 1, argv + 1);
    if (!strcmp(argv[1], "silences"))
        return do_list(argc - 1, argv + 1);
    if (!strcmp(argv[1], "expire"))
        return do_expire(argc - 1, argv + 1);
    fprintf(stderr, PROG ": unknown action '%s' (silence, silences, expire)\n", argv[1]);
    return MLOPS_EXIT_USAGE;
}
