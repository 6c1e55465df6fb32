/*
 * px_harness.h - a tiny in-memory cluster of Multi-Paxos replicas for the
 * unit tests of consensus/: a durable store per node, a FIFO network the
 * test delivers, drops or cuts by hand, virtual time, and a check that
 * every slot applied anywhere holds one value.  Included by exactly one
 * test file per binary (its functions are static); the binary is linked
 * with --wrap=malloc,calloc,realloc (Makefile) for the failing-allocation
 * hooks.
 */
#ifndef PAXOSFS_TESTS_PX_HARNESS_H
#define PAXOSFS_TESTS_PX_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../consensus/px.h"

#define MAXN 7
#define NETQ 20000
#define MAXLOG 4096

typedef struct hentry {
    uint64_t slot, time_ms;
    uint8_t kind;
    uint32_t len;
    uint8_t *data;
} hentry;

typedef struct hnode {
    uint32_t id;
    px_replica *r;
    px_options opt;
    bool down, cut, hold;
    uint64_t held[4096];
    uint32_t n_held;
    /* durable */
    px_ballot d_promise;
    px_entry *d_acc;
    uint32_t n_acc, cap_acc;
    uint64_t applied;
    px_members members;
    hentry log[MAXLOG];
    /* observed */
    px_read_ready reads[64];
    uint32_t n_reads;
    px_request_failed failed[64];
    uint32_t n_failed;
    uint32_t snap_to, snap_from;
    uint32_t catchup_to;           /* last catchup_to seen */
    uint64_t chain_base;           /* the host compacted up to here */
} hnode;

typedef struct cluster {
    hnode n[MAXN + 1];
    uint32_t count;
    px_msg *q[NETQ];
    uint32_t nq;
    uint64_t now;
    uint64_t rng;
    /* chaos: agreement across nodes */
    hentry truth[MAXLOG];
} cluster;

static inline uint64_t h_rand(cluster *c)
{
    c->rng = c->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return c->rng >> 33;
}

static inline void h_opts(px_options *o, uint32_t id, uint32_t nv)
{
    px_options_default(o, id);
    o->heartbeat_interval_ms = 10;
    o->election_timeout_min_ms = 100;
    o->election_timeout_max_ms = 200;
    o->retry_interval_ms = 50;
    o->window_slots = 8;
    o->retain_slots = 64;
    o->max_pending_requests = 64;
    o->seed = 1000 + id;
    o->members.n_voters = nv;
    for (uint32_t i = 0; i < nv; i++)
        o->members.voters[i] = i + 1;
}

static inline void h_accept_store(hnode *h, const px_entry *e)
{
    for (uint32_t i = 0; i < h->n_acc; i++)
        if (h->d_acc[i].slot == e->slot) {
            free((void *)h->d_acc[i].data);
            h->d_acc[i] = *e;
            h->d_acc[i].data = NULL;
            if (e->len) {
                uint8_t *d = malloc(e->len);
                memcpy(d, e->data, e->len);
                h->d_acc[i].data = d;
            }
            return;
        }
    if (h->n_acc == h->cap_acc) {
        h->cap_acc = h->cap_acc ? 2 * h->cap_acc : 64;
        h->d_acc = realloc(h->d_acc, h->cap_acc * sizeof(px_entry));
    }
    px_entry *x = &h->d_acc[h->n_acc++];
    *x = *e;
    x->data = NULL;
    if (e->len) {
        uint8_t *d = malloc(e->len);
        memcpy(d, e->data, e->len);
        x->data = d;
    }
}

static inline void h_apply(cluster *c, hnode *h, const px_entry *e)
{
    assert_int_equal(e->slot, h->applied + 1);
    assert_true(e->slot < MAXLOG);
    hentry *x = &h->log[e->slot];
    x->slot = e->slot;
    x->time_ms = e->time_ms;
    x->kind = e->kind;
    x->len = e->len;
    x->data = e->len ? malloc(e->len) : NULL;
    if (e->len)
        memcpy(x->data, e->data, e->len);
    h->applied = e->slot;
    if (e->kind == PX_ENTRY_CONFIG)
        assert_int_equal(px_config_decode(e->data, e->len, &h->members, NULL, NULL), 0);
    /* agreement: one value per slot across every node and restart */
    hentry *t = &c->truth[e->slot];
    if (!t->slot) {
        *t = *x;
        t->data = x->len ? malloc(x->len) : NULL;
        if (x->len)
            memcpy(t->data, x->data, x->len);
    } else {
        assert_int_equal(t->kind, x->kind);
        assert_int_equal(t->len, x->len);
        assert_int_equal(t->time_ms, x->time_ms);
        if (x->len)
            assert_memory_equal(t->data, x->data, x->len);
    }
}

static inline void h_step(cluster *c, uint32_t id, px_event ev);
static inline void h_restart(cluster *c, uint32_t id);

/* ------------------------------------------------- failing allocations */

/* The test binary is linked with --wrap=malloc,calloc,realloc (Makefile):
 * while `nomem_armed` (inside px_step only), one allocation in
 * `nomem_one_in` fails.  px.h: after -ENOMEM the host discards that
 * output and the replica, and creates a new one from its durable state;
 * `nomem_keep_going` instead does what the old contract promised (the
 * replica is unchanged: carry the output out and go on), to show that
 * this was not true. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

static bool nomem_armed, nomem_keep_going;
static uint64_t nomem_one_in, nomem_rng = 1, nomem_failed, nomem_steps;

static inline bool nomem_fail(void)
{
    if (!nomem_armed || !nomem_one_in)
        return false;
    nomem_rng = nomem_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    if ((nomem_rng >> 33) % nomem_one_in)
        return false;
    nomem_failed++;
    return true;
}

void *__wrap_malloc(size_t n)
{
    return nomem_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    return nomem_fail() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return nomem_fail() ? NULL : __real_realloc(p, n);
}

/* The host's side of catch-up from the chain: a CATCHUP of up to 64
 * blocks of its log from `slot` on. */
static inline void h_serve_chain(cluster *c, hnode *h, uint32_t to,
                                 uint64_t slot)
{
    if (h->cut || c->n[to].cut || c->nq == NETQ || slot == 0 ||
        slot > h->applied)
        return;
    px_entry ents[64];
    uint32_t n = 0;
    for (uint64_t s = slot; s <= h->applied && n < 64; s++, n++) {
        const hentry *x = &h->log[s];
        assert_int_equal(x->slot, s);
        ents[n] = (px_entry){.slot = s, .time_ms = x->time_ms, .kind = x->kind,
                             .len = x->len, .data = x->data};
    }
    px_status st;
    px_get_status(h->r, &st);
    px_msg m = {.type = PX_MSG_CATCHUP, .from = h->id, .to = to,
                .ballot = st.ballot, .slot = slot, .commit = h->applied,
                .n_entries = n, .entries = ents};
    c->q[c->nq++] = px_msg_copy(&m);
}

static inline void h_output(cluster *c, hnode *h, const px_output *o)
{
    /* a replica recovering lost acceptor state never votes */
    if (px_recovering(h->r))
        for (uint32_t i = 0; i < o->n_msgs; i++)
            assert_false(o->msgs[i].type == PX_MSG_PROMISE ||
                         o->msgs[i].type == PX_MSG_ACCEPTED ||
                         o->msgs[i].type == PX_MSG_REJECT ||
                         o->msgs[i].type == PX_MSG_HEARTBEAT_ACK);
    /* a suspended replica (its host cannot persist) puts out nothing */
    if (px_suspended(h->r)) {
        assert_int_equal(o->n_msgs, 0);
        assert_int_equal(o->n_accepts, 0);
        assert_false(o->persist_promise);
        assert_int_equal(o->persist_id, 0);
        assert_int_equal(o->n_committed, 0);
    }
    if (o->persist_promise) {
        assert_true(px_ballot_cmp(o->promise, h->d_promise) >= 0);
        h->d_promise = o->promise;
    }
    for (uint32_t i = 0; i < o->n_accepts; i++)
        h_accept_store(h, &o->accepts[i]);
    for (uint32_t i = 0; i < o->n_msgs; i++) {
        assert_int_equal(o->msgs[i].from, h->id);
        if (h->cut || c->n[o->msgs[i].to].cut || c->nq == NETQ)
            continue;
        c->q[c->nq++] = px_msg_copy(&o->msgs[i]);
    }
    for (uint32_t i = 0; i < o->n_committed; i++)
        h_apply(c, h, &o->committed[i]);
    for (uint32_t i = 0; i < o->n_reads && h->n_reads < 64; i++)
        h->reads[h->n_reads++] = o->reads[i];
    for (uint32_t i = 0; i < o->n_failed && h->n_failed < 64; i++)
        h->failed[h->n_failed++] = o->failed[i];
    if (o->snapshot_to)
        h->snap_to = o->snapshot_to;
    if (o->snapshot_from)
        h->snap_from = o->snapshot_from;
    if (o->catchup_to) {
        /* the host streams chain blocks (its log) from catchup_slot on;
         * never any it compacted away */
        assert_true(o->catchup_slot > h->chain_base);
        h->catchup_to = o->catchup_to;
        h_serve_chain(c, h, o->catchup_to, o->catchup_slot);
    }
    assert_true(o->next_tick_ms >= c->now);
}

static inline void h_step(cluster *c, uint32_t id, px_event ev)
{
    hnode *h = &c->n[id];
    if (h->down)
        return;
    for (int loop = 0; loop < 100; loop++) {
        px_output out;
        ev.now_ms = c->now;
        nomem_armed = true;
        int rc = px_step(h->r, &ev, &out);
        nomem_armed = false;
        if (rc == -ENOMEM && nomem_one_in) {
            nomem_steps++;
            if (!nomem_keep_going) {
                h_restart(c, id);   /* nothing of this step is carried out */
                return;
            }
        } else {
            assert_int_equal(rc, 0);
        }
        h_output(c, h, &out);
        if (!out.persist_id)
            return;
        if (h->hold) {
            h->held[h->n_held++] = out.persist_id;
            return;
        }
        ev = (px_event){.type = PX_EV_PERSISTED, .u.persist_id = out.persist_id};
    }
    fail_msg("persist loop");
}

static inline void h_release(cluster *c, uint32_t id)
{
    hnode *h = &c->n[id];
    uint32_t n = h->n_held;
    uint64_t ids[4096];
    memcpy(ids, h->held, n * sizeof(uint64_t));
    h->n_held = 0;
    for (uint32_t i = 0; i < n; i++)
        h_step(c, id, (px_event){.type = PX_EV_PERSISTED, .u.persist_id = ids[i]});
}

static inline void h_tick(cluster *c, uint32_t id)
{
    h_step(c, id, (px_event){.type = PX_EV_TICK});
}

static inline void h_propose(cluster *c, uint32_t id, uint64_t client, uint64_t seq,
                      const char *op)
{
    px_request rq = {.client_id = client, .seq = seq, .len = (uint32_t)strlen(op),
                     .op = (const uint8_t *)op};
    px_event ev = {.type = PX_EV_PROPOSE};
    ev.u.propose.requests = &rq;
    ev.u.propose.n_requests = 1;
    h_step(c, id, ev);
}

static inline void h_deliver_at(cluster *c, uint32_t k)
{
    px_msg *m = c->q[k];
    memmove(&c->q[k], &c->q[k + 1], (c->nq - k - 1) * sizeof(px_msg *));
    c->nq--;
    hnode *to = &c->n[m->to];
    if (!to->down && !to->cut && !c->n[m->from].cut)
        h_step(c, m->to, (px_event){.type = PX_EV_RECEIVE, .u.msg = m});
    free(m);
}

static inline bool h_match(const px_msg *m, int type, uint32_t from, uint32_t to)
{
    return (!type || m->type == type) && (!from || m->from == from) &&
           (!to || m->to == to);
}

/* Deliver everything queued (and what that produces), FIFO. */
static inline void h_run(cluster *c)
{
    for (int n = 0; n < 100000 && c->nq; n++)
        h_deliver_at(c, 0);
    assert_int_equal(c->nq, 0);
}

/* Let time pass in 10 ms ticks on every live node, delivering all. */
static inline void h_settle(cluster *c, uint32_t ms)
{
    for (uint32_t t = 0; t < ms; t += 10) {
        c->now += 10;
        for (uint32_t id = 1; id <= c->count; id++)
            h_tick(c, id);
        h_run(c);
    }
}

static inline uint32_t h_drop(cluster *c, int type, uint32_t from, uint32_t to)
{
    uint32_t dropped = 0;
    for (uint32_t k = 0; k < c->nq;) {
        if (h_match(c->q[k], type, from, to)) {
            free(c->q[k]);
            memmove(&c->q[k], &c->q[k + 1], (c->nq - k - 1) * sizeof(px_msg *));
            c->nq--;
            dropped++;
        } else {
            k++;
        }
    }
    return dropped;
}

/* Deliver the messages matching now queued (one pass). */
static inline uint32_t h_deliver(cluster *c, int type, uint32_t from, uint32_t to)
{
    uint32_t n = c->nq, done = 0;
    px_msg *snap[NETQ];
    memcpy(snap, c->q, n * sizeof(px_msg *));
    for (uint32_t i = 0; i < n; i++) {
        if (!h_match(snap[i], type, from, to))
            continue;
        for (uint32_t k = 0; k < c->nq; k++)
            if (c->q[k] == snap[i]) {
                h_deliver_at(c, k);
                done++;
                break;
            }
    }
    return done;
}

static inline uint32_t h_count(cluster *c, int type, uint32_t from, uint32_t to)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < c->nq; k++)
        n += h_match(c->q[k], type, from, to);
    return n;
}

static inline void h_start(cluster *c, uint32_t id, const px_restore *rs)
{
    hnode *h = &c->n[id];
    assert_int_equal(px_create(&h->opt, rs, &h->r), 0);
    /* a restarted node's first event is its own tick, as in the node
     * runtime: its quiet period (reads.c invariant 5) starts then */
    if (rs)
        h_tick(c, id);
}

static cluster *h_cluster(uint32_t nv, void (*tweak)(px_options *))
{
    cluster *c = calloc(1, sizeof(*c));
    c->count = nv;
    c->now = 1000;
    c->rng = 42;
    for (uint32_t id = 1; id <= nv; id++) {
        hnode *h = &c->n[id];
        h->id = id;
        h_opts(&h->opt, id, nv);
        if (tweak)
            tweak(&h->opt);
        h->members = h->opt.members;
        h_start(c, id, NULL);
    }
    return c;
}

static inline void h_restart(cluster *c, uint32_t id)
{
    hnode *h = &c->n[id];
    px_destroy(h->r);
    h->r = NULL;
    px_entry *acc = malloc((h->n_acc + 1) * sizeof(px_entry));
    uint32_t n = 0;
    for (uint32_t i = 0; i < h->n_acc; i++)
        if (h->d_acc[i].slot > h->applied)
            acc[n++] = h->d_acc[i];
    px_restore rs = {.promise = h->d_promise, .applied_index = h->applied,
                     .members = h->members, .n_accepts = n, .accepts = acc};
    h->n_held = 0;
    h->down = false;
    h_start(c, id, &rs);
    px_set_chain_base(h->r, h->chain_base);
    free(acc);
}

static inline void h_free(cluster *c)
{
    for (uint32_t k = 0; k < c->nq; k++)
        free(c->q[k]);
    for (uint32_t id = 1; id <= MAXN; id++) {
        hnode *h = &c->n[id];
        px_destroy(h->r);
        for (uint32_t i = 0; i < h->n_acc; i++)
            free((void *)h->d_acc[i].data);
        free(h->d_acc);
        for (uint32_t s = 0; s < MAXLOG; s++)
            free(h->log[s].data);
    }
    for (uint32_t s = 0; s < MAXLOG; s++)
        free(c->truth[s].data);
    free(c);
}

static inline px_status h_status(cluster *c, uint32_t id)
{
    px_status st;
    px_get_status(c->n[id].r, &st);
    return st;
}

static inline px_stats h_stats(cluster *c, uint32_t id)
{
    px_stats st;
    px_get_stats(c->n[id].r, &st);
    return st;
}

/* Make `id` leader: only it times out; everything else is delivered. */
static inline void h_elect(cluster *c, uint32_t id)
{
    h_tick(c, id); /* the first event arms the election timer */
    c->now += 1000;
    h_tick(c, id);
    h_run(c);
    assert_int_equal(h_status(c, id).role, PX_LEADER);
    /* followers learn the commit of the leader's first slot from a COMMIT
     * message once commit_notice_ms passed */
    c->now += 10;
    h_tick(c, id);
    h_run(c);
}

static inline bool h_log_has(const hentry *e, uint64_t client, uint64_t seq)
{
    if (e->kind != PX_ENTRY_BATCH)
        return false;
    uint32_t off = 0;
    px_request rq;
    while (px_batch_next(e->data, e->len, &off, &rq) == 1)
        if (rq.client_id == client && rq.seq == seq)
            return true;
    return false;
}

#endif
