/* SPDX-License-Identifier: ISC */
/*
 * shed/fanout: parallel HTTP requests for the aggregator, on one libcurl
 * multi handle driven by its own thread. Connections stay in the multi
 * handle's cache, so backends are reached over persistent keep-alive
 * connections. Each request has its own timeout; a batch can be cut short
 * from its per-request callback (first answer wins, the rest are cancelled).
 *
 * Ownership: shed_fanout_create() returns an owned engine;
 * shed_fanout_destroy(NULL) is a no-op. A submitted batch copies its
 * requests; its results (bodies included) belong to the engine and live until
 * the done callback returns.
 *
 * Threads: shed_fanout_submit() may be called from any thread, including
 * from inside a callback. Callbacks run on the engine's thread, one at a
 * time; they must not block.
 */
#ifndef SHED_FANOUT_H
#define SHED_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHED_FANOUT_MAX_BATCH 4096        /* requests in one batch */
#define SHED_FANOUT_URL_MAX   4096        /* bytes in one URL */
#define SHED_FANOUT_BODY_MAX  (64u << 20) /* largest max_body */

struct shed_fanout_config {
    size_t max_conns;        /* connections kept in the cache (0: 256) */
    size_t max_body;         /* bytes accepted in one answer (0: 16 MiB) */
    long connect_timeout_ms; /* 0: 1000 */
};

struct shed_fanout_req {
    const char *method; /* "GET", "POST", "DELETE"; copied */
    const char *url;    /* absolute http URL; copied */
    long timeout_ms;    /* whole request, > 0 */
};

struct shed_fanout_res {
    int status; /* HTTP status, 0 when there is none */
    int err;    /* 0, or -ETIMEDOUT, -ECONNREFUSED, -E2BIG, -ECANCELED, -EIO */
    char *body; /* owned by the engine, NUL-terminated, never NULL */
    size_t len;
    double ms; /* time from submit to completion */
};

/* Called as each request completes; return true to cancel the batch's
 * requests still running (they complete with -ECANCELED). May be NULL. */
typedef bool (*shed_fanout_each_fn)(void *arg, size_t idx, const struct shed_fanout_res *res);
/* Called once when every request of the batch has completed or been
 * cancelled; <res> has the batch's <n> results in submit order. */
typedef void (*shed_fanout_done_fn)(void *arg, const struct shed_fanout_res *res, size_t n);

struct shed_fanout;

/* Start the engine thread. 0 or a negative errno. */
int shed_fanout_create(const struct shed_fanout_config *cfg, struct shed_fanout **out);

/* Cancel everything still running (done callbacks fire with -ECANCELED),
 * stop the thread and free the engine. Not from a callback. */
void shed_fanout_destroy(struct shed_fanout *f);

/* Queue <n> (1..SHED_FANOUT_MAX_BATCH) requests. On 0, <done> fires exactly
 * once later on the engine thread; on error (-EINVAL, -ENOMEM, -ESHUTDOWN)
 * no callback ever fires. */
int shed_fanout_submit(struct shed_fanout *f, const struct shed_fanout_req *reqs, size_t n,
                       shed_fanout_each_fn each, shed_fanout_done_fn done, void *arg);

/* Requests started and failed (status 0) since creation; thread-safe. */
uint64_t shed_fanout_started(const struct shed_fanout *f);

#endif /* SHED_FANOUT_H */
