/*
 * election.c - owns leader election: the pre-vote probe, phase 1 of
 * Multi-Paxos run once for every slot from the first unchosen one, and the
 * recovery of accepted values ("Paxos Made Moderately Complex", the
 * leader's scout; "Paxos Made Simple", section 3).
 *
 *   FOLLOWER --timeout--> PROBE --quorum of grants--> PREPARE
 *                           |  ^                        |  quorum of complete
 *                           |  +--timeout (new random)--+  promises (own one
 *                           |                           |  durable)
 *                           +-- higher ballot seen -----+--> FOLLOWER
 *                                                       v
 *                                              LEADER (leader.c)
 *
 * Invariants:
 *   1. A ballot is never reused: a new one has round max(promise, every
 *      round seen) + 1, and our own promise of it is persisted before any
 *      PREPARE with it leaves, so a restart (which resumes from the
 *      durable promise) continues strictly above it.  The round never
 *      overflows: rounds seen stay below PX_ROUND_MAX (msg.c), and with
 *      none left above them the replica does not campaign.
 *   2. The probe (PREPARE aux = 1) changes no state anywhere; only a
 *      quorum of grants lets a node raise its promise.  So a node cut off
 *      from a healthy leader, whose probes are ignored by sticky acceptors,
 *      never raises a ballot that would later depose that leader.
 *   3. Phase 1 completes only with complete promises (every piece, in
 *      order) from a quorum of voters, counting our own only once our
 *      promise is durable.
 *   4. Recovery, per slot s from commit + 1 to the highest slot reported:
 *      a value reported as chosen wins; else the highest-ballot accepted
 *      value (own included) is re-proposed unchanged (same time_ms, kind,
 *      bytes: a re-proposal must be the same value); else, if some acceptor
 *      reported s as committed but nobody supplied its value, we abort and
 *      catch up instead; else the hole gets a NOOP.  Slots reported beyond
 *      the ring also abort.  Aborting is always safe.
 *   5. Candidates back off with a fresh random timeout after each failed
 *      attempt, so two candidates do not duel forever.
 */
#include "px_int.h"

static void px_rec_clear(px_election *el)
{
    if (!el->rec || el->start_slot == 0)
        return;
    uint64_t n = el->max_slot >= el->start_slot
                     ? el->max_slot - el->start_slot + 1 : 0;
    if (n > el->rec_cap)
        n = el->rec_cap;
    for (uint64_t i = 0; i < n; i++) {
        px_cell *c = &el->rec[i];
        free(c->data);
        memset(c, 0, sizeof(*c));
    }
}

void px_election_reset(px_replica *r)
{
    px_rec_clear(&r->el);
    r->el.phase = PX_PHASE_NONE;
    r->el.start_slot = 0;
    r->el.max_slot = 0;
    r->el.max_commit = 0;
    r->el.overflow = false;
    r->el.transfer = false;
}

void px_step_down(px_replica *r)
{
    if (r->role == PX_LEADER) {
        px_reads_fail_leader(r);
        px_queue_splice(&r->q, PX_Q_PROPOSED, PX_Q_PENDING);
        r->leader_id = 0;
    }
    r->config_slot = 0;
    r->reelect = false;
    r->transfer_to = 0;
    px_election_reset(r);
    r->role = r->self_voter ? PX_FOLLOWER : PX_LEARNER;
    if (r->leader_id == r->self)
        r->leader_id = 0;
    px_reset_election_timer(r);
}

/* The next own ballot: one round above every round seen, or the null
 * ballot when none is left (a store written before rounds were bounded
 * may hold a promise at the very top; msg.c invariant 3 keeps anything
 * newer well below it). */
static px_ballot px_next_ballot(const px_replica *r)
{
    uint64_t round = r->max_round_seen;
    if (r->promise.round > round)
        round = r->promise.round;
    assert(round < PX_ROUND_MAX);
    if (round + 1 >= PX_ROUND_MAX)
        return (px_ballot){0, 0};
    return (px_ballot){round + 1, r->self};
}

/* No round is left for an own ballot: stay a follower (others may still
 * lead), count it, try again at the next timeout. */
static bool px_rounds_exhausted(px_replica *r)
{
    if (!px_ballot_is_null(px_next_ballot(r)))
        return false;
    r->stats.rounds_exhausted++;
    px_reset_election_timer(r);
    return true;
}

static void px_send_prepare(px_replica *r, bool only_missing)
{
    bool probe = r->el.phase == PX_PHASE_PROBE;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        if (!p->voter)
            continue;
        if (only_missing && (probe ? p->granted : p->promised))
            continue;
        int k = px_out_msg(r, PX_MSG_PREPARE, p->id, r->el.ballot);
        if (k < 0)
            return;
        r->out.msgs[k].aux = probe ? PX_PREPARE_PROBE
                             : r->el.transfer ? PX_PREPARE_TRANSFER : 0;
        if (!probe && r->el.transfer)
            r->out.msgs[k].aux_ballot = r->el.transfer_from;
        r->out.msgs[k].slot = probe ? r->commit + 1 : r->el.start_slot;
    }
    r->el.resend_ms = r->now_ms;
    /* each re-send waits twice as long: a PROMISE may carry large values,
     * and asking again every retry interval made the acceptors send them
     * again and again until the election timed out */
    if (!only_missing || r->el.resend_wait_ms < r->opt.retry_interval_ms)
        r->el.resend_wait_ms = r->opt.retry_interval_ms;
    else if (r->el.resend_wait_ms <
             PX_RESEND_BACKOFF_MAX * r->opt.retry_interval_ms)
        r->el.resend_wait_ms *= 2;
}

static void px_prepare_start(px_replica *r)
{
    if (!px_persist_room(r))
        return; /* retried from the tick */
    if (px_rounds_exhausted(r)) {
        px_step_down(r);
        return;
    }
    if (!r->el.rec) {
        r->el.rec = calloc(r->cap, sizeof(px_cell));
        if (!r->el.rec) {
            r->out.error = -ENOMEM;
            return;
        }
        r->el.rec_cap = r->cap;
    }
    px_rec_clear(&r->el);
    r->el.phase = PX_PHASE_PREPARE;
    r->el.ballot = px_next_ballot(r);
    px_raise_promise(r, r->el.ballot);
    r->ballot = r->el.ballot;
    r->el.start_slot = r->commit + 1;
    r->el.max_commit = r->commit;
    r->el.max_commit_from = 0;
    r->el.max_slot = r->commit;
    r->el.overflow = false;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        r->peers[i].promised = false;
        r->peers[i].covered = r->el.start_slot;
    }
    px_send_prepare(r, false);
    px_reset_election_timer(r);
    px_election_check(r);
}

/* Become a candidate (nothing sent yet); false when this replica may
 * not campaign (not a voter, recovering, no round left). */
static bool px_candidate_begin(px_replica *r)
{
    if (!r->self_voter || r->recovering || px_rounds_exhausted(r))
        return false;
    px_election_reset(r);
    if (r->leader_id) {
        r->leader_id = 0;
        px_forward_leader_changed(r);
    }
    r->role = PX_CANDIDATE;
    r->stats.elections_started++;
    px_reset_election_timer(r);
    return true;
}

void px_election_start(px_replica *r)
{
    if (!px_candidate_begin(r))
        return;
    if (r->members.n_voters == 1) {
        px_prepare_start(r);
        return;
    }
    r->el.phase = PX_PHASE_PROBE;
    r->el.ballot = px_next_ballot(r);
    for (uint32_t i = 0; i < r->n_peers; i++)
        r->peers[i].granted = false;
    px_send_prepare(r, false);
}

/* Phase 1 at once, without a probe, for a voter the leader handed over
 * to (members.c invariant 7): its PREPAREs name the leader's ballot, so
 * voters that follow that leader answer them despite stickiness. */
void px_election_start_transfer(px_replica *r, px_ballot from)
{
    if (!px_candidate_begin(r))
        return;
    r->el.transfer = true;
    r->el.transfer_from = from;
    px_prepare_start(r);
}

/* A leader runs phase 1 again in a new ballot (members.c invariant 6):
 * its followers answer it, stickiness binds them to it. */
void px_election_restart(px_replica *r)
{
    px_step_down(r);
    if (px_candidate_begin(r))
        px_prepare_start(r);
}

static void px_rec_put(px_replica *r, const px_entry *e, bool chosen)
{
    px_election *el = &r->el;
    uint64_t off = e->slot - el->start_slot;
    if (off >= el->rec_cap) {
        el->overflow = true;
        return;
    }
    if (e->slot > el->max_slot)
        el->max_slot = e->slot;
    px_cell *c = &el->rec[off];
    if (c->slot == e->slot &&
        (c->chosen || (!chosen && px_ballot_cmp(e->ballot, c->ballot) <= 0)))
        return;
    if (px_cell_set(c, e->len, e->data) < 0) {
        el->overflow = true; /* out of memory: abort this attempt */
        return;
    }
    c->slot = e->slot;
    c->ballot = e->ballot;
    c->time_ms = e->time_ms;
    c->kind = e->kind;
    c->chosen = chosen;
}

void px_on_promise(px_replica *r, const px_msg *m)
{
    px_election *el = &r->el;
    if (r->recovering) {
        px_recovery_on_promise(r, m);
        return;
    }
    px_peer *p = px_peer_find(r, m->from);
    if (el->phase == PX_PHASE_NONE || !p || !p->voter ||
        px_ballot_cmp(m->ballot, el->ballot) != 0) {
        r->stats.msgs_ignored++;
        return;
    }
    bool real = m->aux_ballot.round == 1 && m->aux_ballot.node_id == 0;
    if (!real) {
        if (el->phase == PX_PHASE_PROBE && m->aux == 1) {
            p->granted = true;
            px_election_check(r);
        }
        return;
    }
    if (el->phase != PX_PHASE_PREPARE)
        return;
    if (m->commit > el->max_commit) {
        el->max_commit = m->commit;
        el->max_commit_from = m->from;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const px_entry *e = &m->entries[i];
        if (e->slot <= r->commit || e->slot < el->start_slot)
            continue;
        bool chosen = e->slot <= m->commit;
        if (chosen && e->slot == r->commit + 1) {
            if (px_learn_chosen(r, e) < 0)
                el->overflow = true;
            /* a CONFIG learned here may have ended the election (this
             * replica no longer a voter: px_members_apply stepped down
             * and reset it); what follows belongs to no election */
            if (el->phase != PX_PHASE_PREPARE)
                return;
            continue;
        }
        px_rec_put(r, e, chosen);
    }
    /* a chosen CONFIG learned above rebuilt the peer array (members.c
     * px_members_apply): `p` may now be another peer's, or the sender no
     * voter any more.  Look it up again. */
    p = px_peer_find(r, m->from);
    if (!p || !p->voter) {
        px_election_check(r);
        return;
    }
    if (m->slot <= p->covered && p->covered != UINT64_MAX)
        p->covered = m->aux == UINT64_MAX ? UINT64_MAX
                     : (m->aux + 1 > p->covered ? m->aux + 1 : p->covered);
    if (p->covered == UINT64_MAX)
        p->promised = true;
    px_election_check(r);
}

static void px_election_abort(px_replica *r)
{
    uint32_t from = r->el.max_commit_from;
    px_step_down(r);
    if (from)
        px_request_catchup(r, from, true);
}

/* Pick the value for slot s (invariant 4).  Returns 1 with *src set, 0 for
 * a NOOP, -1 when the slot is chosen but its value unknown. */
static int px_recover_pick(px_replica *r, uint64_t s, const px_cell **src)
{
    px_election *el = &r->el;
    const px_cell *rc = NULL;
    if (s >= el->start_slot && s - el->start_slot < el->rec_cap &&
        el->rec[s - el->start_slot].slot == s)
        rc = &el->rec[s - el->start_slot];
    const px_cell *own = px_log_get(r, s);
    if (rc && rc->chosen) {
        *src = rc;
        return 1;
    }
    if (s <= el->max_commit)
        return -1;
    if (own && rc)
        *src = px_ballot_cmp(own->ballot, rc->ballot) >= 0 ? own : rc;
    else
        *src = own ? own : rc;
    return *src ? 1 : 0;
}

static void px_election_win(px_replica *r)
{
    px_election *el = &r->el;
    uint64_t hi = el->max_slot > r->log_max ? el->max_slot : r->log_max;
    if (el->max_commit > hi)
        hi = el->max_commit; /* chosen there even if nobody sent values */
    uint64_t start = r->commit + 1;
    if (el->overflow || (hi >= start && !px_log_fits(r, hi))) {
        px_election_abort(r);
        return;
    }
    /* members.c invariant 6: up to the first recovered CONFIG only */
    uint64_t config = 0;
    for (uint64_t s = start; s <= hi; s++) {
        const px_cell *src = NULL;
        int k = px_recover_pick(r, s, &src);
        if (k < 0) {
            px_election_abort(r);
            return;
        }
        if (k == 1 && src->kind == PX_ENTRY_CONFIG) {
            config = s;
            hi = s;
            break;
        }
    }
    px_become_leader(r);
    for (uint64_t s = start; s <= hi; s++) {
        const px_cell *src = NULL;
        int rc;
        if (px_recover_pick(r, s, &src) == 1)
            rc = px_propose_cell(r, s, src->time_ms, src->kind, src->len,
                                 src->data);
        else
            rc = px_propose_cell(r, s, r->wall_ms, PX_ENTRY_NOOP, 0, NULL);
        if (rc < 0) {
            r->out.error = rc;
            break;
        }
    }
    if (hi < start)
        px_propose_cell(r, start, r->wall_ms, PX_ENTRY_NOOP, 0, NULL);
    /* every slot that may have been chosen before us is <= hi (phase 1
     * heard a quorum): reads wait until all of them are committed, or a
     * write acknowledged under the old leader could be missed */
    r->read_fence_slot = r->next_slot - 1;
    if (config) {
        r->config_slot = config;
        r->reelect = true;
    }
    px_election_reset(r);
    px_leader_update_commit(r);
}

void px_election_check(px_replica *r)
{
    px_election *el = &r->el;
    uint32_t quorum = px_members_quorum(&r->members);
    uint32_t votes = 0;
    if (el->phase == PX_PHASE_PROBE) {
        votes = r->self_voter ? 1 : 0;
        for (uint32_t i = 0; i < r->n_peers; i++)
            votes += r->peers[i].voter && r->peers[i].granted;
        if (votes >= quorum)
            px_prepare_start(r);
        return;
    }
    if (el->phase != PX_PHASE_PREPARE)
        return;
    if (r->self_voter && px_ballot_cmp(r->durable_promise, el->ballot) == 0)
        votes = 1;
    for (uint32_t i = 0; i < r->n_peers; i++)
        votes += r->peers[i].voter && r->peers[i].promised;
    if (votes >= quorum)
        px_election_win(r);
}

/* Timers for a non-leader. */
void px_election_tick(px_replica *r)
{
    if (!r->self_voter || r->role == PX_LEADER || r->recovering)
        return;
    if (r->el.phase == PX_PHASE_NONE) {
        bool alone = r->members.n_voters == 1 && r->leader_id == 0;
        if (alone || r->now_ms >= r->election_deadline_ms)
            px_election_start(r);
        return;
    }
    if (r->now_ms >= r->election_deadline_ms) {
        px_election_start(r); /* back off: fresh random timeout */
        return;
    }
    if (r->now_ms - r->el.resend_ms >= r->el.resend_wait_ms) {
        if (r->el.phase == PX_PHASE_PREPARE && !px_persist_room(r))
            return;
        px_send_prepare(r, true);
    }
}
