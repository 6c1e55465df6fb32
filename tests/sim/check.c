/*
 * check.c - owns the simulator's safety checkers.
 *
 * Checked at every step:
 *   1. Agreement: at most one value per slot.  The first committed value
 *      reported by any node for slot s is recorded (digest of kind,
 *      time_ms and data, plus a copy); every later report must match.
 *   2. Prefix consistency: a node applies slot s only right after s-1
 *      and only the recorded value, so every applied sequence is a prefix
 *      of the recorded log and hence of every other node's.
 *   3. Equal chain hashes at equal indexes (DESIGN.md invariant 3).
 *   4. One answer per request: every node answers (client, seq) with
 *      the same result when it applies it (exactly-once, invariant 5).
 *   5. Durable before it vouches: when a message that vouches for
 *      acceptor state (outbox_vouches: PROMISE, ACCEPTED, REJECT,
 *      HEARTBEAT_ACK) leaves a node, the fake disk holds what it vouches
 *      for: a promise at least its ballot, and each slot it claims
 *      accepted (above the sender's commit index) accepted in that ballot
 *      or a later one, or in the durable chain.  The disk's view is the
 *      store's state as an fdatasync of its log saw it (nothing left
 *      buffered), once that fdatasync completed: at its begin for one
 *      in flight (sim_durable_capture, made the view when the simulator
 *      completes it), at once for one made inline (sim_durable_refresh).
 *   6. Chosen means durable at a quorum: when a slot is first reported
 *      committed, a majority of the voters hold its value on their disks
 *      (accepted in the store, or in the durable chain).  Skipped once a
 *      node lost acceptor state in the run (a vote it cast may be gone;
 *      the recovery rule, not the disk, makes that safe).
 * Checked at the end (after healing and completion), sim_check_final:
 *   7. Every node applied the whole committed log.
 *   8. Each request applied at most once and none lost: a shadow model
 *      applies the committed log with an unbounded duplicate filter; every
 *      node's kv must equal it, its answers must match, and every write
 *      a client saw acknowledged must be in the log.
 *   9. No appended token appears twice in any value read or stored.
 *  10. The client history is linearizable (lincheck.c).
 *  11. The chain files of caught-up nodes are identical, byte for byte
 *      (same segments, same records).
 * Liveness and leader stability are checked by the run loop (sim.c).
 */
#include "sim.h"
#include "disk.h"
#include "lincheck.h"

#include "../../net/outbox.h"

#ifndef SIM_LIN_BUDGET
#define SIM_LIN_BUDGET 2000000 /* search steps per key */
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void sim_violation(sim_world *w, const char *fmt, ...)
{
    w->stats.violations++;
    if (w->stats.violations > 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(w->violation, sizeof(w->violation), "t=%llu ms: ",
                     (unsigned long long)w->now_ms);
    if (n > 0 && (size_t)n < sizeof(w->violation))
        vsnprintf(w->violation + n, sizeof(w->violation) - (size_t)n, fmt, ap);
    va_end(ap);
    if (w->cfg.trace_live && w->out)
        fprintf(w->out, "VIOLATION %s\n", w->violation);
}

uint64_t sim_entry_digest(const px_entry *e)
{
    uint64_t h = 0x243f6a8885a308d3ull ^ e->kind ^ ((uint64_t)e->len << 8);
    h = (h ^ e->time_ms) * 0x9e3779b97f4a7c15ull;
    uint32_t i = 0;
    for (; i + 8 <= e->len; i += 8) {
        uint64_t x;
        memcpy(&x, e->data + i, 8);
        h = (h ^ x) * 0xff51afd7ed558ccdull;
        h ^= h >> 31;
    }
    for (; i < e->len; i++)
        h = (h ^ e->data[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static sim_slot *sim_slot_at(sim_world *w, uint64_t slot)
{
    sim_check *c = &w->check;
    if (slot >= c->n_slots) {
        uint64_t n = c->n_slots ? c->n_slots : 256;
        while (n <= slot)
            n *= 2;
        sim_slot *v = realloc(c->slots, n * sizeof(*v));
        if (!v)
            return NULL;
        memset(v + c->n_slots, 0, (n - c->n_slots) * sizeof(*v));
        c->slots = v;
        c->n_slots = n;
    }
    return &c->slots[slot];
}

/* ------------------------------------------------- durability (5, 6) */

void sim_durable_clear(sim_host *h)
{
    h->d_promise = (px_ballot){0, 0};
    h->d_n = 0;
    h->d_chain = 0;
    free(h->c_acc);
    h->c_acc = NULL;
    h->c_ok = false;
}

static const sim_dacc *sim_durable_find(const sim_host *h, uint64_t slot)
{
    uint32_t lo = 0, hi = h->d_n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (h->d_acc[mid].slot < slot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < h->d_n && h->d_acc[lo].slot == slot ? &h->d_acc[lo] : NULL;
}

/* The store's state (slot, ballot, digest per accepted value), reusing
 * the digests of values the durable view knows already. */
static sim_dacc *sim_durable_copy(sim_world *w, sim_host *h,
                                  px_ballot *promise, uint32_t *n)
{
    acceptor_state st;
    acceptor_get_state(host_acceptor(h->host), &st);
    sim_dacc *v = malloc((st.n_accepts ? st.n_accepts : 1) * sizeof *v);
    if (!v) {
        sim_violation(w, "out of memory in the durability checker");
        return NULL;
    }
    uint32_t j = 0;
    for (uint32_t i = 0; i < st.n_accepts; i++) {
        const px_entry *e = &st.accepts[i];
        while (j < h->d_n && h->d_acc[j].slot < e->slot)
            j++;
        v[i] = (sim_dacc){ .slot = e->slot, .ballot = e->ballot };
        if (j < h->d_n && h->d_acc[j].slot == e->slot &&
            px_ballot_cmp(h->d_acc[j].ballot, e->ballot) == 0)
            v[i].digest = h->d_acc[j].digest;
        else
            v[i].digest = sim_entry_digest(e);
    }
    *promise = st.promise;
    *n = st.n_accepts;
    return v;
}

/* The store's state is on the disk now. */
void sim_durable_refresh(sim_world *w, sim_host *h)
{
    px_ballot p;
    uint32_t n;
    sim_dacc *v = sim_durable_copy(w, h, &p, &n);
    if (!v)
        return;
    free(h->d_acc);
    h->d_acc = v;
    h->d_n = h->d_cap = n;
    h->d_promise = p;
    uint64_t c = chain_synced_index(host_chain(h->host));
    if (c > h->d_chain)
        h->d_chain = c;
}

/* An fdatasync of the store begins: what it will have made durable. */
void sim_durable_capture(sim_world *w, sim_host *h)
{
    free(h->c_acc);
    h->c_acc = NULL;
    h->c_ok = false;
    if (acceptor_pending_bytes(host_acceptor(h->host)) != 0)
        return;   /* records buffered: keep the older view (conservative) */
    h->c_acc = sim_durable_copy(w, h, &h->c_promise, &h->c_n);
    h->c_ok = h->c_acc != NULL;
}

/* ... and it completed. */
void sim_durable_promote(sim_host *h)
{
    if (!h->c_ok)
        return;
    free(h->d_acc);
    h->d_acc = h->c_acc;
    h->d_n = h->d_cap = h->c_n;
    if (px_ballot_cmp(h->c_promise, h->d_promise) > 0)
        h->d_promise = h->c_promise;
    h->c_acc = NULL;
    h->c_ok = false;
}

static const char *sim_type_name(uint8_t t)
{
    static const char *const n[] = {"?", "PREPARE", "PROMISE", "ACCEPT",
                                    "ACCEPTED", "REJECT", "HEARTBEAT",
                                    "HEARTBEAT_ACK"};
    return t < sizeof n / sizeof n[0] ? n[t] : "?";
}

/* Slot `slot` held durably by h in ballot >= b (or in the durable chain). */
static bool sim_durably_holds(const sim_host *h, uint64_t slot, px_ballot b)
{
    if (slot <= h->d_chain)
        return true;
    const sim_dacc *a = sim_durable_find(h, slot);
    return a && px_ballot_cmp(a->ballot, b) >= 0;
}

void sim_check_vouch(sim_world *w, sim_host *h, const px_msg *m)
{
    if (!outbox_vouches(m) || w->cfg.bench)
        return;
    px_ballot need = m->type == PX_MSG_REJECT ? m->aux_ballot : m->ballot;
    bool probe = m->type == PX_MSG_PROMISE && m->aux == 1;
    if (!probe && px_ballot_cmp(h->d_promise, need) < 0) {
        sim_violation(w, "DURABILITY: node %u sent %s to node %u vouching for "
                      "promise (%llu,%u) while its disk holds promise "
                      "(%llu,%u)", h->id, sim_type_name(m->type), m->to,
                      (unsigned long long)need.round, need.node_id,
                      (unsigned long long)h->d_promise.round,
                      h->d_promise.node_id);
        return;
    }
    if (m->type == PX_MSG_ACCEPTED) {
        for (uint64_t s = m->commit + 1; s + 1 <= m->aux; s++)
            if (!sim_durably_holds(h, s, m->ballot)) {
                sim_violation(w, "DURABILITY: node %u sent ACCEPTED to node "
                              "%u claiming slot %llu in ballot (%llu,%u) "
                              "before its disk holds it", h->id, m->to,
                              (unsigned long long)s,
                              (unsigned long long)m->ballot.round,
                              m->ballot.node_id);
                return;
            }
    } else if (m->type == PX_MSG_PROMISE && !probe) {
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const px_entry *e = &m->entries[i];
            if (e->slot > m->commit &&
                !sim_durably_holds(h, e->slot, e->ballot)) {
                sim_violation(w, "DURABILITY: node %u sent PROMISE to node %u "
                              "reporting slot %llu accepted in (%llu,%u) "
                              "before its disk holds it", h->id, m->to,
                              (unsigned long long)e->slot,
                              (unsigned long long)e->ballot.round,
                              e->ballot.node_id);
                return;
            }
        }
    }
}

/* ------------------------------------------------- configurations */

bool sim_is_member(const px_members *m, uint32_t id, bool voters_only)
{
    for (uint32_t i = 0; i < m->n_voters; i++)
        if (m->voters[i] == id)
            return true;
    for (uint32_t i = 0; !voters_only && i < m->n_learners; i++)
        if (m->learners[i] == id)
            return true;
    return false;
}

const px_members *sim_members_at(const sim_world *w, uint64_t slot)
{
    const px_members *m = &w->members;
    for (uint32_t i = 0; i < w->check.n_configs; i++) {
        if (w->check.configs[i].from_slot > slot)
            break;
        m = &w->check.configs[i].members;
    }
    return m;
}

const px_members *sim_members_now(const sim_world *w)
{
    const sim_check *c = &w->check;
    return c->n_configs ? &c->configs[c->n_configs - 1].members : &w->members;
}

/* A CONFIG committed (first report, so in slot order: a node reports its
 * slots in order, and no slot is reported before every lower one was):
 * in force from the next slot (consensus/members.c). */
static void sim_config_committed(sim_world *w, const px_entry *e)
{
    px_members m;
    const uint8_t *ctx;
    uint32_t ctx_len;
    if (px_config_decode(e->data, e->len, &m, &ctx, &ctx_len) < 0) {
        sim_violation(w, "CONFIG: slot %llu committed a configuration that "
                      "does not decode", (unsigned long long)e->slot);
        return;
    }
    sim_check *c = &w->check;
    if (c->n_configs &&
        c->configs[c->n_configs - 1].from_slot > e->slot) {
        sim_violation(w, "CONFIG: slot %llu first reported after slot %llu",
                      (unsigned long long)e->slot,
                      (unsigned long long)c->configs[c->n_configs - 1].from_slot - 1);
        return;
    }
    if (c->n_configs == c->cap_configs) {
        uint32_t cap = c->cap_configs ? 2 * c->cap_configs : 16;
        sim_config_at *p = realloc(c->configs, cap * sizeof(*p));
        if (!p) {
            sim_violation(w, "out of memory in the agreement checker");
            return;
        }
        c->configs = p;
        c->cap_configs = cap;
    }
    c->configs[c->n_configs++] = (sim_config_at){ .from_slot = e->slot + 1,
                                                  .members = m };
}

/* Invariant 6, at the first report of a slot committed: a majority of
 * the voters of the configuration in force at that slot hold it. */
static void sim_check_quorum_durable(sim_world *w, uint32_t node,
                                     const px_entry *e, uint64_t digest)
{
    if (w->lost_state_ever || w->cfg.bench)
        return;
    const px_members *m = sim_members_at(w, e->slot);
    uint32_t holders = 0;
    for (uint32_t i = 0; i < m->n_voters; i++) {
        uint32_t n = m->voters[i];
        if (n < 1 || n > w->cfg.nodes)
            continue;
        const sim_host *h = &w->hosts[n];
        const sim_dacc *a = sim_durable_find(h, e->slot);
        if (e->slot <= h->d_chain || (a && a->digest == digest))
            holders++;
    }
    if (holders < m->n_voters / 2 + 1)
        sim_violation(w, "DURABILITY: slot %llu committed at node %u while "
                      "only %u of %u voters hold its value on disk",
                      (unsigned long long)e->slot, node, holders,
                      m->n_voters);
}

void sim_check_committed(sim_world *w, uint32_t node, const px_entry *e)
{
    if (e->slot == 0) {
        sim_violation(w, "node %u committed slot 0", node);
        return;
    }
    sim_slot *s = sim_slot_at(w, e->slot);
    if (!s) {
        sim_violation(w, "out of memory in the agreement checker");
        return;
    }
    uint64_t d = sim_entry_digest(e);
    if (s->known) {
        if (s->digest != d)
            sim_violation(w, "AGREEMENT: slot %llu chosen twice: node %u "
                          "committed kind %u len %u time %llu, node %u "
                          "commits kind %u len %u time %llu",
                          (unsigned long long)e->slot, s->first_node,
                          s->entry.kind, s->entry.len,
                          (unsigned long long)s->entry.time_ms, node, e->kind,
                          e->len, (unsigned long long)e->time_ms);
        return;
    }
    sim_check_quorum_durable(w, node, e, d);
    if (e->kind == PX_ENTRY_CONFIG)
        sim_config_committed(w, e);
    uint8_t *copy = malloc(e->len ? e->len : 1);
    if (!copy) {
        sim_violation(w, "out of memory in the agreement checker");
        return;
    }
    if (e->len)
        memcpy(copy, e->data, e->len);
    s->known = true;
    s->digest = d;
    s->entry = *e;
    s->entry.data = copy;
    s->first_node = node;
}

void sim_check_applied(sim_world *w, uint32_t node, const px_entry *e,
                       const uint8_t hash[PX_HASH_BYTES])
{
    sim_slot *s = e->slot < w->check.n_slots ? &w->check.slots[e->slot] : NULL;
    if (!s || !s->known) {
        sim_violation(w, "node %u applied slot %llu that no replica reported "
                      "committed", node, (unsigned long long)e->slot);
        return;
    }
    if (s->digest != sim_entry_digest(e)) {
        sim_violation(w, "PREFIX: node %u applied a different value at slot "
                      "%llu than node %u", node, (unsigned long long)e->slot,
                      s->first_node);
        return;
    }
    if (!s->hashed) {
        memcpy(s->hash, hash, PX_HASH_BYTES);
        s->hashed = true;
    } else if (memcmp(s->hash, hash, PX_HASH_BYTES) != 0) {
        sim_violation(w, "CHAIN: node %u chain hash at %llu differs", node,
                      (unsigned long long)e->slot);
    }
}

/* ------------------------------------------------------ result table */

static uint64_t sim_req_hash(uint64_t client_id, uint64_t seq)
{
    uint64_t h = client_id * 0x9e3779b97f4a7c15ull ^ seq;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static sim_result *sim_result_find(sim_check *c, uint64_t client_id,
                                   uint64_t seq, bool insert)
{
    if (insert && (c->n_results + 1) * 2 > c->cap_results) {
        uint64_t cap = c->cap_results ? c->cap_results * 2 : 1024;
        sim_result *v = calloc(cap, sizeof(*v));
        if (!v)
            return NULL;
        for (uint64_t i = 0; i < c->cap_results; i++) {
            if (!c->results[i].used)
                continue;
            uint64_t j = sim_req_hash(c->results[i].client_id,
                                      c->results[i].seq) & (cap - 1);
            while (v[j].used)
                j = (j + 1) & (cap - 1);
            v[j] = c->results[i];
        }
        free(c->results);
        c->results = v;
        c->cap_results = cap;
    }
    if (c->cap_results == 0)
        return NULL;
    uint64_t j = sim_req_hash(client_id, seq) & (c->cap_results - 1);
    while (c->results[j].used) {
        if (c->results[j].client_id == client_id && c->results[j].seq == seq)
            return &c->results[j];
        j = (j + 1) & (c->cap_results - 1);
    }
    if (!insert)
        return NULL;
    c->results[j] = (sim_result){.client_id = client_id, .seq = seq,
                                 .used = true, .slot = UINT64_MAX};
    c->n_results++;
    return &c->results[j];
}

void sim_check_result(sim_world *w, uint32_t node, uint64_t client_id,
                      uint64_t seq, int32_t result, uint64_t slot)
{
    if (w->cfg.bench)
        return;
    if (result == -EALREADY) {
        /* kv's answer for a stale duplicate below the client's ack_seq
         * (KV_SESSION_FORGOTTEN): it must have been applied before */
        if (!sim_result_find(&w->check, client_id, seq, false))
            sim_violation(w, "EXACTLY-ONCE: node %u calls client %llu seq "
                          "%llu forgotten, but it was never applied", node,
                          (unsigned long long)client_id,
                          (unsigned long long)seq);
        return;
    }
    sim_result *r = sim_result_find(&w->check, client_id, seq, true);
    if (!r) {
        sim_violation(w, "out of memory in the result checker");
        return;
    }
    if (r->slot == UINT64_MAX) {
        r->slot = slot;
        r->result = result;
    } else if (r->result != result) {
        sim_violation(w, "EXACTLY-ONCE: node %u answered client %llu seq %llu "
                      "with %d, first answer was %d", node,
                      (unsigned long long)client_id, (unsigned long long)seq,
                      result, r->result);
    }
}

/* ------------------------------------------------------ final checks */

typedef struct sim_shadow_val {
    bool present;
    uint32_t len;
    char data[4096];
} sim_shadow_val;

static int sim_key_index(const kv_op *op)
{
    for (uint32_t k = 0; k < SIM_KEYS; k++) {
        size_t len;
        const char *name = sim_key_name(k, &len);
        if (op->key_len == len && memcmp(op->key, name, len) == 0)
            return (int)k;
    }
    return -1;
}

/* Apply each request's first occurrence in the committed log to a shadow
 * map; record which (client, seq) the log holds. */
static void sim_shadow(sim_world *w, uint64_t upto, sim_shadow_val *vals,
                       sim_check *seen)
{
    for (uint64_t s = 1; s <= upto; s++) {
        const px_entry *e = &w->check.slots[s].entry;
        if (e->kind != PX_ENTRY_BATCH)
            continue;
        uint32_t off = 0;
        px_request req;
        int rc;
        while ((rc = px_batch_next(e->data, e->len, &off, &req)) == 1) {
            if (sim_result_find(seen, req.client_id, req.seq, false))
                continue;                    /* duplicate: not applied */
            if (!sim_result_find(seen, req.client_id, req.seq, true)) {
                sim_violation(w, "out of memory in the shadow model");
                return;
            }
            kv_op op;
            if (kv_op_decode(req.op, req.len, &op) < 0) {
                sim_violation(w, "slot %llu holds an undecodable op",
                              (unsigned long long)s);
                continue;
            }
            int k = sim_key_index(&op);
            if (k < 0)
                continue;
            sim_shadow_val *v = &vals[k];
            int32_t expect = 0;
            if (op.type == KV_OP_PUT) {
                if (op.value_len > sizeof(v->data))
                    continue;
                memcpy(v->data, op.value, op.value_len);
                v->len = op.value_len;
                v->present = true;
            } else if (op.type == KV_OP_APPEND) {
                uint32_t base = v->present ? v->len : 0;
                if (base + op.value_len > sizeof(v->data)) {
                    sim_violation(w, "shadow value of key %d too long", k);
                    continue;
                }
                memcpy(v->data + base, op.value, op.value_len);
                v->len = base + op.value_len;
                v->present = true;
            } else if (op.type == KV_OP_DEL) {
                expect = v->present ? 0 : -ENOENT;
                v->present = false;
                v->len = 0;
            }
            sim_result *r = sim_result_find(&w->check, req.client_id,
                                            req.seq, false);
            if (r && r->slot != UINT64_MAX && r->result != expect)
                sim_violation(w, "EXACTLY-ONCE: client %llu seq %llu answered "
                              "%d, applying it once gives %d",
                              (unsigned long long)req.client_id,
                              (unsigned long long)req.seq, r->result, expect);
        }
        if (rc < 0)
            sim_violation(w, "slot %llu holds a malformed batch",
                          (unsigned long long)s);
    }
}

static bool sim_tokens_repeat(const uint8_t *p, uint32_t len)
{
    /* tokens end with ';' and are unique per write: look for a repeat */
    uint32_t starts[512], n = 0, start = 0;
    for (uint32_t i = 0; i < len && n < 512; i++) {
        if (p[i] != ';')
            continue;
        for (uint32_t t = 0; t < n; t++) {
            uint32_t tl = 0;
            while (p[starts[t] + tl] != ';')
                tl++;
            if (tl == i - start && memcmp(p + starts[t], p + start, tl) == 0)
                return true;
        }
        starts[n++] = start;
        start = i + 1;
    }
    return false;
}

/* The history of one key, in invocation order, for a failure report. */
static void sim_print_key_history(const sim_world *w, uint32_t key)
{
    static const char *const names[] = {"?", "PUT", "APPEND", "DEL", "GET"};
    if (!w->out)
        return;
    fprintf(w->out, "history of key k%u (invoke..return ms):\n", key);
    uint64_t last = 0;
    for (uint32_t printed = 0; printed < 400;) {
        const sim_hist *best = NULL;
        for (uint32_t i = 0; i < w->n_hist; i++) {
            const sim_hist *h = &w->hist[i];
            if (h->key != key || h->invoke_ms < last ||
                (best && h->invoke_ms >= best->invoke_ms))
                continue;
            best = h;
        }
        if (!best)
            break;
        for (uint32_t i = 0; i < w->n_hist; i++) {
            const sim_hist *h = &w->hist[i];
            if (h->key != key || h->invoke_ms != best->invoke_ms)
                continue;
            fprintf(w->out, "  %6llu..%-6llu c%llu s%llu %-6s %s -> ",
                    (unsigned long long)h->invoke_ms,
                    (unsigned long long)h->return_ms,
                    (unsigned long long)h->client_id,
                    (unsigned long long)h->seq, names[h->type], h->value);
            if (h->type == SIM_OP_GET)
                fprintf(w->out, h->found ? "'%.*s'\n" : "<none>%.*s\n",
                        h->found ? (int)h->out_len : 0,
                        h->found ? (const char *)h->out : "");
            else
                fprintf(w->out, "%d\n", h->result);
            printed++;
        }
        last = best->invoke_ms + 1;
    }
}

static int sim_op_by_invoke(const void *pa, const void *pb)
{
    const lin_op *a = pa, *b = pb;
    if (a->invoke_ms != b->invoke_ms)
        return a->invoke_ms < b->invoke_ms ? -1 : 1;
    return a->return_ms < b->return_ms ? -1 : (a->return_ms > b->return_ms);
}

/* Name the op whose completion first makes the key's history
 * non-linearizable: ops are completed one by one in invocation order while
 * all later ones stay pending (which may or may not take effect, so every
 * verdict on the way is sound). */
static void sim_print_first_bad(const sim_world *w, const lin_op *all,
                                uint32_t key)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->n_hist; i++)
        n += all[i].key == key;
    lin_op *ops = calloc(n ? n : 1, sizeof(*ops));
    lin_op *trial = calloc(n ? n : 1, sizeof(*trial));
    if (!ops || !trial || !w->out)
        goto free_ops;
    n = 0;
    for (uint32_t i = 0; i < w->n_hist; i++)
        if (all[i].key == key)
            ops[n++] = all[i];
    qsort(ops, n, sizeof(*ops), sim_op_by_invoke);
    for (uint32_t k = 1; k <= n; k++) {
        memcpy(trial, ops, n * sizeof(*ops));
        for (uint32_t i = k; i < n; i++)
            trial[i].return_ms = LIN_RETURN_PENDING;
        if (lin_check(trial, n, 200000, NULL) == LIN_VIOLATION) {
            const lin_op *b = &ops[k - 1];
            fprintf(w->out, "first op that cannot be linearized: %llu..%llu "
                    "type %u input '%.*s' -> result %d found %d '%.*s'\n",
                    (unsigned long long)b->invoke_ms,
                    (unsigned long long)b->return_ms, b->type,
                    (int)b->input_len, (const char *)b->input, b->result,
                    b->found, (int)b->output_len,
                    b->output ? (const char *)b->output : "");
            break;
        }
    }
free_ops:
    free(trial);
    free(ops);
}

static void sim_check_history(sim_world *w)
{
    lin_op *ops = calloc(w->n_hist ? w->n_hist : 1, sizeof(*ops));
    if (!ops) {
        sim_violation(w, "out of memory in the history check");
        return;
    }
    static const uint8_t lin_type[] = {0, LIN_PUT, LIN_APPEND, LIN_DEL,
                                       LIN_GET};
    for (uint32_t i = 0; i < w->n_hist; i++) {
        const sim_hist *h = &w->hist[i];
        ops[i] = (lin_op){.key = h->key, .type = lin_type[h->type],
                          .input = (const uint8_t *)h->value,
                          .input_len = (uint32_t)strlen(h->value),
                          .result = h->result, .found = h->found,
                          .output = h->out, .output_len = h->out_len,
                          .invoke_ms = h->invoke_ms,
                          .return_ms = h->return_ms};
        if (h->type == SIM_OP_GET && h->found &&
            sim_tokens_repeat(h->out, h->out_len))
            sim_violation(w, "EXACTLY-ONCE: key k%u read with a token twice",
                          h->key);
        if (h->type != SIM_OP_GET &&
            !sim_result_find(&w->check, h->client_id, h->seq, false))
            sim_violation(w, "LOST: client %llu seq %llu was acknowledged but "
                          "no replica applied it",
                          (unsigned long long)h->client_id,
                          (unsigned long long)h->seq);
    }
    lin_report rep;
    int v = lin_check(ops, w->n_hist, SIM_LIN_BUDGET, &rep);
    if (v == LIN_VIOLATION || v < 0) {
        sim_violation(w, "LINEARIZABILITY: key k%u: %s (%d)", rep.bad_key,
                      lin_verdict_name(v), v);
        sim_print_key_history(w, rep.bad_key);
        sim_print_first_bad(w, ops, rep.bad_key);
    }
    else if (v == LIN_UNDECIDED && w->out)
        fprintf(w->out, "sim: seed %llu: linearizability undecided for key "
                "k%u\n", (unsigned long long)w->cfg.seed, rep.bad_key);
    free(ops);
}

/* Invariant 11: every caught-up node holds the same chain files. */
/* Every member of the configuration in force holds the same chain files,
 * byte for byte (a node removed or never added stopped where it was). */
static void sim_check_chain_files(sim_world *w)
{
    const px_members *now = sim_members_now(w);
    uint32_t ref = 0;
    for (uint32_t n = 1; n <= w->cfg.nodes && !ref; n++)
        if (sim_is_member(now, n, false))
            ref = n;
    if (!ref)
        return;
    const char **first, **other;
    uint32_t n_first = fdisk_names(ref, "chain", &first);
    for (uint32_t n = ref + 1; n <= w->cfg.nodes && !w->stats.violations; n++) {
        if (!sim_is_member(now, n, false))
            continue;
        uint32_t n_other = fdisk_names(n, "chain", &other);
        if (n_other != n_first)
            sim_violation(w, "CHAIN FILES: node %u has %u chain files, node %u "
                          "has %u", ref, n_first, n, n_other);
        for (uint32_t i = 0; i < n_first && !w->stats.violations; i++) {
            uint64_t la, lb;
            const uint8_t *pa = fdisk_peek(ref, first[i], &la);
            const uint8_t *pb = fdisk_peek(n, other[i], &lb);
            if (strcmp(first[i], other[i]) == 0 && pa && pb && la == lb &&
                memcmp(pa, pb, (size_t)la) == 0)
                continue;
            uint64_t at = 0;
            while (pa && pb && at < la && at < lb && pa[at] == pb[at])
                at++;
            sim_violation(w, "CHAIN FILES: node %u's %s (%llu bytes) and node "
                          "%u's %s (%llu bytes) differ at byte %llu", ref,
                          first[i], (unsigned long long)(pa ? la : 0), n,
                          other[i], (unsigned long long)(pb ? lb : 0),
                          (unsigned long long)at);
        }
        free(other);
    }
    free(first);
}

void sim_check_final(sim_world *w)
{
    uint64_t top = 0;
    for (uint64_t s = 1; s < w->check.n_slots && w->check.slots[s].known; s++)
        top = s;
    /* what must hold on every member of the configuration in force (a
     * node removed, or never added, stops learning where it was) */
    const px_members *now = sim_members_now(w);
    for (uint32_t n = 1; n <= w->cfg.nodes; n++) {
        const sim_host *h = &w->hosts[n];
        if (!sim_is_member(now, n, false))
            continue;
        if (sim_host_applied(h) != top) {
            sim_violation(w, "LIVENESS: node %u applied %llu of %llu "
                          "committed slots after healing", n,
                          (unsigned long long)sim_host_applied(h),
                          (unsigned long long)top);
            return;
        }
    }
    sim_check_chain_files(w);
    if (w->stats.violations)
        return;
    if (w->cfg.bench)
        return;
    sim_shadow_val *vals = calloc(SIM_KEYS, sizeof(*vals));
    sim_check seen = {0};
    if (!vals) {
        sim_violation(w, "out of memory in the final check");
        return;
    }
    sim_shadow(w, top, vals, &seen);
    for (uint32_t n = 1; n <= w->cfg.nodes; n++) {
        if (!sim_is_member(now, n, false))
            continue;
        for (uint32_t k = 0; k < SIM_KEYS; k++) {
            size_t klen;
            const char *key = sim_key_name(k, &klen);
            const kv_value *v = kv_get(sim_host_state(&w->hosts[n]), key,
                                       klen);
            bool same = v ? vals[k].present && v->len == vals[k].len &&
                            memcmp(v->data, vals[k].data, v->len) == 0
                          : !vals[k].present;
            if (!same) {
                sim_violation(w, "EXACTLY-ONCE: node %u key %s = '%.*s', "
                              "applying each request once gives '%.*s'", n,
                              key, v ? (int)v->len : 6,
                              v ? (const char *)v->data : "<none>",
                              vals[k].present ? (int)vals[k].len : 6,
                              vals[k].present ? vals[k].data : "<none>");
                break;
            }
            if (v && sim_tokens_repeat(v->data, v->len))
                sim_violation(w, "EXACTLY-ONCE: node %u key %s holds a token "
                              "twice", n, key);
        }
    }
    free(seen.results);
    free(vals);
    sim_check_history(w);
}

void sim_check_free(sim_check *c)
{
    for (uint64_t s = 0; s < c->n_slots; s++)
        if (c->slots[s].known)
            free((void *)c->slots[s].entry.data);
    free(c->slots);
    free(c->results);
    free(c->configs);
    memset(c, 0, sizeof(*c));
}
