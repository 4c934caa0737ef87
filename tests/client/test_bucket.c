/* SPDX-License-Identifier: ISC */
/*
 * The bucket function's test vectors, read from docs/bucket.md itself (the
 * tables after the <!-- bucket-... --> markers), so the page and the code
 * cannot drift apart: every row is checked against the functions the shed
 * and the C client call (proto_burrow_parse_path, XXH3 from libxxhash,
 * ring_account_buckets, ring_key_index, proto_burrow_ring_key,
 * shed_client_url_bucket, client_wire_parse_ring).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "client/client.h"
#include "client/wire.h"
#include "proto/burrow.h"
#include "ring/ring.h"

#define DOC_MAX   (1 << 20) /* bytes of docs/bucket.md we read */
#define CELL_MAX  2048      /* bytes of one expanded cell */
#define CELLS_MAX 12        /* cells in one row */
#define ROWS_MAX  64        /* rows in one table */
#define CFGS_MAX  16

struct row {
    int ncell;
    char cell[CELLS_MAX][CELL_MAX];
    size_t len[CELLS_MAX]; /* bytes after unescaping (cells may hold NUL-free binary) */
};

static char doc[DOC_MAX];

static void
load_doc(void)
{
    FILE *f = fopen(BUCKET_DOC, "rb");
    size_t n;

    cr_assert_not_null(f, "cannot open %s", BUCKET_DOC);
    n = fread(doc, 1, sizeof(doc) - 1, f);
    cr_assert(n < sizeof(doc) - 1, "%s is over %d bytes", BUCKET_DOC, DOC_MAX);
    doc[n] = '\0';
    fclose(f);
}

/* Expand "{c*N}" and, when <esc>, "\xHH" into <out>; returns the length. */
static size_t
expand(const char *s, size_t len, bool esc, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len;) {
        unsigned n;
        char c;
        int used = 0;

        if (s[i] == '{' && sscanf(s + i, "{%c*%u}%n", &c, &n, &used) == 2 && used > 0) {
            cr_assert(o + n < CELL_MAX, "cell too long");
            memset(out + o, c, n);
            o += n;
            i += (size_t)used;
        } else if (esc && s[i] == '\\' && i + 3 < len && s[i + 1] == 'x') {
            char hex[3] = {s[i + 2], s[i + 3], 0};
            out[o++] = (char)strtoul(hex, NULL, 16);
            i += 4;
        } else {
            out[o++] = s[i++];
        }
        cr_assert(o < CELL_MAX, "cell too long");
    }
    out[o] = '\0';
    return o;
}

/* The rows of the table after <marker> (header and separator skipped). */
static int
read_table(const char *marker, struct row *rows, int max)
{
    const char *p = strstr(doc, marker);
    int n = 0, line = 0;

    cr_assert_not_null(p, "marker %s not in %s", marker, BUCKET_DOC);
    p = strchr(p, '\n') + 1;
    while (*p == '|') {
        const char *end = strchr(p, '\n');
        struct row *r = &rows[n];

        cr_assert_not_null(end);
        if (line++ >= 2) {
            const char *c = p + 1;

            cr_assert(n < max, "too many rows after %s", marker);
            r->ncell = 0;
            while (c < end) {
                const char *bar = memchr(c, '|', (size_t)(end - c));
                const char *a = c, *b;

                if (bar == NULL)
                    break;
                b = bar;
                while (a < b && *a == ' ')
                    a++;
                while (b > a && b[-1] == ' ')
                    b--;
                if (b - a >= 2 && *a == '`' && b[-1] == '`') {
                    a++;
                    b--;
                }
                cr_assert(r->ncell < CELLS_MAX);
                /* Unescaped here; \xHH is undone per column below. */
                r->len[r->ncell] = expand(a, (size_t)(b - a), false, r->cell[r->ncell]);
                r->ncell++;
                c = bar + 1;
            }
            n++;
        }
        p = end + 1;
    }
    cr_assert(n > 0, "no rows after %s", marker);
    return n;
}

static struct row cfg_rows[CFGS_MAX];
static struct row vec_rows[ROWS_MAX];

static const struct ring_config *
find_cfg(int ncfg, struct ring_config *cfgs, const char *name)
{
    for (int i = 0; i < ncfg; i++)
        if (strcmp(cfg_rows[i].cell[0], name) == 0)
            return &cfgs[i];
    cr_assert_fail("unknown cfg %s", name);
    return NULL;
}

static int
load_cfgs(struct ring_config *cfgs)
{
    int n = read_table("<!-- bucket-configs", cfg_rows, CFGS_MAX);

    for (int i = 0; i < n; i++) {
        cr_assert_eq(cfg_rows[i].ncell, 2);
        cr_assert_eq(client_wire_parse_ring(cfg_rows[i].cell[1], cfg_rows[i].len[1], &cfgs[i]), 0,
                     "Shed-Ring %s", cfg_rows[i].cell[1]);
        cr_assert_eq(ring_config_check(&cfgs[i]), 0);
    }
    return n;
}

Test(bucket, vectors_match_ring_and_client)
{
    struct ring_config cfgs[CFGS_MAX];
    int ncfg, n;
    static char acc[CELL_MAX], key[CELL_MAX], url[4096], idbuf[3 * PROTO_BURROW_ID_MAX + 8];

    load_doc();
    ncfg = load_cfgs(cfgs);
    n = read_table("<!-- bucket-vectors", vec_rows, ROWS_MAX);
    cr_assert_geq(n, 10, "at least 10 vectors");
    for (int i = 0; i < n; i++) {
        struct row *r = &vec_rows[i];
        const struct ring_config *cfg;
        struct proto_burrow_path bp;
        size_t alen, klen;
        uint32_t list[RING_MAX_K], b;
        char want[1024] = "", *w = want;
        XXH128_hash_t h;
        char hex[64];
        unsigned long j;

        cr_assert_eq(r->ncell, 10, "row %d: %d cells", i + 1, r->ncell);
        cr_assert_eq(atoi(r->cell[0]), i + 1, "rows are numbered 1..n");
        cfg = find_cfg(ncfg, cfgs, r->cell[1]);
        alen = expand(r->cell[3], r->len[3], true, acc);
        klen = expand(r->cell[4], r->len[4], true, key);

        /* URL -> decoded ids, as the shed and the client parse them. */
        cr_assert_eq(proto_burrow_parse_path(r->cell[2], r->len[2], idbuf, sizeof(idbuf), &bp), 0,
                     "vector %d: %s does not parse", i + 1, r->cell[2]);
        cr_assert_eq(bp.level, PROTO_BURROW_MESSAGE, "vector %d", i + 1);
        cr_assert(bp.account.len == alen && memcmp(bp.account.ptr, acc, alen) == 0,
                  "vector %d: account", i + 1);
        cr_assert(bp.queue.len + 1 + bp.message.len == klen, "vector %d: key length", i + 1);
        cr_assert(memcmp(bp.queue.ptr, key, bp.queue.len) == 0 && key[bp.queue.len] == '/' &&
                      memcmp(bp.message.ptr, key + bp.queue.len + 1, bp.message.len) == 0,
                  "vector %d: key", i + 1);

        /* The two hashes. */
        h = XXH3_128bits_withSeed(acc, alen, cfg->seed_account);
        snprintf(hex, sizeof(hex), "%016" PRIx64 " %016" PRIx64, (uint64_t)h.high64,
                 (uint64_t)h.low64);
        cr_assert_str_eq(hex, r->cell[5], "vector %d: h128", i + 1);
        snprintf(hex, sizeof(hex), "%016" PRIx64,
                 (uint64_t)XXH3_64bits_withSeed(key, klen, cfg->seed_key));
        cr_assert_str_eq(hex, r->cell[6], "vector %d: h64", i + 1);

        /* Index, the account's list, the bucket. */
        j = strtoul(r->cell[7], NULL, 10);
        cr_assert_eq(ring_key_index(cfg, key, klen), j, "vector %d: j", i + 1);
        ring_account_buckets(cfg, acc, alen, list);
        for (uint32_t k = 0; k < cfg->k; k++)
            w +=
                snprintf(w, sizeof(want) - (size_t)(w - want), "%s%" PRIu32, k ? " " : "", list[k]);
        cr_assert_str_eq(want, r->cell[8], "vector %d: account buckets", i + 1);
        b = (uint32_t)strtoul(r->cell[9], NULL, 10);
        cr_assert_eq(list[j], b, "vector %d: list[j]", i + 1);
        cr_assert_eq(ring_bucket(cfg, acc, alen, key, klen), b, "vector %d", i + 1);
        char pkey[PROTO_BURROW_KEY_MAX];
        long pk = proto_burrow_ring_key(bp.queue.ptr, bp.queue.len, bp.message.ptr, bp.message.len,
                                        pkey, sizeof(pkey));
        cr_assert_eq(pk, (long)klen, "vector %d: proto_burrow_ring_key", i + 1);
        cr_assert_eq(memcmp(pkey, key, klen), 0, "vector %d: proto_burrow_ring_key", i + 1);

        /* What the client computes for the whole URL before a pinned send. */
        snprintf(url, sizeof(url), "http://Burrow.Service:8080%s?detail=body&x=%%2F", r->cell[2]);
        cr_assert_eq(shed_client_url_bucket(cfg, url, &b), 0, "vector %d: %s", i + 1, url);
        cr_assert_eq(b, list[j], "vector %d: client bucket", i + 1);
    }
}

Test(bucket, refused_paths_have_no_bucket)
{
    static struct row rows[ROWS_MAX];
    struct ring_config cfg;
    static char idbuf[3 * PROTO_BURROW_ID_MAX + 8], url[4096];
    int n;

    load_doc();
    ring_config_default(&cfg);
    n = read_table("<!-- bucket-refused", rows, ROWS_MAX);
    for (int i = 0; i < n; i++) {
        struct proto_burrow_path bp;
        int rc =
            proto_burrow_parse_path(rows[i].cell[0], rows[i].len[0], idbuf, sizeof(idbuf), &bp);
        const char *what = rows[i].cell[1];
        uint32_t b;

        if (strncmp(what, "list", 4) == 0)
            cr_assert(rc == 0 && bp.level != PROTO_BURROW_MESSAGE, "%s", rows[i].cell[0]);
        else if (strstr(what, "(404)") != NULL)
            cr_assert_eq(rc, -PROTO_ENOTFOUND, "%s: %d", rows[i].cell[0], rc);
        else if (strstr(what, "(400)") != NULL)
            cr_assert(rc == -PROTO_EBADENC || rc == -PROTO_ETOOLONG || rc == -PROTO_EDOTSEG,
                      "%s: %d", rows[i].cell[0], rc);
        else
            cr_assert_fail("row %d: unknown outcome %s", i + 1, what);
        snprintf(url, sizeof(url), "http://burrow.service%s", rows[i].cell[0]);
        cr_assert_eq(shed_client_url_bucket(&cfg, url, &b), -ENOENT, "%s", url);
    }
}
