/*
 * names.c - the names of key files: lookup, unlink and rename, and the
 * check of a name a request carries.
 *
 * Invariants:
 *  1. A lookup waits for a linearizable read point: even a name known
 *     here may have been removed elsewhere a moment ago (fs.h, semantics
 *     3).
 *  2. A file created here and not committed yet is unlinked or renamed on
 *     this mount alone, without an entry; if its first commit is on its
 *     way, the unlink or rename waits for it (it would land under the old
 *     name).
 *  3. RENAME_NOREPLACE is decided by the state machine (COND ABSENT), so
 *     exactly one of two racing mounts wins; whether the target name holds
 *     a committed file (NOREPLACE's early EEXIST, the rename of a file not
 *     committed yet) is read from the state as applied here, as before.
 *  4. What an applied unlink or rename changed reached the inodes before
 *     its answer (fs.h rule B2); only a file created here under the
 *     target name is retired by the answer itself.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fs_check_name(const char *name)
{
    size_t len = strlen(name);
    if (len > KV_MAX_NAME)
        return ENAMETOOLONG;
    if (len == 0)
        return ENOENT;
    if (strcmp(name, FS_RESERVED_CHAIN) == 0 ||
        strcmp(name, FS_RESERVED_STATUS) == 0)
        return EACCES;
    return 0;
}

/* ------------------------------------------------------------- lookup */

static void lookup_then(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    int err = 0;
    fs_inode *in = fs_resolve(f, w->name, &w->view->meta, &err);
    if (in && !fs_key_exists(in, NULL)) {
        fs_release_inode(f, in);
        in = NULL;
        err = ENOENT;
    }
    if (!in) {
        fuse_reply_err(w->req, err);
    } else {
        struct fuse_entry_param e;
        fs_fill_entry(f, in, &e);
        if (fuse_reply_entry(w->req, &e) == 0)
            in->nlookup++;
        else
            fs_release_inode(f, in);
    }
    fs_wait_free(w);
}

void fs_key_lookup(fuse_req_t req, const char *name)
{
    /* even a name known here may have been removed elsewhere a moment
     * ago: only a read at a read point can say what it names (invariant
     * 1); one read, with its metadata, answers the lookup */
    fs_wait *w = fs_wait_named(req, lookup_then, name, NULL);
    if (w)
        fs_wait_read_key(w, w->name, 0);
}

/* ------------------------------------------------------ unlink, rename */

/* The removal was applied: the backend told this mount before the
 * answer, and the inode was orphaned then (fs.h rule B2). */
static void unlink_applied(fs_wait *w, int result)
{
    fs_reply_wait_err(w, result);
}

static void unlink_step(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    size_t len = strlen(w->name);
    fs_inode *in = fs_inode_by_key(f->inodes, w->name, len);
    if (fs_is_pending(in)) {
        if (in->of->inflight) {
            /* its first commit is on its way: unlink what it creates */
            w->then = unlink_step;
            fs_ofile_wait_idle(in->of, w);
            return;
        }
        /* created here, never committed: nothing to remove elsewhere */
        fs_inode_orphan(f->inodes, in);
        fs_release_inode(f, in);
        fs_reply_wait_err(w, 0);
        return;
    }
    uint8_t op[16 + KV_MAX_NAME];
    w->then = unlink_applied;
    fs_wait_submit(w, op, kv_op_encode_del(op, sizeof op, w->name, len));
}

void fs_key_unlink(fuse_req_t req, const char *name)
{
    fs_wait *w = fs_wait_named(req, unlink_step, name, NULL);
    if (w)
        unlink_step(w, 0);
}

/* Give the name `newname` to `src` on this mount (a file not committed
 * yet moves without an entry). */
static void rename_local(fs *f, fs_inode *src, const char *newname)
{
    size_t nlen = strlen(newname);
    fs_inode *tgt = fs_inode_by_key(f->inodes, newname, nlen);
    if (tgt && tgt != src) {
        fs_inode_orphan(f->inodes, tgt);
        fs_release_inode(f, tgt);
    }
    if (tgt != src) {
        fs_inode_orphan(f->inodes, src);
        if (fs_inode_rekey(f->inodes, src, newname, nlen) < 0)
            fs_release_inode(f, src);
    }
}

static void rename_applied(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result == 0) {
        /* a file created here under the target name is replaced; the
         * renamed file's inode, which the pending one kept from its new
         * name when the change was told (fs.h rule B2), follows it now */
        size_t nlen = strlen(w->newname);
        fs_inode *tgt = fs_inode_by_key(f->inodes, w->newname, nlen);
        if (fs_is_pending(tgt)) {
            fs_meta now = tgt->seen;
            fs_inode_orphan(f->inodes, tgt);
            fs_release_inode(f, tgt);
            fs_reconcile(f, w->newname, nlen, &now);
        }
    }
    fs_reply_wait_err(w, result);
}

static void rename_local_applied(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0 && result != -ENOENT) {
        fs_reply_wait_err(w, result);
        return;
    }
    fs_inode *src = fs_inode_by_key(f->inodes, w->name, strlen(w->name));
    if (fs_is_pending(src))
        rename_local(f, src, w->newname);
    fs_reply_wait_err(w, 0);
}

/* A first commit on its way would land under the old name: the inode
 * that must wait for it, or NULL. */
static fs_inode *rename_busy(fs *f, const fs_wait *w)
{
    fs_inode *src = fs_inode_by_key(f->inodes, w->name, strlen(w->name));
    fs_inode *tgt = fs_inode_by_key(f->inodes, w->newname,
                                    strlen(w->newname));
    return fs_is_pending(src) && src->of->inflight ? src
         : fs_is_pending(tgt) && tgt->of->inflight ? tgt : NULL;
}

static void rename_step(fs_wait *w, int result);

/* Rename, knowing from w->view whether the target name holds a committed
 * file (the view is needed only for RENAME_NOREPLACE and for a file not
 * committed yet). */
static void rename_decide(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    fs_inode *busy = rename_busy(f, w);
    if (busy) {
        /* a flush started one while the target was read */
        w->then = rename_step;
        fs_ofile_wait_idle(busy->of, w);
        return;
    }
    size_t len = strlen(w->name), nlen = strlen(w->newname);
    fs_inode *src = fs_inode_by_key(f->inodes, w->name, len);
    fs_inode *tgt = fs_inode_by_key(f->inodes, w->newname, nlen);
    bool noreplace = w->flags & RENAME_NOREPLACE;
    bool target_committed = w->view && w->view->meta.ident;
    if (noreplace && (fs_is_pending(tgt) || target_committed)) {
        fs_reply_wait_err(w, -EEXIST);
        return;
    }
    if (fs_is_pending(src)) {
        if (src == tgt) {
            fs_reply_wait_err(w, 0);
            return;
        }
        if (!target_committed) {
            rename_local(f, src, w->newname);
            fs_reply_wait_err(w, 0);
            return;
        }
        /* the committed file under the target name is replaced */
        uint8_t op[16 + KV_MAX_NAME];
        w->then = rename_local_applied;
        fs_wait_submit(w, op, kv_op_encode_del(op, sizeof op, w->newname, nlen));
        return;
    }
    uint8_t inner[32 + 2 * KV_MAX_NAME], op[64 + 3 * KV_MAX_NAME];
    int64_t n = kv_op_encode_rename(inner, sizeof inner, w->name, len,
                                    w->newname, nlen);
    if (n >= 0 && noreplace)
        n = kv_op_encode_cond(op, sizeof op, KV_COND_ABSENT, w->newname, nlen,
                              0, inner, (size_t)n);
    else if (n >= 0)
        memcpy(op, inner, (size_t)n);
    w->then = rename_applied;
    fs_wait_submit(w, op, n);
}

static void rename_step(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    fs_inode *busy = rename_busy(f, w);
    if (busy) {
        w->then = rename_step;
        fs_ofile_wait_idle(busy->of, w);
        return;
    }
    fs_inode *src = fs_inode_by_key(f->inodes, w->name, strlen(w->name));
    w->then = rename_decide;
    if ((w->flags & RENAME_NOREPLACE) || fs_is_pending(src)) {
        /* whether the target name holds a committed file: the state as
         * applied here, as a check of the applied state always was (the
         * state machine decides NOREPLACE itself, COND ABSENT) */
        fs_wait_read_key(w, w->newname, FS_READ_APPLIED);
        return;
    }
    w->view = NULL;
    rename_decide(w, 0);
}

void fs_key_rename(fuse_req_t req, const char *name, const char *newname,
                   unsigned int flags)
{
    fs_wait *w = fs_wait_named(req, rename_step, name, newname);
    if (!w)
        return;
    w->flags = flags;
    rename_step(w, 0);
}
