/*
 * memfs - the baseline of `make bench`: a trivial in-memory FUSE
 * filesystem, one flat directory of regular files, nothing replicated,
 * nothing durable.  It speaks to the kernel as a paxosfs mount does, so a
 * workload measures the filesystem behind the mount and not the protocol:
 *
 *   - the same FUSE capabilities: O_TRUNC arrives with open (atomic
 *     O_TRUNC), no writeback cache, direct I/O on every open file (each
 *     read() and write() is one request);
 *   - the same kernel caching: regular files' attribute and name entries
 *     time out at once (--attr-timeout / --entry-timeout, default 0, as
 *     paxosfs's defaults), the root directory's after an hour; a missing
 *     name is answered ENOENT (no negative entry is cached);
 *   - requests are served by libfuse's multi-threaded loop (up to
 *     --threads workers, default 16), so concurrent clients are served
 *     concurrently, as paxosfs's event loop does by parking requests.
 *
 * Usage: memfs [--attr-timeout S] [--entry-timeout S] [--threads N] MNT
 * It runs in the foreground until unmounted (fusermount3 -u MNT) or sent
 * SIGTERM/SIGINT (it then unmounts itself).
 *
 * Operations: lookup, forget, getattr, setattr (size; mode, owner and
 * times are accepted and ignored except mtime), create, open, read,
 * write, flush, fsync, release, unlink, opendir, readdir, releasedir,
 * statfs.  mkdir, rename, links and special files: EPERM.
 *
 * Invariants:
 *  1. One mutex guards every file and the name table; no FUSE reply is
 *     sent while it is held (a reply is a write to /dev/fuse).
 *  2. A file is freed only when it has no name, no kernel lookup
 *     reference (nlookup) and no open handle, so an inode number (the
 *     file's address) stays valid while the kernel may still use it.
 *  3. File contents are bounded (MEMFS_MAX_FILE): a larger write is EFBIG.
 */
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MEMFS_MAX_FILE (64u << 20)
#define MEMFS_ROOT_TIMEOUT_S 3600.0

typedef struct mfile {
    char *name;              /* NULL once unlinked */
    uint8_t *data;
    size_t len, cap;
    uint64_t nlookup;        /* kernel references (lookup/create - forget) */
    uint32_t opens;
    struct timespec mtime;
    struct mfile *next;      /* name table chain */
} mfile;

typedef struct memfs {
    pthread_mutex_t lock;
    mfile **buckets;
    size_t n_buckets;        /* power of two */
    size_t n_files;          /* named files */
    double attr_timeout, entry_timeout;
    struct timespec started;
    uid_t uid;
    gid_t gid;
} memfs;

/* A directory listing taken at opendir. */
typedef struct listing {
    char **names;
    fuse_ino_t *inos;
    size_t n;
} listing;

static memfs *fs_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static mfile *file_of(fuse_ino_t ino)
{
    return (mfile *)(uintptr_t)ino;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;     /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* ------------------------------------------------------ name table */

static mfile **slot_of(memfs *m, const char *name)
{
    mfile **p = &m->buckets[hash_name(name) & (m->n_buckets - 1)];
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    return p;
}

static int grow(memfs *m)
{
    size_t n = m->n_buckets * 2;
    mfile **b = calloc(n, sizeof *b);
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (mfile *f = m->buckets[i], *next; f; f = next) {
            next = f->next;
            mfile **p = &b[hash_name(f->name) & (n - 1)];
            f->next = *p;
            *p = f;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    return 0;
}

static void unname(memfs *m, mfile **slot)
{
    mfile *f = *slot;
    *slot = f->next;
    f->next = NULL;
    free(f->name);
    f->name = NULL;
    m->n_files--;
}

/* Invariant 2. */
static void maybe_free(mfile *f)
{
    if (f->name || f->nlookup || f->opens)
        return;
    free(f->data);
    free(f);
}

/* ------------------------------------------------------- attributes */

static void root_attr(memfs *m, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = FUSE_ROOT_ID;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    st->st_uid = m->uid;
    st->st_gid = m->gid;
    st->st_mtim = st->st_ctim = st->st_atim = m->started;
}

static void file_attr(memfs *m, const mfile *f, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = (ino_t)(uintptr_t)f;
    st->st_mode = S_IFREG | 0644;
    st->st_nlink = f->name ? 1 : 0;
    st->st_uid = m->uid;
    st->st_gid = m->gid;
    st->st_size = (off_t)f->len;
    st->st_blksize = 4096;
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_mtim = st->st_ctim = st->st_atim = f->mtime;
}

static void entry_of(memfs *m, mfile *f, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = (fuse_ino_t)(uintptr_t)f;
    e->generation = 1;
    e->attr_timeout = m->attr_timeout;
    e->entry_timeout = m->entry_timeout;
    file_attr(m, f, &e->attr);
}

static int check_name(fuse_ino_t parent, const char *name)
{
    if (parent != FUSE_ROOT_ID)
        return ENOTDIR;
    if (strlen(name) > 255)
        return ENAMETOOLONG;
    return 0;
}

/* Set the length of f's content (zero-filled growth). */
static int set_len(mfile *f, size_t len)
{
    if (len > MEMFS_MAX_FILE)
        return EFBIG;
    if (len > f->cap) {
        size_t cap = f->cap ? f->cap : 256;
        while (cap < len)
            cap *= 2;
        uint8_t *d = realloc(f->data, cap);
        if (!d)
            return ENOMEM;
        f->data = d;
        f->cap = cap;
    }
    if (len > f->len)
        memset(f->data + f->len, 0, len - f->len);
    f->len = len;
    clock_gettime(CLOCK_REALTIME, &f->mtime);
    return 0;
}

/* --------------------------------------------------------- handlers */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    memfs *m = fs_of(req);
    int err = check_name(parent, name);
    if (err) {
        fuse_reply_err(req, err);
        return;
    }
    struct fuse_entry_param e;
    pthread_mutex_lock(&m->lock);
    mfile *f = *slot_of(m, name);
    if (f) {
        f->nlookup++;
        entry_of(m, f, &e);
    }
    pthread_mutex_unlock(&m->lock);
    if (!f) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (fuse_reply_entry(req, &e) != 0) {
        pthread_mutex_lock(&m->lock);
        f->nlookup--;
        maybe_free(f);
        pthread_mutex_unlock(&m->lock);
    }
}

static void forget_one(fuse_ino_t ino, uint64_t n)
{
    if (ino == FUSE_ROOT_ID)
        return;
    mfile *f = file_of(ino);
    f->nlookup = f->nlookup > n ? f->nlookup - n : 0;
    maybe_free(f);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    memfs *m = fs_of(req);
    pthread_mutex_lock(&m->lock);
    forget_one(ino, nlookup);
    pthread_mutex_unlock(&m->lock);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
                            struct fuse_forget_data *forgets)
{
    memfs *m = fs_of(req);
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < count; i++)
        forget_one(forgets[i].ino, forgets[i].nlookup);
    pthread_mutex_unlock(&m->lock);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    memfs *m = fs_of(req);
    struct stat st;
    if (ino == FUSE_ROOT_ID) {
        root_attr(m, &st);
        fuse_reply_attr(req, &st, MEMFS_ROOT_TIMEOUT_S);
        return;
    }
    pthread_mutex_lock(&m->lock);
    file_attr(m, file_of(ino), &st);
    pthread_mutex_unlock(&m->lock);
    fuse_reply_attr(req, &st, m->attr_timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                       int to_set, struct fuse_file_info *fi)
{
    (void)fi;
    memfs *m = fs_of(req);
    struct stat st;
    if (ino == FUSE_ROOT_ID) {
        root_attr(m, &st);
        fuse_reply_attr(req, &st, MEMFS_ROOT_TIMEOUT_S);
        return;
    }
    if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    int err = 0;
    pthread_mutex_lock(&m->lock);
    mfile *f = file_of(ino);
    if (to_set & FUSE_SET_ATTR_SIZE)
        err = set_len(f, (uint64_t)attr->st_size > MEMFS_MAX_FILE
                             ? (size_t)MEMFS_MAX_FILE + 1 : (size_t)attr->st_size);
    if (!err && (to_set & FUSE_SET_ATTR_MTIME_NOW))
        clock_gettime(CLOCK_REALTIME, &f->mtime);
    else if (!err && (to_set & FUSE_SET_ATTR_MTIME))
        f->mtime = attr->st_mtim;
    file_attr(m, f, &st);
    pthread_mutex_unlock(&m->lock);
    if (err)
        fuse_reply_err(req, err);
    else
        fuse_reply_attr(req, &st, m->attr_timeout);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    memfs *m = fs_of(req);
    if (ino == FUSE_ROOT_ID) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    pthread_mutex_lock(&m->lock);
    mfile *f = file_of(ino);
    if (fi->flags & O_TRUNC)
        set_len(f, 0);
    f->opens++;
    pthread_mutex_unlock(&m->lock);
    fi->fh = 0;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if (fuse_reply_open(req, fi) != 0) {
        pthread_mutex_lock(&m->lock);
        f->opens--;
        maybe_free(f);
        pthread_mutex_unlock(&m->lock);
    }
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                      mode_t mode, struct fuse_file_info *fi)
{
    (void)mode;
    memfs *m = fs_of(req);
    int err = check_name(parent, name);
    if (err) {
        fuse_reply_err(req, err);
        return;
    }
    struct fuse_entry_param e;
    pthread_mutex_lock(&m->lock);
    mfile **slot = slot_of(m, name);
    mfile *f = *slot;
    if (f && (fi->flags & O_EXCL)) {
        err = EEXIST;
    } else if (f) {
        if (fi->flags & O_TRUNC)
            set_len(f, 0);
    } else if (m->n_files >= m->n_buckets && grow(m) != 0) {
        err = ENOMEM;
    } else {
        f = calloc(1, sizeof *f);
        if (f && !(f->name = strdup(name))) {
            free(f);
            f = NULL;
        }
        if (!f) {
            err = ENOMEM;
        } else {
            clock_gettime(CLOCK_REALTIME, &f->mtime);
            slot = slot_of(m, name);   /* the table may have grown */
            *slot = f;
            m->n_files++;
        }
    }
    if (!err) {
        f->nlookup++;
        f->opens++;
        entry_of(m, f, &e);
    }
    pthread_mutex_unlock(&m->lock);
    if (err) {
        fuse_reply_err(req, err);
        return;
    }
    fi->fh = 0;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    if (fuse_reply_create(req, &e, fi) != 0) {
        pthread_mutex_lock(&m->lock);
        f->nlookup--;
        f->opens--;
        maybe_free(f);
        pthread_mutex_unlock(&m->lock);
    }
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)fi;
    memfs *m = fs_of(req);
    if (ino == FUSE_ROOT_ID) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    uint8_t small[4096];
    uint8_t *buf = small;
    size_t n = 0;
    pthread_mutex_lock(&m->lock);
    mfile *f = file_of(ino);
    if (off >= 0 && (size_t)off < f->len) {
        n = f->len - (size_t)off;
        if (n > size)
            n = size;
        if (n > sizeof small)
            buf = malloc(n);
        if (buf)
            memcpy(buf, f->data + off, n);
    }
    pthread_mutex_unlock(&m->lock);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    fuse_reply_buf(req, (const char *)buf, n);
    if (buf != small)
        free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data,
                     size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)fi;   /* O_APPEND: the kernel passes the end of file as off */
    memfs *m = fs_of(req);
    if (off < 0 || (uint64_t)off + size > MEMFS_MAX_FILE) {
        fuse_reply_err(req, off < 0 ? EINVAL : EFBIG);
        return;
    }
    int err = 0;
    pthread_mutex_lock(&m->lock);
    mfile *f = file_of(ino);
    size_t at = (size_t)off;
    if (at + size > f->len)
        err = set_len(f, at + size);
    if (!err) {
        memcpy(f->data + at, data, size);
        clock_gettime(CLOCK_REALTIME, &f->mtime);
    }
    pthread_mutex_unlock(&m->lock);
    if (err)
        fuse_reply_err(req, err);
    else
        fuse_reply_write(req, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
                     struct fuse_file_info *fi)
{
    (void)ino;
    (void)datasync;
    (void)fi;
    fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    memfs *m = fs_of(req);
    pthread_mutex_lock(&m->lock);
    mfile *f = file_of(ino);
    f->opens--;
    maybe_free(f);
    pthread_mutex_unlock(&m->lock);
    fuse_reply_err(req, 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    memfs *m = fs_of(req);
    int err = check_name(parent, name);
    if (err) {
        fuse_reply_err(req, err);
        return;
    }
    pthread_mutex_lock(&m->lock);
    mfile **slot = slot_of(m, name);
    mfile *f = *slot;
    if (!f) {
        err = ENOENT;
    } else {
        unname(m, slot);
        maybe_free(f);
    }
    pthread_mutex_unlock(&m->lock);
    fuse_reply_err(req, err);
}

static void op_refuse(fuse_req_t req)
{
    fuse_reply_err(req, EPERM);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode)
{
    (void)parent;
    (void)name;
    (void)mode;
    op_refuse(req);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode, dev_t rdev)
{
    (void)parent;
    (void)name;
    (void)mode;
    (void)rdev;
    op_refuse(req);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                      fuse_ino_t newparent, const char *newname,
                      unsigned int flags)
{
    (void)parent;
    (void)name;
    (void)newparent;
    (void)newname;
    (void)flags;
    op_refuse(req);
}

static void listing_free(listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->inos);
    free(l);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    memfs *m = fs_of(req);
    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    listing *l = calloc(1, sizeof *l);
    int err = l ? 0 : ENOMEM;
    pthread_mutex_lock(&m->lock);
    if (l && m->n_files && (!(l->names = calloc(m->n_files, sizeof *l->names)) ||
                            !(l->inos = calloc(m->n_files, sizeof *l->inos))))
        err = ENOMEM;
    for (size_t i = 0; !err && i < m->n_buckets; i++) {
        for (mfile *f = m->buckets[i]; f && !err; f = f->next) {
            if (!(l->names[l->n] = strdup(f->name)))
                err = ENOMEM;
            else
                l->inos[l->n++] = (fuse_ino_t)(uintptr_t)f;
        }
    }
    pthread_mutex_unlock(&m->lock);
    if (err) {
        if (l)
            listing_free(l);
        fuse_reply_err(req, err);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)l;
    if (fuse_reply_open(req, fi) != 0)
        listing_free(l);
}

/* Entries: 0 ".", 1 "..", 2.. the names; an entry's offset is the index
 * of the next one. */
static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    (void)ino;
    listing *l = (listing *)(uintptr_t)fi->fh;
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    for (size_t i = off < 0 ? 0 : (size_t)off; i < l->n + 2; i++) {
        struct stat st = { .st_ino = FUSE_ROOT_ID, .st_mode = S_IFDIR };
        const char *name = i == 0 ? "." : i == 1 ? ".." : l->names[i - 2];
        if (i >= 2) {
            st.st_ino = (ino_t)l->inos[i - 2];
            st.st_mode = S_IFREG;
        }
        size_t need = fuse_add_direntry(req, buf + used, size - used, name,
                                        &st, (off_t)(i + 1));
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
    (void)ino;
    listing_free((listing *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    memfs *m = fs_of(req);
    struct statvfs s;
    memset(&s, 0, sizeof s);
    s.f_bsize = s.f_frsize = 4096;
    s.f_blocks = s.f_bfree = s.f_bavail = 1u << 20;
    pthread_mutex_lock(&m->lock);
    s.f_files = m->n_files + 1;
    pthread_mutex_unlock(&m->lock);
    s.f_ffree = s.f_favail = 1u << 20;
    s.f_namemax = 255;
    fuse_reply_statfs(req, &s);
}

static const struct fuse_lowlevel_ops memfs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rename = op_rename,
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

/* ------------------------------------------------------------- main */

static int parse_seconds(const char *s, double *out)
{
    char *end = NULL;
    double d = strtod(s, &end);
    if (!end || end == s || *end || !(d >= 0 && d <= 3600))
        return -1;
    *out = d;
    return 0;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: memfs [--attr-timeout S] [--entry-timeout S] "
                "[--threads N] MOUNTPOINT\n"
                "a trivial in-memory FUSE filesystem (the baseline of "
                "make bench); runs until unmounted\n");
}

int main(int argc, char **argv)
{
    memfs m = { .n_buckets = 1024 };
    int threads = 16;
    const char *mnt = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--attr-timeout") || !strcmp(a, "--entry-timeout")) &&
            i + 1 < argc) {
            if (parse_seconds(argv[++i], a[2] == 'a' ? &m.attr_timeout
                                                     : &m.entry_timeout) < 0) {
                fprintf(stderr, "memfs: %s needs seconds in [0, 3600]\n", a);
                return 2;
            }
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
            if (threads < 1 || threads > 1024) {
                fprintf(stderr, "memfs: --threads needs 1..1024\n");
                return 2;
            }
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] != '-' && !mnt) {
            mnt = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!mnt) {
        usage(stderr);
        return 2;
    }
    m.buckets = calloc(m.n_buckets, sizeof *m.buckets);
    if (!m.buckets || pthread_mutex_init(&m.lock, NULL) != 0) {
        fprintf(stderr, "memfs: out of memory\n");
        return 1;
    }
    m.uid = getuid();
    m.gid = getgid();
    clock_gettime(CLOCK_REALTIME, &m.started);

    char *fargv[] = { "memfs", "-o", "fsname=memfs,subtype=memfs", NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse_session *se = fuse_session_new(&args, &memfs_ops,
                                               sizeof memfs_ops, &m);
    fuse_opt_free_args(&args);
    int rc = 1;
    if (!se) {
        fprintf(stderr, "memfs: cannot create the FUSE session\n");
        goto out;
    }
    if (fuse_set_signal_handlers(se) != 0) {
        fprintf(stderr, "memfs: cannot set signal handlers\n");
        goto out_session;
    }
    if (fuse_session_mount(se, mnt) != 0) {
        fprintf(stderr, "memfs: cannot mount at %s\n", mnt);
        goto out_signals;
    }
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg) {
        fprintf(stderr, "memfs: out of memory\n");
        goto out_mounted;
    }
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_max_threads(cfg, (unsigned)threads);
    fuse_loop_cfg_set_idle_threads(cfg, (unsigned)threads);
    rc = fuse_session_loop_mt(se, cfg) == 0 ? 0 : 1;
    fuse_loop_cfg_destroy(cfg);
out_mounted:
    fuse_session_unmount(se);
out_signals:
    fuse_remove_signal_handlers(se);
out_session:
    fuse_session_destroy(se);
out:
    /* files the kernel still referenced at unmount */
    for (size_t i = 0; i < m.n_buckets; i++) {
        for (mfile *f = m.buckets[i], *next; f; f = next) {
            next = f->next;
            free(f->name);
            free(f->data);
            free(f);
        }
    }
    free(m.buckets);
    pthread_mutex_destroy(&m.lock);
    return rc;
}
