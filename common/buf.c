/* SPDX-License-Identifier: ISC */
#include "common/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
buf_append(char **p, size_t *len, size_t *cap, size_t max, const void *data, size_t n)
{
    if (n > max || *len > max - n)
        return -E2BIG;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        char *np;

        while (c < *len + n + 1)
            c *= 2;
        np = realloc(*p, c);
        if (np == NULL)
            return -ENOMEM;
        *p = np;
        *cap = c;
    }
    memcpy(*p + *len, data, n);
    *len += n;
    (*p)[*len] = '\0';
    return 0;
}
