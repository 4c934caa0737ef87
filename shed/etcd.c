/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd: the cell's membership kept in etcd v3 (docs/etcd.md). One
 * thread does everything: the watch is a streaming transfer in a curl
 * multi, requests (range, put, delete, lease) are short blocking transfers
 * on a second handle between two polls of the multi. Blocking there is
 * bounded by membership.timeout and delays only this thread: heartbeats
 * are answered by the HTTP front end from the registry, never waiting for
 * etcd. The writer table is the only state shared with other threads (the
 * heartbeat path), under one mutex that is never held across I/O.
 */
#include "shed/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "shed/http.h"
#include "shed/registry.h"

#define WATCH_BUF_MAX  (16u << 20) /* one watch message */
#define REPLY_MAX      (64u << 20) /* one range answer */
#define RETRY_MS       250         /* etcd unreachable: try again after */
#define POLL_MS        50          /* the thread's longest sleep */
#define BATCH          256         /* writes per turn of the loop */
#define NBUCKETS       4096        /* writer table hash buckets */
#define SHED_PART_MAX  (SHED_URL_MAX)
#define VALUE_JSON_MAX 2048
#define PROBED_MAX     64 /* probe verdicts waiting for the thread */

/* ---- base64 (standard alphabet, padded: the gateway's bytes) ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

long
shed_etcd_b64_encode(const void *in, size_t n, char *out, size_t outlen)
{
    const uint8_t *p = in;
    size_t need = (n + 2) / 3 * 4 + 1, o = 0;
    if (outlen < need)
        return -ERANGE;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
    return (long)o;
}

static int
b64val(char c)
{
    const char *p = c != '\0' ? strchr(b64chars, c) : NULL;
    return p != NULL ? (int)(p - b64chars) : -1;
}

long
shed_etcd_b64_decode(const char *s, size_t len, void *out, size_t outlen)
{
    uint8_t *o = out;
    size_t n = 0;
    if (len % 4 != 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        size_t pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=' && i + 4 == len && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[j] = b64val(s[i + j])) < 0)
                return -EINVAL;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        if (n + 3 - pad > outlen)
            return -ERANGE;
        o[n++] = (uint8_t)(w >> 16);
        if (pad < 2)
            o[n++] = (uint8_t)(w >> 8);
        if (pad < 1)
            o[n++] = (uint8_t)w;
    }
    return (long)n;
}

/* ---- the record ---- */

char *
shed_etcd_value_encode(const struct proto_sync_entry *e, const char *shed)
{
    json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:I,s:s}", "inc", (json_int_t)e->incarnation, "state",
                          proto_sync_state_name(e->state), "url", e->url, "zone", e->zone, "weight",
                          (json_int_t)e->weight, "shed", shed);
    if (o == NULL)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int
copy_str(json_t *o, const char *key, char *dst, size_t size, bool required)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL && !required) {
        dst[0] = '\0';
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) >= size)
        return -EINVAL;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int
shed_etcd_value_decode(const char *buf, size_t len, struct proto_sync_entry *e)
{
    json_t *o = json_loadb(buf, len, 0, NULL);
    json_t *inc, *w;
    char state[16];
    int st, rc = -EINVAL;

    if (!json_is_object(o))
        goto out;
    inc = json_object_get(o, "inc");
    w = json_object_get(o, "weight");
    if (!json_is_integer(inc) || json_integer_value(inc) < 0 || !json_is_integer(w) ||
        json_integer_value(w) < 1 || json_integer_value(w) > PROTO_SYNC_WEIGHT_MAX)
        goto out;
    if (copy_str(o, "state", state, sizeof(state), true) < 0 ||
        (st = proto_sync_state_parse(state)) < 0 ||
        copy_str(o, "url", e->url, sizeof(e->url), true) < 0 ||
        copy_str(o, "zone", e->zone, sizeof(e->zone), false) < 0)
        goto out;
    e->incarnation = (uint64_t)json_integer_value(inc);
    e->weight = (uint32_t)json_integer_value(w);
    e->state = (enum proto_sync_state)st;
    e->age_ms = 0;
    e->seq = 0;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int
shed_etcd_key_split(const char *rel, size_t len, char *service, size_t slen, char *id, size_t idlen)
{
    const char *s1 = memchr(rel, '/', len);
    if (s1 == NULL)
        return -EINVAL;
    const char *s2 = memchr(s1 + 1, '/', len - (size_t)(s1 + 1 - rel));
    size_t a = (size_t)(s1 - rel), b;
    if (s2 == NULL)
        return -EINVAL;
    b = (size_t)(s2 - s1 - 1);
    if (a == 0 || a >= slen || b == 0 || b >= idlen || s2 + 1 == rel + len ||
        memchr(s2 + 1, '/', len - (size_t)(s2 + 1 - rel)) != NULL)
        return -EINVAL;
    memcpy(service, rel, a);
    service[a] = '\0';
    memcpy(id, s1 + 1, b);
    id[b] = '\0';
    return 0;
}

/* ---- the view: every key of the cell, sorted, so one member's keys
 * ("<service>/<id>/...") are neighbours ---- */

struct vkey {
    char *rel;    /* "<service>/<id>/<shed>", owned */
    size_t grp;   /* length of "<service>/<id>/" */
    uint64_t rev; /* mod revision */
    struct proto_sync_entry e;
};

struct shed_etcd_view {
    struct vkey *k;
    size_t n, cap;
};

struct shed_etcd_view *
shed_etcd_view_create(void)
{
    return calloc(1, sizeof(struct shed_etcd_view));
}

void
shed_etcd_view_destroy(struct shed_etcd_view *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n; i++)
        free(v->k[i].rel);
    free(v->k);
    free(v);
}

size_t
shed_etcd_view_size(const struct shed_etcd_view *v)
{
    return v->n;
}

/* First index whose key is >= <s>. */
static size_t
lower(const struct shed_etcd_view *v, const char *s, size_t len)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t ml = strlen(v->k[mid].rel);
        int c = memcmp(v->k[mid].rel, s, ml < len ? ml : len);
        if (c < 0 || (c == 0 && ml < len))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The range [*a, *b) of keys in group <g> (<glen> bytes). */
static void
group(const struct shed_etcd_view *v, const char *g, size_t glen, size_t *a, size_t *b)
{
    size_t i = lower(v, g, glen);
    *a = i;
    while (i < v->n && strncmp(v->k[i].rel, g, glen) == 0)
        i++;
    *b = i;
}

/* The member's entry from its keys [a, b): the highest incarnation, "gone"
 * wins a tie, then the latest write. */
static const struct proto_sync_entry *
aggregate(const struct shed_etcd_view *v, size_t a, size_t b)
{
    const struct vkey *best = NULL;
    for (size_t i = a; i < b; i++) {
        const struct vkey *k = &v->k[i];
        if (best == NULL || k->e.incarnation > best->e.incarnation)
            best = k;
        else if (k->e.incarnation == best->e.incarnation) {
            bool kg = k->e.state == PROTO_SYNC_GONE, bg = best->e.state == PROTO_SYNC_GONE;
            if ((kg && !bg) || (kg == bg && k->rev > best->rev))
                best = k;
        }
    }
    return best != NULL ? &best->e : NULL;
}

static int
emit(struct proto_sync_msg *out, const struct proto_sync_entry *e, enum proto_sync_state st)
{
    struct proto_sync_entry x = *e;
    x.state = st;
    x.age_ms = 0;
    int rc = proto_sync_msg_add(out, &x);
    return rc == -PROTO_SYNC_ETOOBIG ? 0 : rc;
}

int
shed_etcd_view_put(struct shed_etcd_view *v, const char *rel, const struct proto_sync_entry *e,
                   uint64_t rev, struct proto_sync_msg *out)
{
    size_t len = strlen(rel), a, b;
    const char *s2;
    char svc[PROTO_SYNC_NAME_MAX + 1], id[PROTO_SYNC_ID_MAX + 1];

    if (shed_etcd_key_split(rel, len, svc, sizeof(svc), id, sizeof(id)) < 0)
        return -EINVAL;
    s2 = strchr(strchr(rel, '/') + 1, '/');
    size_t i = lower(v, rel, len);
    if (i == v->n || strcmp(v->k[i].rel, rel) != 0) {
        if (v->n == v->cap) {
            size_t nc = v->cap ? v->cap * 2 : 64;
            struct vkey *nk = realloc(v->k, nc * sizeof(*nk));
            if (nk == NULL)
                return -ENOMEM;
            v->k = nk;
            v->cap = nc;
        }
        char *copy = strdup(rel);
        if (copy == NULL)
            return -ENOMEM;
        memmove(&v->k[i + 1], &v->k[i], (v->n - i) * sizeof(*v->k));
        v->n++;
        v->k[i].rel = copy;
        v->k[i].grp = (size_t)(s2 + 1 - rel);
    }
    v->k[i].rev = rev;
    v->k[i].e = *e;
    snprintf(v->k[i].e.service, sizeof(v->k[i].e.service), "%s", svc);
    snprintf(v->k[i].e.id, sizeof(v->k[i].e.id), "%s", id);
    group(v, rel, v->k[i].grp, &a, &b);
    const struct proto_sync_entry *best = aggregate(v, a, b);
    return emit(out, best, best->state);
}

int
shed_etcd_view_delete(struct shed_etcd_view *v, const char *rel, struct proto_sync_msg *out)
{
    size_t len = strlen(rel), i = lower(v, rel, len), a, b, grp;
    if (i == v->n || strcmp(v->k[i].rel, rel) != 0)
        return 0;
    grp = v->k[i].grp;
    group(v, rel, grp, &a, &b);
    struct proto_sync_entry was = *aggregate(v, a, b);
    free(v->k[i].rel);
    memmove(&v->k[i], &v->k[i + 1], (v->n - i - 1) * sizeof(*v->k));
    v->n--;
    group(v, rel, grp, &a, &b);
    if (a < b) {
        const struct proto_sync_entry *best = aggregate(v, a, b);
        return emit(out, best, best->state);
    }
    if (was.state == PROTO_SYNC_GONE)
        return 0;
    return emit(out, &was, PROTO_SYNC_DOWN);
}

int
shed_etcd_view_export(const struct shed_etcd_view *v, struct proto_sync_msg *out)
{
    for (size_t a = 0; a < v->n;) {
        size_t b = a + 1;
        while (b < v->n && strncmp(v->k[b].rel, v->k[a].rel, v->k[a].grp) == 0)
            b++;
        const struct proto_sync_entry *best = aggregate(v, a, b);
        /* "down" (a probe's verdict) is news once, not a state to renew. */
        if (best->state != PROTO_SYNC_GONE && best->state != PROTO_SYNC_DOWN) {
            int rc = emit(out, best, best->state);
            if (rc < 0)
                return rc;
        }
        a = b;
    }
    return 0;
}

int
shed_etcd_view_replace(struct shed_etcd_view *v, struct shed_etcd_view *next,
                       struct proto_sync_msg *out)
{
    /* Members only the old view had: down (their keys went while we did
     * not watch). */
    for (size_t a = 0; a < v->n;) {
        size_t b = a + 1, na, nb;
        while (b < v->n && strncmp(v->k[b].rel, v->k[a].rel, v->k[a].grp) == 0)
            b++;
        group(next, v->k[a].rel, v->k[a].grp, &na, &nb);
        if (na == nb) {
            const struct proto_sync_entry *was = aggregate(v, a, b);
            if (was->state != PROTO_SYNC_GONE)
                emit(out, was, PROTO_SYNC_DOWN);
        }
        a = b;
    }
    for (size_t i = 0; i < v->n; i++)
        free(v->k[i].rel);
    free(v->k);
    *v = *next;
    free(next);
    return shed_etcd_view_export(v, out);
}

/* ---- the writer table: what this shed has to have in etcd ---- */

enum wstate {
    W_JOINING, /* not proved yet: nothing written */
    W_PUT,     /* to write (new, changed, or lease lost) */
    W_CLEAN,   /* written */
    W_DEL,     /* its lease ran out here: delete our key */
    W_GONE,    /* deregistered: write "gone", then delete */
};

struct wmember {
    struct wmember *next; /* hash chain */
    struct proto_sync_entry rec;
    uint64_t last_hb;
    uint64_t ver; /* bumped on every change; a write done for an older one is redone */
    uint32_t beats;
    enum wstate st;
};

struct op {
    char service[PROTO_SYNC_NAME_MAX + 1];
    char id[PROTO_SYNC_ID_MAX + 1];
    uint64_t ver;
    enum wstate st;
    char *value; /* W_PUT, W_GONE */
};

static struct {
    bool running;
    struct registry *reg;
    struct shed_config cfgv; /* copy; only the fields below are read */
    char base[SHED_ETCD_KEY_MAX];
    char shed[SHED_PART_MAX]; /* this shed's key part: host:port */
    uint64_t lease_ms, ttl_s, join;
    pthread_t thread;
    _Atomic bool stop;

    pthread_mutex_t mu; /* the writer table and counters below it */
    struct wmember *buckets[NBUCKETS];
    size_t nmembers, ndirty;
    uint64_t dropped;
    char probed[PROBED_MAX][SHED_URL_MAX]; /* host:port a probe found dead */
    size_t nprobed;

    /* the thread's own */
    CURLM *multi;
    CURL *req, *watch;
    struct curl_slist *hdrs;
    size_t ep; /* current endpoint */
    struct shed_etcd_view *view;
    bool have_view, need_reload, watching, watch_abort;
    uint64_t rev; /* last revision seen (range or event) */
    char *wbuf;
    size_t wlen, wcap;
    char *wbody;
    struct proto_sync_msg again; /* "down" entries to apply once more */
    int64_t lease_id;
    uint64_t keepalive_at, refresh_at, retry_at, down_since;

    _Atomic bool up;
    _Atomic uint64_t revision, keys, writes, write_errors, reloads, resumes;
} G;

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
wfind(const char *service, const char *id)
{
    struct wmember **pp = &G.buckets[fnv(service, id) % NBUCKETS];
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

/* Under G.mu. */
static void
wset(struct wmember *m, enum wstate st)
{
    if (dirty(m->st) && !dirty(st))
        G.ndirty--;
    else if (!dirty(m->st) && dirty(st))
        G.ndirty++;
    m->st = st;
    m->ver++;
}

static void
wake(void)
{
    if (G.multi != NULL)
        curl_multi_wakeup(G.multi);
}

void
shed_etcd_heartbeat(const struct proto_heartbeat *hb, uint64_t now)
{
    bool kick = false;
    if (!G.running)
        return;
    pthread_mutex_lock(&G.mu);
    struct wmember **pp = wfind(hb->service, hb->id), *m = *pp;
    if (m == NULL) {
        if (G.nmembers >= G.cfgv.membership.queue_max) {
            G.dropped++;
            pthread_mutex_unlock(&G.mu);
            return;
        }
        m = calloc(1, sizeof(*m));
        if (m == NULL) {
            G.dropped++;
            pthread_mutex_unlock(&G.mu);
            return;
        }
        snprintf(m->rec.service, sizeof(m->rec.service), "%s", hb->service);
        snprintf(m->rec.id, sizeof(m->rec.id), "%s", hb->id);
        m->rec.state = PROTO_SYNC_UP;
        m->st = W_JOINING;
        *pp = m;
        G.nmembers++;
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
    if (m->st == W_JOINING && m->beats >= G.join) {
        wset(m, W_PUT);
        kick = true;
    } else if (m->st != W_JOINING && (changed || m->st == W_DEL || m->st == W_GONE)) {
        wset(m, W_PUT);
        kick = true;
    }
    pthread_mutex_unlock(&G.mu);
    if (kick)
        wake();
}

void
shed_etcd_deregister(const char *service, size_t slen, const char *id, size_t idlen,
                     uint64_t incarnation, uint64_t now)
{
    char s[PROTO_SYNC_NAME_MAX + 1], i[PROTO_SYNC_ID_MAX + 1];
    (void)now;
    if (!G.running || slen >= sizeof(s) || idlen >= sizeof(i))
        return;
    memcpy(s, service, slen);
    s[slen] = '\0';
    memcpy(i, id, idlen);
    i[idlen] = '\0';
    pthread_mutex_lock(&G.mu);
    struct wmember **pp = wfind(s, i), *m = *pp;
    if (m != NULL && incarnation >= m->rec.incarnation) {
        if (m->st == W_JOINING) {
            *pp = m->next;
            free(m);
            G.nmembers--;
        } else {
            m->rec.state = PROTO_SYNC_GONE;
            wset(m, W_GONE);
        }
    }
    pthread_mutex_unlock(&G.mu);
    wake();
}

void
shed_etcd_probe_failed(const char *hostport, uint64_t now)
{
    (void)now;
    if (!G.running)
        return;
    pthread_mutex_lock(&G.mu);
    if (G.nprobed < PROBED_MAX)
        snprintf(G.probed[G.nprobed++], SHED_URL_MAX, "%s", hostport);
    pthread_mutex_unlock(&G.mu);
    wake();
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

/* The thread: tell the cell what this shed's probes found. For every member
 * of the view at a dead host, this shed's key says "down" (the latest write
 * of that incarnation, so it outweighs the others' older "up"); every shed
 * marks it down once, and heartbeats bring it back as they would after a
 * peer's verdict. The key goes a lease later, like any this shed wrote. */
static void
probes(uint64_t now)
{
    char hp[PROBED_MAX][SHED_URL_MAX];
    size_t n;
    struct proto_sync_msg m;

    pthread_mutex_lock(&G.mu);
    n = G.nprobed;
    memcpy(hp, G.probed, n * sizeof(hp[0]));
    G.nprobed = 0;
    pthread_mutex_unlock(&G.mu);
    if (n == 0)
        return;
    proto_sync_msg_init(&m);
    shed_etcd_view_export(G.view, &m);
    pthread_mutex_lock(&G.mu);
    for (size_t i = 0; i < m.nentries; i++) {
        const struct proto_sync_entry *e = &m.entries[i];
        bool hit = false;
        for (size_t j = 0; j < n && !hit; j++)
            hit = url_at(e->url, hp[j]);
        if (!hit)
            continue;
        struct wmember **pp = wfind(e->service, e->id), *w = *pp;
        if (w == NULL) {
            if (G.nmembers >= G.cfgv.membership.queue_max || (w = calloc(1, sizeof(*w))) == NULL) {
                G.dropped++;
                continue;
            }
            *pp = w;
            G.nmembers++;
            w->st = W_CLEAN;
        }
        w->rec = *e;
        w->rec.state = PROTO_SYNC_DOWN;
        w->last_hb = now;
        w->beats = G.join;
        wset(w, W_PUT);
        log_info("etcd: service=%s id=%s down in etcd (probe failed)", e->service, e->id);
    }
    pthread_mutex_unlock(&G.mu);
    proto_sync_msg_free(&m);
}

/* ---- requests ---- */

struct buf {
    char *p;
    size_t len, cap, max;
};

static size_t
on_body(char *ptr, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t add = size * n;
    return buf_append(&b->p, &b->len, &b->cap, b->max - 1, ptr, add) == 0 ? add : 0;
}

static void
set_up(bool up, const char *why)
{
    uint64_t now = shed_now_ms();
    bool was = atomic_exchange(&G.up, up);
    if (was && !up) {
        pthread_mutex_lock(&G.mu);
        size_t queued = G.ndirty;
        pthread_mutex_unlock(&G.mu);
        G.down_since = now;
        log_warnx("etcd: %s unreachable (%s): routing on the last view (%zu keys), "
                  "changes wait (%zu queued)",
                  G.cfgv.membership.endpoints[G.ep], why, G.view ? shed_etcd_view_size(G.view) : 0,
                  queued);
    } else if (!was && up) {
        if (G.down_since != 0)
            log_info("etcd: %s reachable again after %" PRIu64 "ms: resyncing",
                     G.cfgv.membership.endpoints[G.ep], now - G.down_since);
        else
            log_info("etcd: connected to %s", G.cfgv.membership.endpoints[G.ep]);
    }
    if (!up) {
        G.retry_at = now + RETRY_MS;
        G.ep = (G.ep + 1) % G.cfgv.membership.nendpoints; /* the next endpoint */
    }
}

/* POST <body> to <path>; the parsed JSON answer in *<out> (owned). 0,
 * -EIO (etcd unreachable: marked down), -EPROTO (an error answer). */
static int
call(const char *path, const char *body, json_t **out)
{
    char url[SHED_URL_MAX + 64];
    struct buf b = {.max = REPLY_MAX};
    long code = 0;
    int rc = 0;

    *out = NULL;
    snprintf(url, sizeof(url), "%s%s", G.cfgv.membership.endpoints[G.ep], path);
    curl_easy_reset(G.req);
    curl_easy_setopt(G.req, CURLOPT_URL, url);
    curl_easy_setopt(G.req, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(G.req, CURLOPT_HTTPHEADER, G.hdrs);
    curl_easy_setopt(G.req, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(G.req, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(G.req, CURLOPT_TIMEOUT_MS, (long)G.cfgv.membership.timeout_ms);
    curl_easy_setopt(G.req, CURLOPT_CONNECTTIMEOUT_MS, (long)G.cfgv.membership.timeout_ms);
    curl_easy_setopt(G.req, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(G.req);
    if (cc != CURLE_OK) {
        set_up(false, curl_easy_strerror(cc));
        rc = -EIO;
        goto out;
    }
    curl_easy_getinfo(G.req, CURLINFO_RESPONSE_CODE, &code);
    *out = b.p != NULL ? json_loadb(b.p, b.len, 0, NULL) : NULL;
    if (code >= 500 && code != 501) {
        /* No leader, or the member is cut off: try another endpoint. */
        set_up(false, "no leader");
        rc = -EIO;
    } else if (code != 200 || *out == NULL) {
        /* At most one line a second: a put refused for a lost lease comes
         * once per key until the next keepalive notices. */
        static uint64_t last_warn;
        uint64_t now = shed_now_ms();
        if (now - last_warn >= 1000) {
            last_warn = now;
            log_warnx("etcd: %s: HTTP %ld: %.200s", path, code, b.p != NULL ? b.p : "");
        }
        rc = -EPROTO;
    } else {
        set_up(true, NULL);
    }
out:
    if (rc < 0) {
        json_decref(*out);
        *out = NULL;
    }
    free(b.p);
    return rc;
}

/* A gateway int64 (a JSON string, sometimes a number), 0 when absent. */
static int64_t
i64(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

static char *
b64dup(const char *s, size_t len)
{
    size_t cap = (len + 2) / 3 * 4 + 1;
    char *out = malloc(cap);
    if (out != NULL && shed_etcd_b64_encode(s, len, out, cap) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* JSON {"key": b64(<key>) [, "range_end": b64(end of the cell's range)] ...} */
static char *
key_body(const char *key, bool range, const char *extra)
{
    char *k = b64dup(key, strlen(key)), *e = NULL, *out = NULL;
    if (k == NULL)
        return NULL;
    if (range) {
        char end[SHED_ETCD_KEY_MAX];
        snprintf(end, sizeof(end), "%s", key);
        end[strlen(end) - 1]++; /* the base ends with '/': "0" is just past it */
        e = b64dup(end, strlen(end));
        if (e == NULL)
            goto out;
    }
    size_t n = strlen(k) + (e ? strlen(e) : 0) + (extra ? strlen(extra) : 0) + 64;
    out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "{\"key\":\"%s\"%s%s%s%s%s}", k, e ? ",\"range_end\":\"" : "", e ? e : "",
                 e ? "\"" : "", extra ? "," : "", extra ? extra : "");
out:
    free(k);
    free(e);
    return out;
}

/* ---- reading: range, watch, refresh ---- */

static void
apply(struct proto_sync_msg *m)
{
    size_t n = 0;
    if (m->nentries > 0)
        registry_apply(G.reg, m, shed_now_ms(), false, &n);
    /* A "down" lands in the same millisecond as a refresh that heard the
     * member: the registry takes it for old news. Say it again next turn. */
    for (size_t i = 0; n < m->nentries && i < m->nentries; i++)
        if (m->entries[i].state == PROTO_SYNC_DOWN && G.again.nentries < PROTO_SYNC_MAX_ENTRIES)
            proto_sync_msg_add(&G.again, &m->entries[i]);
    proto_sync_msg_free(m);
    proto_sync_msg_init(m);
    atomic_store(&G.keys, G.view != NULL ? shed_etcd_view_size(G.view) : 0);
}

/* Decode kv (a gateway KeyValue) relative to the base into <rel>; 0 or
 * -EINVAL (not ours). */
static int
kv_key(json_t *kv, char *rel, size_t rlen)
{
    json_t *k = json_object_get(kv, "key");
    char key[SHED_ETCD_KEY_MAX];
    size_t blen = strlen(G.base);
    if (!json_is_string(k))
        return -EINVAL;
    long n =
        shed_etcd_b64_decode(json_string_value(k), json_string_length(k), key, sizeof(key) - 1);
    if (n < 0 || (size_t)n <= blen || memcmp(key, G.base, blen) != 0 || (size_t)n - blen >= rlen)
        return -EINVAL;
    memcpy(rel, key + blen, (size_t)n - blen);
    rel[(size_t)n - blen] = '\0';
    return 0;
}

static int
kv_value(json_t *kv, struct proto_sync_entry *e)
{
    json_t *v = json_object_get(kv, "value");
    char val[VALUE_JSON_MAX];
    if (!json_is_string(v))
        return -EINVAL;
    long n = shed_etcd_b64_decode(json_string_value(v), json_string_length(v), val, sizeof(val));
    if (n < 0)
        return -EINVAL;
    memset(e, 0, sizeof(*e));
    return shed_etcd_value_decode(val, (size_t)n, e);
}

static void
put_kv(struct shed_etcd_view *v, json_t *kv, struct proto_sync_msg *m)
{
    char rel[SHED_ETCD_KEY_MAX];
    struct proto_sync_entry e;
    if (kv_key(kv, rel, sizeof(rel)) < 0 || kv_value(kv, &e) < 0) {
        log_debug("etcd: a key under %s that is not a member record: ignored", G.base);
        return;
    }
    if (shed_etcd_view_put(v, rel, &e, (uint64_t)i64(kv, "mod_revision"), m) < 0)
        log_debug("etcd: key %s%s: not <service>/<id>/<shed>: ignored", G.base, rel);
}

static void
range(void)
{
    char *body = key_body(G.base, true, NULL);
    json_t *r = NULL;
    if (body == NULL || call("/v3/kv/range", body, &r) < 0) {
        free(body);
        return;
    }
    free(body);
    struct shed_etcd_view *next = shed_etcd_view_create();
    struct proto_sync_msg m;
    proto_sync_msg_init(&m);
    if (next == NULL) {
        json_decref(r);
        return;
    }
    json_t *kvs = json_object_get(r, "kvs"), *kv;
    size_t i;
    json_array_foreach(kvs, i, kv)
    {
        put_kv(next, kv, &m);
    }
    proto_sync_msg_free(&m);
    proto_sync_msg_init(&m);
    shed_etcd_view_replace(G.view, next, &m);
    G.rev = (uint64_t)i64(json_object_get(r, "header"), "revision");
    atomic_store(&G.revision, G.rev);
    if (G.have_view)
        atomic_fetch_add(&G.reloads, 1);
    log_info("etcd: %s %zu keys of cell %s at revision %" PRIu64,
             G.have_view ? "reloaded" : "loaded", shed_etcd_view_size(G.view), G.cfgv.cell, G.rev);
    G.have_view = true;
    G.need_reload = false;
    apply(&m);
    json_decref(r);
}

/* One message of the watch stream. */
static void
watch_message(const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL), *res, *ev;
    struct proto_sync_msg m;
    size_t i;

    proto_sync_msg_init(&m);
    if (o == NULL)
        return;
    res = json_object_get(o, "result");
    if (!json_is_object(res)) {
        log_warnx("etcd: watch: %.200s", line);
        G.watch_abort = true;
        goto out;
    }
    set_up(true, NULL);
    if (i64(res, "compact_revision") > 0) {
        log_warnx("etcd: watch: revision %" PRIu64 " was compacted (now %" PRId64 "): full reload",
                  G.rev + 1, i64(res, "compact_revision"));
        G.need_reload = true;
        G.watch_abort = true;
        goto out;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        G.watch_abort = true;
        goto out;
    }
    json_array_foreach(json_object_get(res, "events"), i, ev)
    {
        json_t *kv = json_object_get(ev, "kv"), *type = json_object_get(ev, "type");
        uint64_t rev = (uint64_t)i64(kv, "mod_revision");
        if (json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0) {
            char rel[SHED_ETCD_KEY_MAX];
            if (kv_key(kv, rel, sizeof(rel)) == 0)
                shed_etcd_view_delete(G.view, rel, &m);
        } else {
            put_kv(G.view, kv, &m);
        }
        if (rev > G.rev)
            G.rev = rev;
    }
    atomic_store(&G.revision, G.rev);
    apply(&m);
out:
    proto_sync_msg_free(&m);
    json_decref(o);
}

static size_t
on_watch(char *ptr, size_t size, size_t n, void *arg)
{
    size_t add = size * n;
    (void)arg;
    if (G.watch_abort || G.wlen + add + 1 > WATCH_BUF_MAX)
        return 0;
    if (G.wlen + add + 1 > G.wcap) {
        size_t nc = G.wcap ? G.wcap : 16384;
        while (nc < G.wlen + add + 1)
            nc *= 2;
        char *np = realloc(G.wbuf, nc);
        if (np == NULL)
            return 0;
        G.wbuf = np;
        G.wcap = nc;
    }
    memcpy(G.wbuf + G.wlen, ptr, add);
    G.wlen += add;
    /* The gateway sends one JSON object per line. */
    char *start = G.wbuf, *nl;
    while ((nl = memchr(start, '\n', (size_t)(G.wbuf + G.wlen - start))) != NULL) {
        if (nl > start)
            watch_message(start, (size_t)(nl - start));
        start = nl + 1;
        if (G.watch_abort)
            return 0;
    }
    G.wlen -= (size_t)(start - G.wbuf);
    memmove(G.wbuf, start, G.wlen);
    return add;
}

static void
watch_start(void)
{
    char extra[64];
    char *inner;
    snprintf(extra, sizeof(extra), "\"start_revision\":\"%" PRIu64 "\"", G.rev + 1);
    inner = key_body(G.base, true, extra);
    if (inner == NULL)
        return;
    free(G.wbody);
    G.wbody = malloc(strlen(inner) + 32);
    if (G.wbody == NULL) {
        free(inner);
        return;
    }
    sprintf(G.wbody, "{\"create_request\":%s}", inner);
    free(inner);

    char url[SHED_URL_MAX + 64];
    snprintf(url, sizeof(url), "%s/v3/watch", G.cfgv.membership.endpoints[G.ep]);
    curl_easy_reset(G.watch);
    curl_easy_setopt(G.watch, CURLOPT_URL, url);
    curl_easy_setopt(G.watch, CURLOPT_POSTFIELDS, G.wbody);
    curl_easy_setopt(G.watch, CURLOPT_HTTPHEADER, G.hdrs);
    curl_easy_setopt(G.watch, CURLOPT_WRITEFUNCTION, on_watch);
    curl_easy_setopt(G.watch, CURLOPT_CONNECTTIMEOUT_MS, (long)G.cfgv.membership.timeout_ms);
    curl_easy_setopt(G.watch, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(G.watch, CURLOPT_TCP_KEEPALIVE, 1L);
    G.wlen = 0;
    G.watch_abort = false;
    if (curl_multi_add_handle(G.multi, G.watch) == CURLM_OK) {
        G.watching = true;
        log_debug("etcd: watching %s from revision %" PRIu64, G.base, G.rev + 1);
    }
}

static void
watch_stop(void)
{
    if (!G.watching)
        return;
    curl_multi_remove_handle(G.multi, G.watch);
    G.watching = false;
}

static void
watch_poll(void)
{
    int running, left;
    CURLMsg *msg;
    curl_multi_perform(G.multi, &running);
    while ((msg = curl_multi_info_read(G.multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE || msg->easy_handle != G.watch)
            continue;
        CURLcode cc = msg->data.result;
        watch_stop();
        if (!G.watch_abort)
            set_up(false, cc == CURLE_OK ? "watch closed" : curl_easy_strerror(cc));
        else
            G.retry_at = shed_now_ms() + (G.need_reload ? 0 : RETRY_MS);
        atomic_fetch_add(&G.resumes, 1);
        break;
    }
}

/* Every third of a lease: what etcd holds is heard now (the registry's own
 * lease would otherwise expire the members this shed does not hear). */
static void
refresh(uint64_t now)
{
    struct proto_sync_msg m;
    if (!G.have_view || now < G.refresh_at)
        return;
    G.refresh_at = now + G.lease_ms / 3;
    proto_sync_msg_init(&m);
    shed_etcd_view_export(G.view, &m);
    apply(&m);
}

/* ---- writing ---- */

static void
mark_all_put(void)
{
    pthread_mutex_lock(&G.mu);
    for (size_t b = 0; b < NBUCKETS; b++)
        for (struct wmember *m = G.buckets[b]; m != NULL; m = m->next)
            if (m->st == W_CLEAN)
                wset(m, W_PUT);
    pthread_mutex_unlock(&G.mu);
}

static int
lease(uint64_t now)
{
    char body[96];
    json_t *r;
    if (G.lease_id == 0) {
        snprintf(body, sizeof(body), "{\"TTL\":\"%" PRIu64 "\"}", G.ttl_s);
        if (call("/v3/lease/grant", body, &r) < 0)
            return -EIO;
        G.lease_id = i64(r, "ID");
        json_decref(r);
        if (G.lease_id == 0)
            return -EPROTO;
        G.keepalive_at = now + G.ttl_s * 1000 / 3;
        mark_all_put(); /* keys under a lost lease are gone: write them again */
        return 0;
    }
    if (now < G.keepalive_at)
        return 0;
    snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", G.lease_id);
    if (call("/v3/lease/keepalive", body, &r) < 0)
        return -EIO;
    json_t *res = json_object_get(r, "result");
    if (i64(res != NULL ? res : r, "TTL") <= 0) {
        log_warnx("etcd: lease %" PRIx64 " expired: writing this shed's keys again",
                  (uint64_t)G.lease_id);
        G.lease_id = 0;
    }
    json_decref(r);
    G.keepalive_at = now + G.ttl_s * 1000 / 3;
    return 0;
}

/* Collect up to BATCH writes under the lock; local lease expiry too. */
static size_t
collect(uint64_t now, struct op *ops)
{
    size_t n = 0;
    pthread_mutex_lock(&G.mu);
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (struct wmember **pp = &G.buckets[b]; *pp != NULL;) {
            struct wmember *m = *pp;
            bool expired = now > m->last_hb + G.lease_ms && m->st != W_GONE;
            if (expired && m->st == W_JOINING) {
                *pp = m->next;
                free(m);
                G.nmembers--;
                continue;
            }
            if (expired && m->st != W_DEL)
                wset(m, W_DEL); /* (deleting a key never written is harmless) */
            if (dirty(m->st) && n < BATCH) {
                struct op *o = &ops[n];
                memcpy(o->service, m->rec.service, sizeof(o->service));
                memcpy(o->id, m->rec.id, sizeof(o->id));
                o->ver = m->ver;
                o->st = m->st;
                o->value = m->st != W_DEL ? shed_etcd_value_encode(&m->rec, G.shed) : NULL;
                if (m->st == W_DEL || o->value != NULL)
                    n++;
            }
            pp = &m->next;
        }
    }
    pthread_mutex_unlock(&G.mu);
    return n;
}

/* The write for <o> is done: the member is clean, or gone from the table. */
static void
done(const struct op *o)
{
    pthread_mutex_lock(&G.mu);
    struct wmember **pp = wfind(o->service, o->id), *m = *pp;
    if (m != NULL && m->ver == o->ver) {
        if (o->st == W_PUT) {
            wset(m, W_CLEAN);
        } else {
            G.ndirty--;
            *pp = m->next;
            free(m);
            G.nmembers--;
        }
    }
    pthread_mutex_unlock(&G.mu);
}

static int
write_one(const struct op *o)
{
    char key[SHED_ETCD_KEY_MAX], extra[VALUE_JSON_MAX * 2];
    json_t *r = NULL;
    int rc = 0;
    if (snprintf(key, sizeof(key), "%s%s/%s/%s", G.base, o->service, o->id, G.shed) >=
        (int)sizeof(key))
        return -ENAMETOOLONG;
    if (o->st != W_DEL) {
        char *v = b64dup(o->value, strlen(o->value));
        if (v == NULL)
            return -ENOMEM;
        snprintf(extra, sizeof(extra), "\"value\":\"%s\",\"lease\":\"%" PRId64 "\"", v, G.lease_id);
        free(v);
        char *body = key_body(key, false, extra);
        rc = body != NULL ? call("/v3/kv/put", body, &r) : -ENOMEM;
        free(body);
        json_decref(r);
        r = NULL;
        if (rc < 0 || o->st == W_PUT)
            goto out;
    }
    /* W_DEL, and W_GONE after the "gone" record: watchers saw it first. */
    char *body = key_body(key, false, NULL);
    rc = body != NULL ? call("/v3/kv/deleterange", body, &r) : -ENOMEM;
    free(body);
    json_decref(r);
out:
    if (rc == 0)
        atomic_fetch_add(&G.writes, 1);
    else
        atomic_fetch_add(&G.write_errors, 1);
    return rc;
}

static void
writer(uint64_t now)
{
    static struct op ops[BATCH];
    if (now < G.retry_at && !atomic_load(&G.up))
        return;
    if (lease(now) < 0)
        return;
    if (G.lease_id == 0 && lease(now) < 0)
        return;
    size_t n = collect(now, ops), i;
    for (i = 0; i < n; i++) {
        int rc = write_one(&ops[i]);
        if (rc == -EIO)
            break;
        if (rc == -EPROTO) {
            /* Most likely our lease is gone: check it now, not in ttl/3. */
            G.keepalive_at = 0;
            break;
        }
        if (rc == 0)
            done(&ops[i]);
    }
    for (size_t j = 0; j < n; j++)
        free(ops[j].value);
}

/* ---- the thread ---- */

static void *
run(void *arg)
{
    (void)arg;
    while (!atomic_load(&G.stop)) {
        uint64_t now = shed_now_ms();
        bool may = atomic_load(&G.up) || now >= G.retry_at;
        if (may && (!G.have_view || G.need_reload) && !G.watching)
            range();
        now = shed_now_ms();
        if (G.have_view && !G.need_reload && !G.watching &&
            (atomic_load(&G.up) || now >= G.retry_at))
            watch_start();
        if (G.watching && !atomic_load(&G.up)) /* e.g. a keepalive timed out */
            watch_stop();
        if (G.again.nentries > 0) {
            registry_apply(G.reg, &G.again, shed_now_ms(), false, NULL);
            proto_sync_msg_free(&G.again);
            proto_sync_msg_init(&G.again);
        }
        probes(shed_now_ms());
        writer(shed_now_ms());
        refresh(shed_now_ms());
        if (G.watching)
            watch_poll();
        int numfds;
        curl_multi_poll(G.multi, NULL, 0, POLL_MS, &numfds);
        if (G.watching)
            watch_poll();
    }
    return NULL;
}

bool
shed_etcd_running(void)
{
    return G.running;
}

int
shed_etcd_start(struct registry *reg, const struct shed_config *cfg, const char *origin)
{
    const char *host = strstr(origin, "://");
    memset(&G, 0, sizeof(G));
    G.reg = reg;
    memcpy(&G.cfgv, cfg, sizeof(*cfg));
    snprintf(G.base, sizeof(G.base), "%s%s/", cfg->membership.prefix, cfg->cell);
    snprintf(G.shed, sizeof(G.shed), "%s", host != NULL ? host + 3 : origin);
    /* Every shed of a cell may listen on 0.0.0.0:80: name the host then. */
    if (strncmp(G.shed, "0.0.0.0:", 8) == 0 || strncmp(G.shed, "[::]:", 5) == 0) {
        char name[256] = "";
        const char *port = strrchr(G.shed, ':');
        if (gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0' &&
            strchr(name, '/') == NULL) {
            char tmp[sizeof(G.shed)];
            snprintf(tmp, sizeof(tmp), "%.200s%s", name, port);
            memcpy(G.shed, tmp, sizeof(tmp));
        }
    }
    G.lease_ms = cfg->timings.lease_ms;
    G.join = cfg->timings.join_heartbeats;
    uint64_t ttl = cfg->membership.ttl_ms != 0 ? cfg->membership.ttl_ms : cfg->timings.lease_ms;
    G.ttl_s = (ttl + 999) / 1000;
    if (G.ttl_s < 2)
        G.ttl_s = 2; /* etcd's shortest lease */
    pthread_mutex_init(&G.mu, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    G.multi = curl_multi_init();
    G.req = curl_easy_init();
    G.watch = curl_easy_init();
    G.view = shed_etcd_view_create();
    G.hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    G.hdrs = curl_slist_append(G.hdrs, "Expect:");
    if (G.multi == NULL || G.req == NULL || G.watch == NULL || G.view == NULL || G.hdrs == NULL)
        return -ENOMEM;
    atomic_store(&G.up, true); /* so that the first failure is logged */
    G.down_since = 0;
    range(); /* warm: route on what etcd holds before listening */
    registry_tick(reg, shed_now_ms());
    if (!G.have_view)
        log_warnx("etcd: no membership from %s yet: starting without it, retrying",
                  cfg->membership.endpoints[0]);
    if (pthread_create(&G.thread, NULL, run, NULL) != 0)
        return -EAGAIN;
    G.running = true;
    log_info("etcd: membership under %s on %zu endpoint%s, lease ttl %" PRIu64 "s", G.base,
             cfg->membership.nendpoints, cfg->membership.nendpoints == 1 ? "" : "s", G.ttl_s);
    return 0;
}

void
shed_etcd_stop(void)
{
    if (!G.running)
        return;
    atomic_store(&G.stop, true);
    wake();
    pthread_join(G.thread, NULL);
    G.running = false;
    watch_stop();
    if (G.lease_id != 0 && atomic_load(&G.up)) {
        char body[96];
        json_t *r = NULL;
        snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", G.lease_id);
        if (call("/v3/lease/revoke", body, &r) == 0)
            log_info("etcd: lease revoked: this shed's keys are gone");
        json_decref(r);
    }
    for (size_t b = 0; b < NBUCKETS; b++)
        while (G.buckets[b] != NULL) {
            struct wmember *m = G.buckets[b];
            G.buckets[b] = m->next;
            free(m);
        }
    curl_easy_cleanup(G.req);
    curl_easy_cleanup(G.watch);
    curl_multi_cleanup(G.multi);
    curl_slist_free_all(G.hdrs);
    shed_etcd_view_destroy(G.view);
    free(G.wbuf);
    free(G.wbody);
    proto_sync_msg_free(&G.again);
    pthread_mutex_destroy(&G.mu);
    memset(&G, 0, sizeof(G));
}

size_t
shed_etcd_metrics(char *buf, size_t len)
{
    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (!G.running)
        return 0;
    pthread_mutex_lock(&G.mu);
    uint64_t dropped = G.dropped, queued = G.ndirty;
    size_t members = G.nmembers;
    pthread_mutex_unlock(&G.mu);
    int n = snprintf(
        buf, len,
        "# HELP shed_etcd_up 1 while etcd answers (membership store etcd); 0: routing on the last "
        "view.\n# TYPE shed_etcd_up gauge\nshed_etcd_up %d\n"
        "# HELP shed_etcd_revision Last etcd revision seen of the cell's keys.\n"
        "# TYPE shed_etcd_revision gauge\nshed_etcd_revision %" PRIu64 "\n"
        "# HELP shed_etcd_keys Member keys of the cell held from etcd.\n"
        "# TYPE shed_etcd_keys gauge\nshed_etcd_keys %" PRIu64 "\n"
        "# HELP shed_etcd_written_members Members this shed keeps in etcd.\n"
        "# TYPE shed_etcd_written_members gauge\nshed_etcd_written_members %zu\n"
        "# HELP shed_etcd_queued Changes waiting to be written to etcd.\n"
        "# TYPE shed_etcd_queued gauge\nshed_etcd_queued %" PRIu64 "\n"
        "# HELP shed_etcd_writes_total Puts and deletes etcd acknowledged.\n"
        "# TYPE shed_etcd_writes_total counter\nshed_etcd_writes_total %" PRIu64 "\n"
        "# HELP shed_etcd_write_errors_total Puts and deletes that failed (retried).\n"
        "# TYPE shed_etcd_write_errors_total counter\nshed_etcd_write_errors_total %" PRIu64 "\n"
        "# HELP shed_etcd_dropped_total Heartbeats not recorded for etcd: the table was full.\n"
        "# TYPE shed_etcd_dropped_total counter\nshed_etcd_dropped_total %" PRIu64 "\n"
        "# HELP shed_etcd_watch_restarts_total Watches resumed after a disconnect.\n"
        "# TYPE shed_etcd_watch_restarts_total counter\nshed_etcd_watch_restarts_total %" PRIu64
        "\n"
        "# HELP shed_etcd_reloads_total Full reloads (the revision was compacted).\n"
        "# TYPE shed_etcd_reloads_total counter\nshed_etcd_reloads_total %" PRIu64 "\n",
        atomic_load(&G.up) ? 1 : 0, atomic_load(&G.revision), atomic_load(&G.keys), members, queued,
        atomic_load(&G.writes), atomic_load(&G.write_errors), dropped, atomic_load(&G.resumes),
        atomic_load(&G.reloads));
    if (n < 0)
        return 0;
    return (size_t)n < len ? (size_t)n : len - 1;
}
