/* SPDX-License-Identifier: ISC */
/*
 * shed/answer: the value types a request and its answer are made of, with
 * no HTTP library in sight. Routing (shed/route), the aggregator engine and
 * every other part of the core read a struct shed_query and fill a struct
 * shed_answer; only the front end (shed/server.c, shed/http.c and the
 * adapters next to them)
 * turns them into libmicrohttpd calls.
 *
 * Nothing from a request is copied into an answer's header unless it was
 * validated and re-encoded first (shed/route builds every Location).
 */
#ifndef SHED_ANSWER_H
#define SHED_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHED_LOCATION_MAX 8192 /* bytes in a Location header */
#define SHED_QUERY_ARGS   64   /* query parameters in one request */

enum shed_method {
    SHED_M_GET = 0,
    SHED_M_HEAD,
    SHED_M_PUT,
    SHED_M_POST,
    SHED_M_DELETE,
    SHED_M_OTHER,
};

/* The method named <m> ("GET", ...); SHED_M_OTHER for any other. */
enum shed_method shed_method_of(const char *m);

/* GET and HEAD read; everything else may write. */
static inline bool
shed_method_reads(enum shed_method m)
{
    return m == SHED_M_GET || m == SHED_M_HEAD;
}

/* What a redirect was for: the metrics label of shed_redirects_total. */
enum shed_level {
    SHED_LEVEL_MESSAGE = 0, /* /v1.0/a/q/m */
    SHED_LEVEL_LIST,        /* /v1.0, /v1.0/a, /v1.0/a/q (to the aggregator) */
    SHED_LEVEL_ANY,         /* a stateless service */
    SHED_LEVEL_LOOKUP,      /* a message request sent to the aggregator's lookup */
    SHED_LEVEL_COUNT,
};

/* One raw query argument (still percent-encoded), as the front end split it. */
struct shed_arg {
    const char *key;
    const char *val; /* NULL when the argument had no '=' */
};

/* A request's query and the shed's own request headers. */
struct shed_query {
    struct shed_arg args[SHED_QUERY_ARGS];
    size_t n;
    bool overflow;     /* more than SHED_QUERY_ARGS arguments */
    bool lookup;       /* Shed-Lookup: the client found no message where it was sent */
    const char *avoid; /* Shed-Failed host:port, routed around for this request */
};

/* Start <q> empty. */
static inline void
shed_query_init(struct shed_query *q)
{
    q->n = 0;
    q->overflow = false;
    q->lookup = false;
    q->avoid = NULL;
}

/* Append one argument; false (and overflow set) when <q> is full. */
static inline bool
shed_query_add(struct shed_query *q, const char *key, const char *val)
{
    if (q->n == SHED_QUERY_ARGS) {
        q->overflow = true;
        return false;
    }
    q->args[q->n].key = key;
    q->args[q->n].val = val;
    q->n++;
    return true;
}

/* What to answer: built by routing code, sent by the front end. */
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
    /* An escalation waits for a master's acknowledgement: the front end may
     * hold the request (shed/park) instead of sending the 503 this answer
     * also holds. */
    bool await_masters;
    /* A write routed around the host its client reported failed: it lands
     * off its owner, so the service must settle (registry_mark_moved()). */
    const char *stray_service; /* borrowed from the view, or NULL */
};

/* Clear <a> to "no answer yet" (status 0, no body, no headers). */
void shed_answer_init(struct shed_answer *a);

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

/* Do URLs <a> and <b> name the same base (trailing slashes ignored)? */
bool shed_same_url(const char *a, const char *b);

/* Monotonic milliseconds. */
uint64_t shed_now_ms(void);

#endif /* SHED_ANSWER_H */
