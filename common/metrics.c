#include "metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A double stored as its bits so it can be updated with CAS from any thread. */
typedef _Atomic uint64_t atomic_dbl_t;

static double adbl_load(const atomic_dbl_t *a)
{
    uint64_t bits = atomic_load(a);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static void adbl_store(atomic_dbl_t *a, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    atomic_store(a, bits);
}

static void adbl_add(atomic_dbl_t *a, double v)
{
    uint64_t old = atomic_load(a), nw;
    do {
        double d;
        memcpy(&d, &old, sizeof(d));
        d += v;
        memcpy(&nw, &d, sizeof(nw));
    } while (!atomic_compare_exchange_weak(a, &old, nw));
}

struct metric {
    metric_type_t type;
    char *name;
    char *help;
    char *labels;           /* may be NULL */
    atomic_dbl_t value;     /* counter, gauge; histogram sum */
    _Atomic uint64_t count; /* histogram */
    double *bounds;
    size_t nbounds;
    _Atomic uint64_t *buckets; /* nbounds + 1 (last = +Inf), not cumulative */
    struct metric *next;
};

struct metrics {
    pthread_mutex_t lock;
    metric_t *head, *tail;
    double start_time;
};

static const double default_latency_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                0.5,     1,      2.5,     5,      10};

metrics_t *metrics_new(void)
{
    metrics_t *reg = xcalloc(1, sizeof(*reg));
    pthread_mutex_init(&reg->lock, NULL);
    reg->start_time = (double)wall_us() / 1e6;
    return reg;
}

void metrics_destroy(metrics_t *reg)
{
    if (!reg)
        return;
    metric_t *m = reg->head;
    while (m) {
        metric_t *next = m->next;
        free(m->name);
        free(m->help);
        free(m->labels);
        free(m->bounds);
        free((void *)m->buckets);
        free(m);
        m = next;
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static void check_name(const char *name)
{
    bool ok = name && (isalpha((unsigned char)name[0]) || name[0] == '_' || name[0] == ':');
    for (const char *p = name; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '_' || *p == ':';
    if (!ok) {
        fprintf(stderr, "metrics: invalid metric name '%s'\n", name ? name : "(null)");
        abort();
    }
}

static metric_t *reg_add(metrics_t *reg, metric_type_t type, const char *name, const char *help,
                         const char *labels, const double *bounds, size_t nbounds)
{
    check_name(name);
    pthread_mutex_lock(&reg->lock);
    for (metric_t *m = reg->head; m; m = m->next) {
        if (!strcmp(m->name, name) &&
            ((!m->labels && !labels) || (m->labels && labels && !strcmp(m->labels, labels)))) {
            pthread_mutex_unlock(&reg->lock);
            return m;
        }
    }
    metric_t *m = xcalloc(1, sizeof(*m));
    m->type = type;
    m->name = xstrdup(name);
    m->help = xstrdup(help ? help : "");
    m->labels = labels && *labels ? xstrdup(labels) : NULL;
    if (type == METRIC_HISTOGRAM) {
        if (!bounds) {
            bounds = default_latency_bounds;
            nbounds = MLOPS_ARRAY_LEN(default_latency_bounds);
        }
        m->bounds = xmalloc(nbounds * sizeof(double));
        memcpy(m->bounds, bounds, nbounds * sizeof(double));
        m->nbounds = nbounds;
        m->buckets = xcalloc(nbounds + 1, sizeof(*m->buckets));
    }
    if (reg->tail)
        reg->tail->next = m;
    else
        reg->head = m;
    reg->tail = m;
    pthread_mutex_unlock(&reg->lock);
    return m;
}

metric_t *metrics_counter(metrics_t *reg, const char *name, const char *help, const char *labels)
{
    return reg_add(reg, METRIC_COUNTER, name, help, labels, NULL, 0);
}

metric_t *metrics_gauge(metrics_t *reg, const char *name, const char *help, const char *labels)
{
    return reg_add(reg, METRIC_GAUGE, name, help, labels, NULL, 0);
}

metric_t *metrics_histogram(metrics_t *reg, const char *name, const char *help, const char *labels,
                            const double *bounds, size_t nbounds)
{
    return reg_add(reg, METRIC_HISTOGRAM, name, help, labels, bounds, nbounds);
}

char *metrics_labels(char *buf, size_t size, ...)
{
    strbuf_t sb;
    strbuf_init(&sb);
    va_list ap;
    va_start(ap, size);
    const char *k;
    bool first = true;
    while ((k = va_arg(ap, const char *))) {
        const char *v = va_arg(ap, const char *);
        if (!first)
            strbuf_putc(&sb, ',');
        first = false;
        strbuf_appendf(&sb, "%s=\"", k);
        for (const char *p = v ? v : ""; *p; p++) {
            if (*p == '\\' || *p == '"')
                strbuf_putc(&sb, '\\'), strbuf_putc(&sb, *p);
            else if (*p == '\n')
                strbuf_puts(&sb, "\\n");
            else
                strbuf_putc(&sb, *p);
        }
        strbuf_putc(&sb, '"');
    }
    va_end(ap);
    str_copy(buf, sb.data, size);
    strbuf_cleanup(&sb);
    return buf;
}

void metric_inc(metric_t *m) { adbl_add(&m->value, 1.0); }
void metric_add(metric_t *m, double v) { adbl_add(&m->value, v); }
void metric_set(metric_t *m, double v) { adbl_store(&m->value, v); }

void metric_observe(metric_t *m, double v)
{
    if (m->type != METRIC_HISTOGRAM || v != v)
        return;
    size_t i = 0;
    while (i < m->nbounds && v > m->bounds[i])
        i++;
    atomic_fetch_add(&m->buckets[i], 1);
    atomic_fetch_add(&m->count, 1);
    adbl_add(&m->value, v);
}

double metric_value(const metric_t *m)
{
    if (m->type == METRIC_HISTOGRAM)
        return (double)atomic_load(&m->count);
    return adbl_load(&m->value);
}

double metric_sum(const metric_t *m) { return adbl_load(&m->value); }

double metric_quantile(const metric_t *m, double q)
{
    if (m->type != METRIC_HISTOGRAM)
        return NAN;
    uint64_t total = 0;
    for (size_t i = 0; i <= m->nbounds; i++)
        total += atomic_load(&m->buckets[i]);
    if (!total)
        return NAN;
    double rank = q * (double)total;
    uint64_t cum = 0;
    for (size_t i = 0; i <= m->nbounds; i++) {
        uint64_t c = atomic_load(&m->buckets[i]);
        if ((double)(cum + c) >= rank && c) {
            if (i == m->nbounds) /* +Inf bucket: the highest finite bound */
                return m->bounds[m->nbounds - 1];
            double lo = i ? m->bounds[i - 1] : 0.0, hi = m->bounds[i];
            return lo + (hi - lo) * ((rank - (double)cum) / (double)c);
        }
        cum += c;
    }
    return m->bounds[m->nbounds - 1];
}

static void fmt_double(strbuf_t *out, double v)
{
    if (isnan(v))
        strbuf_puts(out, "NaN");
    else if (isinf(v))
        strbuf_puts(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        strbuf_appendf(out, "%.0f", v);
    else
        strbuf_appendf(out, "%.17g", v);
}

static void render_series(strbuf_t *out, const metric_t *m)
{
    if (m->type != METRIC_HISTOGRAM) {
        strbuf_puts(out, m->name);
        if (m->labels)
            strbuf_appendf(out, "{%s}", m->labels);
        strbuf_putc(out, ' ');
        fmt_double(out, adbl_load(&m->value));
        strbuf_putc(out, '\n');
        return;
    }
    uint64_t cum = 0;
    for (size_t i = 0; i <= m->nbounds; i++) {
        cum += atomic_load(&m->buckets[i]);
        strbuf_appendf(out, "%s_bucket{%s%sle=\"", m->name, m->labels ? m->labels : "",
                       m->labels ? "," : "");
        if (i < m->nbounds)
            fmt_double(out, m->bounds[i]);
        else
            strbuf_puts(out, "+Inf");
        strbuf_appendf(out, "\"} %llu\n", (unsigned long long)cum);
    }
    const char *l = m->labels;
    strbuf_appendf(out, "%s_sum%s%s%s ", m->name, l ? "{" : "", l ? l : "", l ? "}" : "");
    fmt_double(out, adbl_load(&m->value));
    strbuf_appendf(out, "\n%s_count%s%s%s %llu\n", m->name, l ? "{" : "", l ? l : "", l ? "}" : "",
                   (unsigned long long)cum);
}

static void render_process(const metrics_t *reg, strbuf_t *out)
{
    long page = sysconf(_SC_PAGESIZE), tick = sysconf(_SC_CLK_TCK);
    FILE *fp = fopen("/proc/self/stat", "r");
    if (fp) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        /* fields after the ")" that closes comm: state is field 3 */
        char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0;
        long rss = 0;
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
                        "%*d %*d %*d %*u %*u %ld",
                        &utime, &stime, &rss) == 3) {
            strbuf_appendf(out,
                           "# HELP process_cpu_seconds_total User and system CPU time.\n"
                           "# TYPE process_cpu_seconds_total counter\n"
                           "process_cpu_seconds_total %.2f\n"
                           "# HELP process_resident_memory_bytes Resident memory size.\n"
                           "# TYPE process_resident_memory_bytes gauge\n"
                           "process_resident_memory_bytes %ld\n",
                           (double)(utime + stime) / (double)tick, rss * page);
        }
    }
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        while (readdir(d))
            fds++;
        closedir(d);
        fds -= 3; /* ".", ".." and the directory's own fd */
    }
    strbuf_appendf(out,
                   "# HELP process_open_fds Open file descriptors.\n"
                   "# TYPE process_open_fds gauge\nprocess_open_fds %d\n"
                   "# HELP process_start_time_seconds Start time since the epoch.\n"
                   "# TYPE process_start_time_seconds gauge\n"
                   "process_start_time_seconds %.3f\n",
                   fds, reg->start_time);
}

void metrics_render(metrics_t *reg, strbuf_t *out)
{
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&reg->lock);
    for (metric_t *m = reg->head; m; m = m->next) {
        /* first series of this name? then write the family with all its series */
        bool seen = false;
        for (metric_t *p = reg->head; p != m && !seen; p = p->next)
            seen = !strcmp(p->name, m->name);
        if (seen)
            continue;
        strbuf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                       type_names[m->type]);
        for (metric_t *s = m; s; s = s->next)
            if (!strcmp(s->name, m->name))
                render_series(out, s);
    }
    pthread_mutex_unlock(&reg->lock);
    render_process(reg, out);
}
