/* SPDX-License-Identifier: ISC */
/*
 * client/pins: the client's memory of "bucket of service S lives on host H
 * until time T", learned from a shed's redirect headers (Shed-Bucket,
 * Shed-Generation, Shed-Pin-TTL). Also keeps, per service, the ring
 * parameters (Shed-Ring) the client needs to compute a request's bucket
 * itself, so the next request for any message of a pinned bucket goes
 * straight to the host.
 *
 * Time is always passed in by the caller (monotonic milliseconds), so tests
 * drive expiry with an injected clock. The table has a hard maximum; when it
 * is full, expired pins are swept and, failing that, the new pin is refused
 * (the request still works, it just asks a shed again next time).
 *
 * Thread-safety: every function may be called from any thread; a rwlock
 * guards the table (lookups share it). Ownership: client_pins_create()
 * returns an owned table, client_pins_destroy(NULL) is a no-op; strings are
 * copied in and copied out.
 */
#ifndef CLIENT_PINS_H
#define CLIENT_PINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring/ring.h"

#define CLIENT_PINS_MAX_SERVICES 16  /* services with known ring parameters */
#define CLIENT_PINS_HOST_MAX     300 /* bytes in a pinned origin, NUL included */
#define CLIENT_PINS_SERVICE_MAX  65  /* bytes in a service name, NUL included */
#define CLIENT_PINS_WHY_MAX      256 /* bytes in the "why" note, NUL included */

/* One pin as copied out to callers (client_pins_get, client_pins_list). */
struct client_pin {
    char service[CLIENT_PINS_SERVICE_MAX]; /* "burrow" */
    uint32_t bucket;                       /* ring bucket number */
    char host[CLIENT_PINS_HOST_MAX];       /* final origin, "http://127.0.0.1:9001" */
    uint64_t generation;                   /* Shed-Generation of the redirect */
    uint64_t learned_ms;                   /* when it was set (caller's clock) */
    uint64_t expires_ms;                   /* when it stops being used */
    uint64_t hits;                         /* requests sent straight to host */
    char why[CLIENT_PINS_WHY_MAX];         /* e.g. "307 from 127.0.0.1:8080 for PUT a/q/m" */
};

struct client_pins;

/* A table of at most <max> pins (1..1000000). 0, -EINVAL or -ENOMEM. */
int client_pins_create(size_t max, struct client_pins **out);
void client_pins_destroy(struct client_pins *p);

/* Remember the ring parameters of <service> (from Shed-Ring). Later calls
 * replace them; when B, K or a seed changes, every pin of that service is
 * dropped because bucket numbers no longer mean the same. 0, -EINVAL (name
 * too long), -ENOSPC (too many services). */
int client_pins_set_ring(struct client_pins *p, const char *service, const struct ring_config *cfg);

/* Copy out the ring parameters of <service>: 0 or -ENOENT. */
int client_pins_get_ring(struct client_pins *p, const char *service, struct ring_config *cfg);

/* Set (or replace) the pin <service>/<bucket> -> <host> for <ttl_ms> from
 * <now_ms>. <why> may be NULL. ttl 0 removes the pin instead. 0, -EINVAL,
 * -ENOSPC (table full of live pins), -ENOMEM. */
int client_pins_set(struct client_pins *p, const char *service, uint32_t bucket, const char *host,
                    uint64_t generation, uint64_t ttl_ms, uint64_t now_ms, const char *why);

/* Look up a live pin and count a hit. Copies it to <out> (may be NULL) and
 * returns 0; -ENOENT when absent or expired (an expired pin is removed). */
int client_pins_get(struct client_pins *p, const char *service, uint32_t bucket, uint64_t now_ms,
                    struct client_pin *out);

/* A request's route in one shared lock (the pinned path's lookups, without
 * copying a whole struct client_pin out): the bucket of <account>/<key>
 * (ring_bucket()) under <service>'s ring parameters into <bucket> and, when
 * <host> is not NULL and a live pin holds that bucket, the pin's host into
 * <host> (<hostlen> bytes) with a hit counted. Returns 0 (pinned), -ENOENT
 * (bucket set, no live pin or one whose host does not fit <hostlen>; an
 * expired pin is removed as client_pins_get() does), -ESRCH (no ring parameters for <service>: no
 * bucket). */
int client_pins_route(struct client_pins *p, const char *service, const char *account, size_t alen,
                      const char *key, size_t klen, uint64_t now_ms, uint32_t *bucket, char *host,
                      size_t hostlen);

/* Drop one pin: 0 or -ENOENT. */
int client_pins_drop(struct client_pins *p, const char *service, uint32_t bucket);

/* Drop every pin pointing at <host> (any service). Returns how many. */
size_t client_pins_drop_host(struct client_pins *p, const char *host);

/* Remove expired pins; returns how many. */
size_t client_pins_expire(struct client_pins *p, uint64_t now_ms);

/* Number of pins held (live or not yet swept). */
size_t client_pins_count(struct client_pins *p);

/* Copy up to <max> pins, live at <now_ms>, into <out> sorted by service then
 * bucket; returns how many were written. */
size_t client_pins_list(struct client_pins *p, uint64_t now_ms, struct client_pin *out, size_t max);

#endif /* CLIENT_PINS_H */
