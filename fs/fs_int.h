/*
 * fs_int.h - private to fs/: the adapter's state, open-file handles, the
 * shared state of a file open for writing, parked requests, and what the
 * modules of fs/ offer each other:
 *
 *   session.c   mount, the request pump, unmount; handle lifetime
 *   ops.c       FUSE handlers: routing by inode; .status and .chain/<n>
 *   dir.c       the root and .chain listings; statfs
 *   notify.c    kernel cache invalidation on the notifier thread
 *   wait.c      requests parked on a backend call; errno mapping
 *   state.c     inodes kept in line with the committed state
 *   names.c     lookup, unlink, rename
 *   attr.c      attributes: getattr, setattr
 *   open.c      open, create, reads of read-only descriptors, release
 *   ofile.c     working copies of files open for writing, commits
 *   inode.c     the inode table (inode.h)
 *   xattr.c     user.paxos.* extended attributes
 *   watch.c     poll() on keys and streams
 *   stream.c    .chain/stream and .chain/since/<index>
 */
#ifndef PAXOSFS_FS_INT_H
#define PAXOSFS_FS_INT_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fs.h"
#include "inode.h"

#define FS_RESERVED_CHAIN ".chain"
#define FS_RESERVED_STATUS ".status"
#define FS_RESERVED_CLUSTER ".cluster"
#define FS_CLUSTER_MEMBERS "members"    /* .cluster/members */
#define FS_CHAIN_SNAPSHOT "snapshot"    /* .chain/snapshot */
#define FS_CHAIN_STREAM "stream"        /* .chain/stream (stream.c) */
#define FS_CHAIN_SINCE "since"          /* .chain/since/<index> */
#define FS_CHAIN_INCIDENTS "incidents"  /* .chain/incidents */
#define FS_OWNERS_MAX 8       /* file tables remembered per open file */
#define FS_COMMIT_TRIES 16    /* commits re-sent after the file moved */
#define FS_BLOCK_NAME_DIGITS 10   /* .chain/0000000001 */

enum fs_handle_kind {
    FS_H_KEY = 1,     /* a key file */
    FS_H_TEXT,        /* .status or a .chain block: rendered at open */
    FS_H_DIR_ROOT,    /* the root, or a directory key (`in` set) */
    FS_H_DIR_CHAIN,
    FS_H_DIR_CLUSTER, /* .cluster: members */
    FS_H_STREAM,      /* .chain/stream, .chain/since/<n> (stream.c) */
};

typedef struct fs_commit fs_commit;
typedef struct fs_wait fs_wait;

/* A list of names (a root listing). */
typedef struct fs_names {
    char **v;
    size_t n;
} fs_names;

/*
 * The shared state of a file open for writing on this mount (a version of
 * it): used by every writable handle that joined it, so that descriptors
 * of one file see and change one content, as on a local file (fs.h,
 * semantics 2).  The inode points at its current version; an open with
 * O_TRUNC starts a new one (the atomic-replace idiom: concurrent `> key`
 * writers each commit a whole value of their own, the last close wins),
 * and a version whose inode moved on lives while its handles do.
 *
 *   buf/len     the content as this mount's writers see it (the working
 *               copy): the committed value at the first writable open
 *               (empty with O_TRUNC or for a new file), then every write,
 *               truncation and append made here.
 *   dirty       changed since the last commit was submitted.
 *   owners      the file tables (FUSE lock owners) that wrote since then:
 *               a flush commits only for one of them (fs.h, semantics 5).
 *   append_only every change since the last commit appended through an
 *               O_APPEND handle: the commit is an APPEND of buf[base_len..]
 *               (atomic against other mounts' appends), else a PUT of buf.
 *   error       sticky EFBIG: nothing of this open file is committed.
 *
 *   open ──► clean ──write──► dirty ──flush by an owner / fsync──► commit
 *     │ O_TRUNC / new            │ truncation only: commits at fsync,    │
 *     └──────────► dirty ◄───────┘ futimens or the last release          ▼
 *                                                   applied (in flight ─► done)
 *
 * It lives while a writable handle is open or a commit is in flight.
 */
typedef struct fs_ofile {
    fs_inode *in;              /* holds an open_count on it */
    struct fs_ofile *prev, *next;   /* every live one (unmount frees them) */
    uint32_t handles;          /* writable handles using it */
    uint8_t *buf;
    uint32_t len;
    uint32_t cap;
    uint32_t base_len;         /* committed prefix, for append commits */
    bool append_only;
    bool dirty;
    bool any_owner;            /* a writer we could not name: any flush
                                  commits */
    int error;                 /* sticky positive errno (EFBIG) */
    uint64_t mtime_set;        /* an explicit mtime (futimens while open,
                                  utimensat of a file created here): set
                                  by a SETATTR right after the next commit
                                  lands, before it is answered; 0 = none */
    uint64_t expect;           /* user.paxos.expect: the next commit only
                                  if the key is at this revision (COND
                                  VERSION), else ECANCELED; 0 = none */
    uint32_t n_owners;
    uint64_t owners[FS_OWNERS_MAX];
    uint64_t changed_ms;       /* wall time of the last local change */
    uint64_t next_commit_id;
    fs_commit *inflight;       /* submitted, oldest first */
    fs_wait *waiters;          /* flushes waiting for commits in flight */
} fs_ofile;

/*
 * An open file.  Key handles:
 *
 *   writable:   `of` is the inode's shared open-file state.
 *   read-only:  `snapshot` holds the committed value at open, then the
 *               one the last read saw (a reference: a copy, not the
 *               state's); a read that continues where the previous one
 *               ended is served from it, any other read takes a new read
 *               point first (fs.h, semantics 3).
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
    fs_ofile *of;              /* writable key handles */
    uint64_t last_owner;       /* lock owner of its last write, 0 = none */
    const kv_value *snapshot;  /* read-only key handles */
    uint64_t next_off;         /* where the last read ended (UINT64_MAX:
                                  no read to continue) */
    char *text;                /* FS_H_TEXT */
    size_t text_len;
    fs_names names;            /* FS_H_DIR_ROOT listing */
    bool listed;               /* the listing was read from offset 0 */
    struct fuse_pollhandle *ph;  /* a poll() waiting for a change of its
                                    file (watch.c), or NULL */
    uint64_t seen_ident;       /* key handles: the committed value this */
    uint64_t seen_version;     /* handle last saw (open, a read point) */
    uint64_t stream_next;      /* FS_H_STREAM: the next block to load */
    size_t stream_off;         /* ... bytes of `text` delivered */
    fuse_req_t stream_req;     /* ... the read waiting for a block */
    size_t stream_size;
    struct fs_handle *stream_prev, *stream_nextp;   /* in fs.streams */
    uint64_t chain_head;       /* FS_H_DIR_CHAIN listing bound */
    uint64_t chain_base;       /* ... blocks listed from base + 1 */
    bool has_snapshot;         /* ... with a "snapshot" entry first */
    bool has_incidents;        /* ... and an "incidents" entry */
    bool since_dir;            /* .chain/since: an empty listing */
} fs_handle;

/*
 * A request parked until a backend call completes: the continuation
 * `then` runs with the call's result, answers `req` (exactly once) and
 * frees the wait.  It holds a reference on `h` and an open_count on `in`.
 * After a read, `view` is what it found, valid during `then` only.
 */
typedef void (*fs_then_fn)(fs_wait *w, int result);

struct fs_wait {
    struct fs *f;
    fuse_req_t req;            /* NULL: nobody to answer */
    fs_then_fn then;
    fs_handle *h;
    fs_inode *in;
    struct fuse_file_info fi;  /* copy: the original dies with the handler */
    char *name;
    char *newname;
    struct stat attr;          /* setattr arguments */
    int to_set;
    uint32_t flags;
    uint32_t tries;
    uint64_t upto;             /* flush: commits up to this id */
    int err;                   /* flush: first failure among them */
    off_t off;                 /* read */
    size_t size;
    const fs_entry_view *view; /* a read's result, during `then` only */
    unsigned read_flags;       /* FS_READ_* of the read in progress */
    uint32_t rereads;          /* a file read again where it moved */
    fs_names names;            /* a listing being gathered */
    fs_wait *next;             /* in the ofile's waiters */
};

/* Invalidation queue item, handled by the notifier thread. */
typedef struct fs_notice {
    uint64_t ino;              /* 0: none */
    char *name;                /* NULL: none; a name in `parent` */
    uint64_t parent;           /* the directory inode holding `name` */
    fuse_req_t open_req;       /* non-NULL: answer this open with `fi`
                                  once the notices before it are sent */
    struct fuse_file_info fi;
    uint64_t seq;              /* its place in the queue (1, 2, ...) */
    struct fs_notice *next;
} fs_notice;

typedef struct fs_reply fs_reply;

struct fs {
    struct fuse_session *se;
    fs_backend be;
    fs_options opt;
    fs_inode_table *inodes;
    struct fuse_buf buf;
    bool mounted;
    uid_t uid;
    gid_t gid;
    uint64_t mounted_ms;       /* times of the directories */
    /* notifier thread: kernel cache invalidations off the loop thread */
    pthread_t notifier;
    bool notifier_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    fs_notice *notices_head;
    fs_notice *notices_tail;
    fs_handle *handles;        /* list of live handles (loop thread) */
    fs_ofile *ofiles;          /* list of live open-file versions */
    uint32_t n_notices;
    uint64_t notices_queued;   /* sequence numbers given (under lock) */
    uint64_t notices_done;     /* ... and sent by the notifier */
    bool stopping;
    uint32_t n_polling;        /* handles holding a poll handle (watch.c) */
    fs_handle *streams;        /* stream handles with a read waiting */
    /* session.c invariant 3: the INIT exchange, seen by the session's I/O
     * (the loop thread reads requests; replies and notices are written
     * by the loop and the notifier threads) */
    _Atomic uint64_t init_unique;     /* the INIT request, until answered */
    _Atomic bool dirops_offered;      /* the kernel offers parallel dirops */
    _Atomic bool parallel_dirops;     /* ... and the INIT reply asked for it */
    /* reply.c: answers queued for the loop's next turn (loop thread) */
    fs_reply *replies_head;
    fs_reply *replies_tail;
    uint64_t dispatched;       /* requests dispatched (loop thread) */
    uint64_t answers_queued;
    uint64_t answers_failed;
};

/* session.c */
extern const struct fuse_lowlevel_ops fs_ops;   /* ops.c */
fs *fs_of(fuse_req_t req);
void fs_handle_unref(fs_handle *h);
fs_handle *fs_handle_new(fs *f, uint8_t kind);
uint64_t fs_wall_ms(void);

/* ops.c */
void fs_set_times_ms(struct stat *st, uint64_t ms);
bool fs_is_block_ino(uint64_t ino);
/* .chain or .cluster: a read-only directory the mount shows itself. */
bool fs_is_view_dir(uint64_t ino);
void fs_chain_listing(fs *f, fs_handle *h);   /* dir.c */

/* dir.c: the FUSE handlers of directories; lists of names */
int fs_names_add(fs_names *l, const char *name, size_t len);
void fs_names_free(fs_names *l);
/* Gather the root listing into w->h->names, page by page (the first page
 * at a read point, the rest from the state as applied since), with this
 * mount's pending creations, sorted; then w->then(w, result). */
void fs_dir_list(fs_wait *w);
void fs_dir_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_dir_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info *fi);
void fs_dir_release(fuse_req_t req, fuse_ino_t ino,
                    struct fuse_file_info *fi);
void fs_statfs(fuse_req_t req, fuse_ino_t ino);

/* session.c: read and dispatch one request if one is ready: 1 if it was,
 * 0 if none was, 2 once the filesystem was unmounted, or a negative
 * errno. */
int fs_process_one(fs *f);

/* reply.c: answers no directory lock waits for, queued for the loop's
 * next turn (FLUSH, FSYNC and RELEASE; WRITE) */
void fs_reply_err_later(fuse_req_t req, int err);
void fs_reply_write_later(fuse_req_t req, size_t count);
/* From the session's writev: queue the answer in iov (*n: its length)
 * when one of the above makes it; false: write it now. */
bool fs_reply_queue(fs *f, const struct iovec *iov, int count, ssize_t *n);

/* notify.c */
void *fs_notifier_main(void *arg);
/* Stop the notifier thread (if it runs) and drop queued notices. */
void fs_notifier_stop(fs *f);
/* Queue kernel cache invalidations (only when caching is on). */
void fs_notice_entry(fs *f, const char *key, size_t key_len);
void fs_notice_inode(fs *f, uint64_t ino);
/* The old name of a directory an entry moved: invalidated whether or not
 * the kernel caches (notify.c invariant 3). */
uint64_t fs_notice_dir_moved(fs *f, const char *key, size_t key_len);
/* Is notice `seq` (0: none) still to be sent? */
bool fs_notice_pending(fs *f, uint64_t seq);
/* Does the kernel cache attributes, names and pages of keys? */
bool fs_kernel_caches(const fs *f);
/* Answer a read-only open after every invalidation queued before it was
 * sent (so the kernel drops stale sizes and pages before the opener
 * reads); false if it could not be queued (then answer it directly). */
bool fs_notice_open_reply(fs *f, fuse_req_t req,
                          const struct fuse_file_info *fi);

/* wait.c */
fs_wait *fs_wait_new(fs *f, fuse_req_t req, fs_then_fn then);
void fs_wait_free(fs_wait *w);
/* Park `w` until a linearizable read point; then w->then(w, result). */
void fs_wait_read_point(fs_wait *w);
/* Park `w` until `key` (a name) is read with `flags` (FS_READ_*); then
 * w->then(w, result) with w->view what the read found. */
void fs_wait_read_key(fs_wait *w, const char *key, unsigned flags);
/* Park `w` until the file w->in stands for is read with `flags`; then
 * w->then(w, result) with w->view that file as read, or NULL when it has
 * no committed value on this mount (not committed yet, removed).  Without
 * FS_READ_APPLIED it waits for a read point in any case; with it, a file
 * without a committed value is answered at once. */
void fs_wait_read_file(fs_wait *w, unsigned flags);
/* Propose `op` (n bytes, or a negative errno from its encoder); then
 * w->then(w, the state machine's result). */
void fs_wait_submit(fs_wait *w, const uint8_t *op, int64_t n);
/* `w` holds an open_count on `in` and a reference on `h` (each may be
 * NULL) until it is freed. */
void fs_wait_hold(fs_wait *w, fs_inode *in, fs_handle *h);
/* A wait that keeps copies of the names it acts on (newname may be NULL).
 * Checks the names first; on a bad name or ENOMEM it answers the request
 * itself and returns NULL. */
fs_wait *fs_wait_named(fuse_req_t req, fs_then_fn then, const char *name,
                       const char *newname);
/* Answer w's request with `result` (0 or a backend errno) and free it. */
void fs_reply_wait_err(fs_wait *w, int result);
/* Map a backend failure to what a file operation reports. */
int fs_commit_errno(int result);

/* state.c */
/* The committed metadata of the file `in` stands for, or NULL (not
 * committed yet, or gone). */
const fs_meta *fs_committed(const fs_inode *in);
/* A file created on this mount and not committed yet. */
bool fs_is_pending(const fs_inode *in);
/* Bring the inode table in line with `key` holding `now` (ident 0:
 * absent), as told by the backend or found by a read. */
void fs_reconcile(fs *f, const char *key, size_t key_len, const fs_meta *now);
/* The inode of the file `name` names on this mount, `now` being what a
 * read found under it; created if needed; NULL with *err set (ENOENT,
 * ENOMEM). */
fs_inode *fs_resolve(fs *f, const char *name, const fs_meta *now, int *err);
/* Free `in` once nothing references it and its file is gone: a key that
 * exists keeps its inode number for the life of the mount. */
void fs_release_inode(fs *f, fs_inode *in);

/* names.c */
/* 0 if `name` is a path a request may name (chain/kv.h key rule), else
 * the positive errno to answer (EACCES for the mount's own names). */
int fs_check_name(const char *name);
/* Does `in` stand for a directory (its key ends in '/')? */
bool fs_is_dir_inode(const fs_inode *in);
/* The path of `name` in the directory `parent` (malloc'ed into *out):
 * 0, or ENOENT (no such directory), ENOTDIR, EACCES (.chain),
 * ENAMETOOLONG (a name above KV_MAX_NAME, a path above KV_MAX_PATH),
 * ENOMEM. */
int fs_child_path(fs *f, uint64_t parent, const char *name, char **out);
void fs_key_mkdir(fuse_req_t req, const char *path, mode_t mode);
void fs_key_rmdir(fuse_req_t req, const char *path);
void fs_key_lookup(fuse_req_t req, const char *name);
void fs_key_unlink(fuse_req_t req, const char *name);
void fs_key_rename(fuse_req_t req, const char *name, const char *newname,
                   unsigned int flags);

/* attr.c */
/* The owner and permission bits stat shows for `in` (through `h`, may be
 * NULL): what its file records, what its creator here gave it, else the
 * mount's defaults (its user, 0644 for a key, 0755 for a directory). */
void fs_shown_owner(const fs *f, const fs_inode *in, const fs_handle *h,
                    uint32_t *uid, uint32_t *gid, uint32_t *perm);
void fs_fill_key_attr(fs *f, const fs_inode *in, const fs_handle *h,
                      struct stat *st);
/* Does `in` exist for a getattr through `h` (NULL: by path)? */
bool fs_key_exists(const fs_inode *in, const fs_handle *h);
void fs_fill_entry(fs *f, fs_inode *in, struct fuse_entry_param *e);
void fs_key_getattr(fuse_req_t req, fs_inode *in, struct fuse_file_info *fi);
void fs_key_setattr(fuse_req_t req, fs_inode *in, struct stat *attr,
                    int to_set, struct fuse_file_info *fi);

/* open.c */
void fs_key_open(fuse_req_t req, fs_inode *in, struct fuse_file_info *fi);
void fs_key_create(fuse_req_t req, const char *name, mode_t mode,
                   struct fuse_file_info *fi);
void fs_key_read(fuse_req_t req, fs_handle *h, size_t size, off_t off);
void fs_key_release(fuse_req_t req, fs_handle *h);

/* xattr.c */
void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                 size_t size);
void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                 const char *value, size_t size, int flags);
void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* stream.c */
bool fs_stream_ino(uint64_t ino);
/* Lookups in .chain (stream, since) and .chain/since: true if answered. */
bool fs_stream_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_stream_getattr(fuse_req_t req, fuse_ino_t ino);
void fs_stream_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_stream_read(fuse_req_t req, fs_handle *h, size_t size);
/* POLLIN if a block is there to read. */
unsigned fs_stream_mask(fs *f, fs_handle *h);
/* Answer every waiting read with end of file (unmount). */
void fs_stream_end_all(fs *f);
/* user.paxos.oldest of .chain, .chain/stream, .chain/since: true if
 * answered. */
bool fs_stream_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                        size_t size);

/* watch.c */
/* Wake the poll() waits of stream handles that have a block to read. */
void fs_poll_wake_streams(fs *f);
void fs_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
             struct fuse_pollhandle *ph);
/* The committed value of the file `in` stands for changed (or the file
 * went): wake the poll() waits of its handles that now see a change. */
void fs_poll_wake(fs *f, fs_inode *in);
/* `h` saw the committed value of its file as it is now (open, a read at a
 * read point). */
void fs_poll_seen(fs_handle *h, const kv_value *v);
/* Drop a handle's poll handle (release). */
void fs_poll_drop(fs_handle *h);

/* ofile.c: writing and committing */
/* The inode's current open-file version, created from `v` (NULL: empty)
 * if it has none; NULL on ENOMEM. */
fs_ofile *fs_ofile_get(fs *f, fs_inode *in, const kv_value *v);
/* A new, empty current version of the inode (O_TRUNC); NULL on ENOMEM. */
fs_ofile *fs_ofile_new_version(fs *f, fs_inode *in);
/* Free every version at unmount (nothing is in flight then). */
void fs_ofile_free_all(fs *f);
/* Drop a handle's use of `of` and free it once unused.  When it was the
 * last: `commit` commits a change nobody committed (release), else the
 * change is dropped (an open that failed). */
void fs_ofile_put(fs *f, fs_ofile *of, bool commit);
void fs_ofile_truncate(fs_ofile *of, uint32_t len, uint64_t owner);
int fs_ofile_set_length(fs_ofile *of, uint64_t len);
void fs_key_write(fuse_req_t req, fs_handle *h, const char *data, size_t size,
                  off_t off, uint64_t lock_owner);
void fs_key_flush(fuse_req_t req, fs_handle *h, uint64_t lock_owner,
                  bool is_fsync);
/* Commit the open file now (touch) and reply its attributes. */
void fs_ofile_commit_now(fuse_req_t req, fs_inode *in, fs_handle *h);
/* fsync of the directory whose key is dir[0..len) ("" for the root):
 * every change to its entries made on this mount is committed before the
 * answer.  Namespace ops are committed before they answer; what is left
 * are files created here: a creation never committed commits now (as an
 * fsync of the file would), and commits in flight (a creation committed
 * at release, after close() returned) are waited for.  Answers req: 0 or
 * the errno of a commit that failed. */
void fs_ofile_sync_dir(fuse_req_t req, const char *dir, size_t len);
/* Park `w` until the commits of `of` now in flight are done; then
 * w->then(w, 0 or -errno of a failed one).  For a rename or unlink of a
 * file whose first commit is on its way. */
void fs_ofile_wait_idle(fs_ofile *of, fs_wait *w);

#endif
