/* SPDX-License-Identifier: ISC */
/*
 * shed/guard: slow and greedy clients cannot take the connection table.
 *
 * libmicrohttpd's idle timeout restarts on every byte, so a client that
 * sends its request headers one byte at a time holds a connection for ever,
 * and ten thousand such clients lock everyone else out. Two limits:
 *
 *   header deadline   a connection must complete a request's headers within
 *                     <header_ms> of being accepted, and a keep-alive one
 *                     the next request's within <idle_ms> + <header_ms> of
 *                     the previous answer; past it the shed shuts the
 *                     socket down (counted, logged once per interval)
 *   per-source cap    at most <per_source> connections from one client
 *                     address; more are refused at accept (counted)
 *
 * Wiring (shed/server): shed_guard_accept() is MHD's accept policy callback,
 * shed_guard_notify() its connection notifier; the access handler calls
 * shed_guard_request() on a request's first call and the completion
 * callback shed_guard_done(). The main loop calls shed_guard_sweep().
 *
 * One guard per daemon (struct shed_daemon.guard; the <cls> of MHD's accept,
 * notify and URI callbacks), with a mutex; all functions are thread-safe. Sockets are shut down
 * under that mutex, and MHD notifies a close before it closes the socket, so a swept descriptor is
 * never one that was reused.
 */
#ifndef SHED_GUARD_H
#define SHED_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

struct shed_guard;

/* A guard for at most <max_conns> connections, no limit set yet. 0 or
 * -ENOMEM (*out may then hold a guard to destroy). */
int shed_guard_create(size_t max_conns, struct shed_guard **out);
/* Set the limits (0 turns either off); again on reload. */
void shed_guard_set(struct shed_guard *gd, uint64_t header_ms, uint64_t idle_ms,
                    unsigned per_source);
/* After the front end stopped; NULL is a no-op. */
void shed_guard_destroy(struct shed_guard *gd);

enum MHD_Result shed_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void shed_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);
void shed_guard_request(struct MHD_Connection *conn);

/* MHD's URI log callback: sees the raw request target before MHD cuts it at
 * a NUL or splits its query (see docs/hardening.md), empties a query of more
 * than PROTO_BURROW_QUERY_MAX parameters before that split can exhaust the
 * connection's memory, and parses the target. Returns NULL. */
void *shed_guard_uri(void *cls, const char *uri, struct MHD_Connection *conn);

/* At a request's first handler call (<version>: MHD's version argument):
 * 0, with *<path> replaced by an absolute-form target's path; or -E2BIG /
 * -EINVAL with a text for the 400 in *<why>. */
int shed_guard_target(struct MHD_Connection *conn, const char *version, const char **path,
                      const char **why);
void shed_guard_done(struct shed_guard *gd, struct MHD_Connection *conn, uint64_t now_ms);

/* Shut down connections past their header deadline at <now_ms> (monotonic
 * ms); returns how many. Logs what was closed and refused, at most once
 * every 10 s. */
size_t shed_guard_sweep(struct shed_guard *gd, uint64_t now_ms);

/* Prometheus text into <buf>; returns the length. */
size_t shed_guard_metrics(struct shed_guard *gd, char *buf, size_t len);

#endif /* SHED_GUARD_H */
