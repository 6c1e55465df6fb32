/*
 * reopen.c - a node whose storage failed (loop.c invariant 2) takes part
 * again without a restart, once net/health.c's probe passes: the files
 * are settled and re-verified as on start, a new replica is built from
 * the durable state (the suspended one may hold promises and acceptances
 * that never reached the disk), group commit starts over, and the start
 * gate (integrity.c invariant 1) is passed again before the node votes.
 * The key-value state never goes back: what a failed disk lost from the
 * chain comes again from the leader and is appended without being applied
 * twice (host.c invariant 2).
 */
#include "node_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Take DIR/LOCK again when the path names another file now (the disk
 * was mounted again): the flock held is on the old one. */
static int relock(node *n, char *err, size_t err_len)
{
    char path[4096];
    struct stat held, now;
    snprintf(path, sizeof path, "%s/LOCK", n->data_dir);
    if (fstat(n->lock_fd, &held) == 0 && stat(path, &now) == 0 &&
        held.st_dev == now.st_dev && held.st_ino == now.st_ino)
        return 0;
    int old = n->lock_fd;
    n->lock_fd = -1;
    int rc = node_take_lock(n, err, err_len);
    if (rc < 0) {
        n->lock_fd = old;
        return rc;
    }
    close(old);
    node_write_lock_pid(n);
    return 0;
}

/* The log file may have been on the disk that failed and was mounted
 * again: open it anew (cfg.log_path), so what follows lands where an
 * operator looks. */
static void reopen_log(node *n)
{
    if (!n->cfg.log_path)
        return;
    int fd = open(n->cfg.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  0600);
    if (fd < 0) {
        fprintf(stderr, "paxosfs: node %u: cannot reopen the log %s: %s\n",
                n->cfg.id, n->cfg.log_path, strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
        fprintf(stderr, "paxosfs: node %u: cannot reopen the log %s: %s\n",
                n->cfg.id, n->cfg.log_path, strerror(errno));
    close(fd);
}

/* The chain on disk must be the one the state was built from: a prefix
 * of it (the tail a failed disk lost is learned again) or an extension
 * of it (blocks appended whose state was not applied). */
static int reopen_check_chain(node *n, chain *old, uint64_t old_head,
                              const uint8_t old_hash[CHAIN_HASH_BYTES],
                              char *err, size_t err_len)
{
    uint64_t head = chain_head_index(n->chain);
    uint8_t ours[CHAIN_HASH_BYTES], theirs[CHAIN_HASH_BYTES];
    uint64_t at = head < old_head ? head : old_head;
    if (chain_hash_at(n->chain, at, ours) < 0)
        return 0;
    if (at == old_head)
        memcpy(theirs, old_hash, CHAIN_HASH_BYTES);
    else if (chain_hash_at(old, at, theirs) < 0)
        return 0;   /* the old copy is unreadable: the mark was checked */
    if (memcmp(ours, theirs, CHAIN_HASH_BYTES) == 0)
        return 0;
    snprintf(err, err_len, "the chain in %s differs at block %" PRIu64
             " from the one this node applied (another disk?); restart "
             "the node", n->data_dir, at);
    return -EBADMSG;
}

/* The probe passed: re-verify what the disk holds and take part again as
 * a restarted node does, without a restart.  Settle the files (what was
 * written becomes durable, cached pages are dropped), take the lock
 * again if the disk was mounted anew, reopen and verify the acceptor
 * store and the chain as on start (a torn tail is cut, a damaged store
 * kept aside and recovered from the peers), bring the state up to the
 * chain, build a new replica from the store (the suspended one may hold
 * promises and acceptances that never reached the disk), start group
 * commit over and pass the start gate again: no vote before a majority
 * confirmed this chain head and this start.  On a failure the suspended
 * state stays and health backs off. */
void node_storage_reopen(node *n)
{
    uint64_t now = node_now_ms();
    char err[1024] = "";
    host_drain_chain_sync(n);
    if (worker_busy(n->bg)) {
        health_fail(&n->health, "a chain fdatasync that does not return",
                    -EBUSY, now);
        return;
    }
    int rc = chain_settle_dir(n->data_dir);
    if (rc < 0) {
        health_fail(&n->health, "settling the chain and acceptor files", rc,
                    now);
        return;
    }
    rc = relock(n, err, sizeof err);
    if (rc < 0) {
        health_fail(&n->health, err, rc, now);
        return;
    }
    chain *old_chain = n->chain;
    acceptor_store *old_acc = n->acceptor;
    px_replica *old_px = n->px;
    uint64_t old_head = chain_head_index(old_chain);
    uint8_t old_hash[CHAIN_HASH_BYTES];
    memcpy(old_hash, chain_head_hash(old_chain), CHAIN_HASH_BYTES);
    acceptor_peer old_start = n->start, old_prev = n->prev_start;
    acceptor_peer old_peers[TRANSPORT_MAX_PEERS];
    memcpy(old_peers, n->peer_start, sizeof old_peers);
    char old_why[sizeof n->recovering_why];
    memcpy(old_why, n->recovering_why, sizeof old_why);
    n->chain = NULL;
    n->acceptor = NULL;
    n->px = NULL;

    rc = node_open_storage(n, err, sizeof err);
    if (rc == 0)
        rc = reopen_check_chain(n, old_chain, old_head, old_hash, err,
                                sizeof err);
    if (rc == 0)
        rc = host_replay(n, err, sizeof err);
    uint64_t head = n->chain ? chain_head_index(n->chain) : 0;
    if (rc == 0)
        rc = node_new_replica(n, err, sizeof err);
    if (rc == 0) {
        rc = syncer_reset(n->sync, n->acceptor);
        if (rc < 0)
            snprintf(err, sizeof err, "cannot restart the sync thread: %s",
                     strerror(-rc));
    }
    if (rc < 0) {
        if (n->px)
            px_destroy(n->px);
        if (n->acceptor)
            acceptor_close(n->acceptor);
        if (n->chain)
            chain_close(n->chain);
        n->chain = old_chain;
        n->acceptor = old_acc;
        n->px = old_px;
        n->start = old_start;
        n->prev_start = old_prev;
        memcpy(n->peer_start, old_peers, sizeof old_peers);
        memcpy(n->recovering_why, old_why, sizeof old_why);
        health_fail(&n->health, err[0] ? err : "reopening the storage", rc,
                    now);
        return;
    }
    px_destroy(old_px);
    acceptor_close(old_acc);
    chain_close(old_chain);

    /* nothing held waits for the old replica's persists any more */
    uint64_t dropped = n->held.dropped, superseded = n->held.superseded;
    outbox_free(&n->held);
    outbox_init(&n->held, NODE_MAX_HELD_MSGS);
    n->held.dropped = dropped;
    n->held.superseded = superseded;
    n->durable_persist_id = n->last_persist_issued = 0;
    n->compact_due = false;
    n->last_chain_sync_ms = now;
    n->next_tick_ms = 0;
    free(n->held_catchup);
    n->held_catchup = NULL;
    /* the start gate again (invariant 5), for this chain and this start */
    n->confirmed = false;
    n->abstaining = false;
    n->start_head = head;
    n->started_ms = n->last_wait_log_ms = now;
    for (uint32_t k = 0; k < TRANSPORT_MAX_PEERS; k++) {
        n->peer_holds_head[k] = n->peer_agrees[k] = false;
        n->peer_saw_start[k] = false;
        n->peer_chain_index[k] = 0;
        n->peer_chain_differs[k] = false;
    }
    n->fatal = 0;
    client_repropose(n->cl);   /* writes made at release: the new replica */
    reopen_log(n);
    health_recovered(&n->health, now);
    if (head < kv_applied_index(n->state))
        fprintf(stderr, "paxosfs: node %u: the chain on disk ends at block %"
                PRIu64 ", %" PRIu64 " blocks short of the state (never "
                "synced); they are appended again as the leader sends them\n",
                n->cfg.id, head, kv_applied_index(n->state) - head);
    if (n->recovering_why[0])
        fprintf(stderr, "paxosfs: node %u: recovering lost acceptor state "
                "(%s); casting no vote until recovered\n", n->cfg.id,
                n->recovering_why);
    integrity_gate_update(n);
    px_event first = { .type = PX_EV_TICK };
    node_step(n, &first);
}

