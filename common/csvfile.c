#include "csvfile.h"

#include <csv.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct record {
    char **fields;
    size_t n, cap;
} record_t;

struct csvf {
    FILE *fp;
    bool own_fp;
    char *path;
    struct csv_parser p;
    record_t cur;    /* being built by the callbacks */
    record_t *ready; /* complete records not yet returned */
    size_t nready, capready, head;
    record_t out; /* the one last returned (owned until the next call) */
    size_t record;
    bool eof;
};

static void record_free(record_t *rec)
{
    for (size_t i = 0; i < rec->n; i++)
        free(rec->fields[i]);
    free(rec->fields);
    memset(rec, 0, sizeof(*rec));
}

static void on_field(void *s, size_t len, void *data)
{
    csvf_t *r = data;
    record_t *rec = &r->cur;
    if (rec->n == rec->cap) {
        rec->cap = rec->cap ? rec->cap * 2 : 32;
        rec->fields = xrealloc(rec->fields, rec->cap * sizeof(char *));
    }
    rec->fields[rec->n++] = xstrndup(s ? s : "", s ? len : 0);
}

static void on_record(int c, void *data)
{
    csvf_t *r = data;
    if (r->nready == r->capready) {
        r->capready = r->capready ? r->capready * 2 : 64;
        r->ready = xrealloc(r->ready, r->capready * sizeof(record_t));
    }
    r->ready[r->nready++] = r->cur;
    memset(&r->cur, 0, sizeof(r->cur));
}

csvf_t *csvf_open(const char *path, char *errstr, size_t errstr_size)
{
    csvf_t *r = xcalloc(1, sizeof(*r));
    r->path = xstrdup(path);
    if (!strcmp(path, "-")) {
        r->fp = stdin;
    } else {
        r->fp = fopen(path, "rb");
        r->own_fp = true;
    }
    if (!r->fp) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        free(r->path);
        free(r);
        return NULL;
    }
    csv_init(&r->p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL | CSV_EMPTY_IS_NULL);
    return r;
}

void csvf_close(csvf_t *r)
{
    if (!r)
        return;
    for (size_t i = r->head; i < r->nready; i++)
        record_free(&r->ready[i]);
    free(r->ready);
    record_free(&r->cur);
    record_free(&r->out);
    csv_free(&r->p);
    if (r->own_fp)
        fclose(r->fp);
    free(r->path);
    free(r);
}

int csvf_next(csvf_t *r, char ***fields, size_t *nfields, char *errstr, size_t errstr_size)
{
    record_free(&r->out);
    while (r->head == r->nready) {
        r->head = r->nready = 0;
        if (r->eof)
            return 0;
        char buf[65536];
        size_t n = fread(buf, 1, sizeof(buf), r->fp);
        if (n == 0) {
            if (ferror(r->fp)) {
                snprintf(errstr, errstr_size, "%s: read error: %s", r->path, strerror(errno));
                return -1;
            }
            r->eof = true;
            if (csv_fini(&r->p, on_field, on_record, r)) {
                snprintf(errstr, errstr_size, "%s: record %zu: %s", r->path, r->record + 1,
                         csv_strerror(csv_error(&r->p)));
                return -1;
            }
            continue;
        }
        if (csv_parse(&r->p, buf, n, on_field, on_record, r) != n) {
            snprintf(errstr, errstr_size, "%s: record %zu: %s", r->path, r->record + r->nready + 1,
                     csv_strerror(csv_error(&r->p)));
            return -1;
        }
    }
    r->out = r->ready[r->head++];
    r->record++;
    *fields = r->out.fields;
    *nfields = r->out.n;
    return 1;
}

size_t csvf_record(const csvf_t *r) { return r->record; }

void csvf_write_field(FILE *fp, const char *s, size_t len)
{
    bool quote = false;
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        fwrite(s, 1, len, fp);
        return;
    }
    csv_fwrite(fp, s, len);
}
