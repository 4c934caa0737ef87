/* SPDX-License-Identifier: ISC */
/*
 * shed/suspect: failure reports and their verification probe. A table of
 * hosts (verdicts) and one of client addresses (report rates); one mutex
 * (reports are rare: only clients that just failed send them).
 */
#include "shed/suspect.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "common/log.h"

#define PROBE_QUEUE 32

struct host {
    char hostport[SHED_SUSPECT_HOST_MAX];
    bool suspect;      /* the probe failed: skipped until <until> */
    bool probing;      /* a verification probe is queued or running */
    bool pending;      /* reported again too soon after an alive verdict */
    uint64_t until;    /* end of a confirmed failure */
    uint64_t alive_at; /* when a probe last found it alive (0: never) */
    uint64_t last;     /* last report, for reuse of idle slots */
};

/* A client address and its reports in the current one-second window. */
struct source {
    char client[SHED_SUSPECT_CLIENT_MAX];
    uint64_t window; /* start of the window, ms */
    uint32_t n;
};

struct probe {
    char hostport[SHED_SUSPECT_HOST_MAX];
    char url[600];
};

struct shed_suspect {
    pthread_mutex_t lock;
    struct shed_suspect_config cfg;
    struct host *hosts; /* SHED_SUSPECT_MAX_HOSTS */
    size_t nhosts;
    struct source *sources; /* SHED_SUSPECT_MAX_SOURCES */
    size_t nsources;
    struct shed_suspect_stats stats;
    /* probe worker */
    pthread_cond_t cond;
    pthread_t thread;
    bool running, stop;
    struct probe queue[PROBE_QUEUE];
    size_t qhead, qlen;
    shed_suspect_done_fn *fn;
    void *arg;
};

int
shed_suspect_create(const struct shed_suspect_config *cfg, struct shed_suspect **out)
{
    struct shed_suspect *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return -ENOMEM;
    s->hosts = calloc(SHED_SUSPECT_MAX_HOSTS, sizeof(*s->hosts));
    s->sources = calloc(SHED_SUSPECT_MAX_SOURCES, sizeof(*s->sources));
    if (s->hosts == NULL || s->sources == NULL) {
        free(s->hosts);
        free(s->sources);
        free(s);
        return -ENOMEM;
    }
    if (cfg != NULL)
        s->cfg = *cfg;
    if (s->cfg.hold_ms == 0)
        s->cfg.hold_ms = 3000;
    if (s->cfg.probe_timeout_ms == 0)
        s->cfg.probe_timeout_ms = 300;
    if (s->cfg.reprobe_ms == 0)
        s->cfg.reprobe_ms = 250;
    if (s->cfg.source_rate == 0)
        s->cfg.source_rate = 10;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    *out = s;
    return 0;
}

void
shed_suspect_destroy(struct shed_suspect *s)
{
    if (s == NULL)
        return;
    if (s->running) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->hosts);
    free(s->sources);
    free(s);
}

static bool
is_suspect(const struct host *h, uint64_t now)
{
    return h->suspect && now < h->until;
}

static struct host *
find(struct shed_suspect *s, const char *hostport)
{
    for (size_t i = 0; i < s->nhosts; i++)
        if (strcmp(s->hosts[i].hostport, hostport) == 0)
            return &s->hosts[i];
    return NULL;
}

static struct host *
find_or_add(struct shed_suspect *s, const char *hostport, uint64_t now)
{
    struct host *h = find(s, hostport);

    if (h != NULL)
        return h;
    if (s->nhosts < SHED_SUSPECT_MAX_HOSTS) {
        h = &s->hosts[s->nhosts++];
    } else {
        /* Reuse a slot that is neither suspect, probed, nor recently
         * reported. */
        for (size_t i = 0; i < s->nhosts && h == NULL; i++)
            if (!is_suspect(&s->hosts[i], now) && !s->hosts[i].probing &&
                now - s->hosts[i].last > s->cfg.reprobe_ms)
                h = &s->hosts[i];
        if (h == NULL)
            return NULL;
    }
    memset(h, 0, sizeof(*h));
    snprintf(h->hostport, sizeof(h->hostport), "%s", hostport);
    return h;
}

/* Count a report from <client>; false when it is over its rate. A full
 * table reuses the slot whose window is oldest. */
static bool
source_ok(struct shed_suspect *s, const char *client, uint64_t now)
{
    struct source *src = NULL, *oldest = NULL;

    for (size_t i = 0; i < s->nsources && src == NULL; i++) {
        if (strcmp(s->sources[i].client, client) == 0)
            src = &s->sources[i];
        else if (oldest == NULL || s->sources[i].window < oldest->window)
            oldest = &s->sources[i];
    }
    if (src == NULL) {
        src = s->nsources < SHED_SUSPECT_MAX_SOURCES ? &s->sources[s->nsources++] : oldest;
        snprintf(src->client, sizeof(src->client), "%s", client);
        src->window = now;
        src->n = 0;
    }
    if (now - src->window >= 1000 || now < src->window) {
        src->window = now;
        src->n = 0;
    }
    return ++src->n <= s->cfg.source_rate;
}

int
shed_suspect_report(struct shed_suspect *s, const char *hostport, const char *client, uint64_t now)
{
    struct host *h;
    int rc;

    if (hostport[0] == '\0' || strlen(hostport) >= SHED_SUSPECT_HOST_MAX || client[0] == '\0' ||
        strlen(client) >= SHED_SUSPECT_CLIENT_MAX)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    s->stats.reports++;
    if (!source_ok(s, client, now)) {
        s->stats.limited++;
        rc = -EBUSY;
        goto out;
    }
    h = find_or_add(s, hostport, now);
    if (h == NULL) {
        rc = -ENOSPC;
        goto out;
    }
    h->last = now;
    if (is_suspect(h, now)) {
        rc = SHED_SUSPECT_ALREADY;
    } else if (h->probing) {
        rc = SHED_SUSPECT_COUNTED; /* a verdict is coming */
    } else if (h->alive_at != 0 && now - h->alive_at < s->cfg.reprobe_ms) {
        h->pending = true; /* just found alive: look again when the pause ends */
        rc = SHED_SUSPECT_COUNTED;
    } else {
        h->suspect = false;
        h->pending = false;
        h->probing = true;
        s->stats.probes++;
        rc = SHED_SUSPECT_PROBE;
    }
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

bool
shed_suspect_is(struct shed_suspect *s, const char *hostport, uint64_t now)
{
    struct host *h;
    bool r;

    pthread_mutex_lock(&s->lock);
    h = find(s, hostport);
    r = h != NULL && is_suspect(h, now);
    pthread_mutex_unlock(&s->lock);
    return r;
}

void
shed_suspect_clear(struct shed_suspect *s, const char *hostport, uint64_t now)
{
    struct host *h;

    pthread_mutex_lock(&s->lock);
    h = find(s, hostport);
    if (h != NULL) {
        h->suspect = false;
        h->probing = false;
        h->until = 0;
        h->alive_at = now;
    }
    pthread_mutex_unlock(&s->lock);
}

void
shed_suspect_confirm(struct shed_suspect *s, const char *hostport, uint64_t now)
{
    struct host *h;

    pthread_mutex_lock(&s->lock);
    h = find(s, hostport);
    if (h != NULL) {
        h->probing = false;
        h->suspect = true;
        h->until = now + s->cfg.hold_ms;
        s->stats.confirmed++;
    }
    pthread_mutex_unlock(&s->lock);
}

void
shed_suspect_abandon(struct shed_suspect *s, const char *hostport)
{
    struct host *h;

    pthread_mutex_lock(&s->lock);
    h = find(s, hostport);
    if (h != NULL)
        h->probing = false;
    pthread_mutex_unlock(&s->lock);
}

size_t
shed_suspect_due(struct shed_suspect *s, uint64_t now, char (*out)[SHED_SUSPECT_HOST_MAX],
                 size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nhosts && n < max; i++) {
        struct host *h = &s->hosts[i];

        if (!h->pending || h->probing || now - h->alive_at < s->cfg.reprobe_ms)
            continue;
        h->pending = false;
        h->probing = true;
        s->stats.probes++;
        snprintf(out[n++], SHED_SUSPECT_HOST_MAX, "%s", h->hostport);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

size_t
shed_suspect_count(struct shed_suspect *s, uint64_t now)
{
    size_t n = 0;

    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nhosts; i++)
        if (is_suspect(&s->hosts[i], now))
            n++;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void
shed_suspect_stats(struct shed_suspect *s, struct shed_suspect_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}

static size_t
discard(char *p, size_t sz, size_t nm, void *arg)
{
    (void)p;
    (void)arg;
    return sz * nm;
}

int
shed_suspect_probe_sync(const char *url, uint64_t timeout_ms)
{
    CURL *h = curl_easy_init();
    CURLcode cc;

    if (h == NULL)
        return -ENOMEM;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    cc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    /* Any HTTP answer, even an error status, means the server is there. */
    return cc == CURLE_OK ? 0 : -EHOSTDOWN;
}

static void *
worker(void *arg)
{
    struct shed_suspect *s = arg;

    for (;;) {
        struct probe p;

        pthread_mutex_lock(&s->lock);
        while (!s->stop && s->qlen == 0)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->stop) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        p = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % PROBE_QUEUE;
        s->qlen--;
        pthread_mutex_unlock(&s->lock);

        bool alive = shed_suspect_probe_sync(p.url, s->cfg.probe_timeout_ms) == 0;
        s->fn(s->arg, p.hostport, alive);
    }
    return NULL;
}

int
shed_suspect_probe_start(struct shed_suspect *s, shed_suspect_done_fn *fn, void *arg)
{
    int rc;

    s->fn = fn;
    s->arg = arg;
    rc = pthread_create(&s->thread, NULL, worker, s);
    if (rc != 0)
        return -rc;
    s->running = true;
    return 0;
}

int
shed_suspect_probe(struct shed_suspect *s, const char *hostport, const char *url)
{
    int rc = 0;

    if (strlen(hostport) >= SHED_SUSPECT_HOST_MAX || strlen(url) >= sizeof(s->queue[0].url))
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    if (!s->running) {
        rc = -ENOTCONN;
        goto out;
    }
    for (size_t i = 0; i < s->qlen; i++)
        if (strcmp(s->queue[(s->qhead + i) % PROBE_QUEUE].hostport, hostport) == 0) {
            rc = -EALREADY;
            goto out;
        }
    if (s->qlen == PROBE_QUEUE) {
        rc = -ENOSPC;
        goto out;
    }
    struct probe *p = &s->queue[(s->qhead + s->qlen) % PROBE_QUEUE];
    snprintf(p->hostport, sizeof(p->hostport), "%s", hostport);
    snprintf(p->url, sizeof(p->url), "%s", url);
    s->qlen++;
    pthread_cond_signal(&s->cond);
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}
