/* The monitor's drift state (services/monitor/dstate.c): window lists, bad
 * profiles, tumbling and sliding ticks, window contents and every input's
 * result against a brute-force recomputation (the last SIZE values of the
 * stream, tested with drift_column directly), the dataset share. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drift.h"
#include "dstate.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double unif(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static const char *const CATS[] = {"red", "green", "blue", "cyan"};

/* A model/1-shaped document with the fields dstate reads: x numeric (a
 * normal-ish sample of nref), c categorical (nref), k numeric with few
 * values, and s without a sample. */
static json_t *doc_new(size_t nref)
{
    json_t *xs = json_array(), *cs = json_array(), *ks = json_array();
    for (size_t i = 0; i < nref; i++) {
        json_array_append_new(xs, json_real(unif() + unif() + unif()));
        json_array_append_new(cs, json_string(CATS[rnd() % 3]));
        json_array_append_new(ks, json_integer((json_int_t)(rnd() % 2)));
    }
    return json_pack("{s:s, s:{s:s}, s:{s:[{s:s,s:s,s:o},{s:s,s:s,s:o},{s:s,s:s,s:o},"
                     "{s:s,s:s,s:n}]}}",
                     "name", "m1", "spec", "name", "sp", "profile", "inputs", "column", "x", "kind",
                     "numeric", "sample", xs, "column", "c", "kind", "categorical", "sample", cs,
                     "column", "k", "kind", "numeric", "sample", ks, "column", "s", "kind",
                     "numeric", "sample");
}

Test(dstate, parse_windows)
{
    dstate_win_t w[DSTATE_MAX_WINDOWS];
    char err[256];
    cr_assert_eq(dstate_parse_windows("1000", w, err, sizeof(err)), 1);
    cr_assert(w[0].size == 1000 && w[0].step == 1000);
    cr_assert_eq(dstate_parse_windows("1000/250,50", w, err, sizeof(err)), 2);
    cr_assert(w[0].size == 1000 && w[0].step == 250 && w[1].size == 50 && w[1].step == 50);
    const char *bad[] = {"", "0", "10/20", "a", "5,", "5/0", ",5", "1,2,3,4,5,6,7,8,9", "5/x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        cr_assert_eq(dstate_parse_windows(bad[i], w, err, sizeof(err)), -1, "'%s'", bad[i]);
        cr_assert(strstr(err, "windows"), "'%s': %s", bad[i], err);
    }
}

Test(dstate, bad_documents_name_the_field)
{
    dstate_win_t w = {.size = 10, .step = 10};
    char err[256];
    struct {
        const char *json, *field;
    } cases[] = {
        {"{\"spec\":{\"name\":\"s\"},\"profile\":{\"inputs\":[]}}", "name"},
        {"{\"name\":\"m\",\"profile\":{\"inputs\":[]}}", "spec.name"},
        {"{\"name\":\"m\",\"spec\":{\"name\":\"s\"},\"profile\":{\"inputs\":[]}}",
         "profile.inputs"},
        {"{\"name\":\"m\",\"spec\":{\"name\":\"s\"},\"profile\":{\"inputs\":[{\"column\":\"a\","
         "\"kind\":\"text\"}]}}",
         "profile.inputs[0]"},
        {"{\"name\":\"m\",\"spec\":{\"name\":\"s\"},\"profile\":{\"inputs\":[{\"column\":\"a\","
         "\"kind\":\"numeric\",\"sample\":[1,\"x\"]}]}}",
         "profile.inputs[0].sample[1]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *doc = json_loads(cases[i].json, 0, NULL);
        cr_assert(doc);
        err[0] = 0;
        cr_assert_null(dstate_new(doc, "1", &w, 1, 0.5, err, sizeof(err)));
        cr_assert(strstr(err, cases[i].field), "case %zu: %s", i, err);
        json_decref(doc);
    }
    json_t *doc = doc_new(20);
    cr_assert_null(dstate_new(doc, "1", &w, 1, 0.0, err, sizeof(err)));
    cr_assert(strstr(err, "drift_share"));
    json_decref(doc);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The last @p size values of feature column @p f of the stream so far. */
static size_t last_values(double *stream, size_t n, size_t size, double *out)
{
    size_t k = 0;
    for (size_t i = n; i-- > 0 && k < size;)
        if (isfinite(stream[i]))
            out[k++] = stream[i];
    qsort(out, k, sizeof(double), cmp_d);
    return k;
}

static void run_stream(size_t nref, const char *wins, size_t nevents)
{
    json_t *doc = doc_new(nref);
    dstate_win_t w[DSTATE_MAX_WINDOWS];
    char err[256];
    int nw = dstate_parse_windows(wins, w, err, sizeof(err));
    cr_assert_gt(nw, 0, "%s", err);
    dstate_t *d = dstate_new(doc, "7", w, (size_t)nw, 0.5, err, sizeof(err));
    cr_assert(d, "%s", err);
    cr_assert_eq(dstate_nfeatures(d), 4);
    cr_assert_str_eq(dstate_model(d), "m1");
    cr_assert_str_eq(dstate_spec_name(d), "sp");
    cr_assert_eq(dstate_ref_count(d, 0), nref);
    cr_assert_eq(dstate_ref_count(d, 3), 0);
    /* the reference as the tests see it (categories as their codes) */
    double *ref[3];
    for (int f = 0; f < 3; f++) {
        ref[f] = malloc(nref * sizeof(double));
        const json_t *s = json_object_get(
            json_array_get(json_object_get(json_object_get(doc, "profile"), "inputs"), (size_t)f),
            "sample");
        for (size_t i = 0; i < nref; i++) {
            const json_t *v = json_array_get(s, i);
            ref[f][i] =
                f == 1 ? dstate_category_code(d, 1, json_string_value(v)) : json_number_value(v);
            cr_assert_geq(ref[f][i], 0);
        }
    }
    double *stream[4];
    for (int f = 0; f < 4; f++)
        stream[f] = malloc(nevents * sizeof(double));
    size_t maxw = 0;
    for (int i = 0; i < nw; i++)
        maxw = w[i].size > maxw ? w[i].size : maxw;
    double *a = malloc(maxw * sizeof(double)), *b = malloc(maxw * sizeof(double));
    uint64_t rejected = 0, ticks[DSTATE_MAX_WINDOWS] = {0};
    for (size_t e = 0; e < nevents; e++) {
        bool shifted = e >= nevents / 2; /* drift in the second half */
        json_t *vals = json_object();
        double x = unif() + unif() + unif() + (shifted ? 0.8 : 0);
        stream[0][e] = NAN;
        uint64_t r = rnd() % 20;
        if (r == 0) {
            json_object_set_new(vals, "x", json_null());
        } else if (r == 1) {
            json_object_set_new(vals, "x", json_string("oops")); /* wrong kind */
            rejected++;
        } else if (r != 2) { /* r == 2: absent */
            json_object_set_new(vals, "x", json_real(x));
            stream[0][e] = x;
        }
        const char *cat = CATS[shifted ? rnd() % 4 : rnd() % 3]; /* "cyan" is new */
        json_object_set_new(vals, "c", json_string(cat));
        json_int_t k = (json_int_t)(rnd() % (shifted ? 3 : 2));
        json_object_set_new(vals, "k", json_integer(k));
        stream[2][e] = (double)k;
        json_object_set_new(vals, "s", json_real(1.0));
        size_t ticked[DSTATE_MAX_WINDOWS];
        size_t nt = dstate_add(d, vals, DSTATE_NO_TIME, ticked);
        json_decref(vals);
        stream[1][e] = dstate_category_code(d, 1, cat);
        cr_assert_geq(stream[1][e], 0);
        size_t seen = e + 1, k2 = 0;
        for (int i = 0; i < nw; i++) {
            bool want = seen >= w[i].size && (seen - w[i].size) % w[i].step == 0;
            if (!want)
                continue;
            cr_assert_lt(k2, nt);
            cr_assert_eq(ticked[k2], (size_t)i, "event %zu", seen);
            k2++;
            ticks[i]++;
            cr_assert_eq(dstate_ticks(d, (size_t)i), ticks[i]);
            cr_assert_eq(dstate_tick_event(d, (size_t)i), seen);
            size_t ndrift = 0, ncomp = 0;
            for (size_t f = 0; f < 3; f++) {
                size_t na = last_values(stream[f], seen, w[i].size, a);
                size_t nb = dstate_window_sorted(d, (size_t)i, f, b);
                cr_assert_eq(na, nb, "window %d input %zu", i, f);
                for (size_t j = 0; j < na; j++)
                    cr_assert_eq(a[j], b[j]);
                drift_result_t want_r;
                char e2[160];
                cr_assert_eq(drift_column(f != 1, ref[f], nref, a, na, DRIFT_TEST_AUTO, NAN,
                                          &want_r, e2, sizeof(e2)),
                             0, "%s", e2);
                const dstate_col_t *c = dstate_result(d, (size_t)i, f);
                cr_assert(c->computed, "%s", c->error);
                cr_assert_eq(c->r.test, want_r.test);
                cr_assert(c->r.value == want_r.value || (isnan(c->r.value) && isnan(want_r.value)));
                cr_assert_eq(c->r.drifted, want_r.drifted);
                cr_assert_eq(c->r.n_cur, na);
                ndrift += want_r.drifted;
                ncomp++;
            }
            const dstate_col_t *cs = dstate_result(d, (size_t)i, 3);
            cr_assert_not(cs->computed);
            cr_assert(strstr(cs->error, "no reference sample"));
            bool drifted;
            double share = dstate_share(d, (size_t)i, &drifted);
            cr_assert_float_eq(share, (double)ndrift / (double)ncomp, 1e-15);
            cr_assert_eq(drifted, share >= 0.5);
        }
        cr_assert_eq(nt, k2, "event %zu", seen);
    }
    cr_assert_eq(dstate_events(d), nevents);
    cr_assert_eq(dstate_rejected(d), rejected);
    /* the drifted second half is seen as drifted by the last tick */
    for (int i = 0; i < nw; i++)
        if (ticks[i] && w[i].size <= nevents / 2) {
            bool drifted;
            (void)dstate_share(d, (size_t)i, &drifted);
            cr_assert(drifted, "window %d", i);
        }
    json_t *j = dstate_json(d);
    cr_assert_str_eq(json_string_value(json_object_get(j, "version")), "7");
    json_t *jw = json_array_get(json_object_get(j, "windows"), 0);
    cr_assert_eq(json_array_size(json_object_get(jw, "features")), 4);
    cr_assert(json_object_get(json_array_get(json_object_get(jw, "features"), 3), "error"));
    char *txt = json_dumps(j, 0);
    cr_assert(txt);
    free(txt);
    json_decref(j);
    for (int f = 0; f < 4; f++)
        free(stream[f]);
    for (int f = 0; f < 3; f++)
        free(ref[f]);
    free(a);
    free(b);
    dstate_destroy(d);
    json_decref(doc);
}

/* a small reference (KS / chi-square / Z) and a large one (Wasserstein /
 * Jensen-Shannon), tumbling and sliding windows at once */
Test(dstate, small_reference_tumbling_and_sliding) { run_stream(300, "50,80/20,7/3", 600); }
Test(dstate, large_reference_tumbling_and_sliding) { run_stream(1500, "200,120/40", 1000); }

Test(dstate, categories_past_the_cap_share_one_code)
{
    json_t *doc =
        json_pack("{s:s, s:{s:s}, s:{s:[{s:s,s:s,s:[s,s]}]}}", "name", "m", "spec", "name", "s",
                  "profile", "inputs", "column", "c", "kind", "categorical", "sample", "a", "b");
    dstate_win_t w = {.size = 10, .step = 10};
    char err[256];
    dstate_t *d = dstate_new(doc, "1", &w, 1, 0.5, err, sizeof(err));
    cr_assert(d, "%s", err);
    size_t ticked[1];
    char s[32];
    for (int i = 0; i < DSTATE_MAX_CATEGORIES + 10; i++) {
        snprintf(s, sizeof(s), "v%d", i);
        json_t *v = json_pack("{s:s}", "c", s);
        (void)dstate_add(d, v, DSTATE_NO_TIME, ticked);
        json_decref(v);
    }
    cr_assert_eq(dstate_category_code(d, 0, "a"), 0);
    cr_assert_eq(dstate_category_code(d, 0, "v0"), 2);
    cr_assert_eq(dstate_category_code(d, 0, s), -1); /* never coded: shares the "other" code */
    double buf[10];
    cr_assert_eq(dstate_window_sorted(d, 0, 0, buf), 10);
    cr_assert_eq(buf[0], (double)DSTATE_MAX_CATEGORIES);
    dstate_destroy(d);
    json_decref(doc);
}

Test(dstate, parse_event_time_windows)
{
    dstate_win_t w[DSTATE_MAX_WINDOWS];
    char err[256];
    cr_assert_eq(dstate_parse_windows("1h,30m+5m,500", w, err, sizeof(err)), 3, "%s", err);
    cr_assert(w[0].span_ms == 3600000 && w[0].lateness_ms == 0);
    cr_assert(w[1].span_ms == 1800000 && w[1].lateness_ms == 300000);
    cr_assert(w[2].span_ms == 0 && w[2].size == 500);
    const char *bad[] = {"1x", "h", "1h+", "1h+x", "0s", "-5m"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(dstate_parse_windows(bad[i], w, err, sizeof(err)), -1, "'%s'", bad[i]);
    json_t *doc = doc_new(50);
    cr_assert_eq(dstate_parse_windows("90s+250ms,2d", w, err, sizeof(err)), 2);
    dstate_t *d = dstate_new(doc, "1", w, 2, 0.5, err, sizeof(err));
    cr_assert(d, "%s", err);
    cr_assert_str_eq(dstate_window_name(d, 0), "90s+250ms");
    cr_assert_str_eq(dstate_window_name(d, 1), "2d");
    dstate_destroy(d);
    json_decref(doc);
}

/* Tumbling event-time windows of 100 ms with 30 ms of lateness next to a count
 * window: records jittered by up to 10 ms are never late, so each window tests
 * exactly the stream's values whose time falls in it; records for a closed
 * window and records without a time are late (the count window keeps them). */
static void run_event_time(const char *spec, int64_t span, int64_t hop)
{
    json_t *doc = doc_new(300);
    dstate_win_t w[2];
    char err[256];
    cr_assert_eq(dstate_parse_windows(spec, w, err, sizeof(err)), 2, "%s", err);
    dstate_t *d = dstate_new(doc, "1", w, 2, 0.5, err, sizeof(err));
    cr_assert(d, "%s", err);
    enum { N = 2000 };
    static double xs[N];
    static int64_t ts[N];
    static bool used[N];
    size_t ticks = 0, late = 0;
    double *buf = malloc(N * sizeof(double));
    for (size_t i = 0; i < N; i++) {
        int64_t t = (int64_t)(i / 2) + (int64_t)(rnd() % 21) - 10; /* 2 records per ms */
        bool no_time = i % 97 == 0, very_late = i > 400 && i % 101 == 0;
        if (very_late)
            t -= 200;
        xs[i] = unif() * (t > 500 ? 2 : 1);
        ts[i] = t;
        used[i] = !no_time && !very_late;
        late += !used[i];
        json_t *vals = json_pack("{s:f, s:s, s:i}", "x", xs[i], "c", "red", "k", 0);
        size_t ticked[2];
        size_t nt = dstate_add(d, vals, no_time ? DSTATE_NO_TIME : t, ticked);
        json_decref(vals);
        for (size_t k = 0; k < nt; k++) {
            if (ticked[k] != 0)
                continue;
            ticks++;
            int64_t start = dstate_tick_start(d, 0);
            cr_assert_eq(start % hop, 0);
            size_t n = 0;
            for (size_t j = 0; j <= i; j++)
                if (used[j] && ts[j] >= start && ts[j] < start + span)
                    buf[n++] = xs[j];
            drift_result_t want;
            char e2[160];
            cr_assert_eq(
                drift_column(true, NULL, 0, buf, n, DRIFT_TEST_AUTO, NAN, &want, e2, sizeof(e2)),
                -1); /* (an empty reference is refused: sanity of the call) */
            const json_t *s0 = json_object_get(
                json_array_get(json_object_get(json_object_get(doc, "profile"), "inputs"), 0),
                "sample");
            double ref[300];
            for (size_t r = 0; r < 300; r++)
                ref[r] = json_number_value(json_array_get(s0, r));
            cr_assert_eq(
                drift_column(true, ref, 300, buf, n, DRIFT_TEST_AUTO, NAN, &want, e2, sizeof(e2)),
                0, "%s", e2);
            const dstate_col_t *c = dstate_result(d, 0, 0);
            cr_assert(c->computed, "%s", c->error);
            cr_assert_eq(c->r.n_cur, n, "window at %lld", (long long)start);
            cr_assert_eq(c->r.test, want.test);
            cr_assert_eq(c->r.value, want.value);
            cr_assert_eq(c->r.drifted, want.drifted);
        }
    }
    /* an absurd time is no time (start + span must not overflow) */
    json_t *v = json_pack("{s:f}", "x", 1.0);
    size_t tk[2];
    uint64_t late0 = dstate_late(d);
    (void)dstate_add(d, v, INT64_MAX - 5, tk);
    (void)dstate_add(d, v, INT64_MIN + 5, tk);
    json_decref(v);
    cr_assert_eq(dstate_late(d), late0 + 2);
    late += 2;
    /* about 1000 ms of stream: a window ending at each closed pane, from
     * [-span, hop) up to the watermark */
    cr_assert_geq(ticks, (size_t)(800 / hop));
    cr_assert_eq(dstate_ticks(d, 0), ticks);
    cr_assert_eq(dstate_late(d), late);
    cr_assert_eq(dstate_ticks(d, 1), N / 50); /* the count window sees every record */
    cr_assert_eq(dstate_events(d), N + 2);
    free(buf);
    dstate_destroy(d);
    json_decref(doc);
}

Test(dstate, event_time_windows_test_their_own_records)
{
    run_event_time("100ms+30ms,50", 100, 100);
}

/* Sliding: a 100 ms window every 25 ms tests the records of its four panes. */
Test(dstate, sliding_event_time_windows_test_their_own_records)
{
    run_event_time("100ms/25ms+30ms,50", 100, 25);
}

Test(dstate, parse_sliding_event_time_windows)
{
    dstate_win_t w[DSTATE_MAX_WINDOWS];
    char err[256];
    cr_assert_eq(dstate_parse_windows("1h/15m+5m,2h/2h,1000/100", w, err, sizeof(err)), 3, "%s",
                 err);
    cr_assert(w[0].span_ms == 3600000 && w[0].hop_ms == 900000 && w[0].lateness_ms == 300000);
    cr_assert(w[1].span_ms == 7200000 && w[1].hop_ms == 0, "a hop of the span is tumbling");
    cr_assert(w[2].span_ms == 0 && w[2].size == 1000 && w[2].step == 100);
    const char *bad[] = {"1h/", "1h/x", "1h/0s", "1h/2h", "1h/7m", "1h/10s", "1h/15m+"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(dstate_parse_windows(bad[i], w, err, sizeof(err)), -1, "'%s'", bad[i]);
        cr_assert(strstr(err, "item 1"), "%s", err);
    }
    json_t *doc = doc_new(50);
    cr_assert_eq(dstate_parse_windows("1h/15m+5m,90s/30s", w, err, sizeof(err)), 2);
    dstate_t *d = dstate_new(doc, "1", w, 2, 0.5, err, sizeof(err));
    cr_assert(d, "%s", err);
    cr_assert_str_eq(dstate_window_name(d, 0), "1h/15m+5m");
    cr_assert_str_eq(dstate_window_name(d, 1), "90s/30s");
    dstate_destroy(d);
    json_decref(doc);
}
