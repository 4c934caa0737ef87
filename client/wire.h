/* SPDX-License-Identifier: ISC */
/*
 * client/wire: the pure parsing and arithmetic under the client library.
 * Splitting a URL into origin / path / query, reading the Shed-* redirect
 * headers (DESIGN.md section 5 and the wire conventions), picking the
 * rel="next" target out of a Link header, and the jittered exponential
 * backoff. Kept apart from client.c so the unit tests can drive every case
 * without a network.
 *
 * No I/O, no logging, no allocation. Ownership: results are slices into the
 * caller's input and live as long as it does.
 */
#ifndef CLIENT_WIRE_H
#define CLIENT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring/ring.h"

#define CLIENT_WIRE_URL_MAX     8192 /* bytes in any URL we handle */
#define CLIENT_WIRE_ORIGIN_MAX  300  /* "http://" + host + ":" + port */
#define CLIENT_WIRE_SERVICE_MAX 64   /* bytes in a service name ("burrow") */

struct client_wire_slice {
    const char *ptr;
    size_t len;
};

/* An absolute http URL split in place: "http://host:port/path?query". */
struct client_wire_url {
    struct client_wire_slice scheme;   /* "http" */
    struct client_wire_slice host;     /* "burrow.service", "127.0.0.1", "[::1]" */
    struct client_wire_slice hostport; /* host as written plus ":port" if given */
    struct client_wire_slice path;     /* raw, starts with '/'; "/" when absent */
    struct client_wire_slice query;    /* raw, without '?'; len 0 when absent */
    uint16_t port;                     /* explicit port, else 80 (443 for https) */
    bool has_port;                     /* the URL named a port */
};

/* Split <url> (NUL-terminated). Only http and https are accepted. Returns 0,
 * -EINVAL (not an absolute http(s) URL, bad port, fragment, control bytes) or
 * -ERANGE (longer than CLIENT_WIRE_URL_MAX). */
int client_wire_parse_url(const char *url, struct client_wire_url *out);

/* If <u>'s host is "NAME.service" (any case), copy NAME lower-cased into
 * <buf> (<buflen> bytes, NUL-terminated) and return true. */
bool client_wire_service(const struct client_wire_url *u, char *buf, size_t buflen);

/* Write "scheme://host:port" (port always explicit) into <buf>. Returns the
 * length or -ERANGE. */
int client_wire_origin(const struct client_wire_url *u, char *buf, size_t buflen);

/* Write "host:port" (port always explicit, as sent in Shed-Failed). */
int client_wire_hostport(const struct client_wire_url *u, char *buf, size_t buflen);

/* Parse a Shed-Ring value "b=<B>; k=<K>; sa=<16 hex>; sk=<16 hex>" (fields
 * in any order, spaces optional, unknown fields ignored) into <cfg>: buckets,
 * k, seed_account and seed_key are set, the rest is left as ring_config_default
 * gives it. Returns 0 or -EINVAL (a field missing, malformed, or B/K out of
 * range for ring/). */
int client_wire_parse_ring(const char *s, size_t len, struct ring_config *cfg);

/* Parse a header value that must be a decimal unsigned integer (surrounding
 * blanks allowed) no larger than <max>. Returns 0 or -EINVAL. */
int client_wire_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out);

/* Find the target of the first link with rel="next" (or rel=next, or a rel
 * list containing next) in a Link header value. Returns 0 with <out> set to
 * the text between '<' and '>', -ENOENT when no such link, -EINVAL when the
 * value is malformed. */
int client_wire_link_next(const char *s, size_t len, struct client_wire_slice *out);

/* Backoff before retry number <attempt> (1 = first retry): a random value in
 * [d/2, d] where d = min(max_ms, base_ms * 2^(attempt-1)) ("equal jitter").
 * <rnd> is any 64-bit random value. attempt 0 gives 0. */
uint64_t client_wire_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms, uint64_t rnd);

/* Case-insensitive header-name match of a raw header line "Name: value\r\n"
 * of <len> bytes. On a match, <value> is set to the trimmed value and true is
 * returned. */
bool client_wire_header(const char *line, size_t len, const char *name,
                        struct client_wire_slice *value);

#endif /* CLIENT_WIRE_H */
