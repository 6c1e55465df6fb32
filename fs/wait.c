/*
 * wait.c - requests parked on a backend call: a key request that needs a
 * read point, a read of state or a commit keeps its fuse_req_t in an
 * fs_wait, whose continuation runs with the call's result (and what a
 * read found) and answers it; and the mapping of backend failures to what
 * a file operation reports.
 *
 * Invariants:
 *  1. Every fuse_req_t is answered exactly once: either before the handler
 *     returns, or by the continuation of the backend call it was parked on
 *     (fs_wait owns the request until then).
 *  2. A parked request holds a reference on its handle and an open_count
 *     on its inode, so neither is freed under it.
 *  3. What a read found (w->view) is lent to the continuation only: what
 *     it keeps, it copies (names) or references (values).
 *  4. A read of an inode's file delivers that file's value or nothing:
 *     if the file moved to another key while the read waited, it is read
 *     again there; if it was removed, the continuation gets no view.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../base/check.h"

/* Map a backend failure to what a file operation reports: errors that say
 * something precise about the request pass through, the rest is EIO. */
int fs_commit_errno(int result)
{
    switch (-result) {
    case EFBIG: case ENAMETOOLONG: case EINVAL: case ENOENT: case EEXIST:
    case ETIMEDOUT: case ENOSPC: case EROFS: case ENOMEM: case EAGAIN:
    case EHOSTUNREACH: case ENOTDIR: case EISDIR: case ENOTEMPTY:
    case EBUSY: case EXDEV: case ECANCELED:
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
    fs_names_free(&w->names);
    free(w);
}

static void wait_then(void *arg, int result)
{
    fs_wait *w = arg;
    w->view = NULL;         /* nothing read: no earlier read's view */
    w->then(w, result);
}

void fs_wait_read_point(fs_wait *w)
{
    int rc = w->f->be.read_barrier(w->f->be.ctx, wait_then, w);
    if (rc < 0)
        w->then(w, rc);
}

/* ------------------------------------------------------------ reads */

static void read_key_done(void *arg, int result, const fs_entry_view *view)
{
    fs_wait *w = arg;
    w->view = result < 0 ? NULL : view;
    w->then(w, result);     /* may free w */
}

void fs_wait_read_key(fs_wait *w, const char *key, unsigned flags)
{
    w->read_flags = flags;
    int rc = w->f->be.read_key(w->f->be.ctx, key, strlen(key), flags,
                               read_key_done, w);
    if (rc < 0)
        w->then(w, rc);
}

static void read_file_done(void *arg, int result, const fs_entry_view *view);

/* Read w->in's file again, where it is now (the read point is behind us):
 * 0, or a negative errno (-EAGAIN: it kept moving). */
static int reread(fs_wait *w)
{
    if (w->rereads++ >= FS_COMMIT_TRIES)
        return -EAGAIN;
    return w->f->be.read_key(w->f->be.ctx, w->in->key, w->in->key_len,
                             w->read_flags | FS_READ_APPLIED, read_file_done,
                             w);
}

static void read_file_done(void *arg, int result, const fs_entry_view *view)
{
    fs_wait *w = arg;
    const fs_inode *in = w->in;
    const fs_meta *m = fs_committed(in);
    if (result == 0 && m && view->meta.ident != m->ident) {
        /* its file was renamed since the read was asked, and the inode
         * followed it (rule B2): read it where it is now; the read point
         * is behind us already */
        result = reread(w);
        if (result == 0)
            return;
    }
    /* the view is this file's only if the file is still the one its key
     * holds: a removed file has no committed value here any more */
    w->view = result == 0 && m && view->meta.ident == m->ident ? view : NULL;
    w->then(w, result);     /* may free w */
}

/* The read point of a file not committed when it was asked for. */
static void read_point_done(void *arg, int result)
{
    fs_wait *w = arg;
    const fs_inode *in = w->in;
    if (result == 0 && fs_committed(in)) {
        /* its first commit was applied meanwhile: read it (invariant 4) */
        result = reread(w);
        if (result == 0)
            return;
    }
    w->view = NULL;
    w->then(w, result);     /* may free w */
}

void fs_wait_read_file(fs_wait *w, unsigned flags)
{
    CHECK(w->in);
    w->read_flags = flags;
    w->rereads = 0;
    if (!fs_committed(w->in)) {
        /* nothing committed to read: a read point alone keeps the request
         * in order with other mounts' writes */
        w->view = NULL;
        if (flags & FS_READ_APPLIED) {
            w->then(w, 0);
        } else {
            int rc = w->f->be.read_barrier(w->f->be.ctx, read_point_done, w);
            if (rc < 0)
                w->then(w, rc);
        }
        return;
    }
    int rc = w->f->be.read_key(w->f->be.ctx, w->in->key, w->in->key_len,
                               flags, read_file_done, w);
    if (rc < 0)
        w->then(w, rc);
}

/* ------------------------------------------------------------ writes */

/* Propose `op`; then w->then(w, the state machine's result). */
void fs_wait_submit(fs_wait *w, const uint8_t *op, int64_t n)
{
    int rc = (int)n;
    if (n >= 0)
        rc = w->f->be.submit(w->f->be.ctx, op, (uint32_t)n, false, wait_then,
                             w);
    if (rc < 0)
        w->then(w, rc);
}

void fs_wait_hold(fs_wait *w, fs_inode *in, fs_handle *h)
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
fs_wait *fs_wait_named(fuse_req_t req, fs_then_fn then, const char *name,
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

void fs_reply_wait_err(fs_wait *w, int result)
{
    fuse_reply_err(w->req, result < 0 ? fs_commit_errno(result) : 0);
    fs_wait_free(w);
}
