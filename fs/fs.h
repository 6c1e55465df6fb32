/*
 * fs.h - the FUSE adapter of paxosfs: paths to keys, open-file buffers,
 * the read-only .chain/ and .status views, errno mapping.
 *
 * The adapter runs on the node's event-loop thread: the loop reads FUSE
 * requests from the session fd and dispatches them here; a handler that
 * needs a commit (flush of a written file, unlink, rename, truncate) parks
 * its fuse_req_t and replies when the backend reports the entry applied.
 * Every request is answered exactly once.
 *
 * The adapter knows nothing of consensus or disks: it talks to an
 * fs_backend (submit an op and be told when it is applied; wait for a
 * linearizable read point; read the applied key-value state; render
 * status and chain blocks).
 *
 * Semantics (docs/filesystem.md has the user-facing version):
 *  1. A written file is one atomic replace: the bytes of an open file live
 *     in a private buffer; flush/fsync/close proposes one PUT (or one
 *     APPEND for O_APPEND handles) and replies after it is applied.
 *  2. A flush with nothing written since the last commit proposes nothing;
 *     a truncation or creation that is never followed by a write is
 *     committed at fsync, at futimens (touch) or at release.
 *  3. Reads see the value as of open(): open waits for a linearizable read
 *     point, then takes a reference to the committed value.
 */
#ifndef PAXOSFS_FS_H
#define PAXOSFS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../chain/kv.h"

struct fuse_session;

/* Completion of a backend call: result is 0 or a negative errno. */
typedef void (*fs_done_fn)(void *arg, int result);

typedef struct fs_backend {
    void *ctx;
    /* Propose `op` (kv op encoding); `done` runs once it is applied (with
     * the state machine's result) or has failed.  `answered`: the caller
     * already returned (a commit at release, after close() returned), so
     * later read points on this node must wait for it (read-your-writes).
     * Returns 0 or a negative errno (then `done` is never called). */
    int (*submit)(void *ctx, const uint8_t *op, uint32_t len, bool answered,
                  fs_done_fn done, void *arg);
    /* `done` runs once the applied state reflects every write committed
     * before this call (linearizable read point) and every answered write
     * submitted before it. */
    int (*read_barrier)(void *ctx, fs_done_fn done, void *arg);
    /* 0 if a write may be accepted now, else the negative errno a write
     * would fail with (-EHOSTUNREACH: no leader reachable, -EIO: storage
     * failed): checked at open() for writing, where a shell sees it. */
    int (*can_write)(void *ctx);
    /* The applied key-value state (loop thread only). */
    const kv *(*state)(void *ctx);
    /* Render .status (malloc'ed JSON text + newline). */
    int (*status_text)(void *ctx, char **text, size_t *len);
    /* Render block `index` of the chain (malloc'ed); -ENOENT if absent. */
    int (*block_text)(void *ctx, uint64_t index, char **text, uint32_t *len);
    /* Highest block index in the chain. */
    uint64_t (*chain_head)(void *ctx);
} fs_backend;

typedef struct fs fs;

typedef struct fs_options {
    double attr_timeout_s;    /* kernel attribute cache timeout */
    double entry_timeout_s;   /* kernel name -> inode cache timeout: a name
                                 changes its inode only when removed, and a
                                 removal invalidates it at once */
    int debug;                /* pass -d to libfuse */
    int allow_other;
} fs_options;

/* Create the adapter and a FUSE session mounted at `mountpoint`.
 * Returns 0 or a negative errno (with a message in err). */
int fs_mount(const fs_options *opt, const fs_backend *backend,
             const char *mountpoint, fs **out, char *err, size_t err_len);

/* The session fd to poll for readability. */
int fs_fd(const fs *f);

/* Read and dispatch every request that is ready (non-blocking).  Returns
 * 0, or 1 once the filesystem was unmounted, or a negative errno. */
int fs_process(fs *f);

/* The backend applied an entry that changed `key` (`removed`: deleted, or
 * renamed away): drop kernel caches for it, asynchronously, off the loop
 * thread. */
void fs_key_changed(fs *f, const char *key, size_t key_len, bool removed);

/* Unmount (if still mounted) and free. */
void fs_unmount(fs *f);

#endif /* PAXOSFS_FS_H */
