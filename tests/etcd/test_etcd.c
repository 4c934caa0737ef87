/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of shed/etcd's pure parts: the gateway's base64, the member
 * record, key splitting and the view that turns etcd's keys (one per member
 * and shed that heard it) into registry entries.
 */
#include "shed/etcd.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct proto_sync_entry
rec(uint64_t inc, enum proto_sync_state st, const char *url)
{
    struct proto_sync_entry e;
    memset(&e, 0, sizeof(e));
    e.incarnation = inc;
    e.state = st;
    e.weight = 1;
    snprintf(e.url, sizeof(e.url), "%s", url);
    return e;
}

Test(etcd, b64_round_trips_and_refuses_junk)
{
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar", "/shed/a/"};
    static const char *want[] = {"",         "Zg==",     "Zm8=",     "Zm9v",
                                 "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy", "L3NoZWQvYS8="};
    char out[64], back[64];
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        long n = shed_etcd_b64_encode(in[i], strlen(in[i]), out, sizeof(out));
        cr_assert_eq(n, (long)strlen(want[i]));
        cr_assert_str_eq(out, want[i]);
        long m = shed_etcd_b64_decode(out, (size_t)n, back, sizeof(back));
        cr_assert_eq(m, (long)strlen(in[i]));
        cr_assert_eq(memcmp(back, in[i], (size_t)m), 0);
    }
    cr_assert_eq(shed_etcd_b64_encode("foo", 3, out, 4), -ERANGE);
    cr_assert_eq(shed_etcd_b64_decode("Zm9", 3, back, sizeof(back)), -EINVAL);
    cr_assert_eq(shed_etcd_b64_decode("Z=9v", 4, back, sizeof(back)), -EINVAL);
    cr_assert_eq(shed_etcd_b64_decode("Zm9v", 4, back, 2), -ERANGE);
}

Test(etcd, record_round_trips)
{
    struct proto_sync_entry e = rec(1732280000123ull, PROTO_SYNC_DRAINING, "http://10.0.1.7:8080");
    snprintf(e.zone, sizeof(e.zone), "rack1");
    e.weight = 7;
    char *s = shed_etcd_value_encode(&e, "127.0.0.1:8001");
    cr_assert_not_null(s);
    struct proto_sync_entry d;
    memset(&d, 0, sizeof(d));
    cr_assert_eq(shed_etcd_value_decode(s, strlen(s), &d), 0);
    cr_assert_eq(d.incarnation, e.incarnation);
    cr_assert_eq(d.state, PROTO_SYNC_DRAINING);
    cr_assert_eq(d.weight, 7);
    cr_assert_str_eq(d.url, e.url);
    cr_assert_str_eq(d.zone, "rack1");
    free(s);
    static const char *bad[] = {"",
                                "[]",
                                "{\"inc\":1}",
                                "{\"inc\":-1,\"state\":\"up\",\"url\":\"x\",\"weight\":1}",
                                "{\"inc\":1,\"state\":\"maybe\",\"url\":\"x\",\"weight\":1}",
                                "{\"inc\":1,\"state\":\"up\",\"url\":\"x\",\"weight\":0}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(shed_etcd_value_decode(bad[i], strlen(bad[i]), &d), -EINVAL, "%s", bad[i]);
}

Test(etcd, key_split)
{
    char s[64], id[256];
    const char *k = "burrow/b7/127.0.0.1:8001";
    cr_assert_eq(shed_etcd_key_split(k, strlen(k), s, sizeof(s), id, sizeof(id)), 0);
    cr_assert_str_eq(s, "burrow");
    cr_assert_str_eq(id, "b7");
    static const char *bad[] = {"burrow", "burrow/b7", "burrow/b7/",
                                "/b7/x",  "burrow//x", "burrow/b7/x/y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(shed_etcd_key_split(bad[i], strlen(bad[i]), s, sizeof(s), id, sizeof(id)),
                     -EINVAL, "%s", bad[i]);
}

Test(etcd, view_member_is_up_while_any_shed_holds_a_key)
{
    struct shed_etcd_view *v = shed_etcd_view_create();
    struct proto_sync_msg m;
    struct proto_sync_entry e = rec(5, PROTO_SYNC_UP, "http://127.0.0.1:9001");
    proto_sync_msg_init(&m);

    cr_assert_eq(shed_etcd_view_put(v, "burrow/b1/s1", &e, 10, &m), 0);
    cr_assert_eq(shed_etcd_view_put(v, "burrow/b1/s2", &e, 11, &m), 0);
    cr_assert_eq(shed_etcd_view_put(v, "burrow/b10/s1", &e, 12, &m), 0);
    cr_assert_eq(m.nentries, 3);
    cr_assert_str_eq(m.entries[0].service, "burrow");
    cr_assert_str_eq(m.entries[0].id, "b1");
    cr_assert_eq(m.entries[0].state, PROTO_SYNC_UP);
    cr_assert_eq(shed_etcd_view_size(v), 3);
    proto_sync_msg_free(&m);

    /* One of two sheds' keys goes: still up. */
    proto_sync_msg_init(&m);
    shed_etcd_view_delete(v, "burrow/b1/s1", &m);
    cr_assert_eq(m.nentries, 1);
    cr_assert_eq(m.entries[0].state, PROTO_SYNC_UP);
    proto_sync_msg_free(&m);
    /* The last: down (b10 shares the prefix "burrow/b1" but is another member). */
    proto_sync_msg_init(&m);
    shed_etcd_view_delete(v, "burrow/b1/s2", &m);
    cr_assert_eq(m.nentries, 1);
    cr_assert_str_eq(m.entries[0].id, "b1");
    cr_assert_eq(m.entries[0].state, PROTO_SYNC_DOWN);
    proto_sync_msg_free(&m);
    /* Unknown keys change nothing. */
    proto_sync_msg_init(&m);
    shed_etcd_view_delete(v, "burrow/b1/s2", &m);
    cr_assert_eq(m.nentries, 0);
    shed_etcd_view_export(v, &m);
    cr_assert_eq(m.nentries, 1);
    cr_assert_str_eq(m.entries[0].id, "b10");
    proto_sync_msg_free(&m);
    shed_etcd_view_destroy(v);
}

Test(etcd, view_highest_incarnation_and_gone_win)
{
    struct shed_etcd_view *v = shed_etcd_view_create();
    struct proto_sync_msg m;
    struct proto_sync_entry old = rec(5, PROTO_SYNC_UP, "http://127.0.0.1:9001");
    struct proto_sync_entry new = rec(6, PROTO_SYNC_UP, "http://127.0.0.1:9002");
    struct proto_sync_entry gone = rec(6, PROTO_SYNC_GONE, "http://127.0.0.1:9002");
    proto_sync_msg_init(&m);
    shed_etcd_view_put(v, "burrow/b1/s2", &new, 20, &m);
    shed_etcd_view_put(v, "burrow/b1/s1", &old, 21, &m); /* later but older incarnation */
    cr_assert_eq(m.entries[1].incarnation, 6);
    cr_assert_str_eq(m.entries[1].url, "http://127.0.0.1:9002");
    shed_etcd_view_put(v, "burrow/b1/s3", &gone, 22, &m);
    cr_assert_eq(m.entries[2].state, PROTO_SYNC_GONE);
    proto_sync_msg_free(&m);
    proto_sync_msg_init(&m);
    shed_etcd_view_export(v, &m);
    cr_assert_eq(m.nentries, 0); /* gone members are not refreshed */
    /* Keys deleted after "gone": what is left is older or gone (the registry
     * keeps "gone" final for incarnation 6). */
    shed_etcd_view_delete(v, "burrow/b1/s3", &m);
    shed_etcd_view_delete(v, "burrow/b1/s2", &m);
    shed_etcd_view_delete(v, "burrow/b1/s1", &m);
    cr_assert_eq(m.nentries, 3);
    cr_assert_eq(m.entries[2].state, PROTO_SYNC_DOWN); /* only s1's incarnation 5 was left */
    proto_sync_msg_free(&m);
    shed_etcd_view_destroy(v);
}

Test(etcd, view_replace_reports_members_that_went)
{
    struct shed_etcd_view *v = shed_etcd_view_create(), *next = shed_etcd_view_create();
    struct proto_sync_msg m;
    struct proto_sync_entry e = rec(1, PROTO_SYNC_UP, "http://127.0.0.1:9001");
    proto_sync_msg_init(&m);
    shed_etcd_view_put(v, "burrow/a/s1", &e, 1, &m);
    shed_etcd_view_put(v, "burrow/b/s1", &e, 2, &m);
    shed_etcd_view_put(next, "burrow/b/s2", &e, 9, &m);
    shed_etcd_view_put(next, "burrow/c/s1", &e, 9, &m);
    proto_sync_msg_free(&m);
    proto_sync_msg_init(&m);
    cr_assert_eq(shed_etcd_view_replace(v, next, &m), 0);
    cr_assert_eq(m.nentries, 3);
    cr_assert_str_eq(m.entries[0].id, "a");
    cr_assert_eq(m.entries[0].state, PROTO_SYNC_DOWN);
    cr_assert_str_eq(m.entries[1].id, "b");
    cr_assert_eq(m.entries[1].state, PROTO_SYNC_UP);
    cr_assert_str_eq(m.entries[2].id, "c");
    cr_assert_eq(shed_etcd_view_size(v), 2);
    proto_sync_msg_free(&m);
    shed_etcd_view_destroy(v);
}

Test(etcd, view_downs_come_in_pages_of_a_message)
{
    /* More members went than one sync message holds: every one of them
     * comes out "down", in pages, none twice (the reader applies each
     * full page before the next). */
    enum { N = PROTO_SYNC_MAX_ENTRIES + 100 };
    struct shed_etcd_view *v = shed_etcd_view_create(), *next = shed_etcd_view_create();
    struct proto_sync_msg m;
    struct proto_sync_entry e = rec(1, PROTO_SYNC_UP, "http://127.0.0.1:9001");
    char rel[64];
    size_t pos = 0, total = 0, pages = 0;

    proto_sync_msg_init(&m);
    for (int i = 0; i < N; i++) {
        snprintf(rel, sizeof(rel), "burrow/m%05d/s1", i);
        cr_assert_eq(shed_etcd_view_put(v, rel, &e, (uint64_t)i + 1, &m), 0);
        proto_sync_msg_free(&m);
        proto_sync_msg_init(&m);
    }
    shed_etcd_view_put(next, "burrow/m00000/s1", &e, 1, &m); /* the one that stays */
    proto_sync_msg_free(&m);
    do {
        proto_sync_msg_init(&m);
        cr_assert_eq(shed_etcd_view_downs_at(v, next, &pos, &m), 0);
        for (size_t i = 0; i < m.nentries; i++) {
            cr_assert_eq(m.entries[i].state, PROTO_SYNC_DOWN);
            cr_assert_str_neq(m.entries[i].id, "m00000");
        }
        total += m.nentries;
        pages++;
        proto_sync_msg_free(&m);
    } while (pos < shed_etcd_view_size(v));
    cr_assert_eq(total, (size_t)N - 1);
    cr_assert_eq(pages, 2);
    shed_etcd_view_destroy(v);
    shed_etcd_view_destroy(next);
}

/* ---- membership: in the config (shed/config.c) ---- */

static int
parse(const char *extra, struct shed_config **out, char *err, size_t errlen)
{
    char text[2048];
    snprintf(text, sizeof(text), "cell: a\ncredential: s3cret\n%s", extra);
    return shed_config_parse(text, strlen(text), "t.yaml", out, err, errlen);
}

Test(etcd, config_default_is_builtin)
{
    struct shed_config *cfg = NULL;
    char err[SHED_ERR_MAX];
    cr_assert_eq(parse("", &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg->membership.store, SHED_STORE_BUILTIN);
    shed_config_free(cfg);
    cr_assert_eq(parse("membership: {store: etcd, endpoints: [http://e:2379]}\n"
                       "limits: {max_members: 5000}\n",
                       &cfg, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cfg->membership.queue_max, 5000); /* limits.max_members */
    shed_config_free(cfg);
}

Test(etcd, config_etcd)
{
    struct shed_config *cfg = NULL;
    char err[SHED_ERR_MAX];
    cr_assert_eq(parse("membership:\n  store: etcd\n  endpoints: [http://10.0.0.1:2379/, "
                       "http://10.0.0.2:2379]\n  prefix: /svc/shed/\n  timeout: 300ms\n"
                       "  lease_ttl: 5s\n  queue: 200000\n",
                       &cfg, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cfg->membership.store, SHED_STORE_ETCD);
    cr_assert_eq(cfg->membership.nendpoints, 2);
    cr_assert_str_eq(cfg->membership.endpoints[0], "http://10.0.0.1:2379");
    cr_assert_str_eq(cfg->membership.prefix, "/svc/shed/");
    cr_assert_eq(cfg->membership.timeout_ms, 300);
    cr_assert_eq(cfg->membership.ttl_ms, 5000);
    cr_assert_eq(cfg->membership.queue_max, 200000);
    shed_config_free(cfg);
}

Test(etcd, config_errors)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"membership: {store: zookeeper}\n", "store must be builtin or etcd"},
        {"membership: {store: etcd}\n", "needs endpoints"},
        {"membership: {store: etcd, endpoints: [2379]}\n", "not an http"},
        {"membership: {store: etcd, endpoints: [http://e:2379], prefix: shed}\n",
         "prefix must start and end"},
        {"membership: {store: etcd, endpoints: [http://e:2379]}\npeers: [http://127.0.0.1:1]\n",
         "share etcd, not peers"},
        {"membership: {store: etcd, endpoints: [http://e:2379], ttl: 3s}\n", "unknown key 'ttl'"},
        {"membership: {store: etcd, endpoints: [http://e:2379], queue: 10}\n",
         "at least limits.max_members"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct shed_config *cfg = NULL;
        char err[SHED_ERR_MAX] = "";
        cr_assert_lt(parse(cases[i].yaml, &cfg, err, sizeof(err)), 0, "%s", cases[i].yaml);
        cr_assert_not_null(strstr(err, cases[i].want), "%s: %s", cases[i].yaml, err);
        cr_assert_null(cfg);
    }
}

Test(etcd, view_down_marker_is_news_once)
{
    struct shed_etcd_view *v = shed_etcd_view_create();
    struct proto_sync_msg m;
    struct proto_sync_entry up = rec(3, PROTO_SYNC_UP, "http://127.0.0.1:9001");
    struct proto_sync_entry down = rec(3, PROTO_SYNC_DOWN, "http://127.0.0.1:9001");
    proto_sync_msg_init(&m);
    shed_etcd_view_put(v, "burrow/b1/s2", &up, 10, &m);
    /* s1's probe found it dead: its later "down" outweighs s2's older "up". */
    shed_etcd_view_put(v, "burrow/b1/s1", &down, 11, &m);
    cr_assert_eq(m.nentries, 2);
    cr_assert_eq(m.entries[1].state, PROTO_SYNC_DOWN);
    proto_sync_msg_free(&m);
    proto_sync_msg_init(&m);
    shed_etcd_view_export(v, &m);
    cr_assert_eq(m.nentries, 0); /* not renewed: heartbeats decide from here */
    /* The marker goes (s1's lease for it ran out): s2's "up" again. */
    shed_etcd_view_delete(v, "burrow/b1/s1", &m);
    cr_assert_eq(m.nentries, 1);
    cr_assert_eq(m.entries[0].state, PROTO_SYNC_UP);
    proto_sync_msg_free(&m);
    shed_etcd_view_destroy(v);
}

Test(etcd, key_class_of_a_masters_read)
{
    char cell[64];
    const char *rest = NULL;
    const char *k = "b/burrow/b-1/10.0.0.1:80";
    cr_assert_eq(shed_etcd_key_class(k, strlen(k), cell, sizeof(cell), &rest),
                 SHED_ETCD_KEY_MEMBER);
    cr_assert_str_eq(cell, "b");
    cr_assert_str_eq(rest, "burrow/b-1/10.0.0.1:80");
    k = "~cells/cell_2/10.0.0.1:80";
    cr_assert_eq(shed_etcd_key_class(k, strlen(k), cell, sizeof(cell), &rest), SHED_ETCD_KEY_CELL);
    cr_assert_str_eq(cell, "cell_2");
    cr_assert_str_eq(rest, "10.0.0.1:80");
    k = "~hints/a/00000000000000000001-m:80";
    cr_assert_eq(shed_etcd_key_class(k, strlen(k), cell, sizeof(cell), &rest), SHED_ETCD_KEY_HINT);
    cr_assert_str_eq(cell, "a");
    /* Not a cell name, nothing after the cell, an unknown ~ directory, too long. */
    static const char *bad[] = {"B/x/y/z", "b", "b/", "~other/b/x", "~cells/b", "/b/x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(shed_etcd_key_class(bad[i], strlen(bad[i]), cell, sizeof(cell), &rest),
                     -EINVAL, "%s", bad[i]);
    k = "abcdef/x";
    cr_assert_eq(shed_etcd_key_class(k, strlen(k), cell, 4, &rest), -EINVAL);
}

Test(etcd, hint_keys_sort_oldest_first_and_records_round_trip)
{
    char k1[SHED_ETCD_KEY_MAX], k2[SHED_ETCD_KEY_MAX], tiny[16];
    struct shed_etcd_hint h;

    cr_assert_eq(shed_etcd_hint_key(k1, sizeof(k1), "/shed/", "a", 9, "m1:80"), 0);
    cr_assert_eq(shed_etcd_hint_key(k2, sizeof(k2), "/shed/", "a", 10, "m1:80"), 0);
    cr_assert_str_eq(k1, "/shed/~hints/a/00000000000000000009-m1:80");
    cr_assert_lt(strcmp(k1, k2), 0, "zero-padded: 9 sorts before 10");
    cr_assert_eq(shed_etcd_hint_key(tiny, sizeof(tiny), "/shed/", "a", 9, "m1:80"), -ENAMETOOLONG);

    char *v = shed_etcd_hint_encode("burrow", "/v1.0/a%20b/q/m", "http://10.0.2.7:8080",
                                    1732280000123ull);
    cr_assert_not_null(v);
    cr_assert_eq(shed_etcd_hint_decode(v, strlen(v), &h), 0);
    cr_assert_str_eq(h.service, "burrow");
    cr_assert_str_eq(h.path, "/v1.0/a%20b/q/m");
    cr_assert_str_eq(h.url, "http://10.0.2.7:8080");
    cr_assert_eq(h.at_ms, 1732280000123ull);
    free(v);
    static const char *bad[] = {
        "{}",
        "[]",
        "{\"service\":\"s\",\"path\":\"/p\",\"url\":\"u\"}",
        "{\"service\":\"s\",\"path\":\"p\",\"url\":\"u\",\"at\":1}",
        "{\"service\":\"\",\"path\":\"/p\",\"url\":\"u\",\"at\":1}",
        "{\"service\":\"s\",\"path\":\"/p\",\"url\":\"u\",\"at\":-1}",
        "{\"service\":1,\"path\":\"/p\",\"url\":\"u\",\"at\":1}",
        "not json",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(shed_etcd_hint_decode(bad[i], strlen(bad[i]), &h), -EINVAL, "%s", bad[i]);
    /* A path longer than any message path: refused, not truncated. */
    size_t n = PROTO_BURROW_PATH_MAX + 100;
    char *path = malloc(n + 1);
    cr_assert_not_null(path);
    memset(path, 'x', n);
    path[0] = '/';
    path[n] = '\0';
    v = shed_etcd_hint_encode("burrow", path, "http://u", 1);
    cr_assert_eq(shed_etcd_hint_decode(v, strlen(v), &h), -EINVAL);
    free(v);
    free(path);
}

Test(etcd, cell_record)
{
    char agg[64];
    const char *ok = "{\"aggregator\":\"http://10.0.0.9:8080\"}";
    cr_assert_eq(shed_etcd_cell_decode(ok, strlen(ok), agg, sizeof(agg)), 0);
    cr_assert_str_eq(agg, "http://10.0.0.9:8080");
    cr_assert_eq(shed_etcd_cell_decode("{}", 2, agg, sizeof(agg)), -EINVAL);
    cr_assert_eq(shed_etcd_cell_decode(ok, strlen(ok), agg, 8), -EINVAL);
}

Test(etcd, view_export_in_messages_that_fit)
{
    struct shed_etcd_view *v = shed_etcd_view_create();
    struct proto_sync_msg m;
    struct proto_sync_entry e = rec(1, PROTO_SYNC_UP, "http://127.0.0.1:9001");
    size_t pos = 0, total = 0, msgs = 0;
    char rel[64];

    proto_sync_msg_init(&m);
    for (int i = 0; i < 10000; i++) { /* two sheds' keys for each of 10 000 members */
        snprintf(rel, sizeof(rel), "burrow/b%05d/s1", i);
        cr_assert_eq(shed_etcd_view_put(v, rel, &e, (uint64_t)i, &m), 0);
        snprintf(rel, sizeof(rel), "burrow/b%05d/s2", i);
        cr_assert_eq(shed_etcd_view_put(v, rel, &e, (uint64_t)i, &m), 0);
        if (m.nentries == PROTO_SYNC_MAX_ENTRIES) {
            proto_sync_msg_free(&m);
            proto_sync_msg_init(&m);
        }
    }
    proto_sync_msg_free(&m);
    cr_assert_eq(shed_etcd_view_size(v), 20000);
    while (pos < shed_etcd_view_size(v)) {
        proto_sync_msg_init(&m);
        cr_assert_eq(shed_etcd_view_export_at(v, &pos, &m), 0);
        cr_assert_leq(m.nentries, PROTO_SYNC_MAX_ENTRIES);
        cr_assert_gt(m.nentries, 0);
        if (msgs == 0)
            cr_assert_str_eq(m.entries[0].id, "b00000");
        total += m.nentries;
        msgs++;
        proto_sync_msg_free(&m);
    }
    cr_assert_eq(total, 10000, "every member once, none cut off at the message limit");
    cr_assert_eq(msgs, 2);
    /* Deleting every key of the view, front first, stays linear enough
     * (pointers move, not records) and ends with every member down. */
    proto_sync_msg_init(&m);
    size_t downs = 0;
    for (int i = 0; i < 10000; i++) {
        for (int s = 1; s <= 2; s++) {
            snprintf(rel, sizeof(rel), "burrow/b%05d/s%d", i, s);
            cr_assert_eq(shed_etcd_view_delete(v, rel, &m), 0);
        }
        downs += m.nentries == 2 && m.entries[1].state == PROTO_SYNC_DOWN;
        proto_sync_msg_free(&m);
        proto_sync_msg_init(&m);
    }
    cr_assert_eq(downs, 10000);
    cr_assert_eq(shed_etcd_view_size(v), 0);
    proto_sync_msg_free(&m);
    shed_etcd_view_destroy(v);
}
