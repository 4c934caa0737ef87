/* SPDX-License-Identifier: ISC */
/*
 * shed/http: libmicrohttpd in its fastest mode for this work (one internal
 * polling thread with epoll per listener; a pool with `threads`), the limits
 * from the config, a no-op unescape callback (paths arrive raw and are
 * decoded by proto/burrow), and dispatch() below: the one place that decides
 * which code answers a request.
 *
 * With the aggregator role and one thread, the listeners run in MHD's
 * external epoll mode instead, on one loop thread of ours that also drives
 * the aggregator's fan-out (shed_agg_fd/run): a list request's backend
 * answers are read, merged and the client answered on that one thread, with
 * no hand-over between threads (docs/aggregator.md, "Cost"). While a
 * backend answer is due, that loop busy-polls before it sleeps
 * (aggregation.busy_poll, common/busypoll.h).
 */
#include "shed/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/busypoll.h"
#include "common/clock.h"
#include "common/log.h"
#include "shed/agg.h"
#include "shed/cluster.h"
#include "shed/guard.h"
#include "shed/line.h"
#include "shed/ops.h"
#include "shed/rcu.h"

/* A role handler: answers (true) or declines (false). */
typedef bool shed_role_fn(struct shed_call *c);

/* Roles in the order they get a request. The aggregator goes first when it
 * is in the same process (a list request is then served here instead of
 * being redirected to ourselves); the master last. */
static const struct {
    unsigned role;
    shed_role_fn *fn;
} roles[] = {
    {SHED_ROLE_AGGREGATOR, shed_agg_handle},
    {SHED_ROLE_LINE, shed_line_handle},
    {SHED_ROLE_MASTER, shed_cluster_master_handle},
};

char shed_http_seen;

static struct MHD_Daemon *daemons[SHED_MAX_LISTEN];
static size_t ndaemons;

/* The shared loop of external mode (see the top of the file). */
static struct {
    bool on;
    int epfd;  /* the daemons' epoll fds, the aggregator's, wfd */
    int wfd;   /* eventfd: stop */
    int aggfd; /* registered aggregator fd, -1: none (loop thread only) */
    _Atomic bool stop;
    pthread_t thread;
} loop = {.epfd = -1, .wfd = -1, .aggfd = -1};

uint64_t
shed_now_ms(void)
{
    return clock_mono_ms();
}

static enum shed_method
method_of(const char *m)
{
    switch (m[0]) {
    case 'G':
        return strcmp(m, "GET") == 0 ? SHED_M_GET : SHED_M_OTHER;
    case 'H':
        return strcmp(m, "HEAD") == 0 ? SHED_M_HEAD : SHED_M_OTHER;
    case 'P':
        if (strcmp(m, "PUT") == 0)
            return SHED_M_PUT;
        return strcmp(m, "POST") == 0 ? SHED_M_POST : SHED_M_OTHER;
    case 'D':
        return strcmp(m, "DELETE") == 0 ? SHED_M_DELETE : SHED_M_OTHER;
    default:
        return SHED_M_OTHER;
    }
}

enum MHD_Result
shed_http_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result
shed_http_answer(struct MHD_Connection *conn, const struct shed_answer *a)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        a->body_len, (void *)(a->body != NULL ? a->body : ""), MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    if (a->body_len > 0)
        MHD_add_response_header(r, "Content-Type",
                                a->content_type != NULL ? a->content_type : "text/plain");
    if (a->location_len > 0) {
        MHD_add_response_header(r, "Location", a->location);
        MHD_add_response_header(r, "Cache-Control", "no-store");
        if (a->bucket[0] != '\0')
            MHD_add_response_header(r, "Shed-Bucket", a->bucket);
        if (a->generation[0] != '\0')
            MHD_add_response_header(r, "Shed-Generation", a->generation);
        if (a->pin_ttl[0] != '\0')
            MHD_add_response_header(r, "Shed-Pin-TTL", a->pin_ttl);
        if (a->ring != NULL)
            MHD_add_response_header(r, "Shed-Ring", a->ring);
    }
    if (a->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", a->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result ret = MHD_queue_response(conn, a->status, r);
    MHD_destroy_response(r);
    return ret;
}

bool
shed_http_authorized(struct MHD_Connection *conn, const char *credential)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    static const char bearer[] = "Bearer ";
    if (h == NULL || strncmp(h, bearer, sizeof(bearer) - 1) != 0 || credential[0] == '\0')
        return false;
    h += sizeof(bearer) - 1;
    size_t hl = strlen(h), cl = strlen(credential);
    /* Constant time in the credential's length: every byte is compared. */
    volatile unsigned char diff = (unsigned char)(hl != cl);
    for (size_t i = 0; i < cl; i++)
        diff |= (unsigned char)(credential[i] ^ (i < hl ? h[i] : 0));
    return diff == 0;
}

bool
shed_same_url(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 0 && a[la - 1] == '/')
        la--;
    while (lb > 0 && b[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

static bool
announces_body(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl != NULL && !(cl[0] == '0' && cl[1] == '\0'))
        return true;
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
}

/* The one dispatch: internal endpoints, then the roles in order. */
static bool
dispatch(struct shed_call *c)
{
    if (shed_cluster_match(c->path)) /* sync and master endpoints */
        return shed_cluster_handle(c);
    if ((c->cfg->roles & SHED_ROLE_AGGREGATOR) && shed_agg_is_lookup(c->path))
        return shed_agg_handle(c);
    if (shed_ops_match(c->path))
        return shed_ops_handle(c);
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if ((c->cfg->roles & roles[i].role) && roles[i].fn(c))
            return true;
    shed_metrics_response(404);
    shed_http_text(c->conn, 404, "not found\n");
    return true;
}

/* Requests whose handler ran and whose completion MHD has not reported:
 * what SIGTERM waits for (idle keep-alive connections do not count). */
static _Atomic unsigned inflight;

bool
shed_http_not_yet(struct shed_call *c)
{
    /* MHD 0.9.75 forces Connection: close on a response queued in the first
     * call, so a request without a body is answered on the second call; one
     * that announces a body is answered at once (Expect: 100-continue never
     * uploads), and a body sent anyway is dropped, answered at its end. */
    if (c->first && !c->has_body) {
        *c->con_cls = SHED_HTTP_SEEN;
        return true;
    }
    if (!c->first && *c->upload_data_size != 0) {
        *c->upload_data_size = 0;
        return true;
    }
    return false;
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
        const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    uint64_t t0 = clock_mono_ns();
    struct shed_ctx *ctx = cls;
    const char *why = "";
    /* The raw target as the client sent it (shed/guard): a clear 400 for
     * what MHD would cut short or choke on, the path of an absolute URI. */
    if (shed_guard_target(conn, version, &url, &why) < 0) {
        if (*con_cls != NULL)
            return MHD_NO; /* answered on the first call already */
        shed_metrics_response(400);
        shed_http_text(conn, 400, why);
        atomic_fetch_add(&inflight, 1); /* completed() takes it back */
        *con_cls = SHED_HTTP_SEEN;
        return MHD_YES;
    }
    unsigned tok = shed_rcu_enter();
    struct shed_call c = {
        .ctx = ctx,
        .cfg = atomic_load(&ctx->cfg),
        .view = registry_view(ctx->reg),
        .conn = conn,
        .method = method,
        .m = method_of(method),
        .path = url,
        .upload_data = upload_data,
        .upload_data_size = upload_data_size,
        .con_cls = con_cls,
        .first = *con_cls == NULL,
        .now_ms = t0 / 1000000,
    };
    c.has_body = c.first ? announces_body(conn) : false;
    if (c.first) {
        atomic_fetch_add(&inflight, 1); /* completed() takes it back */
        shed_guard_request(conn);       /* its headers are complete */
    }
    bool queued = dispatch(&c);
    shed_rcu_leave(tok);
    if (*con_cls == NULL || !c.first)
        shed_metrics_duration(clock_mono_ns() - t0);
    if (*con_cls == NULL)
        *con_cls = SHED_HTTP_SEEN; /* any later call of this request is not its first */
    return queued ? MHD_YES : MHD_NO;
}

static void
completed(void *cls, struct MHD_Connection *conn, void **con_cls,
          enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    struct shed_req_ctx *ctx = *con_cls;
    if (ctx == SHED_HTTP_SEEN)
        shed_cluster_forget(conn); /* a request held for the masters may end here */
    if (ctx != NULL && *con_cls != SHED_HTTP_SEEN)
        ctx->free_fn(ctx);
    if (ctx != NULL)
        atomic_fetch_sub(&inflight, 1);
    *con_cls = NULL;
    shed_guard_done(conn, clock_mono_ms());
}

static size_t
unescape_noop(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void __attribute__((format(printf, 2, 0))) mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    log_debug("mhd: %s", buf);
}

static int
listen_addr(const char *s, struct sockaddr_storage *ss)
{
    char host[64];
    const char *colon;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || (size_t)(close - s - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)atoi(colon + 1));
        return inet_pton(AF_INET6, host, &a6->sin6_addr) == 1 ? 0 : -EINVAL;
    }
    colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &a4->sin_addr) == 1 ? 0 : -EINVAL;
}

/* Watch <fd> in the loop, tagged <tag>: a daemon's index, SHED_MAX_LISTEN
 * for the aggregator, SHED_MAX_LISTEN + 1 for the stop eventfd. */
static void
loop_watch(int fd, uint32_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};

    if (epoll_ctl(loop.epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        log_warn("http: epoll_ctl fd=%d", fd);
}

static void *
loop_main(void *arg)
{
    bool again = false;

    (void)arg;
    while (!atomic_load(&loop.stop)) {
        struct epoll_event ev[SHED_MAX_LISTEN + 2];
        MHD_UNSIGNED_LONG_LONG t;
        uint64_t spin;
        int n, timeout = again ? 0 : 1000, fd = shed_agg_fd(&spin);
        bool agg_ready = false, due, mhd_ready[SHED_MAX_LISTEN] = {false};
        uint64_t resumes;

        if (fd != loop.aggfd) {
            /* New engine (first list request) or none (stopped). */
            if (loop.aggfd != -1)
                epoll_ctl(loop.epfd, EPOLL_CTL_DEL, loop.aggfd, NULL);
            loop.aggfd = fd;
            if (fd != -1)
                loop_watch(fd, SHED_MAX_LISTEN);
        }
        for (size_t i = 0; i < ndaemons; i++)
            if (MHD_get_timeout(daemons[i], &t) == MHD_YES && t < (MHD_UNSIGNED_LONG_LONG)timeout)
                timeout = (int)t;
        /* While the aggregator expects a backend answer, look again
         * without sleeping for aggregation.busy_poll (common/busypoll.h). */
        n = busy_epoll_wait(loop.epfd, ev, SHED_MAX_LISTEN + 2, timeout, spin);
        if (n == -1 && errno != EINTR)
            log_warn("http: epoll_wait");
        /* Only what is ready runs (each run costs epoll_wait calls). MHD
         * also runs when its timeout is due (n == 0: MHD_get_timeout() says 0
         * while it has work buffered, or a connection timed out); the
         * fan-out's own timer is in its fd. */
        due = n <= 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 < ndaemons)
                mhd_ready[ev[i].data.u32] = true;
            else if (ev[i].data.u32 == SHED_MAX_LISTEN)
                agg_ready = true;
        }
        /* Backend answers first: the connections they resume are answered
         * by MHD_run() in this same turn. */
        resumes = shed_agg_resumes();
        if (agg_ready)
            shed_agg_run();
        again = shed_agg_resumes() != resumes;
        resumes = shed_agg_resumes();
        for (size_t i = 0; i < ndaemons; i++)
            if (mhd_ready[i] || again || due)
                MHD_run(daemons[i]);
        /* A request answered inside its handler resumed its connection
         * during MHD_run(): one more turn, without waiting. */
        again = shed_agg_resumes() != resumes;
    }
    return NULL;
}

static int
loop_start(void)
{
    loop.epfd = epoll_create1(EPOLL_CLOEXEC);
    loop.wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop.epfd == -1 || loop.wfd == -1)
        return -errno;
    loop_watch(loop.wfd, SHED_MAX_LISTEN + 1);
    for (size_t i = 0; i < ndaemons; i++) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(daemons[i], MHD_DAEMON_INFO_EPOLL_FD);
        if (info == NULL)
            return -EINVAL;
        loop_watch(info->epoll_fd, (uint32_t)i);
    }
    atomic_store(&loop.stop, false);
    if (pthread_create(&loop.thread, NULL, loop_main, NULL) != 0)
        return -EAGAIN;
    loop.on = true;
    return 0;
}

static void
loop_stop(void)
{
    uint64_t one = 1;

    if (loop.on) {
        atomic_store(&loop.stop, true);
        if (write(loop.wfd, &one, sizeof(one)) != (ssize_t)sizeof(one))
            log_warn("http: loop wake");
        pthread_join(loop.thread, NULL);
        loop.on = false;
    }
    if (loop.epfd != -1)
        close(loop.epfd);
    if (loop.wfd != -1)
        close(loop.wfd);
    loop.epfd = loop.wfd = loop.aggfd = -1;
}

/* Why MHD could not listen on <ss> (it tells only its debug log): bind a
 * socket the way it does (SO_REUSEADDR) and take errno. */
static void
listen_why(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    socklen_t sl =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int one = 1, fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(buf, len, "unknown reason (shed -d shows libmicrohttpd's)");
    if (fd == -1) {
        snprintf(buf, len, "%s", strerror(errno));
        return;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, sl) == -1 || listen(fd, 1) == -1)
        snprintf(buf, len, "%s", strerror(errno));
    close(fd);
}

int
shed_http_start(struct shed_ctx *ctx, const struct shed_config *cfg)
{
    /* One thread and the aggregator role: one shared loop (see the top). */
    bool external = (cfg->roles & SHED_ROLE_AGGREGATOR) && cfg->threads <= 1;

    shed_agg_set_external(external);
    if (shed_guard_init(cfg->limits.header_timeout_ms, cfg->limits.idle_timeout_ms,
                        cfg->limits.per_source, cfg->limits.connections) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct sockaddr_storage ss;
        if (listen_addr(cfg->listen[i], &ss) < 0) {
            log_warnx("http: bad listen address %s", cfg->listen[i]);
            return -EINVAL;
        }
        unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        if (!external)
            flags |= MHD_USE_INTERNAL_POLLING_THREAD;
        if (ss.ss_family == AF_INET6)
            flags |= MHD_USE_IPv6;
        struct MHD_OptionItem opts[] = {
            {MHD_OPTION_SOCK_ADDR, 0, &ss},
            {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->limits.connections, NULL},
            {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)cfg->limits.connection_memory, NULL},
            {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)((cfg->limits.idle_timeout_ms + 999) / 1000),
             NULL},
            {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
            {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape_noop, NULL},
            {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, NULL},
            {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)shed_guard_notify, NULL},
            {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)shed_guard_uri, NULL},
            {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
            {cfg->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
             (intptr_t)cfg->threads, NULL},
            {MHD_OPTION_END, 0, NULL},
        };
        struct MHD_Daemon *d = MHD_start_daemon(flags, 0, shed_guard_accept, NULL, handler, ctx,
                                                MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
        if (d == NULL) {
            char why[128];
            listen_why(&ss, why, sizeof(why));
            log_warnx("http: cannot listen on %s: %s", cfg->listen[i], why);
            shed_http_stop();
            return -EADDRINUSE;
        }
        daemons[ndaemons++] = d;
        log_info("http: listening on %s (%u thread%s%s)", cfg->listen[i], cfg->threads,
                 cfg->threads > 1 ? "s" : "", external ? ", shared with the aggregator" : "");
    }
    if (external && loop_start() < 0) {
        log_warnx("http: cannot start the event loop");
        shed_http_stop();
        return -EAGAIN;
    }
    return 0;
}

void
shed_http_quiesce(void)
{
    shed_cluster_unpark_stop(); /* held escalations are answered (503) first */
    for (size_t i = 0; i < ndaemons; i++) {
        MHD_socket s = MHD_quiesce_daemon(daemons[i]);
        if (s != MHD_INVALID_SOCKET)
            close(s);
    }
}

unsigned
shed_http_inflight(void)
{
    return atomic_load(&inflight);
}

unsigned
shed_http_connections(void)
{
    unsigned n = 0;
    for (size_t i = 0; i < ndaemons; i++) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(daemons[i], MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (info != NULL)
            n += info->num_connections;
    }
    return n;
}

void
shed_http_stop(void)
{
    shed_agg_shutdown(); /* MHD refuses to stop with suspended connections */
    shed_cluster_unpark_stop();
    loop_stop(); /* MHD_run() is not called any more */
    for (size_t i = 0; i < ndaemons; i++)
        MHD_stop_daemon(daemons[i]);
    ndaemons = 0;
    shed_guard_fini();
}
