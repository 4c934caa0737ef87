/* SPDX-License-Identifier: ISC */
/*
 * common/buf: append to a growable byte buffer that never passes a hard
 * maximum and keeps a NUL after its bytes: what every libcurl write
 * callback of the project needs (client, handoff, etcd).
 */
#ifndef COMMON_BUF_H
#define COMMON_BUF_H

#include <stddef.h>

/* Append <n> bytes at <data> to *<p> (holding *<len> bytes in *<cap>),
 * growing it by doubling. 0; -E2BIG when *<len> + <n> would pass <max>
 * (nothing appended); -ENOMEM. */
int buf_append(char **p, size_t *len, size_t *cap, size_t max, const void *data, size_t n);

#endif /* COMMON_BUF_H */
