/* SPDX-License-Identifier: ISC */
/*
 * shed/front: the adapters shed/server's dispatch table calls. Each one
 * answers (true: a response is queued or the request is kept) or declines
 * (false: the next entry of the table may). Each lives next to the core
 * module it serves:
 *
 *   shed_cluster_match/handle   shed/cluster_http.c  sync, push, master view, hints
 *   shed_ops_match/handle       shed/ops.c           heartbeats, status, metrics
 *   shed_agg_is_lookup/handle   shed/agg*.c          lists, lookups (aggregator role)
 *   shed_line_handle            shed/route_http.c    line role
 *   shed_master_handle          shed/route_http.c    master role
 */
#ifndef SHED_FRONT_H
#define SHED_FRONT_H

#include <stdbool.h>

#include "shed/http.h"

bool shed_line_handle(struct shed_call *c);
bool shed_master_handle(struct shed_call *c);

bool shed_cluster_match(const char *path);
bool shed_cluster_handle(struct shed_call *c);

#endif /* SHED_FRONT_H */
