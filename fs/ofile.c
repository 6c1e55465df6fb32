/*
 * ofile.c - files open for writing on this mount: the shared working copy
 * of each such file (fs_ofile in fs_int.h), writes into it, and its
 * commits.
 *
 * Invariants:
 *  1. Every writable handle uses the version of its inode that was current
 *     when it opened (a new one with O_TRUNC), so descriptors of one file
 *     on one mount see one content; the inode points at its newest.
 *  2. A commit carries its own copy of the bytes it proposes: later writes
 *     never change a proposal in flight.
 *  3. A commit of a committed file is conditional on its identity (COND
 *     IDENT): it changes that file and nothing else.  If the key no longer
 *     holds it, the commit follows the file to the key it was renamed to
 *     (at most FS_COMMIT_TRIES times), and is dropped if the file was
 *     removed: writes to a removed file vanish, as on a local file.
 *  4. A flush or fsync is answered only once every commit that was in
 *     flight when it arrived is done (it may hold that flusher's bytes).
 *  5. Commits of one file are submitted in order; the first commit of a
 *     file created here is a plain PUT/APPEND and gives the inode its
 *     identity.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fs_commit {
    fs *f;
    fs_ofile *of;
    uint64_t id;
    uint8_t *data;             /* PUT value or APPEND tail (invariant 2) */
    uint32_t len;
    bool append;
    bool answered;             /* nobody waits: a commit at release */
    uint64_t ident;            /* COND IDENT argument, 0 = none */
    uint64_t expect;           /* COND VERSION argument instead, 0 = none
                                  (user.paxos.expect, xattr.c) */
    uint64_t mtime_after;      /* then SETATTR this mtime (of->mtime_set) */
    bool mtime_sent;
    bool owned;                /* the first commit of a file created here:
                                  OWNER with its creator's attributes */
    uint32_t uid, gid, perm;
    char *key;                 /* where it is proposed */
    uint32_t tries;
    fs_commit *next;
};

/* ------------------------------------------------------------ buffer */

static int reserve(fs_ofile *of, uint64_t need)
{
    if (need > KV_MAX_VALUE)
        return EFBIG;
    if (need <= of->cap)
        return 0;
    uint64_t cap = of->cap ? of->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > KV_MAX_VALUE)
        cap = KV_MAX_VALUE;
    uint8_t *nb = realloc(of->buf, cap);
    if (!nb)
        return ENOMEM;
    of->buf = nb;
    of->cap = (uint32_t)cap;
    return 0;
}

int fs_ofile_set_length(fs_ofile *of, uint64_t len)
{
    int rc = reserve(of, len);
    if (rc)
        return rc;
    if (len > of->len)
        memset(of->buf + of->len, 0, len - of->len);
    of->len = (uint32_t)len;
    return 0;
}

static void add_owner(fs_ofile *of, uint64_t owner)
{
    if (owner == 0) {
        of->any_owner = true;
        return;
    }
    for (uint32_t i = 0; i < of->n_owners; i++)
        if (of->owners[i] == owner)
            return;
    if (of->n_owners < FS_OWNERS_MAX)
        of->owners[of->n_owners++] = owner;
    else
        of->any_owner = true;
}

static bool owner_wrote(const fs_ofile *of, uint64_t owner)
{
    if (of->any_owner)
        return true;
    for (uint32_t i = 0; i < of->n_owners; i++)
        if (of->owners[i] == owner)
            return true;
    return false;
}

static void changed(fs_ofile *of)
{
    of->dirty = true;
    of->changed_ms = fs_wall_ms();
}

static fs_ofile *ofile_new(fs *f, fs_inode *in, const kv_value *v)
{
    fs_ofile *of = calloc(1, sizeof *of);
    if (!of)
        return NULL;
    if (v && v->len) {
        if (reserve(of, v->len)) {
            free(of);
            return NULL;
        }
        memcpy(of->buf, v->data, v->len);
        of->len = v->len;
    }
    of->in = in;
    in->open_count++;
    of->base_len = of->len;
    of->append_only = true;
    of->changed_ms = v ? v->mtime_ms : fs_wall_ms();
    of->next_commit_id = 1;
    of->next = f->ofiles;
    if (f->ofiles)
        f->ofiles->prev = of;
    f->ofiles = of;
    in->of = of;
    return of;
}

fs_ofile *fs_ofile_get(fs *f, fs_inode *in, const kv_value *v)
{
    return in->of ? in->of : ofile_new(f, in, v);
}

fs_ofile *fs_ofile_new_version(fs *f, fs_inode *in)
{
    /* the previous version (if any) lives on with its handles and
     * commits; the inode now shows the new one */
    return ofile_new(f, in, NULL);
}

static void ofile_unlink(fs *f, fs_ofile *of)
{
    if (of->prev)
        of->prev->next = of->next;
    else
        f->ofiles = of->next;
    if (of->next)
        of->next->prev = of->prev;
    if (of->in->of == of)
        of->in->of = NULL;
    free(of->buf);
    free(of);
}

void fs_ofile_free_all(fs *f)
{
    while (f->ofiles)
        ofile_unlink(f, f->ofiles);
}

/* A truncation (O_TRUNC, ftruncate, truncate(path)): a change that is not
 * an append.  `owner` 0: nobody to credit it to, so it alone makes no
 * flush commit (fs.h, semantics 5). */
void fs_ofile_truncate(fs_ofile *of, uint32_t len, uint64_t owner)
{
    if (len < of->len)
        of->len = len;
    else
        (void)fs_ofile_set_length(of, len);   /* len <= KV_MAX_VALUE */
    of->append_only = false;
    changed(of);
    if (owner)
        add_owner(of, owner);
}

static void ofile_free_if_unused(fs *f, fs_ofile *of)
{
    if (of->handles || of->inflight || of->waiters)
        return;
    fs_inode *in = of->in;
    ofile_unlink(f, of);
    in->open_count--;
    fs_release_inode(f, in);
}

/* ------------------------------------------------------------ commits */

static void commit_done(void *arg, int result);

static int commit_send(fs_commit *c)
{
    fs *f = c->f;
    size_t klen = strlen(c->key);
    size_t inner_cap = kv_op_size_put(klen, c->len);
    size_t cap = kv_op_size_owner(kv_op_size_cond(klen, inner_cap));
    uint8_t *op = malloc(cap);
    if (!op)
        return -ENOMEM;
    int64_t n = c->append
        ? kv_op_encode_append(op, cap, c->key, klen, c->data, c->len)
        : kv_op_encode_put(op, cap, c->key, klen, c->data, c->len);
    if (n >= 0 && c->expect)
        n = kv_op_encode_cond(op, cap, KV_COND_VERSION, c->key, klen,
                              c->expect, op, (size_t)n);
    else if (n >= 0 && c->ident)
        n = kv_op_encode_cond(op, cap, KV_COND_IDENT, c->key, klen, c->ident,
                              op, (size_t)n);
    else if (n >= 0 && c->owned)
        n = kv_op_encode_owner(op, cap, c->uid, c->gid, c->perm, op,
                               (size_t)n);
    int rc = (int)n;
    if (n >= 0)
        rc = f->be.submit(f->be.ctx, op, (uint32_t)n, c->answered,
                          commit_done, c);
    free(op);
    return rc;
}

static void commit_free(fs_commit *c)
{
    free(c->data);
    free(c->key);
    free(c);
}

/* Where the file of `in` lives now: 0 (in->key is its key: the inode
 * follows its file through renames, state.c), -ENOENT when it was
 * removed (or was never committed and lost its name), -ENOMEM when its
 * new name could not be stored. */
static int locate(const fs_inode *in)
{
    if (!in->orphan)
        return 0;
    return in->lost ? -ENOMEM : -ENOENT;
}

/* Propose the working copy (`force`: even when nothing changed, for a new
 * commit time).  0 with the commit in flight (of->inflight), 0 with
 * nothing to send, or a negative errno. */
static int ofile_submit(fs *f, fs_ofile *of, bool answered, bool force)
{
    fs_inode *in = of->in;
    if (!of->dirty && !force)
        return 0;
    int rc = locate(in);
    if (rc == -ENOENT) {
        /* removed: its bytes go nowhere (invariant 3) */
        of->dirty = false;
        of->n_owners = 0;
        of->any_owner = false;
        return 0;
    }
    if (rc < 0)
        return rc;
    bool append = of->append_only && !(force && of->len == of->base_len);
    uint32_t from = append ? of->base_len : 0;
    fs_commit *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->f = f;
    c->of = of;
    c->append = append;
    c->answered = answered;
    c->ident = in->ident;
    c->expect = of->expect;     /* used up by this commit */
    c->mtime_after = of->mtime_set;
    of->mtime_set = 0;
    c->owned = !in->ident && in->has_creator;
    c->uid = in->c_uid;
    c->gid = in->c_gid;
    c->perm = in->c_perm;
    of->expect = 0;
    c->len = of->len - from;
    c->data = malloc(c->len ? c->len : 1);
    c->key = strdup(in->key);
    if (!c->data || !c->key) {
        commit_free(c);
        return -ENOMEM;
    }
    if (c->len)
        memcpy(c->data, of->buf + from, c->len);
    c->id = of->next_commit_id;
    rc = commit_send(c);
    if (rc < 0) {
        commit_free(c);
        return rc;
    }
    of->next_commit_id++;
    fs_commit **pp = &of->inflight;
    while (*pp)
        pp = &(*pp)->next;
    *pp = c;
    /* the working copy is what this commit makes the file */
    of->dirty = false;
    of->n_owners = 0;
    of->any_owner = false;
    of->base_len = of->len;
    of->append_only = true;
    return 0;
}

static bool waits_on(const fs_ofile *of, const fs_wait *w)
{
    for (const fs_commit *c = of->inflight; c; c = c->next)
        if (c->id <= w->upto)
            return true;
    return false;
}

/* Run the continuations of waiters whose commits are all done. */
static void wake_waiters(fs_ofile *of)
{
    fs_wait *ready = NULL, **tail = &ready;
    for (fs_wait **pp = &of->waiters; *pp;) {
        fs_wait *w = *pp;
        if (waits_on(of, w)) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
    }
    while (ready) {
        fs_wait *w = ready;
        ready = w->next;
        w->then(w, w->err ? -w->err : 0);
    }
}

static void commit_done(void *arg, int result)
{
    fs_commit *c = arg;
    fs *f = c->f;
    fs_ofile *of = c->of;
    fs_inode *in = of->in;

    if (result == -ESTALE && c->expect) {
        /* the key moved past the expected revision: nothing committed,
         * and the caller is told so (xattr.c) */
        result = -ECANCELED;
    } else if (result == -ESTALE && c->ident) {
        /* the key no longer holds the file: follow it (invariant 3).  The
         * change that moved it reached this mount before this answer
         * (fs.h rule B2), so the inode is where its file is now. */
        int rc = locate(in);
        char *key = NULL;
        if (rc == 0 && in->ident != c->ident)
            rc = -EIO;         /* cannot happen: the inode is this file's */
        else if (rc == 0 && c->tries >= FS_COMMIT_TRIES)
            rc = -EIO;
        else if (rc == 0 && !(key = strdup(in->key)))
            rc = -ENOMEM;
        if (rc == 0) {
            free(c->key);
            c->key = key;
            c->tries++;
            rc = commit_send(c);
            if (rc == 0)
                return;
        }
        result = rc == -ENOENT ? 0 : rc;   /* removed: the bytes go nowhere */
    } else if (result == 0 && !in->ident && in->seen.ident) {
        /* the first commit of a file created here names its file: the
         * identity its key was told to hold right before this answer
         * (state.c invariant 3) */
        fs_inode_set_ident(f->inodes, in, in->seen.ident);
    }
    if (result == 0 && c->mtime_after && !c->mtime_sent) {
        /* the explicit mtime, on the file where it is now, before anyone
         * waiting for this commit is answered */
        int rc = locate(in);
        c->mtime_sent = true;
        if (rc == 0) {
            uint8_t op[64 + KV_MAX_KEY];
            int64_t n = kv_op_encode_setattr(op, sizeof op, in->key,
                                             in->key_len, KV_ATTR_MTIME, 0,
                                             0, 0, c->mtime_after);
            rc = (int)n;
            if (n >= 0)
                rc = f->be.submit(f->be.ctx, op, (uint32_t)n, c->answered,
                                  commit_done, c);
            if (rc == 0)
                return;
        }
        result = rc == -ENOENT ? 0 : rc;
    }
    if (result < 0) {
        /* not committed; the next commit proposes the whole copy */
        of->append_only = false;
        if (c->answered)
            fprintf(stderr, "paxosfs: commit at release of '%s' failed: %s\n",
                    c->key, strerror(-result));
    }
    for (fs_commit **pp = &of->inflight; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    for (fs_wait *w = of->waiters; w; w = w->next)
        if (w->upto >= c->id && result < 0 && !w->err)
            w->err = fs_commit_errno(result);
    commit_free(c);
    wake_waiters(of);
    ofile_free_if_unused(f, of);
}

/* Park `w` until every commit now in flight is done (invariant 4). */
static void park_on_inflight(fs_ofile *of, fs_wait *w)
{
    w->upto = of->next_commit_id - 1;
    w->next = of->waiters;
    of->waiters = w;
}

void fs_ofile_put(fs *f, fs_ofile *of, bool commit)
{
    if (of->handles > 0)
        of->handles--;
    if (of->handles == 0 && !commit)
        of->dirty = false;
    if (of->handles == 0 && of->dirty && !of->error) {
        /* the last writer is gone: commit what nobody committed (a
         * truncation or creation that was never written, a writer whose
         * file table never flushed); close() has returned already */
        int rc = ofile_submit(f, of, true, false);
        if (rc < 0)
            fprintf(stderr, "paxosfs: commit at release of '%s' failed: %s\n",
                    of->in->key, strerror(-rc));
    }
    ofile_free_if_unused(f, of);
}

/* ------------------------------------------------------------ writing */

void fs_key_write(fuse_req_t req, fs_handle *h, const char *data, size_t size,
                  off_t off, uint64_t lock_owner)
{
    fs_ofile *of = h->of;
    if (!h->writable || !of) {
        fuse_reply_err(req, EBADF);
        return;
    }
    if (of->error) {
        fuse_reply_err(req, of->error);
        return;
    }
    /* O_APPEND: the kernel's offset comes from the size it cached; the
     * end of the working copy is the end of the file */
    uint64_t at = h->append ? of->len : (uint64_t)off;
    uint64_t end = at + size;
    int rc = off < 0 ? EINVAL : 0;
    if (!rc && (end < at || end > KV_MAX_VALUE)) {
        /* nothing of this open file will be committed (README) */
        of->error = EFBIG;
        rc = EFBIG;
    }
    if (!rc && at > of->len)
        rc = fs_ofile_set_length(of, at);
    if (!rc)
        rc = reserve(of, end);
    if (rc) {
        fuse_reply_err(req, rc);
        return;
    }
    if (size)
        memcpy(of->buf + at, data, size);
    if (end > of->len)
        of->len = (uint32_t)end;
    if (!h->append)
        of->append_only = false;
    changed(of);
    add_owner(of, lock_owner);
    h->last_owner = lock_owner;
    fs_reply_write_later(req, size);
}

/* ------------------------------------------------------------ flushing */

static void flush_then(fs_wait *w, int result)
{
    fs_reply_err_later(w->req, result < 0 ? -result : 0);
    fs_wait_free(w);
}

void fs_key_flush(fuse_req_t req, fs_handle *h, uint64_t lock_owner,
                  bool is_fsync)
{
    fs *f = fs_of(req);
    fs_ofile *of = h->of;
    if (!h->writable || !of) {
        fs_reply_err_later(req, 0);
        return;
    }
    if (of->error) {
        /* a write failed (EFBIG): nothing of this file is committed */
        of->dirty = false;
        of->n_owners = 0;
        of->any_owner = false;
        fs_reply_err_later(req, of->error);
        return;
    }
    /* A flush comes from every close of a descriptor, also from a child
     * that inherited it and never wrote: only a file table that wrote
     * commits (fs.h, semantics 5); fsync always does. */
    if (of->dirty && (is_fsync || owner_wrote(of, lock_owner))) {
        int rc = ofile_submit(f, of, false, false);
        if (rc < 0) {
            fs_reply_err_later(req, fs_commit_errno(rc));
            return;
        }
    }
    if (!of->inflight) {
        fs_reply_err_later(req, 0);
        return;
    }
    fs_wait *w = fs_wait_new(f, req, flush_then);
    if (!w) {
        fs_reply_err_later(req, ENOMEM);
        return;
    }
    w->h = h;
    h->refs++;
    park_on_inflight(of, w);
}

static void commit_now_then(fs_wait *w, int result)
{
    if (result < 0) {
        fuse_reply_err(w->req, -result);
    } else {
        struct stat st;
        fs_fill_key_attr(w->f, w->in, w->h, &st);
        fuse_reply_attr(w->req, &st, w->f->opt.attr_timeout_s);
    }
    fs_wait_free(w);
}

void fs_ofile_commit_now(fuse_req_t req, fs_inode *in, fs_handle *h)
{
    fs *f = fs_of(req);
    fs_ofile *of = in->of;
    if (of->error) {
        fuse_reply_err(req, of->error);
        return;
    }
    fs_wait *w = fs_wait_new(f, req, commit_now_then);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    w->in = in;
    in->open_count++;
    if (h) {
        w->h = h;
        h->refs++;
    }
    int rc = ofile_submit(f, of, false, true);
    if (rc < 0) {
        w->then(w, rc);
        return;
    }
    park_on_inflight(of, w);
    if (!waits_on(of, w)) {
        /* nothing in flight (a removed file): answer now */
        of->waiters = w->next;
        w->next = NULL;
        w->then(w, 0);
    }
}

void fs_ofile_wait_idle(fs_ofile *of, fs_wait *w)
{
    park_on_inflight(of, w);
}

/* ------------------------------------------------ fsync of a directory */

/* Is `in` a file directly in the directory whose key is dir[0..len) (""
 * for the root)? */
static bool in_dir(const fs_inode *in, const char *dir, size_t len)
{
    if (in->orphan || in->key_len <= len || memcmp(in->key, dir, len) != 0)
        return false;
    return !memchr(in->key + len, '/', in->key_len - len);
}

/* One round of fs_ofile_sync_dir: commit the creations of files in the
 * directory that were never committed, then wait for the commits in
 * flight of one of its files; once none is left, answer. */
static void sync_dir_step(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0 && !w->err)
        w->err = -result;
    size_t len = strlen(w->name);
    for (fs_ofile *of = f->ofiles; of; of = of->next) {
        if (!in_dir(of->in, w->name, len))
            continue;
        if (!of->in->ident && of->dirty && !of->error) {
            int rc = ofile_submit(f, of, false, false);
            if (rc < 0 && !w->err)
                w->err = fs_commit_errno(rc);
        }
        if (of->inflight) {
            park_on_inflight(of, w);
            return;
        }
    }
    fuse_reply_err(w->req, w->err);
    w->req = NULL;
    fs_wait_free(w);
}

void fs_ofile_sync_dir(fuse_req_t req, const char *dir, size_t len)
{
    fs_wait *w = fs_wait_new(fs_of(req), req, sync_dir_step);
    if (!w || !(w->name = strndup(dir, len))) {
        if (w)
            fs_wait_free(w);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    sync_dir_step(w, 0);
}
