/* SPDX-License-Identifier: ISC */
/* shed/line: Host -> service, Location building (re-encoding, query kept),
 * and routing decisions against a real registry. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shed/config.h"
#include "shed/line.h"
#include "shed/rcu.h"
#include "shed/registry.h"

Test(line, host_service)
{
    char out[SHED_NAME_MAX];
    cr_assert_eq(shed_line_host_service("burrow.service", "", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_line_host_service("Burrow.SERVICE:8080", "", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_line_host_service("127.0.0.1:8080", "", out), -ENOENT);
    cr_assert_eq(shed_line_host_service("127.0.0.1:8080", "burrow", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_line_host_service(NULL, "storage", out), 0);
    cr_assert_str_eq(out, "storage");
    cr_assert_eq(shed_line_host_service(NULL, "", out), -EINVAL);
    cr_assert_eq(shed_line_host_service("bu rrow.service", "", out), -EINVAL);
    cr_assert_eq(shed_line_host_service("burrow.service:80x", "", out), -EINVAL);
    cr_assert_eq(shed_line_host_service(".service", "", out), -ENOENT);
}

/* DNS wildcards (*.burrow.service) send any name under the service to the
 * sheds: the label before ".service" names it (issue 16, item 9). */
Test(line, host_service_wildcard_names)
{
    char out[SHED_NAME_MAX];
    cr_assert_eq(shed_line_host_service("x.burrow.service", "", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_line_host_service("A.b-1.Burrow.service:8080", "", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_line_host_service("x.burrow.service", "storage", out), 0);
    cr_assert_str_eq(out, "burrow");
    cr_assert_eq(shed_line_host_service(".burrow.service", "", out), -EINVAL);
    cr_assert_eq(shed_line_host_service("x..burrow.service", "", out), -EINVAL);
    cr_assert_eq(shed_line_host_service("x.burrow..service", "", out), -EINVAL);
    cr_assert_eq(shed_line_host_service("x y.burrow.service", "", out), -EINVAL);
}

Test(line, location_reencodes_and_keeps_query)
{
    char buf[SHED_LOCATION_MAX];
    struct proto_slice segs[4] = {{"v1.0", 4}, {"acc t", 5}, {"q/\xff", 3}, {"m~._-", 5}};
    struct shed_query q = {.n = 3};
    q.args[0] = (struct shed_arg){"limit", "10"};
    q.args[1] = (struct shed_arg){"marker", "a%2Fb+c"};
    q.args[2] = (struct shed_arg){"flag", NULL};
    long n = shed_line_location(buf, sizeof(buf), "http://10.0.0.1:80", segs, 4, &q);
    cr_assert_gt(n, 0);
    cr_assert_str_eq(buf, "http://10.0.0.1:80/v1.0/acc%20t/q%2F%FF/m~._-?limit=10&marker=a%2Fb%20c"
                          "&flag");
    cr_assert_eq((size_t)n, strlen(buf));
    q.args[0].val = "%zz";
    cr_assert_eq(shed_line_location(buf, sizeof(buf), "http://h", segs, 4, &q), -PROTO_EBADENC);
    q.args[0].val = "%00";
    cr_assert_eq(shed_line_location(buf, sizeof(buf), "http://h", segs, 4, &q), -PROTO_EBADENC);
    q.n = 0;
    cr_assert_eq(shed_line_location(buf, 20, "http://h", segs, 4, &q), -PROTO_ETOOLONG);
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

static void
route(struct fixture *f, enum shed_method m, const char *host, const char *path,
      struct shed_answer *a)
{
    struct shed_query q = {.n = 0};
    unsigned slot;
    enum shed_level level;
    unsigned t = shed_rcu_enter();
    shed_line_route(f->cfg, registry_view(f->reg), m, host, path, &q, a, &slot, &level);
    shed_rcu_leave(t);
}

Test(line, message_goes_to_live_primary_then_next_replica)
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
    unsigned t = shed_rcu_enter();
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
    shed_rcu_leave(t);
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

Test(line, all_down_is_503_with_retry_after)
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

Test(line, lists_root_and_errors)
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

Test(line, any_service_spreads_over_live_instances)
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

Test(line, split_path_bounds_segments_and_rejects_bad_bytes)
{
    char dec[PROTO_BURROW_PATH_MAX];
    struct proto_slice segs[SHED_LINE_SEGS_MAX];
    size_t n = 99;

    cr_assert_eq(shed_line_split_path("/a/b%20c/", dec, sizeof(dec), segs, SHED_LINE_SEGS_MAX, &n),
                 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(segs[1].len, 3);
    cr_assert_eq(memcmp(segs[1].ptr, "b c", 3), 0);
    cr_assert_eq(segs[2].len, 0);
    cr_assert_eq(shed_line_split_path("a/b", dec, sizeof(dec), segs, SHED_LINE_SEGS_MAX, &n),
                 -EINVAL);
    cr_assert_eq(shed_line_split_path("/a%0Ab", dec, sizeof(dec), segs, SHED_LINE_SEGS_MAX, &n),
                 -EINVAL);
    cr_assert_eq(shed_line_split_path("/a%zz", dec, sizeof(dec), segs, SHED_LINE_SEGS_MAX, &n),
                 -EINVAL);
    /* A path of slashes only has more segments than any array: refused,
     * never written past <segs>. */
    char slashes[PROTO_BURROW_PATH_MAX + 1];
    memset(slashes, '/', PROTO_BURROW_PATH_MAX);
    slashes[PROTO_BURROW_PATH_MAX] = '\0';
    cr_assert_eq(shed_line_split_path(slashes, dec, sizeof(dec), segs, SHED_LINE_SEGS_MAX, &n),
                 -PROTO_ETOOLONG);
    cr_assert_eq(n, SHED_LINE_SEGS_MAX);
    cr_assert_eq(shed_line_split_path("/x", dec, sizeof(dec), segs, 0, &n), -PROTO_ETOOLONG);
}
