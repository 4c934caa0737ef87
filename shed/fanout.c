/* SPDX-License-Identifier: ISC */
/*
 * shed/fanout: a libcurl multi engine on one thread (see fanout.h). The
 * thread owns the multi handle and every easy handle; other threads only
 * append batches to a mutex-protected queue and wake it with
 * curl_multi_wakeup(), so no curl object is ever touched by two threads.
 * Easy handles are recycled through a small free list, and the multi
 * handle's connection cache keeps backend connections alive across batches.
 */
#include "shed/fanout.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

#define FREE_EASY_MAX 64

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
    bool over;  /* answer exceeded max_body */
    bool finished;
};

struct batch {
    struct batch *next;          /* pending queue link */
    struct job *jobs;            /* owned, n entries */
    struct shed_fanout_res *res; /* owned, n entries */
    size_t n, left;
    shed_fanout_each_fn each;
    shed_fanout_done_fn done;
    void *arg;
    struct timespec t0;
    struct batch *anext; /* active list link */
};

struct shed_fanout {
    CURLM *multi; /* engine thread only */
    pthread_t thread;
    pthread_mutex_t lock; /* guards pending, stopping */
    struct batch *pending, **pending_tail;
    struct batch *active; /* engine thread only */
    bool stopping;
    size_t max_body;
    long connect_timeout_ms;
    CURL *free_easy[FREE_EASY_MAX]; /* engine thread only */
    size_t nfree;
    _Atomic uint64_t started, failed;
};

static double
ms_since(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static size_t
on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct job *j = userdata;
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
        p = realloc(j->buf, cap);
        if (p == NULL)
            return 0;
        j->buf = p;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, ptr, n);
    j->len += n;
    return n;
}

static CURL *
easy_get(struct shed_fanout *f)
{
    CURL *e;

    if (f->nfree > 0) {
        e = f->free_easy[--f->nfree];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

static void
easy_put(struct shed_fanout *f, CURL *e)
{
    if (f->nfree < FREE_EASY_MAX)
        f->free_easy[f->nfree++] = e;
    else
        curl_easy_cleanup(e);
}

static int
job_start(struct shed_fanout *f, struct job *j)
{
    CURL *e = easy_get(f);

    if (e == NULL)
        return -ENOMEM;
    j->max = f->max_body;
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, j->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, f->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->max_body);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    if (strcmp(j->method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, j->method);
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
        easy_put(f, e);
        return -ENOMEM;
    }
    j->easy = e;
    atomic_fetch_add(&f->started, 1);
    return 0;
}

static void
batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->jobs[i].url);
        free(b->jobs[i].buf);
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
        j->finished = true;
        b->res[i].status = 0;
        b->res[i].err = -ECANCELED;
        b->res[i].body = (char *)"";
        b->res[i].len = 0;
        b->res[i].ms = ms_since(&b->t0);
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

    j->finished = true;
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
    r->ms = ms_since(&b->t0);
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

static void
take_pending(struct shed_fanout *f)
{
    struct batch *b;

    pthread_mutex_lock(&f->lock);
    b = f->pending;
    f->pending = NULL;
    f->pending_tail = &f->pending;
    pthread_mutex_unlock(&f->lock);

    while (b != NULL) {
        struct batch *next = b->next;

        clock_gettime(CLOCK_MONOTONIC, &b->t0);
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
        long code = 0;
        CURL *e = m->easy_handle;
        CURLcode rc;

        if (m->msg != CURLMSG_DONE)
            continue;
        rc = m->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&j);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
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

static void *
engine(void *arg)
{
    struct shed_fanout *f = arg;

    for (;;) {
        int running = 0, nfds = 0;
        bool stop;

        pthread_mutex_lock(&f->lock);
        stop = f->stopping;
        pthread_mutex_unlock(&f->lock);
        if (stop)
            break;
        take_pending(f);
        curl_multi_perform(f->multi, &running);
        read_infos(f);
        curl_multi_poll(f->multi, NULL, 0, 1000, &nfds);
    }
    /* Shutdown: cancel what is running and what never started. */
    take_pending(f);
    while (f->active != NULL) {
        struct batch *b = f->active;

        batch_cancel_rest(f, b);
        batch_complete(f, b);
    }
    return NULL;
}

int
shed_fanout_create(const struct shed_fanout_config *cfg, struct shed_fanout **out)
{
    struct shed_fanout *f;
    long maxc;

    if (cfg->max_body > SHED_FANOUT_BODY_MAX)
        return -EINVAL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -ENOMEM;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->max_body = cfg->max_body ? cfg->max_body : (16u << 20);
    f->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 1000;
    maxc = cfg->max_conns ? (long)cfg->max_conns : 256;
    f->pending_tail = &f->pending;
    f->multi = curl_multi_init();
    if (f->multi == NULL) {
        free(f);
        return -ENOMEM;
    }
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, maxc);
    pthread_mutex_init(&f->lock, NULL);
    if (pthread_create(&f->thread, NULL, engine, f) != 0) {
        pthread_mutex_destroy(&f->lock);
        curl_multi_cleanup(f->multi);
        free(f);
        return -EAGAIN;
    }
    *out = f;
    return 0;
}

void
shed_fanout_destroy(struct shed_fanout *f)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_mutex_unlock(&f->lock);
    curl_multi_wakeup(f->multi);
    pthread_join(f->thread, NULL);
    while (f->nfree > 0)
        curl_easy_cleanup(f->free_easy[--f->nfree]);
    curl_multi_cleanup(f->multi);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

int
shed_fanout_submit(struct shed_fanout *f, const struct shed_fanout_req *reqs, size_t n,
                   shed_fanout_each_fn each, shed_fanout_done_fn done, void *arg)
{
    struct batch *b;
    bool stopping;

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
    b->n = b->left = n;
    b->each = each;
    b->done = done;
    b->arg = arg;
    for (size_t i = 0; i < n; i++) {
        struct job *j = &b->jobs[i];

        j->batch = b;
        j->idx = i;
        j->timeout_ms = reqs[i].timeout_ms;
        strcpy(j->method, reqs[i].method);
        j->url = strdup(reqs[i].url);
        if (j->url == NULL) {
            batch_free(b);
            return -ENOMEM;
        }
    }
    pthread_mutex_lock(&f->lock);
    stopping = f->stopping;
    if (!stopping) {
        *f->pending_tail = b;
        f->pending_tail = &b->next;
    }
    pthread_mutex_unlock(&f->lock);
    if (stopping) {
        batch_free(b);
        return -ESHUTDOWN;
    }
    curl_multi_wakeup(f->multi);
    return 0;
}

uint64_t
shed_fanout_started(const struct shed_fanout *f)
{
    return atomic_load(&f->started);
}
