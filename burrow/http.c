/* SPDX-License-Identifier: ISC */
/*
 * burrow/http: burrowd's libmicrohttpd front end. One request goes through
 * three stages: the first handler call parses the path and query (proto/)
 * and checks Content-Length; upload calls collect a PUT body up to the
 * configured maximum; the final call runs the operation under the store
 * lock and queues the response. Answering on the final call, never the
 * first, keeps keep-alive (libmicrohttpd 0.9.75 closes a connection
 * whose response was queued on the first call).
 *
 * Hostile input (docs/hardening.md): the request target is taken raw from
 * libmicrohttpd's URI log callback, before libmicrohttpd 0.9.75 cuts it at a
 * NUL or splits its query, and checked there (proto_burrow_parse_target);
 * message framing that libmicrohttpd would misread (Transfer-Encoding other
 * than chunked, Content-Length with chunked, two different Content-Lengths)
 * is refused on the first call, which also closes the connection.
 *
 * Size: about 1280 lines, over the house's ~1200, on purpose: one handler
 * per Burrow operation (docs/burrow-api.md), each short, and the three
 * request stages above only read well side by side; the JSON rendering
 * already lives in proto/body and the store in burrow/store.
 */
#include "burrow/http.h"

#include "burrow/metrics.h"
#include "burrow/store.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/body.h"
#include "proto/burrow.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <xxhash.h>

#define CT_JSON  "application/json"
#define CT_OCTET "application/octet-stream"
/* Past this many bytes of an oversized upload the connection is dropped
 * instead of drained (a response cannot be queued mid-upload). */
#define DRAIN_MAX   (64u * 1024 * 1024)
#define QUERY_BUF   2048
#define CLEANER_MS  100
#define WAITKEY_MAX (2 * PROTO_BURROW_ID_MAX + 1)
/* libmicrohttpd holds a chunk-size line, extensions included, in this
 * connection pool and answers 500 itself when one does not fit; 32 KB
 * (its default) leaves room for a 28 KB line. */
#define CONN_MEMORY    (32 * 1024)
#define LISTEN_BACKLOG 4096
/* A PUT body is allocated up to this size from its Content-Length, then
 * grows with what actually arrives: a client that only declares a large
 * body does not make the server hold it. */
#define BODY_PREALLOC (64u * 1024)
/* shed_clock and shed_stamp further ahead of this server's clock than this
 * do not move it (a stamp is still kept as given). */
#define CLOCK_AHEAD_MAX_US (3600LL * 1000000)

enum wstate { W_NONE = 0, W_SUSPENDED, W_WOKEN };

struct waitkey;

struct req {
    struct MHD_Connection *conn; /* borrowed from MHD */
    bool metrics;                /* GET /metrics: answered by serve_metrics() */
    bool begun;                  /* the first handler call has run */
    const char *target;          /* raw request target, borrowed from MHD's
                                    buffer; checked on the first call only */
    size_t target_len;           /* strlen() of it in the URI log callback */
    int terr;                    /* proto_burrow_parse_target(), 0: fine */
    int perr;                    /* proto_burrow_parse_path() */
    bool is_put;
    unsigned status;  /* early answer (404/400/405/413), 0: none */
    const char *text; /* body of the early answer, static */
    char errbuf[PROTO_BURROW_ID_MAX + 1];
    const char *method;
    struct proto_burrow_path path;
    char pathbuf[3 * PROTO_BURROW_ID_MAX + 3];
    struct proto_burrow_query q;
    char qbuf[QUERY_BUF];
    int qerr;
    char *body; /* PUT body, owned */
    size_t blen, bcap;
    bool too_large;
    size_t drained;
    /* Long-poll state, guarded by h->lock. */
    enum wstate wstate;
    int64_t deadline_ms;       /* monotonic; 0: not waiting yet */
    struct waitkey *wk;        /* the list this request waits on */
    struct req *kprev, *knext; /* on wk */
    struct req *gprev, *gnext; /* on h->waiters */
    struct req *wake_next;     /* on h->wake */
};

struct waitkey {
    struct waitkey *hnext;
    uint32_t hash;
    struct req *head;
    size_t klen;
    char key[];
};

struct burrow_http {
    struct burrow_http_config cfg;
    struct MHD_Daemon *d;
    struct burrow_store *store;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t cleaner;
    bool cleaner_started;
    bool stopping;
    struct waitkey **wkb; /* waitkey buckets */
    size_t wkmask, nwk;
    struct req *waiters; /* every suspended request */
    size_t nwaiters;
    struct req *wake; /* woken under the lock, resumed after it */
    uint16_t port;
};

static int64_t
mono_ms(void)
{
    return (int64_t)clock_mono_ms();
}

static int64_t
wall_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- waiters (all under h->lock) --------------------------------------- */

static size_t
make_key(char *key, const char *a, size_t alen, const char *q, size_t qlen)
{
    memcpy(key, a, alen);
    key[alen] = '/';
    memcpy(key + alen + 1, q, qlen);
    return alen + 1 + qlen;
}

static struct waitkey **
wk_slot(struct burrow_http *h, const char *key, size_t klen, uint32_t hash)
{
    struct waitkey **pp = &h->wkb[hash & h->wkmask];

    while (*pp && !((*pp)->hash == hash && (*pp)->klen == klen && !memcmp((*pp)->key, key, klen)))
        pp = &(*pp)->hnext;
    return pp;
}

static void
wk_grow(struct burrow_http *h)
{
    size_t nb = (h->wkmask + 1) * 2;
    struct waitkey **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return; /* keep the old table: longer chains, still correct */
    for (size_t i = 0; i <= h->wkmask; i++) {
        for (struct waitkey *w = h->wkb[i], *n; w; w = n) {
            n = w->hnext;
            w->hnext = b[w->hash & (nb - 1)];
            b[w->hash & (nb - 1)] = w;
        }
    }
    free(h->wkb);
    h->wkb = b;
    h->wkmask = nb - 1;
}

/* Unlink <r> from its key (freeing an empty key) and the global list. */
static void
waiter_unlink(struct burrow_http *h, struct req *r)
{
    struct waitkey *wk = r->wk;

    if (wk == NULL)
        return;
    if (r->kprev)
        r->kprev->knext = r->knext;
    else
        wk->head = r->knext;
    if (r->knext)
        r->knext->kprev = r->kprev;
    if (wk->head == NULL) {
        *wk_slot(h, wk->key, wk->klen, wk->hash) = wk->hnext;
        h->nwk--;
        free(wk);
    }
    if (r->gprev)
        r->gprev->gnext = r->gnext;
    else
        h->waiters = r->gnext;
    if (r->gnext)
        r->gnext->gprev = r->gprev;
    r->wk = NULL;
    r->kprev = r->knext = r->gprev = r->gnext = NULL;
    h->nwaiters--;
}

static void
waiter_wake(struct burrow_http *h, struct req *r)
{
    waiter_unlink(h, r);
    r->wstate = W_WOKEN;
    r->wake_next = h->wake;
    h->wake = r;
}

static int
waiter_add(struct burrow_http *h, struct req *r)
{
    char key[WAITKEY_MAX];
    size_t klen = make_key(key, r->path.account.ptr, r->path.account.len, r->path.queue.ptr,
                           r->path.queue.len);
    uint32_t hash = (uint32_t)XXH3_64bits(key, klen);
    struct waitkey **pp = wk_slot(h, key, klen, hash), *wk = *pp;

    if (wk == NULL) {
        wk = calloc(1, sizeof(*wk) + klen);
        if (wk == NULL)
            return -ENOMEM;
        memcpy(wk->key, key, klen);
        wk->klen = klen;
        wk->hash = hash;
        *pp = wk;
        if (++h->nwk > h->wkmask + 1)
            wk_grow(h);
    }
    r->wk = wk;
    r->kprev = NULL;
    r->knext = wk->head;
    if (wk->head)
        wk->head->kprev = r;
    wk->head = r;
    r->gprev = NULL;
    r->gnext = h->waiters;
    if (h->waiters)
        h->waiters->gprev = r;
    h->waiters = r;
    h->nwaiters++;
    r->wstate = W_SUSPENDED;
    return 0;
}

/* Store callback: a queue has visible messages; wake its waiters. */
static void
on_visible(void *arg, const char *a, size_t alen, const char *q, size_t qlen)
{
    struct burrow_http *h = arg;
    char key[WAITKEY_MAX];
    size_t klen;
    struct waitkey *wk;

    if (h->nwaiters == 0)
        return;
    klen = make_key(key, a, alen, q, qlen);
    wk = *wk_slot(h, key, klen, (uint32_t)XXH3_64bits(key, klen));
    while (wk != NULL) {
        struct req *r = wk->head;
        bool last = r->knext == NULL;

        waiter_wake(h, r); /* frees wk with its last waiter */
        if (last)
            break;
    }
}

static void
lock(struct burrow_http *h)
{
    pthread_mutex_lock(&h->lock);
}

/* Unlock, then resume what was woken: a woken connection stays suspended
 * (so alive) until its resume, and only one party ever wakes it. */
static void
unlock_wake(struct burrow_http *h)
{
    struct req *r = h->wake;

    h->wake = NULL;
    pthread_mutex_unlock(&h->lock);
    while (r) {
        struct req *next = r->wake_next;

        MHD_resume_connection(r->conn);
        r = next;
    }
}

static void *
cleaner_main(void *arg)
{
    struct burrow_http *h = arg;

    lock(h);
    while (!h->stopping) {
        struct timespec ts;
        int64_t now;

        clock_deadline(CLOCK_REALTIME, CLEANER_MS, &ts);
        pthread_cond_timedwait(&h->cond, &h->lock, &ts);
        if (h->stopping)
            break;
        burrow_store_tick(h->store, wall_s());
        now = mono_ms();
        for (struct req *r = h->waiters, *n; r; r = n) {
            n = r->gnext;
            if (r->deadline_ms <= now)
                waiter_wake(h, r);
        }
        unlock_wake(h);
        lock(h);
    }
    unlock_wake(h);
    return NULL;
}

/* ---- responses --------------------------------------------------------- */

struct resp {
    unsigned status;
    char *body; /* owned when must_free */
    size_t len;
    const char *ctype;
    bool must_free;
    int64_t clock; /* > 0: sent as Shed-Clock (shed_stamps=1 on a list) */
};

static void
resp_text(struct resp *o, unsigned status, const char *text)
{
    o->status = status;
    o->body = (char *)text;
    o->len = text ? strlen(text) : 0;
    o->ctype = text ? CT_OCTET : NULL;
    o->must_free = false;
}

static enum MHD_Result
send_resp(struct MHD_Connection *conn, struct resp *o)
{
    struct MHD_Response *mr;
    enum MHD_Result ret;

    mr = MHD_create_response_from_buffer(
        o->len, o->body, o->must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (mr == NULL) {
        if (o->must_free)
            free(o->body);
        return MHD_NO;
    }
    if (o->ctype)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, o->ctype);
    if (o->clock > 0) {
        char clk[24];

        snprintf(clk, sizeof(clk), "%lld", (long long)o->clock);
        MHD_add_response_header(mr, "Shed-Clock", clk);
    }
    if (o->status == MHD_HTTP_NO_CONTENT) {
        /* MHD leaves Content-Length out of a 204; Burrow clients read it
         * from every 2xx answer, so say it. */
        MHD_set_response_options(mr, MHD_RF_INSANITY_HEADER_CONTENT_LENGTH, MHD_RO_END);
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_LENGTH, "0");
    }
    ret = MHD_queue_response(conn, o->status, mr);
    burrow_metrics_response(o->status);
    MHD_destroy_response(mr);
    return ret;
}

/* A JSON string for an id: invalid UTF-8 sequences become U+FFFD (one per
 * byte that starts no valid sequence). Ids hold no NUL (proto/burrow). */
static json_t *
jstr(const char *p, size_t n)
{
    size_t i = 0, span = proto_body_utf8_span(p, n);
    char *buf, *o;
    json_t *j;

    if (span == n)
        return json_stringn(p, n);
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    buf = malloc(3 * n + 1);
    if (buf == NULL)
        return NULL;
    o = buf;
    for (;;) {
        memcpy(o, p + i, span);
        o += span;
        i += span;
        if (i == n)
            break;
        memcpy(o, "\xEF\xBF\xBD", 3);
        o += 3;
        i++;
        span = proto_body_utf8_span(p + i, n - i);
    }
    j = json_stringn(buf, (size_t)(o - buf));
    free(buf);
    return j;
}

/* Shapes one listed item by detail level into an array. */
struct lister {
    json_t *arr;
    enum proto_burrow_detail d;
    bool stamps; /* shed_stamps=1: objects carry "stamp" */
};

static int
list_id(void *arg, const char *id, size_t len, int64_t stamp)
{
    struct lister *l = arg;
    json_t *v;

    if (l->d == PROTO_DETAIL_NONE)
        return 0;
    v = jstr(id, len);
    if (v && l->d == PROTO_DETAIL_ALL) {
        json_t *o = json_object();

        if (o == NULL || json_object_set_new(o, "id", v) < 0 ||
            (l->stamps && json_object_set_new(o, "stamp", json_integer(stamp)) < 0)) {
            json_decref(o);
            return -ENOMEM;
        }
        v = o;
    }
    if (v == NULL || json_array_append_new(l->arr, v) < 0)
        return -ENOMEM;
    return 0;
}

static json_t *
msg_json(const struct burrow_msg_view *m, enum proto_burrow_detail d, bool stamps)
{
    json_t *o;

    if (d == PROTO_DETAIL_ID)
        return jstr(m->id, m->id_len);
    if (d == PROTO_DETAIL_BODY)
        return proto_body_value(m->body, m->body_len);
    o = json_object();
    if (o == NULL || json_object_set_new(o, "id", jstr(m->id, m->id_len)) < 0 ||
        json_object_set_new(o, "ttl", json_integer(m->ttl)) < 0 ||
        json_object_set_new(o, "hide", json_integer(m->hide)) < 0 ||
        (stamps && json_object_set_new(o, "stamp", json_integer(m->stamp)) < 0) ||
        (d == PROTO_DETAIL_ALL && proto_body_set(o, m->body, m->body_len) < 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int
list_msg(void *arg, const struct burrow_msg_view *m)
{
    struct lister *l = arg;

    if (l->d == PROTO_DETAIL_NONE)
        return 0;
    if (json_array_append_new(l->arr, msg_json(m, l->d, l->stamps)) < 0)
        return -ENOMEM;
    return 0;
}

/* One message answered bare: JSON object, raw id, raw body, or nothing. */
struct single {
    enum proto_burrow_detail d;
    struct resp *o;
    bool stamps; /* shed_stamps=1 */
};

static int
single_msg(void *arg, const struct burrow_msg_view *m)
{
    struct single *s = arg;
    struct resp *o = s->o;
    const char *src;
    size_t len;

    o->status = MHD_HTTP_OK;
    if (s->d == PROTO_DETAIL_NONE) {
        resp_text(o, MHD_HTTP_NO_CONTENT, NULL);
        return 0;
    }
    if (s->d == PROTO_DETAIL_ID || s->d == PROTO_DETAIL_BODY) {
        src = s->d == PROTO_DETAIL_ID ? m->id : m->body;
        len = s->d == PROTO_DETAIL_ID ? m->id_len : m->body_len;
        o->body = malloc(len ? len : 1);
        if (o->body == NULL)
            return -ENOMEM;
        memcpy(o->body, src, len);
        o->len = len;
        o->ctype = CT_OCTET;
        o->must_free = true;
        return 0;
    }
    json_t *j = msg_json(m, s->d, s->stamps);

    o->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (o->body == NULL)
        return -ENOMEM;
    o->len = strlen(o->body);
    o->ctype = CT_JSON;
    o->must_free = true;
    return 0;
}

static const char *
miss_text(int rc)
{
    switch (-rc) {
    case BURROW_STORE_ENOACCOUNT:
        return "Account not found";
    case BURROW_STORE_ENOQUEUE:
        return "Queue not found";
    default:
        return "Message not found";
    }
}

/* Turn a list result into the response: 200 JSON, 204, 404, 500. */
static void
list_result(struct resp *o, int rc, struct lister *l)
{
    if (rc == -ENOMEM) {
        resp_text(o, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
    } else if (rc < 0) {
        resp_text(o, MHD_HTTP_NOT_FOUND, miss_text(rc));
    } else if (l->d == PROTO_DETAIL_NONE) {
        resp_text(o, MHD_HTTP_NO_CONTENT, NULL);
    } else {
        o->body = json_dumps(l->arr, JSON_COMPACT);
        if (o->body == NULL) {
            resp_text(o, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
            return;
        }
        o->status = MHD_HTTP_OK;
        o->len = strlen(o->body);
        o->ctype = CT_JSON;
        o->must_free = true;
    }
}

/* ---- operations (under h->lock) ------------------------------------------ */

static bool
detail_check(struct req *r, struct resp *o, enum proto_burrow_detail def,
             enum proto_burrow_detail *d)
{
    if (r->q.detail_bad || !proto_burrow_detail_ok(r->path.level, r->q.detail)) {
        size_t n = r->q.detail_raw.len;

        memcpy(r->errbuf, r->q.detail_raw.ptr ? r->q.detail_raw.ptr : "", n);
        r->errbuf[n] = '\0';
        o->status = MHD_HTTP_BAD_REQUEST;
        o->body = r->errbuf;
        o->len = n;
        o->ctype = CT_OCTET;
        o->must_free = false;
        return false;
    }
    *d = r->q.detail == PROTO_DETAIL_DEFAULT ? def : r->q.detail;
    return true;
}

static void
filter_of(const struct req *r, struct burrow_store_filter *f)
{
    f->marker = r->q.marker.ptr;
    f->marker_len = r->q.marker.len;
    f->limit = r->q.has_limit ? r->q.limit : 0;
    f->match_hidden = r->q.match_hidden;
    f->has_after = r->q.shed.has_after;
    f->after = r->q.shed.after;
    f->has_upto = r->q.shed.has_upto;
    f->upto = r->q.shed.upto;
    f->upto_id = r->q.shed.upto_id.ptr;
    f->upto_id_len = r->q.shed.upto_id.len;
}

#define A(r) (r)->path.account.ptr, (r)->path.account.len
#define Q(r) (r)->path.queue.ptr, (r)->path.queue.len
#define M(r) (r)->path.message.ptr, (r)->path.message.len

/* The common start of a list operation: check ?detail= against <dflt>,
 * read the filter, make the result array. False when <o> holds the answer
 * (400 or 500) already. */
static bool
lister_start(struct req *r, struct resp *o, enum proto_burrow_detail dflt,
             struct burrow_store_filter *f, struct lister *l)
{
    if (!detail_check(r, o, dflt, &l->d))
        return false;
    filter_of(r, f);
    l->stamps = r->q.shed.stamps;
    l->arr = json_array();
    if (l->arr == NULL) {
        resp_text(o, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return false;
    }
    return true;
}

static void
op_accounts(struct burrow_http *h, struct req *r, int64_t now, bool del, struct resp *o)
{
    struct burrow_store_filter f;
    struct lister l = {NULL, PROTO_DETAIL_NONE, false};
    int rc;

    if (!lister_start(r, o, del ? PROTO_DETAIL_NONE : PROTO_DETAIL_ID, &f, &l))
        return;
    if (del)
        rc = burrow_store_delete_accounts(h->store, now, &f, list_id, &l);
    else
        rc = burrow_store_list_accounts(h->store, now, &f, list_id, &l);
    list_result(o, rc, &l);
    json_decref(l.arr);
}

static void
op_queues(struct burrow_http *h, struct req *r, int64_t now, bool del, struct resp *o)
{
    struct burrow_store_filter f;
    struct lister l = {NULL, PROTO_DETAIL_NONE, false};
    int rc;

    if (!burrow_store_has_account(h->store, now, A(r))) {
        resp_text(o, MHD_HTTP_NOT_FOUND, "Account not found");
        return;
    }
    if (!lister_start(r, o, del ? PROTO_DETAIL_NONE : PROTO_DETAIL_ID, &f, &l))
        return;
    if (del)
        rc = burrow_store_delete_queues(h->store, now, A(r), &f, list_id, &l);
    else
        rc = burrow_store_list_queues(h->store, now, A(r), &f, list_id, &l);
    list_result(o, rc, &l);
    json_decref(l.arr);
}

/* Returns true when the answer is a 404 a `wait` may wait out. */
static bool
op_messages(struct burrow_http *h, struct req *r, int64_t now, const char *method, struct resp *o)
{
    struct burrow_store_filter f;
    struct lister l = {NULL, PROTO_DETAIL_NONE, false};
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    int rc;

    if (!burrow_store_has_queue(h->store, now, A(r), Q(r))) {
        resp_text(o, MHD_HTTP_NOT_FOUND,
                  burrow_store_has_account(h->store, now, A(r)) ? "Queue not found"
                                                                : "Account not found");
        return true;
    }
    if (!lister_start(r, o, get ? PROTO_DETAIL_ALL : PROTO_DETAIL_NONE, &f, &l))
        return false;
    if (get)
        rc = burrow_store_list_messages(h->store, now, A(r), Q(r), &f, list_msg, &l);
    else if (post)
        rc = burrow_store_update_messages(h->store, now, A(r), Q(r), &f,
                                          r->q.has_ttl ? &r->q.ttl : NULL,
                                          r->q.has_hide ? &r->q.hide : NULL, list_msg, &l);
    else
        rc = burrow_store_delete_messages(h->store, now, A(r), Q(r), &f, list_msg, &l);
    list_result(o, rc, &l);
    json_decref(l.arr);
    return rc < 0 && rc != -ENOMEM;
}

static void
op_message(struct burrow_http *h, struct req *r, int64_t now, const char *method, struct resp *o)
{
    struct single s = {PROTO_DETAIL_NONE, o, r->q.shed.stamps};
    bool get = !strcmp(method, "GET");
    int rc;

    if (!strcmp(method, "PUT")) {
        rc = burrow_store_put_at(h->store, now, (int64_t)(clock_real_ns() / 1000), A(r), Q(r), M(r),
                                 r->body, r->blen, r->q.has_ttl ? r->q.ttl : h->cfg.default_ttl,
                                 r->q.has_hide ? r->q.hide : h->cfg.default_hide,
                                 r->q.shed.has_stamp ? r->q.shed.stamp : 0);
        if (rc < 0)
            resp_text(o, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        else
            resp_text(o, rc == 1 ? MHD_HTTP_CREATED : MHD_HTTP_NO_CONTENT, NULL);
        return;
    }
    rc = burrow_store_get(h->store, now, A(r), Q(r), M(r), NULL, NULL);
    if (rc < 0) {
        resp_text(o, MHD_HTTP_NOT_FOUND, miss_text(rc));
        return;
    }
    if (!detail_check(r, o, get ? PROTO_DETAIL_ALL : PROTO_DETAIL_NONE, &s.d))
        return;
    if (get)
        rc = burrow_store_get(h->store, now, A(r), Q(r), M(r), single_msg, &s);
    else if (!strcmp(method, "POST"))
        rc = burrow_store_update(h->store, now, A(r), Q(r), M(r), r->q.has_ttl ? &r->q.ttl : NULL,
                                 r->q.has_hide ? &r->q.hide : NULL, single_msg, &s);
    else
        rc = burrow_store_delete(h->store, now, A(r), Q(r), M(r), single_msg, &s);
    if (rc < 0)
        resp_text(o, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
}

/* ---- request stages ------------------------------------------------------ */

static void
early(struct req *r, unsigned status, const char *text)
{
    r->status = status;
    r->text = text;
}

/*
 * libmicrohttpd 0.9.75 (and up to 0.9.77, same parser) calls this with the
 * raw request target right after it has split the request line, before it
 * splits the query into one pool record per parameter and before it hands
 * the path on as a C string. So the target is parsed here (the documented
 * place to create the request object, kept as con_cls):
 *
 * - Too many parameters exhaust the connection pool during that split, and
 *   libmicrohttpd then loses its own 431 and holds the connection until the
 *   idle timeout. Past PROTO_BURROW_QUERY_MAX the query is emptied in its
 *   buffer first (the first byte after the '?' it is about to cut at), and
 *   the request gets a 400.
 * - The query is decoded from these raw bytes, since the split writes NULs
 *   into them and turns '+' into ' '.
 * - <uri> ends at the first NUL: the first handler call compares that length
 *   with where the HTTP version starts to see a NUL inside the target.
 */
static void *
uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct req *r = calloc(1, sizeof(*r));
    struct proto_burrow_target t;
    const char *qm;

    (void)cls;
    if (r == NULL)
        return NULL;
    r->conn = conn;
    r->target = uri;
    r->target_len = strlen(uri);
    qm = memchr(uri, '?', r->target_len);
    if (qm != NULL && proto_burrow_query_count(qm + 1, r->target_len - (size_t)(qm + 1 - uri)) >
                          PROTO_BURROW_QUERY_MAX) {
        r->qerr = -PROTO_ETOOMANY;
#if MHD_VERSION >= 0x00097500 && MHD_VERSION <= 0x00097700
        ((char *)qm)[1] = '\0'; /* MHD's own buffer, writable; see above */
#endif
        return r;
    }
    proto_burrow_query_init(&r->q);
    r->terr = proto_burrow_parse_target(uri, r->target_len, &t);
    if (r->terr < 0)
        return r;
    r->perr =
        proto_burrow_parse_path(t.path.ptr, t.path.len, r->pathbuf, sizeof(r->pathbuf), &r->path);
    if (t.query.ptr != NULL)
        r->qerr =
            proto_burrow_query_parse(&r->q, t.query.ptr, t.query.len, r->qbuf, sizeof(r->qbuf));
    return r;
}

/* What the headers say about the body's framing. */
struct framing {
    unsigned te, cl; /* Transfer-Encoding and Content-Length fields */
    const char *te1; /* the first Transfer-Encoding value */
    const char *cl1; /* the first Content-Length value */
    bool cl_differ;  /* two Content-Lengths with different values */
};

static enum MHD_Result
framing_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct framing *f = cls;

    (void)kind;
    if (value == NULL)
        value = "";
    if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        if (f->te++ == 0)
            f->te1 = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->cl++ == 0)
            f->cl1 = value;
        else if (strcmp(f->cl1, value) != 0)
            f->cl_differ = true;
    }
    return MHD_YES;
}

/*
 * Refuse framing libmicrohttpd 0.9.75 would get wrong (RFC 9112 section
 * 6): it takes any Transfer-Encoding but exactly "chunked" as a body that
 * ends when the client closes (so it waits for the idle timeout), ignores a
 * Content-Length next to chunked, and reads only the first of several
 * Content-Lengths, where a proxy in front may have used another one
 * (request smuggling). Returns the status to answer with, 0 when fine.
 */
static unsigned
framing_check(struct req *r, const char *version)
{
    struct framing f = {0};

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, framing_iter, &f);
    if (f.te > 0 && f.cl > 0) {
        early(r, MHD_HTTP_BAD_REQUEST, "Content-Length with Transfer-Encoding");
        return r->status;
    }
    if (f.cl_differ) {
        early(r, MHD_HTTP_BAD_REQUEST, "Conflicting Content-Length");
        return r->status;
    }
    if (f.te > 0 && strcmp(version, MHD_HTTP_VERSION_1_0) == 0) {
        early(r, MHD_HTTP_BAD_REQUEST, "Transfer-Encoding in HTTP/1.0");
        return r->status;
    }
    /* Exactly MHD's own test for a chunked body, so that what passes here
     * is what it decodes. */
    if (f.te > 1 || (f.te == 1 && strcasecmp(f.te1, "chunked") != 0)) {
        early(r, MHD_HTTP_NOT_IMPLEMENTED, "Transfer-Encoding not supported (only chunked)");
        return r->status;
    }
    return 0;
}

static bool
method_ok(enum proto_burrow_level level, const char *m)
{
    bool get = !strcmp(m, "GET"), del = !strcmp(m, "DELETE");

    switch (level) {
    case PROTO_BURROW_ROOT:
        return get;
    case PROTO_BURROW_ACCOUNTS:
    case PROTO_BURROW_QUEUES:
        return get || del;
    case PROTO_BURROW_MESSAGES:
        return get || del || !strcmp(m, "POST");
    case PROTO_BURROW_MESSAGE:
        return get || del || !strcmp(m, "POST") || !strcmp(m, "PUT");
    }
    return false;
}

/* First call: framing, target, route, method, query (all parsed in
 * uri_log()), declared body size. Returns true when the answer must go out
 * now, before any body: the framing is bad. */
static bool
begin(struct burrow_http *h, struct req *r, const char *method, const char *version)
{
    int rc;

    r->method = method;
    if (framing_check(r, version))
        return true;
    if (r->qerr == -PROTO_ETOOMANY) {
        early(r, MHD_HTTP_BAD_REQUEST, "Too many query parameters");
        return false;
    }
    /* <version> starts right after the NUL that ends the target in MHD's
     * buffer; an earlier NUL is one the client sent. */
    if (r->target_len == 0 || version < r->target || r->target + r->target_len + 1 != version) {
        early(r, MHD_HTTP_BAD_REQUEST, "NUL in request target");
        return false;
    }
    if (r->terr < 0) {
        early(r, MHD_HTTP_BAD_REQUEST, "Bad request target");
        return false;
    }
    rc = r->perr;
    if (rc == -PROTO_ENOTFOUND) {
        early(r, MHD_HTTP_NOT_FOUND, NULL);
        return false;
    }
    if (rc < 0) {
        early(r, MHD_HTTP_BAD_REQUEST,
              rc == -PROTO_ETOOLONG  ? "Id too long"
              : rc == -PROTO_EDOTSEG ? "Id is . or .."
                                     : "Bad percent-encoding in path");
        return false;
    }
    if (!method_ok(r->path.level, method)) {
        early(r, MHD_HTTP_METHOD_NOT_ALLOWED, NULL);
        return false;
    }
    if (r->qerr < 0) {
        early(r, MHD_HTTP_BAD_REQUEST,
              r->qerr == -PROTO_EBADVALUE ? "Bad integer value in query"
              : r->qerr == -PROTO_EBADENC ? "Bad percent-encoding in query"
                                          : "Query value too long");
        return false;
    }
    r->is_put = r->path.level == PROTO_BURROW_MESSAGE && !strcmp(method, "PUT");
    if (r->is_put) {
        const char *cl =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        char *end;
        unsigned long long n;

        if (cl == NULL)
            return false;
        errno = 0;
        n = strtoull(cl, &end, 10);
        if (errno || end == cl)
            return false; /* MHD itself refuses a bad Content-Length */
        if (n > h->cfg.max_message_bytes)
            r->too_large = true;
        else if (n > 0 && (r->body = malloc((size_t)(n < BODY_PREALLOC ? n : BODY_PREALLOC))))
            r->bcap = (size_t)(n < BODY_PREALLOC ? n : BODY_PREALLOC);
    }
    return false;
}

static void
upload(struct burrow_http *h, struct req *r, const char *data, size_t len)
{
    if (!r->is_put || r->status) {
        r->drained += len; /* a body nobody reads: bounded by DRAIN_MAX */
        return;
    }
    if (r->too_large || len > h->cfg.max_message_bytes - r->blen) {
        r->too_large = true;
        free(r->body);
        r->body = NULL;
        r->blen = r->bcap = 0;
        r->drained += len;
        return;
    }
    if (r->blen + len > r->bcap) {
        size_t cap = r->bcap ? r->bcap : 4096;
        char *b;

        while (cap < r->blen + len)
            cap *= 2;
        if (cap > h->cfg.max_message_bytes)
            cap = h->cfg.max_message_bytes;
        b = realloc(r->body, cap);
        if (b == NULL) {
            early(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
            return;
        }
        r->body = b;
        r->bcap = cap;
    }
    memcpy(r->body + r->blen, data, len);
    r->blen += len;
}

static enum MHD_Result
finish(struct burrow_http *h, struct req *r)
{
    struct resp o = {0};
    int64_t now;
    bool may_wait;

    if (r->status) {
        resp_text(&o, r->status, r->text);
        return send_resp(r->conn, &o);
    }
    if (r->too_large) {
        resp_text(&o, MHD_HTTP_CONTENT_TOO_LARGE, "Message too large");
        return send_resp(r->conn, &o);
    }
    lock(h);
    r->wstate = W_NONE;
    now = wall_s();
    /* The aggregator's clock (docs/aggregator.md, "Backend extension"):
     * ours goes on to it, so that what is created here from now on sorts
     * after what it has seen; one over an hour ahead of ours is ignored. */
    if (r->q.shed.has_clock &&
        r->q.shed.clock <= (int64_t)(clock_real_ns() / 1000) + CLOCK_AHEAD_MAX_US)
        (void)burrow_store_clock(h->store, r->q.shed.clock);
    switch (r->path.level) {
    case PROTO_BURROW_ROOT:
        o.status = MHD_HTTP_OK;
        o.body = "[\"" PROTO_BURROW_VERSION "\"]";
        o.len = strlen(o.body);
        o.ctype = CT_JSON;
        break;
    case PROTO_BURROW_ACCOUNTS:
        op_accounts(h, r, now, !strcmp(r->method, "DELETE"), &o);
        break;
    case PROTO_BURROW_QUEUES:
        op_queues(h, r, now, !strcmp(r->method, "DELETE"), &o);
        break;
    case PROTO_BURROW_MESSAGES:
        may_wait = op_messages(h, r, now, r->method, &o);
        if (may_wait && r->q.has_wait && r->q.wait > 0 && !h->stopping) {
            int64_t t = mono_ms();

            if (r->deadline_ms == 0)
                r->deadline_ms = t + r->q.wait * 1000;
            if (t < r->deadline_ms && waiter_add(h, r) == 0) {
                MHD_suspend_connection(r->conn);
                unlock_wake(h);
                return MHD_YES;
            }
        }
        break;
    case PROTO_BURROW_MESSAGE:
        op_message(h, r, now, r->method, &o);
        break;
    }
    /* Read after the operation, under the same lock: whatever is created
     * later has a greater stamp (docs/aggregator.md, "Backend extension"). */
    if (r->q.shed.stamps && r->path.level >= PROTO_BURROW_ACCOUNTS &&
        r->path.level <= PROTO_BURROW_MESSAGES)
        o.clock = burrow_store_clock(h->store, (int64_t)(clock_real_ns() / 1000));
    unlock_wake(h);
    return send_resp(r->conn, &o);
}

/* GET /metrics (burrow/metrics): the store's gauges read under the lock. */
static enum MHD_Result
serve_metrics(struct burrow_http *h, struct req *r, const char *method)
{
    struct burrow_metrics_gauges g;
    struct burrow_store_stats st;
    struct resp o = {0};
    char *text;
    size_t len;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        resp_text(&o, MHD_HTTP_METHOD_NOT_ALLOWED, NULL);
        return send_resp(r->conn, &o);
    }
    pthread_mutex_lock(&h->lock);
    burrow_store_stats(h->store, &st);
    g.waiting = h->nwaiters;
    pthread_mutex_unlock(&h->lock);
    g.accounts = st.accounts;
    g.queues = st.queues;
    g.messages = st.messages;
    g.timed = st.timed;
    if (burrow_metrics_render(&g, &text, &len) < 0) {
        resp_text(&o, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return send_resp(r->conn, &o);
    }
    o.status = MHD_HTTP_OK;
    o.body = text;
    o.len = len;
    o.ctype = "text/plain; version=0.0.4";
    o.must_free = true;
    return send_resp(r->conn, &o);
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
       const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct burrow_http *h = cls;
    struct req *r = *con_cls;

    /* Not a Burrow path: answered on the second call (keep-alive). */
    if (strcmp(url, BURROW_METRICS_PATH) == 0) {
        if (r == NULL && (r = calloc(1, sizeof(*r))) == NULL)
            return MHD_NO;
        r->conn = conn;
        *con_cls = r;
        if (!r->metrics) {
            r->metrics = true;
            return MHD_YES;
        }
        if (*upload_data_size != 0) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        return serve_metrics(h, r, method);
    }

    (void)url; /* uri_log() saw the raw target */
    if (r == NULL) {
        /* uri_log() could not allocate: nothing was parsed. */
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        r->conn = conn;
        r->begun = true;
        *con_cls = r;
        early(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return MHD_YES;
    }
    if (!r->begun) {
        r->begun = true;
        if (begin(h, r, method, version))
            return finish(h, r); /* bad framing: answer now, MHD closes */
        /* A body we will refuse or ignore anyway: answer before it is
         * uploaded when the client waits for 100-continue (refusals only)
         * or announces something huge (the connection then closes);
         * otherwise drain it and keep the connection. */
        if (r->too_large || r->status || !r->is_put) {
            const char *expect =
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
            const char *cl =
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

            bool refused = r->too_large || r->status;

            if ((refused && expect != NULL) || (cl && strtoull(cl, NULL, 10) > DRAIN_MAX))
                return finish(h, r);
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        upload(h, r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (r->drained > DRAIN_MAX)
            return MHD_NO; /* endless oversized upload: drop the connection */
        return MHD_YES;
    }
    return finish(h, r);
}

static void
completed(void *cls, struct MHD_Connection *conn, void **con_cls,
          enum MHD_RequestTerminationCode toe)
{
    struct burrow_http *h = cls;
    struct req *r = *con_cls;

    (void)conn;
    (void)toe;
    if (r == NULL)
        return;
    if (r->deadline_ms != 0) { /* it waited at some point */
        lock(h);
        if (r->wstate == W_SUSPENDED)
            waiter_unlink(h, r);
        pthread_mutex_unlock(&h->lock);
    }
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* Paths and query values arrive raw; proto/ decodes them. */
static size_t
unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];

    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    buf[strcspn(buf, "\n")] = '\0';
    log_warnx("mhd: %s", buf);
}

int
burrow_http_start(const struct burrow_http_config *cfg, struct burrow_http **out)
{
    struct burrow_http *h;
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *di;
    int rc;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, cfg->host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons(cfg->port);
    } else if (inet_pton(AF_INET6, cfg->host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        return -EINVAL;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->cfg = *cfg;
    h->cfg.host = NULL; /* not kept */
    if (h->cfg.max_message_bytes == 0)
        h->cfg.max_message_bytes = BURROW_HTTP_MAX_MESSAGE_DEFAULT;
    if (h->cfg.connection_limit == 0)
        h->cfg.connection_limit = 10000;
    if (h->cfg.connection_timeout == 0)
        h->cfg.connection_timeout = 65;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->wkmask = 255;
    h->wkb = calloc(h->wkmask + 1, sizeof(*h->wkb));
    h->store = burrow_store_create(on_visible, h);
    if (h->wkb == NULL || h->store == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    h->d = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
        h->cfg.connection_limit, MHD_OPTION_CONNECTION_TIMEOUT, h->cfg.connection_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned)LISTEN_BACKLOG, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_URI_LOG_CALLBACK, uri_log, h,
        MHD_OPTION_END);
    if (h->d == NULL) {
        rc = errno ? -errno : -EADDRINUSE;
        goto out;
    }
    di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : cfg->port;
    burrow_metrics_started();
    if (pthread_create(&h->cleaner, NULL, cleaner_main, h) != 0) {
        rc = -EAGAIN;
        goto out;
    }
    h->cleaner_started = true;
    *out = h;
    return 0;
out:
    burrow_http_stop(h);
    return rc;
}

uint16_t
burrow_http_port(const struct burrow_http *h)
{
    return h->port;
}

size_t
burrow_http_messages(struct burrow_http *h)
{
    struct burrow_store_stats st;

    pthread_mutex_lock(&h->lock);
    burrow_store_stats(h->store, &st);
    pthread_mutex_unlock(&h->lock);
    return st.messages;
}

void
burrow_http_stop(struct burrow_http *h)
{
    if (h == NULL)
        return;
    /* Release every waiter (it answers 404 on its next run) and refuse new
     * ones, then stop the cleaner and the daemon. */
    lock(h);
    h->stopping = true;
    while (h->waiters)
        waiter_wake(h, h->waiters);
    pthread_cond_broadcast(&h->cond);
    unlock_wake(h);
    if (h->cleaner_started)
        pthread_join(h->cleaner, NULL);
    if (h->d)
        MHD_stop_daemon(h->d);
    burrow_store_destroy(h->store);
    free(h->wkb);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
