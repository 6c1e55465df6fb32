/*
 * snapfile.c - owns the snapshot file format: the streaming writer (from a
 * frozen kv view) and the incremental, checking receiver (snap_recv), which
 * also loads snapshot files from disk.
 *
 * File layout (integers little-endian):
 *   offset    size  meaning
 *   header
 *   0         8     magic "pxsnapf1"
 *   8         4     format version, 2 (1 is read too: its payload
 *                   records never carry a change count)
 *   12        4     flags, 0
 *   16        8     last included index S
 *   24        32    chain head hash: hash of block S
 *   56        32    state digest at S (kv.h)
 *   88        8     key count N
 *   96        8     sum of value lengths
 *   104       4     membership blob length M (<= SNAP_MAX_MEMBERSHIP)
 *   108       4     CRC-32 of the membership blob
 *   112       4     reserved, 0
 *   116       4     header checksum: CRC-32 of bytes 0..115
 *   120       M     membership blob (opaque, from the node)
 *   frames, from F0 = 120 + M, repeated:
 *   +0        4     frame length L (1..SNAP_FRAME_BYTES; 0 ends the frames)
 *   +4        4     CRC-32 of the L bytes (0 in the end frame)
 *   +8        L     the next L bytes of one zlib stream (level 1) of the
 *                   payload: the kv snapshot payload of kv_stream.c (key
 *                   count, session table, then every key in ascending
 *                   byte order with mtime, version, identity and value)
 *   trailer, right after the end frame, 48 bytes:
 *   +0        8     payload length U (uncompressed)
 *   +8        8     zlib stream length C (sum of all L)
 *   +16       32    SHA-256 of every byte of the file before this field
 *   the file ends there: size = 120 + M + sum(8 + L) + 8 + 48.
 *
 * Invariants:
 *   1. Every byte is covered twice: by a local check that names where it
 *      is (header CRC, membership CRC, the CRC of its frame, the trailer
 *      fields) and by the SHA-256 of the file.  A changed byte is damage
 *      at the offset of the smallest unit that contains it; a cut file is
 *      damage at its end.
 *   2. The writer holds a ring of SF_SLOTS blocks (raw and compressed,
 *      about 8 MiB) and one frame; the receiver one frame and one inflate
 *      buffer, plus the state it builds (kv_loader, kv_stream.c invariant
 *      1): memory is independent of the state's size and of any length the
 *      bytes claim.
 *   3. The receiver compares header fields with what it expects as soon
 *      as they arrive, checks each frame when it is complete, and gives
 *      the state only after the SHA-256, the trailer lengths, the key
 *      count and the state digest recomputed from the records all agree.
 *   4. Deterministic: the same view, head hash and membership give the
 *      same bytes (keys in order, zlib level 1 with fixed parameters, the
 *      payload cut into blocks at fixed raw offsets, each compressed from
 *      its bytes and the 32 KiB before it alone, whichever thread does it).
 */
#include "snap.h"
#include "kv_int.h"
#include "chain_int.h"
#include "chain_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <zlib.h>

#define SF_MAGIC "pxsnapf1"
#define SF_VERSION 2
#define SF_VERSION_OLD 1    /* read: records without change counts */
#define SF_HEADER 120
#define SF_FRAME_HEADER 8
#define SF_TRAILER 48
#define SF_RAW_BUFFER (64u << 10)
#define SF_OUT_BUFFER (256u << 10)
#define SF_LEVEL 1

/* ------------------------------------------------------------ writer */

/* The payload is cut into blocks of SF_BLOCK raw bytes (fixed
 * boundaries, so the bytes are a function of the view), each deflated on
 * its own as raw deflate primed with the 32 KiB before it
 * (deflateSetDictionary) and ended by a sync flush (the last by the final
 * block): their concatenation, after a zlib header and before the Adler-32
 * of the whole payload, is one zlib stream, the one the reader has always
 * inflated.  Blocks are compressed by up to SF_WORKERS threads (one on a
 * machine of two CPUs or fewer) while the
 * writer's thread walks the view; it takes the results in order, cuts them
 * into frames and writes them. */
#define SF_BLOCK (1u << 20)
#define SF_DICT (32u << 10)
#define SF_SLOTS 4
#define SF_WORKERS 2

enum slot_state { SLOT_FREE, SLOT_FILLED, SLOT_BUSY, SLOT_DONE };

typedef struct sf_slot {
    uint8_t *raw;                      /* SF_DICT dictionary, then block */
    size_t dict_len, raw_len;
    uint8_t *out;
    size_t out_cap, out_len;
    uint32_t adler;                    /* of the block's raw bytes */
    uint64_t seq;
    bool last;
    int rc;
    enum slot_state state;
} sf_slot;

typedef struct sf_writer {
    int fd;
    uint64_t off;                      /* file bytes written */
    chain_hasher sha;
    uint8_t *frame;                    /* frame header + data */
    size_t frame_len;                  /* data bytes in the frame */
    uint8_t *out;                      /* SF_OUT_BUFFER bytes to write */
    size_t out_len;
    uint64_t raw_total, comp_total;
    uint32_t adler;                    /* of the payload so far emitted */
    sf_slot slots[SF_SLOTS];
    uint64_t fill_seq;                 /* block being filled */
    uint64_t emit_seq;                 /* next block to emit */
    z_stream z;                        /* the writer thread's own */
    bool z_open;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool sync_ok, stop;
    pthread_t workers[SF_WORKERS];
    int n_workers;
} sf_writer;

static int sha_update(chain_hasher *h, const void *p, size_t len)
{
    return len == 0 || EVP_DigestUpdate(h->ctx, p, len) == 1 ? 0 : -EIO;
}

static int sha_start(chain_hasher *h)
{
    return EVP_DigestInit_ex(h->ctx, h->md, NULL) == 1 ? 0 : -EIO;
}

static int sha_final(chain_hasher *h, uint8_t out[CHAIN_HASH_BYTES])
{
    unsigned int n = 0;
    return EVP_DigestFinal_ex(h->ctx, out, &n) == 1 && n == CHAIN_HASH_BYTES
               ? 0 : -EIO;
}

static int out_flush(sf_writer *w)
{
    if (w->out_len == 0)
        return 0;
    int rc = chain_io_pwrite_all(w->fd, w->out, w->out_len, w->off);
    if (rc)
        return rc;
    w->off += w->out_len;
    w->out_len = 0;
    return 0;
}

/* Append file bytes (hashed, buffered). */
static int out_put(sf_writer *w, const uint8_t *p, size_t len)
{
    int rc = sha_update(&w->sha, p, len);
    while (rc == 0 && len > 0) {
        size_t room = SF_OUT_BUFFER - w->out_len;
        size_t n = len < room ? len : room;
        memcpy(w->out + w->out_len, p, n);
        w->out_len += n;
        p += n;
        len -= n;
        if (w->out_len == SF_OUT_BUFFER)
            rc = out_flush(w);
    }
    return rc;
}

static int frame_emit(sf_writer *w)
{
    if (w->frame_len == 0)
        return 0;
    le_put32(w->frame, (uint32_t)w->frame_len);
    le_put32(w->frame + 4,
                  chain_crc32(w->frame + SF_FRAME_HEADER, w->frame_len));
    int rc = out_put(w, w->frame, SF_FRAME_HEADER + w->frame_len);
    w->comp_total += w->frame_len;
    w->frame_len = 0;
    return rc;
}

/* Compressed stream bytes into frames. */
static int stream_put(sf_writer *w, const uint8_t *p, size_t len)
{
    while (len > 0) {
        size_t room = SNAP_FRAME_BYTES - w->frame_len;
        size_t n = len < room ? len : room;
        memcpy(w->frame + SF_FRAME_HEADER + w->frame_len, p, n);
        w->frame_len += n;
        p += n;
        len -= n;
        if (w->frame_len == SNAP_FRAME_BYTES) {
            int rc = frame_emit(w);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Deflate one block with stream z (raw deflate, level SF_LEVEL). */
static void block_compress(z_stream *z, sf_slot *b)
{
    b->rc = 0;
    b->adler = (uint32_t)adler32(1L, b->raw + SF_DICT, (uInt)b->raw_len);
    if (deflateReset(z) != Z_OK ||
        (b->dict_len &&
         deflateSetDictionary(z, b->raw + SF_DICT - b->dict_len,
                              (uInt)b->dict_len) != Z_OK)) {
        b->rc = -EIO;
        return;
    }
    z->next_in = b->raw + SF_DICT;
    z->avail_in = (uInt)b->raw_len;
    z->next_out = b->out;
    z->avail_out = (uInt)b->out_cap;
    int zrc = deflate(z, b->last ? Z_FINISH : Z_SYNC_FLUSH);
    if ((b->last ? zrc != Z_STREAM_END : zrc != Z_OK) || z->avail_in != 0 ||
        z->avail_out == 0)
        b->rc = -EIO;     /* out_cap is deflateBound plus room: never */
    b->out_len = b->out_cap - z->avail_out;
}

static int raw_deflate_init(z_stream *z)
{
    memset(z, 0, sizeof *z);
    return deflateInit2(z, SF_LEVEL, Z_DEFLATED, -15, 8,
                        Z_DEFAULT_STRATEGY) == Z_OK ? 0 : -ENOMEM;
}

static void *worker_main(void *arg)
{
    sf_writer *w = arg;
    z_stream z;
    bool ok = raw_deflate_init(&z) == 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        sf_slot *b = NULL;
        for (int i = 0; i < SF_SLOTS; i++)
            if (w->slots[i].state == SLOT_FILLED &&
                (!b || w->slots[i].seq < b->seq))
                b = &w->slots[i];
        if (!b) {
            if (w->stop)
                break;
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        b->state = SLOT_BUSY;
        pthread_mutex_unlock(&w->mu);
        if (ok)
            block_compress(&z, b);
        else
            b->rc = -ENOMEM;
        pthread_mutex_lock(&w->mu);
        b->state = SLOT_DONE;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    if (ok)
        deflateEnd(&z);
    return NULL;
}

/* The compressed block of slot b into frames (the stream's header before
 * the first, the Adler-32 after the last). */
static int block_emit(sf_writer *w, sf_slot *b)
{
    int rc = b->rc;
    if (rc == 0 && b->seq == 0) {
        static const uint8_t zhead[2] = { 0x78, 0x01 };  /* deflate, 32K */
        rc = stream_put(w, zhead, 2);
    }
    if (rc == 0)
        rc = stream_put(w, b->out, b->out_len);
    w->raw_total += b->raw_len;
    w->adler = (uint32_t)adler32_combine(w->adler, b->adler,
                                         (z_off_t)b->raw_len);
    if (rc == 0 && b->last) {
        uint8_t a[4] = { (uint8_t)(w->adler >> 24), (uint8_t)(w->adler >> 16),
                         (uint8_t)(w->adler >> 8), (uint8_t)w->adler };
        rc = stream_put(w, a, 4);
        if (rc == 0)
            rc = frame_emit(w);
    }
    return rc;
}

/* Emit the submitted blocks in order as they are done: all of them (need
 * NULL), or until slot `need` is free. */
static int drain(sf_writer *w, sf_slot *need)
{
    int rc = 0;
    while (w->emit_seq < w->fill_seq && !(need && need->state == SLOT_FREE)) {
        sf_slot *b = &w->slots[w->emit_seq % SF_SLOTS];
        if (w->n_workers) {
            pthread_mutex_lock(&w->mu);
            while (b->state != SLOT_DONE)
                pthread_cond_wait(&w->cv, &w->mu);
            pthread_mutex_unlock(&w->mu);
        }
        int e = block_emit(w, b);
        rc = rc ? rc : e;
        if (w->n_workers)
            pthread_mutex_lock(&w->mu);
        b->state = SLOT_FREE;
        if (w->n_workers)
            pthread_mutex_unlock(&w->mu);
        w->emit_seq++;
    }
    return rc;
}

/* Hand the block being filled over (compressed by a worker, or here
 * without any), and start the next. */
static int block_submit(sf_writer *w, bool last)
{
    sf_slot *b = &w->slots[w->fill_seq % SF_SLOTS];
    b->last = last;
    b->seq = w->fill_seq;
    if (!last && w->n_workers == 0 && w->sync_ok) {
        /* a second block follows: start the workers (a failure to start
         * one leaves the compression to this thread) */
        /* two only where the loop keeps a CPU of its own: on two CPUs a
         * second compressing thread took the loop's (apply p99 4-12 ms
         * against 0.5-4 ms with one) */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        int want = cpus > 2 ? SF_WORKERS : 1;
        for (int i = 0; i < want; i++) {
            if (pthread_create(&w->workers[i], NULL, worker_main, w) != 0)
                break;
            w->n_workers++;
        }
    }
    if (w->n_workers) {
        pthread_mutex_lock(&w->mu);
        b->state = SLOT_FILLED;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    } else {
        block_compress(&w->z, b);
        b->state = SLOT_DONE;
    }
    w->fill_seq++;
    int rc = 0;
    if (last)
        return drain(w, NULL);
    sf_slot *n = &w->slots[w->fill_seq % SF_SLOTS];
    if (n->state != SLOT_FREE)
        rc = drain(w, n);
    /* the next block's dictionary: the last SF_DICT bytes before it */
    /* (every block but the last is SF_BLOCK >= SF_DICT bytes long) */
    memcpy(n->raw, b->raw + b->raw_len, SF_DICT);
    n->dict_len = SF_DICT;
    n->raw_len = 0;
    return rc;
}

static int raw_put(sf_writer *w, const void *p, size_t len)
{
    const uint8_t *q = p;
    while (len > 0) {
        sf_slot *b = &w->slots[w->fill_seq % SF_SLOTS];
        size_t room = SF_BLOCK - b->raw_len;
        size_t n = len < room ? len : room;
        memcpy(b->raw + SF_DICT + b->raw_len, q, n);
        b->raw_len += n;
        q += n;
        len -= n;
        if (b->raw_len == SF_BLOCK) {
            int rc = block_submit(w, false);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static void writer_free(sf_writer *w)
{
    if (w->n_workers) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        for (int i = 0; i < w->n_workers; i++)
            pthread_join(w->workers[i], NULL);
    }
    if (w->sync_ok) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
    if (w->z_open)
        deflateEnd(&w->z);
    for (int i = 0; i < SF_SLOTS; i++) {
        free(w->slots[i].raw);
        free(w->slots[i].out);
    }
    chain_hasher_free(&w->sha);
    free(w->frame);
    free(w->out);
}

static int write_payload(sf_writer *w, kv_view *v)
{
    uint8_t head[16];
    size_t sess_len;
    const uint8_t *sess = kv_view_sessions(v, &sess_len);
    le_put64(head, kv_view_count(v));
    le_put64(head + 8, sess_len);
    int rc = raw_put(w, head, sizeof head);
    if (rc == 0)
        rc = raw_put(w, sess, sess_len);
    const char *key;
    size_t klen;
    const kv_value *val;
    uint64_t n = 0;
    kv_view_rewind(v);
    while (rc == 0 && kv_view_next(v, &key, &klen, &val) == 1) {
        uint8_t rec[2 + KV_MAX_KEY + 28 + 12];
        size_t h = kv_record_header_put(rec, key, klen, val);
        rc = raw_put(w, rec, h);
        if (rc == 0 && val->len)
            rc = raw_put(w, val->data, val->len);
        n++;
    }
    if (rc == 0 && n != kv_view_count(v))
        rc = -EIO;                /* the view and its count disagree */
    if (rc == 0)
        rc = block_submit(w, true);   /* emits every block, then the end */
    return rc;
}

int snapfile_write(int fd, kv_view *v, const uint8_t head_hash[CHAIN_HASH_BYTES],
                   const uint8_t *membership, uint32_t membership_len,
                   snap_info *info)
{
    if (fd < 0 || !v || !head_hash || membership_len > SNAP_MAX_MEMBERSHIP ||
        (membership_len && !membership))
        return -EINVAL;
    sf_writer w;
    memset(&w, 0, sizeof w);
    w.fd = fd;
    int rc = chain_hasher_init(&w.sha);
    if (rc)
        return rc;
    w.frame = malloc(SF_FRAME_HEADER + SNAP_FRAME_BYTES);
    w.out = malloc(SF_OUT_BUFFER);
    if (!w.frame || !w.out || raw_deflate_init(&w.z) != 0) {
        rc = -ENOMEM;
        goto out;
    }
    w.z_open = true;
    w.adler = 1;
    for (int i = 0; i < SF_SLOTS && rc == 0; i++) {
        sf_slot *b = &w.slots[i];
        b->out_cap = deflateBound(&w.z, SF_BLOCK) + 64;
        b->raw = malloc(SF_DICT + SF_BLOCK);
        b->out = malloc(b->out_cap);
        if (!b->raw || !b->out)
            rc = -ENOMEM;
    }
    if (rc)
        goto out;
    if (pthread_mutex_init(&w.mu, NULL) == 0) {
        if (pthread_cond_init(&w.cv, NULL) == 0)
            w.sync_ok = true;
        else
            pthread_mutex_destroy(&w.mu);
    }
    rc = sha_start(&w.sha);
    if (rc)
        goto out;

    uint8_t h[SF_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, SF_MAGIC, 8);
    le_put32(h + 8, SF_VERSION);
    le_put64(h + 16, kv_view_index(v));
    memcpy(h + 24, head_hash, CHAIN_HASH_BYTES);
    kv_view_digest(v, h + 56);
    le_put64(h + 88, kv_view_count(v));
    le_put64(h + 96, kv_view_bytes(v));
    le_put32(h + 104, membership_len);
    le_put32(h + 108, chain_crc32(membership, membership_len));
    le_put32(h + 116, chain_crc32(h, 116));
    rc = out_put(&w, h, sizeof h);
    if (rc == 0)
        rc = out_put(&w, membership, membership_len);
    if (rc == 0)
        rc = write_payload(&w, v);
    if (rc)
        goto out;
    uint8_t t[SF_FRAME_HEADER + SF_TRAILER];
    memset(t, 0, SF_FRAME_HEADER);                 /* end frame */
    le_put64(t + 8, w.raw_total);
    le_put64(t + 16, w.comp_total);
    rc = out_put(&w, t, 24);
    if (rc == 0)
        rc = sha_final(&w.sha, t + 24);
    if (rc == 0)
        rc = out_flush(&w);
    if (rc == 0) {          /* the SHA-256 itself is not hashed */
        rc = chain_io_pwrite_all(fd, t + 24, CHAIN_HASH_BYTES, w.off);
        w.off += CHAIN_HASH_BYTES;
    }
    if (rc == 0 && info) {
        memset(info, 0, sizeof *info);
        info->index = kv_view_index(v);
        memcpy(info->head_hash, head_hash, CHAIN_HASH_BYTES);
        kv_view_digest(v, info->digest);
        info->keys = kv_view_count(v);
        info->value_bytes = kv_view_bytes(v);
        info->raw_bytes = w.raw_total;
        info->file_bytes = w.off;
        info->membership_len = membership_len;
        if (membership_len)
            memcpy(info->membership, membership, membership_len);
    }
out:
    writer_free(&w);
    return rc;
}

/* ---------------------------------------------------------- receiver */

enum recv_phase { RP_HEADER, RP_MEMBERSHIP, RP_FRAME_HEADER, RP_FRAME,
                  RP_TRAILER, RP_DONE, RP_DEAD };

struct snap_recv {
    enum recv_phase phase;
    uint64_t total, received;
    bool has_expect;
    snap_expect expect;
    int out_fd;
    chain_hasher sha;
    bool sha_ok;
    uint8_t header[SF_HEADER];
    snap_info info;
    uint8_t *frame;                    /* SNAP_FRAME_BYTES */
    uint32_t frame_len;                /* announced L */
    uint32_t frame_crc;
    uint64_t frame_off;                /* file offset of the frame header */
    uint8_t small[SF_TRAILER];         /* frame header / trailer bytes */
    size_t have;                       /* bytes of the current unit */
    uint8_t *inflated;                 /* SF_RAW_BUFFER */
    z_stream z;
    bool z_open, z_end;
    uint64_t raw_total, comp_total;
    kv_loader *loader;
    int err;                           /* why the receiver is dead */
    chain_damage damage;
};

static int damaged(snap_recv *r, uint64_t offset, const char *why)
{
    r->phase = RP_DEAD;
    r->err = -EBADMSG;
    chain_damage_set(&r->damage, "", offset, r->info.index, why);
    return -EBADMSG;
}

int snap_recv_begin(uint64_t total, const snap_expect *expect, int out_fd,
                    snap_recv **out)
{
    snap_recv *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->total = total;
    r->out_fd = out_fd;
    if (expect) {
        r->has_expect = true;
        r->expect = *expect;
    }
    int rc = chain_hasher_init(&r->sha);
    if (rc) {
        free(r);
        return rc;
    }
    r->sha_ok = true;
    r->frame = malloc(SNAP_FRAME_BYTES);
    r->inflated = malloc(SF_RAW_BUFFER);
    if (!r->frame || !r->inflated || kv_loader_new(&r->loader) != 0 ||
        inflateInit(&r->z) != Z_OK) {
        snap_recv_free(r);
        return -ENOMEM;
    }
    r->z_open = true;
    rc = sha_start(&r->sha);
    if (rc) {
        snap_recv_free(r);
        return rc;
    }
    if (total < SF_HEADER + SF_FRAME_HEADER + SF_TRAILER)
        damaged(r, total, "shorter than the smallest snapshot file");
    /* (the receiver is then dead: every call answers -EBADMSG) */
    *out = r;
    return 0;
}

void snap_recv_free(snap_recv *r)
{
    if (!r)
        return;
    if (r->z_open)
        inflateEnd(&r->z);
    if (r->sha_ok)
        chain_hasher_free(&r->sha);
    kv_loader_free(r->loader);
    free(r->frame);
    free(r->inflated);
    free(r);
}

uint64_t snap_recv_received(const snap_recv *r)
{
    return r->received;
}

const chain_damage *snap_recv_damage(const snap_recv *r)
{
    return &r->damage;
}

static int header_done(snap_recv *r)
{
    const uint8_t *h = r->header;
    if (memcmp(h, SF_MAGIC, 8) != 0)
        return damaged(r, 0, "not a snapshot file (bad magic)");
    if (chain_crc32(h, 116) != le_get32(h + 116))
        return damaged(r, 0, "bad header checksum");
    if ((le_get32(h + 8) != SF_VERSION && le_get32(h + 8) != SF_VERSION_OLD) ||
        le_get32(h + 12) != 0 ||
        le_get32(h + 112) != 0)
        return damaged(r, 8, "unknown snapshot format version or flags");
    snap_info *i = &r->info;
    i->index = le_get64(h + 16);
    memcpy(i->head_hash, h + 24, CHAIN_HASH_BYTES);
    memcpy(i->digest, h + 56, KV_DIGEST_BYTES);
    i->keys = le_get64(h + 88);
    i->value_bytes = le_get64(h + 96);
    i->membership_len = le_get32(h + 104);
    if (i->membership_len > SNAP_MAX_MEMBERSHIP)
        return damaged(r, 104, "membership blob longer than allowed");
    if (SF_HEADER + (uint64_t)i->membership_len + SF_FRAME_HEADER +
        SF_TRAILER > r->total)
        return damaged(r, 104, "membership blob longer than the file");
    if (r->has_expect) {
        if (i->index != r->expect.index)
            return damaged(r, 16, "snapshot taken at another index than "
                           "expected");
        if (memcmp(i->head_hash, r->expect.head_hash, CHAIN_HASH_BYTES))
            return damaged(r, 24, "snapshot head hash differs from the "
                           "expected chain hash");
        if (memcmp(i->digest, r->expect.digest, KV_DIGEST_BYTES))
            return damaged(r, 56, "snapshot state digest differs from the "
                           "expected digest");
    }
    r->have = 0;
    r->phase = i->membership_len ? RP_MEMBERSHIP : RP_FRAME_HEADER;
    return 0;
}

/* Inflate one checked frame into the loader. */
static int frame_done(snap_recv *r)
{
    if (chain_crc32(r->frame, r->frame_len) != r->frame_crc)
        return damaged(r, r->frame_off, "bad frame checksum");
    if (r->z_end)
        return damaged(r, r->frame_off, "frame after the end of the "
                       "compressed stream");
    r->comp_total += r->frame_len;
    r->z.next_in = r->frame;
    r->z.avail_in = r->frame_len;
    do {
        r->z.next_out = r->inflated;
        r->z.avail_out = SF_RAW_BUFFER;
        int zrc = inflate(&r->z, Z_NO_FLUSH);
        if (zrc == Z_MEM_ERROR)
            return -ENOMEM;
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR)
            return damaged(r, r->frame_off, "corrupt compressed data");
        size_t got = SF_RAW_BUFFER - r->z.avail_out;
        r->raw_total += got;
        int rc = kv_loader_feed(r->loader, r->inflated, got);
        if (rc == -ENOMEM)
            return rc;
        if (rc) {
            char why[128];
            snprintf(why, sizeof why, "state in this frame: %s",
                     kv_loader_error(r->loader));
            return damaged(r, r->frame_off, why);
        }
        if (zrc == Z_STREAM_END) {
            r->z_end = true;
            break;
        }
    } while (r->z.avail_out == 0 || r->z.avail_in > 0);
    if (r->z_end && r->z.avail_in > 0)
        return damaged(r, r->frame_off, "bytes after the end of the "
                       "compressed stream");
    r->have = 0;
    r->phase = RP_FRAME_HEADER;
    return 0;
}

static int frame_header_done(snap_recv *r)
{
    uint32_t len = le_get32(r->small);
    uint32_t crc = le_get32(r->small + 4);
    r->have = 0;
    if (len == 0) {
        if (crc != 0)
            return damaged(r, r->frame_off, "bad end frame");
        if (!r->z_end)
            return damaged(r, r->frame_off, "the compressed stream ends "
                           "before its end");
        if (r->frame_off + SF_FRAME_HEADER + SF_TRAILER != r->total)
            return damaged(r, r->frame_off, "end frame not followed by "
                           "exactly the trailer");
        r->phase = RP_TRAILER;
        return 0;
    }
    if (len > SNAP_FRAME_BYTES)
        return damaged(r, r->frame_off, "frame longer than allowed");
    if (r->frame_off + SF_FRAME_HEADER + len + SF_FRAME_HEADER + SF_TRAILER >
        r->total)
        return damaged(r, r->frame_off, "frame runs past the end of the "
                       "file");
    r->frame_len = len;
    r->frame_crc = crc;
    r->phase = RP_FRAME;
    return 0;
}

static int trailer_done(snap_recv *r)
{
    uint64_t at = r->total - SF_TRAILER;
    uint8_t sha[CHAIN_HASH_BYTES];
    if (le_get64(r->small) != r->raw_total ||
        le_get64(r->small + 8) != r->comp_total)
        return damaged(r, at, "trailer lengths differ from the stream");
    if (sha_update(&r->sha, r->small, 16) != 0 || sha_final(&r->sha, sha) != 0)
        return -EIO;
    if (memcmp(sha, r->small + 16, CHAIN_HASH_BYTES) != 0)
        return damaged(r, at + 16, "SHA-256 of the file does not match");
    r->phase = RP_DONE;
    return 0;
}

static int recv_some(snap_recv *r, const uint8_t *data, size_t len);

/* Any failure but a misplaced chunk is final: the receiver's state is no
 * longer one a next chunk could continue (r->err is returned from then
 * on). */
int snap_recv_chunk(snap_recv *r, uint64_t offset, const uint8_t *data,
                    size_t len)
{
    if (r->phase == RP_DEAD)
        return r->err;
    if (offset != r->received || (len && !data) || len > r->total - offset)
        return -EINVAL;
    int rc = 0;
    if (r->out_fd >= 0 && len)
        rc = chain_io_pwrite_all(r->out_fd, data, len, offset);
    if (rc == 0)
        rc = recv_some(r, data, len);
    if (rc) {
        r->phase = RP_DEAD;
        r->err = rc;
    }
    return rc;
}

static int recv_some(snap_recv *r, const uint8_t *data, size_t len)
{
    while (len > 0) {
        size_t take = 0;
        int rc = 0;
        uint64_t pos = r->received;
        enum recv_phase ph = r->phase;
        switch (ph) {
        case RP_HEADER:
            take = SF_HEADER - r->have;
            take = take < len ? take : len;
            memcpy(r->header + r->have, data, take);
            r->have += take;
            if (r->have == SF_HEADER)
                rc = header_done(r);
            break;
        case RP_MEMBERSHIP:
            take = r->info.membership_len - r->have;
            take = take < len ? take : len;
            memcpy(r->info.membership + r->have, data, take);
            r->have += take;
            if (r->have == r->info.membership_len) {
                r->have = 0;
                if (chain_crc32(r->info.membership, r->info.membership_len) !=
                    le_get32(r->header + 108))
                    rc = damaged(r, SF_HEADER, "bad membership checksum");
                else
                    r->phase = RP_FRAME_HEADER;
            }
            break;
        case RP_FRAME_HEADER:
            if (r->have == 0)
                r->frame_off = pos;
            take = SF_FRAME_HEADER - r->have;
            take = take < len ? take : len;
            memcpy(r->small + r->have, data, take);
            r->have += take;
            if (r->have == SF_FRAME_HEADER)
                rc = frame_header_done(r);
            break;
        case RP_FRAME:
            take = r->frame_len - r->have;
            take = take < len ? take : len;
            memcpy(r->frame + r->have, data, take);
            r->have += take;
            if (r->have == r->frame_len)
                rc = 1;           /* checked below, after hashing */
            break;
        case RP_TRAILER:
            take = SF_TRAILER - r->have;
            take = take < len ? take : len;
            memcpy(r->small + r->have, data, take);
            r->have += take;
            break;
        case RP_DONE:
            return damaged(r, pos, "bytes after the end of the snapshot");
        case RP_DEAD:
            return r->err;
        }
        if (rc < 0)
            return rc;
        /* every byte but the trailer is hashed as it passes; the trailer's
         * first 16 bytes are hashed when it is complete (trailer_done) */
        if (ph != RP_TRAILER && sha_update(&r->sha, data, take) != 0)
            return -EIO;
        r->received += take;
        data += take;
        len -= take;
        if (rc == 1) {
            rc = frame_done(r);
            if (rc)
                return rc;
        }
        if (r->phase == RP_TRAILER && r->have == SF_TRAILER) {
            rc = trailer_done(r);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int snap_recv_finish(snap_recv *r, kv **state, snap_info *info)
{
    if (r->phase == RP_DEAD)
        return r->err;
    if (r->received != r->total || r->phase != RP_DONE) {
        const char *why = "the file ends early";
        switch (r->phase) {
        case RP_HEADER: why = "the file ends inside its header"; break;
        case RP_MEMBERSHIP: why = "the file ends inside the membership blob";
            break;
        case RP_FRAME_HEADER:
        case RP_FRAME: why = "the file ends inside the compressed state";
            break;
        case RP_TRAILER: why = "the file ends inside its trailer"; break;
        default: break;
        }
        return damaged(r, r->received, why);
    }
    kv *s = NULL;
    int rc = kv_loader_finish(r->loader, r->info.index, &s);
    if (rc == -ENOMEM) {
        r->phase = RP_DEAD;
        r->err = rc;
        return rc;
    }
    if (rc) {
        char why[128];
        snprintf(why, sizeof why, "state: %s", kv_loader_error(r->loader));
        return damaged(r, r->frame_off, why);
    }
    uint8_t d[KV_DIGEST_BYTES];
    kv_digest(s, d);
    if (kv_count(s) != r->info.keys || kv_bytes(s) != r->info.value_bytes) {
        kv_destroy(s);
        return damaged(r, 88, "key count or value bytes differ from the "
                       "header");
    }
    if (memcmp(d, r->info.digest, KV_DIGEST_BYTES) != 0) {
        kv_destroy(s);
        return damaged(r, 56, "state digest recomputed from the records "
                       "differs from the header");
    }
    r->info.raw_bytes = r->raw_total;
    r->info.file_bytes = r->total;
    if (info)
        *info = r->info;
    if (state)
        *state = s;
    else
        kv_destroy(s);
    r->phase = RP_DEAD;        /* the state was given away */
    r->err = -EALREADY;
    return 0;
}

/* ----------------------------------------------------- whole files */

#define SF_READ_CHUNK (256u << 10)

int snapfile_load(const char *path, const snap_expect *expect, kv **state,
                  snap_info *info, chain_damage *damage)
{
    const chain_io_ops *io = chain_io();
    if (damage)
        memset(damage, 0, sizeof *damage);
    int fd = io->open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = io->fstat(fd, &st);
    if (rc) {
        io->close(fd);
        return rc;
    }
    uint8_t *buf = malloc(SF_READ_CHUNK);
    snap_recv *r = NULL;
    if (!buf)
        rc = -ENOMEM;
    if (rc == 0)
        rc = snap_recv_begin((uint64_t)st.st_size, expect, -1, &r);
    if (rc == 0 && !state)
        kv_loader_check_only(r->loader);   /* the digest, not the map */
    uint64_t off = 0;
    while (rc == 0 && off < (uint64_t)st.st_size) {
        uint64_t left = (uint64_t)st.st_size - off;
        size_t want = left < SF_READ_CHUNK ? (size_t)left : SF_READ_CHUNK;
        int64_t got = chain_io_pread_all(fd, buf, want, off);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        if (got == 0)
            break;          /* shrank meanwhile: finish reports the cut */
        rc = snap_recv_chunk(r, off, buf, (size_t)got);
        off += (uint64_t)got;
    }
    if (rc == 0)
        rc = snap_recv_finish(r, state, info);
    if (rc == -EBADMSG && damage && r) {
        *damage = *snap_recv_damage(r);
        snprintf(damage->path, sizeof damage->path, "%s", path);
    }
    snap_recv_free(r);
    free(buf);
    io->close(fd);
    return rc;
}

int snap_info_render(const snap_info *info, char **text, size_t *len)
{
    char head[2 * CHAIN_HASH_BYTES + 1], dig[2 * KV_DIGEST_BYTES + 1];
    chain_hex(info->head_hash, CHAIN_HASH_BYTES, head);
    chain_hex(info->digest, KV_DIGEST_BYTES, dig);
    char *s = NULL;
    int n = asprintf(&s, "snapshot index: %llu\nhead hash: %s\n"
                     "state digest: %s\nkeys: %llu\nvalue bytes: %llu\n"
                     "raw bytes: %llu\ncompressed bytes: %llu\n",
                     (unsigned long long)info->index, head, dig,
                     (unsigned long long)info->keys,
                     (unsigned long long)info->value_bytes,
                     (unsigned long long)info->raw_bytes,
                     (unsigned long long)info->file_bytes);
    if (n < 0)
        return -ENOMEM;
    *text = s;
    *len = (size_t)n;
    return 0;
}
