/* SPDX-License-Identifier: ISC */
/*
 * ring internals, shared by the files of ring/ and by nothing else (not
 * installed):
 *
 *   ring.c       lookups: account -> buckets, key -> bucket, rows, walks,
 *                digest, diff, generations (what sheds and clients call
 *                per request)
 *   build.c      ring_build(): records, id sort, zone index, strings,
 *                digest; the big-block allocator
 *   place.c      the rows: zone rule, bounded-load pass, build threads
 *   enumerate.c  candidates: each member lists its buckets of a chunk in
 *                increasing score order
 *
 * What and why, in short (docs/hashing.md has the whole argument and the
 * figures): a bucket's row is the start of its weighted rendezvous order,
 * score -log2(1 - x) / w, because that is a pure function of the member
 * set that moves ~1/(N+1) of the buckets on a join (section 2). x comes from
 * a keyed bijection of each chunk of 2^16 buckets, so a member lists its
 * buckets in score order instead of every bucket scoring every member
 * (section 3). On top: min(R, #zones) zones per row (section 4) and, with
 * eps > 0, the bounded-load caps (section 5). Scores are integers: the same
 * table on every machine and with one build thread or two (section 7).
 */
#ifndef RING_RING_IMPL_H
#define RING_RING_IMPL_H

#include "ring/ring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#define XXH_INLINE_ALL /* short keys: inlined and specialised, no PLT call */
#include <xxhash.h>

__extension__ typedef unsigned __int128 u128;

#define CHUNK_BITS 16 /* Q = 2^16 buckets share one bijection per member */
#define URL_MAX    2048
#define ZONE_MAX   255
#define ROUNDS     2 /* of the bijection; enumerate() is unrolled for 2 */
#define GOLD       0x9e3779b97f4a7c15ull

/* Functions one file of ring/ calls in another: not part of the API. */
#define RING_INTERNAL __attribute__((visibility("hidden")))

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

static inline uint64_t
fmix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static inline uint64_t
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
static inline uint64_t
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
static inline uint64_t
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

static inline uint64_t
inverse_odd(uint64_t a)
{
    uint64_t x = a; /* correct to 3 bits; each step doubles */
    for (int i = 0; i < 5; i++)
        x *= 2 - a * x;
    return x;
}

static inline void
perm_member(struct perm *p, uint64_t h, bool with_inverse)
{
    for (int r = 0; r < ROUNDS; r++) {
        p->a[r] = (uint32_t)(fmix(h + (uint64_t)(r + 1) * GOLD) & 0xffff) | 1;
        p->ainv[r] = with_inverse ? (uint32_t)(inverse_odd(p->a[r]) & 0xffff) : 0;
        p->k[r] = (uint32_t)(fmix(h ^ ((uint64_t)(r + 1) * 0x632be59bd9b4e019ull)) & 0xffff);
    }
}

/* Chunk part of the keys. */
static inline void
perm_chunk(uint32_t kc[ROUNDS], uint64_t chunk)
{
    for (int r = 0; r < ROUNDS; r++)
        kc[r] =
            (uint32_t)(fmix(chunk * 0xd6e8feb86659fd93ull + (uint64_t)r + 0x632be59bd9b4e019ull) &
                       0xffff);
}

static inline uint32_t
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
static inline uint64_t
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

static inline unsigned
chunk_bits(const struct ring_config *cfg)
{
    unsigned b = (unsigned)__builtin_ctz(cfg->buckets);
    return b < CHUNK_BITS ? b : CHUNK_BITS;
}

static inline bool
in_row(const uint32_t *row, uint32_t len, uint32_t m)
{
    for (uint32_t i = 0; i < len; i++)
        if (row[i] == m)
            return true;
    return false;
}

/* ---- build-time state (build.c, place.c, enumerate.c) -------------------- */

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

#define EBATCH 512 /* (member, v, bucket) triples scored together */

/* Per bucket of a chunk, one word: candidates so far (high 32 bits) and the
 * zones seen, modulo 32 (low 32 bits). */
#define CZ_ONE ((uint64_t)1 << 32)

/* The grid values [*lo, *hi) member <m> enumerates in round <r>: from one
 * below the previous round's bound (scores are filtered exactly). */
static inline void
vrange(const uint32_t *vb, size_t m, int r, uint32_t *lo, uint32_t *hi)
{
    uint32_t l = r == 0 ? 0 : vb[m * MAX_ROUNDS + (size_t)r - 1];
    *lo = l > 0 ? l - 1 : 0;
    *hi = vb[m * MAX_ROUNDS + (size_t)r];
}

/* build.c: blocks of 256 KB and more are mapped and unmapped on their own
 * (2 MB aligned with a huge-page hint from 1 MB); free with the same size. */
RING_INTERNAL void *ring_big_alloc(size_t bytes);
RING_INTERNAL void ring_big_free(void *p, size_t bytes);

/* place.c: fill ring->rows (n > 0; records, zone index and rows allocated).
 * 0 or -ENOMEM. */
RING_INTERNAL int ring_place(struct ring *ring);

/* enumerate.c: the smallest grid value whose score for <wmul> reaches <thr>;
 * <fill> extends the grid cache (one thread only). */
RING_INTERNAL uint32_t ring_v_bound(struct etab *t, bool fill, uint64_t wmul, uint64_t thr);
/* enumerate.c: round <r> of the current chunk for members [mlo, mhi) into
 * the pass's streams and the counts <cz>. 0 or -ENOMEM. */
RING_INTERNAL int ring_enumerate(struct pass *ps, uint32_t base, uint64_t *cz,
                                 const uint8_t *shortb, const uint32_t *vb, int r, uint64_t thr_lo,
                                 uint64_t thr_hi, uint32_t mlo, uint32_t mhi);

#endif /* RING_RING_IMPL_H */
