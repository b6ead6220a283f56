/* util.c: parsing, strbuf, JSON string escaping, SHA-256, file reading. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "util.h"

Test(util, parse_int64_accepts_whole_numbers_only)
{
    int64_t v = 0;
    cr_assert_eq(parse_int64("42", &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(parse_int64("-9223372036854775808", &v), 0);
    cr_assert_eq(v, INT64_MIN);
    cr_assert_eq(parse_int64("9223372036854775808", &v), -1, "overflow must fail");
    cr_assert_eq(parse_int64("12abc", &v), -1);
    cr_assert_eq(parse_int64("", &v), -1);
    cr_assert_eq(parse_int64(" 1", &v), -1);
    cr_assert_eq(parse_int64("1.5", &v), -1);
}

Test(util, parse_double_refuses_non_finite)
{
    double d = 0;
    cr_assert_eq(parse_double("0.25", &d), 0);
    cr_assert_float_eq(d, 0.25, 0);
    cr_assert_eq(parse_double("nan", &d), -1);
    cr_assert_eq(parse_double("inf", &d), -1);
    cr_assert_eq(parse_double("1e999", &d), -1);
    cr_assert_eq(parse_double("1x", &d), -1);
}

Test(util, parse_bool_words)
{
    bool b = false;
    const char *yes[] = {"true", "YES", "on", "1"}, *no[] = {"false", "No", "OFF", "0"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(parse_bool(yes[i], &b), 0);
        cr_assert(b, "%s", yes[i]);
        cr_assert_eq(parse_bool(no[i], &b), 0);
        cr_assert_not(b, "%s", no[i]);
    }
    cr_assert_eq(parse_bool("maybe", &b), -1);
}

Test(util, strbuf_grows_and_formats)
{
    strbuf_t sb;
    strbuf_init(&sb);
    for (int i = 0; i < 1000; i++)
        strbuf_appendf(&sb, "%d,", i);
    cr_assert(str_starts_with(sb.data, "0,1,2,"));
    cr_assert_eq(sb.len, strlen(sb.data));
    cr_assert(strstr(sb.data, ",999,") != NULL);
    size_t len;
    char *p = strbuf_detach(&sb, &len);
    cr_assert_eq(len, strlen(p));
    cr_assert_eq(sb.len, 0, "detach leaves an empty, reusable buffer");
    free(p);
    strbuf_cleanup(&sb);
}

Test(util, json_string_escapes_controls_and_bad_utf8)
{
    strbuf_t sb;
    strbuf_init(&sb);
    const char in[] = "a\"b\\c\n\x01 \xc3\xa9 \xff end";
    strbuf_json_str(&sb, in, sizeof(in) - 1);
    cr_assert_str_eq(sb.data, "\"a\\\"b\\\\c\\n\\u0001 \xc3\xa9 \\ufffd end\"");
    strbuf_reset(&sb);
    /* overlong encoding of '/' and a lone surrogate are not valid UTF-8 */
    strbuf_json_str(&sb, "\xc0\xaf\xed\xa0\x80", 5);
    cr_assert_str_eq(sb.data, "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
    strbuf_cleanup(&sb);
}

Test(util, sha256_matches_fips_vector_and_sha256sum)
{
    char hex[65];
    /* FIPS 180-2, appendix B.1: SHA-256("abc") */
    sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* and an independent implementation on random bytes: coreutils' sha256sum */
    char path[] = "/tmp/mlops-sha-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    unsigned char buf[4099];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(rand() & 0xff);
    cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    close(fd);
    char *cmd = xasprintf("sha256sum %s", path);
    FILE *p = popen(cmd, "r");
    char want[65] = {0};
    cr_assert_eq(fscanf(p, "%64s", want), 1);
    pclose(p);
    unlink(path);
    free(cmd);
    sha256_hex(buf, sizeof(buf), hex);
    cr_assert_str_eq(hex, want);
}

Test(util, file_read_all_enforces_limit_and_names_path)
{
    char path[] = "/tmp/mlops-read-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, "0123456789", 10), 10);
    close(fd);
    char err[256];
    size_t len;
    char *s = file_read_all(path, 100, &len, err, sizeof(err));
    cr_assert(s);
    cr_assert_eq(len, 10);
    cr_assert_str_eq(s, "0123456789");
    free(s);
    cr_assert_null(file_read_all(path, 5, &len, err, sizeof(err)));
    cr_assert(strstr(err, path) && strstr(err, "limit"), "%s", err);
    unlink(path);
    cr_assert_null(file_read_all(path, 5, &len, err, sizeof(err)));
    cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(util, rfc3339_formats_utc_millis)
{
    char buf[32];
    /* 2026-11-25T10:00:00.123Z = 1795600800 s since the epoch (date -u -d) */
    FILE *p = popen("date -u -d 2026-11-25T10:00:00Z +%s", "r");
    long long secs = 0;
    cr_assert_eq(fscanf(p, "%lld", &secs), 1);
    pclose(p);
    fmt_rfc3339(secs * 1000000 + 123456, buf, sizeof(buf));
    cr_assert_str_eq(buf, "2026-11-25T10:00:00.123Z");
}

Test(util, fmt_num_round_trips_and_prints_whole_numbers_as_integers)
{
    char buf[32], want[64];
    static const double whole[] = {
        0, 1, -1, 9, 10, 42, -7, 123456789, -9007199254740991.0, 9007199254740991.0, 1e15};
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        size_t n = fmt_double_rt(whole[i], buf);
        snprintf(want, sizeof(want), "%.0f", whole[i]);
        cr_assert_str_eq(buf, want);
        cr_assert_eq(n, strlen(want));
    }
    cr_assert_str_eq((fmt_double_rt(-0.0, buf), buf), "0");
    /* decimals come out as written; what has no short form stays exact */
    static const struct {
        double v;
        const char *text;
    } dec[] = {{0.1, "0.1"},
               {12.34, "12.34"},
               {-0.5, "-0.5"},
               {0.0425, "0.0425"},
               {1234.5678, "1234.5678"},
               {0.0001, "0.0001"},
               {0.1 + 0.2, "0.30000000000000004"},
               {1e-5, "1.0000000000000001e-05"},
               {2.5e15 + 0.5, "2500000000000000.5"}};
    for (size_t i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
        fmt_double_rt(dec[i].v, buf);
        cr_assert_str_eq(buf, dec[i].text);
    }
    /* anything else: strtod gives the same double back */
    uint64_t s = 42;
    for (int i = 0; i < 200000; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t bits = s ^ (s >> 29);
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v))
            continue;
        if (i % 3 == 1)
            v = (double)(int64_t)(bits >> 12) / 1000.0; /* decimals as users write them */
        else if (i % 3 == 2)
            v = (double)(bits >> 20) * 1e-9; /* small ones, many digits */
        size_t n = fmt_double_rt(v, buf);
        cr_assert_eq(n, strlen(buf));
        cr_assert_eq(strtod(buf, NULL), v, "%s does not read back as %.17g", buf, v);
    }
}
