/* LRU + TTL cache of online rows (see ocache.h): a hash map from entity to
 * node and a doubly linked list in recency order (head = most recent). */
#include "ocache.h"

#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "util.h"

typedef struct node {
    struct node *prev, *next;
    char *key;
    ocache_entry_t e;
} node_t;

struct ocache {
    hmap_t *map; /* key -> node_t (not owned by the map) */
    node_t *head, *tail;
    size_t cap;
    int64_t ttl_ms;
    ocache_stats_t st;
    metric_t *m_hits, *m_misses, *m_evictions;
};

ocache_t *ocache_new(size_t cap, int64_t ttl_ms, metric_t *m_hits, metric_t *m_misses,
                     metric_t *m_evictions)
{
    ocache_t *c = xcalloc(1, sizeof(*c));
    c->map = hmap_new(NULL);
    c->cap = cap ? cap : 1;
    c->ttl_ms = ttl_ms;
    c->m_hits = m_hits;
    c->m_misses = m_misses;
    c->m_evictions = m_evictions;
    return c;
}

static void node_free(node_t *n)
{
    free(n->key);
    free(n->e.pairs);
    free(n);
}

void ocache_destroy(ocache_t *c)
{
    if (!c)
        return;
    node_t *n = c->head;
    while (n) {
        node_t *next = n->next;
        node_free(n);
        n = next;
    }
    hmap_destroy(c->map);
    free(c);
}

static void unlink_node(ocache_t *c, node_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        c->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        c->tail = n->prev;
    n->prev = n->next = NULL;
}

static void push_front(ocache_t *c, node_t *n)
{
    n->prev = NULL;
    n->next = c->head;
    if (c->head)
        c->head->prev = n;
    c->head = n;
    if (!c->tail)
        c->tail = n;
}

static void drop(ocache_t *c, node_t *n)
{
    unlink_node(c, n);
    hmap_del(c->map, n->key);
    node_free(n);
    c->st.size--;
}

const ocache_entry_t *ocache_get(ocache_t *c, const char *key, int64_t now_ms)
{
    node_t *n = hmap_get(c->map, key);
    if (n && now_ms - n->e.put_ms >= c->ttl_ms) {
        drop(c, n);
        c->st.expired++;
        n = NULL;
    }
    if (!n) {
        c->st.misses++;
        if (c->m_misses)
            metric_inc(c->m_misses);
        return NULL;
    }
    c->st.hits++;
    if (c->m_hits)
        metric_inc(c->m_hits);
    if (c->head != n) {
        unlink_node(c, n);
        push_front(c, n);
    }
    return &n->e;
}

void ocache_put(ocache_t *c, const char *key, const char *pairs, size_t len, size_t npairs,
                int64_t row_ts_ms, int64_t now_ms)
{
    node_t *n = hmap_get(c->map, key);
    if (n) {
        unlink_node(c, n);
        free(n->e.pairs);
    } else {
        while (c->st.size >= c->cap && c->tail) {
            drop(c, c->tail);
            c->st.evictions++;
            if (c->m_evictions)
                metric_inc(c->m_evictions);
        }
        n = xcalloc(1, sizeof(*n));
        n->key = xstrdup(key);
        hmap_put(c->map, key, n);
        c->st.size++;
    }
    n->e.pairs = xmalloc(len + 1);
    if (len)
        memcpy(n->e.pairs, pairs, len);
    n->e.pairs[len] = '\0';
    n->e.len = len;
    n->e.npairs = npairs;
    n->e.row_ts_ms = row_ts_ms;
    n->e.put_ms = now_ms;
    push_front(c, n);
}

const char *ocache_field(const ocache_entry_t *e, const char *name)
{
    const char *p = e->pairs;
    for (size_t i = 0; i < e->npairs; i++) {
        const char *v = p + strlen(p) + 1;
        if (!strcmp(p, name))
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

void ocache_stats(const ocache_t *c, ocache_stats_t *st) { *st = c->st; }
