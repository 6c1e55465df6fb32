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
 *  4. After a storage failure (a failed fdatasync or chain append) the
 *     node accepts no more writes: durability can no longer be promised.
 *     Reads of already applied state go on.
 */
#include "node.h"

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
#define NODE_CATCHUP_BLOCKS 256         /* chain blocks per catch-up frame */
#define NODE_CATCHUP_BYTES (4u << 20)
#define NODE_MOUNT_IDLE_MS 100          /* no FUSE request for this long:
                                           a follower syncs inline */

/* A write submitted by the mount, until its entry is applied. */
typedef struct pending {
    bool used;
    uint64_t seq;
    uint64_t deadline_ms;
    fs_done_fn done;
    void *arg;
    uint8_t *op;            /* encoded op until it has been proposed */
    uint32_t op_len;
} pending;

/* A read barrier, until its read index is applied. */
typedef struct read_wait {
    uint64_t token;
    uint64_t index;         /* 0 until the replica answered */
    uint64_t deadline_ms;
    uint64_t after_seq;     /* this node's writes up to here first: the
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
    uint64_t answered_seq;      /* newest write submitted after its caller
                                   was answered (a commit at release) */
    uint64_t to_propose_from;   /* first seq not yet stepped */

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

    uint64_t last_now_ms;
    uint64_t next_tick_ms;
    uint64_t last_chain_sync_ms;
    uint64_t last_fuse_ms;      /* the mount last had requests */

    /* CPU placement (cfg.leader_cpus, docs/design.md "CPU placement") */
    cpu_set_t leader_cpus;      /* cfg.leader_cpus points here */
    cpu_set_t other_cpus;       /* where a follower runs */
    int placed_as;              /* -1 not yet, 0 follower, 1 leader */
    int placement_error;        /* last cpus_apply failure, logged once */
    int fatal;                  /* negative errno once storage failed */
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
    cfg->attr_timeout_s = 1.0;
    cfg->entry_timeout_s = 10.0;
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

static void pending_finish(node *n, pending *p, int result)
{
    fs_done_fn done = p->done;
    void *arg = p->arg;
    free(p->op);
    memset(p, 0, sizeof *p);
    while (n->low_seq < n->next_seq &&
           !n->ring[n->low_seq & (NODE_MAX_PENDING - 1)].used)
        n->low_seq++;
    if (done)
        done(arg, result);
    if (n->n_reads)
        serve_ready_reads(n);
}

static bool read_is_expired(const read_wait *r, void *arg);
static void finish_reads(node *n, bool (*pick)(const read_wait *, void *),
                         void *pick_arg, int result);

static void fail_all_pending(node *n, int result)
{
    for (uint64_t s = n->low_seq; s < n->next_seq; s++) {
        pending *p = pending_at(n, s);
        if (p)
            pending_finish(n, p, result);
    }
    uint64_t all = UINT64_MAX;
    finish_reads(n, read_is_expired, &all, result);
    n->n_new_reads = 0;
}

static void storage_failed(node *n, const char *what, int rc)
{
    if (n->fatal)
        return;
    n->fatal = rc < 0 ? rc : -EIO;
    fprintf(stderr, "paxosfs: node %u: %s failed: %s; refusing further writes\n",
            n->cfg.id, what, strerror(-n->fatal));
    fail_all_pending(n, -EIO);
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

/* Tell the mount which keys an applied batch changed. */
static void notify_changes(node *n, const px_entry *e)
{
    if (!n->mount || e->kind != PX_ENTRY_BATCH)
        return;
    uint32_t off = 0;
    px_request req;
    while (px_batch_next(e->data, e->len, &off, &req) == 1) {
        kv_op op;
        /* this mount's own writes need no notice: the kernel already
         * dropped the size and times it cached for a written file, and
         * unlink/rename replies update its names */
        if (req.client_id == n->client_id ||
            kv_op_decode(req.op, req.len, &op) != 0)
            continue;
        /* judged from the state after the entry: a failed op changed
         * nothing, and a rename this mount made was already re-keyed */
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
    uint64_t low_seq;
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
    return r->ready && r->index <= p->applied && p->low_seq > r->after_seq;
}

static void serve_ready_reads(node *n)
{
    struct serve_point p = { kv_applied_index(n->state), n->low_seq };
    finish_reads(n, read_is_served, &p, 0);
}

static void apply_committed(node *n, const px_entry *e)
{
    if (n->fatal)
        return;
    if (e->slot <= kv_applied_index(n->state))
        return;  /* already applied (restart replay) */
    uint8_t hash[CHAIN_HASH_BYTES];
    int rc = chain_append(n->chain, e->slot, e->time_ms, e->kind, e->data,
                          e->len, hash);
    if (rc < 0) {
        storage_failed(n, "chain append", rc);
        return;
    }
    px_set_chain_head(n->px, e->slot, hash);
    rc = kv_apply_entry(n->state, e, on_result, n);
    if (rc < 0) {
        storage_failed(n, "applying a committed entry", rc);
        return;
    }
    notify_changes(n, e);
}

/* ------------------------------------------------------------ outputs */

static bool abstain_filter(node *n, const px_msg *m);

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

    for (uint32_t i = 0; i < out->n_committed; i++)
        apply_committed(n, &out->committed[i]);

    for (uint32_t i = 0; i < out->n_failed; i++) {
        if (out->failed[i].client_id != n->client_id)
            continue;
        pending *p = pending_at(n, out->failed[i].seq);
        if (p)
            pending_finish(n, p, out->failed[i].status);
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
static void step_queued(node *n)
{
    px_request reqs[64];
    while (n->to_propose_from < n->next_seq && !n->fatal) {
        uint32_t k = 0;
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
        px_event ev = { .type = PX_EV_PROPOSE };
        ev.u.propose.requests = reqs;
        ev.u.propose.n_requests = k;
        step(n, &ev);
        /* the replica copied the ops */
        for (uint32_t i = 0; i < k; i++) {
            pending *p = pending_at(n, reqs[i].seq);
            if (p) {
                free(p->op);
                p->op = NULL;
            }
        }
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

static void expire_deadlines(node *n, uint64_t now_ms)
{
    for (uint64_t s = n->low_seq; s < n->next_seq; s++) {
        pending *p = pending_at(n, s);
        if (p && p->deadline_ms <= now_ms && s < n->to_propose_from)
            pending_finish(n, p, -ETIMEDOUT);
    }
    finish_reads(n, read_is_expired, &now_ms, -ETIMEDOUT);
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
        int rc = acceptor_compact(n->acceptor, chain_synced_index(n->chain));
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

static int node_submit(void *ctx, const uint8_t *op, uint32_t len,
                       bool answered, fs_done_fn done, void *arg)
{
    node *n = ctx;
    if (n->fatal)
        return -EIO;
    if (n->next_seq - n->low_seq >= NODE_MAX_PENDING)
        return -EAGAIN;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, op, len);
    uint64_t seq = n->next_seq++;
    if (answered)
        n->answered_seq = seq;
    pending *p = &n->ring[seq & (NODE_MAX_PENDING - 1)];
    *p = (pending){ .used = true, .seq = seq, .done = done, .arg = arg,
                    .op = copy, .op_len = len,
                    .deadline_ms = node_now_ms(n) + n->cfg.commit_timeout_ms };
    return 0;
}

static int node_read_barrier(void *ctx, fs_done_fn done, void *arg)
{
    node *n = ctx;
    if (n->n_reads >= NODE_MAX_READS)
        return -EAGAIN;
    uint64_t token = ++n->next_read_token;
    n->reads[n->n_reads++] = (read_wait){
        .token = token, .done = done, .arg = arg, .after_seq = n->answered_seq,
        .deadline_ms = node_now_ms(n) + n->cfg.commit_timeout_ms };
    n->new_reads[n->n_new_reads++] = token;
    return 0;
}

static const kv *node_state(void *ctx)
{
    return ((node *)ctx)->state;
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
            "\"pending_writes\":%" PRIu64 ",\"acceptor_syncs\":%" PRIu64
            ",\"healthy\":%s",
            n->cfg.id, role_name(st.role), st.leader_id, st.ballot.round,
            st.ballot.node_id, st.commit_index, kv_applied_index(n->state),
            chain_head_index(n->chain), head, chain_synced_index(n->chain),
            members, kv_count(n->state), kv_bytes(n->state),
            n->next_seq - n->low_seq, n->sync ? syncer_syncs(n->sync) : 0,
            n->fatal ? "false" : "true");
    fprintf(fp, ",\"voting\":%s,\"votes_withheld\":%" PRIu64 ",\"diverged_from\":[",
            n->abstaining ? "false" : "true", n->votes_withheld);
    const char *dsep = "";
    for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
        if (!n->peer_chain_differs[i])
            continue;
        fprintf(fp, "%s{\"peer\":%u,\"index\":%" PRIu64 "}", dsep,
                n->cfg.peers[i].id, n->peer_chain_index[i]);
        dsep = ",";
    }
    fprintf(fp, "]");
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

static int make_dir(const char *path, char *err, size_t err_len)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    int e = errno;
    snprintf(err, err_len, "cannot create %s: %s", path, strerror(e));
    return -e;
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

static int replay_chain(node *n, char *err, size_t err_len)
{
    uint64_t head = chain_head_index(n->chain);
    for (uint64_t i = 1; i <= head; i++) {
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

    rc = make_dir(n->data_dir, err, err_len);
    if (rc < 0)
        goto fail;
    rc = take_lock(n, err, err_len);
    if (rc < 0)
        goto fail;

    chain_open_report report;
    chain_damage damage;
    memset(&report, 0, sizeof report);
    memset(&damage, 0, sizeof damage);
    rc = chain_open(n->data_dir, &n->chain, &report, &damage);
    if (rc == -EBADMSG) {
        snprintf(err, err_len, "chain damaged: %s offset %" PRIu64 " block %"
                 PRIu64 ": %s; refusing to serve (run paxosctl verify %s)",
                 damage.path, damage.offset, damage.index, damage.reason,
                 n->data_dir);
        goto fail;
    }
    if (rc < 0) {
        snprintf(err, err_len, "cannot open the chain in %s: %s", n->data_dir,
                 strerror(-rc));
        goto fail;
    }
    if (report.torn_tail_cut)
        fprintf(stderr, "paxosfs: node %u: torn tail in %s: cut %" PRIu64
                " bytes at offset %" PRIu64 " back to block %" PRIu64 "\n",
                cfg->id, report.torn_path, report.torn_bytes,
                report.torn_offset, chain_head_index(n->chain));

    acceptor_state ast;
    memset(&ast, 0, sizeof ast);
    rc = acceptor_open(n->data_dir, &n->acceptor, &ast, &damage);
    if (rc == -EBADMSG) {
        snprintf(err, err_len, "acceptor store damaged: %s offset %" PRIu64
                 ": %s; refusing to serve", damage.path, damage.offset,
                 damage.reason);
        goto fail;
    }
    if (rc < 0) {
        snprintf(err, err_len, "cannot open the acceptor store in %s: %s",
                 n->data_dir, strerror(-rc));
        goto fail;
    }

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
    uint32_t first = 0;
    while (first < ast.n_accepts && ast.accepts[first].slot <= head)
        first++;
    px_restore restore = {
        .promise = ast.promise,
        .applied_index = head,
        .n_accepts = ast.n_accepts - first,
        .accepts = ast.accepts + first,
    };
    rc = px_create(&opt, &restore, &n->px);
    if (rc < 0) {
        snprintf(err, err_len, "cannot create the replica: %s", strerror(-rc));
        goto fail;
    }
    px_set_chain_head(n->px, head, chain_head_hash(n->chain));
    n->last_chain_sync_ms = node_now_ms(n);
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
                "no longer voting, campaigning or leading\n", n->cfg.id);
    n->abstaining = abstain;
}

static void on_chain_head(void *arg, uint32_t from, uint64_t index,
                          const uint8_t hash[PX_HASH_BYTES])
{
    check_divergence(arg, from, index, hash);
}

/* While abstaining the node neither votes, campaigns nor leads: of what
 * its replica sends, only requests for the leader (FORWARD) and for
 * missing slots (CATCHUP_REQ) leave.  A node that led when it found out
 * goes silent, so the others elect a leader among themselves. */
static bool abstain_filter(node *n, const px_msg *m)
{
    if (!n->abstaining || m->type == PX_MSG_FORWARD ||
        m->type == PX_MSG_CATCHUP_REQ)
        return false;
    n->votes_withheld++;
    return true;
}

static void on_message(void *arg, const px_msg *m)
{
    node *n = arg;
    check_divergence(n, m->from, m->chain_index, m->chain_hash);
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
    while (!n->stop) {
        uint64_t now = node_now_ms(n);
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
        if (n->mount && pr > 0 &&
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
        if (n->net && now - n->last_head_sent_ms >= NODE_CHAIN_HEAD_INTERVAL_MS) {
            n->last_head_sent_ms = now;
            transport_send_chain_head(n->net, chain_head_index(n->chain),
                                      chain_head_hash(n->chain));
        }
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
        fail_all_pending(n, -EIO);
        fs_unmount(n->mount);
        n->mount = NULL;
    }
    syncer_destroy(n->sync);
    n->sync = NULL;
    worker_destroy(n->bg);   /* waits for a job drain_chain_sync gave up on */
    n->bg = NULL;
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
        if (rc < 0)
            fprintf(stderr, "paxosfs: final chain fdatasync failed: %s\n",
                    strerror(-rc));
        else if (n->acceptor)
            acceptor_compact(n->acceptor, chain_synced_index(n->chain));
    }
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
