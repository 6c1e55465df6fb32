/*
 * host_open.c - the state-machine host's stores opened, reopened after a
 * storage failure, and closed (host.h): the newest valid snapshot and the
 * chain after it, the acceptor store, a replica built from what is
 * durable.  The invariants are host.c's (host.h numbering); this file
 * keeps 3 (nothing applied after a failure until the stores are reopened,
 * the state never going back) and 4 (the acceptor forgets only what a
 * durable chain holds).
 */
#include "host_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The chain blocks the state lacks into it (all of them at open). */
static int host_replay(host *h, char *err, size_t err_len)
{
    uint64_t head = chain_head_index(h->chain);
    for (uint64_t i = kv_applied_index(h->state) + 1; i <= head; i++) {
        chain_block b;
        int rc = chain_read(h->chain, i, &b);
        if (rc < 0) {
            snprintf(err, err_len, "cannot read chain block %" PRIu64 ": %s",
                     i, strerror(-rc));
            return rc;
        }
        px_entry e = { .slot = b.index, .time_ms = b.time_ms, .kind = b.kind,
                       .len = b.len, .data = b.data };
        rc = kv_apply_entry(h->state, &e, NULL, NULL);
        chain_block_free(&b);
        if (rc < 0) {
            snprintf(err, err_len, "cannot apply chain block %" PRIu64 ": %s",
                     i, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* ------------------------------------------------------ open, close */

/* The chain and the state at open: the newest valid snapshot (falling
 * back to the one before it) plus the chain after it, replayed
 * (chain_restore).  With the state kept (host_reopen), the chain
 * continuing the newest snapshot; host_replay brings the state up to it. */
static int open_chain(host *h, const chain_mark *mark,
                      chain_open_report *report, chain_damage *damage)
{
    if (h->state) {
        chain_base base;
        chain_open_opts o = { .durable = mark };
        if (h->has_snap) {
            base.index = h->snap.index;
            memcpy(base.hash, h->snap.head_hash, CHAIN_HASH_BYTES);
            o.snapshot = &base;
        }
        return chain_open_ex(h->data_dir, &o, &h->chain, report, damage);
    }
    chain_restored r;
    chain_restore_report rep;
    int rc = chain_restore(h->data_dir, mark, &r, &rep, damage);
    for (uint32_t i = 0; i < rep.snaps.n_damaged && i < SNAP_MAX_REPORTED;
         i++)
        host_logf(h, "paxosfs: node %u: snapshot damaged: %s offset %"
                  PRIu64 ": %s%s", h->cfg.id, rep.snaps.damaged[i].path,
                  rep.snaps.damaged[i].offset, rep.snaps.damaged[i].reason,
                  rep.snaps.quarantined ? " (renamed *.damaged)" : "");
    if (rc < 0)
        return rc;
    *report = rep.chain;
    h->chain = r.chain;
    h->state = r.state;
    h->snaps = r.snaps;
    h->has_snap = r.has_snap;
    if (r.has_snap) {
        h->snap = r.snap;
        host_logf(h, "paxosfs: node %u: restarted from the snapshot at "
                  "block %" PRIu64 "%s and %" PRIu64 " blocks after it",
                  h->cfg.id, r.snap.index, rep.snaps.fell_back ?
                  " (the newest was damaged)" : "", rep.replayed);
    }
    return 0;
}

/* Open the acceptor store, then the chain held to the position the store
 * recorded as durable; decide whether the acceptor state may be
 * incomplete. */
static int open_storage(host *h, char *why, char *err, size_t err_len)
{
    uint32_t id = h->cfg.id;
    acceptor_open_report arep;
    acceptor_state ast;
    int rc = acceptor_open_salvage(h->data_dir, &h->acceptor, &ast, &arep);
    if (rc < 0) {
        snprintf(err, err_len, "cannot open the acceptor store in %s: %s",
                 h->data_dir, strerror(-rc));
        return rc;
    }
    if (h->cfg.acceptor_log_bytes)
        acceptor_set_log_bytes(h->acceptor, h->cfg.acceptor_log_bytes);
    h->opened.acceptor_created = arep.created;
    h->opened.acceptor_torn = arep.torn_cut;
    h->opened.acceptor_torn_offset = arep.torn_offset;
    h->opened.acceptor_lost = arep.lost;
    if (arep.torn_cut)
        host_logf(h, "paxosfs: node %u: torn last write in %s: cut %" PRIu64
                  " bytes at offset %" PRIu64 " (never acknowledged)", id,
                  arep.torn_path, arep.torn_bytes, arep.torn_offset);
    if (arep.created) {
        /* until the chain says whether there was state to lose: a crash
         * right here must not leave an empty store that looks fresh */
        rc = acceptor_put_recovery(h->acceptor, true);
        if (rc == 0)
            rc = acceptor_sync(h->acceptor);
        if (rc < 0) {
            snprintf(err, err_len, "cannot write the acceptor store in %s: "
                     "%s", h->data_dir, strerror(-rc));
            return rc;
        }
    }
    acceptor_info info;
    acceptor_get_info(h->acceptor, &info);

    chain_open_report report;
    chain_damage damage;
    rc = open_chain(h, &info.mark, &report, &damage);
    h->opened.chain_damaged = rc == -EBADMSG;
    if (rc == -EBADMSG) {
        h->opened.chain_damage = damage;
        snprintf(err, err_len, "chain damaged: %s offset %" PRIu64 " block %"
                 PRIu64 ": %s; refusing to serve (run paxosctl verify %s)",
                 damage.path, damage.offset, damage.index, damage.reason,
                 h->data_dir);
        return rc;
    }
    if (rc < 0) {
        snprintf(err, err_len, "cannot open the chain in %s: %s", h->data_dir,
                 strerror(-rc));
        return rc;
    }
    if (h->cfg.chain_segment_bytes)
        chain_set_segment_bytes(h->chain, h->cfg.chain_segment_bytes);
    if (report.torn_tail_cut) {
        h->opened.chain_torn = true;
        h->opened.chain_torn_offset = report.torn_offset;
        snprintf(h->opened.chain_torn_path, sizeof h->opened.chain_torn_path,
                 "%s", report.torn_path);
    }
    if (report.torn_tail_cut)
        host_logf(h, "paxosfs: node %u: torn tail in %s: cut %" PRIu64
                  " bytes at offset %" PRIu64 " back to block %" PRIu64, id,
                  report.torn_path, report.torn_bytes, report.torn_offset,
                  chain_head_index(h->chain));

    uint64_t head = chain_head_index(h->chain);
    why[0] = '\0';
    if (arep.lost)
        snprintf(why, HOST_WHY_BYTES, "acceptor store damaged: %s offset %"
                 PRIu64 ": %s (kept as %s)", arep.damage.path,
                 arep.damage.offset, arep.damage.reason, arep.kept_path);
    else if (arep.created && head > 0)
        snprintf(why, HOST_WHY_BYTES, "acceptor store missing beside a chain "
                 "of %" PRIu64 " blocks", head);
    else if (info.recovering && !arep.created)
        snprintf(why, HOST_WHY_BYTES, "lost acceptor state not yet recovered "
                 "when the node last stopped");
    if (arep.created && head == 0)
        rc = acceptor_put_recovery(h->acceptor, false);   /* a new node */
    else if (why[0])
        rc = acceptor_put_recovery(h->acceptor, true);
    if (rc < 0) {
        snprintf(err, err_len, "cannot write the acceptor store in %s: %s",
                 h->data_dir, strerror(-rc));
        return rc;
    }
    (void)ast;
    return 0;
}

/* The configuration in force at the chain head: the last CONFIG block
 * after the snapshot, else the snapshot's (host_config_found). */
static void find_config(host *h)
{
    h->has_config = false;
    h->config_ctx_len = 0;
    uint64_t base = chain_base_index(h->chain);
    for (uint64_t i = chain_head_index(h->chain); i > base; i--) {
        chain_block b;
        if (chain_read(h->chain, i, &b) < 0)
            break;   /* verified at open: a read failing now is for later */
        if (b.kind == PX_ENTRY_CONFIG) {
            const uint8_t *ctx = NULL;
            uint32_t len = 0;
            if (px_config_decode(b.data, b.len, &h->config, &ctx, &len) == 0) {
                h->has_config = true;
                h->config_index = i;
                h->config_in_snapshot = false;
                h->config_ctx_len = len;
                if (len)
                    memcpy(h->config_ctx, ctx, len);
            }
            chain_block_free(&b);
            return;
        }
        chain_block_free(&b);
    }
    const uint8_t *ctx = NULL;
    uint32_t len = 0;
    if (h->has_snap && px_config_decode(h->snap.membership,
                                        h->snap.membership_len, &h->config,
                                        &ctx, &len) == 0) {
        h->has_config = true;
        h->config_index = h->snap.index;
        h->config_in_snapshot = true;
        h->config_ctx_len = len;
        if (len)
            memcpy(h->config_ctx, ctx, len);
    }
}

bool host_config_found(const host *h, px_members *m, const uint8_t **ctx,
                       uint32_t *ctx_len, uint64_t *index, bool *in_snapshot)
{
    if (!h->has_config)
        return false;
    *index = h->config_index;
    *in_snapshot = h->config_in_snapshot;
    *m = h->config;
    *ctx = h->config_ctx_len ? h->config_ctx : NULL;
    *ctx_len = h->config_ctx_len;
    return true;
}

/* A replica from the durable state: the acceptor store's promise and the
 * accepted values above the chain head, at the chain head (host_open,
 * and host_reopen after a storage failure).  0 or -errno with err. */
static int host_new_replica(host *h, bool recovering, uint64_t seed,
                            char *err, size_t err_len)
{
    uint64_t head = chain_head_index(h->chain);
    acceptor_state ast;
    acceptor_get_state(h->acceptor, &ast);
    uint32_t first = 0;
    while (first < ast.n_accepts && ast.accepts[first].slot <= head)
        first++;
    px_restore restore = {
        .promise = ast.promise,
        .applied_index = head,
        .n_accepts = ast.n_accepts - first,
        .accepts = ast.accepts + first,
        .recovering = recovering,
    };
    find_config(h);   /* the configuration in force, not the options' */
    if (h->has_config)
        restore.members = h->config;
    px_options opt = h->cfg.px;
    opt.seed = seed;
    int rc = px_create(&opt, &restore, &h->px);
    if (rc < 0) {
        h->px = NULL;
        snprintf(err, err_len, "cannot create the replica: %s", strerror(-rc));
        return rc;
    }
    px_set_chain_head(h->px, head, chain_head_hash(h->chain));
    /* below the chain's base a lagging peer gets a snapshot (0: the chain
     * holds every block, so catch-up always comes from it) */
    px_set_chain_base(h->px, chain_base_index(h->chain));
    return 0;
}

int host_open(const host_config *cfg, const host_edges *edges, host **out,
              char *why, char *err, size_t err_len)
{
    *out = NULL;
    why[0] = '\0';
    host *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    h->cfg = *cfg;
    h->cfg.damage_out = NULL;   /* this call's only (below) */
    h->e = *edges;
    h->data_dir = strdup(cfg->data_dir);
    outbox_init(&h->held, cfg->max_held_msgs ? cfg->max_held_msgs
                                             : HOST_MAX_HELD_MSGS);
    int rc;
    if (!h->data_dir) {
        rc = -ENOMEM;
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    h->cfg.data_dir = h->data_dir;
    rc = open_storage(h, why, err, err_len);
    if (rc == -EBADMSG && h->opened.chain_damaged && cfg->damage_out)
        *cfg->damage_out = h->opened.chain_damage;
    if (rc < 0)
        goto fail;
    rc = host_replay(h, err, err_len);   /* restore replayed: nothing */
    if (rc < 0)
        goto fail;
    kv_set_changed(h->state, host_on_changed, h);   /* replay told nobody */

    rc = host_new_replica(h, why[0] != '\0', cfg->px.seed, err, err_len);
    if (rc < 0)
        goto fail;
    h->last_chain_sync_ms = host_now(h);
    *out = h;
    return 0;

fail:
    host_close(h, false);
    return rc < 0 ? rc : -EIO;
}

int host_start(host *h)
{
    int rc;
    if (h->cfg.driven) {
        rc = syncer_create_manual(h->acceptor, h->e.sync_runs, h->e.arg,
                                  HOST_SYNC_ACCEPTOR, &h->sync);
        if (rc == 0)
            rc = worker_create_manual(h->e.sync_runs, h->e.arg,
                                      HOST_SYNC_CHAIN, &h->bg);
        return rc;
    }
    rc = syncer_create(h->acceptor, &h->sync);
    if (rc < 0) {
        host_logf(h, "paxosfs: cannot start the sync thread: %s",
                  strerror(-rc));
        return rc;
    }
    rc = worker_create(&h->bg);
    if (rc < 0)
        host_logf(h, "paxosfs: cannot start the chain sync thread: %s",
                  strerror(-rc));
    return rc;
}

/* The chain on disk must be the one the state was built from: a prefix
 * of it (the tail a failed disk lost is learned again) or an extension
 * of it (blocks appended whose state was not applied). */
static int reopen_check_chain(host *h, chain *old, uint64_t old_head,
                              const uint8_t old_hash[CHAIN_HASH_BYTES],
                              char *err, size_t err_len)
{
    uint64_t head = chain_head_index(h->chain);
    uint8_t ours[CHAIN_HASH_BYTES], theirs[CHAIN_HASH_BYTES];
    uint64_t at = head < old_head ? head : old_head;
    if (chain_hash_at(h->chain, at, ours) < 0)
        return 0;
    if (at == old_head)
        memcpy(theirs, old_hash, CHAIN_HASH_BYTES);
    else if (chain_hash_at(old, at, theirs) < 0)
        return 0;   /* the old copy is unreadable: the mark was checked */
    if (memcmp(ours, theirs, CHAIN_HASH_BYTES) == 0)
        return 0;
    snprintf(err, err_len, "the chain in %s differs at block %" PRIu64
             " from the one this node applied (another disk?); restart "
             "the node", h->data_dir, at);
    return -EBADMSG;
}

int host_reopen(host *h, bool recovering, uint64_t seed, char *why,
                char *err, size_t err_len)
{
    why[0] = '\0';
    host_drain_chain_sync(h);
    if (worker_busy(h->bg)) {
        snprintf(err, err_len, "a chain fdatasync that does not return");
        return -EBUSY;
    }
    int rc = chain_settle_dir(h->data_dir);
    if (rc < 0) {
        snprintf(err, err_len, "settling the chain and acceptor files");
        return rc;
    }
    chain *old_chain = h->chain;
    acceptor_store *old_acc = h->acceptor;
    px_replica *old_px = h->px;
    host_open_report old_opened = h->opened;
    kv *old_state = h->state;
    bool old_has_snap = h->has_snap;
    if (h->discard) {
        /* host_discard_state: an empty state, no snapshot */
        rc = snapstore_rescan(h->snaps);
        if (rc < 0) {
            snprintf(err, err_len, "listing the snapshots again: %s",
                     strerror(-rc));
            return rc;
        }
        h->state = kv_create();
        if (!h->state) {
            h->state = old_state;
            snprintf(err, err_len, "out of memory");
            return -ENOMEM;
        }
        h->has_snap = false;
    }
    uint64_t old_head = chain_head_index(old_chain);
    uint8_t old_hash[CHAIN_HASH_BYTES];
    memcpy(old_hash, chain_head_hash(old_chain), CHAIN_HASH_BYTES);
    h->chain = NULL;
    h->acceptor = NULL;
    h->px = NULL;
    memset(&h->opened, 0, sizeof h->opened);

    rc = open_storage(h, why, err, err_len);
    if (rc == 0 && !h->discard)
        rc = reopen_check_chain(h, old_chain, old_head, old_hash, err,
                                err_len);
    if (rc == 0)
        rc = host_replay(h, err, err_len);
    if (rc == 0)
        rc = host_new_replica(h, recovering || why[0] != '\0', seed, err,
                              err_len);
    if (rc == 0) {
        rc = syncer_reset(h->sync, h->acceptor);
        if (rc < 0) {
            snprintf(err, err_len, "cannot restart the sync thread: %s",
                     strerror(-rc));
            (void)syncer_reset(h->sync, old_acc);   /* keep it off the new */
        }
    }
    if (rc < 0) {
        /* the suspended stores stay; what was found damaged is told
         * (host_get_open_report) */
        bool damaged = h->opened.chain_damaged;
        chain_damage dmg = h->opened.chain_damage;
        if (h->px)
            px_destroy(h->px);
        if (h->acceptor)
            acceptor_close(h->acceptor);
        if (h->chain)
            chain_close(h->chain);
        h->chain = old_chain;
        h->acceptor = old_acc;
        h->px = old_px;
        h->opened = old_opened;
        h->opened.chain_damaged = damaged;
        h->opened.chain_damage = dmg;
        if (h->state != old_state) {
            kv_destroy(h->state);
            h->state = old_state;
            h->has_snap = old_has_snap;
        }
        return rc;
    }
    if (h->state != old_state) {
        kv_set_changed(h->state, host_on_changed, h);
        kv_destroy(old_state);
        memset(&h->snap, 0, sizeof h->snap);
        h->discard = false;
    }
    px_destroy(old_px);
    acceptor_close(old_acc);
    chain_close(old_chain);

    /* nothing held waits for the old replica's persists any more */
    uint64_t dropped = h->held.dropped, superseded = h->held.superseded;
    outbox_free(&h->held);
    outbox_init(&h->held, h->cfg.max_held_msgs ? h->cfg.max_held_msgs
                                               : HOST_MAX_HELD_MSGS);
    h->held.dropped = dropped;
    h->held.superseded = superseded;
    h->durable_persist_id = h->last_persist_issued = 0;
    h->last_promise_issued = 0;
    h->compact_due = false;
    h->last_chain_sync_ms = host_now(h);
    h->fatal = 0;
    uint64_t head = chain_head_index(h->chain);
    if (head < kv_applied_index(h->state))
        host_logf(h, "paxosfs: node %u: the chain on disk ends at block %"
                  PRIu64 ", %" PRIu64 " blocks short of the state (never "
                  "synced); they are appended again as the leader sends "
                  "them", h->cfg.id, head, kv_applied_index(h->state) - head);
    return 0;
}

void host_discard_state(host *h)
{
    h->discard = true;
}

void host_close(host *h, bool clean)
{
    if (!h)
        return;
    syncer_destroy(h->sync);
    h->sync = NULL;
    worker_destroy(h->bg);   /* waits for a job drain gave up on */
    h->bg = NULL;
    outbox_free(&h->held);
    if (clean && h->chain && !h->fatal) {
        int rc = chain_sync(h->chain);
        if (rc < 0) {
            host_logf(h, "paxosfs: final chain fdatasync failed: %s",
                      strerror(-rc));
        } else if (h->acceptor) {
            /* the durable chain position, durably (a stop is clean) */
            acceptor_info info;
            acceptor_get_info(h->acceptor, &info);
            if (chain_synced_index(h->chain) > info.mark.index)
                rc = acceptor_mark(h->acceptor, chain_synced_index(h->chain),
                                   chain_synced_hash(h->chain));
            if (rc == 0)
                rc = acceptor_sync(h->acceptor);
            if (rc < 0)
                host_logf(h, "paxosfs: final acceptor store write failed: "
                          "%s", strerror(-rc));
        }
    }
    if (h->px)
        px_destroy(h->px);
    if (h->state)
        kv_destroy(h->state);
    snapstore_close(h->snaps);
    if (h->acceptor)
        acceptor_close(h->acceptor);
    if (h->chain)
        chain_close(h->chain);
    free(h->data_dir);
    free(h);
}

