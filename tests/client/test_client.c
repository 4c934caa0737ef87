/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for the client library's pure parts: URL splitting, the Shed-*
 * headers, Link rel="next", the pin table under an injected clock, backoff
 * bounds, and that the bucket the client computes for a URL is the one
 * ring/ gives (so a pin learned from a shed is found again).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/burrow.h"
#include "client/client.h"
#include "client/pins.h"
#include "client/wire.h"
#include "ring/ring.h"

/* ---- URLs ---- */

struct url_case {
    const char *in;
    int rc;
    const char *host, *path, *query;
    unsigned port;
};

static const struct url_case url_cases[] = {
    {"http://burrow.service/v1.0/a/q/m", 0, "burrow.service", "/v1.0/a/q/m", "", 80},
    {"http://burrow.service:8080/v1.0/a?limit=3", 0, "burrow.service", "/v1.0/a", "limit=3", 8080},
    {"http://127.0.0.1:9001", 0, "127.0.0.1", "/", "", 9001},
    {"http://h?x=1", 0, "h", "/", "x=1", 80},
    {"https://h/p", 0, "h", "/p", "", 443},
    {"http://[::1]:81/p", 0, "[::1]", "/p", "", 81},
    {"ftp://h/p", -EINVAL, NULL, NULL, NULL, 0},
    {"burrow.service/v1.0", -EINVAL, NULL, NULL, NULL, 0},
    {"http:///p", -EINVAL, NULL, NULL, NULL, 0},
    {"http://h:0/p", -EINVAL, NULL, NULL, NULL, 0},
    {"http://h:65536/p", -EINVAL, NULL, NULL, NULL, 0},
    {"http://h:/p", -EINVAL, NULL, NULL, NULL, 0},
    {"http://h/p q", -EINVAL, NULL, NULL, NULL, 0},
    {"http://h/p#frag", -EINVAL, NULL, NULL, NULL, 0},
    {"http://user@h/p", -EINVAL, NULL, NULL, NULL, 0},
};

Test(wire, url_table)
{
    for (size_t i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
        const struct url_case *tc = &url_cases[i];
        struct client_wire_url u;
        int rc = client_wire_parse_url(tc->in, &u);

        cr_assert_eq(rc, tc->rc, "%s: rc %d", tc->in, rc);
        if (rc != 0)
            continue;
        cr_assert_eq(u.host.len, strlen(tc->host), "%s", tc->in);
        cr_assert(memcmp(u.host.ptr, tc->host, u.host.len) == 0, "%s", tc->in);
        cr_assert_eq(u.path.len, strlen(tc->path), "%s", tc->in);
        cr_assert(memcmp(u.path.ptr, tc->path, u.path.len) == 0, "%s", tc->in);
        cr_assert_eq(u.query.len, strlen(tc->query), "%s", tc->in);
        cr_assert_eq(u.port, tc->port, "%s", tc->in);
    }
}

/* The byte check reads eight bytes at a time: every bad byte at every
 * offset (so in every lane of a word and in the tail) is refused, and the
 * bytes next to the bad ones in value pass. */
Test(wire, url_bad_byte_every_offset)
{
    static const unsigned char bad[] = {0x01, 0x1f, 0x20, 0x7f, '#'};
    static const unsigned char good[] = {0x21, 0x22, 0x24, 0x7e, 0x80, 0xa3, 0xff};
    const char *base = "http://burrow.service/v1.0/acct/queue/message-0123456789";
    size_t blen = strlen(base);
    struct client_wire_url u;
    char url[128];

    for (size_t off = strlen("http://burrow.service/"); off < blen; off++) {
        for (size_t b = 0; b < sizeof(bad); b++) {
            memcpy(url, base, blen + 1);
            url[off] = (char)bad[b];
            cr_assert_eq(client_wire_parse_url(url, &u), -EINVAL, "byte 0x%02x at %zu", bad[b],
                         off);
        }
        for (size_t g = 0; g < sizeof(good); g++) {
            memcpy(url, base, blen + 1);
            url[off] = (char)good[g];
            cr_assert_eq(client_wire_parse_url(url, &u), 0, "byte 0x%02x at %zu", good[g], off);
        }
    }
    cr_assert_eq(client_wire_parse_url("HTTPS://Burrow.Service/v1.0", &u), 0);
    cr_assert_eq(u.port, 443);
    cr_assert_eq(client_wire_parse_url("httpx://h/p", &u), -EINVAL);
    cr_assert_eq(client_wire_parse_url("http:/h/p", &u), -EINVAL);
    cr_assert_eq(client_wire_parse_url("http", &u), -EINVAL);
}

Test(wire, url_too_long)
{
    static char big[CLIENT_WIRE_URL_MAX + 64];
    struct client_wire_url u;

    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "http://h/", 9);
    cr_assert_eq(client_wire_parse_url(big, &u), -ERANGE);
}

Test(wire, service_and_origin)
{
    struct client_wire_url u;
    char name[CLIENT_WIRE_SERVICE_MAX + 1], buf[CLIENT_WIRE_ORIGIN_MAX];

    cr_assert_eq(client_wire_parse_url("http://Burrow.SERVICE:8080/v1.0", &u), 0);
    cr_assert(client_wire_service(&u, name, sizeof(name)));
    cr_assert_str_eq(name, "burrow");
    cr_assert_gt(client_wire_origin(&u, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "http://Burrow.SERVICE:8080");
    cr_assert_gt(client_wire_hostport(&u, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "Burrow.SERVICE:8080");

    cr_assert_eq(client_wire_parse_url("http://127.0.0.1/x", &u), 0);
    cr_assert_not(client_wire_service(&u, name, sizeof(name)));
    cr_assert_gt(client_wire_origin(&u, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "http://127.0.0.1:80");
    cr_assert_eq(client_wire_parse_url("http://.service/x", &u), 0);
    cr_assert_not(client_wire_service(&u, name, sizeof(name)));
}

/* ---- Shed-* headers ---- */

Test(wire, ring_header_good)
{
    struct ring_config cfg;
    const char *v = "b=65536; k=3; sa=00000000deadbeef; sk=0123456789ABCDEF";

    cr_assert_eq(client_wire_parse_ring(v, strlen(v), &cfg), 0);
    cr_assert_eq(cfg.buckets, 65536u);
    cr_assert_eq(cfg.k, 3u);
    cr_assert_eq(cfg.seed_account, 0xdeadbeefull);
    cr_assert_eq(cfg.seed_key, 0x0123456789abcdefull);

    /* Any order, no spaces, unknown fields ignored. */
    v = "sk=2;x=whatever;sa=1;k=1;b=1";
    cr_assert_eq(client_wire_parse_ring(v, strlen(v), &cfg), 0);
    cr_assert_eq(cfg.buckets, 1u);
    cr_assert_eq(cfg.k, 1u);
    cr_assert_eq(cfg.seed_account, 1u);
    cr_assert_eq(cfg.seed_key, 2u);
}

Test(wire, ring_header_bad)
{
    static const char *bad[] = {
        "",
        "b=65536; k=3; sa=1",                    /* sk missing */
        "b=65535; k=3; sa=1; sk=2",              /* B not a power of two */
        "b=0; k=1; sa=1; sk=2",                  /* B zero */
        "b=4; k=8; sa=1; sk=2",                  /* K > B */
        "b=64; k=0; sa=1; sk=2",                 /* K zero */
        "b=64; k=65; sa=1; sk=2",                /* K > RING_MAX_K */
        "b=64; k=3; sa=xyz; sk=2",               /* bad hex */
        "b=64; k=3; sa=00000000000000001; sk=2", /* 17 hex digits */
        "b=64; k=3; sa=1; sk=2; b=64",           /* repeated */
        "b=64; k=3; sa; sk=2",                   /* no '=' */
        "b=33554432; k=3; sa=1; sk=2",           /* B > RING_MAX_BUCKETS */
        "b=-4; k=3; sa=1; sk=2",
    };
    struct ring_config cfg;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(client_wire_parse_ring(bad[i], strlen(bad[i]), &cfg), -EINVAL, "%s", bad[i]);
}

Test(wire, uint_header)
{
    uint64_t v;

    cr_assert_eq(client_wire_parse_uint(" 30 ", 4, 86400, &v), 0);
    cr_assert_eq(v, 30u);
    cr_assert_eq(client_wire_parse_uint("86401", 5, 86400, &v), -EINVAL);
    cr_assert_eq(client_wire_parse_uint("", 0, 10, &v), -EINVAL);
    cr_assert_eq(client_wire_parse_uint("3x", 2, 10, &v), -EINVAL);
    cr_assert_eq(client_wire_parse_uint("-1", 2, 10, &v), -EINVAL);
    cr_assert_eq(client_wire_parse_uint("99999999999999999999999", 23, UINT64_MAX, &v), -EINVAL);
}

Test(wire, header_line)
{
    struct client_wire_slice v;
    const char *line = "shed-pin-ttl:  30 \r\n";

    cr_assert(client_wire_header(line, strlen(line), "Shed-Pin-TTL", &v));
    cr_assert_eq(v.len, 2u);
    cr_assert(memcmp(v.ptr, "30", 2) == 0);
    cr_assert_not(client_wire_header(line, strlen(line), "Shed-Pin", &v));
    cr_assert_not(client_wire_header("HTTP/1.1 307 x\r\n", 16, "Location", &v));
}

/* ---- Link ---- */

struct link_case {
    const char *in;
    int rc;
    const char *want;
};

static const struct link_case link_cases[] = {
    {"<http://a/v1.0/x/q?marker=5>; rel=\"next\"", 0, "http://a/v1.0/x/q?marker=5"},
    {"<http://a/p>; rel=next", 0, "http://a/p"},
    {"<http://a/prev>; rel=\"prev\", <http://a/n>; rel=\"next\"", 0, "http://a/n"},
    {"</v1.0/a/q?marker=m3>; title=\"a, b\"; rel=\"prev next\"", 0, "/v1.0/a/q?marker=m3"},
    {"<http://a/d>; REL=\"Next\"", 0, "http://a/d"},
    {"<http://a/p>; rel=\"prev\"", -ENOENT, NULL},
    {"", -ENOENT, NULL},
    {"http://a/p; rel=next", -EINVAL, NULL},
    {"<http://a/p; rel=next", -EINVAL, NULL},
    {"<>; rel=next", -EINVAL, NULL},
};

Test(wire, link_table)
{
    for (size_t i = 0; i < sizeof(link_cases) / sizeof(link_cases[0]); i++) {
        const struct link_case *tc = &link_cases[i];
        struct client_wire_slice s;
        int rc = client_wire_link_next(tc->in, strlen(tc->in), &s);

        cr_assert_eq(rc, tc->rc, "%s: %d", tc->in, rc);
        if (rc == 0) {
            cr_assert_eq(s.len, strlen(tc->want), "%s", tc->in);
            cr_assert(memcmp(s.ptr, tc->want, s.len) == 0, "%s", tc->in);
        }
    }
}

/* ---- backoff ---- */

Test(wire, backoff_bounds)
{
    cr_assert_eq(client_wire_backoff_ms(0, 20, 1000, 12345), 0u);
    for (unsigned attempt = 1; attempt <= 40; attempt++) {
        uint64_t d = 20;

        for (unsigned i = 1; i < attempt && d < 1000; i++)
            d *= 2;
        if (d > 1000)
            d = 1000;
        for (uint64_t r = 0; r < 2000; r += 7) {
            uint64_t b = client_wire_backoff_ms(attempt, 20, 1000, r * 0x9e3779b97f4a7c15ull);

            cr_assert_geq(b, d - d / 2, "attempt %u: %llu", attempt, (unsigned long long)b);
            cr_assert_leq(b, d, "attempt %u: %llu", attempt, (unsigned long long)b);
            cr_assert_leq(b, 1000u);
        }
    }
}

Test(wire, backoff_jitters)
{
    uint64_t lo = UINT64_MAX, hi = 0;

    for (uint64_t r = 0; r < 1000; r++) {
        uint64_t b = client_wire_backoff_ms(3, 20, 1000, r * 2654435761u);

        lo = b < lo ? b : lo;
        hi = b > hi ? b : hi;
    }
    cr_assert_lt(lo, hi, "no jitter: always %llu", (unsigned long long)lo);
    cr_assert_geq(lo, 40u);
    cr_assert_leq(hi, 80u);
}

/* ---- pins ---- */

Test(pins, expire_on_schedule)
{
    struct client_pins *p;
    struct client_pin pin;

    cr_assert_eq(client_pins_create(100, &p), 0);
    cr_assert_eq(client_pins_set(p, "burrow", 12, "http://127.0.0.1:9001", 3, 2000, 1000, "why"),
                 0);
    cr_assert_eq(client_pins_get(p, "burrow", 12, 1000, &pin), 0);
    cr_assert_str_eq(pin.host, "http://127.0.0.1:9001");
    cr_assert_eq(pin.generation, 3u);
    cr_assert_eq(pin.expires_ms, 3000u);
    cr_assert_eq(pin.hits, 1u);
    cr_assert_eq(client_pins_get(p, "burrow", 12, 2999, &pin), 0);
    cr_assert_eq(pin.hits, 2u);
    cr_assert_eq(client_pins_get(p, "burrow", 12, 3000, &pin), -ENOENT);
    cr_assert_eq(client_pins_count(p), 0u, "an expired pin found by get is removed");
    cr_assert_eq(client_pins_get(p, "burrow", 13, 1000, NULL), -ENOENT);
    cr_assert_eq(client_pins_get(p, "other", 12, 1000, NULL), -ENOENT);
    client_pins_destroy(p);
}

Test(pins, replace_drop_and_drop_host)
{
    struct client_pins *p;
    struct client_pin pin;

    cr_assert_eq(client_pins_create(100, &p), 0);
    cr_assert_eq(client_pins_set(p, "burrow", 1, "http://h1:1", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "burrow", 2, "http://h1:1", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "burrow", 3, "http://h2:2", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "burrow", 3, "http://h3:3", 2, 5000, 10, NULL), 0);
    cr_assert_eq(client_pins_count(p), 3u);
    cr_assert_eq(client_pins_get(p, "burrow", 3, 20, &pin), 0);
    cr_assert_str_eq(pin.host, "http://h3:3");
    cr_assert_eq(pin.generation, 2u);
    cr_assert_eq(client_pins_drop_host(p, "http://h1:1"), 2u);
    cr_assert_eq(client_pins_get(p, "burrow", 1, 20, NULL), -ENOENT);
    cr_assert_eq(client_pins_drop(p, "burrow", 3), 0);
    cr_assert_eq(client_pins_drop(p, "burrow", 3), -ENOENT);
    cr_assert_eq(client_pins_count(p), 0u);
    /* ttl 0 removes. */
    cr_assert_eq(client_pins_set(p, "burrow", 4, "http://h:1", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "burrow", 4, "http://h:1", 1, 0, 0, NULL), 0);
    cr_assert_eq(client_pins_count(p), 0u);
    client_pins_destroy(p);
}

Test(pins, full_table_sweeps_then_refuses)
{
    struct client_pins *p;

    cr_assert_eq(client_pins_create(4, &p), 0);
    for (uint32_t b = 0; b < 4; b++)
        cr_assert_eq(client_pins_set(p, "s", b, "http://h:1", 1, b < 2 ? 100 : 10000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "s", 10, "http://h:1", 1, 1000, 50, NULL), -ENOSPC);
    /* At 200 two pins have expired: the set sweeps them and succeeds. */
    cr_assert_eq(client_pins_set(p, "s", 10, "http://h:1", 1, 1000, 200, NULL), 0);
    cr_assert_eq(client_pins_count(p), 3u);
    cr_assert_eq(client_pins_expire(p, 20000), 3u);
    client_pins_destroy(p);
}

Test(pins, ring_change_clears_service)
{
    struct client_pins *p;
    struct ring_config a, b, got;

    ring_config_default(&a);
    b = a;
    b.k = a.k + 1;
    cr_assert_eq(client_pins_create(100, &p), 0);
    cr_assert_eq(client_pins_get_ring(p, "burrow", &got), -ENOENT);
    cr_assert_eq(client_pins_set_ring(p, "burrow", &a), 0);
    cr_assert_eq(client_pins_set(p, "burrow", 1, "http://h:1", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "other", 1, "http://h:1", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set_ring(p, "burrow", &a), 0);
    cr_assert_eq(client_pins_count(p), 2u, "same ring keeps pins");
    cr_assert_eq(client_pins_set_ring(p, "burrow", &b), 0);
    cr_assert_eq(client_pins_count(p), 1u, "a new ring drops that service's pins");
    cr_assert_eq(client_pins_get_ring(p, "burrow", &got), 0);
    cr_assert_eq(got.k, b.k);
    client_pins_destroy(p);
}

/* client_pins_route(): the bucket ring_bucket() gives, and the pin's host
 * only while it lives, a hit counted per route. */
Test(pins, route_bucket_and_host)
{
    struct client_pins *p;
    struct ring_config cfg;
    struct client_pin pin;
    uint32_t bucket = 0, want;
    char host[CLIENT_PINS_HOST_MAX];

    ring_config_default(&cfg);
    want = ring_bucket(&cfg, "acct", 4, "q/m1", 4);
    cr_assert_eq(client_pins_create(100, &p), 0);
    cr_assert_eq(
        client_pins_route(p, "burrow", "acct", 4, "q/m1", 4, 0, &bucket, host, sizeof(host)),
        -ESRCH, "no ring parameters yet");
    cr_assert_eq(client_pins_set_ring(p, "burrow", &cfg), 0);
    cr_assert_eq(
        client_pins_route(p, "burrow", "acct", 4, "q/m1", 4, 0, &bucket, host, sizeof(host)),
        -ENOENT);
    cr_assert_eq(bucket, want);
    cr_assert_eq(client_pins_set(p, "burrow", want, "http://h:1", 1, 1000, 0, NULL), 0);
    bucket = 0;
    cr_assert_eq(
        client_pins_route(p, "burrow", "acct", 4, "q/m1", 4, 999, &bucket, host, sizeof(host)), 0);
    cr_assert_eq(bucket, want);
    cr_assert_str_eq(host, "http://h:1");
    cr_assert_eq(client_pins_route(p, "burrow", "acct", 4, "q/m1", 4, 999, &bucket, NULL, 0),
                 -ENOENT, "no host asked: bucket only");
    cr_assert_eq(client_pins_route(p, "burrow", "acct", 4, "q/m1", 4, 999, &bucket, host, 5),
                 -ENOENT, "a host that does not fit is no pin");
    cr_assert_eq(client_pins_get(p, "burrow", want, 999, &pin), 0);
    cr_assert_eq(pin.hits, 2u, "one hit for the route, one for this get");
    cr_assert_eq(
        client_pins_route(p, "burrow", "acct", 4, "q/m1", 4, 1000, &bucket, host, sizeof(host)),
        -ENOENT, "expired");
    cr_assert_eq(client_pins_count(p), 0u, "an expired pin is removed");
    client_pins_destroy(p);
}

Test(pins, list_sorted_live_only)
{
    struct client_pins *p;
    struct client_pin out[8];

    cr_assert_eq(client_pins_create(100, &p), 0);
    cr_assert_eq(client_pins_set(p, "b", 9, "http://h:1", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "a", 7, "http://h:1", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "b", 2, "http://h:1", 1, 5000, 0, NULL), 0);
    cr_assert_eq(client_pins_set(p, "b", 5, "http://h:1", 1, 10, 0, NULL), 0);
    cr_assert_eq(client_pins_list(p, 100, out, 8), 3u);
    cr_assert_str_eq(out[0].service, "a");
    cr_assert_eq(out[1].bucket, 2u);
    cr_assert_eq(out[2].bucket, 9u);
    client_pins_destroy(p);
}

/* ---- buckets: the client's computation is ring_bucket's ---- */

Test(bucket, url_bucket_equals_ring_bucket)
{
    struct ring_config cfg;
    const char *hdr = "b=1024; k=4; sa=0123456789abcdef; sk=fedcba9876543210";
    char url[512], key[300];

    cr_assert_eq(client_wire_parse_ring(hdr, strlen(hdr), &cfg), 0);
    for (int i = 0; i < 500; i++) {
        char acct[32], q[32], m[32];
        uint32_t got, want, idx, buckets[RING_MAX_K];

        snprintf(acct, sizeof(acct), "acct%d", i % 37);
        snprintf(q, sizeof(q), "queue%d", i % 5);
        snprintf(m, sizeof(m), "msg_%d", i);
        snprintf(url, sizeof(url), "http://burrow.service:8080/v1.0/%s/%s/%s?ttl=5", acct, q, m);
        snprintf(key, sizeof(key), "%s/%s", q, m);
        cr_assert_eq(shed_client_url_bucket(&cfg, url, &got), 0);
        want = ring_bucket(&cfg, acct, strlen(acct), key, strlen(key));
        cr_assert_eq(got, want, "%s", url);
        /* And the two steps agree with the convenience call. */
        ring_account_buckets(&cfg, acct, strlen(acct), buckets);
        idx = ring_key_index(&cfg, key, strlen(key));
        cr_assert_lt(idx, cfg.k);
        cr_assert_eq(buckets[idx], want);
        cr_assert_lt(got, cfg.buckets);
    }
}

Test(bucket, decoded_ids)
{
    struct ring_config cfg;
    uint32_t got;
    const char *acct = "my acct", *key = "my queue/id%x";

    ring_config_default(&cfg);
    cr_assert_eq(shed_client_url_bucket(
                     &cfg, "http://burrow.service/v1.0/my%20acct/my%20queue/id%25x", &got),
                 0);
    cr_assert_eq(got, ring_bucket(&cfg, acct, strlen(acct), key, strlen(key)));
}

Test(bucket, not_a_message)
{
    struct ring_config cfg;
    uint32_t got;

    ring_config_default(&cfg);
    cr_assert_eq(shed_client_url_bucket(&cfg, "http://burrow.service/v1.0/a/q", &got), -ENOENT);
    cr_assert_eq(shed_client_url_bucket(&cfg, "http://127.0.0.1:9/v1.0/a/q/m", &got), -ENOENT);
    cr_assert_eq(shed_client_url_bucket(&cfg, "nonsense", &got), -EINVAL);
}

/* ---- Burrow URLs ---- */

Test(burrow, url_builder)
{
    char buf[256];

    cr_assert_eq(
        client_burrow_url(buf, sizeof(buf), "http://burrow.service", "my acct", "q/1", "m"), 0);
    cr_assert_str_eq(buf, "http://burrow.service/v1.0/my%20acct/q%2F1/m");
    cr_assert_eq(client_burrow_url(buf, sizeof(buf), "http://b.service", "a", NULL, NULL), 0);
    cr_assert_str_eq(buf, "http://b.service/v1.0/a");
    cr_assert_eq(client_burrow_url(buf, sizeof(buf), "http://b.service", NULL, NULL, NULL), 0);
    cr_assert_str_eq(buf, "http://b.service/v1.0");
    cr_assert_eq(client_burrow_url(buf, sizeof(buf), "http://b.service", "a", NULL, "m"), -EINVAL);
    cr_assert_eq(client_burrow_url(buf, sizeof(buf), "http://b.service", "", NULL, NULL), -EINVAL);
    cr_assert_eq(client_burrow_url(buf, 20, "http://b.service", "aaaaaaaa", NULL, NULL), -ERANGE);
}

/* ---- the handle itself (no network) ---- */

/* client_burrow_body() reads every shape a body takes in JSON. */
Test(burrow, body_shapes)
{
    static const struct {
        const char *json;
        int rc;
        const char *bytes;
        size_t len;
    } cases[] = {
        {"{\"id\":\"m\",\"ttl\":0,\"hide\":0,\"body\":\"hi\"}", 0, "hi", 2},
        {"{\"id\":\"m\",\"ttl\":0,\"hide\":0,\"body_base64url\":\"AP8\"}", 0, "\0\xff", 2},
        {"\"bare\"", 0, "bare", 4},
        {"{\"body_base64url\":\"YQBi\"}", 0, "a\0b", 3},
        {"{\"id\":\"m\",\"body\":\"a\\u0000b\"}", 0, "a\0b", 3}, /* another server's NUL */
        {"{\"id\":\"m\",\"ttl\":0,\"hide\":0}", -ENOENT, NULL, 0},
        {"{\"body_base64url\":\"AP8=\"}", -EINVAL, NULL, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_error_t err;
        json_t *j = json_loads(cases[i].json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        char *b = NULL;
        size_t len = 0;

        cr_assert_not_null(j, "case %zu: %s", i, err.text);
        cr_assert_eq(client_burrow_body(j, &b, &len), cases[i].rc, "case %zu", i);
        if (cases[i].rc == 0) {
            cr_assert_eq(len, cases[i].len, "case %zu", i);
            cr_assert_eq(memcmp(b, cases[i].bytes, len), 0, "case %zu", i);
        }
        free(b);
        json_decref(j);
    }
}

Test(client, create_rejects_bad_sheds)
{
    struct shed_client_options o;
    struct shed_client *c = NULL;

    shed_client_options_init(&o);
    o.sheds[0] = "127.0.0.1";
    o.nsheds = 1;
    cr_assert_eq(shed_client_create(&o, &c), -EINVAL);
    o.sheds[0] = "127.0.0.1:0";
    cr_assert_eq(shed_client_create(&o, &c), -EINVAL);
    o.sheds[0] = "127.0.0.1:8080";
    cr_assert_eq(shed_client_create(&o, &c), 0);
    shed_client_destroy(c);
    shed_client_destroy(NULL);
}

Test(client, strerror_covers_codes)
{
    cr_assert_str_eq(shed_client_strerror(-SHED_CLIENT_ELOOP), "redirect loop");
    cr_assert_str_eq(shed_client_strerror(-SHED_CLIENT_ENOTFOUND), "not found");
    cr_assert_str_eq(shed_client_strerror(-ENOENT), strerror(ENOENT));
}

Test(client, unreachable_shed_fails_cleanly)
{
    struct shed_client_options o;
    struct shed_client *c;
    struct shed_client_request req = {.method = "GET", .url = "http://burrow.service/v1.0/a/q/m"};
    struct shed_client_response resp;
    struct shed_client_metrics m;

    shed_client_options_init(&o);
    o.sheds[0] = "127.0.0.1:1"; /* nothing listens on port 1 */
    o.nsheds = 1;
    o.retries = 2;
    o.backoff_base_ms = 1;
    o.backoff_max_ms = 2;
    cr_assert_eq(shed_client_create(&o, &c), 0);
    cr_assert_eq(shed_client_request(c, &req, &resp), -SHED_CLIENT_ETRANSPORT);
    cr_assert_eq(resp.status, 0);
    cr_assert_eq(resp.attempts, 3u);
    shed_client_response_free(&resp);
    shed_client_metrics(c, &m);
    cr_assert_eq(m.requests, 1u);
    cr_assert_eq(m.shed_asks, 3u);
    cr_assert_eq(m.failures, 3u);
    cr_assert_eq(m.retries, 2u);
    shed_client_destroy(c);
}
