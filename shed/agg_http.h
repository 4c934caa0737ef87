/* SPDX-License-Identifier: ISC */
/*
 * shed/agg_http: the libmicrohttpd adapter of the aggregator engine
 * (shed/agg.h). The adapter for shed/server's dispatch: a list-level
 * Burrow request or a lookup is handed to the engine as a struct
 * shed_agg_request while its connection is suspended; the engine's
 * callback resumes it, and the next access-handler call queues the answer
 * (Content-Length always set, a 204's too). Anything else is declined.
 *
 * Thread-safe. The per-request context lives in *con_cls and is freed by
 * shed/server when the request completes.
 */
#ifndef SHED_AGG_HTTP_H
#define SHED_AGG_HTTP_H

#include <stdbool.h>

struct shed_agg;
struct shed_call;

/* Answer <c> with <agg> (true), or decline it (false). */
bool shed_agg_http_handle(struct shed_agg *agg, struct shed_call *c);

/* The dispatch table's adapter: the daemon's engine (c->ctx->agg), or
 * decline when there is none or the path is not the aggregator's. */
bool shed_agg_handle(struct shed_call *c);

#endif /* SHED_AGG_HTTP_H */
