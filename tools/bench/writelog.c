/*
 * writelog - writers that run until told to stop and log every write, for
 * latency over time (tools/bench/catchup):
 *
 *   writelog DIR THREADS KEYS STOPFILE OUT [MAX_SECONDS]
 *
 * Each of THREADS threads overwrites its keys DIR/wl-T-0 .. wl-T-(KEYS-1)
 * in turn, as a user writes a file: open(O_WRONLY|O_CREAT|O_TRUNC), write
 * 100 bytes (FSBENCH_VALUE_BYTES changes it), close (which returns once
 * the write is committed).  It stops once STOPFILE exists (checked every
 * 50 ms) or after MAX_SECONDS (default 3600), then writes OUT, one line
 * per write in order of completion:
 *
 *   END_NS LATENCY_US ERRNO
 *
 * END_NS is CLOCK_REALTIME in nanoseconds (so a script can place each
 * write in the phases it marked with `date +%s%N`), LATENCY_US measured
 * on CLOCK_MONOTONIC, ERRNO 0 for a write that committed.  Memory: 24
 * bytes per write.  Prints one summary line.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct rec {
    int64_t end_ns;
    uint32_t lat_us;
    int32_t err;
} rec;

typedef struct wl_worker {
    const char *dir;
    int id;
    long keys;
    rec *r;
    size_t n, cap;
} wl_worker;

static atomic_int stop;
static size_t value_bytes = 100;

static int64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *run(void *arg)
{
    wl_worker *w = arg;
    char value[65536], path[4096];
    memset(value, 'a' + w->id % 26, value_bytes);
    for (long i = 0; !atomic_load(&stop); i++) {
        if (w->n == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 8192;
            rec *p = realloc(w->r, cap * sizeof *p);
            if (!p)
                break;
            w->r = p;
            w->cap = cap;
        }
        snprintf(path, sizeof path, "%s/wl-%d-%ld", w->dir, w->id, i % w->keys);
        int64_t t0 = clock_ns(CLOCK_MONOTONIC);
        int err = 0;
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            err = errno;
        } else {
            ssize_t n = write(fd, value, value_bytes);
            if (n != (ssize_t)value_bytes)
                err = n < 0 ? errno : EIO;
            if (close(fd) != 0 && !err)
                err = errno;
        }
        int64_t t1 = clock_ns(CLOCK_MONOTONIC);
        w->r[w->n++] = (rec){ .end_ns = clock_ns(CLOCK_REALTIME),
                              .lat_us = (uint32_t)((t1 - t0) / 1000),
                              .err = err };
        if (err)
            usleep(10000);   /* a failing mount: do not spin */
    }
    return NULL;
}

static int cmp_rec(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    return x->end_ns < y->end_ns ? -1 : x->end_ns > y->end_ns;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: writelog DIR THREADS KEYS STOPFILE OUT "
                "[MAX_SECONDS]\n");
        return 2;
    }
    int threads = atoi(argv[2]);
    long keys = atol(argv[3]);
    double max_s = argc == 7 ? atof(argv[6]) : 3600;
    if (threads < 1 || threads > 1024 || keys < 1 || !(max_s > 0))
        return 2;
    const char *vb = getenv("FSBENCH_VALUE_BYTES");
    if (vb && atoi(vb) > 0 && atoi(vb) <= 65536)
        value_bytes = (size_t)atoi(vb);
    wl_worker *ws = calloc((size_t)threads, sizeof *ws);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (!ws || !tids)
        return 2;
    for (int t = 0; t < threads; t++) {
        ws[t] = (wl_worker){ .dir = argv[1], .id = t, .keys = keys };
        if (pthread_create(&tids[t], NULL, run, &ws[t]) != 0) {
            fprintf(stderr, "writelog: cannot start thread %d\n", t);
            return 2;
        }
    }
    int64_t end = clock_ns(CLOCK_MONOTONIC) + (int64_t)(max_s * 1e9);
    while (clock_ns(CLOCK_MONOTONIC) < end && access(argv[4], F_OK) != 0)
        usleep(50000);
    atomic_store(&stop, 1);
    size_t total = 0, failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        total += ws[t].n;
    }
    rec *all = malloc((total ? total : 1) * sizeof *all);
    if (!all)
        return 2;
    size_t at = 0;
    for (int t = 0; t < threads; t++) {
        memcpy(all + at, ws[t].r, ws[t].n * sizeof *all);
        at += ws[t].n;
        free(ws[t].r);
    }
    qsort(all, total, sizeof *all, cmp_rec);
    FILE *out = fopen(argv[5], "w");
    if (!out) {
        perror(argv[5]);
        return 2;
    }
    for (size_t i = 0; i < total; i++) {
        fprintf(out, "%lld %u %d\n", (long long)all[i].end_ns, all[i].lat_us,
                all[i].err);
        failed += all[i].err != 0;
    }
    if (fclose(out) != 0) {
        perror(argv[5]);
        return 2;
    }
    printf("writelog threads=%d writes=%zu failed=%zu out=%s\n", threads,
           total, failed, argv[5]);
    free(all);
    free(ws);
    free(tids);
    return failed ? 1 : 0;
}
