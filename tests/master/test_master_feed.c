/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for shed_master_feed(): a master's per-cell tables built from
 * what etcd holds (docs/etcd.md "Masters"), the same data path as the etcd
 * thread's: keys into a shed_etcd_view, what changed (or the whole view,
 * every third of a lease) into a message, fed to the master. No push, no
 * origin, no acknowledgement.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ring/ring.h"
#include "shed/etcd.h"
#include "shed/master.h"

static struct shed_config *cfg;
static struct shed_master *m;
static struct shed_etcd_view *view;
static struct proto_sync_msg out;

static void
setup(void)
{
    static const char *const names[] = {"a", "b", "c"};
    static const uint32_t prox[] = {0, 10, 20};

    cfg = calloc(1, sizeof(*cfg));
    cr_assert_not_null(cfg);
    for (size_t i = 0; i < 3; i++) {
        snprintf(cfg->cells[i].name, sizeof(cfg->cells[i].name), "%s", names[i]);
        cfg->cells[i].proximity = prox[i];
    }
    cfg->ncells = 3;
    snprintf(cfg->services[0].name, sizeof(cfg->services[0].name), "burrow");
    cfg->services[0].kind = SHED_KIND_BURROW;
    ring_config_default(&cfg->services[0].ring);
    cfg->services[0].ring.buckets = 1024;
    cfg->nservices = 1;
    cr_assert_eq(shed_master_create(cfg, 0, &m), 0);
    view = shed_etcd_view_create();
    cr_assert_not_null(view);
    proto_sync_msg_init(&out);
}

static void
teardown(void)
{
    proto_sync_msg_free(&out);
    shed_etcd_view_destroy(view);
    shed_master_destroy(m);
    free(cfg);
}

TestSuite(feed, .init = setup, .fini = teardown);

/* Hand what changed in cell <cell> to the master at <now> (lease 1000 ms),
 * with <agg> as the cell's aggregator record ("" for none). */
static int
feed(const char *cell, const char *agg, uint64_t now)
{
    snprintf(out.cell, sizeof(out.cell), "%s", cell);
    snprintf(out.aggregator, sizeof(out.aggregator), "%s", agg);
    out.lease_ms = 1000;
    int rc = shed_master_feed(m, &out, now);
    proto_sync_msg_free(&out);
    proto_sync_msg_init(&out);
    return rc;
}

/* The key "burrow/<id>/<shed>" written by line shed <shed> for member <id>. */
static void
put(const char *id, const char *shed, uint64_t inc, enum proto_sync_state st, uint64_t rev)
{
    char rel[128];
    struct proto_sync_entry e;

    memset(&e, 0, sizeof(e));
    e.incarnation = inc;
    e.state = st;
    e.weight = 100;
    snprintf(e.url, sizeof(e.url), "http://%s:80", id);
    snprintf(rel, sizeof(rel), "burrow/%s/%s", id, shed);
    cr_assert_eq(shed_etcd_view_put(view, rel, &e, rev, &out), 0);
}

static void
del(const char *id, const char *shed)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "burrow/%s/%s", id, shed);
    cr_assert_eq(shed_etcd_view_delete(view, rel, &out), 0);
}

static struct shed_master_req
req(const struct proto_token *t, const char *key, uint64_t now)
{
    struct shed_master_req r = {.service = "burrow",
                                .token = t,
                                .account = "eday",
                                .alen = 4,
                                .key = key,
                                .klen = strlen(key),
                                .now_ms = now,
                                .rnd = 3};
    return r;
}

static void
token(struct proto_token *t, const char *visited)
{
    cr_assert_eq(proto_token_init(t, "burrow", 100, 1), 0);
    t->hops = 1;
    cr_assert_eq(proto_token_add_cell(t, visited), 0);
}

Test(feed, a_cell_known_from_etcd_only_gets_escalations_at_its_primary)
{
    struct proto_token t;
    struct shed_master_pick p;
    struct ring_member rm[3];
    char ids[3][16], urls[3][32];
    struct ring *ring;
    uint32_t row[RING_MAX_R];

    /* Two line sheds of b wrote keys; b-1 only heard by s2. */
    put("b-0", "s1:80", 1, PROTO_SYNC_UP, 10);
    put("b-0", "s2:80", 1, PROTO_SYNC_UP, 11);
    put("b-1", "s2:80", 1, PROTO_SYNC_UP, 12);
    put("b-2", "s1:80", 1, PROTO_SYNC_UP, 13);
    cr_assert_eq(feed("b", "http://agg-b", 1000), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1100), 3);
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
        struct shed_master_req r = req(&t, key, 1100);
        cr_assert_eq(shed_master_route(m, &r, &p), 0);
        cr_assert_str_eq(p.cell, "b");
        uint32_t b = ring_bucket(&cfg->services[0].ring, "eday", 4, key, strlen(key));
        cr_assert_gt(ring_row(ring, b, row), 0);
        cr_assert_str_eq(p.url, ring_member_at(ring, row[0])->url);
    }
    ring_destroy(ring);
    /* Lists go to the aggregator of b's cell record. */
    struct shed_master_req r = req(&t, "", 1100);
    r.list = true;
    cr_assert_eq(shed_master_route(m, &r, &p), 0);
    cr_assert_str_eq(p.url, "http://agg-b");
}

Test(feed, last_key_deleted_is_down_refresh_keeps_the_rest_live)
{
    struct proto_token t;
    struct shed_master_pick p;

    put("b-0", "s1:80", 1, PROTO_SYNC_UP, 10);
    put("b-0", "s2:80", 1, PROTO_SYNC_UP, 11);
    put("b-1", "s1:80", 1, PROTO_SYNC_UP, 12);
    cr_assert_eq(feed("b", "", 1000), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1000), 2);
    /* One of b-0's keys goes: still up (s2 hears it). */
    del("b-0", "s1:80");
    cr_assert_eq(feed("b", "", 1200), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1200), 2);
    /* Its last key goes: down at once, not a lease later. */
    del("b-0", "s2:80");
    cr_assert_eq(out.nentries, 1);
    cr_assert_eq(out.entries[0].state, PROTO_SYNC_DOWN);
    cr_assert_eq(feed("b", "", 1300), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1300), 1);
    /* Without a refresh b-1 fades after the lease; the etcd thread feeds
     * the whole view every third of it. */
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1000 + 1000), 0);
    cr_assert_eq(shed_etcd_view_export(view, &out), 0);
    cr_assert_eq(feed("b", "", 1900), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 2800), 1);
    token(&t, "a");
    struct shed_master_req r = req(&t, "q/m1", 2800);
    cr_assert_eq(shed_master_route(m, &r, &p), 0);
    cr_assert_str_eq(p.url, "http://b-1:80");
    /* The last member's key goes too: no cell can take it. */
    del("b-1", "s1:80");
    cr_assert_eq(feed("b", "", 2900), 0);
    r.now_ms = 2900;
    cr_assert_eq(shed_master_route(m, &r, &p), -ENOENT);
}

Test(feed, a_vanished_cell_goes_down_on_reload_and_a_new_life_comes_back)
{
    struct shed_etcd_view *next = shed_etcd_view_create();

    put("b-0", "s1:80", 1, PROTO_SYNC_UP, 10);
    cr_assert_eq(feed("b", "", 1000), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1000), 1);
    /* A reload (compaction) finds b-0 gone: down. */
    cr_assert_eq(shed_etcd_view_replace(view, next, &out), 0);
    cr_assert_eq(feed("b", "", 1100), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1100), 0);
    /* Its next incarnation is up again. */
    put("b-0", "s1:80", 2, PROTO_SYNC_UP, 20);
    cr_assert_eq(feed("b", "", 1200), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1200), 1);
    /* "gone" is final for an incarnation: a stale "up" of it changes nothing. */
    put("b-0", "s1:80", 2, PROTO_SYNC_GONE, 21);
    cr_assert_eq(feed("b", "", 1300), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1300), 0);
    struct proto_sync_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.service, sizeof(e.service), "burrow");
    snprintf(e.id, sizeof(e.id), "b-0");
    snprintf(e.url, sizeof(e.url), "http://b-0:80");
    e.incarnation = 2;
    e.state = PROTO_SYNC_UP;
    e.weight = 100;
    cr_assert_eq(proto_sync_msg_add(&out, &e), 0);
    cr_assert_eq(feed("b", "", 1400), 0);
    cr_assert_eq(shed_master_live(m, "b", "burrow", 1400), 0);
}

Test(feed, needs_a_cell_and_leaves_pushes_alone)
{
    struct proto_sync_msg msg;
    struct proto_sync_ack ack;

    put("c-0", "s1:80", 1, PROTO_SYNC_UP, 10);
    cr_assert_eq(feed("", "", 1000), -EINVAL);
    cr_assert_eq(shed_master_live(m, "c", "burrow", 1000), 0);
    /* A push of cell a from its line shed still works after feeds: the
     * feed keeps no sender state. */
    put("c-0", "s1:80", 1, PROTO_SYNC_UP, 11);
    cr_assert_eq(feed("c", "", 1000), 0);
    proto_sync_msg_init(&msg);
    msg.kind = PROTO_SYNC_FULL;
    snprintf(msg.cell, sizeof(msg.cell), "a");
    snprintf(msg.origin, sizeof(msg.origin), "http://shed-a");
    msg.epoch = 1;
    msg.seq = 3;
    msg.lease_ms = 1000;
    cr_assert_eq(shed_master_apply(m, &msg, 1000, &ack), 0);
    cr_assert(!ack.need_full);
    cr_assert_eq(ack.seq, 3);
    proto_sync_msg_free(&msg);
    cr_assert_eq(shed_master_live(m, "c", "burrow", 1000), 1);
}
