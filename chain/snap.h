/*
 * snap.h - snapshots of a paxosfs node: the snapshot file (format in
 * chain/snapfile.c), its streaming writer and checked chunk receiver, the
 * snapshot store in the backing directory (DIR/snap/), restart from the
 * newest valid snapshot plus the chain after it, whole-directory
 * verification, and backup files (snapshot plus chain after it).
 *
 * A snapshot holds the key-value state with its session table at one
 * applied index S, the chain head hash at S, the state digest at S
 * (kv.h), an opaque membership blob from the caller, and a SHA-256 of the
 * whole file; the state is zlib-compressed.  The same bytes are what a
 * node streams to a peer in chunks.
 *
 * Errors: 0 or a negative errno.  Damage (a changed, cut or otherwise
 * wrong byte) is -EBADMSG with a chain_damage naming file, byte offset and
 * block index (for a snapshot: its index) and what is wrong.
 *
 * Threads: the functions marked (owner) run on the thread that owns the
 * kv state and the chain (the node's loop); (any) may run on a helper
 * thread; a store is otherwise used by one thread at a time.
 */
#ifndef PAXOSFS_SNAP_H
#define PAXOSFS_SNAP_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "chain.h"
#include "kv.h"

#define SNAP_MAX_MEMBERSHIP 8192     /* bytes of the membership blob */
#define SNAP_FRAME_BYTES (64u << 10) /* compressed bytes per checked frame */

/* What a snapshot file says about itself. */
typedef struct snap_info {
    uint64_t index;                       /* last included index S */
    uint8_t head_hash[CHAIN_HASH_BYTES];  /* chain hash of block S */
    uint8_t digest[KV_DIGEST_BYTES];      /* state digest at S */
    uint64_t keys;                        /* key count */
    uint64_t value_bytes;                 /* sum of value lengths */
    uint64_t raw_bytes;                   /* payload before compression */
    uint64_t file_bytes;                  /* the whole file */
    uint32_t membership_len;
    uint8_t membership[SNAP_MAX_MEMBERSHIP];
} snap_info;

/* ------------------------------------------------------ the file itself */

/* Write a snapshot of view `v` to `fd` from its current offset 0 on
 * (any): streamed in bounded pieces (memory independent of the state's
 * size), with the chain head hash at the view's index and the caller's
 * membership blob.  Not synced.  *info (may be NULL) describes the file. */
int snapfile_write(int fd, kv_view *v, const uint8_t head_hash[CHAIN_HASH_BYTES],
                   const uint8_t *membership, uint32_t membership_len,
                   snap_info *info);

/* What a receiver must find, when known (a snapshot the cluster committed
 * to: index, head hash and state digest). */
typedef struct snap_expect {
    uint64_t index;
    uint8_t head_hash[CHAIN_HASH_BYTES];
    uint8_t digest[KV_DIGEST_BYTES];
} snap_expect;

/* Incremental receiver: checks a snapshot file of `total` bytes as its
 * chunks arrive, in order, and builds the state from it.
 *   snap_recv_begin  `expect` may be NULL (a file from disk: whatever it
 *                    holds); `out_fd` >= 0: every accepted byte is also
 *                    written there (the store's temporary file), else -1;
 *   snap_recv_chunk  bytes [offset, offset + len): offset must be what
 *                    was received so far (-EINVAL otherwise, nothing
 *                    taken: the receiver stays usable); -EBADMSG when the
 *                    bytes are damaged or not what was expected (header
 *                    fields are compared with `expect` as soon as they
 *                    arrive; every 64 KiB frame's CRC as soon as it is
 *                    complete); the receiver is then dead
 *                    (snap_recv_damage says where and why), as after any
 *                    other failure (-ENOMEM, or -errno writing out_fd):
 *                    every later call answers the same;
 *   snap_recv_finish all `total` bytes arrived: the SHA-256 of the file,
 *                    the trailer, and the state digest recomputed from the
 *                    records all check out, and match `expect`: *state is
 *                    the new state (applied index S) for the caller, *info
 *                    (may be NULL) describes it.  Nothing is installed
 *                    anywhere before this returns 0.
 * Memory: the state being built plus two frame buffers and one record
 * header, whatever `total` or the bytes claim. */
typedef struct snap_recv snap_recv;

int snap_recv_begin(uint64_t total, const snap_expect *expect, int out_fd,
                    snap_recv **out);
int snap_recv_chunk(snap_recv *r, uint64_t offset, const uint8_t *data,
                    size_t len);
int snap_recv_finish(snap_recv *r, kv **state, snap_info *info);
void snap_recv_free(snap_recv *r);
uint64_t snap_recv_received(const snap_recv *r);   /* bytes so far */
/* Where the damage is: path is empty (the caller knows the file or peer),
 * offset is the byte offset in the snapshot file, index the snapshot's
 * index once the header arrived. */
const chain_damage *snap_recv_damage(const snap_recv *r);

/* Read and check the snapshot file at `path` completely (any): 0 with
 * *state (may be NULL: only check) and *info, -EBADMSG with *damage
 * (path, offset, reason), or another -errno. */
int snapfile_load(const char *path, const snap_expect *expect, kv **state,
                  snap_info *info, chain_damage *damage);

/* Render *info for /MOUNT/.chain (one line per field: index, head hash,
 * state digest, keys, raw and compressed sizes).  *text malloc'ed. */
int snap_info_render(const snap_info *info, char **text, size_t *len);

/* --------------------------------------------------- the snapshot store */

/* DIR/snap/snap-<index, 20 digits>.pxs are the snapshots; the newest two
 * are kept (a new one replaces the older of them).  A new snapshot is
 * written to DIR/snap/tmp-<index>.part, fsynced, renamed into place, and
 * the directory fsynced; leftover .part files are removed when a writable
 * store opens.  A snapshot found damaged by snapstore_load is renamed to
 * <name>.damaged (kept as evidence, no longer counted). */
typedef struct snapstore snapstore;

int snapstore_open(const char *dir, bool writable, snapstore **out);
void snapstore_close(snapstore *st);

/* Snapshots present, newest first (by index; not yet checked). */
uint32_t snapstore_count(const snapstore *st);
uint64_t snapstore_index_at(const snapstore *st, uint32_t i);
/* Path of the snapshot at `index` (for messages and backup). */
int snapstore_path(const snapstore *st, uint64_t index, char *out,
                   size_t cap);

/* What snapstore_load found: every snapshot that failed its checks, with
 * the file, offset and reason (newest first), and whether the snapshot
 * loaded is not the newest there was. */
#define SNAP_MAX_REPORTED 4
typedef struct snap_load_report {
    uint32_t n_damaged;
    chain_damage damaged[SNAP_MAX_REPORTED];
    bool fell_back;
    bool quarantined;        /* damaged files were renamed *.damaged */
} snap_load_report;

/* Load the newest snapshot that checks out completely (checksums, frame
 * CRCs, SHA-256, digest recomputed from the records); fall back to the
 * previous one when the newest is damaged or cut short.  0 with *state and
 * *info (state may be NULL: check only), or -ENOENT when there is no
 * snapshot at all, or -EBADMSG when every snapshot is damaged; *rep says
 * what was found either way.  A writable store renames damaged files to
 * *.damaged. */
int snapstore_load(snapstore *st, kv **state, snap_info *info,
                   snap_load_report *rep);

/* Taking a snapshot without stalling writes, in three steps like
 * chain_sync:
 *   snapstore_take_start  (owner) freezes `s` (kv_freeze: O(1) plus a
 *                         copy of the session table) and creates the
 *                         temporary file; head_hash is the chain hash at
 *                         kv_applied_index(s); -EBUSY while a take is out;
 *   snapstore_take_run    (any) writes, fsyncs, renames into place and
 *                         fsyncs the directory;
 *   snapstore_take_finish (owner) thaws the state, records the new
 *                         snapshot and removes all but the newest two;
 *                         returns rc of run (a failed take leaves the
 *                         store as it was); *info (may be NULL) describes
 *                         the new snapshot.
 * After a successful finish the node may compact the chain up to
 * snapstore_compact_index. */
typedef struct snap_take snap_take;

int snapstore_take_start(snapstore *st, kv *s,
                         const uint8_t head_hash[CHAIN_HASH_BYTES],
                         const uint8_t *membership, uint32_t membership_len,
                         snap_take **out);
int snapstore_take_run(snap_take *t);
int snapstore_take_finish(snapstore *st, kv *s, snap_take *t, int rc,
                          snap_info *info);
/* The three steps on the calling thread (tests, tools). */
int snapstore_take(snapstore *st, kv *s,
                   const uint8_t head_hash[CHAIN_HASH_BYTES],
                   const uint8_t *membership, uint32_t membership_len,
                   snap_info *info);

/* Remove the snapshots older than `index` (after chain_reset to a
 * snapshot at `index`: the chain no longer continues them, so they could
 * not restart the node).  0 or -errno. */
int snapstore_prune_below(snapstore *st, uint64_t index);

/* A snapshot found damaged while the owner runs (node/repair.c): renamed
 * to *.damaged and no longer counted (invariant 3).  0 or -errno. */
int snapstore_quarantine(snapstore *st, uint64_t index);

/* List DIR/snap again (its files were moved away by the owner: a node
 * that resets its history, node/repair.c).  0 or -errno. */
int snapstore_rescan(snapstore *st);

/* The chain index up to which segments may be removed: the index of the
 * second newest snapshot (0 while there are fewer than two), so that a
 * fall back to it still has every block after it. */
uint64_t snapstore_compact_index(const snapstore *st);

/* Receiving a snapshot into the store (from a peer): the chunks are
 * checked as with snap_recv and written to a temporary file; finish
 * checks the whole, fsyncs, renames into place (it becomes the newest
 * snapshot), fsyncs the directory, prunes to two, and gives the state.
 * A failed or abandoned receive (snapstore_recv_free) removes the file. */
typedef struct snapstore_recv snapstore_recv;

int snapstore_recv_begin(snapstore *st, uint64_t total,
                         const snap_expect *expect, snapstore_recv **out);
int snapstore_recv_chunk(snapstore_recv *r, uint64_t offset,
                         const uint8_t *data, size_t len);
int snapstore_recv_finish(snapstore *st, snapstore_recv *r, kv **state,
                          snap_info *info);
void snapstore_recv_free(snapstore_recv *r);
const chain_damage *snapstore_recv_damage(const snapstore_recv *r);

/* Reading a finished snapshot in chunks (to send it to a peer): the
 * reader keeps the file open, so a newer snapshot replacing it meanwhile
 * does not cut the transfer.  snap_reader_read gives up to len bytes at
 * offset (fewer only at the end). */
typedef struct snap_reader snap_reader;

int snapstore_reader_open(snapstore *st, uint64_t index, snap_reader **out,
                          uint64_t *size);
int64_t snap_reader_read(snap_reader *r, uint64_t offset, uint8_t *buf,
                         size_t len);
void snap_reader_close(snap_reader *r);

/* ------------------------------------------ restart and verification */

/* A node's durable state, opened (chain_restore) or checked
 * (chain_verify_all). */
typedef struct chain_restored {
    char dir[512];             /* the backing directory */
    snapstore *snaps;          /* open store (writable unless verifying) */
    chain *chain;              /* open chain, continuing the snapshot */
    kv *state;                 /* applied through `index` */
    bool has_snap;
    snap_info snap;            /* the snapshot used (has_snap) */
    uint64_t index;            /* = chain head */
    uint8_t head_hash[CHAIN_HASH_BYTES];
} chain_restored;

typedef struct chain_restore_report {
    snap_load_report snaps;    /* damaged snapshots, fall back */
    chain_open_report chain;   /* torn tail cut, chain reset after the
                                  snapshot */
    uint64_t replayed;         /* blocks applied after the snapshot */
} chain_restore_report;

/* Restart (owner): load the newest valid snapshot (falling back to the
 * previous one), open the chain continuing it (chain_open_ex with the
 * acceptor store's durable mark), and apply the blocks after the
 * snapshot: *out holds the store, the chain and the state at the chain
 * head.  -EBADMSG with *damage when the chain is damaged or cannot
 * continue any valid snapshot (then, or when every snapshot is damaged,
 * the node needs its peers or a backup); other -errno.  On error nothing
 * is left open. */
int chain_restore(const char *dir, const chain_mark *durable,
                  chain_restored *out, chain_restore_report *rep,
                  chain_damage *damage);
void chain_restored_close(chain_restored *r);

/* The same, read-only, for paxosctl verify: every snapshot file is
 * checked (the newest valid one is used), then the chain after it, every
 * link, the snapshot's head hash continuing into the chain, and the
 * digest recomputed at the snapshot, and that every other valid snapshot
 * agrees with the chain where the chain holds its index.  0 when all of
 * it is intact; -EBADMSG with *damage naming the first damage found (all
 * damaged snapshot files are listed in rep->snaps; rep->snaps.fell_back
 * says restart would still work from an older one), or another -errno.
 * `out` may be NULL; on 0 it is filled (read-only) and must be closed, on
 * an error nothing is left open. */
int chain_verify_all(const char *dir, const chain_mark *durable,
                     chain_restored *out, chain_restore_report *rep,
                     chain_damage *damage);
/* The same checks of every stored byte, without building the state or
 * replaying the chain (restore.c invariant 3): memory independent of the
 * store's size, for the running node's periodic check.  On 0 `out` (if
 * not NULL) holds no state (out->state is NULL); index and head_hash are
 * the chain head's. */
int chain_verify_light(const char *dir, const chain_mark *durable,
                       chain_restored *out, chain_restore_report *rep,
                       chain_damage *damage);

/* --------------------------------------------------------- backups */

/* A backup file: one snapshot file (or none: the chain from block 1)
 * followed by the blocks after it, with a SHA-256 of the whole (layout in
 * chain/backup.c).
 *   backup_write_dir  (offline) writes FILE from backing directory DIR:
 *                     its newest valid snapshot and the chain after it,
 *                     verified as chain_verify_all does; FILE is written
 *                     to FILE.part, fsynced and renamed; *rep (may be
 *                     NULL) tells what went in;
 *   backup_restore    checks FILE completely (snapshot, every block and
 *                     link, the snapshot's head hash into the chain, the
 *                     trailer) and only then prepares backing directory
 *                     DIR (absent or empty) with the snapshot, the
 *                     chain, and an acceptor store durable to the head
 *                     and marked recovering (the node recovers its
 *                     acceptor state before it votes, see README).  -EBADMSG with *damage
 *                     (path FILE, offset in FILE) on a damaged file,
 *                     -ENOTEMPTY when DIR holds anything. */
typedef struct backup_report {
    bool has_snap;
    uint64_t snap_index;
    uint64_t first_block, head;       /* blocks first..head (0, 0: none) */
    uint8_t head_hash[CHAIN_HASH_BYTES];
    uint64_t bytes;
} backup_report;

int backup_write_dir(const char *dir, const char *file, backup_report *rep,
                     chain_damage *damage);
int backup_restore(const char *file, const char *dir, backup_report *rep,
                   chain_damage *damage);
/* backup_restore for a member of a new cluster whose every member is
 * restored from the same FILE (new_cluster): the acceptor store is not
 * marked recovering, since no member of that cluster promised or accepted
 * anything yet.  Wrong for one member of a cluster that ran: its acceptor
 * state may be lost, and only the recovery rule makes that safe. */
int backup_restore_ex(const char *file, const char *dir, bool new_cluster,
                      backup_report *rep, chain_damage *damage);

#endif /* PAXOSFS_SNAP_H */
