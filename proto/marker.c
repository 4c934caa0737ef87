/* SPDX-License-Identifier: ISC */
/*
 * proto/marker: pack and unpack the aggregator's paging cursor (see
 * marker.h for the format). base64url keeps the cursor safe in a query
 * string without percent-encoding; the check bytes make a truncated or
 * hand-edited cursor fail cleanly instead of pointing at a wrong place.
 */
#include "proto/marker.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

#include "proto/b64.h"
#include "proto/burrow.h"

#define CHECK_SEED 0x53484544u /* "SHED" */

uint32_t
proto_marker_hash(const char *marker, size_t len)
{
    return XXH32(marker, len, 0);
}

int
proto_marker_pack(const struct proto_marker_cursor *c, char *out, size_t outlen)
{
    unsigned char raw[PROTO_MARKER_RAW_MAX];
    uint64_t st = (uint64_t)c->stamp;
    size_t n = 0;
    uint32_t chk;

    if (c->stamp < 0)
        return -EINVAL;
    raw[n++] = PROTO_MARKER_VERSION;
    raw[n++] = (unsigned char)(c->marker_hash >> 24);
    raw[n++] = (unsigned char)(c->marker_hash >> 16);
    raw[n++] = (unsigned char)(c->marker_hash >> 8);
    raw[n++] = (unsigned char)c->marker_hash;
    for (int i = 7; i >= 0; i--)
        raw[n++] = (unsigned char)(st >> (8 * i));
    chk = XXH32(raw, n, CHECK_SEED);
    raw[n++] = (unsigned char)(chk >> 8);
    raw[n++] = (unsigned char)chk;

    return (int)proto_b64url_encode(raw, n, out, outlen);
}

int
proto_marker_unpack(const char *s, size_t len, struct proto_marker_cursor *out)
{
    unsigned char raw[PROTO_MARKER_RAW_MAX + 3];
    uint64_t st = 0;
    uint32_t chk;
    long dl;

    if (len < 2 || len > PROTO_MARKER_CURSOR_MAX - 1)
        return -PROTO_EBADVALUE;
    dl = proto_b64url_decode(s, len, raw, sizeof(raw));
    if (dl != PROTO_MARKER_RAW_MAX || raw[0] != PROTO_MARKER_VERSION)
        return -PROTO_EBADVALUE;
    chk = XXH32(raw, PROTO_MARKER_RAW_MAX - 2, CHECK_SEED);
    if (raw[PROTO_MARKER_RAW_MAX - 2] != (unsigned char)(chk >> 8) ||
        raw[PROTO_MARKER_RAW_MAX - 1] != (unsigned char)chk)
        return -PROTO_EBADVALUE;
    for (int i = 5; i < 13; i++)
        st = st << 8 | raw[i];
    if (st > (uint64_t)INT64_MAX)
        return -PROTO_EBADVALUE;
    out->marker_hash =
        (uint32_t)raw[1] << 24 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 8 | raw[4];
    out->stamp = (int64_t)st;
    return 0;
}
