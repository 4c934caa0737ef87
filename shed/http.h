/* SPDX-License-Identifier: ISC */
/*
 * shed/http: the libmicrohttpd front end and the dispatch of every request.
 *
 * Dispatch (http.c, one place): shed-internal endpoints first (/metrics,
 * /_shed/v1/status, /_shed/v1/members/...), then one handler per role in the
 * order of the roles[] table: a role handler either answers (returns true
 * with a response queued or the request kept) or declines (false) so the
 * next role may. A role added later (aggregator, master) adds one line there.
 *
 * Role handlers see every access-handler call of a request (struct
 * shed_call): the first call has call->first set and no context yet. The
 * line role answers on the first call when the request announces a body (so
 * Expect: 100-continue never uploads), otherwise on the second (which keeps
 * keep-alive: libmicrohttpd 0.9.75 closes a connection whose response was
 * queued on the first call). A role that
 * needs per-request state allocates a context whose first member is a struct
 * shed_req_ctx: it is freed through its free_fn when the request completes.
 *
 * Responses are built from a struct shed_answer (status, static body,
 * redirect headers) with shed_http_answer(); nothing from the request is
 * copied into a header unless it was validated and re-encoded first.
 */
#ifndef SHED_HTTP_H
#define SHED_HTTP_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shed/config.h"
#include "shed/metrics.h"
#include "shed/registry.h"

#define SHED_LOCATION_MAX 8192 /* bytes in a Location header */
#define SHED_QUERY_ARGS   64   /* query parameters in one request */

/* The daemon state shared by all request threads. */
struct shed_ctx {
    struct shed_config *_Atomic cfg; /* published under shed/rcu; swapped on SIGHUP */
    struct registry *reg;            /* owned by main */
};

/* The marker a role stores in *con_cls after a first call that needs no
 * state ("seen, answer on the next call"). Anything else non-NULL in
 * *con_cls is a struct shed_req_ctx. */
extern char shed_http_seen;
#define SHED_HTTP_SEEN ((void *)&shed_http_seen)

/* Per-request context header for roles that keep state across calls. */
struct shed_req_ctx {
    void (*free_fn)(struct shed_req_ctx *ctx);
};

enum shed_method {
    SHED_M_GET = 0,
    SHED_M_HEAD,
    SHED_M_PUT,
    SHED_M_POST,
    SHED_M_DELETE,
    SHED_M_OTHER,
};

/* One raw query argument (still percent-encoded), as MHD split it. */
struct shed_arg {
    const char *key;
    const char *val; /* NULL when the argument had no '=' */
};

struct shed_query {
    struct shed_arg args[SHED_QUERY_ARGS];
    size_t n;
    bool overflow;     /* more than SHED_QUERY_ARGS arguments */
    bool lookup;       /* Shed-Lookup: the client found no message where it was sent */
    const char *avoid; /* Shed-Failed host:port, routed around for this request */
};

/* One access-handler call, with what every role needs. */
struct shed_call {
    struct shed_ctx *ctx;
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

/* What to answer: built by routing code, sent by shed_http_answer(). */
struct shed_answer {
    unsigned status;
    const char *body; /* static text or NULL */
    size_t body_len;
    const char *content_type; /* NULL: text/plain */
    char location[SHED_LOCATION_MAX];
    size_t location_len; /* 0: no Location */
    /* Redirect headers, "" when absent. */
    char bucket[16];
    char generation[24];
    char pin_ttl[16];
    const char *ring;     /* Shed-Ring value or NULL; borrowed from the view */
    unsigned retry_after; /* seconds; 0: no Retry-After */
    /* An escalation waits for a master's acknowledgement: the handler may
     * hold the request (shed_cluster_park()) instead of sending the 503
     * this answer also holds. */
    bool await_masters;
    /* A write routed around the host its client reported failed: it lands
     * off its owner, so the service must settle (registry_mark_moved()). */
    const char *stray_service; /* borrowed from the view, or NULL */
};

/* A plain-text answer <status> with static <body> (no Location). */
static inline void
shed_answer_text(struct shed_answer *a, unsigned status, const char *body, size_t len)
{
    a->status = status;
    a->body = body;
    a->body_len = len;
    a->content_type = NULL;
    a->location_len = 0;
}
/* The same for a string literal. */
#define SHED_TEXT(a, st, s) shed_answer_text((a), (st), (s), sizeof(s) - 1)

/* The two-call pattern for a handler that answers without reading a body:
 * true means "return true now, MHD will call again"; false means answer now.
 * (See libmicrohttpd-notes: keep-alive for bodiless requests, no upload to
 * the shed for requests with a body.) */
bool shed_http_not_yet(struct shed_call *c);

/* Start one MHD daemon per listen address of <cfg>. 0 or -errno (logged). */
int shed_http_start(struct shed_ctx *ctx, const struct shed_config *cfg);

/* Stop accepting on every listener (SIGTERM). */
void shed_http_quiesce(void);

/* Connections still open on all listeners. */
unsigned shed_http_connections(void);

/* Requests being handled (started, not yet completed) on all listeners. */
unsigned shed_http_inflight(void);

/* Stop every daemon and close every connection. */
void shed_http_stop(void);

/* Queue <a> on <conn>. Returns the MHD result. */
enum MHD_Result shed_http_answer(struct MHD_Connection *conn, const struct shed_answer *a);

/* Queue a short text answer. */
enum MHD_Result shed_http_text(struct MHD_Connection *conn, unsigned status, const char *text);

/* Constant-time check of "Authorization: Bearer <credential>". */
bool shed_http_authorized(struct MHD_Connection *conn, const char *credential);

/* Do URLs <a> and <b> name the same base (trailing slashes ignored)? */
bool shed_same_url(const char *a, const char *b);

/* Monotonic milliseconds. */
uint64_t shed_now_ms(void);

#endif /* SHED_HTTP_H */
