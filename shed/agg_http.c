/* SPDX-License-Identifier: ISC */
/*
 * shed/agg_http: the libmicrohttpd adapter of the aggregator engine (see
 * agg_http.h). The only file of the aggregator that includes
 * <microhttpd.h>: it turns an access-handler call into a struct
 * shed_agg_request, suspends the connection while the engine works,
 * resumes it from the engine's callback, and turns the struct
 * shed_agg_answer into an MHD response.
 *
 * The engine is the daemon's (struct shed_daemon.agg, made by main.c);
 * shed_agg_handle() is the dispatch table's entry (shed/server.c).
 */
#include "shed/agg_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shed/agg.h"
#include "shed/http.h"
#include "shed/metrics.h"
#include "shed/route.h"

/* Per-request context in *con_cls (shed/http frees it on completion). */
struct agg_ctx {
    struct shed_req_ctx hdr; /* first member, see shed/http.h */
    struct shed_agg_req *req;
};

static void
ctx_free(struct shed_req_ctx *h)
{
    struct agg_ctx *x = (struct agg_ctx *)h;

    shed_agg_req_free(x->req);
    free(x);
}

/* The engine's callback: the answer is there, the next access-handler
 * call sends it. */
static void
resume_conn(void *arg, const struct shed_agg_answer *a)
{
    (void)a;
    MHD_resume_connection(arg);
}

/* The raw (not unescaped) query arguments, and the length of the query
 * they make joined again. */
struct args {
    struct shed_agg_arg *v;
    size_t n, cap, joined;
};

static enum MHD_Result
collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct args *a = cls;

    (void)kind;
    if (a->n == a->cap)
        return MHD_NO;
    a->v[a->n].key = key;
    a->v[a->n].val = value;
    a->joined += (a->n ? 1 : 0) + strlen(key) + (value ? 1 + strlen(value) : 0);
    a->n++;
    return MHD_YES;
}

/* Queue the engine's answer (the body moves into the response). */
static bool
send_answer(struct shed_call *c, struct agg_ctx *x, const struct shed_agg_answer *a)
{
    struct MHD_Response *resp;
    size_t len;
    char *body = shed_agg_take_body(x->req, &len);

    if (body != NULL) {
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL)
            free(body);
    } else {
        resp = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL)
        return false;
    if (a->content_type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
    if (a->status == MHD_HTTP_NO_CONTENT) {
        /* MHD leaves Content-Length out of a 204; Burrow clients read it
         * from every 2xx answer (docs/aggregator.md, "Burrow status rules kept"). */
        MHD_set_response_options(resp, MHD_RF_INSANITY_HEADER_CONTENT_LENGTH, MHD_RO_END);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_LENGTH, "0");
    }
    if (a->cache_control != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, a->cache_control);
    if (a->partial != NULL)
        MHD_add_response_header(resp, "Shed-Partial", a->partial);
    if (a->link != NULL)
        MHD_add_response_header(resp, "Link", a->link);
    shed_http_retry_after(resp, a->retry_after);
    shed_metrics_response(c->ctx->metrics, a->status);
    MHD_queue_response(c->conn, a->status, resp);
    MHD_destroy_response(resp);
    return true;
}

bool
shed_agg_http_handle(struct shed_agg *agg, struct shed_call *c)
{
    struct shed_agg_request rq = {0};
    const struct shed_agg_answer *a;
    char svc[SHED_NAME_MAX];
    struct agg_ctx *x;
    struct args args = {0};
    int nargs, rc;

    if (*c->con_cls != NULL && *c->con_cls != SHED_HTTP_SEEN) {
        /* Our context: the call after the resume (or a spurious one). */
        x = (struct agg_ctx *)*c->con_cls;
        if (x->hdr.free_fn != ctx_free)
            return false;
        if (x->req == NULL || (a = shed_agg_answer(x->req)) == NULL)
            return true;
        return send_answer(c, x, a);
    }
    if (!shed_agg_wants(c->path, strlen(c->path)))
        return false;
    /* Same call pattern as the line role: answer on a later call, so the
     * connection stays alive; a body nobody asked for is dropped. */
    if (c->first) {
        *c->con_cls = SHED_HTTP_SEEN;
        return true;
    }
    if (*c->upload_data_size != 0) {
        *c->upload_data_size = 0;
        return true;
    }
    nargs = MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, NULL, NULL);
    args.cap = nargs > 0 ? (size_t)nargs : 0;
    args.v = calloc(args.cap ? args.cap : 1, sizeof(*args.v));
    if (args.v == NULL)
        return shed_http_reply(c, 503, "out of memory\n");
    MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, collect, &args);
    if (args.joined >= SHED_AGG_QUERY_MAX) {
        free(args.v);
        return shed_http_reply(c, 400, "query too long\n");
    }
    if (shed_route_host_service(MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Host"),
                                c->cfg->default_service, svc) < 0) {
        free(args.v);
        return shed_http_reply(c, 404, "unknown service\n");
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        free(args.v);
        return shed_http_reply(c, 503, "out of memory\n");
    }
    x->hdr.free_fn = ctx_free;
    *c->con_cls = x;
    rq.method = c->method;
    rq.path = c->path;
    rq.plen = strlen(c->path);
    rq.args = args.v;
    rq.nargs = args.n;
    rq.service = svc;
    rq.now_ms = c->now_ms;
    /* Suspended first: the callback may resume it before the start
     * returns. */
    MHD_suspend_connection(c->conn);
    rc = shed_agg_start(agg, &rq, resume_conn, c->conn, &x->req);
    free(args.v);
    if (rc < 0) {
        MHD_resume_connection(c->conn);
        if (rc == -ESHUTDOWN)
            return shed_http_reply(c, 503, "aggregator unavailable\n");
        if (rc == -E2BIG)
            return shed_http_reply(c, 400, "query too long\n");
        return shed_http_reply(c, 503, "out of memory\n");
    }
    return true;
}

bool
shed_agg_handle(struct shed_call *c)
{
    struct shed_agg *agg = c->ctx->agg;

    /* Nothing is created for a call the role declines. */
    if (agg == NULL || ((*c->con_cls == NULL || *c->con_cls == SHED_HTTP_SEEN) &&
                        !shed_agg_wants(c->path, strlen(c->path))))
        return false;
    if (*c->con_cls == NULL && c->first) {
        *c->con_cls = SHED_HTTP_SEEN;
        return true;
    }
    return shed_agg_http_handle(agg, c);
}
