/* SPDX-License-Identifier: ISC */
/*
 * shed/agg_destr: claims (POST), updates and deletes of messages (see
 * agg_impl.h). Without a limit every server does the operation at once;
 * with one, in rounds: the oldest DESTR_CHUNK candidates are fetched in
 * the global order, then each server that holds a winner changes exactly
 * its range of them, and the losing copies met in the range are deleted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "shed/agg_impl.h"

static void destr_finish(struct shed_agg_req *r);

void
agg_destr_all(struct shed_agg_req *r)
{
    size_t n = agg_visit_list(r);
    struct batch b;

    agg_lists_reset(r);
    if (agg_batch_init(&b, n) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct urlopts o = {0};

        o.detail = agg_detail_name(r->bdetail);
        o.attrs = r->m == M_POST;
        o.match_hidden = r->q.match_hidden;
        o.stamps = true;
        o.clock = agg_clock(r);
        o.from = &r->start;
        if (agg_batch_add(&b, r, agg_method_name(r->m), r->order[i], NULL, 0, &o, r->timeout_ms) <
            0) {
            agg_batch_free(&b);
            agg_answer_text(r, 400, "request too long");
            return;
        }
    }
    agg_batch_go(r, &b, PH_DESTR_ALL);
}

/* Merge <lists> (<n>) into r->picks in the global order, ids once. false
 * when the request is answered (no memory) or waits again (nothing to give
 * yet and a `wait` left): then the caller has nothing to render. */
static bool
picks_of(struct shed_agg_req *r, const struct shed_merge_list *lists, size_t n)
{
    struct shed_merge_cut cut;
    size_t items = shed_merge_items(lists, n);
    long np;

    if (agg_picks_room(r, items) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return false;
    }
    np = shed_merge_sorted(lists, n, 0, false, r->picks, items + 1, &cut);
    if (np < 0) {
        agg_answer_unavailable(r, "out of memory");
        return false;
    }
    r->npicks = (size_t)np;
    if (r->npicks == 0 && r->deadline != 0 && clock_mono_ms() < r->deadline) {
        agg_wait_poll(r);
        return false;
    }
    return true;
}

/* What every server changed, in the global order, ids once. */
void
agg_destr_all_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    if (agg_pass_400(r, res, n))
        return;
    if (!agg_take_lists_at(r, res, n, 0, 0, true) && n > 0) {
        agg_answer_unavailable(r, "no backend reachable");
        return;
    }
    if (picks_of(r, r->lists, r->nlists))
        agg_render(r);
}

/* A round of a destructive op with a limit: the oldest candidates, at most
 * DESTR_CHUNK, after the last round's (or the client's marker). */
void
agg_destr_round(struct shed_agg_req *r)
{
    atomic_fetch_add(&r->agg->n.rounds, 1);
    r->fetch_limit = r->remaining < DESTR_CHUNK ? r->remaining : DESTR_CHUNK;
    r->fdetail = PROTO_DETAIL_ATTRIBUTES;
    agg_fetch(r);
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
void
agg_destr_op(struct shed_agg_req *r)
{
    const struct shed_merge_item *last;
    uint32_t *count = NULL;
    struct batch b;

    if (r->npicks == 0) {
        destr_finish(r);
        return;
    }
    last = &r->lists[r->picks[r->npicks - 1].list].items[r->picks[r->npicks - 1].item];
    agg_pos_of(&r->upto, last);
    r->round_cands = r->npicks;
    r->round_more = r->cut.more;
    count = calloc(r->nbe, sizeof(*count));
    if (count == NULL || agg_batch_init(&b, r->nbe) < 0 || acc_room(r, r->nbe) < 0) {
        free(count);
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    /* Per server: its items in the range, losing copies included (they go
     * too, and must not use up its limit before its winners). */
    for (size_t li = 0; li < r->nlists; li++)
        for (size_t ii = 0; ii < r->lists[li].n; ii++)
            if (agg_pos_before(&r->after, &r->lists[li].items[ii]) &&
                agg_pos_within(&r->upto, &r->lists[li].items[ii]))
                count[r->order[li]]++;
    /* ... but only servers with a winner. */
    {
        bool *win = calloc(r->nbe, sizeof(*win));

        if (win == NULL) {
            free(count);
            agg_batch_free(&b);
            agg_answer_unavailable(r, "out of memory");
            return;
        }
        for (size_t p = 0; p < r->npicks; p++)
            win[r->order[r->picks[p].list]] = true;
        r->acc_from = r->nacc;
        for (uint32_t be = 0; be < r->nbe; be++) {
            struct urlopts o = {0};

            if (!win[be])
                continue;
            o.detail = agg_detail_name(r->bdetail);
            o.limit = count[be];
            o.attrs = r->m == M_POST;
            o.match_hidden = r->q.match_hidden;
            o.stamps = true;
            o.clock = agg_clock(r);
            o.from = &r->after;
            o.upto = &r->upto;
            r->acc_be[r->nacc + b.n] = be;
            if (agg_batch_add(&b, r, agg_method_name(r->m), be, NULL, 0, &o, r->timeout_ms) < 0) {
                free(win);
                free(count);
                agg_batch_free(&b);
                agg_answer_text(r, 400, "request too long");
                return;
            }
        }
        free(win);
    }
    free(count);
    agg_batch_go(r, &b, PH_DESTR_OP);
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

/* Was backend <be> changed in the running round? */
static bool
op_asked(const struct shed_agg_req *r, uint32_t be)
{
    for (size_t a = r->acc_from; a < r->nacc; a++)
        if (r->acc_be[a] == be)
            return true;
    return false;
}

void
agg_destr_op_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    struct urlopts o = {.detail = "none"};
    size_t taken = 0, ndrop = 0;
    struct batch b;

    for (size_t k = 0; k < n; k++) {
        struct shed_merge_list *l = &r->acc[r->nacc];
        uint32_t be = r->acc_be[r->acc_from + k];

        if (res[k].status == 400 && r->nacc == 0) {
            /* only before anything changed */
            agg_answer_text(r, 400, res[k].body);
            return;
        }
        agg_take_one(r, be, &res[k], 0, true, l);
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
                     agg_pos_before(&r->after, &r->lists[li].items[i]) &&
                     agg_pos_within(&r->upto, &r->lists[li].items[i]);
    if (ndrop == 0) {
        agg_destr_next(r);
        return;
    }
    if (agg_batch_init(&b, ndrop) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t a = r->acc_from; r->m == M_POST && a < r->nacc; a++)
        for (size_t i = 0; i < r->acc[a].n; i++)
            if (r->acc[a].items[i].drop)
                agg_batch_add(&b, r, "DELETE", r->acc_be[a], r->acc[a].items[i].id,
                              r->acc[a].items[i].idlen, &o, r->timeout_ms);
    for (size_t li = 0; li < r->nlists; li++)
        for (size_t i = 0; i < r->lists[li].n; i++) {
            const struct shed_merge_item *it = &r->lists[li].items[i];

            if (it->drop && !op_asked(r, r->order[li]) && agg_pos_before(&r->after, it) &&
                agg_pos_within(&r->upto, it))
                agg_batch_add(&b, r, "DELETE", r->order[li], it->id, it->idlen, &o, r->timeout_ms);
        }
    agg_batch_go(r, &b, PH_DESTR_CLEAN);
}

/* Another round, after this round's last candidate, while the limit is not
 * reached and more may follow (a round whose candidates others took
 * meanwhile goes on too, as long as more may follow). */
void
agg_destr_next(struct shed_agg_req *r)
{
    if (r->remaining <= 0 || !r->round_more || r->idle >= IDLE_ROUNDS) {
        destr_finish(r);
        return;
    }
    r->after = r->upto;
    agg_destr_round(r);
}

/* What the rounds changed, in the global order; wait when nothing. */
static void
destr_finish(struct shed_agg_req *r)
{
    agg_lists_reset(r);
    if (picks_of(r, r->acc, r->nacc))
        agg_render_from(r, r->acc);
}
