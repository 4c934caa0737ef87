/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto/heartbeat: the heartbeat and reply decoders (JSON from a
 * backend), the member url check and the path split. Properties: a
 * heartbeat that decodes passes every field validator, encodes (into
 * PROTO_HB_BODY_MAX bytes) and decodes to the same value; so does a reply;
 * a url that proto_hb_url_host() accepts has a host that is a prefix-free
 * part of it; proto_hb_path() returns validated slices of its input.
 */
#include "proto/heartbeat.h"
#include "tests/fuzz/fuzz.h"

#include <errno.h>
#include <string.h>

static bool
hb_equal(const struct proto_heartbeat *a, const struct proto_heartbeat *b)
{
    return strcmp(a->service, b->service) == 0 && strcmp(a->id, b->id) == 0 &&
           strcmp(a->url, b->url) == 0 && strcmp(a->zone, b->zone) == 0 && a->weight == b->weight &&
           a->state == b->state && a->incarnation == b->incarnation;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct proto_heartbeat hb, hb2;
    struct proto_heartbeat_reply r, r2;
    struct proto_hb_host host;
    char buf[PROTO_HB_BODY_MAX], *z;
    const char *what = NULL, *svc, *id;
    size_t slen, idlen;
    long n;
    int rc;

    rc = proto_heartbeat_decode(s, size, &hb, &what);
    if (rc == 0) {
        FUZZ_CHECK(proto_hb_service_ok(hb.service, strlen(hb.service)));
        FUZZ_CHECK(proto_hb_id_ok(hb.id, strlen(hb.id)));
        FUZZ_CHECK(proto_hb_zone_ok(hb.zone, strlen(hb.zone)));
        FUZZ_CHECK(proto_hb_url_host(hb.url, &host) == 0);
        FUZZ_CHECK(hb.weight >= 1 && hb.weight <= PROTO_HB_WEIGHT_MAX);
        FUZZ_CHECK(hb.incarnation <= PROTO_HB_INC_MAX);
        n = proto_heartbeat_encode(&hb, buf, sizeof(buf));
        FUZZ_CHECK(n > 0 && (size_t)n < sizeof(buf));
        FUZZ_CHECK(proto_heartbeat_decode(buf, (size_t)n, &hb2, NULL) == 0);
        FUZZ_CHECK(hb_equal(&hb, &hb2));
    } else {
        FUZZ_CHECK(rc == -EBADMSG || rc == -EINVAL || rc == -E2BIG);
        FUZZ_CHECK(rc == -EBADMSG || what != NULL);
    }

    if (proto_heartbeat_reply_decode(s, size, &r) == 0) {
        n = proto_heartbeat_reply_encode(&r, buf, sizeof(buf));
        FUZZ_CHECK(n > 0);
        FUZZ_CHECK(proto_heartbeat_reply_decode(buf, (size_t)n, &r2) == 0);
        FUZZ_CHECK(r.lease_ms == r2.lease_ms && r.interval_ms == r2.interval_ms &&
                   r.generation == r2.generation);
    }

    /* The input as a NUL-terminated url. */
    z = malloc(size + 1);
    FUZZ_CHECK(z != NULL);
    memcpy(z, data, size);
    z[size] = '\0';
    if (proto_hb_url_host(z, &host) == 0) {
        FUZZ_CHECK(strlen(z) <= PROTO_HB_URL_MAX);
        FUZZ_CHECK(host.host[0] != '\0' && strstr(z, host.host) != NULL);
        FUZZ_CHECK(host.port != 0);
    }
    free(z);

    if (proto_hb_path(s, size, &svc, &slen, &id, &idlen) == 0) {
        FUZZ_CHECK(svc == s && slen < size && id == s + slen + 1 && slen + 1 + idlen == size);
        FUZZ_CHECK(proto_hb_service_ok(svc, slen) && proto_hb_id_ok(id, idlen));
    }
    return 0;
}
