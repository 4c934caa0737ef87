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
#include "common/clock.h"
#include "common/log.h"
#include "proto/burrow.h"
#include "shed/answer.h"
#include "shed/hints.h"
#include "shed/master.h"
#include "shed/registry.h"

#define WATCH_BUF_MAX  (16u << 20) /* one watch message */
#define REPLY_MAX      (64u << 20) /* one range answer */
#define RETRY_MS       250         /* etcd unreachable: try again after */
#define POLL_MS        50          /* the thread's longest sleep */
#define BATCH          256         /* writes per turn of the loop */
#define NBUCKETS       4096        /* writer table hash buckets */
#define SHED_PART_MAX  (SHED_URL_MAX)
#define VALUE_JSON_MAX 2048
#define PROBED_MAX     64    /* probe verdicts waiting for the thread */
#define HINT_QUEUE_MAX 10000 /* master: hints waiting for the thread */
#define RANGE_PAGE     1000  /* keys in one answer of a load (~0.3 MB) */
#define HINT_VALUE_MAX (3 * PROTO_BURROW_PATH_MAX + 2 * SHED_URL_MAX + 256)

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

static uint64_t
wall_ms(void)
{
    return clock_real_ns() / 1000000u;
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

int
shed_etcd_key_class(const char *rel, size_t len, char *cell, size_t clen, const char **rest)
{
    static const char cells[] = SHED_ETCD_CELLS_DIR, hints[] = SHED_ETCD_HINTS_DIR;
    int kind = SHED_ETCD_KEY_MEMBER;
    const char *p = rel, *end = rel + len, *slash;

    if (len >= sizeof(cells) - 1 && memcmp(rel, cells, sizeof(cells) - 1) == 0) {
        kind = SHED_ETCD_KEY_CELL;
        p += sizeof(cells) - 1;
    } else if (len >= sizeof(hints) - 1 && memcmp(rel, hints, sizeof(hints) - 1) == 0) {
        kind = SHED_ETCD_KEY_HINT;
        p += sizeof(hints) - 1;
    } else if (len > 0 && rel[0] == '~') {
        return -EINVAL;
    }
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL || slash == p || (size_t)(slash - p) >= clen || slash + 1 == end)
        return -EINVAL;
    for (const char *c = p; c < slash; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
            return -EINVAL;
    memcpy(cell, p, (size_t)(slash - p));
    cell[slash - p] = '\0';
    *rest = slash + 1;
    return kind;
}

int
shed_etcd_cell_decode(const char *buf, size_t len, char *aggregator, size_t size)
{
    json_t *o = json_loadb(buf, len, 0, NULL);
    int rc = json_is_object(o) ? copy_str(o, "aggregator", aggregator, size, true) : -EINVAL;
    json_decref(o);
    return rc;
}

int
shed_etcd_hint_key(char *buf, size_t len, const char *prefix, const char *cell, uint64_t seq,
                   const char *shed)
{
    int n = snprintf(buf, len, "%s" SHED_ETCD_HINTS_DIR "%s/%020" PRIu64 "-%s", prefix, cell, seq,
                     shed);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

char *
shed_etcd_hint_encode(const char *service, const char *path, const char *url, uint64_t at_ms)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "service", service, "path", path, "url", url, "at",
                          (json_int_t)at_ms);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

int
shed_etcd_hint_decode(const char *buf, size_t len, struct shed_etcd_hint *h)
{
    json_t *o = json_loadb(buf, len, 0, NULL), *at;
    int rc = -EINVAL;
    if (!json_is_object(o))
        goto out;
    at = json_object_get(o, "at");
    if (!json_is_integer(at) || json_integer_value(at) < 0 ||
        copy_str(o, "service", h->service, sizeof(h->service), true) < 0 ||
        copy_str(o, "path", h->path, sizeof(h->path), true) < 0 ||
        copy_str(o, "url", h->url, sizeof(h->url), true) < 0 || h->service[0] == '\0' ||
        h->path[0] != '/' || h->url[0] == '\0')
        goto out;
    h->at_ms = (uint64_t)json_integer_value(at);
    rc = 0;
out:
    json_decref(o);
    return rc;
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
    struct vkey **k; /* one allocation per key: an insert or a delete moves pointers */
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
    for (size_t i = 0; i < v->n; i++) {
        free(v->k[i]->rel);
        free(v->k[i]);
    }
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
        size_t ml = strlen(v->k[mid]->rel);
        int c = memcmp(v->k[mid]->rel, s, ml < len ? ml : len);
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
    while (i < v->n && strncmp(v->k[i]->rel, g, glen) == 0)
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
        const struct vkey *k = v->k[i];
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
    if (i == v->n || strcmp(v->k[i]->rel, rel) != 0) {
        if (v->n == v->cap) {
            size_t nc = v->cap ? v->cap * 2 : 64;
            struct vkey **nk = realloc(v->k, nc * sizeof(*nk));
            if (nk == NULL)
                return -ENOMEM;
            v->k = nk;
            v->cap = nc;
        }
        char *copy = strdup(rel);
        struct vkey *nk = malloc(sizeof(*nk));
        if (copy == NULL || nk == NULL) {
            free(copy);
            free(nk);
            return -ENOMEM;
        }
        memmove(&v->k[i + 1], &v->k[i], (v->n - i) * sizeof(*v->k));
        v->n++;
        v->k[i] = nk;
        v->k[i]->rel = copy;
        v->k[i]->grp = (size_t)(s2 + 1 - rel);
    }
    v->k[i]->rev = rev;
    v->k[i]->e = *e;
    snprintf(v->k[i]->e.service, sizeof(v->k[i]->e.service), "%s", svc);
    snprintf(v->k[i]->e.id, sizeof(v->k[i]->e.id), "%s", id);
    group(v, rel, v->k[i]->grp, &a, &b);
    const struct proto_sync_entry *best = aggregate(v, a, b);
    return emit(out, best, best->state);
}

int
shed_etcd_view_delete(struct shed_etcd_view *v, const char *rel, struct proto_sync_msg *out)
{
    size_t len = strlen(rel), i = lower(v, rel, len), a, b, grp;
    if (i == v->n || strcmp(v->k[i]->rel, rel) != 0)
        return 0;
    grp = v->k[i]->grp;
    group(v, rel, grp, &a, &b);
    struct proto_sync_entry was = *aggregate(v, a, b);
    free(v->k[i]->rel);
    free(v->k[i]);
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
shed_etcd_view_export_at(const struct shed_etcd_view *v, size_t *pos, struct proto_sync_msg *out)
{
    size_t a = *pos;
    while (a < v->n && out->nentries < PROTO_SYNC_MAX_ENTRIES) {
        size_t b = a + 1;
        while (b < v->n && strncmp(v->k[b]->rel, v->k[a]->rel, v->k[a]->grp) == 0)
            b++;
        const struct proto_sync_entry *best = aggregate(v, a, b);
        if (best->state != PROTO_SYNC_GONE && best->state != PROTO_SYNC_DOWN) {
            int rc = emit(out, best, best->state);
            if (rc < 0)
                return rc;
        }
        a = b;
    }
    *pos = a;
    return 0;
}

int
shed_etcd_view_export(const struct shed_etcd_view *v, struct proto_sync_msg *out)
{
    for (size_t a = 0; a < v->n;) {
        size_t b = a + 1;
        while (b < v->n && strncmp(v->k[b]->rel, v->k[a]->rel, v->k[a]->grp) == 0)
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
        while (b < v->n && strncmp(v->k[b]->rel, v->k[a]->rel, v->k[a]->grp) == 0)
            b++;
        group(next, v->k[a]->rel, v->k[a]->grp, &na, &nb);
        if (na == nb) {
            const struct proto_sync_entry *was = aggregate(v, a, b);
            if (was->state != PROTO_SYNC_GONE)
                emit(out, was, PROTO_SYNC_DOWN);
        }
        a = b;
    }
    for (size_t i = 0; i < v->n; i++) {
        free(v->k[i]->rel);
        free(v->k[i]);
    }
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

enum mode {
    MODE_CELL,   /* line or aggregator: <prefix><cell>/, feeds the registry */
    MODE_MASTER, /* master: every cell under <prefix>, feeds shed/master */
};

/* One cell's keys as held from etcd and what changed since the last apply. */
struct sink {
    char cell[PROTO_SYNC_NAME_MAX + 1];
    char aggregator[PROTO_SYNC_URL_MAX + 1]; /* master mode: from ~cells/ */
    struct shed_etcd_view *view;
    struct proto_sync_msg out;
};

/* A hint waiting for the master's etcd thread to write it. */
struct qhint {
    char cell[PROTO_SYNC_NAME_MAX + 1];
    char *value; /* the record, JSON */
};

/* Hints of one cell in etcd, as last counted (the bound). */
struct hcount {
    char cell[PROTO_SYNC_NAME_MAX + 1];
    uint64_t n, counted_at;
};

struct shed_etcd {
    enum mode mode;
    _Atomic bool running;       /* read by the heartbeat path, cleared by a reload */
    struct registry *reg;       /* MODE_CELL */
    struct shed_master *master; /* MODE_MASTER */
    struct shed_config cfgv;    /* copy; only the fields below are read */
    char base[SHED_ETCD_KEY_MAX];
    char shed[SHED_PART_MAX]; /* this shed's key part: host:port */
    uint64_t lease_ms, ttl_s, join;
    pthread_t thread;
    _Atomic bool stop;

    pthread_mutex_t mu; /* the writer table, the hint queue and counters below it */
    struct wmember *buckets[NBUCKETS];
    size_t nmembers, ndirty;
    uint64_t dropped;
    char probed[PROBED_MAX][SHED_URL_MAX]; /* host:port a probe found dead */
    size_t nprobed;
    struct qhint *hq; /* MODE_MASTER: HINT_QUEUE_MAX slots, a ring */
    size_t hq_head, hq_n;
    uint64_t hint_seq, hints_dropped, hints_written, hint_drop_log;
    unsigned hint_refused; /* puts of the queue's head etcd refused in a row */

    /* the thread's own */
    CURLM *multi;
    CURL *req, *watch;
    struct curl_slist *hdrs;
    _Atomic size_t ep;                 /* current endpoint */
    struct sink sinks[SHED_MAX_CELLS]; /* MODE_CELL: sinks[0] only */
    size_t nsinks;
    bool have_view, need_reload, watching, watch_abort, cellkey_dirty;
    uint64_t rev; /* last revision seen (range or event) */
    char *wbuf;
    size_t wlen, wcap;
    char *wbody;
    struct proto_sync_msg again; /* "down" entries to apply once more */
    int64_t lease_id, hint_lease;
    uint64_t keepalive_at, refresh_at, retry_at, down_since, last_warn, hint_lease_at;
    struct op *ops; /* BATCH */
    struct hcount hcounts[SHED_MAX_CELLS];
    size_t nhcounts;

    /* hints read by another thread (the aggregator's handoff) */
    pthread_mutex_t hmu; /* hreq, and cfgv's endpoints against a reload */
    CURL *hreq;

    _Atomic bool up;
    _Atomic uint64_t revision, keys, writes, write_errors, reloads, resumes;
};

static size_t keys_held(const struct shed_etcd *E);

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

static void
wake(struct shed_etcd *E)
{
    if (E != NULL && E->multi != NULL)
        curl_multi_wakeup(E->multi);
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
        wake(E);
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
    wake(E);
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
    wake(E);
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
static void
probes(struct shed_etcd *E, uint64_t now)
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
set_up(struct shed_etcd *E, bool up, const char *why)
{
    uint64_t now = shed_now_ms();
    bool was = atomic_exchange(&E->up, up);
    if (was && !up) {
        pthread_mutex_lock(&E->mu);
        size_t queued = E->ndirty;
        pthread_mutex_unlock(&E->mu);
        E->down_since = now;
        log_warnx("etcd: %s unreachable (%s): routing on the last view (%zu keys), "
                  "changes wait (%zu queued)",
                  E->cfgv.membership.endpoints[E->ep], why, keys_held(E), queued);
    } else if (!was && up) {
        if (E->down_since != 0)
            log_info("etcd: %s reachable again after %" PRIu64 "ms: resyncing",
                     E->cfgv.membership.endpoints[E->ep], now - E->down_since);
        else
            log_info("etcd: connected to %s", E->cfgv.membership.endpoints[E->ep]);
    }
    if (!up) {
        E->retry_at = now + RETRY_MS;
        E->ep = (E->ep + 1) % E->cfgv.membership.nendpoints; /* the next endpoint */
    }
}

/* POST <body> to <endpoint><path> on <h>: the HTTP status (0 when none
 * came: *<cc> says why), the answer in <b>. */
static long
post(CURL *h, struct curl_slist *hdrs, const char *endpoint, const char *path, const char *body,
     uint64_t timeout_ms, struct buf *b, CURLcode *cc)
{
    char url[SHED_URL_MAX + 64];
    long code = 0;

    snprintf(url, sizeof(url), "%s%s", endpoint, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    *cc = curl_easy_perform(h);
    if (*cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

/* POST <body> to <path>; the parsed JSON answer in *<out> (owned). 0,
 * -EIO (etcd unreachable: marked down), -EPROTO (an error answer). */
static int
call(struct shed_etcd *E, const char *path, const char *body, json_t **out)
{
    struct buf b = {.max = REPLY_MAX};
    CURLcode cc;
    int rc = 0;

    *out = NULL;
    long code = post(E->req, E->hdrs, E->cfgv.membership.endpoints[E->ep], path, body,
                     E->cfgv.membership.timeout_ms, &b, &cc);
    if (cc != CURLE_OK) {
        set_up(E, false, curl_easy_strerror(cc));
        rc = -EIO;
        goto out;
    }
    *out = b.p != NULL ? json_loadb(b.p, b.len, 0, NULL) : NULL;
    if (code >= 500 && code != 501) {
        /* No leader, or the member is cut off: try another endpoint. */
        set_up(E, false, "no leader");
        rc = -EIO;
    } else if (code != 200 || *out == NULL) {
        /* At most one line a second: a put refused for a lost lease comes
         * once per key until the next keepalive notices. */
        uint64_t now = shed_now_ms();
        if (now - E->last_warn >= 1000) {
            E->last_warn = now;
            log_warnx("etcd: %s: HTTP %ld: %.200s", path, code, b.p != NULL ? b.p : "");
        }
        rc = -EPROTO;
    } else {
        set_up(E, true, NULL);
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

/* JSON {"key": b64(<key>) [, "range_end": b64(<end>)] [, <extra>]} */
static char *
key_body_end(const char *key, size_t klen, const char *end, const char *extra)
{
    char *k = b64dup(key, klen), *e = NULL, *out = NULL;
    if (k == NULL)
        return NULL;
    if (end != NULL && (e = b64dup(end, strlen(end))) == NULL)
        goto out;
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

/* The same; <range>: every key under <key> (which ends with '/'). */
static char *
key_body(const char *key, bool range, const char *extra)
{
    char end[SHED_ETCD_KEY_MAX];
    if (!range)
        return key_body_end(key, strlen(key), NULL, extra);
    snprintf(end, sizeof(end), "%s", key);
    end[strlen(end) - 1]++; /* the base ends with '/': "0" is just past it */
    return key_body_end(key, strlen(key), end, extra);
}

/* What this shed reads: a cell's keys, or (a master) every cell's and the
 * cells' records, not the hints ("~hints/" sorts after "~cells/" and
 * after every cell name, whose characters are [a-z0-9_-]). */
static void
read_end(const struct shed_etcd *E, char end[SHED_ETCD_KEY_MAX])
{
    if (E->mode == MODE_CELL) {
        snprintf(end, SHED_ETCD_KEY_MAX, "%s", E->base);
        end[strlen(end) - 1]++; /* the base ends with '/': "0" is just past it */
        return;
    }
    snprintf(end, SHED_ETCD_KEY_MAX, "%.200s" SHED_ETCD_HINTS_DIR, E->base);
    end[strlen(end) - 1] = '\0'; /* "<prefix>~hints": just past every cell's and ~cells/ */
}

static char *
read_body(const struct shed_etcd *E, const char *extra)
{
    char end[SHED_ETCD_KEY_MAX];
    read_end(E, end);
    return key_body_end(E->base, strlen(E->base), end, extra);
}

/* ---- reading: range, watch, refresh ---- */

static size_t
keys_held(const struct shed_etcd *E)
{
    size_t n = 0;
    for (size_t i = 0; i < E->nsinks; i++)
        n += shed_etcd_view_size(E->sinks[i].view);
    return n;
}

/* The sink of cell <cell>, created (with an empty view) when <create>;
 * NULL when there is no room (SHED_MAX_CELLS) or memory. */
static struct sink *
sink_get(struct shed_etcd *E, const char *cell, bool create)
{
    for (size_t i = 0; i < E->nsinks; i++)
        if (strcmp(E->sinks[i].cell, cell) == 0)
            return &E->sinks[i];
    if (!create || E->nsinks == SHED_MAX_CELLS)
        return NULL;
    struct sink *k = &E->sinks[E->nsinks];
    memset(k, 0, sizeof(*k));
    if ((k->view = shed_etcd_view_create()) == NULL)
        return NULL;
    snprintf(k->cell, sizeof(k->cell), "%s", cell);
    proto_sync_msg_init(&k->out);
    E->nsinks++;
    return k;
}

/* Hand what changed to the registry (a line shed, an aggregator) or to the
 * master's tables. */
static void
apply(struct shed_etcd *E)
{
    uint64_t now = shed_now_ms();
    for (size_t s = 0; s < E->nsinks; s++) {
        struct sink *k = &E->sinks[s];
        struct proto_sync_msg *m = &k->out;
        size_t n = 0;
        if (m->nentries == 0)
            continue;
        if (E->mode == MODE_MASTER) {
            snprintf(m->cell, sizeof(m->cell), "%s", k->cell);
            snprintf(m->aggregator, sizeof(m->aggregator), "%s", k->aggregator);
            /* Live for two leases without a refresh (one comes every third
             * of one): a key's delete marks a member down at once anyway,
             * this only covers a thread held up by a big load. */
            m->lease_ms = (uint32_t)(2 * E->lease_ms);
            int rc = shed_master_feed(E->master, m, now);
            if (rc < 0)
                log_debug("etcd: cell %s: master: %s", k->cell, strerror(-rc));
        } else {
            registry_apply(E->reg, m, now, false, &n);
            /* A "down" lands in the same millisecond as a refresh that
             * heard the member: the registry takes it for old news. Say it
             * again next turn. */
            for (size_t i = 0; n < m->nentries && i < m->nentries; i++)
                if (m->entries[i].state == PROTO_SYNC_DOWN &&
                    E->again.nentries < PROTO_SYNC_MAX_ENTRIES)
                    proto_sync_msg_add(&E->again, &m->entries[i]);
        }
        proto_sync_msg_free(m);
        proto_sync_msg_init(m);
    }
    atomic_store(&E->keys, keys_held(E));
}

/* One message holds PROTO_SYNC_MAX_ENTRIES: apply what it holds before a
 * change would not fit (a load, a refresh or one watch message may carry
 * many more: a big cell, a deleterange). */
static void
room(struct shed_etcd *E, struct sink *k)
{
    if (k->out.nentries >= PROTO_SYNC_MAX_ENTRIES)
        apply(E);
}

/* Feed the whole view of <k> (the refresh), in messages that fit. */
static void
export_all(struct shed_etcd *E, struct sink *k)
{
    size_t pos = 0;
    do {
        room(E, k);
        if (shed_etcd_view_export_at(k->view, &pos, &k->out) < 0)
            break;
    } while (pos < shed_etcd_view_size(k->view));
}

/* The view of <k> replaced by <next> (consumed): "down" for every member
 * only the old view had, then everything <next> holds, all applied. */
static void
replace_view(struct shed_etcd *E, struct sink *k, struct shed_etcd_view *next)
{
    struct shed_etcd_view *v = k->view;
    for (size_t a = 0; a < v->n;) {
        size_t b = a + 1, na, nb;
        while (b < v->n && strncmp(v->k[b]->rel, v->k[a]->rel, v->k[a]->grp) == 0)
            b++;
        group(next, v->k[a]->rel, v->k[a]->grp, &na, &nb);
        if (na == nb) {
            const struct proto_sync_entry *was = aggregate(v, a, b);
            if (was->state != PROTO_SYNC_GONE) {
                room(E, k);
                emit(&k->out, was, PROTO_SYNC_DOWN);
            }
        }
        a = b;
    }
    shed_etcd_view_destroy(v);
    k->view = next;
    export_all(E, k);
}

/* Decode the key of kv (a gateway KeyValue) relative to the base into
 * <rel>; 0 or -EINVAL (not ours). */
static int
kv_key(struct shed_etcd *E, json_t *kv, char *rel, size_t rlen)
{
    json_t *k = json_object_get(kv, "key");
    char key[SHED_ETCD_KEY_MAX];
    size_t blen = strlen(E->base);
    if (!json_is_string(k))
        return -EINVAL;
    long n =
        shed_etcd_b64_decode(json_string_value(k), json_string_length(k), key, sizeof(key) - 1);
    if (n < 0 || (size_t)n <= blen || memcmp(key, E->base, blen) != 0 || (size_t)n - blen >= rlen)
        return -EINVAL;
    memcpy(rel, key + blen, (size_t)n - blen);
    rel[(size_t)n - blen] = '\0';
    return 0;
}

/* The value of kv, decoded from base64 into <val> (NUL-terminated); its
 * length or -EINVAL. */
static long
kv_raw(json_t *kv, char *val, size_t size)
{
    json_t *v = json_object_get(kv, "value");
    if (!json_is_string(v))
        return -EINVAL;
    long n = shed_etcd_b64_decode(json_string_value(v), json_string_length(v), val, size - 1);
    if (n >= 0)
        val[n] = '\0';
    return n < 0 ? -EINVAL : n;
}

static int
kv_value(json_t *kv, struct proto_sync_entry *e)
{
    char val[VALUE_JSON_MAX];
    long n = kv_raw(kv, val, sizeof(val));
    if (n < 0)
        return -EINVAL;
    memset(e, 0, sizeof(*e));
    return shed_etcd_value_decode(val, (size_t)n, e);
}

/* Which sink a key <rel> (relative to the base) belongs to and the part
 * of it below the cell (<*sub>); NULL for a key that is not a member's. A
 * master's ~cells/<cell>/<shed> record sets that cell's aggregator. */
static struct sink *
route_key(struct shed_etcd *E, json_t *kv, const char *rel, bool del, const char **sub)
{
    char cell[PROTO_SYNC_NAME_MAX + 1];
    const char *rest;
    int kind;

    if (E->mode == MODE_CELL) {
        *sub = rel;
        return &E->sinks[0];
    }
    kind = shed_etcd_key_class(rel, strlen(rel), cell, sizeof(cell), &rest);
    if (kind == SHED_ETCD_KEY_MEMBER) {
        *sub = rest;
        return sink_get(E, cell, !del);
    }
    if (kind == SHED_ETCD_KEY_CELL && !del) {
        char val[VALUE_JSON_MAX], agg[PROTO_SYNC_URL_MAX + 1];
        long n = kv_raw(kv, val, sizeof(val));
        struct sink *k = sink_get(E, cell, true);
        if (k != NULL && n >= 0 && shed_etcd_cell_decode(val, (size_t)n, agg, sizeof(agg)) == 0)
            snprintf(k->aggregator, sizeof(k->aggregator), "%s", agg);
    }
    return NULL;
}

/* A PUT of kv into the live views, or into <next> (a range being loaded,
 * nsinks views parallel to the sinks) when not NULL. */
static void
put_kv(struct shed_etcd *E, json_t *kv, struct shed_etcd_view **next)
{
    char rel[SHED_ETCD_KEY_MAX];
    const char *sub;
    struct proto_sync_entry e;
    struct proto_sync_msg scratch;
    struct sink *k;

    if (kv_key(E, kv, rel, sizeof(rel)) < 0 || (k = route_key(E, kv, rel, false, &sub)) == NULL)
        return;
    if (kv_value(kv, &e) < 0) {
        log_debug("etcd: a key under %s that is not a member record: ignored", E->base);
        return;
    }
    size_t i = (size_t)(k - E->sinks);
    if (next != NULL && next[i] == NULL && (next[i] = shed_etcd_view_create()) == NULL)
        return;
    proto_sync_msg_init(&scratch);
    if (next == NULL)
        room(E, k);
    if (shed_etcd_view_put(next != NULL ? next[i] : k->view, sub, &e,
                           (uint64_t)i64(kv, "mod_revision"),
                           next != NULL ? &scratch : &k->out) < 0)
        log_debug("etcd: key %s%s: not <service>/<id>/<shed>: ignored", E->base, rel);
    proto_sync_msg_free(&scratch);
}

static void
del_kv(struct shed_etcd *E, json_t *kv)
{
    char rel[SHED_ETCD_KEY_MAX];
    const char *sub;
    struct sink *k;
    if (kv_key(E, kv, rel, sizeof(rel)) == 0 && (k = route_key(E, kv, rel, true, &sub)) != NULL) {
        room(E, k);
        shed_etcd_view_delete(k->view, sub, &k->out);
    }
}

/* Load everything this shed reads at one revision, in pages of RANGE_PAGE
 * keys (each answer stays far below REPLY_MAX however big the cells are),
 * and replace the views with it. */
static void
range(struct shed_etcd *E)
{
    struct shed_etcd_view *next[SHED_MAX_CELLS] = {NULL};
    char from[SHED_ETCD_KEY_MAX + 1], end[SHED_ETCD_KEY_MAX], extra[96];
    size_t flen = strlen(E->base), i, pages = 0;
    uint64_t at = 0;
    bool more = true;
    json_t *kv;

    memcpy(from, E->base, flen);
    read_end(E, end);
    while (more) {
        json_t *r = NULL;
        if (at == 0)
            snprintf(extra, sizeof(extra), "\"limit\":\"%d\"", RANGE_PAGE);
        else
            snprintf(extra, sizeof(extra), "\"limit\":\"%d\",\"revision\":\"%" PRIu64 "\"",
                     RANGE_PAGE, at);
        char *body = key_body_end(from, flen, end, extra);
        int rc = body != NULL ? call(E, "/v3/kv/range", body, &r) : -ENOMEM;
        free(body);
        if (rc < 0) {
            for (size_t s = 0; s < SHED_MAX_CELLS; s++)
                shed_etcd_view_destroy(next[s]);
            return; /* tried again from the start (a compacted revision too) */
        }
        if (at == 0)
            at = (uint64_t)i64(json_object_get(r, "header"), "revision");
        json_t *kvs = json_object_get(r, "kvs");
        json_array_foreach(kvs, i, kv)
        {
            put_kv(E, kv, next);
        }
        pages++;
        more = json_is_true(json_object_get(r, "more")) && json_array_size(kvs) > 0;
        if (more) { /* the next page starts just after the last key */
            json_t *k = json_object_get(json_array_get(kvs, json_array_size(kvs) - 1), "key");
            long n = json_is_string(k)
                         ? shed_etcd_b64_decode(json_string_value(k), json_string_length(k), from,
                                                sizeof(from) - 1)
                         : -EINVAL;
            more = n >= 0;
            if (more) {
                from[n] = '\0';
                flen = (size_t)n + 1;
            }
        }
        json_decref(r);
    }
    /* Every sink's view replaced (a cell that vanished: all its members
     * down); new cells got a sink (and an empty view) from put_kv. */
    for (size_t s = 0; s < E->nsinks; s++) {
        struct shed_etcd_view *nv = next[s] != NULL ? next[s] : shed_etcd_view_create();
        if (nv != NULL)
            replace_view(E, &E->sinks[s], nv);
    }
    E->rev = at;
    atomic_store(&E->revision, E->rev);
    if (E->have_view)
        atomic_fetch_add(&E->reloads, 1);
    if (E->mode == MODE_CELL)
        log_info("etcd: %s %zu keys of cell %s at revision %" PRIu64 " (%zu page%s)",
                 E->have_view ? "reloaded" : "loaded", keys_held(E), E->cfgv.cell, E->rev, pages,
                 pages == 1 ? "" : "s");
    else
        log_info("etcd: %s %zu keys of %zu cells under %s at revision %" PRIu64 " (%zu page%s)",
                 E->have_view ? "reloaded" : "loaded", keys_held(E), E->nsinks, E->base, E->rev,
                 pages, pages == 1 ? "" : "s");
    E->have_view = true;
    E->need_reload = false;
    apply(E);
}

/* One message of the watch stream. */
static void
watch_message(struct shed_etcd *E, const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL), *res, *ev;
    size_t i;

    if (o == NULL)
        return;
    res = json_object_get(o, "result");
    if (!json_is_object(res)) {
        log_warnx("etcd: watch: %.200s", line);
        E->watch_abort = true;
        goto out;
    }
    set_up(E, true, NULL);
    if (i64(res, "compact_revision") > 0) {
        log_warnx("etcd: watch: revision %" PRIu64 " was compacted (now %" PRId64 "): full reload",
                  E->rev + 1, i64(res, "compact_revision"));
        E->need_reload = true;
        E->watch_abort = true;
        goto out;
    }
    if (json_is_true(json_object_get(res, "canceled"))) {
        E->watch_abort = true;
        goto out;
    }
    json_array_foreach(json_object_get(res, "events"), i, ev)
    {
        json_t *kv = json_object_get(ev, "kv"), *type = json_object_get(ev, "type");
        uint64_t rev = (uint64_t)i64(kv, "mod_revision");
        if (json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0)
            del_kv(E, kv);
        else
            put_kv(E, kv, NULL);
        if (rev > E->rev)
            E->rev = rev;
    }
    atomic_store(&E->revision, E->rev);
    /* Applied once per turn of the thread (watch_poll), not per message: a
     * burst of small transactions costs one merge and one ring build. */
out:
    json_decref(o);
}

static size_t
on_watch(char *ptr, size_t size, size_t n, void *arg)
{
    struct shed_etcd *E = arg;
    size_t add = size * n;
    if (E->watch_abort || E->wlen + add + 1 > WATCH_BUF_MAX)
        return 0;
    if (E->wlen + add + 1 > E->wcap) {
        size_t nc = E->wcap ? E->wcap : 16384;
        while (nc < E->wlen + add + 1)
            nc *= 2;
        char *np = realloc(E->wbuf, nc);
        if (np == NULL)
            return 0;
        E->wbuf = np;
        E->wcap = nc;
    }
    memcpy(E->wbuf + E->wlen, ptr, add);
    E->wlen += add;
    /* The gateway sends one JSON object per line. */
    char *start = E->wbuf, *nl;
    while ((nl = memchr(start, '\n', (size_t)(E->wbuf + E->wlen - start))) != NULL) {
        if (atomic_load(&E->stop))
            return 0; /* stopping: the rest is not for us */
        if (nl > start)
            watch_message(E, start, (size_t)(nl - start));
        start = nl + 1;
        if (E->watch_abort)
            return 0;
    }
    E->wlen -= (size_t)(start - E->wbuf);
    memmove(E->wbuf, start, E->wlen);
    return add;
}

static void
watch_start(struct shed_etcd *E)
{
    char extra[64];
    char *inner;
    snprintf(extra, sizeof(extra), "\"start_revision\":\"%" PRIu64 "\"", E->rev + 1);
    inner = read_body(E, extra);
    if (inner == NULL)
        return;
    free(E->wbody);
    E->wbody = malloc(strlen(inner) + 32);
    if (E->wbody == NULL) {
        free(inner);
        return;
    }
    sprintf(E->wbody, "{\"create_request\":%s}", inner);
    free(inner);

    char url[SHED_URL_MAX + 64];
    snprintf(url, sizeof(url), "%s/v3/watch", E->cfgv.membership.endpoints[E->ep]);
    curl_easy_reset(E->watch);
    curl_easy_setopt(E->watch, CURLOPT_URL, url);
    curl_easy_setopt(E->watch, CURLOPT_POSTFIELDS, E->wbody);
    curl_easy_setopt(E->watch, CURLOPT_HTTPHEADER, E->hdrs);
    curl_easy_setopt(E->watch, CURLOPT_WRITEFUNCTION, on_watch);
    curl_easy_setopt(E->watch, CURLOPT_WRITEDATA, E);
    curl_easy_setopt(E->watch, CURLOPT_CONNECTTIMEOUT_MS, (long)E->cfgv.membership.timeout_ms);
    curl_easy_setopt(E->watch, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(E->watch, CURLOPT_TCP_KEEPALIVE, 1L);
    E->wlen = 0;
    E->watch_abort = false;
    if (curl_multi_add_handle(E->multi, E->watch) == CURLM_OK) {
        E->watching = true;
        log_debug("etcd: watching %s from revision %" PRIu64, E->base, E->rev + 1);
    }
}

static void
watch_stop(struct shed_etcd *E)
{
    if (!E->watching)
        return;
    curl_multi_remove_handle(E->multi, E->watch);
    E->watching = false;
}

static void
watch_poll(struct shed_etcd *E)
{
    int running, left;
    CURLMsg *msg;
    curl_multi_perform(E->multi, &running);
    apply(E); /* what the messages of this turn changed */
    while ((msg = curl_multi_info_read(E->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE || msg->easy_handle != E->watch)
            continue;
        CURLcode cc = msg->data.result;
        watch_stop(E);
        if (atomic_load(&E->stop))
            break; /* we cut it: stopping or reloading */
        if (!E->watch_abort)
            set_up(E, false, cc == CURLE_OK ? "watch closed" : curl_easy_strerror(cc));
        else
            E->retry_at = shed_now_ms() + (E->need_reload ? 0 : RETRY_MS);
        atomic_fetch_add(&E->resumes, 1);
        break;
    }
}

/* Every third of a lease: what etcd holds is heard now (the registry's own
 * lease would otherwise expire the members this shed does not hear). */
static void
refresh(struct shed_etcd *E, uint64_t now)
{
    if (!E->have_view || now < E->refresh_at)
        return;
    E->refresh_at = now + E->lease_ms / 3;
    for (size_t i = 0; i < E->nsinks; i++)
        export_all(E, &E->sinks[i]);
    apply(E);
}

/* ---- writing ---- */

static void
mark_all_put(struct shed_etcd *E)
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
        if (call(E, "/v3/lease/grant", body, &r) < 0)
            return -EIO;
        E->lease_id = i64(r, "ID");
        json_decref(r);
        if (E->lease_id == 0)
            return -EPROTO;
        E->keepalive_at = now + E->ttl_s * 1000 / 3;
        mark_all_put(E); /* keys under a lost lease are gone: write them again */
        E->cellkey_dirty = E->cfgv.aggregator[0] != '\0';
        return 0;
    }
    if (now < E->keepalive_at)
        return 0;
    snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", E->lease_id);
    if (call(E, "/v3/lease/keepalive", body, &r) < 0)
        return -EIO;
    json_t *res = json_object_get(r, "result");
    if (i64(res != NULL ? res : r, "TTL") <= 0) {
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
        char *v = b64dup(o->value, strlen(o->value));
        if (v == NULL)
            return -ENOMEM;
        snprintf(extra, sizeof(extra), "\"value\":\"%s\",\"lease\":\"%" PRId64 "\"", v,
                 E->lease_id);
        free(v);
        char *body = key_body(key, false, extra);
        rc = body != NULL ? call(E, "/v3/kv/put", body, &r) : -ENOMEM;
        free(body);
        json_decref(r);
        r = NULL;
        if (rc < 0 || o->st == W_PUT)
            goto out;
    }
    /* W_DEL, and W_GONE after the "gone" record: watchers saw it first. */
    char *body = key_body(key, false, NULL);
    rc = body != NULL ? call(E, "/v3/kv/deleterange", body, &r) : -ENOMEM;
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
    if (val == NULL || (v = b64dup(val, strlen(val))) == NULL)
        goto out;
    snprintf(key, sizeof(key), "%s" SHED_ETCD_CELLS_DIR "%s/%s", E->cfgv.membership.prefix,
             E->cfgv.cell, E->shed);
    snprintf(extra, sizeof(extra), "\"value\":\"%s\",\"lease\":\"%" PRId64 "\"", v, E->lease_id);
    body = key_body(key, false, extra);
    rc = body != NULL ? call(E, "/v3/kv/put", body, &r) : -ENOMEM;
    json_decref(r);
out:
    free(val);
    free(v);
    free(body);
    return rc;
}

static void
writer(struct shed_etcd *E, uint64_t now)
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

/* ---- hints (a master writes, the home cell's aggregator takes) ---- */

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
        char *body = key_body(dir, true, "\"count_only\":true");
        int rc = body != NULL ? call(E, "/v3/kv/range", body, &r) : -ENOMEM;
        free(body);
        if (rc < 0)
            return rc;
        h->n = (uint64_t)i64(r, "count");
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
    if (call(E, "/v3/lease/grant", body, &r) < 0)
        return -EIO;
    int64_t id = i64(r, "ID");
    json_decref(r);
    if (id == 0)
        return -EPROTO;
    E->hint_lease = id;
    E->hint_lease_at = now + SHED_ETCD_HINT_TTL_S * 1000ull / 10;
    return 0;
}

static void
hint_writer(struct shed_etcd *E, uint64_t now)
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
            char key[SHED_ETCD_KEY_MAX], *v = b64dup(q.value, strlen(q.value)), *body = NULL;
            char *extra = v != NULL ? malloc(strlen(v) + 64) : NULL;
            json_t *r = NULL;
            if (extra != NULL) {
                sprintf(extra, "\"value\":\"%s\",\"lease\":\"%" PRId64 "\"", v, E->hint_lease);
                shed_etcd_hint_key(key, sizeof(key), E->cfgv.membership.prefix, q.cell,
                                   E->hint_seq + 1, E->shed);
                body = key_body(key, false, extra);
            }
            rc = body != NULL ? call(E, "/v3/kv/put", body, &r) : -ENOMEM;
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
    wake(E);
    return 0;
}

/* A request of the hints reader (another thread than the etcd thread's):
 * every endpoint in turn, the current one first. */
static int
hcall(struct shed_etcd *E, const char *path, const char *body, json_t **out)
{
    int rc = -EIO;
    *out = NULL;
    pthread_mutex_lock(&E->hmu);
    size_t n = E->cfgv.membership.nendpoints, ep = atomic_load(&E->ep);
    for (size_t i = 0; i < n && rc == -EIO; i++) {
        struct buf b = {.max = REPLY_MAX};
        CURLcode cc;
        long code = post(E->hreq, E->hdrs, E->cfgv.membership.endpoints[(ep + i) % n], path, body,
                         E->cfgv.membership.timeout_ms, &b, &cc);
        if (cc == CURLE_OK && code == 200 && b.p != NULL &&
            (*out = json_loadb(b.p, b.len, 0, NULL)) != NULL)
            rc = 0;
        else if (cc == CURLE_OK && code < 500)
            rc = -EPROTO;
        free(b.p);
    }
    pthread_mutex_unlock(&E->hmu);
    return rc;
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
    char *body = key_body(dir, true, extra);
    int rc = body != NULL ? hcall(E, "/v3/kv/range", body, &r) : -ENOMEM;
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
        long vn = kv_raw(kv, val, sizeof(val));
        if (kn < 0 || vn < 0)
            continue;
        key[kn] = '\0';
        if (shed_etcd_hint_decode(val, (size_t)vn, &h) < 0) {
            log_debug("etcd: hint %s: not a hint record: ignored", key);
            continue;
        }
        json_array_append_new(arr, json_pack("{s:s,s:I,s:s,s:s,s:s,s:I}", "key", key, "seq",
                                             (json_int_t)i64(kv, "create_revision"), "service",
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
    char *body = key_body(key, false, NULL);
    int rc = body != NULL ? hcall(E, "/v3/kv/deleterange", body, &r) : -ENOMEM;
    free(body);
    if (rc == 0 && i64(r, "deleted") == 0)
        rc = -ENOENT;
    json_decref(r);
    return rc;
}

/* ---- the thread ---- */

/* A master writes nothing most of the time: while etcd is away, one small
 * read every RETRY_MS tells when it is back (a line shed's keepalive does). */
static void
ping(struct shed_etcd *E)
{
    json_t *r = NULL;
    char *body = key_body(E->base, false, "\"keys_only\":true");
    if (body != NULL && call(E, "/v3/kv/range", body, &r) == 0)
        json_decref(r);
    free(body);
}

static void *
run(void *arg)
{
    struct shed_etcd *E = arg;
    while (!atomic_load(&E->stop)) {
        uint64_t now = shed_now_ms();
        bool may = atomic_load(&E->up) || now >= E->retry_at;
        if (may && (!E->have_view || E->need_reload) && !E->watching)
            range(E);
        now = shed_now_ms();
        if (E->mode == MODE_MASTER && E->have_view && !atomic_load(&E->up) && now >= E->retry_at)
            ping(E);
        if (E->have_view && !E->need_reload && !E->watching &&
            (atomic_load(&E->up) || now >= E->retry_at))
            watch_start(E);
        if (E->watching && !atomic_load(&E->up)) /* e.g. a keepalive timed out */
            watch_stop(E);
        if (E->again.nentries > 0) {
            registry_apply(E->reg, &E->again, shed_now_ms(), false, NULL);
            proto_sync_msg_free(&E->again);
            proto_sync_msg_init(&E->again);
        }
        if (E->mode == MODE_CELL) {
            probes(E, shed_now_ms());
            writer(E, shed_now_ms());
        } else {
            hint_writer(E, shed_now_ms());
        }
        refresh(E, shed_now_ms());
        if (E->watching)
            watch_poll(E);
        int numfds;
        curl_multi_poll(E->multi, NULL, 0, POLL_MS, &numfds);
        if (E->watching)
            watch_poll(E);
    }
    return NULL;
}

/* The settings read from <cfg> (start and reload). */
static void
settings(struct shed_etcd *E, const struct shed_config *cfg)
{
    memcpy(&E->cfgv, cfg, sizeof(*cfg));
    if (E->mode == MODE_CELL)
        snprintf(E->base, sizeof(E->base), "%s%s/", cfg->membership.prefix, cfg->cell);
    else
        snprintf(E->base, sizeof(E->base), "%s", cfg->membership.prefix);
    E->lease_ms = cfg->timings.lease_ms;
    E->join = cfg->timings.join_heartbeats;
    uint64_t ttl = cfg->membership.ttl_ms != 0 ? cfg->membership.ttl_ms : cfg->timings.lease_ms;
    E->ttl_s = (ttl + 999) / 1000;
    if (E->ttl_s < 2)
        E->ttl_s = 2; /* etcd's shortest lease */
}

static int
thread_start(struct shed_etcd *E)
{
    atomic_store(&E->stop, false);
    if (pthread_create(&E->thread, NULL, run, E) != 0)
        return -EAGAIN;
    E->running = true;
    return 0;
}

static void
thread_stop(struct shed_etcd *E)
{
    if (!E->running)
        return;
    atomic_store(&E->stop, true);
    wake(E);
    pthread_join(E->thread, NULL);
    E->running = false;
    watch_stop(E);
}

/* Revoke this shed's member lease (its keys go at once). */
static void
revoke_lease(struct shed_etcd *E)
{
    if (E->mode == MODE_CELL && E->lease_id != 0 && atomic_load(&E->up)) {
        char body[96];
        json_t *r = NULL;
        snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", E->lease_id);
        if (call(E, "/v3/lease/revoke", body, &r) == 0)
            log_info("etcd: lease revoked: this shed's keys are gone");
        json_decref(r);
    }
    E->lease_id = 0;
}

static int
create(enum mode mode, struct registry *reg, struct shed_master *master,
       const struct shed_config *cfg, const char *origin, struct shed_etcd **out)
{
    const char *host = strstr(origin, "://");
    struct shed_etcd *E = calloc(1, sizeof(*E));
    int rc;

    *out = NULL;
    if (E == NULL)
        return -ENOMEM;
    E->mode = mode;
    E->reg = reg;
    E->master = master;
    settings(E, cfg);
    snprintf(E->shed, sizeof(E->shed), "%s", host != NULL ? host + 3 : origin);
    /* Every shed of a cell may listen on 0.0.0.0:80: name the host then. */
    if (strncmp(E->shed, "0.0.0.0:", 8) == 0 || strncmp(E->shed, "[::]:", 5) == 0) {
        char name[256] = "";
        const char *port = strrchr(E->shed, ':');
        if (gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0' &&
            strchr(name, '/') == NULL) {
            char tmp[sizeof(E->shed)];
            snprintf(tmp, sizeof(tmp), "%.200s%s", name, port);
            memcpy(E->shed, tmp, sizeof(tmp));
        }
    }
    /* Hint keys of this master sort after those it wrote before a restart. */
    E->hint_seq = clock_real_ns() / 1000u;
    pthread_mutex_init(&E->mu, NULL);
    pthread_mutex_init(&E->hmu, NULL);
    proto_sync_msg_init(&E->again);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    E->multi = curl_multi_init();
    E->req = curl_easy_init();
    E->watch = curl_easy_init();
    E->hreq = curl_easy_init();
    E->ops = calloc(BATCH, sizeof(*E->ops));
    if (mode == MODE_MASTER)
        E->hq = calloc(HINT_QUEUE_MAX, sizeof(*E->hq));
    E->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (E->hdrs != NULL) {
        struct curl_slist *h = curl_slist_append(E->hdrs, "Expect:");
        if (h != NULL)
            E->hdrs = h;
    }
    if (E->multi == NULL || E->req == NULL || E->watch == NULL || E->hreq == NULL ||
        E->ops == NULL || E->hdrs == NULL || (mode == MODE_MASTER && E->hq == NULL) ||
        (mode == MODE_CELL && sink_get(E, cfg->cell, true) == NULL)) {
        shed_etcd_destroy(E);
        return -ENOMEM;
    }
    atomic_store(&E->up, true); /* so that the first failure is logged */
    range(E);                   /* warm: route on what etcd holds before listening */
    if (reg != NULL)
        registry_tick(reg, shed_now_ms());
    if (!E->have_view)
        log_warnx("etcd: no membership from %s yet: starting without it, retrying",
                  cfg->membership.endpoints[0]);
    rc = thread_start(E);
    if (rc < 0) {
        shed_etcd_destroy(E);
        return rc;
    }
    if (mode == MODE_CELL)
        log_info("etcd: membership under %s on %zu endpoint%s, lease ttl %" PRIu64 "s", E->base,
                 cfg->membership.nendpoints, cfg->membership.nendpoints == 1 ? "" : "s", E->ttl_s);
    else
        log_info("etcd: master: every cell under %s on %zu endpoint%s, hints under "
                 "%s" SHED_ETCD_HINTS_DIR,
                 E->base, cfg->membership.nendpoints, cfg->membership.nendpoints == 1 ? "" : "s",
                 E->base);
    *out = E;
    return 0;
}

int
shed_etcd_create(struct registry *reg, const struct shed_config *cfg, const char *origin,
                 struct shed_etcd **out)
{
    return create(MODE_CELL, reg, NULL, cfg, origin, out);
}

int
shed_etcd_create_master(struct shed_master *m, const struct shed_config *cfg, const char *origin,
                        struct shed_etcd **out)
{
    return create(MODE_MASTER, NULL, m, cfg, origin, out);
}

void
shed_etcd_destroy(struct shed_etcd *E)
{
    if (E == NULL)
        return;
    thread_stop(E);
    if (E->req != NULL)
        revoke_lease(E);
    for (size_t b = 0; b < NBUCKETS; b++)
        while (E->buckets[b] != NULL) {
            struct wmember *m = E->buckets[b];
            E->buckets[b] = m->next;
            free(m);
        }
    if (E->hq != NULL) {
        if (E->hq_n > 0)
            log_warnx("etcd: %zu hints not written to etcd at exit", E->hq_n);
        for (size_t i = 0; i < E->hq_n; i++)
            free(E->hq[(E->hq_head + i) % HINT_QUEUE_MAX].value);
        free(E->hq);
    }
    for (size_t i = 0; i < E->nsinks; i++) {
        shed_etcd_view_destroy(E->sinks[i].view);
        proto_sync_msg_free(&E->sinks[i].out);
    }
    curl_easy_cleanup(E->req);
    curl_easy_cleanup(E->watch);
    curl_easy_cleanup(E->hreq);
    curl_multi_cleanup(E->multi);
    curl_slist_free_all(E->hdrs);
    free(E->wbuf);
    free(E->wbody);
    free(E->ops);
    proto_sync_msg_free(&E->again);
    pthread_mutex_destroy(&E->mu);
    pthread_mutex_destroy(&E->hmu);
    free(E);
}

static bool
same_endpoints(const struct shed_membership *a, const struct shed_membership *b)
{
    if (a->nendpoints != b->nendpoints)
        return false;
    for (size_t i = 0; i < a->nendpoints; i++)
        if (strcmp(a->endpoints[i], b->endpoints[i]) != 0)
            return false;
    return true;
}

int
shed_etcd_reconfigure(struct shed_etcd *E, const struct shed_config *cfg)
{
    const struct shed_config *o;
    if (E == NULL)
        return 0;
    o = &E->cfgv;
    if (cfg->membership.store != SHED_STORE_ETCD) {
        log_warnx("etcd: reload: membership store %s refused: the store changes at the next "
                  "restart; still on etcd at %s",
                  cfg->membership.store_name, o->membership.endpoints[0]);
        return -EINVAL;
    }
    bool ends = !same_endpoints(&o->membership, &cfg->membership);
    bool moved = strcmp(o->membership.prefix, cfg->membership.prefix) != 0 ||
                 (E->mode == MODE_CELL && strcmp(o->cell, cfg->cell) != 0);
    bool timing = o->membership.timeout_ms != cfg->membership.timeout_ms ||
                  o->membership.ttl_ms != cfg->membership.ttl_ms ||
                  o->timings.lease_ms != cfg->timings.lease_ms ||
                  o->timings.join_heartbeats != cfg->timings.join_heartbeats;
    bool agg = strcmp(o->aggregator, cfg->aggregator) != 0;
    uint64_t old_ttl = E->ttl_s;
    if (!ends && !moved && !timing && !agg) {
        pthread_mutex_lock(&E->mu);
        E->cfgv.membership.queue_max = cfg->membership.queue_max; /* a bound only */
        pthread_mutex_unlock(&E->mu);
        return 0;
    }
    /* Restart the client: stop the thread, and when the keys move, revoke
     * this shed's lease at the old place (they go there at once). The
     * writer table stays: every member this shed keeps is written again. */
    thread_stop(E);
    if (moved)
        revoke_lease(E);
    pthread_mutex_lock(&E->hmu);
    pthread_mutex_lock(&E->mu);
    settings(E, cfg);
    pthread_mutex_unlock(&E->mu);
    pthread_mutex_unlock(&E->hmu);
    if (E->ttl_s != old_ttl)
        E->lease_id = 0; /* a new lease; the old one runs out unused */
    E->hint_lease = 0;
    E->nhcounts = 0;
    mark_all_put(E);
    E->cellkey_dirty = E->mode == MODE_CELL && E->cfgv.aggregator[0] != '\0';
    E->keepalive_at = 0;  /* other endpoints may be another etcd: check the lease now */
    E->have_view = false; /* range again: members only the old place had go down */
    E->need_reload = false;
    if (moved && E->mode == MODE_CELL)
        snprintf(E->sinks[0].cell, sizeof(E->sinks[0].cell), "%s", cfg->cell);
    atomic_store(&E->ep, 0);
    atomic_store(&E->up, true);
    E->retry_at = 0;
    E->down_since = 0;
    log_info("etcd: reload:%s%s%s%s changed: client restarted on %s (%zu endpoint%s), "
             "keys under %s",
             ends ? " endpoints" : "", moved ? " prefix/cell" : "", timing ? " timings" : "",
             agg ? " aggregator" : "", cfg->membership.endpoints[0], cfg->membership.nendpoints,
             cfg->membership.nendpoints == 1 ? "" : "s", E->base);
    return thread_start(E);
}

size_t
shed_etcd_stats(struct shed_etcd *E, char *buf, size_t len)
{
    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (E == NULL || !E->running)
        return 0;
    pthread_mutex_lock(&E->mu);
    uint64_t dropped = E->dropped, queued = E->ndirty, hq = E->hq_n, hw = E->hints_written,
             hd = E->hints_dropped;
    size_t members = E->nmembers;
    pthread_mutex_unlock(&E->mu);
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
        atomic_load(&E->up) ? 1 : 0, atomic_load(&E->revision), atomic_load(&E->keys), members,
        queued, atomic_load(&E->writes), atomic_load(&E->write_errors), dropped,
        atomic_load(&E->resumes), atomic_load(&E->reloads));
    if (n < 0)
        return 0;
    size_t o = (size_t)n < len ? (size_t)n : len - 1;
    if (E->mode == MODE_MASTER) {
        n = snprintf(buf + o, len - o,
                     "# HELP shed_etcd_hints_queued Hints waiting to be written to etcd.\n"
                     "# TYPE shed_etcd_hints_queued gauge\nshed_etcd_hints_queued %" PRIu64 "\n"
                     "# HELP shed_etcd_hints_written_total Hints this master wrote to etcd.\n"
                     "# TYPE shed_etcd_hints_written_total counter\n"
                     "shed_etcd_hints_written_total %" PRIu64 "\n"
                     "# HELP shed_etcd_hints_dropped_total Hints dropped (their cell's bound in "
                     "etcd, or the queue, was full).\n"
                     "# TYPE shed_etcd_hints_dropped_total counter\n"
                     "shed_etcd_hints_dropped_total %" PRIu64 "\n",
                     hq, hw, hd);
        if (n > 0)
            o += (size_t)n < len - o ? (size_t)n : len - o - 1;
    }
    return o;
}
