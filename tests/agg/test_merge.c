/* SPDX-License-Identifier: ISC */
/* tests/agg/test_merge: the (stamp, id) order, dedup, global limit, the
 * bounds of truncated windows and of the backends' clocks, marker window,
 * detail shaping and status rules of the aggregator's merge, from literal
 * backend answers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shed/merge.h"

struct in {
    int status;
    const char *body;
    int64_t asked;
    int64_t clock; /* Shed-Clock, 0: none */
};

#define MAXL 8

static size_t
load(struct shed_merge_list *lists, const struct in *in, size_t n)
{
    memset(lists, 0, sizeof(*lists) * MAXL);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(shed_merge_parse(&lists[i], in[i].status, in[i].body,
                                      in[i].body ? strlen(in[i].body) : 0, in[i].asked),
                     0, "list %zu", i);
        lists[i].clock = in[i].clock;
    }
    return n;
}

static void
clear(struct shed_merge_list *lists, size_t n)
{
    for (size_t i = 0; i < n; i++)
        shed_merge_list_clear(&lists[i]);
}

/* Ids of the picks joined by ',' */
static void
ids(const struct shed_merge_list *lists, const struct shed_merge_pick *p, long n, char *out)
{
    out[0] = '\0';
    for (long i = 0; i < n; i++) {
        const struct shed_merge_item *it = &lists[p[i].list].items[p[i].item];

        if (i)
            strcat(out, ",");
        strncat(out, it->id, it->idlen);
    }
}

Test(merge, parse_shapes)
{
    struct shed_merge_list l = {0};

    cr_assert_eq(shed_merge_parse(&l, 200, "[\"a\",\"b\"]", 9, 0), 0);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.items[1].idlen, 1);
    cr_assert_eq(l.items[1].id[0], 'b');
    cr_assert_eq(shed_merge_parse(&l, 200, "[{\"id\":\"m\",\"ttl\":0}]", 20, 1), 0);
    cr_assert_eq(l.n, 1);
    cr_assert(l.truncated, "asked 1, got 1: more may follow");
    cr_assert_eq(shed_merge_parse(&l, 404, "Queue not found", 15, 0), 0);
    cr_assert_eq(l.n, 0);
    cr_assert_eq(l.status, 404);
    cr_assert_eq(shed_merge_parse(&l, 200, "{\"a\":1}", 7, 0), -EBADMSG);
    cr_assert_eq(shed_merge_parse(&l, 200, "[1]", 3, 0), -EBADMSG);
    cr_assert_eq(shed_merge_parse(&l, 200, "[{\"x\":1}]", 9, 0), -EBADMSG);
    cr_assert_eq(shed_merge_parse(&l, 200, "not json", 8, 0), -EBADMSG);
    cr_assert_eq(l.n, 0);
    shed_merge_list_clear(&l);
    shed_merge_list_clear(&l);
}

/* A message object with a stamp, as burrowd writes it with shed_stamps=1. */
#define MS(id, st) "{\"id\":\"" id "\",\"ttl\":0,\"hide\":0,\"stamp\":" #st "}"

struct sorted_case {
    struct in in[4];
    size_t n;
    int64_t limit;
    bool horizon;
    const char *drop; /* "list:item" pairs, e.g. "1:0" */
    const char *want;
    bool more, want_more;
};

Test(merge, sorted_table)
{
    static const struct sorted_case cases[] = {
        /* interleaved by stamp across backends */
        {{{200, "[" MS("a", 1) "," MS("c", 3) "]", 0, 0},
          {200, "[" MS("b", 2) "," MS("d", 4) "]", 0, 0}},
         2,
         0,
         false,
         NULL,
         "a,b,c,d",
         false,
         false},
        /* 404 = empty */
        {{{404, "Queue not found", 0, 0}, {200, "[" MS("c", 1) "]", 0, 0}},
         2,
         0,
         false,
         NULL,
         "c",
         false,
         false},
        /* global limit; nothing past the first end of a truncated window */
        {{{200, "[" MS("a", 1) "," MS("c", 3) "]", 2, 0},
          {200, "[" MS("b", 2) "," MS("d", 4) "," MS("e", 5) "]", 3, 0}},
         2,
         3,
         false,
         NULL,
         "a,b,c",
         true,
         false},
        /* short only because a window ran out: ask for more */
        {{{200, "[" MS("a", 1) "," MS("c", 3) "]", 2, 0},
          {200, "[" MS("b", 2) "," MS("d", 4) "]", 5, 0}},
         2,
         5,
         false,
         NULL,
         "a,b,c",
         true,
         true},
        /* a repeated id: the first in key order */
        {{{200, "[" MS("a", 1) "," MS("x", 5) "]", 0, 0},
          {200, "[" MS("x", 2) "," MS("c", 3) "]", 0, 0}},
         2,
         0,
         false,
         NULL,
         "a,x,c",
         false,
         false},
        /* a dropped (losing) copy is skipped: the other copy's place */
        {{{200, "[" MS("a", 1) "," MS("x", 5) "]", 0, 0},
          {200, "[" MS("x", 2) "," MS("c", 3) "]", 0, 0}},
         2,
         0,
         false,
         "1:0",
         "a,c,x",
         false,
         false},
        /* limit exactly reached: more may follow */
        {{{200, "[" MS("a", 1) "]", 0, 0}, {200, "[" MS("b", 2) "]", 0, 0}},
         2,
         2,
         false,
         NULL,
         "a,b",
         true,
         false},
        /* everything empty */
        {{{404, "", 0, 0}, {204, "", 0, 0}, {0, "", 0, 0}}, 3, 10, false, NULL, "", false, false},
        /* equal stamps: the id decides */
        {{{200, "[" MS("b", 7) "]", 0, 0}, {200, "[" MS("a", 7) "," MS("ab", 7) "]", 0, 0}},
         2,
         0,
         false,
         NULL,
         "a,ab,b",
         false,
         false},
        /* the horizon: nothing stamped after the smallest clock */
        {{{200, "[" MS("a", 1) "," MS("c", 6) "]", 0, 10},
          {200, "[" MS("b", 2) "]", 0, 4},
          {404, "Queue not found", 0, 1},
          {0, "", 0, 0}},
         4,
         0,
         true,
         NULL,
         "a",
         true,
         false},
        {{{200, "[" MS("a", 1) "," MS("c", 6) "]", 0, 10}, {200, "[" MS("b", 2) "]", 0, 4}},
         2,
         0,
         true,
         NULL,
         "a,b",
         true,
         false},
    };

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct shed_merge_list lists[MAXL];
        struct shed_merge_pick picks[32];
        struct shed_merge_cut cut;
        char got[256];
        size_t n = load(lists, cases[c].in, cases[c].n);
        long np;

        if (cases[c].drop != NULL) {
            unsigned li, ii;

            cr_assert_eq(sscanf(cases[c].drop, "%u:%u", &li, &ii), 2);
            lists[li].items[ii].drop = true;
        }
        np = shed_merge_sorted(lists, n, cases[c].limit, cases[c].horizon, picks, 32, &cut);
        cr_assert_geq(np, 0);
        ids(lists, picks, np, got);
        cr_assert_str_eq(got, cases[c].want, "case %zu", c);
        cr_assert_eq(cut.more, cases[c].more, "case %zu more", c);
        cr_assert_eq(cut.want, cases[c].want_more, "case %zu want", c);
        clear(lists, n);
    }
}

Test(merge, key_order_and_stamp_of)
{
    int64_t st = 0;

    cr_assert_lt(proto_burrow_key_cmp(1, "b", 1, 2, "a", 1), 0);
    cr_assert_lt(proto_burrow_key_cmp(2, "a", 1, 2, "b", 1), 0);
    cr_assert_lt(proto_burrow_key_cmp(2, "a", 1, 2, "ab", 2), 0);
    cr_assert_eq(proto_burrow_key_cmp(2, "ab", 2, 2, "ab", 2), 0);
    cr_assert_gt(proto_burrow_key_cmp(3, "a", 1, 2, "z", 1), 0);
    cr_assert_eq(
        shed_merge_stamp_of(MS("m", 1712345678901234), strlen(MS("m", 1712345678901234)), &st), 0);
    cr_assert_eq(st, 1712345678901234);
    cr_assert_eq(shed_merge_stamp_of("{\"id\":\"m\",\"ttl\":0}", 19, &st), -EBADMSG);
    cr_assert_eq(shed_merge_stamp_of("{\"id\":\"m\",\"stamp\":-1}", 23, &st), -EBADMSG);
    cr_assert_eq(shed_merge_stamp_of("{\"id\":\"m\",\"stamp\":1.5}", 24, &st), -EBADMSG);
    cr_assert_eq(shed_merge_stamp_of("[\"m\"]", 5, &st), -EBADMSG);
}

struct window_case {
    const char *marker;
    int64_t limit;
    const char *want;
};

Test(merge, window_table)
{
    /* an account or queue sorts by its smallest stamp anywhere: a2 was
     * created first on the second backend */
    static const struct in in[] = {
        {200, "[{\"id\":\"a1\",\"stamp\":4},{\"id\":\"a2\",\"stamp\":5}]", 0, 0},
        {200, "[{\"id\":\"a2\",\"stamp\":2},{\"id\":\"a3\",\"stamp\":3}]", 0, 0},
        {404, "Account not found", 0, 0}};
    static const struct window_case cases[] = {
        {NULL, 0, "a2,a3,a1"}, {"a2", 0, "a3,a1"}, {"a3", 1, "a1"}, {"unknown", 0, "a2,a3,a1"},
        {"a1", 0, ""},         {NULL, 2, "a2,a3"}, {"a2", 1, "a3"}, {NULL, -1, "a2,a3,a1"},
    };

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct shed_merge_list lists[MAXL];
        struct shed_merge_pick picks[32];
        char got[256];
        size_t n = load(lists, in, 3);
        const char *m = cases[c].marker;
        long np = shed_merge_window(lists, n, m, m ? strlen(m) : 0, cases[c].limit, picks, 32);

        cr_assert_geq(np, 0);
        ids(lists, picks, np, got);
        cr_assert_str_eq(got, cases[c].want, "case %zu", c);
        clear(lists, n);
    }
}

struct render_case {
    enum proto_burrow_level level;
    enum proto_burrow_detail detail;
    int status;
    const char *body;
};

Test(merge, render_table)
{
    static const struct in msgs[] = {
        {200, "[{\"id\":\"m1\",\"ttl\":5,\"hide\":0,\"stamp\":9,\"body\":\"b1\"}]", 0, 0}};
    static const struct in qs[] = {
        {200, "[{\"id\":\"q1\",\"stamp\":1},{\"id\":\"q2\",\"stamp\":2}]", 0, 0}};
    static const struct render_case mcases[] = {
        {PROTO_BURROW_MESSAGES, PROTO_DETAIL_ID, 200, "[\"m1\"]"},
        {PROTO_BURROW_MESSAGES, PROTO_DETAIL_BODY, 200, "[\"b1\"]"},
        {PROTO_BURROW_MESSAGES, PROTO_DETAIL_ALL, 200,
         "[{\"id\":\"m1\",\"ttl\":5,\"hide\":0,\"body\":\"b1\"}]"},
        {PROTO_BURROW_MESSAGES, PROTO_DETAIL_ATTRIBUTES, 200,
         "[{\"id\":\"m1\",\"ttl\":5,\"hide\":0}]"},
        {PROTO_BURROW_MESSAGES, PROTO_DETAIL_NONE, 204, ""},
    };
    static const struct render_case qcases[] = {
        {PROTO_BURROW_QUEUES, PROTO_DETAIL_ID, 200, "[\"q1\",\"q2\"]"},
        {PROTO_BURROW_QUEUES, PROTO_DETAIL_ALL, 200, "[{\"id\":\"q1\"},{\"id\":\"q2\"}]"},
        {PROTO_BURROW_QUEUES, PROTO_DETAIL_NONE, 204, ""},
    };

    for (int set = 0; set < 2; set++) {
        const struct render_case *cs = set ? qcases : mcases;
        size_t nc = set ? 3 : 5;

        for (size_t c = 0; c < nc; c++) {
            struct shed_merge_list lists[MAXL];
            struct shed_merge_pick picks[8];
            struct shed_merge_out out;
            struct shed_merge_cut cut;
            size_t n = load(lists, set ? qs : msgs, 1);
            long np = shed_merge_sorted(lists, n, 0, false, picks, 8, &cut);

            cr_assert_eq(
                shed_merge_render(cs[c].level, cs[c].detail, lists, picks, (size_t)np, "nf", &out),
                0);
            cr_assert_eq(out.status, cs[c].status, "set %d case %zu", set, c);
            cr_assert_eq(out.len, strlen(cs[c].body), "set %d case %zu: %.*s", set, c, (int)out.len,
                         out.body ? out.body : "");
            if (out.len)
                cr_assert_eq(memcmp(out.body, cs[c].body, out.len), 0, "got %.*s", (int)out.len,
                             out.body);
            shed_merge_out_clear(&out);
            clear(lists, n);
        }
    }
}

/* Bodies that are not UTF-8 text come as "body_base64url" (proto/body.h):
 * detail=all keeps the member (the stamp goes), detail=body wraps the value
 * in an object so a page never mixes it up with a text body. */
Test(merge, base64url_bodies_pass_through)
{
    static const struct in in[] = {
        {200, "[{\"id\":\"t\",\"ttl\":0,\"hide\":0,\"stamp\":1,\"body\":\"text\"}]", 0, 0},
        {200, "[{\"id\":\"b\",\"ttl\":0,\"hide\":0,\"stamp\":2,\"body_base64url\":\"AP8\"}]", 0,
         0}};
    static const struct render_case cs[] = {
        {PROTO_BURROW_MESSAGES, PROTO_DETAIL_BODY, 200, "[\"text\",{\"body_base64url\":\"AP8\"}]"},
        {PROTO_BURROW_MESSAGES, PROTO_DETAIL_ALL, 200,
         "[{\"id\":\"t\",\"ttl\":0,\"hide\":0,\"body\":\"text\"},"
         "{\"id\":\"b\",\"ttl\":0,\"hide\":0,\"body_base64url\":\"AP8\"}]"},
        {PROTO_BURROW_MESSAGES, PROTO_DETAIL_ID, 200, "[\"t\",\"b\"]"},
    };

    for (size_t c = 0; c < sizeof(cs) / sizeof(cs[0]); c++) {
        struct shed_merge_list lists[MAXL];
        struct shed_merge_pick picks[8];
        struct shed_merge_out out;
        struct shed_merge_cut cut;
        size_t n = load(lists, in, 2);
        long np = shed_merge_sorted(lists, n, 0, false, picks, 8, &cut);

        cr_assert_eq(np, 2);
        cr_assert_eq(lists[1].items[0].body.len, 0);
        cr_assert_eq(lists[1].items[0].body64.len, 5, "the JSON string token, quotes included");
        cr_assert_eq(
            shed_merge_render(cs[c].level, cs[c].detail, lists, picks, (size_t)np, "nf", &out), 0);
        cr_assert_eq(out.status, cs[c].status, "case %zu", c);
        cr_assert_eq(out.len, strlen(cs[c].body), "case %zu: %.*s", c, (int)out.len, out.body);
        cr_assert_eq(memcmp(out.body, cs[c].body, out.len), 0, "got %.*s", (int)out.len, out.body);
        shed_merge_out_clear(&out);
        clear(lists, n);
    }
}

Test(merge, scanner_shapes_and_escapes)
{
    static const char pretty[] = "[\n  {\n    \"id\": \"a\\u00e9\\\"b\",\n    \"ttl\": 0,\n"
                                 "    \"hide\": 0,\n    \"body\": \"x,]}\"\n  },\n  \"q\\/1\"\n]\n";
    static const char *bad[] = {
        "[",
        "[\"a\"",
        "[\"a\",]",
        "[{\"id\":1}]",
        "[{\"ttl\":1}]",
        "[{\"id\":\"a\"} x]",
        "[\"a\" \"b\"]",
        "[{\"id\":\"a\",\"body\":[1,2}]",
        "[\"\\u12\"]",
        "[\"a\"]x",
        "{\"id\":\"a\"}",
        "[nul]x",
        "",
        "[\"a\nb\"]",                          /* a raw control byte in a string */
        "[{\"id\":\"a\",\"body\":\"x\x1f\"}]", /* ... in a body */
        "[\"ab\\",                             /* a backslash at the very end */
        "[\"ab",                               /* no closing quote */
    };
    struct shed_merge_list l = {0};
    struct shed_merge_pick picks[2] = {{0, 0}, {0, 1}};
    struct shed_merge_out out;

    cr_assert_eq(shed_merge_parse(&l, 200, pretty, strlen(pretty), 0), 0);
    cr_assert_eq(l.n, 2);
    cr_assert_eq(l.items[0].idlen, 5);
    cr_assert_eq(memcmp(l.items[0].id, "a\xc3\xa9\"b", 5), 0);
    cr_assert_eq(l.items[1].idlen, 3);
    cr_assert_eq(memcmp(l.items[1].id, "q/1", 3), 0);
    cr_assert_eq(l.items[0].body.len, 6, "body span is the JSON string token");
    cr_assert_eq(
        shed_merge_render(PROTO_BURROW_MESSAGES, PROTO_DETAIL_BODY, &l, picks, 1, "nf", &out), 0);
    cr_assert_eq(out.len, 8);
    cr_assert_eq(memcmp(out.body, "[\"x,]}\"]", 8), 0);
    shed_merge_out_clear(&out);
    cr_assert_eq(
        shed_merge_render(PROTO_BURROW_QUEUES, PROTO_DETAIL_ALL, &l, picks + 1, 1, "nf", &out), 0);
    cr_assert_eq(out.len, 15, "%.*s", (int)out.len, out.body);
    cr_assert_eq(memcmp(out.body, "[{\"id\":\"q\\/1\"}]", 15), 0);
    shed_merge_out_clear(&out);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(shed_merge_parse(&l, 200, bad[i], strlen(bad[i]), 0), -EBADMSG, "%s", bad[i]);
    cr_assert_eq(l.n, 0);
    cr_assert_eq(shed_merge_parse(&l, 200, " [ ] ", 5, 3), 0);
    cr_assert_eq(l.n, 0);
    cr_assert(!l.truncated);
    shed_merge_list_clear(&l);
}

Test(merge, render_empty_is_404)
{
    struct shed_merge_out out;

    cr_assert_eq(shed_merge_render(PROTO_BURROW_MESSAGES, PROTO_DETAIL_ALL, NULL, NULL, 0,
                                   "Queue not found", &out),
                 0);
    cr_assert_eq(out.status, 404);
    cr_assert_eq(out.len, 15);
    cr_assert_str_eq(out.ctype, "application/octet-stream");
    shed_merge_out_clear(&out);
}

Test(merge, details_and_defaults)
{
    cr_assert_eq(shed_merge_default_detail(PROTO_BURROW_MESSAGES, true), PROTO_DETAIL_ALL);
    cr_assert_eq(shed_merge_default_detail(PROTO_BURROW_QUEUES, true), PROTO_DETAIL_ID);
    cr_assert_eq(shed_merge_default_detail(PROTO_BURROW_MESSAGES, false), PROTO_DETAIL_NONE);
    cr_assert_eq(shed_merge_backend_detail(PROTO_BURROW_MESSAGES, PROTO_DETAIL_NONE),
                 PROTO_DETAIL_ATTRIBUTES);
    cr_assert_eq(shed_merge_backend_detail(PROTO_BURROW_MESSAGES, PROTO_DETAIL_ID),
                 PROTO_DETAIL_ATTRIBUTES);
    cr_assert_eq(shed_merge_backend_detail(PROTO_BURROW_MESSAGES, PROTO_DETAIL_BODY),
                 PROTO_DETAIL_ALL);
    cr_assert_eq(shed_merge_backend_detail(PROTO_BURROW_MESSAGES, PROTO_DETAIL_ATTRIBUTES),
                 PROTO_DETAIL_ATTRIBUTES);
    cr_assert_eq(shed_merge_backend_detail(PROTO_BURROW_ACCOUNTS, PROTO_DETAIL_ID),
                 PROTO_DETAIL_ALL);
}

Test(merge, set_grows)
{
    struct shed_merge_set s;
    static char keys[5000][8];

    cr_assert_eq(shed_merge_set_init(&s, 1), 0);
    for (int i = 0; i < 5000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        cr_assert_eq(shed_merge_set_add(&s, keys[i], strlen(keys[i])), 1);
    }
    for (int i = 0; i < 5000; i++)
        cr_assert_eq(shed_merge_set_add(&s, keys[i], strlen(keys[i])), 0);
    cr_assert(shed_merge_set_has(&s, "k4999", 5));
    cr_assert(!shed_merge_set_has(&s, "k5000", 5));
    cr_assert_eq(shed_merge_set_add(&s, "", 0), 1);
    cr_assert(shed_merge_set_has(&s, "", 0));
    shed_merge_set_free(&s);
}
