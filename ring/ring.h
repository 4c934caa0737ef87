/* SPDX-License-Identifier: ISC */
/*
 * ring: two-step consistent hashing for Burrow (see DESIGN.md section 3 and
 * docs/hashing.md).
 *
 *   account -> K buckets out of B     ring_account_buckets()   (no membership)
 *   "queue/message" -> one of those K ring_key_index()         (jump hash)
 *   bucket -> R ordered members       ring_row(), ring_walk()  (needs a table)
 *
 * The table is a pure function of the config and the member records: the
 * same records in any order give the same table and the same digest, on every
 * machine and every run. Pure library: no I/O, no logging, no globals.
 *
 * Ownership: ring_build() returns an owned table that copies every record
 * (strings included); ring_destroy(NULL) is a no-op. A built table is
 * immutable, so any number of threads may read it at once without locks.
 */
#ifndef RING_RING_H
#define RING_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RING_MAX_R       8          /* servers per bucket */
#define RING_MAX_K       64         /* buckets per account */
#define RING_MAX_BUCKETS (1u << 24) /* B */
#define RING_MAX_MEMBERS 1000000u   /* members in one table */
#define RING_ID_MAX      255        /* bytes in a member id */
#define RING_WEIGHT_MAX  65535u     /* largest weight_scale */
#define RING_NONE        UINT32_MAX /* "no member" in row outputs */

/* Module error codes, returned negated; see ring_strerror(). */
enum {
    RING_EBADCONFIG = 1000, /* B not a power of two, K or R out of range, ... */
    RING_EDUPID,            /* two records with the same id */
    RING_EEMPTYID,          /* empty or overlong id */
    RING_EBADWEIGHT,        /* weight 0 or above weight_scale */
    RING_ETOOMANY,          /* more than RING_MAX_MEMBERS records */
};

struct ring_config {
    uint32_t buckets;      /* B: power of two, 1..RING_MAX_BUCKETS */
    uint32_t k;            /* buckets per account, 1..min(B, RING_MAX_K) */
    uint32_t r;            /* servers per bucket, 1..RING_MAX_R */
    uint32_t weight_scale; /* fixed W_SCALE: weights are 1..weight_scale */
    double eps;            /* bounded-load slack (0 = pass off), 0..1 */
    uint64_t seed_account; /* account -> buckets */
    uint64_t seed_key;     /* key -> one of K */
    uint64_t seed_place;   /* bucket -> members */
};

/* A membership record. In ring_build() input every pointer is borrowed. */
struct ring_member {
    const char *id;   /* stable identity, 1..RING_ID_MAX bytes, NUL-terminated */
    const char *url;  /* where it serves, e.g. "http://10.0.1.7:8080" */
    const char *zone; /* failure domain; "" is a zone of its own */
    uint32_t weight;  /* 1..config weight_scale */
};

struct ring;

/* Fill <cfg> with sane defaults: B=65536, K=3, R=3, weight_scale=200,
 * eps=0.03, fixed seeds. */
void ring_config_default(struct ring_config *cfg);

/* 0 if <cfg> is usable, else -RING_EBADCONFIG. */
int ring_config_check(const struct ring_config *cfg);

/* Write the cfg->k distinct buckets of <account> into <out> (cfg->k entries),
 * in preference order. Depends only on account, B, K and seed_account. */
void ring_account_buckets(const struct ring_config *cfg, const char *account, size_t len,
                          uint32_t *out);

/* Index in [0, cfg->k) of the bucket that <key> ("queue/message", the
 * decoded ids joined by '/') uses among its account's K buckets. */
uint32_t ring_key_index(const struct ring_config *cfg, const char *key, size_t len);

/* Convenience: the bucket of <key> under <account>. */
uint32_t ring_bucket(const struct ring_config *cfg, const char *account, size_t alen,
                     const char *key, size_t klen);

/* The key of a Burrow message ("queue/message") is built in one place,
 * proto_burrow_ring_key() (proto/burrow.h, docs/bucket.md). */

/* Jump consistent hash (Lamping & Veach): a bucket in [0, n). n >= 1. */
uint32_t ring_jump(uint64_t key, uint32_t n);

/* Build a table from <n> records (any order). On success *out owns the
 * table and 0 is returned; on error a negative code (-RING_E*, -ENOMEM) and
 * *out is untouched. n == 0 gives a valid empty table that routes nowhere.
 * For large tables (B * n >= 2^24 and B > 2^16) the build runs a second
 * thread for its duration; the table is identical to a single-threaded
 * build. */
int ring_build(const struct ring_config *cfg, const struct ring_member *members, size_t n,
               struct ring **out);
void ring_destroy(struct ring *ring);

/* The config the table was built with. */
const struct ring_config *ring_config(const struct ring *ring);

/* Members are numbered 0..ring_size()-1 in a canonical order (sorted by id),
 * so an index means the same member on every machine for this table. */
size_t ring_size(const struct ring *ring);
const struct ring_member *ring_member_at(const struct ring *ring, uint32_t idx);
/* Heap bytes held by the table: records, strings, zone index and rows.
 * (Added by the ring implementation; used by the benchmark.) */
size_t ring_bytes(const struct ring *ring);
/* Index of member <id>, or RING_NONE. */
uint32_t ring_find(const struct ring *ring, const char *id);

/* The R member indices serving <bucket>, primary first, into <out> (R
 * entries). Returns how many are valid (< R only when fewer members exist;
 * 0 for an empty table). No allocation; O(1). */
size_t ring_row(const struct ring *ring, uint32_t bucket, uint32_t *out);

/* The first <max> distinct members in <bucket>'s preference order: the R of
 * ring_row() then the handoff servers beyond R. Returns how many were written
 * (min(max, ring_size())). No allocation. The first R are a table read;
 * the handoffs beyond them cost one O(N) pass over the rendezvous scores per
 * 32 handoffs. */
size_t ring_walk(const struct ring *ring, uint32_t bucket, uint32_t *out, size_t max);

/* 128-bit digest of the table (config + rows + records), as 32 hex chars + NUL. */
void ring_digest(const struct ring *ring, char out[33]);

/* Buckets whose row (member ids, in order) differs between <old> and <new>
 * (same config required, else -RING_EBADCONFIG). Writes up to <max> bucket
 * numbers to <out> and the total count to *count. */
int ring_diff(const struct ring *old, const struct ring *new_, uint32_t *out, size_t max,
              size_t *count);

/* Two generations side by side for the drain window: cur and the one before.
 * The caller owns both tables; ring_gen_push() consumes <next>, makes it
 * current and returns the table that fell out of the window (to destroy). */
struct ring_gen {
    struct ring *cur;  /* owned; may be NULL before the first build */
    struct ring *prev; /* owned; NULL once the drain window is over */
    uint64_t number;   /* generation of cur, 1 for the first build */
};
struct ring *ring_gen_push(struct ring_gen *gen, struct ring *next);
/* End the drain window: returns prev (to destroy) and clears it. */
struct ring *ring_gen_drop_prev(struct ring_gen *gen);

/* Text for a code returned by this module (negated or not). */
const char *ring_strerror(int err);

#endif /* RING_RING_H */
