/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd_writer: what a line shed or an aggregator writes to etcd. The
 * writer table (one entry per member this shed keeps, filled by the
 * heartbeat path and the deregistrations under E->mu) says what each
 * member's key under this shed should hold; the etcd thread keeps this
 * shed's lease, writes the cell's record and puts or deletes the keys that
 * changed, BATCH per turn. Probe verdicts are written here too.
 */
#include "shed/etcd_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static uint64_t
fnv(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull;
    for (; *a; a++)
        h = (h ^ (uint8_t)*a) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (; *b; b++)
        h = (h ^ (uint8_t)*b) * 1099511628211ull;
    return h;
}

static struct wmember **
wfind(struct shed_etcd *E, const char *service, const char *id)
{
    struct wmember **pp = &E->buckets[fnv(service, id) % NBUCKETS];
    for (; *pp != NULL; pp = &(*pp)->next)
        if (strcmp((*pp)->rec.service, service) == 0 && strcmp((*pp)->rec.id, id) == 0)
            break;
    return pp;
}

static bool
dirty(enum wstate s)
{
    return s == W_PUT || s == W_DEL || s == W_GONE;
}

/* Under E->mu. */
static void
wset(struct shed_etcd *E, struct wmember *m, enum wstate st)
{
    if (dirty(m->st) && !dirty(st))
        E->ndirty--;
    else if (!dirty(m->st) && dirty(st))
        E->ndirty++;
    m->st = st;
    m->ver++;
}

void
shed_etcd_note_heartbeat(struct shed_etcd *E, const struct proto_heartbeat *hb, uint64_t now)
{
    bool kick = false;
    if (E == NULL || !E->running || E->mode != MODE_CELL)
        return;
    pthread_mutex_lock(&E->mu);
    struct wmember **pp = wfind(E, hb->service, hb->id), *m = *pp;
    if (m == NULL) {
        if (E->nmembers >= E->cfgv.membership.queue_max) {
            E->dropped++;
            pthread_mutex_unlock(&E->mu);
            return;
        }
        m = calloc(1, sizeof(*m));
        if (m == NULL) {
            E->dropped++;
            pthread_mutex_unlock(&E->mu);
            return;
        }
        snprintf(m->rec.service, sizeof(m->rec.service), "%s", hb->service);
        snprintf(m->rec.id, sizeof(m->rec.id), "%s", hb->id);
        m->rec.state = PROTO_SYNC_UP;
        m->st = W_JOINING;
        *pp = m;
        E->nmembers++;
    }
    enum proto_sync_state st = hb->state == PROTO_HB_DRAINING ? PROTO_SYNC_DRAINING : PROTO_SYNC_UP;
    bool changed = m->rec.incarnation != hb->incarnation || m->rec.state != st ||
                   strcmp(m->rec.url, hb->url) != 0 || strcmp(m->rec.zone, hb->zone) != 0 ||
                   m->rec.weight != hb->weight;
    if (changed) {
        if (hb->incarnation != m->rec.incarnation && m->st == W_JOINING)
            m->beats = 0;
        m->rec.incarnation = hb->incarnation;
        m->rec.state = st;
        snprintf(m->rec.url, sizeof(m->rec.url), "%s", hb->url);
        snprintf(m->rec.zone, sizeof(m->rec.zone), "%s", hb->zone);
        m->rec.weight = hb->weight;
    }
    m->last_hb = now;
    if (m->beats < UINT32_MAX)
        m->beats++;
    if (m->st == W_JOINING && m->beats >= E->join) {
        wset(E, m, W_PUT);
        kick = true;
    } else if (m->st != W_JOINING && (changed || m->st == W_DEL || m->st == W_GONE)) {
        wset(E, m, W_PUT);
        kick = true;
    }
    pthread_mutex_unlock(&E->mu);
    if (kick)
        etcd_wake(E);
}

void
shed_etcd_note_deregister(struct shed_etcd *E, const char *service, size_t slen, const char *id,
                          size_t idlen, uint64_t incarnation, uint64_t now)
{
    char s[PROTO_SYNC_NAME_MAX + 1], i[PROTO_SYNC_ID_MAX + 1];
    (void)now;
    if (E == NULL || !E->running || E->mode != MODE_CELL || slen >= sizeof(s) || idlen >= sizeof(i))
        return;
    memcpy(s, service, slen);
    s[slen] = '\0';
    memcpy(i, id, idlen);
    i[idlen] = '\0';
    pthread_mutex_lock(&E->mu);
    struct wmember **pp = wfind(E, s, i), *m = *pp;
    if (m != NULL && incarnation >= m->rec.incarnation) {
        if (m->st == W_JOINING) {
            *pp = m->next;
            free(m);
            E->nmembers--;
        } else {
            m->rec.state = PROTO_SYNC_GONE;
            wset(E, m, W_GONE);
        }
    }
    pthread_mutex_unlock(&E->mu);
    etcd_wake(E);
}

void
shed_etcd_note_probe_failed(struct shed_etcd *E, const char *hostport, uint64_t now)
{
    (void)now;
    if (E == NULL || !E->running || E->mode != MODE_CELL)
        return;
    pthread_mutex_lock(&E->mu);
    if (E->nprobed < PROBED_MAX)
        snprintf(E->probed[E->nprobed++], SHED_URL_MAX, "%s", hostport);
    pthread_mutex_unlock(&E->mu);
    etcd_wake(E);
}

/* Is <url> served at <hostport> ("host:port"; the url's port defaults to
 * 80 or 443)? */
static bool
url_at(const char *url, const char *hostport)
{
    const char *a = strstr(url, "://"), *end;
    char auth[SHED_URL_MAX];
    if (a == NULL)
        return false;
    a += 3;
    end = strchr(a, '/');
    size_t n = end != NULL ? (size_t)(end - a) : strlen(a);
    if (n >= sizeof(auth) - 8)
        return false;
    memcpy(auth, a, n);
    auth[n] = '\0';
    const char *close = strrchr(auth, ']'), *colon = strrchr(auth, ':');
    if (colon == NULL || (close != NULL && colon < close))
        snprintf(auth + n, sizeof(auth) - n, ":%s", strncmp(url, "https", 5) == 0 ? "443" : "80");
    return strcmp(auth, hostport) == 0;
}

/* The members of <m> served at one of the <n> dead <hp>: "down" in etcd. */
static void
probes_mark(struct shed_etcd *E, const struct proto_sync_msg *m, char hp[][SHED_URL_MAX], size_t n,
            uint64_t now)
{
    pthread_mutex_lock(&E->mu);
    for (size_t i = 0; i < m->nentries; i++) {
        const struct proto_sync_entry *e = &m->entries[i];
        bool hit = false;
        for (size_t j = 0; j < n && !hit; j++)
            hit = url_at(e->url, hp[j]);
        if (!hit)
            continue;
        struct wmember **pp = wfind(E, e->service, e->id), *w = *pp;
        if (w == NULL) {
            if (E->nmembers >= E->cfgv.membership.queue_max ||
                (w = calloc(1, sizeof(*w))) == NULL) {
                E->dropped++;
                continue;
            }
            *pp = w;
            E->nmembers++;
            w->st = W_CLEAN;
        }
        w->rec = *e;
        w->rec.state = PROTO_SYNC_DOWN;
        w->last_hb = now;
        w->beats = E->join;
        wset(E, w, W_PUT);
        log_info("etcd: service=%s id=%s down in etcd (probe failed)", e->service, e->id);
    }
    pthread_mutex_unlock(&E->mu);
}

/* The thread: tell the cell what this shed's probes found. For every member
 * of the view at a dead host, this shed's key says "down" (the latest write
 * of that incarnation, so it outweighs the others' older "up"); every shed
 * marks it down once, and heartbeats bring it back as they would after a
 * peer's verdict. The key goes a lease later, like any this shed wrote. */
void
etcd_probes(struct shed_etcd *E, uint64_t now)
{
    char hp[PROBED_MAX][SHED_URL_MAX];
    size_t n;
    struct proto_sync_msg m;

    pthread_mutex_lock(&E->mu);
    n = E->nprobed;
    memcpy(hp, E->probed, n * sizeof(hp[0]));
    E->nprobed = 0;
    pthread_mutex_unlock(&E->mu);
    if (n == 0)
        return;
    proto_sync_msg_init(&m);
    for (size_t pos = 0; pos < shed_etcd_view_size(E->sinks[0].view);) {
        if (m.nentries == PROTO_SYNC_MAX_ENTRIES) {
            probes_mark(E, &m, hp, n, now);
            proto_sync_msg_free(&m);
            proto_sync_msg_init(&m);
        }
        if (shed_etcd_view_export_at(E->sinks[0].view, &pos, &m) < 0)
            break;
    }
    probes_mark(E, &m, hp, n, now);
    proto_sync_msg_free(&m);
}

/* ---- writing (the etcd thread) ---- */

void
etcd_mark_all_put(struct shed_etcd *E)
{
    pthread_mutex_lock(&E->mu);
    for (size_t b = 0; b < NBUCKETS; b++)
        for (struct wmember *m = E->buckets[b]; m != NULL; m = m->next)
            if (m->st == W_CLEAN)
                wset(E, m, W_PUT);
    pthread_mutex_unlock(&E->mu);
}

static int
lease(struct shed_etcd *E, uint64_t now)
{
    char body[96];
    json_t *r;
    if (E->lease_id == 0) {
        snprintf(body, sizeof(body), "{\"TTL\":\"%" PRIu64 "\"}", E->ttl_s);
        if (etcd_call(E, "/v3/lease/grant", body, &r) < 0)
            return -EIO;
        E->lease_id = etcd_i64(r, "ID");
        json_decref(r);
        if (E->lease_id == 0)
            return -EPROTO;
        E->keepalive_at = now + E->ttl_s * 1000 / 3;
        etcd_mark_all_put(E); /* keys under a lost lease are gone: write them again */
        E->cellkey_dirty = E->cfgv.aggregator[0] != '\0';
        return 0;
    }
    if (now < E->keepalive_at)
        return 0;
    snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", E->lease_id);
    if (etcd_call(E, "/v3/lease/keepalive", body, &r) < 0)
        return -EIO;
    json_t *res = json_object_get(r, "result");
    if (etcd_i64(res != NULL ? res : r, "TTL") <= 0) {
        log_warnx("etcd: lease %" PRIx64 " expired: writing this shed's keys again",
                  (uint64_t)E->lease_id);
        E->lease_id = 0;
    }
    json_decref(r);
    E->keepalive_at = now + E->ttl_s * 1000 / 3;
    return 0;
}

/* Collect up to BATCH writes under the lock; local lease expiry too. */
static size_t
collect(struct shed_etcd *E, uint64_t now, struct op *ops)
{
    size_t n = 0;
    pthread_mutex_lock(&E->mu);
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (struct wmember **pp = &E->buckets[b]; *pp != NULL;) {
            struct wmember *m = *pp;
            bool expired = now > m->last_hb + E->lease_ms && m->st != W_GONE;
            if (expired && m->st == W_JOINING) {
                *pp = m->next;
                free(m);
                E->nmembers--;
                continue;
            }
            if (expired && m->st != W_DEL)
                wset(E, m, W_DEL); /* (deleting a key never written is harmless) */
            if (dirty(m->st) && n < BATCH) {
                struct op *o = &ops[n];
                memcpy(o->service, m->rec.service, sizeof(o->service));
                memcpy(o->id, m->rec.id, sizeof(o->id));
                o->ver = m->ver;
                o->st = m->st;
                o->value = m->st != W_DEL ? shed_etcd_value_encode(&m->rec, E->shed) : NULL;
                if (m->st == W_DEL || o->value != NULL)
                    n++;
            }
            pp = &m->next;
        }
    }
    pthread_mutex_unlock(&E->mu);
    return n;
}

/* The write for <o> is done: the member is clean, or gone from the table. */
static void
done(struct shed_etcd *E, const struct op *o)
{
    pthread_mutex_lock(&E->mu);
    struct wmember **pp = wfind(E, o->service, o->id), *m = *pp;
    if (m != NULL && m->ver == o->ver) {
        if (o->st == W_PUT) {
            wset(E, m, W_CLEAN);
        } else {
            E->ndirty--;
            *pp = m->next;
            free(m);
            E->nmembers--;
        }
    }
    pthread_mutex_unlock(&E->mu);
}

static int
write_one(struct shed_etcd *E, const struct op *o)
{
    char key[SHED_ETCD_KEY_MAX], extra[VALUE_JSON_MAX * 2];
    json_t *r = NULL;
    int rc = 0;
    if (snprintf(key, sizeof(key), "%s%s/%s/%s", E->base, o->service, o->id, E->shed) >=
        (int)sizeof(key))
        return -ENAMETOOLONG;
    if (o->st != W_DEL) {
        char *v = etcd_b64dup(o->value, strlen(o->value));
        if (v == NULL)
            return -ENOMEM;
        snprintf(extra, sizeof(extra), "\"value\":\"%s\",\"lease\":\"%" PRId64 "\"", v,
                 E->lease_id);
        free(v);
        char *body = etcd_key_body(key, false, extra);
        rc = body != NULL ? etcd_call(E, "/v3/kv/put", body, &r) : -ENOMEM;
        free(body);
        json_decref(r);
        r = NULL;
        if (rc < 0 || o->st == W_PUT)
            goto out;
    }
    /* W_DEL, and W_GONE after the "gone" record: watchers saw it first. */
    char *body = etcd_key_body(key, false, NULL);
    rc = body != NULL ? etcd_call(E, "/v3/kv/deleterange", body, &r) : -ENOMEM;
    free(body);
    json_decref(r);
out:
    if (rc == 0)
        atomic_fetch_add(&E->writes, 1);
    else
        atomic_fetch_add(&E->write_errors, 1);
    return rc;
}

/* The cell's record, <prefix>~cells/<cell>/<shed> -> {"aggregator": URL},
 * under this shed's lease: masters reading etcd send lists there. */
static int
write_cellkey(struct shed_etcd *E)
{
    char key[SHED_ETCD_KEY_MAX], extra[VALUE_JSON_MAX * 2];
    json_t *r = NULL, *o = json_pack("{s:s}", "aggregator", E->cfgv.aggregator);
    char *val = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL, *v = NULL, *body = NULL;
    int rc = -ENOMEM;
    json_decref(o);
    if (val == NULL || (v = etcd_b64dup(val, strlen(val))) == NULL)
        goto out;
    snprintf(key, sizeof(key), "%s" SHED_ETCD_CELLS_DIR "%s/%s", E->cfgv.membership.prefix,
             E->cfgv.cell, E->shed);
    snprintf(extra, sizeof(extra), "\"value\":\"%s\",\"lease\":\"%" PRId64 "\"", v, E->lease_id);
    body = etcd_key_body(key, false, extra);
    rc = body != NULL ? etcd_call(E, "/v3/kv/put", body, &r) : -ENOMEM;
    json_decref(r);
out:
    free(val);
    free(v);
    free(body);
    return rc;
}

void
etcd_writer(struct shed_etcd *E, uint64_t now)
{
    struct op *ops = E->ops;
    if (now < E->retry_at && !atomic_load(&E->up))
        return;
    if (lease(E, now) < 0)
        return;
    if (E->lease_id == 0 && lease(E, now) < 0)
        return;
    if (E->cellkey_dirty && write_cellkey(E) == 0)
        E->cellkey_dirty = false;
    size_t n = collect(E, now, ops), i;
    for (i = 0; i < n; i++) {
        int rc = write_one(E, &ops[i]);
        if (rc == -EIO)
            break;
        if (rc == -EPROTO) {
            /* Most likely our lease is gone: check it now, not in ttl/3. */
            E->keepalive_at = 0;
            break;
        }
        if (rc == 0)
            done(E, &ops[i]);
    }
    for (size_t j = 0; j < n; j++)
        free(ops[j].value);
}
