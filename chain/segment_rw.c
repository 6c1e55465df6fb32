/*
 * segment_rw.c - the chain at run time: append, sync (inline or as a job
 * for the worker thread), read and hash lookups, compaction of segments a
 * snapshot covers, settling files after a storage failure, and the
 * whole-directory verification (segment.c has the format, opening and
 * the invariants).
 */
#include "segment_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* Segments 0..k-1 (all sealed) hold only blocks <= upto. */
static uint32_t compactable(const chain *c, uint64_t upto)
{
    uint32_t k = 0;
    while (k + 1 < c->n_segs && c->segs[k + 1].first_index - 1 <= upto)
        k++;
    return k;
}

int chain_compact_start(chain *c, uint64_t upto, chain_compact_job *job)
{
    memset(job, 0, sizeof *job);
    if (!c->writable)
        return -EBADF;
    if (c->failed)
        return c->failed;
    uint32_t k = compactable(c, upto);
    if (k == 0)
        return 0;
    uint64_t new_first = c->segs[k].first_index;
    uint8_t new_base_hash[CHAIN_HASH_BYTES];
    if (new_first <= c->head) {
        rec_view v;
        int rc = seg_read_record(c, new_first, &v);
        if (rc)
            return rc;
        memcpy(new_base_hash, v.prev, CHAIN_HASH_BYTES);
    } else {
        memcpy(new_base_hash, c->head_hash, CHAIN_HASH_BYTES);
    }
    job->firsts = malloc(k * sizeof *job->firsts);
    if (!job->firsts)
        return -ENOMEM;
    for (uint32_t i = 0; i < k; i++)
        job->firsts[i] = c->segs[i].first_index;
    job->n = k;
    snprintf(job->dir, sizeof job->dir, "%s", c->dir);

    uint64_t drop = new_first - 1 - c->base;
    uint64_t keep = c->head - (new_first - 1);
    memmove(c->locs, c->locs + drop, keep * sizeof *c->locs);
    for (uint64_t i = 0; i < keep; i++)
        c->locs[i].seg -= k;
    memmove(c->segs, c->segs + k, (c->n_segs - k) * sizeof *c->segs);
    c->n_segs -= k;
    c->n_listed = c->n_listed > k ? c->n_listed - k : 0;
    if (c->read_fd >= 0 && c->read_seg < k) {
        chain_io()->close(c->read_fd);
        c->read_fd = -1;
    } else if (c->read_fd >= 0) {
        c->read_seg -= k;
    }
    c->base = new_first - 1;
    memcpy(c->base_hash, new_base_hash, CHAIN_HASH_BYTES);
    return (int)k;
}

int chain_compact_run(chain_compact_job *job)
{
    char path[CHAIN_PATH_MAX + SEG_NAME_LEN + 2];
    int rc = 0;
    for (uint32_t i = 0; i < job->n; i++) {
        int n = snprintf(path, sizeof path, "%s/seg-%020llu.blk", job->dir,
                         (unsigned long long)job->firsts[i]);
        if (n < 0 || (size_t)n >= sizeof path)
            continue;
        int r = chain_io()->unlink(path);
        if (r && r != -ENOENT && rc == 0)
            rc = r;
    }
    if (job->n && rc == 0)
        rc = chain_io_fsync_dir(job->dir);
    free(job->firsts);
    job->firsts = NULL;
    job->n = 0;
    return rc;
}

int chain_compact(chain *c, uint64_t upto)
{
    chain_compact_job job;
    int k = chain_compact_start(c, upto, &job);
    if (k <= 0)
        return k;
    int rc = chain_compact_run(&job);
    return rc ? rc : k;
}

uint64_t chain_head_index(const chain *c)
{
    return c->head;
}

const uint8_t *chain_head_hash(const chain *c)
{
    return c->head_hash;
}

uint64_t chain_synced_index(const chain *c)
{
    return c->synced;
}

const uint8_t *chain_synced_hash(const chain *c)
{
    return c->synced_hash;
}

void chain_set_segment_bytes(chain *c, uint64_t bytes)
{
    c->segment_bytes = bytes < CHAIN_SEGMENT_MIN_BYTES ? CHAIN_SEGMENT_MIN_BYTES
                                                       : bytes;
}

/* Start a new segment for block head+1.  The sealed segment stays open in
 * unsynced_fd until chain_sync, so a roll costs no fsync on the append
 * path (unless two rolls happen between syncs). */
static int append_roll(chain *c)
{
    const chain_io_ops *io = chain_io();
    int rc, fd = -1;

    rc = seg_segs_reserve(c, c->n_segs + 1);
    if (rc)
        return rc;
    if (c->unsynced_fd >= 0) {
        rc = io->fdatasync(c->unsynced_fd);
        if (rc)
            return rc;
        io->close(c->unsynced_fd);
        c->unsynced_fd = -1;
    }
    rc = seg_create_segment_file(c, c->head + 1, &fd);
    if (rc)
        return rc;
    c->unsynced_fd = c->active_fd;
    c->active_fd = fd;
    c->segs[c->n_segs++] = (chain_seg){ .first_index = c->head + 1 };
    c->dir_dirty = true;
    c->rolls++;
    return 0;
}

int chain_append(chain *c, uint64_t index, uint64_t time_ms, uint8_t kind,
                 const uint8_t *data, uint32_t len,
                 uint8_t hash_out[CHAIN_HASH_BYTES])
{
    uint8_t hash[CHAIN_HASH_BYTES];
    int rc;

    if (!c->writable)
        return -EBADF;
    if (c->failed)
        return c->failed;
    if (index != c->head + 1 || kind > PX_ENTRY_LAST ||
        (len > 0 && !data))
        return -EINVAL;
    if (len > PX_MAX_VALUE_BYTES)
        return -EFBIG;
    uint32_t rec_len = REC_FIXED_BYTES + len;
    rc = seg_locs_reserve(c, c->head - c->base + 1);
    if (rc)
        return rc;
    rc = seg_buf_reserve(c, rec_len);
    if (rc)
        return rc;
    rc = chain_hasher_block(&c->hasher, c->head_hash, index, time_ms, kind,
                            data, len, hash);
    if (rc)
        return rc;
    seg_rec_encode(c->buf, index, time_ms, kind, data, len, c->head_hash, hash);

    /* Check the record right before it leaves for the disk. */
    rec_view v;
    const char *reason;
    if (seg_rec_parse(c->buf, rec_len, &v, &reason) != REC_OK ||
        v.index != index || v.len != len ||
        (len && memcmp(v.data, data, len) != 0))
        return -EIO;

    chain_seg *s = &c->segs[c->n_segs - 1];
    if (s->size > 0 && s->size + rec_len > c->segment_bytes) {
        rc = append_roll(c);
        if (rc)
            return rc;
        s = &c->segs[c->n_segs - 1];
    }
    rc = chain_io_pwrite_all(c->active_fd, c->buf, rec_len, s->size);
    if (rc) {
        /* Leave no partial record behind the end (invariant 3). */
        if (chain_io()->ftruncate(c->active_fd, s->size) != 0)
            c->failed = -EIO;
        return rc;
    }
    c->locs[c->head - c->base] = (chain_loc){ .offset = s->size,
                                              .hash8 = seg_hash8(hash),
                                              .seg = c->n_segs - 1,
                                              .len = rec_len };
    s->size += rec_len;
    s->n_blocks++;
    c->head++;
    memcpy(c->head_hash, hash, CHAIN_HASH_BYTES);
    if (hash_out)
        memcpy(hash_out, hash, CHAIN_HASH_BYTES);
    return 0;
}

/* A failed fdatasync leaves the page cache in an unknown state (the
 * kernel may have dropped the dirty pages), so a sync failure is sticky:
 * the node must reopen the chain, which re-verifies what is on disk. */
int chain_sync(chain *c)
{
    chain_sync_job job;
    int rc = chain_sync_start(c, &job);
    if (rc != 0)
        return rc > 0 ? 0 : rc;   /* 1: everything is durable already */
    return chain_sync_finish(c, &job, chain_sync_run(&job));
}

/* The job owns the sealed segment's fd (a roll meanwhile finds none to
 * sync, so it closes nothing the job uses) and a duplicate of the active
 * one (a roll meanwhile keeps the original open as the new sealed fd). */
int chain_sync_start(chain *c, chain_sync_job *job)
{
    memset(job, 0, sizeof *job);
    job->fds[0] = job->fds[1] = -1;
    if (!c->writable)
        return -EBADF;
    if (c->failed)
        return c->failed;
    if (c->job_active)
        return -EBUSY;
    if (c->synced == c->head && !c->dir_dirty && c->unsynced_fd < 0)
        return 1;
    int fd = chain_io_dup(c->active_fd);
    if (fd < 0)
        return fd;
    if (c->unsynced_fd >= 0) {
        job->fds[job->n_fds++] = c->unsynced_fd;
        c->unsynced_fd = -1;
    }
    job->fds[job->n_fds++] = fd;
    job->sync_dir = c->dir_dirty;
    snprintf(job->dir, sizeof job->dir, "%s", c->dir);
    job->head = c->head;
    memcpy(job->head_hash, c->head_hash, CHAIN_HASH_BYTES);
    job->rolls = c->rolls;
    c->job_active = true;
    return 0;
}

int chain_sync_run(chain_sync_job *job)
{
    const chain_io_ops *io = chain_io();
    int rc = 0;
    for (uint32_t i = 0; i < job->n_fds; i++) {
        if (rc == 0)
            rc = io->fdatasync(job->fds[i]);
        io->close(job->fds[i]);
        job->fds[i] = -1;
    }
    job->n_fds = 0;
    if (rc == 0 && job->sync_dir)
        rc = chain_io_fsync_dir(job->dir);
    return rc;
}

int chain_sync_finish(chain *c, const chain_sync_job *job, int rc)
{
    c->job_active = false;
    if (rc) {
        if (!c->failed)
            c->failed = rc;
        return rc;
    }
    if (job->head > c->synced) {
        c->synced = job->head;
        memcpy(c->synced_hash, job->head_hash, CHAIN_HASH_BYTES);
    }
    if (job->sync_dir && job->rolls == c->rolls)
        c->dir_dirty = false;   /* no segment was started since */
    return 0;
}

/* fd for reading segment si (active, or the cached sealed one). */
static int read_fd_for(chain *c, uint32_t si, int *fd)
{
    const chain_io_ops *io = chain_io();
    char path[CHAIN_PATH_MAX];

    if (si + 1 == c->n_segs && c->active_fd >= 0) {
        *fd = c->active_fd;
        return 0;
    }
    if (c->read_fd >= 0 && c->read_seg == si) {
        *fd = c->read_fd;
        return 0;
    }
    int rc = seg_path(c, c->segs[si].first_index, path, sizeof path);
    if (rc)
        return rc;
    int nfd = io->open(path, O_RDONLY, 0);
    if (nfd < 0)
        return nfd;
    if (c->read_fd >= 0)
        io->close(c->read_fd);
    c->read_fd = nfd;
    c->read_seg = si;
    *fd = nfd;
    return 0;
}

/* Read block `index` into c->buf and check it again (invariant 2). */
int seg_read_record(chain *c, uint64_t index, rec_view *v)
{
    int fd, rc;
    const char *reason;

    if (index <= c->base || index > c->head)
        return -ENOENT;
    const chain_loc *l = &c->locs[index - c->base - 1];
    rc = read_fd_for(c, l->seg, &fd);
    if (rc)
        return rc;
    rc = seg_buf_reserve(c, l->len);
    if (rc)
        return rc;
    int64_t got = chain_io_pread_all(fd, c->buf, l->len, l->offset);
    if (got < 0)
        return (int)got;
    if ((uint64_t)got != l->len ||
        seg_rec_parse(c->buf, l->len, v, &reason) != REC_OK ||
        v->rec_len != l->len || v->index != index ||
        seg_hash8(v->hash) != l->hash8 ||
        (index > c->base + 1 &&
         seg_hash8(v->prev) != c->locs[index - c->base - 2].hash8) ||
        (index == c->base + 1 &&
         memcmp(v->prev, c->base_hash, CHAIN_HASH_BYTES) != 0))
        return -EBADMSG;
    uint8_t computed[CHAIN_HASH_BYTES];
    rc = chain_hasher_block(&c->hasher, v->prev, v->index, v->time_ms,
                            v->kind, v->data, v->len, computed);
    if (rc)
        return rc;
    if (memcmp(computed, v->hash, CHAIN_HASH_BYTES) != 0)
        return -EBADMSG;
    return 0;
}

int chain_read(chain *c, uint64_t index, chain_block *out)
{
    rec_view v;
    int rc = seg_read_record(c, index, &v);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    out->data = malloc(v.len ? v.len : 1);
    if (!out->data)
        return -ENOMEM;
    if (v.len)
        memcpy(out->data, v.data, v.len);
    out->index = v.index;
    out->time_ms = v.time_ms;
    out->kind = v.kind;
    out->len = v.len;
    memcpy(out->prev_hash, v.prev, CHAIN_HASH_BYTES);
    memcpy(out->hash, v.hash, CHAIN_HASH_BYTES);
    return 0;
}

void chain_block_free(chain_block *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

int chain_hash_at(chain *c, uint64_t index, uint8_t out[CHAIN_HASH_BYTES])
{
    if (index == c->base) {
        memcpy(out, c->base_hash, CHAIN_HASH_BYTES);
        return 0;
    }
    if (index == c->head) {
        memcpy(out, c->head_hash, CHAIN_HASH_BYTES);
        return 0;
    }
    rec_view v;
    int rc = seg_read_record(c, index, &v);
    if (rc)
        return rc;
    memcpy(out, v.hash, CHAIN_HASH_BYTES);
    return 0;
}

/* fdatasync one regular file of a directory settle_one_dir walks, then
 * drop its cached pages. */
typedef struct settle_walk {
    const char *path;
} settle_walk;

static int settle_one_file(void *arg, const char *name)
{
    const settle_walk *w = arg;
    const chain_io_ops *io = chain_io();
    char file[CHAIN_PATH_MAX];
    if (name[0] == '.')
        return 0;
    int n = snprintf(file, sizeof file, "%s/%s", w->path, name);
    if (n < 0 || (size_t)n >= sizeof file)
        return 0;   /* not a name chain/ ever makes */
    int fd = io->open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0);
    if (fd == -ENOENT || fd == -ELOOP || fd == -ENXIO)
        return 0;   /* gone meanwhile, a link, a socket: not ours */
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = io->fstat(fd, &st);
    if (rc == 0 && S_ISREG(st.st_mode)) {
        rc = io->fdatasync(fd);
        if (rc == 0 && io == chain_io_libc())
            (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    }
    io->close(fd);
    return rc;
}

/* fdatasync every regular file in `path`, then drop its cached pages,
 * then fsync `path` itself (the listing goes through chain_io). */
static int settle_one_dir(const char *path)
{
    settle_walk w = { .path = path };
    int rc = chain_io_list(path, settle_one_file, &w);
    if (rc == -ENOENT)
        return 0;
    return rc ? rc : chain_io_fsync_dir(path);
}

int chain_settle_dir(const char *dir)
{
    char path[CHAIN_PATH_MAX];
    static const char *const subs[] = { "chain", "acceptor" };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        int n = snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        if (n < 0 || (size_t)n >= sizeof path)
            return -ENAMETOOLONG;
        int rc = settle_one_dir(path);
        if (rc)
            return rc;
    }
    return chain_io_fsync_dir(dir);
}

/* Read-only: the torn tail is reported, not cut; the head is the last
 * whole block before it (what the next chain_open will keep). */
int chain_verify_dir_marked(const char *dir, const chain_mark *durable,
                            uint64_t *head_index,
                            uint8_t head_hash[CHAIN_HASH_BYTES],
                            chain_open_report *torn, chain_damage *damage)
{
    chain *c = NULL;
    chain_open_opts o = { .durable = durable, .read_only = true };
    int rc = chain_load(dir, &o, &c, torn, damage);
    if (rc)
        return rc;
    if (head_index)
        *head_index = c->head;
    if (head_hash)
        memcpy(head_hash, c->head_hash, CHAIN_HASH_BYTES);
    chain_free(c);
    return 0;
}

int chain_verify_dir_report(const char *dir, uint64_t *head_index,
                            uint8_t head_hash[CHAIN_HASH_BYTES],
                            chain_open_report *torn, chain_damage *damage)
{
    return chain_verify_dir_marked(dir, NULL, head_index, head_hash, torn,
                                   damage);
}

int chain_verify_dir(const char *dir, uint64_t *head_index,
                     uint8_t head_hash[CHAIN_HASH_BYTES], chain_damage *damage)
{
    return chain_verify_dir_report(dir, head_index, head_hash, NULL, damage);
}
