/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto_burrow_query_parse() (and through it proto_burrow_query_set()
 * and proto_burrow_query_count()). Properties: more than
 * PROTO_BURROW_QUERY_MAX parameters is always -PROTO_ETOOMANY; what parses
 * is within its limits (ttl, hide, wait in 0..PROTO_BURROW_SECONDS_MAX,
 * strings inside the buffer and at most PROTO_BURROW_ID_MAX bytes); the
 * integers equal what strtoll() makes of the last value given for their key
 * (an independent reading: a value that does not fit int64 must have been
 * refused, where 2^64 once parsed as 0); and the query written back from
 * the parsed values parses to the same values.
 */
#include "proto/burrow.h"
#include "tests/fuzz/fuzz.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define BUFLEN 2048 /* burrowd's QUERY_BUF */

static bool
same(const struct proto_slice *a, const struct proto_slice *b)
{
    if ((a->ptr == NULL) != (b->ptr == NULL))
        return false;
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

/* Append "&<key>=<pct-encoded value>" to <out> at *<n>. */
static bool
put_str(char *out, size_t cap, size_t *n, const char *key, const struct proto_slice *v)
{
    int k = snprintf(out + *n, cap - *n, "&%s=", key);
    long m;

    if (k < 0 || (size_t)k >= cap - *n)
        return false;
    *n += (size_t)k;
    m = proto_pct_encode(v->ptr ? v->ptr : "", v->len, out + *n, cap - *n);
    if (m < 0)
        return false;
    *n += (size_t)m;
    return true;
}

static bool
put_int(char *out, size_t cap, size_t *n, const char *key, int64_t v)
{
    int k = snprintf(out + *n, cap - *n, "&%s=%" PRId64, key, v);

    if (k < 0 || (size_t)k >= cap - *n)
        return false;
    *n += (size_t)k;
    return true;
}

enum { K_LIMIT, K_TTL, K_HIDE, K_WAIT, NKEYS };
static const char *const int_keys[NKEYS] = {"limit", "ttl", "hide", "wait"};

/* Form-decode <len> bytes of <s> ('+' is a space) into <out> (NUL-
 * terminated); false if it does not decode, does not fit, or holds a NUL
 * (which no key or integer may). */
static bool
form_decode(const char *s, size_t len, char *out, size_t cap)
{
    char tmp[64];
    long n;

    if (len >= sizeof(tmp))
        return false;
    for (size_t i = 0; i < len; i++)
        tmp[i] = s[i] == '+' ? ' ' : s[i];
    n = proto_pct_decode(tmp, len, out, cap - 1, true);
    if (n < 0 || memchr(out, '\0', (size_t)n) != NULL)
        return false;
    out[n] = '\0';
    return true;
}

/* The oracle: for each integer key, the last value the input gives it, read
 * with strtoll(). *<ok> false: that value is not a plain in-range integer. */
static void
oracle(const char *qs, size_t len, bool given[NKEYS], bool ok[NKEYS], int64_t val[NKEYS])
{
    size_t i = 0;

    for (int k = 0; k < NKEYS; k++)
        given[k] = false;
    while (i < len) {
        const char *pair = qs + i, *amp = memchr(pair, '&', len - i), *eq;
        size_t plen = amp ? (size_t)(amp - pair) : len - i, klen;
        char key[16], v[64], *end;

        i += plen + 1;
        eq = memchr(pair, '=', plen);
        klen = eq ? (size_t)(eq - pair) : plen;
        if (!form_decode(pair, klen, key, sizeof(key)))
            continue;
        for (int k = 0; k < NKEYS; k++) {
            if (strcmp(key, int_keys[k]) != 0)
                continue;
            given[k] = true;
            ok[k] = false;
            if (!form_decode(eq ? eq + 1 : "", eq ? plen - klen - 1 : 0, v, sizeof(v)))
                break; /* longer than any int64, or a bad escape */
            if (v[0] != '-' && v[0] != '+' && (v[0] < '0' || v[0] > '9'))
                break; /* strtoll would skip leading space */
            if ((v[0] == '-' || v[0] == '+') && (v[1] < '0' || v[1] > '9'))
                break;
            errno = 0;
            val[k] = strtoll(v, &end, 10);
            ok[k] = errno == 0 && *end == '\0';
            if (ok[k] && v[0] == '-' && val[k] == INT64_MIN)
                ok[k] = false; /* the magnitude must fit INT64_MAX */
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool given[NKEYS], ok[NKEYS];
    int64_t val[NKEYS];
    struct proto_burrow_query q, q2;
    char buf[BUFLEN], buf2[BUFLEN], qs[4 * BUFLEN];
    size_t n = 0;
    int rc;

    proto_burrow_query_init(&q);
    rc = proto_burrow_query_parse(&q, (const char *)data, size, buf, sizeof(buf));
    if (proto_burrow_query_count((const char *)data, size) > PROTO_BURROW_QUERY_MAX)
        FUZZ_CHECK(rc == -PROTO_ETOOMANY);
    if (rc != 0) {
        FUZZ_CHECK(rc == -PROTO_EBADVALUE || rc == -PROTO_EBADENC || rc == -PROTO_ETOOLONG ||
                   rc == -PROTO_ETOOMANY);
        return 0;
    }
    if (q.has_ttl)
        FUZZ_CHECK(q.ttl >= 0 && q.ttl <= PROTO_BURROW_SECONDS_MAX);
    if (q.has_hide)
        FUZZ_CHECK(q.hide >= 0 && q.hide <= PROTO_BURROW_SECONDS_MAX);
    if (q.has_wait)
        FUZZ_CHECK(q.wait >= 0 && q.wait <= PROTO_BURROW_SECONDS_MAX);
    if (q.marker.ptr != NULL) {
        FUZZ_CHECK(q.marker.len <= PROTO_BURROW_ID_MAX);
        FUZZ_CHECK(q.marker.ptr >= buf && q.marker.ptr + q.marker.len <= buf + sizeof(buf));
        FUZZ_CHECK(memchr(q.marker.ptr, '\0', q.marker.len) == NULL);
    }
    if (q.detail_raw.ptr != NULL)
        FUZZ_CHECK(q.detail_raw.len <= PROTO_BURROW_ID_MAX);
    oracle((const char *)data, size, given, ok, val);
    FUZZ_CHECK(q.has_limit == given[K_LIMIT] && q.has_ttl == given[K_TTL] &&
               q.has_hide == given[K_HIDE] && q.has_wait == given[K_WAIT]);
    FUZZ_CHECK(!q.has_limit || (ok[K_LIMIT] && q.limit == val[K_LIMIT]));
    FUZZ_CHECK(!q.has_ttl || (ok[K_TTL] && q.ttl == val[K_TTL]));
    FUZZ_CHECK(!q.has_hide || (ok[K_HIDE] && q.hide == val[K_HIDE]));
    FUZZ_CHECK(!q.has_wait || (ok[K_WAIT] && q.wait == val[K_WAIT]));
    FUZZ_CHECK(q.detail_bad == (q.detail_raw.ptr != NULL && q.detail == PROTO_DETAIL_DEFAULT));

    /* Round trip. */
    if ((q.has_limit && !put_int(qs, sizeof(qs), &n, "limit", q.limit)) ||
        (q.has_ttl && !put_int(qs, sizeof(qs), &n, "ttl", q.ttl)) ||
        (q.has_hide && !put_int(qs, sizeof(qs), &n, "hide", q.hide)) ||
        (q.has_wait && !put_int(qs, sizeof(qs), &n, "wait", q.wait)) ||
        (q.marker.ptr && !put_str(qs, sizeof(qs), &n, "marker", &q.marker)) ||
        (q.detail_raw.ptr && !put_str(qs, sizeof(qs), &n, "detail", &q.detail_raw)))
        FUZZ_CHECK(!"query buffer too small");
    if (q.match_hidden) {
        FUZZ_CHECK(n + 20 < sizeof(qs));
        memcpy(qs + n, "&match_hidden=TRUE", 18);
        n += 18;
    }
    proto_burrow_query_init(&q2);
    rc = proto_burrow_query_parse(&q2, qs, n, buf2, sizeof(buf2));
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(q2.has_limit == q.has_limit && q2.limit == q.limit);
    FUZZ_CHECK(q2.has_ttl == q.has_ttl && q2.ttl == q.ttl);
    FUZZ_CHECK(q2.has_hide == q.has_hide && q2.hide == q.hide);
    FUZZ_CHECK(q2.has_wait == q.has_wait && q2.wait == q.wait);
    FUZZ_CHECK(q2.match_hidden == q.match_hidden);
    FUZZ_CHECK(same(&q2.marker, &q.marker));
    FUZZ_CHECK(same(&q2.detail_raw, &q.detail_raw));
    FUZZ_CHECK(q2.detail == q.detail && q2.detail_bad == q.detail_bad);
    return 0;
}
