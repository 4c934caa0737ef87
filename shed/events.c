/* SPDX-License-Identifier: ISC */
/*
 * shed/events: a ring of recent events for the status page. Times are wall
 * clock (what a person compares with other logs); ages come from the same
 * clock, clamped at 0.
 */
#include "shed/events.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

struct event {
    enum shed_event_kind kind;
    uint64_t real_ms; /* last time seen, ms since the epoch */
    uint64_t count;
    char text[SHED_EVENT_TEXT];
};

struct shed_events {
    pthread_mutex_t mu;
    struct event ring[SHED_EVENTS_MAX];
    size_t head; /* next slot to write */
    size_t used;
};

int
shed_events_create(struct shed_events **out)
{
    struct shed_events *ev = calloc(1, sizeof(*ev));

    *out = ev;
    if (ev == NULL)
        return -ENOMEM;
    pthread_mutex_init(&ev->mu, NULL);
    return 0;
}

void
shed_events_destroy(struct shed_events *ev)
{
    if (ev == NULL)
        return;
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}

static const char *const kind_names[SHED_EV_COUNT] = {"escalated", "master", "suspect", "probe",
                                                      "heartbeat"};

const char *
shed_event_kind_name(enum shed_event_kind kind)
{
    return kind < SHED_EV_COUNT ? kind_names[kind] : "?";
}

void
shed_events_add(struct shed_events *ev, enum shed_event_kind kind, const char *fmt, ...)
{
    char text[SHED_EVENT_TEXT];
    va_list ap;
    uint64_t now = clock_real_ns() / 1000000u;

    if (ev == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&ev->mu);
    struct event *last =
        ev->used > 0 ? &ev->ring[(ev->head + SHED_EVENTS_MAX - 1) % SHED_EVENTS_MAX] : NULL;
    if (last != NULL && last->kind == kind && strcmp(last->text, text) == 0) {
        last->count++;
        last->real_ms = now;
    } else {
        struct event *e = &ev->ring[ev->head];
        e->kind = kind;
        e->real_ms = now;
        e->count = 1;
        memcpy(e->text, text, sizeof(text));
        ev->head = (ev->head + 1) % SHED_EVENTS_MAX;
        if (ev->used < SHED_EVENTS_MAX)
            ev->used++;
    }
    pthread_mutex_unlock(&ev->mu);
}

json_t *
shed_events_json(struct shed_events *ev)
{
    json_t *arr = json_array();
    uint64_t now = clock_real_ns() / 1000000u;

    if (arr == NULL || ev == NULL)
        return arr;
    pthread_mutex_lock(&ev->mu);
    for (size_t i = 0; i < ev->used; i++) {
        const struct event *e = &ev->ring[(ev->head + SHED_EVENTS_MAX - 1 - i) % SHED_EVENTS_MAX];
        time_t secs = (time_t)(e->real_ms / 1000);
        struct tm tm;
        char stamp[40], iso[48];

        gmtime_r(&secs, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(iso, sizeof(iso), "%s.%03uZ", stamp, (unsigned)(e->real_ms % 1000));
        json_array_append_new(arr, json_pack("{s:s, s:I, s:s, s:s, s:I}", "time", iso, "age_ms",
                                             (json_int_t)(now > e->real_ms ? now - e->real_ms : 0),
                                             "kind", kind_names[e->kind], "text", e->text, "count",
                                             (json_int_t)e->count));
    }
    pthread_mutex_unlock(&ev->mu);
    return arr;
}

void
shed_events_clear(struct shed_events *ev)
{
    pthread_mutex_lock(&ev->mu);
    ev->head = ev->used = 0;
    pthread_mutex_unlock(&ev->mu);
}
