/*
 * chain.h - the durable side of a paxosfs node: the SHA-256 hash chain of
 * committed blocks in segment files, and the acceptor store (promised
 * ballot, accepted-but-not-yet-chained slots).  Both live in the node's
 * backing directory.
 *
 * Hash rule (DESIGN.md invariant 3): block i's hash is
 *     hash_i = SHA-256(hash_{i-1} || encode(index_i, time_i, kind_i, value_i))
 * computed when slot i is applied, never at proposal time; hash_0 is 32
 * zero bytes.  The exact encoding and the on-disk record layout are
 * documented as offset/size/meaning tables in chain/segment.c.
 *
 * Durability: chain_append writes into the page cache; chain_sync makes
 * everything appended so far durable (fdatasync).  On the commit path the
 * acceptor store is what is synced; the chain is synced in the background
 * and before the acceptor store drops slots (acceptor_compact).
 *
 * Errors: 0 or a negative errno.  Damage found on open or verify fills a
 * chain_damage with the file, byte offset and block index of the first bad
 * block.
 *
 * File system calls go through chain_io (chain_io.h) so tests can inject
 * failures and simulate crashes.
 */
#ifndef PAXOSFS_CHAIN_H
#define PAXOSFS_CHAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/entry.h"
#include "../base/types.h"

#define CHAIN_HASH_BYTES 32

typedef struct chain chain;

/* One block as read back (chain_read).  `data` is owned by the block;
 * release with chain_block_free. */
typedef struct chain_block {
    uint64_t index;
    uint64_t time_ms;
    uint8_t kind;                       /* enum px_entry_kind */
    uint32_t len;
    uint8_t *data;
    uint8_t prev_hash[CHAIN_HASH_BYTES];
    uint8_t hash[CHAIN_HASH_BYTES];
} chain_block;

typedef struct chain_damage {
    char path[512];     /* segment file holding the first bad block */
    uint64_t offset;    /* byte offset of that block in the file */
    uint64_t index;     /* its block index (expected index if unreadable) */
    char reason[128];   /* "hash mismatch", "bad link", "bad checksum", ... */
} chain_damage;

/* What chain_open found and did besides loading. */
typedef struct chain_open_report {
    bool torn_tail_cut;        /* a torn last block was cut away */
    char torn_path[512];
    uint64_t torn_offset;      /* where the file was truncated */
    uint64_t torn_bytes;       /* bytes removed */
    bool reset;                /* chain_open_ex: the chain ended at block
                                  reset_head, before the snapshot it
                                  continues; it now starts after the
                                  snapshot (read-only: would) */
    uint64_t reset_head;
} chain_open_report;

/* Open (creating if absent) the chain in `dir`, verify every block (hashes
 * and links) and cut a torn tail back to the last whole block.
 * Returns 0, or -EBADMSG with *damage filled when a committed byte was
 * changed (the chain is not opened), or another negative errno. */
int chain_open(const char *dir, chain **out, chain_open_report *report,
               chain_damage *damage);
void chain_close(chain *c);

uint64_t chain_head_index(const chain *c);              /* 0 = empty */
const uint8_t *chain_head_hash(const chain *c);         /* 32 bytes */

/* Compute the hash block `index` would get after `prev_hash`. */
void chain_hash_block(const uint8_t prev_hash[CHAIN_HASH_BYTES],
                      uint64_t index, uint64_t time_ms, uint8_t kind,
                      const uint8_t *data, uint32_t len,
                      uint8_t out[CHAIN_HASH_BYTES]);

/* Append block head+1.  `index` must equal chain_head_index(c) + 1.
 * The new head hash is copied to hash_out when non-NULL.  Not durable
 * until chain_sync. */
int chain_append(chain *c, uint64_t index, uint64_t time_ms, uint8_t kind,
                 const uint8_t *data, uint32_t len,
                 uint8_t hash_out[CHAIN_HASH_BYTES]);
int chain_sync(chain *c);
uint64_t chain_synced_index(const chain *c);   /* last durable block */

/* chain_sync in three steps, so that its fdatasyncs (milliseconds when
 * many blocks are dirty) run on another thread while the owner goes on
 * appending:
 *   chain_sync_start  (owner) captures what is appended so far into a job:
 *                     0, or 1 when everything is durable already;
 *   chain_sync_run    (any thread) makes the job durable: 0 or -errno;
 *                     it owns and closes the job's descriptors;
 *   chain_sync_finish (owner) records run's result: 0, or the error,
 *                     which is sticky like any chain write error.
 * One job at a time (start answers -EBUSY); chain_sync refuses while one
 * runs.  A job may outlive chain_close. */
typedef struct chain_sync_job {
    int fds[2];                 /* sealed segment not yet synced, active */
    uint32_t n_fds;
    bool sync_dir;              /* a segment name not yet fsync'ed */
    char dir[512];
    uint64_t head;              /* blocks the job covers */
    uint8_t head_hash[CHAIN_HASH_BYTES];  /* hash of block head */
    uint64_t rolls;             /* segment rolls when started */
} chain_sync_job;

int chain_sync_start(chain *c, chain_sync_job *job);
int chain_sync_run(chain_sync_job *job);
int chain_sync_finish(chain *c, const chain_sync_job *job, int rc);

/* Read block `index` (base+1..head, chain_base_index).  -ENOENT if
 * outside the chain. */
int chain_read(chain *c, uint64_t index, chain_block *out);
void chain_block_free(chain_block *b);

/* Hash of block `index` (0 gives the zero hash).  -ENOENT if outside. */
int chain_hash_at(chain *c, uint64_t index, uint8_t out[CHAIN_HASH_BYTES]);

/* Where block `index` lies: its segment file and the record's offset in
 * it.  -ENOENT if outside the chain. */
int chain_locate(const chain *c, uint64_t index, char *path, size_t cap,
                 uint64_t *offset);

/* Human-readable rendering of a block for /MOUNT/.chain/<n>: index, commit
 * time, previous and own hash, then one line per operation (op, key, value
 * length, a short escaped preview).  *text is malloc'ed, NUL-terminated;
 * *len excludes the NUL. */
int chain_block_render(const chain_block *b, char **text, uint32_t *len);

/* Offline verification of the chain in `dir` (paxosctl verify): opens
 * nothing for writing.  Returns 0 with head index/hash when intact,
 * -EBADMSG with *damage filled, or another negative errno. */
int chain_verify_dir(const char *dir, uint64_t *head_index,
                     uint8_t head_hash[CHAIN_HASH_BYTES], chain_damage *damage);

/* Add-only extensions. */

/* Roll to a new segment file once the active one would exceed `bytes`
 * (default CHAIN_SEGMENT_BYTES; tests use small values).  Affects future
 * appends only. */
#define CHAIN_SEGMENT_BYTES (64u << 20)
void chain_set_segment_bytes(chain *c, uint64_t bytes);

/* chain_verify_dir that also tells whether the last segment ends in a torn
 * record (a crash in the middle of an append).  A torn tail is not damage:
 * the function still returns 0 with the head before the torn record, fills
 * *torn with its path, offset and size (torn_bytes > 0 means one was found;
 * torn_tail_cut stays false: nothing is written) and leaves the cut to the
 * next chain_open.  `torn` may be NULL. */
int chain_verify_dir_report(const char *dir, uint64_t *head_index,
                            uint8_t head_hash[CHAIN_HASH_BYTES],
                            chain_open_report *torn, chain_damage *damage);

/* Hash of block chain_synced_index (the zero hash for an empty chain). */
const uint8_t *chain_synced_hash(const chain *c);

/* ------------------------------------------------------- acceptor store */

typedef struct acceptor_store acceptor_store;

/* State recovered by acceptor_open.  `accepts` is owned by the store and
 * valid until the next call that modifies it. */
typedef struct acceptor_state {
    px_ballot promise;
    uint32_t n_accepts;
    const px_entry *accepts;   /* ascending slot, highest ballot per slot */
} acceptor_state;

int acceptor_open(const char *dir, acceptor_store **out, acceptor_state *st,
                  chain_damage *damage);
void acceptor_close(acceptor_store *a);

/* Buffer records; durable after acceptor_sync (one fdatasync for all). */
int acceptor_put_promise(acceptor_store *a, px_ballot promise);
int acceptor_put_accept(acceptor_store *a, const px_entry *e);
int acceptor_sync(acceptor_store *a);

/* acceptor_sync in two halves, so that the fdatasync can run on another
 * thread while the owner goes on buffering (pipelined group commit):
 * acceptor_write hands everything buffered to the file (page cache only);
 * acceptor_datasync makes every write done before it durable.
 * acceptor_datasync reads nothing but the file descriptor and may run on
 * any thread, provided the owner calls neither acceptor_compact nor
 * acceptor_close meanwhile.  acceptor_pending_bytes says whether anything
 * awaits acceptor_write. */
int acceptor_write(acceptor_store *a);
int acceptor_datasync(const acceptor_store *a);
uint64_t acceptor_pending_bytes(const acceptor_store *a);

/* Forget accepted slots <= upto (they are in a durable chain now). */
int acceptor_compact(acceptor_store *a, uint64_t upto);

/* Add-only extensions. */

/* acceptor_compact rolls to a fresh log once the log holds more than this
 * many bytes (default ACCEPTOR_LOG_BYTES; tests use small values). */
#define ACCEPTOR_LOG_BYTES (16u << 20)
void acceptor_set_log_bytes(acceptor_store *a, uint64_t bytes);
/* The same for every store opened from now on, its first log included
 * (process-wide; 0 restores ACCEPTOR_LOG_BYTES).  The simulator keeps its
 * fake disks small with it. */
void acceptor_set_default_log_bytes(uint64_t bytes);

/* The current state (promise and accepts, including buffered ones), with
 * the lifetime rules of acceptor_state. */
void acceptor_get_state(const acceptor_store *a, acceptor_state *st);

/* What the store keeps besides promise and accepts (record layouts in
 * chain/acceptor.c):
 *   mark        the chain position known durable: blocks 1..index were
 *               fdatasync'ed, block index has this hash.  A chain shorter
 *               than the mark, or with another block there, lost or
 *               replaced durable blocks (chain_open_marked).
 *   incarnation this node's starts (counter) and a random nonce per start;
 *   peers       the latest start seen of each other node: a node whose
 *               store knows fewer starts of itself than a peer saw was
 *               restored from an older copy (node/integrity.c);
 *   recovering  the acceptor state is known to be incomplete: the node must
 *               recover before it votes (px_begin_recovery) and says so
 *               until it has. */
#define ACCEPTOR_MAX_PEERS PX_MAX_MEMBERS

typedef struct chain_mark {
    uint64_t index;                  /* 0: none recorded */
    uint8_t hash[CHAIN_HASH_BYTES];
} chain_mark;

typedef struct acceptor_peer {
    uint32_t id;                     /* node id (0: this node) */
    uint64_t counter;                /* its starts so far, 0 = none seen */
    uint64_t nonce;                  /* random, one per start */
} acceptor_peer;

typedef struct acceptor_info {
    chain_mark mark;
    uint64_t incarnation, nonce;     /* this node's latest start */
    bool recovering;
    uint32_t n_peers;
    acceptor_peer peers[ACCEPTOR_MAX_PEERS];
} acceptor_info;

void acceptor_get_info(const acceptor_store *a, acceptor_info *info);

/* Record the durable chain position (after chain_sync made blocks
 * 1..index durable): forgets accepted slots <= index as acceptor_compact
 * does.  -EINVAL below the current mark. */
int acceptor_mark(acceptor_store *a, uint64_t index,
                  const uint8_t hash[CHAIN_HASH_BYTES]);

/* Buffer a start of this node (counter above the last), the latest start
 * seen of a peer (-EINVAL below the one kept, -ENOSPC past
 * ACCEPTOR_MAX_PEERS peers), or the recovery state.  Durable after the
 * next acceptor_sync (or group commit). */
int acceptor_put_incarnation(acceptor_store *a, uint64_t counter,
                             uint64_t nonce);
int acceptor_put_peer(acceptor_store *a, const acceptor_peer *peer);
int acceptor_put_recovery(acceptor_store *a, bool recovering);

/* What acceptor_open_salvage found. */
typedef struct acceptor_open_report {
    bool created;           /* there was no log: a new, empty store */
    bool torn_cut;          /* a torn last write was cut away */
    char torn_path[512];
    uint64_t torn_offset;
    uint64_t torn_bytes;
    bool lost;              /* the log was damaged (damage says where and
                               why): an acknowledged promise or accepted
                               value may be lost.  The damaged log was
                               moved to kept_path and a new one holds what
                               the records before the damage said, marked
                               recovering */
    chain_damage damage;
    char kept_path[512];
} acceptor_open_report;

/* acceptor_open that never refuses a damaged log: it is kept aside and the
 * store goes on marked recovering (rep->lost).  acceptor_open instead
 * answers -EBADMSG and changes nothing. */
int acceptor_open_salvage(const char *dir, acceptor_store **out,
                          acceptor_state *st, acceptor_open_report *rep);

/* Offline check of DIR/acceptor/log (paxosctl verify): opens nothing for
 * writing.  0 with *v filled (missing: no log; torn_bytes > 0: a torn
 * last write the next open cuts), -EBADMSG with v->damage, or another
 * negative errno. */
typedef struct acceptor_verify {
    char path[512];
    bool missing;
    uint64_t torn_offset, torn_bytes;
    chain_damage damage;
    px_ballot promise;
    uint32_t n_accepts;
    uint64_t first_slot, last_slot;
    acceptor_info info;
} acceptor_verify;

int acceptor_verify_dir(const char *dir, acceptor_verify *v);

/* chain_open and chain_verify_dir_report that also hold the chain to the
 * position the acceptor store recorded as durable (`durable`, NULL or
 * index 0: none): a chain that ends before it, a torn record at or below
 * it, or another block at its index is damage (-EBADMSG; segment.c
 * invariant 6).  A torn record above it is cut as before. */
int chain_open_marked(const char *dir, const chain_mark *durable, chain **out,
                      chain_open_report *report, chain_damage *damage);
int chain_verify_dir_marked(const char *dir, const chain_mark *durable,
                            uint64_t *head_index,
                            uint8_t head_hash[CHAIN_HASH_BYTES],
                            chain_open_report *torn, chain_damage *damage);

/* Make what the chain and the acceptor store under `dir` hold durable
 * (fdatasync of every file in DIR/chain and DIR/acceptor, fsync of both
 * directories and of DIR), then drop the pages the kernel caches of those
 * files.  A node whose writes or fdatasyncs failed calls it before it
 * reopens them: the next chain_open_marked and acceptor_open_salvage then
 * verify what the disk holds, not what the page cache kept of writes
 * whose fate is unknown, and nothing they find is taken for durable
 * without being so.  0, or the first negative errno (a directory that
 * does not exist is skipped). */
int chain_settle_dir(const char *dir);

/* ------------------------------------------- snapshots and compaction */

/* A chain need not start at block 1: once a snapshot holds the state at
 * block S (chain/snap.h), the segments whose blocks are all covered may be
 * removed (compaction), and a node that installed a snapshot from a peer
 * continues its chain after S.  The blocks the chain holds are then
 * base+1..head; block base+1 links to the hash of block base (the base
 * hash), which is the snapshot's head hash when base == S, and otherwise
 * is bound to the snapshot through block S's hash (base < S <= head).
 *
 * chain_open_ex opens with options:
 *   durable   as chain_open_marked (NULL: none); a mark at or below the
 *             base, or (the chain being behind the snapshot) at or below
 *             S, is satisfied by the snapshot;
 *   snapshot  the snapshot the chain continues (index S, head hash H);
 *             NULL: the chain must start at block 1, as chain_open.  With
 *             it the chain may start at any block <= S+1; starting later
 *             (blocks missing between snapshot and chain), a block S+1
 *             that does not link to H, or a block S whose hash is not H
 *             is damage (-EBADMSG, *damage names file, offset, block).  A
 *             chain that ends before S is behind the snapshot: it is
 *             replaced by an empty chain after S (report->reset; a
 *             read-only open only reports it and acts as if);
 *   read_only opens nothing for writing (verification): torn tails are
 *             reported, not cut.
 * Blocks at or below the base are outside the chain (chain_read and
 * chain_hash_at answer -ENOENT; chain_hash_at(base) gives the base hash). */
typedef struct chain_base {
    uint64_t index;                  /* S: last block the snapshot holds */
    uint8_t hash[CHAIN_HASH_BYTES];  /* H: hash of block S */
} chain_base;

typedef struct chain_open_opts {
    const chain_mark *durable;
    const chain_base *snapshot;
    bool read_only;
} chain_open_opts;

int chain_open_ex(const char *dir, const chain_open_opts *opts, chain **out,
                  chain_open_report *report, chain_damage *damage);

uint64_t chain_base_index(const chain *c);       /* 0: starts at block 1 */
const uint8_t *chain_base_hash(const chain *c);  /* hash of block base */

/* Compaction: remove the segments whose blocks are all <= upto, never the
 * active (last) segment, so a segment only partly covered stays.  The node
 * passes the index of the *previous* snapshot (snapstore_compact_index),
 * so that falling back from a damaged newest snapshot to the previous one
 * still finds every block after it.  In two steps like chain_sync:
 *   chain_compact_start (owner) drops the segments from the chain at once
 *                       (chain_base_index moves up) and returns how many
 *                       (0: nothing to do; the job is empty);
 *   chain_compact_run   (any thread) unlinks their files and fsyncs the
 *                       directory; 0 or -errno (a file left behind is
 *                       harmless: the next open starts the chain earlier).
 * chain_compact does both: segments removed, or -errno. */
typedef struct chain_compact_job {
    uint64_t *firsts;                /* first block of each file */
    uint32_t n;
    char dir[512];
} chain_compact_job;

int chain_compact_start(chain *c, uint64_t upto, chain_compact_job *job);
int chain_compact_run(chain_compact_job *job);
int chain_compact(chain *c, uint64_t upto);

/* Replace the whole chain by an empty one continuing after block `index`
 * with hash `hash` (a snapshot installed from a peer, which the local
 * chain does not reach or contradicts): DIR/chain is renamed aside in one
 * step, a new one with an empty segment index+1 is made durable, and the
 * old one removed.  A crash leaves the old chain or the new one; the next
 * chain_open_ex with the snapshot finishes the job.  -EBUSY while a sync
 * job is out; a failure is sticky (the chain must be reopened). */
int chain_reset(chain *c, uint64_t index, const uint8_t hash[CHAIN_HASH_BYTES]);

#endif /* PAXOSFS_CHAIN_H */
