/*
 * disk.c - owns the simulator's fake disk (see disk.h for the model).
 *
 * Layout: volumes hold names (the page cache's `cur` and the disk's
 * `dur`: path -> inode) and inodes (page-cache bytes `cur`, disk bytes
 * `dsk`); one pending journal per volume lists, in order, every write,
 * truncate and name operation not yet made durable.  A sync applies its
 * file's (or directory's) entries to the disk and marks them done; a
 * crash replays a prefix of the rest onto the disk and makes the page
 * cache equal to it.  Descriptors are a global table (fds from
 * FDISK_FD_BASE on, never mistaken for real ones).
 */
#include "disk.h"
#include "sim.h"

#include "../../chain/chain_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FDISK_FD_BASE 100000
#define FDISK_MAX_FDS 256
#define FDISK_PATH 128
#define FDISK_SECTOR 512

/* A byte image: `size` bytes, of which [len, size) are zero and not
 * stored (the stores preallocate with zeros: no copies of them). */
typedef struct fd_img {
    uint8_t *buf;
    uint64_t len, size, cap;
} fd_img;

typedef struct fd_inode {
    fd_img cur;                 /* what the page cache holds */
    fd_img dsk;                 /* what the disk holds */
    uint32_t pending;           /* journal entries naming it, not done */
    bool mark;                  /* garbage collection */
} fd_inode;

typedef struct fd_name {
    char path[FDISK_PATH];
    fd_inode *ino;              /* NULL: a directory */
} fd_name;

enum { P_WRITE = 1, P_TRUNC, P_CREATE, P_MKDIR, P_RENAME, P_UNLINK };

typedef struct fd_pend {
    uint8_t kind;
    bool done;
    uint32_t ticket;            /* a deferred sync covers it (0: none) */
    bool zeros;                 /* a write of zeros (bytes NULL) */
    fd_inode *ino;              /* write, truncate, create */
    uint64_t off, len;          /* write: range; truncate: size (off) */
    uint8_t *bytes;             /* write */
    char a[FDISK_PATH], b[FDISK_PATH];   /* names */
} fd_pend;

typedef struct fd_names {
    fd_name *v;
    uint32_t n, cap;
} fd_names;

typedef struct fd_vol {
    char root[32];
    fd_names cur, dur, saved;
    bool has_saved;
    fd_pend *p;
    uint32_t n_p, cap_p, done_p;
    fd_inode **inodes;
    uint32_t n_inodes, cap_inodes, live_after_gc;
    fdisk_faults faults;
    int crash_mode;             /* FDISK_CRASH_* */
    uint32_t deferring;         /* ticket of the deferred sync running */
    int sick;                   /* fdisk_set_sick: 0, -EIO or -ENOSPC */
} fd_vol;

typedef struct fd_desc {
    bool used;
    uint32_t vol;
    fd_inode *ino;              /* NULL: a directory */
    char path[FDISK_PATH];      /* a directory's path */
} fd_desc;

static struct {
    bool ready;
    uint32_t n_vols;
    fd_vol vols[FDISK_MAX_VOLS + 1];
    fd_desc fds[FDISK_MAX_FDS];
    sim_rng rng;
    fdisk_counts counts;
    fdisk_synced_fn synced;
    void *synced_arg;
    const chain_io_ops *prev;
} D;

/* ---------------------------------------------------------- helpers */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "sim: fake disk out of memory\n");
        abort();
    }
    return q;
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* Store bytes up to `upto` (zero-filled). */
static void img_store(fd_img *m, uint64_t upto)
{
    if (upto <= m->len)
        return;
    if (upto > m->cap) {
        uint64_t c = m->cap ? m->cap : 4096;
        while (c < upto)
            c *= 2;
        m->buf = xrealloc(m->buf, (size_t)c);
        m->cap = c;
    }
    memset(m->buf + m->len, 0, (size_t)(upto - m->len));
    m->len = upto;
}

static void img_write(fd_img *m, uint64_t off, const uint8_t *src,
                      uint64_t n)
{
    if (off + n > m->size)
        m->size = off + n;
    if (!src) {                  /* zeros */
        if (off < m->len) {
            uint64_t end = off + n < m->len ? off + n : m->len;
            memset(m->buf + off, 0, (size_t)(end - off));
        }
        return;
    }
    img_store(m, off + n);
    memcpy(m->buf + off, src, (size_t)n);
}

static void img_truncate(fd_img *m, uint64_t size)
{
    if (size < m->len)
        m->len = size;
    m->size = size;
}

static void img_read(const fd_img *m, uint64_t off, uint8_t *dst, uint64_t n)
{
    uint64_t stored = off < m->len ? m->len - off : 0;
    if (stored > n)
        stored = n;
    if (stored)
        memcpy(dst, m->buf + off, (size_t)stored);
    if (n > stored)
        memset(dst + stored, 0, (size_t)(n - stored));
}

static void img_copy(fd_img *dst, const fd_img *src)
{
    dst->len = 0;
    img_store(dst, src->len);
    if (src->len)
        memcpy(dst->buf, src->buf, (size_t)src->len);
    dst->size = src->size;
}

/* Volume and relative path of an absolute one; NULL when outside. */
static fd_vol *vol_of(const char *path, uint32_t *vol_id, const char **rel)
{
    size_t rl = strlen(FDISK_ROOT);
    if (strncmp(path, FDISK_ROOT, rl) != 0)
        return NULL;
    const char *p = path + rl;
    uint32_t v = 0;
    while (*p >= '0' && *p <= '9')
        v = v * 10 + (uint32_t)(*p++ - '0');
    if (v < 1 || v > D.n_vols || (*p != '\0' && *p != '/'))
        return NULL;
    while (*p == '/')
        p++;
    *vol_id = v;
    *rel = p;
    return &D.vols[v];
}

static fd_name *names_find(fd_names *t, const char *rel)
{
    for (uint32_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].path, rel) == 0)
            return &t->v[i];
    return NULL;
}

static void names_put(fd_names *t, const char *rel, fd_inode *ino)
{
    fd_name *n = names_find(t, rel);
    if (!n) {
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 16;
            t->v = xrealloc(t->v, t->cap * sizeof *t->v);
        }
        n = &t->v[t->n++];
        snprintf(n->path, sizeof n->path, "%s", rel);
    }
    n->ino = ino;
}

static void names_del(fd_names *t, const char *rel)
{
    fd_name *n = names_find(t, rel);
    if (n)
        *n = t->v[--t->n];
}

static void names_copy(fd_names *dst, const fd_names *src)
{
    dst->n = 0;
    for (uint32_t i = 0; i < src->n; i++)
        names_put(dst, src->v[i].path, src->v[i].ino);
}

/* The directory a path is in ("" for the root). */
static void parent_of(const char *rel, char *out)
{
    const char *slash = strrchr(rel, '/');
    size_t n = slash ? (size_t)(slash - rel) : 0;
    memcpy(out, rel, n);
    out[n] = '\0';
}

static bool dir_exists(fd_vol *v, const char *rel)
{
    if (rel[0] == '\0')
        return true;
    fd_name *n = names_find(&v->cur, rel);
    return n && !n->ino;
}

static fd_inode *inode_new(fd_vol *v)
{
    fd_inode *ino = calloc(1, sizeof *ino);
    if (!ino)
        abort();
    if (v->n_inodes == v->cap_inodes) {
        v->cap_inodes = v->cap_inodes ? v->cap_inodes * 2 : 32;
        v->inodes = xrealloc(v->inodes, v->cap_inodes * sizeof *v->inodes);
    }
    v->inodes[v->n_inodes++] = ino;
    return ino;
}

static void inode_free(fd_inode *ino)
{
    free(ino->cur.buf);
    free(ino->dsk.buf);
    free(ino);
}

static void pend_free(fd_pend *p)
{
    free(p->bytes);
    p->bytes = NULL;
}

/* Free inodes nothing refers to: no name (either table or the saved
 * copy), no descriptor, no pending entry. */
static void gc(fd_vol *v)
{
    for (uint32_t i = 0; i < v->n_inodes; i++)
        v->inodes[i]->mark = false;
    fd_names *tables[3] = { &v->cur, &v->dur, &v->saved };
    for (int t = 0; t < 3; t++)
        for (uint32_t i = 0; i < tables[t]->n; i++)
            if (tables[t]->v[i].ino)
                tables[t]->v[i].ino->mark = true;
    for (uint32_t i = 0; i < FDISK_MAX_FDS; i++)
        if (D.fds[i].used && D.fds[i].ino)
            D.fds[i].ino->mark = true;
    for (uint32_t i = 0; i < v->n_p; i++)
        if (!v->p[i].done && v->p[i].ino)
            v->p[i].ino->mark = true;
    uint32_t k = 0;
    for (uint32_t i = 0; i < v->n_inodes; i++) {
        if (v->inodes[i]->mark)
            v->inodes[k++] = v->inodes[i];
        else
            inode_free(v->inodes[i]);
    }
    v->n_inodes = k;
    v->live_after_gc = k;
}

static void maybe_gc(fd_vol *v)
{
    if (v->n_inodes > 64 && v->n_inodes > 2 * v->live_after_gc)
        gc(v);
}

static fd_pend *pend_add(fd_vol *v, uint8_t kind, fd_inode *ino)
{
    if (v->done_p > 64 && v->done_p * 2 > v->n_p) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < v->n_p; i++)
            if (!v->p[i].done)
                v->p[k++] = v->p[i];
        v->n_p = k;
        v->done_p = 0;
    }
    if (v->n_p == v->cap_p) {
        v->cap_p = v->cap_p ? v->cap_p * 2 : 64;
        v->p = xrealloc(v->p, v->cap_p * sizeof *v->p);
    }
    fd_pend *p = &v->p[v->n_p++];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->ino = ino;
    if (ino)
        ino->pending++;
    return p;
}

static void pend_done(fd_vol *v, fd_pend *p)
{
    p->done = true;
    if (p->ino)
        p->ino->pending--;
    pend_free(p);
    v->done_p++;
}

/* Apply a data entry to its inode's disk image. */
static void apply_data(fd_pend *p)
{
    fd_inode *ino = p->ino;
    if (p->kind == P_WRITE)
        img_write(&ino->dsk, p->off, p->bytes, p->len);
    else if (p->kind == P_TRUNC)
        img_truncate(&ino->dsk, p->off);
}

/* Apply a name entry to a table. */
static void apply_name(fd_names *t, const fd_pend *p)
{
    switch (p->kind) {
    case P_CREATE:
        names_put(t, p->a, p->ino);
        break;
    case P_MKDIR:
        names_put(t, p->a, NULL);
        break;
    case P_RENAME: {
        fd_name *n = names_find(t, p->a);
        if (!n)
            break;
        fd_inode *ino = n->ino;
        names_del(t, p->a);
        names_put(t, p->b, ino);
        break;
    }
    case P_UNLINK:
        names_del(t, p->a);
        break;
    }
}

static bool fault(fd_vol *v, uint32_t ppm)
{
    return v->faults.on && !v->faults.only_syncs && sim_rng_ppm(&D.rng, ppm);
}

/* A sick volume's answer to a call that changes the disk (0: none). */
static int sick_change(const fd_vol *v)
{
    return v->sick;
}

static int sick_sync(const fd_vol *v)
{
    return v->sick == -EIO ? -EIO : 0;
}

static bool sync_fault(fd_vol *v)
{
    return v->faults.on && sim_rng_ppm(&D.rng, v->faults.fail_ppm);
}

static int fail_errno(bool may_enospc)
{
    if (may_enospc && sim_rng_below(&D.rng, 2)) {
        D.counts.enospc++;
        return -ENOSPC;
    }
    D.counts.eio++;
    return -EIO;
}

/* Whether a change to volume v (a create, a write, a truncate) fails: a
 * sick spell's errno, else an injected fault (EIO or ENOSPC), else 0. */
static int change_refused(fd_vol *v)
{
    if (sick_change(v))
        return sick_change(v);
    if (fault(v, v->faults.fail_ppm))
        return fail_errno(true);
    return 0;
}

static fd_desc *desc(int fd)
{
    int i = fd - FDISK_FD_BASE;
    if (i < 0 || i >= FDISK_MAX_FDS || !D.fds[i].used)
        return NULL;
    return &D.fds[i];
}

static int desc_new(uint32_t vol, fd_inode *ino, const char *dir)
{
    for (int i = 0; i < FDISK_MAX_FDS; i++) {
        if (D.fds[i].used)
            continue;
        D.fds[i] = (fd_desc){ .used = true, .vol = vol, .ino = ino };
        if (dir)
            snprintf(D.fds[i].path, sizeof D.fds[i].path, "%s", dir);
        return FDISK_FD_BASE + i;
    }
    return -EMFILE;
}

static const char *name_of(fd_vol *v, const fd_inode *ino)
{
    for (uint32_t i = 0; i < v->cur.n; i++)
        if (v->cur.v[i].ino == ino)
            return v->cur.v[i].path;
    return "";
}

/* ------------------------------------------------------- chain_io */

static int f_open(const char *path, int flags, mode_t mode)
{
    (void)mode;
    uint32_t vid;
    const char *rel;
    fd_vol *v = vol_of(path, &vid, &rel);
    if (!v)
        return -ENOENT;
    if (flags & O_DIRECTORY) {
        if (!dir_exists(v, rel))
            return -ENOENT;
        return desc_new(vid, NULL, rel);
    }
    fd_name *n = names_find(&v->cur, rel);
    if (n && !n->ino)
        return -EISDIR;
    if (n && (flags & O_CREAT) && (flags & O_EXCL))
        return -EEXIST;
    if (!n) {
        if (!(flags & O_CREAT))
            return -ENOENT;
        char parent[FDISK_PATH];
        parent_of(rel, parent);
        if (!dir_exists(v, parent))
            return -ENOENT;
        int rc = change_refused(v);
        if (rc)
            return rc;
        fd_inode *ino = inode_new(v);
        names_put(&v->cur, rel, ino);
        fd_pend *p = pend_add(v, P_CREATE, ino);
        snprintf(p->a, sizeof p->a, "%s", rel);
        n = names_find(&v->cur, rel);
    } else if (flags & O_TRUNC) {
        if (sick_change(v))
            return sick_change(v);
        fd_inode *ino = n->ino;
        img_truncate(&ino->cur, 0);
        pend_add(v, P_TRUNC, ino)->off = 0;
    }
    return desc_new(vid, n->ino, NULL);
}

static int f_close(int fd)
{
    fd_desc *d = desc(fd);
    if (!d)
        return -EBADF;
    d->used = false;
    return 0;
}

static int64_t f_pread(int fd, void *buf, size_t len, uint64_t offset)
{
    fd_desc *d = desc(fd);
    if (!d || !d->ino)
        return -EBADF;
    fd_vol *v = &D.vols[d->vol];
    if (fault(v, v->faults.fail_ppm / 4))
        return fail_errno(false);
    fd_inode *ino = d->ino;
    if (offset >= ino->cur.size)
        return 0;
    uint64_t n = ino->cur.size - offset;
    if (n > len)
        n = len;
    img_read(&ino->cur, offset, buf, n);
    return (int64_t)n;
}

static int64_t f_pwrite(int fd, const void *buf, size_t len, uint64_t offset)
{
    fd_desc *d = desc(fd);
    if (!d || !d->ino)
        return -EBADF;
    fd_vol *v = &D.vols[d->vol];
    int rc = change_refused(v);
    if (rc)
        return rc;
    if (len > 1 && fault(v, v->faults.short_ppm)) {
        len = 1 + (size_t)sim_rng_below(&D.rng, len - 1);
        D.counts.short_writes++;
    }
    fd_inode *ino = d->ino;
    bool zeros = offset >= ino->cur.len && all_zero(buf, len);
    img_write(&ino->cur, offset, zeros ? NULL : buf, len);
    fd_pend *p = pend_add(v, P_WRITE, ino);
    p->off = offset;
    p->len = len;
    p->zeros = zeros;
    if (!zeros) {
        p->bytes = xrealloc(NULL, len);
        memcpy(p->bytes, buf, len);
    }
    return (int64_t)len;
}

/* A file's sync: every pending entry of its data becomes durable (or
 * is marked for the deferred sync running). */
static int sync_file(fd_vol *v, uint32_t vid, fd_inode *ino)
{
    if (sick_sync(v))
        return sick_sync(v);
    if (sync_fault(v))
        return fail_errno(false);
    for (uint32_t i = 0; ino->pending > 0 && i < v->n_p; i++) {
        fd_pend *p = &v->p[i];
        if (p->done || p->ino != ino ||
            (p->kind != P_WRITE && p->kind != P_TRUNC))
            continue;
        if (v->deferring) {
            if (!p->ticket)
                p->ticket = v->deferring;
            continue;
        }
        apply_data(p);
        pend_done(v, p);
    }
    if (v->deferring) {
        D.counts.syncs++;
        return 0;
    }
    D.counts.syncs++;
    if (D.synced)
        D.synced(D.synced_arg, vid, name_of(v, ino));
    return 0;
}

/* A name entry becomes durable. */
static void name_done(fd_vol *v, fd_pend *p)
{
    apply_name(&v->dur, p);
    if (p->kind == P_CREATE)
        p->ino->pending--;   /* the data entries keep their own */
    p->ino = NULL;
    p->done = true;
    v->done_p++;
}

/* A directory's fsync: its name operations become durable, in order. */
static int sync_dir(fd_vol *v, uint32_t vid, const char *dir)
{
    if (sick_sync(v))
        return sick_sync(v);
    if (sync_fault(v))
        return fail_errno(false);
    for (uint32_t i = 0; i < v->n_p; i++) {
        fd_pend *p = &v->p[i];
        if (p->done || p->kind < P_CREATE)
            continue;
        char parent[FDISK_PATH];
        parent_of(p->a, parent);
        if (strcmp(parent, dir) != 0)
            continue;
        if (v->deferring) {
            if (!p->ticket)
                p->ticket = v->deferring;
            continue;
        }
        name_done(v, p);
    }
    D.counts.syncs++;
    if (v->deferring)
        return 0;
    if (D.synced)
        D.synced(D.synced_arg, vid, dir);
    return 0;
}

static int f_fdatasync(int fd)
{
    fd_desc *d = desc(fd);
    if (!d)
        return -EBADF;
    fd_vol *v = &D.vols[d->vol];
    if (!d->ino)
        return sync_dir(v, d->vol, d->path);
    return sync_file(v, d->vol, d->ino);
}

static int f_ftruncate(int fd, uint64_t len)
{
    fd_desc *d = desc(fd);
    if (!d || !d->ino)
        return -EBADF;
    fd_vol *v = &D.vols[d->vol];
    int rc = change_refused(v);
    if (rc)
        return rc;
    fd_inode *ino = d->ino;
    img_truncate(&ino->cur, len);
    pend_add(v, P_TRUNC, ino)->off = len;
    return 0;
}

static int f_fstat(int fd, struct stat *st)
{
    fd_desc *d = desc(fd);
    if (!d)
        return -EBADF;
    memset(st, 0, sizeof *st);
    st->st_mode = d->ino ? (S_IFREG | 0600) : (S_IFDIR | 0700);
    st->st_size = d->ino ? (off_t)d->ino->cur.size : 0;
    st->st_nlink = 1;
    return 0;
}

static int f_rename(const char *from, const char *to)
{
    uint32_t v1, v2;
    const char *r1, *r2;
    fd_vol *v = vol_of(from, &v1, &r1);
    if (!v || vol_of(to, &v2, &r2) != v)
        return -EXDEV;
    fd_name *n = names_find(&v->cur, r1);
    if (!n)
        return -ENOENT;
    char p1[FDISK_PATH], p2[FDISK_PATH];
    parent_of(r1, p1);
    parent_of(r2, p2);
    if (strcmp(p1, p2) != 0)
        return -EXDEV;          /* chain/ renames within a directory */
    if (sick_sync(v))
        return sick_sync(v);
    if (fault(v, v->faults.fail_ppm / 4))
        return fail_errno(false);
    fd_inode *ino = n->ino;
    names_del(&v->cur, r1);
    names_put(&v->cur, r2, ino);
    fd_pend *p = pend_add(v, P_RENAME, NULL);
    snprintf(p->a, sizeof p->a, "%s", r1);
    snprintf(p->b, sizeof p->b, "%s", r2);
    maybe_gc(v);
    return 0;
}

static int f_unlink(const char *path)
{
    uint32_t vid;
    const char *rel;
    fd_vol *v = vol_of(path, &vid, &rel);
    if (!v)
        return -ENOENT;
    fd_name *n = names_find(&v->cur, rel);
    if (!n || !n->ino)
        return n ? -EISDIR : -ENOENT;
    names_del(&v->cur, rel);
    fd_pend *p = pend_add(v, P_UNLINK, NULL);
    snprintf(p->a, sizeof p->a, "%s", rel);
    maybe_gc(v);
    return 0;
}

static int f_mkdir(const char *path, mode_t mode)
{
    (void)mode;
    uint32_t vid;
    const char *rel;
    fd_vol *v = vol_of(path, &vid, &rel);
    if (!v)
        return -ENOENT;
    if (rel[0] == '\0' || names_find(&v->cur, rel))
        return -EEXIST;
    char parent[FDISK_PATH];
    parent_of(rel, parent);
    if (!dir_exists(v, parent))
        return -ENOENT;
    if (sick_change(v))
        return sick_change(v);
    names_put(&v->cur, rel, NULL);
    fd_pend *p = pend_add(v, P_MKDIR, NULL);
    snprintf(p->a, sizeof p->a, "%s", rel);
    return 0;
}

static int f_dup(int fd)
{
    fd_desc *d = desc(fd);
    if (!d)
        return -EBADF;
    return desc_new(d->vol, d->ino, d->ino ? NULL : d->path);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int f_list(const char *dir, int (*each)(void *arg, const char *name),
                  void *arg)
{
    uint32_t vid;
    const char *rel;
    fd_vol *v = vol_of(dir, &vid, &rel);
    if (!v || !dir_exists(v, rel))
        return -ENOENT;
    const char **names = xrealloc(NULL, (v->cur.n + 1) * sizeof *names);
    uint32_t k = 0;
    for (uint32_t i = 0; i < v->cur.n; i++) {
        char parent[FDISK_PATH];
        parent_of(v->cur.v[i].path, parent);
        if (strcmp(parent, rel) != 0)
            continue;
        const char *slash = strrchr(v->cur.v[i].path, '/');
        names[k++] = slash ? slash + 1 : v->cur.v[i].path;
    }
    qsort(names, k, sizeof *names, cmp_str);
    int rc = 0;
    for (uint32_t i = 0; i < k && rc == 0; i++)
        rc = each(arg, names[i]);
    free(names);
    return rc;
}

static int f_fsync(int fd)
{
    return f_fdatasync(fd);
}

static const chain_io_ops fdisk_ops = {
    .open = f_open,
    .close = f_close,
    .pread = f_pread,
    .pwrite = f_pwrite,
    .fdatasync = f_fdatasync,
    .fsync = f_fsync,
    .ftruncate = f_ftruncate,
    .fstat = f_fstat,
    .rename = f_rename,
    .unlink = f_unlink,
    .mkdir = f_mkdir,
    .dup = f_dup,
    .list = f_list,
};

/* ------------------------------------------------------------ public */

int fdisk_init(uint32_t n_vols, uint64_t seed, fdisk_synced_fn synced,
               void *arg)
{
    fdisk_free();
    if (n_vols > FDISK_MAX_VOLS)
        return -EINVAL;
    memset(&D, 0, sizeof D);
    D.n_vols = n_vols;
    sim_rng_seed(&D.rng, seed ^ 0xd15cull);
    D.synced = synced;
    D.synced_arg = arg;
    for (uint32_t i = 1; i <= n_vols; i++)
        snprintf(D.vols[i].root, sizeof D.vols[i].root, "%s%u", FDISK_ROOT,
                 i);
    D.prev = chain_io_set(&fdisk_ops);
    D.ready = true;
    return 0;
}

static void names_free(fd_names *t)
{
    free(t->v);
    memset(t, 0, sizeof *t);
}

void fdisk_free(void)
{
    if (!D.ready)
        return;
    chain_io_set(D.prev);
    for (uint32_t i = 1; i <= D.n_vols; i++) {
        fd_vol *v = &D.vols[i];
        for (uint32_t k = 0; k < v->n_p; k++)
            pend_free(&v->p[k]);
        free(v->p);
        for (uint32_t k = 0; k < v->n_inodes; k++)
            inode_free(v->inodes[k]);
        free(v->inodes);
        names_free(&v->cur);
        names_free(&v->dur);
        names_free(&v->saved);
    }
    memset(&D, 0, sizeof D);
}

void fdisk_defer_begin(uint32_t vol, uint32_t ticket)
{
    D.vols[vol].deferring = ticket;
}

void fdisk_defer_end(uint32_t vol)
{
    D.vols[vol].deferring = 0;
}

void fdisk_defer_complete(uint32_t vol, uint32_t ticket)
{
    fd_vol *v = &D.vols[vol];
    for (uint32_t i = 0; ticket && i < v->n_p; i++) {
        fd_pend *p = &v->p[i];
        if (p->done || p->ticket != ticket)
            continue;
        if (p->kind <= P_TRUNC) {
            apply_data(p);
            pend_done(v, p);
        } else {
            name_done(v, p);
        }
    }
}

void fdisk_set_crash_mode(uint32_t vol, int mode)
{
    if (vol >= 1 && vol <= D.n_vols)
        D.vols[vol].crash_mode = mode;
}

void fdisk_set_faults(uint32_t vol, const fdisk_faults *f)
{
    if (vol >= 1 && vol <= D.n_vols)
        D.vols[vol].faults = *f;
}

void fdisk_set_sick(uint32_t vol, int err)
{
    if (vol >= 1 && vol <= D.n_vols)
        D.vols[vol].sick = err;
}

void fdisk_counts_get(fdisk_counts *c)
{
    *c = D.counts;
}

const char *fdisk_root(uint32_t vol)
{
    return D.vols[vol].root;
}

/* Tear write `p` onto the disk: its first sectors land, the rest not.
 * (Sectors landing out of order inside one write would be possible on a
 * real disk too; the acceptor store takes that for damage when a lost
 * sector holds a record's header and a later one landed, see
 * docs/design.md "The simulator".) */
static void tear(fd_pend *p, bool one_sector)
{
    fd_inode *ino = p->ino;
    uint64_t end = p->off + p->len;
    uint64_t first = p->off / FDISK_SECTOR, last = (end - 1) / FDISK_SECTOR;
    uint64_t keep_upto = first + (one_sector ? 1 :
                                  sim_rng_below(&D.rng, last - first + 1));
    for (uint64_t s = first; s < keep_upto; s++) {
        uint64_t a = s * FDISK_SECTOR, b = a + FDISK_SECTOR;
        if (a < p->off)
            a = p->off;
        if (b > end)
            b = end;
        img_write(&ino->dsk, a, p->zeros ? NULL : p->bytes + (a - p->off),
                  b - a);
    }
    D.counts.torn++;
}

void fdisk_crash(uint32_t vol)
{
    fd_vol *v = &D.vols[vol];
    v->deferring = 0;
    for (uint32_t i = 0; i < FDISK_MAX_FDS; i++)
        if (D.fds[i].used && D.fds[i].vol == vol)
            D.fds[i].used = false;   /* the process is gone */
    /* a prefix of the journal reached the disk */
    uint32_t live = 0;
    for (uint32_t i = 0; i < v->n_p; i++)
        live += !v->p[i].done;
    uint32_t keep = live;
    if (v->crash_mode == FDISK_CRASH_TEAR) {
        uint32_t last = 0, seen_w = 0;   /* the last write's position */
        for (uint32_t i = 0; i < v->n_p; i++)
            if (!v->p[i].done) {
                if (v->p[i].kind == P_WRITE)
                    last = seen_w;
                seen_w++;
            }
        keep = last;
    } else if (v->crash_mode == FDISK_CRASH_RANDOM) {
        keep = (uint32_t)sim_rng_below(&D.rng, (uint64_t)live + 1);
        if (live > 0 && sim_rng_below(&D.rng, 4) == 0)
            keep = live;         /* often everything landed */
    } else if (v->crash_mode != FDISK_CRASH_ALL) {
        keep = 0;
    }
    uint32_t seen = 0;
    bool torn = false;
    for (uint32_t i = 0; i < v->n_p; i++) {
        fd_pend *p = &v->p[i];
        if (p->done)
            continue;
        if (seen++ < keep) {
            if (p->kind <= P_TRUNC)
                apply_data(p);
            else
                apply_name(&v->dur, p);
        } else if (!torn && p->kind == P_WRITE && p->len > 0 &&
                   v->crash_mode != FDISK_CRASH_NONE) {
            torn = true;
            if (v->crash_mode == FDISK_CRASH_TEAR)
                tear(p, true);
            else if (sim_rng_below(&D.rng, 2))
                tear(p, false);
            else
                D.counts.lost_ops++;
        } else {
            D.counts.lost_ops++;
        }
        pend_free(p);
    }
    v->n_p = v->done_p = 0;
    /* the page cache starts over from the disk */
    names_copy(&v->cur, &v->dur);
    for (uint32_t i = 0; i < v->n_inodes; i++) {
        fd_inode *ino = v->inodes[i];
        ino->pending = 0;
        img_copy(&ino->cur, &ino->dsk);
    }
    gc(v);
}

static bool is_segment(const char *rel)
{
    return strncmp(rel, "chain/seg-", 10) == 0;
}

int fdisk_flip(uint32_t vol, int which, char *rel, size_t rel_len,
               uint64_t *offset)
{
    fd_vol *v = &D.vols[vol];
    fd_name *cands[64];
    uint32_t k = 0;
    for (uint32_t i = 0; i < v->dur.n && k < 64; i++) {
        fd_name *n = &v->dur.v[i];
        if (!n->ino || n->ino->dsk.len == 0)
            continue;
        if (which == 0 ? strcmp(n->path, "acceptor/log") == 0
                       : is_segment(n->path))
            cands[k++] = n;
    }
    if (k == 0)
        return -ENOENT;
    fd_name *n = cands[sim_rng_below(&D.rng, k)];
    fd_inode *ino = n->ino;
    uint64_t used = ino->dsk.len;
    if (which == 0) {
        /* the records and a little of the zero space after them */
        while (used > 0 && ino->dsk.buf[used - 1] == 0)
            used--;
        used += 64;
        if (used > ino->dsk.size)
            used = ino->dsk.size;
    }
    uint64_t off = sim_rng_below(&D.rng, used);
    uint8_t bit = (uint8_t)(1u << sim_rng_below(&D.rng, 8));
    img_store(&ino->dsk, off + 1);
    ino->dsk.buf[off] ^= bit;
    if (off < ino->cur.size) {
        img_store(&ino->cur, off + 1);
        ino->cur.buf[off] ^= bit;
    }
    snprintf(rel, rel_len, "%s", n->path);
    *offset = off * 8 + (uint64_t)__builtin_ctz(bit);   /* bit position */
    D.counts.flips++;
    return 0;
}

int fdisk_bit(uint32_t vol, const char *rel, uint64_t bitpos)
{
    fd_vol *v = &D.vols[vol];
    fd_name *n = names_find(&v->dur, rel);
    if (!n || !n->ino)
        return -1;
    const fd_img *m = &n->ino->dsk;
    uint64_t off = bitpos / 8;
    if (off >= m->size)
        return -1;
    if (off >= m->len)
        return 0;   /* the zero space, not stored */
    return (m->buf[off] >> (bitpos % 8)) & 1;
}

void fdisk_unflip(uint32_t vol, const char *rel, uint64_t bitpos)
{
    fd_vol *v = &D.vols[vol];
    fd_name *n = names_find(&v->dur, rel);
    if (!n || !n->ino)
        return;
    fd_inode *ino = n->ino;
    uint64_t off = bitpos / 8;
    uint8_t bit = (uint8_t)(1u << (bitpos % 8));
    if (off < ino->dsk.size) {
        img_store(&ino->dsk, off + 1);
        ino->dsk.buf[off] ^= bit;
    }
    fd_name *c = names_find(&v->cur, rel);
    if (c && c->ino == ino && off < ino->cur.size) {
        img_store(&ino->cur, off + 1);
        ino->cur.buf[off] ^= bit;
    }
}

void fdisk_remove_tree(uint32_t vol, const char *rel)
{
    fd_vol *v = &D.vols[vol];
    size_t len = strlen(rel);
    fd_names *tables[2] = { &v->cur, &v->dur };
    for (int t = 0; t < 2; t++)
        for (uint32_t i = 0; i < tables[t]->n;) {
            const char *p = tables[t]->v[i].path;
            if (strncmp(p, rel, len) == 0 && (p[len] == '\0' || p[len] == '/'))
                tables[t]->v[i] = tables[t]->v[--tables[t]->n];
            else
                i++;
        }
    gc(v);
}

/* A detached copy of an inode's disk image. */
static fd_inode *inode_copy(fd_vol *v, const fd_inode *src)
{
    fd_inode *ino = inode_new(v);
    img_copy(&ino->dsk, &src->dsk);
    img_copy(&ino->cur, &src->dsk);
    return ino;
}

void fdisk_save(uint32_t vol)
{
    fd_vol *v = &D.vols[vol];
    v->saved.n = 0;
    for (uint32_t i = 0; i < v->dur.n; i++) {
        fd_name *n = &v->dur.v[i];
        names_put(&v->saved, n->path, n->ino ? inode_copy(v, n->ino) : NULL);
    }
    v->has_saved = true;
    gc(v);
}

bool fdisk_restore(uint32_t vol)
{
    fd_vol *v = &D.vols[vol];
    if (!v->has_saved)
        return false;
    for (uint32_t i = 0; i < v->n_p; i++)
        pend_free(&v->p[i]);
    v->n_p = v->done_p = 0;
    v->dur.n = 0;
    for (uint32_t i = 0; i < v->saved.n; i++) {
        fd_name *n = &v->saved.v[i];
        names_put(&v->dur, n->path, n->ino ? inode_copy(v, n->ino) : NULL);
    }
    names_copy(&v->cur, &v->dur);
    gc(v);
    return true;
}

const uint8_t *fdisk_peek(uint32_t vol, const char *rel, uint64_t *len)
{
    fd_name *n = names_find(&D.vols[vol].cur, rel);
    if (!n || !n->ino)
        return NULL;
    img_store(&n->ino->cur, n->ino->cur.size);   /* all of it, for reading */
    *len = n->ino->cur.size;
    return n->ino->cur.buf;
}

uint32_t fdisk_names(uint32_t vol, const char *rel, const char ***out)
{
    fd_vol *v = &D.vols[vol];
    const char **names = xrealloc(NULL, (v->cur.n + 1) * sizeof *names);
    uint32_t k = 0;
    for (uint32_t i = 0; i < v->cur.n; i++) {
        char parent[FDISK_PATH];
        parent_of(v->cur.v[i].path, parent);
        if (strcmp(parent, rel) == 0)
            names[k++] = v->cur.v[i].path;
    }
    qsort(names, k, sizeof *names, cmp_str);
    *out = names;
    return k;
}
