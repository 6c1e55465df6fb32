/*
 * snapstore.c - owns the snapshot files of a backing directory (DIR/snap):
 * listing, loading the newest valid one with fall back, taking a new one
 * off the owner's thread, receiving one from a peer, reading one in
 * chunks, and keeping the newest two.
 *
 * Files in DIR/snap (others are ignored):
 *   snap-<index, 20 digits>.pxs          a snapshot (chain/snapfile.c)
 *   tmp-<index, 20 digits>.part          one being written or received
 *   snap-<index>.pxs.damaged             one found damaged (evidence)
 *
 * Invariants:
 *   1. A snapshot file appears under its final name only complete and
 *      durable: written to a .part file, fdatasync'ed, renamed, and the
 *      directory fsync'ed before anything relies on it (the chain is
 *      compacted only after that).
 *   2. The store keeps at most SNAP_KEEP (2) snapshots: after a new one is
 *      recorded, older ones beyond the newest two are removed.  The chain
 *      may be compacted only up to the second newest one
 *      (snapstore_compact_index), so either of the two can restart the
 *      node with the chain after it.
 *   3. A snapshot found damaged is never used and, in a writable store,
 *      renamed to *.damaged at once, so it no longer counts among the two
 *      kept (a fall back would otherwise lose its predecessor at the next
 *      prune).
 *   4. At most one take and any number of receives at a time; a take's
 *      view is thawed by snapstore_take_finish on the owner's thread.
 */
#include "snap.h"
#include "chain_int.h"
#include "chain_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAP_KEEP 2
#define SNAP_NAME_LEN 29              /* "snap-" 20 digits ".pxs" */
#define SNAP_PATH_MAX 600
#define SNAP_MAX_FILES 64             /* listed; more are ignored */

struct snapstore {
    char dir[SNAP_PATH_MAX];          /* DIR/snap */
    bool writable;
    uint64_t idx[SNAP_MAX_FILES];     /* descending */
    uint32_t n;
    bool taking;
    uint64_t part_seq;                /* distinct .part names */
};

struct snap_take {
    kv_view *view;
    int fd;
    char part[SNAP_PATH_MAX + 64];
    char final[SNAP_PATH_MAX + 64];
    char dir[SNAP_PATH_MAX];
    uint8_t head_hash[CHAIN_HASH_BYTES];
    uint8_t membership[SNAP_MAX_MEMBERSHIP];
    uint32_t membership_len;
    snap_info info;
};

struct snapstore_recv {
    snap_recv *r;
    int fd;
    char part[SNAP_PATH_MAX + 64];
    bool done;
};

struct snap_reader {
    int fd;
    uint64_t size;
};

static int name_path(const char *dir, const char *prefix, uint64_t index,
                     const char *suffix, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s%020llu%s", dir, prefix,
                     (unsigned long long)index, suffix);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

/* "snap-<20 digits>.pxs": 1 with *index, else 0. */
static int parse_name(const char *name, uint64_t *index)
{
    if (strlen(name) != SNAP_NAME_LEN || strncmp(name, "snap-", 5) != 0 ||
        strcmp(name + 25, ".pxs") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 5; i < 25; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *index = v;
    return 1;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x > y ? -1 : x < y;
}

/* List snapshots; a writable store also removes leftover .part files
 * (after the walk: the listing is not changed under it).  Through
 * chain_io, so that the simulator's fake disk serves it too. */
struct rescan_walk {
    snapstore *st;
    char **parts;
    uint32_t n_parts, cap_parts;
    int rc;
};

static int rescan_one(void *arg, const char *name)
{
    struct rescan_walk *w = arg;
    snapstore *st = w->st;
    uint64_t index;
    size_t len = strlen(name);
    if (parse_name(name, &index)) {
        if (st->n < SNAP_MAX_FILES)
            st->idx[st->n++] = index;
    } else if (st->writable && len > 5 && strncmp(name, "tmp-", 4) == 0 &&
               strcmp(name + len - 5, ".part") == 0) {
        if (w->n_parts == w->cap_parts) {
            uint32_t cap = w->cap_parts ? 2 * w->cap_parts : 8;
            char **p = realloc(w->parts, cap * sizeof *p);
            if (!p)
                return -ENOMEM;
            w->parts = p;
            w->cap_parts = cap;
        }
        w->parts[w->n_parts] = strdup(name);
        if (!w->parts[w->n_parts])
            return -ENOMEM;
        w->n_parts++;
    }
    return 0;
}

static int rescan(snapstore *st)
{
    st->n = 0;
    struct rescan_walk w = { .st = st };
    int rc = chain_io_list(st->dir, rescan_one, &w);
    if (rc == -ENOENT && !st->writable)
        rc = 0;
    for (uint32_t i = 0; i < w.n_parts; i++) {
        char path[SNAP_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", st->dir, w.parts[i]);
        if (rc == 0) {
            int r = chain_io()->unlink(path);
            if (r && r != -ENOENT)
                rc = r;
        }
        free(w.parts[i]);
    }
    free(w.parts);
    if (rc < 0) {
        st->n = 0;
        return rc;
    }
    qsort(st->idx, st->n, sizeof *st->idx, cmp_desc);
    if (w.n_parts)
        rc = chain_io_fsync_dir(st->dir);
    return rc;
}

int snapstore_open(const char *dir, bool writable, snapstore **out)
{
    if (!dir || !out)
        return -EINVAL;
    snapstore *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    int n = snprintf(st->dir, sizeof st->dir, "%s/snap", dir);
    if (n < 0 || (size_t)n + 64 > sizeof st->dir) {
        free(st);
        return -ENAMETOOLONG;
    }
    st->writable = writable;
    int rc = 0;
    if (writable) {
        rc = chain_io()->mkdir(st->dir, 0700);
        if (rc == 0)
            rc = chain_io_fsync_dir(dir);
        else if (rc == -EEXIST)
            rc = 0;
    }
    if (rc == 0)
        rc = rescan(st);
    if (rc) {
        free(st);
        return rc;
    }
    *out = st;
    return 0;
}

int snapstore_rescan(snapstore *st)
{
    return st->taking ? -EBUSY : rescan(st);
}

void snapstore_close(snapstore *st)
{
    free(st);
}

uint32_t snapstore_count(const snapstore *st)
{
    return st->n;
}

uint64_t snapstore_index_at(const snapstore *st, uint32_t i)
{
    return i < st->n ? st->idx[i] : 0;
}

int snapstore_path(const snapstore *st, uint64_t index, char *out, size_t cap)
{
    return name_path(st->dir, "snap-", index, ".pxs", out, cap);
}

uint64_t snapstore_compact_index(const snapstore *st)
{
    return st->n >= SNAP_KEEP ? st->idx[SNAP_KEEP - 1] : 0;
}

static void forget(snapstore *st, uint64_t index)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < st->n; i++)
        if (st->idx[i] != index)
            st->idx[k++] = st->idx[i];
    st->n = k;
}

/* Invariant 3: rename a damaged snapshot out of the way. */
static int quarantine(snapstore *st, uint64_t index)
{
    char from[SNAP_PATH_MAX + 64], to[SNAP_PATH_MAX + 64];
    int rc = name_path(st->dir, "snap-", index, ".pxs", from, sizeof from);
    if (rc == 0)
        rc = name_path(st->dir, "snap-", index, ".pxs.damaged", to,
                       sizeof to);
    if (rc == 0)
        rc = chain_io()->rename(from, to);
    if (rc == 0)
        rc = chain_io_fsync_dir(st->dir);
    if (rc == 0)
        forget(st, index);
    return rc;
}

int snapstore_load(snapstore *st, kv **state, snap_info *info,
                   snap_load_report *rep)
{
    snap_load_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    if (state)
        *state = NULL;
    if (st->n == 0)
        return -ENOENT;
    uint64_t bad[SNAP_MAX_FILES];
    uint32_t n_bad = 0;
    snap_info local_info;
    if (!info)
        info = &local_info;
    int rc = -EBADMSG;
    for (uint32_t i = 0; i < st->n; i++) {
        char path[SNAP_PATH_MAX + 64];
        chain_damage dmg;
        rc = name_path(st->dir, "snap-", st->idx[i], ".pxs", path,
                       sizeof path);
        if (rc)
            return rc;
        rc = snapfile_load(path, NULL, state, info, &dmg);
        if (rc == 0 && info->index != st->idx[i]) {
            chain_damage_set(&dmg, path, 16, info->index, "the snapshot's "
                             "index differs from its file name");
            if (state) {
                kv_destroy(*state);
                *state = NULL;
            }
            rc = -EBADMSG;
        }
        if (rc == 0)
            break;
        if (rc != -EBADMSG)
            return rc;
        if (rep->n_damaged < SNAP_MAX_REPORTED)
            rep->damaged[rep->n_damaged++] = dmg;
        bad[n_bad++] = st->idx[i];
    }
    rep->fell_back = rc == 0 && n_bad > 0;
    if (st->writable) {
        for (uint32_t i = 0; i < n_bad; i++) {
            int q = quarantine(st, bad[i]);
            if (q == 0)
                rep->quarantined = true;
        }
    }
    return rc;
}

int snapstore_quarantine(snapstore *st, uint64_t index)
{
    if (!st || !st->writable)
        return -EROFS;
    return quarantine(st, index);
}

/* Invariant 2: remove all but the newest SNAP_KEEP. */
static int prune(snapstore *st)
{
    int rc = 0;
    while (st->n > SNAP_KEEP) {
        char path[SNAP_PATH_MAX + 64];
        uint64_t index = st->idx[st->n - 1];
        int r = name_path(st->dir, "snap-", index, ".pxs", path, sizeof path);
        if (r == 0)
            r = chain_io()->unlink(path);
        if (r && r != -ENOENT && rc == 0)
            rc = r;
        st->n--;
    }
    return rc;
}

int snapstore_prune_below(snapstore *st, uint64_t index)
{
    if (!st->writable)
        return -EBADF;
    int rc = 0;
    bool removed = false;
    while (st->n > 0 && st->idx[st->n - 1] < index) {
        char path[SNAP_PATH_MAX + 64];
        int r = name_path(st->dir, "snap-", st->idx[st->n - 1], ".pxs", path,
                          sizeof path);
        if (r == 0)
            r = chain_io()->unlink(path);
        if (r && r != -ENOENT && rc == 0)
            rc = r;
        st->n--;
        removed = true;
    }
    if (rc == 0 && removed)
        rc = chain_io_fsync_dir(st->dir);
    return rc;
}

static void record(snapstore *st, uint64_t index)
{
    forget(st, index);
    if (st->n == SNAP_MAX_FILES)
        st->n--;
    st->idx[st->n++] = index;
    qsort(st->idx, st->n, sizeof *st->idx, cmp_desc);
}

/* ------------------------------------------------------------ take */

static int open_part(snapstore *st, uint64_t index, char *part, size_t cap,
                     int *fd)
{
    char prefix[48];
    snprintf(prefix, sizeof prefix, "tmp-%llu-",
             (unsigned long long)++st->part_seq);
    int rc = name_path(st->dir, prefix, index, ".part", part, cap);
    if (rc)
        return rc;
    int f = chain_io()->open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                             0600);
    if (f < 0)
        return f;
    *fd = f;
    return 0;
}

int snapstore_take_start(snapstore *st, kv *s,
                         const uint8_t head_hash[CHAIN_HASH_BYTES],
                         const uint8_t *membership, uint32_t membership_len,
                         snap_take **out)
{
    if (!st->writable)
        return -EBADF;
    if (!s || !head_hash || !out || membership_len > SNAP_MAX_MEMBERSHIP ||
        (membership_len && !membership))
        return -EINVAL;
    if (st->taking)
        return -EBUSY;
    snap_take *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->fd = -1;
    uint64_t index = kv_applied_index(s);
    int rc = name_path(st->dir, "snap-", index, ".pxs", t->final,
                       sizeof t->final);
    if (rc == 0)
        rc = open_part(st, index, t->part, sizeof t->part, &t->fd);
    if (rc == 0)
        rc = kv_freeze(s, &t->view);
    if (rc) {
        if (t->fd >= 0) {
            chain_io()->close(t->fd);
            chain_io()->unlink(t->part);
        }
        free(t);
        return rc;
    }
    snprintf(t->dir, sizeof t->dir, "%s", st->dir);
    memcpy(t->head_hash, head_hash, CHAIN_HASH_BYTES);
    if (membership_len)
        memcpy(t->membership, membership, membership_len);
    t->membership_len = membership_len;
    st->taking = true;
    *out = t;
    return 0;
}

int snapstore_take_run(snap_take *t)
{
    const chain_io_ops *io = chain_io();
    int rc = snapfile_write(t->fd, t->view, t->head_hash, t->membership,
                            t->membership_len, &t->info);
    if (rc == 0)
        rc = io->fdatasync(t->fd);
    io->close(t->fd);
    t->fd = -1;
    if (rc == 0)
        rc = io->rename(t->part, t->final);
    if (rc == 0)
        rc = chain_io_fsync_dir(t->dir);
    else
        io->unlink(t->part);
    return rc;
}

int snapstore_take_finish(snapstore *st, kv *s, snap_take *t, int rc,
                          snap_info *info)
{
    kv_thaw(s, t->view);
    st->taking = false;
    if (t->fd >= 0) {            /* run never ran */
        chain_io()->close(t->fd);
        chain_io()->unlink(t->part);
        if (rc == 0)
            rc = -ECANCELED;
    }
    if (rc == 0) {
        record(st, t->info.index);
        prune(st);   /* an old file left behind is pruned next time */
        if (info)
            *info = t->info;
    }
    free(t);
    return rc;
}

int snapstore_take(snapstore *st, kv *s,
                   const uint8_t head_hash[CHAIN_HASH_BYTES],
                   const uint8_t *membership, uint32_t membership_len,
                   snap_info *info)
{
    snap_take *t;
    int rc = snapstore_take_start(st, s, head_hash, membership,
                                  membership_len, &t);
    if (rc)
        return rc;
    return snapstore_take_finish(st, s, t, snapstore_take_run(t), info);
}

/* --------------------------------------------------------- receive */

int snapstore_recv_begin(snapstore *st, uint64_t total,
                         const snap_expect *expect, snapstore_recv **out)
{
    if (!st->writable)
        return -EBADF;
    snapstore_recv *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->fd = -1;
    int rc = open_part(st, expect ? expect->index : 0, r->part,
                       sizeof r->part, &r->fd);
    if (rc == 0)
        rc = snap_recv_begin(total, expect, r->fd, &r->r);
    if (rc) {
        snapstore_recv_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int snapstore_recv_chunk(snapstore_recv *r, uint64_t offset,
                         const uint8_t *data, size_t len)
{
    return snap_recv_chunk(r->r, offset, data, len);
}

const chain_damage *snapstore_recv_damage(const snapstore_recv *r)
{
    return snap_recv_damage(r->r);
}

int snapstore_recv_finish(snapstore *st, snapstore_recv *r, kv **state,
                          snap_info *info)
{
    const chain_io_ops *io = chain_io();
    snap_info si;
    kv *s = NULL;
    int rc = snap_recv_finish(r->r, &s, &si);
    char final[SNAP_PATH_MAX + 64];
    if (rc == 0)
        rc = name_path(st->dir, "snap-", si.index, ".pxs", final,
                       sizeof final);
    if (rc == 0)
        rc = io->fdatasync(r->fd);
    if (rc == 0) {
        io->close(r->fd);
        r->fd = -1;
        rc = io->rename(r->part, final);
    }
    if (rc == 0)
        rc = chain_io_fsync_dir(st->dir);
    if (rc) {
        kv_destroy(s);
        return rc;
    }
    r->done = true;
    record(st, si.index);
    prune(st);
    if (info)
        *info = si;
    if (state)
        *state = s;
    else
        kv_destroy(s);
    return 0;
}

void snapstore_recv_free(snapstore_recv *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        chain_io()->close(r->fd);
    if (!r->done && r->part[0])
        chain_io()->unlink(r->part);
    snap_recv_free(r->r);
    free(r);
}

/* ---------------------------------------------------------- reader */

int snapstore_reader_open(snapstore *st, uint64_t index, snap_reader **out,
                          uint64_t *size)
{
    char path[SNAP_PATH_MAX + 64];
    int rc = name_path(st->dir, "snap-", index, ".pxs", path, sizeof path);
    if (rc)
        return rc;
    snap_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->fd = chain_io()->open(path, O_RDONLY | O_CLOEXEC, 0);
    if (r->fd < 0) {
        rc = r->fd;
        free(r);
        return rc;
    }
    struct stat sb;
    rc = chain_io()->fstat(r->fd, &sb);
    if (rc) {
        chain_io()->close(r->fd);
        free(r);
        return rc;
    }
    r->size = (uint64_t)sb.st_size;
    if (size)
        *size = r->size;
    *out = r;
    return 0;
}

int64_t snap_reader_read(snap_reader *r, uint64_t offset, uint8_t *buf,
                         size_t len)
{
    if (offset >= r->size)
        return 0;
    if (len > r->size - offset)
        len = (size_t)(r->size - offset);
    return chain_io_pread_all(r->fd, buf, len, offset);
}

void snap_reader_close(snap_reader *r)
{
    if (!r)
        return;
    chain_io()->close(r->fd);
    free(r);
}
