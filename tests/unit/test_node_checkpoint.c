/*
 * test_node_checkpoint.c - checkpoint entries in the node runtime
 * (node/snapshot.c invariant 4): every applied entry's state digest is
 * kept for a while; a checkpoint carrying the same digest at its index
 * counts as checked, one with another digest marks the state diverged
 * (the node abstains: integrity.c), one whose index is out of reach or
 * that is malformed is counted as unchecked.  A node whose state
 * differs resets (repair.c invariant 5) only once a majority of the
 * members other than itself report the checkpoint's digest there
 * (integrity.c invariant 4): never on one peer's word, never on peers
 * that report another digest, never in a cluster of one.
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
#include "tmpdir.h"

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

/* A member of `members` members (ids 1..members; this node is 3 or 1),
 * with a backing directory for its incidents. */
static node *new_member(uint32_t members, char **dir)
{
    node *n = new_node();
    *dir = make_tmpdir();
    n->data_dir = *dir;
    n->cfg.id = members >= 3 ? 3 : 1;
    for (uint32_t k = 0; k < members; k++)
        n->peers[k].id = k + 1;
    n->cfg.peers = n->peers;
    n->cfg.n_peers = members;
    assert_int_equal(health_init(&n->health, n->cfg.id, *dir, NULL, NULL,
                                 NULL), 0);
    assert_int_equal(repair_start(n), 0);
    return n;
}

/* A DIGEST frame from `from`: its digest at `index`. */
static void digest_from(node *n, uint32_t from, uint64_t index,
                        const uint8_t digest[KV_DIGEST_BYTES])
{
    uint8_t h[CHAIN_HASH_BYTES] = {0};
    le_put32(h + 8, from);
    h[12] = 2;
    memcpy(h + 13, digest, NODE_DIGEST_PREFIX);
    integrity_on_chain_head(n, from, NODE_HEAD_START | index, h);
}

static bool incidents_say(const char *dir, const char *what)
{
    char path[600], buf[8192] = "";
    snprintf(path, sizeof path, "%s/incidents", dir);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    size_t got = fread(buf, 1, sizeof buf - 1, fp);
    buf[got] = '\0';
    fclose(fp);
    return strstr(buf, what) != NULL;
}

static void free_member(node *n, char *dir)
{
    repair_stop(n);
    health_fini(&n->health);
    free_node(n);
    rm_tree(dir);
}

static void test_state_reset_needs_a_majority(void **state)
{
    (void)state;
    char *dir;
    node *n = new_member(3, &dir);
    apply_put(n, "a", "1");
    uint64_t at = kv_applied_index(n->state);
    uint8_t ours[KV_DIGEST_BYTES], theirs[KV_DIGEST_BYTES];
    kv_digest(n->state, ours);
    memcpy(theirs, ours, sizeof theirs);
    theirs[3] ^= 0x10;                   /* the others' state differs */
    /* one peer reports the checkpoint's digest before it commits here */
    digest_from(n, 1, at, theirs);
    apply_checkpoint(n, at, theirs, PX_CHECKPOINT_BYTES);
    assert_true(n->state_diverged);
    assert_int_equal(n->fatal, 0);       /* one peer's word: abstain only */
    /* the other peer reports our digest: no majority against us */
    digest_from(n, 2, at, ours);
    assert_int_equal(n->fatal, 0);
    /* a digest at another index does not count */
    digest_from(n, 2, at + 1, theirs);
    assert_int_equal(n->fatal, 0);
    /* a frame naming another sender than the peer it came from */
    uint8_t h[CHAIN_HASH_BYTES] = {0};
    le_put32(h + 8, 1);
    h[12] = 2;
    memcpy(h + 13, theirs, NODE_DIGEST_PREFIX);
    integrity_on_chain_head(n, 2, NODE_HEAD_START | at, h);
    assert_int_equal(n->fatal, 0);
    assert_false(incidents_say(dir, "state_diverged"));
    /* now both others hold the checkpoint's digest: reset */
    digest_from(n, 2, at, theirs);
    assert_true(n->fatal < 0);           /* stopped: voting, serving */
    assert_true(incidents_say(dir, "found: state_diverged"));
    assert_true(incidents_say(dir, "nodes 1,2 of 3 members report"));
    free_member(n, dir);
}

/* A leader whose state went wrong commits checkpoints of its own digest:
 * it matches them, the followers do not.  The majority's digest decides:
 * the leader resets, and the followers, who agree with each other, vote
 * on (before, every follower abstained and the cluster stopped). */
static void test_leader_with_a_wrong_state_resets(void **state)
{
    (void)state;
    char *dir;
    node *n = new_member(3, &dir);
    apply_put(n, "a", "1");
    uint64_t at = kv_applied_index(n->state);
    uint8_t ours[KV_DIGEST_BYTES], theirs[KV_DIGEST_BYTES];
    kv_digest(n->state, ours);
    memcpy(theirs, ours, sizeof theirs);
    theirs[5] ^= 0x01;
    apply_checkpoint(n, at, ours, PX_CHECKPOINT_BYTES);   /* its own */
    assert_false(n->state_diverged);
    digest_from(n, 1, at, theirs);
    assert_int_equal(n->fatal, 0);       /* one peer: nothing */
    digest_from(n, 2, at, theirs);
    assert_true(n->fatal < 0);           /* both others: this node resets */
    assert_true(incidents_say(dir, "found: state_diverged"));
    assert_true(incidents_say(dir, "nodes 1,2 of 3 members report"));
    free_member(n, dir);
}

static void test_follower_votes_on_when_the_checkpoint_is_wrong(void **state)
{
    (void)state;
    char *dir;
    node *n = new_member(3, &dir);
    apply_put(n, "a", "1");
    uint64_t at = kv_applied_index(n->state);
    uint8_t ours[KV_DIGEST_BYTES], leaders[KV_DIGEST_BYTES];
    kv_digest(n->state, ours);
    memcpy(leaders, ours, sizeof leaders);
    leaders[7] ^= 0x40;
    digest_from(n, 1, at, leaders);      /* the leader's own digest */
    apply_checkpoint(n, at, leaders, PX_CHECKPOINT_BYTES);
    assert_true(n->state_diverged && n->abstaining);
    /* the other follower holds our digest: a majority with us */
    digest_from(n, 2, at, ours);
    assert_false(n->state_diverged);
    assert_false(n->abstaining);
    assert_int_equal(n->fatal, 0);
    assert_false(incidents_say(dir, "state_diverged"));
    free_member(n, dir);
}

static void test_state_reset_never_alone(void **state)
{
    (void)state;
    char *dir;
    node *n = new_member(1, &dir);
    apply_put(n, "a", "1");
    uint8_t d[KV_DIGEST_BYTES];
    kv_digest(n->state, d);
    d[0] ^= 1;
    apply_checkpoint(n, kv_applied_index(n->state), d, PX_CHECKPOINT_BYTES);
    assert_true(n->state_diverged);
    integrity_state_judge(n);
    assert_int_equal(n->fatal, 0);
    assert_false(incidents_say(dir, "state_diverged"));
    free_member(n, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_matches),
        cmocka_unit_test(test_checkpoint_mismatch_diverges),
        cmocka_unit_test(test_checkpoint_out_of_reach),
        cmocka_unit_test(test_state_reset_needs_a_majority),
        cmocka_unit_test(test_state_reset_never_alone),
        cmocka_unit_test(test_leader_with_a_wrong_state_resets),
        cmocka_unit_test(test_follower_votes_on_when_the_checkpoint_is_wrong),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
