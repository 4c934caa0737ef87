/* SPDX-License-Identifier: ISC */
/*
 * shed/rcu: a tiny epoch guard so that request threads read the published
 * routing view and config with no mutex. Readers bracket their use of a
 * published pointer with shed_rcu_enter()/shed_rcu_leave() (two atomic adds,
 * never a wait); a writer stores the new pointer, calls shed_rcu_synchronize()
 * (waits until every reader that might still hold the old pointer has left)
 * and then frees the old object.
 *
 * Readers must not block or call shed_rcu_synchronize() between enter and
 * leave. Thread-safe; writers are serialised inside shed_rcu_synchronize().
 */
#ifndef SHED_RCU_H
#define SHED_RCU_H

/* Enter a read-side section; returns the token to pass to shed_rcu_leave(). */
unsigned shed_rcu_enter(void);
void shed_rcu_leave(unsigned token);

/* Wait until every read-side section that began before this call ended. */
void shed_rcu_synchronize(void);

#endif /* SHED_RCU_H */
