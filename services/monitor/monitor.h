/* mlops-monitor's parts: the monitor service and the Slack notifier. */
#ifndef MLOPS_MONITOR_H
#define MLOPS_MONITOR_H

#include <stddef.h>

#include "http.h"
#include "metrics.h"

/** `mlops-monitor notify ...` (also installed as mlops-notify). */
int notify_main(int argc, char **argv);

/** The silence API (silences.c): routes under /api/v1/silences. */
typedef struct silence_api silence_api_t;
silence_api_t *silence_api_new(const char *redis_url, int timeout_ms, const char *key, metrics_t *m,
                               char *err, size_t err_size);
void silence_api_routes(silence_api_t *api, http_server_t *srv);
void silence_api_destroy(silence_api_t *api);

#endif
