/*
 * attr.c - attributes of key files: what stat shows (the working copy
 * while the file is open for writing here, else the committed value),
 * getattr, and setattr (truncate and touch; owner, mode and times are
 * fixed, fs.h semantics 7).
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
    if (fs_is_dir_inode(in)) {
        /* a directory: its time is the commit time of its creation (or
         * of the rename that moved it last) */
        st->st_mode = S_IFDIR | 0755;
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

void fs_key_setattr(fuse_req_t req, fs_inode *in, struct stat *attr,
                    int to_set, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    /* keys have one owner and mode (the mounting user's, 0644): setting
     * them to what they are succeeds, anything else is EPERM */
    if (((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & 07777) != 0644) ||
        ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != f->uid) ||
        ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != f->gid)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    /* the mtime is the commit time the leader stamps: explicit times
     * cannot be stored (README), only "now" (touch) */
    if (((to_set & FUSE_SET_ATTR_ATIME) && !(to_set & FUSE_SET_ATTR_ATIME_NOW)) ||
        ((to_set & FUSE_SET_ATTR_MTIME) && !(to_set & FUSE_SET_ATTR_MTIME_NOW))) {
        fuse_reply_err(req, EPERM);
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
