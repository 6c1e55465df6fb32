/*
 * test_net_syncer.c - group commit of the acceptor store (net/syncer.c):
 * nothing is reported durable before an fdatasync that started after its
 * write returned; ids come out in order, once; a failed fdatasync is
 * sticky; inline and thread syncs mix.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../chain/chain_io.h"
#include "../../net/syncer.h"
#include "tmpdir.h"

/* fdatasync that can be held at a gate, or fail */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool gate_closed;
    int waiting;            /* calls parked at the gate */
    int calls;
    int fail_errno;         /* non-zero: every call fails with it */
} G = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0, 0 };

static chain_io_ops fake_ops;

static int gated_fdatasync(int fd)
{
    pthread_mutex_lock(&G.lock);
    G.calls++;
    G.waiting++;
    pthread_cond_broadcast(&G.cond);
    while (G.gate_closed)
        pthread_cond_wait(&G.cond, &G.lock);
    G.waiting--;
    int fail = G.fail_errno;
    pthread_mutex_unlock(&G.lock);
    if (fail)
        return -fail;
    return chain_io_libc()->fdatasync(fd);
}

static void gate(bool closed)
{
    pthread_mutex_lock(&G.lock);
    G.gate_closed = closed;
    pthread_cond_broadcast(&G.cond);
    pthread_mutex_unlock(&G.lock);
}

/* Wait (bounded) until a sync call is parked at the gate. */
static void wait_parked(void)
{
    pthread_mutex_lock(&G.lock);
    for (int i = 0; i < 500 && G.waiting == 0; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&G.cond, &G.lock, &ts);
    }
    int waiting = G.waiting;
    pthread_mutex_unlock(&G.lock);
    assert_true(waiting > 0);
}

/* Wait (bounded) for the wake fd, then take what is durable. */
static int wait_take(syncer *s, uint64_t *ids, uint32_t max)
{
    struct pollfd p = { .fd = syncer_wake_fd(s), .events = POLLIN };
    assert_int_equal(poll(&p, 1, 5000), 1);
    syncer_ack_wake(s);
    return syncer_take(s, ids, max);
}

typedef struct fixture {
    char *dir;
    acceptor_store *store;
    syncer *sync;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = make_tmpdir();
    acceptor_state st;
    assert_int_equal(acceptor_open(f->dir, &f->store, &st, NULL), 0);
    fake_ops = *chain_io_libc();
    fake_ops.fdatasync = gated_fdatasync;
    chain_io_set(&fake_ops);
    G.gate_closed = false;
    G.calls = G.waiting = G.fail_errno = 0;
    assert_int_equal(syncer_create(f->store, &f->sync), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gate(false);
    syncer_destroy(f->sync);
    chain_io_set(NULL);
    acceptor_close(f->store);
    rm_tree(f->dir);
    free(f);
    return 0;
}

static void put(fixture *f, uint64_t slot, uint64_t persist_id)
{
    px_entry e = { .slot = slot, .ballot = { 1, 1 }, .kind = PX_ENTRY_NOOP };
    assert_int_equal(acceptor_put_accept(f->store, &e), 0);
    assert_int_equal(syncer_note(f->sync, persist_id), 0);
}

static void test_thread_sync_reports_in_order(void **state)
{
    fixture *f = *state;
    uint64_t ids[16];
    gate(true);
    put(f, 1, 1);
    put(f, 2, 2);
    assert_true(syncer_pending(f->sync));
    assert_int_equal(syncer_flush(f->sync, false), 0);
    wait_parked();                       /* the sync of generation 1 runs */
    put(f, 3, 3);
    assert_int_equal(syncer_flush(f->sync, false), 0);  /* generation 2 */
    assert_false(syncer_idle(f->sync));
    assert_int_equal(syncer_take(f->sync, ids, 16), 0); /* nothing yet */
    gate(false);
    uint32_t got = 0;
    for (int i = 0; i < 10 && got < 3; i++) {
        int k = wait_take(f->sync, ids + got, 16 - got);
        assert_true(k >= 0);
        got += (uint32_t)k;
    }
    assert_int_equal(got, 3);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(ids[i], i + 1);
    /* generation 2 was written during the first sync: a second one ran */
    assert_int_equal(G.calls, 2);
    assert_int_equal(syncer_syncs(f->sync), 2);
    assert_true(syncer_idle(f->sync));
    assert_false(syncer_pending(f->sync));
}

static void test_inline_sync(void **state)
{
    fixture *f = *state;
    uint64_t ids[4];
    put(f, 1, 7);
    assert_true(syncer_idle(f->sync));
    assert_int_equal(syncer_flush(f->sync, true), 0);
    assert_int_equal(G.calls, 1);
    assert_int_equal(syncer_syncs(f->sync), 1);
    assert_int_equal(syncer_take(f->sync, ids, 4), 1);
    assert_int_equal(ids[0], 7);
    assert_int_equal(syncer_take(f->sync, ids, 4), 0);   /* once */
    /* then through the thread again */
    put(f, 2, 8);
    assert_int_equal(syncer_flush(f->sync, false), 0);
    assert_int_equal(wait_take(f->sync, ids, 4), 1);
    assert_int_equal(ids[0], 8);
}

static void test_take_respects_max(void **state)
{
    fixture *f = *state;
    uint64_t ids[2];
    for (uint64_t i = 1; i <= 5; i++)
        put(f, i, i);
    assert_int_equal(syncer_flush(f->sync, true), 0);
    uint64_t next = 1;
    for (int round = 0; round < 3; round++) {
        int k = syncer_take(f->sync, ids, 2);
        assert_int_equal(k, round < 2 ? 2 : 1);
        for (int i = 0; i < k; i++)
            assert_int_equal(ids[i], next++);
    }
    assert_int_equal(next, 6);
}

static void test_failure_is_sticky(void **state)
{
    fixture *f = *state;
    uint64_t ids[4];
    G.fail_errno = EIO;
    put(f, 1, 1);
    assert_int_equal(syncer_flush(f->sync, false), 0);
    assert_int_equal(wait_take(f->sync, ids, 4), -EIO);
    /* the disk recovers: still nothing is reported durable */
    G.fail_errno = 0;
    put(f, 2, 2);
    assert_int_equal(syncer_flush(f->sync, true), -EIO);
    assert_int_equal(syncer_take(f->sync, ids, 4), -EIO);
    assert_false(syncer_idle(f->sync));
}

/* A node that reopened its acceptor store starts the syncer over: what
 * was noted before the failure never comes out, the failure is gone, and
 * new ids go through the thread (same wake fd) and inline again. */
static void test_reset_after_failure(void **state)
{
    fixture *f = *state;
    uint64_t ids[4];
    int wake = syncer_wake_fd(f->sync);
    G.fail_errno = EIO;
    put(f, 1, 1);
    assert_int_equal(syncer_flush(f->sync, false), 0);
    assert_int_equal(wait_take(f->sync, ids, 4), -EIO);
    put(f, 2, 2);                          /* buffered, never written */
    G.fail_errno = 0;
    acceptor_store *old = f->store;
    acceptor_state st;
    assert_int_equal(acceptor_open(f->dir, &f->store, &st, NULL), 0);
    assert_int_equal(syncer_reset(f->sync, f->store), 0);
    acceptor_close(old);
    assert_int_equal(syncer_wake_fd(f->sync), wake);
    assert_true(syncer_idle(f->sync));
    assert_false(syncer_pending(f->sync));
    assert_int_equal(syncer_take(f->sync, ids, 4), 0);
    put(f, 1, 1);
    assert_int_equal(syncer_flush(f->sync, false), 0);
    assert_int_equal(wait_take(f->sync, ids, 4), 1);
    assert_int_equal(ids[0], 1);
    put(f, 2, 2);
    assert_int_equal(syncer_flush(f->sync, true), 0);
    assert_int_equal(syncer_take(f->sync, ids, 4), 1);
    assert_int_equal(ids[0], 2);
    /* and a reset while a sync is parked waits for it */
    gate(true);
    put(f, 3, 3);
    assert_int_equal(syncer_flush(f->sync, false), 0);
    wait_parked();
    gate(false);
    assert_int_equal(syncer_reset(f->sync, f->store), 0);
    assert_int_equal(syncer_take(f->sync, ids, 4), 0);
    assert_true(syncer_idle(f->sync));
}

/* A flush with nothing new to write (a loop turn while a sync runs) adds
 * no generation: the sync already published covers what was written.
 * Before, every such turn published an empty generation, and the thread
 * ran one more fdatasync for nothing after each real one. */
static void test_flush_of_nothing_adds_no_sync(void **state)
{
    fixture *f = *state;
    uint64_t ids[4];
    gate(true);
    put(f, 1, 1);
    assert_int_equal(syncer_flush(f->sync, false), 0);
    wait_parked();
    assert_true(syncer_pending(f->sync));   /* written, not yet durable */
    for (int turn = 0; turn < 3; turn++)
        assert_int_equal(syncer_flush(f->sync, false), 0);
    gate(false);
    assert_int_equal(wait_take(f->sync, ids, 4), 1);
    assert_int_equal(ids[0], 1);
    for (int i = 0; i < 500 && !syncer_idle(f->sync); i++)
        usleep(1000);
    assert_true(syncer_idle(f->sync));
    assert_int_equal(G.calls, 1);
    assert_int_equal(syncer_syncs(f->sync), 1);
}

/* Manual mode (the simulator's): the fdatasync runs at once, through
 * chain_io, when a sync starts; nothing counts as durable before
 * syncer_complete; a generation written meanwhile gets the next sync,
 * started by syncer_complete itself. */
static int manual_started;
static int manual_kind;

static void on_started(void *arg, int kind, bool begin)
{
    (void)arg;
    if (begin) {
        manual_started++;
        manual_kind = kind;
    }
}

static void test_manual_sync_completes_when_told(void **state)
{
    fixture *f = *state;
    uint64_t ids[8];
    syncer *m;
    manual_started = 0;
    assert_int_equal(syncer_create_manual(f->store, on_started, NULL, 5, &m),
                     0);
    assert_int_equal(syncer_wake_fd(m), -1);
    px_entry e = { .slot = 1, .ballot = { 1, 1 }, .kind = PX_ENTRY_NOOP };
    assert_int_equal(acceptor_put_accept(f->store, &e), 0);
    assert_int_equal(syncer_note(m, 1), 0);
    assert_int_equal(syncer_flush(m, false), 0);
    assert_int_equal(G.calls, 1);             /* ran at the start */
    assert_int_equal(manual_started, 1);
    assert_int_equal(manual_kind, 5);
    assert_int_equal(syncer_take(m, ids, 8), 0);   /* not done yet */
    assert_false(syncer_idle(m));
    /* generation 2 while the first runs: no second start yet */
    e.slot = 2;
    assert_int_equal(acceptor_put_accept(f->store, &e), 0);
    assert_int_equal(syncer_note(m, 2), 0);
    assert_int_equal(syncer_flush(m, false), 0);
    assert_int_equal(G.calls, 1);
    assert_int_equal(manual_started, 1);
    syncer_complete(m);                        /* generation 1 durable ... */
    assert_int_equal(syncer_take(m, ids, 8), 1);
    assert_int_equal(ids[0], 1);
    assert_int_equal(G.calls, 2);              /* ... and the next started */
    assert_int_equal(manual_started, 2);
    assert_int_equal(syncer_take(m, ids, 8), 0);
    syncer_complete(m);
    assert_int_equal(syncer_take(m, ids, 8), 1);
    assert_int_equal(ids[0], 2);
    assert_true(syncer_idle(m));
    assert_int_equal(syncer_syncs(m), 2);
    syncer_complete(m);                        /* nothing runs: no-op */
    assert_int_equal(manual_started, 2);
    /* a failed fdatasync is sticky in manual mode too */
    G.fail_errno = EIO;
    e.slot = 3;
    assert_int_equal(acceptor_put_accept(f->store, &e), 0);
    assert_int_equal(syncer_note(m, 3), 0);
    assert_int_equal(syncer_flush(m, false), 0);
    syncer_complete(m);
    assert_int_equal(syncer_take(m, ids, 8), -EIO);
    syncer_destroy(m);
}

/* Manual mode after a reset (the simulator reopens a host's stores): a
 * sync started before the reset never counts, syncer_complete after it
 * does nothing, and the next flush starts a sync of the new store. */
static void test_manual_reset_forgets_the_running_sync(void **state)
{
    fixture *f = *state;
    uint64_t ids[8];
    syncer *m;
    manual_started = 0;
    assert_int_equal(syncer_create_manual(f->store, on_started, NULL, 5, &m),
                     0);
    px_entry e = { .slot = 1, .ballot = { 1, 1 }, .kind = PX_ENTRY_NOOP };
    assert_int_equal(acceptor_put_accept(f->store, &e), 0);
    assert_int_equal(syncer_note(m, 1), 0);
    assert_int_equal(syncer_flush(m, false), 0);
    assert_int_equal(manual_started, 1);
    assert_int_equal(syncer_reset(m, f->store), 0);
    assert_true(syncer_idle(m));
    syncer_complete(m);                        /* the old one: no effect */
    assert_int_equal(syncer_take(m, ids, 8), 0);
    assert_int_equal(manual_started, 1);
    e.slot = 2;
    assert_int_equal(acceptor_put_accept(f->store, &e), 0);
    assert_int_equal(syncer_note(m, 7), 0);
    assert_int_equal(syncer_flush(m, false), 0);
    assert_int_equal(manual_started, 2);       /* a new one started */
    assert_int_equal(syncer_take(m, ids, 8), 0);
    syncer_complete(m);
    assert_int_equal(syncer_take(m, ids, 8), 1);
    assert_int_equal(ids[0], 7);
    syncer_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thread_sync_reports_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_respects_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_is_sticky, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_after_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_sync_completes_when_told, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_of_nothing_adds_no_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_reset_forgets_the_running_sync, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
