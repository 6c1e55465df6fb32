/*
 * host.h - the state-machine host: everything between the replica
 * (consensus/px.h) and the disk.  It owns the replica, the acceptor
 * store, the hash chain and the key-value state, and carries out each
 * output of the replica in px.h order:
 *
 *   host_step(ev) --px_step--> output
 *      1. persist  acceptor records buffered          (commit.c)
 *      2. send     messages now, or held until what they vouch for is
 *                  durable (outbox)                   (commit.c)
 *      -  catch-up chain blocks for a lagging peer    (host.c)
 *      4. apply    committed entries: chain block, then key-value state
 *      -  the runtime's share: reads, refused requests, the end of a
 *                  recovery, the next tick            (edges.output)
 *   host_flush: the buffered records as one write, one fdatasync
 *   fdatasync done: held messages leave, 3. PX_EV_PERSISTED stepped
 *
 * It does no networking, reads no clock and knows nothing of FUSE: what
 * it needs from outside comes through its edges (host_edges), which the
 * node runtime (node/loop.c: sockets, threads, real clocks) and the
 * simulator (tests/sim: a fake network, a fake disk under chain_io and
 * simulated time) fill in.  How an fdatasync runs is a mode:
 *
 *   threads  the acceptor store's fdatasync on the sync thread
 *            (net/syncer.c) or inline, the chain's on the worker thread
 *            (net/worker.c); the loop polls host_sync_fd/host_chain_fd
 *            and calls host_collect/host_collect_chain;
 *   driven   no threads: an fdatasync runs (through chain_io) the moment
 *            it starts, between two calls of edges.sync_runs, and the
 *            caller completes it later with host_sync_done (the simulator
 *            decides when: a disk's latency; its fake disk makes the
 *            calls made in between durable only then).
 *
 * Invariants:
 *   1. A message that vouches for acceptor state (outbox_vouches) never
 *      leaves before every persist issued before it is durable, and
 *      PX_EV_PERSISTED is stepped only after the fdatasync covering it
 *      returned (commit.c).
 *   2. Committed entries are applied in slot order, each once: chain
 *      block first (it fixes the hash), then the key-value state.
 *   3. After a storage failure (or a replica step out of memory) nothing
 *      more is applied or reported durable and the replica is suspended
 *      (px_suspend: it neither leads, votes nor campaigns and puts out
 *      nothing); edges.failed is told once.  host_reopen re-verifies the
 *      stores and builds a new replica; the key-value state never goes
 *      back (blocks a failed disk lost from the chain are appended again
 *      when they come again, without being applied twice).
 *   4. The acceptor store forgets accepted values only up to a chain
 *      position that is durable, and records that position (its mark).
 *   5. The commit time stamped into entries (wall clock) never goes back
 *      on this host; timers run on edges.now_ms alone.
 */
#ifndef PAXOSFS_NODE_HOST_H
#define PAXOSFS_NODE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/limits.h"
#include "../chain/chain.h"
#include "../chain/kv.h"
#include "../chain/snap.h"
#include "../consensus/px.h"

typedef struct host host;

enum host_sync_kind {
    HOST_SYNC_ACCEPTOR = 1,     /* the acceptor store (commit path) */
    HOST_SYNC_CHAIN = 2,        /* the chain (background) */
};

typedef struct host_edges {
    void *arg;
    /* monotonic milliseconds: every timer */
    uint64_t (*now_ms)(void *arg);
    /* wall-clock milliseconds, stamped into entries (the host keeps the
     * stamp from going back) */
    uint64_t (*wall_ms)(void *arg);
    /* a message of the replica that may leave now */
    void (*send)(void *arg, const px_msg *m);
    /* the runtime's share of an output, after persist, send and apply:
     * reads, refused requests, `recovered`, next_tick_ms.  The output is
     * valid during the call only. */
    void (*output)(void *arg, const px_output *out);
    /* a request's answer as an entry applied it (kv_result_fn) */
    void (*result)(void *arg, uint64_t client_id, uint64_t seq,
                   int32_t result, uint64_t slot);
    /* keys an applied entry changed (not during the replay at open) */
    void (*changed)(void *arg, const char *key, size_t key_len,
                    bool removed);
    /* storage failed: durability can no longer be promised (once) */
    void (*failed)(void *arg, const char *what, int rc);
    /* where catch-up from the chain for a lagging `peer` starts: one
     * past the highest commit index heard from it (0: unknown, nothing
     * is sent) */
    uint64_t (*catchup_from)(void *arg, uint32_t peer);
    /* optional: requests are being served right now, so the acceptor's
     * fdatasync stays off this thread even on a follower (threads mode) */
    bool (*serving)(void *arg);
    /* driven mode: an fdatasync of `kind` starts: called with begin true
     * right before its calls to the disk, false right after; complete it
     * with host_sync_done */
    void (*sync_runs)(void *arg, int kind, bool begin);
    /* optional: an entry went into the chain, with the hash it got;
     * called after the key-value state took it too (a block a failed
     * disk lost and that came again after host_reopen is appended to
     * the chain only: the state is further on) */
    void (*applied)(void *arg, const px_entry *e,
                    const uint8_t hash[CHAIN_HASH_BYTES]);
    /* optional: block `index` of the chain could not be read back for a
     * lagging peer (rc: -EBADMSG damaged, or another -errno) */
    void (*damaged)(void *arg, uint64_t index, int rc);
    /* optional: one line of log (no newline); NULL: stderr */
    void (*log)(void *arg, const char *line);
} host_edges;

typedef struct host_config {
    uint32_t id;
    const char *data_dir;          /* exists; the host makes its files */
    px_options px;                 /* the replica's options (seed too) */
    uint64_t chain_sync_interval_ms;
    bool driven;                   /* no threads (see the top) */
    uint32_t max_held_msgs;        /* 0: HOST_MAX_HELD_MSGS */
    uint64_t acceptor_log_bytes;   /* 0: ACCEPTOR_LOG_BYTES */
    uint64_t chain_segment_bytes;  /* 0: CHAIN_SEGMENT_BYTES */
    chain_damage *damage_out;      /* host_open only, may be NULL: filled
                                      when it fails on a damaged chain */
} host_config;

#define HOST_MAX_HELD_MSGS 100000  /* messages waiting for a sync */
#define HOST_CATCHUP_BLOCKS 256    /* chain blocks per catch-up message */
#define HOST_CATCHUP_BYTES LIMIT_CATCHUP_FRAME
#define HOST_WHY_BYTES 1400

/* Open the stores in cfg->data_dir: the acceptor store (a torn last
 * write is cut, a damaged one kept aside), then the chain held to the
 * position the store recorded as durable; replay the chain into the
 * key-value state; create the replica from what the store holds.  When
 * the acceptor state may be incomplete (store damaged, missing beside a
 * chain, or not yet recovered at the last stop) the replica starts
 * recovering and `why` says why ("" otherwise; HOST_WHY_BYTES).
 * 0, or a negative errno with a one-line explanation in err (a damaged
 * chain names file, offset and block). */
int host_open(const host_config *cfg, const host_edges *edges, host **out,
              char *why, char *err, size_t err_len);

/* What host_open found on the disk besides the state (for tests and the
 * simulator; the log says the same in words). */
typedef struct host_open_report {
    bool acceptor_created;         /* there was no acceptor log */
    bool acceptor_torn;            /* a torn last write was cut */
    uint64_t acceptor_torn_offset;
    bool acceptor_lost;            /* damaged: kept aside, recovering */
    bool chain_torn;               /* a torn tail was cut */
    char chain_torn_path[512];
    uint64_t chain_torn_offset;
    bool chain_damaged;            /* the last open (or reopen) failed on
                                      a damaged chain: chain_damage */
    chain_damage chain_damage;
} host_open_report;

void host_get_open_report(const host *h, host_open_report *r);

/* Start the helpers (threads mode: the sync and worker threads; after a
 * fork, never before).  0 or a negative errno. */
int host_start(host *h);

/* Stop: wait (bounded) for what is in flight, make the chain durable and
 * record its position (a clean stop), free everything.  `clean` false
 * (a simulated crash) frees without writing anything. */
void host_close(host *h, bool clean);

/* Step the replica with `ev` (its clock fields are filled here) and carry
 * out its output.  Returns px_step's result (a refused change: nothing
 * was carried out). */
int host_step(host *h, px_event *ev);

/* End of a turn: write what is buffered as one generation and make it
 * durable (group commit). */
void host_flush(host *h);

/* threads mode: the sync thread finished (host_sync_fd readable), the
 * worker finished (host_chain_fd readable). */
int host_sync_fd(const host *h);
int host_chain_fd(const host *h);
void host_collect(host *h);
void host_collect_chain(host *h);

/* driven mode: the fdatasync of `kind` edges.sync_runs announced is
 * done. */
void host_sync_done(host *h, int kind);

/* Periodic work (every turn): every chain_sync_interval_ms a chain
 * fdatasync; after one, the acceptor store forgets what the durable chain
 * holds. */
void host_background(host *h, uint64_t now_ms);

/* Shutdown: wait until everything written is durable and collected. */
void host_drain(host *h);

/* The acceptor state may be incomplete from now on (recorded durably with
 * the next sync): the replica casts no vote until it recovered. */
void host_begin_recovery(host *h);

/* The runtime found a storage failure itself (rc < 0): the host applies
 * nothing more and suspends the replica (invariant 3).  edges.failed is
 * not called. */
void host_mark_failed(host *h, int rc);
int host_failed(const host *h);       /* 0 or the negative errno */

/* After a storage failure, once the disk works again (the node runtime
 * asks net/health.c, the simulator knows): take part again as a restarted
 * node does, without a restart.  Waits (bounded) for a chain fdatasync in
 * flight (-EBUSY if it does not return; driven mode: complete it first),
 * settles the files (what was written becomes durable, cached pages are
 * dropped), reopens and verifies the acceptor store and the chain as
 * host_open does (a torn tail is cut, a damaged store kept aside: `why`
 * says so), checks that the chain is a prefix or an extension of the one
 * the state was built from, brings the state up to it, builds a new
 * replica from the store (seeded with `seed`; recovering when `recovering`
 * or `why` is set), and starts group commit over: messages held for the
 * old replica are dropped.  The replica still has to be stepped.  0, or a
 * negative errno with err: everything stays as it was (failed,
 * suspended). */
int host_reopen(host *h, bool recovering, uint64_t seed, char *why,
                char *err, size_t err_len);

/* The node's whole history was moved out of the backing directory (a
 * node whose chain or state differs from a majority's, node/repair.c):
 * the next host_reopen starts from an empty state and an empty chain, as
 * a node with a wiped directory does, instead of checking the chain
 * against the state (invariant 3's "never goes back" does not hold across
 * this: the state is not trusted).  Snapshots and the chain must already
 * be gone from DIR; no snapshot may be being taken. */
void host_discard_state(host *h);

/* The configuration in force at the chain head when the replica was last
 * built (host_open, host_reopen): the last CONFIG block of the chain, or
 * the newest snapshot's membership when the chain after it holds none;
 * the replica was created with it.  false: neither holds one (the
 * configuration of cfg->px.members is in force).  *ctx points at the
 * CONFIG's host context (NULL, 0: none), valid until the next reopen;
 * *index is the CONFIG's block, or the snapshot's index when it came from
 * the snapshot (*in_snapshot). */
bool host_config_found(const host *h, px_members *m, const uint8_t **ctx,
                       uint32_t *ctx_len, uint64_t *index, bool *in_snapshot);

/* What it owns, for the runtime's own reading (never freed by it). */
px_replica *host_replica(host *h);
chain *host_chain(host *h);
acceptor_store *host_acceptor(host *h);
kv *host_state(host *h);

typedef struct host_stats {
    uint64_t acceptor_syncs;       /* fdatasyncs of the acceptor store */
    uint64_t persist_issued;       /* newest persist id buffered */
    uint64_t persist_durable;      /* newest persist id durable */
    uint32_t held;                 /* messages waiting for a sync */
    uint64_t held_dropped;
    uint64_t held_superseded;
} host_stats;

void host_get_stats(host *h, host_stats *st);

/* ---------------------------------------------------------- snapshots
 *
 * host_open restarts from the newest valid snapshot in DIR/snap plus the
 * chain after it (chain_restore); host_reopen opens the chain continuing
 * the newest snapshot known.  Taking snapshots, compaction and transfers
 * are the runtime's (node/snapshot.c); the host keeps the store, the
 * newest snapshot and the chain's base, and the replica learns that base
 * (px_set_chain_base) whenever it moves. */

/* The snapshot store (owned by the host). */
snapstore *host_snapstore(host *h);

/* The newest snapshot (restored from, taken, or installed); NULL: none. */
const snap_info *host_snapshot(const host *h);

/* The runtime finished taking a snapshot: it is the newest. */
void host_snapshot_taken(host *h, const snap_info *info);

/* A chain fdatasync is out (threads mode: on the worker). */
bool host_chain_busy(host *h);

/* Compaction of the chain through `upto` (chain_compact_start): the
 * segments leave the chain at once and the replica learns the new base in
 * the same call; the runtime removes the files (chain_compact_run).
 * -EBUSY while a chain sync is out; another -errno: storage failed
 * (edges.failed told). */
int host_compact_start(host *h, uint64_t upto, chain_compact_job *job);

/* Install a snapshot received from a peer (state at info->index, checked
 * by the store): the chain is replaced by one continuing it (chain_reset),
 * older snapshots go, its head is recorded in the acceptor store when its
 * sync is idle, and the state is replaced (host_state changes: the old
 * one is freed), in that order.  On 0 the caller steps the replica with
 * the event host_installed_event makes, at once and before anything else
 * (host_step; after it let go of the old state, since the edges run
 * during that step).  -EAGAIN: not now (a chain sync is out, or storage
 * failed); `state` stays the caller's.  Otherwise the host takes `state`:
 * -EALREADY not newer than the state (dropped), another -errno: storage
 * failed (edges.failed told). */
int host_install_snapshot(host *h, kv *state, const snap_info *info);
void host_installed_event(const snap_info *info, px_event *ev);

/* Block `index` rendered for /MOUNT/.chain/<n> (chain_block_render). */
int host_render_block(host *h, uint64_t index, char **text, uint32_t *len);

#endif
