/* HTTPS for the registry's port: libevent's OpenSSL bufferevents under
 * evhttp, TLS 1.2 or later, for deployments beyond loopback. */
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>

#include "log.h"
#include "registry.h"

struct bufferevent *tls_bev_new(void *ctx, struct event_base *base)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        SSL_free(ssl);
    return bev;
}

static void ssl_error(const char *what, char *errstr, size_t errstr_size)
{
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    snprintf(errstr, errstr_size, "%s: %s", what, buf);
}

void *tls_enable(const char *cert_file, const char *key_file, char *errstr, size_t errstr_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_error("TLS", errstr, errstr_size);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_error(cert_file, errstr, errstr_size);
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_error(key_file, errstr, errstr_size);
        goto err;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error("the key does not match the certificate", errstr, errstr_size);
        goto err;
    }
    return ctx;
err:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_free(void *ctx) { SSL_CTX_free(ctx); }
