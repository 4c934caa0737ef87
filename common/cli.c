/* SPDX-License-Identifier: ISC */
/*
 * common/cli: one-line usage errors, --version, and the number and duration
 * arguments every program parses the same way.
 */
#include "common/cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/duration.h"
#include "common/version.h"

int
cli_usage_error(const char *prog, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s (%s --help lists the options)\n", prog, msg, prog);
    return CLI_EXIT_USAGE;
}

int
cli_bad_option(const char *prog, int ch, char *const argv[])
{
    const char *arg = optind > 0 ? argv[optind - 1] : NULL;
    char name[128];

    /* A long option (or an unknown one: optopt 0) is named as written, up
     * to its '='; a short one as -X. */
    if (arg != NULL && strncmp(arg, "--", 2) == 0)
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg, "="), arg);
    else if (optopt > 0x20 && optopt < 0x7f)
        snprintf(name, sizeof(name), "-%c", optopt);
    else
        snprintf(name, sizeof(name), "%s", arg != NULL ? arg : "?");
    if (ch == ':')
        return cli_usage_error(prog, "%s needs a value", name);
    return cli_usage_error(prog, "unknown option %s", name);
}

int
cli_version(const char *prog)
{
    printf("%s %s\n", prog, SHED_VERSION);
    return 0;
}

int
cli_int(const char *prog, const char *name, const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        cli_usage_error(prog, "%s %s: not a whole number", name, s);
        return -1;
    }
    if (v < min || v > max) {
        cli_usage_error(prog, "%s %s: want %" PRId64 "..%" PRId64, name, s, min, max);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int
cli_duration(const char *prog, const char *name, const char *s, uint64_t unit_us, uint64_t min,
             uint64_t max, uint64_t *out)
{
    const char *unit = unit_us == 1000 ? "ms" : unit_us == 1000000 ? "s" : "us";
    uint64_t v;

    if (duration_parse_us(s, unit_us, &v) < 0) {
        cli_usage_error(prog, "%s %s: not a duration like 500ms, 2s or 1m (a bare number is %s)",
                        name, s, unit);
        return -1;
    }
    if (duration_parse(s, unit_us, &v) < 0) {
        cli_usage_error(prog, "%s %s: not a whole number of %s", name, s,
                        unit_us == 1000000 ? "seconds" : "milliseconds");
        return -1;
    }
    if (v < min || v > max) {
        cli_usage_error(prog, "%s %s: want %" PRIu64 "%s..%" PRIu64 "%s", name, s, min, unit, max,
                        unit);
        return -1;
    }
    *out = v;
    return 0;
}
