/* SPDX-License-Identifier: ISC */
/*
 * Fuzz proto/body. Properties: any bytes go into JSON (as a bare value and
 * as a member of an object), survive a JSON text round trip through
 * jansson, and come back from proto_body_get() unchanged; a string that
 * proto_body_is_text() accepts is one jansson accepts as a string; and a
 * body read from arbitrary JSON (the input) round-trips the same way.
 */
#include "proto/body.h"
#include "tests/fuzz/fuzz.h"

#include <errno.h>
#include <string.h>

/* <v> -> JSON text -> parsed -> proto_body_get() must give <s>, <n>. */
static void
check_roundtrip(json_t *v, const char *s, size_t n)
{
    char *text, *out = NULL;
    size_t len = 0;
    json_t *back;
    json_error_t err;

    FUZZ_CHECK(v != NULL);
    text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    FUZZ_CHECK(text != NULL);
    back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    FUZZ_CHECK(back != NULL);
    FUZZ_CHECK(proto_body_get(back, &out, &len) == 0);
    FUZZ_CHECK(len == n && (n == 0 || memcmp(out, s, n) == 0) && out[len] == '\0');
    free(out);
    json_decref(back);
    free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    json_t *v, *obj, *in;
    json_error_t err;
    char *out = NULL;
    size_t len = 0, span = proto_body_utf8_span(s, size);
    int rc;

    FUZZ_CHECK(span <= size);
    if (proto_body_is_text(s, size)) {
        json_t *js = json_stringn(s, size); /* jansson's own UTF-8 check */

        FUZZ_CHECK(js != NULL);
        json_decref(js);
    }
    v = proto_body_value(s, size);
    check_roundtrip(v, s, size);
    json_decref(v);
    obj = json_object();
    FUZZ_CHECK(obj != NULL && proto_body_set(obj, s, size) == 0);
    FUZZ_CHECK(json_object_size(obj) == 1);
    check_roundtrip(obj, s, size);
    json_decref(obj);

    /* The input as JSON someone sent: whatever body it carries must come
     * out whole and go back in unchanged. */
    in = json_loadb(s, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (in == NULL)
        return 0;
    rc = proto_body_get(in, &out, &len);
    FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL);
    if (rc == 0) {
        v = proto_body_value(out, len);
        check_roundtrip(v, out, len);
        json_decref(v);
        free(out);
    }
    json_decref(in);
    return 0;
}
