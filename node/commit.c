/*
 * commit.c - group commit of the acceptor store, and the rule for what
 * may leave before it is durable (the host's side of host.h
 * invariant 1).
 *
 *   px_step --output--> acceptor records buffered (syncer_note)
 *                       messages: sent now, or held in the outbox
 *   turn end: commit_flush -> one generation written, one fdatasync
 *             (inline, or started on the sync thread / by the driver)
 *   fdatasync done: commit_collect -> held messages released,
 *             PX_EV_PERSISTED stepped for every persist it covered
 *
 * Invariants:
 *   1. A message that vouches for acceptor state (a promise, an accepted
 *      vote: outbox_vouches) never leaves before every persist issued
 *      before it is durable; PX_EV_PERSISTED is reported only after the
 *      fdatasync that covers it returned (DESIGN.md invariant 2).
 *   2. Messages leave in the order the replica produced them: once one is
 *      held, every later one is held behind it.  Except a HEARTBEAT_ACK:
 *      it vouches only for the promise of the ballot it echoes (and the
 *      commit index, which names chosen values), so it waits only for the
 *      newest persist that raised the promise, and once that is durable it
 *      leaves at once, past ACCEPTEDs held for their fdatasync: a leader's
 *      read lease round no longer waits for a follower's disk.
 *   3. Persist ids increase and syncs complete in order, so the newest id
 *      a sync reports covers every older one.
 */
#include "host_int.h"

#include <errno.h>
#include <poll.h>

#include "../base/check.h"

static void send_held(void *arg, const px_msg *m)
{
    host *h = arg;
    h->e.send(h->e.arg, m);
}

/* Buffer the acceptor records of `out` and send or hold its messages. */
void commit_output(host *h, const px_output *out)
{
    int rc = 0;
    if (out->persist_promise)
        rc = acceptor_put_promise(h->acceptor, out->promise);
    for (uint32_t i = 0; rc == 0 && i < out->n_accepts; i++)
        rc = acceptor_put_accept(h->acceptor, &out->accepts[i]);
    if (rc < 0)
        host_fail(h, "acceptor store write", rc);
    else if (out->persist_id && syncer_note(h->sync, out->persist_id) < 0)
        host_fail(h, "bookkeeping", -ENOMEM);
    if (out->persist_id > h->last_persist_issued)
        h->last_persist_issued = out->persist_id;
    if (out->persist_promise) {
        CHECK(out->persist_id);   /* px.h: a promise to persist has an id */
        h->last_promise_issued = out->persist_id;
    }
    for (uint32_t i = 0; i < out->n_msgs; i++) {
        const px_msg *m = &out->msgs[i];
        bool ack = m->type == PX_MSG_HEARTBEAT_ACK;
        uint64_t after = !outbox_vouches(m) ? 0
                         : ack ? h->last_promise_issued : h->last_persist_issued;
        /* invariants 1 and 2 */
        if (after <= h->durable_persist_id &&
            (after == 0 || ack || h->held.count == 0))
            h->e.send(h->e.arg, m);
        else
            (void)outbox_hold(&h->held, m, after);   /* a drop is counted */
    }
}

/* Report every output the finished fdatasyncs covered as persisted (which
 * may commit entries, answer parked requests and buffer new records). */
static void collect_durable(host *h)
{
    uint64_t ids[256];
    for (;;) {
        int k = syncer_take(h->sync, ids, 256);
        if (k < 0) {
            host_fail(h, "acceptor fdatasync", k);
            return;
        }
        if (k == 0)
            return;
        /* invariant 3: the last one is the newest durable */
        if (ids[k - 1] > h->durable_persist_id)
            h->durable_persist_id = ids[k - 1];
        outbox_release(&h->held, h->durable_persist_id, send_held, h);
        for (int i = 0; i < k && !h->fatal; i++) {
            px_event ev = { .type = PX_EV_PERSISTED };
            ev.u.persist_id = ids[i];
            host_step(h, &ev);
        }
    }
}

/* Whether the next fdatasync runs right here.  A follower that serves
 * no requests has nothing to overlap with its sync: its ACCEPTED waits
 * for it anyway, and syncing inline saves two thread hand-offs (~70 us
 * of a ~250 us answer here).  A leader, or a follower serving requests,
 * keeps the sync off this thread: it must go on reading requests and
 * messages while the disk works, or every request waits for a sync. */
static bool sync_inline(host *h)
{
    if (h->e.serving && h->e.serving(h->e.arg))
        return false;
    return px_role(h->px) != PX_LEADER && syncer_idle(h->sync);
}

/* Write the buffered records as a new generation and make it durable:
 * inline (sync_inline), or through the sync thread, which covers it with
 * its next fdatasync (group commit without a timer). */
void commit_flush(host *h)
{
    for (int round = 0; round < 64 && !h->fatal; round++) {
        if (!syncer_pending(h->sync))
            return;
        bool now = sync_inline(h);
        int rc = syncer_flush(h->sync, now);
        if (rc < 0) {
            host_fail(h, "acceptor store write or fdatasync", rc);
            return;
        }
        if (!now)
            return;
        collect_durable(h);   /* may buffer more: another round */
    }
}

/* An fdatasync of the sync thread (or the driver) finished. */
void commit_collect(host *h)
{
    syncer_ack_wake(h->sync);
    collect_durable(h);
    commit_flush(h);
}

/* Wait until everything written is durable and collected (shutdown). */
void commit_drain(host *h)
{
    int fd = syncer_wake_fd(h->sync);
    for (int i = 0; fd >= 0 && i < 1000 && !h->fatal && !syncer_idle(h->sync);
         i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) > 0)
            commit_collect(h);
    }
    if (!h->fatal)
        collect_durable(h);
}
