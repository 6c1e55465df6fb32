/*
 * kvbuild.h - building committed entries for the unit tests of chain/:
 * a batch of requests (px_batch layout: u32 count, then per request
 * client id, seq, ack seq, op length and op bytes) and one-op helpers.
 * Include after cmocka.h.
 */
#ifndef PAXOSFS_TEST_KVBUILD_H
#define PAXOSFS_TEST_KVBUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../chain/kv.h"

typedef struct kvb_batch {
    uint8_t *buf;
    uint32_t len, cap, count;
} kvb_batch;

static inline void kvb_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void kvb_init(kvb_batch *b)
{
    b->cap = 1024;
    b->buf = malloc(b->cap);
    assert_non_null(b->buf);
    b->len = 4;
    b->count = 0;
    kvb_le(b->buf, 0, 4);
}

static inline void kvb_add(kvb_batch *b, uint64_t client, uint64_t seq,
                           const uint8_t *op, uint32_t op_len)
{
    uint32_t need = b->len + 28 + op_len;
    if (need > b->cap) {
        while (b->cap < need)
            b->cap *= 2;
        b->buf = realloc(b->buf, b->cap);
        assert_non_null(b->buf);
    }
    uint8_t *p = b->buf + b->len;
    kvb_le(p, client, 8);
    kvb_le(p + 8, seq, 8);
    kvb_le(p + 16, seq, 8);
    kvb_le(p + 24, op_len, 4);
    if (op_len)
        memcpy(p + 28, op, op_len);
    b->len = need;
    b->count++;
    kvb_le(b->buf, b->count, 4);
}

/* Ops, encoded into a caller buffer; return the length. */
static inline uint32_t kvb_put(uint8_t *buf, size_t cap, const char *key,
                               const void *val, uint32_t len)
{
    int64_t n = kv_op_encode_put(buf, cap, key, strlen(key), val, len);
    assert_true(n > 0);
    return (uint32_t)n;
}

static inline uint32_t kvb_del(uint8_t *buf, size_t cap, const char *key)
{
    int64_t n = kv_op_encode_del(buf, cap, key, strlen(key));
    assert_true(n > 0);
    return (uint32_t)n;
}

static inline uint32_t kvb_rename(uint8_t *buf, size_t cap, const char *from,
                                  const char *to)
{
    int64_t n = kv_op_encode_rename(buf, cap, from, strlen(from), to,
                                    strlen(to));
    assert_true(n > 0);
    return (uint32_t)n;
}

static inline uint32_t kvb_append(uint8_t *buf, size_t cap, const char *key,
                                  const void *val, uint32_t len)
{
    int64_t n = kv_op_encode_append(buf, cap, key, strlen(key), val, len);
    assert_true(n > 0);
    return (uint32_t)n;
}

/* Apply the batch as entry applied+1 at time_ms (0 on success). */
static inline int kvb_apply(kv *s, kvb_batch *b, uint64_t time_ms)
{
    px_entry e = { .slot = kv_applied_index(s) + 1, .time_ms = time_ms,
                   .kind = PX_ENTRY_BATCH, .len = b->len, .data = b->buf };
    return kv_apply_entry(s, &e, NULL, NULL);
}

static inline void kvb_free(kvb_batch *b)
{
    free(b->buf);
    b->buf = NULL;
}

/* Apply one op as its own entry (client 7, seq from *seq). */
static inline void kvb_apply1(kv *s, uint64_t *seq, uint64_t time_ms,
                              const uint8_t *op, uint32_t op_len)
{
    kvb_batch b;
    kvb_init(&b);
    kvb_add(&b, 7, (*seq)++, op, op_len);
    assert_int_equal(kvb_apply(s, &b, time_ms), 0);
    kvb_free(&b);
}

/* Apply a no-op entry (advances the index only). */
static inline void kvb_noop(kv *s)
{
    px_entry e = { .slot = kv_applied_index(s) + 1, .kind = PX_ENTRY_NOOP };
    assert_int_equal(kv_apply_entry(s, &e, NULL, NULL), 0);
}

#endif
