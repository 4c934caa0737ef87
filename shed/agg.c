/* SPDX-License-Identifier: ISC */
/*
 * shed/agg: the aggregator's request state machine (see agg.h and
 * docs/aggregator.md). One struct shed_agg_req per client request walks
 * through phases, each a batch on the fan-out engine:
 *
 *   marker probe   the stamp of the client's marker (when no cursor)
 *   fetch          a window of every server after the page's position, in
 *                  waves: the first asks every server, the next only the
 *                  servers whose window ran out before the page was full
 *   dedup probe    does an earlier-preference server hold a copy?
 *   destr op       destructive op with a limit, in rounds: the oldest
 *                  candidates are fetched, then each server that holds some
 *                  changes exactly its range of them (shed_after/shed_upto)
 *   destr clean    a claim deletes the losing copies it just hid
 *   ids delete     deleting selected accounts / queues, in slices
 *   wait poll      non-destructive long-poll on every server, first wins
 *
 * Every list is in the global (stamp, id) order the backends' stamps give
 * (docs/aggregator.md "The global order"). The membership (servers, each
 * bucket's preference rows) is copied out of the routing view when the
 * request starts, so nothing here touches the registry afterwards. Nothing
 * runs long on the loop: big operations are cut into rounds or slices, each
 * a batch, and the loop serves other requests in between.
 */
#include "shed/agg.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "common/clock.h"
#include "common/log.h"
#include "proto/burrow.h"
#include "proto/marker.h"
#include "shed/fanout.h"
#include "shed/http.h"
#include "shed/line.h"
#include "shed/merge.h"

#define NOPOS          UINT32_MAX
#define PREF_MAX       (2 * RING_MAX_R)
#define QBUF_MAX       (2 * PROTO_BURROW_ID_MAX + 64)
#define BACKENDS_MAX   4096
#define PAGE_WAVES     4                /* waves of one page fetch, the first included */
#define EMPTY_WAVES    16               /* ... and while it has nothing (losing copies only) */
#define WINDOW_MAX     10000            /* widest window asked of one server */
#define DESTR_CHUNK    1000             /* candidates per round of a destructive op */
#define IDLE_ROUNDS    16               /* rounds in a row that took nothing: stop */
#define DEL_SLICE      32               /* deletes in flight for one account/queue delete */
#define IDS_SLICE      64               /* servers asked at once for an account/queue list */
#define DEL_MAX        262144           /* backend deletes of one account/queue delete */
#define LOOKUP_WALK    (RING_MAX_R + 8) /* servers a lookup asks per generation */
#define LOOKUP_DOWN_MS 300              /* timeout for a server the view has down */

#define EMPTY_SLOTS  4096 /* remembered empty replicas (direct-mapped) */
#define EMPTY_MAX_MS 1000 /* ... for this long: under the handoff's 2 s settle */

/* A replica (not the first live server of any of the account's rows) that
 * answered a page with "no such queue" at its clock: it holds nothing of
 * the queue older than that clock. See empty_get(). */
struct empty {
    XXH128_hash_t key; /* of (backend, account, queue) */
    int64_t clock;     /* its Shed-Clock then */
    uint64_t at_ms;    /* monotonic, when it answered; 0: free */
};

struct shed_agg {
    struct shed_fanout *fan;
    _Atomic bool list_all;
    _Atomic uint64_t timeout_ms;
    size_t max_probes;
    pthread_mutex_t elock; /* guards empty[] */
    struct empty *empty;   /* EMPTY_SLOTS entries */
    _Atomic int64_t clock; /* the latest Shed-Clock any backend sent */
};

/* Process-wide counters, so /metrics needs no aggregator instance. */
static _Atomic uint64_t n_requests, n_backend_reqs, n_backend_errors, n_partial, n_probes, n_waves2,
    n_lookups, n_rounds, n_slices;

enum phase {
    PH_NONE = 0,
    PH_IDS,         /* account / queue lists */
    PH_IDS_DEL,     /* deleting the selected accounts / queues, one slice */
    PH_MARKER,      /* marker probe */
    PH_FETCH,       /* message list windows */
    PH_DEDUP,       /* dedup probes */
    PH_DESTR_ALL,   /* destructive, unlimited, parallel */
    PH_DESTR_OP,    /* destructive with limit: one round's ranges */
    PH_DESTR_CLEAN, /* destructive with limit: delete the losing copies just hidden */
    PH_WAIT,        /* long-poll */
    PH_BADDETAIL,   /* non-destructive check of a bad detail */
    PH_LOOKUP,      /* one message asked of every server it may live on */
};

enum method { M_GET, M_POST, M_DELETE };

struct backend {
    char id[RING_ID_MAX + 1];
    char url[SHED_URL_MAX];
    bool live;   /* not known down */
    bool failed; /* unreachable during this request */
    bool writer; /* first live server of one of the account's rows (mark_writers()) */
};

struct gen {
    struct ring_config cfg;
    uint32_t row[RING_MAX_K][RING_MAX_R]; /* backend indices, NOPOS when none */
};

struct probe {
    uint32_t list, item, be;
};

/* A position in the global order: (stamp, id). */
struct pos {
    bool set;    /* false: the beginning */
    bool has_id; /* false: past the whole stamp */
    int64_t stamp;
    size_t idlen;
    char id[PROTO_BURROW_ID_MAX];
};

/* One backend delete of an account/queue delete. */
struct deljob {
    uint32_t be, list, item;
};

/* Per list slot of a fetch. */
enum { SLOT_FROM_START = 1, SLOT_CONTINUED = 2, SLOT_CACHED = 4 };

struct shed_agg_req {
    struct shed_agg *agg;
    shed_agg_done_fn done;
    void *done_arg;
    _Atomic bool finished;
    _Atomic unsigned refs; /* the caller's, plus one per batch on the engine */

    /* request */
    enum method m;
    bool lookup;         /* a single-message lookup (SHED_AGG_LOOKUP_PREFIX) */
    const char *lmethod; /* its method, as sent to every candidate */
    uint8_t *lseen;      /* lookup: per batch position 0 pending, 1 done, 2 a 2xx */
    enum proto_burrow_level level;
    char ids[3 * PROTO_BURROW_ID_MAX + 3];
    struct proto_burrow_path path;
    struct proto_burrow_query q;
    char qbuf[QBUF_MAX];
    enum proto_burrow_detail detail;  /* effective, for the client */
    enum proto_burrow_detail bdetail; /* asked of backends */
    struct proto_marker_cursor cursor;
    bool has_cursor;
    uint64_t timeout_ms;
    uint64_t deadline; /* wait deadline, monotonic ms; 0 without wait */

    /* membership snapshot */
    struct backend *be; /* sorted by id */
    size_t nbe;
    struct gen gens[2];
    size_t ngens;

    /* progress */
    enum phase phase;
    struct pos start; /* where the client's list starts (its marker) */
    struct pos after; /* where the running fetch starts */
    uint32_t *order;  /* backend index per list slot (or batch position) */
    uint8_t *sflags;  /* SLOT_* per list slot */
    int64_t *slim;    /* the limit each list slot's server was sent (0: none) */
    int64_t *bwin;    /* first-wave window per backend (window_of()) */
    struct shed_merge_list *lists;
    size_t nlists, nlists_cap;
    struct shed_merge_pick *picks;
    size_t npicks;
    struct shed_merge_cut cut;
    struct probe *probes;
    size_t nprobes;
    size_t nvisit;       /* live servers of the request (order[0..nvisit) at the first wave) */
    int wave;            /* page fetch: waves sent so far */
    size_t wave_from;    /* first list slot of the running wave */
    int64_t wave_limit;  /* per-server limit of the running wave */
    int64_t fetch_limit; /* what the running fetch wants in total (0: all) */
    enum proto_burrow_detail fdetail; /* detail of the running fetch */
    int64_t first_limit;              /* per-server limit of the first wave */
    bool refreshed;                   /* the remembered empty replicas were asked after all */
    bool any_answer;                  /* some server answered during this fetch */
    char notfound[128];               /* a 404 text no rank below covers */
    int nf_rank;                      /* 1 account, 2 queue, 3 message exist somewhere */

    /* destructive with a limit */
    int64_t remaining;
    struct pos upto;                /* the round's last candidate */
    size_t round_cands;             /* candidates of the running round */
    bool round_more;                /* more may follow them */
    unsigned idle;                  /* rounds in a row that took nothing */
    struct shed_merge_list *acc;    /* every round's answers, kept to the end */
    uint32_t *acc_be;               /* their backends */
    size_t nacc, acc_cap, acc_from; /* acc_from: the running round's first */

    /* account / queue lists */
    size_t ids_next; /* next backend to ask */

    /* account / queue delete */
    struct deljob *jobs;
    size_t njobs, jobs_next;

    /* answer */
    struct shed_merge_out out;
    char partial[SHED_AGG_HEADER_MAX];
    char link[SHED_AGG_HEADER_MAX];
    bool retry_after;
};

/* ---------------------------------------------------------------- setup */

int
shed_agg_create(const struct shed_agg_config *cfg, struct shed_agg **out)
{
    struct shed_fanout_config fc = {0};
    struct shed_agg *agg;
    int rc;

    agg = calloc(1, sizeof(*agg));
    if (agg == NULL)
        return -ENOMEM;
    fc.max_body = cfg->max_body;
    fc.max_conns = 512;
    fc.external = cfg->external;
    rc = shed_fanout_create(&fc, &agg->fan);
    if (rc < 0) {
        free(agg);
        return rc;
    }
    agg->max_probes = cfg->max_probes ? cfg->max_probes : 1024;
    agg->empty = calloc(EMPTY_SLOTS, sizeof(*agg->empty));
    if (agg->empty == NULL) {
        shed_fanout_destroy(agg->fan);
        free(agg);
        return -ENOMEM;
    }
    pthread_mutex_init(&agg->elock, NULL);
    shed_agg_reconfigure(agg, cfg);
    *out = agg;
    return 0;
}

void
shed_agg_reconfigure(struct shed_agg *agg, const struct shed_agg_config *cfg)
{
    atomic_store(&agg->list_all, cfg->list_all);
    atomic_store(&agg->timeout_ms, cfg->backend_timeout_ms ? cfg->backend_timeout_ms : 2000);
    shed_fanout_set_busy_poll(agg->fan, cfg->busy_poll_us * 1000);
}

void
shed_agg_destroy(struct shed_agg *agg)
{
    if (agg == NULL)
        return;
    shed_fanout_destroy(agg->fan);
    pthread_mutex_destroy(&agg->elock);
    free(agg->empty);
    free(agg);
}

uint64_t
shed_agg_backend_errors(void)
{
    return atomic_load(&n_backend_errors);
}

size_t
shed_agg_metrics(char *buf, size_t len)
{
    int n;

    if (len == 0)
        return 0;
    n = snprintf(
        buf, len,
        "# HELP shed_agg_requests_total List requests answered by the aggregator.\n"
        "# TYPE shed_agg_requests_total counter\n"
        "shed_agg_requests_total %llu\n"
        "# HELP shed_agg_backend_requests_total Requests the aggregator sent to "
        "backends.\n"
        "# TYPE shed_agg_backend_requests_total counter\n"
        "shed_agg_backend_requests_total %llu\n"
        "# HELP shed_agg_backend_errors_total Backend requests of the aggregator "
        "that got no answer or a 5xx.\n"
        "# TYPE shed_agg_backend_errors_total counter\n"
        "shed_agg_backend_errors_total %llu\n"
        "# HELP shed_agg_partial_total Aggregated answers marked Shed-Partial.\n"
        "# TYPE shed_agg_partial_total counter\n"
        "shed_agg_partial_total %llu\n"
        "# HELP shed_agg_dedup_probes_total Single-message probes for duplicates.\n"
        "# TYPE shed_agg_dedup_probes_total counter\n"
        "shed_agg_dedup_probes_total %llu\n"
        "# HELP shed_agg_second_waves_total Pages whose first wave ran out on some "
        "server before the page was full, so that those servers were asked again.\n"
        "# TYPE shed_agg_second_waves_total counter\n"
        "shed_agg_second_waves_total %llu\n"
        "# HELP shed_agg_lookups_total Single-message requests the aggregator "
        "looked up on every server the message may live on.\n"
        "# TYPE shed_agg_lookups_total counter\n"
        "shed_agg_lookups_total %llu\n"
        "# HELP shed_agg_destructive_rounds_total Rounds of destructive operations "
        "with a limit (candidates fetched, then their ranges changed).\n"
        "# TYPE shed_agg_destructive_rounds_total counter\n"
        "shed_agg_destructive_rounds_total %llu\n"
        "# HELP shed_agg_delete_slices_total Slices of account and queue deletes "
        "(at most 32 backend deletes each).\n"
        "# TYPE shed_agg_delete_slices_total counter\n"
        "shed_agg_delete_slices_total %llu\n",
        (unsigned long long)atomic_load(&n_requests),
        (unsigned long long)atomic_load(&n_backend_reqs),
        (unsigned long long)atomic_load(&n_backend_errors),
        (unsigned long long)atomic_load(&n_partial), (unsigned long long)atomic_load(&n_probes),
        (unsigned long long)atomic_load(&n_waves2), (unsigned long long)atomic_load(&n_lookups),
        (unsigned long long)atomic_load(&n_rounds), (unsigned long long)atomic_load(&n_slices));
    if (n < 0)
        return 0;
    return (size_t)n < len ? (size_t)n : len - 1;
}

bool
shed_agg_is_lookup(const char *path)
{
    return strncmp(path, SHED_AGG_LOOKUP_PREFIX "/", sizeof(SHED_AGG_LOOKUP_PREFIX)) == 0;
}

bool
shed_agg_wants(const char *path, size_t len)
{
    char buf[3 * PROTO_BURROW_ID_MAX + 3];
    struct proto_burrow_path p;
    int rc;

    if (shed_agg_is_lookup(path))
        return true; /* begin() answers 404 / 400 for what is not a message */
    rc = proto_burrow_parse_path(path, len, buf, sizeof(buf), &p);

    /* Bad encodings at list level are ours too (a clean 400). */
    if (rc == -PROTO_EBADENC || rc == -PROTO_ETOOLONG) {
        size_t slashes = 0;

        for (size_t i = 0; i < len; i++)
            slashes += path[i] == '/';
        return len > 5 && memcmp(path, "/v1.0", 5) == 0 && slashes <= 3;
    }
    return rc == 0 && p.level >= PROTO_BURROW_ACCOUNTS && p.level <= PROTO_BURROW_MESSAGES;
}

/* ------------------------------------------------------------ finishing */

static void
finish(struct shed_agg_req *r)
{
    size_t nfail = 0, ntot = r->nbe, o;

    for (size_t i = 0; i < r->nbe; i++)
        nfail += r->be[i].failed || !r->be[i].live;
    if (nfail > 0 && r->out.status != 400 && r->out.status != 403 && r->out.status != 405) {
        int n = snprintf(r->partial, sizeof(r->partial), "%zu of %zu backends unreachable: ", nfail,
                         ntot);

        o = n > 0 ? (size_t)n : 0;
        for (size_t i = 0; i < r->nbe && o < sizeof(r->partial); i++) {
            long w;

            if (!r->be[i].failed && r->be[i].live)
                continue;
            if (o + 2 >= sizeof(r->partial))
                break;
            if (r->partial[o - 1] != ' ') {
                r->partial[o++] = ',';
            }
            w = proto_pct_encode(r->be[i].id, strlen(r->be[i].id), r->partial + o,
                                 sizeof(r->partial) - o);
            if (w < 0)
                break;
            o += (size_t)w;
        }
        r->partial[o < sizeof(r->partial) ? o : sizeof(r->partial) - 1] = '\0';
        atomic_fetch_add(&n_partial, 1);
    }
    atomic_store(&r->finished, true);
    r->done(r->done_arg);
}

static void
answer_text(struct shed_agg_req *r, int status, const char *text)
{
    shed_merge_out_clear(&r->out);
    if (shed_merge_text(&r->out, status, text, strlen(text)) < 0)
        r->out.status = status; /* body lost, status kept */
    finish(r);
}

static void
answer_empty(struct shed_agg_req *r, int status)
{
    shed_merge_out_clear(&r->out);
    r->out.status = status;
    finish(r);
}

static void
answer_unavailable(struct shed_agg_req *r, const char *why)
{
    r->retry_after = true;
    answer_text(r, 503, why);
}

/* ------------------------------------------------------------- URLs */

struct sbuf {
    char *p;
    size_t len, cap;
    bool over;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->over || b->len + n + 1 > b->cap) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void
sb_enc(struct sbuf *b, const char *s, size_t n)
{
    long w;

    if (b->over)
        return;
    w = proto_pct_encode(s, n, b->p + b->len, b->cap - b->len);
    if (w < 0) {
        b->over = true;
        return;
    }
    b->len += (size_t)w;
}

static void
sb_int(struct sbuf *b, const char *key, int64_t v)
{
    char t[48];
    int n = snprintf(t, sizeof(t), "%s=%lld&", key, (long long)v);

    sb_add(b, t, (size_t)n);
}

static const char *
detail_name(enum proto_burrow_detail d)
{
    switch (d) {
    case PROTO_DETAIL_NONE:
        return "none";
    case PROTO_DETAIL_ID:
        return "id";
    case PROTO_DETAIL_ATTRIBUTES:
        return "attributes";
    case PROTO_DETAIL_BODY:
        return "body";
    default:
        return "all";
    }
}

/* The path of the request's level (plus <msg> when given) on backend <b>. */
static void
sb_path(struct sbuf *b, const struct shed_agg_req *r, const char *msg, size_t mlen)
{
    sb_str(b, "/v1.0");
    if (r->level >= PROTO_BURROW_QUEUES) {
        sb_str(b, "/");
        sb_enc(b, r->path.account.ptr, r->path.account.len);
    }
    if (r->level >= PROTO_BURROW_MESSAGES) {
        sb_str(b, "/");
        sb_enc(b, r->path.queue.ptr, r->path.queue.len);
    }
    if (msg != NULL) {
        sb_str(b, "/");
        sb_enc(b, msg, mlen);
    }
}

/* What one backend request carries besides the path. */
struct urlopts {
    const char *detail; /* NULL: not sent */
    int64_t limit;      /* <= 0: not sent */
    bool marker;        /* send the client's marker (plain Burrow) */
    bool attrs;         /* send ttl / hide */
    int64_t wait;       /* > 0: send */
    bool match_hidden;
    bool stamps;            /* shed_stamps=1 */
    const struct pos *from; /* shed_after (+ marker as its id), NULL or unset: none */
    const struct pos *upto; /* shed_upto (+ shed_upto_id), NULL: none */
    int64_t clock;          /* > 0: shed_clock */
};

static void
sb_pos(struct sbuf *b, const char *key, const char *idkey, const struct pos *p)
{
    sb_int(b, key, p->stamp);
    if (p->has_id) {
        sb_str(b, idkey);
        sb_enc(b, p->id, p->idlen);
        sb_str(b, "&");
    }
}

static int
make_url(char *out, size_t len, const struct shed_agg_req *r, uint32_t be, const char *msg,
         size_t mlen, const struct urlopts *o)
{
    struct sbuf b = {out, 0, len, false};

    out[0] = '\0';
    sb_str(&b, r->be[be].url);
    sb_path(&b, r, msg, mlen);
    sb_str(&b, "?");
    if (o->detail != NULL) {
        sb_str(&b, "detail=");
        sb_str(&b, o->detail);
        sb_str(&b, "&");
    }
    if (o->limit > 0)
        sb_int(&b, "limit", o->limit);
    if (o->marker && r->q.marker.ptr != NULL) {
        sb_str(&b, "marker=");
        sb_enc(&b, r->q.marker.ptr, r->q.marker.len);
        sb_str(&b, "&");
    }
    if (o->attrs && r->q.has_ttl)
        sb_int(&b, "ttl", r->q.ttl);
    if (o->attrs && r->q.has_hide)
        sb_int(&b, "hide", r->q.hide);
    if (o->wait > 0)
        sb_int(&b, "wait", o->wait);
    if (o->match_hidden)
        sb_str(&b, "match_hidden=true&");
    if (o->stamps)
        sb_str(&b, "shed_stamps=1&");
    if (o->clock > 0)
        sb_int(&b, "shed_clock", o->clock);
    if (o->from != NULL && o->from->set)
        sb_pos(&b, "shed_after", "marker=", o->from);
    if (o->upto != NULL && o->upto->set)
        sb_pos(&b, "shed_upto", "shed_upto_id=", o->upto);
    if (b.over)
        return -ENAMETOOLONG;
    if (out[b.len - 1] == '&' || out[b.len - 1] == '?')
        out[--b.len] = '\0';
    return 0;
}

static const char *
method_name(enum method m)
{
    return m == M_GET ? "GET" : m == M_POST ? "POST" : "DELETE";
}

/* ------------------------------------------------------ batch plumbing */

static void on_batch(void *arg, const struct shed_fanout_res *res, size_t n);
static bool on_each(void *arg, size_t idx, const struct shed_fanout_res *res);
static void req_destroy(struct shed_agg_req *r);
static void lookup_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
static bool lookup_each(struct shed_agg_req *r, size_t idx, const struct shed_fanout_res *res);

/* A request's batch under construction. */
struct batch {
    struct shed_fanout_req *reqs;
    char *urls;
    size_t n, cap;
};

static int
batch_init(struct batch *b, size_t cap)
{
    b->n = 0;
    b->cap = cap;
    b->reqs = calloc(cap ? cap : 1, sizeof(*b->reqs));
    b->urls = malloc((cap ? cap : 1) * SHED_FANOUT_URL_MAX);
    if (b->reqs == NULL || b->urls == NULL) {
        free(b->reqs);
        free(b->urls);
        return -ENOMEM;
    }
    return 0;
}

static void
batch_free(struct batch *b)
{
    free(b->reqs);
    free(b->urls);
}

static int
batch_add(struct batch *b, const struct shed_agg_req *r, const char *method, uint32_t be,
          const char *msg, size_t mlen, const struct urlopts *o, uint64_t timeout_ms)
{
    char *u = b->urls + b->n * SHED_FANOUT_URL_MAX;
    int rc;

    if (b->n == b->cap)
        return -ENOSPC;
    rc = make_url(u, SHED_FANOUT_URL_MAX, r, be, msg, mlen, o);
    if (rc < 0)
        return rc;
    b->reqs[b->n].method = method;
    b->reqs[b->n].url = u;
    b->reqs[b->n].timeout_ms = (long)timeout_ms;
    b->reqs[b->n].long_poll = o->wait > 0;
    b->n++;
    return 0;
}

/* Submit; on failure answer 503 (the request is finished either way). */
static void
batch_go(struct shed_agg_req *r, struct batch *b, enum phase ph)
{
    int rc;

    r->phase = ph;
    atomic_fetch_add(&r->refs, 1); /* dropped at the end of on_batch() */
    if (b->n == 0) {
        batch_free(b);
        on_batch(r, NULL, 0);
        return;
    }
    rc = shed_fanout_submit(r->agg->fan, b->reqs, b->n,
                            ph == PH_WAIT || ph == PH_LOOKUP ? on_each : NULL, on_batch, r);
    if (rc == 0)
        atomic_fetch_add(&n_backend_reqs, b->n);
    batch_free(b);
    if (rc < 0) {
        atomic_fetch_sub(&r->refs, 1); /* the caller still holds its own */
        answer_unavailable(r, "aggregator busy");
    }
}

static void
mark_failed(struct shed_agg_req *r, uint32_t be, const char *why, int status, int err)
{
    if (r->be[be].failed)
        return;
    r->be[be].failed = true;
    atomic_fetch_add(&n_backend_errors, 1);
    log_debug("agg: backend=%s %s (status %d, err %d)", r->be[be].id, why, status, err);
}

/* Classify one backend result: true when it is a usable Burrow answer. */
static bool
usable(struct shed_agg_req *r, uint32_t be, const struct shed_fanout_res *res)
{
    if (res->err == -ECANCELED)
        return false;
    if (res->status == 0 || res->status >= 500) {
        mark_failed(r, be, "unreachable", res->status, res->err);
        return false;
    }
    return true;
}

/* 404 texts, from the most to the least that exists somewhere (what one
 * Burrow server would say for the union of the backends). */
static const char *const nf_text[] = {NULL, "Account not found", "Queue not found",
                                      "Message not found"};

/* Note what one answer says exists: a 404's text, or that a 200 found the
 * account (queue lists) or the queue (message lists). */
static void
keep_notfound(struct shed_agg_req *r, int status, const char *body, size_t len)
{
    int rank = 0;

    if (status == 200 || status == 204) {
        rank = r->level == PROTO_BURROW_MESSAGES ? 3 : r->level == PROTO_BURROW_QUEUES ? 2 : 1;
    } else if (status == 404) {
        for (int i = 1; i <= 3; i++)
            if (len == strlen(nf_text[i]) && memcmp(body, nf_text[i], len) == 0)
                rank = i;
        if (rank == 0 && r->notfound[0] == '\0' && len > 0 && len < sizeof(r->notfound)) {
            memcpy(r->notfound, body, len);
            r->notfound[len] = '\0';
        }
    }
    if (rank > r->nf_rank)
        r->nf_rank = rank;
}

static const char *
notfound_text(struct shed_agg_req *r)
{
    if (r->level == PROTO_BURROW_ACCOUNTS)
        return nf_text[1];
    if (r->nf_rank > 0)
        return nf_text[r->nf_rank];
    if (r->notfound[0] != '\0')
        return r->notfound;
    return r->level == PROTO_BURROW_QUEUES ? nf_text[1] : nf_text[2];
}

/* A 400 from any backend is the answer. Returns true when it answered. */
static bool
pass_400(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (res[i].status == 400) {
            answer_text(r, 400, res[i].body);
            return true;
        }
    }
    return false;
}

static void
lists_reset(struct shed_agg_req *r)
{
    for (size_t i = 0; i < r->nlists; i++)
        shed_merge_list_clear(&r->lists[i]);
    r->nlists = 0;
}

/* Parse answer <res> of backend <be> into <l> (zeroed here). Answers to
 * requests with shed_stamps=1 (<stamps>) must carry Shed-Clock: a backend
 * without shed's ordering extension cannot be merged in order, and is
 * treated as unreachable. Returns true when <l> holds a usable answer. */
static bool
take_one(struct shed_agg_req *r, uint32_t be, const struct shed_fanout_res *res, int64_t asked,
         bool stamps, struct shed_merge_list *l)
{
    memset(l, 0, sizeof(*l));
    if (!usable(r, be, res))
        return false;
    if (stamps && res->clock <= 0 && res->status != 400) {
        if (!r->be[be].failed)
            log_warnx("agg: backend=%s answered without Shed-Clock: it lacks shed's ordering "
                      "extension (docs/aggregator.md)",
                      r->be[be].id);
        mark_failed(r, be, "no Shed-Clock", res->status, 0);
        return false;
    }
    keep_notfound(r, res->status, res->body, res->len);
    if (shed_merge_parse(l, res->status, res->body, res->len, asked) < 0) {
        /* A backend that answers garbage is as good as unreachable. */
        mark_failed(r, be, "answered garbage", res->status, 0);
        l->status = 0;
        return false;
    }
    l->clock = res->clock;
    for (int64_t seen = atomic_load(&r->agg->clock);
         res->clock > seen && !atomic_compare_exchange_weak(&r->agg->clock, &seen, res->clock);)
        ;
    return true;
}

/* The clock every backend a message request asks goes on to (shed_clock):
 * the latest any backend or this host has, so that on backends whose wall
 * clocks lag, what is created after this request still sorts after what
 * it shows, and the horizon of its answers is at least that clock. */
static int64_t
agg_clock(const struct shed_agg_req *r)
{
    int64_t seen = atomic_load(&r->agg->clock), now = (int64_t)(clock_real_ns() / 1000);

    return seen > now ? seen : now;
}

/* Parse <n> answers into list slots [off, off + n) (servers order[off..]). */
static bool
take_lists_at(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n, size_t off,
              int64_t asked, bool stamps)
{
    bool any = false;

    for (size_t k = 0; k < n; k++) {
        size_t i = off + k;

        any |= take_one(r, r->order[i], &res[k], asked, stamps, &r->lists[i]);
        if (r->nlists < i + 1)
            r->nlists = i + 1;
    }
    return any;
}

static int
picks_room(struct shed_agg_req *r, size_t need)
{
    free(r->picks);
    r->picks = calloc(need + 1, sizeof(*r->picks));
    r->npicks = 0;
    return r->picks == NULL ? -ENOMEM : 0;
}

static void
render_from(struct shed_agg_req *r, const struct shed_merge_list *lists)
{
    shed_merge_out_clear(&r->out);
    if (shed_merge_render(r->level, r->detail, lists, r->picks, r->npicks, notfound_text(r),
                          &r->out) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    finish(r);
}

static void
render(struct shed_agg_req *r)
{
    render_from(r, r->lists);
}

/* Room for one more list slot. */
static int
slot_grow(struct shed_agg_req *r)
{
    size_t cap = r->nlists_cap * 2;
    struct shed_merge_list *l;
    uint32_t *o;
    uint8_t *f;

    if (r->nlists < r->nlists_cap)
        return 0;
    l = realloc(r->lists, cap * sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    r->lists = l;
    o = realloc(r->order, cap * sizeof(*o));
    if (o == NULL)
        return -ENOMEM;
    r->order = o;
    f = realloc(r->sflags, cap);
    if (f == NULL)
        return -ENOMEM;
    r->sflags = f;
    {
        int64_t *sl = realloc(r->slim, cap * sizeof(*sl));

        if (sl == NULL)
            return -ENOMEM;
        r->slim = sl;
    }
    memset(r->lists + r->nlists_cap, 0, (cap - r->nlists_cap) * sizeof(*l));
    r->nlists_cap = cap;
    return 0;
}

/* ------------------------------------------------- account / queue lists */

/* The next IDS_SLICE live servers of an account or queue list (or its
 * broadcast DELETE), from r->ids_next: in a big cell (/v1.0 asks every
 * member) the loop serves other requests between slices. */
static void
ids_slice(struct shed_agg_req *r)
{
    struct urlopts o = {.detail = "all", .stamps = true};
    const char *method = "GET";
    struct batch b;

    /* DELETE without limit or marker takes everything: one broadcast. */
    if (r->m == M_DELETE && r->q.limit <= 0 && r->q.marker.ptr == NULL)
        method = "DELETE";
    if (batch_init(&b, IDS_SLICE) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    r->wave_from = r->nlists;
    for (; r->ids_next < r->nbe && b.n < IDS_SLICE; r->ids_next++) {
        uint32_t i = (uint32_t)r->ids_next;

        if (!r->be[i].live)
            continue;
        r->order[r->wave_from + b.n] = i;
        if (batch_add(&b, r, method, i, NULL, 0, &o, r->timeout_ms) < 0) {
            batch_free(&b);
            answer_text(r, 400, "request too long");
            return;
        }
    }
    batch_go(r, &b, PH_IDS);
}

static void
ids_fetch(struct shed_agg_req *r)
{
    r->nlists = 0;
    r->ids_next = 0;
    r->any_answer = false;
    ids_slice(r);
}

static void ids_del_next(struct shed_agg_req *r);

/* DELETE with a marker or a limit: the selected ids are deleted on exactly
 * the servers that listed them, DEL_SLICE at a time, so that the loop keeps
 * serving while thousands of queues go. */
static void
ids_del_start(struct shed_agg_req *r)
{
    struct shed_merge_set sel;
    size_t n = 0;

    if (shed_merge_set_init(&sel, r->npicks) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t p = 0; p < r->npicks; p++) {
        const struct shed_merge_item *it = &r->lists[r->picks[p].list].items[r->picks[p].item];

        if (shed_merge_set_add(&sel, it->id, it->idlen) < 0) {
            shed_merge_set_free(&sel);
            answer_unavailable(r, "out of memory");
            return;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t li = 0; li < r->nlists; li++)
            for (size_t ii = 0; ii < r->lists[li].n; ii++) {
                const struct shed_merge_item *it = &r->lists[li].items[ii];

                if (!shed_merge_set_has(&sel, it->id, it->idlen))
                    continue;
                if (pass == 1)
                    r->jobs[n] = (struct deljob){r->order[li], (uint32_t)li, (uint32_t)ii};
                n++;
            }
        if (pass == 0) {
            if (n > DEL_MAX) {
                char text[160];

                shed_merge_set_free(&sel);
                snprintf(text, sizeof(text),
                         "too many to delete at once (%zu server deletes, at most %d): "
                         "use a smaller limit and repeat",
                         n, DEL_MAX);
                answer_text(r, 400, text);
                return;
            }
            r->jobs = calloc(n ? n : 1, sizeof(*r->jobs));
            if (r->jobs == NULL) {
                shed_merge_set_free(&sel);
                answer_unavailable(r, "out of memory");
                return;
            }
            n = 0;
        }
    }
    shed_merge_set_free(&sel);
    r->njobs = n;
    r->jobs_next = 0;
    ids_del_next(r);
}

static void
ids_del_next(struct shed_agg_req *r)
{
    struct urlopts o = {.detail = "none", .match_hidden = true};
    size_t n = r->njobs - r->jobs_next;
    struct batch b;

    if (n == 0) {
        render(r);
        return;
    }
    if (n > DEL_SLICE)
        n = DEL_SLICE;
    if (batch_init(&b, n) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t k = 0; k < n; k++) {
        const struct deljob *j = &r->jobs[r->jobs_next + k];
        const struct shed_merge_item *it = &r->lists[j->list].items[j->item];

        /* DELETE /v1.0/<account> deletes an account; DELETE
         * /v1.0/a/<queue>?match_hidden=true empties a queue. */
        if (batch_add(&b, r, "DELETE", j->be, it->id, it->idlen, &o, r->timeout_ms) < 0) {
            batch_free(&b);
            answer_text(r, 400, "request too long");
            return;
        }
    }
    atomic_fetch_add(&n_slices, 1);
    batch_go(r, &b, PH_IDS_DEL);
}

static void
ids_del_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    for (size_t k = 0; k < n; k++)
        (void)usable(r, r->jobs[r->jobs_next + k].be, &res[k]);
    r->jobs_next += n;
    ids_del_next(r);
}

static void
ids_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    long np;

    if (pass_400(r, res, n))
        return;
    r->any_answer |= take_lists_at(r, res, n, r->wave_from, 0, true);
    if (r->ids_next < r->nbe) {
        ids_slice(r);
        return;
    }
    if (!r->any_answer) {
        answer_unavailable(r, "no backend reachable");
        return;
    }
    if (picks_room(r, shed_merge_items(r->lists, r->nlists)) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    np = shed_merge_window(r->lists, r->nlists, r->q.marker.ptr, r->q.marker.len, r->q.limit,
                           r->picks, shed_merge_items(r->lists, r->nlists) + 1);
    if (np < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    r->npicks = (size_t)np;
    if (r->m == M_DELETE && r->npicks > 0 && (r->q.limit > 0 || r->q.marker.ptr != NULL)) {
        ids_del_start(r);
        return;
    }
    render(r);
}

/* ----------------------------------------------------- message helpers */

/* Preference order (backend indices) of the message <id> of this queue:
 * the current generation's row for its bucket, then the previous one's. */
static size_t
pref_of(const struct shed_agg_req *r, const char *id, size_t idlen, uint32_t *out)
{
    char key[2 * PROTO_BURROW_ID_MAX + 2];
    size_t klen = r->path.queue.len + 1 + idlen, n = 0;

    if (klen > sizeof(key))
        return 0;
    memcpy(key, r->path.queue.ptr, r->path.queue.len);
    key[r->path.queue.len] = '/';
    memcpy(key + r->path.queue.len + 1, id, idlen);
    for (size_t g = 0; g < r->ngens; g++) {
        const struct gen *gn = &r->gens[g];
        uint32_t ki = ring_key_index(&gn->cfg, key, klen);

        for (uint32_t j = 0; j < gn->cfg.r && j < RING_MAX_R; j++) {
            uint32_t be = gn->row[ki][j];
            bool dup = false;

            if (be == NOPOS)
                continue;
            for (size_t x = 0; x < n; x++)
                dup |= out[x] == be;
            if (!dup && n < PREF_MAX)
                out[n++] = be;
        }
    }
    return n;
}

/* Mark the backends that take the new writes of one of the account's
 * buckets: the first live server of each row, in either generation. One
 * pass over the rows (K x R per generation). */
static void
mark_writers(struct shed_agg_req *r)
{
    for (size_t i = 0; i < r->nbe; i++)
        r->be[i].writer = false;
    for (size_t g = 0; g < r->ngens; g++)
        for (uint32_t k = 0; k < r->gens[g].cfg.k; k++)
            for (uint32_t j = 0; j < RING_MAX_R; j++) {
                uint32_t b = r->gens[g].row[k][j];

                if (b != NOPOS && r->be[b].live) {
                    r->be[b].writer = true;
                    break;
                }
            }
}

static void msgs_run(struct shed_agg_req *r);
static void wait_poll(struct shed_agg_req *r);
static void page_done(struct shed_agg_req *r);
static void destr_op(struct shed_agg_req *r);
static void destr_finish(struct shed_agg_req *r);

static void
pos_set(struct pos *p, int64_t stamp, const char *id, size_t idlen)
{
    p->set = true;
    p->stamp = stamp;
    p->has_id = id != NULL;
    p->idlen = idlen > sizeof(p->id) ? sizeof(p->id) : idlen;
    if (p->idlen > 0)
        memcpy(p->id, id, p->idlen);
}

static void
pos_of(struct pos *p, const struct shed_merge_item *it)
{
    pos_set(p, it->stamp, it->id, it->idlen);
}

/* Is item <it> after position <p>? */
static bool
pos_before(const struct pos *p, const struct shed_merge_item *it)
{
    if (!p->set)
        return true;
    if (!p->has_id)
        return it->stamp > p->stamp;
    return proto_burrow_key_cmp(it->stamp, it->id, it->idlen, p->stamp, p->id, p->idlen) > 0;
}

/* Is item <it> at or before position <p>? */
static bool
pos_within(const struct pos *p, const struct shed_merge_item *it)
{
    return p->set && !pos_before(p, it);
}

/* Find the marker's stamp by asking its preference row (a single-message
 * GET finds hidden messages too). */
static void
marker_probe(struct shed_agg_req *r)
{
    uint32_t pref[PREF_MAX];
    size_t np = pref_of(r, r->q.marker.ptr, r->q.marker.len, pref);
    struct urlopts o = {.detail = "attributes", .stamps = true};
    struct batch b;

    if (batch_init(&b, np) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < np; i++) {
        if (!r->be[pref[i]].live)
            continue;
        r->order[b.n] = pref[i];
        if (batch_add(&b, r, "GET", pref[i], r->q.marker.ptr, r->q.marker.len, &o, r->timeout_ms) <
            0) {
            batch_free(&b);
            answer_text(r, 400, "request too long");
            return;
        }
    }
    batch_go(r, &b, PH_MARKER);
}

static void
marker_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    /* The first server in preference order that has it gives the position;
     * a marker nobody has is ignored, as in Burrow. */
    memset(&r->start, 0, sizeof(r->start));
    for (size_t i = 0; i < n; i++) {
        int64_t stamp;

        if (!usable(r, r->order[i], &res[i]) || res[i].status != 200)
            continue;
        if (shed_merge_stamp_of(res[i].body, res[i].len, &stamp) < 0) {
            mark_failed(r, r->order[i], "gave no stamp", res[i].status, 0);
            continue;
        }
        pos_set(&r->start, stamp, r->q.marker.ptr, r->q.marker.len);
        break;
    }
    msgs_run(r);
}

/* Every live server of the request, in order[0..n). */
static size_t
visit_list(struct shed_agg_req *r)
{
    size_t n = 0;

    for (uint32_t i = 0; i < r->nbe; i++)
        if (r->be[i].live)
            r->order[n++] = i;
    return n;
}

/* The first wave's window of each server for a page of <limit>. A queue's
 * messages are spread over the account's K buckets by hash, so a server
 * that is the first live server of c of them (in either generation) holds
 * about limit * c / K of any stretch of the queue: it is asked for that
 * plus three standard deviations plus two, so that a page seldom needs a
 * second wave (one in several hundred per server); a replica (c = 0) holds
 * failover copies at most and is asked for two; the only writer, for the
 * whole limit. */
static int64_t
window_of(int64_t limit, uint32_t c, uint32_t k)
{
    double p, mean, w;

    if (limit <= 0 || k == 0 || c >= k)
        return limit;
    if (c == 0)
        return limit < 2 ? limit : 2;
    p = (double)c / k;
    mean = (double)limit * p;
    w = mean + 3.0 * sqrt(mean * (1.0 - p)) + 2.0;
    return w >= (double)limit ? limit : (int64_t)ceil(w);
}

/* r->bwin[] for a page of <limit>; marks the writers too. */
static void
windows(struct shed_agg_req *r, int64_t limit)
{
    mark_writers(r);
    for (size_t i = 0; i < r->nbe; i++) {
        uint32_t best = 0, k = 1;

        for (size_t g = 0; g < r->ngens; g++) {
            uint32_t c = 0;

            for (uint32_t b = 0; b < r->gens[g].cfg.k; b++)
                for (uint32_t j = 0; j < RING_MAX_R; j++) {
                    uint32_t x = r->gens[g].row[b][j];

                    if (x != NOPOS && r->be[x].live) {
                        c += x == i;
                        break;
                    }
                }
            /* the larger share of the two generations */
            if ((uint64_t)c * k > (uint64_t)best * r->gens[g].cfg.k) {
                best = c;
                k = r->gens[g].cfg.k;
            }
        }
        r->bwin[i] = window_of(limit, best, k);
    }
}

/* Ask order[from..from+n) with their positions (<from_pos> per slot, or
 * r->after for all when NULL) and <limit> (< 0: each its first-wave
 * window); the slots are the new lists. */
static void
fetch_send(struct shed_agg_req *r, size_t from, size_t n, const struct pos *from_pos, int64_t limit)
{
    struct batch b;

    r->wave_from = from;
    r->wave_limit = limit;
    if (batch_init(&b, n) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t k = 0; k < n; k++) {
        struct urlopts o = {0};

        o.detail = detail_name(r->fdetail);
        o.limit = limit < 0 ? r->bwin[r->order[from + k]] : limit;
        r->slim[from + k] = o.limit;
        o.match_hidden = r->q.match_hidden;
        o.stamps = true;
        o.clock = agg_clock(r);
        o.from = from_pos != NULL ? &from_pos[k] : &r->after;
        if (batch_add(&b, r, "GET", r->order[from + k], NULL, 0, &o, r->timeout_ms) < 0) {
            batch_free(&b);
            answer_text(r, 400, "request too long");
            return;
        }
    }
    batch_go(r, &b, PH_FETCH);
}

/* ------------------------------------------------- empty replicas */

/* Servers that are not the first live server of one of the account's rows
 * (replicas) hold a queue's messages only after a failover, so they mostly
 * answer "Queue not found" (or "Account not found"): nothing of the queue,
 * hidden messages included. Such an answer is remembered with the server's
 * clock T for EMPTY_MAX_MS, and later pages skip that server and use T as
 * its clock in the horizon: a message created there later has a stamp
 * above T, so nothing at or below the horizon can be missing. A page that
 * the horizon cut while a remembered clock took part asks those servers
 * after all (fetch_refresh()). The only writes that bring an older stamp to
 * a server are the handoff's moves, and it moves to the first live server
 * of a row (a writer, never remembered) and only 2 s after a change: longer
 * than an entry lives, so no entry outlives the view it was made in. */
static XXH128_hash_t
empty_key(const struct shed_agg_req *r, uint32_t be)
{
    char k[RING_ID_MAX + 2 * PROTO_BURROW_ID_MAX + 3];
    size_t n = strlen(r->be[be].id) + 1;

    memcpy(k, r->be[be].id, n);
    memcpy(k + n, r->path.account.ptr, r->path.account.len);
    n += r->path.account.len;
    k[n++] = '/';
    memcpy(k + n, r->path.queue.ptr, r->path.queue.len);
    n += r->path.queue.len;
    return XXH3_128bits(k, n);
}

static struct empty *
empty_slot(struct shed_agg *agg, XXH128_hash_t k)
{
    return &agg->empty[k.low64 & (EMPTY_SLOTS - 1)];
}

static bool
empty_get(struct shed_agg_req *r, uint32_t be, int64_t *clock)
{
    XXH128_hash_t k = empty_key(r, be);
    uint64_t now = clock_mono_ms();
    struct empty *e;
    bool hit;

    pthread_mutex_lock(&r->agg->elock);
    e = empty_slot(r->agg, k);
    hit = e->at_ms != 0 && now - e->at_ms <= EMPTY_MAX_MS && XXH128_isEqual(e->key, k);
    if (hit)
        *clock = e->clock;
    pthread_mutex_unlock(&r->agg->elock);
    return hit;
}

/* Remember (<clock> > 0) or forget (0) what replica <be> said. */
static void
empty_set(struct shed_agg_req *r, uint32_t be, int64_t clock)
{
    XXH128_hash_t k = empty_key(r, be);
    struct empty *e;

    pthread_mutex_lock(&r->agg->elock);
    e = empty_slot(r->agg, k);
    if (clock > 0) {
        e->key = k;
        e->clock = clock;
        e->at_ms = clock_mono_ms();
    } else if (XXH128_isEqual(e->key, k)) {
        e->at_ms = 0;
    }
    pthread_mutex_unlock(&r->agg->elock);
}

/* Is this 404 body "nothing of the queue at all"? */
static bool
no_queue(const struct shed_fanout_res *res)
{
    return res->status == 404 &&
           ((res->len == 15 && memcmp(res->body, "Queue not found", 15) == 0) ||
            (res->len == 17 && memcmp(res->body, "Account not found", 17) == 0));
}

/* Note what the answers <res> of slots [from, from + n) say about
 * replicas. */
static void
empty_note(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t from, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        const struct shed_merge_list *l = &r->lists[from + k];
        uint32_t be = r->order[from + k];

        if (r->be[be].writer || l->status == 0)
            continue;
        if (no_queue(&res[k]) && l->clock > 0)
            empty_set(r, be, l->clock);
        else if (l->status == 200)
            empty_set(r, be, 0);
    }
}

/* A window of every live server after r->after: the first wave. Replicas
 * remembered empty are not asked: their slots, after the asked ones, say
 * 404 with the remembered clock. */
static void
fetch(struct shed_agg_req *r)
{
    size_t n, m = 0, c = 0;
    uint32_t *cached;
    int64_t lim;

    lists_reset(r);
    r->nvisit = n = visit_list(r);
    r->wave = 1;
    r->refreshed = false;
    windows(r, r->fetch_limit);
    lim = -1; /* per server: r->bwin[] */
    r->first_limit = lim;
    cached = calloc(n ? n : 1, sizeof(*cached));
    if (cached == NULL) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t be = r->order[i];
        int64_t clock;

        if (!r->be[be].writer && empty_get(r, be, &clock)) {
            struct shed_merge_list *l = &r->lists[n - 1 - c];

            memset(l, 0, sizeof(*l));
            l->status = 404;
            l->clock = clock;
            r->sflags[n - 1 - c] = SLOT_CACHED | SLOT_FROM_START;
            cached[c++] = be;
            continue;
        }
        r->order[m++] = be; /* m <= i: rewritten in place from the front */
    }
    for (size_t k = 0; k < c; k++)
        r->order[n - 1 - k] = cached[k];
    free(cached);
    for (size_t i = 0; i < m; i++)
        r->sflags[i] = r->after.set ? 0 : SLOT_FROM_START;
    r->nlists = n;
    r->any_answer = c > 0;
    fetch_send(r, 0, m, NULL, lim);
}

/* The horizon cut the page while a remembered replica's clock took part:
 * ask those replicas now, with the first wave's window, in new slots. */
static void
fetch_refresh(struct shed_agg_req *r)
{
    size_t from = r->nlists, n = 0;

    for (size_t i = 0; i < from; i++) {
        if (!(r->sflags[i] & SLOT_CACHED))
            continue;
        r->nlists = from + n;
        if (slot_grow(r) < 0) {
            answer_unavailable(r, "out of memory");
            return;
        }
        r->sflags[i] &= (uint8_t)~SLOT_CACHED;
        r->lists[i].status = 0; /* superseded: no clock, no items */
        r->lists[i].clock = 0;
        r->order[from + n] = r->order[i];
        r->sflags[from + n] = r->after.set ? 0 : SLOT_FROM_START;
        memset(&r->lists[from + n], 0, sizeof(r->lists[0]));
        n++;
    }
    r->nlists = from;
    r->refreshed = true;
    fetch_send(r, from, n, NULL, r->first_limit);
}

/* The page is short because some windows ran out first: ask each of those
 * servers for <want> more after the end of its window. */
static void
fetch_more(struct shed_agg_req *r, int64_t want)
{
    size_t from = r->nlists, n = 0;
    struct pos *at;

    at = calloc(r->nlists ? r->nlists : 1, sizeof(*at));
    if (at == NULL) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < from; i++) {
        struct shed_merge_list *l = &r->lists[i];

        if (l->status != 200 || !l->truncated || l->n == 0 || (r->sflags[i] & SLOT_CONTINUED))
            continue;
        if (slot_grow(r) < 0) {
            free(at);
            answer_unavailable(r, "out of memory");
            return;
        }
        l = &r->lists[i];
        pos_of(&at[n], &l->items[l->n - 1]);
        l->truncated = false; /* its tail comes in the new slot */
        r->sflags[i] |= SLOT_CONTINUED;
        r->order[r->nlists] = r->order[i];
        r->sflags[r->nlists] = 0;
        memset(&r->lists[r->nlists], 0, sizeof(r->lists[0]));
        r->nlists++;
        n++;
    }
    r->nlists = from; /* take_lists_at() sets it as the answers come */
    if (r->wave++ == 1)
        atomic_fetch_add(&n_waves2, 1);
    fetch_send(r, from, n, at, want);
    free(at);
}

static void dedup(struct shed_agg_req *r);

static void
fetch_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    if (pass_400(r, res, n))
        return;
    for (size_t k = 0; k < n; k++) {
        size_t i = r->wave_from + k;

        r->any_answer |= take_one(r, r->order[i], &res[k], r->slim[i], true, &r->lists[i]);
        if (r->nlists < i + 1)
            r->nlists = i + 1;
    }
    if (!r->any_answer && r->nvisit > 0) {
        answer_unavailable(r, "no backend reachable");
        return;
    }
    empty_note(r, res, r->wave_from, n);
    dedup(r);
}

/* Position of backend <be> in <pref> (n when absent). */
static size_t
pref_pos(const uint32_t *pref, size_t n, uint32_t be)
{
    for (size_t i = 0; i < n; i++)
        if (pref[i] == be)
            return i;
    return n;
}

/* Is backend <be> the first server of the current row of message <id>'s
 * bucket (where its copy always wins)? */
static bool
on_first(const struct shed_agg_req *r, const char *id, size_t idlen, uint32_t be)
{
    char key[2 * PROTO_BURROW_ID_MAX + 2];
    size_t klen = r->path.queue.len + 1 + idlen;

    if (r->ngens == 0 || klen > sizeof(key))
        return false;
    memcpy(key, r->path.queue.ptr, r->path.queue.len);
    key[r->path.queue.len] = '/';
    memcpy(key + r->path.queue.len + 1, id, idlen);
    return r->gens[0].row[ring_key_index(&r->gens[0].cfg, key, klen)][0] == be;
}

/* Did backend <be> show <id> in this fetch (any of its slots)? */
static bool
backend_has(const struct shed_agg_req *r, uint32_t be, const char *id, size_t len)
{
    for (size_t li = 0; li < r->nlists; li++) {
        const struct shed_merge_list *l = &r->lists[li];

        if (r->order[li] != be)
            continue;
        for (size_t i = 0; i < l->n; i++)
            if (l->items[i].idlen == len && memcmp(l->items[i].id, id, len) == 0)
                return true;
    }
    return false;
}

/* Was backend <be>'s whole list seen in this fetch: asked from its start,
 * hidden messages included (a hidden copy still wins), and its last window
 * not cut by a limit? */
static bool
backend_whole(const struct shed_agg_req *r, uint32_t be)
{
    bool start = false;
    size_t last = SIZE_MAX;

    if (!r->q.match_hidden)
        return false;

    for (size_t li = 0; li < r->nlists; li++) {
        if (r->order[li] != be)
            continue;
        start |= (r->sflags[li] & SLOT_FROM_START) != 0;
        last = li;
    }
    return start && last != SIZE_MAX && r->lists[last].status != 0 && !r->lists[last].truncated &&
           !(r->sflags[last] & SLOT_CONTINUED);
}

/* Room for <want> dedup probes (at most max_probes) and their batch. */
static int
probes_begin(struct shed_agg_req *r, struct batch *b, size_t want)
{
    if (want > r->agg->max_probes)
        want = r->agg->max_probes;
    free(r->probes);
    r->probes = calloc(want ? want : 1, sizeof(*r->probes));
    if (r->probes == NULL || batch_init(b, want) < 0)
        return -ENOMEM;
    return 0;
}

/* Queue a probe: does backend <be> hold item <ii> of list <li>? */
static void
probe_add(struct shed_agg_req *r, struct batch *b, size_t li, size_t ii, uint32_t be)
{
    const struct shed_merge_item *it = &r->lists[li].items[ii];
    struct urlopts o = {.detail = "id"};

    if (r->nprobes >= b->cap ||
        batch_add(b, r, "GET", be, it->id, it->idlen, &o, r->timeout_ms) < 0)
        return;
    r->probes[r->nprobes].list = (uint32_t)li;
    r->probes[r->nprobes].item = (uint32_t)ii;
    r->probes[r->nprobes].be = be;
    r->nprobes++;
}

/* Decide which copies lose to an earlier-preference copy. A copy on its
 * bucket's first server always wins; otherwise every earlier server either
 * showed the id in this fetch (drop), showed its whole list from the start
 * without it (keep), or is asked with a single-message GET (probe). Only
 * the slots of the last wave are looked at: earlier ones were settled. */
static void
dedup(struct shed_agg_req *r)
{
    struct batch b = {0};
    size_t nprobe = 0;

    r->nprobes = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t li = r->wave_from; li < r->nlists; li++) {
            struct shed_merge_list *l = &r->lists[li];
            uint32_t be = r->order[li];

            for (size_t ii = 0; ii < l->n; ii++) {
                struct shed_merge_item *it = &l->items[ii];
                uint32_t pref[PREF_MAX];
                size_t np, pos;

                if (on_first(r, it->id, it->idlen, be))
                    continue; /* the usual case: one hash, no row walk */
                np = pref_of(r, it->id, it->idlen, pref);
                pos = pref_pos(pref, np, be);

                for (size_t e = 0; e < pos && !it->drop; e++) {
                    if (backend_has(r, pref[e], it->id, it->idlen)) {
                        if (pass == 0)
                            it->drop = true;
                        continue;
                    }
                    if (!r->be[pref[e]].live || r->be[pref[e]].failed)
                        continue; /* cannot know; keep this copy */
                    if (backend_whole(r, pref[e]))
                        continue; /* its whole list was seen: it has none */
                    if (pass == 0)
                        nprobe++;
                    else
                        probe_add(r, &b, li, ii, pref[e]);
                }
            }
        }
        if (pass == 0) {
            if (nprobe == 0) {
                page_done(r);
                return;
            }
            if (probes_begin(r, &b, nprobe) < 0) {
                answer_unavailable(r, "out of memory");
                return;
            }
        }
    }
    atomic_fetch_add(&n_probes, r->nprobes);
    batch_go(r, &b, PH_DEDUP);
}

static void
dedup_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    for (size_t i = 0; i < n && i < r->nprobes; i++) {
        const struct probe *p = &r->probes[i];

        /* Probe failures mean "unknown": the copy we have is kept. */
        if (res[i].err == 0 && res[i].status == 200)
            r->lists[p->list].items[p->item].drop = true;
    }
    page_done(r);
}

static void
make_link(struct shed_agg_req *r)
{
    const struct shed_merge_pick *last = &r->picks[r->npicks - 1];
    const struct shed_merge_item *it = &r->lists[last->list].items[last->item];
    struct proto_marker_cursor c = {0};
    char cur[PROTO_MARKER_CURSOR_MAX];
    struct sbuf b = {r->link, 0, sizeof(r->link), false};

    c.marker_hash = proto_marker_hash(it->id, it->idlen);
    c.stamp = it->stamp;
    if (proto_marker_pack(&c, cur, sizeof(cur)) < 0)
        return;
    sb_str(&b, "<");
    sb_path(&b, r, NULL, 0);
    sb_str(&b, "?marker=");
    sb_enc(&b, it->id, it->idlen);
    sb_str(&b, "&");
    sb_int(&b, "limit", r->q.limit);
    if (r->q.detail != PROTO_DETAIL_DEFAULT) {
        sb_str(&b, "detail=");
        sb_str(&b, detail_name(r->q.detail));
        sb_str(&b, "&");
    }
    if (r->q.match_hidden)
        sb_str(&b, "match_hidden=true&");
    sb_str(&b, PROTO_MARKER_PARAM "=");
    sb_str(&b, cur);
    sb_str(&b, ">; rel=\"next\"");
    if (b.over)
        r->link[0] = '\0';
}

/* Every wave in: merge. A page short only because a window ran out asks
 * those servers again; a GET answers; a destructive op acts on the page
 * (its candidates). */
static void
page_done(struct shed_agg_req *r)
{
    long np;

    if (picks_room(r, shed_merge_items(r->lists, r->nlists)) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    np = shed_merge_sorted(r->lists, r->nlists, r->fetch_limit, true, r->picks,
                           shed_merge_items(r->lists, r->nlists) + 1, &r->cut);
    if (np < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    r->npicks = (size_t)np;
    if (r->cut.horizon && !r->refreshed) {
        for (size_t i = 0; i < r->nlists; i++)
            if (r->sflags[i] & SLOT_CACHED) {
                fetch_refresh(r);
                return;
            }
    }
    if (r->cut.want && (r->wave < PAGE_WAVES || (np == 0 && r->wave < EMPTY_WAVES))) {
        /* What is missing, and at least twice the last window: windows
         * full of losing copies must not make a wave per copy. */
        int64_t want = r->fetch_limit > 0 ? r->fetch_limit - np : 0;

        for (size_t i = 0; i < r->nlists; i++)
            if (r->lists[i].truncated && want < 2 * r->slim[i])
                want = 2 * r->slim[i];
        fetch_more(r, want < WINDOW_MAX ? want : WINDOW_MAX);
        return;
    }
    if (r->m != M_GET) {
        destr_op(r);
        return;
    }
    if (r->npicks == 0 && r->deadline != 0 && clock_mono_ms() < r->deadline) {
        wait_poll(r);
        return;
    }
    if (r->npicks > 0 && r->cut.more && r->q.limit > 0)
        make_link(r);
    render(r);
}

/* ------------------------------------------------------- destructive ops */

static void
destr_all(struct shed_agg_req *r)
{
    size_t n = visit_list(r);
    struct batch b;

    lists_reset(r);
    if (batch_init(&b, n) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct urlopts o = {0};

        o.detail = detail_name(r->bdetail);
        o.attrs = r->m == M_POST;
        o.match_hidden = r->q.match_hidden;
        o.stamps = true;
        o.clock = agg_clock(r);
        o.from = &r->start;
        if (batch_add(&b, r, method_name(r->m), r->order[i], NULL, 0, &o, r->timeout_ms) < 0) {
            batch_free(&b);
            answer_text(r, 400, "request too long");
            return;
        }
    }
    batch_go(r, &b, PH_DESTR_ALL);
}

/* What every server changed, in the global order, ids once. */
static void
destr_all_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    struct shed_merge_cut cut;
    long np;

    if (pass_400(r, res, n))
        return;
    if (!take_lists_at(r, res, n, 0, 0, true) && n > 0) {
        answer_unavailable(r, "no backend reachable");
        return;
    }
    if (picks_room(r, shed_merge_items(r->lists, r->nlists)) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    np = shed_merge_sorted(r->lists, r->nlists, 0, false, r->picks,
                           shed_merge_items(r->lists, r->nlists) + 1, &cut);
    if (np < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    r->npicks = (size_t)np;
    if (r->npicks == 0 && r->deadline != 0 && clock_mono_ms() < r->deadline) {
        wait_poll(r);
        return;
    }
    render(r);
}

/* A round of a destructive op with a limit: the oldest candidates, at most
 * DESTR_CHUNK, after the last round's (or the client's marker). */
static void
destr_round(struct shed_agg_req *r)
{
    atomic_fetch_add(&n_rounds, 1);
    r->fetch_limit = r->remaining < DESTR_CHUNK ? r->remaining : DESTR_CHUNK;
    r->fdetail = PROTO_DETAIL_ATTRIBUTES;
    fetch(r);
}

static int
acc_room(struct shed_agg_req *r, size_t n)
{
    size_t cap = r->acc_cap ? r->acc_cap : 16;
    struct shed_merge_list *l;
    uint32_t *b;

    while (cap < r->nacc + n)
        cap *= 2;
    if (cap == r->acc_cap)
        return 0;
    l = realloc(r->acc, cap * sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    r->acc = l;
    b = realloc(r->acc_be, cap * sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    r->acc_be = b;
    r->acc_cap = cap;
    return 0;
}

/* The candidates are in: every server that holds some changes exactly its
 * range of the page, (after, last candidate], at most as many as it showed
 * there, visible ones only unless match_hidden. Each server does its range
 * atomically, so a message another client took meanwhile is not taken
 * twice; it is simply not in this round's answer. */
static void
destr_op(struct shed_agg_req *r)
{
    const struct shed_merge_item *last;
    uint32_t *count = NULL;
    struct batch b;

    if (r->npicks == 0) {
        destr_finish(r);
        return;
    }
    last = &r->lists[r->picks[r->npicks - 1].list].items[r->picks[r->npicks - 1].item];
    pos_of(&r->upto, last);
    r->round_cands = r->npicks;
    r->round_more = r->cut.more;
    count = calloc(r->nbe, sizeof(*count));
    if (count == NULL || batch_init(&b, r->nbe) < 0 || acc_room(r, r->nbe) < 0) {
        free(count);
        answer_unavailable(r, "out of memory");
        return;
    }
    /* Per server: its items in the range, losing copies included (they go
     * too, and must not use up its limit before its winners). */
    for (size_t li = 0; li < r->nlists; li++)
        for (size_t ii = 0; ii < r->lists[li].n; ii++)
            if (pos_before(&r->after, &r->lists[li].items[ii]) &&
                pos_within(&r->upto, &r->lists[li].items[ii]))
                count[r->order[li]]++;
    /* ... but only servers with a winner. */
    {
        bool *win = calloc(r->nbe, sizeof(*win));

        if (win == NULL) {
            free(count);
            batch_free(&b);
            answer_unavailable(r, "out of memory");
            return;
        }
        for (size_t p = 0; p < r->npicks; p++)
            win[r->order[r->picks[p].list]] = true;
        r->acc_from = r->nacc;
        for (uint32_t be = 0; be < r->nbe; be++) {
            struct urlopts o = {0};

            if (!win[be])
                continue;
            o.detail = detail_name(r->bdetail);
            o.limit = count[be];
            o.attrs = r->m == M_POST;
            o.match_hidden = r->q.match_hidden;
            o.stamps = true;
            o.clock = agg_clock(r);
            o.from = &r->after;
            o.upto = &r->upto;
            r->acc_be[r->nacc + b.n] = be;
            if (batch_add(&b, r, method_name(r->m), be, NULL, 0, &o, r->timeout_ms) < 0) {
                free(win);
                free(count);
                batch_free(&b);
                answer_text(r, 400, "request too long");
                return;
            }
        }
        free(win);
    }
    free(count);
    batch_go(r, &b, PH_DESTR_OP);
}

/* Was <id> a losing copy on <be> among this round's candidates? */
static bool
cand_dropped(const struct shed_agg_req *r, uint32_t be, const char *id, size_t len)
{
    for (size_t li = 0; li < r->nlists; li++) {
        const struct shed_merge_list *l = &r->lists[li];

        if (r->order[li] != be)
            continue;
        for (size_t i = 0; i < l->n; i++)
            if (l->items[i].drop && l->items[i].idlen == len &&
                memcmp(l->items[i].id, id, len) == 0)
                return true;
    }
    return false;
}

static void destr_next(struct shed_agg_req *r);

/* Was backend <be> changed in the running round? */
static bool
op_asked(const struct shed_agg_req *r, uint32_t be)
{
    for (size_t a = r->acc_from; a < r->nacc; a++)
        if (r->acc_be[a] == be)
            return true;
    return false;
}

static void
destr_op_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    struct urlopts o = {.detail = "none"};
    size_t taken = 0, ndrop = 0;
    struct batch b;

    for (size_t k = 0; k < n; k++) {
        struct shed_merge_list *l = &r->acc[r->nacc];
        uint32_t be = r->acc_be[r->acc_from + k];

        if (res[k].status == 400 && r->nacc == 0) {
            /* only before anything changed */
            answer_text(r, 400, res[k].body);
            return;
        }
        take_one(r, be, &res[k], 0, true, l);
        r->acc_be[r->nacc] = be;
        r->nacc++;
        for (size_t i = 0; i < l->n; i++) {
            if (cand_dropped(r, be, l->items[i].id, l->items[i].idlen)) {
                l->items[i].drop = true;
                ndrop++;
            } else {
                taken++;
            }
        }
    }
    r->remaining -= (int64_t)taken;
    r->idle = taken > 0 ? 0 : r->idle + 1;
    /* Losing copies met in the range go: those a claim just hid (else a
     * later claim would hand the id out again once the winner is gone), and
     * visible ones on servers the round did not change. The winner is on
     * an earlier server of the row, so no client sees a difference. */
    if (r->m == M_DELETE)
        ndrop = 0; /* the range's losing copies are deleted already */
    for (size_t li = 0; li < r->nlists; li++)
        for (size_t i = 0; i < r->lists[li].n; i++)
            ndrop += r->lists[li].items[i].drop && !op_asked(r, r->order[li]) &&
                     pos_before(&r->after, &r->lists[li].items[i]) &&
                     pos_within(&r->upto, &r->lists[li].items[i]);
    if (ndrop == 0) {
        destr_next(r);
        return;
    }
    if (batch_init(&b, ndrop) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t a = r->acc_from; r->m == M_POST && a < r->nacc; a++)
        for (size_t i = 0; i < r->acc[a].n; i++)
            if (r->acc[a].items[i].drop)
                batch_add(&b, r, "DELETE", r->acc_be[a], r->acc[a].items[i].id,
                          r->acc[a].items[i].idlen, &o, r->timeout_ms);
    for (size_t li = 0; li < r->nlists; li++)
        for (size_t i = 0; i < r->lists[li].n; i++) {
            const struct shed_merge_item *it = &r->lists[li].items[i];

            if (it->drop && !op_asked(r, r->order[li]) && pos_before(&r->after, it) &&
                pos_within(&r->upto, it))
                batch_add(&b, r, "DELETE", r->order[li], it->id, it->idlen, &o, r->timeout_ms);
        }
    batch_go(r, &b, PH_DESTR_CLEAN);
}

/* Another round, after this round's last candidate, while the limit is not
 * reached and more may follow (a round whose candidates others took
 * meanwhile goes on too, as long as more may follow). */
static void
destr_next(struct shed_agg_req *r)
{
    if (r->remaining <= 0 || !r->round_more || r->idle >= IDLE_ROUNDS) {
        destr_finish(r);
        return;
    }
    r->after = r->upto;
    destr_round(r);
}

/* What the rounds changed, in the global order; wait when nothing. */
static void
destr_finish(struct shed_agg_req *r)
{
    struct shed_merge_cut cut;
    long np;

    lists_reset(r);
    if (picks_room(r, shed_merge_items(r->acc, r->nacc)) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    np = shed_merge_sorted(r->acc, r->nacc, 0, false, r->picks,
                           shed_merge_items(r->acc, r->nacc) + 1, &cut);
    if (np < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    r->npicks = (size_t)np;
    if (r->npicks == 0 && r->deadline != 0 && clock_mono_ms() < r->deadline) {
        wait_poll(r);
        return;
    }
    render_from(r, r->acc);
}

static void
acc_reset(struct shed_agg_req *r)
{
    for (size_t i = 0; i < r->nacc; i++)
        shed_merge_list_clear(&r->acc[i]);
    r->nacc = 0;
}

static void
msgs_run(struct shed_agg_req *r)
{
    lists_reset(r);
    acc_reset(r);
    r->after = r->start;
    r->idle = 0;
    if (r->m == M_GET) {
        r->fetch_limit = r->q.limit > 0 ? r->q.limit : 0;
        r->fdetail = r->bdetail;
        fetch(r);
    } else if (r->q.limit > 0) {
        r->remaining = r->q.limit;
        destr_round(r);
    } else {
        destr_all(r);
    }
}

/* ------------------------------------------------------------------ wait */

static bool
on_each(void *arg, size_t idx, const struct shed_fanout_res *res)
{
    struct shed_agg_req *r = arg;

    (void)idx;
    if (r->phase == PH_LOOKUP)
        return lookup_each(r, idx, res);
    /* PH_WAIT: the first server with something visible releases the wait. */
    return res->err == 0 && res->status == 200;
}

/* Long-poll every server for anything after the client's position. */
static void
wait_poll(struct shed_agg_req *r)
{
    uint64_t now = clock_mono_ms(), left_ms = r->deadline > now ? r->deadline - now : 0;
    int64_t secs = (int64_t)((left_ms + 999) / 1000);
    size_t n = visit_list(r);
    struct batch b;

    lists_reset(r);
    if (secs <= 0 || n == 0) {
        r->npicks = 0;
        render(r);
        return;
    }
    if (batch_init(&b, n) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct urlopts o = {0};

        o.detail = "id";
        o.limit = 1;
        o.wait = secs;
        o.match_hidden = r->q.match_hidden;
        o.clock = agg_clock(r);
        o.from = &r->start;
        if (batch_add(&b, r, "GET", r->order[i], NULL, 0, &o,
                      (uint64_t)secs * 1000 + r->timeout_ms) < 0) {
            batch_free(&b);
            answer_text(r, 400, "request too long");
            return;
        }
    }
    batch_go(r, &b, PH_WAIT);
}

static void
wait_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    bool hit = false, answered = false;

    for (size_t i = 0; i < n; i++) {
        if (res[i].err == -ECANCELED)
            continue;
        if (usable(r, r->order[i], &res[i])) {
            answered = true;
            keep_notfound(r, res[i].status, res[i].body, res[i].len);
        }
        hit |= res[i].err == 0 && res[i].status == 200;
    }
    if (hit) {
        /* Something is there: run the real operation (a destructive one
         * in rounds, so no message is taken twice). */
        msgs_run(r);
        return;
    }
    if (!answered || clock_mono_ms() + 50 >= r->deadline) {
        r->deadline = 0;
        lists_reset(r);
        acc_reset(r);
        r->npicks = 0;
        render(r);
        return;
    }
    wait_poll(r);
}

/* --------------------------------------------------------- bad detail */

static void
baddetail_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    if (pass_400(r, res, n))
        return;
    for (size_t i = 0; i < n; i++)
        if (usable(r, r->order[i], &res[i]))
            keep_notfound(r, res[i].status, res[i].body, res[i].len);
    answer_text(r, 404, notfound_text(r));
}

/* ------------------------------------------------------------ dispatch */

static void
on_batch(void *arg, const struct shed_fanout_res *res, size_t n)
{
    struct shed_agg_req *r = arg;

    switch (r->phase) {
    case PH_IDS:
        ids_done(r, res, n);
        break;
    case PH_IDS_DEL:
        ids_del_done(r, res, n);
        break;
    case PH_MARKER:
        marker_done(r, res, n);
        break;
    case PH_FETCH:
        fetch_done(r, res, n);
        break;
    case PH_DEDUP:
        dedup_done(r, res, n);
        break;
    case PH_DESTR_ALL:
        destr_all_done(r, res, n);
        break;
    case PH_DESTR_OP:
        destr_op_done(r, res, n);
        break;
    case PH_DESTR_CLEAN:
        destr_next(r);
        break;
    case PH_WAIT:
        wait_done(r, res, n);
        break;
    case PH_BADDETAIL:
        baddetail_done(r, res, n);
        break;
    case PH_LOOKUP:
        lookup_done(r, res, n);
        break;
    case PH_NONE:
        answer_unavailable(r, "internal error");
        break;
    }
    if (atomic_fetch_sub(&r->refs, 1) == 1)
        req_destroy(r); /* the caller freed its side first */
}

/* --------------------------------------------------------------- start */

static int
cmp_backend(const void *a, const void *b)
{
    return strcmp(((const struct backend *)a)->id, ((const struct backend *)b)->id);
}

static uint32_t
find_backend(const struct shed_agg_req *r, const char *id)
{
    size_t lo = 0, hi = r->nbe;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->be[mid].id, id);

        if (c == 0)
            return (uint32_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NOPOS;
}

static int
add_member(struct shed_agg_req *r, size_t cap, const struct ring_member *m, bool live)
{
    size_t ul;

    for (size_t i = 0; i < r->nbe; i++) {
        if (strcmp(r->be[i].id, m->id) == 0) {
            r->be[i].live |= live;
            return 0;
        }
    }
    if (r->nbe == cap)
        return -ENOSPC;
    snprintf(r->be[r->nbe].id, sizeof(r->be[0].id), "%s", m->id);
    snprintf(r->be[r->nbe].url, sizeof(r->be[0].url), "%s", m->url);
    ul = strlen(r->be[r->nbe].url);
    while (ul > 0 && r->be[r->nbe].url[ul - 1] == '/')
        r->be[r->nbe].url[--ul] = '\0';
    r->be[r->nbe].live = live;
    r->nbe++;
    return 0;
}

/* Live as routers see it: only a member known down is left out. */
static bool
member_live(const struct registry_route *route, const struct ring *ring, uint32_t idx)
{
    uint32_t cur;

    if (ring == route->ring)
        return atomic_load(&route->live[idx]) != REGISTRY_DOWN;
    cur = ring_find(route->ring, ring_member_at(ring, idx)->id);
    return cur != RING_NONE && atomic_load(&route->live[cur]) != REGISTRY_DOWN;
}

/* A member of the previous generation only has left the cell (evicted or
 * deregistered): it is not asked and not reported as unreachable. */
static bool
member_gone(const struct registry_route *route, const struct ring *ring, uint32_t idx)
{
    return ring != route->ring &&
           ring_find(route->ring, ring_member_at(ring, idx)->id) == RING_NONE;
}

static int
snapshot(struct shed_agg_req *r, const struct registry_route *route)
{
    const struct ring *rings[2] = {route->ring, route->prev};
    size_t cap = 0;

    for (int g = 0; g < 2; g++)
        if (rings[g] != NULL)
            cap += r->level == PROTO_BURROW_ACCOUNTS
                       ? ring_size(rings[g])
                       : (size_t)ring_config(rings[g])->k * ring_config(rings[g])->r;
    if (cap > BACKENDS_MAX)
        cap = BACKENDS_MAX;
    r->be = calloc(cap ? cap : 1, sizeof(*r->be));
    if (r->be == NULL)
        return -ENOMEM;
    for (int g = 0; g < 2; g++) {
        const struct ring *ring = rings[g];

        if (ring == NULL)
            continue;
        if (r->level == PROTO_BURROW_ACCOUNTS) {
            for (uint32_t i = 0; i < ring_size(ring); i++) {
                if (member_gone(route, ring, i))
                    continue;
                if (add_member(r, cap, ring_member_at(ring, i), member_live(route, ring, i)) < 0)
                    return -E2BIG; /* never a silently shorter list */
            }
            continue;
        }
        {
            const struct ring_config *cfg = ring_config(ring);
            uint32_t buckets[RING_MAX_K], row[RING_MAX_R];

            ring_account_buckets(cfg, r->path.account.ptr, r->path.account.len, buckets);
            for (uint32_t k = 0; k < cfg->k; k++) {
                size_t nr = ring_row(ring, buckets[k], row);

                for (size_t j = 0; j < nr; j++) {
                    if (member_gone(route, ring, row[j]))
                        continue;
                    if (add_member(r, cap, ring_member_at(ring, row[j]),
                                   member_live(route, ring, row[j])) < 0)
                        break;
                }
            }
        }
    }
    qsort(r->be, r->nbe, sizeof(*r->be), cmp_backend);

    /* Preference rows, as backend indices of the sorted array. */
    r->ngens = 0;
    for (int g = 0; g < 2 && r->level != PROTO_BURROW_ACCOUNTS; g++) {
        const struct ring *ring = rings[g];
        struct gen *gn = &r->gens[r->ngens];
        uint32_t buckets[RING_MAX_K], row[RING_MAX_R];

        if (ring == NULL)
            continue;
        gn->cfg = *ring_config(ring);
        ring_account_buckets(&gn->cfg, r->path.account.ptr, r->path.account.len, buckets);
        for (uint32_t k = 0; k < gn->cfg.k; k++) {
            size_t nr = ring_row(ring, buckets[k], row);

            for (uint32_t j = 0; j < RING_MAX_R; j++)
                gn->row[k][j] = j < nr ? find_backend(r, ring_member_at(ring, row[j])->id) : NOPOS;
        }
        r->ngens++;
    }
    /* A slot per server for the first wave; later waves grow it. */
    r->nlists_cap = 2 * (r->nbe + 1) > PREF_MAX ? 2 * (r->nbe + 1) : PREF_MAX;
    r->order = calloc(r->nlists_cap, sizeof(*r->order));
    r->sflags = calloc(r->nlists_cap, 1);
    r->slim = calloc(r->nlists_cap, sizeof(*r->slim));
    r->bwin = calloc(r->nbe + 1, sizeof(*r->bwin));
    r->lists = calloc(r->nlists_cap, sizeof(*r->lists));
    if (r->order == NULL || r->sflags == NULL || r->slim == NULL || r->bwin == NULL ||
        r->lists == NULL)
        return -ENOMEM;
    return 0;
}

/* -------------------------------------------------------------- lookup */

/* The candidates of a lookup: the first LOOKUP_WALK servers of the
 * message's bucket in each generation, current first (the preference
 * order of the answer), members that left skipped. */
static int
lookup_snapshot(struct shed_agg_req *r, const struct registry_route *route)
{
    const struct ring *rings[2] = {route->ring, route->prev};
    const struct proto_burrow_path *p = &r->path;

    r->be = calloc(2 * LOOKUP_WALK, sizeof(*r->be));
    if (r->be == NULL)
        return -ENOMEM;
    for (int g = 0; g < 2; g++) {
        const struct ring *ring = rings[g];
        uint32_t walk[LOOKUP_WALK];
        size_t nw;

        if (ring == NULL || ring_size(ring) == 0)
            continue;
        nw = ring_walk(ring,
                       ring_message_bucket(ring_config(ring), p->account.ptr, p->account.len,
                                           p->queue.ptr, p->queue.len, p->message.ptr,
                                           p->message.len),
                       walk, LOOKUP_WALK);
        for (size_t i = 0; i < nw; i++)
            if (!member_gone(route, ring, walk[i]))
                add_member(r, 2 * LOOKUP_WALK, ring_member_at(ring, walk[i]),
                           member_live(route, ring, walk[i]));
    }
    return 0;
}

static void
lookup_run(struct shed_agg_req *r, const struct registry_route *route)
{
    struct urlopts o = {0};
    struct batch b;
    char detail[PROTO_BURROW_ID_MAX + 1];

    if (lookup_snapshot(r, route) < 0 || batch_init(&b, r->nbe) < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    if (r->q.detail_raw.ptr != NULL) {
        snprintf(detail, sizeof(detail), "%.*s", (int)r->q.detail_raw.len, r->q.detail_raw.ptr);
        o.detail = detail;
    }
    o.attrs = true;
    r->lseen = calloc(r->nbe ? r->nbe : 1, 1);
    if (r->lseen == NULL) {
        batch_free(&b);
        answer_unavailable(r, "out of memory");
        return;
    }
    /* A server this view has down is asked too, briefly: the line shed that
     * sent the lookup may already see it back, with the message. */
    for (uint32_t i = 0; i < r->nbe; i++) {
        uint64_t tmo =
            r->be[i].live || r->timeout_ms < LOOKUP_DOWN_MS ? r->timeout_ms : LOOKUP_DOWN_MS;

        r->be[i].live = true;
        r->order[b.n] = i;
        if (batch_add(&b, r, r->lmethod, i, r->path.message.ptr, r->path.message.len, &o, tmo) <
            0) {
            batch_free(&b);
            answer_text(r, 414, "path or query too long");
            return;
        }
    }
    if (b.n == 0) {
        batch_free(&b);
        answer_unavailable(r, "no live server for this message");
        return;
    }
    batch_go(r, &b, PH_LOOKUP);
}

/* A GET's answer is known once a server has it and every server before it
 * in preference order said it has not: the rest are cancelled. A DELETE or
 * POST waits for every server (each copy must change). */
static bool
lookup_each(struct shed_agg_req *r, size_t idx, const struct shed_fanout_res *res)
{
    if (strcmp(r->lmethod, "GET") != 0 || idx >= r->nbe)
        return false;
    r->lseen[idx] = res->err == 0 && res->status >= 200 && res->status < 300 ? 2 : 1;
    for (size_t i = 0; i < r->nbe; i++) {
        if (r->lseen[i] == 0)
            return false;
        if (r->lseen[i] == 2)
            return true;
    }
    return false;
}

/* The first success in preference order is the answer (a GET's copy, a
 * DELETE or POST that found the message somewhere: every copy was
 * changed); else a 400, else 404 when some server answered. */
static void
lookup_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    const struct shed_fanout_res *best = NULL;
    bool answered = false;

    for (size_t i = 0; i < n; i++) {
        if (!usable(r, r->order[i], &res[i]))
            continue;
        answered = true;
        if (res[i].status == 404 && r->notfound[0] == '\0' && res[i].len > 0 &&
            res[i].len < sizeof(r->notfound)) {
            memcpy(r->notfound, res[i].body, res[i].len);
            r->notfound[res[i].len] = '\0';
        }
        if (res[i].status >= 200 && res[i].status < 300) {
            if (best == NULL)
                best = &res[i];
        } else if (res[i].status == 400 && best == NULL) {
            answer_text(r, 400, res[i].body);
            return;
        }
    }
    if (best == NULL) {
        if (answered)
            answer_text(r, 404, r->notfound[0] != '\0' ? r->notfound : "Message not found");
        else
            answer_unavailable(r, "no server answered");
        return;
    }
    shed_merge_out_clear(&r->out);
    r->out.status = best->status;
    if (best->len > 0) {
        r->out.body = malloc(best->len);
        if (r->out.body == NULL) {
            answer_unavailable(r, "out of memory");
            return;
        }
        memcpy(r->out.body, best->body, best->len);
        r->out.len = best->len;
        r->out.ctype = r->detail == PROTO_DETAIL_ALL || r->detail == PROTO_DETAIL_ATTRIBUTES
                           ? "application/json"
                           : "application/octet-stream";
    }
    finish(r);
}

static void
begin(struct shed_agg_req *r, const struct registry_route *route, const char *method,
      const char *path, size_t plen, const char *query, size_t qlen)
{
    int rc;

    if (route == NULL) {
        answer_empty(r, 404);
        return;
    }
    if (shed_agg_is_lookup(path)) {
        r->lookup = true;
        path += sizeof(SHED_AGG_LOOKUP_PREFIX) - 1;
        plen -= sizeof(SHED_AGG_LOOKUP_PREFIX) - 1;
    }
    rc = proto_burrow_parse_path(path, plen, r->ids, sizeof(r->ids), &r->path);
    if (r->lookup) {
        if (rc == 0 && r->path.level != PROTO_BURROW_MESSAGE)
            rc = -PROTO_ENOTFOUND;
        if (rc == -PROTO_ENOTFOUND) {
            answer_empty(r, 404);
            return;
        }
        if (rc < 0) {
            answer_text(r, 400, proto_strerror(rc));
            return;
        }
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
            strcmp(method, "POST") != 0 && strcmp(method, "DELETE") != 0) {
            answer_empty(r, 405);
            return;
        }
        r->lmethod = strcmp(method, "HEAD") == 0 ? "GET" : method;
        r->level = PROTO_BURROW_MESSAGES; /* sb_path() writes account and queue */
        proto_burrow_query_init(&r->q);
        rc = proto_burrow_query_parse(&r->q, query ? query : "", query ? qlen : 0, r->qbuf,
                                      sizeof(r->qbuf));
        if (rc < 0) {
            answer_text(r, 400, proto_strerror(rc));
            return;
        }
        r->detail = r->q.detail != PROTO_DETAIL_DEFAULT ? r->q.detail
                    : strcmp(r->lmethod, "GET") == 0    ? PROTO_DETAIL_ALL
                                                        : PROTO_DETAIL_NONE;
        r->order = calloc(2 * LOOKUP_WALK, sizeof(*r->order));
        if (r->order == NULL) {
            answer_unavailable(r, "out of memory");
            return;
        }
        atomic_fetch_add(&n_lookups, 1);
        lookup_run(r, route);
        return;
    }
    if (rc == -PROTO_ENOTFOUND || (rc == 0 && (r->path.level < PROTO_BURROW_ACCOUNTS ||
                                               r->path.level > PROTO_BURROW_MESSAGES))) {
        answer_empty(r, 404);
        return;
    }
    if (rc < 0) {
        answer_text(r, 400, proto_strerror(rc));
        return;
    }
    r->level = r->path.level;
    if (strcmp(method, "GET") == 0)
        r->m = M_GET;
    else if (strcmp(method, "DELETE") == 0)
        r->m = M_DELETE;
    else if (strcmp(method, "POST") == 0 && r->level == PROTO_BURROW_MESSAGES)
        r->m = M_POST;
    else {
        answer_empty(r, 405);
        return;
    }
    proto_burrow_query_init(&r->q);
    rc = proto_burrow_query_parse(&r->q, query ? query : "", query ? qlen : 0, r->qbuf,
                                  sizeof(r->qbuf));
    if (rc < 0) {
        answer_text(r, 400, proto_strerror(rc));
        return;
    }
    if (r->level == PROTO_BURROW_ACCOUNTS && !atomic_load(&r->agg->list_all)) {
        answer_text(r, 403, "listing all accounts is disabled");
        return;
    }
    /* The cursor rides next to the marker (see proto/marker.h). */
    if (query != NULL && r->q.marker.ptr != NULL) {
        const char *p = query, *end = query + qlen;
        size_t kl = strlen(PROTO_MARKER_PARAM);

        while (p < end) {
            const char *amp = memchr(p, '&', (size_t)(end - p));
            size_t l = amp ? (size_t)(amp - p) : (size_t)(end - p);

            if (l > kl + 1 && memcmp(p, PROTO_MARKER_PARAM "=", kl + 1) == 0 &&
                proto_marker_unpack(p + kl + 1, l - kl - 1, &r->cursor) == 0 &&
                r->cursor.marker_hash == proto_marker_hash(r->q.marker.ptr, r->q.marker.len))
                r->has_cursor = true;
            p += l + 1;
        }
    }
    r->detail = r->q.detail != PROTO_DETAIL_DEFAULT
                    ? r->q.detail
                    : shed_merge_default_detail(r->level, r->m == M_GET);
    r->bdetail = shed_merge_backend_detail(r->level, r->detail);
    if (!r->q.detail_bad && !proto_burrow_detail_ok(r->level, r->q.detail))
        r->q.detail_bad = true; /* a known word, but not at this level */
    if (r->q.detail_bad && r->level == PROTO_BURROW_ACCOUNTS) {
        char raw[PROTO_BURROW_ID_MAX + 1];

        snprintf(raw, sizeof(raw), "%.*s", (int)r->q.detail_raw.len,
                 r->q.detail_raw.ptr ? r->q.detail_raw.ptr : "");
        answer_text(r, 400, raw);
        return;
    }
    rc = snapshot(r, route);
    if (rc == -E2BIG) {
        answer_text(r, 403,
                    "listing all accounts is disabled: more servers than "
                    "the aggregator asks at once");
        return;
    }
    if (rc < 0) {
        answer_unavailable(r, "out of memory");
        return;
    }
    if (r->nbe == 0) {
        answer_unavailable(r, "no backend for this service");
        return;
    }
    if (r->q.detail_bad) {
        /* Burrow checks existence before detail: let the servers say 404 or
         * 400, with a harmless GET even for destructive methods. */
        struct batch b;
        char raw[PROTO_BURROW_ID_MAX + 1];
        struct urlopts o = {0};

        snprintf(raw, sizeof(raw), "%.*s", (int)r->q.detail_raw.len, r->q.detail_raw.ptr);
        /* detail text is sent encoded through sb_str: keep it a word */
        if (strspn(raw, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
            strlen(raw)) {
            answer_text(r, 400, raw);
            return;
        }
        o.detail = raw;
        if (batch_init(&b, r->nbe) < 0) {
            answer_unavailable(r, "out of memory");
            return;
        }
        for (uint32_t i = 0; i < r->nbe; i++) {
            if (!r->be[i].live)
                continue;
            r->order[b.n] = i;
            batch_add(&b, r, "GET", i, NULL, 0, &o, r->timeout_ms);
        }
        batch_go(r, &b, PH_BADDETAIL);
        return;
    }
    if (r->q.has_wait && r->q.wait > 0 && r->level == PROTO_BURROW_MESSAGES)
        r->deadline = clock_mono_ms() + (uint64_t)r->q.wait * 1000;
    if (r->level != PROTO_BURROW_MESSAGES) {
        ids_fetch(r);
        return;
    }
    memset(&r->start, 0, sizeof(r->start));
    if (r->q.marker.ptr != NULL) {
        if (!r->has_cursor) {
            marker_probe(r);
            return;
        }
        /* The cursor's stamp places the marker: no probe, and the page goes
         * on after that place even if the marker message is gone. */
        pos_set(&r->start, r->cursor.stamp, r->q.marker.ptr, r->q.marker.len);
    }
    msgs_run(r);
}

int
shed_agg_start(struct shed_agg *agg, const struct registry_route *route, const char *method,
               const char *path, size_t plen, const char *query, size_t qlen, shed_agg_done_fn done,
               void *arg, struct shed_agg_req **out)
{
    struct shed_agg_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return -ENOMEM;
    r->agg = agg;
    r->done = done;
    r->done_arg = arg;
    r->timeout_ms = atomic_load(&agg->timeout_ms);
    atomic_init(&r->refs, 1);
    atomic_fetch_add(&n_requests, 1);
    *out = r;
    begin(r, route, method, path, plen, query, qlen);
    return 0;
}

void
shed_agg_req_free(struct shed_agg_req *r)
{
    /* A batch still on the engine (a page answered early) frees it. */
    if (r != NULL && atomic_fetch_sub(&r->refs, 1) == 1)
        req_destroy(r);
}

static void
req_destroy(struct shed_agg_req *r)
{
    for (size_t i = 0; i < r->nlists; i++)
        shed_merge_list_clear(&r->lists[i]);
    free(r->lists);
    for (size_t i = 0; i < r->nacc; i++)
        shed_merge_list_clear(&r->acc[i]);
    free(r->acc);
    free(r->acc_be);
    free(r->jobs);
    free(r->order);
    free(r->sflags);
    free(r->slim);
    free(r->bwin);
    free(r->picks);
    free(r->probes);
    free(r->lseen);
    free(r->be);
    shed_merge_out_clear(&r->out);
    free(r);
}

struct MHD_Response *
shed_agg_response(struct shed_agg_req *r, unsigned *status)
{
    struct MHD_Response *resp;

    if (r->out.body != NULL) {
        /* The body moves to the response (freed by MHD), no copy. */
        resp = MHD_create_response_from_buffer(r->out.len, r->out.body, MHD_RESPMEM_MUST_FREE);
        if (resp != NULL) {
            r->out.body = NULL;
            r->out.len = 0;
        }
    } else {
        resp = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL)
        return NULL;
    if (r->out.ctype != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->out.ctype);
    if (r->out.status == MHD_HTTP_NO_CONTENT) {
        /* MHD leaves Content-Length out of a 204; Burrow clients read it
         * from every 2xx answer (docs/aggregator.md, "Burrow status rules kept"). */
        MHD_set_response_options(resp, MHD_RF_INSANITY_HEADER_CONTENT_LENGTH, MHD_RO_END);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_LENGTH, "0");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->partial[0] != '\0')
        MHD_add_response_header(resp, "Shed-Partial", r->partial);
    if (r->link[0] != '\0')
        MHD_add_response_header(resp, "Link", r->link);
    if (r->retry_after)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    *status = (unsigned)r->out.status;
    return resp;
}

/* ------------------------------------------------------- daemon glue */

/* Per-request context in *con_cls (shed/http frees it on completion). */
struct agg_ctx {
    struct shed_req_ctx hdr; /* first member, see shed/http.h */
    struct shed_agg_req *req;
    struct MHD_Connection *conn;
    bool held; /* counted in g_held */
};

/* g_lock serialises starting a request with shutting the aggregator down,
 * so no request starts on an engine being destroyed. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shed_agg *_Atomic g_agg;
static _Atomic bool g_stopping;
static _Atomic unsigned g_held;    /* requests that suspended their connection */
static _Atomic bool g_external;    /* fan-out run by the front end's loop */
static _Atomic uint64_t g_resumes; /* connections resumed so far */

static void
ctx_free(struct shed_req_ctx *h)
{
    struct agg_ctx *x = (struct agg_ctx *)h;

    if (x->held)
        atomic_fetch_sub(&g_held, 1);
    shed_agg_req_free(x->req);
    free(x);
}

void
shed_agg_shutdown(void)
{
    struct shed_agg *agg;

    pthread_mutex_lock(&g_lock);
    atomic_store(&g_stopping, true);
    agg = atomic_exchange(&g_agg, NULL);
    pthread_mutex_unlock(&g_lock);
    /* Cancels every fan-out: each request finishes (503 or what it has) and
     * resumes its connection ... */
    shed_agg_destroy(agg);
    /* ... and MHD must have answered them before MHD_stop_daemon(), which
     * refuses suspended connections. Bounded: 3 s. */
    for (int i = 0; i < 300 && atomic_load(&g_held) > 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};

        nanosleep(&ts, NULL);
    }
}

void
shed_agg_set_external(bool on)
{
    atomic_store(&g_external, on);
}

int
shed_agg_fd(uint64_t *busy_poll_ns)
{
    struct shed_agg *agg;
    int fd = -1;

    *busy_poll_ns = 0;
    pthread_mutex_lock(&g_lock);
    agg = atomic_load(&g_agg);
    if (agg != NULL) {
        fd = shed_fanout_fd(agg->fan);
        *busy_poll_ns = shed_fanout_busy_poll(agg->fan);
    }
    pthread_mutex_unlock(&g_lock);
    return fd;
}

void
shed_agg_run(void)
{
    struct shed_agg *agg;

    /* Under g_lock: shed_agg_shutdown() cannot destroy the engine while it
     * runs here (same lock order as shed_agg_handle(): g_lock, engine). */
    pthread_mutex_lock(&g_lock);
    agg = atomic_load(&g_agg);
    if (agg != NULL)
        shed_fanout_run(agg->fan);
    pthread_mutex_unlock(&g_lock);
}

uint64_t
shed_agg_resumes(void)
{
    return atomic_load(&g_resumes);
}

static void
resume_conn(void *arg)
{
    atomic_fetch_add(&g_resumes, 1);
    MHD_resume_connection(arg);
}

/* The process-wide aggregator; the caller holds g_lock. */
static struct shed_agg *
instance(const struct shed_config *cfg)
{
    struct shed_agg_config ac = {0};
    struct shed_agg *agg = atomic_load(&g_agg);

    ac.list_all = cfg->list_all;
    ac.backend_timeout_ms = cfg->backend_timeout_ms;
    ac.busy_poll_us = cfg->busy_poll_us;
    ac.external = atomic_load(&g_external);
    if (agg != NULL) {
        /* Cheap enough per request, and follows SIGHUP reloads. */
        shed_agg_reconfigure(agg, &ac);
        return agg;
    }
    if (shed_agg_create(&ac, &agg) == 0)
        atomic_store(&g_agg, agg);
    else
        agg = NULL;
    return agg;
}

/* The raw query string again, from MHD's raw (not unescaped) arguments. */
struct qs {
    char buf[PROTO_BURROW_PATH_MAX];
    size_t len;
    bool over;
};

static enum MHD_Result
collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct qs *q = cls;
    int n;

    (void)kind;
    n = snprintf(q->buf + q->len, sizeof(q->buf) - q->len, "%s%s%s%s", q->len ? "&" : "", key,
                 value ? "=" : "", value ? value : "");
    if (n < 0 || (size_t)n >= sizeof(q->buf) - q->len) {
        q->over = true;
        return MHD_NO;
    }
    q->len += (size_t)n;
    return MHD_YES;
}

static bool
answer_now(struct shed_call *c, unsigned status, const char *text)
{
    shed_metrics_response(status);
    shed_http_text(c->conn, status, text);
    return true;
}

bool
shed_agg_handle(struct shed_call *c)
{
    struct agg_ctx *x;
    struct shed_agg *agg;
    struct MHD_Response *resp;
    char svc[SHED_NAME_MAX];
    const char *host;
    struct qs q;
    unsigned status = 500;
    int rc;

    if (*c->con_cls != NULL && *c->con_cls != SHED_HTTP_SEEN) {
        /* Our context: the call after the resume (or a spurious one). */
        x = (struct agg_ctx *)*c->con_cls;
        if (x->hdr.free_fn != ctx_free)
            return false;
        if (x->req == NULL || !atomic_load(&x->req->finished))
            return true;
        resp = shed_agg_response(x->req, &status);
        if (resp == NULL)
            return false;
        shed_metrics_response(status);
        MHD_queue_response(c->conn, status, resp);
        MHD_destroy_response(resp);
        return true;
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
    q.len = 0;
    q.over = false;
    q.buf[0] = '\0';
    MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, collect, &q);
    if (q.over)
        return answer_now(c, 400, "query too long\n");
    host = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Host");
    if (shed_line_host_service(host, c->cfg->default_service, svc) < 0)
        return answer_now(c, 404, "unknown service\n");
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return answer_now(c, 503, "out of memory\n");
    x->hdr.free_fn = ctx_free;
    x->conn = c->conn;
    *c->con_cls = x;
    pthread_mutex_lock(&g_lock);
    agg = atomic_load(&g_stopping) ? NULL : instance(c->cfg);
    if (agg == NULL) {
        pthread_mutex_unlock(&g_lock);
        return answer_now(c, 503, "aggregator unavailable\n");
    }
    x->held = true;
    atomic_fetch_add(&g_held, 1);
    MHD_suspend_connection(c->conn);
    rc = shed_agg_start(agg, registry_route_find(c->view, svc, strlen(svc)), c->method, c->path,
                        strlen(c->path), q.buf, q.len, resume_conn, c->conn, &x->req);
    pthread_mutex_unlock(&g_lock);
    if (rc < 0) {
        MHD_resume_connection(c->conn);
        return answer_now(c, 503, "out of memory\n");
    }
    return true;
}
