/* SPDX-License-Identifier: ISC */
/*
 * shed/park: escalations held until a master has acknowledged (park.h).
 */
#include "shed/park.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* Requests held (suspended MHD connections) because no master has yet
 * acknowledged the change that left this cell without a live member. The
 * sync thread resumes them after each of its turns (at least every 50 ms,
 * and at once when an acknowledgement arrives); each one is routed again,
 * and held again until PARK_WAIT_MS after it first was. An entry stays
 * (resumed) until its request comes back or completes, which is how a
 * request knows since when it waits. */
#define PARK_MAX     1024
#define PARK_WAIT_MS 2000

struct shed_park {
    pthread_mutex_t mu;
    struct parked {
        struct MHD_Connection *conn;
        uint64_t since_ms;
        bool resumed;
    } e[PARK_MAX];
    size_t n;
    _Atomic size_t count; /* n, read without the lock */
    bool closed;          /* stopping: nothing is held any more */
};

int
shed_park_create(struct shed_park **out)
{
    struct shed_park *p = calloc(1, sizeof(*p));

    *out = p;
    if (p == NULL)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    return 0;
}

void
shed_park_destroy(struct shed_park *p)
{
    if (p == NULL)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static void
park_remove(struct shed_park *P, size_t i)
{
    P->e[i] = P->e[--P->n];
    atomic_store(&P->count, P->n);
}

/* Remove <conn>'s entry; its first-held time, or <now> if it had none. */
static uint64_t
park_take(struct shed_park *P, struct MHD_Connection *conn, uint64_t now)
{
    for (size_t i = 0; i < P->n; i++)
        if (P->e[i].conn == conn) {
            uint64_t since = P->e[i].since_ms;
            park_remove(P, i);
            return since;
        }
    return now;
}

bool
shed_park_hold(struct shed_park *P, struct shed_call *c)
{
    const char *expect = shed_http_header(c->conn, "Expect");
    bool held = false;

    pthread_mutex_lock(&P->mu);
    uint64_t since = park_take(P, c->conn, c->now_ms);
    /* A client that waits for 100 Continue is answered now: holding it
     * would make MHD invite the body. */
    if (!P->closed && P->n < PARK_MAX && c->now_ms - since < PARK_WAIT_MS && expect == NULL) {
        P->e[P->n++] = (struct parked){c->conn, since, false};
        atomic_store(&P->count, P->n);
        MHD_suspend_connection(c->conn);
        held = true;
    }
    pthread_mutex_unlock(&P->mu);
    return held;
}

void
shed_park_forget(struct shed_park *P, struct MHD_Connection *conn)
{
    if (atomic_load_explicit(&P->count, memory_order_relaxed) == 0)
        return; /* the common case: no lock on the request path */
    pthread_mutex_lock(&P->mu);
    park_take(P, conn, 0);
    pthread_mutex_unlock(&P->mu);
}

void
shed_park_resume_all(void *arg)
{
    struct shed_park *P = arg;
    if (atomic_load(&P->count) == 0)
        return;
    pthread_mutex_lock(&P->mu);
    for (size_t i = 0; i < P->n; i++)
        if (!P->e[i].resumed) {
            P->e[i].resumed = true;
            MHD_resume_connection(P->e[i].conn);
        }
    pthread_mutex_unlock(&P->mu);
}

void
shed_park_stop(struct shed_park *P)
{
    pthread_mutex_lock(&P->mu);
    P->closed = true;
    pthread_mutex_unlock(&P->mu);
    shed_park_resume_all(P);
    /* Each resumed request is answered (503) by the still-running front
     * end; MHD must not stop with a suspended connection. */
    for (int i = 0; i < 2000 && atomic_load(&P->count) > 0; i++) {
        struct timespec ts = {0, 1000000L};

        nanosleep(&ts, NULL);
    }
}
