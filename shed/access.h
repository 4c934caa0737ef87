/* SPDX-License-Identifier: ISC */
/*
 * shed/access: the optional access log of redirects (config `log:`,
 * docs/config.md). Every access_every-th redirect is logged at info level,
 * at most access_rate lines a second (the lines over the rate are counted
 * and the count is told in the next line that is written):
 *
 *   access: 10.0.0.5 GET /v1.0/a/q/m host=burrow.service -> 302
 *           http://10.1.0.7:8080/v1.0/a/q/m
 *
 * With access_every 0 (the default) the cost on the hot path is one load.
 * Request bytes reach the log only through shed_log_printable().
 *
 * Process-wide counters, thread-safe.
 */
#ifndef SHED_ACCESS_H
#define SHED_ACCESS_H

#include <stddef.h>

#include "shed/http.h"

/* A redirect <a> was queued for call <c> whose Host header was <host> (may
 * be NULL): log it when the sampling and the rate allow. */
void shed_access_redirect(const struct shed_call *c, const char *host, const struct shed_answer *a);

/* <s> made safe for one log line into <dst> (<cap> bytes): bytes outside
 * printable ASCII become %XX; cut to fit, always NUL-terminated. */
void shed_log_printable(char *dst, size_t cap, const char *s);

/* The address of <conn>'s client as text into <buf> ("?" when unknown). */
void shed_client_addr(struct MHD_Connection *conn, char *buf, size_t len);

#endif /* SHED_ACCESS_H */
