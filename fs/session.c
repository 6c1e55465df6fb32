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
 *  3. Lookups in one directory run in parallel when the kernel offers it
 *     (FUSE_PARALLEL_DIROPS).  libfuse 3.14 wants the capability by
 *     default but never puts the flag into its INIT reply, so the kernel
 *     took every LOOKUP and READDIR of a directory one at a time, each
 *     waiting for the one before it to be answered: on a mount whose
 *     lookups wait for a read point from the leader, 64 readers of one
 *     directory ran one lookup at a time.  The session's reads and writes
 *     go through io_read and io_writev (libfuse's custom I/O, the same
 *     system calls): the INIT request says whether the kernel offers the
 *     flag, and only then is it added to the INIT reply, nothing else
 *     changed.  Nothing in the mount relies on lookups being serialised:
 *     the kernel still holds a directory's lock for every change in it,
 *     and never has two lookups of one name in flight.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

/* Kernel protocol facts (linux/fuse.h): the request header is 40 bytes
 * (len, opcode, unique at 8), the reply header 16 (len, error at 4,
 * unique at 8); INIT's argument and reply both hold the flags at 12. */
#define KERNEL_IN_HEADER 40
#define KERNEL_OUT_HEADER 16
#define KERNEL_OP_INIT 26
#define KERNEL_INIT_FLAGS_AT 12
#define KERNEL_PARALLEL_DIROPS (1u << 18)

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
    fs *f = userdata;
    ssize_t n = read(fd, buf, len);
    if (n >= KERNEL_IN_HEADER + KERNEL_INIT_FLAGS_AT + 4 &&
        atomic_load(&f->init_unique) == 0 && !atomic_load(&f->parallel_dirops)) {
        const uint8_t *p = buf;
        uint32_t opcode, flags;
        uint64_t unique;
        memcpy(&opcode, p + 4, 4);
        if (opcode == KERNEL_OP_INIT) {
            memcpy(&unique, p + 8, 8);
            memcpy(&flags, p + KERNEL_IN_HEADER + KERNEL_INIT_FLAGS_AT, 4);
            atomic_store(&f->dirops_offered,
                         (flags & KERNEL_PARALLEL_DIROPS) != 0);
            atomic_store(&f->init_unique, unique);
        }
    }
    return n;   /* errno as read left it: libfuse looks at it */
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    fs *f = userdata;
    uint64_t init = atomic_load(&f->init_unique);
    if (init && count >= 2 && iov[0].iov_len >= KERNEL_OUT_HEADER &&
        iov[1].iov_len >= KERNEL_INIT_FLAGS_AT + 4 && iov[1].iov_len <= 256) {
        const uint8_t *h = iov[0].iov_base;
        uint64_t unique;
        int32_t error;
        memcpy(&unique, h + 8, 8);
        memcpy(&error, h + 4, 4);
        if (unique == init) {
            atomic_store(&f->init_unique, 0);
            if (error == 0 && atomic_load(&f->dirops_offered) && count <= 4) {
                uint8_t out[256];
                uint32_t flags;
                memcpy(out, iov[1].iov_base, iov[1].iov_len);
                memcpy(&flags, out + KERNEL_INIT_FLAGS_AT, 4);
                flags |= KERNEL_PARALLEL_DIROPS;
                memcpy(out + KERNEL_INIT_FLAGS_AT, &flags, 4);
                struct iovec v[4];
                memcpy(v, iov, (size_t)count * sizeof *v);
                v[1].iov_base = out;
                ssize_t n = writev(fd, v, count);
                if (n >= 0)
                    atomic_store(&f->parallel_dirops, true);
                return n;
            }
        }
    }
    ssize_t n;
    if (fs_reply_queue(f, iov, count, &n))
        return n;
    return writev(fd, iov, count);
}

bool fs_parallel_dirops(const fs *f)
{
    return f && atomic_load(&f->parallel_dirops);
}

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
    /* invariant 3 */
    static const struct fuse_custom_io io = { .read = io_read,
                                              .writev = io_writev };
    if (fuse_session_custom_io(f->se, &io, fd) != 0) {
        snprintf(err, err_len, "cannot set up the FUSE session's I/O");
        goto fail_mounted;
    }
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

int fs_process_one(fs *f)
{
    if (fuse_session_exited(f->se))
        return 2;
    int n = fuse_session_receive_buf(f->se, &f->buf);
    if (n == -EAGAIN || n == -EINTR)
        return 0;
    if (n < 0)
        return n;
    if (n == 0)
        return fuse_session_exited(f->se) ? 2 : 0;
    fuse_session_process_buf(f->se, &f->buf);
    f->dispatched++;
    if (f->be.between)
        f->be.between(f->be.ctx);
    return 1;
}

uint64_t fs_dispatched(const fs *f)
{
    return f->dispatched;
}

int fs_process(fs *f)
{
    /* bounded so that commits and timers interleave with a request flood */
    for (int i = 0; i < 512; i++) {
        int rc = fs_process_one(f);
        if (rc != 1)
            return rc == 2 ? 1 : rc;
    }
    return 0;
}

void fs_unmount(fs *f)
{
    if (!f)
        return;
    fs_stream_end_all(f);
    fs_notifier_stop(f);
    uint32_t none = 0;
    fs_send_answers(f, false, &none);   /* reply.c invariant 2 */
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
