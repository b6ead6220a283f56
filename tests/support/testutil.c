#include "testutil.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

int test_scale(void)
{
    const char *s = getenv("MLOPS_TEST_SCALE");
    return s && !strcmp(s, "soak") ? 10 : 1;
}

char *test_unique(const char *prefix)
{
    static atomic_int n;
    return xasprintf("%s-%d-%lld-%d", prefix, (int)getpid(), (long long)wall_us(),
                     atomic_fetch_add(&n, 1));
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

const char *test_kafka_brokers(void)
{
    return env_or("MLOPS_TEST_KAFKA_BROKERS", "127.0.0.1:9092");
}

const char *test_state_dir(void)
{
    static char buf[1024];
    const char *v = getenv("MLOPS_STATE_DIR");
    if (v && *v)
        return v;
    snprintf(buf, sizeof(buf), "%s/.state", MLOPS_SOURCE_DIR);
    return buf;
}

const char *test_pg_dsn(void)
{
    static char buf[2048];
    const char *v = getenv("MLOPS_TEST_PG_DSN");
    if (v && *v)
        return v;
    /* the stack writes the DSN (with its generated password) here */
    char path[1200], err[256];
    snprintf(path, sizeof(path), "%s/secrets/pg_dsn", test_state_dir());
    char *dsn = file_read_all(path, 4096, NULL, err, sizeof(err));
    cr_assert(dsn, "no Postgres DSN: %s (is the stack up? make stack-up)", err);
    size_t n = strlen(dsn);
    while (n && (dsn[n - 1] == '\n' || dsn[n - 1] == '\r'))
        dsn[--n] = '\0';
    str_copy(buf, dsn, sizeof(buf));
    free(dsn);
    return buf;
}

void test_create_topic(const char *brokers, const char *topic, int partitions)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)),
                 RD_KAFKA_CONF_OK, "%s", errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    cr_assert(rk, "%s", errstr);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof(errstr));
    cr_assert(nt, "%s", errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, 15000, errstr, sizeof(errstr));
    rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
    rd_kafka_NewTopic_destroy(nt); /* the request holds its own copy */
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    cr_assert(ev, "CreateTopics %s timed out (is Kafka up at %s?)", topic, brokers);
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    cr_assert(res, "CreateTopics: %s", rd_kafka_event_error_string(ev));
    size_t n;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
    cr_assert_eq(n, 1);
    rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(tr[0]);
    cr_assert(terr == RD_KAFKA_RESP_ERR_NO_ERROR || terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS,
              "create topic %s: %s", topic, rd_kafka_topic_result_error_string(tr[0]));
    rd_kafka_event_destroy(ev);
    /* wait until metadata shows every partition with a leader */
    int64_t deadline = mono_ms() + 30000;
    bool ready = false;
    while (!ready && mono_ms() < deadline) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ready = md->topic_cnt == 1 && !md->topics[0].err &&
                    md->topics[0].partition_cnt == partitions;
            for (int i = 0; ready && i < md->topics[0].partition_cnt; i++)
                ready = md->topics[0].partitions[i].leader >= 0;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        if (!ready)
            usleep(100 * 1000);
    }
    cr_assert(ready, "topic %s did not become ready", topic);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

void test_kafka_cleanup(const char *brokers, const char *const *topics, const char *const *groups)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk)
        return;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    size_t nt = 0, ng = 0;
    while (topics && topics[nt])
        nt++;
    while (groups && groups[ng])
        ng++;
    if (ng) {
        rd_kafka_DeleteGroup_t **dg = xcalloc(ng, sizeof(*dg));
        for (size_t i = 0; i < ng; i++)
            dg[i] = rd_kafka_DeleteGroup_new(groups[i]);
        rd_kafka_DeleteGroups(rk, dg, ng, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
        if (!ev || rd_kafka_event_error(ev))
            fprintf(stderr, "cleanup: DeleteGroups: %s\n",
                    ev ? rd_kafka_event_error_string(ev) : "timed out");
        rd_kafka_event_destroy(ev);
        rd_kafka_DeleteGroup_destroy_array(dg, ng);
        free(dg);
    }
    if (nt) {
        rd_kafka_DeleteTopic_t **dt = xcalloc(nt, sizeof(*dt));
        for (size_t i = 0; i < nt; i++)
            dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
        rd_kafka_DeleteTopics(rk, dt, nt, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
        if (!ev || rd_kafka_event_error(ev))
            fprintf(stderr, "cleanup: DeleteTopics: %s\n",
                    ev ? rd_kafka_event_error_string(ev) : "timed out");
        rd_kafka_event_destroy(ev);
        rd_kafka_DeleteTopic_destroy_array(dt, nt);
        free(dt);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* ---- log capture ----------------------------------------------------------- */

static strbuf_t g_logs;
static bool g_logs_on;
static pthread_mutex_t g_logs_lock = PTHREAD_MUTEX_INITIALIZER;

static void sink(const char *line, size_t len, void *opaque)
{
    pthread_mutex_lock(&g_logs_lock);
    strbuf_append(&g_logs, line, len);
    pthread_mutex_unlock(&g_logs_lock);
}

void test_logs_capture(void)
{
    if (!g_logs_on)
        strbuf_init(&g_logs);
    g_logs_on = true;
    strbuf_reset(&g_logs);
    log_set_sink(sink, NULL);
}

const char *test_logs(void) { return g_logs_on ? g_logs.data : ""; }

void test_logs_release(void)
{
    log_set_sink(NULL, NULL);
    if (g_logs_on)
        strbuf_cleanup(&g_logs);
    g_logs_on = false;
}

/* ---- sockets ------------------------------------------------------------------- */

static int bind_loopback(int *port, bool do_listen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
    if (do_listen)
        cr_assert_eq(listen(fd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

int test_listen_silent(int *port) { return bind_loopback(port, true); }

int test_free_port(void)
{
    int port;
    int fd = bind_loopback(&port, false);
    close(fd); /* nothing listens: connections are refused */
    return port;
}

/* ---- event loop on a thread ------------------------------------------------------ */

static void *loop_main(void *arg)
{
    test_loop_t *tl = arg;
    event_base_loop(tl->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

struct event_base *test_base_new(void)
{
    cr_assert_eq(evthread_use_pthreads(), 0);
    struct event_base *base = event_base_new();
    cr_assert(base);
    return base;
}

void test_loop_start(test_loop_t *tl)
{
    cr_assert(tl->base);
    cr_assert_eq(pthread_create(&tl->thread, NULL, loop_main, tl), 0);
}

void test_loop_stop(test_loop_t *tl)
{
    event_base_loopbreak(tl->base);
    pthread_join(tl->thread, NULL);
}

/* ---- a raw HTTP client ------------------------------------------------------------ */

int test_http_raw(int port, const char *raw_request, char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
                 strerror(errno));
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t len = strlen(raw_request), off = 0;
    while (off < len) {
        ssize_t n = write(fd, raw_request + off, len - off);
        if (n <= 0)
            break; /* the server may close early on a bad request: read what it said */
        off += (size_t)n;
    }
    strbuf_t resp;
    strbuf_init(&resp);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        strbuf_append(&resp, buf, (size_t)n);
    close(fd);
    int status = -1;
    if (sscanf(resp.data, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    if (body) {
        const char *b = strstr(resp.data, "\r\n\r\n");
        *body = xstrdup(b ? b + 4 : "");
    }
    strbuf_cleanup(&resp);
    return status;
}

int test_http(int port, const char *method, const char *path, const char *req_body, char **body)
{
    char *req = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                          "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                          method, path, req_body ? strlen(req_body) : 0, req_body ? req_body : "");
    int status = test_http_raw(port, req, body);
    free(req);
    return status;
}
