/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd_hints: escalation hints in etcd (docs/reachability.md). A
 * master queues each escalated PUT (shed_etcd_hint_add()) and its etcd
 * thread writes the queue under a hint lease, at most SHED_HINTS_MAX per
 * cell; the home cell's aggregator reads its cell's hints and deletes each
 * it brought home, from its own thread (etcd_hcall()).
 */
#include "shed/etcd_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "shed/hints.h"

static uint64_t
wall_ms(void)
{
    return clock_real_ns() / 1000000u;
}

/* Hints of <cell> in etcd now: counted at most once a second (a range
 * with count_only), plus what this master wrote since. -EIO when etcd did
 * not answer. */
static int
hint_count(struct shed_etcd *E, const char *cell, uint64_t now, struct hcount **out)
{
    struct hcount *h = NULL;
    for (size_t i = 0; i < E->nhcounts && h == NULL; i++)
        if (strcmp(E->hcounts[i].cell, cell) == 0)
            h = &E->hcounts[i];
    if (h == NULL) {
        if (E->nhcounts == SHED_MAX_CELLS)
            return -ENOSPC;
        h = &E->hcounts[E->nhcounts++];
        memset(h, 0, sizeof(*h));
        snprintf(h->cell, sizeof(h->cell), "%s", cell);
    }
    if (h->counted_at == 0 || now - h->counted_at >= 1000) {
        char dir[SHED_ETCD_KEY_MAX];
        json_t *r = NULL;
        snprintf(dir, sizeof(dir), "%s" SHED_ETCD_HINTS_DIR "%s/", E->cfgv.membership.prefix, cell);
        char *body = etcd_key_body(dir, true, "\"count_only\":true");
        int rc = body != NULL ? etcd_call(E, "/v3/kv/range", body, &r) : -ENOMEM;
        free(body);
        if (rc < 0)
            return rc;
        h->n = (uint64_t)etcd_i64(r, "count");
        h->counted_at = now;
        json_decref(r);
    }
    *out = h;
    return 0;
}

/* This master's hint lease: a new one every tenth of the hints' TTL, so a
 * hint lives between 0.9 and 1 TTL unless its cell takes it first. The
 * lease is never kept alive nor revoked: hints outlive their master. */
static int
hint_lease(struct shed_etcd *E, uint64_t now)
{
    char body[96];
    json_t *r = NULL;
    if (E->hint_lease != 0 && now < E->hint_lease_at)
        return 0;
    snprintf(body, sizeof(body), "{\"TTL\":\"%d\"}", SHED_ETCD_HINT_TTL_S);
    if (etcd_call(E, "/v3/lease/grant", body, &r) < 0)
        return -EIO;
    int64_t id = etcd_i64(r, "ID");
    json_decref(r);
    if (id == 0)
        return -EPROTO;
    E->hint_lease = id;
    E->hint_lease_at = now + SHED_ETCD_HINT_TTL_S * 1000ull / 10;
    return 0;
}

void
etcd_hint_writer(struct shed_etcd *E, uint64_t now)
{
    if (now < E->retry_at && !atomic_load(&E->up))
        return;
    for (int i = 0; i < BATCH; i++) {
        struct qhint q;
        struct hcount *hc;
        pthread_mutex_lock(&E->mu);
        if (E->hq_n == 0) {
            pthread_mutex_unlock(&E->mu);
            return;
        }
        q = E->hq[E->hq_head];
        pthread_mutex_unlock(&E->mu);
        if (hint_lease(E, now) < 0)
            return;
        int rc = hint_count(E, q.cell, now, &hc);
        if (rc == -EIO)
            return;
        bool drop = rc < 0 || hc->n >= SHED_HINTS_MAX;
        const char *why = rc == -ENOSPC ? "hints of too many cells"
                          : rc < 0      ? "etcd did not count the cell's hints"
                                        : "the cell's bound reached";
        if (!drop) {
            char key[SHED_ETCD_KEY_MAX], *v = etcd_b64dup(q.value, strlen(q.value)), *body = NULL;
            char *extra = v != NULL ? malloc(strlen(v) + 64) : NULL;
            json_t *r = NULL;
            if (extra != NULL) {
                sprintf(extra, "\"value\":\"%s\",\"lease\":\"%" PRId64 "\"", v, E->hint_lease);
                shed_etcd_hint_key(key, sizeof(key), E->cfgv.membership.prefix, q.cell,
                                   E->hint_seq + 1, E->shed);
                body = etcd_key_body(key, false, extra);
            }
            rc = body != NULL ? etcd_call(E, "/v3/kv/put", body, &r) : -ENOMEM;
            free(v);
            free(extra);
            free(body);
            json_decref(r);
            if (rc == -EIO)
                return; /* kept: written when etcd answers */
            if (rc == -EPROTO) {
                E->hint_lease = 0; /* most likely the lease ran out: a new one */
                if (++E->hint_refused < 3)
                    return;
                drop = true; /* refused under fresh leases too: not for etcd */
                why = "refused by etcd";
            } else if (rc < 0) {
                return;
            }
        }
        E->hint_refused = 0;
        if (!drop) {
            E->hint_seq++;
            hc->n++;
            atomic_fetch_add(&E->writes, 1);
        }
        pthread_mutex_lock(&E->mu);
        free(E->hq[E->hq_head].value);
        E->hq_head = (E->hq_head + 1) % HINT_QUEUE_MAX;
        E->hq_n--;
        if (drop) {
            E->hints_dropped++;
            if (E->hint_drop_log == 0 || now - E->hint_drop_log >= 60000) {
                E->hint_drop_log = now;
                log_warnx("etcd: a hint of cell %s dropped: %s (at most %d per cell; %" PRIu64
                          " dropped so far)",
                          q.cell, why, SHED_HINTS_MAX, E->hints_dropped);
            }
        } else {
            E->hints_written++;
        }
        pthread_mutex_unlock(&E->mu);
    }
}

int
shed_etcd_hint_add(struct shed_etcd *E, const char *cell, const char *service, const char *path,
                   const char *url, uint64_t now_ms)
{
    if (E == NULL || !E->running || E->mode != MODE_MASTER || strlen(cell) > PROTO_SYNC_NAME_MAX)
        return -EINVAL;
    char *v = shed_etcd_hint_encode(service, path, url, wall_ms());
    (void)now_ms;
    if (v == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&E->mu);
    if (E->hq_n == HINT_QUEUE_MAX) {
        E->hints_dropped++;
        pthread_mutex_unlock(&E->mu);
        free(v);
        return -ENOSPC;
    }
    struct qhint *q = &E->hq[(E->hq_head + E->hq_n) % HINT_QUEUE_MAX];
    snprintf(q->cell, sizeof(q->cell), "%s", cell);
    q->value = v;
    E->hq_n++;
    pthread_mutex_unlock(&E->mu);
    etcd_wake(E);
    return 0;
}

json_t *
shed_etcd_hints_fetch(struct shed_etcd *E, size_t limit, uint64_t now_ms)
{
    char dir[SHED_ETCD_KEY_MAX], extra[64];
    json_t *r = NULL, *arr, *kv;
    size_t i;
    uint64_t wall = wall_ms();

    (void)now_ms;
    if (E == NULL || E->mode != MODE_CELL)
        return NULL;
    if (limit == 0 || limit > SHED_HINTS_PAGE_MAX)
        limit = SHED_HINTS_PAGE_MAX;
    pthread_mutex_lock(&E->hmu);
    snprintf(dir, sizeof(dir), "%s" SHED_ETCD_HINTS_DIR "%s/", E->cfgv.membership.prefix,
             E->cfgv.cell);
    pthread_mutex_unlock(&E->hmu);
    snprintf(extra, sizeof(extra), "\"limit\":\"%zu\"", limit); /* sorted by key: oldest first */
    char *body = etcd_key_body(dir, true, extra);
    int rc = body != NULL ? etcd_hcall(E, "/v3/kv/range", body, &r) : -ENOMEM;
    free(body);
    if (rc < 0)
        return NULL;
    arr = json_array();
    json_array_foreach(json_object_get(r, "kvs"), i, kv)
    {
        char key[SHED_ETCD_KEY_MAX], val[HINT_VALUE_MAX];
        struct shed_etcd_hint h;
        json_t *k = json_object_get(kv, "key");
        long kn = json_is_string(k)
                      ? shed_etcd_b64_decode(json_string_value(k), json_string_length(k), key,
                                             sizeof(key) - 1)
                      : -EINVAL;
        long vn = etcd_kv_raw(kv, val, sizeof(val));
        if (kn < 0 || vn < 0)
            continue;
        key[kn] = '\0';
        if (shed_etcd_hint_decode(val, (size_t)vn, &h) < 0) {
            log_debug("etcd: hint %s: not a hint record: ignored", key);
            continue;
        }
        json_array_append_new(arr, json_pack("{s:s,s:I,s:s,s:s,s:s,s:I}", "key", key, "seq",
                                             (json_int_t)etcd_i64(kv, "create_revision"), "service",
                                             h.service, "path", h.path, "url", h.url, "age_ms",
                                             (json_int_t)(wall > h.at_ms ? wall - h.at_ms : 0)));
    }
    json_decref(r);
    return json_pack("{s:o}", "hints", arr);
}

int
shed_etcd_hint_done(struct shed_etcd *E, const char *key)
{
    json_t *r = NULL;
    char prefix[SHED_ETCD_KEY_MAX];
    if (E == NULL || E->mode != MODE_CELL)
        return -EINVAL;
    pthread_mutex_lock(&E->hmu);
    snprintf(prefix, sizeof(prefix), "%s" SHED_ETCD_HINTS_DIR "%s/", E->cfgv.membership.prefix,
             E->cfgv.cell);
    pthread_mutex_unlock(&E->hmu);
    if (strncmp(key, prefix, strlen(prefix)) != 0 || strlen(key) >= SHED_ETCD_KEY_MAX)
        return -EINVAL; /* only this cell's hints */
    char *body = etcd_key_body(key, false, NULL);
    int rc = body != NULL ? etcd_hcall(E, "/v3/kv/deleterange", body, &r) : -ENOMEM;
    free(body);
    if (rc == 0 && etcd_i64(r, "deleted") == 0)
        rc = -ENOENT;
    json_decref(r);
    return rc;
}
