/* SPDX-License-Identifier: ISC */
/*
 * burrow/announce_glue: --announce through common/announce (heartbeats
 * from a background thread, deregistration on stop).
 */
#include "burrow/announce_glue.h"

int
burrow_announce_begin(const struct announce_config *cfg, struct burrow_announce **out)
{
    return announce_start(cfg, (struct announce **)out);
}

void
burrow_announce_drain(struct burrow_announce *a)
{
    announce_set_state((struct announce *)a, ANNOUNCE_DRAINING);
}

bool
burrow_announce_refused(struct burrow_announce *a, char *why, size_t len)
{
    return announce_refused((struct announce *)a, why, len);
}

void
burrow_announce_end(struct burrow_announce *a)
{
    announce_stop((struct announce *)a);
}
