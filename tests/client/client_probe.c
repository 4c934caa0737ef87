/* SPDX-License-Identifier: ISC */
/*
 * client-probe: drives one shed client handle from a test script. Pins live
 * in the process, so the integration test keeps one probe running while it
 * kills backends, stops sheds and waits for pins to expire, and talks to it
 * one line at a time: a command on stdin, one JSON object on stdout.
 *
 *   req METHOD URL [BODY_HEX]   one request; {"rc","status","body","pinned",...}
 *   loop COUNT URL              GET URL COUNT times; {"ok","pinned","bad"}
 *   threads N COUNT BASE        N threads share the handle, each PUTs and GETs
 *                               COUNT messages BASE/t<i>-<j>; {"ok","bad"}
 *   bucket RING URL             the bucket of URL under a Shed-Ring value
 *                               written without spaces ("b=1024;k=3;sa=..;sk=..")
 *   metrics                     the handle's counters
 *   pins                        the live pins
 *   quit
 *
 * Options: --shed HOST:PORT (repeatable), --retries N, --backoff MS,
 * --verbose (redirect chain on stderr).
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "client/wire.h"

#define BODY_MAX_ (1u << 20) /* bytes of one request body */

static struct shed_client *client;

static void
emit(json_t *o)
{
    json_dumpf(o, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(o);
}

static int
unhex(const char *s, char *out, size_t outlen, size_t *len)
{
    size_t n = strlen(s);

    if (n % 2 != 0 || n / 2 > outlen)
        return -EINVAL;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;

        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -EINVAL;
        out[i] = (char)v;
    }
    *len = n / 2;
    return 0;
}

static void
cmd_req(const char *method, const char *url, const char *hex)
{
    static char body[BODY_MAX_];
    size_t len = 0;
    struct shed_client_request req = {.method = method, .url = url};
    struct shed_client_response resp;
    int rc;

    if (hex != NULL) {
        if (unhex(hex, body, sizeof(body), &len) != 0) {
            emit(json_pack("{s:s}", "error", "bad hex"));
            return;
        }
        req.body = body;
        req.body_len = len;
    }
    rc = shed_client_request(client, &req, &resp);
    emit(json_pack("{s:i, s:s, s:i, s:s#, s:b, s:i, s:i, s:s, s:s, s:i, s:b}", "rc", rc, "error",
                   shed_client_strerror(rc), "status", (int)resp.status, "body", resp.body,
                   (int)resp.body_len, "pinned", resp.pinned, "hops", (int)resp.hops, "attempts",
                   (int)resp.attempts, "final_url", resp.final_url, "link_next", resp.link_next,
                   "bucket", (int)resp.bucket, "has_bucket", resp.has_bucket));
    shed_client_response_free(&resp);
}

static void
cmd_loop(long count, const char *url)
{
    long ok = 0, pinned = 0, bad = 0;

    for (long i = 0; i < count; i++) {
        struct shed_client_request req = {.method = "GET", .url = url};
        struct shed_client_response resp;

        if (shed_client_request(client, &req, &resp) == 0 && resp.status == 200)
            ok++;
        else
            bad++;
        pinned += resp.pinned;
        shed_client_response_free(&resp);
    }
    emit(json_pack("{s:i, s:i, s:i}", "ok", (int)ok, "pinned", (int)pinned, "bad", (int)bad));
}

struct worker {
    pthread_t th;
    int id;
    long count;
    const char *base;
    long ok, bad;
};

static void *
work(void *arg)
{
    struct worker *w = arg;

    for (long j = 0; j < w->count; j++) {
        char url[1024], body[128];
        struct shed_client_request put = {.method = "PUT", .url = url, .body = body};
        struct shed_client_request get = {.method = "GET"};
        struct shed_client_response resp;
        bool good;

        snprintf(url, sizeof(url), "%s/t%d-%ld", w->base, w->id, j);
        put.body_len = (size_t)snprintf(body, sizeof(body), "thread %d message %ld", w->id, j);
        good = shed_client_request(client, &put, &resp) == 0 &&
               (resp.status == 201 || resp.status == 204);
        shed_client_response_free(&resp);
        if (good) {
            char geturl[1100];

            snprintf(geturl, sizeof(geturl), "%s?detail=body", url);
            get.url = geturl;
            good = shed_client_request(client, &get, &resp) == 0 && resp.status == 200 &&
                   resp.body_len == put.body_len && memcmp(resp.body, body, put.body_len) == 0;
            shed_client_response_free(&resp);
        }
        if (good)
            w->ok++;
        else
            w->bad++;
    }
    return NULL;
}

static void
cmd_threads(int n, long count, const char *base)
{
    struct worker ws[64];
    long ok = 0, bad = 0;

    if (n < 1 || n > 64) {
        emit(json_pack("{s:s}", "error", "1..64 threads"));
        return;
    }
    for (int i = 0; i < n; i++) {
        ws[i] = (struct worker){.id = i, .count = count, .base = base};
        pthread_create(&ws[i].th, NULL, work, &ws[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(ws[i].th, NULL);
        ok += ws[i].ok;
        bad += ws[i].bad;
    }
    emit(json_pack("{s:i, s:i}", "ok", (int)ok, "bad", (int)bad));
}

static void
cmd_bucket(const char *ring, const char *url)
{
    struct ring_config cfg;
    uint32_t b = 0;
    int rc = client_wire_parse_ring(ring, strlen(ring), &cfg);

    if (rc == 0)
        rc = shed_client_url_bucket(&cfg, url, &b);
    emit(json_pack("{s:i, s:I}", "rc", rc, "bucket", (json_int_t)b));
}

static void
cmd_metrics(void)
{
    struct shed_client_metrics m;

    shed_client_metrics(client, &m);
    emit(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "requests",
                   (json_int_t)m.requests, "http", (json_int_t)m.http, "redirects",
                   (json_int_t)m.redirects, "pinned", (json_int_t)m.pinned, "shed_asks",
                   (json_int_t)m.shed_asks, "failures", (json_int_t)m.failures, "retries",
                   (json_int_t)m.retries, "pins_set", (json_int_t)m.pins_set, "pins_dropped",
                   (json_int_t)m.pins_dropped, "lookups", (json_int_t)m.lookups));
}

static void
cmd_pins(void)
{
    static struct client_pin pins[4096];
    size_t n = shed_client_pins(client, pins, 4096);
    uint64_t now = shed_client_now_ms(client);
    json_t *arr = json_array();

    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I, s:s, s:I, s:I, s:s}", "service",
                                             pins[i].service, "bucket", (json_int_t)pins[i].bucket,
                                             "host", pins[i].host, "expires_in_ms",
                                             (json_int_t)(pins[i].expires_ms - now), "hits",
                                             (json_int_t)pins[i].hits, "why", pins[i].why));
    emit(json_pack("{s:o}", "pins", arr));
}

int
main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"shed", required_argument, NULL, 's'},
        {"retries", required_argument, NULL, 'r'},
        {"backoff", required_argument, NULL, 'b'},
        {"verbose", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    struct shed_client_options o;
    static char line[BODY_MAX_ * 2 + 8192];
    int ch;

    shed_client_options_init(&o);
    while ((ch = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (o.nsheds < SHED_CLIENT_MAX_SHEDS)
                o.sheds[o.nsheds++] = optarg;
            break;
        case 'r':
            o.retries = (unsigned)atoi(optarg);
            break;
        case 'b':
            o.backoff_base_ms = (unsigned)atoi(optarg);
            break;
        case 'v':
            o.trace = stderr;
            break;
        default:
            return 2;
        }
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (shed_client_create(&o, &client) != 0) {
        fputs("client-probe: bad options\n", stderr);
        return 2;
    }
    while (fgets(line, sizeof(line), stdin) != NULL) {
        char *save = NULL;
        char *cmd = strtok_r(line, " \t\r\n", &save);
        char *a1 = strtok_r(NULL, " \t\r\n", &save);
        char *a2 = strtok_r(NULL, " \t\r\n", &save);
        char *a3 = strtok_r(NULL, " \t\r\n", &save);

        if (cmd == NULL)
            continue;
        if (strcmp(cmd, "quit") == 0)
            break;
        if (strcmp(cmd, "req") == 0 && a1 && a2)
            cmd_req(a1, a2, a3);
        else if (strcmp(cmd, "loop") == 0 && a1 && a2)
            cmd_loop(atol(a1), a2);
        else if (strcmp(cmd, "threads") == 0 && a1 && a2 && a3)
            cmd_threads(atoi(a1), atol(a2), a3);
        else if (strcmp(cmd, "bucket") == 0 && a1 && a2)
            cmd_bucket(a1, a2);
        else if (strcmp(cmd, "metrics") == 0)
            cmd_metrics();
        else if (strcmp(cmd, "pins") == 0)
            cmd_pins();
        else
            emit(json_pack("{s:s}", "error", "unknown command"));
    }
    shed_client_destroy(client);
    curl_global_cleanup();
    return 0;
}
