/* SPDX-License-Identifier: ISC */
/* shed/route without a daemon: Host -> service, Location building
 * (re-encoding, query kept), the line role's decisions against a real
 * registry, escalation to a master in the same process, the master role's
 * decisions, 302/307, and invariants over generated requests. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/token.h"
#include "shed/config.h"
#include "shed/hints.h"
#include "shed/master.h"
#include "shed/rcu.h"
#include "shed/registry.h"
#include "shed/route.h"

Test(route, host_service)
{
    char out[SHED_NAME_MAX];
    cr_assert_eq(shed_route_host_service("burrow.service", "", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_route_host_service("Burrow.SERVICE:8080", "", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_route_host_service("127.0.0.1:8080", "", out), -ENOENT);
    cr_assert_eq(shed_route_host_service("127.0.0.1:8080", "burrow", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_route_host_service(NULL, "storage", out), 0);
    cr_assert_str_eq(out, "storage");
    cr_assert_eq(shed_route_host_service(NULL, "", out), -EINVAL);
    cr_assert_eq(shed_route_host_service("bu rrow.service", "", out), -EINVAL);
    cr_assert_eq(shed_route_host_service("burrow.service:80x", "", out), -EINVAL);
    cr_assert_eq(shed_route_host_service(".service", "", out), -ENOENT);
}

/* DNS wildcards (*.burrow.service) send any name under the service to the
 * sheds: the label before ".service" names it (issue 16, item 9). */
Test(route, host_service_wildcard_names)
{
    char out[SHED_NAME_MAX];
    cr_assert_eq(shed_route_host_service("x.burrow.service", "", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_route_host_service("A.b-1.Burrow.service:8080", "", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_route_host_service("x.burrow.service", "storage", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_route_host_service(".burrow.service", "", out), -EINVAL);
    cr_assert_eq(shed_route_host_service("x..burrow.service", "", out), -EINVAL);
    cr_assert_eq(shed_route_host_service("x.burrow..service", "", out), -EINVAL);
    cr_assert_eq(shed_route_host_service("x y.burrow.service", "", out), -EINVAL);
}

Test(route, location_reencodes_and_keeps_query)
{
    char buf[SHED_LOCATION_MAX];
    struct proto_slice segs[4] = {{"v1.0", 4}, {"acc t", 5}, {"q/\xff", 3}, {"m~._-", 5}};
    struct shed_query q = {.n = 3};
    q.args[0] = (struct shed_arg){"limit", "10"};
    q.args[1] = (struct shed_arg){"marker", "a%2Fb+c"};
    q.args[2] = (struct shed_arg){"flag", NULL};
    long n = shed_route_location(buf, sizeof(buf), "http://10.0.0.1:80", segs, 4, &q, NULL);
    cr_assert_gt(n, 0);
    cr_assert_str_eq(buf, "http://10.0.0.1:80/v1.0/acc%20t/q%2F%FF/m~._-?limit=10&marker=a%2Fb%20c"
                          "&flag");
    cr_assert_eq((size_t)n, strlen(buf));
    q.args[0].val = "%zz";
    cr_assert_eq(shed_route_location(buf, sizeof(buf), "http://h", segs, 4, &q, NULL),
                 -PROTO_EBADENC);
    q.args[0].val = "%00";
    cr_assert_eq(shed_route_location(buf, sizeof(buf), "http://h", segs, 4, &q, NULL),
                 -PROTO_EBADENC);
    q.n = 0;
    cr_assert_eq(shed_route_location(buf, 20, "http://h", segs, 4, &q, NULL), -PROTO_ETOOLONG);
}

static const char cfg_text[] =
    "cell: a\ncredential: k\naggregator: http://127.0.0.1:7000\n"
    "timings: {heartbeat_interval: 100ms, lease: 300ms, evict_after: 1s, drain_window: 2s,\n"
    "          pin_lifetime: 1s, join_heartbeats: 1}\n"
    "services: {burrow: {kind: burrow, buckets: 64, k: 2, r: 2}, storage: {kind: any}}\n";

struct fixture {
    struct shed_config *cfg;
    struct registry *reg;
};

static struct fixture
setup3(void)
{
    struct fixture f;
    char err[SHED_ERR_MAX];
    cr_assert_eq(shed_config_parse(cfg_text, strlen(cfg_text), "l.yaml", &f.cfg, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(registry_create(f.cfg, 1, &f.reg), 0);
    for (int i = 1; i <= 3; i++) {
        struct proto_heartbeat hb = {.weight = 1, .incarnation = 1};
        strcpy(hb.service, "burrow");
        snprintf(hb.id, sizeof(hb.id), "b%d", i);
        snprintf(hb.url, sizeof(hb.url), "http://127.0.0.1:900%d", i);
        struct proto_heartbeat_reply r;
        cr_assert_eq(registry_heartbeat(f.reg, &hb, 0, &r), 0);
        strcpy(hb.service, "storage");
        snprintf(hb.id, sizeof(hb.id), "s%d", i);
        snprintf(hb.url, sizeof(hb.url), "http://127.0.0.1:800%d", i);
        cr_assert_eq(registry_heartbeat(f.reg, &hb, 0, &r), 0);
    }
    registry_tick(f.reg, 1);
    return f;
}

/* Route one request through the line role, with escalator <esc>. */
static void
route_esc(struct fixture *f, const struct shed_escalator *esc, enum shed_method m, const char *host,
          const char *path, const struct shed_query *q, struct shed_answer *a)
{
    struct shed_query none;
    unsigned slot;
    enum shed_level level;
    shed_query_init(&none);
    unsigned t = shed_rcu_enter(registry_rcu(f->reg));
    struct shed_router rt = {
        .cfg = f->cfg, .view = registry_view(f->reg), .esc = esc, .unix_s = 1000};
    struct shed_request req = {
        .m = m, .host = host, .path = path, .q = q != NULL ? q : &none, .now_ms = 5};
    shed_line_route(&rt, &req, a, &slot, &level);
    shed_rcu_leave(registry_rcu(f->reg), t);
}

static void
route(struct fixture *f, enum shed_method m, const char *host, const char *path,
      struct shed_answer *a)
{
    route_esc(f, NULL, m, host, path, NULL, a);
}

Test(route, message_goes_to_live_primary_then_next_replica)
{
    struct fixture f = setup3();
    struct shed_answer a;
    route(&f, SHED_M_PUT, "burrow.service", "/v1.0/acct/q/m1", &a);
    cr_assert_eq(a.status, 307);
    cr_assert_str_eq(a.generation, "1");
    cr_assert_str_eq(a.pin_ttl, "1");
    cr_assert_not_null(a.ring);
    cr_assert(strncmp(a.ring, "b=64; k=2; sa=", 14) == 0, "%s", a.ring);
    /* The primary is the first of the bucket's row. */
    unsigned t = shed_rcu_enter(registry_rcu(f.reg));
    const struct registry_route *r = registry_route_find(registry_view(f.reg), "burrow", 6);
    uint32_t bucket = ring_bucket(ring_config(r->ring), "acct", 4, "q/m1", 4);
    char want[64];
    snprintf(want, sizeof(want), "%u", bucket);
    cr_assert_str_eq(a.bucket, want);
    uint32_t row[RING_MAX_R];
    cr_assert_eq(ring_row(r->ring, bucket, row), 2);
    const char *primary = ring_member_at(r->ring, row[0])->url;
    const char *second = ring_member_at(r->ring, row[1])->url;
    const char *primary_id = ring_member_at(r->ring, row[0])->id;
    shed_rcu_leave(registry_rcu(f.reg), t);
    snprintf(want, sizeof(want), "%s/v1.0/acct/q/m1", primary);
    cr_assert_str_eq(a.location, want);

    route(&f, SHED_M_GET, "burrow.service", "/v1.0/acct/q/m1", &a);
    cr_assert_eq(a.status, 302);

    /* The primary drains: the next replica takes new requests. */
    struct proto_heartbeat hb = {.weight = 1, .incarnation = 1, .state = PROTO_HB_DRAINING};
    strcpy(hb.service, "burrow");
    strcpy(hb.id, primary_id);
    snprintf(hb.url, sizeof(hb.url), "%s", primary);
    struct proto_heartbeat_reply rep;
    cr_assert_eq(registry_heartbeat(f.reg, &hb, 10, &rep), 0);
    route(&f, SHED_M_PUT, "burrow.service", "/v1.0/acct/q/m1", &a);
    snprintf(want, sizeof(want), "%s/v1.0/acct/q/m1", second);
    cr_assert_str_eq(a.location, want);
    registry_destroy(f.reg);
    shed_config_free(f.cfg);
}

Test(route, all_down_is_503_with_retry_after)
{
    struct fixture f = setup3();
    registry_tick(f.reg, 10000); /* every lease over */
    struct shed_answer a;
    route(&f, SHED_M_PUT, "burrow.service", "/v1.0/acct/q/m1", &a);
    cr_assert_eq(a.status, 503);
    cr_assert_eq(a.location_len, 0);
    cr_assert(a.retry_after >= 1 && a.retry_after <= 3, "%u", a.retry_after);
    registry_destroy(f.reg);
    shed_config_free(f.cfg);
}

Test(route, lists_root_and_errors)
{
    struct fixture f = setup3();
    struct shed_answer a;
    route(&f, SHED_M_GET, "burrow.service", "/v1.0/acct/q", &a);
    cr_assert_eq(a.status, 302);
    cr_assert_str_eq(a.location, "http://127.0.0.1:7000/v1.0/acct/q");
    route(&f, SHED_M_DELETE, "burrow.service", "/v1.0/acct", &a);
    cr_assert_eq(a.status, 307);
    cr_assert_str_eq(a.location, "http://127.0.0.1:7000/v1.0/acct");
    route(&f, SHED_M_GET, "burrow.service", "/v1.0", &a);
    cr_assert_eq(a.status, 302);
    route(&f, SHED_M_GET, "burrow.service", "/", &a);
    cr_assert_eq(a.status, 200);
    cr_assert_eq(a.body_len, 8);
    cr_assert_eq(memcmp(a.body, "[\"v1.0\"]", 8), 0);
    route(&f, SHED_M_GET, "nope.service", "/v1.0/a/q/m", &a);
    cr_assert_eq(a.status, 404);
    route(&f, SHED_M_GET, "bad host.service", "/v1.0/a/q/m", &a);
    cr_assert_eq(a.status, 400);
    route(&f, SHED_M_GET, "burrow.service", "/v2.0/a/q/m", &a);
    cr_assert_eq(a.status, 404);
    route(&f, SHED_M_GET, "burrow.service", "/v1.0/a/q/%zz", &a);
    cr_assert_eq(a.status, 400);
    route(&f, SHED_M_GET, "burrow.service", "/v1.0/a/q/%00", &a);
    cr_assert_eq(a.status, 400);
    route(&f, SHED_M_OTHER, "burrow.service", "/v1.0/a/q/m", &a);
    cr_assert_eq(a.status, 405);
    char longp[3000] = "/v1.0/a/q/";
    memset(longp + 10, 'x', 2500);
    route(&f, SHED_M_GET, "burrow.service", longp, &a);
    cr_assert_eq(a.status, 414);
    f.cfg->list_all = false;
    route(&f, SHED_M_GET, "burrow.service", "/v1.0", &a);
    cr_assert_eq(a.status, 403);
    registry_destroy(f.reg);
    shed_config_free(f.cfg);
}

Test(route, any_service_spreads_over_live_instances)
{
    struct fixture f = setup3();
    int hits[4] = {0};
    for (int i = 0; i < 300; i++) {
        struct shed_answer a;
        route(&f, SHED_M_GET, "storage.service", "/session/x%20y", &a);
        cr_assert_eq(a.status, 302);
        cr_assert(strstr(a.location, "/session/x%20y") != NULL, "%s", a.location);
        hits[a.location[20] - '0']++; /* http://127.0.0.1:800N */
    }
    for (int i = 1; i <= 3; i++)
        cr_assert_gt(hits[i], 50, "instance %d got %d of 300", i, hits[i]);
    registry_destroy(f.reg);
    shed_config_free(f.cfg);
}

Test(route, split_path_bounds_segments_and_rejects_bad_bytes)
{
    char dec[PROTO_BURROW_PATH_MAX];
    struct proto_slice segs[SHED_ROUTE_SEGS_MAX];
    size_t n = 99;

    cr_assert_eq(
        shed_route_split_path("/a/b%20c/", dec, sizeof(dec), segs, SHED_ROUTE_SEGS_MAX, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(segs[1].len, 3);
    cr_assert_eq(memcmp(segs[1].ptr, "b c", 3), 0);
    cr_assert_eq(segs[2].len, 0);
    cr_assert_eq(shed_route_split_path("a/b", dec, sizeof(dec), segs, SHED_ROUTE_SEGS_MAX, &n),
                 -EINVAL);
    cr_assert_eq(shed_route_split_path("/a%0Ab", dec, sizeof(dec), segs, SHED_ROUTE_SEGS_MAX, &n),
                 -EINVAL);
    cr_assert_eq(shed_route_split_path("/a%zz", dec, sizeof(dec), segs, SHED_ROUTE_SEGS_MAX, &n),
                 -EINVAL);
    /* A path of slashes only has more segments than any array: refused,
     * never written past <segs>. */
    char slashes[PROTO_BURROW_PATH_MAX + 1];
    memset(slashes, '/', PROTO_BURROW_PATH_MAX);
    slashes[PROTO_BURROW_PATH_MAX] = '\0';
    cr_assert_eq(shed_route_split_path(slashes, dec, sizeof(dec), segs, SHED_ROUTE_SEGS_MAX, &n),
                 -PROTO_ETOOLONG);
    cr_assert_eq(n, SHED_ROUTE_SEGS_MAX);
    cr_assert_eq(shed_route_split_path("/x", dec, sizeof(dec), segs, 0, &n), -PROTO_ETOOLONG);
}

/* ---- escalation and the master role ---- */

/* A master in this process that knows cell b: three live servers. */
static struct shed_master *
master_with_b(const struct shed_config *cfg)
{
    struct shed_master *m;
    struct proto_sync_msg msg;
    struct proto_sync_ack ack;

    cr_assert_eq(shed_master_create(cfg, 0, &m), 0);
    proto_sync_msg_init(&msg);
    msg.kind = PROTO_SYNC_FULL;
    snprintf(msg.cell, sizeof(msg.cell), "b");
    snprintf(msg.origin, sizeof(msg.origin), "http://shed-b");
    snprintf(msg.aggregator, sizeof(msg.aggregator), "http://agg-b");
    msg.epoch = 1;
    msg.seq = 5;
    msg.lease_ms = 100000;
    for (int i = 0; i < 3; i++) {
        struct proto_sync_entry e;
        memset(&e, 0, sizeof(e));
        snprintf(e.service, sizeof(e.service), "burrow");
        snprintf(e.id, sizeof(e.id), "b-%d", i);
        snprintf(e.url, sizeof(e.url), "http://b-%d:80", i);
        e.weight = 1;
        e.incarnation = 1;
        e.state = PROTO_SYNC_UP;
        e.seq = 5;
        cr_assert_eq(proto_sync_msg_add(&msg, &e), 0);
    }
    cr_assert_eq(shed_master_apply(m, &msg, 5, &ack), 0);
    proto_sync_msg_free(&msg);
    return m;
}

static const char cfg_cells[] =
    "cell: a\ncredential: k\naggregator: http://127.0.0.1:7000\nroles: [line, master]\n"
    "cells:\n  - {name: a, proximity: 0, sheds: [http://shed-a]}\n"
    "  - {name: b, proximity: 10, sheds: [http://shed-b]}\n"
    "timings: {heartbeat_interval: 100ms, lease: 300ms, evict_after: 1s, drain_window: 9s,\n"
    "          pin_lifetime: 7s, join_heartbeats: 1}\n"
    "services: {burrow: {kind: burrow, buckets: 64, k: 2, r: 2}, storage: {kind: any}}\n";

static struct fixture
setup_cells(void)
{
    struct fixture f;
    char err[SHED_ERR_MAX];
    cr_assert_eq(
        shed_config_parse(cfg_cells, strlen(cfg_cells), "c.yaml", &f.cfg, err, sizeof(err)), 0,
        "%s", err);
    cr_assert_eq(registry_create(f.cfg, 1, &f.reg), 0);
    return f;
}

/* The token in <location> (after shed_esc=), decoded with the credential. */
static void
token_of(const struct shed_config *cfg, const char *location, struct proto_token *t)
{
    const char *p = strstr(location, PROTO_TOKEN_PARAM "=");
    cr_assert_not_null(p, "%s", location);
    p += sizeof(PROTO_TOKEN_PARAM);
    char raw[PROTO_TOKEN_ENC_MAX + 8];
    long n = proto_pct_decode(p, strlen(p), raw, sizeof(raw), false);
    cr_assert_gt(n, 0);
    cr_assert_eq(
        proto_token_decode(raw, (size_t)n, cfg->credential, strlen(cfg->credential), 1000, t), 0);
}

/* No live local server and a master in this process: the line role decides
 * in place, into cell b, and the token names both cells; a PUT leaves a
 * hint for cell a (its home). Without any master: 503. */
Test(route, escalation_in_place_to_the_other_cell)
{
    struct fixture f = setup_cells();
    struct shed_master *m = master_with_b(f.cfg);
    struct shed_hints *h;
    cr_assert_eq(shed_hints_create(&h), 0);
    struct shed_escalator esc = {.reg = f.reg, .master = m, .hints = h};
    struct shed_answer a;
    struct shed_query q;
    shed_query_init(&q);
    shed_query_add(&q, "ttl", "60");

    route_esc(&f, &esc, SHED_M_PUT, "burrow.service", "/v1.0/acct/q/m1", &q, &a);
    cr_assert_eq(a.status, 307, "%u %.*s", a.status, (int)a.body_len, a.body);
    cr_assert(strncmp(a.location, "http://b-", 9) == 0, "%s", a.location);
    cr_assert(strstr(a.location, "/v1.0/acct/q/m1?ttl=60&" PROTO_TOKEN_PARAM "=") != NULL, "%s",
              a.location);
    cr_assert_neq(a.bucket[0], '\0');
    cr_assert_str_eq(a.pin_ttl, "7");
    struct proto_token t;
    token_of(f.cfg, a.location, &t);
    cr_assert_eq(t.ncells, 2);
    cr_assert_str_eq(t.cells[0], "a");
    cr_assert_str_eq(t.cells[1], "b");
    cr_assert_eq(t.hops, 1);
    uint64_t held, dropped;
    shed_hints_counts(h, &held, &dropped);
    cr_assert_eq(held, 1);

    /* A GET list: to cell b's aggregator, 302, no pin. */
    route_esc(&f, &esc, SHED_M_GET, "burrow.service", "/v1.0/acct/q", NULL, &a);
    cr_assert_eq(a.status, 302);
    cr_assert(strncmp(a.location, "http://agg-b/v1.0/acct/q?" PROTO_TOKEN_PARAM "=", 25) == 0, "%s",
              a.location);
    cr_assert_eq(a.bucket[0], '\0');

    /* The same request coming back with the token: b is visited too, so no
     * cell is left. */
    char raw[PROTO_TOKEN_ENC_MAX];
    t.hops = 1;
    cr_assert_gt(proto_token_encode(&t, "k", 1, raw, sizeof(raw)), 0);
    shed_query_init(&q);
    shed_query_add(&q, PROTO_TOKEN_PARAM, raw);
    route_esc(&f, &esc, SHED_M_GET, "burrow.service", "/v1.0/acct/q/m1", &q, &a);
    cr_assert_eq(a.status, 503);
    cr_assert_gt(a.retry_after, 0);

    /* A forged token: 400, never a redirect. */
    raw[3] ^= 1;
    shed_query_init(&q);
    shed_query_add(&q, PROTO_TOKEN_PARAM, raw);
    route_esc(&f, &esc, SHED_M_GET, "burrow.service", "/v1.0/acct/q/m1", &q, &a);
    cr_assert_eq(a.status, 400);
    cr_assert_eq(a.location_len, 0);

    /* No escalation configured: 503 with Retry-After. */
    route_esc(&f, NULL, SHED_M_GET, "burrow.service", "/v1.0/acct/q/m1", NULL, &a);
    cr_assert_eq(a.status, 503);
    cr_assert_gt(a.retry_after, 0);
    shed_hints_destroy(h);
    shed_master_destroy(m);
    registry_destroy(f.reg);
    shed_config_free(f.cfg);
}

static void
master_route_host(const struct fixture *f, const struct shed_escalator *esc, enum shed_method m,
                  const char *host, const char *path, const struct shed_query *q,
                  struct shed_answer *a)
{
    struct shed_router rt = {.cfg = f->cfg, .esc = esc, .unix_s = 1000};
    struct shed_request req = {.m = m, .host = host, .path = path, .q = q, .now_ms = 5};
    unsigned slot;
    enum shed_level level;
    shed_master_route_request(&rt, &req, a, &slot, &level);
}

static void
master_route(const struct fixture *f, const struct shed_escalator *esc, enum shed_method m,
             const char *path, const struct shed_query *q, struct shed_answer *a)
{
    master_route_host(f, esc, m, "burrow.service", path, q, a);
}

/* The master role: a token is required and checked; with one, the request
 * goes to the best cell not visited, 302 for reads and 307 for writes. */
Test(route, master_needs_a_token_and_skips_visited_cells)
{
    struct fixture f = setup_cells();
    struct shed_master *m = master_with_b(f.cfg);
    struct shed_escalator esc = {.reg = f.reg, .master = m};
    struct shed_answer a;
    struct shed_query q;
    shed_query_init(&q);

    master_route(&f, &esc, SHED_M_GET, "/v1.0/acct/q/m1", &q, &a);
    cr_assert_eq(a.status, 400);
    cr_assert_eq(a.location_len, 0);

    struct proto_token t;
    char enc[PROTO_TOKEN_ENC_MAX];
    cr_assert_eq(proto_token_init(&t, "burrow", 1030, 7), 0);
    cr_assert_eq(proto_token_add_cell(&t, "a"), 0);
    t.hops = 1;
    cr_assert_gt(proto_token_encode(&t, "k", 1, enc, sizeof(enc)), 0);
    shed_query_add(&q, PROTO_TOKEN_PARAM, enc);
    const enum shed_method ms[] = {SHED_M_GET, SHED_M_HEAD, SHED_M_PUT, SHED_M_POST, SHED_M_DELETE};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        master_route(&f, &esc, ms[i], "/v1.0/acct/q/m1", &q, &a);
        cr_assert_eq(a.status, shed_method_reads(ms[i]) ? 302u : 307u);
        cr_assert(strncmp(a.location, "http://b-", 9) == 0, "%s", a.location);
        cr_assert_neq(a.bucket[0], '\0');
    }
    master_route(&f, &esc, SHED_M_OTHER, "/v1.0/acct/q/m1", &q, &a);
    cr_assert_eq(a.status, 405);
    /* A client that followed the redirect sends the master's address as
     * Host: the verified token names the service (no default_service). */
    master_route_host(&f, &esc, SHED_M_GET, "10.0.0.31:80", "/v1.0/acct/q/m1", &q, &a);
    cr_assert_eq(a.status, 302, "%u", a.status);
    cr_assert(strncmp(a.location, "http://b-", 9) == 0, "%s", a.location);
    /* Without a token there is no service to take: 400. */
    struct shed_query none;
    shed_query_init(&none);
    master_route_host(&f, &esc, SHED_M_GET, "10.0.0.31:80", "/v1.0/acct/q/m1", &none, &a);
    cr_assert_eq(a.status, 400);
    master_route(&f, &esc, SHED_M_GET, "/", &q, &a);
    cr_assert_eq(a.status, 404);

    /* Expired: 400. */
    cr_assert_eq(proto_token_init(&t, "burrow", 999, 7), 0);
    cr_assert_gt(proto_token_encode(&t, "k", 1, enc, sizeof(enc)), 0);
    shed_query_init(&q);
    shed_query_add(&q, PROTO_TOKEN_PARAM, enc);
    master_route(&f, &esc, SHED_M_GET, "/v1.0/acct/q/m1", &q, &a);
    cr_assert_eq(a.status, 400);
    cr_assert_eq(a.location_len, 0);
    shed_master_destroy(m);
    registry_destroy(f.reg);
    shed_config_free(f.cfg);
}

/* Generated requests (random methods, hosts, paths with escapes, query
 * arguments): every answer is a known status; every redirect is 302 for
 * GET/HEAD and 307 otherwise, its Location printable ASCII starting with a
 * member's or the aggregator's URL, and a message redirect carries the
 * bucket of its decoded ids. */
Test(route, generated_requests_keep_the_invariants)
{
    struct fixture f = setup3();
    static const char *const hosts[] = {"burrow.service",
                                        "Burrow.Service:80",
                                        "storage.service",
                                        "x.burrow.service",
                                        "nope.service",
                                        "bad host",
                                        NULL};
    static const char *const parts[] = {"v1.0", "a",  "q%2F", "%zz", "%00", "m",
                                        "",     "..", "%FF",  "x y", "~",   "a%2Fb"};
    static const enum shed_method ms[] = {SHED_M_GET,  SHED_M_HEAD,   SHED_M_PUT,
                                          SHED_M_POST, SHED_M_DELETE, SHED_M_OTHER};
    uint64_t x = 88172645463325252ull;
    size_t redirects = 0;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char path[256] = "";
        size_t nseg = x % 6, o = 0;
        for (size_t k = 0; k < nseg; k++)
            o += (size_t)snprintf(path + o, sizeof(path) - o, "/%s",
                                  parts[(x >> (8 + 4 * k)) % (sizeof(parts) / sizeof(parts[0]))]);
        if (o == 0)
            snprintf(path, sizeof(path), "/");
        struct shed_query q;
        shed_query_init(&q);
        if ((x >> 40) % 3 == 0)
            shed_query_add(&q, "limit", (x >> 44) % 2 ? "5" : "-1");
        enum shed_method m = ms[(x >> 50) % 6];
        const char *host = hosts[(x >> 54) % (sizeof(hosts) / sizeof(hosts[0]))];
        struct shed_answer a;
        route_esc(&f, NULL, m, host, path, &q, &a);
        static const unsigned ok[] = {200, 302, 307, 400, 403, 404, 405, 414, 503};
        bool known = false;
        for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++)
            known |= a.status == ok[k];
        cr_assert(known, "%u for %s %s", a.status, host ? host : "(none)", path);
        if (a.location_len == 0)
            continue;
        redirects++;
        cr_assert_eq(a.status, shed_method_reads(m) ? 302u : 307u, "%s", path);
        cr_assert_eq(strlen(a.location), a.location_len);
        for (size_t k = 0; k < a.location_len; k++)
            cr_assert(a.location[k] > 0x20 && a.location[k] < 0x7f, "%s", a.location);
        cr_assert(strncmp(a.location, "http://127.0.0.1:", 17) == 0, "%s", a.location);
    }
    cr_assert_gt(redirects, 1000, "only %zu redirects: the generator is off", redirects);
    registry_destroy(f.reg);
    shed_config_free(f.cfg);
}
