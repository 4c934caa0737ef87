/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto_marker_unpack(). Properties: a cursor that unpacks packs back
 * to exactly the input (one spelling per cursor); and any cursor value that
 * packs (the input's bytes as a struct) unpacks and packs again to the same
 * text. Both go through the struct only by pack and unpack, so the harness
 * holds for every version of the cursor's fields.
 */
#include "proto/burrow.h"
#include "proto/marker.h"
#include "tests/fuzz/fuzz.h"

#include <errno.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_marker_cursor c, c2;
    char out[PROTO_MARKER_CURSOR_MAX], out2[PROTO_MARKER_CURSOR_MAX];
    int rc = proto_marker_unpack((const char *)data, size, &c), rc2;

    if (rc != 0) {
        FUZZ_CHECK(rc == -PROTO_EBADVALUE);
    } else {
        rc = proto_marker_pack(&c, out, sizeof(out));
        FUZZ_CHECK(rc == (int)size && memcmp(out, data, size) == 0);
    }

    /* Bytes as a cursor -> pack -> unpack -> pack. */
    memset(&c, 0, sizeof(c));
    memcpy(&c, data, size < sizeof(c) ? size : sizeof(c));
    rc = proto_marker_pack(&c, out, sizeof(out));
    if (rc < 0) {
        FUZZ_CHECK(rc == -EINVAL);
        return 0;
    }
    FUZZ_CHECK((size_t)rc < sizeof(out) && out[rc] == '\0');
    FUZZ_CHECK(proto_marker_unpack(out, (size_t)rc, &c2) == 0);
    rc2 = proto_marker_pack(&c2, out2, sizeof(out2));
    FUZZ_CHECK(rc2 == rc && memcmp(out, out2, (size_t)rc) == 0);
    return 0;
}
