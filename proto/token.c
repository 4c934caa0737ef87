/* SPDX-License-Identifier: ISC */
/*
 * proto/token: escalation tokens, signed with HMAC-SHA256 and carried as
 * base64url. The byte layout is written and read field by field (never a
 * struct memcpy) so that every shed version agrees on it; the decoder is
 * strict (no padding, zero trailing bits, no trailing bytes) so that changing
 * any character of an encoded token is always detected.
 */
#include "proto/token.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proto/b64.h"
#include "proto/name.h"

static void
put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t
get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

bool
proto_token_name_ok(const char *s, size_t len)
{
    return len >= 1 && len <= PROTO_TOKEN_NAME_MAX && proto_name_chars_ok(s, len);
}

int
proto_token_init(struct proto_token *t, const char *service, uint64_t expiry, uint64_t nonce)
{
    size_t n = strnlen(service, PROTO_TOKEN_NAME_MAX + 1);

    if (!proto_token_name_ok(service, n))
        return -PROTO_TOKEN_EBADNAME;
    memset(t, 0, sizeof(*t));
    t->version = PROTO_TOKEN_VERSION;
    t->expiry = expiry;
    t->nonce = nonce;
    memcpy(t->service, service, n);
    t->service[n] = '\0';
    return 0;
}

bool
proto_token_visited(const struct proto_token *t, const char *cell)
{
    for (uint8_t i = 0; i < t->ncells && i < PROTO_TOKEN_MAX_CELLS; i++)
        if (strcmp(t->cells[i], cell) == 0)
            return true;
    return false;
}

int
proto_token_add_cell(struct proto_token *t, const char *cell)
{
    size_t n = strnlen(cell, PROTO_TOKEN_NAME_MAX + 1);

    if (!proto_token_name_ok(cell, n))
        return -PROTO_TOKEN_EBADNAME;
    if (proto_token_visited(t, cell))
        return 0;
    if (t->ncells >= PROTO_TOKEN_MAX_CELLS)
        return -PROTO_TOKEN_EFULL;
    memcpy(t->cells[t->ncells], cell, n);
    t->cells[t->ncells][n] = '\0';
    t->ncells++;
    return 0;
}

static int
mac(const void *key, size_t keylen, const uint8_t *data, size_t n, uint8_t out[PROTO_TOKEN_MAC_LEN])
{
    unsigned int outl = PROTO_TOKEN_MAC_LEN;

    if (keylen > INT32_MAX)
        return -EINVAL;
    /* HMAC() wants a non-NULL key pointer even for an empty key. */
    if (HMAC(EVP_sha256(), keylen ? key : "", (int)keylen, data, n, out, &outl) == NULL ||
        outl != PROTO_TOKEN_MAC_LEN)
        return -EIO;
    return 0;
}

long
proto_token_encode(const struct proto_token *t, const void *key, size_t keylen, char *out,
                   size_t outlen)
{
    uint8_t raw[PROTO_TOKEN_RAW_MAX];
    size_t n = 0, len;
    int rc;

    if (t->ncells > PROTO_TOKEN_MAX_CELLS)
        return -EINVAL;
    len = strnlen(t->service, sizeof(t->service));
    if (!proto_token_name_ok(t->service, len))
        return -PROTO_TOKEN_EBADNAME;

    raw[n++] = t->version;
    raw[n++] = t->hops;
    put64(raw + n, t->expiry);
    n += 8;
    put64(raw + n, t->nonce);
    n += 8;
    raw[n++] = (uint8_t)len;
    memcpy(raw + n, t->service, len);
    n += len;
    raw[n++] = t->ncells;
    for (uint8_t i = 0; i < t->ncells; i++) {
        len = strnlen(t->cells[i], sizeof(t->cells[i]));
        if (!proto_token_name_ok(t->cells[i], len))
            return -PROTO_TOKEN_EBADNAME;
        raw[n++] = (uint8_t)len;
        memcpy(raw + n, t->cells[i], len);
        n += len;
    }
    rc = mac(key, keylen, raw, n, raw + n);
    if (rc < 0)
        return rc;
    n += PROTO_TOKEN_MAC_LEN;

    return proto_b64url_encode(raw, n, out, outlen);
}

int
proto_token_decode(const char *s, size_t len, const void *key, size_t keylen, uint64_t now,
                   struct proto_token *out)
{
    uint8_t raw[PROTO_TOKEN_RAW_MAX];
    uint8_t want[PROTO_TOKEN_MAC_LEN];
    struct proto_token t;
    long dl;
    size_t n, body, p = 0;
    int rc;

    if (len > PROTO_TOKEN_ENC_MAX)
        return -PROTO_TOKEN_EMALFORMED;
    dl = proto_b64url_decode(s, len, raw, sizeof(raw));
    if (dl < 0)
        return -PROTO_TOKEN_EMALFORMED;
    n = (size_t)dl;
    if (n < 1 + 1 + 8 + 8 + 1 + 1 + 1 + PROTO_TOKEN_MAC_LEN)
        return -PROTO_TOKEN_EMALFORMED;
    body = n - PROTO_TOKEN_MAC_LEN;
    rc = mac(key, keylen, raw, body, want);
    if (rc < 0)
        return rc;
    if (CRYPTO_memcmp(want, raw + body, PROTO_TOKEN_MAC_LEN) != 0)
        return -PROTO_TOKEN_EBADSIG;

    /* Signed by a holder of the key: now parse, still defensively. */
    memset(&t, 0, sizeof(t));
    t.version = raw[p++];
    if (t.version != PROTO_TOKEN_VERSION)
        return -PROTO_TOKEN_EVERSION;
    t.hops = raw[p++];
    t.expiry = get64(raw + p);
    p += 8;
    t.nonce = get64(raw + p);
    p += 8;
    len = raw[p++];
    if (len > body - p || !proto_token_name_ok((const char *)raw + p, len))
        return -PROTO_TOKEN_EMALFORMED;
    memcpy(t.service, raw + p, len);
    p += len;
    if (p >= body)
        return -PROTO_TOKEN_EMALFORMED;
    t.ncells = raw[p++];
    if (t.ncells > PROTO_TOKEN_MAX_CELLS)
        return -PROTO_TOKEN_EMALFORMED;
    for (uint8_t i = 0; i < t.ncells; i++) {
        if (p >= body)
            return -PROTO_TOKEN_EMALFORMED;
        len = raw[p++];
        if (len > body - p || !proto_token_name_ok((const char *)raw + p, len))
            return -PROTO_TOKEN_EMALFORMED;
        memcpy(t.cells[i], raw + p, len);
        p += len;
    }
    if (p != body)
        return -PROTO_TOKEN_EMALFORMED;
    if (now >= t.expiry)
        return -PROTO_TOKEN_EEXPIRED;
    *out = t;
    return 0;
}

const char *
proto_token_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case PROTO_TOKEN_EMALFORMED:
        return "malformed escalation token";
    case PROTO_TOKEN_EBADSIG:
        return "escalation token signature mismatch";
    case PROTO_TOKEN_EEXPIRED:
        return "escalation token expired";
    case PROTO_TOKEN_EVERSION:
        return "unknown escalation token version";
    case PROTO_TOKEN_EFULL:
        return "escalation token cell list full";
    case PROTO_TOKEN_EBADNAME:
        return "bad service or cell name";
    default:
        return strerror(err);
    }
}
