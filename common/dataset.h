/**
 * @file dataset.h
 * @brief A CSV file cleaned by a feature spec, for the offline paths
 *        (`mlops-trainer fit --data`, `mlopsctl predict`): every row goes
 *        through spec_clean() (the code ingest runs), then the rolling
 *        aggregates are applied per entity in event-time order (as the
 *        stream would have seen them). Rows stay in input order.
 *
 * The label column (if asked for) is read from the raw cell, trimmed, and
 * mapped to 1 (the positive class) or 0 (the one other class); it is not
 * passed to the spec.
 *
 * Ownership: dataset_load_csv() returns a table freed by dataset_destroy();
 * the spec is borrowed and must outlive it. Strings in the values live as
 * long as the table.
 */
#ifndef MLOPS_DATASET_H
#define MLOPS_DATASET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "spec.h"
#include "util.h"

typedef struct dataset_opts {
    const char *label;    /**< label column, or NULL */
    const char *positive; /**< its positive class (required with a label) */
    bool need_label;      /**< a missing label cell is an error (training) */
    bool strict;          /**< a row the spec refuses is an error (training) */
} dataset_opts_t;

typedef struct dataset {
    const spec_t *spec;
    size_t nrows;
    size_t ncolumns;
    spec_value_t *vals; /**< nrows x ncolumns (spec output columns) */
    size_t *line;       /**< CSV record number of each row (the header is 1) */
    int *label;         /**< 0/1, or -1 without a label */
    bool *ok;           /**< false: refused by the spec (only when !strict) */
    char **why;         /**< the refusal, for rows that are not ok */
    size_t nrefused;
    char *negative; /**< the label's other class, as seen in the file */
    char **arenas;  /* per-row string storage */
    size_t cap;     /* rows allocated */
} dataset_t;

/**
 * Read and clean @p path. Errors name the file, the record and the column:
 * "data.csv:17: column 'left': label 'maybe' is neither the positive class
 * 'yes' nor the other class 'no' (first seen at line 2)". Returns NULL with
 * errstr on error.
 */
dataset_t *dataset_load_csv(const spec_t *spec, const char *path, const dataset_opts_t *opts,
                            char *errstr, size_t errstr_size);
void dataset_destroy(dataset_t *ds);

/**
 * An empty table for @p spec, filled row by row with dataset_add_values():
 * the streaming trainer's rows, features/1 values as ingest cleaned and
 * feature-engineered them (rolling aggregates included), so nothing is
 * cleaned again.
 */
dataset_t *dataset_new(const spec_t *spec);

/**
 * Append one features/1 "values" object: every spec column is read by name
 * (null or absent: missing); a categorical field takes a string, every other
 * column a finite number (true/false count as 1/0). @p label is 0 or 1,
 * @p line the row's number for messages. Returns 0, or -1 with errstr naming
 * the column, and the row is not added.
 */
int dataset_add_values(dataset_t *ds, const json_t *values, int label, size_t line, char *errstr,
                       size_t errstr_size) MLOPS_WUR;

/** Drop the rows whose @p keep is false, keeping the others' order. */
void dataset_keep(dataset_t *ds, const bool *keep);

/** Lower-case hex SHA-256 of a file, streamed. Returns 0 or -1 with errstr. */
int dataset_file_sha256(const char *path, char hex[65], char *errstr, size_t errstr_size) MLOPS_WUR;

#endif
