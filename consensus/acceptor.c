/*
 * acceptor.c - owns the acceptor role ("Paxos Made Simple", section 2.2):
 * the promise, acceptance of values, and the follower's answers to the
 * leader's PREPARE, ACCEPT and HEARTBEAT messages.
 *
 * Invariants:
 *   1. The promise never decreases.  It is raised by a PREPARE above it,
 *      and by an ACCEPT or HEARTBEAT above it (a ballot that reached phase
 *      2 had a quorum of promises, so following it is a promise too).
 *      Every raise is persisted in the same output as the messages that
 *      depend on it; a message relying on a promise not yet reported
 *      durable re-persists it (idempotent for the host).
 *   2. A value is accepted only in a ballot >= the promise, and only into
 *      a slot above the commit index that fits the ring; one value per
 *      slot per ballot, so a repeated ACCEPT is a no-op.
 *   3. acc_durable is the highest slot such that every slot in
 *      (commit, acc_durable] holds a durable value accepted in the current
 *      promise (slots <= commit are chosen and count as held).  It resets
 *      to the commit index when the promise changes.  An ACCEPTED vouches
 *      for slots below aux = claim + 1 where the claim extends acc_durable
 *      over accepts already issued for persisting, by this output or an
 *      earlier one: the message leaves only once they are all durable
 *      (px.h: persists complete in issue order), so the leader never
 *      counts a vote that a crash could lose, and one ACCEPTED per group
 *      commit covers every ACCEPT that group answered.
 *   4. Leader stickiness ("Paxos Made Live" leases, simplified): a replica
 *      that heard from a live leader within election_timeout_min_ms, or is
 *      the leader, ignores PREPAREs (probes and real) from anyone else, so
 *      a node coming back from a partition cannot depose a healthy leader.
 *      Except: a PREPARE aux = 3 naming the ballot of the leader we follow
 *      comes from the voter that leader handed over to (it stepped down
 *      first; members.c invariant 7).
 *   5. Learners (non-voters) never promise; they still accept to keep the
 *      log, and their ACCEPTED only feeds the leader's view of them.
 *   6. A recovery PREPARE (recovery.c) is answered despite invariant 4,
 *      and only with a strictly higher promise: the recovering voter must
 *      know that every other voter moved above every ballot it knew.
 *   7. For lease_ms after it starts, a replica ignores PREPAREs like a
 *      sticky one (reads.c invariant 5): it forgot whom it followed.
 *   8. A leader deposed by a recovery PREPARE (invariant 6) campaigns at
 *      once, without a probe, in a ballot above the recovery's
 *      (px_election_restart): its followers still follow it or follow
 *      nobody, so they answer, and a phase 1 replaces an election timeout
 *      (300-600 ms of no commits, measured as the longest pause of writes
 *      while a wiped follower rejoined).  Campaigning is always safe; the
 *      recovering voter, whose ballot may now be below the leader's at
 *      the third voter, retries above it after a REJECT (recovery.c); its
 *      retry leaves for every other voter at once, so it usually reaches
 *      them before the deposed leader's next phase 1 does.
 *   9. A replica that granted follower leases (reads.c invariant 8)
 *      ignores every PREPARE but a recovery's until the last of them may
 *      have ended (fl_granted_until), hand-overs included: a quorum with
 *      it could otherwise commit what a lease holder still reading lacks.
 *      A recovery PREPARE does not elect anyone; the deposed leader
 *      campaigns again itself (invariant 8) and keeps its grants.
 *  10. acc_top is the highest slot accepted in the current promise (0
 *      after the promise changed): a lease holder's reads wait for it.
 */
#include "px_int.h"

static void px_ensure_promise_durable(px_replica *r)
{
    if (px_ballot_cmp(r->durable_promise, r->promise) < 0 &&
        !r->out.persist_promise)
        px_persist_promise(r);
}

static void px_send_reject(px_replica *r, const px_msg *m)
{
    int i = px_out_msg(r, PX_MSG_REJECT, m->from, m->ballot);
    if (i >= 0) {
        r->out.msgs[i].aux_ballot = r->promise;
        r->out.msgs[i].slot = m->slot;
    }
    r->stats.msgs_ignored++;
}

void px_raise_promise(px_replica *r, px_ballot b)
{
    if (px_ballot_cmp(b, r->promise) <= 0)
        return;
    /* every ballot comes from px_next_ballot or passed px_msg_valid and
     * px_msg_in_reach (msg.c invariant 3) */
    assert(b.round < PX_ROUND_MAX);
    r->promise = b;
    r->acc_top = 0;   /* invariant 10 */
    px_persist_promise(r);
    r->acc_durable = r->commit;
    r->last_claim = r->commit;
    if (b.round > r->max_round_seen)
        r->max_round_seen = b.round;
    if (b.node_id != r->self &&
        (r->role == PX_LEADER || r->role == PX_CANDIDATE))
        px_step_down(r);
}

void px_acc_advance(px_replica *r)
{
    if (r->acc_durable < r->commit)
        r->acc_durable = r->commit;
    for (;;) {
        px_cell *c = px_log_get(r, r->acc_durable + 1);
        if (!c || !c->durable || px_ballot_cmp(c->ballot, r->promise) != 0)
            break;
        r->acc_durable++;
    }
}

uint64_t px_acc_claim(px_replica *r)
{
    px_acc_advance(r);
    uint64_t s = r->acc_durable;
    for (;;) {
        px_cell *c = px_log_get(r, s + 1);
        if (!c || px_ballot_cmp(c->ballot, r->promise) != 0)
            break;
        if (!c->durable && !c->persist_id)
            break;
        s++;
    }
    return s;
}

/* Follow `leader` in ballot b (its ACCEPT or HEARTBEAT arrived). */
void px_follow(px_replica *r, uint32_t leader, px_ballot b)
{
    if (r->role == PX_LEADER || r->role == PX_CANDIDATE)
        px_step_down(r);
    bool changed = r->leader_id != leader;
    if (changed || px_ballot_cmp(r->ballot, b) != 0) {
        r->leader_id = leader;
        r->ballot = b;
        r->leader_commit = r->commit;
        r->leader_vote = 0;   /* learner.c invariant 6: that ballot's */
        if (changed) {
            r->stats.leader_changes++;
            px_forward_leader_changed(r);
        }
    }
    r->role = r->self_voter ? PX_FOLLOWER : PX_LEARNER;
    r->last_leader_contact_ms = r->now_ms;
    px_reset_election_timer(r);
}

static bool px_sticky(const px_replica *r, uint32_t from)
{
    if (r->role == PX_LEADER)
        return true;
    return r->leader_id != 0 && r->leader_id != from &&
           r->now_ms - r->last_leader_contact_ms <
               r->opt.election_timeout_min_ms;
}

/* Phase 1b: every value held at or above the prepared slot, in pieces. */
static void px_send_promise(px_replica *r, const px_msg *m)
{
    uint64_t start = m->slot ? m->slot : 1;
    uint64_t s = start > r->first_retained ? start : r->first_retained;
    uint64_t end = r->first_retained + r->cap - 1;
    if (r->log_max < end)
        end = r->log_max;
    int idx = px_out_msg(r, PX_MSG_PROMISE, m->from, m->ballot);
    if (idx < 0)
        return;
    r->out.msgs[idx].slot = start;
    r->out.msgs[idx].aux_ballot = (px_ballot){1, 0};
    uint32_t n = 0;
    uint64_t bytes = 0;
    for (; s <= end; s++) {
        px_cell *c = px_log_get(r, s);
        if (!c)
            continue;
        if (n == PX_PIECE_MAX_ENTRIES ||
            (n > 0 && bytes + c->len > PX_PIECE_MAX_BYTES)) {
            r->out.msgs[idx].aux = s - 1;
            idx = px_out_msg(r, PX_MSG_PROMISE, m->from, m->ballot);
            if (idx < 0)
                return;
            r->out.msgs[idx].slot = s;
            r->out.msgs[idx].aux_ballot = (px_ballot){1, 0};
            n = 0;
            bytes = 0;
        }
        if (px_out_entry(r, idx, c) < 0)
            return;
        n++;
        bytes += c->len;
    }
    r->out.msgs[idx].aux = UINT64_MAX;
}

/* The acceptor's side of a recovery round (recovery.c rule 2): answered
 * whatever leader we follow, with a promise only for a ballot strictly
 * above ours, never by a replica that is recovering itself.  A leader
 * that promises steps down and runs phase 1 again at once in a ballot
 * above the recovery's (invariant 8). */
static void px_on_recovery_prepare(px_replica *r, const px_msg *m)
{
    if (!r->self_voter || r->recovering ||
        !px_members_is_voter(&r->members, m->from)) {
        r->stats.msgs_ignored++;
        return;
    }
    if (px_ballot_cmp(m->ballot, r->promise) <= 0) {
        px_send_reject(r, m);
        return;
    }
    if (!px_persist_room(r)) {
        r->stats.msgs_ignored++;
        return;
    }
    bool was_leader = r->role == PX_LEADER;
    px_raise_promise(r, m->ballot);   /* a leader or candidate steps down */
    if (r->leader_id != 0) {
        r->leader_id = 0;   /* we no longer accept the old leader */
        px_forward_leader_changed(r);
    }
    px_reset_election_timer(r);
    px_ensure_promise_durable(r);
    px_send_promise(r, m);
    if (was_leader)
        px_election_restart(r);
}

void px_on_prepare(px_replica *r, const px_msg *m)
{
    if (m->aux == PX_PREPARE_RECOVERY) {
        px_on_recovery_prepare(r, m);
        return;
    }
    bool probe = m->aux == PX_PREPARE_PROBE;
    /* members.c invariant 7: the leader we follow handed over */
    bool handed_over = m->aux == PX_PREPARE_TRANSFER &&
                       r->role != PX_LEADER &&
                       px_ballot_cmp(m->aux_ballot, r->ballot) == 0;
    /* A non-voter answers only a candidate that committed more than it
     * did: it may be a voter already, promoted by a CONFIG it has not
     * learned (members.c invariant 8).  Promising is safe for any
     * acceptor (quorums are the proposer's to count); ignoring it would
     * leave a cluster whose other voters need its vote without a leader,
     * and it without the commit that makes it a voter. */
    if ((!r->self_voter && m->commit <= r->commit) ||
        (!handed_over && px_sticky(r, m->from)) ||
        r->now_ms < r->fl_granted_until) {   /* invariant 9 */
        r->stats.msgs_ignored++;
        return;
    }
    int cmp = px_ballot_cmp(m->ballot, r->promise);
    if (cmp < 0 || (probe && cmp == 0)) {
        px_send_reject(r, m);
        return;
    }
    if (r->now_ms < r->quiet_until_ms) {   /* invariant 7 */
        r->stats.msgs_ignored++;
        return;
    }
    if (probe) {
        int i = px_out_msg(r, PX_MSG_PROMISE, m->from, m->ballot);
        if (i >= 0)
            r->out.msgs[i].aux = 1;
        return;
    }
    if (cmp > 0) {
        if (!px_persist_room(r)) {
            r->stats.msgs_ignored++;
            return;
        }
        px_raise_promise(r, m->ballot);
        if ((r->role == PX_FOLLOWER || r->role == PX_LEARNER) &&
            r->leader_id != 0) {
            r->leader_id = 0; /* we no longer accept the old leader */
            px_forward_leader_changed(r);
        }
        px_reset_election_timer(r);
    }
    px_ensure_promise_durable(r);
    px_send_promise(r, m);
}

static void px_send_accepted(px_replica *r, uint32_t to, px_ballot b,
                             uint64_t hi)
{
    px_ensure_promise_durable(r);
    uint64_t claim = px_acc_claim(r);
    int i = px_out_msg(r, PX_MSG_ACCEPTED, to, b);
    if (i < 0)
        return;
    r->out.msgs[i].slot = hi > claim ? hi : claim;
    r->out.msgs[i].aux = claim + 1;
    if (claim > r->last_claim)
        r->last_claim = claim;
}

/* A leader's ACCEPT or HEARTBEAT: reject a ballot below our promise,
 * promise a higher one (if the persist queue has room), then follow the
 * sender.  False when the message must go no further. */
static bool px_admit_leader(px_replica *r, const px_msg *m)
{
    if (px_ballot_cmp(m->ballot, r->promise) < 0) {
        px_send_reject(r, m);
        return false;
    }
    if (px_ballot_cmp(m->ballot, r->promise) > 0) {
        if (!px_persist_room(r)) {
            r->stats.msgs_ignored++;
            return false;
        }
        px_raise_promise(r, m->ballot);
    }
    px_follow(r, m->from, m->ballot);
    return true;
}

void px_on_accept(px_replica *r, const px_msg *m)
{
    if (!px_admit_leader(r, m))
        return;
    uint64_t hi = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const px_entry *e = &m->entries[i];
        if (e->slot <= r->commit || !px_log_fits(r, e->slot))
            continue;
        px_cell *c = px_log_get(r, e->slot);
        if (c && px_ballot_cmp(c->ballot, m->ballot) == 0) {
            hi = e->slot;
            continue;
        }
        if (!px_persist_room(r))
            break;
        if (px_log_put(r, e->slot, m->ballot, e->time_ms, e->kind, e->len,
                       e->data, &c) < 0) {
            r->out.error = -ENOMEM;
            break;
        }
        px_persist_accept(r, c);
        hi = e->slot;
    }
    if (hi > r->acc_top)
        r->acc_top = hi;   /* invariant 10 */
    px_fl_take_grant(r, m);
    if (m->commit > r->leader_commit)
        r->leader_commit = m->commit;
    px_learn_from_leader(r);
    px_send_accepted(r, m->from, m->ballot, hi);
}

void px_on_heartbeat(px_replica *r, const px_msg *m)
{
    if (!px_admit_leader(r, m))
        return;
    px_fl_take_grant(r, m);
    if (m->commit > r->leader_commit)
        r->leader_commit = m->commit;
    px_learn_from_leader(r);
    int i = px_out_msg(r, PX_MSG_HEARTBEAT_ACK, m->from, m->ballot);
    if (i >= 0) {
        r->out.msgs[i].aux = m->aux;
        r->out.msgs[i].slot = r->commit;
    }
    /* vouch again for what we hold: covers ACCEPTEDs lost on the way */
    uint64_t claim = px_acc_claim(r);
    if (claim > r->commit && claim >= r->last_claim)
        px_send_accepted(r, m->from, m->ballot, claim);
}

/* The leader's commit index, no answer wanted: learn what it covers. */
void px_on_commit(px_replica *r, const px_msg *m)
{
    if (!px_admit_leader(r, m))
        return;
    px_fl_take_grant(r, m);
    if (m->commit > r->leader_commit)
        r->leader_commit = m->commit;
    px_learn_from_leader(r);
}

/* After PX_EV_PERSISTED: own acceptances became durable. */
void px_on_persisted_acceptor(px_replica *r)
{
    px_acc_advance(r);
    if (r->role == PX_LEADER) {
        px_leader_update_commit(r);
        px_leader_vote(r);   /* leader.c invariant 9 */
        return;
    }
    if (r->el.phase != PX_PHASE_NONE) {
        px_election_check(r);
        return;
    }
    if (r->leader_id && px_ballot_cmp(r->ballot, r->promise) == 0 &&
        r->acc_durable > r->last_claim) {
        int i = px_out_msg(r, PX_MSG_ACCEPTED, r->leader_id, r->ballot);
        if (i >= 0) {
            r->out.msgs[i].slot = r->acc_durable;
            r->out.msgs[i].aux = r->acc_durable + 1;
        }
        r->last_claim = r->acc_durable;
    }
    px_learn_leader_vote(r);   /* learner.c invariant 6 */
}
