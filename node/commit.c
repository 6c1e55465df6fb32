/*
 * commit.c - group commit of the acceptor store, and the rule for what
 * may leave before it is durable.
 *
 *   px_step --output--> acceptor records buffered (syncer_note)
 *                       messages: sent now, or held in the outbox
 *   turn end: commit_flush -> one generation written, one fdatasync
 *             (inline, or on the sync thread while the loop goes on)
 *   fdatasync done: commit_collect -> held messages released,
 *             PX_EV_PERSISTED stepped for every persist it covered
 *
 * Invariants:
 *   1. A message that vouches for acceptor state (a promise, an accepted
 *      vote: outbox_vouches) never leaves before every persist issued
 *      before it is durable; PX_EV_PERSISTED is reported only after the
 *      fdatasync that covers it returned (DESIGN.md invariant 2).
 *   2. Messages leave in the order the replica produced them: once one is
 *      held, every later one is held behind it.
 *   3. Persist ids increase and syncs complete in order, so the newest id
 *      a sync reports covers every older one.
 */
#include "node_int.h"

#include <errno.h>
#include <poll.h>

void commit_send(node *n, const px_msg *m)
{
    if (n->net && !integrity_filter(n, m))
        transport_send(n->net, m);   /* a drop is counted by the transport */
}

static void send_held(void *arg, const px_msg *m)
{
    commit_send(arg, m);
}

/* Buffer the acceptor records of `out` and send or hold its messages. */
void commit_output(node *n, const px_output *out)
{
    int rc = 0;
    if (out->persist_promise)
        rc = acceptor_put_promise(n->acceptor, out->promise);
    for (uint32_t i = 0; rc == 0 && i < out->n_accepts; i++)
        rc = acceptor_put_accept(n->acceptor, &out->accepts[i]);
    if (rc < 0)
        node_storage_failed(n, "acceptor store write", rc);
    else if (out->persist_id && syncer_note(n->sync, out->persist_id) < 0)
        node_storage_failed(n, "bookkeeping", -ENOMEM);
    if (out->persist_id > n->last_persist_issued)
        n->last_persist_issued = out->persist_id;
    for (uint32_t i = 0; i < out->n_msgs; i++) {
        const px_msg *m = &out->msgs[i];
        uint64_t after = outbox_vouches(m) ? n->last_persist_issued : 0;
        /* invariants 1 and 2 */
        if (after <= n->durable_persist_id && (after == 0 || n->held.count == 0))
            commit_send(n, m);
        else
            (void)outbox_hold(&n->held, m, after);   /* a drop is counted */
    }
}

/* Report every output the finished fdatasyncs covered as persisted (which
 * may commit entries, answer parked requests and buffer new records). */
static void collect_durable(node *n)
{
    uint64_t ids[256];
    for (;;) {
        int k = syncer_take(n->sync, ids, 256);
        if (k < 0) {
            node_storage_failed(n, "acceptor fdatasync", k);
            return;
        }
        if (k == 0)
            return;
        /* invariant 3: the last one is the newest durable */
        if (ids[k - 1] > n->durable_persist_id)
            n->durable_persist_id = ids[k - 1];
        outbox_release(&n->held, n->durable_persist_id, send_held, n);
        for (int i = 0; i < k && !n->fatal; i++) {
            px_event ev = { .type = PX_EV_PERSISTED };
            ev.u.persist_id = ids[i];
            node_step(n, &ev);
        }
    }
}

/* Whether the loop runs the next fdatasync itself.  A follower whose
 * mount is idle has nothing to overlap with its sync: its ACCEPTED waits
 * for it anyway, and syncing inline saves two thread hand-offs (~70 us of
 * a ~250 us answer here).  A leader, or a follower serving its own mount,
 * keeps the sync thread: the loop must go on reading FUSE requests and
 * messages while the disk works, or every request waits for a sync. */
static bool sync_inline(node *n)
{
    if (n->mount && node_now_ms() - n->last_fuse_ms < NODE_MOUNT_IDLE_MS)
        return false;
    return px_role(n->px) != PX_LEADER && syncer_idle(n->sync);
}

/* Write the buffered records as a new generation and make it durable:
 * inline (sync_inline), or through the sync thread, which covers it with
 * its next fdatasync (group commit without a timer). */
void commit_flush(node *n)
{
    for (int round = 0; round < 64 && !n->fatal; round++) {
        if (!syncer_pending(n->sync))
            return;
        bool now = sync_inline(n);
        int rc = syncer_flush(n->sync, now);
        if (rc < 0) {
            node_storage_failed(n, "acceptor store write or fdatasync", rc);
            return;
        }
        if (!now)
            return;
        collect_durable(n);   /* may buffer more: another round */
    }
}

/* The sync thread finished an fdatasync. */
void commit_collect(node *n)
{
    syncer_ack_wake(n->sync);
    collect_durable(n);
    commit_flush(n);
}

/* Wait until everything written is durable and collected (shutdown). */
void commit_drain(node *n)
{
    for (int i = 0; i < 1000 && !n->fatal && !syncer_idle(n->sync); i++) {
        struct pollfd p = { .fd = syncer_wake_fd(n->sync), .events = POLLIN };
        if (poll(&p, 1, 100) > 0)
            commit_collect(n);
    }
    if (!n->fatal)
        collect_durable(n);
}
