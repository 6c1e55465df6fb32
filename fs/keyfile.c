/*
 * keyfile.c - key files of the paxosfs mount: lookup, attributes, open,
 * write buffers, commit on flush/fsync/release, unlink and rename.
 *
 * Invariants:
 *  1. Every fuse_req_t is answered exactly once: either before the handler
 *     returns, or by the completion of the backend call it was parked on
 *     (struct wait below owns the request until then).
 *  2. The bytes of a proposal are encoded (copied) when it is submitted, so
 *     later writes to the same handle never change a proposal in flight.
 *  3. A parked request holds a reference on its handle, so a release that
 *     overtakes it cannot free the handle under it.
 *  4. An inode's key changes only when a rename is applied; a delete or a
 *     rename over a key orphans the old inode (inode.h).
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum wait_kind {
    WAIT_LOOKUP = 1,  /* reply entry or ENOENT */
    WAIT_OPEN,        /* finish open after the read point */
    WAIT_COMMIT,      /* flush/fsync: reply 0 or errno */
    WAIT_SETATTR,     /* reply attributes */
    WAIT_RELEASE,     /* nobody to answer */
    WAIT_UNLINK,
    WAIT_RENAME,
};

struct wait {
    fs *f;
    fuse_req_t req;           /* NULL for WAIT_RELEASE */
    uint8_t kind;
    fs_handle *h;             /* referenced, or NULL */
    fs_inode *in;             /* WAIT_SETATTR/WAIT_OPEN (open_count held) */
    struct fuse_file_info fi; /* WAIT_OPEN: copy, the original dies */
    char *name;               /* WAIT_LOOKUP/UNLINK/RENAME */
    char *newname;            /* WAIT_RENAME */
};

static void wait_free(struct wait *w)
{
    if (w->h)
        fs_handle_unref(w->h);
    free(w->name);
    free(w->newname);
    free(w);
}

static struct wait *wait_new(fs *f, fuse_req_t req, uint8_t kind)
{
    struct wait *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->f = f;
    w->req = req;
    w->kind = kind;
    return w;
}

/* A parked request that keeps copies of the names it acts on (newname may
 * be NULL).  Checks the names first; on a bad name or ENOMEM it answers
 * the request itself and returns NULL. */
static struct wait *wait_named(fuse_req_t req, uint8_t kind, const char *name,
                               const char *newname)
{
    int rc = fs_check_name(name);
    if (!rc && newname)
        rc = fs_check_name(newname);
    if (rc) {
        fuse_reply_err(req, rc);
        return NULL;
    }
    struct wait *w = wait_new(fs_of(req), req, kind);
    if (!w || !(w->name = strdup(name)) ||
        (newname && !(w->newname = strdup(newname)))) {
        if (w)
            wait_free(w);
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    return w;
}

/* Map a commit failure to what close()/fsync() report: errors that say
 * something precise about the request pass through, the rest is EIO. */
static int commit_errno(int result)
{
    switch (-result) {
    case EFBIG: case ENAMETOOLONG: case EINVAL: case ENOENT:
    case ETIMEDOUT: case ENOSPC: case EROFS: case EHOSTUNREACH:
        return -result;
    default:
        return EIO;
    }
}

static const kv_value *current(fs *f, const fs_inode *in)
{
    if (in->orphan)
        return NULL;
    return kv_get(f->be.state(f->be.ctx), in->key, in->key_len);
}

static void fill_entry(fs *f, fs_inode *in, const kv_value *v,
                       struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = in->ino;
    e->generation = 1;
    e->attr_timeout = f->opt.attr_timeout_s;
    e->entry_timeout = f->opt.entry_timeout_s;
    fs_fill_key_attr(f, in, v, 0, v == NULL, &e->attr);
}

/* ------------------------------------------------------------- lookup */

static void reply_lookup(fs *f, fuse_req_t req, const char *name)
{
    size_t len = strlen(name);
    const kv_value *v = kv_get(f->be.state(f->be.ctx), name, len);
    fs_inode *in = fs_inode_by_key(f->inodes, name, len);
    /* a key created on this mount and not committed yet still exists for
     * the processes that hold it open */
    if (!v && !(in && in->open_count > 0)) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!in)
        in = fs_inode_get_or_add(f->inodes, name, len);
    if (!in) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    struct fuse_entry_param e;
    fill_entry(f, in, v, &e);
    if (fuse_reply_entry(req, &e) == 0)
        in->nlookup++;
    else
        fs_release_inode(f, in);
}

static void done_lookup(void *arg, int result)
{
    struct wait *w = arg;
    if (result < 0)
        fuse_reply_err(w->req, commit_errno(result));
    else
        reply_lookup(w->f, w->req, w->name);
    wait_free(w);
}

void fs_key_lookup(fuse_req_t req, const char *name)
{
    fs *f = fs_of(req);
    int rc = fs_check_name(name);
    if (rc) {
        fuse_reply_err(req, rc);
        return;
    }
    size_t len = strlen(name);
    if (kv_get(f->be.state(f->be.ctx), name, len)) {
        reply_lookup(f, req, name);
        return;
    }
    /* Not here: it may have been created elsewhere a moment ago.  Only a
     * linearizable read point can say "does not exist". */
    struct wait *w = wait_named(req, WAIT_LOOKUP, name, NULL);
    if (!w)
        return;
    rc = f->be.read_barrier(f->be.ctx, done_lookup, w);
    if (rc < 0) {
        fuse_reply_err(req, commit_errno(rc));
        wait_free(w);
    }
}

/* ------------------------------------------------------------ getattr */

void fs_key_getattr(fuse_req_t req, fs_inode *in, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    const kv_value *v = current(f, in);
    fs_handle *h = fi ? (fs_handle *)(uintptr_t)fi->fh : NULL;
    struct stat st;
    if (h && h->kind == FS_H_KEY && h->writable && !h->append) {
        fs_fill_key_attr(f, in, v, h->len, true, &st);
    } else if (v || in->open_count > 0) {
        fs_fill_key_attr(f, in, v, 0, v == NULL, &st);
    } else {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fuse_reply_attr(req, &st, f->opt.attr_timeout_s);
}

/* ------------------------------------------------------------- commit */

static void done_commit(void *arg, int result);

/* Propose the handle's buffer; `w` is answered by done_commit. */
static int commit_handle(fs *f, fs_handle *h, struct wait *w)
{
    size_t cap = 16 + h->in->key_len + h->len;
    uint8_t *op = malloc(cap);
    if (!op)
        return -ENOMEM;
    int64_t n = h->append
        ? kv_op_encode_append(op, cap, h->in->key, h->in->key_len, h->buf, h->len)
        : kv_op_encode_put(op, cap, h->in->key, h->in->key_len, h->buf, h->len);
    int rc = (int)n;
    if (n >= 0)
        rc = f->be.submit(f->be.ctx, op, (uint32_t)n, w->kind == WAIT_RELEASE,
                          done_commit, w);
    free(op);
    if (rc < 0)
        return rc;
    /* invariant 2: the proposal has its own copy */
    h->dirty_data = false;
    h->dirty_trunc = false;
    if (h->append)
        h->len = 0;
    return 0;
}

static void done_commit(void *arg, int result)
{
    struct wait *w = arg;
    fs *f = w->f;
    switch (w->kind) {
    case WAIT_COMMIT:
        fuse_reply_err(w->req, result < 0 ? commit_errno(result) : 0);
        break;
    case WAIT_SETATTR: {
        if (result < 0) {
            fuse_reply_err(w->req, commit_errno(result));
            break;
        }
        struct stat st;
        const kv_value *v = current(f, w->in);
        fs_fill_key_attr(f, w->in, v, 0, v == NULL, &st);
        fuse_reply_attr(w->req, &st, f->opt.attr_timeout_s);
        break;
    }
    case WAIT_RELEASE:
        if (result < 0)
            fprintf(stderr, "paxosfs: commit at release of '%s' failed: %s\n",
                    w->h && w->h->in ? w->h->in->key : "?", strerror(-result));
        break;
    default:
        break;
    }
    if (w->in) {
        w->in->open_count--;
        fs_release_inode(f, w->in);
    }
    wait_free(w);
}

static void park_commit(fuse_req_t req, fs_handle *h, uint8_t kind)
{
    fs *f = fs_of(req);
    struct wait *w = wait_new(f, req, kind);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    w->h = h;
    h->refs++;
    if (kind == WAIT_SETATTR) {
        w->in = h->in;
        h->in->open_count++;
    }
    int rc = commit_handle(f, h, w);
    if (rc < 0) {
        if (w->in)
            w->in->open_count--;
        fuse_reply_err(req, commit_errno(rc));
        wait_free(w);
    }
}

void fs_key_flush(fuse_req_t req, fs_handle *h, bool is_fsync)
{
    if (!h->writable) {
        fuse_reply_err(req, 0);
        return;
    }
    if (h->error) {
        /* a write failed (EFBIG): nothing of this handle is committed */
        int err = h->error;
        h->dirty_data = h->dirty_trunc = false;
        fuse_reply_err(req, err);
        return;
    }
    if (h->dirty_data || (is_fsync && h->dirty_trunc))
        park_commit(req, h, WAIT_COMMIT);
    else
        fuse_reply_err(req, 0);
}

void fs_key_release(fuse_req_t req, fs_handle *h)
{
    fs *f = fs_of(req);
    if (h->writable && !h->error && (h->dirty_data || h->dirty_trunc)) {
        struct wait *w = wait_new(f, NULL, WAIT_RELEASE);
        if (w) {
            w->h = h;
            h->refs++;
            w->in = h->in;            /* keeps the key's inode meanwhile */
            h->in->open_count++;
            int rc = commit_handle(f, h, w);
            if (rc < 0) {
                fprintf(stderr, "paxosfs: commit at release of '%s' failed: %s\n",
                        h->in->key, strerror(-rc));
                h->in->open_count--;
                w->in = NULL;
                wait_free(w);
            }
        }
    }
    fs_inode *in = h->in;
    in->open_count--;
    fs_handle_unref(h);
    fs_release_inode(f, in);
    fuse_reply_err(req, 0);
}

/* ------------------------------------------------------------- buffers */

static int reserve(fs_handle *h, uint64_t need)
{
    if (need > KV_MAX_VALUE)
        return EFBIG;
    if (need <= h->cap)
        return 0;
    uint64_t cap = h->cap ? h->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > KV_MAX_VALUE)
        cap = KV_MAX_VALUE;
    uint8_t *nb = realloc(h->buf, cap);
    if (!nb)
        return ENOMEM;
    h->buf = nb;
    h->cap = (uint32_t)cap;
    return 0;
}

static int set_length(fs_handle *h, uint64_t len)
{
    int rc = reserve(h, len);
    if (rc)
        return rc;
    if (len > h->len)
        memset(h->buf + h->len, 0, len - h->len);
    h->len = (uint32_t)len;
    return 0;
}

void fs_key_write(fuse_req_t req, fs_handle *h, const char *data, size_t size,
                  off_t off)
{
    if (!h->writable) {
        fuse_reply_err(req, EBADF);
        return;
    }
    if (h->error) {
        fuse_reply_err(req, h->error);
        return;
    }
    /* O_APPEND: the kernel's offset comes from a possibly stale size;
     * appends go to the end of the committed value when applied */
    uint64_t at = h->append ? h->len : (uint64_t)off;
    uint64_t end = at + size;
    int rc = end < at ? EFBIG : 0;
    if (!rc && at > h->len)
        rc = set_length(h, at);
    if (!rc)
        rc = reserve(h, end);
    if (rc) {
        if (rc == EFBIG)
            h->error = EFBIG;
        fuse_reply_err(req, rc);
        return;
    }
    if (size)
        memcpy(h->buf + at, data, size);
    if (end > h->len)
        h->len = (uint32_t)end;
    h->dirty_data = true;
    fuse_reply_write(req, size);
}

/* ------------------------------------------------------------ setattr */

void fs_key_setattr(fuse_req_t req, fs_inode *in, struct stat *attr,
                    int to_set, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        fuse_reply_err(req, EPERM);  /* keys carry no owner or mode */
        return;
    }
    fs_handle *h = fi ? (fs_handle *)(uintptr_t)fi->fh : NULL;
    if (h && h->kind == FS_H_KEY && h->writable && !h->append) {
        /* ftruncate / futimens on an open file: work on its buffer */
        if (to_set & FUSE_SET_ATTR_SIZE) {
            int rc = set_length(h, (uint64_t)attr->st_size);
            if (rc) {
                fuse_reply_err(req, rc);
                return;
            }
            h->dirty_data = true;
        }
        if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
                      FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)) {
            if (h->error) {
                fuse_reply_err(req, h->error);
                return;
            }
            /* touch: commit now, the mtime becomes the commit time */
            h->dirty_data = true;
            park_commit(req, h, WAIT_SETATTR);
            return;
        }
        struct stat st;
        fs_fill_key_attr(f, in, current(f, in), h->len, true, &st);
        fuse_reply_attr(req, &st, f->opt.attr_timeout_s);
        return;
    }
    const kv_value *v = current(f, in);
    if (!v && in->open_count > 0 && !(to_set & FUSE_SET_ATTR_SIZE)) {
        /* utimes on a file created here and not committed yet: it commits
         * (with the commit time as mtime) when its handle does */
        struct stat st;
        fs_fill_key_attr(f, in, NULL, 0, true, &st);
        fuse_reply_attr(req, &st, f->opt.attr_timeout_s);
        return;
    }
    if (!v) {
        fuse_reply_err(req, in->open_count > 0 ? EBUSY : ENOENT);
        return;
    }
    if (!(to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
                    FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                    FUSE_SET_ATTR_MTIME_NOW))) {
        struct stat st;
        fs_fill_key_attr(f, in, v, 0, false, &st);
        fuse_reply_attr(req, &st, f->opt.attr_timeout_s);
        return;
    }
    /* truncate(path) or utimes(path): one PUT of the resulting value */
    fs_handle *tmp = fs_handle_new(f, FS_H_KEY);
    if (!tmp) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    tmp->in = in;
    tmp->writable = true;
    uint64_t len = (to_set & FUSE_SET_ATTR_SIZE) ? (uint64_t)attr->st_size : v->len;
    int rc = set_length(tmp, len < v->len ? len : v->len);
    if (!rc) {
        if (tmp->len)
            memcpy(tmp->buf, v->data, tmp->len);
        rc = set_length(tmp, len);
    }
    if (rc) {
        fs_handle_unref(tmp);
        fuse_reply_err(req, rc);
        return;
    }
    tmp->dirty_data = true;
    park_commit(req, tmp, WAIT_SETATTR);
    fs_handle_unref(tmp);
}

/* --------------------------------------------------------------- open */

/* Fill a fresh handle for `in` from the committed value.  0 or errno. */
static int prepare_handle(fs *f, fs_handle *h, fs_inode *in, int flags,
                          bool created)
{
    int acc = flags & O_ACCMODE;
    h->in = in;
    h->writable = acc == O_WRONLY || acc == O_RDWR;
    /* O_TRUNC|O_APPEND replaces the value: a plain write buffer */
    h->append = h->writable && (flags & O_APPEND) && !(flags & O_TRUNC);
    const kv_value *v = current(f, in);
    /* a reader sees committed state only: a key created on this mount and
     * not committed yet does not exist for it (DESIGN.md invariant 4) */
    if (!v && !created && (in->open_count == 0 || !h->writable))
        return ENOENT;
    if (!h->writable) {
        if (v) {
            kv_value_ref(v);
            h->snapshot = v;
        }
        return 0;
    }
    if (h->append) {
        /* only the appended bytes are buffered; a missing key is created */
        h->dirty_trunc = v == NULL;
        return 0;
    }
    if (created || (flags & O_TRUNC) || !v) {
        h->dirty_trunc = true;
        return 0;
    }
    int rc = set_length(h, v->len);
    if (rc)
        return rc;
    if (v->len)
        memcpy(h->buf, v->data, v->len);
    return 0;
}

static void finish_open(fs *f, fuse_req_t req, fs_inode *in,
                        struct fuse_file_info *fi)
{
    fs_handle *h = fs_handle_new(f, FS_H_KEY);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    int rc = prepare_handle(f, h, in, fi->flags, false);
    if (rc) {
        h->in = NULL;
        fs_handle_unref(h);
        fuse_reply_err(req, rc);
        return;
    }
    in->open_count++;
    fi->fh = (uint64_t)(uintptr_t)h;
    fi->direct_io = 1;   /* reads always come here: no stale page cache */
    fi->keep_cache = 0;
    if (fuse_reply_open(req, fi) != 0) {
        in->open_count--;
        fs_handle_unref(h);
    }
}

static void done_open(void *arg, int result)
{
    struct wait *w = arg;
    fs *f = w->f;
    if (result < 0)
        fuse_reply_err(w->req, commit_errno(result));
    else
        finish_open(f, w->req, w->in, &w->fi);
    w->in->open_count--;
    fs_inode *in = w->in;
    w->in = NULL;
    wait_free(w);
    fs_release_inode(f, in);
}

void fs_key_open(fuse_req_t req, fs_inode *in, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    int acc = fi->flags & O_ACCMODE;
    int rc = acc != O_RDONLY && f->be.can_write ? f->be.can_write(f->be.ctx) : 0;
    if (rc < 0) {
        fuse_reply_err(req, commit_errno(rc));
        return;
    }
    bool blind = (acc == O_WRONLY) && (fi->flags & (O_TRUNC | O_APPEND));
    if (blind) {
        /* nothing of the old value is read: no read point needed */
        finish_open(f, req, in, fi);
        return;
    }
    struct wait *w = wait_new(f, req, WAIT_OPEN);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    w->in = in;
    in->open_count++;   /* keeps the inode while parked */
    w->fi = *fi;
    rc = f->be.read_barrier(f->be.ctx, done_open, w);
    if (rc < 0) {
        in->open_count--;
        w->in = NULL;
        fuse_reply_err(req, commit_errno(rc));
        wait_free(w);
    }
}

void fs_key_create(fuse_req_t req, const char *name, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    int rc = fs_check_name(name);
    if (!rc && f->be.can_write && (rc = f->be.can_write(f->be.ctx)) < 0)
        rc = commit_errno(rc);
    if (rc) {
        fuse_reply_err(req, rc);
        return;
    }
    size_t len = strlen(name);
    const kv_value *v = kv_get(f->be.state(f->be.ctx), name, len);
    if (v && (fi->flags & O_EXCL)) {
        fuse_reply_err(req, EEXIST);
        return;
    }
    fs_inode *in = fs_inode_get_or_add(f->inodes, name, len);
    fs_handle *h = in ? fs_handle_new(f, FS_H_KEY) : NULL;
    if (!h) {
        if (in)
            fs_release_inode(f, in);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if ((fi->flags & O_ACCMODE) == O_RDONLY)
        fi->flags = (fi->flags & ~O_ACCMODE) | O_RDWR; /* creat() writes */
    rc = prepare_handle(f, h, in, fi->flags, v == NULL);
    if (rc) {
        h->in = NULL;
        fs_handle_unref(h);
        fs_release_inode(f, in);
        fuse_reply_err(req, rc);
        return;
    }
    in->open_count++;
    struct fuse_entry_param e;
    fill_entry(f, in, v, &e);
    fi->fh = (uint64_t)(uintptr_t)h;
    fi->direct_io = 1;
    if (fuse_reply_create(req, &e, fi) == 0) {
        in->nlookup++;
    } else {
        in->open_count--;
        fs_handle_unref(h);
        fs_release_inode(f, in);
    }
}

/* ------------------------------------------------------ unlink, rename */

static void done_unlink(void *arg, int result)
{
    struct wait *w = arg;
    fs *f = w->f;
    if (result == 0) {
        fs_inode *in = fs_inode_by_key(f->inodes, w->name, strlen(w->name));
        if (in) {
            fs_inode_orphan(f->inodes, in);
            fs_release_inode(f, in);
        }
    }
    fuse_reply_err(w->req, result < 0 ? commit_errno(result) : 0);
    wait_free(w);
}

static void submit_op(fuse_req_t req, struct wait *w, const uint8_t *op,
                      int64_t n, fs_done_fn done)
{
    fs *f = w->f;
    int rc = (int)n;
    if (n >= 0)
        rc = f->be.submit(f->be.ctx, op, (uint32_t)n, false, done, w);
    if (rc < 0) {
        fuse_reply_err(req, commit_errno(rc));
        wait_free(w);
    }
}

void fs_key_unlink(fuse_req_t req, const char *name)
{
    struct wait *w = wait_named(req, WAIT_UNLINK, name, NULL);
    if (!w)
        return;
    uint8_t op[16 + KV_MAX_NAME];
    submit_op(req, w, op, kv_op_encode_del(op, sizeof op, name, strlen(name)),
              done_unlink);
}

static void done_rename(void *arg, int result)
{
    struct wait *w = arg;
    fs *f = w->f;
    if (result == 0) {
        fs_inode *target = fs_inode_by_key(f->inodes, w->newname,
                                           strlen(w->newname));
        fs_inode *src = fs_inode_by_key(f->inodes, w->name, strlen(w->name));
        if (target && target != src) {
            fs_inode_orphan(f->inodes, target);
            fs_release_inode(f, target);
        }
        if (src && fs_inode_rekey(f->inodes, src, w->newname,
                                  strlen(w->newname)) < 0)
            fs_inode_orphan(f->inodes, src);
    }
    fuse_reply_err(w->req, result < 0 ? commit_errno(result) : 0);
    wait_free(w);
}

void fs_key_rename(fuse_req_t req, const char *name, const char *newname)
{
    struct wait *w = wait_named(req, WAIT_RENAME, name, newname);
    if (!w)
        return;
    uint8_t op[32 + 2 * KV_MAX_NAME];
    submit_op(req, w, op,
              kv_op_encode_rename(op, sizeof op, name, strlen(name), newname,
                                  strlen(newname)),
              done_rename);
}
