/*
 * segment.c - owns the hash chain on disk: block records in segment files
 * under DIR/chain/, the in-memory index of where each block lives, start-up
 * verification, torn-tail repair, append, sync and read.
 *
 * Files: DIR/chain/seg-<first block index, 20 decimal digits>.blk.  The
 * active (last) segment takes appends until the next record would push it
 * past the segment bound (CHAIN_SEGMENT_BYTES), then a new segment named
 * after head+1 is created.  Other names in DIR/chain/ are ignored.
 *
 * Block record (all integers little-endian), R = 108 + L bytes:
 *   offset  size  meaning
 *   header
 *   0       4     magic "pxbk" (0x70 0x78 0x62 0x6b)
 *   4       2     format version, 1
 *   6       2     reserved, 0
 *   8       4     record length R (header + body + checksum)
 *   12      4     header checksum: CRC-32 of bytes 0..11
 *   body
 *   16      8     block index (first block is 1)
 *   24      8     time_ms, the leader's commit stamp
 *   32      1     kind (enum px_entry_kind)
 *   33      3     reserved, 0
 *   36      4     data length L (<= PX_MAX_VALUE_BYTES, R == 108 + L)
 *   40      L     data (the committed value)
 *   40+L    32    prev_hash: hash of block index-1 (zeros for block 1)
 *   72+L    32    hash = SHA-256(prev_hash || encode(index, time_ms, kind,
 *                 data)), encode() documented in hash.c
 *   104+L   4     body checksum: CRC-32 of bytes 16..103+L
 * Every byte of a record is covered by a checksum, so any single changed
 * byte is detected before the hashes are even consulted.
 *
 * Invariants:
 *   1. Blocks 1..head are stored in order, contiguous, across segments in
 *      name order; segment k's name is the index of its first block.
 *   2. After chain_open, every block 1..head passed the checksums, its
 *      index is its position, its prev_hash is the hash of the block
 *      before and its hash follows the hash rule.  locs[i-1] tells where
 *      block i is and the first 8 bytes of its hash, so chain_read checks
 *      a block again right after reading it.
 *   3. Only the active segment is written, only at its end (`size`).  A
 *      failed append truncates back to `size`; if even that fails the
 *      chain refuses further writes (`failed`), because bytes after the
 *      end would be read as damage later.
 *   4. synced <= head; blocks 1..synced were fdatasync'ed and their
 *      segment names fsync'ed into DIR/chain.
 *   5. Torn tail vs damage: only the last record of the last segment may
 *      be torn - its header is incomplete, or its valid header claims more
 *      bytes than the file holds, or the file is all zero from its start
 *      on (space extended but never written).  Torn bytes were never
 *      synced, so cutting them loses nothing acknowledged.  Everything
 *      else that fails is damage (-EBADMSG), reported for the first bad
 *      block: a complete record that fails a check cannot come from a
 *      crash of this writer.  Empty segment files after the last
 *      non-empty one are crash leftovers of a roll and are removed.
 *   6. What was durable is never a torn tail.  chain_open_marked gets the
 *      chain position the acceptor store recorded as durable (its mark,
 *      written only after a chain sync): a torn record at or below the
 *      mark, a chain that ends before it, or another block at the mark's
 *      index is damage (blocks were cut away, rolled back or replaced),
 *      named by file, offset and the first block missing or different.
 *   7. Files are created 0600, the directory 0700.
 *
 *   8. chain_settle_dir (a node reopening its storage after a failure)
 *      syncs every file before it drops cached pages, so what the next
 *      open reads and calls durable is on the disk.
 *
 * Segment life:  [created, empty] --append--> [active] --roll--> [sealed]
 *   created by chain_open (first segment) or append_roll; sealed segments
 *   are never written again.
 */
#include "segment_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

int seg_path(const chain *c, uint64_t first_index, char *out,
                    size_t cap)
{
    int n = snprintf(out, cap, "%s/seg-%020llu.blk", c->dir,
                     (unsigned long long)first_index);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int chain_locate(const chain *c, uint64_t index, char *path, size_t cap,
                 uint64_t *offset)
{
    if (index <= c->base || index > c->head)
        return -ENOENT;
    const chain_loc *l = &c->locs[index - c->base - 1];
    *offset = l->offset;
    return seg_path(c, c->segs[l->seg].first_index, path, cap);
}

int seg_buf_reserve(chain *c, size_t need)
{
    if (need <= c->buf_cap)
        return 0;
    uint8_t *p = chain_grow(c->buf, &c->buf_cap, need, 1, 4096);
    if (!p)
        return -ENOMEM;
    c->buf = p;
    return 0;
}

int seg_locs_reserve(chain *c, uint64_t need)
{
    if (need <= c->cap_locs)
        return 0;
    size_t cap = (size_t)c->cap_locs;
    chain_loc *p = chain_grow(c->locs, &cap, (size_t)need, sizeof *p, 1024);
    if (!p)
        return -ENOMEM;
    c->locs = p;
    c->cap_locs = cap;
    return 0;
}

int seg_segs_reserve(chain *c, uint32_t need)
{
    if (need <= c->cap_segs)
        return 0;
    if (need > SEG_MAX_FILES)
        return -EMFILE;
    size_t cap = c->cap_segs;
    chain_seg *p = chain_grow(c->segs, &cap, need, sizeof *p, 16);
    if (!p)
        return -ENOMEM;
    c->segs = p;
    c->cap_segs = (uint32_t)cap;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Parse "seg-<20 digits>.blk"; 1 with *first filled, 0 if not a segment. */
static int seg_name_parse(const char *name, uint64_t *first)
{
    if (strlen(name) != SEG_NAME_LEN || strncmp(name, "seg-", 4) != 0 ||
        strcmp(name + 24, ".blk") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 4; i < 24; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *first = v;
    return 1;
}

typedef struct seg_listing {
    uint64_t *firsts;
    uint32_t n, cap;
} seg_listing;

static int list_one(void *arg, const char *name)
{
    seg_listing *l = arg;
    uint64_t first;
    if (!seg_name_parse(name, &first))
        return 0;
    if (l->n == l->cap) {
        if (l->cap >= SEG_MAX_FILES)
            return -EMFILE;
        uint32_t ncap = l->cap ? l->cap * 2 : 16;
        uint64_t *p = realloc(l->firsts, ncap * sizeof *p);
        if (!p)
            return -ENOMEM;
        l->firsts = p;
        l->cap = ncap;
    }
    l->firsts[l->n++] = first;
    return 0;
}

/* List segment first indexes in ascending order into c->segs. */
static int seg_list_segments(chain *c)
{
    seg_listing l = { 0 };
    int rc = chain_io_list(c->dir, list_one, &l);
    if (rc)
        goto out_free;
    uint32_t n = l.n;
    if (n)
        qsort(l.firsts, n, sizeof *l.firsts, cmp_u64);
    rc = seg_segs_reserve(c, n);
    if (rc)
        goto out_free;
    for (uint32_t i = 0; i < n; i++) {
        c->segs[i].first_index = l.firsts[i];
        c->segs[i].n_blocks = 0;
        c->segs[i].size = 0;
    }
    c->n_segs = c->n_listed = n;
out_free:
    free(l.firsts);
    return rc;
}

/* ------------------------------------------------------ verification */

/* Verify the records of segment `si` held in buf[0..size) and index them.
 * On a torn tail in the last segment, *torn_at is set to the cut offset
 * (else to size). */
static int scan_segment(chain *c, uint32_t si, const char *path,
                        const uint8_t *buf, uint64_t size, bool is_last,
                        uint64_t *torn_at, chain_damage *damage)
{
    chain_seg *s = &c->segs[si];
    uint64_t off = 0;
    uint8_t computed[CHAIN_HASH_BYTES];
    int rc;

    *torn_at = size;
    if (s->first_index != c->head + 1) {
        chain_damage_set(damage, path, 0, c->head + 1,
                         "segment name does not match its first block");
        return -EBADMSG;
    }
    /* Bounded: every round consumes at least REC_FIXED_BYTES. */
    while (off < size) {
        rec_view v;
        const char *reason;
        uint64_t expect = c->head + 1;
        int st = seg_rec_parse(buf + off, size - off, &v, &reason);
        if (st != REC_OK) {
            bool torn = is_last &&
                (st == REC_SHORT_HEADER || st == REC_PAST_END ||
                 chain_all_zero(buf + off, (size_t)(size - off)));
            if (torn && expect > c->mark.index) {
                *torn_at = off;
                break;
            }
            if (torn) {
                char why[128];
                snprintf(why, sizeof why, "%s, but the acceptor store "
                         "recorded block %llu as durable (cut short)", reason,
                         (unsigned long long)c->mark.index);
                chain_damage_set(damage, path, off, expect, why);
                return -EBADMSG;
            }
            chain_damage_set(damage, path, off, expect, reason);
            return -EBADMSG;
        }
        if (v.index != expect) {
            chain_damage_set(damage, path, off, expect,
                             "index gap (block index out of sequence)");
            return -EBADMSG;
        }
        if (expect == c->base + 1 && c->base_from_block) {
            /* the first block held after compaction: its prev_hash is
             * the base, vouched for by the snapshot (check_snapshot) */
            memcpy(c->base_hash, v.prev, CHAIN_HASH_BYTES);
            memcpy(c->head_hash, v.prev, CHAIN_HASH_BYTES);
            c->base_from_block = false;
        }
        if (expect == c->base + 1 && c->has_snap &&
            c->snap.index == c->base &&
            memcmp(v.prev, c->head_hash, CHAIN_HASH_BYTES) != 0) {
            char why[128];
            snprintf(why, sizeof why, "block %llu does not continue from the "
                     "head hash of the snapshot at block %llu",
                     (unsigned long long)expect,
                     (unsigned long long)c->snap.index);
            chain_damage_set(damage, path, off, expect, why);
            return -EBADMSG;
        }
        if (memcmp(v.prev, c->head_hash, CHAIN_HASH_BYTES) != 0) {
            chain_damage_set(damage, path, off, expect,
                             "bad link (prev hash differs from previous block)");
            return -EBADMSG;
        }
        rc = chain_hasher_block(&c->hasher, v.prev, v.index, v.time_ms,
                                v.kind, v.data, v.len, computed);
        if (rc)
            return rc;
        if (memcmp(computed, v.hash, CHAIN_HASH_BYTES) != 0) {
            chain_damage_set(damage, path, off, expect, "hash mismatch");
            return -EBADMSG;
        }
        if (v.index == c->mark.index &&
            memcmp(v.hash, c->mark.hash, CHAIN_HASH_BYTES) != 0) {
            char why[128];
            snprintf(why, sizeof why, "block %llu differs from the one the "
                     "acceptor store recorded as durable (the chain was "
                     "replaced)", (unsigned long long)v.index);
            chain_damage_set(damage, path, off, expect, why);
            return -EBADMSG;
        }
        rc = seg_locs_reserve(c, c->head - c->base + 1);
        if (rc)
            return rc;
        c->locs[c->head - c->base] = (chain_loc){ .offset = off,
                                                  .hash8 = seg_hash8(v.hash),
                                                  .seg = si,
                                                  .len = v.rec_len };
        memcpy(c->head_hash, v.hash, CHAIN_HASH_BYTES);
        c->head++;
        s->n_blocks++;
        off += v.rec_len;
    }
    s->size = *torn_at;
    if (!is_last && s->n_blocks == 0) {
        chain_damage_set(damage, path, 0, c->head + 1, "empty segment");
        return -EBADMSG;
    }
    return 0;
}

void chain_free(chain *c)
{
    const chain_io_ops *io = chain_io();
    if (!c)
        return;
    if (c->active_fd >= 0)
        io->close(c->active_fd);
    if (c->unsynced_fd >= 0)
        io->close(c->unsynced_fd);
    if (c->read_fd >= 0)
        io->close(c->read_fd);
    chain_hasher_free(&c->hasher);
    free(c->segs);
    free(c->locs);
    free(c->buf);
    free(c);
}

int seg_create_segment_file(chain *c, uint64_t first_index, int *fd_out)
{
    char path[CHAIN_PATH_MAX];
    int rc = seg_path(c, first_index, path, sizeof path);
    if (rc)
        return rc;
    int fd = chain_io()->open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fd;
    *fd_out = fd;
    return 0;
}

static void torn_report(chain_open_report *report, const char *path,
                        uint64_t offset, uint64_t bytes, bool cut)
{
    if (!report)
        return;
    report->torn_tail_cut = cut;
    snprintf(report->torn_path, sizeof report->torn_path, "%s", path);
    report->torn_offset = offset;
    report->torn_bytes = bytes;
}

/* Load and verify segment `si`.  Writable: the last segment stays open
 * for appends (c->active_fd) and a torn tail is cut. */
static int load_segment(chain *c, uint32_t si, chain_open_report *report,
                        chain_damage *damage)
{
    const chain_io_ops *io = chain_io();
    char path[CHAIN_PATH_MAX];
    bool is_last = si + 1 == c->n_segs;
    struct stat st;
    uint64_t torn_at;
    int rc = seg_path(c, c->segs[si].first_index, path, sizeof path);
    if (rc)
        return rc;
    int fd = io->open(path, (is_last && c->writable) ? O_RDWR : O_RDONLY, 0);
    if (fd < 0)
        return fd;
    rc = io->fstat(fd, &st);
    if (rc)
        goto out_close;
    if ((uint64_t)st.st_size > SEG_MAX_FILE_BYTES) {
        chain_damage_set(damage, path, 0, c->head + 1, "segment file too large");
        rc = -EBADMSG;
        goto out_close;
    }
    uint64_t size = (uint64_t)st.st_size;
    rc = seg_buf_reserve(c, size ? (size_t)size : 1);
    if (rc)
        goto out_close;
    int64_t got = chain_io_pread_all(fd, c->buf, (size_t)size, 0);
    if (got < 0) {
        rc = (int)got;
        goto out_close;
    }
    size = (uint64_t)got; /* a file that shrank meanwhile: use what is there */
    rc = scan_segment(c, si, path, c->buf, size, is_last, &torn_at, damage);
    if (rc)
        goto out_close;
    if (torn_at < size) {
        if (c->writable) {
            rc = io->ftruncate(fd, torn_at);
            if (!rc)
                rc = io->fdatasync(fd);
            if (rc)
                goto out_close;
        }
        torn_report(report, path, torn_at, size - torn_at, c->writable);
    }
    if (is_last) {
        c->active_fd = fd;
        return 0;
    }
    io->close(fd);
    return 0;
out_close:
    io->close(fd);
    return rc;
}

/* Segment files after the last non-empty one are leftovers of rolls
 * whose data never reached the disk before a crash (the new name may be
 * durable while its contents are not).  They hold nothing: drop them from
 * the list and, when writable, from the directory. */
static int drop_empty_tail(chain *c)
{
    const chain_io_ops *io = chain_io();
    char path[CHAIN_PATH_MAX];
    int rc;

    while (c->n_segs > 1) {
        struct stat st;
        rc = seg_path(c, c->segs[c->n_segs - 1].first_index, path,
                      sizeof path);
        if (rc)
            return rc;
        int fd = io->open(path, O_RDONLY, 0);
        if (fd < 0)
            return fd;
        rc = io->fstat(fd, &st);
        io->close(fd);
        if (rc)
            return rc;
        if (st.st_size != 0)
            break;
        c->n_segs--;
    }
    return 0;
}

/* Remove the empty segment files drop_empty_tail left out of the list
 * (only once the chain verified: nothing changes on disk otherwise). */
static int remove_empty_tail(chain *c)
{
    char path[CHAIN_PATH_MAX];
    if (!c->writable || c->n_listed <= c->n_segs)
        return 0;
    for (uint32_t i = c->n_segs; i < c->n_listed; i++) {
        int rc = seg_path(c, c->segs[i].first_index, path, sizeof path);
        if (rc == 0)
            rc = chain_io()->unlink(path);
        if (rc)
            return rc;
    }
    c->n_listed = c->n_segs;
    return chain_io_fsync_dir(c->dir);
}

static int load_segments(chain *c, chain_open_report *report,
                         chain_damage *damage)
{
    int rc = drop_empty_tail(c);
    if (rc)
        return rc;
    for (uint32_t si = 0; si < c->n_segs; si++) {
        rc = load_segment(c, si, report, damage);
        if (rc)
            return rc;
    }
    return 0;
}

static int loc_path(chain *c, uint64_t index, char *path, size_t cap,
                    uint64_t *offset)
{
    const chain_loc *l = &c->locs[index - c->base - 1];
    *offset = l->offset;
    return seg_path(c, c->segs[l->seg].first_index, path, cap);
}

/* Invariant 6: the chain holds the block the acceptor store recorded as
 * durable, and that very block.  Blocks compacted away (at or below the
 * base) and blocks a snapshot holds are durable in the snapshot. */
static int check_mark(chain *c, chain_damage *damage)
{
    char path[CHAIN_PATH_MAX];
    char why[128];
    if (c->mark.index == 0 || c->mark.index <= c->base)
        return 0;
    if (c->head < c->mark.index) {
        if (c->has_snap && c->mark.index <= c->snap.index)
            return 0;     /* the chain is behind the snapshot: reset */
        uint64_t offset = 0;
        if (c->n_segs) {
            int rc = seg_path(c, c->segs[c->n_segs - 1].first_index, path,
                              sizeof path);
            if (rc)
                return rc;
            offset = c->segs[c->n_segs - 1].size;
        } else {
            snprintf(path, sizeof path, "%s", c->dir);
        }
        snprintf(why, sizeof why, "the chain ends at block %llu but the "
                 "acceptor store recorded block %llu as durable (blocks "
                 "were cut away or rolled back)",
                 (unsigned long long)c->head,
                 (unsigned long long)c->mark.index);
        chain_damage_set(damage, path, offset, c->head + 1, why);
        return -EBADMSG;
    }
    uint8_t hash[CHAIN_HASH_BYTES];
    int rc = chain_hash_at(c, c->mark.index, hash);
    if (rc)
        return rc;
    if (memcmp(hash, c->mark.hash, CHAIN_HASH_BYTES) == 0)
        return 0;
    uint64_t offset;
    rc = loc_path(c, c->mark.index, path, sizeof path, &offset);
    if (rc)
        return rc;
    snprintf(why, sizeof why, "block %llu differs from the one the acceptor "
             "store recorded as durable (the chain was replaced)",
             (unsigned long long)c->mark.index);
    chain_damage_set(damage, path, offset, c->mark.index, why);
    return -EBADMSG;
}

/* The chain continues the snapshot (index S, head hash H): it starts at
 * or before block S+1 (else blocks are missing between them), and where
 * it holds block S, that block's hash is H.  A chain that ends before S
 * is only behind (the snapshot holds what it lacks): *behind is set. */
static int check_snapshot(chain *c, bool *behind, chain_damage *damage)
{
    char path[CHAIN_PATH_MAX];
    char why[160];
    *behind = false;
    if (!c->has_snap)
        return 0;
    uint64_t first = c->base + 1;
    if (first > c->snap.index + 1) {
        int rc = seg_path(c, first, path, sizeof path);
        if (rc)
            return rc;
        snprintf(why, sizeof why, "the chain starts at block %llu but the "
                 "snapshot ends at block %llu: blocks %llu..%llu are missing",
                 (unsigned long long)first,
                 (unsigned long long)c->snap.index,
                 (unsigned long long)c->snap.index + 1,
                 (unsigned long long)first - 1);
        chain_damage_set(damage, path, 0, c->snap.index + 1, why);
        return -EBADMSG;
    }
    if (c->head < c->snap.index) {
        *behind = true;
        return 0;
    }
    if (c->snap.index == c->base)
        return 0;        /* the first block's link was checked (scan) */
    uint8_t hash[CHAIN_HASH_BYTES];
    int rc = chain_hash_at(c, c->snap.index, hash);
    if (rc)
        return rc;
    if (memcmp(hash, c->snap.hash, CHAIN_HASH_BYTES) == 0)
        return 0;
    uint64_t offset;
    rc = loc_path(c, c->snap.index, path, sizeof path, &offset);
    if (rc)
        return rc;
    snprintf(why, sizeof why, "block %llu differs from the head hash of the "
             "snapshot taken at it", (unsigned long long)c->snap.index);
    chain_damage_set(damage, path, offset, c->snap.index, why);
    return -EBADMSG;
}

/* Forget every block in memory and continue after (index, hash). */
static void forget_blocks(chain *c, uint64_t index,
                          const uint8_t hash[CHAIN_HASH_BYTES])
{
    const chain_io_ops *io = chain_io();
    if (c->active_fd >= 0)
        io->close(c->active_fd);
    if (c->unsynced_fd >= 0)
        io->close(c->unsynced_fd);
    if (c->read_fd >= 0)
        io->close(c->read_fd);
    c->active_fd = c->unsynced_fd = c->read_fd = -1;
    c->n_segs = c->n_listed = 0;
    c->base = c->head = index;
    memcpy(c->base_hash, hash, CHAIN_HASH_BYTES);
    memcpy(c->head_hash, hash, CHAIN_HASH_BYTES);
    c->base_from_block = false;
    c->dir_dirty = false;
}

#define CHAIN_DISCARDED "chain.discarded"

typedef struct discard_walk {
    const char *path;
    int rc;
} discard_walk;

static int discard_one(void *arg, const char *name)
{
    discard_walk *w = arg;
    char f[CHAIN_PATH_MAX + 64];
    int n = snprintf(f, sizeof f, "%s/%s", w->path, name);
    if (n < 0 || (size_t)n >= sizeof f)
        return 0;
    int r = chain_io()->unlink(f);
    if (r && r != -ENOENT && w->rc == 0)
        w->rc = r;
    return 0;
}

/* Remove DIR/chain.discarded (what a reset moved aside) if it is there
 * (listed and unlinked through chain_io). */
static int remove_discarded(const char *parent)
{
    char path[CHAIN_PATH_MAX + 32];
    int n = snprintf(path, sizeof path, "%s/%s", parent, CHAIN_DISCARDED);
    if (n < 0 || (size_t)n >= sizeof path)
        return -ENAMETOOLONG;
    discard_walk w = { .path = path };
    int rc = chain_io_list(path, discard_one, &w);
    if (rc)
        return rc == -ENOENT ? 0 : rc;
    rc = w.rc;
    if (rc == 0 && rmdir(path) != 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

/* Replace DIR/chain by an empty chain continuing after (index, hash):
 * the old directory is renamed aside in one step (a crash leaves either
 * the old chain or none, never a mix), a new one with an empty segment
 * index+1 is made durable, then the old one is removed. */
static int reset_dir(chain *c, uint64_t index,
                     const uint8_t hash[CHAIN_HASH_BYTES])
{
    const chain_io_ops *io = chain_io();
    char aside[CHAIN_PATH_MAX + 32];
    int n = snprintf(aside, sizeof aside, "%s/%s", c->parent, CHAIN_DISCARDED);
    if (n < 0 || (size_t)n >= sizeof aside)
        return -ENAMETOOLONG;
    int rc = remove_discarded(c->parent);
    if (rc)
        return rc;
    forget_blocks(c, index, hash);
    rc = io->rename(c->dir, aside);
    if (rc && rc != -ENOENT)
        return rc;
    rc = io->mkdir(c->dir, 0700);
    if (rc && rc != -EEXIST)
        return rc;
    rc = chain_io_fsync_dir(c->parent);
    if (rc)
        return rc;
    rc = seg_segs_reserve(c, 1);
    if (rc)
        return rc;
    rc = seg_create_segment_file(c, index + 1, &c->active_fd);
    if (rc)
        return rc;
    c->segs[0] = (chain_seg){ .first_index = index + 1 };
    c->n_segs = c->n_listed = 1;
    rc = chain_io_fsync_dir(c->dir);
    if (rc)
        return rc;
    c->synced = c->head;
    memcpy(c->synced_hash, c->head_hash, CHAIN_HASH_BYTES);
    return remove_discarded(c->parent);
}

int chain_load(const char *dir, const chain_open_opts *o, chain **out,
               chain_open_report *report, chain_damage *damage)
{
    const chain_io_ops *io = chain_io();
    bool writable = !o->read_only;
    int rc;

    if (report)
        memset(report, 0, sizeof *report);
    if (damage)
        memset(damage, 0, sizeof *damage);
    if (!dir || !out)
        return -EINVAL;
    chain *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->active_fd = c->unsynced_fd = c->read_fd = -1;
    c->writable = writable;
    if (o->durable)
        c->mark = *o->durable;
    if (o->snapshot) {
        c->has_snap = true;
        c->snap = *o->snapshot;
    }
    c->segment_bytes = CHAIN_SEGMENT_BYTES;
    int n = snprintf(c->dir, sizeof c->dir, "%s/chain", dir);
    if (n < 0 || (size_t)n + SEG_NAME_LEN + 2 > sizeof c->dir) {
        rc = -ENAMETOOLONG;
        goto out_free;
    }
    snprintf(c->parent, sizeof c->parent, "%s", dir);
    rc = chain_hasher_init(&c->hasher);
    if (rc)
        goto out_free;
    if (writable) {
        rc = remove_discarded(dir);
        if (rc == 0)
            rc = io->mkdir(c->dir, 0700);
        if (rc == 0)
            rc = chain_io_fsync_dir(dir);
        else if (rc == -EEXIST)
            rc = 0;
        if (rc)
            goto out_free;
    }
    rc = seg_list_segments(c);
    if (rc)
        goto out_free;
    /* where the chain starts: block 1, or with a snapshot any block up to
     * the one after it (compaction); check_snapshot judges the start */
    uint64_t first = c->n_segs ? c->segs[0].first_index
                               : (c->has_snap ? c->snap.index + 1 : 1);
    if (!c->has_snap && first != 1) {
        char path[CHAIN_PATH_MAX];
        rc = seg_path(c, first, path, sizeof path);
        if (rc == 0) {
            chain_damage_set(damage, path, 0, 1, "the chain does not start "
                             "at block 1 and no snapshot holds the blocks "
                             "before it");
            rc = -EBADMSG;
        }
        goto out_free;
    }
    if (first == 0) {
        rc = -EBADMSG;
        chain_damage_set(damage, c->dir, 0, 0, "a segment named block 0");
        goto out_free;
    }
    c->base = c->head = first - 1;
    if (c->has_snap && c->base == c->snap.index) {
        memcpy(c->base_hash, c->snap.hash, CHAIN_HASH_BYTES);
        memcpy(c->head_hash, c->snap.hash, CHAIN_HASH_BYTES);
    } else if (c->base > 0) {
        c->base_from_block = true;
    }
    if (c->n_segs == 0 && c->mark.index > c->base &&
        !(c->has_snap && c->mark.index <= c->snap.index)) {
        rc = check_mark(c, damage);   /* every durable block is gone */
        goto out_free;
    }
    if (c->n_segs == 0 && writable) {
        rc = seg_segs_reserve(c, 1);
        if (rc)
            goto out_free;
        rc = seg_create_segment_file(c, first, &c->active_fd);
        if (rc)
            goto out_free;
        c->segs[0] = (chain_seg){ .first_index = first };
        c->n_segs = c->n_listed = 1;
        rc = chain_io_fsync_dir(c->dir);
        if (rc)
            goto out_free;
    } else if (c->n_segs > 0) {
        rc = load_segments(c, report, damage);
        if (rc == 0)
            rc = check_mark(c, damage);
        if (rc == 0)
            rc = remove_empty_tail(c);
        if (rc)
            goto out_free;
    }
    bool behind;
    rc = check_snapshot(c, &behind, damage);
    if (rc)
        goto out_free;
    if (behind) {
        /* the snapshot holds every block the chain has and more: go on
         * after it (read-only: as the next writable open will) */
        if (report) {
            report->reset = true;
            report->reset_head = c->head;
        }
        if (writable)
            rc = reset_dir(c, c->snap.index, c->snap.hash);
        else
            forget_blocks(c, c->snap.index, c->snap.hash);
        if (rc)
            goto out_free;
    }
    /* What survived verification is on disk; the torn cut was synced. */
    c->synced = c->head;
    memcpy(c->synced_hash, c->head_hash, CHAIN_HASH_BYTES);
    *out = c;
    return 0;
out_free:
    chain_free(c);
    return rc;
}

/* ---------------------------------------------------------- public */

int chain_open(const char *dir, chain **out, chain_open_report *report,
               chain_damage *damage)
{
    chain_open_opts o = { 0 };
    return chain_load(dir, &o, out, report, damage);
}

int chain_open_marked(const char *dir, const chain_mark *durable, chain **out,
                      chain_open_report *report, chain_damage *damage)
{
    chain_open_opts o = { .durable = durable };
    return chain_load(dir, &o, out, report, damage);
}

int chain_open_ex(const char *dir, const chain_open_opts *opts, chain **out,
                  chain_open_report *report, chain_damage *damage)
{
    chain_open_opts none = { 0 };
    return chain_load(dir, opts ? opts : &none, out, report, damage);
}

void chain_close(chain *c)
{
    chain_free(c);
}

uint64_t chain_base_index(const chain *c)
{
    return c->base;
}

const uint8_t *chain_base_hash(const chain *c)
{
    return c->base_hash;
}

int chain_reset(chain *c, uint64_t index, const uint8_t hash[CHAIN_HASH_BYTES])
{
    if (!c->writable)
        return -EBADF;
    if (c->job_active)
        return -EBUSY;
    int rc = reset_dir(c, index, hash);
    if (rc && !c->failed)
        c->failed = rc;     /* the directory is in an unknown state */
    return rc;
}

