/* SPDX-License-Identifier: ISC */
/*
 * shed/agg_start: a request begins (see agg_impl.h). The method, path and
 * query are parsed and checked (405, 404, 403, 400 are answered before
 * anything is asked), and the membership is copied out of the routing view:
 * the servers of the account's buckets in both generations (every member
 * for /v1.0), sorted by id, and each bucket's preference rows as indices
 * into them, so that nothing touches the registry afterwards.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shed/agg_impl.h"

static int
cmp_backend(const void *a, const void *b)
{
    return strcmp(((const struct backend *)a)->id, ((const struct backend *)b)->id);
}

static int
cmp_id_backend(const void *key, const void *b)
{
    return strcmp(key, ((const struct backend *)b)->id);
}

/* The index of backend <id> in r->be (sorted by cmp_backend), or NOPOS. */
static uint32_t
find_backend(const struct shed_agg_req *r, const char *id)
{
    const struct backend *b = bsearch(id, r->be, r->nbe, sizeof(r->be[0]), cmp_id_backend);
    return b != NULL ? (uint32_t)(b - r->be) : NOPOS;
}

int
agg_add_member(struct shed_agg_req *r, size_t cap, const struct ring_member *m, bool live)
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
bool
agg_member_live(const struct registry_route *route, const struct ring *ring, uint32_t idx)
{
    uint32_t cur;

    if (ring == route->ring)
        return atomic_load(&route->live[idx]) != REGISTRY_DOWN;
    cur = ring_find(route->ring, ring_member_at(ring, idx)->id);
    return cur != RING_NONE && atomic_load(&route->live[cur]) != REGISTRY_DOWN;
}

/* A member of the previous generation only has left the cell (evicted or
 * deregistered): it is not asked and not reported as unreachable. */
bool
agg_member_gone(const struct registry_route *route, const struct ring *ring, uint32_t idx)
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
                if (agg_member_gone(route, ring, i))
                    continue;
                if (agg_add_member(r, cap, ring_member_at(ring, i),
                                   agg_member_live(route, ring, i)) < 0)
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
                    if (agg_member_gone(route, ring, row[j]))
                        continue;
                    if (agg_add_member(r, cap, ring_member_at(ring, row[j]),
                                       agg_member_live(route, ring, row[j])) < 0)
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

void
agg_begin(struct shed_agg_req *r, const struct registry_route *route, const char *method,
          const char *path, size_t plen, const char *query, size_t qlen)
{
    int rc;

    if (route == NULL) {
        agg_answer_empty(r, 404);
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
            agg_answer_empty(r, 404);
            return;
        }
        if (rc < 0) {
            agg_answer_text(r, 400, proto_strerror(rc));
            return;
        }
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
            strcmp(method, "POST") != 0 && strcmp(method, "DELETE") != 0) {
            agg_answer_empty(r, 405);
            return;
        }
        r->lmethod = strcmp(method, "HEAD") == 0 ? "GET" : method;
        r->level = PROTO_BURROW_MESSAGES; /* agg_sb_path() writes account and queue */
        proto_burrow_query_init(&r->q);
        rc = proto_burrow_query_parse(&r->q, query ? query : "", query ? qlen : 0, r->qbuf,
                                      sizeof(r->qbuf));
        if (rc < 0) {
            agg_answer_text(r, 400, proto_strerror(rc));
            return;
        }
        r->detail = r->q.detail != PROTO_DETAIL_DEFAULT ? r->q.detail
                    : strcmp(r->lmethod, "GET") == 0    ? PROTO_DETAIL_ALL
                                                        : PROTO_DETAIL_NONE;
        r->order = calloc(2 * LOOKUP_WALK, sizeof(*r->order));
        if (r->order == NULL) {
            agg_answer_unavailable(r, "out of memory");
            return;
        }
        atomic_fetch_add(&r->agg->n.lookups, 1);
        agg_lookup_run(r, route);
        return;
    }
    if (rc == -PROTO_ENOTFOUND || (rc == 0 && (r->path.level < PROTO_BURROW_ACCOUNTS ||
                                               r->path.level > PROTO_BURROW_MESSAGES))) {
        agg_answer_empty(r, 404);
        return;
    }
    if (rc < 0) {
        agg_answer_text(r, 400, proto_strerror(rc));
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
        agg_answer_empty(r, 405);
        return;
    }
    proto_burrow_query_init(&r->q);
    rc = proto_burrow_query_parse(&r->q, query ? query : "", query ? qlen : 0, r->qbuf,
                                  sizeof(r->qbuf));
    if (rc < 0) {
        agg_answer_text(r, 400, proto_strerror(rc));
        return;
    }
    if (r->level == PROTO_BURROW_ACCOUNTS && !atomic_load(&r->agg->list_all)) {
        agg_answer_text(r, 403, "listing all accounts is disabled");
        return;
    }
    if (r->level == PROTO_BURROW_ACCOUNTS) {
        /* Each one asks every member (docs/aggregator.md, "Listing every
         * account"): at most list_all_running at once, the rest retry. */
        uint32_t now = atomic_fetch_add(&r->agg->list_all_now, 1);
        atomic_store(&r->counted_all, true);
        if (now >= atomic_load(&r->agg->list_all_max)) {
            agg_answer_unavailable(r, "too many account lists running, retry later");
            return;
        }
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
        agg_answer_text(r, 400, raw);
        return;
    }
    rc = snapshot(r, route);
    if (rc == -E2BIG) {
        agg_answer_text(r, 403,
                        "listing all accounts is disabled: more servers than "
                        "the aggregator asks at once");
        return;
    }
    if (rc < 0) {
        agg_answer_unavailable(r, "out of memory");
        return;
    }
    if (r->nbe == 0) {
        agg_answer_unavailable(r, "no backend for this service");
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
            agg_answer_text(r, 400, raw);
            return;
        }
        o.detail = raw;
        if (agg_batch_init(&b, r->nbe) < 0) {
            agg_answer_unavailable(r, "out of memory");
            return;
        }
        for (uint32_t i = 0; i < r->nbe; i++) {
            if (!r->be[i].live)
                continue;
            r->order[b.n] = i;
            agg_batch_add(&b, r, "GET", i, NULL, 0, &o, r->timeout_ms);
        }
        agg_batch_go(r, &b, PH_BADDETAIL);
        return;
    }
    if (r->q.has_wait && r->q.wait > 0 && r->level == PROTO_BURROW_MESSAGES)
        r->deadline = r->now + (uint64_t)r->q.wait * 1000;
    if (r->level != PROTO_BURROW_MESSAGES) {
        agg_ids_fetch(r);
        return;
    }
    memset(&r->start, 0, sizeof(r->start));
    if (r->q.marker.ptr != NULL) {
        if (!r->has_cursor) {
            agg_marker_probe(r);
            return;
        }
        /* The cursor's stamp places the marker: no probe, and the page goes
         * on after that place even if the marker message is gone. */
        agg_pos_set(&r->start, r->cursor.stamp, r->q.marker.ptr, r->q.marker.len);
    }
    agg_msgs_run(r);
}
