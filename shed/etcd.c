/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd: the cell's membership kept in etcd v3 (docs/etcd.md). This
 * file is the client object: create, destroy, reload, counters, and the
 * etcd thread's loop; the parts are listed in shed/etcd_impl.h.
 */
#include "shed/etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "shed/answer.h"
#include "shed/etcd_impl.h"
#include "shed/registry.h"

/* ---- the thread ---- */

/* A master writes nothing most of the time: while etcd is away, one small
 * read every RETRY_MS tells when it is back (a line shed's keepalive does). */
static void
ping(struct shed_etcd *E)
{
    json_t *r = NULL;
    char *body = etcd_key_body(E->base, false, "\"keys_only\":true");
    if (body != NULL && etcd_call(E, "/v3/kv/range", body, &r) == 0)
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
            etcd_range(E);
        now = shed_now_ms();
        if (E->mode == MODE_MASTER && E->have_view && !atomic_load(&E->up) && now >= E->retry_at)
            ping(E);
        if (E->have_view && !E->need_reload && !E->watching &&
            (atomic_load(&E->up) || now >= E->retry_at))
            etcd_watch_start(E);
        if (E->watching && !atomic_load(&E->up)) /* e.g. a keepalive timed out */
            etcd_watch_stop(E);
        if (E->again.nentries > 0) {
            registry_apply(E->reg, &E->again, shed_now_ms(), false, NULL);
            proto_sync_msg_free(&E->again);
            proto_sync_msg_init(&E->again);
        }
        if (E->mode == MODE_CELL) {
            etcd_probes(E, shed_now_ms());
            etcd_writer(E, shed_now_ms());
        } else {
            etcd_hint_writer(E, shed_now_ms());
        }
        etcd_refresh(E, shed_now_ms());
        if (E->watching)
            etcd_watch_poll(E);
        int numfds;
        curl_multi_poll(E->multi, NULL, 0, POLL_MS, &numfds);
        if (E->watching)
            etcd_watch_poll(E);
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
    etcd_wake(E);
    pthread_join(E->thread, NULL);
    E->running = false;
    etcd_watch_stop(E);
}

/* Revoke this shed's member lease (its keys go at once). */
static void
revoke_lease(struct shed_etcd *E)
{
    if (E->mode == MODE_CELL && E->lease_id != 0 && atomic_load(&E->up)) {
        char body[96];
        json_t *r = NULL;
        snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", E->lease_id);
        if (etcd_call(E, "/v3/lease/revoke", body, &r) == 0)
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
        (mode == MODE_CELL && etcd_sink_get(E, cfg->cell, true) == NULL)) {
        shed_etcd_destroy(E);
        return -ENOMEM;
    }
    atomic_store(&E->up, true); /* so that the first failure is logged */
    etcd_range(E);              /* warm: route on what etcd holds before listening */
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
    etcd_mark_all_put(E);
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
