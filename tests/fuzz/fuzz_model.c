/*
 * Fuzz target: the model/1 artifact loader (model_parse(); the registry runs
 * it on every upload, the scorer and the monitor on every load), then the
 * scoring path on a loaded model: model_encode_json() of a features/1
 * "values" object and model_predict().
 *
 * Checked beyond "no crash, no leak, no UB" (a malformed tree must be
 * refused, never walked out of bounds or in a cycle): a loaded model scores
 * an all-missing row and a row of the document's own fill values to a
 * probability in [0, 1].
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_LVL_FATAL);
    return 0;
}

static void score(const model_t *m, const json_t *values)
{
    const spec_t *spec = model_spec(m);
    spec_value_t *scratch = xcalloc(spec->ncolumns ? spec->ncolumns : 1, sizeof(*scratch));
    size_t nslots = model_nslots(m);
    double *x = xcalloc(nslots ? nslots : 1, sizeof(*x));
    size_t ninputs = 0;
    model_inputs(m, &ninputs);
    size_t missing = model_encode_json(m, values, scratch, x);
    FUZZ_CHECK(missing <= ninputs, "%zu missing of %zu inputs", missing, ninputs);
    double p = model_predict(m, x);
    FUZZ_CHECK(p >= 0.0 && p <= 1.0, "probability %g", p);
    free(x);
    free(scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    model_t *m = model_parse((const char *)data, size, err, sizeof(err));
    if (!m) {
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) && err[0], "no error message");
        return 0;
    }
    json_t *values = json_object();
    score(m, values);
    /* every input at a value: its category map's first entry or 1.5 */
    size_t n = 0;
    const model_input_t *in = model_inputs(m, &n);
    for (size_t i = 0; i < n; i++)
        json_object_set_new(values, in[i].column,
                            in[i].categorical && in[i].ncats ? json_string(in[i].cats[0])
                                                             : json_real(1.5));
    score(m, values);
    json_decref(values);
    model_destroy(m);
    return 0;
}
