/* SPDX-License-Identifier: ISC */
/*
 * proto/heartbeat: JSON codec and validators for heartbeats. Strict on
 * grammar (the url is echoed into Location headers later), lenient on
 * unknown fields (so newer backends can add some).
 */
#include "proto/heartbeat.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "proto/name.h"

static bool
is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool
proto_hb_service_ok(const char *s, size_t len)
{
    if (len == 0 || len > PROTO_HB_SERVICE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

bool
proto_hb_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > PROTO_HB_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alnum(c) && strchr("._~:@!$&'()*+,;=-", c) == NULL)
            return false;
        if (c == '\0')
            return false;
    }
    return true;
}

bool
proto_hb_zone_ok(const char *s, size_t len)
{
    return len <= PROTO_HB_ZONE_MAX && proto_name_chars_ok(s, len);
}

int
proto_hb_url_host(const char *url, struct proto_hb_host *out)
{
    const char *p;
    uint16_t defport;
    size_t len = strlen(url);
    if (len > PROTO_HB_URL_MAX)
        return -EINVAL;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        defport = 80;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        defport = 443;
    } else {
        return -EINVAL;
    }
    const char *hs, *he;
    if (*p == '[') {
        hs = p + 1;
        he = hs;
        while (*he != '\0' && *he != ']') {
            unsigned char c = (unsigned char)*he;
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.'))
                return -EINVAL;
            he++;
        }
        if (*he != ']' || he == hs)
            return -EINVAL;
        p = he + 1;
    } else {
        hs = p;
        while (is_alnum((unsigned char)*p) || *p == '.' || *p == '-')
            p++;
        he = p;
        if (he == hs)
            return -EINVAL;
    }
    uint32_t port = defport;
    if (*p == ':') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return -EINVAL;
        port = 0;
        while (*p >= '0' && *p <= '9') {
            port = port * 10 + (uint32_t)(*p - '0');
            if (port > 65535)
                return -EINVAL;
            p++;
        }
        if (port == 0)
            return -EINVAL;
    }
    /* An optional path prefix of plain characters, no trailing slash, no
     * query or fragment: the shed appends "/v1.0/..." to it. */
    if (*p == '/') {
        const char *q = p;
        for (; *q != '\0'; q++)
            if (!is_alnum((unsigned char)*q) && strchr("/._~-", *q) == NULL)
                return -EINVAL;
        if (q[-1] == '/' || strstr(p, "//") != NULL)
            return -EINVAL;
        p = q;
    }
    if (*p != '\0')
        return -EINVAL;
    if (out != NULL) {
        memcpy(out->host, hs, (size_t)(he - hs));
        out->host[he - hs] = '\0';
        out->port = (uint16_t)port;
    }
    return 0;
}

static int
get_str(json_t *obj, const char *key, char *dst, size_t max, bool required, const char **what)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required) {
            *what = key;
            return -EINVAL;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        *what = key;
        return -EINVAL;
    }
    size_t len = json_string_length(v);
    if (len > max) {
        *what = key;
        return -E2BIG;
    }
    const char *s = json_string_value(v);
    if (memchr(s, '\0', len) != NULL) {
        *what = key;
        return -EINVAL;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

int
proto_heartbeat_decode(const char *body, size_t len, struct proto_heartbeat *out, const char **what)
{
    const char *dummy;
    if (what == NULL)
        what = &dummy;
    *what = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return -EBADMSG;
    int rc = -EBADMSG;
    struct proto_heartbeat hb;
    memset(&hb, 0, sizeof(hb));
    hb.weight = 1;
    if (!json_is_object(root))
        goto out;
    if ((rc = get_str(root, "service", hb.service, PROTO_HB_SERVICE_MAX, true, what)) < 0)
        goto out;
    if ((rc = get_str(root, "id", hb.id, PROTO_HB_ID_MAX, true, what)) < 0)
        goto out;
    if ((rc = get_str(root, "url", hb.url, PROTO_HB_URL_MAX, true, what)) < 0)
        goto out;
    if ((rc = get_str(root, "zone", hb.zone, PROTO_HB_ZONE_MAX, false, what)) < 0)
        goto out;
    rc = -EINVAL;
    if (!proto_hb_service_ok(hb.service, strlen(hb.service))) {
        *what = "service";
        goto out;
    }
    if (!proto_hb_id_ok(hb.id, strlen(hb.id))) {
        *what = "id";
        goto out;
    }
    if (proto_hb_url_host(hb.url, NULL) < 0) {
        *what = "url";
        goto out;
    }
    if (!proto_hb_zone_ok(hb.zone, strlen(hb.zone))) {
        *what = "zone";
        goto out;
    }
    json_t *v = json_object_get(root, "weight");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > (json_int_t)PROTO_HB_WEIGHT_MAX) {
            *what = "weight";
            goto out;
        }
        hb.weight = (uint32_t)json_integer_value(v);
    }
    v = json_object_get(root, "state");
    if (v != NULL) {
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        if (s != NULL && strcmp(s, "up") == 0) {
            hb.state = PROTO_HB_UP;
        } else if (s != NULL && strcmp(s, "draining") == 0) {
            hb.state = PROTO_HB_DRAINING;
        } else {
            *what = "state";
            goto out;
        }
    }
    v = json_object_get(root, "incarnation");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) > PROTO_HB_INC_MAX) {
            *what = "incarnation";
            goto out;
        }
        hb.incarnation = (uint64_t)json_integer_value(v);
    }
    *out = hb;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

long
proto_heartbeat_encode(const struct proto_heartbeat *hb, char *buf, size_t buflen)
{
    /* Every string field is validated to need no JSON escaping, but escape
     * through jansson anyway: the encoder must never emit broken JSON. */
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I}", "service", hb->service, "id", hb->id,
                  "url", hb->url, "zone", hb->zone, "weight", (json_int_t)hb->weight, "state",
                  hb->state == PROTO_HB_DRAINING ? "draining" : "up", "incarnation",
                  (json_int_t)hb->incarnation);
    if (o == NULL)
        return -EINVAL;
    size_t n = json_dumpb(o, buf, buflen, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (n == 0 || n >= buflen)
        return -ENOSPC;
    buf[n] = '\0';
    return (long)n;
}

int
proto_heartbeat_reply_decode(const char *body, size_t len, struct proto_heartbeat_reply *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (root == NULL)
        return -EBADMSG;
    int rc = -EINVAL;
    struct proto_heartbeat_reply r;
    json_t *l = json_object_get(root, "lease_ms");
    json_t *i = json_object_get(root, "interval_ms");
    json_t *g = json_object_get(root, "generation");
    if (!json_is_integer(l) || !json_is_integer(i) || !json_is_integer(g) ||
        json_integer_value(l) < 1 || json_integer_value(i) < 1 || json_integer_value(g) < 0)
        goto out;
    r.lease_ms = (uint64_t)json_integer_value(l);
    r.interval_ms = (uint64_t)json_integer_value(i);
    r.generation = (uint64_t)json_integer_value(g);
    *out = r;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

long
proto_heartbeat_reply_encode(const struct proto_heartbeat_reply *r, char *buf, size_t buflen)
{
    int n = snprintf(buf, buflen,
                     "{\"lease_ms\":%" PRIu64 ",\"interval_ms\":%" PRIu64 ",\"generation\":%" PRIu64
                     "}",
                     r->lease_ms, r->interval_ms, r->generation);
    if (n < 0 || (size_t)n >= buflen)
        return -ENOSPC;
    return n;
}

int
proto_hb_path(const char *rest, size_t len, const char **service, size_t *slen, const char **id,
              size_t *idlen)
{
    const char *slash = memchr(rest, '/', len);
    if (slash == NULL)
        return -EINVAL;
    size_t sl = (size_t)(slash - rest);
    size_t il = len - sl - 1;
    if (!proto_hb_service_ok(rest, sl) || !proto_hb_id_ok(slash + 1, il))
        return -EINVAL;
    *service = rest;
    *slen = sl;
    *id = slash + 1;
    *idlen = il;
    return 0;
}
