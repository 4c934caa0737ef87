/* SPDX-License-Identifier: ISC */
/*
 * shed/status: what this shed knows about itself, for people and scripts.
 *
 *   shed_status_json()  GET /_shed/v1/status: cell, roles, version, uptime,
 *                       services with ring generation, digest and members,
 *                       sync targets (peers, masters) with their lag, the
 *                       master's view of the cells, recent events,
 *                       heartbeat, aggregator and handoff counters
 *   shed_status_html()  GET /_shed/v1/status.html (and /_shed/): the same
 *                       as one plain server-rendered page: inline style, no
 *                       script, no external asset, every value escaped,
 *                       at most SHED_STATUS_HTML_MAX bytes (member lists
 *                       are cut at SHED_STATUS_MEMBERS_MAX rows a service)
 *
 * Not on the redirect hot path: both allocate. Thread-safe.
 */
#ifndef SHED_STATUS_H
#define SHED_STATUS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "shed/daemon.h"

#define SHED_STATUS_HTML_MAX    (2u << 20) /* bytes of the page */
#define SHED_STATUS_MEMBERS_MAX 500        /* member rows per service on the page */
#define SHED_STATUS_EVENTS_MAX  30         /* event rows on the page */

/* Record <ctx>'s start time (before any thread starts). */
void shed_status_started(struct shed_daemon *ctx);

/* Seconds since shed_status_started() (0 before it). */
uint64_t shed_status_uptime_s(const struct shed_daemon *ctx);

/* The status object described above; the caller owns it. <ctx> and <cfg>
 * are read during the call. NULL on allocation failure. */
json_t *shed_status_json(struct shed_daemon *ctx, const struct shed_config *cfg, uint64_t now_ms);

/* Render <status> (from shed_status_json()) as the HTML page into a new
 * buffer (*out, *len; the caller frees *out). 0, -ENOMEM, or -EFBIG when
 * the page would pass SHED_STATUS_HTML_MAX. */
int shed_status_html(const json_t *status, char **out, size_t *len);

/* Append <s> to <dst> (capacity <cap>, NUL-terminated) with &, <, >, " and '
 * escaped for HTML text and attributes; bytes below 0x20 but tab and
 * newline become U+FFFD. Returns the length the whole escaped text needs
 * (as snprintf does: it was cut when that is >= cap). */
size_t shed_status_escape(char *dst, size_t cap, const char *s);

#endif /* SHED_STATUS_H */
