/* SPDX-License-Identifier: ISC */
/*
 * shed/rcu: two reader counters indexed by the parity of the domain's epoch.
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

void
shed_rcu_init(struct shed_rcu *r)
{
    atomic_init(&r->epoch, 0);
    atomic_init(&r->active[0], 0);
    atomic_init(&r->active[1], 0);
    pthread_mutex_init(&r->writer, NULL);
}

void
shed_rcu_fini(struct shed_rcu *r)
{
    pthread_mutex_destroy(&r->writer);
}

unsigned
shed_rcu_enter(struct shed_rcu *r)
{
    for (;;) {
        uint64_t e = atomic_load(&r->epoch);
        unsigned p = (unsigned)(e & 1);
        atomic_fetch_add(&r->active[p], 1);
        if (atomic_load(&r->epoch) == e)
            return p;
        atomic_fetch_sub(&r->active[p], 1);
    }
}

void
shed_rcu_leave(struct shed_rcu *r, unsigned token)
{
    atomic_fetch_sub(&r->active[token & 1], 1);
}

void
shed_rcu_synchronize(struct shed_rcu *r)
{
    pthread_mutex_lock(&r->writer);
    uint64_t e = atomic_fetch_add(&r->epoch, 1);
    struct timespec ts = {0, 20000};
    while (atomic_load(&r->active[e & 1]) != 0)
        nanosleep(&ts, NULL);
    pthread_mutex_unlock(&r->writer);
}
