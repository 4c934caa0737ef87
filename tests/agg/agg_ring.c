/* SPDX-License-Identifier: ISC */
/*
 * tests/agg/agg_ring: print what ring/ computes for an account, so the
 * integration test knows each message's preference row without asking a
 * shed (the ring is a pure function of its config and member records, so
 * this agrees with every shed built from the same records).
 *
 *   agg_ring B K R WEIGHT_SCALE EPS SEED_ACCOUNT SEED_KEY SEED_PLACE ACCOUNT
 *            KEY|- ID=URL=ZONE=WEIGHT...
 *
 * Prints "servers ID..." (every server of the account's K rows, row order,
 * de-duplicated), "primaries ID..." (the first server of each row) and,
 * with a KEY ("queue/message"), "row ID..." (the key's bucket row, primary
 * first).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring/ring.h"

int
main(int argc, char **argv)
{
    struct ring_config cfg;
    struct ring_member *m;
    struct ring *ring;
    uint32_t buckets[RING_MAX_K], row[RING_MAX_R];
    const char *seen[RING_MAX_K * RING_MAX_R];
    size_t nseen = 0, n;
    int rc;

    if (argc < 12) {
        fprintf(stderr, "usage: agg_ring B K R WS EPS SA SK SP ACCOUNT KEY|- MEMBER...\n");
        return 2;
    }
    ring_config_default(&cfg);
    cfg.buckets = (uint32_t)strtoul(argv[1], NULL, 10);
    cfg.k = (uint32_t)strtoul(argv[2], NULL, 10);
    cfg.r = (uint32_t)strtoul(argv[3], NULL, 10);
    cfg.weight_scale = (uint32_t)strtoul(argv[4], NULL, 10);
    cfg.eps = strtod(argv[5], NULL);
    cfg.seed_account = strtoull(argv[6], NULL, 0);
    cfg.seed_key = strtoull(argv[7], NULL, 0);
    cfg.seed_place = strtoull(argv[8], NULL, 0);
    n = (size_t)(argc - 11);
    m = calloc(n, sizeof(*m));
    if (m == NULL)
        return 1;
    for (size_t i = 0; i < n; i++) {
        char *s = argv[11 + i], *u = strchr(s, '='), *z, *w;

        if (u == NULL || (z = strchr(u + 1, '=')) == NULL || (w = strchr(z + 1, '=')) == NULL) {
            fprintf(stderr, "bad member %s\n", s);
            return 2;
        }
        *u = *z = *w = '\0';
        m[i].id = s;
        m[i].url = u + 1;
        m[i].zone = z + 1;
        m[i].weight = (uint32_t)strtoul(w + 1, NULL, 10);
    }
    rc = ring_build(&cfg, m, n, &ring);
    if (rc < 0) {
        fprintf(stderr, "ring_build: %s\n", ring_strerror(rc));
        return 1;
    }
    ring_account_buckets(&cfg, argv[9], strlen(argv[9]), buckets);
    printf("servers");
    for (uint32_t k = 0; k < cfg.k; k++) {
        size_t nr = ring_row(ring, buckets[k], row);

        for (size_t j = 0; j < nr; j++) {
            const char *id = ring_member_at(ring, row[j])->id;
            int dup = 0;

            for (size_t x = 0; x < nseen; x++)
                dup |= strcmp(seen[x], id) == 0;
            if (!dup) {
                seen[nseen++] = id;
                printf(" %s", id);
            }
        }
    }
    printf("\nprimaries");
    for (uint32_t k = 0; k < cfg.k; k++)
        if (ring_row(ring, buckets[k], row) > 0)
            printf(" %s", ring_member_at(ring, row[0])->id);
    printf("\n");
    if (strcmp(argv[10], "-") != 0) {
        uint32_t b = ring_bucket(&cfg, argv[9], strlen(argv[9]), argv[10], strlen(argv[10]));
        size_t nr = ring_row(ring, b, row);

        printf("row");
        for (size_t j = 0; j < nr; j++)
            printf(" %s", ring_member_at(ring, row[j])->id);
        printf("\n");
    }
    ring_destroy(ring);
    free(m);
    return 0;
}
