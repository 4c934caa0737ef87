/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for common/buf: appends grow the buffer and keep a NUL after
 * the bytes; the maximum is exact and an append past it changes nothing.
 */
#include "common/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

Test(buf, grows_and_keeps_a_nul)
{
    char *p = NULL;
    size_t len = 0, cap = 0;
    char chunk[700];

    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 10; i++)
        cr_assert_eq(buf_append(&p, &len, &cap, 7000, chunk, sizeof(chunk)), 0);
    cr_assert_eq(len, 7000);
    cr_assert_geq(cap, 7001);
    cr_assert_eq(p[7000], '\0');
    cr_assert_eq(strspn(p, "x"), 7000);
    free(p);
}

Test(buf, maximum_is_exact)
{
    char *p = NULL;
    size_t len = 0, cap = 0;

    cr_assert_eq(buf_append(&p, &len, &cap, 5, "abc", 3), 0);
    cr_assert_eq(buf_append(&p, &len, &cap, 5, "def", 3), -E2BIG);
    cr_assert_eq(len, 3, "a refused append changes nothing");
    cr_assert_str_eq(p, "abc");
    cr_assert_eq(buf_append(&p, &len, &cap, 5, "de", 2), 0);
    cr_assert_str_eq(p, "abcde");
    cr_assert_eq(buf_append(&p, &len, &cap, 5, "", 0), 0);
    cr_assert_eq(buf_append(&p, &len, &cap, 5, "f", 1), -E2BIG);
    cr_assert_eq(buf_append(&p, &len, &cap, 5, "x", (size_t)-1), -E2BIG, "no overflow");
    free(p);
}
