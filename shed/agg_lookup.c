/* SPDX-License-Identifier: ISC */
/*
 * shed/agg_lookup: one message asked of every server it may live on (see
 * agg_impl.h and docs/reachability.md): the first LOOKUP_WALK servers of
 * its bucket in each generation; the first success in preference order is
 * the answer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shed/agg_impl.h"

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
        nw = ring_walk(ring, shed_route_bucket(ring_config(ring), p), walk, LOOKUP_WALK);
        for (size_t i = 0; i < nw; i++)
            if (!agg_member_gone(route, ring, walk[i]))
                agg_add_member(r, 2 * LOOKUP_WALK, ring_member_at(ring, walk[i]),
                               agg_member_live(route, ring, walk[i]));
    }
    return 0;
}

void
agg_lookup_run(struct shed_agg_req *r, const struct registry_route *route)
{
    struct urlopts o = {0};
    struct batch b;
    char detail[PROTO_BURROW_ID_MAX + 1];

    if (lookup_snapshot(r, route) < 0 || agg_batch_init(&b, r->nbe) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    if (r->q.detail_raw.ptr != NULL) {
        snprintf(detail, sizeof(detail), "%.*s", (int)r->q.detail_raw.len, r->q.detail_raw.ptr);
        o.detail = detail;
    }
    o.attrs = true;
    r->lseen = calloc(r->nbe ? r->nbe : 1, 1);
    if (r->lseen == NULL) {
        agg_batch_free(&b);
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    /* A server this view has down is asked too, briefly: the line shed that
     * sent the lookup may already see it back, with the message. */
    for (uint32_t i = 0; i < r->nbe; i++) {
        uint64_t tmo =
            r->be[i].live || r->timeout_ms < LOOKUP_DOWN_MS ? r->timeout_ms : LOOKUP_DOWN_MS;

        r->be[i].live = true;
        r->order[b.n] = i;
        if (agg_batch_add(&b, r, r->lmethod, i, r->path.message.ptr, r->path.message.len, &o, tmo) <
            0) {
            agg_batch_free(&b);
            agg_answer_text(r, 414, "path or query too long");
            return;
        }
    }
    if (b.n == 0) {
        agg_batch_free(&b);
        agg_answer_unavailable(r, "no live server for this message");
        return;
    }
    agg_batch_go(r, &b, PH_LOOKUP);
}

/* A GET's answer is known once a server has it and every server before it
 * in preference order said it has not: the rest are cancelled. A DELETE or
 * POST waits for every server (each copy must change). */
bool
agg_lookup_each(struct shed_agg_req *r, size_t idx, const struct shed_fanout_res *res)
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
void
agg_lookup_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    const struct shed_fanout_res *best = NULL;
    bool answered = false;

    for (size_t i = 0; i < n; i++) {
        if (!agg_usable(r, r->order[i], &res[i]))
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
            agg_answer_text(r, 400, res[i].body);
            return;
        }
    }
    if (best == NULL) {
        if (answered)
            agg_answer_text(r, 404, r->notfound[0] != '\0' ? r->notfound : "Message not found");
        else
            agg_answer_unavailable(r, "no server answered");
        return;
    }
    shed_merge_out_clear(&r->out);
    r->out.status = best->status;
    if (best->len > 0) {
        r->out.body = malloc(best->len);
        if (r->out.body == NULL) {
            agg_answer_unavailable(r, "out of memory");
            return;
        }
        memcpy(r->out.body, best->body, best->len);
        r->out.len = best->len;
        r->out.ctype = r->detail == PROTO_DETAIL_ALL || r->detail == PROTO_DETAIL_ATTRIBUTES
                           ? "application/json"
                           : "application/octet-stream";
    }
    agg_finish(r);
}
