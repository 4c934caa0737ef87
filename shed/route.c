/* SPDX-License-Identifier: ISC */
/*
 * shed/route: the redirect path (see route.h for the map). The line role's
 * hot path, a message-level redirect, is: Host -> service, parse the raw
 * path into a stack buffer, bucket from the ring config, ring_row() into a
 * stack array, pick the first live member, write Location into the
 * answer's fixed buffer. No allocation, no lock (the view is read under
 * shed/rcu), no I/O.
 */
#include "shed/route.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "proto/hostport.h"
#include "proto/token.h"
#include "shed/etcd.h"
#include "shed/events.h"
#include "shed/hints.h"
#include "shed/master.h"
#include "shed/metrics.h"
#include "shed/sync.h"

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
static const char txt_no_cell[] = "no other cell can serve this request, retry later\n";
static const char txt_not_acked[] = "escalation pending: masters not yet updated, retry\n";
static const char txt_tok_missing[] = "escalation token required\n";
static const char txt_tok_malformed[] = "malformed escalation token\n";
static const char txt_tok_sig[] = "escalation token signature mismatch\n";
static const char txt_tok_expired[] = "escalation token expired\n";
static const char txt_tok_version[] = "unknown escalation token version\n";
static const char txt_tok_service[] = "escalation token is for another service\n";
static const char txt_bad[] = "bad request\n";

/* ---- shared steps ---- */

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
shed_answer_init(struct shed_answer *a)
{
    a->status = 0;
    a->body = NULL;
    a->body_len = 0;
    a->content_type = NULL;
    a->location_len = 0;
    a->bucket[0] = a->generation[0] = a->pin_ttl[0] = '\0';
    a->ring = NULL;
    a->retry_after = 0;
    a->await_masters = false;
    a->stray_service = NULL;
}

enum shed_method
shed_method_of(const char *m)
{
    switch (m[0]) {
    case 'G':
        return strcmp(m, "GET") == 0 ? SHED_M_GET : SHED_M_OTHER;
    case 'H':
        return strcmp(m, "HEAD") == 0 ? SHED_M_HEAD : SHED_M_OTHER;
    case 'P':
        if (strcmp(m, "PUT") == 0)
            return SHED_M_PUT;
        return strcmp(m, "POST") == 0 ? SHED_M_POST : SHED_M_OTHER;
    case 'D':
        return strcmp(m, "DELETE") == 0 ? SHED_M_DELETE : SHED_M_OTHER;
    default:
        return SHED_M_OTHER;
    }
}

bool
shed_same_url(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 0 && a[la - 1] == '/')
        la--;
    while (lb > 0 && b[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

uint64_t
shed_now_ms(void)
{
    return clock_mono_ms();
}

void
shed_route_refused(struct shed_answer *a, long rc, const char *body, size_t len)
{
    if (rc == -PROTO_ETOOLONG)
        SHED_TEXT(a, 414, txt_too_long);
    else
        shed_answer_text(a, 400, body, len);
}

/* Per-thread xorshift: jitter and the two random choices, no shared state. */
uint64_t
shed_route_random(void)
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
shed_route_retry_after(const struct shed_config *cfg)
{
    /* About one heartbeat interval or two, jittered so that clients turned
     * away together do not come back together. */
    uint64_t base = cfg->timings.heartbeat_interval_ms / 1000;
    if (base < 1)
        base = 1;
    return (unsigned)(base + shed_route_random() % (2 * base));
}

void
shed_route_redirect(const struct shed_config *cfg, enum shed_method m, struct shed_answer *a)
{
    a->status = shed_method_reads(m) ? cfg->code_get : cfg->code_other;
    a->body = NULL;
    a->body_len = 0;
}

int
shed_route_split_path(const char *path, char *dec, size_t declen, struct proto_slice *segs,
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
shed_route_host_service(const char *host, const char *default_service, char out[SHED_NAME_MAX])
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
shed_route_location(char *buf, size_t len, const char *base, const struct proto_slice *segs,
                    size_t nsegs, const struct shed_query *q, const char *skip)
{
    size_t blen = strlen(base), kept = 0;
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
        if (skip != NULL && strcmp(q->args[i].key, skip) == 0)
            continue;
        if (o + 2 >= len)
            return -PROTO_ETOOLONG;
        buf[o++] = kept++ == 0 ? '?' : '&';
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

/* <a> becomes a redirect to <base> + the encoded <segs> + the query (less
 * <skip>) + "<sep>shed_esc=<tok>" when <tok> is not NULL. 0, or -1 with
 * the refusal in <a>. */
static int
redirect_to(const struct shed_config *cfg, enum shed_method m, const char *base,
            const struct proto_slice *segs, size_t nsegs, const struct shed_query *q,
            const char *tok, struct shed_answer *a)
{
    long e = shed_route_location(a->location, sizeof(a->location), base, segs, nsegs, q,
                                 tok != NULL ? PROTO_TOKEN_PARAM : NULL);
    if (e < 0) {
        SHED_REFUSED(a, e, txt_bad_query);
        return -1;
    }
    size_t o = (size_t)e;
    if (tok != NULL) {
        size_t tl = strlen(tok);
        if (o + 1 + sizeof(PROTO_TOKEN_PARAM) + tl >= sizeof(a->location)) {
            SHED_TEXT(a, 414, txt_too_long);
            return -1;
        }
        o += (size_t)snprintf(a->location + o, sizeof(a->location) - o, "%c%s=%s",
                              memchr(a->location, '?', o) == NULL ? '?' : '&', PROTO_TOKEN_PARAM,
                              tok);
    }
    a->location_len = o;
    shed_route_redirect(cfg, m, a);
    return 0;
}

uint32_t
shed_route_bucket(const struct ring_config *cfg, const struct proto_burrow_path *p)
{
    char key[PROTO_BURROW_KEY_MAX];
    long k = proto_burrow_ring_key(p->queue.ptr, p->queue.len, p->message.ptr, p->message.len, key,
                                   sizeof(key));
    return k < 0 ? RING_NONE : ring_bucket(cfg, p->account.ptr, p->account.len, key, (size_t)k);
}

int
shed_route_target(enum shed_service_kind kind, const char *path, bool root_ok,
                  struct shed_target *t, struct shed_answer *a)
{
    int rc;

    t->kind = kind;
    t->klen = 0;
    if (kind == SHED_KIND_ANY) {
        t->level = SHED_LEVEL_ANY;
        rc = shed_route_split_path(path, t->dec, sizeof(t->dec), t->segs, SHED_ROUTE_SEGS_MAX,
                                   &t->nsegs);
        if (rc < 0) {
            SHED_REFUSED(a, rc, txt_bad_path);
            return -1;
        }
        return 0;
    }
    size_t plen = strlen(path);
    if (plen > PROTO_BURROW_PATH_MAX) {
        SHED_TEXT(a, 414, txt_too_long);
        return -1;
    }
    rc = proto_burrow_parse_path(path, plen, t->dec, sizeof(t->dec), &t->bp);
    if (rc == -PROTO_ENOTFOUND || (rc == 0 && t->bp.level == PROTO_BURROW_ROOT && !root_ok)) {
        SHED_TEXT(a, 404, txt_not_found);
        return -1;
    }
    if (rc < 0) {
        SHED_REFUSED(a, rc, txt_bad_path);
        return -1;
    }
    static const struct proto_slice version = {PROTO_BURROW_VERSION,
                                               sizeof(PROTO_BURROW_VERSION) - 1};
    t->segs[0] = version;
    t->segs[1] = t->bp.account;
    t->segs[2] = t->bp.queue;
    t->segs[3] = t->bp.message;
    t->nsegs = (size_t)t->bp.level;
    t->level = t->bp.level == PROTO_BURROW_MESSAGE ? SHED_LEVEL_MESSAGE : SHED_LEVEL_LIST;
    if (t->level == SHED_LEVEL_MESSAGE) {
        long k = proto_burrow_ring_key(t->bp.queue.ptr, t->bp.queue.len, t->bp.message.ptr,
                                       t->bp.message.len, t->key, sizeof(t->key));
        if (k < 0) {
            SHED_TEXT(a, 414, txt_too_long);
            return -1;
        }
        t->klen = (size_t)k;
    }
    return 0;
}

/* ---- line role ---- */

/* Is ring member <idx> served at <hostport> ("host:port")? */
static bool
served_at(const struct registry_route *r, uint32_t idx, const char *hostport)
{
    char hp[PROTO_HOSTPORT_MAX];
    return proto_hostport(ring_member_at(r->ring, idx)->url, hp, sizeof(hp)) == 0 &&
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
        uint32_t i = (uint32_t)(shed_route_random() % n);
        const struct ring_member *m = ring_member_at(r->ring, i);
        if (atomic_load_explicit(&r->live[i], memory_order_relaxed) != REGISTRY_UP)
            continue;
        if (shed_route_random() % r->max_weight < m->weight)
            return i;
    }
    size_t start = (size_t)(shed_route_random() % n);
    for (size_t k = 0; k < n; k++) {
        uint32_t i = (uint32_t)((start + k) % n);
        if (atomic_load_explicit(&r->live[i], memory_order_relaxed) == REGISTRY_UP)
            return i;
    }
    return RING_NONE;
}

static void
route_any(const struct shed_router *rt, const struct registry_route *r,
          const struct shed_request *req, const struct shed_target *t, struct shed_answer *a)
{
    uint32_t c1 = pick_weighted(r), c2 = pick_weighted(r);
    if (c1 == RING_NONE) {
        shed_route_escalate(rt, r, req, t, a);
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
    if (redirect_to(rt->cfg, req->m, ring_member_at(r->ring, c1)->url, t->segs, t->nsegs, req->q,
                    NULL, a) == 0)
        put_dec(a->generation, sizeof(a->generation), r->generation);
}

/* Validate the query as Burrow reads it: a bad value is a 400 here, not a
 * surprise at the backend. 0 or -1 with the 400 in <a>. */
static int
burrow_query_ok(const struct shed_query *q, struct shed_answer *a)
{
    char qbuf[4 * PROTO_BURROW_ID_MAX];
    size_t qused = 0;
    struct proto_burrow_query bq;
    proto_burrow_query_init(&bq);
    for (size_t i = 0; i < q->n; i++) {
        const char *v = q->args[i].val != NULL ? q->args[i].val : "";
        if (proto_burrow_query_set(&bq, q->args[i].key, strlen(q->args[i].key), v, strlen(v), qbuf,
                                   sizeof(qbuf), &qused) < 0) {
            SHED_TEXT(a, 400, txt_bad_query);
            return -1;
        }
    }
    return 0;
}

void
shed_line_route(const struct shed_router *rt, const struct shed_request *req, struct shed_answer *a,
                unsigned *slot, enum shed_level *level)
{
    const struct shed_config *cfg = rt->cfg;
    const struct shed_query *q = req->q;
    struct shed_target t;

    shed_answer_init(a);
    int rc = shed_route_host_service(req->host, cfg->default_service, t.service);
    if (rc == -EINVAL) {
        SHED_TEXT(a, 400, txt_bad_host);
        return;
    }
    const struct registry_route *r =
        rc == 0 ? registry_route_find(rt->view, t.service, strlen(t.service)) : NULL;
    if (r == NULL) {
        SHED_TEXT(a, 404, txt_unknown_service);
        return;
    }
    if (q->overflow) {
        SHED_TEXT(a, 400, txt_too_many_args);
        return;
    }
    if (req->m == SHED_M_OTHER) {
        SHED_TEXT(a, 405, txt_method);
        return;
    }
    *slot = r->slot;
    if (shed_route_target(r->kind, req->path, true, &t, a) < 0)
        return;
    *level = t.level;
    if (t.kind == SHED_KIND_ANY) {
        route_any(rt, r, req, &t, a);
        return;
    }
    if (burrow_query_ok(q, a) < 0)
        return;
    if (t.bp.level == PROTO_BURROW_ROOT) {
        if (!shed_method_reads(req->m)) {
            SHED_TEXT(a, 405, txt_method);
            return;
        }
        a->status = 200;
        a->body = txt_root;
        a->body_len = sizeof(txt_root) - 1;
        a->content_type = "application/json";
        return;
    }
    if (t.level == SHED_LEVEL_LIST) {
        if (t.bp.level == PROTO_BURROW_ACCOUNTS && !cfg->list_all) {
            SHED_TEXT(a, 403, txt_list_all);
            return;
        }
        if (cfg->aggregator[0] == '\0' || shed_route_list_escalates(rt, r))
            shed_route_escalate(rt, r, req, &t, a);
        else
            redirect_to(cfg, req->m, cfg->aggregator, t.segs, t.nsegs, q, NULL, a);
        return;
    }

    uint32_t bucket =
        ring_bucket(ring_config(r->ring), t.bp.account.ptr, t.bp.account.len, t.key, t.klen);
    uint32_t idx = shed_line_primary_avoid(r, bucket, q->avoid);
    if (q->avoid != NULL && !shed_method_reads(req->m) && idx != shed_line_primary(r, bucket))
        a->stray_service = r->name;
    if (idx == RING_NONE) {
        shed_route_escalate(rt, r, req, &t, a);
        return;
    }
    if (req->m != SHED_M_PUT && cfg->aggregator[0] != '\0' &&
        (q->lookup || shed_line_unsettled(r, bucket))) {
        /* The message may live off its owner: the aggregator asks every
         * server it can be on (docs/reachability.md). */
        *level = SHED_LEVEL_LOOKUP;
        char base[SHED_URL_MAX + sizeof(SHED_AGG_LOOKUP_PREFIX)];
        snprintf(base, sizeof(base), "%s%s", cfg->aggregator, SHED_AGG_LOOKUP_PREFIX);
        redirect_to(cfg, req->m, base, t.segs, t.nsegs, q, NULL, a);
        return;
    }
    if (redirect_to(cfg, req->m, ring_member_at(r->ring, idx)->url, t.segs, t.nsegs, q, NULL, a) <
        0)
        return;
    put_dec(a->bucket, sizeof(a->bucket), bucket);
    put_dec(a->generation, sizeof(a->generation), r->generation);
    put_dec(a->pin_ttl, sizeof(a->pin_ttl), r->pin_ttl_s);
    a->ring = r->ring_header;
}

/* ---- escalation ---- */

static void
no_cell(const struct shed_config *cfg, struct shed_answer *a)
{
    SHED_TEXT(a, 503, txt_no_cell);
    a->retry_after = shed_route_retry_after(cfg);
}

/* Seconds since the epoch for token expiry: the router's, or the wall
 * clock read now (only escalations and the master role need it, never a
 * plain redirect). */
static uint64_t
unix_now(const struct shed_router *rt)
{
    return rt->unix_s != 0 ? rt->unix_s : clock_real_ns() / 1000000000u;
}

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

/* Verify the request's token, if any, for <service> (NULL: any). 1
 * (verified, in *t), 0 (none), or <0 with a 400 already in <a>. */
static int
token_from_query(const struct shed_router *rt, const struct shed_query *q, const char *service,
                 struct proto_token *t, struct shed_answer *a)
{
    char raw[PROTO_TOKEN_ENC_MAX + 8];
    size_t len = 0;
    int rc = token_arg(q, raw, sizeof(raw), &len);

    if (rc == 0)
        return 0;
    if (rc > 0)
        rc = proto_token_decode(raw, len, rt->cfg->credential, strlen(rt->cfg->credential),
                                unix_now(rt), t);
    if (rc < 0) {
        log_debug("route: token refused: %s", proto_token_strerror(rc));
        token_error(a, rc);
        return rc;
    }
    if (service != NULL && strcmp(t->service, service) != 0) {
        SHED_TEXT(a, 400, txt_tok_service);
        return -EINVAL;
    }
    return 1;
}

bool
shed_route_can_escalate(const struct shed_router *rt)
{
    const struct shed_escalator *esc = rt->esc;
    return esc != NULL && ((rt->cfg->nmasters > 0 && esc->sync != NULL) || esc->master != NULL);
}

bool
shed_route_list_escalates(const struct shed_router *rt, const struct registry_route *r)
{
    if (!shed_route_can_escalate(rt))
        return false;
    size_t n = ring_size(r->ring);
    for (size_t i = 0; i < n; i++) {
        uint8_t st = atomic_load_explicit(&r->live[i], memory_order_relaxed);
        if (st == REGISTRY_UP || st == REGISTRY_DRAINING)
            return false;
    }
    return true;
}

/* Remember an escalated PUT of message <t> for its home cell, the token's
 * first (shed/hints). */
static void
hint(const struct shed_escalator *esc, const struct proto_token *tok, const struct shed_target *t,
     const char *url, uint64_t now_ms)
{
    char path[PROTO_BURROW_PATH_MAX + 1];

    if ((esc->hints == NULL && esc->etcd_hints == NULL) || tok->ncells == 0 ||
        t->level != SHED_LEVEL_MESSAGE ||
        shed_route_location(path, sizeof(path), "", t->segs, t->nsegs, NULL, NULL) < 0)
        return;
    if (esc->etcd_hints != NULL) { /* the home cell reads them from etcd */
        if (shed_etcd_hint_add(esc->etcd_hints, tok->cells[0], t->service, path, url, now_ms) < 0)
            log_debug("route: master: a hint of cell %s not queued for etcd", tok->cells[0]);
        return;
    }
    if (shed_hints_add(esc->hints, tok->cells[0], t->service, path, url, now_ms) < 0)
        log_warnx("route: master: no memory for a hint of cell %s", tok->cells[0]);
}

/* The master's choice for <t> with verified token <tok> (this cell and
 * every visited one excluded by the token): a redirect to the chosen
 * cell's server or aggregator, the token extended with that cell. */
static void
master_pick(const struct shed_router *rt, const struct shed_request *req,
            const struct shed_target *t, struct proto_token *tok, struct shed_answer *a)
{
    const struct shed_config *cfg = rt->cfg;
    const struct shed_escalator *esc = rt->esc;
    struct shed_master_req mreq = {
        .service = t->service, .token = tok, .now_ms = req->now_ms, .rnd = shed_route_random()};
    struct shed_master_pick pick;
    char enc[PROTO_TOKEN_ENC_MAX];

    if (t->level == SHED_LEVEL_MESSAGE) {
        mreq.account = t->bp.account.ptr;
        mreq.alen = t->bp.account.len;
        mreq.key = t->key;
        mreq.klen = t->klen;
    } else {
        mreq.list = t->level == SHED_LEVEL_LIST;
    }
    int rc = shed_master_route(esc->master, &mreq, &pick);
    if (rc < 0) {
        log_debug("route: master: service=%s hops=%u cells=%u: %s", t->service, tok->hops,
                  tok->ncells, rc == -ELOOP ? "too many hops" : "no cell");
        shed_events_add(esc->events, SHED_EV_MASTER, "service=%s hops=%u: %s, 503", t->service,
                        tok->hops, rc == -ELOOP ? "too many hops" : "no other cell can serve");
        no_cell(cfg, a);
        return;
    }
    /* The chosen cell joins the visited list too: if its server turns out
     * to be gone, the client comes back with a token that excludes it. */
    (void)proto_token_add_cell(tok, pick.cell);
    if (proto_token_encode(tok, cfg->credential, strlen(cfg->credential), enc, sizeof(enc)) < 0) {
        SHED_TEXT(a, 414, txt_too_long);
        return;
    }
    if (redirect_to(cfg, req->m, pick.url, t->segs, t->nsegs, req->q, enc, a) < 0)
        return;
    if (t->level == SHED_LEVEL_MESSAGE) {
        if (req->m == SHED_M_PUT)
            hint(esc, tok, t, pick.url, req->now_ms);
        put_dec(a->bucket, sizeof(a->bucket), pick.bucket);
        put_dec(a->pin_ttl, sizeof(a->pin_ttl), cfg->timings.pin_lifetime_ms / 1000);
    }
    log_debug("route: master: service=%s -> cell=%s %s", t->service, pick.cell, pick.url);
    shed_events_add(esc->events, SHED_EV_MASTER, "service=%s hops=%u to cell %s %s", t->service,
                    tok->hops, pick.cell, pick.url);
}

void
shed_route_escalate(const struct shed_router *rt, const struct registry_route *r,
                    const struct shed_request *req, const struct shed_target *t,
                    struct shed_answer *a)
{
    const struct shed_config *cfg = rt->cfg;
    const struct shed_escalator *esc = rt->esc;
    struct proto_token tok;
    char enc[PROTO_TOKEN_ENC_MAX];

    if (!shed_route_can_escalate(rt)) {
        a->retry_after = shed_route_retry_after(cfg);
        SHED_TEXT(a, 503, txt_no_server);
        return;
    }
    int rc = token_from_query(rt, req->q, r->name, &tok, a);
    if (rc < 0)
        return;
    if (rc == 0 && proto_token_init(&tok, r->name, unix_now(rt) + SHED_ROUTE_TOKEN_TTL_S,
                                    shed_route_random()) < 0) {
        SHED_TEXT(a, 400, txt_bad);
        return;
    }
    /* Extend, never reset: this cell joins the visited list. */
    if (proto_token_add_cell(&tok, cfg->cell) < 0 || tok.hops >= SHED_MASTER_MAX_HOPS) {
        no_cell(cfg, a);
        return;
    }
    tok.hops++;
    if (esc->master != NULL) {
        /* A process that is line and master at once decides in place:
         * sending the request to itself through a redirect would only cost
         * the client a hop. */
        master_pick(rt, req, t, &tok, a);
        a->generation[0] = '\0';
        a->ring = NULL;
        return;
    }
    /* Ordering rule: only a master that has acknowledged the change that
     * emptied this service here may get the request. Never wait on the
     * request path: the sync thread is kicked and the client retries. */
    uint64_t seq = registry_escalation_seq(esc->reg, r->name, r->name_len);
    char murl[SHED_URL_MAX];
    if (shed_sync_pick_master(esc->sync, seq, 0, shed_route_random(), murl, sizeof(murl)) < 0) {
        a->await_masters = true; /* the front end may hold it: shed/park */
        a->retry_after = 1;
        SHED_TEXT(a, 503, txt_not_acked);
        return;
    }
    if (proto_token_encode(&tok, cfg->credential, strlen(cfg->credential), enc, sizeof(enc)) < 0) {
        SHED_TEXT(a, 414, txt_too_long);
        return;
    }
    if (redirect_to(cfg, req->m, murl, t->segs, t->nsegs, req->q, enc, a) < 0)
        return;
    log_debug("route: escalating service=%s hops=%u to %s", r->name, tok.hops, murl);
    shed_events_add(esc->events, SHED_EV_ESCALATED, "service=%s hops=%u to master %s", r->name,
                    tok.hops, murl);
}

/* ---- master role ---- */

void
shed_master_route_request(const struct shed_router *rt, const struct shed_request *req,
                          struct shed_answer *a, unsigned *slot, enum shed_level *level)
{
    const struct shed_config *cfg = rt->cfg;
    struct shed_target t;
    struct proto_token tok;

    shed_answer_init(a);
    int rc = shed_route_host_service(req->host, cfg->default_service, t.service);
    if (rc == -EINVAL) {
        SHED_TEXT(a, 400, txt_bad_host);
        return;
    }
    /* A client that followed the line shed's redirect names the master's
     * address in Host, not NAME.service: without a default service, the
     * verified token says which service it is. */
    bool by_token = rc == -ENOENT;
    const struct shed_service_config *sc =
        rc == 0 ? shed_config_service(cfg, t.service, strlen(t.service)) : NULL;
    if (sc == NULL && !by_token) {
        SHED_TEXT(a, 404, txt_unknown_service);
        return;
    }
    if (req->q->overflow) {
        SHED_TEXT(a, 400, txt_too_many_args);
        return;
    }
    if (req->m == SHED_M_OTHER) {
        SHED_TEXT(a, 405, txt_method);
        return;
    }
    rc = token_from_query(rt, req->q, by_token ? NULL : t.service, &tok, a);
    if (rc < 0)
        return;
    if (rc == 0) {
        SHED_TEXT(a, 400, txt_tok_missing);
        return;
    }
    if (by_token) {
        snprintf(t.service, sizeof(t.service), "%s", tok.service);
        sc = shed_config_service(cfg, t.service, strlen(t.service));
        if (sc == NULL) {
            SHED_TEXT(a, 404, txt_unknown_service);
            return;
        }
    }
    const struct registry_route *r =
        rt->view != NULL ? registry_route_find(rt->view, t.service, strlen(t.service)) : NULL;
    *slot = r != NULL ? r->slot : SHED_METRICS_SLOTS - 1;
    if (shed_route_target(sc->kind, req->path, false, &t, a) < 0)
        return;
    *level = t.level;
    master_pick(rt, req, &t, &tok, a);
}
