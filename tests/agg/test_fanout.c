/* SPDX-License-Identifier: ISC */
/* tests/agg/test_fanout: the libcurl multi engine against a plain HTTP server
 * started by the test (libmicrohttpd, a thread per connection so a slow
 * answer only holds its own thread). */
#include <criterion/criterion.h>
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common/clock.h"
#include "shed/fanout.h"

static struct MHD_Daemon *d;
static uint16_t port;
static _Atomic int conns;

static enum MHD_Result
handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
        const char *version, const char *upload, size_t *upload_size, void **ctx)
{
    static char big[100000];
    struct MHD_Response *r;
    const char *body = "ok";
    size_t len = 2;
    unsigned status = 200;
    enum MHD_Result ret;

    (void)cls, (void)version, (void)upload, (void)upload_size;
    if (*ctx == NULL) {
        *ctx = c;
        return MHD_YES;
    }
    if (strcmp(url, "/slow") == 0) {
        usleep(1500 * 1000);
    } else if (strcmp(url, "/big") == 0) {
        memset(big, 'x', sizeof(big));
        body = big;
        len = sizeof(big);
    } else if (strcmp(url, "/method") == 0) {
        body = method;
        len = strlen(method);
    } else if (strcmp(url, "/404") == 0) {
        status = 404;
        body = "Queue not found";
        len = strlen(body);
    }
    r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (strcmp(url, "/close") == 0)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void
notify(void *cls, struct MHD_Connection *c, void **socket_ctx,
       enum MHD_ConnectionNotificationCode t)
{
    (void)cls, (void)c, (void)socket_ctx;
    if (t == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&conns, 1);
}

static void
start_server(void)
{
    const union MHD_DaemonInfo *info;

    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
                         NULL, handler, NULL, MHD_OPTION_NOTIFY_CONNECTION, notify, NULL,
                         MHD_OPTION_END);
    cr_assert_not_null(d);
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    port = info->port;
}

static void
stop_server(void)
{
    MHD_stop_daemon(d);
}

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    size_t n;
    struct shed_fanout_res res[8];
    char bodies[8][64];
    int cancel_after_first;
};

static bool
on_each(void *arg, size_t idx, const struct shed_fanout_res *res)
{
    struct waiter *w = arg;

    (void)idx;
    return w->cancel_after_first && res->status == 200;
}

static void
on_done(void *arg, const struct shed_fanout_res *res, size_t n)
{
    struct waiter *w = arg;

    pthread_mutex_lock(&w->lock);
    w->n = n;
    for (size_t i = 0; i < n && i < 8; i++) {
        w->res[i] = res[i];
        snprintf(w->bodies[i], sizeof(w->bodies[i]), "%.*s",
                 (int)(res[i].len < 63 ? res[i].len : 63), res[i].body);
        w->res[i].body = NULL;
    }
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void
run(struct shed_fanout *f, const struct shed_fanout_req *reqs, size_t n, struct waiter *w)
{
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->done = false;
    cr_assert_eq(shed_fanout_submit(f, reqs, n, on_each, on_done, w), 0);
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

TestSuite(fanout, .init = start_server, .fini = stop_server, .timeout = 30);

Test(fanout, batch_and_methods)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    struct waiter w = {0};
    char u1[64], u2[64], u3[64];
    struct shed_fanout_req reqs[3] = {
        {"GET", u1, 2000, false}, {"POST", u2, 2000, false}, {"DELETE", u3, 2000, false}};

    snprintf(u1, sizeof(u1), "http://127.0.0.1:%u/404", port);
    snprintf(u2, sizeof(u2), "http://127.0.0.1:%u/method", port);
    snprintf(u3, sizeof(u3), "http://127.0.0.1:%u/method", port);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    run(f, reqs, 3, &w);
    cr_assert_eq(w.n, 3);
    cr_assert_eq(w.res[0].status, 404);
    cr_assert_str_eq(w.bodies[0], "Queue not found");
    cr_assert_str_eq(w.bodies[1], "POST");
    cr_assert_str_eq(w.bodies[2], "DELETE");
    shed_fanout_destroy(f);
}

Test(fanout, slow_backend_times_out_alone)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    struct waiter w = {0};
    char u1[64], u2[64], u3[64];
    struct shed_fanout_req reqs[3] = {
        {"GET", u1, 300, false}, {"GET", u2, 300, false}, {"GET", u3, 300, false}};
    double t0;

    snprintf(u1, sizeof(u1), "http://127.0.0.1:%u/slow", port);
    snprintf(u2, sizeof(u2), "http://127.0.0.1:%u/fast", port);
    snprintf(u3, sizeof(u3), "http://127.0.0.1:1/dead"); /* nothing listens on port 1 */
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    t0 = clock_mono_s();
    run(f, reqs, 3, &w);
    cr_assert_lt(clock_mono_s() - t0, 1.0, "the batch waits for the timeout, not the slow answer");
    cr_assert_eq(w.res[0].status, 0);
    cr_assert_eq(w.res[0].err, -ETIMEDOUT);
    cr_assert_eq(w.res[1].status, 200);
    cr_assert_lt(w.res[1].ms, 250.0);
    cr_assert_eq(w.res[2].status, 0);
    cr_assert_eq(w.res[2].err, -ECONNREFUSED);
    shed_fanout_destroy(f);
}

Test(fanout, first_answer_cancels_the_rest)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    struct waiter w = {0};
    char u1[64], u2[64];
    struct shed_fanout_req reqs[2] = {{"GET", u1, 5000, false}, {"GET", u2, 5000, false}};
    double t0;

    snprintf(u1, sizeof(u1), "http://127.0.0.1:%u/slow", port);
    snprintf(u2, sizeof(u2), "http://127.0.0.1:%u/fast", port);
    w.cancel_after_first = 1;
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    t0 = clock_mono_s();
    run(f, reqs, 2, &w);
    cr_assert_lt(clock_mono_s() - t0, 1.0);
    cr_assert_eq(w.res[0].err, -ECANCELED);
    cr_assert_eq(w.res[1].status, 200);
    shed_fanout_destroy(f);
}

/* The machine as shed_fanout_busy_poll() sees it: one task runnable (the
 * loop itself), or far more than CPUs. */
static unsigned long
runnable_idle(void)
{
    return 1;
}

static unsigned long
runnable_crowded(void)
{
    return 100000;
}

Test(fanout, busy_poll_only_while_it_can_pay)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    struct waiter w[64];
    char u[64];
    struct shed_fanout_req slow = {"GET", u, 5000, false};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t i;

    cr_assert_gt(ncpu, 0);
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/slow", port);
    memset(w, 0, sizeof(w));
    for (i = 0; i < 64; i++) {
        pthread_mutex_init(&w[i].lock, NULL);
        pthread_cond_init(&w[i].cond, NULL);
    }
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    shed_fanout_set_runnable_fn(f, runnable_idle);
    cr_assert_eq(shed_fanout_busy_poll(f), 0, "busy_poll 0: never");
    shed_fanout_set_busy_poll(f, 150000);
    cr_assert_eq(shed_fanout_submit(f, &slow, 1, NULL, on_done, &w[0]), 0);
    /* One answer due: the spin pays on a machine with another CPU. */
    cr_assert_eq(shed_fanout_busy_poll(f), ncpu > 1 ? 150000u : 0u);
    shed_fanout_set_runnable_fn(f, runnable_crowded);
    cr_assert_eq(shed_fanout_busy_poll(f), 0, "more tasks runnable than CPUs: sleep at once");
    shed_fanout_set_runnable_fn(f, runnable_idle);
    cr_assert_eq(shed_fanout_busy_poll(f), ncpu > 1 ? 150000u : 0u, "looked again");
    /* As many answers due as CPUs: the backends want this CPU too. */
    for (i = 1; i < (size_t)ncpu && i < 64; i++)
        cr_assert_eq(shed_fanout_submit(f, &slow, 1, NULL, on_done, &w[i]), 0);
    cr_assert_eq(shed_fanout_expecting(f), i);
    if (i == (size_t)ncpu)
        cr_assert_eq(shed_fanout_busy_poll(f), 0, "%zu answers due on %ld CPUs", i, ncpu);
    shed_fanout_destroy(f);
    for (size_t k = 0; k < i; k++)
        cr_assert(w[k].done && w[k].res[0].err == -ECANCELED);
}

Test(fanout, expecting_counts_running_requests_but_not_long_polls)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    struct waiter w = {0}, lp = {0};
    char u1[64], u2[64];
    struct shed_fanout_req slow = {"GET", u1, 5000, false}, poll = {"GET", u2, 5000, true};

    snprintf(u1, sizeof(u1), "http://127.0.0.1:%u/slow", port);
    snprintf(u2, sizeof(u2), "http://127.0.0.1:%u/slow", port);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    shed_fanout_set_runnable_fn(f, runnable_idle);
    shed_fanout_set_busy_poll(f, 150000);
    cr_assert_eq(shed_fanout_expecting(f), 0);
    cr_assert_eq(shed_fanout_busy_poll(f), 0, "nothing expected: no busy poll");
    pthread_mutex_init(&lp.lock, NULL);
    pthread_cond_init(&lp.cond, NULL);
    cr_assert_eq(shed_fanout_submit(f, &poll, 1, NULL, on_done, &lp), 0);
    cr_assert_eq(shed_fanout_expecting(f), 0, "a long-poll is not expected to answer soon");
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    cr_assert_eq(shed_fanout_submit(f, &slow, 1, NULL, on_done, &w), 0);
    cr_assert_eq(shed_fanout_expecting(f), 1);
    cr_assert_eq(shed_fanout_busy_poll(f), sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 150000u : 0u);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    cr_assert_eq(w.res[0].status, 200);
    cr_assert_eq(shed_fanout_expecting(f), 0, "an answered request is no longer expected");
    cr_assert_eq(shed_fanout_busy_poll(f), 0);
    /* a cancelled one neither */
    w.done = false;
    cr_assert_eq(shed_fanout_submit(f, &slow, 1, NULL, on_done, &w), 0);
    cr_assert_eq(shed_fanout_expecting(f), 1);
    shed_fanout_destroy(f);
    cr_assert(w.done && lp.done);
    cr_assert_eq(w.res[0].err, -ECANCELED);
}

Test(fanout, connections_are_reused)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    char u[64];
    struct shed_fanout_req req = {"GET", u, 2000, false};
    int before;

    snprintf(u, sizeof(u), "http://127.0.0.1:%u/fast", port);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    before = atomic_load(&conns);
    for (int i = 0; i < 20; i++) {
        struct waiter w = {0};

        run(f, &req, 1, &w);
        cr_assert_eq(w.res[0].status, 200);
    }
    cr_assert_leq(atomic_load(&conns) - before, 2, "20 sequential requests, %d connections",
                  atomic_load(&conns) - before);
    cr_assert_eq(shed_fanout_started(f), 20);
    shed_fanout_destroy(f);
}

Test(fanout, body_cap)
{
    struct shed_fanout_config cfg = {.max_body = 1000};
    struct shed_fanout *f;
    struct waiter w = {0};
    char u[64];
    struct shed_fanout_req req = {"GET", u, 2000, false};

    snprintf(u, sizeof(u), "http://127.0.0.1:%u/big", port);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    run(f, &req, 1, &w);
    cr_assert_eq(w.res[0].status, 0);
    cr_assert_eq(w.res[0].err, -E2BIG);
    shed_fanout_destroy(f);
}

Test(fanout, answers_held_at_once_are_bounded)
{
    /* two 100000-byte answers at once do not fit in 150000 bytes */
    struct shed_fanout_config cfg = {.max_total = 150000};
    struct shed_fanout *f;
    struct waiter w = {0};
    char u[64];
    struct shed_fanout_req reqs[2] = {{"GET", u, 2000, false}, {"GET", u, 2000, false}};
    int ok = 0, big = 0;

    snprintf(u, sizeof(u), "http://127.0.0.1:%u/big", port);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    run(f, reqs, 2, &w);
    for (int i = 0; i < 2; i++) {
        ok += w.res[i].status == 200 && w.res[i].err == 0;
        big += w.res[i].err == -E2BIG;
    }
    cr_assert_eq(ok, 1);
    cr_assert_eq(big, 1);
    /* one at a time fits: nothing stays counted */
    for (int k = 0; k < 3; k++) {
        /* a batch is freed on the engine thread right after its done
         * callback */
        for (int i = 0; i < 100 && shed_fanout_held(f) > 0; i++)
            usleep(10 * 1000);
        cr_assert_eq(shed_fanout_held(f), 0, "released with the batch");
        if (k < 2) {
            run(f, reqs, 1, &w);
            cr_assert_eq(w.res[0].status, 200);
        }
    }
    shed_fanout_destroy(f);
}

Test(fanout, bad_submissions)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    struct shed_fanout_req bad[] = {{"GET", "http://127.0.0.1:1/", 0, false},
                                    {"PATCHWORKS", "http://x/", 1, false}};

    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    cr_assert_eq(shed_fanout_submit(f, bad, 0, NULL, on_done, NULL), -EINVAL);
    cr_assert_eq(shed_fanout_submit(f, &bad[0], 1, NULL, on_done, NULL), -EINVAL);
    cr_assert_eq(shed_fanout_submit(f, &bad[1], 1, NULL, on_done, NULL), -EINVAL);
    shed_fanout_destroy(f);
}

Test(fanout, destroy_cancels_running)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    struct waiter w = {0};
    char u[64];
    struct shed_fanout_req req = {"GET", u, 10000, false};

    snprintf(u, sizeof(u), "http://127.0.0.1:%u/slow", port);
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    cr_assert_eq(shed_fanout_submit(f, &req, 1, NULL, on_done, &w), 0);
    usleep(100 * 1000);
    shed_fanout_destroy(f);
    cr_assert(w.done, "done fired before destroy returned");
    cr_assert_eq(w.res[0].err, -ECANCELED);
}

Test(fanout, keepalive_connection_reused)
{
    struct shed_fanout_config cfg = {0};
    struct shed_fanout *f;
    struct waiter w = {0};
    char url[64];
    struct shed_fanout_req req = {.method = "GET", .url = url, .timeout_ms = 2000};

    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", port);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    for (int i = 0; i < 5; i++) {
        run(f, &req, 1, &w);
        cr_assert_eq(w.res[0].status, 200);
    }
    /* one connection for all five, one after the other */
    cr_assert_eq(shed_fanout_connects(f), 1);
    shed_fanout_destroy(f);
}

static void
on_done_flag(void *arg, const struct shed_fanout_res *res, size_t n)
{
    int *status = arg;

    cr_assert_eq(n, 1);
    *status = res[0].status;
}

/* Drive an external-mode engine until <status> is set (at most ~4 s). */
static void
drive(struct shed_fanout *f, const int *status)
{
    for (int i = 0; i < 200 && *status == -1; i++) {
        struct pollfd p = {.fd = shed_fanout_fd(f), .events = POLLIN};

        poll(&p, 1, 20);
        shed_fanout_run(f);
    }
}

Test(fanout, closed_connections_and_reused_socket_numbers)
{
    struct shed_fanout_config cfg = {.external = true};
    struct shed_fanout *f;
    char url[64];
    struct shed_fanout_req req = {.method = "GET", .url = url, .timeout_ms = 2000};

    /* Every answer closes its connection, so each request opens a new
     * socket, which usually gets the number of the one just closed: its
     * epoll registration must start clean every time. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/close", port);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    for (int k = 0; k < 20; k++) {
        int status = -1;
        uint64_t t0 = clock_mono_ns();

        cr_assert_eq(shed_fanout_submit(f, &req, 1, NULL, on_done_flag, &status), 0);
        drive(f, &status);
        cr_assert_eq(status, 200, "request %d", k);
        cr_assert_lt(clock_mono_ns() - t0, 1000000000ull, "request %d waited for its timeout", k);
    }
    cr_assert_eq(shed_fanout_connects(f), 20);
    shed_fanout_destroy(f);
}

Test(fanout, socket_closed_while_connecting_leaves_no_stale_state)
{
    struct shed_fanout_config cfg = {.external = true, .connect_timeout_ms = 200};
    struct shed_fanout *f;
    char url[64];
    struct shed_fanout_req req = {.method = "GET", .url = url, .timeout_ms = 1000};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sa);
    int ls, fill[4], status = -1;

    /* A listener that never accepts, its queue full: a connect to it
     * waits (for writability) until the connect timeout closes it. */
    ls = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(ls >= 0);
    cr_assert_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(ls, 0), 0);
    cr_assert_eq(getsockname(ls, (struct sockaddr *)&sa, &slen), 0);
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
    }
    usleep(50 * 1000);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", ntohs(sa.sin_port));
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    cr_assert_eq(shed_fanout_submit(f, &req, 1, NULL, on_done_flag, &status), 0);
    drive(f, &status);
    cr_assert_eq(status, 0, "the connect must fail, got %d", status);
    /* The next connection most likely gets the same socket number and
     * also starts by waiting for writability. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", port);
    status = -1;
    uint64_t t0 = clock_mono_ns();
    cr_assert_eq(shed_fanout_submit(f, &req, 1, NULL, on_done_flag, &status), 0);
    drive(f, &status);
    cr_assert_eq(status, 200);
    cr_assert_lt(clock_mono_ns() - t0, 150000000ull, "took %.0f ms",
                 (double)(clock_mono_ns() - t0) / 1e6);
    shed_fanout_destroy(f);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(ls);
}

Test(fanout, external_mode_driven_by_caller)
{
    struct shed_fanout_config cfg = {.external = true};
    struct shed_fanout *f;
    char url[64];
    struct shed_fanout_req req = {.method = "POST", .url = url, .timeout_ms = 2000};
    int status = -1;

    snprintf(url, sizeof(url), "http://127.0.0.1:%u/method", port);
    cr_assert_eq(shed_fanout_create(&cfg, &f), 0);
    cr_assert_eq(shed_fanout_submit(f, &req, 1, NULL, on_done_flag, &status), 0);
    /* No engine thread: nothing completes unless this thread runs it. */
    drive(f, &status);
    cr_assert_eq(status, 200);
    shed_fanout_destroy(f);
}
