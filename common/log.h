/* SPDX-License-Identifier: ISC */
/*
 * common/log: the OpenBSD logging vocabulary for the daemons and tools.
 * Lines go to stderr with an sd-daemon "<N>" priority prefix, which journald
 * turns into a syslog priority. Thread-safe (one fprintf per line).
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdbool.h>

/* <name> prefixes every line ("shed", "burrowd"); <debug> enables log_debug. */
void log_init(const char *name, bool debug);
void log_set_debug(bool debug);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* + strerror(errno) */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Only before a daemon serves: log and exit(1). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif /* COMMON_LOG_H */
