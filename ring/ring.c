/* SPDX-License-Identifier: ISC */
/*
 * ring lookups: what a shed or a client computes per request. An account
 * maps to K of B buckets (double hashing of XXH3-128, no membership), a
 * "queue/message" key to one of those K (jump hash), a bucket to the R
 * members of its row (a table read) and, for handoffs beyond R, to the
 * continuation of the bucket's weighted rendezvous order (ring_walk(): one
 * O(N) pass per 32 handoffs). The table itself is made by ring_build()
 * (build.c, place.c, enumerate.c); the algorithm and its figures are in
 * docs/hashing.md.
 */
#include "ring/ring.h"

#include "ring/ring_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
