/*
 * test_chain_digest.c - the state digest and frozen views of the
 * key-value state machine (chain/kv.h):
 *   - equal states reached by different histories (insertion order,
 *     deletions, a snapshot round trip) have equal digests;
 *   - any single change of a key, a value, its metadata, or a key more or
 *     less gives another digest;
 *   - the incremental digest equals a recomputation after random ops;
 *   - a frozen view keeps the state of its index while entries are
 *     applied (sequentially and from another thread), and nodes it kept
 *     are reclaimed after it is thawed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../chain/kv.h"
#include "kvbuild.h"

static uint64_t seq = 1;

static void digest_of(kv *s, uint8_t out[KV_DIGEST_BYTES])
{
    uint8_t again[KV_DIGEST_BYTES];
    kv_digest(s, out);
    assert_int_equal(kv_digest_recompute(s, again), 0);
    assert_memory_equal(out, again, KV_DIGEST_BYTES);
}

static void put1(kv *s, const char *key, const char *val, uint64_t t)
{
    uint8_t op[512];
    uint32_t n = kvb_put(op, sizeof op, key, val, (uint32_t)strlen(val));
    kvb_apply1(s, &seq, t, op, n);
}

static void del1(kv *s, const char *key)
{
    uint8_t op[512];
    kvb_apply1(s, &seq, 0, op, kvb_del(op, sizeof op, key));
}

/* Keys k0..k(n-1) in one batch at slot `slot`, in the order `order`. */
static void put_batch(kv *s, uint32_t n, const uint32_t *order)
{
    kvb_batch b;
    kvb_init(&b);
    for (uint32_t i = 0; i < n; i++) {
        char key[32], val[64];
        uint32_t k = order ? order[i] : i;
        snprintf(key, sizeof key, "k%u", k);
        snprintf(val, sizeof val, "value of %u", k);
        uint8_t op[256];
        uint32_t len = kvb_put(op, sizeof op, key, val, (uint32_t)strlen(val));
        kvb_add(&b, 9, seq++, op, len);
    }
    assert_int_equal(kvb_apply(s, &b, 1000), 0);
    kvb_free(&b);
}

static void test_empty_digest_is_zero(void **state)
{
    (void)state;
    kv *s = kv_create();
    uint8_t d[KV_DIGEST_BYTES], zero[KV_DIGEST_BYTES] = { 0 };
    digest_of(s, d);
    assert_memory_equal(d, zero, KV_DIGEST_BYTES);
    put1(s, "a", "1", 5);
    del1(s, "a");
    digest_of(s, d);
    assert_memory_equal(d, zero, KV_DIGEST_BYTES);
    kv_destroy(s);
}

/* Same final state, different histories: the digest does not depend on
 * insertion order, deletions on the way, table growth, or how the state
 * was built (applied entries or a snapshot). */
static void test_equal_states_equal_digests(void **state)
{
    (void)state;
    enum { N = 2000 };
    kv *a = kv_create(), *b = kv_create();

    /* a: keys in a batch, then the odd ones deleted in ascending order */
    put_batch(a, N, NULL);
    kvb_batch x;
    kvb_init(&x);
    for (uint32_t i = 1; i < N; i += 2) {
        char key[32];
        uint8_t op[64];
        snprintf(key, sizeof key, "k%u", i);
        kvb_add(&x, 9, seq++, op, kvb_del(op, sizeof op, key));
    }
    assert_int_equal(kvb_apply(a, &x, 2000), 0);
    kvb_free(&x);

    /* b: the same batch (same identities), the odd ones deleted in
     * descending order, and a no-op entry more */
    put_batch(b, N, NULL);
    kvb_init(&x);
    for (int i = N - 1; i >= 1; i -= 2) {
        char key[32];
        uint8_t op[64];
        snprintf(key, sizeof key, "k%d", i);
        kvb_add(&x, 9, seq++, op, kvb_del(op, sizeof op, key));
    }
    assert_int_equal(kvb_apply(b, &x, 2000), 0);
    kvb_free(&x);
    kvb_noop(b);

    uint8_t da[KV_DIGEST_BYTES], db[KV_DIGEST_BYTES], dc[KV_DIGEST_BYTES];
    digest_of(a, da);
    digest_of(b, db);
    assert_memory_equal(da, db, KV_DIGEST_BYTES);

    /* c: the state of a, built from its snapshot (keys inserted in
     * ascending order into a fresh table) */
    uint8_t *snap;
    size_t len;
    assert_int_equal(kv_snapshot_encode(a, &snap, &len), 0);
    kv *c = kv_create();
    put1(c, "junk", "to be replaced", 1);
    assert_int_equal(kv_snapshot_decode(c, snap, len), 0);
    free(snap);
    digest_of(c, dc);
    assert_memory_equal(da, dc, KV_DIGEST_BYTES);
    kv_destroy(a);
    kv_destroy(b);
    kv_destroy(c);
}

/* Every single difference shows. */
static void test_any_change_changes_the_digest(void **state)
{
    (void)state;
    kv *s = kv_create();
    for (int i = 0; i < 50; i++) {
        char key[16], val[32];
        snprintf(key, sizeof key, "key%d", i);
        snprintf(val, sizeof val, "v%d", i);
        put1(s, key, val, 100);
    }
    uint8_t base[KV_DIGEST_BYTES], d[KV_DIGEST_BYTES];
    uint8_t seen[8][KV_DIGEST_BYTES];
    int n_seen = 0;
    digest_of(s, base);
    memcpy(seen[n_seen++], base, KV_DIGEST_BYTES);

    /* changes, each undone afterwards where it can be */
    put1(s, "key7", "v7", 100);              /* same bytes, new version */
    digest_of(s, d);
    memcpy(seen[n_seen++], d, KV_DIGEST_BYTES);
    put1(s, "key8", "v9", 100);              /* another value */
    digest_of(s, d);
    memcpy(seen[n_seen++], d, KV_DIGEST_BYTES);
    put1(s, "extra", "", 100);               /* one key more, empty */
    digest_of(s, d);
    memcpy(seen[n_seen++], d, KV_DIGEST_BYTES);
    del1(s, "extra");
    del1(s, "key3");                         /* one key less */
    digest_of(s, d);
    memcpy(seen[n_seen++], d, KV_DIGEST_BYTES);
    uint8_t op[256];
    kvb_apply1(s, &seq, 0, op, kvb_rename(op, sizeof op, "key4", "key4x"));
    digest_of(s, d);
    memcpy(seen[n_seen++], d, KV_DIGEST_BYTES);
    kvb_apply1(s, &seq, 0, op, kvb_append(op, sizeof op, "key5", "+", 1));
    digest_of(s, d);
    memcpy(seen[n_seen++], d, KV_DIGEST_BYTES);
    for (int i = 0; i < n_seen; i++)
        for (int j = i + 1; j < n_seen; j++)
            assert_memory_not_equal(seen[i], seen[j], KV_DIGEST_BYTES);

    /* only the mtime differs: two maps with the same op at other times */
    kv *p = kv_create(), *q = kv_create();
    put1(p, "k", "v", 1);
    put1(q, "k", "v", 2);
    uint8_t dp[KV_DIGEST_BYTES], dq[KV_DIGEST_BYTES];
    digest_of(p, dp);
    digest_of(q, dq);
    assert_memory_not_equal(dp, dq, KV_DIGEST_BYTES);
    kv_destroy(p);
    kv_destroy(q);
    kv_destroy(s);
}

/* Random ops: after each entry the kept digest equals a recomputation. */
static void test_incremental_equals_recompute(void **state)
{
    (void)state;
    kv *s = kv_create();
    uint64_t r = 88172645463325252ull;
    for (int round = 0; round < 400; round++) {
        kvb_batch b;
        kvb_init(&b);
        int ops = 1 + (int)(r % 8);
        for (int i = 0; i < ops; i++) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            char key[16], key2[16], val[64];
            snprintf(key, sizeof key, "k%u", (unsigned)(r % 97));
            snprintf(key2, sizeof key2, "k%u", (unsigned)((r >> 20) % 97));
            snprintf(val, sizeof val, "%llu", (unsigned long long)(r >> 8));
            uint8_t op[256];
            uint32_t n;
            switch ((r >> 40) % 4) {
            case 0:
                n = kvb_put(op, sizeof op, key, val, (uint32_t)strlen(val));
                break;
            case 1:
                n = kvb_del(op, sizeof op, key);
                break;
            case 2:
                n = kvb_append(op, sizeof op, key, val, (uint32_t)strlen(val));
                break;
            default:
                n = kvb_rename(op, sizeof op, key, key2);
                break;
            }
            kvb_add(&b, 3, seq++, op, n);
        }
        assert_int_equal(kvb_apply(s, &b, (uint64_t)round), 0);
        kvb_free(&b);
        uint8_t d[KV_DIGEST_BYTES];
        digest_of(s, d);
    }
    kv_destroy(s);
}

/* ----------------------------------------------------------- views */

typedef struct rec {
    char key[64];
    size_t key_len;
    const kv_value *val;   /* referenced */
} rec;

typedef struct recs {
    rec *r;
    size_t n, cap;
} recs;

static int collect(void *arg, const char *key, size_t key_len,
                   const kv_value *v)
{
    recs *rs = arg;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 64;
        rs->r = realloc(rs->r, rs->cap * sizeof *rs->r);
        assert_non_null(rs->r);
    }
    rec *x = &rs->r[rs->n++];
    assert_true(key_len < sizeof x->key);
    memcpy(x->key, key, key_len);
    x->key_len = key_len;
    kv_value_ref(v);
    x->val = v;
    return 0;
}

static void recs_free(recs *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        kv_value_unref(rs->r[i].val);
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

/* Read the whole view into *out. */
static void read_view(kv_view *v, recs *out)
{
    const char *key;
    size_t klen;
    const kv_value *val;
    kv_view_rewind(v);
    while (kv_view_next(v, &key, &klen, &val) == 1)
        collect(out, key, klen, val);
}

static void same_recs(const recs *a, const recs *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->r[i].key_len, b->r[i].key_len);
        assert_memory_equal(a->r[i].key, b->r[i].key, a->r[i].key_len);
        const kv_value *x = a->r[i].val, *y = b->r[i].val;
        assert_int_equal(x->len, y->len);
        assert_int_equal(x->version, y->version);
        assert_int_equal(x->mtime_ms, y->mtime_ms);
        assert_int_equal(x->ident, y->ident);
        assert_memory_equal(x->data, y->data, x->len);
    }
}

/* One entry of mixed changes touching the keys a view holds. */
static void churn(kv *s, uint64_t *r, int ops)
{
    kvb_batch b;
    kvb_init(&b);
    for (int i = 0; i < ops; i++) {
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        char key[16], key2[16], val[64];
        snprintf(key, sizeof key, "k%u", (unsigned)(*r % 300));
        snprintf(key2, sizeof key2, "k%u", (unsigned)((*r >> 20) % 300));
        snprintf(val, sizeof val, "changed %llu", (unsigned long long)*r);
        uint8_t op[256];
        uint32_t n;
        switch ((*r >> 40) % 4) {
        case 0:
            n = kvb_put(op, sizeof op, key, val, (uint32_t)strlen(val));
            break;
        case 1:
            n = kvb_del(op, sizeof op, key);
            break;
        case 2:
            n = kvb_append(op, sizeof op, key, "+", 1);
            break;
        default:
            n = kvb_rename(op, sizeof op, key, key2);
            break;
        }
        kvb_add(&b, 5, seq++, op, n);
    }
    assert_int_equal(kvb_apply(s, &b, 7), 0);
    kvb_free(&b);
}

static void test_view_keeps_its_state(void **state)
{
    (void)state;
    kv *s = kv_create();
    put_batch(s, 200, NULL);
    uint64_t r = 12345;
    churn(s, &r, 50);

    recs before = { 0 }, seen = { 0 }, after = { 0 }, now = { 0 };
    kv_scan(s, "", 0, collect, &before);
    uint8_t d0[KV_DIGEST_BYTES], dv[KV_DIGEST_BYTES];
    kv_digest(s, d0);
    uint64_t idx = kv_applied_index(s);

    kv_view *v;
    assert_int_equal(kv_freeze(s, &v), 0);
    kv_view *v2;
    assert_int_equal(kv_freeze(s, &v2), -EBUSY);
    kv_view_digest(v, dv);
    assert_memory_equal(d0, dv, KV_DIGEST_BYTES);
    assert_int_equal(kv_view_index(v), idx);
    assert_int_equal(kv_view_count(v), before.n);
    size_t slen;
    assert_non_null(kv_view_sessions(v, &slen));
    assert_true(slen >= 12);

    /* the view, before and after many changes, reads the same */
    read_view(v, &seen);
    same_recs(&before, &seen);
    recs_free(&seen);
    for (int i = 0; i < 100; i++)
        churn(s, &r, 20);
    read_view(v, &seen);
    same_recs(&before, &seen);
    assert_int_equal(kv_view_index(v), idx);

    /* the live state is right: equal to a map that applied the same
     * entries without a view (digest recomputed from its records) */
    uint8_t d[KV_DIGEST_BYTES];
    digest_of(s, d);
    kv_scan(s, "", 0, collect, &now);
    assert_int_equal(now.n, kv_count(s));
    assert_true(kv_dead_nodes(s) > 0);

    kv_thaw(s, v);
    /* kept nodes go away with the next entries (or kv_reclaim) */
    churn(s, &r, 1);
    kv_reclaim(s, SIZE_MAX);
    assert_int_equal(kv_dead_nodes(s), 0);
    kv_scan(s, "", 0, collect, &after);
    assert_int_equal(after.n, kv_count(s));
    digest_of(s, d);

    /* a second view after the first */
    assert_int_equal(kv_freeze(s, &v), 0);
    churn(s, &r, 30);
    recs second = { 0 };
    read_view(v, &second);
    same_recs(&after, &second);
    kv_thaw(s, v);
    recs_free(&second);

    recs_free(&before);
    recs_free(&seen);
    recs_free(&after);
    recs_free(&now);
    kv_destroy(s);
}

/* The same state applied with and without a view out ends equal. */
static void test_view_does_not_change_results(void **state)
{
    (void)state;
    kv *a = kv_create(), *b = kv_create();
    put_batch(a, 300, NULL);
    put_batch(b, 300, NULL);
    uint64_t ra = 99, rb = 99;
    kv_view *v;
    assert_int_equal(kv_freeze(b, &v), 0);
    for (int i = 0; i < 200; i++) {
        churn(a, &ra, 10);
        churn(b, &rb, 10);
        if (i == 120) {      /* thaw and freeze again halfway */
            kv_thaw(b, v);
            assert_int_equal(kv_freeze(b, &v), 0);
        }
    }
    uint8_t da[KV_DIGEST_BYTES], db[KV_DIGEST_BYTES];
    digest_of(a, da);
    digest_of(b, db);
    assert_memory_equal(da, db, KV_DIGEST_BYTES);
    recs x = { 0 }, y = { 0 };
    kv_scan(a, "", 0, collect, &x);
    kv_scan(b, "", 0, collect, &y);
    same_recs(&x, &y);
    /* a snapshot of a frozen map is refused: it would swap the nodes out
     * from under the view */
    uint8_t *snap;
    size_t len;
    assert_int_equal(kv_snapshot_encode(a, &snap, &len), 0);
    assert_int_equal(kv_snapshot_decode(b, snap, len), -EBUSY);
    free(snap);
    kv_thaw(b, v);
    recs_free(&x);
    recs_free(&y);
    kv_destroy(a);
    kv_destroy(b);
}

/* A reader thread walks the view while this thread applies entries. */
typedef struct reader_arg {
    kv_view *v;
    recs got;
    int rounds;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *a = p;
    for (int i = 0; i < a->rounds; i++) {
        recs_free(&a->got);
        read_view(a->v, &a->got);
    }
    return NULL;
}

static void test_view_read_by_another_thread(void **state)
{
    (void)state;
    kv *s = kv_create();
    put_batch(s, 300, NULL);
    recs before = { 0 };
    kv_scan(s, "", 0, collect, &before);
    reader_arg a = { .rounds = 50 };
    assert_int_equal(kv_freeze(s, &a.v), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader_main, &a), 0);
    uint64_t r = 4242;
    for (int i = 0; i < 500; i++)
        churn(s, &r, 10);
    assert_int_equal(pthread_join(t, NULL), 0);
    same_recs(&before, &a.got);
    kv_thaw(s, a.v);
    recs_free(&a.got);
    recs_free(&before);
    uint8_t d[KV_DIGEST_BYTES];
    digest_of(s, d);
    kv_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_digest_is_zero),
        cmocka_unit_test(test_equal_states_equal_digests),
        cmocka_unit_test(test_any_change_changes_the_digest),
        cmocka_unit_test(test_incremental_equals_recompute),
        cmocka_unit_test(test_view_keeps_its_state),
        cmocka_unit_test(test_view_does_not_change_results),
        cmocka_unit_test(test_view_read_by_another_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
