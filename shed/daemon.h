/* SPDX-License-Identifier: ISC */
/*
 * shed/daemon: the state one shed daemon shares between its modules,
 * created by main.c and passed down (no module reaches for it through a
 * global). MHD-free: the core and the front end both see it.
 */
#ifndef SHED_DAEMON_H
#define SHED_DAEMON_H

#include <stdatomic.h>
#include <stdint.h>

#include "shed/config.h"
#include "shed/registry.h"

/* The access log's sampling and rate (shed/access). */
struct shed_access_counters {
    _Atomic uint64_t seen;      /* redirects counted for sampling */
    _Atomic uint64_t window_s;  /* the current one-second window */
    _Atomic uint32_t in_window; /* lines asked for in it */
    _Atomic uint64_t over;      /* sampled but over the rate, not logged yet */
};

struct shed_daemon {
    struct shed_config *_Atomic cfg; /* published under shed/rcu; swapped on SIGHUP */
    struct registry *reg;            /* owned by main */
    struct shed_cluster *cluster;    /* sync, masters, escalation, reports (shed/cluster) */
    struct shed_server *server;      /* listeners and dispatch (shed/server) */
    struct shed_park *park;          /* escalations held for the masters (shed/park) */
    struct shed_agg *agg;            /* aggregator role: the engine (shed/agg), or NULL */
    struct shed_handoff *handoff;    /* aggregator role: strays to their owners, or NULL */
    struct shed_events *events;      /* recent events for the status page (shed/events) */
    struct shed_guard *guard;        /* slow and greedy clients (shed/guard) */
    struct shed_metrics *metrics;    /* the counters of /metrics (shed/metrics) */
    struct shed_access_counters access;
    uint64_t started_mono_ms, started_real_ms; /* set before any thread starts */
    /* Called by the sync thread after each of its turns with
     * <sync_turn_arg> (the front end resumes the requests it holds for the
     * masters); NULL: nothing. */
    void (*sync_turn)(void *arg);
    void *sync_turn_arg;
};

#endif /* SHED_DAEMON_H */
