/*
 * client.c - owns the simulated clients and the history they record.
 *
 * Each client has an id, a sequence counter and up to `window` operations
 * in flight.  A write (PUT, APPEND, DEL) gets the next seq and keeps it for
 * every retry, at whatever replica; a GET is a read-index request
 * (PX_EV_READ_INDEX) served from the replica's kv once it applied the
 * granted index.  Values are unique tokens ("c3s17;"), so an append applied
 * twice is visible in the value.
 *
 * Per operation:
 *
 *     idle --issue--> waiting(attempt k at node n) --answer from n--> idle
 *                        |  ^                                  (history)
 *              timeout / |  | retry (same seq), maybe another node
 *              refused   v  |
 *                      backoff
 *
 * Invariants:
 *   1. Only the replica incarnation an attempt was sent to can answer it
 *      (node and epoch match), like a reply on the client's connection.
 *   2. A client never steps a replica from inside an answer: answers only
 *      schedule events (host.c invariant 3).
 *   3. A write's history interval starts at its first attempt (an earlier
 *      attempt may be the one that took effect) and a read's at the attempt
 *      that answered; both end at the answer.
 *   4. ack_seq = the lowest seq this client has not seen answered, so the
 *      session table never forgets a request that may still be retried.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifndef SIM_CLIENT_TIMEOUT_MS
#define SIM_CLIENT_TIMEOUT_MS 1200
#endif

static const char *const sim_keys[SIM_KEYS] = {"k0", "k1", "k2", "k3"};

const char *sim_key_name(uint32_t key, size_t *len)
{
    const char *k = sim_keys[key % SIM_KEYS];
    *len = strlen(k);
    return k;
}

int sim_clients_init(sim_world *w)
{
    w->n_clients = w->cfg.clients;
    for (uint32_t ci = 0; ci < w->n_clients; ci++) {
        sim_client *c = &w->clients[ci];
        memset(c, 0, sizeof(*c));
        c->id = ci + 1;
        c->next_seq = 1;
        c->quota = w->cfg.ops_per_client;
        c->window = w->cfg.window;
        for (uint32_t oi = 0; oi < c->window; oi++) {
            uint64_t start = w->cfg.bench ? 0 : sim_rng_range(&w->rng, 0, 200);
            if (sim_schedule(w, start, SIM_EV_CLIENT, ci, oi, 0) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

void sim_clients_free(sim_world *w)
{
    for (uint32_t ci = 0; ci < w->n_clients; ci++)
        for (uint32_t oi = 0; oi < w->clients[ci].window; oi++) {
            free(w->clients[ci].ops[oi].req);
            w->clients[ci].ops[oi].req = NULL;
        }
    for (uint32_t i = 0; i < w->n_hist; i++)
        free(w->hist[i].out);
    free(w->hist);
    w->hist = NULL;
    w->n_hist = w->cap_hist = 0;
}

bool sim_clients_done(const sim_world *w)
{
    for (uint32_t ci = 0; ci < w->n_clients; ci++) {
        const sim_client *c = &w->clients[ci];
        if (c->issued < c->quota)
            return false;
        for (uint32_t oi = 0; oi < c->window; oi++)
            if (c->ops[oi].busy)
                return false;
    }
    return true;
}

static uint64_t sim_ack_seq(const sim_client *c)
{
    uint64_t ack = c->next_seq;
    for (uint32_t i = 0; i < c->window; i++)
        if (c->ops[i].busy && c->ops[i].type != SIM_OP_GET &&
            c->ops[i].seq < ack)
            ack = c->ops[i].seq;
    return ack;
}

static uint32_t sim_pick_node(sim_world *w)
{
    if (w->cfg.bench) {
        /* the bench sends to the leader; it is looked up now and then
         * (a stale hint only costs a forward) */
        if (w->leader_hint && (w->leader_hint_uses++ & 1023) != 0)
            return w->leader_hint;
        for (uint32_t n = 1; n <= w->cfg.nodes; n++) {
            px_status st;
            if (!w->hosts[n].alive)
                continue;
            px_get_status(w->hosts[n].px, &st);
            if (st.role == PX_LEADER) {
                w->leader_hint = n;
                return n;
            }
        }
        w->leader_hint = 0;
    }
    /* with membership changes: mostly a member of the configuration in
     * force, as a user would ask; now and then any node (one outside
     * takes nothing: the attempt times out and is retried) */
    const px_members *m = sim_members_now(w);
    if (w->cfg.profile->membership && sim_rng_below(&w->rng, 8) != 0) {
        uint32_t n = m->n_voters + m->n_learners;
        uint32_t i = (uint32_t)sim_rng_below(&w->rng, n);
        return i < m->n_voters ? m->voters[i] : m->learners[i - m->n_voters];
    }
    return 1 + (uint32_t)sim_rng_below(&w->rng, w->cfg.nodes);
}

static void sim_attempt(sim_world *w, uint32_t ci, uint32_t oi)
{
    sim_client *c = &w->clients[ci];
    sim_op *op = &c->ops[oi];
    op->attempts++;
    op->gen++;
    op->attempt_ms = w->now_ms;
    op->node = sim_pick_node(w);
    sim_host *h = &w->hosts[op->node];
    op->node_epoch = h->epoch;
    op->read_granted = false;
    /* random timeouts: short ones make duplicate proposals likely.  The
     * bench has no faults and no timeouts (a lost request fails it by the
     * liveness bound). */
    if (!w->cfg.bench)
        sim_schedule(w, w->now_ms + sim_rng_range(&w->rng,
                                                  SIM_CLIENT_TIMEOUT_MS / 4,
                                                  SIM_CLIENT_TIMEOUT_MS),
                     SIM_EV_CLIENT, ci, oi, op->gen);
    if (op->type == SIM_OP_GET) {
        /* unique per run: a late answer to an old read never matches */
        op->read_token = ((uint64_t)ci << 48) | ((uint64_t)oi << 40) |
                         (++w->next_read_token & 0xffffffffffull);
        size_t klen;
        const char *key = sim_key_name(op->key, &klen);
        sim_host_read(w, h, op->read_token, key, klen);
    } else {
        px_request req = {.client_id = c->id, .seq = op->seq,
                          .ack_seq = sim_ack_seq(c), .len = op->req_len,
                          .op = op->req};
        sim_host_propose(w, h, &req);
    }
}

static char *sim_put_u64(char *p, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = digits[--n];
    return p;
}

/* "c<client>s<seq>;" without printf (it showed in the bench profile);
 * out holds 24 bytes: 1 + 8 + 1 + 12 + 1 + NUL for the ids used here. */
static void sim_token(char out[24], uint64_t client_id, uint64_t seq)
{
    char buf[48], *p = buf;
    *p++ = 'c';
    p = sim_put_u64(p, client_id);
    *p++ = 's';
    p = sim_put_u64(p, seq);
    *p++ = ';';
    size_t n = (size_t)(p - buf) < 23 ? (size_t)(p - buf) : 23;
    memcpy(out, buf, n);
    out[n] = '\0';
}

static int sim_issue(sim_world *w, uint32_t ci, uint32_t oi)
{
    sim_client *c = &w->clients[ci];
    sim_op *op = &c->ops[oi];
    if (c->issued >= c->quota)
        return 0;
    c->issued++;
    w->stats.requests++;
    uint64_t r = sim_rng_below(&w->rng, 100);
    uint8_t type = r < 30 ? SIM_OP_PUT : r < 60 ? SIM_OP_APPEND
                 : r < 70 ? SIM_OP_DEL : SIM_OP_GET;
    if (w->cfg.bench)
        type = SIM_OP_PUT;       /* appends grow values: O(n^2) copying */
    uint8_t *req = op->req;
    uint64_t gen = op->gen;          /* stale events must stay stale */
    memset(op, 0, sizeof(*op));
    op->req = req;
    op->gen = gen;
    op->busy = true;
    op->type = type;
    op->key = (uint32_t)sim_rng_below(&w->rng, SIM_KEYS);
    op->invoke_ms = w->now_ms;
    size_t klen;
    const char *key = sim_key_name(op->key, &klen);
    if (type != SIM_OP_GET) {
        op->seq = c->next_seq++;
        c->op_of_seq[op->seq % SIM_SEQ_HINTS] = (uint8_t)oi;
        sim_token(op->value, c->id, op->seq);
        if (!op->req) {
            op->req = malloc(64);
            if (!op->req)
                return -ENOMEM;
        }
        int64_t n;
        uint32_t vlen = (uint32_t)strlen(op->value);
        if (type == SIM_OP_PUT)
            n = kv_op_encode_put(op->req, 64, key, klen,
                                 (const uint8_t *)op->value, vlen);
        else if (type == SIM_OP_APPEND)
            n = kv_op_encode_append(op->req, 64, key, klen,
                                    (const uint8_t *)op->value, vlen);
        else
            n = kv_op_encode_del(op->req, 64, key, klen);
        if (n < 0) {
            sim_violation(w, "kv_op_encode failed: %lld", (long long)n);
            return (int)n;
        }
        op->req_len = (uint32_t)n;
    }
    sim_attempt(w, ci, oi);
    return 0;
}

/* For a liveness failure: which operations never completed. */
void sim_clients_print_pending(const sim_world *w)
{
    static const char *const names[] = {"?", "PUT", "APPEND", "DEL", "GET"};
    if (!w->out)
        return;
    for (uint32_t ci = 0; ci < w->n_clients; ci++)
        for (uint32_t oi = 0; oi < w->clients[ci].window; oi++) {
            const sim_op *op = &w->clients[ci].ops[oi];
            if (!op->busy)
                continue;
            fprintf(w->out, "pending: client %u seq %llu %s k%u invoked %llu "
                    "ms, attempt %u at node %u since %llu ms\n", ci + 1,
                    (unsigned long long)op->seq, names[op->type], op->key,
                    (unsigned long long)op->invoke_ms, op->attempts, op->node,
                    (unsigned long long)op->attempt_ms);
        }
}

int sim_client_event(sim_world *w, const sim_event *ev)
{
    uint32_t ci = ev->node, oi = (uint32_t)ev->a;
    if (ci >= w->n_clients || oi >= w->clients[ci].window)
        return -EINVAL;
    sim_op *op = &w->clients[ci].ops[oi];
    if (ev->b != op->gen)
        return 0;                       /* answered or superseded */
    if (op->busy) {
        /* liveness: once the faults are healed, every op completes within
         * the bound (counted from the heal for ops invoked before it) */
        uint64_t since = op->invoke_ms > w->heal_ms ? op->invoke_ms
                                                    : w->heal_ms;
        if (w->healed && w->now_ms > since + w->cfg.liveness_bound_ms) {
            sim_violation(w, "LIVENESS: client %u seq %llu (%s) not done "
                          "%llu ms after %s", ci + 1,
                          (unsigned long long)op->seq,
                          op->type == SIM_OP_GET ? "read" : "write",
                          (unsigned long long)(w->now_ms - since),
                          since == w->heal_ms ? "healing" : "its invocation");
            sim_clients_print_pending(w);
            sim_print_nodes(w);
            return 0;
        }
        sim_attempt(w, ci, oi);          /* timeout or backoff over */
        return 0;
    }
    return sim_issue(w, ci, oi);
}

static int sim_hist_add(sim_world *w, const sim_hist *h)
{
    if (w->cfg.bench)
        return 0;
    if (w->n_hist == w->cap_hist) {
        uint32_t cap = w->cap_hist ? w->cap_hist * 2 : 256;
        sim_hist *v = realloc(w->hist, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        w->hist = v;
        w->cap_hist = cap;
    }
    w->hist[w->n_hist++] = *h;
    return 0;
}

static void sim_complete(sim_world *w, uint32_t ci, sim_op *op,
                         sim_hist *rec)
{
    sim_client *c = &w->clients[ci];
    rec->type = op->type;
    rec->key = op->key;
    rec->client_id = c->id;
    rec->seq = op->seq;
    memcpy(rec->value, op->value, sizeof(rec->value));
    rec->invoke_ms = op->type == SIM_OP_GET ? op->attempt_ms : op->invoke_ms;
    rec->return_ms = w->now_ms;
    if (sim_hist_add(w, rec) < 0) {
        free(rec->out);
        sim_violation(w, "out of memory recording history");
    }
    w->stats.ops_done++;
    op->busy = false;
    op->gen++;
    uint64_t think = w->cfg.bench ? 0 : sim_rng_range(&w->rng, 0, 20);
    sim_schedule(w, w->now_ms + think, SIM_EV_CLIENT, ci,
                 (uint64_t)(op - c->ops), op->gen);
}

static sim_op *sim_find_write(sim_world *w, uint64_t client_id, uint64_t seq,
                              uint32_t *ci_out)
{
    if (client_id == 0 || client_id > w->n_clients)
        return NULL;
    uint32_t ci = (uint32_t)client_id - 1;
    sim_client *c = &w->clients[ci];
    uint8_t hint = c->op_of_seq[seq % SIM_SEQ_HINTS];
    if (hint < c->window && c->ops[hint].busy &&
        c->ops[hint].type != SIM_OP_GET && c->ops[hint].seq == seq) {
        *ci_out = ci;
        return &c->ops[hint];
    }
    for (uint32_t i = 0; i < c->window; i++) {
        sim_op *op = &c->ops[i];
        if (op->busy && op->type != SIM_OP_GET && op->seq == seq) {
            *ci_out = ci;
            return op;
        }
    }
    return NULL;
}

static bool sim_attempt_is_at(const sim_world *w, const sim_op *op,
                              uint32_t node)
{
    return op->node == node && w->hosts[node].epoch == op->node_epoch;
}

void sim_client_on_write(sim_world *w, uint64_t client_id, uint64_t seq,
                         int32_t result, uint32_t node)
{
    uint32_t ci;
    sim_op *op = sim_find_write(w, client_id, seq, &ci);
    if (!op || !sim_attempt_is_at(w, op, node))
        return;
    if (result == -EALREADY) {
        sim_violation(w, "EXACTLY-ONCE: client %llu seq %llu, still waiting, "
                      "was answered as forgotten (-EALREADY) by node %u",
                      (unsigned long long)client_id, (unsigned long long)seq,
                      node);
        return;
    }
    sim_hist rec = {.result = result};
    sim_complete(w, ci, op, &rec);
}

void sim_client_on_write_failed(sim_world *w, uint64_t client_id,
                                uint64_t seq, int status, uint32_t node)
{
    uint32_t ci;
    sim_op *op = sim_find_write(w, client_id, seq, &ci);
    if (!op || !sim_attempt_is_at(w, op, node))
        return;
    (void)status;
    op->gen++;                         /* void the timeout: back off */
    sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, 20, 150),
                 SIM_EV_CLIENT, ci, (uint64_t)(op - w->clients[ci].ops),
                 op->gen);
}

void sim_client_on_read(sim_world *w, uint64_t token, int status,
                        const kv_value *v, uint32_t node)
{
    uint32_t ci = (uint32_t)(token >> 48), oi = (uint32_t)(token >> 40) & 0xff;
    if (ci >= w->n_clients || oi >= w->clients[ci].window)
        return;
    sim_op *op = &w->clients[ci].ops[oi];
    if (!op->busy || op->read_token != token ||
        !sim_attempt_is_at(w, op, node))
        return;
    if (status != 0) {
        op->gen++;
        sim_schedule(w, w->now_ms + sim_rng_range(&w->rng, 20, 150),
                     SIM_EV_CLIENT, ci, oi, op->gen);
        return;
    }
    sim_hist rec = {.found = v != NULL};
    if (v && !w->cfg.bench) {
        rec.out = malloc(v->len ? v->len : 1);
        if (!rec.out) {
            sim_violation(w, "out of memory recording a read");
            return;
        }
        memcpy(rec.out, v->data, v->len);
        rec.out_len = v->len;
    }
    sim_complete(w, ci, op, &rec);
}
