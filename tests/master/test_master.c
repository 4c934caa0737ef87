/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for shed/master: merging pushed memberships, and the cell
 * choice (proximity first, capacity, spreading, visited cells excluded, hop
 * limit) down to the bucket's primary in the chosen cell's ring.
 */
#include "shed/master.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ring/ring.h"

#include "entry.h"
static struct shed_config *
mkcfg(void)
{
    struct shed_config *c = calloc(1, sizeof(*c));
    static const char *const names[] = {"a", "b", "c", "d"};
    static const uint32_t prox[] = {0, 10, 10, 20};

    cr_assert_not_null(c);
    for (size_t i = 0; i < 4; i++) {
        snprintf(c->cells[i].name, sizeof(c->cells[i].name), "%s", names[i]);
        c->cells[i].proximity = prox[i];
        snprintf(c->cells[i].sheds[0], sizeof(c->cells[i].sheds[0]), "http://shed-%s", names[i]);
        c->cells[i].nsheds = 1;
    }
    c->ncells = 4;
    snprintf(c->services[0].name, sizeof(c->services[0].name), "burrow");
    c->services[0].kind = SHED_KIND_BURROW;
    ring_config_default(&c->services[0].ring);
    c->services[0].ring.buckets = 1024;
    c->nservices = 1;
    return c;
}

/* Push <n> members "<cell>-<i>" of weight <w> for cell <cell>. */
static void
push(struct shed_master *mm, const char *cell, int n, uint32_t w, enum proto_sync_state st,
     uint64_t now, uint64_t epoch)
{
    struct proto_sync_msg msg;
    struct proto_sync_ack ack;

    proto_sync_msg_init(&msg);
    msg.kind = PROTO_SYNC_FULL;
    snprintf(msg.cell, sizeof(msg.cell), "%s", cell);
    snprintf(msg.origin, sizeof(msg.origin), "http://shed-%s", cell);
    snprintf(msg.aggregator, sizeof(msg.aggregator), "http://agg-%s", cell);
    msg.epoch = epoch;
    msg.seq = 5;
    msg.lease_ms = 1000;
    for (int i = 0; i < n; i++) {
        char id[32], url[48];
        snprintf(id, sizeof(id), "%s-%d", cell, i);
        snprintf(url, sizeof(url), "http://%s-%d:80", cell, i);
        struct proto_sync_entry e = test_entry("burrow", id, url, w);
        e.incarnation = 1;
        e.state = st;
        e.age_ms = 10;
        e.seq = 5;
        cr_assert_eq(proto_sync_msg_add(&msg, &e), 0);
    }
    cr_assert_eq(shed_master_apply(mm, &msg, now, &ack), 0);
    cr_assert(!ack.need_full);
    cr_assert_eq(ack.seq, 5);
    proto_sync_msg_free(&msg);
}

/* Every test: the config of mkcfg() and a master with the default hop limit. */
static struct shed_config *cfg;
static struct shed_master *m;

static void
setup(void)
{
    cfg = mkcfg();
    cr_assert_eq(shed_master_create(cfg, 0, &m), 0);
}

static void
teardown(void)
{
    shed_master_destroy(m);
    free(cfg);
}

TestSuite(master, .init = setup, .fini = teardown);

/* An empty message of <kind> from cell b's shed, epoch 1. */
static void
msg_b(struct proto_sync_msg *msg, enum proto_sync_kind kind, uint64_t since, uint64_t seq)
{
    proto_sync_msg_init(msg);
    msg->kind = kind;
    snprintf(msg->cell, sizeof(msg->cell), "b");
    snprintf(msg->origin, sizeof(msg->origin), "http://shed-b");
    msg->epoch = 1;
    msg->since = since;
    msg->seq = seq;
    msg->lease_ms = 1000;
}

static void
token(struct proto_token *t, const char *visited)
{
    cr_assert_eq(proto_token_init(t, "burrow", 100, 1), 0);
    t->hops = 1;
    if (visited != NULL)
        cr_assert_eq(proto_token_add_cell(t, visited), 0);
}

static struct shed_master_req
req(const struct proto_token *t, uint64_t now, uint64_t rnd)
{
    struct shed_master_req r = {.service = "burrow",
                                .token = t,
                                .account = "eday",
                                .alen = 4,
                                .key = "q/m1",
                                .klen = 4,
                                .now_ms = now,
                                .rnd = rnd};
    return r;
}

Test(master, proximity_first_and_visited_excluded)
{
    struct proto_token t;
    struct shed_master_pick p;

    push(m, "a", 3, 100, PROTO_SYNC_UP, 1000, 1);
    push(m, "b", 3, 100, PROTO_SYNC_UP, 1000, 1);
    push(m, "d", 3, 100, PROTO_SYNC_UP, 1000, 1);
    token(&t, "a");
    struct shed_master_req r = req(&t, 1100, 7);
    cr_assert_eq(shed_master_route(m, &r, &p), 0);
    cr_assert_str_eq(p.cell, "b", "a is visited, b (10) beats d (20)");
    cr_assert_eq(p.candidates, 2);
    cr_assert_eq(strncmp(p.url, "http://b-", 9), 0);
    cr_assert_eq(proto_token_add_cell(&t, "b"), 0);
    cr_assert_eq(shed_master_route(m, &r, &p), 0);
    cr_assert_str_eq(p.cell, "d");
    cr_assert_eq(proto_token_add_cell(&t, "d"), 0);
    cr_assert_eq(shed_master_route(m, &r, &p), -ENOENT);
}

Test(master, redirect_goes_to_bucket_primary_of_that_cells_ring)
{
    struct proto_token t;
    struct shed_master_pick p;
    struct ring_member rm[3];
    char ids[3][16], urls[3][32];
    struct ring *ring;
    uint32_t row[RING_MAX_R];

    push(m, "b", 3, 100, PROTO_SYNC_UP, 1000, 1);
    for (int i = 0; i < 3; i++) {
        snprintf(ids[i], sizeof(ids[i]), "b-%d", i);
        snprintf(urls[i], sizeof(urls[i]), "http://b-%d:80", i);
        rm[i] = (struct ring_member){.id = ids[i], .url = urls[i], .zone = "", .weight = 100};
    }
    cr_assert_eq(ring_build(&cfg->services[0].ring, rm, 3, &ring), 0);
    token(&t, "a");
    for (int k = 0; k < 20; k++) {
        char key[32];
        snprintf(key, sizeof(key), "q/m%d", k);
        struct shed_master_req r = req(&t, 1100, 3);
        r.key = key;
        r.klen = strlen(key);
        cr_assert_eq(shed_master_route(m, &r, &p), 0);
        uint32_t b = ring_bucket(&cfg->services[0].ring, "eday", 4, key, strlen(key));
        cr_assert_eq(p.bucket, b);
        cr_assert_gt(ring_row(ring, b, row), 0);
        cr_assert_str_eq(p.url, ring_member_at(ring, row[0])->url);
    }
    ring_destroy(ring);
}

Test(master, down_primary_skipped_and_lease_ages_out)
{
    struct proto_token t;
    struct shed_master_pick p;

    push(m, "b", 3, 100, PROTO_SYNC_UP, 1000, 1);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1100), 3);
    token(&t, "a");
    struct shed_master_req r = req(&t, 1100, 3);
    cr_assert_eq(shed_master_route(m, &r, &p), 0);
    /* The cell stops pushing: after its lease (1000 ms) nothing is live. */
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1000 - 10 + 1000), 0);
    r.now_ms = 3000;
    cr_assert_eq(shed_master_route(m, &r, &p), -ENOENT);
    /* A push marking them down: not live even though freshly heard. */
    push(m, "b", 3, 100, PROTO_SYNC_DOWN, 5000, 2);
    r.now_ms = 5001;
    cr_assert_eq(shed_master_route(m, &r, &p), -ENOENT);
}

Test(master, capacity_spreads_within_proximity_class)
{
    struct proto_token t;
    struct shed_master_pick p;
    int nb = 0, nc = 0;

    push(m, "b", 1, 100, PROTO_SYNC_UP, 1000, 1); /* live weight 100 */
    push(m, "c", 3, 100, PROTO_SYNC_UP, 1000, 1); /* live weight 300 */
    token(&t, "a");
    for (uint64_t i = 0; i < 4000; i++) {
        struct shed_master_req r = req(&t, 1100, i * 2654435761u);
        cr_assert_eq(shed_master_route(m, &r, &p), 0);
        if (strcmp(p.cell, "b") == 0)
            nb++;
        else if (strcmp(p.cell, "c") == 0)
            nc++;
        else
            cr_assert_fail("picked %s", p.cell);
    }
    /* Both get load, about 1:3 by capacity. */
    cr_assert_gt(nb, 700);
    cr_assert_lt(nb, 1300);
    cr_assert_gt(nc, 2700);
}

Test(master, hops_and_lists)
{
    struct proto_token t;
    struct shed_master_pick p;

    shed_master_destroy(m);
    cr_assert_eq(shed_master_create(cfg, 2, &m), 0);
    push(m, "b", 2, 100, PROTO_SYNC_UP, 1000, 1);
    token(&t, "a");
    struct shed_master_req r = req(&t, 1100, 1);
    r.list = true;
    cr_assert_eq(shed_master_route(m, &r, &p), 0);
    cr_assert_str_eq(p.url, "http://agg-b");
    t.hops = 2;
    cr_assert_eq(shed_master_route(m, &r, &p), 0, "at the maximum: still routed");
    t.hops = 3;
    cr_assert_eq(shed_master_route(m, &r, &p), -ELOOP);
}

Test(master, merge_rules_and_need_full)
{
    struct proto_sync_msg msg;
    struct proto_sync_ack ack;
    struct proto_sync_entry e;

    push(m, "b", 1, 100, PROTO_SYNC_UP, 1000, 9); /* origin shed-b, epoch 9, seq 5 */
    proto_sync_msg_init(&msg);
    msg.kind = PROTO_SYNC_DELTA;
    snprintf(msg.cell, sizeof(msg.cell), "b");
    snprintf(msg.origin, sizeof(msg.origin), "http://shed-b");
    msg.epoch = 9;
    msg.since = 8; /* we only have 5 from it */
    msg.seq = 9;
    msg.lease_ms = 1000;
    cr_assert_eq(shed_master_apply(m, &msg, 1200, &ack), 0);
    cr_assert(ack.need_full);
    /* A delta that follows: an older incarnation is ignored, a gone tombstone sticks. */
    msg.since = 5;
    e = test_entry("burrow", "b-0", "http://b-0:80", 100);
    e.state = PROTO_SYNC_DOWN;
    cr_assert_eq(proto_sync_msg_add(&msg, &e), 0);
    cr_assert_eq(shed_master_apply(m, &msg, 1200, &ack), 0);
    cr_assert(!ack.need_full);
    cr_assert_eq(ack.seq, 9);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1200), 1);
    msg.entries[0].incarnation = 1;
    msg.entries[0].state = PROTO_SYNC_GONE;
    msg.since = 9;
    msg.seq = 10;
    cr_assert_eq(shed_master_apply(m, &msg, 1300, &ack), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1300), 0);
    msg.entries[0].state = PROTO_SYNC_UP; /* same incarnation cannot come back */
    msg.since = 10;
    msg.seq = 11;
    cr_assert_eq(shed_master_apply(m, &msg, 1400, &ack), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1400), 0);
    msg.entries[0].incarnation = 2; /* a new life can */
    msg.since = 11;
    msg.seq = 12;
    cr_assert_eq(shed_master_apply(m, &msg, 1500, &ack), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1500), 1);
    /* A restarted sender (new epoch) with a delta must send a full snapshot. */
    msg.epoch = 10;
    cr_assert_eq(shed_master_apply(m, &msg, 1500, &ack), 0);
    cr_assert(ack.need_full);
    proto_sync_msg_free(&msg);
    json_t *st = shed_master_status(m, 1500);
    cr_assert_not_null(st);
    cr_assert_eq(json_array_size(json_object_get(st, "cells")), 1);
    json_decref(st);
}

Test(master, too_many_services_in_a_cell_is_enospc)
{
    struct proto_sync_msg msg;
    struct proto_sync_ack ack;

    msg_b(&msg, PROTO_SYNC_FULL, 0, 1);
    for (int i = 0; i < 65; i++) { /* one over the per-cell maximum */
        char svc[16], id[16], url[32];
        snprintf(svc, sizeof(svc), "svc%d", i);
        snprintf(id, sizeof(id), "b-%d", i);
        snprintf(url, sizeof(url), "http://b-%d:80", i);
        struct proto_sync_entry e = test_entry(svc, id, url, 100);
        e.incarnation = 1;
        cr_assert_eq(proto_sync_msg_add(&msg, &e), 0);
    }
    cr_assert_eq(shed_master_apply(m, &msg, 1000, &ack), -ENOSPC);
    msg.cell[0] = '\0';
    cr_assert_eq(shed_master_apply(m, &msg, 1000, &ack), -EINVAL);
    proto_sync_msg_free(&msg);
}

/* A push of <n> entries "x-<i>" for i = perm(k), k in [from, from + n). */
static int
push_scrambled(uint32_t from, uint32_t n, enum proto_sync_state st, uint64_t now, uint64_t seq)
{
    struct proto_sync_msg msg;
    struct proto_sync_ack ack;

    msg_b(&msg, PROTO_SYNC_FULL, 0, seq);
    for (uint32_t k = from; k < from + n; k++) {
        char id[32], url[48];
        uint32_t i = (k * 2749u) % 4096u; /* 2749 is odd: a permutation of 0..4095 */
        snprintf(id, sizeof(id), "x-%04u", i);
        snprintf(url, sizeof(url), "http://x-%u:80", i);
        struct proto_sync_entry e = test_entry("burrow", id, url, 100);
        e.incarnation = 1;
        e.state = st;
        cr_assert_eq(proto_sync_msg_add(&msg, &e), 0);
    }
    int rc = shed_master_apply(m, &msg, now, &ack);
    proto_sync_msg_free(&msg);
    return rc;
}

Test(master, thousands_of_entries_in_any_order_merge_once)
{
    /* 4096 new entries in scrambled id order, then the same again: no copy. */
    cr_assert_eq(push_scrambled(0, 4096, PROTO_SYNC_UP, 1000, 1), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1000), 4096);
    cr_assert_eq(push_scrambled(0, 4096, PROTO_SYNC_UP, 1100, 2), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1100), 4096);
    /* Half of them go down: each update found its entry. */
    cr_assert_eq(push_scrambled(0, 2048, PROTO_SYNC_DOWN, 1200, 3), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1200), 2048);
    /* 30 leases later only 100 are heard: the rest are forgotten. */
    cr_assert_eq(push_scrambled(3000, 100, PROTO_SYNC_UP, 31200, 4), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 31200), 100);
    /* Everything comes back once (the index was renumbered), and the
     * per-service maximum still holds. */
    cr_assert_eq(push_scrambled(0, 4096, PROTO_SYNC_UP, 31300, 5), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 31300), 4096);
    struct proto_sync_msg msg;
    struct proto_sync_ack ack;
    msg_b(&msg, PROTO_SYNC_DELTA, 5, 6);
    struct proto_sync_entry e = test_entry("burrow", "y-one-too-many", "http://y:80", 100);
    e.incarnation = 1;
    e.state = PROTO_SYNC_UP;
    cr_assert_eq(proto_sync_msg_add(&msg, &e), 0);
    cr_assert_eq(shed_master_apply(m, &msg, 31400, &ack), -ENOSPC);
    proto_sync_msg_free(&msg);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 31400), 4096);
}
