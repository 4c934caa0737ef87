/* SPDX-License-Identifier: ISC */
/*
 * shed/registry_view: the routing view of shed/registry. Rings are built
 * in registry_tick() (and on a reload), never by a heartbeat, and never
 * under the records' mutex: a build copies the members it wants out under
 * mu, runs ring_build() without it, and takes mu again to install the new
 * table against the records as they are by then. What changed meanwhile
 * is found by comparing the two (both sorted by id), not by bookkeeping in
 * every writer: a member the table names whose record left is down in it, a
 * member that joined or changed its url, zone or weight is not in it as it
 * should be, and either way the service stays dirty and the next tick
 * builds again. Liveness is stored into the new live[] at install from the
 * records, so nothing set during the build is lost.
 *
 * Generations: an install pushes the new ring with ring_gen_push(); the
 * table that falls out, the old view and the old live/load arrays go on a
 * garbage list that is freed after shed_rcu_synchronize().
 */
#include "shed/registry_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "shed/rcu.h"

const char *
registry_live_name(enum registry_live l)
{
    switch (l) {
    case REGISTRY_UP:
        return "up";
    case REGISTRY_DRAINING:
        return "draining";
    case REGISTRY_SUSPECT:
        return "suspect";
    case REGISTRY_DOWN:
        return "down";
    }
    return "?";
}

void
registry_unsettle(struct service *s)
{
    s->moved = true;
    atomic_store(&s->settle->unsettled, 1);
    atomic_fetch_add(&s->settle->changes, 1);
}

enum registry_live
registry_live_of(const struct member *m)
{
    if (m->down || m->gone)
        return REGISTRY_DOWN;
    if (m->suspect)
        return REGISTRY_SUSPECT;
    if (m->announced == PROTO_HB_DRAINING)
        return REGISTRY_DRAINING;
    return REGISTRY_UP;
}

/* A change opens the service's settle window (docs/reachability.md). */
void
registry_set_live(struct service *s, const struct member *m)
{
    if (!m->in_ring)
        return;
    uint8_t v = (uint8_t)registry_live_of(m);
    if (atomic_exchange(&s->live[m->ring_idx], v) != v)
        registry_unsettle(s);
}

void
registry_garbage(struct registry *reg, void *p)
{
    if (p == NULL)
        return;
    if (reg->ngarbage == GARBAGE_MAX) {
        /* Cannot happen with the bound above; never free under readers. */
        log_warnx("registry: garbage list full, leaking %p", p);
        return;
    }
    reg->garbage[reg->ngarbage++] = p;
}

void
registry_garbage_ring(struct registry *reg, struct ring *r)
{
    if (r == NULL)
        return;
    if (reg->ngarbage_rings == GARBAGE_MAX) {
        log_warnx("registry: ring garbage list full, leaking a table");
        return;
    }
    reg->garbage_rings[reg->ngarbage_rings++] = r;
}

static void
ring_header(const struct ring_config *rc, char *buf, size_t len)
{
    snprintf(buf, len, "b=%" PRIu32 "; k=%" PRIu32 "; sa=%016" PRIx64 "; sk=%016" PRIx64,
             rc->buckets, rc->k, rc->seed_account, rc->seed_key);
}

void
registry_retire(struct registry *reg, struct retired *rt)
{
    if (rt->view == NULL && rt->np == 0 && rt->nr == 0)
        return;
    shed_rcu_synchronize(&reg->rcu);
    if (rt->view != NULL) {
        free(rt->view->routes);
        free(rt->view);
    }
    for (size_t i = 0; i < rt->np; i++)
        free(rt->p[i]);
    for (size_t i = 0; i < rt->nr; i++)
        ring_destroy(rt->r[i]);
    rt->view = NULL;
    rt->np = rt->nr = 0;
}

int
registry_publish(struct registry *reg, struct retired *rt)
{
    struct registry_view *v = calloc(1, sizeof(*v));
    struct registry_route *routes = calloc(reg->nsvcs ? reg->nsvcs : 1, sizeof(*routes));
    if (v == NULL || routes == NULL) {
        free(v);
        free(routes);
        return -ENOMEM;
    }
    for (size_t i = 0; i < reg->nsvcs; i++) {
        struct service *s = reg->svcs[i];
        struct registry_route *r = &routes[i];
        snprintf(r->name, sizeof(r->name), "%s", s->cfg.name);
        r->name_len = strlen(r->name);
        r->kind = s->cfg.kind;
        r->slot = s->slot;
        r->ring = s->gen.cur;
        r->prev = s->gen.prev;
        r->generation = s->gen.number;
        r->prev_generation = s->gen.prev != NULL && s->gen.number > 0 ? s->gen.number - 1 : 0;
        ring_digest(s->gen.cur, r->digest);
        ring_header(&s->cfg.ring, r->ring_header, sizeof(r->ring_header));
        r->pin_ttl_s = (uint32_t)(reg->t.pin_lifetime_ms / 1000);
        r->max_weight = 1;
        for (size_t k = 0; k < ring_size(s->gen.cur); k++)
            if (ring_member_at(s->gen.cur, (uint32_t)k)->weight > r->max_weight)
                r->max_weight = ring_member_at(s->gen.cur, (uint32_t)k)->weight;
        r->live = s->live;
        r->load = s->load;
        r->settle = s->settle;
        r->lookups = reg->t.settle_window_ms > 0;
    }
    v->nroutes = reg->nsvcs;
    v->routes = routes;
    struct registry_view *old = atomic_exchange(&reg->view, v);
    /* Several publishes may happen before one retire(): keep the views. */
    if (rt->view != NULL) {
        registry_garbage(reg, rt->view->routes);
        registry_garbage(reg, rt->view);
    }
    rt->view = old;
    for (size_t i = 0; i < reg->ngarbage && rt->np < GARBAGE_MAX; i++)
        rt->p[rt->np++] = reg->garbage[i];
    reg->ngarbage = 0;
    for (size_t i = 0; i < reg->ngarbage_rings && rt->nr < GARBAGE_MAX; i++)
        rt->r[rt->nr++] = reg->garbage_rings[i];
    reg->ngarbage_rings = 0;
    return 0;
}

/* One service's rebuild: the records it wants, copied out under mu so
 * that ring_build() can run without it, and the result. */
struct build {
    struct service *s;        /* borrowed: services change only under build_mu */
    size_t idx;               /* of s in reg->svcs */
    struct ring_config cfg;   /* s's, copied */
    struct ring_member *recs; /* owned; strings in text */
    size_t n;
    char *text;             /* owned: "id\0url\0zone\0" per record */
    int rc;                 /* of ring_build() */
    struct ring *ring;      /* owned until installed */
    _Atomic uint8_t *live;  /* owned until installed; all down until then */
    _Atomic uint32_t *load; /* owned until installed */
};

/* Does the next ring of <m>'s service name it? Members already in the ring
 * (but not gone) and those that proved themselves. */
static bool
wanted(const struct registry *reg, const struct member *m)
{
    return !m->gone && (m->in_ring || (m->beats >= reg->t.join_heartbeats && !m->down));
}

/* Copy <s> with its NUL to *<p> (sized by the caller) and move past it. */
static const char *
put(char **p, const char *s)
{
    size_t len = strlen(s) + 1;
    char *at = *p;
    memcpy(at, s, len);
    *p += len;
    return at;
}

/* Copy the records <s>'s next ring wants into <b>. 0 or -ENOMEM. */
static int
snapshot(const struct registry *reg, struct service *s, struct build *b)
{
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct member *m = s->members[i];
        if (wanted(reg, m)) {
            n++;
            bytes += strlen(m->id) + strlen(m->url) + strlen(m->zone) + 3;
        }
    }
    b->recs = calloc(n ? n : 1, sizeof(*b->recs));
    b->text = malloc(bytes ? bytes : 1);
    if (b->recs == NULL || b->text == NULL) {
        free(b->recs);
        free(b->text);
        b->recs = NULL;
        b->text = NULL;
        return -ENOMEM;
    }
    char *p = b->text;
    for (size_t i = 0; i < s->n; i++) {
        const struct member *m = s->members[i];
        if (!wanted(reg, m))
            continue;
        struct ring_member *r = &b->recs[b->n++];
        r->id = put(&p, m->id);
        r->url = put(&p, m->url);
        r->zone = put(&p, m->zone);
        r->weight = m->weight;
    }
    b->cfg = s->cfg.ring;
    return 0;
}

/* Build <b>'s table and its arrays. No lock held: <b> is all it reads. */
static void
build_one(struct build *b)
{
    b->rc = ring_build(&b->cfg, b->recs, b->n, &b->ring);
    free(b->recs);
    free(b->text);
    b->recs = NULL;
    b->text = NULL;
    if (b->rc < 0)
        return;
    size_t sz = ring_size(b->ring);
    b->live = calloc(sz ? sz : 1, sizeof(*b->live));
    b->load = calloc(sz ? sz : 1, sizeof(*b->load));
    if (b->live == NULL || b->load == NULL) {
        free((void *)b->live);
        free((void *)b->load);
        ring_destroy(b->ring);
        b->ring = NULL;
        b->rc = -ENOMEM;
        return;
    }
    /* Down until install finds a record for it. */
    for (size_t k = 0; k < sz; k++)
        atomic_init(&b->live[k], (uint8_t)REGISTRY_DOWN);
}

/* Make <b>'s table the current generation of its service, matching it
 * against the records as they are now (both sorted by id, so one merge
 * walk). Gone members leave the records. Returns false if the table does
 * not match the records (a change during the build): rebuild. */
static bool
install(struct registry *reg, struct build *b, uint64_t now)
{
    struct service *s = b->s;
    const struct ring *next = b->ring;
    size_t sz = ring_size(next), i = 0, j = 0, kept = 0;
    bool exact = true;

    while (i < s->n || j < sz) {
        struct member *m = i < s->n ? s->members[i] : NULL;
        const struct ring_member *rm = j < sz ? ring_member_at(next, (uint32_t)j) : NULL;
        int c = m == NULL ? 1 : rm == NULL ? -1 : strcmp(m->id, rm->id);
        if (c > 0) {
            exact = false; /* its record left during the build: down */
            j++;
            continue;
        }
        uint32_t idx = RING_NONE;
        if (c == 0) {
            /* Named, but left (gone) or left and came back new (not
             * proved) during the build: down in this table. */
            if (!m->gone && (m->in_ring || m->beats >= reg->t.join_heartbeats))
                idx = (uint32_t)j;
            else
                exact = false;
            j++;
        } else if (wanted(reg, m)) {
            exact = false; /* joined during the build */
        }
        i++;
        if (m->gone) {
            registry_member_free(m); /* no table names it any more */
            reg->total--;
            continue;
        }
        m->in_ring = idx != RING_NONE;
        m->ring_idx = idx;
        m->stale_record = m->in_ring && (strcmp(m->url, rm->url) != 0 ||
                                         strcmp(m->zone, rm->zone) != 0 || m->weight != rm->weight);
        if (m->stale_record)
            exact = false; /* moved or reweighted during the build */
        if (m->in_ring)
            atomic_store(&b->live[idx], (uint8_t)registry_live_of(m));
        s->members[kept++] = m; /* compaction keeps id order */
    }
    s->n = kept;
    registry_garbage_ring(reg, ring_gen_push(&s->gen, b->ring));
    registry_garbage(reg, (void *)s->live);
    registry_garbage(reg, (void *)s->load);
    s->live = b->live;
    s->load = b->load;
    s->prev_until = now + reg->t.drain_window_ms;
    s->dirty = !exact;
    atomic_fetch_add(&s->settle->changes, 1);
    char digest[33];
    ring_digest(next, digest);
    log_info("registry: service=%s generation=%" PRIu64 " members=%zu digest=%s%s", s->cfg.name,
             s->gen.number, sz, digest, exact ? "" : " (members changed meanwhile: rebuilding)");
    return exact;
}

bool
registry_build(struct registry *reg, uint64_t now, bool built[SHED_MAX_SERVICES])
{
    struct build b[SHED_MAX_SERVICES];
    size_t nb = 0;
    bool any = false;

    for (size_t i = 0; i < reg->nsvcs; i++) {
        built[i] = false;
        if (!reg->svcs[i]->dirty)
            continue;
        memset(&b[nb], 0, sizeof(b[nb]));
        b[nb].s = reg->svcs[i];
        b[nb].idx = i;
        if (snapshot(reg, reg->svcs[i], &b[nb]) < 0) {
            log_warnx("registry: service=%s out of memory for a ring build",
                      reg->svcs[i]->cfg.name);
            continue; /* still dirty: the next tick tries again */
        }
        nb++;
    }
    if (nb == 0)
        return false;
    pthread_mutex_unlock(&reg->mu);
    if (reg->build_hook != NULL)
        reg->build_hook(reg->build_hook_arg);
    for (size_t k = 0; k < nb; k++)
        build_one(&b[k]);
    pthread_mutex_lock(&reg->mu);
    for (size_t k = 0; k < nb; k++) {
        if (b[k].rc < 0) {
            log_warnx("registry: service=%s ring build failed: %s", b[k].s->cfg.name,
                      ring_strerror(b[k].rc));
            continue;
        }
        install(reg, &b[k], now);
        built[b[k].idx] = true;
        any = true;
    }
    return any;
}

const struct registry_view *
registry_view(const struct registry *reg)
{
    return atomic_load_explicit(&((struct registry *)reg)->view, memory_order_seq_cst);
}

const struct registry_route *
registry_route_find(const struct registry_view *view, const char *name, size_t len)
{
    for (size_t i = 0; i < view->nroutes; i++) {
        const struct registry_route *r = &view->routes[i];
        if (r->name_len == len && memcmp(r->name, name, len) == 0)
            return r;
    }
    return NULL;
}
