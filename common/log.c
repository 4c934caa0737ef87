/* SPDX-License-Identifier: ISC */
/*
 * Logging to stderr. Under journald (JOURNAL_STREAM names our stderr) a line
 * is "<N>name: message", the sd-daemon priority prefix journald turns into a
 * priority, and journald adds the time. Anywhere else (a terminal, a file,
 * deploy/local's logs) a line is "2025-06-01T12:00:00.123Z name: warning:
 * message": an ISO 8601 UTC timestamp and the level in words. Each line is
 * formatted into one buffer and written with a single fputs so that lines
 * from several threads never interleave.
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

static const char *log_name = "shed";
static bool log_debug_on;
static int log_journal = -1; /* -1: not decided yet */

bool
log_to_journald(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    /* systemd sets "DEV:INODE" of the stream it connected; a child whose
     * stderr was redirected elsewhere inherits the variable but not the
     * stream, so compare. */
    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(STDERR_FILENO, &st) == -1)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *name, bool debug)
{
    log_name = name;
    log_debug_on = debug;
    log_journal = log_to_journald();
}

void
log_set_debug(bool debug)
{
    log_debug_on = debug;
}

static void __attribute__((format(printf, 3, 0)))
vlog(int prio, const char *err, const char *fmt, va_list ap)
{
    static const char *const words[8] = {"", "", "fatal: ", "", "warning: ", "", "", "debug: "};
    char line[LOG_LINE_MAX];
    int n;

    if (log_journal < 0)
        log_journal = log_to_journald();
    if (log_journal) {
        n = snprintf(line, sizeof(line), "<%d>%s: ", prio, log_name);
    } else {
        struct timespec ts;
        struct tm tm;
        char stamp[32];

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf(line, sizeof(line), "%s.%03ldZ %s: %s", stamp, ts.tv_nsec / 1000000L, log_name,
                     words[prio & 7]);
    }
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
