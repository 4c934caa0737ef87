/* SPDX-License-Identifier: ISC */
/*
 * burrow/http: burrowd's HTTP front end. Maps Burrow v1.0 requests
 * (docs/burrow-api.md) onto burrow/store, shapes responses
 * per detail level, and parks long-polls (`wait`).
 *
 * Threading model: libmicrohttpd runs with one internal polling thread on
 * epoll, so every request handler runs on that thread. One more thread, the
 * cleaner, wakes every 100 ms to apply ttl/hide deadlines and to release
 * waiters whose wait ran out. One mutex guards the store and the waiter
 * lists; waiters are resumed only after it is released.
 *
 * Long-polls take no thread: the connection is suspended
 * (MHD_suspend_connection) on a waiter list keyed by "account/queue", which
 * exists whether or not the queue does, and is resumed when the store
 * reports visible messages for that queue or when the wait runs out; the
 * request is then run again. A suspended connection costs its MHD memory
 * pool and one small struct.
 *
 * Bodies: stored as raw bytes. A single-message GET with detail=body
 * returns them byte for byte. Inside JSON (lists, detail=all, claims) a
 * body is "body": "<text>" when it is valid UTF-8 without NUL, and
 * "body_base64url": "<base64url>" otherwise (proto/body.h); a detail=body
 * list holds the string or {"body_base64url": "..."}. Nothing is lost. Ids
 * (never NUL, proto/burrow) that are not valid UTF-8 have each invalid byte
 * replaced by U+FFFD inside JSON; the raw detail=id answer keeps them.
 *
 * Ownership: burrow_http_start() copies <cfg>; burrow_http_stop(NULL) is a
 * no-op.
 */
#ifndef BURROW_HTTP_H
#define BURROW_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define BURROW_HTTP_MAX_MESSAGE_DEFAULT (1024 * 1024) /* body bytes */

struct burrow_http_config {
    const char *host;    /* numeric IPv4 or IPv6 address to listen on */
    uint16_t port;       /* 0: any (see burrow_http_port()) */
    int64_t default_ttl; /* seconds, PUT without ttl */
    int64_t default_hide;
    size_t max_message_bytes;    /* 413 beyond */
    unsigned connection_limit;   /* 0: 10000 */
    unsigned connection_timeout; /* idle seconds, 0: 65 */
};

struct burrow_http;

/* Start serving. 0 or a negative errno (-EADDRINUSE, -EINVAL, -ENOMEM...);
 * on error nothing runs. */
int burrow_http_start(const struct burrow_http_config *cfg, struct burrow_http **out);

/* The port actually bound. */
uint16_t burrow_http_port(const struct burrow_http *h);

/* Messages held now, hidden ones included (a draining server waits for 0). */
size_t burrow_http_messages(struct burrow_http *h);

/* Release every waiter, stop the threads and the daemon, free everything. */
void burrow_http_stop(struct burrow_http *h);

#endif /* BURROW_HTTP_H */
