/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for proto/burrow: the Burrow v1.0 path grammar, query parsing
 * and percent encoding, as tables of inputs and expected results.
 */
#include "proto/burrow.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

struct path_case {
    const char *path;
    int rc;
    enum proto_burrow_level level;
    const char *account, *queue, *message;
};

static const struct path_case path_cases[] = {
    {"/", 0, PROTO_BURROW_ROOT, "", "", ""},
    {"/v1.0", 0, PROTO_BURROW_ACCOUNTS, "", "", ""},
    {"/v1.0/a", 0, PROTO_BURROW_QUEUES, "a", "", ""},
    {"/v1.0/a/q", 0, PROTO_BURROW_MESSAGES, "a", "q", ""},
    {"/v1.0/a/q/m", 0, PROTO_BURROW_MESSAGE, "a", "q", "m"},
    {"/v1.0/my%20acct/my%20queue/my%20messageid", 0, PROTO_BURROW_MESSAGE, "my acct", "my queue",
     "my messageid"},
    {"/v1.0/a+b/q/m", 0, PROTO_BURROW_MESSAGE, "a+b", "q", "m"}, /* '+' stays in paths */
    {"/v1.0/%41%62/q?x/m#", 0, PROTO_BURROW_MESSAGE, "Ab", "q?x", "m#"},
    {"/v1%2E0/a", 0, PROTO_BURROW_QUEUES, "a", "", ""}, /* decoded like WSGI */
    {"/v1.0/%ff%fe/q", 0, PROTO_BURROW_MESSAGES, "\xff\xfe", "q", ""},
    {"/v1.0/a%2Fb/q", -PROTO_ENOTFOUND, 0, "", "", ""}, /* decoded '/' */
    {"/v1.0/a/q/m%2f", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"/v1.0/a%00/q", -PROTO_EBADENC, 0, "", "", ""},
    {"/v1.0/a%0/q", -PROTO_EBADENC, 0, "", "", ""},
    {"/v1.0/a%zz/q", -PROTO_EBADENC, 0, "", "", ""},
    {"/v1.0/a%", -PROTO_EBADENC, 0, "", "", ""},
    {"/v1.0/", -PROTO_ENOTFOUND, 0, "", "", ""}, /* trailing slash */
    {"/v1.0/a/", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"/v1.0/a/q/m/", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"/v1.0//q", -PROTO_ENOTFOUND, 0, "", "", ""}, /* empty segment */
    {"//", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"/v1.0/a/q/m/x", -PROTO_ENOTFOUND, 0, "", "", ""}, /* > 4 segments */
    {"/v1.1/a", -PROTO_ENOTFOUND, 0, "", "", ""},       /* other version */
    {"/v1.0x", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"/V1.0", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"/v1.00000000000000000000", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"/favicon.ico", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"", -PROTO_ENOTFOUND, 0, "", "", ""},
    {"v1.0/a", -PROTO_ENOTFOUND, 0, "", "", ""},
    /* Dot segments as ids: refused, however they are spelled (issue 15). */
    {"/v1.0/a/q/..", -PROTO_EDOTSEG, 0, "", "", ""},
    {"/v1.0/a/q/.", -PROTO_EDOTSEG, 0, "", "", ""},
    {"/v1.0/../q/m", -PROTO_EDOTSEG, 0, "", "", ""},
    {"/v1.0/a/./m", -PROTO_EDOTSEG, 0, "", "", ""},
    {"/v1.0/a/q/%2e%2E", -PROTO_EDOTSEG, 0, "", "", ""},
    {"/v1.0/%2E", -PROTO_EDOTSEG, 0, "", "", ""},
    {"/v1.0/a/q/.%2e", -PROTO_EDOTSEG, 0, "", "", ""},
    {"/v1.0/a/q/...", 0, PROTO_BURROW_MESSAGE, "a", "q", "..."}, /* not a dot segment */
    {"/v1.0/.a/q/m.", 0, PROTO_BURROW_MESSAGE, ".a", "q", "m."},
    {"/v1.0/a/q/..%2F", -PROTO_ENOTFOUND, 0, "", "", ""},
};

Test(burrow, parse_path_table)
{
    for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const struct path_case *c = &path_cases[i];
        struct proto_burrow_path p;
        char buf[3 * PROTO_BURROW_ID_MAX + 3];
        int rc = proto_burrow_parse_path(c->path, strlen(c->path), buf, sizeof(buf), &p);

        cr_assert_eq(rc, c->rc, "case %zu %s: rc %d want %d", i, c->path, rc, c->rc);
        if (rc != 0)
            continue;
        cr_assert_eq(p.level, c->level, "case %zu %s: level", i, c->path);
        cr_assert_eq(p.account.len, strlen(c->account), "case %zu account len", i);
        cr_assert(memcmp(p.account.ptr ? p.account.ptr : "", c->account, p.account.len) == 0);
        cr_assert_eq(p.queue.len, strlen(c->queue), "case %zu queue len", i);
        cr_assert(memcmp(p.queue.ptr ? p.queue.ptr : "", c->queue, p.queue.len) == 0);
        cr_assert_eq(p.message.len, strlen(c->message), "case %zu message len", i);
        cr_assert(memcmp(p.message.ptr ? p.message.ptr : "", c->message, p.message.len) == 0);
    }
}

Test(burrow, parse_path_id_lengths)
{
    char path[PROTO_BURROW_PATH_MAX + 16], buf[3 * PROTO_BURROW_ID_MAX + 3];
    struct proto_burrow_path p;
    int n;

    /* 255 decoded bytes: fine, even as 765 raw bytes of escapes. */
    n = snprintf(path, sizeof(path), "/v1.0/");
    for (int i = 0; i < PROTO_BURROW_ID_MAX; i++)
        n += snprintf(path + n, sizeof(path) - (size_t)n, "%%41");
    n += snprintf(path + n, sizeof(path) - (size_t)n, "/q/m");
    cr_assert_eq(proto_burrow_parse_path(path, (size_t)n, buf, sizeof(buf), &p), 0);
    cr_assert_eq(p.account.len, PROTO_BURROW_ID_MAX);
    cr_assert_eq(p.queue.len, 1);

    /* 256 decoded bytes: 400 class. */
    n = snprintf(path, sizeof(path), "/v1.0/a/");
    memset(path + n, 'x', PROTO_BURROW_ID_MAX + 1);
    n += PROTO_BURROW_ID_MAX + 1;
    cr_assert_eq(proto_burrow_parse_path(path, (size_t)n, buf, sizeof(buf), &p), -PROTO_ETOOLONG);

    /* Three ids of the maximum fit the documented buffer size. */
    n = snprintf(path, sizeof(path), "/v1.0");
    for (int s = 0; s < 3; s++) {
        path[n++] = '/';
        memset(path + n, 'a' + s, PROTO_BURROW_ID_MAX);
        n += PROTO_BURROW_ID_MAX;
    }
    cr_assert_eq(proto_burrow_parse_path(path, (size_t)n, buf, sizeof(buf), &p), 0);
    cr_assert_eq(p.message.len, PROTO_BURROW_ID_MAX);
    cr_assert_eq(p.message.ptr[0], 'c');

    /* Raw path over the maximum. */
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    cr_assert_eq(proto_burrow_parse_path(path, PROTO_BURROW_PATH_MAX + 1, buf, sizeof(buf), &p),
                 -PROTO_ETOOLONG);
}

enum qfield { Q_NONE, Q_LIMIT, Q_MARKER, Q_HIDDEN, Q_DETAIL, Q_TTL, Q_HIDE, Q_WAIT };

struct query_case {
    const char *qs;
    int rc;
    enum qfield field;
    int64_t ival;     /* integer fields and match_hidden */
    const char *sval; /* marker, detail_raw */
    enum proto_burrow_detail detail;
    bool detail_bad;
};

static const struct query_case query_cases[] = {
    {"", 0, Q_NONE, 0, NULL, PROTO_DETAIL_DEFAULT, false},
    {"limit=10", 0, Q_LIMIT, 10, NULL, 0, false},
    {"limit=0", 0, Q_LIMIT, 0, NULL, 0, false},
    {"limit=-1", 0, Q_LIMIT, -1, NULL, 0, false}, /* negative: unlimited */
    {"limit=%2B7", 0, Q_LIMIT, 7, NULL, 0, false},
    {"limit=+7", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false}, /* "+" is a space */
    {"limit=1&limit=5", 0, Q_LIMIT, 5, NULL, 0, false},        /* last wins */
    {"limit=abc", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=1.5", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=%201", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=-", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=99999999999999999999", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=123456789012345678901234567890123456", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=%31%32", 0, Q_LIMIT, 12, NULL, 0, false},
    /* Integers that do not fit are refused, never wrapped (issue 15:
     * 2^64 + 1 came out as 1, 2^64 as 0). */
    {"limit=18446744073709551617", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=18446744073709551616", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=36893488147419103233", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=-18446744073709551617", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=9223372036854775807", 0, Q_LIMIT, INT64_MAX, NULL, 0, false},
    {"limit=9223372036854775808", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"limit=-9223372036854775807", 0, Q_LIMIT, -INT64_MAX, NULL, 0, false},
    {"limit=0009223372036854775807", 0, Q_LIMIT, INT64_MAX, NULL, 0, false},
    {"ttl=18446744073709551616", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"ttl=18446744073709551617", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"hide=18446744073709551716", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"wait=18446744073709551616", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"ttl=3153600000", 0, Q_TTL, 3153600000LL, NULL, 0, false},
    {"ttl=100", 0, Q_TTL, 100, NULL, 0, false},
    {"ttl=0", 0, Q_TTL, 0, NULL, 0, false},
    {"ttl=-1", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"ttl=x", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"ttl=3153600001", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"hide=200", 0, Q_HIDE, 200, NULL, 0, false},
    {"hide=-5", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"wait=60", 0, Q_WAIT, 60, NULL, 0, false},
    {"wait=-1", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"wait=1e3", -PROTO_EBADVALUE, Q_NONE, 0, NULL, 0, false},
    {"match_hidden=true", 0, Q_HIDDEN, 1, NULL, 0, false},
    {"match_hidden=True", 0, Q_HIDDEN, 1, NULL, 0, false},
    {"match_hidden=TRUE", 0, Q_HIDDEN, 1, NULL, 0, false},
    {"match_hidden=false", 0, Q_HIDDEN, 0, NULL, 0, false},
    {"match_hidden=1", 0, Q_HIDDEN, 0, NULL, 0, false},
    {"match_hidden=yes", 0, Q_HIDDEN, 0, NULL, 0, false},
    {"match_hidden=truetruetruetruetruetruetruetruetrue", 0, Q_HIDDEN, 0, NULL, 0, false},
    {"match_hidden=true&match_hidden=no", 0, Q_HIDDEN, 0, NULL, 0, false},
    {"marker=m1", 0, Q_MARKER, 0, "m1", 0, false},
    {"marker=my%20id", 0, Q_MARKER, 0, "my id", 0, false},
    {"marker=my+id", 0, Q_MARKER, 0, "my id", 0, false},
    {"marker=a%2Bb", 0, Q_MARKER, 0, "a+b", 0, false},
    {"marker=", 0, Q_MARKER, 0, "", 0, false},
    {"marker=a&marker=b", 0, Q_MARKER, 0, "b", 0, false},
    {"marker=a%00", -PROTO_EBADENC, Q_NONE, 0, NULL, 0, false},
    {"marker=a%g0", -PROTO_EBADENC, Q_NONE, 0, NULL, 0, false},
    {"detail=none", 0, Q_DETAIL, 0, "none", PROTO_DETAIL_NONE, false},
    {"detail=id", 0, Q_DETAIL, 0, "id", PROTO_DETAIL_ID, false},
    {"detail=attributes", 0, Q_DETAIL, 0, "attributes", PROTO_DETAIL_ATTRIBUTES, false},
    {"detail=body", 0, Q_DETAIL, 0, "body", PROTO_DETAIL_BODY, false},
    {"detail=all", 0, Q_DETAIL, 0, "all", PROTO_DETAIL_ALL, false},
    {"detail=bad", 0, Q_DETAIL, 0, "bad", PROTO_DETAIL_DEFAULT, true},
    {"detail=ALL", 0, Q_DETAIL, 0, "ALL", PROTO_DETAIL_DEFAULT, true},
    {"detail=", 0, Q_DETAIL, 0, "", PROTO_DETAIL_DEFAULT, true},
    {"detail=bad&detail=id", 0, Q_DETAIL, 0, "id", PROTO_DETAIL_ID, false},
    {"detail=id&detail=bad", 0, Q_DETAIL, 0, "bad", PROTO_DETAIL_DEFAULT, true},
    {"%64etail=all", 0, Q_DETAIL, 0, "all", PROTO_DETAIL_ALL, false}, /* encoded key */
    {"unknown=%zz&other", 0, Q_NONE, 0, NULL, 0, false},              /* ignored */
    {"&&limit=3&", 0, Q_LIMIT, 3, NULL, 0, false},
};

Test(burrow, query_table)
{
    for (size_t i = 0; i < sizeof(query_cases) / sizeof(query_cases[0]); i++) {
        const struct query_case *c = &query_cases[i];
        struct proto_burrow_query q;
        char buf[1024];
        int rc;

        proto_burrow_query_init(&q);
        rc = proto_burrow_query_parse(&q, c->qs, strlen(c->qs), buf, sizeof(buf));
        cr_assert_eq(rc, c->rc, "case %zu %s: rc %d want %d", i, c->qs, rc, c->rc);
        if (rc != 0)
            continue;
        switch (c->field) {
        case Q_NONE:
            cr_assert(!q.has_limit && !q.has_ttl && !q.has_hide && !q.has_wait, "case %zu %s", i,
                      c->qs);
            cr_assert_null(q.marker.ptr);
            cr_assert_eq(q.detail, PROTO_DETAIL_DEFAULT);
            cr_assert(!q.match_hidden);
            break;
        case Q_LIMIT:
            cr_assert(q.has_limit, "case %zu", i);
            cr_assert_eq(q.limit, c->ival, "case %zu %s", i, c->qs);
            break;
        case Q_TTL:
            cr_assert(q.has_ttl && q.ttl == c->ival, "case %zu %s", i, c->qs);
            break;
        case Q_HIDE:
            cr_assert(q.has_hide && q.hide == c->ival, "case %zu %s", i, c->qs);
            break;
        case Q_WAIT:
            cr_assert(q.has_wait && q.wait == c->ival, "case %zu %s", i, c->qs);
            break;
        case Q_HIDDEN:
            cr_assert_eq(q.match_hidden, c->ival != 0, "case %zu %s", i, c->qs);
            break;
        case Q_MARKER:
            cr_assert_not_null(q.marker.ptr, "case %zu", i);
            cr_assert_eq(q.marker.len, strlen(c->sval), "case %zu %s", i, c->qs);
            cr_assert(memcmp(q.marker.ptr, c->sval, q.marker.len) == 0, "case %zu", i);
            break;
        case Q_DETAIL:
            cr_assert_eq(q.detail, c->detail, "case %zu %s", i, c->qs);
            cr_assert_eq(q.detail_bad, c->detail_bad, "case %zu %s", i, c->qs);
            cr_assert_eq(q.detail_raw.len, strlen(c->sval), "case %zu", i);
            cr_assert(memcmp(q.detail_raw.ptr, c->sval, q.detail_raw.len) == 0, "case %zu", i);
            break;
        }
    }
}

Test(burrow, query_marker_too_long)
{
    char qs[600], buf[1024];
    struct proto_burrow_query q;
    int n = snprintf(qs, sizeof(qs), "marker=");

    memset(qs + n, 'm', PROTO_BURROW_ID_MAX);
    proto_burrow_query_init(&q);
    cr_assert_eq(
        proto_burrow_query_parse(&q, qs, (size_t)n + PROTO_BURROW_ID_MAX, buf, sizeof(buf)), 0);
    cr_assert_eq(q.marker.len, PROTO_BURROW_ID_MAX);
    memset(qs + n, 'm', PROTO_BURROW_ID_MAX + 1);
    proto_burrow_query_init(&q);
    cr_assert_eq(
        proto_burrow_query_parse(&q, qs, (size_t)n + PROTO_BURROW_ID_MAX + 1, buf, sizeof(buf)),
        -PROTO_ETOOLONG);
    /* A buffer too small for the value is also refused, never overrun. */
    proto_burrow_query_init(&q);
    cr_assert_eq(proto_burrow_query_parse(&q, "marker=abcdef", 13, buf, 3), -PROTO_ETOOLONG);
}

/* shed's ordering extension (struct proto_burrow_shed). */
Test(burrow, query_shed_extension)
{
    static const struct {
        const char *qs;
        int rc;
    } bad[] = {
        {"shed_after=-1", -PROTO_EBADVALUE},
        {"shed_upto=x", -PROTO_EBADVALUE},
        {"shed_stamp=0", -PROTO_EBADVALUE},
        {"shed_clock=-5", -PROTO_EBADVALUE},
        {"shed_after=9007199254740993", -PROTO_EBADVALUE}, /* over 2^53 */
    };
    char buf[1024];
    struct proto_burrow_query q;
    const char *all = "shed_stamps=1&shed_after=17&marker=m%201&shed_upto=99&shed_upto_id=z"
                      "&shed_stamp=5&shed_clock=9007199254740992&shed_other=x";

    proto_burrow_query_init(&q);
    cr_assert_eq(proto_burrow_query_parse(&q, all, strlen(all), buf, sizeof(buf)), 0);
    cr_assert(q.shed.stamps);
    cr_assert(q.shed.has_after && q.shed.after == 17);
    cr_assert(q.shed.has_upto && q.shed.upto == 99);
    cr_assert_eq(q.shed.upto_id.len, 1);
    cr_assert_eq(q.shed.upto_id.ptr[0], 'z');
    cr_assert(q.shed.has_stamp && q.shed.stamp == 5);
    cr_assert(q.shed.has_clock && q.shed.clock == PROTO_BURROW_STAMP_MAX);
    cr_assert_eq(q.marker.len, 3, "the marker is the position's id");
    proto_burrow_query_init(&q);
    cr_assert_eq(proto_burrow_query_parse(&q, "shed_stamps=true", 16, buf, sizeof(buf)), 0);
    cr_assert(q.shed.stamps);
    proto_burrow_query_init(&q);
    cr_assert_eq(proto_burrow_query_parse(&q, "shed_stamps=0", 13, buf, sizeof(buf)), 0);
    cr_assert(!q.shed.stamps && !q.shed.has_after);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proto_burrow_query_init(&q);
        cr_assert_eq(proto_burrow_query_parse(&q, bad[i].qs, strlen(bad[i].qs), buf, sizeof(buf)),
                     bad[i].rc, "%s", bad[i].qs);
    }
    cr_assert_eq(proto_burrow_key_cmp(1, "b", 1, 2, "a", 1), -1);
    cr_assert_eq(proto_burrow_key_cmp(2, "a", 1, 2, "ab", 2), -1);
    cr_assert_eq(proto_burrow_key_cmp(2, "ab", 2, 2, "ab", 2), 0);
    cr_assert_eq(proto_burrow_key_cmp(2, "b", 1, 2, "ab", 2), 1);
}

Test(burrow, query_parameter_count)
{
    char qs[8 * (PROTO_BURROW_QUERY_MAX + 2)], buf[1024];
    struct proto_burrow_query q;
    size_t n = 0;

    cr_assert_eq(proto_burrow_query_count("", 0), 0);
    cr_assert_eq(proto_burrow_query_count("a", 1), 1);
    cr_assert_eq(proto_burrow_query_count("a&b=1", 5), 2);
    cr_assert_eq(proto_burrow_query_count("&&", 2), 3);

    /* PROTO_BURROW_QUERY_MAX parameters: fine; one more: too many. */
    for (int i = 0; i < PROTO_BURROW_QUERY_MAX; i++)
        n += (size_t)snprintf(qs + n, sizeof(qs) - n, "%sx%d=1", i ? "&" : "", i);
    proto_burrow_query_init(&q);
    cr_assert_eq(proto_burrow_query_parse(&q, qs, n, buf, sizeof(buf)), 0);
    n += (size_t)snprintf(qs + n, sizeof(qs) - n, "&limit=5");
    proto_burrow_query_init(&q);
    cr_assert_eq(proto_burrow_query_parse(&q, qs, n, buf, sizeof(buf)), -PROTO_ETOOMANY);
    cr_assert(!q.has_limit); /* refused before any pair is applied */

    /* Empty parameters count too: libmicrohttpd keeps a record for each. */
    memset(qs, '&', PROTO_BURROW_QUERY_MAX);
    proto_burrow_query_init(&q);
    cr_assert_eq(proto_burrow_query_parse(&q, qs, PROTO_BURROW_QUERY_MAX, buf, sizeof(buf)),
                 -PROTO_ETOOMANY);
    cr_assert_eq(proto_burrow_query_parse(&q, qs, PROTO_BURROW_QUERY_MAX - 1, buf, sizeof(buf)), 0);
}

struct target_case {
    const char *t;
    int rc;
    const char *authority, *path, *query; /* query NULL: no '?' */
};

static const struct target_case target_cases[] = {
    {"/", 0, "", "/", NULL},
    {"/v1.0/a/q/m", 0, "", "/v1.0/a/q/m", NULL},
    {"/v1.0/a/q?limit=1&x", 0, "", "/v1.0/a/q", "limit=1&x"},
    {"/v1.0/a/q?", 0, "", "/v1.0/a/q", ""},
    {"/a?b?c", 0, "", "/a", "b?c"},
    {"/v1.0/a/q/m#f", 0, "", "/v1.0/a/q/m#f", NULL}, /* '#' stays part of an id */
    {"/v1.0/\xff", 0, "", "/v1.0/\xff", NULL},
    {"http://burrow.service/v1.0/a/q/m", 0, "burrow.service", "/v1.0/a/q/m", NULL},
    {"HTTP://H:8080/v1.0/a/q?limit=2", 0, "H:8080", "/v1.0/a/q", "limit=2"},
    {"https://[::1]:80/v1.0", 0, "[::1]:80", "/v1.0", NULL},
    {"http://h", 0, "h", "/", NULL},
    {"http://h?limit=1", 0, "h", "/", "limit=1"},
    {"http://h?", 0, "h", "/", ""},
    {"http:///v1.0", -PROTO_EBADTARGET, "", "", NULL},
    {"http://", -PROTO_EBADTARGET, "", "", NULL},
    {"http://u:p@h/v1.0", -PROTO_EBADTARGET, "", "", NULL},
    {"http://h#x", -PROTO_EBADTARGET, "", "", NULL},
    {"ftp://h/v1.0", -PROTO_EBADTARGET, "", "", NULL},
    {"http:/h/v1.0", -PROTO_EBADTARGET, "", "", NULL},
    {"httpx://h/v1.0", -PROTO_EBADTARGET, "", "", NULL},
    {"*", -PROTO_EBADTARGET, "", "", NULL},
    {"127.0.0.1:80", -PROTO_EBADTARGET, "", "", NULL},
    {"v1.0/a", -PROTO_EBADTARGET, "", "", NULL},
    {"", -PROTO_EBADTARGET, "", "", NULL},
    {"/v1.0/a b", -PROTO_EBADTARGET, "", "", NULL},
    {"/v1.0/a\tb", -PROTO_EBADTARGET, "", "", NULL},
    {"/v1.0/a\x7f", -PROTO_EBADTARGET, "", "", NULL},
    {"/v1.0/a?x=\x01", -PROTO_EBADTARGET, "", "", NULL},
};

Test(burrow, parse_target_table)
{
    for (size_t i = 0; i < sizeof(target_cases) / sizeof(target_cases[0]); i++) {
        const struct target_case *c = &target_cases[i];
        struct proto_burrow_target t;
        int rc = proto_burrow_parse_target(c->t, strlen(c->t), &t);

        cr_assert_eq(rc, c->rc, "case %zu %s: rc %d want %d", i, c->t, rc, c->rc);
        if (rc != 0)
            continue;
        cr_assert_eq(t.authority.len, strlen(c->authority), "case %zu %s", i, c->t);
        cr_assert(memcmp(t.authority.ptr ? t.authority.ptr : "", c->authority, t.authority.len) ==
                      0,
                  "case %zu", i);
        cr_assert_eq(t.path.len, strlen(c->path), "case %zu %s", i, c->t);
        cr_assert(memcmp(t.path.ptr, c->path, t.path.len) == 0, "case %zu", i);
        if (c->query == NULL) {
            cr_assert_null(t.query.ptr, "case %zu %s", i, c->t);
        } else {
            cr_assert_not_null(t.query.ptr, "case %zu %s", i, c->t);
            cr_assert_eq(t.query.len, strlen(c->query), "case %zu %s", i, c->t);
            cr_assert(memcmp(t.query.ptr, c->query, t.query.len) == 0, "case %zu", i);
        }
    }
}

Test(burrow, parse_target_nul)
{
    /* A raw NUL anywhere is refused, in the path or the query: a C string
     * would stop there and the rest would be lost silently. */
    static const char path[] = "/v1.0/a/q/m\0/evil", query[] = "/v1.0/a/q?limit=1\0&limit=5";
    struct proto_burrow_target t;

    cr_assert_eq(proto_burrow_parse_target(path, sizeof(path) - 1, &t), -PROTO_EBADTARGET);
    cr_assert_eq(proto_burrow_parse_target(query, sizeof(query) - 1, &t), -PROTO_EBADTARGET);
}

struct detail_case {
    enum proto_burrow_level level;
    enum proto_burrow_detail d;
    bool ok;
};

static const struct detail_case detail_cases[] = {
    {PROTO_BURROW_ACCOUNTS, PROTO_DETAIL_DEFAULT, true},
    {PROTO_BURROW_ACCOUNTS, PROTO_DETAIL_NONE, true},
    {PROTO_BURROW_ACCOUNTS, PROTO_DETAIL_ID, true},
    {PROTO_BURROW_ACCOUNTS, PROTO_DETAIL_ALL, true},
    {PROTO_BURROW_ACCOUNTS, PROTO_DETAIL_ATTRIBUTES, false},
    {PROTO_BURROW_ACCOUNTS, PROTO_DETAIL_BODY, false},
    {PROTO_BURROW_QUEUES, PROTO_DETAIL_ID, true},
    {PROTO_BURROW_QUEUES, PROTO_DETAIL_ATTRIBUTES, false},
    {PROTO_BURROW_QUEUES, PROTO_DETAIL_BODY, false},
    {PROTO_BURROW_MESSAGES, PROTO_DETAIL_NONE, true},
    {PROTO_BURROW_MESSAGES, PROTO_DETAIL_ID, true},
    {PROTO_BURROW_MESSAGES, PROTO_DETAIL_ATTRIBUTES, true},
    {PROTO_BURROW_MESSAGES, PROTO_DETAIL_BODY, true},
    {PROTO_BURROW_MESSAGES, PROTO_DETAIL_ALL, true},
    {PROTO_BURROW_MESSAGE, PROTO_DETAIL_BODY, true},
    {PROTO_BURROW_MESSAGE, PROTO_DETAIL_ATTRIBUTES, true},
};

Test(burrow, detail_per_level)
{
    for (size_t i = 0; i < sizeof(detail_cases) / sizeof(detail_cases[0]); i++)
        cr_assert_eq(proto_burrow_detail_ok(detail_cases[i].level, detail_cases[i].d),
                     detail_cases[i].ok, "case %zu", i);
}

struct dec_case {
    const char *in;
    bool allow_nul;
    long rc;
    const char *out;
    size_t outlen;
};

static const struct dec_case dec_cases[] = {
    {"abc", false, 3, "abc", 3},
    {"a%20b", false, 3, "a b", 3},
    {"a+b", false, 3, "a+b", 3},
    {"%2f%2F", false, 2, "//", 2},
    {"%00", false, -PROTO_EBADENC, "", 0},
    {"%00", true, 1, "\0", 1},
    {"%", false, -PROTO_EBADENC, "", 0},
    {"%4", false, -PROTO_EBADENC, "", 0},
    {"%4g", false, -PROTO_EBADENC, "", 0},
    {"%e2%82%ac", false, 3, "\xe2\x82\xac", 3},
    {"", false, 0, "", 0},
};

Test(burrow, pct_decode_table)
{
    for (size_t i = 0; i < sizeof(dec_cases) / sizeof(dec_cases[0]); i++) {
        char out[16];
        long rc = proto_pct_decode(dec_cases[i].in, strlen(dec_cases[i].in), out, sizeof(out),
                                   dec_cases[i].allow_nul);

        cr_assert_eq(rc, dec_cases[i].rc, "case %zu: %ld", i, rc);
        if (rc >= 0)
            cr_assert(memcmp(out, dec_cases[i].out, dec_cases[i].outlen) == 0, "case %zu", i);
    }
    char small[2];
    cr_assert_eq(proto_pct_decode("abc", 3, small, sizeof(small), false), -PROTO_ETOOLONG);
}

Test(burrow, pct_encode_roundtrip)
{
    char all[256], enc[3 * 256 + 1], dec[256];
    long n, m;

    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    n = proto_pct_encode(all, sizeof(all), enc, sizeof(enc));
    cr_assert_gt(n, 0);
    cr_assert_eq(strlen(enc), (size_t)n);
    cr_assert_null(strchr(enc, '/'));
    cr_assert_null(strchr(enc, ' '));
    m = proto_pct_decode(enc, (size_t)n, dec, sizeof(dec), true);
    cr_assert_eq(m, 256);
    cr_assert(memcmp(all, dec, 256) == 0);

    cr_assert_eq(proto_pct_encode("a b/c~", 6, enc, sizeof(enc)), 10);
    cr_assert_str_eq(enc, "a%20b%2Fc~");
    /* Exactly enough room (including the NUL), and one byte less. */
    cr_assert_eq(proto_pct_encode("a b", 3, enc, 6), 5);
    cr_assert_eq(proto_pct_encode("a b", 3, enc, 5), -PROTO_ETOOLONG);
    cr_assert_eq(proto_pct_encode("", 0, enc, 1), 0);
    cr_assert_eq(proto_pct_encode("", 0, enc, 0), -PROTO_ETOOLONG);
}

Test(burrow, strerror_texts)
{
    cr_assert_str_eq(proto_strerror(-PROTO_ENOTFOUND), "not a Burrow route");
    cr_assert_str_eq(proto_strerror(PROTO_EBADENC), "bad percent-encoding");
    cr_assert_str_neq(proto_strerror(-PROTO_ETOOLONG), "unknown error");
    cr_assert_str_neq(proto_strerror(-PROTO_EDOTSEG), "unknown error");
    cr_assert_str_neq(proto_strerror(-PROTO_ETOOMANY), "unknown error");
    cr_assert_str_neq(proto_strerror(-PROTO_EBADTARGET), "unknown error");
    cr_assert_str_eq(proto_strerror(123456), "unknown error");
}
