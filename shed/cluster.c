/* SPDX-License-Identifier: ISC */
/*
 * shed/cluster: the glue between the daemon and the multi-shed modules
 * (shed/sync, shed/master, shed/suspect, shed/snapshot, proto/token). None
 * of it is on the line role's hot path: it runs only for sync traffic, for
 * requests that have to leave the cell, and for client failure reports.
 */
#include "shed/cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "proto/token.h"
#include "shed/etcd.h"
#include "shed/events.h"
#include "shed/hints.h"
#include "shed/master.h"
#include "shed/metrics.h"
#include "shed/route.h"
#include "shed/snapshot.h"
#include "shed/suspect.h"
#include "shed/sync.h"

#define SNAPSHOT_EVERY_MS 2000

struct shed_cluster {
    struct shed_daemon *ctx;
    struct shed_config *cfg;   /* private copy, replaced by shed_cluster_reload() (main thread) */
    _Atomic uint64_t lease_ms; /* cfg's lease, for the probe thread */
    struct shed_sync *sync;
    struct shed_master *master;
    struct shed_hints *hints;      /* master role: escalated writes to bring home */
    struct shed_etcd *etcd;        /* line/aggregator: membership store etcd */
    struct shed_etcd *etcd_master; /* master: every cell and the hints in etcd */
    struct shed_suspect *suspect;
    struct shed_escalator esc;        /* what shed/route escalates with */
    struct shed_sync_origins origins; /* peers, for the line role */
    char origin[SHED_URL_MAX + 16];
    uint64_t last_snapshot_ms, snapshot_seq, last_empty;
    bool started;
};

struct shed_sync *
shed_cluster_sync(const struct shed_cluster *cl)
{
    return cl != NULL ? cl->sync : NULL;
}

struct shed_master *
shed_cluster_master(const struct shed_cluster *cl)
{
    return cl != NULL ? cl->master : NULL;
}

struct shed_hints *
shed_cluster_hints(const struct shed_cluster *cl)
{
    return cl != NULL ? cl->hints : NULL;
}

int
shed_cluster_sync_apply(struct shed_cluster *cl, const struct proto_sync_msg *msg, uint64_t now_ms,
                        struct proto_sync_ack *ack)
{
    const struct shed_config *cfg = cl->cfg;

    if (!cl->started || cl->sync == NULL)
        return -ENOENT;
    if (strcmp(msg->cell, cfg->cell) != 0)
        return -EXDEV;
    if (shed_sync_origins_check(&cl->origins, msg, ack)) {
        registry_apply(cl->ctx->reg, msg, now_ms, false, NULL);
        shed_sync_origins_done(&cl->origins, msg, ack);
        if (shed_sync_add_peer(cl->sync, msg->origin) < 0)
            log_warnx("cluster: no room to push to peer %s", msg->origin);
    }
    return 0;
}

struct shed_etcd *
shed_cluster_etcd(const struct shed_cluster *cl)
{
    if (cl == NULL)
        return NULL;
    return cl->etcd != NULL ? cl->etcd : cl->etcd_master;
}

const struct shed_escalator *
shed_cluster_escalator(const struct shed_cluster *cl)
{
    return cl != NULL && cl->started ? &cl->esc : NULL;
}

size_t
shed_cluster_metrics(const struct shed_cluster *cl, char *buf, size_t len)
{
    size_t o = 0;
    int n;

    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (cl->suspect != NULL) {
        struct shed_suspect_stats st;

        shed_suspect_stats(cl->suspect, &st);
        n = snprintf(buf, len,
                     "# HELP shed_failure_reports_limited_total Shed-Failed reports dropped: "
                     "their client address was over its rate.\n"
                     "# TYPE shed_failure_reports_limited_total counter\n"
                     "shed_failure_reports_limited_total %" PRIu64 "\n"
                     "# HELP shed_failure_probes_total Probes started to verify failure "
                     "reports.\n"
                     "# TYPE shed_failure_probes_total counter\n"
                     "shed_failure_probes_total %" PRIu64 "\n"
                     "# HELP shed_failure_probes_failed_total Verification probes that found "
                     "the backend dead (marked down).\n"
                     "# TYPE shed_failure_probes_failed_total counter\n"
                     "shed_failure_probes_failed_total %" PRIu64 "\n",
                     st.limited, st.probes, st.confirmed);
        if (n > 0)
            o = (size_t)n < len ? (size_t)n : len - 1;
    }
    if (cl->hints != NULL) {
        uint64_t held, dropped;
        char tmp[512];

        shed_hints_counts(cl->hints, &held, &dropped);
        n = snprintf(tmp, sizeof(tmp),
                     "# HELP shed_hints Escalated writes this master remembers for their home "
                     "cell.\n"
                     "# TYPE shed_hints gauge\nshed_hints %" PRIu64 "\n"
                     "# HELP shed_hints_dropped_total Hints dropped for room (their messages "
                     "stay in the other cell).\n"
                     "# TYPE shed_hints_dropped_total counter\nshed_hints_dropped_total %" PRIu64
                     "\n",
                     held, dropped);
        if (n > 0 && (size_t)n < sizeof(tmp) && o + (size_t)n < len) {
            memcpy(buf + o, tmp, (size_t)n + 1);
            o += (size_t)n;
        }
    }
    o += shed_etcd_stats(shed_cluster_etcd(cl), buf + o, len - o);
    return o;
}

/* ---- client failure reports ---- */

static void
probe_done(void *arg, const char *hostport, bool alive)
{
    struct shed_cluster *cl = arg;
    uint64_t now = shed_now_ms();
    if (alive) {
        /* A report that did not hold: nothing changes, nothing is logged
         * above debug (forged reports must not fill the log). */
        log_debug("cluster: %s answered the probe after a failure report", hostport);
        shed_suspect_clear(cl->suspect, hostport, now);
        return;
    }
    shed_events_add(cl->ctx->events, SHED_EV_PROBE, "%s failed the probe after a failure report",
                    hostport);
    log_info("cluster: %s failed the probe after a failure report: down", hostport);
    shed_suspect_confirm(cl->suspect, hostport, now);
    registry_probe_failed(cl->ctx->reg, hostport, now, now + atomic_load(&cl->lease_ms));
    shed_sync_kick(cl->sync); /* the verdict reaches the peers now */

    /* Membership on etcd: the cell's sheds hear it through etcd. */
    shed_etcd_note_probe_failed(cl->etcd, hostport, now);
}

void
shed_cluster_failed(struct shed_cluster *cl, const char *hostport, const char *client,
                    uint64_t now_ms)
{
    char url[PROTO_HB_URL_MAX + 1];

    if (cl->suspect == NULL || client[0] == '\0' || strcmp(client, "?") == 0)
        return;
    if (!registry_host_url(cl->ctx->reg, hostport, url, sizeof(url))) {
        shed_metrics_failed_unknown(cl->ctx->metrics); /* never takes one of the report slots */
        return;
    }
    /* A report only asks for a look: the probe's verdict decides. */
    if (shed_suspect_report(cl->suspect, hostport, client, now_ms) != SHED_SUSPECT_PROBE)
        return;
    shed_events_add(cl->ctx->events, SHED_EV_SUSPECT, "%s reported failed by %s, probing", hostport,
                    client);
    if (shed_suspect_probe(cl->suspect, hostport, url) < 0)
        shed_suspect_abandon(cl->suspect, hostport); /* queue full: no verdict */
}

/* ---- lifecycle ---- */

static int64_t
export_cb(void *arg, uint64_t since, bool for_peer, struct proto_sync_msg *m)
{
    struct shed_daemon *ctx = arg;
    return registry_export(ctx->reg, since, for_peer, shed_now_ms(), m);
}

static void
write_snapshot(struct shed_cluster *cl)
{
    struct proto_sync_msg m;

    if (cl->cfg->state_dir[0] == '\0' || !(cl->cfg->roles & SHED_ROLE_LINE))
        return;
    proto_sync_msg_init(&m);
    m.kind = PROTO_SYNC_FULL;
    snprintf(m.cell, sizeof(m.cell), "%s", cl->cfg->cell);
    snprintf(m.origin, sizeof(m.origin), "%s", cl->origin);
    m.lease_ms = (uint32_t)cl->cfg->timings.lease_ms;
    int64_t seq = registry_export(cl->ctx->reg, 0, false, shed_now_ms(), &m);
    m.kind = PROTO_SYNC_FULL;
    m.seq = seq > 0 ? (uint64_t)seq : 0;
    int rc = shed_snapshot_write(cl->cfg->state_dir, SHED_SNAPSHOT_NAME, &m);
    if (rc < 0)
        log_warnx("snapshot: %s/%s: write failed: %s", cl->cfg->state_dir, SHED_SNAPSHOT_NAME,
                  rc <= -PROTO_SYNC_EBADJSON ? proto_sync_strerror(rc) : strerror(-rc));
    else
        cl->snapshot_seq = m.seq;
    proto_sync_msg_free(&m);
}

static void
load_snapshot(struct shed_cluster *cl)
{
    struct proto_sync_msg m;
    uint64_t age = 0;
    size_t n = 0;

    if (cl->cfg->state_dir[0] == '\0' || !(cl->cfg->roles & SHED_ROLE_LINE))
        return;
    if (shed_snapshot_load(cl->cfg->state_dir, SHED_SNAPSHOT_NAME, clock_real_ns() / 1000000u, &m,
                           &age) < 0)
        return;
    if (strcmp(m.cell, cl->cfg->cell) != 0) {
        log_warnx("snapshot: written for cell %s, this is %s: cold start", m.cell, cl->cfg->cell);
        proto_sync_msg_free(&m);
        return;
    }
    registry_apply(cl->ctx->reg, &m, shed_now_ms(), true, &n);
    registry_tick(cl->ctx->reg, shed_now_ms());
    log_info("snapshot: warm start with %zu members (unconfirmed for one lease), %" PRIu64 "ms old",
             n, age);
    proto_sync_msg_free(&m);
}

/* The sync thread's view of <cfg>; <peers> and <masters> (SHED_MAX_URLS
 * each) receive borrowed pointers into <cfg>. This shed's own URL is not a
 * peer; only the line role pushes to masters. */
static struct shed_sync_config
sync_config(struct shed_cluster *cl, const struct shed_config *cfg, const char **peers,
            const char **masters)
{
    size_t np = 0, nm = 0;

    for (size_t i = 0; i < cfg->npeers; i++)
        if (!shed_same_url(cfg->peers[i], cl->origin))
            peers[np++] = cfg->peers[i];
    for (size_t i = 0; i < cfg->nmasters && (cfg->roles & SHED_ROLE_LINE); i++)
        masters[nm++] = cfg->masters[i];
    return (struct shed_sync_config){
        .origin = cl->origin,
        .cell = cfg->cell,
        .aggregator = cfg->aggregator,
        .credential = cfg->credential,
        .peers = peers,
        .npeers = np,
        .masters = masters,
        .nmasters = nm,
        .interval_ms = cfg->timings.sync_interval_ms,
        .timeout_ms = 1000,
        .lease_ms = (uint32_t)cfg->timings.lease_ms,
        .export_fn = export_cb,
        .arg = cl->ctx,
        .turn_fn = cl->ctx->sync_turn,
        .turn_arg = cl->ctx->sync_turn_arg,
    };
}

int
shed_cluster_start(struct shed_daemon *ctx, const struct shed_config *cfg,
                   struct shed_cluster **out)
{
    int rc;
    struct shed_cluster *cl = calloc(1, sizeof(*cl));

    *out = cl;
    if (cl == NULL)
        return -ENOMEM;
    cl->ctx = ctx;
    cl->cfg = malloc(sizeof(*cl->cfg));
    if (cl->cfg == NULL)
        return -ENOMEM;
    memcpy(cl->cfg, cfg, sizeof(*cfg)); /* no pointers inside: a plain copy */
    atomic_store(&cl->lease_ms, cfg->timings.lease_ms);
    shed_sync_origins_init(&cl->origins);
    snprintf(cl->origin, sizeof(cl->origin), "http://%s", cfg->nlisten > 0 ? cfg->listen[0] : "");

    if (cfg->roles & SHED_ROLE_MASTER) {
        rc = shed_master_create(cl->cfg, SHED_MASTER_MAX_HOPS, &cl->master);
        if (rc < 0)
            return rc;
        rc = shed_hints_create(&cl->hints);
        if (rc < 0)
            return rc;
        if (cfg->membership.store == SHED_STORE_ETCD) {
            rc = shed_etcd_create_master(cl->master, cl->cfg, cl->origin, &cl->etcd_master);
            if (rc < 0)
                return rc;
        }
    }
    if (cfg->roles & (SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR)) {
        struct shed_suspect_config sc = {.hold_ms = cfg->timings.lease_ms,
                                         .probe_timeout_ms = 300,
                                         .reprobe_ms = 250,
                                         .source_rate = 10};
        rc = shed_suspect_create(&sc, &cl->suspect);
        if (rc < 0)
            return rc;
        rc = shed_suspect_probe_start(cl->suspect, probe_done, cl);
        if (rc < 0)
            return rc;
        load_snapshot(cl);
        cl->snapshot_seq = registry_seq(ctx->reg);
        cl->last_snapshot_ms = shed_now_ms();

        /* Always run it: peers that push to us become targets later. */
        const char *peers[SHED_MAX_URLS], *masters[SHED_MAX_URLS];
        struct shed_sync_config syc = sync_config(cl, cl->cfg, peers, masters);
        rc = shed_sync_start(&syc, &cl->sync);
        if (rc < 0)
            return rc;
        log_info("cluster: syncing with %zu peer%s and %zu master%s every %" PRIu64 "ms",
                 syc.npeers, syc.npeers == 1 ? "" : "s", syc.nmasters, syc.nmasters == 1 ? "" : "s",
                 cfg->timings.sync_interval_ms);
        if (cfg->membership.store == SHED_STORE_ETCD) {
            rc = shed_etcd_create(ctx->reg, cl->cfg, cl->origin, &cl->etcd);
            if (rc < 0)
                return rc;
        }
    }
    cl->esc.reg = ctx->reg;
    cl->esc.sync = cl->sync;
    cl->esc.master = cl->master;
    cl->esc.hints = cl->hints;
    cl->esc.etcd_hints = cl->etcd_master;
    cl->esc.events = ctx->events;
    cl->started = true;
    return 0;
}

void
shed_cluster_reload(struct shed_cluster *cl, const struct shed_config *cfg)
{
    struct shed_config *next, *old = cl->cfg;

    if (!cl->started)
        return;
    if ((cfg->roles ^ old->roles) & (SHED_ROLE_MASTER | SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR))
        log_warnx("cluster: role changes take effect at the next restart");
    if (cl->etcd == NULL && cl->etcd_master == NULL &&
        cfg->membership.store != old->membership.store)
        log_warnx("cluster: reload: membership store %s refused: the store changes at the next "
                  "restart",
                  cfg->membership.store_name);
    /* etcd endpoints, prefix, timeouts, lease: the client restarts with
     * them (or refuses a switch to the built-in store, logged). */
    shed_etcd_reconfigure(cl->etcd, cfg);
    shed_etcd_reconfigure(cl->etcd_master, cfg);
    next = malloc(sizeof(*next));
    if (next == NULL) {
        log_warnx("cluster: reload: out of memory, keeping peers, masters and cells");
        return;
    }
    memcpy(next, cfg, sizeof(*cfg));
    /* Roles stay what the threads were started for. */
    next->roles = old->roles;
    if (cl->master != NULL)
        shed_master_reconfigure(cl->master, next); /* stops reading <old> */
    if (cl->sync != NULL) {
        const char *peers[SHED_MAX_URLS], *masters[SHED_MAX_URLS];
        struct shed_sync_config syc = sync_config(cl, next, peers, masters);
        int rc = shed_sync_reconfigure(cl->sync, &syc);
        if (rc < 0)
            log_warnx("cluster: reload: sync targets: %s", strerror(-rc));
        log_info("cluster: syncing with %zu peer%s and %zu master%s every %" PRIu64 "ms",
                 syc.npeers, syc.npeers == 1 ? "" : "s", syc.nmasters, syc.nmasters == 1 ? "" : "s",
                 next->timings.sync_interval_ms);
    }
    atomic_store(&cl->lease_ms, next->timings.lease_ms);
    cl->cfg = next;
    free(old);
}

void
shed_cluster_tick(struct shed_cluster *cl, uint64_t now_ms)
{
    if (!cl->started)
        return;
    if (cl->sync != NULL) {
        uint64_t e = registry_last_empty_seq(cl->ctx->reg);
        if (e != cl->last_empty) {
            cl->last_empty = e;
            shed_sync_kick(cl->sync); /* a service emptied: tell the masters now */
        }
    }
    if (cl->suspect != NULL) {
        /* Reports that came during the pause after an alive verdict. */
        char due[8][SHED_SUSPECT_HOST_MAX], url[PROTO_HB_URL_MAX + 1];
        size_t n = shed_suspect_due(cl->suspect, now_ms, due, 8);
        for (size_t i = 0; i < n; i++)
            if (!registry_host_url(cl->ctx->reg, due[i], url, sizeof(url)) ||
                shed_suspect_probe(cl->suspect, due[i], url) < 0)
                shed_suspect_abandon(cl->suspect, due[i]);
    }
    if (now_ms - cl->last_snapshot_ms >= SNAPSHOT_EVERY_MS) {
        cl->last_snapshot_ms = now_ms;
        if (registry_seq(cl->ctx->reg) != cl->snapshot_seq)
            write_snapshot(cl);
    }
}

void
shed_cluster_stop(struct shed_cluster *cl)
{
    if (cl == NULL)
        return;
    shed_etcd_destroy(cl->etcd);
    shed_etcd_destroy(cl->etcd_master);
    shed_sync_stop(cl->sync);
    shed_suspect_destroy(cl->suspect);
    if (cl->started)
        write_snapshot(cl);
    shed_master_destroy(cl->master);
    shed_hints_destroy(cl->hints);
    shed_sync_origins_fini(&cl->origins);
    free(cl->cfg);
    free(cl);
}
