/* SPDX-License-Identifier: ISC */
/*
 * burrow/announce_glue: burrowd's link to the heartbeat announcer
 * (common/announce.h), kept apart from main.c so the daemon's own code does
 * not depend on the announcer's internals.
 *
 * Ownership: burrow_announce_begin() copies what it needs from <cfg>;
 * burrow_announce_end(NULL) is a no-op. Not thread-safe: call both from
 * the main thread.
 */
#ifndef BURROW_ANNOUNCE_GLUE_H
#define BURROW_ANNOUNCE_GLUE_H

#include "common/announce.h"

struct burrow_announce;

/* Start heartbeating to cfg->targets. 0 or a negative errno. */
int burrow_announce_begin(const struct announce_config *cfg, struct burrow_announce **out);

/* Heartbeat "draining" from now on. */
void burrow_announce_drain(struct burrow_announce *a);

/* Did a shed refuse our heartbeats for a setting (common/announce.h,
 * announce_refused())? The reason goes into <why>. */
bool burrow_announce_refused(struct burrow_announce *a, char *why, size_t len);

/* Deregister and stop. */
void burrow_announce_end(struct burrow_announce *a);

#endif /* BURROW_ANNOUNCE_GLUE_H */
