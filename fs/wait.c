/*
 * wait.c - requests parked on a backend call: a key request that needs a
 * read point or a commit keeps its fuse_req_t in an fs_wait, whose
 * continuation runs with the call's result and answers it; and the
 * mapping of backend failures to what a file operation reports.
 *
 * Invariants:
 *  1. Every fuse_req_t is answered exactly once: either before the handler
 *     returns, or by the continuation of the backend call it was parked on
 *     (fs_wait owns the request until then).
 *  2. A parked request holds a reference on its handle and an open_count
 *     on its inode, so neither is freed under it.
 */
#include "fs_int.h"

#include <errno.h>
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
