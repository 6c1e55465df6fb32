/*
 * watch.c - poll(), select() and epoll on an open key: readable once a
 * new committed value of its file (a write, an append, a chmod, a rename,
 * its removal) was applied on this node since the descriptor last looked
 * at it.
 *
 *   seen_*   what the handle last saw of its file: the committed value
 *            at open, then the value each read at a read point found (a
 *            read-only descriptor; a read that continues a front-to-back
 *            pass keeps it).  A writable descriptor sees its file at open
 *            only (its reads are of its working copy).
 *   ready    the file's committed identity or version differs from what
 *            the handle saw, or the file has no committed value any more
 *            (removed): POLLIN | POLLRDNORM.  Writable handles are
 *            always POLLOUT (a write never waits: it goes to the working
 *            copy).
 *
 * Invariants:
 *  1. A handle holds at most one poll handle (the kernel's latest); it is
 *     used once: notified and destroyed when its file changes, and
 *     destroyed when the handle goes.
 *  2. Wakes are sent for every change of a file's inode (fs_reconcile
 *     runs for every key an applied entry changed, fs.h rule B2), so a
 *     poll() that started before an entry was applied here is woken
 *     once it is; fuse_lowlevel_notify_poll never blocks on a request,
 *     so it is sent from the loop thread.
 *  3. Only inodes with a poll handle cost anything: with no poll pending
 *     (n_polling 0) a change does not look at the handles.
 */
#include "fs_int.h"

#include <errno.h>
#include <poll.h>

void fs_poll_seen(fs_handle *h, const kv_value *v)
{
    h->seen_ident = v ? v->ident : 0;
    h->seen_version = v ? v->version : 0;
}

void fs_poll_drop(fs_handle *h)
{
    if (h->ph) {
        fuse_pollhandle_destroy(h->ph);
        h->ph = NULL;
        h->owner->n_polling--;
    }
}

static unsigned key_mask(const fs_handle *h)
{
    unsigned mask = h->writable ? POLLOUT | POLLWRNORM : 0;
    const fs_meta *m = fs_committed(h->in);
    if (!m) {
        /* removed (or not committed yet: then nothing changed) */
        if (h->seen_ident)
            mask |= POLLIN | POLLRDNORM;
    } else if (m->ident != h->seen_ident || m->version != h->seen_version) {
        mask |= POLLIN | POLLRDNORM;
    }
    return mask;
}

void fs_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
             struct fuse_pollhandle *ph)
{
    (void)ino;
    fs *f = fs_of(req);
    fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
    if (h->kind == FS_H_STREAM) {
        unsigned smask = fs_stream_mask(f, h);
        fs_poll_drop(h);
        if (ph && !smask) {
            h->ph = ph;
            f->n_polling++;
        } else if (ph) {
            fuse_pollhandle_destroy(ph);
        }
        fuse_reply_poll(req, smask);
        return;
    }
    if (h->kind != FS_H_KEY) {
        /* text files and directories: always ready */
        if (ph)
            fuse_pollhandle_destroy(ph);
        fuse_reply_poll(req, POLLIN | POLLRDNORM);
        return;
    }
    unsigned mask = key_mask(h);
    if (ph) {
        /* invariant 1: the newest wait replaces an older one */
        fs_poll_drop(h);
        if (mask & (POLLIN | POLLRDNORM)) {
            fuse_pollhandle_destroy(ph);
        } else {
            h->ph = ph;
            f->n_polling++;
        }
    }
    fuse_reply_poll(req, mask);
}

void fs_poll_wake(fs *f, fs_inode *in)
{
    if (!f->n_polling)
        return;        /* invariant 3 */
    for (fs_handle *h = f->handles; h; h = h->next) {
        if (h->in != in || !h->ph || h->kind != FS_H_KEY ||
            !(key_mask(h) & POLLIN))
            continue;
        fuse_lowlevel_notify_poll(h->ph);
        fs_poll_drop(h);
    }
}

void fs_poll_wake_streams(fs *f)
{
    if (!f->n_polling)
        return;
    for (fs_handle *h = f->handles; h; h = h->next) {
        if (h->kind != FS_H_STREAM || !h->ph || !fs_stream_mask(f, h))
            continue;
        fuse_lowlevel_notify_poll(h->ph);
        fs_poll_drop(h);
    }
}
