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
 * Segment life:  [created, empty] --append--> [active] --roll--> [sealed]
 *   created by chain_open (first segment) or append_roll; sealed segments
 *   are never written again.
 */
#include "chain_int.h"
#include "chain_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_MAGIC 0x6b627870u          /* "pxbk" little-endian */
#define REC_VERSION 1
#define REC_HEADER_BYTES 16
#define REC_FIXED_BYTES 108            /* R - L */
#define REC_MAX_BYTES ((uint64_t)REC_FIXED_BYTES + PX_MAX_VALUE_BYTES)
#define SEG_NAME_LEN 28                /* "seg-" 20 digits ".blk" */
#define SEG_MAX_FILES (1u << 20)       /* bound on segments listed */
#define SEG_MAX_FILE_BYTES (1ull << 32) /* larger files are not ours */
#define CHAIN_PATH_MAX 512
_Static_assert(sizeof(((chain_sync_job *)0)->dir) >= CHAIN_PATH_MAX,
               "a sync job holds the chain directory");
#define CHAIN_SEGMENT_MIN_BYTES 256

typedef struct chain_loc {
    uint64_t offset;     /* record start in its segment */
    uint64_t hash8;      /* first 8 bytes of the block hash */
    uint32_t seg;        /* index into chain.segs */
    uint32_t len;        /* record length R */
} chain_loc;

typedef struct chain_seg {
    uint64_t first_index;
    uint64_t n_blocks;
    uint64_t size;       /* bytes of whole records */
} chain_seg;

struct chain {
    char dir[CHAIN_PATH_MAX];          /* DIR/chain */
    bool writable;
    chain_seg *segs;
    uint32_t n_segs, cap_segs;
    uint32_t n_listed;                 /* segment files found on open */
    chain_loc *locs;                   /* locs[i-1] for block i */
    uint64_t cap_locs;
    uint64_t head;
    uint8_t head_hash[CHAIN_HASH_BYTES];
    uint64_t synced;
    uint8_t synced_hash[CHAIN_HASH_BYTES];
    chain_mark mark;                   /* durable position to check */
    uint64_t segment_bytes;
    int active_fd;                     /* last segment */
    int unsynced_fd;                   /* sealed segment not yet synced */
    bool dir_dirty;                    /* a segment name not yet fsync'ed */
    uint64_t rolls;                    /* segments started by appends */
    bool job_active;                   /* a chain_sync_job is out */
    int failed;                        /* sticky write error, 0 = none */
    int read_fd;                       /* cached fd of a sealed segment */
    uint32_t read_seg;
    chain_hasher hasher;
    uint8_t *buf;                      /* record scratch */
    size_t buf_cap;
};

/* ------------------------------------------------------------ records */

enum rec_status {
    REC_OK = 0,
    REC_SHORT_HEADER,   /* fewer than 16 bytes left */
    REC_BAD_HEADER,     /* magic, version, checksum or length wrong */
    REC_PAST_END,       /* valid header, record longer than what is left */
    REC_BAD_BODY,       /* body checksum or body fields wrong */
};

typedef struct rec_view {
    uint64_t index;
    uint64_t time_ms;
    uint8_t kind;
    uint32_t len;
    uint32_t rec_len;
    const uint8_t *data;
    const uint8_t *prev;
    const uint8_t *hash;
} rec_view;

static int rec_parse(const uint8_t *p, uint64_t avail, rec_view *v,
                     const char **reason)
{
    if (avail < REC_HEADER_BYTES) {
        *reason = "truncated record header";
        return REC_SHORT_HEADER;
    }
    if (le_get32(p) != REC_MAGIC) {
        *reason = "bad magic";
        return REC_BAD_HEADER;
    }
    if (chain_crc32(p, 12) != le_get32(p + 12)) {
        *reason = "bad header checksum";
        return REC_BAD_HEADER;
    }
    if (le_get16(p + 4) != REC_VERSION || le_get16(p + 6) != 0) {
        *reason = "unknown record version";
        return REC_BAD_HEADER;
    }
    uint32_t rec_len = le_get32(p + 8);
    if (rec_len < REC_FIXED_BYTES || rec_len > REC_MAX_BYTES) {
        *reason = "bad record length";
        return REC_BAD_HEADER;
    }
    if (rec_len > avail) {
        *reason = "record extends past end of file";
        return REC_PAST_END;
    }
    if (chain_crc32(p + 16, rec_len - 20) != le_get32(p + rec_len - 4)) {
        *reason = "bad checksum";
        return REC_BAD_BODY;
    }
    v->index = le_get64(p + 16);
    v->time_ms = le_get64(p + 24);
    v->kind = p[32];
    v->len = le_get32(p + 36);
    v->rec_len = rec_len;
    if ((uint64_t)v->len + REC_FIXED_BYTES != rec_len ||
        p[33] || p[34] || p[35]) {
        *reason = "inconsistent record length";
        return REC_BAD_BODY;
    }
    if (v->kind > PX_ENTRY_CONFIG) {
        *reason = "unknown block kind";
        return REC_BAD_BODY;
    }
    v->data = p + 40;
    v->prev = p + 40 + v->len;
    v->hash = p + 72 + v->len;
    *reason = NULL;
    return REC_OK;
}

/* Encode a record into p (REC_FIXED_BYTES + len bytes). */
static void rec_encode(uint8_t *p, uint64_t index, uint64_t time_ms,
                       uint8_t kind, const uint8_t *data, uint32_t len,
                       const uint8_t prev[CHAIN_HASH_BYTES],
                       const uint8_t hash[CHAIN_HASH_BYTES])
{
    uint32_t rec_len = REC_FIXED_BYTES + len;

    le_put32(p, REC_MAGIC);
    le_put16(p + 4, REC_VERSION);
    le_put16(p + 6, 0);
    le_put32(p + 8, rec_len);
    le_put32(p + 12, chain_crc32(p, 12));
    le_put64(p + 16, index);
    le_put64(p + 24, time_ms);
    p[32] = kind;
    p[33] = p[34] = p[35] = 0;
    le_put32(p + 36, len);
    if (len)
        memcpy(p + 40, data, len);
    memcpy(p + 40 + len, prev, CHAIN_HASH_BYTES);
    memcpy(p + 72 + len, hash, CHAIN_HASH_BYTES);
    le_put32(p + rec_len - 4, chain_crc32(p + 16, rec_len - 20));
}

static uint64_t hash8(const uint8_t *h)
{
    return le_get64(h);
}

/* ------------------------------------------------------------ helpers */

static int seg_path(const chain *c, uint64_t first_index, char *out,
                    size_t cap)
{
    int n = snprintf(out, cap, "%s/seg-%020llu.blk", c->dir,
                     (unsigned long long)first_index);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

static int buf_reserve(chain *c, size_t need)
{
    if (need <= c->buf_cap)
        return 0;
    uint8_t *p = chain_grow(c->buf, &c->buf_cap, need, 1, 4096);
    if (!p)
        return -ENOMEM;
    c->buf = p;
    return 0;
}

static int locs_reserve(chain *c, uint64_t need)
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

static int segs_reserve(chain *c, uint32_t need)
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
static int list_segments(chain *c)
{
    seg_listing l = { 0 };
    int rc = chain_io_list(c->dir, list_one, &l);
    if (rc)
        goto out_free;
    uint32_t n = l.n;
    if (n)
        qsort(l.firsts, n, sizeof *l.firsts, cmp_u64);
    rc = segs_reserve(c, n);
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
        int st = rec_parse(buf + off, size - off, &v, &reason);
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
        rc = locs_reserve(c, c->head + 1);
        if (rc)
            return rc;
        c->locs[c->head] = (chain_loc){ .offset = off, .hash8 = hash8(v.hash),
                                        .seg = si, .len = v.rec_len };
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

static void chain_free(chain *c)
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

static int create_segment_file(chain *c, uint64_t first_index, int *fd_out)
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
    rc = buf_reserve(c, size ? (size_t)size : 1);
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

/* Invariant 6: the chain holds the block the acceptor store recorded as
 * durable, and that very block. */
static int check_mark(chain *c, chain_damage *damage)
{
    char path[CHAIN_PATH_MAX];
    char why[128];
    if (c->mark.index == 0)
        return 0;
    if (c->head < c->mark.index) {
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
    const chain_loc *l = &c->locs[c->mark.index - 1];
    rc = seg_path(c, c->segs[l->seg].first_index, path, sizeof path);
    if (rc)
        return rc;
    snprintf(why, sizeof why, "block %llu differs from the one the acceptor "
             "store recorded as durable (the chain was replaced)",
             (unsigned long long)c->mark.index);
    chain_damage_set(damage, path, l->offset, c->mark.index, why);
    return -EBADMSG;
}

static int chain_load(const char *dir, bool writable, const chain_mark *mark,
                      chain **out, chain_open_report *report,
                      chain_damage *damage)
{
    const chain_io_ops *io = chain_io();
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
    if (mark)
        c->mark = *mark;
    c->segment_bytes = CHAIN_SEGMENT_BYTES;
    int n = snprintf(c->dir, sizeof c->dir, "%s/chain", dir);
    if (n < 0 || (size_t)n + SEG_NAME_LEN + 2 > sizeof c->dir) {
        rc = -ENAMETOOLONG;
        goto out_free;
    }
    rc = chain_hasher_init(&c->hasher);
    if (rc)
        goto out_free;
    if (writable) {
        rc = io->mkdir(c->dir, 0700);
        if (rc == 0)
            rc = chain_io_fsync_dir(dir);
        else if (rc == -EEXIST)
            rc = 0;
        if (rc)
            goto out_free;
    }
    rc = list_segments(c);
    if (rc)
        goto out_free;
    if (c->n_segs == 0 && c->mark.index) {
        rc = check_mark(c, damage);   /* every durable block is gone */
        goto out_free;
    }
    if (c->n_segs == 0 && writable) {
        rc = segs_reserve(c, 1);
        if (rc)
            goto out_free;
        rc = create_segment_file(c, 1, &c->active_fd);
        if (rc)
            goto out_free;
        c->segs[0] = (chain_seg){ .first_index = 1 };
        c->n_segs = 1;
        rc = chain_io_fsync_dir(c->dir);
        if (rc)
            goto out_free;
    } else {
        rc = load_segments(c, report, damage);
        if (rc == 0)
            rc = check_mark(c, damage);
        if (rc == 0)
            rc = remove_empty_tail(c);
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
    return chain_load(dir, true, NULL, out, report, damage);
}

int chain_open_marked(const char *dir, const chain_mark *durable, chain **out,
                      chain_open_report *report, chain_damage *damage)
{
    return chain_load(dir, true, durable, out, report, damage);
}

void chain_close(chain *c)
{
    chain_free(c);
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

    rc = segs_reserve(c, c->n_segs + 1);
    if (rc)
        return rc;
    if (c->unsynced_fd >= 0) {
        rc = io->fdatasync(c->unsynced_fd);
        if (rc)
            return rc;
        io->close(c->unsynced_fd);
        c->unsynced_fd = -1;
    }
    rc = create_segment_file(c, c->head + 1, &fd);
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
    if (index != c->head + 1 || kind > PX_ENTRY_CONFIG ||
        (len > 0 && !data))
        return -EINVAL;
    if (len > PX_MAX_VALUE_BYTES)
        return -EFBIG;
    uint32_t rec_len = REC_FIXED_BYTES + len;
    rc = locs_reserve(c, c->head + 1);
    if (rc)
        return rc;
    rc = buf_reserve(c, rec_len);
    if (rc)
        return rc;
    rc = chain_hasher_block(&c->hasher, c->head_hash, index, time_ms, kind,
                            data, len, hash);
    if (rc)
        return rc;
    rec_encode(c->buf, index, time_ms, kind, data, len, c->head_hash, hash);

    /* Check the record right before it leaves for the disk. */
    rec_view v;
    const char *reason;
    if (rec_parse(c->buf, rec_len, &v, &reason) != REC_OK ||
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
    c->locs[c->head] = (chain_loc){ .offset = s->size, .hash8 = hash8(hash),
                                    .seg = c->n_segs - 1, .len = rec_len };
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
static int read_record(chain *c, uint64_t index, rec_view *v)
{
    int fd, rc;
    const char *reason;

    if (index == 0 || index > c->head)
        return -ENOENT;
    const chain_loc *l = &c->locs[index - 1];
    rc = read_fd_for(c, l->seg, &fd);
    if (rc)
        return rc;
    rc = buf_reserve(c, l->len);
    if (rc)
        return rc;
    int64_t got = chain_io_pread_all(fd, c->buf, l->len, l->offset);
    if (got < 0)
        return (int)got;
    if ((uint64_t)got != l->len ||
        rec_parse(c->buf, l->len, v, &reason) != REC_OK ||
        v->rec_len != l->len || v->index != index ||
        hash8(v->hash) != l->hash8 ||
        (index > 1 && hash8(v->prev) != c->locs[index - 2].hash8))
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
    int rc = read_record(c, index, &v);
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
    if (index == 0) {
        memset(out, 0, CHAIN_HASH_BYTES);
        return 0;
    }
    if (index == c->head) {
        memcpy(out, c->head_hash, CHAIN_HASH_BYTES);
        return 0;
    }
    rec_view v;
    int rc = read_record(c, index, &v);
    if (rc)
        return rc;
    memcpy(out, v.hash, CHAIN_HASH_BYTES);
    return 0;
}

/* Read-only: the torn tail is reported, not cut; the head is the last
 * whole block before it (what the next chain_open will keep). */
int chain_verify_dir_marked(const char *dir, const chain_mark *durable,
                            uint64_t *head_index,
                            uint8_t head_hash[CHAIN_HASH_BYTES],
                            chain_open_report *torn, chain_damage *damage)
{
    chain *c = NULL;
    int rc = chain_load(dir, false, durable, &c, torn, damage);
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
