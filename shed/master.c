/* SPDX-License-Identifier: ISC */
/*
 * shed/master: per-cell memberships pushed by the line sheds and the choice
 * of cell and server for an escalated request. Rings are rebuilt only when a
 * cell's member set for a service changes (apply), never on a request.
 */
#include "shed/master.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ring/ring.h"
#include "shed/sync.h"

#define MAX_SERVICES_PER_CELL 64
#define MAX_MEMBERS_PER_SVC   4096
/* Entries not heard for this many leases are dropped from the view. */
#define FORGET_LEASES 20

struct mentry {
    struct proto_sync_entry e;
    uint64_t heard_ms; /* master's clock: when the backend was last heard */
};

struct msvc {
    char name[PROTO_SYNC_NAME_MAX + 1];
    struct mentry *m; /* in arrival order */
    uint32_t *by_id;  /* n indices into m, sorted by id: merges bisect it */
    size_t n, cap;
    struct ring *ring; /* over every non-gone entry; NULL until built */
    bool dirty;        /* member set changed: rebuild */
};

struct mcell {
    char name[PROTO_SYNC_NAME_MAX + 1];
    uint32_t proximity;
    char aggregator[PROTO_SYNC_URL_MAX + 1];
    char shed[PROTO_SYNC_URL_MAX + 1]; /* first configured line shed, "" if none */
    uint32_t lease_ms;
    uint64_t pushed_ms;
    struct msvc svcs[MAX_SERVICES_PER_CELL];
    size_t nsvcs;
};

struct shed_master {
    pthread_rwlock_t lock;
    const struct shed_config *cfg; /* borrowed */
    uint32_t max_hops;
    struct mcell *cells; /* SHED_MAX_CELLS */
    size_t ncells;
    struct shed_sync_origins origins;
};

int
shed_master_create(const struct shed_config *cfg, uint32_t max_hops, struct shed_master **out)
{
    struct shed_master *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return -ENOMEM;
    m->cells = calloc(SHED_MAX_CELLS, sizeof(*m->cells));
    if (m->cells == NULL) {
        free(m);
        return -ENOMEM;
    }
    if (pthread_rwlock_init(&m->lock, NULL) != 0) {
        free(m->cells);
        free(m);
        return -ENOMEM;
    }
    m->cfg = cfg;
    m->max_hops = max_hops ? max_hops : SHED_MASTER_MAX_HOPS;
    shed_sync_origins_init(&m->origins);
    *out = m;
    return 0;
}

void
shed_master_destroy(struct shed_master *m)
{
    if (m == NULL)
        return;
    for (size_t c = 0; c < m->ncells; c++)
        for (size_t s = 0; s < m->cells[c].nsvcs; s++) {
            free(m->cells[c].svcs[s].m);
            free(m->cells[c].svcs[s].by_id);
            ring_destroy(m->cells[c].svcs[s].ring);
        }
    shed_sync_origins_fini(&m->origins);
    pthread_rwlock_destroy(&m->lock);
    free(m->cells);
    free(m);
}

/* Proximity and fallback shed of cell <c> from <cfg>. */
static void
cell_configure(const struct shed_config *cfg, struct mcell *c)
{
    c->proximity = SHED_MASTER_PROX_NONE;
    c->shed[0] = '\0';
    for (size_t i = 0; i < cfg->ncells; i++) {
        const struct shed_cell_config *cc = &cfg->cells[i];
        if (strcmp(cc->name, c->name) == 0) {
            c->proximity = cc->proximity;
            if (cc->nsheds > 0)
                snprintf(c->shed, sizeof(c->shed), "%s", cc->sheds[0]);
        }
    }
}

static struct mcell *
cell_get(struct shed_master *m, const char *name, bool create)
{
    struct mcell *c;

    for (size_t i = 0; i < m->ncells; i++)
        if (strcmp(m->cells[i].name, name) == 0)
            return &m->cells[i];
    if (!create || m->ncells >= SHED_MAX_CELLS)
        return NULL;
    c = &m->cells[m->ncells++];
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    cell_configure(m->cfg, c);
    return c;
}

static struct msvc *
svc_get(struct mcell *c, const char *name, bool create)
{
    struct msvc *s;

    for (size_t i = 0; i < c->nsvcs; i++)
        if (strcmp(c->svcs[i].name, name) == 0)
            return &c->svcs[i];
    if (!create || c->nsvcs >= MAX_SERVICES_PER_CELL)
        return NULL;
    s = &c->svcs[c->nsvcs++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    return s;
}

static bool
same_placement(const struct proto_sync_entry *a, const struct proto_sync_entry *b)
{
    return (a->state == PROTO_SYNC_GONE) == (b->state == PROTO_SYNC_GONE) &&
           strcmp(a->url, b->url) == 0 && strcmp(a->zone, b->zone) == 0 && a->weight == b->weight;
}

/* Where <id> is in s->by_id, or where it would be inserted (*found false). */
static size_t
entry_pos(const struct msvc *s, const char *id, bool *found)
{
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->m[s->by_id[mid]].e.id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static const struct mentry *
find_entry(const struct msvc *s, const char *id)
{
    bool found;
    size_t pos = entry_pos(s, id, &found);
    return found ? &s->m[s->by_id[pos]] : NULL;
}

/* Merge one entry heard <heard> ms ago (master clock). */
static int
merge(struct msvc *s, const struct proto_sync_entry *e, uint64_t heard)
{
    struct mentry *me;
    bool found;
    size_t pos = entry_pos(s, e->id, &found);

    if (!found) {
        if (s->n >= MAX_MEMBERS_PER_SVC)
            return -ENOSPC;
        if (s->n == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 8;
            struct mentry *p = realloc(s->m, ncap * sizeof(*p));
            if (p == NULL)
                return -ENOMEM;
            s->m = p;
            uint32_t *q = realloc(s->by_id, ncap * sizeof(*q));
            if (q == NULL)
                return -ENOMEM; /* m grew, cap did not: retried next time */
            s->by_id = q;
            s->cap = ncap;
        }
        memmove(&s->by_id[pos + 1], &s->by_id[pos], (s->n - pos) * sizeof(*s->by_id));
        s->by_id[pos] = (uint32_t)s->n;
        me = &s->m[s->n++];
        me->e = *e;
        me->heard_ms = heard;
        s->dirty = true;
        return 0;
    }
    me = &s->m[s->by_id[pos]];
    if (e->incarnation < me->e.incarnation)
        return 0; /* an older life of the backend */
    bool newer = e->incarnation > me->e.incarnation;
    if (!newer) {
        if (me->e.state == PROTO_SYNC_GONE)
            return 0; /* deregistered for good in this incarnation */
        if (e->state != PROTO_SYNC_GONE && heard < me->heard_ms)
            return 0; /* we already know of a later heartbeat */
    }
    if (!same_placement(&me->e, e))
        s->dirty = true;
    me->e = *e;
    if (newer || heard > me->heard_ms)
        me->heard_ms = heard;
    return 0;
}

static bool
forgotten(const struct mentry *me, uint64_t now, uint64_t lease)
{
    return now > me->heard_ms && now - me->heard_ms > FORGET_LEASES * lease;
}

/* Drop entries not heard for FORGET_LEASES leases; by_id keeps its order
 * and is renumbered (kept until the next push if there is no memory). */
static void
forget_old(struct msvc *s, uint64_t now, uint64_t lease)
{
    size_t i, j = 0, k = 0;
    uint32_t *newpos;

    for (i = 0; i < s->n && !forgotten(&s->m[i], now, lease); i++)
        ;
    if (i == s->n || (newpos = malloc(s->n * sizeof(*newpos))) == NULL)
        return;
    for (i = 0; i < s->n; i++) {
        newpos[i] = UINT32_MAX;
        if (forgotten(&s->m[i], now, lease))
            continue;
        newpos[i] = (uint32_t)j;
        s->m[j++] = s->m[i];
    }
    for (i = 0; i < s->n; i++)
        if (newpos[s->by_id[i]] != UINT32_MAX)
            s->by_id[k++] = newpos[s->by_id[i]];
    free(newpos);
    s->n = j;
    s->dirty = true;
}

/* The configured service <name>, or NULL (a walk instead of
 * shed_config_service() keeps this module free of the config parser). */
static const struct shed_service_config *
service_cfg(const struct shed_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nservices; i++)
        if (strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    return NULL;
}

static void
rebuild(const struct shed_master *m, struct msvc *s)
{
    const struct shed_service_config *sc;
    struct ring_config rc;
    struct ring_member *rm;
    struct ring *r = NULL;
    size_t n = 0;

    if (!s->dirty)
        return;
    sc = service_cfg(m->cfg, s->name);
    if (sc != NULL)
        rc = sc->ring;
    else
        ring_config_default(&rc);
    rm = calloc(s->n ? s->n : 1, sizeof(*rm));
    if (rm == NULL)
        return; /* keep the old ring; retried on the next push */
    for (size_t i = 0; i < s->n; i++) {
        if (s->m[i].e.state == PROTO_SYNC_GONE)
            continue;
        rm[n].id = s->m[i].e.id;
        rm[n].url = s->m[i].e.url;
        rm[n].zone = s->m[i].e.zone;
        rm[n].weight = s->m[i].e.weight > rc.weight_scale ? rc.weight_scale : s->m[i].e.weight;
        n++;
    }
    if (ring_build(&rc, rm, n, &r) == 0) {
        ring_destroy(s->ring);
        s->ring = r;
        s->dirty = false;
    }
    free(rm);
}

/* Merge <msg> into its cell. Caller holds the write lock. */
static int
merge_msg(struct shed_master *m, const struct proto_sync_msg *msg, uint64_t now_ms)
{
    struct mcell *c = cell_get(m, msg->cell, true);
    int rc = 0;

    if (c == NULL)
        return -ENOSPC;
    c->pushed_ms = now_ms;
    c->lease_ms = msg->lease_ms ? msg->lease_ms : 3000;
    if (msg->aggregator[0] != '\0')
        snprintf(c->aggregator, sizeof(c->aggregator), "%s", msg->aggregator);
    for (size_t i = 0; i < msg->nentries; i++) {
        const struct proto_sync_entry *e = &msg->entries[i];
        struct msvc *s = svc_get(c, e->service, true);
        uint64_t heard = now_ms > e->age_ms ? now_ms - e->age_ms : 0;

        if (s == NULL) {
            rc = -ENOSPC;
            continue;
        }
        int r = merge(s, e, heard);
        if (r < 0)
            rc = r;
    }
    for (size_t i = 0; i < c->nsvcs; i++) {
        forget_old(&c->svcs[i], now_ms, c->lease_ms);
        rebuild(m, &c->svcs[i]);
    }
    return rc;
}

int
shed_master_apply(struct shed_master *m, const struct proto_sync_msg *msg, uint64_t now_ms,
                  struct proto_sync_ack *ack)
{
    int rc;

    if (msg->cell[0] == '\0')
        return -EINVAL;
    if (!shed_sync_origins_check(&m->origins, msg, ack))
        return 0;
    pthread_rwlock_wrlock(&m->lock);
    rc = merge_msg(m, msg, now_ms);
    pthread_rwlock_unlock(&m->lock);
    if (rc == 0)
        shed_sync_origins_done(&m->origins, msg, ack);
    return rc;
}

int
shed_master_feed(struct shed_master *m, const struct proto_sync_msg *msg, uint64_t now_ms)
{
    int rc;

    if (msg->cell[0] == '\0')
        return -EINVAL;
    pthread_rwlock_wrlock(&m->lock);
    rc = merge_msg(m, msg, now_ms);
    pthread_rwlock_unlock(&m->lock);
    return rc;
}

int
shed_master_reconfigure(struct shed_master *m, const struct shed_config *cfg)
{
    pthread_rwlock_wrlock(&m->lock);
    m->cfg = cfg;
    for (size_t c = 0; c < m->ncells; c++) {
        cell_configure(cfg, &m->cells[c]);
        /* Ring parameters may have changed: rebuild every ring now (the
         * same function of the same members gives the same table when they
         * did not). */
        for (size_t i = 0; i < m->cells[c].nsvcs; i++) {
            m->cells[c].svcs[i].dirty = true;
            rebuild(m, &m->cells[c].svcs[i]);
        }
    }
    pthread_rwlock_unlock(&m->lock);
    return 0;
}

static bool
entry_live(const struct mcell *c, const struct mentry *me, uint64_t now, bool allow_draining)
{
    if (me->e.state == PROTO_SYNC_UP || (allow_draining && me->e.state == PROTO_SYNC_DRAINING))
        return now < me->heard_ms + c->lease_ms;
    return false;
}

static uint64_t
live_weight(const struct mcell *c, const struct msvc *s, uint64_t now, uint32_t *nlive)
{
    uint64_t w = 0;
    uint32_t n = 0;

    for (size_t i = 0; i < s->n; i++)
        if (entry_live(c, &s->m[i], now, false)) {
            w += s->m[i].e.weight;
            n++;
        }
    if (nlive != NULL)
        *nlive = n;
    return w;
}

/* The first live member of <bucket>'s walk in <s>'s ring: UP first, a
 * draining one only if no member is up. */
static const struct mentry *
primary(const struct mcell *c, const struct msvc *s, uint32_t bucket, uint64_t now)
{
    uint32_t walk[64];
    size_t n;

    if (s->ring == NULL)
        return NULL;
    n = ring_walk(s->ring, bucket, walk, sizeof(walk) / sizeof(walk[0]));
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            const struct ring_member *rm = ring_member_at(s->ring, walk[i]);
            const struct mentry *me = find_entry(s, rm->id);
            if (me != NULL && entry_live(c, me, now, pass == 1))
                return me;
        }
    return NULL;
}

/* Any live member, weighted by weight (stateless services; walk fallback). */
static const struct mentry *
weighted_member(const struct mcell *c, const struct msvc *s, uint64_t now, uint64_t rnd)
{
    uint64_t total = live_weight(c, s, now, NULL), x;

    if (total == 0)
        return NULL;
    x = rnd % total;
    for (size_t i = 0; i < s->n; i++) {
        if (!entry_live(c, &s->m[i], now, false))
            continue;
        if (x < s->m[i].e.weight)
            return &s->m[i];
        x -= s->m[i].e.weight;
    }
    return NULL;
}

int
shed_master_route(struct shed_master *m, const struct shed_master_req *req,
                  struct shed_master_pick *out)
{
    const struct mcell *best[SHED_MAX_CELLS];
    const struct msvc *bsvc[SHED_MAX_CELLS];
    uint64_t bw[SHED_MAX_CELLS], total = 0, x;
    uint32_t bprox = UINT32_MAX, ncand = 0;
    size_t nb = 0;
    const struct mcell *c = NULL;
    const struct msvc *s = NULL;
    const struct shed_service_config *sc;
    int rc = -ENOENT;

    if (req->token != NULL && req->token->hops > m->max_hops)
        return -ELOOP;
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&m->lock);
    for (size_t i = 0; i < m->ncells; i++) {
        const struct mcell *ci = &m->cells[i];
        const struct msvc *si;
        uint64_t w;

        if (req->token != NULL && proto_token_visited(req->token, ci->name))
            continue;
        si = svc_get((struct mcell *)ci, req->service, false);
        if (si == NULL)
            continue;
        w = live_weight(ci, si, req->now_ms, NULL);
        if (w == 0)
            continue;
        if (req->list && ci->aggregator[0] == '\0' && ci->shed[0] == '\0')
            continue;
        ncand++;
        if (ci->proximity < bprox) {
            bprox = ci->proximity;
            nb = 0;
            total = 0;
        }
        if (ci->proximity == bprox) {
            best[nb] = ci;
            bsvc[nb] = si;
            bw[nb] = w;
            total += w;
            nb++;
        }
    }
    if (nb == 0)
        goto out;
    /* Spread over the equally close cells in proportion to live capacity. */
    x = req->rnd % total;
    for (size_t i = 0; i < nb; i++) {
        if (x < bw[i]) {
            c = best[i];
            s = bsvc[i];
            out->live_weight = bw[i];
            break;
        }
        x -= bw[i];
    }
    snprintf(out->cell, sizeof(out->cell), "%s", c->name);
    out->candidates = ncand;
    if (req->list) {
        snprintf(out->url, sizeof(out->url), "%s", c->aggregator[0] ? c->aggregator : c->shed);
        rc = 0;
        goto out;
    }
    sc = service_cfg(m->cfg, req->service);
    const struct mentry *me = NULL;
    if ((sc == NULL || sc->kind == SHED_KIND_BURROW) && s->ring != NULL) {
        out->bucket =
            ring_bucket(ring_config(s->ring), req->account, req->alen, req->key, req->klen);
        me = primary(c, s, out->bucket, req->now_ms);
    }
    if (me == NULL)
        me = weighted_member(c, s, req->now_ms, req->rnd >> 17);
    if (me == NULL)
        goto out;
    snprintf(out->url, sizeof(out->url), "%s", me->e.url);
    snprintf(out->id, sizeof(out->id), "%s", me->e.id);
    rc = 0;
out:
    pthread_rwlock_unlock(&m->lock);
    return rc;
}

uint32_t
shed_master_live(struct shed_master *m, const char *cell, const char *service, uint64_t now_ms)
{
    uint32_t n = 0;
    struct mcell *c;
    struct msvc *s;

    pthread_rwlock_rdlock(&m->lock);
    c = cell_get(m, cell, false);
    s = c ? svc_get(c, service, false) : NULL;
    if (s != NULL)
        live_weight(c, s, now_ms, &n);
    pthread_rwlock_unlock(&m->lock);
    return n;
}

json_t *
shed_master_status(struct shed_master *m, uint64_t now_ms)
{
    json_t *root = json_object(), *cells = json_array();

    if (root == NULL || cells == NULL) {
        json_decref(root);
        json_decref(cells);
        return NULL;
    }
    pthread_rwlock_rdlock(&m->lock);
    for (size_t i = 0; i < m->ncells; i++) {
        const struct mcell *c = &m->cells[i];
        json_t *svcs = json_array();
        for (size_t j = 0; j < c->nsvcs; j++) {
            uint32_t nlive = 0;
            uint64_t w = live_weight(c, &c->svcs[j], now_ms, &nlive);
            json_array_append_new(svcs,
                                  json_pack("{s:s,s:I,s:I,s:I}", "name", c->svcs[j].name, "live",
                                            (json_int_t)nlive, "members", (json_int_t)c->svcs[j].n,
                                            "live_weight", (json_int_t)w));
        }
        json_array_append_new(
            cells, json_pack("{s:s,s:I,s:s,s:I,s:o}", "name", c->name, "proximity",
                             (json_int_t)c->proximity, "aggregator", c->aggregator, "age_ms",
                             (json_int_t)(now_ms - c->pushed_ms), "services", svcs));
    }
    pthread_rwlock_unlock(&m->lock);
    json_object_set_new(root, "cells", cells);
    return root;
}
