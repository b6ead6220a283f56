/* Canary split by a hash of the entity id (rollout.h). */
#include "rollout.h"

#include <stdint.h>
#include <string.h>

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double rollout_bucket(const char *salt, const char *entity, size_t entity_len)
{
    uint64_t h = 14695981039346656037ULL;
    if (salt)
        h = fnv1a(h, salt, strlen(salt) + 1);
    h = fnv1a(h, entity, entity_len);
    return (double)(mix64(h) >> 11) * (1.0 / 9007199254740992.0);
}

bool rollout_is_challenger(const char *salt, const char *entity, size_t entity_len, double share)
{
    if (share <= 0)
        return false;
    if (share >= 1)
        return true;
    return rollout_bucket(salt, entity, entity_len) < share;
}
