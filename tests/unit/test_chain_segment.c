/*
 * test_chain_segment.c - the hash chain on disk: hash rule, append and
 * reopen across segment rolls, torn-tail repair at every cut point, and
 * detection of every single flipped byte as damage with the right file
 * and block index; against a durable mark (what the acceptor store
 * recorded), a cut at any offset of any segment, lost segments and a
 * replaced chain are damage, a torn record above the mark is still cut;
 * files are created private.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../../chain/chain.h"
#include "tmpdir.h"

#define SMALL_SEGMENT 2048

/* ------------------------------------------------------------ helpers */

/* Deterministic block content for index i. */
static uint32_t block_data(uint64_t i, uint8_t *buf, uint32_t cap)
{
    uint32_t len = (uint32_t)((i * 37) % 200);
    if (len > cap)
        len = cap;
    for (uint32_t k = 0; k < len; k++)
        buf[k] = (uint8_t)(i * 131 + k * 7);
    return len;
}

static uint8_t block_kind(uint64_t i)
{
    return (uint8_t)(i % 3);
}

static void build_chain(const char *dir, uint64_t n, uint64_t segment_bytes,
                        uint8_t head_hash[CHAIN_HASH_BYTES])
{
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    uint8_t buf[256];

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    if (segment_bytes)
        chain_set_segment_bytes(c, segment_bytes);
    for (uint64_t i = chain_head_index(c) + 1; i <= n; i++) {
        uint32_t len = block_data(i, buf, sizeof buf);
        assert_int_equal(chain_append(c, i, 1000 + i, block_kind(i), buf, len,
                                      NULL), 0);
    }
    assert_int_equal(chain_sync(c), 0);
    assert_int_equal(chain_synced_index(c), n);
    if (head_hash)
        memcpy(head_hash, chain_head_hash(c), CHAIN_HASH_BYTES);
    chain_close(c);
}

typedef struct seg_file {
    char path[1024];
    uint8_t *bytes;
    size_t size;
    uint64_t first_index;
} seg_file;

static int cmp_seg(const void *a, const void *b)
{
    const seg_file *x = a, *y = b;
    return x->first_index < y->first_index ? -1 : x->first_index > y->first_index;
}

static size_t load_segments(const char *dir, seg_file *out, size_t cap)
{
    char cdir[600];
    snprintf(cdir, sizeof cdir, "%s/chain", dir);
    DIR *d = opendir(cdir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "seg-", 4) != 0)
            continue;
        assert_true(n < cap);
        seg_file *s = &out[n++];
        snprintf(s->path, sizeof s->path, "%s/%s", cdir, de->d_name);
        s->first_index = strtoull(de->d_name + 4, NULL, 10);
        FILE *f = fopen(s->path, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        s->size = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        s->bytes = malloc(s->size + 1);
        assert_non_null(s->bytes);
        assert_int_equal(fread(s->bytes, 1, s->size, f), s->size);
        fclose(f);
    }
    closedir(d);
    qsort(out, n, sizeof *out, cmp_seg);
    return n;
}

static void free_segments(seg_file *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].bytes);
}

static void write_file(const char *path, const uint8_t *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    close(fd);
}

static uint32_t rec_len_at(const uint8_t *p)
{
    return (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 |
           (uint32_t)p[11] << 24;
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* --------------------------------------------------------------- tests */

static void test_hash_rule(void **state)
{
    (void)state;
    uint8_t prev[32], out[32], expect[32], msg[32 + 21 + 5];
    const uint8_t data[5] = { 'h', 'e', 'l', 'l', 'o' };
    for (int i = 0; i < 32; i++)
        prev[i] = (uint8_t)i;
    chain_hash_block(prev, 7, 0x0102030405060708ull, 1, data, 5, out);

    /* SHA-256(prev || le64 index || le64 time || kind || le32 len || data) */
    memcpy(msg, prev, 32);
    uint64_t idx = 7, t = 0x0102030405060708ull;
    for (int i = 0; i < 8; i++) {
        msg[32 + i] = (uint8_t)(idx >> (8 * i));
        msg[40 + i] = (uint8_t)(t >> (8 * i));
    }
    msg[48] = 1;
    msg[49] = 5;
    msg[50] = msg[51] = msg[52] = 0;
    memcpy(msg + 53, data, 5);
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(msg, sizeof msg, expect, &n, EVP_sha256(),
                                NULL), 1);
    assert_memory_equal(out, expect, 32);

    /* every field matters */
    uint8_t other[32];
    chain_hash_block(prev, 8, t, 1, data, 5, other);
    assert_memory_not_equal(out, other, 32);
    chain_hash_block(prev, 7, t + 1, 1, data, 5, other);
    assert_memory_not_equal(out, other, 32);
    chain_hash_block(prev, 7, t, 2, data, 5, other);
    assert_memory_not_equal(out, other, 32);
    chain_hash_block(prev, 7, t, 1, data, 4, other);
    assert_memory_not_equal(out, other, 32);
    prev[0] ^= 1;
    chain_hash_block(prev, 7, t, 1, data, 5, other);
    assert_memory_not_equal(out, other, 32);
}

static void test_empty_chain(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    uint8_t zero[32] = { 0 }, h[32];
    chain_block b;

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    assert_false(rep.torn_tail_cut);
    assert_int_equal(chain_head_index(c), 0);
    assert_memory_equal(chain_head_hash(c), zero, 32);
    assert_int_equal(chain_hash_at(c, 0, h), 0);
    assert_memory_equal(h, zero, 32);
    assert_int_equal(chain_read(c, 1, &b), -ENOENT);
    assert_int_equal(chain_read(c, 0, &b), -ENOENT);
    assert_int_equal(chain_append(c, 2, 0, 0, NULL, 0, NULL), -EINVAL);
    assert_int_equal(chain_append(c, 1, 0, 9, NULL, 0, NULL), -EINVAL);
    chain_close(c);

    uint64_t head = 99;
    assert_int_equal(chain_verify_dir(dir, &head, h, &dmg), 0);
    assert_int_equal(head, 0);
    rm_tree(dir);
}

static void test_append_reopen_rolls(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    const uint64_t n = 600;
    uint8_t head[32], h[32], buf[256];
    chain *c;
    chain_open_report rep;
    chain_damage dmg;

    build_chain(dir, n, SMALL_SEGMENT, head);
    seg_file segs[512];
    size_t nseg = load_segments(dir, segs, 512);
    assert_true(nseg > 10);  /* rolled many times */
    for (size_t i = 0; i < nseg; i++)
        assert_true(segs[i].size <= SMALL_SEGMENT);
    free_segments(segs, nseg);

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    assert_false(rep.torn_tail_cut);
    assert_int_equal(chain_head_index(c), n);
    assert_memory_equal(chain_head_hash(c), head, 32);
    uint8_t prev[32] = { 0 };
    for (uint64_t i = 1; i <= n; i++) {
        chain_block b;
        assert_int_equal(chain_read(c, i, &b), 0);
        uint32_t len = block_data(i, buf, sizeof buf);
        assert_int_equal(b.index, i);
        assert_int_equal(b.time_ms, 1000 + i);
        assert_int_equal(b.kind, block_kind(i));
        assert_int_equal(b.len, len);
        if (len)
            assert_memory_equal(b.data, buf, len);
        assert_memory_equal(b.prev_hash, prev, 32);
        chain_hash_block(prev, i, 1000 + i, block_kind(i), buf, len, h);
        assert_memory_equal(b.hash, h, 32);
        assert_int_equal(chain_hash_at(c, i, h), 0);
        assert_memory_equal(b.hash, h, 32);
        memcpy(prev, b.hash, 32);
        chain_block_free(&b);
    }
    assert_memory_equal(prev, head, 32);
    chain_block b;
    assert_int_equal(chain_read(c, n + 1, &b), -ENOENT);
    assert_int_equal(chain_hash_at(c, n + 1, h), -ENOENT);

    /* keep appending after reopen, in the default segment size */
    assert_int_equal(chain_append(c, n + 1, 5, PX_ENTRY_NOOP, NULL, 0, h), 0);
    assert_memory_equal(chain_head_hash(c), h, 32);
    assert_int_equal(chain_synced_index(c), n);
    assert_int_equal(chain_sync(c), 0);
    assert_int_equal(chain_synced_index(c), n + 1);
    chain_close(c);

    uint64_t vhead;
    assert_int_equal(chain_verify_dir(dir, &vhead, head, &dmg), 0);
    assert_int_equal(vhead, n + 1);
    assert_memory_equal(head, h, 32);
    rm_tree(dir);
}

/* chain_sync in three steps: a job covers what was appended when it
 * started, appends and segment rolls go on while it runs (its descriptors
 * stay valid), one job at a time, and the chain reopens intact. */
static void append_n(chain *c, uint64_t from, uint64_t to)
{
    uint8_t buf[256], h[32];
    for (uint64_t i = from; i <= to; i++) {
        uint32_t len = block_data(i, buf, sizeof buf);
        assert_int_equal(chain_append(c, i, 1000 + i, block_kind(i), buf, len, h), 0);
    }
}

static void test_sync_job(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    chain_set_segment_bytes(c, SMALL_SEGMENT);
    chain_sync_job job, other;
    assert_int_equal(chain_sync_start(c, &job), 1);   /* nothing to do */
    append_n(c, 1, 40);
    assert_int_equal(chain_sync_start(c, &job), 0);
    assert_int_equal(job.head, 40);
    assert_int_equal(chain_sync_start(c, &other), -EBUSY);
    assert_int_equal(chain_sync(c), -EBUSY);
    /* appends roll segments while the job is out */
    append_n(c, 41, 300);
    assert_int_equal(chain_sync_run(&job), 0);
    assert_int_equal(job.n_fds, 0);
    assert_int_equal(chain_synced_index(c), 0);   /* not before finish */
    assert_int_equal(chain_sync_finish(c, &job, 0), 0);
    assert_int_equal(chain_synced_index(c), 40);
    /* the next job covers the rest, including the rolled segments' names */
    assert_int_equal(chain_sync_start(c, &job), 0);
    assert_true(job.sync_dir);
    assert_int_equal(job.head, 300);
    assert_int_equal(chain_sync_run(&job), 0);
    assert_int_equal(chain_sync_finish(c, &job, 0), 0);
    assert_int_equal(chain_synced_index(c), 300);
    assert_int_equal(chain_sync_start(c, &job), 1);
    /* a failed run is sticky */
    append_n(c, 301, 302);
    assert_int_equal(chain_sync_start(c, &job), 0);
    assert_int_equal(chain_sync_run(&job), 0);
    assert_int_equal(chain_sync_finish(c, &job, -EIO), -EIO);
    assert_int_equal(chain_synced_index(c), 300);
    assert_int_equal(chain_sync_start(c, &job), -EIO);
    uint8_t h[32];
    assert_int_equal(chain_append(c, 303, 5, PX_ENTRY_NOOP, NULL, 0, h), -EIO);
    chain_close(c);
    uint64_t vhead;
    uint8_t head[32];
    assert_int_equal(chain_verify_dir(dir, &vhead, head, &dmg), 0);
    assert_int_equal(vhead, 302);
    rm_tree(dir);
}

/* Truncating inside the last record, at every byte, cuts back exactly to
 * the previous block, and says so. */
static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    uint8_t h4[32];
    const uint64_t n = 5;

    build_chain(dir, n - 1, 0, h4);
    seg_file before[4];
    assert_int_equal(load_segments(dir, before, 4), 1);
    size_t good = before[0].size;
    free_segments(before, 1);
    build_chain(dir, n, 0, NULL);

    seg_file segs[4];
    assert_int_equal(load_segments(dir, segs, 4), 1);
    size_t total = segs[0].size;
    uint32_t last_len = rec_len_at(segs[0].bytes + good);
    assert_int_equal(good + last_len, total);

    for (size_t cut = good + 1; cut < total; cut++) {
        chain *c;
        chain_open_report rep;
        chain_damage dmg;
        uint64_t head;
        uint8_t h[32];

        write_file(segs[0].path, segs[0].bytes, cut);
        /* offline verify reports it and leaves the file alone */
        memset(&rep, 0, sizeof rep);
        assert_int_equal(chain_verify_dir_report(dir, &head, h, &rep, &dmg), 0);
        assert_int_equal(head, n - 1);
        assert_memory_equal(h, h4, 32);
        assert_false(rep.torn_tail_cut);
        assert_int_equal(rep.torn_offset, good);
        assert_int_equal(rep.torn_bytes, cut - good);
        assert_int_equal(file_size(segs[0].path), (off_t)cut);

        assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
        assert_true(rep.torn_tail_cut);
        assert_string_equal(rep.torn_path, segs[0].path);
        assert_int_equal(rep.torn_offset, good);
        assert_int_equal(rep.torn_bytes, cut - good);
        assert_int_equal(chain_head_index(c), n - 1);
        assert_memory_equal(chain_head_hash(c), h4, 32);
        chain_close(c);
        assert_int_equal(file_size(segs[0].path), (off_t)good);
    }

    /* a zero-filled tail (space allocated, data never written) */
    uint8_t *z = calloc(1, total + 300);
    assert_non_null(z);
    memcpy(z, segs[0].bytes, good);
    for (size_t zlen = 1; zlen <= last_len + 300; zlen += 37) {
        chain *c;
        chain_open_report rep;
        chain_damage dmg;
        write_file(segs[0].path, z, good + zlen);
        assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
        assert_true(rep.torn_tail_cut);
        assert_int_equal(rep.torn_offset, good);
        assert_int_equal(rep.torn_bytes, zlen);
        assert_int_equal(chain_head_index(c), n - 1);
        chain_close(c);
    }
    /* zeros after a whole last block are cut too, keeping the block */
    memcpy(z, segs[0].bytes, total);
    memset(z + total, 0, 100);
    write_file(segs[0].path, z, total + 100);
    {
        chain *c;
        chain_open_report rep;
        chain_damage dmg;
        assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
        assert_true(rep.torn_tail_cut);
        assert_int_equal(rep.torn_offset, total);
        assert_int_equal(rep.torn_bytes, 100);
        assert_int_equal(chain_head_index(c), n);
        chain_close(c);
    }
    free(z);
    free_segments(segs, 1);
    rm_tree(dir);
}

/* Which block holds byte `off` of a segment, by walking record lengths of
 * the intact file. */
static uint64_t index_at(const seg_file *s, size_t off, size_t *rec_start)
{
    size_t pos = 0;
    uint64_t idx = s->first_index;
    while (pos < s->size) {
        uint32_t len = rec_len_at(s->bytes + pos);
        if (off < pos + len) {
            *rec_start = pos;
            return idx;
        }
        pos += len;
        idx++;
    }
    fail_msg("offset outside records");
    return 0;
}

static void expect_damage(const char *dir, const seg_file *s, size_t off,
                          uint8_t mask, bool also_open)
{
    uint8_t *copy = malloc(s->size);
    assert_non_null(copy);
    memcpy(copy, s->bytes, s->size);
    copy[off] ^= mask;
    write_file(s->path, copy, s->size);

    size_t rec_start = 0;
    uint64_t idx = index_at(s, off, &rec_start);
    chain_damage dmg;
    chain_open_report rep;
    uint64_t head;
    memset(&dmg, 0, sizeof dmg);
    memset(&rep, 0, sizeof rep);
    int rc = chain_verify_dir_report(dir, &head, NULL, &rep, &dmg);
    if (rc != -EBADMSG)
        fail_msg("flip at %s:%zu mask %#x not detected (rc %d, torn %llu)",
                 s->path, off, mask, rc, (unsigned long long)rep.torn_bytes);
    assert_string_equal(dmg.path, s->path);
    assert_int_equal(dmg.index, idx);
    assert_int_equal(dmg.offset, rec_start);
    assert_true(dmg.reason[0] != '\0');
    if (also_open) {
        chain *c = NULL;
        memset(&dmg, 0, sizeof dmg);
        assert_int_equal(chain_open(dir, &c, &rep, &dmg), -EBADMSG);
        assert_null(c);
        assert_false(rep.torn_tail_cut);
        assert_int_equal(dmg.index, idx);
        assert_string_equal(dmg.path, s->path);
        /* nothing was cut */
        assert_int_equal(file_size(s->path), (off_t)s->size);
    }
    write_file(s->path, s->bytes, s->size);
    free(copy);
}

static chain_mark mark_of(uint64_t index, const uint8_t hash[32])
{
    chain_mark m = { .index = index };
    memcpy(m.hash, hash, 32);
    return m;
}

/* Blocks 1..12 over several segments, all durable (the mark says so).
 * Cutting any segment at any offset, or removing segments, loses durable
 * blocks: damage naming the file, the offset and the first block lost,
 * never a torn tail; nothing is changed on disk. */
static void test_mark_cut_anywhere(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    uint8_t head[32];
    const uint64_t n = 12;
    build_chain(dir, n, 700, head);
    chain_mark m = mark_of(n, head);
    seg_file segs[16];
    size_t ns = load_segments(dir, segs, 16);
    assert_true(ns >= 3);

    for (size_t si = 0; si < ns; si++) {
        for (size_t cut = 0; cut < segs[si].size; cut++) {
            write_file(segs[si].path, segs[si].bytes, cut);
            chain_damage dmg;
            chain_open_report rep;
            uint64_t h;
            memset(&dmg, 0, sizeof dmg);
            int rc = chain_verify_dir_marked(dir, &m, &h, NULL, &rep, &dmg);
            if (rc != -EBADMSG)
                fail_msg("%s cut at %zu not detected (rc %d)", segs[si].path,
                         cut, rc);
            /* the first block that is not whole, where it should be */
            size_t rec_start = 0;
            uint64_t idx = index_at(&segs[si], cut, &rec_start);
            assert_int_equal(dmg.index, idx);
            if (si + 1 == ns && cut > 0) {
                assert_string_equal(dmg.path, segs[si].path);
                assert_int_equal(dmg.offset, rec_start);
            }
            chain *c = NULL;
            assert_int_equal(chain_open_marked(dir, &m, &c, &rep, &dmg),
                             -EBADMSG);
            assert_null(c);
            assert_false(rep.torn_tail_cut);
            assert_int_equal(file_size(segs[si].path), (off_t)cut);
        }
        write_file(segs[si].path, segs[si].bytes, segs[si].size);
    }
    /* whole segments gone from the end, or every one */
    for (size_t keep = ns; keep-- > 0;) {
        assert_int_equal(unlink(segs[keep].path), 0);
        chain_damage dmg;
        chain_open_report rep;
        uint64_t h;
        assert_int_equal(chain_verify_dir_marked(dir, &m, &h, NULL, &rep,
                                                 &dmg), -EBADMSG);
        assert_int_equal(dmg.index, segs[keep].first_index);
        assert_true(strstr(dmg.reason, "recorded block 12") != NULL);
    }
    chain *c = NULL;
    chain_open_report rep;
    chain_damage dmg;
    assert_int_equal(chain_open_marked(dir, &m, &c, &rep, &dmg), -EBADMSG);
    assert_int_equal(dmg.index, 1);
    /* without a mark (an older store) an empty chain is just empty */
    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    assert_int_equal(chain_head_index(c), 0);
    chain_close(c);
    free_segments(segs, ns);
    rm_tree(dir);
}

/* Above the mark a torn record is what it always was: cut, with the
 * blocks up to the mark kept. */
static void test_mark_torn_above(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    uint8_t h5[32], h6[32];
    build_chain(dir, 5, 0, h5);
    seg_file before[2];
    assert_int_equal(load_segments(dir, before, 2), 1);
    size_t good = before[0].size;
    free_segments(before, 1);
    build_chain(dir, 6, 0, h6);
    seg_file segs[2];
    assert_int_equal(load_segments(dir, segs, 2), 1);
    chain_mark m = mark_of(5, h5);
    for (size_t cut = good + 1; cut < segs[0].size; cut += 13) {
        write_file(segs[0].path, segs[0].bytes, cut);
        chain *c = NULL;
        chain_open_report rep;
        chain_damage dmg;
        assert_int_equal(chain_open_marked(dir, &m, &c, &rep, &dmg), 0);
        assert_true(rep.torn_tail_cut);
        assert_int_equal(rep.torn_offset, good);
        assert_int_equal(chain_head_index(c), 5);
        assert_memory_equal(chain_synced_hash(c), h5, 32);
        chain_close(c);
    }
    /* the same cut is damage once block 6 was recorded durable */
    write_file(segs[0].path, segs[0].bytes, good + 40);
    chain_mark m6 = mark_of(6, h6);
    chain *c = NULL;
    chain_open_report rep;
    chain_damage dmg;
    assert_int_equal(chain_open_marked(dir, &m6, &c, &rep, &dmg), -EBADMSG);
    assert_int_equal(dmg.index, 6);
    assert_int_equal(dmg.offset, good);
    assert_string_equal(dmg.path, segs[0].path);
    free_segments(segs, 1);
    rm_tree(dir);
}

/* A chain of the right length whose block at the mark is another one (a
 * chain copied from elsewhere) is damage at that block. */
static void test_mark_other_chain(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char *other = make_tmpdir();
    uint8_t mine[32], theirs[32];
    build_chain(dir, 8, 0, mine);
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    assert_int_equal(chain_open(other, &c, &rep, &dmg), 0);
    for (uint64_t i = 1; i <= 20; i++)
        assert_int_equal(chain_append(c, i, 5000 + i, PX_ENTRY_NOOP, NULL, 0,
                                      NULL), 0);
    assert_int_equal(chain_sync(c), 0);
    assert_int_equal(chain_hash_at(c, 8, theirs), 0);
    chain_close(c);
    assert_true(memcmp(mine, theirs, 32) != 0);
    chain_mark m = mark_of(8, mine);
    assert_int_equal(chain_open_marked(other, &m, &c, &rep, &dmg), -EBADMSG);
    assert_int_equal(dmg.index, 8);
    assert_true(strstr(dmg.reason, "differs") != NULL);
    assert_int_equal(chain_open_marked(dir, &m, &c, &rep, &dmg), 0);
    chain_close(c);
    rm_tree(other);
    rm_tree(dir);
}

static void test_private_files(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    mode_t old = umask(0);
    build_chain(dir, 30, 700, NULL);
    umask(old);
    char cdir[600];
    snprintf(cdir, sizeof cdir, "%s/chain", dir);
    struct stat st;
    assert_int_equal(stat(cdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    seg_file segs[16];
    size_t ns = load_segments(dir, segs, 16);
    assert_true(ns >= 2);
    for (size_t i = 0; i < ns; i++) {
        assert_int_equal(stat(segs[i].path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    free_segments(segs, ns);
    rm_tree(dir);
}

static void test_tamper_every_byte(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    build_chain(dir, 12, 700, NULL);
    seg_file segs[64];
    size_t nseg = load_segments(dir, segs, 64);
    assert_true(nseg >= 3);
    size_t flips = 0;
    for (size_t si = 0; si < nseg; si++)
        for (size_t off = 0; off < segs[si].size; off++) {
            expect_damage(dir, &segs[si], off, 0x01, off % 4 == 0);
            expect_damage(dir, &segs[si], off, 0xff, false);
            flips += 2;
        }
    assert_true(flips > 2000);
    free_segments(segs, nseg);
    rm_tree(dir);
}

static void test_tamper_random_large(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    build_chain(dir, 3000, 64 << 10, NULL);
    seg_file segs[64];
    size_t nseg = load_segments(dir, segs, 64);
    assert_true(nseg >= 4);
    uint64_t x = 88172645463325252ull;
    for (int k = 0; k < 300; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const seg_file *s = &segs[x % nseg];
        size_t off = (size_t)((x >> 20) % s->size);
        uint8_t mask = (uint8_t)(1u << ((x >> 8) & 7));
        expect_damage(dir, s, off, mask, false);
    }
    free_segments(segs, nseg);
    rm_tree(dir);
}

/* Structural damage: a missing segment, a renamed one, an empty middle
 * one, a truncated middle one. */
static void test_structural_damage(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    build_chain(dir, 40, 700, NULL);
    seg_file segs[64];
    size_t nseg = load_segments(dir, segs, 64);
    assert_true(nseg >= 4);
    chain_damage dmg;
    uint64_t head;

    /* truncated middle segment: damage, not torn */
    write_file(segs[1].path, segs[1].bytes, segs[1].size - 3);
    assert_int_equal(chain_verify_dir(dir, &head, NULL, &dmg), -EBADMSG);
    assert_string_equal(dmg.path, segs[1].path);
    write_file(segs[1].path, segs[1].bytes, segs[1].size);

    /* missing middle segment: index gap at the next one */
    assert_int_equal(unlink(segs[2].path), 0);
    assert_int_equal(chain_verify_dir(dir, &head, NULL, &dmg), -EBADMSG);
    assert_string_equal(dmg.path, segs[3].path);
    assert_int_equal(dmg.index, segs[2].first_index);
    int fd = open(segs[2].path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    /* empty middle segment */
    assert_int_equal(chain_verify_dir(dir, &head, NULL, &dmg), -EBADMSG);
    assert_string_equal(dmg.path, segs[2].path);
    write_file(segs[2].path, segs[2].bytes, segs[2].size);
    assert_int_equal(chain_verify_dir(dir, &head, NULL, &dmg), 0);
    assert_int_equal(head, 40);

    /* a whole record removed from the last segment (length still valid):
     * the next block no longer links */
    const seg_file *last = &segs[nseg - 1];
    if (last->size > rec_len_at(last->bytes)) {
        uint32_t l0 = rec_len_at(last->bytes);
        write_file(last->path, last->bytes + l0, last->size - l0);
        assert_int_equal(chain_verify_dir(dir, &head, NULL, &dmg), -EBADMSG);
        assert_string_equal(dmg.path, last->path);
        assert_int_equal(dmg.offset, 0);
        write_file(last->path, last->bytes, last->size);
    }
    free_segments(segs, nseg);
    rm_tree(dir);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Start-up verification speed: 100k blocks.  The bound is generous for a
 * noisy machine; the measured time is printed. */
static void test_open_speed_100k(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    uint8_t data[100];
    memset(data, 'x', sizeof data);
    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    for (uint64_t i = 1; i <= 100000; i++)
        assert_int_equal(chain_append(c, i, i, PX_ENTRY_BATCH, data,
                                      (uint32_t)(i % 100), NULL), 0);
    assert_int_equal(chain_sync(c), 0);
    chain_close(c);
    double t0 = now_ms();
    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    double t1 = now_ms();
    assert_int_equal(chain_head_index(c), 100000);
    chain_close(c);
    print_message("open+verify of 100000 blocks: %.1f ms\n", t1 - t0);
    assert_true(t1 - t0 < 3000.0);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_rule),
        cmocka_unit_test(test_empty_chain),
        cmocka_unit_test(test_append_reopen_rolls),
        cmocka_unit_test(test_sync_job),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_mark_cut_anywhere),
        cmocka_unit_test(test_mark_torn_above),
        cmocka_unit_test(test_mark_other_chain),
        cmocka_unit_test(test_private_files),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_tamper_random_large),
        cmocka_unit_test(test_structural_damage),
        cmocka_unit_test(test_open_speed_100k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
