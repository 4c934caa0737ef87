/* SPDX-License-Identifier: ISC */
/*
 * ring_build(): checks and copies the member records, sorts them by id
 * (the canonical member numbering), indexes the zones, has place.c fill the
 * rows and computes the table digest. Also the big-block allocator every
 * build uses. docs/hashing.md has the design and the measurements.
 */
#include "ring/ring.h"

#include "ring/ring_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
 * hint only; plain pages also work. Free with ring_big_free() and the same
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

void *
ring_big_alloc(size_t bytes)
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

void
ring_big_free(void *p, size_t bytes)
{
    if (bytes < BIG_MAP)
        free(p);
    else if (p != NULL)
        (void)munmap(p, big_len(bytes));
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
    struct skey *blk = ring_big_alloc(2 * n * sizeof(*blk)), *a = blk, *b = blk + (blk ? n : 0);
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
    ring_big_free(blk, 2 * n * sizeof(*blk));
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
    ring->arena = ring_big_alloc(ring->arena_len);
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
    ring->mem = ring_big_alloc(ring->mem_len);
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
        ring->row16 = ring_big_alloc(ring->row_len);
    else
        ring->row32 = ring_big_alloc(ring->row_len);
    if (!ring->row16 && !ring->row32)
        goto out;
    ring->bytes += cells * (ring->row16 ? 2 : 4);
    if (n > 0 && (rc = ring_place(ring)) < 0)
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
    ring_big_free(ring->mem, ring->mem_len); /* zone and zlist too */
    ring_big_free(ring->arena, ring->arena_len);
    free(ring->zstart);
    ring_big_free(ring->row16 ? (void *)ring->row16 : (void *)ring->row32, ring->row_len);
    free(ring);
}
