/*
 * host.c - the state-machine host (host.h): its stores opened and closed,
 * the replica stepped and its output carried out, committed entries into
 * the hash chain and then the key-value state, blocks of the chain for
 * peers that lag behind what the replica retains, and the chain made
 * durable in the background.  Group commit and the rule for what may
 * leave are in commit.c; opening, reopening and closing the stores in
 * host_open.c.
 *
 * Invariants (host.h numbering):
 *   2. Committed entries are applied in slot order, each once: chain block
 *      first (it fixes the hash), then the key-value state.
 *   3. After a storage failure nothing more is applied, and the replica is
 *      suspended, until the stores are reopened (host_reopen); the state
 *      never goes back: blocks a failed disk lost from the chain are
 *      appended again when they come again, without being applied twice.
 *   4. The acceptor store forgets accepted values only up to a chain
 *      position that is durable (chain_sync_finish returned), and that
 *      position is recorded in the store (acceptor_mark) so that a chain
 *      found shorter later was cut.
 *   5. The wall-clock stamp never goes back on this host.
 */
#include "host_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- edges */

void host_logf(host *h, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (h->e.log)
        h->e.log(h->e.arg, line);
    else
        fprintf(stderr, "%s\n", line);
}

uint64_t host_now(host *h)
{
    return h->e.now_ms(h->e.arg);
}

/* Invariant 5. */
static uint64_t host_wall(host *h)
{
    uint64_t ms = h->e.wall_ms ? h->e.wall_ms(h->e.arg) : 0;
    if (ms < h->last_wall_ms)
        ms = h->last_wall_ms;
    h->last_wall_ms = ms;
    return ms;
}

/* Invariant 3: nothing more is applied or reported durable, and the
 * replica is suspended (px_suspend): it steps down, neither leads, votes
 * nor campaigns, and puts out nothing until host_reopen replaces it. */
static void host_suspend(host *h, int rc)
{
    h->fatal = rc < 0 ? rc : -EIO;
    if (h->px)
        px_suspend(h->px);
}

void host_fail(host *h, const char *what, int rc)
{
    if (h->fatal)
        return;
    host_suspend(h, rc);
    if (h->e.failed)
        h->e.failed(h->e.arg, what, h->fatal);
}

void host_mark_failed(host *h, int rc)
{
    if (!h->fatal)
        host_suspend(h, rc);
}

int host_failed(const host *h)
{
    return h->fatal;
}

/* ------------------------------------------------------------ apply */

static void on_result(void *arg, uint64_t who, uint64_t seq, int32_t result,
                      uint64_t slot)
{
    host *h = arg;
    if (h->e.result)
        h->e.result(h->e.arg, who, seq, result, slot);
}

void host_on_changed(void *arg, const char *key, size_t key_len,
                     bool removed)
{
    host *h = arg;
    if (h->e.changed)
        h->e.changed(h->e.arg, key, key_len, removed);
}

static void host_apply(host *h, const px_entry *e)
{
    if (h->fatal)
        return;   /* invariant 3 */
    bool appended = false;
    uint8_t hash[CHAIN_HASH_BYTES];
    if (e->slot > chain_head_index(h->chain)) {
        int rc = chain_append(h->chain, e->slot, e->time_ms, e->kind,
                              e->data, e->len, hash);
        if (rc < 0) {
            host_fail(h, "chain append", rc);
            return;
        }
        px_set_chain_head(h->px, e->slot, hash);
        appended = true;
    }
    /* already applied: a restart's replay, or blocks whose chain copy a
     * failed disk lost and that come again after a reopen (the state
     * never goes back) */
    if (e->slot > kv_applied_index(h->state)) {
        int rc = kv_apply_entry(h->state, e, on_result, h);
        if (rc < 0) {
            host_fail(h, "applying a committed entry", rc);
            return;
        }
    }
    /* after the state took it (the node records its digest there) */
    if (appended && h->e.applied)
        h->e.applied(h->e.arg, e, hash);
}

/* A peer lags behind what the replica retains: stream it committed blocks
 * from the chain, which holds every committed entry. */
static void host_send_catchup(host *h, uint32_t peer_id)
{
    uint64_t from = h->e.catchup_from ? h->e.catchup_from(h->e.arg, peer_id)
                                      : 0;
    uint64_t head = chain_head_index(h->chain);
    if (from == 0 || from > head)
        return;
    px_entry entries[HOST_CATCHUP_BLOCKS];
    chain_block blocks[HOST_CATCHUP_BLOCKS];
    uint32_t k = 0;
    uint64_t bytes = 0;
    for (uint64_t i = from; i <= head && k < HOST_CATCHUP_BLOCKS &&
                            bytes < HOST_CATCHUP_BYTES; i++) {
        int rc = chain_read(h->chain, i, &blocks[k]);
        if (rc < 0) {
            if (h->e.damaged)   /* the runtime checks and repairs */
                h->e.damaged(h->e.arg, i, rc);
            break;
        }
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
        px_get_status(h->px, &st);
        px_msg m = { .type = PX_MSG_CATCHUP, .from = h->cfg.id, .to = peer_id,
                     .ballot = st.ballot, .slot = from, .commit = head,
                     .n_entries = k, .entries = entries };
        h->e.send(h->e.arg, &m);   /* vouches for nothing: leaves now */
    }
    for (uint32_t i = 0; i < k; i++)
        chain_block_free(&blocks[i]);
}

/* ------------------------------------------------------------- step */

/* Carry out one output in px.h order (host.h). */
static void handle_output(host *h, const px_output *out)
{
    commit_output(h, out);
    if (out->catchup_to)
        host_send_catchup(h, out->catchup_to);
    if (out->recovered) {
        int rc = acceptor_put_recovery(h->acceptor, false);
        if (rc < 0)
            host_fail(h, "acceptor store write", rc);
    }
    for (uint32_t i = 0; i < out->n_committed; i++)
        host_apply(h, &out->committed[i]);
    if (h->e.output)
        h->e.output(h->e.arg, out);
}

int host_step(host *h, px_event *ev)
{
    px_output out;
    ev->now_ms = host_now(h);
    ev->wall_ms = host_wall(h);
    int rc = px_step(h->px, ev, &out);
    if (rc == -ENOMEM) {
        /* px.h: nothing of this output may be carried out and the replica
         * must not be stepped again: suspend it (it then puts out nothing)
         * and let host_reopen build a new one from the durable state, as
         * after a storage failure (invariant 3) */
        host_fail(h, "a replica step (out of memory)", -ENOMEM);
        return rc;
    }
    if (rc < 0) {
        /* a refused change is the caller's to report (px.h) */
        if (ev->type != PX_EV_CHANGE_MEMBERS && ev->type != PX_EV_TRANSFER)
            host_logf(h, "paxosfs: node %u: replica step failed: %s",
                      h->cfg.id, strerror(-rc));
        return rc;
    }
    handle_output(h, &out);
    return 0;
}

void host_flush(host *h)
{
    commit_flush(h);
}

void host_begin_recovery(host *h)
{
    int rc = acceptor_put_recovery(h->acceptor, true);
    if (rc < 0)
        host_fail(h, "acceptor store write", rc);
    px_begin_recovery(h->px);
}

/* ------------------------------------------------- the chain's sync */

static int run_chain_sync(void *arg)
{
    return chain_sync_run(arg);
}

/* Every chain_sync_interval_ms, make the appended chain blocks durable on
 * the worker thread (milliseconds of fdatasync when many blocks are dirty:
 * the loop goes on serving meanwhile), then let the acceptor store forget
 * what the durable chain holds, once its own sync is idle (compaction may
 * replace the file the sync thread syncs). */
void host_background(host *h, uint64_t now_ms)
{
    if (h->fatal)
        return;
    if (h->compact_due && syncer_idle(h->sync)) {
        h->compact_due = false;
        /* invariant 4: the durable chain position goes into the acceptor
         * store, which the commit path syncs anyway */
        acceptor_info info;
        acceptor_get_info(h->acceptor, &info);
        int rc = 0;
        if (chain_synced_index(h->chain) > info.mark.index)
            rc = acceptor_mark(h->acceptor, chain_synced_index(h->chain),
                               chain_synced_hash(h->chain));
        if (rc < 0) {
            host_fail(h, "acceptor compaction", rc);
            return;
        }
    }
    if (now_ms - h->last_chain_sync_ms < h->cfg.chain_sync_interval_ms ||
        worker_busy(h->bg))
        return;
    h->last_chain_sync_ms = now_ms;
    int rc = chain_sync_start(h->chain, &h->chain_job);
    if (rc == 0)
        rc = worker_submit(h->bg, run_chain_sync, &h->chain_job);
    if (rc < 0)
        host_fail(h, "chain fdatasync", rc);
}

/* The worker finished a chain sync. */
void host_collect_chain(host *h)
{
    int rc;
    if (!worker_take(h->bg, &rc))
        return;
    rc = chain_sync_finish(h->chain, &h->chain_job, rc);
    if (rc < 0)
        host_fail(h, "chain fdatasync", rc);
    else
        h->compact_due = true;
}

void host_drain_chain_sync(host *h)
{
    int fd = worker_wake_fd(h->bg);
    for (int i = 0; fd >= 0 && i < 300 && worker_busy(h->bg); i++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) > 0)
            host_collect_chain(h);
    }
}

void host_drain(host *h)
{
    commit_drain(h);
    host_drain_chain_sync(h);
}

int host_sync_fd(const host *h)
{
    return syncer_wake_fd(h->sync);
}

int host_chain_fd(const host *h)
{
    return worker_wake_fd(h->bg);
}

void host_collect(host *h)
{
    commit_collect(h);
}

void host_sync_done(host *h, int kind)
{
    if (kind == HOST_SYNC_ACCEPTOR) {
        syncer_complete(h->sync);
        commit_collect(h);
    } else if (kind == HOST_SYNC_CHAIN) {
        worker_complete(h->bg);
        host_collect_chain(h);
    }
}

/* ------------------------------------------------------------ reading */

px_replica *host_replica(host *h)
{
    return h->px;
}

chain *host_chain(host *h)
{
    return h->chain;
}

acceptor_store *host_acceptor(host *h)
{
    return h->acceptor;
}

kv *host_state(host *h)
{
    return h->state;
}

void host_get_open_report(const host *h, host_open_report *r)
{
    *r = h->opened;
}

void host_get_stats(host *h, host_stats *st)
{
    *st = (host_stats){
        .acceptor_syncs = h->sync ? syncer_syncs(h->sync) : 0,
        .persist_issued = h->last_persist_issued,
        .persist_durable = h->durable_persist_id,
        .held = h->held.count,
        .held_dropped = h->held.dropped,
        .held_superseded = h->held.superseded,
    };
}

/* ---------------------------------------------------------- snapshots */

snapstore *host_snapstore(host *h)
{
    return h->snaps;
}

const snap_info *host_snapshot(const host *h)
{
    return h->has_snap ? &h->snap : NULL;
}

void host_snapshot_taken(host *h, const snap_info *info)
{
    h->has_snap = true;
    h->snap = *info;
}

bool host_chain_busy(host *h)
{
    return h->bg && worker_busy(h->bg);
}

int host_compact_start(host *h, uint64_t upto, chain_compact_job *job)
{
    memset(job, 0, sizeof *job);
    if (h->fatal)
        return h->fatal;
    if (host_chain_busy(h))
        return -EBUSY;
    int rc = chain_compact_start(h->chain, upto, job);
    if (rc < 0) {
        host_fail(h, "chain compaction", rc);
        return rc;
    }
    px_set_chain_base(h->px, chain_base_index(h->chain));
    return 0;
}

int host_install_snapshot(host *h, kv *state, const snap_info *info)
{
    if (h->fatal || host_chain_busy(h))
        return -EAGAIN;
    if (info->index <= kv_applied_index(h->state)) {
        kv_destroy(state);
        return -EALREADY;
    }
    int rc = chain_reset(h->chain, info->index, info->head_hash);
    if (rc < 0) {
        kv_destroy(state);
        host_fail(h, "replacing the chain after a snapshot", rc);
        return rc;
    }
    rc = snapstore_prune_below(h->snaps, info->index);
    if (rc == 0 && (!h->sync || syncer_idle(h->sync)))
        rc = acceptor_mark(h->acceptor, info->index, info->head_hash);
    if (rc < 0) {
        kv_destroy(state);
        host_fail(h, "recording an installed snapshot", rc);
        return rc;
    }
    kv_destroy(h->state);
    h->state = state;
    kv_set_changed(h->state, host_on_changed, h);
    h->has_snap = true;
    h->snap = *info;
    return 0;
}

void host_installed_event(const snap_info *info, px_event *ev)
{
    *ev = (px_event){ .type = PX_EV_SNAPSHOT_INSTALLED };
    ev->u.snapshot.index = info->index;
    if (px_config_decode(info->membership, info->membership_len,
                         &ev->u.snapshot.members, NULL, NULL) < 0)
        memset(&ev->u.snapshot.members, 0, sizeof ev->u.snapshot.members);
    memcpy(ev->u.snapshot.hash, info->head_hash, CHAIN_HASH_BYTES);
}

int host_render_block(host *h, uint64_t index, char **text, uint32_t *len)
{
    chain_block b;
    int rc = chain_read(h->chain, index, &b);
    if (rc < 0)
        return rc;
    rc = chain_block_render(&b, text, len);
    chain_block_free(&b);
    return rc;
}
