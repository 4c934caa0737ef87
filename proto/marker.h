/* SPDX-License-Identifier: ISC */
/*
 * proto/marker: the paging cursor of the fan-out aggregator.
 *
 * A Burrow client pages with marker=<last id it saw>. Behind an aggregator a
 * message id alone does not say where the page stopped when the same id may
 * sit on more than one backend (failover copies), so the aggregator also
 * sends a `Link: <...>; rel="next"` header whose URL carries a cursor
 * parameter next to the marker. The cursor names the backend (by member id)
 * whose list the page ended in, and a hash of the marker it belongs to, so a
 * cursor pasted next to another marker is recognised and ignored.
 *
 * Wire format, byte by byte, then base64url without padding:
 *   [0]      version (1)
 *   [1..4]   XXH32 of the marker id, big endian
 *   [5]      n = length of the backend id (1..RING_ID_MAX)
 *   [6..6+n) backend id bytes
 *   [6+n..)  2-byte check: low 16 bits of XXH32 over the bytes before, big endian
 *
 * Pure: no I/O, no logging, no allocation.
 */
#ifndef PROTO_MARKER_H
#define PROTO_MARKER_H

#include <stddef.h>
#include <stdint.h>

#include "ring/ring.h"

#define PROTO_MARKER_VERSION    1
#define PROTO_MARKER_PARAM      "shed_cursor" /* query parameter name */
#define PROTO_MARKER_RAW_MAX    (1 + 4 + 1 + RING_ID_MAX + 2)
#define PROTO_MARKER_CURSOR_MAX ((PROTO_MARKER_RAW_MAX * 4 + 2) / 3 + 1) /* encoded + NUL */

struct proto_marker_cursor {
    uint32_t marker_hash;          /* proto_marker_hash() of the marker id */
    char backend[RING_ID_MAX + 1]; /* member id, NUL-terminated */
    size_t backend_len;            /* 1..RING_ID_MAX */
};

/* Hash of a marker id as carried in a cursor. */
uint32_t proto_marker_hash(const char *marker, size_t len);

/* Encode <c> into <out> (NUL-terminated base64url). Returns the length
 * written without the NUL, -EINVAL for a bad backend length, -ERANGE when
 * <outlen> is too small (PROTO_MARKER_CURSOR_MAX is always enough). */
int proto_marker_pack(const struct proto_marker_cursor *c, char *out, size_t outlen);

/* Decode <len> bytes of <s> into <out>. Returns 0 or -PROTO_EBADVALUE
 * (bad alphabet, bad length, unknown version, bad check). */
int proto_marker_unpack(const char *s, size_t len, struct proto_marker_cursor *out);

#endif /* PROTO_MARKER_H */
