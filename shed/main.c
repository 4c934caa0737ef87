/* SPDX-License-Identifier: ISC */
/*
 * shed: the daemon entry point. `shed [-d] [-t] -c FILE` runs (or with -t
 * only checks) a config, and a state_dir it cannot write is an error either
 * way; `shed announce ...` is the heartbeat sidecar for a backend we did not
 * write (shed/sidecar.c). --help and --version follow common/cli.
 *
 * The main thread owns the signals (blocked everywhere, taken with
 * sigtimedwait) and the registry's timers: every 50 ms it calls
 * registry_tick(); SIGHUP reloads the config without touching the registry's
 * members or the open connections (the cluster part gets the new peers,
 * masters, cells and timings through shed_cluster_reload()); SIGTERM stops accepting, lets
 * in-flight requests finish (bounded) and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/log.h"
#include "shed/agg.h"
#include "shed/cluster.h"
#include "shed/config.h"
#include "shed/events.h"
#include "shed/front.h"
#include "shed/guard.h"
#include "shed/handoff.h"
#include "shed/park.h"
#include "shed/rcu.h"
#include "shed/registry.h"
#include "shed/server.h"
#include "shed/sidecar.h"
#include "shed/status.h"

#define TICK_MS       50
#define DRAIN_WAIT_MS 2000 /* SIGTERM: how long in-flight requests may take */
#define TRIM_MS       2000 /* how often freed heap memory goes back to the system */

/* Two malloc arenas instead of glibc's 8 per core: the main thread's and
 * one for every other thread. Each arena keeps its own free lists and
 * fragments on its own; with one per thread, the ~15 MB a status JSON of
 * 10000 members allocates and frees on the HTTP thread left ~2 MB of
 * partly used pages behind even after malloc_trim() (18.6 MB RSS after it,
 * 16.5 MB with two arenas; tests/shed/test_memory.py). Requests allocate
 * small blocks and free them on the same thread, which glibc's per-thread
 * cache serves without taking the arena's lock. Call before any thread
 * starts. */
static void
malloc_setup(void)
{
#ifdef __GLIBC__
    (void)mallopt(M_ARENA_MAX, 2);
#endif
}

/* glibc keeps what a thread frees in that thread's arena and gives pages
 * back only from the top of a heap, after enough was freed at once: the
 * ~15 MB of small jansson objects of one status JSON at 10000 members, or
 * what a ring rebuild frees, stayed resident for good (a 10000-member shed
 * went from 18 to 33 MB after one status request). malloc_trim() returns
 * every free page of every arena; with nothing to return it takes a few
 * microseconds, so the main loop calls it every TRIM_MS
 * (tests/shed/bench_memory.py measures the difference). */
static void
trim_heap(uint64_t now_ms)
{
#ifdef __GLIBC__
    static uint64_t last;
    if (now_ms - last < TRIM_MS)
        return;
    last = now_ms;
    (void)malloc_trim(0);
#else
    (void)now_ms;
#endif
}

static void
usage(FILE *f)
{
    fputs("usage: shed [-d] [-t] -c FILE\n"
          "       shed announce --backend URL --announce URL ... (shed announce --help)\n"
          "       shed --help | --version\n"
          "\n"
          "  -c, --config FILE  the YAML config (docs/config.md)\n"
          "  -t, --test         check the config (and that state_dir is writable), then exit\n"
          "  -d, --debug        log at debug level\n"
          "  -h, --help         this text\n"
          "  -V, --version      print the version\n"
          "\n"
          "Status page: http://LISTEN/_shed/v1/status.html; JSON: /_shed/v1/status;\n"
          "Prometheus: /metrics. SIGHUP reloads the config, SIGTERM drains and exits.\n",
          f);
}

/* Can the daemon write its snapshot into <dir>? Try, as it would: a file
 * created and removed (access() would not see a read-only mount). 0 or
 * -errno with <why> set. */
static int
state_dir_writable(const char *dir, char *why, size_t len)
{
    char probe[SHED_PATH_MAX + 32];
    struct stat st;

    if (stat(dir, &st) == -1) {
        snprintf(why, len, "%s", strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, len, "not a directory");
        return -ENOTDIR;
    }
    snprintf(probe, sizeof(probe), "%s/.shed-t-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd == -1) {
        snprintf(why, len, "not writable: %s", strerror(errno));
        return -errno;
    }
    close(fd);
    unlink(probe);
    return 0;
}

static void
raise_nofile(const struct shed_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return;
    rlim_t want = (rlim_t)cfg->limits.connections + 64;
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want <= rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
        log_warn("setrlimit(RLIMIT_NOFILE)");
    if (rl.rlim_cur < want)
        log_warnx("limits: connections=%u but only %llu file descriptors are allowed",
                  cfg->limits.connections, (unsigned long long)rl.rlim_cur);
}

static void
reload(struct shed_daemon *ctx, const char *path)
{
    char err[SHED_ERR_MAX];
    struct shed_config *next;
    if (shed_config_load(path, &next, err, sizeof(err)) < 0) {
        log_warnx("config: reload failed, keeping the running config: %s", err);
        return;
    }
    struct shed_config *cur = atomic_load(&ctx->cfg);
    bool listen_same = cur->nlisten == next->nlisten && cur->threads == next->threads;
    for (size_t i = 0; listen_same && i < cur->nlisten; i++)
        listen_same = strcmp(cur->listen[i], next->listen[i]) == 0;
    if (!listen_same)
        log_warnx("config: listen and threads changes take effect at the next restart");
    if (cur->limits.connections != next->limits.connections ||
        cur->limits.connection_memory != next->limits.connection_memory ||
        cur->limits.idle_timeout_ms != next->limits.idle_timeout_ms)
        log_warnx("config: connection limits change at the next restart");
    if (cur->roles != next->roles)
        log_info("config: roles changed");
    if (strcmp(cur->credential, next->credential) != 0)
        log_info("config: credential changed");
    struct shed_config *old = atomic_exchange(&ctx->cfg, next);
    char what[1024];
    if (registry_reconfigure(ctx->reg, next, shed_now_ms(), what, sizeof(what)) < 0)
        log_warnx("config: registry reconfigure failed (out of memory)");
    shed_cluster_reload(ctx->cluster, next);
    if (ctx->agg != NULL) {
        struct shed_agg_config ac;
        shed_agg_config_of(next, shed_server_shares_loop(next), &ac);
        shed_agg_reconfigure(ctx->agg, &ac);
    }
    shed_guard_set(ctx->guard, next->limits.header_timeout_ms, next->limits.idle_timeout_ms,
                   next->limits.per_source);
    log_info("config: reloaded %s%s%s", path, what[0] ? ": " : "", what);
    shed_rcu_synchronize(registry_rcu(ctx->reg));
    shed_config_free(old);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"debug", no_argument, NULL, 'd'},
        {"test", no_argument, NULL, 't'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool check = false, debug = false;
    int ch;

    malloc_setup();
    if (argc > 1 && strcmp(argv[1], "announce") == 0)
        return shed_sidecar_main(argc - 1, argv + 1);
    log_init("shed", false);
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:dthV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'd':
            debug = true;
            break;
        case 't':
            check = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            return cli_version("shed");
        default:
            return cli_bad_option("shed", ch, argv);
        }
    }
    if (optind != argc)
        return cli_usage_error("shed", "unexpected argument %s", argv[optind]);
    if (path == NULL)
        return cli_usage_error("shed", "-c FILE is required");
    log_set_debug(debug);

    char err[SHED_ERR_MAX];
    struct shed_config *cfg;
    if (shed_config_load(path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "shed: %s\n", err);
        return 1;
    }
    char why[256];
    if (cfg->state_dir[0] != '\0' && state_dir_writable(cfg->state_dir, why, sizeof(why)) < 0) {
        fprintf(stderr, "shed: %s: state_dir %s: %s\n", path, cfg->state_dir, why);
        shed_config_free(cfg);
        return 1;
    }
    if (check) {
        fprintf(stderr, "shed: %s: configuration OK\n", path);
        shed_config_free(cfg);
        return 0;
    }
    raise_nofile(cfg);

    /* Signals: blocked in every thread, taken by this one. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The daemon: every module's state hangs off it (shed/daemon.h). */
    struct shed_daemon ctx = {.sync_turn = shed_park_resume_all};
    atomic_init(&ctx.cfg, cfg);
    shed_status_started(&ctx);
    if (shed_park_create(&ctx.park) < 0 || shed_events_create(&ctx.events) < 0 ||
        shed_guard_create(cfg->limits.connections, &ctx.guard) < 0 ||
        shed_metrics_create(&ctx.metrics) < 0)
        fatalx("out of memory");
    shed_guard_set(ctx.guard, cfg->limits.header_timeout_ms, cfg->limits.idle_timeout_ms,
                   cfg->limits.per_source);
    ctx.sync_turn_arg = ctx.park;
    int rc = registry_create(cfg, clock_real_ns() ^ (uint64_t)getpid() << 32, &ctx.reg);
    if (rc < 0)
        fatalx("registry: %s", rc == -ENOMEM ? "out of memory" : ring_strerror(rc));
    if (shed_cluster_start(&ctx, cfg, &ctx.cluster) < 0)
        fatalx("cannot start sync, master or snapshot (see above)");
    if (cfg->roles & SHED_ROLE_AGGREGATOR) {
        struct shed_agg_config ac;
        shed_agg_config_of(cfg, shed_server_shares_loop(cfg), &ac);
        if (shed_agg_create(&ac, ctx.reg, &ctx.agg) < 0)
            fatalx("cannot start the aggregator");
    }
    if (shed_server_start(&ctx, cfg, &ctx.server) < 0)
        fatalx("cannot start the HTTP front end");
    if ((cfg->roles & SHED_ROLE_AGGREGATOR) && shed_handoff_start(&ctx, &ctx.handoff) < 0)
        fatalx("cannot start the handoff thread");
    log_info("cell=%s started, %zu service%s", cfg->cell, cfg->nservices,
             cfg->nservices == 1 ? "" : "s");

    for (;;) {
        struct timespec ts = {0, TICK_MS * 1000000L};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGHUP) {
            reload(&ctx, path);
        } else if (sig == SIGTERM || sig == SIGINT) {
            break;
        }
        registry_tick(ctx.reg, shed_now_ms());
        shed_cluster_tick(ctx.cluster, shed_now_ms());
        shed_guard_sweep(ctx.guard, clock_mono_ms());
        trim_heap(clock_mono_ms());
    }

    log_info("stopping: no new connections, finishing in-flight requests");
    shed_handoff_stop(ctx.handoff);
    shed_server_quiesce(ctx.server);
    uint64_t deadline = shed_now_ms() + DRAIN_WAIT_MS;
    while (shed_server_inflight(ctx.server) > 0 && shed_now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* The order: the front end first (no request can reach the core any
     * more), then the core's threads (sync, probes, etcd), the held
     * requests' table, the registry, the config. */
    shed_server_stop(ctx.server); /* stops the aggregator's requests first */
    shed_agg_destroy(ctx.agg);
    shed_cluster_stop(ctx.cluster);
    shed_park_destroy(ctx.park);
    shed_events_destroy(ctx.events);
    shed_guard_destroy(ctx.guard);
    shed_metrics_destroy(ctx.metrics);
    registry_destroy(ctx.reg);
    shed_config_free(atomic_load(&ctx.cfg));
    log_info("stopped");
    return 0;
}
