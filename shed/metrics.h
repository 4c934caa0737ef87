/* SPDX-License-Identifier: ISC */
/*
 * shed/metrics: Prometheus counters for the daemon. Process-wide, lock-free
 * on the hot path (relaxed atomic adds); rendering reads them with no lock
 * and asks the registry for membership gauges.
 *
 * Series: shed_build_info{version} (always 1), shed_uptime_seconds,
 * shed_redirects_total{service,level,code}, shed_responses_total{code},
 * shed_heartbeats_total{result}, shed_failed_reports_total,
 * shed_failed_reports_unknown_total,
 * shed_registry_members, shed_members{service,state},
 * shed_ring_generation{service}, shed_evictions_total,
 * shed_request_duration_seconds (histogram of the time the shed spends
 * deciding a request, from handler entry to the queued response).
 *
 * Thread-safe.
 */
#ifndef SHED_METRICS_H
#define SHED_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "shed/answer.h"

#define SHED_METRICS_SLOTS 64 /* distinct service names ever seen */

enum shed_hb_result {
    SHED_HB_OK = 0,
    SHED_HB_DEREGISTERED,
    SHED_HB_UNAUTHORIZED,
    SHED_HB_FORBIDDEN,
    SHED_HB_BAD_REQUEST,
    SHED_HB_TOO_LARGE,
    SHED_HB_STALE,
    SHED_HB_UNKNOWN,
    SHED_HB_FULL,
    SHED_HB_COUNT,
};

/* A stable slot for service <name> (same name, same slot, across reloads);
 * SHED_METRICS_SLOTS - 1 collects overflow. */
unsigned shed_metrics_service_slot(const char *name);

void shed_metrics_redirect(unsigned slot, enum shed_level level, unsigned code);
void shed_metrics_response(unsigned code);
void shed_metrics_heartbeat(enum shed_hb_result r);
void shed_metrics_failed_report(void);
/* A Shed-Failed report that named no member's host:port. */
void shed_metrics_failed_unknown(void);
void shed_metrics_duration(uint64_t ns);

/* Render these counters as Prometheus text, with shed_build_info,
 * shed_uptime_seconds <uptime_s> and the other modules' series <more>
 * (<morelen> bytes, written by the /metrics adapter, shed/ops.c), into a
 * new buffer (*out, *len); the caller frees *out. 0 or -ENOMEM. */
int shed_metrics_render(uint64_t uptime_s, const char *more, size_t morelen, char **out,
                        size_t *len);

/* Read one counter (tests). */
uint64_t shed_metrics_redirects(unsigned slot, enum shed_level level, unsigned code);
uint64_t shed_metrics_heartbeats(enum shed_hb_result r);

/* The result label of <r> ("ok", "unauthorized", ...). */
const char *shed_metrics_hb_name(enum shed_hb_result r);

#endif /* SHED_METRICS_H */
