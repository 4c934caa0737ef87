/* SPDX-License-Identifier: ISC */
/*
 * shed/route: the redirect path, from a request to its Location, in one
 * place and with no HTTP library (the front end, shed/route_http.c, only
 * collects the request and sends the answer):
 *
 *   Host -> service           shed_route_host_service()
 *   raw path -> target        shed_route_target(): level, decoded segments,
 *                             the ring key of a message
 *   line role decision        shed_line_route(): the live primary of the
 *                             message's bucket, the aggregator for lists
 *                             and lookups, a weighted live instance of a
 *                             stateless service, escalation when no live
 *                             local server is left
 *   escalation                shed_route_escalate(): a signed token, a
 *                             master that acknowledged the change first
 *   master role decision      shed_master_route_request(): the best other
 *                             cell (shed/master), never a visited one
 *   Location                  shed_route_location(): every segment and
 *                             query part decoded, checked, re-encoded
 *   302 / 307                 shed_route_redirect()
 *
 * Pure apart from randomness (shed_route_random()), the registry's atomic
 * load counters and, on escalation, the sync sender's acknowledgement table
 * and the master's hints: no allocation, no lock on the line path, no I/O.
 * Thread-safe. Unit-tested without a daemon (tests/shed/test_route.c).
 */
#ifndef SHED_ROUTE_H
#define SHED_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/burrow.h"
#include "shed/answer.h"
#include "shed/config.h"
#include "shed/registry.h"

struct shed_sync;
struct shed_master;
struct shed_hints;
struct shed_etcd;
struct shed_events;

#define SHED_ROUTE_SEGS_MAX    256             /* path segments of a stateless service's request */
#define SHED_ROUTE_TOKEN_TTL_S 30              /* escalation tokens expire after this */
#define SHED_AGG_LOOKUP_PREFIX "/_shed/lookup" /* + /v1.0/a/q/m: the aggregator's lookup */

/* What escalation needs from the rest of the daemon; every member may be
 * NULL (no escalation: the line role answers 503). Owned by the daemon. */
struct shed_escalator {
    struct registry *reg;         /* the escalation sequence of a service */
    struct shed_sync *sync;       /* line role with masters: who acknowledged what */
    struct shed_master *master;   /* master role in this process: decide in place */
    struct shed_hints *hints;     /* master role: escalated writes to bring home */
    struct shed_etcd *etcd_hints; /* master on etcd: the hints go there instead */
    struct shed_events *events;   /* recent escalations, for the status page */
};

/* Everything routing reads, borrowed for one request. */
struct shed_router {
    const struct shed_config *cfg;
    const struct registry_view *view; /* line role */
    const struct shed_escalator *esc; /* NULL: no escalation */
    uint64_t unix_s; /* wall clock for token expiry; 0: read it when a token needs it */
};

/* A request as routing sees it. */
struct shed_request {
    enum shed_method m;
    const char *host; /* Host header, NULL when absent */
    const char *path; /* raw, still percent-encoded, no query */
    const struct shed_query *q;
    uint64_t now_ms; /* monotonic */
};

/* A parsed request target. Slices point into the struct itself. */
struct shed_target {
    char service[SHED_NAME_MAX];
    enum shed_service_kind kind;
    enum shed_level level;       /* MESSAGE, LIST (Burrow) or ANY */
    struct proto_burrow_path bp; /* Burrow: the decoded ids */
    struct proto_slice segs[SHED_ROUTE_SEGS_MAX];
    size_t nsegs;                   /* Burrow: "v1.0" + ids; any: every segment */
    char key[PROTO_BURROW_KEY_MAX]; /* message level: the ring key */
    size_t klen;
    char dec[PROTO_BURROW_PATH_MAX]; /* decoded segments */
};

/* Service named by <host> ("burrow.service" or "burrow.service:8080", any
 * case; "x.burrow.service" from a DNS wildcard is "burrow") into <out>. A
 * host that is not NAME.service uses <default_service> when it is not "".
 * 0, -ENOENT (no service applies), -EINVAL (bad host). */
int shed_route_host_service(const char *host, const char *default_service, char out[SHED_NAME_MAX]);

/* Split the raw <path> ("/a/b%20c/...") on '/' and percent-decode every
 * segment into <dec> (<declen> bytes); <segs> (up to <maxsegs>) receive
 * slices into <dec>. 0, -EINVAL (no leading '/', bad escape, control
 * byte), -PROTO_ETOOLONG (path, segment count or <dec> too small). */
int shed_route_split_path(const char *path, char *dec, size_t declen, struct proto_slice *segs,
                          size_t maxsegs, size_t *nsegs);

/* The bucket of message <p> (level PROTO_BURROW_MESSAGE) under <cfg>:
 * ring_bucket() of its account and its ring key (proto_burrow_ring_key());
 * RING_NONE when the key does not fit. */
uint32_t shed_route_bucket(const struct ring_config *cfg, const struct proto_burrow_path *p);

/* Parse <path> for a service of <kind> into <t> (t->service is the
 * caller's). 0, or -1 with the refusal (400/404/414) in <a>. <root_ok>:
 * "/" is a target of its own (the line role answers it), else 404. */
int shed_route_target(enum shed_service_kind kind, const char *path, bool root_ok,
                      struct shed_target *t, struct shed_answer *a);

/* Write "<base>/<enc(seg0)>/<enc(seg1)>...[?k=v&...]" into <buf>: each
 * segment and each query key and value (raw, percent-encoded) is decoded,
 * checked and re-encoded; arguments named <skip> (NULL: none) are left
 * out. Returns the length, -PROTO_EBADENC (bad escape or NUL in the query),
 * -PROTO_ETOOLONG (does not fit). */
long shed_route_location(char *buf, size_t len, const char *base, const struct proto_slice *segs,
                         size_t nsegs, const struct shed_query *q, const char *skip);

/* <a> becomes a redirect to its location: 302/307 by method as the config
 * says (code_get for GET/HEAD, code_other for the rest), no body. */
void shed_route_redirect(const struct shed_config *cfg, enum shed_method m, struct shed_answer *a);

/* What proto/ refused with <rc>: 414 when too long (-PROTO_ETOOLONG), else
 * 400 with <body> (<len> bytes, static). */
void shed_route_refused(struct shed_answer *a, long rc, const char *body, size_t len);
#define SHED_REFUSED(a, rc, s) shed_route_refused((a), (rc), (s), sizeof(s) - 1)

/* Per-thread pseudo-random bits (jitter, random choices; not for secrets). */
uint64_t shed_route_random(void);

/* A jittered Retry-After in seconds: one to three heartbeat intervals. */
unsigned shed_route_retry_after(const struct shed_config *cfg);

/* ---- line role ---- */

/* Decide the answer for a request to the line role. <slot>/<level> receive
 * the metrics labels when the answer is a redirect. */
void shed_line_route(const struct shed_router *rt, const struct shed_request *req,
                     struct shed_answer *a, unsigned *slot, enum shed_level *level);

/* The first member of <bucket>'s row in <r>'s current ring that may take a
 * new request: live and not draining; then handoffs past R; then a
 * draining member of the row (better than nothing). RING_NONE when every
 * candidate is down. Where a PUT goes, and so a message's home. */
uint32_t shed_line_primary(const struct registry_route *r, uint32_t bucket);

/* The same, skipping live members served at <avoid> ("host:port", as in a
 * Shed-Failed report; NULL: none): the reporting request goes around the
 * host it reported at once, whatever the verification probe finds. */
uint32_t shed_line_primary_avoid(const struct registry_route *r, uint32_t bucket,
                                 const char *avoid);

/* Might a message of <bucket> live off the server its row names first? In
 * the settle window after a liveness change of <r> (route->settle), and
 * in the drain window for a bucket whose first server changed with the
 * generation. Single-message reads of such buckets go to the aggregator's
 * lookup. */
bool shed_line_unsettled(const struct registry_route *r, uint32_t bucket);

/* ---- escalation and the master role ---- */

/* Can <rt> escalate at all (masters configured and a sync sender, or a
 * master in this process)? */
bool shed_route_can_escalate(const struct shed_router *rt);

/* Line role, no live local server for <t>: a redirect to a master with an
 * escalation token (or 400 for a bad token, 503 when escalation is
 * impossible right now) into <a>, or a 503 with a jittered Retry-After
 * when escalation is not configured. */
void shed_route_escalate(const struct shed_router *rt, const struct registry_route *r,
                         const struct shed_request *req, const struct shed_target *t,
                         struct shed_answer *a);

/* Line role, list level: should this list escalate (masters configured and
 * no member of <r> is live here)? */
bool shed_route_list_escalates(const struct shed_router *rt, const struct registry_route *r);

/* The master role's decision for <req> (rt->esc->master must be set). */
void shed_master_route_request(const struct shed_router *rt, const struct shed_request *req,
                               struct shed_answer *a, unsigned *slot, enum shed_level *level);

#endif /* SHED_ROUTE_H */
