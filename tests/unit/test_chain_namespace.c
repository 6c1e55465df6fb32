/*
 * test_chain_namespace.c - the namespace of the key-value state machine
 * (chain/kv.h "Keys", "Results"): directories, files at any depth, rmdir,
 * rename of files and whole trees (replace, NOREPLACE, EXCHANGE), each
 * decided as the op is applied.  Most cases are rows of a table: an op in
 * a small text form, the result it must have, and, where given, the whole
 * map after it.  Then: replicas agree, the digest follows every change,
 * snapshots carry the tree, a frozen view keeps the tree it froze, and a
 * flat history replays to the state (digest) it always had.
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

#include "kvbuild.h"

/* test_flat_history_unchanged: the digest the code before directories
 * gave this history */
#define FLAT_DIGEST \
    "06558eae480739af0c6eb1e554a75bc79a21d920fc84672d20b18e48498a0c4a"

/* ------------------------------------------------------- text ops */

/* Encode one op written as "verb arg [arg]":
 *   put K V | append K V | del K | mkdir K | rmdir K | excl K V (PUT only
 *   if K is absent) | mv A B | mvn A B (NOREPLACE) | xchg A B (EXCHANGE)
 * Returns the length. */
static uint32_t encode(const char *text, uint8_t *buf, size_t cap)
{
    char verb[16], a[KV_MAX_KEY + 1], b[KV_MAX_KEY + 1];
    a[0] = b[0] = '\0';
    int n = sscanf(text, "%15s %4096s %4096s", verb, a, b);
    assert_true(n >= 2);
    int64_t len = -1;
    size_t al = strlen(a), bl = strlen(b);
    if (strcmp(verb, "put") == 0)
        len = kv_op_encode_put(buf, cap, a, al, (const uint8_t *)b,
                               (uint32_t)bl);
    else if (strcmp(verb, "append") == 0)
        len = kv_op_encode_append(buf, cap, a, al, (const uint8_t *)b,
                                  (uint32_t)bl);
    else if (strcmp(verb, "del") == 0)
        len = kv_op_encode_del(buf, cap, a, al);
    else if (strcmp(verb, "mkdir") == 0)
        len = kv_op_encode_mkdir(buf, cap, a, al);
    else if (strcmp(verb, "rmdir") == 0)
        len = kv_op_encode_rmdir(buf, cap, a, al);
    else if (strcmp(verb, "mv") == 0)
        len = kv_op_encode_rename(buf, cap, a, al, b, bl);
    else if (strcmp(verb, "mvn") == 0)
        len = kv_op_encode_renamex(buf, cap, a, al, b, bl,
                                   KV_RENAME_NOREPLACE);
    else if (strcmp(verb, "xchg") == 0)
        len = kv_op_encode_renamex(buf, cap, a, al, b, bl,
                                   KV_RENAME_EXCHANGE);
    else if (strcmp(verb, "excl") == 0) {
        uint8_t inner[8192];
        int64_t in = kv_op_encode_put(inner, sizeof inner, a, al,
                                      (const uint8_t *)b, (uint32_t)bl);
        assert_true(in > 0);
        len = kv_op_encode_cond(buf, cap, KV_COND_ABSENT, a, al, 0, inner,
                                (size_t)in);
    }
    if (len <= 0)
        fail_msg("cannot encode \"%s\": %lld", text, (long long)len);
    return (uint32_t)len;
}

static int32_t last_result;

static void on_result(void *arg, uint64_t client, uint64_t seq,
                      int32_t result, uint64_t slot)
{
    (void)arg; (void)client; (void)seq; (void)slot;
    last_result = result;
}

static uint64_t next_seq = 1;

/* Apply one text op as the next entry; its result. */
static int32_t run(kv *s, const char *text)
{
    static uint8_t op[16384];
    uint32_t len = encode(text, op, sizeof op);
    kvb_batch b;
    kvb_init(&b);
    kvb_add(&b, 9, next_seq++, op, len);
    px_entry e = { .slot = kv_applied_index(s) + 1, .time_ms = 1000,
                   .kind = PX_ENTRY_BATCH, .len = b.len, .data = b.buf };
    last_result = 1;
    assert_int_equal(kv_apply_entry(s, &e, on_result, NULL), 0);
    kvb_free(&b);
    return last_result;
}

static int dump_visit(void *arg, const char *key, size_t key_len,
                      const kv_value *v)
{
    FILE *fp = arg;
    fprintf(fp, "%s%.*s", ftell(fp) ? " " : "", (int)key_len, key);
    if (v->len)
        fprintf(fp, "=%.*s", (int)v->len, (const char *)v->data);
    return 0;
}

/* Every key in byte order, "k=v" for a non-empty value. */
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

static void expect_dump(const kv *s, const char *want)
{
    char *got = dump(s);
    if (strcmp(got, want) != 0)
        fail_msg("map is \"%s\", want \"%s\"", got, want);
    free(got);
}

static void expect_digest_current(kv *s)
{
    uint8_t d1[KV_DIGEST_BYTES], d2[KV_DIGEST_BYTES];
    kv_digest(s, d1);
    assert_int_equal(kv_digest_recompute(s, d2), 0);
    assert_memory_equal(d1, d2, KV_DIGEST_BYTES);
}

/* ------------------------------------------------ owners and modes */

static int32_t apply_op(kv *s, const uint8_t *op, uint32_t len)
{
    kvb_batch b;
    kvb_init(&b);
    kvb_add(&b, 9, next_seq++, op, len);
    px_entry e = { .slot = kv_applied_index(s) + 1, .time_ms = 5000,
                   .kind = PX_ENTRY_BATCH, .len = b.len, .data = b.buf };
    last_result = 1;
    assert_int_equal(kv_apply_entry(s, &e, on_result, NULL), 0);
    kvb_free(&b);
    return last_result;
}

static void expect_attrs(const kv *s, const char *key, uint32_t uid,
                         uint32_t gid, uint32_t mode, uint64_t mtime)
{
    const kv_value *v = kv_get(s, key, strlen(key));
    assert_non_null(v);
    assert_int_equal(v->uid, uid);
    assert_int_equal(v->gid, gid);
    assert_int_equal(v->mode, mode);
    if (mtime)
        assert_int_equal(v->mtime_ms, mtime);
}

/* OWNER gives a created key (file or directory) its owner and mode;
 * writes, renames and a tree rename keep them; SETATTR changes them and
 * the mtime (explicit or the entry's time); the digest and a snapshot
 * carry them; a key created without OWNER records none (mode 0). */
static void test_owner_and_mode(void **state)
{
    (void)state;
    uint8_t in[256], op[512];
    kv *s = kv_create();
    int64_t n = kv_op_encode_mkdir(in, sizeof in, "d", 1);
    n = kv_op_encode_owner(op, sizeof op, 1000, 100, 0750, in, (size_t)n);
    assert_true(n > 0);
    assert_int_equal(apply_op(s, op, (uint32_t)n), 0);
    expect_attrs(s, "d/", 1000, 100, KV_MODE_DIR | 0750, 5000);
    /* an O_EXCL create: OWNER around COND ABSENT around PUT */
    n = kv_op_encode_put(in, sizeof in, "d/f", 3, (const uint8_t *)"x", 1);
    n = kv_op_encode_cond(op, sizeof op, KV_COND_ABSENT, "d/f", 3, 0, in,
                          (size_t)n);
    n = kv_op_encode_owner(op, sizeof op, 1001, 101, 0600, op, (size_t)n);
    assert_true(n > 0);
    assert_int_equal(apply_op(s, op, (uint32_t)n), 0);
    expect_attrs(s, "d/f", 1001, 101, KV_MODE_FILE | 0600, 0);
    assert_int_equal(apply_op(s, op, (uint32_t)n), -EEXIST);
    /* a write and renames keep them */
    assert_int_equal(run(s, "append d/f y"), 0);
    assert_int_equal(run(s, "mv d/f d/g"), 0);
    assert_int_equal(run(s, "mv d e"), 0);
    expect_attrs(s, "e/g", 1001, 101, KV_MODE_FILE | 0600, 0);
    expect_attrs(s, "e/", 1000, 100, KV_MODE_DIR | 0750, 0);
    /* chmod/chown of a directory and a file; explicit and "now" times */
    n = kv_op_encode_setattr(op, sizeof op, "e", 1, KV_ATTR_OWNER, 7, 8,
                             0700, 0);
    assert_int_equal(apply_op(s, op, (uint32_t)n), 0);
    expect_attrs(s, "e/", 7, 8, KV_MODE_DIR | 0700, 0);
    n = kv_op_encode_setattr(op, sizeof op, "e/g", 3, KV_ATTR_MTIME, 0, 0, 0,
                             123456);
    assert_int_equal(apply_op(s, op, (uint32_t)n), 0);
    expect_attrs(s, "e/g", 1001, 101, KV_MODE_FILE | 0600, 123456);
    n = kv_op_encode_setattr(op, sizeof op, "e/g", 3, KV_ATTR_MTIME_NOW, 0, 0,
                             0, 0);
    assert_int_equal(apply_op(s, op, (uint32_t)n), 0);
    expect_attrs(s, "e/g", 1001, 101, KV_MODE_FILE | 0600, 5000);
    n = kv_op_encode_setattr(op, sizeof op, "e/nope", 6, KV_ATTR_MTIME_NOW,
                             0, 0, 0, 0);
    assert_int_equal(apply_op(s, op, (uint32_t)n), -ENOENT);
    /* a key written without OWNER records nothing; chmod records it */
    assert_int_equal(run(s, "put plain v"), 0);
    expect_attrs(s, "plain", 0, 0, 0, 0);
    n = kv_op_encode_setattr(op, sizeof op, "plain", 5, KV_ATTR_OWNER, 0, 0,
                             0444, 0);
    assert_int_equal(apply_op(s, op, (uint32_t)n), 0);
    expect_attrs(s, "plain", 0, 0, KV_MODE_FILE | 0444, 0);
    expect_digest_current(s);
    /* the encoders refuse what the decoder would */
    assert_int_equal(kv_op_encode_setattr(op, sizeof op, "x", 1, 0, 0, 0, 0, 0),
                     -EINVAL);
    assert_int_equal(kv_op_encode_setattr(op, sizeof op, "x", 1,
                                          KV_ATTR_MTIME | KV_ATTR_MTIME_NOW,
                                          0, 0, 0, 1), -EINVAL);
    assert_int_equal(kv_op_encode_setattr(op, sizeof op, "x", 1,
                                          KV_ATTR_OWNER, 0, 0, 010000, 0),
                     -EINVAL);
    n = kv_op_encode_del(in, sizeof in, "x", 1);
    assert_int_equal(kv_op_encode_owner(op, sizeof op, 0, 0, 0644, in,
                                        (size_t)n), -EINVAL);
    /* a snapshot carries them; the restored digest is the same */
    uint8_t *snap = NULL;
    size_t len = 0;
    assert_int_equal(kv_snapshot_encode(s, &snap, &len), 0);
    kv *t = kv_create();
    assert_int_equal(kv_snapshot_decode(t, snap, len), 0);
    free(snap);
    expect_attrs(t, "e/", 7, 8, KV_MODE_DIR | 0700, 0);
    expect_attrs(t, "e/g", 1001, 101, KV_MODE_FILE | 0600, 5000);
    expect_attrs(t, "plain", 0, 0, KV_MODE_FILE | 0444, 0);
    uint8_t d0[KV_DIGEST_BYTES], d1[KV_DIGEST_BYTES];
    kv_digest(s, d0);
    kv_digest(t, d1);
    assert_memory_equal(d0, d1, KV_DIGEST_BYTES);
    /* an owner changes the digest */
    n = kv_op_encode_setattr(op, sizeof op, "plain", 5, KV_ATTR_OWNER, 1, 0,
                             0444, 0);
    assert_int_equal(apply_op(s, op, (uint32_t)n), 0);
    kv_digest(s, d1);
    assert_memory_not_equal(d0, d1, KV_DIGEST_BYTES);
    kv_destroy(t);
    kv_destroy(s);
}

/* ------------------------------------------------------- the table */

typedef struct row {
    const char *op;
    int32_t want;
    const char *map;         /* NULL: not checked */
} row;

static const row rows[] = {
    /* directories and files at any depth */
    { "mkdir a", 0, "a/" },
    { "mkdir a", -EEXIST, NULL },
    { "put a x", -EISDIR, NULL },
    { "append a x", -EISDIR, NULL },
    { "mkdir a/b/c", -ENOENT, NULL },               /* mkdir -p is per level */
    { "mkdir a/b", 0, NULL },
    { "mkdir a/b/c", 0, "a/ a/b/ a/b/c/" },
    { "put a/b/c/f 1", 0, NULL },
    { "append a/b/c/f 2", 0, "a/ a/b/ a/b/c/ a/b/c/f=12" },
    { "put a/nodir/f 1", -ENOENT, NULL },
    { "put f top", 0, NULL },
    { "put f/g 1", -ENOTDIR, NULL },                /* a file on the way */
    { "put f/g/h 1", -ENOTDIR, NULL },
    { "mkdir f", -EEXIST, NULL },
    { "mkdir f/d", -ENOTDIR, NULL },
    { "del a", -EISDIR, NULL },
    { "del a/b/nope", -ENOENT, NULL },
    { "del f/x", -ENOTDIR, NULL },
    { "excl a 1", -EEXIST, NULL },                  /* O_EXCL over a dir */
    { "excl a/b/new 1", 0, NULL },
    { "excl a/b/new 2", -EEXIST, NULL },
    { "del a/b/new", 0, NULL },
    /* rmdir */
    { "rmdir a", -ENOTEMPTY, NULL },
    { "rmdir a/b/c", -ENOTEMPTY, NULL },
    { "rmdir f", -ENOTDIR, NULL },
    { "rmdir nope", -ENOENT, NULL },
    { "rmdir f/x", -ENOTDIR, NULL },
    { "mkdir e", 0, NULL },
    { "rmdir e", 0, "a/ a/b/ a/b/c/ a/b/c/f=12 f=top" },
    /* rename of files */
    { "mv f a/b/g", 0, "a/ a/b/ a/b/c/ a/b/c/f=12 a/b/g=top" },
    { "mv a/b/g a/b/g", 0, NULL },
    { "mv nope x", -ENOENT, NULL },
    { "mv a/b/g nodir/x", -ENOENT, NULL },
    { "mv a/b/g a/b/c", -EISDIR, NULL },            /* file over a dir */
    { "put h H", 0, NULL },
    { "mvn h a/b/g", -EEXIST, NULL },
    { "mv h a/b/g", 0, "a/ a/b/ a/b/c/ a/b/c/f=12 a/b/g=H" },  /* replaces */
    /* rename of directories: the whole tree in one op */
    { "mv a/b z", 0, "a/ z/ z/c/ z/c/f=12 z/g=H" },
    { "mv z z/c/in", -EINVAL, NULL },               /* into itself */
    { "mv z z", 0, NULL },
    { "put q Q", 0, NULL },
    { "mv z q", -ENOTDIR, NULL },                   /* dir over a file */
    { "mkdir a/full", 0, NULL },
    { "put a/full/x X", 0, NULL },
    { "mv z a/full", -ENOTEMPTY, NULL },
    { "del a/full/x", 0, NULL },
    { "mv z a/full", 0, "a/ a/full/ a/full/c/ a/full/c/f=12 a/full/g=H q=Q" },
    { "mv a/full/c a", -ENOTEMPTY, NULL },          /* onto an ancestor */
    { "mvn a/full/c q", -EEXIST, NULL },
    /* exchange */
    { "xchg q a/full", 0, "a/ a/full=Q q/ q/c/ q/c/f=12 q/g=H" },
    { "xchg q nope", -ENOENT, NULL },
    { "xchg q q/c", -EINVAL, NULL },
    { "xchg q/c q", -EINVAL, NULL },
    { "xchg q/g a/full", 0, "a/ a/full=H q/ q/c/ q/c/f=12 q/g=Q" },
    /* removing the tree bottom-up (rm -r) */
    { "del q/c/f", 0, NULL },
    { "rmdir q/c", 0, NULL },
    { "del q/g", 0, NULL },
    { "rmdir q", 0, "a/ a/full=H" },
};

static void test_table(void **state)
{
    (void)state;
    kv *s = kv_create();
    assert_non_null(s);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int32_t got = run(s, rows[i].op);
        if (got != rows[i].want)
            fail_msg("row %zu \"%s\": %d, want %d", i, rows[i].op, got,
                     rows[i].want);
        if (rows[i].map)
            expect_dump(s, rows[i].map);
        expect_digest_current(s);
    }
    kv_destroy(s);
}

/* Keys outside the rule: refused by the encoders and, forged, counted
 * no-ops where applied. */
static void test_path_rule(void **state)
{
    (void)state;
    uint8_t buf[16384];
    char name[KV_MAX_NAME + 2], path[KV_MAX_KEY + 2];
    memset(name, 'n', sizeof name);
    name[KV_MAX_NAME] = '\0';
    assert_true(kv_path_check(name, KV_MAX_NAME) == 0);
    assert_int_equal(kv_path_check(name, KV_MAX_NAME + 1), -ENAMETOOLONG);
    /* a path of KV_MAX_PATH bytes, names of 99 bytes */
    for (size_t i = 0; i < sizeof path; i++)
        path[i] = i % 100 == 99 ? '/' : 'p';
    path[KV_MAX_PATH - 1] = 'p';
    assert_int_equal(kv_path_check(path, KV_MAX_PATH), 0);
    assert_int_equal(kv_path_check(path, KV_MAX_PATH + 1), -ENAMETOOLONG);
    assert_int_equal(kv_op_encode_mkdir(buf, sizeof buf, path,
                                        KV_MAX_PATH + 1), -ENAMETOOLONG);
    const char *bad[] = { "/a", "a/", "a//b", "a/./b", "a/../b", "..",
                          ".chain", ".status/x", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kv_path_check(bad[i], strlen(bad[i])), -EINVAL);
        assert_int_equal(kv_op_encode_mkdir(buf, sizeof buf, bad[i],
                                            strlen(bad[i])), -EINVAL);
    }
    /* the mount's names are reserved at the top only */
    assert_int_equal(kv_path_check("d/.chain", 8), 0);
    assert_int_equal(kv_op_encode_renamex(buf, sizeof buf, "a", 1, "b", 1,
                                          KV_RENAME_FLAGS), -EINVAL);
    /* a forged RENAMEX with both flags, or a trailing byte on MKDIR */
    kv *s = kv_create();
    uint8_t op[32] = { KV_OP_RENAMEX, 1, 0, 'a', 1, 0, 'b', 3 };
    kvb_batch b;
    kvb_init(&b);
    kvb_add(&b, 1, 1, op, 8);
    op[0] = KV_OP_MKDIR;
    op[1] = 1;
    op[3] = 'd';
    kvb_add(&b, 1, 2, op, 5);
    assert_int_equal(kvb_apply(s, &b, 1), 0);
    kvb_free(&b);
    assert_int_equal(kv_invalid_ops(s), 2);
    assert_int_equal(kv_count(s), 0);
    kv_destroy(s);
}

/* A tree renamed to a longer path whose deepest key would pass
 * KV_MAX_PATH: ENAMETOOLONG, and nothing moved. */
static void test_tree_rename_too_long(void **state)
{
    (void)state;
    kv *s = kv_create();
    /* "verb " then a path of up to KV_MAX_PATH bytes, then " x" */
    static char cmd[KV_MAX_KEY + 32];
    char op[64];
    size_t len;
    /* d/nnn...(200)/nnn...(200)/... up to ~4000 bytes */
    assert_int_equal(run(s, "mkdir d"), 0);
    memcpy(cmd, "mkdir d", 7);
    len = 7;                              /* of cmd; the path from 6 */
    while (len - 6 + 201 < KV_MAX_PATH - 60) {
        cmd[len++] = '/';
        memset(cmd + len, 'n', 200);
        len += 200;
        cmd[len] = '\0';
        assert_int_equal(run(s, cmd), 0);
    }
    /* a file making the path exactly KV_MAX_PATH bytes: "put " path "/"
     * name " x" */
    size_t plen = len - 6;
    size_t flen = KV_MAX_PATH - plen - 1;
    memmove(cmd + 4, cmd + 6, plen);
    memcpy(cmd, "put ", 4);
    len = 4 + plen;
    cmd[len++] = '/';
    memset(cmd + len, 'f', flen);
    len += flen;
    memcpy(cmd + len, " x", 3);
    assert_int_equal(run(s, cmd), 0);
    char *before = dump(s);
    snprintf(op, sizeof op, "mv d dd");        /* one byte longer */
    assert_int_equal(run(s, op), -ENAMETOOLONG);
    char *after = dump(s);
    assert_string_equal(before, after);
    snprintf(op, sizeof op, "mv d e");         /* the same length: fine */
    assert_int_equal(run(s, op), 0);
    expect_digest_current(s);
    free(before);
    free(after);
    kv_destroy(s);
}

/* Two replicas applying the same ops hold the same map and digest, and a
 * snapshot of a tree restores it with its digest. */
static void test_replicas_and_snapshot(void **state)
{
    (void)state;
    kv *s[2] = { kv_create(), kv_create() };
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            (void)run(s[r], rows[i].op);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(run(s[r], "mkdir deep"), 0);
        assert_int_equal(run(s[r], "mkdir deep/er"), 0);
        assert_int_equal(run(s[r], "put deep/er/f v"), 0);
    }
    uint8_t d0[KV_DIGEST_BYTES], d1[KV_DIGEST_BYTES];
    kv_digest(s[0], d0);
    kv_digest(s[1], d1);
    assert_memory_equal(d0, d1, KV_DIGEST_BYTES);
    uint8_t *snap = NULL;
    size_t len = 0;
    assert_int_equal(kv_snapshot_encode(s[0], &snap, &len), 0);
    kv *t = kv_create();
    assert_int_equal(kv_snapshot_decode(t, snap, len), 0);
    free(snap);
    char *a = dump(s[0]), *c = dump(t);
    assert_string_equal(a, c);
    free(a);
    free(c);
    kv_digest(t, d1);
    assert_memory_equal(d0, d1, KV_DIGEST_BYTES);
    /* the restored tree goes on as the original */
    assert_int_equal(run(t, "rmdir deep"), -ENOTEMPTY);
    assert_int_equal(run(t, "mv deep/er deep2"), 0);
    expect_dump(t, "a/ a/full=H deep/ deep2/ deep2/f=v");
    kv_destroy(t);
    kv_destroy(s[0]);
    kv_destroy(s[1]);
}

/* A view frozen before a tree moves sees the whole old tree, never a mix
 * (what a snapshot written meanwhile holds). */
static void test_view_during_tree_rename(void **state)
{
    (void)state;
    kv *s = kv_create();
    assert_int_equal(run(s, "mkdir d"), 0);
    assert_int_equal(run(s, "put d/1 a"), 0);
    assert_int_equal(run(s, "put d/2 b"), 0);
    kv_view *v = NULL;
    assert_int_equal(kv_freeze(s, &v), 0);
    assert_int_equal(run(s, "mv d e"), 0);
    assert_int_equal(run(s, "put e/3 c"), 0);
    const char *key;
    size_t klen;
    const kv_value *val;
    char got[128] = "";
    while (kv_view_next(v, &key, &klen, &val) == 1)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%.*s;",
                 (int)klen, key);
    assert_string_equal(got, "d/;d/1;d/2;");
    kv_thaw(s, v);
    expect_dump(s, "e/ e/1=a e/2=b e/3=c");
    kv_reclaim(s, SIZE_MAX);
    assert_int_equal(kv_dead_nodes(s), 0);
    expect_digest_current(s);
    kv_destroy(s);
}

/* The observer is told every key a tree rename changed: the old keys as
 * removed, the new ones as present. */
struct told {
    char text[512];
};

static void on_changed(void *arg, const char *key, size_t key_len,
                       bool removed)
{
    struct told *t = arg;
    size_t n = strlen(t->text);
    snprintf(t->text + n, sizeof t->text - n, "%s%.*s ", removed ? "-" : "+",
             (int)key_len, key);
}

static void test_changes_told(void **state)
{
    (void)state;
    kv *s = kv_create();
    struct told t = { "" };
    assert_int_equal(run(s, "mkdir d"), 0);
    assert_int_equal(run(s, "put d/1 a"), 0);
    assert_int_equal(run(s, "put x b"), 0);
    kv_set_changed(s, on_changed, &t);
    assert_int_equal(run(s, "mv d e"), 0);
    assert_string_equal(t.text, "-d/ -d/1 +e/ +e/1 ");
    t.text[0] = '\0';
    assert_int_equal(run(s, "xchg x e"), 0);
    assert_string_equal(t.text, "-x -e/ -e/1 +e +x/ +x/1 ");
    t.text[0] = '\0';
    assert_int_equal(run(s, "mkdir n"), 0);
    assert_int_equal(run(s, "rmdir n"), 0);
    assert_string_equal(t.text, "+n/ -n/ ");
    kv_destroy(s);
}

/* A history of the flat namespace (every op with single names, as chains
 * written before directories hold) replays to the digest it always gave:
 * the constant was computed by the code before directories existed. */
static void test_flat_history_unchanged(void **state)
{
    (void)state;
    kv *s = kv_create();
    const char *ops[] = {
        "put a 1", "put b 22", "append a 3", "mv a c", "put d 4",
        "mv d b", "del c", "append e 5", "excl e 6", "excl f 7",
        "mv f g", "del nope", "mv nope x",
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        (void)run(s, ops[i]);
    expect_dump(s, "b=4 e=5 g=7");
    uint8_t d[KV_DIGEST_BYTES];
    kv_digest(s, d);
    char hex[2 * KV_DIGEST_BYTES + 1];
    for (int i = 0; i < KV_DIGEST_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(hex, FLAT_DIGEST);
    kv_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_path_rule),
        cmocka_unit_test(test_replicas_and_snapshot),
        cmocka_unit_test(test_view_during_tree_rename),
        cmocka_unit_test(test_changes_told),
        cmocka_unit_test(test_flat_history_unchanged),
        cmocka_unit_test(test_owner_and_mode),
        cmocka_unit_test(test_tree_rename_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
