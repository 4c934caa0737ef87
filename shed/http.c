/* SPDX-License-Identifier: ISC */
/*
 * shed/http: the helpers every libmicrohttpd adapter shares (http.h).
 */
#include "shed/http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/hostport.h"

char shed_http_seen;

enum MHD_Result
shed_http_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result
shed_http_answer(struct MHD_Connection *conn, const struct shed_answer *a)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        a->body_len, (void *)(a->body != NULL ? a->body : ""), MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    if (a->body_len > 0)
        MHD_add_response_header(r, "Content-Type",
                                a->content_type != NULL ? a->content_type : "text/plain");
    if (a->location_len > 0) {
        MHD_add_response_header(r, "Location", a->location);
        MHD_add_response_header(r, "Cache-Control", "no-store");
        if (a->bucket[0] != '\0')
            MHD_add_response_header(r, "Shed-Bucket", a->bucket);
        if (a->generation[0] != '\0')
            MHD_add_response_header(r, "Shed-Generation", a->generation);
        if (a->pin_ttl[0] != '\0')
            MHD_add_response_header(r, "Shed-Pin-TTL", a->pin_ttl);
        if (a->ring != NULL)
            MHD_add_response_header(r, "Shed-Ring", a->ring);
    }
    shed_http_retry_after(r, a->retry_after);
    enum MHD_Result ret = MHD_queue_response(conn, a->status, r);
    MHD_destroy_response(r);
    return ret;
}

void
shed_http_retry_after(struct MHD_Response *r, unsigned seconds)
{
    char ra[16];

    if (seconds == 0)
        return;
    snprintf(ra, sizeof(ra), "%u", seconds);
    MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
}

bool
shed_http_reply(struct shed_call *c, unsigned status, const char *text)
{
    shed_metrics_response(c->ctx->metrics, status);
    shed_http_text(c->conn, status, text);
    return true;
}

bool
shed_http_authorized(struct MHD_Connection *conn, const char *credential)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    static const char bearer[] = "Bearer ";
    if (h == NULL || strncmp(h, bearer, sizeof(bearer) - 1) != 0 || credential[0] == '\0')
        return false;
    h += sizeof(bearer) - 1;
    size_t hl = strlen(h), cl = strlen(credential);
    /* Constant time in the credential's length: every byte is compared. */
    volatile unsigned char diff = (unsigned char)(hl != cl);
    for (size_t i = 0; i < cl; i++)
        diff |= (unsigned char)(credential[i] ^ (i < hl ? h[i] : 0));
    return diff == 0;
}

bool
shed_http_not_yet(struct shed_call *c)
{
    /* MHD 0.9.75 forces Connection: close on a response queued in the first
     * call, so a request without a body is answered on the second call; one
     * that announces a body is answered at once (Expect: 100-continue never
     * uploads), and a body sent anyway is dropped, answered at its end. */
    if (c->first && !c->has_body) {
        *c->con_cls = SHED_HTTP_SEEN;
        return true;
    }
    if (!c->first && *c->upload_data_size != 0) {
        *c->upload_data_size = 0;
        return true;
    }
    return false;
}

static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    return shed_query_add(cls, key, value) ? MHD_YES : MHD_NO;
}

const char *
shed_http_header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* A Shed-Failed: host:port report, when well-formed. */
static const char *
failed_report(struct MHD_Connection *conn)
{
    const char *v = shed_http_header(conn, "Shed-Failed");
    if (v == NULL)
        return NULL;
    size_t len = strlen(v);
    if (len == 0 || len >= PROTO_HOSTPORT_MAX)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)v[i]) && strchr(".:-[]", v[i]) == NULL)
            return NULL;
    return v;
}

void
shed_http_query(struct MHD_Connection *conn, struct shed_query *q)
{
    shed_query_init(q);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, q);
    q->lookup = shed_http_header(conn, "Shed-Lookup") != NULL;
    q->avoid = failed_report(conn);
}

static void
body_free(struct shed_req_ctx *ctx)
{
    struct shed_http_body *b = (struct shed_http_body *)ctx;
    free(b->data);
    free(b);
}

bool
shed_http_body_collect(struct shed_call *c, size_t max)
{
    struct shed_http_body *b = *c->con_cls;

    if (c->first) {
        b = calloc(1, sizeof(*b));
        if (b == NULL)
            return false;
        b->base.free_fn = body_free;
        b->max = max;
        *c->con_cls = b;
        return true;
    }
    if (*c->upload_data_size == 0)
        return false; /* the end of the upload */
    size_t n = *c->upload_data_size;
    *c->upload_data_size = 0;
    if (b->too_big || n > b->max - b->len) {
        b->too_big = true;
        return true;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap != 0 ? b->cap : 4096;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        if (ncap > b->max + 1)
            ncap = b->max + 1;
        char *p = realloc(b->data, ncap);
        if (p == NULL) {
            b->too_big = true;
            return true;
        }
        b->data = p;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, c->upload_data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

enum MHD_Result
shed_http_json(struct MHD_Connection *conn, const char *buf, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)buf, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}
