/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd_codec: the pure parts of shed/etcd that are bytes and JSON:
 * base64 (the gateway's encoding of keys and values), the member record
 * (proto/sync entry fields), member keys, the keys a master reads, the
 * cells' records and the hints' keys and records. No I/O, no logging.
 */
#include "shed/etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* ---- base64 (standard alphabet, padded: the gateway's bytes) ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

long
shed_etcd_b64_encode(const void *in, size_t n, char *out, size_t outlen)
{
    const uint8_t *p = in;
    size_t need = (n + 2) / 3 * 4 + 1, o = 0;
    if (outlen < need)
        return -ERANGE;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
    return (long)o;
}

static int
b64val(char c)
{
    const char *p = c != '\0' ? strchr(b64chars, c) : NULL;
    return p != NULL ? (int)(p - b64chars) : -1;
}

long
shed_etcd_b64_decode(const char *s, size_t len, void *out, size_t outlen)
{
    uint8_t *o = out;
    size_t n = 0;
    if (len % 4 != 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        size_t pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=' && i + 4 == len && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[j] = b64val(s[i + j])) < 0)
                return -EINVAL;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        if (n + 3 - pad > outlen)
            return -ERANGE;
        o[n++] = (uint8_t)(w >> 16);
        if (pad < 2)
            o[n++] = (uint8_t)(w >> 8);
        if (pad < 1)
            o[n++] = (uint8_t)w;
    }
    return (long)n;
}

/* ---- the record ---- */

char *
shed_etcd_value_encode(const struct proto_sync_entry *e, const char *shed)
{
    json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:I,s:s}", "inc", (json_int_t)e->incarnation, "state",
                          proto_sync_state_name(e->state), "url", e->url, "zone", e->zone, "weight",
                          (json_int_t)e->weight, "shed", shed);
    if (o == NULL)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static int
copy_str(json_t *o, const char *key, char *dst, size_t size, bool required)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL && !required) {
        dst[0] = '\0';
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) >= size)
        return -EINVAL;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int
shed_etcd_value_decode(const char *buf, size_t len, struct proto_sync_entry *e)
{
    json_t *o = json_loadb(buf, len, 0, NULL);
    json_t *inc, *w;
    char state[16];
    int st, rc = -EINVAL;

    if (!json_is_object(o))
        goto out;
    inc = json_object_get(o, "inc");
    w = json_object_get(o, "weight");
    if (!json_is_integer(inc) || json_integer_value(inc) < 0 || !json_is_integer(w) ||
        json_integer_value(w) < 1 || json_integer_value(w) > PROTO_SYNC_WEIGHT_MAX)
        goto out;
    if (copy_str(o, "state", state, sizeof(state), true) < 0 ||
        (st = proto_sync_state_parse(state)) < 0 ||
        copy_str(o, "url", e->url, sizeof(e->url), true) < 0 ||
        copy_str(o, "zone", e->zone, sizeof(e->zone), false) < 0)
        goto out;
    e->incarnation = (uint64_t)json_integer_value(inc);
    e->weight = (uint32_t)json_integer_value(w);
    e->state = (enum proto_sync_state)st;
    e->age_ms = 0;
    e->seq = 0;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int
shed_etcd_key_split(const char *rel, size_t len, char *service, size_t slen, char *id, size_t idlen)
{
    const char *s1 = memchr(rel, '/', len);
    if (s1 == NULL)
        return -EINVAL;
    const char *s2 = memchr(s1 + 1, '/', len - (size_t)(s1 + 1 - rel));
    size_t a = (size_t)(s1 - rel), b;
    if (s2 == NULL)
        return -EINVAL;
    b = (size_t)(s2 - s1 - 1);
    if (a == 0 || a >= slen || b == 0 || b >= idlen || s2 + 1 == rel + len ||
        memchr(s2 + 1, '/', len - (size_t)(s2 + 1 - rel)) != NULL)
        return -EINVAL;
    memcpy(service, rel, a);
    service[a] = '\0';
    memcpy(id, s1 + 1, b);
    id[b] = '\0';
    return 0;
}

int
shed_etcd_key_class(const char *rel, size_t len, char *cell, size_t clen, const char **rest)
{
    static const char cells[] = SHED_ETCD_CELLS_DIR, hints[] = SHED_ETCD_HINTS_DIR;
    int kind = SHED_ETCD_KEY_MEMBER;
    const char *p = rel, *end = rel + len, *slash;

    if (len >= sizeof(cells) - 1 && memcmp(rel, cells, sizeof(cells) - 1) == 0) {
        kind = SHED_ETCD_KEY_CELL;
        p += sizeof(cells) - 1;
    } else if (len >= sizeof(hints) - 1 && memcmp(rel, hints, sizeof(hints) - 1) == 0) {
        kind = SHED_ETCD_KEY_HINT;
        p += sizeof(hints) - 1;
    } else if (len > 0 && rel[0] == '~') {
        return -EINVAL;
    }
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL || slash == p || (size_t)(slash - p) >= clen || slash + 1 == end)
        return -EINVAL;
    for (const char *c = p; c < slash; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
            return -EINVAL;
    memcpy(cell, p, (size_t)(slash - p));
    cell[slash - p] = '\0';
    *rest = slash + 1;
    return kind;
}

int
shed_etcd_cell_decode(const char *buf, size_t len, char *aggregator, size_t size)
{
    json_t *o = json_loadb(buf, len, 0, NULL);
    int rc = json_is_object(o) ? copy_str(o, "aggregator", aggregator, size, true) : -EINVAL;
    json_decref(o);
    return rc;
}

int
shed_etcd_hint_key(char *buf, size_t len, const char *prefix, const char *cell, uint64_t seq,
                   const char *shed)
{
    int n = snprintf(buf, len, "%s" SHED_ETCD_HINTS_DIR "%s/%020" PRIu64 "-%s", prefix, cell, seq,
                     shed);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

char *
shed_etcd_hint_encode(const char *service, const char *path, const char *url, uint64_t at_ms)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "service", service, "path", path, "url", url, "at",
                          (json_int_t)at_ms);
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

int
shed_etcd_hint_decode(const char *buf, size_t len, struct shed_etcd_hint *h)
{
    json_t *o = json_loadb(buf, len, 0, NULL), *at;
    int rc = -EINVAL;
    if (!json_is_object(o))
        goto out;
    at = json_object_get(o, "at");
    if (!json_is_integer(at) || json_integer_value(at) < 0 ||
        copy_str(o, "service", h->service, sizeof(h->service), true) < 0 ||
        copy_str(o, "path", h->path, sizeof(h->path), true) < 0 ||
        copy_str(o, "url", h->url, sizeof(h->url), true) < 0 || h->service[0] == '\0' ||
        h->path[0] != '/' || h->url[0] == '\0')
        goto out;
    h->at_ms = (uint64_t)json_integer_value(at);
    rc = 0;
out:
    json_decref(o);
    return rc;
}
