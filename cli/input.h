/* Reading events from a CSV (header row; every value a string, empty =
 * absent) or a JSONL file (one JSON object per line), for the CLI commands
 * that take --csv or --jsonl. */
#ifndef MLOPS_CLI_INPUT_H
#define MLOPS_CLI_INPUT_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

typedef struct input input_t;

/** Open exactly one of @p csv or @p jsonl. NULL with errstr on failure. */
input_t *input_open(const char *csv, const char *jsonl, size_t max_bytes, char *errstr,
                    size_t errstr_size);
void input_close(input_t *in);

/**
 * Next event. Returns 1 with *obj (a new reference) or, for a line that is
 * not a JSON object, *obj NULL and *bad set (caller frees); 0 at the end;
 * -1 on an I/O or CSV error (errstr). *raw and *rawlen are the record's bytes
 * (borrowed until the next call) and *record its 1-based line/record.
 */
int input_next(input_t *in, json_t **obj, err_t **bad, const char **raw, size_t *rawlen,
               size_t *record, char *errstr, size_t errstr_size);

/** The file name (for sources and messages). */
const char *input_path(const input_t *in);
/** CSV header (borrowed), or NULL for JSONL. */
char **input_header(const input_t *in, size_t *n);

#endif
