/* SPDX-License-Identifier: ISC */
/*
 * common/clock: the clock readings the daemons, the client library and the
 * benchmarks take, written once. Monotonic time is for intervals, leases and
 * timers; real time only for values that must differ across restarts (seeds,
 * epochs) and for pthread_cond_timedwait() deadlines on a default condvar.
 *
 * No state, no allocation. Thread-safe.
 */
#ifndef COMMON_CLOCK_H
#define COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t clock_mono_ms(void);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t clock_mono_ns(void);

/* CLOCK_MONOTONIC in seconds, as a double (benchmarks). */
double clock_mono_s(void);

/* CLOCK_REALTIME in nanoseconds since the epoch. */
uint64_t clock_real_ns(void);

/*
 * Store in <ts> the time <ms> milliseconds from now on clock <clk>
 * (CLOCK_REALTIME or CLOCK_MONOTONIC: whichever the condvar waited on uses),
 * normalised, for pthread_cond_timedwait().
 */
void clock_deadline(clockid_t clk, uint64_t ms, struct timespec *ts);

#endif /* COMMON_CLOCK_H */
