/* SPDX-License-Identifier: ISC */
/*
 * shed/rcu: a tiny epoch guard so that request threads read published
 * pointers (the registry's routing view, the daemon's config) with no
 * mutex. Readers bracket their use of a published pointer with
 * shed_rcu_enter()/shed_rcu_leave() (two atomic adds, never a wait); a
 * writer stores the new pointer, calls shed_rcu_synchronize() (waits until
 * every reader that might still hold the old pointer has left) and then
 * frees the old object.
 *
 * One domain per daemon: the registry holds it (registry_rcu()), since it
 * publishes the most; main.c publishes the config under the same domain.
 * Readers must not block or call shed_rcu_synchronize() between enter and
 * leave. Thread-safe; writers are serialised inside shed_rcu_synchronize().
 */
#ifndef SHED_RCU_H
#define SHED_RCU_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Two reader counters indexed by the parity of the epoch, apart on their
 * own cache lines: every reader writes active[], and the epoch, written
 * only by writers, stays a cache hit for the readers' loads. */
struct shed_rcu {
    _Alignas(64) _Atomic uint64_t epoch;
    _Alignas(64) _Atomic long active[2];
    pthread_mutex_t writer;
};

void shed_rcu_init(struct shed_rcu *r);
void shed_rcu_fini(struct shed_rcu *r);

/* Enter a read-side section; returns the token to pass to shed_rcu_leave(). */
unsigned shed_rcu_enter(struct shed_rcu *r);
void shed_rcu_leave(struct shed_rcu *r, unsigned token);

/* Wait until every read-side section that began before this call ended. */
void shed_rcu_synchronize(struct shed_rcu *r);

#endif /* SHED_RCU_H */
