/*
 * snapbench.c - snapshot figures for the storage layer (chain/snap.h), one
 * process, no cluster:
 *
 *   snapbench [KEYS...]          (default: 100000 1000000)
 *   snapbench --load FILE [rewrite] | --check FILE | --restore DIR
 *             | --verify DIR [light]
 *                                (one phase alone, below)
 *
 * The snapshot files go to a scratch directory under $BENCH_DIR (default
 * /var/tmp: the disk, not tmpfs, so fdatasync costs what it costs).
 *
 * For each key count (keys of ~12 bytes, values of 100 random-ish bytes):
 *   build      time to apply the keys (batches of 100 puts), RSS after;
 *   freeze     what the loop thread pays to start a snapshot
 *              (snapstore_take_start: kv_freeze + the temporary file);
 *   apply      per-entry apply time on the loop thread (batches of 32
 *              overwrites of existing keys: the first change of a key
 *              during a snapshot costs a new node) while a helper thread
 *              writes the snapshot, against the same without a snapshot:
 *              median, p99 and max in microseconds;
 *   snapshot   wall time of the helper's write + fsync + rename (CPU: the
 *              helper's own; the compression threads count in the loop-idle
 *              write, which is timed with the process's CPU), file size
 *              and raw payload size;
 *   thaw       snapstore_take_finish on the loop (thaw, record, prune) and
 *              the reclaim of the nodes kept for the view;
 *   load       snapfile_load of the file: restart time from a snapshot
 *              (read, check, decompress, rebuild the state, digest).
 * Figures are printed, never asserted (the machine is shared and noisy).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../chain/chain.h"
#include "../../chain/kv.h"
#include "../../chain/snap.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void)      /* this thread's CPU time */
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double proc_cpu_us(void)  /* every thread's: compression threads */
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* A figure of /proc/self/status in KiB ("VmRSS:", "VmHWM:"), or -1. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            v = strtol(line + n, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static long rss_kib(void)
{
    return status_kib("VmRSS:");
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t seq = 1;
static uint8_t batch[1 << 20];

/* One BATCH entry of `n` puts of keys key(first..first+n-1) % nkeys. */
static int apply_puts(kv *s, uint64_t first, uint32_t n, uint64_t nkeys,
                      uint64_t salt)
{
    uint32_t off = 4;
    for (uint32_t i = 0; i < n; i++) {
        char key[32];
        uint8_t val[100];
        uint64_t k = (first + i) % nkeys;
        int klen = snprintf(key, sizeof key, "key%09llu",
                            (unsigned long long)k);
        uint64_t x = (k + 1) * 0x9e3779b97f4a7c15ull ^ salt;
        for (int j = 0; j < 100; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            val[j] = (uint8_t)('a' + x % 26);
        }
        uint8_t *p = batch + off;
        int64_t len = kv_op_encode_put(p + 28, sizeof batch - off - 28, key,
                                       (size_t)klen, val, sizeof val);
        if (len < 0)
            return (int)len;
        put_le(p, 42, 8);
        put_le(p + 8, seq, 8);
        put_le(p + 16, seq, 8);
        put_le(p + 24, (uint64_t)len, 4);
        seq++;
        off += 28 + (uint32_t)len;
    }
    put_le(batch, n, 4);
    px_entry e = { .slot = kv_applied_index(s) + 1, .time_ms = 1000,
                   .kind = PX_ENTRY_BATCH, .len = off, .data = batch };
    return kv_apply_entry(s, &e, NULL, NULL);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct lat {
    double *v;
    size_t n, cap;
} lat;

static void lat_add(lat *l, double x)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = x;
}

static void lat_print(const char *what, lat *l)
{
    if (!l->n)
        return;
    qsort(l->v, l->n, sizeof *l->v, cmp_d);
    printf("  %-28s entries %6zu  p50 %7.1f us  p99 %7.1f us  max %8.1f us\n",
           what, l->n, l->v[l->n / 2], l->v[(l->n * 99) / 100],
           l->v[l->n - 1]);
}

typedef struct helper {
    snap_take *t;
    int rc;
    double us, cpu;
    volatile int done;
} helper;

static void *helper_main(void *p)
{
    helper *h = p;
    double t0 = now_us(), c0 = cpu_us();
    h->rc = snapstore_take_run(h->t);
    h->us = now_us() - t0;
    h->cpu = cpu_us() - c0;
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static int run(uint64_t nkeys)
{
    char dir[512];
    const char *root = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/var/tmp";
    snprintf(dir, sizeof dir, "%s/paxosfs-snapbench-XXXXXX", root);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    printf("== %llu keys, 100-byte values\n", (unsigned long long)nkeys);
    long rss0 = rss_kib();
    kv *s = kv_create();
    double t0 = now_us(), c0 = cpu_us();
    for (uint64_t k = 0; k < nkeys; k += 100)
        if (apply_puts(s, k, (uint32_t)(nkeys - k < 100 ? nkeys - k : 100),
                       nkeys, 0) != 0)
            return 1;
    double t1 = now_us(), c1 = cpu_us();
    long rss1 = rss_kib();
    uint64_t raw = kv_bytes(s) + nkeys * 12;
    printf("  build %.0f ms (%.0f ms CPU); RSS %.1f MiB for %.1f MiB of keys "
           "and values (%.2fx)\n", (t1 - t0) / 1e3, (c1 - c0) / 1e3,
           (rss1 - rss0) / 1024.0,
           raw / 1048576.0, (rss1 - rss0) * 1024.0 / (double)raw);

    /* baseline: overwrites without a snapshot */
    lat base = { 0 }, during = { 0 };
    uint64_t cursor = 12345;
    for (int i = 0; i < 3000; i++) {
        double a = now_us();
        apply_puts(s, cursor, 32, nkeys, 1);
        lat_add(&base, now_us() - a);
        cursor += 7919 * 32;
    }

    snapstore *st;
    int rc = snapstore_open(dir, true, &st);
    if (rc) {
        fprintf(stderr, "snapstore_open: %s\n", strerror(-rc));
        return 1;
    }
    uint8_t head[CHAIN_HASH_BYTES] = { 1 };
    helper h = { 0 };
    double f0 = now_us();
    rc = snapstore_take_start(st, s, head, NULL, 0, &h.t);
    double f1 = now_us();
    if (rc) {
        fprintf(stderr, "take_start: %s\n", strerror(-rc));
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, helper_main, &h);
    while (!__atomic_load_n(&h.done, __ATOMIC_ACQUIRE)) {
        double a = now_us();
        apply_puts(s, cursor, 32, nkeys, 2);
        lat_add(&during, now_us() - a);
        cursor += 7919 * 32;
    }
    pthread_join(th, NULL);
    size_t kept = kv_dead_nodes(s);
    snap_info info;
    double g0 = now_us();
    rc = snapstore_take_finish(st, s, h.t, h.rc, &info);
    double g1 = now_us();
    kv_reclaim(s, SIZE_MAX);
    double g2 = now_us();
    if (rc) {
        fprintf(stderr, "take: %s\n", strerror(-rc));
        return 1;
    }
    printf("  freeze (loop thread): %.1f us\n", f1 - f0);
    lat_print("apply, no snapshot:", &base);
    lat_print("apply, snapshot writing:", &during);
    printf("  snapshot (helper thread): %.0f ms (%.0f ms CPU of its own); file %.1f MiB, "
           "raw %.1f MiB (%.2fx); %zu nodes kept for the view\n", h.us / 1e3,
           h.cpu / 1e3,
           info.file_bytes / 1048576.0, info.raw_bytes / 1048576.0,
           (double)info.raw_bytes / (double)info.file_bytes, kept);
    printf("  thaw + record (loop): %.1f us; reclaim of kept nodes: %.1f ms\n",
           g1 - g0, (g2 - g1) / 1e3);

    /* where the helper's time goes, with the loop idle: the file's
     * bytes (zlib, SHA-256, writes to the page cache), then fdatasync */
    {
        kv_reclaim(s, SIZE_MAX);
        kv_view *v;
        char tmp[700];
        snprintf(tmp, sizeof tmp, "%s/quiet.pxs", dir);
        int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0 || kv_freeze(s, &v) != 0) {
            fprintf(stderr, "quiet write: cannot start\n");
            return 1;
        }
        double w0 = now_us(), wc0 = proc_cpu_us();
        rc = snapfile_write(fd, v, head, NULL, 0, NULL);
        double w1 = now_us(), wc1 = proc_cpu_us();
        int src = fdatasync(fd);
        double w2 = now_us();
        kv_thaw(s, v);
        close(fd);
        unlink(tmp);
        if (rc || src) {
            fprintf(stderr, "quiet write failed\n");
            return 1;
        }
        printf("  snapshot, loop idle: write %.0f ms (%.0f ms CPU, all threads), "
               "fdatasync %.0f ms\n", (w1 - w0) / 1e3, (wc1 - wc0) / 1e3,
               (w2 - w1) / 1e3);
    }

    char path[700];
    snapstore_path(st, info.index, path, sizeof path);
    kv *t = NULL;
    chain_damage dmg;
    double l0 = now_us(), lc0 = cpu_us();
    rc = snapfile_load(path, NULL, &t, NULL, &dmg);
    double l1 = now_us(), lc1 = cpu_us();
    if (rc) {
        fprintf(stderr, "load: %s\n", strerror(-rc));
        return 1;
    }
    printf("  load from snapshot (restart): %.0f ms (%.0f ms CPU), %llu "
           "keys\n", (l1 - l0) / 1e3, (lc1 - lc0) / 1e3,
           (unsigned long long)kv_count(t));
    long rss_loaded = rss_kib();
    printf("  RSS with both states: %.1f MiB\n", rss_loaded / 1024.0);
    kv_destroy(t);
    if (getenv("SNAPBENCH_KEEP")) {
        char keep[700];
        snprintf(keep, sizeof keep, "%s", getenv("SNAPBENCH_KEEP"));
        if (rename(path, keep) != 0)
            perror("rename");
    }
    unlink(path);
    snapstore_close(st);
    char sd[700];
    snprintf(sd, sizeof sd, "%s/snap", dir);
    rmdir(sd);
    rmdir(dir);
    kv_destroy(s);
    free(base.v);
    free(during.v);
    return 0;
}

/* snapbench --load FILE [rewrite]: load a snapshot file (and write it
 * again, loop idle), for profiling one phase alone; --check FILE: check
 * it without a state (snapfile_load(..., NULL, ...), as verification of
 * the other snapshots does). */
static int check_only(const char *path)
{
    snap_info info;
    chain_damage dmg;
    double l0 = now_us(), lc0 = cpu_us();
    int rc = snapfile_load(path, NULL, NULL, &info, &dmg);
    double l1 = now_us(), lc1 = cpu_us();
    printf("check %.0f ms (%.0f ms CPU): %s, %llu keys, RSS %.1f MiB\n",
           (l1 - l0) / 1e3, (lc1 - lc0) / 1e3, rc ? strerror(-rc) : "ok",
           (unsigned long long)info.keys, rss_kib() / 1024.0);
    return rc != 0;
}

static int load_only(const char *path, bool rewrite)
{
    kv *t = NULL;
    chain_damage dmg;
    double l0 = now_us(), lc0 = cpu_us();
    int rc = snapfile_load(path, NULL, &t, NULL, &dmg);
    double l1 = now_us(), lc1 = cpu_us();
    if (rc) {
        fprintf(stderr, "load: %s (%s)\n", strerror(-rc), dmg.reason);
        return 1;
    }
    printf("load %.0f ms (%.0f ms CPU), %llu keys, RSS %.1f MiB\n",
           (l1 - l0) / 1e3, (lc1 - lc0) / 1e3,
           (unsigned long long)kv_count(t), rss_kib() / 1024.0);
    if (rewrite) {
        char tmp[700];
        snprintf(tmp, sizeof tmp, "%s.again", path);
        int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
        kv_view *v;
        uint8_t head[CHAIN_HASH_BYTES] = { 1 };
        if (fd < 0 || kv_freeze(t, &v) != 0)
            return 1;
        double w0 = now_us(), wc0 = proc_cpu_us();
        rc = snapfile_write(fd, v, head, NULL, 0, NULL);
        double w1 = now_us(), wc1 = proc_cpu_us();
        kv_thaw(t, v);
        close(fd);
        unlink(tmp);
        printf("write %.0f ms (%.0f ms CPU): %d\n", (w1 - w0) / 1e3,
               (wc1 - wc0) / 1e3, rc);
    }
    kv_destroy(t);
    printf("RSS after the state is destroyed: %.1f MiB\n", rss_kib() / 1024.0);
    return rc != 0;
}

/* snapbench --restore DIR: the storage side of a node's restart
 * (chain_restore: newest snapshot, chain opened and checked, the blocks
 * after the snapshot replayed) on a stopped node's backing directory (use
 * a copy: a restart may prune or reset). */
static int restore_only(const char *dir)
{
    chain_restored r;
    chain_restore_report rep;
    chain_damage dmg;
    double t0 = now_us(), c0 = proc_cpu_us();
    int rc = chain_restore(dir, NULL, &r, &rep, &dmg);
    double t1 = now_us(), c1 = proc_cpu_us();
    if (rc) {
        fprintf(stderr, "restore: %s (%s)\n", strerror(-rc), dmg.reason);
        return 1;
    }
    printf("restore %.0f ms (%.0f ms CPU): %llu keys, head %llu, %llu blocks "
           "replayed, RSS %.1f MiB\n", (t1 - t0) / 1e3, (c1 - c0) / 1e3,
           (unsigned long long)kv_count(r.state),
           (unsigned long long)r.index, (unsigned long long)rep.replayed,
           rss_kib() / 1024.0);
    chain_restored_close(&r);
    return 0;
}

/* snapbench --verify DIR [light]: the running node's periodic check of
 * its backing directory (chain_verify_light, `light`) or paxosctl
 * verify's (chain_verify_all): time and peak memory. */
static int verify_only(const char *dir, bool light)
{
    chain_restored r;
    chain_restore_report rep;
    chain_damage dmg;
    long hwm0 = status_kib("VmHWM:");
    double t0 = now_us(), c0 = proc_cpu_us();
    int rc = light ? chain_verify_light(dir, NULL, &r, &rep, &dmg)
                   : chain_verify_all(dir, NULL, &r, &rep, &dmg);
    double t1 = now_us(), c1 = proc_cpu_us();
    if (rc) {
        fprintf(stderr, "verify: %s (%s)\n", strerror(-rc), dmg.reason);
        return 1;
    }
    printf("verify (%s) %.0f ms (%.0f ms CPU): head %llu, peak RSS %.1f "
           "MiB (%.1f MiB before)\n", light ? "light" : "full",
           (t1 - t0) / 1e3, (c1 - c0) / 1e3, (unsigned long long)r.index,
           status_kib("VmHWM:") / 1024.0, hwm0 / 1024.0);
    chain_restored_close(&r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--verify") == 0)
        return verify_only(argv[2], argc > 3 && strcmp(argv[3], "light") == 0);
    if (argc > 2 && strcmp(argv[1], "--restore") == 0)
        return restore_only(argv[2]);
    if (argc > 2 && strcmp(argv[1], "--check") == 0)
        return check_only(argv[2]);
    if (argc > 2 && strcmp(argv[1], "--load") == 0)
        return load_only(argv[2], argc > 3);
    uint64_t def[] = { 100000, 1000000 };
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (run(strtoull(argv[i], NULL, 10)))
                return 1;
        return 0;
    }
    for (size_t i = 0; i < 2; i++)
        if (run(def[i]))
            return 1;
    return 0;
}
