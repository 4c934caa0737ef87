/* SPDX-License-Identifier: ISC */
/*
 * shed/agg_ids: account and queue lists (see agg_impl.h). Every live
 * server is asked, IDS_SLICE at a time, and the union is windowed by
 * marker and limit like one Burrow server's list. A DELETE with a marker
 * or a limit deletes the selected ids on exactly the servers that listed
 * them, DEL_SLICE backend deletes at a time (at most DEL_MAX in all).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shed/agg_impl.h"

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
    if (agg_batch_init(&b, IDS_SLICE) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    r->wave_from = r->nlists;
    for (; r->ids_next < r->nbe && b.n < IDS_SLICE; r->ids_next++) {
        uint32_t i = (uint32_t)r->ids_next;

        if (!r->be[i].live)
            continue;
        r->order[r->wave_from + b.n] = i;
        if (agg_batch_add(&b, r, method, i, NULL, 0, &o, r->timeout_ms) < 0) {
            agg_batch_free(&b);
            agg_answer_text(r, 400, "request too long");
            return;
        }
    }
    agg_batch_go(r, &b, PH_IDS);
}

void
agg_ids_fetch(struct shed_agg_req *r)
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
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t p = 0; p < r->npicks; p++) {
        const struct shed_merge_item *it = &r->lists[r->picks[p].list].items[r->picks[p].item];

        if (shed_merge_set_add(&sel, it->id, it->idlen) < 0) {
            shed_merge_set_free(&sel);
            agg_answer_unavailable(r, "out of memory");
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
                agg_answer_text(r, 400, text);
                return;
            }
            r->jobs = calloc(n ? n : 1, sizeof(*r->jobs));
            if (r->jobs == NULL) {
                shed_merge_set_free(&sel);
                agg_answer_unavailable(r, "out of memory");
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
        agg_render(r);
        return;
    }
    if (n > DEL_SLICE)
        n = DEL_SLICE;
    if (agg_batch_init(&b, n) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    for (size_t k = 0; k < n; k++) {
        const struct deljob *j = &r->jobs[r->jobs_next + k];
        const struct shed_merge_item *it = &r->lists[j->list].items[j->item];

        /* DELETE /v1.0/<account> deletes an account; DELETE
         * /v1.0/a/<queue>?match_hidden=true empties a queue. */
        if (agg_batch_add(&b, r, "DELETE", j->be, it->id, it->idlen, &o, r->timeout_ms) < 0) {
            agg_batch_free(&b);
            agg_answer_text(r, 400, "request too long");
            return;
        }
    }
    atomic_fetch_add(&r->agg->n.slices, 1);
    agg_batch_go(r, &b, PH_IDS_DEL);
}

void
agg_ids_del_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    for (size_t k = 0; k < n; k++)
        (void)agg_usable(r, r->jobs[r->jobs_next + k].be, &res[k]);
    r->jobs_next += n;
    ids_del_next(r);
}

void
agg_ids_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n)
{
    long np;

    if (agg_pass_400(r, res, n))
        return;
    r->any_answer |= agg_take_lists_at(r, res, n, r->wave_from, 0, true);
    if (r->ids_next < r->nbe) {
        ids_slice(r);
        return;
    }
    if (!r->any_answer) {
        agg_answer_unavailable(r, "no backend reachable");
        return;
    }
    if (agg_picks_room(r, shed_merge_items(r->lists, r->nlists)) < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    np = shed_merge_window(r->lists, r->nlists, r->q.marker.ptr, r->q.marker.len, r->q.limit,
                           r->picks, shed_merge_items(r->lists, r->nlists) + 1);
    if (np < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    r->npicks = (size_t)np;
    if (r->m == M_DELETE && r->npicks > 0 && (r->q.limit > 0 || r->q.marker.ptr != NULL)) {
        ids_del_start(r);
        return;
    }
    agg_render(r);
}
