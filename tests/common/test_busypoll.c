/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for common/busypoll: an event during the spin is seen at once,
 * the spin ends after its time and then blocks (no CPU), a timeout of 0
 * never spins.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/busypoll.h"
#include "common/clock.h"

static double
thread_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct fixture {
    int ep, efd;
};

static struct fixture
open_fixture(void)
{
    struct fixture f;
    struct epoll_event ev = {.events = EPOLLIN};

    f.ep = epoll_create1(0);
    f.efd = eventfd(0, EFD_NONBLOCK);
    cr_assert(f.ep >= 0 && f.efd >= 0);
    ev.data.fd = f.efd;
    cr_assert_eq(epoll_ctl(f.ep, EPOLL_CTL_ADD, f.efd, &ev), 0);
    return f;
}

static void
close_fixture(struct fixture *f)
{
    close(f->efd);
    close(f->ep);
}

static void *
write_later(void *arg)
{
    int fd = *(int *)arg;
    uint64_t one = 1;
    struct timespec ts = {0, 3 * 1000000L};

    nanosleep(&ts, NULL);
    if (write(fd, &one, sizeof(one)) != sizeof(one))
        return (void *)1;
    return NULL;
}

Test(busypoll, an_event_during_the_spin_is_seen)
{
    struct fixture f = open_fixture();
    struct epoll_event ev;
    pthread_t t;
    uint64_t t0 = clock_mono_ns();

    cr_assert_eq(pthread_create(&t, NULL, write_later, &f.efd), 0);
    /* spin up to 2 s: the write after 3 ms ends it */
    cr_assert_eq(busy_epoll_wait(f.ep, &ev, 1, 5000, 2000000000ull), 1);
    cr_assert_eq(ev.data.fd, f.efd);
    cr_assert_lt(clock_mono_ns() - t0, 1000000000ull, "returned when the event came");
    pthread_join(t, NULL);
    /* level-triggered: still ready for the next look */
    cr_assert_eq(busy_epoll_wait(f.ep, &ev, 1, 0, 0), 1);
    close_fixture(&f);
}

Test(busypoll, the_spin_is_bounded_then_it_sleeps)
{
    struct fixture f = open_fixture();
    struct epoll_event ev;
    uint64_t t0 = clock_mono_ns();
    double c0 = thread_cpu_ms(), cpu;

    /* 5 ms of spinning, then sleep until the 200 ms timeout */
    cr_assert_eq(busy_epoll_wait(f.ep, &ev, 1, 200, 5000000ull), 0);
    cpu = thread_cpu_ms() - c0;
    cr_assert_geq(clock_mono_ns() - t0, 200000000ull, "waited the whole timeout");
    cr_assert_lt(cpu, 100.0, "spun %.1f ms of a 200 ms wait", cpu);
    close_fixture(&f);
}

Test(busypoll, timeout_zero_never_spins)
{
    struct fixture f = open_fixture();
    struct epoll_event ev;
    uint64_t t0 = clock_mono_ns();

    cr_assert_eq(busy_epoll_wait(f.ep, &ev, 1, 0, 2000000000ull), 0);
    cr_assert_lt(clock_mono_ns() - t0, 500000000ull);
    close_fixture(&f);
}
