/* SPDX-License-Identifier: ISC */
/*
 * common/busypoll: epoll_wait() that looks again without sleeping for a
 * bounded time before it blocks. On a VM, waking a CPU that went idle costs
 * 70 - 110 us (perf sched, docs/aggregator.md), more than a loopback backend
 * often takes to answer; a thread that expects an answer that soon keeps
 * its CPU awake instead. sched_yield() between looks lets whatever else is
 * runnable on the CPU go first, so the spin takes no CPU that other work
 * wants.
 *
 * No state, no allocation. Thread-safe.
 */
#ifndef COMMON_BUSYPOLL_H
#define COMMON_BUSYPOLL_H

#include <stdint.h>
#include <sys/epoll.h>

/* epoll_wait(<epfd>, <ev>, <max>, <timeout_ms>), but when <timeout_ms> is
 * not 0, first epoll_wait(..., 0) again and again for up to <spin_ns>.
 * Returns what epoll_wait() returns (-1 with errno on error). With
 * level-triggered watches the events stay ready for a later epoll_wait(). */
int busy_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms, uint64_t spin_ns);

#endif /* COMMON_BUSYPOLL_H */
