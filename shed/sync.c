/* SPDX-License-Identifier: ISC */
/*
 * shed/sync: the receiver's per-origin sequence bookkeeping and the sender
 * thread that pushes registry deltas to peer line sheds and masters with
 * libcurl. Pushes run one after another in the sync thread with short
 * timeouts: a dead or slow target costs the sync thread at most one timeout
 * per round and never touches request handling.
 */
#include "shed/sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

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
    bool master;
    bool need_full; /* new, asked for one, or last push failed mid-way */
    uint64_t acked; /* sender sequence the target has applied */
};

struct shed_sync {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;  /* wakes the thread (kick, stop) */
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
    void *arg;
    struct target targets[SHED_SYNC_MAX_TARGETS];
    size_t ntargets, nmasters;
    size_t master_idx[SHED_SYNC_MAX_TARGETS]; /* target index of master i */
    uint64_t n_ok, n_failed, n_full;
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

/* POST <json> to <url>; 0 and *ack on a 200 with a valid ack. */
static int
post(struct shed_sync *s, CURL *h, const char *url, const char *json, size_t len,
     struct proto_sync_ack *ack)
{
    struct curl_slist *hdrs = NULL;
    struct body b = {.len = 0};
    long code = 0;
    CURLcode cc;
    int rc;

    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, s->auth);
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)s->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
        log_debug("sync: %s: %s", url, curl_easy_strerror(cc));
        return -EIO;
    }
    if (code != 200) {
        log_warnx("sync: %s: HTTP %ld", url, code);
        return -EPROTO;
    }
    rc = proto_sync_ack_decode(b.buf, b.len, ack);
    if (rc < 0)
        log_warnx("sync: %s: bad ack: %s", url, proto_sync_strerror(rc));
    return rc;
}

static void
push_one(struct shed_sync *s, CURL *h, struct target *t)
{
    struct proto_sync_msg m;
    struct proto_sync_ack ack;
    char *json = NULL;
    size_t len = 0;
    uint64_t since;
    int64_t seq;
    int rc;

    pthread_mutex_lock(&s->lock);
    since = t->need_full ? 0 : t->acked;
    pthread_mutex_unlock(&s->lock);

    proto_sync_msg_init(&m);
    m.kind = since == 0 ? PROTO_SYNC_FULL : PROTO_SYNC_DELTA;
    snprintf(m.cell, sizeof(m.cell), "%s", s->cell);
    snprintf(m.origin, sizeof(m.origin), "%s", s->origin);
    snprintf(m.aggregator, sizeof(m.aggregator), "%s", s->aggregator);
    m.epoch = s->epoch;
    m.since = since;
    m.lease_ms = s->lease_ms;
    /* The callback may turn a delta into a full snapshot (target too far
     * behind the tombstones it still keeps). Peers get only what this shed
     * heard itself, masters everything: no change ever echoes between peers. */
    seq = s->export_fn(s->arg, since, !t->master, &m);
    if (seq < 0) {
        log_warnx("sync: export: %s", strerror((int)-seq));
        goto out;
    }
    m.seq = (uint64_t)seq;
    if (m.kind == PROTO_SYNC_FULL)
        m.since = 0;
    rc = proto_sync_encode(&m, &json, &len);
    if (rc < 0) {
        log_warnx("sync: encode: %s", proto_sync_strerror(rc));
        goto out;
    }
    rc = post(s, h, t->url, json, len, &ack);
    pthread_mutex_lock(&s->lock);
    if (rc < 0) {
        s->n_failed++;
    } else if (ack.need_full) {
        t->need_full = true;
        s->kicked = true; /* send the full snapshot right away */
    } else {
        s->n_ok++;
        if (m.kind == PROTO_SYNC_FULL)
            s->n_full++;
        t->need_full = false;
        if (ack.seq > t->acked || m.kind == PROTO_SYNC_FULL)
            t->acked = ack.seq;
        pthread_cond_broadcast(&s->acked);
    }
    pthread_mutex_unlock(&s->lock);
out:
    free(json);
    proto_sync_msg_free(&m);
}

static void
deadline_after(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *
run(void *arg)
{
    struct shed_sync *s = arg;
    CURL *h = curl_easy_init();

    if (h == NULL) {
        log_warnx("sync: curl_easy_init failed, no replication");
        return NULL;
    }
    for (;;) {
        struct timespec ts;

        pthread_mutex_lock(&s->lock);
        deadline_after(&ts, s->interval_ms);
        while (!s->stop && !s->kicked)
            if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
                break;
        s->kicked = false;
        bool stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        pthread_mutex_lock(&s->lock);
        size_t nt = s->ntargets; /* shed_sync_add_peer() may append */
        pthread_mutex_unlock(&s->lock);
        /* Masters first: the escalation path waits for their acks. */
        for (size_t i = 0; i < nt; i++)
            if (s->targets[i].master)
                push_one(s, h, &s->targets[i]);
        for (size_t i = 0; i < nt; i++)
            if (!s->targets[i].master)
                push_one(s, h, &s->targets[i]);
    }
    curl_easy_cleanup(h);
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
    snprintf(t->url, sizeof(t->url), "%.*s%s", (int)n, base,
             master ? SHED_SYNC_MASTER_PATH : SHED_SYNC_PATH);
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
        log_info("sync: %s pushed to us: added as a peer", base);
        s->kicked = true;
        pthread_cond_signal(&s->cond);
    }
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int
shed_sync_start(const struct shed_sync_config *cfg, struct shed_sync **out)
{
    struct shed_sync *s = calloc(1, sizeof(*s));
    struct timespec ts;
    int rc;

    if (s == NULL)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_cond_init(&s->acked, NULL);
    snprintf(s->origin, sizeof(s->origin), "%s", cfg->origin ? cfg->origin : "");
    snprintf(s->cell, sizeof(s->cell), "%s", cfg->cell ? cfg->cell : "");
    snprintf(s->aggregator, sizeof(s->aggregator), "%s", cfg->aggregator ? cfg->aggregator : "");
    snprintf(s->auth, sizeof(s->auth), "Authorization: Bearer %s",
             cfg->credential ? cfg->credential : "");
    clock_gettime(CLOCK_REALTIME, &ts);
    s->epoch = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) & INT64_MAX;
    s->interval_ms = cfg->interval_ms ? cfg->interval_ms : 1000;
    s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 1000;
    s->lease_ms = cfg->lease_ms;
    s->export_fn = cfg->export_fn;
    s->arg = cfg->arg;
    for (size_t i = 0; i < cfg->nmasters; i++)
        if ((rc = add_target(s, cfg->masters[i], true)) < 0)
            goto fail;
    for (size_t i = 0; i < cfg->npeers; i++)
        if ((rc = add_target(s, cfg->peers[i], false)) < 0)
            goto fail;
    s->kicked = true; /* first push at once */
    if ((rc = pthread_create(&s->thread, NULL, run, s)) != 0) {
        rc = -rc;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    pthread_cond_destroy(&s->acked);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return rc;
}

void
shed_sync_kick(struct shed_sync *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->kicked = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

bool
shed_sync_master_acked(struct shed_sync *s, size_t i, uint64_t seq)
{
    bool r;

    if (s == NULL || i >= s->nmasters)
        return false;
    pthread_mutex_lock(&s->lock);
    r = !s->targets[s->master_idx[i]].need_full && s->targets[s->master_idx[i]].acked >= seq;
    pthread_mutex_unlock(&s->lock);
    return r;
}

int
shed_sync_pick_master(struct shed_sync *s, uint64_t seq, uint64_t wait_ms, uint64_t rnd)
{
    struct timespec ts;
    size_t ok[SHED_SYNC_MAX_TARGETS], n;
    bool kicked = false;
    int rc;

    if (s == NULL || s->nmasters == 0)
        return -ENOENT;
    deadline_after(&ts, wait_ms);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        n = 0;
        for (size_t i = 0; i < s->nmasters; i++) {
            const struct target *t = &s->targets[s->master_idx[i]];
            if (!t->need_full && t->acked >= seq)
                ok[n++] = i;
        }
        if (n > 0) {
            rc = (int)ok[rnd % n];
            break;
        }
        if (!kicked) {
            s->kicked = true;
            pthread_cond_signal(&s->cond);
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

void
shed_sync_stop(struct shed_sync *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->acked);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
