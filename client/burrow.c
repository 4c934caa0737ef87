/* SPDX-License-Identifier: ISC */
/*
 * client/burrow: Burrow v1.0 operations as calls that return parsed results.
 * Builds query strings with a hard size limit, sends through
 * shed_client_request() and maps statuses to module codes.
 */
#include "client/burrow.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "proto/body.h"
#include "proto/burrow.h"

/* A URL being built: appends "?k=v" / "&k=v" with a hard maximum. */
struct ubuf {
    char s[CLIENT_BURROW_URL_MAX];
    size_t len;
    bool has_query;
    bool overflow;
};

static void
ub_init(struct ubuf *u, const char *url)
{
    size_t n = strlen(url);

    u->overflow = n >= sizeof(u->s);
    if (u->overflow)
        n = 0;
    memcpy(u->s, url, n);
    u->s[n] = '\0';
    u->len = n;
    u->has_query = strchr(u->s, '?') != NULL;
}

static void
ub_raw(struct ubuf *u, const char *key, const char *val)
{
    int n;

    if (u->overflow)
        return;
    n = snprintf(u->s + u->len, sizeof(u->s) - u->len, "%c%s=%s", u->has_query ? '&' : '?', key,
                 val);
    if (n < 0 || (size_t)n >= sizeof(u->s) - u->len) {
        u->overflow = true;
        return;
    }
    u->len += (size_t)n;
    u->has_query = true;
}

static void
ub_int(struct ubuf *u, const char *key, int64_t v)
{
    char num[24];

    snprintf(num, sizeof(num), "%" PRId64, v);
    ub_raw(u, key, num);
}

/* The ttl and hide parameters of put and update; negative: left out. */
static void
ub_ttl_hide(struct ubuf *u, int64_t ttl, int64_t hide)
{
    if (ttl >= 0)
        ub_int(u, "ttl", ttl);
    if (hide >= 0)
        ub_int(u, "hide", hide);
}

static void
ub_enc(struct ubuf *u, const char *key, const char *val)
{
    char enc[3 * 256 + 1];

    if (proto_pct_encode(val, strlen(val), enc, sizeof(enc)) < 0) {
        u->overflow = true;
        return;
    }
    ub_raw(u, key, enc);
}

void
client_burrow_result_free(struct client_burrow_result *r)
{
    if (r == NULL)
        return;
    json_decref(r->json);
    free(r->body);
    r->json = NULL;
    r->body = NULL;
    r->body_len = 0;
}

int
client_burrow_body(const json_t *item, char **body, size_t *len)
{
    return proto_body_get(item, body, len);
}

int
client_burrow_url(char *buf, size_t len, const char *base, const char *account, const char *queue,
                  const char *message)
{
    const char *ids[3] = {account, queue, message};
    size_t used;
    int n = snprintf(buf, len, "%s/%s", base, PROTO_BURROW_VERSION);

    if (n < 0 || (size_t)n >= len)
        return -ERANGE;
    used = (size_t)n;
    for (int i = 0; i < 3; i++) {
        long e;

        if (ids[i] == NULL) {
            for (int j = i + 1; j < 3; j++)
                if (ids[j] != NULL)
                    return -EINVAL;
            break;
        }
        if (ids[i][0] == '\0' || strlen(ids[i]) > PROTO_BURROW_ID_MAX)
            return -EINVAL;
        if (used + 2 > len)
            return -ERANGE;
        buf[used++] = '/';
        e = proto_pct_encode(ids[i], strlen(ids[i]), buf + used, len - used);
        if (e < 0)
            return -ERANGE;
        used += (size_t)e;
    }
    return 0;
}

static int
status_rc(long status)
{
    if (status >= 200 && status < 300)
        return 0;
    if (status == 404)
        return -SHED_CLIENT_ENOTFOUND;
    if (status >= 400 && status < 500)
        return -SHED_CLIENT_EREFUSED;
    if (status >= 500)
        return -SHED_CLIENT_ESERVER;
    return -SHED_CLIENT_EBADREPLY;
}

static int
send_req(struct shed_client *c, const char *method, const struct ubuf *u, const void *body,
         size_t len, long timeout_ms, bool no_retry, struct client_burrow_result *r)
{
    struct shed_client_request req = {.method = method,
                                      .url = u->s,
                                      .body = body,
                                      .body_len = len,
                                      .timeout_ms = timeout_ms,
                                      .no_retry = no_retry};
    struct shed_client_response resp;
    int rc;

    memset(r, 0, sizeof(*r));
    if (u->overflow)
        return -ERANGE;
    rc = shed_client_request(c, &req, &resp);
    r->status = resp.status;
    r->body = resp.body;
    r->body_len = resp.body_len;
    r->pinned = resp.pinned;
    r->hops = resp.hops;
    snprintf(r->next, sizeof(r->next), "%s", resp.link_next);
    if (rc != 0)
        return rc;
    if (strncmp(resp.content_type, "application/json", 16) == 0 && resp.body_len > 0) {
        json_error_t jerr;

        /* JSON_ALLOW_NUL: a Burrow server that writes a body with a NUL
         * byte as "\u0000" (not as body_base64url) must not make a whole
         * list unreadable. */
        r->json = json_loadb(resp.body, resp.body_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (r->json == NULL && resp.status >= 200 && resp.status < 300)
            return -SHED_CLIENT_EBADREPLY;
    }
    return status_rc(resp.status);
}

int
client_burrow_put(struct shed_client *c, const char *url, const void *body, size_t len, int64_t ttl,
                  int64_t hide, struct client_burrow_result *r)
{
    struct ubuf u;

    ub_init(&u, url);
    ub_ttl_hide(&u, ttl, hide);
    return send_req(c, "PUT", &u, body ? body : "", len, 0, false, r);
}

int
client_burrow_get(struct shed_client *c, const char *url, const char *detail,
                  struct client_burrow_result *r)
{
    struct ubuf u;

    ub_init(&u, url);
    if (detail != NULL)
        ub_enc(&u, "detail", detail);
    return send_req(c, "GET", &u, NULL, 0, 0, false, r);
}

int
client_burrow_update(struct shed_client *c, const char *url, int64_t ttl, int64_t hide,
                     const char *detail, struct client_burrow_result *r)
{
    struct ubuf u;

    ub_init(&u, url);
    ub_ttl_hide(&u, ttl, hide);
    if (detail != NULL)
        ub_enc(&u, "detail", detail);
    return send_req(c, "POST", &u, NULL, 0, 0, false, r);
}

int
client_burrow_delete(struct shed_client *c, const char *url, struct client_burrow_result *r)
{
    struct ubuf u;

    ub_init(&u, url);
    return send_req(c, "DELETE", &u, NULL, 0, 0, false, r);
}

void
client_burrow_list_opts_init(struct client_burrow_list_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->wait = -1;
}

static void
add_list_opts(struct ubuf *u, const struct client_burrow_list_opts *o)
{
    if (o == NULL)
        return;
    if (o->limit > 0)
        ub_int(u, "limit", o->limit);
    if (o->marker != NULL)
        ub_enc(u, "marker", o->marker);
    if (o->detail != NULL)
        ub_enc(u, "detail", o->detail);
    if (o->match_hidden)
        ub_raw(u, "match_hidden", "true");
    if (o->wait >= 0)
        ub_int(u, "wait", o->wait);
}

static long
wait_timeout(int64_t wait)
{
    /* A long poll must outlive its wait; 0 leaves the handle's timeout. */
    return wait > 0 ? (long)(wait + 10) * 1000L : 0;
}

int
client_burrow_list(struct shed_client *c, const char *url, const struct client_burrow_list_opts *o,
                   struct client_burrow_result *r)
{
    struct ubuf u;

    ub_init(&u, url);
    add_list_opts(&u, o);
    return send_req(c, "GET", &u, NULL, 0, o ? wait_timeout(o->wait) : 0, false, r);
}

int
client_burrow_claim(struct shed_client *c, const char *queue_url, int64_t limit, int64_t hide,
                    int64_t wait, struct client_burrow_result *r)
{
    struct ubuf u;
    int rc;

    ub_init(&u, queue_url);
    ub_int(&u, "limit", limit > 0 ? limit : 1);
    if (hide >= 0)
        ub_int(&u, "hide", hide);
    if (wait >= 0)
        ub_int(&u, "wait", wait);
    ub_raw(&u, "detail", "all");
    /* Claiming is not idempotent: a 5xx is reported, not re-sent. */
    rc = send_req(c, "POST", &u, NULL, 0, wait_timeout(wait), true, r);
    if (rc == 0 && !json_is_array(r->json))
        rc = r->status == 204 ? 0 : -SHED_CLIENT_EBADREPLY;
    return rc;
}

int
client_burrow_iter_init(struct client_burrow_iter *it, struct shed_client *c, const char *url,
                        const struct client_burrow_list_opts *o)
{
    memset(it, 0, sizeof(*it));
    if (strlen(url) >= sizeof(it->base))
        return -ERANGE;
    if (o != NULL && o->detail != NULL && strcmp(o->detail, "id") != 0 &&
        strcmp(o->detail, "attributes") != 0 && strcmp(o->detail, "all") != 0)
        return -EINVAL;
    it->c = c;
    strcpy(it->base, url);
    if (o != NULL)
        it->o = *o;
    else
        client_burrow_list_opts_init(&it->o);
    if (it->o.detail != NULL) {
        snprintf(it->detail, sizeof(it->detail), "%s", it->o.detail);
        it->o.detail = it->detail;
    }
    if (it->o.marker != NULL) {
        if (strlen(it->o.marker) >= sizeof(it->marker))
            return -ERANGE;
        strcpy(it->marker, it->o.marker);
        it->o.marker = it->marker;
    }
    return 0;
}

static const char *
item_id(json_t *item)
{
    if (json_is_string(item))
        return json_string_value(item);
    if (json_is_object(item))
        return json_string_value(json_object_get(item, "id"));
    return NULL;
}

static int
fetch(struct client_burrow_iter *it)
{
    struct client_burrow_result r;
    int rc;

    json_decref(it->page);
    it->page = NULL;
    it->idx = 0;
    if (it->next[0] != '\0') {
        struct ubuf u;

        ub_init(&u, it->next);
        it->next[0] = '\0';
        rc = send_req(it->c, "GET", &u, NULL, 0, wait_timeout(it->o.wait), false, &r);
    } else {
        rc = client_burrow_list(it->c, it->base, &it->o, &r);
    }
    it->pages++;
    if (rc == -SHED_CLIENT_ENOTFOUND) {
        it->done = true; /* Burrow: nothing (more) to list */
        rc = 0;
    } else if (rc == 0 && r.status == 204) {
        it->done = true;
    } else if (rc == 0 && !json_is_array(r.json)) {
        rc = -SHED_CLIENT_EBADREPLY;
    } else if (rc == 0) {
        size_t n = json_array_size(r.json);

        it->page = json_incref(r.json);
        if (r.next[0] != '\0') {
            snprintf(it->next, sizeof(it->next), "%s", r.next);
        } else if (n == 0 || it->o.limit <= 0 || (int64_t)n < it->o.limit) {
            it->done = true; /* the server gave everything it had */
        } else {
            const char *id = item_id(json_array_get(r.json, n - 1));

            if (id == NULL || strlen(id) >= sizeof(it->marker)) {
                rc = -SHED_CLIENT_EBADREPLY;
            } else {
                strcpy(it->marker, id);
                it->o.marker = it->marker;
            }
        }
    }
    client_burrow_result_free(&r);
    return rc;
}

int
client_burrow_iter_next(struct client_burrow_iter *it, json_t **item)
{
    if (it->err != 0)
        return it->err;
    /* Bounded: each round either returns or fetches a page that ends the
     * list, sets a Link, or moves the marker forward. */
    for (unsigned guard = 0; guard < 1000000; guard++) {
        int rc;

        if (it->page != NULL && it->idx < json_array_size(it->page)) {
            *item = json_array_get(it->page, it->idx++);
            return 1;
        }
        if (it->done)
            return 0;
        rc = fetch(it);
        if (rc != 0) {
            it->err = rc;
            return rc;
        }
        if (it->page != NULL && json_array_size(it->page) == 0 && !it->done && it->next[0] == '\0')
            it->done = true;
    }
    it->err = -ELOOP;
    return it->err;
}

void
client_burrow_iter_free(struct client_burrow_iter *it)
{
    if (it == NULL)
        return;
    json_decref(it->page);
    it->page = NULL;
}
