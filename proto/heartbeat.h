/* SPDX-License-Identifier: ISC */
/*
 * proto/heartbeat: the backend -> shed heartbeat messages (docs/heartbeat.md).
 *
 *   PUT    /_shed/v1/members/<service>/<id>   body: proto_heartbeat as JSON
 *          200 body: proto_heartbeat_reply as JSON
 *   DELETE /_shed/v1/members/<service>/<id>?incarnation=N
 *
 * Decoding validates every field strictly, because the url of a member ends
 * up in Location headers: only what passes here may ever reach a header.
 * Pure: jansson only, no I/O, no logging.
 *
 * Ownership: every struct here is a plain value with fixed-size strings;
 * nothing points into the caller's input.
 */
#ifndef PROTO_HEARTBEAT_H
#define PROTO_HEARTBEAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_HB_SERVICE_MAX 63  /* bytes in a service name: [a-z0-9_-] */
#define PROTO_HB_ID_MAX      255 /* bytes in a member id (RING_ID_MAX) */
#define PROTO_HB_URL_MAX     255 /* bytes in a member url */
#define PROTO_HB_ZONE_MAX    63  /* bytes in a zone */
#define PROTO_HB_WEIGHT_MAX  65535u
#define PROTO_HB_INC_MAX     9007199254740991ull /* 2^53 - 1: exact in every JSON parser */
#define PROTO_HB_BODY_MAX    2048                /* an encoded heartbeat always fits */
#define PROTO_HB_PREFIX      "/_shed/v1/members/"

enum proto_hb_state {
    PROTO_HB_UP = 0,
    PROTO_HB_DRAINING,
};

struct proto_heartbeat {
    char service[PROTO_HB_SERVICE_MAX + 1];
    char id[PROTO_HB_ID_MAX + 1];     /* [A-Za-z0-9._~:@!$&'()*+,;=-], 1..255 */
    char url[PROTO_HB_URL_MAX + 1];   /* "http://host[:port][/prefix]", no trailing '/' */
    char zone[PROTO_HB_ZONE_MAX + 1]; /* [A-Za-z0-9._-], may be "" */
    uint32_t weight;                  /* 1..PROTO_HB_WEIGHT_MAX */
    enum proto_hb_state state;
    uint64_t incarnation; /* 0..PROTO_HB_INC_MAX; higher wins */
};

struct proto_heartbeat_reply {
    uint64_t lease_ms;    /* the member is down when no heartbeat comes for this long */
    uint64_t interval_ms; /* send the next heartbeat after this long */
    uint64_t generation;  /* current ring generation of the service (0: none yet) */
};

/* The host and port of a validated member url. */
struct proto_hb_host {
    char host[PROTO_HB_URL_MAX + 1]; /* without brackets for IPv6 literals */
    uint16_t port;                   /* 80/443 when the url gives none */
};

/* Decode a heartbeat body. Unknown fields are ignored (newer senders);
 * missing zone means "", missing weight 1, missing state "up", missing
 * incarnation 0. Returns 0, -EBADMSG (not JSON, or not an object), -EINVAL
 * (a field of the wrong type or outside its grammar), -E2BIG (a string over
 * its maximum). <what> (may be NULL) receives the name of the bad field. */
int proto_heartbeat_decode(const char *body, size_t len, struct proto_heartbeat *out,
                           const char **what);

/* Encode <hb> as JSON into <buf>. Returns the length (without the NUL it
 * always appends) or -ENOSPC. */
long proto_heartbeat_encode(const struct proto_heartbeat *hb, char *buf, size_t buflen);

/* Reply codec. decode: 0 or -EBADMSG / -EINVAL. encode: length or -ENOSPC. */
int proto_heartbeat_reply_decode(const char *body, size_t len, struct proto_heartbeat_reply *out);
long proto_heartbeat_reply_encode(const struct proto_heartbeat_reply *r, char *buf, size_t buflen);

/* Field validators, shared with the shed's path parsing. */
bool proto_hb_service_ok(const char *s, size_t len);
bool proto_hb_id_ok(const char *s, size_t len);
bool proto_hb_zone_ok(const char *s, size_t len);

/* Validate a member url and split out its host. 0 or -EINVAL. */
int proto_hb_url_host(const char *url, struct proto_hb_host *out);

/* Split the part of a path after PROTO_HB_PREFIX, "<service>/<id>", into
 * its two validated parts (ids travel unencoded: their grammar needs no
 * escaping). 0 or -EINVAL. Results are slices into <rest>. */
int proto_hb_path(const char *rest, size_t len, const char **service, size_t *slen, const char **id,
                  size_t *idlen);

#endif /* PROTO_HEARTBEAT_H */
