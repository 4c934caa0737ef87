/* SPDX-License-Identifier: ISC */
/* shed/registry with an injected clock: leases, evictions (cap, never the
 * last live members), joins after N heartbeats, draining, incarnations,
 * drain windows, limits and reloads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shed/config.h"
#include "shed/rcu.h"
#include "shed/registry.h"
#include "shed/registry_impl.h" /* the build hook */

/* interval 100ms, lease 300ms, evict_after 1s, drain window 2s. */
static const char cfg_text[] =
    "cell: a\ncredential: k\n"
    "timings: {heartbeat_interval: 100ms, lease: 300ms, evict_after: 1s, drain_window: 2s,\n"
    "          pin_lifetime: 1s, join_heartbeats: 2, evict_cap: 1}\n"
    "limits: {max_members: 6}\n"
    "services: {burrow: {kind: burrow, buckets: 64, k: 2, r: 2, weight_scale: 10}, "
    "storage: {kind: any}}\n";

static struct shed_config *
config(const char *text)
{
    char err[SHED_ERR_MAX];
    struct shed_config *c = NULL;
    int rc = shed_config_parse(text, strlen(text), "r.yaml", &c, err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    return c;
}

static struct registry *
make(void)
{
    struct shed_config *c = config(cfg_text);
    struct registry *reg = NULL;
    cr_assert_eq(registry_create(c, 1, &reg), 0);
    shed_config_free(c);
    return reg;
}

static int
beat(struct registry *reg, const char *id, uint64_t inc, uint64_t now, enum proto_hb_state st)
{
    struct proto_heartbeat hb = {.weight = 1, .state = st, .incarnation = inc};
    snprintf(hb.service, sizeof(hb.service), "burrow");
    snprintf(hb.id, sizeof(hb.id), "%s", id);
    snprintf(hb.url, sizeof(hb.url), "http://127.0.0.1:%u", 9000 + (unsigned)id[1]);
    struct proto_heartbeat_reply r;
    int rc = registry_heartbeat(reg, &hb, now, &r);
    if (rc == 0) {
        cr_assert_eq(r.lease_ms, 300);
        cr_assert(r.interval_ms >= 90 && r.interval_ms <= 110, "interval %llu jittered +-10%%",
                  (unsigned long long)r.interval_ms);
    }
    return rc;
}

struct snap {
    uint64_t gen;
    size_t size;
    bool has_prev;
    int live[16]; /* by id "bN": N */
};

static struct snap
look(struct registry *reg)
{
    struct snap s;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 16; i++)
        s.live[i] = -1;
    unsigned t = shed_rcu_enter(registry_rcu(reg));
    const struct registry_route *r = registry_route_find(registry_view(reg), "burrow", 6);
    cr_assert_not_null(r);
    s.gen = r->generation;
    s.size = ring_size(r->ring);
    s.has_prev = r->prev != NULL;
    for (size_t i = 0; i < s.size; i++) {
        const char *id = ring_member_at(r->ring, (uint32_t)i)->id;
        s.live[id[1] - '0'] = atomic_load(&r->live[i]);
    }
    shed_rcu_leave(registry_rcu(reg), t);
    return s;
}

/* Heartbeat <ids> every 100ms from <from> to <to> (exclusive), ticking. */
static void
run(struct registry *reg, const char *ids, uint64_t from, uint64_t to)
{
    for (uint64_t t = from; t < to; t += 100) {
        for (const char *p = ids; *p; p++) {
            char id[3] = {'b', *p, 0};
            cr_assert_eq(beat(reg, id, 1, t, PROTO_HB_UP), 0);
        }
        registry_tick(reg, t);
    }
}

Test(registry, join_after_two_heartbeats)
{
    struct registry *reg = make();
    cr_assert_eq(beat(reg, "b1", 1, 0, PROTO_HB_UP), 0);
    registry_tick(reg, 10);
    struct snap s = look(reg);
    cr_assert_eq(s.size, 0, "one heartbeat is not enough");
    cr_assert_eq(s.gen, 0);
    cr_assert_eq(beat(reg, "b1", 1, 100, PROTO_HB_UP), 0);
    registry_tick(reg, 110);
    s = look(reg);
    cr_assert_eq(s.size, 1);
    cr_assert_eq(s.gen, 1);
    cr_assert_eq(s.live[1], REGISTRY_UP);
    struct registry_counts c[4];
    cr_assert_eq(registry_counts(reg, c, 4), 2);
    cr_assert_eq(c[0].up, 1);
    registry_destroy(reg);
}

Test(registry, lease_expiry_marks_down_without_new_generation)
{
    struct registry *reg = make();
    run(reg, "12", 0, 300);
    struct snap s = look(reg);
    cr_assert_eq(s.size, 2);
    uint64_t gen = s.gen;
    /* b2 stops; b1 goes on. Last b2 heartbeat at 200: lease ends at 500. */
    run(reg, "1", 300, 500);
    cr_assert_eq(look(reg).live[2], REGISTRY_UP);
    run(reg, "1", 500, 600);
    s = look(reg);
    cr_assert_eq(s.live[2], REGISTRY_DOWN);
    cr_assert_eq(s.gen, gen, "liveness does not rebuild the ring");
    /* It comes back: up at once, same generation. */
    cr_assert_eq(beat(reg, "b2", 1, 650, PROTO_HB_UP), 0);
    s = look(reg);
    cr_assert_eq(s.live[2], REGISTRY_UP);
    cr_assert_eq(s.gen, gen);
    registry_destroy(reg);
}

Test(registry, evicted_after_evict_after)
{
    struct registry *reg = make();
    run(reg, "12", 0, 300);
    uint64_t gen = look(reg).gen;
    run(reg, "1", 300, 1400); /* b2 down at 500, evictable at 1500 */
    cr_assert_eq(look(reg).size, 2);
    run(reg, "1", 1400, 1600);
    struct snap s = look(reg);
    cr_assert_eq(s.size, 1);
    cr_assert_eq(s.live[1], REGISTRY_UP);
    cr_assert_eq(s.gen, gen + 1);
    cr_assert(s.has_prev, "previous generation kept for the drain window");
    cr_assert_eq(registry_evictions(reg), 1);
    /* Drain window (2s) ends: prev dropped. */
    run(reg, "1", 1600, 3700);
    cr_assert(!look(reg).has_prev);
    registry_destroy(reg);
}

Test(registry, evict_cap_per_interval)
{
    struct registry *reg = make();
    run(reg, "1234", 0, 300);
    cr_assert_eq(look(reg).size, 4);
    run(reg, "1", 300, 1500); /* 2,3,4 down at 500, evictable at 1500 */
    cr_assert_eq(look(reg).size, 4);
    run(reg, "1", 1500, 1600);
    cr_assert_eq(look(reg).size, 3, "one eviction per interval");
    run(reg, "1", 1600, 1700);
    cr_assert_eq(look(reg).size, 2);
    run(reg, "1", 1700, 1800);
    cr_assert_eq(look(reg).size, 1);
    cr_assert_eq(registry_evictions(reg), 3);
    registry_destroy(reg);
}

Test(registry, last_live_members_never_evicted)
{
    struct registry *reg = make();
    run(reg, "12", 0, 300);
    uint64_t gen = look(reg).gen;
    /* Everyone stops: all down, but nobody is evicted, however long. */
    for (uint64_t t = 300; t < 10000; t += 100)
        registry_tick(reg, t);
    struct snap s = look(reg);
    cr_assert_eq(s.size, 2);
    cr_assert_eq(s.gen, gen);
    cr_assert_eq(s.live[1], REGISTRY_DOWN);
    cr_assert_eq(s.live[2], REGISTRY_DOWN);
    cr_assert_eq(registry_evictions(reg), 0);
    registry_destroy(reg);
}

Test(registry, draining_stays_in_ring)
{
    struct registry *reg = make();
    run(reg, "12", 0, 300);
    uint64_t gen = look(reg).gen;
    cr_assert_eq(beat(reg, "b2", 1, 300, PROTO_HB_DRAINING), 0);
    registry_tick(reg, 300);
    struct snap s = look(reg);
    cr_assert_eq(s.live[2], REGISTRY_DRAINING);
    cr_assert_eq(s.size, 2);
    cr_assert_eq(s.gen, gen);
    registry_destroy(reg);
}

Test(registry, incarnation_rules)
{
    struct registry *reg = make();
    cr_assert_eq(beat(reg, "b1", 5, 0, PROTO_HB_UP), 0);
    cr_assert_eq(beat(reg, "b1", 4, 10, PROTO_HB_UP), -ESTALE, "lower incarnation refused");
    cr_assert_eq(beat(reg, "b1", 6, 20, PROTO_HB_UP), 0, "higher incarnation wins");
    cr_assert_eq(beat(reg, "b1", 5, 30, PROTO_HB_UP), -ESTALE);
    cr_assert_eq(beat(reg, "b1", 6, 40, PROTO_HB_UP), 0);
    registry_tick(reg, 50);
    cr_assert_eq(look(reg).size, 1);
    cr_assert_eq(registry_deregister(reg, "burrow", 6, "b1", 2, 5, 60), -ESTALE);
    cr_assert_eq(registry_deregister(reg, "burrow", 6, "b9", 2, 5, 60), -ENOENT);
    cr_assert_eq(registry_deregister(reg, "nope", 4, "b1", 2, 5, 60), -ENOENT);
    cr_assert_eq(registry_deregister(reg, "burrow", 6, "b1", 2, 6, 60), 0);
    cr_assert_eq(look(reg).live[1], REGISTRY_DOWN, "no redirects after a deregistration");
    registry_tick(reg, 70);
    cr_assert_eq(look(reg).size, 0, "leaves the ring at the next tick");
    cr_assert_eq(registry_size(reg), 0);
    registry_destroy(reg);
}

Test(registry, limits_and_errors)
{
    struct registry *reg = make();
    struct proto_heartbeat hb = {.weight = 11, .incarnation = 1};
    strcpy(hb.service, "burrow");
    strcpy(hb.id, "bx");
    strcpy(hb.url, "http://127.0.0.1:1");
    struct proto_heartbeat_reply r;
    cr_assert_eq(registry_heartbeat(reg, &hb, 0, &r), -ERANGE, "weight above weight_scale");
    strcpy(hb.service, "nope");
    hb.weight = 1;
    cr_assert_eq(registry_heartbeat(reg, &hb, 0, &r), -ENOENT);
    for (int i = 0; i < 6; i++) {
        char id[3] = {'b', (char)('0' + i), 0};
        cr_assert_eq(beat(reg, id, 1, 0, PROTO_HB_UP), 0);
    }
    cr_assert_eq(beat(reg, "b7", 1, 0, PROTO_HB_UP), -ENOSPC, "max_members");
    registry_destroy(reg);
}

Test(registry, reconfigure_keeps_members_and_rebuilds_changed_rings)
{
    struct registry *reg = make();
    run(reg, "12", 0, 300);
    uint64_t gen = look(reg).gen;
    char text[1024];
    snprintf(text, sizeof(text), "%s", cfg_text);
    char *p = strstr(text, "buckets: 64");
    memcpy(p, "buckets: 32", 11);
    struct shed_config *c = config(text);
    char log[512];
    cr_assert_eq(registry_reconfigure(reg, c, 300, log, sizeof(log)), 0);
    cr_assert(strstr(log, "burrow ring parameters changed") != NULL, "%s", log);
    struct snap s = look(reg);
    cr_assert_eq(s.size, 2, "members kept");
    cr_assert_eq(s.gen, gen + 1);
    unsigned t = shed_rcu_enter(registry_rcu(reg));
    const struct registry_route *r = registry_route_find(registry_view(reg), "burrow", 6);
    cr_assert_eq(ring_config(r->ring)->buckets, 32);
    shed_rcu_leave(registry_rcu(reg), t);
    shed_config_free(c);
    /* Same config again: nothing changes. */
    c = config(text);
    cr_assert_eq(registry_reconfigure(reg, c, 300, log, sizeof(log)), 0);
    cr_assert_str_eq(log, "");
    cr_assert_eq(look(reg).gen, gen + 1);
    shed_config_free(c);
    registry_destroy(reg);
}

/* The metrics slot of a service is the registry's: a name keeps its slot
 * when services come and go with reloads, and a new name takes the next. */
static unsigned
slot_of(struct registry *reg, const char *name)
{
    unsigned t = shed_rcu_enter(registry_rcu(reg));
    const struct registry_route *r = registry_route_find(registry_view(reg), name, strlen(name));
    unsigned slot = r != NULL ? r->slot : 9999;
    shed_rcu_leave(registry_rcu(reg), t);
    return slot;
}

Test(registry, metrics_slots_stay_with_their_names)
{
    struct registry *reg = make();
    char names[SHED_METRICS_SLOTS][SHED_NAME_MAX], log[512];
    unsigned b = slot_of(reg, "burrow"), st = slot_of(reg, "storage");
    cr_assert_neq(b, st);
    cr_assert_eq(registry_slot_names(reg, names, SHED_METRICS_SLOTS), 2);
    cr_assert_str_eq(names[b], "burrow");
    cr_assert_str_eq(names[st], "storage");
    /* storage goes, queue comes: a new slot, burrow's unchanged. */
    struct shed_config *c = config("cell: a\ncredential: k\n"
                                   "services: {burrow: {kind: burrow, buckets: 64, k: 2, r: 2, "
                                   "weight_scale: 10}, queue: {kind: any}}\n");
    cr_assert_eq(registry_reconfigure(reg, c, 300, log, sizeof(log)), 0);
    shed_config_free(c);
    cr_assert_eq(slot_of(reg, "burrow"), b);
    unsigned q = slot_of(reg, "queue");
    cr_assert(q != b && q != st, "queue got slot %u", q);
    /* storage back: its old slot. */
    c = config(cfg_text);
    cr_assert_eq(registry_reconfigure(reg, c, 300, log, sizeof(log)), 0);
    shed_config_free(c);
    cr_assert_eq(slot_of(reg, "storage"), st);
    cr_assert_eq(registry_slot_names(reg, names, SHED_METRICS_SLOTS), 3);
    cr_assert_str_eq(names[q], "queue");
    /* At most <max> names are copied. */
    cr_assert_eq(registry_slot_names(reg, names, 1), 1);
    registry_destroy(reg);
}

Test(registry, status_json)
{
    struct registry *reg = make();
    run(reg, "1", 0, 300);
    json_t *st = registry_status(reg, 300);
    cr_assert_not_null(st);
    json_t *svcs = json_object_get(st, "services");
    cr_assert_eq(json_array_size(svcs), 2);
    json_t *m = json_array_get(json_object_get(json_array_get(svcs, 0), "members"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(m, "id")), "b1");
    cr_assert_str_eq(json_string_value(json_object_get(m, "state")), "up");
    json_decref(st);
    registry_destroy(reg);
}

/* Members are found by binary search over ids kept sorted: many ids heard in
 * a scrambled order, renewed, some deregistered, must each stay exactly one
 * record (a lookup miss would add a duplicate or refuse a renewal). */
Test(registry, many_members_found_in_any_order)
{
    static const char text[] = "cell: a\ncredential: k\n"
                               "limits: {max_members: 3000}\n"
                               "services: {burrow: {kind: burrow, buckets: 1024, k: 2, r: 2}}\n";
    struct shed_config *c = config(text);
    struct registry *reg = NULL;
    cr_assert_eq(registry_create(c, 1, &reg), 0);
    shed_config_free(c);
    enum { N = 2000 };
    struct proto_heartbeat hb = {.weight = 1, .state = PROTO_HB_UP, .incarnation = 1};
    struct proto_heartbeat_reply r;
    strcpy(hb.service, "burrow");
    for (int round = 0; round < 2; round++) {
        for (unsigned i = 0; i < N; i++) {
            unsigned k = (i * 7919u) % N; /* 7919 is prime: a permutation of 0..N-1 */
            snprintf(hb.id, sizeof(hb.id), "m%u", k);
            snprintf(hb.url, sizeof(hb.url), "http://127.0.0.1:%u", 10000 + k);
            cr_assert_eq(registry_heartbeat(reg, &hb, 10 * (uint64_t)round, &r), 0, "%s", hb.id);
        }
        cr_assert_eq(registry_size(reg), N, "round %d: one record per id", round);
    }
    for (unsigned k = 0; k < N; k += 2) {
        char id[16];
        int n = snprintf(id, sizeof(id), "m%u", k);
        cr_assert_eq(registry_deregister(reg, "burrow", 6, id, (size_t)n, 1, 20), 0, "%s", id);
    }
    registry_tick(reg, 30);
    for (unsigned k = 1; k < N; k += 2) {
        snprintf(hb.id, sizeof(hb.id), "m%u", k);
        snprintf(hb.url, sizeof(hb.url), "http://127.0.0.1:%u", 10000 + k);
        cr_assert_eq(registry_heartbeat(reg, &hb, 40, &r), 0, "%s renews", hb.id);
    }
    cr_assert_eq(registry_size(reg), N / 2, "the odd half stays");
    registry_destroy(reg);
}

Test(registry, hosts_of_failure_reports_follow_url_changes)
{
    struct registry *reg = make();
    struct proto_heartbeat hb = {.weight = 1, .state = PROTO_HB_UP, .incarnation = 1};
    struct proto_heartbeat_reply r;
    char url[64];

    cr_assert_eq(beat(reg, "b1", 1, 0, PROTO_HB_UP), 0); /* http://127.0.0.1:9049 */
    cr_assert(registry_host_url(reg, "127.0.0.1:9049", NULL, 0));
    cr_assert_not(registry_host_url(reg, "127.0.0.1:9050", NULL, 0));
    cr_assert_not(registry_host_url(reg, "127.0.0.1:904", NULL, 0));
    cr_assert(registry_host_url(reg, "127.0.0.1:9049", url, sizeof(url)));
    cr_assert_str_eq(url, "http://127.0.0.1:9049");
    /* the member moves: the old host:port is nobody's, the new one is */
    strcpy(hb.service, "burrow");
    strcpy(hb.id, "b1");
    strcpy(hb.url, "http://127.0.0.1:7777/");
    cr_assert_eq(registry_heartbeat(reg, &hb, 10, &r), 0);
    cr_assert_not(registry_host_url(reg, "127.0.0.1:9049", NULL, 0));
    cr_assert(registry_host_url(reg, "127.0.0.1:7777", NULL, 0));
    cr_assert_eq(registry_probe_failed(reg, "127.0.0.1:9049", 10, 20), 0);
    /* a url without a port is known by its default one */
    strcpy(hb.url, "http://localhost");
    cr_assert_eq(registry_heartbeat(reg, &hb, 20, &r), 0);
    cr_assert(registry_host_url(reg, "localhost:80", NULL, 0));
    /* a member that left is nobody's host any more */
    cr_assert_eq(registry_deregister(reg, "burrow", 6, "b1", 2, 1, 30), 0);
    cr_assert_not(registry_host_url(reg, "localhost:80", NULL, 0));
    registry_destroy(reg);
}

/* ---- Ring builds outside the lock (issue 17) ---- */

/* A big cell: many members join in one tick, so one build takes long. */
static const char big_text[] = "cell: a\ncredential: k\n"
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
big_beat(struct registry *reg, unsigned k, uint32_t weight, uint64_t now)
{
    struct proto_heartbeat hb = {.weight = weight, .state = PROTO_HB_UP, .incarnation = 1};
    struct proto_heartbeat_reply r;
    strcpy(hb.service, "burrow");
    snprintf(hb.id, sizeof(hb.id), "m%05u", k);
    snprintf(hb.url, sizeof(hb.url), "http://10.%u.%u.1:8080", k / 256, k % 256);
    return registry_heartbeat(reg, &hb, now, &r);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of <n> values (sorts a copy); n <= 16. */
static double
median(const double *v, size_t n)
{
    double c[16];
    memcpy(c, v, n * sizeof(*v));
    qsort(c, n, sizeof(*c), cmp_double);
    return n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
}

struct beater {
    struct registry *reg;
    unsigned n;          /* renews m00001..m<n-1> (m00000 is the main thread's) */
    atomic_bool stop;    /* set by the main thread */
    atomic_bool started; /* the first heartbeat is done */
    double max_ms;       /* slowest heartbeat */
    unsigned count;      /* heartbeats sent */
    int err;             /* first nonzero return */
};

/* Renew members round robin (no change to the ring), timing each call. */
static void *
beater_run(void *arg)
{
    struct beater *b = arg;
    for (unsigned k = 0; !atomic_load(&b->stop); k = (k + 7919) % (b->n - 1)) {
        double t0 = mono_ms();
        int rc = big_beat(b->reg, k + 1, 1, 20);
        double dt = mono_ms() - t0;
        if (rc != 0 && b->err == 0)
            b->err = rc;
        if (dt > b->max_ms)
            b->max_ms = dt;
        b->count++;
        atomic_store(&b->started, true);
        /* Spaced as heartbeats come (not a spinning thread that the
         * scheduler preempts mid-call on a busy machine). */
        nanosleep(&(struct timespec){.tv_nsec = 100 * 1000}, NULL);
    }
    return NULL;
}

/* A tick that builds a 20000-member ring while another thread heartbeats:
 * no heartbeat waits for the build (the lock is held only to copy the
 * membership out and to install the result). */
Test(registry, heartbeats_do_not_wait_for_a_ring_build, .timeout = 120)
{
    enum { N = 20000, ROUNDS = 5 };
    struct shed_config *c = config(big_text);
    struct registry *reg = NULL;
    cr_assert_eq(registry_create(c, 1, &reg), 0);
    shed_config_free(c);
    for (unsigned k = 0; k < N; k++)
        cr_assert_eq(big_beat(reg, k, 1, 0), 0);
    double build_ms[ROUNDS], hb_ms[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        /* Round 0 builds the first generation; later ones rebuild after a
         * weight change. */
        if (round > 0)
            cr_assert_eq(big_beat(reg, 0, (uint32_t)round + 1, 10), 0);
        struct beater b = {.reg = reg, .n = N};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, beater_run, &b), 0);
        while (!atomic_load(&b.started))
            sched_yield();
        double t0 = mono_ms();
        cr_assert(registry_tick(reg, 10 + (uint64_t)round), "a new generation");
        build_ms[round] = mono_ms() - t0;
        atomic_store(&b.stop, true);
        pthread_join(th, NULL);
        cr_assert_eq(b.err, 0);
        hb_ms[round] = b.max_ms;
        fprintf(stderr, "registry: round %d tick_ms=%.1f heartbeat_max_ms=%.2f heartbeats=%u\n",
                round, build_ms[round], hb_ms[round], b.count);
    }
    unsigned t = shed_rcu_enter(registry_rcu(reg));
    const struct registry_route *r = registry_route_find(registry_view(reg), "burrow", 6);
    cr_assert_eq(ring_size(r->ring), N);
    cr_assert_eq(r->generation, ROUNDS);
    cr_assert_eq(ring_member_at(r->ring, 0)->weight, ROUNDS);
    shed_rcu_leave(registry_rcu(reg), t);
    /* Medians of the rounds: the machine is shared, so one descheduled
     * heartbeat must not fail the test; a lock held for the build would. */
    double mb = median(build_ms, ROUNDS), mh = median(hb_ms, ROUNDS);
    fprintf(stderr, "registry: median tick_ms=%.1f heartbeat_max_ms=%.2f\n", mb, mh);
    cr_assert(mh < mb / 4, "slowest heartbeat %.2f ms, build %.1f ms (medians)", mh, mb);
    registry_destroy(reg);
}

/* interval 100ms, lease 300ms, join after 2 heartbeats, room for 20. */
static const char mid_text[] =
    "cell: a\ncredential: k\n"
    "timings: {heartbeat_interval: 100ms, lease: 300ms, evict_after: 1s, drain_window: 2s,\n"
    "          pin_lifetime: 1s, join_heartbeats: 2, evict_cap: 1}\n"
    "limits: {max_members: 20}\n"
    "services: {burrow: {kind: burrow, buckets: 64, k: 2, r: 2, weight_scale: 10}}\n";

static int
beat_w(struct registry *reg, const char *id, uint64_t inc, uint32_t weight, uint64_t now,
       enum proto_hb_state st)
{
    struct proto_heartbeat hb = {.weight = weight, .state = st, .incarnation = inc};
    struct proto_heartbeat_reply r;
    strcpy(hb.service, "burrow");
    snprintf(hb.id, sizeof(hb.id), "%s", id);
    snprintf(hb.url, sizeof(hb.url), "http://127.0.0.1:%u", 9000 + (unsigned)id[1]);
    return registry_heartbeat(reg, &hb, now, &r);
}

/* Weight of member "b<n>" in the current ring, 0 if it is not there. */
static uint32_t
weight_of(struct registry *reg, int n)
{
    char id[3] = {'b', (char)('0' + n), 0};
    uint32_t w = 0;
    unsigned t = shed_rcu_enter(registry_rcu(reg));
    const struct registry_route *r = registry_route_find(registry_view(reg), "burrow", 6);
    uint32_t idx = ring_find(r->ring, id);
    if (idx != RING_NONE)
        w = ring_member_at(r->ring, idx)->weight;
    shed_rcu_leave(registry_rcu(reg), t);
    return w;
}

/* What other threads do while the tick below builds (mu released). */
static void
during_build(void *arg)
{
    struct registry *reg = arg;
    uint64_t now = 215;
    reg->build_hook = NULL; /* once */
    /* b8 joins: two heartbeats */
    cr_assert_eq(beat_w(reg, "b8", 1, 1, now, PROTO_HB_UP), 0);
    cr_assert_eq(beat_w(reg, "b8", 1, 1, now, PROTO_HB_UP), 0);
    /* b2 (in the ring) leaves */
    cr_assert_eq(registry_deregister(reg, "burrow", 6, "b2", 2, 1, now), 0);
    /* b3 changes its weight */
    cr_assert_eq(beat_w(reg, "b3", 1, 5, now, PROTO_HB_UP), 0);
    /* liveness: b4 drains, b5's host is found dead by a probe */
    cr_assert_eq(beat_w(reg, "b4", 1, 1, now, PROTO_HB_DRAINING), 0);
    cr_assert_eq(registry_probe_failed(reg, "127.0.0.1:9053", now, now + 5000), 1);
    /* b7 (joining: in the copy the build works on) leaves and comes back
     * as a new incarnation that has not proved itself yet */
    cr_assert_eq(registry_deregister(reg, "burrow", 6, "b7", 2, 1, now), 0);
    cr_assert_eq(beat_w(reg, "b7", 2, 1, now, PROTO_HB_UP), 0);
}

/* Changes made while a ring builds (mu released) are not lost: liveness
 * lands in the table the build installs, membership changes in the one the
 * next tick builds. */
Test(registry, changes_during_a_build_land)
{
    struct shed_config *c = config(mid_text);
    struct registry *reg = NULL;
    cr_assert_eq(registry_create(c, 1, &reg), 0);
    shed_config_free(c);
    run(reg, "123456", 0, 200); /* t=0 and t=100: b1..b6 join */
    struct snap s = look(reg);
    cr_assert_eq(s.size, 6);
    uint64_t gen = s.gen;
    /* b7 proves itself: the next tick builds, and the hook runs then */
    cr_assert_eq(beat_w(reg, "b7", 1, 1, 200, PROTO_HB_UP), 0);
    cr_assert_eq(beat_w(reg, "b7", 1, 1, 205, PROTO_HB_UP), 0);
    for (const char *p = "123456"; *p; p++) {
        char id[3] = {'b', *p, 0};
        cr_assert_eq(beat_w(reg, id, 1, 1, 200, PROTO_HB_UP), 0);
    }
    reg->build_hook = during_build;
    reg->build_hook_arg = reg;
    cr_assert(registry_tick(reg, 210));
    cr_assert_null(reg->build_hook, "the hook ran during the build");
    s = look(reg);
    /* The table built from the copy: b1..b7 at the weights of the copy. */
    cr_assert_eq(s.gen, gen + 1);
    cr_assert_eq(s.size, 7);
    cr_assert_eq(weight_of(reg, 3), 1);
    cr_assert_eq(weight_of(reg, 8), 0, "joined after the copy");
    /* ...with every liveness change made during the build */
    cr_assert_eq(s.live[1], REGISTRY_UP);
    cr_assert_eq(s.live[2], REGISTRY_DOWN, "left during the build");
    cr_assert_eq(s.live[3], REGISTRY_UP);
    cr_assert_eq(s.live[4], REGISTRY_DRAINING);
    cr_assert_eq(s.live[5], REGISTRY_DOWN, "probe failed during the build");
    cr_assert_eq(s.live[6], REGISTRY_UP);
    cr_assert_eq(s.live[7], REGISTRY_DOWN, "left and came back unproved");
    struct registry_counts cn[2];
    cr_assert_eq(registry_counts(reg, cn, 2), 1);
    cr_assert_eq(cn[0].joining, 2, "b7 (new incarnation) and b8");
    /* The next tick builds again from the records as they are now. */
    cr_assert(registry_tick(reg, 220));
    s = look(reg);
    cr_assert_eq(s.gen, gen + 2);
    cr_assert_eq(s.size, 6, "b1 b3 b4 b5 b6 b8");
    cr_assert_eq(s.live[2], -1, "b2 left the ring");
    cr_assert_eq(s.live[7], -1, "b7 must prove itself again");
    cr_assert_eq(s.live[8], REGISTRY_UP, "b8 joined");
    cr_assert_eq(weight_of(reg, 3), 5, "b3's new weight");
    cr_assert_eq(s.live[4], REGISTRY_DRAINING);
    cr_assert_eq(s.live[5], REGISTRY_DOWN);
    /* Nothing changed since: no further generation. */
    cr_assert_not(registry_tick(reg, 230));
    cr_assert_eq(look(reg).gen, gen + 2);
    /* b7 proves itself again and joins. */
    cr_assert_eq(beat_w(reg, "b7", 2, 1, 240, PROTO_HB_UP), 0);
    cr_assert(registry_tick(reg, 250));
    s = look(reg);
    cr_assert_eq(s.gen, gen + 3);
    cr_assert_eq(s.live[7], REGISTRY_UP);
    registry_destroy(reg);
}

struct slow_build {
    struct registry *reg;
    atomic_bool in_build;  /* the hook started */
    _Atomic double end_ms; /* when the hook returned */
};

static void
slow_hook(void *arg)
{
    struct slow_build *sb = arg;
    atomic_store(&sb->in_build, true);
    nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
    atomic_store(&sb->end_ms, mono_ms());
}

static void *
slow_tick(void *arg)
{
    struct slow_build *sb = arg;
    registry_tick(sb->reg, 210); /* sb->reg may be freed once this returns */
    return NULL;
}

/* registry_destroy() called in the middle of a build waits for it (no
 * use after free under ASan, and it returns after the build). */
Test(registry, destroy_waits_for_a_build)
{
    struct shed_config *c = config(mid_text);
    struct registry *reg = NULL;
    cr_assert_eq(registry_create(c, 1, &reg), 0);
    shed_config_free(c);
    run(reg, "12", 0, 100);                                /* one heartbeat each */
    cr_assert_eq(beat(reg, "b1", 1, 200, PROTO_HB_UP), 0); /* b1 proves itself */
    struct slow_build sb = {.reg = reg};
    reg->build_hook = slow_hook;
    reg->build_hook_arg = &sb;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, slow_tick, &sb), 0);
    while (!atomic_load(&sb.in_build))
        sched_yield();
    registry_destroy(reg);
    double done = mono_ms();
    double end = atomic_load(&sb.end_ms);
    cr_assert(end > 0 && done >= end, "destroy returned after the build (%.1f >= %.1f)", done, end);
    pthread_join(th, NULL);
}

/* ---- Many threads at once: churn while ticks build ---- */

#define CHURN_IDS 600 /* per thread */

static const char churn_text[] =
    "cell: a\ncredential: k\n"
    "timings: {heartbeat_interval: 10s, lease: 60s, evict_after: 120s,\n"
    "          drain_window: 60s, join_heartbeats: 1}\n"
    "limits: {max_members: 5000}\n"
    "services: {burrow: {kind: burrow, buckets: 4096, k: 2, r: 3,\n"
    "                    weight_scale: 10}}\n";

struct churner {
    struct registry *reg;
    unsigned base; /* ids c<base>..c<base + CHURN_IDS - 1> are this thread's */
    uint64_t rng;  /* xorshift state */
    atomic_bool *stop;
    bool present[CHURN_IDS];
    uint32_t weight[CHURN_IDS];
    uint64_t inc[CHURN_IDS];
    int err;
};

static uint64_t
churn_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int
churn_beat(struct registry *reg, unsigned id, uint64_t inc, uint32_t weight)
{
    struct proto_heartbeat hb = {.weight = weight, .state = PROTO_HB_UP, .incarnation = inc};
    struct proto_heartbeat_reply r;
    strcpy(hb.service, "burrow");
    snprintf(hb.id, sizeof(hb.id), "c%04u", id);
    snprintf(hb.url, sizeof(hb.url), "http://10.9.%u.%u:80", id / 256, id % 256);
    return registry_heartbeat(reg, &hb, 100, &r);
}

/* Joins, leaves, comebacks and weight changes on this thread's own ids,
 * remembering what each id's record must end as. */
static void *
churn_run(void *arg)
{
    struct churner *c = arg;
    while (!atomic_load(c->stop) && c->err == 0) {
        unsigned k = (unsigned)(churn_rand(&c->rng) % CHURN_IDS), id = c->base + k;
        if (c->present[k] && churn_rand(&c->rng) % 3 == 0) {
            char name[8];
            int n = snprintf(name, sizeof(name), "c%04u", id);
            c->err = registry_deregister(c->reg, "burrow", 6, name, (size_t)n, c->inc[k], 100);
            c->present[k] = false;
            c->inc[k]++; /* a comeback is a new incarnation */
        } else {
            uint32_t w = 1 + (uint32_t)(churn_rand(&c->rng) % 3);
            c->err = churn_beat(c->reg, id, c->inc[k], w);
            c->present[k] = true;
            c->weight[k] = w;
        }
    }
    return NULL;
}

/* Readers route on whatever view is published while it is replaced. */
static void *
churn_read(void *arg)
{
    struct churner *c = arg;
    unsigned long sum = 0;
    while (!atomic_load(c->stop)) {
        unsigned t = shed_rcu_enter(registry_rcu(c->reg));
        const struct registry_route *r = registry_route_find(registry_view(c->reg), "burrow", 6);
        uint32_t row[RING_MAX_R];
        size_t n = ring_row(r->ring, (uint32_t)(churn_rand(&c->rng) % 4096), row);
        for (size_t i = 0; i < n; i++)
            sum += atomic_load(&r->live[row[i]]) + ring_member_at(r->ring, row[i])->weight;
        shed_rcu_leave(registry_rcu(c->reg), t);
    }
    c->err = sum == 0 ? -1 : 0; /* routed at least once */
    return NULL;
}

/* Two threads churn membership, one routes, the main thread ticks (each
 * tick builds with the records' mutex released); once they stop, one tick
 * brings the ring to exactly the records, and the one after has nothing
 * to build. */
Test(registry, concurrent_churn_converges, .timeout = 120)
{
    struct shed_config *cfg = config(churn_text);
    struct registry *reg = NULL;
    cr_assert_eq(registry_create(cfg, 1, &reg), 0);
    shed_config_free(cfg);
    atomic_bool stop = false;
    static struct churner ch[3];
    pthread_t th[3];
    memset(ch, 0, sizeof(ch));
    for (int i = 0; i < 3; i++) {
        ch[i].reg = reg;
        ch[i].base = (unsigned)i * CHURN_IDS;
        ch[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        ch[i].stop = &stop;
        for (unsigned k = 0; k < CHURN_IDS; k++)
            ch[i].inc[k] = 1;
    }
    registry_tick(reg, 100);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, i < 2 ? churn_run : churn_read, &ch[i]), 0);
    unsigned ticks = 0, built = 0;
    for (double t0 = mono_ms(); mono_ms() - t0 < 1000; ticks++) {
        built += registry_tick(reg, 100);
        nanosleep(&(struct timespec){.tv_nsec = 2 * 1000 * 1000},
                  NULL); /* as the daemon, not a spin */
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(ch[i].err, 0, "thread %d", i);
    }
    fprintf(stderr, "registry: churn: %u ticks, %u new generations\n", ticks, built);
    cr_assert_gt(built, 1);
    registry_tick(reg, 100);
    cr_assert_not(registry_tick(reg, 100), "the ring matches the records");
    size_t want = 0;
    unsigned t = shed_rcu_enter(registry_rcu(reg));
    const struct registry_route *r = registry_route_find(registry_view(reg), "burrow", 6);
    for (int i = 0; i < 2; i++)
        for (unsigned k = 0; k < CHURN_IDS; k++) {
            char id[8];
            snprintf(id, sizeof(id), "c%04u", ch[i].base + k);
            uint32_t idx = ring_find(r->ring, id);
            if (!ch[i].present[k]) {
                cr_assert_eq(idx, RING_NONE, "%s left", id);
                continue;
            }
            want++;
            cr_assert_neq(idx, RING_NONE, "%s is in the ring", id);
            cr_assert_eq(ring_member_at(r->ring, idx)->weight, ch[i].weight[k], "%s", id);
            cr_assert_eq(atomic_load(&r->live[idx]), REGISTRY_UP, "%s", id);
        }
    cr_assert_eq(ring_size(r->ring), want);
    shed_rcu_leave(registry_rcu(reg), t);
    cr_assert_eq(registry_size(reg), want);
    registry_destroy(reg);
}
