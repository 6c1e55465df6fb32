/*
 * learner.c - owns learning: the commit index, handing committed entries
 * to the host in slot order, catch-up from peers and snapshot installs.
 *
 * Invariants:
 *   1. commit only grows (a snapshot install moves it forward too);
 *      every slot in (old commit, new commit] is handed out in
 *      px_output.committed exactly once per replica lifetime, contiguous
 *      and in order, and a restarted replica starts at restore
 *      applied_index, so the host never sees a slot twice.
 *   2. A follower marks slot s committed on the leader's word (commit
 *      index in ACCEPT/HEARTBEAT) only if it holds s in the leader's
 *      current ballot: by leader.c invariant 1 that is the chosen value.
 *      Otherwise it fetches s (CATCHUP_REQ, at most once per
 *      retry_interval_ms unless progress was just made).
 *   3. CATCHUP carries only the sender's committed entries, and they are
 *      taken only contiguously from commit + 1, so a learned value is
 *      always a chosen value; as many as the log has room for in one
 *      step (a host streams up to 256 chain blocks at once), the rest is
 *      asked for again.
 *   4. A peer asking for slots below our first retained slot gets them
 *      from the host's chain (catchup_to) while the chain holds them;
 *      at or below the chain base (px_set_chain_base: compacted) it gets
 *      SNAPSHOT_NEEDED and the host is told (snapshot_to); the asker's
 *      host is told snapshot_from.  After PX_EV_SNAPSHOT_INSTALLED(index)
 *      the replica continues from index + 1 with the snapshot's members,
 *      its chain head and base at index.
 *   5. A committed CONFIG entry is in force from the next slot (members.c); a
 *      committed BATCH retires its requests from the forward queue.
 *   6. A voter following leader L in ballot b that got L's own vote for
 *      the slots up to v (leader.c invariant 9: sent only where L and this
 *      voter are a quorum) commits up to min(v, acc_durable): each of
 *      those slots was accepted durably in b by both, so it is chosen.
 *      The vote is kept (leader_vote) until this voter's acceptances are
 *      durable too, and forgotten with the ballot.
 */
#include "px_int.h"

void px_commit_to(px_replica *r, uint64_t slot)
{
    while (r->commit < slot) {
        px_cell *c = px_log_get(r, r->commit + 1);
        if (!c)
            break;
        px_out_committed(r, c);
        r->commit++;
        r->commit_moved = true;
        r->stats.slots_committed++;
        if (c->kind == PX_ENTRY_BATCH) {
            px_forward_committed(r, c);
        } else if (c->kind == PX_ENTRY_CONFIG) {
            px_config_committed(r, c);
        }
    }
    if (r->acc_durable < r->commit)
        r->acc_durable = r->commit;
    if (r->last_claim < r->commit)
        r->last_claim = r->commit;
}

int px_learn_chosen(px_replica *r, const px_entry *e)
{
    if (e->slot != r->commit + 1)
        return 0;
    px_cell *c;
    int rc = px_log_put(r, e->slot, e->ballot, e->time_ms, e->kind, e->len,
                        e->data, &c);
    if (rc < 0)
        return rc;
    c->durable = true; /* chosen: the chain, not the acceptor, keeps it */
    px_commit_to(r, e->slot);
    return 0;
}

void px_request_catchup(px_replica *r, uint32_t to, bool force)
{
    if (to == 0 || to == r->self)
        return;
    uint64_t want = r->commit + 1;
    if (!force && r->catchup_slot == want &&
        r->now_ms - r->catchup_ms < r->opt.retry_interval_ms)
        return;
    int k = px_out_msg(r, PX_MSG_CATCHUP_REQ, to, r->ballot);
    if (k < 0)
        return;
    r->out.msgs[k].slot = want;
    r->catchup_ms = r->now_ms;
    r->catchup_slot = want;
}

/* Invariant 6: the leader's own vote and ours. */
void px_learn_leader_vote(px_replica *r)
{
    if (!r->leader_vote || r->role != PX_FOLLOWER || !r->self_voter ||
        r->recovering || px_ballot_cmp(r->promise, r->ballot) != 0)
        return;
    px_acc_advance(r);
    uint64_t c = r->leader_vote < r->acc_durable ? r->leader_vote
                                                 : r->acc_durable;
    if (c > r->leader_commit) {
        uint64_t before = r->commit;
        r->leader_commit = c;
        px_learn_from_leader(r);
        r->stats.vote_commits += r->commit - before;
    }
}

/* An ACCEPTED from the leader we follow, in its ballot: its own vote.
 * False: not one (the caller counts it ignored). */
bool px_on_leader_vote(px_replica *r, const px_msg *m)
{
    if (r->role != PX_FOLLOWER || !r->self_voter || r->recovering ||
        m->from != r->leader_id || !m->aux ||
        px_ballot_cmp(m->ballot, r->ballot) != 0)
        return false;
    if (m->aux - 1 > r->leader_vote)
        r->leader_vote = m->aux - 1;
    px_learn_leader_vote(r);
    return true;
}

void px_learn_from_leader(px_replica *r)
{
    while (r->commit < r->leader_commit) {
        px_cell *c = px_log_get(r, r->commit + 1);
        if (!c || px_ballot_cmp(c->ballot, r->ballot) != 0)
            break;
        px_commit_to(r, r->commit + 1);
    }
    if (r->commit < r->leader_commit)
        px_request_catchup(r, r->leader_id, false);
}

void px_on_catchup_req(px_replica *r, const px_msg *m)
{
    uint64_t s = m->slot ? m->slot : 1;
    if (s > r->commit) {
        r->stats.msgs_ignored++;
        return;
    }
    if (s <= r->chain_base) {
        /* invariant 4: compacted away everywhere here */
        int k = px_out_msg(r, PX_MSG_SNAPSHOT_NEEDED, m->from, r->ballot);
        if (k >= 0)
            r->out.msgs[k].slot = r->chain_base + 1;
        r->out.snapshot_to = m->from;
        return;
    }
    if (s < r->first_retained) {
        /* the host's chain holds it */
        r->out.catchup_to = m->from;
        r->out.catchup_slot = s;
        return;
    }
    int k = px_out_msg(r, PX_MSG_CATCHUP, m->from, r->ballot);
    if (k < 0)
        return;
    r->out.msgs[k].slot = s;
    uint64_t bytes = 0;
    for (uint32_t n = 0; s <= r->commit && n < PX_PIECE_MAX_ENTRIES; s++, n++) {
        px_cell *c = px_log_get(r, s);
        if (!c || (n > 0 && bytes + c->len > PX_PIECE_MAX_BYTES))
            break;
        if (px_out_entry(r, k, c) < 0)
            return;
        bytes += c->len;
    }
}

void px_on_catchup(px_replica *r, const px_msg *m)
{
    uint64_t before = r->commit;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const px_entry *e = &m->entries[i];
        if (e->slot > m->commit)
            break; /* not claimed chosen */
        if (e->slot <= r->commit)
            continue;
        if (e->slot != r->commit + 1)
            break;
        if (!px_log_fits(r, e->slot))
            break;   /* the log is full: the rest after this step's
                        compaction, on the request below (not an error:
                        what was learned is handed out) */
        if (px_learn_chosen(r, e) < 0) {
            r->out.error = -ENOMEM;
            return;
        }
    }
    if (r->commit == before)
        r->stats.msgs_ignored++;
    px_learn_from_leader(r);
    if (r->commit > before && r->commit < m->commit)
        px_request_catchup(r, m->from, true);
}

void px_on_snapshot_needed(px_replica *r, const px_msg *m)
{
    if (m->slot <= r->commit + 1) {
        r->stats.msgs_ignored++;
        return;
    }
    if (r->snapshot_req_ms && r->now_ms - r->snapshot_req_ms <
                                  r->opt.retry_interval_ms)
        return;
    r->out.snapshot_from = m->from;
    r->snapshot_req_ms = r->now_ms ? r->now_ms : 1;
}

void px_on_snapshot_installed(px_replica *r, uint64_t index,
                              const px_members *members,
                              const uint8_t hash[PX_HASH_BYTES])
{
    if (index <= r->commit)
        return;
    r->stats.snapshots_installed++;
    static const uint8_t zero[PX_HASH_BYTES];
    if (hash && memcmp(hash, zero, PX_HASH_BYTES) != 0 &&
        index >= r->chain_index) {
        r->chain_index = index;
        memcpy(r->chain_hash, hash, PX_HASH_BYTES);
    }
    if (r->chain_base < index)
        r->chain_base = index;
    if (r->role == PX_LEADER || r->role == PX_CANDIDATE)
        px_step_down(r);
    px_log_drop_through(r, index);
    r->commit = index;
    r->commit_moved = true;
    if (r->leader_commit < index)
        r->leader_commit = index;
    if (r->acc_durable < index)
        r->acc_durable = index;
    if (r->last_claim < index)
        r->last_claim = index;
    if (r->next_slot <= index)
        r->next_slot = index + 1;
    r->snapshot_req_ms = 0;
    if (members && members->n_voters)
        px_members_apply(r, members);
    px_learn_from_leader(r);
}
