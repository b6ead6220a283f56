/* The registry's connections (common/httpconn.c does the work): TLS when it
 * is on, a cap of max_connections open at once, and the registry's
 * {"error_code","message"} JSON for the errors evhttp answers by itself. */
#include "httpconn.h"
#include "registry.h"

static json_t *early_error(void *arg, int code, const char *phrase)
{
    const registry_conf_t *cf = ((registry_t *)arg)->conf;
    long long body_max =
        (long long)(cf->max_artifact_bytes > cf->max_body_bytes ? cf->max_artifact_bytes
                                                                : cf->max_body_bytes);
    if (code == 413)
        return json_pack("{s:s,s:o}", "error_code", "RESOURCE_LIMIT_EXCEEDED", "message",
                         json_sprintf("the request body is larger than %lld bytes, the most "
                                      "this registry reads (max_artifact_bytes = %lld for "
                                      "artifact uploads, max_body_bytes = %lld for JSON)",
                                      body_max, (long long)cf->max_artifact_bytes,
                                      (long long)cf->max_body_bytes));
    if (code == 400)
        return json_pack("{s:s,s:o}", "error_code", "BAD_REQUEST", "message",
                         json_sprintf("malformed request line or headers, or a header block "
                                      "larger than max_header_bytes = %lld bytes",
                                      (long long)cf->max_header_bytes));
    return json_pack("{s:s,s:o}", "error_code", code >= 500 ? "INTERNAL_ERROR" : "BAD_REQUEST",
                     "message", json_sprintf("%d %s", code, phrase));
}

static json_t *refused_error(void *arg)
{
    const registry_conf_t *cf = ((registry_t *)arg)->conf;
    return json_pack("{s:s,s:o}", "error_code", "TEMPORARILY_UNAVAILABLE", "message",
                     json_sprintf("too many connections: this registry serves at most %lld at "
                                  "once (max_connections); retry later",
                                  (long long)cf->max_connections));
}

static struct bufferevent *make_bev(void *arg, struct event_base *base)
{
    return tls_bev_new(((registry_t *)arg)->tls, base);
}

void conn_install(registry_t *rg, http_server_t *srv)
{
    httpconn_conf_t hc = {.metric_prefix = "mlops_registry_http",
                          .max_connections = rg->conf->max_connections,
                          .max_header_bytes = rg->conf->max_header_bytes,
                          .early_error = early_error,
                          .refused_error = refused_error,
                          .make_bev = rg->tls ? make_bev : NULL,
                          .arg = rg};
    httpconn_install(srv, service_metrics(rg->svc), &hc);
}
