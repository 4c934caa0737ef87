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

#include "proto/burrow.h"
#include "shed/http.h"

#define SHED_CLUSTER_TOKEN_TTL_S 30 /* escalation tokens expire after this */

/* Load the snapshot (warm restart), start the sync and probe threads, make
 * the master view. 0 or a negative errno (logged). */
int shed_cluster_start(struct shed_ctx *ctx, const struct shed_config *cfg);

/* SIGHUP (main thread, after the new <cfg> is published): peers, masters,
 * cells, credential, aggregator and timings reach the sync thread and the
 * master view; the registry, the master's pushed membership and open
 * connections are kept. Role changes need a restart (logged). */
void shed_cluster_reload(struct shed_ctx *ctx, const struct shed_config *cfg);

/* Timers: periodic snapshot, wake the sync thread after a service emptied. */
void shed_cluster_tick(struct shed_ctx *ctx, uint64_t now_ms);

/* Final snapshot, stop threads, free everything. */
void shed_cluster_stop(struct shed_ctx *ctx);

/* Is <path> one of this module's endpoints? And handle it. */
bool shed_cluster_match(const char *path);
bool shed_cluster_handle(struct shed_call *c);

/* The master role handler for shed/http.c's dispatch. */
bool shed_cluster_master_handle(struct shed_call *c);

/* Line role, no live local server: fill <a> with a redirect to a master
 * (or 400 for a bad token, 503 when escalation is impossible right now).
 * <segs> are the decoded path segments to re-encode. Returns false when
 * escalation is not configured (no masters): the caller answers 503. */
bool shed_cluster_escalate(const struct shed_config *cfg, const struct registry_route *r,
                           enum shed_method m, const struct proto_slice *segs, size_t nsegs,
                           const struct shed_query *q, struct shed_answer *a);

/* Line role, list level: should this list escalate (masters configured and
 * no member of <r> is live here)? */
bool shed_cluster_list_escalates(const struct shed_config *cfg, const struct registry_route *r);

/* A well-formed Shed-Failed report <hostport> on request <c>. */
void shed_cluster_failed(struct shed_call *c, const char *hostport);

/* An answer with await_masters: hold the request (its MHD connection is
 * suspended; true) until a master has acknowledged or 2 s have passed
 * since it was first held, when routing it again gives the 503 (false:
 * send the answer now). Requests that expect 100 Continue are not held. */
bool shed_cluster_park(struct shed_call *c);
/* MHD completed a request on <conn>: forget any hold entry of it. */
void shed_cluster_forget(struct MHD_Connection *conn);
/* Stopping: hold nothing more, resume every held request and wait (at
 * most 2 s) until each is answered (503). Called when the front end
 * quiesces and again before MHD stops; the second call finds nothing. */
void shed_cluster_unpark_stop(void);

/* The sync sender and the master view (NULL when not running), for the
 * status page; valid between shed_cluster_start() and shed_cluster_stop(). */
struct shed_sync *shed_cluster_sync(void);
struct shed_master *shed_cluster_master(void);

/* Prometheus text of the failure-report counters (line, aggregator) and
 * the master's hints into <buf>; returns the length. */
size_t shed_cluster_metrics(char *buf, size_t len);

#endif /* SHED_CLUSTER_H */
