/* SPDX-License-Identifier: ISC */
/*
 * burrow/store: burrowd's in-memory accounts, queues and messages. See
 * store.h for the model and the costs; this file keeps three intrusive
 * chained hash tables, insertion-ordered doubly linked lists, a visible-only
 * list per queue and one min-heap of deadlines. A message is one allocation:
 * its header, then its id, then its body.
 */
#include "burrow/store.h"

#include "proto/burrow.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define HEAP_NONE UINT32_MAX
/* A put's own stamp further ahead of now than this does not move the clock
 * (the message keeps it; only later stamps are not pushed that far). */
#define STAMP_AHEAD_MAX_US (3600LL * 1000000)

/* Doubly linked lists with a head and a tail, links named <prev>/<next>:
 * take <n> out, or put it at the end. */
#define LIST_UNLINK(head, tail, n, prev, next)                                                     \
    do {                                                                                           \
        if ((n)->prev)                                                                             \
            (n)->prev->next = (n)->next;                                                           \
        else                                                                                       \
            (head) = (n)->next;                                                                    \
        if ((n)->next)                                                                             \
            (n)->next->prev = (n)->prev;                                                           \
        else                                                                                       \
            (tail) = (n)->prev;                                                                    \
    } while (0)
/* Put <n> after <at> (NULL: at the head). */
#define LIST_INSERT_AFTER(head, tail, at, n, prev, next)                                           \
    do {                                                                                           \
        (n)->prev = (at);                                                                          \
        (n)->next = (at) ? (at)->next : (head);                                                    \
        if ((n)->next)                                                                             \
            (n)->next->prev = (n);                                                                 \
        else                                                                                       \
            (tail) = (n);                                                                          \
        if (at)                                                                                    \
            (at)->next = (n);                                                                      \
        else                                                                                       \
            (head) = (n);                                                                          \
    } while (0)
#define LIST_APPEND(head, tail, n, prev, next)                                                     \
    do {                                                                                           \
        (n)->prev = (tail);                                                                        \
        (n)->next = NULL;                                                                          \
        if (tail)                                                                                  \
            (tail)->next = (n);                                                                    \
        else                                                                                       \
            (head) = (n);                                                                          \
        (tail) = (n);                                                                              \
    } while (0)

/* Every hashed object starts with this node. */
struct hnode {
    struct hnode *hnext;
    uint32_t hash;
};

struct htab {
    struct hnode **b;
    size_t mask; /* buckets - 1; 0 buckets when b is NULL */
    size_t n;
};

struct account {
    struct hnode h;
    struct account *prev, *next; /* store order */
    struct queue *qhead, *qtail; /* queue order */
    size_t nqueues;
    int64_t stamp; /* of the message that created it */
    uint8_t id_len;
    char id[];
};

struct queue {
    struct hnode h;
    struct queue *prev, *next; /* account order */
    struct account *acct;
    struct msg *head, *tail;   /* every message, insertion order */
    struct msg *vhead, *vtail; /* visible messages, insertion order */
    size_t nmsgs;
    int64_t stamp; /* of the message that created it */
    uint8_t id_len;
    char id[];
};

struct msg {
    struct hnode h;
    uint32_t heap_idx;         /* in s->heap, HEAP_NONE if no deadline */
    struct msg *prev, *next;   /* queue order */
    struct msg *vprev, *vnext; /* visible order; both NULL and not vhead when hidden */
    struct queue *q;
    int64_t stamp; /* creation stamp: the queue is in (stamp, id) order */
    int64_t ttl;   /* absolute expiry, 0: never */
    int64_t hide;  /* absolute un-hide time, 0: visible */
    uint32_t blen; /* body bytes */
    uint8_t id_len;
    char data[]; /* id, then body */
};

struct burrow_store {
    struct htab accounts, queues, msgs;
    struct account *ahead, *atail;
    size_t naccounts;
    struct msg **heap; /* min-heap on next_event() */
    size_t nheap, heapcap;
    int64_t clock; /* the last stamp given out */
    burrow_store_notify_fn notify;
    void *notify_arg;
};

/* ---- hash tables ---------------------------------------------------- */

static uint32_t
hash_id(const void *seed, const char *id, size_t len)
{
    return (uint32_t)XXH3_64bits_withSeed(id, len, (uint64_t)(uintptr_t)seed);
}

static int
htab_resize(struct htab *t, size_t nb)
{
    struct hnode **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; t->b && i <= t->mask; i++) {
        struct hnode *n = t->b[i], *next;

        for (; n; n = next) {
            next = n->hnext;
            n->hnext = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    free(t->b);
    t->b = b;
    t->mask = nb - 1;
    return 0;
}

/* Make room for one more entry before it is allocated, so an insert
 * cannot fail half-way. */
static int
htab_reserve(struct htab *t)
{
    if (t->b == NULL)
        return htab_resize(t, 16);
    if (t->n + 1 > t->mask + 1)
        return htab_resize(t, (t->mask + 1) * 2);
    return 0;
}

static void
htab_insert(struct htab *t, struct hnode *n)
{
    struct hnode **b = &t->b[n->hash & t->mask];

    n->hnext = *b;
    *b = n;
    t->n++;
}

static void
htab_remove(struct htab *t, struct hnode *n)
{
    struct hnode **pp = &t->b[n->hash & t->mask];

    while (*pp != n)
        pp = &(*pp)->hnext;
    *pp = n->hnext;
    t->n--;
    /* Shrink lazily so a drained million-message queue gives memory back;
     * a failed shrink just keeps the bigger table. */
    if (t->mask + 1 > 64 && t->n < (t->mask + 1) / 8)
        (void)htab_resize(t, (t->mask + 1) / 4);
}

static struct hnode *
htab_first(const struct htab *t, uint32_t hash)
{
    return t->b ? t->b[hash & t->mask] : NULL;
}

/* ---- lookups --------------------------------------------------------- */

/* Each table keys its entries on (parent, id): an account has no parent, a
 * queue's is its account, a message's its queue. <eq> compares one entry's
 * key; the hash already mixes the parent in (hash_id()). */
typedef bool (*hnode_eq_fn)(const struct hnode *n, const void *parent, const char *id, size_t len);

static struct hnode *
htab_find(const struct htab *t, hnode_eq_fn eq, const void *parent, const char *id, size_t len)
{
    uint32_t h = hash_id(parent, id, len);

    for (struct hnode *n = htab_first(t, h); n; n = n->hnext)
        if (n->hash == h && eq(n, parent, id, len))
            return n;
    return NULL;
}

static bool
account_eq(const struct hnode *n, const void *parent, const char *id, size_t len)
{
    const struct account *ac = (const struct account *)n;

    (void)parent;
    return ac->id_len == len && memcmp(ac->id, id, len) == 0;
}

static bool
queue_eq(const struct hnode *n, const void *parent, const char *id, size_t len)
{
    const struct queue *qu = (const struct queue *)n;

    return qu->acct == parent && qu->id_len == len && memcmp(qu->id, id, len) == 0;
}

static bool
msg_eq(const struct hnode *n, const void *parent, const char *id, size_t len)
{
    const struct msg *ms = (const struct msg *)n;

    return ms->q == parent && ms->id_len == len && memcmp(ms->data, id, len) == 0;
}

static struct account *
account_find(struct burrow_store *s, const char *a, size_t alen)
{
    return (struct account *)htab_find(&s->accounts, account_eq, NULL, a, alen);
}

static struct queue *
queue_find(struct burrow_store *s, struct account *ac, const char *q, size_t qlen)
{
    return (struct queue *)htab_find(&s->queues, queue_eq, ac, q, qlen);
}

static struct msg *
msg_find(struct burrow_store *s, struct queue *qu, const char *m, size_t mlen)
{
    return (struct msg *)htab_find(&s->msgs, msg_eq, qu, m, mlen);
}

/* ---- deadline heap ---------------------------------------------------- */

static int64_t
next_event(const struct msg *m)
{
    if (m->ttl > 0 && m->hide > 0)
        return m->ttl < m->hide ? m->ttl : m->hide;
    return m->ttl > 0 ? m->ttl : m->hide;
}

static void
heap_set(struct burrow_store *s, size_t i, struct msg *m)
{
    s->heap[i] = m;
    m->heap_idx = (uint32_t)i;
}

static void
heap_up(struct burrow_store *s, size_t i)
{
    struct msg *m = s->heap[i];
    int64_t k = next_event(m);

    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (next_event(s->heap[p]) <= k)
            break;
        heap_set(s, i, s->heap[p]);
        i = p;
    }
    heap_set(s, i, m);
}

static void
heap_down(struct burrow_store *s, size_t i)
{
    struct msg *m = s->heap[i];
    int64_t k = next_event(m);

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && next_event(s->heap[c + 1]) < next_event(s->heap[c]))
            c++;
        if (next_event(s->heap[c]) >= k)
            break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, m);
}

static void
heap_remove(struct burrow_store *s, struct msg *m)
{
    size_t i = m->heap_idx;

    if (i == HEAP_NONE)
        return;
    m->heap_idx = HEAP_NONE;
    s->nheap--;
    if (i == s->nheap)
        return;
    struct msg *last = s->heap[s->nheap];

    heap_set(s, i, last);
    heap_up(s, i);
    heap_down(s, last->heap_idx);
}

static int
heap_reserve(struct burrow_store *s)
{
    if (s->nheap < s->heapcap)
        return 0;
    size_t cap = s->heapcap ? s->heapcap * 2 : 64;
    struct msg **h = realloc(s->heap, cap * sizeof(*h));

    if (h == NULL)
        return -ENOMEM;
    s->heap = h;
    s->heapcap = cap;
    return 0;
}

/* Put <m> where its deadlines say; the caller reserved heap room. */
static void
heap_update(struct burrow_store *s, struct msg *m)
{
    bool want = next_event(m) > 0;

    if (m->heap_idx != HEAP_NONE) {
        if (!want) {
            heap_remove(s, m);
            return;
        }
        heap_up(s, m->heap_idx);
        heap_down(s, m->heap_idx);
    } else if (want) {
        heap_set(s, s->nheap++, m);
        heap_up(s, m->heap_idx);
    }
}

/* ---- visible list ------------------------------------------------------ */

static bool
visible(const struct msg *m)
{
    return m->hide == 0;
}

static void
vis_remove(struct queue *q, struct msg *m)
{
    LIST_UNLINK(q->vhead, q->vtail, m, vprev, vnext);
    m->vprev = m->vnext = NULL;
}

/* Position order of messages (proto_burrow_key_cmp()): stamp, then id. */
static int
msg_cmp(const struct msg *a, const struct msg *b)
{
    return proto_burrow_key_cmp(a->stamp, a->data, a->id_len, b->stamp, b->data, b->id_len);
}

/* Insert <m> in (stamp, id) order, walking from both ends at once. */
static void
vis_insert(struct queue *q, struct msg *m)
{
    struct msg *after = NULL; /* insert after this one (NULL: at head) */
    struct msg *fwd = q->vhead, *back = q->vtail;

    while (back != NULL) {
        if (msg_cmp(back, m) < 0) {
            after = back;
            break;
        }
        if (msg_cmp(fwd, m) > 0) {
            after = fwd->vprev;
            break;
        }
        back = back->vprev;
        fwd = fwd->vnext;
    }
    LIST_INSERT_AFTER(q->vhead, q->vtail, after, m, vprev, vnext);
}

/* ---- creation and removal ----------------------------------------------- */

static void
notify(struct burrow_store *s, struct queue *q)
{
    if (s->notify)
        s->notify(s->notify_arg, q->acct->id, q->acct->id_len, q->id, q->id_len);
}

static void
account_free(struct burrow_store *s, struct account *ac)
{
    htab_remove(&s->accounts, &ac->h);
    LIST_UNLINK(s->ahead, s->atail, ac, prev, next);
    s->naccounts--;
    free(ac);
}

/* Unlink an empty queue, and its account if that was the last queue.
 * Returns true when the account went too. */
static bool
queue_free(struct burrow_store *s, struct queue *q)
{
    struct account *ac = q->acct;

    htab_remove(&s->queues, &q->h);
    LIST_UNLINK(ac->qhead, ac->qtail, q, prev, next);
    ac->nqueues--;
    free(q);
    if (ac->nqueues == 0) {
        account_free(s, ac);
        return true;
    }
    return false;
}

/* What went with a freed message. */
enum gone { GONE_MSG = 0, GONE_QUEUE, GONE_ACCOUNT };

/* Free one message, and its queue and account when they become empty. */
static enum gone
msg_free(struct burrow_store *s, struct msg *m)
{
    struct queue *q = m->q;

    htab_remove(&s->msgs, &m->h);
    heap_remove(s, m);
    if (visible(m))
        vis_remove(q, m);
    LIST_UNLINK(q->head, q->tail, m, prev, next);
    q->nmsgs--;
    free(m);
    if (q->nmsgs == 0)
        return queue_free(s, q) ? GONE_ACCOUNT : GONE_QUEUE;
    return GONE_MSG;
}

static int64_t
deadline(int64_t now, int64_t secs)
{
    return secs > 0 ? now + secs : 0;
}

static int64_t
remaining(int64_t now, int64_t dl)
{
    return dl > 0 ? dl - now : dl;
}

struct burrow_store *
burrow_store_create(burrow_store_notify_fn fn, void *arg)
{
    struct burrow_store *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->notify = fn;
    s->notify_arg = arg;
    return s;
}

void
burrow_store_destroy(struct burrow_store *s)
{
    if (s == NULL)
        return;
    for (struct account *ac = s->ahead, *an; ac; ac = an) {
        an = ac->next;
        for (struct queue *q = ac->qhead, *qn; q; q = qn) {
            qn = q->next;
            for (struct msg *m = q->head, *mn; m; m = mn) {
                mn = m->next;
                free(m);
            }
            free(q);
        }
        free(ac);
    }
    free(s->accounts.b);
    free(s->queues.b);
    free(s->msgs.b);
    free(s->heap);
    free(s);
}

void
burrow_store_tick(struct burrow_store *s, int64_t now)
{
    while (s->nheap > 0 && next_event(s->heap[0]) <= now) {
        struct msg *m = s->heap[0];

        if (m->ttl > 0 && m->ttl <= now) {
            (void)msg_free(s, m);
            continue;
        }
        m->hide = 0;
        vis_insert(m->q, m);
        heap_update(s, m);
        notify(s, m->q);
    }
}

static void
view(const struct msg *m, int64_t now, struct burrow_msg_view *v)
{
    v->id = m->data;
    v->id_len = m->id_len;
    v->body = m->data + m->id_len;
    v->body_len = m->blen;
    v->ttl = remaining(now, m->ttl);
    v->hide = remaining(now, m->hide);
    v->stamp = m->stamp;
}

/* Find or create the account and queue for a put; nothing is left behind
 * on failure. */
static int
queue_get_or_create(struct burrow_store *s, const char *a, size_t alen, const char *q, size_t qlen,
                    int64_t stamp, struct queue **out)
{
    struct account *ac = account_find(s, a, alen);
    struct queue *qu;
    bool new_ac = false;

    if (ac) {
        qu = queue_find(s, ac, q, qlen);
        if (qu) {
            *out = qu;
            return 0;
        }
    } else {
        if (htab_reserve(&s->accounts) < 0)
            return -ENOMEM;
        ac = calloc(1, sizeof(*ac) + alen);
        if (ac == NULL)
            return -ENOMEM;
        memcpy(ac->id, a, alen);
        ac->id_len = (uint8_t)alen;
        ac->h.hash = hash_id(NULL, a, alen);
        ac->stamp = stamp;
        new_ac = true;
    }
    if (htab_reserve(&s->queues) < 0 || (qu = calloc(1, sizeof(*qu) + qlen)) == NULL) {
        if (new_ac)
            free(ac);
        return -ENOMEM;
    }
    if (new_ac) {
        htab_insert(&s->accounts, &ac->h);
        LIST_APPEND(s->ahead, s->atail, ac, prev, next);
        s->naccounts++;
    }
    memcpy(qu->id, q, qlen);
    qu->id_len = (uint8_t)qlen;
    qu->stamp = stamp;
    qu->acct = ac;
    qu->h.hash = hash_id(ac, q, qlen);
    htab_insert(&s->queues, &qu->h);
    LIST_APPEND(ac->qhead, ac->qtail, qu, prev, next);
    ac->nqueues++;
    *out = qu;
    return 0;
}

/* <nm> replaces <om> (same id, same place): repoint every link. */
static void
msg_relink(struct burrow_store *s, struct msg *om, struct msg *nm)
{
    struct queue *q = om->q;
    struct hnode **pp = &s->msgs.b[om->h.hash & s->msgs.mask];

    while (*pp != &om->h)
        pp = &(*pp)->hnext;
    *pp = &nm->h;
    if (nm->prev)
        nm->prev->next = nm;
    else
        q->head = nm;
    if (nm->next)
        nm->next->prev = nm;
    else
        q->tail = nm;
    if (visible(om)) {
        if (nm->vprev)
            nm->vprev->vnext = nm;
        else
            q->vhead = nm;
        if (nm->vnext)
            nm->vnext->vprev = nm;
        else
            q->vtail = nm;
    }
    if (om->heap_idx != HEAP_NONE)
        s->heap[om->heap_idx] = nm;
}

int64_t
burrow_store_clock(struct burrow_store *s, int64_t now_us)
{
    if (now_us > s->clock)
        s->clock = now_us;
    return s->clock;
}

/* Put <m> into its queue's list at its (stamp, id) place: at the tail for
 * a message created here, after a walk back for a stamp of its own. */
static void
msg_place(struct queue *q, struct msg *m)
{
    struct msg *after = q->tail;

    while (after != NULL && msg_cmp(after, m) > 0)
        after = after->prev;
    LIST_INSERT_AFTER(q->head, q->tail, after, m, prev, next);
}

int
burrow_store_put(struct burrow_store *s, int64_t now, const char *a, size_t alen, const char *q,
                 size_t qlen, const char *m, size_t mlen, const char *body, size_t blen,
                 int64_t ttl, int64_t hide)
{
    return burrow_store_put_at(s, now, now * 1000000, a, alen, q, qlen, m, mlen, body, blen, ttl,
                               hide, 0);
}

int
burrow_store_put_at(struct burrow_store *s, int64_t now, int64_t now_us, const char *a, size_t alen,
                    const char *q, size_t qlen, const char *m, size_t mlen, const char *body,
                    size_t blen, int64_t ttl, int64_t hide, int64_t stamp)
{
    struct queue *qu;
    struct msg *om, *nm;
    bool was_visible;
    int64_t st;
    int rc;

    if (alen == 0 || alen > UINT8_MAX || qlen == 0 || qlen > UINT8_MAX || mlen == 0 ||
        mlen > UINT8_MAX || blen > UINT32_MAX)
        return -EINVAL;
    burrow_store_tick(s, now);
    if (heap_reserve(s) < 0 || htab_reserve(&s->msgs) < 0)
        return -ENOMEM;
    /* The stamp a new message gets; only given out once it is created. */
    st = stamp > 0 ? stamp : (now_us > s->clock ? now_us : s->clock + 1);
    rc = queue_get_or_create(s, a, alen, q, qlen, st, &qu);
    if (rc < 0)
        return rc;
    om = msg_find(s, qu, m, mlen);
    nm = malloc(offsetof(struct msg, data) + mlen + blen);
    if (nm == NULL) {
        if (qu->nmsgs == 0)
            queue_free(s, qu);
        return -ENOMEM;
    }
    if (om) {
        /* Replace: same links, same stamp, new body and deadlines. */
        memcpy(nm, om, offsetof(struct msg, data));
        msg_relink(s, om, nm);
        was_visible = visible(om);
        free(om);
    } else {
        memset(nm, 0, offsetof(struct msg, data));
        nm->q = qu;
        nm->stamp = st;
        /* a stamp of its own moves the clock, unless absurdly far ahead */
        if (st > s->clock && (stamp == 0 || st - now_us <= STAMP_AHEAD_MAX_US))
            s->clock = st;
        nm->heap_idx = HEAP_NONE;
        nm->id_len = (uint8_t)mlen;
        nm->h.hash = hash_id(qu, m, mlen);
        htab_insert(&s->msgs, &nm->h);
        memcpy(nm->data, m, mlen); /* msg_place() compares ids */
        msg_place(qu, nm);
        qu->nmsgs++;
        was_visible = false;
    }
    memcpy(nm->data, m, mlen);
    if (blen)
        memcpy(nm->data + mlen, body, blen);
    nm->blen = (uint32_t)blen;
    nm->ttl = deadline(now, ttl);
    nm->hide = deadline(now, hide);
    if (was_visible && !visible(nm))
        vis_remove(qu, nm);
    else if (!was_visible && visible(nm))
        vis_insert(qu, nm);
    heap_update(s, nm);
    if (visible(nm))
        notify(s, qu);
    return om ? 0 : 1;
}

/* Resolve account and queue (and message when <m> is not NULL). */
static int
resolve(struct burrow_store *s, const char *a, size_t alen, const char *q, size_t qlen,
        const char *m, size_t mlen, struct queue **qout, struct msg **mout)
{
    struct account *ac = account_find(s, a, alen);

    if (ac == NULL)
        return -BURROW_STORE_ENOACCOUNT;
    *qout = queue_find(s, ac, q, qlen);
    if (*qout == NULL)
        return -BURROW_STORE_ENOQUEUE;
    if (m == NULL)
        return 0;
    *mout = msg_find(s, *qout, m, mlen);
    return *mout ? 0 : -BURROW_STORE_ENOMESSAGE;
}

int
burrow_store_get(struct burrow_store *s, int64_t now, const char *a, size_t alen, const char *q,
                 size_t qlen, const char *m, size_t mlen, burrow_store_msg_fn visit, void *arg)
{
    struct burrow_msg_view v;
    struct queue *qu;
    struct msg *ms = NULL;
    int rc;

    burrow_store_tick(s, now);
    rc = resolve(s, a, alen, q, qlen, m, mlen, &qu, &ms);
    if (rc < 0 || visit == NULL)
        return rc;
    view(ms, now, &v);
    return visit(arg, &v);
}

/* Set ttl/hide on one message, keeping lists and heap right. Returns true
 * when the message became (or stays, by request) visible: a notification. */
static bool
msg_set(struct burrow_store *s, int64_t now, struct msg *ms, const int64_t *ttl,
        const int64_t *hide)
{
    bool was = visible(ms);

    if (ttl)
        ms->ttl = deadline(now, *ttl);
    if (hide)
        ms->hide = deadline(now, *hide);
    if (was && !visible(ms))
        vis_remove(ms->q, ms);
    else if (!was && visible(ms))
        vis_insert(ms->q, ms);
    heap_update(s, ms);
    return hide && *hide == 0;
}

int
burrow_store_update(struct burrow_store *s, int64_t now, const char *a, size_t alen, const char *q,
                    size_t qlen, const char *m, size_t mlen, const int64_t *ttl,
                    const int64_t *hide, burrow_store_msg_fn visit, void *arg)
{
    struct burrow_msg_view v;
    struct queue *qu;
    struct msg *ms = NULL;
    int rc;

    burrow_store_tick(s, now);
    if (heap_reserve(s) < 0)
        return -ENOMEM;
    rc = resolve(s, a, alen, q, qlen, m, mlen, &qu, &ms);
    if (rc < 0)
        return rc;
    if (msg_set(s, now, ms, ttl, hide))
        notify(s, qu);
    if (visit == NULL)
        return 0;
    view(ms, now, &v);
    return visit(arg, &v);
}

int
burrow_store_delete(struct burrow_store *s, int64_t now, const char *a, size_t alen, const char *q,
                    size_t qlen, const char *m, size_t mlen, burrow_store_msg_fn visit, void *arg)
{
    struct burrow_msg_view v;
    struct queue *qu;
    struct msg *ms = NULL;
    int rc;

    burrow_store_tick(s, now);
    rc = resolve(s, a, alen, q, qlen, m, mlen, &qu, &ms);
    if (rc < 0)
        return rc;
    if (visit) {
        view(ms, now, &v);
        rc = visit(arg, &v);
        if (rc < 0)
            return rc;
    }
    (void)msg_free(s, ms);
    return 0;
}

bool
burrow_store_has_account(struct burrow_store *s, int64_t now, const char *a, size_t alen)
{
    burrow_store_tick(s, now);
    return account_find(s, a, alen) != NULL;
}

bool
burrow_store_has_queue(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                       const char *q, size_t qlen)
{
    struct queue *qu;

    burrow_store_tick(s, now);
    return resolve(s, a, alen, q, qlen, NULL, 0, &qu, NULL) == 0;
}

/* Is <m> after the position (<st>, <id>) (no id: after the whole stamp)? */
static bool
msg_after(const struct msg *m, int64_t st, const char *id, size_t idlen)
{
    if (id == NULL)
        return m->stamp > st;
    return proto_burrow_key_cmp(m->stamp, m->data, m->id_len, st, id, idlen) > 0;
}

/* First message after the position (f->after, f->marker) in the whole or
 * the visible list: from the marker itself when this queue holds it at that
 * position, else walking from the nearer end by stamp. */
static struct msg *
msg_first_after(struct burrow_store *s, struct queue *qu, const struct burrow_store_filter *f)
{
    bool all = f->match_hidden;
    struct msg *head = all ? qu->head : qu->vhead, *tail = all ? qu->tail : qu->vtail, *x;
    struct msg *mk = f->marker ? msg_find(s, qu, f->marker, f->marker_len) : NULL;

    if (mk != NULL && mk->stamp == f->after) {
        if (all || visible(mk))
            return all ? mk->next : mk->vnext;
        for (x = mk->next; x && !visible(x); x = x->next)
            ;
        return x;
    }
    if (tail == NULL || !msg_after(tail, f->after, f->marker, f->marker_len))
        return NULL;
    if (f->after - head->stamp < tail->stamp - f->after) {
        for (x = head; !msg_after(x, f->after, f->marker, f->marker_len);)
            x = all ? x->next : x->vnext;
        return x;
    }
    for (x = tail;;) {
        struct msg *p = all ? x->prev : x->vprev;

        if (p == NULL || !msg_after(p, f->after, f->marker, f->marker_len))
            return x;
        x = p;
    }
}

/* Past the filter's upper bound? */
static bool
msg_past(const struct msg *m, const struct burrow_store_filter *f)
{
    int c;

    if (!f->has_upto)
        return false;
    if (f->upto_id == NULL)
        return m->stamp > f->upto;
    c = proto_burrow_key_cmp(m->stamp, m->data, m->id_len, f->upto, f->upto_id, f->upto_id_len);
    return c > 0;
}

/* First message a message-list walk visits, after the marker. */
static struct msg *
msg_first(struct burrow_store *s, struct queue *qu, const struct burrow_store_filter *f)
{
    struct msg *mk;

    if (f->has_after)
        return msg_first_after(s, qu, f);
    mk = f->marker ? msg_find(s, qu, f->marker, f->marker_len) : NULL;

    if (f->match_hidden)
        return mk ? mk->next : qu->head;
    if (mk == NULL)
        return qu->vhead;
    if (visible(mk))
        return mk->vnext;
    /* Hidden marker: walk to the next visible message (documented cost). */
    for (mk = mk->next; mk && !visible(mk); mk = mk->next)
        ;
    return mk;
}

static struct msg *
msg_step(const struct msg *m, bool match_hidden)
{
    return match_hidden ? m->next : m->vnext;
}

enum msg_op { OP_LIST, OP_UPDATE, OP_DELETE };

static int
messages_op(struct burrow_store *s, int64_t now, const char *a, size_t alen, const char *q,
            size_t qlen, const struct burrow_store_filter *f, enum msg_op op, const int64_t *ttl,
            const int64_t *hide, burrow_store_msg_fn visit, void *arg)
{
    struct burrow_msg_view v;
    struct queue *qu;
    struct msg *ms, *next;
    bool wake = false;
    int64_t n = 0;
    int rc;

    burrow_store_tick(s, now);
    if (op == OP_UPDATE && heap_reserve(s) < 0)
        return -ENOMEM;
    rc = resolve(s, a, alen, q, qlen, NULL, 0, &qu, NULL);
    if (rc < 0)
        return rc;
    for (ms = msg_first(s, qu, f); ms; ms = next) {
        if ((f->limit > 0 && n >= f->limit) || msg_past(ms, f))
            break;
        next = msg_step(ms, f->match_hidden);
        if (op == OP_UPDATE) {
            /* heap_update below may need one more slot for each message
             * that gets a deadline: reserve it first. */
            if (heap_reserve(s) < 0) {
                rc = -ENOMEM;
                break;
            }
            wake |= msg_set(s, now, ms, ttl, hide);
        }
        if (visit) {
            view(ms, now, &v);
            rc = visit(arg, &v);
            if (rc < 0)
                break;
        }
        n++;
        if (op == OP_DELETE && msg_free(s, ms) != GONE_MSG)
            break; /* the queue is gone */
    }
    if (wake)
        notify(s, qu);
    if (rc < 0)
        return rc;
    if (n == 0)
        return -BURROW_STORE_ENOMESSAGE;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

int
burrow_store_list_messages(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                           const char *q, size_t qlen, const struct burrow_store_filter *f,
                           burrow_store_msg_fn visit, void *arg)
{
    return messages_op(s, now, a, alen, q, qlen, f, OP_LIST, NULL, NULL, visit, arg);
}

int
burrow_store_update_messages(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                             const char *q, size_t qlen, const struct burrow_store_filter *f,
                             const int64_t *ttl, const int64_t *hide, burrow_store_msg_fn visit,
                             void *arg)
{
    return messages_op(s, now, a, alen, q, qlen, f, OP_UPDATE, ttl, hide, visit, arg);
}

int
burrow_store_delete_messages(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                             const char *q, size_t qlen, const struct burrow_store_filter *f,
                             burrow_store_msg_fn visit, void *arg)
{
    return messages_op(s, now, a, alen, q, qlen, f, OP_DELETE, NULL, NULL, visit, arg);
}

/* Delete every message of <q> (so <q> too); true when its account went. */
static bool
queue_drop(struct burrow_store *s, struct queue *q)
{
    enum gone g;

    do {
        g = msg_free(s, q->head);
    } while (g == GONE_MSG);
    return g == GONE_ACCOUNT;
}

/* List (and with <drop>, delete) the queues of an account after the
 * marker; one walk behind list_queues and delete_queues. */
static int
walk_queues(struct burrow_store *s, int64_t now, const char *a, size_t alen,
            const struct burrow_store_filter *f, burrow_store_id_fn visit, void *arg, bool drop)
{
    struct account *ac;
    struct queue *qu, *next;
    int64_t n = 0;
    int rc;

    burrow_store_tick(s, now);
    ac = account_find(s, a, alen);
    if (ac == NULL)
        return -BURROW_STORE_ENOACCOUNT;
    qu = f->marker ? queue_find(s, ac, f->marker, f->marker_len) : NULL;
    for (qu = qu ? qu->next : ac->qhead; qu; qu = next) {
        if (f->limit > 0 && n >= f->limit)
            break;
        if (visit && (rc = visit(arg, qu->id, qu->id_len, qu->stamp)) < 0)
            return rc;
        n++;
        next = qu->next;
        if (drop && queue_drop(s, qu))
            break; /* the account is gone */
    }
    if (n == 0)
        return -BURROW_STORE_ENOQUEUE;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

int
burrow_store_list_queues(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                         const struct burrow_store_filter *f, burrow_store_id_fn visit, void *arg)
{
    return walk_queues(s, now, a, alen, f, visit, arg, false);
}

int
burrow_store_delete_queues(struct burrow_store *s, int64_t now, const char *a, size_t alen,
                           const struct burrow_store_filter *f, burrow_store_id_fn visit, void *arg)
{
    return walk_queues(s, now, a, alen, f, visit, arg, true);
}

/* List (and with <drop>, delete) the accounts after the marker. */
static int
walk_accounts(struct burrow_store *s, int64_t now, const struct burrow_store_filter *f,
              burrow_store_id_fn visit, void *arg, bool drop)
{
    struct account *ac, *next;
    int64_t n = 0;
    int rc;

    burrow_store_tick(s, now);
    ac = f->marker ? account_find(s, f->marker, f->marker_len) : NULL;
    for (ac = ac ? ac->next : s->ahead; ac; ac = next) {
        if (f->limit > 0 && n >= f->limit)
            break;
        if (visit && (rc = visit(arg, ac->id, ac->id_len, ac->stamp)) < 0)
            return rc;
        n++;
        next = ac->next;
        /* Dropping the last queue frees the account. */
        while (drop && !queue_drop(s, ac->qhead))
            ;
    }
    if (n == 0)
        return -BURROW_STORE_ENOACCOUNT;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

int
burrow_store_list_accounts(struct burrow_store *s, int64_t now, const struct burrow_store_filter *f,
                           burrow_store_id_fn visit, void *arg)
{
    return walk_accounts(s, now, f, visit, arg, false);
}

int
burrow_store_delete_accounts(struct burrow_store *s, int64_t now,
                             const struct burrow_store_filter *f, burrow_store_id_fn visit,
                             void *arg)
{
    return walk_accounts(s, now, f, visit, arg, true);
}

void
burrow_store_stats(const struct burrow_store *s, struct burrow_store_stats *out)
{
    out->accounts = s->naccounts;
    out->queues = s->queues.n;
    out->messages = s->msgs.n;
    out->timed = s->nheap;
}
