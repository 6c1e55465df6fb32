/*
 * notify.c - kernel cache invalidation off the loop thread: a bounded
 * queue of notices (an inode whose content changed: its attributes and
 * cached pages; a name in a directory that now names something else or
 * nothing, at any depth) and the notifier thread that sends them.
 *
 * Invariants:
 *  1. The notifier thread touches nothing but this queue (under f->lock)
 *     and the session's notify calls, which libfuse allows from any
 *     thread: a notification issued on the loop thread can deadlock
 *     against a request the kernel is waiting on.
 *  2. Notices are queued only when the kernel caches at all (an attr or
 *     entry timeout above 0) and at most FS_NOTICE_MAX wait; one dropped
 *     (full queue, ENOMEM) only means the kernel keeps its entry until
 *     the entry's timeout.
 *  3. A directory that an entry moved away from a name has that old name
 *     invalidated even when the kernel caches nothing: the kernel keeps
 *     the dentry (revalidated on its next use), and a directory inode may
 *     have one dentry only, so a lookup of the new name made inside a
 *     rename(2) (which holds the rename lock) could not move the alias
 *     and would fail with ESTALE.
 *  4. A name is invalidated in the directory inode that holds it: the
 *     root, or the inode of its parent directory's key.  A parent this
 *     mount has no inode for was never looked up (an inode lives while
 *     the kernel holds a lookup on it), so the kernel has no name in it
 *     to drop.  A directory's key ("a/b/") names "b" in "a/".
 */
#include "fs_int.h"

#include <stdlib.h>
#include <string.h>

#define FS_NOTICE_MAX 65536   /* bound on queued invalidations */

void *fs_notifier_main(void *arg)
{
    fs *f = arg;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (!f->notices_head && !f->stopping)
            pthread_cond_wait(&f->cond, &f->lock);
        if (!f->notices_head && f->stopping)
            break;
        fs_notice *n = f->notices_head;
        f->notices_head = n->next;
        if (!f->notices_head)
            f->notices_tail = NULL;
        f->n_notices--;
        uint64_t seq = n->seq;
        pthread_mutex_unlock(&f->lock);
        if (n->open_req) {
            /* the opener is gone: its handle is freed at unmount */
            fuse_reply_open(n->open_req, &n->fi);
            free(n);
            pthread_mutex_lock(&f->lock);
            f->notices_done = seq;
            continue;
        }
        /* errors (ENOENT: the kernel no longer caches it) are expected */
        if (n->ino)
            fuse_lowlevel_notify_inval_inode(f->se, n->ino, 0, 0);
        if (n->name)
            fuse_lowlevel_notify_inval_entry(f->se, n->parent, n->name,
                                             strlen(n->name));
        free(n->name);
        free(n);
        pthread_mutex_lock(&f->lock);
        f->notices_done = seq;
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* Queue a kernel cache invalidation.  Only needed when the kernel caches
 * at all (a timeout above 0); with the default 0 it asks us every time. */
bool fs_kernel_caches(const fs *f)
{
    return f->opt.attr_timeout_s > 0 || f->opt.entry_timeout_s > 0;
}

/* Append n to the queue (the notifier owns it from then on): its
 * sequence number, or 0 if the queue is full. */
static uint64_t enqueue(fs *f, fs_notice *n)
{
    pthread_mutex_lock(&f->lock);
    if (f->n_notices >= FS_NOTICE_MAX) {
        pthread_mutex_unlock(&f->lock);
        return 0;
    }
    if (f->notices_tail)
        f->notices_tail->next = n;
    else
        f->notices_head = n;
    f->notices_tail = n;
    f->n_notices++;
    uint64_t seq = n->seq = ++f->notices_queued;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return seq;
}

bool fs_notice_pending(fs *f, uint64_t seq)
{
    if (!seq)
        return false;
    pthread_mutex_lock(&f->lock);
    bool pending = seq > f->notices_done;
    pthread_mutex_unlock(&f->lock);
    return pending;
}

bool fs_notice_open_reply(fs *f, fuse_req_t req,
                          const struct fuse_file_info *fi)
{
    if (!f->notifier_running)
        return false;
    fs_notice *n = calloc(1, sizeof *n);
    if (!n)
        return false;
    n->open_req = req;
    n->fi = *fi;
    if (!enqueue(f, n)) {
        free(n);
        return false;
    }
    return true;
}

static uint64_t queue_notice(fs *f, uint64_t ino, const char *key,
                             size_t key_len, bool always)
{
    if (!f->notifier_running || (!always && !fs_kernel_caches(f)))
        return 0;
    uint64_t parent = FS_INO_ROOT;
    if (key) {
        if (key_len && key[key_len - 1] == '/')
            key_len--;                /* a directory: its name */
        const char *slash = key_len ? memrchr(key, '/', key_len) : NULL;
        if (slash) {                  /* invariant 3 */
            size_t plen = (size_t)(slash - key) + 1;
            fs_inode *d = fs_inode_by_key(f->inodes, key, plen);
            if (!d || d->orphan)
                return 0;
            parent = d->ino;
            key_len -= plen;
            key += plen;
        }
        if (!key_len)
            return 0;
    }
    fs_notice *n = calloc(1, sizeof *n);
    if (!n)
        return 0;   /* caches expire on their own after their timeout */
    n->ino = ino;
    n->parent = parent;
    if (key && !(n->name = strndup(key, key_len))) {
        free(n);
        return 0;
    }
    uint64_t seq = enqueue(f, n);
    if (!seq) {
        free(n->name);
        free(n);
    }
    return seq;
}

void fs_notice_entry(fs *f, const char *key, size_t key_len)
{
    queue_notice(f, 0, key, key_len, false);
}

uint64_t fs_notice_dir_moved(fs *f, const char *key, size_t key_len)
{
    return queue_notice(f, 0, key, key_len, true);
}

void fs_notice_inode(fs *f, uint64_t ino)
{
    queue_notice(f, ino, NULL, 0, false);
}

void fs_notifier_stop(fs *f)
{
    if (f->notifier_running) {
        pthread_mutex_lock(&f->lock);
        f->stopping = true;
        pthread_cond_signal(&f->cond);
        pthread_mutex_unlock(&f->lock);
        pthread_join(f->notifier, NULL);
        f->notifier_running = false;
    }
    while (f->notices_head) {
        fs_notice *n = f->notices_head;
        f->notices_head = n->next;
        free(n->name);
        free(n);
    }
    f->notices_tail = NULL;
    f->n_notices = 0;
}
