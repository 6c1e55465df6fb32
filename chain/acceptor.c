/*
 * acceptor.c - owns the acceptor store: the durable promise and accepted
 * values of this node's Paxos acceptor, in DIR/acceptor/log.
 *
 * The log is append-only.  Records are buffered by acceptor_put_* and
 * written by acceptor_sync with ONE pwrite and ONE fdatasync: this is the
 * only fsync on the commit path ("Paxos Made Live" section 4: the log
 * write is the latency floor), so it is kept as cheap as possible.
 *
 * Preallocation: the log file is created full of zeros and synced once;
 * records then overwrite already-allocated, already-synced blocks, so
 * fdatasync need not update the file size or extent map.  Measured on the
 * development machine (ext4, 300-byte records, 2000 rounds): 0.14-0.16 ms
 * per write+fdatasync when growing the file, 0.09-0.13 ms when overwriting
 * preallocated space.  The end of the log is therefore the first record
 * that does not parse when everything from there on is zero.
 *
 * Record layout (little-endian):
 *   offset  size  meaning
 *   0       4     magic "pxac" (0x70 0x78 0x61 0x63)
 *   4       1     type: 1 promise, 2 accept, 3 forget
 *   5       1     format version, 1
 *   6       2     reserved, 0
 *   8       4     record length R
 *   12      4     header checksum: CRC-32 of bytes 0..11
 *   promise (R = 32):
 *   16      8     ballot round
 *   24      4     ballot node id
 *   accept (R = 56 + L):
 *   16      8     slot
 *   24      8     ballot round
 *   32      4     ballot node id
 *   36      1     kind (enum px_entry_kind)
 *   37      3     reserved, 0
 *   40      8     time_ms
 *   48      4     data length L (<= PX_MAX_VALUE_BYTES)
 *   52      L     data
 *   forget (R = 28):
 *   16      8     upto: slots <= upto are forgotten
 *   R-4     4     body checksum: CRC-32 of bytes 16..R-5
 *
 * Replay (acceptor_open) reads records in order: the promise is the
 * highest ballot of any promise record; per slot the value with the
 * highest ballot wins (a later record wins a tie); a forget record drops
 * every slot <= upto known at that point.
 *
 * Invariants:
 *   1. Memory == replay(disk records) + replay(pending), always.
 *   2. The promise never decreases; per slot the kept ballot never
 *      decreases (lower ones are ignored, not written).
 *   3. Records at [0, end) are whole and valid; [end, capacity) is zero
 *      on disk.  pending is written at `end`.
 *   4. Torn vs damage: the first record that does not parse, followed by
 *      non-zero bytes, is a torn write (cut: zeroed and synced) unless a
 *      valid record header and body exist anywhere after it, which proves
 *      it was once whole: then it is damage (-EBADMSG).  A torn record
 *      can only come from an acceptor_sync that did not return, so no
 *      reply depended on it.
 *   5. A failed write or fdatasync is sticky (`failed`): the page cache
 *      may have dropped the data, so the store must be reopened.
 *   6. Rolling (acceptor_compact past the size bound) writes promise and
 *      live accepts to log.tmp, syncs it, renames it over log and syncs
 *      the directory: at every instant one complete log is on disk.
 *
 *   state:  [open] --put--> [dirty] --sync--> [open]
 *                  \--write/sync error--> [failed] (only close)
 */
#include "chain_int.h"
#include "chain_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACC_MAGIC 0x63617870u     /* "pxac" */
#define ACC_VERSION 1
#define ACC_PROMISE 1
#define ACC_ACCEPT 2
#define ACC_FORGET 3
#define ACC_HEADER_BYTES 16
#define ACC_PROMISE_BYTES 32
#define ACC_ACCEPT_FIXED 56
#define ACC_FORGET_BYTES 28
#define ACC_MAX_FILE_BYTES (1ull << 30)
#define ACC_MAX_SLOTS (1u << 20)
#define ACC_MAX_PENDING (256u << 20)
#define ACC_PATH_MAX 512

struct acceptor_store {
    char dir[ACC_PATH_MAX];        /* DIR/acceptor */
    char path[ACC_PATH_MAX];       /* DIR/acceptor/log */
    char tmp_path[ACC_PATH_MAX];   /* DIR/acceptor/log.tmp */
    int fd;
    uint64_t end;                  /* invariant 3 */
    uint64_t capacity;             /* file size (preallocated) */
    uint64_t log_bytes;            /* roll when end exceeds this */
    px_ballot promise;
    px_entry *accepts;             /* ascending slot; data owned */
    uint32_t n_accepts, cap_accepts;
    uint8_t *pending;
    size_t pending_len, pending_cap;
    int failed;
};

static int ballot_cmp(px_ballot a, px_ballot b)
{
    if (a.round != b.round)
        return a.round < b.round ? -1 : 1;
    if (a.node_id != b.node_id)
        return a.node_id < b.node_id ? -1 : 1;
    return 0;
}

static uint64_t prealloc_chunk(const acceptor_store *a)
{
    uint64_t chunk = a->log_bytes / 8;
    if (chunk < 4096)
        chunk = 4096;
    if (chunk > (1u << 20))
        chunk = 1u << 20;
    return chunk;
}

/* ----------------------------------------------------------- records */

static void rec_header(uint8_t *p, uint8_t type, uint32_t rec_len)
{
    chain_put_u32(p, ACC_MAGIC);
    p[4] = type;
    p[5] = ACC_VERSION;
    chain_put_u16(p + 6, 0);
    chain_put_u32(p + 8, rec_len);
    chain_put_u32(p + 12, chain_crc32(p, 12));
}

static void rec_seal(uint8_t *p, uint32_t rec_len)
{
    chain_put_u32(p + rec_len - 4, chain_crc32(p + 16, rec_len - 20));
}

static uint32_t encode_promise(uint8_t *p, px_ballot b)
{
    rec_header(p, ACC_PROMISE, ACC_PROMISE_BYTES);
    chain_put_u64(p + 16, b.round);
    chain_put_u32(p + 24, b.node_id);
    rec_seal(p, ACC_PROMISE_BYTES);
    return ACC_PROMISE_BYTES;
}

static uint32_t encode_accept(uint8_t *p, const px_entry *e)
{
    uint32_t rec_len = ACC_ACCEPT_FIXED + e->len;
    rec_header(p, ACC_ACCEPT, rec_len);
    chain_put_u64(p + 16, e->slot);
    chain_put_u64(p + 24, e->ballot.round);
    chain_put_u32(p + 32, e->ballot.node_id);
    p[36] = e->kind;
    p[37] = p[38] = p[39] = 0;
    chain_put_u64(p + 40, e->time_ms);
    chain_put_u32(p + 48, e->len);
    if (e->len)
        memcpy(p + 52, e->data, e->len);
    rec_seal(p, rec_len);
    return rec_len;
}

static uint32_t encode_forget(uint8_t *p, uint64_t upto)
{
    rec_header(p, ACC_FORGET, ACC_FORGET_BYTES);
    chain_put_u64(p + 16, upto);
    rec_seal(p, ACC_FORGET_BYTES);
    return ACC_FORGET_BYTES;
}

typedef struct acc_rec {
    uint8_t type;
    uint32_t rec_len;
    px_ballot ballot;      /* promise, accept */
    px_entry entry;        /* accept (data points into the buffer) */
    uint64_t upto;         /* forget */
} acc_rec;

/* 0 and *r filled, or -EBADMSG with *reason. */
static int rec_parse(const uint8_t *p, uint64_t avail, acc_rec *r,
                     const char **reason)
{
    if (avail < ACC_HEADER_BYTES) {
        *reason = "truncated record header";
        return -EBADMSG;
    }
    if (chain_get_u32(p) != ACC_MAGIC) {
        *reason = "bad magic";
        return -EBADMSG;
    }
    if (chain_crc32(p, 12) != chain_get_u32(p + 12)) {
        *reason = "bad header checksum";
        return -EBADMSG;
    }
    r->type = p[4];
    r->rec_len = chain_get_u32(p + 8);
    if (p[5] != ACC_VERSION || chain_get_u16(p + 6) != 0) {
        *reason = "unknown record version";
        return -EBADMSG;
    }
    uint64_t min = r->type == ACC_PROMISE  ? ACC_PROMISE_BYTES
                   : r->type == ACC_ACCEPT ? ACC_ACCEPT_FIXED
                   : r->type == ACC_FORGET ? ACC_FORGET_BYTES
                                           : 0;
    if (!min || r->rec_len < min ||
        r->rec_len > (uint64_t)ACC_ACCEPT_FIXED + PX_MAX_VALUE_BYTES ||
        (r->type != ACC_ACCEPT && r->rec_len != min)) {
        *reason = "bad record type or length";
        return -EBADMSG;
    }
    if (r->rec_len > avail) {
        *reason = "record extends past end of file";
        return -EBADMSG;
    }
    if (chain_crc32(p + 16, r->rec_len - 20) !=
        chain_get_u32(p + r->rec_len - 4)) {
        *reason = "bad checksum";
        return -EBADMSG;
    }
    switch (r->type) {
    case ACC_PROMISE:
        r->ballot.round = chain_get_u64(p + 16);
        r->ballot.node_id = chain_get_u32(p + 24);
        break;
    case ACC_ACCEPT:
        r->entry.slot = chain_get_u64(p + 16);
        r->entry.ballot.round = chain_get_u64(p + 24);
        r->entry.ballot.node_id = chain_get_u32(p + 32);
        r->entry.kind = p[36];
        r->entry.time_ms = chain_get_u64(p + 40);
        r->entry.len = chain_get_u32(p + 48);
        r->entry.data = p + 52;
        if ((uint64_t)r->entry.len + ACC_ACCEPT_FIXED != r->rec_len ||
            p[37] || p[38] || p[39] || r->entry.kind > PX_ENTRY_CONFIG ||
            r->entry.slot == 0) {
            *reason = "inconsistent accept record";
            return -EBADMSG;
        }
        break;
    default:
        r->upto = chain_get_u64(p + 16);
        break;
    }
    *reason = NULL;
    return 0;
}

/* ---------------------------------------------------------- memory */

static void accepts_free(acceptor_store *a)
{
    for (uint32_t i = 0; i < a->n_accepts; i++)
        free((void *)a->accepts[i].data);
    free(a->accepts);
    a->accepts = NULL;
    a->n_accepts = a->cap_accepts = 0;
}

/* Index of the first entry with slot >= `slot`. */
static uint32_t accepts_lower_bound(const acceptor_store *a, uint64_t slot)
{
    uint32_t lo = 0, hi = a->n_accepts;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a->accepts[mid].slot < slot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Keep e if its ballot is >= the stored one for its slot.  Returns 1 if
 * kept, 0 if ignored (lower ballot), or -errno. */
static int accepts_store(acceptor_store *a, const px_entry *e)
{
    uint32_t i = accepts_lower_bound(a, e->slot);
    bool exists = i < a->n_accepts && a->accepts[i].slot == e->slot;
    if (exists && ballot_cmp(e->ballot, a->accepts[i].ballot) < 0)
        return 0;
    uint8_t *copy = malloc(e->len ? e->len : 1);
    if (!copy)
        return -ENOMEM;
    if (e->len)
        memcpy(copy, e->data, e->len);
    if (exists) {
        free((void *)a->accepts[i].data);
    } else {
        if (a->n_accepts >= ACC_MAX_SLOTS) {
            free(copy);
            return -ENOBUFS;
        }
        if (a->n_accepts == a->cap_accepts) {
            uint32_t cap = a->cap_accepts ? a->cap_accepts * 2 : 64;
            px_entry *p = realloc(a->accepts, cap * sizeof *p);
            if (!p) {
                free(copy);
                return -ENOMEM;
            }
            a->accepts = p;
            a->cap_accepts = cap;
        }
        memmove(&a->accepts[i + 1], &a->accepts[i],
                (a->n_accepts - i) * sizeof *a->accepts);
        a->n_accepts++;
    }
    a->accepts[i] = *e;
    a->accepts[i].data = copy;
    return 1;
}

static void accepts_forget(acceptor_store *a, uint64_t upto)
{
    uint32_t cut = accepts_lower_bound(a, upto == UINT64_MAX ? upto : upto + 1);
    if (upto == UINT64_MAX)
        cut = a->n_accepts;
    if (cut == 0)
        return;   /* nothing to drop (and accepts may be NULL) */
    for (uint32_t i = 0; i < cut; i++)
        free((void *)a->accepts[i].data);
    memmove(a->accepts, a->accepts + cut,
            (a->n_accepts - cut) * sizeof *a->accepts);
    a->n_accepts -= cut;
}

static int pending_reserve(acceptor_store *a, size_t more)
{
    if (a->pending_len + more <= a->pending_cap)
        return 0;
    if (a->pending_len + more > ACC_MAX_PENDING)
        return -ENOBUFS;
    uint8_t *p = chain_grow(a->pending, &a->pending_cap,
                            a->pending_len + more, 1, 4096);
    if (!p)
        return -ENOMEM;
    a->pending = p;
    return 0;
}

static void state_out(const acceptor_store *a, acceptor_state *st)
{
    if (!st)
        return;
    st->promise = a->promise;
    st->n_accepts = a->n_accepts;
    st->accepts = a->accepts;
}

/* ------------------------------------------------------------- files */

/* Write zeros over [from, to) of fd. */
static int write_zeros(int fd, uint64_t from, uint64_t to)
{
    static const uint8_t zeros[65536];
    while (from < to) {
        size_t n = to - from > sizeof zeros ? sizeof zeros : (size_t)(to - from);
        int rc = chain_io_pwrite_all(fd, zeros, n, from);
        if (rc)
            return rc;
        from += n;
    }
    return 0;
}

/* Encode promise + every accept into one buffer (for a new log). */
static int encode_state(const acceptor_store *a, uint8_t **out, size_t *len)
{
    size_t need = ACC_PROMISE_BYTES;
    for (uint32_t i = 0; i < a->n_accepts; i++)
        need += ACC_ACCEPT_FIXED + a->accepts[i].len;
    uint8_t *p = malloc(need);
    if (!p)
        return -ENOMEM;
    size_t off = 0;
    if (a->promise.round || a->promise.node_id)
        off += encode_promise(p, a->promise);
    for (uint32_t i = 0; i < a->n_accepts; i++)
        off += encode_accept(p + off, &a->accepts[i]);
    *out = p;
    *len = off;
    return 0;
}

/* Invariant 6: replace the log by one holding exactly the memory state. */
static int roll_log(acceptor_store *a)
{
    const chain_io_ops *io = chain_io();
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = encode_state(a, &buf, &len);
    if (rc)
        return rc;
    uint64_t capacity = len + prealloc_chunk(a);
    int fd = io->open(a->tmp_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = fd;
        goto out_free;
    }
    rc = chain_io_pwrite_all(fd, buf, len, 0);
    if (!rc)
        rc = write_zeros(fd, len, capacity);
    if (!rc)
        rc = io->fdatasync(fd);
    if (!rc)
        rc = io->rename(a->tmp_path, a->path);
    if (rc)
        goto out_unlink;
    rc = chain_io_fsync_dir(a->dir);
    if (rc) {
        /* The rename may or may not be durable: both logs hold the same
         * state, but the old fd no longer names the log. */
        io->close(fd);
        a->failed = rc;
        goto out_free;
    }
    if (a->fd >= 0)
        io->close(a->fd);
    a->fd = fd;
    a->end = len;
    a->capacity = capacity;
    a->pending_len = 0;
    free(buf);
    return 0;
out_unlink:
    io->close(fd);
    io->unlink(a->tmp_path);
out_free:
    free(buf);
    return rc;
}

/* True when a valid record starts anywhere in p[from, len). */
static bool valid_record_after(const uint8_t *p, uint64_t from, uint64_t len)
{
    for (uint64_t off = from; off + ACC_HEADER_BYTES <= len; off++) {
        acc_rec r;
        const char *reason;
        if (p[off] != 0x70)   /* first magic byte: skip quickly */
            continue;
        if (rec_parse(p + off, len - off, &r, &reason) == 0)
            return true;
    }
    return false;
}

static int replay(acceptor_store *a, const uint8_t *buf, uint64_t size,
                  uint64_t *end, chain_damage *damage)
{
    uint64_t off = 0;
    /* Bounded: every record is at least ACC_FORGET_BYTES long. */
    while (off < size) {
        acc_rec r;
        const char *reason;
        if (rec_parse(buf + off, size - off, &r, &reason) != 0) {
            if (!chain_all_zero(buf + off, (size_t)(size - off)) &&
                valid_record_after(buf, off + 1, size)) {
                chain_damage_set(damage, a->path, off, 0, reason);
                return -EBADMSG;
            }
            break;   /* end of log, or a torn write (invariant 4) */
        }
        int rc = 0;
        switch (r.type) {
        case ACC_PROMISE:
            if (ballot_cmp(r.ballot, a->promise) > 0)
                a->promise = r.ballot;
            break;
        case ACC_ACCEPT:
            rc = accepts_store(a, &r.entry);
            break;
        default:
            accepts_forget(a, r.upto);
        }
        if (rc < 0)
            return rc;
        off += r.rec_len;
    }
    *end = off;
    return 0;
}

static int load_log(acceptor_store *a, chain_damage *damage)
{
    const chain_io_ops *io = chain_io();
    struct stat st;
    uint8_t *buf = NULL;
    int rc = io->fstat(a->fd, &st);
    if (rc)
        return rc;
    uint64_t size = (uint64_t)st.st_size;
    if (size > ACC_MAX_FILE_BYTES) {
        chain_damage_set(damage, a->path, 0, 0, "acceptor log too large");
        return -EBADMSG;
    }
    buf = malloc(size ? size : 1);
    if (!buf)
        return -ENOMEM;
    int64_t got = chain_io_pread_all(a->fd, buf, (size_t)size, 0);
    if (got < 0) {
        rc = (int)got;
        goto out_free;
    }
    size = (uint64_t)got;
    rc = replay(a, buf, size, &a->end, damage);
    if (rc)
        goto out_free;
    a->capacity = size;
    if (!chain_all_zero(buf + a->end, (size_t)(size - a->end))) {
        /* torn write: zero it so the next record lands on clean space */
        rc = write_zeros(a->fd, a->end, size);
        if (!rc)
            rc = io->fdatasync(a->fd);
    }
out_free:
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ public */

void acceptor_set_log_bytes(acceptor_store *a, uint64_t bytes)
{
    a->log_bytes = bytes < 1024 ? 1024 : bytes;
}

int acceptor_open(const char *dir, acceptor_store **out, acceptor_state *st,
                  chain_damage *damage)
{
    const chain_io_ops *io = chain_io();
    int rc;

    if (damage)
        memset(damage, 0, sizeof *damage);
    if (!dir || !out)
        return -EINVAL;
    acceptor_store *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->fd = -1;
    a->log_bytes = ACCEPTOR_LOG_BYTES;
    int n1 = snprintf(a->dir, sizeof a->dir, "%s/acceptor", dir);
    int n2 = snprintf(a->path, sizeof a->path, "%s/acceptor/log", dir);
    int n3 = snprintf(a->tmp_path, sizeof a->tmp_path, "%s/acceptor/log.tmp",
                      dir);
    if (n1 < 0 || n2 < 0 || n3 < 0 || (size_t)n3 >= sizeof a->tmp_path) {
        rc = -ENAMETOOLONG;
        goto out_free;
    }
    rc = io->mkdir(a->dir, 0755);
    if (rc == 0)
        rc = chain_io_fsync_dir(dir);
    else if (rc == -EEXIST)
        rc = 0;
    if (rc)
        goto out_free;
    rc = io->unlink(a->tmp_path);   /* a roll that did not finish */
    if (rc && rc != -ENOENT)
        goto out_free;
    a->fd = io->open(a->path, O_RDWR, 0);
    if (a->fd == -ENOENT) {
        a->fd = -1;
        rc = roll_log(a);         /* a new, empty, preallocated log */
    } else if (a->fd < 0) {
        rc = a->fd;
        a->fd = -1;
    } else {
        rc = load_log(a, damage);
    }
    if (rc)
        goto out_free;
    state_out(a, st);
    *out = a;
    return 0;
out_free:
    acceptor_close(a);
    return rc;
}

void acceptor_close(acceptor_store *a)
{
    if (!a)
        return;
    if (a->fd >= 0)
        chain_io()->close(a->fd);
    accepts_free(a);
    free(a->pending);
    free(a);
}

int acceptor_put_promise(acceptor_store *a, px_ballot promise)
{
    if (a->failed)
        return a->failed;
    int cmp = ballot_cmp(promise, a->promise);
    if (cmp < 0)
        return -EINVAL;       /* invariant 2: promises never go back */
    if (cmp == 0)
        return 0;
    int rc = pending_reserve(a, ACC_PROMISE_BYTES);
    if (rc)
        return rc;
    a->pending_len += encode_promise(a->pending + a->pending_len, promise);
    a->promise = promise;
    return 0;
}

int acceptor_put_accept(acceptor_store *a, const px_entry *e)
{
    if (a->failed)
        return a->failed;
    if (!e || e->slot == 0 || e->kind > PX_ENTRY_CONFIG ||
        (e->len && !e->data))
        return -EINVAL;
    if (e->len > PX_MAX_VALUE_BYTES)
        return -EFBIG;
    uint32_t rec_len = ACC_ACCEPT_FIXED + e->len;
    int rc = pending_reserve(a, rec_len);
    if (rc)
        return rc;
    /* Encode first (check it parses back), then store: both or neither. */
    uint8_t *p = a->pending + a->pending_len;
    encode_accept(p, e);
    acc_rec r;
    const char *reason;
    if (rec_parse(p, rec_len, &r, &reason) != 0 || r.entry.slot != e->slot)
        return -EIO;
    rc = accepts_store(a, e);
    if (rc < 0)
        return rc;
    if (rc == 1)
        a->pending_len += rec_len;
    return 0;
}

int acceptor_sync(acceptor_store *a)
{
    if (a->failed)
        return a->failed;
    if (a->pending_len == 0)
        return 0;
    int rc = acceptor_write(a);
    if (rc)
        return rc;
    rc = acceptor_datasync(a);
    if (rc)
        a->failed = rc;
    return rc;
}

uint64_t acceptor_pending_bytes(const acceptor_store *a)
{
    return a->pending_len;
}

int acceptor_datasync(const acceptor_store *a)
{
    /* reads only the fd: the owner may be buffering on its own thread */
    return chain_io()->fdatasync(a->fd);
}

int acceptor_write(acceptor_store *a)
{
    int rc;

    if (a->failed)
        return a->failed;
    if (a->pending_len == 0)
        return 0;
    uint64_t need = a->end + a->pending_len;
    if (need > a->capacity) {
        /* Grow the preallocated area; the same fdatasync covers it. */
        uint64_t cap = need + prealloc_chunk(a);
        rc = write_zeros(a->fd, a->capacity, cap);
        if (rc)
            goto out_fail;
        a->capacity = cap;
    }
    rc = chain_io_pwrite_all(a->fd, a->pending, a->pending_len, a->end);
    if (rc)
        goto out_fail;
    a->end = need;
    a->pending_len = 0;
    return 0;
out_fail:
    a->failed = rc;
    return rc;
}

int acceptor_compact(acceptor_store *a, uint64_t upto)
{
    if (a->failed)
        return a->failed;
    int rc = pending_reserve(a, ACC_FORGET_BYTES);
    if (rc)
        return rc;
    a->pending_len += encode_forget(a->pending + a->pending_len, upto);
    accepts_forget(a, upto);
    /* Forgetting needs no sync of its own: replaying forgotten slots
     * after a crash is harmless, they are in the durable chain. */
    if (a->end + a->pending_len <= a->log_bytes)
        return 0;
    return roll_log(a);
}

void acceptor_get_state(const acceptor_store *a, acceptor_state *st)
{
    state_out(a, st);
}
