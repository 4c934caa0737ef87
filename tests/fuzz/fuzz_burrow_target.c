/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto_burrow_parse_target(). Properties: a target that parses has a
 * path that starts with '/', and neither path nor query holds a NUL,
 * control byte or space; the parts are slices of the input (the "/" of an
 * absolute-form without a path aside); an origin-form target is exactly
 * path ['?' query]; and the origin-form written back from the parts parses
 * to the same path and query with no authority.
 */
#include "proto/burrow.h"
#include "tests/fuzz/fuzz.h"

#include <string.h>

static bool
clean(const struct proto_slice *s)
{
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->ptr[i];

        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

static bool
inside(const struct proto_slice *s, const char *t, size_t len)
{
    return s->ptr >= t && s->ptr + s->len <= t + len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *t = (const char *)data;
    struct proto_burrow_target a, b;
    char *again;
    size_t n;
    int rc = proto_burrow_parse_target(t, size, &a);

    if (rc != 0) {
        FUZZ_CHECK(rc == -PROTO_EBADTARGET);
        return 0;
    }
    FUZZ_CHECK(a.path.len >= 1 && a.path.ptr[0] == '/');
    FUZZ_CHECK(clean(&a.path) && clean(&a.authority));
    FUZZ_CHECK(a.query.ptr == NULL || clean(&a.query));
    FUZZ_CHECK(inside(&a.path, t, size) || (a.path.len == 1 && a.authority.len > 0));
    FUZZ_CHECK(a.query.ptr == NULL || inside(&a.query, t, size));
    FUZZ_CHECK(memchr(a.path.ptr, '?', a.path.len) == NULL);
    if (a.authority.len == 0) {
        FUZZ_CHECK(t[0] == '/');
        FUZZ_CHECK(a.path.ptr == t);
        FUZZ_CHECK(a.path.len + (a.query.ptr ? 1 + a.query.len : 0) == size);
    } else {
        FUZZ_CHECK(inside(&a.authority, t, size));
        FUZZ_CHECK(memchr(a.authority.ptr, '@', a.authority.len) == NULL);
    }

    /* Round trip through the origin-form. */
    n = a.path.len + (a.query.ptr ? 1 + a.query.len : 0);
    again = malloc(n + 1);
    FUZZ_CHECK(again != NULL);
    memcpy(again, a.path.ptr, a.path.len);
    if (a.query.ptr) {
        again[a.path.len] = '?';
        memcpy(again + a.path.len + 1, a.query.ptr, a.query.len);
    }
    rc = proto_burrow_parse_target(again, n, &b);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(b.authority.len == 0);
    FUZZ_CHECK(b.path.len == a.path.len && memcmp(b.path.ptr, a.path.ptr, a.path.len) == 0);
    FUZZ_CHECK((b.query.ptr == NULL) == (a.query.ptr == NULL));
    FUZZ_CHECK(b.query.len == a.query.len &&
               (a.query.len == 0 || memcmp(b.query.ptr, a.query.ptr, a.query.len) == 0));
    free(again);
    return 0;
}
