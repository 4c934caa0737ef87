/* SPDX-License-Identifier: ISC */
/*
 * tests/agg/agg_load: a closed-loop HTTP load generator for the aggregator
 * benchmark, on shed/fanout itself (libcurl multi, keep-alive): <conc>
 * GET <url> always in flight for <seconds>; prints "ok=N bad=M secs=S".
 * A C client, so the figure is the server's rate, not a Python client's.
 * With more URLs after SECONDS, each of the <conc> is a batch of all the
 * URLs in parallel (counted ok when every answer is a 200): a fan-out done
 * by the client itself, without an aggregator.
 *
 *   agg_load URL CONC SECONDS [URL...]
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "shed/fanout.h"

static struct shed_fanout *fan;
static struct shed_fanout_req reqs[16];
static size_t nreqs;
static _Atomic bool stop;
static _Atomic long ok, bad, inflight;

static void
on_done(void *arg, const struct shed_fanout_res *res, size_t n)
{
    size_t good = 0;

    (void)arg;
    for (size_t i = 0; i < n; i++)
        good += res[i].status == 200;
    if (n == nreqs && good == n)
        atomic_fetch_add(&ok, 1);
    else
        atomic_fetch_add(&bad, 1);
    if (atomic_load(&stop) || shed_fanout_submit(fan, reqs, nreqs, NULL, on_done, NULL) < 0)
        atomic_fetch_sub(&inflight, 1);
}

static double
now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    struct shed_fanout_config cfg = {0};
    double t0, secs;
    int conc;

    if (argc < 4 || argc - 3 > (int)(sizeof(reqs) / sizeof(reqs[0]))) {
        fprintf(stderr, "usage: agg_load URL CONC SECONDS [URL...] (at most 16 URLs)\n");
        return 2;
    }
    for (int i = 0; i < argc - 3; i++) {
        reqs[i].method = "GET";
        reqs[i].url = argv[i == 0 ? 1 : i + 3];
        reqs[i].timeout_ms = 10000;
    }
    nreqs = (size_t)(argc - 3);
    conc = atoi(argv[2]);
    secs = atof(argv[3]);
    if (conc < 1 || conc > 256 || secs <= 0 || secs > 60)
        return 2;
    if (shed_fanout_create(&cfg, &fan) < 0)
        return 1;
    t0 = now_s();
    for (int i = 0; i < conc; i++) {
        atomic_fetch_add(&inflight, 1);
        if (shed_fanout_submit(fan, reqs, nreqs, NULL, on_done, NULL) < 0)
            atomic_fetch_sub(&inflight, 1);
    }
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop, true);
    secs = now_s() - t0;
    for (int i = 0; i < 1000 && atomic_load(&inflight) > 0; i++)
        usleep(10000);
    shed_fanout_destroy(fan);
    printf("ok=%ld bad=%ld secs=%.3f\n", atomic_load(&ok), atomic_load(&bad), secs);
    return 0;
}
