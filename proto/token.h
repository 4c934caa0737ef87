/* SPDX-License-Identifier: ISC */
/*
 * proto/token: the escalation token a line shed hands to a master shed (and a
 * master on to the next cell) in the `shed_esc=` query parameter.
 *
 * It carries the service, a hop count, the names of the cells the request
 * has already been through, an expiry (unix seconds) and a nonce, and is
 * signed with HMAC-SHA256 keyed by the cluster credential. A master never
 * sends a request into a visited cell and every escalation extends the list,
 * so a request can visit each cell at most once: loops are impossible by
 * construction, not by timing.
 *
 * Wire form (before base64url without padding), fixed order, big endian:
 *
 *   u8 version | u8 hops | u64 expiry | u64 nonce
 *   u8 service_len | service bytes
 *   u8 ncells | ncells x (u8 len | name bytes)
 *   32 bytes HMAC-SHA256 over everything before it
 *
 * Pure: no I/O, no clock (callers pass <now>), libcrypto HMAC() only.
 *
 * Ownership: struct proto_token is a plain value the caller allocates;
 * nothing here allocates. Thread-safe.
 */
#ifndef PROTO_TOKEN_H
#define PROTO_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_TOKEN_VERSION   1
#define PROTO_TOKEN_MAX_CELLS 8  /* cells one token can name */
#define PROTO_TOKEN_NAME_MAX  63 /* bytes in a cell or service name */
#define PROTO_TOKEN_MAC_LEN   32
#define PROTO_TOKEN_RAW_MAX                                                                        \
    (1 + 1 + 8 + 8 + 1 + PROTO_TOKEN_NAME_MAX + 1 +                                                \
     PROTO_TOKEN_MAX_CELLS * (1 + PROTO_TOKEN_NAME_MAX) + PROTO_TOKEN_MAC_LEN)
/* Characters of the encoded form, plus its NUL. */
#define PROTO_TOKEN_ENC_MAX ((PROTO_TOKEN_RAW_MAX * 4 + 2) / 3 + 1)
#define PROTO_TOKEN_PARAM   "shed_esc"

/* Module error codes, returned negated; see proto_token_strerror(). */
enum {
    PROTO_TOKEN_EMALFORMED = 2100, /* not base64url, truncated, bad structure */
    PROTO_TOKEN_EBADSIG,           /* signature does not match: forged or altered */
    PROTO_TOKEN_EEXPIRED,          /* signature fine, expiry passed */
    PROTO_TOKEN_EVERSION,          /* signature fine, unknown version */
    PROTO_TOKEN_EFULL,             /* no room for another cell */
    PROTO_TOKEN_EBADNAME,          /* empty, overlong or unsafe service/cell name */
};

struct proto_token {
    uint8_t version; /* PROTO_TOKEN_VERSION */
    uint8_t hops;    /* escalations so far */
    uint64_t expiry; /* unix seconds; invalid from this second on */
    uint64_t nonce;  /* random, makes every token distinct */
    char service[PROTO_TOKEN_NAME_MAX + 1];
    uint8_t ncells;
    char cells[PROTO_TOKEN_MAX_CELLS][PROTO_TOKEN_NAME_MAX + 1]; /* visited, in order */
};

/* Is <s> (<len> bytes) a usable service or cell name: 1..PROTO_TOKEN_NAME_MAX
 * bytes of [A-Za-z0-9._-]? */
bool proto_token_name_ok(const char *s, size_t len);

/* Start a fresh token for <service> (hops 0, no cells). Returns 0 or
 * -PROTO_TOKEN_EBADNAME. */
int proto_token_init(struct proto_token *t, const char *service, uint64_t expiry, uint64_t nonce);

/* Add <cell> to the visited list (no-op if already there). Returns 0,
 * -PROTO_TOKEN_EBADNAME, or -PROTO_TOKEN_EFULL. */
int proto_token_add_cell(struct proto_token *t, const char *cell);

/* Has the token been through <cell>? */
bool proto_token_visited(const struct proto_token *t, const char *cell);

/* Sign and encode <t> with <key> into <out> (NUL-terminated base64url without
 * padding). Returns the length written (without the NUL), or -ERANGE when
 * <outlen> is too small, -PROTO_TOKEN_EBADNAME / -EINVAL for a token that
 * breaks the limits, -EIO if HMAC fails. */
long proto_token_encode(const struct proto_token *t, const void *key, size_t keylen, char *out,
                        size_t outlen);

/* Decode and verify <len> bytes of <s> against <key> at time <now>. On
 * success fills *<out> and returns 0; otherwise -PROTO_TOKEN_EMALFORMED,
 * -PROTO_TOKEN_EBADSIG, -PROTO_TOKEN_EVERSION or -PROTO_TOKEN_EEXPIRED (checked
 * in that order: nothing is trusted before the signature is). */
int proto_token_decode(const char *s, size_t len, const void *key, size_t keylen, uint64_t now,
                       struct proto_token *out);

/* Text for a code returned by this module (negated or not). */
const char *proto_token_strerror(int err);

#endif /* PROTO_TOKEN_H */
