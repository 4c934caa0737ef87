/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for burrow/store with an injected clock: ordering, replace in
 * place, markers, limits, expiry, un-hiding, notifications, and accounts and
 * queues that vanish and come back at the end.
 */
#include "burrow/store.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define S(x) x, strlen(x)

static struct burrow_store *st;
static int notes;
static char last_note[64];

static void
on_notify(void *arg, const char *a, size_t alen, const char *q, size_t qlen)
{
    (void)arg;
    notes++;
    snprintf(last_note, sizeof(last_note), "%.*s/%.*s", (int)alen, a, (int)qlen, q);
}

static void
setup(void)
{
    st = burrow_store_create(on_notify, NULL);
    cr_assert_not_null(st);
    notes = 0;
    last_note[0] = '\0';
}

static void
teardown(void)
{
    burrow_store_destroy(st);
}

TestSuite(store, .init = setup, .fini = teardown);

/* Collects ids (and ttl/hide of the last one) as "a,b,c". */
struct acc {
    char ids[512];
    int64_t ttl, hide;
    char body[64];
};

static int
acc_id(void *arg, const char *id, size_t len, int64_t stamp)
{
    struct acc *c = arg;
    size_t n = strlen(c->ids);

    (void)stamp;
    snprintf(c->ids + n, sizeof(c->ids) - n, "%s%.*s", n ? "," : "", (int)len, id);
    return 0;
}

static int
acc_msg(void *arg, const struct burrow_msg_view *m)
{
    struct acc *c = arg;

    c->ttl = m->ttl;
    c->hide = m->hide;
    snprintf(c->body, sizeof(c->body), "%.*s", (int)m->body_len, m->body);
    return acc_id(arg, m->id, m->id_len, m->stamp);
}

static void
put(int64_t now, const char *a, const char *q, const char *m, const char *body, int64_t ttl,
    int64_t hide, int want)
{
    cr_assert_eq(burrow_store_put(st, now, S(a), S(q), S(m), body, strlen(body), ttl, hide), want,
                 "put %s/%s/%s", a, q, m);
}

static const char *
msgs(int64_t now, const char *a, const char *q, const char *marker, int64_t limit, bool hidden,
     int *rc)
{
    static struct acc c;
    struct burrow_store_filter f = {.marker = marker,
                                    .marker_len = marker ? strlen(marker) : 0,
                                    .limit = limit,
                                    .match_hidden = hidden};

    memset(&c, 0, sizeof(c));
    *rc = burrow_store_list_messages(st, now, S(a), S(q), &f, acc_msg, &c);
    return c.ids;
}

static const char *
accounts(int64_t now, const char *marker, int64_t limit, int *rc)
{
    static struct acc c;
    struct burrow_store_filter f = {
        .marker = marker, .marker_len = marker ? strlen(marker) : 0, .limit = limit};

    memset(&c, 0, sizeof(c));
    *rc = burrow_store_list_accounts(st, now, &f, acc_id, &c);
    return c.ids;
}

static const char *
queues(int64_t now, const char *a, int *rc)
{
    static struct acc c;
    struct burrow_store_filter f = {0};

    memset(&c, 0, sizeof(c));
    *rc = burrow_store_list_queues(st, now, S(a), &f, acc_id, &c);
    return c.ids;
}

Test(store, insertion_order_and_replace_keeps_position)
{
    int rc;

    put(100, "a", "q", "m1", "one", 0, 0, 1);
    put(100, "a", "q", "m2", "two", 0, 0, 1);
    put(100, "a", "q", "m3", "three", 0, 0, 1);
    put(101, "a", "q", "m1", "uno-longer-body", 0, 0, 0);
    cr_assert_str_eq(msgs(101, "a", "q", NULL, 0, false, &rc), "m1,m2,m3");
    cr_assert_eq(rc, 3);

    struct acc c = {0};
    cr_assert_eq(burrow_store_get(st, 101, S("a"), S("q"), S("m1"), acc_msg, &c), 0);
    cr_assert_str_eq(c.body, "uno-longer-body");
    /* Replace of a hidden middle message keeps it in the middle too. */
    put(102, "a", "q", "m2", "x", 0, 50, 0);
    put(103, "a", "q", "m2", "y", 0, 0, 0);
    cr_assert_str_eq(msgs(103, "a", "q", NULL, 0, false, &rc), "m1,m2,m3");
}

Test(store, markers_and_limits)
{
    int rc;

    for (int i = 1; i <= 5; i++) {
        char id[8];
        snprintf(id, sizeof(id), "m%d", i);
        put(10, "a", "q", id, "b", 0, 0, 1);
    }
    cr_assert_str_eq(msgs(10, "a", "q", "m1", 2, false, &rc), "m2,m3");
    cr_assert_str_eq(msgs(10, "a", "q", "m3", 0, false, &rc), "m4,m5");
    cr_assert_str_eq(msgs(10, "a", "q", "unknown", 0, false, &rc), "m1,m2,m3,m4,m5");
    cr_assert_str_eq(msgs(10, "a", "q", "m2", -1, false, &rc), "m3,m4,m5");
    msgs(10, "a", "q", "m5", 0, false, &rc);
    cr_assert_eq(rc, -BURROW_STORE_ENOMESSAGE);
    msgs(10, "a", "nope", NULL, 0, false, &rc);
    cr_assert_eq(rc, -BURROW_STORE_ENOQUEUE);
    msgs(10, "nope", "q", NULL, 0, false, &rc);
    cr_assert_eq(rc, -BURROW_STORE_ENOACCOUNT);

    /* A hidden marker is still a position. */
    int64_t hide = 30;
    cr_assert_eq(burrow_store_update(st, 10, S("a"), S("q"), S("m2"), NULL, &hide, NULL, NULL), 0);
    cr_assert_eq(burrow_store_update(st, 10, S("a"), S("q"), S("m3"), NULL, &hide, NULL, NULL), 0);
    cr_assert_str_eq(msgs(10, "a", "q", "m2", 0, false, &rc), "m4,m5");
    cr_assert_str_eq(msgs(10, "a", "q", NULL, 0, false, &rc), "m1,m4,m5");
    cr_assert_str_eq(msgs(10, "a", "q", "m1", 0, true, &rc), "m2,m3,m4,m5");
}

Test(store, ttl_expiry_removes_queue_and_account)
{
    int rc;

    put(100, "a", "q", "m", "b", 1, 0, 1);
    put(100, "b", "q", "m", "b", 0, 0, 1);
    struct acc c = {0};
    cr_assert_eq(burrow_store_get(st, 100, S("a"), S("q"), S("m"), acc_msg, &c), 0);
    cr_assert_eq(c.ttl, 1);
    cr_assert_str_eq(accounts(100, NULL, 0, &rc), "a,b");
    burrow_store_tick(st, 101);
    cr_assert_str_eq(accounts(101, NULL, 0, &rc), "b");
    cr_assert_eq(burrow_store_get(st, 101, S("a"), S("q"), S("m"), NULL, NULL),
                 -BURROW_STORE_ENOACCOUNT);
    struct burrow_store_stats ss;
    burrow_store_stats(st, &ss);
    cr_assert_eq(ss.messages, 1);
    cr_assert_eq(ss.timed, 0);
    /* Expiry also applies lazily on access, without a tick. */
    put(200, "b", "q2", "m", "b", 5, 0, 1);
    cr_assert_str_eq(queues(204, "b", &rc), "q,q2");
    cr_assert_str_eq(queues(205, "b", &rc), "q");
}

Test(store, hide_and_unhide_notifies)
{
    int rc;

    put(100, "a", "q", "m1", "b", 0, 0, 1);
    cr_assert_eq(notes, 1);
    put(100, "a", "q", "m2", "b", 0, 2, 1);
    cr_assert_eq(notes, 1); /* hidden put: nothing visible to wake for */
    struct acc c = {0};
    cr_assert_eq(burrow_store_get(st, 100, S("a"), S("q"), S("m2"), acc_msg, &c), 0);
    cr_assert_eq(c.hide, 2);
    cr_assert_str_eq(msgs(100, "a", "q", NULL, 0, false, &rc), "m1");
    burrow_store_tick(st, 101);
    cr_assert_eq(notes, 1);
    burrow_store_tick(st, 102);
    cr_assert_eq(notes, 2);
    cr_assert_str_eq(last_note, "a/q");
    cr_assert_str_eq(msgs(102, "a", "q", NULL, 0, false, &rc), "m1,m2");
    memset(&c, 0, sizeof(c));
    cr_assert_eq(burrow_store_get(st, 102, S("a"), S("q"), S("m2"), acc_msg, &c), 0);
    cr_assert_eq(c.hide, 0);
}

Test(store, claim_updates_visible_in_order)
{
    int rc;
    struct burrow_store_filter f = {.limit = 2};
    int64_t hide = 60, ttl = 100, zero = 0;
    struct acc c = {0};

    for (int i = 0; i < 6; i++) {
        char id[8];
        snprintf(id, sizeof(id), "m%d", i);
        put(1000, "a", "q", id, "b", 0, 0, 1);
    }
    cr_assert_eq(
        burrow_store_update_messages(st, 1000, S("a"), S("q"), &f, NULL, &hide, acc_msg, &c), 2);
    cr_assert_str_eq(c.ids, "m0,m1");
    cr_assert_eq(c.hide, 60);
    memset(&c, 0, sizeof(c));
    cr_assert_eq(
        burrow_store_update_messages(st, 1000, S("a"), S("q"), &f, &ttl, &hide, acc_msg, &c), 2);
    cr_assert_str_eq(c.ids, "m2,m3");
    cr_assert_eq(c.ttl, 100);
    /* Un-hide m1 and m3 by hand: they go back in insertion order. */
    cr_assert_eq(burrow_store_update(st, 1001, S("a"), S("q"), S("m3"), NULL, &zero, NULL, NULL),
                 0);
    cr_assert_eq(burrow_store_update(st, 1001, S("a"), S("q"), S("m1"), NULL, &zero, NULL, NULL),
                 0);
    cr_assert_str_eq(msgs(1001, "a", "q", NULL, 0, false, &rc), "m1,m3,m4,m5");
    /* The rest un-hide at their deadline. */
    cr_assert_str_eq(msgs(1060, "a", "q", NULL, 0, false, &rc), "m0,m1,m2,m3,m4,m5");
    /* POST with neither attribute changes nothing but still matches. */
    f.limit = 0;
    cr_assert_eq(burrow_store_update_messages(st, 1060, S("a"), S("q"), &f, NULL, NULL, NULL, NULL),
                 6);
}

Test(store, delete_messages_visible_only_unless_match_hidden)
{
    int rc;
    struct burrow_store_filter f = {0};

    put(1, "a", "q", "m1", "b", 0, 10, 1);
    put(1, "a", "q", "m2", "b", 0, 0, 1);
    cr_assert_eq(burrow_store_delete_messages(st, 1, S("a"), S("q"), &f, NULL, NULL), 1);
    cr_assert_eq(burrow_store_delete_messages(st, 1, S("a"), S("q"), &f, NULL, NULL),
                 -BURROW_STORE_ENOMESSAGE);
    cr_assert_str_eq(msgs(1, "a", "q", NULL, 0, true, &rc), "m1");
    f.match_hidden = true;
    cr_assert_eq(burrow_store_delete_messages(st, 1, S("a"), S("q"), &f, NULL, NULL), 1);
    accounts(1, NULL, 0, &rc);
    cr_assert_eq(rc, -BURROW_STORE_ENOACCOUNT);
}

Test(store, vanished_account_and_queue_come_back_at_the_end)
{
    int rc;

    put(1, "a1", "q1", "m", "b", 0, 0, 1);
    put(1, "a1", "q2", "m", "b", 0, 0, 1);
    put(1, "a2", "q1", "m", "b", 0, 0, 1);
    put(1, "a3", "q1", "m", "b", 0, 0, 1);
    cr_assert_eq(burrow_store_delete(st, 1, S("a1"), S("q1"), S("m"), NULL, NULL), 0);
    put(1, "a1", "q1", "m", "b", 0, 0, 1);
    cr_assert_str_eq(queues(1, "a1", &rc), "q2,q1");
    cr_assert_str_eq(accounts(1, NULL, 0, &rc), "a1,a2,a3");
    cr_assert_eq(burrow_store_delete(st, 1, S("a2"), S("q1"), S("m"), NULL, NULL), 0);
    put(1, "a2", "q1", "m", "b", 0, 0, 1);
    cr_assert_str_eq(accounts(1, NULL, 0, &rc), "a1,a3,a2");
    cr_assert_str_eq(accounts(1, "a1", 1, &rc), "a3");
    cr_assert_str_eq(accounts(1, "zz", 2, &rc), "a1,a3");
    accounts(1, "a2", 0, &rc);
    cr_assert_eq(rc, -BURROW_STORE_ENOACCOUNT);
}

Test(store, delete_queues_and_accounts)
{
    int rc;
    struct burrow_store_filter f = {0};
    struct acc c = {0};

    put(1, "a1", "q1", "m1", "b", 0, 0, 1);
    put(1, "a1", "q1", "m2", "b", 0, 9, 1); /* hidden ones go too */
    put(1, "a1", "q2", "m1", "b", 0, 0, 1);
    put(1, "a2", "q1", "m1", "b", 0, 0, 1);
    f.marker = "q1";
    f.marker_len = 2;
    cr_assert_eq(burrow_store_delete_queues(st, 1, S("a1"), &f, acc_id, &c), 1);
    cr_assert_str_eq(c.ids, "q2");
    cr_assert_str_eq(queues(1, "a1", &rc), "q1");
    f.marker = NULL;
    cr_assert_eq(burrow_store_delete_queues(st, 1, S("a1"), &f, NULL, NULL), 1);
    cr_assert_eq(burrow_store_delete_queues(st, 1, S("a1"), &f, NULL, NULL),
                 -BURROW_STORE_ENOACCOUNT);
    put(1, "a1", "q1", "m1", "b", 0, 0, 1);
    cr_assert_str_eq(accounts(1, NULL, 0, &rc), "a2,a1");
    f.limit = 1;
    cr_assert_eq(burrow_store_delete_accounts(st, 1, &f, NULL, NULL), 1);
    cr_assert_str_eq(accounts(1, NULL, 0, &rc), "a1");
    f.limit = 0;
    cr_assert_eq(burrow_store_delete_accounts(st, 1, &f, NULL, NULL), 1);
    cr_assert_eq(burrow_store_delete_accounts(st, 1, &f, NULL, NULL), -BURROW_STORE_ENOACCOUNT);
    struct burrow_store_stats ss;
    burrow_store_stats(st, &ss);
    cr_assert(ss.accounts == 0 && ss.queues == 0 && ss.messages == 0 && ss.timed == 0);
}

Test(store, binary_ids_and_bodies)
{
    const char id[] = {'\xff', ' ', '\x01'};
    const char body[] = {'\0', 'x', '\0'};
    struct acc c = {0};

    cr_assert_eq(burrow_store_put(st, 1, S("a"), S("q"), id, sizeof(id), body, sizeof(body), 0, 0),
                 1);
    cr_assert_eq(burrow_store_put(st, 1, S("a"), S("q"), id, sizeof(id), "", 0, 0, 0), 0);
    cr_assert_eq(burrow_store_get(st, 1, S("a"), S("q"), id, sizeof(id), acc_msg, &c), 0);
    cr_assert_str_eq(c.body, "");
    cr_assert_eq(burrow_store_put(st, 1, S("a"), S("q"), "", 0, "", 0, 0, 0), -EINVAL);
}

static int
stop_at_two(void *arg, const struct burrow_msg_view *m)
{
    int *n = arg;

    (void)m;
    return ++*n == 2 ? -ENOMEM : 0;
}

Test(store, visitor_error_stops_delete)
{
    struct burrow_store_filter f = {0};
    int n = 0, rc;

    put(1, "a", "q", "m1", "b", 0, 0, 1);
    put(1, "a", "q", "m2", "b", 0, 0, 1);
    put(1, "a", "q", "m3", "b", 0, 0, 1);
    cr_assert_eq(burrow_store_delete_messages(st, 1, S("a"), S("q"), &f, stop_at_two, &n), -ENOMEM);
    cr_assert_str_eq(msgs(1, "a", "q", NULL, 0, false, &rc), "m2,m3");
}

Test(store, many_messages_heap_and_tables)
{
    int rc;
    char id[16];

    /* Random-ish deadlines, then check expiry order and that the survivors
     * keep insertion order. */
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "m%d", i);
        put(0, "a", "q", id, "b", (i * 7919) % 100, (i * 104729) % 50, 1);
    }
    for (int t = 1; t <= 100; t++) {
        burrow_store_tick(st, t);
        struct burrow_store_stats ss;
        burrow_store_stats(st, &ss);
        size_t alive = 0;
        for (int i = 0; i < 5000; i++) {
            int ttl = (i * 7919) % 100;
            alive += ttl == 0 || ttl > t;
        }
        cr_assert_eq(ss.messages, alive, "t=%d", t);
    }
    msgs(100, "a", "q", NULL, 0, false, &rc);
    cr_assert_eq(rc, 50); /* i*7919 % 100 == 0 for i % 100 == 0 */
    for (int i = 0; i < 5000; i += 100) {
        snprintf(id, sizeof(id), "m%d", i);
        cr_assert_eq(burrow_store_delete(st, 100, S("a"), S("q"), S(id), NULL, NULL), 0);
    }
    accounts(100, NULL, 0, &rc);
    cr_assert_eq(rc, -BURROW_STORE_ENOACCOUNT);
}

/* Claiming one message at a time must not rescan the hidden ones: 100k
 * claims on a 100k-message queue finish quickly only if each is O(1). */
Test(store, claims_skip_hidden_in_constant_time, .timeout = 20)
{
    enum { N = 100000 };
    struct burrow_store_filter f = {.limit = 1};
    int64_t hide = 600;
    char id[16];
    struct acc c;

    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "m%d", i);
        put(1, "a", "q", id, "b", 0, 0, 1);
    }
    for (int i = 0; i < N; i++) {
        memset(&c, 0, sizeof(c));
        cr_assert_eq(
            burrow_store_update_messages(st, 1, S("a"), S("q"), &f, NULL, &hide, acc_msg, &c), 1);
        snprintf(id, sizeof(id), "m%d", i);
        cr_assert_str_eq(c.ids, id);
    }
    cr_assert_eq(burrow_store_update_messages(st, 1, S("a"), S("q"), &f, NULL, &hide, NULL, NULL),
                 -BURROW_STORE_ENOMESSAGE);
    /* Every second one comes back (by hand), still in order. */
    int64_t zero = 0;
    for (int i = N - 2; i >= 0; i -= 2) {
        snprintf(id, sizeof(id), "m%d", i);
        cr_assert_eq(burrow_store_update(st, 2, S("a"), S("q"), S(id), NULL, &zero, NULL, NULL), 0);
    }
    memset(&c, 0, sizeof(c));
    f.limit = 3;
    cr_assert_eq(burrow_store_list_messages(st, 2, S("a"), S("q"), &f, acc_msg, &c), 3);
    cr_assert_str_eq(c.ids, "m0,m2,m4");
}

/* Stamps (shed's ordering extension): strictly increasing per store even
 * when the clock stands still or steps back; a message put with a stamp of
 * its own goes to its place; lists after and up to a (stamp, id) position. */
static const char *
window(const struct burrow_store_filter *f, int *rc)
{
    static struct acc c;

    memset(&c, 0, sizeof(c));
    *rc = burrow_store_list_messages(st, 1, S("a"), S("q"), f, acc_msg, &c);
    return c.ids;
}

static int
keep_view(void *arg, const struct burrow_msg_view *m)
{
    *(struct burrow_msg_view *)arg = *m;
    return 0;
}

static int64_t
stamp_at(const char *m)
{
    struct burrow_msg_view v = {0};

    cr_assert_eq(burrow_store_get(st, 1, S("a"), S("q"), S(m), keep_view, &v), 0, "%s", m);
    return v.stamp;
}

Test(store, stamps_order_and_windows)
{
    struct burrow_store_filter f = {0};
    int64_t hide = 60;
    int rc;

    cr_assert_eq(burrow_store_put_at(st, 1, 1000, S("a"), S("q"), S("m1"), "", 0, 0, 0, 0), 1);
    cr_assert_eq(burrow_store_put_at(st, 1, 1000, S("a"), S("q"), S("m2"), "", 0, 0, 0, 0), 1);
    cr_assert_eq(burrow_store_put_at(st, 1, 900, S("a"), S("q"), S("m3"), "", 0, 0, 0, 0), 1);
    cr_assert_eq(stamp_at("m1"), 1000);
    cr_assert_eq(stamp_at("m2"), 1001);
    cr_assert_eq(stamp_at("m3"), 1002);
    cr_assert_eq(burrow_store_clock(st, 500), 1002);
    /* a replace keeps its stamp, even when it brings one */
    cr_assert_eq(burrow_store_put_at(st, 1, 2000, S("a"), S("q"), S("m2"), "x", 1, 0, 0, 5), 0);
    cr_assert_eq(stamp_at("m2"), 1001);
    /* a moved message goes to its place: before, between (id breaks the
     * tie), after; one ahead of the clock moves the clock */
    cr_assert_eq(burrow_store_put_at(st, 1, 1100, S("a"), S("q"), S("h0"), "", 0, 0, 0, 10), 1);
    cr_assert_eq(burrow_store_put_at(st, 1, 1100, S("a"), S("q"), S("h1"), "", 0, 0, 0, 1001), 1);
    cr_assert_eq(burrow_store_put_at(st, 1, 1100, S("a"), S("q"), S("m0"), "", 0, 0, 0, 1001), 1);
    cr_assert_eq(burrow_store_put_at(st, 1, 1100, S("a"), S("q"), S("h9"), "", 0, 0, 0, 5000), 1);
    cr_assert_eq(burrow_store_put_at(st, 1, 1200, S("a"), S("q"), S("m4"), "", 0, 0, 0, 0), 1);
    cr_assert_eq(stamp_at("m4"), 5001);
    cr_assert_str_eq(window(&f, &rc), "h0,m1,h1,m0,m2,m3,h9,m4");
    cr_assert_eq(rc, 8);

    /* after a stamp (the whole stamp), after a position, up to one */
    f.has_after = true;
    f.after = 1001;
    cr_assert_str_eq(window(&f, &rc), "m3,h9,m4");
    f.marker = "h1";
    f.marker_len = 2;
    cr_assert_str_eq(window(&f, &rc), "m0,m2,m3,h9,m4");
    f.marker = "m0"; /* the marker itself, found by id */
    cr_assert_str_eq(window(&f, &rc), "m2,m3,h9,m4");
    f.after = 1002; /* not the marker's stamp: the position decides */
    cr_assert_str_eq(window(&f, &rc), "m3,h9,m4");
    f.marker = "m4";
    cr_assert_str_eq(window(&f, &rc), "h9,m4");
    f.after = 5001;
    f.marker = NULL;
    f.marker_len = 0;
    window(&f, &rc);
    cr_assert_eq(rc, -BURROW_STORE_ENOMESSAGE);
    f.after = 0;
    cr_assert_str_eq(window(&f, &rc), "h0,m1,h1,m0,m2,m3,h9,m4");
    f.has_upto = true;
    f.upto = 1001;
    cr_assert_str_eq(window(&f, &rc), "h0,m1,h1,m0,m2");
    f.upto_id = "h1";
    f.upto_id_len = 2;
    cr_assert_str_eq(window(&f, &rc), "h0,m1,h1");
    f.has_after = false;
    f.limit = 2;
    cr_assert_str_eq(window(&f, &rc), "h0,m1");

    /* the visible list keeps the same order; a hidden marker position */
    memset(&f, 0, sizeof(f));
    cr_assert_eq(burrow_store_update(st, 1, S("a"), S("q"), S("m0"), NULL, &hide, NULL, NULL), 0);
    cr_assert_eq(burrow_store_update(st, 1, S("a"), S("q"), S("m2"), NULL, &hide, NULL, NULL), 0);
    cr_assert_str_eq(window(&f, &rc), "h0,m1,h1,m3,h9,m4");
    f.has_after = true;
    f.after = 1001;
    f.marker = "m0";
    f.marker_len = 2;
    cr_assert_str_eq(window(&f, &rc), "m3,h9,m4");
    f.after = 999; /* walked from the head */
    f.marker = NULL;
    f.marker_len = 0;
    cr_assert_str_eq(window(&f, &rc), "m1,h1,m3,h9,m4");
    f.after = 4000; /* walked from the tail */
    cr_assert_str_eq(window(&f, &rc), "h9,m4");
    /* back from hiding: in its place */
    int64_t zero = 0;
    cr_assert_eq(burrow_store_update(st, 1, S("a"), S("q"), S("m0"), NULL, &zero, NULL, NULL), 0);
    memset(&f, 0, sizeof(f));
    cr_assert_str_eq(window(&f, &rc), "h0,m1,h1,m0,m3,h9,m4");
}

static int
acc_stamp(void *arg, const char *id, size_t len, int64_t stamp)
{
    struct acc *c = arg;
    size_t n = strlen(c->ids);

    snprintf(c->ids + n, sizeof(c->ids) - n, "%s%.*s=%lld", n ? "," : "", (int)len, id,
             (long long)stamp);
    return 0;
}

Test(store, queue_and_account_stamps)
{
    struct burrow_store_filter f = {0};
    struct acc c = {0};

    cr_assert_eq(burrow_store_put_at(st, 1, 100, S("a"), S("q1"), S("m"), "", 0, 0, 0, 0), 1);
    cr_assert_eq(burrow_store_put_at(st, 1, 100, S("a"), S("q2"), S("m"), "", 0, 0, 0, 7), 1);
    cr_assert_eq(burrow_store_put_at(st, 1, 100, S("b"), S("q"), S("m"), "", 0, 0, 0, 0), 1);
    cr_assert_eq(burrow_store_list_queues(st, 1, S("a"), &f, acc_stamp, &c), 2);
    cr_assert_str_eq(c.ids, "q1=100,q2=7");
    memset(&c, 0, sizeof(c));
    cr_assert_eq(burrow_store_list_accounts(st, 1, &f, acc_stamp, &c), 2);
    cr_assert_str_eq(c.ids, "a=100,b=101");
}

/* The clock as a logical clock: moved on by a clock seen elsewhere (later
 * stamps are above it), and by a put's own stamp unless that is more than
 * an hour ahead. */
Test(store, clock_moves_on)
{
    int64_t hour = 3600LL * 1000000;

    cr_assert_eq(burrow_store_clock(st, 1000), 1000);
    cr_assert_eq(burrow_store_clock(st, 5000), 5000);
    cr_assert_eq(burrow_store_clock(st, 10), 5000, "never back");
    cr_assert_eq(burrow_store_put_at(st, 1, 100, S("a"), S("q"), S("m1"), "", 0, 0, 0, 0), 1);
    cr_assert_eq(stamp_at("m1"), 5001);
    cr_assert_eq(burrow_store_put_at(st, 1, 100, S("a"), S("q"), S("m2"), "", 0, 0, 0, 9000), 1);
    cr_assert_eq(burrow_store_clock(st, 0), 9000);
    cr_assert_eq(
        burrow_store_put_at(st, 1, 100, S("a"), S("q"), S("m3"), "", 0, 0, 0, 100 + hour + 1), 1);
    cr_assert_eq(stamp_at("m3"), 100 + hour + 1, "kept as given");
    cr_assert_eq(burrow_store_clock(st, 0), 9000, "but the clock did not jump an hour");
}
