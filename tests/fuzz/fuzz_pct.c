/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto_pct_decode() and proto_pct_encode(). Properties: any bytes
 * encode to unreserved characters and upper-case %XX only, and decode back
 * to themselves; what decodes, encodes and decodes again to the same bytes;
 * a NUL comes out of a decode only when allowed; too small an output
 * buffer is an error, never an overrun.
 */
#include "proto/burrow.h"
#include "tests/fuzz/fuzz.h"

#include <string.h>

static bool
enc_char_ok(const char *e, size_t i, size_t n)
{
    unsigned char c = (unsigned char)e[i];

    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~')
        return true;
    return c == '%' && i + 2 < n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    size_t cap = 3 * size + 1;
    char *enc = malloc(cap), *dec = malloc(size + 1), *dec2 = malloc(size + 1);
    bool allow_nul = size > 0 && (data[0] & 1);
    long n, m, k;

    FUZZ_CHECK(enc && dec && dec2);
    /* Bytes -> encode -> decode. */
    n = proto_pct_encode(s, size, enc, cap);
    FUZZ_CHECK(n >= 0 && (size_t)n < cap && enc[n] == '\0');
    for (long i = 0; i < n; i++) {
        FUZZ_CHECK(enc_char_ok(enc, (size_t)i, (size_t)n));
        if (enc[i] == '%') {
            FUZZ_CHECK(strchr("0123456789ABCDEF", enc[i + 1]) && enc[i + 1]);
            FUZZ_CHECK(strchr("0123456789ABCDEF", enc[i + 2]) && enc[i + 2]);
            i += 2;
        }
    }
    m = proto_pct_decode(enc, (size_t)n, dec, size + 1, true);
    FUZZ_CHECK(m == (long)size && memcmp(dec, s, size) == 0);
    if (size > 0) /* one byte of room too few */
        FUZZ_CHECK(proto_pct_encode(s, size, enc, (size_t)n) == -PROTO_ETOOLONG);

    /* Input as an encoded string: decode -> encode -> decode. */
    m = proto_pct_decode(s, size, dec, size + 1, allow_nul);
    if (m < 0) {
        FUZZ_CHECK(m == -PROTO_EBADENC);
    } else {
        FUZZ_CHECK((size_t)m <= size);
        if (!allow_nul)
            FUZZ_CHECK(memchr(dec, '\0', (size_t)m) == NULL);
        n = proto_pct_encode(dec, (size_t)m, enc, cap);
        FUZZ_CHECK(n >= 0);
        k = proto_pct_decode(enc, (size_t)n, dec2, size + 1, allow_nul);
        FUZZ_CHECK(k == m && memcmp(dec, dec2, (size_t)m) == 0);
        if (m > 0)
            FUZZ_CHECK(proto_pct_decode(s, size, dec2, (size_t)m - 1, allow_nul) ==
                       -PROTO_ETOOLONG);
    }
    free(enc);
    free(dec);
    free(dec2);
    return 0;
}
