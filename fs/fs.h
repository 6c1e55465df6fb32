/*
 * fs.h - the FUSE adapter of paxosfs: paths to keys, open files,
 * the read-only .chain/ and .status views, errno mapping.
 *
 * The adapter runs on the node's event-loop thread: the loop reads FUSE
 * requests from the session fd and dispatches them here; a handler that
 * needs a commit (flush of a written file, unlink, rename, truncate) parks
 * its fuse_req_t and replies when the backend reports the entry applied.
 * Every request is answered exactly once.
 *
 * The adapter knows nothing of consensus, disks or where the state is: it
 * talks to an fs_backend (submit an op and be told when it is applied;
 * read a key, a page of keys or the counts and be told what the read
 * found; render status and chain blocks) and learns of every key an
 * applied entry changed through fs_key_changed.  It never holds the
 * key-value map: the in-process backend (node/reads.c) serves reads from
 * the node's state, and a client-only mount can be served the same
 * answers over the network.
 *
 * Semantics (README.md "The filesystem" has the user-facing version):
 *  1. A written file is one atomic replace: the bytes of a file open for
 *     writing live in this mount's working copy; a commit proposes one PUT
 *     of it (one APPEND of the appended bytes when every change since the
 *     last commit was an O_APPEND write) and answers once it is applied.
 *  2. One file, one content on a mount: writable descriptors of a file on
 *     one mount share its working copy (reads, sizes, seeks, truncations),
 *     as on a local file; stat on that mount shows it too.  An open with
 *     O_TRUNC starts a new version (a new working copy the inode shows
 *     from then on): descriptors opened before keep the old one, each
 *     commit is a whole value and the last wins, so concurrent `> key`
 *     writers never mix bytes.  Read-only descriptors read committed
 *     values (semantics 3), so a reader never sees a half-written file; a
 *     file created here and never committed does not exist for them.
 *  3. Reads are linearizable: lookup, getattr, opendir/readdir, setattr of
 *     a file not open for writing here, an open that reads the old value
 *     (O_RDWR or O_APPEND without O_TRUNC), and every read of a read-only
 *     descriptor that does not continue the previous one first wait for a
 *     read point, so they reflect every write whose call returned before
 *     they began, on any mount (the backend's read point, rule B3).  A
 *     read that continues where the previous read of the descriptor
 *     ended, inside the value that one read, is served from that value (a
 *     file read front to back is one value); at its end a pass continues
 *     only into a value that extends it (an append), and ends if the file
 *     was replaced.  A read-only descriptor holds the value it opened
 *     until its first read, so a file removed before it reads as opened.  The kernel must not
 *     answer from its caches: attr/entry timeouts are 0 by default.
 *  4. A descriptor writes to the file it opened, not to a name: commits
 *     are conditional on the file's identity (chain/kv.h COND IDENT) and
 *     follow it through renames; a file removed or renamed over while
 *     open stays removed, its later writes vanish.
 *  5. Commit points: a flush (close) commits only when it comes from a
 *     file table (FUSE lock owner) that wrote since the last commit, so a
 *     child that inherited the descriptor and exits commits nothing of
 *     its parent's half-written file; fsync and touch (futimens) commit at
 *     once; what nobody committed (a truncation or creation never written,
 *     a writer whose table never flushed) commits when the last writable
 *     descriptor of the file on this mount is released.  A flush waits for
 *     every commit of the file already in flight.
 *  6. A file created here exists on this mount (lookup, readdir, unlink,
 *     truncate, rename) from creat() on; elsewhere once it is committed.
 *     O_EXCL creates commit the empty file at open, conditional on the
 *     name being free (COND ABSENT), so exactly one creator wins across
 *     mounts; RENAME_NOREPLACE likewise.
 *  7. A key or directory records its creator's uid, gid and mode (OWNER,
 *     chain/kv.h); one without shows the mounting user, 0644 (0755).
 *     chmod, chown and explicit times are one SETATTR entry each; "now"
 *     re-commits a file (touch).  With allow_other the kernel checks them
 *     (default_permissions).
 *  8. Directories (docs/design.md "Namespace"): a directory is the key of
 *     its path and a '/'; mkdir, rmdir, unlink, rename (with
 *     RENAME_NOREPLACE and RENAME_EXCHANGE, a whole tree at once) are one
 *     op each, whose errno the state machine decides as it applies it.
 *  9. Watching (docs/design.md "Watching"): poll() on an open key is
 *     readable once a new committed value of its file was applied here
 *     (fs/watch.c); .chain/stream and .chain/since/<n> deliver committed
 *     blocks in order as they commit (fs/stream.c, fed by fs_chain_grew);
 *     fsync of a directory commits and waits for this mount's creations
 *     in it.
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

/* The metadata of a key's committed value.  ident 0: the key is absent
 * (a present key's identity is never 0, chain/kv.h). */
typedef struct fs_meta {
    uint64_t ident;            /* the file it belongs to (chain/kv.h) */
    uint64_t version;          /* slot of its last change */
    uint64_t changes;          /* committed changes of the key since its
                                  creation (kv_value.changes); 0: the
                                  backend does not know them */
    uint64_t mtime_ms;         /* commit time, or a time set explicitly */
    uint32_t len;              /* bytes */
    uint32_t uid, gid;         /* owner, when mode != 0 */
    uint32_t mode;             /* 0: none recorded (the mount shows its
                                  defaults), else type and permissions */
} fs_meta;

/* One key as a read found it. */
typedef struct fs_entry_view {
    const char *key;           /* in a listing: the key (key_len bytes) */
    size_t key_len;
    fs_meta meta;              /* ident 0: absent */
    const kv_value *value;     /* with FS_READ_VALUE, of a present key: its
                                  value, immutable; the reference is lent
                                  for the callback (kv_value_ref to keep it) */
} fs_entry_view;

/* A page of a listing: keys in byte order, all after the one asked from,
 * with their metadata (no values). */
typedef struct fs_dir_page {
    const fs_entry_view *entries;
    uint32_t n;
    bool more;                 /* keys may follow the last: ask from it */
} fs_dir_page;

typedef struct fs_usage {
    uint64_t keys;
    uint64_t bytes;            /* sum of value lengths */
} fs_usage;

/* Completions of reads: `view`, `page`, `usage` are valid during the call
 * only, and NULL when result < 0. */
typedef void (*fs_read_fn)(void *arg, int result, const fs_entry_view *view);
typedef void (*fs_list_fn)(void *arg, int result, const fs_dir_page *page);
typedef void (*fs_usage_fn)(void *arg, int result, const fs_usage *usage);

/* Read flags. */
#define FS_READ_VALUE 1u       /* deliver the value, not only its metadata */
#define FS_READ_APPLIED 2u     /* no read point: the state as the backend
                                  has applied it (rule B2); to look again
                                  after a read point was taken, or where a
                                  check needs no more (create, rename) */

/* Reads return at most this many keys per page. */
#define FS_LIST_MAX 65536u

/*
 * The backend: what the adapter needs of the replicated store.  Rules it
 * relies on:
 *  B1. A completion runs exactly once and never inside the call that
 *      started it; a call that returns an error never runs it.
 *  B2. One ordered stream: fs_key_changed for every key an applied entry
 *      changes, and the completions of calls, reach the adapter in the
 *      order the state applied them; what a read delivers is the state
 *      with exactly the changes told before its completion.  The inodes
 *      of the mount follow their files by this stream (fs/state.c), so a
 *      backend that replaces its state wholesale (a snapshot installed)
 *      must tell every key whose value it changed, removed ones too.
 *  B3. A read without FS_READ_APPLIED, and read_barrier, reflect a
 *      linearizable read point taken after the call (every write
 *      committed before it, on any mount) and every write submitted
 *      `answered` before it (read-your-writes).
 *  B4. What a read delivers is a copy for the adapter (metadata, a lent
 *      reference to an immutable value, keys), never a pointer into the
 *      state that the adapter keeps.
 */
typedef struct fs_backend {
    void *ctx;
    /* Propose `op` (kv op encoding); `done` runs once it is applied (with
     * the state machine's result) or has failed.  `answered`: the caller
     * already returned (a commit at release, after close() returned), so
     * later read points on this node must wait for it (read-your-writes).
     * Returns 0 or a negative errno (then `done` is never called). */
    int (*submit)(void *ctx, const uint8_t *op, uint32_t len, bool answered,
                  fs_done_fn done, void *arg);
    /* `done` runs at a linearizable read point (B3), with nothing to read. */
    int (*read_barrier)(void *ctx, fs_done_fn done, void *arg);
    /* Read `key`: its metadata, and with FS_READ_VALUE its value. */
    int (*read_key)(void *ctx, const char *key, size_t key_len,
                    unsigned flags, fs_read_fn done, void *arg);
    /* List up to `max` (<= FS_LIST_MAX) keys after `after` (after_len 0:
     * from the first) in byte order. */
    int (*list)(void *ctx, const char *after, size_t after_len, uint32_t max,
                unsigned flags, fs_list_fn done, void *arg);
    /* Count keys and bytes (as FS_READ_APPLIED: for statfs). */
    int (*usage)(void *ctx, fs_usage_fn done, void *arg);
    /* 0 if a write may be accepted now, else the negative errno a write
     * would fail with (-EHOSTUNREACH: no leader reachable, -EIO: storage
     * failed): checked at open() for writing, where a shell sees it. */
    int (*can_write)(void *ctx);
    /* Render .status (malloc'ed JSON text + newline). */
    int (*status_text)(void *ctx, char **text, size_t *len);
    /* Render block `index` of the chain (malloc'ed); -ENOENT if absent. */
    int (*block_text)(void *ctx, uint64_t index, char **text, uint32_t *len);
    /* Highest block index in the chain. */
    uint64_t (*chain_head)(void *ctx);
    /* Optional: the blocks up to this index were compacted away after a
     * snapshot (.chain lists base+1..head); NULL: 0. */
    uint64_t (*chain_base)(void *ctx);
    /* Optional: render the newest snapshot for .chain/snapshot
     * (malloc'ed); -ENOENT when there is none (no entry then); NULL: never
     * an entry. */
    int (*snapshot_text)(void *ctx, char **text, size_t *len);
    /* Optional: called by fs_process after each request it dispatched,
     * outside every other backend call, so that the backend may complete
     * calls it can answer now (B1 holds: never inside the call that
     * started them) instead of after the whole batch of requests; the
     * kernel holds a directory's lock across the LOOKUP and CREATE of a
     * new name, so an answer that waits for the batch delays every
     * create in that directory. */
    void (*between)(void *ctx);
    /* Optional: .chain/incidents, what damage the node found and what
     * replaced it (malloc'ed; listed when not empty); NULL: no entry. */
    int (*incidents_text)(void *ctx, char **text, size_t *len);
    /* Optional: .cluster/members, the configuration in force (malloc'ed
     * text: a line per member); NULL: no .cluster directory. */
    int (*members_text)(void *ctx, char **text, size_t *len);
} fs_backend;

typedef struct fs fs;

typedef struct fs_options {
    double attr_timeout_s;    /* kernel attribute cache timeout; above 0,
                                 stat may miss another mount's write for
                                 that long (semantics 3) */
    double entry_timeout_s;   /* kernel name -> inode cache timeout; above
                                 0, a name may miss another mount's
                                 creation or rename for that long (changes
                                 are invalidated when applied here) */
    int debug;                /* pass -d to libfuse */
    int allow_other;
} fs_options;

/* Create the adapter and a FUSE session mounted at `mountpoint`.
 * Returns 0 or a negative errno (with a message in err). */
int fs_mount(const fs_options *opt, const fs_backend *backend,
             const char *mountpoint, fs **out, char *err, size_t err_len);

/* The session fd to poll for readability. */
int fs_fd(const fs *f);
/* The kernel runs lookups in one directory in parallel (session.c
 * invariant 3). */
bool fs_parallel_dirops(const fs *f);

/* Read and dispatch every request that is ready (non-blocking).  Returns
 * 0, or 1 once the filesystem was unmounted, or a negative errno. */
int fs_process(fs *f);
/* Requests dispatched so far. */
uint64_t fs_dispatched(const fs *f);
/* Write the answers queued for this turn (reply.c); with read_between
 * (not when stopping), reading and dispatching the requests that arrive
 * meanwhile every 20 us (counted in *dispatched).  Returns as
 * fs_process.  Call before the loop waits for anything. */
int fs_send_answers(fs *f, bool read_between, uint32_t *dispatched);
bool fs_has_answers(const fs *f);
/* Answers queued so far, and those the kernel refused (not ENOENT: a
 * request interrupted and gone); 0 without a mount. */
uint64_t fs_answers_queued(const fs *f);
uint64_t fs_answers_failed(const fs *f);

/* The backend applied an entry that changed `key` (any mount's, this
 * one's included), which now holds `now` (ident 0: removed), in the order
 * of rule B2: the inode of the file follows it (renamed, removed,
 * replaced) and, when the kernel caches, its caches are dropped
 * asynchronously, off the loop thread. */
void fs_key_changed(fs *f, const char *key, size_t key_len,
                    const fs_meta *now);

/* The backend appended committed blocks to the chain (chain_head grew):
 * waiting readers of .chain/stream and .chain/since/<n> get them.  Call
 * on the loop thread after each applied entry (cheap when none waits). */
void fs_chain_grew(fs *f);

/* Call fn with the key of every file this mount holds an inode for (not
 * orphans): for a backend that lost part of its stream of changes, which
 * must then tell fs_key_changed what each of them holds now. */
void fs_each_key(fs *f, void (*fn)(void *arg, const char *key,
                                   size_t key_len), void *arg);

/* Unmount (if still mounted) and free. */
void fs_unmount(fs *f);

#endif /* PAXOSFS_FS_H */
