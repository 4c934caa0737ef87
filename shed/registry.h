/* SPDX-License-Identifier: ISC */
/*
 * shed/registry: the membership of every service this shed routes, fed by
 * heartbeats, and the routing view built from it.
 *
 * Records:  registry_heartbeat() / registry_deregister() (any thread).
 * Timing:   registry_tick() expires leases (member down: skipped, the ring
 *           stays), evicts members down longer than evict_after (at most
 *           evict_cap per heartbeat interval, never the last live members of a
 *           service), lets new members join after join_heartbeats heartbeats,
 *           rebuilds rings (a new generation, the old one kept for the drain
 *           window) and ends drain windows. The daemon calls it every ~50 ms;
 *           tests call it with their own clock. Every function takes the time
 *           as <now> (milliseconds, any monotonic origin): the clock is injected.
 * Builds:   a ring build (tens of ms at thousands of members) runs with the
 *           records' mutex released: heartbeats, deregistrations, peers'
 *           entries and failure-report lookups never wait for one. Builds
 *           are one at a time (registry_tick() and registry_reconfigure()
 *           wait for each other); what changed during a build is in the next
 *           tick's ring, liveness at once (docs/membership.md).
 *
 * Routing view: an immutable struct registry_view (per service: the current
 * and previous ring, generation, digest, header text) published with an
 * atomic pointer. Readers take no lock:
 *
 *     unsigned t = shed_rcu_enter(registry_rcu(reg));
 *     const struct registry_view *v = registry_view(reg);
 *     ... use v, route->live[], route->load[] ...
 *     shed_rcu_leave(registry_rcu(reg), t);
 *
 * Liveness changes do not rebuild anything: they are atomic stores into the
 * current generation's live[] array (indexed like ring_member_at()).
 *
 * Ownership: registry_create() returns an owned registry; registry_destroy
 * (NULL) is a no-op, and registry_destroy() waits for a build in progress
 * (no other call may start on <reg> then). Views belong to the registry and
 * stay valid inside the read-side section that loaded them. All functions
 * are thread-safe.
 */
#ifndef SHED_REGISTRY_H
#define SHED_REGISTRY_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/heartbeat.h"
#include "proto/sync.h"
#include "ring/ring.h"
#include "shed/config.h"

/* Liveness of a ring member, as routers see it (route->live[idx]). */
enum registry_live {
    REGISTRY_UP = 0,       /* route to it */
    REGISTRY_DRAINING = 1, /* no new primaries: skipped for primary choice */
    REGISTRY_SUSPECT = 2,  /* reported failed by clients: skipped */
    REGISTRY_DOWN = 3,     /* lease expired or deregistered: skipped */
};

/* One service in the routing view. Immutable but for the atomics. */
struct registry_route {
    char name[SHED_NAME_MAX];
    size_t name_len;
    enum shed_service_kind kind;
    unsigned slot;            /* stable metrics slot of this service name */
    const struct ring *ring;  /* current generation, never NULL (may be empty) */
    const struct ring *prev;  /* previous generation in the drain window, or NULL */
    uint64_t generation;      /* of ring; 0 before the first member joined */
    uint64_t prev_generation; /* of prev, 0 if none */
    char digest[33];          /* ring_digest(ring) */
    char ring_header[160];    /* Shed-Ring value: "b=..; k=..; sa=..; sk=.." */
    uint32_t pin_ttl_s;       /* Shed-Pin-TTL */
    uint32_t max_weight;      /* largest member weight in ring (>= 1) */
    _Atomic uint8_t *live;    /* enum registry_live per ring member index */
    _Atomic uint32_t *load;   /* recent redirects per ring member index (decays) */
    /* unsettled is nonzero in the settle window after a liveness change or
     * restart: messages may live off their owner, single-message reads go
     * to the aggregator's lookup (docs/reachability.md). */
    const struct registry_settle *settle;
    bool lookups; /* timings.settle_window > 0 */
};

/* Per service, for as long as the service exists. */
struct registry_settle {
    _Atomic uint8_t unsettled; /* in the settle window */
    _Atomic uint64_t changes;  /* liveness changes, restarts and new generations so far */
};

struct registry_view {
    size_t nroutes;
    struct registry_route *routes;
};

/* Counts per service for /metrics. */
struct registry_counts {
    char name[SHED_NAME_MAX];
    uint64_t generation;
    uint32_t joining, up, draining, suspect, down;
};

struct registry;

/* The metrics slot names (route->slot indexes them; SHED_METRICS_SLOTS at
 * most, the last "_other" once full) into <out>; returns how many. */
/* The read-side domain of the views (shed/rcu), also the daemon's for its
 * config: valid for the registry's life. */
struct shed_rcu *registry_rcu(struct registry *reg);

size_t registry_slot_names(struct registry *reg, char (*out)[SHED_NAME_MAX], size_t max);

/* Build a registry for <cfg>'s services and timings (<cfg> is copied from,
 * not kept). <seed> seeds the interval jitter. 0 or -ENOMEM / -RING_E*. */
int registry_create(const struct shed_config *cfg, uint64_t seed, struct registry **out);
void registry_destroy(struct registry *reg);

/* Apply a reloaded config: new timings and limits at once; services whose
 * kind or ring parameters changed rebuild their ring (new generation); new
 * services start empty; removed services are dropped with their members.
 * Describes what changed in <log> (may be "" when nothing did). 0 or -errno. */
int registry_reconfigure(struct registry *reg, const struct shed_config *cfg, uint64_t now,
                         char *log, size_t loglen);

/* Record a heartbeat. On 0, <reply> holds the lease, the (jittered, longer
 * under load) interval and the service's ring generation. Errors: -ENOENT
 * (unknown service), -ESTALE (incarnation lower than the one registered),
 * -ERANGE (weight above the service's weight_scale), -ENOSPC (max_members). */
int registry_heartbeat(struct registry *reg, const struct proto_heartbeat *hb, uint64_t now,
                       struct proto_heartbeat_reply *reply);

/* Remove a member at once (clean shutdown); it stops getting redirects now
 * and leaves the ring at the next tick. Errors: -ENOENT (unknown service or
 * member), -ESTALE (<incarnation> lower than the registered one). */
int registry_deregister(struct registry *reg, const char *service, size_t slen, const char *id,
                        size_t idlen, uint64_t incarnation, uint64_t now);

/* Timers: leases, evictions, joins, rebuilds, drain windows, load decay.
 * Returns true if a new view was published. */
bool registry_tick(struct registry *reg, uint64_t now);

/* The current view; only inside a shed_rcu read-side section. */
const struct registry_view *registry_view(const struct registry *reg);

/* The route of service <name> in <view>, or NULL. */
const struct registry_route *registry_route_find(const struct registry_view *view, const char *name,
                                                 size_t len);

/* Fill up to <max> per-service counts; returns how many services exist. */
size_t registry_counts(struct registry *reg, struct registry_counts *out, size_t max);

/* Evictions since start (all services). */
uint64_t registry_evictions(const struct registry *reg);

/* Members in the registry (all services, every state). */
size_t registry_size(struct registry *reg);

/* Status as a new JSON object {services: [{name, kind, generation, digest,
 * prev_generation, members: [{id, url, zone, weight, state, incarnation,
 * in_ring, age_ms}]}]}; the caller owns it. NULL on allocation failure. */
json_t *registry_status(struct registry *reg, uint64_t now);

/* ---- Replication, warm restart, client reports (docs/masters.md) ---- */

/* Add to <msg> the members (that proved themselves) and removals whose
 * change sequence is above <since>, all of them when <since> is 0. With
 * <for_peer> and since > 0, only what this shed heard itself (so nothing
 * echoes between peers). Sets msg->kind to PROTO_SYNC_FULL when removals
 * after <since> were already forgotten. Returns the current sequence. */
int64_t registry_export(struct registry *reg, uint64_t since, bool for_peer, uint64_t now,
                        struct proto_sync_msg *msg);

/* Merge entries from a peer (or, with <unconfirmed>, from this shed's own
 * snapshot: every entry that was up is served for one lease from <now>).
 * Invalid entries are skipped with one log line. Call registry_tick() after
 * it to rebuild rings. *<napplied> (may be NULL) counts entries that changed
 * something. 0. */
int registry_apply(struct registry *reg, const struct proto_sync_msg *msg, uint64_t now,
                   bool unconfirmed, size_t *napplied);

/* The sequence a master must have acknowledged before a request for
 * <service> may be escalated (the change that left the cell without a
 * live member). */
uint64_t registry_escalation_seq(struct registry *reg, const char *service, size_t len);

/* The current sequence; the highest "service became empty" sequence. */
uint64_t registry_seq(struct registry *reg);
uint64_t registry_last_empty_seq(struct registry *reg);

/* A write of <service> was sent off its owner (around a host its client
 * reported failed): open the settle window as a liveness change does. */
void registry_mark_moved(struct registry *reg, const char *service, size_t len);

/* Is <hostport> ("host:port", as in Shed-Failed) where some member that
 * has not left serves? Its url into <url> (may be NULL). Failure reports
 * about other hosts are ignored, so made-up names cannot fill the report
 * table (shed/suspect). O(members), one hash compare each. */
bool registry_host_url(struct registry *reg, const char *hostport, char *url, size_t urllen);

/* The shed's own probe found <hostport> dead at <now>: every member there
 * is suspect until <until> and down (replicated to peers as down, heard at
 * <now>, so it outweighs their older heartbeats). Returns how many. */
size_t registry_probe_failed(struct registry *reg, const char *hostport, uint64_t now,
                             uint64_t until);

/* Text for enum registry_live. */
const char *registry_live_name(enum registry_live l);

#endif /* SHED_REGISTRY_H */
