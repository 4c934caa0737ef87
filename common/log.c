/* SPDX-License-Identifier: ISC */
/*
 * Logging to stderr with sd-daemon priority prefixes. Each line is formatted
 * into one buffer and written with a single fputs so that lines from several
 * threads never interleave.
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_LINE_MAX 1024

static const char *log_name = "shed";
static bool log_debug_on;

void
log_init(const char *name, bool debug)
{
    log_name = name;
    log_debug_on = debug;
}

void
log_set_debug(bool debug)
{
    log_debug_on = debug;
}

static void __attribute__((format(printf, 3, 0)))
vlog(int prio, const char *err, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    int n = snprintf(line, sizeof(line), "<%d>%s: ", prio, log_name);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    if (m < 0)
        m = 0;
    size_t used = (size_t)n + (size_t)m;
    if (used >= sizeof(line) - 2)
        used = sizeof(line) - 2;
    if (err != NULL) {
        int e = snprintf(line + used, sizeof(line) - used, ": %s", err);
        if (e > 0)
            used += (size_t)e;
        if (used >= sizeof(line) - 2)
            used = sizeof(line) - 2;
    }
    line[used++] = '\n';
    line[used] = '\0';
    fputs(line, stderr);
}

#define LOG_BODY(prio, err)                                                                        \
    do {                                                                                           \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vlog(prio, err, fmt, ap);                                                                  \
        va_end(ap);                                                                                \
    } while (0)

void
log_warn(const char *fmt, ...)
{
    const char *err = strerror(errno);
    LOG_BODY(4, err);
}

void
log_warnx(const char *fmt, ...)
{
    LOG_BODY(4, NULL);
}

void
log_info(const char *fmt, ...)
{
    LOG_BODY(6, NULL);
}

void
log_debug(const char *fmt, ...)
{
    if (!log_debug_on)
        return;
    LOG_BODY(7, NULL);
}

void
fatal(const char *fmt, ...)
{
    const char *err = strerror(errno);
    LOG_BODY(2, err);
    exit(1);
}

void
fatalx(const char *fmt, ...)
{
    LOG_BODY(2, NULL);
    exit(1);
}
