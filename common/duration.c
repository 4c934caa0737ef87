/* SPDX-License-Identifier: ISC */
/*
 * common/duration: "500ms", "2s", "1m" and friends, shared by the shed
 * config, burrowd, `shed announce` and shedc so that every duration is
 * written the same way.
 */
#include "common/duration.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

int
duration_parse_us(const char *s, uint64_t bare_us, uint64_t *us)
{
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {
        {"us", 1}, {"ms", 1000}, {"s", 1000000}, {"m", 60000000}, {"h", 3600000000},
    };
    const char *p = s;
    uint64_t v = 0, mul = 0;

    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '\0')
        mul = bare_us;
    for (size_t i = 0; mul == 0 && i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(p, units[i].suffix) == 0)
            mul = units[i].mul;
    if (mul == 0)
        return -EINVAL;
    if (v > UINT64_MAX / mul)
        return -ERANGE;
    *us = v * mul;
    return 0;
}

int
duration_parse(const char *s, uint64_t unit_us, uint64_t *out)
{
    uint64_t us;
    int rc = duration_parse_us(s, unit_us, &us);

    if (rc < 0)
        return rc;
    if (unit_us == 0 || us % unit_us != 0)
        return -EINVAL;
    *out = us / unit_us;
    return 0;
}
