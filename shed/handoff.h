/* SPDX-License-Identifier: ISC */
/*
 * shed/handoff: brings messages home (docs/reachability.md). A thread of
 * the aggregator role sweeps every live server of each Burrow service with
 * the plain Burrow API (accounts, queues, message ids with ttl and hide,
 * hidden ones included) and moves each message that lives on a server other
 * than its bucket's owner (shed_line_primary(), when it is up) to the owner:
 *
 *     owner has the id       delete the stray copy (the owner's is newer)
 *     else                   read the body (raw bytes), PUT it to the owner
 *                            with the remaining ttl and hide, then delete
 *                            the stray copy; if that copy was gone by then
 *                            (a client deleted it meanwhile), delete the
 *                            new one too, so nothing deleted comes back
 *
 * It also brings home what other cells took for this cell while it had no
 * live server: the masters keep a hint per escalated write, and the sweep
 * fetches this cell's hints, moves each message back and acknowledges it.
 *
 * When: a sweep starts HANDOFF_SETTLE_MS after the last liveness change,
 * restart or new generation (so that every line shed of the cell routes on
 * the new membership and sends reads to the lookup first), again a second
 * after a sweep that moved something, and every HANDOFF_IDLE_MS otherwise
 * (anti-entropy). Moves are paced at HANDOFF_MOVES_PER_S.
 *
 * Ownership: shed_handoff_start() keeps <ctx>; shed_handoff_stop(NULL) is a
 * no-op. The counters belong to the sweeper (shed_handoff_stats()).
 */
#ifndef SHED_HANDOFF_H
#define SHED_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "shed/daemon.h"

#define HANDOFF_SETTLE_MS   2000
#define HANDOFF_IDLE_MS     10000
#define HANDOFF_MOVES_PER_S 2000

struct shed_handoff;

/* Start the sweeping thread. 0 or a negative errno. */
int shed_handoff_start(struct shed_daemon *ctx, struct shed_handoff **out);

/* Stop it (an HTTP call in flight ends within the backend timeout). */
void shed_handoff_stop(struct shed_handoff *h);

/* The sweeper's counters, for /metrics and the status page. */
struct shed_handoff_stats {
    uint64_t sweeps;           /* sweeps over every server */
    uint64_t moved;            /* messages moved to their owner */
    uint64_t dropped;          /* stray copies deleted: the owner had the message */
    uint64_t undone;           /* moves undone: a client deleted the message meanwhile */
    uint64_t abandoned;        /* sweeps stopped: membership changed during them */
    uint64_t errors;           /* calls that failed (retried at the next sweep) */
    uint64_t last_sweep_moved; /* moved or dropped by the last sweep (0: all home) */
    uint64_t home_ms;          /* wall ms when a sweep last found everything home; 0: never */
    uint64_t last_sweep_us;    /* how long the last sweep took */
    uint64_t last_sweep_msgs;  /* messages the last sweep looked at */
};
void shed_handoff_stats(const struct shed_handoff *h, struct shed_handoff_stats *out);

/* Prometheus text of <s> (shed_handoff_sweeps_total and friends) into <buf>
 * (at most <len> bytes, NUL-terminated); returns the length. */
size_t shed_handoff_stats_text(const struct shed_handoff_stats *s, char *buf, size_t len);

#endif /* SHED_HANDOFF_H */
