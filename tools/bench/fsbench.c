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
 * Each thread works on its own 64 files.  Prints one line:
 *   <what> threads=T ops=N ops_per_s=X p50_us=Y p99_us=Z
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
    double *lat_us;
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
    for (int i = 0; i < w->ops; i++) {
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
    double t0 = now_us();
    for (int t = 0; t < threads; t++) {
        ws[t] = (worker){ .dir = list[t % n_dirs], .id = t, .ops = ops, .mode = mode,
                          .lat_us = lat + (size_t)t * (size_t)ops };
        pthread_create(&tids[t], NULL, run_worker, &ws[t]);
    }
    int failures = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        failures += ws[t].failures;
    }
    double elapsed = now_us() - t0;
    int rc = report(mode == 0 ? "write" : "read", threads, lat, threads * ops,
                    elapsed, failures);
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
    fprintf(stderr, "usage: fsbench write|read DIR THREADS OPS | fsbench fsync DIR OPS\n");
    return 2;
}
