/*
 * test_net_wire_mount.c - the frames of client-only mounts
 * (net/wire_mount.c): round trips of every op, limits, and hostile input
 * (every truncation, every byte flipped, forged lengths and counts): a
 * decoder either refuses with the documented errno or returns a message
 * that encodes back to the same bytes; it never reads outside the buffer
 * (run under ASan).
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
#include "../../net/wire_mount.h"

static const wire_mount_meta META = { 7, 9, 1234567, 5, 1000, 1001, 0100644 };

static uint8_t *encode_req(const wire_mount_req *r, size_t *len)
{
    size_t cap = wire_mount_req_size(r);
    assert_true(cap > 0);
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    assert_int_equal(wire_encode_mount_req_into(r, b, cap, len), 0);
    assert_int_equal(*len, cap);
    return b;
}

static uint8_t *encode_msg(const wire_mount_msg *m, size_t *len)
{
    size_t cap = wire_mount_msg_size(m);
    assert_true(cap > 0);
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    assert_int_equal(wire_encode_mount_msg_into(m, b, cap, len), 0);
    assert_int_equal(*len, cap);
    return b;
}

/* Every truncation fails; every single-byte change either fails with a
 * documented errno or decodes to something that re-encodes to the
 * mutated bytes exactly (canonical). */
static void hostile_req(const uint8_t *frame, size_t len)
{
    wire_mount_req r;
    for (size_t k = 0; k < len; k++) {
        uint8_t *b = malloc(k ? k : 1);
        memcpy(b, frame, k);
        int rc = wire_decode_mount_req(b, k, &r);
        assert_true(rc == -EBADMSG || rc == -EPROTO || rc == -EMSGSIZE);
        free(b);
    }
    uint8_t *b = malloc(len);
    uint8_t *again = malloc(len);
    for (size_t i = 0; i < len; i++) {
        static const uint8_t flips[] = { 0x01, 0x80, 0xff };
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(b, frame, len);
            b[i] ^= flips[f];
            int rc = wire_decode_mount_req(b, len, &r);
            if (rc == 0) {
                size_t n = 0;
                assert_int_equal(wire_encode_mount_req_into(&r, again, len, &n), 0);
                assert_int_equal(n, len);
                assert_memory_equal(again, b, len);
            } else {
                assert_true(rc == -EBADMSG || rc == -EPROTO || rc == -EMSGSIZE);
            }
        }
    }
    free(b);
    free(again);
}

static void hostile_msg(const uint8_t *frame, size_t len)
{
    wire_mount_msg m;
    for (size_t k = 0; k < len; k++) {
        uint8_t *b = malloc(k ? k : 1);
        memcpy(b, frame, k);
        int rc = wire_decode_mount_msg(b, k, &m);
        assert_true(rc == -EBADMSG || rc == -EPROTO || rc == -EMSGSIZE);
        free(b);
    }
    uint8_t *b = malloc(len);
    uint8_t *again = malloc(len);
    for (size_t i = 0; i < len; i++) {
        static const uint8_t flips[] = { 0x01, 0x80, 0xff };
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(b, frame, len);
            b[i] ^= flips[f];
            int rc = wire_decode_mount_msg(b, len, &m);
            if (rc == 0) {
                size_t n = 0;
                assert_int_equal(wire_encode_mount_msg_into(&m, again, len, &n), 0);
                assert_int_equal(n, len);
                assert_memory_equal(again, b, len);
            } else {
                assert_true(rc == -EBADMSG || rc == -EPROTO || rc == -EMSGSIZE);
            }
        }
    }
    free(b);
    free(again);
}

static void test_req_round_trips(void **state)
{
    (void)state;
    static const uint8_t op[] = "an op's bytes";
    const wire_mount_req reqs[] = {
        { .op = WIRE_MOUNT_HELLO, .client_id = 42, .arg = 17 },
        { .op = WIRE_MOUNT_SUBMIT, .rid = 5, .client_id = 42, .arg = 3,
          .flags = WIRE_MOUNT_SUBMIT_ANSWERED, .len = sizeof op, .bytes = op },
        { .op = WIRE_MOUNT_BARRIER, .rid = 6 },
        { .op = WIRE_MOUNT_READ, .rid = 7, .arg = 99, .flags = 3, .len = 3,
          .bytes = (const uint8_t *)"a/b" },
        { .op = WIRE_MOUNT_LIST, .rid = 8, .flags = 2, .max = 1024 },
        { .op = WIRE_MOUNT_LIST, .rid = 9, .max = 1, .len = 1,
          .bytes = (const uint8_t *)"x" },
        { .op = WIRE_MOUNT_USAGE, .rid = 10, .arg = 4 },
        { .op = WIRE_MOUNT_STATUS, .rid = 11 },
        { .op = WIRE_MOUNT_BLOCK, .rid = 12, .arg = 1234 },
        { .op = WIRE_MOUNT_SNAPSHOT, .rid = 13 },
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        size_t len;
        uint8_t *b = encode_req(&reqs[i], &len);
        wire_mount_req d;
        assert_int_equal(wire_decode_mount_req(b, len, &d), 0);
        assert_int_equal(d.op, reqs[i].op);
        assert_int_equal(d.rid, reqs[i].rid);
        assert_int_equal(d.client_id, reqs[i].client_id);
        assert_int_equal(d.arg, reqs[i].arg);
        assert_int_equal(d.flags, reqs[i].flags);
        assert_int_equal(d.max, reqs[i].max);
        assert_int_equal(d.len, reqs[i].len);
        if (d.len)
            assert_memory_equal(d.bytes, reqs[i].bytes, d.len);
        hostile_req(b, len);
        free(b);
    }
}

static void test_msg_round_trips(void **state)
{
    (void)state;
    uint8_t page[2 * (2 + 3 + WIRE_MOUNT_META_BYTES)];
    uint8_t *p = page;
    wire_mount_put_record(&p, "abc", 3, &META);
    wire_mount_put_record(&p, "xyz", 3, &META);
    assert_int_equal((size_t)(p - page), sizeof page);
    const wire_mount_msg msgs[] = {
        { .op = WIRE_MOUNT_BEAT, .a = 10, .b = 10, .c = 2, .server = 3,
          .leader = 1, .flags = WIRE_MOUNT_BEAT_GAP },
        { .op = WIRE_MOUNT_CHANGED, .rid = 11, .meta = META, .len = 3,
          .bytes = (const uint8_t *)"a/b" },
        { .op = WIRE_MOUNT_DONE, .rid = 12, .result = -EEXIST },
        { .op = WIRE_MOUNT_ENTRY, .rid = 13, .meta = META, .len = 5,
          .bytes = (const uint8_t *)"hello" },
        { .op = WIRE_MOUNT_ENTRY, .rid = 14, .result = -ETIMEDOUT },
        { .op = WIRE_MOUNT_PAGE, .rid = 15, .flags = WIRE_MOUNT_PAGE_MORE,
          .n = 2, .len = sizeof page, .bytes = page },
        { .op = WIRE_MOUNT_PAGE, .rid = 16 },
        { .op = WIRE_MOUNT_COUNTS, .rid = 17, .a = 3, .b = 300 },
        { .op = WIRE_MOUNT_TEXT, .rid = 18, .len = 4,
          .bytes = (const uint8_t *)"{}\n\n" },
        { .op = WIRE_MOUNT_TEXT, .rid = 19, .result = -ENOENT },
    };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        size_t len;
        uint8_t *b = encode_msg(&msgs[i], &len);
        wire_mount_msg d;
        assert_int_equal(wire_decode_mount_msg(b, len, &d), 0);
        assert_int_equal(d.op, msgs[i].op);
        assert_int_equal(d.rid, msgs[i].rid);
        assert_int_equal(d.result, msgs[i].result);
        assert_int_equal(d.a, msgs[i].a);
        assert_int_equal(d.server, msgs[i].server);
        assert_int_equal(d.leader, msgs[i].leader);
        assert_int_equal(d.flags, msgs[i].flags);
        assert_memory_equal(&d.meta, &msgs[i].meta, sizeof d.meta);
        assert_int_equal(d.n, msgs[i].n);
        assert_int_equal(d.len, msgs[i].len);
        if (d.op == WIRE_MOUNT_PAGE && d.n) {
            const uint8_t *q = d.bytes;
            size_t left = d.len;
            const char *key;
            uint16_t kl;
            wire_mount_meta mm;
            wire_mount_get_record(&q, &left, &key, &kl, &mm);
            assert_int_equal(kl, 3);
            assert_memory_equal(key, "abc", 3);
            assert_memory_equal(&mm, &META, sizeof mm);
            wire_mount_get_record(&q, &left, &key, &kl, &mm);
            assert_memory_equal(key, "xyz", 3);
            assert_int_equal(left, 0);
        }
        hostile_msg(b, len);
        free(b);
    }
}

/* Limits and rules on the encoding side: what breaks a rule is -EINVAL,
 * what is over a limit -EMSGSIZE, a short buffer -ENOSPC. */
static void test_encode_refuses(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n;
    wire_mount_req r = { .op = 0 };
    assert_int_equal(wire_encode_mount_req_into(&r, buf, sizeof buf, &n), -EINVAL);
    r = (wire_mount_req){ .op = WIRE_MOUNT_SUBMIT, .rid = 0, .client_id = 1,
                          .len = 1, .bytes = buf };
    assert_int_equal(wire_encode_mount_req_into(&r, buf, sizeof buf, &n), -EINVAL);
    r.rid = 1;
    r.len = LIMIT_OP + 1;
    assert_int_equal(wire_encode_mount_req_into(&r, buf, sizeof buf, &n), -EMSGSIZE);
    r = (wire_mount_req){ .op = WIRE_MOUNT_READ, .rid = 1, .len = LIMIT_KEY + 1,
                          .bytes = buf };
    assert_int_equal(wire_encode_mount_req_into(&r, buf, sizeof buf, &n), -EMSGSIZE);
    r = (wire_mount_req){ .op = WIRE_MOUNT_LIST, .rid = 1, .max = 0 };
    assert_int_equal(wire_encode_mount_req_into(&r, buf, sizeof buf, &n), -EINVAL);
    r.max = WIRE_MOUNT_PAGE_MAX + 1;
    assert_int_equal(wire_encode_mount_req_into(&r, buf, sizeof buf, &n), -EMSGSIZE);
    r = (wire_mount_req){ .op = WIRE_MOUNT_HELLO, .client_id = 1 };
    assert_int_equal(wire_encode_mount_req_into(&r, buf, 10, &n), -ENOSPC);
    wire_mount_msg m = { .op = WIRE_MOUNT_DONE, .rid = 1, .result = 5 };
    assert_int_equal(wire_encode_mount_msg_into(&m, buf, sizeof buf, &n), -EINVAL);
    m = (wire_mount_msg){ .op = WIRE_MOUNT_PAGE, .n = 1, .len = 3,
                          .bytes = (const uint8_t *)"abc" };
    assert_int_equal(wire_encode_mount_msg_into(&m, buf, sizeof buf, &n), -EINVAL);
    m = (wire_mount_msg){ .op = WIRE_MOUNT_ENTRY, .len = LIMIT_VALUE + 1,
                          .bytes = buf };
    assert_int_equal(wire_encode_mount_msg_into(&m, buf, sizeof buf, &n), -EMSGSIZE);
}

/* Forged lengths: a declared len or count beyond what the frame holds is
 * refused without reading past the buffer. */
static void test_forged_lengths(void **state)
{
    (void)state;
    size_t len;
    wire_mount_req r = { .op = WIRE_MOUNT_READ, .rid = 1, .len = 3,
                         .bytes = (const uint8_t *)"abc" };
    uint8_t *b = encode_req(&r, &len);
    wire_mount_req d;
    /* len field at header + 33 */
    le_put32(b + WIRE_HEADER_BYTES + 33, 0xffffffffu);
    assert_int_equal(wire_decode_mount_req(b, len, &d), -EMSGSIZE);
    le_put32(b + WIRE_HEADER_BYTES + 33, 4);
    assert_int_equal(wire_decode_mount_req(b, len, &d), -EBADMSG);
    /* a REQ frame is not a MSG frame */
    le_put32(b + WIRE_HEADER_BYTES + 33, 3);
    wire_mount_msg dm;
    assert_int_equal(wire_decode_mount_msg(b, len, &dm), -EPROTO);
    free(b);

    uint8_t page[2 + 3 + WIRE_MOUNT_META_BYTES];
    uint8_t *p = page;
    wire_mount_put_record(&p, "abc", 3, &META);
    wire_mount_msg m = { .op = WIRE_MOUNT_PAGE, .n = 1, .len = sizeof page,
                         .bytes = page };
    b = encode_msg(&m, &len);
    /* n at header + 89: more records than bytes */
    le_put32(b + WIRE_HEADER_BYTES + 89, 2);
    assert_int_equal(wire_decode_mount_msg(b, len, &dm), -EBADMSG);
    le_put32(b + WIRE_HEADER_BYTES + 89, 0);
    assert_int_equal(wire_decode_mount_msg(b, len, &dm), -EBADMSG);
    le_put32(b + WIRE_HEADER_BYTES + 89, WIRE_MOUNT_PAGE_MAX + 1);
    assert_int_equal(wire_decode_mount_msg(b, len, &dm), -EMSGSIZE);
    le_put32(b + WIRE_HEADER_BYTES + 89, 1);
    /* the record's key length beyond the record */
    le_put16(b + WIRE_HEADER_BYTES + WIRE_MOUNT_MSG_FIXED, 0xffff);
    assert_int_equal(wire_decode_mount_msg(b, len, &dm), -EBADMSG);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_req_round_trips),
        cmocka_unit_test(test_msg_round_trips),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_forged_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
