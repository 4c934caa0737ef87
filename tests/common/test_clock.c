/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for common/clock: the units agree with each other, monotonic
 * time does not go back, and deadlines are normalised and in the future.
 */
#include "common/clock.h"

#include <criterion/criterion.h>

Test(clock, units_agree)
{
    uint64_t ms = clock_mono_ms(), ns = clock_mono_ns();
    double s = clock_mono_s();
    uint64_t ms2 = clock_mono_ms();

    cr_assert_geq(ns / 1000000u, ms);
    cr_assert_leq(ns / 1000000u, ms2);
    cr_assert_geq(s * 1000.0 + 1.0, (double)ms);
    cr_assert_leq(s * 1000.0, (double)ms2 + 1.0);
    cr_assert_gt(clock_real_ns(), 1500000000ull * 1000000000ull); /* after 2017 */
}

Test(clock, monotonic)
{
    uint64_t prev = clock_mono_ns();

    for (int i = 0; i < 1000; i++) {
        uint64_t now = clock_mono_ns();

        cr_assert_geq(now, prev);
        prev = now;
    }
}

Test(clock, deadline_normalised)
{
    static const uint64_t ms[] = {0, 1, 999, 1000, 1001, 2500, 86400000};

    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        struct timespec before, ts;

        clock_gettime(CLOCK_MONOTONIC, &before);
        clock_deadline(CLOCK_MONOTONIC, ms[i], &ts);
        cr_assert(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L, "ms=%llu",
                  (unsigned long long)ms[i]);
        int64_t d = ((int64_t)ts.tv_sec - before.tv_sec) * 1000000000 + ts.tv_nsec - before.tv_nsec;
        cr_assert_geq(d, (int64_t)ms[i] * 1000000, "ms=%llu", (unsigned long long)ms[i]);
        cr_assert_lt(d, (int64_t)ms[i] * 1000000 + 1000000000, "ms=%llu",
                     (unsigned long long)ms[i]);
    }
}
