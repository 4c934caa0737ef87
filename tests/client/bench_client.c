/* SPDX-License-Identifier: ISC */
/*
 * bench-client: what pinning buys, side by side in one run against the same
 * shed and backends (started by bench_client.py). Three ways to GET the same
 * messages, one request at a time on one thread, in interleaved rounds:
 *
 *   pinned  the shed client: ask a shed once per bucket, then go direct
 *   direct  plain libcurl straight to the backend that holds the message
 *   naive   plain libcurl with CURLOPT_FOLLOWLOCATION through the shed on
 *           every request (what a redirect-following client does)
 *
 * Prints "name: value unit" lines; ratios are from the same run.
 * Usage: bench-client --shed HOST:PORT [--seconds S] [--messages N] [--rounds R]
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "common/clock.h"

struct sink {
    size_t len;
};

static size_t
sink_cb(char *data, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;

    (void)data;
    s->len += size * n;
    return size * n;
}

/* Plain libcurl GETs of urls[i % n] for <secs>; returns good ops done. */
static long
run_curl(CURL *e, char **urls, int n, double secs, const char *connect_to, bool follow,
         double *took)
{
    struct curl_slist *cto = connect_to ? curl_slist_append(NULL, connect_to) : NULL;
    struct sink s = {0};
    double t0 = clock_mono_s(), t;
    long ok = 0;
    int i = 0;

    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, cto);
    do {
        for (int k = 0; k < 64; k++, i++) {
            long status = 0;

            curl_easy_setopt(e, CURLOPT_URL, urls[i % n]);
            if (curl_easy_perform(e) == CURLE_OK &&
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200)
                ok++;
        }
        t = clock_mono_s() - t0;
    } while (t < secs);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, NULL);
    curl_slist_free_all(cto);
    *took = t;
    return ok;
}

static long
run_pinned(struct shed_client *c, char **urls, int n, double secs, double *took)
{
    double t0 = clock_mono_s(), t;
    long ok = 0;
    int i = 0;

    do {
        for (int k = 0; k < 64; k++, i++) {
            struct shed_client_request req = {.method = "GET", .url = urls[i % n]};
            struct shed_client_response resp;

            if (shed_client_request(c, &req, &resp) == 0 && resp.status == 200)
                ok++;
            shed_client_response_free(&resp);
        }
        t = clock_mono_s() - t0;
    } while (t < secs);
    *took = t;
    return ok;
}

int
main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"shed", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 't'},
        {"messages", required_argument, NULL, 'n'},
        {"rounds", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    struct shed_client_options o;
    struct shed_client *c;
    struct shed_client_metrics m0, m1;
    const char *shed = NULL;
    double secs = 2.0, t;
    double tt[3] = {0, 0, 0};
    long ops[3] = {0, 0, 0};
    int n = 200, rounds = 3, ch;
    char **svc, **direct;
    char cto[300];
    CURL *e_direct, *e_naive;

    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 's':
            shed = optarg;
            break;
        case 't':
            secs = atof(optarg);
            break;
        case 'n':
            n = atoi(optarg);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    if (shed == NULL || n < 1 || n > 100000 || secs <= 0 || rounds < 1 || rounds > 100) {
        fputs("usage: bench-client --shed HOST:PORT [--seconds S] [--messages N]\n", stderr);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    shed_client_options_init(&o);
    o.sheds[0] = shed;
    o.nsheds = 1;
    if (shed_client_create(&o, &c) != 0)
        return 2;
    svc = calloc((size_t)n, sizeof(*svc));
    direct = calloc((size_t)n, sizeof(*direct));
    /* Load: PUT every message through the shed; remember where it landed. */
    for (int i = 0; i < n; i++) {
        char url[256];
        struct shed_client_request req = {
            .method = "PUT", .url = url, .body = "bench body", .body_len = 10};
        struct shed_client_response resp;

        snprintf(url, sizeof(url), "http://burrow.service/v1.0/bench%d/q/m%d", i % 8, i);
        if (shed_client_request(c, &req, &resp) != 0 ||
            (resp.status != 201 && resp.status != 204)) {
            fprintf(stderr, "bench-client: PUT %s failed: %ld\n", url, resp.status);
            return 3;
        }
        svc[i] = strdup(url);
        direct[i] = strdup(resp.final_url);
        shed_client_response_free(&resp);
    }
    e_direct = curl_easy_init();
    e_naive = curl_easy_init();
    snprintf(cto, sizeof(cto), "burrow.service:80:%s", shed);
    shed_client_metrics(c, &m0);
    for (int r = 0; r < rounds; r++) {
        ops[0] += run_pinned(c, svc, n, secs, &t);
        tt[0] += t;
        ops[1] += run_curl(e_direct, direct, n, secs, NULL, false, &t);
        tt[1] += t;
        ops[2] += run_curl(e_naive, svc, n, secs, cto, true, &t);
        tt[2] += t;
    }
    shed_client_metrics(c, &m1);
    {
        double pinned = (double)ops[0] / tt[0], dir = (double)ops[1] / tt[1],
               naive = (double)ops[2] / tt[2];

        printf("client.pinned_ops_per_s: %.0f ops/s\n", pinned);
        printf("client.direct_ops_per_s: %.0f ops/s\n", dir);
        printf("client.naive_ops_per_s: %.0f ops/s\n", naive);
        printf("client.pinned_vs_direct: %.3f ratio\n", pinned / dir);
        printf("client.pinned_vs_naive: %.3f ratio\n", pinned / naive);
        printf("client.pinned_share: %.4f ratio\n",
               (double)(m1.pinned - m0.pinned) / (double)(m1.requests - m0.requests));
        printf("client.shed_asks_during_bench: %llu asks\n",
               (unsigned long long)(m1.shed_asks - m0.shed_asks));
        printf("client.failures_during_bench: %llu failures\n",
               (unsigned long long)(m1.failures - m0.failures));
    }
    curl_easy_cleanup(e_direct);
    curl_easy_cleanup(e_naive);
    for (int i = 0; i < n; i++) {
        free(svc[i]);
        free(direct[i]);
    }
    free(svc);
    free(direct);
    shed_client_destroy(c);
    curl_global_cleanup();
    return 0;
}
