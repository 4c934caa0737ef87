/* SPDX-License-Identifier: ISC */
/*
 * shed/sync: the receiver's per-origin sequence bookkeeping and the sender
 * thread that pushes registry deltas to peer line sheds and masters with
 * libcurl. Each round pushes to every target at once (curl multi) with a
 * timeout per transfer: a dead or slow target delays no other target and
 * never touches request handling.
 */
#include "shed/sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "common/clock.h"
#include "common/log.h"

#define ACK_MAX 4096 /* bytes of an ack body we read */

void
shed_sync_origins_init(struct shed_sync_origins *o)
{
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->lock, NULL);
}

void
shed_sync_origins_fini(struct shed_sync_origins *o)
{
    pthread_mutex_destroy(&o->lock);
}

static struct shed_sync_origin *
origin_find(struct shed_sync_origins *o, const char *origin, bool create)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->tab[i].origin, origin) == 0)
            return &o->tab[i];
    if (!create || o->n >= SHED_SYNC_MAX_ORIGINS)
        return NULL;
    struct shed_sync_origin *r = &o->tab[o->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->origin, sizeof(r->origin), "%s", origin);
    return r;
}

bool
shed_sync_origins_check(struct shed_sync_origins *o, const struct proto_sync_msg *msg,
                        struct proto_sync_ack *ack)
{
    struct shed_sync_origin *r;
    bool ok;

    pthread_mutex_lock(&o->lock);
    r = origin_find(o, msg->origin, true);
    if (r != NULL && r->epoch != msg->epoch) {
        /* The sender restarted: nothing we applied from it counts any more. */
        r->epoch = msg->epoch;
        r->seq = 0;
    }
    if (msg->kind == PROTO_SYNC_FULL || msg->since == 0)
        ok = true;
    else
        ok = r != NULL && msg->since <= r->seq;
    ack->need_full = !ok;
    ack->seq = r != NULL ? r->seq : 0;
    pthread_mutex_unlock(&o->lock);
    return ok;
}

void
shed_sync_origins_done(struct shed_sync_origins *o, const struct proto_sync_msg *msg,
                       struct proto_sync_ack *ack)
{
    struct shed_sync_origin *r;

    pthread_mutex_lock(&o->lock);
    r = origin_find(o, msg->origin, false);
    if (r != NULL && r->epoch == msg->epoch) {
        if (msg->kind == PROTO_SYNC_FULL || msg->seq > r->seq)
            r->seq = msg->seq;
        ack->seq = r->seq;
    } else {
        ack->seq = msg->seq;
    }
    ack->need_full = false;
    pthread_mutex_unlock(&o->lock);
}

/* ---- sender ---- */

struct target {
    char url[PROTO_SYNC_URL_MAX + 64]; /* base URL + path */
    char base[PROTO_SYNC_URL_MAX + 1]; /* base URL, no trailing '/' */
    bool master;
    bool learned;   /* added because it pushed to us, not configured */
    bool need_full; /* new, asked for one, or last push failed mid-way */
    uint64_t acked; /* sender sequence the target has applied */
    /* For the status page (shed_sync_targets()). */
    uint64_t last_ok_ms; /* monotonic, last acknowledged push; 0: none yet */
    uint32_t failures;   /* failed pushes since the last acknowledged one */
    char error[96];      /* why the last push failed */
};

struct shed_sync {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t acked; /* wakes pick_master waiters */
    bool stop, kicked;
    char origin[PROTO_SYNC_URL_MAX + 1];
    char cell[PROTO_SYNC_NAME_MAX + 1];
    char aggregator[PROTO_SYNC_URL_MAX + 1];
    char auth[300];
    uint64_t epoch;
    uint64_t interval_ms, timeout_ms;
    uint32_t lease_ms;
    shed_sync_export_fn *export_fn;
    void (*turn_fn)(void *arg);
    void *turn_arg;
    void *arg;
    struct target targets[SHED_SYNC_MAX_TARGETS];
    size_t ntargets, nmasters;
    size_t master_idx[SHED_SYNC_MAX_TARGETS]; /* target index of master i */
    uint64_t tgen;                            /* bumped when the target table is rebuilt (reload) */
    uint64_t n_ok, n_failed, n_full;
    CURLM *multi; /* owned by the thread; curl_multi_wakeup() from others */
};

struct body {
    char buf[ACK_MAX];
    size_t len;
    bool over;
};

static size_t
on_body(char *p, size_t sz, size_t nm, void *arg)
{
    struct body *b = arg;
    size_t n = sz * nm;

    if (b->len + n > sizeof(b->buf) - 1) {
        b->over = true;
        return 0; /* abort: an ack is tiny */
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    return n;
}

/* One push in flight. */
struct push {
    struct target *t;
    CURL *h; /* kept per target across rounds (connection reuse) */
    struct curl_slist *hdrs;
    char *json;
    size_t len;
    bool full;
    bool active;
    uint64_t tgen; /* s->tgen when prepared: a stale result is dropped */
    struct body b;
};

/* Export and encode what <p->t> needs and set up the transfer. */
static bool
prepare(struct shed_sync *s, struct push *p)
{
    struct target *t = p->t;
    struct proto_sync_msg m;
    uint64_t since;
    int64_t seq;
    int rc;

    char url[sizeof(t->url)], auth[sizeof(s->auth)];
    bool master;
    uint64_t timeout_ms;

    proto_sync_msg_init(&m);
    /* Everything a reload may change is read under the lock. */
    pthread_mutex_lock(&s->lock);
    since = t->need_full ? 0 : t->acked;
    master = t->master;
    memcpy(url, t->url, sizeof(url));
    memcpy(auth, s->auth, sizeof(auth));
    snprintf(m.cell, sizeof(m.cell), "%s", s->cell);
    snprintf(m.aggregator, sizeof(m.aggregator), "%s", s->aggregator);
    m.lease_ms = s->lease_ms;
    timeout_ms = s->timeout_ms;
    p->tgen = s->tgen;
    pthread_mutex_unlock(&s->lock);

    m.kind = since == 0 ? PROTO_SYNC_FULL : PROTO_SYNC_DELTA;
    snprintf(m.origin, sizeof(m.origin), "%s", s->origin);
    m.epoch = s->epoch;
    m.since = since;
    /* The callback may turn a delta into a full snapshot (target too far
     * behind the tombstones it still keeps). Peers get only what this shed
     * heard itself, masters everything: no change ever echoes between peers. */
    seq = s->export_fn(s->arg, since, !master, &m);
    if (seq < 0) {
        log_warnx("sync: export: %s", strerror((int)-seq));
        proto_sync_msg_free(&m);
        return false;
    }
    m.seq = (uint64_t)seq;
    if (m.kind == PROTO_SYNC_FULL)
        m.since = 0;
    p->full = m.kind == PROTO_SYNC_FULL;
    rc = proto_sync_encode(&m, &p->json, &p->len);
    proto_sync_msg_free(&m);
    if (rc < 0) {
        log_warnx("sync: encode: %s", proto_sync_strerror(rc));
        return false;
    }
    if (p->h == NULL && (p->h = curl_easy_init()) == NULL) {
        free(p->json);
        p->json = NULL;
        return false;
    }
    p->b.len = 0;
    p->b.over = false;
    p->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    p->hdrs = curl_slist_append(p->hdrs, auth);
    p->hdrs = curl_slist_append(p->hdrs, "Expect:");
    curl_easy_reset(p->h);
    curl_easy_setopt(p->h, CURLOPT_URL, url);
    curl_easy_setopt(p->h, CURLOPT_POST, 1L);
    curl_easy_setopt(p->h, CURLOPT_POSTFIELDS, p->json);
    curl_easy_setopt(p->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->len);
    curl_easy_setopt(p->h, CURLOPT_HTTPHEADER, p->hdrs);
    curl_easy_setopt(p->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(p->h, CURLOPT_WRITEDATA, &p->b);
    curl_easy_setopt(p->h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(p->h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(p->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(p->h, CURLOPT_PRIVATE, p);
    p->active = true;
    return true;
}

/* A transfer ended: read the ack and move the target's sequence on. */
static void
finish(struct shed_sync *s, struct push *p, CURLcode cc)
{
    struct proto_sync_ack ack;
    long code = 0;
    int rc = -EIO;
    char *url = NULL;

    char why[96] = "";

    curl_easy_getinfo(p->h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(p->h, CURLINFO_EFFECTIVE_URL, &url);
    if (url == NULL)
        url = "?";
    if (cc != CURLE_OK) {
        log_debug("sync: %s: %s", url, curl_easy_strerror(cc));
        snprintf(why, sizeof(why), "%s", curl_easy_strerror(cc));
    } else if (code != 200) {
        log_warnx("sync: %s: HTTP %ld", url, code);
        snprintf(why, sizeof(why), "HTTP %ld", code);
    } else if ((rc = proto_sync_ack_decode(p->b.buf, p->b.len, &ack)) < 0) {
        log_warnx("sync: %s: bad ack: %s", url, proto_sync_strerror(rc));
        snprintf(why, sizeof(why), "bad ack: %s", proto_sync_strerror(rc));
    }
    pthread_mutex_lock(&s->lock);
    if (p->tgen != s->tgen) {
        /* The target table was rebuilt while this push was in flight:
         * <p->t> may be another target now. Drop the result; the next
         * round pushes again from what the target acknowledged. */
        s->kicked = true;
    } else if (rc < 0) {
        s->n_failed++;
        p->t->failures++;
        memcpy(p->t->error, why, sizeof(p->t->error));
    } else if (ack.need_full) {
        p->t->need_full = true;
        s->kicked = true; /* send the full snapshot right away */
    } else {
        s->n_ok++;
        if (p->full)
            s->n_full++;
        p->t->need_full = false;
        if (ack.seq > p->t->acked || p->full)
            p->t->acked = ack.seq;
        p->t->last_ok_ms = clock_mono_ms();
        p->t->failures = 0;
        p->t->error[0] = '\0';
        pthread_cond_broadcast(&s->acked);
    }
    pthread_mutex_unlock(&s->lock);
}

/* A transfer is over: release what it held. */
static void
release(CURLM *multi, struct push *p)
{
    curl_multi_remove_handle(multi, p->h);
    curl_slist_free_all(p->hdrs);
    p->hdrs = NULL;
    free(p->json);
    p->json = NULL;
    p->active = false;
}

/* The sync loop. Every interval (or kick) each target that has no push in
 * flight gets one; transfers run concurrently in one curl multi, each bounded
 * by the timeout, so a dead or slow target only delays its own next push. */
static void *
run(void *arg)
{
    struct shed_sync *s = arg;
    struct push *ps = calloc(SHED_SYNC_MAX_TARGETS, sizeof(*ps));
    uint64_t next = 0;

    if (ps == NULL) {
        log_warnx("sync: out of memory, no replication");
        return NULL;
    }
    for (;;) {
        uint64_t ms = clock_mono_ms();
        int running = 0, left;
        CURLMsg *msg;

        pthread_mutex_lock(&s->lock);
        bool stop = s->stop, go = s->kicked || ms >= next;
        size_t nt = s->ntargets; /* shed_sync_add_peer() may append */
        uint64_t interval = s->interval_ms;
        s->kicked = false;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        if (go) {
            next = ms + interval;
            for (size_t i = 0; i < nt; i++) {
                if (ps[i].active)
                    continue; /* still in flight: that target waits, nobody else */
                ps[i].t = &s->targets[i];
                if (prepare(s, &ps[i]))
                    curl_multi_add_handle(s->multi, ps[i].h);
            }
        }
        curl_multi_perform(s->multi, &running);
        while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
            char *priv = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            if (priv == NULL)
                continue;
            struct push *p = (struct push *)(void *)priv;
            finish(s, p, msg->data.result);
            release(s->multi, p);
        }
        if (s->turn_fn != NULL)
            s->turn_fn(s->turn_arg);
        uint64_t wait = next > ms ? next - ms : 0;
        curl_multi_poll(s->multi, NULL, 0, (int)(wait < 50 ? wait : 50), NULL);
    }
    for (size_t i = 0; i < SHED_SYNC_MAX_TARGETS; i++) {
        if (ps[i].active)
            release(s->multi, &ps[i]);
        curl_easy_cleanup(ps[i].h);
    }
    free(ps);
    return NULL;
}

static int
add_target(struct shed_sync *s, const char *base, bool master)
{
    struct target *t;
    size_t n = strlen(base);

    if (s->ntargets >= SHED_SYNC_MAX_TARGETS || n > PROTO_SYNC_URL_MAX)
        return -ENOSPC;
    while (n > 0 && base[n - 1] == '/')
        n--;
    t = &s->targets[s->ntargets];
    memset(t, 0, sizeof(*t));
    snprintf(t->url, sizeof(t->url), "%.*s%s", (int)n, base,
             master ? SHED_SYNC_MASTER_PATH : SHED_SYNC_PATH);
    snprintf(t->base, sizeof(t->base), "%.*s", (int)n, base);
    t->master = master;
    t->need_full = true;
    if (master)
        s->master_idx[s->nmasters++] = s->ntargets;
    s->ntargets++;
    return 0;
}

static bool
same_base(const char *target, const char *base)
{
    size_t n = strlen(base);

    while (n > 0 && base[n - 1] == '/')
        n--;
    return strncmp(target, base, n) == 0 && strcmp(target + n, SHED_SYNC_PATH) == 0;
}

int
shed_sync_add_peer(struct shed_sync *s, const char *base)
{
    int rc = 0;

    size_t n = strlen(base), on = strlen(s != NULL ? s->origin : "");

    while (n > 0 && base[n - 1] == '/')
        n--;
    if (s == NULL || n == 0 || (n == on && strncmp(s->origin, base, n) == 0))
        return 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->ntargets; i++)
        if (!s->targets[i].master && same_base(s->targets[i].url, base))
            goto out;
    rc = add_target(s, base, false);
    if (rc == 0) {
        s->targets[s->ntargets - 1].learned = true;
        log_info("sync: %s pushed to us: added as a peer", base);
        s->kicked = true;
        curl_multi_wakeup(s->multi);
    }
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int
shed_sync_start(const struct shed_sync_config *cfg, struct shed_sync **out)
{
    struct shed_sync *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->acked, NULL);
    snprintf(s->origin, sizeof(s->origin), "%s", cfg->origin ? cfg->origin : "");
    snprintf(s->cell, sizeof(s->cell), "%s", cfg->cell ? cfg->cell : "");
    snprintf(s->aggregator, sizeof(s->aggregator), "%s", cfg->aggregator ? cfg->aggregator : "");
    snprintf(s->auth, sizeof(s->auth), "Authorization: Bearer %s",
             cfg->credential ? cfg->credential : "");
    s->epoch = clock_real_ns() & INT64_MAX;
    s->interval_ms = cfg->interval_ms ? cfg->interval_ms : 1000;
    s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 1000;
    s->lease_ms = cfg->lease_ms;
    s->export_fn = cfg->export_fn;
    s->arg = cfg->arg;
    s->turn_fn = cfg->turn_fn;
    s->turn_arg = cfg->turn_arg;
    for (size_t i = 0; i < cfg->nmasters; i++)
        if ((rc = add_target(s, cfg->masters[i], true)) < 0)
            goto fail;
    for (size_t i = 0; i < cfg->npeers; i++)
        if ((rc = add_target(s, cfg->peers[i], false)) < 0)
            goto fail;
    s->multi = curl_multi_init();
    if (s->multi == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    s->kicked = true; /* first push at once */
    if ((rc = pthread_create(&s->thread, NULL, run, s)) != 0) {
        rc = -rc;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    curl_multi_cleanup(s->multi);
    pthread_cond_destroy(&s->acked);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return rc;
}

/* Index of the target with <base> and kind <master>, or -1. */
static int
find_target(const struct target *tab, size_t n, const char *base, bool master)
{
    size_t bl = strlen(base);

    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    for (size_t i = 0; i < n; i++)
        if (tab[i].master == master && strlen(tab[i].base) == bl &&
            strncmp(tab[i].base, base, bl) == 0)
            return (int)i;
    return -1;
}

int
shed_sync_reconfigure(struct shed_sync *s, const struct shed_sync_config *cfg)
{
    struct target *old;
    size_t nold;
    int rc = 0;

    if (s == NULL)
        return 0;
    old = malloc(sizeof(s->targets));
    if (old == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    memcpy(old, s->targets, sizeof(s->targets));
    nold = s->ntargets;
    s->ntargets = 0;
    s->nmasters = 0;
    /* Configured masters and peers, then peers that found us themselves:
     * a target that stays keeps what it acknowledged. */
    for (size_t k = 0; k < cfg->nmasters + cfg->npeers + nold; k++) {
        const char *base;
        bool master;
        if (k < cfg->nmasters) {
            base = cfg->masters[k];
            master = true;
        } else if (k < cfg->nmasters + cfg->npeers) {
            base = cfg->peers[k - cfg->nmasters];
            master = false;
        } else {
            const struct target *o = &old[k - cfg->nmasters - cfg->npeers];
            if (!o->learned)
                continue;
            base = o->base;
            master = false;
        }
        if (find_target(s->targets, s->ntargets, base, master) >= 0)
            continue; /* listed twice */
        int prev = find_target(old, nold, base, master);
        size_t at = s->ntargets;
        if ((rc = add_target(s, base, master)) < 0)
            break;
        if (prev >= 0) {
            s->targets[at].need_full = old[prev].need_full;
            s->targets[at].acked = old[prev].acked;
            s->targets[at].last_ok_ms = old[prev].last_ok_ms;
            s->targets[at].failures = old[prev].failures;
            memcpy(s->targets[at].error, old[prev].error, sizeof(old[prev].error));
            s->targets[at].learned = old[prev].learned && k >= cfg->nmasters + cfg->npeers;
        }
    }
    snprintf(s->cell, sizeof(s->cell), "%s", cfg->cell ? cfg->cell : "");
    snprintf(s->aggregator, sizeof(s->aggregator), "%s", cfg->aggregator ? cfg->aggregator : "");
    snprintf(s->auth, sizeof(s->auth), "Authorization: Bearer %s",
             cfg->credential ? cfg->credential : "");
    s->interval_ms = cfg->interval_ms ? cfg->interval_ms : 1000;
    s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 1000;
    s->lease_ms = cfg->lease_ms;
    s->tgen++;
    s->kicked = true; /* new targets get their snapshot at once */
    pthread_cond_broadcast(&s->acked);
    pthread_mutex_unlock(&s->lock);
    curl_multi_wakeup(s->multi);
    free(old);
    return rc;
}

void
shed_sync_kick(struct shed_sync *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->kicked = true;
    pthread_mutex_unlock(&s->lock);
    curl_multi_wakeup(s->multi);
}

bool
shed_sync_master_acked(struct shed_sync *s, size_t i, uint64_t seq)
{
    bool r;

    if (s == NULL)
        return false;
    pthread_mutex_lock(&s->lock);
    r = i < s->nmasters && !s->targets[s->master_idx[i]].need_full &&
        s->targets[s->master_idx[i]].acked >= seq;
    pthread_mutex_unlock(&s->lock);
    return r;
}

int
shed_sync_pick_master(struct shed_sync *s, uint64_t seq, uint64_t wait_ms, uint64_t rnd, char *url,
                      size_t urllen)
{
    struct timespec ts;
    size_t ok[SHED_SYNC_MAX_TARGETS], n;
    bool kicked = false;
    int rc;

    if (s == NULL)
        return -ENOENT;
    clock_deadline(CLOCK_REALTIME, wait_ms, &ts);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->nmasters == 0) {
            rc = -ENOENT;
            break;
        }
        n = 0;
        for (size_t i = 0; i < s->nmasters; i++) {
            const struct target *t = &s->targets[s->master_idx[i]];
            if (!t->need_full && t->acked >= seq)
                ok[n++] = i;
        }
        if (n > 0) {
            rc = (int)ok[rnd % n];
            if (url != NULL)
                snprintf(url, urllen, "%s", s->targets[s->master_idx[rc]].base);
            break;
        }
        if (!kicked) {
            s->kicked = true;
            curl_multi_wakeup(s->multi);
            kicked = true;
        }
        if (pthread_cond_timedwait(&s->acked, &s->lock, &ts) == ETIMEDOUT) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void
shed_sync_counters(struct shed_sync *s, uint64_t *ok, uint64_t *failed, uint64_t *full)
{
    pthread_mutex_lock(&s->lock);
    *ok = s->n_ok;
    *failed = s->n_failed;
    *full = s->n_full;
    pthread_mutex_unlock(&s->lock);
}

size_t
shed_sync_targets(struct shed_sync *s, struct shed_sync_target_info *out, size_t max)
{
    size_t n;

    if (s == NULL)
        return 0;
    pthread_mutex_lock(&s->lock);
    n = s->ntargets;
    for (size_t i = 0; i < n && i < max; i++) {
        const struct target *t = &s->targets[i];
        struct shed_sync_target_info *o = &out[i];

        memcpy(o->base, t->base, sizeof(o->base));
        o->master = t->master;
        o->learned = t->learned;
        o->need_full = t->need_full;
        o->acked = t->acked;
        o->last_ok_ms = t->last_ok_ms;
        o->failures = t->failures;
        memcpy(o->error, t->error, sizeof(o->error));
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void
shed_sync_stop(struct shed_sync *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_mutex_unlock(&s->lock);
    curl_multi_wakeup(s->multi);
    pthread_join(s->thread, NULL);
    curl_multi_cleanup(s->multi);
    pthread_cond_destroy(&s->acked);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
