/* SPDX-License-Identifier: ISC */
/*
 * shed/ops: the shed-internal endpoints every role serves.
 *
 *   GET    /metrics                          Prometheus text
 *   GET    /_shed/v1/status                  JSON: cell, roles, version, uptime, services,
 *                                            rings, members, sync, events (shed/status.h)
 *   GET    /_shed/v1/status.html, /_shed/    the same as an HTML page for people
 *   PUT    /_shed/v1/members/<service>/<id>  heartbeat (docs/heartbeat.md)
 *   DELETE /_shed/v1/members/<service>/<id>?incarnation=N
 *
 * Heartbeats need "Authorization: Bearer <credential>" (401), a member url
 * whose host is a literal address inside register_networks (403), a body of
 * at most limits.heartbeat_body bytes (413) that decodes (400). Auth and the
 * announced length are checked on the first call, before any body is read.
 * A refused heartbeat is logged with its reason (rate-limited) and shown
 * on the status page.
 */
#ifndef SHED_OPS_H
#define SHED_OPS_H

#include <stdbool.h>

#include "shed/http.h"

/* True when <path> is one of the endpoints above (any method). */
bool shed_ops_match(const char *path);

/* Handle a call for a matching path. Always answers or keeps the request. */
bool shed_ops_handle(struct shed_call *c);

#endif /* SHED_OPS_H */
