/*
 * test_chain_render.c - the text of /MOUNT/.chain/<n>: header lines, one
 * op line per request, escaping and truncation of previews, noop and
 * config blocks, malformed batches.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../chain/chain.h"
#include "../../chain/kv.h"

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* batch of `n` ops */
static uint32_t make_batch(uint8_t *buf, const uint8_t *const *ops,
                           const uint32_t *lens, uint32_t n)
{
    uint32_t off = 4;
    put_le(buf, n, 4);
    for (uint32_t i = 0; i < n; i++) {
        put_le(buf + off, 9, 8);
        put_le(buf + off + 8, i + 1, 8);
        put_le(buf + off + 16, 1, 8);
        put_le(buf + off + 24, lens[i], 4);
        memcpy(buf + off + 28, ops[i], lens[i]);
        off += 28 + lens[i];
    }
    return off;
}

static void test_render_batch(void **state)
{
    (void)state;
    uint8_t op1[128], op2[256], op3[64], op4[64], batch[1024];
    const char *longval = "0123456789012345678901234567890123456789-and-more";
    int64_t l1 = kv_op_encode_put(op1, sizeof op1, "foo", 3,
                                  (const uint8_t *)"hello\n", 6);
    int64_t l2 = kv_op_encode_append(op2, sizeof op2, "d\"q\"", 4,
                                     (const uint8_t *)longval,
                                     (uint32_t)strlen(longval));
    int64_t l3 = kv_op_encode_rename(op3, sizeof op3, "a", 1, "b\tc", 3);
    int64_t l4 = kv_op_encode_del(op4, sizeof op4, "x", 1);
    uint8_t op6[128];
    int64_t l6 = kv_op_encode_cond(op6, sizeof op6, KV_COND_IDENT, "foo", 3,
                                   77, op1, (size_t)l1);
    const uint8_t *ops[] = { op1, op2, op3, op4, (const uint8_t *)"\x09", op6 };
    const uint32_t lens[] = { (uint32_t)l1, (uint32_t)l2, (uint32_t)l3,
                              (uint32_t)l4, 1, (uint32_t)l6 };
    uint32_t blen = make_batch(batch, ops, lens, 6);
    chain_block b = { .index = 42, .time_ms = 1763829601123ull,
                      .kind = PX_ENTRY_BATCH, .len = blen, .data = batch };
    memset(b.prev_hash, 0xab, 32);
    memset(b.hash, 0x01, 32);
    char *text = NULL;
    uint32_t len = 0;
    assert_int_equal(chain_block_render(&b, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "index: 42\n"));
    assert_non_null(strstr(text, "time: 2025-11-22T16:40:01.123Z (1763829601123)\n"));
    assert_non_null(strstr(text, "prev: abababab"));
    assert_non_null(strstr(text, "hash: 01010101"));
    assert_non_null(strstr(text, "kind: batch (6 requests)\n"));
    assert_non_null(strstr(text, "op: put key=\"foo\" len=6 value=\"hello\\n\"\n"));
    assert_non_null(strstr(text, "op: append key=\"d\\\"q\\\"\" len=49 value=\"0123456789012345678901234567890123456789\"...\n"));
    assert_non_null(strstr(text, "op: rename key=\"a\" to=\"b\\tc\"\n"));
    assert_non_null(strstr(text, "op: del key=\"x\"\n"));
    assert_non_null(strstr(text, "op: malformed"));
    assert_non_null(strstr(text, "op: if ident key=\"foo\" ident=77 then put key=\"foo\" len=6"));
    for (uint32_t i = 0; i < len; i++)
        assert_true(text[i] == '\n' || (text[i] >= 0x20 && text[i] < 0x7f));
    free(text);

    /* a batch that does not decode is said to be malformed */
    b.len = blen - 3;
    assert_int_equal(chain_block_render(&b, &text, &len), 0);
    assert_non_null(strstr(text, "kind: batch (malformed"));
    free(text);
}

static void test_render_noop_binary(void **state)
{
    (void)state;
    chain_block b = { .index = 1, .time_ms = 0, .kind = PX_ENTRY_NOOP };
    char *text = NULL;
    uint32_t len = 0;
    assert_int_equal(chain_block_render(&b, &text, &len), 0);
    assert_non_null(strstr(text, "kind: noop"));
    assert_non_null(strstr(text, "time: 1970-01-01T00:00:00.000Z (0)\n"));
    free(text);

    uint8_t op[64], batch[256];
    const uint8_t val[] = { 0x00, 0xff, 0x7f, '\\' };
    int64_t l = kv_op_encode_put(op, sizeof op, "bin", 3, val, 4);
    const uint8_t *ops[] = { op };
    const uint32_t lens[] = { (uint32_t)l };
    b.kind = PX_ENTRY_BATCH;
    b.len = make_batch(batch, ops, lens, 1);
    b.data = batch;
    assert_int_equal(chain_block_render(&b, &text, &len), 0);
    assert_non_null(strstr(text, "kind: batch (1 request)\n"));
    assert_non_null(strstr(text, "value=\"\\x00\\xff\\x7f\\\\\"\n"));
    free(text);
}

static void test_render_config(void **state)
{
    (void)state;
    px_members m = { .voters = {1, 2, 3, 4}, .n_voters = 4,
                     .learners = {7}, .n_learners = 1 };
    uint8_t buf[256];
    const char *ctx = "add 4=127.0.0.1:7004 by 1";
    int n = px_config_encode(&m, (const uint8_t *)ctx, (uint32_t)strlen(ctx),
                             buf, sizeof buf);
    assert_true(n > 0);
    chain_block b = { .index = 9, .kind = PX_ENTRY_CONFIG,
                      .len = (uint32_t)n, .data = buf };
    char *text = NULL;
    uint32_t len = 0;
    assert_int_equal(chain_block_render(&b, &text, &len), 0);
    assert_non_null(strstr(text, "kind: config (membership change)\nvoters: 1 2 3 4\nlearners: 7\n"));
    assert_non_null(strstr(text, "context: \"add 4=127.0.0.1:7004 by 1\"\n"));
    free(text);
    /* a plain members encoding (no context) still renders */
    n = px_members_encode(&m, buf, sizeof buf);
    b.len = (uint32_t)n;
    assert_int_equal(chain_block_render(&b, &text, &len), 0);
    assert_non_null(strstr(text, "voters: 1 2 3 4\n"));
    assert_null(strstr(text, "context:"));
    free(text);
    /* a context length that does not match is malformed */
    n = px_config_encode(&m, (const uint8_t *)ctx, (uint32_t)strlen(ctx),
                         buf, sizeof buf);
    b.len = (uint32_t)n - 1;
    assert_int_equal(chain_block_render(&b, &text, &len), 0);
    assert_non_null(strstr(text, "kind: config (malformed"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_batch),
        cmocka_unit_test(test_render_noop_binary),
        cmocka_unit_test(test_render_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
