/*
 * test_fs_reads.c - the mount's reads of state as the node serves them
 * (node/reads.c over the client handle and a key-value state): a read
 * completes later, never inside the call, at a read point or (applied
 * reads) at the next client_flush; it delivers a copy of what it asked
 * for (metadata, a lent reference to the value, a page of keys, counts),
 * the state as it is when the completion runs; it waits for this client's
 * answered writes; failures and deadlines reach it exactly once.
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

#include "../../base/entry.h"
#include "../../node/client.h"
#include "../../node/reads.h"

#define CLIENT_ID 7
#define OTHER_ID 8

/* ------------------------------------------------------------ fixture */

typedef struct world {
    kv *state;
    client *cl;
    uint64_t slot;               /* last applied */
    uint64_t other_seq;
    /* read tokens handed out by client_flush */
    uint64_t tokens[16];
    uint32_t n_tokens;
    /* proposed requests (ours), copied */
    struct { uint64_t seq; uint8_t op[512]; uint32_t len; } proposed[16];
    uint32_t n_proposed;
    /* the order of events: 'c' a change told, 'r' a read completed */
    char events[64];
    uint32_t n_events;
} world;

static void on_changed(void *arg, const char *key, size_t key_len,
                       bool removed)
{
    (void)key;
    (void)key_len;
    (void)removed;
    world *w = arg;
    if (w->n_events < sizeof w->events - 1)
        w->events[w->n_events++] = 'c';
}

static int setup(void **st)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->state = kv_create();
    assert_non_null(w->state);
    kv_set_changed(w->state, on_changed, w);
    assert_int_equal(client_create(CLIENT_ID, 1000, 0, &w->cl), 0);
    *st = w;
    return 0;
}

static int teardown(void **st)
{
    world *w = *st;
    client_destroy(w->cl);
    kv_destroy(w->state);
    free(w);
    return 0;
}

static void on_propose(void *arg, px_request *reqs, uint32_t k)
{
    world *w = arg;
    for (uint32_t i = 0; i < k; i++) {
        assert_true(w->n_proposed < 16 && reqs[i].len <= 512);
        w->proposed[w->n_proposed].seq = reqs[i].seq;
        memcpy(w->proposed[w->n_proposed].op, reqs[i].op, reqs[i].len);
        w->proposed[w->n_proposed].len = reqs[i].len;
        w->n_proposed++;
    }
}

static void on_read_token(void *arg, const uint64_t *tokens, uint32_t n)
{
    world *w = arg;
    for (uint32_t i = 0; i < n; i++) {
        assert_true(w->n_tokens < 16);
        w->tokens[w->n_tokens++] = tokens[i];
    }
}

static void flush(world *w)
{
    client_flush(w->cl, on_propose, on_read_token, w);
}

static void on_result(void *arg, uint64_t who, uint64_t seq, int32_t result,
                      uint64_t slot)
{
    (void)slot;
    world *w = arg;
    if (who == CLIENT_ID)
        client_applied(w->cl, seq, result);
}

/* Apply one entry holding one request (`ours`: the first op proposed by
 * the client, else `op` from another client), then let the client serve
 * what the state now allows. */
static void apply(world *w, bool ours, const uint8_t *op, uint32_t op_len)
{
    px_request req;
    if (ours) {
        assert_true(w->n_proposed > 0);
        req = (px_request){ .client_id = CLIENT_ID,
                            .seq = w->proposed[0].seq, .ack_seq = 1,
                            .len = w->proposed[0].len,
                            .op = w->proposed[0].op };
    } else {
        req = (px_request){ .client_id = OTHER_ID, .seq = ++w->other_seq,
                            .ack_seq = w->other_seq, .len = op_len,
                            .op = op };
    }
    uint8_t buf[1024];
    px_batch_put_header(buf, 1);
    uint32_t len = 4 + px_batch_put(buf + 4, &req);
    px_entry e = { .slot = ++w->slot, .time_ms = 1000 + w->slot,
                   .kind = PX_ENTRY_BATCH, .len = len, .data = buf };
    assert_int_equal(kv_apply_entry(w->state, &e, on_result, w), 0);
    client_serve(w->cl, w->slot, true);
}

static void put(world *w, const char *key, const char *val)
{
    uint8_t op[512];
    int64_t n = kv_op_encode_put(op, sizeof op, key, strlen(key),
                                 (const uint8_t *)val, (uint32_t)strlen(val));
    assert_true(n > 0);
    apply(w, false, op, (uint32_t)n);
}

/* ------------------------------------------------------ completions */

typedef struct got {
    world *w;
    int calls;
    int result;
    bool had_view;
    fs_meta meta;
    const kv_value *kept;        /* a reference taken in the callback */
    char data[64];
    bool had_value;
    /* a page */
    char keys[8][16];
    uint32_t n;
    bool more;
    fs_usage usage;
} got;

static void on_key(void *arg, int result, const fs_entry_view *view)
{
    got *g = arg;
    g->calls++;
    g->result = result;
    g->had_view = view != NULL;
    if (g->w && g->w->n_events < sizeof g->w->events - 1)
        g->w->events[g->w->n_events++] = 'r';
    if (!view)
        return;
    assert_null(view->key);
    g->meta = view->meta;
    g->had_value = view->value != NULL;
    if (view->value) {
        assert_true(view->value->len < sizeof g->data);
        memcpy(g->data, view->value->data, view->value->len);
        g->data[view->value->len] = '\0';
        kv_value_ref(view->value);
        g->kept = view->value;
    }
}

static void on_page(void *arg, int result, const fs_dir_page *page)
{
    got *g = arg;
    g->calls++;
    g->result = result;
    g->had_view = page != NULL;
    if (!page)
        return;
    g->n = page->n;
    g->more = page->more;
    for (uint32_t i = 0; i < page->n && i < 8; i++) {
        assert_true(page->entries[i].key_len < 16);
        memcpy(g->keys[i], page->entries[i].key, page->entries[i].key_len);
        g->keys[i][page->entries[i].key_len] = '\0';
        assert_true(page->entries[i].meta.ident != 0);
        assert_null(page->entries[i].value);
    }
}

static void on_usage(void *arg, int result, const fs_usage *u)
{
    got *g = arg;
    g->calls++;
    g->result = result;
    g->had_view = u != NULL;
    if (u)
        g->usage = *u;
}

static void release(got *g)
{
    if (g->kept)
        kv_value_unref(g->kept);
    g->kept = NULL;
}

/* --------------------------------------------------------------- tests */

/* A read completes at its read point, never inside the call, with the
 * key's metadata; without FS_READ_VALUE no value. */
static void test_read_waits_for_its_read_point(void **st)
{
    world *w = *st;
    put(w, "k", "v1");
    got g = { .w = w };
    assert_int_equal(reads_key(w->cl, &w->state, 0, "k", 1, 0, 0, on_key, &g), 0);
    assert_int_equal(g.calls, 0);                  /* not inside the call */
    flush(w);
    assert_int_equal(w->n_tokens, 1);
    assert_int_equal(g.calls, 0);                  /* no read point yet */
    client_read_point(w->cl, w->tokens[0], 0, 2, 0);
    client_serve(w->cl, 1, true);
    assert_int_equal(g.calls, 0);                  /* state below index 2 */
    put(w, "k", "v22");                            /* slot 2 */
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.result, 0);
    assert_true(g.had_view);
    assert_false(g.had_value);
    assert_int_equal(g.meta.len, 3);               /* the state it met */
    assert_int_equal(g.meta.version, 2);
    assert_int_equal(g.meta.mtime_ms, 1002);
    assert_true(g.meta.ident != 0);
    client_serve(w->cl, 2, true);
    assert_int_equal(g.calls, 1);                  /* exactly once */
}

/* The value is a lent reference: kept, it stays what it was while the key
 * is replaced; an absent key has identity 0 and no value. */
static void test_value_is_a_reference_and_absent_keys(void **st)
{
    world *w = *st;
    put(w, "k", "first");
    got g = { .w = w }, none = { .w = w };
    assert_int_equal(reads_key(w->cl, &w->state, 0, "k", 1, FS_READ_VALUE,
                               0, on_key, &g), 0);
    assert_int_equal(reads_key(w->cl, &w->state, 0, "nothing", 7,
                               FS_READ_VALUE, 0, on_key, &none), 0);
    flush(w);
    for (uint32_t i = 0; i < w->n_tokens; i++)
        client_read_point(w->cl, w->tokens[i], 0, 1, 0);
    client_serve(w->cl, 1, true);
    assert_int_equal(g.calls, 1);
    assert_true(g.had_value);
    assert_string_equal(g.data, "first");
    uint64_t ident = g.meta.ident;
    put(w, "k", "second");
    assert_int_equal(g.kept->len, 5);
    assert_memory_equal(g.kept->data, "first", 5);
    assert_int_equal(g.kept->ident, ident);
    release(&g);
    assert_int_equal(none.calls, 1);
    assert_int_equal(none.result, 0);
    assert_int_equal(none.meta.ident, 0);
    assert_false(none.had_value);
}

/* FS_READ_APPLIED: no read point, not even on a node that may not serve
 * reads; answered at the next client_flush, before anything else it does;
 * what a deferred call queues waits for the flush after. */
static void test_applied_read_runs_at_the_next_flush(void **st)
{
    world *w = *st;
    put(w, "k", "v");
    client_serve(w->cl, w->slot, false);
    got g = { .w = w };
    assert_int_equal(reads_key(w->cl, &w->state, 0, "k", 1,
                               FS_READ_APPLIED | FS_READ_VALUE, 0, on_key, &g),
                     0);
    assert_int_equal(g.calls, 0);
    assert_true(client_has_deferred(w->cl));
    flush(w);
    assert_int_equal(g.calls, 1);
    assert_int_equal(w->n_tokens, 0);              /* no read point asked */
    assert_string_equal(g.data, "v");
    assert_false(client_has_deferred(w->cl));
    release(&g);
}

/* Read-your-writes: a read asked after a write whose caller returned
 * (`answered`) completes only once that write is applied, and sees it. */
static void test_read_waits_for_answered_writes(void **st)
{
    world *w = *st;
    put(w, "k", "old");
    uint8_t op[64];
    int64_t n = kv_op_encode_put(op, sizeof op, "k", 1,
                                 (const uint8_t *)"mine", 4);
    assert_true(n > 0);
    assert_int_equal(client_submit(w->cl, 0, op, (uint32_t)n, true, NULL,
                                   NULL), 0);
    got g = { .w = w };
    assert_int_equal(reads_key(w->cl, &w->state, 0, "k", 1, FS_READ_VALUE,
                               0, on_key, &g), 0);
    flush(w);
    assert_int_equal(w->n_proposed, 1);
    assert_int_equal(w->n_tokens, 1);
    client_read_point(w->cl, w->tokens[0], 0, 1, 0);
    client_serve(w->cl, 1, true);
    assert_int_equal(g.calls, 0);                  /* the write first */
    apply(w, true, NULL, 0);
    assert_int_equal(g.calls, 1);
    assert_string_equal(g.data, "mine");
    release(&g);
}

/* What a read delivers is the state when it completes, and the change
 * that made it was told before (fs.h rule B2, in-process). */
static void test_changes_are_told_before_the_read_that_sees_them(void **st)
{
    world *w = *st;
    got g = { .w = w };
    assert_int_equal(reads_key(w->cl, &w->state, 0, "k", 1, 0, 0, on_key, &g),
                     0);
    flush(w);
    client_read_point(w->cl, w->tokens[0], 0, 1, 0);
    w->n_events = 0;
    put(w, "k", "v");                              /* slot 1: serves it */
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.meta.version, 1);
    w->events[w->n_events] = '\0';
    assert_string_equal(w->events, "cr");
}

/* A listing comes in pages: keys in byte order after the one asked from,
 * with metadata and no values, `more` until the last; a page never holds
 * more than FS_LIST_MAX keys, whatever is asked. */
static void test_list_pages_in_byte_order(void **st)
{
    world *w = *st;
    const char *keys[] = { "b", "a", "c2", "c", "d", "c10" };
    for (size_t i = 0; i < 6; i++)
        put(w, keys[i], "x");
    const char *want[] = { "a", "b", "c", "c10", "c2", "d" };
    char after[16] = "";
    size_t seen = 0;
    for (int page = 0; page < 3; page++) {
        got g = { 0 };
        assert_int_equal(reads_list(w->cl, &w->state, 0, after, strlen(after),
                                    2, page ? FS_READ_APPLIED : 0, on_page,
                                    &g), 0);
        assert_int_equal(g.calls, 0);
        flush(w);
        if (!page) {
            client_read_point(w->cl, w->tokens[w->n_tokens - 1], 0, 1, 0);
            client_serve(w->cl, w->slot, true);
        }
        assert_int_equal(g.calls, 1);
        assert_int_equal(g.result, 0);
        assert_int_equal(g.n, 2);
        assert_int_equal(g.more, page < 2);
        for (uint32_t i = 0; i < g.n; i++)
            assert_string_equal(g.keys[i], want[seen++]);
        snprintf(after, sizeof after, "%s", g.keys[g.n - 1]);
    }
    assert_int_equal(seen, 6);
    got last = { 0 };
    assert_int_equal(reads_list(w->cl, &w->state, 0, "d", 1, 5,
                                FS_READ_APPLIED, on_page, &last), 0);
    flush(w);
    assert_int_equal(last.n, 0);
    assert_false(last.more);
    /* the bound */
    for (uint32_t i = 0; i <= FS_LIST_MAX; i++) {
        char k[16];
        snprintf(k, sizeof k, "m%06u", i);
        put(w, k, "");
    }
    got big = { 0 };
    assert_int_equal(reads_list(w->cl, &w->state, 0, "l", 1, UINT32_MAX,
                                FS_READ_APPLIED, on_page, &big), 0);
    flush(w);
    assert_int_equal(big.n, FS_LIST_MAX);
    assert_true(big.more);
}

static void test_usage_counts_keys_and_bytes(void **st)
{
    world *w = *st;
    put(w, "a", "123");
    put(w, "b", "45");
    got g = { 0 };
    assert_int_equal(reads_usage(w->cl, &w->state, on_usage, &g), 0);
    assert_int_equal(g.calls, 0);
    flush(w);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.usage.keys, 2);
    assert_int_equal(g.usage.bytes, 5);
}

/* Bad requests fail in the call (and never complete); a failed client and
 * a passed deadline complete each waiting read once, without a view. */
static void test_failures_complete_once_without_a_view(void **st)
{
    world *w = *st;
    got bad = { 0 };
    char longkey[KV_MAX_KEY + 2];
    memset(longkey, 'x', sizeof longkey);
    assert_int_equal(reads_key(w->cl, &w->state, 0, "", 0, 0, 0, on_key, &bad),
                     -EINVAL);
    assert_int_equal(reads_key(w->cl, &w->state, 0, longkey, sizeof longkey,
                               0, 0, on_key, &bad), -ENAMETOOLONG);
    assert_int_equal(reads_list(w->cl, &w->state, 0, "", 0, 0, 0, on_page,
                                &bad), -EINVAL);
    flush(w);
    assert_int_equal(bad.calls, 0);

    got late = { 0 }, deferred = { 0 }, listing = { 0 };
    assert_int_equal(reads_key(w->cl, &w->state, 0, "k", 1, 0, 0, on_key, &late),
                     0);
    client_expire(w->cl, 999);
    assert_int_equal(late.calls, 0);
    client_expire(w->cl, 1000);                    /* the 1000 ms deadline */
    assert_int_equal(late.calls, 1);
    assert_int_equal(late.result, -ETIMEDOUT);
    assert_false(late.had_view);

    assert_int_equal(reads_key(w->cl, &w->state, 0, "k", 1, FS_READ_APPLIED,
                               0, on_key, &deferred), 0);
    assert_int_equal(reads_list(w->cl, &w->state, 0, "", 0, 4, 0, on_page,
                                &listing), 0);
    client_fail_all(w->cl, -EIO);
    assert_int_equal(deferred.calls, 1);
    assert_int_equal(deferred.result, -EIO);
    assert_false(deferred.had_view);
    assert_int_equal(listing.calls, 1);
    assert_int_equal(listing.result, -EIO);
    assert_false(listing.had_view);
    flush(w);
    client_serve(w->cl, 10, true);
    assert_int_equal(deferred.calls + listing.calls + late.calls, 3);
}

/* consensus/reads.c invariant 9: which batches a read of one key waits
 * for under a follower lease. */
static bool depends(const uint8_t *batch, uint32_t len, const char *key)
{
    reads_dep k = { key, strlen(key) };
    return reads_key_depends(&k, batch, len);
}

static void test_a_key_read_depends_on_the_ops_touching_it(void **state)
{
    (void)state;
    uint8_t ops[3][64];
    int64_t n0 = kv_op_encode_put(ops[0], 64, "a/b", 3,
                                  (const uint8_t *)"v", 1);
    int64_t n1 = kv_op_encode_rename(ops[1], 64, "x", 1, "d/y", 3);
    int64_t n2 = kv_op_encode_del(ops[2], 64, "k2", 2);
    assert_true(n0 > 0 && n1 > 0 && n2 > 0);
    int64_t lens[3] = { n0, n1, n2 };
    uint8_t batch[512];
    uint32_t at = 4;
    px_batch_put_header(batch, 3);
    for (int i = 0; i < 3; i++) {
        px_request q = { .client_id = 1, .seq = (uint64_t)i + 1,
                         .len = (uint32_t)lens[i], .op = ops[i] };
        at += px_batch_put(batch + at, &q);
    }
    /* named, a directory above, a key below, either side of a rename */
    const char *yes[] = { "a", "a/b", "a/", "a/b/c", "k2", "x", "d", "d/",
                          "d/y", "d/y/z" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(depends(batch, at, yes[i]));
    const char *no[] = { "ab", "a/bc", "a/c", "k", "k22", "xy", "d/yy",
                         "e" };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(depends(batch, at, no[i]));
    /* a batch that does not decode counts as touching every key */
    assert_true(depends(batch, at - 1, "e"));
    uint8_t junk[4 + 28 + 3] = { 1, 0, 0, 0 };
    junk[4 + 24] = 3;   /* one request of 3 bytes that are no op */
    assert_true(depends(junk, sizeof junk, "e"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_waits_for_its_read_point,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_value_is_a_reference_and_absent_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_applied_read_runs_at_the_next_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_waits_for_answered_writes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_changes_are_told_before_the_read_that_sees_them, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_list_pages_in_byte_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_usage_counts_keys_and_bytes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_failures_complete_once_without_a_view, setup, teardown),
        cmocka_unit_test(test_a_key_read_depends_on_the_ops_touching_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
