/* SPDX-License-Identifier: ISC */
/*
 * shed/suspect: failure reports from clients (`Shed-Failed: host:port`).
 *
 * A client that could not reach a pinned host says so when it comes back to
 * a shed. A report proves nothing by itself (the client's own network may be
 * at fault, or it may lie), so it only asks the shed to look: the shed
 * probes the backend itself (libcurl, short timeout, one probe per host at a
 * time; a report within <reprobe_ms> of a probe that found it alive is
 * probed when that pause ends, see shed_suspect_due()). The
 * probe's verdict decides, never the number of reporters: a probe that gets
 * any HTTP answer leaves the member alone; a failed probe makes it suspect
 * for <hold_ms> (skipped like a down member; shed/cluster also marks it down
 * in the registry, which replicates to the cell's peers). Each client
 * address may report <source_rate> times a second; beyond that its reports
 * are dropped (counted), so no client can turn reports into unbounded
 * probes or log lines. The reporting request itself is routed around the
 * host it names at once (shed/route), which only affects the reporter.
 *
 * The counting logic takes the time as an argument (testable without
 * threads); shed_suspect_probe_start() runs probes in one worker thread with
 * a bounded queue and reports through a callback.
 *
 * Ownership: shed_suspect_create() returns an owned object;
 * shed_suspect_destroy(NULL) is a no-op and stops the worker. Strings passed
 * in are copied. All functions are thread-safe.
 */
#ifndef SHED_SUSPECT_H
#define SHED_SUSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/hostport.h"

#define SHED_SUSPECT_MAX_HOSTS   1024               /* hosts tracked at once */
#define SHED_SUSPECT_MAX_SOURCES 1024               /* client addresses rate-limited at once */
#define SHED_SUSPECT_HOST_MAX    PROTO_HOSTPORT_MAX /* bytes of "host:port" */
#define SHED_SUSPECT_CLIENT_MAX  64                 /* bytes of a client address */

struct shed_suspect_config {
    uint64_t hold_ms;          /* a failed probe holds this long (default 3000) */
    uint64_t probe_timeout_ms; /* verification probe (default 300) */
    uint64_t reprobe_ms;       /* no new probe this soon after one found it alive (250) */
    uint32_t source_rate;      /* reports a second from one client address (10) */
};

/* Called from the probe worker when a probe ends: <alive> is true if the
 * backend answered. */
typedef void shed_suspect_done_fn(void *arg, const char *hostport, bool alive);

enum shed_suspect_result {
    SHED_SUSPECT_COUNTED = 0, /* noted; a probe runs or just found it alive */
    SHED_SUSPECT_PROBE = 1,   /* verify: the caller queues a probe of the host */
    SHED_SUSPECT_ALREADY = 2, /* a probe already found it failed */
};

struct shed_suspect_stats {
    uint64_t reports, limited, probes, confirmed;
};

struct shed_suspect;

int shed_suspect_create(const struct shed_suspect_config *cfg, struct shed_suspect **out);
void shed_suspect_destroy(struct shed_suspect *s);

/* Record that <client> (an address) could not reach <hostport> at <now>.
 * Returns an enum shed_suspect_result, or -EINVAL (bad strings), -EBUSY
 * (<client> is over its rate) or -ENOSPC (table full). */
int shed_suspect_report(struct shed_suspect *s, const char *hostport, const char *client,
                        uint64_t now);

/* Is <hostport> suspect (a probe found it failed) at <now>? */
bool shed_suspect_is(struct shed_suspect *s, const char *hostport, uint64_t now);

/* The probe found the backend alive at <now>. */
void shed_suspect_clear(struct shed_suspect *s, const char *hostport, uint64_t now);

/* The probe failed: suspect until <now> + hold_ms. */
void shed_suspect_confirm(struct shed_suspect *s, const char *hostport, uint64_t now);

/* Hosts reported again during the pause after an alive verdict whose
 * pause is over: up to <max> into <out>, each now marked as probing (the
 * caller queues the probes). Returns how many. */
size_t shed_suspect_due(struct shed_suspect *s, uint64_t now, char (*out)[SHED_SUSPECT_HOST_MAX],
                        size_t max);

/* No probe could be queued: forget that one was due (no verdict). */
void shed_suspect_abandon(struct shed_suspect *s, const char *hostport);

/* Counters since creation. */
void shed_suspect_stats(struct shed_suspect *s, struct shed_suspect_stats *out);

/* Hosts suspect right now (metrics). */
size_t shed_suspect_count(struct shed_suspect *s, uint64_t now);

/* Start the probe worker; <fn> is called once per finished probe. 0 or a
 * negative errno. */
int shed_suspect_probe_start(struct shed_suspect *s, shed_suspect_done_fn *fn, void *arg);

/* Queue a probe of <url> (the backend's base URL) for <hostport>. Dropped
 * (-ENOSPC) when the queue is full or -EALREADY when one is queued. */
int shed_suspect_probe(struct shed_suspect *s, const char *hostport, const char *url);

/* Probe <url> now, in the calling thread: 0 if any HTTP answer came back
 * within <timeout_ms>, else -EHOSTDOWN. */
int shed_suspect_probe_sync(const char *url, uint64_t timeout_ms);

#endif /* SHED_SUSPECT_H */
