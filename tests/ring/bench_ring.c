/* SPDX-License-Identifier: ISC */
/*
 * ring-bench: the ring against a ketama baseline, side by side in one run
 * (the figures in docs/hashing.md). Prints "name: value unit" lines.
 *
 *   ring-bench           full run (N = 1000, 10000, 100000; a few minutes)
 *   ring-bench --quick   smoke run (small B, N = 1000 only), for CI
 *
 * Members: equal weights, 10 zones round-robin, R = 3. Movement counts
 * bucket-replicas whose member set changed ("all") or buckets whose primary
 * changed ("prim"), as a multiple of the optimal 1/(N+1) (join) or 1/N
 * (leave of an arbitrary member). Ketama: 160 points per unit weight, 32-bit
 * points, binary search over the sorted continuum (nginx / twemproxy style),
 * one result per lookup; ours returns the full row of R.
 */
#include "common/clock.h"
#include "ring/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <xxhash.h>

#define NKEYS 4096

struct set {
    struct ring_member *m;
    char (*id)[32];
    char (*url)[48];
    size_t n;
};

static bool quick;

static const char *zones[10] = {"z0", "z1", "z2", "z3", "z4", "z5", "z6", "z7", "z8", "z9"};

/* Members srv-0 .. srv-(n-1) plus room for one more. */
static void
set_make(struct set *s, size_t n)
{
    s->m = calloc(n + 1, sizeof(*s->m));
    s->id = calloc(n + 1, sizeof(*s->id));
    s->url = calloc(n + 1, sizeof(*s->url));
    if (!s->m || !s->id || !s->url) {
        fprintf(stderr, "ring-bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i <= n; i++) {
        snprintf(s->id[i], sizeof(s->id[i]), "srv-%07zu", i);
        snprintf(s->url[i], sizeof(s->url[i]), "http://10.%zu.%zu.%zu:8080", i >> 16,
                 (i >> 8) & 255, i & 255);
        s->m[i] = (struct ring_member){s->id[i], s->url[i], zones[i % 10], 100};
    }
    s->n = n;
}

static void
set_free(struct set *s)
{
    free(s->m);
    free(s->id);
    free(s->url);
}

static double
cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long
minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* CPU time and minor page faults of the last build(): the machine is shared
 * and noisy, and a fresh page costs ~17 us on this VM, so wall time alone
 * says little. */
static double last_cpu;
static long last_flt;

static struct ring *
build(const struct ring_config *cfg, const struct ring_member *m, size_t n, double *ms)
{
    struct ring *r = NULL;
    long f0 = minflt();
    double t0 = clock_mono_s() * 1e3, c0 = cpu_ms();
    int rc = ring_build(cfg, m, n, &r);
    last_cpu = cpu_ms() - c0;
    last_flt = minflt() - f0;
    if (ms)
        *ms = clock_mono_s() * 1e3 - t0;
    if (rc < 0) {
        fprintf(stderr, "ring-bench: build: %s\n", ring_strerror(rc));
        exit(1);
    }
    return r;
}

/* Build <reps> times; print the best wall time (with its CPU time and page
 * faults) as ring.build_ms<sfx>.<tag> and the first build apart. Returns the
 * last table. */
#ifdef RING_BENCH_ONE_THREAD
static const char sfx[] = "_1thread";
#else
static const char sfx[] = "";
#endif

static struct ring *
build_best(const struct ring_config *cfg, const struct ring_member *m, size_t n, int reps,
           const char *tag)
{
    double ms, best = 1e30, bcpu = 0, first = 0, fcpu = 0;
    long bflt = 0, fflt = 0;
    struct ring *r = NULL;
    for (int i = 0; i < reps; i++) {
        ring_destroy(r);
        r = build(cfg, m, n, &ms);
        if (i == 0) {
            first = ms;
            fcpu = last_cpu;
            fflt = last_flt;
        }
        if (ms < best) {
            best = ms;
            bcpu = last_cpu;
            bflt = last_flt;
        }
    }
    printf("ring.build_ms%s.%s: %.1f ms (B=2^%d, eps=%g, best of %d; cpu %.1f ms, %ld page "
           "faults)\n",
           sfx, tag, best, __builtin_ctz(cfg->buckets), cfg->eps, reps, bcpu, bflt);
    printf("ring.build_ms%s_first.%s: %.1f ms (first build; cpu %.1f ms, %ld page faults)\n", sfx,
           tag, first, fcpu, fflt);
    return r;
}

/* peak/mean of primaries and of all replicas (equal weights). */
static void
balance(const struct ring *r, double *prim, double *all)
{
    size_t n = ring_size(r);
    uint32_t *cp = calloc(n, sizeof(*cp)), *ca = calloc(n, sizeof(*ca));
    uint32_t row[RING_MAX_R];
    uint32_t b = ring_config(r)->buckets;
    size_t len = 0;
    for (uint32_t i = 0; i < b; i++) {
        len = ring_row(r, i, row);
        cp[row[0]]++;
        for (size_t j = 0; j < len; j++)
            ca[row[j]]++;
    }
    uint32_t mp = 0, ma = 0;
    for (size_t i = 0; i < n; i++) {
        mp = cp[i] > mp ? cp[i] : mp;
        ma = ca[i] > ma ? ca[i] : ma;
    }
    *prim = mp / ((double)b / (double)n);
    *all = ma / ((double)b * (double)len / (double)n);
    free(cp);
    free(ca);
}

/* Changed bucket-replicas (by id) and changed primaries between two tables. */
static void
movement(const struct ring *a, const struct ring *b, double *all, double *prim)
{
    uint32_t ra[RING_MAX_R], rb[RING_MAX_R];
    uint32_t nb = ring_config(a)->buckets;
    size_t moved = 0, pmoved = 0, cells = 0;
    for (uint32_t i = 0; i < nb; i++) {
        size_t la = ring_row(a, i, ra), lb = ring_row(b, i, rb);
        for (size_t x = 0; x < lb; x++) {
            const char *id = ring_member_at(b, rb[x])->id;
            bool found = false;
            for (size_t y = 0; y < la; y++)
                found |= strcmp(ring_member_at(a, ra[y])->id, id) == 0;
            moved += !found;
        }
        pmoved += strcmp(ring_member_at(a, ra[0])->id, ring_member_at(b, rb[0])->id) != 0;
        cells += lb;
    }
    *all = (double)moved / (double)cells;
    *prim = (double)pmoved / nb;
}

/* ---- ketama ------------------------------------------------------------- */

struct kpoint {
    uint32_t point;
    uint32_t server;
};

static int
cmp_kpoint(const void *a, const void *b)
{
    const struct kpoint *x = a, *y = b;
    if (x->point != y->point)
        return x->point < y->point ? -1 : 1;
    return x->server < y->server ? -1 : x->server > y->server;
}

static struct kpoint *
ketama_build(const struct set *s, size_t *np)
{
    size_t n = s->n * 160;
    struct kpoint *p = malloc(n * sizeof(*p));
    char buf[64];
    for (size_t i = 0; i < s->n; i++) {
        for (unsigned k = 0; k < 160; k++) {
            int len = snprintf(buf, sizeof(buf), "%s-%u", s->id[i], k);
            p[i * 160 + k] = (struct kpoint){(uint32_t)XXH3_64bits(buf, (size_t)len), (uint32_t)i};
        }
    }
    qsort(p, n, sizeof(*p), cmp_kpoint);
    *np = n;
    return p;
}

static uint32_t
ketama_lookup(const struct kpoint *p, size_t n, uint32_t h)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p[mid].point < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return p[lo == n ? 0 : lo].server;
}

/* ---- route timing ------------------------------------------------------- */

struct keys {
    char acct[NKEYS][24];
    char queue[NKEYS][16];
    char both[NKEYS][40];
    size_t alen[NKEYS], qlen[NKEYS], blen[NKEYS];
};

static void
keys_make(struct keys *k)
{
    for (unsigned i = 0; i < NKEYS; i++) {
        k->alen[i] = (size_t)snprintf(k->acct[i], sizeof(k->acct[i]), "account-%08x-%04u",
                                      i * 2654435761u, i % 9973);
        k->qlen[i] = (size_t)snprintf(k->queue[i], sizeof(k->queue[i]), "queue-%05u/m", i);
        k->blen[i] =
            (size_t)snprintf(k->both[i], sizeof(k->both[i]), "%s/%s", k->acct[i], k->queue[i]);
    }
}

static volatile uint32_t sink;

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One route: ours (account + key -> bucket -> full row of R) or ketama's
 * (hash of account/key -> one server). */
static inline uint32_t
route_one(int which, const struct ring *r, const struct kpoint *kp, size_t kn, const struct keys *k,
          unsigned j)
{
    if (which == 0) {
        uint32_t row[RING_MAX_R];
        uint32_t b = ring_bucket(ring_config(r), k->acct[j], k->alen[j], k->queue[j], k->qlen[j]);
        ring_row(r, b, row);
        return row[0];
    }
    return ketama_lookup(kp, kn, (uint32_t)XXH3_64bits(k->both[j], k->blen[j]));
}

/* Mean ns per route over routes [from, from + count) of the key sequence.
 * which: 0 = ring, 1 = ketama. */
static double
route_block(int which, const struct ring *r, const struct kpoint *kp, size_t kn,
            const struct keys *k, long from, long count)
{
    uint32_t acc = 0;
    uint64_t t0 = clock_mono_ns();
    for (long i = from; i < from + count; i++)
        acc += route_one(which, r, kp, kn, k, (unsigned)(i * 7919) & (NKEYS - 1));
    uint64_t t1 = clock_mono_ns();
    sink += acc;
    return (double)(t1 - t0) / (double)count;
}

/* p99 from <SAMPLES> individually timed routes minus the timer's own
 * median cost. */
static double
route_p99(int which, const struct ring *r, const struct kpoint *kp, size_t kn, const struct keys *k)
{
    enum { SAMPLES = 200000 };
    uint64_t *s = malloc(SAMPLES * sizeof(*s)), *e = malloc(SAMPLES * sizeof(*e));
    uint32_t acc = 0;
    if (!s || !e) {
        fprintf(stderr, "ring-bench: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < SAMPLES; i++) {
        uint64_t a = clock_mono_ns();
        e[i] = clock_mono_ns() - a;
    }
    for (long i = 0; i < SAMPLES; i++) {
        unsigned j = (unsigned)(i * 104729) & (NKEYS - 1);
        uint64_t a = clock_mono_ns();
        acc += route_one(which, r, kp, kn, k, j);
        s[i] = clock_mono_ns() - a;
    }
    qsort(s, SAMPLES, sizeof(*s), cmp_u64);
    qsort(e, SAMPLES, sizeof(*e), cmp_u64);
    double p99 = (double)s[SAMPLES * 99 / 100] - (double)e[SAMPLES / 2];
    sink += acc;
    free(s);
    free(e);
    return p99 < 0 ? 0 : p99;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of <n> values (sorts them). */
static double
median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define ROUNDS_MAX 64

/* Ours against ketama side by side: <rounds> rounds, each timing both over
 * the same <per> routes (same keys), the order alternating between rounds so
 * that neither side always runs first. A round's ratio only compares
 * measurements a few milliseconds apart, so load from other processes
 * mostly cancels; the medians drop the rounds it hit anyway. */
static void
route_compare(const struct ring *r, const struct kpoint *kp, size_t kn, const struct keys *k,
              int rounds, long per, double *ring_ns, double *ket_ns, double *ratio, double *rlo,
              double *rhi)
{
    double rn[ROUNDS_MAX], kn_[ROUNDS_MAX], q[ROUNDS_MAX];
    route_block(0, r, kp, kn, k, 0, per); /* warm-up, untimed */
    route_block(1, r, kp, kn, k, 0, per);
    for (int i = 0; i < rounds; i++) {
        long from = (long)i * per;
        if (i % 2 == 0) {
            rn[i] = route_block(0, r, kp, kn, k, from, per);
            kn_[i] = route_block(1, r, kp, kn, k, from, per);
        } else {
            kn_[i] = route_block(1, r, kp, kn, k, from, per);
            rn[i] = route_block(0, r, kp, kn, k, from, per);
        }
        q[i] = kn_[i] / rn[i];
    }
    *ring_ns = median(rn, (size_t)rounds);
    *ket_ns = median(kn_, (size_t)rounds);
    *ratio = median(q, (size_t)rounds); /* sorts q */
    *rlo = q[0];
    *rhi = q[rounds - 1];
}

/* ---- scenarios ---------------------------------------------------------- */

static void
scenario_n1000(void)
{
    struct ring_config cfg;
    ring_config_default(&cfg);
    cfg.buckets = quick ? 1u << 16 : 1u << 20;
    cfg.eps = quick ? 0.05 : 0.03;
    size_t n = 1000;
    struct set s;
    set_make(&s, n);
    double ms, prim, all;
    struct ring *base = build(&cfg, s.m, n, &ms);
    printf("ring.build_ms.n1000: %.1f ms (B=2^%d, eps=%.2f; cpu %.1f ms, %ld page faults)\n", ms,
           __builtin_ctz(cfg.buckets), cfg.eps, last_cpu, last_flt);
    balance(base, &prim, &all);
    printf("ring.peak_mean.n1000: %.4f ratio (primaries)\n", prim);
    printf("ring.peak_mean_all.n1000: %.4f ratio (all replicas)\n", all);

    /* Join: srv-n added. */
    double mall, mprim;
    struct ring *join = build(&cfg, s.m, n + 1, NULL);
    movement(base, join, &mall, &mprim);
    printf("ring.move_join.n1000: %.3f x_optimal (all replicas)\n", mall * (double)(n + 1));
    printf("ring.move_join_prim.n1000: %.3f x_optimal (primaries)\n", mprim * (double)(n + 1));
    ring_destroy(join);

    /* Leave: an arbitrary member (the middle one) removed. */
    struct ring_member victim = s.m[n / 2];
    s.m[n / 2] = s.m[n - 1];
    struct ring *leave = build(&cfg, s.m, n - 1, NULL);
    s.m[n - 1] = s.m[n / 2];
    s.m[n / 2] = victim;
    movement(base, leave, &mall, &mprim);
    printf("ring.move_leave.n1000: %.3f x_optimal (all replicas)\n", mall * (double)n);
    printf("ring.move_leave_prim.n1000: %.3f x_optimal (primaries)\n", mprim * (double)n);
    ring_destroy(leave);

    /* Same records, reversed order: same digest (and a rebuild: same digest). */
    char d1[33], d2[33];
    ring_digest(base, d1);
    struct ring_member *rev = malloc(n * sizeof(*rev));
    for (size_t i = 0; i < n; i++)
        rev[i] = s.m[n - 1 - i];
    struct ring *again = build(&cfg, rev, n, NULL);
    ring_digest(again, d2);
    printf("ring.digest_stable: %s\n", strcmp(d1, d2) == 0 ? "yes" : "no");
    ring_destroy(again);
    free(rev);

    /* Route: ours vs ketama, same keys, same run. */
    struct keys *k = malloc(sizeof(*k));
    keys_make(k);
    size_t kn;
    struct kpoint *kp = ketama_build(&s, &kn);
    int rounds = quick ? 9 : 41;
    long per = quick ? 50000 : 120000;
    double rmed, kmed, ratio, rlo, rhi;
    route_compare(base, kp, kn, k, rounds, per, &rmed, &kmed, &ratio, &rlo, &rhi);
    double rp99 = route_p99(0, base, kp, kn, k), kp99 = route_p99(1, base, kp, kn, k);
    printf("ring.route_ns.n1000: %.1f ns (B=2^%d, full row of 3; median of %d rounds)\n", rmed,
           __builtin_ctz(cfg.buckets), rounds);
    printf("ring.route_p99_ns.n1000: %.1f ns\n", rp99);
    printf("ketama.route_ns.n1000: %.1f ns (160 points, 1 server; median of %d rounds)\n", kmed,
           rounds);
    printf("ketama.route_p99_ns.n1000: %.1f ns\n", kp99);
    printf("ring.route_vs_ketama.n1000: %.2f x_faster (median of %d interleaved rounds of %ld "
           "routes each, same keys; rounds %.2f-%.2f)\n",
           ratio, rounds, per, rlo, rhi);

    /* Handoffs: a walk of 64 (the line shed's WALK_MAX) past the row. */
    {
        uint32_t walk[64];
        unsigned reps = quick ? 50 : 400;
        uint64_t w0 = clock_mono_ns();
        for (unsigned i = 0; i < reps; i++)
            sink += (uint32_t)ring_walk(base, (i * 2654435761u) & (cfg.buckets - 1), walk, 64);
        printf("ring.walk64_us.n1000: %.1f us (R + 61 handoffs)\n",
               (double)(clock_mono_ns() - w0) / reps / 1e3);
    }

    /* Ketama balance for reference: arc share of the largest server. */
    double *share = calloc(n, sizeof(*share));
    for (size_t i = 0; i < kn; i++) {
        uint32_t prev = i ? kp[i - 1].point : kp[kn - 1].point;
        share[kp[i].server] += (double)(uint32_t)(kp[i].point - prev) / 4294967296.0;
    }
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = share[i] > mx ? share[i] : mx;
    printf("ketama.peak_mean.n1000: %.4f ratio\n", mx * (double)n);
    free(share);
    free(kp);
    free(k);
    ring_destroy(base);
    set_free(&s);
}

static void
scenario_n10000(void)
{
    struct ring_config cfg;
    ring_config_default(&cfg);
    size_t n = 10000;
    struct set s;
    set_make(&s, n);
    double ms, prim, all;

    /* T7: pure build at B=2^16. */
    cfg.buckets = 1u << 16;
    cfg.eps = 0;
    struct ring *r = build_best(&cfg, s.m, n, 5, "n10000");
    ring_destroy(r);

    /* T5: balance at B=2^22 with the bounded-load pass. */
    cfg.buckets = 1u << 22;
    cfg.eps = 0.04;
    r = build(&cfg, s.m, n, &ms);
    balance(r, &prim, &all);
    printf("ring.build_ms_balanced.n10000: %.1f ms (B=2^22, eps=0.04; cpu %.1f ms)\n", ms,
           last_cpu);
    printf("ring.peak_mean.n10000: %.4f ratio (primaries, B=2^22)\n", prim);
    printf("ring.peak_mean_all.n10000: %.4f ratio (all replicas, B=2^22)\n", all);
    struct ring *join = build(&cfg, s.m, n + 1, NULL);
    double mall, mprim;
    movement(r, join, &mall, &mprim);
    printf("ring.move_join.n10000: %.3f x_optimal (all replicas, B=2^22)\n",
           mall * (double)(n + 1));
    printf("ring.move_join_prim.n10000: %.3f x_optimal (primaries, B=2^22)\n",
           mprim * (double)(n + 1));
    ring_destroy(join);
    ring_destroy(r);

    /* Issue 18 item 5, with the default eps (0.03): primaries moved by one
     * join against the optimal B/(n+1), and peak/mean of primaries. One
     * join is a noisy sample (a few hundred buckets, chains of them), so
     * three different members join the same table: mean, min and max. */
    cfg.eps = 0.03;
    r = build(&cfg, s.m, n, &ms);
    printf("ring.build_ms_balanced_eps3.n10000: %.1f ms (B=2^22, eps=0.03; cpu %.1f ms)\n", ms,
           last_cpu);
    balance(r, &prim, &all);
    printf("ring.peak_over_mean.primaries: %.4f ratio (n=10000, B=2^22, eps=0.03)\n", prim);
    printf("ring.peak_over_mean.all: %.4f ratio (n=10000, B=2^22, eps=0.03)\n", all);
    enum { JOINS = 3 };
    double jp[JOINS], ja[JOINS], psum = 0, asum = 0;
    for (int j = 0; j < JOINS; j++) {
        snprintf(s.id[n], sizeof(s.id[n]), "srv-%07zu", n + (size_t)j);
        join = build(&cfg, s.m, n + 1, NULL);
        movement(r, join, &mall, &mprim);
        jp[j] = mprim * (double)(n + 1);
        ja[j] = mall * (double)(n + 1);
        psum += jp[j];
        asum += ja[j];
        ring_destroy(join);
    }
    snprintf(s.id[n], sizeof(s.id[n]), "srv-%07zu", n);
    qsort(jp, JOINS, sizeof(*jp), cmp_double);
    qsort(ja, JOINS, sizeof(*ja), cmp_double);
    printf("ring.join_move.primaries.vs_optimal: %.3f ratio (n=10000, B=2^22, eps=0.03; mean of "
           "%d joins, min %.3f, max %.3f)\n",
           psum / JOINS, JOINS, jp[0], jp[JOINS - 1]);
    printf("ring.join_move.all.vs_optimal: %.3f ratio (same joins, all replicas; min %.3f, max "
           "%.3f)\n",
           asum / JOINS, ja[0], ja[JOINS - 1]);
    ring_destroy(r);
    set_free(&s);
}

static void
scenario_n100000(void)
{
    struct ring_config cfg;
    ring_config_default(&cfg);
    cfg.buckets = 1u << 20;
    cfg.eps = 0;
    size_t n = 100000;
    struct set s;
    set_make(&s, n);
    struct ring *r = build_best(&cfg, s.m, n, 3, "n100000");
    size_t table = (size_t)cfg.buckets * cfg.r * 4;
    /* The id and url text is the caller's data, copied once into an arena
     * (zones once per distinct zone): reported apart from the fixed part. */
    size_t text = 0;
    for (size_t i = 0; i < n; i++)
        text += strlen(s.id[i]) + strlen(s.url[i]) + 2;
    for (size_t z = 0; z < 10; z++)
        text += strlen(zones[z]) + 1;
    printf("ring.bytes_per_server.n100000: %.1f bytes (fixed record + zone index, without "
           "id/url text)\n",
           (double)(ring_bytes(r) - table - text) / (double)n);
    printf("ring.bytes_per_server_with_text.n100000: %.1f bytes (records + id/url text + zone "
           "index)\n",
           (double)(ring_bytes(r) - table) / (double)n);
    printf("ring.table_bytes.n100000: %zu bytes (B*R*4)\n", table);
    double prim, all;
    balance(r, &prim, &all);
    printf("ring.peak_mean_pure.n100000: %.4f ratio (primaries, eps=0)\n", prim);
    ring_destroy(r);
    set_free(&s);
}

#ifdef RING_BENCH_ONE_THREAD
static void
scenario_builds(void)
{
    struct ring_config cfg;
    ring_config_default(&cfg);
    struct set s;
    set_make(&s, 100000);
    cfg.eps = 0;
    cfg.buckets = 1u << 16;
    ring_destroy(build_best(&cfg, s.m, 10000, 5, "n10000"));
    if (!quick) {
        cfg.buckets = 1u << 20;
        ring_destroy(build_best(&cfg, s.m, 100000, 3, "n100000"));
    }
    set_free(&s);
}
#endif

int
main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else {
            fprintf(stderr, "usage: ring-bench [--quick]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef RING_BENCH_ONE_THREAD
    /* Linked with a ring built never to start its second thread: the
     * single-threaded build times, for comparison. */
    scenario_builds();
    return 0;
#endif
    scenario_n1000();
    if (!quick) {
        scenario_n10000();
        scenario_n100000();
    }
    return 0;
}
