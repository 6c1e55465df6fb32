/*
 * reopen.c - a node whose storage failed (loop.c invariant 2) takes part
 * again without a restart, once net/health.c's probe passes: the host
 * settles and re-verifies its files as on start and builds a new replica
 * from the durable state (host_reopen: the suspended one may hold
 * promises and acceptances that never reached the disk; group commit
 * starts over), and the start gate (integrity.c invariant 1) is passed
 * again before the node votes.  The key-value state never goes back:
 * what a failed disk lost from the chain comes again from the leader and
 * is appended without being applied twice (host.h invariant 3).  A
 * reopen that finds the chain damaged (the disk lost blocks this node had
 * made durable, or changed them) hands it to the repair (repair.c): the
 * damaged segments and the acceptor log go aside, the next reopen starts
 * recovering, and the blocks come again from the peers.
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

/* The store reopened knows fewer starts than this run had (its log was
 * moved aside): record the last start and the peers' ones again. */
static int carry_starts(node *n, const acceptor_peer *start)
{
    acceptor_info info;
    acceptor_get_info(n->acceptor, &info);
    if (info.incarnation >= start->counter)
        return 0;
    int rc = acceptor_put_incarnation(n->acceptor, start->counter,
                                      start->nonce);
    for (uint32_t k = 0; rc == 0 && k < n->cfg.n_peers; k++) {
        if (n->cfg.peers[k].id == n->cfg.id || n->peer_start[k].counter == 0)
            continue;
        acceptor_peer rec = n->peer_start[k];
        rec.id = n->cfg.peers[k].id;
        rc = acceptor_put_peer(n->acceptor, &rec);
    }
    return rc == -ENOSPC ? 0 : rc;
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
    int rc = relock(n, err, sizeof err);
    if (rc < 0) {
        health_fail(&n->health, err, rc, now);
        return;
    }
    rc = repair_before_reopen(n);   /* damaged files aside (repair.c) */
    if (rc < 0) {
        health_fail(&n->health, "moving damaged files aside", rc, now);
        return;
    }
    /* this node's starts and its peers' as it saw them: an acceptor log
     * moved aside (repair.c) must not make the next start look like an
     * older one (integrity.c invariant 1) */
    acceptor_peer start = n->start;
    char why[HOST_WHY_BYTES];
    rc = host_reopen(n->host, n->recovering_why[0] != '\0',
                     node_random_u64(), why, err, sizeof err);
    if (rc < 0) {
        /* the disk works but lost or changed blocks this node had made
         * durable (a disk that died loses what it had not written): a
         * damaged chain, repaired from the peers like one found while
         * running (repair.c); the next reopen moves it aside */
        host_open_report rep;
        host_get_open_report(n->host, &rep);
        if (rc == -EBADMSG && rep.chain_damaged)
            repair_found_at_reopen(n, &rep.chain_damage);
        health_fail(&n->health, err[0] ? err : "reopening the storage", rc,
                    now);
        return;
    }
    n->chain = host_chain(n->host);
    n->acceptor = host_acceptor(n->host);
    n->px = host_replica(n->host);
    n->state = host_state(n->host);   /* another one after a reset */
    n->fatal = 0;
    if (why[0])
        integrity_begin_recovery(n, why);
    rc = carry_starts(n, &start);
    if (rc < 0)
        snprintf(err, sizeof err, "cannot write the acceptor store in %s: "
                 "%s", n->data_dir, strerror(-rc));
    else
        rc = node_record_start(n, err, sizeof err);
    if (rc < 0) {
        /* the new stores cannot be written either: failed again */
        host_mark_failed(n->host, rc);
        n->fatal = rc;
        health_fail(&n->health, err, rc, now);
        return;
    }
    uint64_t head = chain_head_index(n->chain);
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
    client_repropose(n->cl);   /* writes made at release: the new replica */
    reopen_log(n);
    health_recovered(&n->health, now);
    if (n->recovering_why[0])
        fprintf(stderr, "paxosfs: node %u: recovering lost acceptor state "
                "(%s); casting no vote until recovered\n", n->cfg.id,
                n->recovering_why);
    repair_after_reopen(n);
    integrity_gate_update(n);
    px_event first = { .type = PX_EV_TICK };
    node_step(n, &first);
}
