/*
 * names.c - the names of key files and directories: paths of names in
 * directories, lookup, mkdir, rmdir, unlink and rename, and the check of
 * a path a request carries.
 *
 * Invariants:
 *  1. A lookup waits for a linearizable read point: even a name known
 *     here may have been removed elsewhere a moment ago (fs.h, semantics
 *     3).
 *  2. A file created here and not committed yet is unlinked or renamed on
 *     this mount alone, without an entry; if its first commit is on its
 *     way, the unlink or rename waits for it (it would land under the old
 *     name).
 *  3. RENAME_NOREPLACE and RENAME_EXCHANGE are decided by the state
 *     machine (RENAMEX), so exactly one of two racing mounts wins; whether the target name holds
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
    if (len == 0)
        return ENOENT;
    if (strcmp(name, FS_RESERVED_CHAIN) == 0 ||
        strcmp(name, FS_RESERVED_STATUS) == 0)
        return EACCES;
    int rc = kv_path_check(name, len);
    return rc < 0 ? -rc : 0;
}

bool fs_is_dir_inode(const fs_inode *in)
{
    return in && in->key_len > 0 && in->key[in->key_len - 1] == '/';
}

int fs_child_path(fs *f, uint64_t parent, const char *name, char **out)
{
    size_t nlen = strlen(name);
    const char *prefix = "";
    size_t plen = 0;
    *out = NULL;
    if (nlen > KV_MAX_NAME)
        return ENAMETOOLONG;
    if (fs_is_view_dir(parent) || parent == FS_INO_SINCE ||
        fs_is_block_ino(parent) || parent == FS_INO_STATUS ||
        parent == FS_INO_MEMBERS || parent == FS_INO_STREAM)
        return fs_is_view_dir(parent) || parent == FS_INO_SINCE ? EACCES
                                                                : ENOTDIR;
    if (parent != FS_INO_ROOT) {
        fs_inode *d = fs_inode_by_ino(f->inodes, parent);
        if (!d || d->orphan)
            return ENOENT;       /* removed, or moved away meanwhile */
        if (!fs_is_dir_inode(d))
            return ENOTDIR;
        prefix = d->key;
        plen = d->key_len;
    }
    if (plen + nlen > KV_MAX_PATH)
        return ENAMETOOLONG;
    char *p = malloc(plen + nlen + 1);
    if (!p)
        return ENOMEM;
    memcpy(p, prefix, plen);
    memcpy(p + plen, name, nlen + 1);
    *out = p;
    return 0;
}

/* The removal was applied: the backend told this mount before the
 * answer, and the inode was orphaned then (fs.h rule B2). */
static void unlink_applied_reply(fs_wait *w, int result)
{
    fs_reply_wait_err(w, result);
}

/* ------------------------------------------------------------- lookup */

/* A directory another mount moved, whose old name the kernel may still
 * hold (the notice that drops it is not sent yet, notify.c invariant 3):
 * the kernel allows a directory one name, and a lookup made inside a
 * rename(2) cannot move it (ESTALE).  The directory gets a new inode
 * number here; the old one is left an orphan under its old name, which
 * the kernel then drops (ENOENT).  NULL on ENOMEM. */
static fs_inode *renumber(fs *f, fs_inode *in)
{
    char key[KV_MAX_KEY + 1];
    size_t len = in->key_len;
    memcpy(key, in->key, len);
    uint64_t ident = in->ident;
    fs_meta seen = in->seen;
    fs_inode_orphan(f->inodes, in);
    fs_inode *fresh = fs_inode_get_or_add(f->inodes, key, len);
    if (fresh) {
        fs_inode_set_ident(f->inodes, fresh, ident);   /* in loses it */
        fresh->seen = seen;
    }
    fs_release_inode(f, in);
    return fresh;
}

/* Reply the entry of the inode of `key` as w->view found it (ENOENT if
 * nothing is there), and free w. */
static void reply_found(fs_wait *w, const char *key)
{
    fs *f = w->f;
    int err = 0;
    fs_inode *in = fs_resolve(f, key, &w->view->meta, &err);
    if (in && !fs_key_exists(in, NULL)) {
        fs_release_inode(f, in);
        in = NULL;
        err = ENOENT;
    }
    if (in && in->alias_seq) {
        if (fs_is_dir_inode(in) && in->nlookup &&
            fs_notice_pending(f, in->alias_seq)) {
            in = renumber(f, in);
            err = ENOMEM;
        } else {
            in->alias_seq = 0;      /* the old name is gone from the kernel */
        }
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

/* The directory key of the name (w->newname) as the state applied since
 * the read point shows it. */
static void lookup_dir_then(fs_wait *w, int result)
{
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    reply_found(w, w->newname);
}

/* Look for the directory w->name names: its key, the path and '/'. */
static void read_dir_key(fs_wait *w, fs_then_fn then)
{
    size_t len = strlen(w->name);
    free(w->newname);
    w->newname = malloc(len + 2);
    if (!w->newname) {
        fs_reply_wait_err(w, -ENOMEM);
        return;
    }
    memcpy(w->newname, w->name, len);
    w->newname[len] = '/';
    w->newname[len + 1] = '\0';
    w->then = then;
    fs_wait_read_key(w, w->newname, FS_READ_APPLIED);
}

static void lookup_then(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    size_t len = strlen(w->name);
    fs_inode *in = fs_inode_by_key(f->inodes, w->name, len);
    if (!w->view->meta.ident && !fs_is_pending(in)) {
        /* no file by that name: a directory?  Read on the state applied
         * since the read point (a path is a file or a directory, never
         * both, kv.h) */
        fs_reconcile(f, w->name, len, &w->view->meta);
        read_dir_key(w, lookup_dir_then);
        return;
    }
    reply_found(w, w->name);
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

/* ------------------------------------------------------- mkdir, rmdir */

static void mkdir_applied(fs_wait *w, int result)
{
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    /* applied, and told to the inodes (rule B2): read what it made */
    read_dir_key(w, lookup_dir_then);
}

/* Is there a file created on this mount, not committed yet, below the
 * directory `dkey` (its key, with the '/')? */
struct below_arg {
    const char *key;
    size_t len;
    bool found;
};

static void pending_below(fs_inode *in, void *arg)
{
    struct below_arg *b = arg;
    if (!in->orphan && fs_is_pending(in) && in->key_len > b->len &&
        memcmp(in->key, b->key, b->len) == 0)
        b->found = true;
}

static bool has_pending_below(fs *f, const char *dkey, size_t len)
{
    struct below_arg b = { dkey, len, false };
    fs_inode_each(f->inodes, pending_below, &b);
    return b.found;
}

void fs_key_mkdir(fuse_req_t req, const char *path, mode_t mode)
{
    fs_wait *w = fs_wait_named(req, mkdir_applied, path, NULL);
    if (!w)
        return;
    fs *f = w->f;
    size_t len = strlen(path);
    if (fs_is_pending(fs_inode_by_key(f->inodes, path, len))) {
        fs_reply_wait_err(w, -EEXIST);    /* a file created here */
        return;
    }
    int rc = f->be.can_write ? f->be.can_write(f->be.ctx) : 0;
    if (rc < 0) {
        fs_reply_wait_err(w, rc);
        return;
    }
    /* the creator's owner and permissions (the kernel applied the umask) */
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    uint8_t op[32 + KV_MAX_KEY];
    int64_t n = kv_op_encode_mkdir(op, sizeof op, path, len);
    if (n >= 0)
        n = kv_op_encode_owner(op, sizeof op, ctx->uid, ctx->gid,
                               mode & KV_MODE_PERM, op, (size_t)n);
    fs_wait_submit(w, op, n);
}

void fs_key_rmdir(fuse_req_t req, const char *path)
{
    fs_wait *w = fs_wait_named(req, unlink_applied_reply, path, NULL);
    if (!w)
        return;
    fs *f = w->f;
    size_t len = strlen(path);
    char dkey[KV_MAX_KEY + 1];
    memcpy(dkey, path, len);
    dkey[len] = '/';
    if (has_pending_below(f, dkey, len + 1)) {
        fs_reply_wait_err(w, -ENOTEMPTY);  /* files created here */
        return;
    }
    if (fs_is_pending(fs_inode_by_key(f->inodes, path, len))) {
        fs_reply_wait_err(w, -ENOTDIR);
        return;
    }
    uint8_t op[16 + KV_MAX_KEY];
    fs_wait_submit(w, op, kv_op_encode_rmdir(op, sizeof op, path, len));
}

/* ------------------------------------------------------ unlink, rename */


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
    uint8_t op[16 + KV_MAX_KEY];
    w->then = unlink_applied_reply;
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

/* Files created here, not committed yet, below a directory that was
 * renamed: they move with it on this mount. */
struct move_arg {
    const char *from;
    size_t flen;
    fs_inode **v;
    size_t n, cap;
};

static void collect_below(fs_inode *in, void *arg)
{
    struct move_arg *m = arg;
    if (in->orphan || !fs_is_pending(in) || in->key_len <= m->flen ||
        memcmp(in->key, m->from, m->flen) != 0)
        return;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 8;
        fs_inode **v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return;              /* that file keeps its old name */
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = in;
}

static void move_pending_below(fs *f, const char *from, const char *to)
{
    size_t flen = strlen(from), tlen = strlen(to);
    char fkey[KV_MAX_KEY + 1], nkey[KV_MAX_KEY + 1];
    memcpy(fkey, from, flen);
    fkey[flen] = '/';
    struct move_arg m = { fkey, flen + 1, NULL, 0, 0 };
    fs_inode_each(f->inodes, collect_below, &m);
    for (size_t i = 0; i < m.n; i++) {
        fs_inode *in = m.v[i];
        size_t rest = in->key_len - flen;       /* from the '/' on */
        if (tlen + rest > KV_MAX_PATH)
            continue;
        memcpy(nkey, to, tlen);
        memcpy(nkey + tlen, in->key + flen, rest);
        fs_inode *old = fs_inode_by_key(f->inodes, nkey, tlen + rest);
        if (old) {
            fs_inode_orphan(f->inodes, old);
            fs_release_inode(f, old);
        }
        fs_inode_orphan(f->inodes, in);
        if (fs_inode_rekey(f->inodes, in, nkey, tlen + rest) < 0)
            fs_release_inode(f, in);
    }
    free(m.v);
}

static void rename_applied(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result == 0 && !(w->flags & RENAME_EXCHANGE))
        move_pending_below(f, w->name, w->newname);
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
    if (fs_is_pending(src) && (w->flags & RENAME_EXCHANGE)) {
        fs_reply_wait_err(w, src == tgt ? 0 : -EBUSY);
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
        uint8_t op[16 + KV_MAX_KEY];
        w->then = rename_local_applied;
        fs_wait_submit(w, op, kv_op_encode_del(op, sizeof op, w->newname, nlen));
        return;
    }
    if ((w->flags & RENAME_EXCHANGE) && fs_is_pending(tgt)) {
        /* a file created here and not committed has nothing to swap
         * with yet */
        fs_reply_wait_err(w, -EBUSY);
        return;
    }
    /* one op: the state machine decides EEXIST, EISDIR, ENOTDIR,
     * ENOTEMPTY, EINVAL as it applies it (chain/kv.h), and moves a whole
     * directory at once */
    uint8_t op[64 + 2 * KV_MAX_KEY];
    uint8_t kflags = (noreplace ? KV_RENAME_NOREPLACE : 0) |
                     ((w->flags & RENAME_EXCHANGE) ? KV_RENAME_EXCHANGE : 0);
    int64_t n = kflags
        ? kv_op_encode_renamex(op, sizeof op, w->name, len, w->newname, nlen,
                               kflags)
        : kv_op_encode_rename(op, sizeof op, w->name, len, w->newname, nlen);
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
