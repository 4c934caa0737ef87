/* SPDX-License-Identifier: ISC */
/*
 * tests/master: one registry entry for the unit tests that build sync
 * messages by hand (master, snapshot, replication).
 */
#ifndef TESTS_MASTER_ENTRY_H
#define TESTS_MASTER_ENTRY_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto/sync.h"

/* An entry of <service>, <id>, <url> and <weight>; everything else zero
 * (incarnation 0, the first state of enum proto_sync_state). */
static inline struct proto_sync_entry
test_entry(const char *service, const char *id, const char *url, uint32_t weight)
{
    struct proto_sync_entry e;

    memset(&e, 0, sizeof(e));
    snprintf(e.service, sizeof(e.service), "%s", service);
    snprintf(e.id, sizeof(e.id), "%s", id);
    snprintf(e.url, sizeof(e.url), "%s", url);
    e.weight = weight;
    return e;
}

#endif /* TESTS_MASTER_ENTRY_H */
