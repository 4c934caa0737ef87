/* SPDX-License-Identifier: ISC */
/*
 * client/client: the shed client library (DESIGN.md section 7).
 *
 * A request to http://NAME.service/... goes to a shed; the library follows
 * the 302/307 chain itself (never CURLOPT_FOLLOWLOCATION: it keeps method and
 * body on every hop and reads the Shed-* headers), up to a hop limit and
 * refusing loops. From a redirect it learns, per service, the ring
 * parameters (Shed-Ring) and "bucket -> final host" (Shed-Bucket,
 * Shed-Pin-TTL), so later message-level requests whose bucket it computes
 * with ring/ go straight to the pinned host on a kept-alive connection. A pin
 * is dropped when it expires, on a connection failure, a 5xx or a 421; the
 * next request goes back to a shed (jittered exponential backoff) naming the
 * failed host in a "Shed-Failed: host:port" request header. List-level
 * requests simply follow the redirect to the aggregator every time.
 *
 * Threads: one handle per program, shared by any number of threads. Easy
 * handles (each with its own keep-alive connection cache, keyed by final
 * host:port by libcurl) sit in a free list behind a mutex; a call borrows one
 * and gives it back, so N concurrent threads use at most N easy handles and
 * connections are reused across calls. The DNS cache is shared through a
 * CURLSH with per-data mutex callbacks. Pins and ring parameters live in a
 * rwlock-guarded table (client/pins.h); metrics are atomic counters.
 *
 * Ownership: shed_client_create() copies the options (strings included);
 * shed_client_destroy(NULL) is a no-op. A response filled by
 * shed_client_request() owns its buffers until shed_client_response_free().
 * Call curl_global_init() before creating the first handle (the CLI does);
 * shed_client_create() does it if nobody has, which is not thread-safe.
 */
#ifndef CLIENT_CLIENT_H
#define CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client/pins.h"

#define SHED_CLIENT_MAX_SHEDS 16          /* --shed overrides */
#define SHED_CLIENT_MAX_HOPS  10          /* hard ceiling for max_hops */
#define SHED_CLIENT_BODY_MAX  (64u << 20) /* hard ceiling on a response body */

/* Module error codes, returned negated; see shed_client_strerror(). */
enum {
    SHED_CLIENT_ETRANSPORT = 3000, /* could not reach the host (after retries) */
    SHED_CLIENT_EHOPS,             /* redirect chain longer than max_hops */
    SHED_CLIENT_ELOOP,             /* redirect back to a URL already visited */
    SHED_CLIENT_EBADREDIRECT,      /* 3xx without a usable absolute Location */
    SHED_CLIENT_ETOOBIG,           /* response body over the limit */
    SHED_CLIENT_ENOTFOUND,         /* HTTP 404 (Burrow API) */
    SHED_CLIENT_EREFUSED,          /* HTTP 4xx other than 404 (Burrow API) */
    SHED_CLIENT_ESERVER,           /* HTTP 5xx (Burrow API, after retries) */
    SHED_CLIENT_EBADREPLY,         /* reply not what the API promises (bad JSON) */
};

/* Monotonic clock in milliseconds, for tests; NULL = CLOCK_MONOTONIC. */
typedef uint64_t shed_client_clock_fn(void *arg);

struct shed_client_options {
    const char *sheds[SHED_CLIENT_MAX_SHEDS]; /* "host:port" used for NAME.service
                                                 instead of DNS (like curl --connect-to) */
    size_t nsheds;
    unsigned max_hops;           /* redirects followed per request; 0 = 5 */
    unsigned retries;            /* extra attempts after a failure; 0 = 3 */
    unsigned backoff_base_ms;    /* first retry delay (jittered); 0 = 20 */
    unsigned backoff_max_ms;     /* ceiling; 0 = 1000 */
    long connect_timeout_ms;     /* 0 = 2000 */
    long timeout_ms;             /* whole request, per hop; 0 = 30000 */
    size_t max_pins;             /* 0 = 65536 */
    size_t body_max;             /* response body limit; 0 = 16 MiB */
    bool no_pin;                 /* never pin (every request asks a shed) */
    FILE *trace;                 /* non-NULL: one line per hop (the --verbose chain) */
    shed_client_clock_fn *clock; /* NULL: CLOCK_MONOTONIC */
    void *clock_arg;
};

struct shed_client;

/* Fill <o> with the defaults (all zero: see the field comments). */
void shed_client_options_init(struct shed_client_options *o);

/* 0, -EINVAL (bad shed address, too many), -ENOMEM. */
int shed_client_create(const struct shed_client_options *o, struct shed_client **out);
void shed_client_destroy(struct shed_client *c);

struct shed_client_header {
    const char *name;  /* borrowed */
    const char *value; /* borrowed */
};

struct shed_client_request {
    const char *method; /* "GET", "PUT", "POST", "DELETE", "HEAD" */
    const char *url;    /* absolute http URL, already percent-encoded */
    const void *body;   /* borrowed, may be NULL; re-sent on every hop */
    size_t body_len;
    const char *content_type; /* NULL: application/octet-stream when a body */
    long timeout_ms;          /* 0: the handle's */
    bool no_retry;            /* do not re-send after a 5xx (non-idempotent op) */
};

struct shed_client_response {
    long status; /* final HTTP status; 0 when no response */
    char *body;  /* owned, NUL-terminated (not counted in body_len) */
    size_t body_len;
    char content_type[128];
    char final_url[CLIENT_PINS_HOST_MAX + 2048]; /* where the answer came from */
    char link_next[2048];                        /* resolved rel="next" target, "" when none */
    unsigned hops;                               /* redirects followed in the successful attempt */
    unsigned attempts;                           /* 1 + retries used */
    bool pinned;                                 /* sent straight to a pinned host */
    uint32_t bucket;                             /* the request's bucket, when has_bucket */
    bool has_bucket;
};

/* Send one request, following redirects, using and updating pins, retrying
 * after failures. Returns 0 when an HTTP response arrived (any status: see
 * <resp>->status), else a negative errno / -SHED_CLIENT_E*; <resp> is filled
 * in both cases and must be freed. Thread-safe. */
int shed_client_request(struct shed_client *c, const struct shed_client_request *req,
                        struct shed_client_response *resp);
void shed_client_response_free(struct shed_client_response *resp);

/* Counters since creation (monotonic, thread-safe snapshot). */
struct shed_client_metrics {
    uint64_t requests;     /* shed_client_request() calls */
    uint64_t http;         /* HTTP exchanges (every hop, every attempt) */
    uint64_t redirects;    /* 3xx followed */
    uint64_t pinned;       /* requests sent straight to a pinned host */
    uint64_t shed_asks;    /* exchanges with a shed (first hop to NAME.service) */
    uint64_t failures;     /* failed exchanges: transport, 5xx, 421 */
    uint64_t retries;      /* attempts after the first */
    uint64_t pins_set;     /* pins learned */
    uint64_t pins_dropped; /* pins dropped after a failure */
    uint64_t lookups;      /* 404s asked again through a shed with Shed-Lookup */
};
void shed_client_metrics(struct shed_client *c, struct shed_client_metrics *m);

/* Copy up to <max> live pins into <out>; returns how many. */
size_t shed_client_pins(struct shed_client *c, struct client_pin *out, size_t max);

/* The bucket of a message-level URL under <cfg>, computed the way the
 * library does before a pinned send: ids decoded from the path, key
 * "queue/message", ring_bucket(). 0, -ENOENT (not a NAME.service message
 * URL), or a parse error. Pure; thread-safe. */
int shed_client_url_bucket(const struct ring_config *cfg, const char *url, uint32_t *bucket);

/* The handle's clock, in ms (for comparing with pin expiry). */
uint64_t shed_client_now_ms(struct shed_client *c);

/* Text for any code this library returns (negated or not), including
 * negative errno values and proto/ring codes. */
const char *shed_client_strerror(int err);

/* What the calling thread's last transport failure was, as "URL: cause"
 * ("http://burrow.service/v1.0/a: Couldn't resolve host name"), or "" when
 * it had none: the detail behind SHED_CLIENT_ETRANSPORT. Thread-local, valid
 * until the thread's next request. */
const char *shed_client_last_cause(void);

#endif /* CLIENT_CLIENT_H */
