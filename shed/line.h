/* SPDX-License-Identifier: ISC */
/*
 * shed/line: the line-shed role. Message-level Burrow requests are
 * redirected to the live primary of the request's bucket; list-level ones to
 * the cell's aggregator; stateless ("any") services to a live local instance
 * (weighted, the less loaded of two random choices). With no live local
 * server the answer is decided in one place, shed_line_no_server(), which
 * the escalation work replaces.
 *
 * The routing functions below are pure apart from randomness and the
 * registry's atomic load counters: no allocation, no lock, no I/O. They are
 * thread-safe.
 */
#ifndef SHED_LINE_H
#define SHED_LINE_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/burrow.h"
#include "shed/http.h"

/* Service named by <host> ("burrow.service" or "burrow.service:8080", any
 * case) into <out>. A host that is not NAME.service uses <default_service>
 * when it is not "". 0, -ENOENT (no service applies), -EINVAL (bad host). */
int shed_line_host_service(const char *host, const char *default_service, char out[SHED_NAME_MAX]);

/* Write "<base>/<enc(seg0)>/<enc(seg1)>...[?k=v&...]" into <buf>: each
 * segment and each query key and value (raw, percent-encoded) is decoded,
 * checked and re-encoded. Returns the length, -PROTO_EBADENC (bad escape or
 * NUL in the query), -PROTO_ETOOLONG (does not fit). */
long shed_line_location(char *buf, size_t len, const char *base, const struct proto_slice *segs,
                        size_t nsegs, const struct shed_query *q);

#define SHED_LINE_SEGS_MAX 256 /* path segments of a stateless service's request */

/* Split the raw <path> ("/a/b%20c/...") on '/' and percent-decode every
 * segment into <dec> (<declen> bytes); <segs> (up to <maxsegs>) receive
 * slices into <dec>. 0, -EINVAL (no leading '/', bad escape, control
 * byte), -PROTO_ETOOLONG (path, segment count or <dec> too small). */
int shed_line_split_path(const char *path, char *dec, size_t declen, struct proto_slice *segs,
                         size_t maxsegs, size_t *nsegs);

/* The request's raw query arguments into <q> (overflow set beyond
 * SHED_QUERY_ARGS). Slices live as long as the request. */
void shed_line_query(struct MHD_Connection *conn, struct shed_query *q);

/* Per-thread pseudo-random bits (jitter, random choices; not for secrets). */
uint64_t shed_line_random(void);

/* What proto/ refused with <rc>: 414 when too long (-PROTO_ETOOLONG), else
 * 400 with <body> (<len> bytes, static). */
void shed_line_refused(struct shed_answer *a, long rc, const char *body, size_t len);
#define SHED_REFUSED(a, rc, s) shed_line_refused((a), (rc), (s), sizeof(s) - 1)

/* A jittered Retry-After in seconds: one to three heartbeat intervals. */
unsigned shed_line_retry_after(const struct shed_config *cfg);

/* Decide the answer for a request to the line role. <slot>/<level> receive
 * the metrics labels when the answer is a redirect. */
void shed_line_route(const struct shed_config *cfg, const struct registry_view *view,
                     enum shed_method m, const char *host, const char *path,
                     const struct shed_query *q, struct shed_answer *a, unsigned *slot,
                     enum shed_level *level);

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

/* The answer when no live local server can take a request: 503 with a
 * jittered Retry-After, unless masters are configured: then a redirect to a
 * master with an escalation token (shed/cluster.c; <segs> are the decoded
 * path segments to re-encode, <q> the query). */
void shed_line_no_server(const struct shed_config *cfg, const struct registry_route *route,
                         enum shed_method m, const struct proto_slice *segs, size_t nsegs,
                         const struct shed_query *q, struct shed_answer *a);

/* The role handler for shed/http.c's dispatch. */
bool shed_line_handle(struct shed_call *c);

#endif /* SHED_LINE_H */
