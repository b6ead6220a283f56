/* krange.c: the positions users type for replay and dlq --since. */
#include <criterion/criterion.h>
#include <string.h>

#include "krange.h"

static krange_pos_t parse_ok(const char *s, int64_t now)
{
    krange_pos_t p;
    char err[256];
    cr_assert_eq(krange_pos_parse(s, now, &p, err, sizeof(err)), 0, "%s: %s", s, err);
    return p;
}

Test(krange, named_ends_and_offsets)
{
    cr_assert_eq(parse_ok("beginning", 0).kind, KRANGE_BEGINNING);
    cr_assert_eq(parse_ok("earliest", 0).kind, KRANGE_BEGINNING);
    cr_assert_eq(parse_ok("end", 0).kind, KRANGE_END);
    krange_pos_t p = parse_ok("1200", 0);
    cr_assert_eq(p.kind, KRANGE_OFFSET);
    cr_assert_eq(p.value, 1200);
}

Test(krange, times_absolute_epoch_and_relative)
{
    krange_pos_t p = parse_ok("2026-11-25T10:00:00Z", 0);
    cr_assert_eq(p.kind, KRANGE_TIME);
    cr_assert_eq(p.value, 1795600800000LL); /* date -d 2026-11-25T10:00:00Z +%s */
    p = parse_ok("2026-11-25T11:00:00+01:00", 0);
    cr_assert_eq(p.value, 1795600800000LL);
    p = parse_ok("@1795600800123", 0);
    cr_assert_eq(p.kind, KRANGE_TIME);
    cr_assert_eq(p.value, 1795600800123LL);
    int64_t now = 1795600800000LL;
    cr_assert_eq(parse_ok("-90s", now).value, now - 90000);
    cr_assert_eq(parse_ok("-30m", now).value, now - 1800000);
    cr_assert_eq(parse_ok("-2h", now).value, now - 7200000);
    cr_assert_eq(parse_ok("-7d", now).value, now - 7 * 86400000LL);
}

Test(krange, bad_positions_name_themselves)
{
    static const char *bad[] = {
        "", "yesterday", "-5", "-5y", "12abc", "@", "@-3", "-1h2", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        krange_pos_t p;
        char err[256] = "";
        cr_assert_eq(krange_pos_parse(bad[i], 0, &p, err, sizeof(err)), -1, "'%s' accepted",
                     bad[i]);
        cr_assert(strlen(err) > 0);
        if (*bad[i])
            cr_assert(strstr(err, bad[i]), "error does not name '%s': %s", bad[i], err);
    }
}
