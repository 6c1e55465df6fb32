/*
 * open.c - opening key files (open, create), reading through read-only
 * descriptors, and release.  Writing and commits are in ofile.c.
 *
 * Invariants:
 *  1. A writable open joins the inode's working copy (fs.h, semantics 2);
 *     O_TRUNC or a creation starts a new version of it.
 *  2. A read-only descriptor reads committed values only; a read that does
 *     not continue the previous one, inside the value that one read,
 *     reads the file at a read point (fs.h, semantics 3).  It holds a
 *     reference to a value, a copy: never the state.
 *  3. An open that loads the committed value into a new working copy
 *     (O_RDWR, O_APPEND without O_TRUNC) reads it at a read point; other
 *     opens rely on the lookup that found the file, unless the kernel
 *     caches names (then nobody else took one).  A read-only open reads
 *     the value it opens from the applied state (no read point), so a
 *     file removed before the first read still reads as opened.
 *  4. creat() looks at the name as the state applied here shows it (no
 *     read point: the lookup before it took one).  O_EXCL creates commit
 *     the empty file at once, conditional on the name being free (COND
 *     ABSENT): one creator wins across mounts.
 *  5. An open never fails with ENOENT for a name that the kernel resolved
 *     to a file since removed: it answers ESTALE, and the kernel resolves
 *     the name again (an O_CREAT open then creates the file, as POSIX
 *     asks).
 *  6. With kernel caching on (an attr or entry timeout above 0) a
 *     read-only open takes a read point (the kernel may have skipped the
 *     lookup) and lets the kernel keep the file's pages only if they can
 *     hold nothing but the value it found: the inode remembers the value
 *     of the last such open (cache_*), and an applied change of the file
 *     drops its pages and attributes (notify.c).  Its answer is queued
 *     behind the invalidations already queued, so the opener never reads
 *     through a size or page of an older value.  Writers never use the
 *     page cache (their bytes are this mount's working copy).
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "../base/check.h"

/* --------------------------------------------------------------- open */

/* The answer to an open of a file that is not there (invariant 5): an
 * orphan's name was removed or given to another file after the kernel
 * found it (a cached name, or a removal between the lookup and the open),
 * and ESTALE makes the kernel look the name up again and act on what it
 * finds now (O_CREAT creates); a retried open that fails again reports
 * what it found. */
static int gone_errno(const fs_inode *in)
{
    return in->orphan ? ESTALE : ENOENT;
}

/* Open `in` for a new handle (create: reply with an entry; created: the
 * file is new, not committed yet).  `value`: the committed value of the
 * file as read for this open, needed by a reader and by a writer that
 * loads it into a new working copy.  Answers req. */
static void finish_open(fs *f, fuse_req_t req, fs_inode *in,
                        struct fuse_file_info *fi, const kv_value *value,
                        bool create, bool created)
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
    const fs_meta *now = fs_committed(in);
    h->seen_ident = now ? now->ident : 0;        /* for poll() */
    h->seen_version = now ? now->version : 0;
    /* O_TRUNC|O_APPEND replaces the value: a plain write afterwards */
    h->append = writable && (fi->flags & O_APPEND);
    if (writable) {
        fs_ofile *of = in->of;
        if (!of && !fs_committed(in) && !created) {
            fs_handle_unref(h);
            fuse_reply_err(req, gone_errno(in));
            return;
        }
        if ((fi->flags & O_TRUNC) || created)
            /* a new version: writers that opened before keep theirs */
            of = fs_ofile_new_version(f, in);
        else if (!of) {
            /* committed (else ENOENT above): it was read (invariant 3) */
            CHECK(value);
            of = fs_ofile_get(f, in, value);
        }
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
        if (!fs_committed(in)) {
            fs_handle_unref(h);
            fuse_reply_err(req, gone_errno(in));
            return;
        }
        /* the value at open: a file removed before the first read still
         * reads as it was (a reader always asks for it) */
        CHECK(value);
        kv_value_ref(value);
        h->snapshot = value;
        h->next_off = UINT64_MAX;   /* the first read takes a read point */
    }
    in->open_count++;
    fi->fh = (uint64_t)(uintptr_t)h;
    fi->direct_io = 1;   /* reads always come here: no stale page cache */
    fi->keep_cache = 0;
    /* a reader's close commits nothing (fs_key_flush answers 0 at once):
     * the kernel need not send a FLUSH for it, one request in five of an
     * open-read-close */
    fi->noflush = !writable;
    if (!writable && !create && fs_kernel_caches(f)) {
        /* Kernel caching (invariant 6): a reader reads through the page
         * cache, kept if it holds the value this open found, else
         * dropped; the answer goes after the invalidations queued so far
         * (sizes, pages of older values). */
        fi->direct_io = 0;
        fi->keep_cache = in->cache_ident == value->ident &&
                         in->cache_version == value->version;
        in->cache_ident = value->ident;
        in->cache_version = value->version;
        if (fs_notice_open_reply(f, req, fi))
            return;
    }
    int rc;
    if (create) {
        struct fuse_entry_param e;
        fs_fill_entry(f, in, &e);
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
        fs_reply_wait_err(w, result);
        return;
    }
    finish_open(w->f, w->req, w->in, &w->fi,
                w->view ? w->view->value : NULL, false, false);
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
    bool trunc = fi->flags & O_TRUNC;
    /* No read point when nothing committed is needed fresh: the lookup
     * that found `in` took the read point for the name, a reader's first
     * read takes one for the content, and a writer uses this mount's
     * working copy or an empty one.  With a name cache the kernel may
     * have skipped the lookup: then the open takes the read point, so a
     * file removed elsewhere is not opened. */
    bool point = !((!writable || in->of || trunc) &&
                   f->opt.entry_timeout_s <= 0);
    /* What the open reads: a reader keeps the value it opened, a writer
     * without O_TRUNC loads it into a new working copy. */
    bool value = !writable || (!trunc && (point || !in->of));
    if (!point && !value) {
        finish_open(f, req, in, fi, NULL, false, false);
        return;
    }
    fs_wait *w = fs_wait_new(f, req, open_then);
    if (!w) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    fs_wait_hold(w, in, NULL);
    w->fi = *fi;
    fs_wait_read_file(w, (value ? FS_READ_VALUE : 0) |
                         (point ? 0 : FS_READ_APPLIED));
}

/* The O_EXCL create's entry was applied and this is its name as read
 * since: open what it created. */
static void create_excl_then(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    int err = 0;
    fs_inode *in = fs_resolve(f, w->name, &w->view->meta, &err);
    if (!in)
        fuse_reply_err(w->req, err);
    else
        finish_open(f, w->req, in, &w->fi, w->view->value, true, false);
    fs_wait_free(w);
}

static void create_excl_applied(fs_wait *w, int result)
{
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    w->then = create_excl_then;
    fs_wait_read_key(w, w->name, FS_READ_VALUE | FS_READ_APPLIED);
}

/* The name as the state applied here shows it now (w->view). */
static void create_then(fs_wait *w, int result)
{
    fs *f = w->f;
    struct fuse_file_info *fi = &w->fi;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    const char *name = w->name;
    size_t len = strlen(name);
    fs_reconcile(f, name, len, &w->view->meta);
    fs_inode *in = fs_inode_by_key(f->inodes, name, len);
    if (w->view->meta.ident || (in && fs_key_exists(in, NULL))) {
        if (fi->flags & O_EXCL) {
            fs_reply_wait_err(w, -EEXIST);
            return;
        }
        int err = 0;
        if (!in)
            in = fs_resolve(f, name, &w->view->meta, &err);
        if (!in)
            fuse_reply_err(w->req, err);
        else
            finish_open(f, w->req, in, fi, w->view->value, true, false);
        fs_wait_free(w);
        return;
    }
    if (fi->flags & O_EXCL) {
        /* exclusive across mounts: the empty file commits now, if the name
         * is still free when the entry is applied (COND ABSENT) */
        uint8_t inner[16 + KV_MAX_KEY], op[64 + 2 * KV_MAX_KEY];
        const struct fuse_ctx *ctx = fuse_req_ctx(w->req);
        int64_t n = kv_op_encode_put(inner, sizeof inner, name, len, NULL, 0);
        if (n >= 0)
            n = kv_op_encode_cond(op, sizeof op, KV_COND_ABSENT, name, len, 0,
                                  inner, (size_t)n);
        if (n >= 0)     /* with its creator's owner and permissions */
            n = kv_op_encode_owner(op, sizeof op, ctx->uid, ctx->gid,
                                   w->attr.st_mode & KV_MODE_PERM, op,
                                   (size_t)n);
        w->then = create_excl_applied;
        w->view = NULL;
        fs_wait_submit(w, op, n);
        return;
    }
    /* a new file: it exists on this mount at once and commits when it is
     * flushed after a write, synced or released */
    if (in)
        fs_release_inode(f, in);
    in = fs_inode_get_or_add(f->inodes, name, len);
    if (!in) {
        fs_reply_wait_err(w, -ENOMEM);
        return;
    }
    in->seen = w->view->meta;   /* the name is free (state.c invariant 3) */
    const struct fuse_ctx *ctx = fuse_req_ctx(w->req);
    in->has_creator = true;     /* given to it by its first commit */
    in->c_uid = ctx->uid;
    in->c_gid = ctx->gid;
    in->c_perm = w->attr.st_mode & KV_MODE_PERM;
    in->open_count++;           /* held across finish_open */
    finish_open(f, w->req, in, fi, NULL, true, true);
    in->open_count--;
    fs_release_inode(f, in);    /* if the create failed */
    fs_wait_free(w);
}

void fs_key_create(fuse_req_t req, const char *name, mode_t mode,
                   struct fuse_file_info *fi)
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
    fs_wait *w = fs_wait_named(req, create_then, name, NULL);
    if (!w)
        return;
    w->fi = *fi;
    w->attr.st_mode = mode;     /* the creator's permissions (umask applied) */
    /* the kernel creates after a lookup found nothing at its read point;
     * the state applied since may show the name created elsewhere: look
     * at it as applied here (no second read point) */
    fs_wait_read_key(w, w->name, FS_READ_VALUE | FS_READ_APPLIED);
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

/* Are `a` and `b` the same committed value (a reference each)? */
static bool same_value(const kv_value *a, const kv_value *b)
{
    return a == b || (a && b && a->ident == b->ident &&
                      a->version == b->version);
}

/* Does `v` hold `old` followed by more (an append)? */
static bool extends(const kv_value *v, const kv_value *old)
{
    return v->len >= old->len && memcmp(v->data, old->data, old->len) == 0;
}

static void read_then(fs_wait *w, int result)
{
    fs_handle *h = w->h;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    /* the file's value now; a removed file keeps what it last held */
    const kv_value *v = w->view ? w->view->value : NULL;
    if (v && !same_value(v, h->snapshot)) {
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
    /* what a read at a read point found is what poll() compares with */
    if (v)
        fs_poll_seen(h, v);
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
    fs_wait_hold(w, h->in, h);
    w->size = size;
    w->off = off;
    fs_wait_read_file(w, FS_READ_VALUE);
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
    fs_reply_err_later(req, 0);
}
