/* SPDX-License-Identifier: ISC */
/*
 * shed/route_http: the libmicrohttpd adapter of the line and master roles.
 * It collects the request (query, Host, the shed's own headers), asks
 * shed/route for the answer, then does what the answer asks of the front
 * end: hold an escalation until a master acknowledged (shed/cluster's
 * park), mark a service moved, count, send, log the redirect.
 */
#include "shed/front.h"

#include <string.h>

#include "shed/access.h"
#include "shed/cluster.h"
#include "shed/park.h"
#include "shed/route.h"

/* The request of call <c> for routing, with its query in <q>. */
static void
request_of(struct shed_call *c, struct shed_query *q, struct shed_request *req)
{
    shed_http_query(c->conn, q);
    req->m = c->m;
    req->host = shed_http_header(c->conn, "Host");
    req->path = c->path;
    req->q = q;
    req->now_ms = c->now_ms;
}

static void
router_of(const struct shed_call *c, struct shed_router *rt)
{
    rt->cfg = c->cfg;
    rt->view = c->view;
    rt->esc = shed_cluster_escalator(c->ctx->cluster);
    rt->unix_s = 0; /* read by route only when a token is made or checked */
}

/* Count and send <a>. */
static bool
send_answer(struct shed_call *c, const struct shed_answer *a, unsigned slot, enum shed_level level)
{
    if (a->location_len > 0)
        shed_metrics_redirect(c->ctx->metrics, slot, level, a->status);
    else
        shed_metrics_response(c->ctx->metrics, a->status);
    shed_http_answer(c->conn, a);
    return true;
}

bool
shed_line_handle(struct shed_call *c)
{
    if (shed_http_not_yet(c))
        return true;
    struct shed_query q;
    struct shed_request req;
    struct shed_router rt;
    struct shed_answer a;
    unsigned slot = 0;
    enum shed_level level = SHED_LEVEL_MESSAGE;

    request_of(c, &q, &req);
    router_of(c, &rt);
    if (q.avoid != NULL) {
        char client[64];
        shed_metrics_failed_report(c->ctx->metrics);
        shed_client_addr(c->conn, client, sizeof(client));
        shed_cluster_failed(c->ctx->cluster, q.avoid, client, c->now_ms);
    }
    shed_line_route(&rt, &req, &a, &slot, &level);
    if (a.await_masters && shed_park_hold(c->ctx->park, c))
        return true; /* held until a master has acknowledged; routed again then */
    if (a.stray_service != NULL)
        registry_mark_moved(c->ctx->reg, a.stray_service, strlen(a.stray_service));
    send_answer(c, &a, slot, level);
    if (a.location_len > 0)
        shed_access_redirect(c, req.host, &a);
    return true;
}

bool
shed_master_handle(struct shed_call *c)
{
    struct shed_router rt;

    router_of(c, &rt);
    if (rt.esc == NULL || rt.esc->master == NULL)
        return false;
    if (shed_http_not_yet(c))
        return true;
    struct shed_query q;
    struct shed_request req;
    struct shed_answer a;
    unsigned slot = 0;
    enum shed_level level = SHED_LEVEL_MESSAGE;

    request_of(c, &q, &req);
    shed_master_route_request(&rt, &req, &a, &slot, &level);
    return send_answer(c, &a, slot, level);
}
