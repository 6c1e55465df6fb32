/*
 * fs_int.h - private to fs/: the adapter's state, open-file handles and the
 * handlers shared between fs.c (session, directories, read-only views) and
 * keyfile.c (key files).
 */
#ifndef PAXOSFS_FS_INT_H
#define PAXOSFS_FS_INT_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <stdbool.h>

#include "fs.h"
#include "inode.h"

#define FS_RESERVED_CHAIN ".chain"
#define FS_RESERVED_STATUS ".status"

enum fs_handle_kind {
    FS_H_KEY = 1,     /* a key file */
    FS_H_TEXT,        /* .status or a .chain block: rendered at open */
    FS_H_DIR_ROOT,
    FS_H_DIR_CHAIN,
};

/*
 * An open file.  Key handles:
 *
 *   read-only:  `snapshot` holds the committed value as of open().
 *   writable:   `buf` holds the whole new value (or, with O_APPEND, only
 *               the bytes appended since the last commit).
 *
 *        open/create ──► clean ──write──► dirty_data ──flush──► commit
 *              │ O_TRUNC/new                                     │
 *              ▼                                                 ▼
 *          dirty_trunc ──write──► dirty_data            applied: clean
 *              │ fsync/futimens: commit now; release: commit, nobody waits
 *
 * A flush with only dirty_trunc commits nothing: shells open, dup2 and
 * close the first descriptor before they write, and committing there
 * would show an empty file to every reader (fs.h, semantics 2).
 */
typedef struct fs_handle {
    uint8_t kind;              /* enum fs_handle_kind */
    uint32_t refs;             /* open + parked requests using it */
    struct fs *owner;
    struct fs_handle *prev, *next;  /* every live handle, so an unmount
                                       with files still open frees them */
    fs_inode *in;              /* key handles */
    bool writable;
    bool append;
    bool dirty_data;
    bool dirty_trunc;
    int error;                 /* sticky positive errno (EFBIG) */
    uint8_t *buf;
    uint32_t len;
    uint32_t cap;
    const kv_value *snapshot;  /* read-only key handles */
    char *text;                /* FS_H_TEXT */
    size_t text_len;
    char **names;              /* FS_H_DIR_ROOT listing taken at opendir */
    size_t n_names;
    uint64_t chain_head;       /* FS_H_DIR_CHAIN listing bound */
} fs_handle;

/* Invalidation queue item, handled by the notifier thread. */
typedef struct fs_notice {
    uint64_t ino;              /* 0: none */
    char *name;                /* NULL: none; entry name under the root */
    struct fs_notice *next;
} fs_notice;

struct fs {
    struct fuse_session *se;
    fs_backend be;
    fs_options opt;
    fs_inode_table *inodes;
    struct fuse_buf buf;
    bool mounted;
    uid_t uid;
    gid_t gid;
    /* notifier thread: kernel cache invalidations off the loop thread */
    pthread_t notifier;
    bool notifier_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    fs_notice *notices_head;
    fs_notice *notices_tail;
    fs_handle *handles;        /* list of live handles (loop thread) */
    uint32_t n_notices;
    bool stopping;
};

fs *fs_of(fuse_req_t req);
void fs_handle_unref(fs_handle *h);
fs_handle *fs_handle_new(fs *f, uint8_t kind);
void fs_fill_key_attr(const fs *f, const fs_inode *in, const kv_value *v,
                      uint32_t len_override, bool use_override,
                      struct stat *st);
int fs_check_name(const char *name);
/* Free `in` once nothing references it and its key is gone: a key that
 * exists keeps its inode number for the life of the mount. */
void fs_release_inode(fs *f, fs_inode *in);

/* keyfile.c */
void fs_key_lookup(fuse_req_t req, const char *name);
void fs_key_getattr(fuse_req_t req, fs_inode *in, struct fuse_file_info *fi);
void fs_key_setattr(fuse_req_t req, fs_inode *in, struct stat *attr,
                    int to_set, struct fuse_file_info *fi);
void fs_key_open(fuse_req_t req, fs_inode *in, struct fuse_file_info *fi);
void fs_key_create(fuse_req_t req, const char *name, struct fuse_file_info *fi);
void fs_key_write(fuse_req_t req, fs_handle *h, const char *data, size_t size,
                  off_t off);
void fs_key_flush(fuse_req_t req, fs_handle *h, bool is_fsync);
void fs_key_release(fuse_req_t req, fs_handle *h);
void fs_key_unlink(fuse_req_t req, const char *name);
void fs_key_rename(fuse_req_t req, const char *name, const char *newname);

#endif
