/* SPDX-License-Identifier: ISC */
/*
 * proto/hostport: the "host:port" a backend url names, the form in which
 * clients report a failed host (`Shed-Failed: host:port`) and in which the
 * registry and the failure-report table look hosts up.
 *
 * Pure: no I/O, no logging, no allocation.
 */
#ifndef PROTO_HOSTPORT_H
#define PROTO_HOSTPORT_H

#include <stddef.h>

#define PROTO_HOSTPORT_MAX 300 /* bytes of "host:port" with its NUL */

/* "host:port" of an http(s) URL into <out> ("http://h:p/..." -> "h:p",
 * "http://[::1]/" -> "[::1]:80"; the port defaults to 80, 443 for https).
 * The host is copied as written, not validated (proto_hb_url_host() does
 * that for member urls). 0, -EINVAL (not http(s), or no host) or -ERANGE
 * (does not fit <outlen> bytes with its NUL). */
int proto_hostport(const char *url, char *out, size_t outlen);

#endif /* PROTO_HOSTPORT_H */
