/*
 * Fuzz target: the feature-spec loader (spec_parse(), which spec_load(),
 * the model loader and every service use), then the cleaner on the events a
 * loaded spec must refuse or take without trouble.
 *
 * Checked beyond "no crash, no leak, no UB": a spec that loads loads again
 * from its canonical form with the same hash, columns and no difference
 * (spec_diff() says 0): the hash names the spec across services, so it must
 * not depend on how the bytes were written. Cleaning an empty event and one
 * with only the ids must not crash, and a refusal names a dlq/1 reason.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "records.h"
#include "spec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_LVL_FATAL);
    return 0;
}

static bool is_dlq_reason(const char *r)
{
    for (size_t i = 0; i < REC_DLQ_NREASONS; i++)
        if (!strcmp(r, rec_dlq_reasons[i]))
            return true;
    return false;
}

static void clean(const spec_t *spec, json_t *event)
{
    spec_row_t row;
    spec_row_init(&row, spec);
    spec_error_t se;
    if (spec_clean(spec, event, &row, &se))
        FUZZ_CHECK(is_dlq_reason(spec_reason_name(&se)), "reason '%s' is not a dlq/1 reason",
                   spec_reason_name(&se));
    spec_row_cleanup(&row);
    json_decref(event);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    spec_t *spec = spec_parse((const char *)data, size, err, sizeof(err));
    if (!spec) {
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) && err[0], "no error message");
        return 0;
    }
    char *canon = json_dumps(spec->doc, JSON_COMPACT | JSON_SORT_KEYS);
    FUZZ_CHECK(canon, "the spec's document does not dump");
    spec_t *again = spec_parse(canon, strlen(canon), err, sizeof(err));
    FUZZ_CHECK(again, "the canonical form of a loaded spec does not load: %s", err);
    FUZZ_CHECK(!strcmp(spec->hash, again->hash), "hash %s, canonical form's %s", spec->hash,
               again->hash);
    FUZZ_CHECK(spec->ncolumns == again->ncolumns, "columns %zu vs %zu", spec->ncolumns,
               again->ncolumns);
    strbuf_t report;
    strbuf_init(&report);
    int d = spec_diff(spec, again, &report);
    FUZZ_CHECK(d == 0, "spec_diff of a spec and its canonical form: %d: %s", d,
               report.data ? report.data : "");
    strbuf_cleanup(&report);
    spec_destroy(again);
    free(canon);

    clean(spec, json_object());
    clean(spec, json_pack("{s:s,s:s,s:s}", spec->entity, "e-1", spec->event_id, "ev-1",
                          spec->event_time, "2026-11-25T10:00:00Z"));
    spec_destroy(spec);
    return 0;
}
