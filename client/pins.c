/* SPDX-License-Identifier: ISC */
/*
 * client/pins: a chained hash table of bucket pins behind a rwlock, plus the
 * per-service ring parameters. Lookups are the hot path (every pinned
 * request), so they take the lock shared and bump the hit counter with an
 * atomic add; only set/drop/sweep take it exclusive.
 */
#include "client/pins.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct pin_entry {
    struct pin_entry *next;
    struct client_pin pin;
    _Atomic uint64_t hits; /* pin.hits is filled from this on copy-out */
};

struct service_ring {
    char name[CLIENT_PINS_SERVICE_MAX];
    struct ring_config cfg;
};

struct client_pins {
    pthread_rwlock_t lock;
    struct pin_entry **slots; /* nslots heads, owned */
    size_t nslots;            /* power of two */
    size_t count;             /* entries in the table */
    size_t max;               /* hard maximum of entries */
    struct service_ring rings[CLIENT_PINS_MAX_SERVICES];
    size_t nrings;
};

static uint64_t
mix(const char *s, uint32_t bucket)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the name, then the bucket */

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h ^= bucket;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

int
client_pins_create(size_t max, struct client_pins **out)
{
    struct client_pins *p;
    size_t n = 64;

    if (max == 0 || max > 1000000)
        return -EINVAL;
    while (n < max && n < (1u << 20))
        n <<= 1;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->slots = calloc(n, sizeof(*p->slots));
    if (p->slots == NULL) {
        free(p);
        return -ENOMEM;
    }
    if (pthread_rwlock_init(&p->lock, NULL) != 0) {
        free(p->slots);
        free(p);
        return -ENOMEM;
    }
    p->nslots = n;
    p->max = max;
    *out = p;
    return 0;
}

static void
clear_locked(struct client_pins *p, const char *service)
{
    for (size_t i = 0; i < p->nslots; i++) {
        struct pin_entry **pp = &p->slots[i];

        while (*pp != NULL) {
            struct pin_entry *e = *pp;

            if (service == NULL || strcmp(e->pin.service, service) == 0) {
                *pp = e->next;
                free(e);
                p->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}

void
client_pins_destroy(struct client_pins *p)
{
    if (p == NULL)
        return;
    clear_locked(p, NULL);
    pthread_rwlock_destroy(&p->lock);
    free(p->slots);
    free(p);
}

static bool
same_ring(const struct ring_config *a, const struct ring_config *b)
{
    return a->buckets == b->buckets && a->k == b->k && a->seed_account == b->seed_account &&
           a->seed_key == b->seed_key;
}

int
client_pins_set_ring(struct client_pins *p, const char *service, const struct ring_config *cfg)
{
    int rc = 0;

    if (strlen(service) >= CLIENT_PINS_SERVICE_MAX)
        return -EINVAL;
    pthread_rwlock_wrlock(&p->lock);
    for (size_t i = 0; i < p->nrings; i++) {
        if (strcmp(p->rings[i].name, service) != 0)
            continue;
        if (!same_ring(&p->rings[i].cfg, cfg))
            clear_locked(p, service);
        p->rings[i].cfg = *cfg;
        goto out;
    }
    if (p->nrings == CLIENT_PINS_MAX_SERVICES) {
        rc = -ENOSPC;
        goto out;
    }
    strcpy(p->rings[p->nrings].name, service);
    p->rings[p->nrings].cfg = *cfg;
    p->nrings++;
out:
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

int
client_pins_get_ring(struct client_pins *p, const char *service, struct ring_config *cfg)
{
    int rc = -ENOENT;

    pthread_rwlock_rdlock(&p->lock);
    for (size_t i = 0; i < p->nrings; i++) {
        if (strcmp(p->rings[i].name, service) == 0) {
            *cfg = p->rings[i].cfg;
            rc = 0;
            break;
        }
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

static struct pin_entry **
find_locked(struct client_pins *p, const char *service, uint32_t bucket)
{
    struct pin_entry **pp = &p->slots[mix(service, bucket) & (p->nslots - 1)];

    for (; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->pin.bucket == bucket && strcmp((*pp)->pin.service, service) == 0)
            return pp;
    return NULL;
}

static size_t
expire_locked(struct client_pins *p, uint64_t now_ms)
{
    size_t n = 0;

    for (size_t i = 0; i < p->nslots; i++) {
        struct pin_entry **pp = &p->slots[i];

        while (*pp != NULL) {
            struct pin_entry *e = *pp;

            if (e->pin.expires_ms <= now_ms) {
                *pp = e->next;
                free(e);
                p->count--;
                n++;
            } else {
                pp = &e->next;
            }
        }
    }
    return n;
}

static void
copy_str(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);

    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

int
client_pins_set(struct client_pins *p, const char *service, uint32_t bucket, const char *host,
                uint64_t generation, uint64_t ttl_ms, uint64_t now_ms, const char *why)
{
    struct pin_entry **pp, *e;
    int rc = 0;

    if (strlen(service) >= CLIENT_PINS_SERVICE_MAX || strlen(host) >= CLIENT_PINS_HOST_MAX ||
        host[0] == '\0')
        return -EINVAL;
    if (ttl_ms == 0) {
        client_pins_drop(p, service, bucket);
        return 0;
    }
    pthread_rwlock_wrlock(&p->lock);
    pp = find_locked(p, service, bucket);
    if (pp != NULL) {
        e = *pp;
    } else {
        if (p->count >= p->max && expire_locked(p, now_ms) == 0) {
            rc = -ENOSPC;
            goto out;
        }
        e = calloc(1, sizeof(*e));
        if (e == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        copy_str(e->pin.service, sizeof(e->pin.service), service);
        e->pin.bucket = bucket;
        pp = &p->slots[mix(service, bucket) & (p->nslots - 1)];
        e->next = *pp;
        *pp = e;
        p->count++;
    }
    copy_str(e->pin.host, sizeof(e->pin.host), host);
    copy_str(e->pin.why, sizeof(e->pin.why), why ? why : "");
    e->pin.generation = generation;
    e->pin.learned_ms = now_ms;
    e->pin.expires_ms = now_ms + ttl_ms;
    atomic_store(&e->hits, 0);
out:
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

/* Remove the pin <service>/<bucket> if it has expired at <now_ms>: re-checked
 * under the write lock, since another thread may have renewed it. */
static void
drop_expired(struct client_pins *p, const char *service, uint32_t bucket, uint64_t now_ms)
{
    struct pin_entry **pp;

    pthread_rwlock_wrlock(&p->lock);
    pp = find_locked(p, service, bucket);
    if (pp != NULL && (*pp)->pin.expires_ms <= now_ms) {
        struct pin_entry *e = *pp;
        *pp = e->next;
        free(e);
        p->count--;
    }
    pthread_rwlock_unlock(&p->lock);
}

int
client_pins_get(struct client_pins *p, const char *service, uint32_t bucket, uint64_t now_ms,
                struct client_pin *out)
{
    struct pin_entry **pp;
    bool expired = false;
    int rc = -ENOENT;

    pthread_rwlock_rdlock(&p->lock);
    pp = find_locked(p, service, bucket);
    if (pp != NULL) {
        if ((*pp)->pin.expires_ms > now_ms) {
            uint64_t h = atomic_fetch_add(&(*pp)->hits, 1) + 1;

            if (out != NULL) {
                *out = (*pp)->pin;
                out->hits = h;
            }
            rc = 0;
        } else {
            expired = true;
        }
    }
    pthread_rwlock_unlock(&p->lock);
    if (expired)
        drop_expired(p, service, bucket, now_ms);
    return rc;
}

int
client_pins_route(struct client_pins *p, const char *service, const char *account, size_t alen,
                  const char *key, size_t klen, uint64_t now_ms, uint32_t *bucket, char *host,
                  size_t hostlen)
{
    const struct service_ring *r = NULL;
    struct pin_entry **pp;
    bool expired = false;
    int rc = -ESRCH;

    pthread_rwlock_rdlock(&p->lock);
    for (size_t i = 0; i < p->nrings; i++) {
        if (strcmp(p->rings[i].name, service) == 0) {
            r = &p->rings[i];
            break;
        }
    }
    if (r == NULL)
        goto out;
    *bucket = ring_bucket(&r->cfg, account, alen, key, klen);
    rc = -ENOENT;
    if (host == NULL)
        goto out;
    pp = find_locked(p, service, *bucket);
    if (pp == NULL)
        goto out;
    if ((*pp)->pin.expires_ms <= now_ms) {
        expired = true;
        goto out;
    }
    if (strlen((*pp)->pin.host) < hostlen) {
        (void)atomic_fetch_add(&(*pp)->hits, 1);
        copy_str(host, hostlen, (*pp)->pin.host);
        rc = 0;
    }
out:
    pthread_rwlock_unlock(&p->lock);
    if (expired)
        drop_expired(p, service, *bucket, now_ms);
    return rc;
}

int
client_pins_drop(struct client_pins *p, const char *service, uint32_t bucket)
{
    struct pin_entry **pp;
    int rc = -ENOENT;

    pthread_rwlock_wrlock(&p->lock);
    pp = find_locked(p, service, bucket);
    if (pp != NULL) {
        struct pin_entry *e = *pp;
        *pp = e->next;
        free(e);
        p->count--;
        rc = 0;
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

size_t
client_pins_drop_host(struct client_pins *p, const char *host)
{
    size_t n = 0;

    pthread_rwlock_wrlock(&p->lock);
    for (size_t i = 0; i < p->nslots; i++) {
        struct pin_entry **pp = &p->slots[i];

        while (*pp != NULL) {
            struct pin_entry *e = *pp;

            if (strcmp(e->pin.host, host) == 0) {
                *pp = e->next;
                free(e);
                p->count--;
                n++;
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_rwlock_unlock(&p->lock);
    return n;
}

size_t
client_pins_expire(struct client_pins *p, uint64_t now_ms)
{
    size_t n;

    pthread_rwlock_wrlock(&p->lock);
    n = expire_locked(p, now_ms);
    pthread_rwlock_unlock(&p->lock);
    return n;
}

size_t
client_pins_count(struct client_pins *p)
{
    size_t n;

    pthread_rwlock_rdlock(&p->lock);
    n = p->count;
    pthread_rwlock_unlock(&p->lock);
    return n;
}

static int
cmp_pin(const void *a, const void *b)
{
    const struct client_pin *x = a, *y = b;
    int c = strcmp(x->service, y->service);

    if (c != 0)
        return c;
    return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

size_t
client_pins_list(struct client_pins *p, uint64_t now_ms, struct client_pin *out, size_t max)
{
    size_t n = 0;

    pthread_rwlock_rdlock(&p->lock);
    for (size_t i = 0; i < p->nslots && n < max; i++) {
        for (struct pin_entry *e = p->slots[i]; e != NULL && n < max; e = e->next) {
            if (e->pin.expires_ms <= now_ms)
                continue;
            out[n] = e->pin;
            out[n].hits = atomic_load(&e->hits);
            n++;
        }
    }
    pthread_rwlock_unlock(&p->lock);
    qsort(out, n, sizeof(*out), cmp_pin);
    return n;
}
