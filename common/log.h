/* SPDX-License-Identifier: ISC */
/*
 * common/log: the OpenBSD logging vocabulary for the daemons and tools.
 * Lines go to stderr: under journald with an sd-daemon "<N>" priority
 * prefix, which journald turns into a syslog priority; elsewhere with an
 * ISO 8601 UTC timestamp and the level in words
 * ("2025-06-01T12:00:00.123Z shed: warning: ..."). Thread-safe (one fputs
 * per line).
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdbool.h>

/* <name> prefixes every line ("shed", "burrowd"); <debug> enables log_debug.
 * Also decides the line format (log_to_journald()). */
void log_init(const char *name, bool debug);
/* Is stderr the journald stream systemd connected (JOURNAL_STREAM holds
 * its device and inode)? */
bool log_to_journald(void);
void log_set_debug(bool debug);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* + strerror(errno) */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Only before a daemon serves: log and exit(1). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif /* COMMON_LOG_H */
