/*
 * node_int.h - private to node/: the state of one node runtime, shared by
 * its modules, and what each module offers the others.
 *
 *   loop.c       the poll loop, the order of a turn, stepping the replica
 *                and routing its output (node_run)
 *   host.c       the state-machine host (host.h): the replica, the stores
 *                and the key-value state; committed entries into the chain
 *                and the state, the chain's own fdatasync, chain blocks for
 *                lagging peers, one stream of changed keys
 *   commit.c     its group commit: acceptor records, fdatasync on the sync
 *                thread, messages held until what they vouch for is durable
 *   client.c     the client handle (client.h): requests of the mount
 *   integrity.c  whether this node may vote and serve: the start gate,
 *                divergence from a majority, lost acceptor state
 *   catchup.c    entries installed from a peer, checked against the chain
 *                heads the other members vouch for
 *   snapshot.c   snapshots taken and compaction (on a thread of its
 *                own), checkpoints, transfers to and from peers; the
 *                storage side is the host's (host.h "snapshots")
 *   status.c     .status and the admin socket
 *   open.c       backing directory, lock, restart, mount, close
 *   reopen.c     after a storage failure: the host reverifies its stores
 *                and builds a new replica (host_reopen); the start gate
 *                again
 *   serve.c      the client port for client-only mounts (serve.h)
 */
#ifndef PAXOSFS_NODE_INT_H
#define PAXOSFS_NODE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sched.h>
#include <stdio.h>

#include "../chain/chain.h"
#include "../chain/kv.h"
#include "../chain/snap.h"
#include "../consensus/px.h"
#include "../fs/fs.h"
#include "../net/admin.h"
#include "../net/health.h"
#include "../net/snapxfer.h"
#include "../net/transport.h"
#include "../net/worker.h"
#include "client.h"
#include "host.h"
#include "node.h"

#define NODE_PEER_ALIVE_MS 1500        /* .status: "connected" */
#define NODE_CHAIN_HEAD_INTERVAL_MS 250 /* chain head to every peer */
#define NODE_CONFIRM_INTERVAL_MS 50     /* ... and while not confirmed */
/* a START frame's report of the receiver's start names a block of the
 * sender's chain: its index at this offset of the hash field, then the
 * first bytes of its hash (integrity.c invariant 5) */
#define NODE_START_AT 16
#define NODE_START_BLOCK_BYTES 8
#define NODE_FACTS 64                   /* (index, hash) kept per peer */
#define NODE_CATCHUP_HOLD_MS 2000       /* a CATCHUP waits this long for
                                           the peers' hashes */
/* CHAIN_HEAD frames (net/wire.h: from, index, hash) carry three things,
 * told apart by the top bits of `index`:
 *   plain      "I hold block `index` with hash `hash`" (a fact: the head
 *              every NODE_CHAIN_HEAD_INTERVAL_MS, or an answer);
 *   QUERY      "which hash do you hold at block index & MASK?": answered
 *              with a plain frame to the asker if it holds that block;
 *   START      a node's start: index & MASK = its counter, hash[0..7] its
 *              nonce, hash[8..11] whose start it is, hash[12] 0 = the
 *              sender's own start, 1 = the receiver's start as the sender
 *              last saw it (acceptor store, peer records); a kind 1 also
 *              names a block of the sender's chain: hash[16..23] its
 *              index (0: none, an empty chain), hash[24..31] the first
 *              bytes of its hash (NODE_START_AT). */
/* A START frame with hash[12] = 2 is a DIGEST: "my state digest at block
 * index & MASK begins with hash[13..31]" (hash[8..11] the sender); a
 * node sends one for every checkpoint it compared (snapshot.c), and one
 * whose state differs from a checkpoint counts them (integrity.c
 * invariant 4).  Nodes that do not know it ignore it as a START frame of
 * no kind they know. */
#define NODE_DIGEST_PREFIX 19          /* digest bytes a DIGEST carries */
#define NODE_DIGEST_FACTS 8            /* DIGESTs kept per peer */
#define NODE_HEAD_START (UINT64_C(1) << 63)
#define NODE_HEAD_QUERY (UINT64_C(1) << 62)
#define NODE_HEAD_MASK (NODE_HEAD_QUERY - 1)
#define NODE_MOUNT_IDLE_MS 100          /* no FUSE request for this long:
                                           a follower syncs inline */
#define NODE_NO_LEADER_FACTOR 4         /* no leader heard from for this
                                           many maximum election timeouts:
                                           fail new requests at once */

#define NODE_BUSY_POLL_US 50           /* loop.c invariant 5 */
#define NODE_BETWEEN_PASSES 4          /* node_between: reads a served
                                          read queues, answered at once */
#define NODE_SNAPSHOT_ENTRIES 100000   /* node_config defaults */
#define NODE_SNAPSHOT_BYTES (UINT64_C(1) << 30)
/* node_config default: 1 min.  The check builds no state (restore.c
 * invariant 3): at 1M keys it is about 0.8 s of its own thread's CPU and
 * a few MiB, so damage is found within a minute for ~1.4% of a CPU. */
#define NODE_VERIFY_INTERVAL_MS 60000
/* A learner lagging the leader's commit index by at most this many slots
 * is promoted to voter (node_config.promote_lag): about one window of
 * slots in flight, so that the new voter can vote on the next slots
 * without first fetching a backlog (a voter that lags leaves the
 * cluster's quorums one failure closer to stalling). */
#define NODE_PROMOTE_LAG 64
#define NODE_DIGESTS 4096              /* state digests kept (snapshot.c) */

struct node_digest {
    uint64_t index;
    uint8_t digest[KV_DIGEST_BYTES];
};

/* members.c: the configuration as this node follows it, and a change
 * asked through it */
struct node_members {
    px_members in_force;        /* as last applied (or found at open) */
    uint64_t config_index;      /* block of its CONFIG (0: initial) */
    uint64_t changes_applied;
    bool from_chain;            /* found in the chain or a snapshot */
    bool was_member, removed;   /* removed: was one, is no longer */
    net_peer_addr seed[TRANSPORT_MAX_PEERS];   /* --peers as given */
    uint32_t n_seed;
    /* the change outstanding here (members.c invariant 2) */
    bool busy;
    uint32_t origin;            /* 0 admin socket, UINT32_MAX this node,
                                   else the member that forwarded it */
    uint64_t origin_token;      /* its tag */
    uint64_t forward_token;     /* ours, when we forwarded it */
    uint64_t slot;              /* its CONFIG's slot (leader; 0: none) */
    uint64_t deadline_ms;
    px_members want;
    char what[96];
    uint64_t next_token;
    uint64_t last_promote_ms;
    /* announcements (members.c invariant 4) */
    uint64_t last_announce_ms;
    uint64_t announces_sent, announces_taken, announces_ignored;
};

struct node_fact {
    uint64_t index;
    uint8_t hash[CHAIN_HASH_BYTES];
};

struct node {
    node_config cfg;
    char *data_dir;
    char *mountpoint;
    int lock_fd;
    host *host;                 /* the state-machine host (host.h); it owns
                                   what the next four point to */
    chain *chain;
    acceptor_store *acceptor;
    kv *state;
    px_replica *px;
    fs *mount;
    client *cl;                 /* the mount's session (client.h) */
    int signal_fd;

    /* a reachable leader (node.h "No leader"): when one was last known
     * alive; none for longer than no_leader_ms makes new requests fail at
     * once with EHOSTUNREACH */
    uint64_t leader_seen_ms;
    uint64_t no_leader_ms;
    bool no_leader;
    uint64_t fast_failed;       /* requests refused for want of a leader */
    uint64_t between_served;    /* times reads were answered between two
                                   requests of the mount (loop.c) */
    uint64_t between_chained;   /* ... and reads those queued in turn, in
                                   the same place (node_between) */
    uint64_t lease_reads;       /* key reads a follower lease served */
    bool lease_read_queued;     /* ... one waits: serve between requests */
    uint64_t read_now_index;    /* ... at this read index (px_read_now) */
    uint64_t read_now_ms;       /* ... asked at this time */
    uint64_t drain_deadline_ms; /* stopping: wait for answered writes */

    /* cluster */
    void *zctx;
    transport *net;
    net_peer_addr peers[TRANSPORT_MAX_PEERS];   /* cfg.peers points here */
    keys key;                                   /* cfg.key points here */
    admin *adm;
    struct serve *serve;        /* client-only mounts (serve.h), or NULL */

    /* integrity.c: chain comparison with each member (index as in
     * cfg.peers): the block index last compared and whether the hashes
     * differed there */
    uint64_t peer_chain_index[TRANSPORT_MAX_PEERS];
    /* the highest block each peer has said it holds (chain heads every
     * NODE_CHAIN_HEAD_INTERVAL_MS, answers): .cluster/members */
    uint64_t peer_head_seen[TRANSPORT_MAX_PEERS];
    bool peer_chain_differs[TRANSPORT_MAX_PEERS];
    bool abstaining;              /* our chain differs from a majority's */
    uint64_t div_query_index, div_query_ms;   /* last asked all peers
                                                 about a differing block */
    uint64_t last_head_sent_ms;
    uint64_t votes_withheld;      /* messages not sent while abstaining */
    /* the start gate (integrity.c invariant 1) */
    uint64_t start_head;          /* chain head when the node started */
    bool confirmed;
    uint64_t started_ms, last_wait_log_ms;
    bool peer_holds_head[TRANSPORT_MAX_PEERS]; /* same block at >= start_head */
    bool peer_agrees[TRANSPORT_MAX_PEERS];     /* its last block compared
                                                  (index >= 1) was ours */
    bool peer_saw_start[TRANSPORT_MAX_PEERS];  /* reported our start, and it
                                                  fits our store */
    acceptor_peer start;          /* this start (counter, nonce) */
    acceptor_peer prev_start;     /* the start before it, from the store */
    acceptor_peer peer_start[TRANSPORT_MAX_PEERS]; /* each peer's latest */
    bool peer_rolled_back[TRANSPORT_MAX_PEERS];    /* logged once */
    /* START frames heard, judged once the peer's chain agrees with ours
     * (a node with another cluster's directory reports nonsense) */
    acceptor_peer heard_own[TRANSPORT_MAX_PEERS];  /* its own start */
    acceptor_peer heard_ours[TRANSPORT_MAX_PEERS]; /* ours, as it saw it */
    bool heard_own_set[TRANSPORT_MAX_PEERS];
    bool heard_ours_set[TRANSPORT_MAX_PEERS];
    /* the block the report of ours names (integrity.c invariant 5): its
     * index (0: from an empty chain) and its hash's first bytes */
    uint64_t heard_ours_at[TRANSPORT_MAX_PEERS];
    uint8_t heard_ours_block[TRANSPORT_MAX_PEERS][NODE_START_BLOCK_BYTES];
    bool start_report_logged[TRANSPORT_MAX_PEERS];
    uint64_t start_reports_dropped;   /* named a block that differs */
    acceptor_peer last_own[TRANSPORT_MAX_PEERS];   /* its start, as heard:
                                                      a new one means its
                                                      chain must agree anew */
    char recovering_why[1400];    /* "" = not recovering (integrity.c 2) */

    struct node_members mem;    /* members.c */

    /* catchup.c: what peers told us they hold, and a held CATCHUP */
    struct node_fact facts[TRANSPORT_MAX_PEERS][NODE_FACTS];
    uint32_t fact_next[TRANSPORT_MAX_PEERS];
    px_msg *held_catchup;
    uint64_t held_catchup_ms;
    uint64_t catchup_dropped, catchup_installed;
    uint64_t last_catchup_log_ms;
    uint64_t catchup_query_index, catchup_query_ms;  /* last asked */

    /* loop.c */
    uint64_t last_wall_ms;
    uint64_t next_tick_ms;
    uint64_t last_fuse_us;      /* the mount's last request dispatched */
    int logged_role;            /* px_role last seen by node_track_leader */
    bool fuse_late;             /* requests dispatched after the turn's
                                   proposals: the next turn starts now */
    uint64_t busy_polls;        /* waits that polled first (invariant 5) */
    uint64_t busy_poll_found;   /* ... and found an event meanwhile */
    uint64_t last_fuse_ms;      /* the mount last had requests */
    /* CPU placement (cfg.leader_cpus, docs/design.md "CPU placement") */
    cpu_set_t leader_cpus;      /* cfg.leader_cpus points here */
    cpu_set_t other_cpus;       /* where a follower runs */
    int placed_as;              /* -1 not yet, 0 follower, 1 leader */
    int placement_error;        /* last cpus_apply failure, logged once */
    int fatal;                  /* negative errno while storage is failed
                                   (loop.c invariant 2) */
    health health;              /* net/health.h: probing with back-off */
    bool stop;

    /* snapshot.c */
    worker *snap_bg;            /* writes snapshots, removes segments
                                   (the store and the newest snapshot
                                   are the host's: host_snapstore,
                                   host_snapshot) */
    snap_take *take;            /* a snapshot being written */
    uint64_t take_index, take_started_ms, last_take_ms;
    uint64_t snap_entries, snap_bytes;   /* applied since the last */
    uint64_t snaps_taken, snaps_failed, snaps_installed;
    uint64_t snap_history_conflicts;   /* snapshot.c invariant 6 */
    bool snap_pending_checked;         /* ... done for snap_pending */
    bool compact_wanted, compacting;
    chain_compact_job compact_job;
    snapxfer *xfer;             /* transfers to and from peers */
    uint64_t xfer_refused;      /* asks while not serving */
    kv *snap_pending;           /* received, waiting to be installed */
    uint64_t snap_query_ms;     /* last asked the peers to vouch for it */
    uint64_t snap_pending_ms;   /* waiting since */
    bool snap_pending_logged;
    snap_info snap_pending_info;
    struct node_digest digests[NODE_DIGESTS];
    uint64_t checkpoints_ok, checkpoints_unchecked;
    bool state_diverged;        /* a checkpoint's digest was not ours */
    uint64_t cp_bad_index;      /* ... at this index (0: none) */
    uint64_t cp_own_index;      /* the last checkpoint compared here */
    uint8_t cp_own_digest[KV_DIGEST_BYTES];   /* our state's digest there */
    bool cp_own_matched;        /* ... equal to the checkpoint's */
    uint8_t cp_bad_digest[KV_DIGEST_BYTES];   /* the checkpoint's */
    struct node_fact digest_facts[TRANSPORT_MAX_PEERS][NODE_DIGEST_FACTS];
    uint32_t digest_next[TRANSPORT_MAX_PEERS];
    bool snap_retake;           /* repair.c: a damaged newest snapshot is
                                   taken again at the same index */

    struct repair *rep;         /* repair.c: the background check and the
                                   damage being repaired */
};

/* loop.c */
uint64_t node_now_ms(void);           /* CLOCK_MONOTONIC: every timer */
uint64_t node_wall_ms(node *n);       /* CLOCK_REALTIME, never decreasing:
                                         stamped into entries */
void node_step(node *n, px_event *ev);
void node_storage_failed(node *n, const char *what, int rc);
void node_track_leader(node *n, uint64_t now_ms);
void node_serve_reads(node *n);     /* as far as state and health allow */
void node_backend(node *n, fs_backend *be);   /* what the mount calls */
void node_write_lock_pid(node *n);  /* open.c */
int node_take_lock(node *n, char *err, size_t err_len);     /* open.c */
int node_record_start(node *n, char *err, size_t err_len);  /* open.c */
void node_storage_reopen(node *n);  /* reopen.c */

void node_host_edges(node *n, host_edges *e);   /* what the host calls */
void node_send(node *n, const px_msg *m);       /* to a peer, now */

/* integrity.c */
bool integrity_serves(const node *n);
bool integrity_filter(node *n, const px_msg *m);   /* true: withhold */
void integrity_check_divergence(node *n, uint32_t from, uint64_t index,
                                const uint8_t hash[CHAIN_HASH_BYTES]);
void integrity_gate_update(node *n);
void integrity_begin_recovery(node *n, const char *why);
void integrity_recovery_done(node *n);
void integrity_send_heads(node *n, uint64_t now);
void integrity_on_chain_head(void *arg, uint32_t from, uint64_t index,
                             const uint8_t hash[PX_HASH_BYTES]);
void integrity_head_frame(node *n, uint32_t to, uint64_t index,
                          const uint8_t hash[CHAIN_HASH_BYTES]);
uint32_t integrity_peer_slot(const node *n, uint32_t id);
uint32_t integrity_quorum(const node *n);
uint64_t node_random_u64(void);

/* catchup.c */
void catchup_receive(node *n, const px_msg *m);
void catchup_try_held(node *n);
void catchup_expire(node *n, uint64_t now);
uint32_t catchup_vouchers(const node *n, uint64_t index,
                          const uint8_t hash[CHAIN_HASH_BYTES]);
uint32_t catchup_vouchers_named(const node *n, uint64_t index,
                                const uint8_t hash[CHAIN_HASH_BYTES],
                                char *who, size_t cap);

/* snapshot.c */
int snapnode_start(node *n, char *err, size_t err_len);
void snapnode_stop(node *n);
void snapnode_applied(node *n, const px_entry *e);
void snapnode_output(node *n, const px_output *out);
void snapnode_turn(node *n, uint64_t now);
int snapnode_take_now(node *n, uint64_t *index);
int snapnode_status(node *n, char *buf, size_t cap);
int snapnode_text(void *ctx, char **text, size_t *len);
uint64_t snapnode_chain_base(void *ctx);
void integrity_state_diverged(node *n, const char *why);   /* integrity.c */
void integrity_send_digest(node *n, uint64_t index,
                           const uint8_t digest[KV_DIGEST_BYTES]);
void integrity_state_judge(node *n);

/* repair.c */
int repair_start(node *n);
void repair_stop(node *n);
void repair_turn(node *n, uint64_t now);
void repair_check_now(node *n);
void repair_block_damaged(void *arg, uint64_t index, int rc); /* host edge */
int repair_before_reopen(node *n);
void repair_after_reopen(node *n);
void repair_status(node *n, FILE *fp);
enum { REPAIR_DIVERGED = 1, REPAIR_STATE, REPAIR_BEHIND };
bool repair_reset(node *n, int what, const chain_damage *d, uint64_t index,
                  const uint8_t hash[CHAIN_HASH_BYTES], const char *who);
bool repair_needs_reset_for(node *n, uint64_t snap_index);
void repair_found_at_reopen(node *n, const chain_damage *d);   /* reopen.c */
int repair_at_start(node *n, const chain_damage *d, const char *err);
bool repair_catching_up(const node *n);
int repair_incidents_text(void *ctx, char **text, size_t *len);
int snapnode_retake(node *n);                               /* snapshot.c */
/* members.c */
int members_init(node *n, const px_members *initial);
void members_start(node *n);
void members_applied(node *n, const px_entry *e);
void members_installed(node *n, const snap_info *info);
void members_on_config(node *n, uint64_t slot, const px_members *m,
                       const uint8_t *ctx, uint32_t ctx_len);
void members_turn(node *n, uint64_t now);
bool members_admin(node *n, const char *req, char **reply);
bool members_removed(const node *n);
int members_text(void *ctx, char **text, size_t *len);
void members_status_json(node *n, FILE *fp);
int members_snapshot_blob(node *n, const px_members *m, uint8_t *buf,
                          uint32_t cap);

/* status.c */
int status_text(void *ctx, char **text, size_t *len);
int host_block_text(void *ctx, uint64_t index, char **text, uint32_t *len);
uint64_t host_chain_head(void *ctx);
void status_admin(void *arg, const char *request, char **reply);

#endif
