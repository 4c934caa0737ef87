/* SPDX-License-Identifier: ISC */
/*
 * burrow/announce_none: --announce when common/announce.c is not in the
 * tree yet: refuse, so burrowd serves without heartbeats and says so.
 */
#include "burrow/announce_glue.h"

#include <errno.h>
#include <stddef.h>

int
burrow_announce_begin(const struct announce_config *cfg, struct burrow_announce **out)
{
    (void)cfg;
    *out = NULL;
    return -ENOSYS;
}

void
burrow_announce_end(struct burrow_announce *a)
{
    (void)a;
}
