/* SPDX-License-Identifier: ISC */
/*
 * common/duration: the one duration syntax of configs and command lines:
 * a whole number with a unit, "200us", "500ms", "2s", "1m", "1h". A bare
 * number is in the unit of the setting that reads it (milliseconds in the
 * shed config, seconds for Burrow's ttl, hide and wait), so that old
 * command lines keep their meaning.
 *
 * Pure functions, thread-safe.
 */
#ifndef COMMON_DURATION_H
#define COMMON_DURATION_H

#include <stdint.h>

/* <s> in microseconds into *<us>; a bare number counts <bare_us>
 * microseconds. 0, -EINVAL (not a duration) or -ERANGE (overflow). */
int duration_parse_us(const char *s, uint64_t bare_us, uint64_t *us);

/* <s> in whole units of <unit_us> microseconds (1000: milliseconds,
 * 1000000: seconds); a bare number is in that unit. -EINVAL also when <s>
 * is not a whole number of units ("1500ms" for seconds). */
int duration_parse(const char *s, uint64_t unit_us, uint64_t *out);

#endif /* COMMON_DURATION_H */
