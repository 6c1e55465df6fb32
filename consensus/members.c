/*
 * members.c - owns the configuration in force: quorum arithmetic and the
 * leader's per-peer table built from it (the encoding of a configuration
 * is in base/entry.c).
 *
 * Invariants:
 *   1. A configuration in force is valid: 1..PX_MAX_MEMBERS members in
 *      total, at least one voter, non-zero ids, no id listed twice.
 *   2. Quorum = n_voters / 2 + 1 of the configuration in force; only voters
 *      count toward it ("Paxos Made Simple": any two majorities intersect).
 *   3. r->peers holds exactly the members other than self, voters first;
 *      a peer that stays across a change keeps its state.
 *
 * Changing the configuration (docs/design.md "Membership"):
 *   4. The configuration that governs slot s (its quorums, in phase 1 and
 *      phase 2) is the one of the last CONFIG entry committed below s, or
 *      the initial one.  A committed CONFIG is in force from the next slot.
 *   5. A leader proposes a CONFIG only after it committed a slot of its
 *      own ballot, only while no CONFIG of its own is uncommitted (one
 *      change at a time), and only one that adds or removes at most one
 *      voter (learners may change freely): any majority of the old voters
 *      and any majority of the new ones intersect, so a lease round
 *      echoed by the old quorum still binds the new one.  It proposes
 *      nothing above its CONFIG until that commits (config_slot), so
 *      every slot it proposes lies wholly under one configuration, known
 *      when it is proposed, and its commit index never passes the CONFIG
 *      on the old configuration's votes.
 *   6. A new leader whose phase 1 recovered a CONFIG value at slot s
 *      re-proposes up to s only, and once s is committed runs phase 1
 *      again in a new ballot, under the configuration s put in force:
 *      values chosen above s were chosen by its quorums, which the old
 *      phase 1 quorum need not have met.
 *   7. A leader that is not a voter of the configuration it committed
 *      (it removed itself) tells every member it leaves behind the new
 *      commit index, sends TIMEOUT_NOW to the most caught-up voter and
 *      steps down: no election timeout passes before a new leader.  A
 *      planned transfer (PX_EV_TRANSFER) proposes nothing new, waits for
 *      the target to hold every slot, then does the same.  The leader
 *      steps down before the target can gather promises, so its read
 *      lease ends before another leader can exist.
 *   8. A non-voter answers a PREPARE from a member whose commit index is
 *      above its own (acceptor.c): promoted by a CONFIG it has not yet
 *      learned, it may be a voter the candidate needs; learning that
 *      CONFIG takes a leader, and electing one may take its promise.
 *      Promises are safe from any acceptor: only the candidate counts
 *      them, against the configuration it knows.
 */
#include "px_int.h"

uint32_t px_members_quorum(const px_members *m)
{
    return m->n_voters / 2 + 1;
}

bool px_members_is_voter(const px_members *m, uint32_t id)
{
    for (uint32_t i = 0; i < m->n_voters; i++)
        if (m->voters[i] == id)
            return true;
    return false;
}

bool px_members_is_member(const px_members *m, uint32_t id)
{
    if (px_members_is_voter(m, id))
        return true;
    for (uint32_t i = 0; i < m->n_learners; i++)
        if (m->learners[i] == id)
            return true;
    return false;
}

px_peer *px_peer_find(px_replica *r, uint32_t id)
{
    for (uint32_t i = 0; i < r->n_peers; i++)
        if (r->peers[i].id == id)
            return &r->peers[i];
    return NULL;
}

static void px_peer_keep(px_replica *r, const px_peer *old, uint32_t n_old,
                         uint32_t id, bool voter)
{
    px_peer *p = &r->peers[r->n_peers++];
    memset(p, 0, sizeof(*p));
    for (uint32_t i = 0; i < n_old; i++)
        if (old[i].id == id)
            *p = old[i];
    p->id = id;
    p->voter = voter;
    if (!p->last_contact_ms)
        p->last_contact_ms = r->now_ms;
}

/* The voter other than self holding the most slots: the target of a
 * handover (ties: the lower id), or NULL. */
static px_peer *px_best_voter(px_replica *r)
{
    px_peer *best = NULL;
    for (uint32_t i = 0; i < r->n_peers; i++) {
        px_peer *p = &r->peers[i];
        if (p->voter && (!best || p->match > best->match ||
                         (p->match == best->match && p->id < best->id)))
            best = p;
    }
    return best;
}

/* Invariant 7: hand over to `p` and step down. */
static void px_hand_over(px_replica *r, px_peer *p)
{
    px_ballot b = r->ballot;
    r->transfer_to = 0;
    if (p && px_out_msg(r, PX_MSG_TIMEOUT_NOW, p->id, b) >= 0)
        r->stats.transfers_started++;
    px_step_down(r);
}

/* Install a configuration (creation, restore, committed CONFIG entry,
 * snapshot).  Role follows: a non-voter can neither lead nor campaign. */
void px_members_apply(px_replica *r, const px_members *m)
{
    px_peer old[PX_MAX_MEMBERS];
    uint32_t n_old = r->n_peers;
    memcpy(old, r->peers, sizeof(old));
    bool was_leader = r->role == PX_LEADER;
    r->members = *m;
    r->self_voter = px_members_is_voter(m, r->self);
    r->n_peers = 0;
    for (uint32_t i = 0; i < m->n_voters; i++)
        if (m->voters[i] != r->self)
            px_peer_keep(r, old, n_old, m->voters[i], true);
    for (uint32_t i = 0; i < m->n_learners; i++)
        if (m->learners[i] != r->self)
            px_peer_keep(r, old, n_old, m->learners[i], false);
    if (!r->self_voter) {
        if (was_leader)
            px_hand_over(r, px_best_voter(r));   /* invariant 7 */
        else if (r->role == PX_CANDIDATE)
            px_step_down(r);
        r->role = PX_LEARNER;
    } else if (r->role == PX_LEARNER) {
        r->role = PX_FOLLOWER;
        px_reset_election_timer(r);
    }
}

/* The quorum-th highest value over the voters: match indexes
 * (use_match) or echoed read rounds.  Self contributes self_value. */
uint64_t px_quorum_value(const px_replica *r, uint64_t self_value,
                         bool use_match)
{
    uint64_t v[PX_MAX_MEMBERS];
    uint32_t n = 0;
    if (r->self_voter)
        v[n++] = self_value;
    for (uint32_t i = 0; i < r->n_peers && n < PX_MAX_MEMBERS; i++)
        if (r->peers[i].voter)
            v[n++] = use_match ? r->peers[i].match : r->peers[i].acked_round;
    uint32_t q = px_members_quorum(&r->members);
    if (n < q)
        return 0;
    /* selection by insertion sort, descending; n <= 16 */
    for (uint32_t i = 1; i < n; i++) {
        uint64_t x = v[i];
        uint32_t j = i;
        while (j > 0 && v[j - 1] < x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    return v[q - 1];
}

/* ------------------------------------------------ changing the members */

/* Voters in a and not in b. */
static uint32_t px_voters_missing(const px_members *a, const px_members *b)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < a->n_voters; i++)
        n += !px_members_is_voter(b, a->voters[i]);
    return n;
}

static bool px_members_same(const px_members *a, const px_members *b)
{
    if (a->n_voters != b->n_voters || a->n_learners != b->n_learners ||
        px_voters_missing(a, b))
        return false;
    for (uint32_t i = 0; i < a->n_learners; i++) {
        bool found = false;
        for (uint32_t j = 0; j < b->n_learners; j++)
            found |= a->learners[i] == b->learners[j];
        if (!found)
            return false;
    }
    return true;
}

/* px.h, PX_EV_CHANGE_MEMBERS / PX_EV_TRANSFER: may it be done now? */
int px_change_check(const px_replica *r, const px_event *ev)
{
    if (r->suspended || r->role != PX_LEADER || r->transfer_to ||
        r->commit < r->leader_start_slot)
        return -EAGAIN;                               /* invariant 5 */
    if (ev->type == PX_EV_TRANSFER) {
        if (ev->u.transfer_to == 0)
            return r->members.n_voters > 1 ? 0 : -EINVAL;
        if (ev->u.transfer_to == r->self ||
            !px_members_is_voter(&r->members, ev->u.transfer_to))
            return -EINVAL;
        return r->config_slot ? -EBUSY : 0;
    }
    const px_members *m = &ev->u.change.members;
    if (!px_members_valid(m) ||
        ev->u.change.context_len > PX_CONFIG_MAX_CONTEXT ||
        (ev->u.change.context_len && !ev->u.change.context))
        return -EINVAL;
    if (r->config_slot)
        return -EBUSY;
    if (px_members_same(m, &r->members))
        return -EINVAL;
    if (px_voters_missing(m, &r->members) + px_voters_missing(&r->members, m) > 1)
        return -EINVAL;                               /* invariant 5 */
    if (!px_log_fits(r, r->next_slot) || !px_persist_room(r))
        return -EAGAIN;
    return 0;
}

/* Propose the CONFIG entry (px_change_check said yes). */
void px_change_members(px_replica *r, const px_event *ev)
{
    uint32_t cap = 8 + 8 * PX_MAX_MEMBERS + 4 + PX_CONFIG_MAX_CONTEXT;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        r->out.error = -ENOMEM;
        return;
    }
    int n = px_config_encode(&ev->u.change.members, ev->u.change.context,
                             ev->u.change.context_len, buf, cap);
    PX_ASSERT(n > 0);
    uint64_t slot = r->next_slot;
    int rc = px_propose_cell(r, slot, r->wall_ms, PX_ENTRY_CONFIG,
                             (uint32_t)n, buf);
    free(buf);
    if (rc < 0) {
        r->out.error = rc;
        return;
    }
    r->config_slot = slot;
    r->reelect = false;
}

/* Invariant 7: a planned handover; the leader proposes nothing new until
 * the target holds every slot (px_transfer_tick) or time is up. */
void px_transfer_start(px_replica *r, uint32_t to)
{
    if (to == 0) {
        px_peer *p = px_best_voter(r);
        PX_ASSERT(p);
        to = p->id;
    }
    r->transfer_to = to;
    r->transfer_until_ms = r->now_ms + r->opt.election_timeout_min_ms;
}

void px_transfer_tick(px_replica *r)
{
    if (r->role != PX_LEADER || !r->transfer_to)
        return;
    px_peer *p = px_peer_find(r, r->transfer_to);
    if (!p || !p->voter || r->now_ms >= r->transfer_until_ms) {
        r->transfer_to = 0;
        r->stats.transfers_given_up++;
        return;
    }
    if (r->config_slot || p->match < r->next_slot - 1) {
        px_leader_send_missing(r, p);
        return;
    }
    if (r->now_ms < r->fl_granted_until)
        return;   /* reads.c invariant 8b: no grant may outlive us */
    px_hand_over(r, p);
}

/* A CONFIG entry was committed at c->slot (learner.c): put it in force.
 * At the leader, members leaving learn the commit index first (they hold
 * the entry: they accepted it), and a re-election may be due
 * (invariant 6). */
void px_config_committed(px_replica *r, const px_cell *c)
{
    px_members m;
    if (px_config_decode(c->data, c->len, &m, NULL, NULL) < 0)
        return;   /* never accepted into a log: msg.c checks CONFIG values */
    r->stats.config_changes++;
    if (r->role == PX_LEADER)
        for (uint32_t i = 0; i < r->n_peers; i++)
            if (!px_members_is_member(&m, r->peers[i].id))
                px_out_msg(r, PX_MSG_COMMIT, r->peers[i].id, r->ballot);
    bool reelect = r->role == PX_LEADER && r->reelect &&
                   r->config_slot == c->slot;
    if (r->config_slot && r->config_slot <= c->slot) {
        r->config_slot = 0;
        r->reelect = false;
    }
    px_members_apply(r, &m);
    if (reelect && r->role == PX_LEADER)
        px_election_restart(r);
}

/* A TIMEOUT_NOW from the leader we follow, in its ballot: campaign. */
void px_on_timeout_now(px_replica *r, const px_msg *m)
{
    if (!r->self_voter || r->recovering || r->role == PX_LEADER ||
        r->leader_id != m->from || px_ballot_cmp(r->ballot, m->ballot) != 0) {
        r->stats.msgs_ignored++;
        return;
    }
    /* what the leader committed last (its handover may have been our
     * configuration's commit): learn it first, as from a COMMIT */
    if (m->commit > r->leader_commit)
        r->leader_commit = m->commit;
    px_learn_from_leader(r);
    if (!r->self_voter)
        return;
    r->stats.transfer_elections++;
    px_election_start_transfer(r, m->ballot);
}
