/* SPDX-License-Identifier: ISC */
/* Unit tests for common/duration (the one duration syntax) and common/log's
 * line format: ISO 8601 timestamps unless stderr is journald's stream. */
#include <criterion/criterion.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/duration.h"
#include "common/log.h"

Test(duration, units)
{
    uint64_t v;
    cr_assert_eq(duration_parse("500ms", 1000, &v), 0);
    cr_assert_eq(v, 500);
    cr_assert_eq(duration_parse("2s", 1000, &v), 0);
    cr_assert_eq(v, 2000);
    cr_assert_eq(duration_parse("1m", 1000000, &v), 0);
    cr_assert_eq(v, 60);
    cr_assert_eq(duration_parse("1h", 1000000, &v), 0);
    cr_assert_eq(v, 3600);
    cr_assert_eq(duration_parse("30", 1000000, &v), 0, "a bare number is in the unit");
    cr_assert_eq(v, 30);
    cr_assert_eq(duration_parse("1500ms", 1000000, &v), -EINVAL, "not whole seconds");
    cr_assert_eq(duration_parse_us("1500ms", 1000000, &v), 0);
    cr_assert_eq(v, 1500000);
    cr_assert_eq(duration_parse("2 s", 1000, &v), -EINVAL);
    cr_assert_eq(duration_parse("-1s", 1000, &v), -EINVAL);
    cr_assert_eq(duration_parse("1d", 1000, &v), -EINVAL);
    cr_assert_eq(duration_parse("99999999999999999999", 1000, &v), -ERANGE);
}

/* Log one line with stderr on a fresh file and return the file's text. */
static char *
logged(bool journal)
{
    char path[] = "/tmp/shed-log-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_neq(fd, -1);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    struct stat st;
    fstat(fd, &st);
    char js[64];
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    if (journal)
        setenv("JOURNAL_STREAM", js, 1);
    else
        setenv("JOURNAL_STREAM", "1:2", 1); /* inherited, but not our stderr */
    log_init("tlog", false);
    log_warnx("ring: node=%s down", "b1");
    log_info("hello");
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *buf = calloc(1, 4096);
    lseek(fd, 0, SEEK_SET);
    cr_assert_gt(read(fd, buf, 4095), 0);
    close(fd);
    unlink(path);
    unsetenv("JOURNAL_STREAM");
    return buf;
}

Test(log, iso_timestamps_unless_journald)
{
    regex_t re;
    char *text = logged(false);
    cr_assert_eq(regcomp(&re,
                         "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                         "tlog: warning: ring: node=b1 down\n"
                         "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z tlog: hello\n$",
                         REG_EXTENDED),
                 0);
    cr_assert_eq(regexec(&re, text, 0, NULL, 0), 0, "got: %s", text);
    regfree(&re);
    free(text);
    text = logged(true);
    cr_assert_str_eq(text, "<4>tlog: ring: node=b1 down\n<6>tlog: hello\n");
    free(text);
}
