/* jflat.c, checked against jansson (the oracle): on every generated and
 * mutated input, what jflat accepts jansson accepts with the same keys,
 * types and values; what jansson refuses jflat refuses. And spec_clean_flat
 * gives the same row or the same error as spec_clean on the golden bad
 * events and on valid events. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jflat.h"
#include "mjson.h"
#include "spec.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Compare one accepted flat parse with jansson's tree of the same bytes. */
static void same_as_jansson(const jflat_t *jf, const char *buf, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    cr_assert(j, "jflat accepted what jansson refuses (%s): %.*s", e.text, (int)len, buf);
    cr_assert(json_is_object(j));
    cr_assert_eq(json_object_size(j), jf->n, "%.*s", (int)len, buf);
    for (size_t i = 0; i < jf->n; i++) {
        const jflat_field_t *f = &jf->fields[i];
        cr_assert_eq(strlen(f->key), f->key_len);
        json_t *v = json_object_get(j, f->key);
        cr_assert(v, "key '%s' not in jansson's object", f->key);
        switch (f->type) {
        case JFLAT_NULL: cr_assert(json_is_null(v)); break;
        case JFLAT_TRUE: cr_assert(json_is_true(v)); break;
        case JFLAT_FALSE: cr_assert(json_is_false(v)); break;
        case JFLAT_INT:
            cr_assert(json_is_integer(v), "%s", f->key);
            cr_assert_eq(json_integer_value(v), f->i);
            break;
        case JFLAT_REAL:
            cr_assert(json_is_real(v), "%s", f->key);
            cr_assert(json_real_value(v) == f->d, "%s: %.17g vs %.17g", f->key, json_real_value(v),
                      f->d);
            break;
        case JFLAT_STRING:
            cr_assert(json_is_string(v));
            cr_assert_eq(json_string_length(v), f->s_len);
            cr_assert(!memcmp(json_string_value(v), f->s, f->s_len), "%s", f->key);
            break;
        }
    }
    json_decref(j);
}

static void check(const char *buf, size_t len)
{
    jflat_t jf;
    jflat_init(&jf);
    if (jflat_parse(&jf, buf, len) == 0)
        same_as_jansson(&jf, buf, len);
    jflat_cleanup(&jf);
}

static void rand_string(strbuf_t *sb)
{
    static const char *const parts[] = {"a",
                                        "Zz",
                                        " ",
                                        "\\\"",
                                        "\\\\",
                                        "\\/",
                                        "\\n",
                                        "\\t",
                                        "\\b",
                                        "\\f",
                                        "\\r",
                                        "\\u00e9",
                                        "\\u20AC",
                                        "\\ud83d\\ude00",
                                        "é",
                                        "€",
                                        "😀",
                                        "\\u0041",
                                        "x y",
                                        "\\u0000",
                                        "\\ud83d",
                                        "\\ude00",
                                        "\xc3",
                                        "\xe2\x82",
                                        "\xed\xa0\x80",
                                        "\xc0\xaf",
                                        "\xf4\x90\x80\x80",
                                        "\t",
                                        "\x01",
                                        "\\x",
                                        "\\u12G4"};
    strbuf_putc(sb, '"');
    int n = (int)rnd(6);
    for (int i = 0; i < n; i++)
        strbuf_puts(sb, parts[rnd(MLOPS_ARRAY_LEN(parts))]);
    strbuf_putc(sb, '"');
}

static void rand_value(strbuf_t *sb)
{
    static const char *const nums[] = {"0",
                                       "-0",
                                       "7",
                                       "-12",
                                       "123456789012345678",
                                       "1234567890123456789",
                                       "9223372036854775807",
                                       "-9223372036854775808",
                                       "99999999999999999999",
                                       "0.5",
                                       "-0.0",
                                       "1e3",
                                       "1E-3",
                                       "2.5e+10",
                                       "1e400",
                                       "-1e400",
                                       "1e-400",
                                       "01",
                                       "1.",
                                       ".5",
                                       "-",
                                       "1e",
                                       "1.5e",
                                       "3.14159265358979323846",
                                       "NaN",
                                       "Infinity",
                                       "+1",
                                       "0x10",
                                       "1_000"};
    switch (rnd(8)) {
    case 0: strbuf_puts(sb, "null"); break;
    case 1: strbuf_puts(sb, rnd(2) ? "true" : "false"); break;
    case 2: strbuf_puts(sb, rnd(2) ? "tru" : "nul"); break;
    case 3:
    case 4: strbuf_puts(sb, nums[rnd(MLOPS_ARRAY_LEN(nums))]); break;
    case 5: strbuf_puts(sb, rnd(2) ? "{\"x\":1}" : "[1,2]"); break;
    default: rand_string(sb); break;
    }
}

static void rand_object(strbuf_t *sb)
{
    static const char *const ws[] = {"", " ", "\n", "\t", "\r\n  "};
    strbuf_puts(sb, ws[rnd(5)]);
    strbuf_putc(sb, '{');
    int n = (int)rnd(8);
    for (int i = 0; i < n; i++) {
        if (i)
            strbuf_putc(sb, ',');
        strbuf_puts(sb, ws[rnd(5)]);
        if (rnd(5))
            strbuf_appendf(sb, "\"k%u\"", rnd(10)); /* duplicates happen */
        else
            rand_string(sb);
        strbuf_puts(sb, ws[rnd(5)]);
        strbuf_putc(sb, ':');
        strbuf_puts(sb, ws[rnd(5)]);
        rand_value(sb);
    }
    strbuf_putc(sb, '}');
    strbuf_puts(sb, ws[rnd(5)]);
}

Test(jflat, generated_and_mutated_inputs_agree_with_jansson)
{
    strbuf_t sb;
    strbuf_init(&sb);
    size_t accepted = 0;
    for (int round = 0; round < 60000; round++) {
        strbuf_reset(&sb);
        rand_object(&sb);
        if (round % 3 == 1 && sb.len) { /* flip, drop or insert a byte */
            size_t at = rnd((unsigned)sb.len);
            switch (rnd(3)) {
            case 0: sb.data[at] = (char)rnd(256); break;
            case 1:
                memmove(sb.data + at, sb.data + at + 1, sb.len - at - 1);
                sb.len--;
                break;
            default:
                strbuf_putc(&sb, ' ');
                memmove(sb.data + at + 1, sb.data + at, sb.len - at - 1);
                sb.data[at] = "{}[]\",:\\"[rnd(8)];
            }
        }
        jflat_t jf;
        jflat_init(&jf);
        if (jflat_parse(&jf, sb.data, sb.len) == 0) {
            same_as_jansson(&jf, sb.data, sb.len);
            accepted++;
        }
        jflat_cleanup(&jf);
    }
    strbuf_cleanup(&sb);
    /* the generator must exercise the accepting side too, not only refusals */
    cr_assert_gt(accepted, 5000, "only %zu accepted", accepted);
}

Test(jflat, fixed_cases)
{
    static const char *const ok[] = {"{}", " { } ", "{\"a\":1}",
                                     "{\"a\":\"\\u00e9\\ud83d\\ude00\",\"b\":null,\"c\":true}",
                                     "{\"n\":-0.0,\"m\":1e-300}"};
    static const char *const refused[] = {"",
                                          "[]",
                                          "1",
                                          "{\"a\":1,\"a\":2}",
                                          "{\"a\":{}}",
                                          "{\"a\":[1]}",
                                          "{\"a\":\"\\u0000\"}",
                                          "{\"a\":1} x",
                                          "{\"a\":NaN}",
                                          "{\"a\":1e400}",
                                          "{\"a\":\"\xff\"}",
                                          "{\"a\":1,}",
                                          "{a:1}",
                                          "{\"a\" 1}"};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(ok); i++) {
        jflat_t jf;
        jflat_init(&jf);
        cr_assert_eq(jflat_parse(&jf, ok[i], strlen(ok[i])), 0, "refused %s", ok[i]);
        same_as_jansson(&jf, ok[i], strlen(ok[i]));
        jflat_cleanup(&jf);
    }
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(refused); i++) {
        jflat_t jf;
        jflat_init(&jf);
        cr_assert_eq(jflat_parse(&jf, refused[i], strlen(refused[i])), -1, "accepted %s",
                     refused[i]);
        jflat_cleanup(&jf);
    }
    /* a key or string much longer than the starting buffers */
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "{\"long\":\"");
    for (int i = 0; i < 100000; i++)
        strbuf_putc(&sb, (char)('a' + i % 26));
    strbuf_puts(&sb, "\"}");
    check(sb.data, sb.len);
    strbuf_cleanup(&sb);
}

/* Both cleaning paths on the same bytes: same verdict, same row. Returns
 * 2 when jflat refused the bytes (jansson's path alone), else the verdict
 * (0 clean, -1 refused by the spec). */
static int same_clean(const spec_t *spec, const char *buf, size_t len)
{
    jflat_t jf;
    jflat_init(&jf);
    if (jflat_parse(&jf, buf, len)) {
        jflat_cleanup(&jf);
        return 2;
    }
    err_t *pe = NULL;
    json_t *j = mjson_parse_object(buf, len, 1 << 20, &pe);
    cr_assert(j, "jansson refused what jflat took: %s", pe ? pe->msg : "");
    spec_row_t ra, rb;
    spec_row_init(&ra, spec);
    spec_row_init(&rb, spec);
    spec_error_t ea, eb;
    int a = spec_clean(spec, j, &ra, &ea);
    int b = spec_clean_flat(spec, &jf, &rb, &eb);
    cr_assert_eq(a, b, "verdicts differ on %.*s", (int)len, buf);
    if (a) {
        cr_assert_str_eq(spec_reason_name(&ea), spec_reason_name(&eb));
        cr_assert_str_eq(ea.field, eb.field);
        cr_assert_str_eq(ea.detail, eb.detail);
    } else {
        cr_assert_str_eq(ra.event_id, rb.event_id);
        cr_assert_str_eq(ra.entity, rb.entity);
        cr_assert_eq(ra.event_time_ms, rb.event_time_ms);
        for (size_t c = 0; c < spec->ncolumns; c++) {
            cr_assert_eq(ra.values[c].kind, rb.values[c].kind, "column %s", spec->columns[c]);
            if (ra.values[c].kind == SPEC_V_STR)
                cr_assert_str_eq(ra.values[c].str, rb.values[c].str);
            else if (ra.values[c].kind == SPEC_V_NUM)
                cr_assert(ra.values[c].num == rb.values[c].num ||
                              (isnan(ra.values[c].num) && isnan(rb.values[c].num)),
                          "column %s", spec->columns[c]);
        }
    }
    spec_row_cleanup(&ra);
    spec_row_cleanup(&rb);
    json_decref(j);
    jflat_cleanup(&jf);
    return a;
}

Test(jflat, spec_clean_flat_matches_spec_clean_on_golden_and_valid_events)
{
    char err[1024];
    spec_t *spec = spec_load(MLOPS_SOURCE_DIR "/examples/attrition/spec.json", err, sizeof(err));
    cr_assert(spec, "%s", err);
    FILE *fp = fopen(MLOPS_SOURCE_DIR "/tests/golden/ingest_bad_events.jsonl", "r");
    cr_assert(fp);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int cases = 0, flat = 0;
    while ((n = getline(&line, &cap, fp)) > 0) {
        json_t *c = json_loadb(line, (size_t)n, 0, NULL);
        cr_assert(c);
        const char *payload = json_string_value(json_object_get(c, "payload"));
        cr_assert(payload);
        size_t plen = json_string_length(json_object_get(c, "payload"));
        int v = same_clean(spec, payload, plen);
        cr_assert_neq(v, 0, "a golden bad event was accepted: %s", payload);
        flat += v != 2;
        cases++;
        json_decref(c);
    }
    free(line);
    fclose(fp);
    cr_assert_geq(cases, 200);
    cr_assert_gt(flat, 100, "only %d golden cases took the fast path", flat);
    /* valid events, written the ways producers write them */
    static const char *const valid[] = {
        "{\"employee_id\":\"emp-1\",\"event_id\":\"ev-1\",\"event_time\":\"2026-01-01T09:00:00Z\","
        "\"age\":35,\"department\":\"Sales\",\"job_role\":\"Manager\",\"job_level\":2,"
        "\"monthly_income\":5200.5,\"overtime\":\"yes\",\"remote\":true,\"weekly_hours\":41.5,"
        "\"years_at_company\":5,\"years_since_last_promotion\":2,\"job_satisfaction\":3}",
        "{\"employee_id\":17,\"event_id\":\" ev-2 \",\"event_time\":1767258000000,"
        "\"age\":\"44\",\"department\":\"  research   &  DEVELOPMENT \",\"job_role\":\"research "
        "scientist\",\"job_level\":\"3\",\"monthly_income\":\"7100\",\"overtime\":\"No\","
        "\"remote\":\"0\",\"gender\":\"\\u004dale\",\"weekly_hours\":null,\"last_review_at\":"
        "\"2025-06-01T00:00:00+02:00\",\"years_at_company\":\"12\",\"years_since_last_promotion\":"
        "4}",
        "{\"employee_id\":\"emp-3\",\"event_id\":\"ev-3\",\"event_time\":\"2026-01-01T09:00:00."
        "250Z\","
        "\"age\":29.0,\"department\":\"human resources\",\"job_role\":\"Manager\",\"job_level\":1,"
        "\"monthly_income\":1e4,\"overtime\":\" YES "
        "\",\"gender\":\"\",\"remote\":false,\"years_at_company\":0,"
        "\"years_since_last_promotion\":0}",
    };
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(valid); i++)
        cr_assert_eq(same_clean(spec, valid[i], strlen(valid[i])), 0, "valid event %zu", i);
    spec_destroy(spec);
}
