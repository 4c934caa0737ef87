/* SPDX-License-Identifier: ISC */
/*
 * proto/hostport: "host:port" of a backend url (see the header).
 */
#include "proto/hostport.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int
proto_hostport(const char *url, char *out, size_t outlen)
{
    const char *p = url, *end;
    size_t n;
    int w;

    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strncmp(p, "https://", 8) == 0)
        p += 8;
    else
        return -EINVAL;
    end = p + strcspn(p, "/?#");
    n = (size_t)(end - p);
    if (n == 0)
        return -EINVAL;
    /* Has it a port? ("[::1]:80", "h:80"; a bare IPv6 literal has none). */
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q;
    const char *bracket = memchr(p, ']', n);
    bool has_port = colon != NULL && (p[0] != '[' || (bracket != NULL && colon > bracket));
    if (n > (size_t)PROTO_HOSTPORT_MAX)
        return -ERANGE; /* and the "%.*s" below stays within int */
    if (has_port)
        w = snprintf(out, outlen, "%.*s", (int)n, p);
    else
        w = snprintf(out, outlen, "%.*s:%d", (int)n, p, strncmp(url, "https", 5) == 0 ? 443 : 80);
    if (w < 0 || (size_t)w >= outlen)
        return -ERANGE;
    return 0;
}
