/*
 * leader.c - owns phase 2 of Multi-Paxos at the leader ("Paxos Made
 * Moderately Complex", the commander; "Paxos Made Live", section 5):
 * batching client requests into slots, the pipelining window, ACCEPT
 * broadcast and re-send, the commit index, heartbeats and stepping down.
 *
 * Invariants:
 *   1. The leader proposes at most one value per slot in its ballot, in
 *      increasing slot order, every slot from leader_start_slot on; so a
 *      follower holding a slot's value in the leader's ballot holds THE
 *      value the leader proposed.
 *   2. New batches only while next_slot - 1 - commit < window_slots; a
 *      batch is cut as soon as a window slot is free (requests that waited
 *      meanwhile are group-committed together), never on a timer.
 *   3. Commit = the quorum-th highest vouched slot over the voters, own
 *      vote = acc_durable (own acceptance durable, PX_EV_PERSISTED seen);
 *      only slots proposed in our ballot or already chosen are vouched
 *      for, so a quorum-vouched slot is chosen ("Paxos Made Simple").
 *   4. The leader steps down when it sees a higher ballot (REJECT, or a
 *      PREPARE/ACCEPT/HEARTBEAT that raises its promise: acceptor.c), and
 *      when no quorum of voters was in contact for election_timeout_max_ms,
 *      so a deposed leader stops accepting work.
 *   5. Every entry a leader proposes carries time_ms = the event's wall_ms
 *      (NOOPs too; now_ms when the host gives none); re-proposals keep
 *      their original time.
 *   6. Followers learn the commit index from ACCEPT and HEARTBEAT, which
 *      always carry it; a commit neither carried goes out in an unanswered
 *      COMMIT message: at once to a follower that forwarded a request in
 *      a newly committed slot (its client waits), to the others after
 *      commit_notice_ms (under load the next ACCEPT carries it first, so
 *      a commit costs no extra message).
 *   7. Thrifty phase 2 (opt.thrifty): a new batch goes at once to every
 *      peer that forwarded a request in it (it waits for the entries
 *      anyway, and counts toward the quorum when it votes), then to the
 *      most caught-up voters (highest match, then lowest id) until a
 *      quorum with this leader is reached; every other peer gets all it lacks, with the
 *      commit, within heartbeat_interval_ms of the first batch it missed
 *      (lazy_due_ms), before any HEARTBEAT, and before a read it asked
 *      for is answered.  Safety does not depend on who gets an ACCEPT.
 *      Liveness does not either: a silent eager peer stops being the most
 *      caught up once a lazy one answers, and is replaced, so losing it
 *      delays commits by at most one lazy interval.  Skipped peers hold
 *      the same log, later, in a few large writes: their disks and CPUs
 *      stay off the commit path of every write (with 2 ms instead of a
 *      heartbeat interval they still synced every other write and nothing
 *      was gained).  Every ACCEPT to a peer starts past what it holds or
 *      was sent (sent, match), so its accepted slots stay contiguous and
 *      its ACCEPTED can claim them.
 *   8. Re-sends (a peer made no progress for resend_wait_ms) carry one
 *      piece from the first slot the peer lacks, and each one without
 *      progress doubles the wait (up to PX_RESEND_BACKOFF_MAX retry
 *      intervals); progress resets it.  A peer that is slow, not lost
 *      (a 4 MiB value takes longer than a retry interval to arrive,
 *      encrypted, and to be synced), used to get the value again every
 *      100 ms: the copies queued ahead of everything else, each was
 *      written and synced again, the peer fell further behind, and one
 *      4 MiB write left a 3-node cluster electing leaders for good.
 *   9. The leader's own vote (px_leader_vote): where a quorum is two
 *      voters (three in the configuration, no CONFIG of ours
 *      uncommitted, so every slot above the commit index lies under it)
 *      and it hands over to nobody, the leader sends a voter waiting
 *      for a request it forwarded an ACCEPTED of its own once its own
 *      acceptances are durable up to that request's slot: slot = aux - 1
 *      = x, every slot in (commit, x] accepted durably in its ballot.
 *      That voter's durable acceptances in the same ballot and this vote
 *      are a quorum: the slots up to both are chosen, and it commits them
 *      (learner.c px_on_leader_vote) without the leader's notice, one
 *      message sooner.  So the write may be acknowledged before the
 *      leader knows it committed:
 *      a. x is capped like the commit index (reads.c invariant 8a) by
 *         what every other follower lease holder vouched for;
 *      b. the leader's read points are at least vote_hi, the highest x
 *         it sent (px_leader_read_floor), and it grants no follower
 *         lease (whose commit index would be the floor) while vote_hi is
 *         above its commit index.
 *      A follower two slots behind on a 1-writer load went from 4 hops
 *      (FORWARD, ACCEPT, ACCEPTED, COMMIT) to 3.
 */
#include "px_int.h"

void px_become_leader(px_replica *r)
{
    bool changed = r->leader_id != r->self;
    r->role = PX_LEADER;
    r->leader_id = r->self;
    r->ballot = r->el.ballot;
    if (changed)
        r->stats.leader_changes++;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        p->match = 0;
        p->commit = 0;
        p->last_contact_ms = r->now_ms;
        p->last_progress_ms = r->now_ms;
        p->acked_round = 0;
        p->notify_slot = 0;
        p->commit_sent = 0;
        p->sent = 0;
        p->eager = false;
        p->vote_sent = 0;
    }
    r->vote_hi = 0;
    r->lazy_due_ms = 0;
    r->quorum_ok_ms = r->now_ms;
    r->next_heartbeat_ms = r->now_ms + r->opt.heartbeat_interval_ms;
    r->next_slot = r->commit + 1;
    r->leader_start_slot = r->commit + 1;
    r->read_fence_slot = r->commit + 1;
    r->leader_commit = r->commit;
    r->hb_confirmed = r->hb_round;
    r->lease_until_ms = 0;                  /* reads.c invariant 6 */
    r->lease_first_round = r->hb_round + 1;
    r->commit_notice_at_ms = 0;
    r->need_round = false;
    r->last_leader_contact_ms = r->now_ms;
    px_forward_leader_changed(r);
}

int px_propose_cell(px_replica *r, uint64_t slot, uint64_t time_ms,
                    uint8_t kind, uint32_t len, const uint8_t *data)
{
    px_cell *c;
    int rc = px_log_put(r, slot, r->ballot, time_ms, kind, len, data, &c);
    if (rc < 0)
        return rc;
    px_persist_accept(r, c);
    if (!r->bcast_lo)
        r->bcast_lo = slot;
    r->bcast_hi = slot;
    if (slot >= r->next_slot)
        r->next_slot = slot + 1;
    return 0;
}

/* Cut one batch from the head of the pending queue into `slot`. */
static int px_cut_batch(px_replica *r, uint64_t slot)
{
    px_queue *q = &r->q;
    uint64_t bytes = 4;
    uint32_t count = 0;
    for (int32_t i = q->head[PX_Q_PENDING];
         i >= 0 && count < r->opt.batch_max_requests; i = q->reqs[i].next) {
        uint64_t b = px_batch_req_bytes(q->reqs[i].len);
        if (count > 0 && (bytes + b > r->opt.batch_max_bytes ||
                          bytes + b > PX_MAX_VALUE_BYTES))
            break;
        bytes += b;
        count++;
    }
    px_cell *c;
    int rc = px_log_put(r, slot, r->ballot, r->wall_ms, PX_ENTRY_BATCH, 0,
                        NULL, &c);
    if (rc < 0)
        return rc;
    if ((rc = px_cell_set(c, (uint32_t)bytes, NULL)) < 0) {
        px_cell_release(c);
        return rc;
    }
    px_batch_put_header(c->data, count);
    uint32_t off = 4;
    for (uint32_t k = 0; k < count; k++) {
        int32_t i = q->head[PX_Q_PENDING];
        if (q->reqs[i].origin) {
            px_peer *p = px_peer_find(r, q->reqs[i].origin);
            if (p)
                p->notify_slot = slot;
        }
        const px_req *x = &q->reqs[i];
        px_request rq = { .client_id = x->client_id, .seq = x->seq,
                          .ack_seq = x->ack_seq, .len = x->len, .op = x->op };
        off += px_batch_put(c->data + off, &rq);
        px_queue_move(q, i, PX_Q_PROPOSED);
    }
    px_persist_accept(r, c);
    if (!r->bcast_lo)
        r->bcast_lo = slot;
    r->bcast_hi = slot;
    r->next_slot = slot + 1;
    return 0;
}

/* ACCEPTs of the slots [lo, hi] in pieces; at most `max_pieces` of them
 * (0: no bound).  Returns the highest slot covered. */
static uint64_t px_send_accepts(px_replica *r, const px_peer *p, uint64_t lo,
                                uint64_t hi, uint32_t max_pieces)
{
    int idx = -1;
    uint32_t n = 0, pieces = 0;
    uint64_t bytes = 0, last = lo - 1;
    for (uint64_t s = lo; s <= hi; s++) {
        px_cell *c = px_log_get(r, s);
        if (!c || px_ballot_cmp(c->ballot, r->ballot) != 0) {
            last = s;   /* nothing of ours to send there */
            continue;
        }
        if (idx < 0 || n == PX_PIECE_MAX_ENTRIES ||
            (n > 0 && bytes + c->len > PX_PIECE_MAX_BYTES)) {
            if (max_pieces && pieces == max_pieces)
                return last;
            pieces++;
            idx = px_out_msg(r, PX_MSG_ACCEPT, p->id, r->ballot);
            if (idx < 0)
                return last;
            n = 0;
            bytes = 0;
        }
        if (px_out_entry(r, idx, c) < 0)
            return last;
        n++;
        bytes += c->len;
        last = s;
    }
    return hi;
}

/* Invariant 7: mark the peers that get the new batch at once: those that
 * forwarded a request in it, then the most caught-up voters until a
 * quorum with this leader is reached. */
static void px_pick_eager(px_replica *r)
{
    uint32_t need = px_members_quorum(&r->members);
    if (r->self_voter && need > 0)
        need--;
    uint32_t have = 0;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        p->eager = !r->opt.thrifty || p->notify_slot >= r->bcast_lo ||
                   px_fl_peer_leased(r, p->id);   /* it holds commits */
        if (p->eager && p->voter)
            have++;
    }
    for (uint32_t k = have; r->opt.thrifty && k < need; k++) {
        px_peer *best = NULL;
        for (uint32_t i = 0; i < r->n_peers; i++) {
            px_peer *p = &r->peers[i];
            if (!p->voter || p->eager)
                continue;
            if (!best || p->match > best->match ||
                (p->match == best->match && p->id < best->id))
                best = p;
        }
        if (!best)
            break;
        best->eager = true;
    }
}

/* p holds neither a vouched nor a sent copy of `slot`. */
static bool px_peer_lacks(const px_peer *p, uint64_t slot)
{
    return p->sent < slot && p->match < slot;
}

/* Send p the slots [lo, hi], starting earlier if it lacks slots below lo
 * (invariant 7: what it accepts stays contiguous). */
static void px_send_from(px_replica *r, px_peer *p, uint64_t lo, uint64_t hi)
{
    uint64_t held = p->sent > p->match ? p->sent : p->match;
    if (held + 1 < lo)
        lo = held + 1;
    if (lo < r->leader_start_slot)
        lo = r->leader_start_slot;
    if (hi >= lo && hi - lo >= 4 * PX_PIECE_MAX_ENTRIES)
        lo = hi - 4 * PX_PIECE_MAX_ENTRIES + 1;   /* far behind: the retry
                                                      and catch-up paths */
    if (lo > hi)
        return;
    px_send_accepts(r, p, lo, hi, 0);
    if (hi > p->sent)
        p->sent = hi;
    if (p->commit_sent < r->commit)
        p->commit_sent = r->commit;
}

void px_leader_send_missing(px_replica *r, px_peer *p)
{
    if (r->role != PX_LEADER || r->next_slot <= 1)
        return;
    uint64_t hi = r->next_slot - 1;
    if (px_peer_lacks(p, hi))
        px_send_from(r, p, hi, hi);
}

/* Invariant 7: every peer gets what it lacks (due, or before a heartbeat). */
void px_leader_fill_lazy(px_replica *r)
{
    r->lazy_due_ms = 0;
    for (uint32_t i = 0; i < r->n_peers; i++)
        px_leader_send_missing(r, &r->peers[i]);
}

/* A HEARTBEAT of the current round to `p`, carrying the commit index. */
bool px_heartbeat_to(px_replica *r, px_peer *p)
{
    int k = px_out_msg(r, PX_MSG_HEARTBEAT, p->id, r->ballot);
    if (k < 0)
        return false;
    r->out.msgs[k].aux = r->hb_round;
    p->commit_sent = r->commit;
    return true;
}

static void px_broadcast_heartbeat(px_replica *r)
{
    px_leader_fill_lazy(r);
    px_round_start(r);   /* every broadcast is a round: renews the lease */
    for (uint32_t i = 0; i < r->n_peers; i++)
        if (!px_heartbeat_to(r, &r->peers[i]))
            return;
    r->next_heartbeat_ms = r->now_ms + r->opt.heartbeat_interval_ms;
}

/* Tell followers the commit index (invariant 6): one waiting for its
 * forwarded requests at once (unless our vote for them went out), the
 * others once commit_notice_ms passed
 * without an ACCEPT or HEARTBEAT carrying it.  A peer that lacks committed
 * entries (thrifty phase 2 skipped it) gets no bare COMMIT, which would
 * only make it ask for them: the entries at once if it waits for a
 * request it forwarded, else with the next lazy fill (no timer here). */
static void px_notify_commit(px_replica *r)
{
    bool behind = false;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        /* invariant 9: a voter we voted to knows the commit index up to
         * both our vote and what it vouched for: it committed that much
         * itself */
        uint64_t knows = p->vote_sent < p->match ? p->vote_sent : p->match;
        if (knows > r->commit)
            knows = r->commit;
        if (knows > p->commit_sent)
            p->commit_sent = knows;
        if (p->commit_sent >= r->commit)
            continue;
        if (px_peer_lacks(p, r->commit)) {
            if (p->notify_slot > p->commit_sent && p->notify_slot <= r->commit)
                px_leader_send_missing(r, p);
            continue;
        }
        behind = true;
    }
    if (!behind) {
        r->commit_notice_at_ms = 0;
        return;
    }
    if (!r->commit_notice_at_ms)
        r->commit_notice_at_ms = r->now_ms + r->opt.commit_notice_ms;
    bool all = r->now_ms >= r->commit_notice_at_ms;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        if (p->commit_sent >= r->commit)
            continue;
        /* one that got our vote for its slot commits it itself
         * (invariant 9): the notice can wait like anyone's */
        if (!all && (p->notify_slot <= p->commit_sent ||
                     p->notify_slot > r->commit ||
                     p->vote_sent >= p->notify_slot))
            continue;
        if (px_peer_lacks(p, r->commit))
            continue;   /* see above */
        if (px_out_msg(r, PX_MSG_COMMIT, p->id, r->ballot) < 0)
            return;
        p->commit_sent = r->commit;
    }
    if (all)
        r->commit_notice_at_ms = 0;
}

/* A checkpoint the host asked for (PX_EV_CHECKPOINT) goes into the next
 * free window slot, ahead of batches. */
void px_leader_checkpoint(px_replica *r)
{
    if (!r->checkpoint_pending || r->role != PX_LEADER)
        return;
    if (r->config_slot || r->transfer_to)
        return;   /* members.c invariants 5 and 7: after it commits */
    if (r->next_slot - 1 - r->commit >= r->opt.window_slots ||
        !px_log_fits(r, r->next_slot) || !px_persist_room(r))
        return;   /* next pump */
    uint8_t data[PX_CHECKPOINT_BYTES];
    int len = px_checkpoint_encode(&r->checkpoint, data, sizeof data);
    r->checkpoint_pending = false;
    PX_ASSERT(len == (int)PX_CHECKPOINT_BYTES);
    if (px_propose_cell(r, r->next_slot, r->wall_ms, PX_ENTRY_CHECKPOINT,
                        (uint32_t)len, data) < 0) {
        r->out.error = -ENOMEM;
        return;
    }
    r->stats.checkpoints_proposed++;
}

void px_leader_pump(px_replica *r)
{
    if (r->role != PX_LEADER) {
        r->checkpoint_pending = false;
        return;
    }
    px_leader_checkpoint(r);
    uint32_t guard = r->opt.window_slots;
    /* members.c invariants 5 and 7: nothing new above our CONFIG until it
     * commits, nor while handing over */
    while (guard-- > 0 && !r->config_slot && !r->transfer_to &&
           r->q.n[PX_Q_PENDING] > 0 &&
           r->next_slot - 1 - r->commit < r->opt.window_slots &&
           px_log_fits(r, r->next_slot) && px_persist_room(r)) {
        if (px_cut_batch(r, r->next_slot) < 0) {
            r->out.error = -ENOMEM;
            break;
        }
    }
    if (r->bcast_lo) {
        px_pick_eager(r);
        for (uint32_t i = 0; i < r->n_peers; i++) {
            px_peer *p = &r->peers[i];
            if (p->eager)
                px_send_from(r, p, r->bcast_lo, r->bcast_hi);
            else if (!r->lazy_due_ms)
                r->lazy_due_ms = r->now_ms + r->opt.heartbeat_interval_ms;
        }
        r->next_heartbeat_ms = r->now_ms + r->opt.heartbeat_interval_ms;
    }
    if (r->lazy_due_ms && r->now_ms >= r->lazy_due_ms)
        px_leader_fill_lazy(r);
    px_notify_commit(r);
    if (r->members.n_voters == 1)
        px_leader_update_commit(r);
}

void px_leader_update_commit(px_replica *r)
{
    if (r->role != PX_LEADER)
        return;
    px_acc_advance(r);
    uint64_t c = px_quorum_value(r, r->acc_durable, true);
    c = px_fl_commit_cap(r, c, 0);   /* reads.c invariant 8a */
    if (c >= r->next_slot)
        c = r->next_slot - 1;
    /* members.c invariant 5: nothing above an uncommitted CONFIG of ours */
    PX_ASSERT(!r->config_slot || r->next_slot - 1 == r->config_slot);
    if (c > r->commit) {
        px_commit_to(r, c);
        r->leader_commit = r->commit;
    }
}

/* The peer answering our ballot as leader (its last contact noted), or
 * NULL: the message is stale or not for a leader, and counted ignored. */
static px_peer *px_answering_peer(px_replica *r, const px_msg *m)
{
    px_peer *p = px_peer_find(r, m->from);
    if (r->role != PX_LEADER || !p ||
        px_ballot_cmp(m->ballot, r->ballot) != 0) {
        r->stats.msgs_ignored++;
        return NULL;
    }
    p->last_contact_ms = r->now_ms;
    px_fl_note_ask(r, p, m);   /* reads.c invariant 8 */
    return p;
}

/* Every slot <= `slot` (below next_slot) is vouched for by `p`. */
static void px_peer_vouched(px_replica *r, px_peer *p, uint64_t slot)
{
    if (slot >= r->next_slot)
        slot = r->next_slot - 1;
    if (slot > p->match) {
        p->match = slot;
        p->last_progress_ms = r->now_ms;
        p->resend_wait_ms = r->opt.retry_interval_ms;
    }
}

/* Invariant 9: our own vote to each voter waiting for a request it
 * forwarded, once our acceptances are durable up to its slot. */
void px_leader_vote(px_replica *r)
{
    if (r->role != PX_LEADER || !r->self_voter || r->config_slot ||
        r->transfer_to || px_members_quorum(&r->members) != 2)
        return;
    px_acc_advance(r);
    uint64_t x = r->acc_durable;
    if (x >= r->next_slot)
        x = r->next_slot - 1;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        if (!p->voter || p->notify_slot <= r->commit)
            continue;
        uint64_t v = px_fl_commit_cap(r, x, p->id);   /* 9a */
        if (v < p->notify_slot || v <= p->vote_sent)
            continue;
        int k = px_out_msg(r, PX_MSG_ACCEPTED, p->id, r->ballot);
        if (k < 0)
            return;
        r->out.msgs[k].slot = v;
        r->out.msgs[k].aux = v + 1;
        p->vote_sent = v;
        r->stats.votes_sent++;
        if (v > r->vote_hi)
            r->vote_hi = v;   /* 9b */
    }
}

void px_on_accepted(px_replica *r, const px_msg *m)
{
    if (r->role != PX_LEADER && px_on_leader_vote(r, m))
        return;
    px_peer *p = px_answering_peer(r, m);
    if (!p)
        return;
    px_peer_vouched(r, p, m->aux ? m->aux - 1 : 0);
    px_leader_update_commit(r);
    px_leader_vote(r);   /* a holder's ACCEPTED may lift the cap (9a) */
}

void px_on_heartbeat_ack(px_replica *r, const px_msg *m)
{
    px_peer *p = px_answering_peer(r, m);
    if (!p)
        return;
    p->commit = m->slot;
    if (m->aux > p->acked_round && m->aux <= r->hb_round)
        p->acked_round = m->aux;
    if (m->slot < r->next_slot)
        px_peer_vouched(r, p, m->slot); /* committed there: chosen */
    px_leader_update_commit(r);
}

void px_on_reject(px_replica *r, const px_msg *m)
{
    if (r->recovering) {
        px_recovery_on_reject(r, m);
        return;
    }
    if (r->role == PX_LEADER &&
        px_ballot_cmp(m->aux_ballot, r->ballot) > 0) {
        px_step_down(r);
        return;
    }
    if (r->role == PX_CANDIDATE && r->el.phase == PX_PHASE_PREPARE &&
        px_ballot_cmp(m->aux_ballot, r->el.ballot) > 0) {
        px_step_down(r);
        return;
    }
    r->stats.msgs_ignored++;
}

/* Timers of a leader: quorum contact, heartbeats, re-sends. */
void px_leader_tick(px_replica *r)
{
    if (r->role != PX_LEADER)
        return;
    uint32_t live = r->self_voter ? 1 : 0;
    for (uint32_t i = 0; i < r->n_peers; i++)
        if (r->peers[i].voter && r->now_ms - r->peers[i].last_contact_ms <
                                     r->opt.election_timeout_max_ms)
            live++;
    if (live >= px_members_quorum(&r->members))
        r->quorum_ok_ms = r->now_ms;
    else if (r->now_ms - r->quorum_ok_ms >= r->opt.election_timeout_max_ms) {
        px_step_down(r);
        return;
    }
    r->last_leader_contact_ms = r->now_ms;
    if (r->now_ms >= r->next_heartbeat_ms && r->n_peers)
        px_broadcast_heartbeat(r);
    else if (px_lease_renew_due(r))
        px_broadcast_heartbeat(r);   /* ACCEPTs postpone heartbeats: the
                                        lease needs a round now and then */
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        uint64_t lo = p->match + 1;
        if (lo < r->leader_start_slot)
            lo = r->leader_start_slot;
        if (p->resend_wait_ms < r->opt.retry_interval_ms)
            p->resend_wait_ms = r->opt.retry_interval_ms;
        if (lo >= r->next_slot ||
            r->now_ms - p->last_progress_ms < p->resend_wait_ms)
            continue;
        /* invariant 8: one piece, then wait twice as long */
        uint64_t hi = r->next_slot - 1;
        if (hi - lo >= PX_PIECE_MAX_ENTRIES)
            hi = lo + PX_PIECE_MAX_ENTRIES - 1;
        hi = px_send_accepts(r, p, lo, hi, 1);
        if (hi > p->sent)
            p->sent = hi;
        p->last_progress_ms = r->now_ms;
        if (p->resend_wait_ms < PX_RESEND_BACKOFF_MAX * r->opt.retry_interval_ms)
            p->resend_wait_ms *= 2;
    }
    px_transfer_tick(r);
}
