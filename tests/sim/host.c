/*
 * host.c - owns the emulation of one paxosfs node around a px_replica:
 * its "disk", its sync pipeline, its applied state and its timer.
 *
 * Storage model:
 *   durable  - d_promise and d_accepts (the acceptor store) and the chain
 *              up to `synced`: the applied state (kv, index, head hash,
 *              members) as of that index.  Without the profile's chain_lag
 *              the chain is synced at every apply (synced == applied); with
 *              it, syncs happen now and then, a crash loses the applied
 *              tail above `synced` (the kv is rebuilt to it), and the
 *              acceptor store keeps accepted values above `synced` only
 *              (chain.h: the chain is synced before acceptor_compact).
 *   volatile - the replica itself, the sync pipeline (outputs whose
 *              persist step is not yet durable: their messages, commits and
 *              reads), the timer, and every client waiting here.
 *   A crash destroys everything volatile; a restart calls px_create with a
 *   px_restore built from the durable part.  The sickdisk profile's disks
 *   fail for a while: the host stays up, its sync pipeline is lost as in
 *   a crash, its replica is suspended (px_suspend: it must put out no
 *   message, persist or commit), and when the disk works again a new
 *   replica is built from the durable part, with the applied index of the
 *   durable chain (`synced`) while the kv keeps what it applied: the
 *   blocks in between come again and are skipped, as net/node.c does.  The amnesia profile's crashes
 *   may also lose the acceptor store (promise and accepts) or roll the
 *   node back to the copy of its durable state taken at its last start;
 *   both are detected (d_recovering), so the node restarts recovering
 *   (consensus/recovery.c) and must cast no vote until it has recovered.
 *
 * Sync pipeline (group commit):
 *
 *     px_step --out--> [gather] --start_sync--> [inflight] --FSYNC event-->
 *        persist union, then per output: send, apply, reads, failures,
 *        snapshot requests; then report each persist_id (PX_EV_PERSISTED)
 *
 *   An output goes straight through (no copy) when both queues are empty
 *   and it has nothing to persist or sync latency is zero.
 *
 * Invariants:
 *   1. No message of an output leaves before that output's promise and
 *      accepts are in d_promise/d_accepts (px.h ordering, DESIGN.md
 *      invariant 2).
 *   2. Outputs are processed in the order px_step produced them (FIFO), so
 *      committed entries reach the kv in slot order.
 *   3. A px_output is never touched after the next px_step on the same
 *      replica: the direct path finishes with it before reporting, and the
 *      queued path holds deep copies.  Client callbacks never step a
 *      replica synchronously (clients react through events).
 *   4. d_accepts holds only slots above `synced` once a batch of commits
 *      is processed (the synced chain covers the rest); synced <= applied.
 *   5. Every event carries the host epoch it was made for; a crash bumps the
 *      epoch, so timers and syncs of a dead incarnation do nothing.
 *   6. A suspended replica (sick disk) puts out no message, no persist step
 *      and no committed entry, and never leads (checked in sim_output).
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SIM_PERSISTED_CHAIN_MAX 100000 /* report loops per event */

/* ----------------------------------------------------- pending outputs */

static void sim_entries_free(px_entry *e, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free((void *)e[i].data);
    free(e);
}

static void sim_pending_free(sim_pending *p)
{
    if (!p)
        return;
    sim_entries_free(p->accepts, p->n_accepts);
    for (uint32_t i = 0; i < p->n_msgs; i++)
        free(p->msgs[i]);
    free(p->msgs);
    sim_entries_free(p->committed, p->n_committed);
    free(p->reads);
    free(p->failed);
    free(p);
}

static int sim_entries_copy(const px_entry *src, uint32_t n, px_entry **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    px_entry *e = calloc(n, sizeof(*e));
    if (!e)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        e[i] = src[i];
        uint8_t *d = malloc(src[i].len ? src[i].len : 1);
        if (!d) {
            sim_entries_free(e, i);
            return -ENOMEM;
        }
        if (src[i].len)
            memcpy(d, src[i].data, src[i].len);
        e[i].data = d;
    }
    *out = e;
    return 0;
}

static sim_pending *sim_pending_copy(const px_output *o)
{
    sim_pending *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->persist_promise = o->persist_promise;
    p->promise = o->promise;
    p->persist_id = o->persist_id;
    p->snapshot_to = o->snapshot_to;
    p->snapshot_from = o->snapshot_from;
    if (sim_entries_copy(o->accepts, o->n_accepts, &p->accepts) < 0)
        goto free_pending;
    p->n_accepts = o->n_accepts;
    if (sim_entries_copy(o->committed, o->n_committed, &p->committed) < 0)
        goto free_pending;
    p->n_committed = o->n_committed;
    if (o->n_msgs) {
        p->msgs = calloc(o->n_msgs, sizeof(*p->msgs));
        if (!p->msgs)
            goto free_pending;
        for (uint32_t i = 0; i < o->n_msgs; i++) {
            p->msgs[i] = px_msg_copy(&o->msgs[i]);
            if (!p->msgs[i])
                goto free_pending;
            p->n_msgs = i + 1;
        }
    }
    if (o->n_reads) {
        p->reads = malloc(o->n_reads * sizeof(*p->reads));
        if (!p->reads)
            goto free_pending;
        memcpy(p->reads, o->reads, o->n_reads * sizeof(*p->reads));
        p->n_reads = o->n_reads;
    }
    if (o->n_failed) {
        p->failed = malloc(o->n_failed * sizeof(*p->failed));
        if (!p->failed)
            goto free_pending;
        memcpy(p->failed, o->failed, o->n_failed * sizeof(*p->failed));
        p->n_failed = o->n_failed;
    }
    return p;

free_pending:
    sim_pending_free(p);
    return NULL;
}

static void sim_pending_list_free(sim_pending *p)
{
    while (p) {
        sim_pending *next = p->next;
        sim_pending_free(p);
        p = next;
    }
}

/* ------------------------------------------------------- durable store */

/* Insert or replace the durable accepted value of e->slot. */
static int sim_durable_accept(sim_host *h, const px_entry *e)
{
    if (e->slot <= h->synced)
        return 0;                        /* the synced chain holds it */
    uint32_t lo = 0, hi = h->d_n;
    if (h->d_n && h->d_accepts[h->d_n - 1].slot < e->slot) {
        lo = h->d_n;                     /* common case: append */
    } else {
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (h->d_accepts[mid].slot < e->slot)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    uint8_t *d = malloc(e->len ? e->len : 1);
    if (!d)
        return -ENOMEM;
    if (e->len)
        memcpy(d, e->data, e->len);
    if (lo < h->d_n && h->d_accepts[lo].slot == e->slot) {
        free((void *)h->d_accepts[lo].data);
        h->d_accepts[lo] = *e;
        h->d_accepts[lo].data = d;
        return 0;
    }
    if (h->d_n == h->d_cap) {
        uint32_t cap = h->d_cap ? h->d_cap * 2 : 64;
        px_entry *v = realloc(h->d_accepts, cap * sizeof(*v));
        if (!v) {
            free(d);
            return -ENOMEM;
        }
        h->d_accepts = v;
        h->d_cap = cap;
    }
    memmove(&h->d_accepts[lo + 1], &h->d_accepts[lo],
            (h->d_n - lo) * sizeof(*h->d_accepts));
    h->d_accepts[lo] = *e;
    h->d_accepts[lo].data = d;
    h->d_n++;
    return 0;
}

static void sim_durable_compact(sim_host *h)
{
    uint32_t k = 0;
    while (k < h->d_n && h->d_accepts[k].slot <= h->synced)
        free((void *)h->d_accepts[k++].data);
    if (k) {
        memmove(h->d_accepts, h->d_accepts + k,
                (h->d_n - k) * sizeof(*h->d_accepts));
        h->d_n -= k;
    }
}

static void sim_persist(sim_world *w, sim_host *h, bool persist_promise,
                        px_ballot promise, const px_entry *accepts,
                        uint32_t n_accepts)
{
    if (persist_promise) {
        if (px_ballot_cmp(promise, h->d_promise) < 0)
            sim_violation(w, "node %u persisted promise (%llu,%u) below "
                          "durable (%llu,%u)", h->id,
                          (unsigned long long)promise.round, promise.node_id,
                          (unsigned long long)h->d_promise.round,
                          h->d_promise.node_id);
        h->d_promise = promise;
    }
    for (uint32_t i = 0; i < n_accepts; i++)
        if (sim_durable_accept(h, &accepts[i]) < 0)
            sim_violation(w, "node %u: out of memory persisting", h->id);
    if (persist_promise || n_accepts) {
        sim_trace_rec r = {.kind = SIM_TR_PERSIST, .ballot = promise,
                           .n = n_accepts,
                           .slot = n_accepts ? accepts[0].slot : 0,
                           .aux = n_accepts ? accepts[n_accepts - 1].slot : 0};
        sim_trace_add(w, h->id, &r);
    }
}

/* --------------------------------------------------------------- apply */

typedef struct sim_apply_ctx {
    sim_world *w;
    sim_host *h;
} sim_apply_ctx;

static void sim_apply_result(void *arg, uint64_t client_id, uint64_t seq,
                             int32_t result, uint64_t slot)
{
    sim_apply_ctx *c = arg;
    sim_check_result(c->w, c->h->id, client_id, seq, result, slot);
    sim_client_on_write(c->w, client_id, seq, result, c->h->id);
}

static void sim_ignore_result(void *arg, uint64_t client_id, uint64_t seq,
                              int32_t result, uint64_t slot)
{
    (void)arg;
    (void)client_id;
    (void)seq;
    (void)result;
    (void)slot;
}

static void sim_serve_reads(sim_world *w, sim_host *h)
{
    if (h->granted_reads == 0)
        return;
    for (uint32_t ci = 0; ci < w->n_clients; ci++) {
        sim_client *c = &w->clients[ci];
        for (uint32_t i = 0; i < c->window; i++) {
            sim_op *op = &c->ops[i];
            if (!op->busy || op->type != SIM_OP_GET || !op->read_granted ||
                op->node != h->id || op->node_epoch != h->epoch ||
                op->read_index > h->applied)
                continue;
            size_t klen;
            const char *key = sim_key_name(op->key, &klen);
            h->granted_reads--;
            op->read_granted = false;
            sim_client_on_read(w, op->read_token, 0,
                               kv_get(h->kv, key, klen), h->id);
        }
    }
}

static void sim_apply_one(sim_world *w, sim_host *h, const px_entry *e)
{
    if (e->slot <= h->applied)
        return;                          /* covered by a snapshot */
    if (e->slot != h->applied + 1) {
        sim_violation(w, "node %u: committed slot %llu after applied %llu",
                      h->id, (unsigned long long)e->slot,
                      (unsigned long long)h->applied);
        return;
    }
    sim_apply_ctx ctx = {w, h};
    int rc = kv_apply_entry(h->kv, e, sim_apply_result, &ctx);
    if (rc < 0) {
        sim_violation(w, "node %u: kv_apply_entry(slot %llu) = %d", h->id,
                      (unsigned long long)e->slot, rc);
        return;
    }
    chain_hash_block(h->head_hash, e->slot, e->time_ms, e->kind, e->data,
                     e->len, h->head_hash);
    h->applied = e->slot;
    if (e->kind == PX_ENTRY_CONFIG) {
        px_members m;
        if (px_members_decode(e->data, e->len, &m) == 0)
            h->members = m;
    }
    sim_check_applied(w, h->id, e, h->head_hash);
}

static void sim_apply(sim_world *w, sim_host *h, const px_entry *e,
                      uint32_t n)
{
    if (n == 0)
        return;
    for (uint32_t i = 0; i < n; i++)
        sim_apply_one(w, h, &e[i]);
    sim_trace_rec r = {.kind = SIM_TR_COMMIT, .slot = e[0].slot,
                       .aux = e[n - 1].slot, .n = n};
    sim_trace_add(w, h->id, &r);
    if (h->px)
        px_set_chain_head(h->px, h->applied, h->head_hash);
    /* the chain is synced in the background: with chain_lag the synced
     * head trails the applied one until a sync happens to run */
    if (!w->cfg.profile->chain_lag || sim_rng_below(&w->rng, 4) == 0)
        h->synced = h->applied;
    sim_durable_compact(h);
    sim_serve_reads(w, h);
}

/* ------------------------------------------------------------- outputs */

static sim_op *sim_op_for_token(sim_world *w, uint64_t token)
{
    uint32_t ci = (uint32_t)(token >> 48), oi = (uint32_t)(token >> 40) & 0xff;
    if (ci >= w->n_clients || oi >= w->clients[ci].window)
        return NULL;
    sim_op *op = &w->clients[ci].ops[oi];
    return op->busy && op->read_token == token ? op : NULL;
}

static void sim_reads(sim_world *w, sim_host *h, const px_read_ready *rd,
                      uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        sim_op *op = sim_op_for_token(w, rd[i].read_token);
        sim_trace_note(w, h->id, SIM_TR_READ, rd[i].status ? "read refused"
                       : "read granted", rd[i].index, 0);
        if (!op || op->node != h->id || op->node_epoch != h->epoch ||
            op->read_granted)
            continue;
        if (rd[i].status != 0) {
            sim_client_on_read(w, rd[i].read_token, rd[i].status, NULL,
                               h->id);
            continue;
        }
        op->read_granted = true;
        op->read_index = rd[i].index;
        h->granted_reads++;
    }
    sim_serve_reads(w, h);
}

static void sim_snapshot_requests(sim_world *w, sim_host *h, uint32_t to,
                                  uint32_t from)
{
    if (to && to <= w->cfg.nodes && to != h->id) {
        sim_trace_note(w, h->id, SIM_TR_SNAPSHOT, "snapshot sent", h->applied,
                       to);
        sim_schedule(w, w->now_ms + sim_net_delay(w), SIM_EV_SNAPSHOT, to,
                     h->applied, h->id);
    }
    if (from && from <= w->cfg.nodes && from != h->id) {
        sim_host *src = &w->hosts[from];
        if (src->alive && !w->cut[from][h->id]) {
            sim_trace_note(w, h->id, SIM_TR_SNAPSHOT, "snapshot asked",
                           src->applied, from);
            sim_schedule(w, w->now_ms + 2 * sim_net_delay(w),
                         SIM_EV_SNAPSHOT, h->id, src->applied, from);
        }
    }
}

static void sim_failed(sim_world *w, sim_host *h, const px_request_failed *f,
                       uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        sim_client_on_write_failed(w, f[i].client_id, f[i].seq, f[i].status,
                                   h->id);
}

/* Steps 2, 4, 5 and the rest of one output (step 1 done by the caller). */
static void sim_after_persist(sim_world *w, sim_host *h, px_msg *const *qmsgs,
                              const px_msg *msgs, uint32_t n_msgs,
                              const px_entry *committed, uint32_t n_committed,
                              const px_read_ready *reads, uint32_t n_reads,
                              const px_request_failed *failed,
                              uint32_t n_failed, uint32_t snap_to,
                              uint32_t snap_from)
{
    for (uint32_t i = 0; i < n_msgs; i++) {
        const px_msg *m = qmsgs ? qmsgs[i] : &msgs[i];
        sim_trace_msg(w, h->id, SIM_TR_MSG_OUT, m);
        sim_net_send(w, m);
    }
    sim_apply(w, h, committed, n_committed);
    sim_reads(w, h, reads, n_reads);
    sim_failed(w, h, failed, n_failed);
    sim_snapshot_requests(w, h, snap_to, snap_from);
}

static void sim_start_sync(sim_world *w, sim_host *h)
{
    if (h->inflight || !h->gather)
        return;
    h->inflight = h->gather;
    h->inflight_tail = h->gather_tail;
    h->gather = h->gather_tail = NULL;
    uint64_t delay = sim_rng_range(&w->rng, 0, w->cfg.profile->fsync_max_ms);
    sim_schedule(w, w->now_ms + delay, SIM_EV_FSYNC, h->id, h->epoch, 0);
}

static void sim_arm_timer(sim_world *w, sim_host *h, uint64_t next_ms)
{
    if (next_ms == 0)
        return;
    if (next_ms < w->now_ms)
        next_ms = w->now_ms;
    if (h->timer_at_ms && h->timer_at_ms <= next_ms)
        return;
    h->timer_at_ms = next_ms;
    h->timer_gen++;
    sim_schedule(w, next_ms, SIM_EV_TIMER, h->id, h->epoch, h->timer_gen);
}

static bool sim_has_persist(const px_output *o)
{
    return o->persist_promise || o->n_accepts || o->persist_id;
}

/* Handle one output; returns the persist_id to report now (0 = none). */
static uint64_t sim_output(sim_world *w, sim_host *h, const px_output *o)
{
    for (uint32_t i = 0; i < o->n_committed; i++)
        sim_check_committed(w, h->id, &o->committed[i]);
    if (o->recovered) {
        h->d_recovering = false;
        sim_trace_note(w, h->id, SIM_TR_FAULT, "recovered, voting again",
                       h->applied, 0);
    }
    if (px_recovering(h->px))
        for (uint32_t i = 0; i < o->n_msgs; i++)
            if (o->msgs[i].type == PX_MSG_PROMISE ||
                o->msgs[i].type == PX_MSG_ACCEPTED ||
                o->msgs[i].type == PX_MSG_REJECT ||
                o->msgs[i].type == PX_MSG_HEARTBEAT_ACK)
                sim_violation(w, "node %u voted (message type %u) while "
                              "recovering lost acceptor state", h->id,
                              o->msgs[i].type);
    if (px_suspended(h->px) &&
        (o->n_msgs || sim_has_persist(o) || o->n_committed ||
         px_role(h->px) == PX_LEADER || px_role(h->px) == PX_CANDIDATE))
        sim_violation(w, "node %u took part while its disk failed: %u "
                      "messages, persist %d, %u committed, role %u", h->id,
                      o->n_msgs, sim_has_persist(o), o->n_committed,
                      px_role(h->px));
    sim_arm_timer(w, h, o->next_tick_ms);
    if (!h->inflight && !h->gather &&
        (!sim_has_persist(o) || w->cfg.profile->fsync_max_ms == 0)) {
        sim_persist(w, h, o->persist_promise, o->promise, o->accepts,
                    o->n_accepts);
        sim_after_persist(w, h, NULL, o->msgs, o->n_msgs, o->committed,
                          o->n_committed, o->reads, o->n_reads, o->failed,
                          o->n_failed, o->snapshot_to, o->snapshot_from);
        return o->persist_id;
    }
    sim_pending *p = sim_pending_copy(o);
    if (!p) {
        sim_violation(w, "node %u: out of memory copying an output", h->id);
        return 0;
    }
    if (h->gather_tail)
        h->gather_tail->next = p;
    else
        h->gather = p;
    h->gather_tail = p;
    sim_start_sync(w, h);
    return 0;
}

/* px_step plus the PERSISTED reports that the direct path makes. */
static int sim_step(sim_world *w, sim_host *h, const px_event *first)
{
    px_event ev = *first;
    for (uint32_t i = 0; i < SIM_PERSISTED_CHAIN_MAX; i++) {
        px_output out;
        memset(&out, 0, sizeof(out));
        ev.now_ms = w->now_ms;
        int rc = px_step(h->px, &ev, &out);
        w->stats.steps++;
        if (rc < 0) {
            sim_violation(w, "node %u: px_step(type %u) = %d", h->id,
                          ev.type, rc);
            return rc;
        }
        uint64_t id = sim_output(w, h, &out);
        if (!id || !h->alive)
            return 0;
        ev = (px_event){.type = PX_EV_PERSISTED, .u.persist_id = id};
    }
    sim_violation(w, "node %u: endless persist chain", h->id);
    return -ELOOP;
}

static void sim_sync_done(sim_world *w, sim_host *h)
{
    sim_pending *list = h->inflight;
    h->inflight = h->inflight_tail = NULL;
    for (sim_pending *p = list; p; p = p->next)
        sim_persist(w, h, p->persist_promise, p->promise, p->accepts,
                    p->n_accepts);
    for (sim_pending *p = list; p; p = p->next)
        sim_after_persist(w, h, p->msgs, NULL, p->n_msgs, p->committed,
                          p->n_committed, p->reads, p->n_reads, p->failed,
                          p->n_failed, p->snapshot_to, p->snapshot_from);
    for (sim_pending *p = list; p && h->alive; p = p->next) {
        if (!p->persist_id)
            continue;
        px_event ev = {.type = PX_EV_PERSISTED, .u.persist_id = p->persist_id};
        sim_step(w, h, &ev);
    }
    sim_pending_list_free(list);
    sim_start_sync(w, h);
}

/* ----------------------------------------------------------- snapshots */

/* Replace h's applied state by the committed log's prefix 1..index,
 * rebuilt on a fresh kv (kv has no snapshot encoding; the checkers prove
 * every replica's applied log equals the recorded one, see check.c).
 * Requests above h->applied are answered to waiting clients when `answer`.
 * Returns 0 or a negative errno (a violation is recorded). */
static int sim_rebuild(sim_world *w, sim_host *h, uint64_t index, bool answer)
{
    kv *fresh = kv_create();
    if (!fresh) {
        sim_violation(w, "node %u: kv_create failed", h->id);
        return -ENOMEM;
    }
    uint8_t hash[PX_HASH_BYTES] = {0};
    px_members members = w->members;
    sim_apply_ctx ctx = {w, h};
    for (uint64_t s = 1; s <= index; s++) {
        if (s >= w->check.n_slots || !w->check.slots[s].known) {
            sim_violation(w, "rebuild of node %u to %llu: slot %llu was "
                          "never committed", h->id,
                          (unsigned long long)index, (unsigned long long)s);
            kv_destroy(fresh);
            return -EINVAL;
        }
        const px_entry *e = &w->check.slots[s].entry;
        bool fresh_slot = answer && s > h->applied;
        int rc = kv_apply_entry(fresh, e, fresh_slot ? sim_apply_result
                                : sim_ignore_result, &ctx);
        if (rc < 0) {
            sim_violation(w, "rebuild: kv_apply_entry = %d", rc);
            kv_destroy(fresh);
            return rc;
        }
        chain_hash_block(hash, e->slot, e->time_ms, e->kind, e->data, e->len,
                         hash);
        if (e->kind == PX_ENTRY_CONFIG)
            px_members_decode(e->data, e->len, &members);
        if (fresh_slot)
            sim_check_applied(w, h->id, e, hash);
    }
    kv_destroy(h->kv);
    h->kv = fresh;
    h->applied = index;
    memcpy(h->head_hash, hash, sizeof(hash));
    h->members = members;
    return 0;
}

static void sim_snapshot_install(sim_world *w, sim_host *h, uint64_t index,
                                 uint32_t from)
{
    if (index <= h->applied) {
        sim_trace_note(w, h->id, SIM_TR_SNAPSHOT, "stale snapshot ignored",
                       index, from);
        return;
    }
    if (sim_rebuild(w, h, index, true) < 0)
        return;
    h->synced = index;                   /* a snapshot is written durably */
    sim_durable_compact(h);
    sim_trace_note(w, h->id, SIM_TR_SNAPSHOT, "snapshot installed", index,
                   from);
    px_set_chain_head(h->px, h->applied, h->head_hash);
    px_event ev = {.type = PX_EV_SNAPSHOT_INSTALLED,
                   .u.snapshot = {.index = index, .members = h->members}};
    sim_step(w, h, &ev);
    if (h->alive)
        sim_serve_reads(w, h);
}

/* --------------------------------------------------------- life cycle */

int sim_host_init(sim_world *w, sim_host *h, uint32_t id)
{
    memset(h, 0, sizeof(*h));
    h->id = id;
    h->kv = kv_create();
    if (!h->kv)
        return -ENOMEM;
    h->members = w->members;
    px_options_default(&h->opt, id);
    h->opt.members = w->members;
    h->opt.heartbeat_interval_ms = 50;
    h->opt.election_timeout_min_ms = 300;
    h->opt.election_timeout_max_ms = 600;
    h->opt.retry_interval_ms = 100;
    h->opt.batch_max_requests = w->cfg.batch_max_requests;
    if (w->cfg.window_slots)
        h->opt.window_slots = w->cfg.window_slots;
    if (w->cfg.retain_slots)
        h->opt.retain_slots = w->cfg.retain_slots;
    return 0;
}

void sim_host_free(sim_host *h)
{
    if (h->px)
        px_destroy(h->px);
    h->px = NULL;
    sim_pending_list_free(h->inflight);
    sim_pending_list_free(h->gather);
    for (uint32_t i = 0; i < h->n_deferred; i++)
        free(h->deferred[i].msg);
    free(h->deferred);
    sim_entries_free(h->d_accepts, h->d_n);
    sim_entries_free(h->b_accepts, h->b_n);
    if (h->kv)
        kv_destroy(h->kv);
    memset(h, 0, sizeof(*h));
}

/* The copy of the durable state that a rollback fault restores. */
static void sim_backup(sim_world *w, sim_host *h)
{
    sim_entries_free(h->b_accepts, h->b_n);
    h->b_accepts = NULL;
    h->b_n = 0;
    if (sim_entries_copy(h->d_accepts, h->d_n, &h->b_accepts) < 0) {
        sim_violation(w, "node %u: out of memory copying its state", h->id);
        return;
    }
    h->b_n = h->d_n;
    h->b_promise = h->d_promise;
    h->b_synced = h->synced;
}

int sim_host_start(sim_world *w, sim_host *h)
{
    if (w->cfg.profile->amnesia && !h->d_recovering)
        sim_backup(w, h);
    px_restore rs = {.promise = h->d_promise, .applied_index = h->applied,
                     .members = h->members, .n_accepts = h->d_n,
                     .accepts = h->d_accepts, .recovering = h->d_recovering};
    h->opt.seed = w->cfg.seed * 1000003u + h->id * 7919u + h->epoch;
    int rc = px_create(&h->opt, &rs, &h->px);
    if (rc < 0) {
        sim_violation(w, "node %u: px_create = %d", h->id, rc);
        return rc;
    }
    /* a simulated host keeps no chain to serve catch-up from: below the
     * retained log, a peer gets a snapshot */
    px_set_chain_base(h->px, UINT64_MAX);
    h->alive = true;
    h->paused = false;
    h->sick = false;
    h->timer_at_ms = 0;
    h->granted_reads = 0;
    if (h->applied)
        px_set_chain_head(h->px, h->applied, h->head_hash);
    sim_trace_note(w, h->id, SIM_TR_FAULT, h->epoch ? "restart" : "start",
                   h->applied, 0);
    px_event ev = {.type = PX_EV_TICK};
    return sim_step(w, h, &ev);
}

void sim_host_crash(sim_world *w, sim_host *h)
{
    if (!h->alive)
        return;
    sim_trace_note(w, h->id, SIM_TR_FAULT, "crash", h->applied, 0);
    px_destroy(h->px);
    h->px = NULL;
    if (h->applied > h->synced) {
        /* the unsynced chain tail is lost: back to the synced head */
        sim_trace_note(w, h->id, SIM_TR_FAULT, "chain tail lost, back to",
                       h->synced, 0);
        sim_rebuild(w, h, h->synced, false);
    }
    h->alive = false;
    h->paused = false;
    h->sick = false;
    h->epoch++;
    sim_pending_list_free(h->inflight);
    sim_pending_list_free(h->gather);
    h->inflight = h->inflight_tail = h->gather = h->gather_tail = NULL;
    for (uint32_t i = 0; i < h->n_deferred; i++)
        free(h->deferred[i].msg);
    h->n_deferred = 0;
    h->timer_at_ms = 0;
    h->granted_reads = 0;
}

void sim_host_lose_state(sim_world *w, sim_host *h, bool rollback)
{
    if (!h->alive)
        return;
    sim_host_crash(w, h);
    sim_entries_free(h->d_accepts, h->d_n);
    h->d_accepts = NULL;
    h->d_n = h->d_cap = 0;
    h->d_promise = (px_ballot){0, 0};
    if (rollback && h->b_synced <= h->applied) {
        /* the whole backing directory as it was at the last start */
        if (sim_entries_copy(h->b_accepts, h->b_n, &h->d_accepts) < 0) {
            sim_violation(w, "node %u: out of memory restoring", h->id);
            return;
        }
        h->d_n = h->d_cap = h->b_n;
        h->d_promise = h->b_promise;
        if (h->b_synced < h->applied)
            sim_rebuild(w, h, h->b_synced, false);
        h->synced = h->b_synced;
    }
    h->d_recovering = true;
    sim_trace_note(w, h->id, SIM_TR_FAULT,
                   rollback ? "rolled back to an older copy, back to"
                            : "acceptor store lost; chain kept at",
                   h->applied, 0);
}

void sim_host_disk_fail(sim_world *w, sim_host *h)
{
    if (!h->alive || h->sick)
        return;
    sim_trace_note(w, h->id, SIM_TR_FAULT, "disk fails", h->applied, 0);
    h->sick = true;
    h->sick_gen++;
    /* what the pipeline held never became durable: as in a crash, its
     * messages never leave and its commits are learned again */
    sim_pending_list_free(h->inflight);
    sim_pending_list_free(h->gather);
    h->inflight = h->inflight_tail = h->gather = h->gather_tail = NULL;
    px_suspend(h->px);
    px_event ev = {.type = PX_EV_TICK};
    sim_step(w, h, &ev);
}

void sim_host_disk_ok(sim_world *w, sim_host *h)
{
    if (!h->alive || !h->sick)
        return;
    px_destroy(h->px);
    h->px = NULL;
    h->sick = false;
    h->epoch++;                          /* the old replica's timers */
    h->timer_at_ms = 0;
    h->granted_reads = 0;
    /* the durable chain ends at `synced`; accepts above it are kept */
    uint32_t first = 0;
    while (first < h->d_n && h->d_accepts[first].slot <= h->synced)
        first++;
    px_restore rs = {.promise = h->d_promise, .applied_index = h->synced,
                     .members = h->members, .n_accepts = h->d_n - first,
                     .accepts = h->d_accepts + first,
                     .recovering = h->d_recovering};
    h->opt.seed = w->cfg.seed * 1000003u + h->id * 7919u + h->epoch;
    int rc = px_create(&h->opt, &rs, &h->px);
    if (rc < 0) {
        sim_violation(w, "node %u: px_create = %d", h->id, rc);
        h->alive = false;
        return;
    }
    px_set_chain_base(h->px, UINT64_MAX);   /* as at the start */
    sim_trace_note(w, h->id, SIM_TR_FAULT, "disk works again, chain at",
                   h->synced, 0);
    px_event ev = {.type = PX_EV_TICK};
    sim_step(w, h, &ev);
}

int sim_host_event(sim_world *w, sim_host *h, const sim_event *ev)
{
    switch (ev->kind) {
    case SIM_EV_DELIVER: {
        if (!h->alive)
            return 0;
        sim_trace_msg(w, h->id, SIM_TR_MSG_IN, ev->msg);
        px_event pe = {.type = PX_EV_RECEIVE, .u.msg = ev->msg};
        return sim_step(w, h, &pe);
    }
    case SIM_EV_TIMER: {
        if (!h->alive || ev->a != h->epoch || ev->b != h->timer_gen)
            return 0;
        h->timer_at_ms = 0;
        if (h->last_tick_ms == w->now_ms) {
            if (++h->same_ms_ticks > SIM_SAME_MS_TICKS) {
                sim_violation(w, "node %u: timer livelock at %llu ms", h->id,
                              (unsigned long long)w->now_ms);
                return -ELOOP;
            }
        } else {
            h->same_ms_ticks = 0;
            h->last_tick_ms = w->now_ms;
        }
        px_event pe = {.type = PX_EV_TICK};
        return sim_step(w, h, &pe);
    }
    case SIM_EV_FSYNC:
        if (h->alive && ev->a == h->epoch)
            sim_sync_done(w, h);
        return 0;
    case SIM_EV_SNAPSHOT:
        if (h->alive && !h->sick)        /* a sick disk stores nothing */
            sim_snapshot_install(w, h, ev->a, (uint32_t)ev->b);
        return 0;
    default:
        return -EINVAL;
    }
}

int sim_host_propose(sim_world *w, sim_host *h, const px_request *req)
{
    if (!h->alive || h->paused)
        return -EHOSTDOWN;
    sim_trace_note(w, h->id, SIM_TR_PROPOSE, "propose", req->seq,
                   (uint32_t)req->client_id);
    px_event ev = {.type = PX_EV_PROPOSE,
                   .u.propose = {.requests = req, .n_requests = 1}};
    return sim_step(w, h, &ev);
}

int sim_host_read(sim_world *w, sim_host *h, uint64_t token)
{
    if (!h->alive || h->paused)
        return -EHOSTDOWN;
    sim_trace_note(w, h->id, SIM_TR_READ, "read index", token & 0xffffffffffu,
                   (uint32_t)(token >> 48) + 1);
    px_event ev = {.type = PX_EV_READ_INDEX, .u.read_token = token};
    return sim_step(w, h, &ev);
}
