/* SPDX-License-Identifier: ISC */
/* tests/agg/test_agg: the aggregator's request state machine without
 * burrowd: answers decided before any fan-out (405, 404, 403, 400, and 403
 * for a cell larger than the aggregator asks at once), and a
 * cell whose servers are all dead (503, Shed-Partial naming each), a list of
 * every server of a 200-server cell (asked in slices). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring/ring.h"
#include "shed/agg.h"

static struct ring *ring;
static _Atomic uint8_t live[3];
static _Atomic uint32_t load[3];
static struct registry_route route;
static struct shed_agg *agg;

static void
setup(void)
{
    struct ring_config cfg;
    /* Port 1 on loopback: nothing listens, connections are refused. */
    struct ring_member m[3] = {
        {"b1", "http://127.0.0.1:1", "z1", 100},
        {"b2", "http://127.0.0.1:1", "z2", 100},
        {"b3", "http://127.0.0.1:1", "z3", 100},
    };
    struct shed_agg_config ac = {.list_all = false, .backend_timeout_ms = 500};

    ring_config_default(&cfg);
    cfg.buckets = 64;
    cr_assert_eq(ring_build(&cfg, m, 3, &ring), 0);
    memset(&route, 0, sizeof(route));
    snprintf(route.name, sizeof(route.name), "burrow");
    route.name_len = 6;
    route.ring = ring;
    route.live = live;
    route.load = load;
    cr_assert_eq(shed_agg_create(&ac, &agg), 0);
}

static void
teardown(void)
{
    shed_agg_destroy(agg);
    ring_destroy(ring);
}

struct wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void
on_done(void *arg)
{
    struct wait *w = arg;

    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Run one request to the end; returns its status; <hdr> gets a header. */
static unsigned
run(const char *method, const char *path, const char *query, const char *hdr_name, char *hdr,
    size_t hdrlen)
{
    struct wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    struct shed_agg_req *req;
    struct MHD_Response *resp;
    unsigned status = 0;
    const char *v;

    cr_assert_eq(shed_agg_start(agg, &route, method, path, strlen(path), query,
                                query ? strlen(query) : 0, on_done, &w, &req),
                 0);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    resp = shed_agg_response(req, &status);
    cr_assert_not_null(resp);
    if (hdr != NULL) {
        v = MHD_get_response_header(resp, hdr_name);
        snprintf(hdr, hdrlen, "%s", v ? v : "");
    }
    MHD_destroy_response(resp);
    shed_agg_req_free(req);
    return status;
}

TestSuite(agg, .init = setup, .fini = teardown, .timeout = 30);

Test(agg, answers_before_any_fanout)
{
    static const struct {
        const char *method, *path, *query;
        unsigned status;
    } cases[] = {
        {"PUT", "/v1.0/a/q", NULL, 405},        {"POST", "/v1.0/a", NULL, 405},
        {"HEAD", "/v1.0", NULL, 405},           {"GET", "/v1.0", NULL, 403}, /* list_all is off */
        {"DELETE", "/v1.0", NULL, 403},         {"GET", "/v2.0/a", NULL, 404},
        {"GET", "/v1.0/a/q/m/x", NULL, 404},    {"GET", "/v1.0/a%zz", NULL, 400},
        {"GET", "/v1.0/a/q", "limit=abc", 400}, {"GET", "/v1.0/a/q", "wait=-1", 400},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(run(cases[i].method, cases[i].path, cases[i].query, NULL, NULL, 0),
                     cases[i].status, "%s %s?%s", cases[i].method, cases[i].path,
                     cases[i].query ? cases[i].query : "");
}

Test(agg, every_server_dead_is_503_and_partial)
{
    char hdr[256];

    cr_assert_eq(run("GET", "/v1.0/a/q", "limit=10", "Shed-Partial", hdr, sizeof(hdr)), 503);
    cr_assert_str_eq(hdr, "3 of 3 backends unreachable: b1,b2,b3");
    cr_assert_geq(shed_agg_backend_errors(), 3);
}

Test(agg, down_members_are_not_asked_but_reported)
{
    char hdr[256];
    uint64_t before = shed_agg_backend_errors();

    atomic_store(&live[0], 3); /* REGISTRY_DOWN */
    atomic_store(&live[1], 3);
    atomic_store(&live[2], 3);
    cr_assert_eq(run("GET", "/v1.0/a", NULL, "Shed-Partial", hdr, sizeof(hdr)), 503);
    cr_assert_str_eq(hdr, "3 of 3 backends unreachable: b1,b2,b3");
    cr_assert_eq(shed_agg_backend_errors(), before, "nobody was asked");
}

Test(agg, wants_list_levels_only)
{
    cr_assert(shed_agg_wants("/v1.0", 5));
    cr_assert(shed_agg_wants("/v1.0/a", 7));
    cr_assert(shed_agg_wants("/v1.0/a/q", 9));
    cr_assert(!shed_agg_wants("/v1.0/a/q/m", 11));
    cr_assert(!shed_agg_wants("/", 1));
    cr_assert(!shed_agg_wants("/_shed/v1/status", 16));
    cr_assert(shed_agg_wants("/v1.0/a%zz", 10), "a bad encoding at list level is ours (400)");
}

Test(agg, metrics_text)
{
    char buf[2048];
    size_t n = shed_agg_metrics(buf, sizeof(buf));

    cr_assert_gt(n, 0);
    cr_assert_not_null(strstr(buf, "shed_agg_backend_errors_total "));
    cr_assert_eq(shed_agg_metrics(buf, 10), 9, "truncated, NUL-terminated");
}

/* A cell of <n> members named <prefix> and a 4-digit number, none
 * listening, made the route of the next requests with list_all on; free
 * with big_cell_free(). */
struct big_cell {
    struct ring *ring;
    _Atomic uint8_t *live;
    _Atomic uint32_t *load;
};

static void
big_cell(struct big_cell *c, size_t n, char prefix, uint32_t buckets)
{
    static char ids[4097][16];
    static struct ring_member m[4097];
    struct shed_agg_config ac = {.list_all = true, .backend_timeout_ms = 500};
    struct ring_config cfg;

    cr_assert_leq(n, 4097);
    c->live = calloc(n, sizeof(*c->live));
    c->load = calloc(n, sizeof(*c->load));
    cr_assert(c->live != NULL && c->load != NULL);
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%c%04zu", prefix, i);
        m[i] = (struct ring_member){ids[i], "http://127.0.0.1:1", "", 100};
    }
    ring_config_default(&cfg);
    cfg.buckets = buckets;
    cr_assert_eq(ring_build(&cfg, m, n, &c->ring), 0);
    route.ring = c->ring;
    route.live = c->live;
    route.load = c->load;
    shed_agg_reconfigure(agg, &ac);
}

static void
big_cell_free(struct big_cell *c)
{
    ring_destroy(c->ring);
    free(c->live);
    free(c->load);
}

/* GET /v1.0 asks every server of the cell: past the aggregator's maximum
 * it is refused with a clear 403, never answered from a silently shorter
 * list of servers. */
Test(agg, list_all_past_the_server_maximum_is_403)
{
    struct big_cell c;

    big_cell(&c, 4097, 'm', 8192);
    cr_assert_eq(run("GET", "/v1.0", NULL, NULL, NULL, 0), 403);
    cr_assert_eq(run("DELETE", "/v1.0", NULL, NULL, NULL, 0), 403);
    big_cell_free(&c);
}

/* A cell of 200 servers: GET /v1.0 asks them in slices (IDS_SLICE), every
 * one of them in the end. */
Test(agg, list_all_asks_every_server_in_slices)
{
    struct big_cell c;
    uint64_t before = shed_agg_backend_errors();
    char hdr[1024];

    big_cell(&c, 200, 's', 1024);
    cr_assert_eq(run("GET", "/v1.0", NULL, "Shed-Partial", hdr, sizeof(hdr)), 503);
    cr_assert_eq(strncmp(hdr, "200 of 200 backends unreachable: s0000,s0001", 44), 0, "%s", hdr);
    cr_assert_eq(shed_agg_backend_errors() - before, 200, "every server asked once");
    big_cell_free(&c);
}
