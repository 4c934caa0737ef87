/* SPDX-License-Identifier: ISC */
/*
 * shed/metrics: fixed arrays of relaxed atomic counters. Relaxed is enough:
 * each counter is independent and a scrape may see any recent value. The
 * service-name table is the only thing behind a mutex, and it is touched
 * only when the registry adds a service.
 */
#include "shed/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/version.h"
#include "shed/config.h"

#define RENDER_MAX (4u << 20) /* bytes of metrics text */

static const unsigned resp_codes[] = {200, 204, 400, 401, 403, 404, 405,
                                      409, 413, 414, 431, 500, 503, 0 /* other */};
#define NRESP (sizeof(resp_codes) / sizeof(resp_codes[0]))

static const double hist_bounds[] = {0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
                                     0.0005,   0.001,   0.0025,   0.005,   0.01,   0.1};
#define NHIST (sizeof(hist_bounds) / sizeof(hist_bounds[0]))

static const char *hb_names[SHED_HB_COUNT] = {
    "ok",        "deregistered", "unauthorized",    "forbidden", "bad_request",
    "too_large", "stale",        "unknown_service", "full",
};
static const char *level_names[SHED_LEVEL_COUNT] = {"message", "list", "any", "lookup"};

struct shed_metrics {
    _Atomic uint64_t redirects[SHED_METRICS_SLOTS][SHED_LEVEL_COUNT][2]; /* 302, 307 */
    _Atomic uint64_t responses[NRESP];
    _Atomic uint64_t heartbeats[SHED_HB_COUNT];
    _Atomic uint64_t failed_reports;
    _Atomic uint64_t failed_unknown;
    _Atomic uint64_t hist[NHIST + 1];
    _Atomic uint64_t hist_sum_ns;
};

int
shed_metrics_create(struct shed_metrics **out)
{
    *out = calloc(1, sizeof(**out));
    return *out != NULL ? 0 : -ENOMEM;
}

void
shed_metrics_destroy(struct shed_metrics *m)
{
    free(m);
}

void
shed_metrics_redirect(struct shed_metrics *m, unsigned slot, enum shed_level level, unsigned code)
{
    if (slot >= SHED_METRICS_SLOTS || level >= SHED_LEVEL_COUNT)
        return;
    atomic_fetch_add_explicit(&m->redirects[slot][level][code == 307], 1, memory_order_relaxed);
}

void
shed_metrics_response(struct shed_metrics *m, unsigned code)
{
    size_t i;
    for (i = 0; i < NRESP - 1; i++)
        if (resp_codes[i] == code)
            break;
    atomic_fetch_add_explicit(&m->responses[i], 1, memory_order_relaxed);
}

void
shed_metrics_heartbeat(struct shed_metrics *m, enum shed_hb_result r)
{
    if (r < SHED_HB_COUNT)
        atomic_fetch_add_explicit(&m->heartbeats[r], 1, memory_order_relaxed);
}

void
shed_metrics_failed_report(struct shed_metrics *m)
{
    atomic_fetch_add_explicit(&m->failed_reports, 1, memory_order_relaxed);
}

void
shed_metrics_failed_unknown(struct shed_metrics *m)
{
    atomic_fetch_add_explicit(&m->failed_unknown, 1, memory_order_relaxed);
}

void
shed_metrics_duration(struct shed_metrics *m, uint64_t ns)
{
    size_t i;
    double s = (double)ns / 1e9;
    for (i = 0; i < NHIST; i++)
        if (s <= hist_bounds[i])
            break;
    atomic_fetch_add_explicit(&m->hist[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist_sum_ns, ns, memory_order_relaxed);
}

uint64_t
shed_metrics_redirects(struct shed_metrics *m, unsigned slot, enum shed_level level, unsigned code)
{
    if (slot >= SHED_METRICS_SLOTS || level >= SHED_LEVEL_COUNT)
        return 0;
    return atomic_load(&m->redirects[slot][level][code == 307]);
}

const char *
shed_metrics_hb_name(enum shed_hb_result r)
{
    return r < SHED_HB_COUNT ? hb_names[r] : "?";
}

uint64_t
shed_metrics_heartbeats(struct shed_metrics *m, enum shed_hb_result r)
{
    return r < SHED_HB_COUNT ? atomic_load(&m->heartbeats[r]) : 0;
}

struct buf {
    char *p;
    size_t len, cap;
    bool err;
};

/* Double <b>'s room (at most RENDER_MAX), or set b->err. */
static void
grow(struct buf *b)
{
    size_t ncap = b->cap * 2;
    char *np = ncap <= RENDER_MAX ? realloc(b->p, ncap) : NULL;
    if (np == NULL) {
        b->err = true;
        return;
    }
    b->p = np;
    b->cap = ncap;
}

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
bprintf(struct buf *b, const char *fmt, ...)
{
    while (!b->err) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        grow(b);
    }
}

int
shed_metrics_render(struct shed_metrics *m, const char (*slot_names)[SHED_NAME_MAX], size_t nslots,
                    uint64_t uptime_s, const char *more, size_t morelen, char **out, size_t *len)
{
    struct buf b = {.p = malloc(16384), .len = 0, .cap = 16384};
    if (b.p == NULL)
        return -ENOMEM;
    size_t n = nslots < SHED_METRICS_SLOTS ? nslots : SHED_METRICS_SLOTS;
    bprintf(&b,
            "# HELP shed_build_info The shed version; the value is always 1.\n"
            "# TYPE shed_build_info gauge\nshed_build_info{version=\"%s\"} 1\n"
            "# HELP shed_uptime_seconds Seconds since the daemon started.\n"
            "# TYPE shed_uptime_seconds gauge\nshed_uptime_seconds %" PRIu64 "\n",
            SHED_VERSION, uptime_s);
    bprintf(&b, "# HELP shed_redirects_total Redirects given.\n"
                "# TYPE shed_redirects_total counter\n");
    for (size_t s = 0; s < n; s++)
        for (int l = 0; l < SHED_LEVEL_COUNT; l++)
            for (int c = 0; c < 2; c++) {
                uint64_t v = atomic_load_explicit(&m->redirects[s][l][c], memory_order_relaxed);
                if (v != 0)
                    bprintf(&b,
                            "shed_redirects_total{service=\"%s\",level=\"%s\",code=\"%d\"} %" PRIu64
                            "\n",
                            slot_names[s], level_names[l], c ? 307 : 302, v);
            }
    bprintf(&b, "# HELP shed_responses_total Responses that are not redirects.\n"
                "# TYPE shed_responses_total counter\n");
    for (size_t i = 0; i < NRESP; i++) {
        uint64_t v = atomic_load_explicit(&m->responses[i], memory_order_relaxed);
        if (v != 0) {
            if (resp_codes[i] != 0)
                bprintf(&b, "shed_responses_total{code=\"%u\"} %" PRIu64 "\n", resp_codes[i], v);
            else
                bprintf(&b, "shed_responses_total{code=\"other\"} %" PRIu64 "\n", v);
        }
    }
    bprintf(&b, "# HELP shed_heartbeats_total Heartbeat and deregistration requests by result.\n"
                "# TYPE shed_heartbeats_total counter\n");
    for (int i = 0; i < SHED_HB_COUNT; i++)
        bprintf(&b, "shed_heartbeats_total{result=\"%s\"} %" PRIu64 "\n", hb_names[i],
                atomic_load_explicit(&m->heartbeats[i], memory_order_relaxed));
    bprintf(&b,
            "# HELP shed_failed_reports_total Shed-Failed reports from clients.\n"
            "# TYPE shed_failed_reports_total counter\nshed_failed_reports_total %" PRIu64 "\n",
            atomic_load(&m->failed_reports));
    bprintf(&b,
            "# HELP shed_failed_reports_unknown_total Shed-Failed reports naming no member's "
            "host:port (ignored).\n"
            "# TYPE shed_failed_reports_unknown_total counter\n"
            "shed_failed_reports_unknown_total %" PRIu64 "\n",
            atomic_load(&m->failed_unknown));
    if (morelen > 0 && !b.err) {
        while (b.cap - b.len <= morelen && !b.err)
            grow(&b);
        if (!b.err) {
            memcpy(b.p + b.len, more, morelen);
            b.len += morelen;
        }
    }
    bprintf(&b, "# HELP shed_request_duration_seconds Time the shed spends deciding a request.\n"
                "# TYPE shed_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < NHIST; i++) {
        cum += atomic_load_explicit(&m->hist[i], memory_order_relaxed);
        bprintf(&b, "shed_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", hist_bounds[i],
                cum);
    }
    cum += atomic_load_explicit(&m->hist[NHIST], memory_order_relaxed);
    bprintf(&b, "shed_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    bprintf(&b, "shed_request_duration_seconds_sum %.9f\n",
            (double)atomic_load(&m->hist_sum_ns) / 1e9);
    bprintf(&b, "shed_request_duration_seconds_count %" PRIu64 "\n", cum);
    if (b.err) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
