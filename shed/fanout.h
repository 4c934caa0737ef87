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
 * from inside a callback; it starts the requests at once in the calling
 * thread (on a kept-alive connection the request is on the wire when it
 * returns). Answers are read by whoever polls the engine: its own thread, or
 * with config.external the caller's event loop (shed_fanout_fd() and
 * shed_fanout_run()). Callbacks run under the engine's lock, one at a time,
 * in the thread that polls or submits; they must not block.
 */
#ifndef SHED_FANOUT_H
#define SHED_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHED_FANOUT_MAX_BATCH     4096              /* requests in one batch */
#define SHED_FANOUT_URL_MAX       4096              /* bytes in one URL */
#define SHED_FANOUT_BODY_MAX      (64u << 20)       /* largest max_body */
#define SHED_FANOUT_TOTAL_DEFAULT ((size_t)1 << 30) /* max_total 0 */

struct shed_fanout_config {
    size_t max_conns;        /* connections kept in the cache (0: 256) */
    size_t max_body;         /* bytes accepted in one answer (0: 16 MiB) */
    size_t max_total;        /* bytes of all answers held at once (0: 1 GiB) */
    long connect_timeout_ms; /* 0: 1000 */
    bool external;           /* no engine thread: the caller polls and runs */
};

struct shed_fanout_req {
    const char *method; /* "GET", "POST", "DELETE"; copied */
    const char *url;    /* absolute http URL; copied */
    long timeout_ms;    /* whole request, > 0 */
    bool long_poll;     /* no prompt answer expected: not in shed_fanout_expecting() */
};

struct shed_fanout_res {
    int status; /* HTTP status, 0 when there is none */
    int err;    /* 0, or -ETIMEDOUT, -ECONNREFUSED, -E2BIG (over max_body or
                 * max_total), -ECANCELED, -EIO */
    char *body; /* owned by the engine, NUL-terminated, never NULL */
    size_t len;
    double ms;     /* time from submit to completion */
    int64_t clock; /* the answer's Shed-Clock header (docs/aggregator.md), 0: none */
};

/* Called as each request completes; return true to cancel the batch's
 * requests still running (they complete with -ECANCELED). May be NULL. */
typedef bool (*shed_fanout_each_fn)(void *arg, size_t idx, const struct shed_fanout_res *res);
/* Called once when every request of the batch has completed or been
 * cancelled; <res> has the batch's <n> results in submit order. */
typedef void (*shed_fanout_done_fn)(void *arg, const struct shed_fanout_res *res, size_t n);

struct shed_fanout;

/* Create the engine and, unless <cfg>->external, start its thread. 0 or a
 * negative errno. */
int shed_fanout_create(const struct shed_fanout_config *cfg, struct shed_fanout **out);

/* Cancel everything still running (done callbacks fire with -ECANCELED),
 * stop the thread and free the engine. Not from a callback. */
void shed_fanout_destroy(struct shed_fanout *f);

/* Queue <n> (1..SHED_FANOUT_MAX_BATCH) requests. On 0, <done> fires exactly
 * once later on the engine thread; on error (-EINVAL, -ENOMEM, -ESHUTDOWN)
 * no callback ever fires. */
int shed_fanout_submit(struct shed_fanout *f, const struct shed_fanout_req *reqs, size_t n,
                       shed_fanout_each_fn each, shed_fanout_done_fn done, void *arg);

/* The engine's epoll fd: readable when shed_fanout_run() has work (answers,
 * timeouts). Owned by the engine. */
int shed_fanout_fd(const struct shed_fanout *f);

/* Do what is ready without waiting: read answers, fire callbacks, act on
 * timeouts. For an external engine, call it whenever shed_fanout_fd() is
 * readable; harmless at any other time. Thread-safe. */
void shed_fanout_run(struct shed_fanout *f);

/* Bytes of answer buffers the engine holds now (at most max_total).
 * Thread-safe. */
size_t shed_fanout_held(const struct shed_fanout *f);

/* Requests running now that expect a prompt answer (not long_poll).
 * Thread-safe. */
size_t shed_fanout_expecting(const struct shed_fanout *f);

/* Busy-poll (common/busypoll.h) for up to <ns> before sleeping while a
 * prompt answer is expected: the engine's own thread does, and
 * shed_fanout_busy_poll() tells an external loop how long to. 0 (the
 * default): never. Thread-safe. */
void shed_fanout_set_busy_poll(struct shed_fanout *f, uint64_t ns);
/* The set time while the spin can pay, else 0: while 0 <
 * shed_fanout_expecting() < the online CPUs, and the machine was not
 * crowded at the last look (at most 20 ms ago: no more tasks runnable than
 * CPUs). */
uint64_t shed_fanout_busy_poll(const struct shed_fanout *f);
/* Where shed_fanout_busy_poll() learns how many tasks are runnable on the
 * machine (NULL: /proc/loadavg, the default); the next call looks again.
 * For tests. Thread-safe. */
void shed_fanout_set_runnable_fn(struct shed_fanout *f, unsigned long (*fn)(void));

/* Requests started since creation; thread-safe. */
uint64_t shed_fanout_started(const struct shed_fanout *f);

/* New connections opened to backends since creation (CURLINFO_NUM_CONNECTS
 * summed over finished requests; keep-alive reuse adds 0); thread-safe. */
uint64_t shed_fanout_connects(const struct shed_fanout *f);

#endif /* SHED_FANOUT_H */
