/* SPDX-License-Identifier: ISC */
/*
 * shed/agg_list: message lists in the global (stamp, id) order (see
 * agg_impl.h and docs/aggregator.md). The marker's position (probe or
 * cursor), windows of every server in waves, the replicas remembered
 * empty, dedup probes for copies on earlier-preference servers, the page
 * and its Link; a wait long-polls every server and then runs the real
 * operation.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "shed/agg_impl.h"

static void dedup(struct shed_agg_req *r);
static void page_done(struct shed_agg_req *r);

/* Preference order (backend indices) of the message <id> of this queue:
 * the current generation's row for its bucket, then the previous one's. */
static size_t
pref_of(const struct shed_agg_req *r, const char *id, size_t idlen, uint32_t *out)
{
    char key[PROTO_BURROW_KEY_MAX];
    long kl =
        proto_burrow_ring_key(r->path.queue.ptr, r->path.queue.len, id, idlen, key, sizeof(key));
    size_t klen = (size_t)kl, n = 0;

    if (kl < 0)
        return 0;
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

void
agg_pos_set(struct pos *p, int64_t stamp, const char *id, size_t idlen)
{
    p->set = true;
    p->stamp = stamp;
    p->has_id = id != NULL;
    p->idlen = idlen > sizeof(p->id) ? sizeof(p->id) : idlen;
    if (p->idlen > 0)
        memcpy(p->id, id, p->idlen);
}

void
agg_pos_of(struct pos *p, const struct shed_merge_item *it)
{
    agg_pos_set(p, it->stamp, it->id, it->idlen);
}

/* Is item <it> after position <p>? */
bool
agg_pos_before(const struct pos *p, const struct shed_merge_item *it)
{
    if (!p->set)
        return true;
    if (!p->has_id)
        return it->stamp > p->stamp;
    return proto_burrow_key_cmp(it->stamp, it->id, it->idlen, p->stamp, p->id, p->idlen) > 0;
}

/* Is item <it> at or before position <p>? */
bool
agg_pos_within(const struct pos *p, const struct shed_merge_item *it)
{
    return p->set && !agg_pos_before(p, it);
}

/* Find the marker's stamp by asking its preference row (a single-message
 * GET finds hidden messages too). */
void
agg_marker_probe(struct shed_agg_req *r)
{
    uint32_t pref[PREF_MAX];
    size_t np = pref_of(r, r->q.marker.ptr, r->q.marker.len, pref);
    struct urlopts o = {.detail = "attributes", .stamps = true};
    struct batch b;

    if (agg_batch_init(&b, np) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < np; i++) {
        if (!r->be[pref[i]].live)
            continue;
        r->order[b.n] = pref[i];
        if (agg_batch_add(&b, r, "GET", pref[i], r->q.marker.ptr, r->q.marker.len, &o,
                          r->timeout_ms) < 0) {
            agg_batch_free(&b);
            agg_answer_text(r, 400, "request too long");
            return;
        }
    }
    agg_batch_go(r, &b, PH_MARKER);
}

void
agg_marker_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    /* The first server in preference order that has it gives the position;
     * a marker nobody has is ignored, as in Burrow. */
    memset(&r->start, 0, sizeof(r->start));
    for (size_t i = 0; i < n; i++) {
        int64_t stamp;

        if (!agg_usable(r, r->order[i], &res[i]) || res[i].status != 200)
            continue;
        if (shed_merge_stamp_of(res[i].body, res[i].len, &stamp) < 0) {
            agg_mark_failed(r, r->order[i], "gave no stamp", res[i].status, 0);
            continue;
        }
        agg_pos_set(&r->start, stamp, r->q.marker.ptr, r->q.marker.len);
        break;
    }
    agg_msgs_run(r);
}

/* Every live server of the request, in order[0..n). */
size_t
agg_visit_list(struct shed_agg_req *r)
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
int64_t
agg_window_of(int64_t limit, uint32_t c, uint32_t k)
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
        r->bwin[i] = agg_window_of(limit, best, k);
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
    if (agg_batch_init(&b, n) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t k = 0; k < n; k++) {
        struct urlopts o = {0};

        o.detail = agg_detail_name(r->fdetail);
        o.limit = limit < 0 ? r->bwin[r->order[from + k]] : limit;
        r->slim[from + k] = o.limit;
        o.match_hidden = r->q.match_hidden;
        o.stamps = true;
        o.clock = agg_clock(r);
        o.from = from_pos != NULL ? &from_pos[k] : &r->after;
        if (agg_batch_add(&b, r, "GET", r->order[from + k], NULL, 0, &o, r->timeout_ms) < 0) {
            agg_batch_free(&b);
            agg_answer_text(r, 400, "request too long");
            return;
        }
    }
    agg_batch_go(r, &b, PH_FETCH);
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
void
agg_fetch(struct shed_agg_req *r)
{
    size_t n, m = 0, c = 0;
    uint32_t *cached;
    int64_t lim;

    agg_lists_reset(r);
    r->nvisit = n = agg_visit_list(r);
    r->wave = 1;
    r->refreshed = false;
    windows(r, r->fetch_limit);
    lim = -1; /* per server: r->bwin[] */
    r->first_limit = lim;
    cached = calloc(n ? n : 1, sizeof(*cached));
    if (cached == NULL) {
        agg_answer_unavailable(r, "out of memory");
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
        if (agg_slot_grow(r) < 0) {
            agg_answer_unavailable(r, "out of memory");
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
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < from; i++) {
        struct shed_merge_list *l = &r->lists[i];

        if (l->status != 200 || !l->truncated || l->n == 0 || (r->sflags[i] & SLOT_CONTINUED))
            continue;
        if (agg_slot_grow(r) < 0) {
            free(at);
            agg_answer_unavailable(r, "out of memory");
            return;
        }
        l = &r->lists[i];
        agg_pos_of(&at[n], &l->items[l->n - 1]);
        l->truncated = false; /* its tail comes in the new slot */
        r->sflags[i] |= SLOT_CONTINUED;
        r->order[r->nlists] = r->order[i];
        r->sflags[r->nlists] = 0;
        memset(&r->lists[r->nlists], 0, sizeof(r->lists[0]));
        r->nlists++;
        n++;
    }
    r->nlists = from; /* agg_take_lists_at() sets it as the answers come */
    if (r->wave++ == 1)
        atomic_fetch_add(&r->agg->n.waves2, 1);
    fetch_send(r, from, n, at, want);
    free(at);
}

void
agg_fetch_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    if (agg_pass_400(r, res, n))
        return;
    for (size_t k = 0; k < n; k++) {
        size_t i = r->wave_from + k;

        r->any_answer |= agg_take_one(r, r->order[i], &res[k], r->slim[i], true, &r->lists[i]);
        if (r->nlists < i + 1)
            r->nlists = i + 1;
    }
    if (!r->any_answer && r->nvisit > 0) {
        agg_answer_unavailable(r, "no backend reachable");
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
    if (r->probes == NULL || agg_batch_init(b, want) < 0)
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
        agg_batch_add(b, r, "GET", be, it->id, it->idlen, &o, r->timeout_ms) < 0)
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
                agg_answer_unavailable(r, "out of memory");
                return;
            }
        }
    }
    atomic_fetch_add(&r->agg->n.probes, r->nprobes);
    agg_batch_go(r, &b, PH_DEDUP);
}

void
agg_dedup_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
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
    agg_sb_str(&b, "<");
    agg_sb_path(&b, r, NULL, 0);
    agg_sb_str(&b, "?marker=");
    agg_sb_enc(&b, it->id, it->idlen);
    agg_sb_str(&b, "&");
    agg_sb_int(&b, "limit", r->q.limit);
    if (r->q.detail != PROTO_DETAIL_DEFAULT) {
        agg_sb_str(&b, "detail=");
        agg_sb_str(&b, agg_detail_name(r->q.detail));
        agg_sb_str(&b, "&");
    }
    if (r->q.match_hidden)
        agg_sb_str(&b, "match_hidden=true&");
    agg_sb_str(&b, PROTO_MARKER_PARAM "=");
    agg_sb_str(&b, cur);
    agg_sb_str(&b, ">; rel=\"next\"");
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

    if (agg_picks_room(r, shed_merge_items(r->lists, r->nlists)) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    np = shed_merge_sorted(r->lists, r->nlists, r->fetch_limit, true, r->picks,
                           shed_merge_items(r->lists, r->nlists) + 1, &r->cut);
    if (np < 0) {
        agg_answer_unavailable(r, "out of memory");
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
        agg_destr_op(r);
        return;
    }
    if (r->npicks == 0 && r->deadline != 0 && clock_mono_ms() < r->deadline) {
        agg_wait_poll(r);
        return;
    }
    if (r->npicks > 0 && r->cut.more && r->q.limit > 0)
        make_link(r);
    agg_render(r);
}

static void
acc_reset(struct shed_agg_req *r)
{
    for (size_t i = 0; i < r->nacc; i++)
        shed_merge_list_clear(&r->acc[i]);
    r->nacc = 0;
}

void
agg_msgs_run(struct shed_agg_req *r)
{
    agg_lists_reset(r);
    acc_reset(r);
    r->after = r->start;
    r->idle = 0;
    if (r->m == M_GET) {
        r->fetch_limit = r->q.limit > 0 ? r->q.limit : 0;
        r->fdetail = r->bdetail;
        agg_fetch(r);
    } else if (r->q.limit > 0) {
        r->remaining = r->q.limit;
        agg_destr_round(r);
    } else {
        agg_destr_all(r);
    }
}

/* ------------------------------------------------------------------ wait */

/* Long-poll every server for anything after the client's position. */
void
agg_wait_poll(struct shed_agg_req *r)
{
    uint64_t now = clock_mono_ms(), left_ms = r->deadline > now ? r->deadline - now : 0;
    int64_t secs = (int64_t)((left_ms + 999) / 1000);
    size_t n = agg_visit_list(r);
    struct batch b;

    agg_lists_reset(r);
    if (secs <= 0 || n == 0) {
        r->npicks = 0;
        agg_render(r);
        return;
    }
    if (agg_batch_init(&b, n) < 0) {
        agg_answer_unavailable(r, "out of memory");
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
        if (agg_batch_add(&b, r, "GET", r->order[i], NULL, 0, &o,
                          (uint64_t)secs * 1000 + r->timeout_ms) < 0) {
            agg_batch_free(&b);
            agg_answer_text(r, 400, "request too long");
            return;
        }
    }
    agg_batch_go(r, &b, PH_WAIT);
}

void
agg_wait_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    bool hit = false, answered = false;

    for (size_t i = 0; i < n; i++) {
        if (res[i].err == -ECANCELED)
            continue;
        if (agg_usable(r, r->order[i], &res[i])) {
            answered = true;
            agg_keep_notfound(r, res[i].status, res[i].body, res[i].len);
        }
        hit |= res[i].err == 0 && res[i].status == 200;
    }
    if (hit) {
        /* Something is there: run the real operation (a destructive one
         * in rounds, so no message is taken twice). */
        agg_msgs_run(r);
        return;
    }
    if (!answered || clock_mono_ms() + 50 >= r->deadline) {
        r->deadline = 0;
        agg_lists_reset(r);
        acc_reset(r);
        r->npicks = 0;
        agg_render(r);
        return;
    }
    agg_wait_poll(r);
}

/* --------------------------------------------------------- bad detail */

void
agg_baddetail_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    if (agg_pass_400(r, res, n))
        return;
    for (size_t i = 0; i < n; i++)
        if (agg_usable(r, r->order[i], &res[i]))
            agg_keep_notfound(r, res[i].status, res[i].body, res[i].len);
    agg_answer_text(r, 404, agg_notfound_text(r));
}
