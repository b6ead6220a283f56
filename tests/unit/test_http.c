/* http.c: routing, limits, smuggling checks, JSON errors, standard routes.
 * The server listens on 127.0.0.1:0 and its loop runs on a thread; the
 * client is a raw socket so every byte on the wire is the test's. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "lifecycle.h"
#include "mjson.h"
#include "testutil.h"

static test_loop_t tl;
static http_server_t *srv;
static metrics_t *reg;
static lifecycle_t *lc;
static int port;

static void on_echo(struct evhttp_request *req, void *arg)
{
    size_t len;
    char *body = http_body(req, &len);
    err_t *e = NULL;
    json_t *j = mjson_parse_object(body, len, 1 << 20, &e);
    free(body);
    if (!j) {
        http_reply_error(req, 400, mjson_code_name((mjson_code_t)e->code), "%s", e->msg);
        err_destroy(e);
        return;
    }
    http_reply_json(req, 200, j);
}

static void on_prefix(struct evhttp_request *req, void *arg)
{
    char *path = http_path(req);
    http_reply_json(req, 200, json_pack("{s:s}", "path", path));
    free(path);
}

static void no_drain(lifecycle_t *l, void *opaque) {}

static void start(bool draining)
{
    tl.base = test_base_new();
    reg = metrics_new();
    lc = lifecycle_new(tl.base, 60000, no_drain, NULL, NULL);
    http_limits_t lim = {.max_body_bytes = 1024, .max_header_bytes = 2048, .timeout_s = 1};
    char err[256];
    srv = http_server_new(tl.base, "127.0.0.1", 0, &lim, reg, err, sizeof(err));
    cr_assert(srv, "%s", err);
    port = http_server_port(srv);
    cr_assert_gt(port, 0);
    http_route(srv, EVHTTP_REQ_POST, "/echo", on_echo, NULL);
    http_route(srv, EVHTTP_REQ_GET, "/api/2.0/*", on_prefix, NULL);
    http_standard_routes(srv, "testsvc", lc, reg, NULL, NULL);
    lifecycle_set_ready(lc, true);
    if (draining)
        lifecycle_shutdown(lc);
    test_loop_start(&tl);
}

static void setup(void) { start(false); }

static void teardown(void)
{
    test_loop_stop(&tl);
    http_server_destroy(srv);
    lifecycle_destroy(lc);
    metrics_destroy(reg);
    event_base_free(tl.base);
}

TestSuite(http, .init = setup, .fini = teardown);

Test(http, post_json_roundtrip)
{
    char *body;
    cr_assert_eq(test_http(port, "POST", "/echo", "{\"a\":1}", &body), 200);
    cr_assert_str_eq(body, "{\"a\":1}");
    free(body);
}

Test(http, malformed_json_is_a_400_naming_the_problem)
{
    char *body;
    cr_assert_eq(test_http(port, "POST", "/echo", "{\"a\":1,\"a\":2}", &body), 400);
    cr_assert(strstr(body, "\"code\":\"duplicate_key\""), "%s", body);
    free(body);
}

Test(http, unknown_path_404_and_wrong_method_405)
{
    char *body;
    cr_assert_eq(test_http(port, "GET", "/nope", NULL, &body), 404);
    cr_assert(strstr(body, "no such path: /nope"), "%s", body);
    free(body);
    cr_assert_eq(test_http(port, "GET", "/echo", NULL, &body), 405);
    cr_assert(strstr(body, "method_not_allowed"), "%s", body);
    free(body);
}

Test(http, prefix_routes_and_decoded_paths)
{
    char *body;
    cr_assert_eq(test_http(port, "GET", "/api/2.0/mlflow/x%20y?q=1", NULL, &body), 200);
    cr_assert_str_eq(body, "{\"path\":\"/api/2.0/mlflow/x y\"}");
    free(body);
}

Test(http, body_over_the_limit_refused)
{
    char big[4000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    int st = test_http(port, "POST", "/echo", big, NULL);
    cr_assert_eq(st, 413, "got %d", st);
}

Test(http, headers_over_the_limit_refused)
{
    char req[8000];
    int n = snprintf(req, sizeof(req), "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'h', 5000);
    strcpy(req + n + 5000, "\r\nConnection: close\r\n\r\n");
    int st = test_http_raw(port, req, NULL);
    cr_assert(st == 400 || st == 413 || st == 431 || st == -1,
              "oversized headers must not be served (got %d)", st);
    cr_assert_neq(st, 200);
}

Test(http, content_length_with_transfer_encoding_refused)
{
    char *body;
    int st = test_http_raw(port,
                           "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "0\r\n\r\n",
                           &body);
    cr_assert_eq(st, 400, "got %d", st);
    free(body);
}

Test(http, two_content_lengths_refused)
{
    int st = test_http_raw(port,
                           "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Content-Length: 2\r\nContent-Length: 7\r\n\r\n{}",
                           NULL);
    cr_assert_eq(st, 400, "got %d", st);
}

Test(http, garbage_request_line_refused)
{
    int st = test_http_raw(port, "BLAH\r\n\r\n", NULL);
    cr_assert_neq(st, 200);
}

Test(http, idle_connection_times_out)
{
    int64_t t0 = mono_ms();
    /* an incomplete request: the server must give up after its 1 s timeout */
    int st = test_http_raw(port, "GET /health HTTP/1.1\r\nHost: x\r\n", NULL);
    int64_t dt = mono_ms() - t0;
    cr_assert_neq(st, 200);
    cr_assert_lt(dt, 5000, "server held an idle connection for %lld ms", (long long)dt);
}

Test(http, health_ready_and_metrics)
{
    char *body;
    cr_assert_eq(test_http(port, "GET", "/health", NULL, &body), 200);
    cr_assert(strstr(body, "\"status\":\"ok\"") && strstr(body, "\"service\":\"testsvc\""), "%s",
              body);
    free(body);
    cr_assert_eq(test_http(port, "GET", "/ready", NULL, &body), 200);
    cr_assert(strstr(body, "\"ready\":true"), "%s", body);
    free(body);
    cr_assert_eq(test_http(port, "GET", "/metrics", NULL, &body), 200);
    cr_assert(strstr(body, "mlops_http_requests_total{route=\"/health\",code=\"2xx\"} 1"), "%s",
              body);
    cr_assert(strstr(body, "mlops_http_request_duration_seconds_bucket{route=\"/ready\",le="), "%s",
              body);
    free(body);
}

static void setup_draining(void) { start(true); }

Test(http_draining, draining_service_is_live_but_not_ready, .init = setup_draining,
     .fini = teardown)
{
    char *body;
    cr_assert_eq(test_http(port, "GET", "/health", NULL, &body), 200);
    cr_assert(strstr(body, "\"status\":\"draining\""), "%s", body);
    free(body);
    cr_assert_eq(test_http(port, "GET", "/ready", NULL, &body), 503);
    cr_assert(strstr(body, "\"ready\":false"), "%s", body);
    free(body);
}

Test(http_bind, port_in_use_is_a_clear_error)
{
    struct event_base *base = event_base_new();
    int p;
    int fd = test_listen_silent(&p);
    char err[256];
    http_server_t *s = http_server_new(base, "127.0.0.1", p, NULL, NULL, err, sizeof(err));
    cr_assert_null(s);
    cr_assert(strstr(err, "cannot listen on 127.0.0.1:"), "%s", err);
    close(fd);
    event_base_free(base);
}
