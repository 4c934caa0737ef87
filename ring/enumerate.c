/* SPDX-License-Identifier: ISC */
/*
 * Candidate enumeration of a ring build: for one chunk of Q = 2^16
 * buckets, every member lists the buckets where it scores below a
 * threshold, in increasing score order, by inverting its bijection of the
 * chunk (8 members at once in 16-bit vector lanes), and the triples are
 * scored and packed into per-sub-range streams for place.c to sort and
 * fill. docs/hashing.md has the algorithm and its figures.
 */
#include "ring/ring_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Grid values nlog(v / Q) are computed on demand up to t->len. */
static uint64_t
etab_at(struct etab *t, uint32_t v)
{
    while (t->len <= v) {
        t->e[t->len] = nlog((uint64_t)t->len << (64 - t->q));
        t->len++;
    }
    return t->e[v];
}

/* Double every stream's capacity (rare: the first estimate has ~8 sd of
 * slack). */
static int
streams_grow(struct pass *ps)
{
    size_t cap = 2 * ps->scap;
    uint64_t *blk = ring_big_alloc(ps->nsub * cap * sizeof(*blk));
    if (blk == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < ps->nsub; i++) {
        memcpy(blk + i * cap, ps->streams[i].key, ps->streams[i].len * sizeof(*blk));
        ps->streams[i].key = blk + i * cap;
    }
    ring_big_free(ps->sblock, ps->nsub * ps->scap * sizeof(*blk));
    ps->sblock = blk;
    ps->scap = cap;
    return 0;
}

/* Grid value <v> from the cache when it is there, else computed (the same
 * bits); never writes, so threads may call it together. */
static uint64_t
etab_get(const struct etab *t, uint32_t v)
{
    return v < t->len ? t->e[v] : nlog((uint64_t)v << (64 - t->q));
}

/* Smallest v in [0, Q) whose grid score for <wmul> reaches <thr> (Q if none):
 * every v >= it scores >= thr. <fill>: extend the grid cache as needed (one
 * thread only); else only read it (any number of threads). */
uint32_t
ring_v_bound(struct etab *t, bool fill, uint64_t wmul, uint64_t thr)
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

/* The first round for blocks whose members all enumerate the same v
 * range (equal weights): each step's ELANES buckets are scored on the spot
 * instead of going through score_batch(), with the block's hashes, weights
 * and zone bits and the step's grid values loaded once. Same candidates as
 * ring_enumerate() with score_batch(). Stream room is checked only when the
 * room known to be left in every stream (<budget>) runs out: a block's
 * range is done in pieces that fit it. (It used to need room for a whole
 * block at once: with few members, whose ranges span most of the chunk,
 * that doubled every stream five times, to ~130 MB at 10 members, for
 * candidates that fit in the first allocation.) Returns the first member
 * not done (a block of unequal ranges is left to ring_enumerate()) or a
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
int
ring_enumerate(struct pass *ps, uint32_t base, uint64_t *cz, const uint8_t *shortb,
               const uint32_t *vb, int r, uint64_t thr_lo, uint64_t thr_hi, uint32_t mlo,
               uint32_t mhi)
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
