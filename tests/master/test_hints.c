/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for shed/hints: hints are listed per home cell, oldest first,
 * at most SHED_HINTS_PAGE_MAX at a time; one is forgotten by its sequence
 * (only for its own cell); past SHED_HINTS_MAX the oldest is dropped and
 * counted, and the sequences of the rest still find them.
 */
#include "shed/hints.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

static json_int_t
seq_at(json_t *root, size_t i)
{
    return json_integer_value(
        json_object_get(json_array_get(json_object_get(root, "hints"), i), "seq"));
}

static size_t
count(json_t *root)
{
    return json_array_size(json_object_get(root, "hints"));
}

Test(hints, per_cell_oldest_first_and_done)
{
    struct shed_hints *h;
    json_t *j;

    cr_assert_eq(shed_hints_create(&h), 0);
    cr_assert_eq(shed_hints_add(h, "dc1", "burrow", "/v1.0/a/q/m1", "http://b:1", 10), 0);
    cr_assert_eq(shed_hints_add(h, "dc2", "burrow", "/v1.0/a/q/x", "http://b:2", 11), 0);
    cr_assert_eq(shed_hints_add(h, "dc1", "burrow", "/v1.0/a/q/m2", "http://b:1", 12), 0);
    j = shed_hints_json(h, "dc1", 10, 20);
    cr_assert_eq(count(j), 2);
    cr_assert_eq(seq_at(j, 0), 1);
    cr_assert_eq(seq_at(j, 1), 3);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "hints"), 1), "path")),
        "/v1.0/a/q/m2");
    cr_assert_eq(json_integer_value(
                     json_object_get(json_array_get(json_object_get(j, "hints"), 0), "age_ms")),
                 10);
    json_decref(j);
    cr_assert_eq(shed_hints_done(h, "dc2", 1), -ENOENT, "another cell's hint");
    cr_assert_eq(shed_hints_done(h, "dc1", 1), 0);
    cr_assert_eq(shed_hints_done(h, "dc1", 1), -ENOENT, "once");
    cr_assert_eq(shed_hints_done(h, "dc1", 0), -ENOENT);
    cr_assert_eq(shed_hints_done(h, "dc1", 99), -ENOENT);
    j = shed_hints_json(h, "dc1", 10, 20);
    cr_assert_eq(count(j), 1);
    cr_assert_eq(seq_at(j, 0), 3);
    json_decref(j);
    shed_hints_destroy(h);
}

Test(hints, bounded_oldest_dropped)
{
    struct shed_hints *h;
    uint64_t held, dropped;
    char path[64];
    json_t *j;

    cr_assert_eq(shed_hints_create(&h), 0);
    for (int i = 0; i < SHED_HINTS_MAX + 5; i++) {
        snprintf(path, sizeof(path), "/v1.0/a/q/m%d", i);
        cr_assert_eq(shed_hints_add(h, "dc1", "burrow", path, "http://b:1", 1), 0);
    }
    shed_hints_counts(h, &held, &dropped);
    cr_assert_eq(held, SHED_HINTS_MAX);
    cr_assert_eq(dropped, 5);
    j = shed_hints_json(h, "dc1", 1000000, 2);
    cr_assert_eq(count(j), SHED_HINTS_PAGE_MAX, "one answer is bounded");
    cr_assert_eq(seq_at(j, 0), 6, "the five oldest were dropped");
    json_decref(j);
    cr_assert_eq(shed_hints_done(h, "dc1", 3), -ENOENT, "a dropped hint is gone");
    cr_assert_eq(shed_hints_done(h, "dc1", SHED_HINTS_MAX + 5), 0, "the newest is found");
    cr_assert_eq(shed_hints_done(h, "dc1", 6), 0, "so is the oldest kept");
    shed_hints_counts(h, &held, &dropped);
    cr_assert_eq(held, SHED_HINTS_MAX - 2);
    shed_hints_destroy(h);
}
