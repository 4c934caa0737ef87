/* SPDX-License-Identifier: ISC */
/*
 * proto/b64: base64url (RFC 4648 section 5) without padding, the one codec
 * behind the aggregator's paging cursor (proto/marker) and the escalation
 * token (proto/token). The decoder is strict so that every byte string has
 * exactly one spelling: no padding, no other alphabet, a length of 1 mod 4
 * is refused, and the unused low bits of the last character must be zero.
 *
 * Pure: no I/O, no allocation. Outputs go in caller-supplied buffers.
 * Thread-safe.
 */
#ifndef PROTO_B64_H
#define PROTO_B64_H

#include <stddef.h>
#include <stdint.h>

/* Encoded length of <n> bytes, plus one byte for the terminating NUL. */
#define PROTO_B64URL_ENC_SIZE(n) (((n)*4 + 2) / 3 + 1)

/*
 * Encode <n> bytes of <in> into <out> (<outlen> bytes) and NUL-terminate it.
 * Returns the encoded length (without the NUL), or -ERANGE when <outlen> is
 * smaller than PROTO_B64URL_ENC_SIZE(n) (nothing is written then).
 */
long proto_b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen);

/*
 * Decode <len> characters of <s> into <out> (<outlen> bytes). Returns the
 * decoded length, or -EINVAL on a character outside the alphabet, a length
 * of 1 mod 4, non-zero unused bits, or a result longer than <outlen>.
 */
long proto_b64url_decode(const char *s, size_t len, uint8_t *out, size_t outlen);

#endif /* PROTO_B64_H */
