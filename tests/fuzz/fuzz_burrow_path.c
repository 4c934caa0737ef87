/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto_burrow_parse_path(). Property: the ids it returns are within
 * their limits (no '/', no NUL, not "." or "..", at most
 * PROTO_BURROW_ID_MAX bytes, inside the caller's buffer), and the path
 * rebuilt from them with proto_pct_encode() parses to the same level and
 * ids.
 */
#include "proto/burrow.h"
#include "tests/fuzz/fuzz.h"

#include <string.h>

#define BUFLEN (3 * PROTO_BURROW_ID_MAX + 3)

static void
check_id(const struct proto_slice *id, const char *buf, bool present)
{
    if (!present) {
        FUZZ_CHECK(id->len == 0);
        return;
    }
    FUZZ_CHECK(id->len >= 1 && id->len <= PROTO_BURROW_ID_MAX);
    FUZZ_CHECK(id->ptr >= buf && id->ptr + id->len <= buf + BUFLEN);
    FUZZ_CHECK(memchr(id->ptr, '/', id->len) == NULL);
    FUZZ_CHECK(memchr(id->ptr, '\0', id->len) == NULL);
    FUZZ_CHECK(!(id->len <= 2 && memcmp(id->ptr, "..", id->len) == 0));
}

static bool
same(const struct proto_slice *a, const struct proto_slice *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[BUFLEN], buf2[BUFLEN], path[PROTO_BURROW_PATH_MAX + 1];
    struct proto_burrow_path p, p2;
    const struct proto_slice *ids[3] = {&p.account, &p.queue, &p.message};
    size_t n;
    int rc = proto_burrow_parse_path((const char *)data, size, buf, sizeof(buf), &p);

    if (rc != 0) {
        FUZZ_CHECK(rc == -PROTO_ENOTFOUND || rc == -PROTO_EBADENC || rc == -PROTO_ETOOLONG ||
                   rc == -PROTO_EDOTSEG);
        return 0;
    }
    FUZZ_CHECK(p.level <= PROTO_BURROW_MESSAGE);
    for (int i = 0; i < 3; i++)
        check_id(ids[i], buf, (int)p.level > i + 1);

    /* Round trip: "/v1.0" and each id percent-encoded. Three encoded ids
     * can be longer than PROTO_BURROW_PATH_MAX: then there is nothing to
     * compare. */
    if (p.level == PROTO_BURROW_ROOT) {
        n = (size_t)snprintf(path, sizeof(path), "/");
    } else {
        n = (size_t)snprintf(path, sizeof(path), "/%s", PROTO_BURROW_VERSION);
        for (int i = 0; i + 1 < (int)p.level; i++) {
            long m;

            if (n + 1 >= sizeof(path))
                return 0;
            path[n++] = '/';
            m = proto_pct_encode(ids[i]->ptr, ids[i]->len, path + n, sizeof(path) - n);
            if (m < 0)
                return 0;
            n += (size_t)m;
        }
    }
    rc = proto_burrow_parse_path(path, n, buf2, sizeof(buf2), &p2);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(p2.level == p.level);
    FUZZ_CHECK(same(&p.account, &p2.account) && same(&p.queue, &p2.queue) &&
               same(&p.message, &p2.message));
    return 0;
}
