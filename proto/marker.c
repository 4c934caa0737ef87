/* SPDX-License-Identifier: ISC */
/*
 * proto/marker: pack and unpack the aggregator's paging cursor (see
 * marker.h for the format). base64url keeps the cursor safe in a query
 * string without percent-encoding; the check bytes make a truncated or
 * hand-edited cursor fail cleanly instead of pointing at a wrong backend.
 */
#include "proto/marker.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

#include "proto/burrow.h"

#define CHECK_SEED 0x53484544u /* "SHED" */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

uint32_t
proto_marker_hash(const char *marker, size_t len)
{
    return XXH32(marker, len, 0);
}

static int
b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int
proto_marker_pack(const struct proto_marker_cursor *c, char *out, size_t outlen)
{
    unsigned char raw[PROTO_MARKER_RAW_MAX];
    size_t n = 0, o = 0, i;
    uint32_t chk;

    if (c->backend_len == 0 || c->backend_len > RING_ID_MAX)
        return -EINVAL;
    raw[n++] = PROTO_MARKER_VERSION;
    raw[n++] = (unsigned char)(c->marker_hash >> 24);
    raw[n++] = (unsigned char)(c->marker_hash >> 16);
    raw[n++] = (unsigned char)(c->marker_hash >> 8);
    raw[n++] = (unsigned char)c->marker_hash;
    raw[n++] = (unsigned char)c->backend_len;
    memcpy(raw + n, c->backend, c->backend_len);
    n += c->backend_len;
    chk = XXH32(raw, n, CHECK_SEED);
    raw[n++] = (unsigned char)(chk >> 8);
    raw[n++] = (unsigned char)chk;

    if (outlen < (n * 4 + 2) / 3 + 1)
        return -ERANGE;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];

        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = b64[v >> 6 & 63];
        out[o++] = b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)raw[i] << 16;

        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8;

        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = b64[v >> 6 & 63];
    }
    out[o] = '\0';
    return (int)o;
}

int
proto_marker_unpack(const char *s, size_t len, struct proto_marker_cursor *out)
{
    unsigned char raw[PROTO_MARKER_RAW_MAX];
    size_t n = 0, i;
    uint32_t acc = 0, chk;
    int bits = 0;

    if (len < 2 || len > PROTO_MARKER_CURSOR_MAX - 1 || len % 4 == 1)
        return -PROTO_EBADVALUE;
    for (i = 0; i < len; i++) {
        int v = b64val((unsigned char)s[i]);

        if (v < 0)
            return -PROTO_EBADVALUE;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == sizeof(raw))
                return -PROTO_EBADVALUE;
            raw[n++] = (unsigned char)(acc >> bits);
        }
    }
    /* Leftover bits must be zero, so each cursor has one spelling. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -PROTO_EBADVALUE;
    if (n < 1 + 4 + 1 + 1 + 2 || raw[0] != PROTO_MARKER_VERSION)
        return -PROTO_EBADVALUE;
    if (raw[5] == 0 || (size_t)raw[5] + 8 != n)
        return -PROTO_EBADVALUE;
    chk = XXH32(raw, n - 2, CHECK_SEED);
    if (raw[n - 2] != (unsigned char)(chk >> 8) || raw[n - 1] != (unsigned char)chk)
        return -PROTO_EBADVALUE;
    out->marker_hash =
        (uint32_t)raw[1] << 24 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 8 | raw[4];
    out->backend_len = raw[5];
    memcpy(out->backend, raw + 6, out->backend_len);
    out->backend[out->backend_len] = '\0';
    return 0;
}
