/* SPDX-License-Identifier: ISC */
/*
 * proto/burrow: the Burrow v1.0 URL grammar (docs/burrow-api.md). Pure: no I/O, no logging.
 *
 * Paths arrive raw (still percent-encoded: the daemons install a no-op
 * unescape callback in libmicrohttpd). Each segment is percent-decoded into a
 * caller-supplied buffer; ids may hold any byte but '/' and NUL, and at most
 * PROTO_BURROW_ID_MAX bytes once decoded. The ids "." and ".." (also spelled
 * "%2E", "%2e%2E", ...) are refused (-PROTO_EDOTSEG, a 400): a client or
 * proxy that removes dot segments (RFC 3986 section 5.2.4) would otherwise
 * send the Location it got for one message to another path.
 *
 * Numbers in the query are exact: a value that does not fit an int64_t is
 * refused, never wrapped. A query has at most PROTO_BURROW_QUERY_MAX
 * parameters. docs/hardening.md lists these rules for every daemon.
 *
 * Ownership: results are slices into the caller's <buf> (or into the caller's
 * input for raw values) and live as long as that buffer.
 */
#ifndef PROTO_BURROW_H
#define PROTO_BURROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_BURROW_ID_MAX      255  /* decoded bytes in one id */
#define PROTO_BURROW_PATH_MAX    2048 /* raw bytes in a path */
#define PROTO_BURROW_VERSION     "v1.0"
#define PROTO_BURROW_SECONDS_MAX 3153600000LL /* ttl, hide, wait: 100 years; 400 beyond */
#define PROTO_BURROW_QUERY_MAX   64 /* '&'-separated parameters in a query, empty ones too */
#define PROTO_BURROW_STAMP_MAX   (1LL << 53) /* shed_ stamps and clocks: 400 beyond */

/* Module error codes, returned negated; see proto_strerror(). */
enum {
    PROTO_ENOTFOUND = 2000, /* not a Burrow route: answer 404, empty body */
    PROTO_EBADENC,          /* bad percent-encoding or a decoded NUL: 400 */
    PROTO_ETOOLONG,         /* id or path over its maximum: 400 */
    PROTO_EBADVALUE,        /* a query value that is not what it must be: 400 */
    PROTO_EDOTSEG,          /* an id "." or "..": 400 */
    PROTO_ETOOMANY,         /* more than PROTO_BURROW_QUERY_MAX query parameters: 400 */
    PROTO_EBADTARGET,       /* a request target that is neither origin- nor http(s)
                               absolute-form, or holds a control byte or space: 400 */
};

struct proto_slice {
    const char *ptr;
    size_t len;
};

enum proto_burrow_level {
    PROTO_BURROW_ROOT = 0,     /* "/" */
    PROTO_BURROW_ACCOUNTS = 1, /* "/v1.0" */
    PROTO_BURROW_QUEUES = 2,   /* "/v1.0/a" */
    PROTO_BURROW_MESSAGES = 3, /* "/v1.0/a/q" */
    PROTO_BURROW_MESSAGE = 4,  /* "/v1.0/a/q/m" */
};

struct proto_burrow_path {
    enum proto_burrow_level level;
    struct proto_slice account; /* decoded, into buf; len 0 if absent */
    struct proto_slice queue;   /* decoded, into buf; len 0 if absent */
    struct proto_slice message; /* decoded, into buf; len 0 if absent */
};

/* Parse raw <path> (no query string) of <len> bytes. Decoded ids go into
 * <buf> (<buflen> >= 3 * PROTO_BURROW_ID_MAX + 3 is always enough).
 * Returns 0, -PROTO_ENOTFOUND (other version, empty segment, trailing slash,
 * more than 4 segments, decoded '/'), -PROTO_EBADENC, -PROTO_ETOOLONG,
 * -PROTO_EDOTSEG (an id that decodes to "." or ".."). */
int proto_burrow_parse_path(const char *path, size_t len, char *buf, size_t buflen,
                            struct proto_burrow_path *out);

/* The ring key of message <msg> in queue <queue>: "queue/message" (the
 * decoded ids joined by one '/'), the string shed and its clients hash to
 * pick the account's bucket (ring_bucket(), docs/bucket.md). Written into
 * <out> (<outlen> bytes, no NUL); returns its length or -PROTO_ETOOLONG. */
#define PROTO_BURROW_KEY_MAX (2 * PROTO_BURROW_ID_MAX + 1)
long proto_burrow_ring_key(const char *queue, size_t qlen, const char *msg, size_t mlen, char *out,
                           size_t outlen);

/* A raw request target split into its parts (RFC 9112 section 3.2). */
struct proto_burrow_target {
    struct proto_slice authority; /* absolute-form only; len 0 otherwise */
    struct proto_slice path;      /* raw, starts with '/' */
    struct proto_slice query;     /* raw, after the first '?'; ptr NULL without '?' */
};

/* Split the raw request target <t> of <len> bytes. Origin-form
 * "/path[?query]" is taken as it is; absolute-form "http://authority/path
 * [?query]" (scheme http or https, any case) gives its path, "/" when it has
 * none, so a request line with an absolute URI reaches the same resource as
 * its origin-form. Returns 0 or -PROTO_EBADTARGET: another form (asterisk,
 * authority, a relative path), another scheme, an empty authority or one with
 * userinfo, or a NUL, control byte (0x00-0x1F, 0x7F) or space anywhere (a
 * raw NUL would otherwise cut the path short where C strings are used). The
 * slices point into <t>, except the "/" of an absolute-form without a path,
 * which is static. */
int proto_burrow_parse_target(const char *t, size_t len, struct proto_burrow_target *out);

enum proto_burrow_detail {
    PROTO_DETAIL_DEFAULT = 0, /* not given: use the operation's default */
    PROTO_DETAIL_NONE,
    PROTO_DETAIL_ID,
    PROTO_DETAIL_ATTRIBUTES,
    PROTO_DETAIL_BODY,
    PROTO_DETAIL_ALL,
};

/* shed's ordering extension of the Burrow API (docs/aggregator.md, "Backend
 * extension"): parameters only shed's aggregator and handoff send to
 * backends. Position keys are (stamp, id) pairs compared stamp first, then
 * id bytewise; a bound without an id covers its whole stamp. */
struct proto_burrow_shed {
    bool stamps;                /* shed_stamps=1 (or true): stamps in JSON objects,
                                   Shed-Clock header */
    bool has_after;             /* shed_after=N: items after (N, marker) */
    int64_t after;              /* >= 0 */
    bool has_upto;              /* shed_upto=N: items up to (N, shed_upto_id) */
    int64_t upto;               /* >= 0 */
    struct proto_slice upto_id; /* shed_upto_id, decoded; ptr NULL when absent */
    bool has_stamp;             /* shed_stamp=N on a PUT: stamp of a new message */
    int64_t stamp;              /* > 0 */
    bool has_clock;             /* shed_clock=N: the backend's clock goes on to N */
    int64_t clock;              /* >= 0 */
};

/* Compare the positions (<sa>, <ida>) and (<sb>, <idb>) of the extension:
 * stamp first, then the id bytes (a prefix first). <0, 0, >0. */
int proto_burrow_key_cmp(int64_t sa, const char *ida, size_t la, int64_t sb, const char *idb,
                         size_t lb);

/* Burrow query parameters. Integers are validated; strings are decoded. */
struct proto_burrow_query {
    int64_t limit; /* 0 when absent; <= 0 means unlimited */
    bool has_limit;
    struct proto_slice marker; /* decoded; ptr NULL when absent */
    bool match_hidden;         /* only "true", any case, sets it */
    enum proto_burrow_detail detail;
    struct proto_slice detail_raw; /* decoded, for the 400 body */
    bool detail_bad;               /* detail given but not a known word */
    int64_t ttl, hide, wait;       /* seconds, >= 0 */
    bool has_ttl, has_hide, has_wait;
    struct proto_burrow_shed shed; /* the extension's parameters */
};

void proto_burrow_query_init(struct proto_burrow_query *q);

/* Apply one raw (still percent-encoded) key=value pair; the last repeat wins.
 * Keys and values are form-decoded ('+' is a space, as WebOb does). Decoded
 * strings go into <buf> at *<used> (advanced). Unknown keys are ignored as in
 * the reference. Integers are strict (optional sign, digits only). The
 * shed_ keys of struct proto_burrow_shed are parsed too (a negative
 * shed_after, shed_upto or shed_clock, a shed_stamp <= 0, any of them over
 * PROTO_BURROW_STAMP_MAX: -PROTO_EBADVALUE).
 * Returns 0, -PROTO_EBADVALUE (non-integer limit/ttl/hide/wait, or negative
 * or over PROTO_BURROW_SECONDS_MAX ttl/hide/wait; a negative limit is
 * accepted and means unlimited), -PROTO_EBADENC (bad escape, NUL in a
 * string), -PROTO_ETOOLONG (marker or detail over PROTO_BURROW_ID_MAX bytes
 * or over <buflen>). */
int proto_burrow_query_set(struct proto_burrow_query *q, const char *key, size_t klen,
                           const char *val, size_t vlen, char *buf, size_t buflen, size_t *used);

/* Parse a whole raw query string "k=v&k2=v2" (no leading '?'). Returns what
 * proto_burrow_query_set() returns for the first bad pair, or
 * -PROTO_ETOOMANY when the query has more than PROTO_BURROW_QUERY_MAX
 * parameters (checked first, see proto_burrow_query_count()). */
int proto_burrow_query_parse(struct proto_burrow_query *q, const char *qs, size_t len, char *buf,
                             size_t buflen);

/* The number of parameters of the raw query <qs>: the '&'-separated pieces,
 * empty ones included (libmicrohttpd keeps a record for each), 0 for "". */
size_t proto_burrow_query_count(const char *qs, size_t len);

/* Is <d> allowed at <level>? (accounts/queues: none, id, all; messages:
 * none, id, attributes, body, all). DEFAULT is always allowed. */
bool proto_burrow_detail_ok(enum proto_burrow_level level, enum proto_burrow_detail d);

/* Percent-decode <len> bytes of <s> into <out>. Returns the decoded length,
 * or -PROTO_EBADENC (bad escape), -PROTO_ETOOLONG (outlen too small). '+' is
 * kept as '+'. NUL bytes are refused when <allow_nul> is false. */
long proto_pct_decode(const char *s, size_t len, char *out, size_t outlen, bool allow_nul);

/* Percent-encode <len> bytes of <s> into <out>: RFC 3986 unreserved bytes are
 * copied, every other byte becomes %XX. Returns the length written (without
 * the NUL it always appends) or -PROTO_ETOOLONG when <outlen> is too small. */
long proto_pct_encode(const char *s, size_t len, char *out, size_t outlen);

/* Text for a code returned by any proto_ module (negated or not). */
const char *proto_strerror(int err);

#endif /* PROTO_BURROW_H */
