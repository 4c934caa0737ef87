/* SPDX-License-Identifier: ISC */
/*
 * shed/hints: what a master remembers of the writes it sent into another
 * cell (docs/reachability.md). For each escalated PUT of a message: the
 * cell the write came from (the token's first cell), the service, the
 * message's path and the server it was sent to. The home cell's handoff
 * reads its hints (GET /_shed/v1/hints?cell=C), moves each message home
 * and then forgets the hint (DELETE /_shed/v1/hints?cell=C&seq=N).
 *
 * Bounded: at most SHED_HINTS_MAX hints; past it the oldest is dropped
 * (counted, logged once a minute): its message is then found only by
 * the other cell's own lists until it expires.
 *
 * Ownership: shed_hints_create() returns an owned store; destroy(NULL) is a
 * no-op. Thread-safe.
 */
#ifndef SHED_HINTS_H
#define SHED_HINTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SHED_HINTS_MAX      100000
#define SHED_HINTS_PAGE_MAX 1000 /* hints in one answer */

struct shed_hints;

int shed_hints_create(struct shed_hints **out);
void shed_hints_destroy(struct shed_hints *h);

/* Remember that a PUT of <path> ("/v1.0/a/q/m", encoded) for <service> from
 * cell <cell> was sent to <url>. 0 or -ENOMEM. */
int shed_hints_add(struct shed_hints *h, const char *cell, const char *service, const char *path,
                   const char *url, uint64_t now_ms);

/* A new JSON object {hints: [{seq, service, path, url, age_ms}]}: the oldest
 * <limit> hints of <cell>. NULL on allocation failure. */
json_t *shed_hints_json(struct shed_hints *h, const char *cell, size_t limit, uint64_t now_ms);

/* Forget hint <seq> of <cell>. 0, or -ENOENT when there is none. */
int shed_hints_done(struct shed_hints *h, const char *cell, uint64_t seq);

/* Hints held now and dropped for room so far. */
void shed_hints_counts(struct shed_hints *h, uint64_t *held, uint64_t *dropped);

#endif /* SHED_HINTS_H */
