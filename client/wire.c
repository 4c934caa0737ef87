/* SPDX-License-Identifier: ISC */
/*
 * client/wire: URL splitting, Shed-* header parsing, Link rel="next" and
 * jittered backoff for the client library. Cursor-style parsers over the
 * caller's bytes (curl style); nothing here allocates or blocks.
 */
#include "client/wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int
lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static bool
ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);

    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void
trim(const char **s, size_t *len)
{
    while (*len > 0 && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_blank((*s)[*len - 1]))
        (*len)--;
}

/* Whether <s> (<len> bytes) holds no byte a URL may not: controls, space,
 * DEL, and '#' (a fragment). Eight bytes at a time: a byte below 0x21, or
 * equal to 0x7f or '#' (xor makes it 0), shows as a borrow into its top bit,
 * and a borrow only crosses into the next byte from a byte that already
 * matched, so the test is exact; the last len % 8 bytes one by one. On the
 * pinned path this is most of the URL parse (a byte-wise loop took ~6
 * instructions a byte). */
static bool
url_bytes_ok(const char *s, size_t len)
{
    const uint64_t ones = 0x0101010101010101ull, tops = 0x8080808080808080ull;
    size_t i = 0;

    for (; len - i >= 8; i += 8) {
        uint64_t w, del, hash;

        memcpy(&w, s + i, 8);
        del = w ^ (ones * 0x7f);
        hash = w ^ (ones * '#');
        if ((((w - ones * 0x21) & ~w) | ((del - ones) & ~del) | ((hash - ones) & ~hash)) & tops)
            return false;
    }
    for (; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '#')
            return false;
    return true;
}

int
client_wire_parse_url(const char *url, struct client_wire_url *out)
{
    size_t len = strlen(url), slen;
    const char *p, *end, *auth, *auth_end;

    if (len > CLIENT_WIRE_URL_MAX)
        return -ERANGE;
    memset(out, 0, sizeof(*out));
    if (!url_bytes_ok(url, len))
        return -EINVAL;
    /* "http://" or "https://", any case (the first "://" of a URL whose
     * scheme is http or https ends it). */
    if (lower((unsigned char)url[0]) != 'h' || lower((unsigned char)url[1]) != 't' ||
        lower((unsigned char)url[2]) != 't' || lower((unsigned char)url[3]) != 'p')
        return -EINVAL;
    slen = lower((unsigned char)url[4]) == 's' ? 5 : 4;
    if (url[slen] != ':' || url[slen + 1] != '/' || url[slen + 2] != '/')
        return -EINVAL;
    p = url + slen;
    out->scheme.ptr = url;
    out->scheme.len = slen;
    end = url + len;
    auth = p + 3;
    auth_end = auth + strcspn(auth, "/?"); /* no NUL before end (len is strlen) */
    if (auth_end == auth || memchr(auth, '@', (size_t)(auth_end - auth)) != NULL)
        return -EINVAL;
    out->hostport.ptr = auth;
    out->hostport.len = (size_t)(auth_end - auth);
    out->port = slen == 5 ? 443 : 80;
    {
        const char *colon = NULL;
        const char *h = auth;

        if (*auth == '[') {
            const char *rb = memchr(auth, ']', (size_t)(auth_end - auth));
            if (rb == NULL)
                return -EINVAL;
            if (rb + 1 < auth_end) {
                if (rb[1] != ':')
                    return -EINVAL;
                colon = rb + 1;
            }
        } else {
            colon = memchr(auth, ':', (size_t)(auth_end - auth));
        }
        out->host.ptr = h;
        out->host.len = colon ? (size_t)(colon - h) : (size_t)(auth_end - h);
        if (out->host.len == 0)
            return -EINVAL;
        if (colon != NULL) {
            unsigned long port = 0;
            const char *c = colon + 1;

            if (c == auth_end)
                return -EINVAL;
            for (; c < auth_end; c++) {
                if (*c < '0' || *c > '9')
                    return -EINVAL;
                port = port * 10 + (unsigned long)(*c - '0');
                if (port > 65535)
                    return -EINVAL;
            }
            if (port == 0)
                return -EINVAL;
            out->port = (uint16_t)port;
            out->has_port = true;
        }
    }
    if (auth_end < end && *auth_end == '/') {
        const char *q = memchr(auth_end, '?', (size_t)(end - auth_end));
        out->path.ptr = auth_end;
        out->path.len = q ? (size_t)(q - auth_end) : (size_t)(end - auth_end);
        if (q != NULL) {
            out->query.ptr = q + 1;
            out->query.len = (size_t)(end - q - 1);
        }
    } else {
        out->path.ptr = "/";
        out->path.len = 1;
        if (auth_end < end) { /* '?' right after the authority */
            out->query.ptr = auth_end + 1;
            out->query.len = (size_t)(end - auth_end - 1);
        }
    }
    return 0;
}

bool
client_wire_service(const struct client_wire_url *u, char *buf, size_t buflen)
{
    static const char suffix[] = ".service";
    size_t slen = sizeof(suffix) - 1;
    size_t nlen;

    if (u->host.len <= slen)
        return false;
    nlen = u->host.len - slen;
    /* ".service" in any case, a byte at a time without lower(): c | 0x20
     * folds only a letter's case (no other byte becomes a letter), and the
     * dot is compared as is. */
    if (u->host.ptr[nlen] != '.')
        return false;
    for (size_t i = 1; i < slen; i++)
        if (((unsigned char)u->host.ptr[nlen + i] | 0x20) != (unsigned char)suffix[i])
            return false;
    if (nlen + 1 > buflen || nlen > CLIENT_WIRE_SERVICE_MAX)
        return false;
    for (size_t i = 0; i < nlen; i++)
        buf[i] = (char)lower((unsigned char)u->host.ptr[i]);
    buf[nlen] = '\0';
    return true;
}

int
client_wire_origin(const struct client_wire_url *u, char *buf, size_t buflen)
{
    int n = snprintf(buf, buflen, "%.*s://%.*s:%u", (int)u->scheme.len, u->scheme.ptr,
                     (int)u->host.len, u->host.ptr, (unsigned)u->port);

    if (n < 0 || (size_t)n >= buflen)
        return -ERANGE;
    for (int i = 0; i < (int)u->scheme.len; i++)
        buf[i] = (char)lower((unsigned char)buf[i]);
    return n;
}

int
client_wire_hostport(const struct client_wire_url *u, char *buf, size_t buflen)
{
    int n = snprintf(buf, buflen, "%.*s:%u", (int)u->host.len, u->host.ptr, (unsigned)u->port);

    if (n < 0 || (size_t)n >= buflen)
        return -ERANGE;
    return n;
}

int
client_wire_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    trim(&s, &len);
    if (len == 0 || len > 20)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        if (v > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int
parse_hex64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 16)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        int c = lower((unsigned char)s[i]), d;

        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return -EINVAL;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return 0;
}

int
client_wire_parse_ring(const char *s, size_t len, struct ring_config *cfg)
{
    const char *end = s + len;
    bool have_b = false, have_k = false, have_sa = false, have_sk = false;
    uint64_t b = 0, k = 0, sa = 0, sk = 0;

    while (s < end) {
        const char *semi = memchr(s, ';', (size_t)(end - s));
        const char *fend = semi ? semi : end;
        const char *eq;
        const char *key = s, *val;
        size_t klen, vlen;

        s = semi ? semi + 1 : end;
        klen = (size_t)(fend - key);
        trim(&key, &klen);
        if (klen == 0)
            continue;
        eq = memchr(key, '=', klen);
        if (eq == NULL)
            return -EINVAL;
        val = eq + 1;
        vlen = (size_t)(key + klen - val);
        klen = (size_t)(eq - key);
        trim(&key, &klen);
        trim(&val, &vlen);
        if (ieq(key, klen, "b")) {
            if (have_b || client_wire_parse_uint(val, vlen, RING_MAX_BUCKETS, &b) != 0)
                return -EINVAL;
            have_b = true;
        } else if (ieq(key, klen, "k")) {
            if (have_k || client_wire_parse_uint(val, vlen, RING_MAX_K, &k) != 0)
                return -EINVAL;
            have_k = true;
        } else if (ieq(key, klen, "sa")) {
            if (have_sa || parse_hex64(val, vlen, &sa) != 0)
                return -EINVAL;
            have_sa = true;
        } else if (ieq(key, klen, "sk")) {
            if (have_sk || parse_hex64(val, vlen, &sk) != 0)
                return -EINVAL;
            have_sk = true;
        }
    }
    if (!have_b || !have_k || !have_sa || !have_sk)
        return -EINVAL;
    /* B a power of two, 1 <= K <= min(B, RING_MAX_K): what ring/ accepts. */
    if (b == 0 || (b & (b - 1)) != 0 || k == 0 || k > b)
        return -EINVAL;
    ring_config_default(cfg);
    cfg->buckets = (uint32_t)b;
    cfg->k = (uint32_t)k;
    cfg->seed_account = sa;
    cfg->seed_key = sk;
    return 0;
}

/* One link-value "<uri>; param; param" of a Link header: does it carry
 * rel=next (quoted or not, possibly in a space-separated list)? */
static bool
params_have_next(const char *p, const char *end)
{
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pend = semi ? semi : end;
        const char *key = p, *val, *eq;
        size_t klen = (size_t)(pend - p), vlen;

        p = semi ? semi + 1 : end;
        trim(&key, &klen);
        eq = memchr(key, '=', klen);
        if (eq == NULL)
            continue;
        val = eq + 1;
        vlen = (size_t)(key + klen - val);
        klen = (size_t)(eq - key);
        trim(&key, &klen);
        trim(&val, &vlen);
        if (!ieq(key, klen, "rel"))
            continue;
        if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
            val++;
            vlen -= 2;
        }
        while (vlen > 0) {
            size_t w = 0;

            while (w < vlen && val[w] != ' ')
                w++;
            if (ieq(val, w, "next"))
                return true;
            val += w;
            vlen -= w;
            while (vlen > 0 && *val == ' ') {
                val++;
                vlen--;
            }
        }
    }
    return false;
}

int
client_wire_link_next(const char *s, size_t len, struct client_wire_slice *out)
{
    const char *p = s, *end = s + len;

    while (p < end) {
        const char *lt, *gt, *vend;
        bool inq = false;

        while (p < end && (is_blank(*p) || *p == ','))
            p++;
        if (p == end)
            break;
        if (*p != '<')
            return -EINVAL;
        lt = p;
        gt = memchr(lt, '>', (size_t)(end - lt));
        if (gt == NULL)
            return -EINVAL;
        /* The link-value ends at the next ',' outside a quoted string. */
        vend = gt + 1;
        while (vend < end && (inq || *vend != ',')) {
            if (*vend == '"')
                inq = !inq;
            vend++;
        }
        if (params_have_next(gt + 1, vend)) {
            out->ptr = lt + 1;
            out->len = (size_t)(gt - lt - 1);
            if (out->len == 0)
                return -EINVAL;
            return 0;
        }
        p = vend;
    }
    return -ENOENT;
}

uint64_t
client_wire_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint64_t rnd)
{
    uint64_t d = base_ms;

    if (attempt == 0 || base_ms == 0)
        return 0;
    for (unsigned i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    /* Equal jitter: half fixed, half random, so a retry never comes
     * immediately and many clients do not retry in lockstep. */
    return d - d / 2 + (d / 2 == 0 ? 0 : rnd % (d / 2 + 1));
}

bool
client_wire_header(const char *line, size_t len, const char *name, struct client_wire_slice *value)
{
    const char *colon = memchr(line, ':', len);
    const char *v;
    size_t vlen;

    if (colon == NULL || !ieq(line, (size_t)(colon - line), name))
        return false;
    v = colon + 1;
    vlen = len - (size_t)(v - line);
    trim(&v, &vlen);
    value->ptr = v;
    value->len = vlen;
    return true;
}
