/* SPDX-License-Identifier: ISC */
/* tests/agg/test_marker: the aggregator's paging cursor codec. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "proto/burrow.h"
#include "proto/marker.h"

static void
roundtrip(int64_t stamp, uint32_t h)
{
    struct proto_marker_cursor c = {0}, d = {0};
    char buf[PROTO_MARKER_CURSOR_MAX];
    int n;

    c.marker_hash = h;
    c.stamp = stamp;
    n = proto_marker_pack(&c, buf, sizeof(buf));
    cr_assert_eq(n, 20);
    cr_assert_eq((size_t)n, strlen(buf));
    cr_assert_eq(strspn(buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                 (size_t)n, "cursor must be query-safe: %s", buf);
    cr_assert_eq(proto_marker_unpack(buf, (size_t)n, &d), 0, "unpack %s", buf);
    cr_assert_eq(d.marker_hash, h);
    cr_assert_eq(d.stamp, stamp);
}

Test(marker, roundtrip_stamps)
{
    roundtrip(0, 0);
    roundtrip(1, 0xffffffffu);
    roundtrip(1712345678901234, 42);
    roundtrip(INT64_MAX, 7);
    for (int i = 0; i < 63; i++)
        roundtrip((int64_t)1 << i, (uint32_t)i * 2654435761u);
}

Test(marker, rejects_garbage)
{
    static const char *bad[] = {
        "",
        "A",
        "AAAA",
        "!!!!!!!!!!!!!!!!!!!!",
        "AgAAAAAAAAAAAAAAAAAA", /* valid alphabet and length, bad check */
        "AgAAAAAAAAAAAAAAAAA+",
        "AQAAAAACYjE",            /* a version 1 cursor (backend b1) */
        "AgAAAAAAAAAAAAAAAAAAAA", /* too long */
    };
    struct proto_marker_cursor d;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(proto_marker_unpack(bad[i], strlen(bad[i]), &d), -PROTO_EBADVALUE, "%s",
                     bad[i]);
}

Test(marker, detects_any_flipped_char)
{
    struct proto_marker_cursor c = {.marker_hash = 42, .stamp = 1712345678901234};
    struct proto_marker_cursor d;
    char buf[PROTO_MARKER_CURSOR_MAX], alt[PROTO_MARKER_CURSOR_MAX];
    int n = proto_marker_pack(&c, buf, sizeof(buf));
    int accepted = 0;

    cr_assert_gt(n, 0);
    for (int i = 0; i < n; i++) {
        memcpy(alt, buf, (size_t)n + 1);
        alt[i] = alt[i] == 'Q' ? 'R' : 'Q';
        if (proto_marker_unpack(alt, (size_t)n, &d) == 0)
            accepted++;
    }
    cr_assert_eq(accepted, 0, "a changed cursor must not decode");
}

Test(marker, bad_arguments)
{
    struct proto_marker_cursor c = {.marker_hash = 1, .stamp = -1};
    char small[8];

    cr_assert_eq(proto_marker_pack(&c, small, sizeof(small)), -EINVAL);
    c.stamp = 5;
    cr_assert_eq(proto_marker_pack(&c, small, sizeof(small)), -ERANGE);
    cr_assert_neq(proto_marker_hash("a", 1), proto_marker_hash("b", 1));
}
