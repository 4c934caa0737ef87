/* SPDX-License-Identifier: ISC */
/*
 * shed/server: the listeners (libmicrohttpd daemons, or one event loop
 * shared with the aggregator's fan-out) and the one dispatch table from a
 * request's path and the shed's roles to the adapter that answers it.
 *
 * The daemon calls shed_server_start() once the core exists,
 * shed_server_quiesce() on SIGTERM, waits while shed_server_inflight() > 0,
 * then shed_server_stop(). On a failed start *out may hold a partly
 * started server: stop it.
 */
#ifndef SHED_SERVER_H
#define SHED_SERVER_H

#include "shed/http.h"

/* Does <cfg> run the listeners and the aggregator's fan-out on one loop
 * thread (aggregator role, one thread)? The engine is created for it. */
bool shed_server_shares_loop(const struct shed_config *cfg);

/* Start one MHD daemon per listen address of <cfg>. 0 or -errno (logged). */
struct shed_server;

int shed_server_start(struct shed_daemon *ctx, const struct shed_config *cfg,
                      struct shed_server **out);

/* Stop accepting on every listener (SIGTERM). */
void shed_server_quiesce(struct shed_server *srv);

/* Connections still open on all listeners. */
unsigned shed_server_connections(const struct shed_server *srv);

/* Requests being handled (started, not yet completed) on all listeners. */
unsigned shed_server_inflight(const struct shed_server *srv);

/* Stop every daemon and close every connection. */
/* Stop every daemon, close every connection, free <srv> (NULL: no-op). */
void shed_server_stop(struct shed_server *srv);

#endif /* SHED_SERVER_H */
