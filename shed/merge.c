/* SPDX-License-Identifier: ISC */
/*
 * shed/merge: turn several Burrow backend answers into one (see merge.h).
 * Everything here is a pure function of its inputs so that the aggregator's
 * semantics (dedup, global limit, marker window, detail shaping, 404 rules)
 * can be pinned by table tests without a network.
 */
#include "shed/merge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static size_t
set_slot(const struct shed_merge_set *s, const char *key, size_t len)
{
    return (size_t)XXH3_64bits(key, len) & (s->cap - 1);
}

int
shed_merge_set_init(struct shed_merge_set *s, size_t expect)
{
    size_t cap = 16;

    while (cap < expect * 2 + 2)
        cap <<= 1;
    s->keys = calloc(cap, sizeof(*s->keys));
    s->lens = calloc(cap, sizeof(*s->lens));
    s->cap = cap;
    s->n = 0;
    if (s->keys == NULL || s->lens == NULL) {
        shed_merge_set_free(s);
        return -ENOMEM;
    }
    return 0;
}

void
shed_merge_set_free(struct shed_merge_set *s)
{
    free(s->keys);
    free(s->lens);
    s->keys = NULL;
    s->lens = NULL;
    s->cap = s->n = 0;
}

static bool
set_find(const struct shed_merge_set *s, const char *key, size_t len, size_t *slot)
{
    size_t i = set_slot(s, key, len);

    while (s->keys[i] != NULL) {
        if (s->lens[i] == len && memcmp(s->keys[i], key, len) == 0) {
            *slot = i;
            return true;
        }
        i = (i + 1) & (s->cap - 1);
    }
    *slot = i;
    return false;
}

static int
set_grow(struct shed_merge_set *s)
{
    struct shed_merge_set n;
    int rc = shed_merge_set_init(&n, s->cap);

    if (rc < 0)
        return rc;
    for (size_t i = 0; i < s->cap; i++) {
        size_t slot;

        if (s->keys[i] == NULL)
            continue;
        set_find(&n, s->keys[i], s->lens[i], &slot);
        n.keys[slot] = s->keys[i];
        n.lens[slot] = s->lens[i];
        n.n++;
    }
    shed_merge_set_free(s);
    *s = n;
    return 0;
}

int
shed_merge_set_add(struct shed_merge_set *s, const char *key, size_t len)
{
    size_t slot;

    if (set_find(s, key, len, &slot))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        int rc = set_grow(s);

        if (rc < 0)
            return rc;
        set_find(s, key, len, &slot);
    }
    /* An empty key is stored as a non-NULL pointer so the slot is taken. */
    s->keys[slot] = key != NULL ? key : "";
    s->lens[slot] = len;
    s->n++;
    return 1;
}

bool
shed_merge_set_has(const struct shed_merge_set *s, const char *key, size_t len)
{
    size_t slot;

    if (s->cap == 0)
        return false;
    return set_find(s, key, len, &slot);
}

void
shed_merge_list_clear(struct shed_merge_list *l)
{
    json_decref(l->root);
    free(l->items);
    l->root = NULL;
    l->items = NULL;
    l->n = 0;
    l->truncated = false;
}

int
shed_merge_parse(struct shed_merge_list *l, int status, const char *body, size_t len, int64_t asked)
{
    json_t *root;
    size_t n, i;

    shed_merge_list_clear(l);
    l->status = status;
    if (status != 200)
        return 0;
    root = json_loadb(body != NULL ? body : "", len, JSON_DECODE_ANY, NULL);
    if (root == NULL || !json_is_array(root)) {
        json_decref(root);
        return -EBADMSG;
    }
    n = json_array_size(root);
    if (n > SHED_MERGE_MAX_ITEMS) {
        json_decref(root);
        return -E2BIG;
    }
    l->items = calloc(n ? n : 1, sizeof(*l->items));
    if (l->items == NULL) {
        json_decref(root);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        json_t *v = json_array_get(root, i), *id = v;

        if (json_is_object(v))
            id = json_object_get(v, "id");
        if (!json_is_string(id)) {
            json_decref(root);
            free(l->items);
            l->items = NULL;
            return -EBADMSG;
        }
        l->items[i].id = json_string_value(id);
        l->items[i].idlen = json_string_length(id);
        l->items[i].val = v;
    }
    l->root = root;
    l->n = n;
    l->truncated = asked > 0 && (int64_t)n >= asked;
    return 0;
}

static size_t
total_items(const struct shed_merge_list *lists, size_t n)
{
    size_t t = 0;

    for (size_t i = 0; i < n; i++)
        t += lists[i].n;
    return t;
}

long
shed_merge_concat(const struct shed_merge_list *lists, size_t n, int64_t limit,
                  struct shed_merge_pick *picks, size_t max, bool *more)
{
    struct shed_merge_set seen;
    size_t np = 0;
    bool full = false;

    *more = false;
    if (shed_merge_set_init(&seen, total_items(lists, n)) < 0)
        return -ENOMEM;
    for (size_t li = 0; li < n && !full; li++) {
        for (size_t ii = 0; ii < lists[li].n; ii++) {
            const struct shed_merge_item *it = &lists[li].items[ii];
            int rc;

            if (it->drop)
                continue;
            rc = shed_merge_set_add(&seen, it->id, it->idlen);
            if (rc < 0) {
                shed_merge_set_free(&seen);
                return rc;
            }
            if (rc == 0)
                continue;
            if ((limit > 0 && (int64_t)np >= limit) || np >= max) {
                full = true;
                *more = true;
                break;
            }
            picks[np].list = (uint32_t)li;
            picks[np].item = (uint32_t)ii;
            np++;
        }
        if (!full && lists[li].truncated) {
            /* The rest of this backend is unknown: what follows it in the
             * global order cannot be shown before it. */
            *more = true;
            break;
        }
    }
    if (limit > 0 && (int64_t)np >= limit)
        *more = true;
    shed_merge_set_free(&seen);
    return (long)np;
}

long
shed_merge_window(const struct shed_merge_list *lists, size_t n, const char *marker, size_t mlen,
                  int64_t limit, struct shed_merge_pick *picks, size_t max)
{
    struct shed_merge_set seen;
    size_t np = 0, start = 0, out = 0;

    if (shed_merge_set_init(&seen, total_items(lists, n)) < 0)
        return -ENOMEM;
    for (size_t li = 0; li < n; li++) {
        for (size_t ii = 0; ii < lists[li].n && np < max; ii++) {
            const struct shed_merge_item *it = &lists[li].items[ii];
            int rc = shed_merge_set_add(&seen, it->id, it->idlen);

            if (rc < 0) {
                shed_merge_set_free(&seen);
                return rc;
            }
            if (rc == 0)
                continue;
            if (marker != NULL && it->idlen == mlen && memcmp(it->id, marker, mlen) == 0)
                start = np + 1;
            picks[np].list = (uint32_t)li;
            picks[np].item = (uint32_t)ii;
            np++;
        }
    }
    shed_merge_set_free(&seen);
    for (size_t i = start; i < np; i++) {
        if (limit > 0 && (int64_t)out >= limit)
            break;
        picks[out++] = picks[i];
    }
    return (long)out;
}

enum proto_burrow_detail
shed_merge_default_detail(enum proto_burrow_level level, bool is_get)
{
    if (!is_get)
        return PROTO_DETAIL_NONE;
    return level == PROTO_BURROW_MESSAGES ? PROTO_DETAIL_ALL : PROTO_DETAIL_ID;
}

enum proto_burrow_detail
shed_merge_backend_detail(enum proto_burrow_level level, enum proto_burrow_detail detail)
{
    if (level != PROTO_BURROW_MESSAGES)
        return PROTO_DETAIL_ID;
    switch (detail) {
    case PROTO_DETAIL_ATTRIBUTES:
        return PROTO_DETAIL_ATTRIBUTES;
    case PROTO_DETAIL_BODY:
    case PROTO_DETAIL_ALL:
        return PROTO_DETAIL_ALL;
    default:
        return PROTO_DETAIL_ID;
    }
}

/* One element of the answer at <detail>, from a backend element <v> (a
 * string id, or an object with at least "id"). Returns a new reference. */
static json_t *
project(enum proto_burrow_level level, enum proto_burrow_detail detail, json_t *v, const char *id,
        size_t idlen)
{
    json_t *o;

    if (level != PROTO_BURROW_MESSAGES) {
        if (detail == PROTO_DETAIL_ALL)
            return json_pack("{s:s%}", "id", id, idlen);
        return json_stringn(id, idlen);
    }
    switch (detail) {
    case PROTO_DETAIL_ID:
        return json_stringn(id, idlen);
    case PROTO_DETAIL_BODY:
        o = json_is_object(v) ? json_object_get(v, "body") : NULL;
        return o != NULL ? json_incref(o) : json_string("");
    case PROTO_DETAIL_ATTRIBUTES:
        if (!json_is_object(v))
            return json_pack("{s:s%}", "id", id, idlen);
        o = json_pack("{s:s%}", "id", id, idlen);
        if (o != NULL && json_object_get(v, "ttl") != NULL)
            json_object_set(o, "ttl", json_object_get(v, "ttl"));
        if (o != NULL && json_object_get(v, "hide") != NULL)
            json_object_set(o, "hide", json_object_get(v, "hide"));
        return o;
    default:
        return json_incref(v);
    }
}

int
shed_merge_text(struct shed_merge_out *out, int status, const char *text, size_t len)
{
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->ctype = "application/octet-stream";
    if (len > 0) {
        out->body = malloc(len);
        if (out->body == NULL)
            return -ENOMEM;
        memcpy(out->body, text, len);
        out->len = len;
    }
    return 0;
}

void
shed_merge_out_clear(struct shed_merge_out *out)
{
    free(out->body);
    memset(out, 0, sizeof(*out));
}

int
shed_merge_render(enum proto_burrow_level level, enum proto_burrow_detail detail,
                  const struct shed_merge_list *lists, const struct shed_merge_pick *picks,
                  size_t n, const char *notfound, struct shed_merge_out *out)
{
    json_t *arr;
    char *s;

    memset(out, 0, sizeof(*out));
    if (n == 0)
        return shed_merge_text(out, 404, notfound, strlen(notfound));
    if (detail == PROTO_DETAIL_NONE) {
        out->status = 204;
        return 0;
    }
    arr = json_array();
    if (arr == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct shed_merge_item *it = &lists[picks[i].list].items[picks[i].item];
        json_t *e = project(level, detail, it->val, it->id, it->idlen);

        if (e == NULL || json_array_append_new(arr, e) < 0) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    s = json_dumps(arr, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(arr);
    if (s == NULL)
        return -ENOMEM;
    out->status = 200;
    out->ctype = "application/json";
    out->body = s;
    out->len = strlen(s);
    return 0;
}
