/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for shed/suspect: one client alone cannot make a member
 * suspect, two distinct clients within the window can, old reports expire,
 * a probe that succeeds clears, one that fails holds for hold_ms; the probe
 * itself against a live and a dead port; host:port extraction.
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
    struct shed_suspect_config c = {.quorum = 2, .window_ms = 1000, .hold_ms = 500};
    struct shed_suspect *s;

    cr_assert_eq(shed_suspect_create(&c, &s), 0);
    return s;
}

Test(suspect, one_client_cannot)
{
    struct shed_suspect *s = mk();

    for (uint64_t t = 0; t < 50; t++)
        cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.1", 100 + t), SHED_SUSPECT_COUNTED);
    cr_assert(!shed_suspect_is(s, "h:1", 200));
    shed_suspect_destroy(s);
}

Test(suspect, two_clients_can_then_probe_clears)
{
    struct shed_suspect *s = mk();

    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.1", 100), SHED_SUSPECT_COUNTED);
    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.2", 150), SHED_SUSPECT_NEW);
    cr_assert(shed_suspect_is(s, "h:1", 151));
    cr_assert(!shed_suspect_is(s, "h:2", 151));
    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.3", 160), SHED_SUSPECT_ALREADY);
    cr_assert_eq(shed_suspect_count(s, 161), 1);
    shed_suspect_clear(s, "h:1");
    cr_assert(!shed_suspect_is(s, "h:1", 170));
    /* Reports before the clear no longer count. */
    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.1", 180), SHED_SUSPECT_COUNTED);
    shed_suspect_destroy(s);
}

Test(suspect, window_expires_reports)
{
    struct shed_suspect *s = mk();

    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.1", 100), SHED_SUSPECT_COUNTED);
    cr_assert_eq(shed_suspect_report(s, "h:1", "10.0.0.2", 100 + 1001), SHED_SUSPECT_COUNTED);
    cr_assert(!shed_suspect_is(s, "h:1", 1200));
    shed_suspect_destroy(s);
}

Test(suspect, confirm_holds_then_ends)
{
    struct shed_suspect *s = mk();

    shed_suspect_report(s, "h:1", "a", 100);
    cr_assert_eq(shed_suspect_report(s, "h:1", "b", 100), SHED_SUSPECT_NEW);
    shed_suspect_confirm(s, "h:1", 200);
    cr_assert(shed_suspect_is(s, "h:1", 699));
    cr_assert(!shed_suspect_is(s, "h:1", 700));
    cr_assert_eq(shed_suspect_report(s, "h:1", "c", 800), SHED_SUSPECT_COUNTED);
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

Test(suspect, table_is_bounded)
{
    struct shed_suspect *s = mk();
    char h[32];

    for (int i = 0; i < SHED_SUSPECT_MAX_HOSTS; i++) {
        snprintf(h, sizeof(h), "h:%d", i);
        cr_assert_geq(shed_suspect_report(s, h, "a", 10), 0);
    }
    cr_assert_eq(shed_suspect_report(s, "new:1", "a", 20), -ENOSPC);
    /* Once the old reports are outside the window their slots are reused. */
    cr_assert_eq(shed_suspect_report(s, "new:1", "a", 5000), SHED_SUSPECT_COUNTED);
    shed_suspect_destroy(s);
}

Test(suspect, hostport)
{
    char out[64];

    cr_assert_eq(shed_suspect_hostport("http://127.0.0.1:9001", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "127.0.0.1:9001");
    cr_assert_eq(shed_suspect_hostport("http://h/x?y", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "h:80");
    cr_assert_eq(shed_suspect_hostport("http://[::1]:81/", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "[::1]:81");
    cr_assert_eq(shed_suspect_hostport("http://[::1]", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "[::1]:80");
    cr_assert_eq(shed_suspect_hostport("ftp://h", out, sizeof(out)), -EINVAL);
    cr_assert_eq(shed_suspect_hostport("http://abcdefgh:1", out, 5), -ERANGE);
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
