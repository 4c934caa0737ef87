/* SPDX-License-Identifier: ISC */
/*
 * common/cli: the command-line conventions shared by shed, shedc and
 * burrowd: --help prints the usage on stdout and exits 0, --version prints
 * "NAME VERSION", and a usage error is one line on stderr that names the
 * bad argument and points at --help (exit 2), never the whole help text.
 *
 * Stateless apart from getopt's globals; not thread-safe (main only).
 */
#ifndef COMMON_CLI_H
#define COMMON_CLI_H

#include <stdint.h>

#define CLI_EXIT_USAGE 2

/* getopt_long() returned '?' or ':' (call it with opterr = 0 and an
 * optstring that starts with ':' after any '+'): print one line naming the
 * option, e.g. "shedc: unknown option --frob (shedc --help lists them)" or
 * "burrowd: --listen needs a value". Returns CLI_EXIT_USAGE. */
int cli_bad_option(const char *prog, int ch, char *const argv[]);

/* Print "<prog>: <what>" and the --help pointer as one line; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "<prog> <version>" on stdout; returns 0. */
int cli_version(const char *prog);

/* An integer option <name> with value <s> in [<min>, <max>]; on error prints
 * one line saying why ("shedc: --retries 0: want 1..100") and returns -1. */
int cli_int(const char *prog, const char *name, const char *s, int64_t min, int64_t max,
            int64_t *out);

/* A duration option (common/duration syntax: "500ms", "2s", "1m"; a bare
 * number is in <unit_us>) in whole <unit_us>, within [<min>, <max>] of that
 * unit; on error prints one line and returns -1. */
int cli_duration(const char *prog, const char *name, const char *s, uint64_t unit_us, uint64_t min,
                 uint64_t max, uint64_t *out);

#endif /* COMMON_CLI_H */
