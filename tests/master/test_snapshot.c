/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for shed/snapshot: write then load, missing file, corrupt and
 * truncated files, a file over the size bound, no temp file left behind.
 */
#include "shed/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "entry.h"
static char dir[64];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/shed-snap-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[512];

    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || de->d_name[1] == '.'))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

static void
put_file(const char *name, const char *text, size_t len)
{
    char p[512];
    FILE *f;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
}

static size_t
count_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

TestSuite(snapshot, .init = setup, .fini = teardown);

Test(snapshot, write_then_load)
{
    struct proto_sync_msg m, l;
    struct proto_sync_entry e;
    uint64_t age = 99;

    proto_sync_msg_init(&m);
    m.kind = PROTO_SYNC_FULL;
    snprintf(m.cell, sizeof(m.cell), "a");
    m.seq = 42;
    e = test_entry("burrow", "b1", "http://127.0.0.1:9001", 100);
    e.incarnation = 7;
    cr_assert_eq(proto_sync_msg_add(&m, &e), 0);
    cr_assert_eq(shed_snapshot_write(dir, SHED_SNAPSHOT_NAME, &m), 0);
    /* Overwrite atomically with a second version. */
    m.seq = 43;
    cr_assert_eq(shed_snapshot_write(dir, SHED_SNAPSHOT_NAME, &m), 0);
    cr_assert_eq(count_files(), 1, "no temp file left behind");
    cr_assert_eq(shed_snapshot_load(dir, SHED_SNAPSHOT_NAME, 0, &l, &age), 0);
    cr_assert_eq(age, 0);
    cr_assert_eq(l.seq, 43);
    cr_assert_eq(l.nentries, 1);
    cr_assert_str_eq(l.entries[0].id, "b1");
    cr_assert_eq(l.entries[0].incarnation, 7);
    proto_sync_msg_free(&l);
    proto_sync_msg_free(&m);
}

Test(snapshot, missing_is_enoent)
{
    struct proto_sync_msg l;

    cr_assert_eq(shed_snapshot_load(dir, SHED_SNAPSHOT_NAME, 0, &l, NULL), -ENOENT);
    cr_assert_eq(l.entries, NULL);
    cr_assert_neq(shed_snapshot_load("/nonexistent-dir-shed", "x", 0, &l, NULL), 0);
}

Test(snapshot, corrupt_truncated_and_wrong_kind)
{
    static const char good[] = "{\"v\":1,\"kind\":\"full\",\"epoch\":1,\"since\":0,\"seq\":1,"
                               "\"lease_ms\":1,\"entries\":[]}";
    struct proto_sync_msg l;

    put_file("s", "garbage", 7);
    cr_assert_eq(shed_snapshot_load(dir, "s", 0, &l, NULL), -PROTO_SYNC_EBADJSON);
    put_file("s", good, sizeof(good) - 10);
    cr_assert_eq(shed_snapshot_load(dir, "s", 0, &l, NULL), -PROTO_SYNC_EBADJSON);
    put_file("s", "", 0);
    cr_assert_lt(shed_snapshot_load(dir, "s", 0, &l, NULL), 0);
    static const char delta[] = "{\"v\":1,\"kind\":\"delta\",\"epoch\":1,\"since\":0,"
                                "\"seq\":1,\"lease_ms\":1,\"entries\":[]}";
    put_file("s", delta, sizeof(delta) - 1);
    cr_assert_eq(shed_snapshot_load(dir, "s", 0, &l, NULL), -PROTO_SYNC_EBADFIELD);
    put_file("s", good, sizeof(good) - 1);
    cr_assert_eq(shed_snapshot_load(dir, "s", 0, &l, NULL), 0);
    proto_sync_msg_free(&l);
}

Test(snapshot, size_bound)
{
    char p[512];
    FILE *f;

    snprintf(p, sizeof(p), "%s/big", dir);
    f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, (long)SHED_SNAPSHOT_MAX, SEEK_SET), 0);
    fputc('x', f);
    fclose(f);
    struct proto_sync_msg l;
    cr_assert_eq(shed_snapshot_load(dir, "big", 0, &l, NULL), -EFBIG);
}
