/* SPDX-License-Identifier: ISC */
/* tests/agg/test_agg: the aggregator engine without burrowd and without
 * libmicrohttpd (a struct shed_agg_request in, a struct shed_agg_answer
 * out): answers decided before any fan-out (405, 404, 403, 400, and 403
 * for a cell larger than the aggregator asks at once), a cell whose
 * servers are all dead (503, Retry-After, Shed-Partial naming each), a
 * list of every server of a 200-server cell (asked in slices), the
 * engine's counters and its stop. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ring/ring.h"
#include "shed/agg.h"
#include "shed/agg_impl.h"

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
    cr_assert_eq(shed_agg_create(&ac, NULL, &agg), 0);
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
    unsigned status; /* as the callback saw it */
};

static void
on_done(void *arg, const struct shed_agg_answer *a)
{
    struct wait *w = arg;

    pthread_mutex_lock(&w->lock);
    w->status = a->status;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* The raw query <query> split on '&' and '=' into <args> (at most 16),
 * in <buf>. */
static size_t
split_query(const char *query, char *buf, size_t len, struct shed_agg_arg *args)
{
    size_t n = 0;
    char *save = NULL;

    if (query == NULL)
        return 0;
    snprintf(buf, len, "%s", query);
    for (char *kv = strtok_r(buf, "&", &save); kv != NULL && n < 16;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');

        if (eq != NULL)
            *eq = '\0';
        args[n].key = kv;
        args[n].val = eq != NULL ? eq + 1 : NULL;
        n++;
    }
    return n;
}

/* Run one request to the end; returns its status; <hdr> gets the value of
 * the answer's header <hdr_name> ("Shed-Partial", "Link", "Retry-After",
 * "Cache-Control"; "" when absent). */
static unsigned
run(const char *method, const char *path, const char *query, const char *hdr_name, char *hdr,
    size_t hdrlen)
{
    struct wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    struct shed_agg_request rq = {0};
    struct shed_agg_arg args[16];
    const struct shed_agg_answer *a;
    struct shed_agg_req *req;
    char qbuf[512];
    unsigned status;
    const char *v = NULL;
    char ra[16];

    rq.method = method;
    rq.path = path;
    rq.plen = strlen(path);
    rq.args = args;
    rq.nargs = split_query(query, qbuf, sizeof(qbuf), args);
    rq.service = "burrow";
    rq.route = &route;
    cr_assert_eq(shed_agg_start(agg, &rq, on_done, &w, &req), 0);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    a = shed_agg_answer(req);
    cr_assert_not_null(a);
    cr_assert_eq(a->status, w.status, "the callback saw the answer");
    cr_assert_str_eq(a->cache_control, "no-store");
    status = a->status;
    if (hdr != NULL) {
        if (strcmp(hdr_name, "Shed-Partial") == 0)
            v = a->partial;
        else if (strcmp(hdr_name, "Link") == 0)
            v = a->link;
        else if (strcmp(hdr_name, "Cache-Control") == 0)
            v = a->cache_control;
        else if (strcmp(hdr_name, "Retry-After") == 0 && a->retry_after > 0) {
            snprintf(ra, sizeof(ra), "%u", a->retry_after);
            v = ra;
        }
        snprintf(hdr, hdrlen, "%s", v ? v : "");
    }
    shed_agg_req_free(req);
    return status;
}

static uint64_t
backend_errors(void)
{
    struct shed_agg_stats s;

    shed_agg_stats(agg, &s);
    return s.backend_errors;
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
    cr_assert_geq(backend_errors(), 3);
    cr_assert_eq(run("GET", "/v1.0/a/q", "limit=10", "Retry-After", hdr, sizeof(hdr)), 503);
    cr_assert_str_eq(hdr, "1");
}

Test(agg, down_members_are_not_asked_but_reported)
{
    char hdr[256];
    uint64_t before = backend_errors();

    atomic_store(&live[0], 3); /* REGISTRY_DOWN */
    atomic_store(&live[1], 3);
    atomic_store(&live[2], 3);
    cr_assert_eq(run("GET", "/v1.0/a", NULL, "Shed-Partial", hdr, sizeof(hdr)), 503);
    cr_assert_str_eq(hdr, "3 of 3 backends unreachable: b1,b2,b3");
    cr_assert_eq(backend_errors(), before, "nobody was asked");
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
    struct shed_agg_stats st;
    char buf[2048];
    size_t n;

    cr_assert_eq(run("GET", "/v1.0/a/q", "limit=abc", NULL, NULL, 0), 400);
    shed_agg_stats(agg, &st);
    cr_assert_eq(st.requests, 1);
    cr_assert_eq(st.answered, 1);
    cr_assert_eq(st.in_flight, 0, "freed");
    n = shed_agg_stats_text(&st, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_not_null(strstr(buf, "shed_agg_requests_total 1\n"));
    cr_assert_not_null(strstr(buf, "shed_agg_backend_errors_total 0\n"));
    cr_assert_eq(shed_agg_stats_text(&st, buf, 10), 9, "truncated, NUL-terminated");
}

/* The engine joins the raw arguments again: a query past
 * SHED_AGG_QUERY_MAX is refused before anything starts (the caller
 * answers 400); a lone key keeps its place. */
Test(agg, query_too_long_is_refused)
{
    static char big[SHED_AGG_QUERY_MAX];
    struct shed_agg_arg arg = {"marker", big};
    struct shed_agg_request rq = {.method = "GET",
                                  .path = "/v1.0/a/q",
                                  .plen = 9,
                                  .args = &arg,
                                  .nargs = 1,
                                  .service = "burrow",
                                  .route = &route};
    struct shed_agg_req *req = NULL;
    struct shed_agg_stats st;

    memset(big, 'x', sizeof(big) - 1);
    cr_assert_eq(shed_agg_start(agg, &rq, on_done, NULL, &req), -E2BIG);
    cr_assert_null(req);
    shed_agg_stats(agg, &st);
    cr_assert_eq(st.requests, 0, "nothing started");
    cr_assert_eq(run("GET", "/v1.0/a/q", "detail=id&limit", NULL, NULL, 0), 400,
                 "a key without a value reaches the parser (an empty limit)");
}

/* No service from Host: 404 with no body, nobody asked. */
Test(agg, unknown_service_is_404)
{
    struct wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    struct shed_agg_request rq = {.method = "GET", .path = "/v1.0/a/q", .plen = 9};
    struct shed_agg_req *req;

    cr_assert_eq(shed_agg_start(agg, &rq, on_done, &w, &req), 0);
    cr_assert(w.done, "answered inside the start");
    cr_assert_eq(w.status, 404);
    cr_assert_null(shed_agg_answer(req)->body);
    shed_agg_req_free(req);
    cr_assert_eq(backend_errors(), 0);
}

/* A stopped engine starts nothing (-ESHUTDOWN, no callback), and its loop
 * fd is gone; stopping again is harmless. */
Test(agg, stopped_engine_refuses)
{
    struct shed_agg_request rq = {
        .method = "GET", .path = "/v1.0/a/q", .plen = 9, .service = "burrow", .route = &route};
    struct shed_agg_req *req = NULL;
    uint64_t ns = 1;

    shed_agg_stop(agg);
    cr_assert_eq(shed_agg_start(agg, &rq, on_done, NULL, &req), -ESHUTDOWN);
    cr_assert_null(req);
    cr_assert_eq(shed_agg_loop_fd(agg, &ns), -1);
    cr_assert_eq(ns, 0);
    shed_agg_loop_run(agg);
    shed_agg_stop(agg);
}

/* A cell of <n> members named <prefix> and a 4-digit number, none
 * listening, made the route of the next requests with list_all on; free
 * with big_cell_free(). */
struct big_cell {
    struct ring *ring;
    _Atomic uint8_t *live;
    _Atomic uint32_t *load;
};

/* Where big_cell()'s members are: nothing listens there. */
static const char *big_cell_url = "http://127.0.0.1:1";

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
        m[i] = (struct ring_member){ids[i], big_cell_url, "", 100};
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
    uint64_t before = backend_errors();
    char hdr[1024];

    big_cell(&c, 200, 's', 1024);
    cr_assert_eq(run("GET", "/v1.0", NULL, "Shed-Partial", hdr, sizeof(hdr)), 503);
    cr_assert_eq(strncmp(hdr, "200 of 200 backends unreachable: s0000,s0001", 44), 0, "%s", hdr);
    cr_assert_eq(backend_errors() - before, 200, "every server asked once");
    big_cell_free(&c);
}

/* GET /v1.0 asks every member: at most aggregation.list_all_running run at
 * once; one more is answered 503 with Retry-After (no backend asked), and
 * once the first is done the next one runs again. */
Test(agg, list_all_runs_at_most_list_all_running_at_once)
{
    struct big_cell c;
    struct shed_agg_config ac = {
        .list_all = true, .list_all_running = 1, .backend_timeout_ms = 500};
    struct wait w1 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    struct shed_agg_request rq = {0};
    struct shed_agg_req *first;
    char hdr[1024], url[64];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);

    /* Members that take the connection and never answer: the first list
     * runs until backend_timeout, certainly while the second starts. */
    cr_assert(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              listen(lfd, 1024) == 0 && getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    big_cell_url = url;
    big_cell(&c, 200, 'r', 1024);
    big_cell_url = "http://127.0.0.1:1";
    shed_agg_reconfigure(agg, &ac);
    rq.method = "GET";
    rq.path = "/v1.0";
    rq.plen = 5;
    rq.service = "burrow";
    rq.route = &route;
    /* The first counts until it is answered. */
    uint64_t before = backend_errors();
    cr_assert_eq(shed_agg_start(agg, &rq, on_done, &w1, &first), 0);
    cr_assert_eq(run("GET", "/v1.0", NULL, "Retry-After", hdr, sizeof(hdr)), 503);
    cr_assert_str_eq(hdr, "1");
    pthread_mutex_lock(&w1.lock);
    while (!w1.done)
        pthread_cond_wait(&w1.cond, &w1.lock);
    pthread_mutex_unlock(&w1.lock);
    cr_assert_eq(w1.status, 503);
    cr_assert_not_null(shed_agg_answer(first)->partial, "the first one asked the servers");
    shed_agg_req_free(first);
    cr_assert_eq(backend_errors() - before, 200, "only the first one asked (200 servers)");
    /* Answered: the next one runs. */
    cr_assert_eq(run("GET", "/v1.0", NULL, "Shed-Partial", hdr, sizeof(hdr)), 503);
    cr_assert_eq(strncmp(hdr, "200 of 200 backends unreachable", 31), 0, "%s", hdr);
    big_cell_free(&c);
    close(lfd);
}

/* ------------------------------------------------------------------
 * The engine against canned backends: one libmicrohttpd daemon plays three
 * Burrow servers with shed's ordering extension (http://127.0.0.1:PORT/bN),
 * each holding every third message of one queue, stamps interleaved, and
 * the same QUEUES queues of the account.
 */
#define FAKE_N   3
#define FAKE_MSG 30 /* messages per server */
#define QUEUES   40

static struct MHD_Daemon *fake;
static char fake_url[FAKE_N][64];
static _Atomic unsigned fake_deletes, fake_inflight, fake_max_inflight;

/* Message j of server i: stamp 1000 + 3j + i; ids do not sort as stamps do. */
static void
fake_msg(unsigned i, unsigned j, int64_t *stamp, char id[16])
{
    *stamp = 1000 + 3 * (int64_t)j + i;
    snprintf(id, 16, "%c%lld", 'z' - (int)(*stamp % 26), (long long)*stamp);
}

static enum MHD_Result
fake_send(struct MHD_Connection *conn, unsigned status, char *body)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(body ? strlen(body) : 0, body ? body : (char *)"",
                                        body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc;

    MHD_add_response_header(resp, "Shed-Clock", "1000000");
    rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* GET /bI/v1.0/a/q (after shed_after/marker, up to limit), GET
 * /bI/v1.0/a/q/ID (has it?), GET /bI/v1.0/a (the queues), DELETE
 * /bI/v1.0/a/QUEUE (counted). */
static enum MHD_Result
fake_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
             const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    const char *v;
    unsigned i;
    int64_t after = -1, limit = 0;
    const char *after_id = NULL;
    json_t *a;
    char *body;

    (void)cls, (void)version, (void)upload, (void)upload_size, (void)con_cls;
    if (sscanf(url, "/b%u/", &i) != 1 || i >= FAKE_N)
        return fake_send(conn, 404, NULL);
    url = strchr(url + 1, '/');
    if (strcmp(method, "DELETE") == 0) {
        unsigned in = atomic_fetch_add(&fake_inflight, 1) + 1,
                 max = atomic_load(&fake_max_inflight);
        struct timespec ts = {0, 2 * 1000000L};

        while (in > max && !atomic_compare_exchange_weak(&fake_max_inflight, &max, in))
            ;
        nanosleep(&ts, NULL); /* so that the deletes of a slice overlap */
        atomic_fetch_add(&fake_deletes, 1);
        atomic_fetch_sub(&fake_inflight, 1);
        return fake_send(conn, 204, NULL);
    }
    if (strcmp(url, "/v1.0/a") == 0) {
        a = json_array();
        for (unsigned q = 0; q < QUEUES; q++) {
            char id[16];

            snprintf(id, sizeof(id), "q%02u", q);
            json_array_append_new(a, json_pack("{s:s,s:I}", "id", id, "stamp", (json_int_t)q + 1));
        }
        body = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        return fake_send(conn, 200, body);
    }
    if (strncmp(url, "/v1.0/a/q/", 10) == 0) {
        for (unsigned j = 0; j < FAKE_MSG; j++) {
            int64_t st;
            char id[16];

            fake_msg(i, j, &st, id);
            if (strcmp(url + 10, id) == 0) {
                body = malloc(64);
                if (body == NULL)
                    return MHD_NO;
                snprintf(body, 64, "{\"id\":\"%s\",\"stamp\":%lld}", id, (long long)st);
                return fake_send(conn, 200, body);
            }
        }
        return fake_send(conn, 404, strdup("Message not found"));
    }
    if (strcmp(url, "/v1.0/a/q") != 0)
        return fake_send(conn, 404, strdup("Queue not found"));
    if ((v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "shed_after")) != NULL) {
        after = strtoll(v, NULL, 10);
        after_id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "marker");
    }
    if ((v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit")) != NULL)
        limit = strtoll(v, NULL, 10);
    a = json_array();
    for (unsigned j = 0; j < FAKE_MSG && (limit <= 0 || (int64_t)json_array_size(a) < limit); j++) {
        int64_t st;
        char id[16];

        fake_msg(i, j, &st, id);
        if (after >= 0 &&
            (st < after || (st == after && (after_id == NULL || strcmp(id, after_id) <= 0))))
            continue;
        json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:s,s:I}", "id", id, "ttl", 60, "hide", 0,
                                           "body", "x", "stamp", (json_int_t)st));
    }
    if (json_array_size(a) == 0) {
        json_decref(a);
        return fake_send(conn, 204, NULL);
    }
    body = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return fake_send(conn, 200, body);
}

static struct ring *fake_ring;
static _Atomic uint8_t fake_live[FAKE_N];
static _Atomic uint32_t fake_load[FAKE_N];

static void
fake_setup(void)
{
    struct ring_config cfg;
    struct ring_member m[FAKE_N];
    struct shed_agg_config ac = {.list_all = true, .backend_timeout_ms = 2000};
    static char ids[FAKE_N][8];
    const union MHD_DaemonInfo *info;

    fake =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                         NULL, fake_handler, NULL, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    cr_assert_not_null(fake);
    info = MHD_get_daemon_info(fake, MHD_DAEMON_INFO_BIND_PORT);
    cr_assert_not_null(info);
    for (unsigned i = 0; i < FAKE_N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "b%u", i);
        snprintf(fake_url[i], sizeof(fake_url[i]), "http://127.0.0.1:%u/b%u", (unsigned)info->port,
                 i);
        m[i] = (struct ring_member){ids[i], fake_url[i], "", 100};
    }
    ring_config_default(&cfg);
    cfg.buckets = 64;
    cr_assert_eq(ring_build(&cfg, m, FAKE_N, &fake_ring), 0);
    memset(&route, 0, sizeof(route));
    snprintf(route.name, sizeof(route.name), "burrow");
    route.name_len = 6;
    route.ring = fake_ring;
    route.live = fake_live;
    route.load = fake_load;
    cr_assert_eq(shed_agg_create(&ac, NULL, &agg), 0);
}

static void
fake_teardown(void)
{
    shed_agg_destroy(agg);
    MHD_stop_daemon(fake);
    ring_destroy(fake_ring);
}

TestSuite(engine, .init = fake_setup, .fini = fake_teardown, .timeout = 30);

/* The message ids of a list answer, in order, into <ids> (comma-separated). */
static void
page_ids(const char *method, const char *path, const char *query, char *ids, size_t len, char *link,
         size_t linklen, unsigned *status)
{
    struct wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    struct shed_agg_request rq = {0};
    struct shed_agg_arg args[16];
    const struct shed_agg_answer *a;
    struct shed_agg_req *req;
    char qbuf[512];
    json_t *doc, *it;
    size_t k, o = 0;

    rq.method = method;
    rq.path = path;
    rq.plen = strlen(path);
    rq.args = args;
    rq.nargs = split_query(query, qbuf, sizeof(qbuf), args);
    rq.service = "burrow";
    rq.route = &route;
    cr_assert_eq(shed_agg_start(agg, &rq, on_done, &w, &req), 0);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    a = shed_agg_answer(req);
    *status = a->status;
    snprintf(link, linklen, "%s", a->link ? a->link : "");
    ids[0] = '\0';
    if (a->status == 200) {
        doc = json_loadb(a->body, a->len, 0, NULL);
        cr_assert(json_is_array(doc), "%.*s", (int)a->len, a->body);
        json_array_foreach(doc, k, it)
        {
            const char *id = json_is_string(it) ? json_string_value(it)
                                                : json_string_value(json_object_get(it, "id"));
            int n = snprintf(ids + o, len - o, "%s%s", o ? "," : "", id ? id : "?");

            o += (size_t)n < len - o ? (size_t)n : 0;
        }
        json_decref(doc);
    }
    shed_agg_req_free(req);
}

/* The expected ids of stamps [from, from + n), in order. */
static void
expect_ids(int64_t from, unsigned n, char *out, size_t len)
{
    size_t o = 0;

    out[0] = '\0';
    for (unsigned k = 0; k < n; k++) {
        int64_t st = from + k;
        char id[16];

        fake_msg((unsigned)((st - 1000) % 3), (unsigned)((st - 1000) / 3), &st, id);
        o += (size_t)snprintf(out + o, len - o, "%s%s", o ? "," : "", id);
    }
}

/* Three servers' windows merge into the global (stamp, id) order; the Link
 * names the next page, whose cursor places it with no marker probe, and
 * that page goes on exactly after the first. */
Test(engine, list_pages_in_global_order)
{
    char ids[1024], want[1024], link[SHED_AGG_HEADER_MAX], next[SHED_AGG_HEADER_MAX];
    const char *q, *end;
    unsigned status;

    page_ids("GET", "/v1.0/a/q", "limit=7", ids, sizeof(ids), link, sizeof(link), &status);
    cr_assert_eq(status, 200);
    expect_ids(1000, 7, want, sizeof(want));
    cr_assert_str_eq(ids, want);
    cr_assert_not_null(strstr(link, "marker="), "%s", link);
    q = strchr(link, '?');
    end = strchr(link, '>');
    cr_assert(q != NULL && end != NULL && end > q, "%s", link);
    snprintf(next, sizeof(next), "%.*s", (int)(end - q - 1), q + 1);
    page_ids("GET", "/v1.0/a/q", next, ids, sizeof(ids), link, sizeof(link), &status);
    cr_assert_eq(status, 200);
    expect_ids(1007, 7, want, sizeof(want));
    cr_assert_str_eq(ids, want, "the second page: %s", next);
    /* The whole queue without a limit: every message once, no Link. */
    page_ids("GET", "/v1.0/a/q", NULL, ids, sizeof(ids), link, sizeof(link), &status);
    expect_ids(1000, FAKE_N * FAKE_MSG, want, sizeof(want));
    cr_assert_str_eq(ids, want);
    cr_assert_str_eq(link, "");
}

/* A queue list is the union of the servers' lists, once each; a DELETE of
 * QUEUES queues with a limit deletes each on every server that listed it,
 * at most DEL_SLICE backend deletes in flight, in slices. */
Test(engine, queue_delete_in_slices)
{
    char ids[1024], link[SHED_AGG_HEADER_MAX];
    struct shed_agg_stats st;
    unsigned status;

    page_ids("GET", "/v1.0/a", NULL, ids, sizeof(ids), link, sizeof(link), &status);
    cr_assert_eq(status, 200);
    cr_assert_eq(strncmp(ids, "q00,q01,q02,", 12), 0, "%s", ids);
    cr_assert_eq(strlen(ids), QUEUES * 4 - 1, "each queue once: %s", ids);
    page_ids("DELETE", "/v1.0/a", "limit=40", ids, sizeof(ids), link, sizeof(link), &status);
    cr_assert(status == 200 || status == 204, "%u", status);
    cr_assert_eq(atomic_load(&fake_deletes), FAKE_N * QUEUES);
    cr_assert_leq(atomic_load(&fake_max_inflight), DEL_SLICE);
    shed_agg_stats(agg, &st);
    cr_assert_eq(st.slices, (FAKE_N * QUEUES + DEL_SLICE - 1) / DEL_SLICE);
    cr_assert_eq(st.backend_errors, 0);
}

/* The first wave's windows: a replica is asked for two, the only writer
 * for the whole page, a writer of one bucket in three for its share and
 * three standard deviations and two more. */
Test(engine, first_wave_windows)
{
    cr_assert_eq(agg_window_of(100, 0, 3), 2);
    cr_assert_eq(agg_window_of(1, 0, 3), 1);
    cr_assert_eq(agg_window_of(100, 3, 3), 100);
    cr_assert_eq(agg_window_of(0, 1, 3), 0, "no limit: none");
    /* 100/3 = 33.3, sd sqrt(33.3 * 2/3) = 4.71: 33.3 + 14.1 + 2 = 49.5 */
    cr_assert_eq(agg_window_of(100, 1, 3), 50);
    cr_assert_eq(agg_window_of(10, 2, 3), 10, "past the limit: the limit");
}

/* Positions in the global order: stamp first, then id bytewise; a
 * position without an id is past its whole stamp. */
Test(engine, positions)
{
    struct pos p = {0};
    struct shed_merge_item a = {.id = "b", .idlen = 1, .stamp = 5};
    struct shed_merge_item b = {.id = "a", .idlen = 1, .stamp = 6};
    struct shed_merge_item c = {.id = "c", .idlen = 1, .stamp = 5};

    cr_assert(agg_pos_before(&p, &a), "unset: the beginning");
    cr_assert(!agg_pos_within(&p, &a));
    agg_pos_of(&p, &a);
    cr_assert(!agg_pos_before(&p, &a), "not after itself");
    cr_assert(agg_pos_within(&p, &a));
    cr_assert(agg_pos_before(&p, &b), "a later stamp");
    cr_assert(agg_pos_before(&p, &c), "same stamp, a later id");
    agg_pos_set(&p, 5, NULL, 0);
    cr_assert(!agg_pos_before(&p, &c), "past the whole stamp 5");
    cr_assert(agg_pos_before(&p, &b));
}

/* A marker without the cursor is placed by asking its preference row for
 * its stamp; a marker no server has is ignored, as in Burrow. */
Test(engine, marker_without_cursor_is_probed)
{
    char ids[1024], want[1024], link[SHED_AGG_HEADER_MAX], q[64];
    unsigned status;
    int64_t st;
    char id[16];

    fake_msg(0, 2, &st, id); /* stamp 1006 */
    snprintf(q, sizeof(q), "limit=7&marker=%s", id);
    page_ids("GET", "/v1.0/a/q", q, ids, sizeof(ids), link, sizeof(link), &status);
    cr_assert_eq(status, 200);
    expect_ids(1007, 7, want, sizeof(want));
    cr_assert_str_eq(ids, want);
    page_ids("GET", "/v1.0/a/q", "limit=3&marker=nobody", ids, sizeof(ids), link, sizeof(link),
             &status);
    expect_ids(1000, 3, want, sizeof(want));
    cr_assert_str_eq(ids, want);
}
