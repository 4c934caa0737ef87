/* SPDX-License-Identifier: ISC */
/*
 * The registry's replication hooks with an injected clock: export/apply
 * between two registries gives identical rings, deltas carry only what
 * changed, peers never echo, removals replicate, a snapshot is served as
 * unconfirmed for one lease, client suspicion, and the sequence the
 * escalation ordering rule waits for.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sync.h"
#include "shed/config.h"
#include "shed/rcu.h"
#include "shed/registry.h"

#include "entry.h"

static const char cfg_text[] =
    "cell: a\ncredential: k\n"
    "timings: {heartbeat_interval: 100ms, lease: 300ms, evict_after: 10s, drain_window: 2s,\n"
    "          pin_lifetime: 1s, join_heartbeats: 1}\n"
    "services: {burrow: {kind: burrow, buckets: 64, k: 2, r: 2, weight_scale: 10}}\n";

static struct registry *
make(void)
{
    char err[SHED_ERR_MAX];
    struct shed_config *c = NULL;
    struct registry *reg = NULL;

    cr_assert_eq(shed_config_parse(cfg_text, strlen(cfg_text), "r.yaml", &c, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(registry_create(c, 1, &reg), 0);
    shed_config_free(c);
    return reg;
}

static void
beat(struct registry *reg, int i, uint64_t now)
{
    struct proto_heartbeat hb = {.weight = 1, .state = PROTO_HB_UP, .incarnation = 1};
    struct proto_heartbeat_reply r;

    snprintf(hb.service, sizeof(hb.service), "burrow");
    snprintf(hb.id, sizeof(hb.id), "b%d", i);
    snprintf(hb.url, sizeof(hb.url), "http://127.0.0.1:%d", 9000 + i);
    cr_assert_eq(registry_heartbeat(reg, &hb, now, &r), 0);
}

static void
digest(struct registry *reg, char out[33], size_t *nlive)
{
    unsigned t = shed_rcu_enter(registry_rcu(reg));
    const struct registry_route *r = registry_route_find(registry_view(reg), "burrow", 6);
    cr_assert_not_null(r);
    memcpy(out, r->digest, 33);
    *nlive = 0;
    for (size_t i = 0; i < ring_size(r->ring); i++)
        if (atomic_load(&r->live[i]) == REGISTRY_UP)
            (*nlive)++;
    shed_rcu_leave(registry_rcu(reg), t);
}

/* Export from <from> since <since> and apply to <to>; returns the seq. */
static int64_t
ship(struct registry *from, struct registry *to, uint64_t since, bool peer, uint64_t now,
     size_t *nentries)
{
    struct proto_sync_msg m;
    char *json = NULL;
    size_t len = 0;

    proto_sync_msg_init(&m);
    m.kind = since ? PROTO_SYNC_DELTA : PROTO_SYNC_FULL;
    snprintf(m.cell, sizeof(m.cell), "a");
    int64_t seq = registry_export(from, since, peer, now, &m);
    cr_assert_geq(seq, 0);
    /* Through the wire format, as in the daemon. */
    cr_assert_eq(proto_sync_encode(&m, &json, &len), 0);
    proto_sync_msg_free(&m);
    cr_assert_eq(proto_sync_decode(json, len, &m), 0);
    free(json);
    if (nentries != NULL)
        *nentries = m.nentries;
    cr_assert_eq(registry_apply(to, &m, now, false, NULL), 0);
    proto_sync_msg_free(&m);
    return seq;
}

Test(replication, peers_build_identical_rings)
{
    struct registry *a = make(), *b = make();
    char da[33], db[33];
    size_t la, lb, n;

    beat(a, 1, 10);
    beat(a, 2, 10);
    beat(b, 3, 10); /* b3 heartbeats only to b */
    registry_tick(a, 20);
    registry_tick(b, 20);
    int64_t sa = ship(a, b, 0, true, 30, NULL);
    int64_t sb = ship(b, a, 0, true, 30, NULL);
    registry_tick(a, 40);
    registry_tick(b, 40);
    digest(a, da, &la);
    digest(b, db, &lb);
    cr_assert_str_eq(da, db, "same records, same ring on both");
    cr_assert_eq(la, 3);
    cr_assert_eq(lb, 3);

    /* A delta since the last ack carries only what changed here, and
     * nothing b told a comes back to b. */
    beat(a, 1, 100);
    ship(a, b, (uint64_t)sa, true, 110, &n);
    cr_assert_eq(n, 1, "only b1's renewal");
    ship(b, a, (uint64_t)sb, true, 110, &n);
    cr_assert_eq(n, 0, "b heard nothing itself since: no echo of a's entries");

    /* b3 keeps heartbeating to b only; a keeps it alive through sync. */
    for (uint64_t t = 150; t < 1000; t += 100) {
        beat(b, 3, t);
        beat(a, 1, t);
        beat(a, 2, t);
        sb = ship(b, a, (uint64_t)sb, true, t + 5, NULL);
        registry_tick(a, t + 10);
    }
    digest(a, da, &la);
    cr_assert_eq(la, 3, "a still routes to b3 long after its own lease for it would end");
    registry_destroy(a);
    registry_destroy(b);
}

Test(replication, removal_replicates)
{
    struct registry *a = make(), *b = make();
    char d[33];
    size_t live;

    beat(a, 1, 10);
    beat(a, 2, 10);
    registry_tick(a, 20);
    int64_t s = ship(a, b, 0, true, 20, NULL);
    registry_tick(b, 30);
    digest(b, d, &live);
    cr_assert_eq(live, 2);
    cr_assert_eq(registry_deregister(a, "burrow", 6, "b2", 2, 1, 40), 0);
    ship(a, b, (uint64_t)s, true, 50, NULL);
    registry_tick(b, 60);
    digest(b, d, &live);
    cr_assert_eq(live, 1, "the deregistration reached the peer");
    registry_destroy(a);
    registry_destroy(b);
}

Test(replication, snapshot_is_unconfirmed_for_one_lease)
{
    struct registry *a = make(), *r = make();
    struct proto_sync_msg m;
    char da[33], dr[33];
    size_t la, lr;

    beat(a, 1, 10);
    beat(a, 2, 10);
    registry_tick(a, 20);
    proto_sync_msg_init(&m);
    m.kind = PROTO_SYNC_FULL;
    registry_export(a, 0, false, 5000, &m); /* written long after the last heartbeat */
    cr_assert_eq(registry_apply(r, &m, 100000, true, NULL), 0);
    proto_sync_msg_free(&m);
    registry_tick(r, 100000);
    digest(a, da, &la);
    digest(r, dr, &lr);
    cr_assert_str_eq(da, dr, "a restarted shed routes exactly as before");
    cr_assert_eq(lr, 2, "served although the entries are old");
    registry_tick(r, 100000 + 299);
    digest(r, dr, &lr);
    cr_assert_eq(lr, 2);
    registry_tick(r, 100000 + 300);
    digest(r, dr, &lr);
    cr_assert_eq(lr, 0, "unconfirmed for one lease only");
    registry_destroy(a);
    registry_destroy(r);
}

Test(replication, suspect_and_escalation_seq)
{
    struct registry *a = make();
    char d[33], url[64];
    size_t live;

    beat(a, 1, 10);
    registry_tick(a, 20);
    cr_assert(registry_host_url(a, "127.0.0.1:9001", url, sizeof(url)));
    cr_assert_str_eq(url, "http://127.0.0.1:9001");
    /* The shed's probe failed: skipped at once, until 50 at least. */
    cr_assert_eq(registry_probe_failed(a, "127.0.0.1:9001", 20, 50), 1);
    digest(a, d, &live);
    cr_assert_eq(live, 0, "probe failed: skipped at once");
    /* Routers see no live member before the tick does: everything so far
     * must be acknowledged before an escalation. */
    cr_assert_eq(registry_escalation_seq(a, "burrow", 6), registry_seq(a));
    beat(a, 1, 30); /* a heartbeat does not clear a held suspicion */
    registry_tick(a, 40);
    digest(a, d, &live);
    cr_assert_eq(live, 0);
    uint64_t empty = registry_last_empty_seq(a);
    cr_assert_gt(empty, 0);
    cr_assert_eq(registry_escalation_seq(a, "burrow", 6), empty);
    beat(a, 1, 60); /* after the hold, a heartbeat brings it back */
    digest(a, d, &live);
    cr_assert_eq(live, 1, "up again after the hold");
    cr_assert_eq(registry_probe_failed(a, "127.0.0.1:1", 70, 100), 0);
    registry_destroy(a);
}

Test(replication, invalid_entries_ignored)
{
    struct registry *r = make();
    struct proto_sync_msg m;
    struct proto_sync_entry e;
    char d[33];
    size_t live;

    proto_sync_msg_init(&m);
    m.kind = PROTO_SYNC_FULL;
    e = test_entry("burrow", "x", "javascript:alert(1)", 1);
    cr_assert_eq(proto_sync_msg_add(&m, &e), 0);
    snprintf(e.url, sizeof(e.url), "http://127.0.0.1:1");
    e.weight = 11; /* above weight_scale */
    cr_assert_eq(proto_sync_msg_add(&m, &e), 0);
    snprintf(e.service, sizeof(e.service), "nope");
    e.weight = 1;
    cr_assert_eq(proto_sync_msg_add(&m, &e), 0);
    cr_assert_eq(registry_apply(r, &m, 10, false, NULL), 0);
    proto_sync_msg_free(&m);
    registry_tick(r, 20);
    digest(r, d, &live);
    cr_assert_eq(live, 0);
    cr_assert_eq(registry_size(r), 0);
    registry_destroy(r);
}
