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
 * Within a round the sides take turns in batches of BATCH requests (a few
 * milliseconds each), the order reversed every other turn, until each has
 * run <seconds>; a ratio is taken per round (same round, same machine
 * load, sampled the same way) and printed as the median with its min and
 * max over the rounds. (Whole-side windows of 0.5 s gave pinned/direct
 * ranges of 0.4-1.6 on the loaded VM.) CPU per
 * request is this process's (CLOCK_PROCESS_CPUTIME_ID: the scheduler's
 * runtime of every thread, as in /proc/self/task/<tid>/schedstat), so the
 * library's own cost per request shows beside the request rate. The direct
 * side keeps up to 64 connections (CURLOPT_MAXCONNECTS; libcurl's default
 * of 5 made it reconnect with more than 5 backends), more than the
 * client's 32.
 *
 * Prints "name: value unit" lines; ratios are from the same run.
 * Usage: bench-client --shed HOST:PORT [--seconds S] [--messages N] [--rounds R]
 *        [--only pinned|direct|naive [--ops N]]
 *   --only runs one side alone, for strace/callgrind, and prints its ops and
 *   nothing else: for <seconds>, or exactly N requests with --ops, so that
 *   two runs (say --ops 16 and --ops 4016) subtract to the cost of 4000
 *   requests without the setup (the PUTs, the warm-up of each side).
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ROUNDS 100
#define BATCH      16  /* requests per turn of a side */
#define WARM_OPS   320 /* warm-up requests per side: every message once */

#include "client/client.h"
#include "common/clock.h"

/* The body of one plain libcurl response, kept in memory: the pinned side
 * hands the caller its body, so the plain side copies it out too, into one
 * buffer reused by the requests of a batch (no allocation per request: the
 * cheapest a libcurl program can do). */
struct sink {
    char *buf;
    size_t len, cap;
};

static size_t
sink_cb(char *data, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;

    if (s->len + size * n + 1 > s->cap) {
        size_t cap = 2 * (s->len + size * n + 1);
        char *nb = realloc(s->buf, cap);

        if (nb == NULL)
            return 0;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, size * n);
    s->len += size * n;
    s->buf[s->len] = '\0';
    return size * n;
}

/* CPU seconds of every thread of this process so far. */
static double
cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* "name: median unit (min .., max .., N rounds)" of <v> (sorted here). */
static void
print_spread(const char *name, double *v, int n, const char *unit, int digits)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    printf("%s: %.*f %s (min %.*f, max %.*f, %d rounds)\n", name, digits, med, unit, digits, v[0],
           digits, v[n - 1], n);
}

/* <nops> plain libcurl GETs of urls[*pos % n] on, *pos moved on; returns
 * the good ones, the wall time in <took>. */
static long
run_curl(CURL *e, char **urls, int n, int *pos, int nops, const char *connect_to, bool follow,
         double *took)
{
    struct curl_slist *cto = connect_to ? curl_slist_append(NULL, connect_to) : NULL;
    struct sink s = {0};
    double t0 = clock_mono_s();
    long ok = 0;

    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, cto);
    for (int k = 0; k < nops; k++, (*pos)++) {
        long status = 0;

        curl_easy_setopt(e, CURLOPT_URL, urls[*pos % n]);
        if (curl_easy_perform(e) == CURLE_OK &&
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200)
            ok++;
        s.len = 0;
    }
    *took = clock_mono_s() - t0;
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, NULL);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    curl_slist_free_all(cto);
    free(s.buf);
    return ok;
}

/* <nops> GETs of urls[*pos % n] through the shed client. */
static long
run_pinned(struct shed_client *c, char **urls, int n, int *pos, int nops, double *took)
{
    double t0 = clock_mono_s();
    long ok = 0;

    for (int k = 0; k < nops; k++, (*pos)++) {
        struct shed_client_request req = {.method = "GET", .url = urls[*pos % n]};
        struct shed_client_response resp;

        if (shed_client_request(c, &req, &resp) == 0 && resp.status == 200)
            ok++;
        shed_client_response_free(&resp);
    }
    *took = clock_mono_s() - t0;
    return ok;
}

/* The sides, for one batch of <nops> each. */
struct sides {
    struct shed_client *c;
    CURL *e_direct, *e_naive;
    char **svc, **direct;
    int n;
    const char *cto;
    int pos[3];
};

static long
run_side(struct sides *s, int side, int nops, double *took)
{
    if (side == 0)
        return run_pinned(s->c, s->svc, s->n, &s->pos[0], nops, took);
    if (side == 1)
        return run_curl(s->e_direct, s->direct, s->n, &s->pos[1], nops, NULL, false, took);
    return run_curl(s->e_naive, s->svc, s->n, &s->pos[2], nops, s->cto, true, took);
}

/* Batches of <nops> of <side> until <secs> have passed; ops done. */
static long
run_for(struct sides *s, int side, double secs, int nops, double *took)
{
    double t, sum = 0;
    long ok = 0;

    do {
        ok += run_side(s, side, nops, &t);
        sum += t;
    } while (sum < secs);
    *took = sum;
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
        {"only", required_argument, NULL, 'o'},
        {"ops", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    struct shed_client_options o;
    struct shed_client *c;
    struct shed_client_metrics m0, m1;
    const char *shed = NULL;
    double secs = 2.0;
    static double rate[3][MAX_ROUNDS], cpu[3][MAX_ROUNDS], vs_direct[MAX_ROUNDS],
        vs_naive[MAX_ROUNDS], cpu_vs_direct[MAX_ROUNDS];
    int n = 200, rounds = 7, ch, only = -1;
    long only_ops = 0;
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
        case 'o':
            only = strcmp(optarg, "pinned") == 0   ? 0
                   : strcmp(optarg, "direct") == 0 ? 1
                   : strcmp(optarg, "naive") == 0  ? 2
                                                   : -2;
            break;
        case 'p':
            only_ops = atol(optarg);
            break;
        default:
            return 2;
        }
    }
    if (shed == NULL || n < 1 || n > 100000 || secs <= 0 || rounds < 1 || rounds > MAX_ROUNDS ||
        only == -2 || only_ops < 0 || only_ops > 100000000) {
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
    /* The plain libcurl sides get the options the library sets on its
     * handles (its default timeouts, http and https only), and up to 64
     * cached connections. */
    CURL *plain[2] = {e_direct, e_naive};
    for (int i = 0; i < 2; i++) {
        curl_easy_setopt(plain[i], CURLOPT_MAXCONNECTS, 64L);
        curl_easy_setopt(plain[i], CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt(plain[i], CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(plain[i], CURLOPT_PROTOCOLS_STR, "http,https");
    }
    snprintf(cto, sizeof(cto), "burrow.service:80:%s", shed);
    struct sides sd = {.c = c,
                       .e_direct = e_direct,
                       .e_naive = e_naive,
                       .svc = svc,
                       .direct = direct,
                       .n = n,
                       .cto = cto};
    /* One warm-up pass per side over every message: connections open (and
     * pins taken) before the first round; a fixed count, so that a profile
     * of two --only runs subtracts it exactly. */
    for (int side = 0; side < 3; side++) {
        double t;
        (void)run_side(&sd, side, n > WARM_OPS ? n : WARM_OPS, &t);
    }
    if (only >= 0) { /* one side, nothing else: a profile of it alone */
        double t;
        long ops = only_ops > 0 ? run_side(&sd, only, (int)only_ops, &t)
                                : run_for(&sd, only, secs, BATCH, &t);
        printf("client.only_ops: %ld ops\n", ops);
        rounds = 0;
    }
    shed_client_metrics(c, &m0);
    for (int r = 0; r < rounds; r++) {
        double took[3] = {0}, used[3] = {0}, t;
        long ops[3] = {0};

        /* Within the round the sides take turns in batches of BATCH
         * requests (a few ms each), the order reversed every other turn,
         * until each had <secs>: a load swing on the shared machine lasts
         * longer than a turn and hits the three sides alike. */
        for (int turn = 0; took[0] < secs || took[1] < secs || took[2] < secs; turn++) {
            for (int k = 0; k < 3; k++) {
                int side = (r + turn) % 2 ? 2 - k : k;
                double c0 = cpu_s();

                ops[side] += run_side(&sd, side, BATCH, &t);
                took[side] += t;
                used[side] += cpu_s() - c0;
            }
        }
        for (int side = 0; side < 3; side++) {
            rate[side][r] = (double)ops[side] / took[side];
            cpu[side][r] = used[side] * 1e6 / (double)(ops[side] > 0 ? ops[side] : 1);
        }
        vs_direct[r] = rate[0][r] / rate[1][r];
        vs_naive[r] = rate[0][r] / rate[2][r];
        cpu_vs_direct[r] = cpu[0][r] / cpu[1][r];
    }
    shed_client_metrics(c, &m1);
    if (rounds > 0) {
        print_spread("client.pinned_ops_per_s", rate[0], rounds, "ops/s", 0);
        print_spread("client.direct_ops_per_s", rate[1], rounds, "ops/s", 0);
        print_spread("client.naive_ops_per_s", rate[2], rounds, "ops/s", 0);
        print_spread("client.pinned_vs_direct", vs_direct, rounds, "ratio", 3);
        print_spread("client.pinned_vs_naive", vs_naive, rounds, "ratio", 3);
        print_spread("client.pinned_cpu_us_per_op", cpu[0], rounds, "us", 1);
        print_spread("client.direct_cpu_us_per_op", cpu[1], rounds, "us", 1);
        print_spread("client.naive_cpu_us_per_op", cpu[2], rounds, "us", 1);
        print_spread("client.pinned_cpu_vs_direct", cpu_vs_direct, rounds, "ratio", 3);
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
