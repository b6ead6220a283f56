#include "input.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csvfile.h"
#include "mjson.h"
#include "util.h"

struct input {
    char *path;
    size_t max_bytes;
    csvf_t *csv;
    char **header;
    size_t nheader;
    FILE *fp;
    char *line;
    size_t cap;
    size_t record;
    strbuf_t raw;
};

input_t *input_open(const char *csv, const char *jsonl, size_t max_bytes, char *errstr,
                    size_t errstr_size)
{
    if ((csv && jsonl) || (!csv && !jsonl)) {
        snprintf(errstr, errstr_size, "give exactly one of --csv and --jsonl");
        return NULL;
    }
    input_t *in = xcalloc(1, sizeof(*in));
    in->max_bytes = max_bytes;
    strbuf_init(&in->raw);
    if (csv) {
        in->path = xstrdup(csv);
        in->csv = csvf_open(csv, errstr, errstr_size);
        if (!in->csv)
            goto err;
        char **f;
        size_t n;
        int rc = csvf_next(in->csv, &f, &n, errstr, errstr_size);
        if (rc <= 0) {
            if (rc == 0)
                snprintf(errstr, errstr_size, "%s: empty file (no header row)", csv);
            goto err;
        }
        in->nheader = n;
        in->header = xcalloc(n, sizeof(char *));
        for (size_t i = 0; i < n; i++)
            in->header[i] = xstrdup(f[i]);
        in->record = 1;
    } else {
        in->path = xstrdup(jsonl);
        in->fp = strcmp(jsonl, "-") ? fopen(jsonl, "rb") : stdin;
        if (!in->fp) {
            snprintf(errstr, errstr_size, "%s: %s", jsonl, strerror(errno));
            goto err;
        }
    }
    return in;
err:
    input_close(in);
    return NULL;
}

void input_close(input_t *in)
{
    if (!in)
        return;
    csvf_close(in->csv);
    for (size_t i = 0; i < in->nheader; i++)
        free(in->header[i]);
    free(in->header);
    if (in->fp && in->fp != stdin)
        fclose(in->fp);
    free(in->line);
    strbuf_cleanup(&in->raw);
    free(in->path);
    free(in);
}

const char *input_path(const input_t *in) { return in->path; }

char **input_header(const input_t *in, size_t *n)
{
    *n = in->nheader;
    return in->header;
}

int input_next(input_t *in, json_t **obj, err_t **bad, const char **raw, size_t *rawlen,
               size_t *record, char *errstr, size_t errstr_size)
{
    *obj = NULL;
    *bad = NULL;
    if (in->csv) {
        char **f;
        size_t n;
        int rc = csvf_next(in->csv, &f, &n, errstr, errstr_size);
        if (rc <= 0)
            return rc;
        in->record = csvf_record(in->csv);
        json_t *o = json_object();
        bool utf8 = true;
        for (size_t i = 0; i < n && i < in->nheader; i++) {
            if (!f[i][0])
                continue;
            json_t *v = json_string(f[i]); /* NULL when not valid UTF-8 */
            if (!v)
                utf8 = false;
            else
                json_object_set_new(o, in->header[i], v);
        }
        if (!utf8) {
            *bad = err_new(ERR_D_INPUT, MJSON_E_BAD_JSON, false, false,
                           "record holds bytes that are not valid UTF-8");
        } else if (n != in->nheader) {
            *bad = err_new(ERR_D_INPUT, MJSON_E_BAD_JSON, false, false,
                           "record has %zu fields, the header has %zu", n, in->nheader);
        }
        /* the record's own bytes, re-joined as CSV (quoting normalised) */
        strbuf_reset(&in->raw);
        for (size_t i = 0; i < n; i++) {
            if (i)
                strbuf_putc(&in->raw, ',');
            bool quote = strpbrk(f[i], ",\"\r\n") != NULL;
            if (!quote) {
                strbuf_puts(&in->raw, f[i]);
                continue;
            }
            strbuf_putc(&in->raw, '"');
            for (const char *p = f[i]; *p; p++) {
                if (*p == '"')
                    strbuf_putc(&in->raw, '"');
                strbuf_putc(&in->raw, *p);
            }
            strbuf_putc(&in->raw, '"');
        }
        if (*bad)
            json_decref(o);
        else
            *obj = o;
        *raw = in->raw.data;
        *rawlen = in->raw.len;
        *record = in->record;
        return 1;
    }
    for (;;) {
        ssize_t n = getline(&in->line, &in->cap, in->fp);
        if (n < 0) {
            if (ferror(in->fp)) {
                snprintf(errstr, errstr_size, "%s: read error: %s", in->path, strerror(errno));
                return -1;
            }
            return 0;
        }
        in->record++;
        while (n && (in->line[n - 1] == '\n' || in->line[n - 1] == '\r'))
            in->line[--n] = '\0';
        if (n == 0)
            continue; /* blank lines are not events */
        *raw = in->line;
        *rawlen = (size_t)n;
        *record = in->record;
        *obj = mjson_parse_object(in->line, (size_t)n, in->max_bytes, bad);
        return 1;
    }
}
