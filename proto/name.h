/* SPDX-License-Identifier: ISC */
/*
 * proto/name: the one character set for plain names on the wire: zones
 * (proto/heartbeat) and cell and service names in escalation tokens
 * (proto/token). Letters, digits, '.', '_' and '-': safe unescaped in JSON,
 * URLs, headers and logs. Each caller applies its own length rule.
 *
 * Pure, header-only, thread-safe.
 */
#ifndef PROTO_NAME_H
#define PROTO_NAME_H

#include <stdbool.h>
#include <stddef.h>

/* Is every one of the <len> bytes of <s> in [A-Za-z0-9._-]? (true for 0). */
static inline bool
proto_name_chars_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

#endif /* PROTO_NAME_H */
