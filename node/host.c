/*
 * host.c - the state-machine host of a node: committed entries go into
 * the hash chain and then the key-value state; what they changed goes to
 * the mount; the chain is made durable in the background; blocks of the
 * chain go to peers that lag behind what the replica retains.
 *
 * Invariants:
 *   1. Committed entries are applied in slot order, each once: chain block
 *      first (it fixes the hash), then the key-value state.
 *   2. After a storage failure nothing more is applied until the stores
 *      are reopened (reopen.c); the state never goes back: blocks a
 *      failed disk lost from the chain are appended again when they come
 *      again, without being applied twice.
 *   3. The acceptor store forgets accepted values only up to a chain
 *      position that is durable (chain_sync_finish returned), and that
 *      position is recorded in the store (acceptor_mark) so that a chain
 *      found shorter later was cut.
 */
#include "node_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "reads.h"

/* The key-value state's answer for one request: our own client's. */
static void on_result(void *arg, uint64_t who, uint64_t seq,
                      int32_t result, uint64_t slot)
{
    (void)slot;
    node *n = arg;
    if (n->cl && who == client_id(n->cl))
        client_applied(n->cl, seq, result);
}

/* The key-value state's stream of changed keys (kv_set_changed, installed
 * once replay is done): tell the mount which keys an applied entry changed
 * and what they hold now (its own writes too: an inode follows its file
 * through renames, whoever made them), right after the op that changed
 * them and so before its request's result (fs.h rule B2). */
void host_on_changed(void *arg, const char *key, size_t key_len,
                       bool removed)
{
    node *n = arg;
    if (!n->mount)
        return;
    fs_meta now = { 0 };
    const kv_value *v = removed ? NULL : kv_get(n->state, key, key_len);
    if (v)
        reads_meta(v, &now);
    fs_key_changed(n->mount, key, key_len, &now);
}

void host_apply(node *n, const px_entry *e)
{
    if (n->fatal)
        return;   /* invariant 2 */
    if (e->slot > chain_head_index(n->chain)) {
        uint8_t hash[CHAIN_HASH_BYTES];
        int rc = chain_append(n->chain, e->slot, e->time_ms, e->kind,
                              e->data, e->len, hash);
        if (rc < 0) {
            node_storage_failed(n, "chain append", rc);
            return;
        }
        px_set_chain_head(n->px, e->slot, hash);
    }
    /* already applied: a restart's replay, or blocks whose chain copy a
     * failed disk lost and that come again after a reopen (the state
     * never goes back) */
    if (e->slot <= kv_applied_index(n->state))
        return;
    int rc = kv_apply_entry(n->state, e, on_result, n);
    if (rc < 0)
        node_storage_failed(n, "applying a committed entry", rc);
    else
        snapnode_applied(n, e);
}

/* The chain blocks the state lacks into it (all of them at start). */
int host_replay(node *n, char *err, size_t err_len)
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

/* A peer lags behind what the replica retains: stream it committed blocks
 * from the chain, which holds every committed entry. */
void host_send_catchup(node *n, uint32_t peer_id)
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
        commit_send(n, &m);
    }
    for (uint32_t i = 0; i < k; i++)
        chain_block_free(&blocks[i]);
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
void host_background_sync(node *n, uint64_t now_ms)
{
    if (n->fatal)
        return;
    if (n->compact_due && syncer_idle(n->sync)) {
        n->compact_due = false;
        /* invariant 3: the durable chain position goes into the acceptor
         * store, which the commit path syncs anyway */
        acceptor_info info;
        acceptor_get_info(n->acceptor, &info);
        int rc = 0;
        if (chain_synced_index(n->chain) > info.mark.index)
            rc = acceptor_mark(n->acceptor, chain_synced_index(n->chain),
                               chain_synced_hash(n->chain));
        if (rc < 0) {
            node_storage_failed(n, "acceptor compaction", rc);
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
        node_storage_failed(n, "chain fdatasync", rc);
}

/* The worker finished a chain sync. */
void host_collect_chain_sync(node *n)
{
    int rc;
    if (!worker_take(n->bg, &rc))
        return;
    rc = chain_sync_finish(n->chain, &n->chain_job, rc);
    if (rc < 0)
        node_storage_failed(n, "chain fdatasync", rc);
    else
        n->compact_due = true;
}

/* Shutdown: wait (bounded) for a chain sync in flight and record it. */
void host_drain_chain_sync(node *n)
{
    for (int i = 0; i < 300 && worker_busy(n->bg); i++) {
        struct pollfd p = { .fd = worker_wake_fd(n->bg), .events = POLLIN };
        if (poll(&p, 1, 100) > 0)
            host_collect_chain_sync(n);
    }
}

int host_block_text(void *ctx, uint64_t index, char **text, uint32_t *len)
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

uint64_t host_chain_head(void *ctx)
{
    return chain_head_index(((node *)ctx)->chain);
}
