/*
 * test_net_snapxfer.c - snapshot transfers between two stores through
 * SNAPSHOT/SNAPSHOT_ASK frames (net/snapxfer.c): a whole transfer in
 * windows, bounded asks, and every chunk that was not asked for dropped
 * and counted; damage, stalls and abandoned transfers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../net/snapxfer.h"
#include "kvbuild.h"
#include "tmpdir.h"

#define QMAX 4096

typedef struct frame {
    uint32_t to;
    uint8_t *buf;
    size_t len;
} frame;

typedef struct world {
    char *dir_a, *dir_b;
    snapstore *sa, *sb;
    snapxfer *xa, *xb;       /* node 1 sends, node 2 receives */
    kv *state;
    snap_info info;
    frame q[QMAX];
    uint32_t nq;
    uint64_t in_flight, max_in_flight;  /* chunk bytes queued */
    bool lose_chunks;
    int flip_at;              /* flip a byte of the chunk holding this
                                 offset (-1: none) */
} world;

static int w_send(void *arg, uint32_t peer, const uint8_t *f, size_t len)
{
    world *w = arg;
    assert_true(w->nq < QMAX);
    wire_header h;
    assert_int_equal(wire_peek(f, len, &h), 0);
    if (h.kind == WIRE_SNAPSHOT) {
        if (w->lose_chunks)
            return 0;
        w->in_flight += len;
        if (w->in_flight > w->max_in_flight)
            w->max_in_flight = w->in_flight;
    }
    frame *x = &w->q[w->nq++];
    x->to = peer;
    x->buf = malloc(len);
    memcpy(x->buf, f, len);
    x->len = len;
    return 0;
}

static void w_log(void *arg, const char *line)
{
    (void)arg;
    (void)line;
}

/* Deliver every queued frame; returns how many snapshots completed. */
static int w_run(world *w, uint64_t now)
{
    int done = 0;
    uint32_t n = w->nq;   /* what is queued now; answers wait a round */
    frame now_q[QMAX];
    memcpy(now_q, w->q, n * sizeof(frame));
    w->nq = 0;
    for (uint32_t k = 0; k < n; k++) {
        frame *f = &now_q[k];
        wire_header h;
        assert_int_equal(wire_peek(f->buf, f->len, &h), 0);
        if (h.kind == WIRE_SNAPSHOT_ASK) {
            wire_snapshot_ask a;
            assert_int_equal(wire_decode_snapshot_ask(f->buf, f->len, &a), 0);
            snapxfer_on_ask(f->to == 1 ? w->xa : w->xb, a.from, &a, now);
        } else {
            wire_snapshot c;
            assert_int_equal(wire_decode_snapshot(f->buf, f->len, &c), 0);
            w->in_flight -= f->len;
            if (w->flip_at >= 0 && c.offset <= (uint64_t)w->flip_at &&
                (uint64_t)w->flip_at < c.offset + c.len)
                ((uint8_t *)c.data)[w->flip_at - c.offset] ^= 0x40;
            done += snapxfer_on_chunk(f->to == 2 ? w->xb : w->xa, c.from, &c,
                                      now);
        }
        free(f->buf);
    }
    return done;
}

static world *w_new(uint32_t keys, uint32_t chunk, uint32_t window,
                    uint64_t max_total)
{
    world *w = calloc(1, sizeof(*w));
    w->flip_at = -1;
    w->dir_a = make_tmpdir();
    w->dir_b = make_tmpdir();
    assert_int_equal(snapstore_open(w->dir_a, true, &w->sa), 0);
    assert_int_equal(snapstore_open(w->dir_b, true, &w->sb), 0);
    w->state = kv_create();
    uint64_t seq = 1;
    static uint8_t op[1024];
    char key[64], val[200];
    uint64_t rng = 88172645463325252ull;
    for (uint32_t i = 0; i < keys; i++) {
        snprintf(key, sizeof key, "k%06u", i);
        for (size_t j = 0; j < sizeof val; j++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            val[j] = (char)(rng & 0xff);    /* incompressible */
        }
        kvb_apply1(w->state, &seq, 1000 + i, op,
                   kvb_put(op, sizeof op, key, val, sizeof val));
    }
    uint8_t head[CHAIN_HASH_BYTES];
    memset(head, 0x5a, sizeof head);
    assert_int_equal(snapstore_take(w->sa, w->state, head, NULL, 0, &w->info),
                     0);
    snapxfer_edges e = { .arg = w, .send = w_send, .log = w_log };
    snapxfer_config ca = { .self_id = 1, .chunk_bytes = chunk,
                           .window_chunks = window, .max_total = max_total };
    snapxfer_config cb = ca;
    cb.self_id = 2;
    assert_int_equal(snapxfer_new(&ca, &e, w->sa, &w->xa), 0);
    assert_int_equal(snapxfer_new(&cb, &e, w->sb, &w->xb), 0);
    return w;
}

static void w_free(world *w)
{
    for (uint32_t k = 0; k < w->nq; k++)
        free(w->q[k].buf);
    snapxfer_free(w->xa);
    snapxfer_free(w->xb);
    snapstore_close(w->sa);
    snapstore_close(w->sb);
    kv_destroy(w->state);
    rm_tree(w->dir_a);
    rm_tree(w->dir_b);
    free(w);
}

/* A whole transfer in windows of 3 chunks of 4 KiB: the state arrives
 * with the digest it left with, in the receiver's store as its newest
 * snapshot, and never more than one window was in flight. */
static void test_transfer_whole(void **state)
{
    (void)state;
    world *w = w_new(2000, 4096, 3, 0);
    assert_true(w->info.file_bytes > 10 * 4096);
    assert_int_equal(snapxfer_fetch(w->xb, 1, 0, 100), 0);
    int done = 0;
    for (int i = 0; i < 10000 && !done; i++)
        done = w_run(w, 100 + (uint64_t)i);
    assert_int_equal(done, 1);
    kv *got = NULL;
    snap_info info;
    assert_int_equal(snapxfer_take(w->xb, &got, &info), 0);
    assert_int_equal(info.index, w->info.index);
    assert_int_equal(kv_applied_index(got), w->info.index);
    uint8_t d1[KV_DIGEST_BYTES], d2[KV_DIGEST_BYTES];
    kv_digest(w->state, d1);
    kv_digest(got, d2);
    assert_memory_equal(d1, d2, KV_DIGEST_BYTES);
    assert_int_equal(kv_count(got), 2000);
    kv_destroy(got);
    assert_int_equal(snapstore_count(w->sb), 1);
    assert_int_equal(snapstore_index_at(w->sb, 0), w->info.index);
    assert_true(w->max_in_flight <= 3 * (4096 + 64));
    snapxfer_stats st;
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.dropped, 0);
    assert_false(st.active);
    snapxfer_get_stats(w->xa, &st);
    assert_int_equal(st.bytes_sent, w->info.file_bytes);
    assert_int_equal(snapxfer_take(w->xb, &got, NULL), -ENOENT);
    w_free(w);
}

static void chunk_from(world *w, uint32_t from, uint64_t index,
                       uint64_t offset, uint64_t total, uint64_t now,
                       int expect)
{
    static uint8_t data[16];
    wire_snapshot c = { .from = from, .to = 2, .index = index,
                        .offset = offset, .total = total, .len = sizeof data,
                        .data = data };
    assert_int_equal(snapxfer_on_chunk(w->xb, from, &c, now), expect);
}

/* Chunks nobody asked for, from another node, of another snapshot, past
 * a gap, or declaring a size over the limit: dropped and counted, the
 * transfer asked for goes on (or, for the size, is given up). */
static void test_unasked_chunks_dropped(void **state)
{
    (void)state;
    world *w = w_new(300, 4096, 2, 1u << 20);
    snapxfer_stats st;
    chunk_from(w, 1, 50, 0, 1000, 10, 0);       /* no transfer */
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(snapxfer_fetch(w->xb, 1, w->info.index - 1, 10), 0);
    chunk_from(w, 3, 50, 0, 1000, 10, 0);       /* another node */
    chunk_from(w, 1, 50, 4096, 1000000, 10, 0); /* does not start it */
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.dropped, 3);
    assert_true(st.active);
    /* the real transfer: first window, then a forged chunk of another
     * snapshot and one past a gap */
    int done = w_run(w, 11);    /* the ask */
    assert_int_equal(done, 0);
    done = w_run(w, 12);        /* the first window arrives */
    assert_int_equal(done, 0);
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.received, 2 * 4096);
    chunk_from(w, 1, w->info.index + 1, 8192, w->info.file_bytes, 12, 0);
    chunk_from(w, 1, w->info.index, 9000, w->info.file_bytes, 12, 0);
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.dropped, 5);
    assert_int_equal(st.received, 2 * 4096);
    for (int i = 0; i < 1000 && !done; i++)
        done = w_run(w, 13 + (uint64_t)i);
    assert_int_equal(done, 1);
    kv *got;
    assert_int_equal(snapxfer_take(w->xb, &got, NULL), 0);
    kv_destroy(got);
    /* a declared size over the limit ends the transfer at once */
    assert_int_equal(snapxfer_fetch(w->xb, 1, 0, 2000), 0);
    w->nq = 0 + w->nq;
    for (uint32_t k = 0; k < w->nq; k++)
        free(w->q[k].buf);
    w->nq = 0;
    chunk_from(w, 1, 99, 0, 2u << 20, 2000, 0);
    snapxfer_get_stats(w->xb, &st);
    assert_false(st.active);
    assert_int_equal(st.failed, 1);
    /* a snapshot not newer than needed is refused */
    assert_int_equal(snapxfer_fetch(w->xb, 1, 1000, 3000), 0);
    for (uint32_t k = 0; k < w->nq; k++)
        free(w->q[k].buf);
    w->nq = 0;
    chunk_from(w, 1, 1000, 0, 100, 3000, 0);
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.failed, 2);
    w_free(w);
}

/* An ask for more than a window is cut to one window; an ask for a
 * snapshot the sender no longer holds, or from a sender holding none,
 * is refused (counted). */
static void test_ask_bounded(void **state)
{
    (void)state;
    world *w = w_new(2000, 4096, 2, 0);
    wire_snapshot_ask a = { .from = 2, .to = 1, .index = 0, .offset = 0,
                            .len = WIRE_MAX_CHUNK_BYTES * WIRE_MAX_ASK_CHUNKS };
    snapxfer_on_ask(w->xa, 2, &a, 5);
    assert_int_equal(w->nq, 2);
    assert_true(w->in_flight <= 2 * (4096 + 64));
    a.index = 12345;
    snapxfer_on_ask(w->xa, 2, &a, 6);
    snapxfer_on_ask(w->xb, 1, &a, 6);       /* node 2 holds none */
    a.index = 0;
    snapxfer_on_ask(w->xb, 1, &a, 6);
    snapxfer_stats st;
    snapxfer_get_stats(w->xa, &st);
    assert_int_equal(st.asks_refused, 1);
    assert_int_equal(st.asks_served, 1);
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.asks_refused, 2);
    /* idle sessions close */
    snapxfer_get_stats(w->xa, &st);
    assert_int_equal(st.sessions, 1);
    snapxfer_tick(w->xa, 6 + SNAPXFER_IDLE_MS);
    snapxfer_get_stats(w->xa, &st);
    assert_int_equal(st.sessions, 0);
    w_free(w);
}

/* A flipped byte in a chunk ends the transfer (the frame's CRC), with
 * nothing installed; a new fetch then succeeds. */
static void test_damaged_chunk(void **state)
{
    (void)state;
    world *w = w_new(2000, 4096, 4, 0);
    w->flip_at = 20000;
    assert_int_equal(snapxfer_fetch(w->xb, 1, 0, 1), 0);
    int done = 0;
    snapxfer_stats st;
    for (int i = 0; i < 100 && !done; i++) {
        done = w_run(w, 2 + (uint64_t)i);
        snapxfer_get_stats(w->xb, &st);
        if (!st.active)
            break;
    }
    assert_int_equal(done, 0);
    assert_int_equal(st.failed, 1);
    assert_false(st.active);
    assert_int_equal(snapstore_count(w->sb), 0);
    w->flip_at = -1;
    for (uint32_t k = 0; k < w->nq; k++)
        free(w->q[k].buf);
    w->nq = 0;
    w->in_flight = 0;
    assert_int_equal(snapxfer_fetch(w->xb, 1, 0, 200), 0);
    for (int i = 0; i < 1000 && !done; i++)
        done = w_run(w, 201 + (uint64_t)i);
    assert_int_equal(done, 1);
    assert_int_equal(snapstore_count(w->sb), 1);
    w_free(w);
}

/* Lost chunks: the receiver asks again after the stall time, and gives
 * the transfer up after the abandon time without progress. */
static void test_stall_and_abandon(void **state)
{
    (void)state;
    world *w = w_new(500, 4096, 2, 0);
    assert_int_equal(snapxfer_fetch(w->xb, 1, 0, 1000), 0);
    w->lose_chunks = true;
    w_run(w, 1001);
    snapxfer_stats st;
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.asks_sent, 1);
    snapxfer_tick(w->xb, 1000 + SNAPXFER_STALL_MS - 1);
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.asks_sent, 1);
    snapxfer_tick(w->xb, 1000 + SNAPXFER_STALL_MS);
    snapxfer_get_stats(w->xb, &st);
    assert_int_equal(st.asks_sent, 2);
    w->lose_chunks = false;
    w_run(w, 1000 + SNAPXFER_STALL_MS);
    w_run(w, 1000 + SNAPXFER_STALL_MS);
    snapxfer_get_stats(w->xb, &st);
    assert_true(st.received > 0);
    w->lose_chunks = true;
    w_run(w, 1000 + SNAPXFER_STALL_MS);
    uint64_t t = 1000 + SNAPXFER_STALL_MS + SNAPXFER_ABANDON_MS;
    snapxfer_tick(w->xb, t);
    snapxfer_get_stats(w->xb, &st);
    assert_false(st.active);
    assert_int_equal(st.failed, 1);
    w_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer_whole),
        cmocka_unit_test(test_unasked_chunks_dropped),
        cmocka_unit_test(test_ask_bounded),
        cmocka_unit_test(test_damaged_chunk),
        cmocka_unit_test(test_stall_and_abandon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
