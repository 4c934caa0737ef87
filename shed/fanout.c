/* SPDX-License-Identifier: ISC */
/*
 * shed/fanout: a libcurl multi engine (see fanout.h) on libcurl's socket
 * API. Every curl call happens under one lock, in whichever thread holds
 * it: a submitting thread adds its easy handles and lets libcurl send the
 * requests at once (a reused keep-alive connection needs no thread hop to
 * get a request on the wire); the thread that polls the engine's epoll fd
 * (the engine's own thread, or the caller's event loop) reads the answers.
 * Easy handles are recycled through a small free list, and the multi
 * handle's connection cache keeps backend connections alive across batches.
 */
#include "shed/fanout.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/busypoll.h"
#include "common/clock.h"
#include "common/log.h"

#define FREE_EASY_MAX 64
#define EVENTS_MAX    64
#define FDS_MAX       (1u << 20) /* fds tracked in fds[]; above: plain ADD/DEL */
#define LOAD_LOOK_NS  20000000u  /* the run queue is read at most this often */

struct batch;

struct job {
    struct batch *batch; /* owning batch */
    size_t idx;          /* position in the batch */
    CURL *easy;          /* while running; NULL otherwise */
    char *url;           /* owned copy */
    char method[8];      /* "GET", "POST", "DELETE" */
    long timeout_ms;
    char *buf; /* answer body, owned */
    size_t len, cap;
    size_t max; /* max_body, copied at start */
    bool over;  /* answer exceeded max_body or the engine's max_total */
    bool finished;
    bool long_poll; /* from the request */
    bool expected;  /* counted in the engine's expecting */
    int64_t clock;  /* Shed-Clock of the answer, 0: none */
};

struct batch {
    struct shed_fanout *f;       /* the engine (answer bytes are counted there) */
    struct batch *next;          /* pending queue link */
    struct job *jobs;            /* owned, n entries */
    struct shed_fanout_res *res; /* owned, n entries */
    size_t n, left;
    shed_fanout_each_fn each;
    shed_fanout_done_fn done;
    void *arg;
    uint64_t t0_ns;
    struct batch *anext; /* active list link */
};

struct shed_fanout {
    pthread_mutex_t lock; /* recursive; guards everything below but the atomics */
    CURLM *multi;
    int epfd;       /* libcurl's sockets, tfd and wfd */
    int tfd;        /* timerfd: libcurl's timeout */
    int wfd;        /* eventfd: wakes the engine thread to stop */
    bool kick;      /* libcurl asked for a timeout of 0: act before unlocking */
    uint64_t armed; /* tfd fires then (monotonic ns); 0: not armed */
    bool busy;      /* settle() runs: submits only queue */
    struct batch *pending, **pending_tail;
    struct batch *active;
    bool threaded;
    pthread_t thread;
    _Atomic bool stopping;
    size_t max_body;
    size_t max_total;    /* answer bytes held at once, all batches */
    _Atomic size_t held; /* answer buffer bytes allocated now */
    long connect_timeout_ms;
    CURL *free_easy[FREE_EASY_MAX];
    size_t nfree;
    uint8_t *fds; /* FD_* state per fd number, nfds entries */
    size_t nfds;
    _Atomic uint64_t started, failed, connects;
    _Atomic size_t expecting;                /* running jobs that are not long-polls */
    _Atomic uint64_t busy_poll_ns;           /* shed_fanout_set_busy_poll() */
    size_t ncpus;                            /* online CPUs at creation (busy poll rule) */
    _Atomic uint64_t load_look_ns;           /* when the run queue was last looked at */
    _Atomic bool crowded;                    /* more tasks runnable than CPUs then */
    unsigned long (*_Atomic runnable)(void); /* shed_fanout_set_runnable_fn() */
};

static double
ms_since(uint64_t t0_ns)
{
    return (double)(clock_mono_ns() - t0_ns) / 1e6;
}

static size_t
on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct job *j = userdata;
    struct shed_fanout *f = j->batch->f;
    size_t n = size * nmemb;

    if (j->len + n > j->max) {
        j->over = true;
        return 0;
    }
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 4096;
        char *p;

        while (cap < j->len + n + 1)
            cap *= 2;
        if (cap > j->max + 1)
            cap = j->max + 1; /* len + n <= max */
        /* Every answer held at once fits in max_total: past it, this one
         * fails like an answer over max_body. */
        if (atomic_fetch_add(&f->held, cap - j->cap) + (cap - j->cap) > f->max_total) {
            atomic_fetch_sub(&f->held, cap - j->cap);
            j->over = true;
            return 0;
        }
        p = realloc(j->buf, cap);
        if (p == NULL) {
            atomic_fetch_sub(&f->held, cap - j->cap);
            return 0;
        }
        j->buf = p;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, ptr, n);
    j->len += n;
    return n;
}

/* Header lines: only Shed-Clock is kept (digits, within int64_t). */
static size_t
on_header(char *p, size_t size, size_t nmemb, void *userdata)
{
    static const char name[] = "shed-clock:";
    struct job *j = userdata;
    size_t n = size * nmemb, i = sizeof(name) - 1;
    int64_t v = 0;

    if (n <= i || strncasecmp(p, name, i) != 0)
        return n;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    while (i < n && p[i] >= '0' && p[i] <= '9' && v <= (INT64_MAX - 9) / 10)
        v = v * 10 + (p[i++] - '0');
    j->clock = v;
    return n;
}

static curl_socket_t on_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a);

/* A handle for one transfer. Options that are the same for every transfer
 * are set once, when the handle is made; a recycled handle keeps them (no
 * curl_easy_reset(), which frees and rebuilds the whole option set), and
 * job_start() sets only what differs per request. */
static CURL *
easy_get(struct shed_fanout *f)
{
    CURL *e;

    if (f->nfree > 0)
        return f->free_easy[--f->nfree];
    e = curl_easy_init();
    if (e == NULL)
        return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, f->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->max_body);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, f);
    /* Backends are reached directly: no proxy, and so no look at the
     * *_proxy environment variables on every transfer. */
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    return e;
}

static void
easy_put(struct shed_fanout *f, CURL *e)
{
    if (f->nfree < FREE_EASY_MAX)
        f->free_easy[f->nfree++] = e;
    else
        curl_easy_cleanup(e);
}

static uint8_t *fd_state(struct shed_fanout *f, curl_socket_t s);

/* libcurl opens a socket: whatever was known of an earlier socket with the
 * same number is stale (closing it dropped it from epfd), so its state
 * starts clean. (libcurl 7.88 closes sockets of failed connects without
 * its close callback, so the state is reset here, where every socket is
 * born.) */
static curl_socket_t
on_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    curl_socket_t s = socket(a->family, a->socktype, a->protocol);
    uint8_t *st;

    (void)purpose;
    if (s != CURL_SOCKET_BAD && (st = fd_state(clientp, s)) != NULL)
        *st = 0;
    return s;
}

static int
job_start(struct shed_fanout *f, struct job *j)
{
    CURL *e = easy_get(f);

    if (e == NULL)
        return -ENOMEM;
    j->max = f->max_body;
    j->clock = 0;
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, j->timeout_ms);
    /* NULL for GET: a recycled handle may have had another method. */
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(j->method, "GET") != 0 ? j->method : NULL);
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
        easy_put(f, e);
        return -ENOMEM;
    }
    j->easy = e;
    atomic_fetch_add(&f->started, 1);
    if (!j->long_poll) {
        j->expected = true;
        atomic_fetch_add(&f->expecting, 1);
    }
    return 0;
}

/* Job <j> ends (answered, failed or cancelled). */
static void
job_ended(struct shed_fanout *f, struct job *j)
{
    j->finished = true;
    if (j->expected) {
        j->expected = false;
        atomic_fetch_sub(&f->expecting, 1);
    }
}

static void
batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->jobs[i].url);
        free(b->jobs[i].buf);
        atomic_fetch_sub(&b->f->held, b->jobs[i].cap);
    }
    free(b->jobs);
    free(b->res);
    free(b);
}

static void
active_remove(struct shed_fanout *f, struct batch *b)
{
    struct batch **pp = &f->active;

    while (*pp != NULL && *pp != b)
        pp = &(*pp)->anext;
    if (*pp == b)
        *pp = b->anext;
}

static void
batch_cancel_rest(struct shed_fanout *f, struct batch *b)
{
    for (size_t i = 0; i < b->n && b->left > 0; i++) {
        struct job *j = &b->jobs[i];

        if (j->finished)
            continue;
        if (j->easy != NULL) {
            curl_multi_remove_handle(f->multi, j->easy);
            easy_put(f, j->easy);
            j->easy = NULL;
        }
        /* Mark finished without callbacks; the last one completes below. */
        job_ended(f, j);
        b->res[i].status = 0;
        b->res[i].err = -ECANCELED;
        b->res[i].body = (char *)"";
        b->res[i].len = 0;
        b->res[i].ms = ms_since(b->t0_ns);
        b->left--;
    }
}

static void
batch_complete(struct shed_fanout *f, struct batch *b)
{
    active_remove(f, b);
    b->done(b->arg, b->res, b->n);
    batch_free(b);
}

/* Record the end of job <j>; returns true when that completed and freed its
 * batch. */
static bool
job_finish(struct shed_fanout *f, struct job *j, int status, int err)
{
    struct batch *b = j->batch;
    struct shed_fanout_res *r = &b->res[j->idx];

    job_ended(f, j);
    r->status = status;
    r->err = err;
    if (j->buf == NULL) {
        r->body = (char *)"";
        r->len = 0;
    } else {
        j->buf[j->len] = '\0';
        r->body = j->buf;
        r->len = j->len;
    }
    r->ms = ms_since(b->t0_ns);
    r->clock = j->clock;
    if (status == 0)
        atomic_fetch_add(&f->failed, 1);
    b->left--;
    if (b->each != NULL && b->each(b->arg, j->idx, r) && b->left > 0)
        batch_cancel_rest(f, b);
    if (b->left > 0)
        return false;
    batch_complete(f, b);
    return true;
}

static int
curl_err(CURLcode c, bool over)
{
    if (over)
        return -E2BIG;
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_WRITE_ERROR:
        return -E2BIG;
    default:
        return -EIO;
    }
}

/* Start the queued batches. Lock held. */
static void
take_pending(struct shed_fanout *f)
{
    struct batch *b = f->pending;

    f->pending = NULL;
    f->pending_tail = &f->pending;
    while (b != NULL) {
        struct batch *next = b->next;

        b->t0_ns = clock_mono_ns();
        b->anext = f->active;
        f->active = b;
        for (size_t i = 0; i < b->n; i++) {
            if (b->jobs[i].finished)
                continue;
            /* A failed start finishes the job at once; stop touching the
             * batch when that completed (and freed) it. */
            if (job_start(f, &b->jobs[i]) < 0 && job_finish(f, &b->jobs[i], 0, -ENOMEM))
                break;
        }
        b = next;
    }
}

static void
read_infos(struct shed_fanout *f)
{
    CURLMsg *m;
    int q;

    while ((m = curl_multi_info_read(f->multi, &q)) != NULL) {
        struct job *j = NULL;
        long code = 0, nconn = 0;
        CURL *e = m->easy_handle;
        CURLcode rc;

        if (m->msg != CURLMSG_DONE)
            continue;
        rc = m->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&j);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        if (curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && nconn > 0)
            atomic_fetch_add(&f->connects, (uint64_t)nconn);
        curl_multi_remove_handle(f->multi, e);
        easy_put(f, e);
        if (j == NULL)
            continue;
        j->easy = NULL;
        if (j->finished)
            continue;
        if (rc != CURLE_OK || j->over)
            job_finish(f, j, 0, curl_err(rc, j->over));
        else
            job_finish(f, j, (int)code, 0);
    }
}

/* Drive libcurl until nothing is left to do without waiting: timeouts of 0,
 * finished transfers (callbacks may submit more), new batches. Lock held;
 * not re-entered (a submit from a callback only queues). */
static void
settle(struct shed_fanout *f)
{
    int running;

    if (f->busy)
        return;
    f->busy = true;
    for (;;) {
        if (f->pending != NULL)
            take_pending(f);
        while (f->kick) {
            f->kick = false;
            curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        read_infos(f);
        if (f->pending == NULL && !f->kick)
            break;
    }
    f->busy = false;
}

/* Registration state of one fd in epfd (see on_socket()). */
#define FD_IN   0x1u
#define FD_OUT  0x2u
#define FD_REG  0x4u /* in epfd with the events above */
#define FD_WANT 0x8u /* libcurl watches it (no CURL_POLL_REMOVE since) */

static uint8_t *
fd_state(struct shed_fanout *f, curl_socket_t s)
{
    size_t need = (size_t)s + 1, cap = f->nfds;

    if (s < 0 || need > FDS_MAX)
        return NULL;
    if (need > cap) {
        uint8_t *p;

        cap = cap ? cap : 256;
        while (cap < need)
            cap *= 2;
        p = realloc(f->fds, cap);
        if (p == NULL)
            return NULL;
        memset(p + f->nfds, 0, cap - f->nfds);
        f->fds = p;
        f->nfds = cap;
    }
    return &f->fds[s];
}

/* libcurl drops a kept-alive connection's socket after every transfer and
 * asks for it again with the next one: the socket stays in epfd meanwhile,
 * and when it is asked for with the events it is registered with, no
 * system call is made (a kept-alive transfer costs no epoll_ctl). It is
 * taken out only if an event arrives while nobody watches it. A new socket
 * starts with a clean state (on_open()), and MOD and ADD fall back on each
 * other, so a socket number reused is safe. */
static int
on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct shed_fanout *f = userp;
    struct epoll_event ev = {0};
    uint8_t *st = fd_state(f, s), want;
    int op;

    (void)e;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        if (st != NULL)
            *st &= (uint8_t)~FD_WANT;
        else
            epoll_ctl(f->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    want = (uint8_t)((what & CURL_POLL_IN ? FD_IN : 0u) | (what & CURL_POLL_OUT ? FD_OUT : 0u));
    if (st != NULL && (*st & FD_REG) && (*st & (FD_IN | FD_OUT)) == want) {
        *st |= FD_WANT; /* already in epfd with these events: no system call */
        return 0;
    }
    ev.events = (want & FD_IN ? EPOLLIN : 0u) | (want & FD_OUT ? EPOLLOUT : 0u);
    ev.data.fd = s;
    op = st != NULL && (*st & FD_REG) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(f->epfd, op, s, &ev) == -1) {
        op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(f->epfd, op, s, &ev) == -1) {
            log_warn("fanout: epoll_ctl fd=%d", (int)s);
            if (st != NULL)
                *st = 0;
            return 0;
        }
    }
    if (st != NULL)
        *st = (uint8_t)(want | FD_REG | FD_WANT);
    return 0;
}

static int
on_timer(CURLM *m, long timeout_ms, void *userp)
{
    struct shed_fanout *f = userp;
    struct itimerspec its = {0};
    uint64_t due;

    (void)m;
    if (timeout_ms == 0) {
        /* Acted on before the lock is released (settle()): no wake-up. */
        f->kick = true;
        return 0;
    }
    if (timeout_ms < 0)
        return 0; /* an armed timer just fires early: run() asks again */
    /* libcurl moves its timer on every transfer; an earlier wake-up is
     * harmless, so the timerfd is only re-armed to fire sooner. */
    due = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    if (f->armed != 0 && f->armed <= due && f->armed > clock_mono_ns())
        return 0;
    f->armed = due;
    its.it_value.tv_sec = (time_t)(due / 1000000000u);
    its.it_value.tv_nsec = (long)(due % 1000000000u);
    timerfd_settime(f->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    return 0;
}

void
shed_fanout_run(struct shed_fanout *f)
{
    struct epoll_event ev[EVENTS_MAX];
    int n, running;

    pthread_mutex_lock(&f->lock);
    n = epoll_wait(f->epfd, ev, EVENTS_MAX, 0);
    for (int i = 0; i < n; i++) {
        int fd = ev[i].data.fd, flags = 0;
        uint64_t v;

        if (fd == f->wfd)
            continue; /* level: stays readable, the engine thread stops */
        if (fd == f->tfd) {
            if (read(f->tfd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
                f->armed = 0;
                f->kick = true;
            }
            continue;
        }
        if ((size_t)fd < f->nfds && !(f->fds[fd] & FD_WANT)) {
            /* A kept-alive socket nobody watches (closed by the peer). */
            epoll_ctl(f->epfd, EPOLL_CTL_DEL, fd, NULL);
            f->fds[fd] = 0;
            continue;
        }
        flags |= ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0;
        flags |= ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0;
        flags |= ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0;
        curl_multi_socket_action(f->multi, fd, flags, &running);
    }
    settle(f);
    pthread_mutex_unlock(&f->lock);
}

int
shed_fanout_fd(const struct shed_fanout *f)
{
    return f->epfd;
}

static void *
engine(void *arg)
{
    struct shed_fanout *f = arg;

    while (!atomic_load(&f->stopping)) {
        struct epoll_event ev;

        /* Level-triggered: shed_fanout_run() sees the same events. */
        if (busy_epoll_wait(f->epfd, &ev, 1, -1, shed_fanout_busy_poll(f)) == -1 && errno != EINTR)
            break;
        shed_fanout_run(f);
    }
    return NULL;
}

static int
fds_open(struct shed_fanout *f)
{
    struct epoll_event ev = {.events = EPOLLIN};

    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    f->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    f->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f->epfd == -1 || f->tfd == -1 || f->wfd == -1)
        return -errno;
    ev.data.fd = f->tfd;
    if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->tfd, &ev) == -1)
        return -errno;
    ev.data.fd = f->wfd;
    if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->wfd, &ev) == -1)
        return -errno;
    return 0;
}

static void
fds_close(struct shed_fanout *f)
{
    if (f->epfd != -1)
        close(f->epfd);
    if (f->tfd != -1)
        close(f->tfd);
    if (f->wfd != -1)
        close(f->wfd);
}

int
shed_fanout_create(const struct shed_fanout_config *cfg, struct shed_fanout **out)
{
    struct shed_fanout *f;
    pthread_mutexattr_t ma;
    long ncpu;
    int rc;

    if (cfg->max_body > SHED_FANOUT_BODY_MAX)
        return -EINVAL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -ENOMEM;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->epfd = f->tfd = f->wfd = -1;
    f->max_body = cfg->max_body ? cfg->max_body : (16u << 20);
    f->max_total = cfg->max_total ? cfg->max_total : SHED_FANOUT_TOTAL_DEFAULT;
    f->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 1000;
    f->pending_tail = &f->pending;
    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    f->ncpus = ncpu > 0 ? (size_t)ncpu : 1;
    rc = fds_open(f);
    if (rc < 0)
        goto out;
    rc = -ENOMEM;
    f->multi = curl_multi_init();
    if (f->multi == NULL)
        goto out;
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, cfg->max_conns ? (long)cfg->max_conns : 256L);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&f->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    f->threaded = !cfg->external;
    if (f->threaded && pthread_create(&f->thread, NULL, engine, f) != 0) {
        pthread_mutex_destroy(&f->lock);
        rc = -EAGAIN;
        goto out;
    }
    *out = f;
    return 0;
out:
    if (f->multi != NULL)
        curl_multi_cleanup(f->multi);
    fds_close(f);
    free(f);
    return rc;
}

void
shed_fanout_destroy(struct shed_fanout *f)
{
    uint64_t one = 1;

    if (f == NULL)
        return;
    atomic_store(&f->stopping, true);
    if (f->threaded) {
        if (write(f->wfd, &one, sizeof(one)) != (ssize_t)sizeof(one))
            log_warn("fanout: wake");
        pthread_join(f->thread, NULL);
    }
    /* Cancel what is running and what never started. */
    pthread_mutex_lock(&f->lock);
    f->busy = true; /* callbacks' submits fail from now on (stopping) */
    take_pending(f);
    while (f->active != NULL) {
        struct batch *b = f->active;

        batch_cancel_rest(f, b);
        batch_complete(f, b);
    }
    pthread_mutex_unlock(&f->lock);
    while (f->nfree > 0)
        curl_easy_cleanup(f->free_easy[--f->nfree]);
    curl_multi_cleanup(f->multi);
    pthread_mutex_destroy(&f->lock);
    fds_close(f);
    free(f->fds);
    free(f);
}

int
shed_fanout_submit(struct shed_fanout *f, const struct shed_fanout_req *reqs, size_t n,
                   shed_fanout_each_fn each, shed_fanout_done_fn done, void *arg)
{
    struct batch *b;

    if (n == 0 || n > SHED_FANOUT_MAX_BATCH || done == NULL)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].url == NULL || strnlen(reqs[i].url, SHED_FANOUT_URL_MAX) >= SHED_FANOUT_URL_MAX)
            return -EINVAL;
        if (reqs[i].method == NULL || strlen(reqs[i].method) >= sizeof(b->jobs[0].method))
            return -EINVAL;
        if (reqs[i].timeout_ms <= 0)
            return -EINVAL;
    }
    if (atomic_load(&f->stopping))
        return -ESHUTDOWN;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->jobs = calloc(n, sizeof(*b->jobs));
    b->res = calloc(n, sizeof(*b->res));
    if (b->jobs == NULL || b->res == NULL) {
        free(b->jobs);
        free(b->res);
        free(b);
        return -ENOMEM;
    }
    b->f = f;
    b->n = b->left = n;
    b->each = each;
    b->done = done;
    b->arg = arg;
    for (size_t i = 0; i < n; i++) {
        struct job *j = &b->jobs[i];

        j->batch = b;
        j->idx = i;
        j->timeout_ms = reqs[i].timeout_ms;
        j->long_poll = reqs[i].long_poll;
        strcpy(j->method, reqs[i].method);
        j->url = strdup(reqs[i].url);
        if (j->url == NULL) {
            batch_free(b);
            return -ENOMEM;
        }
    }
    pthread_mutex_lock(&f->lock);
    if (atomic_load(&f->stopping)) {
        pthread_mutex_unlock(&f->lock);
        batch_free(b);
        return -ESHUTDOWN;
    }
    *f->pending_tail = b;
    f->pending_tail = &b->next;
    /* Send the requests now, from this thread (unless a callback of this
     * engine is submitting: then the running settle() starts them). */
    settle(f);
    pthread_mutex_unlock(&f->lock);
    return 0;
}

size_t
shed_fanout_held(const struct shed_fanout *f)
{
    return atomic_load(&f->held);
}

size_t
shed_fanout_expecting(const struct shed_fanout *f)
{
    return atomic_load(&f->expecting);
}

void
shed_fanout_set_busy_poll(struct shed_fanout *f, uint64_t ns)
{
    atomic_store(&f->busy_poll_ns, ns);
}

/* Tasks runnable on the whole machine now, this thread included (the
 * "running" of "running/total", the fourth field of /proc/loadavg); 0 when
 * it cannot be read. */
static unsigned long
runnable_now(void)
{
    char buf[128], *p = buf;
    int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd == -1)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    for (int field = 0; field < 3; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return 0;
        p++;
    }
    return strtoul(p, NULL, 10);
}

/* Spin only while it can pay: fewer answers are due than there are CPUs
 * (every backend that owes one can run on another CPU while this one stays
 * awake; with as many due as CPUs or more, as when a page asks nine servers
 * on two CPUs, the backends want this CPU too), and the machine is not
 * crowded: at the last look (at most LOAD_LOOK_NS ago, taken while an
 * answer was due) no more tasks were runnable than there are CPUs. Under a
 * competing load the spin would take CPU time the backends and the client
 * need, so the loop sleeps at once (docs/aggregator.md, "Busy poll"). */
uint64_t
shed_fanout_busy_poll(const struct shed_fanout *f)
{
    /* The look's cache is the engine's own state, updated by any caller. */
    struct shed_fanout *m = (struct shed_fanout *)f;
    size_t due = atomic_load(&f->expecting);
    uint64_t ns = atomic_load(&f->busy_poll_ns), now, last;

    if (ns == 0 || due == 0 || due >= f->ncpus)
        return 0;
    now = clock_mono_ns();
    last = atomic_load(&m->load_look_ns);
    if (now - last >= LOAD_LOOK_NS &&
        atomic_compare_exchange_strong(&m->load_look_ns, &last, now)) {
        unsigned long (*fn)(void) = atomic_load(&m->runnable);

        atomic_store(&m->crowded, (fn != NULL ? fn() : runnable_now()) > f->ncpus);
    }
    return atomic_load(&f->crowded) ? 0 : ns;
}

void
shed_fanout_set_runnable_fn(struct shed_fanout *f, unsigned long (*fn)(void))
{
    atomic_store(&f->runnable, fn);
    atomic_store(&f->load_look_ns, 0);
}

uint64_t
shed_fanout_started(const struct shed_fanout *f)
{
    return atomic_load(&f->started);
}

uint64_t
shed_fanout_connects(const struct shed_fanout *f)
{
    return atomic_load(&f->connects);
}
