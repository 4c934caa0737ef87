/* SPDX-License-Identifier: ISC */
/*
 * proto/burrow: the Burrow v1.0 URL grammar. Paths and query strings arrive
 * raw (still percent-encoded); this file splits and decodes them with a hard
 * maximum on every piece, following docs/burrow-api.md
 * and taking its suggested fixes: bad integers and negative ttl/hide/wait are
 * a 400 (the reference crashed with a 500), ids are percent-decoded and may
 * hold any byte but '/' and NUL. Hostile input (docs/hardening.md) is refused
 * rather than reinterpreted: integers that do not fit, the ids "." and "..",
 * more than PROTO_BURROW_QUERY_MAX parameters, request targets with control
 * bytes. Pure: no I/O, no allocation.
 */
#include "proto/burrow.h"

#include <errno.h>
#include <string.h>

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode with an optional '+' -> ' ' rule (form encoding, query values). */
static long
decode(const char *s, size_t len, char *out, size_t outlen, bool allow_nul, bool plus_space)
{
    size_t i = 0, o = 0;

    while (i < len) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%') {
            int hi, lo;

            if (len - i < 3)
                return -PROTO_EBADENC;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -PROTO_EBADENC;
            c = (unsigned char)(hi << 4 | lo);
            i += 3;
        } else {
            if (c == '+' && plus_space)
                c = ' ';
            i++;
        }
        if (c == '\0' && !allow_nul)
            return -PROTO_EBADENC;
        if (o >= outlen)
            return -PROTO_ETOOLONG;
        out[o++] = (char)c;
    }
    return (long)o;
}

long
proto_pct_decode(const char *s, size_t len, char *out, size_t outlen, bool allow_nul)
{
    return decode(s, len, out, outlen, allow_nul, false);
}

static bool
unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

long
proto_pct_encode(const char *s, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (unreserved(c)) {
            if (outlen - o < 2)
                return -PROTO_ETOOLONG;
            out[o++] = (char)c;
        } else {
            if (outlen - o < 4)
                return -PROTO_ETOOLONG;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (outlen - o < 1)
        return -PROTO_ETOOLONG;
    out[o] = '\0';
    return (long)o;
}

/*
 * Decode one id segment into <buf> at *<used>. A decoded '/' would not match
 * any route in the reference (the WSGI server decodes before routing), so it
 * is a 404, not a 400.
 */
static int
decode_id(const char *s, size_t len, char *buf, size_t buflen, size_t *used,
          struct proto_slice *out)
{
    size_t room = buflen - *used;
    long n;

    if (room > PROTO_BURROW_ID_MAX)
        room = PROTO_BURROW_ID_MAX;
    n = decode(s, len, buf + *used, room, false, false);
    if (n < 0)
        return (int)n;
    if (memchr(buf + *used, '/', (size_t)n) != NULL)
        return -PROTO_ENOTFOUND;
    /* "." and ".." are dot segments to every URL normaliser: a Location
     * naming one would be rewritten into another resource's path. */
    if ((n == 1 || n == 2) && memcmp(buf + *used, "..", (size_t)n) == 0)
        return -PROTO_EDOTSEG;
    out->ptr = buf + *used;
    out->len = (size_t)n;
    *used += (size_t)n;
    return 0;
}

int
proto_burrow_parse_path(const char *path, size_t len, char *buf, size_t buflen,
                        struct proto_burrow_path *out)
{
    struct proto_slice seg[4];
    struct proto_slice *ids[3] = {&out->account, &out->queue, &out->message};
    char ver[sizeof(PROTO_BURROW_VERSION)];
    size_t nseg = 0, i, start, used = 0;
    long n;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len > PROTO_BURROW_PATH_MAX)
        return -PROTO_ETOOLONG;
    if (len == 0 || path[0] != '/')
        return -PROTO_ENOTFOUND;
    if (len == 1) {
        out->level = PROTO_BURROW_ROOT;
        return 0;
    }
    /* Split on raw '/': every segment must be non-empty (no "//", no
     * trailing slash) and there are at most four of them. */
    start = 1;
    for (i = 1; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        if (i == start)
            return -PROTO_ENOTFOUND;
        if (nseg == 4)
            return -PROTO_ENOTFOUND;
        seg[nseg].ptr = path + start;
        seg[nseg].len = i - start;
        nseg++;
        start = i + 1;
    }
    n = decode(seg[0].ptr, seg[0].len, ver, sizeof(ver), false, false);
    if (n == -PROTO_ETOOLONG)
        return -PROTO_ENOTFOUND; /* longer than any version: another route */
    if (n < 0)
        return (int)n;
    if ((size_t)n != strlen(PROTO_BURROW_VERSION) || memcmp(ver, PROTO_BURROW_VERSION, (size_t)n))
        return -PROTO_ENOTFOUND;
    for (i = 1; i < nseg; i++) {
        rc = decode_id(seg[i].ptr, seg[i].len, buf, buflen, &used, ids[i - 1]);
        if (rc < 0) {
            memset(out, 0, sizeof(*out));
            return rc;
        }
    }
    out->level = (enum proto_burrow_level)nseg;
    return 0;
}

void
proto_burrow_query_init(struct proto_burrow_query *q)
{
    memset(q, 0, sizeof(*q));
    q->marker.ptr = NULL;
    q->detail = PROTO_DETAIL_DEFAULT;
}

/* Strict integer: optional sign, then digits, no spaces; the magnitude must
 * fit INT64_MAX. The bound is checked before each step, so no value wraps
 * (2^64 used to come out as 0). */
static int
parse_int(const char *s, size_t len, int64_t *out)
{
    bool neg = false;
    uint64_t v = 0;
    size_t i = 0;

    if (len > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len)
        return -PROTO_EBADVALUE;
    for (; i < len; i++) {
        uint64_t d;

        if (s[i] < '0' || s[i] > '9')
            return -PROTO_EBADVALUE;
        d = (uint64_t)(s[i] - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return -PROTO_EBADVALUE;
        v = v * 10 + d;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static bool
word_eq(const char *s, size_t len, const char *w)
{
    return strlen(w) == len && memcmp(s, w, len) == 0;
}

static bool
word_caseeq(const char *s, size_t len, const char *w)
{
    if (strlen(w) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != w[i])
            return false;
    }
    return true;
}

static enum proto_burrow_detail
detail_word(const char *s, size_t len)
{
    static const struct {
        const char *w;
        enum proto_burrow_detail d;
    } words[] = {
        {"none", PROTO_DETAIL_NONE},
        {"id", PROTO_DETAIL_ID},
        {"attributes", PROTO_DETAIL_ATTRIBUTES},
        {"body", PROTO_DETAIL_BODY},
        {"all", PROTO_DETAIL_ALL},
    };

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (word_eq(s, len, words[i].w))
            return words[i].d;
    return PROTO_DETAIL_DEFAULT;
}

/* The shed_ keys of the ordering extension (struct proto_burrow_shed);
 * <k> is the decoded key. Unknown shed_ keys are ignored like any other. */
static int
shed_param(struct proto_burrow_query *q, const char *k, size_t kn, const char *val, size_t vlen,
           char *buf, size_t buflen, size_t *used)
{
    struct proto_burrow_shed *x = &q->shed;
    char small[32];
    size_t room;
    int64_t iv;
    long vn;
    int rc;

    if (word_eq(k, kn, "shed_upto_id")) {
        room = buflen - *used;
        if (room > PROTO_BURROW_ID_MAX)
            room = PROTO_BURROW_ID_MAX;
        vn = decode(val, vlen, buf + *used, room, false, true);
        if (vn < 0)
            return (int)vn;
        x->upto_id.ptr = buf + *used;
        x->upto_id.len = (size_t)vn;
        *used += (size_t)vn;
        return 0;
    }
    if (!word_eq(k, kn, "shed_stamps") && !word_eq(k, kn, "shed_after") &&
        !word_eq(k, kn, "shed_upto") && !word_eq(k, kn, "shed_stamp") &&
        !word_eq(k, kn, "shed_clock"))
        return 0;
    vn = decode(val, vlen, small, sizeof(small), true, true);
    if (vn < 0)
        return vn == -PROTO_ETOOLONG ? -PROTO_EBADVALUE : (int)vn;
    if (word_eq(k, kn, "shed_stamps")) {
        x->stamps = word_eq(small, (size_t)vn, "1") || word_caseeq(small, (size_t)vn, "true");
        return 0;
    }
    rc = parse_int(small, (size_t)vn, &iv);
    if (rc < 0)
        return rc;
    if (iv > PROTO_BURROW_STAMP_MAX)
        return -PROTO_EBADVALUE;
    if (word_eq(k, kn, "shed_stamp")) {
        if (iv <= 0)
            return -PROTO_EBADVALUE;
        x->stamp = iv;
        x->has_stamp = true;
        return 0;
    }
    if (iv < 0)
        return -PROTO_EBADVALUE;
    if (word_eq(k, kn, "shed_after")) {
        x->after = iv;
        x->has_after = true;
    } else if (word_eq(k, kn, "shed_clock")) {
        x->clock = iv;
        x->has_clock = true;
    } else {
        x->upto = iv;
        x->has_upto = true;
    }
    return 0;
}

int
proto_burrow_query_set(struct proto_burrow_query *q, const char *key, size_t klen, const char *val,
                       size_t vlen, char *buf, size_t buflen, size_t *used)
{
    char k[16], small[32];
    const char *v;
    long kn, vn;
    size_t room;
    int64_t iv;
    int rc;

    /* A key that does not decode, or is longer than any we know, is an
     * unknown key, and unknown keys are ignored as in the reference. */
    kn = decode(key, klen, k, sizeof(k), false, true);
    if (kn < 0)
        return 0;
    if (kn > 5 && memcmp(k, "shed_", 5) == 0)
        return shed_param(q, k, (size_t)kn, val, vlen, buf, buflen, used);

    if (word_eq(k, (size_t)kn, "marker") || word_eq(k, (size_t)kn, "detail")) {
        /* Strings are kept: decode into the caller's buffer. A marker is an
         * id, so it has the id's maximum and may not hold NUL. */
        room = buflen - *used;
        if (room > PROTO_BURROW_ID_MAX)
            room = PROTO_BURROW_ID_MAX;
        vn = decode(val, vlen, buf + *used, room, false, true);
        if (vn < 0)
            return (int)vn;
        v = buf + *used;
        *used += (size_t)vn;
        if (k[0] == 'm') {
            q->marker.ptr = v;
            q->marker.len = (size_t)vn;
        } else {
            q->detail_raw.ptr = v;
            q->detail_raw.len = (size_t)vn;
            q->detail = detail_word(v, (size_t)vn);
            q->detail_bad = q->detail == PROTO_DETAIL_DEFAULT;
        }
        return 0;
    }

    /* The rest are short values: decode into a local buffer. */
    if (!word_eq(k, (size_t)kn, "match_hidden") && !word_eq(k, (size_t)kn, "limit") &&
        !word_eq(k, (size_t)kn, "ttl") && !word_eq(k, (size_t)kn, "hide") &&
        !word_eq(k, (size_t)kn, "wait"))
        return 0;
    vn = decode(val, vlen, small, sizeof(small), true, true);
    if (vn == -PROTO_ETOOLONG && k[0] == 'm') {
        q->match_hidden = false; /* longer than "true": anything else is false */
        return 0;
    }
    if (vn < 0)
        return vn == -PROTO_ETOOLONG ? -PROTO_EBADVALUE : (int)vn;
    if (k[0] == 'm') {
        q->match_hidden = word_caseeq(small, (size_t)vn, "true");
        return 0;
    }
    rc = parse_int(small, (size_t)vn, &iv);
    if (rc < 0)
        return rc;
    if (k[0] == 'l') {
        q->limit = iv; /* negative: unlimited, as in the reference */
        q->has_limit = true;
        return 0;
    }
    if (iv < 0 || iv > PROTO_BURROW_SECONDS_MAX)
        return -PROTO_EBADVALUE;
    if (k[0] == 't') {
        q->ttl = iv;
        q->has_ttl = true;
    } else if (k[0] == 'h') {
        q->hide = iv;
        q->has_hide = true;
    } else {
        q->wait = iv;
        q->has_wait = true;
    }
    return 0;
}

size_t
proto_burrow_query_count(const char *qs, size_t len)
{
    size_t n = 0;
    const char *p = qs, *end = qs + len;

    if (len == 0)
        return 0;
    while ((p = memchr(p, '&', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n + 1;
}

int
proto_burrow_query_parse(struct proto_burrow_query *q, const char *qs, size_t len, char *buf,
                         size_t buflen)
{
    size_t used = 0, i = 0;

    if (proto_burrow_query_count(qs, len) > PROTO_BURROW_QUERY_MAX)
        return -PROTO_ETOOMANY;

    while (i < len) {
        const char *pair = qs + i, *amp, *eq;
        size_t plen;
        int rc;

        amp = memchr(pair, '&', len - i);
        plen = amp ? (size_t)(amp - pair) : len - i;
        i += plen + 1;
        if (plen == 0)
            continue;
        eq = memchr(pair, '=', plen);
        if (eq)
            rc = proto_burrow_query_set(q, pair, (size_t)(eq - pair), eq + 1,
                                        plen - (size_t)(eq - pair) - 1, buf, buflen, &used);
        else
            rc = proto_burrow_query_set(q, pair, plen, "", 0, buf, buflen, &used);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Bytes never allowed in a request target: controls, DEL and space. */
static bool
target_byte_bad(unsigned char c)
{
    return c <= ' ' || c == 0x7f;
}

/* Does <t> start with "<scheme>://", any case? Returns the length matched. */
static size_t
scheme_prefix(const char *t, size_t len, const char *scheme)
{
    size_t n = strlen(scheme);

    if (len < n + 3 || memcmp(t + n, "://", 3) != 0)
        return 0;
    return word_caseeq(t, n, scheme) ? n + 3 : 0;
}

long
proto_burrow_ring_key(const char *queue, size_t qlen, const char *msg, size_t mlen, char *out,
                      size_t outlen)
{
    if (qlen > outlen || mlen >= outlen - qlen)
        return -PROTO_ETOOLONG;
    memcpy(out, queue, qlen);
    out[qlen] = '/';
    memcpy(out + qlen + 1, msg, mlen);
    return (long)(qlen + 1 + mlen);
}

int
proto_burrow_parse_target(const char *t, size_t len, struct proto_burrow_target *out)
{
    const char *q;
    size_t skip, alen, i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < len; i++)
        if (target_byte_bad((unsigned char)t[i]))
            return -PROTO_EBADTARGET;
    if (len > 0 && t[0] == '/') {
        out->path.ptr = t;
        out->path.len = len;
    } else {
        /* absolute-form: http(s)://authority[/path][?query] */
        skip = scheme_prefix(t, len, "http");
        if (skip == 0)
            skip = scheme_prefix(t, len, "https");
        if (skip == 0)
            return -PROTO_EBADTARGET;
        for (alen = 0; skip + alen < len; alen++) {
            char c = t[skip + alen];

            if (c == '/' || c == '?' || c == '#')
                break;
        }
        if (alen == 0 || memchr(t + skip, '@', alen) != NULL)
            return -PROTO_EBADTARGET;
        out->authority.ptr = t + skip;
        out->authority.len = alen;
        skip += alen;
        if (skip < len && t[skip] == '#')
            return -PROTO_EBADTARGET;
        if (skip == len || t[skip] == '?') {
            /* No path: the same as "/" (RFC 9112 section 3.2.2). */
            out->path.ptr = "/";
            out->path.len = 1;
            t += skip;
            len -= skip;
            if (len == 0)
                return 0;
            out->query.ptr = t + 1;
            out->query.len = len - 1;
            return 0;
        }
        out->path.ptr = t + skip;
        out->path.len = len - skip;
    }
    q = memchr(out->path.ptr, '?', out->path.len);
    if (q != NULL) {
        out->query.ptr = q + 1;
        out->query.len = out->path.len - (size_t)(q + 1 - out->path.ptr);
        out->path.len = (size_t)(q - out->path.ptr);
    }
    return 0;
}

bool
proto_burrow_detail_ok(enum proto_burrow_level level, enum proto_burrow_detail d)
{
    if (d == PROTO_DETAIL_DEFAULT)
        return true;
    switch (level) {
    case PROTO_BURROW_ACCOUNTS:
    case PROTO_BURROW_QUEUES:
        return d == PROTO_DETAIL_NONE || d == PROTO_DETAIL_ID || d == PROTO_DETAIL_ALL;
    case PROTO_BURROW_MESSAGES:
    case PROTO_BURROW_MESSAGE:
        return d >= PROTO_DETAIL_NONE && d <= PROTO_DETAIL_ALL;
    case PROTO_BURROW_ROOT:
        return true; /* detail is not used at the root */
    }
    return false;
}

const char *
proto_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case 0:
        return "success";
    case PROTO_ENOTFOUND:
        return "not a Burrow route";
    case PROTO_EBADENC:
        return "bad percent-encoding";
    case PROTO_ETOOLONG:
        return "too long";
    case PROTO_EBADVALUE:
        return "bad query value";
    case PROTO_EDOTSEG:
        return "id is a dot segment (. or ..)";
    case PROTO_ETOOMANY:
        return "too many query parameters";
    case PROTO_EBADTARGET:
        return "bad request target";
    case EINVAL:
        return "invalid argument";
    case ENOMEM:
        return "out of memory";
    case ERANGE:
        return "out of range";
    case ENOSPC:
        return "no space left in buffer";
    default:
        return "unknown error";
    }
}

int
proto_burrow_key_cmp(int64_t sa, const char *ida, size_t la, int64_t sb, const char *idb, size_t lb)
{
    int c;

    if (sa != sb)
        return sa < sb ? -1 : 1;
    c = memcmp(ida, idb, la < lb ? la : lb);
    if (c != 0 || la == lb)
        return c;
    return la < lb ? -1 : 1;
}
