/* SPDX-License-Identifier: ISC */
/*
 * The rows of a ring build: each bucket's candidates (from enumerate.c)
 * are sorted by score and its row taken from the start of that order under
 * the zone rule and, when on, the bounded-load caps; buckets whose list
 * runs out get an O(N) scan. Also the second build thread and the work it
 * shares. docs/hashing.md has the algorithm, the threads and the figures.
 */
#include "ring/ring_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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
        b->sblock = ring_big_alloc(ps->nsub * b->scap * sizeof(*b->sblock));
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
        ring_big_free(w->sb[k].sblock, w->ps.nsub * w->sb[k].scap * sizeof(*w->sb[k].sblock));
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
        return ring_enumerate(&w->ps, base, w->cz, shortb, w->vb, r, thr_lo, thr_hi, 0,
                              (uint32_t)n);
    if (w->id == 0)
        atomic_store(&sh->enext[(e + 1) & 1], 0);
    for (;;) {
        size_t lo = (size_t)atomic_fetch_add(&sh->enext[e & 1], 1) * per;
        if (lo >= n)
            return 0;
        size_t hi = lo + per < n ? lo + per : n;
        int rc = ring_enumerate(&w->ps, base, w->cz, shortb, w->vb, r, thr_lo, thr_hi, (uint32_t)lo,
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
             * joins. Rounding share - 1 + u down keeps every cap <= share.
             * A full member that loses a bucket or a unit of cap on a join
             * refills from the buckets it refused: docs/hashing.md section
             * 10 has what that costs (~1.6x optimal primaries at ~400
             * buckets per member, eps 0.03) and why. */
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
                *b = ring_v_bound(&ps->et, false, ps->wmul[i], w->thr[r]);
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

int
ring_place(struct ring *ring)
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
        if (pass == 1 && (cv.base = ring_big_alloc(cv.used)) == NULL)
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
        (void)ring_v_bound(&ps.et, true, UINT64_MAX / wmax, thr[r]);
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
        /* Split at a block boundary: ring_enumerate() takes ELANES at once. */
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
    ring_big_free(cv.base, cv.used);
    return rc;
}
