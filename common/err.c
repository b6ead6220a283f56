#include "err.h"

#include <stdio.h>
#include <stdlib.h>

static void err_vfill(err_t *err, err_domain_t domain, int code, bool retriable, bool fatal,
                      const char *fmt, va_list ap) MLOPS_PRINTF(6, 0);

static void err_vfill(err_t *err, err_domain_t domain, int code, bool retriable, bool fatal,
                      const char *fmt, va_list ap)
{
    err->domain = domain;
    err->code = code;
    err->retriable = retriable;
    err->fatal = fatal;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

err_t *err_new(err_domain_t domain, int code, bool retriable, bool fatal, const char *fmt, ...)
{
    err_t *err = xcalloc(1, sizeof(*err));
    va_list ap;
    va_start(ap, fmt);
    err_vfill(err, domain, code, retriable, fatal, fmt, ap);
    va_end(ap);
    return err;
}

void err_destroy(err_t *err) { free(err); }

int err_set(err_t **errp, err_domain_t domain, int code, bool retriable, bool fatal,
            const char *fmt, ...)
{
    if (!errp || *errp)
        return -1;
    err_t *err = xcalloc(1, sizeof(*err));
    va_list ap;
    va_start(ap, fmt);
    err_vfill(err, domain, code, retriable, fatal, fmt, ap);
    va_end(ap);
    *errp = err;
    return -1;
}

const char *err_domain_name(err_domain_t domain)
{
    switch (domain) {
    case ERR_D_GENERIC: return "generic";
    case ERR_D_CONFIG: return "config";
    case ERR_D_INPUT: return "input";
    case ERR_D_KAFKA: return "kafka";
    case ERR_D_PG: return "pg";
    case ERR_D_REDIS: return "redis";
    case ERR_D_HTTP: return "http";
    case ERR_D_IO: return "io";
    }
    return "unknown";
}
