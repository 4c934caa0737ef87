/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for proto/token: round trip, every byte of an encoded token
 * altered, expiry, limits, wrong key.
 */
#include "proto/token.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

static const char key[] = "cluster-secret";
#define KEYLEN (sizeof(key) - 1)

static void
mk(struct proto_token *t)
{
    cr_assert_eq(proto_token_init(t, "burrow", 1000, 0x0123456789abcdefULL), 0);
    t->hops = 1;
    cr_assert_eq(proto_token_add_cell(t, "cell-a"), 0);
    cr_assert_eq(proto_token_add_cell(t, "cell_b.2"), 0);
}

Test(token, round_trip)
{
    struct proto_token t, u;
    char buf[PROTO_TOKEN_ENC_MAX];
    long n;

    mk(&t);
    n = proto_token_encode(&t, key, KEYLEN, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, strlen(buf));
    for (long i = 0; i < n; i++)
        cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                         buf[i]) != NULL);
    cr_assert_eq(proto_token_decode(buf, (size_t)n, key, KEYLEN, 999, &u), 0);
    cr_assert_eq(u.version, PROTO_TOKEN_VERSION);
    cr_assert_eq(u.hops, 1);
    cr_assert_eq(u.expiry, 1000);
    cr_assert_eq(u.nonce, 0x0123456789abcdefULL);
    cr_assert_str_eq(u.service, "burrow");
    cr_assert_eq(u.ncells, 2);
    cr_assert_str_eq(u.cells[0], "cell-a");
    cr_assert_str_eq(u.cells[1], "cell_b.2");
    cr_assert(proto_token_visited(&u, "cell-a"));
    cr_assert(!proto_token_visited(&u, "cell-c"));
}

Test(token, same_input_same_bytes)
{
    struct proto_token t;
    char a[PROTO_TOKEN_ENC_MAX], b[PROTO_TOKEN_ENC_MAX];

    mk(&t);
    cr_assert_gt(proto_token_encode(&t, key, KEYLEN, a, sizeof(a)), 0);
    cr_assert_gt(proto_token_encode(&t, key, KEYLEN, b, sizeof(b)), 0);
    cr_assert_str_eq(a, b);
    t.nonce++;
    cr_assert_gt(proto_token_encode(&t, key, KEYLEN, b, sizeof(b)), 0);
    cr_assert_str_neq(a, b);
}

Test(token, tamper_every_character)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct proto_token t, u;
    char buf[PROTO_TOKEN_ENC_MAX], mod[PROTO_TOKEN_ENC_MAX];
    long n;

    mk(&t);
    n = proto_token_encode(&t, key, KEYLEN, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    for (long i = 0; i < n; i++) {
        for (size_t c = 0; c < sizeof(alpha) - 1; c++) {
            if (alpha[c] == buf[i])
                continue;
            memcpy(mod, buf, (size_t)n + 1);
            mod[i] = alpha[c];
            int rc = proto_token_decode(mod, (size_t)n, key, KEYLEN, 0, &u);
            cr_assert(rc == -PROTO_TOKEN_EBADSIG || rc == -PROTO_TOKEN_EMALFORMED,
                      "pos %ld char %c accepted (%d)", i, alpha[c], rc);
        }
        /* A character outside the alphabet. */
        memcpy(mod, buf, (size_t)n + 1);
        mod[i] = '=';
        cr_assert_eq(proto_token_decode(mod, (size_t)n, key, KEYLEN, 0, &u),
                     -PROTO_TOKEN_EMALFORMED);
    }
    /* Truncated and extended. */
    for (long len = 0; len < n; len++)
        cr_assert_neq(proto_token_decode(buf, (size_t)len, key, KEYLEN, 0, &u), 0);
    memcpy(mod, buf, (size_t)n);
    mod[n] = 'A';
    mod[n + 1] = 'A';
    cr_assert_neq(proto_token_decode(mod, (size_t)n + 2, key, KEYLEN, 0, &u), 0);
}

Test(token, tamper_every_raw_byte_is_bad_signature)
{
    /* Flip each bit of the signed bytes by re-signing nothing: build a token,
     * change a field, encode with another key, decode with ours. */
    struct proto_token t, u;
    char buf[PROTO_TOKEN_ENC_MAX];
    long n;

    mk(&t);
    n = proto_token_encode(&t, "other", 5, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_eq(proto_token_decode(buf, (size_t)n, key, KEYLEN, 0, &u), -PROTO_TOKEN_EBADSIG);
}

Test(token, expired)
{
    struct proto_token t, u;
    char buf[PROTO_TOKEN_ENC_MAX];
    long n;

    mk(&t);
    n = proto_token_encode(&t, key, KEYLEN, buf, sizeof(buf));
    cr_assert_eq(proto_token_decode(buf, (size_t)n, key, KEYLEN, 999, &u), 0);
    cr_assert_eq(proto_token_decode(buf, (size_t)n, key, KEYLEN, 1000, &u), -PROTO_TOKEN_EEXPIRED);
    cr_assert_eq(proto_token_decode(buf, (size_t)n, key, KEYLEN, 5000, &u), -PROTO_TOKEN_EEXPIRED);
}

Test(token, too_many_cells)
{
    struct proto_token t, u;
    char name[16], buf[PROTO_TOKEN_ENC_MAX];
    long n;

    cr_assert_eq(proto_token_init(&t, "burrow", 10, 1), 0);
    for (int i = 0; i < PROTO_TOKEN_MAX_CELLS; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        cr_assert_eq(proto_token_add_cell(&t, name), 0);
    }
    cr_assert_eq(proto_token_add_cell(&t, "c0"), 0, "re-adding a visited cell is a no-op");
    cr_assert_eq(proto_token_add_cell(&t, "extra"), -PROTO_TOKEN_EFULL);
    cr_assert_eq(t.ncells, PROTO_TOKEN_MAX_CELLS);
    n = proto_token_encode(&t, key, KEYLEN, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_eq(proto_token_decode(buf, (size_t)n, key, KEYLEN, 0, &u), 0);
    cr_assert_eq(u.ncells, PROTO_TOKEN_MAX_CELLS);
}

Test(token, largest_token_fits_buffer)
{
    struct proto_token t, u;
    char name[PROTO_TOKEN_NAME_MAX + 1], buf[PROTO_TOKEN_ENC_MAX];
    long n;

    memset(name, 'x', PROTO_TOKEN_NAME_MAX);
    name[PROTO_TOKEN_NAME_MAX] = '\0';
    cr_assert_eq(proto_token_init(&t, name, 10, 1), 0);
    for (int i = 0; i < PROTO_TOKEN_MAX_CELLS; i++) {
        name[0] = (char)('a' + i);
        cr_assert_eq(proto_token_add_cell(&t, name), 0);
    }
    n = proto_token_encode(&t, key, KEYLEN, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_lt((size_t)n, sizeof(buf));
    cr_assert_eq(proto_token_encode(&t, key, KEYLEN, buf, 100), -ERANGE);
    cr_assert_eq(proto_token_decode(buf, (size_t)n, key, KEYLEN, 0, &u), 0);
}

Test(token, bad_names)
{
    struct proto_token t;
    char big[PROTO_TOKEN_NAME_MAX + 2];

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(proto_token_init(&t, "", 1, 1), -PROTO_TOKEN_EBADNAME);
    cr_assert_eq(proto_token_init(&t, big, 1, 1), -PROTO_TOKEN_EBADNAME);
    cr_assert_eq(proto_token_init(&t, "bur row", 1, 1), -PROTO_TOKEN_EBADNAME);
    cr_assert_eq(proto_token_init(&t, "burrow", 1, 1), 0);
    cr_assert_eq(proto_token_add_cell(&t, "a/b"), -PROTO_TOKEN_EBADNAME);
    cr_assert_eq(proto_token_add_cell(&t, big), -PROTO_TOKEN_EBADNAME);
    cr_assert_eq(proto_token_add_cell(&t, "a\r\n"), -PROTO_TOKEN_EBADNAME);
}

Test(token, garbage_is_malformed)
{
    struct proto_token u;
    static const char *const cases[] = {"", "A", "AAAA", "!!!!", "AAAAAAAAAAAAAAAAAAAAAAA=", "%41"};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(proto_token_decode(cases[i], strlen(cases[i]), key, KEYLEN, 0, &u),
                     -PROTO_TOKEN_EMALFORMED, "case %zu", i);
    char big[PROTO_TOKEN_ENC_MAX + 10];
    memset(big, 'A', sizeof(big));
    cr_assert_eq(proto_token_decode(big, sizeof(big), key, KEYLEN, 0, &u), -PROTO_TOKEN_EMALFORMED);
    cr_assert_str_eq(proto_token_strerror(-PROTO_TOKEN_EBADSIG),
                     "escalation token signature mismatch");
}

Test(token, name_charset_and_length)
{
    char n64[PROTO_TOKEN_NAME_MAX + 1];

    cr_assert(proto_token_name_ok("cell-A.1_b", 10));
    cr_assert_not(proto_token_name_ok("", 0));
    cr_assert_not(proto_token_name_ok("a b", 3));
    cr_assert_not(proto_token_name_ok("a/b", 3));
    cr_assert_not(proto_token_name_ok("a:b", 3));
    memset(n64, 'c', sizeof(n64));
    cr_assert(proto_token_name_ok(n64, PROTO_TOKEN_NAME_MAX));
    cr_assert_not(proto_token_name_ok(n64, PROTO_TOKEN_NAME_MAX + 1));
}
