/*
 * node.c - the node runtime: the event loop around the consensus replica,
 * the storage it drives and the FUSE mount it serves (see node.h).
 *
 * Invariants:
 *  1. Messages of a replica output never leave before the acceptor records
 *     of that output are durable; PX_EV_PERSISTED is reported only after
 *     that fdatasync returned (DESIGN.md invariant 2).
 *  2. Committed entries are applied in slot order, each once: chain block
 *     first (it fixes the hash), then the key-value state.
 *  3. Completion callbacks of fs requests never run inside node_submit or
 *     node_read_barrier: requests are queued and stepped by the loop, so
 *     fs handlers are never re-entered.
 *  4. After a storage failure (a failed write or fdatasync of the chain
 *     or the acceptor store, no descriptor left) the node neither leads
 *     nor votes (px_suspend), sends nothing, and fails writes and reads
 *     on its mount at once with ENOSPC (its disk is full) or EIO;
 *     net/health.c retries with back-off and, once a probe passes,
 *     storage_reopen re-verifies the stores from disk, builds a new
 *     replica and passes the start gate (invariant 5) again before it
 *     votes.
 *  5. A started node votes, leads and serves its chain (reads, catch-up)
 *     only once it is confirmed: a majority of the members, itself
 *     included, hold the same block as it does where their chains meet
 *     (at its head, or at theirs when they are behind: positive
 *     agreement, never the absence of disagreement), and each peer
 *     counted reported this node's start as it last saw it, so a node
 *     restored from an older copy of its backing directory learns so
 *     before it votes.  Until then only FORWARD and CATCHUP_REQ leave
 *     (abstain_filter).
 *  6. A node whose acceptor state may be incomplete (store lost, damaged,
 *     or rolled back) runs its replica recovering (consensus/recovery.c)
 *     and keeps that durably in the acceptor store until it recovered.
 *  7. Entries installed from a CATCHUP come from the leader the replica
 *     follows, in its ballot, and only up to a block whose hash (computed
 *     over our chain and the entries) a quorum of the other members has
 *     told us they hold; the rest waits for their answer or is dropped
 *     and counted (catchup_dropped).
 *  8. Reads are served only while the node is confirmed and its chain
 *     does not differ from a majority's; otherwise they wait until the
 *     read deadline (ETIMEDOUT).
 */
#include "node.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "../chain/chain.h"
#include "../chain/kv.h"
#include "../consensus/px.h"
#include "../fs/fs.h"
#include "admin.h"
#include "cpus.h"
#include "health.h"
#include "outbox.h"
#include "syncer.h"
#include "worker.h"
#include "transport.h"
#include "wire.h"

#define NODE_MAX_PENDING 1024   /* power of two, <= the session table's
                                   per-client bound (chain/kv.c) */
#define NODE_MAX_PROPOSE 4096           /* requests stepped per PROPOSE */
#define NODE_MAX_READS 65536            /* outstanding read barriers */
#define NODE_MAX_HELD_MSGS 100000       /* messages waiting for a sync */
#define NODE_PEER_ALIVE_MS 1500        /* .status: "connected" */
#define NODE_CHAIN_HEAD_INTERVAL_MS 250 /* chain head to every peer */
#define NODE_CONFIRM_INTERVAL_MS 50     /* ... and while not confirmed */
#define NODE_FACTS 64                   /* (index, hash) kept per peer */
#define NODE_CATCHUP_HOLD_MS 2000       /* a CATCHUP waits this long for
                                           the peers' hashes */
/* CHAIN_HEAD frames (net/wire.h: from, index, hash) carry three things,
 * told apart by the top bits of `index`:
 *   plain      "I hold block `index` with hash `hash`" (a fact: the head
 *              every NODE_CHAIN_HEAD_INTERVAL_MS, or an answer);
 *   QUERY      "which hash do you hold at block index & MASK?": answered
 *              with a plain frame to the asker if it holds that block;
 *   START      a node's start: index & MASK = its counter, hash[0..7] its
 *              nonce, hash[8..11] whose start it is, hash[12] 0 = the
 *              sender's own start, 1 = the receiver's start as the sender
 *              last saw it (acceptor store, peer records). */
#define NODE_HEAD_START (UINT64_C(1) << 63)
#define NODE_HEAD_QUERY (UINT64_C(1) << 62)
#define NODE_HEAD_MASK (NODE_HEAD_QUERY - 1)
#define NODE_CATCHUP_BLOCKS 256         /* chain blocks per catch-up frame */
#define NODE_CATCHUP_BYTES (4u << 20)
#define NODE_MOUNT_IDLE_MS 100          /* no FUSE request for this long:
                                           a follower syncs inline */
#define NODE_NO_LEADER_FACTOR 4         /* no leader heard from for this
                                           many maximum election timeouts:
                                           fail new requests at once */

/* A write submitted by the mount, until its entry is applied.  `ticket`
 * numbers every submission in order, including those still waiting for
 * room in the ring (struct waiting), so read points can name "every write
 * submitted so far". */
typedef struct pending {
    bool used;
    bool answered;          /* its caller already returned: no deadline,
                               retried until it commits (node.h) */
    bool retry;             /* the replica refused it for now (queue full):
                               propose it again next turn */
    uint64_t seq;
    uint64_t ticket;
    uint64_t deadline_ms;
    fs_done_fn done;
    void *arg;
    uint8_t *op;            /* encoded op until it has been proposed */
    uint32_t op_len;
} pending;

/* A write that found the ring full: it waits here, in submission order,
 * for room (overload pushes back on the writer, it does not fail it). */
typedef struct waiting {
    struct waiting *next;
    bool answered;
    uint64_t ticket;
    uint64_t deadline_ms;
    fs_done_fn done;
    void *arg;
    uint8_t *op;
    uint32_t op_len;
} waiting;

/* A read barrier, until its read index is applied. */
typedef struct read_wait {
    uint64_t token;
    uint64_t index;         /* 0 until the replica answered */
    uint64_t deadline_ms;
    uint64_t after_ticket;  /* this node's writes up to here first: the
                               newest whose caller was already answered */
    fs_done_fn done;
    void *arg;
    bool ready;
} read_wait;

struct node {
    node_config cfg;
    char *data_dir;
    char *mountpoint;
    int lock_fd;
    chain *chain;
    acceptor_store *acceptor;
    kv *state;
    px_replica *px;
    fs *mount;
    int signal_fd;

    uint64_t client_id;
    uint64_t next_seq;
    /* ring of outstanding writes indexed by seq & (NODE_MAX_PENDING - 1);
     * every seq in [low_seq, next_seq) is either used or done */
    pending *ring;
    uint64_t low_seq;
    uint64_t next_ticket;
    uint64_t answered_ticket;   /* newest write submitted after its caller
                                   was answered (a commit at release) */
    uint64_t answered_outstanding; /* such writes not yet applied */
    uint64_t to_propose_from;   /* first seq not yet stepped */
    uint32_t n_retry;           /* ring entries with retry set */
    waiting *wait_head, *wait_tail;  /* overflow of the ring, FIFO */
    uint64_t n_waiting;
    uint64_t waited_total;      /* writes that ever had to wait for room */

    /* a reachable leader (net/node.h "No leader"): when one was last
     * known alive; none for longer than no_leader_ms makes new requests
     * fail at once with EHOSTUNREACH */
    uint64_t leader_seen_ms;
    uint64_t no_leader_ms;
    bool no_leader;
    uint64_t fast_failed;       /* requests refused for want of a leader */
    uint64_t drain_deadline_ms; /* stopping: wait for answered writes */

    read_wait *reads;
    uint32_t n_reads;
    uint64_t next_read_token;
    uint64_t *new_reads;        /* tokens not yet stepped */
    uint32_t n_new_reads;

    syncer *sync;               /* group commit of the acceptor store */
    worker *bg;                 /* the chain's periodic fdatasync */
    chain_sync_job chain_job;   /* valid while bg runs it */
    bool compact_due;           /* chain synced further: compact the
                                   acceptor store once its sync is idle */

    /* cluster: messages wait until every persist issued before them is
     * durable (persist ids increase; syncs complete in order) */
    void *zctx;
    transport *net;
    net_peer_addr peers[TRANSPORT_MAX_PEERS];   /* cfg.peers points here */
    keys key;                                   /* cfg.key points here */
    admin *adm;
    uint64_t last_persist_issued;
    uint64_t durable_persist_id;
    outbox held;
    /* chain comparison with each member (index as in cfg.peers): the
     * block index last compared and whether the hashes differed there */
    uint64_t peer_chain_index[TRANSPORT_MAX_PEERS];
    bool peer_chain_differs[TRANSPORT_MAX_PEERS];
    bool abstaining;              /* our chain differs from a majority's */
    uint64_t last_head_sent_ms;
    uint64_t votes_withheld;      /* messages not sent while abstaining */

    /* invariant 5: the start gate */
    uint64_t start_head;          /* chain head when the node started */
    bool confirmed;
    uint64_t started_ms, last_wait_log_ms;
    bool peer_holds_head[TRANSPORT_MAX_PEERS]; /* same block at >= start_head */
    bool peer_agrees[TRANSPORT_MAX_PEERS];     /* its last block compared
                                                  (index >= 1) was ours */
    bool peer_saw_start[TRANSPORT_MAX_PEERS];  /* reported our start, and it
                                                  fits our store */
    acceptor_peer start;          /* this start (counter, nonce) */
    acceptor_peer prev_start;     /* the start before it, from the store */
    acceptor_peer peer_start[TRANSPORT_MAX_PEERS]; /* each peer's latest */
    bool peer_rolled_back[TRANSPORT_MAX_PEERS];    /* logged once */
    /* START frames heard, judged once the peer's chain agrees with ours
     * (a node with another cluster's directory reports nonsense) */
    acceptor_peer heard_own[TRANSPORT_MAX_PEERS];  /* its own start */
    acceptor_peer heard_ours[TRANSPORT_MAX_PEERS]; /* ours, as it saw it */
    bool heard_own_set[TRANSPORT_MAX_PEERS];
    bool heard_ours_set[TRANSPORT_MAX_PEERS];
    acceptor_peer last_own[TRANSPORT_MAX_PEERS];   /* its start, as heard:
                                                      a new one means its
                                                      chain must agree anew */
    /* invariant 6 */
    char recovering_why[1400];    /* "" = not recovering */
    /* invariant 7: what peers told us they hold, and a held CATCHUP */
    struct node_fact {
        uint64_t index;
        uint8_t hash[CHAIN_HASH_BYTES];
    } facts[TRANSPORT_MAX_PEERS][NODE_FACTS];
    uint32_t fact_next[TRANSPORT_MAX_PEERS];
    px_msg *held_catchup;
    uint64_t held_catchup_ms;
    uint64_t catchup_dropped, catchup_installed;
    uint64_t last_catchup_log_ms;
    uint64_t catchup_query_index, catchup_query_ms;  /* last asked */

    uint64_t last_now_ms;
    uint64_t next_tick_ms;
    uint64_t last_chain_sync_ms;
    uint64_t last_fuse_ms;      /* the mount last had requests */

    /* CPU placement (cfg.leader_cpus, docs/design.md "CPU placement") */
    cpu_set_t leader_cpus;      /* cfg.leader_cpus points here */
    cpu_set_t other_cpus;       /* where a follower runs */
    int placed_as;              /* -1 not yet, 0 follower, 1 leader */
    int placement_error;        /* last cpus_apply failure, logged once */
    int fatal;                  /* negative errno while storage is failed
                                   (invariant 4) */
    health health;              /* net/health.h */
    px_options px_opt;          /* to build a new replica (storage_reopen) */
    bool stop;
};

/* ------------------------------------------------------------- clock */

/* Wall-clock milliseconds, never decreasing: the replica wants a monotonic
 * clock and the leader stamps it into entries as their commit time. */
static uint64_t node_now_ms(node *n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (ms < n->last_now_ms)
        ms = n->last_now_ms;
    n->last_now_ms = ms;
    return ms;
}

void node_config_default(node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->id = 1;
    cfg->commit_timeout_ms = 10000;
    /* 0: the kernel asks the mount every time, so every stat and lookup
     * is linearizable (docs/design.md, "Reads") */
    cfg->attr_timeout_s = 0.0;
    cfg->entry_timeout_s = 0.0;
    cfg->chain_sync_interval_ms = 200;
}

/* --------------------------------------------------------- completion */

static pending *pending_at(node *n, uint64_t seq)
{
    if (seq < n->low_seq || seq >= n->next_seq)
        return NULL;
    pending *p = &n->ring[seq & (NODE_MAX_PENDING - 1)];
    return p->used && p->seq == seq ? p : NULL;
}

static void serve_ready_reads(node *n);

/* Give the oldest waiting writes the ring slots that are free. */
static void admit_waiting(node *n)
{
    while (n->wait_head && n->next_seq - n->low_seq < NODE_MAX_PENDING) {
        waiting *w = n->wait_head;
        n->wait_head = w->next;
        if (!n->wait_head)
            n->wait_tail = NULL;
        n->n_waiting--;
        uint64_t seq = n->next_seq++;
        pending *p = &n->ring[seq & (NODE_MAX_PENDING - 1)];
        assert(!p->used);
        *p = (pending){ .used = true, .answered = w->answered, .seq = seq,
                        .ticket = w->ticket, .deadline_ms = w->deadline_ms,
                        .done = w->done, .arg = w->arg, .op = w->op,
                        .op_len = w->op_len };
        free(w);
    }
}

/* The oldest submission not yet finished (tickets are admitted to the
 * ring in order, and the ring's lowest seq is always in use). */
static uint64_t low_ticket(const node *n)
{
    if (n->low_seq < n->next_seq)
        return n->ring[n->low_seq & (NODE_MAX_PENDING - 1)].ticket;
    if (n->wait_head)
        return n->wait_head->ticket;
    return n->next_ticket;
}

static void pending_finish(node *n, pending *p, int result)
{
    fs_done_fn done = p->done;
    void *arg = p->arg;
    if (p->answered)
        n->answered_outstanding--;
    if (p->retry)
        n->n_retry--;
    free(p->op);
    memset(p, 0, sizeof *p);
    while (n->low_seq < n->next_seq &&
           !n->ring[n->low_seq & (NODE_MAX_PENDING - 1)].used)
        n->low_seq++;
    admit_waiting(n);
    if (done)
        done(arg, result);
    if (n->n_reads)
        serve_ready_reads(n);
}

/* Answer every waiting write that `pick` selects with `result`. */
static void finish_waiting(node *n, bool (*pick)(const waiting *, void *),
                           void *pick_arg, int result)
{
    waiting *keep = NULL, **tail = &keep, *done = NULL, **dtail = &done;
    for (waiting *w = n->wait_head, *next; w; w = next) {
        next = w->next;
        w->next = NULL;
        if (pick(w, pick_arg)) {
            *dtail = w;
            dtail = &w->next;
            n->n_waiting--;
            if (w->answered)
                n->answered_outstanding--;
        } else {
            *tail = w;
            tail = &w->next;
        }
    }
    n->wait_head = keep;
    n->wait_tail = NULL;
    for (waiting *w = keep; w; w = w->next)
        n->wait_tail = w;
    for (waiting *w = done, *next; w; w = next) {
        next = w->next;
        if (w->done)
            w->done(w->arg, result);
        free(w->op);
        free(w);
    }
}

static bool waiting_any(const waiting *w, void *arg)
{
    (void)w;
    (void)arg;
    return true;
}

static bool read_is_expired(const read_wait *r, void *arg);
static void finish_reads(node *n, bool (*pick)(const read_wait *, void *),
                         void *pick_arg, int result);

static void fail_all_pending(node *n, int result, int read_result)
{
    finish_waiting(n, waiting_any, NULL, result);
    for (uint64_t s = n->low_seq; s < n->next_seq; s++) {
        pending *p = pending_at(n, s);
        if (p)
            pending_finish(n, p, result);
    }
    uint64_t all = UINT64_MAX;
    finish_reads(n, read_is_expired, &all, read_result);
    n->n_new_reads = 0;
}

/* Invariant 4: logged once (net/health.c); the replica stops leading and
 * voting from its next step on; writers get ENOSPC or EIO now. */
static void storage_failed(node *n, const char *what, int rc)
{
    if (n->fatal)
        return;
    n->fatal = rc < 0 ? rc : -EIO;
    health_fail(&n->health, what, n->fatal, node_now_ms(n));
    px_suspend(n->px);
    fail_all_pending(n, health_client_errno(n->fatal),
                     health_client_errno(n->fatal));
}

/* ------------------------------------------------------------- apply */

static void on_result(void *arg, uint64_t client_id, uint64_t seq,
                      int32_t result, uint64_t slot)
{
    (void)slot;
    node *n = arg;
    if (client_id != n->client_id)
        return;
    pending *p = pending_at(n, seq);
    if (p)
        pending_finish(n, p, result);
}

/* Tell the mount which keys an applied batch changed (its own writes
 * too: an inode follows its file through renames, whoever made them). */
static void notify_changes(node *n, const px_entry *e)
{
    if (!n->mount || e->kind != PX_ENTRY_BATCH)
        return;
    uint32_t off = 0;
    px_request req;
    while (px_batch_next(e->data, e->len, &off, &req) == 1) {
        kv_op op;
        if (kv_op_decode(req.op, req.len, &op) != 0)
            continue;
        /* judged from the state after the entry: a failed op changed
         * nothing */
        fs_key_changed(n->mount, op.key, op.key_len,
                       !kv_get(n->state, op.key, op.key_len));
        if (op.type == KV_OP_RENAME)
            fs_key_changed(n->mount, op.key2, op.key2_len,
                           !kv_get(n->state, op.key2, op.key2_len));
    }
}

/* Remove the reads `pick` selects from the table, then answer them: the
 * table is settled before any callback runs. */
static void finish_reads(node *n, bool (*pick)(const read_wait *, void *),
                         void *pick_arg, int result)
{
    read_wait done[64];
    for (;;) {
        uint32_t kept = 0, k = 0;
        for (uint32_t i = 0; i < n->n_reads; i++) {
            if (k < 64 && pick(&n->reads[i], pick_arg))
                done[k++] = n->reads[i];
            else
                n->reads[kept++] = n->reads[i];
        }
        n->n_reads = kept;
        for (uint32_t i = 0; i < k; i++)
            done[i].done(done[i].arg, result);
        if (k < 64)
            return;
    }
}

struct serve_point {
    uint64_t applied;
    uint64_t low_ticket;
    bool serving;           /* invariant 8 */
};

/* A read is served once the state has applied its read index and this
 * node's writes up to the newest one whose caller was answered before it
 * committed (a commit at release: a process sees its own writes).  Writes
 * still in flight whose callers wait are concurrent with the read: it
 * need not wait for them, and waiting made every lookup under load wait
 * for a commit. */
static bool read_is_served(const read_wait *r, void *arg)
{
    const struct serve_point *p = arg;
    return p->serving && r->ready && r->index <= p->applied &&
           p->low_ticket > r->after_ticket;
}

/* Invariant 8: this node's state is one a majority vouches for. */
static bool node_serves(const node *n)
{
    return n->confirmed && !n->abstaining;
}

static void serve_ready_reads(node *n)
{
    struct serve_point p = { kv_applied_index(n->state), low_ticket(n),
                             node_serves(n) };
    finish_reads(n, read_is_served, &p, 0);
}

static void apply_committed(node *n, const px_entry *e)
{
    if (n->fatal)
        return;
    if (e->slot > chain_head_index(n->chain)) {
        uint8_t hash[CHAIN_HASH_BYTES];
        int rc = chain_append(n->chain, e->slot, e->time_ms, e->kind,
                              e->data, e->len, hash);
        if (rc < 0) {
            storage_failed(n, "chain append", rc);
            return;
        }
        px_set_chain_head(n->px, e->slot, hash);
    }
    /* already applied: a restart's replay, or blocks whose chain copy a
     * failed disk lost and that come again after storage_reopen (the
     * state never goes back) */
    if (e->slot <= kv_applied_index(n->state))
        return;
    int rc = kv_apply_entry(n->state, e, on_result, n);
    if (rc < 0) {
        storage_failed(n, "applying a committed entry", rc);
        return;
    }
    notify_changes(n, e);
}

/* ------------------------------------------------------------ outputs */

static bool abstain_filter(node *n, const px_msg *m);
static void recovery_done(node *n);

static void send_now(node *n, const px_msg *m)
{
    if (n->net && !abstain_filter(n, m))
        transport_send(n->net, m);   /* a drop is counted by the transport */
}

static void send_held(void *arg, const px_msg *m)
{
    send_now(arg, m);
}

/* A peer lags behind what the replica retains: stream it committed blocks
 * from the chain, which holds every committed entry (the snapshot of a
 * cluster whose chain is complete). */
static void send_chain_catchup(node *n, uint32_t peer_id)
{
    if (!n->net)
        return;
    uint64_t from = 0;
    for (uint32_t i = 0; i < transport_peer_count(n->net); i++) {
        transport_peer_stats st;
        transport_peer_stats_get(n->net, i, &st);
        if (st.id == peer_id)
            from = st.last_commit + 1;
    }
    uint64_t head = chain_head_index(n->chain);
    if (from == 0 || from > head)
        return;
    px_entry entries[NODE_CATCHUP_BLOCKS];
    chain_block blocks[NODE_CATCHUP_BLOCKS];
    uint32_t k = 0;
    uint64_t bytes = 0;
    for (uint64_t i = from; i <= head && k < NODE_CATCHUP_BLOCKS &&
                            bytes < NODE_CATCHUP_BYTES; i++) {
        if (chain_read(n->chain, i, &blocks[k]) < 0)
            break;
        entries[k] = (px_entry){ .slot = blocks[k].index,
                                 .time_ms = blocks[k].time_ms,
                                 .kind = blocks[k].kind,
                                 .len = blocks[k].len,
                                 .data = blocks[k].data };
        bytes += blocks[k].len;
        k++;
    }
    if (k > 0) {
        px_status st;
        px_get_status(n->px, &st);
        px_msg m = { .type = PX_MSG_CATCHUP, .from = n->cfg.id, .to = peer_id,
                     .ballot = st.ballot, .slot = from, .commit = head,
                     .n_entries = k, .entries = entries };
        send_now(n, &m);
    }
    for (uint32_t i = 0; i < k; i++)
        chain_block_free(&blocks[i]);
}

static void handle_output(node *n, const px_output *out)
{
    int rc = 0;
    if (out->persist_promise)
        rc = acceptor_put_promise(n->acceptor, out->promise);
    for (uint32_t i = 0; rc == 0 && i < out->n_accepts; i++)
        rc = acceptor_put_accept(n->acceptor, &out->accepts[i]);
    if (rc < 0)
        storage_failed(n, "acceptor store write", rc);
    else if (out->persist_id && syncer_note(n->sync, out->persist_id) < 0)
        storage_failed(n, "bookkeeping", -ENOMEM);
    if (out->persist_id > n->last_persist_issued)
        n->last_persist_issued = out->persist_id;
    for (uint32_t i = 0; i < out->n_msgs; i++) {
        const px_msg *m = &out->msgs[i];
        uint64_t after = outbox_vouches(m) ? n->last_persist_issued : 0;
        if (after <= n->durable_persist_id && (after == 0 || n->held.count == 0))
            send_now(n, m);
        else
            (void)outbox_hold(&n->held, m, after);   /* a drop is counted */
    }
    if (out->snapshot_to)
        send_chain_catchup(n, out->snapshot_to);
    if (out->recovered)
        recovery_done(n);

    for (uint32_t i = 0; i < out->n_committed; i++)
        apply_committed(n, &out->committed[i]);

    for (uint32_t i = 0; i < out->n_failed; i++) {
        if (out->failed[i].client_id != n->client_id)
            continue;
        pending *p = pending_at(n, out->failed[i].seq);
        if (!p)
            continue;
        int st = out->failed[i].status;
        if ((st == -EAGAIN || st == -ENOMEM) && p->op && !p->retry) {
            /* the replica's queue is full for now: the write waits, it
             * does not fail (step_queued proposes it again) */
            p->retry = true;
            n->n_retry++;
        } else if (!p->retry) {
            pending_finish(n, p, st);
        }
    }
    for (uint32_t i = 0; i < out->n_reads; i++) {
        const px_read_ready *rr = &out->reads[i];
        for (uint32_t j = 0; j < n->n_reads; j++) {
            read_wait *r = &n->reads[j];
            if (r->token != rr->read_token)
                continue;
            if (rr->status == -EAGAIN && node_now_ms(n) < r->deadline_ms &&
                n->n_new_reads < NODE_MAX_READS) {
                /* no leader could confirm it (a leader change): ask again
                 * until the read's deadline */
                n->new_reads[n->n_new_reads++] = r->token;
            } else if (rr->status < 0) {
                read_wait failed = *r;
                n->reads[j] = n->reads[--n->n_reads];
                failed.done(failed.arg, rr->status == -EAGAIN ? -ETIMEDOUT
                                                              : rr->status);
            } else {
                r->ready = true;
                r->index = rr->index;
            }
            break;
        }
    }
    if (out->n_reads || out->n_committed)
        serve_ready_reads(n);
    if (out->next_tick_ms)
        n->next_tick_ms = out->next_tick_ms;
}

static void step(node *n, px_event *ev)
{
    px_output out;
    ev->now_ms = node_now_ms(n);
    int rc = px_step(n->px, ev, &out);
    if (rc < 0) {
        fprintf(stderr, "paxosfs: node %u: replica step failed: %s\n",
                n->cfg.id, strerror(-rc));
        return;
    }
    handle_output(n, &out);
}

/* ------------------------------------------------------ group commit */

/* Report every output the finished fdatasyncs covered as persisted (which
 * may commit entries, answer parked requests and buffer new records). */
static void collect_durable(node *n)
{
    uint64_t ids[256];
    for (;;) {
        int k = syncer_take(n->sync, ids, 256);
        if (k < 0) {
            storage_failed(n, "acceptor fdatasync", k);
            return;
        }
        if (k == 0)
            return;
        /* persist ids increase: the last one is the newest durable */
        if (ids[k - 1] > n->durable_persist_id)
            n->durable_persist_id = ids[k - 1];
        outbox_release(&n->held, n->durable_persist_id, send_held, n);
        for (int i = 0; i < k && !n->fatal; i++) {
            px_event ev = { .type = PX_EV_PERSISTED };
            ev.u.persist_id = ids[i];
            step(n, &ev);
        }
    }
}

/* Whether the loop runs the next fdatasync itself.  A follower whose
 * mount is idle has nothing to overlap with its sync: its ACCEPTED waits
 * for it anyway, and syncing inline saves two thread hand-offs (~70 us of
 * a ~250 us answer here).  A leader, or a follower serving its own mount,
 * keeps the sync thread: the loop must go on reading FUSE requests and
 * messages while the disk works, or every request waits for a sync. */
static bool sync_inline(node *n)
{
    if (n->mount && node_now_ms(n) - n->last_fuse_ms < NODE_MOUNT_IDLE_MS)
        return false;
    return px_role(n->px) != PX_LEADER && syncer_idle(n->sync);
}

/* Write the buffered records as a new generation and make it durable:
 * inline (sync_inline), or through the sync thread, which covers it with
 * its next fdatasync (group commit without a timer). */
static void flush_writes(node *n)
{
    for (int round = 0; round < 64 && !n->fatal; round++) {
        if (!syncer_pending(n->sync))
            return;
        bool now = sync_inline(n);
        int rc = syncer_flush(n->sync, now);
        if (rc < 0) {
            storage_failed(n, "acceptor store write or fdatasync", rc);
            return;
        }
        if (!now)
            return;
        collect_durable(n);   /* may buffer more: another round */
    }
}

/* The sync thread finished an fdatasync. */
static void collect_sync(node *n)
{
    syncer_ack_wake(n->sync);
    collect_durable(n);
    flush_writes(n);
}

/* Wait until everything written is durable and collected (shutdown). */
static void drain_sync(node *n)
{
    for (int i = 0; i < 1000 && !n->fatal && !syncer_idle(n->sync); i++) {
        struct pollfd p = { .fd = syncer_wake_fd(n->sync), .events = POLLIN };
        if (poll(&p, 1, 100) > 0)
            collect_sync(n);
    }
    if (!n->fatal)
        collect_durable(n);
}

/* Step everything the mount queued during this turn. */
/* Propose `k` requests; the replica copies the ops it took, so each op
 * is freed unless the replica asked for a retry. */
static void propose(node *n, px_request *reqs, uint32_t k)
{
    px_event ev = { .type = PX_EV_PROPOSE };
    ev.u.propose.requests = reqs;
    ev.u.propose.n_requests = k;
    step(n, &ev);
    for (uint32_t i = 0; i < k; i++) {
        pending *p = pending_at(n, reqs[i].seq);
        if (p && !p->retry) {
            free(p->op);
            p->op = NULL;
        }
    }
}

static void step_queued(node *n)
{
    px_request reqs[64];
    /* writes the replica refused last turn (queue full) go first, once
     * per turn */
    uint32_t k = 0;
    for (uint64_t s = n->low_seq; n->n_retry && s < n->to_propose_from &&
                                  !n->fatal; s++) {
        pending *p = pending_at(n, s);
        if (!p || !p->retry)
            continue;
        p->retry = false;
        n->n_retry--;
        reqs[k++] = (px_request){ .client_id = n->client_id, .seq = p->seq,
                                  .ack_seq = n->low_seq, .len = p->op_len,
                                  .op = p->op };
        if (k == 64) {
            propose(n, reqs, k);
            k = 0;
        }
    }
    if (k)
        propose(n, reqs, k);
    while (n->to_propose_from < n->next_seq && !n->fatal) {
        k = 0;
        while (k < 64 && n->to_propose_from < n->next_seq) {
            pending *p = pending_at(n, n->to_propose_from++);
            if (!p)
                continue;
            reqs[k++] = (px_request){
                .client_id = n->client_id, .seq = p->seq,
                .ack_seq = n->low_seq, .len = p->op_len, .op = p->op };
        }
        if (k == 0)
            break;
        propose(n, reqs, k);
    }
    /* a step may queue a read again (retry after a leader change): those
     * wait for the next turn */
    uint32_t count = n->n_new_reads;
    for (uint32_t i = 0; i < count; i++) {
        px_event ev = { .type = PX_EV_READ_INDEX };
        ev.u.read_token = n->new_reads[i];
        step(n, &ev);
    }
    memmove(n->new_reads, n->new_reads + count,
            (n->n_new_reads - count) * sizeof *n->new_reads);
    n->n_new_reads -= count;
}

static bool read_is_expired(const read_wait *r, void *arg)
{
    return r->deadline_ms <= *(const uint64_t *)arg;
}

static bool waiting_is_expired(const waiting *w, void *arg)
{
    return !w->answered && w->deadline_ms <= *(const uint64_t *)arg;
}

/* Writes whose callers wait fail with ETIMEDOUT at their deadline (they
 * may still commit later, as a whole); a write whose caller already
 * returned (a commit at release) has no deadline: it is retried until it
 * commits or the node stops. */
static void expire_deadlines(node *n, uint64_t now_ms)
{
    if (n->wait_head)
        finish_waiting(n, waiting_is_expired, &now_ms, -ETIMEDOUT);
    for (uint64_t s = n->low_seq; s < n->next_seq; s++) {
        pending *p = pending_at(n, s);
        if (p && !p->answered && p->deadline_ms <= now_ms &&
            s < n->to_propose_from)
            pending_finish(n, p, -ETIMEDOUT);
    }
    finish_reads(n, read_is_expired, &now_ms, -ETIMEDOUT);
}

/* Whether a leader was alive within no_leader_ms: a node cut off from
 * the majority refuses new requests at once (EHOSTUNREACH) instead of
 * letting each wait out its own deadline in turn (node.h). */
static void track_leader(node *n, uint64_t now_ms)
{
    uint64_t contact = px_leader_contact_ms(n->px);
    if (contact > n->leader_seen_ms)
        n->leader_seen_ms = contact;
    bool none = now_ms - n->leader_seen_ms > n->no_leader_ms;
    if (none != n->no_leader)
        fprintf(stderr, "paxosfs: node %u: %s\n", n->cfg.id,
                none ? "no leader reachable; new requests fail with "
                       "EHOSTUNREACH until one is back"
                     : "a leader is reachable again");
    n->no_leader = none;
}

static int run_chain_sync(void *arg)
{
    return chain_sync_run(arg);
}

/* Every chain_sync_interval_ms, make the appended chain blocks durable on
 * the worker thread (milliseconds of fdatasync when many blocks are dirty:
 * the loop goes on serving meanwhile), then let the acceptor store forget
 * what the durable chain holds, once its own sync is idle (compaction may
 * replace the file the sync thread syncs). */
static void background_sync(node *n, uint64_t now_ms)
{
    if (n->fatal)
        return;
    if (n->compact_due && syncer_idle(n->sync)) {
        n->compact_due = false;
        /* the durable chain position goes into the acceptor store, which
         * the commit path syncs anyway: a chain found shorter than it
         * later was cut (chain_open_marked) */
        acceptor_info info;
        acceptor_get_info(n->acceptor, &info);
        int rc = 0;
        if (chain_synced_index(n->chain) > info.mark.index)
            rc = acceptor_mark(n->acceptor, chain_synced_index(n->chain),
                               chain_synced_hash(n->chain));
        if (rc < 0) {
            storage_failed(n, "acceptor compaction", rc);
            return;
        }
    }
    if (now_ms - n->last_chain_sync_ms < n->cfg.chain_sync_interval_ms ||
        worker_busy(n->bg))
        return;
    n->last_chain_sync_ms = now_ms;
    int rc = chain_sync_start(n->chain, &n->chain_job);
    if (rc == 0)
        rc = worker_submit(n->bg, run_chain_sync, &n->chain_job);
    if (rc < 0)
        storage_failed(n, "chain fdatasync", rc);
}

/* The worker finished a chain sync. */
static void collect_chain_sync(node *n)
{
    int rc;
    if (!worker_take(n->bg, &rc))
        return;
    rc = chain_sync_finish(n->chain, &n->chain_job, rc);
    if (rc < 0)
        storage_failed(n, "chain fdatasync", rc);
    else
        n->compact_due = true;
}

/* Shutdown: wait (bounded) for a chain sync in flight and record it. */
static void drain_chain_sync(node *n)
{
    for (int i = 0; i < 300 && worker_busy(n->bg); i++) {
        struct pollfd p = { .fd = worker_wake_fd(n->bg), .events = POLLIN };
        if (poll(&p, 1, 100) > 0)
            collect_chain_sync(n);
    }
}

/* ------------------------------------------------------ fs backend */

/* A write from the mount.  With the ring full it waits in the overflow
 * queue (in order) until a slot frees or its deadline passes: overload
 * slows writers down, it never fails them.  A write whose caller already
 * returned is accepted even without a leader and retried until it
 * commits. */
static int node_submit(void *ctx, const uint8_t *op, uint32_t len,
                       bool answered, fs_done_fn done, void *arg)
{
    node *n = ctx;
    track_leader(n, node_now_ms(n));   /* as of now, not of the last turn */
    if (n->fatal)
        return health_client_errno(n->fatal);   /* invariant 4 */
    if (n->no_leader && !answered) {
        n->fast_failed++;
        return -EHOSTUNREACH;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, op, len);
    uint64_t ticket = n->next_ticket++;
    uint64_t deadline = node_now_ms(n) + n->cfg.commit_timeout_ms;
    if (answered) {
        n->answered_ticket = ticket;
        n->answered_outstanding++;
    }
    if (n->wait_head || n->next_seq - n->low_seq >= NODE_MAX_PENDING) {
        waiting *w = malloc(sizeof *w);
        if (!w) {
            free(copy);
            if (answered)
                n->answered_outstanding--;
            return -ENOMEM;
        }
        *w = (waiting){ .answered = answered, .ticket = ticket,
                        .deadline_ms = deadline, .done = done, .arg = arg,
                        .op = copy, .op_len = len };
        if (n->wait_tail)
            n->wait_tail->next = w;
        else
            n->wait_head = w;
        n->wait_tail = w;
        n->n_waiting++;
        n->waited_total++;
        return 0;
    }
    uint64_t seq = n->next_seq++;
    pending *p = &n->ring[seq & (NODE_MAX_PENDING - 1)];
    *p = (pending){ .used = true, .answered = answered, .seq = seq,
                    .ticket = ticket, .done = done, .arg = arg,
                    .op = copy, .op_len = len, .deadline_ms = deadline };
    return 0;
}

static int node_read_barrier(void *ctx, fs_done_fn done, void *arg)
{
    node *n = ctx;
    track_leader(n, node_now_ms(n));   /* as of now, not of the last turn */
    if (n->fatal)   /* invariant 4: nothing is applied meanwhile */
        return health_client_errno(n->fatal);
    if (n->no_leader) {
        n->fast_failed++;
        return -EHOSTUNREACH;
    }
    if (n->n_reads >= NODE_MAX_READS)
        return -EAGAIN;
    uint64_t token = ++n->next_read_token;
    n->reads[n->n_reads++] = (read_wait){
        .token = token, .done = done, .arg = arg,
        .after_ticket = n->answered_ticket,
        .deadline_ms = node_now_ms(n) + n->cfg.commit_timeout_ms };
    n->new_reads[n->n_new_reads++] = token;
    return 0;
}

static const kv *node_state(void *ctx)
{
    return ((node *)ctx)->state;
}

/* Whether a write may be accepted now: what can be known before the value
 * is written is reported at open(), where a shell sees it. */
static int node_can_write(void *ctx)
{
    node *n = ctx;
    track_leader(n, node_now_ms(n));   /* as of now, not of the last turn */
    if (n->fatal)
        return health_client_errno(n->fatal);   /* invariant 4 */
    if (n->no_leader) {
        n->fast_failed++;
        return -EHOSTUNREACH;
    }
    return 0;
}

static void hex(const uint8_t *b, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * len] = '\0';
}

static const char *role_name(uint8_t role)
{
    switch (role) {
    case PX_LEADER: return "leader";
    case PX_CANDIDATE: return "candidate";
    case PX_LEARNER: return "learner";
    default: return "follower";
    }
}

/* A JSON string (quotes, backslashes and control bytes escaped). */
static void json_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(fp, "\\%c", c);
        else if (c < 0x20)
            fprintf(fp, "\\u%04x", c);
        else
            fputc(c, fp);
    }
    fputc('"', fp);
}

/* .status: the start gate, lost acceptor state, reads, catch-up checks
 * (invariants 5-8). */
static void status_storage(const node *n, const px_status *st, FILE *fp)
{
    fprintf(fp, ",\"confirmed\":%s,\"start\":%" PRIu64 ",\"start_head\":%"
            PRIu64 ",\"recovering\":", n->confirmed ? "true" : "false",
            n->start.counter, n->start_head);
    if (st->recovering || n->recovering_why[0]) {
        fprintf(fp, "{\"why\":");
        json_string(fp, n->recovering_why);
        fprintf(fp, ",\"ballot\":{\"round\":%" PRIu64 ",\"node\":%u},"
                "\"promised\":%u,\"needed\":%u,\"until_index\":%" PRIu64 "}",
                st->recovery_ballot.round, st->recovery_ballot.node_id,
                st->recovery_promised, st->recovery_needed,
                st->recovery_slot);
    } else {
        fprintf(fp, "false");
    }
    fprintf(fp, ",\"reads\":\"%s\",\"catchup_installed\":%" PRIu64
            ",\"catchup_dropped\":%" PRIu64,
            n->fatal == -ENOSPC
                ? "failing with ENOSPC: this node cannot persist"
            : n->fatal ? "failing with EIO: this node cannot persist"
            : n->abstaining ? "waiting: chain differs from a majority's"
            : !n->confirmed ? "waiting: chain not yet confirmed by a majority"
                            : "served",
            n->catchup_installed, n->catchup_dropped);
}

static int node_status_text(void *ctx, char **text, size_t *len)
{
    node *n = ctx;
    px_status st;
    px_get_status(n->px, &st);
    char head[2 * CHAIN_HASH_BYTES + 1];
    hex(chain_head_hash(n->chain), CHAIN_HASH_BYTES, head);
    char members[PX_MAX_MEMBERS * 12 + 4] = "";
    size_t m = 0;
    for (uint32_t i = 0; i < st.members.n_voters; i++)
        m += (size_t)snprintf(members + m, sizeof members - m, "%s%u",
                              i ? "," : "", st.members.voters[i]);
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    if (!fp)
        return -ENOMEM;
    fprintf(fp,
            "{\"id\":%u,\"role\":\"%s\",\"leader\":%u,"
            "\"ballot\":{\"round\":%" PRIu64 ",\"node\":%u},"
            "\"commit_index\":%" PRIu64 ",\"applied_index\":%" PRIu64 ","
            "\"chain_head\":{\"index\":%" PRIu64 ",\"hash\":\"%s\"},"
            "\"chain_synced_index\":%" PRIu64 ","
            "\"members\":[%s],\"keys\":%" PRIu64 ",\"bytes\":%" PRIu64 ","
            "\"pending_writes\":%" PRIu64 ",\"waiting_writes\":%" PRIu64
            ",\"waited_writes\":%" PRIu64 ",\"release_writes\":%" PRIu64
            ",\"leader_reachable\":%s,\"fast_failed\":%" PRIu64
            ",\"retained_bytes\":%" PRIu64 ",\"acceptor_syncs\":%" PRIu64
            ",\"healthy\":%s",
            n->cfg.id, role_name(st.role), st.leader_id, st.ballot.round,
            st.ballot.node_id, st.commit_index, kv_applied_index(n->state),
            chain_head_index(n->chain), head, chain_synced_index(n->chain),
            members, kv_count(n->state), kv_bytes(n->state),
            n->next_seq - n->low_seq, n->n_waiting, n->waited_total,
            n->answered_outstanding, n->no_leader ? "false" : "true",
            n->fast_failed, px_retained_bytes(n->px),
            n->sync ? syncer_syncs(n->sync) : 0,
            n->fatal ? "false" : "true");
    fputc(',', fp);
    health_status_json(&n->health, fp, node_now_ms(n));
    fprintf(fp, ",\"voting\":%s,\"votes_withheld\":%" PRIu64 ",\"diverged_from\":[",
            n->abstaining || !n->confirmed || st.recovering || n->fatal
                ? "false" : "true",
            n->votes_withheld);
    const char *dsep = "";
    for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
        if (!n->peer_chain_differs[i])
            continue;
        fprintf(fp, "%s{\"peer\":%u,\"index\":%" PRIu64 "}", dsep,
                n->cfg.peers[i].id, n->peer_chain_index[i]);
        dsep = ",";
    }
    fprintf(fp, "]");
    status_storage(n, &st, fp);
    fprintf(fp, ",\"peers\":[");
    uint64_t now = node_now_ms(n);
    const char *sep = "";
    for (uint32_t i = 0; n->net && i < transport_peer_count(n->net); i++) {
        transport_peer_stats ps;
        transport_peer_stats_get(n->net, i, &ps);
        if (ps.id == n->cfg.id)
            continue;
        uint64_t match = 0, contact = ps.last_recv_ms;
        for (uint32_t j = 0; j < st.n_peers; j++) {
            if (st.peers[j].id != ps.id)
                continue;
            match = st.peers[j].match_index;
            if (st.peers[j].last_contact_ms > contact)
                contact = st.peers[j].last_contact_ms;
        }
        bool connected = contact && now - contact < NODE_PEER_ALIVE_MS;
        fprintf(fp, "%s{\"id\":%u,\"connected\":%s,\"last_contact_ms_ago\":%"
                PRId64 ",\"match_index\":%" PRIu64 ",\"blocked\":%s,"
                "\"sent\":%" PRIu64 ",\"received\":%" PRIu64
                ",\"dropped_in\":%" PRIu64 ",\"dropped_out\":%" PRIu64 "}",
                sep, ps.id, connected ? "true" : "false",
                contact ? (int64_t)(now - contact) : (int64_t)-1, match,
                ps.blocked ? "true" : "false", ps.sent, ps.received,
                ps.recv_dropped, ps.send_dropped);
        sep = ",";
    }
    char cpus[256] = "";
    if (n->cfg.leader_cpus)
        cpus_format(&n->leader_cpus, cpus, sizeof cpus);
    fprintf(fp, "],\"leader_cpus\":\"%s\"", cpus);
    cpu_set_t now_on;
    cpus[0] = '\0';
    if (cpus_allowed(&now_on) == 0)
        cpus_format(&now_on, cpus, sizeof cpus);
    fprintf(fp, ",\"cpus\":\"%s\"", cpus);
    px_stats pst;
    px_get_stats(n->px, &pst);
    fprintf(fp, ",\"invalid_ops\":%" PRIu64 ",\"ballots_refused\":%" PRIu64
            ",\"rounds_exhausted\":%" PRIu64, kv_invalid_ops(n->state),
            pst.ballots_refused, pst.rounds_exhausted);
    fprintf(fp, ",\"catchup\":[");
    const char *csep = "";
    for (uint32_t i = 0; n->net && i < transport_peer_count(n->net); i++) {
        transport_peer_stats ps;
        transport_peer_stats_get(n->net, i, &ps);
        if (ps.id == n->cfg.id)
            continue;
        fprintf(fp, "%s{\"peer\":%u,\"served\":%" PRIu64 ",\"dropped\":%"
                PRIu64 ",\"bytes\":%" PRIu64 "}", csep, ps.id,
                ps.catchup_served, ps.catchup_dropped, ps.catchup_bytes);
        csep = ",";
    }
    fprintf(fp, "]");
    if (n->net) {
        transport_conn_stats cs;
        transport_conn_stats_get(n->net, &cs);
        fprintf(fp, ",\"connections\":{\"accepted\":%" PRIu64
                ",\"handshakes\":%" PRIu64 ",\"failed_protocol\":%" PRIu64
                ",\"failed_auth\":%" PRIu64 ",\"failed_other\":%" PRIu64
                ",\"dropped\":%" PRIu64 "}", cs.accepted, cs.handshakes,
                cs.failed_protocol, cs.failed_auth, cs.failed_other,
                cs.dropped);
    }
    fprintf(fp, ",\"held_messages\":%u,\"held_dropped\":%" PRIu64
            ",\"held_superseded\":%" PRIu64 ",\"rejected_connections\":%" PRIu64
            ",\"unknown_dropped\":%" PRIu64 "}\n", n->held.count,
            n->held.dropped, n->held.superseded,
            n->net ? transport_rejected_connections(n->net) : 0,
            n->net ? transport_unknown_drops(n->net) : 0);
    if (fclose(fp) != 0) {
        free(buf);
        return -ENOMEM;
    }
    *text = buf;
    *len = size;
    return 0;
}

static int node_block_text(void *ctx, uint64_t index, char **text, uint32_t *len)
{
    node *n = ctx;
    chain_block b;
    int rc = chain_read(n->chain, index, &b);
    if (rc < 0)
        return rc;
    rc = chain_block_render(&b, text, len);
    chain_block_free(&b);
    return rc;
}

static uint64_t node_chain_head(void *ctx)
{
    return chain_head_index(((node *)ctx)->chain);
}

/* -------------------------------------------------------- open/close */

/* The backing directory holds every value: 0700 whoever made it (an
 * existing one that others may enter is tightened, if it is ours). */
static int make_dir(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, err_len, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    if (stat(path, &st) != 0) {
        int e = errno;
        snprintf(err, err_len, "cannot stat %s: %s", path, strerror(e));
        return -e;
    }
    if ((st.st_mode & 077) && st.st_uid == geteuid() &&
        chmod(path, st.st_mode & 0700) != 0) {
        int e = errno;
        snprintf(err, err_len, "cannot make %s private (chmod 0700): %s",
                 path, strerror(e));
        return -e;
    }
    return 0;
}

static int take_lock(node *n, char *err, size_t err_len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", n->data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char owner[32] = "";
        ssize_t r = pread(fd, owner, sizeof owner - 1, 0);
        owner[r > 0 ? r : 0] = '\0';
        owner[strcspn(owner, "\n")] = '\0';
        snprintf(err, err_len, "%s is in use by another paxosfs node%s%s",
                 n->data_dir, owner[0] ? " (pid " : "", owner[0] ? owner : "");
        if (owner[0])
            strncat(err, ")", err_len - strlen(err) - 1);
        close(fd);
        return e == EWOULDBLOCK ? -EBUSY : -e;
    }
    n->lock_fd = fd;
    return 0;
}

/* Record the pid of the process that holds the lock (after daemonizing). */
static void write_lock_pid(node *n)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(n->lock_fd, 0) == 0 && pwrite(n->lock_fd, buf, (size_t)len, 0) < 0)
        fprintf(stderr, "paxosfs: cannot record pid in LOCK: %s\n", strerror(errno));
}

/* Apply the chain blocks the state lacks (all of them at start). */
static int replay_chain(node *n, char *err, size_t err_len)
{
    uint64_t head = chain_head_index(n->chain);
    for (uint64_t i = kv_applied_index(n->state) + 1; i <= head; i++) {
        chain_block b;
        int rc = chain_read(n->chain, i, &b);
        if (rc < 0) {
            snprintf(err, err_len, "cannot read chain block %" PRIu64 ": %s",
                     i, strerror(-rc));
            return rc;
        }
        px_entry e = { .slot = b.index, .time_ms = b.time_ms, .kind = b.kind,
                       .len = b.len, .data = b.data };
        rc = kv_apply_entry(n->state, &e, NULL, NULL);
        chain_block_free(&b);
        if (rc < 0) {
            snprintf(err, err_len, "cannot apply chain block %" PRIu64 ": %s",
                     i, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

static uint64_t random_u64(void)
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

static void begin_recovery(node *n, const char *why);
static void gate_update(node *n);
static bool start_trusted(const node *n, uint32_t k);

/* Open the acceptor store, then the chain held to the position the store
 * recorded as durable; decide whether the acceptor state may be
 * incomplete (invariant 6); record this start (invariant 5). */
static int open_storage(node *n, char *err, size_t err_len)
{
    uint32_t id = n->cfg.id;
    acceptor_open_report arep;
    acceptor_state ast;
    int rc = acceptor_open_salvage(n->data_dir, &n->acceptor, &ast, &arep);
    if (rc < 0) {
        snprintf(err, err_len, "cannot open the acceptor store in %s: %s",
                 n->data_dir, strerror(-rc));
        return rc;
    }
    if (arep.torn_cut)
        fprintf(stderr, "paxosfs: node %u: torn last write in %s: cut %"
                PRIu64 " bytes at offset %" PRIu64 " (never acknowledged)\n",
                id, arep.torn_path, arep.torn_bytes, arep.torn_offset);
    if (arep.created) {
        /* until the chain says whether there was state to lose: a crash
         * right here must not leave an empty store that looks fresh */
        rc = acceptor_put_recovery(n->acceptor, true);
        if (rc == 0)
            rc = acceptor_sync(n->acceptor);
        if (rc < 0) {
            snprintf(err, err_len, "cannot write the acceptor store in %s: "
                     "%s", n->data_dir, strerror(-rc));
            return rc;
        }
    }
    acceptor_info info;
    acceptor_get_info(n->acceptor, &info);

    chain_open_report report;
    chain_damage damage;
    rc = chain_open_marked(n->data_dir, &info.mark, &n->chain, &report,
                           &damage);
    if (rc == -EBADMSG) {
        snprintf(err, err_len, "chain damaged: %s offset %" PRIu64 " block %"
                 PRIu64 ": %s; refusing to serve (run paxosctl verify %s)",
                 damage.path, damage.offset, damage.index, damage.reason,
                 n->data_dir);
        return rc;
    }
    if (rc < 0) {
        snprintf(err, err_len, "cannot open the chain in %s: %s", n->data_dir,
                 strerror(-rc));
        return rc;
    }
    if (report.torn_tail_cut)
        fprintf(stderr, "paxosfs: node %u: torn tail in %s: cut %" PRIu64
                " bytes at offset %" PRIu64 " back to block %" PRIu64 "\n",
                id, report.torn_path, report.torn_bytes,
                report.torn_offset, chain_head_index(n->chain));

    uint64_t head = chain_head_index(n->chain);
    char why[sizeof n->recovering_why] = "";
    if (arep.lost)
        snprintf(why, sizeof why, "acceptor store damaged: %s offset %" PRIu64
                 ": %s (kept as %s)", arep.damage.path, arep.damage.offset,
                 arep.damage.reason, arep.kept_path);
    else if (arep.created && head > 0)
        snprintf(why, sizeof why, "acceptor store missing beside a chain of %"
                 PRIu64 " blocks", head);
    else if (info.recovering && !arep.created)
        snprintf(why, sizeof why, "lost acceptor state not yet recovered "
                 "when the node last stopped");
    if (arep.created && head == 0) {
        rc = acceptor_put_recovery(n->acceptor, false);   /* a new node */
        if (rc < 0) {
            snprintf(err, err_len, "cannot write the acceptor store in %s: "
                     "%s", n->data_dir, strerror(-rc));
            return rc;
        }
    }
    if (why[0])
        begin_recovery(n, why);

    /* this start: one more than the store knows of, a fresh nonce */
    n->prev_start = (acceptor_peer){ .counter = info.incarnation,
                                     .nonce = info.nonce };
    n->start = (acceptor_peer){ .counter = info.incarnation + 1,
                                .nonce = random_u64() };
    for (uint32_t k = 0; k < n->cfg.n_peers; k++)
        for (uint32_t i = 0; i < info.n_peers; i++)
            if (info.peers[i].id == n->cfg.peers[k].id)
                n->peer_start[k] = info.peers[i];
    rc = acceptor_put_incarnation(n->acceptor, n->start.counter,
                                  n->start.nonce);
    if (rc == 0)
        rc = acceptor_sync(n->acceptor);
    if (rc < 0) {
        snprintf(err, err_len, "cannot write the acceptor store in %s: %s",
                 n->data_dir, strerror(-rc));
        return rc;
    }
    (void)ast;
    return 0;
}

int node_open(const node_config *cfg, node **out, char *err, size_t err_len)
{
    node *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    n->cfg = *cfg;
    n->lock_fd = -1;
    outbox_init(&n->held, NODE_MAX_HELD_MSGS);
    n->signal_fd = -1;
    n->data_dir = strdup(cfg->data_dir);
    n->mountpoint = cfg->mountpoint ? strdup(cfg->mountpoint) : NULL;
    n->ring = calloc(NODE_MAX_PENDING, sizeof *n->ring);
    n->reads = calloc(NODE_MAX_READS, sizeof *n->reads);
    n->new_reads = calloc(NODE_MAX_READS, sizeof *n->new_reads);
    int rc = -ENOMEM;
    if (!n->data_dir || (cfg->mountpoint && !n->mountpoint) || !n->ring ||
        !n->reads || !n->new_reads) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    n->cfg.data_dir = n->data_dir;
    n->cfg.mountpoint = n->mountpoint;
    if (cfg->n_peers > TRANSPORT_MAX_PEERS) {
        rc = -EINVAL;
        snprintf(err, err_len, "at most %d members", TRANSPORT_MAX_PEERS);
        goto fail;
    }
    if (cfg->n_peers)
        memcpy(n->peers, cfg->peers, cfg->n_peers * sizeof *cfg->peers);
    n->cfg.peers = n->peers;
    if (cfg->key) {
        n->key = *cfg->key;
        n->cfg.key = &n->key;
    }
    n->placed_as = -1;
    if (cfg->leader_cpus) {
        n->leader_cpus = *cfg->leader_cpus;
        n->cfg.leader_cpus = &n->leader_cpus;
        /* followers keep off the leader's CPUs, unless that leaves none */
        if (cpus_allowed(&n->other_cpus) == 0) {
            cpu_set_t rest;
            CPU_XOR(&rest, &n->other_cpus, &n->leader_cpus);
            CPU_AND(&rest, &rest, &n->other_cpus);
            if (CPU_COUNT(&rest) > 0)
                n->other_cpus = rest;
        }
    }
    n->client_id = random_u64();
    n->next_seq = n->low_seq = n->to_propose_from = 1;
    n->next_ticket = 1;

    rc = make_dir(n->data_dir, err, err_len);
    if (rc < 0)
        goto fail;
    rc = take_lock(n, err, err_len);
    if (rc < 0)
        goto fail;
    rc = health_init(&n->health, cfg->id, n->data_dir, NULL, NULL, NULL);
    if (rc < 0) {
        snprintf(err, err_len, "cannot start the health thread: %s",
                 strerror(-rc));
        goto fail;
    }

    rc = open_storage(n, err, err_len);
    if (rc < 0)
        goto fail;

    n->state = kv_create();
    if (!n->state) {
        rc = -ENOMEM;
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    rc = replay_chain(n, err, err_len);
    if (rc < 0)
        goto fail;

    px_options opt;
    px_options_default(&opt, cfg->id);
    if (cfg->n_peers == 0) {
        opt.members.voters[0] = cfg->id;
        opt.members.n_voters = 1;
    } else {
        for (uint32_t i = 0; i < cfg->n_peers; i++)
            opt.members.voters[opt.members.n_voters++] = cfg->peers[i].id;
    }
    opt.seed = random_u64();
    n->px_opt = opt;

    n->zctx = zmq_ctx_new();
    if (!n->zctx) {
        rc = -ENOMEM;
        snprintf(err, err_len, "cannot create the ZeroMQ context");
        goto fail;
    }
    if (cfg->n_peers > 0) {
        rc = transport_open(n->zctx, cfg->id, n->cfg.peers, cfg->n_peers,
                            n->cfg.key, &n->net, err, err_len);
        if (rc < 0)
            goto fail;
    }
    rc = admin_open(n->zctx, n->data_dir, &n->adm, err, err_len);
    if (rc < 0)
        goto fail;
    uint64_t head = chain_head_index(n->chain);
    acceptor_state ast;
    acceptor_get_state(n->acceptor, &ast);
    uint32_t first = 0;
    while (first < ast.n_accepts && ast.accepts[first].slot <= head)
        first++;
    px_restore restore = {
        .promise = ast.promise,
        .applied_index = head,
        .n_accepts = ast.n_accepts - first,
        .accepts = ast.accepts + first,
        .recovering = n->recovering_why[0] != '\0',
    };
    rc = px_create(&opt, &restore, &n->px);
    if (rc < 0) {
        snprintf(err, err_len, "cannot create the replica: %s", strerror(-rc));
        goto fail;
    }
    px_set_chain_head(n->px, head, chain_head_hash(n->chain));
    n->last_chain_sync_ms = node_now_ms(n);
    /* a node just started has had no chance to find its leader yet */
    n->leader_seen_ms = node_now_ms(n);
    n->no_leader_ms = NODE_NO_LEADER_FACTOR * opt.election_timeout_max_ms;
    n->start_head = head;
    n->started_ms = n->last_wait_log_ms = node_now_ms(n);
    gate_update(n);   /* a cluster of one is confirmed at once */
    *out = n;
    return 0;

fail:
    node_close(n);
    return rc < 0 ? rc : -EIO;
}

static int open_signal_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int node_mount(node *n, char *err, size_t err_len)
{
    /* block the stop signals before the mount starts its threads, so they
     * reach the loop's signalfd and no thread dies of them */
    n->signal_fd = open_signal_fd();
    if (n->signal_fd < 0) {
        snprintf(err, err_len, "signalfd: %s", strerror(-n->signal_fd));
        return n->signal_fd;
    }
    fs_backend be = {
        .ctx = n,
        .submit = node_submit,
        .read_barrier = node_read_barrier,
        .can_write = node_can_write,
        .state = node_state,
        .status_text = node_status_text,
        .block_text = node_block_text,
        .chain_head = node_chain_head,
    };
    fs_options opt = {
        .attr_timeout_s = n->cfg.attr_timeout_s,
        .entry_timeout_s = n->cfg.entry_timeout_s,
        .debug = n->cfg.fuse_debug,
        .allow_other = n->cfg.allow_other,
    };
    return fs_mount(&opt, &be, n->mountpoint, &n->mount, err, err_len);
}

/* ------------------------------------------------------- cluster input */

/* Peers exchange (index, head hash) (DESIGN.md invariant 3): a hash that
 * differs from ours at the same index means one of the two histories is
 * wrong.  When ours differs from the chains of a majority of the members,
 * ours is the wrong one: the node stops voting (abstain_filter) and says
 * so in .status and the log.  Repair (a snapshot from the peers) is for
 * the snapshot machinery. */
static void check_divergence(node *n, uint32_t from, uint64_t index,
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
    n->abstaining = abstain;
    if (was && !abstain)
        serve_ready_reads(n);
}

/* ------------------------------------------- start gate (invariant 5) */

static uint32_t peer_slot(const node *n, uint32_t id)
{
    uint32_t k = 0;
    while (k < n->cfg.n_peers && n->cfg.peers[k].id != id)
        k++;
    return k;
}

static uint32_t node_quorum(const node *n)
{
    return n->cfg.n_peers > 1 ? n->cfg.n_peers / 2 + 1 : 1;
}

static void gate_update(node *n)
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
    if (have < node_quorum(n))
        return;
    n->confirmed = true;
    if (n->cfg.n_peers > 1)
        fprintf(stderr, "paxosfs: node %u: chain head %" PRIu64 " confirmed%s "
                "(a majority holds it); %s\n", n->cfg.id, n->start_head, who,
                n->recovering_why[0] ? "still recovering lost acceptor state"
                                     : "voting");
    serve_ready_reads(n);
}

/* Invariant 6: from now on (and durably) the replica casts no vote until
 * it recovered from every other voter. */
static void begin_recovery(node *n, const char *why)
{
    if (n->recovering_why[0])
        return;
    snprintf(n->recovering_why, sizeof n->recovering_why, "%s", why);
    int rc = acceptor_put_recovery(n->acceptor, true);
    if (rc < 0)
        storage_failed(n, "acceptor store write", rc);
    if (n->px)
        px_begin_recovery(n->px);
    fprintf(stderr, "paxosfs: node %u: %s: promises or accepted values may "
            "be lost; casting no vote until every other voter has answered "
            "and this node has learned all they reported%s\n", n->cfg.id, why,
            n->cfg.n_peers > 1 ? "" : " (a cluster of one has nobody to ask: "
            "writes acknowledged after the last durable block are lost)");
}

static void recovery_done(node *n)
{
    px_status st;
    px_get_status(n->px, &st);
    fprintf(stderr, "paxosfs: node %u: recovered lost acceptor state (%s): "
            "every other voter promised a higher ballot and this node learned "
            "everything up to block %" PRIu64 "; voting again\n", n->cfg.id,
            n->recovering_why[0] ? n->recovering_why : "?", st.commit_index);
    n->recovering_why[0] = '\0';
    int rc = acceptor_put_recovery(n->acceptor, false);
    if (rc < 0)
        storage_failed(n, "acceptor store write", rc);
}

static void head_frame(node *n, uint32_t to, uint64_t index,
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

/* A START frame: whose start (subject), 0 = the sender's own, 1 = the
 * receiver's as the sender last saw it. */
static void start_frame(node *n, uint32_t to, const acceptor_peer *start,
                        uint32_t subject, uint8_t kind)
{
    uint8_t hash[CHAIN_HASH_BYTES] = {0};
    for (int i = 0; i < 8; i++)
        hash[i] = (uint8_t)(start->nonce >> (8 * i));
    for (int i = 0; i < 4; i++)
        hash[8 + i] = (uint8_t)(subject >> (8 * i));
    hash[12] = kind;
    head_frame(n, to, NODE_HEAD_START | (start->counter & NODE_HEAD_MASK),
               hash);
}

/* Every interval: our head (a fact), our start, each peer's start as we
 * last saw it, and while not confirmed a query for our start head. */
static void send_heads(node *n, uint64_t now)
{
    uint64_t every = n->confirmed ? NODE_CHAIN_HEAD_INTERVAL_MS
                                  : NODE_CONFIRM_INTERVAL_MS;
    if (!n->net || now - n->last_head_sent_ms < every)
        return;
    n->last_head_sent_ms = now;
    transport_send_chain_head(n->net, chain_head_index(n->chain),
                              chain_head_hash(n->chain));
    start_frame(n, 0, &n->start, n->cfg.id, 0);
    for (uint32_t k = 0; k < n->cfg.n_peers; k++)
        if (n->cfg.peers[k].id != n->cfg.id)
            start_frame(n, n->cfg.peers[k].id, &n->peer_start[k],
                        n->cfg.peers[k].id, 1);
    uint8_t none[CHAIN_HASH_BYTES] = {0};
    if (!n->confirmed && n->start_head > 0)
        head_frame(n, 0, NODE_HEAD_QUERY | n->start_head, none);
    /* a peer whose START frames wait for our chains to agree: ask it for
     * our head block */
    uint64_t head = chain_head_index(n->chain);
    for (uint32_t k = 0; head > 0 && k < n->cfg.n_peers; k++)
        if ((n->heard_own_set[k] || n->heard_ours_set[k]) &&
            !start_trusted(n, k))
            head_frame(n, n->cfg.peers[k].id, NODE_HEAD_QUERY | head, none);
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
                storage_failed(n, "acceptor store write", rc);
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
        begin_recovery(n, why);
        /* start above what anyone saw, so that the next reports fit */
        if (rec.counter >= n->start.counter) {
            n->start.counter = rec.counter + 1;
            n->start.nonce = random_u64();
            int rc = acceptor_put_incarnation(n->acceptor, n->start.counter,
                                              n->start.nonce);
            if (rc < 0)
                storage_failed(n, "acceptor store write", rc);
        }
    }
    if (!n->peer_saw_start[k]) {
        n->peer_saw_start[k] = true;
        gate_update(n);
    }
}

static void on_start(node *n, uint32_t k, uint64_t index,
                     const uint8_t hash[CHAIN_HASH_BYTES])
{
    acceptor_peer rec = { .counter = index & NODE_HEAD_MASK };
    for (int i = 7; i >= 0; i--)
        rec.nonce = (rec.nonce << 8) | hash[i];
    uint32_t subject = 0;
    for (int i = 3; i >= 0; i--)
        subject = (subject << 8) | hash[8 + i];
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
        n->heard_ours_set[k] = true;
    } else {
        return;
    }
    starts_judge(n, k);
}

static void catchup_try_held(node *n);

/* A peer holds block `index` with `hash`. */
static void on_fact(node *n, uint32_t k, uint64_t index,
                    const uint8_t hash[CHAIN_HASH_BYTES])
{
    struct node_fact *f = &n->facts[k][n->fact_next[k]++ % NODE_FACTS];
    f->index = index;
    memcpy(f->hash, hash, CHAIN_HASH_BYTES);
    check_divergence(n, n->cfg.peers[k].id, index, hash);
    /* positive agreement: the peer holds our block at an index both
     * chains reach, at or past our start head or at its own head (a peer
     * behind us announces nothing else below it; then its whole chain is
     * a prefix of ours) */
    uint8_t ours[CHAIN_HASH_BYTES];
    if (index >= 1 && index <= chain_head_index(n->chain) &&
        chain_hash_at(n->chain, index, ours) == 0) {
        bool was = n->peer_agrees[k];
        n->peer_agrees[k] = memcmp(ours, hash, CHAIN_HASH_BYTES) == 0;
        if (n->peer_agrees[k] && !n->peer_holds_head[k]) {
            n->peer_holds_head[k] = true;
            gate_update(n);
        }
        if (n->peer_agrees[k] && !was)
            starts_judge(n, k);
    }
    if (!n->peer_holds_head[k] && n->start_head == 0) {
        n->peer_holds_head[k] = true;   /* nothing of ours to confirm */
        gate_update(n);
    }
    if (n->held_catchup)
        catchup_try_held(n);
}

static void on_chain_head(void *arg, uint32_t from, uint64_t index,
                          const uint8_t hash[PX_HASH_BYTES])
{
    node *n = arg;
    uint32_t k = peer_slot(n, from);
    if (k == n->cfg.n_peers || from == n->cfg.id)
        return;
    if (index & NODE_HEAD_START) {
        on_start(n, k, index, hash);
    } else if (index & NODE_HEAD_QUERY) {
        uint64_t want = index & NODE_HEAD_MASK;
        uint8_t ours[CHAIN_HASH_BYTES];
        if (want <= chain_head_index(n->chain) &&
            chain_hash_at(n->chain, want, ours) == 0)
            head_frame(n, from, want, ours);
    } else {
        on_fact(n, k, index, hash);
    }
}

/* While not confirmed (invariant 5) or abstaining the node neither votes,
 * campaigns nor leads: of what its replica sends, only requests for the
 * leader (FORWARD) and for missing slots (CATCHUP_REQ) leave.  A node that
 * led when it found out goes silent, so the others elect a leader among
 * themselves. */
static bool abstain_filter(node *n, const px_msg *m)
{
    if (!n->fatal && ((n->confirmed && !n->abstaining) ||
                      m->type == PX_MSG_FORWARD ||
                      m->type == PX_MSG_CATCHUP_REQ))
        return false;   /* invariant 4: nothing at all while failed */
    n->votes_withheld++;
    return true;
}

/* ---------------------------------------------- catch-up (invariant 7) */

/* Peers other than us that told us they hold `hash` at `index`. */
static uint32_t fact_vouchers(const node *n, uint64_t index,
                              const uint8_t hash[CHAIN_HASH_BYTES])
{
    uint32_t count = 0;
    for (uint32_t k = 0; k < n->cfg.n_peers; k++) {
        if (n->cfg.peers[k].id == n->cfg.id)
            continue;
        for (uint32_t i = 0; i < NODE_FACTS; i++) {
            const struct node_fact *f = &n->facts[k][i];
            if (f->index == index && index != 0 &&
                memcmp(f->hash, hash, CHAIN_HASH_BYTES) == 0) {
                count++;
                break;
            }
        }
    }
    return count;
}

static void catchup_dropped(node *n, const char *why)
{
    n->catchup_dropped++;
    uint64_t now = node_now_ms(n);
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
    uint32_t need = node_quorum(n) > 0 ? node_quorum(n) - 1 : 0;
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
        if (fact_vouchers(n, e->slot, hash) >= need)
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
        uint64_t now = node_now_ms(n);
        if (last != n->catchup_query_index ||
            now - n->catchup_query_ms >= 100) {
            uint8_t none[CHAIN_HASH_BYTES] = {0};
            head_frame(n, 0, NODE_HEAD_QUERY | last, none);
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
    step(n, &ev);
    return true;
}

static void catchup_receive(node *n, const px_msg *m)
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
    n->held_catchup_ms = node_now_ms(n);
}

static void catchup_try_held(node *n)
{
    px_msg *m = n->held_catchup;
    n->held_catchup = NULL;
    if (catchup_deliver(n, m)) {
        free(m);
        return;
    }
    n->held_catchup = m;
}

static void catchup_expire(node *n, uint64_t now)
{
    if (n->held_catchup && now - n->held_catchup_ms >= NODE_CATCHUP_HOLD_MS) {
        free(n->held_catchup);
        n->held_catchup = NULL;
        catchup_dropped(n, "no quorum of the other members holds its blocks");
    }
}

static void on_message(void *arg, const px_msg *m)
{
    node *n = arg;
    /* a leader's messages arrive: this node is not cut off, even while its
     * replica does not follow that leader yet (a higher promise after a
     * partition, a start not yet confirmed, a diverged chain); requests
     * then wait for their deadline instead of failing at once */
    if (m->type == PX_MSG_HEARTBEAT || m->type == PX_MSG_ACCEPT ||
        m->type == PX_MSG_COMMIT)
        n->leader_seen_ms = node_now_ms(n);
    check_divergence(n, m->from, m->chain_index, m->chain_hash);
    if (m->type == PX_MSG_CATCHUP) {
        catchup_receive(n, m);
        return;
    }
    px_event ev = { .type = PX_EV_RECEIVE };
    ev.u.msg = m;
    step(n, &ev);
}

static void on_admin(void *arg, const char *request, char **reply)
{
    node *n = arg;
    char verb[16], what[16];
    unsigned peer = 0;
    if (strcmp(request, "status") == 0) {
        size_t len;
        if (node_status_text(n, reply, &len) < 0)
            *reply = strdup("error: out of memory");
        return;
    }
    if (sscanf(request, "%15s %15s %u", verb, what, &peer) == 3 &&
        strcmp(verb, "link") == 0 &&
        (strcmp(what, "drop") == 0 || strcmp(what, "heal") == 0)) {
        bool drop = strcmp(what, "drop") == 0;
        int rc = n->net ? transport_block(n->net, peer, drop) : -ENOENT;
        if (rc == 0)
            fprintf(stderr, "paxosfs: node %u: link to node %u %s\n", n->cfg.id,
                    peer, drop ? "dropped" : "healed");
        *reply = strdup(rc == 0 ? "ok" : "error: no such peer");
        return;
    }
    *reply = strdup("error: unknown request (want: status | link drop J | "
                    "link heal J)");
}

/* --------------------------- reopening the storage (invariant 4) */

/* Take DIR/LOCK again when the path names another file now (the disk
 * was mounted again): the flock held is on the old one. */
static int relock(node *n, char *err, size_t err_len)
{
    char path[4096];
    struct stat held, now;
    snprintf(path, sizeof path, "%s/LOCK", n->data_dir);
    if (fstat(n->lock_fd, &held) == 0 && stat(path, &now) == 0 &&
        held.st_dev == now.st_dev && held.st_ino == now.st_ino)
        return 0;
    int old = n->lock_fd;
    n->lock_fd = -1;
    int rc = take_lock(n, err, err_len);
    if (rc < 0) {
        n->lock_fd = old;
        return rc;
    }
    close(old);
    write_lock_pid(n);
    return 0;
}

/* The log file may have been on the disk that failed and was mounted
 * again: open it anew (cfg.log_path), so what follows lands where an
 * operator looks. */
static void reopen_log(node *n)
{
    if (!n->cfg.log_path)
        return;
    int fd = open(n->cfg.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  0600);
    if (fd < 0) {
        fprintf(stderr, "paxosfs: node %u: cannot reopen the log %s: %s\n",
                n->cfg.id, n->cfg.log_path, strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
        fprintf(stderr, "paxosfs: node %u: cannot reopen the log %s: %s\n",
                n->cfg.id, n->cfg.log_path, strerror(errno));
    close(fd);
}

/* The chain on disk must be the one the state was built from: a prefix
 * of it (the tail a failed disk lost is learned again) or an extension
 * of it (blocks appended whose state was not applied). */
static int reopen_check_chain(node *n, chain *old, uint64_t old_head,
                              const uint8_t old_hash[CHAIN_HASH_BYTES],
                              char *err, size_t err_len)
{
    uint64_t head = chain_head_index(n->chain);
    uint8_t ours[CHAIN_HASH_BYTES], theirs[CHAIN_HASH_BYTES];
    uint64_t at = head < old_head ? head : old_head;
    if (chain_hash_at(n->chain, at, ours) < 0)
        return 0;
    if (at == old_head)
        memcpy(theirs, old_hash, CHAIN_HASH_BYTES);
    else if (chain_hash_at(old, at, theirs) < 0)
        return 0;   /* the old copy is unreadable: the mark was checked */
    if (memcmp(ours, theirs, CHAIN_HASH_BYTES) == 0)
        return 0;
    snprintf(err, err_len, "the chain in %s differs at block %" PRIu64
             " from the one this node applied (another disk?); restart "
             "the node", n->data_dir, at);
    return -EBADMSG;
}

/* The probe passed: re-verify what the disk holds and take part again as
 * a restarted node does, without a restart.  Settle the files (what was
 * written becomes durable, cached pages are dropped), take the lock
 * again if the disk was mounted anew, reopen and verify the acceptor
 * store and the chain as on start (a torn tail is cut, a damaged store
 * kept aside and recovered from the peers), bring the state up to the
 * chain, build a new replica from the store (the suspended one may hold
 * promises and acceptances that never reached the disk), start group
 * commit over and pass the start gate again: no vote before a majority
 * confirmed this chain head and this start.  On a failure the suspended
 * state stays and health backs off. */
static void storage_reopen(node *n)
{
    uint64_t now = node_now_ms(n);
    char err[1024] = "";
    drain_chain_sync(n);
    if (worker_busy(n->bg)) {
        health_fail(&n->health, "a chain fdatasync that does not return",
                    -EBUSY, now);
        return;
    }
    int rc = chain_settle_dir(n->data_dir);
    if (rc < 0) {
        health_fail(&n->health, "settling the chain and acceptor files", rc,
                    now);
        return;
    }
    rc = relock(n, err, sizeof err);
    if (rc < 0) {
        health_fail(&n->health, err, rc, now);
        return;
    }
    chain *old_chain = n->chain;
    acceptor_store *old_acc = n->acceptor;
    px_replica *old_px = n->px;
    uint64_t old_head = chain_head_index(old_chain);
    uint8_t old_hash[CHAIN_HASH_BYTES];
    memcpy(old_hash, chain_head_hash(old_chain), CHAIN_HASH_BYTES);
    acceptor_peer old_start = n->start, old_prev = n->prev_start;
    acceptor_peer old_peers[TRANSPORT_MAX_PEERS];
    memcpy(old_peers, n->peer_start, sizeof old_peers);
    char old_why[sizeof n->recovering_why];
    memcpy(old_why, n->recovering_why, sizeof old_why);
    n->chain = NULL;
    n->acceptor = NULL;
    n->px = NULL;

    rc = open_storage(n, err, sizeof err);
    if (rc == 0)
        rc = reopen_check_chain(n, old_chain, old_head, old_hash, err,
                                sizeof err);
    if (rc == 0)
        rc = replay_chain(n, err, sizeof err);
    uint64_t head = n->chain ? chain_head_index(n->chain) : 0;
    if (rc == 0) {
        /* as node_open does */
        acceptor_state ast;
        acceptor_get_state(n->acceptor, &ast);
        uint32_t first = 0;
        while (first < ast.n_accepts && ast.accepts[first].slot <= head)
            first++;
        px_restore restore = {
            .promise = ast.promise,
            .applied_index = head,
            .n_accepts = ast.n_accepts - first,
            .accepts = ast.accepts + first,
            .recovering = n->recovering_why[0] != '\0',
        };
        px_options opt = n->px_opt;
        opt.seed = random_u64();
        rc = px_create(&opt, &restore, &n->px);
        if (rc < 0)
            snprintf(err, sizeof err, "cannot create the replica: %s",
                     strerror(-rc));
    }
    if (rc == 0) {
        rc = syncer_reset(n->sync, n->acceptor);
        if (rc < 0)
            snprintf(err, sizeof err, "cannot restart the sync thread: %s",
                     strerror(-rc));
    }
    if (rc < 0) {
        if (n->px)
            px_destroy(n->px);
        if (n->acceptor)
            acceptor_close(n->acceptor);
        if (n->chain)
            chain_close(n->chain);
        n->chain = old_chain;
        n->acceptor = old_acc;
        n->px = old_px;
        n->start = old_start;
        n->prev_start = old_prev;
        memcpy(n->peer_start, old_peers, sizeof old_peers);
        memcpy(n->recovering_why, old_why, sizeof old_why);
        health_fail(&n->health, err[0] ? err : "reopening the storage", rc,
                    now);
        return;
    }
    px_destroy(old_px);
    acceptor_close(old_acc);
    chain_close(old_chain);
    px_set_chain_head(n->px, head, chain_head_hash(n->chain));

    /* nothing held waits for the old replica's persists any more */
    uint64_t dropped = n->held.dropped, superseded = n->held.superseded;
    outbox_free(&n->held);
    outbox_init(&n->held, NODE_MAX_HELD_MSGS);
    n->held.dropped = dropped;
    n->held.superseded = superseded;
    n->durable_persist_id = n->last_persist_issued = 0;
    n->compact_due = false;
    n->last_chain_sync_ms = now;
    n->next_tick_ms = 0;
    free(n->held_catchup);
    n->held_catchup = NULL;
    /* the start gate again (invariant 5), for this chain and this start */
    n->confirmed = false;
    n->abstaining = false;
    n->start_head = head;
    n->started_ms = n->last_wait_log_ms = now;
    for (uint32_t k = 0; k < TRANSPORT_MAX_PEERS; k++) {
        n->peer_holds_head[k] = n->peer_agrees[k] = false;
        n->peer_saw_start[k] = false;
        n->peer_chain_index[k] = 0;
        n->peer_chain_differs[k] = false;
    }
    n->fatal = 0;
    reopen_log(n);
    health_recovered(&n->health, now);
    if (head < kv_applied_index(n->state))
        fprintf(stderr, "paxosfs: node %u: the chain on disk ends at block %"
                PRIu64 ", %" PRIu64 " blocks short of the state (never "
                "synced); they are appended again as the leader sends them\n",
                n->cfg.id, head, kv_applied_index(n->state) - head);
    if (n->recovering_why[0])
        fprintf(stderr, "paxosfs: node %u: recovering lost acceptor state "
                "(%s); casting no vote until recovered\n", n->cfg.id,
                n->recovering_why);
    gate_update(n);
    px_event first = { .type = PX_EV_TICK };
    step(n, &first);
}

/* ---------------------------------------------------------------- loop */

enum { POLL_SIGNAL, POLL_SYNC, POLL_BG, POLL_FUSE, POLL_ADMIN, POLL_NET,
       POLL_MAX = 9 };

/* Keep the threads of a leader on cfg.leader_cpus and those of any other
 * role off them.  A leader's loop carries every write; the hand-offs
 * between its threads (loop, ZeroMQ I/O thread, sync thread) are cheap
 * on one CPU and cost an inter-processor wake-up across two.  Checked
 * every turn, moved only when the role changed. */
static void place_threads(node *n)
{
    if (!n->cfg.leader_cpus)
        return;
    int as = px_role(n->px) == PX_LEADER;
    if (as == n->placed_as)
        return;
    n->placed_as = as;
    const cpu_set_t *set = as ? &n->leader_cpus : &n->other_cpus;
    char list[256];
    cpus_format(set, list, sizeof list);
    int rc = cpus_apply(set);
    if (rc < 0) {
        if (rc != n->placement_error)
            fprintf(stderr, "paxosfs: node %u: cannot move threads to CPUs "
                    "%s: %s\n", n->cfg.id, list, strerror(-rc));
        n->placement_error = rc;
        return;
    }
    n->placement_error = 0;
    fprintf(stderr, "paxosfs: node %u: %s: threads on CPUs %s\n", n->cfg.id,
            as ? "leading" : "not leading", list);
}

/* Stopping: writes committed at release (their callers already returned)
 * get up to commit_timeout_ms to commit before the node goes away; the
 * mount is no longer served meanwhile.  A second signal stops at once. */
static bool keep_draining(node *n, uint64_t now, struct pollfd *fds)
{
    fds[POLL_FUSE].fd = -1;
    if (n->fatal || n->answered_outstanding == 0)
        return false;
    if (n->drain_deadline_ms == 0) {
        n->drain_deadline_ms = now + n->cfg.commit_timeout_ms;
        fprintf(stderr, "paxosfs: node %u: waiting up to %" PRIu64 " ms for %"
                PRIu64 " writes made at close to commit\n", n->cfg.id,
                n->cfg.commit_timeout_ms, n->answered_outstanding);
    }
    if (now < n->drain_deadline_ms)
        return true;
    fprintf(stderr, "paxosfs: node %u: stopping with %" PRIu64 " writes made "
            "at close not known to be committed\n", n->cfg.id,
            n->answered_outstanding);
    return false;
}

int node_run(node *n)
{
    int rc = syncer_create(n->acceptor, &n->sync);
    if (rc < 0) {
        fprintf(stderr, "paxosfs: cannot start the sync thread: %s\n",
                strerror(-rc));
        return rc;
    }
    rc = worker_create(&n->bg);
    if (rc < 0) {
        fprintf(stderr, "paxosfs: cannot start the chain sync thread: %s\n",
                strerror(-rc));
        return rc;
    }
    write_lock_pid(n);
    if (n->recovering_why[0])     /* said before the log was redirected */
        fprintf(stderr, "paxosfs: node %u: recovering lost acceptor state "
                "(%s); casting no vote until recovered\n", n->cfg.id,
                n->recovering_why);
    /* let the replica start (a sole voter elects itself at once) */
    px_event first = { .type = PX_EV_TICK };
    step(n, &first);
    flush_writes(n);
    place_threads(n);

    /* ZeroMQ sockets are polled through their ZMQ_FD, which signals only
     * changes: the loop blocks on them only after draining each socket
     * (the drain functions say when they stopped at a bound instead), and
     * drains them all on every timeout as well.  A plain poll() costs one
     * system call; zmq_poll() checked every socket's events around it,
     * a dozen more per turn. */
    bool zmq_pending = true;   /* drain once before the first sleep */
    /* the descriptors stay the same for the loop's life; poll() rewrites
     * only revents */
    struct pollfd fds[POLL_MAX];
    for (int i = 0; i < POLL_MAX; i++)
        fds[i] = (struct pollfd){ .fd = -1, .events = POLLIN };
    fds[POLL_SIGNAL].fd = n->signal_fd;
    fds[POLL_SYNC].fd = syncer_wake_fd(n->sync);
    fds[POLL_BG].fd = worker_wake_fd(n->bg);
    fds[POLL_FUSE].fd = n->mount ? fs_fd(n->mount) : -1;
    fds[POLL_ADMIN].fd = admin_fd(n->adm);
    int n_fds = POLL_NET;
    if (n->net) {
        int net_fds[POLL_MAX - POLL_NET];
        int k = transport_poll_fds(n->net, net_fds, POLL_MAX - POLL_NET);
        for (int i = 0; i < k; i++)
            fds[n_fds++].fd = net_fds[i];
    }
    for (;;) {
        uint64_t now = node_now_ms(n);
        if (n->stop && !keep_draining(n, now, fds))
            break;
        int timeout = 100;
        if (n->next_tick_ms && n->next_tick_ms > now && n->next_tick_ms - now < 100)
            timeout = (int)(n->next_tick_ms - now);
        else if (n->next_tick_ms && n->next_tick_ms <= now)
            timeout = 0;
        if (zmq_pending)
            timeout = 0;
        int pr = poll(fds, (nfds_t)n_fds, timeout);
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "paxosfs: poll: %s\n", strerror(errno));
            break;
        }
        bool drain_all = pr == 0 || zmq_pending;
        zmq_pending = false;
        if (pr > 0 && (fds[POLL_SIGNAL].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(n->signal_fd, &si, sizeof si) > 0) {
                fprintf(stderr, "paxosfs: node %u: signal %u, stopping\n",
                        n->cfg.id, si.ssi_signo);
                if (n->stop)
                    n->drain_deadline_ms = 1;   /* a second one: now */
                n->stop = true;
            }
        }
        if (pr > 0 && (fds[POLL_BG].revents & POLLIN))
            collect_chain_sync(n);
        if (pr > 0 && (fds[POLL_SYNC].revents & POLLIN))
            collect_sync(n);
        if (drain_all || fds[POLL_ADMIN].revents)
            zmq_pending |= admin_serve(n->adm, on_admin, n);
        unsigned which = 0;   /* fds[POLL_NET + i]: bit i (transport.h) */
        for (int i = POLL_NET; i < n_fds; i++)
            if (drain_all || fds[i].revents)
                which |= 1u << (i - POLL_NET);
        if (n->net && which)
            zmq_pending |= transport_receive(n->net, which, node_now_ms(n),
                                             on_message, on_chain_head, n);
        if (n->mount && pr > 0 && fds[POLL_FUSE].fd >= 0 &&
            (fds[POLL_FUSE].revents & (POLLIN | POLLERR | POLLHUP))) {
            n->last_fuse_ms = node_now_ms(n);
            rc = fs_process(n->mount);
            if (rc != 0) {
                if (rc < 0)
                    fprintf(stderr, "paxosfs: FUSE: %s\n", strerror(-rc));
                else
                    fprintf(stderr, "paxosfs: node %u: unmounted, stopping\n",
                            n->cfg.id);
                n->stop = true;
            }
        }
        track_leader(n, node_now_ms(n));
        step_queued(n);
        place_threads(n);
        now = node_now_ms(n);
        if (n->next_tick_ms && now >= n->next_tick_ms) {
            px_event ev = { .type = PX_EV_TICK };
            step(n, &ev);
        }
        flush_writes(n);
        now = node_now_ms(n);
        expire_deadlines(n, now);
        background_sync(n, now);
        send_heads(n, now);
        catchup_expire(n, now);
        if (n->fatal && health_poll(&n->health, now))
            storage_reopen(n);   /* invariant 4: the probe passed */
    }
    /* what was acknowledged is durable already; finish what is in flight */
    drain_sync(n);
    drain_chain_sync(n);
    return n->fatal;
}

void node_close(node *n)
{
    if (!n)
        return;
    if (n->mount) {
        /* parked requests of a mount that is going away: answer (into the
         * void) so that nothing they hold leaks */
        fail_all_pending(n, -EIO, -EIO);
        fs_unmount(n->mount);
        n->mount = NULL;
    }
    syncer_destroy(n->sync);
    n->sync = NULL;
    worker_destroy(n->bg);   /* waits for a job drain_chain_sync gave up on */
    n->bg = NULL;
    health_fini(&n->health);
    n->sync = NULL;
    outbox_free(&n->held);
    if (n->adm)
        admin_close(n->adm);
    if (n->net)
        transport_close(n->net);
    if (n->zctx)
        zmq_ctx_term(n->zctx);
    if (n->chain && !n->fatal) {
        int rc = chain_sync(n->chain);
        if (rc < 0) {
            fprintf(stderr, "paxosfs: final chain fdatasync failed: %s\n",
                    strerror(-rc));
        } else if (n->acceptor) {
            /* the durable chain position, durably (a stop is clean) */
            acceptor_info info;
            acceptor_get_info(n->acceptor, &info);
            if (chain_synced_index(n->chain) > info.mark.index)
                rc = acceptor_mark(n->acceptor, chain_synced_index(n->chain),
                                   chain_synced_hash(n->chain));
            if (rc == 0)
                rc = acceptor_sync(n->acceptor);
            if (rc < 0)
                fprintf(stderr, "paxosfs: final acceptor store write failed: "
                        "%s\n", strerror(-rc));
        }
    }
    free(n->held_catchup);
    if (n->px)
        px_destroy(n->px);
    if (n->state)
        kv_destroy(n->state);
    if (n->acceptor)
        acceptor_close(n->acceptor);
    if (n->chain)
        chain_close(n->chain);
    if (n->ring) {
        for (uint32_t i = 0; i < NODE_MAX_PENDING; i++)
            free(n->ring[i].op);
        free(n->ring);
    }
    if (n->signal_fd >= 0)
        close(n->signal_fd);
    if (n->lock_fd >= 0)
        close(n->lock_fd);
    free(n->reads);
    free(n->new_reads);
    free(n->data_dir);
    free(n->mountpoint);
    free(n);
}
