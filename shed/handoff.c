/* SPDX-License-Identifier: ISC */
/*
 * shed/handoff: see handoff.h. One thread, one libcurl easy handle (its
 * connection cache keeps one keep-alive connection per backend), blocking
 * calls with the aggregator's backend timeout; every answer it reads is
 * bounded by HANDOFF_BODY_MAX.
 */
#include "shed/handoff.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/burrow.h"
#include "proto/token.h"
#include "ring/ring.h"
#include "shed/cluster.h"
#include "shed/etcd.h"
#include "shed/hints.h"
#include "shed/rcu.h"
#include "shed/registry.h"
#include "shed/route.h"

#define HANDOFF_BODY_MAX (16u << 20) /* largest answer read (a page of ids, a body) */
#define HANDOFF_PAGE     500         /* message ids asked per list call */
#define HANDOFF_SERVERS  4096        /* servers swept per service */
#define HANDOFF_SVC_MAX  SHED_MAX_SERVICES
#define HANDOFF_URL_MAX  (SHED_URL_MAX + 3 * 3 * PROTO_BURROW_ID_MAX + 128)
#define HANDOFF_TICK_MS  200

struct buf {
    char *p;
    size_t len, cap;
    bool over;
};

struct server {
    char id[RING_ID_MAX + 1];
    char url[SHED_URL_MAX];
};

/* The counters of struct shed_handoff_stats. */
struct handoff_counters {
    _Atomic uint64_t sweeps, moved, dropped, undone, errors, last_moved, abandoned;
    _Atomic uint64_t home_ms; /* wall ms of the last sweep that found everything home */
    _Atomic uint64_t last_sweep_us, last_sweep_msgs; /* duration and messages seen */
};

struct shed_handoff {
    struct shed_daemon *ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    CURL *curl;
    struct buf resp;
    struct server *servers;
    char svc[SHED_NAME_MAX];
    long timeout_ms;
    uint64_t moved_this_sweep, seen_this_sweep;
    uint64_t pace_start, pace_n;
    uint64_t pass_sig; /* view_sig() when this sweep or hint pass began */
    bool unsettled;    /* the view changed since: decide nothing more */
    struct handoff_counters n;
};

void
shed_handoff_stats(const struct shed_handoff *h, struct shed_handoff_stats *out)
{
    const struct handoff_counters *n = &h->n;

    out->sweeps = atomic_load(&n->sweeps);
    out->moved = atomic_load(&n->moved);
    out->dropped = atomic_load(&n->dropped);
    out->undone = atomic_load(&n->undone);
    out->abandoned = atomic_load(&n->abandoned);
    out->errors = atomic_load(&n->errors);
    out->last_sweep_moved = atomic_load(&n->last_moved);
    out->home_ms = atomic_load(&n->home_ms);
    out->last_sweep_us = atomic_load(&n->last_sweep_us);
    out->last_sweep_msgs = atomic_load(&n->last_sweep_msgs);
}

size_t
shed_handoff_stats_text(const struct shed_handoff_stats *s, char *buf, size_t len)
{
    int n;

    if (len == 0)
        return 0;
    n = snprintf(buf, len,
                 "# HELP shed_handoff_sweeps_total Handoff sweeps over every server.\n"
                 "# TYPE shed_handoff_sweeps_total counter\n"
                 "shed_handoff_sweeps_total %" PRIu64 "\n"
                 "# HELP shed_handoff_moved_total Messages moved to their owner.\n"
                 "# TYPE shed_handoff_moved_total counter\n"
                 "shed_handoff_moved_total %" PRIu64 "\n"
                 "# HELP shed_handoff_dropped_total Stray copies deleted because the owner "
                 "had the message.\n"
                 "# TYPE shed_handoff_dropped_total counter\n"
                 "shed_handoff_dropped_total %" PRIu64 "\n"
                 "# HELP shed_handoff_undone_total Moves undone because a client deleted the "
                 "message meanwhile.\n"
                 "# TYPE shed_handoff_undone_total counter\n"
                 "shed_handoff_undone_total %" PRIu64 "\n"
                 "# HELP shed_handoff_abandoned_total Sweeps stopped because membership "
                 "changed during them (the next one waits for the change to settle).\n"
                 "# TYPE shed_handoff_abandoned_total counter\n"
                 "shed_handoff_abandoned_total %" PRIu64 "\n"
                 "# HELP shed_handoff_errors_total Handoff calls that failed (retried at the "
                 "next sweep).\n"
                 "# TYPE shed_handoff_errors_total counter\n"
                 "shed_handoff_errors_total %" PRIu64 "\n"
                 "# HELP shed_handoff_last_sweep_moved Messages the last sweep moved or "
                 "dropped (0: everything was home).\n"
                 "# TYPE shed_handoff_last_sweep_moved gauge\n"
                 "shed_handoff_last_sweep_moved %" PRIu64 "\n"
                 "# HELP shed_handoff_home_timestamp_seconds When a sweep last found every "
                 "message home.\n"
                 "# TYPE shed_handoff_home_timestamp_seconds gauge\n"
                 "shed_handoff_home_timestamp_seconds %.3f\n"
                 "# HELP shed_handoff_last_sweep_seconds How long the last sweep took.\n"
                 "# TYPE shed_handoff_last_sweep_seconds gauge\n"
                 "shed_handoff_last_sweep_seconds %.6f\n"
                 "# HELP shed_handoff_last_sweep_messages Messages the last sweep looked at.\n"
                 "# TYPE shed_handoff_last_sweep_messages gauge\n"
                 "shed_handoff_last_sweep_messages %" PRIu64 "\n",
                 s->sweeps, s->moved, s->dropped, s->undone, s->abandoned, s->errors,
                 s->last_sweep_moved, (double)s->home_ms / 1000.0, (double)s->last_sweep_us / 1e6,
                 s->last_sweep_msgs);
    if (n < 0)
        return 0;
    return (size_t)n < len ? (size_t)n : len - 1;
}

/* ------------------------------------------------------------- HTTP */

static size_t
on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    int rc = buf_append(&b->p, &b->len, &b->cap, HANDOFF_BODY_MAX - 1, ptr, n);

    b->over |= rc == -E2BIG;
    return rc == 0 ? n : 0; /* 0 aborts the transfer */
}

/* One call; the answer is in h->resp. The HTTP status, or 0 when there is
 * none (unreachable, timed out, over HANDOFF_BODY_MAX). */
static long
call(struct shed_handoff *h, const char *method, const char *url, const char *body, size_t blen,
     const char *auth)
{
    struct curl_slist *hdrs = NULL;
    char authz[SHED_CREDENTIAL_MAX + 32];
    long status = 0;
    CURLcode rc;

    h->resp.len = 0;
    h->resp.over = false;
    if (h->resp.p != NULL)
        h->resp.p[0] = '\0';
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h->curl, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    if (body != NULL) {
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    } else {
        curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    if (auth != NULL) {
        snprintf(authz, sizeof(authz), "Authorization: Bearer %s", auth);
        hdrs = curl_slist_append(hdrs, authz);
    }
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hdrs);
    rc = curl_easy_perform(h->curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, NULL);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK || h->resp.over) {
        atomic_fetch_add(&h->n.errors, 1);
        log_debug("handoff: %s %s: %s", method, url,
                  h->resp.over ? "answer too long" : curl_easy_strerror(rc));
        return 0;
    }
    return status;
}

/* "<base>/v1.0[/a[/q[/m]]][?query]" with every id percent-encoded. */
static int
url_of(char *out, size_t cap, const char *base, const struct proto_slice *ids, size_t nids,
       const char *query)
{
    int n = snprintf(out, cap, "%s/v1.0", base);
    size_t o;

    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    o = (size_t)n;
    for (size_t i = 0; i < nids; i++) {
        long w;

        if (o + 2 >= cap)
            return -ENAMETOOLONG;
        out[o++] = '/';
        w = proto_pct_encode(ids[i].ptr, ids[i].len, out + o, cap - o);
        if (w < 0)
            return -ENAMETOOLONG;
        o += (size_t)w;
    }
    n = snprintf(out + o, cap - o, "%s%s", query[0] != '\0' ? "?" : "", query);
    return n < 0 || (size_t)n >= cap - o ? -ENAMETOOLONG : 0;
}

/* ------------------------------------------------------------ pacing */

static bool
stopping(struct shed_handoff *h)
{
    bool s;

    pthread_mutex_lock(&h->mu);
    s = h->stop;
    pthread_mutex_unlock(&h->mu);
    return s;
}

/* Sleep <ms> unless stopped; true when stopped. */
static bool
nap(struct shed_handoff *h, uint64_t ms)
{
    struct timespec ts;
    bool s;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->mu);
    if (!h->stop)
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    s = h->stop;
    pthread_mutex_unlock(&h->mu);
    return s;
}

/* At most HANDOFF_MOVES_PER_S moves a second. */
static void
pace(struct shed_handoff *h)
{
    uint64_t now = clock_mono_ms();

    if (now - h->pace_start >= 1000) {
        h->pace_start = now;
        h->pace_n = 0;
    }
    if (++h->pace_n >= HANDOFF_MOVES_PER_S) {
        nap(h, 1000 - (now - h->pace_start));
        h->pace_start = clock_mono_ms();
        h->pace_n = 0;
    }
}

/* ------------------------------------------------------------ owners */

/* A number that changes with every liveness change, restart or generation
 * of any Burrow service of view <v>. */
static uint64_t
sig_of(const struct registry_view *v)
{
    uint64_t sig = 0;

    for (size_t i = 0; i < v->nroutes; i++) {
        const struct registry_route *r = &v->routes[i];

        if (r->kind != SHED_KIND_BURROW)
            continue;
        sig = sig * 1000003u + r->generation;
        if (r->settle != NULL)
            sig = sig * 1000003u + atomic_load(&r->settle->changes);
    }
    return sig;
}

/* True once the view moved since the pass began (h->pass_sig). Every
 * owner is decided on a view that has settled (HANDOFF_SETTLE_MS: the line
 * sheds route on it); a pass that outlives its view (a server that stopped
 * answering mid-sweep holds a call up to the backend timeout) would decide
 * on a view nobody routes on any more, moving a message off a server that
 * is coming back only to move it back later. So it stops, and the next
 * pass waits for the new view to settle. */
static bool
unsettled(struct shed_handoff *h)
{
    if (!h->unsettled) {
        unsigned t = shed_rcu_enter(registry_rcu(h->ctx->reg));
        h->unsettled = sig_of(registry_view(h->ctx->reg)) != h->pass_sig;
        shed_rcu_leave(registry_rcu(h->ctx->reg), t);
    }
    return h->unsettled;
}

/* The url of the owner of message <ids> (account, queue, message) of
 * service h->svc into <url>: the server a PUT goes to, when it is up (a
 * draining or suspect owner takes nothing). False when there is none. */
static bool
owner_of(struct shed_handoff *h, const struct proto_slice *ids, char *url, size_t cap)
{
    unsigned t = shed_rcu_enter(registry_rcu(h->ctx->reg));
    const struct registry_view *v = registry_view(h->ctx->reg);
    const struct registry_route *r = registry_route_find(v, h->svc, strlen(h->svc));
    bool ok = false;

    if (r != NULL && r->kind == SHED_KIND_BURROW && ring_size(r->ring) > 0) {
        struct proto_burrow_path p = {
            .level = PROTO_BURROW_MESSAGE, .account = ids[0], .queue = ids[1], .message = ids[2]};
        uint32_t b = shed_route_bucket(ring_config(r->ring), &p);
        uint32_t idx = b == RING_NONE ? RING_NONE : shed_line_primary(r, b);

        if (idx != RING_NONE && atomic_load(&r->live[idx]) == REGISTRY_UP) {
            snprintf(url, cap, "%s", ring_member_at(r->ring, idx)->url);
            ok = true;
        }
    }
    shed_rcu_leave(registry_rcu(h->ctx->reg), t);
    return ok;
}

/* Copy the servers of service h->svc that hold data and answer: members
 * of the current ring that are up or draining. */
static size_t
servers_of(struct shed_handoff *h)
{
    unsigned t = shed_rcu_enter(registry_rcu(h->ctx->reg));
    const struct registry_view *v = registry_view(h->ctx->reg);
    const struct registry_route *r = registry_route_find(v, h->svc, strlen(h->svc));
    size_t n = 0;

    for (uint32_t i = 0; r != NULL && i < ring_size(r->ring) && n < HANDOFF_SERVERS; i++) {
        uint8_t st = atomic_load(&r->live[i]);

        if (st != REGISTRY_UP && st != REGISTRY_DRAINING)
            continue;
        snprintf(h->servers[n].id, sizeof(h->servers[n].id), "%s", ring_member_at(r->ring, i)->id);
        snprintf(h->servers[n].url, sizeof(h->servers[n].url), "%s",
                 ring_member_at(r->ring, i)->url);
        n++;
    }
    shed_rcu_leave(registry_rcu(h->ctx->reg), t);
    return n;
}

/* ------------------------------------------------------------- moves */

/* Move message <ids> with the remaining <ttl> and <hide> from <from> to
 * <to> (see handoff.h for the steps). <stamp> > 0, the message's creation
 * stamp at <from>, goes with it (shed_stamp=, docs/aggregator.md), so that
 * it keeps its place in the global order. */
static void
move(struct shed_handoff *h, const char *from, const char *to, const struct proto_slice *ids,
     long long ttl, long long hide, long long stamp)
{
    char ufrom[HANDOFF_URL_MAX], uto[HANDOFF_URL_MAX], q[96];
    char *body;
    size_t blen;
    long st;

    pace(h);
    if (unsettled(h))
        return;
    if (url_of(uto, sizeof(uto), to, ids, 3, "detail=id") < 0 ||
        url_of(ufrom, sizeof(ufrom), from, ids, 3, "detail=body") < 0)
        return;
    st = call(h, "GET", uto, NULL, 0, NULL);
    if (st == 0)
        return;
    if (st == 200) {
        /* The owner has it: written there after the change, so newer. */
        url_of(ufrom, sizeof(ufrom), from, ids, 3, "");
        if (call(h, "DELETE", ufrom, NULL, 0, NULL) / 100 == 2) {
            atomic_fetch_add(&h->n.dropped, 1);
            h->moved_this_sweep++;
        }
        return;
    }
    st = call(h, "GET", ufrom, NULL, 0, NULL);
    if (st != 200)
        return; /* gone meanwhile (deleted, expired) or unreachable */
    blen = h->resp.len;
    body = malloc(blen + 1);
    if (body == NULL)
        return;
    memcpy(body, h->resp.p != NULL ? h->resp.p : "", blen);
    snprintf(q, sizeof(q), "ttl=%lld&hide=%lld", ttl > 0 ? ttl : 0, hide > 0 ? hide : 0);
    if (stamp > 0)
        snprintf(q + strlen(q), sizeof(q) - strlen(q), "&shed_stamp=%lld", stamp);
    url_of(uto, sizeof(uto), to, ids, 3, q);
    st = call(h, "PUT", uto, body, blen, NULL);
    free(body);
    if (st / 100 != 2) {
        if (st != 0)
            atomic_fetch_add(&h->n.errors, 1);
        log_info("handoff: service=%s PUT to %s failed (%ld), kept at %s", h->svc, to, st, from);
        return;
    }
    url_of(ufrom, sizeof(ufrom), from, ids, 3, "");
    st = call(h, "DELETE", ufrom, NULL, 0, NULL);
    if (st == 404) {
        /* A client deleted it between our read and now: so must we. */
        url_of(uto, sizeof(uto), to, ids, 3, "");
        call(h, "DELETE", uto, NULL, 0, NULL);
        atomic_fetch_add(&h->n.undone, 1);
        return;
    }
    atomic_fetch_add(&h->n.moved, 1);
    h->moved_this_sweep++;
}

/* A JSON array answer of h->resp, or NULL (logged). */
static json_t *
array_of(struct shed_handoff *h)
{
    json_error_t err;
    json_t *j = json_loadb(h->resp.p != NULL ? h->resp.p : "", h->resp.len, 0, &err);

    if (j == NULL || !json_is_array(j)) {
        json_decref(j);
        atomic_fetch_add(&h->n.errors, 1);
        return NULL;
    }
    return j;
}

/* Every message of queue <ids> (account, queue) on server <s>. */
static void
sweep_queue(struct shed_handoff *h, const struct server *s, struct proto_slice *ids)
{
    char url[HANDOFF_URL_MAX], owner[SHED_URL_MAX];
    char marker[3 * PROTO_BURROW_ID_MAX + 1] = "";

    for (;;) {
        char q[sizeof(marker) + 96];
        json_t *arr, *o;
        size_t i, n;

        snprintf(q, sizeof(q), "detail=attributes&match_hidden=true&shed_stamps=1&limit=%d%s%s",
                 HANDOFF_PAGE, marker[0] ? "&marker=" : "", marker);
        if (url_of(url, sizeof(url), s->url, ids, 2, q) < 0 ||
            call(h, "GET", url, NULL, 0, NULL) != 200 || (arr = array_of(h)) == NULL)
            return;
        n = json_array_size(arr);
        h->seen_this_sweep += n;
        json_array_foreach(arr, i, o)
        {
            json_t *id = json_object_get(o, "id");

            if (!json_is_string(id) || stopping(h) || unsettled(h))
                continue;
            ids[2].ptr = json_string_value(id);
            ids[2].len = json_string_length(id);
            if (!owner_of(h, ids, owner, sizeof(owner)) || shed_same_url(owner, s->url))
                continue;
            move(h, s->url, owner, ids, (long long)json_integer_value(json_object_get(o, "ttl")),
                 (long long)json_integer_value(json_object_get(o, "hide")),
                 (long long)json_integer_value(json_object_get(o, "stamp")));
        }
        marker[0] = '\0';
        if (n > 0) {
            json_t *last = json_object_get(json_array_get(arr, n - 1), "id");

            if (json_is_string(last) &&
                proto_pct_encode(json_string_value(last), json_string_length(last), marker,
                                 sizeof(marker)) < 0)
                marker[0] = '\0';
        }
        json_decref(arr);
        if (n < HANDOFF_PAGE || marker[0] == '\0' || stopping(h) || unsettled(h))
            return;
    }
}

/* The ids of the list at <ids>[0..nids) on <s>: accounts or queues. */
static json_t *
ids_of(struct shed_handoff *h, const struct server *s, const struct proto_slice *ids, size_t nids)
{
    char url[HANDOFF_URL_MAX];

    if (url_of(url, sizeof(url), s->url, ids, nids, "detail=id") < 0 ||
        call(h, "GET", url, NULL, 0, NULL) != 200)
        return NULL;
    return array_of(h);
}

static void
sweep_server(struct shed_handoff *h, const struct server *s)
{
    json_t *accounts = ids_of(h, s, NULL, 0), *a, *queues, *q;
    size_t i, k;

    if (accounts == NULL)
        return;
    json_array_foreach(accounts, i, a)
    {
        struct proto_slice ids[3];

        if (!json_is_string(a) || stopping(h) || unsettled(h))
            continue;
        ids[0].ptr = json_string_value(a);
        ids[0].len = json_string_length(a);
        queues = ids_of(h, s, ids, 1);
        if (queues == NULL)
            continue;
        json_array_foreach(queues, k, q)
        {
            if (!json_is_string(q) || stopping(h) || unsettled(h))
                continue;
            ids[1].ptr = json_string_value(q);
            ids[1].len = json_string_length(q);
            sweep_queue(h, s, ids);
        }
        json_decref(queues);
    }
    json_decref(accounts);
}

/* ------------------------------------------------------------- hints */

/* Bring the message of hint <o> home (or find it gone): true when the
 * hint can be forgotten. */
static bool
hint_home(struct shed_handoff *h, json_t *o)
{
    char url[HANDOFF_URL_MAX], owner[SHED_URL_MAX];
    const char *svc = json_string_value(json_object_get(o, "service"));
    const char *path = json_string_value(json_object_get(o, "path"));
    const char *from = json_string_value(json_object_get(o, "url"));
    char dec[3 * PROTO_BURROW_ID_MAX + 3];
    struct proto_burrow_path bp;
    struct proto_slice ids[3];
    json_error_t err;
    long st;

    if (svc == NULL || path == NULL || from == NULL || stopping(h) || unsettled(h) ||
        strlen(svc) >= sizeof(h->svc) ||
        proto_burrow_parse_path(path, strlen(path), dec, sizeof(dec), &bp) != 0 ||
        bp.level != PROTO_BURROW_MESSAGE)
        return false;
    snprintf(h->svc, sizeof(h->svc), "%s", svc);
    ids[0] = bp.account;
    ids[1] = bp.queue;
    ids[2] = bp.message;
    if (!owner_of(h, ids, owner, sizeof(owner)))
        return false; /* this cell cannot take it yet: keep the hint */
    if (url_of(url, sizeof(url), from, ids, 3, "detail=attributes&shed_stamps=1") < 0)
        return false;
    st = call(h, "GET", url, NULL, 0, NULL);
    if (st == 200) {
        json_t *a = json_loadb(h->resp.p, h->resp.len, 0, &err);
        uint64_t before = h->moved_this_sweep;

        move(h, from, owner, ids, (long long)json_integer_value(json_object_get(a, "ttl")),
             (long long)json_integer_value(json_object_get(a, "hide")),
             (long long)json_integer_value(json_object_get(a, "stamp")));
        json_decref(a);
        return h->moved_this_sweep != before; /* not moved (yet): try again later */
    }
    return st == 404; /* otherwise the other cell's server did not answer: later */
}

/* The escalated writes of this cell that master <m> remembers: bring each
 * home (or find it gone) and tell the master. */
static void
hints_from(struct shed_handoff *h, const char *m, const char *cell, const char *cred)
{
    char url[HANDOFF_URL_MAX], cellq[3 * PROTO_TOKEN_NAME_MAX + 8];
    json_t *root, *arr, *o;
    json_error_t err;
    size_t i;

    if (proto_pct_encode(cell, strlen(cell), cellq, sizeof(cellq)) < 0)
        return;
    snprintf(url, sizeof(url), "%s/_shed/v1/hints?cell=%s", m, cellq);
    if (call(h, "GET", url, NULL, 0, cred) != 200)
        return;
    root = json_loadb(h->resp.p != NULL ? h->resp.p : "", h->resp.len, 0, &err);
    arr = json_object_get(root, "hints");
    json_array_foreach(arr, i, o)
    {
        json_int_t seq = json_integer_value(json_object_get(o, "seq"));
        if (!hint_home(h, o))
            continue;
        snprintf(url, sizeof(url), "%s/_shed/v1/hints?cell=%s&seq=%lld", m, cellq, (long long)seq);
        call(h, "DELETE", url, NULL, 0, cred);
    }
    json_decref(root);
}

/* Membership store etcd: the masters wrote this cell's hints to etcd
 * (docs/etcd.md); each brought home is deleted there. */
static void
hints_etcd(struct shed_handoff *h, struct shed_etcd *e)
{
    json_t *root = shed_etcd_hints_fetch(e, SHED_HINTS_PAGE_MAX, clock_mono_ms()), *o;
    size_t i;

    json_array_foreach(json_object_get(root, "hints"), i, o)
    {
        const char *key = json_string_value(json_object_get(o, "key"));
        if (key != NULL && hint_home(h, o))
            shed_etcd_hint_done(e, key);
    }
    json_decref(root);
}

static void
hints(struct shed_handoff *h)
{
    char masters[SHED_MAX_URLS][SHED_URL_MAX], cell[SHED_NAME_MAX];
    char cred[SHED_CREDENTIAL_MAX];
    size_t n;
    unsigned t = shed_rcu_enter(registry_rcu(h->ctx->reg));
    const struct shed_config *cfg = atomic_load(&h->ctx->cfg);

    n = cfg->nmasters;
    for (size_t i = 0; i < n; i++)
        snprintf(masters[i], sizeof(masters[i]), "%s", cfg->masters[i]);
    snprintf(cell, sizeof(cell), "%s", cfg->cell);
    snprintf(cred, sizeof(cred), "%s", cfg->credential);
    h->timeout_ms = (long)cfg->backend_timeout_ms;
    shed_rcu_leave(registry_rcu(h->ctx->reg), t);
    /* Masters on etcd keep this cell's hints there; masters on the
     * built-in store keep them in memory (one on etcd answers none). */
    struct shed_etcd *e = shed_cluster_etcd(h->ctx->cluster);
    if (e != NULL)
        hints_etcd(h, e);
    for (size_t i = 0; i < n && !stopping(h); i++)
        hints_from(h, masters[i], cell, cred);
}

/* ------------------------------------------------------------- loop */

/* Services to sweep and a number that changes with every liveness change,
 * restart or generation of any of them. */
static size_t
services(struct shed_handoff *h, char names[][SHED_NAME_MAX], uint64_t *sig)
{
    unsigned t = shed_rcu_enter(registry_rcu(h->ctx->reg));
    const struct registry_view *v = registry_view(h->ctx->reg);
    size_t n = 0;

    *sig = sig_of(v);
    for (size_t i = 0; i < v->nroutes && n < HANDOFF_SVC_MAX; i++) {
        const struct registry_route *r = &v->routes[i];

        if (r->kind == SHED_KIND_BURROW)
            snprintf(names[n++], SHED_NAME_MAX, "%s", r->name);
    }
    shed_rcu_leave(registry_rcu(h->ctx->reg), t);
    return n;
}

static void
sweep(struct shed_handoff *h, char names[][SHED_NAME_MAX], size_t nsvc)
{
    unsigned t = shed_rcu_enter(registry_rcu(h->ctx->reg));
    const struct shed_config *cfg = atomic_load(&h->ctx->cfg);

    h->timeout_ms = (long)cfg->backend_timeout_ms;
    shed_rcu_leave(registry_rcu(h->ctx->reg), t);
    uint64_t t0 = clock_mono_ns();
    h->moved_this_sweep = 0;
    h->seen_this_sweep = 0;
    for (size_t i = 0; i < nsvc && !stopping(h); i++) {
        size_t n;

        memcpy(h->svc, names[i], sizeof(h->svc));
        n = servers_of(h);
        for (size_t k = 0; k < n && !stopping(h) && !unsettled(h); k++)
            sweep_server(h, &h->servers[k]);
    }
    atomic_fetch_add(&h->n.sweeps, 1);
    if (h->unsettled) {
        atomic_fetch_add(&h->n.abandoned, 1);
        atomic_store(&h->n.last_moved, h->moved_this_sweep);
        log_info("handoff: sweep stopped after %" PRIu64 " move%s: membership changed during it",
                 h->moved_this_sweep, h->moved_this_sweep == 1 ? "" : "s");
        return;
    }
    atomic_store(&h->n.last_moved, h->moved_this_sweep);
    atomic_store(&h->n.last_sweep_us, (clock_mono_ns() - t0) / 1000);
    atomic_store(&h->n.last_sweep_msgs, h->seen_this_sweep);
    if (h->moved_this_sweep == 0)
        atomic_store(&h->n.home_ms, clock_real_ns() / 1000000u);
    else
        log_info("handoff: %" PRIu64 " message%s brought home", h->moved_this_sweep,
                 h->moved_this_sweep == 1 ? "" : "s");
}

static void *
run(void *arg)
{
    struct shed_handoff *h = arg;
    char names[HANDOFF_SVC_MAX][SHED_NAME_MAX];
    uint64_t sig = 0, swept_sig = 1, changed_at = clock_mono_ms(), last = 0, last_hints = 0;
    bool again = true; /* a first sweep after start: a restarted cell may be unsettled */

    while (!nap(h, HANDOFF_TICK_MS)) {
        uint64_t now = clock_mono_ms(), s;
        size_t n = services(h, names, &s);

        if (s != sig) {
            sig = s;
            changed_at = now;
        }
        /* Every line shed must route on the change (and look up) first. */
        if (now - changed_at < HANDOFF_SETTLE_MS)
            continue;
        if (now - last_hints >= 1000) {
            last_hints = now;
            h->pass_sig = sig;
            h->unsettled = false;
            hints(h);
        }
        if (sig == swept_sig && !again && now - last < HANDOFF_IDLE_MS)
            continue;
        if (again && now - last < 1000)
            continue;
        swept_sig = sig;
        last = now;
        h->pass_sig = sig;
        h->unsettled = false;
        sweep(h, names, n);
        again = h->moved_this_sweep > 0;
    }
    return NULL;
}

int
shed_handoff_start(struct shed_daemon *ctx, struct shed_handoff **out)
{
    struct shed_handoff *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return -ENOMEM;
    h->ctx = ctx;
    h->servers = calloc(HANDOFF_SERVERS, sizeof(*h->servers));
    h->curl = curl_easy_init();
    if (h->servers == NULL || h->curl == NULL) {
        free(h->servers);
        if (h->curl != NULL)
            curl_easy_cleanup(h->curl);
        free(h);
        return -ENOMEM;
    }
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &h->resp);
    curl_easy_setopt(h->curl, CURLOPT_MAXCONNECTS, 64L);
    curl_easy_setopt(h->curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, run, h) != 0) {
        curl_easy_cleanup(h->curl);
        free(h->servers);
        free(h);
        return -EAGAIN;
    }
    *out = h;
    return 0;
}

void
shed_handoff_stop(struct shed_handoff *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    curl_easy_cleanup(h->curl);
    free(h->resp.p);
    free(h->servers);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
