/*
 * test_chain_io.c - chain/ under injected I/O failures and simulated
 * crashes, through the chain_io table.
 *
 * The fake table passes calls to libc, except that it can fail the n-th
 * call of a kind (EIO, ENOSPC), cut a write short, and keep an undo log
 * of every write and truncate not yet covered by an fdatasync/fsync of
 * the same descriptor.  crash() rolls the undo log back (newest first):
 * what was never synced never reached the disk.
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
#include "../../chain/chain_io.h"

/* ------------------------------------------------------------ fake io */

typedef struct undo {
    int fd;
    ino_t ino;           /* the file: a sync through any descriptor covers it */
    uint64_t offset;
    uint64_t old_size;
    size_t len;          /* bytes of old data that existed */
    uint8_t *old;
} undo;

static struct fake {
    int fail_pwrite_at;     /* 1 = next call fails; 0 = never */
    int pwrite_errno;
    size_t short_write;     /* write this many bytes first, then fail */
    int fail_ftruncate_at;
    int fail_fdatasync_at;
    int fail_open_at;
    int open_errno;
    int n_pwrite, n_ftruncate, n_fdatasync, n_open;
    undo log[4096];
    size_t n_undo;
} F;

static const chain_io_ops *libc_io;

static bool hit(int *counter, int at)
{
    (*counter)++;
    return at && *counter == at;
}

static void undo_record(int fd, uint64_t offset, size_t len)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(F.n_undo < 4096);
    undo *u = &F.log[F.n_undo++];
    u->fd = fd;
    u->ino = st.st_ino;
    u->offset = offset;
    u->old_size = (uint64_t)st.st_size;
    u->len = 0;
    u->old = NULL;
    if (offset < u->old_size) {
        uint64_t have = u->old_size - offset;
        u->len = have < len ? (size_t)have : len;
        u->old = malloc(u->len ? u->len : 1);
        assert_non_null(u->old);
        assert_int_equal(pread(fd, u->old, u->len, (off_t)offset),
                         (ssize_t)u->len);
    }
}

/* Forget the undo records written through `fd` (close), or, when
 * `whole_file`, every record of the file behind it (fdatasync makes the
 * file durable, whichever descriptor wrote). */
static void undo_forget(int fd, bool whole_file)
{
    struct stat st;
    if (whole_file)
        assert_int_equal(fstat(fd, &st), 0);
    size_t k = 0;
    for (size_t i = 0; i < F.n_undo; i++) {
        bool match = whole_file ? F.log[i].ino == st.st_ino : F.log[i].fd == fd;
        if (match)
            free(F.log[i].old);
        else
            F.log[k++] = F.log[i];
    }
    F.n_undo = k;
}

/* The machine loses power: unsynced writes are rolled back. */
static void crash(void)
{
    while (F.n_undo > 0) {
        undo *u = &F.log[--F.n_undo];
        if (u->len)
            assert_int_equal(pwrite(u->fd, u->old, u->len, (off_t)u->offset),
                             (ssize_t)u->len);
        assert_int_equal(ftruncate(u->fd, (off_t)u->old_size), 0);
        free(u->old);
    }
}

static int64_t fake_pwrite(int fd, const void *buf, size_t len,
                           uint64_t offset)
{
    if (hit(&F.n_pwrite, F.fail_pwrite_at)) {
        if (F.short_write && F.short_write < len) {
            undo_record(fd, offset, F.short_write);
            libc_io->pwrite(fd, buf, F.short_write, offset);
        }
        return -F.pwrite_errno;
    }
    undo_record(fd, offset, len);
    return libc_io->pwrite(fd, buf, len, offset);
}

static int fake_ftruncate(int fd, uint64_t len)
{
    if (hit(&F.n_ftruncate, F.fail_ftruncate_at))
        return -EIO;
    undo_record(fd, len, 0);
    return libc_io->ftruncate(fd, len);
}

static int fake_fdatasync(int fd)
{
    if (hit(&F.n_fdatasync, F.fail_fdatasync_at))
        return -EIO;
    int rc = libc_io->fdatasync(fd);
    if (!rc)
        undo_forget(fd, true);
    return rc;
}

static int fake_fsync(int fd)
{
    int rc = libc_io->fsync(fd);
    if (!rc)
        undo_forget(fd, true);
    return rc;
}

static int fake_open(const char *path, int flags, mode_t mode)
{
    if (hit(&F.n_open, F.fail_open_at))
        return -F.open_errno;
    return libc_io->open(path, flags, mode);
}

static int fake_close(int fd)
{
    /* a closed descriptor's unsynced writes can no longer be undone by
     * fd; tests crash before closing */
    undo_forget(fd, false);
    return libc_io->close(fd);
}

static chain_io_ops fake_ops;

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < F.n_undo; i++)
        free(F.log[i].old);
    memset(&F, 0, sizeof F);
    F.pwrite_errno = EIO;
    F.open_errno = ENOSPC;
    libc_io = chain_io_libc();
    fake_ops = *libc_io;
    fake_ops.pwrite = fake_pwrite;
    fake_ops.ftruncate = fake_ftruncate;
    fake_ops.fdatasync = fake_fdatasync;
    fake_ops.fsync = fake_fsync;
    fake_ops.open = fake_open;
    fake_ops.close = fake_close;
    chain_io_set(&fake_ops);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    chain_io_set(NULL);
    for (size_t i = 0; i < F.n_undo; i++)
        free(F.log[i].old);
    F.n_undo = 0;
    return 0;
}

/* ------------------------------------------------------------ helpers */

static int append_n(chain *c, uint64_t n)
{
    uint8_t data[64];
    for (uint64_t k = 0; k < n; k++) {
        uint64_t i = chain_head_index(c) + 1;
        memset(data, (int)i, sizeof data);
        int rc = chain_append(c, i, i, PX_ENTRY_BATCH, data,
                              (uint32_t)(i % 64), NULL);
        if (rc)
            return rc;
    }
    return 0;
}

static void reopen_expect(const char *dir, uint64_t head,
                          const uint8_t *hash, bool torn)
{
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    assert_int_equal(chain_head_index(c), head);
    if (hash)
        assert_memory_equal(chain_head_hash(c), hash, 32);
    assert_int_equal(rep.torn_tail_cut, torn);
    chain_close(c);
    uint64_t vhead;
    assert_int_equal(chain_verify_dir(dir, &vhead, NULL, &dmg), 0);
    assert_int_equal(vhead, head);
}

/* ------------------------------------------------------------- tests */

static void test_append_eio_leaves_state(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    uint8_t hash[32];

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    assert_int_equal(append_n(c, 5), 0);
    memcpy(hash, chain_head_hash(c), 32);

    /* plain EIO */
    F.fail_pwrite_at = F.n_pwrite + 1;
    assert_int_equal(append_n(c, 1), -EIO);
    assert_int_equal(chain_head_index(c), 5);
    assert_memory_equal(chain_head_hash(c), hash, 32);

    /* ENOSPC after a partial write: the partial bytes are cut away */
    F.pwrite_errno = ENOSPC;
    F.short_write = 50;
    F.fail_pwrite_at = F.n_pwrite + 1;
    assert_int_equal(append_n(c, 1), -ENOSPC);
    assert_int_equal(chain_head_index(c), 5);
    assert_memory_equal(chain_head_hash(c), hash, 32);

    /* the chain goes on */
    assert_int_equal(append_n(c, 3), 0);
    assert_int_equal(chain_sync(c), 0);
    memcpy(hash, chain_head_hash(c), 32);
    chain_block b;
    assert_int_equal(chain_read(c, 6, &b), 0);
    assert_int_equal(b.index, 6);
    chain_block_free(&b);
    chain_close(c);
    reopen_expect(dir, 8, hash, false);
    rm_tree(dir);
}

static void test_append_fail_and_truncate_fail(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    uint8_t hash[32];

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    assert_int_equal(append_n(c, 4), 0);
    assert_int_equal(chain_sync(c), 0);
    memcpy(hash, chain_head_hash(c), 32);
    F.short_write = 30;
    F.fail_pwrite_at = F.n_pwrite + 1;
    F.fail_ftruncate_at = F.n_ftruncate + 1;
    assert_int_equal(append_n(c, 1), -EIO);
    /* the partial record could not be removed: no more writes */
    assert_int_equal(append_n(c, 1), -EIO);
    assert_int_equal(chain_sync(c), -EIO);
    assert_int_equal(chain_head_index(c), 4);
    chain_close(c);
    /* the leftover is a torn tail, cut on reopen */
    reopen_expect(dir, 4, hash, true);
    rm_tree(dir);
}

static void test_roll_enospc(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    chain_set_segment_bytes(c, 512);
    assert_int_equal(append_n(c, 3), 0);
    uint64_t head = chain_head_index(c);
    /* find an append that needs a new segment: fail its open */
    F.fail_open_at = F.n_open + 1;
    int rc = 0;
    for (int k = 0; k < 20 && rc == 0; k++)
        rc = append_n(c, 1);
    assert_int_equal(rc, -ENOSPC);
    head = chain_head_index(c);
    uint8_t hash[32];
    memcpy(hash, chain_head_hash(c), 32);
    F.fail_open_at = 0;
    assert_int_equal(append_n(c, 10), 0);
    assert_int_equal(chain_sync(c), 0);
    assert_int_equal(chain_head_index(c), head + 10);
    memcpy(hash, chain_head_hash(c), 32);
    chain_close(c);
    reopen_expect(dir, head + 10, hash, false);
    rm_tree(dir);
}

static void test_sync_failure_sticky(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    assert_int_equal(append_n(c, 3), 0);
    assert_int_equal(chain_sync(c), 0);
    assert_int_equal(append_n(c, 2), 0);
    F.fail_fdatasync_at = F.n_fdatasync + 1;
    assert_int_equal(chain_sync(c), -EIO);
    assert_int_equal(chain_synced_index(c), 3);
    assert_int_equal(chain_sync(c), -EIO);    /* sticky */
    assert_int_equal(append_n(c, 1), -EIO);
    crash();
    chain_close(c);
    reopen_expect(dir, 3, NULL, false);
    rm_tree(dir);
}

/* A crash drops what was appended after the last sync, across segment
 * rolls; a crash in the middle of a write leaves a torn tail. */
static void test_crash_drops_unsynced(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    uint8_t hash[32];

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    chain_set_segment_bytes(c, 1024);
    assert_int_equal(append_n(c, 20), 0);
    assert_int_equal(chain_sync(c), 0);
    memcpy(hash, chain_head_hash(c), 32);
    assert_int_equal(append_n(c, 30), 0);   /* rolls, never synced */
    crash();
    chain_close(c);
    /* Segment files created after the sync exist but are empty now; a
     * roll syncs the segment before the previous one, so the chain is a
     * verified prefix holding at least the synced blocks. */
    uint64_t head;
    {
        chain *c2;
        uint8_t h20[32];
        assert_int_equal(chain_open(dir, &c2, &rep, &dmg), 0);
        head = chain_head_index(c2);
        assert_true(head >= 20 && head < 50);
        assert_int_equal(chain_hash_at(c2, 20, h20), 0);
        assert_memory_equal(h20, hash, 32);
        chain_close(c2);
    }

    /* torn: the last unsynced write reached the disk only in part */
    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    assert_int_equal(append_n(c, 1), 0);
    assert_int_equal(chain_sync(c), 0);
    memcpy(hash, chain_head_hash(c), 32);
    F.short_write = 20;
    F.fail_pwrite_at = F.n_pwrite + 1;
    F.fail_ftruncate_at = F.n_ftruncate + 1;   /* and the cleanup fails */
    assert_int_equal(append_n(c, 1), -EIO);
    chain_close(c);                             /* partial bytes stay */
    reopen_expect(dir, head + 1, hash, true);
    rm_tree(dir);
}

static void test_acceptor_failures(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    px_entry e = { .slot = 1, .ballot = { 1, 1 }, .time_ms = 5,
                   .kind = PX_ENTRY_BATCH, .len = 3,
                   .data = (const uint8_t *)"abc" };

    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(acceptor_put_accept(a, &e), 0);
    assert_int_equal(acceptor_sync(a), 0);
    /* one write, one fdatasync per sync, whatever was buffered */
    int w0 = F.n_pwrite, s0 = F.n_fdatasync;
    for (uint64_t k = 2; k <= 10; k++) {
        e.slot = k;
        assert_int_equal(acceptor_put_accept(a, &e), 0);
    }
    assert_int_equal(acceptor_put_promise(a, (px_ballot){ 2, 1 }), 0);
    assert_int_equal(acceptor_sync(a), 0);
    assert_int_equal(F.n_pwrite - w0, 1);
    assert_int_equal(F.n_fdatasync - s0, 1);

    /* unsynced puts die with the machine */
    e.slot = 11;
    assert_int_equal(acceptor_put_accept(a, &e), 0);
    crash();
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 10);
    assert_int_equal(st.promise.round, 2);

    /* a failed fdatasync is sticky; after the crash the store holds
     * either all or none of that batch, never a damaged log */
    e.slot = 12;
    assert_int_equal(acceptor_put_accept(a, &e), 0);
    F.fail_fdatasync_at = F.n_fdatasync + 1;
    assert_int_equal(acceptor_sync(a), -EIO);
    assert_int_equal(acceptor_sync(a), -EIO);
    assert_int_equal(acceptor_put_accept(a, &e), -EIO);
    crash();
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 10);
    acceptor_close(a);

    /* a roll that fails to rename keeps the old log */
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    for (uint64_t k = 13; k <= 40; k++) {
        e.slot = k;
        assert_int_equal(acceptor_put_accept(a, &e), 0);
    }
    assert_int_equal(acceptor_sync(a), 0);
    acceptor_set_log_bytes(a, 1024);
    F.fail_fdatasync_at = F.n_fdatasync + 1;
    assert_int_equal(acceptor_compact(a, 5), -EIO);
    acceptor_close(a);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 38);
    acceptor_close(a);
    rm_tree(dir);
}

/* A node that lost its storage settles the files before reopening
 * them: what was written but never synced (the chain's tail, an acceptor
 * write whose fdatasync never ran) becomes durable, so that a crash
 * afterwards keeps what the reopened stores took for durable; a sync that
 * still fails is reported and the files are not called settled. */
static void test_settle_makes_written_durable(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    acceptor_store *a;
    acceptor_state st;
    uint8_t hash[32];
    px_entry e = { .slot = 1, .ballot = { 1, 1 }, .time_ms = 5,
                   .kind = PX_ENTRY_BATCH, .len = 3,
                   .data = (const uint8_t *)"abc" };

    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    chain_set_segment_bytes(c, 1024);
    assert_int_equal(append_n(c, 3), 0);
    assert_int_equal(chain_sync(c), 0);
    assert_int_equal(append_n(c, 30), 0);          /* rolls, unsynced */
    memcpy(hash, chain_head_hash(c), 32);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(acceptor_put_accept(a, &e), 0);
    assert_int_equal(acceptor_write(a), 0);        /* no fdatasync */

    /* a failing disk: the settle says so */
    F.fail_fdatasync_at = F.n_fdatasync + 1;
    assert_int_equal(chain_settle_dir(dir), -EIO);
    /* it works again: everything written is durable now */
    assert_int_equal(chain_settle_dir(dir), 0);
    crash();
    assert_int_equal(F.n_undo, 0);
    acceptor_close(a);
    chain_close(c);
    reopen_expect(dir, 33, hash, false);
    assert_int_equal(acceptor_open(dir, &a, &st, &dmg), 0);
    assert_int_equal(st.n_accepts, 1);
    acceptor_close(a);
    /* a directory without stores settles to nothing */
    char *empty = make_tmpdir();
    assert_int_equal(chain_settle_dir(empty), 0);
    rm_tree(empty);
    rm_tree(dir);
}

/* Listing segments and duplicating the active one go through the table
 * (a fake disk serves them); a table without them gets libc's. */
static int n_list, n_dup;

static int counting_list(const char *dir,
                         int (*each)(void *arg, const char *name), void *arg)
{
    n_list++;
    return chain_io_libc()->list(dir, each, arg);
}

static int counting_dup(int fd)
{
    n_dup++;
    return chain_io_libc()->dup(fd);
}

static void roll_sync_reopen(const char *dir)
{
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    chain_set_segment_bytes(c, 512);
    assert_int_equal(append_n(c, 40), 0);      /* several segments */
    assert_int_equal(chain_sync(c), 0);        /* a dup of the active one */
    uint8_t head[32];
    memcpy(head, chain_head_hash(c), 32);
    chain_close(c);
    reopen_expect(dir, 40, head, false);       /* listed again */
}

static void test_list_and_dup_through_the_table(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    n_list = n_dup = 0;
    fake_ops.list = counting_list;
    fake_ops.dup = counting_dup;
    roll_sync_reopen(dir);
    assert_true(n_list >= 2);
    assert_true(n_dup >= 1);
    rm_tree(dir);
}

static void test_table_without_list_or_dup(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    fake_ops.list = NULL;
    fake_ops.dup = NULL;
    roll_sync_reopen(dir);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_eio_leaves_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_append_fail_and_truncate_fail,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_roll_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_failure_sticky, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_crash_drops_unsynced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_settle_makes_written_durable,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_acceptor_failures, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list_and_dup_through_the_table,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_without_list_or_dup,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
