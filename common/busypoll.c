/* SPDX-License-Identifier: ISC */
/*
 * common/busypoll: see busypoll.h.
 */
#include "common/busypoll.h"

#include <sched.h>

#include "common/clock.h"

int
busy_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms, uint64_t spin_ns)
{
    if (timeout_ms != 0 && spin_ns > 0) {
        uint64_t end = clock_mono_ns() + spin_ns;

        do {
            int n = epoll_wait(epfd, ev, max, 0);

            if (n != 0)
                return n;
            sched_yield();
        } while (clock_mono_ns() < end);
    }
    return epoll_wait(epfd, ev, max, timeout_ms);
}
