/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto/b64. Properties: decoding is strict, so whatever decodes
 * encodes back to exactly the input (one spelling per value); any bytes
 * encode to PROTO_B64URL_ENC_SIZE(n) - 1 characters that decode back to
 * them; an output buffer one byte short is refused, never overrun.
 */
#include "proto/b64.h"
#include "tests/fuzz/fuzz.h"

#include <errno.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t enccap = PROTO_B64URL_ENC_SIZE(size) + 1, deccap = size + 1;
    char *enc = malloc(enccap);
    uint8_t *dec = malloc(deccap);
    long n, m;

    FUZZ_CHECK(enc && dec);
    /* The input as base64url text. */
    m = proto_b64url_decode((const char *)data, size, dec, deccap);
    if (m < 0) {
        FUZZ_CHECK(m == -EINVAL);
    } else {
        FUZZ_CHECK((size_t)m <= size);
        n = proto_b64url_encode(dec, (size_t)m, enc, enccap);
        FUZZ_CHECK(n == (long)size && memcmp(enc, data, size) == 0);
        if (m > 0)
            FUZZ_CHECK(proto_b64url_decode((const char *)data, size, dec, (size_t)m - 1) ==
                       -EINVAL);
    }
    /* The input as bytes. */
    n = proto_b64url_encode(data, size, enc, enccap);
    FUZZ_CHECK(n == (long)PROTO_B64URL_ENC_SIZE(size) - 1 && enc[n] == '\0');
    m = proto_b64url_decode(enc, (size_t)n, dec, deccap);
    FUZZ_CHECK(m == (long)size && memcmp(dec, data, size) == 0);
    FUZZ_CHECK(proto_b64url_encode(data, size, enc, PROTO_B64URL_ENC_SIZE(size) - 1) == -ERANGE);
    free(enc);
    free(dec);
    return 0;
}
