/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for proto/sync: round trip of deltas and full snapshots, and a
 * table of malformed messages that must be refused with the right code.
 */
#include "proto/sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

static struct proto_sync_entry
entry(const char *id, uint64_t inc, enum proto_sync_state st)
{
    struct proto_sync_entry e;

    memset(&e, 0, sizeof(e));
    strcpy(e.service, "burrow");
    snprintf(e.id, sizeof(e.id), "%s", id);
    e.incarnation = inc;
    e.state = st;
    snprintf(e.url, sizeof(e.url), "http://127.0.0.1:%d", 9000 + (int)inc);
    strcpy(e.zone, "z1");
    e.weight = 100;
    e.age_ms = 250;
    e.seq = inc * 10;
    return e;
}

Test(sync, round_trip)
{
    struct proto_sync_msg m, d;
    struct proto_sync_entry e;
    char *s = NULL;
    size_t len = 0;

    proto_sync_msg_init(&m);
    m.kind = PROTO_SYNC_DELTA;
    strcpy(m.cell, "a");
    strcpy(m.origin, "http://127.0.0.1:8001");
    strcpy(m.aggregator, "http://127.0.0.1:8100");
    m.epoch = 77;
    m.since = 12;
    m.seq = 15;
    m.lease_ms = 3000;
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof(id), "b%d", i);
        e = entry(id, (uint64_t)i + 1, (enum proto_sync_state)i);
        cr_assert_eq(proto_sync_msg_add(&m, &e), 0);
    }
    m.entries[2].zone[0] = '\0';
    cr_assert_eq(proto_sync_encode(&m, &s, &len), 0);
    cr_assert_eq(len, strlen(s));
    cr_assert_eq(proto_sync_decode(s, len, &d), 0);
    cr_assert_eq(d.kind, PROTO_SYNC_DELTA);
    cr_assert_str_eq(d.cell, "a");
    cr_assert_str_eq(d.origin, "http://127.0.0.1:8001");
    cr_assert_str_eq(d.aggregator, "http://127.0.0.1:8100");
    cr_assert_eq(d.epoch, 77);
    cr_assert_eq(d.since, 12);
    cr_assert_eq(d.seq, 15);
    cr_assert_eq(d.lease_ms, 3000);
    cr_assert_eq(d.nentries, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(d.entries[i].id, m.entries[i].id);
        cr_assert_str_eq(d.entries[i].url, m.entries[i].url);
        cr_assert_str_eq(d.entries[i].zone, m.entries[i].zone);
        cr_assert_eq(d.entries[i].state, m.entries[i].state);
        cr_assert_eq(d.entries[i].incarnation, m.entries[i].incarnation);
        cr_assert_eq(d.entries[i].weight, 100);
        cr_assert_eq(d.entries[i].age_ms, 250);
        cr_assert_eq(d.entries[i].seq, m.entries[i].seq);
    }
    free(s);
    proto_sync_msg_free(&d);
    proto_sync_msg_free(&m);
    proto_sync_msg_free(&m); /* twice is fine */
}

Test(sync, full_empty)
{
    struct proto_sync_msg m, d;
    char *s = NULL;
    size_t len;

    proto_sync_msg_init(&m);
    m.kind = PROTO_SYNC_FULL;
    cr_assert_eq(proto_sync_encode(&m, &s, &len), 0);
    cr_assert_eq(proto_sync_decode(s, len, &d), 0);
    cr_assert_eq(d.kind, PROTO_SYNC_FULL);
    cr_assert_eq(d.nentries, 0);
    cr_assert_eq(d.entries, NULL);
    free(s);
}

Test(sync, add_refuses_bad_entries_and_caps)
{
    struct proto_sync_msg m;
    struct proto_sync_entry e = entry("b", 1, PROTO_SYNC_UP);

    proto_sync_msg_init(&m);
    e.weight = 0;
    cr_assert_eq(proto_sync_msg_add(&m, &e), -PROTO_SYNC_EBADFIELD);
    e = entry("b", 1, PROTO_SYNC_UP);
    strcpy(e.url, "http://x\r\nSet-Cookie: a");
    cr_assert_eq(proto_sync_msg_add(&m, &e), -PROTO_SYNC_EBADFIELD);
    e = entry("b", 1, PROTO_SYNC_UP);
    for (int i = 0; i < PROTO_SYNC_MAX_ENTRIES; i++)
        cr_assert_eq(proto_sync_msg_add(&m, &e), 0);
    cr_assert_eq(proto_sync_msg_add(&m, &e), -PROTO_SYNC_ETOOBIG);
    proto_sync_msg_free(&m);
}

struct bad_case {
    const char *json;
    int want;
};

#define ENT_OK                                                                                     \
    "{\"service\":\"burrow\",\"id\":\"b1\",\"inc\":1,\"state\":\"up\",\"url\":\"http://h:1\","     \
    "\"zone\":\"\",\"weight\":1,\"age_ms\":0,\"seq\":1}"
#define HEAD "\"v\":1,\"kind\":\"delta\",\"epoch\":1,\"since\":0,\"seq\":1,\"lease_ms\":1000"

static const struct bad_case bad_cases[] = {
    {"", -PROTO_SYNC_EBADJSON},
    {"[]", -PROTO_SYNC_EBADJSON},
    {"{", -PROTO_SYNC_EBADJSON},
    {"{\"v\":2,\"kind\":\"delta\"}", -PROTO_SYNC_EVERSION},
    {"{" HEAD "}", -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":{}}", -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[1]}", -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[" ENT_OK "],\"v\":1}", -PROTO_SYNC_EBADJSON}, /* duplicate key */
    {"{\"v\":1,\"kind\":\"weird\",\"epoch\":1,\"since\":0,\"seq\":1,\"lease_ms\":1,\"entries\":[]}",
     -PROTO_SYNC_EBADFIELD},
    {"{\"v\":1,\"kind\":\"full\",\"epoch\":-1,\"since\":0,\"seq\":1,\"lease_ms\":1,\"entries\":[]}",
     -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"\",\"inc\":1,\"state\":\"up\","
     "\"url\":\"u\",\"weight\":1,\"age_ms\":0,\"seq\":1}]}",
     -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"x\",\"inc\":1,\"state\":\"sleepy\","
     "\"url\":\"u\",\"weight\":1,\"age_ms\":0,\"seq\":1}]}",
     -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"x\",\"inc\":1,\"state\":\"up\","
     "\"url\":\"u\",\"weight\":0,\"age_ms\":0,\"seq\":1}]}",
     -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"x\",\"inc\":1,\"state\":\"up\","
     "\"url\":\"u\",\"weight\":70000,\"age_ms\":0,\"seq\":1}]}",
     -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"x\\u0000y\",\"inc\":1,\"state\":"
     "\"up\",\"url\":\"u\",\"weight\":1,\"age_ms\":0,\"seq\":1}]}",
     -PROTO_SYNC_EBADJSON},
    {"{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"x\",\"inc\":1,\"state\":\"up\","
     "\"url\":\"a\\r\\nb\",\"weight\":1,\"age_ms\":0,\"seq\":1}]}",
     -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"x\",\"inc\":\"1\",\"state\":\"up\","
     "\"url\":\"u\",\"weight\":1,\"age_ms\":0,\"seq\":1}]}",
     -PROTO_SYNC_EBADFIELD},
    {"{" HEAD ",\"entries\":[" ENT_OK "]}", 0},
};

Test(sync, decode_table)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct proto_sync_msg d;
        int rc = proto_sync_decode(bad_cases[i].json, strlen(bad_cases[i].json), &d);
        cr_assert_eq(rc, bad_cases[i].want, "case %zu: got %d (%s)", i, rc,
                     proto_sync_strerror(rc));
        if (rc == 0) {
            cr_assert_eq(d.nentries, 1);
            cr_assert_str_eq(d.entries[0].zone, "");
            proto_sync_msg_free(&d);
        } else {
            cr_assert_eq(d.entries, NULL);
        }
    }
}

Test(sync, long_strings_refused)
{
    char buf[2048];
    char id[PROTO_SYNC_ID_MAX + 2];
    struct proto_sync_msg d;

    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    snprintf(buf, sizeof(buf),
             "{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"%s\",\"inc\":1,"
             "\"state\":\"up\",\"url\":\"u\",\"weight\":1,\"age_ms\":0,\"seq\":1}]}",
             id);
    cr_assert_eq(proto_sync_decode(buf, strlen(buf), &d), -PROTO_SYNC_EBADFIELD);
    id[PROTO_SYNC_ID_MAX] = '\0';
    snprintf(buf, sizeof(buf),
             "{" HEAD ",\"entries\":[{\"service\":\"burrow\",\"id\":\"%s\",\"inc\":1,"
             "\"state\":\"up\",\"url\":\"u\",\"weight\":1,\"age_ms\":0,\"seq\":1}]}",
             id);
    cr_assert_eq(proto_sync_decode(buf, strlen(buf), &d), 0);
    proto_sync_msg_free(&d);
    cr_assert_eq(proto_sync_decode(buf, PROTO_SYNC_BODY_MAX + 1, &d), -PROTO_SYNC_ETOOBIG);
}

Test(sync, ack)
{
    struct proto_sync_ack a = {.seq = 42, .need_full = true}, b;
    char buf[96];
    long n = proto_sync_ack_encode(&a, buf, sizeof(buf));

    cr_assert_gt(n, 0);
    cr_assert_eq(proto_sync_ack_decode(buf, (size_t)n, &b), 0);
    cr_assert_eq(b.seq, 42);
    cr_assert(b.need_full);
    cr_assert_eq(proto_sync_ack_encode(&a, buf, 5), -ERANGE);
    cr_assert_eq(proto_sync_ack_decode("{\"v\":1}", 7, &b), -PROTO_SYNC_EBADFIELD);
    cr_assert_eq(proto_sync_ack_decode("{\"v\":1,\"seq\":1,\"need_full\":3}", 29, &b),
                 -PROTO_SYNC_EBADFIELD);
    cr_assert_eq(proto_sync_ack_decode("{\"v\":1,\"seq\":3}", 15, &b), 0);
    cr_assert(!b.need_full);
}
