/* SPDX-License-Identifier: ISC */
/*
 * shed/snapshot: atomic write (temp file, fsync, rename, fsync of the
 * directory) and validated load of the registry snapshot.
 */
#include "shed/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

static int
path_join(char *out, size_t outlen, const char *dir, const char *name, const char *suffix)
{
    int n = snprintf(out, outlen, "%s/%s%s", dir, name, suffix);

    if (n < 0 || (size_t)n >= outlen)
        return -ENAMETOOLONG;
    return 0;
}

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int
shed_snapshot_write(const char *dir, const char *name, const struct proto_sync_msg *m)
{
    char path[1024], tmp[1100];
    char *body = NULL;
    size_t len = 0;
    int fd = -1, dfd = -1, rc;

    if ((rc = path_join(path, sizeof(path), dir, name, "")) < 0)
        return rc;
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if ((rc = proto_sync_encode(m, &body, &len)) < 0)
        return rc;
    if (len > SHED_SNAPSHOT_MAX) {
        rc = -EFBIG;
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1) {
        rc = -errno;
        goto out;
    }
    if ((rc = write_all(fd, body, len)) < 0)
        goto out;
    if (fsync(fd) == -1) {
        rc = -errno;
        goto out;
    }
    if (close(fd) == -1) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) == -1) {
        rc = -errno;
        goto out;
    }
    /* Make the rename itself durable. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd != -1)
        (void)fsync(dfd);
    rc = 0;
out:
    if (fd != -1)
        close(fd);
    if (dfd != -1)
        close(dfd);
    if (rc < 0)
        (void)unlink(tmp);
    free(body);
    return rc;
}

int
shed_snapshot_load(const char *dir, const char *name, uint64_t now_ms, struct proto_sync_msg *m,
                   uint64_t *age_ms)
{
    char path[1024];
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd = -1, rc;

    proto_sync_msg_init(m);
    if ((rc = path_join(path, sizeof(path), dir, name, "")) < 0) {
        log_warnx("snapshot: %s/%s: path too long, cold start", dir, name);
        return rc;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        rc = -errno;
        if (rc == -ENOENT)
            log_info("snapshot: %s: none, cold start", path);
        else
            log_warn("snapshot: %s: open, cold start", path);
        return rc;
    }
    if (fstat(fd, &st) == -1) {
        rc = -errno;
        log_warn("snapshot: %s: stat, cold start", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > SHED_SNAPSHOT_MAX) {
        rc = -EFBIG;
        log_warnx("snapshot: %s: not a regular file or over %u bytes, cold start", path,
                  (unsigned)SHED_SNAPSHOT_MAX);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        log_warnx("snapshot: %s: out of memory, cold start", path);
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            rc = -errno;
            log_warn("snapshot: %s: read, cold start", path);
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    rc = proto_sync_decode(buf, got, m);
    if (rc < 0) {
        log_warnx("snapshot: %s: corrupt (%s), cold start", path, proto_sync_strerror(rc));
        goto out;
    }
    if (m->kind != PROTO_SYNC_FULL) {
        proto_sync_msg_free(m);
        rc = -PROTO_SYNC_EBADFIELD;
        log_warnx("snapshot: %s: not a full snapshot, cold start", path);
        goto out;
    }
    if (age_ms != NULL) {
        uint64_t mt = (uint64_t)st.st_mtim.tv_sec * 1000u + (uint64_t)st.st_mtim.tv_nsec / 1000000u;
        *age_ms = now_ms > mt ? now_ms - mt : 0;
    }
    log_info("snapshot: %s: %zu entries loaded", path, m->nentries);
    rc = 0;
out:
    if (fd != -1)
        close(fd);
    free(buf);
    return rc;
}
