/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd: membership on etcd v3 instead of the built-in peer sync
 * (`membership: {store: etcd, ...}`, docs/etcd.md).
 *
 * Writer: a heartbeat a shed accepts is also recorded here; once the member
 * proved itself (join_heartbeats) the shed writes the key
 *
 *     <prefix><cell>/<service>/<id>/<shed>   (<shed> = this shed's listen address)
 *
 * with the member record (JSON, proto/sync entry fields) under this shed's
 * own etcd lease, kept alive while the shed runs. When the member misses
 * its lease here the shed deletes its key; a deregistration writes the
 * record as "gone" and then deletes it. Changes made while etcd is
 * unreachable wait in a bounded table and are written on return.
 *
 * Reader: every shed of the cell (line, aggregator) loads the cell's keys
 * with one range at a revision, then watches from the next revision,
 * resuming after a disconnect from the last revision it saw (a full reload
 * only when etcd says that revision was compacted). A member is up while at
 * least one shed's key for it exists (the highest incarnation's record; "gone"
 * wins a tie); the last key deleted makes it down, so the registry's own
 * evict_after, evict cap and "never evict the last members" rules still
 * apply. What etcd holds is fed to the registry with registry_apply() and
 * refreshed every third of a lease, so while etcd is unreachable the shed
 * routes on its last view (shed_etcd_up 0 in /metrics, a log line) and
 * resyncs when it returns.
 *
 * The HTTP/JSON gateway of etcd 3.4 (/v3/kv/range, /v3/kv/put,
 * /v3/kv/deleterange, /v3/lease/grant, /v3/lease/keepalive, /v3/watch),
 * libcurl and jansson, one thread. Process-wide state, one daemon per
 * process, like shed/cluster. Functions are thread-safe.
 *
 * The view (struct shed_etcd_view) is the reader's pure part, exposed for
 * tests: it owns copies of every key's record; view functions are not
 * thread-safe (the etcd thread is their only user).
 */
#ifndef SHED_ETCD_H
#define SHED_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/heartbeat.h"
#include "proto/sync.h"
#include "shed/config.h"

struct registry;

#define SHED_ETCD_KEY_MAX 1024 /* bytes of one key, incl. NUL */

/* Start the etcd thread for <cfg> (membership.store etcd): <reg> is fed
 * from the watch; <origin> ("http://host:port") names this shed's keys.
 * The first range is tried before returning (at most membership.timeout),
 * so a shed that can reach etcd starts warm. 0 or a negative errno. */
int shed_etcd_start(struct registry *reg, const struct shed_config *cfg, const char *origin);

/* Stop the thread, revoke this shed's lease (its keys go at once), free
 * everything. A no-op when not started. */
void shed_etcd_stop(void);

/* Is the etcd mode running (false in the built-in mode)? */
bool shed_etcd_running(void);

/* A heartbeat <hb> the registry accepted at <now>. */
void shed_etcd_heartbeat(const struct proto_heartbeat *hb, uint64_t now);

/* A deregistration the registry accepted. */
void shed_etcd_deregister(const char *service, size_t slen, const char *id, size_t idlen,
                          uint64_t incarnation, uint64_t now);

/* This shed's probe found <hostport> dead (a client's failure report,
 * docs/masters.md): every member there is written "down" so that the
 * cell's other sheds skip it now, as the peer sync would tell them. */
void shed_etcd_probe_failed(const char *hostport, uint64_t now);

/* Prometheus text (shed_etcd_*) into <buf>; returns the length ("" and 0
 * when not running). */
size_t shed_etcd_metrics(char *buf, size_t len);

/* ---- pure parts, for tests ---- */

/* Standard base64 with padding (the gateway's encoding of bytes). encode
 * returns the length or -ERANGE; decode the length or -EINVAL / -ERANGE. */
long shed_etcd_b64_encode(const void *in, size_t n, char *out, size_t outlen);
long shed_etcd_b64_decode(const char *s, size_t len, void *out, size_t outlen);

/* The record of <e> written by shed <shed> as a malloc'd JSON string, or
 * NULL. And back: 0 or -EINVAL (the service and id come from the key and
 * are checked against it by the caller). */
char *shed_etcd_value_encode(const struct proto_sync_entry *e, const char *shed);
int shed_etcd_value_decode(const char *buf, size_t len, struct proto_sync_entry *e);

/* A key below the cell's base, "<service>/<id>/<shed>", split into its
 * parts (NUL-terminated copies). 0 or -EINVAL. */
int shed_etcd_key_split(const char *rel, size_t len, char *service, size_t slen, char *id,
                        size_t idlen);

struct shed_etcd_view;

struct shed_etcd_view *shed_etcd_view_create(void);
void shed_etcd_view_destroy(struct shed_etcd_view *v);

/* Keys held. */
size_t shed_etcd_view_size(const struct shed_etcd_view *v);

/* A PUT of <rel> with record <e> at revision <rev>. Adds the member's
 * resulting entry to <out> (to be applied). 0 or -ENOMEM / -EINVAL. */
int shed_etcd_view_put(struct shed_etcd_view *v, const char *rel, const struct proto_sync_entry *e,
                       uint64_t rev, struct proto_sync_msg *out);

/* A DELETE of <rel>: adds to <out> the member's entry from its remaining
 * keys, or "down" when none remains (nothing when it was gone). 0. */
int shed_etcd_view_delete(struct shed_etcd_view *v, const char *rel, struct proto_sync_msg *out);

/* Replace the whole view with <next> (consumed): adds to <out> every member
 * of <next> and "down" for every member only the old view had. 0. */
int shed_etcd_view_replace(struct shed_etcd_view *v, struct shed_etcd_view *next,
                           struct proto_sync_msg *out);

/* Every member's entry (gone ones left out), heard now, into <out>. 0. */
int shed_etcd_view_export(const struct shed_etcd_view *v, struct proto_sync_msg *out);

#endif /* SHED_ETCD_H */
