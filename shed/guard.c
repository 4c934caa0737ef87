/* SPDX-License-Identifier: ISC */
/*
 * shed/guard: see guard.h. Open connections are a list (the sweep walks
 * them every tick; at most limits.connections of them); connections per
 * client address are an open-addressing table rebuilt when it fills with
 * addresses that have no connection left.
 */
#include "shed/guard.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "proto/burrow.h"

#define LOG_EVERY_MS 10000

struct gconn {
    struct gconn *prev, *next;
    int fd;
    _Atomic uint64_t deadline; /* monotonic ms; UINT64_MAX: none; no lock needed */
    unsigned char key[16];
    bool keyed;
    /* The current request's raw target (shed_guard_uri()): */
    const char *raw; /* in MHD's buffer, up to the first NUL */
    size_t raw_len;
    int terr;       /* 0, -PROTO_ETOOMANY or -PROTO_EBADTARGET */
    char *abs_path; /* an absolute-form target's path, owned */
};

struct slot {
    unsigned char key[16];
    uint32_t n;
    bool used;
};

struct shed_guard {
    pthread_mutex_t mu;
    _Atomic uint64_t header_ms, idle_ms; /* read on every request, without the lock */
    unsigned per_source;
    struct gconn head; /* sentinel of the list of open connections */
    size_t open;
    struct slot *tab;
    size_t cap, used;
    uint64_t timeouts, refused, logged_timeouts, logged_refused, last_log;
};

/* <addr> as 16 bytes (IPv4 mapped into IPv6); false for other families. */
static bool
key_of(const struct sockaddr *addr, unsigned char key[16])
{
    memset(key, 0, 16);
    if (addr == NULL)
        return false;
    if (addr->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)addr)->sin_addr, 4);
        return true;
    }
    if (addr->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
        return true;
    }
    return false;
}

static size_t
hash(const unsigned char key[16])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

/* The slot of <key>, inserting it when <add>; NULL if absent (or no room).
 * Caller holds gd->mu. */
static struct slot *
slot_of(struct shed_guard *gd, const unsigned char key[16], bool add)
{
    if (gd->tab == NULL)
        return NULL;
    for (size_t i = hash(key) & (gd->cap - 1), k = 0; k < gd->cap;
         i = (i + 1) & (gd->cap - 1), k++) {
        struct slot *s = &gd->tab[i];
        if (s->used && memcmp(s->key, key, 16) == 0)
            return s;
        if (!s->used) {
            if (!add)
                return NULL;
            memcpy(s->key, key, 16);
            s->used = true;
            s->n = 0;
            gd->used++;
            return s;
        }
    }
    return NULL;
}

/* Drop addresses with no connection left once 3/4 of the slots are used. */
static void
maybe_rebuild(struct shed_guard *gd)
{
    if (gd->used * 4 < gd->cap * 3)
        return;
    struct slot *old = gd->tab, *fresh = calloc(gd->cap, sizeof(*fresh));
    if (fresh == NULL)
        return; /* keep the full table: new addresses go uncounted */
    gd->tab = fresh;
    gd->used = 0;
    for (size_t i = 0; i < gd->cap; i++)
        if (old[i].used && old[i].n > 0)
            slot_of(gd, old[i].key, true)->n = old[i].n;
    free(old);
}

int
shed_guard_create(size_t max_conns, struct shed_guard **out)
{
    struct shed_guard *gd = calloc(1, sizeof(*gd));
    size_t cap = 64;

    *out = gd;
    if (gd == NULL)
        return -ENOMEM;
    pthread_mutex_init(&gd->mu, NULL);
    gd->head.next = gd->head.prev = &gd->head;
    while (cap < 2 * max_conns + 16)
        cap *= 2;
    gd->tab = calloc(cap, sizeof(*gd->tab));
    if (gd->tab == NULL)
        return -ENOMEM;
    gd->cap = cap;
    return 0;
}

void
shed_guard_set(struct shed_guard *gd, uint64_t header_ms, uint64_t idle_ms, unsigned per_source)
{
    pthread_mutex_lock(&gd->mu);
    gd->header_ms = header_ms;
    gd->idle_ms = idle_ms;
    gd->per_source = per_source;
    pthread_mutex_unlock(&gd->mu);
}

void
shed_guard_destroy(struct shed_guard *gd)
{
    if (gd == NULL)
        return;
    free(gd->tab);
    pthread_mutex_destroy(&gd->mu);
    free(gd);
}

enum MHD_Result
shed_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct shed_guard *gd = cls;
    unsigned char key[16];
    enum MHD_Result r = MHD_YES;

    (void)addrlen;
    if (!key_of(addr, key))
        return MHD_YES;
    pthread_mutex_lock(&gd->mu);
    if (gd->per_source > 0) {
        const struct slot *s = slot_of(gd, key, false);
        if (s != NULL && s->n >= gd->per_source) {
            gd->refused++;
            r = MHD_NO;
        }
    }
    pthread_mutex_unlock(&gd->mu);
    return r;
}

void
shed_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode code)
{
    struct shed_guard *gd = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct gconn *g = calloc(1, sizeof(*g));
        if (g == NULL)
            return; /* unguarded, never refused for it */
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        g->fd = fi != NULL ? fi->connect_fd : -1;
        g->keyed = ai != NULL && key_of(ai->client_addr, g->key);
        pthread_mutex_lock(&gd->mu);
        g->deadline = gd->header_ms > 0 ? clock_mono_ms() + gd->header_ms : UINT64_MAX;
        if (g->keyed) {
            maybe_rebuild(gd);
            struct slot *s = slot_of(gd, g->key, true);
            if (s != NULL)
                s->n++;
            else
                g->keyed = false;
        }
        g->next = gd->head.next;
        g->prev = &gd->head;
        gd->head.next->prev = g;
        gd->head.next = g;
        gd->open++;
        pthread_mutex_unlock(&gd->mu);
        *socket_context = g;
        return;
    }
    struct gconn *g = *socket_context;
    if (code != MHD_CONNECTION_NOTIFY_CLOSED || g == NULL)
        return;
    pthread_mutex_lock(&gd->mu);
    if (g->keyed) {
        struct slot *s = slot_of(gd, g->key, false);
        if (s != NULL && s->n > 0)
            s->n--;
    }
    g->prev->next = g->next;
    g->next->prev = g->prev;
    gd->open--;
    pthread_mutex_unlock(&gd->mu);
    *socket_context = NULL;
    free(g->abs_path);
    free(g);
}

static struct gconn *
gconn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

void *
shed_guard_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct gconn *g = gconn_of(conn);
    struct proto_burrow_target t;
    const char *qm;

    (void)cls; /* the guard: the connection's own record is all it needs */
    if (g == NULL)
        return NULL;
    free(g->abs_path);
    g->abs_path = NULL;
    g->raw = uri;
    g->raw_len = strlen(uri);
    g->terr = 0;
    qm = memchr(uri, '?', g->raw_len);
    if (qm != NULL && proto_burrow_query_count(qm + 1, g->raw_len - (size_t)(qm + 1 - uri)) >
                          PROTO_BURROW_QUERY_MAX) {
        g->terr = -PROTO_ETOOMANY;
#if MHD_VERSION >= 0x00097500 && MHD_VERSION <= 0x00097700
        /* Empty the query in MHD's own (writable) buffer before its split
         * exhausts the connection pool and loses the answer. */
        ((char *)qm)[1] = '\0';
#endif
        return NULL;
    }
    g->terr = proto_burrow_parse_target(uri, g->raw_len, &t);
    if (g->terr == 0 && t.authority.len > 0)
        g->abs_path = strndup(t.path.ptr, t.path.len);
    return NULL; /* *con_cls stays NULL: the handler sees its first call */
}

int
shed_guard_target(struct MHD_Connection *conn, const char *version, const char **path,
                  const char **why)
{
    struct gconn *g = gconn_of(conn);

    if (g == NULL || g->raw == NULL)
        return 0;
    if (g->terr == -PROTO_ETOOMANY) {
        *why = "too many query parameters\n";
        return -E2BIG;
    }
    if (g->terr < 0) {
        *why = "bad request target\n";
        return -EINVAL;
    }
    /* The target ends where the version begins, one space before it;
     * anything else means a NUL cut it short. */
    if (version != NULL && g->raw + g->raw_len + 1 != version) {
        *why = "NUL in request target\n";
        return -EINVAL;
    }
    if (g->abs_path != NULL)
        *path = g->abs_path;
    return 0;
}

void
shed_guard_request(struct MHD_Connection *conn)
{
    struct gconn *g = gconn_of(conn);
    if (g == NULL)
        return;
    /* Headers complete: the handler has it. An atomic store, no lock: this
     * runs on every request (MHD keeps <g> alive while it calls us). */
    atomic_store_explicit(&g->deadline, UINT64_MAX, memory_order_relaxed);
}

void
shed_guard_done(struct shed_guard *gd, struct MHD_Connection *conn, uint64_t now_ms)
{
    struct gconn *g = gconn_of(conn);
    if (g == NULL)
        return;
    uint64_t header = atomic_load_explicit(&gd->header_ms, memory_order_relaxed);
    uint64_t idle = atomic_load_explicit(&gd->idle_ms, memory_order_relaxed);
    atomic_store_explicit(&g->deadline, header > 0 ? now_ms + idle + header : UINT64_MAX,
                          memory_order_relaxed);
}

size_t
shed_guard_sweep(struct shed_guard *gd, uint64_t now_ms)
{
    size_t n = 0;

    pthread_mutex_lock(&gd->mu);
    if (gd->head.next == NULL) {
        pthread_mutex_unlock(&gd->mu);
        return 0;
    }
    for (struct gconn *g = gd->head.next; g != &gd->head; g = g->next) {
        if (atomic_load_explicit(&g->deadline, memory_order_relaxed) > now_ms || g->fd < 0)
            continue;
        /* MHD sees the end of the stream and closes it in its own thread. */
        shutdown(g->fd, SHUT_RDWR);
        atomic_store_explicit(&g->deadline, UINT64_MAX, memory_order_relaxed);
        n++;
    }
    gd->timeouts += n;
    if (now_ms - gd->last_log >= LOG_EVERY_MS &&
        (gd->timeouts != gd->logged_timeouts || gd->refused != gd->logged_refused)) {
        log_warnx("guard: %" PRIu64 " connection%s closed past the header deadline, %" PRIu64
                  " refused over the per-source cap (%u) in the last %llu s; %zu open",
                  gd->timeouts - gd->logged_timeouts,
                  gd->timeouts - gd->logged_timeouts == 1 ? "" : "s",
                  gd->refused - gd->logged_refused, gd->per_source,
                  (unsigned long long)((now_ms - gd->last_log) / 1000), gd->open);
        gd->logged_timeouts = gd->timeouts;
        gd->logged_refused = gd->refused;
        gd->last_log = now_ms;
    }
    pthread_mutex_unlock(&gd->mu);
    return n;
}

size_t
shed_guard_metrics(struct shed_guard *gd, char *buf, size_t len)
{
    int n;

    if (len == 0)
        return 0;
    pthread_mutex_lock(&gd->mu);
    n = snprintf(buf, len,
                 "# HELP shed_connections_open Client connections open now.\n"
                 "# TYPE shed_connections_open gauge\n"
                 "shed_connections_open %zu\n"
                 "# HELP shed_header_timeouts_total Connections closed because their request "
                 "headers did not arrive in time.\n"
                 "# TYPE shed_header_timeouts_total counter\n"
                 "shed_header_timeouts_total %" PRIu64 "\n"
                 "# HELP shed_connections_refused_total Connections refused because their "
                 "client address had limits.per_source connections open.\n"
                 "# TYPE shed_connections_refused_total counter\n"
                 "shed_connections_refused_total %" PRIu64 "\n",
                 gd->open, gd->timeouts, gd->refused);
    pthread_mutex_unlock(&gd->mu);
    if (n < 0)
        return 0;
    return (size_t)n < len ? (size_t)n : len - 1;
}
