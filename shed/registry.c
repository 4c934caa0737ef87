/* SPDX-License-Identifier: ISC */
/*
 * shed/registry: member records behind one mutex (heartbeats are a few
 * thousand a second at most): heartbeats, leases, evictions, joins, reloads,
 * replication and failure reports. The routing view built from them and
 * published to request threads is shed/registry_view.c's; rings are built
 * only by registry_tick() and registry_reconfigure(), and with the mutex
 * released, so neither a heartbeat nor a failure-report lookup ever waits
 * for a ring build (shed/registry_impl.h has the locking).
 */
#include "shed/registry.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/rng.h"
#include "proto/hostport.h"
#include "shed/metrics.h"
#include "shed/rcu.h"
#include "shed/registry_impl.h"

#define HB_BUDGET_PER_S 2000 /* heartbeats a second before intervals stretch */

/* A new member named <id>, with no placement yet; NULL without memory. */
static struct member *
member_new(const char *id)
{
    size_t len = strlen(id);
    struct member *m = calloc(1, sizeof(*m) + len + 1);
    if (m == NULL)
        return NULL;
    memcpy(m->id, id, len + 1);
    m->url = m->zone = "";
    m->ring_idx = RING_NONE;
    return m;
}

void
registry_member_free(struct member *m)
{
    if (m == NULL)
        return;
    free(m->place);
    free(m);
}

static void
tomb_add(struct registry *reg, const struct service *s, const struct member *m, bool remote)
{
    struct tomb *t;

    if (reg->tombs == NULL)
        return;
    if (reg->ntombs == TOMB_MAX) {
        reg->tomb_horizon = reg->tombs[reg->tomb_head].seq;
        reg->tomb_head = (reg->tomb_head + 1) % TOMB_MAX;
        reg->ntombs--;
    }
    t = &reg->tombs[(reg->tomb_head + reg->ntombs++) % TOMB_MAX];
    snprintf(t->service, sizeof(t->service), "%s", s->cfg.name);
    snprintf(t->id, sizeof(t->id), "%s", m->id);
    snprintf(t->url, sizeof(t->url), "%s", m->url);
    snprintf(t->zone, sizeof(t->zone), "%s", m->zone);
    t->weight = m->weight ? m->weight : 1;
    t->incarnation = m->incarnation;
    t->seq = ++reg->seq;
    t->remote = remote;
}

/* Order of member <m>'s id against <id> (<len> bytes, no NUL inside). */
static int
id_cmp(const struct member *m, const char *id, size_t len)
{
    int c = strncmp(m->id, id, len);
    if (c == 0 && m->id[len] != '\0')
        c = 1;
    return c;
}

/* First position whose id is not below <id>: members are kept sorted by id,
 * so a heartbeat finds its member in O(log n) even at max_members. */
static size_t
member_lower_bound(const struct service *s, const char *id, size_t len)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (id_cmp(s->members[mid], id, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct member *
find_member(struct service *s, const char *id, size_t len, size_t *pos)
{
    size_t i = member_lower_bound(s, id, len);
    if (i == s->n || id_cmp(s->members[i], id, len) != 0)
        return NULL;
    if (pos != NULL)
        *pos = i;
    return s->members[i];
}

/* Insert <m> (not yet present) at its sorted position; capacity checked by
 * the caller. */
static void
insert_member(struct service *s, struct member *m)
{
    size_t i = member_lower_bound(s, m->id, strlen(m->id));
    memmove(&s->members[i + 1], &s->members[i], (s->n - i) * sizeof(s->members[0]));
    s->members[i] = m;
    s->n++;
}

/* The hash a Shed-Failed "host:port" is looked up by (0 never matches). */
static uint64_t
host_hash(const char *hostport)
{
    uint64_t h = XXH3_64bits(hostport, strlen(hostport));
    return h != 0 ? h : 1;
}

/* Does member <m>, not gone, serve at <hostport> (hash <h>)? The hash, set
 * with the url, spares parsing every member's url on a report. */
static bool
member_at(const struct member *m, const char *hostport, uint64_t h)
{
    char hp[PROTO_HOSTPORT_MAX];

    return !m->gone && m->host_hash == h && proto_hostport(m->url, hp, sizeof(hp)) == 0 &&
           strcmp(hp, hostport) == 0;
}

/* Take a heartbeat's or a peer's placement (url, zone, weight) for <m>; a
 * ring member whose record changed is rebuilt at the next tick. Returns 0,
 * or -ENOMEM with <m> unchanged. */
static int
member_place(struct service *s, struct member *m, const char *url, const char *zone,
             uint32_t weight)
{
    char hp[PROTO_HOSTPORT_MAX];

    if (strcmp(m->url, url) == 0 && strcmp(m->zone, zone) == 0 && m->weight == weight)
        return 0;
    if (strcmp(m->url, url) != 0 || strcmp(m->zone, zone) != 0) {
        size_t ul = strnlen(url, PROTO_HB_URL_MAX), zl = strnlen(zone, PROTO_HB_ZONE_MAX);
        char *place = malloc(ul + zl + 2);
        if (place == NULL)
            return -ENOMEM;
        memcpy(place, url, ul);
        place[ul] = '\0';
        memcpy(place + ul + 1, zone, zl);
        place[ul + 1 + zl] = '\0';
        free(m->place);
        m->place = place;
        m->url = place;
        m->zone = place + ul + 1;
    }
    m->weight = weight;
    m->host_hash = proto_hostport(m->url, hp, sizeof(hp)) == 0 ? host_hash(hp) : 0;
    if (m->in_ring) {
        m->stale_record = true;
        s->dirty = true;
    }
    return 0;
}

static struct service *
find_service(struct registry *reg, const char *name, size_t len)
{
    for (size_t i = 0; i < reg->nsvcs; i++) {
        struct service *s = reg->svcs[i];
        if (strncmp(s->cfg.name, name, len) == 0 && s->cfg.name[len] == '\0')
            return s;
    }
    return NULL;
}

static void
remove_member(struct registry *reg, struct service *s, size_t pos)
{
    registry_member_free(s->members[pos]);
    s->n--;
    memmove(&s->members[pos], &s->members[pos + 1], (s->n - pos) * sizeof(s->members[0]));
    reg->total--;
}

/* The metrics slot of service <name> (same name, same slot, for the
 * registry's life); the last slot collects overflow. Caller holds mu or
 * owns <reg> alone. */
static unsigned
slot_of(struct registry *reg, const char *name)
{
    unsigned i;
    for (i = 0; i < reg->nslots; i++)
        if (strcmp(reg->slot_names[i], name) == 0)
            return i;
    if (reg->nslots == SHED_METRICS_SLOTS - 1) {
        snprintf(reg->slot_names[i], SHED_NAME_MAX, "%s", "_other");
        return i;
    }
    snprintf(reg->slot_names[i], SHED_NAME_MAX, "%s", name);
    reg->nslots++;
    return i;
}

struct shed_rcu *
registry_rcu(struct registry *reg)
{
    return &reg->rcu;
}

size_t
registry_slot_names(struct registry *reg, char (*out)[SHED_NAME_MAX], size_t max)
{
    pthread_mutex_lock(&reg->mu);
    size_t n = reg->nslots < SHED_METRICS_SLOTS - 1 ? reg->nslots : SHED_METRICS_SLOTS;
    if (n > max)
        n = max;
    memcpy(out, reg->slot_names, n * sizeof(out[0]));
    pthread_mutex_unlock(&reg->mu);
    return n;
}

static int
service_new(struct registry *reg, const struct shed_service_config *cfg, struct service **out)
{
    struct service *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = *cfg;
    s->slot = slot_of(reg, cfg->name);
    struct ring *empty = NULL;
    int rc = ring_build(&cfg->ring, NULL, 0, &empty);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->live = calloc(1, sizeof(*s->live));
    s->load = calloc(1, sizeof(*s->load));
    s->settle = calloc(1, sizeof(*s->settle));
    if (s->live == NULL || s->load == NULL || s->settle == NULL) {
        free((void *)s->live);
        free((void *)s->load);
        free(s->settle);
        ring_destroy(empty);
        free(s);
        return -ENOMEM;
    }
    /* The empty table is generation 0: nothing has joined yet. */
    s->gen.cur = empty;
    s->gen.number = 0;
    (void)reg;
    *out = s;
    return 0;
}

static void
service_free(struct service *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        registry_member_free(s->members[i]);
    free(s->members);
    ring_destroy(s->gen.cur);
    ring_destroy(s->gen.prev);
    free((void *)s->live);
    free((void *)s->load);
    free(s->settle);
    free(s);
}

static void
set_params(struct registry *reg, const struct shed_config *cfg)
{
    reg->t = cfg->timings;
    reg->max_members = cfg->limits.max_members;
}

int
registry_create(const struct shed_config *cfg, uint64_t seed, struct registry **out)
{
    struct registry *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return -ENOMEM;
    pthread_mutex_init(&reg->build_mu, NULL);
    shed_rcu_init(&reg->rcu);
    pthread_mutex_init(&reg->mu, NULL);
    set_params(reg, cfg);
    reg->tombs = calloc(TOMB_MAX, sizeof(*reg->tombs));
    if (reg->tombs == NULL) {
        free(reg);
        return -ENOMEM;
    }
    reg->rng = seed | 1;
    int rc = 0;
    for (size_t i = 0; i < cfg->nservices; i++) {
        rc = service_new(reg, &cfg->services[i], &reg->svcs[reg->nsvcs]);
        if (rc < 0)
            goto fail;
        reg->nsvcs++;
    }
    struct retired rt = {0};
    rc = registry_publish(reg, &rt);
    registry_retire(reg, &rt);
    if (rc < 0)
        goto fail;
    *out = reg;
    return 0;
fail:
    registry_destroy(reg);
    return rc;
}

void
registry_destroy(struct registry *reg)
{
    if (reg == NULL)
        return;
    /* A tick or reload still building in another thread finishes first. */
    pthread_mutex_lock(&reg->build_mu);
    pthread_mutex_unlock(&reg->build_mu);
    struct registry_view *v = atomic_load(&reg->view);
    if (v != NULL) {
        free(v->routes);
        free(v);
    }
    for (size_t i = 0; i < reg->ngarbage; i++)
        free(reg->garbage[i]);
    for (size_t i = 0; i < reg->ngarbage_rings; i++)
        ring_destroy(reg->garbage_rings[i]);
    for (size_t i = 0; i < reg->nsvcs; i++)
        service_free(reg->svcs[i]);
    pthread_mutex_destroy(&reg->mu);
    pthread_mutex_destroy(&reg->build_mu);
    shed_rcu_fini(&reg->rcu);
    free(reg->tombs);
    free(reg);
}

/* Lease and interval for the next heartbeat: stretched when the registry is
 * big enough that heartbeats would exceed HB_BUDGET_PER_S, and jittered by
 * +-10% so that registrants do not synchronise. */
static void
pace(struct registry *reg, struct proto_heartbeat_reply *reply)
{
    uint64_t base = reg->t.heartbeat_interval_ms;
    uint64_t lease = reg->t.lease_ms;
    uint64_t per_s = base > 0 ? reg->total * 1000 / base : 0;
    if (per_s > HB_BUDGET_PER_S) {
        uint64_t f100 = per_s * 100 / HB_BUDGET_PER_S; /* factor x100 */
        base = base * f100 / 100;
        lease = lease * f100 / 100;
    }
    uint64_t spread = base / 5; /* +-10% */
    uint64_t iv = base - spread / 2 + (spread ? rng_next(&reg->rng) % (spread + 1) : 0);
    if (iv > lease * 9 / 10)
        iv = lease * 9 / 10;
    if (iv == 0)
        iv = 1;
    reply->lease_ms = lease;
    reply->interval_ms = iv;
}

int
registry_heartbeat(struct registry *reg, const struct proto_heartbeat *hb, uint64_t now,
                   struct proto_heartbeat_reply *reply)
{
    int rc = 0;
    pthread_mutex_lock(&reg->mu);
    struct service *s = find_service(reg, hb->service, strlen(hb->service));
    if (s == NULL) {
        rc = -ENOENT;
        goto out;
    }
    if (hb->weight > s->cfg.ring.weight_scale) {
        rc = -ERANGE;
        goto out;
    }
    struct member *m = find_member(s, hb->id, strlen(hb->id), NULL);
    if (m == NULL) {
        if (reg->total >= reg->max_members) {
            rc = -ENOSPC;
            goto out;
        }
        if (s->n == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 16;
            struct member **nm = realloc(s->members, ncap * sizeof(*nm));
            if (nm == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            s->members = nm;
            s->cap = ncap;
        }
        m = member_new(hb->id);
        if (m == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        m->incarnation = hb->incarnation;
        insert_member(s, m);
        reg->total++;
        log_info("registry: service=%s id=%s new, url=%s", s->cfg.name, hb->id, hb->url);
    } else if (hb->incarnation < m->incarnation) {
        rc = -ESTALE;
        goto out;
    } else if (m->gone) {
        /* Deregistered but still named by the ring until the next tick:
         * only a newer incarnation may come back. */
        if (hb->incarnation == m->incarnation) {
            rc = -ESTALE;
            goto out;
        }
        m->gone = false;
        m->beats = 0;
    }
    if (hb->incarnation > m->incarnation) {
        log_info("registry: service=%s id=%s incarnation %" PRIu64 " -> %" PRIu64, s->cfg.name,
                 m->id, m->incarnation, hb->incarnation);
        m->incarnation = hb->incarnation;
        if (!m->in_ring)
            m->beats = 0;
        else
            registry_unsettle(s); /* restarted: maybe empty, its data on others */
    }
    if (member_place(s, m, hb->url, hb->zone, hb->weight) < 0) {
        rc = -ENOMEM; /* a new member stays unplaced: it never joins */
        goto out;
    }
    if (m->down)
        log_info("registry: service=%s id=%s up again", s->cfg.name, m->id);
    m->announced = hb->state;
    m->last_seen = now;
    m->down = false;
    if (now >= m->suspect_until) {
        m->suspect = false; /* a probe pending or a confirmed suspicion outlives heartbeats */
        m->suspect_until = 0;
    }
    m->seq = ++reg->seq;
    m->remote = false;
    if (m->beats < UINT32_MAX)
        m->beats++;
    if (!m->in_ring && m->beats >= reg->t.join_heartbeats)
        s->dirty = true;
    if (m->in_ring)
        registry_set_live(s, m);
    pace(reg, reply);
    m->lease_until = now + reply->lease_ms;
    reply->generation = s->gen.number;
out:
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

int
registry_deregister(struct registry *reg, const char *service, size_t slen, const char *id,
                    size_t idlen, uint64_t incarnation, uint64_t now)
{
    int rc = 0;
    (void)now;
    pthread_mutex_lock(&reg->mu);
    struct service *s = find_service(reg, service, slen);
    size_t pos;
    struct member *m = s != NULL ? find_member(s, id, idlen, &pos) : NULL;
    if (m == NULL) {
        rc = -ENOENT;
        goto out;
    }
    if (incarnation < m->incarnation) {
        rc = -ESTALE;
        goto out;
    }
    log_info("registry: service=%s id=%s deregistered", s->cfg.name, m->id);
    m->incarnation = incarnation;
    tomb_add(reg, s, m, false);
    if (m->in_ring) {
        m->gone = true;
        m->incarnation = incarnation;
        registry_set_live(s, m);
        s->dirty = true;
    } else {
        remove_member(reg, s, pos);
    }
out:
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

/* Leases, suspicion ends, evictions and joins of <s>: what the build that
 * follows needs to know (s->dirty). */
static void
tick_records(struct registry *reg, struct service *s, uint64_t now)
{
    if (now - s->window_start >= reg->t.heartbeat_interval_ms || now < s->window_start) {
        s->window_start = now;
        s->evicted_in_window = 0;
    }
    size_t nlive = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct member *m = s->members[i];
        if (m->gone)
            continue;
        if (!m->down && now >= m->lease_until) {
            m->down = true;
            m->down_since = m->lease_until;
            m->seq = ++reg->seq;
            log_info("registry: service=%s id=%s down (lease expired)", s->cfg.name, m->id);
            if (m->in_ring)
                registry_set_live(s, m);
        }
        if (m->suspect && m->suspect_until != UINT64_MAX && now >= m->suspect_until) {
            m->suspect = false;
            m->suspect_until = 0;
            if (m->in_ring)
                registry_set_live(s, m);
        }
        if (!m->down && m->in_ring)
            nlive++;
    }
    for (size_t i = 0; i < s->n;) {
        struct member *m = s->members[i];
        if (!m->down || m->gone || now - m->down_since < reg->t.evict_after_ms) {
            i++;
            continue;
        }
        if (!m->in_ring) {
            /* Never joined: forget it quietly, no generation change. */
            remove_member(reg, s, i);
            continue;
        }
        /* A shed cut off from its cell sees everyone go down at once: keep
         * the ring whole rather than empty it. */
        if (nlive == 0 || s->evicted_in_window >= reg->t.evict_cap) {
            i++;
            continue;
        }
        log_info("registry: service=%s id=%s evicted (down %" PRIu64 "ms)", s->cfg.name, m->id,
                 now - m->down_since);
        m->gone = true;
        tomb_add(reg, s, m, false);
        s->evicted_in_window++;
        atomic_fetch_add(&reg->evictions, 1);
        s->dirty = true;
        i++;
    }
    for (size_t i = 0; i < s->n && !s->dirty; i++) {
        const struct member *m = s->members[i];
        if (!m->in_ring && !m->down && !m->gone && m->beats >= reg->t.join_heartbeats)
            s->dirty = true;
    }
}

/* After the builds: the drain window, the settle window and the escalation
 * order of <s>; <built> if it got a new generation. True if the view
 * changed. */
static bool
tick_after(struct registry *reg, struct service *s, uint64_t now, bool built)
{
    bool changed = built;
    if (!built && s->gen.prev != NULL && now >= s->prev_until) {
        log_info("registry: service=%s drain window of generation %" PRIu64 " over", s->cfg.name,
                 s->gen.number - 1);
        registry_garbage_ring(reg, ring_gen_drop_prev(&s->gen));
        changed = true;
    }
    if (s->moved) {
        s->moved = false;
        s->settle_until = now + reg->t.settle_window_ms;
    }
    atomic_store(&s->settle->unsettled, (uint8_t)(now < s->settle_until));
    /* The ordering rule for escalation: remember when the cell lost its
     * last live member of this service (shed/cluster.c reads it). Counted
     * after the rebuild, so that a join counts at once. */
    size_t nserving = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct member *m = s->members[i];
        if (m->in_ring && !m->down && !m->gone && !m->suspect)
            nserving++;
    }
    if (s->had_live && nserving == 0)
        s->empty_seq = ++reg->seq;
    s->had_live = nserving > 0;
    return changed;
}

bool
registry_tick(struct registry *reg, uint64_t now)
{
    bool changed = false, built[SHED_MAX_SERVICES];
    struct retired rt = {0};
    pthread_mutex_lock(&reg->build_mu);
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->nsvcs; i++)
        tick_records(reg, reg->svcs[i], now);
    registry_build(reg, now, built); /* releases mu while it builds */
    for (size_t i = 0; i < reg->nsvcs; i++)
        changed |= tick_after(reg, reg->svcs[i], now, built[i]);
    /* Halve the recent-redirect counts every second: "recent" load. */
    if (now - reg->last_decay >= 1000) {
        reg->last_decay = now;
        for (size_t i = 0; i < reg->nsvcs; i++) {
            struct service *s = reg->svcs[i];
            size_t sz = ring_size(s->gen.cur);
            for (size_t k = 0; k < sz; k++)
                atomic_store_explicit(&s->load[k],
                                      atomic_load_explicit(&s->load[k], memory_order_relaxed) / 2,
                                      memory_order_relaxed);
        }
    }
    if (changed && registry_publish(reg, &rt) < 0) {
        log_warnx("registry: out of memory publishing a view");
        changed = false;
    }
    pthread_mutex_unlock(&reg->mu);
    registry_retire(reg, &rt);
    pthread_mutex_unlock(&reg->build_mu);
    return changed;
}

int
registry_reconfigure(struct registry *reg, const struct shed_config *cfg, uint64_t now, char *log,
                     size_t loglen)
{
    int rc = 0;
    size_t used = 0;
    log[0] = '\0';
#define NOTE(...)                                                                                  \
    do {                                                                                           \
        if (used < loglen) {                                                                       \
            int n_ = snprintf(log + used, loglen - used, __VA_ARGS__);                             \
            if (n_ > 0)                                                                            \
                used += (size_t)n_;                                                                \
        }                                                                                          \
    } while (0)
    struct retired rt = {0};
    bool built[SHED_MAX_SERVICES];
    pthread_mutex_lock(&reg->build_mu);
    pthread_mutex_lock(&reg->mu);
    if (memcmp(&reg->t, &cfg->timings, sizeof(reg->t)) != 0)
        NOTE("timings changed; ");
    if (reg->max_members != cfg->limits.max_members)
        NOTE("max_members %u -> %u; ", reg->max_members, cfg->limits.max_members);
    set_params(reg, cfg);
    struct service *next[SHED_MAX_SERVICES];
    size_t nnext = 0;
    bool keep[SHED_MAX_SERVICES] = {false};
    for (size_t i = 0; i < cfg->nservices; i++) {
        const struct shed_service_config *sc = &cfg->services[i];
        struct service *s = NULL;
        for (size_t k = 0; k < reg->nsvcs; k++)
            if (strcmp(reg->svcs[k]->cfg.name, sc->name) == 0) {
                s = reg->svcs[k];
                keep[k] = true;
            }
        if (s == NULL) {
            rc = service_new(reg, sc, &s);
            if (rc < 0) {
                for (size_t k = 0; k < nnext; k++)
                    if (next[k]->gen.number == 0 && next[k]->n == 0 &&
                        find_service(reg, next[k]->cfg.name, strlen(next[k]->cfg.name)) == NULL)
                        service_free(next[k]);
                goto out;
            }
            NOTE("service %s added; ", sc->name);
        } else if (s->cfg.kind != sc->kind ||
                   memcmp(&s->cfg.ring, &sc->ring, sizeof(sc->ring)) != 0) {
            NOTE("service %s ring parameters changed, rebuilding; ", sc->name);
            s->cfg = *sc;
            s->dirty = true;
        }
        next[nnext++] = s;
    }
    for (size_t k = 0; k < reg->nsvcs; k++)
        if (!keep[k]) {
            NOTE("service %s removed with %zu members; ", reg->svcs[k]->cfg.name, reg->svcs[k]->n);
            reg->total -= reg->svcs[k]->n;
            /* Readers may still use its ring: free it after the publish. */
            struct service *s = reg->svcs[k];
            registry_garbage_ring(reg, s->gen.cur);
            registry_garbage_ring(reg, s->gen.prev);
            registry_garbage(reg, (void *)s->live);
            registry_garbage(reg, (void *)s->load);
            registry_garbage(reg, s->settle);
            s->gen.cur = s->gen.prev = NULL;
            s->live = NULL;
            s->load = NULL;
            for (size_t i = 0; i < s->n; i++)
                registry_member_free(s->members[i]);
            free(s->members);
            free(s);
        }
    memcpy(reg->svcs, next, nnext * sizeof(next[0]));
    reg->nsvcs = nnext;
    registry_build(reg, now, built); /* releases mu while it builds */
    rc = registry_publish(reg, &rt);
out:
    pthread_mutex_unlock(&reg->mu);
    registry_retire(reg, &rt);
    pthread_mutex_unlock(&reg->build_mu);
#undef NOTE
    return rc;
}

size_t
registry_counts(struct registry *reg, struct registry_counts *out, size_t max)
{
    pthread_mutex_lock(&reg->mu);
    size_t n = reg->nsvcs;
    for (size_t i = 0; i < n && i < max; i++) {
        const struct service *s = reg->svcs[i];
        struct registry_counts *c = &out[i];
        memset(c, 0, sizeof(*c));
        snprintf(c->name, sizeof(c->name), "%s", s->cfg.name);
        c->generation = s->gen.number;
        for (size_t k = 0; k < s->n; k++) {
            const struct member *m = s->members[k];
            if (!m->in_ring && !m->down && !m->gone) {
                c->joining++;
                continue;
            }
            switch (registry_live_of(m)) {
            case REGISTRY_UP:
                c->up++;
                break;
            case REGISTRY_DRAINING:
                c->draining++;
                break;
            case REGISTRY_SUSPECT:
                c->suspect++;
                break;
            case REGISTRY_DOWN:
                c->down++;
                break;
            }
        }
    }
    pthread_mutex_unlock(&reg->mu);
    return n;
}

uint64_t
registry_evictions(const struct registry *reg)
{
    return atomic_load(&((struct registry *)reg)->evictions);
}

size_t
registry_size(struct registry *reg)
{
    pthread_mutex_lock(&reg->mu);
    size_t n = reg->total;
    pthread_mutex_unlock(&reg->mu);
    return n;
}

json_t *
registry_status(struct registry *reg, uint64_t now)
{
    json_t *root = json_object();
    json_t *svcs = json_array();
    if (root == NULL || svcs == NULL) {
        json_decref(root);
        json_decref(svcs);
        return NULL;
    }
    json_object_set_new(root, "services", svcs);
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->nsvcs; i++) {
        const struct service *s = reg->svcs[i];
        char digest[33];
        ring_digest(s->gen.cur, digest);
        json_t *members = json_array();
        for (size_t k = 0; k < s->n; k++) {
            const struct member *m = s->members[k];
            const char *state = !m->in_ring && !m->down && !m->gone
                                    ? "joining"
                                    : registry_live_name(registry_live_of(m));
            json_array_append_new(
                members,
                json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:b, s:I}", "id", m->id, "url", m->url,
                          "zone", m->zone, "weight", (json_int_t)m->weight, "state", state,
                          "incarnation", (json_int_t)m->incarnation, "in_ring", m->in_ring,
                          "age_ms", (json_int_t)(now >= m->last_seen ? now - m->last_seen : 0)));
        }
        const struct ring_config *rc = &s->cfg.ring;
        char sa[17], sk[17], sp[17];
        snprintf(sa, sizeof(sa), "%016" PRIx64, rc->seed_account);
        snprintf(sk, sizeof(sk), "%016" PRIx64, rc->seed_key);
        snprintf(sp, sizeof(sp), "%016" PRIx64, rc->seed_place);
        json_array_append_new(
            svcs,
            json_pack("{s:s, s:s, s:I, s:I, s:s, s:I, s:{s:I, s:I, s:I, s:I, s:f, s:s, "
                      "s:s, s:s}, s:o}",
                      "name", s->cfg.name, "kind",
                      s->cfg.kind == SHED_KIND_BURROW ? "burrow" : "any", "generation",
                      (json_int_t)s->gen.number, "ring_size", (json_int_t)ring_size(s->gen.cur),
                      "digest", digest, "prev_generation",
                      (json_int_t)(s->gen.prev != NULL ? s->gen.number - 1 : 0), "ring", "buckets",
                      (json_int_t)rc->buckets, "k", (json_int_t)rc->k, "r", (json_int_t)rc->r,
                      "weight_scale", (json_int_t)rc->weight_scale, "eps", rc->eps, "seed_account",
                      sa, "seed_key", sk, "seed_place", sp, "members", members));
    }
    pthread_mutex_unlock(&reg->mu);
    return root;
}

/* ---- Replication, warm restart and client failure reports (issue 5,
 * docs/masters.md). Appended by the master/sync work. ---- */

/* A copy of our own heartbeat coming back through a peer looks a few ms
 * newer (transit): do not let it turn a locally heard member into a remote
 * one. */
#define SYNC_SKEW_MS 100

static enum proto_sync_state
sync_state(const struct member *m)
{
    if (m->gone)
        return PROTO_SYNC_GONE;
    if (m->down)
        return PROTO_SYNC_DOWN;
    return m->announced == PROTO_HB_DRAINING ? PROTO_SYNC_DRAINING : PROTO_SYNC_UP;
}

int64_t
registry_export(struct registry *reg, uint64_t since, bool for_peer, uint64_t now,
                struct proto_sync_msg *msg)
{
    struct proto_sync_entry e;
    int64_t rc;

    pthread_mutex_lock(&reg->mu);
    if (since > 0 && since < reg->tomb_horizon) {
        /* Removals the target has not seen were forgotten: full snapshot. */
        since = 0;
        msg->kind = PROTO_SYNC_FULL;
    }
    for (size_t i = 0; i < reg->nsvcs; i++) {
        const struct service *s = reg->svcs[i];
        for (size_t k = 0; k < s->n; k++) {
            const struct member *m = s->members[k];
            if (!m->in_ring && m->beats < reg->t.join_heartbeats)
                continue; /* not proved yet: nobody routes to it */
            if (m->seq <= since || (for_peer && since > 0 && m->remote))
                continue;
            memset(&e, 0, sizeof(e));
            snprintf(e.service, sizeof(e.service), "%s", s->cfg.name);
            snprintf(e.id, sizeof(e.id), "%s", m->id);
            snprintf(e.url, sizeof(e.url), "%s", m->url);
            snprintf(e.zone, sizeof(e.zone), "%s", m->zone);
            e.weight = m->weight ? m->weight : 1;
            e.incarnation = m->incarnation;
            e.state = sync_state(m);
            e.age_ms = now > m->last_seen ? now - m->last_seen : 0;
            e.seq = m->seq;
            if (proto_sync_msg_add(msg, &e) < 0)
                goto tombs; /* bounded: the rest goes in the next round */
        }
    }
tombs:
    for (size_t i = 0; i < reg->ntombs; i++) {
        const struct tomb *t = &reg->tombs[(reg->tomb_head + i) % TOMB_MAX];
        if (t->seq <= since || (for_peer && since > 0 && t->remote))
            continue;
        memset(&e, 0, sizeof(e));
        snprintf(e.service, sizeof(e.service), "%s", t->service);
        snprintf(e.id, sizeof(e.id), "%s", t->id);
        snprintf(e.url, sizeof(e.url), "%s", t->url);
        snprintf(e.zone, sizeof(e.zone), "%s", t->zone);
        e.weight = t->weight;
        e.incarnation = t->incarnation;
        e.state = PROTO_SYNC_GONE;
        e.seq = t->seq;
        if (proto_sync_msg_add(msg, &e) < 0)
            break;
    }
    rc = (int64_t)reg->seq;
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

/* Would a heartbeat with these fields pass ops.c's checks? Peers are
 * trusted (credential) but what they send still ends up in Location. */
static bool
entry_valid(const struct service *s, const struct proto_sync_entry *e)
{
    struct proto_hb_host host;

    return proto_hb_id_ok(e->id, strlen(e->id)) && strlen(e->url) <= PROTO_HB_URL_MAX &&
           proto_hb_url_host(e->url, &host) == 0 && proto_hb_zone_ok(e->zone, strlen(e->zone)) &&
           e->weight >= 1 && e->weight <= s->cfg.ring.weight_scale &&
           e->incarnation <= PROTO_HB_INC_MAX;
}

static void
apply_gone(struct registry *reg, struct service *s, const struct proto_sync_entry *e)
{
    size_t pos;
    struct member *m = find_member(s, e->id, strlen(e->id), &pos);

    if (m == NULL || m->gone || e->incarnation < m->incarnation)
        return;
    log_info("registry: service=%s id=%s removed (from a peer)", s->cfg.name, m->id);
    m->incarnation = e->incarnation;
    tomb_add(reg, s, m, true);
    if (m->in_ring) {
        m->gone = true;
        registry_set_live(s, m);
        s->dirty = true;
    } else {
        remove_member(reg, s, pos);
    }
}

int
registry_apply(struct registry *reg, const struct proto_sync_msg *msg, uint64_t now,
               bool unconfirmed, size_t *napplied)
{
    size_t applied = 0, bad = 0;

    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < msg->nentries; i++) {
        const struct proto_sync_entry *e = &msg->entries[i];
        struct service *s = find_service(reg, e->service, strlen(e->service));
        if (s == NULL)
            continue;
        if (!entry_valid(s, e)) {
            bad++;
            continue;
        }
        if (e->state == PROTO_SYNC_GONE) {
            if (!unconfirmed)
                apply_gone(reg, s, e);
            continue;
        }
        uint64_t age = e->age_ms < now ? e->age_ms : now;
        uint64_t heard = unconfirmed ? now : now - age;
        struct member *m = find_member(s, e->id, strlen(e->id), NULL);
        if (m == NULL) {
            if (e->state == PROTO_SYNC_DOWN || reg->total >= reg->max_members)
                continue;
            if (s->n == s->cap) {
                size_t ncap = s->cap ? s->cap * 2 : 16;
                struct member **nm = realloc(s->members, ncap * sizeof(*nm));
                if (nm == NULL)
                    break;
                s->members = nm;
                s->cap = ncap;
            }
            m = member_new(e->id);
            if (m == NULL)
                break;
            m->incarnation = e->incarnation;
            m->down = true; /* until the lease below says otherwise */
            insert_member(s, m);
            reg->total++;
            log_info("registry: service=%s id=%s new from %s, url=%s", s->cfg.name, e->id,
                     unconfirmed ? "snapshot (unconfirmed)" : "a peer", e->url);
        } else if (e->incarnation < m->incarnation ||
                   (e->incarnation == m->incarnation &&
                    (m->gone || heard <= m->last_seen + (m->remote ? 0 : SYNC_SKEW_MS)))) {
            continue; /* older, or nothing we did not know */
        } else if (m->gone) {
            m->gone = false;
            m->beats = 0;
        }
        if (unconfirmed && e->state == PROTO_SYNC_DOWN)
            continue;
        if (member_place(s, m, e->url, e->zone, e->weight) < 0)
            break; /* a new member stays down and unplaced: it never joins */
        m->incarnation = e->incarnation;
        m->announced = e->state == PROTO_SYNC_DRAINING ? PROTO_HB_DRAINING : PROTO_HB_UP;
        m->last_seen = heard;
        m->lease_until = heard + reg->t.lease_ms;
        if (e->state == PROTO_SYNC_DOWN && m->lease_until > now)
            m->lease_until = now; /* the peer saw the lease run out */
        if (m->lease_until > now && m->down) {
            m->down = false;
            log_info("registry: service=%s id=%s up (from %s)", s->cfg.name, m->id,
                     unconfirmed ? "snapshot" : "a peer");
        }
        /* The sender only exports members that proved themselves. */
        if (m->beats < reg->t.join_heartbeats)
            m->beats = reg->t.join_heartbeats;
        if (!m->in_ring && !m->down)
            s->dirty = true;
        if (m->in_ring)
            registry_set_live(s, m);
        m->seq = ++reg->seq;
        m->remote = true;
        applied++;
    }
    pthread_mutex_unlock(&reg->mu);
    if (bad > 0)
        log_warnx("registry: %zu invalid entries from %s ignored", bad,
                  msg->origin[0] ? msg->origin : "a snapshot");
    if (napplied != NULL)
        *napplied = applied;
    return 0;
}

uint64_t
registry_escalation_seq(struct registry *reg, const char *service, size_t len)
{
    uint64_t seq = 0;

    pthread_mutex_lock(&reg->mu);
    struct service *s = find_service(reg, service, len);
    if (s != NULL)
        /* Routers saw no live member before the tick did: a change is in
         * flight, so the masters must have everything up to now. */
        seq = s->had_live ? reg->seq : s->empty_seq;
    pthread_mutex_unlock(&reg->mu);
    return seq;
}

uint64_t
registry_seq(struct registry *reg)
{
    pthread_mutex_lock(&reg->mu);
    uint64_t seq = reg->seq;
    pthread_mutex_unlock(&reg->mu);
    return seq;
}

uint64_t
registry_last_empty_seq(struct registry *reg)
{
    uint64_t seq = 0;

    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->nsvcs; i++)
        if (reg->svcs[i]->empty_seq > seq)
            seq = reg->svcs[i]->empty_seq;
    pthread_mutex_unlock(&reg->mu);
    return seq;
}

void
registry_mark_moved(struct registry *reg, const char *service, size_t len)
{
    pthread_mutex_lock(&reg->mu);
    struct service *s = find_service(reg, service, len);
    if (s != NULL)
        registry_unsettle(s);
    pthread_mutex_unlock(&reg->mu);
}

bool
registry_host_url(struct registry *reg, const char *hostport, char *url, size_t urllen)
{
    uint64_t h = host_hash(hostport);
    bool found = false;

    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->nsvcs && !found; i++)
        for (size_t k = 0; k < reg->svcs[i]->n && !found; k++) {
            const struct member *m = reg->svcs[i]->members[k];
            if (member_at(m, hostport, h)) {
                if (url != NULL)
                    snprintf(url, urllen, "%s", m->url);
                found = true;
            }
        }
    pthread_mutex_unlock(&reg->mu);
    return found;
}

size_t
registry_probe_failed(struct registry *reg, const char *hostport, uint64_t now, uint64_t until)
{
    uint64_t h = host_hash(hostport);
    size_t n = 0;

    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->nsvcs; i++) {
        struct service *s = reg->svcs[i];
        for (size_t k = 0; k < s->n; k++) {
            struct member *m = s->members[k];
            if (!member_at(m, hostport, h))
                continue;
            n++;
            m->suspect = true;
            m->suspect_until = until;
            if (!m->down) {
                /* Heard now that it is down: peers take this over what
                 * they heard before (registry_apply compares ages). */
                log_info("registry: service=%s id=%s down (probe failed)", s->cfg.name, m->id);
                m->down = true;
                m->down_since = now;
                m->lease_until = now;
                m->last_seen = now;
                m->seq = ++reg->seq;
                m->remote = false;
            }
            registry_set_live(s, m);
        }
    }
    pthread_mutex_unlock(&reg->mu);
    return n;
}
