/* SPDX-License-Identifier: ISC */
/*
 * common/rng: xorshift64*, the one small generator the daemons use for
 * jitter and random choices. Not for anything security-related. The caller
 * owns the state (never 0: seed it with "seed | 1"), so there is no global
 * and no lock; one state per thread or per object.
 */
#ifndef COMMON_RNG_H
#define COMMON_RNG_H

#include <stdint.h>

/* Advance *<state> and return the next 64-bit value. */
static inline uint64_t
rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ull;
}

#endif /* COMMON_RNG_H */
