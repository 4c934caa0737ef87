/* SPDX-License-Identifier: ISC */
/*
 * proto/body: Burrow message bodies inside JSON, without loss.
 *
 * A message body is opaque bytes, but a JSON string can only carry valid
 * UTF-8, and most decoders (jansson's default among them) refuse a string
 * holding \u0000. So wherever a body goes into JSON (lists, detail=all
 * objects, claims), it is written as
 *
 *   "body": "<the bytes>"                 when they are valid UTF-8 without NUL,
 *   "body_base64url": "<base64url>"        otherwise (proto/b64: RFC 4648
 *                                          section 5, no padding),
 *
 * exactly one of the two members. Where a list holds bare bodies
 * (detail=body), an element is the string, or the object
 * {"body_base64url": "..."}. docs/client.md ("Message bodies") is the
 * user-facing description; burrowd, the aggregator and the client all go
 * through this module.
 *
 * Pure: no I/O, no logging. Allocates through jansson and malloc.
 * Thread-safe.
 */
#ifndef PROTO_BODY_H
#define PROTO_BODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define PROTO_BODY_KEY     "body"
#define PROTO_BODY_B64_KEY "body_base64url"

/* Length of the longest prefix of <s> (<n> bytes) that is valid UTF-8
 * (shortest forms only, no surrogates, nothing past U+10FFFF). NUL counts
 * as valid here. */
size_t proto_body_utf8_span(const char *s, size_t n);

/* True when <n> bytes at <s> go into JSON as a plain string: valid UTF-8
 * and no NUL byte. */
bool proto_body_is_text(const char *s, size_t n);

/* Set "body" or "body_base64url" on object <obj> for the body <s>, <n>.
 * Returns 0 or -ENOMEM. */
int proto_body_set(json_t *obj, const char *s, size_t n);

/* The body as a bare list element: a new JSON string, or a new object with
 * only "body_base64url". NULL when out of memory. */
json_t *proto_body_value(const char *s, size_t n);

/* The bytes of a body read back from JSON: <v> is a string (a bare body), or
 * an object with "body" or "body_base64url". *<out> is malloc'd, owned by the
 * caller, NUL-terminated after *<len> bytes. Returns 0, -ENOENT when <v>
 * carries no body (e.g. detail=attributes), -EINVAL when "body_base64url" is
 * not strict base64url, -ENOMEM. */
int proto_body_get(const json_t *v, char **out, size_t *len);

#endif /* PROTO_BODY_H */
