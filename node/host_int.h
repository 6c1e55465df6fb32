/*
 * host_int.h - private to the state-machine host (host.h): its state,
 * shared by host.c (open, step, apply, catch-up, the chain's sync) and
 * commit.c (group commit and the rule for what may leave).  Nothing of
 * the node runtime (node_int.h) is visible here: the simulator links
 * these two files without sockets, threads or FUSE.
 */
#ifndef PAXOSFS_NODE_HOST_INT_H
#define PAXOSFS_NODE_HOST_INT_H

#include "host.h"

#include "../net/outbox.h"
#include "../net/syncer.h"
#include "../net/worker.h"

struct host {
    host_config cfg;
    char *data_dir;
    host_edges e;
    px_replica *px;
    acceptor_store *acceptor;
    chain *chain;
    kv *state;
    int fatal;                  /* negative errno once storage failed */
    uint64_t last_wall_ms;      /* invariant 5 */
    host_open_report opened;

    /* commit.c */
    syncer *sync;               /* group commit of the acceptor store */
    uint64_t last_persist_issued;
    uint64_t last_promise_issued; /* persist id of the newest promise raise */
    uint64_t durable_persist_id;
    outbox held;                /* messages waiting for a sync */

    /* host.c: the chain's background fdatasync */
    worker *bg;
    chain_sync_job chain_job;   /* valid while bg runs it */
    bool compact_due;           /* chain synced further: compact the
                                   acceptor store once its sync is idle */
    uint64_t last_chain_sync_ms;

    /* the configuration in force at the chain head when the replica was
     * built (host_config_found) */
    bool has_config;
    px_members config;
    uint64_t config_index;      /* its CONFIG block, or the snapshot's
                                   index (config_in_snapshot) */
    bool config_in_snapshot;
    uint32_t config_ctx_len;
    uint8_t config_ctx[PX_CONFIG_MAX_CONTEXT];

    /* snapshots (host.h) */
    snapstore *snaps;
    bool has_snap;
    bool discard;               /* host_reopen starts from an empty state
                                   (host_discard_state) */
    snap_info snap;             /* the newest snapshot */
};

/* host.c */
void host_fail(host *h, const char *what, int rc);
void host_logf(host *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
uint64_t host_now(host *h);
/* host.c, for host_open.c */
void host_on_changed(void *arg, const char *key, size_t key_len,
                     bool removed);
void host_drain_chain_sync(host *h);

/* commit.c */
void commit_output(host *h, const px_output *out);   /* persist, send */
void commit_flush(host *h);
void commit_collect(host *h);
void commit_drain(host *h);

#endif
