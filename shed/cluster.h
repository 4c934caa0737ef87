/* SPDX-License-Identifier: ISC */
/*
 * shed/cluster: everything that joins one shed to the others (docs/masters.md):
 *
 *   - peer sync and the push to the masters (shed/sync thread), and the
 *     endpoints that receive them:
 *       POST /_shed/v1/sync          a peer line shed's delta or snapshot
 *       POST /_shed/v1/master/push   a line shed's membership (master role)
 *       GET  /_shed/v1/master        the master's view of every cell (JSON)
 *   - escalation from the line role (a signed token, a master that has
 *     acknowledged the change first) and the master role handler;
 *   - client failure reports (Shed-Failed) and their confirmation probes;
 *   - the registry snapshot in state_dir (warm restart).
 *
 * The daemon calls shed_cluster_start() after the registry exists and before
 * the HTTP front end listens, shed_cluster_tick() from its timer loop and
 * shed_cluster_stop() after the front end stopped. Process-wide state, one
 * daemon per process. Request-path functions are thread-safe.
 */
#ifndef SHED_CLUSTER_H
#define SHED_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/sync.h"
#include "shed/daemon.h"
#include "shed/route.h"

/* Load the snapshot (warm restart), start the sync and probe threads, make
 * the master view. 0 or a negative errno (logged). */
struct shed_cluster;

int shed_cluster_start(struct shed_daemon *ctx, const struct shed_config *cfg,
                       struct shed_cluster **out);

/* SIGHUP (main thread, after the new <cfg> is published): peers, masters,
 * cells, credential, aggregator and timings reach the sync thread and the
 * master view; the registry, the master's pushed membership and open
 * connections are kept. Role changes need a restart (logged). */
void shed_cluster_reload(struct shed_cluster *cl, const struct shed_config *cfg);

/* Timers: periodic snapshot, wake the sync thread after a service emptied. */
void shed_cluster_tick(struct shed_cluster *cl, uint64_t now_ms);

/* Final snapshot, stop threads, free everything. */
void shed_cluster_stop(struct shed_cluster *cl);

/* What shed/route escalates with (NULL before start). */
const struct shed_escalator *shed_cluster_escalator(const struct shed_cluster *cl);

/* A peer's sync message <msg> (decoded, of any origin): applied to the
 * registry unless already seen, the ack for the peer into <ack>. 0,
 * -EXDEV (from another cell: refuse it), -ENOENT (no sync running). */
int shed_cluster_sync_apply(struct shed_cluster *cl, const struct proto_sync_msg *msg,
                            uint64_t now_ms, struct proto_sync_ack *ack);

/* A well-formed Shed-Failed report <hostport> from <client> (its address
 * as text): a verification probe, at most one per host (shed/suspect). */
void shed_cluster_failed(struct shed_cluster *cl, const char *hostport, const char *client,
                         uint64_t now_ms);

/* The sync sender and the master view (NULL when not running), for the
 * status page; valid between shed_cluster_start() and shed_cluster_stop(). */
struct shed_sync *shed_cluster_sync(const struct shed_cluster *cl);
struct shed_master *shed_cluster_master(const struct shed_cluster *cl);
/* The etcd client (membership store etcd: a line shed's or aggregator's,
 * else a master's), NULL in the built-in mode or for NULL <cl>. */
struct shed_etcd *shed_cluster_etcd(const struct shed_cluster *cl);

/* The master's hints (master role; NULL otherwise). */
struct shed_hints *shed_cluster_hints(const struct shed_cluster *cl);

/* Prometheus text of the failure-report counters (line, aggregator) and
 * the master's hints into <buf>; returns the length. */
size_t shed_cluster_metrics(const struct shed_cluster *cl, char *buf, size_t len);

#endif /* SHED_CLUSTER_H */
