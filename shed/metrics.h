/* SPDX-License-Identifier: ISC */
/*
 * shed/metrics: Prometheus counters for the daemon, one set per daemon
 * (struct shed_daemon.metrics). Lock-free on the hot path (relaxed atomic
 * adds); rendering reads them with no lock; the /metrics adapter
 * (shed/ops.c) adds the registry's gauges and the other modules' series.
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
#include "shed/config.h"

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

struct shed_metrics;

/* One set of counters per daemon (struct shed_daemon.metrics). 0 or -ENOMEM;
 * destroy(NULL) is a no-op. */
int shed_metrics_create(struct shed_metrics **out);
void shed_metrics_destroy(struct shed_metrics *m);

/* A redirect of a service's <slot> (struct registry_route.slot; the
 * registry keeps the names: registry_slot_names()). */
void shed_metrics_redirect(struct shed_metrics *m, unsigned slot, enum shed_level level,
                           unsigned code);
void shed_metrics_response(struct shed_metrics *m, unsigned code);
void shed_metrics_heartbeat(struct shed_metrics *m, enum shed_hb_result r);
void shed_metrics_failed_report(struct shed_metrics *m);
/* A Shed-Failed report that named no member's host:port. */
void shed_metrics_failed_unknown(struct shed_metrics *m);
void shed_metrics_duration(struct shed_metrics *m, uint64_t ns);

/* Render <m> as Prometheus text, with shed_build_info, shed_uptime_seconds
 * <uptime_s>, the services' names of the <nslots> slots <slot_names>, and
 * the other modules' series <more> (<morelen> bytes, written by the
 * /metrics adapter, shed/ops.c), into a new buffer (*out, *len); the caller
 * frees *out. 0 or -ENOMEM. */
int shed_metrics_render(struct shed_metrics *m, const char (*slot_names)[SHED_NAME_MAX],
                        size_t nslots, uint64_t uptime_s, const char *more, size_t morelen,
                        char **out, size_t *len);

/* Read one counter (tests, status). */
uint64_t shed_metrics_redirects(struct shed_metrics *m, unsigned slot, enum shed_level level,
                                unsigned code);
uint64_t shed_metrics_heartbeats(struct shed_metrics *m, enum shed_hb_result r);

/* The result label of <r> ("ok", "unauthorized", ...). */
const char *shed_metrics_hb_name(enum shed_hb_result r);

#endif /* SHED_METRICS_H */
