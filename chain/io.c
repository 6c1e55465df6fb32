/*
 * io.c - owns the process-wide table of file system calls used by chain/
 * (see chain_io.h) and its libc implementation.
 *
 * Invariants:
 *   1. `current` is never NULL: it points at the libc table or at a table
 *      installed by chain_io_set.
 *   2. Every libc wrapper retries EINTR and turns -1/errno into -errno, so
 *      callers see one error convention whether the table is real or fake.
 *   3. What the libc table creates is private to the node's user whatever
 *      the caller asks and whatever the umask: files 0600 at most,
 *      directories 0700 at most (a backing directory holds every value).
 */
#include "chain_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int libc_open(const char *path, int flags, mode_t mode)
{
    for (;;) {
        int fd = open(path, flags | O_CLOEXEC, mode & 0600);
        if (fd >= 0)
            return fd;
        if (errno != EINTR)
            return -errno;
    }
}

static int libc_close(int fd)
{
    /* close() is not retried on EINTR: the descriptor is gone either way. */
    return close(fd) == 0 ? 0 : -errno;
}

static int64_t libc_pread(int fd, void *buf, size_t len, uint64_t offset)
{
    for (;;) {
        ssize_t n = pread(fd, buf, len, (off_t)offset);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

static int64_t libc_pwrite(int fd, const void *buf, size_t len,
                           uint64_t offset)
{
    for (;;) {
        ssize_t n = pwrite(fd, buf, len, (off_t)offset);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

static int libc_fdatasync(int fd)
{
    for (;;) {
        if (fdatasync(fd) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static int libc_fsync(int fd)
{
    for (;;) {
        if (fsync(fd) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static int libc_ftruncate(int fd, uint64_t len)
{
    for (;;) {
        if (ftruncate(fd, (off_t)len) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static int libc_fstat(int fd, struct stat *st)
{
    return fstat(fd, st) == 0 ? 0 : -errno;
}

static int libc_rename(const char *from, const char *to)
{
    return rename(from, to) == 0 ? 0 : -errno;
}

static int libc_unlink(const char *path)
{
    return unlink(path) == 0 ? 0 : -errno;
}

static int libc_mkdir(const char *path, mode_t mode)
{
    return mkdir(path, mode & 0700) == 0 ? 0 : -errno;
}

static int libc_dup(int fd)
{
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return nfd >= 0 ? nfd : -errno;
}

static int libc_list(const char *dir, int (*each)(void *arg, const char *name),
                     void *arg)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            rc = each(arg, de->d_name);
    closedir(d);
    return rc;
}

static const chain_io_ops libc_ops = {
    .open = libc_open,
    .close = libc_close,
    .pread = libc_pread,
    .pwrite = libc_pwrite,
    .fdatasync = libc_fdatasync,
    .fsync = libc_fsync,
    .ftruncate = libc_ftruncate,
    .fstat = libc_fstat,
    .rename = libc_rename,
    .unlink = libc_unlink,
    .mkdir = libc_mkdir,
    .dup = libc_dup,
    .list = libc_list,
};

static const chain_io_ops *current = &libc_ops;

const chain_io_ops *chain_io_libc(void)
{
    return &libc_ops;
}

const chain_io_ops *chain_io_set(const chain_io_ops *ops)
{
    const chain_io_ops *old = current;
    current = ops ? ops : &libc_ops;
    return old;
}

const chain_io_ops *chain_io(void)
{
    return current;
}

int chain_io_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset)
{
    const uint8_t *p = buf;
    /* Bounded: every round writes at least one byte or returns. */
    while (len > 0) {
        int64_t n = current->pwrite(fd, p, len, offset);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

int64_t chain_io_pread_all(int fd, void *buf, size_t len, uint64_t offset)
{
    uint8_t *p = buf;
    size_t done = 0;
    /* Bounded: every round reads at least one byte or stops. */
    while (done < len) {
        int64_t n = current->pread(fd, p + done, len - done, offset + done);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (int64_t)done;
}

int chain_io_fsync_dir(const char *path)
{
    int fd = current->open(path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int rc = current->fsync(fd);
    int rc_close = current->close(fd);
    return rc ? rc : rc_close;
}

int chain_io_dup(int fd)
{
    return current->dup ? current->dup(fd) : libc_dup(fd);
}

int chain_io_list(const char *dir, int (*each)(void *arg, const char *name),
                  void *arg)
{
    return current->list ? current->list(dir, each, arg)
                         : libc_list(dir, each, arg);
}
