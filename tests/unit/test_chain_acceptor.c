/*
 * test_chain_acceptor.c - the acceptor store: replay after reopen,
 * monotonic promise, highest ballot per slot, buffered-until-sync,
 * compaction, torn tail at every cut point, damage in the middle.
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

    for (size_t cut = good + 1; cut < end; cut++) {
        /* keep `cut` bytes, the rest of the record never reached disk */
        uint8_t *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, full, len);
        memset(copy + cut, 0, len - cut);
        write_all(path, copy, len);
        free(copy);
        assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
        assert_int_equal(st.n_accepts, 1);
        check_slot(&st, 1, B(1, 1), "first");
        acceptor_close(a);
        /* a file cut short (not preallocated) is torn as well */
        write_all(path, full, cut);
        assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
        assert_int_equal(st.n_accepts, 1);
        acceptor_close(a);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_promise_monotonic),
        cmocka_unit_test(test_highest_ballot_per_slot),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_torn_tail),
        cmocka_unit_test(test_damage_middle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
