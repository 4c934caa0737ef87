/* SPDX-License-Identifier: ISC */
/* tests/agg/test_marker: the aggregator's paging cursor codec. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/burrow.h"
#include "proto/marker.h"

static void
roundtrip(const char *id, uint32_t h)
{
    struct proto_marker_cursor c = {0}, d = {0};
    char buf[PROTO_MARKER_CURSOR_MAX];
    int n;

    c.marker_hash = h;
    c.backend_len = strlen(id);
    memcpy(c.backend, id, c.backend_len);
    n = proto_marker_pack(&c, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, strlen(buf));
    cr_assert_eq(strspn(buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                 (size_t)n, "cursor must be query-safe: %s", buf);
    cr_assert_eq(proto_marker_unpack(buf, (size_t)n, &d), 0, "unpack %s", buf);
    cr_assert_eq(d.marker_hash, h);
    cr_assert_eq(d.backend_len, c.backend_len);
    cr_assert_str_eq(d.backend, id);
}

Test(marker, roundtrip_lengths)
{
    char id[RING_ID_MAX + 1];

    /* Every length, so every base64 tail (0, 1, 2 leftover bytes) is seen. */
    for (size_t len = 1; len <= RING_ID_MAX; len++) {
        for (size_t i = 0; i < len; i++)
            id[i] = (char)('a' + (i * 7 + len) % 26);
        id[len] = '\0';
        roundtrip(id, (uint32_t)(len * 2654435761u));
    }
    roundtrip("b1", 0);
    roundtrip("b1", 0xffffffffu);
}

Test(marker, rejects_garbage)
{
    static const char *bad[] = {
        "",
        "A",
        "AAAA",
        "!!!!!!!!!!!!",
        "AQAAAAACYjE", /* valid alphabet, bad check */
        "AQAAAAACYjE+",
        "AQAAAAACYjE=",
    };
    struct proto_marker_cursor d;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(proto_marker_unpack(bad[i], strlen(bad[i]), &d), -PROTO_EBADVALUE, "%s",
                     bad[i]);
}

Test(marker, detects_any_flipped_char)
{
    struct proto_marker_cursor c = {.marker_hash = 42, .backend = "burrow-7", .backend_len = 8};
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
    struct proto_marker_cursor c = {.marker_hash = 1, .backend_len = 0};
    char small[8];

    cr_assert_eq(proto_marker_pack(&c, small, sizeof(small)), -EINVAL);
    c.backend_len = 2;
    memcpy(c.backend, "b1", 3);
    cr_assert_eq(proto_marker_pack(&c, small, sizeof(small)), -ERANGE);
    cr_assert_neq(proto_marker_hash("a", 1), proto_marker_hash("b", 1));
}
