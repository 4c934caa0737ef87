/* SPDX-License-Identifier: ISC */
/*
 * proto/sync: the shed-to-shed replication message. One JSON format serves
 * three uses:
 *
 *   - line shed -> line shed of the same cell (peer sync),
 *   - line shed -> every master (the cell's membership, named by "cell"),
 *   - the registry snapshot a shed writes to its state directory.
 *
 * A message is either a delta ("entries changed after sequence <since>") or
 * a full snapshot. Entries are keyed by (service, backend id, incarnation)
 * and carry state, url, zone, weight, how long ago the backend was last
 * heard (age_ms, relative to the moment of encoding: clocks of two sheds are
 * never compared) and the sender's sequence number of the entry's last change.
 *
 *   {"v":1,"kind":"delta","cell":"a","origin":"http://127.0.0.1:8001",
 *    "epoch":77,"since":12,"seq":15,"lease_ms":3000,"aggregator":"http://...",
 *    "entries":[{"service":"burrow","id":"b1","inc":5,"state":"up",
 *                "url":"http://127.0.0.1:9001","zone":"z1","weight":100,
 *                "age_ms":120,"seq":14}]}
 *
 * The receiver answers with an ack {"v":1,"seq":15,"need_full":false}.
 *
 * Pure: jansson only, no I/O. Every size is bounded (entries, string lengths,
 * body length).
 *
 * Ownership: a struct proto_sync_msg owns its entries array
 * (proto_sync_msg_free() releases it; freeing a zeroed message is a no-op).
 * proto_sync_encode() returns a malloc'd string the caller frees with free().
 * Thread-safe (no shared state).
 */
#ifndef PROTO_SYNC_H
#define PROTO_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_SYNC_VERSION     1
#define PROTO_SYNC_MAX_ENTRIES 8192
#define PROTO_SYNC_NAME_MAX    63         /* service, cell, zone */
#define PROTO_SYNC_ID_MAX      255        /* backend id (RING_ID_MAX) */
#define PROTO_SYNC_URL_MAX     512        /* backend, origin, aggregator URLs */
#define PROTO_SYNC_BODY_MAX    (8u << 20) /* bytes of one encoded message */
#define PROTO_SYNC_WEIGHT_MAX  65535u

/* Module error codes, returned negated; see proto_sync_strerror(). */
enum {
    PROTO_SYNC_EBADJSON = 2200, /* not JSON, or not an object */
    PROTO_SYNC_EBADFIELD,       /* a field missing, of the wrong type, or out of range */
    PROTO_SYNC_EVERSION,        /* "v" is not PROTO_SYNC_VERSION */
    PROTO_SYNC_ETOOBIG,         /* over PROTO_SYNC_BODY_MAX or PROTO_SYNC_MAX_ENTRIES */
};

enum proto_sync_kind {
    PROTO_SYNC_DELTA = 0,
    PROTO_SYNC_FULL,
};

enum proto_sync_state {
    PROTO_SYNC_UP = 0,
    PROTO_SYNC_DRAINING,
    PROTO_SYNC_DOWN, /* lease missed: skipped */
    PROTO_SYNC_GONE, /* deregistered or evicted: a tombstone */
};

struct proto_sync_entry {
    char service[PROTO_SYNC_NAME_MAX + 1];
    char id[PROTO_SYNC_ID_MAX + 1];
    uint64_t incarnation;
    enum proto_sync_state state;
    char url[PROTO_SYNC_URL_MAX + 1];
    char zone[PROTO_SYNC_NAME_MAX + 1]; /* may be "" */
    uint32_t weight;                    /* 1..PROTO_SYNC_WEIGHT_MAX */
    uint64_t age_ms;                    /* since last heard, at encoding time */
    uint64_t seq;                       /* sender's sequence of the last change */
};

struct proto_sync_msg {
    enum proto_sync_kind kind;
    char cell[PROTO_SYNC_NAME_MAX + 1];
    char origin[PROTO_SYNC_URL_MAX + 1];     /* sender's own base URL (its identity) */
    char aggregator[PROTO_SYNC_URL_MAX + 1]; /* the cell's aggregator, "" if none */
    uint64_t epoch;                          /* sender's boot nonce */
    uint64_t since;                          /* delta: entries with seq > since */
    uint64_t seq;                            /* sender's current sequence */
    uint32_t lease_ms;                       /* the sender's lease */
    size_t nentries;
    size_t cap;                       /* allocated entries */
    struct proto_sync_entry *entries; /* owned */
};

struct proto_sync_ack {
    uint64_t seq;   /* highest sequence applied from that sender */
    bool need_full; /* the receiver cannot apply deltas from that sender */
};

/* Zero <m> (nothing allocated). */
void proto_sync_msg_init(struct proto_sync_msg *m);
void proto_sync_msg_free(struct proto_sync_msg *m);

/* Append a copy of <e>. Returns 0, -PROTO_SYNC_ETOOBIG at
 * PROTO_SYNC_MAX_ENTRIES, -PROTO_SYNC_EBADFIELD if <e> breaks the limits,
 * -ENOMEM. */
int proto_sync_msg_add(struct proto_sync_msg *m, const struct proto_sync_entry *e);

/* Encode <m> as compact JSON into a malloc'd NUL-terminated *<out> of *<len>
 * bytes. Returns 0, -PROTO_SYNC_ETOOBIG, -PROTO_SYNC_EBADFIELD, -ENOMEM. */
int proto_sync_encode(const struct proto_sync_msg *m, char **out, size_t *len);

/* Decode <len> bytes into <m> (initialised by this call; free it with
 * proto_sync_msg_free() on success; on failure nothing is left allocated).
 * Returns 0 or -PROTO_SYNC_E*, -ENOMEM. */
int proto_sync_decode(const char *buf, size_t len, struct proto_sync_msg *m);

/* The ack: encode into <out> (NUL-terminated; 96 bytes always suffice) and
 * decode. encode returns the length or -ERANGE. */
long proto_sync_ack_encode(const struct proto_sync_ack *a, char *out, size_t outlen);
int proto_sync_ack_decode(const char *buf, size_t len, struct proto_sync_ack *a);

/* "up", "draining", "down", "gone"; and back (-1 if unknown). */
const char *proto_sync_state_name(enum proto_sync_state s);
int proto_sync_state_parse(const char *s);

/* Text for a code returned by this module (negated or not). */
const char *proto_sync_strerror(int err);

#endif /* PROTO_SYNC_H */
