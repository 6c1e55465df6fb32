/*
 * test_consensus_codec.c - the pure encodings the core uses: batch values,
 * configuration entries (base/entry.c) and px_msg_copy,
 * each with well-formed and malformed input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../consensus/px.h"

/* ------------------------------------------------------------- batches */

static void put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

/* Hand-encode a batch following the layout documented in px.h. */
static uint32_t encode_batch(uint8_t *buf, const px_request *r, uint32_t n)
{
    uint32_t off = 4;
    put32(buf, n);
    for (uint32_t i = 0; i < n; i++) {
        put64(buf + off, r[i].client_id);
        put64(buf + off + 8, r[i].seq);
        put64(buf + off + 16, r[i].ack_seq);
        put32(buf + off + 24, r[i].len);
        if (r[i].len)
            memcpy(buf + off + 28, r[i].op, r[i].len);
        off += 28 + r[i].len;
    }
    return off;
}

static void test_batch_roundtrip(void **state)
{
    (void)state;
    px_request in[3] = {
        {.client_id = 7, .seq = 1, .ack_seq = 0, .len = 3,
         .op = (const uint8_t *)"abc"},
        {.client_id = 7, .seq = 2, .ack_seq = 1, .len = 0, .op = NULL},
        {.client_id = 9, .seq = 5, .ack_seq = 4, .len = 5,
         .op = (const uint8_t *)"hello"},
    };
    uint8_t buf[256];
    uint32_t len = encode_batch(buf, in, 3);
    assert_int_equal(px_batch_count(buf, len), 3);
    uint32_t off = 0;
    px_request out;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(px_batch_next(buf, len, &off, &out), 1);
        assert_int_equal(out.client_id, in[i].client_id);
        assert_int_equal(out.seq, in[i].seq);
        assert_int_equal(out.ack_seq, in[i].ack_seq);
        assert_int_equal(out.len, in[i].len);
        if (out.len)
            assert_memory_equal(out.op, in[i].op, out.len);
    }
    assert_int_equal(px_batch_next(buf, len, &off, &out), 0);
}

static void test_batch_malformed(void **state)
{
    (void)state;
    px_request in = {.client_id = 1, .seq = 1, .len = 4,
                     .op = (const uint8_t *)"data"};
    uint8_t buf[64];
    uint32_t len = encode_batch(buf, &in, 1);
    uint32_t off = 0;
    px_request out;
    /* truncated at every length */
    for (uint32_t l = 0; l < len; l++) {
        off = 0;
        assert_int_equal(px_batch_next(buf, l, &off, &out), -EINVAL);
        assert_int_equal(px_batch_count(buf, l), 0);
    }
    /* trailing garbage */
    uint8_t big[80];
    memcpy(big, buf, len);
    big[len] = 0xAA;
    off = 0;
    assert_int_equal(px_batch_next(big, len + 1, &off, &out), -EINVAL);
    /* count larger than the records present */
    put32(buf, 2);
    off = 0;
    assert_int_equal(px_batch_next(buf, len, &off, &out), -EINVAL);
    /* op length pointing past the end */
    put32(buf, 1);
    put32(buf + 4 + 24, 0xFFFFFFF0u);
    off = 0;
    assert_int_equal(px_batch_next(buf, len, &off, &out), -EINVAL);
    /* NULL data, NULL arguments */
    off = 0;
    assert_int_equal(px_batch_next(NULL, 10, &off, &out), -EINVAL);
    assert_int_equal(px_batch_next(buf, len, NULL, &out), -EINVAL);
    /* empty batch is valid and yields nothing */
    uint8_t empty[4] = {0, 0, 0, 0};
    off = 0;
    assert_int_equal(px_batch_next(empty, 4, &off, &out), 0);
    assert_int_equal(px_batch_count(empty, 4), 0);
}

/* ------------------------------------------------------------- members */

static void test_members_codec(void **state)
{
    (void)state;
    px_members m = {.voters = {1, 2, 3}, .n_voters = 3, .learners = {9},
                    .n_learners = 1};
    uint8_t buf[128];
    int n = px_members_encode(&m, buf, sizeof(buf));
    assert_int_equal(n, 8 + 4 * 4);
    px_members d;
    assert_int_equal(px_members_decode(buf, (uint32_t)n, &d), 0);
    assert_int_equal(d.n_voters, 3);
    assert_int_equal(d.n_learners, 1);
    assert_int_equal(d.voters[2], 3);
    assert_int_equal(d.learners[0], 9);
    assert_int_equal(px_members_encode(&m, buf, 10), -ENOSPC);
    for (int l = 0; l < n; l++)
        assert_int_equal(px_members_decode(buf, (uint32_t)l, &d), -EINVAL);
    /* duplicate id */
    px_members dup = {.voters = {1, 1}, .n_voters = 2};
    assert_int_equal(px_members_encode(&dup, buf, sizeof(buf)), -EINVAL);
    put32(buf, 2);
    put32(buf + 4, 5);
    put32(buf + 8, 5);
    put32(buf + 12, 0);
    assert_int_equal(px_members_decode(buf, 16, &d), -EINVAL);
    /* zero voters, too many voters */
    put32(buf, 0);
    put32(buf + 4, 0);
    assert_int_equal(px_members_decode(buf, 8, &d), -EINVAL);
    put32(buf, 1000);
    assert_int_equal(px_members_decode(buf, 128, &d), -EINVAL);
}

static void test_config_codec(void **state)
{
    (void)state;
    px_members m = {.voters = {1, 2, 3}, .n_voters = 3};
    uint8_t buf[64];
    px_members d;
    const uint8_t *ctx;
    uint32_t ctx_len;
    /* without a context: exactly the members encoding */
    int n = px_config_encode(&m, NULL, 0, buf, sizeof buf);
    assert_int_equal(n, 8 + 4 * 3);
    assert_int_equal(px_config_decode(buf, (uint32_t)n, &d, &ctx, &ctx_len), 0);
    assert_null(ctx);
    assert_int_equal(ctx_len, 0);
    assert_int_equal(px_members_decode(buf, (uint32_t)n, &d), 0);
    /* with one */
    n = px_config_encode(&m, (const uint8_t *)"abc", 3, buf, sizeof buf);
    assert_int_equal(n, 8 + 4 * 3 + 4 + 3);
    assert_int_equal(px_config_decode(buf, (uint32_t)n, &d, &ctx, &ctx_len), 0);
    assert_int_equal(ctx_len, 3);
    assert_memory_equal(ctx, "abc", 3);
    assert_int_equal(d.n_voters, 3);
    assert_int_equal(px_members_decode(buf, (uint32_t)n, &d), -EINVAL);
    for (int l = 8 + 4 * 3 + 1; l < n; l++)
        assert_int_equal(px_config_decode(buf, (uint32_t)l, &d, NULL, NULL),
                         -EINVAL);
    assert_int_equal(px_config_encode(&m, (const uint8_t *)"abc", 3, buf, 22),
                     -ENOSPC);
    put32(buf + 20, 0);   /* an empty context is written as none */
    assert_int_equal(px_config_decode(buf, 24, &d, NULL, NULL), -EINVAL);
    assert_int_equal(px_config_encode(&m, buf, PX_CONFIG_MAX_CONTEXT + 1,
                                      buf, sizeof buf), -EINVAL);
}

/* ------------------------------------------------------------- msg copy */

/* Checkpoint entries: exactly 40 bytes, index >= 1. */
static void test_checkpoint_codec(void **state)
{
    (void)state;
    px_checkpoint c = { .index = 0x0102030405060708ull }, d;
    for (uint32_t i = 0; i < PX_DIGEST_BYTES; i++)
        c.digest[i] = (uint8_t)(i * 3);
    uint8_t buf[64];
    assert_int_equal(px_checkpoint_encode(&c, buf, sizeof buf),
                     PX_CHECKPOINT_BYTES);
    assert_int_equal(buf[0], 0x08);          /* little-endian */
    assert_int_equal(px_checkpoint_decode(buf, PX_CHECKPOINT_BYTES, &d), 0);
    assert_int_equal(d.index, c.index);
    assert_memory_equal(d.digest, c.digest, PX_DIGEST_BYTES);
    assert_int_equal(px_checkpoint_decode(buf, PX_CHECKPOINT_BYTES - 1, &d),
                     -EINVAL);
    assert_int_equal(px_checkpoint_decode(buf, PX_CHECKPOINT_BYTES + 1, &d),
                     -EINVAL);
    assert_int_equal(px_checkpoint_encode(&c, buf, PX_CHECKPOINT_BYTES - 1),
                     -ENOSPC);
    memset(buf, 0, 8);
    assert_int_equal(px_checkpoint_decode(buf, PX_CHECKPOINT_BYTES, &d),
                     -EINVAL);
    c.index = 0;
    assert_int_equal(px_checkpoint_encode(&c, buf, sizeof buf), -EINVAL);
}

static void test_msg_copy(void **state)
{
    (void)state;
    px_entry e[2] = {
        {.slot = 4, .kind = PX_ENTRY_BATCH, .len = 3,
         .data = (const uint8_t *)"xyz"},
        {.slot = 5, .kind = PX_ENTRY_NOOP},
    };
    px_request r = {.client_id = 1, .seq = 2, .len = 2,
                    .op = (const uint8_t *)"op"};
    px_msg m = {.type = PX_MSG_ACCEPT, .from = 1, .to = 2, .n_entries = 2,
                .entries = e, .n_requests = 1, .requests = &r};
    px_msg *c = px_msg_copy(&m);
    assert_non_null(c);
    assert_ptr_not_equal(c->entries, e);
    assert_int_equal(c->entries[0].slot, 4);
    assert_memory_equal(c->entries[0].data, "xyz", 3);
    assert_null(c->entries[1].data);
    assert_memory_equal(c->requests[0].op, "op", 2);
    free(c);
    e[0].data = NULL; /* len > 0 with no data */
    assert_null(px_msg_copy(&m));
    assert_null(px_msg_copy(NULL));
    assert_true(px_ballot_cmp((px_ballot){1, 2}, (px_ballot){1, 3}) < 0);
    assert_true(px_ballot_cmp((px_ballot){2, 1}, (px_ballot){1, 3}) > 0);
    assert_int_equal(px_ballot_cmp((px_ballot){2, 1}, (px_ballot){2, 1}), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_roundtrip),
        cmocka_unit_test(test_batch_malformed),
        cmocka_unit_test(test_members_codec),
        cmocka_unit_test(test_checkpoint_codec),
        cmocka_unit_test(test_config_codec),
        cmocka_unit_test(test_msg_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
