/* SPDX-License-Identifier: ISC */
/*
 * shed/sync: replication between sheds. Two halves:
 *
 * Receiver bookkeeping (shed_sync_origins): per sending shed (its origin URL
 * and boot epoch) the highest sequence applied, so that a delta that does not
 * follow on what was applied is refused with need_full and the sender sends a
 * full snapshot next. Used by line sheds (peers) and masters alike.
 *
 * Sender (struct shed_sync): a background thread that, every sync interval
 * and whenever woken, pushes to each target (peer line sheds, masters) the
 * entries changed since that target's last acknowledged sequence, or a full
 * snapshot when the target is new, asked for one, or is too far behind. It
 * uses libcurl multi: all targets at once, each transfer bounded by a
 * timeout, so a slow or dead peer delays neither the others nor request
 * handling. It records
 * per target the acknowledged sequence, which the escalation path reads to
 * honour the ordering rule (a master must have acknowledged the change that
 * emptied a service before a request for it is escalated there).
 *
 * The registry is reached through callbacks, so this module does not depend
 * on the registry's internals.
 *
 * Ownership: shed_sync_start() copies the URLs and the credential;
 * shed_sync_stop(NULL) is a no-op. All functions are thread-safe.
 */
#ifndef SHED_SYNC_H
#define SHED_SYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/sync.h"

#define SHED_SYNC_MAX_ORIGINS 256
#define SHED_SYNC_MAX_TARGETS 64
#define SHED_SYNC_PATH        "/_shed/v1/sync"        /* peer line shed receives */
#define SHED_SYNC_MASTER_PATH "/_shed/v1/master/push" /* master receives */

struct shed_sync_origin {
    char origin[PROTO_SYNC_URL_MAX + 1];
    uint64_t epoch;
    uint64_t seq; /* highest applied */
};

struct shed_sync_origins {
    pthread_mutex_t lock;
    struct shed_sync_origin tab[SHED_SYNC_MAX_ORIGINS];
    size_t n;
};

void shed_sync_origins_init(struct shed_sync_origins *o);
void shed_sync_origins_fini(struct shed_sync_origins *o);

/* Decide whether <msg> can be applied: true for a full snapshot, or a delta
 * whose <since> is at most what was applied from the same origin and epoch.
 * Fills <ack> (seq applied or need_full). Call shed_sync_origins_done() after
 * applying a message this returned true for. */
bool shed_sync_origins_check(struct shed_sync_origins *o, const struct proto_sync_msg *msg,
                             struct proto_sync_ack *ack);
void shed_sync_origins_done(struct shed_sync_origins *o, const struct proto_sync_msg *msg,
                            struct proto_sync_ack *ack);

/* Fill <m> (kind, cell, origin... already set by the caller) with the
 * entries whose seq > <since> (all of them when <since> is 0); with
 * <for_peer>, only entries this shed heard itself (not learned from a peer),
 * so that no change echoes between peers. May set m->kind to
 * PROTO_SYNC_FULL (and fill everything) when <since> is older than the
 * tombstones it keeps. Returns the current sequence or a negative errno. */
typedef int64_t shed_sync_export_fn(void *arg, uint64_t since, bool for_peer,
                                    struct proto_sync_msg *m);

struct shed_sync_config {
    const char *origin;       /* this shed's own base URL */
    const char *cell;         /* this shed's cell */
    const char *aggregator;   /* the cell's aggregator, may be "" */
    const char *credential;   /* Authorization: Bearer */
    const char *const *peers; /* peer line sheds (base URLs) */
    size_t npeers;
    const char *const *masters; /* masters (base URLs) */
    size_t nmasters;
    uint64_t interval_ms; /* sync interval */
    uint64_t timeout_ms;  /* per push (connect + transfer) */
    uint32_t lease_ms;    /* told to receivers */
    shed_sync_export_fn *export_fn;
    void *arg;
    /* Called by the sender thread after every turn of its loop (at least
     * every 50 ms, and right after acknowledgements arrive), with
     * <turn_arg>. May be NULL. */
    void (*turn_fn)(void *arg);
    void *turn_arg;
};

struct shed_sync;

/* Start the sender thread. 0 or a negative errno. */
int shed_sync_start(const struct shed_sync_config *cfg, struct shed_sync **out);

/* Add peer <base> (a shed of the same cell that pushed to us) unless it is
 * already a target: replication stays a full mesh even when only one side
 * lists the other (e.g. an aggregator that names its line shed). 0, or
 * -ENOSPC when the target table is full. */
int shed_sync_add_peer(struct shed_sync *s, const char *base);

/* A reloaded config: the targets become <cfg>'s masters and peers (plus
 * the peers that pushed to us), keeping what each remaining target has
 * acknowledged; new ones get a full snapshot at once. Cell, aggregator,
 * credential, interval, timeout and lease change too; the origin, the
 * epoch and the export callback do not. Pushes in flight finish but their
 * result is dropped. 0, -ENOSPC (more than SHED_SYNC_MAX_TARGETS: the
 * first ones are kept) or -ENOMEM (nothing changed). */
int shed_sync_reconfigure(struct shed_sync *s, const struct shed_sync_config *cfg);

/* Push now (do not wait for the interval). */
void shed_sync_kick(struct shed_sync *s);

/* Has master <i> acknowledged sequence <seq> or later? */
bool shed_sync_master_acked(struct shed_sync *s, size_t i, uint64_t seq);

/* Wait until some master has acknowledged <seq> (kicking the thread), at
 * most <wait_ms>. Returns the index of such a master chosen at random with
 * <rnd> among those that have, and copies its base URL into <url> (may be
 * NULL), or -ETIMEDOUT / -ENOENT (no masters). */
int shed_sync_pick_master(struct shed_sync *s, uint64_t seq, uint64_t wait_ms, uint64_t rnd,
                          char *url, size_t urllen);

/* Counters for /metrics: pushes that succeeded and failed, full snapshots. */
void shed_sync_counters(struct shed_sync *s, uint64_t *ok, uint64_t *failed, uint64_t *full);

/* One target as the status page shows it. */
struct shed_sync_target_info {
    char base[PROTO_SYNC_URL_MAX + 1]; /* base URL */
    bool master;                       /* a master (else a peer line shed) */
    bool learned;                      /* a peer that pushed to us first */
    bool need_full;                    /* the next push is a full snapshot */
    uint64_t acked;                    /* sender sequence it has applied */
    uint64_t last_ok_ms;               /* monotonic ms of the last ack; 0: none yet */
    uint32_t failures;                 /* failed pushes since the last ack */
    char error[96];                    /* why the last push failed, "" */
};

/* Copy up to <max> targets into <out>; returns how many there are (0 for
 * a NULL <s>). */
size_t shed_sync_targets(struct shed_sync *s, struct shed_sync_target_info *out, size_t max);

void shed_sync_stop(struct shed_sync *s);

#endif /* SHED_SYNC_H */
