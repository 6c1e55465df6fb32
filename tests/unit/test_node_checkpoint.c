/*
 * test_node_checkpoint.c - checkpoint entries in the node runtime
 * (node/snapshot.c invariant 4): every applied entry's state digest is
 * kept for a while; a checkpoint carrying the same digest at its index
 * counts as checked, one with another digest marks the state diverged
 * (the node abstains: integrity.c), one whose index is out of reach or
 * that is malformed is counted as unchecked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/le.h"
#include "../../node/node_int.h"

/* Apply one put as the next entry, as host_apply does, and tell the
 * snapshot module. */
static void apply_put(node *n, const char *key, const char *val)
{
    uint8_t buf[512];
    int64_t op_len = kv_op_encode_put(buf + 32, sizeof buf - 32, key,
                                      strlen(key), (const uint8_t *)val,
                                      (uint32_t)strlen(val));
    assert_true(op_len > 0);
    uint64_t seq = kv_applied_index(n->state) + 1;
    le_put32(buf, 1);                   /* one request (base/entry.c) */
    le_put64(buf + 4, 7);
    le_put64(buf + 12, seq);
    le_put64(buf + 20, seq);
    le_put32(buf + 28, (uint32_t)op_len);
    px_entry e = { .slot = kv_applied_index(n->state) + 1, .time_ms = 5,
                   .kind = PX_ENTRY_BATCH, .len = 32 + (uint32_t)op_len,
                   .data = buf };
    assert_int_equal(kv_apply_entry(n->state, &e, NULL, NULL), 0);
    snapnode_applied(n, &e);
}

static void apply_checkpoint(node *n, uint64_t index,
                             const uint8_t digest[KV_DIGEST_BYTES],
                             uint32_t len)
{
    px_checkpoint cp = { .index = index };
    memcpy(cp.digest, digest, KV_DIGEST_BYTES);
    uint8_t data[PX_CHECKPOINT_BYTES + 4] = {0};
    assert_int_equal(px_checkpoint_encode(&cp, data, sizeof data),
                     PX_CHECKPOINT_BYTES);
    px_entry e = { .slot = kv_applied_index(n->state) + 1, .time_ms = 6,
                   .kind = PX_ENTRY_CHECKPOINT, .len = len, .data = data };
    assert_int_equal(kv_apply_entry(n->state, &e, NULL, NULL), 0);
    snapnode_applied(n, &e);
}

static node *new_node(void)
{
    node *n = calloc(1, sizeof *n);
    assert_non_null(n);
    n->cfg.id = 3;
    n->confirmed = true;
    n->state = kv_create();
    assert_non_null(n->state);
    return n;
}

static void free_node(node *n)
{
    kv_destroy(n->state);
    free(n);
}

static void test_checkpoint_matches(void **state)
{
    (void)state;
    node *n = new_node();
    apply_put(n, "a", "1");
    apply_put(n, "b", "2");
    uint8_t d[KV_DIGEST_BYTES];
    kv_digest(n->state, d);               /* the digest at index 2 */
    uint64_t at = kv_applied_index(n->state);
    apply_put(n, "a", "changed later");   /* the checkpoint commits later */
    apply_checkpoint(n, at, d, PX_CHECKPOINT_BYTES);
    assert_int_equal(n->checkpoints_ok, 1);
    assert_false(n->state_diverged);
    assert_true(integrity_serves(n));
    assert_int_equal(n->snap_entries, 4);
    free_node(n);
}

static void test_checkpoint_mismatch_diverges(void **state)
{
    (void)state;
    node *n = new_node();
    apply_put(n, "a", "1");
    uint8_t d[KV_DIGEST_BYTES];
    kv_digest(n->state, d);
    d[7] ^= 1;                            /* the leader's state differs */
    apply_checkpoint(n, kv_applied_index(n->state), d, PX_CHECKPOINT_BYTES);
    assert_int_equal(n->checkpoints_ok, 0);
    assert_true(n->state_diverged);
    assert_true(n->abstaining);
    assert_false(integrity_serves(n));
    free_node(n);
}

static void test_checkpoint_out_of_reach(void **state)
{
    (void)state;
    node *n = new_node();
    uint8_t d[KV_DIGEST_BYTES] = {0};
    apply_put(n, "a", "1");
    /* an index never applied here (a snapshot was installed past it) */
    apply_checkpoint(n, 1000, d, PX_CHECKPOINT_BYTES);
    assert_int_equal(n->checkpoints_unchecked, 1);
    /* one that fell out of the ring */
    for (uint32_t i = 0; i < NODE_DIGESTS + 1; i++)
        apply_put(n, "k", "v");
    apply_checkpoint(n, 1, d, PX_CHECKPOINT_BYTES);
    assert_int_equal(n->checkpoints_unchecked, 2);
    /* malformed (committed by a faulty leader): counted, not judged */
    apply_checkpoint(n, 2, d, PX_CHECKPOINT_BYTES - 1);
    assert_int_equal(n->checkpoints_unchecked, 3);
    assert_false(n->state_diverged);
    free_node(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_matches),
        cmocka_unit_test(test_checkpoint_mismatch_diverges),
        cmocka_unit_test(test_checkpoint_out_of_reach),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
