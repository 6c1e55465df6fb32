/*
 * kv_snapshot.c - owns the snapshot encoding of the key-value state
 * machine (kv_snapshot_encode / kv_snapshot_decode).
 *
 * Snapshot (little-endian):
 *   offset  size  meaning
 *   0       8     magic "pxkvsnap"
 *   8       4     format version, 3 (2 is read too: its records never
 *                 carry a change count)
 *   12      4     flags, 0
 *   16      8     applied index (last slot contained)
 *   24      8     payload length before compression U
 *   32      8     compressed payload length C
 *   40      4     CRC-32 of the C compressed bytes
 *   44      4     header checksum: CRC-32 of bytes 0..43
 *   48      C     payload, zlib (level 1: snapshots are large and taken
 *                 on the replica thread, speed matters more than size)
 * Payload, uncompressed:
 *   0       8     key count N
 *   8       8     session table length S
 *   16      S     kv_sessions_encode bytes
 *   then N times, keys strictly ascending in byte order:
 *           a record of chain/kv_stream.c: key length (| 0x8000 with
 *           an owner, | 0x4000 with a change count), key, mtime_ms,
 *           version, identity, [change count,] [uid, gid, mode,] value
 *           length V, value
 *
 * Invariants:
 *   1. The same state always encodes to the same bytes (keys in order,
 *      deterministic zlib), so replicas can compare snapshots.
 *   2. Decoding trusts nothing: every length is checked against what is
 *      left before it is used; the checksums are checked before any
 *      allocation sized by the input, and the payload buffer grows only
 *      as inflated bytes arrive (never to a claimed length up front);
 *      keys must pass kv_key_check and be strictly ascending (so no
 *      duplicates).  Anything else is -EINVAL.
 *   3. Decode builds a complete new state first and swaps it in only on
 *      success, so a failed decode leaves the target untouched.
 * The payload is parsed by kv_loader (kv_stream.c), the same parser that
 * reads snapshot files and transfers (chain/snapfile.c).
 */
#include "kv_int.h"
#include "chain_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define SNAP_MAGIC "pxkvsnap"
#define SNAP_VERSION 3
#define SNAP_VERSION_OLD 2   /* read: records without change counts */
#define SNAP_HEADER_BYTES 48
#define SNAP_MAX_RAW (1ull << 40)
#define SNAP_KEY_FIXED 30   /* 2 + 8 + 8 + 8 + 4 */
#define SNAP_FIRST_BUFFER (1u << 20) /* largest first inflate buffer */

typedef struct snap_writer {
    uint8_t *p;
    uint64_t off;
} snap_writer;

static int size_visit(void *arg, const char *key, size_t key_len,
                      const kv_value *v)
{
    (void)key;
    *(uint64_t *)arg += kv_record_header_size(key_len, v) + v->len;
    return 0;
}

static int write_visit(void *arg, const char *key, size_t key_len,
                       const kv_value *v)
{
    snap_writer *w = arg;
    uint8_t *p = w->p + w->off;
    size_t h = kv_record_header_put(p, key, key_len, v);
    if (v->len)
        memcpy(p + h, v->data, v->len);
    w->off += h + v->len;
    return 0;
}

int kv_snapshot_encode(const kv *s, uint8_t **out, size_t *out_len)
{
    int rc;
    if (!s || !out || !out_len)
        return -EINVAL;
    const kv_sessions *t = kv_session_table_const(s);
    int64_t sess_len = kv_sessions_encode(t, NULL, 0);
    if (sess_len < 0)
        return (int)sess_len;
    uint64_t raw_len = 16 + (uint64_t)sess_len;
    kv_scan(s, "", 0, size_visit, &raw_len);
    if (raw_len > SNAP_MAX_RAW || raw_len > SIZE_MAX / 2)
        return -EFBIG;

    uint8_t *raw = malloc((size_t)raw_len);
    if (!raw)
        return -ENOMEM;
    le_put64(raw, kv_count(s));
    le_put64(raw + 8, (uint64_t)sess_len);
    int64_t got = kv_sessions_encode(t, raw + 16, (uint64_t)sess_len);
    if (got != sess_len) {
        rc = got < 0 ? (int)got : -EIO;
        goto out_free_raw;
    }
    snap_writer w = { .p = raw, .off = 16 + (uint64_t)sess_len };
    kv_scan(s, "", 0, write_visit, &w);
    if (w.off != raw_len) {
        rc = -EIO;
        goto out_free_raw;
    }

    uLongf comp_len = compressBound((uLong)raw_len);
    uint8_t *buf = malloc(SNAP_HEADER_BYTES + (size_t)comp_len);
    if (!buf) {
        rc = -ENOMEM;
        goto out_free_raw;
    }
    if (compress2(buf + SNAP_HEADER_BYTES, &comp_len, raw, (uLong)raw_len,
                  1) != Z_OK) {
        rc = -ENOMEM;
        goto out_free_buf;
    }
    memcpy(buf, SNAP_MAGIC, 8);
    le_put32(buf + 8, SNAP_VERSION);
    le_put32(buf + 12, 0);
    le_put64(buf + 16, kv_applied_index(s));
    le_put64(buf + 24, raw_len);
    le_put64(buf + 32, comp_len);
    le_put32(buf + 40, chain_crc32(buf + SNAP_HEADER_BYTES, comp_len));
    le_put32(buf + 44, chain_crc32(buf, 44));
    free(raw);
    *out = buf;
    *out_len = SNAP_HEADER_BYTES + (size_t)comp_len;
    return 0;
out_free_buf:
    free(buf);
out_free_raw:
    free(raw);
    return rc;
}

/* Inflate the C compressed bytes into a malloc'ed buffer of exactly
 * raw_len bytes (*out), or -EINVAL if they do not inflate to exactly that.
 * The header's raw_len is not trusted for the allocation (invariant 2):
 * the buffer starts small and doubles only as inflated bytes fill it, so
 * memory follows what the payload really holds, whatever it claims. */
static int inflate_payload(const uint8_t *comp, uint64_t comp_len,
                           uint64_t raw_len, uint8_t **out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (comp_len > UINT_MAX)
        return -EINVAL;
    if (inflateInit(&z) != Z_OK)
        return -ENOMEM;
    /* room for one byte more than claimed, so a longer stream shows */
    uint64_t limit = raw_len + 1;
    uint64_t cap = 4 * comp_len + 4096;
    if (cap > SNAP_FIRST_BUFFER)
        cap = SNAP_FIRST_BUFFER;
    if (cap > limit)
        cap = limit;
    uint8_t *raw = malloc((size_t)cap);
    int rc = raw ? 0 : -ENOMEM;
    z.next_in = (Bytef *)comp;
    z.avail_in = (uInt)comp_len;
    uint64_t got = 0;
    int zrc = Z_OK;
    while (rc == 0 && zrc != Z_STREAM_END) {
        if (got == cap) {
            if (cap == limit) {       /* more bytes than claimed */
                rc = -EINVAL;
                break;
            }
            uint64_t ncap = cap * 2 < limit ? cap * 2 : limit;
            uint8_t *p = realloc(raw, (size_t)ncap);
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            raw = p;
            cap = ncap;
        }
        uint64_t room = cap - got;
        z.next_out = raw + got;
        z.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
        uInt before = z.avail_out;
        zrc = inflate(&z, Z_NO_FLUSH);
        got += before - z.avail_out;
        if (zrc == Z_MEM_ERROR)
            rc = -ENOMEM;
        else if (zrc != Z_OK && zrc != Z_STREAM_END)
            rc = -EINVAL;    /* corrupt, or input ended early (Z_BUF_ERROR) */
    }
    inflateEnd(&z);
    if (rc == 0 && (got != raw_len || z.avail_in != 0))
        rc = -EINVAL;        /* shorter than claimed, or trailing bytes */
    if (rc) {
        free(raw);
        return rc;
    }
    *out = raw;
    return 0;
}

int kv_snapshot_decode(kv *s, const uint8_t *buf, size_t len)
{
    int rc;
    if (!s || !buf || len < SNAP_HEADER_BYTES)
        return -EINVAL;
    if (memcmp(buf, SNAP_MAGIC, 8) != 0 ||
        chain_crc32(buf, 44) != le_get32(buf + 44) ||
        (le_get32(buf + 8) != SNAP_VERSION &&
         le_get32(buf + 8) != SNAP_VERSION_OLD) || le_get32(buf + 12))
        return -EINVAL;
    uint64_t applied = le_get64(buf + 16);
    uint64_t raw_len = le_get64(buf + 24);
    uint64_t comp_len = le_get64(buf + 32);
    if (comp_len != len - SNAP_HEADER_BYTES || raw_len < 16 ||
        raw_len > SNAP_MAX_RAW || raw_len > SIZE_MAX / 2 ||
        chain_crc32(buf + SNAP_HEADER_BYTES, (size_t)comp_len) !=
            le_get32(buf + 40))
        return -EINVAL;

    if (kv_frozen(s))
        return -EBUSY;
    uint8_t *raw = NULL;
    rc = inflate_payload(buf + SNAP_HEADER_BYTES, comp_len, raw_len, &raw);
    if (rc)
        return rc;
    kv_loader *l = NULL;
    kv *n = NULL;
    rc = kv_loader_new(&l);
    if (rc == 0)
        rc = kv_loader_feed(l, raw, raw_len);
    if (rc == 0)
        rc = kv_loader_finish(l, applied, &n);
    kv_loader_free(l);
    free(raw);
    if (rc)
        return rc;
    kv_swap(s, n);   /* invariant 3: n now holds the old state */
    kv_destroy(n);
    return 0;
}
