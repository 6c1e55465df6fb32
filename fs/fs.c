/*
 * fs.c - the FUSE session of a paxosfs mount: mounting, the non-blocking
 * request pump the node's loop calls, the root and .chain directories,
 * the read-only .status and .chain/<n> files, and the notifier thread that
 * invalidates kernel caches when committed entries change a key.
 *
 * Invariants:
 *  1. Handlers run on the loop thread only; the notifier thread touches
 *     nothing but its queue and the session's notify calls (which libfuse
 *     allows from any thread), because a notification issued on the loop
 *     thread can deadlock against a request the kernel is waiting on.
 *  2. Everything under .chain and .status is read-only: any request that
 *     would change it gets EACCES.
 *  3. Names longer than KV_MAX_NAME bytes get ENAMETOOLONG before anything
 *     else looks at them.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define FS_NOTICE_MAX 65536   /* bound on queued invalidations */
#define FS_BLOCK_NAME_DIGITS 10

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
    free(h->text);
    for (size_t i = 0; i < h->n_names; i++)
        free(h->names[i]);
    free(h->names);
    free(h);
}

void fs_handle_unref(fs_handle *h)
{
    if (!h || --h->refs > 0)
        return;
    handle_free(h);
}

void fs_release_inode(fs *f, fs_inode *in)
{
    if (in->nlookup > 0 || in->open_count > 0 || in->of)
        return;
    if (fs_committed(f, in))
        return;
    fs_inode_release_if_unused(f->inodes, in);
}

int fs_check_name(const char *name)
{
    size_t len = strlen(name);
    if (len > KV_MAX_NAME)
        return ENAMETOOLONG;
    if (len == 0)
        return ENOENT;
    if (strcmp(name, FS_RESERVED_CHAIN) == 0 ||
        strcmp(name, FS_RESERVED_STATUS) == 0)
        return EACCES;
    return 0;
}

static void set_times_ms(struct stat *st, uint64_t ms)
{
    st->st_mtim.tv_sec = (time_t)(ms / 1000);
    st->st_mtim.tv_nsec = (long)(ms % 1000) * 1000000L;
    st->st_ctim = st->st_mtim;
    st->st_atim = st->st_mtim;
}

uint64_t fs_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Directories never change their attributes (their times are the mount
 * time), so the kernel may keep them: no GETATTR of the root on every
 * path walk when it checks permissions. */
#define FS_DIR_ATTR_TIMEOUT_S 3600.0

static void fill_dir_attr(const fs *f, uint64_t ino, mode_t mode, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = S_IFDIR | mode;
    st->st_nlink = 2;
    st->st_uid = f->uid;
    st->st_gid = f->gid;
    st->st_blksize = 4096;
    set_times_ms(st, f->mounted_ms);
}

static void fill_text_attr(const fs *f, uint64_t ino, size_t len, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_uid = f->uid;
    st->st_gid = f->gid;
    st->st_size = (off_t)len;
    st->st_blksize = 4096;
    st->st_blocks = (st->st_size + 511) / 512;
    set_times_ms(st, fs_wall_ms());
}

/* Render a read-only file; 0 or a positive errno. */
static int render(fs *f, uint64_t ino, char **text, size_t *len)
{
    if (ino == FS_INO_STATUS) {
        int rc = f->be.status_text(f->be.ctx, text, len);
        return rc < 0 ? -rc : 0;
    }
    uint32_t n = 0;
    int rc = f->be.block_text(f->be.ctx, ino - FS_INO_BLOCK_BASE, text, &n);
    *len = n;
    return rc < 0 ? -rc : 0;
}

static bool is_block_ino(uint64_t ino)
{
    return ino >= FS_INO_BLOCK_BASE;
}

/* Parse a .chain entry name: digits only, 1..head. */
static uint64_t parse_block_name(fs *f, const char *name)
{
    uint64_t v = 0;
    size_t n = strlen(name);
    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        uint64_t next = v * 10 + (uint64_t)(name[i] - '0');
        if (next < v)
            return 0;
        v = next;
    }
    if (v == 0 || v > f->be.chain_head(f->be.ctx) || v >= (1ull << 55))
        return 0;
    return v;
}

/* ------------------------------------------------------------ handlers */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /* O_TRUNC arrives with open, so truncate+write is one atomic replace */
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    /* durable-on-close: never let the kernel hold dirty pages */
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fs *f = fs_of(req);
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.generation = 1;
    if (strlen(name) > KV_MAX_NAME) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    if (parent == FS_INO_ROOT) {
        if (strcmp(name, FS_RESERVED_CHAIN) == 0) {
            e.ino = FS_INO_CHAIN;
            fill_dir_attr(f, FS_INO_CHAIN, 0555, &e.attr);
            e.attr_timeout = e.entry_timeout = FS_DIR_ATTR_TIMEOUT_S;
            fuse_reply_entry(req, &e);
            return;
        }
        if (strcmp(name, FS_RESERVED_STATUS) == 0) {
            char *text = NULL;
            size_t len = 0;
            int rc = render(f, FS_INO_STATUS, &text, &len);
            free(text);
            if (rc) {
                fuse_reply_err(req, rc);
                return;
            }
            e.ino = FS_INO_STATUS;
            fill_text_attr(f, FS_INO_STATUS, len, &e.attr);
            fuse_reply_entry(req, &e);   /* timeouts 0: size changes */
            return;
        }
        fs_key_lookup(req, name);
        return;
    }
    if (parent == FS_INO_CHAIN) {
        uint64_t index = parse_block_name(f, name);
        if (!index) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        char *text = NULL;
        size_t len = 0;
        int rc = render(f, FS_INO_BLOCK_BASE + index, &text, &len);
        free(text);
        if (rc) {
            fuse_reply_err(req, rc);
            return;
        }
        e.ino = FS_INO_BLOCK_BASE + index;
        fill_text_attr(f, e.ino, len, &e.attr);
        e.attr_timeout = e.entry_timeout = FS_DIR_ATTR_TIMEOUT_S; /* immutable */
        fuse_reply_entry(req, &e);
        return;
    }
    fuse_reply_err(req, fs_inode_by_ino(f->inodes, parent) ? ENOTDIR : ENOENT);
}

static void op_forget_one(fs *f, fuse_ino_t ino, uint64_t nlookup)
{
    if (ino < FS_INO_FIRST_KEY || is_block_ino(ino))
        return;
    fs_inode *in = fs_inode_by_ino(f->inodes, ino);
    if (!in)
        return;
    in->nlookup = nlookup >= in->nlookup ? 0 : in->nlookup - nlookup;
    fs_release_inode(f, in);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    op_forget_one(fs_of(req), ino, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
                            struct fuse_forget_data *forgets)
{
    fs *f = fs_of(req);
    for (size_t i = 0; i < count; i++)
        op_forget_one(f, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    struct stat st;
    if (ino == FS_INO_ROOT) {
        fill_dir_attr(f, ino, 0755, &st);
    } else if (ino == FS_INO_CHAIN) {
        fill_dir_attr(f, ino, 0555, &st);
    } else if (ino == FS_INO_STATUS || is_block_ino(ino)) {
        char *text = NULL;
        size_t len = 0;
        int rc = render(f, ino, &text, &len);
        free(text);
        if (rc) {
            fuse_reply_err(req, rc);
            return;
        }
        fill_text_attr(f, ino, len, &st);
    } else {
        fs_inode *in = fs_inode_by_ino(f->inodes, ino);
        if (!in) {
            fuse_reply_err(req, ENOENT);
            return;
        }
        fs_key_getattr(req, in, fi);
        return;
    }
    fuse_reply_attr(req, &st, ino == FS_INO_STATUS ? 0 : FS_DIR_ATTR_TIMEOUT_S);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                       int to_set, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    if (ino == FS_INO_ROOT || ino == FS_INO_CHAIN) {
        /* setting the owner or mode a directory has succeeds (chmod -R) */
        mode_t mode = ino == FS_INO_ROOT ? 0755 : 0555;
        if ((to_set & ~(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
                        FUSE_SET_ATTR_GID)) ||
            ((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & 07777) != mode) ||
            ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != f->uid) ||
            ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != f->gid)) {
            fuse_reply_err(req, ino == FS_INO_ROOT ? EPERM : EACCES);
            return;
        }
        struct stat st;
        fill_dir_attr(f, ino, mode, &st);
        fuse_reply_attr(req, &st, FS_DIR_ATTR_TIMEOUT_S);
        return;
    }
    if (ino < FS_INO_FIRST_KEY || is_block_ino(ino)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    fs_inode *in = fs_inode_by_ino(f->inodes, ino);
    if (!in) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fs_key_setattr(req, in, attr, to_set, fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    if (ino == FS_INO_STATUS || is_block_ino(ino)) {
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
            fuse_reply_err(req, EACCES);
            return;
        }
        fs_handle *h = fs_handle_new(f, FS_H_TEXT);
        if (!h) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        int rc = render(f, ino, &h->text, &h->text_len);
        if (rc) {
            fs_handle_unref(h);
            fuse_reply_err(req, rc);
            return;
        }
        fi->fh = (uint64_t)(uintptr_t)h;
        fi->direct_io = 1;
        if (fuse_reply_open(req, fi) != 0)
            fs_handle_unref(h);
        return;
    }
    if (ino < FS_INO_FIRST_KEY) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fs_inode *in = fs_inode_by_ino(f->inodes, ino);
    if (!in) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fs_key_open(req, in, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                      mode_t mode, struct fuse_file_info *fi)
{
    (void)mode;
    if (strlen(name) > KV_MAX_NAME) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    if (parent != FS_INO_ROOT) {
        fuse_reply_err(req, parent == FS_INO_CHAIN ? EACCES : ENOTDIR);
        return;
    }
    fs_key_create(req, name, fi);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode, dev_t rdev)
{
    (void)mode;
    (void)rdev;
    if (strlen(name) > KV_MAX_NAME)
        fuse_reply_err(req, ENAMETOOLONG);
    else
        fuse_reply_err(req, parent == FS_INO_CHAIN ? EACCES : EPERM);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode)
{
    (void)mode;
    if (strlen(name) > KV_MAX_NAME)
        fuse_reply_err(req, ENAMETOOLONG);
    else if (parent == FS_INO_CHAIN)
        fuse_reply_err(req, EACCES);
    else if (parent == FS_INO_ROOT && (strcmp(name, FS_RESERVED_CHAIN) == 0 ||
                                       strcmp(name, FS_RESERVED_STATUS) == 0))
        fuse_reply_err(req, EEXIST);
    else /* POSIX: EPERM, the file system does not support directories */
        fuse_reply_err(req, EPERM);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (strlen(name) > KV_MAX_NAME)
        fuse_reply_err(req, ENAMETOOLONG);
    else if (parent == FS_INO_CHAIN)
        fuse_reply_err(req, EACCES);
    else if (parent != FS_INO_ROOT)
        fuse_reply_err(req, ENOTDIR);
    else
        fs_key_unlink(req, name);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (parent == FS_INO_ROOT && strcmp(name, FS_RESERVED_CHAIN) == 0)
        fuse_reply_err(req, EACCES);
    else if (parent == FS_INO_CHAIN)
        fuse_reply_err(req, EACCES);
    else
        fuse_reply_err(req, ENOTDIR);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                      fuse_ino_t newparent, const char *newname,
                      unsigned int flags)
{
    if (strlen(name) > KV_MAX_NAME || strlen(newname) > KV_MAX_NAME) {
        fuse_reply_err(req, ENAMETOOLONG);
        return;
    }
    if (parent == FS_INO_CHAIN || newparent == FS_INO_CHAIN) {
        fuse_reply_err(req, EACCES);
        return;
    }
    if (parent != FS_INO_ROOT || newparent != FS_INO_ROOT) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    if (flags & ~RENAME_NOREPLACE) {
        fuse_reply_err(req, EINVAL);  /* RENAME_EXCHANGE, RENAME_WHITEOUT */
        return;
    }
    fs_key_rename(req, name, newname, flags);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                    const char *newname)
{
    (void)ino;
    (void)newname;
    fuse_reply_err(req, newparent == FS_INO_CHAIN ? EACCES : EPERM);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
                       const char *name)
{
    (void)link;
    (void)name;
    fuse_reply_err(req, parent == FS_INO_CHAIN ? EACCES : EPERM);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)ino;
    fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
    const uint8_t *data = NULL;
    size_t len = 0;
    if (h->kind == FS_H_TEXT) {
        data = (const uint8_t *)h->text;
        len = h->text_len;
    } else if (h->kind == FS_H_KEY) {
        fs_key_read(req, h, size, off);
        return;
    } else {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if (off < 0 || (uint64_t)off >= len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t n = len - (size_t)off;
    fuse_reply_buf(req, (const char *)data + off, n < size ? n : size);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
                     size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
    if (h->kind != FS_H_KEY) {
        fuse_reply_err(req, h->kind == FS_H_TEXT ? EACCES : EISDIR);
        return;
    }
    fs_key_write(req, h, buf, size, off, fi->lock_owner);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
    if (h->kind == FS_H_KEY)
        fs_key_flush(req, h, fi->lock_owner, false);
    else
        fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
                     struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
    if (h->kind == FS_H_KEY)
        fs_key_flush(req, h, fi->lock_owner, true);
    else
        fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
    if (h->kind == FS_H_KEY) {
        fs_key_release(req, h);
        return;
    }
    fs_handle_unref(h);
    fuse_reply_err(req, 0);
}

/* ---------------------------------------------------------- directories */

static int add_name(fs_handle *h, const char *key, size_t key_len)
{
    if (h->n_names % 256 == 0) {
        char **nn = realloc(h->names, (h->n_names + 256) * sizeof *nn);
        if (!nn)
            return -ENOMEM;
        h->names = nn;
    }
    char *copy = strndup(key, key_len);
    if (!copy)
        return -ENOMEM;
    h->names[h->n_names++] = copy;
    return 0;
}

static int collect_name(void *arg, const char *key, size_t key_len,
                        const kv_value *v)
{
    (void)v;
    if (memchr(key, '/', key_len))
        return 0;    /* keys below a prefix are not root entries */
    return add_name(arg, key, key_len);
}

struct pending_names {
    fs *f;
    fs_handle *h;
    int rc;
};

/* Files created on this mount and not committed yet are listed too: on
 * this mount they exist from creat() on. */
static void collect_pending(fs_inode *in, void *arg)
{
    struct pending_names *p = arg;
    if (p->rc || in->orphan || in->ident || !in->of ||
        kv_get(p->f->be.state(p->f->be.ctx), in->key, in->key_len))
        return;
    p->rc = add_name(p->h, in->key, in->key_len);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The root listing at the state now: committed keys and this mount's
 * pending creations, sorted.  0 or a negative errno. */
static int list_root(fs *f, fs_handle *h)
{
    for (size_t i = 0; i < h->n_names; i++)
        free(h->names[i]);
    free(h->names);
    h->names = NULL;
    h->n_names = 0;
    int rc = kv_scan(f->be.state(f->be.ctx), "", 0, collect_name, h);
    if (rc < 0)
        return rc;
    size_t committed = h->n_names;
    struct pending_names p = { f, h, 0 };
    fs_inode_each(f->inodes, collect_pending, &p);
    if (p.rc < 0)
        return p.rc;
    if (h->n_names > committed)
        qsort(h->names, h->n_names, sizeof *h->names, cmp_names);
    return 0;
}

static void opendir_then(fs_wait *w, int result)
{
    fs_handle *h = w->h;
    if (result == 0)
        result = list_root(w->f, h);
    if (result < 0) {
        fuse_reply_err(w->req, fs_commit_errno(result));
    } else {
        w->fi.fh = (uint64_t)(uintptr_t)h;
        if (fuse_reply_open(w->req, &w->fi) == 0)
            h->refs++;          /* the open handle's own reference */
    }
    fs_wait_free(w);            /* drops the wait's reference */
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    if (ino != FS_INO_ROOT && ino != FS_INO_CHAIN) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    fs_handle *h = fs_handle_new(f, ino == FS_INO_ROOT ? FS_H_DIR_ROOT : FS_H_DIR_CHAIN);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (ino == FS_INO_ROOT) {
        /* a listing is a read: it waits for a read point */
        fs_wait *w = fs_wait_new(f, req, opendir_then);
        if (!w) {
            fs_handle_unref(h);
            fuse_reply_err(req, ENOMEM);
            return;
        }
        w->h = h;               /* takes the handle's first reference */
        w->fi = *fi;
        fs_wait_read_point(w);
        return;
    }
    h->chain_head = f->be.chain_head(f->be.ctx);
    fi->fh = (uint64_t)(uintptr_t)h;
    if (fuse_reply_open(req, fi) != 0)
        fs_handle_unref(h);
}

/* Inode number shown by readdir: the key's own when the kernel knows it,
 * else a stable number from a range keys never get (readdir callers skip
 * entries whose number is 0, so some number must be there). */
static uint64_t key_dirent_ino(fs *f, const char *name)
{
    fs_inode *in = fs_inode_by_key(f->inodes, name, strlen(name));
    if (in)
        return in->ino;
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (FS_INO_BLOCK_BASE >> 1) | (h & ((FS_INO_BLOCK_BASE >> 1) - 1));
}

/* Name and type of directory entry number `i` of handle `h`; false past
 * the end.  Root: . .. .chain .status keys...; .chain: . .. blocks. */
static bool dir_entry(fs *f, const fs_handle *h, uint64_t i, char *name,
                      size_t cap, struct stat *st)
{
    memset(st, 0, sizeof *st);
    if (i < 2) {
        snprintf(name, cap, "%s", i == 0 ? "." : "..");
        st->st_ino = h->kind == FS_H_DIR_ROOT || i == 1 ? FS_INO_ROOT : FS_INO_CHAIN;
        st->st_mode = S_IFDIR;
        return true;
    }
    i -= 2;
    if (h->kind == FS_H_DIR_CHAIN) {
        if (i >= h->chain_head)
            return false;
        snprintf(name, cap, "%0*" PRIu64, FS_BLOCK_NAME_DIGITS, i + 1);
        st->st_ino = FS_INO_BLOCK_BASE + i + 1;
        st->st_mode = S_IFREG;
        return true;
    }
    if (i == 0 || i == 1) {
        snprintf(name, cap, "%s", i == 0 ? FS_RESERVED_CHAIN : FS_RESERVED_STATUS);
        st->st_ino = i == 0 ? FS_INO_CHAIN : FS_INO_STATUS;
        st->st_mode = i == 0 ? S_IFDIR : S_IFREG;
        return true;
    }
    i -= 2;
    if (i >= h->n_names)
        return false;
    snprintf(name, cap, "%s", h->names[i]);
    st->st_ino = key_dirent_ino(f, name);
    st->st_mode = S_IFREG;
    return true;
}

static void reply_readdir(fuse_req_t req, fs_handle *h, size_t size,
                          off_t off)
{
    char *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    char name[KV_MAX_NAME + 1];
    struct stat st;
    if (off == 0)
        h->listed = true;
    for (uint64_t i = (uint64_t)off; dir_entry(fs_of(req), h, i, name, sizeof name, &st); i++) {
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st,
                                        (off_t)(i + 1));
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void relist_then(fs_wait *w, int result)
{
    if (result == 0)
        result = list_root(w->f, w->h);
    if (result < 0)
        fuse_reply_err(w->req, fs_commit_errno(result));
    else
        reply_readdir(w->req, w->h, w->size, 0);
    fs_wait_free(w);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    (void)ino;
    fs_handle *h = (fs_handle *)(uintptr_t)fi->fh;
    if (off == 0 && h->listed && h->kind == FS_H_DIR_ROOT) {
        /* rewinddir: list again, at a new read point */
        fs_wait *w = fs_wait_new(fs_of(req), req, relist_then);
        if (!w) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        w->h = h;
        h->refs++;
        w->size = size;
        fs_wait_read_point(w);
        return;
    }
    if (off == 0 && h->kind == FS_H_DIR_CHAIN)
        h->chain_head = fs_of(req)->be.chain_head(fs_of(req)->be.ctx);
    reply_readdir(req, h, size, off);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
    (void)ino;
    fs_handle_unref((fs_handle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    fs *f = fs_of(req);
    const kv *s = f->be.state(f->be.ctx);
    struct statvfs sv;
    memset(&sv, 0, sizeof sv);
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    uint64_t used = (kv_bytes(s) + 4095) / 4096;
    sv.f_blocks = used + (1u << 20);
    sv.f_bfree = sv.f_bavail = 1u << 20;
    sv.f_files = kv_count(s) + (1u << 20);
    sv.f_ffree = sv.f_favail = 1u << 20;
    sv.f_namemax = KV_MAX_NAME;
    fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops fs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .create = op_create,
};

/* ------------------------------------------------------------ notifier */

static void *notifier_main(void *arg)
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
        pthread_mutex_unlock(&f->lock);
        /* errors (ENOENT: the kernel no longer caches it) are expected */
        if (n->ino)
            fuse_lowlevel_notify_inval_inode(f->se, n->ino, 0, 0);
        if (n->name)
            fuse_lowlevel_notify_inval_entry(f->se, FS_INO_ROOT, n->name,
                                             strlen(n->name));
        free(n->name);
        free(n);
        pthread_mutex_lock(&f->lock);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* Queue a kernel cache invalidation.  Only needed when the kernel caches
 * at all (a timeout above 0); with the default 0 it asks us every time. */
static void queue_notice(fs *f, uint64_t ino, const char *key, size_t key_len)
{
    if (!f->notifier_running ||
        (f->opt.attr_timeout_s <= 0 && f->opt.entry_timeout_s <= 0))
        return;
    if (key && memchr(key, '/', key_len))
        return;   /* not a root entry: the kernel cannot have it */
    fs_notice *n = calloc(1, sizeof *n);
    if (!n)
        return;   /* caches expire on their own after their timeout */
    n->ino = ino;
    if (key && !(n->name = strndup(key, key_len))) {
        free(n);
        return;
    }
    pthread_mutex_lock(&f->lock);
    if (f->n_notices >= FS_NOTICE_MAX) {
        pthread_mutex_unlock(&f->lock);
        free(n->name);
        free(n);
        return;
    }
    if (f->notices_tail)
        f->notices_tail->next = n;
    else
        f->notices_head = n;
    f->notices_tail = n;
    f->n_notices++;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

void fs_notice_entry(fs *f, const char *key, size_t key_len)
{
    queue_notice(f, 0, key, key_len);
}

void fs_notice_inode(fs *f, uint64_t ino)
{
    queue_notice(f, ino, NULL, 0);
}

void fs_key_changed(fs *f, const char *key, size_t key_len, bool removed)
{
    (void)removed;   /* judged from the state itself */
    if (f)
        fs_reconcile(f, key, key_len);
}

/* -------------------------------------------------------------- session */

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
    if (pthread_create(&f->notifier, NULL, notifier_main, f) != 0) {
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
    }
    return 0;
}

void fs_unmount(fs *f)
{
    if (!f)
        return;
    if (f->notifier_running) {
        pthread_mutex_lock(&f->lock);
        f->stopping = true;
        pthread_cond_signal(&f->cond);
        pthread_mutex_unlock(&f->lock);
        pthread_join(f->notifier, NULL);
    }
    while (f->notices_head) {
        fs_notice *n = f->notices_head;
        f->notices_head = n->next;
        free(n->name);
        free(n);
    }
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
