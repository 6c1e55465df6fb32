/*
 * test_consensus_codec.c - the pure encodings of consensus/: batch values,
 * configuration entries, the exactly-once session table and px_msg_copy,
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

/* ------------------------------------------------------------ sessions */

static px_request rq(uint64_t client, uint64_t seq, uint64_t ack)
{
    return (px_request){.client_id = client, .seq = seq, .ack_seq = ack};
}

static void test_sessions_basic(void **state)
{
    (void)state;
    px_sessions *t = px_sessions_create(4, 3);
    assert_non_null(t);
    int32_t res = 0;
    px_request a1 = rq(1, 1, 0);
    assert_int_equal(px_sessions_check(t, &a1, &res), PX_SESSION_NEW);
    assert_int_equal(px_sessions_record(t, &a1, 11, 1), 0);
    assert_int_equal(px_sessions_check(t, &a1, &res), PX_SESSION_DUPLICATE);
    assert_int_equal(res, 11);
    /* out-of-order seqs are both kept */
    px_request a3 = rq(1, 3, 0), a2 = rq(1, 2, 0);
    assert_int_equal(px_sessions_record(t, &a3, 33, 2), 0);
    assert_int_equal(px_sessions_check(t, &a2, &res), PX_SESSION_NEW);
    assert_int_equal(px_sessions_record(t, &a2, 22, 3), 0);
    assert_int_equal(px_sessions_check(t, &a3, &res), PX_SESSION_DUPLICATE);
    assert_int_equal(res, 33);
    /* ack_seq 3 forgets seqs 1 and 2 */
    px_request a4 = rq(1, 4, 3);
    assert_int_equal(px_sessions_record(t, &a4, 44, 4), 0);
    assert_int_equal(px_sessions_check(t, &a1, &res), PX_SESSION_FORGOTTEN);
    assert_int_equal(px_sessions_check(t, &a2, &res), PX_SESSION_FORGOTTEN);
    assert_int_equal(px_sessions_check(t, &a3, &res), PX_SESSION_DUPLICATE);
    /* max_per_client = 3: recording 5 and 6 drops 3, which is forgotten,
     * never reported as new again */
    px_request a5 = rq(1, 5, 0), a6 = rq(1, 6, 0);
    assert_int_equal(px_sessions_record(t, &a5, 55, 5), 0);
    assert_int_equal(px_sessions_record(t, &a6, 66, 6), 0);
    assert_int_equal(px_sessions_check(t, &a3, &res), PX_SESSION_FORGOTTEN);
    assert_int_equal(px_sessions_check(t, &a6, &res), PX_SESSION_DUPLICATE);
    assert_int_equal(res, 66);
    assert_int_equal(px_sessions_check(NULL, &a6, &res), -EINVAL);
    px_sessions_destroy(t);
}

/* A request still in flight (a stuck retry) while newer ones of the same
 * client are applied and their results dropped for space stays NEW: only
 * applied requests may be FORGOTTEN. */
static void test_sessions_stuck_request(void **state)
{
    (void)state;
    px_sessions *t = px_sessions_create(4, 3);
    int32_t res;
    for (uint64_t s = 2; s <= 9; s++) {
        px_request q = rq(1, s, 1); /* ack_seq 1: seq 1 unanswered */
        assert_int_equal(px_sessions_record(t, &q, (int32_t)s, s), 0);
    }
    px_request one = rq(1, 1, 1), two = rq(1, 2, 1), nine = rq(1, 9, 1);
    assert_int_equal(px_sessions_check(t, &one, &res), PX_SESSION_NEW);
    assert_int_equal(px_sessions_check(t, &two, &res), PX_SESSION_FORGOTTEN);
    assert_int_equal(px_sessions_check(t, &nine, &res), PX_SESSION_DUPLICATE);
    assert_int_equal(res, 9);
    /* the gap survives a snapshot */
    int64_t need = px_sessions_encode(t, NULL, 0);
    uint8_t *buf = malloc((size_t)need);
    assert_int_equal(px_sessions_encode(t, buf, (uint64_t)need), need);
    px_sessions *d = px_sessions_create(4, 3);
    assert_int_equal(px_sessions_decode(d, buf, (uint64_t)need), 0);
    assert_int_equal(px_sessions_check(d, &one, &res), PX_SESSION_NEW);
    assert_int_equal(px_sessions_check(d, &two, &res), PX_SESSION_FORGOTTEN);
    /* applied at last: now a duplicate */
    assert_int_equal(px_sessions_record(d, &one, 111, 20), 0);
    assert_int_equal(px_sessions_check(d, &one, &res), PX_SESSION_DUPLICATE);
    assert_int_equal(res, 111);
    px_request ten = rq(1, 10, 10);
    assert_int_equal(px_sessions_record(d, &ten, 10, 21), 0);
    assert_int_equal(px_sessions_check(d, &one, &res), PX_SESSION_FORGOTTEN);
    free(buf);
    px_sessions_destroy(d);
    px_sessions_destroy(t);
}

static void test_sessions_eviction(void **state)
{
    (void)state;
    px_sessions *t = px_sessions_create(3, 2);
    int32_t res;
    for (uint64_t c = 1; c <= 3; c++) {
        px_request q = rq(c, 1, 0);
        assert_int_equal(px_sessions_record(t, &q, (int32_t)c, c), 0);
    }
    /* touch client 1 so client 2 is the least recently used */
    px_request c1 = rq(1, 2, 0);
    assert_int_equal(px_sessions_record(t, &c1, 12, 4), 0);
    px_request c4 = rq(4, 1, 0);
    assert_int_equal(px_sessions_record(t, &c4, 4, 5), 0);
    px_request c2 = rq(2, 1, 0), c3 = rq(3, 1, 0), c1a = rq(1, 1, 0);
    assert_int_equal(px_sessions_check(t, &c2, &res), PX_SESSION_NEW);
    assert_int_equal(px_sessions_check(t, &c3, &res), PX_SESSION_DUPLICATE);
    assert_int_equal(px_sessions_check(t, &c1a, &res), PX_SESSION_DUPLICATE);
    assert_int_equal(res, 1);
    assert_int_equal(px_sessions_check(t, &c4, &res), PX_SESSION_DUPLICATE);
    /* many more clients than room: still bounded and consistent */
    for (uint64_t c = 10; c < 1000; c++) {
        px_request q = rq(c, 7, 0);
        assert_int_equal(px_sessions_record(t, &q, (int32_t)c, c), 0);
    }
    px_request last = rq(999, 7, 0), gone = rq(10, 7, 0);
    assert_int_equal(px_sessions_check(t, &last, &res), PX_SESSION_DUPLICATE);
    assert_int_equal(res, 999);
    assert_int_equal(px_sessions_check(t, &gone, &res), PX_SESSION_NEW);
    px_sessions_destroy(t);
}

static void test_sessions_codec(void **state)
{
    (void)state;
    px_sessions *t = px_sessions_create(8, 4);
    for (uint64_t c = 1; c <= 5; c++)
        for (uint64_t s = 1; s <= 3; s++) {
            px_request q = rq(c, s, 0);
            assert_int_equal(
                px_sessions_record(t, &q, (int32_t)(c * 100 + s), c * 10 + s),
                0);
        }
    int64_t need = px_sessions_encode(t, NULL, 0);
    assert_true(need > 12);
    uint8_t *buf = malloc((size_t)need);
    assert_int_equal(px_sessions_encode(t, buf, (uint64_t)need - 1), -ENOSPC);
    assert_int_equal(px_sessions_encode(t, buf, (uint64_t)need), need);
    px_sessions *d = px_sessions_create(8, 4);
    assert_int_equal(px_sessions_decode(d, buf, (uint64_t)need), 0);
    int32_t res;
    for (uint64_t c = 1; c <= 5; c++)
        for (uint64_t s = 1; s <= 3; s++) {
            px_request q = rq(c, s, 0);
            assert_int_equal(px_sessions_check(d, &q, &res),
                             PX_SESSION_DUPLICATE);
            assert_int_equal(res, (int32_t)(c * 100 + s));
        }
    /* re-encoding the decoded table gives the same bytes (LRU order) */
    uint8_t *buf2 = malloc((size_t)need);
    assert_int_equal(px_sessions_encode(d, buf2, (uint64_t)need), need);
    assert_memory_equal(buf, buf2, (size_t)need);
    /* every truncation and a few corruptions are rejected, table kept */
    for (int64_t l = 0; l < need; l++)
        assert_int_equal(px_sessions_decode(d, buf, (uint64_t)l), -EINVAL);
    buf[0] ^= 1;
    assert_int_equal(px_sessions_decode(d, buf, (uint64_t)need), -EINVAL);
    buf[0] ^= 1;
    /* second seq of the first client smaller than the first */
    uint8_t save = buf[12 + 40 + 12];
    buf[12 + 40 + 12] = 0;
    assert_int_equal(px_sessions_decode(d, buf, (uint64_t)need), -EINVAL);
    buf[12 + 40 + 12] = save;
    /* client count beyond max_clients */
    px_sessions *small = px_sessions_create(2, 4);
    assert_int_equal(px_sessions_decode(small, buf, (uint64_t)need), -EINVAL);
    px_request q = rq(1, 1, 0);
    assert_int_equal(px_sessions_check(d, &q, &res), PX_SESSION_DUPLICATE);
    /* pseudo-random garbage never crashes */
    uint64_t x = 12345;
    for (int round = 0; round < 2000; round++) {
        uint8_t g[64];
        for (size_t i = 0; i < sizeof(g); i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            g[i] = (uint8_t)(x >> 56);
        }
        put32(g, 0x53535850u);
        put32(g + 4, 1);
        put32(g + 8, (uint32_t)(x % 3));
        int rc = px_sessions_decode(small, g, (uint64_t)(x % 64));
        assert_true(rc == 0 || rc == -EINVAL);
    }
    px_sessions_destroy(small);
    free(buf);
    free(buf2);
    px_sessions_destroy(d);
    px_sessions_destroy(t);
}

/* ------------------------------------------------------------- msg copy */

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
        cmocka_unit_test(test_sessions_basic),
        cmocka_unit_test(test_sessions_stuck_request),
        cmocka_unit_test(test_sessions_eviction),
        cmocka_unit_test(test_sessions_codec),
        cmocka_unit_test(test_msg_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
