/* SPDX-License-Identifier: ISC */
/*
 * proto/marker: the paging cursor of the fan-out aggregator.
 *
 * A Burrow client pages with marker=<last id it saw>. Behind an aggregator
 * the position of that id in the global order is its (stamp, id) key
 * (docs/aggregator.md), and finding the stamp costs a round trip to the
 * servers that may hold the message. So the aggregator also sends a
 * `Link: <...>; rel="next"` header whose URL carries a cursor parameter
 * next to the marker: the marker's stamp, and a hash of the marker it
 * belongs to, so a cursor pasted next to another marker is recognised and
 * ignored.
 *
 * Wire format, byte by byte, then base64url without padding:
 *   [0]      version (2)
 *   [1..4]   XXH32 of the marker id, big endian
 *   [5..12]  the marker's stamp, unsigned, big endian
 *   [13..14] check: low 16 bits of XXH32 over the bytes before, big endian
 *
 * Version 1 (a backend id instead of the stamp) is refused: such a cursor
 * is ignored and the marker resolved as if it came alone.
 *
 * Pure: no I/O, no logging, no allocation.
 */
#ifndef PROTO_MARKER_H
#define PROTO_MARKER_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_MARKER_VERSION    2
#define PROTO_MARKER_PARAM      "shed_cursor" /* query parameter name */
#define PROTO_MARKER_RAW_MAX    (1 + 4 + 8 + 2)
#define PROTO_MARKER_CURSOR_MAX ((PROTO_MARKER_RAW_MAX * 4 + 2) / 3 + 1) /* encoded + NUL */

struct proto_marker_cursor {
    uint32_t marker_hash; /* proto_marker_hash() of the marker id */
    int64_t stamp;        /* the marker's stamp, >= 0 */
};

/* Hash of a marker id as carried in a cursor. */
uint32_t proto_marker_hash(const char *marker, size_t len);

/* Encode <c> into <out> (NUL-terminated base64url). Returns the length
 * written without the NUL, -EINVAL for a negative stamp, -ERANGE when
 * <outlen> is too small (PROTO_MARKER_CURSOR_MAX is always enough). */
int proto_marker_pack(const struct proto_marker_cursor *c, char *out, size_t outlen);

/* Decode <len> bytes of <s> into <out>. Returns 0 or -PROTO_EBADVALUE
 * (bad alphabet, bad length, unknown version, bad check, a stamp over
 * INT64_MAX). */
int proto_marker_unpack(const char *s, size_t len, struct proto_marker_cursor *out);

#endif /* PROTO_MARKER_H */
