/* SPDX-License-Identifier: ISC */
/*
 * common/announce: one background thread, one libcurl easy handle per shed
 * (so each keeps its keep-alive connection), a schedule per shed: the next
 * heartbeat goes out after the interval that shed asked for; a failure backs
 * off exponentially (250 ms .. 5 s, jittered). announce_stop() deregisters
 * from every shed that accepted us, with a short timeout.
 */
#include "common/announce.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/rng.h"
#include "proto/heartbeat.h"

#define BACKOFF_MIN_MS    250
#define BACKOFF_MAX_MS    5000
#define REQUEST_TIMEOUT_S 2
#define REPLY_MAX         1024
#define URL_MAX           (PROTO_HB_URL_MAX + PROTO_HB_SERVICE_MAX + PROTO_HB_ID_MAX + 64)

struct target {
    char base[PROTO_HB_URL_MAX + 1];
    char url[URL_MAX]; /* base + /_shed/v1/members/<service>/<id> */
    CURL *easy;
    uint64_t due;     /* ms, monotonic */
    uint64_t backoff; /* ms, 0 after a success */
    bool registered;  /* last heartbeat accepted */
    bool accepted;    /* accepted at least once since the start */
    long last_status; /* to log changes only */
};

struct announce {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    _Atomic int state;
    struct proto_heartbeat hb;
    char auth[PROTO_HB_URL_MAX + 32];
    struct target targets[ANNOUNCE_MAX_TARGETS];
    size_t ntargets;
    uint64_t rng;
    /* The first refusal (a 4xx) by a shed that never accepted us: a
     * setting to fix, not a shed to wait for (announce_refused()). */
    bool refused;
    char refusal[300];
};

struct reply {
    char buf[REPLY_MAX];
    size_t len;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t
on_body(char *p, size_t size, size_t n, void *cls)
{
    struct reply *r = cls;
    size_t len = size * n;
    size_t room = sizeof(r->buf) - 1 - r->len;
    memcpy(r->buf + r->len, p, len < room ? len : room);
    r->len += len < room ? len : room;
    return len;
}

/* One request; returns the HTTP status or -1 on a transport error. */
static long
request(struct announce *a, struct target *t, const char *method, const char *url, const char *body,
        long timeout_s, struct reply *r)
{
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, a->auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    CURL *e = t->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, timeout_s);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    r->len = 0;
    CURLcode rc = curl_easy_perform(e);
    curl_slist_free_all(h);
    r->buf[r->len] = '\0';
    if (rc != CURLE_OK)
        return -1;
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static void
beat(struct announce *a, struct target *t, uint64_t now)
{
    int st = atomic_load(&a->state);
    if (st == ANNOUNCE_DOWN) {
        /* Stay silent: the lease runs out and the shed marks us down
         * without evicting (eviction would churn the ring). */
        t->due = now + 200;
        return;
    }
    struct proto_heartbeat hb = a->hb;
    hb.state = st == ANNOUNCE_DRAINING ? PROTO_HB_DRAINING : PROTO_HB_UP;
    char body[PROTO_HB_BODY_MAX];
    if (proto_heartbeat_encode(&hb, body, sizeof(body)) < 0) {
        t->due = now + BACKOFF_MAX_MS;
        return;
    }
    struct reply r;
    long status = request(a, t, "PUT", t->url, body, REQUEST_TIMEOUT_S, &r);
    struct proto_heartbeat_reply rep;
    if (status == 200 && proto_heartbeat_reply_decode(r.buf, r.len, &rep) == 0) {
        if (!t->registered)
            log_info("announce: %s accepted %s/%s (interval %" PRIu64 "ms)", t->base, hb.service,
                     hb.id, rep.interval_ms);
        t->registered = true;
        t->accepted = true;
        t->backoff = 0;
        t->last_status = 200;
        uint64_t iv = rep.interval_ms;
        if (iv > 600000)
            iv = 600000;
        t->due = clock_mono_ms() + iv;
        return;
    }
    if (status != t->last_status) {
        if (status < 0)
            log_warnx("announce: %s unreachable, backing off", t->base);
        else
            log_warnx("announce: %s answered %ld: %.100s", t->base, status, r.buf);
    }
    if (status >= 400 && status < 500 && !t->accepted) {
        size_t n = strcspn(r.buf, "\r\n");
        pthread_mutex_lock(&a->mu);
        if (!a->refused) {
            a->refused = true;
            snprintf(a->refusal, sizeof(a->refusal), "%s refused the heartbeat: %ld %.*s", t->base,
                     status, (int)(n > 200 ? 200 : n), r.buf);
        }
        pthread_mutex_unlock(&a->mu);
    }
    t->last_status = status;
    t->registered = false;
    t->backoff = t->backoff == 0 ? BACKOFF_MIN_MS : t->backoff * 2;
    if (t->backoff > BACKOFF_MAX_MS)
        t->backoff = BACKOFF_MAX_MS;
    t->due = clock_mono_ms() + t->backoff / 2 + rng_next(&a->rng) % (t->backoff / 2 + 1);
}

static void *
run(void *arg)
{
    struct announce *a = arg;
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        uint64_t now = clock_mono_ms();
        uint64_t next = UINT64_MAX;
        for (size_t i = 0; i < a->ntargets; i++) {
            struct target *t = &a->targets[i];
            if (t->due <= now) {
                pthread_mutex_unlock(&a->mu);
                beat(a, t, now);
                pthread_mutex_lock(&a->mu);
                if (a->stop)
                    break;
            }
            if (t->due < next)
                next = t->due;
        }
        if (a->stop)
            break;
        now = clock_mono_ms();
        if (next > now) {
            struct timespec ts;
            clock_deadline(CLOCK_MONOTONIC, next - now, &ts);
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void
destroy(struct announce *a)
{
    for (size_t i = 0; i < a->ntargets; i++)
        if (a->targets[i].easy != NULL)
            curl_easy_cleanup(a->targets[i].easy);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int
announce_start(const struct announce_config *cfg, struct announce **out)
{
    if (cfg->ntargets == 0 || cfg->ntargets > ANNOUNCE_MAX_TARGETS || cfg->service == NULL ||
        cfg->id == NULL || cfg->url == NULL || cfg->credential == NULL)
        return -EINVAL;
    size_t slen = strlen(cfg->service), ilen = strlen(cfg->id);
    const char *zone = cfg->zone != NULL ? cfg->zone : "";
    if (!proto_hb_service_ok(cfg->service, slen) || !proto_hb_id_ok(cfg->id, ilen) ||
        !proto_hb_zone_ok(zone, strlen(zone)) || proto_hb_url_host(cfg->url, NULL) < 0 ||
        cfg->weight < 1 || cfg->weight > PROTO_HB_WEIGHT_MAX ||
        strlen(cfg->credential) > PROTO_HB_URL_MAX)
        return -EINVAL;
    pthread_once(&curl_once, curl_init_once);
    struct announce *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    a->rng = ((uint64_t)rt.tv_nsec << 17) ^ (uint64_t)rt.tv_sec ^ (uint64_t)(uintptr_t)a;
    a->rng |= 1;
    snprintf(a->hb.service, sizeof(a->hb.service), "%s", cfg->service);
    snprintf(a->hb.id, sizeof(a->hb.id), "%s", cfg->id);
    snprintf(a->hb.url, sizeof(a->hb.url), "%s", cfg->url);
    snprintf(a->hb.zone, sizeof(a->hb.zone), "%s", zone);
    a->hb.weight = cfg->weight;
    a->hb.incarnation = cfg->incarnation != 0
                            ? cfg->incarnation
                            : (uint64_t)rt.tv_sec * 1000 + (uint64_t)rt.tv_nsec / 1000000;
    if (a->hb.incarnation > PROTO_HB_INC_MAX)
        a->hb.incarnation = PROTO_HB_INC_MAX;
    snprintf(a->auth, sizeof(a->auth), "Authorization: Bearer %s", cfg->credential);
    atomic_store(&a->state, ANNOUNCE_UP);
    int rc = 0;
    for (size_t i = 0; i < cfg->ntargets; i++) {
        struct target *t = &a->targets[i];
        size_t bl = strlen(cfg->targets[i]);
        if (bl == 0 || bl > PROTO_HB_URL_MAX) {
            rc = -EINVAL;
            goto fail;
        }
        memcpy(t->base, cfg->targets[i], bl + 1);
        while (bl > 0 && t->base[bl - 1] == '/')
            t->base[--bl] = '\0';
        snprintf(t->url, sizeof(t->url), "%s%s%s/%s", t->base, PROTO_HB_PREFIX, a->hb.service,
                 a->hb.id);
        t->easy = curl_easy_init();
        if (t->easy == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
        a->ntargets++;
    }
    if (pthread_create(&a->thread, NULL, run, a) != 0) {
        rc = -EAGAIN;
        goto fail;
    }
    *out = a;
    return 0;
fail:
    destroy(a);
    return rc;
}

void
announce_set_state(struct announce *a, enum announce_state st)
{
    if (a == NULL)
        return;
    int old = atomic_exchange(&a->state, (int)st);
    if (old != (int)st) {
        /* Tell the sheds now, not at the next interval. */
        pthread_mutex_lock(&a->mu);
        for (size_t i = 0; i < a->ntargets; i++)
            a->targets[i].due = 0;
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
    }
}

bool
announce_refused(struct announce *a, char *why, size_t len)
{
    bool r;

    if (a == NULL)
        return false;
    pthread_mutex_lock(&a->mu);
    r = a->refused;
    if (r && why != NULL && len > 0)
        snprintf(why, len, "%s", a->refusal);
    pthread_mutex_unlock(&a->mu);
    return r;
}

void
announce_stop(struct announce *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    for (size_t i = 0; i < a->ntargets; i++) {
        struct target *t = &a->targets[i];
        if (!t->registered)
            continue;
        char url[URL_MAX + 48];
        snprintf(url, sizeof(url), "%s?incarnation=%" PRIu64, t->url, a->hb.incarnation);
        struct reply r;
        long st = request(a, t, "DELETE", url, NULL, 1, &r);
        if (st != 200)
            log_warnx("announce: deregistering from %s: %ld", t->base, st);
    }
    destroy(a);
}
