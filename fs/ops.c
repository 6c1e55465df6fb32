/*
 * ops.c - the FUSE request handlers of a paxosfs mount: each request is
 * routed by inode to what owns it (the root and .chain directories, the
 * read-only .status and .chain/<n> files rendered here, key files in
 * names.c, attr.c, open.c, ofile.c, listings in dir.c), and the table of
 * handlers the session is created with.
 *
 * Invariants:
 *  1. Handlers run on the loop thread only.
 *  2. Everything under .chain and .status is read-only: any request that
 *     would change it gets EACCES.
 *  3. Names longer than KV_MAX_NAME bytes get ENAMETOOLONG before anything
 *     else looks at them.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------ read-only views */

void fs_set_times_ms(struct stat *st, uint64_t ms)
{
    st->st_mtim.tv_sec = (time_t)(ms / 1000);
    st->st_mtim.tv_nsec = (long)(ms % 1000) * 1000000L;
    st->st_ctim = st->st_mtim;
    st->st_atim = st->st_mtim;
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
    fs_set_times_ms(st, f->mounted_ms);
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
    fs_set_times_ms(st, fs_wall_ms());
}

/* Render a read-only file; 0 or a positive errno. */
static int render(fs *f, uint64_t ino, char **text, size_t *len)
{
    if (ino == FS_INO_STATUS) {
        int rc = f->be.status_text(f->be.ctx, text, len);
        return rc < 0 ? -rc : 0;
    }
    if (ino == FS_INO_SNAPSHOT) {
        int rc = f->be.snapshot_text ? f->be.snapshot_text(f->be.ctx, text, len)
                                     : -ENOENT;
        return rc < 0 ? -rc : 0;
    }
    if (ino == FS_INO_INCIDENTS) {
        int rc = f->be.incidents_text ? f->be.incidents_text(f->be.ctx, text,
                                                             len)
                                      : -ENOENT;
        return rc < 0 ? -rc : 0;
    }
    if (ino == FS_INO_MEMBERS) {
        int rc = f->be.members_text ? f->be.members_text(f->be.ctx, text, len)
                                    : -ENOENT;
        return rc < 0 ? -rc : 0;
    }
    uint32_t n = 0;
    int rc = f->be.block_text(f->be.ctx, ino - FS_INO_BLOCK_BASE, text, &n);
    *len = n;
    return rc < 0 ? -rc : 0;
}

bool fs_is_block_ino(uint64_t ino)
{
    return ino >= FS_INO_BLOCK_BASE;
}

/* .status, .chain/snapshot, .chain/incidents, .cluster/members and the
 * blocks: read-only text files. */
static bool is_text_ino(uint64_t ino)
{
    return ino == FS_INO_STATUS || ino == FS_INO_SNAPSHOT ||
           ino == FS_INO_INCIDENTS || ino == FS_INO_MEMBERS ||
           fs_is_block_ino(ino);
}

/* A text file whose contents change (no attribute caching). */
static bool is_live_text_ino(uint64_t ino)
{
    return ino == FS_INO_STATUS || ino == FS_INO_SNAPSHOT ||
           ino == FS_INO_INCIDENTS || ino == FS_INO_MEMBERS;
}

bool fs_is_view_dir(uint64_t ino)
{
    return ino == FS_INO_CHAIN || ino == FS_INO_CLUSTER;
}

/* ".chain", ".status" or (with a backend that shows it) ".cluster": a
 * name in the root the mount shows itself. */
static bool is_reserved_name(const fs *f, fuse_ino_t parent, const char *name)
{
    return parent == FS_INO_ROOT &&
           (strcmp(name, FS_RESERVED_CHAIN) == 0 ||
            strcmp(name, FS_RESERVED_STATUS) == 0 ||
            (f->be.members_text && strcmp(name, FS_RESERVED_CLUSTER) == 0));
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

/* ------------------------------------------------------------ requests */

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
    if (fs_stream_lookup(req, parent, name))
        return;
    if (parent == FS_INO_ROOT) {
        if (strcmp(name, FS_RESERVED_CHAIN) == 0) {
            e.ino = FS_INO_CHAIN;
            fill_dir_attr(f, FS_INO_CHAIN, 0555, &e.attr);
            e.attr_timeout = e.entry_timeout = FS_DIR_ATTR_TIMEOUT_S;
            fuse_reply_entry(req, &e);
            return;
        }
        if (strcmp(name, FS_RESERVED_CLUSTER) == 0 && f->be.members_text) {
            e.ino = FS_INO_CLUSTER;
            fill_dir_attr(f, FS_INO_CLUSTER, 0555, &e.attr);
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
    }
    if (parent == FS_INO_CLUSTER && strcmp(name, FS_CLUSTER_MEMBERS) != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if ((parent == FS_INO_CHAIN && (strcmp(name, FS_CHAIN_SNAPSHOT) == 0 ||
                                    strcmp(name, FS_CHAIN_INCIDENTS) == 0)) ||
        parent == FS_INO_CLUSTER) {
        char *text = NULL;
        size_t len = 0;
        uint64_t ino = parent == FS_INO_CLUSTER ? FS_INO_MEMBERS
                       : name[0] == 's' ? FS_INO_SNAPSHOT : FS_INO_INCIDENTS;
        int rc = render(f, ino, &text, &len);
        free(text);
        if (rc) {
            fuse_reply_err(req, rc);
            return;
        }
        e.ino = ino;
        fill_text_attr(f, e.ino, len, &e.attr);
        fuse_reply_entry(req, &e);   /* timeouts 0: a newer one replaces it */
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
    char *path = NULL;
    int rc = fs_child_path(f, parent, name, &path);
    if (rc)
        fuse_reply_err(req, rc);
    else
        fs_key_lookup(req, path);
    free(path);
}

static void op_forget_one(fs *f, fuse_ino_t ino, uint64_t nlookup)
{
    if (ino < FS_INO_FIRST_KEY || fs_is_block_ino(ino))
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
    if (fs_stream_ino(ino)) {
        fs_stream_getattr(req, ino);
        return;
    }
    if (ino == FS_INO_ROOT) {
        fill_dir_attr(f, ino, 0755, &st);
    } else if (fs_is_view_dir(ino)) {
        fill_dir_attr(f, ino, 0555, &st);
    } else if (is_text_ino(ino)) {
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
    fuse_reply_attr(req, &st, is_live_text_ino(ino) ? 0
                                                    : FS_DIR_ATTR_TIMEOUT_S);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                       int to_set, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    if (ino == FS_INO_ROOT || fs_is_view_dir(ino)) {
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
    if (ino < FS_INO_FIRST_KEY || fs_is_block_ino(ino)) {
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
    if (fs_stream_ino(ino)) {
        fs_stream_open(req, ino, fi);
        return;
    }
    if (is_text_ino(ino)) {
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
    if (fs_is_dir_inode(in)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fs_key_open(req, in, fi);
}

/* The path of `name` in `parent` for a request that changes the
 * namespace, or NULL after answering the request. */
static char *change_path(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    char *path = NULL;
    int rc = fs_child_path(fs_of(req), parent, name, &path);
    if (rc == 0 && is_reserved_name(fs_of(req), parent, name))
        rc = EACCES;
    if (rc) {
        free(path);
        fuse_reply_err(req, rc);
        return NULL;
    }
    return path;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                      mode_t mode, struct fuse_file_info *fi)
{
    char *path = change_path(req, parent, name);
    if (path)
        fs_key_create(req, path, mode, fi);
    free(path);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode, dev_t rdev)
{
    (void)mode;
    (void)rdev;
    char *path = change_path(req, parent, name);
    /* devices, FIFOs and sockets have no place in the replicated store
     * (regular files come through create) */
    if (path)
        fuse_reply_err(req, EPERM);
    free(path);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode)
{
    if (is_reserved_name(fs_of(req), parent, name)) {
        fuse_reply_err(req, EEXIST);
        return;
    }
    char *path = change_path(req, parent, name);
    if (path)
        fs_key_mkdir(req, path, mode);
    free(path);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    char *path = change_path(req, parent, name);
    if (path)
        fs_key_unlink(req, path);
    free(path);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (parent == FS_INO_ROOT && strcmp(name, FS_RESERVED_STATUS) == 0) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    char *path = change_path(req, parent, name);
    if (path)
        fs_key_rmdir(req, path);
    free(path);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                      fuse_ino_t newparent, const char *newname,
                      unsigned int flags)
{
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
        fuse_reply_err(req, EINVAL);  /* RENAME_WHITEOUT */
        return;
    }
    if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    char *from = change_path(req, parent, name);
    if (!from)
        return;
    char *to = change_path(req, newparent, newname);
    if (to)
        fs_key_rename(req, from, to, flags);
    free(from);
    free(to);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                    const char *newname)
{
    (void)ino;
    (void)newname;
    fuse_reply_err(req, fs_is_view_dir(newparent) ? EACCES : EPERM);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
                       const char *name)
{
    (void)link;
    (void)name;
    fuse_reply_err(req, fs_is_view_dir(parent) ? EACCES : EPERM);
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
    } else if (h->kind == FS_H_STREAM) {
        fs_stream_read(req, h, size);
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
        fuse_reply_err(req, h->kind == FS_H_TEXT || h->kind == FS_H_STREAM
                            ? EACCES : EISDIR);
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

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                        struct fuse_file_info *fi)
{
    (void)datasync;
    (void)fi;
    fs *f = fs_of(req);
    if (ino == FS_INO_ROOT) {
        fs_ofile_sync_dir(req, "", 0);
        return;
    }
    fs_inode *in = ino >= FS_INO_FIRST_KEY && !fs_is_block_ino(ino)
                   ? fs_inode_by_ino(f->inodes, ino) : NULL;
    if (!in || !fs_is_dir_inode(in) || in->orphan) {
        fuse_reply_err(req, 0);     /* .chain, or a directory gone */
        return;
    }
    fs_ofile_sync_dir(req, in->key, in->key_len);
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
    fs_reply_err_later(req, 0);
}

const struct fuse_lowlevel_ops fs_ops = {
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
    .fsyncdir = op_fsyncdir,
    .opendir = fs_dir_open,
    .readdir = fs_dir_read,
    .releasedir = fs_dir_release,
    .statfs = fs_statfs,
    .getxattr = fs_getxattr,
    .listxattr = fs_listxattr,
    .setxattr = fs_setxattr,
    .removexattr = fs_removexattr,
    .create = op_create,
    .poll = fs_poll,
};
