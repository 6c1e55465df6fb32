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

/* Install a configuration (creation, restore, committed CONFIG entry,
 * snapshot).  Role follows: a non-voter can neither lead nor campaign. */
void px_members_apply(px_replica *r, const px_members *m)
{
    px_peer old[PX_MAX_MEMBERS];
    uint32_t n_old = r->n_peers;
    memcpy(old, r->peers, sizeof(old));
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
        if (r->role == PX_LEADER || r->role == PX_CANDIDATE)
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
