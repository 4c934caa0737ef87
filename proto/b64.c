/* SPDX-License-Identifier: ISC */
/*
 * proto/b64: strict base64url without padding (see b64.h). The decoder
 * checks the output size before writing anything, so a too-long input never
 * writes past <out>.
 */
#include "proto/b64.h"

#include <errno.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

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

long
proto_b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    size_t o = 0, i = 0;

    if (outlen < PROTO_B64URL_ENC_SIZE(n))
        return -ERANGE;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i > 0) {
        /* One or two bytes left: two or three characters, no padding. */
        uint32_t v = (uint32_t)in[i] << 16 | (n - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);

        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        if (n - i == 2)
            out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return (long)o;
}

long
proto_b64url_decode(const char *s, size_t len, uint8_t *out, size_t outlen)
{
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    if (len % 4 == 1)
        return -EINVAL;
    if (len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > outlen)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)s[i]);

        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* leftover bits must be zero: one spelling per value */
        return -EINVAL;
    return (long)o;
}
