/*
 * Fuzz target: mlops-registry's request front end, everything on_api() does
 * with a request before the database: the request URI (libevent's parser, as
 * evhttp uses it for a request line), api_split_path() and its %-decoding,
 * api_route(), api_query_has_token(), ctx_parse_input() (the JSON body merged
 * with the query string), the in_*() getters, and the SQL builders of the
 * search routes (mf_filter_sql(), mf_order_sql()), plus the small parsers the
 * handlers run first (parse_version, parse_duration_s, role_parse,
 * stage_canonical).
 *
 * Input: "METHOD URI\n" then the body, e.g.
 *   GET /api/2.0/mlflow/registered-models/search?filter=name%20LIKE%20'a%25'
 *   {"max_results": 3}
 *
 * Checked beyond "no crash, no leak, no UB": the search SQL never carries a
 * value: no quote, no semicolon, no comment, and every $n placeholder has its
 * parameter; a route's parameters are non-empty decoded segments; an error
 * message encodes as JSON (else reply() would turn the 4xx into a 500).
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "registry.h"
#include "util.h"

#define MAX_BODY_BYTES (1024 * 1024) /* the registry's max_body_bytes default */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_LVL_FATAL);
    return 0;
}

static int method_of(const char *s, size_t n)
{
    static const struct {
        const char *name;
        int method;
    } methods[] = {{"GET", EVHTTP_REQ_GET},       {"POST", EVHTTP_REQ_POST},
                   {"PUT", EVHTTP_REQ_PUT},       {"PATCH", EVHTTP_REQ_PATCH},
                   {"DELETE", EVHTTP_REQ_DELETE}, {"HEAD", EVHTTP_REQ_HEAD}};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(methods); i++)
        if (strlen(methods[i].name) == n && !memcmp(methods[i].name, s, n))
            return methods[i].method;
    return EVHTTP_REQ_OPTIONS;
}

/* The SQL text a search builds is fixed text with $n placeholders. */
static void check_sql(const char *sql, int np)
{
    FUZZ_CHECK(!strpbrk(sql, "';\"\\") && !strstr(sql, "--") && !strstr(sql, "/*"),
               "a value reached the SQL text: %s", sql);
    for (const char *p = strchr(sql, '$'); p; p = strchr(p + 1, '$')) {
        long n = strtol(p + 1, NULL, 10);
        FUZZ_CHECK(n >= 1 && n <= np, "placeholder $%ld with %d parameters: %s", n, np, sql);
    }
}

static void search_sql(req_ctx_t *c, bool versions)
{
    strbuf_t where, order;
    strbuf_init(&where);
    strbuf_init(&order);
    const char *params[32];
    int np = 0;
    const char *filter = in_str(c, "filter");
    if (mf_filter_sql(c, versions, filter, &where, params, &np) == 0) {
        FUZZ_CHECK(np >= 0 && np <= 30, "%d parameters (run_search adds 2 of 32)", np);
        for (int i = 0; i < np; i++)
            FUZZ_CHECK(params[i] != NULL, "parameter %d is NULL", i);
        check_sql(where.data ? where.data : "", np);
    }
    if (mf_order_sql(c, versions, &order) == 0)
        check_sql(order.data ? order.data : "", 0);
    strbuf_cleanup(&where);
    strbuf_cleanup(&order);
}

static void handler_inputs(req_ctx_t *c)
{
    int st = 0;
    int64_t i64;
    bool b;
    for (int i = 0; i < c->nparams; i++) {
        FUZZ_CHECK(c->params[i] && *c->params[i], "route parameter %d is empty", i);
        (void)parse_version(c->params[i]);
    }
    static const char *const str_keys[] = {
        "name",  "new_name", "alias",      "version", "stage",  "description", "key",
        "value", "role",     "expires_in", "reason",  "source", "run_id",      "page_token"};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(str_keys); i++) {
        const char *s = in_str(c, str_keys[i]);
        if (!s)
            continue;
        (void)parse_version(s);
        (void)stage_canonical(s);
        (void)role_parse(s);
        if (parse_duration_s(s, &i64) == 0)
            FUZZ_CHECK(i64 > 0 && i64 <= (int64_t)100 * 365 * 86400, "duration %lld s",
                       (long long)i64);
        if (in_req_str(c, str_keys[i], &st))
            FUZZ_CHECK(*in_req_str(c, str_keys[i], &st), "in_req_str gave an empty string");
    }
    static const char *const int_keys[] = {"max_results", "version", "limit", "after_id",
                                           "expected_version"};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(int_keys); i++)
        (void)in_int(c, int_keys[i], &i64, &st);
    static const char *const bool_keys[] = {"archive_existing_versions", "force", "all"};
    for (size_t i = 0; i < MLOPS_ARRAY_LEN(bool_keys); i++)
        (void)in_bool(c, bool_keys[i], &b, &st);
    if (c->route->fn == mf_rm_search)
        search_sql(c, false);
    else if (c->route->fn == mf_mv_search)
        search_sql(c, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    size_t line_len = nl ? (size_t)(nl - (const char *)data) : size;
    char *line = xstrndup((const char *)data, line_len); /* stops at a NUL, as evhttp does */
    const uint8_t *body = nl ? (const uint8_t *)nl + 1 : data + size;
    size_t body_len = (size_t)(data + size - body);

    char *sp = strchr(line, ' ');
    int method = sp ? method_of(line, (size_t)(sp - line)) : EVHTTP_REQ_GET;
    const char *uri_text = sp ? sp + 1 : line;
    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(uri_text, EVHTTP_URI_NONCONFORMANT);
    const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;

    req_ctx_t c = {0};
    char *segs[API_MAX_SEGS];
    int nsegs = 0;
    char allow[64];
    if (raw && api_split_path(raw, segs, &nsegs) == 0) {
        FUZZ_CHECK(nsegs >= 0 && nsegs <= API_MAX_SEGS, "%d segments", nsegs);
        int st = api_route(&c, method, raw, segs, nsegs, allow, sizeof(allow));
        FUZZ_CHECK(st == 0 || st == 404 || st == 405, "api_route gave %d", st);
        FUZZ_CHECK((st == 0) == (c.route != NULL), "status %d with route %p", st,
                   (const void *)c.route);
        if (!st) {
            FUZZ_CHECK(c.route->method == method, "route of another method");
            (void)api_query_has_token(query);
            c.body = xmalloc(body_len + 1);
            memcpy(c.body, body, body_len);
            c.body[body_len] = '\0';
            c.body_len = body_len;
            st = ctx_parse_input(&c, MAX_BODY_BYTES, query);
            FUZZ_CHECK(st == 0 || st == 400, "ctx_parse_input gave %d", st);
            FUZZ_CHECK(st || json_is_object(c.in), "input is not an object");
            if (!st)
                handler_inputs(&c);
        }
    }
    if (c.err_code) {
        /* reply() sends the message in a JSON body: it must encode, or a 4xx becomes a 500 */
        json_t *msg = json_string(c.err_msg ? c.err_msg : "");
        FUZZ_CHECK(msg, "error message is not UTF-8: %s", c.err_msg);
        json_decref(msg);
    }
    for (int i = 0; i < nsegs; i++)
        free(segs[i]);
    ctx_cleanup(&c);
    if (uri)
        evhttp_uri_free(uri);
    free(line);
    return 0;
}
