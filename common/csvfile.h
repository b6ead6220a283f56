/**
 * @file csvfile.h
 * @brief Streaming CSV reading and writing on top of libcsv (RFC 4180:
 *        quoted fields, embedded commas, quotes and newlines, CRLF).
 *
 * Ownership: csvf_open() returns a reader freed by csvf_close(). The fields
 * returned by csvf_next() are borrowed and live until the next call.
 */
#ifndef MLOPS_CSVFILE_H
#define MLOPS_CSVFILE_H

#include <stddef.h>
#include <stdio.h>

#include "util.h"

typedef struct csvf csvf_t;

/** Open @p path ("-" for stdin). NULL with errstr naming the path on failure. */
csvf_t *csvf_open(const char *path, char *errstr, size_t errstr_size);
void csvf_close(csvf_t *r);

/**
 * Read the next record. Returns 1 with *fields / *nfields set, 0 at the end,
 * -1 on a read or parse error (errstr says where: "path: record N: ...").
 */
int csvf_next(csvf_t *r, char ***fields, size_t *nfields, char *errstr, size_t errstr_size);

/** 1-based number of the record last returned (the header is record 1). */
size_t csvf_record(const csvf_t *r);

/** Write one field, quoted when it needs to be. */
void csvf_write_field(FILE *fp, const char *s, size_t len);

#endif
