/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto/sync: the replication message and its ack, as a peer or a
 * snapshot file could send them. Properties: a message that decodes is
 * within its limits, encodes, and decodes to the same message; an ack
 * that decodes encodes and decodes to the same ack.
 */
#include "proto/sync.h"
#include "tests/fuzz/fuzz.h"

#include <string.h>

static bool
entry_equal(const struct proto_sync_entry *a, const struct proto_sync_entry *b)
{
    return strcmp(a->service, b->service) == 0 && strcmp(a->id, b->id) == 0 &&
           a->incarnation == b->incarnation && a->state == b->state &&
           strcmp(a->url, b->url) == 0 && strcmp(a->zone, b->zone) == 0 && a->weight == b->weight &&
           a->age_ms == b->age_ms && a->seq == b->seq;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_sync_msg m, m2;
    struct proto_sync_ack a, a2;
    char ack[96], *text = NULL;
    size_t len = 0;
    long n;
    int rc;

    rc = proto_sync_decode((const char *)data, size, &m);
    if (rc == 0) {
        FUZZ_CHECK(m.nentries <= PROTO_SYNC_MAX_ENTRIES && m.nentries <= m.cap);
        FUZZ_CHECK(m.kind == PROTO_SYNC_DELTA || m.kind == PROTO_SYNC_FULL);
        for (size_t i = 0; i < m.nentries; i++) {
            const struct proto_sync_entry *e = &m.entries[i];

            FUZZ_CHECK(e->weight >= 1 && e->weight <= PROTO_SYNC_WEIGHT_MAX);
            FUZZ_CHECK(e->state <= PROTO_SYNC_GONE);
            FUZZ_CHECK(e->service[0] != '\0' && e->id[0] != '\0' && e->url[0] != '\0');
        }
        FUZZ_CHECK(proto_sync_encode(&m, &text, &len) == 0);
        FUZZ_CHECK(proto_sync_decode(text, len, &m2) == 0);
        FUZZ_CHECK(m2.kind == m.kind && strcmp(m2.cell, m.cell) == 0 &&
                   strcmp(m2.origin, m.origin) == 0 && strcmp(m2.aggregator, m.aggregator) == 0 &&
                   m2.epoch == m.epoch && m2.since == m.since && m2.seq == m.seq &&
                   m2.lease_ms == m.lease_ms && m2.nentries == m.nentries);
        for (size_t i = 0; i < m.nentries; i++)
            FUZZ_CHECK(entry_equal(&m.entries[i], &m2.entries[i]));
        free(text);
        proto_sync_msg_free(&m2);
        proto_sync_msg_free(&m);
    } else {
        FUZZ_CHECK(m.entries == NULL && m.nentries == 0);
    }

    if (proto_sync_ack_decode((const char *)data, size, &a) == 0) {
        n = proto_sync_ack_encode(&a, ack, sizeof(ack));
        FUZZ_CHECK(n > 0);
        FUZZ_CHECK(proto_sync_ack_decode(ack, (size_t)n, &a2) == 0);
        FUZZ_CHECK(a2.seq == a.seq && a2.need_full == a.need_full);
    }
    return 0;
}
