/* SPDX-License-Identifier: ISC */
/*
 * client/burrow: the Burrow v1.0 API (docs/burrow-api.md) on top of the
 * shed client: put, get, update, delete, list (accounts, queues, messages),
 * claim, and a paging iterator. Message operations get pinned like any other
 * request; list operations follow the shed's redirect to the aggregator.
 *
 * URLs are absolute and already percent-encoded (client_burrow_url() builds
 * one from raw ids). Numeric arguments use -1 for "not given".
 *
 * Errors: 0 on a 2xx; -SHED_CLIENT_ENOTFOUND on 404, -SHED_CLIENT_EREFUSED on
 * another 4xx, -SHED_CLIENT_ESERVER on 5xx, -SHED_CLIENT_EBADREPLY when a
 * JSON body does not parse, or the transport codes of client/client.h. The
 * HTTP status and body are in the result whatever the return value.
 *
 * Ownership: a result owns its JSON and body until client_burrow_result_free()
 * (safe on a zeroed or already-freed result). Thread-safe like the handle;
 * one iterator belongs to one thread at a time.
 */
#ifndef CLIENT_BURROW_H
#define CLIENT_BURROW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/client.h"

#define CLIENT_BURROW_URL_MAX 4096

struct client_burrow_result {
    long status;  /* HTTP status, 0 when none */
    json_t *json; /* owned; parsed body when it is JSON, else NULL */
    char *body;   /* owned raw body, NUL-terminated */
    size_t body_len;
    char next[2048]; /* Link rel="next" target, "" when none */
    bool pinned;     /* went straight to a pinned host */
    unsigned hops;   /* redirects followed */
};

void client_burrow_result_free(struct client_burrow_result *r);

/* The body bytes of a message as JSON gives it: <item> is an object of
 * detail=all (or a claim), a detail=body list element, or any object with
 * "body" (UTF-8 text) or "body_base64url" (every other body, RFC 4648
 * section 5 without padding; docs/client.md "Message bodies"). *<body> is
 * malloc'd (free() it), NUL-terminated after *<len> bytes. Returns 0,
 * -ENOENT when <item> carries no body (detail=id or attributes), -EINVAL for
 * bad base64url, -ENOMEM. */
int client_burrow_body(const json_t *item, char **body, size_t *len);

/* Build base + "/v1.0[/account[/queue[/message]]]" with each id
 * percent-encoded; NULL ids end the path. <base> is "http://burrow.service".
 * 0, -ERANGE, -EINVAL (an empty id, or a later id without an earlier one). */
int client_burrow_url(char *buf, size_t len, const char *base, const char *account,
                      const char *queue, const char *message);

/* PUT a message. 201 (created) and 204 (replaced) both return 0. */
int client_burrow_put(struct shed_client *c, const char *url, const void *body, size_t len,
                      int64_t ttl, int64_t hide, struct client_burrow_result *r);

/* GET one message; <detail> NULL means the server default (all). */
int client_burrow_get(struct shed_client *c, const char *url, const char *detail,
                      struct client_burrow_result *r);

/* POST ttl/hide on a message (or a queue). <detail> may be NULL. */
int client_burrow_update(struct shed_client *c, const char *url, int64_t ttl, int64_t hide,
                         const char *detail, struct client_burrow_result *r);

/* DELETE a message (or a list level, with the server's semantics). */
int client_burrow_delete(struct shed_client *c, const char *url, struct client_burrow_result *r);

struct client_burrow_list_opts {
    int64_t limit;      /* <= 0: not sent */
    const char *marker; /* raw id, NULL: none */
    const char *detail; /* NULL: server default */
    bool match_hidden;
    int64_t wait; /* < 0: not sent */
};

void client_burrow_list_opts_init(struct client_burrow_list_opts *o);

/* One page of a list (GET on /v1.0, /v1.0/a or /v1.0/a/q). */
int client_burrow_list(struct shed_client *c, const char *url,
                       const struct client_burrow_list_opts *o, struct client_burrow_result *r);

/* Claim: POST <queue_url>?limit=N&hide=S&wait=W&detail=all; r->json is the
 * array of claimed messages. <limit> <= 0 means 1; <wait> < 0 not sent. */
int client_burrow_claim(struct shed_client *c, const char *queue_url, int64_t limit, int64_t hide,
                        int64_t wait, struct client_burrow_result *r);

/* Paging over a whole list: follows Link rel="next" when the server gives
 * one, else sends marker=<id of the last item>. detail must be NULL, "id",
 * "attributes" or "all" (items must carry an id). */
struct client_burrow_iter {
    struct shed_client *c;            /* borrowed */
    char base[CLIENT_BURROW_URL_MAX]; /* list URL without paging */
    struct client_burrow_list_opts o; /* marker/detail point into this iterator */
    char detail[16];
    char marker[3 * 256];
    char next[2048]; /* Link next to fetch, "" when none */
    json_t *page;    /* owned current page (array) */
    size_t idx;      /* next item of page */
    size_t pages;    /* pages fetched */
    bool done;
    int err; /* sticky error */
};

int client_burrow_iter_init(struct client_burrow_iter *it, struct shed_client *c, const char *url,
                            const struct client_burrow_list_opts *o);
/* 1 with *<item> borrowed until the next call, 0 at the end, or an error. */
int client_burrow_iter_next(struct client_burrow_iter *it, json_t **item);
void client_burrow_iter_free(struct client_burrow_iter *it);

#endif /* CLIENT_BURROW_H */
