/* SPDX-License-Identifier: ISC */
/* Table tests for proto/hostport: the "host:port" of a backend url. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/hostport.h"

struct hp_case {
    const char *url;
    int rc;
    const char *want; /* when rc == 0 */
};

static const struct hp_case cases[] = {
    {"http://127.0.0.1:9001", 0, "127.0.0.1:9001"},
    {"http://h/x?y", 0, "h:80"},
    {"http://h?y", 0, "h:80"},
    {"http://h#f", 0, "h:80"},
    {"https://h", 0, "h:443"},
    {"https://h:8443/p", 0, "h:8443"},
    {"http://[::1]:81/", 0, "[::1]:81"},
    {"http://[::1]", 0, "[::1]:80"},
    {"https://[fe80::1]/x", 0, "[fe80::1]:443"},
    {"ftp://h", -EINVAL, NULL},
    {"http://", -EINVAL, NULL},
    {"http:///x", -EINVAL, NULL},
    {"HTTP://h", -EINVAL, NULL},
    {"", -EINVAL, NULL},
};

Test(hostport, table)
{
    char out[PROTO_HOSTPORT_MAX];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct hp_case *c = &cases[i];
        memset(out, 'x', sizeof(out));
        int rc = proto_hostport(c->url, out, sizeof(out));
        cr_assert_eq(rc, c->rc, "%s: %d, want %d", c->url, rc, c->rc);
        if (rc == 0)
            cr_assert_str_eq(out, c->want, "%s", c->url);
    }
}

Test(hostport, bounded_output)
{
    char out[8];

    cr_assert_eq(proto_hostport("http://abcdefgh:1", out, 5), -ERANGE);
    cr_assert_eq(proto_hostport("http://abc:1", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "abc:1");
    /* exactly full: 7 bytes and the NUL */
    cr_assert_eq(proto_hostport("http://abcd", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "abcd:80");
    cr_assert_eq(proto_hostport("http://abcd:1234", out, sizeof(out)), -ERANGE);
    /* a host longer than any "host:port" we keep */
    static char big[PROTO_HOSTPORT_MAX + 32];
    memcpy(big, "http://", 7);
    memset(big + 7, 'a', sizeof(big) - 8);
    big[sizeof(big) - 1] = '\0';
    char wide[2 * PROTO_HOSTPORT_MAX];
    cr_assert_eq(proto_hostport(big, wide, sizeof(wide)), -ERANGE);
}
