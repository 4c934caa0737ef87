/* SPDX-License-Identifier: ISC */
/*
 * common/announce: heartbeat a backend to one or more sheds from a background
 * thread (libcurl), following the heartbeat protocol of proto/heartbeat.h:
 * register/renew every interval the shed asks for (jittered), back off when a
 * shed is unreachable, and deregister on announce_stop().
 *
 * Used by burrowd --announce and by the "shed announce" sidecar (which also
 * health-checks the backend and sets <healthy> accordingly).
 *
 * Ownership: announce_start() copies everything it needs from <cfg>;
 * announce_stop(NULL) is a no-op. Thread-safe: announce_set_state() may be
 * called from any thread.
 */
#ifndef COMMON_ANNOUNCE_H
#define COMMON_ANNOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ANNOUNCE_MAX_TARGETS 16

struct announce_config {
    const char *targets[ANNOUNCE_MAX_TARGETS]; /* shed base URLs, "http://127.0.0.1:8080" */
    size_t ntargets;
    const char *service;    /* "burrow" */
    const char *id;         /* stable backend id */
    const char *url;        /* where clients reach the backend, "http://127.0.0.1:9001" */
    const char *zone;       /* failure domain, may be "" */
    uint32_t weight;        /* 1.. */
    const char *credential; /* cluster credential */
    uint64_t incarnation;   /* 0: derive from the start time */
};

enum announce_state {
    ANNOUNCE_UP = 0,
    ANNOUNCE_DRAINING,
    ANNOUNCE_DOWN, /* stop heartbeating as up (sidecar: backend unhealthy) */
};

struct announce;

/* Start heartbeating in a background thread. 0 or a negative errno; on
 * error nothing runs. */
int announce_start(const struct announce_config *cfg, struct announce **out);

/* Change what the next heartbeat says. */
void announce_set_state(struct announce *a, enum announce_state st);

/* Has a shed refused our heartbeat (any 4xx: wrong credential, url outside
 * its register_networks, weight above its weight_scale, unknown service, a
 * newer incarnation) before it ever accepted one? Then a setting is wrong
 * and waiting will not fix it: the caller should exit with the reason,
 * copied into <why> (may be NULL). Refusals by a shed that accepted us
 * earlier (a credential rotated meanwhile) are only logged: the heartbeats
 * go on with backoff. 5xx and unreachable sheds are retried. */
bool announce_refused(struct announce *a, char *why, size_t len);

/* Deregister from every target (bounded by a short timeout), stop the
 * thread, free everything. */
void announce_stop(struct announce *a);

#endif /* COMMON_ANNOUNCE_H */
