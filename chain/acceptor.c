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
 * that does not parse when everything from there on is zero.  The file is
 * always longer than its records (at least ACC_SLACK zero bytes follow the
 * last one) and grows, zero-filled and synced, before a record may land in
 * the new space: so a log that ends inside or right after a record was cut
 * short by someone, not by a crash.
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
 *   forget (R = 28, type 3; written by older versions):
 *   16      8     upto: slots <= upto are forgotten
 *   mark (R = 60, type 4): the chain is durable up to here
 *   16      8     index: blocks 1..index were fdatasync'ed in the chain
 *   24      32    hash of block index
 *                 (slots <= index are forgotten, as by a forget record)
 *   incarnation (R = 36, type 5): this node's latest start
 *   16      8     counter: starts so far (1 = the first)
 *   24      8     nonce: random, one per start
 *   peer (R = 44, type 6): the latest start of another node seen
 *   16      4     node id
 *   20      4     reserved, 0
 *   24      8     its counter
 *   32      8     its nonce
 *   recovery (R = 28, type 7)
 *   16      8     1: the acceptor state is known to be incomplete and the
 *                 node must recover before it votes; 0: recovered
 *   R-4     4     body checksum: CRC-32 of bytes 16..R-5
 *
 * Replay (acceptor_open) reads records in order: the promise is the
 * highest ballot of any promise record; per slot the value with the
 * highest ballot wins (a later record wins a tie); a forget or mark record
 * drops every slot <= upto known at that point; the mark, the incarnation
 * and each peer's start are the highest seen (a later record wins a tie);
 * the recovery state is the last one written.
 *
 * Invariants:
 *   1. Memory == replay(disk records) + replay(pending), always.
 *   2. The promise never decreases; per slot the kept ballot never
 *      decreases (lower ones are ignored, not written).
 *   3. Records at [0, end) are whole and valid; [end, capacity) is zero
 *      on disk.  pending is written at `end`.
 *   4. Torn vs damage.  The first record that does not parse is, when
 *      everything from it on is zero, the end of the log.  Otherwise it is
 *      a torn write (cut: zeroed and synced) only if it looks like one: a
 *      write that did not finish leaves zeros (the space was preallocated
 *      and synced) where its data did not land, in whole sectors, so
 *      everything to the end of the file is zero from the record's
 *      checksum on or from a 512-byte boundary inside the record, or an
 *      aligned 512-byte sector of the record is all zero.  Anything else is damage
 *      (-EBADMSG): a valid record anywhere after it (so it was once whole
 *      and synced before the next one), a record that runs past the end of
 *      the file, a file that ends without zero space after its last record
 *      (it was truncated: the file is never that short), an empty file,
 *      and a complete record with a wrong byte.  A torn record can only
 *      come from an acceptor_sync that did not return, so no reply
 *      depended on it; damage may have lost an acknowledged promise or
 *      accepted value (acceptor_open_salvage).
 *   4a. One flipped bit is damage even where invariant 4 would see a torn
 *      write.  A record's data may hold whole aligned sectors of zeros (a
 *      file's zeros), so "an aligned sector of the record is all zero"
 *      holds for such a durable last record with any bit flipped: cut as
 *      torn, a promise or accept that was acknowledged would be dropped
 *      without a word.  Bytes alone cannot tell the two apart, but the
 *      checksum can: a torn write replaces whole sectors by zeros, which
 *      changes the CRC-32 by an arbitrary amount, while one flipped bit at
 *      body byte k changes it by a value fixed by k and the bit alone
 *      (CRC-32 is linear), distinct for every position.  So a record whose
 *      checksum is off by exactly one of those 8 x length values (or by
 *      one bit of the stored checksum) is damage.  A torn write matches by
 *      chance with probability about 8 x length / 2^32 and is then taken
 *      for damage: the safe side (the node recovers).  Damage of more
 *      than one bit inside such a record can still pass for torn.
 *      The torn rules stay sound where they fire otherwise: a write that
 *      did not finish was never fdatasync'ed (acceptor_sync did not
 *      return), so nothing acknowledged depended on it.  A bit flipped in
 *      the zero space after the last record is cut the same way: it held
 *      nothing.  The header's own CRC covers bytes 0..11, so a flip there
 *      (the length field at 8..11, say) is a bad header, torn only when
 *      everything from its byte 15 to the end of the file is zero: a
 *      whole record's body and checksum are not all zero (an accept's
 *      slot is never 0; the CRC-32 of a short zero body is not 0).
 *   5. A failed write or fdatasync is sticky (`failed`): the page cache
 *      may have dropped the data, so the store must be reopened.
 *   6. Rolling (acceptor_compact past the size bound) writes promise and
 *      live accepts to log.tmp, syncs it, renames it over log and syncs
 *      the directory: at every instant one complete log is on disk.
 *   7. end + ACC_SLACK <= capacity, and the zero bytes up to capacity are
 *      durable before a record is written over them (acceptor_write syncs
 *      a growth before writing past the old capacity).
 *   8. Files are created 0600, the directory 0700 (chain_io).
 *   9. A missing log means a new store only when log.damaged is absent
 *      too.  Salvage renames a damaged log to log.damaged (synced) and
 *      then rolls a new log marked recovering; a write error or a crash
 *      between the two leaves no log at all.  Taking that for a new node
 *      would start an acceptor with promise 0 and no accepts, not
 *      recovering: a durable promise or accept silently dropped.  So a
 *      log missing beside log.damaged is reported as damage (path and
 *      offset 0) and salvaged again: a new log marked recovering.
 *
 *   state:  [open] --put--> [dirty] --sync--> [open]
 *                  \--write/sync error--> [failed] (only close)
 *
 * Files: acceptor.c the store at run time (memory, puts, the write and
 * fdatasync of group commit, compaction and rolling), acceptor_rec.c the
 * record format and the torn-vs-damage rule (invariant 4),
 * acceptor_open.c opening, salvage and verification; acceptor_int.h is
 * their private header.
 */
#include "acceptor_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void acc_state_out(const acceptor_store *a, acceptor_state *st)
{
    if (!st)
        return;
    st->promise = a->promise;
    st->n_accepts = a->n_accepts;
    st->accepts = a->accepts;
}

/* Write zeros over [from, to) of fd. */
int acc_write_zeros(int fd, uint64_t from, uint64_t to)
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

static void info_mark(acceptor_store *a, uint64_t index, const uint8_t *hash)
{
    if (index < a->info.mark.index)
        return;
    a->info.mark.index = index;
    memcpy(a->info.mark.hash, hash, CHAIN_HASH_BYTES);
}

/* Keep the newest start of node `id` (0: this node).  Bounded: at most
 * ACCEPTOR_MAX_PEERS peers are remembered, later ones are not. */
static void info_start(acceptor_store *a, const acceptor_peer *p)
{
    if (p->id == 0) {
        if (p->counter >= a->info.incarnation) {
            a->info.incarnation = p->counter;
            a->info.nonce = p->nonce;
        }
        return;
    }
    for (uint32_t i = 0; i < a->info.n_peers; i++) {
        acceptor_peer *q = &a->info.peers[i];
        if (q->id != p->id)
            continue;
        if (p->counter >= q->counter)
            *q = *p;
        return;
    }
    if (a->info.n_peers < ACCEPTOR_MAX_PEERS)
        a->info.peers[a->info.n_peers++] = *p;
}

/* Apply one parsed record to memory (replay and nothing else). */
int acc_rec_apply(acceptor_store *a, const acc_rec *r)
{
    switch (r->type) {
    case ACC_PROMISE:
        if (ballot_cmp(r->ballot, a->promise) > 0)
            a->promise = r->ballot;
        return 0;
    case ACC_ACCEPT: {
        int rc = accepts_store(a, &r->entry);
        return rc < 0 ? rc : 0;
    }
    case ACC_FORGET:
        accepts_forget(a, r->upto);
        return 0;
    case ACC_MARK:
        accepts_forget(a, r->upto);
        info_mark(a, r->upto, r->hash);
        return 0;
    case ACC_INCARNATION:
    case ACC_PEER:
        info_start(a, &r->peer);
        return 0;
    default:
        a->info.recovering = r->state == 1;
        return 0;
    }
}

/* Encode the whole memory state into one buffer (for a new log). */
static int encode_state(const acceptor_store *a, uint8_t **out, size_t *len)
{
    size_t need = ACC_PROMISE_BYTES + ACC_MARK_BYTES + ACC_INCARNATION_BYTES +
                  ACC_RECOVERY_BYTES +
                  (size_t)a->info.n_peers * ACC_PEER_BYTES;
    for (uint32_t i = 0; i < a->n_accepts; i++)
        need += ACC_ACCEPT_FIXED + a->accepts[i].len;
    uint8_t *p = malloc(need);
    if (!p)
        return -ENOMEM;
    size_t off = 0;
    if (a->info.incarnation)
        off += acc_encode_incarnation(p + off, a->info.incarnation,
                                  a->info.nonce);
    if (a->info.mark.index)
        off += acc_encode_mark(p + off, &a->info.mark);
    for (uint32_t i = 0; i < a->info.n_peers; i++)
        off += acc_encode_peer(p + off, &a->info.peers[i]);
    if (a->info.recovering)
        off += acc_encode_recovery(p + off, true);
    if (a->promise.round || a->promise.node_id)
        off += acc_encode_promise(p + off, a->promise);
    for (uint32_t i = 0; i < a->n_accepts; i++)
        off += acc_encode_accept(p + off, &a->accepts[i]);
    *out = p;
    *len = off;
    return 0;
}

/* Invariant 6: replace the log by one holding exactly the memory state. */
int acc_roll_log(acceptor_store *a)
{
    const chain_io_ops *io = chain_io();
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = encode_state(a, &buf, &len);
    if (rc)
        return rc;
    uint64_t capacity = len + prealloc_chunk(a);
    int fd = io->open(a->tmp_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        rc = fd;
        goto out_free;
    }
    rc = chain_io_pwrite_all(fd, buf, len, 0);
    if (!rc)
        rc = acc_write_zeros(fd, len, capacity);
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

void acceptor_set_log_bytes(acceptor_store *a, uint64_t bytes)
{
    a->log_bytes = bytes < 1024 ? 1024 : bytes;
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
    a->pending_len += acc_encode_promise(a->pending + a->pending_len, promise);
    a->promise = promise;
    return 0;
}

int acceptor_put_accept(acceptor_store *a, const px_entry *e)
{
    if (a->failed)
        return a->failed;
    if (!e || e->slot == 0 || e->kind > PX_ENTRY_LAST ||
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
    acc_encode_accept(p, e);
    acc_rec r;
    const char *reason;
    if (acc_rec_parse(p, rec_len, &r, &reason) != ACC_OK ||
        r.entry.slot != e->slot)
        return -EIO;
    rc = accepts_store(a, e);
    if (rc < 0)
        return rc;
    if (rc == 1)
        a->pending_len += rec_len;
    return 0;
}

int acceptor_put_incarnation(acceptor_store *a, uint64_t counter,
                             uint64_t nonce)
{
    if (a->failed)
        return a->failed;
    if (counter <= a->info.incarnation)
        return -EINVAL;        /* a start counts up */
    int rc = pending_reserve(a, ACC_INCARNATION_BYTES);
    if (rc)
        return rc;
    a->pending_len += acc_encode_incarnation(a->pending + a->pending_len,
                                         counter, nonce);
    a->info.incarnation = counter;
    a->info.nonce = nonce;
    return 0;
}

int acceptor_put_peer(acceptor_store *a, const acceptor_peer *peer)
{
    if (a->failed)
        return a->failed;
    if (!peer || peer->id == 0)
        return -EINVAL;
    bool known = false;
    for (uint32_t i = 0; i < a->info.n_peers; i++)
        if (a->info.peers[i].id == peer->id) {
            known = true;
            if (peer->counter < a->info.peers[i].counter)
                return -EINVAL;   /* the newest start is kept */
        }
    if (!known && a->info.n_peers == ACCEPTOR_MAX_PEERS)
        return -ENOSPC;
    int rc = pending_reserve(a, ACC_PEER_BYTES);
    if (rc)
        return rc;
    a->pending_len += acc_encode_peer(a->pending + a->pending_len, peer);
    info_start(a, peer);
    return 0;
}

int acceptor_put_recovery(acceptor_store *a, bool recovering)
{
    if (a->failed)
        return a->failed;
    if (a->info.recovering == recovering)
        return 0;
    int rc = pending_reserve(a, ACC_RECOVERY_BYTES);
    if (rc)
        return rc;
    a->pending_len += acc_encode_recovery(a->pending + a->pending_len,
                                      recovering);
    a->info.recovering = recovering;
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
    if (need + ACC_SLACK > a->capacity) {
        /* Invariant 7: grow the zero space and make it durable before any
         * record lands there, so that a crash never leaves a file that
         * ends inside a record (which only truncation does). */
        uint64_t cap = need + ACC_SLACK + prealloc_chunk(a);
        rc = acc_write_zeros(a->fd, a->capacity, cap);
        if (!rc)
            rc = chain_io()->fdatasync(a->fd);
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

static int compact(acceptor_store *a, uint64_t upto, const uint8_t *hash)
{
    if (a->failed)
        return a->failed;
    uint32_t len = hash ? ACC_MARK_BYTES : ACC_FORGET_BYTES;
    int rc = pending_reserve(a, len);
    if (rc)
        return rc;
    if (hash) {
        chain_mark m = { .index = upto };
        memcpy(m.hash, hash, CHAIN_HASH_BYTES);
        a->pending_len += acc_encode_mark(a->pending + a->pending_len, &m);
        info_mark(a, upto, hash);
    } else {
        a->pending_len += acc_encode_forget(a->pending + a->pending_len, upto);
    }
    accepts_forget(a, upto);
    /* Forgetting needs no sync of its own: replaying forgotten slots
     * after a crash is harmless, they are in the durable chain. */
    if (a->end + a->pending_len <= a->log_bytes)
        return 0;
    return acc_roll_log(a);
}

int acceptor_compact(acceptor_store *a, uint64_t upto)
{
    return compact(a, upto, NULL);
}

int acceptor_mark(acceptor_store *a, uint64_t index,
                  const uint8_t hash[CHAIN_HASH_BYTES])
{
    if (!hash || index < a->info.mark.index)
        return -EINVAL;   /* the chain only grows */
    return compact(a, index, hash);
}

void acceptor_get_state(const acceptor_store *a, acceptor_state *st)
{
    acc_state_out(a, st);
}

void acceptor_get_info(const acceptor_store *a, acceptor_info *info)
{
    *info = a->info;
}
