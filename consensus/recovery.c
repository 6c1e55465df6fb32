/*
 * recovery.c - owns the recovery of a replica whose acceptor state may be
 * incomplete: promises or accepted values it once made durable and no
 * longer holds (its host found the acceptor store deleted, emptied,
 * truncated or damaged, or the backing directory restored from an older
 * copy; px_begin_recovery, px_restore.recovering).  Such an acceptor must
 * not vote: a promise it forgot lets it accept below a ballot that a
 * phase 1 already counted it for, and an accepted value it forgot may be
 * chosen with its vote while a later phase 1 that asks it hears nothing of
 * it ("Paxos Made Live", section 5.1, "disk corruption": the replica
 * rejoins as a non-voting member first).
 *
 *   recovering:  START --every other voter sent--> PREPARE
 *                  ^   a recovery PREPARE(b)          |  a voter's promise is
 *                  |                                  |  higher than b: REJECT
 *                  +----------- retry higher ---------+
 *                                                     |  every other voter
 *                                                     v  promised b
 *                                                   WAIT --commit >= rec_slot-->
 *                                                                 voting again
 *
 * The rule (docs/design.md, "Lost acceptor state"), with F the recovering
 * replica:
 *   1. F casts no vote while recovering: px_out_msg drops every PROMISE,
 *      ACCEPTED, REJECT and HEARTBEAT_ACK it builds (px_is_vote); it never
 *      campaigns and never leads.  It still follows leaders, accepts and
 *      persists their values and learns commits, like any follower.
 *   2. F picks a ballot b above every round it has seen or promised and
 *      sends PREPARE(b, aux = PX_PREPARE_RECOVERY, slot = commit + 1) to
 *      every other voter.  A voter that is not itself recovering answers
 *      whatever leader it follows (stickiness does not apply): if b is
 *      strictly above its promise it promises b durably and sends its
 *      accepted values from that slot on and its commit index, as for a
 *      real phase 1; otherwise it rejects and F retries above the promise
 *      the REJECT reports.  A leader or candidate that promises b steps
 *      down (acceptor.c invariant 1), so the voters elect a leader above b
 *      among themselves.
 *   3. Once EVERY other voter has promised b (complete promises), F raises
 *      its own promise to b and sets rec_slot to the highest slot any of
 *      them reported, accepted or committed.
 *   4. F votes again once its commit index reaches rec_slot.
 *
 * Why this is safe (every other voter, not a majority, is needed):
 *   - A ballot F promised before losing its state was made by a candidate
 *     C that promised it durably first (election.c invariant 1; if C was F
 *     itself, by the quorum that promised F's ballot, which has a member
 *     other than F).  C is one of the other voters and raised its promise
 *     strictly to b, so b is above every ballot F may have promised, and F
 *     (promise >= b) never again accepts below one.  A majority would not
 *     do: C may be the one voter F does not hear from, still leading with
 *     F's forgotten promise in its phase 1.
 *   - A value F accepted in ballot b' < b before losing its state can only
 *     be chosen with the votes of other voters that accepted it in b'.
 *     Each of them accepted it before promising b (after that it rejects
 *     b'), so it reported that slot, or a commit index at or above it,
 *     and rec_slot covers it.  By the time F votes, its commit index
 *     covers the slot: F knows the chosen value, and a candidate that asks
 *     F learns that the slot is chosen (election.c invariant 4) instead of
 *     trusting F's silence about it.
 *   - Messages of F's earlier life still in flight (an ACCEPT it sent as
 *     leader in some b' < b) are rejected by every voter that promised b.
 *   - With a single voter (F alone) nothing can be learned from anyone:
 *     the round is complete at once and F goes on with what it has.
 *
 * Invariants:
 *   1. recovering => no vote leaves (px_out_msg) and role != LEADER,
 *      CANDIDATE.
 *   2. rec_slot is meaningful only in WAIT; recovering ends only from WAIT
 *      with commit >= rec_slot (px_recovery_check).
 *   3. A round counts only complete promises for rec_ballot; a REJECT
 *      above rec_ballot, or a voter that answers nothing, never completes
 *      it (the round is re-sent every retry_interval_ms, to the voters
 *      still missing, and restarted higher after a REJECT).
 */
#include "px_int.h"

#include <assert.h>

bool px_is_vote(uint8_t type)
{
    return type == PX_MSG_PROMISE || type == PX_MSG_ACCEPTED ||
           type == PX_MSG_REJECT || type == PX_MSG_HEARTBEAT_ACK;
}

static uint32_t px_rec_others(const px_replica *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_peers; i++)
        n += r->peers[i].voter;
    return n;
}

static uint32_t px_rec_promised(const px_replica *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_peers; i++)
        n += r->peers[i].voter && r->peers[i].rec_promised;
    return n;
}

static void px_rec_send(px_replica *r, bool only_missing)
{
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        if (!p->voter || (only_missing && p->rec_promised))
            continue;
        int k = px_out_msg(r, PX_MSG_PREPARE, p->id, r->rec_ballot);
        if (k < 0)
            return;
        r->out.msgs[k].aux = PX_PREPARE_RECOVERY;
        r->out.msgs[k].slot = r->rec_start;
    }
    r->rec_sent_ms = r->now_ms;
}

/* Rule 3: every other voter promised rec_ballot. */
static void px_rec_complete(px_replica *r)
{
    if (!px_persist_room(r))
        return;   /* retried from the tick */
    px_raise_promise(r, r->rec_ballot);
    if (r->rec_slot < r->commit)
        r->rec_slot = r->commit;
    r->rec_phase = PX_REC_WAIT;
}

static void px_rec_start(px_replica *r)
{
    uint64_t round = r->max_round_seen;
    if (r->promise.round > round)
        round = r->promise.round;
    r->rec_ballot = (px_ballot){round + 1, r->self};
    if (r->rec_ballot.round > r->max_round_seen)
        r->max_round_seen = r->rec_ballot.round;
    r->rec_start = r->commit + 1;
    r->rec_slot = r->commit;
    r->rec_phase = PX_REC_PREPARE;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        r->peers[i].rec_promised = false;
        r->peers[i].rec_covered = r->rec_start;
    }
    px_rec_send(r, false);
    if (px_rec_promised(r) == px_rec_others(r))
        px_rec_complete(r);   /* no other voter: nobody to ask */
}

void px_begin_recovery(px_replica *r)
{
    if (!r || r->recovering)
        return;
    if (r->role == PX_LEADER || r->role == PX_CANDIDATE)
        px_step_down(r);
    r->recovering = true;
    r->rec_phase = PX_REC_START;
    r->rec_sent_ms = 0;
    r->rec_slot = 0;
}

bool px_recovering(const px_replica *r)
{
    return r && r->recovering;
}

void px_recovery_tick(px_replica *r)
{
    if (!r->recovering)
        return;
    bool due = r->rec_sent_ms == 0 ||
               r->now_ms - r->rec_sent_ms >= r->opt.retry_interval_ms;
    switch (r->rec_phase) {
    case PX_REC_START:
        if (due)
            px_rec_start(r);
        break;
    case PX_REC_PREPARE:
        if (px_rec_promised(r) == px_rec_others(r))
            px_rec_complete(r);
        else if (due)
            px_rec_send(r, true);
        break;
    default:
        break;
    }
}

void px_recovery_on_promise(px_replica *r, const px_msg *m)
{
    px_peer *p = px_peer_find(r, m->from);
    bool real = m->aux_ballot.round == 1 && m->aux_ballot.node_id == 0;
    if (!r->recovering || r->rec_phase != PX_REC_PREPARE || !p ||
        !p->voter || !real || px_ballot_cmp(m->ballot, r->rec_ballot) != 0) {
        r->stats.msgs_ignored++;
        return;
    }
    if (m->commit > r->rec_slot)
        r->rec_slot = m->commit;
    for (uint32_t i = 0; i < m->n_entries; i++)
        if (m->entries[i].slot > r->rec_slot)
            r->rec_slot = m->entries[i].slot;
    /* pieces arrive in order; a lost one is asked again by a re-send */
    if (m->slot <= p->rec_covered && p->rec_covered != UINT64_MAX)
        p->rec_covered = m->aux == UINT64_MAX
                             ? UINT64_MAX
                             : (m->aux + 1 > p->rec_covered ? m->aux + 1
                                                            : p->rec_covered);
    if (p->rec_covered == UINT64_MAX)
        p->rec_promised = true;
    if (px_rec_promised(r) == px_rec_others(r))
        px_rec_complete(r);
}

void px_recovery_on_reject(px_replica *r, const px_msg *m)
{
    if (!r->recovering || r->rec_phase != PX_REC_PREPARE ||
        px_ballot_cmp(m->ballot, r->rec_ballot) != 0 ||
        px_ballot_cmp(m->aux_ballot, r->rec_ballot) < 0) {
        r->stats.msgs_ignored++;
        return;
    }
    /* a voter promised at least our ballot: start again above it (the
     * round it reported is in max_round_seen), after a retry interval */
    r->rec_phase = PX_REC_START;
    r->rec_sent_ms = r->now_ms ? r->now_ms : 1;
}

/* Rule 4, and invariant 2 (invariant 1 checked). */
void px_recovery_check(px_replica *r)
{
    assert(!r->recovering ||
           (r->role != PX_LEADER && r->role != PX_CANDIDATE));
    if (!r->recovering || r->rec_phase != PX_REC_WAIT ||
        r->commit < r->rec_slot)
        return;
    r->recovering = false;
    r->out.recovered = true;
    px_reset_election_timer(r);
}
