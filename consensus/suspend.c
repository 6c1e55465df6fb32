/*
 * suspend.c - owns the suspended mode (px_suspend): a replica whose host
 * can no longer persist.  Every vote, promise and acceptance a replica
 * makes must be durable before anything that relies on it leaves; a host
 * whose fdatasync failed, whose disk is full or who has no descriptor
 * left can make nothing durable, so the replica must stop taking part:
 *
 *   running --px_suspend--> suspend requested --next px_step--> suspended
 *                                                (settle: step down, fail
 *                                                 local requests and reads)
 *
 * A suspended replica is a dead end: the host replaces it with a new one
 * built from its storage (px_create) once that works again, because this
 * one's memory may hold promises and accepted values whose persist never
 * completed.  A leader that stops heartbeating lets the followers' election
 * timers run out, so the cluster elects a new leader within an election
 * timeout; a follower that stops answering is one vote fewer.
 *
 * Invariants:
 *   1. suspended => role is FOLLOWER or LEARNER and leader_id is 0 once
 *      settled, and no output carries a message, a persist step or a
 *      committed entry (px_out_msg refuses messages; px_step checks the
 *      rest before publishing).
 *   2. Every request and read submitted here is answered exactly once:
 *      those queued at suspension by the settling step, later ones by the
 *      step that submits them (-EIO).  Requests forwarded to us by peers
 *      are dropped; their origins re-forward them to the next leader.
 *   3. Messages received are counted (msgs_received, msgs_suspended) and
 *      change nothing: no promise rises, no value is accepted or learned.
 */
#include "px_int.h"

void px_suspend(px_replica *r)
{
    if (!r || r->suspended)
        return;
    r->suspended = true;
    r->suspend_settled = false;
}

bool px_suspended(const px_replica *r)
{
    return r && r->suspended;
}

/* The first step after px_suspend: let go of leadership, candidacy, the
 * leader we followed, and everything queued here. */
static void px_suspend_settle(px_replica *r)
{
    px_reads_fail_all(r, -EIO);
    if (r->role == PX_LEADER || r->role == PX_CANDIDATE)
        px_step_down(r);
    px_election_reset(r);
    r->leader_id = 0;
    px_queue *q = &r->q;
    for (uint32_t i = 0; i < q->cap && q->count; i++) {
        px_req *x = &q->reqs[i];
        if (x->list == PX_Q_FREE)
            continue;
        if (!x->origin)
            px_out_failed(r, x->client_id, x->seq, -EIO);
        px_queue_remove(q, (int32_t)i);
    }
    r->suspend_settled = true;
    PX_ASSERT(r->role != PX_LEADER && r->role != PX_CANDIDATE);
    PX_ASSERT(r->q.count == 0);
}

void px_suspended_step(px_replica *r, const px_event *ev)
{
    if (!r->suspend_settled)
        px_suspend_settle(r);
    switch (ev->type) {
    case PX_EV_RECEIVE:
        r->stats.msgs_received++;
        r->stats.msgs_suspended++;
        break;
    case PX_EV_PROPOSE:
        for (uint32_t i = 0; i < ev->u.propose.n_requests; i++)
            px_out_failed(r, ev->u.propose.requests[i].client_id,
                          ev->u.propose.requests[i].seq, -EIO);
        break;
    case PX_EV_READ_INDEX:
        px_out_read(r, ev->u.read_token, 0, -EIO);
        break;
    default:
        /* TICK, PERSISTED (nothing waits for it any more) and
         * SNAPSHOT_INSTALLED change nothing */
        break;
    }
}
