/*
 * integrity.c - whether this node may vote, lead and serve reads: the
 * start gate, divergence from a majority's chain, and lost acceptor state.
 *
 * Invariants:
 *  1. A started node votes, leads and serves its chain (reads, catch-up)
 *     only once it is confirmed: a majority of the members, itself
 *     included, hold the same block as it does where their chains meet
 *     (at its head, or at theirs when they are behind: positive
 *     agreement, never the absence of disagreement), and each peer
 *     counted reported this node's start as it last saw it, so a node
 *     restored from an older copy of its backing directory learns so
 *     before it votes.  Until then only FORWARD and CATCHUP_REQ leave
 *     (integrity_filter).
 *  2. A node whose acceptor state may be incomplete (store lost, damaged,
 *     or rolled back) runs its replica recovering (consensus/recovery.c)
 *     and keeps that durably in the acceptor store until it recovered.
 *  3. Reads are served only while the node is confirmed and its chain
 *     does not differ from a majority's; otherwise they wait until the
 *     read deadline (ETIMEDOUT).
 *  4. The node throws its history away (repair.c invariant 5) only when
 *     a majority of the members, this node not counted, positively hold
 *     one and the same other block at an index where it holds one (each
 *     of them told it that hash at that index), or, for a state that
 *     differs from a committed checkpoint, each of them reported the
 *     checkpoint's digest at its index (DIGEST frames).  One peer's
 *     word, or peers that disagree with it but not on the same other
 *     value, never does it; a cluster of one never does.
 *  5. A peer's report of this node's start counts (for the gate of
 *     invariant 1, and as a sign that this node was restored from an
 *     older copy) only when the chain it was made from holds the block
 *     the report names, as this node does: a report a node made while it
 *     held another cluster's directory, still in flight or held here when
 *     that node has reset itself and its chain agrees, is dropped, never
 *     judged.  The sender names the newest block both are known to hold,
 *     so a block beyond this node's head means this node lost blocks (an
 *     older copy): that report is judged on agreement alone, as one from
 *     an empty chain (which names no block) is.
 */
#include "node_int.h"

#include "../base/le.h"

#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool start_trusted(const node *n, uint32_t k);

uint64_t node_random_u64(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
            v = 0;
        close(fd);
    }
    if (v == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    }
    return v;
}

/* Invariant 3: this node's state is one a majority vouches for. */
bool integrity_serves(const node *n)
{
    return n->confirmed && !n->abstaining;
}

/* Peers exchange (index, head hash) (DESIGN.md invariant 3): a hash that
 * differs from ours at the same index means one of the two histories is
 * wrong.  When ours differs from the chains of a majority of the members,
 * ours is the wrong one: the node stops voting (abstain_filter) and says
 * so in .status and the log.  Once a majority positively holds one and
 * the same other block at an index (divergence_judge, invariant 4), the
 * node resets itself from the peers (repair.c). */
void integrity_check_divergence(node *n, uint32_t from, uint64_t index,
                             const uint8_t hash[CHAIN_HASH_BYTES])
{
    if (index == 0 || index > chain_head_index(n->chain))
        return;   /* we cannot compare (yet): we hold no block there */
    uint32_t k = 0;
    while (k < n->cfg.n_peers && n->cfg.peers[k].id != from)
        k++;
    if (k == n->cfg.n_peers || n->peer_chain_index[k] == index)
        return;   /* unknown, or this index was compared already */
    uint8_t ours[CHAIN_HASH_BYTES];
    if (chain_hash_at(n->chain, index, ours) < 0)
        return;
    bool differs = memcmp(ours, hash, CHAIN_HASH_BYTES) != 0;
    n->peer_chain_index[k] = index;
    if (differs && !n->peer_chain_differs[k])
        fprintf(stderr, "paxosfs: node %u: chain differs from node %u's at "
                "block %" PRIu64 "\n", n->cfg.id, from, index);
    n->peer_chain_differs[k] = differs;
    uint32_t differing = 0;
    for (uint32_t i = 0; i < n->cfg.n_peers; i++)
        differing += n->peer_chain_differs[i];
    bool abstain = differing >= n->cfg.n_peers / 2 + 1;
    if (abstain && !n->abstaining)
        fprintf(stderr, "paxosfs: node %u: chain differs from a majority's; "
                "no longer voting, campaigning or leading, and serving no "
                "reads\n", n->cfg.id);
    bool was = n->abstaining;
    n->abstaining = abstain || n->state_diverged;
    if (was && !abstain)
        node_serve_reads(n);
}

/* The newest fact peer k gave about block `index`, or NULL. */
static const struct node_fact *fact_at(const node *n, uint32_t k,
                                       uint64_t index)
{
    for (uint32_t i = 1; i <= NODE_FACTS; i++) {
        const struct node_fact *f =
            &n->facts[k][(n->fact_next[k] - i) % NODE_FACTS];
        if (f->index == index)
            return f;
    }
    return NULL;
}

static void hex8(const uint8_t *h, char *out)
{
    for (uint32_t i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Invariant 4: a peer holds another block than ours at `index` (ours:
 * `ours`).  When a majority of the members other than this node hold one
 * and the same other block there, this node's history is the wrong one:
 * repair.c resets it.  Otherwise ask every peer for its block there, so
 * that they all answer about the same index. */
static void divergence_judge(node *n, uint64_t index,
                             const uint8_t ours[CHAIN_HASH_BYTES])
{
    if (n->cfg.n_peers <= 1 || n->fatal)
        return;
    const struct node_fact *diff[TRANSPORT_MAX_PEERS];
    uint32_t ids[TRANSPORT_MAX_PEERS], nd = 0;
    for (uint32_t k = 0; k < n->cfg.n_peers; k++) {
        if (n->cfg.peers[k].id == n->cfg.id)
            continue;
        const struct node_fact *f = fact_at(n, k, index);
        if (f && memcmp(f->hash, ours, CHAIN_HASH_BYTES) != 0) {
            diff[nd] = f;
            ids[nd++] = n->cfg.peers[k].id;
        }
    }
    uint32_t need = integrity_quorum(n);
    for (uint32_t a = 0; a < nd; a++) {
        uint32_t same = 0;
        char who[120];
        size_t w = 0;
        for (uint32_t b = 0; b < nd; b++) {
            if (memcmp(diff[a]->hash, diff[b]->hash, CHAIN_HASH_BYTES) != 0)
                continue;
            same++;
            if (w < sizeof who)
                w += (size_t)snprintf(who + w, sizeof who - w, "%s%u",
                                      w ? "," : "nodes ", ids[b]);
        }
        if (same < need)
            continue;
        char h_ours[17], h_theirs[17];
        hex8(ours, h_ours);
        hex8(diff[a]->hash, h_theirs);
        chain_damage d;
        memset(&d, 0, sizeof d);
        d.index = index;
        if (chain_locate(n->chain, index, d.path, sizeof d.path,
                         &d.offset) < 0)
            snprintf(d.path, sizeof d.path, "%s/chain", n->data_dir);
        snprintf(d.reason, sizeof d.reason, "block differs from the one a "
                 "majority holds (ours %s..., theirs %s...)", h_ours,
                 h_theirs);
        char by[400];
        snprintf(by, sizeof by, "%s of %u members hold block %" PRIu64
                 " with hash %s...", who, n->cfg.n_peers, index, h_theirs);
        fprintf(stderr, "paxosfs: node %u: chain differs at block %" PRIu64
                " from the block a majority holds (%s); resetting this "
                "node's history\n", n->cfg.id, index, by);
        repair_reset(n, REPAIR_DIVERGED, &d, index, diff[a]->hash, by);
        return;
    }
    uint64_t now = node_now_ms();
    if (nd > 0 && n->net &&
        (index != n->div_query_index || now - n->div_query_ms >= 250)) {
        uint8_t none[CHAIN_HASH_BYTES] = {0};
        integrity_head_frame(n, 0, NODE_HEAD_QUERY | index, none);
        n->div_query_index = index;
        n->div_query_ms = now;
    }
}

/* A checkpoint entry's digest differs from this node's state at its
 * index (snapshot.c invariant 4): the state is wrong here whatever the
 * chains say, so the node abstains like a node whose chain differs from
 * a majority's: until a majority of the other members report the
 * checkpoint's digest there (integrity_state_judge: then it resets), or
 * for good (until restarted from good state) if they never do. */
void integrity_state_diverged(node *n, const char *why)
{
    if (!n->state_diverged)
        fprintf(stderr, "paxosfs: node %u: %s; no longer voting, "
                "campaigning or leading, and serving no reads\n", n->cfg.id,
                why);
    n->state_diverged = true;
    n->abstaining = true;
}

/* A DIGEST frame (node_int.h) to every peer: this node's state digest
 * at `index`, which it compared with a checkpoint. */
void integrity_send_digest(node *n, uint64_t index,
                           const uint8_t digest[KV_DIGEST_BYTES])
{
    if (!n->net)
        return;
    uint8_t h[CHAIN_HASH_BYTES] = {0};
    le_put32(h + 8, n->cfg.id);
    h[12] = 2;
    memcpy(h + 13, digest, NODE_DIGEST_PREFIX);
    integrity_head_frame(n, 0, NODE_HEAD_START | (index & NODE_HEAD_MASK), h);
}

/* The digest peer k reported at `index` (its newest report there), or
 * NULL. */
static const uint8_t *digest_of(const node *n, uint32_t k, uint64_t index)
{
    const uint8_t *got = NULL;
    for (uint32_t i = 0; i < NODE_DIGEST_FACTS; i++) {
        uint32_t at = (n->digest_next[k] + NODE_DIGEST_FACTS - 1 - i) %
                      NODE_DIGEST_FACTS;
        const struct node_fact *f = &n->digest_facts[k][at];
        if (f->index == index) {
            got = f->hash;
            break;
        }
    }
    return got;
}

/* Invariant 4 for the state, whichever side the checkpoint is on.  At
 * the last checkpoint this node compared (its own digest there known):
 *   - a majority of the members other than this node report one and the
 *     same digest that differs from ours: our state is the wrong one, also
 *     when it matched the checkpoint (a leader whose state went wrong
 *     commits checkpoints of its own wrong digest): reset;
 *   - this node's state differed from the checkpoint (it abstains), and
 *     with it a majority of the members hold its digest: the checkpoint
 *     is the wrong one (its leader resets by the rule above), so this
 *     node stops abstaining for it. */
void integrity_state_judge(node *n)
{
    if (!n->cp_own_index || n->cfg.n_peers <= 1 || n->fatal)
        return;
    uint64_t index = n->cp_own_index;
    const uint8_t *dg[TRANSPORT_MAX_PEERS];   /* each other member's */
    uint32_t agree = 0;
    for (uint32_t k = 0; k < n->cfg.n_peers; k++) {
        dg[k] = n->cfg.peers[k].id == n->cfg.id ? NULL
                                                : digest_of(n, k, index);
        if (dg[k] && memcmp(dg[k], n->cp_own_digest, NODE_DIGEST_PREFIX) == 0)
            agree++;
    }
    if (n->state_diverged && agree + 1 >= integrity_quorum(n)) {
        fprintf(stderr, "paxosfs: node %u: a majority holds this node's "
                "state digest at block %" PRIu64 ", not the checkpoint's: "
                "the checkpoint's writer is the one that differs; voting "
                "again\n", n->cfg.id, index);
        n->state_diverged = false;
        n->cp_bad_index = 0;
        uint32_t differing = 0;
        for (uint32_t k = 0; k < n->cfg.n_peers; k++)
            differing += n->peer_chain_differs[k];
        n->abstaining = differing >= n->cfg.n_peers / 2 + 1;
        if (!n->abstaining)
            node_serve_reads(n);
        return;
    }
    /* one digest, other than ours, that a majority of the others report */
    for (uint32_t c = 0; c < n->cfg.n_peers; c++) {
        const uint8_t *cand = dg[c];
        if (!cand || memcmp(cand, n->cp_own_digest, NODE_DIGEST_PREFIX) == 0)
            continue;
        uint32_t same = 0;
        char who[120];
        size_t w = 0;
        for (uint32_t k = 0; k < n->cfg.n_peers; k++) {
            if (!dg[k] || memcmp(dg[k], cand, NODE_DIGEST_PREFIX) != 0)
                continue;
            same++;
            if (w < sizeof who)
                w += (size_t)snprintf(who + w, sizeof who - w, "%s%u",
                                      w ? "," : "nodes ", n->cfg.peers[k].id);
        }
        if (same < integrity_quorum(n))
            continue;
        char h_theirs[17];
        hex8(cand, h_theirs);
        chain_damage d;
        memset(&d, 0, sizeof d);
        snprintf(d.path, sizeof d.path, "%s (the key-value state in memory)",
                 n->data_dir);
        d.index = index;
        snprintf(d.reason, sizeof d.reason, "state digest differs from a "
                 "majority's (%.16s...)%s", h_theirs,
                 n->cp_own_matched ? ", not the checkpoint's" : "");
        char by[400];
        snprintf(by, sizeof by, "%s of %u members report state digest %s... "
                 "at block %" PRIu64, who, n->cfg.n_peers, h_theirs, index);
        fprintf(stderr, "paxosfs: node %u: state differs at block %" PRIu64
                " from the one a majority holds (%s); resetting this node's "
                "history\n", n->cfg.id, index, by);
        repair_reset(n, REPAIR_STATE, &d, 0, NULL, by);
        return;
    }
}

static void on_digest(node *n, uint32_t k, uint64_t index,
                      const uint8_t hash[CHAIN_HASH_BYTES])
{
    if (le_get32(hash + 8) != n->cfg.peers[k].id || index == 0)
        return;
    struct node_fact *f =
        &n->digest_facts[k][n->digest_next[k]++ % NODE_DIGEST_FACTS];
    f->index = index;
    memset(f->hash, 0, CHAIN_HASH_BYTES);
    memcpy(f->hash, hash + 13, NODE_DIGEST_PREFIX);
    integrity_state_judge(n);
}

/* ------------------------------------------- start gate (invariant 1) */

uint32_t integrity_peer_slot(const node *n, uint32_t id)
{
    uint32_t k = 0;
    while (k < n->cfg.n_peers && n->cfg.peers[k].id != id)
        k++;
    return k;
}

uint32_t integrity_quorum(const node *n)
{
    return n->cfg.n_peers > 1 ? n->cfg.n_peers / 2 + 1 : 1;
}

void integrity_gate_update(node *n)
{
    if (n->confirmed)
        return;
    uint32_t have = 1;
    char who[128] = "";
    size_t w = 0;
    for (uint32_t k = 0; k < n->cfg.n_peers; k++) {
        if (n->cfg.peers[k].id == n->cfg.id || !n->peer_holds_head[k] ||
            !n->peer_saw_start[k])
            continue;
        have++;
        if (w < sizeof who)
            w += (size_t)snprintf(who + w, sizeof who - w, "%s%u",
                                  w ? "," : " by node ", n->cfg.peers[k].id);
    }
    if (have < integrity_quorum(n))
        return;
    n->confirmed = true;
    if (n->cfg.n_peers > 1)
        fprintf(stderr, "paxosfs: node %u: chain head %" PRIu64 " confirmed%s "
                "(a majority holds it); %s\n", n->cfg.id, n->start_head, who,
                n->recovering_why[0] ? "still recovering lost acceptor state"
                                     : "voting");
    node_serve_reads(n);
}

/* Invariant 2: from now on (and durably) the replica casts no vote until
 * it recovered from every other voter. */
void integrity_begin_recovery(node *n, const char *why)
{
    if (n->recovering_why[0])
        return;
    snprintf(n->recovering_why, sizeof n->recovering_why, "%s", why);
    host_begin_recovery(n->host);   /* durably, with the next sync */
    fprintf(stderr, "paxosfs: node %u: %s: promises or accepted values may "
            "be lost; casting no vote until every other voter has answered "
            "and this node has learned all they reported%s\n", n->cfg.id, why,
            n->cfg.n_peers > 1 ? "" : " (a cluster of one has nobody to ask: "
            "writes acknowledged after the last durable block are lost)");
}

void integrity_recovery_done(node *n)
{
    px_status st;
    px_get_status(n->px, &st);
    fprintf(stderr, "paxosfs: node %u: recovered lost acceptor state (%s): "
            "every other voter promised a higher ballot and this node learned "
            "everything up to block %" PRIu64 "; voting again\n", n->cfg.id,
            n->recovering_why[0] ? n->recovering_why : "?", st.commit_index);
    n->recovering_why[0] = '\0';   /* the host recorded it in the store */
}

void integrity_head_frame(node *n, uint32_t to, uint64_t index,
                       const uint8_t hash[CHAIN_HASH_BYTES])
{
    if (to == 0) {
        transport_send_chain_head(n->net, index, hash);
        return;
    }
    wire_chain_head h = { .from = n->cfg.id, .index = index };
    memcpy(h.hash, hash, CHAIN_HASH_BYTES);
    uint8_t frame[WIRE_HEADER_BYTES + 64];
    size_t len = 0;
    if (wire_encode_chain_head_into(&h, frame, sizeof frame, &len) == 0)
        transport_send_frame(n->net, to, frame, len);
}

/* The hash of block `index` from the chain, or from the snapshot when
 * the chain was compacted past it (a QUERY's answer); -1: this node does
 * not hold it. */
static int block_hash(const node *n, uint64_t index,
                      uint8_t out[CHAIN_HASH_BYTES])
{
    if (index <= chain_head_index(n->chain) &&
        chain_hash_at(n->chain, index, out) == 0)
        return 0;
    const snap_info *s = host_snapshot(n->host);
    if (s && s->index == index) {
        memcpy(out, s->head_hash, CHAIN_HASH_BYTES);
        return 0;
    }
    return -1;
}

/* A START frame: whose start (subject), 0 = the sender's own, 1 = the
 * receiver's as the sender last saw it.  A report of the receiver's start
 * names a block of the sender's chain (invariant 5): the newest both are
 * known to hold, or none (index 0) from an empty chain. */
static void start_frame(node *n, uint32_t to, const acceptor_peer *start,
                        uint32_t subject, uint8_t kind, uint32_t k)
{
    uint8_t hash[CHAIN_HASH_BYTES] = {0};
    le_put64(hash, start->nonce);
    le_put32(hash + 8, subject);
    hash[12] = kind;
    if (kind == 1) {
        uint64_t at = chain_head_index(n->chain);
        if (n->peer_head_seen[k] < at)
            at = n->peer_head_seen[k];
        uint8_t block[CHAIN_HASH_BYTES];
        if (at > 0 && block_hash(n, at, block) < 0) {
            at = chain_head_index(n->chain);   /* compacted: our head */
            if (block_hash(n, at, block) < 0)
                at = 0;
        }
        if (at > 0) {
            le_put64(hash + NODE_START_AT, at);
            memcpy(hash + NODE_START_AT + 8, block, NODE_START_BLOCK_BYTES);
        }
    }
    integrity_head_frame(n, to,
                         NODE_HEAD_START | (start->counter & NODE_HEAD_MASK),
                         hash);
}

/* Every interval: our head (a fact), our start, each peer's start as we
 * last saw it, and while not confirmed a query for our start head. */
void integrity_send_heads(node *n, uint64_t now)
{
    uint64_t every = n->confirmed ? NODE_CHAIN_HEAD_INTERVAL_MS
                                  : NODE_CONFIRM_INTERVAL_MS;
    if (!n->net || now - n->last_head_sent_ms < every)
        return;
    n->last_head_sent_ms = now;
    transport_send_chain_head(n->net, chain_head_index(n->chain),
                              chain_head_hash(n->chain));
    start_frame(n, 0, &n->start, n->cfg.id, 0, 0);
    for (uint32_t k = 0; k < n->cfg.n_peers; k++)
        if (n->cfg.peers[k].id != n->cfg.id)
            start_frame(n, n->cfg.peers[k].id, &n->peer_start[k],
                        n->cfg.peers[k].id, 1, k);
    uint8_t none[CHAIN_HASH_BYTES] = {0};
    if (!n->confirmed && n->start_head > 0)
        integrity_head_frame(n, 0, NODE_HEAD_QUERY | n->start_head, none);
    /* a peer whose START frames wait for our chains to agree: ask it for
     * our head block */
    uint64_t head = chain_head_index(n->chain);
    for (uint32_t k = 0; head > 0 && k < n->cfg.n_peers; k++)
        if ((n->heard_own_set[k] || n->heard_ours_set[k]) &&
            !start_trusted(n, k))
            integrity_head_frame(n, n->cfg.peers[k].id, NODE_HEAD_QUERY | head, none);
    if (!n->confirmed && now - n->last_wait_log_ms >= 5000) {
        n->last_wait_log_ms = now;
        fprintf(stderr, "paxosfs: node %u: waiting for a majority to confirm "
                "chain head %" PRIu64 " and this start (%" PRIu64 " ms); not "
                "voting, serving no reads\n", n->cfg.id, n->start_head,
                now - n->started_ms);
    }
}

/* A peer's start, and ours as it saw it, from a peer whose chain agrees
 * with ours (positive agreement): record the first, check the second. */
static bool start_trusted(const node *n, uint32_t k)
{
    return chain_head_index(n->chain) == 0 ||
           (n->peer_agrees[k] && !n->peer_chain_differs[k]);
}

static void starts_judge(node *n, uint32_t k)
{
    if (!start_trusted(n, k))
        return;
    uint32_t from = n->cfg.peers[k].id;
    if (n->heard_own_set[k]) {
        n->heard_own_set[k] = false;
        acceptor_peer rec = n->heard_own[k];
        acceptor_peer *known = &n->peer_start[k];
        rec.id = from;
        if (rec.counter > known->counter) {
            *known = rec;
            n->peer_rolled_back[k] = false;
            int rc = acceptor_put_peer(n->acceptor, &rec);
            if (rc < 0 && rc != -ENOSPC)
                node_storage_failed(n, "acceptor store write", rc);
        } else if ((rec.counter < known->counter ||
                    rec.nonce != known->nonce) && !n->peer_rolled_back[k]) {
            n->peer_rolled_back[k] = true;
            fprintf(stderr, "paxosfs: node %u: node %u started from an older "
                    "copy of its backing directory (its start %" PRIu64
                    ", this node saw start %" PRIu64 "); it recovers before it "
                    "votes\n", n->cfg.id, from, rec.counter, known->counter);
        }
    }
    if (!n->heard_ours_set[k])
        return;
    /* invariant 5: a report made by a chain that differs from ours at
     * the block it names is dropped.  One naming a block this node no
     * longer holds (beyond its head: it lost blocks the sender saw it
     * hold, as a node restored from an older copy does) is judged on the
     * agreement alone; one naming a block compacted here waits for the
     * next report (the sender is far behind and catching up). */
    uint8_t ours[CHAIN_HASH_BYTES];
    uint64_t at = n->heard_ours_at[k];
    if (at > 0 && at <= chain_head_index(n->chain)) {
        if (block_hash(n, at, ours) < 0)
            return;
        if (memcmp(ours, n->heard_ours_block[k], NODE_START_BLOCK_BYTES)) {
            n->heard_ours_set[k] = false;
            n->start_reports_dropped++;
            if (!n->start_report_logged[k])
                fprintf(stderr, "paxosfs: node %u: node %u reported this "
                        "node's start %" PRIu64 " from a chain that differs "
                        "at block %" PRIu64 ": not counted\n", n->cfg.id, from,
                        n->heard_ours[k].counter, at);
            n->start_report_logged[k] = true;
            return;
        }
    }
    n->start_report_logged[k] = false;
    n->heard_ours_set[k] = false;
    acceptor_peer rec = n->heard_ours[k];
    /* what the peer saw of us must be this start or one our store knows */
    bool fits = rec.counter == 0 ||
                (rec.counter == n->start.counter &&
                 rec.nonce == n->start.nonce) ||
                rec.counter < n->prev_start.counter ||
                (rec.counter == n->prev_start.counter &&
                 rec.nonce == n->prev_start.nonce);
    if (!fits) {
        char why[sizeof n->recovering_why];
        snprintf(why, sizeof why, "node %u saw start %" PRIu64 " of this "
                 "node, but the backing directory knows only %" PRIu64
                 " starts: it was restored from an older copy", from,
                 rec.counter, n->prev_start.counter);
        integrity_begin_recovery(n, why);
        /* start above what anyone saw, so that the next reports fit */
        if (rec.counter >= n->start.counter) {
            n->start.counter = rec.counter + 1;
            n->start.nonce = node_random_u64();
            int rc = acceptor_put_incarnation(n->acceptor, n->start.counter,
                                              n->start.nonce);
            if (rc < 0)
                node_storage_failed(n, "acceptor store write", rc);
        }
    }
    if (!n->peer_saw_start[k]) {
        n->peer_saw_start[k] = true;
        integrity_gate_update(n);
    }
}

static void on_start(node *n, uint32_t k, uint64_t index,
                     const uint8_t hash[CHAIN_HASH_BYTES])
{
    acceptor_peer rec = { .counter = index & NODE_HEAD_MASK,
                          .nonce = le_get64(hash) };
    uint32_t subject = le_get32(hash + 8);
    if (hash[12] == 0 && subject == n->cfg.peers[k].id) {
        if (rec.counter != n->last_own[k].counter ||
            rec.nonce != n->last_own[k].nonce) {
            n->last_own[k] = rec;
            n->peer_agrees[k] = false;   /* it restarted: its directory
                                            may be another one now */
        }
        n->heard_own[k] = rec;
        n->heard_own_set[k] = true;
    } else if (hash[12] == 1 && subject == n->cfg.id) {
        n->heard_ours[k] = rec;
        n->heard_ours_at[k] = le_get64(hash + NODE_START_AT);
        memcpy(n->heard_ours_block[k], hash + NODE_START_AT + 8,
               NODE_START_BLOCK_BYTES);
        n->heard_ours_set[k] = true;
    } else {
        return;
    }
    starts_judge(n, k);
}

/* A peer holds block `index` with `hash`. */
static void on_fact(node *n, uint32_t k, uint64_t index,
                    const uint8_t hash[CHAIN_HASH_BYTES])
{
    if (index > n->peer_head_seen[k])
        n->peer_head_seen[k] = index;
    struct node_fact *f = &n->facts[k][n->fact_next[k]++ % NODE_FACTS];
    f->index = index;
    memcpy(f->hash, hash, CHAIN_HASH_BYTES);
    integrity_check_divergence(n, n->cfg.peers[k].id, index, hash);
    /* positive agreement: the peer holds our block at an index both
     * chains reach, at or past our start head or at its own head (a peer
     * behind us announces nothing else below it; then its whole chain is
     * a prefix of ours) */
    uint8_t ours[CHAIN_HASH_BYTES];
    if (index >= 1 && index <= chain_head_index(n->chain) &&
        chain_hash_at(n->chain, index, ours) == 0) {
        bool was = n->peer_agrees[k];
        n->peer_agrees[k] = memcmp(ours, hash, CHAIN_HASH_BYTES) == 0;
        if (!n->peer_agrees[k])
            divergence_judge(n, index, ours);   /* invariant 4 */
        if (n->peer_agrees[k] && !n->peer_holds_head[k]) {
            n->peer_holds_head[k] = true;
            integrity_gate_update(n);
        }
        if (n->peer_agrees[k] && !was)
            starts_judge(n, k);
    }
    if (!n->peer_holds_head[k] && n->start_head == 0) {
        n->peer_holds_head[k] = true;   /* nothing of ours to confirm */
        integrity_gate_update(n);
    }
    if (n->held_catchup)
        catchup_try_held(n);
}

void integrity_on_chain_head(void *arg, uint32_t from, uint64_t index,
                          const uint8_t hash[PX_HASH_BYTES])
{
    node *n = arg;
    uint32_t k = integrity_peer_slot(n, from);
    if (k == n->cfg.n_peers || from == n->cfg.id)
        return;
    if ((index & NODE_HEAD_START) && hash[12] == 2) {
        on_digest(n, k, index & NODE_HEAD_MASK, hash);
    } else if (index & NODE_HEAD_START) {
        on_start(n, k, index, hash);
    } else if (index & NODE_HEAD_QUERY) {
        uint64_t want = index & NODE_HEAD_MASK;
        uint8_t ours[CHAIN_HASH_BYTES];
        if (block_hash(n, want, ours) == 0)
            integrity_head_frame(n, from, want, ours);
    } else {
        on_fact(n, k, index, hash);
    }
}

/* While not confirmed (invariant 1) or abstaining the node neither votes,
 * campaigns nor leads: of what its replica sends, only requests for the
 * leader (FORWARD) and for missing slots (CATCHUP_REQ) leave.  A node that
 * led when it found out goes silent, so the others elect a leader among
 * themselves. */
bool integrity_filter(node *n, const px_msg *m)
{
    if (!n->fatal && ((n->confirmed && !n->abstaining) ||
                      m->type == PX_MSG_FORWARD ||
                      m->type == PX_MSG_CATCHUP_REQ))
        return false;   /* loop.c invariant 2: nothing at all while failed */
    n->votes_withheld++;
    return true;
}

