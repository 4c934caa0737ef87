/* SPDX-License-Identifier: ISC */
/*
 * ring: two-step consistent hashing (account -> K buckets -> R members).
 *
 * Why this placement algorithm. Members are identified by strings, not by
 * dense slots handed out by a control plane, so the probe-over-slots design of
 * reference/hashing.md 4.3 would need a slot assignment that is both a pure
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
 * chunk. So each member can *enumerate* its buckets in increasing score order
 * (v = 0, 1, 2, ... -> b = P_m^-1(v)) and stop at a threshold T chosen so that
 * every bucket gets ~12-20 candidates (candidates_wanted()). Each bucket
 * sees the exact start of its HRW order; the rare bucket that needs more
 * (zone rule, Poisson tail) falls back to an O(N) scan, so with eps == 0 the
 * result never depends on T. Scores are integers (a fixed-point log, no
 * libm), hence identical on every machine.
 *
 * On top of HRW: the zone rule (min(R, #zones) distinct zones per row, walking
 * the HRW order) and, when eps > 0, a deterministic bounded-load pass over the
 * buckets in order 0..B-1 with dithered capacities (hashing.md 4.3). The caps
 * only consult the stored HRW prefix; if none of it fits, the cap is ignored
 * for that position (so a pathological weight/zone mix degrades to HRW instead
 * of scanning). Handoffs beyond R (ring_walk) continue the HRW order.
 *
 * Measured with ring-bench on the shared 2-core VM (gcc -O2, R=3, 10 zones,
 * equal weights; the machine was loaded 3x by other builds, so times are
 * pessimistic):
 *   N=1000   B=2^20 eps=0.03  peak/mean 1.031 prim / 1.030 all (cap rounding
 *                              adds up to 1 bucket), move join 1.01x all /
 *                              1.08x prim, leave 1.02x / 1.11x optimal
 *   N=10000  B=2^22 eps=0.04  peak/mean 1.042 / 1.040, join 1.03x / 1.33x
 *   route 65 ns (B=2^20 table in DRAM), 6.8x faster than 160-point ketama
 *   build: the weak spot, 10-20x over hashing.md T7 (about 12-20 candidates
 *   of ~10 ns per bucket instead of ~2 probes): ~1 s at N=1000 B=2^20,
 *   0.24 s at N=10000 B=2^16, 4.7 s wall / ~0.8 s CPU at N=100000 B=2^20.
 *   Known next step: enumerate in rounds (T, 2T, 4T) so a bucket needs ~5
 *   candidates, and pack candidates into 8 bytes.
 */
#include "ring/ring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

__extension__ typedef unsigned __int128 u128;

#define CHUNK_BITS 16 /* Q = 2^16 buckets share one bijection per member */
#define URL_MAX    2048
#define ZONE_MAX   255
#define ROUNDS     3
#define GOLD       0x9e3779b97f4a7c15ull

struct rmem {
    struct ring_member pub; /* strings point into ring->arena */
    uint64_t hash;          /* XXH3_64(id, seed_place) */
    uint64_t wmul;          /* UINT64_MAX / weight: score = L * wmul >> 64 */
    uint32_t zone;          /* index into the sorted distinct zones */
};

struct ring {
    struct ring_config cfg;
    struct rmem *mem; /* sorted by id */
    size_t n;
    char *arena; /* all strings */
    uint32_t nzones;
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

struct perm {
    uint64_t a[ROUNDS];    /* odd multipliers */
    uint64_t ainv[ROUNDS]; /* their inverses mod 2^64 */
    uint64_t k[ROUNDS];    /* per chunk */
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
        p->a[r] = fmix(h + (uint64_t)(r + 1) * GOLD) | 1;
        if (with_inverse)
            p->ainv[r] = inverse_odd(p->a[r]);
    }
}

static void
perm_chunk(struct perm *p, uint64_t h, uint64_t chunk)
{
    for (int r = 0; r < ROUNDS; r++)
        p->k[r] =
            fmix(h ^ fmix(chunk * 0xd6e8feb86659fd93ull + (uint64_t)r + 0x632be59bd9b4e019ull));
}

static uint32_t
perm_fwd(const struct perm *p, uint32_t y, unsigned q)
{
    uint64_t mask = ((uint64_t)1 << q) - 1, v = y;
    unsigned s = (q + 1) / 2;
    for (int r = 0; r < ROUNDS; r++) {
        v = ((v ^ p->k[r]) * p->a[r]) & mask;
        v ^= v >> s;
    }
    return (uint32_t)v;
}

static uint32_t
perm_inv(const struct perm *p, uint32_t v, unsigned q)
{
    uint64_t mask = ((uint64_t)1 << q) - 1, y = v;
    unsigned s = (q + 1) / 2;
    for (int r = ROUNDS - 1; r >= 0; r--) {
        y ^= y >> s; /* self-inverse because 2s >= q */
        y = ((y * p->ainv[r]) ^ p->k[r]) & mask;
    }
    return (uint32_t)y;
}

/* E(b, m) = -log2(1 - x) in Q57 with x = (v + frac) / Q, an Exp(ln 2) draw.
 * Between the grid points v / Q it is interpolated linearly (relative error
 * ~1e-10, monotone), so enumeration only needs a table of the grid values;
 * the last interval, where the log diverges, is computed directly. <etab>
 * caches nlog(v / Q) and may be NULL. */
static uint64_t
escore(uint64_t h, uint32_t bucket, uint32_t v, unsigned q, const uint64_t *etab)
{
    uint64_t f = fmix(h ^ ((uint64_t)bucket * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull));
    if (q == 0)
        return nlog(f);
    if (v == ((uint32_t)1 << q) - 1)
        return nlog(((uint64_t)v << (64 - q)) | (f >> q));
    uint64_t lo = etab ? etab[v] : nlog((uint64_t)v << (64 - q));
    uint64_t hi = etab ? etab[v + 1] : nlog((uint64_t)(v + 1) << (64 - q));
    return lo + mulhi(hi - lo, f);
}

static unsigned
chunk_bits(const struct ring_config *cfg)
{
    unsigned b = (unsigned)__builtin_ctz(cfg->buckets);
    return b < CHUNK_BITS ? b : CHUNK_BITS;
}

/* Score of member <m> for <bucket>, computed forward (no enumeration). */
static uint64_t
score_direct(const struct ring *ring, const struct rmem *m, uint32_t bucket)
{
    unsigned q = chunk_bits(&ring->cfg);
    struct perm p;
    perm_member(&p, m->hash, false);
    perm_chunk(&p, m->hash, bucket >> q);
    uint32_t local = q ? bucket & (((uint32_t)1 << q) - 1) : 0;
    uint32_t v = perm_fwd(&p, local, q);
    return mulhi(escore(m->hash, bucket, v, q, NULL), m->wmul);
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

void
ring_account_buckets(const struct ring_config *cfg, const char *account, size_t len, uint32_t *out)
{
    XXH128_hash_t h = XXH3_128bits_withSeed(account, len, cfg->seed_account);
    unsigned bits = (unsigned)__builtin_ctz(cfg->buckets);
    uint64_t step = h.high64 | 1;
    uint32_t got = 0;
    /* Double hashing; the bound only matters for adversarial step values, and
     * the fill below keeps the output deterministic even then. */
    for (uint64_t i = 0; got < cfg->k && i < 4096; i++) {
        uint64_t x = h.low64 + i * step;
        uint32_t b = bits ? (uint32_t)(x >> (64 - bits)) : 0;
        bool dup = false;
        for (uint32_t j = 0; j < got; j++)
            dup |= out[j] == b;
        if (!dup)
            out[got++] = b;
    }
    for (uint32_t b = got ? out[got - 1] : 0; got < cfg->k;) {
        b = (b + 1) & (cfg->buckets - 1);
        bool dup = false;
        for (uint32_t j = 0; j < got; j++)
            dup |= out[j] == b;
        if (!dup)
            out[got++] = b;
    }
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
    uint32_t b[RING_MAX_K];
    ring_account_buckets(cfg, account, alen, b);
    return b[ring_key_index(cfg, key, klen)];
}

/* ---- build -------------------------------------------------------------- */

static int
cmp_mem(const void *a, const void *b)
{
    const struct rmem *x = a, *y = b;
    return strcmp(x->pub.id, y->pub.id);
}

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

/* A candidate (bucket, member, score) on its way to its bucket's list. */
struct cand {
    uint64_t s;
    uint32_t m;
    uint32_t local;
};

#define SUB_BITS 6 /* candidates are radix-split into 64 streams per chunk */

struct stream {
    struct cand *c;
    size_t len, cap;
};

static bool
cand_less(const struct cand *a, const struct cand *b)
{
    return a->s < b->s || (a->s == b->s && a->m < b->m);
}

/* Build-time state for the bucket pass. */
struct pass {
    struct ring *ring;
    const struct perm *perms; /* keys of the current chunk */
    const uint64_t *etab;     /* nlog(v / Q) */
    unsigned q;
    uint32_t *cap;  /* 2n: primary cap, all-replica cap (eps > 0) */
    uint32_t *used; /* 2n: counters */
    bool complete;  /* candidate lists hold every member */
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
        if (ring->mem[row[i]].zone == zone)
            return true;
    return false;
}

/* HRW-first member acceptable for the next position, over all members (or,
 * when a new zone is required, over the unused zones' members). O(N). */
static uint32_t
scan_pick(const struct ring *ring, uint32_t bucket, const uint32_t *row, uint32_t len,
          bool need_zone)
{
    uint32_t best = RING_NONE;
    uint64_t bs = 0;
    for (uint32_t z = 0; z < (need_zone ? ring->nzones : 1); z++) {
        if (need_zone && zone_used(ring, row, len, z))
            continue;
        uint32_t lo = need_zone ? ring->zstart[z] : 0;
        uint32_t hi = need_zone ? ring->zstart[z + 1] : (uint32_t)ring->n;
        for (uint32_t i = lo; i < hi; i++) {
            uint32_t m = need_zone ? ring->zlist[i] : i;
            if (in_row(row, len, m))
                continue;
            uint64_t s = score_direct(ring, &ring->mem[m], bucket);
            if (best == RING_NONE || s < bs || (s == bs && m < best)) {
                best = m;
                bs = s;
            }
        }
    }
    return best;
}

/* scan_pick() during the build: the chunk's keys are at hand and the grid
 * value etab[v] bounds a score from below, so most members cost one
 * bijection and no log. */
static uint32_t
scan_pick_build(const struct pass *ps, uint32_t bucket, const uint32_t *row, uint32_t len,
                bool need_zone)
{
    const struct ring *ring = ps->ring;
    uint32_t local = ps->q ? bucket & (((uint32_t)1 << ps->q) - 1) : 0;
    uint32_t last = ((uint32_t)1 << ps->q) - 1;
    uint32_t best = RING_NONE;
    uint64_t bs = 0;
    for (uint32_t z = 0; z < (need_zone ? ring->nzones : 1); z++) {
        if (need_zone && zone_used(ring, row, len, z))
            continue;
        uint32_t lo = need_zone ? ring->zstart[z] : 0;
        uint32_t hi = need_zone ? ring->zstart[z + 1] : (uint32_t)ring->n;
        for (uint32_t i = lo; i < hi; i++) {
            uint32_t m = need_zone ? ring->zlist[i] : i;
            const struct rmem *rm = &ring->mem[m];
            uint32_t v = perm_fwd(&ps->perms[m], local, ps->q);
            if (best != RING_NONE && v != last && mulhi(ps->etab[v], rm->wmul) > bs)
                continue;
            if (in_row(row, len, m))
                continue;
            uint64_t s = mulhi(escore(rm->hash, bucket, v, ps->q, ps->etab), rm->wmul);
            if (best == RING_NONE || s < bs || (s == bs && m < best)) {
                best = m;
                bs = s;
            }
        }
    }
    return best;
}

/* Sort run[from..cnt) by (score, member). */
static void
sort_tail(struct cand *run, uint32_t from, uint32_t cnt)
{
    for (uint32_t a = from + 1; a < cnt; a++) {
        struct cand c = run[a];
        uint32_t b = a;
        for (; b > from && cand_less(&c, &run[b - 1]); b--)
            run[b] = run[b - 1];
        run[b] = c;
    }
}

/* Choose the row of <bucket> from <list>, the exact start of its HRW order
 * (every member scoring below the threshold, sorted). */
static void
fill_row(struct pass *ps, uint32_t bucket, struct cand *list, uint32_t cnt, uint32_t sorted)
{
    struct ring *ring = ps->ring;
    uint32_t row[RING_MAX_R];
    uint32_t zones = 0, target = ring->rlen < ring->nzones ? ring->rlen : ring->nzones;
    bool caps = ps->cap != NULL;

    for (uint32_t pos = 0; pos < ring->rlen; pos++) {
        bool need_zone = zones < target;
        uint32_t pick = RING_NONE;
        for (int level = caps ? 0 : 1; level < 2 && pick == RING_NONE; level++) {
            for (uint32_t i = 0; i < cnt; i++) {
                if (i == sorted) {
                    sort_tail(list, sorted, cnt);
                    sorted = cnt;
                }
                uint32_t m = list[i].m;
                if (in_row(row, pos, m))
                    continue;
                if (need_zone && zone_used(ring, row, pos, ring->mem[m].zone))
                    continue;
                if (level == 0 && (ps->used[2 * m + 1] >= ps->cap[2 * m + 1] ||
                                   (pos == 0 && ps->used[2 * m] >= ps->cap[2 * m])))
                    continue;
                pick = m;
                break;
            }
        }
        if (pick == RING_NONE && !ps->complete)
            pick = scan_pick_build(ps, bucket, row, pos, need_zone);
        /* Cannot stay NONE (pos < min(R, n), and an unused zone exists while
         * need_zone); guard anyway so a bug cannot write garbage. */
        if (pick == RING_NONE)
            pick = scan_pick(ring, bucket, row, pos, false);
        if (!zone_used(ring, row, pos, ring->mem[pick].zone))
            zones++;
        row[pos] = pick;
        if (caps) {
            ps->used[2 * pick + 1]++;
            if (pos == 0)
                ps->used[2 * pick]++;
        }
    }
    row_store(ring, bucket, row);
}

static int
stream_push(struct stream *st, uint64_t s, uint32_t m, uint32_t local)
{
    if (st->len == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 1024;
        struct cand *c = realloc(st->c, cap * sizeof(*c));
        if (c == NULL)
            return -ENOMEM;
        st->c = c;
        st->cap = cap;
    }
    st->c[st->len++] = (struct cand){s, m, local};
    return 0;
}

/* Counting-sort one stream by bucket into <tmp>, sort each bucket's run by
 * (score, member) and fill those rows, in bucket order. */
static void
fill_sub(struct pass *ps, const struct stream *st, uint32_t base, uint32_t lo, uint32_t width,
         uint32_t *start, struct cand *tmp)
{
    memset(start, 0, (width + 1) * sizeof(*start));
    for (size_t j = 0; j < st->len; j++)
        start[st->c[j].local - lo + 1]++;
    for (uint32_t i = 0; i < width; i++)
        start[i + 1] += start[i];
    for (size_t j = 0; j < st->len; j++) {
        uint32_t k = st->c[j].local - lo;
        tmp[start[k]++] = st->c[j];
    }
    for (uint32_t i = 0, from = 0; i < width; i++) {
        struct cand *run = tmp + from;
        uint32_t cnt = start[i] - from;
        /* Only the first few of the order are usually needed: keep the M
         * smallest sorted in run[0..M); fill_row() sorts the rest on demand. */
        uint32_t top = ps->ring->rlen + 2;
        if (top > cnt)
            top = cnt;
        sort_tail(run, 0, top);
        for (uint32_t a = top; a < cnt && top > 0; a++) {
            if (!cand_less(&run[a], &run[top - 1]))
                continue;
            struct cand c = run[a];
            run[a] = run[top - 1];
            uint32_t b = top - 1;
            for (; b > 0 && cand_less(&c, &run[b - 1]); b--)
                run[b] = run[b - 1];
            run[b] = c;
        }
        fill_row(ps, base + lo + i, run, cnt, top);
        from = start[i];
    }
}

/* Candidates per bucket to aim for: enumeration costs ~10 ns a candidate, a
 * bucket left with fewer than <need> costs an O(N) scan (~4 ns a member);
 * minimise the sum over the Poisson count. With eps == 0 only speed depends
 * on this; with eps > 0 the caps consult exactly the members below the
 * threshold, so it is part of the definition: computed with IEEE basic
 * operations only (no libm), hence the same on every machine. */
static double
candidates_wanted(unsigned need, size_t n)
{
    double best = 0, best_cost = 0, emc = 1.0;
    for (unsigned c = 1; c < need + 2; c++)
        emc *= 0.36787944117144233; /* e^-c with basic operations only */
    for (unsigned c = need + 2; c <= 4 * need + 16; c++) {
        emc *= 0.36787944117144233;
        double term = emc, cdf = 0;
        for (unsigned k = 0; k < need; k++) {
            cdf += term;
            term *= (double)c / (double)(k + 1);
        }
        double cost = 10.0 * c + 4.0 * (double)n * cdf;
        if (best == 0 || cost < best_cost) {
            best = c;
            best_cost = cost;
        }
    }
    return best;
}

static int
place(struct ring *ring)
{
    const struct ring_config *cfg = &ring->cfg;
    size_t n = ring->n;
    unsigned q = chunk_bits(cfg);
    struct pass ps = {.ring = ring, .q = q};
    uint32_t qsize = (uint32_t)1 << q;
    uint32_t nchunks = cfg->buckets >> q;
    unsigned sub_shift = q > SUB_BITS ? q - SUB_BITS : 0;
    uint32_t nsub = qsize >> sub_shift, width = (uint32_t)1 << sub_shift;
    struct perm *perms = NULL;
    struct stream *streams = NULL;
    uint64_t *etab = NULL;
    uint32_t *start = NULL;
    struct cand *tmp = NULL;
    size_t tmpcap = 0;
    int rc = -ENOMEM;

    /* Threshold: each bucket should see about WANT members below it, so
     * that the O(N) fallback stays rare (Poisson tail). Any threshold gives
     * the same table; it only trades enumeration against fallback scans. */
    double want = candidates_wanted(ring->rlen + 1 + (cfg->eps > 0 ? 2 : 0), n), wsum = 0;
    for (size_t i = 0; i < n; i++)
        wsum += ring->mem[i].pub.weight;
    uint64_t thr = UINT64_MAX;
    if (want < (double)n) {
        double tau = want / (0.6931471805599453 * wsum) * (double)(1ull << 57);
        if (tau < 9.0e18)
            thr = (uint64_t)tau;
    }
    ps.complete = thr == UINT64_MAX;
    uint64_t stop = thr == UINT64_MAX ? UINT64_MAX : thr + (thr >> 20) + 4096;

    perms = malloc(n * sizeof(*perms));
    streams = calloc(nsub, sizeof(*streams));
    etab = malloc((size_t)qsize * sizeof(*etab));
    start = malloc(((size_t)width + 1) * sizeof(*start));
    if (!perms || !streams || !etab || !start)
        goto out;
    for (uint32_t v = 0; v < qsize; v++)
        etab[v] = q ? nlog((uint64_t)v << (64 - q)) : 0;
    ps.etab = etab;
    ps.perms = perms;
    if (cfg->eps > 0) {
        ps.cap = malloc(2 * n * sizeof(*ps.cap));
        ps.used = calloc(2 * n, sizeof(*ps.used));
        if (!ps.cap || !ps.used)
            goto out;
        for (size_t i = 0; i < n; i++) {
            const struct rmem *m = &ring->mem[i];
            double share = (1.0 + cfg->eps) * (double)cfg->buckets * m->pub.weight / wsum;
            /* Dither: without it every cap moves at once when one member joins. */
            double u0 = (double)(fmix(m->hash ^ 0x1234567ull) >> 11) / 9007199254740992.0;
            double u1 = (double)(fmix(m->hash ^ 0x7654321ull) >> 11) / 9007199254740992.0;
            ps.cap[2 * i] = (uint32_t)(share + u0);
            ps.cap[2 * i + 1] = (uint32_t)(share * ring->rlen + u1);
        }
    }
    for (size_t i = 0; i < n; i++)
        perm_member(&perms[i], ring->mem[i].hash, true);

    for (uint32_t c = 0; c < nchunks; c++) {
        uint32_t base = c << q;
        for (uint32_t i = 0; i < (uint32_t)n; i++) {
            const struct rmem *m = &ring->mem[i];
            struct perm *p = &perms[i];
            perm_chunk(p, m->hash, c);
            for (uint32_t v = 0; v < qsize; v++) {
                /* Every later v of this member scores at least this. */
                if (mulhi(etab[v], m->wmul) >= stop)
                    break;
                uint32_t local = perm_inv(p, v, q);
                uint64_t s = mulhi(escore(m->hash, base + local, v, q, etab), m->wmul);
                if (s < thr && stream_push(&streams[local >> sub_shift], s, i, local) < 0)
                    goto out;
            }
        }
        for (uint32_t sb = 0; sb < nsub; sb++) {
            if (streams[sb].len > tmpcap) {
                free(tmp);
                tmpcap = streams[sb].cap;
                if ((tmp = malloc(tmpcap * sizeof(*tmp))) == NULL)
                    goto out;
            }
            fill_sub(&ps, &streams[sb], base, sb << sub_shift, width, start, tmp);
            streams[sb].len = 0;
        }
    }
    rc = 0;
out:
    for (uint32_t sb = 0; streams && sb < nsub; sb++)
        free(streams[sb].c);
    free(streams);
    free(tmp);
    free(start);
    free(etab);
    free(ps.cap);
    free(ps.used);
    free(perms);
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

static void
hb_str(struct hbuf *h, const char *s)
{
    size_t len = strlen(s);
    hb_int(h, len, 4);
    hb_flush(h);
    XXH3_128bits_update(h->st, s, len);
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
    for (size_t i = 0; i < cells; i++)
        hb_int(&h, ring->row16 ? ring->row16[i] : ring->row32[i], 4);
    hb_flush(&h);
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(h.st));
    memcpy(ring->digest, canon.digest, 16);
    XXH3_freeState(h.st);
    return 0;
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

static int
index_zones(struct ring *ring)
{
    size_t n = ring->n;
    struct zref *z = malloc((n ? n : 1) * sizeof(*z));
    ring->zlist = malloc((n ? n : 1) * sizeof(*ring->zlist));
    ring->zstart = malloc((n + 1) * sizeof(*ring->zstart));
    if (!z || !ring->zlist || !ring->zstart) {
        free(z);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        z[i] = (struct zref){ring->mem[i].pub.zone, (uint32_t)i};
    qsort(z, n, sizeof(*z), cmp_zref);
    uint32_t nz = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(z[i].zone, z[i - 1].zone) != 0)
            ring->zstart[nz++] = (uint32_t)i;
        ring->mem[z[i].idx].zone = nz - 1;
        ring->zlist[i] = z[i].idx;
    }
    ring->zstart[nz] = (uint32_t)n;
    ring->nzones = nz;
    ring->bytes += n * sizeof(*ring->zlist) + (n + 1) * sizeof(*ring->zstart);
    free(z);
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
    ring->mem = calloc(n ? n : 1, sizeof(*ring->mem));
    ring->arena = malloc(strbytes ? strbytes : 1);
    if (!ring->mem || !ring->arena)
        goto out;
    ring->bytes = sizeof(*ring) + n * sizeof(*ring->mem) + strbytes;
    char *cur = ring->arena;
    for (size_t i = 0; i < n; i++) {
        struct rmem *m = &ring->mem[i];
        m->pub.id = copy_str(&cur, members[i].id);
        m->pub.url = copy_str(&cur, members[i].url);
        m->pub.zone = copy_str(&cur, members[i].zone);
        m->pub.weight = members[i].weight;
        m->hash = XXH3_64bits_withSeed(m->pub.id, strlen(m->pub.id), cfg->seed_place);
        m->wmul = UINT64_MAX / m->pub.weight;
    }
    qsort(ring->mem, n, sizeof(*ring->mem), cmp_mem);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(ring->mem[i - 1].pub.id, ring->mem[i].pub.id) == 0) {
            rc = -RING_EDUPID;
            goto out;
        }
    }
    if ((rc = index_zones(ring)) < 0)
        goto out;
    rc = -ENOMEM;
    size_t cells = (size_t)cfg->buckets * ring->rlen;
    if (n <= 65535)
        ring->row16 = malloc((cells ? cells : 1) * sizeof(*ring->row16));
    else
        ring->row32 = malloc(cells * sizeof(*ring->row32));
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
    free(ring->mem);
    free(ring->arena);
    free(ring->zstart);
    free(ring->zlist);
    free(ring->row16);
    free(ring->row32);
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
    size_t off = (size_t)bucket * ring->rlen;
    uint32_t i = 0;
    if (ring->row16)
        for (; i < ring->rlen; i++)
            out[i] = ring->row16[off + i];
    else
        for (; i < ring->rlen; i++)
            out[i] = ring->row32[off + i];
    for (; i < r; i++)
        out[i] = RING_NONE;
    return ring->rlen;
}

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
    /* Handoffs: the HRW order after the row, skipping row members. One O(N)
     * scan per handoff, no allocation. */
    uint64_t last_s = 0;
    uint32_t last_m = RING_NONE;
    while (w < want) {
        uint32_t best = RING_NONE;
        uint64_t bs = 0;
        for (uint32_t m = 0; m < ring->n; m++) {
            if (in_row(row, (uint32_t)got, m))
                continue;
            uint64_t s = score_direct(ring, &ring->mem[m], bucket);
            if (last_m != RING_NONE && (s < last_s || (s == last_s && m <= last_m)))
                continue;
            if (best == RING_NONE || s < bs || (s == bs && m < best)) {
                best = m;
                bs = s;
            }
        }
        if (best == RING_NONE)
            break;
        out[w++] = best;
        last_s = bs;
        last_m = best;
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
