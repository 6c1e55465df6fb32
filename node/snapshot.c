/*
 * snapshot.c - snapshots in the node runtime: snapshots taken by entry
 * count and bytes (or on demand) on a helper thread from a frozen view of
 * the state, checkpoint entries, compaction of the chain, and catch-up of
 * a peer by snapshot (net/snapxfer.c) when it lacks compacted blocks.
 * Restart from the newest valid snapshot plus the chain after it, the
 * snapshot store and the storage side of an install are the host's
 * (host.h "snapshots").
 *
 * Invariants:
 *   1. A snapshot is taken only from a state whose applied index is the
 *      chain head (the head hash is the snapshot's), only one at a time,
 *      and never while a received snapshot waits to be installed; the
 *      loop thread only freezes and thaws (snapstore_take_start/finish),
 *      the writing runs on the snapshot worker.
 *   2. Compaction removes only segments at or below the second newest
 *      snapshot (snapstore_compact_index), never while a chain sync is
 *      out, and the replica learns the chain's new base at once
 *      (px_set_chain_base), so it answers SNAPSHOT_NEEDED for what the
 *      chain no longer holds, never a CATCHUP it cannot fill.
 *   3. A received snapshot is installed only when it is newer than the
 *      state, after the store checked it completely, and once a quorum of
 *      the other members vouch for its head hash at its index (the facts
 *      of catchup.c; the sender counts); install replaces the
 *      chain by one after it (chain_reset), records its head as durable in
 *      the acceptor store, then tells the replica
 *      (PX_EV_SNAPSHOT_INSTALLED), in that order.
 *   3a. While a received snapshot waits to be installed, the replica's
 *      requests for a snapshot start no transfer (it would fetch the same
 *      one again), for up to SNAP_PENDING_REFETCH_MS of waiting for its
 *      vouchers; after that one is fetched again (the newest), since the
 *      others may no longer hold the one waiting.
 *   4. A checkpoint entry (index, digest) is compared with this node's own
 *      digest at that index (kept for the last NODE_DIGESTS applied
 *      entries), and the digest compared is sent to the peers (DIGEST
 *      frames); a mismatch marks the state diverged (integrity.c): no
 *      vote, no reads, logged; once a majority of the members other than
 *      this node report the checkpoint's digest there, it resets
 *      (repair.c invariant 5).  A checkpoint whose index this node cannot
 *      compare (too old, or covered by a snapshot it installed) is
 *      counted, not judged.
 *   5. The lost-sync edge of a repair (repair.c): while a repair's chain
 *      is behind the state it kept, a snapshot newer than the chain head
 *      is fetched; one not newer than the state makes the node reset its
 *      history (repair.c invariant 5) and fetch again from empty.
 *   6. A history below every peer's chain base cannot be compared block
 *      by block, but a vouched snapshot still says something about it:
 *      a key the snapshot holds with version v at or below this node's
 *      applied index A was written at block v and not changed after, so a
 *      node whose history is the cluster's holds it at A with the same
 *      version, identity, time, owner, mode and bytes (every change sets
 *      the version to its block, chain/kv.h).  A key that differs or is
 *      missing makes the node reset (repair.c invariant 5: history moved
 *      to DIR/damaged/<incident>/, an incident record) instead of the
 *      install overwriting it without a word.  A history whose every
 *      difference was overwritten again after A cannot be told from a
 *      lagging node's and is replaced as one.
 */
#include "node_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAP_PENDING_REFETCH_MS 5000

/* ------------------------------------------------- digests, checkpoints */

static void record_digest(node *n, uint64_t index)
{
    struct node_digest *d = &n->digests[index % NODE_DIGESTS];
    d->index = index;
    kv_digest(n->state, d->digest);
}

static void check_checkpoint(node *n, const px_entry *e)
{
    px_checkpoint cp;
    if (px_checkpoint_decode(e->data, e->len, &cp) < 0) {
        n->checkpoints_unchecked++;
        fprintf(stderr, "paxosfs: node %u: malformed checkpoint entry at "
                "block %" PRIu64 " (%u bytes); not compared\n", n->cfg.id,
                e->slot, e->len);
        return;
    }
    const struct node_digest *d = &n->digests[cp.index % NODE_DIGESTS];
    if (d->index != cp.index) {
        n->checkpoints_unchecked++;
        return;
    }
    integrity_send_digest(n, cp.index, d->digest);   /* for the others */
    n->cp_own_index = cp.index;
    memcpy(n->cp_own_digest, d->digest, KV_DIGEST_BYTES);
    n->cp_own_matched = memcmp(d->digest, cp.digest, KV_DIGEST_BYTES) == 0;
    if (n->cp_own_matched) {
        n->checkpoints_ok++;
        integrity_state_judge(n);   /* the checkpoint may be the wrong one */
        return;
    }
    char why[200];
    snprintf(why, sizeof why, "state digest at block %" PRIu64 " differs "
             "from the checkpoint committed at block %" PRIu64, cp.index,
             e->slot);
    integrity_state_diverged(n, why);
    n->cp_bad_index = cp.index;
    memcpy(n->cp_bad_digest, cp.digest, KV_DIGEST_BYTES);
    integrity_state_judge(n);   /* the others may have told us already */
}

/* ------------------------------------------------------------- taking */

static int run_take(void *arg)
{
    return snapstore_take_run(arg);
}

static int run_compact(void *arg)
{
    return chain_compact_run(arg);
}

static int snap_start_take(node *n, const char *why)
{
    snapstore *snaps = host_snapstore(n->host);
    const snap_info *last = host_snapshot(n->host);
    if (!snaps || !n->snap_bg || n->fatal)
        return -EIO;
    if (n->take || n->compacting || n->snap_pending)
        return -EBUSY;
    uint64_t index = kv_applied_index(n->state);
    if (index == 0 || chain_head_index(n->chain) != index)
        return -EAGAIN;   /* invariant 1 */
    if (last && last->index == index && !n->snap_retake)
        return -EALREADY;
    px_status st;
    px_get_status(n->px, &st);
    uint8_t members[SNAP_MAX_MEMBERSHIP];
    int mlen = members_snapshot_blob(n, &st.members, members, sizeof members);
    if (mlen < 0)
        mlen = 0;
    int rc = snapstore_take_start(snaps, n->state,
                                  chain_head_hash(n->chain), members,
                                  (uint32_t)mlen, &n->take);
    if (rc < 0) {
        n->take = NULL;
        return rc;
    }
    rc = worker_submit(n->snap_bg, run_take, n->take);
    if (rc < 0) {
        snapstore_take_finish(snaps, n->state, n->take, rc, NULL);
        n->take = NULL;
        return rc;
    }
    n->take_index = index;
    n->take_started_ms = node_now_ms();
    n->snap_entries = n->snap_bytes = 0;
    fprintf(stderr, "paxosfs: node %u: snapshot at block %" PRIu64 " started "
            "(%s)\n", n->cfg.id, index, why);
    return 0;
}

int snapnode_take_now(node *n, uint64_t *index)
{
    int rc = snap_start_take(n, "asked for");
    const snap_info *last = host_snapshot(n->host);
    if (rc == -EALREADY || rc == -EBUSY || rc == 0) {
        *index = rc == -EALREADY && last ? last->index
                 : n->take ? n->take_index : kv_applied_index(n->state);
        return rc == -EBUSY && !n->take ? -EBUSY : 0;
    }
    return rc;
}

/* repair.c: the newest snapshot was found damaged and renamed aside:
 * a new one of the state, also at the index it had. */
int snapnode_retake(node *n)
{
    n->snap_retake = true;
    int rc = snap_start_take(n, "the newest was found damaged");
    n->snap_retake = false;
    return rc;
}

static void take_done(node *n, int rc)
{
    snap_info info;
    uint64_t took = node_now_ms() - n->take_started_ms;
    rc = snapstore_take_finish(host_snapstore(n->host), n->state, n->take,
                               rc, &info);
    n->take = NULL;
    if (rc < 0) {
        n->snaps_failed++;
        fprintf(stderr, "paxosfs: node %u: snapshot at block %" PRIu64
                " failed: %s\n", n->cfg.id, n->take_index, strerror(-rc));
        return;
    }
    host_snapshot_taken(n->host, &info);
    n->snaps_taken++;
    n->last_take_ms = took;
    fprintf(stderr, "paxosfs: node %u: snapshot at block %" PRIu64 ": %"
            PRIu64 " keys, %" PRIu64 " bytes (%" PRIu64 " raw) in %" PRIu64
            " ms\n", n->cfg.id, info.index, info.keys, info.file_bytes,
            info.raw_bytes, took);
    /* the leader has every replica compare its digest at this index */
    if (px_role(n->px) == PX_LEADER) {
        px_event ev = { .type = PX_EV_CHECKPOINT };
        ev.u.checkpoint.index = info.index;
        memcpy(ev.u.checkpoint.digest, info.digest, KV_DIGEST_BYTES);
        node_step(n, &ev);
    }
    n->compact_wanted = !n->cfg.no_compact;
}

static void compact_maybe(node *n)
{
    if (!n->compact_wanted || n->compacting || n->take ||
        host_chain_busy(n->host) || worker_busy(n->snap_bg) || n->fatal)
        return;
    n->compact_wanted = false;
    uint64_t upto = snapstore_compact_index(host_snapstore(n->host));
    if (upto <= chain_base_index(n->chain))
        return;
    /* invariant 2: the replica learns the base in the same call */
    int rc = host_compact_start(n->host, upto, &n->compact_job);
    if (rc < 0)
        return;   /* -EBUSY: not while a chain sync is out (not here) */
    if (n->compact_job.n == 0) {
        free(n->compact_job.firsts);
        memset(&n->compact_job, 0, sizeof n->compact_job);
        return;
    }
    rc = worker_submit(n->snap_bg, run_compact, &n->compact_job);
    if (rc < 0) {
        chain_compact_run(&n->compact_job);   /* inline, rarely */
        free(n->compact_job.firsts);
        memset(&n->compact_job, 0, sizeof n->compact_job);
        return;
    }
    n->compacting = true;
}

/* --------------------------------------------------------- installing */

/* Invariant 3: a quorum of the other members (the sender among them)
 * hold the snapshot's head hash at its index, as for blocks installed
 * from a CATCHUP (catchup.c); until they said so, ask them (at most every
 * 100 ms). */
static bool vouched(node *n, const snap_info *info)
{
    uint32_t need = integrity_quorum(n) > 0 ? integrity_quorum(n) - 1 : 0;
    if (catchup_vouchers(n, info->index, info->head_hash) >= need)
        return true;
    uint64_t now = node_now_ms();
    if (!n->snap_pending_ms)
        n->snap_pending_ms = now;
    else if (now - n->snap_pending_ms >= 5000 && !n->snap_pending_logged) {
        n->snap_pending_logged = true;
        fprintf(stderr, "paxosfs: node %u: the snapshot at block %" PRIu64
                " waits for a majority to vouch for its head hash\n",
                n->cfg.id, info->index);
    }
    if (n->net && now - n->snap_query_ms >= 100) {
        uint8_t none[CHAIN_HASH_BYTES] = {0};
        integrity_head_frame(n, 0, NODE_HEAD_QUERY | info->index, none);
        n->snap_query_ms = now;
    }
    return false;
}

/* Invariant 6: the first key of the snapshot whose value this node's
 * state at its applied index should hold and does not. */
struct history_cmp {
    const kv *ours;
    uint64_t upto;            /* this node's applied index */
    uint64_t theirs_version, ours_version;
    bool ours_missing;
    char key[160];
};

static int history_key(void *arg, const char *key, size_t key_len,
                       const kv_value *v)
{
    struct history_cmp *c = arg;
    if (v->version > c->upto)
        return 0;   /* changed after this node's last entry: no word on it */
    const kv_value *o = kv_get(c->ours, key, key_len);
    if (o && o->version == v->version && o->ident == v->ident &&
        o->len == v->len && o->mtime_ms == v->mtime_ms &&
        o->mode == v->mode && o->uid == v->uid && o->gid == v->gid &&
        memcmp(o->data, v->data, v->len) == 0)
        return 0;
    c->theirs_version = v->version;
    c->ours_version = o ? o->version : 0;
    c->ours_missing = !o;
    size_t n = key_len < sizeof c->key - 1 ? key_len : sizeof c->key - 1;
    memcpy(c->key, key, n);
    c->key[n] = '\0';
    return 1;
}

/* Invariant 6: true when the vouched snapshot shows that this node's
 * history is not the cluster's; then the node resets instead (its history
 * kept as evidence) and the snapshot is dropped (fetched again once the
 * node is empty). */
static bool history_conflicts(node *n, const kv *snap, const snap_info *info)
{
    uint64_t upto = kv_applied_index(n->state);
    if (upto == 0 || upto >= info->index)
        return false;
    struct history_cmp c = { .ours = n->state, .upto = upto };
    if (kv_scan(snap, "", 0, history_key, &c) == 0)
        return false;
    chain_damage d;
    memset(&d, 0, sizeof d);
    snprintf(d.path, sizeof d.path, "%s/chain", n->data_dir);
    d.index = c.ours_missing ? c.theirs_version : c.ours_version;
    char why[700];
    if (c.ours_missing)
        snprintf(why, sizeof why, "key '%s' is missing from this node's "
                 "state at block %" PRIu64 ", but the peers' snapshot at "
                 "block %" PRIu64 " holds it as written at block %" PRIu64
                 " and not changed since: this history is not the cluster's "
                 "(it lies below every peer's chain base, no block could be "
                 "compared)", c.key, upto, info->index, c.theirs_version);
    else
        snprintf(why, sizeof why, "key '%s' holds another value in this "
                 "node's state at block %" PRIu64 " (written at block %"
                 PRIu64 ") than in the peers' snapshot at block %" PRIu64
                 " (written at block %" PRIu64 " and not changed since): "
                 "this history is not the cluster's (it lies below every "
                 "peer's chain base, no block could be compared)", c.key,
                 upto, c.ours_version, info->index, c.theirs_version);
    snprintf(d.reason, sizeof d.reason, "key '%.40s' differs from the "
             "snapshot at block %" PRIu64 " (history below the peers')",
             c.key, info->index);
    char who[200];
    uint32_t count = catchup_vouchers_named(n, info->index, info->head_hash,
                                            who, sizeof who);
    char by[300];
    snprintf(by, sizeof by, "%s (%u of %u members) hold the snapshot's block %"
             PRIu64, who, count, n->cfg.n_peers, info->index);
    if (!repair_reset(n, REPAIR_DIVERGED, &d, info->index, info->head_hash,
                      by))
        return false;   /* no reset now: install as a lagging node's */
    fprintf(stderr, "paxosfs: node %u: %s\n", n->cfg.id, why);
    n->snap_history_conflicts++;
    return true;
}

static void install(node *n)
{
    if (n->take || n->compacting || host_chain_busy(n->host) || n->fatal)
        return;   /* invariant 3: wait for the view, the sync, the disk */
    if (!vouched(n, &n->snap_pending_info))
        return;
    /* once per received snapshot: an install that must wait (-EAGAIN)
     * comes back here */
    bool check = !n->snap_pending_checked;
    n->snap_pending_checked = true;
    if (check &&
        history_conflicts(n, n->snap_pending, &n->snap_pending_info)) {
        kv_destroy(n->snap_pending);
        n->snap_pending = NULL;
        n->snap_pending_ms = 0;
        n->snap_pending_logged = false;
        return;
    }
    kv *state = n->snap_pending;
    snap_info info = n->snap_pending_info;
    uint64_t from = kv_applied_index(n->state);
    int rc = host_install_snapshot(n->host, state, &info);
    if (rc == -EAGAIN)
        return;   /* still ours: next turn */
    n->snap_pending = NULL;
    n->snap_pending_ms = 0;
    n->snap_pending_logged = false;
    n->state = host_state(n->host);
    if (rc < 0)
        return;   /* not newer (dropped), or storage failed (told) */
    n->snaps_installed++;
    n->snap_entries = n->snap_bytes = 0;
    fprintf(stderr, "paxosfs: node %u: installed the snapshot at block %"
            PRIu64 " (was at %" PRIu64 ")\n", n->cfg.id, info.index, from);
    px_event ev;
    host_installed_event(&info, &ev);
    node_step(n, &ev);   /* invariant 3: the replica last */
    members_installed(n, &info);
    node_serve_reads(n);
}

/* ------------------------------------------------------------- edges */

static int xfer_send(void *arg, uint32_t peer, const uint8_t *frame,
                     size_t len)
{
    node *n = arg;
    return n->net ? transport_send_frame(n->net, peer, frame, len) : -ENOTCONN;
}

static void on_snap_frame(void *arg, uint32_t from, const wire_snapshot *chunk,
                          const wire_snapshot_ask *ask)
{
    node *n = arg;
    uint64_t now = node_now_ms();
    if (ask) {
        if (!integrity_serves(n)) {
            n->xfer_refused++;   /* integrity.c invariant 1: no serving */
            return;
        }
        snapxfer_on_ask(n->xfer, from, ask, now);
        return;
    }
    if (snapxfer_on_chunk(n->xfer, from, chunk, now) == 1) {
        kv *state = NULL;
        snap_info info;
        if (snapxfer_take(n->xfer, &state, &info) == 0 &&
            repair_needs_reset_for(n, info.index)) {
            /* invariant 5: the lost-sync edge of a repair */
            kv_destroy(state);
            chain_damage d;
            memset(&d, 0, sizeof d);
            snprintf(d.path, sizeof d.path, "%s/chain", n->data_dir);
            d.index = chain_head_index(n->chain) + 1;
            snprintf(d.reason, sizeof d.reason, "blocks from here were "
                     "compacted by node %u; its snapshot (block %" PRIu64
                     ") is not newer than the state", from, info.index);
            repair_reset(n, REPAIR_BEHIND, &d, 0, NULL, "");
        } else if (state) {
            kv_destroy(n->snap_pending);
            n->snap_pending = state;
            n->snap_pending_info = info;
            n->snap_pending_checked = false;
            install(n);
        }
    }
}

int snapnode_start(node *n, char *err, size_t err_len)
{
    int rc;
    snapxfer_config xc = { .self_id = n->cfg.id };
    snapxfer_edges xe = { .arg = n, .send = xfer_send };
    rc = snapxfer_new(&xc, &xe, host_snapstore(n->host), &n->xfer);
    if (rc < 0) {
        snprintf(err, err_len, "out of memory");
        return rc;
    }
    if (n->net)
        transport_set_snapshot_handler(n->net, on_snap_frame, n);
    rc = repair_start(n);
    if (rc < 0)
        snprintf(err, err_len, "out of memory");
    return rc;
}

void snapnode_stop(node *n)
{
    repair_stop(n);   /* its check reads the snapshot files */
    if (n->snap_bg) {
        worker_destroy(n->snap_bg);     /* waits for a running job */
        n->snap_bg = NULL;
    }
    if (n->take) {
        snapstore_take_finish(host_snapstore(n->host), n->state, n->take,
                              -ECANCELED, NULL);
        n->take = NULL;
    }
    if (n->compacting) {
        free(n->compact_job.firsts);
        memset(&n->compact_job, 0, sizeof n->compact_job);
        n->compacting = false;
    }
    snapxfer_free(n->xfer);
    n->xfer = NULL;
    kv_destroy(n->snap_pending);
    n->snap_pending = NULL;
}

/* ---------------------------------------------------------- the hooks */

void snapnode_applied(node *n, const px_entry *e)
{
    record_digest(n, e->slot);
    if (e->kind == PX_ENTRY_CHECKPOINT)
        check_checkpoint(n, e);
    n->snap_entries++;
    n->snap_bytes += e->len;
}

void snapnode_output(node *n, const px_output *out)
{
    /* a snapshot received and waiting to be installed (for its vouchers,
     * the disk) answers the replica's request: the replica asks again
     * until the install, and a new transfer then would fetch the same
     * snapshot a second time (the sender reading and sending it again,
     * this node checking and building a second copy of the state).  One
     * that waited 5 s for its vouchers may be one the others no longer
     * hold (they moved on to newer snapshots): then fetch again, the
     * newest, which replaces it when it arrives (invariant 3a). */
    if (!out->snapshot_from || !n->xfer)
        return;
    uint64_t now = node_now_ms();
    if (n->snap_pending && (!n->snap_pending_ms ||
                            now - n->snap_pending_ms < SNAP_PENDING_REFETCH_MS))
        return;
    /* a repair's chain is behind its state: a snapshot past the chain
     * head is taken too (invariant 5) */
    uint64_t min = kv_applied_index(n->state);
    if (repair_catching_up(n) && chain_head_index(n->chain) < min)
        min = chain_head_index(n->chain);
    snapxfer_fetch(n->xfer, out->snapshot_from, min, now);
}

void snapnode_turn(node *n, uint64_t now)
{
    int rc;
    if (!n->snap_bg) {
        /* made by the loop, after the stop signals were blocked (open.c
         * node_mount): a thread of its own would inherit the mask */
        rc = worker_create(&n->snap_bg);
        if (rc < 0) {
            n->snap_bg = NULL;
            return;
        }
    }
    if (worker_take(n->snap_bg, &rc)) {
        if (n->take) {
            take_done(n, rc);
        } else if (n->compacting) {
            free(n->compact_job.firsts);
            memset(&n->compact_job, 0, sizeof n->compact_job);
            n->compacting = false;
            if (rc < 0)
                fprintf(stderr, "paxosfs: node %u: removing compacted "
                        "segments: %s (left behind, harmless)\n", n->cfg.id,
                        strerror(-rc));
        }
    }
    if (n->snap_pending)
        install(n);
    compact_maybe(n);
    repair_turn(n, now);
    snapxfer_tick(n->xfer, now);
    bool by_count = n->cfg.snapshot_entries &&
                    n->snap_entries >= n->cfg.snapshot_entries;
    bool by_size = n->cfg.snapshot_bytes &&
                   n->snap_bytes >= n->cfg.snapshot_bytes;
    if ((by_count || by_size) && !n->take && !n->compacting &&
        !n->snap_pending) {
        rc = snap_start_take(n, by_count ? "entries since the last"
                                         : "bytes since the last");
        if (rc < 0 && rc != -EBUSY && rc != -EAGAIN && rc != -EALREADY) {
            n->snaps_failed++;
            n->snap_entries = n->snap_bytes = 0;   /* try again later */
            fprintf(stderr, "paxosfs: node %u: cannot start a snapshot: "
                    "%s\n", n->cfg.id, strerror(-rc));
        }
    }
}

/* .chain/snapshot: the newest snapshot, one field per line. */
int snapnode_text(void *ctx, char **text, size_t *len)
{
    node *n = ctx;
    const snap_info *last = n->host ? host_snapshot(n->host) : NULL;
    if (!last)
        return -ENOENT;
    return snap_info_render(last, text, len);
}

uint64_t snapnode_chain_base(void *ctx)
{
    node *n = ctx;
    return n->chain ? chain_base_index(n->chain) : 0;
}

/* .status: "snapshot": {...} (no braces' leading comma) */
int snapnode_status(node *n, char *buf, size_t cap)
{
    snapxfer_stats xs = { 0 };
    if (n->xfer)
        snapxfer_get_stats(n->xfer, &xs);
    const snap_info *last = n->host ? host_snapshot(n->host) : NULL;
    char hash[2 * CHAIN_HASH_BYTES + 1] = "";
    for (uint32_t i = 0; last && i < CHAIN_HASH_BYTES; i++)
        snprintf(hash + 2 * i, 3, "%02x", last->head_hash[i]);
    return snprintf(buf, cap,
        "\"snapshot\": {\"index\": %" PRIu64 ", \"head_hash\": \"%s\", "
        "\"keys\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"raw_bytes\": %"
        PRIu64 ", \"taking\": %s, \"taken\": %" PRIu64 ", \"failed\": %"
        PRIu64 ", \"last_take_ms\": %" PRIu64 ", \"installed\": %" PRIu64
        ", \"history_conflicts\": %" PRIu64 ", \"entries_since\": %"
        PRIu64 ", \"pending\": %" PRIu64
        ", \"chain_base\": %" PRIu64
        ", \"checkpoints_ok\": %" PRIu64 ", \"checkpoints_unchecked\": %"
        PRIu64 ", \"state_diverged\": %s, "
        "\"receiving\": {\"active\": %s, \"from\": %u, \"index\": %" PRIu64
        ", \"received\": %" PRIu64 ", \"total\": %" PRIu64 ", \"completed\": %"
        PRIu64 ", \"failed\": %" PRIu64 ", \"dropped\": %" PRIu64 "}, "
        "\"sending\": {\"sessions\": %u, \"asks\": %" PRIu64 ", \"refused\": %"
        PRIu64 ", \"bytes\": %" PRIu64 ", \"serve_us\": %" PRIu64
        ", \"serve_us_max\": %" PRIu64 "}}",
        last ? last->index : 0, hash,
        last ? last->keys : 0, last ? last->file_bytes : 0,
        last ? last->raw_bytes : 0, n->take ? "true" : "false",
        n->snaps_taken, n->snaps_failed, n->last_take_ms, n->snaps_installed,
        n->snap_history_conflicts, n->snap_entries, n->snap_pending ? n->snap_pending_info.index : 0,
        n->chain ? chain_base_index(n->chain) : 0,
        n->checkpoints_ok, n->checkpoints_unchecked,
        n->state_diverged ? "true" : "false",
        xs.active ? "true" : "false", xs.source, xs.index, xs.received,
        xs.total, xs.completed, xs.failed, xs.dropped, xs.sessions,
        xs.asks_served, xs.asks_refused + n->xfer_refused, xs.bytes_sent,
        xs.serve_us, xs.serve_us_max);
}
