/* SPDX-License-Identifier: ISC */
/*
 * Benchmark: heartbeats during a ring build. One service of 20 000 members
 * (B = 65 536, K = 3, R = 3) is rebuilt by registry_tick() (a weight change
 * makes it dirty) while another thread renews members, a heartbeat every
 * ~0.1 ms, timing each call. A build that held the records' mutex would
 * make one heartbeat wait about as long as the build; a build outside it
 * leaves heartbeats waiting only for the copy and the install. A third
 * thread looks members' hosts up as a Shed-Failed report does
 * (registry_host_url(), the same mutex), also timed.
 *
 * SHED_BENCH_ROUNDS rounds (default 9). Prints `name: value unit (...)`
 * lines: medians over the rounds with min and max; the ratio is per round
 * (slowest heartbeat / that round's tick), so both sides of it come from
 * the same run.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shed/config.h"
#include "shed/registry.h"

#define N          20000
#define ROUNDS_MAX 64

static const char text[] = "cell: a\ncredential: k\n"
                           "timings: {heartbeat_interval: 10s, lease: 60s, evict_after: 120s,\n"
                           "          join_heartbeats: 1}\n"
                           "limits: {max_members: 30000}\n"
                           "services: {burrow: {kind: burrow, buckets: 65536, k: 3, r: 3}}\n";

static double
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
beat(struct registry *reg, unsigned k, uint32_t weight, uint64_t now)
{
    struct proto_heartbeat hb = {.weight = weight, .state = PROTO_HB_UP, .incarnation = 1};
    struct proto_heartbeat_reply r;
    strcpy(hb.service, "burrow");
    snprintf(hb.id, sizeof(hb.id), "m%05u", k);
    snprintf(hb.url, sizeof(hb.url), "http://10.%u.%u.1:8080", k / 256, k % 256);
    return registry_heartbeat(reg, &hb, now, &r);
}

struct beater {
    struct registry *reg;
    atomic_bool stop, started;
    atomic_bool during; /* the tick runs: time the heartbeats */
    bool lookups;       /* look hosts up instead of heartbeating */
    double max_ms;
    unsigned count;
    int err;
};

static void *
beater_run(void *arg)
{
    struct beater *b = arg;
    for (unsigned k = 0; !atomic_load(&b->stop); k = (k + 7919) % (N - 1)) {
        bool during = atomic_load(&b->during);
        char hp[64];
        snprintf(hp, sizeof(hp), "10.%u.%u.1:8080", (k + 1) / 256, (k + 1) % 256);
        double t0 = mono_ms();
        int rc = b->lookups ? (registry_host_url(b->reg, hp, NULL, 0) ? 0 : -ENOENT)
                            : beat(b->reg, k + 1, 1, 20); /* m00000 is the main thread's */
        double dt = mono_ms() - t0;
        if (rc != 0 && b->err == 0)
            b->err = rc;
        if (during && dt > b->max_ms)
            b->max_ms = dt;
        b->count += during;
        atomic_store(&b->started, true);
        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000}, NULL);
    }
    return NULL;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
report(const char *name, double *v, int n, const char *unit, const char *what)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    printf("%s: %.3g %s (min %.3g, max %.3g; %d rounds; %s)\n", name, med, unit, v[0], v[n - 1], n,
           what);
}

int
main(void)
{
    const char *e = getenv("SHED_BENCH_ROUNDS");
    int rounds = e != NULL ? atoi(e) : 9;
    if (rounds < 1 || rounds > ROUNDS_MAX)
        rounds = 9;
    char err[SHED_ERR_MAX];
    struct shed_config *c = NULL;
    struct registry *reg = NULL;
    if (shed_config_parse(text, strlen(text), "bench.yaml", &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_registry: %s\n", err);
        return 1;
    }
    if (registry_create(c, 1, &reg) != 0) {
        fprintf(stderr, "bench_registry: registry_create failed\n");
        return 1;
    }
    shed_config_free(c);
    for (unsigned k = 0; k < N; k++)
        if (beat(reg, k, 1, 0) != 0) {
            fprintf(stderr, "bench_registry: heartbeat refused\n");
            return 1;
        }
    registry_tick(reg, 5); /* generation 1 */
    double tick[ROUNDS_MAX], hb[ROUNDS_MAX], ratio[ROUNDS_MAX], count[ROUNDS_MAX];
    double lookup[ROUNDS_MAX];
    for (int i = 0; i < rounds; i++) {
        beat(reg, 0, 2 + (uint32_t)(i % 2), 10); /* a new weight: rebuild */
        struct beater b = {.reg = reg}, l = {.reg = reg, .lookups = true};
        pthread_t th, tl;
        if (pthread_create(&th, NULL, beater_run, &b) != 0 ||
            pthread_create(&tl, NULL, beater_run, &l) != 0)
            return 1;
        while (!atomic_load(&b.started) || !atomic_load(&l.started))
            sched_yield();
        atomic_store(&b.during, true);
        atomic_store(&l.during, true);
        double t0 = mono_ms();
        bool built = registry_tick(reg, 10 + (uint64_t)i);
        tick[i] = mono_ms() - t0;
        atomic_store(&b.during, false);
        atomic_store(&l.during, false);
        atomic_store(&b.stop, true);
        atomic_store(&l.stop, true);
        pthread_join(th, NULL);
        pthread_join(tl, NULL);
        if (!built || b.err != 0 || l.err != 0) {
            fprintf(stderr, "bench_registry: round %d: built=%d errors %d %d\n", i, built, b.err,
                    l.err);
            return 1;
        }
        hb[i] = b.max_ms;
        ratio[i] = b.max_ms / tick[i];
        count[i] = b.count;
        lookup[i] = l.max_ms;
    }
    registry_destroy(reg);
    report("registry.build_tick_ms", tick, rounds, "ms", "one tick rebuilding 20000 members");
    report("registry.heartbeat_max_during_build_ms", hb, rounds, "ms",
           "slowest heartbeat while the tick ran");
    report("registry.heartbeat_max_to_build", ratio, rounds, "x", "per round");
    report("registry.host_lookup_max_during_build_ms", lookup, rounds, "ms",
           "slowest registry_host_url() while the tick ran");
    report("registry.heartbeats_during_build", count, rounds, "calls", "per tick");
    return 0;
}
