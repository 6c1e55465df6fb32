/*
 * chain_io.h - the file system calls of chain/, behind a table of function
 * pointers.
 *
 * Every open, read, write, sync, truncate, rename and unlink made by chain/
 * (segments, acceptor store, paxosctl verify) goes through the table
 * installed here.  The default table calls libc.  Tests install their own
 * table to inject failures (EIO, ENOSPC) on the n-th call of a kind, or to
 * keep an undo log of unsynced writes and "crash" by rolling it back.
 *
 * Convention: every function returns what the libc call returns, except
 * that failures return -errno directly (never -1 with errno), so a fake
 * can fail without touching errno.  Short writes are possible; callers loop
 * (chain_io_pwrite_all).
 *
 * Invariants:
 *   1. The table is process-wide and read on every call; swap it only while
 *      no chain/acceptor object is being used (tests do it between steps).
 *   2. chain_io_set(NULL) restores the libc table.
 */
#ifndef PAXOSFS_CHAIN_IO_H
#define PAXOSFS_CHAIN_IO_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

typedef struct chain_io_ops {
    int (*open)(const char *path, int flags, mode_t mode);   /* fd or -errno */
    int (*close)(int fd);
    int64_t (*pread)(int fd, void *buf, size_t len, uint64_t offset);
    int64_t (*pwrite)(int fd, const void *buf, size_t len, uint64_t offset);
    int (*fdatasync)(int fd);
    int (*fsync)(int fd);
    int (*ftruncate)(int fd, uint64_t len);
    int (*fstat)(int fd, struct stat *st);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
    int (*mkdir)(const char *path, mode_t mode);
    /* Optional (NULL: libc): a second descriptor of the same open file,
     * and the names in a directory (each(arg, name) per entry, "." and
     * ".." left out; a non-zero return of each stops the walk and is
     * returned). */
    int (*dup)(int fd);
    int (*list)(const char *dir, int (*each)(void *arg, const char *name),
                void *arg);
} chain_io_ops;

/* The libc implementation (never NULL). */
const chain_io_ops *chain_io_libc(void);

/* Install `ops` (NULL = libc).  Returns the previous table. */
const chain_io_ops *chain_io_set(const chain_io_ops *ops);

/* The table in use. */
const chain_io_ops *chain_io(void);

/* Loop until all `len` bytes are written at `offset`; 0 or -errno
 * (a write that makes no progress gives -EIO). */
int chain_io_pwrite_all(int fd, const void *buf, size_t len, uint64_t offset);

/* Loop until `len` bytes are read; returns bytes read (less only at end of
 * file) or -errno. */
int64_t chain_io_pread_all(int fd, void *buf, size_t len, uint64_t offset);

/* fsync the directory `path` (makes created/renamed names durable). */
int chain_io_fsync_dir(const char *path);

/* The table's dup and list, or libc's when the table has none. */
int chain_io_dup(int fd);
int chain_io_list(const char *dir, int (*each)(void *arg, const char *name),
                  void *arg);

#endif /* PAXOSFS_CHAIN_IO_H */
