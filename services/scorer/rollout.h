/*
 * Traffic split between champion and challenger (canary): an entity's
 * bucket is a 64-bit FNV-1a hash of "<salt>\0<entity>" through the
 * splitmix64 finaliser, as a number in [0, 1). The challenger serves the
 * entities whose bucket is below the share, so a given entity stays on one
 * side for a given salt (the model name) and share, and raising the share
 * only moves entities from champion to challenger.
 */
#ifndef MLOPS_SCORER_ROLLOUT_H
#define MLOPS_SCORER_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>

/** The entity's bucket in [0, 1). */
double rollout_bucket(const char *salt, const char *entity, size_t entity_len);

/** True when the challenger serves @p entity at @p share (0..1). */
bool rollout_is_challenger(const char *salt, const char *entity, size_t entity_len, double share);

#endif
