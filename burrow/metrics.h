/* SPDX-License-Identifier: ISC */
/*
 * burrow/metrics: burrowd's Prometheus text at GET /metrics (not a Burrow
 * path: the Burrow API lives under /v1.0). Counters are process-wide relaxed
 * atomics; the gauges come from the store at scrape time.
 *
 * Series: burrowd_build_info{version} (always 1), burrowd_uptime_seconds,
 * burrowd_responses_total{code}, burrowd_messages, burrowd_messages_timed,
 * burrowd_queues, burrowd_accounts, burrowd_waiting_requests.
 *
 * Thread-safe.
 */
#ifndef BURROW_METRICS_H
#define BURROW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define BURROW_METRICS_PATH "/metrics"

/* What the store holds at scrape time. */
struct burrow_metrics_gauges {
    size_t accounts, queues, messages, timed;
    size_t waiting; /* long-polls parked */
};

/* Count one response with HTTP status <code>. */
void burrow_metrics_response(unsigned code);

/* Remember the start time (burrow_http_start()). */
void burrow_metrics_started(void);

/* Render every series into a new buffer (*out, *len; the caller frees
 * *out). 0 or -ENOMEM. */
int burrow_metrics_render(const struct burrow_metrics_gauges *g, char **out, size_t *len);

/* One counter (tests). */
uint64_t burrow_metrics_responses(unsigned code);

#endif /* BURROW_METRICS_H */
