/*
 * restore.c - owns restart from a backing directory: the newest valid
 * snapshot plus the chain after it (chain_restore), and the read-only
 * end-to-end check of the same (chain_verify_all, paxosctl verify).
 *
 * Order of a restart:
 *   1. the snapshot store loads the newest snapshot that checks out
 *      completely, falling back to the previous one (snapstore.c); with
 *      every snapshot damaged, the chain alone still restores the node if
 *      it starts at block 1 (nothing was compacted yet);
 *   2. the chain is opened continuing that snapshot (chain_open_ex): it
 *      must start at or before the block after the snapshot, hold the
 *      snapshot's head hash at its index, pass every check of
 *      segment.c, and hold the acceptor store's durable mark; a chain
 *      behind the snapshot is restarted after it;
 *   3. the blocks after the snapshot are applied to its state in order.
 *
 * Invariants:
 *   1. The state given out is exactly the state after the chain head:
 *      kv_applied_index(state) == chain head, and the chain's head hash is
 *      the one returned.
 *   2. Verification opens nothing for writing and checks every snapshot
 *      file, not only the one restart would use, and that each valid one
 *      agrees with the chain where the chain holds its index (so a fall
 *      back to it would work).
 *   3. The light verification (chain_verify_light) checks every byte the
 *      full one checks - each snapshot's checksum and recomputed state
 *      digest, streamed; every block's checksums, link and hash; the
 *      snapshot's head hash continuing into the chain - but builds no
 *      state and replays no block, so its memory does not grow with the
 *      store.  What it leaves out is only whether each block's entry
 *      applies, which no change to a stored byte can alter without
 *      failing a hash first.
 */
#include "snap.h"
#include "chain_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void chain_restored_close(chain_restored *r)
{
    if (!r)
        return;
    kv_destroy(r->state);
    chain_close(r->chain);
    snapstore_close(r->snaps);
    memset(r, 0, sizeof *r);
}

static int replay(chain_restored *out, uint64_t from, uint64_t *replayed,
                  chain_damage *damage)
{
    uint64_t head = chain_head_index(out->chain);
    for (uint64_t i = from; i <= head; i++) {
        chain_block b;
        int rc = chain_read(out->chain, i, &b);
        if (rc == -EBADMSG) {
            char why[96];
            snprintf(why, sizeof why, "block %llu changed after it was "
                     "verified", (unsigned long long)i);
            chain_damage_set(damage, "", 0, i, why);
        }
        if (rc)
            return rc;
        px_entry e = { .slot = b.index, .time_ms = b.time_ms, .kind = b.kind,
                       .len = b.len, .data = b.data };
        rc = kv_apply_entry(out->state, &e, NULL, NULL);
        chain_block_free(&b);
        if (rc)
            return rc;
        (*replayed)++;
    }
    return 0;
}

/* How restore() runs: as the owner (writable, state built), or read-only
 * with the state built and every block replayed, or read-only without a
 * state (invariant 3). */
enum restore_mode { RESTORE_OWN, RESTORE_VERIFY, RESTORE_VERIFY_LIGHT };

static int restore(const char *dir, const chain_mark *durable,
                   enum restore_mode mode, chain_restored *out,
                   chain_restore_report *rep, chain_damage *damage)
{
    bool read_only = mode != RESTORE_OWN;
    bool light = mode == RESTORE_VERIFY_LIGHT;
    memset(out, 0, sizeof *out);
    memset(rep, 0, sizeof *rep);
    if (damage)
        memset(damage, 0, sizeof *damage);
    int n = snprintf(out->dir, sizeof out->dir, "%s", dir);
    if (n < 0 || (size_t)n >= sizeof out->dir)
        return -ENAMETOOLONG;
    int rc = snapstore_open(dir, !read_only, &out->snaps);
    if (rc)
        return rc;
    rc = snapstore_load(out->snaps, light ? NULL : &out->state, &out->snap,
                        &rep->snaps);
    if (rc == 0) {
        out->has_snap = true;
    } else if (rc == -ENOENT || rc == -EBADMSG) {
        /* no usable snapshot: the chain alone, if it starts at block 1 */
        int why = rc;
        if (!light && !(out->state = kv_create())) {
            rc = -ENOMEM;
            goto fail;
        }
        if (why == -EBADMSG) {
            chain_open_opts o = { .durable = durable, .read_only = true };
            chain *probe = NULL;
            chain_open_report r2;
            chain_damage d2;
            rc = chain_open_ex(dir, &o, &probe, &r2, &d2);
            chain_close(probe);
            if (rc) {
                if (damage)
                    *damage = rep->snaps.damaged[0];
                rc = -EBADMSG;
                goto fail;
            }
        }
    } else {
        goto fail;
    }
    chain_base base;
    if (out->has_snap) {
        base.index = out->snap.index;
        memcpy(base.hash, out->snap.head_hash, CHAIN_HASH_BYTES);
    }
    chain_open_opts o = { .durable = durable,
                          .snapshot = out->has_snap ? &base : NULL,
                          .read_only = read_only };
    rc = chain_open_ex(dir, &o, &out->chain, &rep->chain, damage);
    if (rc)
        goto fail;
    if (rep->chain.reset && !read_only) {
        /* the chain now starts after the snapshot: older snapshots can no
         * longer be rolled forward */
        rc = snapstore_prune_below(out->snaps, out->snap.index);
        if (rc)
            goto fail;
    }
    if (!light) {
        uint64_t from = kv_applied_index(out->state) + 1;
        rc = replay(out, from, &rep->replayed, damage);
        if (rc)
            goto fail;
    }
    out->index = chain_head_index(out->chain);
    memcpy(out->head_hash, chain_head_hash(out->chain), CHAIN_HASH_BYTES);
    /* invariant 1 */
    if (!light && kv_applied_index(out->state) != out->index) {
        rc = -EIO;
        goto fail;
    }
    return 0;
fail:
    chain_restored_close(out);
    return rc;
}

int chain_restore(const char *dir, const chain_mark *durable,
                  chain_restored *out, chain_restore_report *rep,
                  chain_damage *damage)
{
    chain_restore_report local;
    return restore(dir, durable, RESTORE_OWN, out, rep ? rep : &local,
                   damage);
}

/* Invariant 2: every other snapshot file checks out and agrees with the
 * chain where the chain holds its index. */
static int verify_others(chain_restored *r, chain_restore_report *rep,
                         chain_damage *damage)
{
    int bad = 0;
    for (uint32_t i = 0; i < snapstore_count(r->snaps); i++) {
        uint64_t index = snapstore_index_at(r->snaps, i);
        if (r->has_snap && index == r->snap.index)
            continue;
        char path[700];
        int rc = snapstore_path(r->snaps, index, path, sizeof path);
        if (rc)
            return rc;
        bool known = false;
        for (uint32_t k = 0; k < rep->snaps.n_damaged; k++)
            if (strcmp(rep->snaps.damaged[k].path, path) == 0)
                known = true;
        if (known)
            continue;
        snap_info info;
        chain_damage dmg;
        rc = snapfile_load(path, NULL, NULL, &info, &dmg);
        uint64_t base = chain_base_index(r->chain);
        if (rc == 0 && index < base) {
            /* compaction keeps every block after the previous snapshot:
             * blocks were removed (or the store was not pruned after the
             * chain was reset, snapstore_prune_below) */
            char seg[700], why[256];
            snprintf(seg, sizeof seg, "%s/chain/seg-%020llu.blk", r->dir,
                     (unsigned long long)base + 1);
            snprintf(why, sizeof why, "blocks %llu..%llu missing: the chain "
                     "no longer continues the snapshot at %llu (no fall back)",
                     (unsigned long long)index + 1, (unsigned long long)base,
                     (unsigned long long)index);
            chain_damage_set(&dmg, seg, 0, index + 1, why);
            rc = -EBADMSG;
        }
        if (rc == 0 && index >= base &&
            index <= chain_head_index(r->chain)) {
            uint8_t h[CHAIN_HASH_BYTES];
            rc = chain_hash_at(r->chain, index, h);
            if (rc == 0 && memcmp(h, info.head_hash, CHAIN_HASH_BYTES)) {
                chain_damage_set(&dmg, path, 24, index, "the snapshot's head "
                                 "hash differs from the chain's block at "
                                 "its index");
                rc = -EBADMSG;
            }
        }
        if (rc == -EBADMSG) {
            if (rep->snaps.n_damaged < SNAP_MAX_REPORTED)
                rep->snaps.damaged[rep->snaps.n_damaged++] = dmg;
            if (!bad && damage)
                *damage = dmg;
            bad = 1;
        } else if (rc) {
            return rc;
        }
    }
    return bad ? -EBADMSG : 0;
}

static int verify(const char *dir, const chain_mark *durable,
                  enum restore_mode mode, chain_restored *out,
                  chain_restore_report *rep, chain_damage *damage)
{
    chain_restored local;
    chain_restore_report lrep;
    if (!out)
        out = &local;
    if (!rep)
        rep = &lrep;
    int rc = restore(dir, durable, mode, out, rep, damage);
    if (rc)
        return rc;
    chain_damage first;
    memset(&first, 0, sizeof first);
    rc = verify_others(out, rep, &first);
    if (rc == 0 && rep->snaps.n_damaged) {
        first = rep->snaps.damaged[0];
        rc = -EBADMSG;
    }
    if (rc == -EBADMSG && damage)
        *damage = first;
    if (out == &local || rc)
        chain_restored_close(out);
    return rc;
}

int chain_verify_all(const char *dir, const chain_mark *durable,
                     chain_restored *out, chain_restore_report *rep,
                     chain_damage *damage)
{
    return verify(dir, durable, RESTORE_VERIFY, out, rep, damage);
}

int chain_verify_light(const char *dir, const chain_mark *durable,
                       chain_restored *out, chain_restore_report *rep,
                       chain_damage *damage)
{
    return verify(dir, durable, RESTORE_VERIFY_LIGHT, out, rep, damage);
}
