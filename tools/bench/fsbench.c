/*
 * fsbench - file operation micro-benchmark used by `make bench`.
 *
 *   fsbench write DIR THREADS OPS    open(O_CREAT|O_TRUNC)/write 100 B/close
 *   fsbench read  DIR THREADS OPS    open/read/close of existing files
 *   fsbench fsync DIR OPS            append 100 B + fdatasync to one file
 *   fsbench zmqrtt OPS               DEALER->ROUTER round trip between two
 *                                    processes over tcp://127.0.0.1
 *
 * DIR may be a comma-separated list: thread t works in the (t mod n)th.
 * VALUE_BYTES may be changed with env FSBENCH_VALUE_BYTES (default 100).
 * With env FSBENCH_MAX_SECONDS=S a thread of write/read stops after S
 * seconds even if it did fewer than OPS (a slow machine ends the run in
 * bounded time; ops= says how many were done).
 * Each thread works on its own 64 files.  Prints one line:
 *   <what> threads=T ops=N ops_per_s=X p50_us=Y p99_us=Z
 *
 * Keys in one directory, for a fixed time (all threads start together;
 * ops/s counts every operation finished, over the time until the last
 * thread stopped):
 *
 *   fsbench populate DIR THREADS KEYS PREFIX
 *       creates PREFIX-t-i for t < THREADS, i < KEYS (THREADS writers)
 *   fsbench create DIR THREADS SECONDS PREFIX
 *       each thread creates new keys PREFIX-t-0, PREFIX-t-1, ...:
 *       open(O_CREAT|O_WRONLY|O_TRUNC), write the value, close
 *   fsbench overwrite DIR THREADS SECONDS PREFIX KEYS
 *       the same on existing keys PREFIX-t-(i mod KEYS)
 *   fsbench readkeys DIR THREADS SECONDS PREFIX KEYS
 *       open(O_RDONLY), read, close of PREFIX-t-(i mod KEYS); a read that
 *       does not return VALUE_BYTES bytes counts as a failure
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define FILES_PER_THREAD 64
#define VALUE_BYTES_MAX 65536
static size_t value_bytes = 100;

typedef struct worker {
    const char *dir;
    int id;
    int ops;
    int mode;          /* 0 write, 1 read */
    double end_us;     /* 0: no time limit */
    double *lat_us;
    int done;
    int failures;
} worker;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    static char value[VALUE_BYTES_MAX];
    char path[4096], buf[4096];
    memset(value, 'a' + w->id % 26, value_bytes);
    for (int i = 0; i < w->ops && !(w->end_us && now_us() >= w->end_us); i++) {
        snprintf(path, sizeof path, "%s/bench-%d-%d", w->dir, w->id,
                 i % FILES_PER_THREAD);
        double t0 = now_us();
        int ok;
        if (w->mode == 0) {
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ok = fd >= 0 && write(fd, value, value_bytes) == (ssize_t)value_bytes;
            if (fd >= 0 && close(fd) != 0)
                ok = 0;
        } else {
            int fd = open(path, O_RDONLY);
            ok = fd >= 0 && read(fd, buf, sizeof buf) >= 0;
            if (fd >= 0)
                close(fd);
        }
        w->lat_us[i] = now_us() - t0;
        w->done = i + 1;
        if (!ok)
            w->failures++;
    }
    return NULL;
}

static int report(const char *what, int threads, double *lat, int n,
                  double elapsed_us, int failures)
{
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("%s threads=%d ops=%d ops_per_s=%.0f p50_us=%.1f p99_us=%.1f failures=%d\n",
           what, threads, n, n / (elapsed_us / 1e6), lat[n / 2],
           lat[(int)(n * 0.99)], failures);
    return failures ? 1 : 0;
}

static int bench_files(const char *dirs, int mode, int threads, int ops)
{
    char *list[64];
    int n_dirs = 0;
    char *copy = strdup(dirs);
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && n_dirs < 64;
         tok = strtok_r(NULL, ",", &save))
        list[n_dirs++] = tok;
    if (n_dirs == 0)
        return 2;
    worker *ws = calloc((size_t)threads, sizeof *ws);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    double *lat = calloc((size_t)threads * (size_t)ops, sizeof *lat);
    if (!ws || !tids || !lat)
        return 2;
    const char *max = getenv("FSBENCH_MAX_SECONDS");
    double t0 = now_us();
    double end = max && atof(max) > 0 ? t0 + atof(max) * 1e6 : 0;
    for (int t = 0; t < threads; t++) {
        ws[t] = (worker){ .dir = list[t % n_dirs], .id = t, .ops = ops, .mode = mode,
                          .end_us = end,
                          .lat_us = lat + (size_t)t * (size_t)ops };
        pthread_create(&tids[t], NULL, run_worker, &ws[t]);
    }
    int failures = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        failures += ws[t].failures;
    }
    double elapsed = now_us() - t0;
    /* the latencies of the operations done, packed */
    int n = 0;
    for (int t = 0; t < threads; t++) {
        memmove(lat + n, ws[t].lat_us, (size_t)ws[t].done * sizeof *lat);
        n += ws[t].done;
    }
    int rc = n ? report(mode == 0 ? "write" : "read", threads, lat, n, elapsed,
                        failures) : 1;
    free(ws);
    free(tids);
    free(lat);
    free(copy);
    return rc;
}

static int bench_zmqrtt(int ops)
{
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    if (zmq_bind(router, "tcp://127.0.0.1:*") != 0)
        return 2;
    char endpoint[256];
    size_t len = sizeof endpoint;
    zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len);
    zmq_close(router);          /* the child binds it again */
    zmq_ctx_term(ctx);
    pid_t pid = fork();
    if (pid == 0) {
        void *c = zmq_ctx_new();
        void *r = zmq_socket(c, ZMQ_ROUTER);
        if (zmq_bind(r, endpoint) != 0)
            _exit(2);
        for (int i = 0; i < ops + 1; i++) {
            zmq_msg_t id, body;
            zmq_msg_init(&id);
            zmq_msg_init(&body);
            zmq_msg_recv(&id, r, 0);
            zmq_msg_recv(&body, r, 0);
            zmq_msg_send(&id, r, ZMQ_SNDMORE);
            zmq_msg_send(&body, r, 0);
        }
        zmq_close(r);
        zmq_ctx_term(c);
        _exit(0);
    }
    void *c = zmq_ctx_new();
    void *d = zmq_socket(c, ZMQ_DEALER);
    zmq_connect(d, endpoint);
    char msg[256] = { 0 };
    zmq_send(d, msg, sizeof msg, 0);   /* connect and warm up */
    zmq_recv(d, msg, sizeof msg, 0);
    double *lat = calloc((size_t)ops, sizeof *lat);
    double t0 = now_us();
    for (int i = 0; i < ops; i++) {
        double s = now_us();
        zmq_send(d, msg, sizeof msg, 0);
        zmq_recv(d, msg, sizeof msg, 0);
        lat[i] = now_us() - s;
    }
    int rc = report("zmq_rtt", 1, lat, ops, now_us() - t0, 0);
    zmq_close(d);
    zmq_ctx_term(c);
    waitpid(pid, NULL, 0);
    free(lat);
    return rc;
}

static int bench_fsync(const char *dir, int ops)
{
    char path[4096], value[VALUE_BYTES_MAX];
    memset(value, 'f', value_bytes);
    snprintf(path, sizeof path, "%s/fsbench-fsync.tmp", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (fd < 0) {
        perror(path);
        return 2;
    }
    double *lat = calloc((size_t)ops, sizeof *lat);
    if (!lat)
        return 2;
    int failures = 0;
    double t0 = now_us();
    for (int i = 0; i < ops; i++) {
        double s = now_us();
        if (write(fd, value, value_bytes) != (ssize_t)value_bytes || fdatasync(fd) != 0)
            failures++;
        lat[i] = now_us() - s;
    }
    double elapsed = now_us() - t0;
    close(fd);
    unlink(path);
    int rc = report("fdatasync", 1, lat, ops, elapsed, failures);
    free(lat);
    return rc;
}

/* ------------------------------------------------ timed key workloads */

enum key_mode { KEY_CREATE, KEY_OVERWRITE, KEY_READ };

typedef struct key_worker {
    const char *dir;
    const char *prefix;
    int id;
    int mode;                  /* enum key_mode */
    long keys;                 /* overwrite/read: keys per thread */
    long limit;                /* populate: operations, else 0 */
    double end_us;             /* timed: stop starting operations here */
    pthread_barrier_t *start;
    double *lat_us;            /* grows */
    size_t n, cap;
    int failures;
    int first_errno;
} key_worker;

static int key_op(key_worker *w, long i, const char *value, char *buf,
                  size_t buf_len)
{
    char path[4096];
    long k = w->mode == KEY_CREATE ? i : i % w->keys;
    snprintf(path, sizeof path, "%s/%s-%d-%ld", w->dir, w->prefix, w->id, k);
    if (w->mode == KEY_READ) {
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            return errno;
        ssize_t n = read(fd, buf, buf_len);
        int err = n < 0 ? errno : (size_t)n != value_bytes ? EBADMSG : 0;
        close(fd);
        return err;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return errno;
    int err = 0;
    ssize_t n = write(fd, value, value_bytes);
    if (n != (ssize_t)value_bytes)
        err = n < 0 ? errno : EIO;
    if (close(fd) != 0 && !err)
        err = errno;
    return err;
}

static void *run_key_worker(void *arg)
{
    key_worker *w = arg;
    char value[VALUE_BYTES_MAX], buf[VALUE_BYTES_MAX + 1];
    memset(value, 'a' + w->id % 26, value_bytes);
    pthread_barrier_wait(w->start);
    for (long i = 0; w->limit ? i < w->limit : now_us() < w->end_us; i++) {
        if (w->n == w->cap) {
            size_t cap = w->cap ? 2 * w->cap : 4096;
            double *l = realloc(w->lat_us, cap * sizeof *l);
            if (!l) {
                w->failures++;
                break;
            }
            w->lat_us = l;
            w->cap = cap;
        }
        double t0 = now_us();
        int err = key_op(w, i, value, buf, sizeof buf);
        w->lat_us[w->n++] = now_us() - t0;
        if (err) {
            if (!w->failures++)
                w->first_errno = err;
        }
    }
    return NULL;
}

/* populate: limit = keys per thread; else a timed run of `seconds`. */
static int bench_keys(const char *what, const char *dir, int mode, int threads,
                      double seconds, long limit, const char *prefix, long keys)
{
    key_worker *ws = calloc((size_t)threads, sizeof *ws);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    pthread_barrier_t start;
    if (!ws || !tids || pthread_barrier_init(&start, NULL, (unsigned)threads + 1))
        return 2;
    for (int t = 0; t < threads; t++) {
        ws[t] = (key_worker){ .dir = dir, .prefix = prefix, .id = t,
                              .mode = mode, .keys = keys, .limit = limit,
                              .start = &start };
        if (pthread_create(&tids[t], NULL, run_key_worker, &ws[t]) != 0) {
            fprintf(stderr, "fsbench: cannot start thread %d\n", t);
            exit(2);
        }
    }
    double t0 = now_us();
    for (int t = 0; t < threads; t++)
        ws[t].end_us = t0 + seconds * 1e6;
    pthread_barrier_wait(&start);
    t0 = now_us();
    size_t total = 0;
    int failures = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        total += ws[t].n;
        failures += ws[t].failures;
        if (ws[t].failures && failures == ws[t].failures)
            fprintf(stderr, "fsbench: %s in %s: %d failures, the first: %s\n",
                    what, dir, ws[t].failures, strerror(ws[t].first_errno));
    }
    double elapsed = now_us() - t0;
    double *lat = malloc((total ? total : 1) * sizeof *lat);
    if (!lat)
        return 2;
    size_t at = 0;
    for (int t = 0; t < threads; t++) {
        memcpy(lat + at, ws[t].lat_us, ws[t].n * sizeof *lat);
        at += ws[t].n;
        free(ws[t].lat_us);
    }
    int rc = 1;
    if (total)
        rc = report(what, threads, lat, (int)total, elapsed, failures);
    else
        fprintf(stderr, "fsbench: %s in %s: no operation finished\n", what, dir);
    pthread_barrier_destroy(&start);
    free(lat);
    free(ws);
    free(tids);
    return rc;
}

static int key_args(int argc, char **argv)
{
    const char *cmd = argv[1];
    int threads = atoi(argv[3]);
    if (threads < 1 || threads > 4096)
        return 2;
    if (strcmp(cmd, "populate") == 0 && argc == 6) {
        long keys = atol(argv[4]);
        if (keys < 1)
            return 2;
        return bench_keys("populate", argv[2], KEY_OVERWRITE, threads, 0, keys,
                          argv[5], keys);
    }
    double seconds = atof(argv[4]);
    if (!(seconds > 0 && seconds <= 3600))
        return 2;
    if (strcmp(cmd, "create") == 0 && argc == 6)
        return bench_keys("create", argv[2], KEY_CREATE, threads, seconds, 0,
                          argv[5], 0);
    if ((strcmp(cmd, "overwrite") == 0 || strcmp(cmd, "readkeys") == 0) &&
        argc == 7) {
        long keys = atol(argv[6]);
        if (keys < 1)
            return 2;
        bool rd = strcmp(cmd, "readkeys") == 0;
        return bench_keys(rd ? "read" : "overwrite", argv[2],
                          rd ? KEY_READ : KEY_OVERWRITE, threads, seconds, 0,
                          argv[5], keys);
    }
    return 2;
}

int main(int argc, char **argv)
{
    const char *vb = getenv("FSBENCH_VALUE_BYTES");
    if (vb && atoi(vb) > 0 && atoi(vb) <= VALUE_BYTES_MAX)
        value_bytes = (size_t)atoi(vb);
    if (argc == 3 && strcmp(argv[1], "zmqrtt") == 0)
        return bench_zmqrtt(atoi(argv[2]));
    if (argc == 4 && strcmp(argv[1], "fsync") == 0)
        return bench_fsync(argv[2], atoi(argv[3]));
    if (argc == 5 && (strcmp(argv[1], "write") == 0 || strcmp(argv[1], "read") == 0)) {
        int threads = atoi(argv[3]), ops = atoi(argv[4]);
        if (threads < 1 || ops < 1)
            return 2;
        return bench_files(argv[2], strcmp(argv[1], "read") == 0, threads, ops);
    }
    if (argc >= 6) {
        int rc = key_args(argc, argv);
        if (rc != 2)
            return rc;
    }
    fprintf(stderr, "usage: fsbench write|read DIR THREADS OPS | fsbench fsync DIR OPS\n"
                    "       fsbench populate DIR THREADS KEYS PREFIX\n"
                    "       fsbench create DIR THREADS SECONDS PREFIX\n"
                    "       fsbench overwrite|readkeys DIR THREADS SECONDS PREFIX KEYS\n");
    return 2;
}
