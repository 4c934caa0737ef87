/* SPDX-License-Identifier: ISC */
/*
 * shed/ops: heartbeat registration, status and metrics endpoints. Not on the
 * redirect hot path: these may allocate (a body buffer per heartbeat, the
 * rendered metrics and status text).
 */
#include "shed/ops.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proto/heartbeat.h"
#include "shed/access.h"
#include "shed/agg.h"
#include "shed/cluster.h"
#include "shed/etcd.h"
#include "shed/events.h"
#include "shed/guard.h"
#include "shed/handoff.h"
#include "shed/status.h"

static const char status_path[] = "/_shed/v1/status";
static const char page_path[] = "/_shed/v1/status.html";
static const char page_root[] = "/_shed/";
static const char metrics_path[] = "/metrics";

/* Refused heartbeats are logged at most once per this many ms per kind of
 * refusal, with the count of the ones not logged. */
#define HB_LOG_EVERY_MS 10000

struct hb_ctx {
    struct shed_req_ctx base;
    size_t len, max;
    bool too_big;
    char data[]; /* max bytes */
};

static void
hb_free(struct shed_req_ctx *ctx)
{
    free(ctx);
}

bool
shed_ops_match(const char *path)
{
    return strcmp(path, metrics_path) == 0 || strncmp(path, "/_shed/", 7) == 0;
}

/* A refused heartbeat: an event for the status page, and a log line with
 * the reason, at most one per HB_LOG_EVERY_MS per kind of refusal (a
 * misconfigured backend retries every few hundred ms). */
static void
hb_refused(struct shed_call *c, enum shed_hb_result r, unsigned status, const char *txt)
{
    static _Atomic uint64_t next_log[SHED_HB_COUNT];
    static _Atomic uint64_t quiet[SHED_HB_COUNT];
    char who[INET6_ADDRSTRLEN + 1], path[160], why[128];
    size_t wl;

    shed_client_addr(c->conn, who, sizeof(who));
    shed_log_printable(path, sizeof(path), c->path);
    snprintf(why, sizeof(why), "%s", txt);
    wl = strlen(why);
    while (wl > 0 && why[wl - 1] == '\n')
        why[--wl] = '\0';
    shed_events_add(c->ctx->events, SHED_EV_HEARTBEAT, "%s %s from %s: %u %s", c->method, path, who,
                    status, why);
    uint64_t due = atomic_load(&next_log[r]);
    if (c->now_ms < due ||
        !atomic_compare_exchange_strong(&next_log[r], &due, c->now_ms + HB_LOG_EVERY_MS)) {
        atomic_fetch_add(&quiet[r], 1);
        return;
    }
    uint64_t more = atomic_exchange(&quiet[r], 0);
    if (more > 0)
        log_warnx("heartbeat: refused %s %s from %s: %u %s (and %" PRIu64
                  " more refused as %s in the last %d s)",
                  c->method, path, who, status, why, more, shed_metrics_hb_name(r),
                  HB_LOG_EVERY_MS / 1000);
    else
        log_warnx("heartbeat: refused %s %s from %s: %u %s", c->method, path, who, status, why);
}

static bool
hb_result(struct shed_call *c, enum shed_hb_result r, unsigned status, const char *txt)
{
    shed_metrics_heartbeat(c->ctx->metrics, r);
    if (r != SHED_HB_OK && r != SHED_HB_DEREGISTERED)
        hb_refused(c, r, status, txt);
    return shed_http_reply(c, status, txt);
}

/* Answer 200 with <text> (malloc'ed, consumed) as an uncacheable body. */
static bool
answer_owned(struct shed_call *c, char *text, size_t len, const char *ctype)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return shed_http_reply(c, 503, "out of memory\n");
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_queue_response(c->conn, 200, resp);
    MHD_destroy_response(resp);
    shed_metrics_response(c->ctx->metrics, 200);
    return true;
}

/* The registry's gauges and every module's series, for shed/metrics to
 * append to its counters. 0 or -ENOMEM. */
static int
module_series(const struct shed_daemon *ctx, char **out, size_t *len)
{
    FILE *f = open_memstream(out, len);
    if (f == NULL)
        return -ENOMEM;
    struct registry_counts counts[SHED_MAX_SERVICES];
    size_t ns = registry_counts(ctx->reg, counts, SHED_MAX_SERVICES);
    if (ns > SHED_MAX_SERVICES)
        ns = SHED_MAX_SERVICES;
    fprintf(f,
            "# HELP shed_registry_members Members in the registry, every state.\n"
            "# TYPE shed_registry_members gauge\nshed_registry_members %zu\n",
            registry_size(ctx->reg));
    fprintf(f, "# HELP shed_members Members by service and state.\n"
               "# TYPE shed_members gauge\n");
    for (size_t i = 0; i < ns; i++) {
        const struct registry_counts *k = &counts[i];
        const char *states[] = {"joining", "up", "draining", "suspect", "down"};
        uint32_t vals[] = {k->joining, k->up, k->draining, k->suspect, k->down};
        for (int s = 0; s < 5; s++)
            fprintf(f, "shed_members{service=\"%s\",state=\"%s\"} %u\n", k->name, states[s],
                    vals[s]);
    }
    fprintf(f, "# HELP shed_ring_generation Current ring generation.\n"
               "# TYPE shed_ring_generation gauge\n");
    for (size_t i = 0; i < ns; i++)
        fprintf(f, "shed_ring_generation{service=\"%s\"} %" PRIu64 "\n", counts[i].name,
                counts[i].generation);
    fprintf(f,
            "# HELP shed_evictions_total Members evicted from a ring.\n"
            "# TYPE shed_evictions_total counter\nshed_evictions_total %" PRIu64 "\n",
            registry_evictions(ctx->reg));
    char buf[4096]; /* each module's counters */
    if (ctx->agg != NULL) {
        struct shed_agg_stats s;
        shed_agg_stats(ctx->agg, &s);
        if (shed_agg_stats_text(&s, buf, sizeof(buf)) > 0)
            fputs(buf, f);
    }
    if (ctx->handoff != NULL) {
        struct shed_handoff_stats s;
        shed_handoff_stats(ctx->handoff, &s);
        if (shed_handoff_stats_text(&s, buf, sizeof(buf)) > 0)
            fputs(buf, f);
    }
    if (shed_cluster_metrics(ctx->cluster, buf, sizeof(buf)) > 0)
        fputs(buf, f);
    if (shed_guard_metrics(ctx->guard, buf, sizeof(buf)) > 0)
        fputs(buf, f);
    bool err = ferror(f) != 0;
    if (fclose(f) != 0 || err) {
        free(*out);
        return -ENOMEM;
    }
    return 0;
}

static bool
serve_metrics(struct shed_call *c)
{
    char *more = NULL, *text;
    size_t morelen = 0, len;
    int rc = module_series(c->ctx, &more, &morelen);
    if (rc == 0) {
        char names[SHED_METRICS_SLOTS][SHED_NAME_MAX];
        size_t n = registry_slot_names(c->ctx->reg, names, SHED_METRICS_SLOTS);
        rc = shed_metrics_render(c->ctx->metrics, (const char(*)[SHED_NAME_MAX])names, n,
                                 shed_status_uptime_s(c->ctx), more, morelen, &text, &len);
    }
    free(more);
    if (rc < 0)
        return shed_http_reply(c, 503, "out of memory\n");
    return answer_owned(c, text, len, "text/plain; version=0.0.4");
}

static bool
serve_status(struct shed_call *c, bool html)
{
    json_t *root = shed_status_json(c->ctx, c->cfg, c->now_ms);
    if (root == NULL)
        return shed_http_reply(c, 503, "out of memory\n");
    char *text = NULL;
    size_t len = 0;
    if (html) {
        int rc = shed_status_html(root, &text, &len);
        json_decref(root);
        if (rc == -EFBIG)
            return shed_http_reply(c, 503, "status page too large: see /_shed/v1/status\n");
        if (rc < 0)
            return shed_http_reply(c, 503, "out of memory\n");
        return answer_owned(c, text, len, "text/html; charset=utf-8");
    }
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (text == NULL)
        return shed_http_reply(c, 503, "out of memory\n");
    return answer_owned(c, text, strlen(text), "application/json");
}

/* Declared body length; -1 when chunked or absent. */
static long long
content_length(struct shed_call *c)
{
    const char *v = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Content-Length");
    if (v == NULL)
        return -1;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end != '\0' || n < 0)
        return -1;
    return n;
}

static bool
heartbeat_put(struct shed_call *c, const char *svc, size_t slen, const char *id, size_t idlen)
{
    struct hb_ctx *h = *c->con_cls;
    if (c->first) {
        size_t max = c->cfg->limits.heartbeat_body;
        long long cl = content_length(c);
        if (cl > (long long)max)
            return hb_result(c, SHED_HB_TOO_LARGE, 413, "heartbeat body too large\n");
        h = malloc(sizeof(*h) + max);
        if (h == NULL)
            return shed_http_reply(c, 503, "out of memory\n");
        h->base.free_fn = hb_free;
        h->len = 0;
        h->max = max;
        h->too_big = false;
        *c->con_cls = h;
        return true;
    }
    if (*c->upload_data_size != 0) {
        size_t n = *c->upload_data_size;
        if (h->too_big || n > h->max - h->len)
            h->too_big = true;
        else
            memcpy(h->data + h->len, c->upload_data, n);
        if (!h->too_big)
            h->len += n;
        *c->upload_data_size = 0;
        return true;
    }
    if (h->too_big)
        return hb_result(c, SHED_HB_TOO_LARGE, 413, "heartbeat body too large\n");
    struct proto_heartbeat hb;
    const char *what = NULL;
    int rc = proto_heartbeat_decode(h->data, h->len, &hb, &what);
    if (rc == -EBADMSG)
        return hb_result(c, SHED_HB_BAD_REQUEST, 400, "heartbeat body is not a JSON object\n");
    if (rc < 0) {
        if (what != NULL && strcmp(what, "url") == 0)
            return hb_result(c, SHED_HB_BAD_REQUEST, 400, "heartbeat: bad url\n");
        return hb_result(c, SHED_HB_BAD_REQUEST, 400, "heartbeat: bad or missing field\n");
    }
    if (strlen(hb.service) != slen || memcmp(hb.service, svc, slen) != 0 ||
        strlen(hb.id) != idlen || memcmp(hb.id, id, idlen) != 0)
        return hb_result(c, SHED_HB_BAD_REQUEST, 400,
                         "heartbeat: service and id differ from the path\n");
    struct proto_hb_host host;
    if (proto_hb_url_host(hb.url, &host) < 0)
        return hb_result(c, SHED_HB_BAD_REQUEST, 400, "heartbeat: bad url\n");
    if (!shed_cidr_match(c->cfg->networks, c->cfg->nnetworks, host.host)) {
        return hb_result(c, SHED_HB_FORBIDDEN, 403,
                         "heartbeat: url host is not inside register_networks\n");
    }
    struct proto_heartbeat_reply reply;
    rc = registry_heartbeat(c->ctx->reg, &hb, c->now_ms, &reply);
    switch (rc) {
    case 0:
        break;
    case -ENOENT:
        return hb_result(c, SHED_HB_UNKNOWN, 404, "heartbeat: unknown service\n");
    case -ESTALE:
        return hb_result(c, SHED_HB_STALE, 409, "heartbeat: a newer incarnation is registered\n");
    case -ERANGE:
        return hb_result(c, SHED_HB_BAD_REQUEST, 400,
                         "heartbeat: weight above the service's weight_scale\n");
    case -ENOSPC:
        return hb_result(c, SHED_HB_FULL, 503, "heartbeat: registry full\n");
    default:
        return hb_result(c, SHED_HB_FULL, 503, "heartbeat: out of memory\n");
    }
    /* membership store etcd (a no-op otherwise) */
    shed_etcd_note_heartbeat(shed_cluster_etcd(c->ctx->cluster), &hb, c->now_ms);
    char buf[256];
    long n = proto_heartbeat_reply_encode(&reply, buf, sizeof(buf));
    if (n < 0)
        return shed_http_reply(c, 503, "heartbeat: reply too long\n");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, buf, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return shed_http_reply(c, 503, "out of memory\n");
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_queue_response(c->conn, 200, resp);
    MHD_destroy_response(resp);
    shed_metrics_heartbeat(c->ctx->metrics, SHED_HB_OK);
    shed_metrics_response(c->ctx->metrics, 200);
    return true;
}

static bool
heartbeat_delete(struct shed_call *c, const char *svc, size_t slen, const char *id, size_t idlen)
{
    if (shed_http_not_yet(c))
        return true;
    const char *inc = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "incarnation");
    char *end;
    if (inc == NULL || inc[0] < '0' || inc[0] > '9')
        return hb_result(c, SHED_HB_BAD_REQUEST, 400, "deregister: incarnation=N required\n");
    errno = 0;
    unsigned long long n = strtoull(inc, &end, 10);
    if (errno != 0 || *end != '\0' || n > PROTO_HB_INC_MAX)
        return hb_result(c, SHED_HB_BAD_REQUEST, 400, "deregister: bad incarnation\n");
    int rc = registry_deregister(c->ctx->reg, svc, slen, id, idlen, n, c->now_ms);
    if (rc == -ENOENT)
        return hb_result(c, SHED_HB_UNKNOWN, 404, "deregister: no such member\n");
    if (rc == -ESTALE)
        return hb_result(c, SHED_HB_STALE, 409, "deregister: a newer incarnation is registered\n");
    shed_etcd_note_deregister(shed_cluster_etcd(c->ctx->cluster), svc, slen, id, idlen, n,
                              c->now_ms);
    return hb_result(c, SHED_HB_DEREGISTERED, 200, "deregistered\n");
}

bool
shed_ops_handle(struct shed_call *c)
{
    bool page = strcmp(c->path, page_path) == 0 || strcmp(c->path, page_root) == 0;
    if (strcmp(c->path, metrics_path) == 0 || strcmp(c->path, status_path) == 0 || page) {
        if (c->m != SHED_M_GET && c->m != SHED_M_HEAD)
            return shed_http_reply(c, 405, "method not allowed\n");
        if (shed_http_not_yet(c))
            return true;
        if (c->cfg->ops_credential && !shed_http_authorized(c->conn, c->cfg->credential))
            return shed_http_reply(c, 401, "credential required (ops_credential)\n");
        return c->path[1] == 'm' ? serve_metrics(c) : serve_status(c, page);
    }
    static const char prefix[] = PROTO_HB_PREFIX;
    if (strncmp(c->path, prefix, sizeof(prefix) - 1) != 0)
        return shed_http_reply(c, 404, "not found\n");
    if (c->m != SHED_M_PUT && c->m != SHED_M_DELETE)
        return shed_http_reply(c, 405, "method not allowed\n");
    if (c->first && !shed_http_authorized(c->conn, c->cfg->credential))
        return hb_result(c, SHED_HB_UNAUTHORIZED, 401, "credential required\n");
    const char *rest = c->path + sizeof(prefix) - 1;
    const char *svc, *id;
    size_t slen, idlen;
    if (proto_hb_path(rest, strlen(rest), &svc, &slen, &id, &idlen) < 0)
        return hb_result(c, SHED_HB_BAD_REQUEST, 400, "bad member path\n");
    if (c->m == SHED_M_PUT)
        return heartbeat_put(c, svc, slen, id, idlen);
    return heartbeat_delete(c, svc, slen, id, idlen);
}
