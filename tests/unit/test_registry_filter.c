/* mlops-registry's MLflow filter parser: the SQL it builds is fixed text with
 * $n placeholders, values only ever travel as parameters, and anything outside
 * the grammar is refused with 400. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"

typedef struct parsed {
    req_ctx_t c;
    strbuf_t where;
    const char *params[32];
    int np;
    int st;
} parsed_t;

static void parse(parsed_t *p, bool versions, const char *filter)
{
    memset(p, 0, sizeof(*p));
    strbuf_init(&p->where);
    p->st = mf_filter_sql(&p->c, versions, filter, &p->where, p->params, &p->np);
}

static void done(parsed_t *p)
{
    strbuf_cleanup(&p->where);
    ctx_cleanup(&p->c);
}

static const char *where(parsed_t *p) { return p->where.data ? p->where.data : ""; }

Test(registry_filter, empty_filter_adds_nothing)
{
    parsed_t p;
    parse(&p, false, "");
    cr_assert_eq(p.st, 0);
    cr_assert_str_eq(where(&p), "");
    cr_assert_eq(p.np, 0);
    done(&p);
    parse(&p, false, NULL);
    cr_assert_eq(p.st, 0);
    done(&p);
}

Test(registry_filter, name_and_tag_become_placeholders)
{
    parsed_t p;
    parse(&p, false, "name LIKE 'churn%' AND tags.team = 'risk'");
    cr_assert_eq(p.st, 0, "%s", p.c.err_msg);
    cr_assert_str_eq(where(&p), " AND m.name LIKE $1 AND EXISTS (SELECT 1 FROM model_tags t"
                                " WHERE t.model_id = m.id AND t.key = $2 AND t.value = $3)");
    cr_assert_eq(p.np, 3);
    cr_assert_str_eq(p.params[0], "churn%");
    cr_assert_str_eq(p.params[1], "team");
    cr_assert_str_eq(p.params[2], "risk");
    done(&p);
}

Test(registry_filter, tag_not_equal_matches_untagged)
{
    parsed_t p;
    parse(&p, true, "tags.`mlflow.prompt.is_prompt` != 'true'");
    cr_assert_eq(p.st, 0, "%s", p.c.err_msg);
    cr_assert_str_eq(where(&p), " AND NOT EXISTS (SELECT 1 FROM version_tags t"
                                " WHERE t.version_id = v.id AND t.key = $1 AND t.value = $2)");
    cr_assert_str_eq(p.params[0], "mlflow.prompt.is_prompt");
    done(&p);
}

Test(registry_filter, doubled_quotes_and_hostile_values_stay_parameters)
{
    static const char *const values[] = {"it''s", "x'' OR ''1''=''1", "a; DROP TABLE outbox; --",
                                         "$1", "\\\\"};
    static const char *const want[] = {"it's", "x' OR '1'='1", "a; DROP TABLE outbox; --", "$1",
                                       "\\\\"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *f = xasprintf("name = '%s'", values[i]);
        parsed_t p;
        parse(&p, false, f);
        cr_assert_eq(p.st, 0, "%s: %s", f, p.c.err_msg);
        cr_assert_str_eq(where(&p), " AND m.name = $1", "%s", f);
        cr_assert_str_eq(p.params[0], want[i]);
        done(&p);
        free(f);
    }
}

Test(registry_filter, version_number_compares_as_an_integer)
{
    parsed_t p;
    parse(&p, true, "name = 'm' AND version_number >= 3");
    cr_assert_eq(p.st, 0, "%s", p.c.err_msg);
    cr_assert_str_eq(where(&p), " AND m.name = $1 AND v.version >= $2::int");
    cr_assert_str_eq(p.params[1], "3");
    done(&p);
    parse(&p, true, "version_number = 'x'");
    cr_assert_eq(p.st, 400);
    done(&p);
    parse(&p, true, "version_number LIKE '1%'");
    cr_assert_eq(p.st, 400);
    done(&p);
}

Test(registry_filter, outside_the_grammar_is_refused)
{
    static const char *const bad[] = {
        "name = 'x' OR 1=1", "name = 'x'; DROP TABLE t",
        "name = x",          "1=1",
        "name ~ 'x'",        "name = 'unterminated",
        "run_id = 'r'",      /* versions only */ "name = 'a' AND",
        "tags. = 'x'",       "name > 'a'",
        "tags.k > 'a'",      "name = 'a' UNION SELECT 1",
        "(name = 'a')",      "name IN ('a')",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parsed_t p;
        parse(&p, false, bad[i]);
        cr_assert_eq(p.st, 400, "accepted: %s", bad[i]);
        cr_assert_str_eq(p.c.err_code, "INVALID_PARAMETER_VALUE");
        cr_assert(p.c.err_msg && *p.c.err_msg);
        done(&p);
    }
}

Test(registry_filter, too_many_conditions)
{
    strbuf_t f;
    strbuf_init(&f);
    for (int i = 0; i < 40; i++)
        strbuf_appendf(&f, "%sname != 'n%d'", i ? " AND " : "", i);
    parsed_t p;
    parse(&p, false, f.data);
    cr_assert_eq(p.st, 400);
    cr_assert(strstr(p.c.err_msg, "too many"), "%s", p.c.err_msg);
    done(&p);
    strbuf_cleanup(&f);
}
