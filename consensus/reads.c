/*
 * reads.c - owns linearizable reads: a read index confirmed by a quorum
 * round, and a read lease that lets a leader skip the round while a
 * recent round holds ("Paxos Made Live" section 5.2's master leases).
 *
 *   leader:     READ_INDEX -> queued with round = hb_round + 1
 *               -> HEARTBEAT(aux = round) to all -> quorum echoes round
 *               -> ready at index = commit (once an entry of our own
 *                  ballot is committed)
 *   non-leader: READ_INDEX -> FORWARD(n_requests = 0, aux = token) to the
 *               leader, re-sent every retry_interval_ms -> leader answers
 *               FORWARD(aux = token, aux_ballot = its ballot, slot = index)
 *               -> ready; no answer by the deadline -> -EAGAIN.
 *
 * Invariants:
 *   1. A read is released only after a heartbeat round sent after it
 *      arrived was echoed by a quorum of voters in our ballot: no other
 *      leader can have committed anything we do not know of by then.
 *   2. A new leader serves no read before its commit index reached
 *      read_fence_slot: every slot phase 1 recovered, and at least one slot
 *      of its own ballot.  So its commit index covers every write
 *      acknowledged under earlier leaders.
 *   3. Rounds are monotonic; the leader's queue is FIFO in rounds, so
 *      release pops from the head.  Concurrent reads share one round.
 *   4. Both queues are bounded (PX_READS_MAX); overflow answers -EAGAIN.
 *   5. Followers are sticky (acceptor.c invariant 4): one that accepted a
 *      leader's ACCEPT or HEARTBEAT at its time t ignores every other
 *      node's PREPARE until t + election_timeout_min_ms, and a replica
 *      restarted from durable state ignores PREPAREs for lease_ms after
 *      its first event (it may have followed a leader before a crash; a
 *      replica whose state was lost votes only once recovered).
 *   6. The lease: when a quorum of voters (the leader included) echoed
 *      heartbeat round k of this leadership, sent at the leader's time s,
 *      each of them accepted the heartbeat after s, so by invariant 5 no
 *      quorum can promise another node before s + election_timeout_min_ms
 *      on their clocks, and no other leader can commit anything before.
 *      The leader serves reads without a round until s + lease_ms on its
 *      own clock (lease_until_ms), lease_ms < election_timeout_min_ms.
 *      This assumes the clocks' rates differ by less than the factor
 *      between them (2x with the defaults) and that now_ms never jumps
 *      forward on a follower without time having passed (CLOCK_MONOTONIC
 *      slews, it does not jump; a forward jump on the leader only
 *      shortens its lease).  The wall clock plays no part.
 *   7. A follower asks the leader once per step for all its reads that
 *      wait: one FORWARD whose token is a follower read round; a read
 *      joins the first round sent after it arrived (x->round), and the
 *      leader's answer to any round at or after that one is a read index
 *      confirmed after the read arrived, so it serves the read.  Reads
 *      not answered within retry_interval_ms join a new round (a leader
 *      change), keeping their first round.  Rounds count up from a base
 *      each replica draws from its seed (fread_base, a random 62-bit
 *      value): an answer to a round of an earlier incarnation (the node
 *      restarted, its requests still in flight) lies outside
 *      (fread_base, fread_round] with near certainty and is ignored;
 *      rounds counted from 0 at every start took such an answer, computed
 *      before the read arrived, as the answer to a new round: a stale
 *      read (simulator seed 6510).
 *   8. Follower leases (opt.follower_leases): a follower or learner that
 *      served reads in the last PX_FL_WANT_MS asks for a lease in its
 *      ACCEPTEDs and HEARTBEAT_ACKs (lease_round: a round of its own,
 *      numbered from fl_base like invariant 7, its send time kept).  The
 *      leader, while its own lease holds (invariant 6), its commit index
 *      passed the fence (invariant 2), it hands over to nobody, and the
 *      peer answered within heartbeat_interval_ms and is at most
 *      window_slots behind, grants one in its next ACCEPT, HEARTBEAT or
 *      COMMIT: the round it answers, g = (lease_until_ms - now) / 2, and
 *      its commit index.  The follower's lease holds until the round's
 *      send time + g on its own clock, while it still follows that
 *      leader in that ballot, neither suspended nor recovering; it
 *      serves a read at once at index max(commit, the grants' commit
 *      indexes, the highest slot it accepted in that ballot), once it
 *      applied that far.  In exchange:
 *      a. the leader records now + 2g for the peer (fl_grants) and commits
 *         no slot that peer has not vouched for until then: a write
 *         acknowledged after the grant was accepted by the holder, one
 *         acknowledged before is at or below the grant's commit index;
 *      b. no other leader commits anything before the lease ends: g is at
 *         most half the leader's own lease, which no other quorum can
 *         outlive (invariant 6), and the node that granted promises
 *         nobody until fl_granted_until (acceptor.c invariant 9), also
 *         not the voter it hands over to (members.c: a hand-over waits
 *         for the grants to end), nor after a restart within lease_ms
 *         (invariant 5, which covers grants made before a crash: they
 *         end within lease_ms of it);
 *      c. a holder that promises another ballot stops using its lease.
 *      Clocks: the lease starts at the follower's own send time, before
 *      the leader made the grant, so a delayed message only shortens it;
 *      it ends on the follower's clock within 2g of the grant on the
 *      leader's while the clock rates differ by less than 2x, the same
 *      bound as invariant 6.
 *   9. A lease holder's read of one key waits only for the entries it
 *      depends on (px_read_now_for): the index is max(commit, the
 *      grants' commit indexes) and the newest slot above both, up to
 *      acc_top, that is not a batch accepted in the lease's ballot or is
 *      one the host says touches the key.  A write acknowledged before
 *      the read began lies at or below a grant's commit index, or was
 *      accepted here in that ballot before it committed (invariant 8a),
 *      so one touching the key is waited for; one that does not touch
 *      it leaves the key as the applied state has it.
 */
#include "px_int.h"

static uint64_t px_fl_index(const px_replica *r);

int px_readq_init(px_readq *q)
{
    q->items = calloc(PX_READS_MAX, sizeof(px_read));
    q->head = q->count = 0;
    return q->items ? 0 : -ENOMEM;
}

void px_readq_free(px_readq *q)
{
    free(q->items);
    q->items = NULL;
    q->count = 0;
}

static px_read *px_readq_at(px_readq *q, uint32_t i)
{
    return &q->items[(q->head + i) % PX_READS_MAX];
}

/* Answer every read submitted here with `status` and forget every read
 * (those asked by peers are asked again of whoever leads next). */
void px_reads_fail_all(px_replica *r, int status)
{
    px_readq *qs[2] = { &r->lreads, &r->freads };
    for (int k = 0; k < 2; k++) {
        px_readq *q = qs[k];
        for (uint32_t i = 0; i < q->count; i++) {
            const px_read *x = px_readq_at(q, i);
            if (!x->origin)
                px_out_read(r, x->token, 0, status);
        }
        q->head = q->count = 0;
    }
    r->need_round = false;
}

static px_read *px_readq_push(px_readq *q)
{
    if (q->count == PX_READS_MAX)
        return NULL;
    px_read *x = px_readq_at(q, q->count++);
    memset(x, 0, sizeof(*x));
    return x;
}

static void px_readq_pop(px_readq *q)
{
    q->head = (q->head + 1) % PX_READS_MAX;
    q->count--;
}

/* Remove item i by moving the last one into its place (order-free). */
static void px_readq_remove(px_readq *q, uint32_t i)
{
    *px_readq_at(q, i) = *px_readq_at(q, q->count - 1);
    q->count--;
}

/* A new heartbeat round: its number and the time it is sent. */
void px_round_start(px_replica *r)
{
    r->hb_round++;
    r->hb_sent_ms[r->hb_round % PX_LEASE_ROUNDS] = r->now_ms;
}

/* The lease holds at `now_ms` (invariant 6); a sole voter always holds
 * it. */
static bool px_lease_valid_at(const px_replica *r, uint64_t now_ms)
{
    if (r->role != PX_LEADER || !r->opt.lease_ms)
        return false;
    if (r->members.n_voters == 1 && r->self_voter)
        return true;
    return now_ms < r->lease_until_ms;
}

bool px_lease_valid(const px_replica *r)
{
    return px_lease_valid_at(r, r->now_ms);
}

/* A read asked at `now_ms` may be released at once, without a round:
 * the lease holds (invariant 6), the commit index passed the fence
 * (invariant 2) and no read waits for a round (invariant 3's FIFO). */
static bool px_lease_read_ok(const px_replica *r, uint64_t now_ms)
{
    return px_lease_valid_at(r, now_ms) && r->commit >= r->read_fence_slot &&
           r->lreads.count == 0;
}

bool px_read_round_out(const px_replica *r)
{
    return r->role != PX_LEADER && r->freads.count &&
           r->fread_answered < r->fread_round;
}

bool px_read_now(const px_replica *r, uint64_t now_ms, uint64_t *index)
{
    if (now_ms < r->now_ms)
        return false;
    if (r->role != PX_LEADER) {
        if (!px_fl_holds(r, now_ms))
            return false;
        *index = px_fl_index(r);   /* invariant 8 */
        return true;
    }
    if (!px_lease_read_ok(r, now_ms))
        return false;
    *index = px_leader_read_floor(r);
    return true;
}

/* Time to renew the lease with a round of its own (no round out, and the
 * lease is more than half spent). */
bool px_lease_renew_due(const px_replica *r)
{
    return r->opt.lease_ms && r->n_peers && r->role == PX_LEADER &&
           r->hb_confirmed == r->hb_round &&
           r->now_ms + r->opt.lease_ms / 2 >= r->lease_until_ms;
}

/* A quorum echoed round c: extend the lease from its send time. */
static void px_lease_extend(px_replica *r, uint64_t c)
{
    if (!r->opt.lease_ms || c < r->lease_first_round ||
        r->hb_round - c >= PX_LEASE_ROUNDS)
        return;
    uint64_t until = r->hb_sent_ms[c % PX_LEASE_ROUNDS] + r->opt.lease_ms;
    if (until > r->lease_until_ms)
        r->lease_until_ms = until;
}

static void px_read_release(px_replica *r, const px_read *x);

static uint64_t px_read_deadline(const px_replica *r)
{
    return r->now_ms + 2 * r->opt.election_timeout_max_ms +
           r->opt.retry_interval_ms;
}

void px_on_read_index(px_replica *r, uint64_t token, uint32_t origin)
{
    if (px_lease_read_ok(r, r->now_ms)) {
        /* invariant 6: no round needed (FIFO: only with none queued) */
        px_read x = { .token = token, .origin = origin };
        px_read_release(r, &x);
        return;
    }
    if (r->role == PX_LEADER) {
        px_read *x = px_readq_push(&r->lreads);
        if (!x) {
            if (!origin)
                px_out_read(r, token, 0, -EAGAIN);
            return;
        }
        x->token = token;
        x->origin = origin;
        x->round = r->hb_round + 1;
        x->deadline_ms = px_read_deadline(r);
        r->need_round = true;
        return;
    }
    if (origin) {
        r->stats.msgs_ignored++; /* not the leader: the asker retries */
        return;
    }
    r->fl_want_until_ms = r->now_ms + PX_FL_WANT_MS;
    if (px_fl_holds(r, r->now_ms)) {   /* invariant 8 */
        r->stats.lease_reads++;
        px_out_read(r, token, px_fl_index(r), 0);
        return;
    }
    px_read *x = px_readq_push(&r->freads);
    if (!x) {
        px_out_read(r, token, 0, -EAGAIN);
        return;
    }
    x->token = token;
    x->deadline_ms = px_read_deadline(r);
}

void px_on_read_msg(px_replica *r, const px_msg *m)
{
    if (px_ballot_is_null(m->aux_ballot)) {
        px_on_read_index(r, m->aux, m->from);
        return;
    }
    /* invariant 7: every read sent in round m->aux or before, for a round
     * of this incarnation only */
    if (m->aux <= r->fread_base || m->aux > r->fread_round) {
        r->stats.msgs_ignored++;
        return;
    }
    uint32_t served = 0;
    for (uint32_t i = 0; i < r->freads.count;) {
        px_read *x = px_readq_at(&r->freads, i);
        if (x->sent && x->round && x->round <= m->aux) {
            px_out_read(r, x->token, m->slot, 0);
            px_readq_remove(&r->freads, i);
            served++;
            continue;
        }
        i++;
    }
    if (!served) {
        r->stats.msgs_ignored++;
        return;
    }
    if (m->aux > r->fread_answered && m->aux <= r->fread_round)
        r->fread_answered = m->aux;
    /* the answer carries the leader's commit index: the reads wait for
     * it, so learn it now rather than at the next ACCEPT or HEARTBEAT */
    if (m->from == r->leader_id && px_ballot_cmp(m->ballot, r->ballot) == 0) {
        if (m->commit > r->leader_commit)
            r->leader_commit = m->commit;
        px_learn_from_leader(r);
    }
}

void px_reads_fail_leader(px_replica *r)
{
    while (r->lreads.count) {
        px_read *x = px_readq_at(&r->lreads, 0);
        if (!x->origin)
            px_out_read(r, x->token, 0, -EAGAIN);
        px_readq_pop(&r->lreads);
    }
    r->need_round = false;
}

static void px_read_release(px_replica *r, const px_read *x)
{
    if (!x->origin) {
        px_out_read(r, x->token, px_leader_read_floor(r), 0);
        return;
    }
    /* the origin applies up to the index it gets: it needs the entries
     * (a peer thrifty phase 2 skipped may lack them) */
    px_peer *p = px_peer_find(r, x->origin);
    if (p)
        px_leader_send_missing(r, p);
    int k = px_out_msg(r, PX_MSG_FORWARD, x->origin, r->ballot);
    if (k < 0)
        return;
    r->out.msgs[k].aux = x->token;
    r->out.msgs[k].aux_ballot = r->ballot;
    r->out.msgs[k].slot = px_leader_read_floor(r);
}

/* leader.c invariant 9b: a leader's read point covers the slots its own
 * vote went out for, which a follower may have committed already. */
uint64_t px_leader_read_floor(const px_replica *r)
{
    return r->vote_hi > r->commit ? r->vote_hi : r->commit;
}

static void px_reads_leader(px_replica *r)
{
    /* local reads that waited for a leader: we are it now */
    while (r->freads.count) {
        px_read *f = px_readq_at(&r->freads, 0);
        px_read *x = px_readq_push(&r->lreads);
        if (!x)
            break;
        x->token = f->token;
        x->round = r->hb_round + 1;
        x->deadline_ms = f->deadline_ms;
        r->need_round = true;
        px_readq_pop(&r->freads);
    }
    if (r->n_peers == 0 || r->members.n_voters == 1) {
        if (r->need_round) {
            r->hb_round++;
            r->hb_confirmed = r->hb_round;
            r->need_round = false;
        }
    } else {
        uint64_t c = px_quorum_value(r, r->hb_round, false);
        if (c > r->hb_confirmed)
            r->hb_confirmed = c;
        px_lease_extend(r, r->hb_confirmed);
        if (r->need_round && r->hb_confirmed == r->hb_round) {
            px_round_start(r);
            r->need_round = false;
            px_leader_fill_lazy(r);   /* heartbeats carry the commit */
            for (uint32_t i = 0; i < r->n_peers; i++) {
                int k = px_out_msg(r, PX_MSG_HEARTBEAT, r->peers[i].id,
                                   r->ballot);
                if (k < 0)
                    break;
                r->out.msgs[k].aux = r->hb_round;
            }
            r->next_heartbeat_ms = r->now_ms + r->opt.heartbeat_interval_ms;
        }
    }
    bool own_committed = r->commit >= r->read_fence_slot;
    bool lease = px_lease_valid(r);
    while (r->lreads.count) {
        px_read *x = px_readq_at(&r->lreads, 0);
        if (own_committed && (x->round <= r->hb_confirmed || lease)) {
            px_read_release(r, x);
        } else if (r->now_ms >= x->deadline_ms) {
            if (!x->origin)
                px_out_read(r, x->token, 0, -EAGAIN);
        } else {
            break;
        }
        px_readq_pop(&r->lreads);
    }
}

/* ------------------------------------------- invariant 8: follower leases */

bool px_fl_holds(const px_replica *r, uint64_t now_ms)
{
    return r->opt.follower_leases &&
           (r->role == PX_FOLLOWER || r->role == PX_LEARNER) &&
           !r->suspended && !r->recovering && r->fl_leader != 0 &&
           r->leader_id == r->fl_leader &&
           px_ballot_cmp(r->ballot, r->fl_ballot) == 0 &&
           px_ballot_cmp(r->promise, r->fl_ballot) == 0 &&
           now_ms < r->fl_until_ms;
}

/* What every read under our follower lease waits for: our commit index
 * and the commit indexes the grants carried. */
static uint64_t px_fl_floor(const px_replica *r)
{
    return r->commit > r->fl_floor ? r->commit : r->fl_floor;
}

/* The index a read served under our follower lease waits for. */
static uint64_t px_fl_index(const px_replica *r)
{
    uint64_t i = px_fl_floor(r);
    return r->acc_top > i ? r->acc_top : i;
}

/* Where `id`'s grant is recorded: its entry, else a free or ended one;
 * PX_FL_GRANTS when every entry holds another peer's live grant (members
 * removed and added within a lease): then no grant is made. */
static uint32_t px_fl_slot(const px_replica *r, uint32_t id)
{
    uint32_t slot = PX_FL_GRANTS;
    for (uint32_t i = 0; i < PX_FL_GRANTS; i++) {
        if (r->fl_grants[i].id == id)
            return i;
        if (slot == PX_FL_GRANTS &&
            (r->fl_grants[i].id == 0 || r->fl_grants[i].until_ms <= r->now_ms))
            slot = i;
    }
    return slot;
}

/* Record that `id`'s lease may hold until `until` (our clock). */
static void px_fl_record(px_replica *r, uint32_t slot, uint32_t id,
                         uint64_t until)
{
    if (r->fl_grants[slot].id != id) {
        r->fl_grants[slot].id = id;
        r->fl_grants[slot].until_ms = 0;
    }
    if (until > r->fl_grants[slot].until_ms)
        r->fl_grants[slot].until_ms = until;
    if (until > r->fl_granted_until)
        r->fl_granted_until = until;
}

static void px_fl_grant(px_replica *r, px_msg *m)
{
    if (r->role != PX_LEADER || r->members.n_voters < 2 || r->transfer_to ||
        !px_lease_valid(r) || r->commit < r->read_fence_slot ||
        r->vote_hi > r->commit)   /* leader.c invariant 9b */
        return;
    px_peer *p = px_peer_find(r, m->to);
    if (!p || !p->fl_round || r->now_ms - p->fl_asked_ms > PX_FL_WANT_MS ||
        r->now_ms - p->last_contact_ms > r->opt.heartbeat_interval_ms ||
        p->match + r->opt.window_slots < r->commit)
        return;
    uint64_t g = (r->lease_until_ms - r->now_ms) / 2;
    uint32_t slot = px_fl_slot(r, p->id);
    if (g == 0 || slot == PX_FL_GRANTS)
        return;
    m->lease_round = p->fl_round;
    m->lease_ms = (uint32_t)g;
    p->fl_answer = false;   /* answered */
    r->stats.lease_grants++;
    px_fl_record(r, slot, p->id, r->now_ms + 2 * g);   /* invariant 8a */
}

void px_fl_stamp(px_replica *r, px_msg *m)
{
    if (!r->opt.follower_leases || !r->opt.lease_ms)
        return;
    switch (m->type) {
    case PX_MSG_ACCEPTED:
    case PX_MSG_HEARTBEAT_ACK:
        if (r->role == PX_LEADER || r->now_ms >= r->fl_want_until_ms)
            return;
        m->lease_round = ++r->fl_round;
        r->fl_sent_ms[r->fl_round % PX_LEASE_ROUNDS] = r->now_ms;
        return;
    case PX_MSG_ACCEPT:
    case PX_MSG_HEARTBEAT:
    case PX_MSG_COMMIT:
        px_fl_grant(r, m);
        return;
    default:
        return;
    }
}

void px_fl_note_ask(px_replica *r, px_peer *p, const px_msg *m)
{
    if (!m->lease_round)
        return;
    p->fl_round = m->lease_round;
    p->fl_asked_ms = r->now_ms;
    if (m->type == PX_MSG_HEARTBEAT_ACK && m->aux == 0)
        p->fl_answer = true;   /* asked outright (px_fl_renew) */
}

/* Invariant 8, renewal: a follower that serves reads asks outright (a
 * HEARTBEAT_ACK echoing no round) once its lease has less than
 * lease_ms / 8 left, or when it holds none, at most every lease_ms / 8;
 * the leader answers at once (px_fl_answer).  Waiting for the next
 * heartbeat would not do: an ask answered heartbeat_interval_ms later
 * gets g = (lease_until - now) / 2 from a send time that long ago, which
 * ends about when the grant arrives.  0: no ask due. */
uint64_t px_fl_renew_at(const px_replica *r)
{
    if (!r->opt.follower_leases || !r->opt.lease_ms ||
        (r->role != PX_FOLLOWER && r->role != PX_LEARNER) ||
        r->suspended || r->recovering || r->leader_id == 0 ||
        r->leader_id == r->self || r->now_ms >= r->fl_want_until_ms)
        return 0;
    uint64_t margin = r->opt.lease_ms / 8 ? r->opt.lease_ms / 8 : 1;
    uint64_t at = r->now_ms;
    if (px_fl_holds(r, r->now_ms) && r->fl_until_ms > margin)
        at = r->fl_until_ms - margin;
    if (r->fl_ask_ms && r->fl_ask_ms + margin > at)
        at = r->fl_ask_ms + margin;   /* the leader may be refusing */
    return at;
}

void px_fl_renew(px_replica *r)
{
    uint64_t at = px_fl_renew_at(r);
    if (!at || at > r->now_ms)
        return;
    int i = px_out_msg(r, PX_MSG_HEARTBEAT_ACK, r->leader_id, r->ballot);
    if (i < 0)
        return;
    r->out.msgs[i].aux = 0;          /* echoes no round of the leader's */
    r->out.msgs[i].slot = r->commit;
    r->fl_ask_ms = r->now_ms;
}

/* The leader: a grant at once to each peer that asked outright and got
 * none in this step (a HEARTBEAT of the current round: it starts none). */
void px_fl_answer(px_replica *r)
{
    if (r->role != PX_LEADER)
        return;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        if (!p->fl_answer)
            continue;
        p->fl_answer = false;
        if (!r->hb_round)
            continue;   /* its answer would echo 0: an ask outright again */
        px_leader_send_missing(r, p);
        if (!px_heartbeat_to(r, p))
            return;
    }
}

void px_fl_take_grant(px_replica *r, const px_msg *m)
{
    if (!r->opt.follower_leases || !m->lease_ms || !m->lease_round)
        return;
    if (m->lease_round <= r->fl_base || m->lease_round > r->fl_round ||
        r->fl_round - m->lease_round >= PX_LEASE_ROUNDS)
        return;   /* not a round of this incarnation, or too old */
    if (r->fl_leader != m->from ||
        px_ballot_cmp(r->fl_ballot, m->ballot) != 0) {
        r->fl_leader = m->from;
        r->fl_ballot = m->ballot;
        r->fl_until_ms = 0;
        r->fl_floor = 0;
    }
    /* never longer than our own configuration allows a lease, whatever a
     * peer says (a node configured differently, a forged frame) */
    uint64_t g = m->lease_ms < r->opt.lease_ms ? m->lease_ms : r->opt.lease_ms;
    uint64_t until = r->fl_sent_ms[m->lease_round % PX_LEASE_ROUNDS] + g;
    if (until > r->fl_until_ms)
        r->fl_until_ms = until;
    if (m->commit > r->fl_floor)
        r->fl_floor = m->commit;
}

uint64_t px_fl_commit_cap(px_replica *r, uint64_t c, uint32_t except)
{
    for (uint32_t i = 0; i < PX_FL_GRANTS; i++) {
        if (!r->fl_grants[i].id || r->now_ms >= r->fl_grants[i].until_ms ||
            r->fl_grants[i].id == except)
            continue;
        /* invariant 8a: only what the holder vouched for; a holder no
         * longer among our peers holds us where we are */
        const px_peer *p = px_peer_find(r, r->fl_grants[i].id);
        uint64_t lim = p ? p->match : r->commit;
        if (lim < c)
            c = lim > r->commit ? lim : r->commit;
    }
    return c;
}

uint64_t px_fl_next_expiry(const px_replica *r)
{
    uint64_t next = 0;
    for (uint32_t i = 0; i < PX_FL_GRANTS; i++)
        if (r->fl_grants[i].id && r->fl_grants[i].until_ms > r->now_ms &&
            (!next || r->fl_grants[i].until_ms < next))
            next = r->fl_grants[i].until_ms;
    return next;
}

bool px_fl_peer_leased(const px_replica *r, uint32_t id)
{
    for (uint32_t i = 0; i < PX_FL_GRANTS; i++)
        if (r->fl_grants[i].id == id)
            return r->now_ms < r->fl_grants[i].until_ms;
    return false;
}

bool px_read_now_for(const px_replica *r, uint64_t now_ms,
                     px_depends_fn depends, void *arg, uint64_t *index)
{
    if (now_ms < r->now_ms || r->role == PX_LEADER || !px_fl_holds(r, now_ms))
        return false;
    uint64_t i = px_fl_floor(r);
    for (uint64_t s = r->acc_top; s > i; s--) {   /* invariant 9 */
        const px_cell *c = px_log_get(r, s);
        if (!c || px_ballot_cmp(c->ballot, r->fl_ballot) != 0 ||
            (c->kind == PX_ENTRY_BATCH && depends(arg, c->data, c->len))) {
            i = s;
            break;
        }
    }
    *index = i;
    return true;
}

void px_read_local(px_replica *r, uint64_t now_ms)
{
    r->fl_want_until_ms = now_ms + PX_FL_WANT_MS;
}

void px_reads_pump(px_replica *r)
{
    if (r->role == PX_LEADER) {
        px_reads_leader(r);
        return;
    }
    bool ask = false;
    for (uint32_t i = 0; i < r->freads.count;) {
        px_read *x = px_readq_at(&r->freads, i);
        if (r->now_ms >= x->deadline_ms) {
            px_out_read(r, x->token, 0, -EAGAIN);
            px_readq_remove(&r->freads, i);
            continue;
        }
        ask |= !x->sent || r->now_ms - x->sent_ms >= r->opt.retry_interval_ms;
        i++;
    }
    if (!ask || !r->leader_id || r->leader_id == r->self)
        return;
    /* invariant 7: one round for every read that waits for one */
    int k = px_out_msg(r, PX_MSG_FORWARD, r->leader_id, r->ballot);
    if (k < 0)
        return;
    r->out.msgs[k].aux = ++r->fread_round;
    for (uint32_t i = 0; i < r->freads.count; i++) {
        px_read *x = px_readq_at(&r->freads, i);
        if (x->sent && r->now_ms - x->sent_ms < r->opt.retry_interval_ms)
            continue;
        if (!x->sent)
            x->round = r->fread_round;
        x->sent = true;
        x->sent_ms = r->now_ms;
    }
}
