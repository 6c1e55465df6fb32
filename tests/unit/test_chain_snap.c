/*
 * test_chain_snap.c - snapshot files, the snapshot store, restart from a
 * snapshot plus the chain after it, and compaction (chain/snap.h):
 *   - encode/decode round trip (keys, values across frames, metadata,
 *     session table, digest, index, head hash, membership), determinism;
 *   - a flipped byte at any position is damage at or just before it; a
 *     file cut at any length is damage at or before the cut;
 *   - chunked receive: any chunking works, a bad chunk is refused by the
 *     end of its frame, expectations are checked from the header on,
 *     chunks out of order are refused without harm;
 *   - the store keeps two, falls back from a damaged or cut newest one
 *     (reporting path and offset) and quarantines it;
 *   - compaction boundaries: only segments wholly covered go, a partly
 *     covered one stays, the active one stays; the chain then starts after
 *     block 1 and is verified against the snapshot's head hash;
 *   - restart = snapshot + replay gives the live state; verification of
 *     snapshot plus chain finds damage in either and names it;
 *   - a snapshot taken on another thread while entries apply holds the
 *     state of its index.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "../../chain/chain.h"
#include "../../chain/kv.h"
#include "../../chain/snap.h"
#include "kvbuild.h"
#include "tmpdir.h"

#define SEG_BYTES 4096

/* ------------------------------------------------------------ helpers */

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* A node in miniature: every entry is appended to the chain and applied
 * to the state, as the node's loop does. */
typedef struct mini {
    char *dir;
    chain *c;
    kv *s;
    uint64_t seq;
} mini;

static void mini_open(mini *m)
{
    chain_open_report rep;
    chain_damage dmg;
    m->dir = make_tmpdir();
    assert_int_equal(chain_open(m->dir, &m->c, &rep, &dmg), 0);
    chain_set_segment_bytes(m->c, SEG_BYTES);
    m->s = kv_create();
    assert_non_null(m->s);
    m->seq = 1;
}

static void mini_entry(mini *m, kvb_batch *b)
{
    uint64_t slot = chain_head_index(m->c) + 1;
    assert_int_equal(kv_applied_index(m->s) + 1, slot);
    assert_int_equal(chain_append(m->c, slot, 1000 + slot, PX_ENTRY_BATCH,
                                  b->buf, b->len, NULL), 0);
    px_entry e = { .slot = slot, .time_ms = 1000 + slot,
                   .kind = PX_ENTRY_BATCH, .len = b->len, .data = b->buf };
    assert_int_equal(kv_apply_entry(m->s, &e, NULL, NULL), 0);
}

/* One entry of `ops` random puts/dels/appends/renames on keys k0..k(nk-1),
 * values of up to vmax bytes. */
static void mini_churn(mini *m, int ops, uint32_t nk, uint32_t vmax)
{
    kvb_batch b;
    kvb_init(&b);
    static uint8_t val[1 << 16];
    for (int i = 0; i < ops; i++) {
        uint64_t r = rnd();
        char key[32], key2[32];
        snprintf(key, sizeof key, "k%u", (unsigned)(r % nk));
        snprintf(key2, sizeof key2, "k%u", (unsigned)((r >> 24) % nk));
        uint32_t vlen = vmax ? (uint32_t)((r >> 32) % vmax) : 0;
        for (uint32_t k = 0; k < vlen; k += 8) {
            uint64_t x = rnd();
            memcpy(val + k, &x, vlen - k < 8 ? vlen - k : 8);
        }
        uint8_t *op = malloc(vlen + 64);
        assert_non_null(op);
        uint32_t n;
        switch ((r >> 60) % 5) {
        case 0:
        case 1:
            n = kvb_put(op, vlen + 64, key, val, vlen);
            break;
        case 2:
            n = kvb_del(op, vlen + 64, key);
            break;
        case 3:
            n = kvb_append(op, vlen + 64, key, val, vlen % 16);
            break;
        default:
            n = kvb_rename(op, vlen + 64, key, key2);
            break;
        }
        kvb_add(&b, 1 + (r % 5), m->seq++, op, n);
        free(op);
    }
    mini_entry(m, &b);
    kvb_free(&b);
}

static void mini_close(mini *m)
{
    kv_destroy(m->s);
    if (m->c)
        chain_close(m->c);
    rm_tree(m->dir);
}

static int visit_collect(void *arg, const char *key, size_t key_len,
                         const kv_value *v);

typedef struct rec {
    char key[300];
    size_t key_len;
    const kv_value *val;
} rec;

typedef struct recs {
    rec *r;
    size_t n, cap;
} recs;

static int visit_collect(void *arg, const char *key, size_t key_len,
                         const kv_value *v)
{
    recs *rs = arg;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 64;
        rs->r = realloc(rs->r, rs->cap * sizeof *rs->r);
        assert_non_null(rs->r);
    }
    rec *x = &rs->r[rs->n++];
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

/* Two states hold the same keys, values and metadata, index and digest. */
static void same_state(kv *a, kv *b)
{
    recs x = { 0 }, y = { 0 };
    kv_scan(a, "", 0, visit_collect, &x);
    kv_scan(b, "", 0, visit_collect, &y);
    assert_int_equal(x.n, y.n);
    for (size_t i = 0; i < x.n; i++) {
        assert_int_equal(x.r[i].key_len, y.r[i].key_len);
        assert_memory_equal(x.r[i].key, y.r[i].key, x.r[i].key_len);
        const kv_value *p = x.r[i].val, *q = y.r[i].val;
        assert_int_equal(p->len, q->len);
        assert_int_equal(p->mtime_ms, q->mtime_ms);
        assert_int_equal(p->version, q->version);
        assert_int_equal(p->ident, q->ident);
        assert_int_equal(p->changes, q->changes);
        assert_memory_equal(p->data, q->data, p->len);
    }
    assert_int_equal(kv_applied_index(a), kv_applied_index(b));
    uint8_t da[KV_DIGEST_BYTES], db[KV_DIGEST_BYTES];
    kv_digest(a, da);
    kv_digest(b, db);
    assert_memory_equal(da, db, KV_DIGEST_BYTES);
    assert_int_equal(kv_count(a), kv_count(b));
    assert_int_equal(kv_bytes(a), kv_bytes(b));
    recs_free(&x);
    recs_free(&y);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_all(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    fclose(f);
}

/* Write a snapshot of s (head hash from chain c) to path. */
static void snap_to_file(kv *s, const uint8_t head[CHAIN_HASH_BYTES],
                         const char *path, snap_info *info)
{
    kv_view *v;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(kv_freeze(s, &v), 0);
    static const uint8_t members[] = "voters 1 2 3";
    assert_int_equal(snapfile_write(fd, v, head, members, sizeof members,
                                    info), 0);
    kv_thaw(s, v);
    close(fd);
}

/* A state with small and large values, the session table in use. */
static void fill(mini *m, int entries, uint32_t vmax)
{
    for (int i = 0; i < entries; i++)
        mini_churn(m, 8, 400, vmax);
}

/* ------------------------------------------------ the file round trip */

static void test_round_trip(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    fill(&m, 60, 3000);
    /* a value larger than a frame, incompressible */
    uint8_t *big = malloc(200000);
    for (uint32_t i = 0; i < 200000; i++)
        big[i] = (uint8_t)rnd();
    uint8_t *op = malloc(200100);
    kvb_batch b;
    kvb_init(&b);
    kvb_add(&b, 9, m.seq++, op, kvb_put(op, 200100, "big", big, 200000));
    kvb_add(&b, 9, m.seq++, op, kvb_put(op, 200100, "empty", "x", 1));
    kvb_add(&b, 9, m.seq++, op, kvb_put(op, 200100, "empty", "", 0));
    mini_entry(&m, &b);
    kvb_free(&b);
    free(op);
    free(big);

    char path[700];
    snprintf(path, sizeof path, "%s/one.pxs", m.dir);
    snap_info wi, ri;
    snap_to_file(m.s, chain_head_hash(m.c), path, &wi);
    assert_int_equal(wi.index, chain_head_index(m.c));
    assert_int_equal(wi.keys, kv_count(m.s));
    assert_true(wi.file_bytes > 200000);

    kv *t = NULL;
    chain_damage dmg;
    assert_int_equal(snapfile_load(path, NULL, &t, &ri, &dmg), 0);
    same_state(m.s, t);
    assert_int_equal(kv_get(t, "empty", 5)->changes, 2);  /* counted */
    assert_int_equal(ri.index, wi.index);
    assert_memory_equal(ri.head_hash, chain_head_hash(m.c), CHAIN_HASH_BYTES);
    assert_memory_equal(ri.digest, wi.digest, KV_DIGEST_BYTES);
    assert_int_equal(ri.raw_bytes, wi.raw_bytes);
    assert_int_equal(ri.file_bytes, wi.file_bytes);
    assert_int_equal(ri.membership_len, sizeof "voters 1 2 3");
    assert_string_equal((const char *)ri.membership, "voters 1 2 3");

    /* the session table came along: the last request again is a
     * duplicate, answered, not applied (same state after it) */
    kv *u = NULL;
    assert_int_equal(snapfile_load(path, NULL, &u, NULL, &dmg), 0);
    kvb_init(&b);
    uint8_t op2[64];
    kvb_add(&b, 9, m.seq - 1, op2, kvb_put(op2, sizeof op2, "empty", "x", 1));
    assert_int_equal(kvb_apply(u, &b, 5), 0);
    kvb_free(&b);
    const kv_value *v = kv_get(u, "empty", 5);
    assert_non_null(v);
    assert_int_equal(v->len, 0);
    kv_destroy(u);

    /* deterministic: the same state gives the same bytes */
    char path2[700];
    snprintf(path2, sizeof path2, "%s/two.pxs", m.dir);
    snap_to_file(t, chain_head_hash(m.c), path2, NULL);
    size_t l1, l2;
    uint8_t *f1 = read_all(path, &l1), *f2 = read_all(path2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(f1, f2, l1);
    free(f1);
    free(f2);

    /* an empty state */
    kv *e = kv_create();
    snap_to_file(e, chain_head_hash(m.c), path2, NULL);
    kv *e2 = NULL;
    assert_int_equal(snapfile_load(path2, NULL, &e2, &ri, &dmg), 0);
    assert_int_equal(kv_count(e2), 0);
    assert_int_equal(ri.keys, 0);
    kv_destroy(e);
    kv_destroy(e2);
    kv_destroy(t);
    mini_close(&m);
}

/* A snapshot file of a few frames: returns its bytes. */
static uint8_t *multi_frame_file(mini *m, const char *path, size_t *len)
{
    fill(m, 40, 12000);     /* values of random bytes: several frames */
    snap_to_file(m->s, chain_head_hash(m->c), path, NULL);
    return read_all(path, len);
}

static void test_flip_any_byte(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    char path[700];
    snprintf(path, sizeof path, "%s/s.pxs", m.dir);
    size_t len;
    uint8_t *orig = multi_frame_file(&m, path, &len);
    assert_true(len > 3 * SNAP_FRAME_BYTES);
    uint8_t *buf = malloc(len);
    chain_damage dmg;
    size_t tested = 0;
    size_t step = len / 500;
    for (size_t pos = 0; pos < len; pos++) {
        /* every byte of header, membership, first frame header, trailer;
         * a sample elsewhere */
        bool edge = pos < 300 || pos + 200 >= len;
        if (!edge && pos % step != 0)
            continue;
        memcpy(buf, orig, len);
        buf[pos] ^= (uint8_t)(1u << (pos % 8));
        write_all(path, buf, len);
        int rc = snapfile_load(path, NULL, NULL, NULL, &dmg);
        if (rc != -EBADMSG)
            fail_msg("flip at %zu: rc %d", pos, rc);
        assert_string_equal(dmg.path, path);
        if (dmg.offset > pos || pos - dmg.offset >= SNAP_FRAME_BYTES + 8 + 120)
            fail_msg("flip at %zu reported at %llu (%s)", pos,
                     (unsigned long long)dmg.offset, dmg.reason);
        tested++;
    }
    assert_true(tested > 500);
    write_all(path, orig, len);
    assert_int_equal(snapfile_load(path, NULL, NULL, NULL, &dmg), 0);
    free(buf);
    free(orig);
    mini_close(&m);
}

static void test_truncated_file(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    char path[700];
    snprintf(path, sizeof path, "%s/s.pxs", m.dir);
    size_t len;
    uint8_t *orig = multi_frame_file(&m, path, &len);
    chain_damage dmg;
    size_t step = len / 300;
    for (size_t cut = 0; cut < len; cut++) {
        bool edge = cut < 300 || cut + 200 >= len;
        if (!edge && cut % step != 0)
            continue;
        write_all(path, orig, cut);
        int rc = snapfile_load(path, NULL, NULL, NULL, &dmg);
        if (rc != -EBADMSG)
            fail_msg("cut at %zu: rc %d", cut, rc);
        if (dmg.offset > cut)
            fail_msg("cut at %zu reported at %llu (%s)", cut,
                     (unsigned long long)dmg.offset, dmg.reason);
    }
    /* and a byte too many */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, orig, len);
    longer[len] = 0;
    write_all(path, longer, len + 1);
    assert_int_equal(snapfile_load(path, NULL, NULL, NULL, &dmg), -EBADMSG);
    free(longer);
    free(orig);
    mini_close(&m);
}

/* Feed bytes in random chunks; returns the receiver's last rc and the
 * number of bytes it had accepted when it answered. */
static int feed_chunks(snap_recv *r, const uint8_t *p, size_t len,
                       size_t max_chunk, uint64_t *at)
{
    size_t off = 0;
    while (off < len) {
        size_t n = 1 + (size_t)(rnd() % max_chunk);
        if (n > len - off)
            n = len - off;
        int rc = snap_recv_chunk(r, off, p + off, n);
        if (rc) {
            *at = off + n;
            return rc;
        }
        off += n;
    }
    *at = off;
    return 0;
}

static void test_chunked_receive(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    char path[700];
    snprintf(path, sizeof path, "%s/s.pxs", m.dir);
    size_t len;
    uint8_t *orig = multi_frame_file(&m, path, &len);
    snap_info info;
    chain_damage dmg;
    assert_int_equal(snapfile_load(path, NULL, NULL, &info, &dmg), 0);
    snap_expect ex = { .index = info.index };
    memcpy(ex.head_hash, info.head_hash, CHAIN_HASH_BYTES);
    memcpy(ex.digest, info.digest, KV_DIGEST_BYTES);

    /* any chunking works */
    size_t sizes[] = { 1, 7, 100, 4096, 70000, 1 << 20 };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        snap_recv *r;
        uint64_t at;
        assert_int_equal(snap_recv_begin(len, &ex, -1, &r), 0);
        assert_int_equal(feed_chunks(r, orig, len, sizes[k], &at), 0);
        kv *s = NULL;
        assert_int_equal(snap_recv_finish(r, &s, NULL), 0);
        same_state(m.s, s);
        kv_destroy(s);
        snap_recv_free(r);
    }

    /* a chunk out of order is refused and changes nothing */
    snap_recv *r;
    assert_int_equal(snap_recv_begin(len, &ex, -1, &r), 0);
    assert_int_equal(snap_recv_chunk(r, 0, orig, 1000), 0);
    assert_int_equal(snap_recv_chunk(r, 2000, orig + 2000, 10), -EINVAL);
    assert_int_equal(snap_recv_chunk(r, 999, orig + 999, 10), -EINVAL);
    assert_int_equal(snap_recv_chunk(r, 1000, orig + 1000, len), -EINVAL);
    assert_int_equal(snap_recv_received(r), 1000);
    assert_int_equal(snap_recv_chunk(r, 1000, orig + 1000, len - 1000), 0);
    kv *s = NULL;
    assert_int_equal(snap_recv_finish(r, &s, NULL), 0);
    kv_destroy(s);
    snap_recv_free(r);

    /* a bad chunk: refused no later than the end of the frame holding it */
    uint8_t *bad = malloc(len);
    for (int trial = 0; trial < 40; trial++) {
        memcpy(bad, orig, len);
        size_t pos = (size_t)(rnd() % len);
        bad[pos] ^= 0x10;
        assert_int_equal(snap_recv_begin(len, &ex, -1, &r), 0);
        uint64_t at;
        int rc = feed_chunks(r, bad, len, 5000, &at);
        if (rc == 0)
            rc = snap_recv_finish(r, NULL, NULL);
        assert_int_equal(rc, -EBADMSG);
        const chain_damage *d = snap_recv_damage(r);
        assert_true(d->offset <= pos);
        assert_true(at <= pos + SNAP_FRAME_BYTES + 8 + 48 + 120 + 5000);
        snap_recv_free(r);
    }
    free(bad);

    /* expectations are checked from the header on */
    snap_expect wrong = ex;
    wrong.index++;
    assert_int_equal(snap_recv_begin(len, &wrong, -1, &r), 0);
    assert_int_equal(snap_recv_chunk(r, 0, orig, 120), -EBADMSG);
    assert_int_equal(snap_recv_damage(r)->offset, 16);
    snap_recv_free(r);
    wrong = ex;
    wrong.digest[3] ^= 1;
    assert_int_equal(snap_recv_begin(len, &wrong, -1, &r), 0);
    assert_int_equal(snap_recv_chunk(r, 0, orig, 120), -EBADMSG);
    assert_int_equal(snap_recv_damage(r)->offset, 56);
    snap_recv_free(r);
    wrong = ex;
    wrong.head_hash[0] ^= 1;
    assert_int_equal(snap_recv_begin(len, &wrong, -1, &r), 0);
    assert_int_equal(snap_recv_chunk(r, 0, orig, 120), -EBADMSG);
    assert_int_equal(snap_recv_damage(r)->offset, 24);
    snap_recv_free(r);
    /* a total that is not the file's */
    assert_int_equal(snap_recv_begin(len + 10, &ex, -1, &r), 0);
    uint64_t at;
    int rc = feed_chunks(r, orig, len, 9000, &at);
    if (rc == 0)
        rc = snap_recv_finish(r, NULL, NULL);
    assert_int_equal(rc, -EBADMSG);
    snap_recv_free(r);
    free(orig);
    mini_close(&m);
}

/* A payload of many compression blocks (more than the writer's ring of
 * them, values larger than a block among them): it loads back the same,
 * and writing the same view again gives the same bytes (snapfile.c
 * invariant 4, with blocks compressed on several threads). */
static void test_many_blocks(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    uint32_t big_len = 3u << 20;                /* 3 blocks alone */
    uint8_t *val = malloc(big_len);
    uint8_t *op = malloc(big_len + 256);
    assert_non_null(val);
    assert_non_null(op);
    for (int k = 0; k < 40; k++) {
        uint32_t len = k == 7 ? big_len : 20000 + (uint32_t)k * 4000;
        for (uint32_t i = 0; i < len; i++)    /* half compressible */
            val[i] = (i & 64) ? (uint8_t)rnd() : (uint8_t)('a' + i % 7);
        char key[32];
        snprintf(key, sizeof key, "b%03d", k);
        kvb_batch b;
        kvb_init(&b);
        kvb_add(&b, 3, m.seq++, op, kvb_put(op, big_len + 256, key, val, len));
        mini_entry(&m, &b);
        kvb_free(&b);
    }
    free(op);
    free(val);
    fill(&m, 20, 3000);
    char p1[700], p2[700];
    snprintf(p1, sizeof p1, "%s/a.pxs", m.dir);
    snprintf(p2, sizeof p2, "%s/b.pxs", m.dir);
    snap_info i1, i2;
    snap_to_file(m.s, chain_head_hash(m.c), p1, &i1);
    snap_to_file(m.s, chain_head_hash(m.c), p2, &i2);
    assert_true(i1.raw_bytes > (6u << 20));   /* > the ring of 4 */
    size_t l1, l2;
    uint8_t *f1 = read_all(p1, &l1), *f2 = read_all(p2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(f1, f2, l1);
    free(f1);
    free(f2);
    kv *t = NULL;
    chain_damage dmg;
    assert_int_equal(snapfile_load(p1, NULL, &t, NULL, &dmg), 0);
    same_state(m.s, t);
    kv_destroy(t);
    mini_close(&m);
}

/* A state loaded from a file (its keys appended in order, kv_append_new)
 * goes on exactly like the state it came from: changes of keys before,
 * between and after the loaded ones, at every skip-list level, and the
 * digest recomputed from its records is the one kept.  A check of the
 * same file without a state (no map built) reports the same figures. */
static void test_loaded_state_takes_changes(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    fill(&m, 300, 200);                 /* ~400 keys: heights up to 5 */
    char path[700];
    snprintf(path, sizeof path, "%s/l.pxs", m.dir);
    snap_info wi, ci;
    snap_to_file(m.s, chain_head_hash(m.c), path, &wi);
    kv *t = NULL;
    chain_damage dmg;
    assert_int_equal(snapfile_load(path, NULL, &t, NULL, &dmg), 0);
    same_state(m.s, t);
    assert_int_equal(snapfile_load(path, NULL, NULL, &ci, &dmg), 0);
    assert_int_equal(ci.keys, wi.keys);
    assert_int_equal(ci.value_bytes, wi.value_bytes);
    assert_memory_equal(ci.digest, wi.digest, KV_DIGEST_BYTES);
    /* the same entries to both: t is the node restarted from the file
     * (mini_churn applies to m.s; t gets the chain's blocks) */
    for (int i = 0; i < 200; i++) {
        uint64_t before = chain_head_index(m.c);
        mini_churn(&m, 8, 600, 100);    /* keys beyond the loaded ones too */
        chain_block b;
        assert_int_equal(chain_read(m.c, before + 1, &b), 0);
        px_entry e = { .slot = b.index, .time_ms = b.time_ms,
                       .kind = b.kind, .len = b.len, .data = b.data };
        assert_int_equal(kv_apply_entry(t, &e, NULL, NULL), 0);
        chain_block_free(&b);
    }
    same_state(m.s, t);
    uint8_t d1[KV_DIGEST_BYTES], d2[KV_DIGEST_BYTES];
    kv_digest(t, d1);
    assert_int_equal(kv_digest_recompute(t, d2), 0);
    assert_memory_equal(d1, d2, KV_DIGEST_BYTES);
    /* every key is found by lookup as well as by scan */
    recs x = { 0 };
    kv_scan(t, "", 0, visit_collect, &x);
    for (size_t i = 0; i < x.n; i++)
        assert_ptr_equal(kv_get(t, x.r[i].key, x.r[i].key_len), x.r[i].val);
    recs_free(&x);
    kv_destroy(t);
    mini_close(&m);
}

/* A snapshot whose records do not match the digest in its header, with
 * every checksum right (a writer bug, or a file made up elsewhere): the
 * digest recomputed from the records refuses it. */
static void test_digest_mismatch_refused(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    fill(&m, 10, 100);
    char path[700];
    snprintf(path, sizeof path, "%s/s.pxs", m.dir);
    snap_info info;
    snap_to_file(m.s, chain_head_hash(m.c), path, &info);
    size_t len;
    uint8_t *f = read_all(path, &len);
    f[60] ^= 1;                                  /* the digest field */
    uint32_t crc = (uint32_t)crc32(0L, f, 116);  /* header checksum */
    for (int i = 0; i < 4; i++)
        f[116 + i] = (uint8_t)(crc >> (8 * i));
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(f, len - 32, f + len - 32, &n, EVP_sha256(),
                                NULL), 1);
    write_all(path, f, len);
    chain_damage dmg;
    assert_int_equal(snapfile_load(path, NULL, NULL, NULL, &dmg), -EBADMSG);
    if (dmg.offset != 56 || !strstr(dmg.reason, "digest"))
        fail_msg("digest mismatch reported at %llu: %s",
                 (unsigned long long)dmg.offset, dmg.reason);
    /* a load that builds the state refuses it the same way */
    kv *t = NULL;
    assert_int_equal(snapfile_load(path, NULL, &t, NULL, &dmg), -EBADMSG);
    assert_null(t);
    assert_int_equal(dmg.offset, 56);
    /* an expectation with another digest is refused from the header on */
    free(f);
    snap_to_file(m.s, chain_head_hash(m.c), path, &info);
    f = read_all(path, &len);
    snap_expect ex = { .index = info.index };
    memcpy(ex.head_hash, info.head_hash, CHAIN_HASH_BYTES);
    memcpy(ex.digest, info.digest, KV_DIGEST_BYTES);
    ex.digest[31] ^= 0x80;
    snap_recv *r;
    assert_int_equal(snap_recv_begin(len, &ex, -1, &r), 0);
    assert_int_equal(snap_recv_chunk(r, 0, f, 200), -EBADMSG);
    assert_int_equal(snap_recv_damage(r)->offset, 56);
    snap_recv_free(r);
    free(f);
    mini_close(&m);
}

/* --------------------------------------------------------- the store */

static void test_store_keeps_two_and_falls_back(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    snapstore *st;
    assert_int_equal(snapstore_open(m.dir, true, &st), 0);
    assert_int_equal(snapstore_count(st), 0);
    kv *t = NULL;
    assert_int_equal(snapstore_load(st, &t, NULL, NULL), -ENOENT);

    uint64_t idx[3];
    kv *states[3];
    for (int i = 0; i < 3; i++) {
        fill(&m, 20, 500);
        snap_info info;
        assert_int_equal(snapstore_take(st, m.s, chain_head_hash(m.c), NULL, 0,
                                        &info), 0);
        idx[i] = info.index;
        assert_int_equal(info.index, kv_applied_index(m.s));
        uint8_t *blob;
        size_t blen;
        assert_int_equal(kv_snapshot_encode(m.s, &blob, &blen), 0);
        states[i] = kv_create();
        assert_int_equal(kv_snapshot_decode(states[i], blob, blen), 0);
        free(blob);
    }
    assert_int_equal(snapstore_count(st), 2);
    assert_int_equal(snapstore_index_at(st, 0), idx[2]);
    assert_int_equal(snapstore_index_at(st, 1), idx[1]);
    assert_int_equal(snapstore_compact_index(st), idx[1]);
    char p0[700];
    assert_int_equal(snapstore_path(st, idx[0], p0, sizeof p0), 0);
    assert_int_equal(access(p0, F_OK), -1);

    snap_load_report rep;
    snap_info info;
    assert_int_equal(snapstore_load(st, &t, &info, &rep), 0);
    assert_false(rep.fell_back);
    assert_int_equal(info.index, idx[2]);
    same_state(states[2], t);
    kv_destroy(t);

    /* the newest damaged: the previous one, with path and offset */
    char p2[700];
    assert_int_equal(snapstore_path(st, idx[2], p2, sizeof p2), 0);
    size_t len;
    uint8_t *bytes = read_all(p2, &len);
    bytes[len / 2] ^= 4;
    write_all(p2, bytes, len);
    snapstore_close(st);
    assert_int_equal(snapstore_open(m.dir, true, &st), 0);
    assert_int_equal(snapstore_load(st, &t, &info, &rep), 0);
    assert_true(rep.fell_back);
    assert_int_equal(rep.n_damaged, 1);
    assert_string_equal(rep.damaged[0].path, p2);
    assert_true(rep.damaged[0].offset <= len / 2);
    assert_true(rep.quarantined);
    assert_int_equal(info.index, idx[1]);
    same_state(states[1], t);
    kv_destroy(t);
    /* quarantined: not counted any more, kept as evidence */
    assert_int_equal(snapstore_count(st), 1);
    char dam[760];
    snprintf(dam, sizeof dam, "%s.damaged", p2);
    assert_int_equal(access(dam, F_OK), 0);

    /* a cut newest one (a new take, then truncated) */
    fill(&m, 5, 500);
    assert_int_equal(snapstore_take(st, m.s, chain_head_hash(m.c), NULL, 0,
                                    &info), 0);
    char p3[700];
    assert_int_equal(snapstore_path(st, info.index, p3, sizeof p3), 0);
    free(bytes);
    bytes = read_all(p3, &len);
    write_all(p3, bytes, len - 100);
    snapstore_close(st);
    assert_int_equal(snapstore_open(m.dir, false, &st), 0);
    assert_int_equal(snapstore_load(st, &t, &info, &rep), 0);
    assert_true(rep.fell_back);
    assert_string_equal(rep.damaged[0].path, p3);
    assert_true(rep.damaged[0].offset <= len - 100);
    assert_false(rep.quarantined);     /* read-only: reported only */
    assert_int_equal(info.index, idx[1]);
    kv_destroy(t);
    free(bytes);

    /* every snapshot damaged: -EBADMSG */
    assert_int_equal(snapstore_path(st, idx[1], p2, sizeof p2), 0);
    bytes = read_all(p2, &len);
    bytes[10] ^= 1;
    write_all(p2, bytes, len);
    free(bytes);
    assert_int_equal(snapstore_load(st, &t, &info, &rep), -EBADMSG);
    assert_int_equal(rep.n_damaged, 2);
    assert_null(t);
    snapstore_close(st);
    for (int i = 0; i < 3; i++)
        kv_destroy(states[i]);
    mini_close(&m);
}

/* Leftover temporary files go; a take that failed leaves the store as it
 * was; a receive into the store installs a checked snapshot only. */
static void test_store_receive_and_leftovers(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    fill(&m, 20, 800);
    snapstore *st;
    assert_int_equal(snapstore_open(m.dir, true, &st), 0);
    snap_info info;
    assert_int_equal(snapstore_take(st, m.s, chain_head_hash(m.c), NULL, 0,
                                    &info), 0);
    snap_reader *rd;
    uint64_t size;
    assert_int_equal(snapstore_reader_open(st, info.index, &rd, &size), 0);
    assert_int_equal(size, info.file_bytes);
    uint8_t *file = malloc(size);
    for (uint64_t off = 0; off < size; off += 3000)
        assert_true(snap_reader_read(rd, off, file + off, 3000) > 0);
    assert_int_equal(snap_reader_read(rd, size, file, 10), 0);

    /* a second node receives it in chunks */
    char *dir2 = make_tmpdir();
    snapstore *st2;
    assert_int_equal(snapstore_open(dir2, true, &st2), 0);
    snap_expect ex = { .index = info.index };
    memcpy(ex.head_hash, info.head_hash, CHAIN_HASH_BYTES);
    memcpy(ex.digest, info.digest, KV_DIGEST_BYTES);

    /* a damaged transfer installs nothing and leaves no file */
    snapstore_recv *rv;
    assert_int_equal(snapstore_recv_begin(st2, size, &ex, &rv), 0);
    file[size / 2] ^= 1;
    int rc = 0;
    for (uint64_t off = 0; rc == 0 && off < size; off += 5000)
        rc = snapstore_recv_chunk(rv, off, file + off,
                                  size - off < 5000 ? size - off : 5000);
    if (rc == 0)
        rc = snapstore_recv_finish(st2, rv, NULL, NULL);
    assert_int_equal(rc, -EBADMSG);
    assert_true(snapstore_recv_damage(rv)->offset <= size / 2);
    snapstore_recv_free(rv);
    file[size / 2] ^= 1;
    assert_int_equal(snapstore_count(st2), 0);
    char sdir[700];
    snprintf(sdir, sizeof sdir, "%s/snap", dir2);
    DIR *d = opendir(sdir);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        files += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(files, 0);

    assert_int_equal(snapstore_recv_begin(st2, size, &ex, &rv), 0);
    for (uint64_t off = 0; off < size; off += 5000)
        assert_int_equal(snapstore_recv_chunk(rv, off, file + off,
                         size - off < 5000 ? size - off : 5000), 0);
    kv *got = NULL;
    snap_info gi;
    assert_int_equal(snapstore_recv_finish(st2, rv, &got, &gi), 0);
    snapstore_recv_free(rv);
    same_state(m.s, got);
    assert_int_equal(snapstore_count(st2), 1);
    kv *again = NULL;
    assert_int_equal(snapstore_load(st2, &again, NULL, NULL), 0);
    same_state(m.s, again);
    kv_destroy(again);
    kv_destroy(got);
    snap_reader_close(rd);
    free(file);

    /* a leftover .part file is removed when the store opens */
    char part[760];
    snprintf(part, sizeof part, "%s/tmp-1-00000000000000000007.part", sdir);
    write_all(part, (const uint8_t *)"junk", 4);
    snapstore_close(st2);
    assert_int_equal(snapstore_open(dir2, true, &st2), 0);
    assert_int_equal(access(part, F_OK), -1);
    snapstore_close(st2);
    rm_tree(dir2);
    snapstore_close(st);
    mini_close(&m);
}

/* ------------------------------------------------- compaction, restart */

static uint32_t seg_count(const char *dir)
{
    char cdir[700];
    snprintf(cdir, sizeof cdir, "%s/chain", dir);
    DIR *d = opendir(cdir);
    assert_non_null(d);
    uint32_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strncmp(de->d_name, "seg-", 4) == 0;
    closedir(d);
    return n;
}

/* First block of each segment, ascending. */
static uint32_t seg_firsts(const char *dir, uint64_t *out, uint32_t cap)
{
    char cdir[700];
    snprintf(cdir, sizeof cdir, "%s/chain", dir);
    DIR *d = opendir(cdir);
    uint32_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, "seg-", 4) == 0 && n < cap)
            out[n++] = strtoull(de->d_name + 4, NULL, 10);
    closedir(d);
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
            uint64_t x = out[j];
            out[j] = out[j - 1];
            out[j - 1] = x;
        }
    return n;
}

static void test_compaction_boundaries(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    fill(&m, 120, 200);
    assert_int_equal(chain_sync(m.c), 0);
    uint64_t firsts[256];
    uint32_t n = seg_firsts(m.dir, firsts, 256);
    assert_true(n >= 6);
    uint64_t head = chain_head_index(m.c);

    /* upto one block before the end of segment 1: nothing goes */
    assert_int_equal(chain_compact(m.c, firsts[1] - 2), 0);
    assert_int_equal(chain_base_index(m.c), 0);
    /* exactly the end of segment 1 (block firsts[1]-1): segment 0 goes */
    uint8_t h[CHAIN_HASH_BYTES];
    assert_int_equal(chain_hash_at(m.c, firsts[1] - 1, h), 0);
    assert_int_equal(chain_compact(m.c, firsts[1] - 1), 1);
    assert_int_equal(chain_base_index(m.c), firsts[1] - 1);
    assert_memory_equal(chain_base_hash(m.c), h, CHAIN_HASH_BYTES);
    assert_int_equal(seg_count(m.dir), n - 1);
    chain_block b;
    assert_int_equal(chain_read(m.c, firsts[1] - 1, &b), -ENOENT);
    assert_int_equal(chain_read(m.c, firsts[1], &b), 0);
    assert_memory_equal(b.prev_hash, h, CHAIN_HASH_BYTES);
    chain_block_free(&b);
    /* in the middle of segment 3: segments 1 and 2 go, 3 stays */
    assert_int_equal(chain_compact(m.c, firsts[3] + 1), 2);
    assert_int_equal(chain_base_index(m.c), firsts[3] - 1);
    assert_int_equal(seg_count(m.dir), n - 3);
    /* past the head: every sealed segment goes, the active one stays */
    assert_true(chain_compact(m.c, head + 100) >= 1);
    assert_int_equal(seg_count(m.dir), 1);
    assert_int_equal(chain_base_index(m.c), firsts[n - 1] - 1);
    assert_int_equal(chain_head_index(m.c), head);
    for (uint64_t i = chain_base_index(m.c) + 1; i <= head; i++) {
        assert_int_equal(chain_read(m.c, i, &b), 0);
        chain_block_free(&b);
    }
    /* appends go on */
    fill(&m, 3, 200);
    assert_int_equal(chain_sync(m.c), 0);
    head = chain_head_index(m.c);
    uint64_t base = chain_base_index(m.c);
    uint8_t base_hash[CHAIN_HASH_BYTES];
    memcpy(base_hash, chain_base_hash(m.c), CHAIN_HASH_BYTES);
    chain_close(m.c);
    m.c = NULL;

    /* reopened without a snapshot: the chain does not start at block 1 */
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    assert_int_equal(chain_open(m.dir, &c, &rep, &dmg), -EBADMSG);
    assert_int_equal(dmg.index, 1);
    /* with a snapshot at the base (its head hash): it opens */
    chain_base sb = { .index = base };
    memcpy(sb.hash, base_hash, CHAIN_HASH_BYTES);
    chain_open_opts o = { .snapshot = &sb };
    assert_int_equal(chain_open_ex(m.dir, &o, &c, &rep, &dmg), 0);
    assert_int_equal(chain_base_index(c), base);
    assert_int_equal(chain_head_index(c), head);
    chain_close(c);
    /* a snapshot below the base: blocks are missing between */
    chain_base below = sb;
    below.index = base - 1;
    o.snapshot = &below;
    assert_int_equal(chain_open_ex(m.dir, &o, &c, &rep, &dmg), -EBADMSG);
    assert_int_equal(dmg.index, base);
    assert_non_null(strstr(dmg.reason, "missing"));
    /* a snapshot at the base with another head hash: no link */
    chain_base other = sb;
    other.hash[5] ^= 1;
    o.snapshot = &other;
    assert_int_equal(chain_open_ex(m.dir, &o, &c, &rep, &dmg), -EBADMSG);
    assert_int_equal(dmg.index, base + 1);
    assert_int_equal(dmg.offset, 0);
    /* a snapshot inside the chain whose head hash is not the block's */
    chain_base inside = { .index = base + 2 };
    o.snapshot = &inside;
    assert_int_equal(chain_open_ex(m.dir, &o, &c, &rep, &dmg), -EBADMSG);
    assert_int_equal(dmg.index, base + 2);
    o.read_only = true;
    assert_int_equal(chain_open_ex(m.dir, &o, &c, &rep, &dmg), -EBADMSG);
    mini_close(&m);
}

/* chain_verify_all and chain_verify_light agree: the same result and the
 * same first damage; the light one builds no state.  Returns the rc. */
static int verify_both(const char *dir, chain_restore_report *rep,
                       chain_damage *dmg)
{
    chain_restore_report lrep;
    chain_damage ldmg;
    chain_restored lout;
    int light = chain_verify_light(dir, NULL, &lout, &lrep, &ldmg);
    if (light == 0) {
        assert_null(lout.state);
        assert_int_equal(lrep.replayed, 0);
    }
    chain_restored out;
    int full = chain_verify_all(dir, NULL, &out, rep, dmg);
    assert_int_equal(light, full);
    if (full == 0) {
        assert_non_null(out.state);
        assert_int_equal(lout.index, out.index);
        assert_memory_equal(lout.head_hash, out.head_hash, CHAIN_HASH_BYTES);
        chain_restored_close(&out);
        chain_restored_close(&lout);
    } else if (full == -EBADMSG) {
        assert_string_equal(ldmg.path, dmg->path);
        assert_int_equal(ldmg.offset, dmg->offset);
        assert_int_equal(ldmg.index, dmg->index);
    }
    return full;
}

/* Take snapshots along the way, compact as the node would, and restart:
 * the state equals the live one; a damaged newest snapshot falls back. */
static void test_restart_from_snapshot(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    snapstore *st;
    assert_int_equal(snapstore_open(m.dir, true, &st), 0);
    uint64_t snaps[4];
    for (int round = 0; round < 4; round++) {
        fill(&m, 30, 300);
        assert_int_equal(chain_sync(m.c), 0);
        snap_info info;
        assert_int_equal(snapstore_take(st, m.s, chain_head_hash(m.c), NULL,
                                        0, &info), 0);
        snaps[round] = info.index;
        int k = chain_compact(m.c, snapstore_compact_index(st));
        assert_true(k >= 0);
        /* only blocks at or below the previous snapshot went */
        assert_true(chain_base_index(m.c) <= snapstore_compact_index(st));
    }
    assert_true(chain_base_index(m.c) > 0);
    assert_true(chain_base_index(m.c) <= snaps[2]);
    fill(&m, 10, 300);              /* entries after the last snapshot */
    assert_int_equal(chain_sync(m.c), 0);
    uint64_t head = chain_head_index(m.c);
    uint8_t head_hash[CHAIN_HASH_BYTES];
    memcpy(head_hash, chain_head_hash(m.c), CHAIN_HASH_BYTES);
    chain_close(m.c);
    m.c = NULL;
    snapstore_close(st);

    chain_restored r;
    chain_restore_report rep;
    chain_damage dmg;
    assert_int_equal(chain_restore(m.dir, NULL, &r, &rep, &dmg), 0);
    assert_true(r.has_snap);
    assert_int_equal(r.snap.index, snaps[3]);
    assert_int_equal(r.index, head);
    assert_memory_equal(r.head_hash, head_hash, CHAIN_HASH_BYTES);
    assert_int_equal(rep.replayed, head - snaps[3]);
    same_state(m.s, r.state);
    /* the restored node goes on */
    kv *live = m.s;
    m.s = r.state;
    m.c = r.chain;
    chain_set_segment_bytes(m.c, SEG_BYTES);
    r.state = NULL;
    r.chain = NULL;
    fill(&m, 5, 300);
    chain_restored_close(&r);
    kv_destroy(live);
    assert_int_equal(chain_sync(m.c), 0);
    head = chain_head_index(m.c);
    chain_close(m.c);
    m.c = NULL;

    /* verification of the whole */
    chain_restore_report vrep;
    assert_int_equal(verify_both(m.dir, &vrep, &dmg), 0);

    /* the newest snapshot damaged: restart falls back to the previous
     * one and replays more of the chain to the same state */
    snapstore *st2;
    assert_int_equal(snapstore_open(m.dir, false, &st2), 0);
    char p[700];
    assert_int_equal(snapstore_path(st2, snaps[3], p, sizeof p), 0);
    snapstore_close(st2);
    size_t len;
    uint8_t *bytes = read_all(p, &len);
    bytes[len - 20] ^= 0x20;               /* in the SHA-256 */
    write_all(p, bytes, len);
    free(bytes);
    assert_int_equal(verify_both(m.dir, &vrep, &dmg), -EBADMSG);
    assert_string_equal(dmg.path, p);
    assert_int_equal(dmg.offset, len - 32);
    assert_true(vrep.snaps.fell_back);
    assert_int_equal(chain_restore(m.dir, NULL, &r, &rep, &dmg), 0);
    assert_true(rep.snaps.fell_back);
    assert_int_equal(r.snap.index, snaps[2]);
    assert_int_equal(r.index, head);
    assert_int_equal(rep.replayed, head - snaps[2]);
    same_state(m.s, r.state);
    chain_restored_close(&r);
    mini_close(&m);
}

/* Damage in the chain after a snapshot is found and named; a first
 * remaining segment removed leaves a gap; a chain behind the snapshot is
 * restarted after it. */
static void test_verify_snapshot_and_chain(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    snapstore *st;
    assert_int_equal(snapstore_open(m.dir, true, &st), 0);
    for (int round = 0; round < 3; round++) {
        fill(&m, 25, 300);
        assert_int_equal(chain_sync(m.c), 0);
        assert_int_equal(snapstore_take(st, m.s, chain_head_hash(m.c), NULL,
                                        0, NULL), 0);
        assert_true(chain_compact(m.c, snapstore_compact_index(st)) >= 0);
    }
    fill(&m, 10, 300);
    assert_int_equal(chain_sync(m.c), 0);
    uint64_t base = chain_base_index(m.c);
    assert_true(base > 0);
    chain_close(m.c);
    m.c = NULL;
    snapstore_close(st);
    chain_damage dmg;
    chain_restore_report rep;
    assert_int_equal(verify_both(m.dir, &rep, &dmg), 0);

    /* a flipped byte in the first remaining block */
    uint64_t firsts[256];
    uint32_t n = seg_firsts(m.dir, firsts, 256);
    char seg[700];
    snprintf(seg, sizeof seg, "%s/chain/seg-%020llu.blk", m.dir,
             (unsigned long long)firsts[0]);
    assert_int_equal(firsts[0], base + 1);
    size_t len;
    uint8_t *bytes = read_all(seg, &len);
    bytes[50] ^= 1;
    write_all(seg, bytes, len);
    assert_int_equal(verify_both(m.dir, &rep, &dmg),
                     -EBADMSG);
    assert_string_equal(dmg.path, seg);
    assert_int_equal(dmg.offset, 0);
    assert_int_equal(dmg.index, base + 1);
    chain_restored r;
    assert_int_equal(chain_restore(m.dir, NULL, &r, &rep, &dmg), -EBADMSG);
    bytes[50] ^= 1;
    write_all(seg, bytes, len);

    /* the first remaining segment removed: blocks are missing between
     * the snapshots and the chain (both snapshots end before it) */
    assert_int_equal(unlink(seg), 0);
    assert_int_equal(verify_both(m.dir, &rep, &dmg),
                     -EBADMSG);
    assert_non_null(strstr(dmg.reason, "missing"));
    write_all(seg, bytes, len);
    free(bytes);
    assert_int_equal(verify_both(m.dir, &rep, &dmg), 0);

    (void)n;
    mini_close(&m);
}

static void test_chain_behind_snapshot_is_reset(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    fill(&m, 20, 200);
    assert_int_equal(chain_sync(m.c), 0);
    uint64_t mid = chain_head_index(m.c);
    fill(&m, 20, 200);
    assert_int_equal(chain_sync(m.c), 0);
    snapstore *st;
    assert_int_equal(snapstore_open(m.dir, true, &st), 0);
    snap_info info;
    assert_int_equal(snapstore_take(st, m.s, chain_head_hash(m.c), NULL, 0,
                                    &info), 0);
    snapstore_close(st);
    chain_close(m.c);
    m.c = NULL;
    /* the chain loses its end (it was never synced, say): it now ends at
     * `mid`, before the snapshot */
    uint64_t firsts[256];
    uint32_t n = seg_firsts(m.dir, firsts, 256);
    for (uint32_t i = 0; i < n; i++)
        if (firsts[i] > mid) {
            char seg[700];
            snprintf(seg, sizeof seg, "%s/chain/seg-%020llu.blk", m.dir,
                     (unsigned long long)firsts[i]);
            unlink(seg);
        }
    chain_restore_report rep;
    chain_damage dmg;
    chain_restored r;
    /* read-only: reported, nothing changed */
    uint32_t before = seg_count(m.dir);
    assert_int_equal(chain_verify_all(m.dir, NULL, &r, &rep, &dmg), 0);
    assert_true(rep.chain.reset);
    assert_int_equal(r.index, info.index);
    chain_restored_close(&r);
    assert_int_equal(seg_count(m.dir), before);
    assert_int_equal(chain_restore(m.dir, NULL, &r, &rep, &dmg), 0);
    assert_true(rep.chain.reset);
    assert_true(rep.chain.reset_head < info.index);
    assert_int_equal(r.index, info.index);
    assert_int_equal(chain_base_index(r.chain), info.index);
    same_state(m.s, r.state);
    /* the chain goes on after the snapshot */
    kv_destroy(m.s);
    m.s = r.state;
    m.c = r.chain;
    r.state = NULL;
    r.chain = NULL;
    chain_restored_close(&r);
    fill(&m, 3, 200);
    assert_int_equal(chain_sync(m.c), 0);
    chain_close(m.c);
    m.c = NULL;
    assert_int_equal(chain_verify_all(m.dir, NULL, NULL, &rep, &dmg), 0);
    assert_false(rep.chain.reset);
    assert_int_equal(seg_firsts(m.dir, firsts, 256), 1);
    assert_int_equal(firsts[0], info.index + 1);
    mini_close(&m);
}

/* ------------------------------------------------ a take off the loop */

typedef struct take_arg {
    snap_take *t;
    int rc;
} take_arg;

static void *take_main(void *p)
{
    take_arg *a = p;
    a->rc = snapstore_take_run(a->t);
    return NULL;
}

static void test_take_while_applying(void **state)
{
    (void)state;
    mini m;
    mini_open(&m);
    fill(&m, 200, 400);
    uint8_t *blob;
    size_t blen;
    assert_int_equal(kv_snapshot_encode(m.s, &blob, &blen), 0);
    kv *at_freeze = kv_create();
    assert_int_equal(kv_snapshot_decode(at_freeze, blob, blen), 0);
    free(blob);
    uint8_t head[CHAIN_HASH_BYTES];
    memcpy(head, chain_head_hash(m.c), CHAIN_HASH_BYTES);

    snapstore *st;
    assert_int_equal(snapstore_open(m.dir, true, &st), 0);
    take_arg a = { 0 };
    assert_int_equal(snapstore_take_start(st, m.s, head, NULL, 0, &a.t), 0);
    snap_take *t2;
    assert_int_equal(snapstore_take_start(st, m.s, head, NULL, 0, &t2),
                     -EBUSY);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, take_main, &a), 0);
    for (int i = 0; i < 300; i++)      /* the loop goes on applying */
        mini_churn(&m, 8, 400, 400);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(a.rc, 0);
    snap_info info;
    assert_int_equal(snapstore_take_finish(st, m.s, a.t, a.rc, &info), 0);
    assert_int_equal(info.index, kv_applied_index(at_freeze));
    kv *t = NULL;
    assert_int_equal(snapstore_load(st, &t, &info, NULL), 0);
    same_state(at_freeze, t);
    assert_memory_equal(info.head_hash, head, CHAIN_HASH_BYTES);
    kv_destroy(t);
    kv_destroy(at_freeze);
    snapstore_close(st);
    mini_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_flip_any_byte),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_chunked_receive),
        cmocka_unit_test(test_digest_mismatch_refused),
        cmocka_unit_test(test_loaded_state_takes_changes),
        cmocka_unit_test(test_many_blocks),
        cmocka_unit_test(test_store_keeps_two_and_falls_back),
        cmocka_unit_test(test_store_receive_and_leftovers),
        cmocka_unit_test(test_compaction_boundaries),
        cmocka_unit_test(test_restart_from_snapshot),
        cmocka_unit_test(test_verify_snapshot_and_chain),
        cmocka_unit_test(test_chain_behind_snapshot_is_reset),
        cmocka_unit_test(test_take_while_applying),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
