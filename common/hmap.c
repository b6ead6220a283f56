#include "hmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define TOMB ((char *)1)

typedef struct slot {
    char *key; /* NULL empty, TOMB deleted */
    uint64_t hash;
    void *value;
} slot_t;

struct hmap {
    slot_t *s;
    size_t cap, n, used; /* used = live + tombstones */
    void (*free_value)(void *);
};

static uint64_t fnv1a(const char *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

hmap_t *hmap_new(void (*free_value)(void *))
{
    hmap_t *m = xcalloc(1, sizeof(*m));
    m->cap = 16;
    m->s = xcalloc(m->cap, sizeof(slot_t));
    m->free_value = free_value;
    return m;
}

void hmap_destroy(hmap_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->s[i].key && m->s[i].key != TOMB) {
            free(m->s[i].key);
            if (m->free_value)
                m->free_value(m->s[i].value);
        }
    }
    free(m->s);
    free(m);
}

static slot_t *find(const hmap_t *m, const char *key, uint64_t h)
{
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        slot_t *s = &m->s[i];
        if (!s->key)
            return NULL;
        if (s->key != TOMB && s->hash == h && !strcmp(s->key, key))
            return s;
    }
}

static void grow(hmap_t *m)
{
    slot_t *old = m->s;
    size_t oldcap = m->cap;
    if (m->n * 2 >= m->cap)
        m->cap *= 2;
    m->s = xcalloc(m->cap, sizeof(slot_t));
    m->used = m->n;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].key || old[i].key == TOMB)
            continue;
        size_t j = old[i].hash & (m->cap - 1);
        while (m->s[j].key)
            j = (j + 1) & (m->cap - 1);
        m->s[j] = old[i];
    }
    free(old);
}

void *hmap_get(const hmap_t *m, const char *key)
{
    slot_t *s = find(m, key, fnv1a(key));
    return s ? s->value : NULL;
}

void *hmap_put(hmap_t *m, const char *key, void *value)
{
    uint64_t h = fnv1a(key);
    slot_t *s = find(m, key, h);
    if (s) {
        void *prev = s->value;
        s->value = value;
        return prev;
    }
    if ((m->used + 1) * 4 >= m->cap * 3)
        grow(m);
    size_t i = h & (m->cap - 1);
    while (m->s[i].key && m->s[i].key != TOMB)
        i = (i + 1) & (m->cap - 1);
    if (!m->s[i].key)
        m->used++;
    m->s[i].key = xstrdup(key);
    m->s[i].hash = h;
    m->s[i].value = value;
    m->n++;
    return NULL;
}

void *hmap_del(hmap_t *m, const char *key)
{
    slot_t *s = find(m, key, fnv1a(key));
    if (!s)
        return NULL;
    void *v = s->value;
    free(s->key);
    s->key = TOMB;
    s->value = NULL;
    m->n--;
    return v;
}

size_t hmap_size(const hmap_t *m) { return m->n; }

bool hmap_next(const hmap_t *m, size_t *it, const char **key, void **value)
{
    for (; *it < m->cap; (*it)++) {
        slot_t *s = &m->s[*it];
        if (s->key && s->key != TOMB) {
            *key = s->key;
            *value = s->value;
            (*it)++;
            return true;
        }
    }
    return false;
}
