/*
 * Fuzz target: mlops-ingest's validator and cleaner, one raw event as
 * pipeline.c's parse_and_clean() and render() handle it, against each
 * example spec (examples/attrition, creditcard, titanic: every field type,
 * missing policy and derived operation we ship).
 *
 * Checked for every input, beyond "no crash, no leak, no UB":
 *  - the fast path agrees with jansson: when jflat_parse() takes the bytes,
 *    spec_clean_flat() gives the same verdict, reason, field and values as
 *    spec_clean() on mjson_parse_object() of the same bytes (jflat.h and
 *    spec.h promise it; a skew would send one event two ways);
 *  - the record ingest writes (features/1 or dlq/1) is one JSON object with
 *    the right schema, and a dlq/1 record gives the original bytes back;
 *  - the rolling state of the row survives rolling_encode()/rolling_decode().
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "jflat.h"
#include "log.h"
#include "mjson.h"
#include "records.h"
#include "rolling.h"
#include "spec.h"

#define MAX_EVENT_BYTES (1024 * 1024) /* ingest's max_event_bytes default */

static const char *const spec_files[] = {
    "examples/attrition/spec.json", "examples/creditcard/spec.json", "examples/titanic/spec.json"};
#define NSPECS (sizeof(spec_files) / sizeof(spec_files[0]))
static spec_t *specs[NSPECS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_LVL_FATAL); /* the code under test may log; keep the output short */
    for (size_t i = 0; i < NSPECS; i++) {
        char path[4096], err[512];
        snprintf(path, sizeof(path), "%s/%s", MLOPS_SOURCE_DIR, spec_files[i]);
        specs[i] = spec_load(path, err, sizeof(err));
        if (!specs[i]) {
            fprintf(stderr, "fuzz_ingest: %s\n", err);
            abort();
        }
    }
    return 0;
}

static bool same_value(const spec_value_t *a, const spec_value_t *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == SPEC_V_NUM)
        return (isnan(a->num) && isnan(b->num)) || a->num == b->num;
    if (a->kind == SPEC_V_STR)
        return !strcmp(a->str, b->str);
    return true;
}

static void check_record(const spec_t *spec, const strbuf_t *out, bool ok, const uint8_t *data,
                         size_t size)
{
    json_error_t je;
    json_t *rec = json_loadb(out->data, out->len, JSON_REJECT_DUPLICATES, &je);
    FUZZ_CHECK(json_is_object(rec), "%s record is not a JSON object: %s: %.*s",
               ok ? "features/1" : "dlq/1", je.text, (int)out->len, out->data);
    const char *schema = json_string_value(json_object_get(rec, "schema"));
    FUZZ_CHECK(schema && !strcmp(schema, ok ? "features/1" : "dlq/1"), "schema %s",
               schema ? schema : "(none)");
    if (ok) {
        json_t *values = json_object_get(rec, "values");
        FUZZ_CHECK(json_object_size(values) == spec->ncolumns, "%zu values for %zu columns",
                   json_object_size(values), spec->ncolumns);
    } else {
        unsigned char *orig = NULL;
        size_t olen = 0;
        bool truncated = false;
        char err[256];
        FUZZ_CHECK(rec_dlq_original(rec, &orig, &olen, &truncated, err, sizeof(err)) == 0,
                   "dlq/1 original: %s", err);
        size_t want = size < REC_ORIGINAL_MAX ? size : REC_ORIGINAL_MAX;
        FUZZ_CHECK(olen == want && !memcmp(orig, data, olen) && truncated == (size > want),
                   "dlq/1 original bytes differ (%zu of %zu)", olen, size);
        free(orig);
    }
    json_decref(rec);
}

static void run_spec(const spec_t *spec, const uint8_t *data, size_t size, jflat_t *flat)
{
    spec_row_t row, frow;
    spec_row_init(&row, spec);
    spec_row_init(&frow, spec);
    spec_error_t se = {0}, fse = {0};
    bool ok = false;
    const char *reason = "bad_json", *field = "", *detail = "empty payload";

    /* the hot path, as parse_and_clean() takes it */
    bool flat_ok = size <= MAX_EVENT_BYTES && jflat_parse(flat, (const char *)data, size) == 0;
    int frc = flat_ok ? spec_clean_flat(spec, flat, &frow, &fse) : -1;

    err_t *e = NULL;
    json_t *obj = size ? mjson_parse_object((const char *)data, size, MAX_EVENT_BYTES, &e) : NULL;
    FUZZ_CHECK(!flat_ok || obj, "jflat took bytes jansson refuses: %s", e ? e->msg : "?");
    if (obj) {
        int rc = spec_clean(spec, obj, &row, &se);
        ok = rc == 0;
        if (!ok) {
            reason = spec_reason_name(&se);
            field = se.field;
            detail = se.detail;
        }
        if (flat_ok) {
            FUZZ_CHECK(frc == rc, "spec %s: flat path %s, jansson path %s (%s: %s / %s: %s)",
                       spec->name, frc ? "refused" : "took", rc ? "refused" : "took",
                       frc ? spec_reason_name(&fse) : "", fse.detail,
                       rc ? spec_reason_name(&se) : "", se.detail);
            if (rc) {
                FUZZ_CHECK(!strcmp(spec_reason_name(&fse), spec_reason_name(&se)) &&
                               !strcmp(fse.field, se.field),
                           "reasons differ: flat %s %s, jansson %s %s", spec_reason_name(&fse),
                           fse.field, spec_reason_name(&se), se.field);
            } else {
                FUZZ_CHECK(!strcmp(frow.event_id, row.event_id) &&
                               !strcmp(frow.entity, row.entity) &&
                               frow.event_time_ms == row.event_time_ms,
                           "ids or time differ");
                for (size_t i = 0; i < spec->ncolumns; i++)
                    FUZZ_CHECK(same_value(&frow.values[i], &row.values[i]),
                               "column %s differs between the flat and the jansson path",
                               spec->columns[i]);
            }
        }
    } else if (e) {
        reason = mjson_code_name((mjson_code_t)e->code);
        detail = e->msg;
    }

    rec_source_t src = {.topic = "events.raw", .partition = 0, .offset = 42};
    strbuf_t out;
    strbuf_init(&out);
    if (ok && spec->nrolling) {
        rolling_state_t *st = rolling_new(spec);
        FUZZ_CHECK(rolling_apply(spec, st, &row, rolling_source_id(src.topic), 0, 42) == 0,
                   "first apply is not new");
        strbuf_t enc;
        strbuf_init(&enc);
        rolling_encode(st, &enc);
        char err[256];
        rolling_state_t *back = rolling_decode(spec, enc.data, enc.len, err, sizeof(err));
        FUZZ_CHECK(back && rolling_size(back) == rolling_size(st), "rolling state round trip: %s",
                   back ? "size differs" : err);
        rolling_destroy(back);
        rolling_destroy(st);
        strbuf_cleanup(&enc);
    }
    if (ok && rec_features(spec, &row, &src, 1764064800000000LL, &out)) {
        ok = false;
        reason = "non_finite";
        field = "";
        detail = "a feature value is not finite";
    }
    if (!ok) {
        strbuf_reset(&out);
        rec_dlq(reason, field, detail, spec->name, &src, data, size, 1764064800000000LL, &out);
    }
    check_record(spec, &out, ok, data, size);

    strbuf_cleanup(&out);
    json_decref(obj);
    err_destroy(e);
    spec_row_cleanup(&row);
    spec_row_cleanup(&frow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    jflat_t flat;
    jflat_init(&flat);
    for (size_t i = 0; i < NSPECS; i++)
        run_spec(specs[i], data, size, &flat);
    jflat_cleanup(&flat);
    return 0;
}
