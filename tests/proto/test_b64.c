/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for proto/b64: RFC 4648 vectors (base64url, no padding), the
 * strict decoder's refusals, output bounds, and a round trip of every length
 * and byte value.
 */
#include "proto/b64.h"

#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

struct vec {
    const char *raw;
    const char *enc;
};

/* RFC 4648 section 10 without padding, plus bytes that use '-' and '_'. */
static const struct vec vecs[] = {
    {"", ""},
    {"f", "Zg"},
    {"fo", "Zm8"},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg"},
    {"fooba", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy"},
    {"\xfb\xff", "-_8"},
    {"\xff\xff\xff", "____"},
};

Test(b64, vectors)
{
    for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
        char enc[32];
        uint8_t dec[32];
        size_t rl = strlen(vecs[i].raw), el = strlen(vecs[i].enc);

        cr_assert_eq(proto_b64url_encode((const uint8_t *)vecs[i].raw, rl, enc, sizeof(enc)),
                     (long)el, "row %zu", i);
        cr_assert_str_eq(enc, vecs[i].enc, "row %zu", i);
        cr_assert_eq(proto_b64url_decode(vecs[i].enc, el, dec, sizeof(dec)), (long)rl, "row %zu",
                     i);
        cr_assert_eq(memcmp(dec, vecs[i].raw, rl), 0, "row %zu", i);
    }
}

Test(b64, decoder_refuses)
{
    static const char *const bad[] = {
        "Z",      /* 1 mod 4 */
        "Zm9vY",  /* 1 mod 4 */
        "Zh",     /* unused bits set: "Zg" is the one spelling of "f" */
        "Zm9",    /* unused bits set */
        "Zm9v+A", /* standard alphabet, not url */
        "Zm9v/A", /* standard alphabet, not url */
        "Zg==",   /* padding */
        "Zm 9v",  /* white space */
    };
    uint8_t dec[32];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(proto_b64url_decode(bad[i], strlen(bad[i]), dec, sizeof(dec)), -EINVAL, "%s",
                     bad[i]);
}

Test(b64, bounds)
{
    char enc[9];
    uint8_t dec[6];

    /* "foobar" needs 8 characters + NUL. */
    cr_assert_eq(proto_b64url_encode((const uint8_t *)"foobar", 6, enc, 8), -ERANGE);
    cr_assert_eq(proto_b64url_encode((const uint8_t *)"foobar", 6, enc, 9), 8);
    cr_assert_eq(PROTO_B64URL_ENC_SIZE(6), 9);
    cr_assert_eq(proto_b64url_decode("Zm9vYmFy", 8, dec, 5), -EINVAL);
    cr_assert_eq(proto_b64url_decode("Zm9vYmFy", 8, dec, 6), 6);
}

Test(b64, round_trip_all_lengths)
{
    uint8_t raw[64], dec[64];
    char enc[PROTO_B64URL_ENC_SIZE(64)];

    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(raw); n++) {
        long el = proto_b64url_encode(raw, n, enc, sizeof(enc));

        cr_assert_eq((size_t)el + 1, PROTO_B64URL_ENC_SIZE(n), "n=%zu", n);
        cr_assert_eq(proto_b64url_decode(enc, (size_t)el, dec, sizeof(dec)), (long)n, "n=%zu", n);
        cr_assert_eq(memcmp(raw, dec, n), 0, "n=%zu", n);
    }
}
