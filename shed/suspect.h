/* SPDX-License-Identifier: ISC */
/*
 * shed/suspect: failure reports from clients (`Shed-Failed: host:port`).
 *
 * A client that could not reach a pinned host says so when it comes back to
 * a shed. One report proves little (the client's own network may be at
 * fault, or it may lie), so a member becomes suspect only when reports from
 * <quorum> distinct client addresses arrive within <window_ms>. A suspect
 * member is skipped like a down one at once, long before its lease runs out,
 * and a confirmation probe is started: the shed connects to the backend
 * itself (libcurl, short timeout). A probe that gets any HTTP answer clears
 * the suspicion; a failed probe confirms it, and it then holds for
 * <hold_ms> (a lease: by then the registry has the truth from heartbeats).
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

#define SHED_SUSPECT_MAX_HOSTS   1024 /* hosts tracked at once */
#define SHED_SUSPECT_MAX_REPORTS 8    /* distinct recent reporters kept per host */
#define SHED_SUSPECT_HOST_MAX    300  /* bytes of "host:port" */
#define SHED_SUSPECT_CLIENT_MAX  64   /* bytes of a client address */

struct shed_suspect_config {
    uint32_t quorum;           /* distinct clients needed, >= 2 (default 2) */
    uint64_t window_ms;        /* reports older than this do not count (default 2000) */
    uint64_t hold_ms;          /* a confirmed suspicion lasts this long (default 3000) */
    uint64_t probe_timeout_ms; /* confirmation probe (default 300) */
};

/* Called from the probe worker when a probe ends: <alive> is true if the
 * backend answered. */
typedef void shed_suspect_done_fn(void *arg, const char *hostport, bool alive);

enum shed_suspect_result {
    SHED_SUSPECT_COUNTED = 0, /* noted; not (yet) enough independent reports */
    SHED_SUSPECT_NEW = 1,     /* this report made the host suspect: probe it */
    SHED_SUSPECT_ALREADY = 2, /* the host was already suspect */
};

struct shed_suspect;

int shed_suspect_create(const struct shed_suspect_config *cfg, struct shed_suspect **out);
void shed_suspect_destroy(struct shed_suspect *s);

/* Record that <client> (an address) could not reach <hostport> at <now>.
 * Returns an enum shed_suspect_result, or -EINVAL (bad strings) / -ENOSPC
 * (table full). The same client reporting again counts once. */
int shed_suspect_report(struct shed_suspect *s, const char *hostport, const char *client,
                        uint64_t now);

/* Is <hostport> suspect at <now>? */
bool shed_suspect_is(struct shed_suspect *s, const char *hostport, uint64_t now);

/* The backend proved alive (probe answered, or a fresh heartbeat after the
 * suspicion began): forget the reports and the suspicion. */
void shed_suspect_clear(struct shed_suspect *s, const char *hostport);

/* The probe failed: the suspicion holds until <now> + hold_ms. */
void shed_suspect_confirm(struct shed_suspect *s, const char *hostport, uint64_t now);

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

/* "host:port" of an http URL ("http://h:p/..." -> "h:p"; the port defaults
 * to 80) into <out>. 0 or -EINVAL / -ERANGE. */
int shed_suspect_hostport(const char *url, char *out, size_t outlen);

#endif /* SHED_SUSPECT_H */
