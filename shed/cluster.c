/* SPDX-License-Identifier: ISC */
/*
 * shed/cluster: the glue between the daemon and the multi-shed modules
 * (shed/sync, shed/master, shed/suspect, shed/snapshot, proto/token). None
 * of it is on the line role's hot path: it runs only for sync traffic, for
 * requests that have to leave the cell, and for client failure reports.
 */
#include "shed/cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "proto/token.h"
#include "shed/etcd.h"
#include "shed/events.h"
#include "shed/hints.h"
#include "shed/line.h"
#include "shed/master.h"
#include "shed/metrics.h"
#include "shed/snapshot.h"
#include "shed/suspect.h"
#include "shed/sync.h"

static const char path_sync[] = SHED_SYNC_PATH;
static const char path_push[] = SHED_SYNC_MASTER_PATH;
static const char path_hints[] = "/_shed/v1/hints";
static const char path_master[] = "/_shed/v1/master";

#define SNAPSHOT_EVERY_MS 2000

static struct {
    struct shed_ctx *ctx;
    struct shed_config *cfg;   /* private copy, replaced by shed_cluster_reload() (main thread) */
    _Atomic uint64_t lease_ms; /* cfg's lease, for the probe thread */
    struct shed_sync *sync;
    struct shed_master *master;
    struct shed_hints *hints; /* master role: escalated writes to bring home */
    struct shed_suspect *suspect;
    struct shed_sync_origins origins; /* peers, for the line role */
    char origin[SHED_URL_MAX + 16];
    uint64_t last_snapshot_ms, snapshot_seq, last_empty;
    bool started;
} G;

static uint64_t
unix_s(void)
{
    return clock_real_ns() / 1000000000u;
}

struct shed_sync *
shed_cluster_sync(void)
{
    return G.sync;
}

struct shed_master *
shed_cluster_master(void)
{
    return G.master;
}

/* ---- text answers ---- */

static const char txt_no_cell[] = "no other cell can serve this request, retry later\n";
static const char txt_not_acked[] = "escalation pending: masters not yet updated, retry\n";
static const char txt_tok_missing[] = "escalation token required\n";
static const char txt_tok_malformed[] = "malformed escalation token\n";
static const char txt_tok_sig[] = "escalation token signature mismatch\n";
static const char txt_tok_expired[] = "escalation token expired\n";
static const char txt_tok_version[] = "unknown escalation token version\n";
static const char txt_tok_service[] = "escalation token is for another service\n";
static const char txt_too_long[] = "path, id or query too long\n";
static const char txt_bad[] = "bad request\n";

static void
no_cell(const struct shed_config *cfg, struct shed_answer *a, const char *body, size_t len)
{
    shed_answer_text(a, 503, body, len);
    a->retry_after = shed_line_retry_after(cfg);
}

/* ---- the token in the query ---- */

/* Find shed_esc in <q>; decode it into <raw>. 1 found, 0 absent, <0 bad. */
static int
token_arg(const struct shed_query *q, char *raw, size_t rawlen, size_t *len)
{
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->args[i].key, PROTO_TOKEN_PARAM) != 0)
            continue;
        const char *v = q->args[i].val != NULL ? q->args[i].val : "";
        long n = proto_pct_decode(v, strlen(v), raw, rawlen, false);
        if (n < 0)
            return -PROTO_TOKEN_EMALFORMED;
        *len = (size_t)n;
        return 1;
    }
    return 0;
}

/* 400 text for a token error. */
static void
token_error(struct shed_answer *a, int rc)
{
    switch (-rc) {
    case PROTO_TOKEN_EBADSIG:
        SHED_TEXT(a, 400, txt_tok_sig);
        break;
    case PROTO_TOKEN_EEXPIRED:
        SHED_TEXT(a, 400, txt_tok_expired);
        break;
    case PROTO_TOKEN_EVERSION:
        SHED_TEXT(a, 400, txt_tok_version);
        break;
    default:
        SHED_TEXT(a, 400, txt_tok_malformed);
        break;
    }
}

/* Verify the request's token, if any. 1 (verified, in *t), 0 (none), or
 * <0 with a 400 already in <a>. */
static int
token_from_query(const struct shed_config *cfg, const struct shed_query *q, const char *service,
                 struct proto_token *t, struct shed_answer *a)
{
    char raw[PROTO_TOKEN_ENC_MAX + 8];
    size_t len = 0;
    int rc = token_arg(q, raw, sizeof(raw), &len);

    if (rc == 0)
        return 0;
    if (rc > 0)
        rc = proto_token_decode(raw, len, cfg->credential, strlen(cfg->credential), unix_s(), t);
    if (rc < 0) {
        log_debug("cluster: token refused: %s", proto_token_strerror(rc));
        token_error(a, rc);
        return rc;
    }
    if (strcmp(t->service, service) != 0) {
        SHED_TEXT(a, 400, txt_tok_service);
        return -EINVAL;
    }
    return 1;
}

/* Location: <base> + segments + the query without shed_esc + the token. */
static int
location(struct shed_answer *a, const char *base, const struct proto_slice *segs, size_t nsegs,
         const struct shed_query *q, const char *tok)
{
    struct shed_query keep;
    long e;

    keep.n = 0;
    keep.overflow = false;
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->args[i].key, PROTO_TOKEN_PARAM) != 0)
            keep.args[keep.n++] = q->args[i];
    e = shed_line_location(a->location, sizeof(a->location), base, segs, nsegs, &keep);
    if (e < 0)
        return (int)e;
    size_t o = (size_t)e, tl = strlen(tok);
    if (o + 1 + sizeof(PROTO_TOKEN_PARAM) + tl >= sizeof(a->location))
        return -PROTO_ETOOLONG;
    o += (size_t)snprintf(a->location + o, sizeof(a->location) - o, "%c%s=%s",
                          keep.n == 0 ? '?' : '&', PROTO_TOKEN_PARAM, tok);
    a->location_len = o;
    return 0;
}

static unsigned
redirect_status(const struct shed_config *cfg, enum shed_method m)
{
    return m == SHED_M_GET || m == SHED_M_HEAD ? cfg->code_get : cfg->code_other;
}

/* ---- line role: escalation ---- */

bool
shed_cluster_list_escalates(const struct shed_config *cfg, const struct registry_route *r)
{
    if ((cfg->nmasters == 0 || G.sync == NULL) && G.master == NULL)
        return false;
    size_t n = ring_size(r->ring);
    for (size_t i = 0; i < n; i++) {
        uint8_t st = atomic_load_explicit(&r->live[i], memory_order_relaxed);
        if (st == REGISTRY_UP || st == REGISTRY_DRAINING)
            return false;
    }
    return true;
}

/* Remember an escalated PUT of message <segs> for its home cell, the
 * token's first (shed/hints). */
static void
hint(const struct proto_token *t, const char *service, const struct proto_slice *segs, size_t nsegs,
     const char *url)
{
    char path[PROTO_BURROW_PATH_MAX + 1];

    if (G.hints == NULL || t->ncells == 0 || nsegs != 4 ||
        shed_line_location(path, sizeof(path), "", segs, nsegs, NULL) < 0)
        return;
    if (shed_hints_add(G.hints, t->cells[0], service, path, url, shed_now_ms()) < 0)
        log_warnx("cluster: master: no memory for a hint of cell %s", t->cells[0]);
}

/* A process that is line and master at once decides in place: sending the
 * request to itself through a redirect would only cost the client a hop. */
static bool
master_inline(const struct shed_config *cfg, const struct registry_route *r, enum shed_method m,
              const struct proto_slice *segs, size_t nsegs, const struct shed_query *q,
              struct proto_token *t, struct shed_answer *a)
{
    char key[2 * PROTO_BURROW_ID_MAX + 2];
    struct shed_master_req req = {
        .service = r->name, .token = t, .now_ms = shed_now_ms(), .rnd = shed_line_random()};
    struct shed_master_pick pick;
    char enc[PROTO_TOKEN_ENC_MAX];

    if (r->kind == SHED_KIND_BURROW && nsegs == 4 && segs[2].len + segs[3].len + 1 < sizeof(key)) {
        memcpy(key, segs[2].ptr, segs[2].len);
        key[segs[2].len] = '/';
        memcpy(key + segs[2].len + 1, segs[3].ptr, segs[3].len);
        req.account = segs[1].ptr;
        req.alen = segs[1].len;
        req.key = key;
        req.klen = segs[2].len + 1 + segs[3].len;
    } else if (r->kind == SHED_KIND_BURROW) {
        req.list = true;
    }
    if (shed_master_route(G.master, &req, &pick) < 0) {
        no_cell(cfg, a, txt_no_cell, sizeof(txt_no_cell) - 1);
        return true;
    }
    (void)proto_token_add_cell(t, pick.cell);
    long n = proto_token_encode(t, cfg->credential, strlen(cfg->credential), enc, sizeof(enc));
    if (n < 0 || location(a, pick.url, segs, nsegs, q, enc) < 0) {
        SHED_TEXT(a, 414, txt_too_long);
        return true;
    }
    if (!req.list && r->kind == SHED_KIND_BURROW && m == SHED_M_PUT)
        hint(t, r->name, segs, nsegs, pick.url);
    a->bucket[0] = a->generation[0] = a->pin_ttl[0] = '\0';
    a->ring = NULL;
    if (!req.list && r->kind == SHED_KIND_BURROW) {
        snprintf(a->bucket, sizeof(a->bucket), "%" PRIu32, pick.bucket);
        snprintf(a->pin_ttl, sizeof(a->pin_ttl), "%" PRIu32,
                 (uint32_t)(cfg->timings.pin_lifetime_ms / 1000));
    }
    a->status = redirect_status(cfg, m);
    a->body = NULL;
    a->body_len = 0;
    return true;
}

bool
shed_cluster_escalate(const struct shed_config *cfg, const struct registry_route *r,
                      enum shed_method m, const struct proto_slice *segs, size_t nsegs,
                      const struct shed_query *q, struct shed_answer *a)
{
    struct proto_token t;
    char enc[PROTO_TOKEN_ENC_MAX];
    int rc, idx;

    if ((cfg->nmasters == 0 || G.sync == NULL) && G.master == NULL)
        return false;
    rc = token_from_query(cfg, q, r->name, &t, a);
    if (rc < 0)
        return true;
    if (rc == 0 && proto_token_init(&t, r->name, unix_s() + SHED_CLUSTER_TOKEN_TTL_S,
                                    shed_line_random()) < 0) {
        SHED_TEXT(a, 400, txt_bad);
        return true;
    }
    /* Extend, never reset: this cell joins the visited list. */
    if (proto_token_add_cell(&t, cfg->cell) < 0 || t.hops >= SHED_MASTER_MAX_HOPS) {
        no_cell(cfg, a, txt_no_cell, sizeof(txt_no_cell) - 1);
        return true;
    }
    t.hops++;
    if (G.master != NULL)
        return master_inline(cfg, r, m, segs, nsegs, q, &t, a);
    /* Ordering rule: only a master that has acknowledged the change that
     * emptied this service here may get the request. Never wait on the
     * request path: the sync thread is kicked and the client retries. */
    uint64_t seq = registry_escalation_seq(G.ctx->reg, r->name, r->name_len);
    char murl[SHED_URL_MAX];
    idx = shed_sync_pick_master(G.sync, seq, 0, shed_line_random(), murl, sizeof(murl));
    if (idx < 0) {
        a->await_masters = true; /* the line handler may hold it: shed_cluster_park() */
        a->retry_after = 1;
        SHED_TEXT(a, 503, txt_not_acked);
        return true;
    }
    long n = proto_token_encode(&t, cfg->credential, strlen(cfg->credential), enc, sizeof(enc));
    if (n < 0 || location(a, murl, segs, nsegs, q, enc) < 0) {
        SHED_TEXT(a, 414, txt_too_long);
        return true;
    }
    a->status = redirect_status(cfg, m);
    a->body = NULL;
    a->body_len = 0;
    a->bucket[0] = a->generation[0] = a->pin_ttl[0] = '\0';
    a->ring = NULL;
    log_debug("cluster: escalating service=%s hops=%u to %s", r->name, t.hops, murl);
    shed_events_add(SHED_EV_ESCALATED, "service=%s hops=%u to master %s", r->name, t.hops, murl);
    return true;
}

/* ---- master role ---- */

static void
master_route(struct shed_call *c, const struct shed_query *q, struct shed_answer *a, unsigned *slot,
             enum shed_level *level)
{
    const struct shed_config *cfg = c->cfg;
    const char *host = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Host");
    char svc[SHED_NAME_MAX];
    struct proto_token t;
    const struct shed_service_config *sc;
    int rc;

    a->location_len = 0;
    a->bucket[0] = a->generation[0] = a->pin_ttl[0] = '\0';
    a->ring = NULL;
    a->retry_after = 0;
    rc = shed_line_host_service(host, cfg->default_service, svc);
    if (rc == -EINVAL) {
        SHED_TEXT(a, 400, txt_bad);
        return;
    }
    sc = rc == 0 ? shed_config_service(cfg, svc, strlen(svc)) : NULL;
    if (sc == NULL) {
        static const char txt[] = "unknown service\n";
        SHED_TEXT(a, 404, txt);
        return;
    }
    if (q->overflow || c->m == SHED_M_OTHER) {
        SHED_TEXT(a, 400, txt_bad);
        return;
    }
    rc = token_from_query(cfg, q, svc, &t, a);
    if (rc < 0)
        return;
    if (rc == 0) {
        SHED_TEXT(a, 400, txt_tok_missing);
        return;
    }
    *slot = shed_metrics_service_slot(svc);

    char dec[3 * PROTO_BURROW_ID_MAX + 3];
    char anydec[PROTO_BURROW_PATH_MAX];
    struct proto_slice segsbuf[SHED_LINE_SEGS_MAX];
    const struct proto_slice *segs = segsbuf;
    size_t nsegs = 0;
    struct shed_master_req req = {
        .service = svc, .token = &t, .now_ms = c->now_ms, .rnd = shed_line_random()};
    char key[2 * PROTO_BURROW_ID_MAX + 2];
    if (sc->kind == SHED_KIND_ANY) {
        *level = SHED_LEVEL_ANY;
        rc = shed_line_split_path(c->path, anydec, sizeof(anydec), segsbuf, SHED_LINE_SEGS_MAX,
                                  &nsegs);
        if (rc < 0) {
            SHED_REFUSED(a, rc, txt_bad);
            return;
        }
    } else {
        struct proto_burrow_path bp;
        size_t plen = strlen(c->path);
        if (plen > PROTO_BURROW_PATH_MAX) {
            SHED_TEXT(a, 414, txt_too_long);
            return;
        }
        rc = proto_burrow_parse_path(c->path, plen, dec, sizeof(dec), &bp);
        if (rc == -PROTO_ENOTFOUND || (rc == 0 && bp.level == PROTO_BURROW_ROOT)) {
            static const char txt[] = "not found\n";
            SHED_TEXT(a, 404, txt);
            return;
        }
        if (rc < 0) {
            SHED_REFUSED(a, rc, txt_bad);
            return;
        }
        static const struct proto_slice version = {PROTO_BURROW_VERSION,
                                                   sizeof(PROTO_BURROW_VERSION) - 1};
        segsbuf[0] = version;
        segsbuf[1] = bp.account;
        segsbuf[2] = bp.queue;
        segsbuf[3] = bp.message;
        nsegs = (size_t)bp.level;
        if (bp.level == PROTO_BURROW_MESSAGE) {
            *level = SHED_LEVEL_MESSAGE;
            memcpy(key, bp.queue.ptr, bp.queue.len);
            key[bp.queue.len] = '/';
            memcpy(key + bp.queue.len + 1, bp.message.ptr, bp.message.len);
            req.account = bp.account.ptr;
            req.alen = bp.account.len;
            req.key = key;
            req.klen = bp.queue.len + 1 + bp.message.len;
        } else {
            *level = SHED_LEVEL_LIST;
            req.list = true;
        }
    }
    struct shed_master_pick pick;
    rc = shed_master_route(G.master, &req, &pick);
    if (rc < 0) {
        log_debug("cluster: master: service=%s hops=%u cells=%u: %s", svc, t.hops, t.ncells,
                  rc == -ELOOP ? "too many hops" : "no cell");
        shed_events_add(SHED_EV_MASTER, "service=%s hops=%u: %s, 503", svc, t.hops,
                        rc == -ELOOP ? "too many hops" : "no other cell can serve");
        no_cell(cfg, a, txt_no_cell, sizeof(txt_no_cell) - 1);
        return;
    }
    /* The chosen cell joins the visited list too: if its server turns out
     * to be gone, the client comes back with a token that excludes it. */
    (void)proto_token_add_cell(&t, pick.cell);
    char enc[PROTO_TOKEN_ENC_MAX];
    long n = proto_token_encode(&t, cfg->credential, strlen(cfg->credential), enc, sizeof(enc));
    if (n < 0 || location(a, pick.url, segs, nsegs, q, enc) < 0) {
        SHED_TEXT(a, 414, txt_too_long);
        return;
    }
    if (*level == SHED_LEVEL_MESSAGE && c->m == SHED_M_PUT)
        hint(&t, svc, segs, nsegs, pick.url);
    if (*level == SHED_LEVEL_MESSAGE) {
        snprintf(a->bucket, sizeof(a->bucket), "%" PRIu32, pick.bucket);
        snprintf(a->pin_ttl, sizeof(a->pin_ttl), "%" PRIu32,
                 (uint32_t)(cfg->timings.pin_lifetime_ms / 1000));
    }
    a->status = redirect_status(cfg, c->m);
    a->body = NULL;
    a->body_len = 0;
    log_debug("cluster: master: service=%s -> cell=%s %s", svc, pick.cell, pick.url);
    shed_events_add(SHED_EV_MASTER, "service=%s hops=%u to cell %s %s", svc, t.hops, pick.cell,
                    pick.url);
}

bool
shed_cluster_master_handle(struct shed_call *c)
{
    if (G.master == NULL)
        return false;
    if (shed_http_not_yet(c))
        return true;
    struct shed_query q;
    shed_line_query(c->conn, &q);
    struct shed_answer a;
    unsigned slot = 0;
    enum shed_level level = SHED_LEVEL_MESSAGE;
    master_route(c, &q, &a, &slot, &level);
    if (a.location_len > 0)
        shed_metrics_redirect(slot, level, a.status);
    else
        shed_metrics_response(a.status);
    shed_http_answer(c->conn, &a);
    return true;
}

/* ---- sync endpoints ---- */

struct body_ctx {
    struct shed_req_ctx base;
    char *data;
    size_t len, cap;
    bool too_big;
};

static void
body_free(struct shed_req_ctx *ctx)
{
    struct body_ctx *b = (struct body_ctx *)ctx;
    free(b->data);
    free(b);
}

static bool
text_answer(struct shed_call *c, unsigned status, const char *txt)
{
    shed_metrics_response(status);
    shed_http_text(c->conn, status, txt);
    return true;
}

static bool
json_answer(struct shed_call *c, const char *buf, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)buf, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return text_answer(c, 503, "out of memory\n");
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_queue_response(c->conn, 200, r);
    MHD_destroy_response(r);
    shed_metrics_response(200);
    return true;
}

/* Answer 200 with <root> as compact JSON (consumed; NULL: out of memory). */
static bool
json_send(struct shed_call *c, json_t *root)
{
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL)
        return text_answer(c, 503, "out of memory\n");
    json_answer(c, text, strlen(text));
    free(text);
    return true;
}

static bool
serve_master_status(struct shed_call *c)
{
    if (shed_http_not_yet(c))
        return true;
    if (G.master == NULL)
        return text_answer(c, 404, "not a master\n");
    if (c->cfg->ops_credential && !shed_http_authorized(c->conn, c->cfg->credential))
        return text_answer(c, 401, "credential required (ops_credential)\n");
    return json_send(c, shed_master_status(G.master, c->now_ms));
}

/* Collect a POST body (bounded), then decode and apply it. */
static bool
sync_post(struct shed_call *c, bool to_master)
{
    struct body_ctx *b = *c->con_cls;

    if (c->first) {
        if (c->m != SHED_M_POST)
            return text_answer(c, 405, "method not allowed\n");
        if (!shed_http_authorized(c->conn, c->cfg->credential))
            return text_answer(c, 401, "credential required\n");
        if (to_master ? G.master == NULL
                      : !(c->cfg->roles & (SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR)))
            return text_answer(c, 404, "not found\n");
        const char *cl = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > PROTO_SYNC_BODY_MAX)
            return text_answer(c, 413, "sync body too large\n");
        b = calloc(1, sizeof(*b));
        if (b == NULL)
            return text_answer(c, 503, "out of memory\n");
        b->base.free_fn = body_free;
        *c->con_cls = b;
        return true;
    }
    if (*c->upload_data_size != 0) {
        size_t n = *c->upload_data_size;
        *c->upload_data_size = 0;
        if (b->too_big || n > PROTO_SYNC_BODY_MAX - b->len) {
            b->too_big = true;
            return true;
        }
        if (b->len + n > b->cap) {
            size_t ncap = b->cap ? b->cap : 4096;
            while (ncap < b->len + n)
                ncap *= 2;
            if (ncap > PROTO_SYNC_BODY_MAX)
                ncap = PROTO_SYNC_BODY_MAX;
            char *p = realloc(b->data, ncap);
            if (p == NULL) {
                b->too_big = true;
                return true;
            }
            b->data = p;
            b->cap = ncap;
        }
        memcpy(b->data + b->len, c->upload_data, n);
        b->len += n;
        return true;
    }
    if (b->too_big)
        return text_answer(c, 413, "sync body too large\n");
    struct proto_sync_msg msg;
    struct proto_sync_ack ack = {0};
    int rc = proto_sync_decode(b->data ? b->data : "", b->len, &msg);
    if (rc < 0) {
        log_warnx("cluster: sync from a peer refused: %s", proto_sync_strerror(rc));
        return text_answer(c, 400, "bad sync message\n");
    }
    if (to_master) {
        rc = shed_master_apply(G.master, &msg, c->now_ms, &ack);
        if (rc < 0) {
            log_warnx("cluster: master: push from %s (cell %s): %s", msg.origin, msg.cell,
                      strerror(-rc));
            proto_sync_msg_free(&msg);
            if (rc == -EINVAL)
                return text_answer(c, 400, "push names no cell\n");
            if (rc == -ENOSPC)
                return text_answer(c, 413, "too many cells, services or members\n");
            return text_answer(c, 503, "out of memory\n");
        }
    } else if (strcmp(msg.cell, c->cfg->cell) != 0) {
        proto_sync_msg_free(&msg);
        return text_answer(c, 409, "sync from another cell\n");
    } else if (shed_sync_origins_check(&G.origins, &msg, &ack)) {
        registry_apply(c->ctx->reg, &msg, c->now_ms, false, NULL);
        shed_sync_origins_done(&G.origins, &msg, &ack);
        if (shed_sync_add_peer(G.sync, msg.origin) < 0)
            log_warnx("cluster: no room to push to peer %s", msg.origin);
    }
    proto_sync_msg_free(&msg);
    char out[128];
    long n = proto_sync_ack_encode(&ack, out, sizeof(out));
    if (n < 0)
        return text_answer(c, 503, "ack too long\n");
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
    if (G.hints == NULL)
        return text_answer(c, 404, "not a master\n");
    if (!shed_http_authorized(c->conn, c->cfg->credential))
        return text_answer(c, 401, "credential required\n");
    const char *cell = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "cell");
    if (cell == NULL || !proto_token_name_ok(cell, strlen(cell)))
        return text_answer(c, 400, "cell=NAME required\n");
    if (c->m == SHED_M_GET)
        return json_send(c, shed_hints_json(G.hints, cell, SHED_HINTS_PAGE_MAX, c->now_ms));
    if (c->m != SHED_M_DELETE)
        return text_answer(c, 405, "method not allowed\n");
    const char *s = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "seq");
    char *end = NULL;
    unsigned long long seq = s != NULL ? strtoull(s, &end, 10) : 0;
    if (s == NULL || end == s || *end != '\0' || seq == 0)
        return text_answer(c, 400, "seq=N required\n");
    if (shed_hints_done(G.hints, cell, seq) < 0)
        return text_answer(c, 404, "no such hint\n");
    shed_metrics_response(204);
    shed_http_text(c->conn, 204, "");
    return true;
}

size_t
shed_cluster_metrics(char *buf, size_t len)
{
    size_t o = 0;
    int n;

    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (G.suspect != NULL) {
        struct shed_suspect_stats st;

        shed_suspect_stats(G.suspect, &st);
        n = snprintf(buf, len,
                     "# HELP shed_failure_reports_limited_total Shed-Failed reports dropped: "
                     "their client address was over its rate.\n"
                     "# TYPE shed_failure_reports_limited_total counter\n"
                     "shed_failure_reports_limited_total %" PRIu64 "\n"
                     "# HELP shed_failure_probes_total Probes started to verify failure "
                     "reports.\n"
                     "# TYPE shed_failure_probes_total counter\n"
                     "shed_failure_probes_total %" PRIu64 "\n"
                     "# HELP shed_failure_probes_failed_total Verification probes that found "
                     "the backend dead (marked down).\n"
                     "# TYPE shed_failure_probes_failed_total counter\n"
                     "shed_failure_probes_failed_total %" PRIu64 "\n",
                     st.limited, st.probes, st.confirmed);
        if (n > 0)
            o = (size_t)n < len ? (size_t)n : len - 1;
    }
    if (G.hints != NULL) {
        uint64_t held, dropped;
        char tmp[512];

        shed_hints_counts(G.hints, &held, &dropped);
        n = snprintf(tmp, sizeof(tmp),
                     "# HELP shed_hints Escalated writes this master remembers for their home "
                     "cell.\n"
                     "# TYPE shed_hints gauge\nshed_hints %" PRIu64 "\n"
                     "# HELP shed_hints_dropped_total Hints dropped for room (their messages "
                     "stay in the other cell).\n"
                     "# TYPE shed_hints_dropped_total counter\nshed_hints_dropped_total %" PRIu64
                     "\n",
                     held, dropped);
        if (n > 0 && (size_t)n < sizeof(tmp) && o + (size_t)n < len) {
            memcpy(buf + o, tmp, (size_t)n + 1);
            o += (size_t)n;
        }
    }
    o += shed_etcd_metrics(buf + o, len - o);
    return o;
}

bool
shed_cluster_handle(struct shed_call *c)
{
    if (strcmp(c->path, path_hints) == 0)
        return serve_hints(c);
    if (strcmp(c->path, path_master) == 0) {
        if (c->m != SHED_M_GET && c->m != SHED_M_HEAD)
            return text_answer(c, 405, "method not allowed\n");
        return serve_master_status(c);
    }
    return sync_post(c, strcmp(c->path, path_push) == 0);
}

/* ---- client failure reports ---- */

static void
probe_done(void *arg, const char *hostport, bool alive)
{
    (void)arg;
    uint64_t now = shed_now_ms();
    if (alive) {
        /* A report that did not hold: nothing changes, nothing is logged
         * above debug (forged reports must not fill the log). */
        log_debug("cluster: %s answered the probe after a failure report", hostport);
        shed_suspect_clear(G.suspect, hostport, now);
        return;
    }
    shed_events_add(SHED_EV_PROBE, "%s failed the probe after a failure report", hostport);
    log_info("cluster: %s failed the probe after a failure report: down", hostport);
    shed_suspect_confirm(G.suspect, hostport, now);
    registry_probe_failed(G.ctx->reg, hostport, now, now + atomic_load(&G.lease_ms));
    shed_sync_kick(G.sync); /* the verdict reaches the peers now */

    /* Membership on etcd: the cell's sheds hear it through etcd. */
    shed_etcd_probe_failed(hostport, now);
}

void
shed_cluster_failed(struct shed_call *c, const char *hostport)
{
    const union MHD_ConnectionInfo *ci;
    char client[INET6_ADDRSTRLEN + 1] = "";
    char url[PROTO_HB_URL_MAX + 1];

    if (G.suspect == NULL)
        return;
    ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, client,
                  sizeof(client));
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, client,
                  sizeof(client));
    if (client[0] == '\0')
        return;
    if (!registry_host_url(c->ctx->reg, hostport, url, sizeof(url))) {
        shed_metrics_failed_unknown(); /* never takes one of the report slots */
        return;
    }
    /* A report only asks for a look: the probe's verdict decides. */
    if (shed_suspect_report(G.suspect, hostport, client, c->now_ms) != SHED_SUSPECT_PROBE)
        return;
    shed_events_add(SHED_EV_SUSPECT, "%s reported failed by %s, probing", hostport, client);
    if (shed_suspect_probe(G.suspect, hostport, url) < 0)
        shed_suspect_abandon(G.suspect, hostport); /* queue full: no verdict */
}

/* ---- escalations held until a master has acknowledged ---- */

/* Requests held (suspended MHD connections) because no master has yet
 * acknowledged the change that left this cell without a live member. The
 * sync thread resumes them after each of its turns (at least every 50 ms,
 * and at once when an acknowledgement arrives); each one is routed again,
 * and held again until PARK_WAIT_MS after it first was. An entry stays
 * (resumed) until its request comes back or completes, which is how a
 * request knows since when it waits. */
#define PARK_MAX     1024
#define PARK_WAIT_MS 2000

static struct {
    pthread_mutex_t mu;
    struct parked {
        struct MHD_Connection *conn;
        uint64_t since_ms;
        bool resumed;
    } e[PARK_MAX];
    size_t n;
    _Atomic size_t count; /* n, read without the lock */
    bool closed;          /* stopping: nothing is held any more */
} P = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void
park_remove(size_t i)
{
    P.e[i] = P.e[--P.n];
    atomic_store(&P.count, P.n);
}

/* Remove <conn>'s entry; its first-held time, or <now> if it had none. */
static uint64_t
park_take(struct MHD_Connection *conn, uint64_t now)
{
    for (size_t i = 0; i < P.n; i++)
        if (P.e[i].conn == conn) {
            uint64_t since = P.e[i].since_ms;
            park_remove(i);
            return since;
        }
    return now;
}

bool
shed_cluster_park(struct shed_call *c)
{
    const char *expect = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Expect");
    bool held = false;

    pthread_mutex_lock(&P.mu);
    uint64_t since = park_take(c->conn, c->now_ms);
    /* A client that waits for 100 Continue is answered now: holding it
     * would make MHD invite the body. */
    if (!P.closed && P.n < PARK_MAX && c->now_ms - since < PARK_WAIT_MS && expect == NULL) {
        P.e[P.n++] = (struct parked){c->conn, since, false};
        atomic_store(&P.count, P.n);
        MHD_suspend_connection(c->conn);
        held = true;
    }
    pthread_mutex_unlock(&P.mu);
    return held;
}

void
shed_cluster_forget(struct MHD_Connection *conn)
{
    if (atomic_load_explicit(&P.count, memory_order_relaxed) == 0)
        return; /* the common case: no lock on the request path */
    pthread_mutex_lock(&P.mu);
    park_take(conn, 0);
    pthread_mutex_unlock(&P.mu);
}

static void
unpark_all(void *arg)
{
    (void)arg;
    if (atomic_load(&P.count) == 0)
        return;
    pthread_mutex_lock(&P.mu);
    for (size_t i = 0; i < P.n; i++)
        if (!P.e[i].resumed) {
            P.e[i].resumed = true;
            MHD_resume_connection(P.e[i].conn);
        }
    pthread_mutex_unlock(&P.mu);
}

void
shed_cluster_unpark_stop(void)
{
    pthread_mutex_lock(&P.mu);
    P.closed = true;
    pthread_mutex_unlock(&P.mu);
    unpark_all(NULL);
    /* Each resumed request is answered (503) by the still-running front
     * end; MHD must not stop with a suspended connection. */
    for (int i = 0; i < 2000 && atomic_load(&P.count) > 0; i++) {
        struct timespec ts = {0, 1000000L};

        nanosleep(&ts, NULL);
    }
}

/* ---- lifecycle ---- */

static int64_t
export_cb(void *arg, uint64_t since, bool for_peer, struct proto_sync_msg *m)
{
    struct shed_ctx *ctx = arg;
    return registry_export(ctx->reg, since, for_peer, shed_now_ms(), m);
}

static void
write_snapshot(void)
{
    struct proto_sync_msg m;

    if (G.cfg->state_dir[0] == '\0' || !(G.cfg->roles & SHED_ROLE_LINE))
        return;
    proto_sync_msg_init(&m);
    m.kind = PROTO_SYNC_FULL;
    snprintf(m.cell, sizeof(m.cell), "%s", G.cfg->cell);
    snprintf(m.origin, sizeof(m.origin), "%s", G.origin);
    m.lease_ms = (uint32_t)G.cfg->timings.lease_ms;
    int64_t seq = registry_export(G.ctx->reg, 0, false, shed_now_ms(), &m);
    m.kind = PROTO_SYNC_FULL;
    m.seq = seq > 0 ? (uint64_t)seq : 0;
    int rc = shed_snapshot_write(G.cfg->state_dir, SHED_SNAPSHOT_NAME, &m);
    if (rc < 0)
        log_warnx("snapshot: %s/%s: write failed: %s", G.cfg->state_dir, SHED_SNAPSHOT_NAME,
                  rc <= -PROTO_SYNC_EBADJSON ? proto_sync_strerror(rc) : strerror(-rc));
    else
        G.snapshot_seq = m.seq;
    proto_sync_msg_free(&m);
}

static void
load_snapshot(void)
{
    struct proto_sync_msg m;
    uint64_t age = 0;
    size_t n = 0;

    if (G.cfg->state_dir[0] == '\0' || !(G.cfg->roles & SHED_ROLE_LINE))
        return;
    if (shed_snapshot_load(G.cfg->state_dir, SHED_SNAPSHOT_NAME, clock_real_ns() / 1000000u, &m,
                           &age) < 0)
        return;
    if (strcmp(m.cell, G.cfg->cell) != 0) {
        log_warnx("snapshot: written for cell %s, this is %s: cold start", m.cell, G.cfg->cell);
        proto_sync_msg_free(&m);
        return;
    }
    registry_apply(G.ctx->reg, &m, shed_now_ms(), true, &n);
    registry_tick(G.ctx->reg, shed_now_ms());
    log_info("snapshot: warm start with %zu members (unconfirmed for one lease), %" PRIu64 "ms old",
             n, age);
    proto_sync_msg_free(&m);
}

/* The sync thread's view of <cfg>; <peers> and <masters> (SHED_MAX_URLS
 * each) receive borrowed pointers into <cfg>. This shed's own URL is not a
 * peer; only the line role pushes to masters. */
static struct shed_sync_config
sync_config(struct shed_ctx *ctx, const struct shed_config *cfg, const char **peers,
            const char **masters)
{
    size_t np = 0, nm = 0;

    for (size_t i = 0; i < cfg->npeers; i++)
        if (!shed_same_url(cfg->peers[i], G.origin))
            peers[np++] = cfg->peers[i];
    for (size_t i = 0; i < cfg->nmasters && (cfg->roles & SHED_ROLE_LINE); i++)
        masters[nm++] = cfg->masters[i];
    return (struct shed_sync_config){
        .origin = G.origin,
        .cell = cfg->cell,
        .aggregator = cfg->aggregator,
        .credential = cfg->credential,
        .peers = peers,
        .npeers = np,
        .masters = masters,
        .nmasters = nm,
        .interval_ms = cfg->timings.sync_interval_ms,
        .timeout_ms = 1000,
        .lease_ms = (uint32_t)cfg->timings.lease_ms,
        .export_fn = export_cb,
        .arg = ctx,
        .turn_fn = unpark_all,
    };
}

int
shed_cluster_start(struct shed_ctx *ctx, const struct shed_config *cfg)
{
    int rc;

    memset(&G, 0, sizeof(G));
    G.ctx = ctx;
    G.cfg = malloc(sizeof(*G.cfg));
    if (G.cfg == NULL)
        return -ENOMEM;
    memcpy(G.cfg, cfg, sizeof(*cfg)); /* no pointers inside: a plain copy */
    atomic_store(&G.lease_ms, cfg->timings.lease_ms);
    shed_sync_origins_init(&G.origins);
    snprintf(G.origin, sizeof(G.origin), "http://%s", cfg->nlisten > 0 ? cfg->listen[0] : "");

    if (cfg->roles & SHED_ROLE_MASTER) {
        rc = shed_master_create(G.cfg, SHED_MASTER_MAX_HOPS, &G.master);
        if (rc < 0)
            return rc;
        rc = shed_hints_create(&G.hints);
        if (rc < 0)
            return rc;
    }
    if (cfg->roles & (SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR)) {
        struct shed_suspect_config sc = {.hold_ms = cfg->timings.lease_ms,
                                         .probe_timeout_ms = 300,
                                         .reprobe_ms = 250,
                                         .source_rate = 10};
        rc = shed_suspect_create(&sc, &G.suspect);
        if (rc < 0)
            return rc;
        rc = shed_suspect_probe_start(G.suspect, probe_done, NULL);
        if (rc < 0)
            return rc;
        load_snapshot();
        G.snapshot_seq = registry_seq(ctx->reg);
        G.last_snapshot_ms = shed_now_ms();

        /* Always run it: peers that push to us become targets later. */
        const char *peers[SHED_MAX_URLS], *masters[SHED_MAX_URLS];
        struct shed_sync_config syc = sync_config(ctx, G.cfg, peers, masters);
        rc = shed_sync_start(&syc, &G.sync);
        if (rc < 0)
            return rc;
        log_info("cluster: syncing with %zu peer%s and %zu master%s every %" PRIu64 "ms",
                 syc.npeers, syc.npeers == 1 ? "" : "s", syc.nmasters, syc.nmasters == 1 ? "" : "s",
                 cfg->timings.sync_interval_ms);
        if (cfg->membership.store == SHED_STORE_ETCD) {
            rc = shed_etcd_start(ctx->reg, G.cfg, G.origin);
            if (rc < 0)
                return rc;
        }
    }
    G.started = true;
    return 0;
}

void
shed_cluster_reload(struct shed_ctx *ctx, const struct shed_config *cfg)
{
    struct shed_config *next, *old = G.cfg;

    if (!G.started)
        return;
    if ((cfg->roles ^ old->roles) & (SHED_ROLE_MASTER | SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR))
        log_warnx("cluster: role changes take effect at the next restart");
    if (memcmp(&cfg->membership, &old->membership, sizeof(cfg->membership)) != 0 ||
        (cfg->membership.store == SHED_STORE_ETCD &&
         cfg->timings.lease_ms != old->timings.lease_ms))
        log_warnx("cluster: membership changes (and the lease the etcd mode uses) take effect "
                  "at the next restart");
    next = malloc(sizeof(*next));
    if (next == NULL) {
        log_warnx("cluster: reload: out of memory, keeping peers, masters and cells");
        return;
    }
    memcpy(next, cfg, sizeof(*cfg));
    /* Roles stay what the threads were started for. */
    next->roles = old->roles;
    if (G.master != NULL)
        shed_master_reconfigure(G.master, next); /* stops reading <old> */
    if (G.sync != NULL) {
        const char *peers[SHED_MAX_URLS], *masters[SHED_MAX_URLS];
        struct shed_sync_config syc = sync_config(ctx, next, peers, masters);
        int rc = shed_sync_reconfigure(G.sync, &syc);
        if (rc < 0)
            log_warnx("cluster: reload: sync targets: %s", strerror(-rc));
        log_info("cluster: syncing with %zu peer%s and %zu master%s every %" PRIu64 "ms",
                 syc.npeers, syc.npeers == 1 ? "" : "s", syc.nmasters, syc.nmasters == 1 ? "" : "s",
                 next->timings.sync_interval_ms);
    }
    atomic_store(&G.lease_ms, next->timings.lease_ms);
    G.cfg = next;
    free(old);
}

void
shed_cluster_tick(struct shed_ctx *ctx, uint64_t now_ms)
{
    (void)ctx;
    if (!G.started)
        return;
    if (G.sync != NULL) {
        uint64_t e = registry_last_empty_seq(G.ctx->reg);
        if (e != G.last_empty) {
            G.last_empty = e;
            shed_sync_kick(G.sync); /* a service emptied: tell the masters now */
        }
    }
    if (G.suspect != NULL) {
        /* Reports that came during the pause after an alive verdict. */
        char due[8][SHED_SUSPECT_HOST_MAX], url[PROTO_HB_URL_MAX + 1];
        size_t n = shed_suspect_due(G.suspect, now_ms, due, 8);
        for (size_t i = 0; i < n; i++)
            if (!registry_host_url(G.ctx->reg, due[i], url, sizeof(url)) ||
                shed_suspect_probe(G.suspect, due[i], url) < 0)
                shed_suspect_abandon(G.suspect, due[i]);
    }
    if (now_ms - G.last_snapshot_ms >= SNAPSHOT_EVERY_MS) {
        G.last_snapshot_ms = now_ms;
        if (registry_seq(G.ctx->reg) != G.snapshot_seq)
            write_snapshot();
    }
}

void
shed_cluster_stop(struct shed_ctx *ctx)
{
    (void)ctx;
    if (G.cfg == NULL)
        return;
    shed_etcd_stop();
    shed_sync_stop(G.sync);
    shed_suspect_destroy(G.suspect);
    if (G.started)
        write_snapshot();
    shed_master_destroy(G.master);
    shed_hints_destroy(G.hints);
    shed_sync_origins_fini(&G.origins);
    free(G.cfg);
    memset(&G, 0, sizeof(G));
}
