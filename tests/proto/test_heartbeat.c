/* SPDX-License-Identifier: ISC */
/* Table tests for proto/heartbeat: good and bad bodies, the url grammar,
 * the member path, and encode/decode round trips. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/heartbeat.h"

struct body_case {
    const char *body;
    int rc;
    const char *what;
};

static const struct body_case bodies[] = {
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://127.0.0.1:9001\"}", 0, NULL},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://[::1]:9001\",\"zone\":\"r1\","
     "\"weight\":7,\"state\":\"draining\",\"incarnation\":42,\"extra\":[1]}",
     0, NULL},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://h.example:80/pre/fix\"}", 0, NULL},
    {"", -EBADMSG, NULL},
    {"[]", -EBADMSG, NULL},
    {"{\"service\":\"burrow\"", -EBADMSG, NULL},
    {"{\"service\":\"burrow\",\"service\":\"x\",\"id\":\"b\",\"url\":\"http://1.2.3.4\"}", -EBADMSG,
     NULL},
    {"{\"id\":\"b1\",\"url\":\"http://127.0.0.1:9001\"}", -EINVAL, "service"},
    {"{\"service\":\"Burrow\",\"id\":\"b1\",\"url\":\"http://127.0.0.1:9001\"}", -EINVAL,
     "service"},
    {"{\"service\":\"burrow\",\"id\":\"a/b\",\"url\":\"http://127.0.0.1:9001\"}", -EINVAL, "id"},
    {"{\"service\":\"burrow\",\"id\":\"\",\"url\":\"http://127.0.0.1:9001\"}", -EINVAL, "id"},
    {"{\"service\":\"burrow\",\"id\":\"b 1\",\"url\":\"http://127.0.0.1:9001\"}", -EINVAL, "id"},
    {"{\"service\":\"burrow\",\"id\":1,\"url\":\"http://127.0.0.1:9001\"}", -EINVAL, "id"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"ftp://127.0.0.1\"}", -EINVAL, "url"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://127.0.0.1:9001/\"}", -EINVAL, "url"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://127.0.0.1:99999\"}", -EINVAL, "url"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://127.0.0.1:90\\r\\nX: y\"}", -EINVAL,
     "url"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://a?b\"}", -EINVAL, "url"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://1.2.3.4\",\"zone\":\"a b\"}", -EINVAL,
     "zone"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://1.2.3.4\",\"weight\":0}", -EINVAL,
     "weight"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://1.2.3.4\",\"weight\":65536}", -EINVAL,
     "weight"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://1.2.3.4\",\"weight\":\"3\"}", -EINVAL,
     "weight"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://1.2.3.4\",\"state\":\"down\"}",
     -EINVAL, "state"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://1.2.3.4\",\"incarnation\":-1}",
     -EINVAL, "incarnation"},
    {"{\"service\":\"burrow\",\"id\":\"b1\",\"url\":\"http://1.2.3.4\",\"incarnation\":1.5}",
     -EINVAL, "incarnation"},
};

Test(heartbeat, decode_table)
{
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct proto_heartbeat hb;
        const char *what = NULL;
        int rc = proto_heartbeat_decode(bodies[i].body, strlen(bodies[i].body), &hb, &what);
        cr_assert_eq(rc, bodies[i].rc, "case %zu (%s): rc %d", i, bodies[i].body, rc);
        if (bodies[i].what != NULL)
            cr_assert(what != NULL && strcmp(what, bodies[i].what) == 0, "case %zu: what=%s", i,
                      what ? what : "(null)");
    }
}

Test(heartbeat, decode_defaults_and_fields)
{
    struct proto_heartbeat hb;
    const char *b = bodies[1].body;
    cr_assert_eq(proto_heartbeat_decode(b, strlen(b), &hb, NULL), 0);
    cr_assert_str_eq(hb.zone, "r1");
    cr_assert_eq(hb.weight, 7);
    cr_assert_eq(hb.state, PROTO_HB_DRAINING);
    cr_assert_eq(hb.incarnation, 42);
    b = bodies[0].body;
    cr_assert_eq(proto_heartbeat_decode(b, strlen(b), &hb, NULL), 0);
    cr_assert_str_eq(hb.zone, "");
    cr_assert_eq(hb.weight, 1);
    cr_assert_eq(hb.state, PROTO_HB_UP);
    cr_assert_eq(hb.incarnation, 0);
}

Test(heartbeat, too_long_strings)
{
    char body[1024], id[300];
    memset(id, 'a', 256);
    id[256] = '\0';
    snprintf(body, sizeof(body),
             "{\"service\":\"burrow\",\"id\":\"%s\",\"url\":\"http://1.2.3.4\"}", id);
    struct proto_heartbeat hb;
    cr_assert_eq(proto_heartbeat_decode(body, strlen(body), &hb, NULL), -E2BIG);
    id[255] = '\0';
    snprintf(body, sizeof(body),
             "{\"service\":\"burrow\",\"id\":\"%s\",\"url\":\"http://1.2.3.4\"}", id);
    cr_assert_eq(proto_heartbeat_decode(body, strlen(body), &hb, NULL), 0);
}

Test(heartbeat, round_trip)
{
    struct proto_heartbeat hb = {.weight = 9, .state = PROTO_HB_DRAINING, .incarnation = 77};
    strcpy(hb.service, "burrow");
    strcpy(hb.id, "b-7:x");
    strcpy(hb.url, "http://10.0.0.7:8080");
    strcpy(hb.zone, "rack1");
    char buf[PROTO_HB_BODY_MAX];
    long n = proto_heartbeat_encode(&hb, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    struct proto_heartbeat back;
    cr_assert_eq(proto_heartbeat_decode(buf, (size_t)n, &back, NULL), 0);
    cr_assert_eq(memcmp(&hb, &back, sizeof(hb)), 0);
    cr_assert_eq(proto_heartbeat_encode(&hb, buf, 10), -ENOSPC);

    struct proto_heartbeat_reply r = {3000, 987, 12}, rb;
    n = proto_heartbeat_reply_encode(&r, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_eq(proto_heartbeat_reply_decode(buf, (size_t)n, &rb), 0);
    cr_assert_eq(rb.lease_ms, 3000);
    cr_assert_eq(rb.interval_ms, 987);
    cr_assert_eq(rb.generation, 12);
    cr_assert_eq(proto_heartbeat_reply_decode("{}", 2, &rb), -EINVAL);
    cr_assert_eq(proto_heartbeat_reply_decode("x", 1, &rb), -EBADMSG);
}

Test(heartbeat, url_host)
{
    struct proto_hb_host h;
    cr_assert_eq(proto_hb_url_host("http://127.0.0.1:9001", &h), 0);
    cr_assert_str_eq(h.host, "127.0.0.1");
    cr_assert_eq(h.port, 9001);
    cr_assert_eq(proto_hb_url_host("https://[::1]", &h), 0);
    cr_assert_str_eq(h.host, "::1");
    cr_assert_eq(h.port, 443);
    cr_assert_eq(proto_hb_url_host("http://host", &h), 0);
    cr_assert_eq(h.port, 80);
    cr_assert_eq(proto_hb_url_host("http://", &h), -EINVAL);
    cr_assert_eq(proto_hb_url_host("http://a:0", &h), -EINVAL);
    cr_assert_eq(proto_hb_url_host("http://a:b", &h), -EINVAL);
    cr_assert_eq(proto_hb_url_host("http://[zz]:1", &h), -EINVAL);
    cr_assert_eq(proto_hb_url_host("http://a//b", &h), -EINVAL);
    cr_assert_eq(proto_hb_url_host("http://a/b%20", &h), -EINVAL);
}

Test(heartbeat, member_path)
{
    const char *s, *id;
    size_t sl, il;
    const char *p = "burrow/b-1";
    cr_assert_eq(proto_hb_path(p, strlen(p), &s, &sl, &id, &il), 0);
    cr_assert_eq(sl, 6);
    cr_assert_eq(il, 3);
    p = "burrow/a/b";
    cr_assert_eq(proto_hb_path(p, strlen(p), &s, &sl, &id, &il), -EINVAL);
    p = "burrow";
    cr_assert_eq(proto_hb_path(p, strlen(p), &s, &sl, &id, &il), -EINVAL);
    p = "burrow/";
    cr_assert_eq(proto_hb_path(p, strlen(p), &s, &sl, &id, &il), -EINVAL);
    p = "bu rrow/x";
    cr_assert_eq(proto_hb_path(p, strlen(p), &s, &sl, &id, &il), -EINVAL);
}

Test(heartbeat, zone_charset_and_length)
{
    char z[PROTO_HB_ZONE_MAX + 1];

    cr_assert(proto_hb_zone_ok("", 0));
    cr_assert(proto_hb_zone_ok("Rack-1.a_b", 10));
    cr_assert_not(proto_hb_zone_ok("a:b", 3));
    cr_assert_not(proto_hb_zone_ok("a\nb", 3));
    memset(z, 'z', sizeof(z));
    cr_assert(proto_hb_zone_ok(z, PROTO_HB_ZONE_MAX));
    cr_assert_not(proto_hb_zone_ok(z, PROTO_HB_ZONE_MAX + 1));
}
