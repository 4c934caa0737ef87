/* SPDX-License-Identifier: ISC */
/*
 * shed/agg_impl: what the aggregator engine's files share (private to
 * shed/agg*.c; see agg.h for the API and docs/aggregator.md). One struct
 * shed_agg_req per client request walks through phases, each a batch on
 * the fan-out engine:
 *
 *   marker probe   the stamp of the client's marker (when no cursor)
 *   fetch          a window of every server after the page's position, in
 *                  waves: the first asks every server, the next only the
 *                  servers whose window ran out before the page was full
 *   dedup probe    does an earlier-preference server hold a copy?
 *   destr op       destructive op with a limit, in rounds: the oldest
 *                  candidates are fetched, then each server that holds some
 *                  changes exactly its range of them (shed_after/shed_upto)
 *   destr clean    a claim deletes the losing copies it just hid
 *   ids delete     deleting selected accounts / queues, in slices
 *   wait poll      non-destructive long-poll on every server, first wins
 *
 * Every list is in the global (stamp, id) order the backends' stamps give
 * (docs/aggregator.md "The global order"). The membership (servers, each
 * bucket's preference rows) is copied out of the routing view when the
 * request starts, so nothing here touches the registry afterwards. Nothing
 * runs long on the loop: big operations are cut into rounds or slices, each
 * a batch, and the loop serves other requests in between.
 *
 * The files, one phase family each:
 *
 *   agg.c          the engine object, counters, answers, backend URLs,
 *                  batch plumbing and the phase dispatch
 *   agg_start.c    parsing a request and copying the membership out
 *   agg_ids.c      account and queue lists, their deletes in slices
 *   agg_list.c     message lists: marker, windows in waves, empty replicas,
 *                  dedup probes, the page and its Link; wait
 *   agg_destr.c    claims, updates and deletes of messages, in rounds
 *   agg_lookup.c   one message asked of every server it may live on
 *   agg_http.c     the libmicrohttpd adapter (the only file that includes
 *                  <microhttpd.h>)
 */
#ifndef SHED_AGG_IMPL_H
#define SHED_AGG_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#include "proto/burrow.h"
#include "proto/marker.h"
#include "ring/ring.h"
#include "shed/agg.h"
#include "shed/fanout.h"
#include "shed/merge.h"
#include "shed/registry.h"

#define NOPOS          UINT32_MAX
#define PREF_MAX       (2 * RING_MAX_R)
#define QBUF_MAX       (2 * PROTO_BURROW_ID_MAX + 64)
#define BACKENDS_MAX   4096
#define PAGE_WAVES     4                /* waves of one page fetch, the first included */
#define EMPTY_WAVES    16               /* ... and while it has nothing (losing copies only) */
#define WINDOW_MAX     10000            /* widest window asked of one server */
#define DESTR_CHUNK    1000             /* candidates per round of a destructive op */
#define IDLE_ROUNDS    16               /* rounds in a row that took nothing: stop */
#define DEL_SLICE      32               /* deletes in flight for one account/queue delete */
#define IDS_SLICE      64               /* servers asked at once for an account/queue list */
#define DEL_MAX        262144           /* backend deletes of one account/queue delete */
#define LOOKUP_WALK    (RING_MAX_R + 8) /* servers a lookup asks per generation */
#define LOOKUP_DOWN_MS 300              /* timeout for a server the view has down */

#define EMPTY_SLOTS  4096 /* remembered empty replicas (direct-mapped) */
#define EMPTY_MAX_MS 1000 /* ... for this long: under the handoff's 2 s settle */

/* A replica (not the first live server of any of the account's rows) that
 * answered a page with "no such queue" at its clock: it holds nothing of
 * the queue older than that clock. See empty_get(). */
struct empty {
    XXH128_hash_t key; /* of (backend, account, queue) */
    int64_t clock;     /* its Shed-Clock then */
    uint64_t at_ms;    /* monotonic, when it answered; 0: free */
};

/* The counters of struct shed_agg_stats. */
struct agg_counters {
    _Atomic uint64_t requests, answered, in_flight, backend_reqs, backend_errors, partial, probes,
        waves2, lookups, rounds, slices;
};

struct shed_agg {
    struct registry *reg; /* borrowed: the routing view of requests without a route */
    /* lock serialises starting a request, running the fan-out and reading
     * its fd with stopping: no request starts on an engine being stopped. */
    pthread_mutex_t lock;
    bool open;               /* under lock: false once shed_agg_stop() began */
    struct shed_fanout *fan; /* NULL once stopped */
    _Atomic bool list_all;
    _Atomic uint32_t list_all_max; /* list_all_running */
    _Atomic uint32_t list_all_now; /* /v1.0 lists running */
    _Atomic uint64_t timeout_ms;
    size_t max_probes;
    pthread_mutex_t elock; /* guards empty[] */
    struct empty *empty;   /* EMPTY_SLOTS entries */
    _Atomic int64_t clock; /* the latest Shed-Clock any backend sent */
    struct agg_counters n;
};

enum phase {
    PH_NONE = 0,
    PH_IDS,         /* account / queue lists */
    PH_IDS_DEL,     /* deleting the selected accounts / queues, one slice */
    PH_MARKER,      /* marker probe */
    PH_FETCH,       /* message list windows */
    PH_DEDUP,       /* dedup probes */
    PH_DESTR_ALL,   /* destructive, unlimited, parallel */
    PH_DESTR_OP,    /* destructive with limit: one round's ranges */
    PH_DESTR_CLEAN, /* destructive with limit: delete the losing copies just hidden */
    PH_WAIT,        /* long-poll */
    PH_BADDETAIL,   /* non-destructive check of a bad detail */
    PH_LOOKUP,      /* one message asked of every server it may live on */
};

enum method { M_GET, M_POST, M_DELETE };

struct backend {
    char id[RING_ID_MAX + 1];
    char url[SHED_URL_MAX];
    bool live;   /* not known down */
    bool failed; /* unreachable during this request */
    bool writer; /* first live server of one of the account's rows (mark_writers()) */
};

struct gen {
    struct ring_config cfg;
    uint32_t row[RING_MAX_K][RING_MAX_R]; /* backend indices, NOPOS when none */
};

struct probe {
    uint32_t list, item, be;
};

/* A position in the global order: (stamp, id). */
struct pos {
    bool set;    /* false: the beginning */
    bool has_id; /* false: past the whole stamp */
    int64_t stamp;
    size_t idlen;
    char id[PROTO_BURROW_ID_MAX];
};

/* One backend delete of an account/queue delete. */
struct deljob {
    uint32_t be, list, item;
};

/* Per list slot of a fetch. */
enum { SLOT_FROM_START = 1, SLOT_CONTINUED = 2, SLOT_CACHED = 4 };

struct shed_agg_req {
    struct shed_agg *agg;
    shed_agg_done_fn done;
    void *done_arg;
    _Atomic bool finished;
    _Atomic unsigned refs; /* the caller's, plus one per batch on the engine */

    /* request */
    uint64_t now; /* monotonic ms when it arrived */
    enum method m;
    bool lookup;              /* a single-message lookup (SHED_AGG_LOOKUP_PREFIX) */
    _Atomic bool counted_all; /* counted in agg->list_all_now until answered */
    const char *lmethod;      /* its method, as sent to every candidate */
    uint8_t *lseen;           /* lookup: per batch position 0 pending, 1 done, 2 a 2xx */
    enum proto_burrow_level level;
    char ids[3 * PROTO_BURROW_ID_MAX + 3];
    struct proto_burrow_path path;
    struct proto_burrow_query q;
    char qbuf[QBUF_MAX];
    enum proto_burrow_detail detail;  /* effective, for the client */
    enum proto_burrow_detail bdetail; /* asked of backends */
    struct proto_marker_cursor cursor;
    bool has_cursor;
    uint64_t timeout_ms;
    uint64_t deadline; /* wait deadline, monotonic ms; 0 without wait */

    /* membership snapshot */
    struct backend *be; /* sorted by id */
    size_t nbe;
    struct gen gens[2];
    size_t ngens;

    /* progress */
    enum phase phase;
    struct pos start; /* where the client's list starts (its marker) */
    struct pos after; /* where the running fetch starts */
    uint32_t *order;  /* backend index per list slot (or batch position) */
    uint8_t *sflags;  /* SLOT_* per list slot */
    int64_t *slim;    /* the limit each list slot's server was sent (0: none) */
    int64_t *bwin;    /* first-wave window per backend (window_of()) */
    struct shed_merge_list *lists;
    size_t nlists, nlists_cap;
    struct shed_merge_pick *picks;
    size_t npicks;
    struct shed_merge_cut cut;
    struct probe *probes;
    size_t nprobes;
    size_t nvisit;       /* live servers of the request (order[0..nvisit) at the first wave) */
    int wave;            /* page fetch: waves sent so far */
    size_t wave_from;    /* first list slot of the running wave */
    int64_t wave_limit;  /* per-server limit of the running wave */
    int64_t fetch_limit; /* what the running fetch wants in total (0: all) */
    enum proto_burrow_detail fdetail; /* detail of the running fetch */
    int64_t first_limit;              /* per-server limit of the first wave */
    bool refreshed;                   /* the remembered empty replicas were asked after all */
    bool any_answer;                  /* some server answered during this fetch */
    char notfound[128];               /* a 404 text no rank below covers */
    int nf_rank;                      /* 1 account, 2 queue, 3 message exist somewhere */

    /* destructive with a limit */
    int64_t remaining;
    struct pos upto;                /* the round's last candidate */
    size_t round_cands;             /* candidates of the running round */
    bool round_more;                /* more may follow them */
    unsigned idle;                  /* rounds in a row that took nothing */
    struct shed_merge_list *acc;    /* every round's answers, kept to the end */
    uint32_t *acc_be;               /* their backends */
    size_t nacc, acc_cap, acc_from; /* acc_from: the running round's first */

    /* account / queue lists */
    size_t ids_next; /* next backend to ask */

    /* account / queue delete */
    struct deljob *jobs;
    size_t njobs, jobs_next;

    /* answer */
    struct shed_merge_out out;
    struct shed_agg_answer ans; /* what <done> gets, made of the fields here */
    char partial[SHED_AGG_HEADER_MAX];
    char link[SHED_AGG_HEADER_MAX];
    bool retry_after;
};

/* A bounded string under construction (URLs, Link). */
struct sbuf {
    char *p;
    size_t len, cap;
    bool over;
};

/* What one backend request carries besides the path. */
struct urlopts {
    const char *detail; /* NULL: not sent */
    int64_t limit;      /* <= 0: not sent */
    bool marker;        /* send the client's marker (plain Burrow) */
    bool attrs;         /* send ttl / hide */
    int64_t wait;       /* > 0: send */
    bool match_hidden;
    bool stamps;            /* shed_stamps=1 */
    const struct pos *from; /* shed_after (+ marker as its id), NULL or unset: none */
    const struct pos *upto; /* shed_upto (+ shed_upto_id), NULL: none */
    int64_t clock;          /* > 0: shed_clock */
};

/* A request's batch under construction. */
struct batch {
    struct shed_fanout_req *reqs;
    char *urls;
    size_t n, cap;
};

/* agg.c */
void agg_answer_empty(struct shed_agg_req *r, int status);
void agg_answer_text(struct shed_agg_req *r, int status, const char *text);
/* A list of all accounts that counted against list_all_running stops
 * counting (when answered, or destroyed unanswered); idempotent. */
void agg_uncount_all(struct shed_agg_req *r);
void agg_answer_unavailable(struct shed_agg_req *r, const char *why);
int agg_batch_add(struct batch *b, const struct shed_agg_req *r, const char *method, uint32_t be,
                  const char *msg, size_t mlen, const struct urlopts *o, uint64_t timeout_ms);
void agg_batch_free(struct batch *b);
void agg_batch_go(struct shed_agg_req *r, struct batch *b, enum phase ph);
int agg_batch_init(struct batch *b, size_t cap);
int64_t agg_clock(const struct shed_agg_req *r);
const char *agg_detail_name(enum proto_burrow_detail d);
void agg_finish(struct shed_agg_req *r);
void agg_keep_notfound(struct shed_agg_req *r, int status, const char *body, size_t len);
void agg_lists_reset(struct shed_agg_req *r);
void agg_mark_failed(struct shed_agg_req *r, uint32_t be, const char *why, int status, int err);
const char *agg_method_name(enum method m);
const char *agg_notfound_text(struct shed_agg_req *r);
bool agg_pass_400(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
int agg_picks_room(struct shed_agg_req *r, size_t need);
void agg_render(struct shed_agg_req *r);
void agg_render_from(struct shed_agg_req *r, const struct shed_merge_list *lists);
void agg_sb_enc(struct sbuf *b, const char *s, size_t n);
void agg_sb_int(struct sbuf *b, const char *key, int64_t v);
void agg_sb_path(struct sbuf *b, const struct shed_agg_req *r, const char *msg, size_t mlen);
void agg_sb_str(struct sbuf *b, const char *s);
int agg_slot_grow(struct shed_agg_req *r);
bool agg_take_lists_at(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n,
                       size_t off, int64_t asked, bool stamps);
bool agg_take_one(struct shed_agg_req *r, uint32_t be, const struct shed_fanout_res *res,
                  int64_t asked, bool stamps, struct shed_merge_list *l);
bool agg_usable(struct shed_agg_req *r, uint32_t be, const struct shed_fanout_res *res);

/* agg_start.c */
void agg_begin(struct shed_agg_req *r, const struct registry_route *route, const char *method,
               const char *path, size_t plen, const char *query, size_t qlen);
int agg_add_member(struct shed_agg_req *r, size_t cap, const struct ring_member *m, bool live);
bool agg_member_gone(const struct registry_route *route, const struct ring *ring, uint32_t idx);
bool agg_member_live(const struct registry_route *route, const struct ring *ring, uint32_t idx);

/* agg_ids.c */
void agg_ids_del_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_ids_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_ids_fetch(struct shed_agg_req *r);

/* agg_list.c */
void agg_baddetail_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_dedup_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_fetch(struct shed_agg_req *r);
void agg_fetch_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_marker_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_marker_probe(struct shed_agg_req *r);
void agg_msgs_run(struct shed_agg_req *r);
/* The first wave's window of a server that is the first live server of <c>
 * of the account's <k> buckets, for a page of <limit>. */
int64_t agg_window_of(int64_t limit, uint32_t c, uint32_t k);
bool agg_pos_before(const struct pos *p, const struct shed_merge_item *it);
void agg_pos_of(struct pos *p, const struct shed_merge_item *it);
void agg_pos_set(struct pos *p, int64_t stamp, const char *id, size_t idlen);
bool agg_pos_within(const struct pos *p, const struct shed_merge_item *it);
size_t agg_visit_list(struct shed_agg_req *r);
void agg_wait_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_wait_poll(struct shed_agg_req *r);

/* agg_destr.c */
void agg_destr_all(struct shed_agg_req *r);
void agg_destr_all_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_destr_next(struct shed_agg_req *r);
void agg_destr_op(struct shed_agg_req *r);
void agg_destr_op_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
void agg_destr_round(struct shed_agg_req *r);

/* agg_lookup.c */
void agg_lookup_done(struct shed_agg_req *r, const struct shed_fanout_res *res, size_t n);
bool agg_lookup_each(struct shed_agg_req *r, size_t idx, const struct shed_fanout_res *res);
void agg_lookup_run(struct shed_agg_req *r, const struct registry_route *route);

#endif /* SHED_AGG_IMPL_H */
