/* SPDX-License-Identifier: ISC */
/*
 * shed/events: the last few things an operator wants to see on the status
 * page: escalations (line and master side), client failure reports and
 * their probes, refused heartbeats. A fixed ring of SHED_EVENTS_MAX
 * entries; an event equal to the newest one (same kind and text) only
 * bumps its count and time, so a storm of identical escalations takes one
 * row. Not on the redirect hot path: callers are the paths that leave the
 * cell, the failure reports and the heartbeat refusals.
 *
 * One table per daemon (struct shed_daemon.events), thread-safe (one mutex).
 */
#ifndef SHED_EVENTS_H
#define SHED_EVENTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SHED_EVENTS_MAX 64  /* events kept */
#define SHED_EVENT_TEXT 200 /* bytes of one event's text, NUL included */

enum shed_event_kind {
    SHED_EV_ESCALATED = 0, /* a line shed sent a request to a master */
    SHED_EV_MASTER,        /* a master chose another cell, or none */
    SHED_EV_SUSPECT,       /* client failure reports made a host suspect */
    SHED_EV_PROBE,         /* the confirmation probe of a suspect host ended */
    SHED_EV_HEARTBEAT,     /* a heartbeat was refused */
    SHED_EV_COUNT,
};

struct shed_events;

/* 0 or -ENOMEM; destroy(NULL) is a no-op. */
int shed_events_create(struct shed_events **out);
void shed_events_destroy(struct shed_events *ev);

/* Record an event of <kind>, text from <fmt> (cut to SHED_EVENT_TEXT), in
 * <ev> (NULL: nowhere). */
void shed_events_add(struct shed_events *ev, enum shed_event_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A new JSON array of the events, newest first: [{time (ISO 8601 UTC),
 * age_ms, kind, text, count}]. NULL on allocation failure. */
json_t *shed_events_json(struct shed_events *ev);

/* Text for <kind> ("escalated", "master", "suspect", "probe", "heartbeat"). */
const char *shed_event_kind_name(enum shed_event_kind kind);

/* Forget every event (tests). */
void shed_events_clear(struct shed_events *ev);

#endif /* SHED_EVENTS_H */
