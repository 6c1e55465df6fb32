/*
 * attr.c - attributes of key files: what stat shows (the working copy
 * while the file is open for writing here, else the committed value),
 * getattr, and setattr (truncate and touch; chmod, chown and explicit
 * times as one SETATTR entry each, fs.h semantics 7).
 *
 * Invariants:
 *  1. getattr, and setattr of a file not open for writing here, wait for
 *     a linearizable read point first (fs.h, semantics 3).
 *  2. truncate(path) of a file not open for writing here is one PUT valid
 *     only if the value is still the one read (COND VERSION), else it is
 *     read again (at most FS_COMMIT_TRIES times).
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../base/check.h"

/* ---------------------------------------------------------- attributes */

void fs_shown_owner(const fs *f, const fs_inode *in, const fs_handle *h,
                    uint32_t *uid, uint32_t *gid, uint32_t *perm)
{
    const fs_meta *v = fs_committed(in);
    *uid = f->uid;
    *gid = f->gid;
    *perm = fs_is_dir_inode(in) ? 0755 : 0644;
    if (v && v->mode) {
        *uid = v->uid;
        *gid = v->gid;
        *perm = v->mode & KV_MODE_PERM;
    } else if (!v && in->has_creator) {
        *uid = in->c_uid;
        *gid = in->c_gid;
        *perm = in->c_perm;
    } else if (!v && h && h->snapshot && h->snapshot->mode) {
        *uid = h->snapshot->uid;
        *gid = h->snapshot->gid;
        *perm = h->snapshot->mode & KV_MODE_PERM;
    }
}

/* Attributes of `in` as this mount sees it: the working copy while it is
 * open for writing here, else the committed value (or, for a removed file
 * still open read-only through `h`, what that handle holds). */
void fs_fill_key_attr(fs *f, const fs_inode *in, const fs_handle *h,
                      struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = in->ino;
    st->st_mode = S_IFREG | 0644;
    st->st_nlink = in->orphan ? 0 : 1;
    st->st_uid = f->uid;
    st->st_gid = f->gid;
    st->st_blksize = 4096;
    const fs_meta *v = fs_committed(in);
    uint32_t uid, gid, perm;
    fs_shown_owner(f, in, h, &uid, &gid, &perm);
    st->st_uid = uid;
    st->st_gid = gid;
    st->st_mode = S_IFREG | perm;
    if (fs_is_dir_inode(in)) {
        /* a directory: its time is the commit time of its creation (or
         * of the rename that moved it last) */
        st->st_mode = S_IFDIR | perm;
        st->st_nlink = in->orphan ? 0 : 2;
        fs_set_times_ms(st, v ? v->mtime_ms : f->mounted_ms);
        return;
    }
    const fs_ofile *of = h && h->of ? h->of : in->of;
    uint64_t size = 0, ms = fs_wall_ms();
    if (of) {
        size = of->len;
        /* mtime: the commit time once committed, else the last change */
        ms = v && !of->dirty && !of->inflight ? v->mtime_ms : of->changed_ms;
        if (of->mtime_set)
            ms = of->mtime_set;
    } else if (v) {
        size = v->len;
        ms = v->mtime_ms;
    } else if (h && h->snapshot) {
        size = h->snapshot->len;
        ms = h->snapshot->mtime_ms;
    }
    st->st_size = (off_t)size;
    st->st_blocks = (st->st_size + 511) / 512;
    fs_set_times_ms(st, ms);
}

/* Does `in` exist for a getattr through `h` (NULL: by path)? */
bool fs_key_exists(const fs_inode *in, const fs_handle *h)
{
    return in->of || fs_committed(in) || (h && h->kind == FS_H_KEY);
}

void fs_fill_entry(fs *f, fs_inode *in, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = in->ino;
    e->generation = 1;
    e->attr_timeout = f->opt.attr_timeout_s;
    e->entry_timeout = f->opt.entry_timeout_s;
    fs_fill_key_attr(f, in, NULL, &e->attr);
}

/* ------------------------------------------------------------ getattr */

static void getattr_then(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    /* the read brought the inode up to date (fs.h rule B2): its
     * attributes are what the read point found */
    if (!fs_key_exists(w->in, w->h)) {
        fuse_reply_err(w->req, ENOENT);
    } else {
        struct stat st;
        fs_fill_key_attr(f, w->in, w->h, &st);
        fuse_reply_attr(w->req, &st, f->opt.attr_timeout_s);
    }
    fs_wait_free(w);
}

void fs_key_getattr(fuse_req_t req, fs_inode *in, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    fs_handle *h = fi ? (fs_handle *)(uintptr_t)fi->fh : NULL;
    fs_wait *w = fs_wait_new(f, req, getattr_then);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    fs_wait_hold(w, in, h && h->kind == FS_H_KEY ? h : NULL);
    fs_wait_read_file(w, 0);    /* metadata only */
}

/* ------------------------------------------------------------ setattr */

#define SET_TIMES_NOW (FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)

static void reply_attr_of(fs *f, fuse_req_t req, fs_inode *in,
                          const fs_handle *h)
{
    struct stat st;
    fs_fill_key_attr(f, in, h, &st);
    fuse_reply_attr(req, &st, f->opt.attr_timeout_s);
}

/* setattr of a file open for writing here: size and touch act on the
 * shared working copy (a touch commits it now). */
static void setattr_open(fuse_req_t req, fs_inode *in, fs_handle *h,
                         const struct stat *attr, int to_set)
{
    fs *f = fs_of(req);
    fs_ofile *of = h && h->of ? h->of : in->of;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (attr->st_size < 0 || (uint64_t)attr->st_size > KV_MAX_VALUE) {
            fuse_reply_err(req, attr->st_size < 0 ? EINVAL : EFBIG);
            return;
        }
        fs_ofile_truncate(of, (uint32_t)attr->st_size,
                          h && h->writable ? h->last_owner : 0);
    }
    if (to_set & SET_TIMES_NOW) {
        fs_ofile_commit_now(req, in, h);
        return;
    }
    reply_attr_of(f, req, in, h);
}

static void setattr_then(fs_wait *w, int result);

/* What setattr reads: the value too when it writes a new one. */
static unsigned setattr_reads(int to_set)
{
    return (to_set & (FUSE_SET_ATTR_SIZE | SET_TIMES_NOW)) ? FS_READ_VALUE : 0;
}

static void setattr_applied(fs_wait *w, int result)
{
    if (result == -ESTALE && w->tries++ < FS_COMMIT_TRIES) {
        /* changed (or removed) between our read point and our write:
         * read it again */
        w->then = setattr_then;
        fs_wait_read_file(w, setattr_reads(w->to_set));
        return;
    }
    if (result < 0)
        fuse_reply_err(w->req, fs_commit_errno(result));
    else
        reply_attr_of(w->f, w->req, w->in, NULL);
    fs_wait_free(w);
}

/* truncate(path) or utimes(path) of a file not open for writing here:
 * one PUT of the resulting value, valid only if nothing changed the file
 * since the read point (COND VERSION), else read and try again. */
static void setattr_then(fs_wait *w, int result)
{
    fs *f = w->f;
    fs_inode *in = w->in;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    if (in->of && in->of->handles) {
        /* opened for writing here meanwhile */
        setattr_open(w->req, in, NULL, &w->attr, w->to_set);
        w->req = NULL;
        fs_wait_free(w);
        return;
    }
    if (!fs_committed(in)) {
        fs_reply_wait_err(w, -ENOENT);
        return;
    }
    if (!(w->to_set & (FUSE_SET_ATTR_SIZE | SET_TIMES_NOW))) {
        reply_attr_of(f, w->req, in, NULL);
        fs_wait_free(w);
        return;
    }
    /* the file's value at the read point (wait.c: the read delivers the
     * value of a file committed when it completes) */
    CHECK(w->view && w->view->value);
    const kv_value *v = w->view->value;
    uint64_t len = (w->to_set & FUSE_SET_ATTR_SIZE) ? (uint64_t)w->attr.st_size
                                                     : v->len;
    if (len > KV_MAX_VALUE) {
        fs_reply_wait_err(w, -EFBIG);
        return;
    }
    uint8_t *val = calloc(1, len ? len : 1);
    size_t cap = kv_op_size_cond(in->key_len,
                                 kv_op_size_put(in->key_len, (uint32_t)len));
    uint8_t *op = malloc(cap);
    if (!val || !op) {
        free(val);
        free(op);
        fs_reply_wait_err(w, -ENOMEM);
        return;
    }
    memcpy(val, v->data, len < v->len ? len : v->len);
    int64_t n = kv_op_encode_put(op, cap, in->key, in->key_len, val,
                                 (uint32_t)len);
    if (n >= 0)
        n = kv_op_encode_cond(op, cap, KV_COND_VERSION, in->key, in->key_len,
                              w->view->meta.version, op, (size_t)n);
    free(val);
    w->then = setattr_applied;
    fs_wait_submit(w, op, n);
    free(op);
}

#define SET_OWNER (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)

/* Which of `to_set` a SETATTR entry does: owner and mode, an explicit
 * mtime, and "now" of a directory (a file's "now" re-commits it). */
static int meta_bits(const fs_inode *in, int to_set)
{
    int bits = to_set & SET_OWNER;
    if ((to_set & FUSE_SET_ATTR_MTIME) && !(to_set & FUSE_SET_ATTR_MTIME_NOW))
        bits |= FUSE_SET_ATTR_MTIME;
    if (fs_is_dir_inode(in))
        bits |= to_set & (FUSE_SET_ATTR_MTIME | SET_TIMES_NOW);
    return bits;
}

static void setattr_rest(fs_wait *w, int result);

/* chmod, chown, utimensat with times: one SETATTR entry (chain/kv.h);
 * then whatever else the request asked (a size, a file's "now"). */
static void setattr_meta(fuse_req_t req, fs_inode *in, struct stat *attr,
                         int to_set, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    uint32_t uid, gid, perm;
    fs_shown_owner(f, in, NULL, &uid, &gid, &perm);
    int bits = meta_bits(in, to_set);
    bool root = ctx->uid == 0, owner = root || ctx->uid == uid;
    /* as a local filesystem: the owner changes the mode, the group and the
     * times, only root the owner */
    if (((bits & FUSE_SET_ATTR_UID) && attr->st_uid != uid && !root) ||
        ((bits & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_GID |
                  FUSE_SET_ATTR_MTIME)) && !owner)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    if (bits & FUSE_SET_ATTR_UID)
        uid = attr->st_uid;
    if (bits & FUSE_SET_ATTR_GID)
        gid = attr->st_gid;
    if (bits & FUSE_SET_ATTR_MODE)
        perm = attr->st_mode & KV_MODE_PERM;
    fs_wait *w = fs_wait_new(f, req, setattr_rest);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    fs_handle *h = fi ? (fs_handle *)(uintptr_t)fi->fh : NULL;
    fs_wait_hold(w, in, h && h->kind == FS_H_KEY ? h : NULL);
    w->attr = *attr;
    w->to_set = to_set & ~bits;       /* what is left after this entry */
    if (fi)
        w->fi = *fi;
    w->flags = fi != NULL;
    bool explicit = (bits & FUSE_SET_ATTR_MTIME) &&
                    !(to_set & FUSE_SET_ATTR_MTIME_NOW);
    uint64_t ms = !explicit || attr->st_mtim.tv_sec < 0 ? 0
                  : (uint64_t)attr->st_mtim.tv_sec * 1000 +
                    (uint64_t)attr->st_mtim.tv_nsec / 1000000;
    bool pending = !fs_committed(in) && fs_is_pending(in);
    if (explicit && in->of && (in->of->handles || pending)) {
        /* open for writing here: its next commit would stamp its own
         * time, so the explicit one follows that commit (ofile.c) */
        in->of->mtime_set = ms ? ms : 1;
        in->of->dirty = true;
        explicit = false;
    }
    if (pending) {
        /* created here, not committed: its first commit carries it */
        if (bits & SET_OWNER) {
            in->has_creator = true;
            in->c_uid = uid;
            in->c_gid = gid;
            in->c_perm = perm;
        }
        setattr_rest(w, 0);
        return;
    }
    uint8_t mask = (bits & SET_OWNER) ? KV_ATTR_OWNER : 0;
    if (explicit)
        mask |= KV_ATTR_MTIME;
    else if ((bits & SET_TIMES_NOW) && fs_is_dir_inode(in))
        mask |= KV_ATTR_MTIME_NOW;
    if (!mask) {                       /* atime only: not stored */
        setattr_rest(w, 0);
        return;
    }
    /* the path of the file or the directory (kv.h: SETATTR names the
     * path, not the directory's key) */
    size_t klen = in->key_len - (fs_is_dir_inode(in) ? 1 : 0);
    uint8_t op[64 + KV_MAX_KEY];
    int64_t n = in->orphan ? -ENOENT
              : kv_op_encode_setattr(op, sizeof op, in->key, klen, mask, uid,
                                     gid, perm, ms);
    fs_wait_submit(w, op, n);
}

static void setattr_rest(fs_wait *w, int result)
{
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    /* applied and told (rule B2): the inode shows it */
    int rest = w->to_set & (FUSE_SET_ATTR_SIZE | SET_TIMES_NOW);
    fs_inode *in = w->in;
    if (rest && !fs_is_dir_inode(in)) {
        fuse_req_t req = w->req;
        struct stat attr = w->attr;
        struct fuse_file_info fi = w->fi;
        bool has_fi = w->flags;
        in->open_count++;             /* across the free of w */
        w->req = NULL;
        fs_wait_free(w);
        fs_key_setattr(req, in, &attr, rest, has_fi ? &fi : NULL);
        in->open_count--;
        fs_release_inode(fs_of(req), in);
        return;
    }
    reply_attr_of(w->f, w->req, in, w->h);
    fs_wait_free(w);
}

void fs_key_setattr(fuse_req_t req, fs_inode *in, struct stat *attr,
                    int to_set, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    if (meta_bits(in, to_set)) {
        setattr_meta(req, in, attr, to_set, fi);
        return;
    }
    if (fs_is_dir_inode(in) && (to_set & FUSE_SET_ATTR_SIZE)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    fs_handle *h = fi ? (fs_handle *)(uintptr_t)fi->fh : NULL;
    if (h && h->kind != FS_H_KEY)
        h = NULL;
    if (in->of && in->of->handles &&
        (to_set & (FUSE_SET_ATTR_SIZE | SET_TIMES_NOW))) {
        /* open for writing here; a working copy whose writers are all
         * gone (its last commit on its way) is not: the read point below
         * waits for that commit */
        setattr_open(req, in, h, attr, to_set);
        return;
    }
    fs_wait *w = fs_wait_new(f, req, setattr_then);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    fs_wait_hold(w, in, h);
    w->attr = *attr;
    w->to_set = to_set;
    fs_wait_read_file(w, setattr_reads(to_set));
}
