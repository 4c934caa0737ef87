/* SPDX-License-Identifier: ISC */
/*
 * shed/server: libmicrohttpd in its fastest mode for this work (one internal
 * polling thread with epoll per listener; a pool with `threads`), the limits
 * from the config, a no-op unescape callback (paths arrive raw and are
 * decoded by proto/burrow), and dispatch() below: the one place that decides
 * which code answers a request.
 *
 * With the aggregator role and one thread, the listeners run in MHD's
 * external epoll mode instead, on one loop thread of ours that also drives
 * the aggregator's fan-out (shed_agg_loop_fd/run): a list request's backend
 * answers are read, merged and the client answered on that one thread, with
 * no hand-over between threads (docs/aggregator.md, "Cost"). While a
 * backend answer is due, that loop busy-polls before it sleeps
 * (aggregation.busy_poll, common/busypoll.h).
 */
#include "shed/server.h"

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
#include "shed/agg_http.h"
#include "shed/cluster.h"
#include "shed/front.h"
#include "shed/guard.h"
#include "shed/ops.h"
#include "shed/park.h"
#include "shed/rcu.h"

#define ALL_ROLES (SHED_ROLE_LINE | SHED_ROLE_AGGREGATOR | SHED_ROLE_MASTER)

/* An adapter: answers (true) or declines (false). */
typedef bool shed_adapter_fn(struct shed_call *c);

static bool
any_path(const char *path)
{
    (void)path;
    return true;
}

static bool
lookup_path(const char *path)
{
    return shed_agg_is_lookup(path);
}

/* The one dispatch table: the first entry whose roles the shed has, whose
 * path matches and whose adapter does not decline answers. The shed's own
 * endpoints first; then the roles, the aggregator first when it is in the
 * same process (a list request is then served here instead of being
 * redirected to ourselves), the master last. */
static const struct {
    bool (*match)(const char *path);
    unsigned roles;
    shed_adapter_fn *fn;
} table[] = {
    {shed_cluster_match, ALL_ROLES, shed_cluster_handle}, /* sync, push, master, hints */
    {lookup_path, SHED_ROLE_AGGREGATOR, shed_agg_handle}, /* /_shed/lookup/... */
    {shed_ops_match, ALL_ROLES, shed_ops_handle},         /* heartbeats, status, metrics */
    {any_path, SHED_ROLE_AGGREGATOR, shed_agg_handle},
    {any_path, SHED_ROLE_LINE, shed_line_handle},
    {any_path, SHED_ROLE_MASTER, shed_master_handle},
};

struct shed_server {
    struct shed_daemon *ctx;
    struct MHD_Daemon *daemons[SHED_MAX_LISTEN];
    size_t ndaemons;
    /* Requests whose handler ran and whose completion MHD has not
     * reported: what SIGTERM waits for (idle keep-alive connections do not
     * count). */
    _Atomic unsigned inflight;
    /* The shared loop of external mode (see the top of the file). */
    struct {
        bool on;
        int epfd;  /* the daemons' epoll fds, the aggregator's, wfd */
        int wfd;   /* eventfd: stop */
        int aggfd; /* registered aggregator fd, -1: none (loop thread only) */
        _Atomic bool stop;
        pthread_t thread;
    } loop;
};

static bool
announces_body(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl != NULL && !(cl[0] == '0' && cl[1] == '\0'))
        return true;
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
}

static bool
dispatch(struct shed_call *c)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if ((c->cfg->roles & table[i].roles) && table[i].match(c->path) && table[i].fn(c))
            return true;
    return shed_http_reply(c, 404, "not found\n");
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
        const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    uint64_t t0 = clock_mono_ns();
    struct shed_server *srv = cls;
    struct shed_daemon *ctx = srv->ctx;
    const char *why = "";
    /* The raw target as the client sent it (shed/guard): a clear 400 for
     * what MHD would cut short or choke on, the path of an absolute URI. */
    if (shed_guard_target(conn, version, &url, &why) < 0) {
        if (*con_cls != NULL)
            return MHD_NO; /* answered on the first call already */
        shed_metrics_response(ctx->metrics, 400);
        shed_http_text(conn, 400, why);
        atomic_fetch_add(&srv->inflight, 1); /* completed() takes it back */
        *con_cls = SHED_HTTP_SEEN;
        return MHD_YES;
    }
    unsigned tok = shed_rcu_enter(registry_rcu(ctx->reg));
    struct shed_call c = {
        .ctx = ctx,
        .cfg = atomic_load(&ctx->cfg),
        .view = registry_view(ctx->reg),
        .conn = conn,
        .method = method,
        .m = shed_method_of(method),
        .path = url,
        .upload_data = upload_data,
        .upload_data_size = upload_data_size,
        .con_cls = con_cls,
        .first = *con_cls == NULL,
        .now_ms = t0 / 1000000,
    };
    c.has_body = c.first ? announces_body(conn) : false;
    if (c.first) {
        atomic_fetch_add(&srv->inflight, 1); /* completed() takes it back */
        shed_guard_request(conn);            /* its headers are complete */
    }
    bool queued = dispatch(&c);
    shed_rcu_leave(registry_rcu(ctx->reg), tok);
    if (*con_cls == NULL || !c.first)
        shed_metrics_duration(ctx->metrics, clock_mono_ns() - t0);
    if (*con_cls == NULL)
        *con_cls = SHED_HTTP_SEEN; /* any later call of this request is not its first */
    return queued ? MHD_YES : MHD_NO;
}

static void
completed(void *cls, struct MHD_Connection *conn, void **con_cls,
          enum MHD_RequestTerminationCode toe)
{
    struct shed_server *srv = cls;
    (void)toe;
    struct shed_req_ctx *ctx = *con_cls;
    if (ctx == SHED_HTTP_SEEN)
        shed_park_forget(srv->ctx->park, conn); /* a request held for the masters may end here */
    if (ctx != NULL && *con_cls != SHED_HTTP_SEEN)
        ctx->free_fn(ctx);
    if (ctx != NULL)
        atomic_fetch_sub(&srv->inflight, 1);
    *con_cls = NULL;
    shed_guard_done(srv->ctx->guard, conn, clock_mono_ms());
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
loop_watch(struct shed_server *srv, int fd, uint32_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};

    if (epoll_ctl(srv->loop.epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        log_warn("http: epoll_ctl fd=%d", fd);
}

/* Aggregator requests answered so far (a turn that answered one runs MHD
 * again at once). */
static uint64_t
answered(const struct shed_server *srv)
{
    return srv->ctx->agg != NULL ? shed_agg_answered(srv->ctx->agg) : 0;
}

bool
shed_server_shares_loop(const struct shed_config *cfg)
{
    return (cfg->roles & SHED_ROLE_AGGREGATOR) && cfg->threads <= 1;
}

static void *
loop_main(void *arg)
{
    struct shed_server *srv = arg;
    bool again = false;

    while (!atomic_load(&srv->loop.stop)) {
        struct epoll_event ev[SHED_MAX_LISTEN + 2];
        MHD_UNSIGNED_LONG_LONG t;
        uint64_t spin;
        int n, timeout = again ? 0 : 1000,
               fd = srv->ctx->agg != NULL ? shed_agg_loop_fd(srv->ctx->agg, &spin) : -1;
        bool agg_ready = false, due, mhd_ready[SHED_MAX_LISTEN] = {false};
        uint64_t resumes;

        if (fd != srv->loop.aggfd) {
            /* New engine (first list request) or none (stopped). */
            if (srv->loop.aggfd != -1)
                epoll_ctl(srv->loop.epfd, EPOLL_CTL_DEL, srv->loop.aggfd, NULL);
            srv->loop.aggfd = fd;
            if (fd != -1)
                loop_watch(srv, fd, SHED_MAX_LISTEN);
        }
        for (size_t i = 0; i < srv->ndaemons; i++)
            if (MHD_get_timeout(srv->daemons[i], &t) == MHD_YES &&
                t < (MHD_UNSIGNED_LONG_LONG)timeout)
                timeout = (int)t;
        /* While the aggregator expects a backend answer, look again
         * without sleeping for aggregation.busy_poll (common/busypoll.h). */
        n = busy_epoll_wait(srv->loop.epfd, ev, SHED_MAX_LISTEN + 2, timeout, spin);
        if (n == -1 && errno != EINTR)
            log_warn("http: epoll_wait");
        /* Only what is ready runs (each run costs epoll_wait calls). MHD
         * also runs when its timeout is due (n == 0: MHD_get_timeout() says 0
         * while it has work buffered, or a connection timed out); the
         * fan-out's own timer is in its fd. */
        due = n <= 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 < srv->ndaemons)
                mhd_ready[ev[i].data.u32] = true;
            else if (ev[i].data.u32 == SHED_MAX_LISTEN)
                agg_ready = true;
        }
        /* Backend answers first: the connections they resume are answered
         * by MHD_run() in this same turn. */
        resumes = answered(srv);
        if (agg_ready && srv->ctx->agg != NULL)
            shed_agg_loop_run(srv->ctx->agg);
        again = answered(srv) != resumes;
        resumes = answered(srv);
        for (size_t i = 0; i < srv->ndaemons; i++)
            if (mhd_ready[i] || again || due)
                MHD_run(srv->daemons[i]);
        /* A request answered inside its handler resumed its connection
         * during MHD_run(): one more turn, without waiting. */
        again = answered(srv) != resumes;
    }
    return NULL;
}

static int
loop_start(struct shed_server *srv)
{
    srv->loop.epfd = epoll_create1(EPOLL_CLOEXEC);
    srv->loop.wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->loop.epfd == -1 || srv->loop.wfd == -1)
        return -errno;
    loop_watch(srv, srv->loop.wfd, SHED_MAX_LISTEN + 1);
    for (size_t i = 0; i < srv->ndaemons; i++) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(srv->daemons[i], MHD_DAEMON_INFO_EPOLL_FD);
        if (info == NULL)
            return -EINVAL;
        loop_watch(srv, info->epoll_fd, (uint32_t)i);
    }
    atomic_store(&srv->loop.stop, false);
    if (pthread_create(&srv->loop.thread, NULL, loop_main, srv) != 0)
        return -EAGAIN;
    srv->loop.on = true;
    return 0;
}

static void
loop_stop(struct shed_server *srv)
{
    uint64_t one = 1;

    if (srv->loop.on) {
        atomic_store(&srv->loop.stop, true);
        if (write(srv->loop.wfd, &one, sizeof(one)) != (ssize_t)sizeof(one))
            log_warn("http: loop wake");
        pthread_join(srv->loop.thread, NULL);
        srv->loop.on = false;
    }
    if (srv->loop.epfd != -1)
        close(srv->loop.epfd);
    if (srv->loop.wfd != -1)
        close(srv->loop.wfd);
    srv->loop.epfd = srv->loop.wfd = srv->loop.aggfd = -1;
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
shed_server_start(struct shed_daemon *ctx, const struct shed_config *cfg, struct shed_server **out)
{
    /* One thread and the aggregator role: one shared loop (see the top). */
    bool external = shed_server_shares_loop(cfg);
    struct shed_server *srv = calloc(1, sizeof(*srv));

    *out = srv;
    if (srv == NULL)
        return -ENOMEM;
    srv->ctx = ctx;
    srv->loop.epfd = srv->loop.wfd = srv->loop.aggfd = -1;

    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct sockaddr_storage ss;
        if (listen_addr(cfg->listen[i], &ss) < 0) {
            log_warnx("http: bad listen address %s", cfg->listen[i]);
            return -EINVAL;
        }
        /* MHD_USE_TURBO: a new connection is read at once instead of being
         * added to epoll first, and closed without shutdown(SHUT_WR), so a
         * Connection: close redirect costs 5.2 system calls instead of 8.2
         * (no epoll_ctl ADD and DEL, no shutdown; nginx makes 6). Keep-alive
         * is unchanged (recvfrom, sendto; docs/performance.md). */
        unsigned flags =
            MHD_USE_EPOLL | MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
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
            {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, srv},
            {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)shed_guard_notify, ctx->guard},
            {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)shed_guard_uri, ctx->guard},
            {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
            {cfg->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
             (intptr_t)cfg->threads, NULL},
            {MHD_OPTION_END, 0, NULL},
        };
        struct MHD_Daemon *d = MHD_start_daemon(flags, 0, shed_guard_accept, ctx->guard, handler,
                                                srv, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
        if (d == NULL) {
            char why[128];
            listen_why(&ss, why, sizeof(why));
            log_warnx("http: cannot listen on %s: %s", cfg->listen[i], why);
            return -EADDRINUSE;
        }
        srv->daemons[srv->ndaemons++] = d;
        log_info("http: listening on %s (%u thread%s%s)", cfg->listen[i], cfg->threads,
                 cfg->threads > 1 ? "s" : "", external ? ", shared with the aggregator" : "");
    }
    if (external && loop_start(srv) < 0) {
        log_warnx("http: cannot start the event loop");
        return -EAGAIN;
    }
    return 0;
}

void
shed_server_quiesce(struct shed_server *srv)
{
    shed_park_stop(srv->ctx->park); /* held escalations are answered (503) first */
    for (size_t i = 0; i < srv->ndaemons; i++) {
        MHD_socket s = MHD_quiesce_daemon(srv->daemons[i]);
        if (s != MHD_INVALID_SOCKET)
            close(s);
    }
}

unsigned
shed_server_inflight(const struct shed_server *srv)
{
    return atomic_load(&srv->inflight);
}

unsigned
shed_server_connections(const struct shed_server *srv)
{
    unsigned n = 0;
    for (size_t i = 0; i < srv->ndaemons; i++) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(srv->daemons[i], MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (info != NULL)
            n += info->num_connections;
    }
    return n;
}

void
shed_server_stop(struct shed_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->ctx->agg != NULL)
        shed_agg_stop(srv->ctx->agg); /* MHD refuses to stop with suspended connections */
    shed_park_stop(srv->ctx->park);
    loop_stop(srv); /* MHD_run() is not called any more */
    for (size_t i = 0; i < srv->ndaemons; i++)
        MHD_stop_daemon(srv->daemons[i]);
    srv->ndaemons = 0;
    free(srv);
}
