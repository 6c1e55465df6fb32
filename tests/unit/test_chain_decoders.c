/*
 * test_chain_decoders.c - regressions found by fuzzing the decoders of
 * chain/ (tests/fuzz): each test is one input that once crashed, leaked
 * or misbehaved, cut down to what shows the fault.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../chain/chain.h"
#include "../../chain/kv.h"
#include "tmpdir.h"

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A snapshot of `payload` with correct checksums whose header claims
 * `claimed` payload bytes. */
static uint8_t *snapshot_claiming(const uint8_t *payload, size_t len,
                                  uint64_t claimed, size_t *out_len)
{
    uLongf comp = compressBound((uLong)len);
    uint8_t *s = malloc(48 + comp);
    assert_non_null(s);
    assert_int_equal(compress2(s + 48, &comp, payload, (uLong)len, 1), Z_OK);
    memcpy(s, "pxkvsnap", 8);
    put_le(s + 8, 2, 4);        /* SNAP_VERSION */
    put_le(s + 12, 0, 4);
    put_le(s + 16, 9, 8);
    put_le(s + 24, claimed, 8);
    put_le(s + 32, comp, 8);
    put_le(s + 40, crc32(0, s + 48, (uInt)comp), 4);
    put_le(s + 44, crc32(0, s, 44), 4);
    *out_len = 48 + comp;
    return s;
}

/* An empty map's payload: no keys, an empty session table. */
static void empty_payload(uint8_t p[28])
{
    put_le(p, 0, 8);          /* keys */
    put_le(p + 8, 12, 8);     /* session table bytes */
    put_le(p + 16, 0x53535850u, 4);
    put_le(p + 20, 2, 4);
    put_le(p + 24, 0, 4);
}

/* fuzz_snapshot: a header claiming a huge payload made the decoder
 * allocate that much before inflating a few bytes (out of memory, or a
 * 512 GiB request).  Now the buffer grows with what really inflates. */
static void test_snapshot_claimed_length_is_not_allocated(void **state)
{
    (void)state;
    uint8_t payload[28];
    empty_payload(payload);
    kv *t = kv_create();
    assert_non_null(t);
    uint64_t claims[] = { 1ull << 39, (1ull << 40) - 1, 1ull << 30, 29, 27 };
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        size_t len;
        uint8_t *s = snapshot_claiming(payload, sizeof payload, claims[i],
                                       &len);
        assert_int_equal(kv_snapshot_decode(t, s, len), -EINVAL);
        free(s);
    }
    /* the truth still decodes */
    size_t len;
    uint8_t *s = snapshot_claiming(payload, sizeof payload, sizeof payload,
                                   &len);
    assert_int_equal(kv_snapshot_decode(t, s, len), 0);
    assert_int_equal(kv_applied_index(t), 9);
    free(s);
    kv_destroy(t);
}

/* fuzz_acceptor (and a node shut down before it accepted anything): a
 * forget with no accepted slot at all moved zero entries from a NULL
 * array, undefined behaviour that UBSan aborts on (`make asan`). */
static void test_acceptor_forget_with_nothing_accepted(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage damage;
    assert_int_equal(acceptor_open(dir, &a, &st, &damage), 0);
    assert_int_equal(st.n_accepts, 0);
    assert_int_equal(acceptor_compact(a, 0), 0);      /* the shutdown step */
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    /* replaying that log meets the same forget record */
    assert_int_equal(acceptor_open(dir, &a, &st, &damage), 0);
    assert_int_equal(st.n_accepts, 0);
    assert_int_equal(acceptor_compact(a, UINT64_MAX), 0);
    acceptor_close(a);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acceptor_forget_with_nothing_accepted),
        cmocka_unit_test(test_snapshot_claimed_length_is_not_allocated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
