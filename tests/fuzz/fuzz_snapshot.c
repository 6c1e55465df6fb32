/*
 * fuzz_snapshot.c - libFuzzer target for the key-value snapshot decoder
 * (kv_snapshot_decode in chain/kv_snapshot.c) and the session table
 * decoder inside it (kv_sessions_decode in chain/sessions.c).
 *
 * Input: byte 0 picks the mode, the rest is used by it.
 *   mode 0  raw: the rest is a snapshot as it would arrive;
 *   mode 1  framed: the rest is an uncompressed payload, which is
 *           compressed and given a correct header, so the payload parser
 *           is reached without guessing checksums.  Byte 1 is flags:
 *           bit 0 the header claims the payload length in the next 8
 *           bytes instead of the true one; bits 4-7 the zlib level % 10;
 *   mode 2  sessions: the rest is a session table encoding;
 *   mode 3  sessions in use: 2 bytes give a length T, the next T bytes are
 *           a session table, installed through a snapshot of an empty map,
 *           and the rest is a batch applied twice on top of it.
 *
 * Properties (a violation traps):
 *   P1. no out-of-bounds access or undefined behaviour (ASan, UBSan), and
 *       no allocation larger than the input can justify (libFuzzer's
 *       malloc limit);
 *   P2. decoding fails only with -EINVAL and then leaves the target state
 *       as it was (same snapshot bytes before and after);
 *   P3. whatever decodes re-encodes to a snapshot that decodes to the same
 *       state; a payload framed at level 1 in the current format (3)
 *       re-encodes to the same bytes;
 *   P4. a session table that decodes re-encodes to the same bytes;
 *   P5. whatever table a snapshot installs, a batch applied on top is
 *       applied at most once: applying it again changes no key.
 */
#include "fuzz_util.h"

#include <zlib.h>

#include "../../chain/kv.h"
#include "../../base/entry.h"

#define SNAP_HEADER 48

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

/* A small state for the decoder to replace: two keys, one session. */
static kv *starting_state(void)
{
    static const uint8_t val[] = "old value";
    uint8_t op[64], batch[256];
    kv *s = kv_create();
    CHECK(s != NULL);
    uint32_t off = 4;
    const char *keys[] = { "a", "b" };
    for (uint32_t i = 0; i < 2; i++) {
        int64_t n = kv_op_encode_put(op, sizeof op, keys[i], strlen(keys[i]),
                                     val, sizeof val);
        CHECK(n > 0);
        px_request q = { .client_id = 77, .seq = i + 1, .len = (uint32_t)n,
                     .op = op };
        off += px_batch_put(batch + off, &q);
    }
    px_batch_put_header(batch, 2);
    px_entry e = { .slot = 1, .time_ms = 3, .kind = PX_ENTRY_BATCH,
                   .len = off, .data = batch };
    CHECK(kv_apply_entry(s, &e, NULL, NULL) == 0);
    return s;
}

static void encode(const kv *s, uint8_t **out, size_t *len)
{
    CHECK(kv_snapshot_encode(s, out, len) == 0);
}

/* P2, P3 for one snapshot; `canonical`: it must re-encode to itself. */
static void check_decode(const uint8_t *snap, size_t len, bool canonical)
{
    kv *s = starting_state();
    uint8_t *before, *after;
    size_t before_len, after_len;
    encode(s, &before, &before_len);
    int rc = kv_snapshot_decode(s, snap, len);
    CHECK(rc == 0 || rc == -EINVAL);
    encode(s, &after, &after_len);
    if (rc) {
        CHECK(after_len == before_len &&
              memcmp(after, before, before_len) == 0);
    } else {
        uint64_t applied = 0;
        for (int i = 7; i >= 0; i--)
            applied = (applied << 8) | snap[16 + i];
        CHECK(kv_applied_index(s) == applied);
        if (canonical)
            CHECK(after_len == len && memcmp(after, snap, len) == 0);
        kv *t = kv_create();
        CHECK(t != NULL);
        CHECK(kv_snapshot_decode(t, after, after_len) == 0);
        uint8_t *again;
        size_t again_len;
        encode(t, &again, &again_len);
        CHECK(again_len == after_len && memcmp(again, after, after_len) == 0);
        CHECK(kv_count(t) == kv_count(s) && kv_bytes(t) == kv_bytes(s));
        free(again);
        kv_destroy(t);
    }
    free(before);
    free(after);
    kv_destroy(s);
}

static void fuzz_framed(fuzz_cursor *in)
{
    uint8_t flags = (uint8_t)fuzz_take(in, 1);
    bool lie = flags & 1;
    int level = (flags >> 4) % 10;
    uint64_t claimed = lie ? fuzz_take(in, 8) : in->left;
    uLongf comp_len = compressBound((uLong)in->left);
    uint8_t *snap = malloc(SNAP_HEADER + comp_len);
    CHECK(snap != NULL);
    CHECK(compress2(snap + SNAP_HEADER, &comp_len, in->p, (uLong)in->left,
                    level) == Z_OK);
    /* format 3, or 2 (read too: its payload re-encodes as format 3) */
    uint32_t version = (flags & 2) ? 2 : 3;
    memcpy(snap, "pxkvsnap", 8);
    put_u32(snap + 8, version);
    put_u32(snap + 12, 0);
    put_u64(snap + 16, 42);
    put_u64(snap + 24, claimed);
    put_u64(snap + 32, comp_len);
    put_u32(snap + 40, crc(snap + SNAP_HEADER, comp_len));
    put_u32(snap + 44, crc(snap, 44));
    check_decode(snap, SNAP_HEADER + comp_len,
                 !lie && level == 1 && version == 3);
    free(snap);
}

/* P4 */
static void fuzz_sessions(const uint8_t *buf, size_t len)
{
    kv_sessions *t = kv_sessions_create(4096, 1024);
    CHECK(t != NULL);
    int rc = kv_sessions_decode(t, buf, len);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
        int64_t need = kv_sessions_encode(t, NULL, 0);
        CHECK(need == (int64_t)len);
        uint8_t *re = malloc(len);
        CHECK(re != NULL);
        CHECK(kv_sessions_encode(t, re, len) == (int64_t)len);
        CHECK(memcmp(re, buf, len) == 0);
        free(re);
    } else {
        CHECK(kv_sessions_encode(t, NULL, 0) == 12);   /* still empty */
    }
    kv_sessions_destroy(t);
}

typedef struct digest {
    uint64_t keys, sum;
} digest;

static int digest_visit(void *arg, const char *key, size_t key_len,
                        const kv_value *v)
{
    digest *d = arg;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < key_len; i++)
        h = (h ^ (uint8_t)key[i]) * 1099511628211ull;
    for (uint32_t i = 0; i < v->len; i++)
        h = (h ^ v->data[i]) * 1099511628211ull;
    h ^= v->version * 31 + v->mtime_ms;
    d->keys++;
    d->sum += h * (d->keys | 1);
    return 0;
}

/* P5 */
static void fuzz_sessions_in_use(fuzz_cursor *in)
{
    size_t t_len = (size_t)fuzz_take(in, 2), got;
    const uint8_t *table = fuzz_take_bytes(in, t_len, &got);
    uint8_t *payload = malloc(16 + got);
    CHECK(payload != NULL);
    put_u64(payload, 0);
    put_u64(payload + 8, got);
    if (got)
        memcpy(payload + 16, table, got);
    uLongf comp_len = compressBound((uLong)(16 + got));
    uint8_t *snap = malloc(SNAP_HEADER + comp_len);
    CHECK(snap != NULL);
    CHECK(compress2(snap + SNAP_HEADER, &comp_len, payload,
                    (uLong)(16 + got), 1) == Z_OK);
    memcpy(snap, "pxkvsnap", 8);
    put_u32(snap + 8, 3);   /* SNAP_VERSION */
    put_u32(snap + 12, 0);
    put_u64(snap + 16, 0);
    put_u64(snap + 24, 16 + got);
    put_u64(snap + 32, comp_len);
    put_u32(snap + 40, crc(snap + SNAP_HEADER, comp_len));
    put_u32(snap + 44, crc(snap, 44));
    kv *s = kv_create();
    CHECK(s != NULL);
    if (kv_snapshot_decode(s, snap, SNAP_HEADER + comp_len) == 0 &&
        in->left <= UINT32_MAX) {
        px_entry e = { .slot = 1, .time_ms = 8, .kind = PX_ENTRY_BATCH,
                       .len = (uint32_t)in->left, .data = in->p };
        if (kv_apply_entry(s, &e, NULL, NULL) == 0) {
            digest before = { 0, 0 }, after = { 0, 0 };
            kv_scan(s, "", 0, digest_visit, &before);
            e.slot = 2;
            CHECK(kv_apply_entry(s, &e, NULL, NULL) == 0);
            kv_scan(s, "", 0, digest_visit, &after);
            CHECK(before.keys == after.keys && before.sum == after.sum);
        }
    }
    kv_destroy(s);
    free(snap);
    free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    fuzz_cursor in = { data, size };
    uint8_t mode = (uint8_t)fuzz_take(&in, 1) % 4;
    uint8_t *rest = fuzz_copy(in.p, in.left);
    CHECK(rest != NULL);
    if (mode == 0) {
        check_decode(rest, in.left, false);
    } else if (mode == 1) {
        fuzz_cursor body = { rest, in.left };
        fuzz_framed(&body);
    } else if (mode == 2) {
        fuzz_sessions(rest, in.left);
    } else {
        fuzz_cursor body = { rest, in.left };
        fuzz_sessions_in_use(&body);
    }
    free(rest);
    return 0;
}
