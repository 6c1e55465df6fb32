/*
 * test_chain_kv.c - the key-value state machine: ops and their results,
 * mtime/version from the entry, exactly-once through the session table,
 * malformed input, scan order and prefixes, reference-counted values,
 * snapshots (round trip and garbage).
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

#include "../../chain/kv.h"
#include "../../chain/chain_int.h"

/* ------------------------------------------------------ batch builder */

typedef struct batch {
    uint8_t *buf;
    uint32_t len, cap, count;
} batch;

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void batch_init(batch *b)
{
    b->cap = 1024;
    b->buf = malloc(b->cap);
    assert_non_null(b->buf);
    b->len = 4;
    b->count = 0;
    put_le(b->buf, 0, 4);
}

static void batch_add(batch *b, uint64_t client, uint64_t seq, uint64_t ack,
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
    put_le(p, client, 8);
    put_le(p + 8, seq, 8);
    put_le(p + 16, ack, 8);
    put_le(p + 24, op_len, 4);
    if (op_len)
        memcpy(p + 28, op, op_len);
    b->len = need;
    b->count++;
    put_le(b->buf, b->count, 4);
}

/* ------------------------------------------------------ op builders */

typedef struct opbuf {
    uint8_t b[8192];
    uint32_t len;
} opbuf;

static opbuf op_put(const char *key, const char *val)
{
    opbuf o;
    int64_t n = kv_op_encode_put(o.b, sizeof o.b, key, strlen(key),
                                 (const uint8_t *)val, (uint32_t)strlen(val));
    assert_true(n > 0);
    o.len = (uint32_t)n;
    return o;
}

static opbuf op_append(const char *key, const char *val)
{
    opbuf o;
    int64_t n = kv_op_encode_append(o.b, sizeof o.b, key, strlen(key),
                                    (const uint8_t *)val,
                                    (uint32_t)strlen(val));
    assert_true(n > 0);
    o.len = (uint32_t)n;
    return o;
}

static opbuf op_del(const char *key)
{
    opbuf o;
    int64_t n = kv_op_encode_del(o.b, sizeof o.b, key, strlen(key));
    assert_true(n > 0);
    o.len = (uint32_t)n;
    return o;
}

static opbuf op_rename(const char *from, const char *to)
{
    opbuf o;
    int64_t n = kv_op_encode_rename(o.b, sizeof o.b, from, strlen(from), to,
                                    strlen(to));
    assert_true(n > 0);
    o.len = (uint32_t)n;
    return o;
}

static opbuf op_cond(uint8_t kind, const char *key, uint64_t arg, opbuf inner)
{
    opbuf o;
    int64_t n = kv_op_encode_cond(o.b, sizeof o.b, kind, key, strlen(key), arg,
                                  inner.b, inner.len);
    assert_true(n > 0);
    o.len = (uint32_t)n;
    return o;
}

/* ------------------------------------------------------ applying */

typedef struct results {
    uint32_t n;
    struct {
        uint64_t client, seq, slot;
        int32_t result;
    } r[64];
} results;

static void on_result(void *arg, uint64_t client_id, uint64_t seq,
                      int32_t result, uint64_t slot)
{
    results *rs = arg;
    assert_true(rs->n < 64);
    rs->r[rs->n].client = client_id;
    rs->r[rs->n].seq = seq;
    rs->r[rs->n].result = result;
    rs->r[rs->n].slot = slot;
    rs->n++;
}

static uint64_t next_seq = 1;

/* Apply one op as its own entry; returns its result. */
static int32_t apply1(kv *s, uint64_t time_ms, opbuf o)
{
    batch b;
    results rs = { 0 };
    batch_init(&b);
    batch_add(&b, 7, next_seq, next_seq, o.b, o.len);
    next_seq++;
    px_entry e = { .slot = kv_applied_index(s) + 1, .time_ms = time_ms,
                   .kind = PX_ENTRY_BATCH, .len = b.len, .data = b.buf };
    assert_int_equal(kv_apply_entry(s, &e, on_result, &rs), 0);
    free(b.buf);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.r[0].slot, e.slot);
    return rs.r[0].result;
}

static void expect_key(const kv *s, const char *key, const char *val)
{
    const kv_value *v = kv_get(s, key, strlen(key));
    assert_non_null(v);
    assert_int_equal(v->len, strlen(val));
    assert_memory_equal(v->data, val, v->len);
}

/* ------------------------------------------------------------ tests */

static void test_put_get_mtime(void **state)
{
    (void)state;
    kv *s = kv_create();
    assert_non_null(s);
    assert_null(kv_get(s, "foo", 3));
    assert_int_equal(apply1(s, 1000, op_put("foo", "hello")), 0);
    const kv_value *v = kv_get(s, "foo", 3);
    assert_non_null(v);
    assert_int_equal(v->len, 5);
    assert_memory_equal(v->data, "hello", 5);
    assert_int_equal(v->mtime_ms, 1000);
    assert_int_equal(v->version, 1);
    assert_int_equal(kv_count(s), 1);
    assert_int_equal(kv_bytes(s), 5);
    assert_int_equal(apply1(s, 2000, op_put("foo", "hi")), 0);
    v = kv_get(s, "foo", 3);
    assert_int_equal(v->mtime_ms, 2000);
    assert_int_equal(v->version, 2);
    assert_int_equal(kv_bytes(s), 2);
    assert_null(kv_get(s, "fo", 2));
    assert_null(kv_get(s, "", 0));
    assert_int_equal(kv_applied_index(s), 2);
    kv_destroy(s);
}

static void test_append_del_rename(void **state)
{
    (void)state;
    kv *s = kv_create();
    assert_int_equal(apply1(s, 10, op_append("log", "a")), 0);  /* creates */
    assert_int_equal(apply1(s, 20, op_append("log", "bc")), 0);
    expect_key(s, "log", "abc");
    assert_int_equal(kv_get(s, "log", 3)->mtime_ms, 20);
    assert_int_equal(apply1(s, 30, op_del("log")), 0);
    assert_null(kv_get(s, "log", 3));
    assert_int_equal(apply1(s, 40, op_del("log")), -ENOENT);
    assert_int_equal(kv_count(s), 0);
    assert_int_equal(kv_bytes(s), 0);

    assert_int_equal(apply1(s, 50, op_rename("a", "b")), -ENOENT);
    assert_int_equal(apply1(s, 60, op_put("a", "AAA")), 0);
    assert_int_equal(apply1(s, 70, op_put("b", "B")), 0);
    assert_int_equal(apply1(s, 80, op_rename("a", "b")), 0);
    assert_null(kv_get(s, "a", 1));
    expect_key(s, "b", "AAA");
    assert_int_equal(kv_get(s, "b", 1)->mtime_ms, 60);  /* rename keeps it */
    assert_int_equal(kv_count(s), 1);
    assert_int_equal(kv_bytes(s), 3);
    assert_int_equal(apply1(s, 90, op_rename("b", "b")), 0);
    expect_key(s, "b", "AAA");
    /* a key is a path: renaming into a directory that does not exist is
     * refused as the op is applied */
    assert_int_equal(apply1(s, 95, op_rename("b", "dir/c")), -ENOENT);
    expect_key(s, "b", "AAA");
    kv_destroy(s);
}

static void test_append_too_big(void **state)
{
    (void)state;
    kv *s = kv_create();
    uint32_t big = KV_MAX_VALUE - 10;
    uint8_t *val = calloc(1, big);
    size_t cap = kv_op_size_put(1, big);
    uint8_t *buf = malloc(cap);
    assert_non_null(val);
    assert_non_null(buf);
    assert_int_equal(kv_op_encode_put(buf, cap, "k", 1, val, big), (int64_t)cap);
    batch b;
    results rs = { 0 };
    batch_init(&b);
    batch_add(&b, 1, 1, 1, buf, (uint32_t)cap);
    opbuf more = op_append("k", "0123456789!");
    batch_add(&b, 1, 2, 1, more.b, more.len);
    opbuf fits = op_append("k", "0123456789");
    batch_add(&b, 1, 3, 1, fits.b, fits.len);
    px_entry e = { .slot = 1, .time_ms = 5, .kind = PX_ENTRY_BATCH,
                   .len = b.len, .data = b.buf };
    assert_int_equal(kv_apply_entry(s, &e, on_result, &rs), 0);
    assert_int_equal(rs.n, 3);
    assert_int_equal(rs.r[0].result, 0);
    assert_int_equal(rs.r[1].result, -EFBIG);
    assert_int_equal(rs.r[2].result, 0);
    assert_int_equal(kv_get(s, "k", 1)->len, KV_MAX_VALUE);
    assert_int_equal(kv_op_encode_put(buf, cap, "k", 1, val, KV_MAX_VALUE + 1),
                     -EFBIG);
    free(b.buf);
    free(buf);
    free(val);
    kv_destroy(s);
}

static void test_malformed_ops(void **state)
{
    (void)state;
    kv *s = kv_create();
    uint8_t raw[512];
    char name[300];
    memset(name, 'n', sizeof name);

    /* encoders refuse bad keys and small buffers */
    assert_int_equal(kv_op_encode_put(raw, sizeof raw, "", 0, NULL, 0), -EINVAL);
    assert_int_equal(kv_op_encode_put(raw, sizeof raw, "a\0b", 3, NULL, 0),
                     -EINVAL);
    assert_int_equal(kv_op_encode_del(raw, sizeof raw, "/a", 2), -EINVAL);
    assert_int_equal(kv_op_encode_del(raw, sizeof raw, "a/", 2), -EINVAL);
    assert_int_equal(kv_op_encode_del(raw, sizeof raw, "a//b", 4), -EINVAL);
    assert_int_equal(kv_op_encode_del(raw, sizeof raw, "a/../b", 6), -EINVAL);
    assert_int_equal(kv_op_encode_del(raw, sizeof raw, name, 256),
                     -ENAMETOOLONG);
    assert_int_equal(kv_op_encode_del(raw, sizeof raw, name, 255), 258);
    assert_int_equal(kv_op_encode_del(raw, 4, "abc", 3), -ENOSPC);
    assert_int_equal(kv_op_encode_rename(raw, sizeof raw, "a", 1, "", 0),
                     -EINVAL);

    /* hand-made bad ops are consumed with an error, state unchanged */
    assert_int_equal(apply1(s, 1, op_put("keep", "v")), 0);
    struct { uint8_t b[32]; uint32_t len; int32_t want; } cases[] = {
        { { 9, 1, 0, 'k' }, 4, -EINVAL },                   /* bad type */
        { { 1, 1, 0, 'k', 5, 0, 0, 0, 'x' }, 9, -EINVAL },   /* value short */
        { { 2, 1, 0, 'k', 'z' }, 5, -EINVAL },               /* trailing */
        { { 2, 0, 0 }, 3, -EINVAL },                         /* empty key */
        { { 2, 5, 0, 'k' }, 4, -EINVAL },                    /* key short */
        { { 2, 3, 0, 'a', 0, 'b' }, 6, -EINVAL },            /* NUL */
        { { 4, 1, 0, 'k', 0, 0 }, 6, -EINVAL },              /* empty target */
        { { 1, 1, 0, 'k', 0, 0, 0x50, 0 }, 8, -EINVAL },     /* len lies */
        { { 2 }, 1, -EINVAL },
        { { 0 }, 0, -EINVAL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        opbuf o;
        memcpy(o.b, cases[i].b, sizeof cases[i].b);
        o.len = cases[i].len;
        assert_int_equal(apply1(s, 2, o), cases[i].want);
    }
    /* a value length above KV_MAX_VALUE that the op does hold is -EFBIG */
    uint32_t over = KV_MAX_VALUE + 1;
    uint8_t *bigop = calloc(1, 8 + over);
    assert_non_null(bigop);
    bigop[0] = 1;
    bigop[1] = 1;
    bigop[3] = 'k';
    put_le(bigop + 4, over, 4);
    kv_op op;
    assert_int_equal(kv_op_decode(bigop, 8 + over, &op), -EFBIG);
    free(bigop);

    assert_int_equal(kv_count(s), 1);
    expect_key(s, "keep", "v");
    kv_destroy(s);
}

static void test_entry_order_and_kinds(void **state)
{
    (void)state;
    kv *s = kv_create();
    results rs = { 0 };
    px_entry noop = { .slot = 1, .kind = PX_ENTRY_NOOP };
    assert_int_equal(kv_apply_entry(s, &noop, on_result, &rs), 0);
    px_entry cfg = { .slot = 2, .kind = PX_ENTRY_CONFIG };
    assert_int_equal(kv_apply_entry(s, &cfg, on_result, &rs), 0);
    assert_int_equal(kv_applied_index(s), 2);
    assert_int_equal(rs.n, 0);
    px_entry gap = { .slot = 4, .kind = PX_ENTRY_NOOP };
    assert_int_equal(kv_apply_entry(s, &gap, on_result, &rs), -EINVAL);
    px_entry again = { .slot = 2, .kind = PX_ENTRY_NOOP };
    assert_int_equal(kv_apply_entry(s, &again, on_result, &rs), -EINVAL);
    px_entry odd = { .slot = 3, .kind = 77 };
    assert_int_equal(kv_apply_entry(s, &odd, on_result, &rs), -EINVAL);

    /* malformed batch: nothing applied, index unchanged */
    batch b;
    batch_init(&b);
    opbuf o = op_put("x", "1");
    batch_add(&b, 1, 1, 1, o.b, o.len);
    batch_add(&b, 1, 2, 1, o.b, o.len);
    px_entry bad = { .slot = 3, .kind = PX_ENTRY_BATCH, .len = b.len - 1,
                     .data = b.buf };
    assert_int_equal(kv_apply_entry(s, &bad, on_result, &rs), -EINVAL);
    assert_int_equal(kv_applied_index(s), 2);
    assert_null(kv_get(s, "x", 1));
    assert_int_equal(rs.n, 0);
    put_le(b.buf, 3, 4);  /* count says 3, holds 2 */
    bad.len = b.len;
    assert_int_equal(kv_apply_entry(s, &bad, on_result, &rs), -EINVAL);
    assert_null(kv_get(s, "x", 1));
    free(b.buf);
    kv_destroy(s);
}

static void test_exactly_once(void **state)
{
    (void)state;
    kv *s = kv_create();
    results rs = { 0 };
    batch b;
    opbuf app = op_append("ctr", "x");
    opbuf del = op_del("nothing");

    batch_init(&b);
    batch_add(&b, 42, 1, 1, app.b, app.len);
    batch_add(&b, 42, 2, 1, del.b, del.len);
    px_entry e = { .slot = 1, .time_ms = 1, .kind = PX_ENTRY_BATCH,
                   .len = b.len, .data = b.buf };
    assert_int_equal(kv_apply_entry(s, &e, on_result, &rs), 0);
    /* the same requests again (a retried proposal in a later slot) */
    e.slot = 2;
    assert_int_equal(kv_apply_entry(s, &e, on_result, &rs), 0);
    free(b.buf);
    assert_int_equal(rs.n, 4);
    assert_int_equal(rs.r[0].result, 0);
    assert_int_equal(rs.r[1].result, -ENOENT);
    assert_int_equal(rs.r[2].result, 0);       /* stored answers */
    assert_int_equal(rs.r[3].result, -ENOENT);
    assert_int_equal(rs.r[2].slot, 2);
    expect_key(s, "ctr", "x");                 /* applied once */
    assert_int_equal(kv_get(s, "ctr", 3)->version, 1);

    /* client acknowledges seq 1 and 2, then seq 1 shows up again */
    rs.n = 0;
    batch_init(&b);
    batch_add(&b, 42, 3, 3, app.b, app.len);
    batch_add(&b, 42, 1, 1, app.b, app.len);
    e = (px_entry){ .slot = 3, .time_ms = 3, .kind = PX_ENTRY_BATCH,
                    .len = b.len, .data = b.buf };
    assert_int_equal(kv_apply_entry(s, &e, on_result, &rs), 0);
    free(b.buf);
    assert_int_equal(rs.n, 2);
    assert_int_equal(rs.r[0].result, 0);
    assert_int_equal(rs.r[1].result, -EALREADY);
    expect_key(s, "ctr", "xx");
    kv_destroy(s);
}

typedef struct scan_acc {
    char keys[64][32];
    uint32_t n;
    uint32_t stop_after;
} scan_acc;

static int collect(void *arg, const char *key, size_t key_len,
                   const kv_value *v)
{
    scan_acc *a = arg;
    assert_non_null(v);
    assert_true(a->n < 64 && key_len < 32);
    memcpy(a->keys[a->n], key, key_len);
    a->keys[a->n][key_len] = '\0';
    a->n++;
    return a->stop_after && a->n == a->stop_after ? 99 : 0;
}

/* An op the encoders would refuse, made by hand (a forged or buggy
 * proposal): op type, key, and for PUT a value, for RENAME a target. */
static opbuf raw_op(uint8_t type, const char *key, const char *arg)
{
    opbuf o;
    size_t k = strlen(key), a = arg ? strlen(arg) : 0;
    o.b[0] = type;
    put_le(o.b + 1, k, 2);
    memcpy(o.b + 3, key, k);
    o.len = (uint32_t)(3 + k);
    if (type == KV_OP_PUT || type == KV_OP_APPEND) {
        put_le(o.b + o.len, a, 4);
        memcpy(o.b + o.len + 4, arg, a);
        o.len += (uint32_t)(4 + a);
    } else if (type == KV_OP_RENAME) {
        put_le(o.b + o.len, a, 2);
        memcpy(o.b + o.len + 2, arg, a);
        o.len += (uint32_t)(2 + a);
    }
    return o;
}

static int dump_visit(void *arg, const char *key, size_t key_len,
                      const kv_value *v)
{
    FILE *fp = arg;
    fprintf(fp, "%.*s=%.*s@%llu;", (int)key_len, key, (int)v->len,
            (const char *)v->data, (unsigned long long)v->mtime_ms);
    return 0;
}

static char *dump(const kv *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    assert_non_null(fp);
    kv_scan(s, "", 0, dump_visit, fp);
    fclose(fp);
    return text;
}

/* Keys are checked where committed entries are applied: a forged request
 * naming one of the mount's own files, a path with an empty name or a
 * '/' at the end, "." or ".." or a
 * name that is too long is a counted no-op with the same result on every
 * replica, and the maps stay identical. */
static void test_forged_keys_are_noops(void **state)
{
    (void)state;
    char longname[300];
    memset(longname, 'n', sizeof longname);
    longname[256] = '\0';
    struct { opbuf op; int32_t want; } cases[] = {
        { raw_op(KV_OP_PUT, ".status", "forged"), -EINVAL },
        { raw_op(KV_OP_PUT, ".chain", "forged"), -EINVAL },
        { raw_op(KV_OP_PUT, ".cluster", "forged"), -EINVAL },
        { raw_op(KV_OP_PUT, ".cluster/members", "forged"), -EINVAL },
        { raw_op(KV_OP_APPEND, ".chain", "forged"), -EINVAL },
        { raw_op(KV_OP_PUT, "dir//file", "invisible"), -EINVAL },
        { raw_op(KV_OP_PUT, "dir/", "invisible"), -EINVAL },
        { raw_op(KV_OP_PUT, "dir/./f", "invisible"), -EINVAL },
        { raw_op(KV_OP_PUT, "/abs", "x"), -EINVAL },
        { raw_op(KV_OP_PUT, "..", "x"), -EINVAL },
        { raw_op(KV_OP_PUT, longname, "x"), -ENAMETOOLONG },
        { raw_op(KV_OP_RENAME, "keep", ".status"), -EINVAL },
        { raw_op(KV_OP_RENAME, "keep", "a/../b"), -EINVAL },
        { raw_op(KV_OP_MKDIR, ".chain", NULL), -EINVAL },
        { raw_op(KV_OP_DEL, ".chain", NULL), -EINVAL },
    };
    size_t n = sizeof cases / sizeof cases[0];
    kv *s[2] = { kv_create(), kv_create() };
    for (int r = 0; r < 2; r++) {
        assert_non_null(s[r]);
        assert_int_equal(apply1(s[r], 1, op_put("keep", "v")), 0);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(apply1(s[r], 2 + i, cases[i].op), cases[i].want);
        assert_int_equal(kv_invalid_ops(s[r]), n);
        assert_int_equal(kv_count(s[r]), 1);
        expect_key(s[r], "keep", "v");
        assert_null(kv_get(s[r], ".status", 7));
        assert_null(kv_get(s[r], ".chain", 6));
        assert_null(kv_get(s[r], "dir/file", 8));
        assert_int_equal(kv_applied_index(s[r]), 1 + n);
    }
    char *a = dump(s[0]), *b = dump(s[1]);
    assert_string_equal(a, b);
    free(a);
    free(b);
    /* the encoders refuse the same keys */
    opbuf o;
    assert_int_equal(kv_op_encode_put(o.b, sizeof o.b, ".status", 7, NULL, 0),
                     -EINVAL);
    assert_int_equal(kv_op_encode_del(o.b, sizeof o.b, ".chain", 6), -EINVAL);
    assert_int_equal(kv_op_encode_put(o.b, sizeof o.b, ".chainx", 7, NULL, 0),
                     (int64_t)kv_op_size_put(7, 0));
    kv_destroy(s[0]);
    kv_destroy(s[1]);
}

static void test_scan_order_prefix(void **state)
{
    (void)state;
    kv *s = kv_create();
    const char *keys[] = { "b", "a-2", "a-10", "a", "a-1", "ab", "c-x-y",
                           "a-1-z", "\xff", "B" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_int_equal(apply1(s, 1, op_put(keys[i], "v")), 0);
    scan_acc all = { 0 };
    assert_int_equal(kv_scan(s, "", 0, collect, &all), 0);
    const char *sorted[] = { "B", "a", "a-1", "a-1-z", "a-10", "a-2", "ab",
                             "b", "c-x-y", "\xff" };
    assert_int_equal(all.n, 10);
    for (int i = 0; i < 10; i++)
        assert_string_equal(all.keys[i], sorted[i]);

    scan_acc pre = { 0 };
    assert_int_equal(kv_scan(s, "a-", 2, collect, &pre), 0);
    assert_int_equal(pre.n, 4);
    assert_string_equal(pre.keys[0], "a-1");
    assert_string_equal(pre.keys[3], "a-2");

    scan_acc none = { 0 };
    assert_int_equal(kv_scan(s, "zz", 2, collect, &none), 0);
    assert_int_equal(none.n, 0);

    scan_acc stop = { .stop_after = 3 };
    assert_int_equal(kv_scan(s, "", 0, collect, &stop), 99);
    assert_int_equal(stop.n, 3);

    assert_int_equal(apply1(s, 1, op_del("a-1")), 0);
    scan_acc after = { 0 };
    assert_int_equal(kv_scan(s, "a-1", 3, collect, &after), 0);
    assert_int_equal(after.n, 2);
    assert_string_equal(after.keys[0], "a-1-z");
    assert_string_equal(after.keys[1], "a-10");
    kv_destroy(s);
}

static void test_value_refs(void **state)
{
    (void)state;
    kv *s = kv_create();
    assert_int_equal(apply1(s, 1, op_put("k", "old")), 0);
    const kv_value *v = kv_get(s, "k", 1);
    assert_int_equal(v->refs, 1);
    kv_value_ref(v);
    assert_int_equal(v->refs, 2);
    assert_int_equal(apply1(s, 2, op_put("k", "new!")), 0);
    assert_int_equal(v->refs, 1);        /* the map let go of it */
    assert_memory_equal(v->data, "old", 3);
    assert_int_equal(v->version, 1);
    expect_key(s, "k", "new!");
    const kv_value *w = kv_get(s, "k", 1);
    kv_value_ref(w);
    assert_int_equal(apply1(s, 3, op_del("k")), 0);
    assert_memory_equal(w->data, "new!", 4);
    kv_value_unref(w);
    kv_value_unref(v);
    kv_destroy(s);
}

static int count_visit(void *arg, const char *key, size_t key_len,
                       const kv_value *v)
{
    (void)key;
    (void)key_len;
    (void)v;
    (*(uint64_t *)arg)++;
    return 0;
}

typedef struct order_check {
    char last[64];
    size_t last_len;
    uint64_t n;
} order_check;

static int check_order(void *arg, const char *key, size_t key_len,
                       const kv_value *v)
{
    order_check *o = arg;
    (void)v;
    if (o->n) {
        size_t m = key_len < o->last_len ? key_len : o->last_len;
        int c = memcmp(o->last, key, m);
        assert_true(c < 0 || (c == 0 && o->last_len < key_len));
    }
    memcpy(o->last, key, key_len);
    o->last_len = key_len;
    o->n++;
    return 0;
}

/* Many keys in one entry each batch of 100: lookups, order, deletes. */
static void test_many_keys(void **state)
{
    (void)state;
    kv *s = kv_create();
    const uint32_t n = 100000;
    char key[32];
    uint64_t seq = 1;
    for (uint32_t i = 0; i < n; i += 100) {
        batch b;
        batch_init(&b);
        for (uint32_t j = i; j < i + 100; j++) {
            snprintf(key, sizeof key, "d%u-k%u", (j * 7919u) % 13, j * 2654435761u);
            opbuf o = op_put(key, "v");
            batch_add(&b, 5, seq, seq, o.b, o.len);
            seq++;
        }
        px_entry e = { .slot = kv_applied_index(s) + 1, .kind = PX_ENTRY_BATCH,
                       .len = b.len, .data = b.buf };
        assert_int_equal(kv_apply_entry(s, &e, NULL, NULL), 0);
        free(b.buf);
    }
    assert_int_equal(kv_count(s), n);
    order_check oc = { 0 };
    assert_int_equal(kv_scan(s, "", 0, check_order, &oc), 0);
    assert_int_equal(oc.n, n);
    uint64_t in_d3 = 0;
    assert_int_equal(kv_scan(s, "d3-", 3, count_visit, &in_d3), 0);
    uint64_t expect = 0;
    for (uint32_t j = 0; j < n; j++)
        expect += (j * 7919u) % 13 == 3;
    assert_int_equal(in_d3, expect);
    for (uint32_t j = 0; j < n; j++) {
        snprintf(key, sizeof key, "d%u-k%u", (j * 7919u) % 13, j * 2654435761u);
        assert_non_null(kv_get(s, key, strlen(key)));
    }
    kv_destroy(s);
}

/* ------------------------------------------------------------ snapshots */

static int compare_into(void *arg, const char *key, size_t key_len,
                        const kv_value *v)
{
    const kv *other = arg;
    const kv_value *w = kv_get(other, key, key_len);
    assert_non_null(w);
    assert_int_equal(w->len, v->len);
    assert_int_equal(w->mtime_ms, v->mtime_ms);
    assert_int_equal(w->version, v->version);
    assert_int_equal(w->ident, v->ident);
    assert_int_equal(w->changes, v->changes);
    if (v->len)
        assert_memory_equal(w->data, v->data, v->len);
    return 0;
}

static uint64_t ident_of(const kv *s, const char *key)
{
    const kv_value *v = kv_get(s, key, strlen(key));
    assert_non_null(v);
    assert_true(v->ident != 0);
    return v->ident;
}

/* A key is one file: writes keep its identity, a rename moves it, a
 * removal ends it, and two creations in one entry get different ones. */
static void test_file_identity(void **state)
{
    (void)state;
    kv *s = kv_create();
    assert_int_equal(apply1(s, 1, op_put("a", "1")), 0);
    uint64_t a = ident_of(s, "a");
    assert_int_equal(apply1(s, 2, op_put("a", "22")), 0);
    assert_int_equal(apply1(s, 3, op_append("a", "3")), 0);
    assert_int_equal(ident_of(s, "a"), a);
    assert_int_equal(apply1(s, 4, op_append("b", "x")), 0);   /* creates */
    uint64_t b = ident_of(s, "b");
    assert_true(b != a);
    assert_int_equal(apply1(s, 5, op_rename("a", "b")), 0);   /* over b */
    assert_int_equal(ident_of(s, "b"), a);
    assert_int_equal(apply1(s, 6, op_del("b")), 0);
    assert_int_equal(apply1(s, 7, op_put("b", "new")), 0);
    assert_true(ident_of(s, "b") != a && ident_of(s, "b") != b);

    /* one entry, two creations of the same key */
    batch bt;
    batch_init(&bt);
    opbuf p1 = op_put("c", "1"), d = op_del("c"), p2 = op_put("c", "2");
    batch_add(&bt, 9, 1, 1, p1.b, p1.len);
    batch_add(&bt, 9, 2, 1, d.b, d.len);
    batch_add(&bt, 9, 3, 1, p2.b, p2.len);
    px_entry e = { .slot = kv_applied_index(s) + 1, .time_ms = 8,
                   .kind = PX_ENTRY_BATCH, .len = bt.len, .data = bt.buf };
    assert_int_equal(kv_apply_entry(s, &e, NULL, NULL), 0);
    free(bt.buf);
    assert_int_equal(ident_of(s, "c"), (e.slot << 24) | 3);   /* not | 1 */
    kv_destroy(s);
}

/* Conditions are decided at apply time; a failed one changes nothing. */
static void test_conditional_ops(void **state)
{
    (void)state;
    kv *s = kv_create();
    /* create-if-absent */
    assert_int_equal(apply1(s, 1, op_cond(KV_COND_ABSENT, "lock", 0,
                                          op_put("lock", "me"))), 0);
    assert_int_equal(apply1(s, 2, op_cond(KV_COND_ABSENT, "lock", 0,
                                          op_put("lock", "you"))), -EEXIST);
    expect_key(s, "lock", "me");
    uint64_t id = ident_of(s, "lock");
    uint64_t ver = kv_get(s, "lock", 4)->version;

    /* write only to the same file */
    assert_int_equal(apply1(s, 3, op_cond(KV_COND_IDENT, "lock", id,
                                          op_put("lock", "again"))), 0);
    assert_int_equal(apply1(s, 4, op_cond(KV_COND_IDENT, "lock", id + 1,
                                          op_append("lock", "!"))), -ESTALE);
    expect_key(s, "lock", "again");
    /* version: compare-and-swap on the last change */
    assert_int_equal(apply1(s, 5, op_cond(KV_COND_VERSION, "lock", ver,
                                          op_put("lock", "old"))), -ESTALE);
    ver = kv_get(s, "lock", 4)->version;
    assert_int_equal(apply1(s, 6, op_cond(KV_COND_VERSION, "lock", ver,
                                          op_put("lock", "cas"))), 0);
    expect_key(s, "lock", "cas");
    /* renamed away: the identity is no longer at the old key */
    assert_int_equal(apply1(s, 7, op_rename("lock", "moved")), 0);
    assert_int_equal(apply1(s, 8, op_cond(KV_COND_IDENT, "lock", id,
                                          op_put("lock", "x"))), -ESTALE);
    assert_null(kv_get(s, "lock", 4));
    assert_int_equal(apply1(s, 9, op_cond(KV_COND_IDENT, "moved", id,
                                          op_put("moved", "y"))), 0);
    expect_key(s, "moved", "y");
    /* guarded delete and rename; the condition may name another key */
    assert_int_equal(apply1(s, 10, op_put("t", "T")), 0);
    assert_int_equal(apply1(s, 11, op_cond(KV_COND_ABSENT, "t", 0,
                                           op_rename("moved", "t"))), -EEXIST);
    expect_key(s, "moved", "y");
    assert_int_equal(apply1(s, 12, op_cond(KV_COND_IDENT, "moved", id,
                                           op_del("moved"))), 0);
    assert_null(kv_get(s, "moved", 5));
    assert_int_equal(kv_count(s), 1);

    /* encoding: bad kinds, nesting and ABSENT with an argument are refused */
    opbuf in = op_put("k", "v"), o;
    assert_int_equal(kv_op_encode_cond(o.b, sizeof o.b, 0, "k", 1, 0, in.b,
                                       in.len), -EINVAL);
    assert_int_equal(kv_op_encode_cond(o.b, sizeof o.b, KV_COND_ABSENT, "k", 1,
                                       5, in.b, in.len), -EINVAL);
    opbuf c = op_cond(KV_COND_IDENT, "k", 3, in);
    assert_int_equal(kv_op_encode_cond(o.b, sizeof o.b, KV_COND_IDENT, "k", 1,
                                       3, c.b, c.len), -EINVAL);
    assert_int_equal(kv_op_encode_cond(o.b, 5, KV_COND_IDENT, "k", 1, 3, in.b,
                                       in.len), -ENOSPC);
    /* wrapping in place (the inner op at the start of the output) gives
     * the same bytes */
    opbuf inplace = op_put("k", "v");
    int64_t wn = kv_op_encode_cond(inplace.b, sizeof inplace.b, KV_COND_IDENT,
                                   "k", 1, 3, inplace.b, inplace.len);
    assert_int_equal(wn, (int64_t)c.len);
    assert_memory_equal(inplace.b, c.b, c.len);
    kv_op op;
    assert_int_equal(kv_op_decode(c.b, c.len, &op), 0);
    assert_int_equal(op.type, KV_OP_PUT);
    assert_int_equal(op.cond_kind, KV_COND_IDENT);
    assert_int_equal(op.cond_arg, 3);
    assert_int_equal(op.cond_key_len, 1);
    assert_int_equal(op.value_len, 1);
    assert_int_equal(c.len, kv_op_size_cond(1, in.len));
    /* every truncation of a COND op, and a COND inside a COND, is malformed */
    for (uint32_t cut = 0; cut < c.len; cut++)
        assert_int_not_equal(kv_op_decode(c.b, cut, &op), 0);
    uint8_t nested[128];
    memcpy(nested, c.b, 12 + 1);
    memcpy(nested + 13, c.b, c.len);
    assert_int_equal(kv_op_decode(nested, 13 + c.len, &op), -EINVAL);
    c.b[1] = 9;
    assert_int_equal(kv_op_decode(c.b, c.len, &op), -EINVAL);
    assert_int_equal(apply1(s, 13, c), -EINVAL);   /* consumed, no change */
    kv_destroy(s);
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    kv *s = kv_create();
    for (int i = 0; i < 200; i++) {
        char key[32], val[64];
        snprintf(key, sizeof key, "dir%d-file%d", i % 7, i);
        snprintf(val, sizeof val, "value %d\n", i * i);
        assert_int_equal(apply1(s, 1000 + (uint64_t)i, op_put(key, val)), 0);
    }
    assert_int_equal(apply1(s, 5000, op_put("empty", "")), 0);
    uint64_t last = next_seq - 1;         /* seq of put("empty", "") */
    uint8_t *snap = NULL;
    size_t len = 0;
    assert_int_equal(kv_snapshot_encode(s, &snap, &len), 0);
    assert_non_null(snap);

    kv *t = kv_create();
    assert_int_equal(apply1(t, 1, op_put("junk", "to be replaced")), 0);
    assert_int_equal(kv_snapshot_decode(t, snap, len), 0);
    assert_int_equal(kv_applied_index(t), kv_applied_index(s));
    assert_int_equal(kv_count(t), kv_count(s));
    assert_int_equal(kv_bytes(t), kv_bytes(s));
    assert_null(kv_get(t, "junk", 4));
    assert_int_equal(kv_scan(s, "", 0, compare_into, t), 0);

    /* the session table travelled too: a retried request is answered
     * from it, not applied again */
    results rs = { 0 };
    batch b;
    batch_init(&b);
    opbuf o = op_put("empty", "changed");
    batch_add(&b, 7, last, last, o.b, o.len);
    px_entry e = { .slot = kv_applied_index(t) + 1, .kind = PX_ENTRY_BATCH,
                   .len = b.len, .data = b.buf };
    assert_int_equal(kv_apply_entry(t, &e, on_result, &rs), 0);
    free(b.buf);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.r[0].result, 0);
    expect_key(t, "empty", "");

    /* the encoding is deterministic */
    uint8_t *snap2 = NULL;
    size_t len2 = 0;
    assert_int_equal(kv_snapshot_encode(s, &snap2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(snap2, snap, len);
    free(snap2);

    /* an empty map */
    kv *u = kv_create();
    uint8_t *esnap = NULL;
    size_t elen = 0;
    assert_int_equal(kv_snapshot_encode(u, &esnap, &elen), 0);
    assert_int_equal(kv_snapshot_decode(t, esnap, elen), 0);
    assert_int_equal(kv_count(t), 0);
    assert_int_equal(kv_applied_index(t), 0);
    free(esnap);
    kv_destroy(u);

    free(snap);
    kv_destroy(t);
    kv_destroy(s);
}

static void test_snapshot_garbage(void **state)
{
    (void)state;
    kv *s = kv_create();
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(apply1(s, 1, op_put(key, "some value")), 0);
    }
    uint8_t *snap = NULL;
    size_t len = 0;
    assert_int_equal(kv_snapshot_encode(s, &snap, &len), 0);

    kv *t = kv_create();
    assert_int_equal(apply1(t, 1, op_put("mine", "stays")), 0);
    /* every truncation and every single-byte flip is refused cleanly */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(kv_snapshot_decode(t, snap, cut), -EINVAL);
    for (size_t off = 0; off < len; off++) {
        snap[off] ^= 0x10;
        assert_int_equal(kv_snapshot_decode(t, snap, len), -EINVAL);
        snap[off] ^= 0x10;
    }
    /* random garbage */
    uint8_t junk[512];
    uint64_t x = 12345;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof junk; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            junk[i] = (uint8_t)(x >> 56);
        }
        if (round % 2)
            memcpy(junk, snap, 16);   /* valid-looking header */
        assert_int_equal(kv_snapshot_decode(t, junk, sizeof junk), -EINVAL);
    }
    assert_int_equal(kv_snapshot_decode(t, NULL, 0), -EINVAL);
    expect_key(t, "mine", "stays");
    assert_int_equal(kv_count(t), 1);
    free(snap);
    kv_destroy(t);
    kv_destroy(s);
}

static uint64_t changes_of(const kv *s, const char *key)
{
    const kv_value *v = kv_get(s, key, strlen(key));
    assert_non_null(v);
    return v->changes;
}

/* kv_value.changes: 1 at creation, + 1 per write, append, setattr and
 * rename onto the key; a new file starts again at 1; snapshots keep the
 * counts (format 3) and read the older format (counts 1); the digest
 * does not cover them. */
static void test_change_counts(void **state)
{
    (void)state;
    kv *s = kv_create();
    assert_int_equal(apply1(s, 1, op_put("a", "1")), 0);
    assert_int_equal(changes_of(s, "a"), 1);
    assert_int_equal(apply1(s, 2, op_put("a", "2")), 0);
    assert_int_equal(apply1(s, 3, op_append("a", "3")), 0);
    assert_int_equal(changes_of(s, "a"), 3);
    opbuf o;
    int64_t n = kv_op_encode_setattr(o.b, sizeof o.b, "a", 1, KV_ATTR_MTIME,
                                     0, 0, 0, 77);
    assert_true(n > 0);
    o.len = (uint32_t)n;
    assert_int_equal(apply1(s, 4, o), 0);
    assert_int_equal(changes_of(s, "a"), 4);
    assert_int_equal(apply1(s, 5, op_rename("a", "b")), 0);
    assert_int_equal(changes_of(s, "b"), 5);
    /* failed ops change nothing */
    assert_int_equal(apply1(s, 6, op_cond(KV_COND_ABSENT, "b", 0,
                                          op_put("b", "x"))), -EEXIST);
    assert_int_equal(changes_of(s, "b"), 5);
    assert_int_equal(apply1(s, 7, op_del("b")), 0);
    assert_int_equal(apply1(s, 8, op_put("b", "new file")), 0);
    assert_int_equal(changes_of(s, "b"), 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(apply1(s, 9, op_append("b", "+")), 0);
    assert_int_equal(apply1(s, 10, op_put("c", "once")), 0);

    /* the digest ignores the counts: a state with the same keys, values
     * and versions but other counts has the same digest */
    uint8_t d1[KV_DIGEST_BYTES], d2[KV_DIGEST_BYTES];
    kv_digest(s, d1);
    ((kv_value *)kv_get(s, "b", 1))->changes = 1000;
    assert_int_equal(kv_digest_recompute(s, d2), 0);
    assert_memory_equal(d1, d2, KV_DIGEST_BYTES);
    ((kv_value *)kv_get(s, "b", 1))->changes = 6;

    /* round trip */
    uint8_t *snap = NULL;
    size_t len = 0;
    assert_int_equal(kv_snapshot_encode(s, &snap, &len), 0);
    assert_int_equal(snap[8], 3);              /* format version 3 */
    kv *t = kv_create();
    assert_int_equal(kv_snapshot_decode(t, snap, len), 0);
    assert_int_equal(changes_of(t, "b"), 6);
    assert_int_equal(changes_of(t, "c"), 1);
    assert_int_equal(kv_scan(s, "", 0, compare_into, t), 0);
    kv_digest(t, d2);
    assert_memory_equal(d1, d2, KV_DIGEST_BYTES);
    /* and it goes on counting */
    assert_int_equal(apply1(t, 11, op_put("b", "more")), 0);
    assert_int_equal(changes_of(t, "b"), 7);
    free(snap);

    /* a format 2 snapshot (no counted records) reads, each key at 1 */
    kv *u = kv_create();
    assert_int_equal(apply1(u, 1, op_put("x", "1")), 0);
    assert_int_equal(apply1(u, 1, op_put("y", "2")), 0);
    assert_int_equal(kv_snapshot_encode(u, &snap, &len), 0);
    snap[8] = 2;
    uint32_t crc = chain_crc32(snap, 44);
    for (int i = 0; i < 4; i++)
        snap[44 + i] = (uint8_t)(crc >> (8 * i));
    kv *w = kv_create();
    assert_int_equal(kv_snapshot_decode(w, snap, len), 0);
    assert_int_equal(changes_of(w, "x"), 1);
    assert_int_equal(changes_of(w, "y"), 1);
    /* an unknown format version is refused */
    snap[8] = 4;
    crc = chain_crc32(snap, 44);
    for (int i = 0; i < 4; i++)
        snap[44 + i] = (uint8_t)(crc >> (8 * i));
    assert_int_equal(kv_snapshot_decode(w, snap, len), -EINVAL);
    free(snap);
    kv_destroy(w);
    kv_destroy(u);
    kv_destroy(t);
    kv_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_mtime),
        cmocka_unit_test(test_append_del_rename),
        cmocka_unit_test(test_append_too_big),
        cmocka_unit_test(test_malformed_ops),
        cmocka_unit_test(test_forged_keys_are_noops),
        cmocka_unit_test(test_entry_order_and_kinds),
        cmocka_unit_test(test_exactly_once),
        cmocka_unit_test(test_scan_order_prefix),
        cmocka_unit_test(test_value_refs),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_file_identity),
        cmocka_unit_test(test_conditional_ops),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_garbage),
        cmocka_unit_test(test_change_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
