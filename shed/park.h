/* SPDX-License-Identifier: ISC */
/*
 * shed/park: requests held (suspended libmicrohttpd connections) because
 * no master has yet acknowledged the change that left this cell without a
 * live member (an answer with await_masters, shed/route). The sync thread
 * resumes them after each of its turns (at least every 50 ms, and at once
 * when an acknowledgement arrives: struct shed_daemon.sync_turn); each one is
 * routed again, and held again until 2 s after it first was. An entry
 * stays (resumed) until its request comes back or completes, which is how a
 * request knows since when it waits. At most 1024 held at once.
 *
 * Thread-safe; shed_park_forget() takes no lock while nothing is held.
 */
#ifndef SHED_PARK_H
#define SHED_PARK_H

#include <stdbool.h>

#include "shed/http.h"

struct shed_park;

/* 0 or -ENOMEM. */
int shed_park_create(struct shed_park **out);
/* After the front end stopped; NULL is a no-op. */
void shed_park_destroy(struct shed_park *p);

/* Hold call <c> (its connection is suspended; true) unless it waited 2 s
 * already, the table is full, the client expects 100 Continue (holding it
 * would make MHD invite the body) or <p> is stopping: false, answer now. */
bool shed_park_hold(struct shed_park *p, struct shed_call *c);

/* MHD completed a request on <conn>: forget any hold entry of it. */
void shed_park_forget(struct shed_park *p, struct MHD_Connection *conn);

/* Resume every held request so that it is routed again (the sync thread's
 * turn hook; <arg> is the struct shed_park). */
void shed_park_resume_all(void *arg);

/* Stopping: hold nothing more, resume every held request and wait (at
 * most 2 s) until each is answered (503). Called when the front end
 * quiesces and again before MHD stops; the second call finds nothing. */
void shed_park_stop(struct shed_park *p);

#endif /* SHED_PARK_H */
