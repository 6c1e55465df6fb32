/*
 * fuzz_snapfile.c - libFuzzer target for the snapshot file receiver
 * (snap_recv in chain/snapfile.c), which checks every snapshot file read
 * from disk and every snapshot streamed from a peer, and the payload
 * parser behind it (kv_loader, chain/kv_stream.c).
 *
 * Input: byte 0 picks the mode, byte 1 the chunk size the file is fed in
 * (1 + 37 * byte1 bytes: chunk borders fall anywhere), the rest is used by
 * the mode.
 *   mode 0  raw: the rest is a snapshot file as it would arrive;
 *   mode 1  framed: 8 bytes index, 1 byte membership length M, M bytes
 *           membership, 2 bytes frame size, then an uncompressed payload,
 *           which is compressed, cut into frames of that size and given a
 *           correct header (digest, key count and value bytes as the
 *           in-memory decoder kv_snapshot_decode finds them), CRCs and
 *           SHA-256, so the payload parser is reached through every check;
 *   mode 2  expected: like mode 0, with an expectation (index, head hash,
 *           digest) taken from the first 72 bytes of the rest.
 *
 * Properties (a violation traps):
 *   P1. no out-of-bounds access or undefined behaviour, no allocation
 *       larger than the input can justify (libFuzzer's malloc limit);
 *   P2. chunks given in order are never refused as misuse: every answer
 *       is 0 or -EBADMSG (-ENOMEM aside), and after -EBADMSG the damage
 *       offset lies within what was received;
 *   P3. what is accepted is consistent: the state's key count, value bytes
 *       and digest (recomputed from scratch) are the header's, its index
 *       is the snapshot's, and an expectation was met;
 *   P4. mode 1: the receiver accepts exactly the payloads the in-memory
 *       decoder accepts, with the same state (digest, count);
 *   P5. an accepted state written again (snapfile_write from a view) is
 *       accepted again with the same digest, count and index.
 */
#include "fuzz_util.h"

#include <openssl/evp.h>
#include <zlib.h>

#include "../../chain/kv.h"
#include "../../chain/snap.h"

#define SF_HEADER 120

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t crc(const uint8_t *p, size_t len)
{
    return (uint32_t)crc32(0L, p, (uInt)len);
}

/* Feed `file` to a receiver in chunks; returns the final answer and the
 * state (P2, P3). */
static int feed(const uint8_t *file, size_t len, size_t chunk,
                const snap_expect *ex, kv **state, snap_info *info)
{
    snap_recv *r;
    *state = NULL;
    int rc = snap_recv_begin(len, ex, -1, &r);
    if (rc == -ENOMEM)
        return rc;
    CHECK(rc == 0);
    size_t off = 0;
    while (rc == 0 && off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        rc = snap_recv_chunk(r, off, file + off, n);
        off += n;
    }
    if (rc == 0)
        rc = snap_recv_finish(r, state, info);
    CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
    if (rc == -EBADMSG)
        CHECK(snap_recv_damage(r)->offset <= len);
    if (rc == 0) {
        uint8_t d[KV_DIGEST_BYTES];
        CHECK(kv_digest_recompute(*state, d) == 0);
        CHECK(memcmp(d, info->digest, KV_DIGEST_BYTES) == 0);
        CHECK(kv_count(*state) == info->keys);
        CHECK(kv_bytes(*state) == info->value_bytes);
        CHECK(kv_applied_index(*state) == info->index);
        if (ex) {
            CHECK(info->index == ex->index);
            CHECK(memcmp(info->digest, ex->digest, KV_DIGEST_BYTES) == 0);
            CHECK(memcmp(info->head_hash, ex->head_hash, 32) == 0);
        }
    }
    snap_recv_free(r);
    return rc;
}

/* P5: write the state again and read it back. */
static void rewrite(kv *s, const snap_info *info)
{
    char path[400];
    const char *dir = fuzz_fresh_dir();
    snprintf(path, sizeof path, "%s/again.pxs", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    kv_view *v;
    CHECK(kv_freeze(s, &v) == 0);
    CHECK(snapfile_write(fd, v, info->head_hash, info->membership,
                         info->membership_len, NULL) == 0);
    kv_thaw(s, v);
    close(fd);
    kv *t = NULL;
    snap_info again;
    chain_damage dmg;
    CHECK(snapfile_load(path, NULL, &t, &again, &dmg) == 0);
    CHECK(memcmp(again.digest, info->digest, KV_DIGEST_BYTES) == 0);
    CHECK(again.keys == info->keys && again.index == info->index);
    kv_destroy(t);
    unlink(path);
}

/* The old in-memory snapshot format around `raw`, decoded. */
static kv *decode_in_memory(const uint8_t *raw, size_t raw_len, uint64_t index)
{
    uLongf comp_len = compressBound((uLong)raw_len);
    uint8_t *snap = malloc(48 + comp_len);
    CHECK(snap != NULL);
    CHECK(compress2(snap + 48, &comp_len, raw, (uLong)raw_len, 1) == Z_OK);
    memcpy(snap, "pxkvsnap", 8);
    put_u32(snap + 8, 2);
    put_u32(snap + 12, 0);
    put_u64(snap + 16, index);
    put_u64(snap + 24, raw_len);
    put_u64(snap + 32, comp_len);
    put_u32(snap + 40, crc(snap + 48, comp_len));
    put_u32(snap + 44, crc(snap, 44));
    kv *s = kv_create();
    CHECK(s != NULL);
    int rc = kv_snapshot_decode(s, snap, 48 + comp_len);
    free(snap);
    if (rc) {
        kv_destroy(s);
        return NULL;
    }
    return s;
}

/* Mode 1: a correct file around an arbitrary payload. */
static void fuzz_framed(fuzz_cursor *in, size_t chunk)
{
    uint64_t index = fuzz_take(in, 8);
    size_t mlen, got;
    mlen = (size_t)fuzz_take(in, 1);
    const uint8_t *membership = fuzz_take_bytes(in, mlen, &got);
    mlen = got;
    size_t frame = 1 + (size_t)fuzz_take(in, 2);
    const uint8_t *raw = in->p;
    size_t raw_len = in->left;

    kv *ref = decode_in_memory(raw, raw_len, index);
    uLongf comp_len = compressBound((uLong)raw_len);
    uint8_t *comp = malloc(comp_len);
    CHECK(comp != NULL);
    CHECK(compress2(comp, &comp_len, raw, (uLong)raw_len, 1) == Z_OK);
    size_t nframes = (comp_len + frame - 1) / frame;
    size_t len = SF_HEADER + mlen + nframes * 8 + comp_len + 8 + 48;
    uint8_t *f = calloc(1, len);
    CHECK(f != NULL);
    memcpy(f, "pxsnapf1", 8);
    put_u32(f + 8, 1);
    put_u64(f + 16, index);
    memset(f + 24, 0xab, 32);
    if (ref) {
        kv_digest(ref, f + 56);
        put_u64(f + 88, kv_count(ref));
        put_u64(f + 96, kv_bytes(ref));
    }
    put_u32(f + 104, (uint32_t)mlen);
    put_u32(f + 108, crc(membership, mlen));
    put_u32(f + 116, crc(f, 116));
    if (mlen)
        memcpy(f + SF_HEADER, membership, mlen);
    size_t off = SF_HEADER + mlen;
    for (size_t k = 0; k < comp_len; k += frame) {
        size_t n = comp_len - k < frame ? comp_len - k : frame;
        put_u32(f + off, (uint32_t)n);
        put_u32(f + off + 4, crc(comp + k, n));
        memcpy(f + off + 8, comp + k, n);
        off += 8 + n;
    }
    off += 8;                                   /* end frame: zeros */
    put_u64(f + off, raw_len);
    put_u64(f + off + 8, comp_len);
    unsigned int sl = 0;
    CHECK(EVP_Digest(f, off + 16, f + off + 16, &sl, EVP_sha256(), NULL) == 1);
    CHECK(off + 48 == len);

    kv *s;
    snap_info info;
    int rc = feed(f, len, chunk, NULL, &s, &info);
    if (rc != -ENOMEM) {
        /* P4; a frame larger than allowed is the file's fault */
        if (ref && frame <= SNAP_FRAME_BYTES) {
            CHECK(rc == 0);
            uint8_t a[KV_DIGEST_BYTES], b[KV_DIGEST_BYTES];
            kv_digest(ref, a);
            kv_digest(s, b);
            CHECK(memcmp(a, b, KV_DIGEST_BYTES) == 0);
            CHECK(kv_count(ref) == kv_count(s));
        }
        if (!ref)
            CHECK(rc == -EBADMSG);
    }
    if (rc == 0) {
        rewrite(s, &info);
        kv_destroy(s);
    }
    kv_destroy(ref);
    free(f);
    free(comp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    fuzz_cursor in = { data, size };
    uint8_t mode = (uint8_t)fuzz_take(&in, 1) % 3;
    size_t chunk = 1 + 37 * (size_t)fuzz_take(&in, 1);
    uint8_t *rest = fuzz_copy(in.p, in.left);
    CHECK(rest != NULL);
    fuzz_cursor body = { rest, in.left };
    if (mode == 1) {
        fuzz_framed(&body, chunk);
    } else {
        snap_expect ex;
        snap_expect *exp = NULL;
        if (mode == 2 && body.left >= 72) {
            ex.index = fuzz_take(&body, 8);
            size_t got;
            memcpy(ex.head_hash, fuzz_take_bytes(&body, 32, &got), 32);
            memcpy(ex.digest, fuzz_take_bytes(&body, 32, &got), 32);
            exp = &ex;
        }
        kv *s;
        snap_info info;
        if (feed(body.p, body.left, chunk, exp, &s, &info) == 0) {
            rewrite(s, &info);
            kv_destroy(s);
        }
    }
    free(rest);
    return 0;
}
