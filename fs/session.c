/*
 * session.c - the FUSE session of a paxosfs mount: mounting, the
 * non-blocking request pump the node's loop calls, unmounting, and the
 * lifetime of open-file handles.
 *
 * Invariants:
 *  1. Requests are read and dispatched on the loop thread only (fs_process
 *     never blocks: the session fd is non-blocking), at most 512 per call,
 *     so commits and timers interleave with a flood of requests.
 *  2. A handle lives while it is open or a parked request uses it (refs);
 *     every live handle is on f->handles, so an unmount with files still
 *     open (the kernel sends no release then) frees them all.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

fs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

fs_handle *fs_handle_new(fs *f, uint8_t kind)
{
    fs_handle *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->kind = kind;
    h->refs = 1;
    h->owner = f;
    h->next = f->handles;
    if (f->handles)
        f->handles->prev = h;
    f->handles = h;
    return h;
}

static void handle_free(fs_handle *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        h->owner->handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    if (h->snapshot)
        kv_value_unref(h->snapshot);
    fs_poll_drop(h);
    if (h->kind == FS_H_DIR_ROOT && h->in) {
        /* a directory's listing held its inode */
        h->in->open_count--;
        fs_release_inode(h->owner, h->in);
    }
    free(h->text);
    fs_names_free(&h->names);
    free(h);
}

void fs_handle_unref(fs_handle *h)
{
    if (!h || --h->refs > 0)
        return;
    handle_free(h);
}

uint64_t fs_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* -------------------------------------------------------------- mount */

int fs_mount(const fs_options *opt, const fs_backend *backend,
             const char *mountpoint, fs **out, char *err, size_t err_len)
{
    fs *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    f->be = *backend;
    f->opt = *opt;
    f->uid = getuid();
    f->gid = getgid();
    f->mounted_ms = fs_wall_ms();
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->inodes = fs_inode_table_create();
    if (!f->inodes) {
        snprintf(err, err_len, "out of memory");
        goto fail_free;
    }
    char *argv[8];
    int argc = 0;
    argv[argc++] = "paxosfs";
    argv[argc++] = "-o";
    /* other users: the kernel checks each key's owner and mode */
    argv[argc++] = opt->allow_other
        ? "fsname=paxosfs,subtype=paxosfs,allow_other,default_permissions"
        : "fsname=paxosfs,subtype=paxosfs";
    if (opt->debug)
        argv[argc++] = "-d";
    argv[argc] = NULL;
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    f->se = fuse_session_new(&args, &fs_ops, sizeof fs_ops, f);
    fuse_opt_free_args(&args);   /* libfuse may have grown the list */
    if (!f->se) {
        snprintf(err, err_len, "cannot create the FUSE session");
        goto fail_inodes;
    }
    if (fuse_session_mount(f->se, mountpoint) != 0) {
        snprintf(err, err_len, "cannot mount at %s (is it an existing, empty "
                 "directory, and is /dev/fuse available?)", mountpoint);
        goto fail_session;
    }
    f->mounted = true;
    int fd = fuse_session_fd(f->se);
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        snprintf(err, err_len, "cannot make the FUSE fd non-blocking");
        goto fail_mounted;
    }
    if (pthread_create(&f->notifier, NULL, fs_notifier_main, f) != 0) {
        snprintf(err, err_len, "cannot start the notifier thread");
        goto fail_mounted;
    }
    f->notifier_running = true;
    *out = f;
    return 0;

fail_mounted:
    fuse_session_unmount(f->se);
fail_session:
    fuse_session_destroy(f->se);
fail_inodes:
    fs_inode_table_destroy(f->inodes);
fail_free:
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    free(f);
    return -EIO;
}

int fs_fd(const fs *f)
{
    return fuse_session_fd(f->se);
}

int fs_process(fs *f)
{
    /* bounded so that commits and timers interleave with a request flood */
    for (int i = 0; i < 512; i++) {
        if (fuse_session_exited(f->se))
            return 1;
        int n = fuse_session_receive_buf(f->se, &f->buf);
        if (n == -EAGAIN || n == -EINTR)
            return 0;
        if (n < 0)
            return n;
        if (n == 0)
            return fuse_session_exited(f->se) ? 1 : 0;
        fuse_session_process_buf(f->se, &f->buf);
        if (f->be.between)
            f->be.between(f->be.ctx);
    }
    return 0;
}

void fs_unmount(fs *f)
{
    if (!f)
        return;
    fs_stream_end_all(f);
    fs_notifier_stop(f);
    if (f->mounted)
        fuse_session_unmount(f->se);
    fuse_session_destroy(f->se);
    /* the kernel sends no release for files still open at unmount */
    while (f->handles)
        handle_free(f->handles);
    /* node_close answered every backend call first: nothing in flight */
    fs_ofile_free_all(f);
    free(f->buf.mem);
    fs_inode_table_destroy(f->inodes);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    free(f);
}
