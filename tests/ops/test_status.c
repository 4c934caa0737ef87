/* SPDX-License-Identifier: ISC */
/* Unit tests for shed/status (the page renders a hand-made status object:
 * escaping, sections, the size bound) and shed/events (newest first,
 * repeats folded, bounded). */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "shed/events.h"
#include "shed/status.h"

static json_t *
status_with(const char *id, const char *event_text)
{
    json_t *st = json_pack(
        "{s:s, s:[s,s], s:s, s:i, s:s, s:[{s:s, s:s, s:i, s:s, s:i, s:[{s:s, s:s, s:s, s:i, "
        "s:s, s:i, s:b, s:i}]}], s:{s:b, s:i, s:[{s:s, s:s, s:b, s:b, s:i, s:i, s:i, s:s, "
        "s:i}]}, s:[{s:s, s:s, s:s, s:i}], s:{s:i, s:i}}",
        "cell", "a<b", "roles", "line", "aggregator", "version", "0.1.0", "uptime_s", 3725,
        "started", "2025-01-01T00:00:00Z", "services", "name", "burrow", "kind", "burrow",
        "generation", 7, "digest", "0123456789abcdef0123456789abcdef", "prev_generation", 6,
        "members", "id", id, "url", "http://127.0.0.1:9001", "zone", "z1", "weight", 3, "state",
        "suspect", "incarnation", 42, "in_ring", 1, "age_ms", 1500, "sync", "running", 1, "seq", 10,
        "targets", "url", "http://127.0.0.1:8081", "kind", "master", "learned", 0, "need_full", 0,
        "acked", 8, "behind", 2, "failures", 1, "error", "HTTP 503", "last_ack_ms_ago", 250,
        "events", "time", "2025-01-01T00:00:01.000Z", "kind", "escalated", "text", event_text,
        "count", 3, "heartbeats", "ok", 5, "unauthorized", 2);
    cr_assert_not_null(st);
    return st;
}

Test(status, escape)
{
    char buf[64];
    static const char want[] = "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;";
    cr_assert_eq(shed_status_escape(buf, sizeof(buf), "<a href=\"x\">&'</a>"), strlen(want));
    cr_assert_str_eq(buf, want);
    cr_assert_eq(shed_status_escape(buf, 4, "<<"), 8, "the length needed, as snprintf");
    cr_assert_eq(strlen(buf), 3);
    shed_status_escape(buf, sizeof(buf),
                       "a\x01"
                       "b");
    cr_assert_str_eq(buf,
                     "a\xef\xbf\xbd"
                     "b",
                     "control bytes become U+FFFD");
}

Test(status, page_shows_everything_escaped)
{
    json_t *st = status_with("<script>alert(1)</script>", "service=burrow to master <m1>");
    char *html;
    size_t len;
    cr_assert_eq(shed_status_html(st, &html, &len), 0);
    cr_assert_eq(strlen(html), len);
    cr_assert(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    cr_assert_null(strstr(html, "<script"), "nothing from outside is markup");
    cr_assert_not_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    cr_assert_not_null(strstr(html, "cell <b>a&lt;b</b>"));
    cr_assert_not_null(strstr(html, "0.1.0"));
    cr_assert_not_null(strstr(html, "1h 2m"), "uptime");
    cr_assert_not_null(strstr(html, "ring generation <b>7</b>"));
    cr_assert_not_null(strstr(html, "0123456789abcdef0123456789abcdef"));
    cr_assert_not_null(strstr(html, "class=\"st suspect\""));
    cr_assert_not_null(strstr(html, "http://127.0.0.1:8081"), "the master target");
    cr_assert_not_null(strstr(html, "HTTP 503"));
    cr_assert_not_null(strstr(html, "to master &lt;m1&gt;"));
    cr_assert_null(strstr(html, "src="), "no external asset");
    cr_assert_null(strstr(html, "<link"), "no external asset");
    free(html);
    json_decref(st);
}

Test(status, page_is_bounded)
{
    /* 500 member rows of 5 KB ids pass SHED_STATUS_HTML_MAX: refused. */
    char *id = malloc(5001);
    memset(id, 'x', 5000);
    id[5000] = '\0';
    json_t *st = status_with(id, "e");
    json_t *members =
        json_object_get(json_array_get(json_object_get(st, "services"), 0), "members");
    for (int i = 0; i < 600; i++)
        json_array_append(members, json_array_get(members, 0));
    char *html;
    size_t len;
    cr_assert_eq(shed_status_html(st, &html, &len), -EFBIG);
    /* Short ids: rows are cut at SHED_STATUS_MEMBERS_MAX, the page says so. */
    json_t *small = status_with("m", "e");
    members = json_object_get(json_array_get(json_object_get(small, "services"), 0), "members");
    for (int i = 0; i < SHED_STATUS_MEMBERS_MAX + 10; i++)
        json_array_append(members, json_array_get(members, 0));
    cr_assert_eq(shed_status_html(small, &html, &len), 0);
    cr_assert_lt(len, SHED_STATUS_HTML_MAX);
    cr_assert_not_null(strstr(html, "11 more not shown"));
    free(html);
    free(id);
    json_decref(st);
    json_decref(small);
}

Test(status, events_newest_first_folded_bounded)
{
    struct shed_events *e;
    cr_assert_eq(shed_events_create(&e), 0);
    shed_events_add(e, SHED_EV_SUSPECT, "h:1 suspect");
    shed_events_add(e, SHED_EV_ESCALATED, "service=%s", "burrow");
    shed_events_add(e, SHED_EV_ESCALATED, "service=%s", "burrow");
    json_t *ev = shed_events_json(e);
    cr_assert_eq(json_array_size(ev), 2, "a repeat is folded into the newest");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ev, 0), "kind")),
                     "escalated");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(ev, 0), "count")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ev, 1), "text")),
                     "h:1 suspect");
    json_decref(ev);
    for (int i = 0; i < 3 * SHED_EVENTS_MAX; i++)
        shed_events_add(e, SHED_EV_HEARTBEAT, "refused %d", i);
    ev = shed_events_json(e);
    cr_assert_eq(json_array_size(ev), SHED_EVENTS_MAX);
    char want[32];
    snprintf(want, sizeof(want), "refused %d", 3 * SHED_EVENTS_MAX - 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ev, 0), "text")), want);
    json_decref(ev);
    shed_events_clear(e);
    ev = shed_events_json(e);
    cr_assert_eq(json_array_size(ev), 0);
    json_decref(ev);
    shed_events_destroy(e);
}
