/*
 * test_node_client.c - the client handle (node/client.c): a write made at
 * release survives its replica being replaced (client_fail_callers keeps
 * it, client_repropose proposes it again under its own seq with its op),
 * while callers that wait are answered at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "../../node/client.h"

typedef struct seen {
    uint64_t seqs[16];
    char ops[16][8];
    uint32_t n;
} seen;

static void on_propose(void *arg, px_request *reqs, uint32_t k)
{
    seen *s = arg;
    for (uint32_t i = 0; i < k && s->n < 16; i++) {
        s->seqs[s->n] = reqs[i].seq;
        memcpy(s->ops[s->n], reqs[i].op, reqs[i].len < 8 ? reqs[i].len : 7);
        s->ops[s->n][reqs[i].len < 8 ? reqs[i].len : 7] = '\0';
        s->n++;
    }
}

static void on_reads(void *arg, const uint64_t *tokens, uint32_t n)
{
    (void)arg;
    (void)tokens;
    (void)n;
}

static int results[8];
static int called[8];

static void done(void *arg, int result)
{
    int i = (int)(intptr_t)arg;
    results[i] = result;
    called[i]++;
}

static void test_release_write_survives_a_new_replica(void **state)
{
    (void)state;
    memset(results, 0, sizeof results);
    memset(called, 0, sizeof called);
    client *c;
    assert_int_equal(client_create(7, 1000, 0, &c), 0);
    /* a write whose caller waits, one made at release, a read point */
    assert_int_equal(client_submit(c, 0, (const uint8_t *)"wait", 4, false,
                                   done, (void *)(intptr_t)0), 0);
    assert_int_equal(client_submit(c, 0, (const uint8_t *)"rel", 3, true,
                                   done, (void *)(intptr_t)1), 0);
    assert_int_equal(client_read(c, 0, done, (void *)(intptr_t)2), 0);
    seen s = {0};
    client_flush(c, on_propose, on_reads, &s);
    assert_int_equal(s.n, 2);
    /* the replica is gone (a storage failure): waiting callers get the
     * error at once, the write made at release stays */
    client_fail_callers(c, -EIO);
    assert_int_equal(called[0], 1);
    assert_int_equal(results[0], -EIO);
    assert_int_equal(called[2], 1);
    assert_int_equal(results[2], -EIO);
    assert_int_equal(called[1], 0);
    client_stats st;
    client_get_stats(c, &st);
    assert_int_equal(st.answered_outstanding, 1);
    /* a new replica: the write is proposed again, same seq, same op */
    client_repropose(c);
    seen again = {0};
    client_flush(c, on_propose, on_reads, &again);
    assert_int_equal(again.n, 1);
    assert_int_equal(again.seqs[0], s.seqs[1]);
    assert_string_equal(again.ops[0], "rel");
    client_applied(c, again.seqs[0], 0);
    assert_int_equal(called[1], 1);
    assert_int_equal(results[1], 0);
    client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_write_survives_a_new_replica),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
