/* SPDX-License-Identifier: ISC */
/*
 * shed/rcu: two reader counters indexed by the parity of a global epoch.
 * A reader counts itself in the current parity and re-checks the epoch (so a
 * reader never counts into a parity a writer has already drained). A writer
 * flips the epoch and waits for the old parity to drain; readers that start
 * after the flip see the new pointer, because the pointer was stored first.
 * All atomics are sequentially consistent: the ordering argument needs it.
 */
#include "shed/rcu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Apart on their own cache lines: every reader writes active[], and the
 * epoch, written only by writers, stays a cache hit for the readers' loads. */
static _Alignas(64) _Atomic uint64_t epoch;
static _Alignas(64) _Atomic long active[2];
static pthread_mutex_t writer = PTHREAD_MUTEX_INITIALIZER;

unsigned
shed_rcu_enter(void)
{
    for (;;) {
        uint64_t e = atomic_load(&epoch);
        unsigned p = (unsigned)(e & 1);
        atomic_fetch_add(&active[p], 1);
        if (atomic_load(&epoch) == e)
            return p;
        atomic_fetch_sub(&active[p], 1);
    }
}

void
shed_rcu_leave(unsigned token)
{
    atomic_fetch_sub(&active[token & 1], 1);
}

void
shed_rcu_synchronize(void)
{
    pthread_mutex_lock(&writer);
    uint64_t e = atomic_fetch_add(&epoch, 1);
    struct timespec ts = {0, 20000};
    while (atomic_load(&active[e & 1]) != 0)
        nanosleep(&ts, NULL);
    pthread_mutex_unlock(&writer);
}
