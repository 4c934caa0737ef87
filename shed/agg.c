/* SPDX-License-Identifier: ISC */
/*
 * shed/agg: the aggregator engine's object and its common plumbing (see
 * agg.h, agg_impl.h for the files of the phases, and docs/aggregator.md):
 * create / stop / destroy, counters, how a request finishes and what its
 * answer is, backend URLs, batches on the fan-out engine and the dispatch
 * of their results to the phase that sent them.
 */
#include "shed/agg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "shed/agg_impl.h"
#include "shed/rcu.h"

static void on_batch(void *arg, const struct shed_fanout_res *res, size_t n);
static bool on_each(void *arg, size_t idx, const struct shed_fanout_res *res);
static void req_destroy(struct shed_agg_req *r);

/* ---------------------------------------------------------------- setup */

void
shed_agg_config_of(const struct shed_config *cfg, bool external, struct shed_agg_config *out)
{
    memset(out, 0, sizeof(*out));
    out->list_all = cfg->list_all;
    out->list_all_running = cfg->list_all_running;
    out->backend_timeout_ms = cfg->backend_timeout_ms;
    out->busy_poll_us = cfg->busy_poll_us;
    out->external = external;
}

int
shed_agg_create(const struct shed_agg_config *cfg, struct registry *reg, struct shed_agg **out)
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
    agg->reg = reg;
    agg->open = true;
    agg->max_probes = cfg->max_probes ? cfg->max_probes : 1024;
    agg->empty = calloc(EMPTY_SLOTS, sizeof(*agg->empty));
    if (agg->empty == NULL) {
        shed_fanout_destroy(agg->fan);
        free(agg);
        return -ENOMEM;
    }
    pthread_mutex_init(&agg->lock, NULL);
    pthread_mutex_init(&agg->elock, NULL);
    shed_agg_reconfigure(agg, cfg);
    *out = agg;
    return 0;
}

void
shed_agg_reconfigure(struct shed_agg *agg, const struct shed_agg_config *cfg)
{
    atomic_store(&agg->list_all, cfg->list_all);
    atomic_store(&agg->list_all_max, cfg->list_all_running ? cfg->list_all_running : 2);
    atomic_store(&agg->timeout_ms, cfg->backend_timeout_ms ? cfg->backend_timeout_ms : 2000);
    pthread_mutex_lock(&agg->lock);
    if (agg->fan != NULL)
        shed_fanout_set_busy_poll(agg->fan, cfg->busy_poll_us * 1000);
    pthread_mutex_unlock(&agg->lock);
}

void
shed_agg_stop(struct shed_agg *agg)
{
    struct shed_fanout *fan;

    pthread_mutex_lock(&agg->lock);
    agg->open = false;
    fan = agg->fan;
    pthread_mutex_unlock(&agg->lock);
    if (fan == NULL)
        return;
    /* Cancels every fan-out: each request finishes (503 or what it has)
     * and its <done> fires (a phase that submits again meanwhile is
     * refused: 503). Nobody else touches the engine now: starts and the
     * loop see !open. */
    shed_fanout_destroy(fan);
    pthread_mutex_lock(&agg->lock);
    agg->fan = NULL;
    pthread_mutex_unlock(&agg->lock);
    /* The front end must have sent those answers (and freed the requests)
     * before MHD_stop_daemon(), which refuses suspended connections.
     * Bounded: 3 s. */
    for (int i = 0; i < 300 && atomic_load(&agg->n.in_flight) > 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};

        nanosleep(&ts, NULL);
    }
}

void
shed_agg_destroy(struct shed_agg *agg)
{
    if (agg == NULL)
        return;
    shed_agg_stop(agg);
    pthread_mutex_destroy(&agg->lock);
    pthread_mutex_destroy(&agg->elock);
    free(agg->empty);
    free(agg);
}

int
shed_agg_loop_fd(struct shed_agg *agg, uint64_t *busy_poll_ns)
{
    int fd = -1;

    *busy_poll_ns = 0;
    pthread_mutex_lock(&agg->lock);
    if (agg->open && agg->fan != NULL) {
        fd = shed_fanout_fd(agg->fan);
        *busy_poll_ns = shed_fanout_busy_poll(agg->fan);
    }
    pthread_mutex_unlock(&agg->lock);
    return fd;
}

void
shed_agg_loop_run(struct shed_agg *agg)
{
    /* Under the lock: shed_agg_stop() cannot destroy the fan-out while it
     * runs here (same lock order as shed_agg_start(): lock, fan-out). */
    pthread_mutex_lock(&agg->lock);
    if (agg->open && agg->fan != NULL)
        shed_fanout_run(agg->fan);
    pthread_mutex_unlock(&agg->lock);
}

uint64_t
shed_agg_answered(const struct shed_agg *agg)
{
    return atomic_load(&agg->n.answered);
}

void
shed_agg_stats(const struct shed_agg *agg, struct shed_agg_stats *out)
{
    const struct agg_counters *n = &agg->n;

    out->requests = atomic_load(&n->requests);
    out->answered = atomic_load(&n->answered);
    out->in_flight = atomic_load(&n->in_flight);
    out->backend_requests = atomic_load(&n->backend_reqs);
    out->backend_errors = atomic_load(&n->backend_errors);
    out->partial = atomic_load(&n->partial);
    out->probes = atomic_load(&n->probes);
    out->second_waves = atomic_load(&n->waves2);
    out->lookups = atomic_load(&n->lookups);
    out->rounds = atomic_load(&n->rounds);
    out->slices = atomic_load(&n->slices);
}

size_t
shed_agg_stats_text(const struct shed_agg_stats *s, char *buf, size_t len)
{
    int n;

    if (len == 0)
        return 0;
    n = snprintf(buf, len,
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
                 (unsigned long long)s->requests, (unsigned long long)s->backend_requests,
                 (unsigned long long)s->backend_errors, (unsigned long long)s->partial,
                 (unsigned long long)s->probes, (unsigned long long)s->second_waves,
                 (unsigned long long)s->lookups, (unsigned long long)s->rounds,
                 (unsigned long long)s->slices);
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

void
agg_finish(struct shed_agg_req *r)
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
        atomic_fetch_add(&r->agg->n.partial, 1);
    }
    r->ans.status = (unsigned)r->out.status;
    r->ans.body = r->out.body;
    r->ans.len = r->out.len;
    r->ans.content_type = r->out.ctype;
    r->ans.cache_control = "no-store";
    r->ans.partial = r->partial[0] != '\0' ? r->partial : NULL;
    r->ans.link = r->link[0] != '\0' ? r->link : NULL;
    r->ans.retry_after = r->retry_after ? 1 : 0;
    agg_uncount_all(r);
    atomic_store(&r->finished, true);
    atomic_fetch_add(&r->agg->n.answered, 1);
    r->done(r->done_arg, &r->ans);
}

void
agg_uncount_all(struct shed_agg_req *r)
{
    if (atomic_exchange(&r->counted_all, false))
        atomic_fetch_sub(&r->agg->list_all_now, 1);
}

void
agg_answer_text(struct shed_agg_req *r, int status, const char *text)
{
    shed_merge_out_clear(&r->out);
    if (shed_merge_text(&r->out, status, text, strlen(text)) < 0)
        r->out.status = status; /* body lost, status kept */
    agg_finish(r);
}

void
agg_answer_empty(struct shed_agg_req *r, int status)
{
    shed_merge_out_clear(&r->out);
    r->out.status = status;
    agg_finish(r);
}

void
agg_answer_unavailable(struct shed_agg_req *r, const char *why)
{
    r->retry_after = true;
    agg_answer_text(r, 503, why);
}

/* ------------------------------------------------------------- URLs */

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

void
agg_sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

void
agg_sb_enc(struct sbuf *b, const char *s, size_t n)
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

void
agg_sb_int(struct sbuf *b, const char *key, int64_t v)
{
    char t[48];
    int n = snprintf(t, sizeof(t), "%s=%lld&", key, (long long)v);

    sb_add(b, t, (size_t)n);
}

const char *
agg_detail_name(enum proto_burrow_detail d)
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
void
agg_sb_path(struct sbuf *b, const struct shed_agg_req *r, const char *msg, size_t mlen)
{
    agg_sb_str(b, "/v1.0");
    if (r->level >= PROTO_BURROW_QUEUES) {
        agg_sb_str(b, "/");
        agg_sb_enc(b, r->path.account.ptr, r->path.account.len);
    }
    if (r->level >= PROTO_BURROW_MESSAGES) {
        agg_sb_str(b, "/");
        agg_sb_enc(b, r->path.queue.ptr, r->path.queue.len);
    }
    if (msg != NULL) {
        agg_sb_str(b, "/");
        agg_sb_enc(b, msg, mlen);
    }
}

static void
sb_pos(struct sbuf *b, const char *key, const char *idkey, const struct pos *p)
{
    agg_sb_int(b, key, p->stamp);
    if (p->has_id) {
        agg_sb_str(b, idkey);
        agg_sb_enc(b, p->id, p->idlen);
        agg_sb_str(b, "&");
    }
}

static int
make_url(char *out, size_t len, const struct shed_agg_req *r, uint32_t be, const char *msg,
         size_t mlen, const struct urlopts *o)
{
    struct sbuf b = {out, 0, len, false};

    out[0] = '\0';
    agg_sb_str(&b, r->be[be].url);
    agg_sb_path(&b, r, msg, mlen);
    agg_sb_str(&b, "?");
    if (o->detail != NULL) {
        agg_sb_str(&b, "detail=");
        agg_sb_str(&b, o->detail);
        agg_sb_str(&b, "&");
    }
    if (o->limit > 0)
        agg_sb_int(&b, "limit", o->limit);
    if (o->marker && r->q.marker.ptr != NULL) {
        agg_sb_str(&b, "marker=");
        agg_sb_enc(&b, r->q.marker.ptr, r->q.marker.len);
        agg_sb_str(&b, "&");
    }
    if (o->attrs && r->q.has_ttl)
        agg_sb_int(&b, "ttl", r->q.ttl);
    if (o->attrs && r->q.has_hide)
        agg_sb_int(&b, "hide", r->q.hide);
    if (o->wait > 0)
        agg_sb_int(&b, "wait", o->wait);
    if (o->match_hidden)
        agg_sb_str(&b, "match_hidden=true&");
    if (o->stamps)
        agg_sb_str(&b, "shed_stamps=1&");
    if (o->clock > 0)
        agg_sb_int(&b, "shed_clock", o->clock);
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

const char *
agg_method_name(enum method m)
{
    return m == M_GET ? "GET" : m == M_POST ? "POST" : "DELETE";
}

/* ------------------------------------------------------ batch plumbing */

int
agg_batch_init(struct batch *b, size_t cap)
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

void
agg_batch_free(struct batch *b)
{
    free(b->reqs);
    free(b->urls);
}

int
agg_batch_add(struct batch *b, const struct shed_agg_req *r, const char *method, uint32_t be,
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
void
agg_batch_go(struct shed_agg_req *r, struct batch *b, enum phase ph)
{
    int rc;

    r->phase = ph;
    atomic_fetch_add(&r->refs, 1); /* dropped at the end of on_batch() */
    if (b->n == 0) {
        agg_batch_free(b);
        on_batch(r, NULL, 0);
        return;
    }
    rc = shed_fanout_submit(r->agg->fan, b->reqs, b->n,
                            ph == PH_WAIT || ph == PH_LOOKUP ? on_each : NULL, on_batch, r);
    if (rc == 0)
        atomic_fetch_add(&r->agg->n.backend_reqs, b->n);
    agg_batch_free(b);
    if (rc < 0) {
        atomic_fetch_sub(&r->refs, 1); /* the caller still holds its own */
        agg_answer_unavailable(r, "aggregator busy");
    }
}

void
agg_mark_failed(struct shed_agg_req *r, uint32_t be, const char *why, int status, int err)
{
    if (r->be[be].failed)
        return;
    r->be[be].failed = true;
    atomic_fetch_add(&r->agg->n.backend_errors, 1);
    log_debug("agg: backend=%s %s (status %d, err %d)", r->be[be].id, why, status, err);
}

/* Classify one backend result: true when it is a usable Burrow answer. */
bool
agg_usable(struct shed_agg_req *r, uint32_t be, const struct shed_fanout_res *res)
{
    if (res->err == -ECANCELED)
        return false;
    if (res->status == 0 || res->status >= 500) {
        agg_mark_failed(r, be, "unreachable", res->status, res->err);
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
void
agg_keep_notfound(struct shed_agg_req *r, int status, const char *body, size_t len)
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

const char *
agg_notfound_text(struct shed_agg_req *r)
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
bool
agg_pass_400(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (res[i].status == 400) {
            agg_answer_text(r, 400, res[i].body);
            return true;
        }
    }
    return false;
}

void
agg_lists_reset(struct shed_agg_req *r)
{
    for (size_t i = 0; i < r->nlists; i++)
        shed_merge_list_clear(&r->lists[i]);
    r->nlists = 0;
}

/* Parse answer <res> of backend <be> into <l> (zeroed here). Answers to
 * requests with shed_stamps=1 (<stamps>) must carry Shed-Clock: a backend
 * without shed's ordering extension cannot be merged in order, and is
 * treated as unreachable. Returns true when <l> holds a usable answer. */
bool
agg_take_one(struct shed_agg_req *r, uint32_t be, const struct shed_fanout_res *res, int64_t asked,
             bool stamps, struct shed_merge_list *l)
{
    memset(l, 0, sizeof(*l));
    if (!agg_usable(r, be, res))
        return false;
    if (stamps && res->clock <= 0 && res->status != 400) {
        if (!r->be[be].failed)
            log_warnx("agg: backend=%s answered without Shed-Clock: it lacks shed's ordering "
                      "extension (docs/aggregator.md)",
                      r->be[be].id);
        agg_mark_failed(r, be, "no Shed-Clock", res->status, 0);
        return false;
    }
    agg_keep_notfound(r, res->status, res->body, res->len);
    if (shed_merge_parse(l, res->status, res->body, res->len, asked) < 0) {
        /* A backend that answers garbage is as good as unreachable. */
        agg_mark_failed(r, be, "answered garbage", res->status, 0);
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
int64_t
agg_clock(const struct shed_agg_req *r)
{
    int64_t seen = atomic_load(&r->agg->clock), now = (int64_t)(clock_real_ns() / 1000);

    return seen > now ? seen : now;
}

/* Parse <n> answers into list slots [off, off + n) (servers order[off..]). */
bool
agg_take_lists_at(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n, size_t off,
                  int64_t asked, bool stamps)
{
    bool any = false;

    for (size_t k = 0; k < n; k++) {
        size_t i = off + k;

        any |= agg_take_one(r, r->order[i], &res[k], asked, stamps, &r->lists[i]);
        if (r->nlists < i + 1)
            r->nlists = i + 1;
    }
    return any;
}

int
agg_picks_room(struct shed_agg_req *r, size_t need)
{
    free(r->picks);
    r->picks = calloc(need + 1, sizeof(*r->picks));
    r->npicks = 0;
    return r->picks == NULL ? -ENOMEM : 0;
}

void
agg_render_from(struct shed_agg_req *r, const struct shed_merge_list *lists)
{
    shed_merge_out_clear(&r->out);
    if (shed_merge_render(r->level, r->detail, lists, r->picks, r->npicks, agg_notfound_text(r),
                          &r->out) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    agg_finish(r);
}

void
agg_render(struct shed_agg_req *r)
{
    agg_render_from(r, r->lists);
}

/* Room for one more list slot. */
int
agg_slot_grow(struct shed_agg_req *r)
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

/* ------------------------------------------------------------ dispatch */

static bool
on_each(void *arg, size_t idx, const struct shed_fanout_res *res)
{
    struct shed_agg_req *r = arg;

    (void)idx;
    if (r->phase == PH_LOOKUP)
        return agg_lookup_each(r, idx, res);
    /* PH_WAIT: the first server with something visible releases the wait. */
    return res->err == 0 && res->status == 200;
}

static void
on_batch(void *arg, const struct shed_fanout_res *res, size_t n)
{
    struct shed_agg_req *r = arg;

    switch (r->phase) {
    case PH_IDS:
        agg_ids_done(r, res, n);
        break;
    case PH_IDS_DEL:
        agg_ids_del_done(r, res, n);
        break;
    case PH_MARKER:
        agg_marker_done(r, res, n);
        break;
    case PH_FETCH:
        agg_fetch_done(r, res, n);
        break;
    case PH_DEDUP:
        agg_dedup_done(r, res, n);
        break;
    case PH_DESTR_ALL:
        agg_destr_all_done(r, res, n);
        break;
    case PH_DESTR_OP:
        agg_destr_op_done(r, res, n);
        break;
    case PH_DESTR_CLEAN:
        agg_destr_next(r);
        break;
    case PH_WAIT:
        agg_wait_done(r, res, n);
        break;
    case PH_BADDETAIL:
        agg_baddetail_done(r, res, n);
        break;
    case PH_LOOKUP:
        agg_lookup_done(r, res, n);
        break;
    case PH_NONE:
        agg_answer_unavailable(r, "internal error");
        break;
    }
    if (atomic_fetch_sub(&r->refs, 1) == 1)
        req_destroy(r); /* the caller freed its side first */
}

/* The raw query string again, from the raw (not unescaped) arguments. */
static int
join_query(const struct shed_agg_arg *args, size_t nargs, char *buf, size_t cap, size_t *len)
{
    size_t o = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < nargs; i++) {
        const char *v = args[i].val;
        int n = snprintf(buf + o, cap - o, "%s%s%s%s", o ? "&" : "", args[i].key, v ? "=" : "",
                         v ? v : "");

        if (n < 0 || (size_t)n >= cap - o)
            return -E2BIG;
        o += (size_t)n;
    }
    *len = o;
    return 0;
}

int
shed_agg_start(struct shed_agg *agg, const struct shed_agg_request *rq, shed_agg_done_fn done,
               void *arg, struct shed_agg_req **out)
{
    char query[SHED_AGG_QUERY_MAX];
    const struct registry_route *route = rq->route;
    struct shed_agg_req *r;
    unsigned tok = 0;
    bool in_view = false;
    size_t qlen = 0;

    if (join_query(rq->args, rq->nargs, query, sizeof(query), &qlen) < 0)
        return -E2BIG;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->agg = agg;
    r->done = done;
    r->done_arg = arg;
    r->now = rq->now_ms != 0 ? rq->now_ms : clock_mono_ms();
    r->timeout_ms = atomic_load(&agg->timeout_ms);
    atomic_init(&r->refs, 1);
    /* Under the lock: shed_agg_stop() does not tear the fan-out down while
     * a request starts on it. */
    pthread_mutex_lock(&agg->lock);
    if (!agg->open) {
        pthread_mutex_unlock(&agg->lock);
        free(r);
        return -ESHUTDOWN;
    }
    atomic_fetch_add(&agg->n.requests, 1);
    atomic_fetch_add(&agg->n.in_flight, 1);
    *out = r;
    if (route == NULL && rq->service != NULL && agg->reg != NULL) {
        /* The route is read only while the request starts (its snapshot). */
        tok = shed_rcu_enter(registry_rcu(agg->reg));
        in_view = true;
        route = registry_route_find(registry_view(agg->reg), rq->service, strlen(rq->service));
    }
    agg_begin(r, route, rq->method, rq->path, rq->plen, query, qlen);
    if (in_view)
        shed_rcu_leave(registry_rcu(agg->reg), tok);
    pthread_mutex_unlock(&agg->lock);
    return 0;
}

const struct shed_agg_answer *
shed_agg_answer(const struct shed_agg_req *r)
{
    return atomic_load(&r->finished) ? &r->ans : NULL;
}

char *
shed_agg_take_body(struct shed_agg_req *r, size_t *len)
{
    char *body = r->out.body;

    *len = body != NULL ? r->out.len : 0;
    r->out.body = NULL;
    r->out.len = 0;
    r->ans.body = NULL;
    r->ans.len = 0;
    return body;
}

void
shed_agg_req_free(struct shed_agg_req *r)
{
    /* A batch still on the engine (a page answered early) frees it. */
    if (r == NULL)
        return;
    atomic_fetch_sub(&r->agg->n.in_flight, 1);
    if (atomic_fetch_sub(&r->refs, 1) == 1)
        req_destroy(r);
}

static void
req_destroy(struct shed_agg_req *r)
{
    agg_uncount_all(r);
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
