/*
 * fuzz_batch.c - libFuzzer target for the value of a BATCH block
 * (consensus/batch.c), as every consumer of a committed block reads it:
 * the batch iterator, the `.chain/<n>` renderer (chain/render.c) and the
 * key-value state machine (kv_apply_entry, which decodes each op with
 * chain/kv_op.c and runs the session table).
 *
 * Properties (a violation traps):
 *   P1. no out-of-bounds access or undefined behaviour (ASan, UBSan);
 *   P2. a malformed batch fails on the first px_batch_next (never a partial
 *       iteration), px_batch_count says 0 and kv_apply_entry applies
 *       nothing (-EINVAL);
 *   P3. a well-formed batch iterates px_batch_count requests that
 *       re-encode to the same bytes (canonical), and kv_apply_entry calls
 *       back once per request with a result that is 0 or a known errno;
 *   P4. exactly once: applying the same batch again in the next slot
 *       changes no key (every request is a duplicate or forgotten);
 *   P5. the block renders as printable text.
 */
#include "fuzz_util.h"

#include "../../chain/chain.h"
#include "../../chain/kv.h"
#include "../../base/entry.h"

typedef struct results {
    uint32_t calls;
} results;

static void on_result(void *arg, uint64_t client_id, uint64_t seq,
                      int32_t result, uint64_t slot)
{
    results *r = arg;
    (void)client_id;
    (void)seq;
    (void)slot;
    CHECK(result == 0 || result == -ENOENT || result == -EFBIG ||
          result == -EINVAL || result == -ENAMETOOLONG ||
          result == -EALREADY);
    r->calls++;
}

/* A digest of the map: keys, values, versions. */
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

static digest map_digest(const kv *s)
{
    digest d = { 0, 0 };
    kv_scan(s, "", 0, digest_visit, &d);
    CHECK(d.keys == kv_count(s));
    return d;
}

static void check_render(const uint8_t *buf, uint32_t len, uint8_t kind)
{
    chain_block b;
    memset(&b, 0, sizeof b);
    b.index = 1;
    b.time_ms = 1700000000000ull;
    b.kind = kind;
    b.len = len;
    b.data = (uint8_t *)buf;
    char *text = NULL;
    uint32_t text_len = 0;
    CHECK(chain_block_render(&b, &text, &text_len) == 0);
    CHECK(strlen(text) == text_len);
    for (uint32_t i = 0; i < text_len; i++)
        CHECK(text[i] == '\n' || (text[i] >= 0x20 && text[i] < 0x7f));
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    uint32_t len = (uint32_t)size;
    uint8_t *buf = fuzz_copy(data, size);
    CHECK(buf != NULL);

    /* P2, P3: the iterator */
    uint32_t count = px_batch_count(buf, len);
    uint32_t off = 0, n = 0;
    px_request req;
    int r;
    uint8_t *re = malloc(size + 4);
    CHECK(re != NULL);
    uint32_t re_len = 4;
    while ((r = px_batch_next(buf, len, &off, &req)) == 1) {
        CHECK(off <= len);
        CHECK(req.len == 0 || (req.op >= buf && req.op + req.len <= buf + len));
        CHECK(re_len + px_batch_req_bytes(req.len) <= size);
        px_request q = { .client_id = req.client_id, .seq = req.seq,
                     .ack_seq = req.ack_seq, .len = req.len,
                     .op = (uint8_t *)req.op };
        re_len += px_batch_put(re + re_len, &q);
        n++;
    }
    CHECK(r == 0 || r == -EINVAL);
    if (r == 0) {
        CHECK(n == count && off == len);
        px_batch_put_header(re, n);
        CHECK(re_len == len && memcmp(re, buf, len) == 0);
    } else {
        CHECK(n == 0 && count == 0);   /* never a partial iteration */
    }
    free(re);

    /* P5 */
    check_render(buf, len, PX_ENTRY_BATCH);

    /* P2..P4: the state machine */
    kv *s = kv_create();
    CHECK(s != NULL);
    results res = { 0 };
    px_entry e = { .slot = 1, .time_ms = 5, .kind = PX_ENTRY_BATCH,
                   .len = len, .data = buf };
    int rc = kv_apply_entry(s, &e, on_result, &res);
    if (r < 0) {
        CHECK(rc == -EINVAL && res.calls == 0 && kv_applied_index(s) == 0);
        CHECK(kv_count(s) == 0);
    } else {
        CHECK(rc == 0 && res.calls == n && kv_applied_index(s) == 1);
        digest before = map_digest(s);
        e.slot = 2;
        res.calls = 0;
        CHECK(kv_apply_entry(s, &e, on_result, &res) == 0);
        CHECK(res.calls == n);
        digest after = map_digest(s);
        CHECK(before.keys == after.keys && before.sum == after.sum);
    }
    kv_destroy(s);
    free(buf);
    return 0;
}
