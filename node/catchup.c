/*
 * catchup.c - entries a node installs from a peer's CATCHUP.
 *
 * Invariant: entries installed from a CATCHUP come from the leader the
 * replica follows, in its ballot, and only up to a block whose hash
 * (computed over our chain and the entries) a quorum of the other members
 * has told us they hold; the rest waits for their answer or is dropped
 * and counted (catchup_dropped).
 */
#include "node_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Peers other than us that told us they hold `hash` at `index`; their ids
 * ("node 2, 3") into `who` when it is not NULL. */
uint32_t catchup_vouchers_named(const node *n, uint64_t index,
                                const uint8_t hash[CHAIN_HASH_BYTES],
                                char *who, size_t cap)
{
    uint32_t count = 0;
    size_t w = 0;
    if (who && cap)
        who[0] = '\0';
    for (uint32_t k = 0; k < n->cfg.n_peers; k++) {
        if (n->cfg.peers[k].id == n->cfg.id)
            continue;
        for (uint32_t i = 0; i < NODE_FACTS; i++) {
            const struct node_fact *f = &n->facts[k][i];
            if (f->index == index && index != 0 &&
                memcmp(f->hash, hash, CHAIN_HASH_BYTES) == 0) {
                count++;
                if (who && w < cap)
                    w += (size_t)snprintf(who + w, cap - w, "%s%u",
                                          w ? ", " : "node ",
                                          n->cfg.peers[k].id);
                break;
            }
        }
    }
    return count;
}

uint32_t catchup_vouchers(const node *n, uint64_t index,
                          const uint8_t hash[CHAIN_HASH_BYTES])
{
    return catchup_vouchers_named(n, index, hash, NULL, 0);
}

static void catchup_dropped(node *n, const char *why)
{
    n->catchup_dropped++;
    uint64_t now = node_now_ms();
    if (now - n->last_catchup_log_ms >= 10000) {
        n->last_catchup_log_ms = now;
        fprintf(stderr, "paxosfs: node %u: dropped a catch-up: %s (%" PRIu64
                " dropped so far)\n", n->cfg.id, why, n->catchup_dropped);
    }
}

/* How many leading entries of m this node may install: every entry up to
 * the last one whose hash over our chain a quorum of the other members
 * vouches for.  0 with *last = the slot to ask about when none is. */
static uint32_t catchup_vouched(node *n, const px_msg *m, uint64_t *last)
{
    uint64_t head = chain_head_index(n->chain);
    uint8_t hash[CHAIN_HASH_BYTES];
    memcpy(hash, chain_head_hash(n->chain), CHAIN_HASH_BYTES);
    uint32_t need = integrity_quorum(n) > 0 ? integrity_quorum(n) - 1 : 0;
    uint32_t keep = 0;
    uint64_t next = head + 1;
    *last = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const px_entry *e = &m->entries[i];
        if (e->slot <= head)
            continue;               /* the replica skips these */
        if (e->slot != next || e->slot > m->commit)
            break;
        chain_hash_block(hash, e->slot, e->time_ms, e->kind, e->data, e->len,
                         hash);
        next++;
        *last = e->slot;
        if (catchup_vouchers(n, e->slot, hash) >= need)
            keep = i + 1;
    }
    return keep;
}

/* Returns true when m was dealt with (stepped in part or whole, or
 * dropped), false when nothing could be checked yet. */
static bool catchup_deliver(node *n, const px_msg *m)
{
    px_status st;
    px_get_status(n->px, &st);
    if (m->from != st.leader_id || st.leader_id == n->cfg.id ||
        px_ballot_cmp(m->ballot, st.ballot) != 0) {
        catchup_dropped(n, "not from the leader this node follows, in its "
                        "ballot");
        return true;
    }
    uint64_t last = 0;
    uint32_t keep = catchup_vouched(n, m, &last);
    if (keep == 0 && last != 0) {
        /* ask the others for their hash there, once per retry interval */
        uint64_t now = node_now_ms();
        if (last != n->catchup_query_index ||
            now - n->catchup_query_ms >= 100) {
            uint8_t none[CHAIN_HASH_BYTES] = {0};
            integrity_head_frame(n, 0, NODE_HEAD_QUERY | last, none);
            n->catchup_query_index = last;
            n->catchup_query_ms = now;
        }
        return false;
    }
    px_msg part = *m;
    if (last != 0)
        part.n_entries = keep;
    n->catchup_installed += keep;
    px_event ev = { .type = PX_EV_RECEIVE };
    ev.u.msg = &part;
    node_step(n, &ev);
    return true;
}

void catchup_receive(node *n, const px_msg *m)
{
    if (catchup_deliver(n, m))
        return;
    px_msg *copy = px_msg_copy(m);
    if (!copy) {
        catchup_dropped(n, "out of memory holding it");
        return;
    }
    if (n->held_catchup)
        catchup_dropped(n, "superseded before its blocks were vouched for");
    free(n->held_catchup);
    n->held_catchup = copy;
    n->held_catchup_ms = node_now_ms();
}

void catchup_try_held(node *n)
{
    px_msg *m = n->held_catchup;
    n->held_catchup = NULL;
    if (catchup_deliver(n, m)) {
        free(m);
        return;
    }
    n->held_catchup = m;
}

void catchup_expire(node *n, uint64_t now)
{
    if (n->held_catchup && now - n->held_catchup_ms >= NODE_CATCHUP_HOLD_MS) {
        free(n->held_catchup);
        n->held_catchup = NULL;
        catchup_dropped(n, "no quorum of the other members holds its blocks");
    }
}

