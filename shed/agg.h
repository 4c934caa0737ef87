/* SPDX-License-Identifier: ISC */
/*
 * shed/agg: the fan-out aggregator role (DESIGN.md section 6,
 * docs/aggregator.md). A list-level Burrow request (GET/POST/DELETE on
 * /v1.0, /v1.0/a, /v1.0/a/q) is answered here: the servers of the account's
 * buckets (both ring generations in the drain window; every server of the
 * cell for /v1.0) are asked in parallel through shed/fanout, and shed/merge
 * builds the one Burrow answer. Destructive operations with a limit walk the
 * backends one after the other passing the remaining limit; wait long-polls
 * every backend with a non-destructive GET and then runs the operation.
 *
 * The daemon side: the HTTP handler suspends the MHD connection, calls
 * shed_agg_start() and, when <done> fires (on the thread that polls the
 * fan-out engine, or inside shed_agg_start() itself), resumes it; on the next handler call it sends
 * shed_agg_response() and frees the request. shed_agg_handle() does all of
 * that as a role of shed/http's dispatch.
 *
 * Ownership: shed_agg_create() returns an owned aggregator,
 * shed_agg_destroy(NULL) is a no-op; a started request is owned by the
 * caller and freed with shed_agg_req_free() after <done> fired. Thread-safe:
 * any thread may start requests; counters are atomic.
 */
#ifndef SHED_AGG_H
#define SHED_AGG_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shed/registry.h"

#define SHED_AGG_HEADER_MAX 1024 /* bytes in Shed-Partial or Link */

struct shed_agg_config {
    bool list_all;               /* false: /v1.0 answers 403 */
    uint64_t backend_timeout_ms; /* per backend request (0: 2000) */
    uint64_t busy_poll_us;       /* see shed_agg_fd() */
    size_t max_body;             /* bytes accepted from one backend (0: 16 MiB) */
    size_t max_probes;           /* dedup probes per page (0: 1024) */
    bool external;               /* fan-out driven by the caller's loop, no thread */
};

struct shed_agg;
struct shed_agg_req;

typedef void (*shed_agg_done_fn)(void *arg);

/* Start the fan-out engine. 0 or a negative errno. */
int shed_agg_create(const struct shed_agg_config *cfg, struct shed_agg **out);
/* Cancel what runs (their done callbacks fire first) and free. */
void shed_agg_destroy(struct shed_agg *agg);
/* New list_all / timeout / busy_poll values for requests started from now
 * on. */
void shed_agg_reconfigure(struct shed_agg *agg, const struct shed_agg_config *cfg);

/* Is <method> on raw <path> a request this role answers (list level:
 * /v1.0, /v1.0/a, /v1.0/a/q, whatever the method)? */
bool shed_agg_wants(const char *path, size_t len);

/* Line sheds send single-message requests whose message may live off its
 * owner to SHED_AGG_LOOKUP_PREFIX + the Burrow path: the aggregator asks
 * every server of the message's bucket, both generations, and answers
 * itself (docs/reachability.md). */
#define SHED_AGG_LOOKUP_PREFIX "/_shed/lookup"
bool shed_agg_is_lookup(const char *path);

/* Start one request. <route> is read only during the call (the caller holds
 * its read-side section); NULL means an unknown service (404). <query> is
 * the raw query string without '?' (may be NULL). On 0 <done> fires exactly
 * once (possibly before this returns) and *<out> must be freed after it; on
 * error (-ENOMEM) nothing fires and nothing is allocated. */
int shed_agg_start(struct shed_agg *agg, const struct registry_route *route, const char *method,
                   const char *path, size_t plen, const char *query, size_t qlen,
                   shed_agg_done_fn done, void *arg, struct shed_agg_req **out);

/* The finished answer as a new MHD response (Content-Length always set) and
 * its status; NULL on allocation failure. Only after <done> fired, and once:
 * the body moves into the response. */
struct MHD_Response *shed_agg_response(struct shed_agg_req *req, unsigned *status);

void shed_agg_req_free(struct shed_agg_req *req);

/* The aggregator role for shed/http's dispatch (struct shed_call): answers
 * list-level Burrow requests (declines anything else), suspending the MHD
 * connection while the fan-out runs. Uses one process-wide aggregator,
 * created on the first request from the config of that call; later calls
 * apply a reloaded aggregation section. Thread-safe. */
struct shed_call;
bool shed_agg_handle(struct shed_call *c);

/* Stop the role: no request starts any more (503), every running one is
 * cancelled and answered, and this returns once their connections are
 * resumed and answered (at most ~3 s), so that MHD_stop_daemon() finds no
 * suspended connection. Call before stopping the HTTP daemons. */
void shed_agg_shutdown(void);

/* Event-loop integration. With shed_agg_set_external(true) before the
 * first request, the process-wide aggregator's fan-out gets no thread of its
 * own: the HTTP front end's loop polls shed_agg_fd() (an epoll fd, -1 while
 * no aggregator exists; it may change after shed_agg_shutdown()) and calls
 * shed_agg_run() when it is readable, so backend answers are merged and
 * their connections resumed on the front end's thread. *busy_poll_ns is
 * how long the loop should look again without sleeping before it blocks:
 * aggregation.busy_poll while a backend answer is due (a long-poll is
 * not), else 0 (common/busypoll.h says why). Thread-safe. */
void shed_agg_set_external(bool on);
int shed_agg_fd(uint64_t *busy_poll_ns);
void shed_agg_run(void);
/* Connections the aggregator has resumed so far: a loop that sees this
 * change during a turn runs MHD again at once (MHD does not always wake
 * itself for a resume made on its own thread). */
uint64_t shed_agg_resumes(void);

/* Append Prometheus text for the aggregator's process-wide counters
 * (shed_agg_backend_errors_total and friends) to <buf> (at most <len>
 * bytes, NUL-terminated); returns the length written. */
size_t shed_agg_metrics(char *buf, size_t len);

/* Backend requests that failed (no answer or 5xx), process-wide. */
uint64_t shed_agg_backend_errors(void);

#endif /* SHED_AGG_H */
