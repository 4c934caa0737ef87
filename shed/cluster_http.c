/* SPDX-License-Identifier: ISC */
/*
 * shed/cluster_http: the libmicrohttpd adapter of shed/cluster's
 * endpoints:
 *
 *   POST /_shed/v1/sync          a peer line shed's delta or snapshot
 *   POST /_shed/v1/master/push   a line shed's membership (master role)
 *   GET  /_shed/v1/master        the master's view of every cell (JSON)
 *   GET/DELETE /_shed/v1/hints   escalated writes for a cell (master role)
 */
#include "shed/front.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proto/sync.h"
#include "proto/token.h"
#include "shed/cluster.h"
#include "shed/hints.h"
#include "shed/master.h"
#include "shed/sync.h"

static const char path_sync[] = SHED_SYNC_PATH;
static const char path_push[] = SHED_SYNC_MASTER_PATH;
static const char path_hints[] = "/_shed/v1/hints";
static const char path_master[] = "/_shed/v1/master";

static bool
json_answer(struct shed_call *c, const char *buf, size_t len)
{
    if (shed_http_json(c->conn, buf, len) != MHD_YES)
        return shed_http_reply(c, 503, "out of memory\n");
    shed_metrics_response(c->ctx->metrics, 200);
    return true;
}

/* Answer 200 with <root> as compact JSON (consumed; NULL: out of memory). */
static bool
json_send(struct shed_call *c, json_t *root)
{
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL)
        return shed_http_reply(c, 503, "out of memory\n");
    json_answer(c, text, strlen(text));
    free(text);
    return true;
}

static bool
serve_master_status(struct shed_call *c)
{
    if (shed_http_not_yet(c))
        return true;
    if (shed_cluster_master(c->ctx->cluster) == NULL)
        return shed_http_reply(c, 404, "not a master\n");
    if (c->cfg->ops_credential && !shed_http_authorized(c->conn, c->cfg->credential))
        return shed_http_reply(c, 401, "credential required (ops_credential)\n");
    return json_send(c, shed_master_status(shed_cluster_master(c->ctx->cluster), c->now_ms));
}

/* Collect a POST body (bounded), then decode and apply it. */
static bool
sync_post(struct shed_call *c, bool to_master)
{
    struct shed_master *master = shed_cluster_master(c->ctx->cluster);

    if (c->first) {
        if (c->m != SHED_M_POST)
            return shed_http_reply(c, 405, "method not allowed\n");
        if (!shed_http_authorized(c->conn, c->cfg->credential))
            return shed_http_reply(c, 401, "credential required\n");
        if (to_master ? master == NULL : !(c->cfg->roles & (SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR)))
            return shed_http_reply(c, 404, "not found\n");
        const char *cl = shed_http_header(c->conn, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > PROTO_SYNC_BODY_MAX)
            return shed_http_reply(c, 413, "sync body too large\n");
    }
    if (shed_http_body_collect(c, PROTO_SYNC_BODY_MAX))
        return true;
    const struct shed_http_body *b = *c->con_cls;
    if (c->first)
        return shed_http_reply(c, 503, "out of memory\n");
    if (b->too_big)
        return shed_http_reply(c, 413, "sync body too large\n");
    struct proto_sync_msg msg;
    struct proto_sync_ack ack = {0};
    int rc = proto_sync_decode(b->data ? b->data : "", b->len, &msg);
    if (rc < 0) {
        log_warnx("cluster: sync from a peer refused: %s", proto_sync_strerror(rc));
        return shed_http_reply(c, 400, "bad sync message\n");
    }
    if (to_master) {
        rc = shed_master_apply(master, &msg, c->now_ms, &ack);
        if (rc < 0) {
            log_warnx("cluster: master: push from %s (cell %s): %s", msg.origin, msg.cell,
                      strerror(-rc));
            proto_sync_msg_free(&msg);
            if (rc == -EINVAL)
                return shed_http_reply(c, 400, "push names no cell\n");
            if (rc == -ENOSPC)
                return shed_http_reply(c, 413, "too many cells, services or members\n");
            return shed_http_reply(c, 503, "out of memory\n");
        }
    } else if (shed_cluster_sync_apply(c->ctx->cluster, &msg, c->now_ms, &ack) == -EXDEV) {
        proto_sync_msg_free(&msg);
        return shed_http_reply(c, 409, "sync from another cell\n");
    }
    proto_sync_msg_free(&msg);
    char out[128];
    long n = proto_sync_ack_encode(&ack, out, sizeof(out));
    if (n < 0)
        return shed_http_reply(c, 503, "ack too long\n");
    return json_answer(c, out, (size_t)n);
}

bool
shed_cluster_match(const char *path)
{
    return strcmp(path, path_sync) == 0 || strcmp(path, path_push) == 0 ||
           strcmp(path, path_master) == 0 || strcmp(path, path_hints) == 0;
}

/* GET ?cell=C: that cell's oldest hints; DELETE ?cell=C&seq=N: one done. */
static bool
serve_hints(struct shed_call *c)
{
    if (shed_http_not_yet(c))
        return true;
    if (shed_cluster_hints(c->ctx->cluster) == NULL)
        return shed_http_reply(c, 404, "not a master\n");
    if (!shed_http_authorized(c->conn, c->cfg->credential))
        return shed_http_reply(c, 401, "credential required\n");
    const char *cell = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "cell");
    if (cell == NULL || !proto_token_name_ok(cell, strlen(cell)))
        return shed_http_reply(c, 400, "cell=NAME required\n");
    if (c->m == SHED_M_GET)
        return json_send(c, shed_hints_json(shed_cluster_hints(c->ctx->cluster), cell,
                                            SHED_HINTS_PAGE_MAX, c->now_ms));
    if (c->m != SHED_M_DELETE)
        return shed_http_reply(c, 405, "method not allowed\n");
    const char *s = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "seq");
    char *end = NULL;
    unsigned long long seq = s != NULL ? strtoull(s, &end, 10) : 0;
    if (s == NULL || end == s || *end != '\0' || seq == 0)
        return shed_http_reply(c, 400, "seq=N required\n");
    if (shed_hints_done(shed_cluster_hints(c->ctx->cluster), cell, seq) < 0)
        return shed_http_reply(c, 404, "no such hint\n");
    shed_metrics_response(c->ctx->metrics, 204);
    shed_http_text(c->conn, 204, "");
    return true;
}

bool
shed_cluster_handle(struct shed_call *c)
{
    if (strcmp(c->path, path_hints) == 0)
        return serve_hints(c);
    if (strcmp(c->path, path_master) == 0) {
        if (c->m != SHED_M_GET && c->m != SHED_M_HEAD)
            return shed_http_reply(c, 405, "method not allowed\n");
        return serve_master_status(c);
    }
    return sync_post(c, strcmp(c->path, path_push) == 0);
}
