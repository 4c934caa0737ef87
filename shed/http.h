/* SPDX-License-Identifier: ISC */
/*
 * shed/http: what every libmicrohttpd adapter shares: the per-call record
 * (struct shed_call), the two-call pattern, sending a struct shed_answer
 * (shed/answer.h), collecting the query, the shed's own request headers
 * and an upload, and the bearer-credential check. Only the front end
 * includes this header (it includes <microhttpd.h>); the core works on
 * shed/answer.h's value types. The listeners and the one dispatch table
 * are shed/server.
 *
 * Adapters see every access-handler call of a request (struct shed_call):
 * the first call has call->first set and no context yet. A bodiless
 * request is answered on the second call (libmicrohttpd 0.9.75 closes a
 * connection whose response was queued on the first call, so answering
 * there would cost keep-alive), one that announces a body on the first
 * (Expect: 100-continue never uploads). An adapter that needs per-request
 * state allocates a context whose first member is a struct shed_req_ctx:
 * it is freed through its free_fn when the request completes.
 */
#ifndef SHED_HTTP_H
#define SHED_HTTP_H

#ifdef SHED_CORE
#error "shed/http.h belongs to the front end: the core (shed/meson.build) must not include it"
#endif

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shed/answer.h"
#include "shed/config.h"
#include "shed/daemon.h"
#include "shed/metrics.h"
#include "shed/registry.h"

/* The marker a role stores in *con_cls after a first call that needs no
 * state ("seen, answer on the next call"). Anything else non-NULL in
 * *con_cls is a struct shed_req_ctx. */
extern char shed_http_seen;
#define SHED_HTTP_SEEN ((void *)&shed_http_seen)

/* Per-request context header for roles that keep state across calls. */
struct shed_req_ctx {
    void (*free_fn)(struct shed_req_ctx *ctx);
};

/* One access-handler call, with what every role needs. */
struct shed_call {
    struct shed_daemon *ctx;
    const struct shed_config *cfg;    /* borrowed for this call (rcu) */
    const struct registry_view *view; /* borrowed for this call (rcu) */
    struct MHD_Connection *conn;
    const char *method;
    enum shed_method m;
    const char *path; /* raw, still percent-encoded, no query */
    const char *upload_data;
    size_t *upload_data_size;
    void **con_cls;
    bool first;    /* first call for this request */
    bool has_body; /* Content-Length > 0 or Transfer-Encoding given */
    uint64_t now_ms;
};

/* The two-call pattern for a handler that answers without reading a body:
 * true means "return true now, MHD will call again"; false means answer now.
 * (See libmicrohttpd-notes: keep-alive for bodiless requests, no upload to
 * the shed for requests with a body.) */
bool shed_http_not_yet(struct shed_call *c);

/* Queue <a> on <conn>. Returns the MHD result. */
enum MHD_Result shed_http_answer(struct MHD_Connection *conn, const struct shed_answer *a);

/* Queue a short text answer. */
enum MHD_Result shed_http_text(struct MHD_Connection *conn, unsigned status, const char *text);

/* Count <status> in the daemon's metrics and queue <text> (static) as a
 * text/plain answer: what an adapter returns for a short answer (true). */
bool shed_http_reply(struct shed_call *c, unsigned status, const char *text);

/* Add "Retry-After: <seconds>" to <r> unless <seconds> is 0. */
void shed_http_retry_after(struct MHD_Response *r, unsigned seconds);

/* Constant-time check of "Authorization: Bearer <credential>". */
bool shed_http_authorized(struct MHD_Connection *conn, const char *credential);

/* The request's raw query arguments into <q> (overflow set beyond
 * SHED_QUERY_ARGS) and the shed's request headers: Shed-Lookup, and
 * Shed-Failed when well-formed (q->avoid). Slices live as long as the
 * request. */
void shed_http_query(struct MHD_Connection *conn, struct shed_query *q);

/* A header of the request, or NULL. */
const char *shed_http_header(struct MHD_Connection *conn, const char *name);

/* An upload collected into memory (at most <max> bytes: too_big set
 * beyond, the rest dropped). The request context of an adapter that reads
 * a body; shed_http_body_collect() returns true while the upload goes on. */
struct shed_http_body {
    struct shed_req_ctx base;
    char *data; /* NUL-terminated when not NULL */
    size_t len, cap, max;
    bool too_big;
};
/* First call: allocate the body context in *c->con_cls (false on no
 * memory: answer 500). Later calls: take the upload; true while it goes
 * on (return MHD_YES), false at its end (answer now, with the body). */
bool shed_http_body_collect(struct shed_call *c, size_t max);

/* Queue a JSON text <buf> of <len> bytes (copied), 200, no-store. */
enum MHD_Result shed_http_json(struct MHD_Connection *conn, const char *buf, size_t len);

#endif /* SHED_HTTP_H */
