/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for proto/body: the UTF-8 check (a table of valid and invalid
 * sequences), which bodies stay strings, and a round trip through JSON text
 * (dumped and loaded back with jansson's default, NUL-refusing flags) of
 * bodies with 0x00, 0xFF, invalid UTF-8 and every byte value.
 */
#include "proto/body.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

struct span_case {
    const char *s;
    size_t len;  /* of s */
    size_t span; /* valid prefix */
};

#define S(lit) lit, sizeof(lit) - 1

static const struct span_case spans[] = {
    {S(""), 0},
    {S("plain ascii"), 11},
    {S("caf\xc3\xa9"), 5},              /* U+00E9 */
    {S("\xe6\x97\xa5\xe6\x9c\xac"), 6}, /* two 3-byte characters */
    {S("\xf0\x9f\x98\x80"), 4},         /* U+1F600 */
    {S("\xf4\x8f\xbf\xbf"), 4},         /* U+10FFFF, the last code point */
    {S("a\0b"), 3},                     /* NUL is UTF-8; is_text refuses it */
    {S("ab\xff"), 2},                   /* 0xFF never appears in UTF-8 */
    {S("\x80"), 0},                     /* a lone continuation byte */
    {S("x\xc3"), 1},                    /* truncated 2-byte sequence */
    {S("\xe6\x97"), 0},                 /* truncated 3-byte sequence */
    {S("\xc0\xaf"), 0},                 /* overlong '/' */
    {S("\xe0\x80\xaf"), 0},             /* overlong, 3 bytes */
    {S("\xf0\x80\x80\xaf"), 0},         /* overlong, 4 bytes */
    {S("\xed\xa0\x80"), 0},             /* U+D800, a surrogate */
    {S("\xf4\x90\x80\x80"), 0},         /* past U+10FFFF */
    {S("\xf8\x88\x80\x80\x80"), 0},     /* 5-byte form */
    {S("ok\xc3\x28"), 2},               /* bad continuation */
    {S("\xef\xbf\xbd\xef\xbf\xbe"), 6}, /* U+FFFD, U+FFFE (a noncharacter, valid) */
};

Test(body, utf8_span_table)
{
    for (size_t i = 0; i < sizeof(spans) / sizeof(spans[0]); i++)
        cr_assert_eq(proto_body_utf8_span(spans[i].s, spans[i].len), spans[i].span,
                     "row %zu: got %zu", i, proto_body_utf8_span(spans[i].s, spans[i].len));
}

Test(body, is_text)
{
    cr_assert(proto_body_is_text("", 0));
    cr_assert(proto_body_is_text(NULL, 0));
    cr_assert(proto_body_is_text("caf\xc3\xa9\n", 6));
    cr_assert_not(proto_body_is_text("a\0b", 3));
    cr_assert_not(proto_body_is_text("\0", 1));
    cr_assert_not(proto_body_is_text("\xff", 1));
    cr_assert_not(proto_body_is_text("ok\xc3", 3));
}

/* Put <s>, <n> into a detail=all object and a detail=body element, dump
 * both to JSON text, load them back with default flags and decode. */
static void
round_trip(const char *s, size_t n, bool want_text)
{
    json_t *o = json_object(), *v = proto_body_value(s, n), *arr = json_array();
    char *txt, *got;
    size_t got_len;
    json_error_t err;
    json_t *back;

    cr_assert_not_null(o);
    cr_assert_not_null(v);
    cr_assert_eq(proto_body_set(o, s, n), 0);
    cr_assert_eq(json_object_get(o, PROTO_BODY_KEY) != NULL, want_text);
    cr_assert_eq(json_object_get(o, PROTO_BODY_B64_KEY) != NULL, !want_text);
    cr_assert_eq(json_is_string(v), want_text);
    json_array_append_new(arr, o);
    json_array_append_new(arr, v);
    txt = json_dumps(arr, JSON_COMPACT);
    cr_assert_not_null(txt);
    back = json_loads(txt, 0, &err);
    cr_assert_not_null(back, "%s: %s", txt, err.text);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(proto_body_get(json_array_get(back, i), &got, &got_len), 0);
        cr_assert_eq(got_len, n, "element %zu: %zu bytes for %zu", i, got_len, n);
        cr_assert_eq(n ? memcmp(got, s, n) : 0, 0, "element %zu", i);
        cr_assert_eq(got[n], '\0');
        free(got);
    }
    free(txt);
    json_decref(back);
    json_decref(arr);
}

Test(body, round_trips)
{
    char all[256 * 3];

    round_trip("", 0, true);
    round_trip(NULL, 0, true); /* an empty body may be stored as NULL */
    round_trip("hello\n", 6, true);
    round_trip("caf\xc3\xa9", 5, true);
    round_trip("\0", 1, false);
    round_trip("\xff", 1, false);
    round_trip("a\0b\xff", 4, false);
    round_trip("\xc0\xaf", 2, false);
    round_trip("ok\xc3", 3, false);
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (char)(i % 256);
    /* From byte 1 on: ASCII text up to 127 bytes, then not text. */
    for (size_t n = 0; n < sizeof(all); n += 37)
        round_trip(all + 1, n, n < 128);
    round_trip(all, sizeof(all), false);
}

Test(body, base64url_spelling)
{
    json_t *o = json_object();

    cr_assert_eq(proto_body_set(o, "\0\xff", 2), 0);
    cr_assert_str_eq(json_string_value(json_object_get(o, PROTO_BODY_B64_KEY)), "AP8");
    json_decref(o);
}

Test(body, get_refuses)
{
    json_t *attrs = json_pack("{s:s, s:i, s:i}", "id", "m", "ttl", 0, "hide", 0);
    json_t *bad = json_pack("{s:s}", PROTO_BODY_B64_KEY, "AP8=");
    json_t *num = json_integer(3);
    char *out = NULL;
    size_t len = 0;

    cr_assert_eq(proto_body_get(attrs, &out, &len), -ENOENT);
    cr_assert_eq(proto_body_get(num, &out, &len), -ENOENT);
    cr_assert_eq(proto_body_get(NULL, &out, &len), -ENOENT);
    cr_assert_eq(proto_body_get(bad, &out, &len), -EINVAL, "padding is refused (strict codec)");
    cr_assert_null(out);
    json_decref(attrs);
    json_decref(bad);
    json_decref(num);
}
