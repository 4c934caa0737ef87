/* SPDX-License-Identifier: ISC */
/*
 * Benchmark for burrowd on loopback: starts the server given as argv[1],
 * drives it with libcurl (multi interface, keep-alive connections) and
 * prints
 *   burrowd.put_ops         PUTs of 100-byte messages per second
 *   burrowd.get_ops         single-message GETs per second, 1M-message queue
 *   burrowd.get_latency_us  one GET at a time on one connection, same queue
 *   burrowd.claim_ops       POST ?limit=1&hide=60&detail=all per second
 *   burrowd.delete_ops      single-message DELETEs per second
 *   burrowd.bytes_per_message  RSS growth per stored message at 1M messages
 * and, steadier on a shared machine, burrowd's own CPU time (utime + stime
 * from /proc) per request of each phase: burrowd.<op>_cpu_us.
 * Message count and concurrency can be lowered for a quick run:
 *   bench_burrowd BURROWD [MESSAGES [CONCURRENCY]]
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

#define MAX_CONC 64

static char base[64];
static size_t nmsgs = 1000000;
static int conc = 8;

static int
free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) == -1) {
        perror("free_port");
        exit(1);
    }
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void
wait_port(int port)
{
    for (int i = 0; i < 500; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(fd);
            return;
        }
        close(fd);
        usleep(10000);
    }
    fprintf(stderr, "burrowd did not start\n");
    exit(1);
}

static long
rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* burrowd's user + system CPU time so far, in microseconds. */
static double
cpu_us(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static size_t
discard(char *p, size_t sz, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return sz * n;
}

/* URL of request <i> of a run. */
typedef void (*url_fn)(size_t i, char *buf, size_t len);

static char body100[101]; /* 100 bytes of message body */

/*
 * Run <n> requests with <c> keep-alive handles in one multi. <want1>/<want2>
 * are the acceptable statuses. Returns requests per second.
 */
static double
run(const char *method, url_fn url, size_t n, int c, long want1, long want2)
{
    CURLM *m = curl_multi_init();
    CURL *h[MAX_CONC];
    char urls[MAX_CONC][256];
    size_t issued = 0, done = 0, bad = 0;
    double t0;
    int running;

    if (c > MAX_CONC)
        c = MAX_CONC;
    if ((size_t)c > n)
        c = (int)n;
    for (int i = 0; i < c; i++) {
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(h[i], CURLOPT_PRIVATE, urls[i]);
        if (!strcmp(method, "PUT")) {
            curl_easy_setopt(h[i], CURLOPT_POSTFIELDS, body100);
            curl_easy_setopt(h[i], CURLOPT_POSTFIELDSIZE, 100L);
        }
    }
    t0 = clock_mono_s();
    for (int i = 0; i < c; i++) {
        url(issued++, urls[i], sizeof(urls[i]));
        curl_easy_setopt(h[i], CURLOPT_URL, urls[i]);
        curl_multi_add_handle(m, h[i]);
    }
    while (done < n) {
        CURLMsg *msg;
        int left;

        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            CURL *e = msg->easy_handle;
            long code = 0;
            char *u;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result != CURLE_OK || (code != want1 && code != want2)) {
                if (bad++ < 5)
                    fprintf(stderr, "%s: curl %d status %ld\n", method, (int)msg->data.result,
                            code);
            }
            done++;
            curl_multi_remove_handle(m, e);
            if (issued < n) {
                curl_easy_getinfo(e, CURLINFO_PRIVATE, &u);
                url(issued++, u, 256);
                curl_easy_setopt(e, CURLOPT_URL, u);
                curl_multi_add_handle(m, e);
            }
        }
        if (done < n)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double dt = clock_mono_s() - t0;
    for (int i = 0; i < c; i++)
        curl_easy_cleanup(h[i]);
    curl_multi_cleanup(m);
    if (bad) {
        fprintf(stderr, "%s: %zu of %zu requests failed\n", method, bad, n);
        exit(1);
    }
    return (double)n / dt;
}

static void
put_url(size_t i, char *buf, size_t len)
{
    snprintf(buf, len, "%s/v1.0/bench/q/m%zu", base, i);
}

static uint64_t rng = 88172645463325252ull;

static void
get_url(size_t i, char *buf, size_t len)
{
    (void)i;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    snprintf(buf, len, "%s/v1.0/bench/q/m%zu", base, (size_t)(rng % nmsgs));
}

static void
claim_url(size_t i, char *buf, size_t len)
{
    (void)i;
    snprintf(buf, len, "%s/v1.0/bench/q?limit=1&hide=600&detail=all", base);
}

static void
del_url(size_t i, char *buf, size_t len)
{
    snprintf(buf, len, "%s/v1.0/bench/q/m%zu", base, nmsgs - 1 - i);
}

static void
warm_url(size_t i, char *buf, size_t len)
{
    snprintf(buf, len, "%s/v1.0/warm/q/m%zu", base, i);
}

int
main(int argc, char **argv)
{
    char portarg[32];
    int port, status;
    pid_t pid;
    long rss0, rss1;

    if (argc < 2) {
        fprintf(stderr, "usage: bench_burrowd BURROWD [MESSAGES [CONCURRENCY]]\n");
        return 2;
    }
    if (argc > 2)
        nmsgs = strtoul(argv[2], NULL, 10);
    if (argc > 3)
        conc = atoi(argv[3]);
    if (nmsgs < 1000 || conc < 1) {
        fprintf(stderr, "bench_burrowd: want MESSAGES >= 1000 and CONCURRENCY >= 1\n");
        return 2;
    }
    port = free_port();
    snprintf(portarg, sizeof(portarg), "127.0.0.1:%d", port);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    pid = fork();
    if (pid == 0) {
        execl(argv[1], argv[1], "--listen", portarg, "--default-ttl", "0", (char *)NULL);
        _exit(127);
    }
    wait_port(port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 0; i < 100; i++)
        body100[i] = (char)('a' + i % 26);

    /* Warm up the connections and allocator, then take the RSS baseline. */
    run("PUT", warm_url, 20000, conc, 201, 204);
    run("DELETE", warm_url, 20000, conc, 204, 204);
    rss0 = rss_kib(pid);

    double c0 = cpu_us(pid);
    double put = run("PUT", put_url, nmsgs, conc, 201, 201);
    double c1 = cpu_us(pid);
    rss1 = rss_kib(pid);
    size_t ngets = nmsgs / 4 < 200000 ? nmsgs / 4 : 200000;
    double get = run("GET", get_url, ngets, conc, 200, 200);
    double c2 = cpu_us(pid);
    double get1 = run("GET", get_url, ngets / 10, 1, 200, 200);
    double c3 = cpu_us(pid);
    double claim = run("POST", claim_url, ngets, conc, 200, 200);
    double c4 = cpu_us(pid);
    double del = run("DELETE", del_url, ngets, conc, 204, 204);
    double c5 = cpu_us(pid);

    printf("burrowd.messages: %zu count\n", nmsgs);
    printf("burrowd.concurrency: %d connections\n", conc);
    printf("burrowd.put_ops: %.0f ops/s\n", put);
    printf("burrowd.get_ops: %.0f ops/s\n", get);
    printf("burrowd.get_latency_us: %.1f us\n", 1e6 / get1);
    printf("burrowd.claim_ops: %.0f ops/s\n", claim);
    printf("burrowd.delete_ops: %.0f ops/s\n", del);
    printf("burrowd.put_cpu_us: %.1f us\n", (c1 - c0) / (double)nmsgs);
    printf("burrowd.get_cpu_us: %.1f us\n", (c2 - c1) / (double)ngets);
    printf("burrowd.claim_cpu_us: %.1f us\n", (c4 - c3) / (double)ngets);
    printf("burrowd.delete_cpu_us: %.1f us\n", (c5 - c4) / (double)ngets);
    printf("burrowd.rss_before: %ld KiB\n", rss0);
    printf("burrowd.rss_after_put: %ld KiB\n", rss1);
    printf("burrowd.bytes_per_message: %.1f bytes\n",
           (double)(rss1 - rss0) * 1024.0 / (double)nmsgs);

    kill(pid, SIGTERM);
    if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "burrowd did not exit cleanly (status %d)\n", status);
        return 1;
    }
    curl_global_cleanup();
    return 0;
}
