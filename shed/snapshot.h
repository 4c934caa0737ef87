/* SPDX-License-Identifier: ISC */
/*
 * shed/snapshot: the registry snapshot in the state directory, so that a
 * restarted shed can serve at once (as "unconfirmed" for one lease) instead
 * of waiting for every backend to heartbeat again.
 *
 * The file holds one proto/sync message of kind "full". Writing is atomic:
 * a temporary file in the same directory is written, fsync'd and renamed
 * over the old one, then the directory is fsync'd, so a crash leaves either
 * the old snapshot or the new one, never half of one. Loading validates the
 * whole message (proto_sync_decode) and its size; a missing or corrupt file
 * means a cold start, with one log line saying why.
 *
 * Ownership: load fills a caller-owned struct proto_sync_msg (free it with
 * proto_sync_msg_free()). Thread-safe as long as two threads do not write
 * the same file at once.
 */
#ifndef SHED_SNAPSHOT_H
#define SHED_SNAPSHOT_H

#include <stdint.h>

#include "proto/sync.h"

#define SHED_SNAPSHOT_NAME "registry.json"
#define SHED_SNAPSHOT_MAX  PROTO_SYNC_BODY_MAX /* bytes in a snapshot file */

/* Encode <m> and write it atomically to <dir>/<name>. 0 or a negative errno
 * (-EFBIG over SHED_SNAPSHOT_MAX, -ENAMETOOLONG, the errno of a failed
 * syscall, or a -PROTO_SYNC_* code). */
int shed_snapshot_write(const char *dir, const char *name, const struct proto_sync_msg *m);

/* Load <dir>/<name> into <m>. *<age_ms> (may be NULL) receives how long ago
 * the file was written, by its mtime and <now_ms> (unix milliseconds).
 * Returns 0; -ENOENT when there is none; -EFBIG; -PROTO_SYNC_* when corrupt;
 * another negative errno on I/O errors. Every failure logs one line that
 * ends in "cold start". */
int shed_snapshot_load(const char *dir, const char *name, uint64_t now_ms, struct proto_sync_msg *m,
                       uint64_t *age_ms);

#endif /* SHED_SNAPSHOT_H */
