/* SPDX-License-Identifier: ISC */
/*
 * shed/etcd_impl: what the files of shed/etcd share (private to
 * shed/etcd*.c; the API is in etcd.h, the design in docs/etcd.md).
 *
 * One thread does everything: the watch is a streaming transfer in a curl
 * multi, requests (range, put, delete, lease) are short blocking transfers
 * on a second handle between two polls of the multi. Blocking there is
 * bounded by membership.timeout and delays only this thread: heartbeats
 * are answered by the HTTP front end from the registry, never waiting for
 * etcd. The writer table is the only state shared with other threads (the
 * heartbeat path), under one mutex that is never held across I/O.
 *
 * The files:
 *
 *   etcd.c          the client object: create, destroy, reload, counters,
 *                   and the thread's loop
 *   etcd_codec.c    pure: base64, the member record, keys, the cells' and
 *                   the hints' records
 *   etcd_view.c     pure: the view (every key of a cell, sorted) and each
 *                   member's entry from its keys
 *   etcd_gateway.c  the HTTP/JSON gateway over libcurl: requests and their
 *                   bodies, up/down and the endpoint rotation, the watch's
 *                   stream
 *   etcd_reader.c   reading: the range at a revision, the watch's events,
 *                   one view per cell (a line shed's or aggregator's cell,
 *                   every cell for a master), fed to the registry or to
 *                   shed/master
 *   etcd_writer.c   writing (line sheds, aggregators): the writer table the
 *                   heartbeat path fills, probe verdicts, this shed's lease,
 *                   its member keys and its cell's record
 *   etcd_hints.c    hints: a master's queue and writer, the home cell's
 *                   fetch and delete
 *
 * Only etcd_gateway.c and etcd.c call libcurl.
 */
#ifndef SHED_ETCD_IMPL_H
#define SHED_ETCD_IMPL_H

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/sync.h"
#include "shed/config.h"
#include "shed/etcd.h"

#define WATCH_BUF_MAX  (16u << 20) /* one watch message */
#define REPLY_MAX      (64u << 20) /* one range answer */
#define RETRY_MS       250         /* etcd unreachable: try again after */
#define POLL_MS        50          /* the thread's longest sleep */
#define BATCH          256         /* writes per turn of the loop */
#define NBUCKETS       4096        /* writer table hash buckets */
#define SHED_PART_MAX  (SHED_URL_MAX)
#define VALUE_JSON_MAX 2048
#define PROBED_MAX     64    /* probe verdicts waiting for the thread */
#define HINT_QUEUE_MAX 10000 /* master: hints waiting for the thread */
#define RANGE_PAGE     1000  /* keys in one answer of a load (~0.3 MB) */
#define HINT_VALUE_MAX (3 * PROTO_BURROW_PATH_MAX + 2 * SHED_URL_MAX + 256)

/* ---- the view (etcd_view.c): every key of the cell, sorted, so one
 * member's keys ("<service>/<id>/...") are neighbours ---- */

struct vkey {
    char *rel;    /* "<service>/<id>/<shed>", owned */
    size_t grp;   /* length of "<service>/<id>/" */
    uint64_t rev; /* mod revision */
    struct proto_sync_entry e;
};

struct shed_etcd_view {
    struct vkey **k; /* one allocation per key: an insert or a delete moves pointers */
    size_t n, cap;
};

/* The range [*a, *b) of keys in group <g> (<glen> bytes). */
void etcd_view_group(const struct shed_etcd_view *v, const char *g, size_t glen, size_t *a,
                     size_t *b);
/* The member's entry from its keys [a, b): the highest incarnation, "gone"
 * wins a tie, then the latest write. */
const struct proto_sync_entry *etcd_view_aggregate(const struct shed_etcd_view *v, size_t a,
                                                   size_t b);
/* <e> with state <st> added to <out> (0 when it is full). 0 or -errno. */
int etcd_view_emit(struct proto_sync_msg *out, const struct proto_sync_entry *e,
                   enum proto_sync_state st);

/* ---- the client ---- */

enum wstate {
    W_JOINING, /* not proved yet: nothing written */
    W_PUT,     /* to write (new, changed, or lease lost) */
    W_CLEAN,   /* written */
    W_DEL,     /* its lease ran out here: delete our key */
    W_GONE,    /* deregistered: write "gone", then delete */
};

struct wmember {
    struct wmember *next; /* hash chain */
    struct proto_sync_entry rec;
    uint64_t last_hb;
    uint64_t ver; /* bumped on every change; a write done for an older one is redone */
    uint32_t beats;
    enum wstate st;
};

struct op {
    char service[PROTO_SYNC_NAME_MAX + 1];
    char id[PROTO_SYNC_ID_MAX + 1];
    uint64_t ver;
    enum wstate st;
    char *value; /* W_PUT, W_GONE */
};

enum mode {
    MODE_CELL,   /* line or aggregator: <prefix><cell>/, feeds the registry */
    MODE_MASTER, /* master: every cell under <prefix>, feeds shed/master */
};

/* One cell's keys as held from etcd and what changed since the last apply. */
struct sink {
    char cell[PROTO_SYNC_NAME_MAX + 1];
    char aggregator[PROTO_SYNC_URL_MAX + 1]; /* master mode: from ~cells/ */
    struct shed_etcd_view *view;
    struct proto_sync_msg out;
};

/* A hint waiting for the master's etcd thread to write it. */
struct qhint {
    char cell[PROTO_SYNC_NAME_MAX + 1];
    char *value; /* the record, JSON */
};

/* Hints of one cell in etcd, as last counted (the bound). */
struct hcount {
    char cell[PROTO_SYNC_NAME_MAX + 1];
    uint64_t n, counted_at;
};

struct shed_etcd {
    enum mode mode;
    _Atomic bool running;       /* read by the heartbeat path, cleared by a reload */
    struct registry *reg;       /* MODE_CELL */
    struct shed_master *master; /* MODE_MASTER */
    struct shed_config cfgv;    /* copy; only the fields below are read */
    char base[SHED_ETCD_KEY_MAX];
    char shed[SHED_PART_MAX]; /* this shed's key part: host:port */
    uint64_t lease_ms, ttl_s, join;
    pthread_t thread;
    _Atomic bool stop;

    pthread_mutex_t mu; /* the writer table, the hint queue and counters below it */
    struct wmember *buckets[NBUCKETS];
    size_t nmembers, ndirty;
    uint64_t dropped;
    char probed[PROBED_MAX][SHED_URL_MAX]; /* host:port a probe found dead */
    size_t nprobed;
    struct qhint *hq; /* MODE_MASTER: HINT_QUEUE_MAX slots, a ring */
    size_t hq_head, hq_n;
    uint64_t hint_seq, hints_dropped, hints_written, hint_drop_log;
    unsigned hint_refused; /* puts of the queue's head etcd refused in a row */

    /* the thread's own */
    CURLM *multi;
    CURL *req, *watch;
    struct curl_slist *hdrs;
    _Atomic size_t ep;                 /* current endpoint */
    struct sink sinks[SHED_MAX_CELLS]; /* MODE_CELL: sinks[0] only */
    size_t nsinks;
    bool have_view, need_reload, watching, watch_abort, cellkey_dirty;
    uint64_t rev; /* last revision seen (range or event) */
    char *wbuf;
    size_t wlen, wcap;
    char *wbody;
    struct proto_sync_msg again; /* "down" entries to apply once more */
    int64_t lease_id, hint_lease;
    uint64_t keepalive_at, refresh_at, retry_at, down_since, last_warn, hint_lease_at;
    struct op *ops; /* BATCH */
    struct hcount hcounts[SHED_MAX_CELLS];
    size_t nhcounts;

    /* hints read by another thread (the aggregator's handoff) */
    pthread_mutex_t hmu; /* hreq, and cfgv's endpoints against a reload */
    CURL *hreq;

    _Atomic bool up;
    _Atomic uint64_t revision, keys, writes, write_errors, reloads, resumes;
};

/* ---- etcd_gateway.c: requests (on the etcd thread unless said) ---- */

/* Wake the etcd thread (any thread). */
void etcd_wake(struct shed_etcd *E);
/* etcd answered (<up>) or not (<why>): logged on a change; down: retry
 * after RETRY_MS on the next endpoint. */
void etcd_set_up(struct shed_etcd *E, bool up, const char *why);
/* POST <body> to <path>; the parsed JSON answer in *<out> (owned). 0,
 * -EIO (etcd unreachable: marked down), -EPROTO (an error answer). */
int etcd_call(struct shed_etcd *E, const char *path, const char *body, json_t **out);
/* The same from another thread than the etcd thread's (the hints reader):
 * every endpoint in turn, the current one first. */
int etcd_hcall(struct shed_etcd *E, const char *path, const char *body, json_t **out);
/* A gateway int64 (a JSON string, sometimes a number), 0 when absent. */
int64_t etcd_i64(json_t *o, const char *key);
/* <s> in base64, malloc'd; NULL on ENOMEM. */
char *etcd_b64dup(const char *s, size_t len);
/* JSON {"key": b64(<key>) [, "range_end": b64(<end>)] [, <extra>]},
 * malloc'd. */
char *etcd_key_body_end(const char *key, size_t klen, const char *end, const char *extra);
/* The same; <range>: every key under <key> (which ends with '/'). */
char *etcd_key_body(const char *key, bool range, const char *extra);
/* The watch of what this shed reads from the revision after E->rev; its
 * end; one turn of its transfer (and etcd_apply()). */
void etcd_watch_start(struct shed_etcd *E);
void etcd_watch_stop(struct shed_etcd *E);
void etcd_watch_poll(struct shed_etcd *E);

/* ---- etcd_reader.c ---- */

/* Just past the keys this shed reads (the range's and the watch's end). */
void etcd_read_end(const struct shed_etcd *E, char end[SHED_ETCD_KEY_MAX]);
/* Keys held in every sink's view. */
size_t etcd_keys_held(const struct shed_etcd *E);
/* The sink of cell <cell>, created (with an empty view) when <create>;
 * NULL when there is no room (SHED_MAX_CELLS) or memory. */
struct sink *etcd_sink_get(struct shed_etcd *E, const char *cell, bool create);
/* Hand what changed to the registry or to the master's tables. */
void etcd_apply(struct shed_etcd *E);
/* The value of kv decoded into <val> (NUL-terminated): its length or
 * -EINVAL. */
long etcd_kv_raw(json_t *kv, char *val, size_t size);
/* Load everything this shed reads at one revision, replace the views. */
void etcd_range(struct shed_etcd *E);
/* One message of the watch stream. */
void etcd_watch_message(struct shed_etcd *E, const char *line, size_t len);
/* Every third of a lease: what etcd holds is heard now. */
void etcd_refresh(struct shed_etcd *E, uint64_t now);

/* ---- etcd_writer.c ---- */

/* Probe verdicts: the members at dead hosts written "down". */
void etcd_probes(struct shed_etcd *E, uint64_t now);
/* Every member written is to be written again (a new lease, a reload). */
void etcd_mark_all_put(struct shed_etcd *E);
/* The lease, the cell's record, up to BATCH member writes. */
void etcd_writer(struct shed_etcd *E, uint64_t now);

/* ---- etcd_hints.c ---- */

/* A master: up to BATCH queued hints written. */
void etcd_hint_writer(struct shed_etcd *E, uint64_t now);

#endif /* SHED_ETCD_IMPL_H */
