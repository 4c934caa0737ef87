/* SPDX-License-Identifier: ISC */
/*
 * shed/registry internals, shared by the files of the registry and by
 * nothing else:
 *
 *   registry.c       the member records: heartbeats, leases, evictions,
 *                    joins, reloads, counts, status, replication, failure
 *                    reports
 *   registry_view.c  the routing view: ring builds, the published view,
 *                    liveness stores into it, frees deferred past readers
 *
 * Two locks, always taken in this order: build_mu makes ring builds one at a
 * time (registry_tick() and registry_reconfigure() hold it throughout,
 * registry_destroy() takes it to wait for a build); mu guards the records.
 * A build copies what it needs out of the records under mu, runs
 * ring_build() with mu released (tens of ms at thousands of members, during
 * which heartbeats, deregistrations, peers' entries and failure reports go
 * on), then takes mu again to install the table against the records as they
 * are then (registry_build()).
 */
#ifndef SHED_REGISTRY_IMPL_H
#define SHED_REGISTRY_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shed/metrics.h"
#include "shed/rcu.h"
#include "shed/registry.h"

#define GARBAGE_MAX (4 * SHED_MAX_SERVICES + 8)

/* Strings are sized to fit (a member is ~180 bytes, not the ~700 of
 * fixed arrays: 5 MB of a shed's RSS at 10000 members). */
struct member {
    const char *url;  /* into place, or "" before the first member_place() */
    const char *zone; /* into place */
    char *place;      /* owned: "url\0zone\0" */
    uint32_t weight;
    enum proto_hb_state announced; /* what its last heartbeat said */
    uint64_t incarnation;
    uint64_t last_seen;   /* ms */
    uint64_t lease_until; /* ms */
    uint64_t down_since;  /* ms, when down */
    uint32_t beats;       /* heartbeats of this incarnation */
    bool down;            /* lease expired or deregistered */
    bool suspect;         /* reported failed by clients (later work) */
    bool in_ring;         /* part of the current ring */
    bool stale_record;    /* url/zone/weight differ from the ring's copy */
    bool gone;            /* deregistered: leaves the records at the next install */
    uint32_t ring_idx;    /* index in the current ring when in_ring */
    /* Replication (docs/masters.md): */
    uint64_t seq;           /* registry sequence of the last change */
    bool remote;            /* last change learned from a peer or a snapshot */
    uint64_t suspect_until; /* suspect until then (UINT64_MAX: probe pending) */
    uint64_t host_hash;     /* of url's "host:port" (host_hash()); 0: none */
    char id[];              /* allocated with the member */
};

/* A removed member, kept so that peers and masters learn of the removal. */
struct tomb {
    char service[SHED_NAME_MAX];
    char id[PROTO_HB_ID_MAX + 1];
    char url[PROTO_HB_URL_MAX + 1];
    char zone[PROTO_HB_ZONE_MAX + 1];
    uint32_t weight;
    uint64_t incarnation, seq;
    bool remote;
};
#define TOMB_MAX 512

struct service {
    struct shed_service_config cfg;
    unsigned slot;
    struct member **members; /* owned */
    size_t n, cap;
    struct ring_gen gen;    /* owns cur and prev */
    uint64_t prev_until;    /* end of the drain window */
    _Atomic uint8_t *live;  /* for gen.cur, owned */
    _Atomic uint32_t *load; /* for gen.cur, owned */
    /* Where messages are may differ from where the ring says they are:
     * set at once by any membership or liveness change (moved), cleared
     * by the tick once settle_until has passed (route->settle). */
    struct registry_settle *settle; /* owned */
    bool moved;                     /* changed since the last tick */
    uint64_t settle_until;          /* ms */
    bool dirty;                     /* the ring differs from the records: rebuild */
    uint64_t window_start;          /* eviction cap window */
    uint32_t evicted_in_window;
    uint64_t empty_seq; /* sequence at which the last live member went away */
    bool had_live;      /* live members at the last tick */
};

struct registry {
    pthread_mutex_t build_mu; /* one build at a time; taken before mu */
    struct shed_rcu rcu;      /* readers of the views (registry_rcu()) */
    pthread_mutex_t mu;       /* everything below but the atomics */
    struct shed_timings t;
    uint32_t max_members;
    struct service *svcs[SHED_MAX_SERVICES];
    size_t nsvcs;
    size_t total;
    uint64_t rng;
    uint64_t last_decay;
    _Atomic uint64_t evictions;
    struct registry_view *_Atomic view;
    void *garbage[GARBAGE_MAX]; /* freed after the next synchronize */
    size_t ngarbage;
    struct ring *garbage_rings[GARBAGE_MAX];
    size_t ngarbage_rings;
    uint64_t seq;             /* replication sequence, bumped on every change */
    struct tomb *tombs;       /* TOMB_MAX, a ring buffer */
    size_t ntombs, tomb_head; /* tomb_head: oldest */
    uint64_t tomb_horizon;    /* highest seq of a tomb dropped for room */
    /* Metrics slots (route->slot): every service name ever seen keeps its
     * slot across reloads; the last one collects overflow ("_other"). */
    char slot_names[SHED_METRICS_SLOTS][SHED_NAME_MAX];
    unsigned nslots;
    /* Tests only (NULL in the daemon): called by registry_build() with mu
     * released, after the records were copied and before ring_build(), so
     * a test can change the records in the middle of a build. */
    void (*build_hook)(void *arg);
    void *build_hook_arg;
};

/* Free member <m> (NULL: no-op). (registry.c) */
void registry_member_free(struct member *m);

/* ---- registry_view.c; the caller holds mu unless said otherwise ---- */

/* Liveness of <m> as routers see it. */
enum registry_live registry_live_of(const struct member *m);

/* Store <m>'s liveness into the current generation (nothing when it is not
 * in the ring); a change opens the settle window. */
void registry_set_live(struct service *s, const struct member *m);

/* A membership or liveness change: open <s>'s settle window. */
void registry_unsettle(struct service *s);

/* Free <p> (or destroy ring <r>) after the next publish's readers left. */
void registry_garbage(struct registry *reg, void *p);
void registry_garbage_ring(struct registry *reg, struct ring *r);

/* What a publish retired: freed by registry_retire() after
 * shed_rcu_synchronize(), which must never run under mu (a request thread
 * inside a read-side section may be waiting for mu in registry_heartbeat()). */
struct retired {
    struct registry_view *view;
    void *p[GARBAGE_MAX];
    size_t np;
    struct ring *r[GARBAGE_MAX];
    size_t nr;
};

/* Build and publish a new view from the services' current state; the old
 * view and all garbage move to <rt>. 0 or -ENOMEM. */
int registry_publish(struct registry *reg, struct retired *rt);

/* Wait for readers, then free what <rt> holds. The caller may hold
 * build_mu, never mu. */
void registry_retire(struct registry *reg, struct retired *rt);

/* Rebuild the ring of every dirty service. The caller holds build_mu and
 * mu; mu is released while the rings are built and held again on return.
 * built[i] is set for each service (reg->svcs[i]) that got a new
 * generation; a service whose records changed meanwhile stays dirty (the
 * next tick builds again). Returns true if any did. */
bool registry_build(struct registry *reg, uint64_t now, bool built[SHED_MAX_SERVICES]);

#endif /* SHED_REGISTRY_IMPL_H */
