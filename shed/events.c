/* SPDX-License-Identifier: ISC */
/*
 * shed/events: a ring of recent events for the status page. Times are wall
 * clock (what a person compares with other logs); ages come from the same
 * clock, clamped at 0.
 */
#include "shed/events.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

struct event {
    enum shed_event_kind kind;
    uint64_t real_ms; /* last time seen, ms since the epoch */
    uint64_t count;
    char text[SHED_EVENT_TEXT];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct event ring[SHED_EVENTS_MAX];
static size_t head; /* next slot to write */
static size_t used;

static const char *const kind_names[SHED_EV_COUNT] = {"escalated", "master", "suspect", "probe",
                                                      "heartbeat"};

const char *
shed_event_kind_name(enum shed_event_kind kind)
{
    return kind < SHED_EV_COUNT ? kind_names[kind] : "?";
}

void
shed_events_add(enum shed_event_kind kind, const char *fmt, ...)
{
    char text[SHED_EVENT_TEXT];
    va_list ap;
    uint64_t now = clock_real_ns() / 1000000u;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&mu);
    struct event *last = used > 0 ? &ring[(head + SHED_EVENTS_MAX - 1) % SHED_EVENTS_MAX] : NULL;
    if (last != NULL && last->kind == kind && strcmp(last->text, text) == 0) {
        last->count++;
        last->real_ms = now;
    } else {
        struct event *e = &ring[head];
        e->kind = kind;
        e->real_ms = now;
        e->count = 1;
        memcpy(e->text, text, sizeof(text));
        head = (head + 1) % SHED_EVENTS_MAX;
        if (used < SHED_EVENTS_MAX)
            used++;
    }
    pthread_mutex_unlock(&mu);
}

json_t *
shed_events_json(void)
{
    json_t *arr = json_array();
    uint64_t now = clock_real_ns() / 1000000u;

    if (arr == NULL)
        return NULL;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < used; i++) {
        const struct event *e = &ring[(head + SHED_EVENTS_MAX - 1 - i) % SHED_EVENTS_MAX];
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
    pthread_mutex_unlock(&mu);
    return arr;
}

void
shed_events_clear(void)
{
    pthread_mutex_lock(&mu);
    head = used = 0;
    pthread_mutex_unlock(&mu);
}
