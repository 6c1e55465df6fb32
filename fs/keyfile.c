/*
 * keyfile.c - key files of the paxosfs mount: names (lookup, unlink,
 * rename), attributes, opening, reading, and keeping the inode table in
 * line with the applied state.  Writing and commits are in ofile.c.
 *
 * Invariants:
 *  1. Every fuse_req_t is answered exactly once: either before the handler
 *     returns, or by the continuation of the backend call it was parked on
 *     (fs_wait owns the request until then).
 *  2. Everything that reads state waits for a linearizable read point
 *     first (lookup, getattr, open unless it truncates, a read that does
 *     not continue the previous one, setattr of a file not open for
 *     writing here), so it reflects every write whose call returned before
 *     it began, on any mount (fs.h, semantics 3).
 *  3. A parked request holds a reference on its handle and an open_count
 *     on its inode, so neither is freed under it.
 *  4. An inode stands for one file (inode.h): it follows its file when an
 *     entry renames it, and is orphaned when its name is removed or given
 *     to another file (fs_reconcile, run for every key an entry changes).
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Map a backend failure to what a file operation reports: errors that say
 * something precise about the request pass through, the rest is EIO. */
int fs_commit_errno(int result)
{
    switch (-result) {
    case EFBIG: case ENAMETOOLONG: case EINVAL: case ENOENT: case EEXIST:
    case ETIMEDOUT: case ENOSPC: case EROFS: case ENOMEM: case EAGAIN:
    case EHOSTUNREACH:
        return -result;
    default:
        return EIO;
    }
}

/* ------------------------------------------------------------ waits */

fs_wait *fs_wait_new(fs *f, fuse_req_t req, fs_then_fn then)
{
    fs_wait *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->f = f;
    w->req = req;
    w->then = then;
    return w;
}

void fs_wait_free(fs_wait *w)
{
    if (w->h)
        fs_handle_unref(w->h);
    if (w->in) {
        w->in->open_count--;
        fs_release_inode(w->f, w->in);
    }
    free(w->name);
    free(w->newname);
    free(w);
}

static void wait_then(void *arg, int result)
{
    fs_wait *w = arg;
    w->then(w, result);
}

void fs_wait_read_point(fs_wait *w)
{
    int rc = w->f->be.read_barrier(w->f->be.ctx, wait_then, w);
    if (rc < 0)
        w->then(w, rc);
}

/* Propose `op`; then w->then(w, the state machine's result). */
static void wait_submit(fs_wait *w, const uint8_t *op, int64_t n)
{
    int rc = (int)n;
    if (n >= 0)
        rc = w->f->be.submit(w->f->be.ctx, op, (uint32_t)n, false, wait_then,
                             w);
    if (rc < 0)
        w->then(w, rc);
}

static void wait_hold(fs_wait *w, fs_inode *in, fs_handle *h)
{
    if (in) {
        w->in = in;
        in->open_count++;
    }
    if (h) {
        w->h = h;
        h->refs++;
    }
}

/* A wait that keeps copies of the names it acts on (newname may be NULL).
 * Checks the names first; on a bad name or ENOMEM it answers the request
 * itself and returns NULL. */
static fs_wait *wait_named(fuse_req_t req, fs_then_fn then, const char *name,
                           const char *newname)
{
    int rc = fs_check_name(name);
    if (!rc && newname)
        rc = fs_check_name(newname);
    if (rc) {
        fuse_reply_err(req, rc);
        return NULL;
    }
    fs_wait *w = fs_wait_new(fs_of(req), req, then);
    if (!w || !(w->name = strdup(name)) ||
        (newname && !(w->newname = strdup(newname)))) {
        if (w)
            fs_wait_free(w);
        fuse_reply_err(req, ENOMEM);
        return NULL;
    }
    return w;
}

static void reply_wait_err(fs_wait *w, int result)
{
    fuse_reply_err(w->req, result < 0 ? fs_commit_errno(result) : 0);
    fs_wait_free(w);
}

/* ------------------------------------------------------ state and inodes */

static const kv *state_of(fs *f)
{
    return f->be.state(f->be.ctx);
}

const kv_value *fs_committed(fs *f, const fs_inode *in)
{
    if (!in->ident || in->orphan)
        return NULL;
    const kv_value *v = kv_get(state_of(f), in->key, in->key_len);
    return v && v->ident == in->ident ? v : NULL;
}

/* A file created on this mount and not committed yet: its name belongs to
 * this mount's view until its first commit, unlink or rename. */
static bool is_pending(const fs_inode *in)
{
    return in && !in->ident && in->of;
}

void fs_reconcile(fs *f, const char *key, size_t key_len)
{
    const kv_value *v = kv_get(state_of(f), key, key_len);
    fs_inode *in = fs_inode_by_key(f->inodes, key, key_len);
    if (is_pending(in))
        return;
    if (in && (!v || v->ident != in->ident)) {
        /* its file left the name: removed, renamed away or replaced */
        fs_inode_orphan(f->inodes, in);
        fs_notice_entry(f, key, key_len);
        fs_release_inode(f, in);
        in = NULL;
    }
    if (in) {
        fs_notice_inode(f, in->ino);       /* its content changed */
        return;
    }
    fs_inode *moved = v ? fs_inode_by_ident(f->inodes, v->ident) : NULL;
    if (!moved)
        return;
    /* renamed here: the inode follows its file */
    if (!moved->orphan) {
        fs_notice_entry(f, moved->key, moved->key_len);
        fs_inode_orphan(f->inodes, moved);
    }
    if (fs_inode_rekey(f->inodes, moved, key, key_len) < 0)
        fs_release_inode(f, moved);
    fs_notice_entry(f, key, key_len);
}

struct find_ident {
    uint64_t ident;
    char *key;
    size_t key_len;
};

static int find_ident_visit(void *arg, const char *key, size_t key_len,
                            const kv_value *v)
{
    struct find_ident *fi = arg;
    if (v->ident != fi->ident)
        return 0;
    fi->key = strndup(key, key_len);
    fi->key_len = key_len;
    return fi->key ? 1 : -ENOMEM;
}

int fs_find_ident(fs *f, uint64_t ident, char **key, size_t *key_len)
{
    struct find_ident fi = { .ident = ident };
    int rc = kv_scan(state_of(f), "", 0, find_ident_visit, &fi);
    if (rc < 0)
        return rc;
    if (!fi.key)
        return -ENOENT;
    *key = fi.key;
    *key_len = fi.key_len;
    return 0;
}

/* The inode of the file `name` names on this mount after a read point,
 * created if needed; NULL with *err set (ENOENT, ENOMEM). */
static fs_inode *resolve(fs *f, const char *name, int *err)
{
    size_t len = strlen(name);
    fs_reconcile(f, name, len);
    fs_inode *in = fs_inode_by_key(f->inodes, name, len);
    if (in)
        return in;
    const kv_value *v = kv_get(state_of(f), name, len);
    if (!v) {
        *err = ENOENT;
        return NULL;
    }
    in = fs_inode_get_or_add(f->inodes, name, len);
    if (!in) {
        *err = ENOMEM;
        return NULL;
    }
    fs_inode_set_ident(f->inodes, in, v->ident);
    return in;
}

/* ---------------------------------------------------------- attributes */

static void set_times_ms(struct stat *st, uint64_t ms)
{
    st->st_mtim.tv_sec = (time_t)(ms / 1000);
    st->st_mtim.tv_nsec = (long)(ms % 1000) * 1000000L;
    st->st_ctim = st->st_mtim;
    st->st_atim = st->st_mtim;
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
    const kv_value *v = fs_committed(f, in);
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
    set_times_ms(st, ms);
}

/* Does `in` exist for a getattr through `h` (NULL: by path)? */
static bool key_exists(fs *f, const fs_inode *in, const fs_handle *h)
{
    return in->of || fs_committed(f, in) || (h && h->kind == FS_H_KEY);
}

static void fill_entry(fs *f, fs_inode *in, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = in->ino;
    e->generation = 1;
    e->attr_timeout = f->opt.attr_timeout_s;
    e->entry_timeout = f->opt.entry_timeout_s;
    fs_fill_key_attr(f, in, NULL, &e->attr);
}

/* ------------------------------------------------------------- lookup */

static void lookup_then(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        reply_wait_err(w, result);
        return;
    }
    int err = 0;
    fs_inode *in = resolve(f, w->name, &err);
    if (in && !key_exists(f, in, NULL)) {
        fs_release_inode(f, in);
        in = NULL;
        err = ENOENT;
    }
    if (!in) {
        fuse_reply_err(w->req, err);
    } else {
        struct fuse_entry_param e;
        fill_entry(f, in, &e);
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
     * ago: only a read point can say what it names (invariant 2) */
    fs_wait *w = wait_named(req, lookup_then, name, NULL);
    if (w)
        fs_wait_read_point(w);
}

/* ------------------------------------------------------------ getattr */

static void getattr_then(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        reply_wait_err(w, result);
        return;
    }
    if (!key_exists(f, w->in, w->h)) {
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
    wait_hold(w, in, h && h->kind == FS_H_KEY ? h : NULL);
    fs_wait_read_point(w);
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

static void setattr_applied(fs_wait *w, int result)
{
    if (result == -ESTALE && w->tries++ < FS_COMMIT_TRIES) {
        /* changed (or removed) between our read point and our write:
         * read it again */
        w->then = setattr_then;
        fs_wait_read_point(w);
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
        reply_wait_err(w, result);
        return;
    }
    if (in->of && in->of->handles) {
        /* opened for writing here meanwhile */
        setattr_open(w->req, in, NULL, &w->attr, w->to_set);
        w->req = NULL;
        fs_wait_free(w);
        return;
    }
    const kv_value *v = fs_committed(f, in);
    if (!v) {
        reply_wait_err(w, -ENOENT);
        return;
    }
    if (!(w->to_set & (FUSE_SET_ATTR_SIZE | SET_TIMES_NOW))) {
        reply_attr_of(f, w->req, in, NULL);
        fs_wait_free(w);
        return;
    }
    uint64_t len = (w->to_set & FUSE_SET_ATTR_SIZE) ? (uint64_t)w->attr.st_size
                                                     : v->len;
    if (len > KV_MAX_VALUE) {
        reply_wait_err(w, -EFBIG);
        return;
    }
    uint8_t *val = calloc(1, len ? len : 1);
    size_t cap = kv_op_size_cond(in->key_len,
                                 kv_op_size_put(in->key_len, (uint32_t)len));
    uint8_t *op = malloc(cap);
    if (!val || !op) {
        free(val);
        free(op);
        reply_wait_err(w, -ENOMEM);
        return;
    }
    memcpy(val, v->data, len < v->len ? len : v->len);
    int64_t n = kv_op_encode_put(op, cap, in->key, in->key_len, val,
                                 (uint32_t)len);
    if (n >= 0)
        n = kv_op_encode_cond(op, cap, KV_COND_VERSION, in->key, in->key_len,
                              v->version, op, (size_t)n);
    free(val);
    w->then = setattr_applied;
    wait_submit(w, op, n);
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
    wait_hold(w, in, h);
    w->attr = *attr;
    w->to_set = to_set;
    fs_wait_read_point(w);
}

/* --------------------------------------------------------------- open */

/* Open `in` for a new handle (create: reply with an entry; created: the
 * file is new, not committed yet).  Answers req. */
static void finish_open(fs *f, fuse_req_t req, fs_inode *in,
                        struct fuse_file_info *fi, bool create, bool created)
{
    int acc = fi->flags & O_ACCMODE;
    bool writable = acc == O_WRONLY || acc == O_RDWR;
    fs_handle *h = fs_handle_new(f, FS_H_KEY);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    h->in = in;
    h->writable = writable;
    /* O_TRUNC|O_APPEND replaces the value: a plain write afterwards */
    h->append = writable && (fi->flags & O_APPEND);
    if (writable) {
        fs_ofile *of = in->of;
        const kv_value *v = fs_committed(f, in);
        if (!of && !v && !created) {
            fs_handle_unref(h);
            fuse_reply_err(req, ENOENT);
            return;
        }
        if ((fi->flags & O_TRUNC) || created)
            /* a new version: writers that opened before keep theirs */
            of = fs_ofile_new_version(f, in);
        else if (!of)
            of = fs_ofile_get(f, in, v);
        if (!of) {
            fs_handle_unref(h);
            fuse_reply_err(req, ENOMEM);
            return;
        }
        /* the creation or truncation is a change, committed at release
         * if no write commits it before */
        if ((fi->flags & O_TRUNC) || created)
            fs_ofile_truncate(of, 0, 0);
        h->of = of;
        of->handles++;
    } else {
        /* a reader sees committed values only: a file created here and
         * not committed yet does not exist for it (DESIGN.md invariant 4) */
        const kv_value *v = fs_committed(f, in);
        if (!v) {
            fs_handle_unref(h);
            fuse_reply_err(req, ENOENT);
            return;
        }
        kv_value_ref(v);
        h->snapshot = v;
        h->next_off = UINT64_MAX;   /* the first read takes a read point */
    }
    in->open_count++;
    fi->fh = (uint64_t)(uintptr_t)h;
    fi->direct_io = 1;   /* reads always come here: no stale page cache */
    fi->keep_cache = 0;
    int rc;
    if (create) {
        struct fuse_entry_param e;
        fill_entry(f, in, &e);
        rc = fuse_reply_create(req, &e, fi);
        if (rc == 0)
            in->nlookup++;
    } else {
        rc = fuse_reply_open(req, fi);
    }
    if (rc != 0) {
        /* the caller is gone: no release will come, and what this open
         * changed (O_TRUNC) was never seen */
        if (h->of)
            fs_ofile_put(f, h->of, false);
        h->of = NULL;
        in->open_count--;
        fs_handle_unref(h);
        fs_release_inode(f, in);
    }
}

static void open_then(fs_wait *w, int result)
{
    if (result < 0) {
        reply_wait_err(w, result);
        return;
    }
    finish_open(w->f, w->req, w->in, &w->fi, false, false);
    fs_wait_free(w);
}

void fs_key_open(fuse_req_t req, fs_inode *in, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    int acc = fi->flags & O_ACCMODE;
    bool writable = acc == O_WRONLY || acc == O_RDWR;
    /* what can be known before the value is written is reported here,
     * where a shell sees it (a cut-off node: EHOSTUNREACH) */
    int rc = writable && f->be.can_write ? f->be.can_write(f->be.ctx) : 0;
    if (rc < 0) {
        fuse_reply_err(req, fs_commit_errno(rc));
        return;
    }
    if ((!writable || in->of || (fi->flags & O_TRUNC)) &&
        f->opt.entry_timeout_s <= 0) {
        /* nothing committed is read here: the lookup that found `in` took
         * the read point for the name, a reader's first read takes one
         * for the content, and a writer uses this mount's working copy or
         * an empty one.  With a name cache the kernel may have skipped
         * the lookup: then the open takes the read point, so a file
         * removed elsewhere is not opened. */
        finish_open(f, req, in, fi, false, false);
        return;
    }
    fs_wait *w = fs_wait_new(f, req, open_then);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    wait_hold(w, in, NULL);
    w->fi = *fi;
    fs_wait_read_point(w);
}

static void create_excl_then(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        reply_wait_err(w, result);
        return;
    }
    int err = 0;
    fs_inode *in = resolve(f, w->name, &err);
    if (!in)
        fuse_reply_err(w->req, err);
    else
        finish_open(f, w->req, in, &w->fi, true, false);
    fs_wait_free(w);
}

void fs_key_create(fuse_req_t req, const char *name, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    int rc = fs_check_name(name);
    if (!rc && f->be.can_write && (rc = f->be.can_write(f->be.ctx)) < 0)
        rc = fs_commit_errno(rc);
    if (rc) {
        fuse_reply_err(req, rc);
        return;
    }
    /* creat() writes, even with O_RDONLY: the new file commits at release */
    if ((fi->flags & O_ACCMODE) == O_RDONLY)
        fi->flags = (fi->flags & ~O_ACCMODE) | O_RDWR;
    size_t len = strlen(name);
    /* the kernel creates after a lookup found nothing at its read point;
     * the state applied since may show the name created elsewhere */
    fs_reconcile(f, name, len);
    fs_inode *in = fs_inode_by_key(f->inodes, name, len);
    const kv_value *v = kv_get(state_of(f), name, len);
    if (v || (in && key_exists(f, in, NULL))) {
        if (fi->flags & O_EXCL) {
            fuse_reply_err(req, EEXIST);
            return;
        }
        if (!in)
            in = resolve(f, name, &rc);
        if (!in) {
            fuse_reply_err(req, rc);
            return;
        }
        finish_open(f, req, in, fi, true, false);
        return;
    }
    if (fi->flags & O_EXCL) {
        /* exclusive across mounts: the empty file commits now, if the name
         * is still free when the entry is applied (COND ABSENT) */
        fs_wait *w = wait_named(req, create_excl_then, name, NULL);
        if (!w)
            return;
        w->fi = *fi;
        uint8_t inner[16 + KV_MAX_NAME], op[32 + 2 * KV_MAX_NAME];
        int64_t n = kv_op_encode_put(inner, sizeof inner, name, len, NULL, 0);
        if (n >= 0)
            n = kv_op_encode_cond(op, sizeof op, KV_COND_ABSENT, name, len, 0,
                                  inner, (size_t)n);
        wait_submit(w, op, n);
        return;
    }
    /* a new file: it exists on this mount at once and commits when it is
     * flushed after a write, synced or released */
    if (in)
        fs_release_inode(f, in);
    in = fs_inode_get_or_add(f->inodes, name, len);
    if (!in) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    in->open_count++;           /* held across finish_open */
    finish_open(f, req, in, fi, true, true);
    in->open_count--;
    fs_release_inode(f, in);    /* if the create failed */
}

/* --------------------------------------------------------------- read */

static void reply_snapshot(fuse_req_t req, fs_handle *h, size_t size, off_t off)
{
    const kv_value *v = h->snapshot;
    size_t len = v ? v->len : 0;
    if (off < 0 || (uint64_t)off > len) {
        h->next_off = UINT64_MAX;
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t n = len - (size_t)off;
    if (n > size)
        n = size;
    h->next_off = (uint64_t)off + n;    /* == len at the end: tail -f */
    fuse_reply_buf(req, (const char *)v->data + off, n);
}

/* Does `v` hold `old` followed by more (an append)? */
static bool extends(const kv_value *v, const kv_value *old)
{
    return v->len >= old->len && memcmp(v->data, old->data, old->len) == 0;
}

static void read_then(fs_wait *w, int result)
{
    fs *f = w->f;
    fs_handle *h = w->h;
    if (result < 0) {
        reply_wait_err(w, result);
        return;
    }
    /* the file's value now; a removed file keeps what it last held */
    const kv_value *v = fs_committed(f, h->in);
    if (v && v != h->snapshot) {
        if ((uint64_t)w->off == h->next_off && h->snapshot &&
            !extends(v, h->snapshot)) {
            /* a read at the end of a front-to-back pass: the file was
             * replaced meanwhile; the pass ends with the value it read
             * rather than continue into another one */
            h->next_off = UINT64_MAX;
            fuse_reply_buf(w->req, NULL, 0);
            fs_wait_free(w);
            return;
        }
        kv_value_ref(v);
        if (h->snapshot)
            kv_value_unref(h->snapshot);
        h->snapshot = v;
    }
    reply_snapshot(w->req, h, w->size, w->off);
    fs_wait_free(w);
}

void fs_key_read(fuse_req_t req, fs_handle *h, size_t size, off_t off)
{
    if (h->writable) {
        const fs_ofile *of = h->of;
        if (off < 0 || (uint64_t)off >= of->len) {
            fuse_reply_buf(req, NULL, 0);
            return;
        }
        size_t n = of->len - (size_t)off;
        fuse_reply_buf(req, (const char *)of->buf + off, n < size ? n : size);
        return;
    }
    /* A read that continues where the previous one ended, inside the value
     * that one read, is served from that value: a file read front to back
     * in several calls is one committed value, never a mix.  Any other
     * read (the first, another offset, at the end) takes a new read point
     * (fs.h, semantics 3). */
    uint64_t len = h->snapshot ? h->snapshot->len : 0;
    if ((uint64_t)off == h->next_off && (uint64_t)off < len) {
        reply_snapshot(req, h, size, off);
        return;
    }
    fs_wait *w = fs_wait_new(fs_of(req), req, read_then);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    wait_hold(w, h->in, h);
    w->size = size;
    w->off = off;
    fs_wait_read_point(w);
}

void fs_key_release(fuse_req_t req, fs_handle *h)
{
    fs *f = fs_of(req);
    fs_inode *in = h->in;
    if (h->of) {
        fs_ofile *of = h->of;
        h->of = NULL;
        fs_ofile_put(f, of, true);
    }
    in->open_count--;
    fs_handle_unref(h);
    fs_release_inode(f, in);
    fuse_reply_err(req, 0);
}

/* ------------------------------------------------------ unlink, rename */

static void unlink_step(fs_wait *w, int result);

static void unlink_applied(fs_wait *w, int result)
{
    if (result == 0)
        fs_reconcile(w->f, w->name, strlen(w->name));
    reply_wait_err(w, result);
}

static void unlink_step(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        reply_wait_err(w, result);
        return;
    }
    size_t len = strlen(w->name);
    fs_inode *in = fs_inode_by_key(f->inodes, w->name, len);
    if (is_pending(in)) {
        if (in->of->inflight) {
            /* its first commit is on its way: unlink what it creates */
            w->then = unlink_step;
            fs_ofile_wait_idle(in->of, w);
            return;
        }
        /* created here, never committed: nothing to remove elsewhere */
        fs_inode_orphan(f->inodes, in);
        fs_release_inode(f, in);
        reply_wait_err(w, 0);
        return;
    }
    uint8_t op[16 + KV_MAX_NAME];
    w->then = unlink_applied;
    wait_submit(w, op, kv_op_encode_del(op, sizeof op, w->name, len));
}

void fs_key_unlink(fuse_req_t req, const char *name)
{
    fs_wait *w = wait_named(req, unlink_step, name, NULL);
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

static void rename_step(fs_wait *w, int result);

static void rename_applied(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result == 0) {
        /* a file created here under the target name is replaced */
        size_t nlen = strlen(w->newname);
        fs_inode *tgt = fs_inode_by_key(f->inodes, w->newname, nlen);
        if (is_pending(tgt)) {
            fs_inode_orphan(f->inodes, tgt);
            fs_release_inode(f, tgt);
        }
        fs_reconcile(f, w->name, strlen(w->name));
        fs_reconcile(f, w->newname, nlen);
    }
    reply_wait_err(w, result);
}

static void rename_local_applied(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0 && result != -ENOENT) {
        reply_wait_err(w, result);
        return;
    }
    fs_inode *src = fs_inode_by_key(f->inodes, w->name, strlen(w->name));
    if (is_pending(src))
        rename_local(f, src, w->newname);
    fs_reconcile(f, w->newname, strlen(w->newname));
    reply_wait_err(w, 0);
}

static void rename_step(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        reply_wait_err(w, result);
        return;
    }
    size_t len = strlen(w->name), nlen = strlen(w->newname);
    fs_inode *src = fs_inode_by_key(f->inodes, w->name, len);
    fs_inode *tgt = fs_inode_by_key(f->inodes, w->newname, nlen);
    bool noreplace = w->flags & RENAME_NOREPLACE;
    /* a first commit on its way would land under the old name */
    fs_inode *busy = is_pending(src) && src->of->inflight ? src
                   : is_pending(tgt) && tgt->of->inflight ? tgt : NULL;
    if (busy) {
        w->then = rename_step;
        fs_ofile_wait_idle(busy->of, w);
        return;
    }
    if (noreplace && (is_pending(tgt) ||
                      kv_get(state_of(f), w->newname, nlen))) {
        reply_wait_err(w, -EEXIST);
        return;
    }
    if (is_pending(src)) {
        if (src == tgt) {
            reply_wait_err(w, 0);
            return;
        }
        if (!kv_get(state_of(f), w->newname, nlen)) {
            rename_local(f, src, w->newname);
            reply_wait_err(w, 0);
            return;
        }
        /* the committed file under the target name is replaced */
        uint8_t op[16 + KV_MAX_NAME];
        w->then = rename_local_applied;
        wait_submit(w, op, kv_op_encode_del(op, sizeof op, w->newname, nlen));
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
    wait_submit(w, op, n);
}

void fs_key_rename(fuse_req_t req, const char *name, const char *newname,
                   unsigned int flags)
{
    fs_wait *w = wait_named(req, rename_step, name, newname);
    if (!w)
        return;
    w->flags = flags;
    rename_step(w, 0);
}
