/* SPDX-License-Identifier: ISC */
/*
 * shed/merge: the aggregator's pure half. Given the answers of several Burrow
 * backends to one list operation, in the aggregator's fixed backend order,
 * build the one answer a single Burrow server would have given: ids
 * de-duplicated, a global limit, the marker window for account and queue
 * lists, the detail level shaped at the end, 404 when everything is empty.
 * No network, no MHD: unit-testable with literal JSON.
 *
 * Global order (docs/aggregator.md): the creation stamps backends give with
 * shed_stamps=1, then the id bytewise: a message's (stamp, id) key. An
 * account or queue sorts by the smallest stamp any backend gives it. An id
 * seen again later in that order is a repeat and is skipped; a message copy
 * that the caller marked <drop> (a copy that loses to one on an
 * earlier-preference server) is skipped too. Stamps and the backends'
 * Shed-Clock never reach the client: objects are rebuilt without them.
 *
 * Bodies pass through as the backends wrote them: "body" or
 * "body_base64url" (proto/body.h); a detail=body page holds the string or
 * {"body_base64url": ...}.
 *
 * Backend answers are scanned, not parsed into a tree: items are spans of
 * the answer's bytes, and the merged answer is built by copying those spans
 * (JSON-escaped ids are decoded once, for comparison and hashing).
 *
 * Ownership: a shed_merge_list owns a copy of the answer and its item array;
 * items borrow from it. shed_merge_list_clear() frees both and is idempotent.
 * shed_merge_out.body is malloc'd and owned by the caller (free()).
 * Not thread-safe per object; distinct objects are independent.
 */
#ifndef SHED_MERGE_H
#define SHED_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/burrow.h"

#define SHED_MERGE_MAX_ITEMS 1000000 /* items accepted from one backend answer */
#define SHED_MERGE_DEPTH_MAX 32      /* JSON nesting accepted in one element */

/* A byte range of a backend's answer. */
struct shed_merge_span {
    const char *ptr;
    size_t len;
};

struct shed_merge_item {
    const char *id; /* decoded id: into the answer, or into the list's arena */
    size_t idlen;
    int64_t stamp;                 /* the "stamp" member, 0 when none */
    struct shed_merge_span raw;    /* the whole JSON element, as the backend sent it */
    struct shed_merge_span id_raw; /* the id's JSON string token, quotes included */
    struct shed_merge_span ttl;    /* the "ttl" member's value, len 0 if none */
    struct shed_merge_span hide;   /* the "hide" member's value, len 0 if none */
    struct shed_merge_span body;   /* the "body" member's JSON value, len 0 if none */
    struct shed_merge_span body64; /* the "body_base64url" member's value (proto/body.h) */
    bool drop;                     /* set by the caller: a losing failover copy */
};

struct shed_merge_list {
    int status;                    /* backend HTTP status, 0 when unreachable */
    char *text;                    /* owned copy of the answer the items point into */
    char *arena;                   /* owned: ids that needed unescaping */
    struct shed_merge_item *items; /* owned, n entries */
    size_t n;
    bool truncated; /* answered as many items as asked for: more may follow */
    int64_t clock;  /* the backend's Shed-Clock (set by the caller), 0: none */
};

struct shed_merge_pick {
    uint32_t list; /* index into the lists */
    uint32_t item; /* index into that list's items */
};

struct shed_merge_out {
    int status;        /* HTTP status to send */
    const char *ctype; /* static string, NULL for no Content-Type */
    char *body;        /* malloc'd (may be NULL when len is 0) */
    size_t len;
};

/* Parse one backend answer into <l> (which must be zeroed or cleared).
 * 200: a JSON array of ids or of objects with an "id"; 204 and 404: empty;
 * anything else: kept as a status with no items. <asked> is the limit that
 * backend was sent (<= 0: none), to tell whether more may follow.
 * Returns 0, -EBADMSG for a 200 whose body is not such an array (or nests
 * deeper than SHED_MERGE_DEPTH_MAX), -E2BIG for more than
 * SHED_MERGE_MAX_ITEMS items, -ENOMEM. On error <l> stays empty
 * with its status set. */
int shed_merge_parse(struct shed_merge_list *l, int status, const char *body, size_t len,
                     int64_t asked);
void shed_merge_list_clear(struct shed_merge_list *l);

/* Items of <lists> in all. */
size_t shed_merge_items(const struct shed_merge_list *lists, size_t n);

/* How a sorted page ended (shed_merge_sorted()). */
struct shed_merge_cut {
    bool more;    /* items may follow the page */
    bool want;    /* short of the limit only because a truncated list's tail is
                     unknown: ask its backend for more */
    bool horizon; /* an item was left out for being stamped past the horizon */
};

/* Message lists: the items of <lists>, dropped ones and repeated ids
 * skipped, in key order, up to <limit> picks (<= 0: unlimited) into
 * <picks> (room for <max>). A truncated list's tail is unknown, so nothing
 * past its last key is taken; with <horizon>, nothing stamped after the
 * smallest clock of the lists that answered (a message created on one
 * backend after another answered could still sort before it). Returns the
 * number of picks or -ENOMEM; <cut> says how the page ended. */
long shed_merge_sorted(const struct shed_merge_list *lists, size_t n, int64_t limit, bool horizon,
                       struct shed_merge_pick *picks, size_t max, struct shed_merge_cut *cut);

/* The "stamp" member of one JSON object (a single-message answer). Returns 0
 * or -EBADMSG (not an object with an "id" and an integer "stamp"). */
int shed_merge_stamp_of(const char *body, size_t len, int64_t *stamp);

/* Account and queue lists (fetched whole): de-duplicate across <lists>,
 * order by the smallest stamp each id has (then id), then keep the items
 * strictly after <marker> (ignored when NULL or not found, as in Burrow)
 * up to <limit>. Each pick names the copy with that smallest stamp.
 * Returns the number of picks or -ENOMEM. */
long shed_merge_window(const struct shed_merge_list *lists, size_t n, const char *marker,
                       size_t mlen, int64_t limit, struct shed_merge_pick *picks, size_t max);

/* The operation's default detail, as Burrow has it (GET: all for messages, id
 * for accounts and queues; POST and DELETE: none). */
enum proto_burrow_detail shed_merge_default_detail(enum proto_burrow_level level, bool is_get);

/* The detail to ask backends for so that ids and stamps can be read and the
 * client's <detail> can still be produced: objects at every level. */
enum proto_burrow_detail shed_merge_backend_detail(enum proto_burrow_level level,
                                                   enum proto_burrow_detail detail);

/* Shape the final answer from <picks>: 404 with <notfound> text when there
 * are none, 204 for detail none, else 200 with a JSON array at <detail>
 * (must not be DEFAULT). Message objects are rebuilt as Burrow writes them
 * ("id", "ttl", "hide", then "body" or "body_base64url"), without "stamp".
 * Returns 0 or -ENOMEM. */
int shed_merge_render(enum proto_burrow_level level, enum proto_burrow_detail detail,
                      const struct shed_merge_list *lists, const struct shed_merge_pick *picks,
                      size_t n, const char *notfound, struct shed_merge_out *out);

/* A plain text answer (octet-stream as Burrow does). Returns 0 or -ENOMEM. */
int shed_merge_text(struct shed_merge_out *out, int status, const char *text, size_t len);

/* Free out->body and zero <out>. */
void shed_merge_out_clear(struct shed_merge_out *out);

/* Small open-addressing set of byte strings (borrowed), used for
 * de-duplication here and by the aggregator. */
struct shed_merge_set {
    const char **keys;
    size_t *lens;
    size_t cap, n;
};
int shed_merge_set_init(struct shed_merge_set *s, size_t expect);
/* 1 if inserted, 0 if already present, -ENOMEM. */
int shed_merge_set_add(struct shed_merge_set *s, const char *key, size_t len);
bool shed_merge_set_has(const struct shed_merge_set *s, const char *key, size_t len);
void shed_merge_set_free(struct shed_merge_set *s);

#endif /* SHED_MERGE_H */
