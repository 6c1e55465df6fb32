/*
 * fuzz_util.h - helpers shared by the libFuzzer targets in tests/fuzz:
 * the CHECK macro (a violated property traps, which libFuzzer reports),
 * an exact-size heap copy of the input (so ASan sees any over-read), a
 * little-endian input cursor, and a scratch directory for the targets
 * that fuzz a decoder through the files it really reads.
 *
 * The scratch directory lives on tmpfs (/dev/shm) when there is one, else
 * under $TMPDIR or /tmp; it is named after the process id and removed at
 * exit.  Each input gets a fresh, empty sub-directory (fuzz_fresh_dir).
 */
#ifndef PAXOSFS_FUZZ_UTIL_H
#define PAXOSFS_FUZZ_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond))                                                          \
            __builtin_trap();                                                 \
    } while (0)

/* An exact-size heap copy of data (never NULL unless out of memory). */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (p && size)
        memcpy(p, data, size);
    return p;
}

/* Reads little-endian fields off the input; past the end it yields 0. */
typedef struct fuzz_cursor {
    const uint8_t *p;
    size_t left;
} fuzz_cursor;

static inline uint64_t fuzz_take(fuzz_cursor *c, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes && c->left; i++, c->left--, c->p++)
        v |= (uint64_t)*c->p << (8 * i);
    return v;
}

/* Up to n bytes of the input (fewer at its end); *got says how many. */
static inline const uint8_t *fuzz_take_bytes(fuzz_cursor *c, size_t n,
                                             size_t *got)
{
    const uint8_t *p = c->p;
    if (n > c->left)
        n = c->left;
    c->p += n;
    c->left -= n;
    *got = n;
    return p;
}

/* ------------------------------------------------------ scratch files */

static char fuzz_root[256];
static char fuzz_dir_path[300];
static unsigned long fuzz_dir_seq;

static int fuzz_rm_entry(const char *path, const struct stat *st, int flag,
                         struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void fuzz_rm_tree(const char *path)
{
    nftw(path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void fuzz_cleanup(void)
{
    if (fuzz_root[0])
        fuzz_rm_tree(fuzz_root);
}

/* A fresh empty directory for one input; the previous one is removed.
 * Aborts when no scratch space can be made (the run is meaningless). */
static inline const char *fuzz_fresh_dir(void)
{
    if (!fuzz_root[0]) {
        const char *base = "/dev/shm";
        struct stat st;
        if (stat(base, &st) != 0 || !S_ISDIR(st.st_mode) ||
            access(base, W_OK) != 0)
            base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(fuzz_root, sizeof fuzz_root, "%s/paxosfs-fuzz-%ld", base,
                 (long)getpid());
        fuzz_rm_tree(fuzz_root);
        if (mkdir(fuzz_root, 0700) != 0)
            abort();
        atexit(fuzz_cleanup);
    }
    if (fuzz_dir_path[0])
        fuzz_rm_tree(fuzz_dir_path);
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/%lu", fuzz_root,
             fuzz_dir_seq++);
    if (mkdir(fuzz_dir_path, 0700) != 0)
        abort();
    return fuzz_dir_path;
}

/* Write len bytes to path (created with `mode`); aborts on failure. */
static inline void fuzz_write_file(const char *path, const uint8_t *p,
                                   size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        abort();
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            abort();
        p += n;
        len -= (size_t)n;
    }
    if (fchmod(fd, mode) != 0)
        abort();
    close(fd);
}

/* Size of path, or -1. */
static inline long long fuzz_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

#endif /* PAXOSFS_FUZZ_UTIL_H */
