/* SPDX-License-Identifier: ISC */
/*
 * shed/line: routing for the line role. The hot path (a message-level
 * redirect) is: Host -> service, parse the raw path into a stack buffer,
 * bucket from the ring config, ring_row() into a stack array, pick the first
 * live member, write Location into the answer's fixed buffer. No allocation,
 * no lock (the view is read under shed/rcu), no I/O.
 */
#include "shed/line.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "shed/access.h"
#include "shed/agg.h"
#include "shed/cluster.h"
#include "shed/suspect.h"

#define WALK_MAX 64 /* handoff candidates looked at beyond the R of a row */

static const char txt_root[] = "[\"v1.0\"]";
static const char txt_unknown_service[] = "unknown service\n";
static const char txt_bad_host[] = "bad Host header\n";
static const char txt_not_found[] = "not found\n";
static const char txt_bad_path[] = "bad path: malformed percent-encoding or control byte\n";
static const char txt_too_long[] = "path, id or query too long\n";
static const char txt_bad_query[] = "bad query string\n";
static const char txt_method[] = "method not allowed\n";
static const char txt_no_server[] = "no live server for this request, retry later\n";
static const char txt_list_all[] = "listing all accounts is disabled on this cell\n";
static const char txt_too_many_args[] = "too many query parameters\n";

/* <v> in decimal into <out> of <cap> bytes ("" if it does not fit): the
 * redirect headers' numbers without snprintf's format parsing on the hot
 * path. */
static void
put_dec(char *out, size_t cap, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (n >= cap) {
        out[0] = '\0';
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

void
shed_line_refused(struct shed_answer *a, long rc, const char *body, size_t len)
{
    if (rc == -PROTO_ETOOLONG)
        SHED_TEXT(a, 414, txt_too_long);
    else
        shed_answer_text(a, 400, body, len);
}

/* Per-thread xorshift: jitter and the two random choices, no shared state. */
uint64_t
shed_line_random(void)
{
    static _Thread_local uint64_t x;
    if (x == 0) {
        uint64_t ns = clock_mono_ns();
        x = (ns << 20) ^ (uint64_t)(uintptr_t)&x ^ (ns >> 30);
        x |= 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 2685821657736338717ull;
}

unsigned
shed_line_retry_after(const struct shed_config *cfg)
{
    /* About one heartbeat interval or two, jittered so that clients turned
     * away together do not come back together. */
    uint64_t base = cfg->timings.heartbeat_interval_ms / 1000;
    if (base < 1)
        base = 1;
    return (unsigned)(base + shed_line_random() % (2 * base));
}

int
shed_line_split_path(const char *path, char *dec, size_t declen, struct proto_slice *segs,
                     size_t maxsegs, size_t *nsegs)
{
    size_t used = 0, plen = strlen(path);

    *nsegs = 0;
    if (plen == 0 || path[0] != '/')
        return -EINVAL;
    if (plen > PROTO_BURROW_PATH_MAX)
        return -PROTO_ETOOLONG;
    const char *p = path + 1, *end = path + plen;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *se = slash != NULL ? slash : end;
        if (*nsegs == maxsegs)
            return -PROTO_ETOOLONG;
        long n = proto_pct_decode(p, (size_t)(se - p), dec + used, declen - used, false);
        if (n < 0)
            return n == -PROTO_ETOOLONG ? -PROTO_ETOOLONG : -EINVAL;
        for (long i = 0; i < n; i++)
            if ((unsigned char)dec[used + (size_t)i] < 0x20 || dec[used + (size_t)i] == 0x7f)
                return -EINVAL;
        segs[*nsegs].ptr = dec + used;
        segs[*nsegs].len = (size_t)n;
        (*nsegs)++;
        used += (size_t)n;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return 0;
}

int
shed_line_host_service(const char *host, const char *default_service, char out[SHED_NAME_MAX])
{
    if (host == NULL) {
        /* HTTP/1.1 requires Host; without one only a default service fits. */
        if (default_service == NULL || default_service[0] == '\0')
            return -EINVAL;
        goto fallback;
    }
    size_t len = strlen(host);
    /* Strip ":port" (not inside an IPv6 literal). */
    const char *colon = strrchr(host, ':');
    if (colon != NULL && host[0] != '[') {
        for (const char *p = colon + 1; *p != '\0'; p++)
            if (!isdigit((unsigned char)*p))
                return -EINVAL;
        len = (size_t)(colon - host);
    }
    static const char suffix[] = ".service";
    const size_t slen = sizeof(suffix) - 1;
    if (len > slen && strncasecmp(host + len - slen, suffix, slen) == 0) {
        size_t n = len - slen;
        /* A DNS wildcard (*.burrow.service) sends x.burrow.service here:
         * the service is the label just before ".service". */
        const char *dot = NULL;
        for (size_t i = n; i > 0 && dot == NULL; i--)
            if (host[i - 1] == '.')
                dot = host + i - 1;
        if (dot != NULL) {
            if (dot == host || dot[-1] == '.')
                return -EINVAL; /* an empty label */
            for (const char *p = host; p < dot; p++)
                if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
                    return -EINVAL;
            n -= (size_t)(dot + 1 - host);
            host = dot + 1;
        }
        if (n == 0 || n >= SHED_NAME_MAX)
            return -EINVAL;
        for (size_t i = 0; i < n; i++) {
            char ch = (char)tolower((unsigned char)host[i]);
            if (!(islower((unsigned char)ch) || isdigit((unsigned char)ch) || ch == '-' ||
                  ch == '_'))
                return -EINVAL;
            out[i] = ch;
        }
        out[n] = '\0';
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)host[i] <= 0x20 || host[i] == 0x7f)
            return -EINVAL;
fallback:
    if (default_service == NULL || default_service[0] == '\0')
        return -ENOENT;
    snprintf(out, SHED_NAME_MAX, "%s", default_service);
    return 0;
}

/* Decode a raw query key or value ('+' is a space, as proto/burrow reads
 * it) and append it percent-encoded. */
static long
put_qpart(char *buf, size_t len, size_t o, const char *s, size_t slen)
{
    char dec[PROTO_BURROW_PATH_MAX];
    size_t d = 0;
    while (slen > 0) {
        const char *plus = memchr(s, '+', slen);
        size_t chunk = plus != NULL ? (size_t)(plus - s) : slen;
        long n = proto_pct_decode(s, chunk, dec + d, sizeof(dec) - d, false);
        if (n < 0)
            return n;
        d += (size_t)n;
        if (plus == NULL)
            break;
        if (d >= sizeof(dec))
            return -PROTO_ETOOLONG;
        dec[d++] = ' ';
        slen -= chunk + 1;
        s = plus + 1;
    }
    long e = proto_pct_encode(dec, d, buf + o, len - o);
    if (e < 0)
        return e;
    return (long)o + e;
}

long
shed_line_location(char *buf, size_t len, const char *base, const struct proto_slice *segs,
                   size_t nsegs, const struct shed_query *q)
{
    size_t blen = strlen(base);
    if (blen + 1 >= len)
        return -PROTO_ETOOLONG;
    memcpy(buf, base, blen);
    size_t o = blen;
    for (size_t i = 0; i < nsegs; i++) {
        if (o + 2 >= len)
            return -PROTO_ETOOLONG;
        buf[o++] = '/';
        long e = proto_pct_encode(segs[i].ptr, segs[i].len, buf + o, len - o);
        if (e < 0)
            return e;
        o += (size_t)e;
    }
    for (size_t i = 0; q != NULL && i < q->n; i++) {
        if (o + 2 >= len)
            return -PROTO_ETOOLONG;
        buf[o++] = i == 0 ? '?' : '&';
        long e = put_qpart(buf, len, o, q->args[i].key, strlen(q->args[i].key));
        if (e < 0)
            return e;
        o = (size_t)e;
        if (q->args[i].val != NULL) {
            if (o + 2 >= len)
                return -PROTO_ETOOLONG;
            buf[o++] = '=';
            e = put_qpart(buf, len, o, q->args[i].val, strlen(q->args[i].val));
            if (e < 0)
                return e;
            o = (size_t)e;
        }
    }
    buf[o] = '\0';
    return (long)o;
}

void
shed_line_no_server(const struct shed_config *cfg, const struct registry_route *route,
                    enum shed_method m, const struct proto_slice *segs, size_t nsegs,
                    const struct shed_query *q, struct shed_answer *a)
{
    if (shed_cluster_escalate(cfg, route, m, segs, nsegs, q, a))
        return;
    a->retry_after = shed_line_retry_after(cfg);
    SHED_TEXT(a, 503, txt_no_server);
}

static bool
is_write(enum shed_method m)
{
    return m != SHED_M_GET && m != SHED_M_HEAD;
}

static void
redirect_code(const struct shed_config *cfg, enum shed_method m, struct shed_answer *a)
{
    a->status = is_write(m) ? cfg->code_other : cfg->code_get;
    a->body = NULL;
    a->body_len = 0;
}

/* Is ring member <idx> served at <hostport> ("host:port")? */
static bool
served_at(const struct registry_route *r, uint32_t idx, const char *hostport)
{
    char hp[SHED_SUSPECT_HOST_MAX];
    return shed_suspect_hostport(ring_member_at(r->ring, idx)->url, hp, sizeof(hp)) == 0 &&
           strcmp(hp, hostport) == 0;
}

uint32_t
shed_line_primary(const struct registry_route *r, uint32_t bucket)
{
    return shed_line_primary_avoid(r, bucket, NULL);
}

uint32_t
shed_line_primary_avoid(const struct registry_route *r, uint32_t bucket, const char *avoid)
{
    uint32_t row[RING_MAX_R];
    size_t n = ring_row(r->ring, bucket, row);
    uint32_t draining = RING_NONE;
    for (size_t i = 0; i < n; i++) {
        uint8_t st = atomic_load_explicit(&r->live[row[i]], memory_order_relaxed);
        if (avoid != NULL && st == REGISTRY_UP && served_at(r, row[i], avoid))
            continue;
        if (st == REGISTRY_UP)
            return row[i];
        if (st == REGISTRY_DRAINING && draining == RING_NONE)
            draining = row[i];
    }
    if (n == 0)
        return RING_NONE;
    uint32_t walk[WALK_MAX];
    size_t w = ring_walk(r->ring, bucket, walk, WALK_MAX);
    for (size_t i = n; i < w; i++)
        if (atomic_load_explicit(&r->live[walk[i]], memory_order_relaxed) == REGISTRY_UP &&
            (avoid == NULL || !served_at(r, walk[i], avoid)))
            return walk[i];
    return draining;
}

/* Redirect to <base> + the encoded <segs> + <q>: the list and lookup
 * redirects (no pin headers). */
static void
redirect_to(const struct shed_config *cfg, enum shed_method m, const char *base,
            const struct proto_slice *segs, size_t nsegs, const struct shed_query *q,
            struct shed_answer *a)
{
    long e = shed_line_location(a->location, sizeof(a->location), base, segs, nsegs, q);
    if (e < 0) {
        SHED_REFUSED(a, e, txt_bad_query);
        return;
    }
    a->location_len = (size_t)e;
    redirect_code(cfg, m, a);
}

/* The id of the first member of <bucket>'s row in <ring>, or NULL. */
static const char *
row_head(const struct ring *ring, uint32_t bucket)
{
    uint32_t row[RING_MAX_R];
    return ring_row(ring, bucket, row) > 0 ? ring_member_at(ring, row[0])->id : NULL;
}

bool
shed_line_unsettled(const struct registry_route *r, uint32_t bucket)
{
    if (!r->lookups)
        return false;
    if (r->settle != NULL && atomic_load_explicit(&r->settle->unsettled, memory_order_relaxed) != 0)
        return true;
    if (r->prev == NULL || ring_size(r->prev) == 0)
        return false;
    /* In the drain window: the bucket's owner changed with the generation. */
    const char *was = row_head(r->prev, bucket), *now = row_head(r->ring, bucket);
    return was != NULL && (now == NULL || strcmp(was, now) != 0);
}

/* Weighted random member that is up, or RING_NONE. */
static uint32_t
pick_weighted(const struct registry_route *r)
{
    size_t n = ring_size(r->ring);
    if (n == 0)
        return RING_NONE;
    /* Rejection sampling on weight: O(1) expected with even weights, and
     * bounded; a linear pass catches the case of few live members. */
    for (int tries = 0; tries < 16; tries++) {
        uint32_t i = (uint32_t)(shed_line_random() % n);
        const struct ring_member *m = ring_member_at(r->ring, i);
        if (atomic_load_explicit(&r->live[i], memory_order_relaxed) != REGISTRY_UP)
            continue;
        if (shed_line_random() % r->max_weight < m->weight)
            return i;
    }
    size_t start = (size_t)(shed_line_random() % n);
    for (size_t k = 0; k < n; k++) {
        uint32_t i = (uint32_t)((start + k) % n);
        if (atomic_load_explicit(&r->live[i], memory_order_relaxed) == REGISTRY_UP)
            return i;
    }
    return RING_NONE;
}

static void
route_any(const struct shed_config *cfg, const struct registry_route *r, enum shed_method m,
          const char *path, const struct shed_query *q, struct shed_answer *a)
{
    /* Split the raw path on '/', decode and re-encode every segment. */
    char dec[PROTO_BURROW_PATH_MAX];
    struct proto_slice segs[SHED_LINE_SEGS_MAX];
    size_t nsegs = 0;
    int rc = shed_line_split_path(path, dec, sizeof(dec), segs, SHED_LINE_SEGS_MAX, &nsegs);
    if (rc < 0) {
        SHED_REFUSED(a, rc, txt_bad_path);
        return;
    }
    uint32_t c1 = pick_weighted(r), c2 = pick_weighted(r);
    if (c1 == RING_NONE) {
        shed_line_no_server(cfg, r, m, segs, nsegs, q, a);
        return;
    }
    if (c2 != RING_NONE && c2 != c1) {
        /* Less loaded relative to its weight. */
        uint64_t l1 = atomic_load_explicit(&r->load[c1], memory_order_relaxed);
        uint64_t l2 = atomic_load_explicit(&r->load[c2], memory_order_relaxed);
        uint64_t w1 = ring_member_at(r->ring, c1)->weight;
        uint64_t w2 = ring_member_at(r->ring, c2)->weight;
        if (l2 * w1 < l1 * w2)
            c1 = c2;
    }
    atomic_fetch_add_explicit(&r->load[c1], 1, memory_order_relaxed);
    long e = shed_line_location(a->location, sizeof(a->location), ring_member_at(r->ring, c1)->url,
                                segs, nsegs, q);
    if (e < 0) {
        SHED_REFUSED(a, e, txt_bad_query);
        return;
    }
    a->location_len = (size_t)e;
    put_dec(a->generation, sizeof(a->generation), r->generation);
    redirect_code(cfg, m, a);
}

void
shed_line_route(const struct shed_config *cfg, const struct registry_view *view, enum shed_method m,
                const char *host, const char *path, const struct shed_query *q,
                struct shed_answer *a, unsigned *slot, enum shed_level *level)
{
    char svc[SHED_NAME_MAX];
    a->location_len = 0;
    a->bucket[0] = a->generation[0] = a->pin_ttl[0] = '\0';
    a->ring = NULL;
    a->retry_after = 0;
    a->stray_service = NULL;
    int rc = shed_line_host_service(host, cfg->default_service, svc);
    if (rc == -EINVAL) {
        SHED_TEXT(a, 400, txt_bad_host);
        return;
    }
    const struct registry_route *r = rc == 0 ? registry_route_find(view, svc, strlen(svc)) : NULL;
    if (r == NULL) {
        SHED_TEXT(a, 404, txt_unknown_service);
        return;
    }
    if (q->overflow) {
        SHED_TEXT(a, 400, txt_too_many_args);
        return;
    }
    if (m == SHED_M_OTHER) {
        SHED_TEXT(a, 405, txt_method);
        return;
    }
    *slot = r->slot;
    if (r->kind == SHED_KIND_ANY) {
        *level = SHED_LEVEL_ANY;
        route_any(cfg, r, m, path, q, a);
        return;
    }

    char buf[3 * PROTO_BURROW_ID_MAX + 3];
    struct proto_burrow_path bp;
    size_t plen = strlen(path);
    if (plen > PROTO_BURROW_PATH_MAX) {
        SHED_TEXT(a, 414, txt_too_long);
        return;
    }
    rc = proto_burrow_parse_path(path, plen, buf, sizeof(buf), &bp);
    if (rc == -PROTO_ENOTFOUND) {
        SHED_TEXT(a, 404, txt_not_found);
        return;
    }
    if (rc < 0) {
        SHED_REFUSED(a, rc, txt_bad_path);
        return;
    }
    /* Validate the query as Burrow reads it: a bad value is a 400 here,
     * not a surprise at the backend. */
    char qbuf[4 * PROTO_BURROW_ID_MAX];
    size_t qused = 0;
    struct proto_burrow_query bq;
    proto_burrow_query_init(&bq);
    for (size_t i = 0; i < q->n; i++) {
        const char *v = q->args[i].val != NULL ? q->args[i].val : "";
        rc = proto_burrow_query_set(&bq, q->args[i].key, strlen(q->args[i].key), v, strlen(v), qbuf,
                                    sizeof(qbuf), &qused);
        if (rc < 0) {
            SHED_TEXT(a, 400, txt_bad_query);
            return;
        }
    }
    if (bp.level == PROTO_BURROW_ROOT) {
        if (m != SHED_M_GET && m != SHED_M_HEAD) {
            SHED_TEXT(a, 405, txt_method);
            return;
        }
        a->status = 200;
        a->body = txt_root;
        a->body_len = sizeof(txt_root) - 1;
        a->content_type = "application/json";
        return;
    }
    static const struct proto_slice version = {PROTO_BURROW_VERSION,
                                               sizeof(PROTO_BURROW_VERSION) - 1};
    struct proto_slice segs[4] = {version, bp.account, bp.queue, bp.message};
    if (bp.level != PROTO_BURROW_MESSAGE) {
        *level = SHED_LEVEL_LIST;
        if (bp.level == PROTO_BURROW_ACCOUNTS && !cfg->list_all) {
            SHED_TEXT(a, 403, txt_list_all);
            return;
        }
        if (cfg->aggregator[0] == '\0' || shed_cluster_list_escalates(cfg, r)) {
            shed_line_no_server(cfg, r, m, segs, (size_t)bp.level, q, a);
            return;
        }
        redirect_to(cfg, m, cfg->aggregator, segs, (size_t)bp.level, q, a);
        return;
    }

    *level = SHED_LEVEL_MESSAGE;
    uint32_t bucket =
        ring_message_bucket(ring_config(r->ring), bp.account.ptr, bp.account.len, bp.queue.ptr,
                            bp.queue.len, bp.message.ptr, bp.message.len);
    uint32_t idx = shed_line_primary_avoid(r, bucket, q->avoid);
    if (q->avoid != NULL && is_write(m) && idx != shed_line_primary(r, bucket))
        a->stray_service = r->name;
    if (idx == RING_NONE) {
        shed_line_no_server(cfg, r, m, segs, 4, q, a);
        return;
    }
    if (m != SHED_M_PUT && cfg->aggregator[0] != '\0' &&
        (q->lookup || shed_line_unsettled(r, bucket))) {
        /* The message may live off its owner: the aggregator asks every
         * server it can be on (docs/reachability.md). */
        *level = SHED_LEVEL_LOOKUP;
        char base[SHED_URL_MAX + sizeof(SHED_AGG_LOOKUP_PREFIX)];
        snprintf(base, sizeof(base), "%s%s", cfg->aggregator, SHED_AGG_LOOKUP_PREFIX);
        redirect_to(cfg, m, base, segs, 4, q, a);
        return;
    }
    long e = shed_line_location(a->location, sizeof(a->location), ring_member_at(r->ring, idx)->url,
                                segs, 4, q);
    if (e < 0) {
        SHED_REFUSED(a, e, txt_bad_query);
        return;
    }
    a->location_len = (size_t)e;
    put_dec(a->bucket, sizeof(a->bucket), bucket);
    put_dec(a->generation, sizeof(a->generation), r->generation);
    put_dec(a->pin_ttl, sizeof(a->pin_ttl), r->pin_ttl_s);
    a->ring = r->ring_header;
    redirect_code(cfg, m, a);
}

static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct shed_query *q = cls;
    if (q->n == SHED_QUERY_ARGS) {
        q->overflow = true;
        return MHD_NO;
    }
    q->args[q->n].key = key;
    q->args[q->n].val = value;
    q->n++;
    return MHD_YES;
}

void
shed_line_query(struct MHD_Connection *conn, struct shed_query *q)
{
    q->n = 0;
    q->overflow = false;
    q->lookup = false;
    q->avoid = NULL;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, q);
}

/* A Shed-Failed: host:port report; only well-formed ones count. Returns
 * it, for this request to be routed around that host. */
static const char *
failed_report(struct shed_call *c)
{
    const char *v = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Shed-Failed");
    if (v == NULL)
        return NULL;
    size_t len = strlen(v);
    if (len == 0 || len >= SHED_SUSPECT_HOST_MAX)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)v[i]) && strchr(".:-[]", v[i]) == NULL)
            return NULL;
    shed_metrics_failed_report();
    shed_cluster_failed(c, v);
    return v;
}

bool
shed_line_handle(struct shed_call *c)
{
    /* Answer on the first call when a body is announced (Expect:
     * 100-continue never uploads), else on the second (keeps keep-alive). */
    if (shed_http_not_yet(c))
        return true;
    struct shed_query q;
    shed_line_query(c->conn, &q);
    q.lookup = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Shed-Lookup") != NULL;
    const char *host = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Host");
    struct shed_answer a;
    unsigned slot = 0;
    enum shed_level level = SHED_LEVEL_MESSAGE;
    q.avoid = failed_report(c);
    a.await_masters = false;
    shed_line_route(c->cfg, c->view, c->m, host, c->path, &q, &a, &slot, &level);
    if (a.await_masters && shed_cluster_park(c))
        return true; /* held until a master has acknowledged; routed again then */
    if (a.stray_service != NULL)
        registry_mark_moved(c->ctx->reg, a.stray_service, strlen(a.stray_service));
    if (a.location_len > 0)
        shed_metrics_redirect(slot, level, a.status);
    else
        shed_metrics_response(a.status);
    shed_http_answer(c->conn, &a);
    if (a.location_len > 0)
        shed_access_redirect(c, host, &a);
    return true;
}
