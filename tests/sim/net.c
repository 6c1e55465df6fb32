/*
 * net.c - owns the simulator's randomness, its event queue and the virtual
 * network between replicas.
 *
 * Invariants:
 *   1. All randomness comes from the world's sim_rng, seeded from the run's
 *      seed; nothing reads a clock or calls rand(), so a seed replays.
 *   2. Events pop in (at_ms, seq) order; seq is the insertion counter, so
 *      two events at the same instant run in the order they were made.
 *   3. A message leaves sim_net_send as a deep copy owned by its delivery
 *      event (or is dropped on the spot): the sender's px_output may be
 *      overwritten right after.
 *   4. Every message's advertised chain head is checked against the hash
 *      recorded for that index (check.c) before the network touches it.
 *   5. Faults (drop, duplicate, cut links) act only while faults_on or a
 *      cut is set; healing clears both, so after the heal every message
 *      between live replicas arrives (with a random delay, which is what
 *      reorders them).
 *   6. In a scripted world (scenario.c) a message is kept for the script,
 *      which delivers it, instead of getting a delivery event.
 */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ rng */

static uint64_t sim_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sim_rng_seed(sim_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = sim_splitmix(&x);
}

static uint64_t sim_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman & Vigna) */
uint64_t sim_rng_next(sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = sim_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sim_rotl(s[3], 45);
    return result;
}

uint64_t sim_rng_below(sim_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    /* the modulo bias is below 2^-40 for the small n used here */
    return sim_rng_next(r) % n;
}

uint64_t sim_rng_range(sim_rng *r, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + sim_rng_below(r, hi - lo + 1);
}

bool sim_rng_ppm(sim_rng *r, uint32_t per_million)
{
    if (per_million == 0)
        return false;
    return sim_rng_below(r, 1000000) < per_million;
}

/* ---------------------------------------------------------- event queue */

static bool sim_ev_before(const sim_event *a, const sim_event *b)
{
    if (a->at_ms != b->at_ms)
        return a->at_ms < b->at_ms;
    return a->seq < b->seq;
}

int sim_queue_push(sim_queue *q, const sim_event *ev)
{
    if (q->n == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 1024;
        if (cap > (1u << 26))
            return -ENOSPC;           /* bounded: a runaway is a bug */
        sim_event *heap = realloc(q->heap, cap * sizeof(*heap));
        if (!heap)
            return -ENOMEM;
        q->heap = heap;
        q->cap = cap;
    }
    sim_event e = *ev;
    e.seq = q->next_seq++;
    uint32_t i = q->n++;
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!sim_ev_before(&e, &q->heap[parent]))
            break;
        q->heap[i] = q->heap[parent];
        i = parent;
    }
    q->heap[i] = e;
    return 0;
}

bool sim_queue_pop(sim_queue *q, sim_event *ev)
{
    if (q->n == 0)
        return false;
    *ev = q->heap[0];
    sim_event last = q->heap[--q->n];
    uint32_t i = 0;
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        const sim_event *best = &last;
        if (l < q->n && sim_ev_before(&q->heap[l], best)) {
            m = l;
            best = &q->heap[l];
        }
        if (r < q->n && sim_ev_before(&q->heap[r], best))
            m = r;
        if (m == i)
            break;
        q->heap[i] = q->heap[m];
        i = m;
    }
    if (q->n)
        q->heap[i] = last;
    return true;
}

void sim_queue_free(sim_queue *q)
{
    for (uint32_t i = 0; i < q->n; i++)
        free(q->heap[i].msg);
    free(q->heap);
    memset(q, 0, sizeof(*q));
}

int sim_schedule(sim_world *w, uint64_t at_ms, uint8_t kind, uint32_t node,
                 uint64_t a, uint64_t b)
{
    sim_event ev = {.at_ms = at_ms < w->now_ms ? w->now_ms : at_ms,
                    .kind = kind, .node = node, .a = a, .b = b};
    int rc = sim_queue_push(&w->q, &ev);
    if (rc < 0)
        sim_violation(w, "event queue push failed: %d", rc);
    return rc;
}

/* -------------------------------------------------------------- network */

uint64_t sim_net_delay(sim_world *w)
{
    const sim_profile *p = w->cfg.profile;
    return sim_rng_range(&w->rng, p->delay_min_ms, p->delay_max_ms);
}

static int sim_net_enqueue(sim_world *w, const px_msg *m)
{
    px_msg *copy = px_msg_copy(m);
    if (!copy) {
        sim_violation(w, "px_msg_copy failed");
        return -ENOMEM;
    }
    sim_event ev = {.at_ms = w->now_ms + sim_net_delay(w),
                    .kind = SIM_EV_DELIVER, .node = m->to, .msg = copy};
    int rc = sim_queue_push(&w->q, &ev);
    if (rc < 0) {
        free(copy);
        sim_violation(w, "event queue push failed: %d", rc);
    }
    return rc;
}

int sim_net_send(sim_world *w, const px_msg *m)
{
    w->stats.msgs++;
    if (m->to == 0 || m->to > w->cfg.nodes || m->to == m->from) {
        sim_violation(w, "node %u sent a message of type %u to node %u",
                      m->from, m->type, m->to);
        return -EINVAL;
    }
    /* the chain head a replica advertises must be the one every replica
     * computed at that index (DESIGN.md invariant 3) */
    if (m->chain_index && m->chain_index < w->check.n_slots &&
        w->check.slots[m->chain_index].hashed &&
        memcmp(w->check.slots[m->chain_index].hash, m->chain_hash,
               PX_HASH_BYTES) != 0)
        sim_violation(w, "CHAIN: node %u advertised a head hash at %llu that "
                      "no replica computed", m->from,
                      (unsigned long long)m->chain_index);
    if (w->scripted) {              /* the script delivers (scenario.c) */
        px_msg *copy = px_msg_copy(m);
        if (!copy || (w->n_captured == w->cap_captured &&
                      !(w->captured = realloc(w->captured,
                        (w->cap_captured = w->cap_captured * 2 + 64) *
                        sizeof *w->captured)))) {
            free(copy);
            sim_violation(w, "out of memory capturing a message");
            return -ENOMEM;
        }
        w->captured[w->n_captured++] = copy;
        return 0;
    }
    if (m->from <= w->cfg.nodes && w->cut[m->from][m->to]) {
        sim_trace_msg(w, m->from, SIM_TR_DROP, m);
        return 0;
    }
    const sim_profile *p = w->cfg.profile;
    if (w->faults_on && sim_rng_ppm(&w->rng, p->drop_ppm)) {
        sim_trace_msg(w, m->from, SIM_TR_DROP, m);
        return 0;
    }
    int rc = sim_net_enqueue(w, m);
    if (rc == 0 && w->faults_on && sim_rng_ppm(&w->rng, p->dup_ppm))
        rc = sim_net_enqueue(w, m);
    return rc;
}
