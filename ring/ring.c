/* SPDX-License-Identifier: ISC */
/*
 * ring: two-step consistent hashing (account -> K buckets -> R members).
 *
 * Why this placement algorithm. Members are identified by strings, not by
 * dense slots handed out by a control plane, so the probe-over-slots design of
 * the first draft would need a slot assignment that is both a pure
 * function of the member set and stable under joins; every such assignment we
 * could think of (hash mod S, rank of the hash, linear hashing) either moves
 * whole members between slots on a join (2-3x optimal movement) or has a cliff
 * when S changes. Instead the row of a bucket is the prefix of its weighted
 * rendezvous (HRW) order, which is a pure function of the set by definition:
 *
 *   score(b, m) = -log2(1 - x(b, m)) / w(m),   x uniform in [0, 1)
 *
 * (exponential with rate w, so P(m first) = w / sum(w) exactly, and raising
 * one weight only pulls buckets to that member). Plain HRW costs B * N score
 * evaluations; we avoid that by making x invertible: for a chunk of Q = 2^16
 * buckets, x(b, m) = (P_m(b) + frac) / Q where P_m is a keyed bijection of the
 * chunk (2 multiply-xorshift rounds on 16 bits; keys = member part XOR chunk
 * part, so a chunk costs 2 XORs per member). So each member can *enumerate*
 * its buckets in increasing score order (v = 0, 1, 2, ... -> b = P_m^-1(v))
 * and stop at a threshold. Enumeration goes in rounds: threshold T (about 5
 * members per bucket), then 2T, 4T, 8T only for the buckets still short of
 * candidates or of distinct zones (when cheaper than scans); whatever is
 * still short (or, with caps, finds every listed member full) gets an O(N)
 * scan with a cheap lower bound. Each bucket's list is always the exact
 * start of its HRW order, so the table never depends on T or on the rounds:
 * only the speed does. Candidates are packed in 8 bytes (truncated score,
 * member, bucket offset; equal truncated scores are settled exactly) in one
 * reused block, radix-split by bucket (run lengths from the counts kept
 * while scoring); runs of up to 16 go through one or two sorting networks
 * and a merge, longer ones are selected lazily. The inverse bijection runs
 * for 8 members at once in 16-bit vector lanes (GNU C vector extensions).
 * Scores are integers (a fixed-point log, no libm), hence identical on
 * every machine.
 *
 * On top of HRW: the zone rule (min(R, #zones) distinct zones per row, walking
 * the HRW order) and, when eps > 0, a deterministic bounded-load pass over the
 * buckets in order 0..B-1 with dithered capacities (hashing.md 4.3): each
 * position takes the HRW-first member that is under its caps (primary cap
 * and all-replica cap, floor(share - 1 + u) so never above (1 + eps) times
 * the fair share); only if no member at all is under its caps does the
 * position fall back to plain HRW. The pass is on when eps * B >= N (at
 * least one bucket of slack per member), else the table is pure HRW.
 * Handoffs beyond R (ring_walk) continue the HRW order: one O(N) pass finds
 * up to 32 of them.
 *
 * Threads: when B * N >= 2^24 and B > 2^16 (more than one chunk)
 * ring_build() starts one more thread. Both
 * set up half of the members (keys, weights, v bounds), then enumerate
 * every chunk, taking batches of member blocks from a shared counter; the
 * rows are filled by both (pure table: sub-ranges of the chunk, also from a
 * counter) or by the calling thread alone in bucket order (caps on), so a
 * thread slowed down by other load on the machine simply does less. Each
 * thread has two candidate stream sets used by alternate chunks, so there
 * is no barrier after a fill: a thread goes on to enumerate chunk c + 1
 * while the other still fills chunk c (with caps, thread 1 runs ahead while
 * thread 0 fills). Both always pass the same barriers, also after a failure
 * (then work is only skipped). Every bucket sees the same candidate set and
 * sorts it by a total order, so the table and digest are identical to a
 * single-threaded build (pinned by tests). If the thread cannot be created,
 * the build runs single-threaded.
 *
 * Memory: a fresh 4 KB page costs ~13-17 us on the shared VM, and a build
 * used to touch ~3000 of them (~50 ms at N=100000). The temporaries of a
 * build are carved from one block, the records, zone index, strings, rows
 * and candidate streams are single blocks, 2 MB aligned with a
 * transparent-huge-page hint when large; members are sorted by an LSD radix
 * sort on a 16-byte window of the ids (after their common prefix) instead
 * of qsort() with its 4 MB temporary. Now ~20-550 faults per build. Large
 * blocks are mapped and unmapped, not malloc()ed (big_alloc()), so a
 * build's temporaries leave the process when it ends: peak RSS of one
 * build at B=2^16 went 137 -> 8.5 MB (N=10), 29.8 -> 8.7 MB (N=1000), with
 * the first round no longer growing its streams for room it never used;
 * build times unchanged within noise (tests/shed/bench_memory.py has what
 * a whole shed holds).
 *
 * Measured with ring-bench / ring-bench-1thread on the shared 2-vCPU VM (gcc
 * -O3 release, R=3, 10 zones, equal weights), three runs each, alternating
 * with the previous version (same benchmark code) at load 0.4-0.6; best of
 * 3-5 builds per run, ranges over the runs:
 *   build N=100000 B=2^20 pure    76-82 ms wall, 141-147 ms CPU, 2 threads
 *                                 (was 140-147 ms wall, 222-230 ms CPU);
 *                                 1 thread 112-113 ms (was 187-195 ms)
 *   build N=10000 B=2^16 pure     5.9-6.0 ms, 1 thread (one chunk; was
 *                                 8.5-8.6 ms wall, 13 ms CPU, 2 threads)
 *   build N=1000 B=2^20 eps=0.03  95-125 ms wall, 145-168 ms CPU (was
 *                                 155-169 ms wall, 183-200 ms CPU)
 *   build N=10000 B=2^22 eps=0.04 426-433 ms (was 643-659 ms)
 *   With the other vCPU busy (load 1.2-2.4) N=100000 took 69-144 ms (was
 *   136-249 ms): the two threads share out work as they go.
 *   instructions, 1 thread, N=100000 B=2^20: 3.12 G -> 1.49 G -> 1.35 G
 *   per build (the last step: flags tested before appends in the extra
 *   rounds, first round scored on the spot); CPU at load 1.7-3, 8
 *   alternating runs: 114-134 ms against 116-142 ms before that step (the
 *   load hides most of it); ~5-10% of a build is the kernel zeroing the
 *   12.6 MB of fresh rows (4-byte ids past 65535 members).
 *   per bucket: ~6 candidates, ~20-25 bijection steps, a sort and a fill;
 *   rounds: 6.4 M triples scored in the first, 1.1 M and 0.08 M in the
 *   second and third (19% and 0.7% of buckets short), lambda 5 is the
 *   instruction minimum (4: +3%, 6: +1%, 7: +10%).
 *   route account+key -> row of 3, N=1000 B=2^20: 29.6-29.8 ns (was
 *   31.5-31.8 ns), 3.37-3.52x ketama (median of 41 interleaved rounds;
 *   3.25-3.61x with the other vCPU busy); a tight loop of routes went
 *   ~30.5 -> ~23.5 ns (inlined xxhash, fewer account buckets, unrolled row)
 *   N=1000 B=2^20 eps=0.03: peak/mean 1.0300, move join 0.99x / leave 1.01x
 *   N=10000 B=2^22 eps=0.04: peak/mean 1.040, join 1.04x all replicas
 *   ring_walk(64) at N=1000: ~38-39 us (was ~8 ms: one O(N) scan per handoff)
 */
#include "ring/ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#define XXH_INLINE_ALL /* short keys: inlined and specialised, no PLT call */
#include <xxhash.h>

__extension__ typedef unsigned __int128 u128;

#define CHUNK_BITS 16 /* Q = 2^16 buckets share one bijection per member */
#define URL_MAX    2048
#define ZONE_MAX   255
#define ROUNDS     2 /* of the bijection; enumerate() is unrolled for 2 */
#define GOLD       0x9e3779b97f4a7c15ull

struct rmem {
    struct ring_member pub; /* strings point into ring->arena */
    uint64_t hash;          /* XXH3_64(id, seed_place) */
};

struct ring {
    struct ring_config cfg;
    struct rmem *mem; /* sorted by id; one block with zone and zlist */
    size_t n;
    char *arena;                        /* all strings */
    size_t mem_len, arena_len, row_len; /* bytes of the big_alloc() blocks */
    uint32_t nzones;
    uint32_t *zone;   /* n: member -> index into the sorted distinct zones */
    uint32_t *zstart; /* nzones + 1: members of zone z are zlist[zstart[z]..] */
    uint32_t *zlist;
    uint32_t rlen;   /* entries per row: min(R, n) */
    uint16_t *row16; /* B * rlen when n <= 65535 */
    uint32_t *row32; /* otherwise */
    size_t bytes;    /* heap bytes held */
    unsigned char digest[16];
};

/* ---- hashing primitives ------------------------------------------------- */

static uint64_t
fmix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t
mulhi(uint64_t a, uint64_t b)
{
    return (uint64_t)(((u128)a * b) >> 64);
}

/* floor(2^64 / k) for the series terms x^k / k. */
static const uint64_t inv_k[18] = {
    0,
    0,
    0x8000000000000000ull,
    0x5555555555555555ull,
    0x4000000000000000ull,
    0x3333333333333333ull,
    0x2aaaaaaaaaaaaaaaull,
    0x2492492492492492ull,
    0x2000000000000000ull,
    0x1c71c71c71c71c71ull,
    0x1999999999999999ull,
    0x1745d1745d1745d1ull,
    0x1555555555555555ull,
    0x13b13b13b13b13b1ull,
    0x1249249249249249ull,
    0x1111111111111111ull,
    0x1000000000000000ull,
    0x0f0f0f0f0f0f0f0full,
};

#define LOG2E_Q63 0xb8aa3b295c17f0bcull

/* (5 - log2(j + 1)) in Q57 for j = 16..31 (exact to the last bit). */
static const uint64_t log_tab[16] = {
    131510464259414483u, 119626414534206946u, 108385067846754263u, 97720460134261672u,
    87576288906659770u,  77904113947946888u,  68661958309336474u,  59813207267103473u,
    51325732192667472u,  43171186360152899u,  35324433725454546u,  27763081639556298u,
    20467095597535835u,  13418479325509273u,  6601007343163605u,   0u,
};

/* -log2(1 - x / 2^64) in Q57 for x < 2^60 (so 1 - x >= 15/16): the series
 * sum x^k / k times log2(e), integer only. */
static uint64_t
nlog_small(uint64_t x)
{
    uint64_t p = x, s = x;
    for (unsigned k = 2; k < 18; k++) {
        p = mulhi(p, x);
        if (p == 0)
            break;
        s += mulhi(p, inv_k[k]);
    }
    return mulhi(s, LOG2E_Q63) >> 6;
}

/* -log2(1 - x / 2^64) in Q57 for any x: at most 2^63. Integer arithmetic
 * only, so every machine computes the same bits. */
static uint64_t
nlog(uint64_t x)
{
    if (x < (1ull << 60))
        return nlog_small(x);
    uint64_t y = (uint64_t)0 - x; /* 1 - x, >= 1 */
    unsigned n = 64 - (unsigned)__builtin_clzll(y);
    uint64_t z = y << (64 - n); /* in [1/2, 1) */
    unsigned j = (unsigned)(z >> 59);
    uint64_t t = (uint64_t)(((u128)z << 5) / (j + 1)); /* z * 32/(j+1) in [16/17, 1) */
    return ((uint64_t)(64 - n) << 57) + nlog_small((uint64_t)0 - t) + log_tab[j - 16];
}

/* ---- per-member bijection of a chunk ------------------------------------ */

/* Member m, chunk c: P(y) = ROUNDS (2) rounds of v = ((v ^ k_r) * a_r) mod
 * Q, v ^= v >> ceil(q/2). Only the low q <= 16 bits of keys and multipliers
 * matter, so they are kept as 16-bit values; k_r = km_r(member) ^ kc_r(chunk)
 * so that a new chunk costs two XORs per member. For a fixed bucket P_m(y)
 * is uniform over random keys already after one round, which is what HRW
 * needs; the second round decorrelates a member's buckets. */
struct perm {
    uint32_t a[ROUNDS];    /* odd multipliers, low 16 bits */
    uint32_t ainv[ROUNDS]; /* their inverses mod 2^16 */
    uint32_t k[ROUNDS];    /* member part of the keys, low 16 bits */
};

static uint64_t
inverse_odd(uint64_t a)
{
    uint64_t x = a; /* correct to 3 bits; each step doubles */
    for (int i = 0; i < 5; i++)
        x *= 2 - a * x;
    return x;
}

static void
perm_member(struct perm *p, uint64_t h, bool with_inverse)
{
    for (int r = 0; r < ROUNDS; r++) {
        p->a[r] = (uint32_t)(fmix(h + (uint64_t)(r + 1) * GOLD) & 0xffff) | 1;
        p->ainv[r] = with_inverse ? (uint32_t)(inverse_odd(p->a[r]) & 0xffff) : 0;
        p->k[r] = (uint32_t)(fmix(h ^ ((uint64_t)(r + 1) * 0x632be59bd9b4e019ull)) & 0xffff);
    }
}

/* Chunk part of the keys. */
static void
perm_chunk(uint32_t kc[ROUNDS], uint64_t chunk)
{
    for (int r = 0; r < ROUNDS; r++)
        kc[r] =
            (uint32_t)(fmix(chunk * 0xd6e8feb86659fd93ull + (uint64_t)r + 0x632be59bd9b4e019ull) &
                       0xffff);
}

static uint32_t
perm_fwd(const struct perm *p, const uint32_t kc[ROUNDS], uint32_t y, unsigned q)
{
    uint32_t mask = (uint32_t)(((uint64_t)1 << q) - 1), v = y;
    unsigned s = (q + 1) / 2;
    for (int r = 0; r < ROUNDS; r++) {
        v = ((v ^ p->k[r] ^ kc[r]) * p->a[r]) & mask;
        v ^= v >> s;
    }
    return v;
}

/* Lower bound of nlog(v / Q): -log2(1 - x) >= x log2(e). */
static uint64_t
nlog_lb(uint32_t v, unsigned q)
{
    return q ? mulhi((uint64_t)v << (64 - q), LOG2E_Q63) >> 6 : 0;
}

/* Grid values nlog(v / Q), computed on demand up to <len> (build only). */
struct etab {
    uint64_t *e; /* Q + 1 entries, valid below len */
    uint32_t len;
    unsigned q;
};

static uint64_t
etab_at(struct etab *t, uint32_t v)
{
    while (t->len <= v) {
        t->e[t->len] = nlog((uint64_t)t->len << (64 - t->q));
        t->len++;
    }
    return t->e[v];
}

/* E(b, m) = -log2(1 - x) in Q57 with x = (v + frac) / Q, an Exp(ln 2) draw.
 * Between the grid points v / Q it is interpolated linearly (relative error
 * ~1e-10, monotone); the last interval, where the log diverges, is computed
 * directly. <t> caches the grid and may be NULL. */
static inline uint64_t
escore(uint64_t h, uint32_t bucket, uint32_t v, unsigned q, struct etab *t)
{
    uint64_t f = fmix(h ^ ((uint64_t)bucket * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull));
    if (q == 0)
        return nlog(f);
    if (v == ((uint32_t)1 << q) - 1)
        return nlog(((uint64_t)v << (64 - q)) | (f >> q));
    bool tab = t && v + 1 < t->len; /* else computed directly: same bits */
    uint64_t lo = tab ? t->e[v] : nlog((uint64_t)v << (64 - q));
    uint64_t hi = tab ? t->e[v + 1] : nlog((uint64_t)(v + 1) << (64 - q));
    return lo + mulhi(hi - lo, f);
}

static unsigned
chunk_bits(const struct ring_config *cfg)
{
    unsigned b = (unsigned)__builtin_ctz(cfg->buckets);
    return b < CHUNK_BITS ? b : CHUNK_BITS;
}

/* ---- config ------------------------------------------------------------- */

void
ring_config_default(struct ring_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->buckets = 65536;
    cfg->k = 3;
    cfg->r = 3;
    cfg->weight_scale = 200;
    cfg->eps = 0.03;
    cfg->seed_account = 0x5348454441434354ull; /* "SHEDACCT" */
    cfg->seed_key = 0x534845444b455953ull;     /* "SHEDKEYS" */
    cfg->seed_place = 0x534845445040414eull;   /* "SHEDP@AN" */
}

int
ring_config_check(const struct ring_config *cfg)
{
    if (cfg == NULL)
        return -RING_EBADCONFIG;
    uint32_t b = cfg->buckets;
    if (b == 0 || b > RING_MAX_BUCKETS || (b & (b - 1)) != 0)
        return -RING_EBADCONFIG;
    if (cfg->k == 0 || cfg->k > RING_MAX_K || cfg->k > b)
        return -RING_EBADCONFIG;
    if (cfg->r == 0 || cfg->r > RING_MAX_R)
        return -RING_EBADCONFIG;
    if (cfg->weight_scale == 0 || cfg->weight_scale > RING_WEIGHT_MAX)
        return -RING_EBADCONFIG;
    if (!(cfg->eps >= 0.0 && cfg->eps <= 1.0)) /* also rejects NaN */
        return -RING_EBADCONFIG;
    return 0;
}

static bool
config_equal(const struct ring_config *a, const struct ring_config *b)
{
    return a->buckets == b->buckets && a->k == b->k && a->r == b->r &&
           a->weight_scale == b->weight_scale && memcmp(&a->eps, &b->eps, sizeof(a->eps)) == 0 &&
           a->seed_account == b->seed_account && a->seed_key == b->seed_key &&
           a->seed_place == b->seed_place;
}

/* ---- account -> buckets, key -> index ----------------------------------- */

/* The first <want> (1..K) of the account's buckets: the list is generated
 * in order, so this is a prefix of the full list of K. */
static void
account_buckets(const struct ring_config *cfg, const char *account, size_t len, uint32_t *out,
                uint32_t want)
{
    XXH128_hash_t h = XXH3_128bits_withSeed(account, len, cfg->seed_account);
    unsigned bits = (unsigned)__builtin_ctz(cfg->buckets);
    uint64_t step = h.high64 | 1;
    /* The first bucket can collide with nothing. */
    out[0] = bits ? (uint32_t)(h.low64 >> (64 - bits)) : 0;
    uint32_t got = 1;
    /* Double hashing; the bound only matters for adversarial step values, and
     * the fill below keeps the output deterministic even then. */
    for (uint64_t i = 1; got < want && i < 4096; i++) {
        uint64_t x = h.low64 + i * step;
        uint32_t b = bits ? (uint32_t)(x >> (64 - bits)) : 0;
        bool dup = false;
        for (uint32_t j = 0; j < got; j++)
            dup |= out[j] == b;
        if (!dup)
            out[got++] = b;
    }
    for (uint32_t b = got ? out[got - 1] : 0; got < want;) {
        b = (b + 1) & (cfg->buckets - 1);
        bool dup = false;
        for (uint32_t j = 0; j < got; j++)
            dup |= out[j] == b;
        if (!dup)
            out[got++] = b;
    }
}

void
ring_account_buckets(const struct ring_config *cfg, const char *account, size_t len, uint32_t *out)
{
    account_buckets(cfg, account, len, out, cfg->k);
}

uint32_t
ring_jump(uint64_t key, uint32_t n)
{
    int64_t b = -1, j = 0;
    while (j < (int64_t)n) {
        b = j;
        key = key * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((key >> 33) + 1)));
    }
    return (uint32_t)b;
}

uint32_t
ring_key_index(const struct ring_config *cfg, const char *key, size_t len)
{
    return ring_jump(XXH3_64bits_withSeed(key, len, cfg->seed_key), cfg->k);
}

uint32_t
ring_bucket(const struct ring_config *cfg, const char *account, size_t alen, const char *key,
            size_t klen)
{
    /* The key's index first: only that prefix of the account's list is
     * needed (same bucket as taking it from the full list). */
    uint32_t b[RING_MAX_K], j = ring_key_index(cfg, key, klen);
    account_buckets(cfg, account, alen, b, j + 1);
    return b[j];
}

uint32_t
ring_message_bucket(const struct ring_config *cfg, const char *account, size_t alen,
                    const char *queue, size_t qlen, const char *msg, size_t mlen)
{
    char key[RING_ID_KEY_MAX];
    if (qlen + 1 + mlen > sizeof(key))
        return RING_NONE;
    memcpy(key, queue, qlen);
    key[qlen] = '/';
    memcpy(key + qlen + 1, msg, mlen);
    return ring_bucket(cfg, account, alen, key, qlen + 1 + mlen);
}

/* ---- build -------------------------------------------------------------- */

struct zref {
    const char *zone;
    uint32_t idx;
};

static int
cmp_zref(const void *a, const void *b)
{
    const struct zref *x = a, *y = b;
    int c = strcmp(x->zone, y->zone);
    if (c != 0)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Large blocks (the rows, the candidate streams, the build's temporaries)
 * are mapped on their own and unmapped when freed, so that a build gives
 * its memory back to the system at once. From malloc() they stayed in the
 * heap: glibc raises its mmap threshold to the largest block freed (up to
 * 32 MB), so after the first build every temporary came from the heap, and
 * 2 MB aligned blocks cut there left free, resident holes that later
 * allocations pinned (a shed grown to 10000 members held ~100 MB after its
 * rebuilds, ~4 MB of it in use). Blocks of 1 MB and more are 2 MB aligned
 * and ask for transparent huge pages: one fault per 2 MB instead of 512,
 * which matters when a fresh page costs ~17 us (as on the shared VM). A
 * hint only; plain pages also work. Free with big_free() and the same
 * <bytes>. */
#define HUGE_PAGE (2u << 20)
#define BIG_MAP   (256u << 10) /* smaller blocks come from malloc() */

static size_t
big_len(size_t bytes)
{
    if (bytes >= HUGE_PAGE / 2)
        return (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    return bytes;
}

static void *
big_alloc(size_t bytes)
{
    if (bytes < BIG_MAP)
        return malloc(bytes);
    size_t len = big_len(bytes), extra = bytes >= HUGE_PAGE / 2 ? HUGE_PAGE : 0;
    char *p = mmap(NULL, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (extra) { /* keep the 2 MB aligned <len> bytes, unmap the rest */
        size_t head = (HUGE_PAGE - (uintptr_t)p % HUGE_PAGE) % HUGE_PAGE;
        if (head)
            (void)munmap(p, head);
        if (extra - head)
            (void)munmap(p + head + len, extra - head);
        p += head;
#ifdef MADV_HUGEPAGE
        (void)madvise(p, len, MADV_HUGEPAGE);
#endif
    }
    return p;
}

static void
big_free(void *p, size_t bytes)
{
    if (bytes < BIG_MAP)
        free(p);
    else if (p != NULL)
        (void)munmap(p, big_len(bytes));
}

/* Many arrays in one block: carve() hands out 64-byte aligned pieces; a
 * first pass with base == NULL only adds up the size. One block (on huge
 * pages when large) instead of a dozen mallocs saves thousands of page
 * faults per build. */
struct carve {
    char *base;
    size_t used;
};

static void *
carve(struct carve *c, size_t bytes)
{
    size_t off = (c->used + 63) & ~(size_t)63;
    c->used = off + bytes;
    return c->base ? c->base + off : NULL;
}

#define SUB_BITS   6 /* candidates are radix-split into 64 streams per chunk */
#define MAX_ROUNDS 4 /* thresholds T, 2T, 4T, 8T, then the O(N) scan */

/* Candidates of one sub-range of a chunk, packed in 8 bytes:
 * (score >> sshift) << (mbits + ybits) | member << ybits | bucket offset in
 * the sub-range. All streams share one block (ring of width <cap> each). */
struct stream {
    uint64_t *key;
    uint32_t len; /* not size_t: a uint64_t store into key[] cannot alias it */
};

/* Enumeration runs over blocks of ELANES members at once: their inverse
 * bijection keys side by side, so one step of the inverse is a few vector
 * operations on 16-bit lanes (GNU C vector extensions: SSE2 on x86-64,
 * plain scalar code where there is no vector unit; the same bits either
 * way). */
#define ELANES 8
typedef uint16_t v16x8 __attribute__((vector_size(16)));

struct lanes {
    v16x8 i0, i1; /* ainv[0], ainv[1] of the block's members */
    v16x8 k0, k1; /* their member keys k[0], k[1] */
};

/* The v range a block enumerates in one round (the same in every chunk):
 * the union of its members' ranges; <same> when they are all equal (equal
 * weights), so no lane needs its own bound check. */
struct span {
    uint32_t vmin, vmax;
    uint32_t same;
};

/* Build-time state. */
struct pass {
    struct ring *ring;
    unsigned q;
    unsigned mbits;  /* bits of a packed candidate: member index */
    unsigned ybits;  /* ... and bucket offset in its stream (lowest) */
    unsigned sshift; /* score bits dropped above them */
    struct stream *streams;
    size_t nsub, scap;   /* streams, capacity of each */
    uint64_t *sblock;    /* their storage: nsub * scap */
    uint32_t kc[ROUNDS]; /* keys of the current chunk */
    struct perm *perms;  /* n */
    struct lanes *lanes; /* ceil(n / ELANES): the inverse keys, by block */
    struct span *span;   /* ceil(n / ELANES) * MAX_ROUNDS */
    uint64_t *hash;      /* n: member hashes, dense */
    uint32_t *zbit;      /* n: 1 << (zone % 32) */
    uint64_t *wmul;      /* n: UINT64_MAX / weight, score = E * wmul >> 64 */
    struct etab et;
    uint32_t *cap;  /* 2n: primary cap, all-replica cap; NULL = no caps */
    uint32_t *used; /* 2n: counters */
};

static void
row_store(struct ring *ring, uint32_t bucket, const uint32_t *row)
{
    size_t off = (size_t)bucket * ring->rlen;
    for (uint32_t i = 0; i < ring->rlen; i++) {
        if (ring->row16)
            ring->row16[off + i] = (uint16_t)row[i];
        else
            ring->row32[off + i] = row[i];
    }
}

static bool
in_row(const uint32_t *row, uint32_t len, uint32_t m)
{
    for (uint32_t i = 0; i < len; i++)
        if (row[i] == m)
            return true;
    return false;
}

static bool
zone_used(const struct ring *ring, const uint32_t *row, uint32_t len, uint32_t zone)
{
    for (uint32_t i = 0; i < len; i++)
        if (ring->zone[row[i]] == zone)
            return true;
    return false;
}

/* Exact score of member <m> for <bucket> of the current chunk. */
static uint64_t
build_score(struct pass *ps, uint32_t m, uint32_t bucket)
{
    unsigned q = ps->q;
    uint32_t local = q ? bucket & (((uint32_t)1 << q) - 1) : 0;
    uint32_t v = q ? perm_fwd(&ps->perms[m], ps->kc, local, q) : 0;
    return mulhi(escore(ps->ring->mem[m].hash, bucket, v, q, &ps->et), ps->wmul[m]);
}

/* HRW order of two packed candidates of <bucket>: by score, then member. The
 * packed score is truncated, so equal prefixes are settled exactly. */
static bool
cand_less(struct pass *ps, uint32_t bucket, uint64_t a, uint64_t b)
{
    unsigned low = ps->mbits + ps->ybits;
    if ((a >> low) != (b >> low))
        return a < b;
    uint64_t mask = ((uint64_t)1 << ps->mbits) - 1;
    uint32_t ma = (uint32_t)(a >> ps->ybits & mask), mb = (uint32_t)(b >> ps->ybits & mask);
    uint64_t sa = build_score(ps, ma, bucket), sb = build_score(ps, mb, bucket);
    return sa < sb || (sa == sb && ma < mb);
}

static bool
at_cap(const struct pass *ps, uint32_t m, uint32_t pos)
{
    return ps->used[2 * m + 1] >= ps->cap[2 * m + 1] ||
           (pos == 0 && ps->used[2 * m] >= ps->cap[2 * m]);
}

/* HRW-first member acceptable for position <len> of <bucket>'s row, over all
 * members (or, when a new zone is required, the unused zones' members):
 * O(N), but most members cost one bijection and a lower bound. */
static uint32_t
scan_pick(struct pass *ps, uint32_t bucket, const uint32_t *row, uint32_t len, bool need_zone,
          bool caps)
{
    const struct ring *ring = ps->ring;
    unsigned q = ps->q;
    uint32_t local = q ? bucket & (((uint32_t)1 << q) - 1) : 0;
    uint32_t best = RING_NONE;
    uint64_t bs = 0;
    for (uint32_t z = 0; z < (need_zone ? ring->nzones : 1); z++) {
        if (need_zone && zone_used(ring, row, len, z))
            continue;
        uint32_t lo = need_zone ? ring->zstart[z] : 0;
        uint32_t hi = need_zone ? ring->zstart[z + 1] : (uint32_t)ring->n;
        for (uint32_t i = lo; i < hi; i++) {
            uint32_t m = need_zone ? ring->zlist[i] : i;
            uint32_t v = q ? perm_fwd(&ps->perms[m], ps->kc, local, q) : 0;
            if (best != RING_NONE) {
                uint64_t e = v < ps->et.len ? ps->et.e[v] : nlog_lb(v, q);
                if (mulhi(e, ps->wmul[m]) > bs)
                    continue;
            }
            if (in_row(row, len, m) || (caps && at_cap(ps, m, len)))
                continue;
            uint64_t s = mulhi(escore(ring->mem[m].hash, bucket, v, q, &ps->et), ps->wmul[m]);
            if (best == RING_NONE || s < bs || (s == bs && m < best)) {
                best = m;
                bs = s;
            }
        }
    }
    return best;
}

/* Move the HRW-smallest of list[from..cnt) to list[from]. Runs are short
 * (~5-10), and only the first few positions are usually needed: a branch-free
 * minimum of the packed keys (truncated score, then member), then an exact
 * check among equal truncated scores (rare). */
static void
select_min(struct pass *ps, uint32_t bucket, uint64_t *list, uint32_t from, uint32_t cnt)
{
    unsigned low = ps->mbits + ps->ybits;
    uint32_t best = from;
    uint64_t bk = list[from], second = UINT64_MAX;
    for (uint32_t x = from + 1; x < cnt; x++) {
        uint64_t k = list[x];
        bool lt = k < bk;
        second = lt ? bk : (k < second ? k : second);
        best = lt ? x : best;
        bk = lt ? k : bk;
    }
    if (second != UINT64_MAX && (second >> low) == (bk >> low))
        for (uint32_t x = from; x < cnt; x++)
            if (x != best && (list[x] >> low) == (bk >> low) &&
                cand_less(ps, bucket, list[x], list[best]))
                best = x;
    uint64_t t = list[from];
    list[from] = list[best];
    list[best] = t;
}

/* Choose the row of <bucket> from <list>, the exact start of its HRW order
 * (every member scoring below some threshold; list[0..sorted) sorted), or by
 * a scan of all members when the list runs out. */
static void
fill_row(struct pass *ps, uint32_t bucket, uint64_t *list, uint32_t cnt, uint32_t sorted)
{
    struct ring *ring = ps->ring;
    uint32_t row[RING_MAX_R], rowz[RING_MAX_R]; /* picks and their zones */
    uint32_t zones = 0, target = ring->rlen < ring->nzones ? ring->rlen : ring->nzones;
    uint64_t mmask = ((uint64_t)1 << ps->mbits) - 1;
    bool caps = ps->cap != NULL, complete = cnt == ring->n;

    for (uint32_t pos = 0; pos < ring->rlen; pos++) {
        bool need_zone = zones < target;
        uint32_t pick = RING_NONE;
        for (int level = caps ? 0 : 1; level < 2 && pick == RING_NONE; level++) {
            for (uint32_t i = 0; i < cnt; i++) {
                if (i == sorted)
                    select_min(ps, bucket, list, sorted++, cnt);
                uint32_t m = (uint32_t)(list[i] >> ps->ybits & mmask);
                bool bad = false;
                for (uint32_t j = 0; j < pos; j++)
                    bad |= row[j] == m;
                if (bad)
                    continue;
                if (need_zone) {
                    uint32_t z = ring->zone[m];
                    for (uint32_t j = 0; j < pos; j++)
                        bad |= rowz[j] == z;
                    if (bad)
                        continue;
                }
                if (level == 0 && at_cap(ps, m, pos))
                    continue;
                pick = m;
                break;
            }
            if (pick == RING_NONE && !complete)
                pick = scan_pick(ps, bucket, row, pos, need_zone, level == 0);
        }
        /* Cannot stay NONE (pos < min(R, n), and an unused zone exists while
         * need_zone); guard anyway so a bug cannot write garbage. */
        if (pick == RING_NONE)
            pick = scan_pick(ps, bucket, row, pos, false, false);
        uint32_t pz = ring->zone[pick];
        bool seen = false;
        for (uint32_t j = 0; j < pos; j++)
            seen |= rowz[j] == pz;
        zones += !seen;
        row[pos] = pick;
        rowz[pos] = pz;
        if (caps) {
            ps->used[2 * pick + 1]++;
            if (pos == 0)
                ps->used[2 * pick]++;
        }
    }
    row_store(ring, bucket, row);
}

/* Double every stream's capacity (rare: the first estimate has ~8 sd of
 * slack). */
static int
streams_grow(struct pass *ps)
{
    size_t cap = 2 * ps->scap;
    uint64_t *blk = big_alloc(ps->nsub * cap * sizeof(*blk));
    if (blk == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < ps->nsub; i++) {
        memcpy(blk + i * cap, ps->streams[i].key, ps->streams[i].len * sizeof(*blk));
        ps->streams[i].key = blk + i * cap;
    }
    big_free(ps->sblock, ps->nsub * ps->scap * sizeof(*blk));
    ps->sblock = blk;
    ps->scap = cap;
    return 0;
}

/* Sort <cnt> <= 8 packed keys of <a> ascending into <out> (8 entries,
 * padded with UINT64_MAX): a 19-comparator network, branch-free. */
static inline __attribute__((always_inline)) void
sort8(const uint64_t *a, uint32_t cnt, uint64_t *out)
{
    uint64_t v0, v1, v2, v3, v4, v5, v6, v7;
    v0 = cnt > 0 ? a[0] : UINT64_MAX;
    v1 = cnt > 1 ? a[1] : UINT64_MAX;
    v2 = cnt > 2 ? a[2] : UINT64_MAX;
    v3 = cnt > 3 ? a[3] : UINT64_MAX;
    v4 = cnt > 4 ? a[4] : UINT64_MAX;
    v5 = cnt > 5 ? a[5] : UINT64_MAX;
    v6 = cnt > 6 ? a[6] : UINT64_MAX;
    v7 = cnt > 7 ? a[7] : UINT64_MAX;
#define CE(x, y)                                                                                   \
    do {                                                                                           \
        uint64_t lo_ = x < y ? x : y, hi_ = x < y ? y : x;                                         \
        x = lo_;                                                                                   \
        y = hi_;                                                                                   \
    } while (0)
    CE(v0, v2);
    CE(v1, v3);
    CE(v4, v6);
    CE(v5, v7);
    CE(v0, v4);
    CE(v1, v5);
    CE(v2, v6);
    CE(v3, v7);
    CE(v0, v1);
    CE(v2, v3);
    CE(v4, v5);
    CE(v6, v7);
    CE(v2, v4);
    CE(v3, v5);
    CE(v1, v4);
    CE(v3, v6);
    CE(v1, v2);
    CE(v3, v4);
    CE(v5, v6);
#undef CE
    out[0] = v0;
    out[1] = v1;
    out[2] = v2;
    out[3] = v3;
    out[4] = v4;
    out[5] = v5;
    out[6] = v6;
    out[7] = v7;
}

/* The row of <bucket> from its sorted list, without caps: the first
 * min(R, #zones) picks each take a new zone, members skipped for their zone
 * come first after that (they precede the rest in HRW order). Same picks
 * as fill_row() without caps, in one pass; false (nothing stored) when the
 * list runs out, for fill_row() to scan, or when equal truncated scores
 * among the entries it reads leave their order open. */
static bool
fill_pure(struct pass *ps, uint32_t bucket, const uint64_t *list, uint32_t cnt)
{
    struct ring *ring = ps->ring;
    const uint32_t *zone = ring->zone;
    uint32_t rlen = ring->rlen, target = rlen < ring->nzones ? rlen : ring->nzones;
    uint32_t row[RING_MAX_R], rowz[RING_MAX_R], skip[16];
    uint32_t pos = 0, nskip = 0, i = 0;
    unsigned ybits = ps->ybits;
    uint64_t mmask = ((uint64_t)1 << ps->mbits) - 1, lowbit = (uint64_t)1 << (ps->mbits + ybits);
    /* An entry whose truncated score equals the next one's may be out of
     * order: leave those (rare) buckets to the exact path. */
#define TIED(i) ((i) + 1 < cnt && (list[i] ^ list[(i) + 1]) < lowbit)
    for (; i < cnt && pos < target; i++) {
        if (TIED(i))
            return false;
        uint32_t m = (uint32_t)(list[i] >> ybits & mmask), z = zone[m];
        bool seen = false;
        for (uint32_t j = 0; j < pos; j++)
            seen |= rowz[j] == z;
        if (seen) {
            skip[nskip++] = m;
        } else {
            row[pos] = m;
            rowz[pos++] = z;
        }
    }
    if (pos < target)
        return false;
    for (uint32_t j = 0; j < nskip && pos < rlen; j++)
        row[pos++] = skip[j];
    for (; i < cnt && pos < rlen; i++) {
        if (TIED(i))
            return false;
        row[pos++] = (uint32_t)(list[i] >> ybits & mmask);
    }
#undef TIED
    if (pos < rlen)
        return false;
    row_store(ring, bucket, row);
    return true;
}

/* Counting-sort the candidates of one sub-range (from one or two builder
 * threads' streams) by bucket into <tmp>, sort each bucket's run and fill
 * those rows, in bucket order. */
static void
fill_sub(struct pass *ps, const struct stream *const *st, const uint64_t *const *cz, int nst,
         uint32_t base, uint32_t lo, uint32_t width, uint32_t *start, uint64_t *tmp)
{
    uint64_t ymask = ((uint64_t)1 << ps->ybits) - 1;
    unsigned low = ps->mbits + ps->ybits;
    /* Run starts from the per-bucket candidate counts (no counting pass). */
    start[0] = 0;
    for (uint32_t i = 0; i < width; i++) {
        uint32_t c = (uint32_t)(cz[0][lo + i] >> 32);
        if (nst > 1)
            c += (uint32_t)(cz[1][lo + i] >> 32);
        start[i + 1] = start[i] + c;
    }
    for (int t = 0; t < nst; t++)
        for (size_t j = 0; j < st[t]->len; j++)
            tmp[start[st[t]->key[j] & ymask]++] = st[t]->key[j];
    for (uint32_t i = 0, from = 0; i < width; i++) {
        uint64_t *run = tmp + from;
        uint32_t cnt = start[i] - from, bucket = base + lo + i;
        /* Runs of up to 16 (nearly all) go through one or two sorting
         * networks (and a branch-free merge), longer ones are sorted
         * lazily: fill_row() selects the next smallest. */
        uint32_t top = 0;
        if (cnt <= 16) {
            uint64_t v[16];
            if (cnt <= 8) {
                sort8(run, cnt, v);
            } else {
                uint64_t x[9], y[9];
                sort8(run, 8, x);
                sort8(run + 8, cnt - 8, y);
                x[8] = y[8] = UINT64_MAX;
                for (uint32_t t = 0, a = 0, b = 0; t < cnt; t++) {
                    bool ta = x[a] <= y[b];
                    v[t] = ta ? x[a] : y[b];
                    a += ta;
                    b += !ta;
                }
            }
            from = start[i];
            if (ps->cap == NULL && fill_pure(ps, bucket, v, cnt))
                continue;
            for (uint32_t x = 1; x < cnt; x++) {
                if ((v[x] >> low) != (v[x - 1] >> low))
                    continue;
                uint32_t g = x - 1, e = x + 1; /* equal truncated scores */
                while (e < cnt && (v[e] >> low) == (v[g] >> low))
                    e++;
                for (; g < e; g++)
                    select_min(ps, bucket, v, g, e);
                x = e - 1;
            }
            memcpy(run, v, cnt * sizeof(*run));
            top = cnt;
        }
        fill_row(ps, bucket, run, cnt, top);
        from = start[i];
    }
}

/* Smallest v in [0, Q) whose grid score for <wmul> reaches <thr> (Q if none):
 * every v >= it scores >= thr. */
/* Grid value <v> from the cache when it is there, else computed (the same
 * bits); never writes, so threads may call it together. */
static uint64_t
etab_get(const struct etab *t, uint32_t v)
{
    return v < t->len ? t->e[v] : nlog((uint64_t)v << (64 - t->q));
}

/* <fill>: extend the grid cache as needed (one thread only); else only read
 * it (any number of threads). */
static uint32_t
v_bound(struct etab *t, bool fill, uint64_t wmul, uint64_t thr)
{
    uint32_t qsize = (uint32_t)1 << t->q, lo = 0, hi = 1;
#define GRID(v) mulhi(fill ? etab_at(t, v) : etab_get(t, v), wmul)
    if (t->q == 0)
        return 1;
    while (hi < qsize && GRID(hi) < thr)
        hi = hi * 2 < qsize ? hi * 2 : qsize;
    if (hi >= qsize && GRID(qsize - 1) < thr)
        return qsize;
    if (hi >= qsize)
        hi = qsize - 1;
    if (GRID(0) >= thr)
        return 0;
    while (hi - lo > 1) { /* grid(lo) < thr <= grid(hi) */
        uint32_t mid = lo + (hi - lo) / 2;
        if (GRID(mid) < thr)
            lo = mid;
        else
            hi = mid;
    }
#undef GRID
    return hi;
}

#define EBATCH 512 /* (member, v, bucket) triples scored together */

/* Per bucket of a chunk, one word: candidates so far (high 32 bits) and the
 * zones seen, modulo 32 (low 32 bits). */
#define CZ_ONE ((uint64_t)1 << 32)

/* Score of an enumerated triple off the cached grid (cold path). */
static uint64_t __attribute__((noinline))
score_slow(const struct pass *ps, uint32_t m, uint32_t bucket, uint32_t v)
{
    return mulhi(escore(ps->hash[m], bucket, v, ps->q, NULL), ps->wmul[m]);
}

/* Score a batch of enumerated (member, v, bucket) triples and push those in
 * [thr_lo, thr_hi). Everything the loop reads is in locals (the stores into
 * the streams could otherwise alias the pass fields); <ybits> is a constant
 * in the common instance, so the packing shifts are immediates. The key is
 * (score >> sshift) << low | member << ybits | offset, and since sshift <=
 * low (the threshold fits in 64 bits) the first part is one shift and a
 * mask. */
static inline __attribute__((always_inline)) int
score_batch_t(struct pass *ps, uint32_t base, uint64_t *cz, const uint64_t *buf, unsigned k,
              uint64_t thr_lo, uint64_t thr_hi, unsigned ybits)
{
    const uint64_t *hash = ps->hash, *wmul = ps->wmul, *et = ps->et.e;
    const uint32_t *zbit = ps->zbit;
    unsigned low = ps->mbits + ybits, up = low - ps->sshift;
    uint64_t hmask = ~(((uint64_t)1 << low) - 1);
    uint32_t ymask = ((uint32_t)1 << ybits) - 1, etlen = ps->q ? ps->et.len : 0;
    uint64_t *wp[1u << SUB_BITS]; /* write positions: room for all k checked first */
    size_t nsub = ps->nsub;
    for (size_t sb = 0; sb < nsub; sb++)
        if (ps->scap - ps->streams[sb].len < k && streams_grow(ps) < 0)
            return -ENOMEM;
    for (size_t sb = 0; sb < nsub; sb++)
        wp[sb] = ps->streams[sb].key + ps->streams[sb].len;
    for (unsigned i = 0; i < k; i++) {
        uint64_t t = buf[i];
        uint32_t m = (uint32_t)(t >> 32), v = (uint32_t)(t >> 16) & 0xffff;
        uint32_t y = (uint32_t)t & 0xffff, bucket = base + y;
        uint64_t sc;
        if (__builtin_expect(v + 1 < etlen, 1)) {
            uint64_t f =
                fmix(hash[m] ^ ((uint64_t)bucket * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull));
            sc = mulhi(et[v] + mulhi(et[v + 1] - et[v], f), wmul[m]);
        } else {
            sc = score_slow(ps, m, bucket, v);
        }
        if (sc >= thr_hi || sc < thr_lo)
            continue;
        *wp[y >> ybits]++ = ((sc << up) & hmask) | (uint64_t)m << ybits | (y & ymask);
        cz[y] = (cz[y] + CZ_ONE) | zbit[m];
    }
    for (size_t sb = 0; sb < nsub; sb++)
        ps->streams[sb].len = (uint32_t)(wp[sb] - ps->streams[sb].key);
    return 0;
}

static int
score_batch(struct pass *ps, uint32_t base, uint64_t *cz, const uint64_t *buf, unsigned k,
            uint64_t thr_lo, uint64_t thr_hi)
{
    if (ps->ybits == CHUNK_BITS - SUB_BITS)
        return score_batch_t(ps, base, cz, buf, k, thr_lo, thr_hi, CHUNK_BITS - SUB_BITS);
    return score_batch_t(ps, base, cz, buf, k, thr_lo, thr_hi, ps->ybits);
}

/* The grid values [*lo, *hi) member <m> enumerates in round <r>: from one
 * below the previous round's bound (scores are filtered exactly). */
static void
vrange(const uint32_t *vb, size_t m, int r, uint32_t *lo, uint32_t *hi)
{
    uint32_t l = r == 0 ? 0 : vb[m * MAX_ROUNDS + (size_t)r - 1];
    *lo = l > 0 ? l - 1 : 0;
    *hi = vb[m * MAX_ROUNDS + (size_t)r];
}

/* The first round for blocks whose members all enumerate the same v
 * range (equal weights): each step's ELANES buckets are scored on the spot
 * instead of going through score_batch(), with the block's hashes, weights
 * and zone bits and the step's grid values loaded once. Same candidates as
 * enumerate() with score_batch(). Stream room is checked only when the
 * room known to be left in every stream (<budget>) runs out: a block's
 * range is done in pieces that fit it. (It used to need room for a whole
 * block at once: with few members, whose ranges span most of the chunk,
 * that doubled every stream five times, to ~130 MB at 10 members, for
 * candidates that fit in the first allocation.) Returns the first member
 * not done (a block of unequal ranges is left to enumerate()) or a
 * negative errno. */
static inline __attribute__((always_inline)) int64_t
first_round_t(struct pass *ps, uint32_t base, uint64_t *cz, uint64_t thr, uint32_t mlo,
              uint32_t mhi, unsigned ybits)
{
    const uint64_t *hash = ps->hash, *wmul = ps->wmul, *et = ps->et.e;
    const uint32_t *zbit = ps->zbit;
    unsigned q = ps->q, s = (q + 1) / 2;
    uint16_t qmask = (uint16_t)(((uint32_t)1 << q) - 1);
    unsigned low = ps->mbits + ybits, up = low - ps->sshift;
    uint64_t hmask = ~(((uint64_t)1 << low) - 1);
    uint32_t ymask = ((uint32_t)1 << ybits) - 1, etlen = ps->q ? ps->et.len : 0;
    v16x8 kc0 = {0}, kc1 = {0};
    kc0 += (uint16_t)ps->kc[0];
    kc1 += (uint16_t)ps->kc[1];
    uint64_t *wp[1u << SUB_BITS];
    size_t nsub = ps->nsub;
    uint32_t budget = 0, m0;
    for (size_t sb = 0; sb < nsub; sb++)
        wp[sb] = ps->streams[sb].key + ps->streams[sb].len;
    for (m0 = mlo; m0 < mhi; m0 += ELANES) {
        const struct lanes *ln = &ps->lanes[m0 / ELANES];
        const struct span *sp = &ps->span[(size_t)(m0 / ELANES) * MAX_ROUNDS];
        if (!sp->same)
            break;
        v16x8 k0 = ln->k0 ^ kc0, k1 = ln->k1 ^ kc1;
        uint64_t h[ELANES], wm[ELANES], mk[ELANES];
        uint32_t zb[ELANES];
        for (uint32_t j = 0; j < ELANES; j++) {
            h[j] = hash[m0 + j];
            wm[j] = wmul[m0 + j];
            zb[j] = zbit[m0 + j];
            mk[j] = (uint64_t)(m0 + j) << ybits;
        }
        for (uint32_t v = sp->vmin, vend; v < sp->vmax;) {
            if (budget < ELANES) { /* room for less than one step */
                size_t room = SIZE_MAX;
                for (size_t sb = 0; sb < nsub; sb++) {
                    ps->streams[sb].len = (uint32_t)(wp[sb] - ps->streams[sb].key);
                    size_t left = ps->scap - ps->streams[sb].len;
                    room = left < room ? left : room;
                }
                if (room < EBATCH) {
                    if (streams_grow(ps) < 0)
                        return -ENOMEM;
                    room += ps->scap / 2;
                }
                for (size_t sb = 0; sb < nsub; sb++)
                    wp[sb] = ps->streams[sb].key + ps->streams[sb].len;
                budget = room < UINT32_MAX ? (uint32_t)room : UINT32_MAX;
            }
            vend = v + budget / ELANES < sp->vmax ? v + budget / ELANES : sp->vmax;
            budget -= ELANES * (vend - v);
            for (; v < vend; v++) {
                uint16_t yv = (uint16_t)(v ^ (v >> s));
                v16x8 y = ((yv * ln->i1) ^ k1) & qmask;
                y ^= y >> s;
                y = ((y * ln->i0) ^ k0) & qmask;
                bool grid = v + 1 < etlen;
                uint64_t e0 = grid ? et[v] : 0, d = grid ? et[v + 1] - e0 : 0;
                for (uint32_t j = 0; j < ELANES; j++) {
                    uint32_t yj = y[j], bucket = base + yj;
                    uint64_t sc;
                    if (__builtin_expect(grid, 1)) {
                        uint64_t f = fmix(h[j] ^ ((uint64_t)bucket * 0xbf58476d1ce4e5b9ull +
                                                  0x94d049bb133111ebull));
                        sc = mulhi(e0 + mulhi(d, f), wm[j]);
                    } else {
                        sc = score_slow(ps, m0 + j, bucket, v);
                    }
                    if (sc >= thr)
                        continue;
                    *wp[yj >> ybits]++ = ((sc << up) & hmask) | mk[j] | (yj & ymask);
                    cz[yj] = (cz[yj] + CZ_ONE) | zb[j];
                }
            }
        }
    }
    for (size_t sb = 0; sb < nsub; sb++)
        ps->streams[sb].len = (uint32_t)(wp[sb] - ps->streams[sb].key);
    return m0;
}

static int64_t
first_round(struct pass *ps, uint32_t base, uint64_t *cz, uint64_t thr, uint32_t mlo, uint32_t mhi)
{
    if (ps->ybits == CHUNK_BITS - SUB_BITS)
        return first_round_t(ps, base, cz, thr, mlo, mhi, CHUNK_BITS - SUB_BITS);
    return first_round_t(ps, base, cz, thr, mlo, mhi, ps->ybits);
}

/* Enumerate round <r> of the current chunk into the streams: for every
 * member of [mlo, mhi) (mlo a multiple of ELANES), the grid values v in
 * [vlo, vhi) (the member's buckets in increasing score order) whose exact
 * score lies in [thr_lo, thr_hi); in rounds after the first only for
 * buckets flagged in <shortb>. The bijection is inverted here (perm_fwd()
 * backwards, unrolled) for ELANES members at once, and the flag test is
 * branch-free: triples are appended, the index moves only on a hit. */
static int
enumerate(struct pass *ps, uint32_t base, uint64_t *cz, const uint8_t *shortb, const uint32_t *vb,
          int r, uint64_t thr_lo, uint64_t thr_hi, uint32_t mlo, uint32_t mhi)
{
    unsigned q = ps->q, s = (q + 1) / 2;
    uint16_t qmask = (uint16_t)(((uint32_t)1 << q) - 1);
    v16x8 kc0 = {0}, kc1 = {0};
    kc0 += (uint16_t)ps->kc[0];
    kc1 += (uint16_t)ps->kc[1];
    uint64_t buf[EBATCH + ELANES];
    unsigned k = 0;
    for (uint32_t m0 = mlo; m0 < mhi; m0 += ELANES) {
        const struct lanes *ln = &ps->lanes[m0 / ELANES];
        const struct span *sp = &ps->span[(size_t)(m0 / ELANES) * MAX_ROUNDS + (size_t)r];
        if (r == 0 && sp->same) { /* shortb is NULL, thr_lo 0 */
            int64_t next = first_round(ps, base, cz, thr_hi, m0, mhi);
            if (next < 0)
                return (int)next;
            if ((uint32_t)next >= mhi)
                break;
            m0 = (uint32_t)next;
            ln = &ps->lanes[m0 / ELANES];
            sp = &ps->span[(size_t)(m0 / ELANES) * MAX_ROUNDS];
        }
        v16x8 k0 = ln->k0 ^ kc0, k1 = ln->k1 ^ kc1;
        uint32_t lo[ELANES] = {0}, len[ELANES] = {0}; /* (gcc cannot tell they are set) */
        bool same = sp->same;
        if (!same) {
            for (uint32_t j = 0; j < ELANES; j++) {
                uint32_t h = 0, l = 0;
                if (m0 + j < mhi)
                    vrange(vb, m0 + j, r, &l, &h);
                lo[j] = l;
                len[j] = h > l ? h - l : 0;
            }
        }
        uint64_t mt = (uint64_t)m0 << 32;
        for (uint32_t v = sp->vmin; v < sp->vmax; v++) {
            uint16_t yv = (uint16_t)(v ^ (v >> s));
            v16x8 y = ((yv * ln->i1) ^ k1) & qmask;
            y ^= y >> s;
            y = ((y * ln->i0) ^ k0) & qmask;
            uint64_t vt = mt | (uint64_t)v << 16;
            if (same && shortb == NULL) {
                for (uint32_t j = 0; j < ELANES; j++)
                    buf[k + j] = (vt + ((uint64_t)j << 32)) | y[j];
                k += ELANES;
            } else if (same) {
                /* Most lanes miss the short buckets (after the first
                 * extra round nearly all): test the flags first. */
                unsigned hit = 0;
                for (uint32_t j = 0; j < ELANES; j++)
                    hit |= shortb[y[j]];
                if (hit) {
                    for (uint32_t j = 0; j < ELANES; j++) {
                        buf[k] = (vt + ((uint64_t)j << 32)) | y[j];
                        k += shortb[y[j]];
                    }
                }
            } else {
                for (uint32_t j = 0; j < ELANES; j++) {
                    buf[k] = (vt + ((uint64_t)j << 32)) | y[j];
                    k += (v - lo[j] < len[j]) & (shortb ? shortb[y[j]] : 1u);
                }
            }
            if (k >= EBATCH) {
                if (score_batch(ps, base, cz, buf, k, thr_lo, thr_hi) < 0)
                    return -ENOMEM;
                k = 0;
            }
        }
    }
    return score_batch(ps, base, cz, buf, k, thr_lo, thr_hi);
}

/* Bits set in <x> (no libgcc call without -mpopcnt). */
static unsigned
popcount32(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
}

/* Builder threads. With two, both enumerate every chunk (each for half of
 * the members, into its own streams and counters), thread 0 decides the
 * rounds, and the rows are filled from both threads' streams: by both
 * threads (each half of the sub-ranges) for a pure table, by thread 0 alone
 * in bucket order when caps are on. A bucket's candidate set, hence its
 * row, is the same as single-threaded: only the order in which candidates
 * reach its run differs, and runs are sorted by a total order. */
struct shared {
    pthread_barrier_t bar;
    int nw;
    atomic_int err;     /* any thread failed: all skip their work from now */
    uint8_t *shortb;    /* Q bytes: 1 = bucket still short */
    uint32_t nshort[2]; /* short buckets in each thread's half */
    /* Work handed out as it is done, so that a thread slowed by other load
     * on the machine does less of it: batches of member blocks in each
     * enumeration (by the parity of its sequence number) and sub-ranges in
     * each pure fill (by chunk parity). Thread 0 clears the counter of the
     * next one; a barrier always lies between two uses of one counter. */
    atomic_uint enext[2], fnext[2];
    struct worker *w;
    uint32_t nchunks;
    bool caps;
};

/* A thread's candidate streams for one chunk. With two threads each has
 * two sets, used by alternate chunks, so it can enumerate chunk c + 1 while
 * the other thread still fills rows from its streams of chunk c. */
struct sbuf {
    struct stream *streams; /* nsub */
    uint64_t *sblock;       /* their storage: nsub * scap */
    size_t scap;
};

struct worker {
    struct pass ps; /* own chunk keys; streams of the current chunk */
    struct sbuf sb[2];
    uint32_t nbuf;   /* stream sets in use: 2 with two threads, else 1 */
    uint32_t ephase; /* enumerations so far (the same on both threads) */
    struct shared *sh;
    int id;
    uint32_t mlo, mhi; /* members this thread sets up (block-aligned) */
    uint32_t *vb;
    const uint64_t *thr;
    uint64_t rpart[MAX_ROUNDS]; /* this thread's share of rcost */
    uint64_t rcost[MAX_ROUNDS]; /* v values a round enumerates, all threads */
    double wsum;
    uint32_t need, zneed;
    uint64_t *cz;     /* per bucket of the chunk: candidates and zones (CZ_ONE) */
    uint64_t *czb[2]; /* cz of alternate chunks (as the streams): the fill
                       * takes the run lengths from the counts */
    uint32_t *slist;  /* short buckets of this thread's half (rounds >= 2) */
    uint32_t *start;
    uint64_t *tmp;
    size_t tmpcap;
};

static int
worker_alloc(struct worker *w, double lambda)
{
    struct pass *ps = &w->ps;
    uint32_t width = (uint32_t)1 << ps->ybits;
    /* One block for all streams, on huge pages when large. */
    /* With two threads each takes about half the candidates (more if the
     * other is slowed down; past 70% its streams grow). */
    double share = w->sh->nw > 1 ? 0.7 : 1.0;
    double per = (lambda + 1.5) * width * share;
    w->nbuf = w->sh->nw > 1 ? 2 : 1;
    for (uint32_t k = 0; k < w->nbuf; k++) {
        struct sbuf *b = &w->sb[k];
        b->scap = (size_t)(per + 8.0 * __builtin_sqrt(per)) + 64 + EBATCH + ELANES;
        b->sblock = big_alloc(ps->nsub * b->scap * sizeof(*b->sblock));
        if (!b->sblock)
            return -ENOMEM;
        for (size_t i = 0; i < ps->nsub; i++)
            b->streams[i].key = b->sblock + i * b->scap;
    }
    return 0;
}

static void
worker_free(struct worker *w)
{
    for (int k = 0; k < 2; k++) {
        big_free(w->sb[k].sblock, w->ps.nsub * w->sb[k].scap * sizeof(*w->sb[k].sblock));
        w->sb[k].sblock = NULL;
    }
    free(w->tmp);
    w->tmp = NULL;
    w->tmpcap = 0;
}

/* Wait for the other thread. Both threads always pass the same sequence
 * of barriers (it depends only on the chunk count and on round decisions
 * both take from the same shared counts), also after a failure: a thread
 * that sees sh->err only skips its work, so nobody is left waiting. */
static void
sync_all(struct shared *sh)
{
    if (sh->nw > 1)
        pthread_barrier_wait(&sh->bar);
}

static bool
failed(struct shared *sh)
{
    return atomic_load(&sh->err) != 0;
}

/* Flag the buckets of this thread's half of the chunk that are still short
 * of candidates or zones, after round <r> - 1: all of them after the first
 * round, after that only those short before (the others have not changed).
 * Returns how many are short. */
static uint32_t
mark_short(struct worker *w, uint32_t qsize, int r)
{
    struct shared *sh = w->sh;
    const struct worker *w0 = &sh->w[0], *w1 = &sh->w[sh->nw - 1];
    uint32_t half = sh->nw > 1 ? qsize / 2 : qsize, n = 0;
    uint32_t ylo = w->id == 0 ? 0 : half, yhi = w->id == 0 ? half : qsize;
    uint32_t cnt = r == 1 ? yhi - ylo : sh->nshort[w->id];
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t y = r == 1 ? ylo + i : w->slist[i];
        uint64_t c = w0->cz[y] >> 32, z = w0->cz[y];
        if (sh->nw > 1) {
            c += w1->cz[y] >> 32;
            z |= w1->cz[y];
        }
        bool s = c < w->need || popcount32((uint32_t)z) < w->zneed;
        sh->shortb[y] = s;
        w->slist[n] = y;
        n += s;
    }
    return n;
}

/* Fill the rows of sub-ranges [s0, s1) of chunk <base>. */
static int
fill_range(struct worker *w, uint32_t c, uint32_t s0, uint32_t s1)
{
    struct shared *sh = w->sh;
    struct pass *ps = &w->ps;
    uint32_t width = (uint32_t)1 << ps->ybits, base = c << ps->q;
    size_t need = 0;
    for (int t = 0; t < sh->nw; t++)
        need += sh->w[t].sb[c % sh->w[t].nbuf].scap;
    if (w->tmpcap < need) { /* first chunk, or streams_grow() ran */
        free(w->tmp);
        w->tmpcap = need;
        if ((w->tmp = malloc(need * sizeof(*w->tmp))) == NULL)
            return -ENOMEM;
    }
    for (uint32_t sb = s0; sb < s1; sb++) {
        const struct stream *st[2];
        const uint64_t *cz[2];
        for (int t = 0; t < sh->nw; t++) {
            st[t] = &sh->w[t].sb[c % sh->w[t].nbuf].streams[sb];
            cz[t] = sh->w[t].czb[c % sh->w[t].nbuf];
        }
        fill_sub(ps, st, cz, sh->nw, base, sb * width, width, w->start, w->tmp);
    }
    return 0;
}

#define EGRAB 64 /* member blocks per batch handed out */

/* Enumeration number <e> (round <r> of the current chunk): batches of
 * member blocks from the shared counter until none is left. */
static int
enumerate_shared(struct worker *w, uint32_t e, uint32_t base, const uint8_t *shortb, int r,
                 uint64_t thr_lo, uint64_t thr_hi)
{
    struct shared *sh = w->sh;
    size_t n = w->ps.ring->n, per = (size_t)EGRAB * ELANES;
    if (sh->nw == 1)
        return enumerate(&w->ps, base, w->cz, shortb, w->vb, r, thr_lo, thr_hi, 0, (uint32_t)n);
    if (w->id == 0)
        atomic_store(&sh->enext[(e + 1) & 1], 0);
    for (;;) {
        size_t lo = (size_t)atomic_fetch_add(&sh->enext[e & 1], 1) * per;
        if (lo >= n)
            return 0;
        size_t hi = lo + per < n ? lo + per : n;
        int rc = enumerate(&w->ps, base, w->cz, shortb, w->vb, r, thr_lo, thr_hi, (uint32_t)lo,
                           (uint32_t)hi);
        if (rc < 0)
            return rc;
    }
}

/* Save the streams of chunk <c> after an enumeration (it may have grown
 * them), for the fill. */
static void
streams_save(struct worker *w, uint32_t c)
{
    w->sb[c % w->nbuf].sblock = w->ps.sblock;
    w->sb[c % w->nbuf].scap = w->ps.scap;
}

/* Per-member keys, weights, v bounds and caps of this thread's members
 * [mlo, mhi) and the spans of their blocks (the range is block-aligned),
 * into the shared arrays. The grid cache is only read. */
static void
setup_members(struct worker *w)
{
    struct pass *ps = &w->ps;
    const struct ring *ring = ps->ring;
    const struct ring_config *cfg = &ring->cfg;
    size_t lo = w->mlo, hi = w->mhi, n = ring->n;
    uint32_t *vb = w->vb;
    if (ps->cap != NULL) {
        memset(ps->used + 2 * lo, 0, 2 * (hi - lo) * sizeof(*ps->used));
        for (size_t i = lo; i < hi; i++) {
            const struct rmem *m = &ring->mem[i];
            double share = (1.0 + cfg->eps) * (double)cfg->buckets * m->pub.weight / w->wsum;
            /* Dither: without it every cap moves at once when one member
             * joins. Rounding share - 1 + u down keeps every cap <= share. */
            double u0 = (double)(fmix(m->hash ^ 0x1234567ull) >> 11) / 9007199254740992.0;
            double u1 = (double)(fmix(m->hash ^ 0x7654321ull) >> 11) / 9007199254740992.0;
            double c0 = share + u0 - 1.0, c1 = share * ring->rlen + u1 - 1.0;
            ps->cap[2 * i] = c0 > 0 ? (uint32_t)c0 : 0;
            ps->cap[2 * i + 1] = c1 > 0 ? (uint32_t)c1 : 0;
        }
    }
    /* Per-member keys and the v bounds of every round (cached per weight). */
    memset(w->rpart, 0, sizeof(w->rpart));
    for (size_t i = lo; i < hi; i++) {
        struct perm *p = &ps->perms[i];
        struct lanes *ln = &ps->lanes[i / ELANES];
        perm_member(p, ring->mem[i].hash, true);
        ln->i0[i % ELANES] = (uint16_t)p->ainv[0];
        ln->i1[i % ELANES] = (uint16_t)p->ainv[1];
        ln->k0[i % ELANES] = (uint16_t)p->k[0];
        ln->k1[i % ELANES] = (uint16_t)p->k[1];
        ps->hash[i] = ring->mem[i].hash;
        ps->zbit[i] = (uint32_t)1 << (ring->zone[i] & 31);
        ps->wmul[i] = UINT64_MAX / ring->mem[i].pub.weight;
        for (int r = 0; r < MAX_ROUNDS; r++) {
            uint32_t *b = &vb[i * MAX_ROUNDS + (size_t)r];
            if (i > lo && ps->wmul[i] == ps->wmul[i - 1])
                *b = b[-MAX_ROUNDS];
            else
                *b = v_bound(&ps->et, false, ps->wmul[i], w->thr[r]);
            w->rpart[r] += *b - (r ? b[-1] : 0) + 1;
        }
    }
    for (size_t bl = lo / ELANES; bl < (hi + ELANES - 1) / ELANES; bl++) {
        for (int r = 0; r < MAX_ROUNDS; r++) {
            struct span *sp = &ps->span[bl * MAX_ROUNDS + (size_t)r];
            uint32_t l0, h0, l, h;
            vrange(vb, bl * ELANES, r, &l0, &h0);
            sp->vmin = UINT32_MAX;
            sp->vmax = 0;
            sp->same = bl * ELANES + ELANES <= n && h0 > l0;
            for (size_t m = bl * ELANES; m < bl * ELANES + ELANES && m < n; m++) {
                vrange(vb, m, r, &l, &h);
                if (h > l) {
                    sp->vmin = l < sp->vmin ? l : sp->vmin;
                    sp->vmax = h > sp->vmax ? h : sp->vmax;
                }
                sp->same &= l == l0 && h == h0;
            }
        }
    }
}

static void
worker_run(struct worker *w)
{
    struct shared *sh = w->sh;
    struct pass *ps = &w->ps;
    unsigned q = ps->q;
    uint32_t qsize = (uint32_t)1 << q, nsub = (uint32_t)ps->nsub;
    uint64_t n = ps->ring->n;
    int rc = 0;
    setup_members(w);
    sync_all(sh);
    for (int r = 0; r < MAX_ROUNDS; r++)
        w->rcost[r] = sh->w[0].rpart[r] + (sh->nw > 1 ? sh->w[1].rpart[r] : 0);
    for (uint32_t c = 0; c < sh->nchunks; c++) {
        uint32_t base = c << q;
        struct sbuf *cur = &w->sb[c % w->nbuf];
        ps->streams = cur->streams;
        ps->sblock = cur->sblock;
        ps->scap = cur->scap;
        perm_chunk(ps->kc, c);
        for (size_t sb = 0; sb < ps->nsub; sb++)
            ps->streams[sb].len = 0;
        w->cz = w->czb[c % w->nbuf];
        memset(w->cz, 0, (size_t)qsize * sizeof(*w->cz));
        uint32_t e = w->ephase++;
        if (!failed(sh)) {
            rc = enumerate_shared(w, e, base, NULL, 0, 0, w->thr[0]);
            streams_save(w, c);
            if (rc < 0)
                atomic_store(&sh->err, rc);
        }
        sync_all(sh);
        for (int r = 1; r < MAX_ROUNDS; r++) {
            /* Both threads mark their half, then decide alike. */
            sh->nshort[w->id] = failed(sh) ? 0 : mark_short(w, qsize, r);
            sync_all(sh);
            uint64_t nshort = sh->nshort[0] + (sh->nw > 1 ? sh->nshort[1] : 0);
            /* A round costs ~2 ns per v, a scan ~5 ns per member. */
            if (nshort == 0 || 5 * nshort * n < 2 * w->rcost[r])
                break;
            e = w->ephase++;
            if (!failed(sh)) {
                rc = enumerate_shared(w, e, base, sh->shortb, r, w->thr[r - 1], w->thr[r]);
                streams_save(w, c);
                if (rc < 0)
                    atomic_store(&sh->err, rc);
            }
            sync_all(sh);
        }
        /* No barrier after the fill: the next chunk enumerates into the
         * other streams, and the barrier after that enumeration comes after
         * both threads' fills of this chunk. */
        if (failed(sh))
            continue;
        rc = 0;
        if (sh->caps || sh->nw == 1) {
            rc = w->id == 0 ? fill_range(w, c, 0, nsub) : 0;
        } else {
            if (w->id == 0)
                atomic_store(&sh->fnext[(c + 1) & 1], 0);
            for (uint32_t sb; rc == 0 && (sb = atomic_fetch_add(&sh->fnext[c & 1], 1)) < nsub;)
                rc = fill_range(w, c, sb, sb + 1);
        }
        if (rc < 0)
            atomic_store(&sh->err, rc);
    }
}

static void *
worker_main(void *arg)
{
    worker_run(arg);
    return NULL;
}

/* A second thread only when there is enough work (B * N) to pay for it,
 * and more than one chunk: with one, every phase is a barrier apart and
 * nothing overlaps, so on a shared machine the second thread gained ~1 ms
 * (N=10000, B=2^16: ~5 ms against ~6.3 ms) when the other core was idle and
 * lost up to 6 ms when it was not. */
#ifndef RING_THREAD_MIN_WORK
#define RING_THREAD_MIN_WORK (1ull << 24)
#endif

static int
place(struct ring *ring)
{
    const struct ring_config *cfg = &ring->cfg;
    size_t n = ring->n;
    unsigned q = chunk_bits(cfg);
    struct pass ps = {.ring = ring, .q = q};
    uint32_t qsize = (uint32_t)1 << q;
    uint32_t nchunks = cfg->buckets >> q;
    ps.ybits = q > SUB_BITS ? q - SUB_BITS : 0;
    uint32_t *vb = NULL;
    struct carve cv = {0};
    struct worker w[2];
    struct shared sh;
    memset(w, 0, sizeof(w));
    memset(&sh, 0, sizeof(sh));
    int rc = -ENOMEM;

    /* Candidates per bucket: round 1 aims at <lambda> members below the
     * threshold; buckets left with fewer than <need> candidates or fewer
     * zones than a row needs get rounds at 2, 4 and 8 times the threshold,
     * the rest an O(N) scan. Thresholds only trade enumeration against
     * scans: the table does not depend on them. */
    bool caps = cfg->eps > 0 && cfg->eps * (double)cfg->buckets >= (double)n;
    double lambda = 5.0;
    uint32_t need = ring->rlen + (caps ? 1 : 0); /* exact when caps are off */
    uint32_t zneed = ring->rlen < ring->nzones ? ring->rlen : ring->nzones;
    if (zneed > 32)
        zneed = 32; /* zones are counted modulo 32 (a lower bound) */
    double wsum = 0;
    for (size_t i = 0; i < n; i++)
        wsum += ring->mem[i].pub.weight;
    uint64_t thr[MAX_ROUNDS];
    for (int r = 0; r < MAX_ROUNDS; r++) {
        double tau = lambda * (double)(1 << r) / (0.6931471805599453 * wsum) * 0x1p57;
        thr[r] = tau < 0x1p63 ? (uint64_t)tau : (uint64_t)1 << 63;
    }
    ps.mbits = 1;
    while (ps.mbits < 32 && ((uint64_t)1 << ps.mbits) < n)
        ps.mbits++;
    unsigned tbits = 64 - (unsigned)__builtin_clzll(thr[MAX_ROUNDS - 1] | 1);
    unsigned room = 64 - ps.mbits - ps.ybits;
    ps.sshift = tbits > room ? tbits - room : 0;

    size_t nblk = (n + ELANES - 1) / ELANES;
    uint32_t width = (uint32_t)1 << ps.ybits;
    ps.nsub = qsize >> ps.ybits;
    sh.nw = (uint64_t)cfg->buckets * n >= RING_THREAD_MIN_WORK && nchunks >= 2 && n >= 2 ? 2 : 1;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && (cv.base = big_alloc(cv.used)) == NULL)
            goto out;
        cv.used = 0;
        ps.perms = carve(&cv, n * sizeof(*ps.perms));
        ps.lanes = carve(&cv, nblk * sizeof(*ps.lanes));
        ps.span = carve(&cv, nblk * MAX_ROUNDS * sizeof(*ps.span));
        ps.hash = carve(&cv, n * sizeof(*ps.hash));
        ps.zbit = carve(&cv, n * sizeof(*ps.zbit));
        ps.wmul = carve(&cv, n * sizeof(*ps.wmul));
        vb = carve(&cv, n * MAX_ROUNDS * sizeof(*vb));
        ps.et.e = carve(&cv, (size_t)qsize * sizeof(*ps.et.e));
        ps.cap = caps ? carve(&cv, 2 * n * sizeof(*ps.cap)) : NULL;
        ps.used = caps ? carve(&cv, 2 * n * sizeof(*ps.used)) : NULL;
        sh.shortb = carve(&cv, qsize);
        for (int i = 0; i < 2; i++) {
            for (int k = 0; k < (sh.nw > 1 ? 2 : 1); k++)
                w[i].czb[k] = carve(&cv, (size_t)qsize * sizeof(*w[i].czb[k]));
            w[i].start = carve(&cv, ((size_t)width + 1) * sizeof(*w[i].start));
            w[i].sb[0].streams = carve(&cv, ps.nsub * sizeof(*w[i].sb[0].streams));
            w[i].sb[1].streams = carve(&cv, ps.nsub * sizeof(*w[i].sb[1].streams));
            w[i].slist = carve(&cv, (size_t)qsize * sizeof(*w[i].slist));
        }
    }
    ps.et.q = q;
    memset(&ps.lanes[nblk - 1], 0, sizeof(*ps.lanes)); /* lanes past n */
    /* Fill the grid cache for the largest weight (the largest v bounds,
     * so other weights' searches mostly hit the cache). From here on the
     * cache is only read (values past it are computed), so the threads can
     * share it. */
    uint32_t wmax = 1;
    for (size_t i = 0; i < n; i++)
        wmax = ring->mem[i].pub.weight > wmax ? ring->mem[i].pub.weight : wmax;
    for (int r = 0; r < MAX_ROUNDS; r++)
        (void)v_bound(&ps.et, true, UINT64_MAX / wmax, thr[r]);
    sh.nchunks = nchunks;
    sh.caps = caps;
    sh.w = w;
    atomic_init(&sh.err, 0);
    for (int k = 0; k < 2; k++) {
        atomic_init(&sh.enext[k], 0);
        atomic_init(&sh.fnext[k], 0);
    }
    for (int i = 0; i < 2; i++) {
        w[i].ps = ps;
        w[i].sh = &sh;
        w[i].id = i;
        /* Split at a block boundary: enumerate() takes ELANES at once. */
        size_t half = (nblk + 1) / 2 * ELANES;
        half = half < n ? half : n;
        w[i].mlo = i == 0 ? 0 : (uint32_t)half;
        w[i].mhi = i == 0 && sh.nw == 2 ? (uint32_t)half : (uint32_t)n;
        w[i].vb = vb;
        w[i].thr = thr;
        w[i].wsum = wsum;
        w[i].need = need;
        w[i].zneed = zneed;
        if (i < sh.nw && (rc = worker_alloc(&w[i], lambda)) < 0)
            goto out;
    }
    pthread_t tid;
    bool threaded = false;
    if (sh.nw == 2 && pthread_barrier_init(&sh.bar, NULL, 2) == 0) {
        threaded = pthread_create(&tid, NULL, worker_main, &w[1]) == 0;
        if (!threaded)
            pthread_barrier_destroy(&sh.bar);
    }
    if (sh.nw == 2 && !threaded) { /* no thread: one worker does it all */
        sh.nw = 1;
        worker_free(&w[0]);
        worker_free(&w[1]);
        memset(&w[1], 0, sizeof(w[1]));
        w[0].ps = ps;
        w[0].mhi = (uint32_t)n;
        w[0].tmp = NULL;
        w[0].tmpcap = 0;
        if ((rc = worker_alloc(&w[0], lambda)) < 0)
            goto out;
    }
    worker_run(&w[0]);
    if (threaded) {
        pthread_join(tid, NULL);
        pthread_barrier_destroy(&sh.bar);
    }
    rc = atomic_load(&sh.err);
out:
    for (int i = 0; i < 2; i++)
        worker_free(&w[i]);
    big_free(cv.base, cv.used);
    return rc;
}

static void
put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

struct hbuf {
    XXH3_state_t *st;
    unsigned char buf[4096];
    size_t len;
};

static void
hb_flush(struct hbuf *h)
{
    XXH3_128bits_update(h->st, h->buf, h->len);
    h->len = 0;
}

static void
hb_int(struct hbuf *h, uint64_t v, int bytes)
{
    if (h->len + 8 > sizeof(h->buf))
        hb_flush(h);
    put_le(h->buf + h->len, v, bytes);
    h->len += (size_t)bytes;
}

/* Strings go through the buffer too (the digest only depends on the byte
 * stream, not on how it is cut into updates). */
static void
hb_str(struct hbuf *h, const char *s)
{
    size_t len = strlen(s);
    hb_int(h, len, 4);
    if (h->len + len > sizeof(h->buf)) {
        hb_flush(h);
        if (len > sizeof(h->buf)) {
            XXH3_128bits_update(h->st, s, len);
            return;
        }
    }
    memcpy(h->buf + h->len, s, len);
    h->len += len;
}

/* Canonical little-endian serialisation of config, records and rows. */
static int
compute_digest(struct ring *ring)
{
    struct hbuf h = {.st = XXH3_createState()};
    if (h.st == NULL)
        return -ENOMEM;
    XXH3_128bits_reset(h.st);
    XXH3_128bits_update(h.st, "shed-ring/1", 11);
    const struct ring_config *c = &ring->cfg;
    uint64_t epsbits;
    memcpy(&epsbits, &c->eps, sizeof(epsbits));
    hb_int(&h, c->buckets, 4);
    hb_int(&h, c->k, 4);
    hb_int(&h, c->r, 4);
    hb_int(&h, c->weight_scale, 4);
    hb_int(&h, epsbits, 8);
    hb_int(&h, c->seed_account, 8);
    hb_int(&h, c->seed_key, 8);
    hb_int(&h, c->seed_place, 8);
    hb_int(&h, ring->n, 4);
    for (size_t i = 0; i < ring->n; i++) {
        const struct ring_member *m = &ring->mem[i].pub;
        hb_str(&h, m->id);
        hb_str(&h, m->url);
        hb_str(&h, m->zone);
        hb_int(&h, m->weight, 4);
    }
    size_t cells = (size_t)c->buckets * ring->rlen;
    hb_flush(&h);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (ring->row32 != NULL) { /* already the little-endian serialisation */
        XXH3_128bits_update(h.st, ring->row32, cells * sizeof(*ring->row32));
        cells = 0;
    }
#endif
    for (size_t i = 0; i < cells;) { /* 4 bytes per cell, a buffer at a time */
        size_t end = cells - i < sizeof(h.buf) / 4 ? cells : i + sizeof(h.buf) / 4;
        unsigned char *p = h.buf;
        if (ring->row16)
            for (; i < end; i++, p += 4)
                put_le(p, ring->row16[i], 4);
        else
            for (; i < end; i++, p += 4)
                put_le(p, ring->row32[i], 4);
        h.len = (size_t)(p - h.buf);
        hb_flush(&h);
    }
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(h.st));
    memcpy(ring->digest, canon.digest, 16);
    XXH3_freeState(h.st);
    return 0;
}

/* Input indices of <members> in id order (strcmp), into <order>. An LSD
 * radix sort of a 16-byte window of the ids that starts after their
 * longest common prefix (so "prod-backend-00017" style ids sort by their
 * distinct part), skipping the byte positions where all ids agree; ids
 * equal on the window and longer than it are then ordered by strcmp().
 * Scratch on one (huge-page) block: no per-element allocation. */
struct skey {
    uint64_t k0, k1; /* window bytes, big-endian, zero padded */
    uint32_t idx;    /* input index */
    uint32_t len;    /* id length */
};

struct sref {
    const char *id;
    uint32_t idx;
};

static int
cmp_sref(const void *a, const void *b)
{
    const struct sref *x = a, *y = b;
    return strcmp(x->id, y->id);
}

/* Big-endian 64-bit value of 8 bytes. */
static uint64_t
be64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int j = 0; j < 8; j++)
        v = v << 8 | b[j];
    return v;
}

static unsigned
skey_byte(const struct skey *k, unsigned p)
{
    return (unsigned)((p < 8 ? k->k0 >> (56 - 8 * p) : k->k1 >> (120 - 8 * p)) & 255);
}

static int
sort_ids(const struct ring_member *members, size_t n, uint32_t *order)
{
    if (n == 0)
        return 0;
    struct skey *blk = big_alloc(2 * n * sizeof(*blk)), *a = blk, *b = blk + (blk ? n : 0);
    uint32_t(*hist)[256] = calloc(16, sizeof(*hist));
    int rc = -ENOMEM;
    if (blk == NULL || hist == NULL)
        goto out;
    const char *first = members[0].id;
    size_t lcp = strlen(first);
    for (size_t i = 1; i < n && lcp > 0; i++) {
        size_t j = 0;
        while (j < lcp && members[i].id[j] == first[j])
            j++;
        lcp = j;
    }
    uint64_t d0 = 0, d1 = 0; /* bits where some key differs from the first */
    for (size_t i = 0; i < n; i++) {
        const char *id = members[i].id;
        size_t len = strlen(id);
        unsigned char w[16] = {0};
        memcpy(w, id + lcp, len - lcp < 16 ? len - lcp : 16);
        a[i] = (struct skey){be64(w), be64(w + 8), (uint32_t)i, (uint32_t)len};
        d0 |= a[i].k0 ^ a[0].k0;
        d1 |= a[i].k1 ^ a[0].k1;
    }
    /* Histograms of the byte positions where the keys differ (only). */
    unsigned vary[16], nv = 0;
    for (unsigned p = 0; p < 16; p++)
        if ((p < 8 ? d0 >> (56 - 8 * p) : d1 >> (120 - 8 * p)) & 255)
            vary[nv++] = p;
    for (size_t i = 0; i < n; i++)
        for (unsigned v = 0; v < nv; v++)
            hist[vary[v]][skey_byte(&a[i], vary[v])]++;
    for (unsigned v = nv; v-- > 0;) {
        unsigned p = vary[v];
        uint32_t *h = hist[p], sum = 0;
        for (unsigned d = 0; d < 256; d++) {
            uint32_t c = h[d];
            h[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            b[h[skey_byte(&a[i], p)]++] = a[i];
        struct skey *t = a;
        a = b;
        b = t;
    }
    /* Runs equal on the window (ids that go on past it, or duplicates):
     * strcmp() order. */
    struct sref *run = (struct sref *)b;
    for (size_t i = 0, e; i < n; i = e) {
        for (e = i + 1; e < n && a[e].k0 == a[i].k0 && a[e].k1 == a[i].k1; e++)
            ;
        if (e - i < 2)
            continue;
        for (size_t j = i; j < e; j++)
            run[j - i] = (struct sref){members[a[j].idx].id, a[j].idx};
        qsort(run, e - i, sizeof(*run), cmp_sref);
        for (size_t j = i; j < e; j++)
            a[j].idx = run[j - i].idx;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = a[i].idx;
    rc = 0;
out:
    big_free(blk, 2 * n * sizeof(*blk));
    free(hist);
    return rc;
}

static int
check_member(const struct ring_config *cfg, const struct ring_member *m, size_t *strbytes)
{
    if (m->id == NULL)
        return -RING_EEMPTYID;
    size_t il = strnlen(m->id, RING_ID_MAX + 1);
    if (il == 0 || il > RING_ID_MAX)
        return -RING_EEMPTYID;
    if (m->weight == 0 || m->weight > cfg->weight_scale)
        return -RING_EBADWEIGHT;
    size_t ul = m->url ? strnlen(m->url, URL_MAX + 1) : 0;
    size_t zl = m->zone ? strnlen(m->zone, ZONE_MAX + 1) : 0;
    if (ul > URL_MAX || zl > ZONE_MAX)
        return -EINVAL;
    *strbytes += il + ul + zl + 3;
    return 0;
}

static char *
copy_str(char **cur, const char *s)
{
    char *dst = *cur;
    size_t len = s ? strlen(s) : 0;
    memcpy(dst, s ? s : "", len);
    dst[len] = '\0';
    *cur += len + 1;
    return dst;
}

/* Distinct zones: an open-addressing set of zone numbers keyed by the zone
 * string, grown by doubling. */
struct zset {
    uint32_t *slot; /* zone number + 1; 0 = empty */
    size_t mask;
    uint64_t *hash; /* per zone number */
    const char **name;
    uint32_t count, cap;
};

static int
zset_grow(struct zset *zs)
{
    size_t size = zs->slot ? 2 * (zs->mask + 1) : 64;
    uint32_t cap = (uint32_t)(size / 2);
    uint32_t *slot = calloc(size, sizeof(*slot));
    uint64_t *hash = realloc(zs->hash, cap * sizeof(*hash));
    if (hash != NULL)
        zs->hash = hash;
    const char **name = realloc(zs->name, cap * sizeof(*name));
    if (name != NULL)
        zs->name = name;
    if (!slot || !hash || !name) {
        free(slot);
        return -ENOMEM;
    }
    for (uint32_t d = 0; d < zs->count; d++) {
        size_t j = zs->hash[d] & (size - 1);
        while (slot[j] != 0)
            j = (j + 1) & (size - 1);
        slot[j] = d + 1;
    }
    free(zs->slot);
    zs->slot = slot;
    zs->mask = size - 1;
    zs->cap = cap;
    return 0;
}

/* Zone number of <z> (first-seen order), added if new; negative on error. */
static int64_t
zset_add(struct zset *zs, const char *z)
{
    size_t len = strlen(z);
    uint64_t h = XXH3_64bits(z, len);
    size_t j = h & zs->mask;
    for (; zs->slot[j] != 0; j = (j + 1) & zs->mask) {
        uint32_t d = zs->slot[j] - 1;
        if (zs->hash[d] == h && strcmp(zs->name[d], z) == 0)
            return d;
    }
    if (zs->count == zs->cap) {
        if (zset_grow(zs) < 0)
            return -ENOMEM;
        for (j = h & zs->mask; zs->slot[j] != 0;)
            j = (j + 1) & zs->mask;
    }
    uint32_t d = zs->count++;
    zs->hash[d] = h;
    zs->name[d] = z;
    zs->slot[j] = d + 1;
    return d;
}

/* Zone index of every member: the rank of its zone among the distinct zones
 * sorted by strcmp(), and the members of each zone in index order, into
 * ring->zone and ring->zlist (n entries each, allocated by the caller).
 * Hashing then sorting only the distinct zones: O(n) for any n. */
static int
index_zones(struct ring *ring)
{
    size_t n = ring->n;
    struct zset zs = {0};
    struct zref *z = NULL;
    uint32_t *rank = NULL;
    int rc = -ENOMEM;
    ring->zstart = malloc((n + 1) * sizeof(*ring->zstart));
    if (!ring->zstart || zset_grow(&zs) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        int64_t d = zset_add(&zs, ring->mem[i].pub.zone);
        if (d < 0)
            goto out;
        ring->zone[i] = (uint32_t)d;
    }
    uint32_t nz = zs.count;
    z = malloc((nz ? nz : 1) * sizeof(*z));
    rank = malloc((nz ? nz : 1) * sizeof(*rank));
    if (!z || !rank)
        goto out;
    for (uint32_t d = 0; d < nz; d++)
        z[d] = (struct zref){zs.name[d], d};
    qsort(z, nz, sizeof(*z), cmp_zref);
    for (uint32_t r = 0; r < nz; r++)
        rank[z[r].idx] = r;
    memset(ring->zstart, 0, ((size_t)nz + 1) * sizeof(*ring->zstart));
    for (size_t i = 0; i < n; i++) {
        ring->zone[i] = rank[ring->zone[i]];
        ring->zstart[ring->zone[i] + 1]++;
    }
    for (uint32_t r = 0; r < nz; r++)
        ring->zstart[r + 1] += ring->zstart[r];
    for (size_t i = 0; i < n; i++) /* counting sort: each zone in index order */
        ring->zlist[ring->zstart[ring->zone[i]]++] = (uint32_t)i;
    for (uint32_t r = nz; r > 0; r--)
        ring->zstart[r] = ring->zstart[r - 1];
    ring->zstart[0] = 0;
    ring->nzones = nz;
    uint32_t *zst = realloc(ring->zstart, ((size_t)nz + 1) * sizeof(*zst));
    if (zst != NULL) /* shrinking; keeping the larger block is fine too */
        ring->zstart = zst;
    ring->bytes +=
        n * (sizeof(*ring->zone) + sizeof(*ring->zlist)) + ((size_t)nz + 1) * sizeof(*zst);
    rc = 0;
out:
    free(zs.slot);
    free(zs.hash);
    free(zs.name);
    free(z);
    free(rank);
    return rc;
}

/* Copy ids and urls, and each distinct zone once, into one arena. */
static int
copy_strings(struct ring *ring)
{
    size_t n = ring->n, bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(ring->mem[i].pub.id) + strlen(ring->mem[i].pub.url) + 2;
    for (uint32_t z = 0; z < ring->nzones; z++)
        bytes += strlen(ring->mem[ring->zlist[ring->zstart[z]]].pub.zone) + 1;
    ring->arena_len = bytes ? bytes : 1;
    ring->arena = big_alloc(ring->arena_len);
    if (ring->arena == NULL)
        return -ENOMEM;
    ring->bytes += bytes;
    char *cur = ring->arena;
    for (uint32_t z = 0; z < ring->nzones; z++) {
        const char *zs = copy_str(&cur, ring->mem[ring->zlist[ring->zstart[z]]].pub.zone);
        for (uint32_t i = ring->zstart[z]; i < ring->zstart[z + 1]; i++)
            ring->mem[ring->zlist[i]].pub.zone = zs;
    }
    for (size_t i = 0; i < n; i++) {
        struct ring_member *m = &ring->mem[i].pub;
        m->id = copy_str(&cur, m->id);
        m->url = copy_str(&cur, m->url);
    }
    return 0;
}

int
ring_build(const struct ring_config *cfg, const struct ring_member *members, size_t n,
           struct ring **out)
{
    struct ring *ring = NULL;
    size_t strbytes = 0;
    int rc = ring_config_check(cfg);
    if (rc < 0)
        return rc;
    if (n > RING_MAX_MEMBERS)
        return -RING_ETOOMANY;
    if (n > 0 && members == NULL)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((rc = check_member(cfg, &members[i], &strbytes)) < 0)
            return rc;

    rc = -ENOMEM;
    ring = calloc(1, sizeof(*ring));
    if (ring == NULL)
        goto out;
    ring->cfg = *cfg;
    ring->n = n;
    ring->rlen = n < cfg->r ? (uint32_t)n : cfg->r;
    /* One block for the records and the zone index (freed with mem). */
    size_t recbytes = (n * sizeof(*ring->mem) + 63) / 64 * 64;
    ring->mem_len = recbytes + 2 * (n ? n : 1) * sizeof(uint32_t);
    ring->mem = big_alloc(ring->mem_len);
    if (!ring->mem)
        goto out;
    ring->zone = (uint32_t *)((char *)ring->mem + recbytes);
    ring->zlist = ring->zone + (n ? n : 1);
    ring->bytes = sizeof(*ring) + n * sizeof(*ring->mem);
    /* The sort order lands in zlist first (it is filled later). */
    if ((rc = sort_ids(members, n, ring->zlist)) < 0)
        goto out;
    /* Borrowed strings until copy_strings(). */
    for (size_t i = 0; i < n; i++) {
        const struct ring_member *in = &members[ring->zlist[i]];
        struct rmem *m = &ring->mem[i];
        m->pub.id = in->id;
        m->pub.url = in->url ? in->url : "";
        m->pub.zone = in->zone ? in->zone : "";
        m->pub.weight = in->weight;
        m->hash = XXH3_64bits_withSeed(m->pub.id, strlen(m->pub.id), cfg->seed_place);
    }
    rc = -ENOMEM;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(ring->mem[i - 1].pub.id, ring->mem[i].pub.id) == 0) {
            rc = -RING_EDUPID;
            goto out;
        }
    }
    if ((rc = index_zones(ring)) < 0 || (rc = copy_strings(ring)) < 0)
        goto out;
    rc = -ENOMEM;
    size_t cells = (size_t)cfg->buckets * ring->rlen;
    ring->row_len = (cells ? cells : 1) * (n <= 65535 ? 2 : 4);
    if (n <= 65535)
        ring->row16 = big_alloc(ring->row_len);
    else
        ring->row32 = big_alloc(ring->row_len);
    if (!ring->row16 && !ring->row32)
        goto out;
    ring->bytes += cells * (ring->row16 ? 2 : 4);
    if (n > 0 && (rc = place(ring)) < 0)
        goto out;
    if ((rc = compute_digest(ring)) < 0)
        goto out;
    *out = ring;
    ring = NULL;
    rc = 0;
out:
    ring_destroy(ring);
    return rc;
}

void
ring_destroy(struct ring *ring)
{
    if (ring == NULL)
        return;
    big_free(ring->mem, ring->mem_len); /* zone and zlist too */
    big_free(ring->arena, ring->arena_len);
    free(ring->zstart);
    big_free(ring->row16 ? (void *)ring->row16 : (void *)ring->row32, ring->row_len);
    free(ring);
}

/* ---- queries ------------------------------------------------------------ */

const struct ring_config *
ring_config(const struct ring *ring)
{
    return &ring->cfg;
}

size_t
ring_size(const struct ring *ring)
{
    return ring->n;
}

size_t
ring_bytes(const struct ring *ring)
{
    return ring->bytes;
}

const struct ring_member *
ring_member_at(const struct ring *ring, uint32_t idx)
{
    if (idx >= ring->n)
        return NULL;
    return &ring->mem[idx].pub;
}

uint32_t
ring_find(const struct ring *ring, const char *id)
{
    size_t lo = 0, hi = ring->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ring->mem[mid].pub.id, id);
        if (c == 0)
            return (uint32_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return RING_NONE;
}

size_t
ring_row(const struct ring *ring, uint32_t bucket, uint32_t *out)
{
    uint32_t r = ring->cfg.r;
    if (ring->n == 0 || bucket >= ring->cfg.buckets) {
        for (uint32_t i = 0; i < r; i++)
            out[i] = RING_NONE;
        return 0;
    }
    uint32_t rlen = ring->rlen, i = 0;
    size_t off = (size_t)bucket * rlen;
    if (ring->row16 && rlen == 3) { /* the usual shape, unrolled */
        const uint16_t *p = ring->row16 + off;
        out[0] = p[0];
        out[1] = p[1];
        out[2] = p[2];
        i = 3;
    } else if (ring->row16) {
        for (; i < rlen; i++)
            out[i] = ring->row16[off + i];
    } else {
        for (; i < rlen; i++)
            out[i] = ring->row32[off + i];
    }
    for (; i < r; i++)
        out[i] = RING_NONE;
    return rlen;
}

#define WALK_BATCH 32 /* handoffs found per O(N) pass of ring_walk() */

size_t
ring_walk(const struct ring *ring, uint32_t bucket, uint32_t *out, size_t max)
{
    uint32_t row[RING_MAX_R];
    if (ring->n == 0 || bucket >= ring->cfg.buckets || max == 0)
        return 0;
    size_t want = max < ring->n ? max : ring->n;
    size_t got = ring_row(ring, bucket, row);
    size_t w = 0;
    for (; w < got && w < want; w++)
        out[w] = row[w];
    /* Handoffs: the HRW order after the row, skipping row members. Each
     * O(N) pass keeps the WALK_BATCH smallest (score, member) pairs after
     * the last one emitted, in a sorted stack array; a cheap lower bound
     * skips most members once the batch is full. No allocation. */
    unsigned q = chunk_bits(&ring->cfg);
    uint32_t kc[ROUNDS], local = q ? bucket & (((uint32_t)1 << q) - 1) : 0;
    perm_chunk(kc, bucket >> q);
    uint64_t last_s = 0;
    uint32_t last_m = RING_NONE;
    while (w < want) {
        uint64_t ts[WALK_BATCH];
        uint32_t tm[WALK_BATCH];
        size_t nt = 0, lim = want - w < WALK_BATCH ? want - w : WALK_BATCH;
        for (uint32_t m = 0; m < ring->n; m++) {
            if (in_row(row, (uint32_t)got, m))
                continue;
            uint64_t h = ring->mem[m].hash, wmul = UINT64_MAX / ring->mem[m].pub.weight;
            struct perm p;
            perm_member(&p, h, false);
            uint32_t v = q ? perm_fwd(&p, kc, local, q) : 0;
            if (nt == lim && mulhi(nlog_lb(v, q), wmul) > ts[nt - 1])
                continue;
            uint64_t s = mulhi(escore(h, bucket, v, q, NULL), wmul);
            if (last_m != RING_NONE && (s < last_s || (s == last_s && m <= last_m)))
                continue;
            if (nt == lim && (s > ts[nt - 1] || (s == ts[nt - 1] && m > tm[nt - 1])))
                continue;
            size_t i = nt < lim ? nt++ : nt - 1;
            for (; i > 0 && (s < ts[i - 1] || (s == ts[i - 1] && m < tm[i - 1])); i--) {
                ts[i] = ts[i - 1];
                tm[i] = tm[i - 1];
            }
            ts[i] = s;
            tm[i] = m;
        }
        if (nt == 0)
            break;
        for (size_t i = 0; i < nt; i++)
            out[w++] = tm[i];
        last_s = ts[nt - 1];
        last_m = tm[nt - 1];
    }
    return w;
}

void
ring_digest(const struct ring *ring, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[ring->digest[i] >> 4];
        out[2 * i + 1] = hex[ring->digest[i] & 15];
    }
    out[32] = '\0';
}

static uint32_t
cell(const struct ring *ring, size_t i)
{
    return ring->row16 ? ring->row16[i] : ring->row32[i];
}

int
ring_diff(const struct ring *old, const struct ring *new_, uint32_t *out, size_t max, size_t *count)
{
    if (!config_equal(&old->cfg, &new_->cfg))
        return -RING_EBADCONFIG;
    /* Map old indices to new ones by merging the two id-sorted arrays. */
    uint32_t *map = malloc((old->n ? old->n : 1) * sizeof(*map));
    if (map == NULL)
        return -ENOMEM;
    for (size_t i = 0, j = 0; i < old->n; i++) {
        map[i] = RING_NONE;
        while (j < new_->n && strcmp(new_->mem[j].pub.id, old->mem[i].pub.id) < 0)
            j++;
        if (j < new_->n && strcmp(new_->mem[j].pub.id, old->mem[i].pub.id) == 0)
            map[i] = (uint32_t)j;
    }
    size_t total = 0;
    for (uint32_t b = 0; b < old->cfg.buckets; b++) {
        bool differ = old->rlen != new_->rlen;
        for (uint32_t r = 0; !differ && r < old->rlen; r++)
            differ =
                map[cell(old, (size_t)b * old->rlen + r)] != cell(new_, (size_t)b * new_->rlen + r);
        if (differ) {
            if (total < max)
                out[total] = b;
            total++;
        }
    }
    free(map);
    *count = total;
    return 0;
}

struct ring *
ring_gen_push(struct ring_gen *gen, struct ring *next)
{
    struct ring *fell = gen->prev;
    gen->prev = gen->cur;
    gen->cur = next;
    gen->number++;
    return fell;
}

struct ring *
ring_gen_drop_prev(struct ring_gen *gen)
{
    struct ring *prev = gen->prev;
    gen->prev = NULL;
    return prev;
}

const char *
ring_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case RING_EBADCONFIG:
        return "bad ring config";
    case RING_EDUPID:
        return "duplicate member id";
    case RING_EEMPTYID:
        return "empty or overlong member id";
    case RING_EBADWEIGHT:
        return "member weight is 0 or above weight_scale";
    case RING_ETOOMANY:
        return "too many members";
    default:
        return strerror(err);
    }
}
