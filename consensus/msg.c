/*
 * msg.c - owns ballot ordering, px_msg_copy and the structural validation
 * of every message before any handler sees it.
 *
 * Invariants:
 *   1. A message reaching a handler has: a known type; from = a member of
 *      the configuration in force (voter or learner), or a message a
 *      replica behind on CONFIG entries must take from a node it does
 *      not know yet (px_taken_from_outside), from != self;
 *      to = self; a ballot whose round is below PX_ROUND_MAX; for PREPARE,
 *      ACCEPT and HEARTBEAT a ballot owned by the sender; entries with
 *      strictly increasing non-zero slots, a known kind, len bounded by
 *      PX_MAX_VALUE_BYTES and data present when len > 0; requests with
 *      seq > 0 and op present when len > 0.
 *   2. px_msg_copy returns one allocation holding the message, its entry
 *      and request arrays and every byte they point to; it never reads
 *      beyond what the message declares.
 *   3. No message moves this replica's rounds by more than
 *      PX_ROUND_WINDOW: a message whose ballot, aux ballot or any entry's
 *      ballot has a round above max_round_seen + PX_ROUND_WINDOW is
 *      dropped before any handler sees it (px_msg_in_reach; counted in
 *      ballots_refused).  Rejecting a message is always safe in Paxos;
 *      it costs liveness only, and legitimate rounds climb by one per
 *      election.  So the 2^63 rounds cannot be used up by a few forged
 *      messages (it would take 2^43 of them, each persisted as a promise
 *      before the next could build on it), and every round a replica
 *      takes leaves room for its own next ballot (election.c).
 */
#include "px_int.h"


int px_ballot_cmp(px_ballot a, px_ballot b)
{
    if (a.round != b.round)
        return a.round < b.round ? -1 : 1;
    if (a.node_id != b.node_id)
        return a.node_id < b.node_id ? -1 : 1;
    return 0;
}

bool px_ballot_is_null(px_ballot b)
{
    return b.round == 0 && b.node_id == 0;
}

static size_t px_align8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

px_msg *px_msg_copy(const px_msg *m)
{
    if (!m || (m->n_entries && !m->entries) ||
        (m->n_requests && !m->requests) ||
        m->n_entries > PX_MSG_MAX_ENTRIES ||
        m->n_requests > PX_MSG_MAX_REQUESTS)
        return NULL;
    size_t size = px_align8(sizeof(px_msg));
    size_t ents_at = size;
    size += px_align8((size_t)m->n_entries * sizeof(px_entry));
    size_t reqs_at = size;
    size += px_align8((size_t)m->n_requests * sizeof(px_request));
    size_t bytes_at = size;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        if (m->entries[i].len > PX_MAX_VALUE_BYTES ||
            (m->entries[i].len && !m->entries[i].data))
            return NULL;
        size += m->entries[i].len;
    }
    for (uint32_t i = 0; i < m->n_requests; i++) {
        if (m->requests[i].len > PX_MAX_VALUE_BYTES ||
            (m->requests[i].len && !m->requests[i].op))
            return NULL;
        size += m->requests[i].len;
    }
    uint8_t *base = malloc(size);
    if (!base)
        return NULL;
    px_msg *c = (px_msg *)base;
    *c = *m;
    px_entry *ents = (px_entry *)(base + ents_at);
    px_request *reqs = (px_request *)(base + reqs_at);
    uint8_t *bytes = base + bytes_at;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        ents[i] = m->entries[i];
        if (ents[i].len) {
            memcpy(bytes, m->entries[i].data, ents[i].len);
            ents[i].data = bytes;
            bytes += ents[i].len;
        } else {
            ents[i].data = NULL;
        }
    }
    for (uint32_t i = 0; i < m->n_requests; i++) {
        reqs[i] = m->requests[i];
        if (reqs[i].len) {
            memcpy(bytes, m->requests[i].op, reqs[i].len);
            reqs[i].op = bytes;
            bytes += reqs[i].len;
        } else {
            reqs[i].op = NULL;
        }
    }
    c->entries = m->n_entries ? ents : NULL;
    c->requests = m->n_requests ? reqs : NULL;
    return c;
}

static bool px_entries_valid(const px_msg *m)
{
    if (m->n_entries > PX_MSG_MAX_ENTRIES || (m->n_entries && !m->entries))
        return false;
    uint64_t prev = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const px_entry *e = &m->entries[i];
        if (e->slot == 0 || e->slot <= prev || e->kind > PX_ENTRY_LAST ||
            e->len > PX_MAX_VALUE_BYTES || (e->len && !e->data) ||
            e->ballot.round >= PX_ROUND_MAX)
            return false;
        px_members cfg;
        if (e->kind == PX_ENTRY_CONFIG &&
            px_config_decode(e->data, e->len, &cfg, NULL, NULL) < 0)
            return false;   /* a CONFIG value must be one (members.c) */
        if (e->kind == PX_ENTRY_CHECKPOINT && e->len != PX_CHECKPOINT_BYTES)
            return false;   /* base/entry.c: exactly (index, digest) */
        prev = e->slot;
    }
    return true;
}

static bool px_requests_valid(const px_msg *m)
{
    if (m->n_requests > PX_MSG_MAX_REQUESTS ||
        (m->n_requests && !m->requests))
        return false;
    for (uint32_t i = 0; i < m->n_requests; i++) {
        const px_request *q = &m->requests[i];
        if (q->seq == 0 || q->len > PX_MAX_VALUE_BYTES || (q->len && !q->op))
            return false;
    }
    return true;
}

/* What a replica takes from a node outside the configuration in force
 * here: a leader's PREPARE, ACCEPT, HEARTBEAT and COMMIT (whose ballot
 * the sender owns, checked below), and the answers of the leader this
 * replica follows.  A replica behind on CONFIG entries (back after
 * members were added, or joining) learns of the members added since only
 * from those entries, which a new leader carries, and its promise may be
 * the one a newer configuration's quorum needs.  It is safe: what an
 * acceptor promises and accepts depends on ballots alone, and a leader
 * counts only the votes of its own configuration's voters.  Stickiness
 * (acceptor.c) keeps a removed node's PREPARE from disturbing a replica
 * that hears its leader.  Votes and requests (PROMISE, ACCEPTED, REJECT,
 * HEARTBEAT_ACK, CATCHUP_REQ, TIMEOUT_NOW, FORWARD to a leader) still
 * come from members only, so a removed node cannot vote or propose. */
static bool px_taken_from_outside(const px_replica *r, const px_msg *m)
{
    switch (m->type) {
    case PX_MSG_PREPARE:
        return m->aux != PX_PREPARE_RECOVERY;
    case PX_MSG_ACCEPT:
    case PX_MSG_HEARTBEAT:
    case PX_MSG_COMMIT:
        return true;
    case PX_MSG_CATCHUP:
    case PX_MSG_SNAPSHOT_NEEDED:
    case PX_MSG_FORWARD:
        return r->role != PX_LEADER && m->from == r->leader_id;
    default:
        return false;
    }
}

bool px_msg_valid(const px_replica *r, const px_msg *m)
{
    if (m->type < PX_MSG_PREPARE || m->type >= PX_MSG_TYPE_COUNT)
        return false;
    if (m->to != r->self || m->from == 0 || m->from == r->self)
        return false;
    if (!px_members_is_member(&r->members, m->from) &&
        !px_taken_from_outside(r, m))
        return false;
    if (m->ballot.round >= PX_ROUND_MAX ||
        m->aux_ballot.round >= PX_ROUND_MAX)
        return false;
    switch (m->type) {
    case PX_MSG_PREPARE:
    case PX_MSG_ACCEPT:
    case PX_MSG_HEARTBEAT:
    case PX_MSG_COMMIT:
    case PX_MSG_TIMEOUT_NOW:
        if (m->ballot.node_id != m->from || m->ballot.round == 0)
            return false;
        break;
    default:
        break;
    }
    if (m->type != PX_MSG_ACCEPT && m->type != PX_MSG_PROMISE &&
        m->type != PX_MSG_CATCHUP && m->n_entries)
        return false;
    if (m->type != PX_MSG_FORWARD && m->n_requests)
        return false;
    return px_entries_valid(m) && px_requests_valid(m);
}

/* Invariant 3.  max_round_seen < PX_ROUND_MAX (2^63), so the limit cannot
 * wrap. */
bool px_msg_in_reach(const px_replica *r, const px_msg *m)
{
    assert(r->max_round_seen < PX_ROUND_MAX);
    uint64_t limit = r->max_round_seen + PX_ROUND_WINDOW;
    if (m->ballot.round > limit || m->aux_ballot.round > limit)
        return false;
    for (uint32_t i = 0; i < m->n_entries; i++)
        if (m->entries[i].ballot.round > limit)
            return false;
    return true;
}
