/* mlops-registry: model registry over HTTP (MLflow's REST paths and ours),
 * backed by Postgres, publishing every change to the models topic. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"

static const cfg_item_t registry_items[] = {
    SERVICE_COMMON_ITEMS(registry_conf_t, "8080"),
    CFG_ITEM(registry_conf_t, pg_dsn, CFG_T_STR, NULL, CFG_SECRET,
             "Postgres connection string (default: the local stack's, from "
             "<state_dir>/secrets/pg_dsn)"),
    CFG_ITEM(registry_conf_t, pg_password_file, CFG_T_STR, NULL, 0,
             "a file holding the Postgres password, for a pg_dsn without one (a mounted secret)"),
    CFG_ITEM_RANGE(registry_conf_t, pg_connect_timeout_s, CFG_T_INT, "5", 0,
                   "Postgres connect timeout", 1, 300),
    CFG_ITEM_RANGE(registry_conf_t, pg_statement_timeout_ms, CFG_T_INT, "5000", 0,
                   "Postgres statement timeout (bounds each request's database time)", 100, 600000),
    CFG_ITEM(registry_conf_t, state_dir, CFG_T_STR, MLOPS_SOURCE_DIR "/.state", 0,
             "state folder of the local stack (MLOPS_STATE_DIR; the first admin token goes "
             "under it)"),
    CFG_ITEM(registry_conf_t, admin_token_file, CFG_T_STR, NULL, 0,
             "where the first admin token is written at first start, mode 0600 (default "
             "<state_dir>/registry/admin_token)"),
    CFG_ITEM_RANGE(registry_conf_t, max_body_bytes, CFG_T_INT, "1048576", 0,
                   "largest JSON request body (413 above)", 1024, 1073741824),
    CFG_ITEM_RANGE(registry_conf_t, max_artifact_bytes, CFG_T_INT, "67108864", 0,
                   "largest artifact upload (413 above)", 1024, 1073741824),
    CFG_ITEM_RANGE(registry_conf_t, max_header_bytes, CFG_T_INT, "16384", 0,
                   "largest request header block", 1024, 1048576),
    CFG_ITEM_RANGE(registry_conf_t, max_connections, CFG_T_INT, "256", 0,
                   "HTTP connections open at once; one more is answered 503 (JSON, "
                   "Retry-After) and closed",
                   1, 65536),
    CFG_ITEM_RANGE(registry_conf_t, request_timeout_s, CFG_T_INT, "30", 0,
                   "HTTP read/write timeout of a request", 1, 3600),
    CFG_ITEM_RANGE(registry_conf_t, rate_limit_rps, CFG_T_INT, "0", 0,
                   "requests per second per token (0 = no limit; 429 with Retry-After above)", 0,
                   1000000),
    CFG_ITEM_RANGE(registry_conf_t, rate_limit_burst, CFG_T_INT, "0", 0,
                   "burst per token (0 = rate_limit_rps)", 0, 1000000),
    CFG_ITEM_RANGE(registry_conf_t, token_cache_ms, CFG_T_INT, "1000", 0,
                   "how long a checked token is trusted without a database look-up (0 = "
                   "always look up); revocations through another instance take this long",
                   0, 60000),
    CFG_ITEM_RANGE(registry_conf_t, idempotency_ttl_s, CFG_T_INT, "86400", 0,
                   "how long an Idempotency-Key is remembered", 60, 31536000),
    CFG_ITEM_RANGE(registry_conf_t, outbox_retention_s, CFG_T_INT, "604800", 0,
                   "how long published outbox rows are kept", 60, 31536000),
    CFG_ITEM(registry_conf_t, models_topic, CFG_T_STR, "models", 0,
             "compacted topic of model_event/1 change events"),
    CFG_ITEM(registry_conf_t, outbox_relay, CFG_T_BOOL, "true", 0,
             "publish the outbox to the models topic (one relay per database is active)"),
    CFG_ITEM_RANGE(registry_conf_t, outbox_batch, CFG_T_INT, "200", 0,
                   "outbox rows published per batch", 1, 10000),
    CFG_ITEM_RANGE(registry_conf_t, outbox_poll_ms, CFG_T_INT, "500", 0,
                   "how often the relay looks for rows written by other instances", 10, 60000),
    CFG_ITEM(registry_conf_t, tls_cert_file, CFG_T_STR, NULL, 0,
             "PEM certificate chain: serve HTTPS (TLS 1.2+) on the port, health and metrics too"),
    CFG_ITEM(registry_conf_t, tls_key_file, CFG_T_STR, NULL, CFG_SECRET,
             "PEM private key of tls_cert_file (the path is treated as a secret)"),
};

static void status(json_t *st, void *opaque)
{
    registry_t *rg = opaque;
    if (!rg->pg)
        return;
    bool up = pg_ok(rg->pg) && rg->db_up;
    json_object_set_new(st, "db", json_string(up ? "up" : "down"));
    json_object_set_new(st, "durable", json_boolean(rg->durable));
    if (!rg->durable) {
        json_object_set_new(st, "status", json_string("degraded"));
        json_object_set_new(
            st, "degraded_reason",
            json_sprintf("database not durable (%s): writes are refused", rg->durability_detail));
    } else if (!up) {
        json_object_set_new(st, "status", json_string("degraded"));
        json_object_set_new(st, "ready", json_false());
    }
    json_object_set_new(st, "outbox_published",
                        json_integer((json_int_t)relay_published(rg->relay)));
}

/* Every 2 s: a round trip keeps /health's db field true and reconnects a
 * lost connection before the next request needs it. */
static void on_ping(evutil_socket_t fd, short what, void *arg)
{
    registry_t *rg = arg;
    err_t *e = NULL;
    bool was = pg_ok(rg->pg);
    PGresult *r = pg_exec(rg->pg, "SELECT 1", 0, NULL, &e);
    if (r) {
        PQclear(r);
        if (!rg->db_up)
            log_info("Postgres reachable again");
        rg->db_up = true;
    } else {
        if (rg->db_up || was)
            log_warn("Postgres unreachable: %s", e ? e->msg : "?");
        rg->db_up = pg_ok(rg->pg);
        err_destroy(e);
        return;
    }
    /* housekeeping about once a minute: idempotency records past their
     * lifetime, and outbox rows published long ago */
    if (++rg->pings % 30 == 1) {
        char ik[24], ob[24];
        snprintf(ik, sizeof(ik), "%lld",
                 (long long)(wall_ms() - rg->conf->idempotency_ttl_s * 1000));
        snprintf(ob, sizeof(ob), "%lld",
                 (long long)(wall_ms() - rg->conf->outbox_retention_s * 1000));
        if (pg_exec_cmd(rg->pg, "DELETE FROM idempotency_keys WHERE created_ms < $1::bigint", 1,
                        QPARAMS(ik), &e) ||
            pg_exec_cmd(rg->pg,
                        "DELETE FROM outbox WHERE sent_ms IS NOT NULL AND sent_ms < $1::bigint", 1,
                        QPARAMS(ob), &e)) {
            log_warn("housekeeping: %s", e ? e->msg : "?");
            err_destroy(e);
        }
    }
}

static char *read_stack_dsn(const char *state_dir, char *errstr, size_t errstr_size)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/secrets/pg_dsn", state_dir);
    char *dsn = file_read_all(path, 8192, NULL, errstr, errstr_size);
    if (!dsn)
        return NULL;
    size_t n = strlen(dsn);
    while (n && (dsn[n - 1] == '\n' || dsn[n - 1] == '\r'))
        dsn[--n] = '\0';
    log_add_secret(dsn);
    return dsn;
}

static int setup(service_t *svc, void *opaque)
{
    registry_t *rg = opaque;
    registry_conf_t *c = rg->conf;
    char errstr[1024];
    rg->svc = svc;
    metrics_t *m = service_metrics(svc);
    rg->m_writes = metrics_counter(m, "mlops_registry_writes_total", "Committed writes.", NULL);
    rg->m_conflicts = metrics_counter(m, "mlops_registry_conflicts_total",
                                      "Writes refused with 409 (expected_version, races).", NULL);
    rg->m_auth_failures =
        metrics_counter(m, "mlops_registry_auth_failures_total",
                        "Requests with an unknown, expired or revoked token.", NULL);
    rg->m_replays = metrics_counter(m, "mlops_registry_idempotent_replays_total",
                                    "Writes answered from an Idempotency-Key record.", NULL);
    /* 1. Postgres: connect, durability, schema, first admin token */
    if (!c->pg_dsn) {
        char *dsn = read_stack_dsn(c->state_dir, errstr, sizeof(errstr));
        if (!dsn) {
            log_fatal("pg_dsn is not set and the local stack's DSN is not readable: %s", errstr);
            return -1;
        }
        c->pg_dsn = dsn; /* freed in teardown (cfg owns only what it set) */
        rg->own_dsn = true;
    }
    /* a password kept apart from the DSN reaches libpq (and the relay's
     * connection) through its own environment variable */
    if (c->pg_password_file) {
        char *pw = file_read_all(c->pg_password_file, 4096, NULL, errstr, sizeof(errstr));
        if (!pw) {
            log_fatal("pg_password_file: %s", errstr);
            return -1;
        }
        size_t n = strlen(pw);
        while (n && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
            pw[--n] = '\0';
        log_add_secret(pw);
        int rc = setenv("PGPASSWORD", pw, 1);
        free(pw);
        if (rc) {
            log_fatal("cannot set PGPASSWORD");
            return -1;
        }
    }
    err_t *e = NULL;
    rg->pg =
        pg_connect(c->pg_dsn, (int)c->pg_connect_timeout_s, (int)c->pg_statement_timeout_ms, &e);
    if (!rg->pg) {
        log_fatal("%s", e ? e->msg : "cannot connect to Postgres");
        err_destroy(e);
        return -1;
    }
    int d = pg_check_durability(rg->pg, rg->durability_detail, sizeof(rg->durability_detail), &e);
    if (d < 0) {
        log_fatal("durability check: %s", e ? e->msg : "?");
        err_destroy(e);
        return -1;
    }
    rg->durable = d == 1;
    if (!rg->durable)
        log_emit(LOG_LVL_ERROR, LOG_FIELDS(LOG_STR("settings", rg->durability_detail)),
                 "Postgres is not durable: /health reports degraded and writes are refused");
    if (db_migrate(rg->pg, errstr, sizeof(errstr))) {
        log_fatal("%s", errstr);
        return -1;
    }
    char tokpath[1200];
    if (c->admin_token_file)
        str_copy(tokpath, c->admin_token_file, sizeof(tokpath));
    else
        snprintf(tokpath, sizeof(tokpath), "%s/registry/admin_token", c->state_dir);
    if (db_bootstrap_admin(rg->pg, tokpath, errstr, sizeof(errstr))) {
        log_fatal("%s", errstr);
        return -1;
    }
    /* 2. HTTP: limits, then the API routes next to /health, /ready, /metrics */
    http_limits_t lim = {.max_body_bytes = (size_t)(c->max_artifact_bytes > c->max_body_bytes
                                                        ? c->max_artifact_bytes
                                                        : c->max_body_bytes),
                         .max_header_bytes = (size_t)c->max_header_bytes,
                         .timeout_s = (int)c->request_timeout_s};
    http_server_set_limits(service_http(svc), &lim);
    if (!c->tls_cert_file != !c->tls_key_file) {
        log_fatal("tls_cert_file and tls_key_file go together");
        return -1;
    }
    if (c->tls_cert_file) {
        rg->tls = tls_enable(c->tls_cert_file, c->tls_key_file, errstr, sizeof(errstr));
        if (!rg->tls) {
            log_fatal("TLS: %s", errstr);
            return -1;
        }
        log_info("HTTPS on (certificate %s)", c->tls_cert_file);
    }
    conn_install(rg, service_http(svc));
    api_register(rg, service_http(svc));
    rg->db_up = true;
    rg->ping = event_new(service_base(svc), -1, EV_PERSIST, on_ping, rg);
    struct timeval two = {2, 0};
    event_add(rg->ping, &two);
    /* 3. the outbox relay */
    if (c->outbox_relay) {
        size_t nprops;
        const cfg_kv_t *props = cfg_kafka_props(service_cfg(svc), &nprops);
        rg->relay = relay_start(rg, props, nprops, errstr, sizeof(errstr));
        if (!rg->relay) {
            log_fatal("outbox relay: %s", errstr);
            return -1;
        }
    }
    return 0;
}

static void teardown(service_t *svc, void *opaque)
{
    registry_t *rg = opaque;
    if (rg->ping)
        event_free(rg->ping);
    rg->ping = NULL;
    relay_stop(rg->relay);
    rg->relay = NULL;
    pg_close(rg->pg);
    rg->pg = NULL;
    free(rg->rl);
    free(rg->tcache);
    tls_free(rg->tls);
    rg->tls = NULL;
    if (rg->own_dsn) {
        free(rg->conf->pg_dsn);
        rg->conf->pg_dsn = NULL;
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "token"))
        return registry_token_cli(argc - 1, argv + 1);
    registry_conf_t conf;
    registry_t rg = {.conf = &conf};
    service_def_t def = {
        .name = "registry",
        .usage = "\n  model registry over HTTP (MLflow REST paths and /api/v1), backed by Postgres",
        .items = registry_items,
        .nitems = MLOPS_ARRAY_LEN(registry_items),
        .conf = &conf,
        .conf_size = sizeof(conf),
        .status_cb = status,
        .setup = setup,
        .teardown = teardown,
        .opaque = &rg,
    };
    return service_main(&def, argc, argv);
}
