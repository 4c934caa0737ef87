/* SPDX-License-Identifier: ISC */
/*
 * burrow/store: the in-memory Burrow data model of burrowd (accounts ->
 * queues -> messages, docs/burrow-api.md).
 *
 * Accounts and queues exist only while they hold messages; everything is
 * kept in insertion order (a queue or account that vanishes and comes back
 * goes to the end; a replaced message keeps its place). Lookups go through
 * hash tables (accounts by id, queues by account+id, messages by queue+id),
 * order through intrusive doubly linked lists, so single-queue operations
 * never scan other queues and a single-message operation is O(1).
 *
 * Visible messages of a queue are also on a second list in insertion order,
 * so listing or claiming visible messages costs O(returned), not O(hidden).
 * The one exception: a marker that names a hidden message makes the scan
 * walk the hidden run after it (O(hidden messages right after the marker)).
 * A message that becomes visible again is put back in order by walking the
 * visible list from both ends at once: O(min(distance to head, to tail)).
 * ttl and hide deadlines sit in one min-heap, so expiry costs O(log n) per
 * event and nothing when nothing is due.
 *
 * Stamps (shed's ordering extension, docs/aggregator.md "Backend
 * extension"): every message, queue and account gets a creation stamp,
 * microseconds of the wall clock made strictly increasing per store
 * (max(now_us, last stamp + 1)). A queue's messages are kept in (stamp, id)
 * order, which for messages created here is insertion order; a message put
 * with a stamp of its own (a handoff moving it here) is placed by it. A
 * queue or account has the stamp of the message that created it. Lists can
 * start after and stop at a (stamp, id) position (struct
 * burrow_store_filter); finding a position that is not a message of this
 * queue walks from the nearer end of the list (O(distance)).
 *
 * Time: every call takes <now> in whole seconds (floor of the wall clock);
 * deadlines are floor(now) + seconds, and reported values are the deadline
 * minus <now>, as in the reference. Each call first applies every expiry
 * and un-hide that is due at <now>, so results never depend on when a
 * cleaner last ran; burrow_store_tick() alone runs them for waking waiters.
 *
 * Threading: not thread-safe. The caller serializes every call (burrowd
 * holds one mutex around the store and its waiter lists). The notify
 * callback runs inside store calls, with the caller's lock held.
 *
 * Ownership: the store copies ids and bodies. Views passed to visitors point
 * into the store and are valid only during the visitor call.
 */
#ifndef BURROW_STORE_H
#define BURROW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Misses, returned negated; -ENOMEM is the only other error. */
enum {
    BURROW_STORE_ENOACCOUNT = 3000, /* "Account not found" */
    BURROW_STORE_ENOQUEUE,          /* "Queue not found" */
    BURROW_STORE_ENOMESSAGE,        /* "Message not found" */
};

struct burrow_store;

/* A queue got visible messages (new message, replace or update with hide 0,
 * hide expired). Called with the caller's lock held; must not call back into
 * the store. */
typedef void (*burrow_store_notify_fn)(void *arg, const char *account, size_t alen,
                                       const char *queue, size_t qlen);

struct burrow_msg_view {
    const char *id; /* borrowed from the store */
    size_t id_len;
    const char *body; /* borrowed from the store */
    size_t body_len;
    int64_t ttl;   /* seconds left, 0: never expires */
    int64_t hide;  /* seconds left, 0: visible */
    int64_t stamp; /* creation stamp, see above */
};

/* Visitors: return 0 to go on; a negative value stops the walk and is
 * returned by the store call (nothing after that item is changed). */
typedef int (*burrow_store_id_fn)(void *arg, const char *id, size_t len, int64_t stamp);
typedef int (*burrow_store_msg_fn)(void *arg, const struct burrow_msg_view *m);

/* Filter for list operations. A marker that names no item is ignored (the
 * walk starts at the beginning); <limit> <= 0 means unlimited. Message
 * lists only: with <has_after> the walk starts after the position (after,
 * marker) instead, the marker being only its tie-break id (none: past the
 * whole stamp); with <has_upto> it stops after (upto, upto_id) (no id: the
 * whole stamp included). */
struct burrow_store_filter {
    const char *marker; /* NULL: none */
    size_t marker_len;
    int64_t limit;
    bool match_hidden; /* messages only */
    bool has_after, has_upto;
    int64_t after, upto;
    const char *upto_id; /* NULL: none */
    size_t upto_id_len;
};

struct burrow_store *burrow_store_create(burrow_store_notify_fn notify, void *arg);
void burrow_store_destroy(struct burrow_store *s);

/* Apply expiries and un-hides due at <now>. */
void burrow_store_tick(struct burrow_store *s, int64_t now);

/* Create or replace a message. <ttl>, <hide> are relative seconds >= 0 (the
 * caller has applied its defaults). Returns 1 created, 0 replaced (position
 * kept), -ENOMEM. Stamps come from <now> (seconds). */
int burrow_store_put(struct burrow_store *s, int64_t now, const char *a, size_t alen, const char *q,
                     size_t qlen, const char *m, size_t mlen, const char *body, size_t blen,
                     int64_t ttl, int64_t hide);
/* The same with the wall clock in microseconds, <now_us>, for the stamp of
 * a new message, and <stamp> > 0 to give a new message that stamp instead
 * (a replaced message keeps its own). A stamp ahead of the store's clock
 * (by at most an hour of <now_us>) moves the clock on, so that later stamps
 * stay greater. */
int burrow_store_put_at(struct burrow_store *s, int64_t now, int64_t now_us, const char *a,
                        size_t alen, const char *q, size_t qlen, const char *m, size_t mlen,
                        const char *body, size_t blen, int64_t ttl, int64_t hide, int64_t stamp);

/* The store's clock at <now_us>: every message created here after this
 * call, except one put with a stamp of its own, has a greater stamp. Also
 * moves the clock on to <now_us> when that is ahead (a logical clock: the
 * caller may pass a clock it saw elsewhere). */
int64_t burrow_store_clock(struct burrow_store *s, int64_t now_us);

/* Single message: get / update (NULL ttl or hide: leave unchanged; the
 * visitor sees the message after the change) / delete (the visitor sees it
 * before). <visit> may be NULL. Hidden messages are found too.
 * Return 0 or -BURROW_STORE_ENO{ACCOUNT,QUEUE,MESSAGE}. */
int burrow_store_get(struct burrow_store *s, int64_t now, const char *a, size_t alen, const char *q,
                     size_t qlen, const char *m, size_t mlen, burrow_store_msg_fn visit, void *arg);
int burrow_store_update(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                        const char *q, size_t qlen, const char *m, size_t mlen, const int64_t *ttl,
                        const int64_t *hide, burrow_store_msg_fn visit, void *arg);
int burrow_store_delete(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                        const char *q, size_t qlen, const char *m, size_t mlen,
                        burrow_store_msg_fn visit, void *arg);

/* Does the account / queue exist? (After applying what is due at <now>.) */
bool burrow_store_has_account(struct burrow_store *s, int64_t now, const char *a, size_t alen);
bool burrow_store_has_queue(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                            const char *q, size_t qlen);

/* Message lists of one queue: list / update / delete the messages matched by
 * <f>. Update and delete only touch visible messages unless match_hidden.
 * Return the number matched (> 0), -BURROW_STORE_ENO{ACCOUNT,QUEUE} when the
 * queue does not exist, -BURROW_STORE_ENOMESSAGE when nothing matched, or a
 * visitor's negative value. */
int burrow_store_list_messages(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                               const char *q, size_t qlen, const struct burrow_store_filter *f,
                               burrow_store_msg_fn visit, void *arg);
int burrow_store_update_messages(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                                 const char *q, size_t qlen, const struct burrow_store_filter *f,
                                 const int64_t *ttl, const int64_t *hide, burrow_store_msg_fn visit,
                                 void *arg);
int burrow_store_delete_messages(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                                 const char *q, size_t qlen, const struct burrow_store_filter *f,
                                 burrow_store_msg_fn visit, void *arg);

/* Queues of one account, accounts of the store: list, or delete with every
 * message (hidden ones included). The visitor sees each id and its stamp
 * (before the delete). Return the number matched (> 0), -BURROW_STORE_ENOACCOUNT when the
 * account does not exist (queues) or nothing matched (accounts),
 * -BURROW_STORE_ENOQUEUE when no queue matched, or a visitor's value. */
int burrow_store_list_queues(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                             const struct burrow_store_filter *f, burrow_store_id_fn visit,
                             void *arg);
int burrow_store_delete_queues(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                               const struct burrow_store_filter *f, burrow_store_id_fn visit,
                               void *arg);
int burrow_store_list_accounts(struct burrow_store *s, int64_t now,
                               const struct burrow_store_filter *f, burrow_store_id_fn visit,
                               void *arg);
int burrow_store_delete_accounts(struct burrow_store *s, int64_t now,
                                 const struct burrow_store_filter *f, burrow_store_id_fn visit,
                                 void *arg);

struct burrow_store_stats {
    size_t accounts, queues, messages, timed; /* timed: messages with a deadline */
};
void burrow_store_stats(const struct burrow_store *s, struct burrow_store_stats *out);

#endif /* BURROW_STORE_H */
