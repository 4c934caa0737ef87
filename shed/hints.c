/* SPDX-License-Identifier: ISC */
/*
 * shed/hints: see hints.h. A ring buffer of pointers in arrival order (so
 * sequence numbers rise along it); a finished hint leaves a hole that the
 * head skips. Finding one by sequence is O(1); listing a cell's is linear
 * (about once a second per home cell's handoff).
 */
#include "shed/hints.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct hint {
    uint64_t seq, at_ms;
    char *cell, *service, *path, *url; /* one allocation: the struct's tail */
};

struct shed_hints {
    pthread_mutex_t mu;
    struct hint **ring; /* SHED_HINTS_MAX slots */
    size_t head, n;     /* oldest slot, slots in use (holes included) */
    uint64_t seq, held, dropped, last_drop_log;
};

int
shed_hints_create(struct shed_hints **out)
{
    struct shed_hints *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return -ENOMEM;
    h->ring = calloc(SHED_HINTS_MAX, sizeof(*h->ring));
    if (h->ring == NULL) {
        free(h);
        return -ENOMEM;
    }
    pthread_mutex_init(&h->mu, NULL);
    *out = h;
    return 0;
}

void
shed_hints_destroy(struct shed_hints *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < SHED_HINTS_MAX; i++)
        free(h->ring[i]);
    free(h->ring);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* Drop the holes at the head. Caller holds mu. */
static void
trim(struct shed_hints *h)
{
    while (h->n > 0 && h->ring[h->head] == NULL) {
        h->head = (h->head + 1) % SHED_HINTS_MAX;
        h->n--;
    }
}

static char *
put(char **p, const char *s)
{
    size_t n = strlen(s) + 1;
    char *at = *p;

    memcpy(at, s, n);
    *p += n;
    return at;
}

int
shed_hints_add(struct shed_hints *h, const char *cell, const char *service, const char *path,
               const char *url, uint64_t now_ms)
{
    size_t need =
        sizeof(struct hint) + strlen(cell) + strlen(service) + strlen(path) + strlen(url) + 4;
    struct hint *e = malloc(need);
    char *p;

    if (e == NULL)
        return -ENOMEM;
    p = (char *)(e + 1);
    e->cell = put(&p, cell);
    e->service = put(&p, service);
    e->path = put(&p, path);
    e->url = put(&p, url);
    e->at_ms = now_ms;
    pthread_mutex_lock(&h->mu);
    trim(h);
    if (h->n == SHED_HINTS_MAX) {
        free(h->ring[h->head]); /* the oldest: never a hole after trim() */
        h->ring[h->head] = NULL;
        h->head = (h->head + 1) % SHED_HINTS_MAX;
        h->n--;
        h->held--;
        h->dropped++;
        if (now_ms - h->last_drop_log >= 60000 || h->last_drop_log == 0) {
            h->last_drop_log = now_ms;
            log_warnx("hints: %d hints held, dropping the oldest (%llu so far)", SHED_HINTS_MAX,
                      (unsigned long long)h->dropped);
        }
    }
    e->seq = ++h->seq;
    h->ring[(h->head + h->n) % SHED_HINTS_MAX] = e;
    h->n++;
    h->held++;
    pthread_mutex_unlock(&h->mu);
    return 0;
}

json_t *
shed_hints_json(struct shed_hints *h, const char *cell, size_t limit, uint64_t now_ms)
{
    json_t *arr = json_array(), *root;

    if (arr == NULL)
        return NULL;
    if (limit > SHED_HINTS_PAGE_MAX)
        limit = SHED_HINTS_PAGE_MAX;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n && json_array_size(arr) < limit; i++) {
        const struct hint *e = h->ring[(h->head + i) % SHED_HINTS_MAX];

        if (e == NULL || strcmp(e->cell, cell) != 0)
            continue;
        json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:s, s:I}", "seq", (json_int_t)e->seq,
                                             "service", e->service, "path", e->path, "url", e->url,
                                             "age_ms", (json_int_t)(now_ms - e->at_ms)));
    }
    pthread_mutex_unlock(&h->mu);
    root = json_pack("{s:o}", "hints", arr);
    return root;
}

int
shed_hints_done(struct shed_hints *h, const char *cell, uint64_t seq)
{
    /* head + n moves by one per add and by none otherwise: hint <seq>
     * lives in slot (seq - 1) % SHED_HINTS_MAX as long as it lives. */
    size_t at = (size_t)((seq - 1) % SHED_HINTS_MAX);
    struct hint *e;
    int rc = -ENOENT;

    if (seq == 0)
        return rc;
    pthread_mutex_lock(&h->mu);
    e = h->ring[at];
    if (e != NULL && e->seq == seq && strcmp(e->cell, cell) == 0) {
        free(e);
        h->ring[at] = NULL;
        h->held--;
        rc = 0;
        trim(h);
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void
shed_hints_counts(struct shed_hints *h, uint64_t *held, uint64_t *dropped)
{
    pthread_mutex_lock(&h->mu);
    *held = h->held;
    *dropped = h->dropped;
    pthread_mutex_unlock(&h->mu);
}
