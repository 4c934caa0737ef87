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
 * This is the engine, with no HTTP library in sight: it takes a plain
 * request description (struct shed_agg_request) and reports the answer
 * (struct shed_agg_answer: status, body, content type and the headers
 * Cache-Control, Shed-Partial, Link, Retry-After) through a callback. The
 * libmicrohttpd adapter (shed/agg_http.h) suspends the connection, starts
 * the request and, when the callback fires, resumes the connection and
 * queues the answer.
 *
 * Life cycle: the daemon creates one engine at start when it has the
 * aggregator role (shed_agg_create()), applies a reloaded aggregation
 * section with shed_agg_reconfigure(), and at shutdown calls
 * shed_agg_stop() before stopping the HTTP daemons (it answers every
 * running request, so that no connection stays suspended), then
 * shed_agg_destroy() after them.
 *
 * Ownership: shed_agg_create() returns an owned engine, borrowing <reg> for
 * its life; shed_agg_destroy(NULL) is a no-op. A started request is owned
 * by the caller and freed with shed_agg_req_free() after <done> fired.
 * Thread-safe: any thread may start requests; counters are atomic.
 */
#ifndef SHED_AGG_H
#define SHED_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shed/registry.h"
#include "shed/route.h"

#define SHED_AGG_HEADER_MAX 1024 /* bytes in Shed-Partial or Link */
#define SHED_AGG_QUERY_MAX  2048 /* bytes of a request's query joined again, NUL included */

struct shed_agg_config {
    bool list_all;               /* false: /v1.0 answers 403 */
    uint32_t list_all_running;   /* /v1.0 lists at once; more answer 503 (0: 2) */
    uint64_t backend_timeout_ms; /* per backend request (0: 2000) */
    uint64_t busy_poll_us;       /* see shed_agg_loop_fd() */
    size_t max_body;             /* bytes accepted from one backend (0: 16 MiB) */
    size_t max_probes;           /* dedup probes per page (0: 1024) */
    /* The fan-out is driven by the caller's loop (shed_agg_loop_fd() and
     * shed_agg_loop_run()), no thread of its own. Fixed at create:
     * shed_agg_reconfigure() ignores it. */
    bool external;
};

struct shed_agg;
struct shed_agg_req;

/* One raw query argument (still percent-encoded), as the front end split
 * it; val NULL when the argument had no '='. */
struct shed_agg_arg {
    const char *key;
    const char *val;
};

/* A request, as the front end received it. Read only during
 * shed_agg_start(). */
struct shed_agg_request {
    const char *method;              /* "GET", "POST", ... */
    const char *path;                /* raw, still percent-encoded, no query */
    size_t plen;                     /* bytes of <path> */
    const struct shed_agg_arg *args; /* the query's arguments, in order */
    size_t nargs;
    /* The service the front end found in Host (with the configured default
     * service); NULL: none applies (404). */
    const char *service;
    /* The service's route when the caller already holds one inside its
     * read-side section (tests); NULL: the engine finds <service> in its
     * registry's routing view. */
    const struct registry_route *route;
    uint64_t now_ms; /* monotonic (common/clock.h), when it arrived; 0: now */
};

/* The answer. Every string lives in the request until
 * shed_agg_req_free(). */
struct shed_agg_answer {
    unsigned status;
    const char *body; /* NULL when empty */
    size_t len;
    const char *content_type;  /* NULL: none */
    const char *cache_control; /* always "no-store" */
    const char *partial;       /* Shed-Partial: the backends not asked or not answering; NULL */
    const char *link;          /* Link: the next page; NULL */
    unsigned retry_after;      /* Retry-After in seconds; 0: none */
};

/* Fires once per started request, on the thread that polls the fan-out
 * engine or inside shed_agg_start() itself; <a> is also
 * shed_agg_answer(req). */
typedef void (*shed_agg_done_fn)(void *arg, const struct shed_agg_answer *a);

/* The engine's settings from the daemon's <cfg> (the aggregation section)
 * and <external> (the front end's loop drives the fan-out). */
void shed_agg_config_of(const struct shed_config *cfg, bool external, struct shed_agg_config *out);

/* Start the engine (and its fan-out) for the routing view of <reg>
 * (borrowed; NULL when every request carries its route). 0 or a negative
 * errno. */
int shed_agg_create(const struct shed_agg_config *cfg, struct registry *reg, struct shed_agg **out);
/* New list_all / timeout / busy_poll values for requests started from now
 * on (SIGHUP). */
void shed_agg_reconfigure(struct shed_agg *agg, const struct shed_agg_config *cfg);
/* No request starts any more (shed_agg_start() fails with -ESHUTDOWN),
 * every running one is cancelled and answered, and this returns once the
 * callers freed them all (at most ~3 s), so that MHD_stop_daemon() finds no
 * suspended connection. Call before stopping the HTTP daemons; a second call
 * does nothing. */
void shed_agg_stop(struct shed_agg *agg);
/* Stop (if not yet) and free. */
void shed_agg_destroy(struct shed_agg *agg);

/* Is <path> (raw, <len> bytes) a request this role answers (list level:
 * /v1.0, /v1.0/a, /v1.0/a/q, whatever the method, or a lookup)? */
bool shed_agg_wants(const char *path, size_t len);

/* Line sheds send single-message requests whose message may live off its
 * owner to SHED_AGG_LOOKUP_PREFIX (shed/route.h) + the Burrow path: the
 * aggregator asks every server of the message's bucket, both generations,
 * and answers itself (docs/reachability.md). */
bool shed_agg_is_lookup(const char *path);

/* Start one request. On 0 <done> fires exactly once (possibly before this
 * returns) and *<out> must be freed after it; on error nothing fires and
 * nothing is allocated: -ENOMEM, -E2BIG (the query does not fit
 * SHED_AGG_QUERY_MAX: answer 400), -ESHUTDOWN (stopped: answer 503). */
int shed_agg_start(struct shed_agg *agg, const struct shed_agg_request *rq, shed_agg_done_fn done,
                   void *arg, struct shed_agg_req **out);

/* The answer once <done> fired, else NULL. */
const struct shed_agg_answer *shed_agg_answer(const struct shed_agg_req *req);
/* Move the answer's body out (the caller frees it with free()); NULL and
 * *len 0 when it has none. Only after <done> fired. */
char *shed_agg_take_body(struct shed_agg_req *req, size_t *len);

/* shed_agg_req_free(NULL) is a no-op. */
void shed_agg_req_free(struct shed_agg_req *req);

/* Event-loop integration. With cfg->external the fan-out gets no thread of
 * its own: the front end's loop polls shed_agg_loop_fd() (an epoll fd, -1
 * once stopped) and calls shed_agg_loop_run() when it is readable, so
 * backend answers are merged and <done> fires on the front end's thread.
 * *busy_poll_ns is how long the loop should look again without sleeping
 * before it blocks: aggregation.busy_poll while a backend answer is due (a
 * long-poll is not), else 0 (common/busypoll.h says why). Thread-safe. */
int shed_agg_loop_fd(struct shed_agg *agg, uint64_t *busy_poll_ns);
void shed_agg_loop_run(struct shed_agg *agg);

/* The engine's counters, for /metrics and the status page. */
struct shed_agg_stats {
    uint64_t requests;         /* requests started */
    uint64_t answered;         /* <done> callbacks fired */
    uint64_t in_flight;        /* started, not yet freed by the caller */
    uint64_t backend_requests; /* requests sent to backends */
    uint64_t backend_errors;   /* ... that got no answer or a 5xx */
    uint64_t partial;          /* answers marked Shed-Partial */
    uint64_t probes;           /* dedup probes */
    uint64_t second_waves;     /* pages that asked some server again */
    uint64_t lookups;          /* single-message lookups */
    uint64_t rounds;           /* rounds of destructive operations with a limit */
    uint64_t slices;           /* slices of account and queue deletes */
};
void shed_agg_stats(const struct shed_agg *agg, struct shed_agg_stats *out);
/* stats.answered alone (one atomic load), for a loop that runs the front
 * end again at once when the engine answered during its turn. */
uint64_t shed_agg_answered(const struct shed_agg *agg);

/* Prometheus text of <s> (shed_agg_requests_total and friends) into <buf>
 * (at most <len> bytes, NUL-terminated); returns the length written. */
size_t shed_agg_stats_text(const struct shed_agg_stats *s, char *buf, size_t len);

#endif /* SHED_AGG_H */
