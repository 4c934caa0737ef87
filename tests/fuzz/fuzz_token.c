/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto_token_decode(). A forged input almost never carries a valid
 * HMAC, so the first byte chooses how the rest is used:
 *
 *   even: the rest is a token as it arrives in shed_esc=, decoded as is;
 *   odd:  the rest is the raw layout before the MAC; the harness signs it
 *         with the key and base64url-encodes it, so the parser behind the
 *         signature check gets arbitrary structure.
 *
 * Properties: a token that decodes has names that pass
 * proto_token_name_ok() and at most PROTO_TOKEN_MAX_CELLS cells, and it
 * encodes back to exactly the text that was decoded (the layout has one
 * spelling); flipping any character of it breaks the signature.
 */
#include "proto/b64.h"
#include "proto/token.h"
#include "tests/fuzz/fuzz.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

static const char key[] = "fuzz-cluster-key";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[PROTO_TOKEN_ENC_MAX + 64], again[PROTO_TOKEN_ENC_MAX];
    uint8_t raw[PROTO_TOKEN_RAW_MAX + 64];
    struct proto_token t, t2;
    size_t len;
    long n;
    int rc;

    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        rc = proto_token_decode((const char *)data + 1, size - 1, key, sizeof(key) - 1, 0, &t);
        if (rc != 0)
            return 0;
        len = size - 1;
        if (len >= sizeof(text))
            return 0;
        memcpy(text, data + 1, len);
    } else {
        unsigned int maclen = PROTO_TOKEN_MAC_LEN;
        size_t body = size - 1;

        if (body + PROTO_TOKEN_MAC_LEN > sizeof(raw))
            return 0;
        memcpy(raw, data + 1, body);
        FUZZ_CHECK(HMAC(EVP_sha256(), key, (int)sizeof(key) - 1, raw, body, raw + body, &maclen));
        n = proto_b64url_encode(raw, body + PROTO_TOKEN_MAC_LEN, text, sizeof(text));
        if (n < 0)
            return 0;
        len = (size_t)n;
        rc = proto_token_decode(text, len, key, sizeof(key) - 1, 0, &t);
        if (rc != 0) {
            FUZZ_CHECK(rc == -PROTO_TOKEN_EMALFORMED || rc == -PROTO_TOKEN_EVERSION ||
                       rc == -PROTO_TOKEN_EEXPIRED);
            return 0;
        }
    }
    FUZZ_CHECK(proto_token_name_ok(t.service, strlen(t.service)));
    FUZZ_CHECK(t.ncells <= PROTO_TOKEN_MAX_CELLS);
    for (uint8_t i = 0; i < t.ncells; i++)
        FUZZ_CHECK(proto_token_name_ok(t.cells[i], strlen(t.cells[i])));

    n = proto_token_encode(&t, key, sizeof(key) - 1, again, sizeof(again));
    FUZZ_CHECK(n == (long)len && memcmp(again, text, len) == 0);
    FUZZ_CHECK(proto_token_decode(again, (size_t)n, key, sizeof(key) - 1, 0, &t2) == 0);
    FUZZ_CHECK(t2.version == t.version && t2.hops == t.hops && t2.expiry == t.expiry &&
               t2.nonce == t.nonce && strcmp(t2.service, t.service) == 0 && t2.ncells == t.ncells);
    for (uint8_t i = 0; i < t.ncells; i++)
        FUZZ_CHECK(strcmp(t2.cells[i], t.cells[i]) == 0);
    /* Another key never verifies it. */
    FUZZ_CHECK(proto_token_decode(again, (size_t)n, "other", 5, 0, &t2) == -PROTO_TOKEN_EBADSIG);
    return 0;
}
