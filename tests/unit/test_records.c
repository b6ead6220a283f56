/* records.c: a dlq/1 record's original bytes come back exactly as they went
 * in (text and base64, at and past the 64 KiB cut), and a damaged record is
 * refused rather than re-driven wrong. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"

static json_t *dlq_of(const void *orig, size_t len)
{
    strbuf_t sb;
    strbuf_init(&sb);
    rec_source_t src = {.topic = "events.raw", .partition = 2, .offset = 41};
    rec_dlq("bad_json", "", "not JSON", "attrition", &src, orig, len, 1764064800000000, &sb);
    json_error_t jerr;
    json_t *rec = json_loadb(sb.data, sb.len, JSON_REJECT_DUPLICATES, &jerr);
    cr_assert(rec, "dlq record is not JSON: %s: %.*s", jerr.text, (int)sb.len, sb.data);
    strbuf_cleanup(&sb);
    return rec;
}

static void round_trip(const void *orig, size_t len, const char *want_encoding)
{
    json_t *rec = dlq_of(orig, len);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_object_get(rec, "original"), "encoding")),
        want_encoding);
    unsigned char *back;
    size_t n;
    bool truncated;
    char err[256];
    cr_assert_eq(rec_dlq_original(rec, &back, &n, &truncated, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(truncated);
    cr_assert_eq(n, len);
    cr_assert(len == 0 || !memcmp(back, orig, len), "bytes differ after the round trip");
    free(back);
    json_decref(rec);
}

Test(records, text_original_round_trips)
{
    const char *s = "{\"a\": \"é\"";
    round_trip(s, strlen(s), "utf8");
}

Test(records, binary_originals_of_every_padding_round_trip)
{
    unsigned char bin[7] = {0xff, 0x00, 0xfe, 0x01, 0x80, 0x00, 0x7f};
    for (size_t len = 1; len <= sizeof(bin); len++) /* 1, 2 and 0 '=' of padding */
        round_trip(bin, len, "base64");
}

Test(records, empty_original_round_trips) { round_trip("", 0, "utf8"); }

Test(records, original_past_64k_comes_back_cut_and_marked)
{
    size_t len = REC_ORIGINAL_MAX + 100;
    char *big = malloc(len);
    memset(big, 'x', len);
    json_t *rec = dlq_of(big, len);
    unsigned char *back;
    size_t n;
    bool truncated;
    char err[256];
    cr_assert_eq(rec_dlq_original(rec, &back, &n, &truncated, err, sizeof(err)), 0, "%s", err);
    cr_assert(truncated);
    cr_assert_eq(n, (size_t)REC_ORIGINAL_MAX);
    free(back);
    json_decref(rec);
    free(big);
}

Test(records, damaged_original_refused)
{
    json_t *rec = dlq_of("{\"event_id\": 1}", 15);
    json_object_set_new(json_object_get(rec, "original"), "bytes",
                        json_string("{\"event_id\": 2}"));
    unsigned char *back = (unsigned char *)"untouched";
    size_t n;
    bool truncated;
    char err[256];
    cr_assert_eq(rec_dlq_original(rec, &back, &n, &truncated, err, sizeof(err)), -1);
    cr_assert_null(back);
    cr_assert(strstr(err, "sha256"), "%s", err);
    json_object_set_new(json_object_get(rec, "original"), "encoding", json_string("rot13"));
    cr_assert_eq(rec_dlq_original(rec, &back, &n, &truncated, err, sizeof(err)), -1);
    cr_assert(strstr(err, "rot13"), "%s", err);
    json_object_del(rec, "original");
    cr_assert_eq(rec_dlq_original(rec, &back, &n, &truncated, err, sizeof(err)), -1);
    cr_assert(strstr(err, "not a dlq/1 record"), "%s", err);
    json_decref(rec);
}
