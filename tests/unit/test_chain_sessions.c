/*
 * test_chain_sessions.c - the exactly-once session table of the state
 * machine (chain/sessions.c): new, duplicate and forgotten requests,
 * stuck retries, eviction, and its encoding.
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
#include "../../chain/sessions.h"

/* ------------------------------------------------------------ sessions */

static px_request rq(uint64_t client, uint64_t seq, uint64_t ack)
{
    return (px_request){.client_id = client, .seq = seq, .ack_seq = ack};
}

static void test_sessions_basic(void **state)
{
    (void)state;
    kv_sessions *t = kv_sessions_create(4, 3);
    assert_non_null(t);
    int32_t res = 0;
    px_request a1 = rq(1, 1, 0);
    assert_int_equal(kv_sessions_check(t, &a1, &res), KV_SESSION_NEW);
    assert_int_equal(kv_sessions_record(t, &a1, 11, 1), 0);
    assert_int_equal(kv_sessions_check(t, &a1, &res), KV_SESSION_DUPLICATE);
    assert_int_equal(res, 11);
    /* out-of-order seqs are both kept */
    px_request a3 = rq(1, 3, 0), a2 = rq(1, 2, 0);
    assert_int_equal(kv_sessions_record(t, &a3, 33, 2), 0);
    assert_int_equal(kv_sessions_check(t, &a2, &res), KV_SESSION_NEW);
    assert_int_equal(kv_sessions_record(t, &a2, 22, 3), 0);
    assert_int_equal(kv_sessions_check(t, &a3, &res), KV_SESSION_DUPLICATE);
    assert_int_equal(res, 33);
    /* ack_seq 3 forgets seqs 1 and 2 */
    px_request a4 = rq(1, 4, 3);
    assert_int_equal(kv_sessions_record(t, &a4, 44, 4), 0);
    assert_int_equal(kv_sessions_check(t, &a1, &res), KV_SESSION_FORGOTTEN);
    assert_int_equal(kv_sessions_check(t, &a2, &res), KV_SESSION_FORGOTTEN);
    assert_int_equal(kv_sessions_check(t, &a3, &res), KV_SESSION_DUPLICATE);
    /* max_per_client = 3: recording 5 and 6 drops 3, which is forgotten,
     * never reported as new again */
    px_request a5 = rq(1, 5, 0), a6 = rq(1, 6, 0);
    assert_int_equal(kv_sessions_record(t, &a5, 55, 5), 0);
    assert_int_equal(kv_sessions_record(t, &a6, 66, 6), 0);
    assert_int_equal(kv_sessions_check(t, &a3, &res), KV_SESSION_FORGOTTEN);
    assert_int_equal(kv_sessions_check(t, &a6, &res), KV_SESSION_DUPLICATE);
    assert_int_equal(res, 66);
    assert_int_equal(kv_sessions_check(NULL, &a6, &res), -EINVAL);
    kv_sessions_destroy(t);
}

/* A request still in flight (a stuck retry) while newer ones of the same
 * client are applied and their results dropped for space stays NEW: only
 * applied requests may be FORGOTTEN. */
static void test_sessions_stuck_request(void **state)
{
    (void)state;
    kv_sessions *t = kv_sessions_create(4, 3);
    int32_t res;
    for (uint64_t s = 2; s <= 9; s++) {
        px_request q = rq(1, s, 1); /* ack_seq 1: seq 1 unanswered */
        assert_int_equal(kv_sessions_record(t, &q, (int32_t)s, s), 0);
    }
    px_request one = rq(1, 1, 1), two = rq(1, 2, 1), nine = rq(1, 9, 1);
    assert_int_equal(kv_sessions_check(t, &one, &res), KV_SESSION_NEW);
    assert_int_equal(kv_sessions_check(t, &two, &res), KV_SESSION_FORGOTTEN);
    assert_int_equal(kv_sessions_check(t, &nine, &res), KV_SESSION_DUPLICATE);
    assert_int_equal(res, 9);
    /* the gap survives a snapshot */
    int64_t need = kv_sessions_encode(t, NULL, 0);
    uint8_t *buf = malloc((size_t)need);
    assert_int_equal(kv_sessions_encode(t, buf, (uint64_t)need), need);
    kv_sessions *d = kv_sessions_create(4, 3);
    assert_int_equal(kv_sessions_decode(d, buf, (uint64_t)need), 0);
    assert_int_equal(kv_sessions_check(d, &one, &res), KV_SESSION_NEW);
    assert_int_equal(kv_sessions_check(d, &two, &res), KV_SESSION_FORGOTTEN);
    /* applied at last: now a duplicate */
    assert_int_equal(kv_sessions_record(d, &one, 111, 20), 0);
    assert_int_equal(kv_sessions_check(d, &one, &res), KV_SESSION_DUPLICATE);
    assert_int_equal(res, 111);
    px_request ten = rq(1, 10, 10);
    assert_int_equal(kv_sessions_record(d, &ten, 10, 21), 0);
    assert_int_equal(kv_sessions_check(d, &one, &res), KV_SESSION_FORGOTTEN);
    free(buf);
    kv_sessions_destroy(d);
    kv_sessions_destroy(t);
}

static void test_sessions_eviction(void **state)
{
    (void)state;
    kv_sessions *t = kv_sessions_create(3, 2);
    int32_t res;
    for (uint64_t c = 1; c <= 3; c++) {
        px_request q = rq(c, 1, 0);
        assert_int_equal(kv_sessions_record(t, &q, (int32_t)c, c), 0);
    }
    /* touch client 1 so client 2 is the least recently used */
    px_request c1 = rq(1, 2, 0);
    assert_int_equal(kv_sessions_record(t, &c1, 12, 4), 0);
    px_request c4 = rq(4, 1, 0);
    assert_int_equal(kv_sessions_record(t, &c4, 4, 5), 0);
    px_request c2 = rq(2, 1, 0), c3 = rq(3, 1, 0), c1a = rq(1, 1, 0);
    assert_int_equal(kv_sessions_check(t, &c2, &res), KV_SESSION_NEW);
    assert_int_equal(kv_sessions_check(t, &c3, &res), KV_SESSION_DUPLICATE);
    assert_int_equal(kv_sessions_check(t, &c1a, &res), KV_SESSION_DUPLICATE);
    assert_int_equal(res, 1);
    assert_int_equal(kv_sessions_check(t, &c4, &res), KV_SESSION_DUPLICATE);
    /* many more clients than room: still bounded and consistent */
    for (uint64_t c = 10; c < 1000; c++) {
        px_request q = rq(c, 7, 0);
        assert_int_equal(kv_sessions_record(t, &q, (int32_t)c, c), 0);
    }
    px_request last = rq(999, 7, 0), gone = rq(10, 7, 0);
    assert_int_equal(kv_sessions_check(t, &last, &res), KV_SESSION_DUPLICATE);
    assert_int_equal(res, 999);
    assert_int_equal(kv_sessions_check(t, &gone, &res), KV_SESSION_NEW);
    kv_sessions_destroy(t);
}

static void test_sessions_codec(void **state)
{
    (void)state;
    kv_sessions *t = kv_sessions_create(8, 4);
    for (uint64_t c = 1; c <= 5; c++)
        for (uint64_t s = 1; s <= 3; s++) {
            px_request q = rq(c, s, 0);
            assert_int_equal(
                kv_sessions_record(t, &q, (int32_t)(c * 100 + s), c * 10 + s),
                0);
        }
    int64_t need = kv_sessions_encode(t, NULL, 0);
    assert_true(need > 12);
    uint8_t *buf = malloc((size_t)need);
    assert_int_equal(kv_sessions_encode(t, buf, (uint64_t)need - 1), -ENOSPC);
    assert_int_equal(kv_sessions_encode(t, buf, (uint64_t)need), need);
    kv_sessions *d = kv_sessions_create(8, 4);
    assert_int_equal(kv_sessions_decode(d, buf, (uint64_t)need), 0);
    int32_t res;
    for (uint64_t c = 1; c <= 5; c++)
        for (uint64_t s = 1; s <= 3; s++) {
            px_request q = rq(c, s, 0);
            assert_int_equal(kv_sessions_check(d, &q, &res),
                             KV_SESSION_DUPLICATE);
            assert_int_equal(res, (int32_t)(c * 100 + s));
        }
    /* re-encoding the decoded table gives the same bytes (LRU order) */
    uint8_t *buf2 = malloc((size_t)need);
    assert_int_equal(kv_sessions_encode(d, buf2, (uint64_t)need), need);
    assert_memory_equal(buf, buf2, (size_t)need);
    /* every truncation and a few corruptions are rejected, table kept */
    for (int64_t l = 0; l < need; l++)
        assert_int_equal(kv_sessions_decode(d, buf, (uint64_t)l), -EINVAL);
    buf[0] ^= 1;
    assert_int_equal(kv_sessions_decode(d, buf, (uint64_t)need), -EINVAL);
    buf[0] ^= 1;
    /* second seq of the first client smaller than the first */
    uint8_t save = buf[12 + 40 + 12];
    buf[12 + 40 + 12] = 0;
    assert_int_equal(kv_sessions_decode(d, buf, (uint64_t)need), -EINVAL);
    buf[12 + 40 + 12] = save;
    /* client count beyond max_clients */
    kv_sessions *small = kv_sessions_create(2, 4);
    assert_int_equal(kv_sessions_decode(small, buf, (uint64_t)need), -EINVAL);
    px_request q = rq(1, 1, 0);
    assert_int_equal(kv_sessions_check(d, &q, &res), KV_SESSION_DUPLICATE);
    /* pseudo-random garbage never crashes */
    uint64_t x = 12345;
    for (int round = 0; round < 2000; round++) {
        uint8_t g[64];
        for (size_t i = 0; i < sizeof(g); i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            g[i] = (uint8_t)(x >> 56);
        }
        le_put32(g, 0x53535850u);
        le_put32(g + 4, 1);
        le_put32(g + 8, (uint32_t)(x % 3));
        int rc = kv_sessions_decode(small, g, (uint64_t)(x % 64));
        assert_true(rc == 0 || rc == -EINVAL);
    }
    kv_sessions_destroy(small);
    free(buf);
    free(buf2);
    kv_sessions_destroy(d);
    kv_sessions_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sessions_basic),
        cmocka_unit_test(test_sessions_stuck_request),
        cmocka_unit_test(test_sessions_eviction),
        cmocka_unit_test(test_sessions_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
