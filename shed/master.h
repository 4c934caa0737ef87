/* SPDX-License-Identifier: ISC */
/*
 * shed/master: the master shed's view of every cell and its choice of where
 * an escalated request goes.
 *
 * Line sheds push their cell's membership (proto/sync messages naming the
 * cell), or the master reads every cell from etcd (shed/etcd,
 * shed_master_feed()); shed_master_apply() merges them per cell and service (entries keyed
 * by backend id, the higher incarnation wins, then the most recently heard)
 * and rebuilds that cell's ring for the service when its member set changed,
 * with the service's ring config, so the master computes the same table as
 * the cell's own line sheds.
 *
 * shed_master_route() picks the cell: never one the token has visited, only
 * cells with live capacity for the service, the lowest configured proximity
 * first, and within that class a choice weighted by live weight (so load
 * spreads over several equally close cells). Liveness is judged by the
 * master itself from the last-heard age and the cell's lease, so a cell that
 * stops pushing fades out after one lease. Message-level requests go
 * straight to the bucket's primary (first live member of the bucket's walk)
 * in that cell; list-level requests to the cell's aggregator.
 *
 * Ownership: shed_master_create() returns an owned object that borrows
 * <cfg> (which must outlive it); shed_master_destroy(NULL) is a no-op.
 * Thread-safe: a rwlock guards the view (apply writes, route reads).
 */
#ifndef SHED_MASTER_H
#define SHED_MASTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/sync.h"
#include "proto/token.h"
#include "shed/config.h"

#define SHED_MASTER_MAX_HOPS  4        /* default: escalations one request may take */
#define SHED_MASTER_PROX_NONE 1000000u /* proximity of a cell not in the config */

struct shed_master_req {
    const char *service;             /* NUL-terminated, borrowed */
    const struct proto_token *token; /* verified; its visited cells are excluded */
    bool list;                       /* list level: go to the aggregator */
    const char *account;             /* message level: decoded account */
    size_t alen;
    const char *key; /* message level: "queue/message" */
    size_t klen;
    uint64_t now_ms; /* monotonic clock of apply() */
    uint64_t rnd;    /* random bits for the weighted choice */
};

struct shed_master_pick {
    char cell[PROTO_SYNC_NAME_MAX + 1];
    char url[PROTO_SYNC_URL_MAX + 1]; /* backend or aggregator base URL */
    char id[PROTO_SYNC_ID_MAX + 1];   /* backend id; "" for an aggregator */
    uint32_t bucket;                  /* message level */
    uint64_t live_weight;             /* of the service in that cell */
    uint32_t candidates;              /* cells that qualified */
};

struct shed_master;

/* <max_hops>: 0 means SHED_MASTER_MAX_HOPS. 0 or -ENOMEM. */
int shed_master_create(const struct shed_config *cfg, uint32_t max_hops, struct shed_master **out);
void shed_master_destroy(struct shed_master *m);

/* A reloaded config: <cfg> replaces the borrowed one (it must outlive
 * <m> or the next call; the old one is no longer read once this returns).
 * Cell proximities and fallback sheds are re-read and every ring rebuilt
 * with the new ring parameters; the pushed membership is kept. 0. */
int shed_master_reconfigure(struct shed_master *m, const struct shed_config *cfg);

/* Merge a pushed membership <msg> (must name its cell) received at <now_ms>.
 * Fills <ack>: a delta that does not follow what was applied from that
 * origin is refused with need_full. Returns 0, -EINVAL (no cell name),
 * -ENOSPC (too many cells, origins or members), -ENOMEM. */
int shed_master_apply(struct shed_master *m, const struct proto_sync_msg *msg, uint64_t now_ms,
                      struct proto_sync_ack *ack);

/* Merge the membership of cell msg->cell read from etcd (docs/etcd.md):
 * the same merge as a push, without the sender bookkeeping (no origin,
 * sequence or ack: etcd orders the changes). Entries are heard
 * <now_ms> - age_ms; msg->lease_ms is how long they stay live without
 * being fed again; a non-empty msg->aggregator replaces the cell's. 0,
 * -EINVAL (no cell name), -ENOSPC, -ENOMEM. */
int shed_master_feed(struct shed_master *m, const struct proto_sync_msg *msg, uint64_t now_ms);

/* Choose where <req> goes. Returns 0 and fills <out>; -ELOOP when the
 * token's hop count is above the maximum; -ENOENT when no cell
 * outside the visited ones has a live server (answer 503). */
int shed_master_route(struct shed_master *m, const struct shed_master_req *req,
                      struct shed_master_pick *out);

/* Live members of <service> in <cell> at <now_ms> (tests, status). */
uint32_t shed_master_live(struct shed_master *m, const char *cell, const char *service,
                          uint64_t now_ms);

/* {cells: [{name, proximity, aggregator, age_ms, services: [{name, live,
 * members, live_weight}]}]}; the caller owns it; NULL on ENOMEM. */
json_t *shed_master_status(struct shed_master *m, uint64_t now_ms);

#endif /* SHED_MASTER_H */
