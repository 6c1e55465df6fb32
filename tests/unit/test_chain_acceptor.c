/*
 * test_chain_acceptor.c - the acceptor store: replay after reopen,
 * monotonic promise, highest ballot per slot, buffered-until-sync,
 * compaction, torn tail at every cut point, damage in the middle and in
 * the last record, truncation at every length, salvage of a damaged log
 * (also one stopped between keeping the log aside and the new log),
 * marks, starts and recovery records, the zero space after the records,
 * file modes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../chain/chain.h"
#include "../../chain/chain_io.h"
#include "tmpdir.h"

static px_ballot B(uint64_t round, uint32_t node)
{
    return (px_ballot){ .round = round, .node_id = node };
}

static void put(acceptor_store *a, uint64_t slot, px_ballot b, const char *v)
{
    px_entry e = { .slot = slot, .ballot = b, .time_ms = slot * 10,
                   .kind = PX_ENTRY_BATCH, .len = (uint32_t)strlen(v),
                   .data = (const uint8_t *)v };
    assert_int_equal(acceptor_put_accept(a, &e), 0);
}

static const px_entry *find(const acceptor_state *st, uint64_t slot)
{
    for (uint32_t i = 0; i < st->n_accepts; i++)
        if (st->accepts[i].slot == slot)
            return &st->accepts[i];
    return NULL;
}

static void check_slot(const acceptor_state *st, uint64_t slot,
                         px_ballot b, const char *v)
{
    const px_entry *e = find(st, slot);
    assert_non_null(e);
    assert_int_equal(e->ballot.round, b.round);
    assert_int_equal(e->ballot.node_id, b.node_id);
    assert_int_equal(e->len, strlen(v));
    assert_memory_equal(e->data, v, e->len);
    assert_int_equal(e->time_ms, slot * 10);
    assert_int_equal(e->kind, PX_ENTRY_BATCH);
}

static void log_path(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/acceptor/log", dir);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*len + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, *len, f), *len);
    fclose(f);
    return p;
}

static void write_all(const char *path, const uint8_t *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    close(fd);
}

/* End of the used part of a preallocated log: after the last non-zero. */
static size_t used_end(const uint8_t *p, size_t len)
{
    while (len > 0 && p[len - 1] == 0)
        len--;
    return len;
}

static void test_replay(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.promise.round, 0);
    assert_int_equal(st.n_accepts, 0);
    assert_int_equal(acceptor_put_promise(a, B(1, 1)), 0);
    put(a, 2, B(1, 1), "two");
    put(a, 1, B(1, 1), "one");
    put(a, 5, B(1, 1), "");
    assert_int_equal(acceptor_sync(a), 0);
    assert_int_equal(acceptor_sync(a), 0);  /* nothing pending: no-op */
    /* buffered, never synced: lost on close */
    put(a, 6, B(1, 1), "lost");
    assert_int_equal(acceptor_put_promise(a, B(9, 9)), 0);
    acceptor_close(a);

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.promise.round, 1);
    assert_int_equal(st.promise.node_id, 1);
    assert_int_equal(st.n_accepts, 3);
    assert_int_equal(st.accepts[0].slot, 1);
    assert_int_equal(st.accepts[1].slot, 2);
    assert_int_equal(st.accepts[2].slot, 5);
    check_slot(&st, 1, B(1, 1), "one");
    check_slot(&st, 2, B(1, 1), "two");
    check_slot(&st, 5, B(1, 1), "");
    assert_null(find(&st, 6));
    acceptor_close(a);
    rm_tree(dir);
}

static void test_promise_monotonic(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(acceptor_put_promise(a, B(2, 3)), 0);
    assert_int_equal(acceptor_put_promise(a, B(2, 3)), 0);
    assert_int_equal(acceptor_put_promise(a, B(2, 1)), -EINVAL);
    assert_int_equal(acceptor_put_promise(a, B(1, 9)), -EINVAL);
    assert_int_equal(acceptor_put_promise(a, B(2, 4)), 0);
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_get_state(a, &st);
    assert_int_equal(st.promise.round, 2);
    assert_int_equal(st.promise.node_id, 4);
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.promise.round, 2);
    assert_int_equal(st.promise.node_id, 4);
    assert_int_equal(acceptor_put_promise(a, B(2, 3)), -EINVAL);
    acceptor_close(a);
    rm_tree(dir);
}

static void test_highest_ballot_per_slot(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    put(a, 3, B(1, 1), "A");
    put(a, 3, B(3, 2), "B");
    put(a, 3, B(2, 9), "C");   /* lower: ignored */
    put(a, 4, B(1, 1), "x");
    assert_int_equal(acceptor_sync(a), 0);
    put(a, 4, B(1, 2), "y");   /* same round, higher node id */
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_get_state(a, &st);
    check_slot(&st, 3, B(3, 2), "B");
    check_slot(&st, 4, B(1, 2), "y");
    acceptor_close(a);

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 2);
    check_slot(&st, 3, B(3, 2), "B");
    check_slot(&st, 4, B(1, 2), "y");
    acceptor_close(a);
    rm_tree(dir);
}

static void test_compaction(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    char path[600], v[64];

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(acceptor_put_promise(a, B(7, 2)), 0);
    for (uint64_t s = 1; s <= 100; s++) {
        snprintf(v, sizeof v, "value-%llu-%040d", (unsigned long long)s, 0);
        put(a, s, B(7, 2), v);
        assert_int_equal(acceptor_sync(a), 0);
    }
    /* below the size bound: a forget record, no roll */
    assert_int_equal(acceptor_compact(a, 10), 0);
    acceptor_get_state(a, &st);
    assert_int_equal(st.n_accepts, 90);
    assert_int_equal(st.accepts[0].slot, 11);
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 90);
    assert_int_equal(st.accepts[0].slot, 11);

    /* past the bound: roll to a new log holding only what is needed */
    log_path(dir, path, sizeof path);
    size_t len_before;
    free(read_all(path, &len_before));
    acceptor_set_log_bytes(a, 2048);
    assert_int_equal(acceptor_compact(a, 95), 0);
    size_t len_after;
    uint8_t *bytes = read_all(path, &len_after);
    size_t used = used_end(bytes, len_after);
    free(bytes);
    assert_true(used < 32 + 5 * 120);   /* promise + 5 accepts */
    put(a, 101, B(7, 2), "after-roll");
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.promise.round, 7);
    assert_int_equal(st.promise.node_id, 2);
    assert_int_equal(st.n_accepts, 6);
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(st.accepts[i].slot, 96 + i);
    check_slot(&st, 101, B(7, 2), "after-roll");
    acceptor_close(a);
    rm_tree(dir);
}

/* Every cut point inside the last record: the record is dropped, the
 * rest survives, and the next write lands cleanly. */
static void test_torn_tail(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    char path[600];
    log_path(dir, path, sizeof path);

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    put(a, 1, B(1, 1), "first");
    assert_int_equal(acceptor_sync(a), 0);
    size_t len;
    uint8_t *one = read_all(path, &len);
    size_t good = used_end(one, len);
    free(one);
    put(a, 2, B(1, 1), "second value");
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    uint8_t *full = read_all(path, &len);
    size_t end = used_end(full, len);
    assert_true(end > good);

    /* `cut` bytes reached the disk, the rest of the record (its checksum
     * at least) never did: the preallocated zeros are still there */
    for (size_t cut = good + 1; cut + 4 <= end; cut++) {
        uint8_t *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, full, len);
        memset(copy + cut, 0, len - cut);
        write_all(path, copy, len);
        free(copy);
        acceptor_open_report rep;
        assert_int_equal(acceptor_open_salvage(dir, &a, &st, &rep), 0);
        assert_true(rep.torn_cut);
        assert_false(rep.lost);
        assert_int_equal(rep.torn_offset, good);
        assert_int_equal(st.n_accepts, 1);
        check_slot(&st, 1, B(1, 1), "first");
        acceptor_close(a);
        /* a file cut short there is not a crash: the file is always
         * longer than its records */
        write_all(path, full, cut);
        memset(&dmg, 0, sizeof dmg);
        assert_int_equal(acceptor_open(dir, &a, &st, &dmg), -EBADMSG);
        assert_string_equal(dmg.path, path);
        assert_int_equal(dmg.offset, good);
    }
    /* after the cut, new records are written and read back */
    memset(full + good, 0, len - good);
    full[good + 3] = 0x55;          /* garbage where slot 2 was */
    write_all(path, full, len);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 1);
    put(a, 3, B(2, 1), "third");
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 2);
    check_slot(&st, 3, B(2, 1), "third");
    acceptor_close(a);
    free(full);
    rm_tree(dir);
}

/* A flipped byte in any record but the last is damage. */
static void test_damage_middle(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    char path[600];
    log_path(dir, path, sizeof path);

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(acceptor_put_promise(a, B(1, 1)), 0);
    put(a, 1, B(1, 1), "aaaa");
    put(a, 2, B(1, 1), "bbbb");
    assert_int_equal(acceptor_sync(a), 0);
    size_t len;
    uint8_t *p = read_all(path, &len);
    size_t before_last = used_end(p, len);
    free(p);
    put(a, 3, B(1, 1), "cccc");
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);

    uint8_t *full = read_all(path, &len);
    for (size_t off = 0; off < before_last; off++) {
        full[off] ^= 0x20;
        write_all(path, full, len);
        memset(&dmg, 0, sizeof dmg);
        int rc = acceptor_open(dir, &a, &st, &dmg);
        if (rc != -EBADMSG)
            fail_msg("flip at %zu not detected (rc %d)", off, rc);
        assert_string_equal(dmg.path, path);
        assert_true(dmg.offset <= off);
        assert_true(dmg.reason[0] != '\0');
        full[off] ^= 0x20;
    }
    write_all(path, full, len);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 3);
    acceptor_close(a);
    free(full);
    rm_tree(dir);
}

static void build_log(const char *dir, size_t *good_end)
{
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(acceptor_put_promise(a, B(3, 2)), 0);
    put(a, 1, B(3, 2), "aaaa");
    put(a, 2, B(3, 2), "bbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_int_equal(acceptor_put_promise(a, B(4, 1)), 0);
    put(a, 3, B(4, 1), "cccc");
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    char path[600];
    log_path(dir, path, sizeof path);
    size_t len;
    uint8_t *p = read_all(path, &len);
    *good_end = used_end(p, len);
    assert_true(len >= *good_end + 64);   /* zero space after the records */
    free(p);
}

/* Any length that cuts into or right after the records is damage; a
 * length inside the zero space after them loses nothing. */
static void test_truncation_is_damage(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[600];
    log_path(dir, path, sizeof path);
    size_t used;
    build_log(dir, &used);
    size_t len;
    uint8_t *full = read_all(path, &len);
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    for (size_t cut = 0; cut <= used; cut++) {
        write_all(path, full, cut);
        memset(&dmg, 0, sizeof dmg);
        int rc = acceptor_open(dir, &a, &st, &dmg);
        if (rc != -EBADMSG)
            fail_msg("log cut to %zu bytes not detected (rc %d)", cut, rc);
        assert_string_equal(dmg.path, path);
        assert_true(dmg.offset <= cut);
        assert_true(dmg.reason[0] != '\0');
    }
    write_all(path, full, used + 1);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 3);
    assert_int_equal(st.promise.round, 4);
    acceptor_close(a);
    free(full);
    rm_tree(dir);
}

/* A torn write that stopped at a sector boundary inside the last record
 * with only the last bytes of its checksum beyond it: torn, not damage
 * (the simulator's fake disk tore one so; the store took it for damage
 * and the node recovered from its peers). */
static void test_torn_in_the_checksum_at_a_sector_boundary(void **state)
{
    (void)state;
    char v[1200];
    for (char fill = 'a'; fill <= 'z'; fill++) {
        char *dir = make_tmpdir();
        char path[600];
        log_path(dir, path, sizeof path);
        acceptor_store *a;
        acceptor_state st;
        chain_damage dmg;
        size_t len;
        assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
        assert_int_equal(acceptor_sync(a), 0);
        /* a record's overhead: two records' growth minus their values */
        size_t used[3];
        uint8_t *p = read_all(path, &len);
        used[0] = used_end(p, len);
        free(p);
        for (int i = 1; i <= 2; i++) {
            memset(v, fill, 10u * (size_t)i);
            v[10 * i] = '\0';
            put(a, (uint64_t)i, B(1, 1), v);
            assert_int_equal(acceptor_sync(a), 0);
            p = read_all(path, &len);
            used[i] = used_end(p, len);
            free(p);
        }
        size_t over = used[2] - used[1] - 20;
        assert_int_equal(used[1] - used[0] - 10, over);
        /* slot 3 ends two bytes past the next sector boundary */
        size_t b = (used[2] + over) / 512 * 512 + 512;
        size_t vlen = b + 2 - used[2] - over;
        assert_true(vlen > 0 && vlen < sizeof v);
        memset(v, fill, vlen);
        v[vlen] = '\0';
        put(a, 3, B(1, 1), v);
        assert_int_equal(acceptor_sync(a), 0);
        acceptor_close(a);
        uint8_t *full = read_all(path, &len);
        if (used_end(full, len) != b + 2) {   /* its last byte is 0 */
            free(full);
            rm_tree(dir);
            continue;
        }
        memset(full + b, 0, len - b);          /* the last sector never came */
        write_all(path, full, len);
        free(full);
        acceptor_open_report rep;
        assert_int_equal(acceptor_open_salvage(dir, &a, &st, &rep), 0);
        assert_false(rep.lost);
        assert_true(rep.torn_cut);
        assert_int_equal(rep.torn_offset, used[2]);
        assert_int_equal(st.n_accepts, 2);
        acceptor_close(a);
        rm_tree(dir);
        return;
    }
    fail_msg("no fill gave a record whose last byte is not zero");
}

/* A changed byte in the last record is damage, not a torn write. */
static void test_damage_last_record(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[600];
    log_path(dir, path, sizeof path);
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    put(a, 1, B(1, 1), "aaaa");
    assert_int_equal(acceptor_sync(a), 0);
    size_t len;
    uint8_t *p = read_all(path, &len);
    size_t before = used_end(p, len);
    free(p);
    assert_int_equal(acceptor_put_promise(a, B(9, 3)), 0);
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    uint8_t *full = read_all(path, &len);
    size_t end = used_end(full, len);
    for (size_t off = before; off < end; off++) {
        for (int bit = 0; bit < 8; bit++) {
            full[off] ^= (uint8_t)(1u << bit);
            write_all(path, full, len);
            memset(&dmg, 0, sizeof dmg);
            int rc = acceptor_open(dir, &a, &st, &dmg);
            if (rc != -EBADMSG)
                fail_msg("flip of bit %d at %zu not detected (rc %d)", bit,
                         off, rc);
            assert_int_equal(dmg.offset, before);
            full[off] ^= (uint8_t)(1u << bit);
        }
    }
    free(full);
    rm_tree(dir);
}

/* acceptor_open_salvage keeps a damaged log aside and goes on with what
 * the records before the damage said, marked recovering until told
 * otherwise; the recovery state survives reopening and rolling. */
static void test_salvage(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[600], kept[620];
    log_path(dir, path, sizeof path);
    snprintf(kept, sizeof kept, "%s.damaged", path);
    size_t used;
    build_log(dir, &used);
    size_t len;
    uint8_t *full = read_all(path, &len);
    full[used - 2] ^= 1;                  /* in slot 3's record */
    write_all(path, full, len);
    acceptor_store *a;
    acceptor_state st;
    acceptor_open_report rep;
    assert_int_equal(acceptor_open_salvage(dir, &a, &st, &rep), 0);
    assert_true(rep.lost);
    assert_false(rep.created);
    assert_string_equal(rep.damage.path, path);
    assert_string_equal(rep.kept_path, kept);
    assert_int_equal(st.n_accepts, 2);    /* slots 1 and 2 */
    assert_int_equal(st.promise.round, 4);
    acceptor_info info;
    acceptor_get_info(a, &info);
    assert_true(info.recovering);
    acceptor_close(a);
    size_t klen;
    uint8_t *k = read_all(kept, &klen);
    assert_int_equal(klen, len);
    assert_memory_equal(k, full, len);    /* kept as it was found */
    free(k);
    chain_damage dmg;
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    acceptor_get_info(a, &info);
    assert_true(info.recovering);
    acceptor_set_log_bytes(a, 1024);
    uint8_t h[CHAIN_HASH_BYTES] = {7};
    for (uint64_t i = 1; i <= 40; i++) {   /* rolls the log */
        put(a, 100 + i, B(4, 1), "padding padding padding padding");
        assert_int_equal(acceptor_mark(a, 100 + i, h), 0);
    }
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    acceptor_get_info(a, &info);
    assert_true(info.recovering);
    assert_int_equal(info.mark.index, 140);
    assert_int_equal(acceptor_put_recovery(a, false), 0);
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    acceptor_get_info(a, &info);
    assert_false(info.recovering);
    acceptor_close(a);
    /* a missing log beside log.damaged is that damage again (invariant
     * 9); a missing log alone is a new store (the caller judges whether
     * one was expected); an empty one is damage */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), -EBADMSG);
    assert_int_equal(unlink(path), -1);   /* nothing created */
    assert_int_equal(unlink(kept), 0);
    assert_int_equal(acceptor_open_salvage(dir, &a, &st, &rep), 0);
    assert_true(rep.created);
    assert_false(rep.lost);
    acceptor_close(a);
    write_all(path, full, 0);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), -EBADMSG);
    assert_int_equal(acceptor_open_salvage(dir, &a, &st, &rep), 0);
    assert_true(rep.lost);
    assert_int_equal(st.n_accepts, 0);
    acceptor_close(a);
    free(full);
    rm_tree(dir);
}

/* A durable last record whose data holds a whole aligned sector of
 * zeros looks, with one bit flipped anywhere, like a write whose sector
 * never landed.  A single flipped bit explains its checksum exactly, a
 * torn write (almost) never: damage, not a torn tail cut away. */
static void test_flip_in_a_last_record_with_a_zero_sector(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[600];
    log_path(dir, path, sizeof path);
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    put(a, 1, B(1, 1), "aaaa");
    assert_int_equal(acceptor_sync(a), 0);
    size_t len;
    uint8_t *p = read_all(path, &len);
    size_t before = used_end(p, len);
    free(p);
    static uint8_t zeros[1500];          /* spans two aligned sectors */
    zeros[1499] = 1;                     /* ends the used part in it */
    px_entry e = { .slot = 2, .ballot = B(1, 1), .time_ms = 20,
                   .kind = PX_ENTRY_BATCH, .len = sizeof zeros,
                   .data = zeros };
    assert_int_equal(acceptor_put_accept(a, &e), 0);
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    uint8_t *full = read_all(path, &len);
    size_t end = used_end(full, len);
    size_t offs[] = { before + 16, before + 24, before + 52, before + 700,
                      end - 1, end - 4 };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        for (int bit = 0; bit < 8; bit++) {
            full[offs[i]] ^= (uint8_t)(1u << bit);
            write_all(path, full, len);
            memset(&dmg, 0, sizeof dmg);
            int rc = acceptor_open(dir, &a, &st, &dmg);
            if (rc == 0)
                acceptor_close(a);
            if (rc != -EBADMSG)
                fail_msg("flip of bit %d at %zu taken for a torn write "
                         "(rc %d)", bit, offs[i], rc);
            assert_int_equal(dmg.offset, before);
            full[offs[i]] ^= (uint8_t)(1u << bit);
        }
    }
    /* the same record torn (its middle sector never landed) is cut */
    size_t s = (before + 511) / 512 * 512 + 512;
    memset(full + s, 0, 512);
    full[end - 1] = 0;                   /* and its last sector */
    memset(full + (end - 1) / 512 * 512, 0, end - (end - 1) / 512 * 512);
    write_all(path, full, len);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 1);
    acceptor_close(a);
    free(full);
    rm_tree(dir);
}

/* A salvage whose new log cannot be written (ENOSPC) after the damaged
 * log was renamed aside: the next open must report the damage again and
 * come up recovering, never as a new store with promise 0. */
static int fail_tmp_open(const char *path, int flags, mode_t mode)
{
    size_t n = strlen(path);
    if (n >= 4 && strcmp(path + n - 4, ".tmp") == 0)
        return -ENOSPC;
    return chain_io_libc()->open(path, flags, mode);
}

static void test_salvage_stopped_after_the_rename(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[600], kept[620];
    log_path(dir, path, sizeof path);
    snprintf(kept, sizeof kept, "%s.damaged", path);
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(acceptor_put_promise(a, B(2, 2)), 0);
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    size_t len;
    uint8_t *full = read_all(path, &len);
    full[10] ^= 1;                 /* the first record's length field */
    write_all(path, full, len);
    free(full);

    chain_io_ops faulty = *chain_io_libc();
    faulty.open = fail_tmp_open;
    const chain_io_ops *prev = chain_io_set(&faulty);
    acceptor_open_report rep;
    assert_int_equal(acceptor_open_salvage(dir, &a, &st, &rep), -ENOSPC);
    chain_io_set(prev);
    struct stat sb;
    assert_int_equal(stat(path, &sb), -1);   /* renamed aside ... */
    assert_int_equal(stat(kept, &sb), 0);    /* ... and no new log */

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), -EBADMSG);
    assert_string_equal(dmg.path, path);
    assert_int_equal(dmg.offset, 0);
    assert_int_equal(acceptor_open_salvage(dir, &a, &st, &rep), 0);
    assert_false(rep.created);
    assert_true(rep.lost);
    assert_string_equal(rep.damage.path, path);
    assert_string_equal(rep.kept_path, kept);
    acceptor_info info;
    acceptor_get_info(a, &info);
    assert_true(info.recovering);
    acceptor_close(a);
    /* the recovering mark is durable */
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    acceptor_get_info(a, &info);
    assert_true(info.recovering);
    acceptor_close(a);
    rm_tree(dir);
}

/* Mark, starts of this node and of peers: replayed, kept across rolls,
 * and checked (no going back). */
static void test_info_records(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    acceptor_info info;
    uint8_t h5[CHAIN_HASH_BYTES], h9[CHAIN_HASH_BYTES];
    memset(h5, 5, sizeof h5);
    memset(h9, 9, sizeof h9);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    acceptor_get_info(a, &info);
    assert_int_equal(info.mark.index, 0);
    assert_int_equal(info.incarnation, 0);
    for (uint64_t s = 1; s <= 12; s++)
        put(a, s, B(1, 1), "v");
    assert_int_equal(acceptor_mark(a, 5, h5), 0);
    assert_int_equal(acceptor_mark(a, 4, h5), -EINVAL);
    assert_int_equal(acceptor_put_incarnation(a, 1, 0xabc), 0);
    assert_int_equal(acceptor_put_incarnation(a, 1, 0xdef), -EINVAL);
    acceptor_peer p2 = { .id = 2, .counter = 3, .nonce = 77 };
    acceptor_peer p3 = { .id = 3, .counter = 1, .nonce = 78 };
    assert_int_equal(acceptor_put_peer(a, &p2), 0);
    assert_int_equal(acceptor_put_peer(a, &p3), 0);
    p2.counter = 2;
    assert_int_equal(acceptor_put_peer(a, &p2), -EINVAL);
    p2.counter = 4;
    p2.nonce = 79;
    assert_int_equal(acceptor_put_peer(a, &p2), 0);
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 7);    /* the mark forgot 1..5 */
    acceptor_get_info(a, &info);
    assert_int_equal(info.mark.index, 5);
    assert_memory_equal(info.mark.hash, h5, sizeof h5);
    assert_int_equal(info.incarnation, 1);
    assert_int_equal(info.nonce, 0xabc);
    assert_int_equal(info.n_peers, 2);
    assert_int_equal(info.peers[0].id, 2);
    assert_int_equal(info.peers[0].counter, 4);
    assert_int_equal(info.peers[0].nonce, 79);
    assert_int_equal(info.peers[1].id, 3);
    /* a roll keeps all of it */
    acceptor_set_log_bytes(a, 1024);
    assert_int_equal(acceptor_put_incarnation(a, 2, 0x123), 0);
    for (int i = 0; i < 30; i++)
        assert_int_equal(acceptor_put_promise(a, B(2 + (uint64_t)i, 1)), 0);
    assert_int_equal(acceptor_mark(a, 9, h9), 0);
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    acceptor_get_info(a, &info);
    assert_int_equal(st.n_accepts, 3);
    assert_int_equal(info.mark.index, 9);
    assert_memory_equal(info.mark.hash, h9, sizeof h9);
    assert_int_equal(info.incarnation, 2);
    assert_int_equal(info.nonce, 0x123);
    assert_int_equal(info.n_peers, 2);
    assert_int_equal(info.peers[0].counter, 4);
    assert_int_equal(st.promise.round, 31);
    acceptor_close(a);
    acceptor_verify v;
    assert_int_equal(acceptor_verify_dir(dir, &v), 0);
    assert_false(v.missing);
    assert_int_equal(v.info.mark.index, 9);
    assert_int_equal(v.n_accepts, 3);
    assert_int_equal(v.first_slot, 10);
    assert_int_equal(v.last_slot, 12);
    rm_tree(dir);
}

/* The log always keeps zero space after its records, however it grows,
 * and what it creates is private (whatever the umask). */
static void test_slack_and_modes(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[600];
    log_path(dir, path, sizeof path);
    mode_t old = umask(0);
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (uint64_t s = 1; s <= 2000; s++) {
        put(a, s, B(1, 1), s % 7 ? "small" : big);
        if (s % 13 == 0) {
            assert_int_equal(acceptor_sync(a), 0);
            size_t len;
            uint8_t *p = read_all(path, &len);
            assert_true(len >= used_end(p, len) + 64);
            free(p);
        }
    }
    acceptor_close(a);
    umask(old);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/acceptor", dir);
    assert_int_equal(stat(sub, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    rm_tree(dir);
}

/* A process-wide default log size applies to every store opened after
 * it, its first (preallocated) log included; 0 restores the default. */
static void test_default_log_bytes(void **state)
{
    (void)state;
    char *dir = make_tmpdir(), *dir2 = make_tmpdir();
    char path[600];
    struct stat sb;
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    acceptor_set_default_log_bytes(8192);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    acceptor_close(a);
    acceptor_set_default_log_bytes(0);
    log_path(dir, path, sizeof path);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size < 65536);           /* a small first log */
    assert_int_equal(acceptor_open(dir2, &a, &st, &dmg), 0);
    acceptor_close(a);
    log_path(dir2, path, sizeof path);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size >= (1 << 20));     /* the default again */
    rm_tree(dir);
    rm_tree(dir2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_promise_monotonic),
        cmocka_unit_test(test_highest_ballot_per_slot),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_torn_tail),
        cmocka_unit_test(test_torn_in_the_checksum_at_a_sector_boundary),
        cmocka_unit_test(test_damage_middle),
        cmocka_unit_test(test_truncation_is_damage),
        cmocka_unit_test(test_damage_last_record),
        cmocka_unit_test(test_flip_in_a_last_record_with_a_zero_sector),
        cmocka_unit_test(test_salvage),
        cmocka_unit_test(test_salvage_stopped_after_the_rename),
        cmocka_unit_test(test_info_records),
        cmocka_unit_test(test_slack_and_modes),
        cmocka_unit_test(test_default_log_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
