/*
 * replica.c - owns the replica's lifetime, event dispatch, the output
 * buffers and the timers.
 *
 * Roles (enum px_role) and who performs each transition:
 *
 *                 election timeout (election.c)
 *     FOLLOWER ------------------------------> CANDIDATE
 *        ^   ^                                  |  probe quorum -> phase 1
 *        |   |    higher ballot / timeout       |  promise quorum
 *        |   +----------------------------------+  (election.c)
 *        |                                      v
 *        +------------- step down ----------- LEADER
 *           (higher ballot, no quorum contact: leader.c)
 *
 *     LEARNER: not a voter of the configuration in force (members.c); it
 *     follows the leader's log but never votes or campaigns.
 *
 *     px_suspend (suspend.c): any role -> FOLLOWER (or LEARNER) at the next
 *     step, for good; the host replaces a suspended replica.
 *
 * One px_step:
 *     reset output -> compact ring -> handle event -> timers ->
 *     leader pump (phase 2) -> forward pump -> reads pump ->
 *     finish persist record -> publish output (pointers into reused pools)
 *
 * Invariants:
 *   1. No I/O, no clock, no globals: time comes only from event now_ms
 *      (never allowed to go backwards: the replica keeps the maximum) and
 *      randomness only from opt.seed through a splitmix64 generator.
 *   2. Every message in an output depends only on state that is durable
 *      or persisted by that same output (DESIGN.md invariant 2): handlers
 *      re-add the promise to an output whose messages rely on a promise
 *      not yet reported durable, and the acceptor vouches only for
 *      durable or same-output accepts (acceptor.c).
 *   3. Output pools are owned by the replica and reused; messages store
 *      offsets while being built and get pointers when published, so pool
 *      growth never leaves a dangling pointer.
 *   4. Handlers run before the pumps; the pumps never free what an earlier
 *      part of the output points to (request bytes are freed on commit,
 *      which happens in handlers only).
 *   5. A stalled host is not a silent leader: timeouts count the time
 *      the host ran.  A step that comes more than opt.stall_ms after the
 *      tick the replica asked for means its host was not running for
 *      that long (another program's load, a pause, a slow machine):
 *      whatever the leader or the peers sent meanwhile may still wait in
 *      this host's sockets, and a whole cluster stalled together would
 *      otherwise depose a healthy leader (its followers time out first
 *      thing on waking; the leader steps down for want of quorum
 *      contact).  So the time lost (now minus the tick asked for) moves
 *      a follower's election deadline and its stickiness window, and a
 *      leader's last quorum contact, forward by as much (never past
 *      now).  The time asked for still counts, so a host late at every
 *      step still campaigns once it has run a whole timeout without
 *      hearing its leader.  Safety does not depend on it: it only
 *      postpones elections and makes voters refuse more (the read lease
 *      rests on stickiness lasting at least as long as it did).
 */
#include "px_int.h"

/* ---------------------------------------------------------- randomness */

static uint64_t px_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

uint64_t px_rand_range(px_replica *r, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + px_splitmix64(&r->rng) % (hi - lo);
}

void px_reset_election_timer(px_replica *r)
{
    r->election_deadline_ms =
        r->now_ms + px_rand_range(r, r->opt.election_timeout_min_ms,
                                  r->opt.election_timeout_max_ms);
}

/* -------------------------------------------------------------- options */

void px_options_default(px_options *opt, uint32_t self_id)
{
    memset(opt, 0, sizeof(*opt));
    opt->self_id = self_id;
    opt->heartbeat_interval_ms = 50;
    opt->election_timeout_min_ms = 300;
    opt->election_timeout_max_ms = 600;
    opt->lease_ms = PX_LEASE_AUTO;   /* half the stickiness window: clock
                                        rates may differ by up to 2x */
    opt->stall_ms = PX_STALL_AUTO;
    opt->batch_max_requests = 100;
    opt->batch_max_bytes = 1u << 20;
    opt->window_slots = 32;
    opt->retry_interval_ms = 100;
    opt->commit_notice_ms = 2;
    opt->thrifty = true;
    opt->follower_leases = true;
    opt->retain_slots = 1024;
    opt->retain_bytes = UINT64_C(64) << 20;
    opt->max_pending_requests = 4096;
    opt->seed = UINT64_C(0x243F6A8885A308D3) ^ self_id;
}

static bool px_options_valid(const px_options *o)
{
    return o->self_id != 0 && o->heartbeat_interval_ms > 0 &&
           o->election_timeout_min_ms > 0 &&
           o->election_timeout_max_ms >= o->election_timeout_min_ms &&
           (o->lease_ms == PX_LEASE_AUTO ||
            o->lease_ms < o->election_timeout_min_ms) &&
           o->batch_max_requests >= 1 && o->batch_max_bytes >= 64 &&
           o->window_slots >= 1 && o->window_slots <= (1u << 20) &&
           o->retry_interval_ms > 0 &&
           o->commit_notice_ms < o->heartbeat_interval_ms &&
           o->retain_slots <= (1u << 24) && o->retain_bytes > 0 &&
           o->max_pending_requests >= 1 &&
           o->max_pending_requests <= (1u << 24);
}

/* ------------------------------------------------------- create/destroy */

static int px_restore_load(px_replica *r, const px_restore *rs)
{
    for (uint32_t i = 0; i < rs->n_accepts; i++) {
        const px_entry *e = &rs->accepts[i];
        if (e->slot == 0 || e->kind > PX_ENTRY_LAST ||
            e->len > PX_MAX_VALUE_BYTES || (e->len && !e->data) ||
            e->ballot.round >= PX_ROUND_MAX)
            return -EINVAL;
        if (e->slot <= r->commit)
            continue;
        px_cell *c;
        px_cell *old = px_log_get(r, e->slot);
        if (old && px_ballot_cmp(old->ballot, e->ballot) >= 0)
            continue; /* keep the highest ballot if a slot repeats */
        int rc = px_log_put(r, e->slot, e->ballot, e->time_ms, e->kind,
                            e->len, e->data, &c);
        if (rc < 0)
            return rc;
        c->durable = true;
    }
    return 0;
}

int px_create(const px_options *opt, const px_restore *restore,
              px_replica **out)
{
    if (!opt || !out || !px_options_valid(opt))
        return -EINVAL;
    const px_members *m = &opt->members;
    if (restore && restore->members.n_voters)
        m = &restore->members;
    if (!px_members_valid(m))
        return -EINVAL;
    if (restore && restore->n_accepts && !restore->accepts)
        return -EINVAL;
    int rc = -ENOMEM;
    px_replica *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->opt = *opt;
    if (r->opt.lease_ms == PX_LEASE_AUTO)
        r->opt.lease_ms = r->opt.election_timeout_min_ms / 2;
    if (r->opt.stall_ms == PX_STALL_AUTO)
        r->opt.stall_ms = r->opt.election_timeout_min_ms / 2;
    r->self = opt->self_id;
    r->rng = opt->seed ^ ((uint64_t)opt->self_id << 32);
    /* reads.c invariant 7: this incarnation's follower read rounds start
     * at a base of their own (from the seed, without drawing from rng,
     * so the runs a seed replays are unchanged) */
    uint64_t mix = opt->seed ^ 0x7265616472ull ^ ((uint64_t)opt->self_id << 40);
    r->fread_base = (px_splitmix64(&mix) & ((UINT64_C(1) << 62) - 1)) |
                    (UINT64_C(1) << 32);
    r->fread_round = r->fread_answered = r->fread_base;
    /* invariant 8 of reads.c: lease rounds likewise */
    mix ^= 0x666c65617365ull;
    r->fl_base = (px_splitmix64(&mix) & ((UINT64_C(1) << 62) - 1)) |
                 (UINT64_C(1) << 32);
    r->fl_round = r->fl_base;
    r->role = PX_FOLLOWER;
    uint64_t ahead = 4 * (uint64_t)opt->window_slots + 64;
    if (restore) {
        r->quiet_on_start = true;   /* reads.c invariant 5 */
        r->promise = restore->promise;
        r->commit = restore->applied_index;
        for (uint32_t i = 0; i < restore->n_accepts; i++) {
            const px_entry *e = &restore->accepts[i];
            if (px_ballot_cmp(e->ballot, r->promise) > 0)
                r->promise = e->ballot; /* an accept implies a promise */
            if (e->slot > r->commit && e->slot - r->commit + 64 > ahead)
                ahead = e->slot - r->commit + 64;
        }
        if (r->promise.round >= PX_ROUND_MAX || ahead > (UINT64_C(1) << 24)) {
            free(r);
            return -EINVAL;
        }
    }
    r->durable_promise = r->promise;
    r->max_round_seen = r->promise.round;
    r->first_retained = r->commit + 1;
    r->counted_to = r->commit;
    r->acc_durable = r->commit;
    r->last_claim = r->commit;
    r->leader_commit = r->commit;
    r->next_slot = r->commit + 1;
    if ((rc = px_log_init(r, ahead)) < 0)
        goto free_replica;
    if (restore && (rc = px_restore_load(r, restore)) < 0)
        goto free_log;
    if ((rc = px_queue_init(&r->q, opt->max_pending_requests)) < 0)
        goto free_log;
    if ((rc = px_readq_init(&r->lreads)) < 0)
        goto free_queue;
    if ((rc = px_readq_init(&r->freads)) < 0)
        goto free_lreads;
    px_members_apply(r, m);
    r->role = r->self_voter ? PX_FOLLOWER : PX_LEARNER;
    if (restore && restore->recovering)
        px_begin_recovery(r);
    *out = r;
    return 0;

free_lreads:
    px_readq_free(&r->lreads);
free_queue:
    px_queue_free(&r->q);
free_log:
    px_log_free(r);
free_replica:
    free(r);
    return rc;
}

static void px_outbuf_free(px_outbuf *o)
{
    free(o->msgs);
    free(o->ent_off);
    free(o->req_off);
    free(o->ents);
    free(o->reqs);
    free(o->accepts);
    free(o->committed);
    free(o->reads);
    free(o->failed);
}

void px_destroy(px_replica *r)
{
    if (!r)
        return;
    px_election_reset(r);
    free(r->el.rec);
    px_readq_free(&r->freads);
    px_readq_free(&r->lreads);
    px_queue_free(&r->q);
    px_log_free(r);
    px_outbuf_free(&r->out);
    free(r);
}

/* ------------------------------------------------------- output builder */

/* Grow a pool to hold one more element. */
static bool px_grow(void **p, uint32_t *cap, uint32_t n, size_t elem,
                    int *error)
{
    if (n < *cap)
        return true;
    uint32_t c = *cap ? *cap * 2 : 32;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) {
        *error = -ENOMEM;
        return false;
    }
    *p = q;
    *cap = c;
    return true;
}

int px_out_msg(px_replica *r, uint8_t type, uint32_t to, px_ballot b)
{
    px_outbuf *o = &r->out;
    if (r->recovering && px_is_vote(type))
        return -1;   /* recovery.c invariant 1: no vote, and no error */
    if (r->suspended)
        return -1;   /* suspend.c invariant 1: nothing leaves */
    if (o->n_msgs == o->cap_msgs) {
        uint32_t c = o->cap_msgs ? o->cap_msgs * 2 : 32;
        px_msg *m = realloc(o->msgs, c * sizeof(*m));
        if (!m)
            goto fail;
        o->msgs = m;
        uint32_t *e = realloc(o->ent_off, c * sizeof(*e));
        if (!e)
            goto fail;
        o->ent_off = e;
        uint32_t *q = realloc(o->req_off, c * sizeof(*q));
        if (!q)
            goto fail;
        o->req_off = q;
        o->cap_msgs = c;
    }
    uint32_t i = o->n_msgs++;
    px_msg *m = &o->msgs[i];
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = r->self;
    m->to = to;
    m->ballot = b;
    m->commit = r->commit;
    m->chain_index = r->chain_index;
    memcpy(m->chain_hash, r->chain_hash, PX_HASH_BYTES);
    px_fl_stamp(r, m);   /* reads.c invariant 8 */
    o->ent_off[i] = o->n_ents;
    o->req_off[i] = o->n_reqs;
    return (int)i;
fail:
    o->error = -ENOMEM;
    return -1;
}

int px_out_entry(px_replica *r, int msg_idx, const px_cell *c)
{
    px_outbuf *o = &r->out;
    if (msg_idx < 0 ||
        !px_grow((void **)&o->ents, &o->cap_ents, o->n_ents, sizeof(px_entry),
                 &o->error))
        return -ENOMEM;
    px_entry_from_cell(&o->ents[o->n_ents++], c);
    o->msgs[msg_idx].n_entries++;
    return 0;
}

int px_out_request(px_replica *r, int msg_idx, const px_req *q)
{
    px_outbuf *o = &r->out;
    if (msg_idx < 0 ||
        !px_grow((void **)&o->reqs, &o->cap_reqs, o->n_reqs,
                 sizeof(px_request), &o->error))
        return -ENOMEM;
    px_request *x = &o->reqs[o->n_reqs++];
    x->client_id = q->client_id;
    x->seq = q->seq;
    x->ack_seq = q->ack_seq;
    x->len = q->len;
    x->op = q->len ? q->op : NULL;
    o->msgs[msg_idx].n_requests++;
    return 0;
}

void px_out_committed(px_replica *r, const px_cell *c)
{
    px_outbuf *o = &r->out;
    if (!px_grow((void **)&o->committed, &o->cap_committed, o->n_committed,
                 sizeof(px_entry), &o->error))
        return;
    px_entry_from_cell(&o->committed[o->n_committed++], c);
}

void px_out_read(px_replica *r, uint64_t token, uint64_t index, int status)
{
    px_outbuf *o = &r->out;
    if (!px_grow((void **)&o->reads, &o->cap_reads, o->n_reads,
                 sizeof(px_read_ready), &o->error))
        return;
    o->reads[o->n_reads++] =
        (px_read_ready){.read_token = token, .index = index, .status = status};
}

void px_out_failed(px_replica *r, uint64_t client_id, uint64_t seq, int st)
{
    px_outbuf *o = &r->out;
    if (!px_grow((void **)&o->failed, &o->cap_failed, o->n_failed,
                 sizeof(px_request_failed), &o->error))
        return;
    o->failed[o->n_failed++] =
        (px_request_failed){.client_id = client_id, .seq = seq, .status = st};
    r->stats.requests_failed++;
}

static void px_out_reset(px_replica *r)
{
    px_outbuf *o = &r->out;
    o->n_msgs = o->n_ents = o->n_reqs = 0;
    o->n_accepts = o->n_committed = o->n_reads = o->n_failed = 0;
    o->persist_promise = false;
    o->promise = (px_ballot){0, 0};
    o->snapshot_to = o->snapshot_from = o->catchup_to = 0;
    o->catchup_slot = 0;
    o->recovered = false;
    o->error = 0;
    r->cur_persist_id = 0;
    r->commit_moved = false;
    r->bcast_lo = r->bcast_hi = 0;
}

static void px_out_publish(px_replica *r, px_output *out)
{
    px_outbuf *o = &r->out;
    for (uint32_t i = 0; i < o->n_msgs; i++) {
        px_msg *m = &o->msgs[i];
        m->entries = m->n_entries ? &o->ents[o->ent_off[i]] : NULL;
        m->requests = m->n_requests ? &o->reqs[o->req_off[i]] : NULL;
    }
    memset(out, 0, sizeof(*out));
    out->persist_promise = o->persist_promise;
    out->promise = o->promise;
    out->n_accepts = o->n_accepts;
    out->accepts = o->n_accepts ? o->accepts : NULL;
    out->persist_id = r->cur_persist_id;
    out->n_msgs = o->n_msgs;
    out->msgs = o->n_msgs ? o->msgs : NULL;
    out->n_committed = o->n_committed;
    out->committed = o->n_committed ? o->committed : NULL;
    out->n_reads = o->n_reads;
    out->reads = o->n_reads ? o->reads : NULL;
    out->n_failed = o->n_failed;
    out->failed = o->n_failed ? o->failed : NULL;
    out->snapshot_to = o->snapshot_to;
    out->snapshot_from = o->snapshot_from;
    out->catchup_to = o->catchup_to;
    out->catchup_slot = o->catchup_slot;
    out->recovered = o->recovered;
}

static uint64_t px_next_tick(const px_replica *r)
{
    uint64_t next = r->now_ms + r->opt.retry_interval_ms;
    if (r->role == PX_LEADER) {
        if (r->next_heartbeat_ms < next)
            next = r->next_heartbeat_ms;
        if (r->commit_notice_at_ms && r->commit_notice_at_ms < next)
            next = r->commit_notice_at_ms;
        if (r->lazy_due_ms && r->lazy_due_ms < next)
            next = r->lazy_due_ms;
        uint64_t fl = px_fl_next_expiry(r);   /* commits it held back */
        if (fl && fl < next)
            next = fl;
    } else {
        if (r->self_voter && !r->recovering && !r->suspended &&
            r->election_deadline_ms < next)
            next = r->election_deadline_ms;
        uint64_t fl = px_fl_renew_at(r);   /* reads.c invariant 8 */
        if (fl && fl < next)
            next = fl;
    }
    return next > r->now_ms ? next : r->now_ms + 1;
}

/* --------------------------------------------------------------- step */

static uint64_t px_later_by(uint64_t t, uint64_t by, uint64_t cap)
{
    return t + by < cap ? t + by : cap;
}

/* Invariant 5: the host was stalled since the last step. */
static void px_stall_check(px_replica *r)
{
    if (!r->opt.stall_ms || !r->wake_ms ||
        r->now_ms <= r->wake_ms + r->opt.stall_ms)
        return;
    uint64_t lost = r->now_ms - r->wake_ms;   /* the host did not run */
    r->stats.stalls++;
    r->stats.stalled_ms += lost;
    if (r->role == PX_LEADER) {
        r->quorum_ok_ms = px_later_by(r->quorum_ok_ms, lost, r->now_ms);
    } else if (r->role == PX_FOLLOWER && r->leader_id &&
               r->el.phase == PX_PHASE_NONE) {
        r->last_leader_contact_ms =
            px_later_by(r->last_leader_contact_ms, lost, r->now_ms);
        r->election_deadline_ms += lost;
    }
}

static void px_dispatch(px_replica *r, const px_msg *m)
{
    r->stats.msgs_received++;
    if (!px_msg_valid(r, m)) {
        r->stats.msgs_ignored++;
        return;
    }
    if (!px_msg_in_reach(r, m)) {
        r->stats.msgs_ignored++;
        r->stats.ballots_refused++;
        return;
    }
    if (m->ballot.round > r->max_round_seen)
        r->max_round_seen = m->ballot.round;
    if (m->aux_ballot.round > r->max_round_seen)
        r->max_round_seen = m->aux_ballot.round;
    switch (m->type) {
    case PX_MSG_PREPARE: px_on_prepare(r, m); break;
    case PX_MSG_PROMISE: px_on_promise(r, m); break;
    case PX_MSG_ACCEPT: px_on_accept(r, m); break;
    case PX_MSG_ACCEPTED: px_on_accepted(r, m); break;
    case PX_MSG_REJECT: px_on_reject(r, m); break;
    case PX_MSG_HEARTBEAT: px_on_heartbeat(r, m); break;
    case PX_MSG_COMMIT: px_on_commit(r, m); break;
    case PX_MSG_HEARTBEAT_ACK: px_on_heartbeat_ack(r, m); break;
    case PX_MSG_FORWARD:
        if (m->n_requests == 0)
            px_on_read_msg(r, m);
        else
            px_on_forward(r, m);
        break;
    case PX_MSG_CATCHUP_REQ: px_on_catchup_req(r, m); break;
    case PX_MSG_CATCHUP: px_on_catchup(r, m); break;
    case PX_MSG_SNAPSHOT_NEEDED: px_on_snapshot_needed(r, m); break;
    case PX_MSG_TIMEOUT_NOW: px_on_timeout_now(r, m); break;
    default: r->stats.msgs_ignored++; break;
    }
}

int px_step(px_replica *r, const px_event *ev, px_output *out)
{
    if (!r || !ev || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    switch (ev->type) {
    case PX_EV_RECEIVE:
        if (!ev->u.msg)
            return -EINVAL;
        break;
    case PX_EV_PROPOSE:
        if (ev->u.propose.n_requests && !ev->u.propose.requests)
            return -EINVAL;
        break;
    case PX_EV_SNAPSHOT_INSTALLED:
        if (ev->u.snapshot.members.n_voters &&
            !px_members_valid(&ev->u.snapshot.members))
            return -EINVAL;
        break;
    case PX_EV_CHECKPOINT:
        if (ev->u.checkpoint.index == 0)
            return -EINVAL;
        break;
    case PX_EV_TICK:
    case PX_EV_PERSISTED:
    case PX_EV_READ_INDEX:
        break;
    case PX_EV_READ_BATCH:
        if (ev->u.reads.n && !ev->u.reads.tokens)
            return -EINVAL;
        break;
    case PX_EV_CHANGE_MEMBERS:
    case PX_EV_TRANSFER: {
        int rc = px_change_check(r, ev);
        if (rc < 0)
            return rc;
        break;
    }
    default:
        return -EINVAL;
    }
    if (ev->now_ms > r->now_ms)
        r->now_ms = ev->now_ms;
    r->wall_ms = ev->wall_ms ? ev->wall_ms : r->now_ms;
    px_out_reset(r);
    if (!r->started) {
        r->started = true;
        /* reads.c invariant 5: no promise for a lease's length after a
         * restart (whom this node followed before is forgotten) */
        if (r->quiet_on_start)
            r->quiet_until_ms = r->now_ms + r->opt.lease_ms;
        px_reset_election_timer(r);
        r->quorum_ok_ms = r->now_ms;
    }
    px_log_compact(r);

    if (r->suspended) {
        /* suspend.c: no handler, timer or pump runs */
        px_suspended_step(r, ev);
        PX_ASSERT(r->cur_persist_id == 0 && !r->out.persist_promise &&
                  r->out.n_accepts == 0 && r->out.n_committed == 0 &&
                  r->out.n_msgs == 0 && r->role != PX_LEADER &&
                  r->role != PX_CANDIDATE);
        px_out_publish(r, out);
        out->next_tick_ms = r->wake_ms = px_next_tick(r);
        return r->out.error;
    }
    px_stall_check(r);

    switch (ev->type) {
    case PX_EV_RECEIVE:
        px_dispatch(r, ev->u.msg);
        break;
    case PX_EV_PROPOSE:
        px_on_propose(r, ev->u.propose.requests, ev->u.propose.n_requests);
        break;
    case PX_EV_PERSISTED:
        px_persisted(r, ev->u.persist_id);
        px_on_persisted_acceptor(r);
        break;
    case PX_EV_SNAPSHOT_INSTALLED:
        px_on_snapshot_installed(r, ev->u.snapshot.index,
                                 &ev->u.snapshot.members,
                                 ev->u.snapshot.hash);
        break;
    case PX_EV_CHECKPOINT:
        if (r->role == PX_LEADER) {
            r->checkpoint = ev->u.checkpoint;
            r->checkpoint_pending = true;
        }
        break;
    case PX_EV_READ_INDEX:
        px_on_read_index(r, ev->u.read_token, 0);
        break;
    case PX_EV_READ_BATCH:
        for (uint32_t i = 0; i < ev->u.reads.n; i++)
            px_on_read_index(r, ev->u.reads.tokens[i], 0);
        break;
    case PX_EV_CHANGE_MEMBERS:
        px_change_members(r, ev);
        break;
    case PX_EV_TRANSFER:
        px_transfer_start(r, ev->u.transfer_to);
        break;
    default:
        break;
    }

    if (r->role == PX_LEADER)
        px_leader_tick(r);
    else if (r->recovering)
        px_recovery_tick(r);
    else
        px_election_tick(r);
    px_leader_pump(r);
    px_forward_pump(r);
    px_reads_pump(r);
    px_fl_answer(r);
    px_fl_renew(r);
    px_recovery_check(r);

    uint64_t persist_id = r->cur_persist_id;
    px_persist_finish(r);
    r->cur_persist_id = persist_id;
    px_out_publish(r, out);
    r->cur_persist_id = 0;
    out->next_tick_ms = r->wake_ms = px_next_tick(r);
    return r->out.error;
}

/* ------------------------------------------------------ status, stats */

void px_set_chain_head(px_replica *r, uint64_t index,
                       const uint8_t hash[PX_HASH_BYTES])
{
    if (!r)
        return;
    r->chain_index = index;
    if (hash)
        memcpy(r->chain_hash, hash, PX_HASH_BYTES);
}

void px_set_chain_base(px_replica *r, uint64_t base)
{
    if (r && base > r->chain_base)
        r->chain_base = base;
}

uint64_t px_chain_base(const px_replica *r)
{
    return r ? r->chain_base : 0;
}

uint8_t px_role(const px_replica *r)
{
    return r ? r->role : PX_FOLLOWER;
}

uint64_t px_leader_contact_ms(const px_replica *r)
{
    if (!r)
        return 0;
    if (r->role == PX_LEADER)
        return r->now_ms;
    return r->leader_id ? r->last_leader_contact_ms : 0;
}

uint64_t px_retained_bytes(const px_replica *r)
{
    return r ? r->retained_bytes : 0;
}

void px_get_status(const px_replica *r, px_status *st)
{
    memset(st, 0, sizeof(*st));
    if (!r)
        return;
    st->self_id = r->self;
    st->role = r->role;
    st->leader_id = r->leader_id;
    st->ballot = r->ballot;
    st->promise = r->promise;
    st->commit_index = r->commit;
    st->applied_index = r->commit;
    st->first_retained = r->first_retained;
    st->members = r->members;
    st->pending_requests = r->q.count;
    st->read_lease = px_lease_valid(r);
    if (st->read_lease && r->lease_until_ms > r->now_ms)
        st->lease_ms_left = r->lease_until_ms - r->now_ms;
    st->follower_lease = px_fl_holds(r, r->now_ms);
    if (st->follower_lease)
        st->follower_lease_ms_left = r->fl_until_ms - r->now_ms;
    for (uint32_t i = 0; i < PX_FL_GRANTS; i++)
        st->leases_granted += r->fl_grants[i].id &&
                              r->fl_grants[i].until_ms > r->now_ms;
    if (r->role == PX_LEADER && r->next_slot > r->commit + 1)
        st->slots_in_flight = (uint32_t)(r->next_slot - 1 - r->commit);
    st->suspended = r->suspended;
    st->config_slot = r->config_slot;
    st->transfer_to = r->transfer_to;
    st->recovering = r->recovering;
    if (r->recovering) {
        st->recovery_ballot = r->rec_ballot;
        st->recovery_needed = 0;
        for (uint32_t i = 0; i < r->n_peers; i++) {
            st->recovery_needed += r->peers[i].voter;
            st->recovery_promised += r->peers[i].voter &&
                                     r->peers[i].rec_promised;
        }
        if (r->rec_phase == PX_REC_WAIT)
            st->recovery_slot = r->rec_slot;
    }
    if (r->role == PX_LEADER) {
        st->n_peers = r->n_peers;
        for (uint32_t i = 0; i < r->n_peers; i++) {
            st->peers[i].id = r->peers[i].id;
            st->peers[i].match_index = r->peers[i].match;
            st->peers[i].last_contact_ms = r->peers[i].last_contact_ms;
        }
    }
}

void px_get_stats(const px_replica *r, px_stats *st)
{
    if (!r) {
        memset(st, 0, sizeof(*st));
        return;
    }
    *st = r->stats;
}
