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
 * Master (`roles: [master]` with membership store etcd): one watch of the
 * whole prefix, every cell's keys (range at a revision, watch from the next,
 * resumed after a disconnect, reloaded after a compaction), fed per cell to
 * shed/master with shed_master_feed() and refreshed every third of a lease,
 * so a master knows every cell without any line shed pushing to it. The
 * cells' records (<prefix>~cells/<cell>/<shed> -> {"aggregator": URL},
 * written by the cell's sheds under their lease) give it the aggregators.
 *
 * Hints (docs/reachability.md) in etcd: a master writes each escalated PUT
 * as <prefix>~hints/<cell>/<seq>-<master> under a lease of
 * SHED_ETCD_HINT_TTL_S (never kept alive: hints outlive their master), at
 * most SHED_HINTS_MAX per cell; the home cell's aggregator reads them with a
 * range (oldest first) and deletes each it brought home. '~' is not a
 * character of cell names and sorts after all of them, so these keys never
 * mix with a cell's.
 *
 * The HTTP/JSON gateway of etcd 3.4 (/v3/kv/range, /v3/kv/put,
 * /v3/kv/deleterange, /v3/lease/grant, /v3/lease/keepalive, /v3/watch),
 * libcurl and jansson, one thread per struct shed_etcd, which the caller
 * creates and destroys (the daemon's cluster holds one per role that needs
 * it: shed_cluster_etcd()). No process-wide state. Functions are
 * thread-safe.
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

#include <jansson.h>

#include "proto/burrow.h"
#include "proto/heartbeat.h"
#include "proto/sync.h"
#include "shed/config.h"

struct registry;

#define SHED_ETCD_KEY_MAX 1024 /* bytes of one key, incl. NUL */

#define SHED_ETCD_CELLS_DIR  "~cells/" /* <prefix>~cells/<cell>/<shed> */
#define SHED_ETCD_HINTS_DIR  "~hints/" /* <prefix>~hints/<cell>/<seq>-<master> */
#define SHED_ETCD_HINT_TTL_S 3600      /* a hint's lease */

struct shed_etcd;
struct shed_master;

/* A line shed's or aggregator's client for <cfg> (membership.store etcd):
 * <reg> is fed from the watch of <prefix><cell>/; <origin>
 * ("http://host:port") names this shed's keys. The first range is tried
 * before returning (at most membership.timeout), so a shed that can reach
 * etcd starts warm. 0 or a negative errno. <reg> and <m> must outlive it. */
int shed_etcd_create(struct registry *reg, const struct shed_config *cfg, const char *origin,
                     struct shed_etcd **out);

/* A master's client: every cell under <prefix> fed to <m>
 * (shed_master_feed), escalation hints written with shed_etcd_hint_add(). */
int shed_etcd_create_master(struct shed_master *m, const struct shed_config *cfg,
                            const char *origin, struct shed_etcd **out);

/* Stop the thread, revoke a line shed's lease (its keys go at once; a
 * master's hints stay), free everything. NULL is a no-op. */
void shed_etcd_destroy(struct shed_etcd *e);

/* SIGHUP: a changed endpoint list, prefix, cell, timeout, lease TTL,
 * timings.lease, join_heartbeats or aggregator restarts the client (the
 * keys move to the new place, every member this shed keeps is written
 * again, the view is loaded again); queue alone just changes the bound.
 * A switch to the built-in store is refused (logged): -EINVAL. 0 otherwise.
 * <cfg> is copied. NULL <e> is a no-op. */
int shed_etcd_reconfigure(struct shed_etcd *e, const struct shed_config *cfg);

/* A heartbeat <hb> the registry accepted at <now> (a no-op for NULL or a
 * master's client; so are the two below). */
void shed_etcd_note_heartbeat(struct shed_etcd *e, const struct proto_heartbeat *hb, uint64_t now);

/* A deregistration the registry accepted. */
void shed_etcd_note_deregister(struct shed_etcd *e, const char *service, size_t slen,
                               const char *id, size_t idlen, uint64_t incarnation, uint64_t now);

/* This shed's probe found <hostport> dead (a client's failure report,
 * docs/masters.md): every member there is written "down" so that the
 * cell's other sheds skip it now, as the peer sync would tell them. */
void shed_etcd_note_probe_failed(struct shed_etcd *e, const char *hostport, uint64_t now);

/* Prometheus text (shed_etcd_*) into <buf>; returns the length ("" and 0
 * for NULL). */
size_t shed_etcd_stats(struct shed_etcd *e, char *buf, size_t len);

/* Master: remember an escalated PUT of <path> for <service> from <cell>,
 * sent to <url> (queued; the etcd thread writes it). 0, -EINVAL (not a
 * master's client), -ENOSPC (queue full: dropped, counted), -ENOMEM. */
int shed_etcd_hint_add(struct shed_etcd *e, const char *cell, const char *service, const char *path,
                       const char *url, uint64_t now_ms);

/* Line shed or aggregator: the oldest hints of this shed's cell in etcd,
 * at most <limit> (<= SHED_HINTS_PAGE_MAX), as {hints: [{key, seq, service,
 * path, url, age_ms}]} (the HTTP endpoint's shape plus the key); NULL when
 * etcd did not answer. Blocking (at most membership.timeout per endpoint):
 * call it from a background thread, not the etcd one. */
json_t *shed_etcd_hints_fetch(struct shed_etcd *e, size_t limit, uint64_t now_ms);

/* Delete hint <key> (brought home). 0, -ENOENT (already gone), -EINVAL
 * (not a hint of this cell), -EIO / -EPROTO (etcd). */
int shed_etcd_hint_done(struct shed_etcd *e, const char *key);

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

/* "down" into <out> for every member of <v> that <next> does not have,
 * from key index *<pos> on, until <out> holds PROTO_SYNC_MAX_ENTRIES or
 * <v> ends; *<pos> is where the next call goes on (shed_etcd_view_size(v)
 * when done). 0. */
int shed_etcd_view_downs_at(const struct shed_etcd_view *v, const struct shed_etcd_view *next,
                            size_t *pos, struct proto_sync_msg *out);

/* Every member's entry (gone ones left out), heard now, into <out>. 0. */
int shed_etcd_view_export(const struct shed_etcd_view *v, struct proto_sync_msg *out);

/* The same from key index *<pos> on, until <out> holds
 * PROTO_SYNC_MAX_ENTRIES or the view ends; *<pos> is where the next call
 * goes on (shed_etcd_view_size() when done). 0. */
int shed_etcd_view_export_at(const struct shed_etcd_view *v, size_t *pos,
                             struct proto_sync_msg *out);

/* Keys relative to <prefix> as a master reads them: a member's
 * "<cell>/<service>/<id>/<shed>" (SHED_ETCD_KEY_MEMBER, *rest = what
 * follows "<cell>/"), a cell's record "~cells/<cell>/<shed>"
 * (SHED_ETCD_KEY_CELL), a hint "~hints/<cell>/..." (SHED_ETCD_KEY_HINT);
 * <cell> is copied out. -EINVAL for anything else. */
enum {
    SHED_ETCD_KEY_MEMBER = 1,
    SHED_ETCD_KEY_CELL,
    SHED_ETCD_KEY_HINT,
};
int shed_etcd_key_class(const char *rel, size_t len, char *cell, size_t clen, const char **rest);

/* A cell's record {"aggregator": URL}: 0 and the URL, or -EINVAL. */
int shed_etcd_cell_decode(const char *buf, size_t len, char *aggregator, size_t size);

/* A hint: its key "<prefix>~hints/<cell>/<seq, 20 digits>-<shed>" (0 or
 * -ENAMETOOLONG), its record (malloc'd JSON {"service","path","url","at"},
 * NULL on ENOMEM) and back (0 or -EINVAL: every field present, a message
 * path, bounded). */
struct shed_etcd_hint {
    char service[PROTO_SYNC_NAME_MAX + 1];
    char path[PROTO_BURROW_PATH_MAX + 1]; /* "/v1.0/a/q/m", encoded */
    char url[PROTO_SYNC_URL_MAX + 1];
    uint64_t at_ms; /* wall clock, when the master sent the write */
};
int shed_etcd_hint_key(char *buf, size_t len, const char *prefix, const char *cell, uint64_t seq,
                       const char *shed);
char *shed_etcd_hint_encode(const char *service, const char *path, const char *url, uint64_t at_ms);
int shed_etcd_hint_decode(const char *buf, size_t len, struct shed_etcd_hint *h);

#endif /* SHED_ETCD_H */
