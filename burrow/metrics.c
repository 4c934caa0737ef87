/* SPDX-License-Identifier: ISC */
/*
 * burrow/metrics: a fixed table of response codes (the ones burrowd sends,
 * plus "other"), each a relaxed atomic counter, and one snprintf pass to
 * render them with the store's gauges.
 */
#include "burrow/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"
#include "common/version.h"

#define RENDER_MAX 8192

static const unsigned codes[] = {200, 201, 204, 400, 404, 405,
                                 413, 414, 431, 500, 503, 0 /* other */};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

static _Atomic uint64_t responses[NCODES];
static _Atomic uint64_t started_ms;

static size_t
slot(unsigned code)
{
    size_t i;

    for (i = 0; i < NCODES - 1; i++)
        if (codes[i] == code)
            break;
    return i;
}

void
burrow_metrics_response(unsigned code)
{
    atomic_fetch_add_explicit(&responses[slot(code)], 1, memory_order_relaxed);
}

uint64_t
burrow_metrics_responses(unsigned code)
{
    return atomic_load(&responses[slot(code)]);
}

void
burrow_metrics_started(void)
{
    uint64_t zero = 0;

    atomic_compare_exchange_strong(&started_ms, &zero, clock_mono_ms());
}

int
burrow_metrics_render(const struct burrow_metrics_gauges *g, char **out, size_t *len)
{
    char *buf = malloc(RENDER_MAX);
    size_t n = 0;
    uint64_t t0 = atomic_load(&started_ms), now = clock_mono_ms();
    int w;

    if (buf == NULL)
        return -ENOMEM;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        w = snprintf(buf + n, RENDER_MAX - n, __VA_ARGS__);                                        \
        if (w < 0 || (size_t)w >= RENDER_MAX - n)                                                  \
            goto full;                                                                             \
        n += (size_t)w;                                                                            \
    } while (0)
    PUT("# HELP burrowd_build_info The burrowd version; the value is always 1.\n"
        "# TYPE burrowd_build_info gauge\nburrowd_build_info{version=\"%s\"} 1\n"
        "# HELP burrowd_uptime_seconds Seconds since burrowd started.\n"
        "# TYPE burrowd_uptime_seconds gauge\nburrowd_uptime_seconds %" PRIu64 "\n",
        SHED_VERSION, t0 != 0 && now > t0 ? (now - t0) / 1000 : 0);
    PUT("# HELP burrowd_responses_total HTTP responses by status code.\n"
        "# TYPE burrowd_responses_total counter\n");
    for (size_t i = 0; i < NCODES; i++) {
        uint64_t v = atomic_load_explicit(&responses[i], memory_order_relaxed);
        if (codes[i] != 0)
            PUT("burrowd_responses_total{code=\"%u\"} %" PRIu64 "\n", codes[i], v);
        else
            PUT("burrowd_responses_total{code=\"other\"} %" PRIu64 "\n", v);
    }
    PUT("# HELP burrowd_messages Messages held, hidden ones included.\n"
        "# TYPE burrowd_messages gauge\nburrowd_messages %zu\n"
        "# HELP burrowd_messages_timed Messages with a ttl or hide deadline.\n"
        "# TYPE burrowd_messages_timed gauge\nburrowd_messages_timed %zu\n"
        "# HELP burrowd_queues Queues that hold at least one message.\n"
        "# TYPE burrowd_queues gauge\nburrowd_queues %zu\n"
        "# HELP burrowd_accounts Accounts that hold at least one queue.\n"
        "# TYPE burrowd_accounts gauge\nburrowd_accounts %zu\n"
        "# HELP burrowd_waiting_requests Long-polls (wait=N) parked now.\n"
        "# TYPE burrowd_waiting_requests gauge\nburrowd_waiting_requests %zu\n",
        g->messages, g->timed, g->queues, g->accounts, g->waiting);
#undef PUT
    *out = buf;
    *len = n;
    return 0;
full:
    free(buf);
    return -ENOMEM;
}
