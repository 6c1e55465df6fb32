/*
 * dir.c - the two directories of a paxosfs mount: the root (".", "..",
 * .chain, .status and one entry per key) and .chain (one read-only file
 * per block), and statfs.
 *
 * Invariants:
 *  1. A root listing is a read: opendir, and readdir from offset 0 again
 *     (rewinddir), list at a linearizable read point (fs.h, semantics 3);
 *     readdir at other offsets continues the listing the handle holds.
 *  2. Files created on this mount and not committed yet are listed too
 *     (fs.h, semantics 6), once, in byte order with the committed keys.
 *  3. Every entry has a non-zero inode number: the key's own when the
 *     kernel knows it, else a stable one from a range keys never get.
 */
#include "fs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

int fs_names_add(fs_names *l, const char *name, size_t len)
{
    if (l->n % 256 == 0) {
        char **nv = realloc(l->v, (l->n + 256) * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        l->v = nv;
    }
    char *copy = strndup(name, len);
    if (!copy)
        return -ENOMEM;
    l->v[l->n++] = copy;
    return 0;
}

void fs_names_free(fs_names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The key prefix of the directory a listing handle lists: "" for the
 * root, the directory's key ("a/b/") otherwise. */
static const char *dir_prefix(const fs_handle *h, size_t *len)
{
    if (!h->in) {
        *len = 0;
        return "";
    }
    *len = h->in->key_len;
    return h->in->key;
}

/* The name of a direct child of the directory `prefix` that `key` is, in
 * listing form (a directory keeps its '/'), or NULL for a key further
 * below (or outside). */
static const char *child_name(const char *key, size_t key_len,
                              const char *prefix, size_t plen, size_t *len)
{
    if (key_len <= plen || memcmp(key, prefix, plen) != 0)
        return NULL;
    const char *rest = key + plen;
    size_t rlen = key_len - plen;
    const char *slash = memchr(rest, '/', rlen);
    if (slash && (size_t)(slash - rest) != rlen - 1)
        return NULL;         /* below a directory of this one */
    *len = rlen;
    return rest;
}

struct pending_names {
    fs_names *l;
    size_t committed;          /* l->v[0..committed) are sorted */
    const char *prefix;
    size_t plen;
    int rc;
};

/* Files created on this mount and not committed yet are listed too: on
 * this mount they exist from creat() on (invariant 2). */
static void collect_pending(fs_inode *in, void *arg)
{
    struct pending_names *p = arg;
    size_t len;
    if (p->rc || in->orphan || !fs_is_pending(in))
        return;
    const char *name = child_name(in->key, in->key_len, p->prefix, p->plen,
                                  &len);
    if (!name)
        return;
    char copy[KV_MAX_NAME + 2];
    if (len > KV_MAX_NAME + 1)
        return;
    memcpy(copy, name, len);
    copy[len] = '\0';
    const char *key = copy;
    if (p->committed &&
        bsearch(&key, p->l->v, p->committed, sizeof *p->l->v, cmp_names))
        return;   /* committed elsewhere meanwhile: listed already */
    p->rc = fs_names_add(p->l, name, len);
}

static void list_page_done(void *arg, int result, const fs_dir_page *page);

/* The next page of the listing w gathers, after `after` (NULL: the first,
 * at a read point; the rest from the state as applied since). */
static int list_next(fs_wait *w, const char *after, size_t after_len)
{
    fs *f = w->f;
    bool first = after == NULL;
    if (first)
        after = dir_prefix(w->h, &after_len);   /* keys after the
                                                   directory's own */
    return f->be.list(f->be.ctx, after, after_len, FS_LIST_MAX,
                      first ? 0 : FS_READ_APPLIED, list_page_done, w);
}

static void list_page_done(void *arg, int result, const fs_dir_page *page)
{
    fs_wait *w = arg;
    fs *f = w->f;
    size_t plen;
    const char *prefix = dir_prefix(w->h, &plen);
    bool past = false;           /* a key after the directory's keys */
    for (uint32_t i = 0; result == 0 && i < page->n; i++) {
        const fs_entry_view *e = &page->entries[i];
        if (e->key_len < plen || memcmp(e->key, prefix, plen) != 0) {
            past = true;
            break;
        }
        size_t len;
        const char *name = child_name(e->key, e->key_len, prefix, plen, &len);
        if (name)                /* not below a directory of this one */
            result = fs_names_add(&w->names, name, len);
    }
    if (result == 0 && !past && page->more && page->n > 0) {
        const fs_entry_view *last = &page->entries[page->n - 1];
        result = list_next(w, last->key, last->key_len);
        if (result == 0)
            return;
    }
    if (result == 0) {
        struct pending_names p = { &w->names, w->names.n, prefix, plen, 0 };
        fs_inode_each(f->inodes, collect_pending, &p);
        result = p.rc;
        if (result == 0 && w->names.n > p.committed)
            qsort(w->names.v, w->names.n, sizeof *w->names.v, cmp_names);
    }
    if (result == 0) {
        /* the handle lists what was gathered from now on */
        fs_names_free(&w->h->names);
        w->h->names = w->names;
        w->names = (fs_names){ 0 };
    }
    w->then(w, result);
}

void fs_dir_list(fs_wait *w)
{
    fs_names_free(&w->names);
    int rc = list_next(w, NULL, 0);
    if (rc < 0)
        w->then(w, rc);
}

static void opendir_then(fs_wait *w, int result)
{
    fs_handle *h = w->h;
    if (result < 0) {
        fuse_reply_err(w->req, fs_commit_errno(result));
    } else {
        w->fi.fh = (uint64_t)(uintptr_t)h;
        if (fuse_reply_open(w->req, &w->fi) == 0)
            h->refs++;          /* the open handle's own reference */
    }
    fs_wait_free(w);            /* drops the wait's reference */
}

void fs_dir_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    fs_inode *in = NULL;
    if (ino == FS_INO_SINCE) {
        /* .chain/since lists nothing: its names are indexes (stream.c) */
        fs_handle *h = fs_handle_new(f, FS_H_DIR_CHAIN);
        if (!h) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        h->since_dir = true;
        fi->fh = (uint64_t)(uintptr_t)h;
        if (fuse_reply_open(req, fi) != 0)
            fs_handle_unref(h);
        return;
    }
    if (ino == FS_INO_CLUSTER) {
        /* .cluster lists its one file: no read point */
        fs_handle *h = fs_handle_new(f, FS_H_DIR_CLUSTER);
        if (!h) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        fi->fh = (uint64_t)(uintptr_t)h;
        if (fuse_reply_open(req, fi) != 0)
            fs_handle_unref(h);
        return;
    }
    if (ino != FS_INO_ROOT && ino != FS_INO_CHAIN) {
        in = ino >= FS_INO_FIRST_KEY && !fs_is_block_ino(ino)
             ? fs_inode_by_ino(f->inodes, ino) : NULL;
        if (!in || !fs_is_dir_inode(in)) {
            fuse_reply_err(req, in || ino == FS_INO_STATUS ||
                                ino == FS_INO_MEMBERS ||
                                fs_is_block_ino(ino) ? ENOTDIR : ENOENT);
            return;
        }
    }
    fs_handle *h = fs_handle_new(f, ino == FS_INO_CHAIN ? FS_H_DIR_CHAIN
                                                        : FS_H_DIR_ROOT);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    if (ino != FS_INO_CHAIN) {
        /* a listing is a read: it starts at a read point */
        fs_wait *w = fs_wait_new(f, req, opendir_then);
        if (!w) {
            fs_handle_unref(h);
            fuse_reply_err(req, ENOMEM);
            return;
        }
        if (in) {
            h->in = in;          /* the handle holds the directory's inode */
            in->open_count++;
        }
        w->h = h;               /* takes the handle's first reference */
        w->fi = *fi;
        fs_dir_list(w);
        return;
    }
    fs_chain_listing(f, h);
    fi->fh = (uint64_t)(uintptr_t)h;
    if (fuse_reply_open(req, fi) != 0)
        fs_handle_unref(h);
}

/* What a .chain listing shows: the blocks base+1..head, and a snapshot
 * entry when there is a snapshot. */
void fs_chain_listing(fs *f, fs_handle *h)
{
    h->chain_head = f->be.chain_head(f->be.ctx);
    h->chain_base = f->be.chain_base ? f->be.chain_base(f->be.ctx) : 0;
    if (h->chain_base > h->chain_head)
        h->chain_base = h->chain_head;
    h->has_snapshot = false;
    if (f->be.snapshot_text) {
        char *text = NULL;
        size_t len = 0;
        h->has_snapshot = f->be.snapshot_text(f->be.ctx, &text, &len) == 0;
        free(text);
    }
    h->has_incidents = false;
    if (f->be.incidents_text) {
        char *text = NULL;
        size_t len = 0;
        h->has_incidents = f->be.incidents_text(f->be.ctx, &text, &len) == 0 &&
                           len > 0;
        free(text);
    }
}

/* Inode number shown by readdir: the key's own when the kernel knows it,
 * else a stable number from a range keys never get (readdir callers skip
 * entries whose number is 0, so some number must be there). */
static uint64_t key_dirent_ino(fs *f, const fs_handle *h, const char *name)
{
    size_t plen;
    const char *prefix = dir_prefix(h, &plen);
    char key[KV_MAX_KEY + 1];
    size_t nlen = strlen(name);
    uint64_t hash = 1469598103934665603ull;
    if (plen + nlen <= KV_MAX_KEY) {
        memcpy(key, prefix, plen);
        memcpy(key + plen, name, nlen);
        fs_inode *in = fs_inode_by_key(f->inodes, key, plen + nlen);
        if (in)
            return in->ino;
        for (size_t i = 0; i < plen + nlen; i++)
            hash = (hash ^ (unsigned char)key[i]) * 1099511628211ull;
    }
    return (FS_INO_BLOCK_BASE >> 1) | (hash & ((FS_INO_BLOCK_BASE >> 1) - 1));
}

/* Name and type of directory entry number `i` of handle `h`; false past
 * the end.  Root: . .. .chain .status [.cluster] names...; another
 * directory: . .. names...; .chain: . .. [snapshot] [incidents] blocks;
 * .cluster: . .. members.  A directory's name is listed with
 * its '/', which the entry does not show. */
static bool dir_entry(fs *f, const fs_handle *h, uint64_t i, char *name,
                      size_t cap, struct stat *st)
{
    memset(st, 0, sizeof *st);
    if (i < 2) {
        snprintf(name, cap, "%s", i == 0 ? "." : "..");
        st->st_ino = h->kind == FS_H_DIR_CHAIN && i == 0 ? FS_INO_CHAIN
                   : h->kind == FS_H_DIR_CLUSTER && i == 0 ? FS_INO_CLUSTER
                   : h->in && i == 0 ? h->in->ino : FS_INO_ROOT;
        st->st_mode = S_IFDIR;
        return true;
    }
    i -= 2;
    if (h->kind == FS_H_DIR_CLUSTER) {
        if (i > 0)
            return false;
        snprintf(name, cap, "%s", FS_CLUSTER_MEMBERS);
        st->st_ino = FS_INO_MEMBERS;
        st->st_mode = S_IFREG;
        return true;
    }
    if (h->kind == FS_H_DIR_CHAIN) {
        if (h->has_snapshot) {
            if (i == 0) {
                snprintf(name, cap, "%s", FS_CHAIN_SNAPSHOT);
                st->st_ino = FS_INO_SNAPSHOT;
                st->st_mode = S_IFREG;
                return true;
            }
            i--;
        }
        if (h->has_incidents) {
            if (i == 0) {
                snprintf(name, cap, "%s", FS_CHAIN_INCIDENTS);
                st->st_ino = FS_INO_INCIDENTS;
                st->st_mode = S_IFREG;
                return true;
            }
            i--;
        }
        if (i >= h->chain_head - h->chain_base)
            return false;
        uint64_t index = h->chain_base + i + 1;
        snprintf(name, cap, "%0*" PRIu64, FS_BLOCK_NAME_DIGITS, index);
        st->st_ino = FS_INO_BLOCK_BASE + index;
        st->st_mode = S_IFREG;
        return true;
    }
    if (!h->in && (i == 0 || i == 1)) {
        snprintf(name, cap, "%s", i == 0 ? FS_RESERVED_CHAIN : FS_RESERVED_STATUS);
        st->st_ino = i == 0 ? FS_INO_CHAIN : FS_INO_STATUS;
        st->st_mode = i == 0 ? S_IFDIR : S_IFREG;
        return true;
    }
    if (!h->in)
        i -= 2;
    if (!h->in && f->be.members_text) {
        if (i == 0) {
            snprintf(name, cap, "%s", FS_RESERVED_CLUSTER);
            st->st_ino = FS_INO_CLUSTER;
            st->st_mode = S_IFDIR;
            return true;
        }
        i--;
    }
    if (i >= h->names.n)
        return false;
    snprintf(name, cap, "%s", h->names.v[i]);
    st->st_ino = key_dirent_ino(f, h, name);
    size_t len = strlen(name);
    st->st_mode = S_IFREG;
    if (len > 1 && name[len - 1] == '/') {
        name[len - 1] = '\0';
        st->st_mode = S_IFDIR;
    }
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
    char name[KV_MAX_NAME + 2];
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
    if (result < 0)
        fuse_reply_err(w->req, fs_commit_errno(result));
    else
        reply_readdir(w->req, w->h, w->size, 0);
    fs_wait_free(w);
}

void fs_dir_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
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
        fs_dir_list(w);
        return;
    }
    if (off == 0 && h->kind == FS_H_DIR_CHAIN && !h->since_dir)
        fs_chain_listing(fs_of(req), h);
    reply_readdir(req, h, size, off);
}

void fs_dir_release(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
    (void)ino;
    fs_handle_unref((fs_handle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void statfs_done(void *arg, int result, const fs_usage *u)
{
    fuse_req_t req = arg;
    if (result < 0) {
        fuse_reply_err(req, fs_commit_errno(result));
        return;
    }
    struct statvfs sv;
    memset(&sv, 0, sizeof sv);
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    uint64_t used = (u->bytes + 4095) / 4096;
    sv.f_blocks = used + (1u << 20);
    sv.f_bfree = sv.f_bavail = 1u << 20;
    sv.f_files = u->keys + (1u << 20);
    sv.f_ffree = sv.f_favail = 1u << 20;
    sv.f_namemax = KV_MAX_NAME;
    fuse_reply_statfs(req, &sv);
}

void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    fs *f = fs_of(req);
    int rc = f->be.usage(f->be.ctx, statfs_done, req);
    if (rc < 0)
        fuse_reply_err(req, fs_commit_errno(rc));
}
