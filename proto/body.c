/* SPDX-License-Identifier: ISC */
/*
 * proto/body: bodies in JSON as a string or as base64url (see body.h). The
 * UTF-8 check is ours rather than jansson's so that a caller can also repair
 * text (burrowd's ids) with the same rules, and so that the check does not
 * cost a copy.
 */
#include "proto/body.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/b64.h"

size_t
proto_body_utf8_span(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i];
        size_t need, k;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            need = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            break; /* a continuation byte or 0xF8..0xFF first */
        }
        if (n - i < need)
            break;
        for (k = 1; k < need && (p[i + k] & 0xC0) == 0x80; k++)
            cp = cp << 6 | (p[i + k] & 0x3F);
        if (k < need || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            break;
        i += need;
    }
    return i;
}

bool
proto_body_is_text(const char *s, size_t n)
{
    return (n == 0 || memchr(s, '\0', n) == NULL) && proto_body_utf8_span(s, n) == n;
}

/* A new JSON string with the base64url spelling of <s>, <n>. */
static json_t *
b64_string(const char *s, size_t n)
{
    size_t cap;
    char *buf;
    long len;
    json_t *j;

    if (n > (SIZE_MAX - 3) / 4)
        return NULL;
    cap = PROTO_B64URL_ENC_SIZE(n);
    buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    len = proto_b64url_encode((const uint8_t *)s, n, buf, cap);
    j = len < 0 ? NULL : json_stringn_nocheck(buf, (size_t)len);
    free(buf);
    return j;
}

int
proto_body_set(json_t *obj, const char *s, size_t n)
{
    int rc;

    if (n == 0)
        s = ""; /* jansson refuses a NULL string even for zero bytes */
    if (proto_body_is_text(s, n))
        rc = json_object_set_new(obj, PROTO_BODY_KEY, json_stringn_nocheck(s, n));
    else
        rc = json_object_set_new(obj, PROTO_BODY_B64_KEY, b64_string(s, n));
    return rc < 0 ? -ENOMEM : 0;
}

json_t *
proto_body_value(const char *s, size_t n)
{
    json_t *o;

    if (n == 0)
        return json_string("");
    if (proto_body_is_text(s, n))
        return json_stringn_nocheck(s, n);
    o = json_object();
    if (o != NULL && proto_body_set(o, s, n) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A malloc'd, NUL-terminated copy of <n> bytes (or of their base64url
 * decoding when <b64>). */
static int
copy_out(const char *s, size_t n, bool b64, char **out, size_t *len)
{
    size_t cap = b64 ? n / 4 * 3 + 3 : n;
    char *buf = malloc(cap + 1);
    long got;

    if (buf == NULL)
        return -ENOMEM;
    if (b64) {
        got = proto_b64url_decode(s, n, (uint8_t *)buf, cap);
        if (got < 0) {
            free(buf);
            return -EINVAL;
        }
        n = (size_t)got;
    } else if (n > 0) {
        memcpy(buf, s, n);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int
proto_body_get(const json_t *v, char **out, size_t *len)
{
    const json_t *b;

    if (json_is_string(v))
        return copy_out(json_string_value(v), json_string_length(v), false, out, len);
    if (!json_is_object(v))
        return -ENOENT;
    b = json_object_get(v, PROTO_BODY_KEY);
    if (json_is_string(b))
        return copy_out(json_string_value(b), json_string_length(b), false, out, len);
    b = json_object_get(v, PROTO_BODY_B64_KEY);
    if (json_is_string(b))
        return copy_out(json_string_value(b), json_string_length(b), true, out, len);
    return -ENOENT;
}
