/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for shed/suspect: a report asks for one probe and never makes a
 * member suspect by itself; the verdict decides (alive: reports ignored for
 * reprobe_ms; failed: suspect for hold_ms); per-client report rate; bounded
 * tables; the probe itself against a live and a dead port; host:port
 * extraction.
 */
#include "shed/suspect.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

static struct shed_suspect *
mk(void)
{
    struct shed_suspect_config c = {.hold_ms = 500, .reprobe_ms = 1000, .source_rate = 10};
    struct shed_suspect *s;

    cr_assert_eq(shed_suspect_create(&c, &s), 0);
    return s;
}

Test(suspect, one_report_asks_for_one_probe)
{
    struct shed_suspect *s = mk();

    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.1", 100), SHED_SUSPECT_PROBE);
    /* A report alone never makes a member suspect: the probe decides. */
    cr_assert(!shed_suspect_is(s, "h:1", 101));
    /* While the probe runs, more reports (any client) start no other. */
    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.1", 110), SHED_SUSPECT_COUNTED);
    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.2", 120), SHED_SUSPECT_COUNTED);
    /* Another host is probed on its own. */
    cr_assert_eq(shed_suspect_report(s, "h:2", "10.0.0.1", 130), SHED_SUSPECT_PROBE);
    shed_suspect_destroy(s);
}

Test(suspect, alive_verdict_ignores_reports_for_a_while)
{
    struct shed_suspect *s = mk();
    struct shed_suspect_stats st;

    cr_assert_eq(shed_suspect_report(s, "h:1", "a", 100), SHED_SUSPECT_PROBE);
    shed_suspect_clear(s, "h:1", 150); /* the probe found it alive */
    cr_assert(!shed_suspect_is(s, "h:1", 151));
    /* Forged reports right after: no probe, so no amplification. */
    for (uint64_t t = 0; t < 9; t++)
        cr_assert_eq(shed_suspect_report(s, "h:1", "b", 200 + t), SHED_SUSPECT_COUNTED);
    cr_assert_eq(shed_suspect_report(s, "h:1", "b", 1150), SHED_SUSPECT_PROBE);
    shed_suspect_stats(s, &st);
    cr_assert_eq(st.probes, 2);
    cr_assert_eq(st.confirmed, 0);
    shed_suspect_destroy(s);
}

Test(suspect, failed_verdict_holds_then_ends)
{
    struct shed_suspect *s = mk();

    cr_assert_eq(shed_suspect_report(s, "h:1", "a", 100), SHED_SUSPECT_PROBE);
    shed_suspect_confirm(s, "h:1", 200);
    cr_assert(shed_suspect_is(s, "h:1", 699));
    cr_assert_eq(shed_suspect_report(s, "h:1", "c", 300), SHED_SUSPECT_ALREADY);
    cr_assert_eq(shed_suspect_count(s, 301), 1);
    cr_assert(!shed_suspect_is(s, "h:1", 700));
    /* Held out: a new report is verified afresh. */
    cr_assert_eq(shed_suspect_report(s, "h:1", "c", 800), SHED_SUSPECT_PROBE);
    shed_suspect_destroy(s);
}

Test(suspect, abandoned_probe_can_be_asked_again)
{
    struct shed_suspect *s = mk();

    cr_assert_eq(shed_suspect_report(s, "h:1", "a", 100), SHED_SUSPECT_PROBE);
    shed_suspect_abandon(s, "h:1");
    cr_assert(!shed_suspect_is(s, "h:1", 101));
    cr_assert_eq(shed_suspect_report(s, "h:1", "a", 102), SHED_SUSPECT_PROBE);
    shed_suspect_destroy(s);
}

Test(suspect, per_source_rate)
{
    struct shed_suspect *s = mk();
    struct shed_suspect_stats st;
    char h[32];

    for (int i = 0; i < 10; i++) {
        snprintf(h, sizeof(h), "h:%d", i);
        cr_assert_eq(shed_suspect_report(s, h, "10.0.0.9", 100), SHED_SUSPECT_PROBE);
    }
    /* The 11th report of that client within the second is dropped ... */
    cr_assert_eq(shed_suspect_report(s, "h:99", "10.0.0.9", 500), -EBUSY);
    /* ... another client's is not, and the next second it may again. */
    cr_assert_eq(shed_suspect_report(s, "h:99", "10.0.0.8", 500), SHED_SUSPECT_PROBE);
    cr_assert_eq(shed_suspect_report(s, "h:98", "10.0.0.9", 1100), SHED_SUSPECT_PROBE);
    shed_suspect_stats(s, &st);
    cr_assert_eq(st.limited, 1);
    cr_assert_eq(st.reports, 13);
    shed_suspect_destroy(s);
}

Test(suspect, bad_input)
{
    struct shed_suspect *s = mk();
    char big[SHED_SUSPECT_HOST_MAX + 1];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(shed_suspect_report(s, "", "a", 1), -EINVAL);
    cr_assert_eq(shed_suspect_report(s, big, "a", 1), -EINVAL);
    cr_assert_eq(shed_suspect_report(s, "h:1", "", 1), -EINVAL);
    shed_suspect_destroy(s);
}

Test(suspect, tables_are_bounded)
{
    struct shed_suspect *s = mk();
    char h[32], c[32];

    /* Hosts: every slot busy probing, a new host finds no room. */
    for (int i = 0; i < SHED_SUSPECT_MAX_HOSTS; i++) {
        snprintf(h, sizeof(h), "h:%d", i);
        snprintf(c, sizeof(c), "10.1.%d.%d", i / 256, i % 256);
        cr_assert_eq(shed_suspect_report(s, h, c, 10), SHED_SUSPECT_PROBE);
    }
    cr_assert_eq(shed_suspect_report(s, "new:1", "10.9.9.9", 20), -ENOSPC);
    /* Once verdicts are in and time passed, slots are reused. */
    for (int i = 0; i < SHED_SUSPECT_MAX_HOSTS; i++) {
        snprintf(h, sizeof(h), "h:%d", i);
        shed_suspect_clear(s, h, 30);
    }
    cr_assert_eq(shed_suspect_report(s, "new:1", "10.9.9.9", 5000), SHED_SUSPECT_PROBE);
    /* Sources: more client addresses than slots still works (oldest reused). */
    for (int i = 0; i < SHED_SUSPECT_MAX_SOURCES + 10; i++) {
        snprintf(c, sizeof(c), "10.2.%d.%d", i / 256, i % 256);
        cr_assert_geq(shed_suspect_report(s, "new:1", c, 6000 + (uint64_t)i), 0);
    }
    shed_suspect_destroy(s);
}

/* A one-shot HTTP server on a loopback port for the probe. */
static void *
serve_once(void *arg)
{
    int fd = *(int *)arg, c;
    char buf[1024];
    static const char resp[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

    c = accept(fd, NULL, NULL);
    if (c >= 0) {
        (void)!read(c, buf, sizeof(buf));
        (void)!write(c, resp, sizeof(resp) - 1);
        close(c);
    }
    return NULL;
}

static int
listener(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t l = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

struct done {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n;
    bool alive;
};

static void
on_done(void *arg, const char *hostport, bool alive)
{
    struct done *d = arg;

    (void)hostport;
    pthread_mutex_lock(&d->lock);
    d->n++;
    d->alive = alive;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

Test(suspect, probe_live_and_dead)
{
    int port, fd = listener(&port);
    char url[64];
    pthread_t th;
    struct shed_suspect *s = mk();
    struct done d = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    pthread_create(&th, NULL, serve_once, &fd);
    cr_assert_eq(shed_suspect_probe_start(s, on_done, &d), 0);
    cr_assert_eq(shed_suspect_probe(s, "x:1", url), 0);
    pthread_mutex_lock(&d.lock);
    while (d.n < 1)
        pthread_cond_wait(&d.cond, &d.lock);
    cr_assert(d.alive, "a 404 is an answer: alive");
    pthread_mutex_unlock(&d.lock);
    pthread_join(th, NULL);
    close(fd); /* now nothing listens there */
    cr_assert_eq(shed_suspect_probe(s, "x:1", url), 0);
    pthread_mutex_lock(&d.lock);
    while (d.n < 2)
        pthread_cond_wait(&d.cond, &d.lock);
    cr_assert(!d.alive);
    pthread_mutex_unlock(&d.lock);
    shed_suspect_destroy(s);
}

Test(suspect, report_in_the_pause_is_probed_when_it_ends)
{
    struct shed_suspect *s = mk();
    char due[4][SHED_SUSPECT_HOST_MAX];

    cr_assert_eq(shed_suspect_report(s, "h:1", "a", 100), SHED_SUSPECT_PROBE);
    shed_suspect_clear(s, "h:1", 150); /* alive */
    cr_assert_eq(shed_suspect_due(s, 200, due, 4), 0);
    cr_assert_eq(shed_suspect_report(s, "h:1", "b", 300), SHED_SUSPECT_COUNTED);
    cr_assert_eq(shed_suspect_due(s, 1000, due, 4), 0, "still in the pause");
    cr_assert_eq(shed_suspect_due(s, 1150, due, 4), 1);
    cr_assert_str_eq(due[0], "h:1");
    cr_assert_eq(shed_suspect_due(s, 1160, due, 4), 0, "once");
    cr_assert_eq(shed_suspect_report(s, "h:1", "c", 1170), SHED_SUSPECT_COUNTED, "probing");
    shed_suspect_destroy(s);
}
