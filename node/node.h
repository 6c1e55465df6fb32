/*
 * node.h - the paxosfs node runtime: one event loop that drives the
 * consensus replica (consensus/px.h) with real time, persists what it asks
 * (chain/ acceptor store, one fdatasync per loop turn = group commit),
 * applies committed entries to the hash chain and the key-value state, and
 * serves the FUSE mount (fs/) from that state.
 *
 * Order of work in one loop turn (DESIGN.md invariants 1 and 2):
 *   read FUSE requests -> step the replica (propose, read index, tick)
 *   -> persist (acceptor records, one fdatasync) -> send messages
 *   -> report PERSISTED -> apply committed entries (chain + kv) -> answer
 *   parked FUSE requests.
 */
#ifndef PAXOSFS_NODE_H
#define PAXOSFS_NODE_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../net/transport.h"

typedef struct node node;

typedef struct node_config {
    uint32_t id;                   /* this node's id, >= 1 */
    const char *data_dir;          /* backing directory */
    const char *mountpoint;        /* NULL: no mount */
    uint64_t commit_timeout_ms;    /* a write not applied by then fails */
    uint32_t max_writes_in_flight; /* the mount's writes proposed at once;
                                      more wait their turn (0: the most,
                                      CLIENT_MAX_PENDING) */
    double attr_timeout_s;         /* FUSE attribute cache */
    double entry_timeout_s;        /* FUSE name cache (fs_options) */
    bool fuse_debug;
    bool allow_other;
    uint64_t chain_sync_interval_ms; /* background fdatasync of the chain */
    uint64_t snapshot_entries;     /* a snapshot once this many entries were
                                      applied since the last (0: never by
                                      count) */
    uint64_t snapshot_bytes;       /* ... or this many bytes of entries (0:
                                      never by size) */
    bool no_compact;               /* keep every chain segment (no
                                      compaction after a snapshot) */
    bool no_follower_leases;       /* px_options.follower_leases off */
    uint64_t chain_segment_bytes;  /* 0: CHAIN_SEGMENT_BYTES (tests use
                                      small segments to see compaction) */
    uint64_t verify_interval_ms;   /* the background check of the backing
                                      directory (node/repair.c); 0: off */
    const net_peer_addr *peers;    /* all members, this node included;
                                      n_peers == 0: a cluster of one */
    uint32_t n_peers;
    const keys *key;               /* cluster key, or NULL */
    const cpu_set_t *leader_cpus;  /* NULL, or: while leading, every thread
                                      runs on these CPUs only, and while not
                                      leading on the other allowed ones */
    uint16_t client_port;          /* 0, or serve client-only mounts on
                                      this port of this node's host
                                      (node/serve.h) */
    uint32_t client_ring;          /* changes kept for clients that resume
                                      here (0: SERVE_RING) */
    bool join;                     /* a new member joining a running
                                      cluster: its --peers name the
                                      members (the seed list) and this
                                      node; it starts as a non-voter and
                                      learns the configuration */
    bool no_promote;               /* leader: never promote a learner by
                                      itself (paxosctl member promote) */
    uint64_t promote_lag;          /* ... else promote one lagging at
                                      most this many slots */
    uint32_t busy_poll_us;         /* poll this long before sleeping while
                                      the mount is busy (loop.c invariant
                                      5); 0: never */
    const char *log_path;          /* NULL, or the file stdout and stderr
                                      go to: opened again after the node
                                      reopened its storage (a data disk
                                      mounted anew); must outlive the node */
} node_config;

void node_config_default(node_config *cfg);

/* Open the backing directory (creating it), take its lock, verify and load
 * the chain, replay it into the key-value state, recover the acceptor
 * store and create the replica.  On failure returns a negative errno and
 * writes a one-line explanation into err (e.g. the damaged file and
 * offset, or "already in use by pid N"). */
int node_open(const node_config *cfg, node **out, char *err, size_t err_len);

/* Mount the filesystem (cfg->mountpoint).  0 or negative errno + err. */
int node_mount(node *n, char *err, size_t err_len);

/* Run until SIGTERM/SIGINT or the mount goes away.  A storage failure
 * is not fatal: the node stops leading and voting, fails the calls on its
 * mount with ENOSPC or EIO, and resumes once its storage works again
 * (net/health.h).  Returns 0 on a clean stop, or the negative errno of a
 * storage failure the node had not recovered from when it stopped. */
int node_run(node *n);

/* Unmount, sync the chain, release the lock and free everything. */
void node_close(node *n);

#endif
